//! Realistic generated orders: the dashboard's one-click "create an order" (as in the seed) and
//! the traffic simulator.
//!
//! A small French shop, like the seed's. The randomness comes from the caller's rng, so a
//! seeded rng gives the same orders every time (tests, reproducible load). Every email address
//! is at a domain reserved for examples (RFC 2606: `example.com`, `.org`, `.net` and the
//! `.example` TLD), so generated orders can never reach a real mailbox.

use chrono::{Datelike, NaiveDate, Weekday};
use rand::Rng;

use super::event::OrderDetails;
use super::gateway::METHODS;
use super::money::Money;

const FIRST_NAMES: [&str; 22] = [
    "Jean",
    "Marie",
    "Amélie",
    "Pierre",
    "Léa",
    "Lucas",
    "Chloé",
    "Hugo",
    "Manon",
    "François",
    "Élodie",
    "Théo",
    "Inès",
    "Sébastien",
    "Céline",
    "Loïc",
    "Anaïs",
    "Benoît",
    "Gaëlle",
    "Jérôme",
    "Camille",
    "Marie-Claire",
];

const LAST_NAMES: [&str; 22] = [
    "Dupont",
    "Curie",
    "Martin",
    "Bernard",
    "Dubois",
    "Durand",
    "Lefèvre",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Garcia",
    "Roux",
    "Fournier",
    "Girard",
    "Bonnet",
    "Mercier",
    "Guérin",
    "Faure",
    "Rousseau",
    "Le Gall",
    "Chevalier",
];

const EMAIL_DOMAINS: [&str; 4] = ["example.com", "example.org", "example.net", "mail.example"];

/// Product and unit price in cents (EUR, VAT included, as a French shop displays them).
const CATALOGUE: [(&str, i64); 26] = [
    ("Laptop", 99_999),
    ("Smartphone", 69_900),
    ("Tablette", 44_900),
    ("Casque audio", 14_990),
    ("Clavier mécanique", 8_999),
    ("Souris sans fil", 2_999),
    ("Écran 27 pouces", 27_900),
    ("Montre connectée", 24_900),
    ("Enceinte Bluetooth", 7_990),
    ("Écouteurs sans fil", 12_900),
    ("Webcam HD", 5_999),
    ("Disque SSD 1 To", 8_990),
    ("Clé USB 64 Go", 1_299),
    ("Imprimante laser", 18_900),
    ("Routeur Wi-Fi 6", 11_900),
    ("Chargeur USB-C 65 W", 3_990),
    ("Liseuse", 13_999),
    ("Appareil photo hybride", 119_900),
    ("Console de jeux", 49_999),
    ("Manette sans fil", 6_999),
    ("Machine à café", 34_900),
    ("Aspirateur robot", 29_900),
    ("Brosse à dents électrique", 5_990),
    ("Sac à dos pour ordinateur", 4_995),
    ("Lampe de bureau LED", 3_490),
    ("Batterie externe", 3_499),
];

/// Streets found in almost every French town, so any street goes with any city.
const STREETS: [&str; 16] = [
    "Rue de la Paix",
    "Rue de la République",
    "Rue Victor Hugo",
    "Avenue Jean Jaurès",
    "Rue Pasteur",
    "Boulevard Gambetta",
    "Avenue Foch",
    "Rue du Général de Gaulle",
    "Place de la Mairie",
    "Rue de l'Église",
    "Grande Rue",
    "Rue Nationale",
    "Rue des Lilas",
    "Allée des Tilleuls",
    "Chemin des Vignes",
    "Rue du Moulin",
];

/// Postcode (a real one of the city) and city.
const CITIES: [(&str, &str); 16] = [
    ("75002", "Paris"),
    ("75011", "Paris"),
    ("69002", "Lyon"),
    ("13001", "Marseille"),
    ("31000", "Toulouse"),
    ("06000", "Nice"),
    ("44000", "Nantes"),
    ("67000", "Strasbourg"),
    ("34000", "Montpellier"),
    ("33000", "Bordeaux"),
    ("59000", "Lille"),
    ("35000", "Rennes"),
    ("51100", "Reims"),
    ("38000", "Grenoble"),
    ("21000", "Dijon"),
    ("42000", "Saint-Étienne"),
];

/// Most baskets hold one item.
const QUANTITIES: [(u32, u32); 3] = [(1, 70), (2, 20), (3, 10)];

/// Cards dominate online payments in France; wallets and PayPal follow.
const METHOD_WEIGHTS: [(&str, u32); 5] = [
    (METHODS[0], 50),
    (METHODS[1], 20),
    (METHODS[2], 8),
    (METHODS[3], 12),
    (METHODS[4], 10),
];

/// The carriers the demo ships with.
pub const CARRIERS: [&str; 5] = ["Colissimo", "Chronopost", "DHL", "UPS", "DPD"];

/// Colissimo (La Poste) carries most French parcels.
const CARRIER_WEIGHTS: [(&str, u32); 5] = [
    (CARRIERS[0], 40),
    (CARRIERS[1], 20),
    (CARRIERS[2], 15),
    (CARRIERS[3], 10),
    (CARRIERS[4], 15),
];

fn pick<'a, T, R: Rng + ?Sized>(rng: &mut R, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn weighted<T: Copy, R: Rng + ?Sized>(rng: &mut R, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for &(item, weight) in items {
        if roll < weight {
            return item;
        }
        roll -= weight;
    }
    items[items.len() - 1].0
}

/// The ASCII form of a name for an email address: `Amélie` → `amelie`, `Le Gall` → `le-gall`.
fn email_part(name: &str) -> String {
    name.chars()
        .filter_map(|c| {
            let c = match c {
                'à' | 'â' | 'ä' | 'À' | 'Â' | 'Ä' => 'a',
                'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'e',
                'î' | 'ï' | 'Î' | 'Ï' => 'i',
                'ô' | 'ö' | 'Ô' | 'Ö' => 'o',
                'ù' | 'û' | 'ü' | 'Ù' | 'Û' | 'Ü' => 'u',
                'ç' | 'Ç' => 'c',
                ' ' | '\'' => '-',
                c => c.to_ascii_lowercase(),
            };
            (c.is_ascii_alphanumeric() || c == '-').then_some(c)
        })
        .collect()
}

/// A plausible order from the demo shop; it always passes
/// [`validation::new_order`](super::validation::new_order).
pub fn demo_order<R: Rng + ?Sized>(rng: &mut R) -> OrderDetails {
    let first = pick(rng, &FIRST_NAMES);
    let last = pick(rng, &LAST_NAMES);
    let domain = pick(rng, &EMAIL_DOMAINS);
    let &(product, unit_cents) = pick(rng, &CATALOGUE);
    let quantity = weighted(rng, &QUANTITIES);
    let street = pick(rng, &STREETS);
    let &(postcode, city) = pick(rng, &CITIES);
    let number = rng.random_range(1..=150);
    let bis = if rng.random_bool(0.05) { " bis" } else { "" };
    OrderDetails {
        customer_name: format!("{first} {last}"),
        customer_email: format!("{}.{}@{domain}", email_part(first), email_part(last)),
        product: product.to_owned(),
        quantity,
        amount: Money::from_minor(unit_cents)
            .checked_mul(quantity)
            .expect("a catalogue price times 3 fits in i64"),
        currency: "EUR".to_owned(),
        address: format!("{number}{bis} {street}, {postcode} {city}"),
    }
}

/// A payment method, card most often.
pub fn demo_payment_method<R: Rng + ?Sized>(rng: &mut R) -> &'static str {
    weighted(rng, &METHOD_WEIGHTS)
}

/// A carrier from [`CARRIERS`], Colissimo most often.
pub fn demo_carrier<R: Rng + ?Sized>(rng: &mut R) -> &'static str {
    weighted(rng, &CARRIER_WEIGHTS)
}

/// Business days to deliver: Chronopost 1, DHL and UPS 2, Colissimo, DPD and any other 3.
fn business_days(carrier: &str) -> u32 {
    if carrier.eq_ignore_ascii_case("Chronopost") {
        1
    } else if carrier.eq_ignore_ascii_case("DHL") || carrier.eq_ignore_ascii_case("UPS") {
        2
    } else {
        3
    }
}

/// The delivery date promised when a parcel ships on `today`: that many business days later,
/// Saturdays and Sundays skipped (public holidays are not: they differ by country). A parcel
/// shipped at the weekend counts from Monday. Takes `today` rather than reading the clock, so
/// it is the same in tests and in every instance.
#[must_use]
pub fn estimated_delivery(today: NaiveDate, carrier: &str) -> NaiveDate {
    let mut date = today;
    let mut left = business_days(carrier);
    while left > 0 {
        let Some(next) = date.succ_opt() else {
            return date;
        };
        date = next;
        if !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    date
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{gateway, validation};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn generated_orders_pass_validation_unchanged() {
        let mut rng = StdRng::seed_from_u64(42);
        for _ in 0..1000 {
            let order = demo_order(&mut rng);
            let body = serde_json::value::to_raw_value(&order).unwrap();
            let validated = validation::new_order(&body)
                .unwrap_or_else(|e| panic!("{order:?} is refused: {e}"));
            assert_eq!(validated, order);
        }
    }

    #[test]
    fn generated_orders_look_right() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut quantities = [0; 4];
        for _ in 0..1000 {
            let order = demo_order(&mut rng);
            let (_, unit) = CATALOGUE.iter().find(|(p, _)| *p == order.product).unwrap();
            assert_eq!(
                order.amount,
                Money::from_minor(unit * i64::from(order.quantity))
            );
            assert_eq!(order.currency, "EUR");
            assert!(order.customer_email.is_ascii(), "{}", order.customer_email);
            let domain = order.customer_email.rsplit_once('@').unwrap().1;
            assert!(EMAIL_DOMAINS.contains(&domain));
            quantities[order.quantity as usize] += 1;
        }
        assert_eq!(quantities[0], 0);
        assert!(quantities[1] > quantities[2] && quantities[2] > quantities[3]);
        assert!(quantities[3] > 0);
    }

    #[test]
    fn the_same_seed_gives_the_same_orders() {
        let a: Vec<_> = (0..20)
            .scan(StdRng::seed_from_u64(1), |rng, _| Some(demo_order(rng)))
            .collect();
        let b: Vec<_> = (0..20)
            .scan(StdRng::seed_from_u64(1), |rng, _| Some(demo_order(rng)))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn email_parts_are_ascii_folded() {
        assert_eq!(email_part("Amélie"), "amelie");
        assert_eq!(email_part("Gaëlle"), "gaelle");
        assert_eq!(email_part("Benoît"), "benoit");
        assert_eq!(email_part("François"), "francois");
        assert_eq!(email_part("Élodie"), "elodie");
        assert_eq!(email_part("Marie-Claire"), "marie-claire");
        assert_eq!(email_part("Le Gall"), "le-gall");
        assert_eq!(email_part("Lefèvre"), "lefevre");
        for name in FIRST_NAMES.iter().chain(&LAST_NAMES) {
            let part = email_part(name);
            assert!(!part.is_empty() && part.is_ascii(), "{name}");
            // Every letter of the name survives the folding.
            assert_eq!(
                part.chars().filter(char::is_ascii_alphabetic).count(),
                name.chars().filter(|c| c.is_alphabetic()).count(),
                "{name}"
            );
        }
    }

    #[test]
    fn methods_and_carriers_are_known_and_weighted() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut methods = [0; 5];
        let mut carriers = [0; 5];
        for _ in 0..2000 {
            let m = demo_payment_method(&mut rng);
            methods[gateway::METHODS.iter().position(|x| *x == m).unwrap()] += 1;
            let c = demo_carrier(&mut rng);
            carriers[CARRIERS.iter().position(|x| *x == c).unwrap()] += 1;
        }
        assert!(methods.iter().all(|&n| n > 0), "{methods:?}");
        assert!(methods[0] > methods[1..].iter().copied().max().unwrap());
        assert!(carriers.iter().all(|&n| n > 0), "{carriers:?}");
        assert!(carriers[0] > carriers[1..].iter().copied().max().unwrap());
    }

    #[test]
    fn delivery_estimates_skip_weekends() {
        // 2024-01-29 is a Monday.
        let monday = day(2024, 1, 29);
        assert_eq!(estimated_delivery(monday, "Chronopost"), day(2024, 1, 30));
        assert_eq!(estimated_delivery(monday, "DHL"), day(2024, 1, 31));
        assert_eq!(estimated_delivery(monday, "UPS"), day(2024, 1, 31));
        assert_eq!(estimated_delivery(monday, "Colissimo"), day(2024, 2, 1));
        assert_eq!(estimated_delivery(monday, "DPD"), day(2024, 2, 1));
        assert_eq!(estimated_delivery(monday, "La Poste Pro"), day(2024, 2, 1));

        let friday = day(2024, 2, 2);
        assert_eq!(estimated_delivery(friday, "Chronopost"), day(2024, 2, 5));
        assert_eq!(estimated_delivery(friday, "DHL"), day(2024, 2, 6));
        assert_eq!(estimated_delivery(friday, "Colissimo"), day(2024, 2, 7));
        let thursday = day(2024, 2, 1);
        assert_eq!(estimated_delivery(thursday, "DHL"), day(2024, 2, 5));
        assert_eq!(estimated_delivery(thursday, "colissimo"), day(2024, 2, 6));

        // Shipped at the weekend: counted from Monday.
        let saturday = day(2024, 2, 3);
        let sunday = day(2024, 2, 4);
        assert_eq!(estimated_delivery(saturday, "Chronopost"), day(2024, 2, 5));
        assert_eq!(estimated_delivery(sunday, "Chronopost"), day(2024, 2, 5));
        assert_eq!(estimated_delivery(sunday, "DPD"), day(2024, 2, 7));

        // Across a month and a year end (2024-12-31 is a Tuesday, 2025-01-03 a Friday).
        assert_eq!(
            estimated_delivery(day(2024, 12, 31), "Colissimo"),
            day(2025, 1, 3)
        );
        // The last representable date does not loop or panic.
        assert_eq!(estimated_delivery(NaiveDate::MAX, "DHL"), NaiveDate::MAX);
    }
}
