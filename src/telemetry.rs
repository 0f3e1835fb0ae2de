//! Logging through `tracing`: text for people, JSON for collectors. `RUST_LOG` refines the
//! default level (`info`; rskafka's own retry chatter at `error`, and its controller client off,
//! since it logs a handled `TopicAlreadyExists` race as an error): shopstream reports Kafka
//! trouble itself, once.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

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
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
