//! Shared helpers for the integration tests, which all run against a real Apache Kafka broker.
//!
//! - [`bootstrap`]: the broker in `KAFKA_BOOTSTRAP` when set, otherwise the local one that
//!   `compose/kafka-local start` runs (started once; the script is idempotent and locked, so
//!   test binaries and parallel tests share it).
//! - [`unique_name`]: a fresh topic prefix per test, so tests never see each other's records
//!   and can run in parallel on one broker.
//! - [`PrivateBroker`]: a broker of a test's own, for tests that stop it.
//! - [`TestApp`]: shopstream in the test's own process (`shopstream::serve` on port 0), with
//!   settings a test may shrink (the live buffer, timeouts); stopped when dropped.
//! - [`logs`]: what the TestApps of a test process log, for the tests that check a log line.
//! - [`Server`]: the real `shopstream` binary as a child process, killed when dropped: for
//!   the tests where the process must die (kill -9, SIGTERM, a start that fails) and for the
//!   static binaries.
//! - [`http`]: a tiny HTTP/1.1 client (hyper) for calling the server.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The repository root (where `compose/kafka-local` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Bootstrap address of the shared test broker.
pub fn bootstrap() -> String {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP
        .get_or_init(|| match std::env::var("KAFKA_BOOTSTRAP") {
            Ok(addr) if !addr.trim().is_empty() => addr.trim().to_string(),
            _ => kafka_local(&["start"]),
        })
        .clone()
}

/// Runs `compose/kafka-local ARGS...` and returns the last line it printed.
pub fn kafka_local(args: &[&str]) -> String {
    let script = repo_root().join("compose/kafka-local");
    let output = Command::new(&script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "compose/kafka-local {args:?} failed ({})",
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `<test>-<8 random hex>`, usable as a topic name or a topic prefix (`<name>.`).
pub fn unique_name(test: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t-{test}-{}", &id[..8])
}

/// A TCP port on 127.0.0.1 where nothing listens (free at the time of the call).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on 127.0.0.1 such that `port + offset` is free too (the local broker puts
/// its controller at broker port + 1000).
pub fn free_port_pair(offset: u16) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if let Some(second) = port.checked_add(offset)
            && TcpListener::bind(("127.0.0.1", second)).is_ok()
        {
            return port;
        }
    }
    panic!("no free pair of ports found");
}

/// A single-node broker of one test's own (its own port and state dir), for tests that stop
/// or restart it. Stopped and wiped when dropped.
pub struct PrivateBroker {
    pub dir: PathBuf,
    pub port: u16,
    pub bootstrap: String,
}

impl PrivateBroker {
    pub fn start(test: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name(test));
        let port = free_port_pair(1000);
        let bootstrap = kafka_local(&[
            "start",
            "--port",
            &port.to_string(),
            "--dir",
            dir.to_str().unwrap(),
        ]);
        Self {
            dir,
            port,
            bootstrap,
        }
    }

    /// Stops the broker, keeping its data so that [`Self::restart`] brings the same log back.
    pub fn stop(&self) {
        kafka_local(&["stop", "--dir", self.dir.to_str().unwrap()]);
    }

    pub fn restart(&self) {
        let again = kafka_local(&[
            "start",
            "--port",
            &self.port.to_string(),
            "--dir",
            self.dir.to_str().unwrap(),
        ]);
        assert_eq!(again, self.bootstrap);
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("compose/kafka-local"))
            .args(["stop", "--wipe", "--dir", self.dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A running shopstream, in-process or a child process: what helpers need of either.
pub trait Running {
    fn addr(&self) -> SocketAddr;

    /// Whether it stopped already (it will never be ready then).
    fn stopped(&self) -> bool {
        false
    }

    /// What it logged, for a failure's message.
    fn logs(&self) -> String {
        String::new()
    }
}

impl Running for TestApp {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn stopped(&self) -> bool {
        self.task.as_ref().is_some_and(|t| t.is_finished())
    }
}

impl Running for Server {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn logs(&self) -> String {
        Server::logs(self)
    }
}

/// Waits (bounded) until `/readyz` answers 200.
pub async fn wait_ready(server: &impl Running, within: Duration) {
    eventually("shopstream ready", within, || async {
        assert!(
            !server.stopped(),
            "shopstream stopped before it was ready; logs:\n{}",
            server.logs()
        );
        match http::get(server.addr(), "/readyz").await {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(format!("/readyz {status} {body}; logs:\n{}", server.logs())),
            Err(error) => Err(error),
        }
    })
    .await;
}

/// shopstream running in this test's process, on a free loopback port, with its own data
/// directory (removed when dropped). Tests using it run on a multi-threaded runtime, so that
/// a test blocking one thread (a Java tool, say) never stalls the server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), shopstream::RunError>>>,
}

impl TestApp {
    /// Starts shopstream with `--kafka <bootstrap>` and `extra` flags (parsed as the binary
    /// parses its command line), and waits until it listens.
    pub async fn start(bootstrap: &str, extra: &[&str]) -> Self {
        let data_dir = std::env::temp_dir().join(unique_name("data"));
        Self::start_with_data_dir(bootstrap, extra, data_dir).await
    }

    pub async fn start_with_data_dir(bootstrap: &str, extra: &[&str], data_dir: PathBuf) -> Self {
        use clap::Parser;
        logs::capture();
        let args = [
            "shopstream",
            "--kafka",
            bootstrap,
            "--data-dir",
            path_str(&data_dir),
        ]
        .into_iter()
        .chain(extra.iter().copied());
        let config = shopstream::Config::try_parse_from(args).expect("valid test flags");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(shopstream::serve(listener, config, shutdown.clone()));
        Self {
            addr,
            data_dir,
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn wait_ready(&self, within: Duration) {
        wait_ready(self, within).await;
    }

    /// Stops it as SIGTERM would (bounded) and hands back its data directory, kept.
    pub async fn stop(mut self, within: Duration) -> PathBuf {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(within, task)
                .await
                .unwrap_or_else(|_| panic!("shopstream did not stop within {within:?}"))
                .expect("the server task does not panic")
                .expect("shopstream stops cleanly");
        }
        std::mem::take(&mut self.data_dir)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// What the [`TestApp`]s of this test process log, kept in memory as JSON lines (as
/// `--log-format json` writes them): warnings, the access log (`shopstream::access`) and the
/// progress reports (`shopstream::progress`). Every
/// TestApp of a test binary writes here: a test picks its own lines by what only it has, its
/// topic names or its request ids.
pub mod logs {
    use std::io::Write;
    use std::sync::{Arc, Mutex, OnceLock};

    use tracing_subscriber::EnvFilter;

    /// What is captured, in the form of `RUST_LOG`: warnings, the access log and the progress
    /// reports of long work.
    const CAPTURED: &str =
        "warn,shopstream::access=info,shopstream::progress=info,shopstream::trace=debug";

    fn lines_so_far() -> &'static Arc<Mutex<Vec<u8>>> {
        static BYTES: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
        BYTES.get_or_init(Arc::default)
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Installs the capture as this process's subscriber, once.
    pub fn capture() {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let bytes = Arc::clone(lines_so_far());
            let _ = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new(CAPTURED))
                .with_writer(move || Sink(Arc::clone(&bytes)))
                .json()
                .flatten_event(true)
                .try_init();
        });
    }

    /// Every line captured so far that `wanted` keeps.
    pub fn lines(wanted: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let bytes = lines_so_far().lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter(|line| wanted(line))
            .collect()
    }
}

/// The `shopstream` binary running as a child process, with JSON logs captured.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts shopstream on a free port with `--kafka <bootstrap>` and `extra` flags, and waits
    /// until it listens (not until it is ready: see [`Self::wait_ready`]).
    pub fn start(bootstrap: &str, extra: &[&str]) -> Self {
        let data_dir = std::env::temp_dir().join(unique_name("data"));
        Self::start_with_data_dir(bootstrap, extra, data_dir)
    }

    pub fn start_with_data_dir(bootstrap: &str, extra: &[&str], data_dir: PathBuf) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shopstream"));
        command
            .args([
                "--kafka",
                bootstrap,
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env("RUST_LOG", "info");
        Self::spawn(command, data_dir, Duration::from_secs(30))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn wait_ready(&self, within: Duration) {
        wait_ready(self, within).await;
    }

    /// Kills the process with SIGKILL (no chance to save anything) and hands back its data
    /// directory, kept for a restart.
    pub fn kill_hard(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::take(&mut self.data_dir)
    }

    /// Hands back the data directory of a server that already exited, kept for a restart.
    pub fn into_data_dir(mut self) -> PathBuf {
        std::mem::take(&mut self.data_dir)
    }

    /// The process id (benchmarks read its CPU time in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "shopstream did not stop after SIGTERM within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- shopstream logs ---\n{}", self.logs());
        }
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// A path is a path: keeps call sites short.
pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The one HTTP/1.1 client of the tests, on hyper: one connection per request, every call
/// bounded by [`http::REQUEST_DEADLINE`].
pub mod http {
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::Request;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpStream;

    /// Longest any test request may take before it counts as hanging.
    pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

    /// Status and parsed JSON body (`Null` when the body is not JSON).
    pub type Answer = (u16, serde_json::Value);

    /// A whole answer: status, headers, the body parsed as JSON (`Null` if it is not) and raw.
    pub struct Reply {
        pub status: u16,
        pub headers: hyper::HeaderMap,
        pub json: serde_json::Value,
        pub raw: Bytes,
    }

    /// One request with the given headers; an error says what failed (no answer in time,
    /// a refused connection, a broken answer).
    pub async fn exchange(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let body = body.into();
        tokio::time::timeout(REQUEST_DEADLINE, async {
            let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let mut request = Request::builder().method(method).uri(path);
            if !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("host"))
            {
                request = request.header("host", addr.to_string());
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let raw = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let json = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
            Ok(Reply {
                status,
                headers,
                json,
                raw,
            })
        })
        .await
        .map_err(|_| format!("{method} {path} did not answer within {REQUEST_DEADLINE:?}"))?
    }

    /// [`exchange`] for tests that expect an answer: panics when there is none.
    pub async fn send(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        exchange(addr, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get(addr: SocketAddr, path: &str) -> Result<Answer, String> {
        request(addr, "GET", path, None).await
    }

    pub async fn post(
        addr: SocketAddr,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, String> {
        request(addr, "POST", path, Some(body.to_string())).await
    }

    /// A JSON request; its status and JSON body.
    pub async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, String> {
        let headers = [("content-type", "application/json")];
        let reply = exchange(addr, method, path, &headers, body.unwrap_or_default()).await?;
        Ok((reply.status, reply.json))
    }
}

/// An rskafka client on `bootstrap`, for tests that look at the broker directly.
pub async fn kafka_client(bootstrap: &str) -> rskafka::client::Client {
    let brokers = bootstrap.split(',').map(str::to_string).collect();
    tokio::time::timeout(
        Duration::from_secs(30),
        rskafka::client::ClientBuilder::new(brokers).build(),
    )
    .await
    .expect("connecting to Kafka timed out")
    .expect("cannot connect to Kafka")
}

/// A full HTTP exchange for tests that need request headers or response headers.
/// Runs `command` with `stdin` fed to it and its output captured, killed once `within` has
/// passed. `Err` says why it did not finish (could not start, or timed out with what it had
/// printed so far); a non-zero exit is not an error here, look at `status`.
pub fn run_with_stdin(
    command: &mut Command,
    stdin: &[u8],
    within: Duration,
) -> Result<std::process::Output, String> {
    use std::io::{Read, Write};

    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    // Written from a thread so a child that does not read cannot block us; dropped at the
    // end, which closes its stdin (end of input).
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = writer.join();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(std::process::Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{command:?} did not finish within {within:?}; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// Writes `(key, value)` records to `topic` with Apache Kafka's own console producer (the
/// Java client, default partitioner), one line each, and panics unless every one was sent.
/// Neither keys nor values may contain a newline; keys may not contain `|`.
pub fn console_produce(bootstrap: &str, topic: &str, records: &[(&str, &str)]) {
    console_produce_with(bootstrap, topic, records, &[]);
}

/// [`console_produce`] with more producer properties (`compression.type=lz4`, say).
pub fn console_produce_with(
    bootstrap: &str,
    topic: &str,
    records: &[(&str, &str)],
    properties: &[&str],
) {
    let mut input = String::new();
    for (key, value) in records {
        assert!(
            !key.contains(['|', '\n']) && !value.contains('\n'),
            "cannot send {key:?} / {value:?} as one line"
        );
        input.push_str(&format!("{key}|{value}\n"));
    }
    let output = run_with_stdin(
        Command::new(repo_root().join("compose/kafka-local"))
            .args([
                "java-class",
                "org.apache.kafka.tools.ConsoleProducer",
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--property",
                "parse.key=true",
                "--property",
                "key.separator=|",
                // Fail within the test's budget instead of the default minute.
                "--producer-property",
                "max.block.ms=20000",
                "--producer-property",
                "delivery.timeout.ms=20000",
                "--producer-property",
                "request.timeout.ms=10000",
            ])
            .args(properties.iter().flat_map(|p| ["--producer-property", p])),
        input.as_bytes(),
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("console producer: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The tool exits 0 even when a send failed; its error is only logged.
    assert!(
        output.status.success() && !stderr.contains("ERROR"),
        "console producer to {topic} failed ({}):\n{stderr}",
        output.status
    );
}

/// Polls `probe` every 100 ms until it returns `Ok`, for at most `within`; panics with the
/// last `Err` (what was still missing) after that.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Servers started from any command line: the binary built for the tests ([`Server::start`]),
/// or for tests/static_binary.rs a static binary entered into an empty root with `chroot`, or
/// run under `qemu-aarch64-static`.
impl Server {
    /// Starts `command`, which must run shopstream with `--listen 127.0.0.1:0 --log-format json`
    /// (the address is read from its `listening` log line), and waits up to `listen_within` for
    /// it to listen; its log is kept ([`Server::logs`]). `cleanup` (its data dir, or the whole
    /// empty root) is removed on drop.
    pub fn spawn(mut command: Command, cleanup: PathBuf, listen_within: Duration) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        let mut copy = log_copy(child.id());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(file) = copy.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(file, "{line}");
                }
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "listening"
                    && let Some(addr) = event["addr"].as_str()
                    && let Ok(addr) = addr.parse::<SocketAddr>()
                {
                    let _ = addr_tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(listen_within) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                let _ = std::fs::remove_dir_all(&cleanup);
                panic!(
                    "{command:?} did not listen within {listen_within:?} ({status:?}); logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Self {
            child,
            addr,
            logs,
            data_dir: cleanup,
        }
    }

    /// The exit status once the process ended, `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

/// With `SHOPSTREAM_TEST_LOG_DIR` set, a file there (`shopstream-<pid>.log`) that keeps a
/// spawned server's log beyond the test: the in-memory copy goes with the process's handle,
/// and a fault campaign's instances come and go hundreds of times.
fn log_copy(pid: u32) -> Option<std::fs::File> {
    let dir = PathBuf::from(std::env::var_os("SHOPSTREAM_TEST_LOG_DIR")?);
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::File::create(dir.join(format!("shopstream-{pid}.log"))).ok()
}

/// Every order id the server lists, newest first, following `next_cursor` page by page.
pub async fn all_order_ids(addr: SocketAddr, page_size: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/orders?limit={page_size}&cursor={c}"),
            None => format!("/api/orders?limit={page_size}"),
        };
        let (status, page) = http::get(addr, &path).await.unwrap();
        assert_eq!(status, 200, "{path}: {page}");
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["order_id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

/// Runs one of Kafka's own tools (`compose/kafka-local java-class CLASS ARGS...`) and panics
/// unless it succeeded; its standard output.
pub fn kafka_tool(class: &str, args: &[&str]) -> String {
    let output = run_with_stdin(
        Command::new(repo_root().join("compose/kafka-local"))
            .arg("java-class")
            .arg(class)
            .args(args),
        b"",
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("{class}: {e}"));
    assert!(
        output.status.success(),
        "{class} {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether `python3` can import kafka-python with its lz4 and zstd codecs, installing them
/// once with pip if not.
pub fn kafka_python_available() -> bool {
    let importable = || {
        run_with_stdin(
            Command::new("python3").args(["-c", "import kafka, lz4.frame, zstandard"]),
            b"",
            Duration::from_secs(30),
        )
        .is_ok_and(|o| o.status.success())
    };
    if importable() {
        return true;
    }
    eprintln!("kafka-python (with lz4, zstandard) is not installed: trying pip once");
    let installed = run_with_stdin(
        Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "kafka-python",
            "lz4",
            "zstandard",
        ]),
        b"",
        Duration::from_secs(300),
    );
    match installed {
        Ok(o) if o.status.success() => importable(),
        Ok(o) => {
            eprintln!("pip failed: {}", String::from_utf8_lossy(&o.stderr));
            false
        }
        Err(e) => {
            eprintln!("pip failed: {e}");
            false
        }
    }
}

/// Runs a kafka-python `script` with `args` and `stdin`, and returns what it printed on its
/// last line, parsed as JSON; panics when it failed.
pub fn python(script: &str, args: &[&str], stdin: &[u8]) -> serde_json::Value {
    let output = run_with_stdin(
        Command::new("python3").arg("-c").arg(script).args(args),
        stdin,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("python: {e}"));
    assert!(
        output.status.success(),
        "python failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or("null");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("python printed {last:?}: {e}"))
}
