//! Configuration: every setting is a flag with an environment variable of its own, so the same
//! binary runs from a shell, a systemd unit or a `FROM scratch` container without a config file.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The whole command line: the server's flags, and optionally a subcommand.
///
/// Without a subcommand `shopstream [FLAGS]` runs the server, exactly as `Config::parse` would;
/// the server's flags (and their environment variables) are also read before a subcommand, so
/// `shopstream healthcheck` finds the address the server listens on through `SHOPSTREAM_LISTEN`
/// (or `shopstream --listen ADDR healthcheck`) without a flag of its own.
#[derive(Debug, Clone, Parser)]
#[command(name = "shopstream", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

/// What to do instead of running the server.
#[derive(Debug, Clone, Subcommand)]
pub enum CliCommand {
    /// Probe a running shopstream over HTTP: exit 0 on 200, 1 otherwise.
    ///
    /// One GET with a deadline; when it fails, one line on stderr says why. Made for a
    /// container HEALTHCHECK, since a `FROM scratch` image has no curl.
    Healthcheck(HealthcheckArgs),
}

/// Options of `shopstream healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// URL to GET (`http://` only: the binary carries no TLS). Default: `/healthz` on the
    /// `--listen` address, a wildcard address (0.0.0.0, ::) replaced by loopback.
    #[arg(long, env = "SHOPSTREAM_HEALTHCHECK_URL")]
    pub url: Option<String>,

    /// Deadline for connecting and receiving the answer (e.g. `3s`, `500ms`).
    #[arg(long, env = "SHOPSTREAM_HEALTHCHECK_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl HealthcheckArgs {
    /// The URL to probe: `--url`, or `/healthz` on the address the server listens on.
    pub fn target_url(&self, config: &Config) -> Result<String, String> {
        if let Some(url) = &self.url {
            return Ok(url.trim().to_string());
        }
        if config.listen.port() == 0 {
            return Err(format!(
                "the server listens on {} (any free port): pass --url",
                config.listen
            ));
        }
        Ok(format!("http://{}/healthz", loopback_for(config.listen)))
    }
}

/// The address a local client uses to reach a server listening on `addr`: a wildcard address
/// (`0.0.0.0`, `::`) becomes loopback of the same family, anything else is kept.
pub fn loopback_for(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// shopstream: an e-commerce order pipeline and live operations dashboard on Apache Kafka.
#[derive(Debug, Clone, Parser)]
#[command(name = "shopstream", version, about, long_about = None)]
pub struct Config {
    /// Kafka bootstrap brokers, comma separated (host:port).
    #[arg(
        long = "kafka",
        env = "SHOPSTREAM_KAFKA",
        default_value = "127.0.0.1:9092",
        value_delimiter = ',',
        value_parser = parse_broker
    )]
    pub kafka_brokers: Vec<String>,

    /// Address the HTTP server (API, dashboard, WebSocket) listens on.
    #[arg(long, env = "SHOPSTREAM_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Directory of the read model's store (a fjall database in `store/`, holding the state
    /// and the offsets it reflects).
    #[arg(long, env = "SHOPSTREAM_DATA_DIR", default_value = "shopstream-data")]
    pub data_dir: PathBuf,

    /// Memory for the store (e.g. `64MiB`, `512KiB`, `1GiB`): three quarters for its block
    /// cache, the rest for its write buffers (up to an eighth more at their fullest). It does
    /// not grow with the shop's history (batches being applied come on top). Above seven
    /// quarters of it, freed memory is handed back to the system (glibc builds).
    #[arg(long, env = "SHOPSTREAM_CACHE_SIZE", default_value = "64MiB", value_parser = parse_bytes)]
    pub cache_size: usize,

    /// How long idempotency keys are remembered, in Kafka
    /// record time (e.g. `7d`, `48h`). Match the topics' `retention.ms`.
    #[arg(long, env = "SHOPSTREAM_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub retention: Duration,

    /// Throw the store away at start and rebuild it from the log.
    #[arg(long, env = "SHOPSTREAM_REBUILD_STORE", default_value_t = false)]
    pub rebuild_store: bool,

    /// Partitions of each topic when shopstream creates it.
    #[arg(long, env = "SHOPSTREAM_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,

    /// Replication factor of each topic when shopstream creates it (3 on a cluster).
    #[arg(long, env = "SHOPSTREAM_REPLICATION_FACTOR", default_value_t = 1,
          value_parser = clap::value_parser!(i16).range(1..=16))]
    pub replication_factor: i16,

    /// Prefix of the three topic names (`<prefix>orders`, ...), to share a cluster.
    #[arg(long, env = "SHOPSTREAM_TOPIC_PREFIX", default_value = "", value_parser = parse_topic_prefix)]
    pub topic_prefix: String,

    /// Log format.
    #[arg(long, env = "SHOPSTREAM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Deadline of every single Kafka call (e.g. `5s`, `800ms`); past it the call fails
    /// instead of hanging, and the API answers 503.
    #[arg(long, env = "SHOPSTREAM_KAFKA_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub kafka_timeout: Duration,

    /// How many live frames a WebSocket client may fall behind before it is disconnected (it
    /// resumes from its cursor); the ring holds this many frames for all clients together.
    #[arg(long, env = "SHOPSTREAM_LIVE_BUFFER", default_value_t = crate::model::store::FRAME_BUFFER,
          value_parser = parse_live_buffer)]
    pub live_buffer: usize,

    /// Start the built-in traffic simulator at this many order lifecycles per second
    /// (it can also be started, stopped and tuned from the dashboard).

    #[arg(long, env = "SHOPSTREAM_SIMULATE", value_parser = parse_rate)]
    pub simulate: Option<f64>,

    /// A file of access tokens, one `role:token` a line (`#` starts a comment); roles are
    /// `viewer`, `client`, `admin` and `metrics`. Tokens also come from the environment
    /// variable `SHOPSTREAM_TOKENS` (`role:token,role:token`; there is no flag for it, which
    /// would show in `ps`). Once any token is configured, every request but `/healthz` and
    /// `/readyz` needs one.
    #[arg(long, env = "SHOPSTREAM_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// `SHOPSTREAM_TOKENS`, from the environment only.
    #[arg(skip = Secret::from_env("SHOPSTREAM_TOKENS"))]
    pub tokens: Secret,

    /// Serve clients that are not on this machine without a token. Without tokens and without
    /// this flag, only loopback clients are served (protected mode). For a trusted network
    /// only.
    #[arg(
        long,
        env = "SHOPSTREAM_ALLOW_UNAUTHENTICATED",
        default_value_t = false
    )]
    pub allow_unauthenticated: bool,

    /// Origins (`https://host[:port]`, comma separated) allowed to call the API and open the
    /// live stream from a browser, beside the server's own.
    #[arg(long, env = "SHOPSTREAM_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub allowed_origins: Vec<String>,

    /// Host names (or `host:port`, comma separated) the server answers to; others get 403.
    /// Empty: any host when tokens are configured, loopback names (localhost, 127.0.0.1, [::1])
    /// when not.
    #[arg(long, env = "SHOPSTREAM_ALLOWED_HOSTS", value_delimiter = ',', value_parser = parse_host)]
    pub allowed_hosts: Vec<String>,

    /// Mark the session cookie `Secure` (only sent over HTTPS): set it behind a TLS proxy.
    /// It is set anyway when the request came over HTTPS (`X-Forwarded-Proto: https`).
    #[arg(long, env = "SHOPSTREAM_SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,

    /// Most client connections open at once; more wait in the listen backlog. Raised file
    /// limits permitting (the server raises its soft limit to the hard one at start).
    #[arg(long, env = "SHOPSTREAM_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Most live WebSocket sessions open at once; more get 429 with `Retry-After`.
    #[arg(long, env = "SHOPSTREAM_MAX_LIVE_SESSIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_live_sessions: u32,

    /// Most events one WebSocket resume may replay from Kafka; a client further behind gets a
    /// `reset` (reload, then follow live) instead of a replay of the whole log.
    #[arg(long, env = "SHOPSTREAM_MAX_REPLAY", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub max_replay: u64,

    /// How long a client may take from connecting to the end of its first request's headers
    /// (the HTTP/2 preface and protocol detection count too), and from the first byte of a
    /// later request to the end of its headers. Between requests `--idle-timeout` applies.
    #[arg(long, env = "SHOPSTREAM_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// How long a client may take to send a request body.
    #[arg(long, env = "SHOPSTREAM_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// A connection with no request in flight and no byte either way for this long is closed
    /// (HTTP/1.1 keep-alive and HTTP/2 alike).
    #[arg(long, env = "SHOPSTREAM_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// One log line per request (method, route template, status, duration, request id,
    /// trace id), at info level under the target `shopstream::access`.
    #[arg(long, env = "SHOPSTREAM_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,

    /// SASL authentication to Kafka (over plaintext TCP; see the README on TLS). Needs
    /// `--kafka-sasl-username` and a password (`SHOPSTREAM_KAFKA_SASL_PASSWORD` or
    /// `--kafka-sasl-password-file`).
    #[arg(long, env = "SHOPSTREAM_KAFKA_SASL_MECHANISM", value_enum)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,

    /// The SASL user name.
    #[arg(long, env = "SHOPSTREAM_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// A file whose first line is the SASL password (the password may also come from the
    /// environment variable `SHOPSTREAM_KAFKA_SASL_PASSWORD`; there is no flag for it).
    #[arg(long, env = "SHOPSTREAM_KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,

    /// `SHOPSTREAM_KAFKA_SASL_PASSWORD`, from the environment only.
    #[arg(skip = Secret::from_env("SHOPSTREAM_KAFKA_SASL_PASSWORD"))]
    pub kafka_sasl_password: Secret,

    /// The Kafka consumer group the consumed offsets are committed to, for monitoring only
    /// (`kafka-consumer-groups.sh --describe --group NAME`, Kafka consoles): shopstream resumes
    /// from its store, never from the group. One group per instance, since every instance reads
    /// every partition. Default: `shopstream-<host name>-<listen port>`.
    #[arg(long, env = "SHOPSTREAM_CONSUMER_GROUP", value_parser = parse_group)]
    pub consumer_group: Option<String>,

    /// How often the consumed offsets are committed to the consumer group when they moved
    /// (e.g. `5s`), or `off` to commit none.
    #[arg(long, env = "SHOPSTREAM_GROUP_COMMIT_INTERVAL", default_value = "5s", value_parser = parse_interval)]
    pub group_commit_interval: Interval,

    /// How often long work (the replay of the log at start) reports its progress in the log
    /// and to systemd.
    #[arg(long, env = "SHOPSTREAM_PROGRESS_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub progress_interval: Duration,
}

/// A period that may be switched off (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Option<Duration>);

/// The SASL mechanisms shopstream speaks to Kafka, all in pure Rust (rskafka's SASL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    /// User name and password in the clear: only on a network you trust (or behind TLS).
    Plain,
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-512")]
    ScramSha512,
}

/// What the broker connections authenticate with.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SaslCredentials({:?}, {}, ***)",
            self.mechanism, self.username
        )
    }
}

impl Config {
    /// The SASL credentials, if SASL is configured; an error says what is missing.
    pub fn kafka_sasl(&self) -> Result<Option<SaslCredentials>, String> {
        let Some(mechanism) = self.kafka_sasl_mechanism else {
            if self.kafka_sasl_username.is_some() {
                return Err(
                    "--kafka-sasl-username is set but --kafka-sasl-mechanism is not \
                     (plain, scram-sha-256 or scram-sha-512)"
                        .into(),
                );
            }
            return Ok(None);
        };
        let username = self
            .kafka_sasl_username
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or("SASL needs --kafka-sasl-username (SHOPSTREAM_KAFKA_SASL_USERNAME)")?;
        let password = match (&self.kafka_sasl_password_file, &self.kafka_sasl_password.0) {
            (Some(file), _) => std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the SASL password file {}: {e}", file.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            (None, Some(password)) => password.clone(),
            (None, None) => {
                return Err("SASL needs a password: SHOPSTREAM_KAFKA_SASL_PASSWORD or \
                            --kafka-sasl-password-file"
                    .into());
            }
        };
        if password.is_empty() {
            return Err("the SASL password is empty".into());
        }
        Ok(Some(SaslCredentials {
            mechanism,
            username,
            password,
        }))
    }
}

/// Environment variables read without a flag (secrets: a flag would show in `ps`).
pub const ENV_ONLY: &[&str] = &["SHOPSTREAM_TOKENS", "SHOPSTREAM_KAFKA_SASL_PASSWORD"];

/// A secret setting: never printed by `Debug` (configurations get logged).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Option<String>);

impl Secret {
    fn from_env(name: &str) -> Self {
        Self(std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Secret(***)"
        } else {
            "Secret(none)"
        })
    }
}

impl Config {
    /// Full topic name for `orders`, `payments` or `deliveries`.
    pub fn topic_name(&self, base: &str) -> String {
        format!("{}{}", self.topic_prefix, base)
    }

    /// The consumer group of this instance: `--consumer-group`, or one named after the host and
    /// the port it listens on (`port`: the bound one, since `--listen` may ask for port 0), so
    /// that two instances never share a group (a shared group would show the positions of
    /// whichever committed last) and a restarted one finds its group again.
    pub fn consumer_group_name(&self, port: u16) -> String {
        match &self.consumer_group {
            Some(group) => group.clone(),
            None => default_group(&host_name(), port),
        }
    }
}

/// `shopstream-<host>-<port>`.
fn default_group(host: &str, port: u16) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if host.is_empty() {
        format!("shopstream-{port}")
    } else {
        format!("shopstream-{host}-{port}")
    }
}

/// This machine's host name (a Kubernetes pod's name, a container's id, a board's name),
/// read with `uname`: it needs no `/etc` or `/proc`, which a `FROM scratch` image lacks.
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .trim()
        .to_string()
}

/// A consumer group id: printable, no spaces, at most 255 characters (the group coordinator
/// takes any string; these keep it usable on a command line).
fn parse_group(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 255 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "`{s}` is not a consumer group name (1 to 255 visible characters, no spaces)"
        ));
    }
    Ok(s.to_string())
}

/// `off`, or a duration.
fn parse_interval(s: &str) -> Result<Interval, String> {
    match s.trim() {
        "off" | "none" | "0" => Ok(Interval(None)),
        other => parse_duration(other).map(|d| Interval(Some(d))),
    }
}

/// Accepts `host:port`; the host is resolved when connecting, so container names work.
fn parse_broker(s: &str) -> Result<String, String> {
    let s = s.trim();
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("broker `{s}` must be host:port"))?;
    if host.is_empty() {
        return Err(format!("broker `{s}` has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("broker `{s}` has an invalid port `{port}`"))?;
    Ok(s.to_string())
}

/// An origin as browsers send it: `http(s)://host[:port]`, no path.
fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("origin `{s}` must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
        return Err(format!(
            "origin `{s}` must be scheme://host[:port], with no path"
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// A host name or `host:port` for the `Host` allow-list.
fn parse_host(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.contains(['/', ' ', ',']) {
        return Err(format!("`{s}` is not a host name or host:port"));
    }
    Ok(s.to_ascii_lowercase())
}

/// Kafka topic names allow ASCII letters, digits, `.`, `_` and `-`, at most 249 characters.
fn parse_topic_prefix(s: &str) -> Result<String, String> {
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{bad}` is not allowed in a Kafka topic name (letters, digits, '.', '_', '-')"
        ));
    }
    if s.len() > 200 {
        return Err("topic prefix longer than 200 characters".into());
    }
    Ok(s.to_string())
}

/// A simulator rate: lifecycles per second, from 0.1 to 200.
fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of order lifecycles per second"))?;
    if !(0.1..=200.0).contains(&rate) {
        return Err(format!(
            "the simulator rate must be between 0.1 and 200, not {rate}"
        ));
    }
    Ok(rate)
}

fn parse_live_buffer(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (16..=65_536).contains(&n) => Ok(n),
        _ => Err(format!(
            "the live buffer is a number of frames from 16 to 65536, not `{s}`"
        )),
    }
}

/// Parses `64MiB`, `512KiB`, `1GiB`, `1000000` (bytes); at least 1 MiB.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 64MiB, 512KiB or 1GiB"))?;
    let unit_bytes: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("`{s}`: unknown unit `{other}` (KiB, MiB or GiB)")),
    };
    let bytes = n
        .checked_mul(unit_bytes)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!("`{s}`: the cache needs at least 1MiB"));
    }
    Ok(bytes)
}

/// Parses `250ms`, `5s`, `2m`, `3h`, `7d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 5s or 1m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h or d)")),
    };
    if d.is_zero() {
        return Err("a duration of zero is not allowed".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_talk_to_a_local_broker() {
        let c = Config::try_parse_from(["shopstream"]).unwrap();
        assert_eq!(c.kafka_brokers, vec!["127.0.0.1:9092".to_string()]);
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.partitions, 3);
        assert_eq!(c.replication_factor, 1);
        assert_eq!(c.topic_name("orders"), "orders");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.kafka_timeout, Duration::from_secs(5));
    }

    #[test]
    fn flags_are_parsed() {
        let c = Config::try_parse_from([
            "shopstream",
            "--kafka",
            "a:1,kafka.internal:9093",
            "--partitions",
            "6",
            "--topic-prefix",
            "shop.",
            "--log-format",
            "json",
            "--kafka-timeout",
            "750ms",
        ])
        .unwrap();
        assert_eq!(c.kafka_brokers, vec!["a:1", "kafka.internal:9093"]);
        assert_eq!(c.partitions, 6);
        assert_eq!(c.topic_name("payments"), "shop.payments");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.kafka_timeout, Duration::from_millis(750));
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        for args in [
            vec!["shopstream", "--kafka", "nohostport"],
            vec!["shopstream", "--kafka", "h:notaport"],
            vec!["shopstream", "--partitions", "0"],
            vec!["shopstream", "--replication-factor", "0"],
            vec!["shopstream", "--topic-prefix", "bad prefix"],
            vec!["shopstream", "--kafka-timeout", "5w"],
            vec!["shopstream", "--listen", "localhost"],
        ] {
            assert!(Config::try_parse_from(&args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn no_subcommand_runs_the_server_with_the_same_flags() {
        let cli = Cli::try_parse_from([
            "shopstream",
            "--kafka",
            "kafka:9092",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/data",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.config.kafka_brokers, vec!["kafka:9092"]);
        assert_eq!(cli.config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(cli.config.data_dir, PathBuf::from("/data"));
        // A stray word is still an error, not silently a subcommand.
        assert!(Cli::try_parse_from(["shopstream", "serve-please"]).is_err());
    }

    #[test]
    fn healthcheck_defaults_to_healthz_on_the_listen_address() {
        let url = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let Some(CliCommand::Healthcheck(hc)) = &cli.command else {
                panic!("{args:?}: no healthcheck")
            };
            hc.target_url(&cli.config)
        };
        assert_eq!(
            url(&["shopstream", "healthcheck"]).unwrap(),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(
            url(&["shopstream", "--listen", "[::]:9000", "healthcheck"]).unwrap(),
            "http://[::1]:9000/healthz"
        );
        assert_eq!(
            url(&["shopstream", "--listen", "10.1.2.3:81", "healthcheck"]).unwrap(),
            "http://10.1.2.3:81/healthz"
        );
        assert_eq!(
            url(&["shopstream", "healthcheck", "--url", "http://h:1/readyz"]).unwrap(),
            "http://h:1/readyz"
        );
        assert!(url(&["shopstream", "--listen", "127.0.0.1:0", "healthcheck"]).is_err());
        let cli = Cli::try_parse_from(["shopstream", "healthcheck", "--timeout", "250ms"]).unwrap();
        let Some(CliCommand::Healthcheck(hc)) = cli.command else {
            panic!()
        };
        assert_eq!(hc.timeout, Duration::from_millis(250));
    }

    #[test]
    fn the_consumer_group_is_named_by_its_flag_or_after_the_host_and_port() {
        let c = Config::try_parse_from(["shopstream"]).unwrap();
        assert_eq!(
            c.group_commit_interval,
            Interval(Some(Duration::from_secs(5)))
        );
        assert_eq!(c.progress_interval, Duration::from_secs(5));
        let named = c.consumer_group_name(8080);
        assert!(
            named.starts_with("shopstream-") && named.ends_with("-8080"),
            "{named}"
        );
        assert_ne!(named, c.consumer_group_name(8081), "one group per instance");
        assert_eq!(default_group("board 7/α", 80), "shopstream-board_7__-80");
        assert_eq!(default_group("", 80), "shopstream-80");
        let c = Config::try_parse_from([
            "shopstream",
            "--consumer-group",
            "shop-eu-1",
            "--group-commit-interval",
            "off",
        ])
        .unwrap();
        assert_eq!(c.consumer_group_name(8080), "shop-eu-1");
        assert_eq!(c.group_commit_interval, Interval(None));
        assert!(Config::try_parse_from(["shopstream", "--consumer-group", "a b"]).is_err());
        assert!(Config::try_parse_from(["shopstream", "--consumer-group", ""]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
    }
}
