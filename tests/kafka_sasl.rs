//! SASL to Kafka, on a real broker of the test's own with a SASL_PLAINTEXT listener: shopstream
//! connects with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (rskafka's pure-Rust SASL), places an
//! order and reads it back; a wrong password or none is "not ready" with the broker's reason,
//! never a hang; bad SASL settings stop the start with what is missing.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{TestApp, http};

const USER: &str = "shop";
const PLAIN_PASSWORD: &str = "plain-secret-7c1e";
const SCRAM_PASSWORD: &str = "scram-secret-52ab";

/// A single-node broker with a PLAINTEXT listener (for the broker itself and the admin tool)
/// and a SASL_PLAINTEXT one for shopstream. Stopped and wiped when dropped.
struct SaslBroker {
    dir: PathBuf,
    sasl_bootstrap: String,
}

impl SaslBroker {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(support::unique_name("sasl"));
        let port = support::free_port_pair(1000);
        let sasl_port = support::free_port();
        let controller = port + 1000;
        let extra = [
            format!(
                "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
            ),
            format!(
                "advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
            ),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT".into(),
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into(),
            format!(
                "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}=\"{PLAIN_PASSWORD}\";"
            ),
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
        ]
        .join("\n");
        let script = support::repo_root().join("compose/kafka-local");
        let output = Command::new(&script)
            .args([
                "start",
                "--port",
                &port.to_string(),
                "--dir",
                support::path_str(&dir),
            ])
            .env("KAFKA_LOCAL_EXTRA_CONFIG", extra)
            .stderr(Stdio::inherit())
            .output()
            .expect("compose/kafka-local runs");
        let broker = Self {
            dir,
            sasl_bootstrap: format!("127.0.0.1:{sasl_port}"),
        };
        assert!(output.status.success(), "the SASL broker did not start");
        // SCRAM credentials live in the cluster's metadata: added through the plain listener,
        // one mechanism per request.
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let added = Command::new(&script)
                .args([
                    "java-class",
                    "kafka.admin.ConfigCommand",
                    "--bootstrap-server",
                    &format!("127.0.0.1:{port}"),
                    "--alter",
                    "--add-config",
                    &format!("{mechanism}=[iterations=4096,password={SCRAM_PASSWORD}]"),
                    "--entity-type",
                    "users",
                    "--entity-name",
                    USER,
                ])
                .stderr(Stdio::inherit())
                .output()
                .expect("the admin tool runs");
            assert!(added.status.success(), "cannot add the {mechanism} user");
        }
        broker
    }
}

impl Drop for SaslBroker {
    fn drop(&mut self) {
        let _ = Command::new(support::repo_root().join("compose/kafka-local"))
            .args(["stop", "--wipe", "--dir", support::path_str(&self.dir)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn password_file(password: &str) -> PathBuf {
    let file = std::env::temp_dir().join(support::unique_name("sasl-password"));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    file
}

async fn start(broker: &SaslBroker, mechanism: &str, password: &str) -> (TestApp, PathBuf) {
    let file = password_file(password);
    let prefix = format!("{}.", support::unique_name(mechanism));
    let server = TestApp::start(
        &broker.sasl_bootstrap,
        &[
            "--topic-prefix",
            &prefix,
            "--kafka-timeout",
            "5s",
            "--kafka-sasl-mechanism",
            mechanism,
            "--kafka-sasl-username",
            USER,
            "--kafka-sasl-password-file",
            support::path_str(&file),
        ],
    )
    .await;
    (server, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopstream_speaks_plain_and_scram_and_says_why_when_refused() {
    let broker = tokio::task::spawn_blocking(SaslBroker::start)
        .await
        .unwrap();
    for (mechanism, password) in [
        ("plain", PLAIN_PASSWORD),
        ("scram-sha-256", SCRAM_PASSWORD),
        ("scram-sha-512", SCRAM_PASSWORD),
    ] {
        let (server, file) = start(&broker, mechanism, password).await;
        server.wait_ready(Duration::from_secs(60)).await;
        // A client retries a 503 with the same Idempotency-Key (on a loaded machine the first
        // SCRAM logins of a fresh process can take longer than one deadline).
        let body = json!({
            "customer_name": "Grace Hopper",
            "customer_email": "grace@example.com",
            "product": "Compiler",
            "amount": "12.00",
            "address": "Arlington, Virginia",
        })
        .to_string();
        let key = format!("sasl-{mechanism}");
        let placed = support::eventually(
            "the order is written and read back",
            Duration::from_secs(90),
            || {
                let body = body.clone();
                let key = key.clone();
                async move {
                    let reply = http::exchange(
                        server.addr,
                        "POST",
                        "/api/orders?wait=true",
                        &[
                            ("content-type", "application/json"),
                            ("idempotency-key", &key),
                        ],
                        body,
                    )
                    .await?;
                    if reply.status == 201 {
                        Ok(reply.json)
                    } else {
                        Err(format!("{}: {}", reply.status, reply.json))
                    }
                }
            },
        )
        .await;
        let id = placed["order"]["order_id"].as_str().unwrap().to_string();
        let (status, detail) = http::get(server.addr, &format!("/api/orders/{id}"))
            .await
            .unwrap();
        assert_eq!(status, 200, "{mechanism}: {detail}");
        server.stop(Duration::from_secs(10)).await;
        std::fs::remove_file(file).unwrap();
    }

    // A wrong password: alive, not ready, and the reason is the broker's refusal.
    let (server, file) = start(&broker, "scram-sha-256", "not-the-password").await;
    // Each attempt logs in again (SCRAM's key derivation runs in this debug build): on a busy
    // machine the first attempts may end on their deadline before the broker refuses.
    let reason = support::eventually(
        "a refused SASL login shows in /readyz",
        Duration::from_secs(90),
        || async {
            let (status, body) = http::get(server.addr, "/readyz").await?;
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .to_lowercase();
            if status == 503 && (message.contains("sasl") || message.contains("auth")) {
                Ok(message)
            } else {
                Err(format!("{status}: {body}"))
            }
        },
    )
    .await;
    assert!(
        !reason.contains("not-the-password"),
        "the password is never shown: {reason}"
    );
    let (status, _) = http::get(server.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    let (status, refused) = http::post(server.addr, "/api/orders/create", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 503, "{refused}");
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_file(file).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_sasl_settings_stop_the_start_with_what_is_missing() {
    use clap::Parser;
    let data = std::env::temp_dir().join(support::unique_name("sasl-config"));
    for (args, expected) in [
        (
            vec!["--kafka-sasl-mechanism", "plain"],
            "--kafka-sasl-username",
        ),
        (
            vec![
                "--kafka-sasl-mechanism",
                "scram-sha-512",
                "--kafka-sasl-username",
                "shop",
            ],
            "password",
        ),
        (
            vec!["--kafka-sasl-username", "shop"],
            "--kafka-sasl-mechanism",
        ),
    ] {
        let config = shopstream::Config::try_parse_from(
            [
                "shopstream",
                "--kafka",
                "127.0.0.1:1",
                "--data-dir",
                support::path_str(&data),
            ]
            .into_iter()
            .chain(args.iter().copied()),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stopped = tokio::time::timeout(
            Duration::from_secs(10),
            shopstream::serve(listener, config, tokio_util::sync::CancellationToken::new()),
        )
        .await
        .expect("bad SASL settings stop the start at once");
        let message = stopped.unwrap_err().to_string();
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    let bad =
        shopstream::Config::try_parse_from(["shopstream", "--kafka-sasl-mechanism", "gssapi"]);
    assert!(bad.is_err(), "an unknown mechanism is refused by the flags");
    let _ = std::fs::remove_dir_all(data);
}
