//! The simulated payment gateway: deterministic, so shop developers can test every outcome.
//!
//! Like a payment provider's sandbox and its test cards, the outcome depends only on the order
//! and the request, never on chance. The rules are checked in this order; the first that
//! matches decides:
//!
//! | # | Condition                                                        | Status  | `failure_reason`     | Amount recorded  |
//! |---|------------------------------------------------------------------|---------|----------------------|------------------|
//! | 1 | an `amount` is given and differs from the order total            | FAILED  | `amount_mismatch`    | the amount given |
//! | 2 | the customer's email domain is `decline.test` (`x@decline.test`) | FAILED  | `card_declined`      | the order total  |
//! | 3 | the customer's email domain is `insufficient.test`               | FAILED  | `insufficient_funds` | the order total  |
//! | 4 | `Credit Card` and a total above 5 000.00                         | FAILED  | `limit_exceeded`     | the order total  |
//! | 4 | `Apple Pay` or `Google Pay` and a total above 2 000.00           | FAILED  | `limit_exceeded`     | the order total  |
//! | 5 | otherwise                                                        | SUCCESS | none                 | the order total  |
//!
//! `.test` is reserved (RFC 2606), so no real customer ever hits rules 2 and 3 by accident.
//! Domains are compared without regard to ASCII case; the total is compared in cents.

use super::event::{OrderDetails, PaymentStatus};
use super::money::Money;

/// The payment methods, by their canonical names (the seed's spelling).
pub const METHODS: [&str; 5] = [
    "Credit Card",
    "PayPal",
    "Bank Transfer",
    "Apple Pay",
    "Google Pay",
];

/// Rule 1: the amount asked for is not the order's total.
pub const AMOUNT_MISMATCH: &str = "amount_mismatch";
/// Rule 2: the customer's email domain is [`DECLINE_DOMAIN`].
pub const CARD_DECLINED: &str = "card_declined";
/// Rule 3: the customer's email domain is [`INSUFFICIENT_DOMAIN`].
pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
/// Rule 4: the total is above the method's limit.
pub const LIMIT_EXCEEDED: &str = "limit_exceeded";

/// Customers at this domain always have their payment declined.
pub const DECLINE_DOMAIN: &str = "decline.test";
/// Customers at this domain never have enough funds.
pub const INSUFFICIENT_DOMAIN: &str = "insufficient.test";

/// The most a credit card payment may be: 5 000.00.
pub const CARD_LIMIT: Money = Money::from_minor(500_000);
/// The most an Apple Pay or Google Pay payment may be: 2 000.00.
pub const WALLET_LIMIT: Money = Money::from_minor(200_000);

/// The canonical name of a payment method, matched without regard to case, spaces,
/// underscores or hyphens (`credit_card`, `CREDIT-CARD`, `paypal` are all accepted).
#[must_use]
pub fn canonical_method(method: &str) -> Option<&'static str> {
    let key = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, ' ' | '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = key(method);
    METHODS.into_iter().find(|m| key(m) == wanted)
}

/// What the gateway decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: PaymentStatus,
    /// The amount recorded on the payment event.
    pub amount: Money,
    /// One of this module's reason constants when the payment failed.
    pub failure_reason: Option<&'static str>,
}

impl Outcome {
    fn failed(amount: Money, reason: &'static str) -> Outcome {
        Outcome {
            status: PaymentStatus::Failed,
            amount,
            failure_reason: Some(reason),
        }
    }
}

/// The part after the last `@`, or `""` for an address without one (records from foreign
/// producers are not validated, so this must not assume a well-formed address).
fn email_domain(email: &str) -> &str {
    email.rsplit_once('@').map_or("", |(_, domain)| domain)
}

/// Decides a payment of `order` by `method` (`amount`: what the client asked to pay, if it
/// said). See the [module documentation](self) for the rules and their order. A method that is
/// not one of [`METHODS`] (possible from a foreign producer) has no limit.
#[must_use]
pub fn authorise(order: &OrderDetails, method: &str, amount: Option<Money>) -> Outcome {
    let total = order.amount;
    if let Some(given) = amount
        && given != total
    {
        return Outcome::failed(given, AMOUNT_MISMATCH);
    }
    let domain = email_domain(&order.customer_email);
    if domain.eq_ignore_ascii_case(DECLINE_DOMAIN) {
        return Outcome::failed(total, CARD_DECLINED);
    }
    if domain.eq_ignore_ascii_case(INSUFFICIENT_DOMAIN) {
        return Outcome::failed(total, INSUFFICIENT_FUNDS);
    }
    let limit = match canonical_method(method) {
        Some("Credit Card") => Some(CARD_LIMIT),
        Some("Apple Pay" | "Google Pay") => Some(WALLET_LIMIT),
        _ => None,
    };
    if limit.is_some_and(|limit| total > limit) {
        return Outcome::failed(total, LIMIT_EXCEEDED);
    }
    Outcome {
        status: PaymentStatus::Success,
        amount: total,
        failure_reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(email: &str, cents: i64) -> OrderDetails {
        OrderDetails {
            customer_name: "Jean Dupont".into(),
            customer_email: email.into(),
            product: "Laptop".into(),
            quantity: 1,
            amount: Money::from_minor(cents),
            currency: "EUR".into(),
            address: "12 Rue de la Paix, 75002 Paris".into(),
        }
    }

    fn failed(cents: i64, reason: &'static str) -> Outcome {
        Outcome::failed(Money::from_minor(cents), reason)
    }

    fn success(cents: i64) -> Outcome {
        Outcome {
            status: PaymentStatus::Success,
            amount: Money::from_minor(cents),
            failure_reason: None,
        }
    }

    #[test]
    fn canonical_method_names() {
        assert_eq!(canonical_method("credit_card"), Some("Credit Card"));
        assert_eq!(canonical_method("CREDIT-CARD"), Some("Credit Card"));
        assert_eq!(canonical_method("Credit Card"), Some("Credit Card"));
        assert_eq!(canonical_method("paypal"), Some("PayPal"));
        assert_eq!(canonical_method("Pay Pal"), Some("PayPal"));
        assert_eq!(canonical_method("bank_transfer"), Some("Bank Transfer"));
        assert_eq!(canonical_method("applepay"), Some("Apple Pay"));
        assert_eq!(canonical_method("google-pay"), Some("Google Pay"));
        assert_eq!(canonical_method("cash"), None);
        assert_eq!(canonical_method(""), None);
        assert_eq!(canonical_method("credit.card"), None);
    }

    #[test]
    fn an_ordinary_payment_succeeds_with_the_total() {
        let o = order("jean.dupont@example.com", 99_999);
        for method in METHODS {
            assert_eq!(authorise(&o, method, None), success(99_999), "{method}");
            assert_eq!(
                authorise(&o, method, Some(Money::from_minor(99_999))),
                success(99_999)
            );
        }
    }

    #[test]
    fn rule_1_amount_mismatch_records_the_amount_given() {
        let o = order("jean.dupont@example.com", 99_999);
        assert_eq!(
            authorise(&o, "PayPal", Some(Money::from_minor(100))),
            failed(100, AMOUNT_MISMATCH)
        );
        assert_eq!(
            authorise(&o, "PayPal", Some(Money::from_minor(100_000))),
            failed(100_000, AMOUNT_MISMATCH)
        );
    }

    #[test]
    fn rule_2_declined_domain() {
        let o = order("x@decline.test", 1_000);
        assert_eq!(authorise(&o, "PayPal", None), failed(1_000, CARD_DECLINED));
        let o = order("x@DECLINE.Test", 1_000);
        assert_eq!(authorise(&o, "PayPal", None), failed(1_000, CARD_DECLINED));
        // Only the exact domain: not a subdomain, not a local part.
        let o = order("x@sub.decline.test", 1_000);
        assert_eq!(authorise(&o, "PayPal", None), success(1_000));
        let o = order("decline.test@example.com", 1_000);
        assert_eq!(authorise(&o, "PayPal", None), success(1_000));
    }

    #[test]
    fn rule_3_insufficient_funds_domain() {
        let o = order("x@insufficient.test", 1_000);
        assert_eq!(
            authorise(&o, "Bank Transfer", None),
            failed(1_000, INSUFFICIENT_FUNDS)
        );
    }

    #[test]
    fn rule_4_limits_per_method() {
        let o = order("a@example.com", 500_000);
        assert_eq!(authorise(&o, "Credit Card", None), success(500_000));
        let o = order("a@example.com", 500_001);
        assert_eq!(
            authorise(&o, "Credit Card", None),
            failed(500_001, LIMIT_EXCEEDED)
        );
        assert_eq!(
            authorise(&o, "credit_card", None),
            failed(500_001, LIMIT_EXCEEDED)
        );
        assert_eq!(authorise(&o, "PayPal", None), success(500_001));
        assert_eq!(authorise(&o, "Bank Transfer", None), success(500_001));

        let o = order("a@example.com", 200_000);
        assert_eq!(authorise(&o, "Apple Pay", None), success(200_000));
        assert_eq!(authorise(&o, "Google Pay", None), success(200_000));
        let o = order("a@example.com", 200_001);
        assert_eq!(
            authorise(&o, "Apple Pay", None),
            failed(200_001, LIMIT_EXCEEDED)
        );
        assert_eq!(
            authorise(&o, "Google Pay", None),
            failed(200_001, LIMIT_EXCEEDED)
        );
        assert_eq!(authorise(&o, "Credit Card", None), success(200_001));
        // A method from a foreign producer has no limit.
        assert_eq!(authorise(&o, "Cheque", None), success(200_001));
    }

    #[test]
    fn rules_apply_in_order() {
        // 1 before 2, 3 and 4.
        let o = order("x@decline.test", 900_000);
        assert_eq!(
            authorise(&o, "Credit Card", Some(Money::from_minor(1))),
            failed(1, AMOUNT_MISMATCH)
        );
        // 2 before 4; a matching amount does not trigger 1.
        assert_eq!(
            authorise(&o, "Credit Card", Some(Money::from_minor(900_000))),
            failed(900_000, CARD_DECLINED)
        );
        // 3 before 4.
        let o = order("x@insufficient.test", 900_000);
        assert_eq!(
            authorise(&o, "Apple Pay", None),
            failed(900_000, INSUFFICIENT_FUNDS)
        );
    }

    #[test]
    fn a_malformed_email_does_not_panic() {
        for email in ["", "no-at-sign", "@", "a@"] {
            let o = order(email, 1_000);
            assert_eq!(authorise(&o, "PayPal", None), success(1_000), "{email:?}");
        }
    }
}
