//! Logging through `tracing`: text for people, JSON for collectors. `RUST_LOG` refines the
//! default level (`info`; rskafka's own retry chatter at `error`, and its controller client off,
//! since it logs a handled `TopicAlreadyExists` race as an error): shopstream reports Kafka
//! trouble itself, once.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

mod json_lines;

/// Installs the global subscriber; call once, before anything logs. Logs go to stderr so that
/// stdout stays free for what a command prints (`--version`, the healthcheck answer).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rskafka=error,rskafka::client::controller=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests that start several servers in one process) is harmless.
    let _ = match format {
        // Colours for a terminal only: a file, a pipe or a container's log keeps plain text.
        LogFormat::Text => builder.with_ansi(colours_wanted()).try_init(),
        LogFormat::Json => builder.event_format(json_lines::JsonLines).try_init(),
    };
}

/// Whether text logs are coloured: stderr is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>).
fn colours_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A W3C trace context (`traceparent`, <https://www.w3.org/TR/trace-context/>): the trace a
/// request belongs to and the span that stands for it here. It goes from the HTTP request into
/// the Kafka record's headers, so that one trace id runs from the client through the access
/// log to the consumer that applies the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// Reads a `traceparent` header; `None` when it is malformed (the request then starts a
    /// trace of its own, as the specification asks). Versions after 00 are read by their first
    /// four fields, as the specification allows.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let mut parts = header.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || !is_lower_hex(version) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = decode_hex(trace)?;
        let span_id: [u8; 8] = decode_hex(span)?;
        let [flags]: [u8; 1] = decode_hex(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace, for a request that carried none.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero(rand::random()),
            span_id: nonzero(rand::random()),
            sampled: false,
        }
    }

    /// The span that stands for this request inside the caller's trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero(rand::random()),
            ..*self
        }
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        let mut header = String::with_capacity(55);
        header.push_str("00-");
        push_hex(&mut header, &self.trace_id);
        header.push('-');
        push_hex(&mut header, &self.span_id);
        header.push_str(if self.sampled { "-01" } else { "-00" });
        header
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

/// What one HTTP request is known by in the logs and in the records it writes.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `X-Request-Id` as the client sent it (when sane), or a new one; echoed back.
    pub request_id: String,
    /// This request's span: a child of the client's `traceparent`, or a new trace.
    pub trace: TraceContext,
}

impl RequestContext {
    /// From the request's `X-Request-Id` and `traceparent` headers.
    pub fn from_headers(request_id: Option<&str>, traceparent: Option<&str>) -> Self {
        let request_id = request_id
            .map(str::trim)
            .filter(|id| {
                (1..=128).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
            })
            .map(str::to_string)
            .unwrap_or_else(|| hex(&rand::random::<[u8; 8]>()));
        let trace = traceparent
            .and_then(TraceContext::parse)
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        Self { request_id, trace }
    }
}

fn nonzero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes == [0; N] {
        bytes[N - 1] = 1;
    }
    bytes
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex: trace, span and request ids, several on every request.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_round_trips() {
        let parent = TraceContext::parse(EXAMPLE).unwrap();
        assert!(parent.sampled);
        assert_eq!(parent.header(), EXAMPLE);
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert!(
            child
                .header()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
        assert!(child.header().ends_with("-01"));
    }

    #[test]
    fn ids_are_written_in_lower_case_hex_and_read_back() {
        let every_byte: Vec<u8> = (0..=255).collect();
        let written = hex(&every_byte);
        assert!(written.starts_with("000102"));
        assert!(written.ends_with("fdfeff"));
        for chunk in every_byte.chunks(16) {
            let chunk: [u8; 16] = chunk.try_into().unwrap();
            assert_eq!(decode_hex::<16>(&hex(&chunk)), Some(chunk));
        }
        let unsampled = TraceContext {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            sampled: false,
        };
        assert_eq!(
            unsampled.header(),
            format!("00-{}-{}-00", "ab".repeat(16), "01".repeat(8))
        );
        assert_eq!(TraceContext::parse(&unsampled.header()), Some(unsampled));
    }

    #[test]
    fn malformed_trace_contexts_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more")
                .is_some()
        );
        let context = RequestContext::from_headers(None, Some("garbage"));
        assert_eq!(context.trace.header().len(), EXAMPLE.len());
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_made_otherwise() {
        let kept = RequestContext::from_headers(Some("req-42.a:b"), None);
        assert_eq!(kept.request_id, "req-42.a:b");
        for bad in ["", "has space", "new\nline", &"x".repeat(129)] {
            let made = RequestContext::from_headers(Some(bad), None);
            assert_eq!(made.request_id.len(), 16, "{bad:?}");
        }
    }
}
