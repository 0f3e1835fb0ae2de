//! `--log-format json`: one JSON object per line, written straight into the line's buffer.
//!
//! The lines are those tracing-subscriber's `json().flatten_event(true)` writes (timestamp,
//! level, the event's fields in order, target), so collectors see no change; only the cost
//! differs. tracing-subscriber builds each line through `serde_json` over an adaptor that
//! checks every piece as UTF-8 again, and the access log writes one line per request: its
//! formatting was about 6% of the async workers' time under a write load (README, "Logs
//! and traces").

use std::fmt::{self, Write};
use std::time::SystemTime;

use chrono::{DateTime, Datelike, Timelike, Utc};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `--log-format json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, DateTime::<Utc>::from(SystemTime::now()))?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`, the way `tracing-serde` serializes it: strings,
/// numbers and booleans as themselves, everything else (`%display`, `?debug`, errors, the
/// message) as the string it formats to.
struct Fields<'w, 'a> {
    out: &'w mut Writer<'a>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        let out = &mut *self.out;
        self.result = self.result.and_then(|()| {
            out.write_char(',')?;
            write_string(out, field.name())?;
            out.write_char(':')?;
            value(out)
        });
    }
}

impl Visit for Fields<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| write_string(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's own digits (and `null` for NaN and the infinities), as before.
        self.entry(field, |out| {
            let mut digits = [0u8; 40];
            let mut rest = &mut digits[..];
            serde_json::to_writer(&mut rest, &value).map_err(|_| fmt::Error)?;
            let len = 40 - rest.len();
            out.write_str(std::str::from_utf8(&digits[..len]).map_err(|_| fmt::Error)?)
        });
    }
}

/// A JSON string: quoted, with `"`, `\` and the control characters escaped as `serde_json`
/// escapes them.
fn write_string(out: &mut impl Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what is written through it for the inside of a JSON string.
struct Escaped<'w, W: Write>(&'w mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

/// `2026-12-08T02:58:46.437049Z`: RFC 3339 in UTC, to the microsecond, as tracing-subscriber's
/// default timer writes it.
fn write_timestamp(out: &mut impl Write, t: DateTime<Utc>) -> fmt::Result {
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, u32::try_from(t.year()).unwrap_or(0).min(9999));
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    // A leap second shows as the 60th second, as chrono keeps it in the fraction.
    put(17, 2, t.second() + t.nanosecond() / 1_000_000_000);
    put(20, 6, t.nanosecond() % 1_000_000_000 / 1_000);
    out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[derive(Debug)]
    struct Shape {
        #[expect(dead_code, reason = "read through its Debug only")]
        name: &'static str,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the broker said \"no\"")]
    struct Refusal;

    /// Every kind of field shopstream logs, and strings that need escaping.
    fn log_everything() {
        let peer: std::net::SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let error = Refusal;
        tracing::info!(
            target: "shopstream::access",
            method = %"POST",
            route = "/api/orders/{id}",
            status = 201u16,
            duration_ms = 0.045510999999999996,
            request_id = %"id-1",
            %peer,
        );
        tracing::warn!(%error, attempt = 3, "a produce failed; retrying");
        tracing::info!(
            quote = "say \"hi\"\\ now",
            controls = "tab\tline\nreturn\rbell\u{7}nul\u{0}esc\u{1b}del\u{7f}",
            unicode = "café ☕ 🚚",
            negative = -12i64,
            big = u64::MAX,
            yes = true,
            whole = 1.0f64,
            tiny = 1e-7f64,
            huge = 1.5e300f64,
            nan = f64::NAN,
            infinite = f64::INFINITY,
            shape = ?Shape { name: "a \"box\"" },
            "message with {} and \"quotes\"",
            "arguments",
        );
        tracing::error!("only a message");
        tracing::debug!(unseen = 1, "below the level");
    }

    /// The same line without its timestamp's value.
    fn without_timestamp(line: &str) -> String {
        let start = line.find("\"timestamp\":\"").unwrap() + 13;
        let end = start + line[start..].find('"').unwrap();
        format!("{}{}", &line[..start], &line[end..])
    }

    #[test]
    fn lines_are_the_ones_tracing_subscribers_json_format_writes() {
        let ours = Captured::default();
        let theirs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(ours.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(theirs.clone())
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);

        let (ours, theirs) = (ours.lines(), theirs.lines());
        assert_eq!(ours.len(), 4, "{ours:?}");
        assert_eq!(
            ours.iter()
                .map(|l| without_timestamp(l))
                .collect::<Vec<_>>(),
            theirs
                .iter()
                .map(|l| without_timestamp(l))
                .collect::<Vec<_>>()
        );
        for line in &ours {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(value["timestamp"].is_string(), "{line}");
        }
        let fields: serde_json::Value = serde_json::from_str(&ours[2]).unwrap();
        assert_eq!(
            fields["controls"],
            "tab\tline\nreturn\rbell\u{7}nul\u{0}esc\u{1b}del\u{7f}"
        );
        assert_eq!(fields["unicode"], "café ☕ 🚚");
        assert_eq!(fields["message"], "message with arguments and \"quotes\"");
        assert!(fields["nan"].is_null() && fields["infinite"].is_null());
    }

    #[test]
    fn the_timestamp_is_rfc_3339_in_utc_to_the_microsecond() {
        let cases = [
            (
                "2026-12-08T02:58:46.437049Z",
                "2026-12-08T02:58:46.437049999Z",
            ),
            ("1970-01-01T00:00:00.000000Z", "1970-01-01T00:00:00Z"),
            (
                "2024-02-29T23:59:59.999999Z",
                "2024-02-29T23:59:59.999999999Z",
            ),
            ("9999-12-31T23:59:59.000001Z", "9999-12-31T23:59:59.000001Z"),
        ];
        for (expected, time) in cases {
            let t = DateTime::parse_from_rfc3339(time).unwrap().to_utc();
            let mut text = String::new();
            write_timestamp(&mut text, t).unwrap();
            assert_eq!(text, expected);
        }
        let now = Utc::now();
        let mut text = String::new();
        write_timestamp(&mut text, now).unwrap();
        let back = DateTime::parse_from_rfc3339(&text).unwrap().to_utc();
        assert_eq!(
            back,
            now.with_nanosecond(now.nanosecond() / 1_000 * 1_000)
                .unwrap()
        );
    }
}
