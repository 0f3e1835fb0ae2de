//! The deploy files and what they rely on in the binary.
//!
//! - `compose/systemd/shopstream.service`: a `Type=notify` unit with a dynamic user, its state
//!   directory as the data dir, the hardening a board wants and an environment file for the
//!   tokens; every variable it sets is one the binary reads. And the binary keeps the unit's
//!   promise: under a (fake) `NOTIFY_SOCKET` it sends `READY=1` once caught up with the log,
//!   never before, and `STOPPING=1` on SIGTERM.
//! - `compose/kubernetes/*.yaml`: a StatefulSet with a volume for the store, the three probes
//!   (and the probe paths answer as the manifest expects, without a token while tokens are
//!   configured), a non-root read-only container, resources, the tokens from the Secret, the
//!   Prometheus annotations, and the Services.
//!
//! The schema and unit-file checks of the tools themselves (`systemd-analyze verify`,
//! kubernetes-validate) run in `compose/check-deploy`, which compose/test runs.

mod support;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use support::{Server, TestApp, http, repo_root};
use yaml_rust2::{Yaml, YamlLoader};

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

fn manifests() -> Vec<Yaml> {
    let mut docs = Vec::new();
    for name in ["shopstream.yaml", "secret.example.yaml"] {
        let path = repo_root().join("compose/kubernetes").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        docs.extend(
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        );
    }
    docs
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn probe_path(container: &Yaml, probe: &str) -> String {
    let get = &container[probe]["httpGet"];
    assert_eq!(get["port"].as_str(), Some("http"), "{probe}");
    get["path"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_manifests_run_a_probed_non_root_statefulset_that_answers_its_probes() {
    let docs = manifests();
    let set = of_kind(&docs, "StatefulSet", "shopstream");
    let spec = &set["spec"];
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_vec().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let env: BTreeMap<String, &Yaml> = container["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e))
        .collect();
    let known = known_env_vars();
    for key in env.keys() {
        assert!(known.contains(key), "the binary reads no {key}");
    }
    let value = |key: &str| env[key]["value"].as_str().unwrap().to_string();

    // The store on the claim of each pod.
    let claim = &spec["volumeClaimTemplates"][0];
    let mount = &container["volumeMounts"][0];
    assert_eq!(mount["name"], claim["metadata"]["name"]);
    assert_eq!(
        mount["mountPath"].as_str().unwrap(),
        value("SHOPSTREAM_DATA_DIR")
    );
    assert_eq!(
        claim["spec"]["accessModes"][0].as_str(),
        Some("ReadWriteOnce")
    );

    // The port the probes and Prometheus use is the one shopstream listens on.
    let port = container["ports"][0]["containerPort"].as_i64().unwrap();
    assert_eq!(container["ports"][0]["name"].as_str(), Some("http"));
    assert!(value("SHOPSTREAM_LISTEN").ends_with(&format!(":{port}")));
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));

    // Non-root, read-only root filesystem, no privilege, the image's user.
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod_security["runAsUser"].as_i64(), Some(10001));
    assert_eq!(pod_security["fsGroup"].as_i64(), Some(10001));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    for what in ["requests", "limits"] {
        assert!(
            container["resources"][what]["memory"].as_str().is_some(),
            "resources.{what}"
        );
    }

    // The tokens from the Secret the example makes.
    let from = &env["SHOPSTREAM_TOKENS"]["valueFrom"]["secretKeyRef"];
    let secret = of_kind(&docs, "Secret", from["name"].as_str().unwrap());
    assert!(
        secret["stringData"][from["key"].as_str().unwrap()]
            .as_str()
            .is_some()
    );

    // Services select the pods, on the named port.
    let labels = &spec["template"]["metadata"]["labels"];
    for name in ["shopstream", spec["serviceName"].as_str().unwrap()] {
        let service = of_kind(&docs, "Service", name);
        for (key, value) in service["spec"]["selector"].as_hash().unwrap() {
            assert_eq!(&labels[key.as_str().unwrap()], value, "{name}");
        }
        assert_eq!(
            service["spec"]["ports"][0]["targetPort"].as_str(),
            Some("http")
        );
    }

    // The probes, asked of a real shopstream with tokens configured: none needs a token, and
    // all three answer 200 once it is caught up (the startup probe's 503 while it catches up
    // is in tests/replay_progress.rs).
    let liveness = probe_path(container, "livenessProbe");
    let readiness = probe_path(container, "readinessProbe");
    let startup = probe_path(container, "startupProbe");
    assert_eq!(
        (liveness.as_str(), readiness.as_str(), startup.as_str()),
        ("/healthz", "/readyz", "/readyz?caught_up=true")
    );
    let startup_budget = container["startupProbe"]["periodSeconds"].as_i64().unwrap()
        * container["startupProbe"]["failureThreshold"]
            .as_i64()
            .unwrap();
    assert!(
        startup_budget >= 1800,
        "a long replay gets at least 30 min: {startup_budget} s"
    );

    let tokens: PathBuf = std::env::temp_dir().join(support::unique_name("tokens"));
    std::fs::write(
        &tokens,
        "admin:deploy-test-admin-token-0001\nmetrics:deploy-test-metrics-token-01\n",
    )
    .unwrap();
    let prefix = format!("{}.", support::unique_name("k8s"));
    let app = TestApp::start(
        &support::bootstrap(),
        &[
            "--topic-prefix",
            &prefix,
            "--tokens-file",
            support::path_str(&tokens),
        ],
    )
    .await;
    support::eventually(
        "the startup probe passes",
        Duration::from_secs(60),
        || async {
            match http::get(app.addr, &startup).await {
                Ok((200, body)) => Ok(body),
                Ok((status, body)) => Err(format!("{status} {body}")),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    for path in [&liveness, &readiness] {
        let (status, body) = http::get(app.addr, path).await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
    }
    // What Prometheus scrapes needs the metrics token.
    let scrape = http::send(
        app.addr,
        "GET",
        "/metrics",
        &[("authorization", "Bearer deploy-test-metrics-token-01")],
        "",
    )
    .await;
    assert_eq!(scrape.status, 200);
    let (status, _) = http::get(app.addr, "/metrics").await.unwrap();
    assert_eq!(status, 401);
    let _ = std::fs::remove_file(&tokens);
}
