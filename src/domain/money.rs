//! Exact amounts of money, in minor units (cents), never binary floating point.
//!
//! `0.1 + 0.2 != 0.3` in `f64`, and a shop that adds prices in floats ends up a cent off on
//! some orders. A [`Money`] is an `i64` count of cents; it is read from and written to JSON
//! through its exact decimal text: a JSON number such as `999.99` is read from its raw text
//! (see [`super::json`]), not as the nearest `f64`, and we write `12.00` back as a JSON number
//! with exactly two decimals.
//!
//! # Accepted text
//! [`Money::parse_decimal`] accepts a plain decimal: an optional leading `-`, 1 to 15 digits
//! without leading zeros (`0.50` is fine, `007` is not), then optionally a `.` followed by 1 or
//! 2 digits. So `999.99`, `999.9`, `999`, `0.50`, `-1.20`. Nothing else: no surrounding
//! whitespace, no `+`, no thousands separators, no exponent, no `.5` or `5.`, and never a
//! third decimal (`1.005` is refused rather than rounded: rounding is the client's decision).
//! Negative amounts parse; whether one is acceptable (a refund, a discount) is the caller's
//! decision, see [`Money::is_positive`].
//!
//! [`Money::from_json`] takes a JSON string or a JSON number under these same rules. A number
//! in exponent form (`1e3`, `1.5E2`) is refused with [`MoneyError::Exponent`], even when its
//! value would fit in cents: serialisers write ordinary prices without an exponent (JavaScript
//! only switches to it below 1e-6 or from 1e21, Python from 1e16), so an exponent means the
//! amount went through a float somewhere, and we would rather say so than guess.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::json::{self, Kind};

/// The most digits accepted before the decimal point: 999 999 999 999 999.99 is
/// 99 999 999 999 999 999 cents, well inside `i64`.
const MAX_INTEGER_DIGITS: usize = 15;

/// The most characters of a refused input quoted back in an error message.
const QUOTED_INPUT_MAX: usize = 40;

/// An exact amount of money in minor units (cents); the currency is implied by the shop.
///
/// Ordering and equality are those of the number of cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money {
    minor: i64,
}

/// Why an amount was refused. The messages are meant for the shop client that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("the amount is empty: write a decimal such as 12.50")]
    Empty,
    #[error(
        "the amount {input:?} is not a plain decimal: write digits with an optional leading '-' \
         and at most 2 decimals after a '.', such as 12.50 or -3 \
         (no spaces, '+', thousands separators or exponent)"
    )]
    Malformed { input: String },
    #[error("the amount {input:?} has leading zeros: write the digits without them, such as 7.50")]
    LeadingZeros { input: String },
    #[error("the amount {input:?} has more than 2 decimals: round it to cents, such as 1.01")]
    TooManyDecimals { input: String },
    #[error(
        "the amount {input:?} is too large: at most 15 digits are allowed before the decimal point"
    )]
    TooLarge { input: String },
    #[error(
        "the amount {input:?} uses exponent notation: write it as a plain decimal such as 1000.00"
    )]
    Exponent { input: String },
    #[error(
        "the amount must be a decimal string or a number, such as \"12.50\" or 12.50, not {found}"
    )]
    WrongType { found: &'static str },
}

/// The input quoted back in an error, cut so a huge input does not make a huge message.
fn quote(input: &str) -> String {
    match input.char_indices().nth(QUOTED_INPUT_MAX) {
        None => input.to_owned(),
        Some((cut, _)) => format!("{}…", &input[..cut]),
    }
}

/// Whether `s` looks like a number in exponent form (so the error can say so precisely).
fn looks_like_exponent(s: &str) -> bool {
    s.contains(['e', 'E'])
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'e' | b'E' | b'.' | b'-' | b'+'))
}

/// The value of a string of 1 to [`MAX_INTEGER_DIGITS`] ASCII digits (checked by the caller).
fn digits_value(digits: &str) -> i64 {
    digits
        .bytes()
        .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'))
}

impl Money {
    /// Zero.
    pub const ZERO: Money = Money { minor: 0 };

    /// Decimals of every amount, in every currency: the shop counts in hundredths.
    pub const DECIMALS: u32 = 2;

    /// An amount of `minor` cents.
    #[must_use]
    pub const fn from_minor(minor: i64) -> Money {
        Money { minor }
    }

    /// The amount in cents.
    #[must_use]
    pub const fn minor(&self) -> i64 {
        self.minor
    }

    /// `self + other`, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, other: Money) -> Option<Money> {
        match self.minor.checked_add(other.minor) {
            Some(minor) => Some(Money { minor }),
            None => None,
        }
    }

    /// `self × quantity` (a line total), or `None` on overflow.
    #[must_use]
    pub const fn checked_mul(self, quantity: u32) -> Option<Money> {
        match self.minor.checked_mul(quantity as i64) {
            Some(minor) => Some(Money { minor }),
            None => None,
        }
    }

    /// Whether the amount is strictly greater than zero.
    #[must_use]
    pub const fn is_positive(&self) -> bool {
        self.minor > 0
    }

    /// Parses a plain decimal such as `999.99`, `999.9`, `999`, `0.50` or `-1.20`; see the
    /// [module documentation](self) for the exact rules.
    ///
    /// # Errors
    /// A [`MoneyError`] saying what is wrong with `s`.
    pub fn parse_decimal(s: &str) -> Result<Money, MoneyError> {
        if s.is_empty() {
            return Err(MoneyError::Empty);
        }
        let malformed = || {
            if looks_like_exponent(s) {
                MoneyError::Exponent { input: quote(s) }
            } else {
                MoneyError::Malformed { input: quote(s) }
            }
        };
        let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());

        let (negative, body) = match s.strip_prefix('-') {
            Some(body) => (true, body),
            None => (false, s),
        };
        let (integer, fraction) = match body.split_once('.') {
            Some((integer, fraction)) => (integer, fraction),
            None => (body, "00"),
        };
        if !all_digits(integer) || !all_digits(fraction) {
            return Err(malformed());
        }
        if integer.len() > 1 && integer.starts_with('0') {
            return Err(MoneyError::LeadingZeros { input: quote(s) });
        }
        if fraction.len() > 2 {
            return Err(MoneyError::TooManyDecimals { input: quote(s) });
        }
        if integer.len() > MAX_INTEGER_DIGITS {
            return Err(MoneyError::TooLarge { input: quote(s) });
        }

        // At most 15 + 2 digits: no overflow possible.
        let cents = if fraction.len() == 1 {
            digits_value(fraction) * 10
        } else {
            digits_value(fraction)
        };
        let magnitude = digits_value(integer) * 100 + cents;
        Ok(Money {
            minor: if negative { -magnitude } else { magnitude },
        })
    }

    /// Reads an amount from JSON: a string or a number holding a plain decimal, with the rules
    /// of [`Money::parse_decimal`]. A number is read from its exact text, so `999.99` is
    /// 99 999 cents, never `999.98999…`. A number in exponent form is refused
    /// ([`MoneyError::Exponent`]).
    ///
    /// # Errors
    /// A [`MoneyError`]; [`MoneyError::WrongType`] for `null`, booleans, arrays and objects.
    pub fn from_json(value: &RawValue) -> Result<Money, MoneyError> {
        match Kind::of(value) {
            Kind::String => Money::parse_decimal(&json::string(value).unwrap_or_default()),
            Kind::Number => Money::parse_decimal(json::number(value).unwrap_or_default()),
            other => Err(MoneyError::WrongType {
                found: other.name(),
            }),
        }
    }
}

/// Always two decimals: `999.99`, `0.05`, `-1.20`, `12.00`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minor < 0 { "-" } else { "" };
        let magnitude = self.minor.unsigned_abs();
        write!(f, "{sign}{}.{:02}", magnitude / 100, magnitude % 100)
    }
}

/// A JSON number with exactly two decimals (`999.99`, `12.00`), written from its exact text.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // serde_json's serializers write a raw value out verbatim, here as a number.
        let number = RawValue::from_string(self.to_string()).map_err(serde::ser::Error::custom)?;
        number.serialize(serializer)
    }
}

/// How the API and the records write an amount: a JSON number with exactly two decimals
/// (`999.99`, `12.00`), never in exponent form. Requests take more ([`amount_input_schema`]).
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        schema_from(serde_json::json!({
            "type": "number",
            "format": "decimal",
            "minimum": 0,
            "maximum": 999_999_999_999_999.99,
            "description": "An exact amount, written as a JSON number with exactly two decimals \
                (`999.99`, `12.00`) and never in exponent form: read it from its text as a \
                decimal (or into integer cents), not as binary floating point.",
            "examples": [999.99, 12.0],
        }))
    }
}

impl utoipa::ToSchema for Money {
    fn name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }
}

/// An amount a request may send: a decimal string or a JSON number, at most 2 decimals, no
/// exponent, no leading zeros, greater than 0, at most `max` when given (the text rules of
/// [`Money::parse_decimal`]).
pub fn amount_input_schema(max: Option<Money>) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    let mut number = serde_json::json!({"type": "number", "exclusiveMinimum": 0});
    if let Some(max) = max {
        number["maximum"] = serde_json::Value::from(max.minor() as f64 / 100.0);
    }
    schema_from(serde_json::json!({
        "description": format!(
            "An exact amount: a decimal string or a JSON number, with at most {} decimals, \
             no exponent, no leading zeros, no sign, spaces or separators; greater than 0{}.",
            Money::DECIMALS,
            max.map(|m| format!(" and at most {m}")).unwrap_or_default()
        ),
        "oneOf": [
            {"type": "string", "pattern": "^([1-9][0-9]{0,14}(\\.[0-9]{1,2})?|0\\.([1-9][0-9]?|0[1-9]))$"},
            number,
        ],
        "examples": ["999.99", 12.5],
    }))
}

/// A schema written as JSON (those the derive cannot say).
fn schema_from(value: serde_json::Value) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    serde_json::from_value(value).expect("a valid schema")
}

/// A JSON number or string, under [`Money::from_json`]'s rules.
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let value = Box::<RawValue>::deserialize(deserializer)?;
        Money::from_json(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<i64, MoneyError> {
        Money::parse_decimal(s).map(|m| m.minor())
    }

    #[test]
    fn constructors_and_arithmetic() {
        assert_eq!(Money::ZERO, Money::default());
        assert_eq!(Money::from_minor(1234).minor(), 1234);
        assert_eq!(
            Money::from_minor(150).checked_add(Money::from_minor(-50)),
            Some(Money::from_minor(100))
        );
        assert_eq!(
            Money::from_minor(i64::MAX).checked_add(Money::from_minor(1)),
            None
        );
        assert_eq!(
            Money::from_minor(1999).checked_mul(3),
            Some(Money::from_minor(5997))
        );
        assert_eq!(Money::from_minor(1999).checked_mul(0), Some(Money::ZERO));
        assert_eq!(Money::from_minor(i64::MAX / 2).checked_mul(3), None);
        assert_eq!(
            Money::from_minor(-1).checked_mul(u32::MAX),
            Some(Money::from_minor(-i64::from(u32::MAX)))
        );
        assert!(Money::from_minor(1).is_positive());
        assert!(!Money::ZERO.is_positive());
        assert!(!Money::from_minor(-1).is_positive());
        assert!(Money::from_minor(-1) < Money::ZERO);
    }

    #[test]
    fn parses_plain_decimals() {
        assert_eq!(parse("999.99"), Ok(99_999));
        assert_eq!(parse("999.9"), Ok(99_990));
        assert_eq!(parse("999"), Ok(99_900));
        assert_eq!(parse("0.50"), Ok(50));
        assert_eq!(parse("0.05"), Ok(5));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("0.0"), Ok(0));
        assert_eq!(parse("-1.20"), Ok(-120));
        assert_eq!(parse("-0.05"), Ok(-5));
        assert_eq!(parse("-0"), Ok(0));
        assert_eq!(parse("999999999999999.99"), Ok(99_999_999_999_999_999));
        assert_eq!(parse("-999999999999999.99"), Ok(-99_999_999_999_999_999));
    }

    #[test]
    fn refuses_more_than_two_decimals() {
        for s in ["1.005", "0.000", "12.345", "-1.001"] {
            let err = Money::parse_decimal(s).unwrap_err();
            assert!(
                matches!(err, MoneyError::TooManyDecimals { .. }),
                "{s}: {err:?}"
            );
            assert!(err.to_string().contains("more than 2 decimals"), "{err}");
        }
    }

    #[test]
    fn refuses_more_than_fifteen_integer_digits() {
        for s in [
            "1000000000000000",
            "1000000000000000.00",
            "-9999999999999999",
        ] {
            let err = Money::parse_decimal(s).unwrap_err();
            assert!(matches!(err, MoneyError::TooLarge { .. }), "{s}: {err:?}");
            assert!(err.to_string().contains("too large"), "{err}");
        }
        let huge = "9".repeat(400);
        let err = Money::parse_decimal(&huge).unwrap_err();
        assert!(matches!(err, MoneyError::TooLarge { .. }));
        assert!(
            err.to_string().len() < 200,
            "the message quotes a cut input"
        );
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for s in [
            " 1.00", "1.00 ", "\t1", "+1.00", "1,000.00", "1 000", "1_000", ".5", "5.", "-", "-.5",
            "--1", "1.2.3", "1.-2", "abc", "12€", "€12", "NaN", "inf", "0x10", "١٢", "1.5\n",
        ] {
            let err = Money::parse_decimal(s).unwrap_err();
            assert!(
                matches!(err, MoneyError::Malformed { .. }),
                "{s:?}: {err:?}"
            );
            assert!(err.to_string().contains("not a plain decimal"), "{err}");
        }
        assert_eq!(Money::parse_decimal(""), Err(MoneyError::Empty));
    }

    #[test]
    fn refuses_leading_zeros() {
        for s in ["007", "00.50", "-01.00"] {
            let err = Money::parse_decimal(s).unwrap_err();
            assert!(
                matches!(err, MoneyError::LeadingZeros { .. }),
                "{s}: {err:?}"
            );
        }
    }

    #[test]
    fn refuses_exponents() {
        for s in ["1e3", "1E3", "1.5e2", "1e-2", "1e+3", "-2E0"] {
            let err = Money::parse_decimal(s).unwrap_err();
            assert!(matches!(err, MoneyError::Exponent { .. }), "{s}: {err:?}");
            assert!(err.to_string().contains("exponent"), "{err}");
        }
    }

    #[test]
    fn displays_two_decimals() {
        assert_eq!(Money::from_minor(99_999).to_string(), "999.99");
        assert_eq!(Money::from_minor(5).to_string(), "0.05");
        assert_eq!(Money::from_minor(-120).to_string(), "-1.20");
        assert_eq!(Money::from_minor(-5).to_string(), "-0.05");
        assert_eq!(Money::from_minor(1200).to_string(), "12.00");
        assert_eq!(Money::ZERO.to_string(), "0.00");
        assert_eq!(
            Money::from_minor(i64::MIN).to_string(),
            "-92233720368547758.08"
        );
    }

    #[test]
    fn display_then_parse_round_trips() {
        for minor in -10_000..=10_000 {
            let m = Money::from_minor(minor);
            assert_eq!(Money::parse_decimal(&m.to_string()), Ok(m), "{m}");
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn from_json_takes_strings_and_exact_numbers() {
        assert_eq!(
            Money::from_json(&raw(r#""999.99""#)),
            Ok(Money::from_minor(99_999))
        );
        // Read from its text, so the number keeps its exact decimal digits.
        assert_eq!(
            Money::from_json(&raw("999.99")),
            Ok(Money::from_minor(99_999))
        );
        assert_eq!(Money::from_json(&raw("0.10")), Ok(Money::from_minor(10)));
        assert_eq!(Money::from_json(&raw("-3")), Ok(Money::from_minor(-300)));
        assert_eq!(Money::from_json(&raw("12")), Ok(Money::from_minor(1200)));

        let err = Money::from_json(&raw("1.005")).unwrap_err();
        assert!(err.to_string().contains("more than 2 decimals"), "{err}");
        assert!(matches!(
            Money::from_json(&raw("1e3")),
            Err(MoneyError::Exponent { .. })
        ));
        assert!(matches!(
            Money::from_json(&raw("12345678901234567890")),
            Err(MoneyError::TooLarge { .. })
        ));
        assert!(matches!(
            Money::from_json(&raw(r#"" 1.00""#)),
            Err(MoneyError::Malformed { .. })
        ));
    }

    #[test]
    fn from_json_refuses_other_types() {
        for value in ["null", "true", "[1]", r#"{"amount": 1}"#] {
            let err = Money::from_json(&raw(value)).unwrap_err();
            assert!(matches!(err, MoneyError::WrongType { .. }), "{value}");
            assert!(
                err.to_string()
                    .contains("must be a decimal string or a number"),
                "{err}"
            );
        }
    }

    #[test]
    fn serializes_as_a_number_with_two_decimals() {
        assert_eq!(
            serde_json::to_string(&Money::from_minor(99_999)).unwrap(),
            "999.99"
        );
        assert_eq!(
            serde_json::to_string(&Money::from_minor(1200)).unwrap(),
            "12.00"
        );
        assert_eq!(
            serde_json::to_string(&Money::from_minor(-5)).unwrap(),
            "-0.05"
        );
        #[derive(Serialize)]
        struct Line {
            total: Money,
        }
        assert_eq!(
            serde_json::to_string(&Line {
                total: Money::from_minor(1200)
            })
            .unwrap(),
            r#"{"total":12.00}"#
        );
    }

    #[test]
    fn serde_round_trips() {
        for minor in [0, 1, 5, 120, 1200, 99_999, -120, -5, 99_999_999_999_999_999] {
            let m = Money::from_minor(minor);
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Money>(&text).unwrap(), m, "{text}");
        }
        assert_eq!(
            serde_json::from_str::<Money>("12.00").unwrap(),
            Money::from_minor(1200)
        );
    }

    #[test]
    fn deserializes_a_number_or_a_string() {
        #[derive(Debug, Deserialize)]
        struct Line {
            price: Money,
        }

        assert_eq!(
            serde_json::from_str::<Money>("999.99").unwrap(),
            Money::from_minor(99_999)
        );
        assert_eq!(
            serde_json::from_str::<Money>(r#""0.50""#).unwrap(),
            Money::from_minor(50)
        );
        let line: Line = serde_json::from_str(r#"{"price": 19.9}"#).unwrap();
        assert_eq!(line.price, Money::from_minor(1990));

        let err = serde_json::from_str::<Money>("1.005").unwrap_err();
        assert!(err.to_string().contains("more than 2 decimals"), "{err}");
        let err = serde_json::from_str::<Money>("null").unwrap_err();
        assert!(
            err.to_string()
                .contains("must be a decimal string or a number"),
            "{err}"
        );
        let err = serde_json::from_str::<Line>(r#"{"price": "1,000.00"}"#).unwrap_err();
        assert!(err.to_string().contains("not a plain decimal"), "{err}");
    }
}
