//! # shopstream
//!
//! An e-commerce order pipeline and live operations dashboard on Apache Kafka, in one static,
//! C-free binary. Shop clients call the REST API; every order, payment and delivery change is
//! an event in Kafka (through the pure-Rust client rskafka); the server consumes its topics
//! partition by partition with offsets it tracks itself, rebuilds its state from them and
//! pushes every event to open dashboards.
//!
//! ## Map of the crate
//! - [`config`]: flags and environment variables.
//! - [`access`]: who may do what: roles, tokens, session cookies, the cross-site rules.
//! - [`telemetry`]: logging (text or JSON).
//! - [`metrics`]: the instruments behind `/metrics` (prometheus-client) and the `/proc` readers.
//! - [`domain`]: pure shop logic: money, partitioner, event records, lifecycle, validation.
//! - [`model`]: the read model built from consumed events, its queries, and the
//!   [`model::store::Store`] on disk (fjall) that holds it with its offsets.
//! - [`kafka`]: rskafka with deadlines: connection and health, topics, the one access layer
//!   to a partition (fetches read by shopstream itself, every codec in pure Rust) and the one
//!   record decoder, producer lanes, partition consumers.
//! - [`shop`]: the commands (place, pay, cancel, ship, advance): validate against the read
//!   model, write the event, answer.
//! - [`live`]: cursors and the WebSocket sessions (the fan-out ring is the store's).
//! - [`messages`]: the JSON shopstream sends, as typed structs (so far the live event frame).
//! - [`http`]: the hyper server, routing, handlers, the WebSocket upgrade, the JSON error type.
//! - [`shutdown`]: SIGINT/SIGTERM to a cancellation token.
//! - [`notify`]: systemd's readiness protocol (`READY=1` once caught up, `STATUS=`,
//!   `STOPPING=1`).
//! - [`musl_string`]: the static musl build's `memcpy`, `memmove`, `memcmp` and `bcmp`, in
//!   place of musl's byte loops.
//! - [`allocator`]: the static musl build's global allocator (small freed blocks cached in
//!   shards in front of musl's), and handing glibc's freed pages back once the store is quiet
//!   or the resident size passes its ceiling.
//!
//! [`run`] wires them together; `main.rs` only parses the configuration and calls it.

pub mod access;
pub mod allocator;
pub mod config;
pub mod domain;
pub mod http;
pub mod kafka;
pub mod live;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod musl_string;
pub mod notify;
pub mod shop;
pub mod shutdown;
pub mod simulator;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use kafka::KafkaConnection;
use kafka::consumer::CatchUp;
use kafka::producer::Producer;
use model::store::{Resumed, Store, StoreSettings};
use shop::Shop;

/// State shared by every request handler. The fields are set at start-up; the parts that
/// change carry their own synchronisation.
#[derive(Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Tokens, roles and the cross-site rules; set at start-up (only its sign-out list
    /// changes, behind its own lock).
    pub access: access::Access,
    /// Written by the Kafka supervisor task, read by everyone.
    pub kafka: KafkaConnection,
    /// Written by its applier thread only (fed by the partition consumers); read by
    /// handlers, commands and live sessions.
    pub store: Arc<Store>,
    pub shop: Arc<Shop>,
    /// The built-in traffic simulator (its task runs beside the pipeline).
    pub simulator: Arc<simulator::Simulator>,
    /// Set once the consumers started; tells whether the replay at start is over.
    pub catch_up: std::sync::OnceLock<Arc<CatchUp>>,
    pub started_at: Instant,
    /// The instruments of `/metrics`: observed by the HTTP wrapper, the producer's lanes, the
    /// store's applier and the live sessions; read by scrapes.
    pub metrics: metrics::Metrics,
    /// Cancelled at shutdown (live sessions close with a close frame).
    pub shutdown: CancellationToken,
    /// The live WebSocket sessions, awaited (bounded) at shutdown so their close frames go out.
    pub sessions: tokio_util::task::TaskTracker,
    /// One permit per live session (`--max-live-sessions`).
    pub live_permits: Arc<tokio::sync::Semaphore>,
    /// One permit per WebSocket replay from Kafka running at once.
    pub replays: Arc<tokio::sync::Semaphore>,
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
    #[error(transparent)]
    Store(#[from] model::store::OpenError),
    #[error("access tokens: {0}")]
    Access(#[from] access::TokenError),
    #[error("configuration: {0}")]
    Config(String),
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

/// The access rules from the configuration, with a word in the log on how clients are let in.
fn access_rules(config: &Config, addr: SocketAddr) -> Result<access::Access, RunError> {
    let access = access::Access::new(&access::AccessSettings {
        tokens: config.tokens.0.clone(),
        tokens_file: config.tokens_file.clone(),
        allow_unauthenticated: config.allow_unauthenticated,
        allowed_origins: config.allowed_origins.clone(),
        allowed_hosts: config.allowed_hosts.clone(),
        signed_out_file: Some(config.data_dir.join("signed-out-sessions")),
    })?;
    if let Some(file) = &config.tokens_file
        && access::world_readable(file)
    {
        tracing::warn!(path = %file.display(), "the tokens file can be read by every user of this machine: chmod 600 it");
    }
    match access.mode() {
        "tokens" => tracing::info!(tokens = %access.summary(), "clients need an access token"),
        "open" if !access::is_loopback(addr.ip()) => tracing::warn!(
            "--allow-unauthenticated: every client that reaches {addr} may do everything, \
             without a token; configure tokens unless this network is trusted"
        ),
        "open" => {}
        _ => tracing::info!(
            "no access token configured: only clients on this machine (loopback) are served; \
             set SHOPSTREAM_TOKENS or --tokens-file to serve others"
        ),
    }
    Ok(access)
}

/// Runs the server on `config.listen` until `shutdown` is cancelled (by a signal).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let listener =
        http::listen(config.listen, config.max_connections).map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    serve(listener, config, shutdown).await
}

/// The resident size above which freed memory is handed back to the system: seven quarters of
/// `--cache-size` (112 MiB by default), so that the process stays under twice the cache with
/// room for what a second of load allocates before the next look.
fn ceiling_for_cache(cache_size: usize) -> u64 {
    (cache_size as u64).saturating_mul(7) / 4
}

/// Runs the server on a bound `listener` until `shutdown` is cancelled: what [`run`] does
/// once it listens, and what tests call in-process on a port 0 listener.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let config = Arc::new(config);
    let addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: config.listen,
        source,
    })?;
    let access = access_rules(&config, addr)?;
    config.kafka_sasl().map_err(RunError::Config)?;

    allocator::set_resident_ceiling(ceiling_for_cache(config.cache_size));
    let store = {
        let settings = StoreSettings {
            dir: config.data_dir.clone(),
            cache_bytes: config.cache_size,
            retention: config.retention,
            rebuild: config.rebuild_store,
            live_buffer: config.live_buffer,
        };
        let opened = tokio::task::spawn_blocking(move || Store::open(settings))
            .await
            .expect("opening the store does not panic")?;
        Arc::new(opened)
    };
    let background = shutdown.child_token();
    let kafka = KafkaConnection::start(Arc::clone(&config), background.clone());
    let producer = Producer::new(kafka.clone(), config.kafka_timeout, background.clone());
    let metrics = metrics::Metrics::new(
        http::routes::templates(),
        producer.metrics(),
        store.commit_durations(),
    );
    let shop = Arc::new(Shop::new(Arc::clone(&store), producer));
    let simulator = Arc::new(simulator::Simulator::new(config.simulate));
    tokio::spawn(Arc::clone(&simulator).run(Arc::clone(&shop), background.clone()));
    let state = Arc::new(AppState {
        config: Arc::clone(&config),
        access,
        kafka: kafka.clone(),
        store: Arc::clone(&store),
        shop,
        simulator,
        catch_up: std::sync::OnceLock::new(),
        started_at: Instant::now(),
        metrics,
        shutdown: shutdown.clone(),
        sessions: tokio_util::task::TaskTracker::new(),
        live_permits: Arc::new(tokio::sync::Semaphore::new(
            config.max_live_sessions as usize,
        )),
        replays: Arc::new(tokio::sync::Semaphore::new(
            live::session::CONCURRENT_REPLAYS,
        )),
    });

    // Under systemd (`Type=notify`): told when the replay is over, and when stopping.
    let notifier = notify::Notifier::from_env().map(Arc::new);
    if let Some(notifier) = &notifier {
        notifier.status("connecting to Kafka", None);
    }
    let group = config.consumer_group_name(addr.port());
    let pipeline = tokio::spawn(run_pipeline(
        Arc::clone(&state),
        background.clone(),
        notifier.clone(),
        group,
    ));

    tracing::info!(
        %addr,
        dashboard = %local_url(addr),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    http::serve(listener, Arc::clone(&state), shutdown.clone()).await;
    if let Some(notifier) = &notifier {
        notifier.stopping("stopping: closing live sessions and committing what was applied");
    }
    state.sessions.close();
    if tokio::time::timeout(Duration::from_secs(5), state.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("live sessions still open after 5 s; leaving them");
    }
    background.cancel();
    let _ = pipeline.await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for Kafka, checks that the store was built for these topics, runs the partition
/// consumers (and beside them the report of the replay's progress and the commits to the
/// consumer `group`); at shutdown stops them, closes the store with a last durable commit, and
/// commits its offsets to the group a last time.
async fn run_pipeline(
    state: Arc<AppState>,
    shutdown: CancellationToken,
    notifier: Option<Arc<notify::Notifier>>,
    group: String,
) {
    let mut status = state.kafka.subscribe();
    let session = loop {
        if let Some(session) = status.borrow_and_update().session.clone() {
            break session;
        }
        tokio::select! {
            _ = shutdown.cancelled() => { close_store(&state).await; return },
            changed = status.changed() => if changed.is_err() { close_store(&state).await; return },
        }
    };
    let layout = session.topics.clone();

    let from_store = match state.store.check_layout(&layout).await {
        Ok(Resumed::FromStore { events, orders }) => {
            tracing::info!(
                events,
                orders,
                path = %state.store.path().display(),
                "resuming from the store's offsets"
            );
            true
        }
        Ok(Resumed::Empty) => {
            tracing::info!("the store is empty; replaying the log from the earliest offsets");
            false
        }
        Ok(Resumed::Discarded(why)) => {
            tracing::warn!(%why, "discarded the store; replaying the log from the earliest offsets");
            false
        }
        Err(error) => {
            tracing::error!(%error, "cannot check the store; replaying from its offsets anyway");
            true
        }
    };

    let partitions: usize = layout.topics.iter().map(|t| t.partitions as usize).sum();
    let catch_up = Arc::new(CatchUp::new(partitions, from_store));
    let _ = state.catch_up.set(Arc::clone(&catch_up));
    tokio::spawn(follow_replay(
        Arc::clone(&catch_up),
        notifier,
        state.config.progress_interval,
        shutdown.clone(),
    ));
    let commits = state.config.group_commit_interval.0.map(|every| {
        let committer = kafka::group::GroupCommitter::new(
            group,
            state.config.kafka_brokers.clone(),
            // Checked at start; the Kafka connection uses the same.
            state.config.kafka_sasl().ok().flatten(),
            state.config.kafka_timeout,
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(kafka::group::run(
            committer,
            state.kafka.clone(),
            Arc::clone(&state.store),
            every,
            stop.clone(),
        ));
        (stop, task)
    });
    let context = kafka::consumer::ConsumerContext {
        kafka: state.kafka.clone(),
        store: Arc::clone(&state.store),
        catch_up,
        kafka_timeout: state.config.kafka_timeout,
    };
    kafka::consumer::run(&session, &context, status, shutdown).await;
    close_store(&state).await;
    if let Some((stop, task)) = commits {
        // The group ends where the store ended.
        stop.cancel();
        let _ = task.await;
    }
}

/// Reports the replay at start while it runs: a log line (target `shopstream::progress`) and
/// systemd's `STATUS=` every `every` (extending systemd's start timeout while records move),
/// then `READY=1` once it is over.
async fn follow_replay(
    catch_up: Arc<CatchUp>,
    notifier: Option<Arc<notify::Notifier>>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_done = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = catch_up.wait_done() => break,
            _ = ticks.tick() => {}
        }
        let progress = catch_up.progress();
        if progress.caught_up {
            break;
        }
        tracing::info!(
            target: "shopstream::progress",
            records_done = progress.records_done,
            records_total = progress.records_total,
            percent = (progress.fraction() * 1000.0).round() / 10.0,
            records_per_second = progress.records_per_second.map(|r| r.round()),
            eta_seconds = progress.eta.map(|eta| eta.as_secs()),
            partitions_done = progress.partitions_done,
            partitions = progress.partitions,
            "catching up with the log"
        );
        if let Some(notifier) = &notifier {
            // Records move: the start is not stuck, give it three more reports' time.
            let moving = progress.records_done > last_done;
            notifier.status(&progress.summary(), moving.then_some(every * 3));
        }
        last_done = progress.records_done;
    }
    if let Some(notifier) = &notifier {
        notifier.ready(&catch_up.progress().summary());
    }
}

/// How long an exit waits for fjall's worker to end the flush or compaction it is running
/// once the last commit is durable ([`model::store::Store::close_within`]).
const STORE_CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Lets the applier finish what it was handed and make it durable.
async fn close_store(state: &AppState) {
    let store = Arc::clone(&state.store);
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || store.close_within(STORE_CLOSE_WAIT))
        .await
        .unwrap_or(false);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if closed {
        tracing::debug!(elapsed_ms, "store closed");
    } else {
        tracing::info!(
            elapsed_ms,
            "store committed and synced; not waiting for fjall's worker to end its compaction (a restart recovers from the journal)"
        );
    }
}
