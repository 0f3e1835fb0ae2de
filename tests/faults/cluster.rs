//! A three-broker Kafka cluster of the campaign's own (`compose/kafka-local start --nodes 3` on
//! the fixed ports of [`base_port`] and a state dir of its own), stopped and wiped when dropped.
//!
//! Every broker has two client listeners: `PLAINTEXT` (the brokers among themselves, the
//! checker, the leader watch) and `SHOP`, the one shopstream reaches through the fault proxy.
//! Kafka clients connect to the addresses the metadata advertises, so `SHOP` advertises the
//! proxy's port for that broker: shopstream, bootstrapped on the proxy, only ever talks to the
//! brokers through it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;

pub const NODES: usize = 3;

pub struct Cluster {
    pub dir: PathBuf,
    /// `127.0.0.1:port` of each broker's PLAINTEXT listener (index 0 is node 1).
    pub direct: Vec<String>,
    /// The port of each broker's SHOP listener (the proxy's upstream).
    pub shop_ports: Vec<u16>,
    /// The proxy's port for each broker (what SHOP advertises).
    pub proxy_ports: Vec<u16>,
    env: Vec<(String, String)>,
}

/// Where a partition's leadership stands, as a broker's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
}

/// `(topic, partition)` → its state.
pub type Leadership = BTreeMap<(String, i32), PartitionState>;

impl Cluster {
    /// Checks that its ports are free, starts the three nodes and waits until they serve
    /// (blocking: run it before the load starts).
    pub fn start(name: &str, extra_config: Option<String>) -> Self {
        let dir = std::env::temp_dir().join(support::unique_name(name));
        let base = base_port();
        let shop_ports: Vec<u16> = (0..NODES as u16).map(|n| base + SHOP_OFFSET + n).collect();
        let proxy_ports: Vec<u16> = (0..NODES as u16).map(|n| base + PROXY_OFFSET + n).collect();
        let mut env = Vec::new();
        for n in 0..NODES {
            let port = base + n as u16;
            env.push((
                format!("KAFKA_LOCAL_EXTRA_CONFIG_{}", n + 1),
                [
                    format!(
                        "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{},SHOP://127.0.0.1:{}",
                        port + 1000,
                        shop_ports[n]
                    ),
                    format!(
                        "advertised.listeners=PLAINTEXT://127.0.0.1:{port},SHOP://127.0.0.1:{}",
                        proxy_ports[n]
                    ),
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SHOP:PLAINTEXT".into(),
                ]
                .join("\n"),
            ));
        }
        // Three JVMs on a shared machine: a smaller heap each is plenty for the campaign.
        env.push((
            "KAFKA_LOCAL_HEAP_OPTS".into(),
            "-Xms192m -Xmx384m".to_string(),
        ));
        env.push(("KAFKA_LOCAL_START_TIMEOUT".into(), "180".into()));
        if let Some(extra) = extra_config {
            env.push(("KAFKA_LOCAL_EXTRA_CONFIG".into(), extra));
        }
        let cluster = Self {
            dir,
            direct: (0..NODES)
                .map(|n| format!("127.0.0.1:{}", base + n as u16))
                .collect(),
            shop_ports,
            proxy_ports,
            env,
        };
        cluster.kafka_local(&[
            "start",
            "--nodes",
            "3",
            "--port",
            &base.to_string(),
            "--dir",
            support::path_str(&cluster.dir),
        ]);
        cluster
    }

    /// What shopstream bootstraps on: the proxy's ports.
    pub fn proxied_bootstrap(&self) -> String {
        self.proxy_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn direct_bootstrap(&self) -> String {
        self.direct.join(",")
    }

    fn kafka_local(&self, args: &[&str]) {
        let status = Command::new(support::repo_root().join("compose/kafka-local"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("compose/kafka-local runs");
        assert!(status.success(), "compose/kafka-local {args:?} failed");
    }

    /// The process id of node `n` (1-based) while it runs.
    pub fn pid(&self, n: usize) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.join(format!("node-{n}/pid")))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }

    pub fn signal(&self, n: usize, signal: rustix::process::Signal) -> bool {
        let Some(pid) = self.pid(n) else {
            return false;
        };
        let pid = rustix::process::Pid::from_raw(pid).expect("a positive pid");
        rustix::process::kill_process(pid, signal).is_ok()
    }

    /// kill -9 of node `n`; returns once the process is gone.
    pub fn kill9(&self, n: usize) {
        let pid = self.pid(n);
        self.signal(n, rustix::process::Signal::KILL);
        if let Some(pid) = pid {
            for _ in 0..200 {
                if !alive(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts the nodes that are down again (their data kept) and waits until they serve.
    /// Blocking: several seconds of JVM start.
    pub fn restart_down_nodes(&self) {
        self.kafka_local(&["start", "--dir", support::path_str(&self.dir)]);
    }

    pub fn node_dir(&self, n: usize) -> PathBuf {
        self.dir.join(format!("node-{n}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A paused node would sit out the SIGTERM until its kill: wake every one first.
        for n in 1..=NODES {
            self.signal(n, rustix::process::Signal::CONT);
        }
        // Kept for a study of the campaign (see tests/support's log copies).
        if let Some(keep) = std::env::var_os("SHOPSTREAM_TEST_LOG_DIR") {
            for n in 1..=NODES {
                let log = self.node_dir(n).join("logs/server.log");
                let _ = std::fs::copy(log, PathBuf::from(&keep).join(format!("broker-{n}.log")));
            }
        }
        let _ = Command::new(support::repo_root().join("compose/kafka-local"))
            .args(["stop", "--wipe", "--dir", support::path_str(&self.dir)])
            .env("KAFKA_LOCAL_STOP_TIMEOUT", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A process that exists and is no zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The campaign's first broker port: `SHOPSTREAM_FAULT_PORT`, 29092 by default.
///
/// Every port of the campaign is fixed and lies below Linux's ephemeral range (32768 on):
/// a broker that was killed must get its ports back when it restarts, and a port picked from
/// the ephemeral range can meanwhile become the local end of any outgoing connection (the
/// proxy's, shopstream's), after which the broker's restart fails to bind it.
///
/// - brokers P..P+2 (PLAINTEXT), their controllers P+1000..P+1002;
/// - the SHOP listeners P+100..P+102, and the proxy in front of each P+200..P+202.
pub fn base_port() -> u16 {
    let base = std::env::var("SHOPSTREAM_FAULT_PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(29092u16);
    assert!(
        (1024..=31_000).contains(&base),
        "SHOPSTREAM_FAULT_PORT={base}: the campaign's ports must stay below the ephemeral range"
    );
    let taken: Vec<u16> = (0..NODES as u16)
        .flat_map(|n| {
            [
                base + n,
                base + 1000 + n,
                base + SHOP_OFFSET + n,
                base + PROXY_OFFSET + n,
            ]
        })
        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect();
    assert!(
        taken.is_empty(),
        "ports {taken:?} of the fault campaign are in use (another campaign running?); \
         SHOPSTREAM_FAULT_PORT=<port> moves them"
    );
    base
}

const SHOP_OFFSET: u16 = 100;
const PROXY_OFFSET: u16 = 200;

/// Leaders, replicas and in-sync replicas of `topics`, as the broker at `addr` knows them: a
/// Metadata request (v4) of our own over a plain TCP connection, so that watching the cluster
/// depends neither on shopstream nor on rskafka's caches.
pub async fn leadership(addr: &str, topics: &[String]) -> Result<Leadership, String> {
    let call = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let version = 4;
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("fault-campaign")));
        let request = MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(false);
        let mut body = BytesMut::new();
        header
            .encode(&mut body, MetadataRequest::header_version(version))
            .map_err(|e| e.to_string())?;
        request
            .encode(&mut body, version)
            .map_err(|e| e.to_string())?;
        let mut frame = BytesMut::new();
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        let length = stream.read_u32().await.map_err(|e| e.to_string())? as usize;
        let mut answer = vec![0u8; length];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Bytes::from(answer);
        ResponseHeader::decode(
            &mut answer,
            ApiKey::Metadata.response_header_version(version),
        )
        .map_err(|e| e.to_string())?;
        let response = MetadataResponse::decode(&mut answer, version).map_err(|e| e.to_string())?;
        let _ = answer.remaining();
        let mut out = Leadership::new();
        for topic in response.topics {
            let Some(name) = topic.name else { continue };
            if topic.error_code != 0 {
                return Err(format!("{}: error {}", name.0.as_str(), topic.error_code));
            }
            for p in topic.partitions {
                out.insert(
                    (name.0.as_str().to_string(), p.partition_index),
                    PartitionState {
                        leader: p.leader_id.0,
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    },
                );
            }
        }
        Ok::<_, String>(out)
    };
    tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .map_err(|_| format!("{addr}: no metadata answer within 2 s"))?
}

/// Whether every partition has a leader and all its replicas in sync.
pub fn fully_replicated(state: &Leadership) -> bool {
    !state.is_empty()
        && state
            .values()
            .all(|p| p.leader >= 0 && p.isr.len() == p.replicas.len())
}

/// Whether node `n` leads no partition and is in no in-sync replica set: the cluster has
/// noticed that it is gone.
pub fn detected_gone(state: &Leadership, n: i32) -> bool {
    !state.is_empty()
        && state
            .values()
            .all(|p| p.leader != n && p.leader >= 0 && !p.isr.contains(&n))
}

/// How many partitions node `n` leads.
pub fn leads(state: &Leadership, n: i32) -> usize {
    state.values().filter(|p| p.leader == n).count()
}
