//! The choice of the read model's store engine, measured: the write shape of one order's
//! lifecycle (created, paid, shipped) as the first layout of shopstream's store wrote it,
//! group-committed, in fjall (the LSM tree shopstream uses) and redb (the other pure-Rust
//! candidate, copy-on-write B-trees, which shopstream used first).
//!
//! `cargo bench --bench store_engines`
//!
//! Per lifecycle: the order, its timeline, the payment and the delivery are looked up, then
//! written with their time, status and word indexes (about 26 keys, random UUIDs, values of
//! the sizes the store writes). Groups of `SHOPSTREAM_BENCH_ENGINE_GROUP` lifecycles (3,333,
//! about 10,000 records as one group commit of a replay) go in one transaction (redb) or one
//! atomic batch (fjall); once a second the engine is made durable. Every 100,000 lifecycles
//! both print the rate so far, the rate of the last 100,000 (how cost grows with history) and
//! the space on disk. Nothing is asserted. `SHOPSTREAM_BENCH_ENGINE_LIFECYCLES` (300,000) sets
//! the history; `SHOPSTREAM_BENCH_ENGINE` (`both`, `redb` or `fjall`) the engines.

use std::path::Path;
use std::time::{Duration, Instant};

use redb::ReadableTable;

const TABLES: [&str; 13] = [
    "orders",
    "timelines",
    "orders_by_time",
    "orders_by_status",
    "search",
    "payments",
    "payments_by_time",
    "payments_by_status",
    "deliveries",
    "deliveries_by_time",
    "deliveries_by_status",
    "word_counts",
    "meta",
];
const STEP: usize = 100_000;

struct Lifecycle {
    order: String,
    payment: String,
    delivery: String,
    micros: i64,
    words: Vec<String>,
}

fn lifecycles(n: usize) -> Vec<Lifecycle> {
    (0..n)
        .map(|i| Lifecycle {
            order: uuid::Uuid::new_v4().to_string(),
            payment: uuid::Uuid::new_v4().to_string(),
            delivery: uuid::Uuid::new_v4().to_string(),
            micros: 1_700_000_000_000_000 + i as i64 * 1000,
            words: vec![
                format!("ann{}", i % 500),
                format!("lee{}", i % 300),
                "example".into(),
                "com".into(),
                "laptop".into(),
                format!("p{}", i % 50),
            ],
        })
        .collect()
}

/// Order-preserving keys, as the store's tuples are: time big-endian with the sign flipped.
fn time_key(micros: i64, id: &str) -> Vec<u8> {
    let mut key = ((micros as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

fn status_key(status: u8, micros: i64, id: &str) -> Vec<u8> {
    let mut key = vec![status];
    key.extend(time_key(micros, id));
    key
}

fn word_key(word: &str, micros: i64, id: &str) -> Vec<u8> {
    let mut key = word.as_bytes().to_vec();
    key.push(0);
    key.extend(time_key(micros, id));
    key
}

type Reads = Vec<(usize, Vec<u8>)>;
type Writes = Vec<(usize, Vec<u8>, Vec<u8>)>;

/// One group's look-ups and writes (table index, key, value).
fn group_ops(group: &[Lifecycle]) -> (Reads, Writes) {
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for l in group {
        let t = l.micros;
        reads.extend([
            (0, l.order.as_bytes().to_vec()),
            (1, l.order.as_bytes().to_vec()),
            (5, l.payment.as_bytes().to_vec()),
            (8, l.delivery.as_bytes().to_vec()),
        ]);
        writes.extend([
            (0, l.order.as_bytes().to_vec(), vec![b'o'; 420]),
            (1, l.order.as_bytes().to_vec(), vec![b't'; 2700]),
            (2, time_key(t, &l.order), vec![]),
            (3, status_key(5, t, &l.order), vec![]),
            (4, word_key(&l.order, t, &l.order), vec![]),
            (5, l.payment.as_bytes().to_vec(), vec![b'p'; 320]),
            (6, time_key(t, &l.payment), vec![]),
            (7, status_key(0, t, &l.payment), vec![]),
            (8, l.delivery.as_bytes().to_vec(), vec![b'd'; 340]),
            (9, time_key(t, &l.delivery), vec![]),
            (10, status_key(0, t, &l.delivery), vec![]),
        ]);
        for word in &l.words {
            writes.push((4, word_key(word, t, &l.order), vec![]));
        }
        for word in [l.order.as_str(), &l.payment, "credit", "card"] {
            writes.push((4, word_key(word, t, &l.payment), vec![]));
        }
        for word in [l.order.as_str(), &l.delivery, "rue", "paris", "dhl"] {
            writes.push((4, word_key(word, t, &l.delivery), vec![]));
        }
    }
    writes.push((12, b"counters".to_vec(), vec![b'c'; 300]));
    (reads, writes)
}

/// Rates so far and over the last step, and the space on disk.
struct Progress {
    engine: &'static str,
    started: Instant,
    last: (usize, Instant),
}

impl Progress {
    fn new(engine: &'static str) -> Self {
        let now = Instant::now();
        Self {
            engine,
            started: now,
            last: (0, now),
        }
    }

    fn report(&mut self, done: usize, path: &Path) {
        let total = self.started.elapsed().as_secs_f64();
        let step = self.last.1.elapsed().as_secs_f64();
        let events = 3.0 * done as f64;
        let step_events = 3.0 * (done - self.last.0) as f64;
        println!(
            "{:<6} {:>9} lifecycles | {:>9.0} events/s so far | {:>9.0} events/s over the last {} | {:>7} MiB on disk",
            self.engine,
            done,
            events / total,
            step_events / step,
            done - self.last.0,
            shopstream::model::store::disk_bytes(path) >> 20
        );
        self.last = (done, Instant::now());
    }
}

fn run_redb(all: &[Lifecycle], group: usize, dir: &Path) {
    let path = dir.join("store.redb");
    let mut builder = redb::Database::builder();
    builder.set_cache_size(64 << 20);
    let db = builder.create(&path).expect("redb opens");
    let tables: Vec<redb::TableDefinition<&[u8], &[u8]>> = TABLES
        .iter()
        .map(|n| redb::TableDefinition::new(n))
        .collect();
    let mut progress = Progress::new("redb");
    let mut durable = Instant::now();
    let mut done = 0;
    for chunk in all.chunks(group) {
        let (reads, writes) = group_ops(chunk);
        let mut txn = db.begin_write().expect("write transaction");
        if durable.elapsed() >= Duration::from_secs(1) {
            txn.set_quick_repair(true);
            durable = Instant::now();
        } else {
            txn.set_durability(redb::Durability::None)
                .expect("durability");
        }
        {
            let mut open: Vec<_> = tables
                .iter()
                .map(|d| txn.open_table(*d).expect("table"))
                .collect();
            for (t, key) in &reads {
                let found = open[*t].get(key.as_slice()).expect("get");
                std::hint::black_box(found.map(|v| v.value().len()));
            }
            for (t, key, value) in &writes {
                open[*t]
                    .insert(key.as_slice(), value.as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
        let before = done;
        done += chunk.len();
        if done / STEP > before / STEP || done == all.len() {
            progress.report(done, &path);
        }
    }
}

fn run_fjall(all: &[Lifecycle], group: usize, dir: &Path) {
    let path = dir.join("fjall");
    let db = fjall::Database::builder(&path)
        .cache_size(64 << 20)
        .open()
        .expect("fjall opens");
    let keyspaces: Vec<_> = TABLES
        .iter()
        .map(|n| {
            db.keyspace(n, fjall::KeyspaceCreateOptions::default)
                .expect("keyspace")
        })
        .collect();
    let mut progress = Progress::new("fjall");
    let mut durable = Instant::now();
    let mut done = 0;
    for chunk in all.chunks(group) {
        let (reads, writes) = group_ops(chunk);
        for (t, key) in &reads {
            let found = keyspaces[*t].get(key).expect("get");
            std::hint::black_box(found.map(|v| v.len()));
        }
        let mut batch = db.batch();
        for (t, key, value) in writes {
            batch.insert(&keyspaces[t], key, value);
        }
        batch.commit().expect("commit");
        if durable.elapsed() >= Duration::from_secs(1) {
            db.persist(fjall::PersistMode::SyncAll).expect("persist");
            durable = Instant::now();
        }
        let before = done;
        done += chunk.len();
        if done / STEP > before / STEP || done == all.len() {
            progress.report(done, &path);
        }
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n: usize = env("SHOPSTREAM_BENCH_ENGINE_LIFECYCLES", 300_000);
    let group: usize = env("SHOPSTREAM_BENCH_ENGINE_GROUP", 3_333);
    let engines: String = env("SHOPSTREAM_BENCH_ENGINE", "both".to_string());
    println!(
        "store engines: {n} order lifecycles ({} events), groups of {group} lifecycles, 64 MiB cache",
        3 * n
    );
    let all = lifecycles(n);
    let dir = std::env::temp_dir().join(format!("shopstream-bench-engines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    if engines != "fjall" {
        run_redb(&all, group, &dir);
    }
    if engines != "redb" {
        run_fjall(&all, group, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
