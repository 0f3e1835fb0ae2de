//! JSON read from its exact text. A request body or a record value is parsed into
//! [`RawValue`]s, which keep each value's text as it was sent: an amount such as `999.99` or
//! `1e3` reaches [`Money`](super::money::Money) as those characters, never as the nearest `f64`,
//! without a crate-wide `arbitrary_precision` (which would change every `serde_json` user).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// What a raw value is, from its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool(bool),
    /// Its text is the number as written.
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    pub fn of(raw: &RawValue) -> Kind {
        let text = raw.get().trim_start();
        match text.as_bytes().first() {
            Some(b'n') => Kind::Null,
            Some(b't') => Kind::Bool(true),
            Some(b'f') => Kind::Bool(false),
            Some(b'"') => Kind::String,
            Some(b'[') => Kind::Array,
            Some(b'{') => Kind::Object,
            // A RawValue is valid JSON: what is left is a number.
            _ => Kind::Number,
        }
    }

    /// "a string", "an array"..., for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// A member name, borrowed from the document unless it has escapes (a body's or a record's
/// names seldom do: reading them allocates nothing).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberName<'a>(pub Cow<'a, str>);

impl MemberName<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for MemberName<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = MemberName<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<MemberName<'de>, E> {
                Ok(MemberName(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<MemberName<'de>, E> {
                Ok(MemberName(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<MemberName<'de>, E> {
                Ok(MemberName(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// The members of an object, by name (sorted; a name given twice keeps its last value, as
/// `serde_json::Value` does), each value as its text. `None` when `raw` is not an object.
pub fn object(raw: &RawValue) -> Option<BTreeMap<MemberName<'_>, &RawValue>> {
    if Kind::of(raw) != Kind::Object {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// The string a raw value holds, unescaped; `None` when it is not a string.
pub fn string(raw: &RawValue) -> Option<String> {
    match Kind::of(raw) {
        Kind::String => serde_json::from_str(raw.get()).ok(),
        _ => None,
    }
}

/// The number's text, exactly as written; `None` when it is not a number.
pub fn number(raw: &RawValue) -> Option<&str> {
    match Kind::of(raw) {
        Kind::Number => Some(raw.get().trim()),
        _ => None,
    }
}

/// How deep a document may nest: serde_json's own limit for a parsed `Value`. Raw values are
/// parsed without one, so bodies are checked with [`nesting_depth`] before anything walks them.
pub const MAX_DEPTH: usize = 128;

/// How deeply `text` nests arrays and objects (strings skipped), counting no further than
/// `limit + 1`: one pass over the bytes, no recursion.
pub fn nesting_depth(text: &[u8], limit: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return deepest;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// JSON's `null`, where a value must be given.
pub fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}

/// A borrowed JSON `null`, for serialising without allocating.
pub fn null_ref() -> &'static RawValue {
    static NULL: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    NULL.get_or_init(null)
}

/// One text per JSON document that means the same: members sorted by name, strings in one
/// escaping, no whitespace; numbers as written (`12.5` and `12.50` stay apart, as the client
/// sent them). What a request's fingerprint is computed from.
pub fn canonical(raw: &RawValue) -> String {
    let mut out = String::with_capacity(raw.get().len());
    write_canonical(raw, &mut out, 0);
    out
}

fn write_canonical(raw: &RawValue, out: &mut String, depth: usize) {
    if depth >= MAX_DEPTH {
        // Deeper than any body that reaches here (they are checked first): kept as written.
        out.push_str(raw.get().trim());
        return;
    }
    match Kind::of(raw) {
        Kind::Object => {
            let members = object(raw).unwrap_or_default();
            out.push('{');
            for (i, (name, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name.as_str()).unwrap_or_default());
                out.push(':');
                write_canonical(value, out, depth + 1);
            }
            out.push('}');
        }
        Kind::Array => {
            let items: Vec<&RawValue> = serde_json::from_str(raw.get()).unwrap_or_default();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out, depth + 1);
            }
            out.push(']');
        }
        Kind::String => {
            let s = string(raw).unwrap_or_default();
            out.push_str(&serde_json::to_string(&s).unwrap_or_default());
        }
        Kind::Null | Kind::Bool(_) | Kind::Number => out.push_str(raw.get().trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_keep_their_text() {
        let body = raw(r#"{"amount": 999.99, "big": 123456789012345678901234567890.12, "e": 1e3}"#);
        let members = object(&body).unwrap();
        assert_eq!(number(members["amount"]), Some("999.99"));
        assert_eq!(
            number(members["big"]),
            Some("123456789012345678901234567890.12")
        );
        assert_eq!(number(members["e"]), Some("1e3"));
        assert_eq!(string(members["amount"]), None);
    }

    #[test]
    fn member_names_are_borrowed_unless_escaped_and_the_last_of_a_name_wins() {
        let body = raw(r#"{"product": 1, "na\u006De": 2, "name": 3, "\"q\"": 4}"#);
        let members = object(&body).unwrap();
        let names: Vec<&str> = members.keys().map(MemberName::as_str).collect();
        assert_eq!(names, ["\"q\"", "name", "product"]);
        assert_eq!(members["name"].get(), "3");
        let borrowed = |name: &str| {
            matches!(
                members.keys().find(|k| k.as_str() == name).map(|k| &k.0),
                Some(Cow::Borrowed(_))
            )
        };
        assert!(borrowed("product"));
        assert!(!borrowed("\"q\""));
        assert!(object(&raw("[1]")).is_none());
    }

    #[test]
    fn kinds_and_strings() {
        assert_eq!(Kind::of(&raw("null")), Kind::Null);
        assert_eq!(Kind::of(&raw("true")), Kind::Bool(true));
        assert_eq!(Kind::of(&raw("[1]")), Kind::Array);
        assert_eq!(Kind::of(&raw("-0.5")), Kind::Number);
        assert_eq!(
            string(&raw(r#""caf\u00e9 \"x\"""#)).as_deref(),
            Some("café \"x\"")
        );
        assert!(object(&raw("[1, 2]")).is_none());
        // A name given twice keeps its last value.
        let twice = raw(r#"{"a": 1, "a": 2}"#);
        let members = object(&twice).unwrap();
        assert_eq!(members["a"].get(), "2");
    }

    #[test]
    fn nesting_is_measured_without_recursion_and_strings_do_not_count() {
        assert_eq!(nesting_depth(br#"{"a": [1, {"b": "[[[["}]}"#, MAX_DEPTH), 3);
        assert_eq!(nesting_depth(br#""\"[{""#, MAX_DEPTH), 0);
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(nesting_depth(deep.as_bytes(), MAX_DEPTH), MAX_DEPTH + 1);
        // canonical() stops at the limit instead of recursing on.
        let deep: Box<RawValue> = serde_json::from_str(&deep).unwrap();
        assert_eq!(canonical(&deep).len(), 200_000);
    }

    #[test]
    fn canonical_text_ignores_member_order_whitespace_and_escapes() {
        let a = raw(r#"{"b": [1, {"y": "\u0041", "x": null}], "a": 12.50}"#);
        let b = raw(r#"{ "a":12.50,"b":[1,{"x":null,"y":"A"}] }"#);
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a), r#"{"a":12.50,"b":[1,{"x":null,"y":"A"}]}"#);
        assert_ne!(canonical(&raw(r#"{"a": 12.5}"#)), canonical(&a));
        // Escaped names are read unescaped and written back as JSON writes them.
        let escaped = raw(r#"{"na\u006De": 1, "\"q\"": 2, "tab\t": 3}"#);
        assert_eq!(canonical(&escaped), r#"{"\"q\"":2,"name":1,"tab\t":3}"#);
    }
}
