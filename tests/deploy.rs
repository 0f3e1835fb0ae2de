//! The deploy files and what they rely on in the binary.
//!
//! - `compose/systemd/shopstream.service`: a `Type=notify` unit with a dynamic user, its state
//!   directory as the data dir, the hardening a board wants and an environment file for the
//!   tokens; every variable it sets is one the binary reads. And the binary keeps the unit's
//!   promise: under a (fake) `NOTIFY_SOCKET` it sends `READY=1` once caught up with the log,
//!   never before, and `STOPPING=1` on SIGTERM.

mod support;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use support::{Server, http, repo_root};

/// Every environment variable the binary reads.
fn known_env_vars() -> Vec<String> {
    let mut vars: Vec<String> = shopstream::config::ENV_ONLY
        .iter()
        .map(|v| v.to_string())
        .collect();
    for arg in shopstream::config::Cli::command().get_arguments() {
        if let Some(env) = arg.get_env() {
            vars.push(env.to_string_lossy().into_owned());
        }
    }
    vars
}

/// A unit file: every `Key=value` of each section, in order (keys may repeat).
fn unit_file(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a Key=value line: {line}"));
        sections
            .entry(section.clone())
            .or_default()
            .push((key.trim().to_string(), value.trim().to_string()));
    }
    sections
}

#[test]
fn the_systemd_unit_runs_a_hardened_notify_service_with_its_state_directory() {
    let text =
        std::fs::read_to_string(repo_root().join("compose/systemd/shopstream.service")).unwrap();
    let unit = unit_file(&text);
    let service = &unit["Service"];
    let all = |key: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        let values = all(key);
        assert_eq!(values.len(), 1, "{key}: {values:?}");
        values[0]
    };

    assert_eq!(one("Type"), "notify");
    assert_eq!(one("ExecStart"), "/usr/local/bin/shopstream");
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("StateDirectory"), "shopstream");
    assert!(one("EnvironmentFile").starts_with("/etc/shopstream/"));
    let environment: BTreeMap<&str, &str> = all("Environment")
        .into_iter()
        .map(|e| e.split_once('=').unwrap())
        .collect();
    let known = known_env_vars();
    for key in environment.keys() {
        assert!(known.iter().any(|k| k == key), "the binary reads no {key}");
    }
    // The store goes to the state directory systemd hands the dynamic user.
    assert_eq!(environment["SHOPSTREAM_DATA_DIR"], "/var/lib/shopstream");
    assert_eq!(one("WorkingDirectory"), "/var/lib/shopstream");

    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    // The network for clients and Kafka, and AF_UNIX for the notification socket.
    let families: Vec<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert_eq!(families, ["AF_INET", "AF_INET6", "AF_UNIX"]);
    assert_eq!(
        all("SystemCallFilter"),
        ["@system-service", "~@privileged @resources"]
    );
    // Room for --max-connections' default and the broker and store files beside it (the
    // binary warns below that).
    let files: u64 = one("LimitNOFILE").parse().unwrap();
    assert!(files >= 4096 + 512, "LimitNOFILE={files}");
    assert!(
        one("TimeoutStopSec")
            .trim_end_matches('s')
            .parse::<u64>()
            .unwrap()
            >= 10
    );
    assert_eq!(
        unit["Install"],
        [("WantedBy".into(), "multi-user.target".into())]
    );

    // The example environment file names only variables the binary reads.
    let example =
        std::fs::read_to_string(repo_root().join("compose/systemd/shopstream.env")).unwrap();
    for line in example.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some((key, _)) = line.split_once('=')
            && key.starts_with("SHOPSTREAM_")
        {
            assert!(known.iter().any(|k| k == key), "shopstream.env: {key}");
        }
    }
}

/// Receives datagrams on `socket` until one satisfies `until` (bounded); all of them.
fn receive_until(
    socket: &UnixDatagram,
    within: Duration,
    until: impl Fn(&str) -> bool,
) -> Vec<String> {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "no such message within {within:?}: {received:?}"
        );
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = until(&message);
                received.push(message);
                if done {
                    return received;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("receiving notifications: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_once_the_log_is_replayed_and_stopping_on_sigterm() {
    // systemd's side: a datagram socket whose path goes to the service in NOTIFY_SOCKET.
    let dir = std::env::temp_dir().join(support::unique_name("notify"));
    std::fs::create_dir_all(&dir).unwrap();
    let socket_path = dir.join("notify.sock");
    let systemd = UnixDatagram::bind(&socket_path).unwrap();

    let prefix = format!("{}.", support::unique_name("notify"));
    let data_dir = dir.join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopstream"));
    command
        .args(["--kafka", &support::bootstrap()])
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--topic-prefix", &prefix, "--group-commit-interval", "off"])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "info");
    let mut server = Server::spawn(command, dir.clone(), Duration::from_secs(30));

    let (tx, rx) = std::sync::mpsc::channel();
    let listener = std::thread::spawn(move || {
        let before_ready = receive_until(&systemd, Duration::from_secs(60), |m| {
            m.lines().any(|l| l == "READY=1")
        });
        tx.send(before_ready).unwrap();
        receive_until(&systemd, Duration::from_secs(30), |m| {
            m.lines().any(|l| l == "STOPPING=1")
        })
    });
    let messages = tokio::task::spawn_blocking(move || rx.recv().unwrap())
        .await
        .unwrap();
    // Ready is said once the replay is over: /readyz agrees by then.
    let (status, readyz) = http::get(server.addr, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{readyz}");
    assert_eq!(
        readyz["caught_up"], true,
        "READY=1 came before the replay was over"
    );
    assert_eq!(
        messages.first().map(String::as_str),
        Some("STATUS=connecting to Kafka\n"),
        "{messages:?}"
    );
    let ready = messages.last().unwrap();
    assert!(
        ready.starts_with("READY=1\nSTATUS=caught up with the log ("),
        "{ready:?}"
    );
    assert_eq!(
        messages.iter().filter(|m| m.contains("READY=1")).count(),
        1,
        "{messages:?}"
    );

    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.terminate(Duration::from_secs(15));
        (exit, server)
    })
    .await
    .unwrap();
    assert!(exit.0.success(), "{:?}", exit.0);
    let stopping = listener.join().unwrap();
    assert!(
        stopping
            .last()
            .unwrap()
            .starts_with("STOPPING=1\nSTATUS=stopping"),
        "{stopping:?}"
    );
}
