//! # shopstream
//!
//! An e-commerce order pipeline and live operations dashboard on Apache Kafka, in one static,
//! C-free binary. Shop clients call the REST API; every order, payment and delivery change is
//! an event in Kafka (through the pure-Rust client rskafka); the server consumes its topics
//! partition by partition with offsets it tracks itself and serves what it rebuilt.
//!
//! ## Map of the crate
//! - [`config`]: flags and environment variables.
//! - [`telemetry`]: logging (text or JSON).
//! - [`kafka`]: the rskafka client with deadlines, its health, the topics.
//! - [`http`]: the hyper server, routing, the JSON error type.
//! - [`shutdown`]: SIGINT/SIGTERM to a cancellation token.
//!
//! [`run`] wires them together; `main.rs` only parses the configuration and calls it.

pub mod config;
pub mod domain;
pub mod http;
pub mod kafka;
pub mod model;
pub mod shutdown;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use kafka::KafkaConnection;

/// State shared by every request handler. Written only at start-up; the parts that change
/// (Kafka's status) carry their own synchronisation.
#[derive(Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Written by the Kafka supervisor task, read by handlers.
    pub kafka: KafkaConnection,
    pub started_at: Instant,
}

/// The address a person on this machine opens: a wildcard listen address becomes loopback.
fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}/", SocketAddr::new(ip, addr.port()))
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the server until `shutdown` is cancelled (by a signal, or by the caller in tests).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let config = Arc::new(config);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: config.listen,
        source,
    })?;

    let kafka = KafkaConnection::start(Arc::clone(&config), shutdown.child_token());
    let state = Arc::new(AppState {
        config: Arc::clone(&config),
        kafka,
        started_at: Instant::now(),
    });

    tracing::info!(
        %addr,
        dashboard = %local_url(addr),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    http::serve(listener, state, shutdown.clone()).await;
    tracing::info!("stopped");
    Ok(())
}
