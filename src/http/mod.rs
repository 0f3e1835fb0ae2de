//! The HTTP server: hyper 1 with hyper-util, no framework.
//!
//! - [`serve`]: the accept loop (HTTP/1.1 and HTTP/2, upgrades for WebSocket), a cap on
//!   connections, the timeouts that keep one client from holding a connection for ever,
//!   back-off on accept errors, graceful shutdown that lets requests in flight finish.
//! - [`guard`]: who may ask what (tokens, roles, origins, hosts), the sign-in, and the security
//!   headers of every answer.
//! - [`routes`]: one `match` from (method, path) to a handler.
//! - [`openapi`]: `GET /api/openapi.json`, described from the route table and the answer
//!   types.
//! - [`error`]: the one error type every handler returns.
//! - [`upgrade`]: the WebSocket handshake of `GET /ws`, which hands the socket to a live
//!   session.

pub mod assets;
pub mod error;
pub mod guard;
pub mod metrics;
pub mod openapi;
pub mod request;
pub mod routes;
pub mod upgrade;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::ApiError;

use crate::AppState;
use crate::telemetry::RequestContext;

/// The body of every answer: whole in memory (JSON, embedded assets).
pub type Body = Full<Bytes>;
/// Every answer.
pub type Response = hyper::Response<Body>;
/// Every request.
pub type Request = hyper::Request<Incoming>;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest request head hyper buffers; a bigger one is refused by hyper itself with a bare 431.
/// Heads over [`MAX_HEADER_BYTES`] but under this get a JSON 431 from [`routes`].
const MAX_HEAD_BUFFER: usize = 64 * 1024;
/// Largest request head (request line and headers) answered: past it, `431` with a JSON body.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most headers in one request (hyper answers 431 past it).
const MAX_HEADERS: usize = 100;
/// Most concurrent streams of one HTTP/2 connection.
const MAX_H2_STREAMS: u32 = 128;
/// HTTP/2 pings: how often, and how long an answer may take before the connection is dropped.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection told to close may take to finish its last answer.
const CLOSING_GRACE: Duration = Duration::from_secs(30);

/// The limits one connection lives under (from the configuration).
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    /// From accept to the first request, protocol detection included; and from the first
    /// byte of any later request's head to its end.
    first_request: Duration,
    /// No request in flight and none begun for this long: closed.
    idle: Duration,
}

/// The smallest listen backlog shopstream asks for: room for a burst of clients that connect
/// at once (a load test's, or every client reconnecting after a restart).
pub const MIN_LISTEN_BACKLOG: u32 = 4_096;

/// Listens on `addr` with a backlog of `max_connections` (at least [`MIN_LISTEN_BACKLOG`]; the
/// kernel caps it at `net.core.somaxconn`).
///
/// std's and tokio's `bind` listen with a backlog of 128. A burst of more clients than that
/// connecting while the server was busy overflowed the accept queue: the kernel dropped their
/// handshakes, and each waited for its retransmission, a second or more (README, "The write
/// path's benchmarks": `nstat TcpExtListenOverflows` over `wrk` runs at 1,024 connections).
pub fn listen(addr: std::net::SocketAddr, max_connections: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's bind: a restarted server may bind again while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(max_connections.max(MIN_LISTEN_BACKLOG))
}

/// Accepts connections until `shutdown`, then waits (bounded) for open requests to finish.
///
/// Every connection is bounded: at most `--max-connections` are open (more wait in the listen
/// backlog, as mini-redis does); one must send its first request within `--header-timeout`
/// of being accepted, the HTTP/2 preface and protocol detection included, and every later
/// request head within `--header-timeout` of its first byte; one with no request in flight
/// for `--idle-timeout` is closed (HTTP/2 keep-alive pings keep a busy connection open, never
/// an idle one); request heads are bounded in bytes and headers, bodies in bytes and time
/// (see [`request`]).
///
/// hyper's own header timeout is off, and the socket's reads are watched instead: hyper's
/// starts when a keep-alive connection begins to wait for its next request, not at that
/// request's first byte, so it closed every keep-alive connection idle for
/// `--header-timeout` (10 s) whatever `--idle-timeout` said, and a client's pool then sent
/// requests on connections the server was closing (the latency benchmark's "connection:
/// channel closed").
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    let config = &state.config;
    let limits = ConnectionLimits {
        first_request: config.header_timeout,
        idle: config.idle_timeout,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BUFFER)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(MAX_HEAD_BUFFER as u32);
    let permits = Arc::new(Semaphore::new(config.max_connections as usize));
    let connections = TaskTracker::new();
    let mut accept_backoff = Duration::from_millis(5);

    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(accept_backoff).await;
                    accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        accept_backoff = Duration::from_millis(5);
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = {
            let state = Arc::clone(&state);
            let activity = Arc::clone(&activity);
            service_fn(move |mut request: Request| {
                let state = Arc::clone(&state);
                let in_flight = Activity::begin(&activity);
                async move {
                    let started = std::time::Instant::now();
                    let header =
                        |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
                    let context =
                        RequestContext::from_headers(header("x-request-id"), header("traceparent"));
                    let method = request.method().clone();
                    request.extensions_mut().insert(context.clone());
                    let (mut response, route) =
                        routes::handle(Arc::clone(&state), request, peer).await;
                    if let Ok(id) = HeaderValue::from_str(&context.request_id) {
                        response.headers_mut().insert("x-request-id", id);
                    }
                    let elapsed = started.elapsed();
                    state.metrics.requests.observe(
                        &method,
                        route,
                        response.status().as_u16(),
                        elapsed,
                    );
                    if state.config.access_log {
                        tracing::info!(
                            target: "shopstream::access",
                            %method,
                            route,
                            status = response.status().as_u16(),
                            duration_ms = elapsed.as_secs_f64() * 1000.0,
                            request_id = %context.request_id,
                            trace_id = %context.trace.trace_id_hex(),
                            %peer,
                        );
                    }
                    drop(in_flight);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        // Tells the connection's activity when bytes arrive (a request head's start).
        let stream = {
            let activity = Arc::clone(&activity);
            let mut started = false;
            tokio_util::io::InspectReader::new(stream, move |bytes: &[u8]| {
                if !bytes.is_empty() {
                    activity.read(!started, bytes);
                    started = true;
                }
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let shutdown = shutdown.clone();
        // Runs the connection under its limits; at shutdown or when idle it is closed
        // gracefully (answers in flight finish, at most CLOSING_GRACE); the permit goes with it.
        connections.spawn(async move {
            let _permit = permit;
            let mut connection = std::pin::pin!(connection);
            let mut check_at = activity.accepted + limits.first_request;
            let mut closing_since: Option<tokio::time::Instant> = None;
            loop {
                let wake = closing_since.map_or(check_at, |since| since + CLOSING_GRACE);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                        return;
                    }
                    _ = shutdown.cancelled(), if closing_since.is_none() => {
                        connection.as_mut().graceful_shutdown();
                        closing_since = Some(tokio::time::Instant::now());
                    }
                    _ = tokio::time::sleep_until(wake) => {
                        if closing_since.is_some() {
                            tracing::debug!(%peer, "connection still busy {CLOSING_GRACE:?} after it was told to close; dropped");
                            return;
                        }
                        match activity.verdict(tokio::time::Instant::now(), limits) {
                            Verdict::CheckAt(at) => check_at = at,
                            Verdict::NoRequest => {
                                tracing::debug!(%peer, "no request within {:?} of connecting; closed", limits.first_request);
                                return;
                            }
                            Verdict::SlowHead => {
                                tracing::debug!(%peer, "a request head took longer than {:?}; closed", limits.first_request);
                                return;
                            }
                            Verdict::Idle => {
                                connection.as_mut().graceful_shutdown();
                                closing_since = Some(tokio::time::Instant::now());
                            }
                        }
                    }
                }
            }
        });
    }

    drop(listener);
    connections.close();
    tokio::select! {
        _ = connections.wait() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
        }
    }
}

/// What a connection's requests have done, for its supervisor.
#[derive(Debug)]
struct Activity {
    accepted: tokio::time::Instant,
    requests: AtomicU64,
    in_flight: AtomicU64,
    /// Milliseconds after `accepted` when a request last began or ended.
    last_change_ms: AtomicU64,
    /// One more than the milliseconds after `accepted` when the first byte arrived with no
    /// request in flight (the head of the next request began); 0: none since the last began.
    head_since_ms: AtomicU64,
    /// Whether the connection opened with the HTTP/2 preface: its frames (pings among them)
    /// are no request heads, and its idle time is all that bounds it.
    http2: std::sync::atomic::AtomicBool,
}

/// Held while a request is being answered.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the supervisor makes of a connection.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Fine: look again at this time.
    CheckAt(tokio::time::Instant),
    /// No request arrived in time: drop it.
    NoRequest,
    /// A later request's head did not arrive whole in time: drop it.
    SlowHead,
    /// Idle: close it politely.
    Idle,
}

impl Activity {
    fn new() -> Self {
        Self {
            accepted: tokio::time::Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            last_change_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
            http2: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn begin(this: &Arc<Self>) -> InFlight {
        this.requests.fetch_add(1, Ordering::AcqRel);
        this.in_flight.fetch_add(1, Ordering::AcqRel);
        this.head_since_ms.store(0, Ordering::Release);
        this.touch();
        InFlight(Arc::clone(this))
    }

    /// Bytes arrived: with no request in flight they begin the next request's head. The
    /// connection's first bytes tell HTTP/2 (its preface opens with `PRI`, a method no
    /// HTTP/1 request uses).
    fn read(&self, first: bool, bytes: &[u8]) {
        if first && bytes.starts_with(b"PRI") {
            self.http2.store(true, Ordering::Release);
        }
        if self.requests.load(Ordering::Acquire) > 0
            && self.in_flight.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Acquire)
        {
            let ms = self.accepted.elapsed().as_millis() as u64;
            let _ =
                self.head_since_ms
                    .compare_exchange(0, ms + 1, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn touch(&self) {
        let ms = self.accepted.elapsed().as_millis() as u64;
        self.last_change_ms.fetch_max(ms, Ordering::AcqRel);
    }

    fn verdict(&self, now: tokio::time::Instant, limits: ConnectionLimits) -> Verdict {
        if self.requests.load(Ordering::Acquire) == 0 {
            let deadline = self.accepted + limits.first_request;
            return if now >= deadline {
                Verdict::NoRequest
            } else {
                Verdict::CheckAt(deadline)
            };
        }
        let last =
            self.accepted + Duration::from_millis(self.last_change_ms.load(Ordering::Acquire));
        let idle_at = last + limits.idle;
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // Looked at again within a header timeout: a slow head may follow this request.
            return Verdict::CheckAt(now + limits.idle.min(limits.first_request));
        }
        let head_since = self.head_since_ms.load(Ordering::Acquire);
        if head_since > 0 {
            let head_deadline =
                self.accepted + Duration::from_millis(head_since - 1) + limits.first_request;
            return if now >= head_deadline {
                Verdict::SlowHead
            } else {
                Verdict::CheckAt(head_deadline)
            };
        }
        if now >= idle_at {
            Verdict::Idle
        } else {
            Verdict::CheckAt(idle_at)
        }
    }
}

/// A JSON answer with the given status.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    json_bytes_response(status, Bytes::from(body))
}

/// A JSON answer already serialised (a document built once).
pub fn json_text_response(status: StatusCode, json: &'static str) -> Response {
    json_bytes_response(status, Bytes::from_static(json.as_bytes()))
}

/// Headers an API answer may carry: its own two, the six security headers, the request id
/// and a few a route adds (`location`, `retry-after`...). A map asked for 12 holds 12 in a
/// table of 16; 13 would double both.
const ANSWER_HEADERS: usize = 12;

/// A JSON answer from its bytes. Its header map is sized for every header it will get: grown
/// from empty it was rehashed twice per answer (2.7% of the async workers' time under a write
/// load).
pub fn json_bytes_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = HeaderMap::with_capacity(ANSWER_HEADERS);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    /// A keep-alive connection between requests is bounded by the idle timeout, and a request
    /// head that began by the header timeout from its first byte.
    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_connection_waits_for_the_idle_timeout_and_a_slow_head_for_the_header_timeout()
     {
        let activity = Arc::new(Activity::new());
        let at = |secs: u64| activity.accepted + Duration::from_secs(secs);
        drop(Activity::begin(&activity));
        // Idle after its answer: still open past the header timeout, closed at the idle one.
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(activity.verdict(at(15), LIMITS), Verdict::CheckAt(at(60)));
        assert_eq!(activity.verdict(at(60), LIMITS), Verdict::Idle);
        // The next head's first byte arrives at 15 s: it has until 25 s.
        activity.read(false, b"GE");
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.read(false, b"T /");
        assert_eq!(activity.verdict(at(20), LIMITS), Verdict::CheckAt(at(25)));
        assert_eq!(activity.verdict(at(25), LIMITS), Verdict::SlowHead);
        // Its request began: the head clock stops; a request in flight is looked at again
        // within a header timeout.
        let in_flight = Activity::begin(&activity);
        assert_eq!(activity.verdict(at(26), LIMITS), Verdict::CheckAt(at(36)));
        // Bytes read while a request is in flight are its body, not a head.
        activity.read(false, b"{}");
        drop(in_flight);
        assert_eq!(activity.verdict(at(30), LIMITS), Verdict::CheckAt(at(80)));
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_never_start_a_head_clock() {
        let activity = Arc::new(Activity::new());
        activity.read(true, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        drop(Activity::begin(&activity));
        tokio::time::advance(Duration::from_secs(20)).await;
        activity.read(false, &[0, 0, 8, 6, 1]);
        let at = |secs: u64| activity.accepted + Duration::from_secs(secs);
        assert_eq!(activity.verdict(at(45), LIMITS), Verdict::CheckAt(at(60)));
        // Before the first request, the first-request deadline alone counts.
        let fresh = Activity::new();
        fresh.read(true, b"GET / HTTP/1.1\r\n");
        assert_eq!(
            fresh.verdict(fresh.accepted + Duration::from_secs(10), LIMITS),
            Verdict::NoRequest
        );
    }

    /// More clients than std's backlog of 128 connect at once while nobody accepts: every
    /// handshake completes in the backlog, none is dropped to wait for a retransmission.
    #[tokio::test]
    async fn a_burst_of_connections_beyond_128_waits_in_the_backlog() {
        let listener = listen("127.0.0.1:0".parse().unwrap(), 64).unwrap();
        let addr = listener.local_addr().unwrap();
        // The kernel caps every backlog at somaxconn: ask no more of this machine than that.
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(4_096);
        let clients = 300.min(somaxconn);
        let connects = (0..clients).map(|_| {
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        });
        let results = futures_util::future::join_all(connects).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(
            connected, clients,
            "handshakes dropped with no accept in between: the listen backlog is too small"
        );
    }
}
