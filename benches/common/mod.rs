//! What the load benchmarks (`http_load`, `history`) share: the broker they run against, Kafka
//! calls with a deadline, topics created and deleted, valid order bodies, and one HTTP exchange.

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use rskafka::client::Client;
use serde_json::{Value, json};

use shopstream::domain::demo;

/// Partitions of every benchmark topic, as shopstream creates them by default.
pub const PARTITIONS: i32 = 3;
/// Longest one HTTP request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection gives up after this many failures in a row.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 5;
/// Longest SIGTERM may take to stop shopstream.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a single Kafka call of the benchmark itself may take.
const KAFKA_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The broker this run uses; stops the local one at the end if this run started it.
pub struct Broker {
    pub bootstrap: String,
    started_here: bool,
    keep: bool,
}

impl Broker {
    pub fn acquire(keep: bool) -> Result<Self, String> {
        let external = std::env::var("KAFKA_BOOTSTRAP").is_ok_and(|b| !b.trim().is_empty());
        let was_running = external
            || Command::new(crate::support::repo_root().join("compose/kafka-local"))
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        let broker = Self {
            bootstrap: crate::support::bootstrap(),
            started_here: !was_running,
            keep,
        };
        for address in broker.bootstrap.split(',') {
            let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
            if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return Err(format!(
                    "this benchmark only talks to 127.0.0.1; the broker is at {}",
                    broker.bootstrap
                ));
            }
        }
        Ok(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.started_here && !self.keep {
            eprintln!("stopping the local broker this run started");
            let _ = Command::new(crate::support::repo_root().join("compose/kafka-local"))
                .arg("stop")
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Runs one Kafka call with this run's deadline.
pub async fn kafka_call<T, E: std::fmt::Display>(
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(KAFKA_CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {KAFKA_CALL_TIMEOUT:?}")),
    }
}

/// Creates a benchmark topic and remembers it for [`delete_topics`].
pub async fn create_topic(
    client: &Client,
    name: &str,
    created: &mut Vec<String>,
) -> Result<(), String> {
    let controller = client.controller_client().map_err(|e| e.to_string())?;
    kafka_call(
        &format!("create topic {name}"),
        controller.create_topic(name, PARTITIONS, 1, 30_000),
    )
    .await?;
    created.push(name.to_string());
    Ok(())
}

/// Deletes the topics this run created; failures are reported, not fatal.
pub async fn delete_topics(client: &Client, names: &[String]) {
    let Ok(controller) = client.controller_client() else {
        eprintln!("cannot reach the controller to delete the benchmark topics {names:?}");
        return;
    };
    for name in names {
        if let Err(e) = kafka_call(
            "delete topic",
            controller.delete_topic(name.as_str(), 30_000),
        )
        .await
        {
            eprintln!("could not delete topic {name}: {e}");
        }
    }
}

/// `POST /api/orders` bodies: varied demo orders, all valid.
pub fn order_bodies(count: usize) -> Vec<Value> {
    let mut rng = rand::rng();
    (0..count)
        .map(|_| {
            let o = demo::demo_order(&mut rng);
            json!({
                "customer_name": o.customer_name,
                "customer_email": o.customer_email,
                "product": o.product,
                "quantity": o.quantity,
                "amount": o.amount,
                "currency": o.currency,
                "address": o.address,
            })
        })
        .collect()
}

/// Takes the broker, runs `bench` on a single-threaded runtime (the other cores stay with the
/// server and the broker), stops the broker again if this run started it, and exits non-zero
/// when the benchmark failed.
pub fn run_with_broker<F, Fut>(keep_broker: bool, bench: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let broker = match Broker::acquire(keep_broker) {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!("broker: {}", broker.bootstrap);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime");
    let outcome = runtime.block_on(bench(broker.bootstrap.clone()));
    drop(runtime);
    drop(broker);
    if let Err(error) = outcome {
        eprintln!("benchmark failed: {error}");
        std::process::exit(1);
    }
}

/// An rskafka client on the benchmark's broker.
pub async fn connect(bootstrap: &str) -> Result<Client, String> {
    kafka_call("connect", async {
        let brokers = bootstrap.split(',').map(str::to_string).collect();
        rskafka::client::ClientBuilder::new(brokers).build().await
    })
    .await
}

/// Status and body of one request on an open HTTP/1 connection. No deadline: callers put
/// [`REQUEST_TIMEOUT`] around it, and drop the connection when it fails.
pub async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}
