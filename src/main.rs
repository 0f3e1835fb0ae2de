//! The `shopstream` binary: parse the command line, then either run the server (start logging,
//! serve until a signal) or, with `healthcheck`, probe a running server and exit.

use std::process::ExitCode;

use clap::Parser;
use shopstream::config::{Cli, CliCommand};
use tokio_util::sync::CancellationToken;

/// The static musl build caches small blocks in front of musl's allocator, whose one lock the
/// threads would otherwise queue on (src/allocator.rs); glibc builds keep glibc's allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: shopstream::allocator::SmallBlockCache =
    shopstream::allocator::SmallBlockCache::new();

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(CliCommand::Healthcheck(args)) => healthcheck::run(&cli.config, &args),
        None => serve(cli.config),
    }
}

fn serve(config: shopstream::Config) -> ExitCode {
    limit_allocator_arenas();
    shopstream::telemetry::init(config.log_format);
    raise_file_limit(config.max_connections);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Store reads run on blocking threads and are short; a few threads serve them, and
        // every extra thread would keep an allocator arena of its own.
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shopstream: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        shopstream::shutdown::cancel_on_signal(shutdown.clone());
        match shopstream::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "shopstream stopped");
                ExitCode::FAILURE
            }
        }
    })
}

/// Every connection is a file descriptor, and many systems start processes with a soft limit
/// of 1,024: the soft limit is raised to the hard one, and a `--max-connections` that still
/// does not fit (with room for the broker connections and the store's files) is said at start.
fn raise_file_limit(max_connections: u32) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "cannot raise the open-files limit");
        }
    }
    let current = getrlimit(Resource::Nofile).current;
    if let Some(files) = current
        && files < u64::from(max_connections) + 512
    {
        tracing::warn!(
            files,
            max_connections,
            "the open-files limit is lower than --max-connections plus room for Kafka and the \
             store: past it, connections wait to be accepted (raise `ulimit -n` or LimitNOFILE)"
        );
    }
}

/// glibc gives threads that meet in the allocator arenas of their own, up to eight per core,
/// and memory freed in one arena serves only that arena: on the history benchmark the default
/// reached a peak RSS of 252 MiB where two arenas held 170 MiB (100,000 orders). Too few
/// arenas cost time instead: the threads that allocate all the time (one async worker per
/// core, the store's applier, fjall's worker) then wait on each other's arena locks, and with
/// two arenas on two cores a write cost 20% more CPU and the server took 1.2x to 1.5x fewer
/// orders per second (README, "Allocator arenas"). One arena per such thread: the cores plus
/// two. A new long-lived thread that allocates (even rarely) takes an arena of its own at its
/// first allocation and must be counted here: a log thread tried once made two busy threads
/// share. An operator's `MALLOC_ARENA_MAX` is left alone; the static musl build has one
/// allocator of its own.
fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let arenas = i32::try_from(cores + 2).unwrap_or(i32::MAX);
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread
        // exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// `shopstream healthcheck`: the container health check of a `FROM scratch` image, which has
/// no curl or wget. One plain HTTP/1.1 GET through hyper's client, bounded by `--timeout`;
/// exit 0 on 200, otherwise 1 with one line on stderr saying why (Docker keeps the output of
/// the last probes in `docker inspect`). No logging is set up, so nothing else is printed.
mod healthcheck {
    use std::process::ExitCode;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper::{Request, StatusCode, Uri, header};
    use hyper_util::rt::TokioIo;
    use shopstream::Config;
    use shopstream::config::HealthcheckArgs;
    use tokio::net::TcpStream;

    /// Most of an error body worth reading for the reason.
    const BODY_LIMIT: usize = 64 * 1024;
    /// Longest reason printed, so the line stays one line of a readable size.
    const REASON_CHARS: usize = 300;

    pub fn run(config: &Config, args: &HealthcheckArgs) -> ExitCode {
        let url = match args.target_url(config) {
            Ok(url) => url,
            Err(reason) => return unhealthy("?", &reason),
        };
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => return unhealthy(&url, &format!("cannot start a runtime: {error}")),
        };
        match runtime.block_on(probe(&url, args.timeout)) {
            Ok(()) => {
                println!("shopstream healthcheck: {url}: 200 OK");
                ExitCode::SUCCESS
            }
            Err(reason) => unhealthy(&url, &reason),
        }
    }

    fn unhealthy(url: &str, reason: &str) -> ExitCode {
        eprintln!("shopstream healthcheck: {url}: {reason}");
        ExitCode::FAILURE
    }

    /// `Ok` when `url` answers 200 within `timeout`; the reason otherwise.
    async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
        let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "only http:// URLs are supported (the binary has no TLS), not {other}://"
                ));
            }
            None => return Err("the URL needs http:// and a host".into()),
        }
        let authority = uri.authority().ok_or("the URL has no host")?.clone();
        // `[::1]` in a URL is `::1` to the resolver.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();

        let exchange = async {
            let stream = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("HTTP handshake failed: {e}"))?;
            tokio::spawn(connection);
            let request = Request::get(path)
                .header(header::HOST, authority.as_str())
                .header(header::USER_AGENT, "shopstream-healthcheck")
                .header(header::CONNECTION, "close")
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("cannot build the request: {e}"))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("no HTTP answer: {e}"))?;
            let status = response.status();
            if status == StatusCode::OK {
                return Ok(());
            }
            let body = Limited::new(response.into_body(), BODY_LIMIT)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Err(format!("answered {status}{}", reason_from_body(&body)))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }

    /// `: <message>` from a shopstream error body (`{"error": {"message": ...}}`), or the start
    /// of any other body on one line; empty when there is no body.
    fn reason_from_body(body: &[u8]) -> String {
        let text = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(json) => match json["error"]["message"].as_str() {
                Some(message) => message.to_string(),
                None => json.to_string(),
            },
            Err(_) => String::from_utf8_lossy(body).into_owned(),
        };
        let line: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(REASON_CHARS)
            .collect();
        if line.is_empty() {
            String::new()
        } else {
            format!(": {line}")
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reasons_are_one_short_line() {
            assert_eq!(
                reason_from_body(br#"{"status":"unavailable","error":{"code":"kafka_unavailable","message":"connect:\ntimed out"}}"#),
                ": connect: timed out"
            );
            assert_eq!(reason_from_body(b""), "");
            assert_eq!(reason_from_body(b"bad\r\ngateway"), ": bad gateway");
            assert_eq!(reason_from_body(&[b'x'; 5000]).len(), 2 + REASON_CHARS);
        }

        #[test]
        fn refuses_what_it_cannot_probe() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let err = rt
                .block_on(probe("https://127.0.0.1:1/healthz", Duration::from_secs(1)))
                .unwrap_err();
            assert!(err.contains("only http://"), "{err}");
            let err = rt
                .block_on(probe("127.0.0.1:1/healthz", Duration::from_secs(1)))
                .unwrap_err();
            assert!(!err.is_empty());
        }
    }
}
