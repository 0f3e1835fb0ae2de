//! The campaign: setup, randomized fault cycles from a seed, quiet checks, and the report.
//!
//! One fault at a time, each drawn from a deck that holds every class about equally often and
//! shuffled by the seed. A broker that was killed is restarted in the background while the
//! next cycles run; a broker fault waits until every partition is fully replicated again, so
//! that the cluster never loses two of its three brokers. The writers run throughout.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::checker::{self, Anomaly, Kind, LogReader};
use super::clients::{Clock, Journal, OpKind, OpRecord, WriterSettings, Writers};
use super::cluster::{self, Cluster};
use super::instances::{Instances, SmallDisk};
use super::proxy::{self, Toxiproxy};
use crate::support::{self, http};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    ShopKill9,
    ShopSigterm,
    BrokerKill9,
    BrokerPause,
    NetLatency,
    NetCut,
    NetBlackhole,
    DiskFull,
}

impl Class {
    pub const ALL: [Class; 8] = [
        Class::ShopKill9,
        Class::ShopSigterm,
        Class::BrokerKill9,
        Class::BrokerPause,
        Class::NetLatency,
        Class::NetCut,
        Class::NetBlackhole,
        Class::DiskFull,
    ];

    /// The name `SHOPSTREAM_FAULT_CLASSES` takes.
    pub fn short(self) -> &'static str {
        match self {
            Class::ShopKill9 => "shop-kill",
            Class::ShopSigterm => "shop-term",
            Class::BrokerKill9 => "broker-kill",
            Class::BrokerPause => "broker-pause",
            Class::NetLatency => "net-latency",
            Class::NetCut => "net-cut",
            Class::NetBlackhole => "net-blackhole",
            Class::DiskFull => "disk-full",
        }
    }

    /// `a,b,...` of short names; an unknown name panics, naming the known ones.
    pub fn parse_list(list: &str) -> Vec<Class> {
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                Class::ALL
                    .into_iter()
                    .find(|c| c.short() == n)
                    .unwrap_or_else(|| {
                        let known: Vec<&str> = Class::ALL.iter().map(|c| c.short()).collect();
                        panic!("no fault class {n:?}; the classes: {}", known.join(","))
                    })
            })
            .collect()
    }

    /// A fault of a broker process, which waits for the cluster to be whole first.
    pub fn is_broker(self) -> bool {
        matches!(self, Class::BrokerKill9 | Class::BrokerPause)
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::ShopKill9 => "shopstream kill -9",
            Class::ShopSigterm => "shopstream SIGTERM",
            Class::BrokerKill9 => "broker kill -9 (a leader)",
            Class::BrokerPause => "broker SIGSTOP > deadline",
            Class::NetLatency => "network latency",
            Class::NetCut => "network cut",
            Class::NetBlackhole => "network black hole",
            Class::DiskFull => "data dir full",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub cycles: usize,
    pub seed: u64,
    pub writers: WriterSettings,
    /// A quiet check of the orders touched since the previous one, every so many cycles.
    pub checkpoint_every: Option<usize>,
    /// Where the report is written (besides stderr).
    pub report: PathBuf,
    /// The shopstream binary under test.
    pub binary: PathBuf,
    /// Size of instance 0's tmpfs data dir.
    pub disk_mb: u32,
    /// Without root (no tmpfs), leave the disk faults out instead of failing.
    pub disk_optional: bool,
    /// The classes drawn from (every one unless `SHOPSTREAM_FAULT_CLASSES` says otherwise).
    pub classes: Vec<Class>,
    /// Extra broker settings (`SHOPSTREAM_FAULT_BROKER_CONFIG`: Kafka's defaults, say, to
    /// measure the unavailability before compose/kafka-local's settings).
    pub broker_config: Option<String>,
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub cycle: usize,
    pub class: Class,
    pub detail: String,
    pub start: f64,
    pub healed: f64,
    /// When the cluster itself had moved leadership off the broker (kill, pause).
    pub detected: Option<f64>,
}

pub struct Outcome {
    pub faults: Vec<Fault>,
    pub ops: Vec<OpRecord>,
    pub anomalies: Vec<Anomaly>,
    pub report: String,
    pub kills: Vec<KillPause>,
}

/// How long writes paused after a broker was killed, against the cluster's own detection.
#[derive(Debug, Clone)]
pub struct KillPause {
    pub cycle: usize,
    pub node: usize,
    pub detection: Option<f64>,
    pub pause: f64,
    /// The command that waited longest, as its client saw it.
    pub longest: String,
}

impl KillPause {
    /// How long the writes waited beyond the cluster's detection, when it was seen.
    fn beyond_detection(&self) -> Option<f64> {
        self.detection.map(|d| self.pause - d)
    }

    /// Its line in the report.
    fn line(&self) -> String {
        format!(
            "  cycle {:>4} node {}: detection {}, pause {:.2} s, beyond detection {}",
            self.cycle,
            self.node,
            seconds(self.detection),
            self.pause,
            self.beyond_detection()
                .map_or("?".into(), |b| format!("{b:+.2} s")),
        )
    }
}

struct Rig {
    clock: Clock,
    cluster: Arc<Cluster>,
    proxy: Toxiproxy,
    instances: Instances,
    disk: Option<SmallDisk>,
    topics: Vec<String>,
    restarting: Option<tokio::task::JoinHandle<()>>,
    anomalies: Vec<Anomaly>,
    faults: Vec<Fault>,
}

pub async fn run(settings: Settings) -> Outcome {
    let started = Instant::now();
    let clock = Clock(started);
    let mut rng = StdRng::seed_from_u64(settings.seed);
    // The report's times count from here; its wall-clock time lines them up with the logs.
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "fault campaign: seed {} ({} cycles; SHOPSTREAM_FAULT_SEED={} replays this schedule); its clock's 0 s is {:.3} s past the Unix epoch",
        settings.seed,
        settings.cycles,
        settings.seed,
        wall.as_secs_f64()
    );

    let cluster = Arc::new(
        tokio::task::spawn_blocking({
            let extra = settings.broker_config.clone();
            move || Cluster::start("campaign", extra)
        })
        .await
        .unwrap(),
    );
    let proxy_log = cluster.dir.with_extension("toxiproxy.log");
    let proxy = Toxiproxy::start(&proxy::binary(), &proxy_log).await;
    for n in 0..cluster::NODES {
        proxy
            .create(
                &format!("broker-{}", n + 1),
                cluster.proxy_ports[n],
                cluster.shop_ports[n],
            )
            .await;
    }
    let wants_disk = settings.classes.contains(&Class::DiskFull);
    let disk = match SmallDisk::mount(settings.disk_mb) {
        Ok(disk) if !wants_disk => {
            drop(disk);
            None
        }
        Ok(disk) => Some(disk),
        Err(why) if settings.disk_optional => {
            eprintln!("fault campaign: no tmpfs ({why}): the disk faults are left out");
            None
        }
        Err(why) => panic!("the disk faults need a tmpfs (root): {why}"),
    };
    let prefix = format!("{}.", support::unique_name("campaign"));
    let topics: Vec<String> = checker::TOPICS
        .iter()
        .map(|t| format!("{prefix}{t}"))
        .collect();
    let data_dirs = vec![
        match &disk {
            Some(disk) => disk.dir.join("data"),
            None => std::env::temp_dir().join(support::unique_name("campaign-a")),
        },
        std::env::temp_dir().join(support::unique_name("campaign-b")),
    ];
    let mut instances = Instances::new(
        settings.binary.clone(),
        cluster.proxied_bootstrap(),
        prefix.clone(),
        data_dirs,
    );
    for i in 0..instances.len() {
        instances.start(i);
    }
    for i in 0..instances.len() {
        assert!(
            instances.wait_ready(i, Duration::from_secs(120)).await,
            "instance {i} never became ready; logs:\n{}",
            instances.logs(i)
        );
    }
    let mut rig = Rig {
        clock,
        cluster,
        proxy,
        instances,
        disk,
        topics,
        restarting: None,
        anomalies: Vec::new(),
        faults: Vec::new(),
    };
    let journal = Arc::new(Journal::default());
    let writers = Writers::start(
        rig.instances.addresses.clone(),
        Arc::clone(&journal),
        clock,
        settings.writers.clone(),
        rng.random(),
    );
    let mut reader = LogReader::connect(&rig.cluster.direct_bootstrap(), &prefix).await;
    eprintln!(
        "fault campaign: set up in {:.1} s (brokers {}, shopstream through the proxy at {})",
        clock.now(),
        rig.cluster.direct_bootstrap(),
        rig.cluster.proxied_bootstrap()
    );

    let classes: Vec<Class> = settings
        .classes
        .iter()
        .copied()
        .filter(|c| *c != Class::DiskFull || rig.disk.is_some())
        .collect();
    let deck = schedule(settings.cycles, &classes, &mut rng);
    let mut checked_ops = 0;
    let mut last_check = 0;
    for (cycle, class) in deck.iter().enumerate() {
        let calm = rng.random_range(300..1000);
        tokio::time::sleep(Duration::from_millis(calm)).await;
        rig.notice_crashes().await;
        let fault = rig.inject(cycle, *class, &mut rng).await;
        eprintln!(
            "cycle {cycle:>4} {:<26} {:>7.1} s  {}",
            class.name(),
            fault.start,
            fault.detail
        );
        rig.faults.push(fault);
        if let Some(every) = settings.checkpoint_every
            && cycle + 1 - last_check >= every
            && cycle + 1 < deck.len()
        {
            last_check = cycle + 1;
            writers.pause().await;
            let ops = journal.snapshot();
            let scope = checker::orders_of(&ops[checked_ops..]);
            let found = rig.quiet_check(&mut reader, &ops, Some(&scope)).await;
            eprintln!(
                "checkpoint after cycle {cycle}: {} orders checked, {} anomalies",
                scope.len(),
                found.len()
            );
            rig.anomalies.extend(found);
            checked_ops = ops.len();
            writers.resume();
        }
    }

    // Quiet: every fault healed, the writers done, then the whole log against everything.
    eprintln!("fault campaign: healing every fault, then letting the writers finish");
    rig.heal_all().await;
    writers.stop().await;
    let ops = journal.snapshot();
    let found = rig.quiet_check(&mut reader, &ops, None).await;
    rig.anomalies.extend(found);
    for unclean in &rig.instances.unclean_shutdowns {
        rig.anomalies.push(Anomaly {
            kind: Kind::Unexpected,
            detail: unclean.clone(),
        });
    }
    rig.instances.stop_all();

    let kills = kill_pauses(&rig.faults, &ops);
    let broker_pauses = write_pauses(Class::BrokerPause, &rig.faults, &ops);
    let settings_line = broker_settings(&rig.cluster);
    let report = report(
        &settings,
        started.elapsed(),
        &rig.faults,
        &ops,
        &rig.anomalies,
        &kills,
        &broker_pauses,
        &settings_line,
        rig.instances.restarts,
        reader.records.len(),
    );
    eprintln!("{report}");
    if let Err(e) = std::fs::write(&settings.report, &report) {
        eprintln!("cannot write {}: {e}", settings.report.display());
    }
    Outcome {
        faults: rig.faults,
        ops,
        anomalies: rig.anomalies,
        report,
        kills,
    }
}

/// Every class about equally often, shuffled; a broker fault follows another only after
/// [`BROKER_SPACING`] other cycles while others are left, so that the restart of a killed
/// broker (many seconds of JVM start) runs during them instead of holding the next one up.
fn schedule(cycles: usize, classes: &[Class], rng: &mut StdRng) -> Vec<Class> {
    let mut pool: Vec<Class> = (0..cycles).map(|i| classes[i % classes.len()]).collect();
    pool.shuffle(rng);
    let mut deck = Vec::with_capacity(cycles);
    let mut since_broker = usize::MAX;
    while !pool.is_empty() {
        let pick = if since_broker < BROKER_SPACING {
            pool.iter().position(|c| !c.is_broker()).unwrap_or(0)
        } else {
            0
        };
        let class = pool.remove(pick);
        since_broker = if class.is_broker() {
            0
        } else {
            since_broker.saturating_add(1)
        };
        deck.push(class);
    }
    deck
}

const BROKER_SPACING: usize = 3;

impl Rig {
    /// An instance whose process ended by itself is a crash: recorded, and started again.
    async fn notice_crashes(&mut self) {
        for i in 0..self.instances.len() {
            if let Some(crash) = self.instances.exited(i) {
                self.anomalies.push(Anomaly {
                    kind: Kind::Unexpected,
                    detail: crash,
                });
                self.instances.kill9(i);
                self.instances.restart(i);
            }
        }
    }

    async fn inject(&mut self, cycle: usize, class: Class, rng: &mut StdRng) -> Fault {
        let mut fault = Fault {
            cycle,
            class,
            detail: String::new(),
            start: self.clock.now(),
            healed: 0.0,
            detected: None,
        };
        match class {
            Class::ShopKill9 | Class::ShopSigterm => {
                let i = rng.random_range(0..self.instances.len());
                let down = Duration::from_millis(rng.random_range(0..1000));
                fault.start = self.clock.now();
                if class == Class::ShopKill9 {
                    self.instances.kill9(i);
                    fault.detail = format!("instance {i}, down {} ms", down.as_millis());
                } else {
                    let took = self.instances.sigterm(i);
                    fault.detail = format!(
                        "instance {i}, stopped in {} ms, down {} ms more",
                        took.as_millis(),
                        down.as_millis()
                    );
                }
                tokio::time::sleep(down).await;
                self.instances.restart(i);
                if !self.instances.wait_ready(i, Duration::from_secs(90)).await {
                    self.anomalies.push(Anomaly {
                        kind: Kind::Unexpected,
                        detail: format!(
                            "cycle {cycle}: instance {i} not ready 90 s after its restart; logs:\n{}",
                            super::instances::tail(&self.instances.logs(i), 30)
                        ),
                    });
                }
            }
            Class::BrokerKill9 | Class::BrokerPause => {
                let state = self.wait_cluster_healthy().await;
                let leaders: Vec<usize> = (1..=cluster::NODES)
                    .filter(|n| cluster::leads(&state, *n as i32) > 0)
                    .collect();
                let node = *leaders.choose(rng).unwrap_or(&1);
                let led = cluster::leads(&state, node as i32);
                let watch = self.watch_detection(node);
                fault.start = self.clock.now();
                if class == Class::BrokerKill9 {
                    let cluster = Arc::clone(&self.cluster);
                    tokio::task::spawn_blocking(move || cluster.kill9(node))
                        .await
                        .unwrap();
                    let detected = watch.await.unwrap();
                    fault.detected = detected;
                    // Stay down a little longer, so the recovery after detection is observed
                    // with the broker still gone; then restart it in the background.
                    let hold = rng.random_range(1000..2500);
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    let cluster = Arc::clone(&self.cluster);
                    self.restarting = Some(tokio::task::spawn_blocking(move || {
                        cluster.restart_down_nodes()
                    }));
                    fault.detail = format!(
                        "node {node} (led {led} of 9 partitions), gone for the cluster after {}",
                        seconds(detected.map(|d| d - fault.start))
                    );
                } else {
                    let hold = Duration::from_millis(rng.random_range(5500..7500));
                    self.cluster.signal(node, rustix::process::Signal::STOP);
                    tokio::time::sleep(hold).await;
                    self.cluster.signal(node, rustix::process::Signal::CONT);
                    watch.abort();
                    let detected = watch.await.ok().flatten();
                    fault.detected = detected;
                    fault.detail = format!(
                        "node {node} (led {led}), paused {} ms, gone for the cluster after {}",
                        hold.as_millis(),
                        seconds(detected.map(|d| d - fault.start))
                    );
                }
            }
            Class::NetLatency | Class::NetCut | Class::NetBlackhole => {
                let targets: Vec<usize> = if rng.random_bool(0.5) {
                    (1..=cluster::NODES).collect()
                } else {
                    vec![rng.random_range(1..=cluster::NODES)]
                };
                let names: Vec<String> = targets.iter().map(|n| format!("broker-{n}")).collect();
                let which = if targets.len() == cluster::NODES {
                    "every broker".to_string()
                } else {
                    format!("broker {}", targets[0])
                };
                fault.start = self.clock.now();
                let hold = match class {
                    Class::NetLatency => {
                        let latency = rng.random_range(100..1500);
                        let jitter = rng.random_range(0..200);
                        for name in &names {
                            self.proxy
                                .add_toxic(
                                    name,
                                    "latency",
                                    json!({"latency": latency, "jitter": jitter}),
                                )
                                .await;
                        }
                        let hold = rng.random_range(1500..4000);
                        fault.detail =
                            format!("{which}: +{latency} ms ±{jitter} each way for {hold} ms");
                        hold
                    }
                    Class::NetCut => {
                        for name in &names {
                            self.proxy.set_enabled(name, false).await;
                        }
                        let hold = rng.random_range(1000..3000);
                        fault.detail = format!("{which}: connections cut, refused for {hold} ms");
                        hold
                    }
                    _ => {
                        for name in &names {
                            self.proxy
                                .add_toxic(name, "timeout", json!({"timeout": 0}))
                                .await;
                        }
                        let hold = rng.random_range(2000..5000);
                        fault.detail = format!("{which}: every byte dropped for {hold} ms");
                        hold
                    }
                };
                tokio::time::sleep(Duration::from_millis(hold)).await;
                self.proxy.reset().await;
            }
            Class::DiskFull => {
                let disk_dir = self.disk.as_ref().expect("a disk").dir.clone();
                fault.start = self.clock.now();
                let filler = tokio::task::spawn_blocking(move || super::instances::fill(&disk_dir))
                    .await
                    .unwrap();
                let hold = rng.random_range(1500..3500);
                tokio::time::sleep(Duration::from_millis(hold)).await;
                let _ = std::fs::remove_file(&filler);
                fault.detail = format!("instance 0's data dir full for {hold} ms");
            }
        }
        fault.healed = self.clock.now();
        fault
    }

    /// Polls the surviving brokers' metadata until node `n` leads nothing and is in no
    /// in-sync replica set: when the cluster itself noticed the fault.
    fn watch_detection(&self, n: usize) -> tokio::task::JoinHandle<Option<f64>> {
        let survivors: Vec<String> = (1..=cluster::NODES)
            .filter(|m| *m != n)
            .map(|m| self.cluster.direct[m - 1].clone())
            .collect();
        let topics = self.topics.clone();
        let clock = self.clock;
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                for addr in &survivors {
                    if let Ok(state) = cluster::leadership(addr, &topics).await
                        && cluster::detected_gone(&state, n as i32)
                    {
                        return Some(clock.now());
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None
        })
    }

    /// Waits for a background broker restart, then until every partition has all its
    /// replicas in sync; the leadership then.
    async fn wait_cluster_healthy(&mut self) -> cluster::Leadership {
        if let Some(restart) = self.restarting.take() {
            restart.await.expect("the broker restart did not panic");
        }
        let started = Instant::now();
        loop {
            for addr in &self.cluster.direct {
                if let Ok(state) = cluster::leadership(addr, &self.topics).await
                    && cluster::fully_replicated(&state)
                {
                    return state;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "the cluster did not get every replica in sync within 180 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every fault undone: proxies reset, brokers running, instances running and ready.
    async fn heal_all(&mut self) {
        self.proxy.reset().await;
        for n in 1..=cluster::NODES {
            self.cluster.signal(n, rustix::process::Signal::CONT);
        }
        if let Some(restart) = self.restarting.take() {
            restart.await.unwrap();
        }
        let cluster = Arc::clone(&self.cluster);
        tokio::task::spawn_blocking(move || cluster.restart_down_nodes())
            .await
            .unwrap();
        self.wait_cluster_healthy().await;
        self.notice_crashes().await;
        for i in 0..self.instances.len() {
            if !self.instances.is_up(i) {
                self.instances.restart(i);
            }
        }
        for i in 0..self.instances.len() {
            if !self.instances.wait_ready(i, Duration::from_secs(120)).await {
                self.anomalies.push(Anomaly {
                    kind: Kind::Unexpected,
                    detail: format!(
                        "instance {i} not ready 120 s after the last fault; logs:\n{}",
                        super::instances::tail(&self.instances.logs(i), 40)
                    ),
                });
            }
        }
    }

    /// Waits until the log stops growing (a write that timed out for its client may still
    /// land within shopstream's Kafka deadline) and every instance has read all of it, then
    /// compares the log, the journal and both instances for the orders of `scope`.
    async fn quiet_check(
        &mut self,
        reader: &mut LogReader,
        ops: &[OpRecord],
        scope: Option<&HashSet<String>>,
    ) -> Vec<Anomaly> {
        eprintln!("quiet check: reading the log to its end");
        let mut ends = reader.read_to_end().await;
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let again = reader.read_to_end().await;
            if again == ends || started.elapsed() > Duration::from_secs(60) {
                ends = again;
                break;
            }
            ends = again;
        }
        eprintln!(
            "quiet check: {} records; comparing with the instances",
            reader.records.len()
        );
        let mut found = Vec::new();
        let mut views = Vec::new();
        for i in 0..self.instances.len() {
            let Some(addr) = self.instances.addresses.get(i) else {
                continue;
            };
            if let Err(lag) = caught_up(addr, &ends).await {
                found.push(Anomaly {
                    kind: Kind::Unexpected,
                    detail: format!("instance {i} did not read the whole log in 120 s: {lag}"),
                });
                continue;
            }
            let ids: Vec<String> = checker::orders_in_log(&reader.records)
                .into_iter()
                .filter(|id| scope.is_none_or(|s| s.contains(id)))
                .collect();
            match checker::fetch_view(&format!("instance {i}"), addr, &ids).await {
                Ok(view) => views.push(view),
                Err(e) => found.push(Anomaly {
                    kind: Kind::Unexpected,
                    detail: e,
                }),
            }
        }
        found.extend(checker::check(
            ops,
            &reader.records,
            &reader.unreadable,
            &views,
            scope,
        ));
        found
    }
}

/// Polls `/api/kafka` until every partition's next offset reached `ends`.
async fn caught_up(
    addr: std::net::SocketAddr,
    ends: &BTreeMap<(usize, i32), i64>,
) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok((200, kafka)) = http::get(addr, "/api/kafka").await {
            let behind: Vec<String> = ends
                .iter()
                .filter(|((t, p), end)| {
                    let next = kafka["partitions"].as_array().and_then(|ps| {
                        ps.iter()
                            .find(|x| x["topic"] == checker::TOPICS[*t] && x["partition"] == *p)
                    });
                    next.and_then(|x| x["next_offset"].as_i64())
                        .is_none_or(|n| n < **end)
                })
                .map(|((t, p), end)| format!("{}/{p} (end {end})", checker::TOPICS[*t]))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            last = behind.join(", ");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(last)
}

/// The pause of the writes after each broker kill: from the kill to the last
/// acknowledgement of a command that was in flight at the kill or sent until 5 s after the
/// restart began (and before the next fault), and had to wait (a failure, or more than a
/// second).
pub fn kill_pauses(faults: &[Fault], ops: &[OpRecord]) -> Vec<KillPause> {
    write_pauses(Class::BrokerKill9, faults, ops)
}

/// The same for every fault of `class` that stops a broker (a kill, a pause): from its start
/// on, until the restart or the SIGCONT.
pub fn write_pauses(class: Class, faults: &[Fault], ops: &[OpRecord]) -> Vec<KillPause> {
    let mut pauses = Vec::new();
    for (k, f) in faults.iter().enumerate() {
        if f.class != class {
            continue;
        }
        let next = faults.get(k + 1).map_or(f64::MAX, |n| n.start);
        let node = f
            .detail
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let waited = ops
            .iter()
            // Commands sent until a little after the broker's restart began; a later one in
            // flight at the next fault belongs to that one.
            .filter(|o| {
                o.ack().is_some() && o.done_at > f.start && o.first_sent < next.min(f.healed + 5.0)
            })
            .filter(|o| {
                o.failures > 0 || o.visibility_retries > 0 || o.done_at - o.first_sent > 1.0
            })
            .map(|o| (o.done_at - o.first_sent.max(f.start), o))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let pause = waited.map_or(0.0, |w| w.0);
        let longest = waited.map_or(String::new(), |(_, o)| {
            // What each failed try met, in time from the kill: what the write waited for.
            let tries: String = o
                .failed_tries
                .iter()
                .map(|t| {
                    format!(
                        "\n        try on instance {} from {:+.2} s to {:+.2} s: {}",
                        t.instance,
                        t.sent - f.start,
                        t.answered - f.start,
                        t.answer
                    )
                })
                .collect();
            format!(
                "{:?} sent at {:+.2} s, answered by instance {} at {:+.2} s; {} tries, {} failed, {} waits for the order to be read{tries}",
                o.kind,
                o.first_sent - f.start,
                o.ack().map_or(9, |a| a.instance),
                o.done_at - f.start,
                o.attempts,
                o.failures,
                o.visibility_retries
            )
        });
        pauses.push(KillPause {
            cycle: f.cycle,
            node,
            detection: f.detected.map(|d| d - f.start),
            pause,
            longest,
        });
    }
    pauses
}

/// Unavailability windows: for every command that met a failure, from the first failed
/// attempt to its acknowledgement (or to giving up); with the last fault that began before it
/// was answered and healed less than 15 s before its first failure (a window may open just
/// before a fault and be held up by it).
pub fn windows(faults: &[Fault], ops: &[OpRecord]) -> Vec<(Option<Class>, f64, usize)> {
    ops.iter()
        .filter_map(|o| {
            let from = o.first_failure?;
            let fault = faults
                .iter()
                .rev()
                .find(|f| f.start <= o.done_at && from <= f.healed + 15.0);
            let cycle = fault
                .or_else(|| faults.iter().rev().find(|f| f.start <= from))
                .map_or(0, |f| f.cycle);
            Some((fault.map(|f| f.class), o.done_at - from, cycle))
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn seconds(s: Option<f64>) -> String {
    s.map_or("(not within the fault)".into(), |s| format!("{s:.1} s"))
}

/// The failure-detection settings of the cluster, as node 1's server.properties has them.
fn broker_settings(cluster: &Cluster) -> String {
    let config =
        std::fs::read_to_string(cluster.node_dir(1).join("server.properties")).unwrap_or_default();
    let get = |key: &str, default: &str| {
        config
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or(default)
            .to_string()
    };
    format!(
        "broker.session.timeout.ms={} broker.heartbeat.interval.ms={} replica.lag.time.max.ms={} \
         controller.quorum.fetch.timeout.ms={} replica.fetch.backoff.ms={} replica.fetch.wait.max.ms={}",
        get("broker.session.timeout.ms", "9000 (default)"),
        get("broker.heartbeat.interval.ms", "2000 (default)"),
        get("replica.lag.time.max.ms", "30000 (default)"),
        get("controller.quorum.fetch.timeout.ms", "2000 (default)"),
        get("replica.fetch.backoff.ms", "1000 (default)"),
        get("replica.fetch.wait.max.ms", "500 (default)"),
    )
}

#[allow(clippy::too_many_arguments)]
fn report(
    settings: &Settings,
    took: Duration,
    faults: &[Fault],
    ops: &[OpRecord],
    anomalies: &[Anomaly],
    kills: &[KillPause],
    broker_pauses: &[KillPause],
    broker_settings: &str,
    restarts: usize,
    records: usize,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== shopstream fault campaign: seed {}, {} cycles in {:.0} s ==",
        settings.seed,
        faults.len(),
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "replay: SHOPSTREAM_FAULT_SEED={} SHOPSTREAM_FAULT_CYCLES={}",
        settings.seed, settings.cycles
    );
    let _ = writeln!(
        out,
        "cluster: 3 brokers, RF 3, min.insync.replicas=2; {broker_settings}"
    );
    let _ = writeln!(
        out,
        "binary: {}; {} writers",
        settings.binary.display(),
        settings.writers.writers
    );
    let all_windows = windows(faults, ops);
    let _ = writeln!(
        out,
        "\nfaults per class (windows: commands that met a failure, from the first failed try to their answer):"
    );
    let _ = writeln!(
        out,
        "  {:<27} {:>6} {:>8} {:>9} {:>9}",
        "class", "faults", "windows", "longest", "p99"
    );
    let mut classes: Vec<Option<Class>> = Class::ALL.iter().copied().map(Some).collect();
    classes.push(None);
    for class in classes {
        let count = faults.iter().filter(|f| Some(f.class) == class).count();
        let mut w: Vec<f64> = all_windows
            .iter()
            .filter(|(c, _, _)| *c == class)
            .map(|(_, d, _)| *d)
            .collect();
        w.sort_by(|a, b| a.total_cmp(b));
        if class.is_none() && w.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<27} {:>6} {:>8} {:>8.2}s {:>8.2}s",
            class.map_or("(between faults)", |c| c.name()),
            if class.is_some() {
                count.to_string()
            } else {
                "-".into()
            },
            w.len(),
            w.last().copied().unwrap_or(0.0),
            percentile(&w, 0.99)
        );
    }
    let mut w: Vec<f64> = all_windows.iter().map(|(_, d, _)| *d).collect();
    w.sort_by(|a, b| a.total_cmp(b));
    let longest = all_windows
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, d, cycle)| {
            format!(
                "{d:.2} s (cycle {cycle}, {})",
                c.map_or("between faults", |c| c.name())
            )
        })
        .unwrap_or_else(|| "none".into());
    let _ = writeln!(
        out,
        "  all windows: {}; longest {longest}; p99 {:.2} s; p50 {:.2} s",
        w.len(),
        percentile(&w, 0.99),
        percentile(&w, 0.5)
    );
    let _ = writeln!(out, "  shopstream restarts: {restarts}");
    let mut longest: Vec<&OpRecord> = ops.iter().filter(|o| o.first_failure.is_some()).collect();
    longest.sort_by(|a, b| {
        (b.done_at - b.first_failure.unwrap_or(0.0))
            .total_cmp(&(a.done_at - a.first_failure.unwrap_or(0.0)))
    });
    for o in longest.iter().take(5) {
        let _ = writeln!(
            out,
            "  a long one: {:?} by writer {}, first failure at {:.2} s, answered at {:.2} s after {} tries ({} failed)",
            o.kind,
            o.writer,
            o.first_failure.unwrap_or(0.0),
            o.done_at,
            o.attempts,
            o.failures
        );
    }
    let _ = writeln!(
        out,
        "  faults at: {}",
        faults
            .iter()
            .map(|f| format!("{}@{:.1}-{:.1}", f.class.short(), f.start, f.healed))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let acked = ops.iter().filter(|o| o.ack().is_some()).count();
    let orders = checker::count(ops, OpKind::Create);
    let retried = ops.iter().filter(|o| o.failures > 0).count();
    let replayed = ops
        .iter()
        .filter(|o| o.ack().is_some_and(|a| a.replayed))
        .count();
    let gave_up = ops
        .iter()
        .filter(|o| matches!(o.outcome, super::clients::Outcome::GaveUp))
        .count();
    let racing = ops.iter().filter(|o| o.racing).count() / 2;
    let other_instance = ops.iter().filter(|o| o.visibility_retries > 0).count();
    let _ = writeln!(
        out,
        "\nclients: {} commands, {acked} acknowledged ({orders} orders placed, {} payments, {} cancels, {} shipments, {} delivery steps); {records} records in the log",
        ops.len(),
        checker::count(ops, OpKind::Pay),
        checker::count(ops, OpKind::Cancel),
        checker::count(ops, OpKind::Ship),
        checker::count(ops, OpKind::Advance),
    );
    let _ = writeln!(
        out,
        "  retried with their Idempotency-Key after a timeout/5xx/refused connection: {retried} (answered as replays: {replayed}); gave up: {gave_up}; waited for the other instance to read the order: {other_instance}; racing cancel/pay pairs on the two instances: {racing}"
    );

    let _ = writeln!(
        out,
        "\nbroker kills (pause: from the kill to the last answer of a write that had to wait; goal: ≤ the cluster's own detection + 2 s):"
    );
    let mut met = 0;
    let mut worst_beyond: f64 = 0.0;
    for k in kills {
        let beyond = k.beyond_detection();
        let ok = beyond.is_some_and(|b| b <= 2.0);
        met += ok as usize;
        worst_beyond = worst_beyond.max(beyond.unwrap_or(f64::INFINITY));
        let _ = writeln!(out, "{} {}", k.line(), if ok { "ok" } else { "OVER" });
        if !ok {
            let _ = writeln!(out, "      longest wait: {}", k.longest);
        }
    }
    let mut pauses: Vec<f64> = kills.iter().map(|k| k.pause).collect();
    pauses.sort_by(|a, b| a.total_cmp(b));
    let _ = writeln!(
        out,
        "  {} kills: longest pause {:.2} s, p99 {:.2} s; longest beyond detection {:.2} s; within detection + 2 s: {met} of {}",
        kills.len(),
        pauses.last().copied().unwrap_or(0.0),
        percentile(&pauses, 0.99),
        if kills.is_empty() { 0.0 } else { worst_beyond },
        kills.len()
    );

    if !broker_pauses.is_empty() {
        let _ = writeln!(
            out,
            "\nbroker pauses (from the SIGSTOP to the last answer of a write that had to wait; the paused broker's partitions wait for the cluster's detection, an in-flight write for the leader's move):"
        );
        for p in broker_pauses {
            let _ = writeln!(out, "{}", p.line());
            if p.beyond_detection().is_none_or(|b| b > 2.0) {
                let _ = writeln!(out, "      longest wait: {}", p.longest);
            }
        }
        let mut longest: Vec<f64> = broker_pauses.iter().map(|p| p.pause).collect();
        longest.sort_by(|a, b| a.total_cmp(b));
        let _ = writeln!(
            out,
            "  {} pauses: longest {:.2} s, p50 {:.2} s",
            broker_pauses.len(),
            longest.last().copied().unwrap_or(0.0),
            percentile(&longest, 0.5),
        );
    }

    let _ = writeln!(out, "\nanomalies: {}", anomalies.len());
    for kind in Kind::ALL {
        let n = anomalies.iter().filter(|a| a.kind == kind).count();
        let _ = writeln!(out, "  {:<46} {n}", kind.name());
    }
    for a in anomalies.iter().take(30) {
        let _ = writeln!(out, "  - [{}] {}", a.kind.name(), a.detail);
    }
    out
}
