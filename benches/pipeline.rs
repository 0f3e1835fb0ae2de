//! Benchmarks of the pure logic and the store: the partitioner, the event codec, and applying
//! events into the read model's store (a temporary fjall database). No Kafka, no HTTP.
//!
//! `cargo bench --bench pipeline [-- FILTER]`
//!
//! The machine these run on is shared and noisy, so every figure comes with a reference
//! measured in the same run, sample for sample: each sample times the subject and then its
//! reference (the order alternates between samples), and the reported ratio is the median of
//! the per-sample ratios `subject time / reference time`. Absolute ns/op are medians too, and
//! only indicative. Nothing here asserts a timing.
//!
//! Environment: `BENCH_SAMPLES` (default 15; the store rows take a third of it, at least 3),
//! `BENCH_SAMPLE_MS` (target length of one sample, default 30).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use uuid::Uuid;

use shopstream::domain::demo;
use shopstream::domain::event::{
    DeliveryDetails, DeliveryStatus, Event, EventBody, EventType, PaymentDetails, PaymentStatus,
    Position, TopicRole,
};
use shopstream::domain::partitioner::partition_for_key;
use shopstream::kafka::TopicLayout;
use shopstream::model::store::{FetchedRecord, Store};

/// Partitions per topic, as shopstream creates them by default.
const PARTITIONS: i32 = 3;
/// Records per batch handed to the store (a consumer's fetch holds about this many).
const STORE_BATCH: usize = 2_000;
/// Events applied per sample of the `apply` rows (10,000 orders, 3 events each).
const APPLY_ORDERS: usize = 10_000;
/// Longest calibration: no single sample may run more than this many operations.
const MAX_BATCH: u64 = 1 << 28;

/// One timed sample: runs `n` operations (or a fixed number of its own choosing) and says how
/// long they took and how many ran.
type Sampler<'a> = Box<dyn FnMut(u64) -> (Duration, u64) + 'a>;

/// A sampler that runs `op` `n` times.
fn per_op<'a, T>(mut op: impl FnMut() -> T + 'a) -> Sampler<'a> {
    Box::new(move |n| {
        let started = Instant::now();
        for _ in 0..n {
            black_box(op());
        }
        (started.elapsed(), n)
    })
}

/// A sampler whose every call does a fixed amount of work: `run` returns the time of the part
/// that counts (set-up and tear-down excluded) and the number of operations it performed.
fn fixed<'a>(run: impl FnMut() -> (Duration, u64) + 'a) -> Sampler<'a> {
    let mut run = run;
    Box::new(move |_| run())
}

struct Settings {
    samples: usize,
    sample_time: Duration,
    filter: Option<String>,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(default, |v| v.clamp(*range.start(), *range.end()))
        };
        // `cargo bench` passes `--bench`; anything else that is not a flag filters rows.
        let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        Self {
            samples: number("BENCH_SAMPLES", 15, 3..=1001) as usize,
            sample_time: Duration::from_millis(number("BENCH_SAMPLE_MS", 30, 1..=10_000)),
            filter,
        }
    }
}

/// One line of the result table.
struct Row {
    name: String,
    reference: String,
    ns: f64,
    ref_ns: f64,
    ratio: f64,
    ratio_low: f64,
    ratio_high: f64,
}

struct Bench {
    settings: Settings,
    rows: Vec<Row>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The value at quantile `q` (0..=1) of sorted `values`, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Bench {
    fn wanted(&self, name: &str) -> bool {
        self.settings
            .filter
            .as_ref()
            .is_none_or(|f| name.to_lowercase().contains(&f.to_lowercase()))
    }

    /// Picks a batch size for `sampler` so that one sample lasts about the sample time, which
    /// also warms it up (caches, branch predictors, allocator).
    fn calibrate(&self, sampler: &mut Sampler<'_>) -> u64 {
        let mut n = 1;
        let warm_up = Instant::now();
        loop {
            let (took, ran) = sampler(n);
            if ran != n {
                // A fixed-size sampler: one more call to warm it up is enough.
                if warm_up.elapsed() < self.settings.sample_time {
                    sampler(n);
                }
                return n;
            }
            if took >= self.settings.sample_time || n >= MAX_BATCH {
                return n;
            }
            // Aim straight for the target once a sample takes measurable time.
            let grow = if took > Duration::from_micros(200) {
                (self.settings.sample_time.as_secs_f64() / took.as_secs_f64()).ceil() as u64
            } else {
                10
            };
            n = (n * grow.clamp(2, 100)).min(MAX_BATCH);
        }
    }

    /// Measures `subject` against `reference`, sample for sample, and records a row.
    fn compare(
        &mut self,
        name: &str,
        mut subject: Sampler<'_>,
        reference_name: &str,
        mut reference: Sampler<'_>,
        samples: usize,
    ) {
        if !self.wanted(name) {
            return;
        }
        eprint!("  {name} ... ");
        let n_subject = self.calibrate(&mut subject);
        let n_reference = self.calibrate(&mut reference);
        let mut subject_ns = Vec::with_capacity(samples);
        let mut reference_ns = Vec::with_capacity(samples);
        let mut ratios = Vec::with_capacity(samples);
        let per_op = |(took, ran): (Duration, u64)| took.as_nanos() as f64 / ran.max(1) as f64;
        for sample in 0..samples {
            // Alternate which one runs first, so that neither always gets the warmer cache
            // or the quieter moment.
            let (s, r) = if sample % 2 == 0 {
                let s = per_op(subject(n_subject));
                (s, per_op(reference(n_reference)))
            } else {
                let r = per_op(reference(n_reference));
                (per_op(subject(n_subject)), r)
            };
            subject_ns.push(s);
            reference_ns.push(r);
            ratios.push(s / r);
        }
        let ratio = median(&mut ratios);
        let row = Row {
            name: name.to_string(),
            reference: reference_name.to_string(),
            ns: median(&mut subject_ns),
            ref_ns: median(&mut reference_ns),
            ratio,
            ratio_low: quantile(&ratios, 0.25),
            ratio_high: quantile(&ratios, 0.75),
        };
        eprintln!("{} per op, ratio {:.3}", fmt_ns(row.ns), row.ratio);
        self.rows.push(row);
    }

    fn print(&self) {
        let name_width = self
            .rows
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(9)
            .max(9);
        let ref_width = self
            .rows
            .iter()
            .map(|r| r.reference.len())
            .max()
            .unwrap_or(9)
            .max(9);
        println!();
        println!(
            "{:<name_width$} | {:>11} | {:>11} | {:<ref_width$} | {:>11} | {:>8} | {:>15}",
            "benchmark", "time/op", "ops/s", "reference", "ref time/op", "ratio", "ratio p25-p75"
        );
        println!(
            "{}",
            "-".repeat(name_width + ref_width + 11 * 3 + 8 + 15 + 6 * 3)
        );
        for r in &self.rows {
            println!(
                "{:<name_width$} | {:>11} | {:>11} | {:<ref_width$} | {:>11} | {:>8.3} | {:>15}",
                r.name,
                fmt_ns(r.ns),
                fmt_rate(1e9 / r.ns),
                r.reference,
                fmt_ns(r.ref_ns),
                r.ratio,
                format!("{:.3}-{:.3}", r.ratio_low, r.ratio_high),
            );
        }
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn fmt_rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} k", per_second / 1e3)
    } else {
        format!("{per_second:.1}")
    }
}

/// A fixed point in time, so that runs build identical events.
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, 9, 0, 0).unwrap()
}

fn random_uuid(rng: &mut StdRng) -> String {
    Uuid::from_u128(rng.random::<u128>()).to_string()
}

/// A typical order as `POST /api/orders` writes it: a demo order, UUID ids.
fn order_created(rng: &mut StdRng, order_id: &str, time: DateTime<Utc>) -> Event {
    Event {
        event_id: random_uuid(rng),
        event_type: EventType::OrderCreated,
        order_id: order_id.to_string(),
        time,
        body: EventBody::OrderCreated(demo::demo_order(rng)),
    }
}

/// One order's created, payment and delivery events, each with the record value shopstream
/// writes for it and the position it would be read at.
fn order_story(
    rng: &mut StdRng,
    index: usize,
    offsets: &mut HashMap<(TopicRole, i32), i64>,
) -> Vec<(Event, Position, String)> {
    let order_id = random_uuid(rng);
    let partition = partition_for_key(order_id.as_bytes(), PARTITIONS);
    let created_at = epoch() + TimeDelta::milliseconds(index as i64 * 10);
    let created = order_created(rng, &order_id, created_at);
    let EventBody::OrderCreated(details) = &created.body else {
        unreachable!()
    };
    let payment = Event {
        event_id: random_uuid(rng),
        event_type: EventType::PaymentProcessed,
        order_id: order_id.clone(),
        time: created_at + TimeDelta::seconds(2),
        body: EventBody::PaymentProcessed(PaymentDetails {
            payment_id: random_uuid(rng),
            amount: details.amount,
            currency: "EUR".into(),
            method: demo::demo_payment_method(rng).to_string(),
            status: PaymentStatus::Success,
            failure_reason: None,
        }),
    };
    let carrier = demo::demo_carrier(rng);
    let delivery = Event {
        event_id: random_uuid(rng),
        event_type: EventType::DeliveryCreated,
        order_id: order_id.clone(),
        time: created_at + TimeDelta::seconds(60),
        body: EventBody::Delivery(DeliveryDetails {
            delivery_id: random_uuid(rng),
            address: details.address.clone(),
            status: DeliveryStatus::Shipped,
            estimated_date: Some(demo::estimated_delivery(created_at.date_naive(), carrier)),
            carrier: Some(carrier.to_string()),
        }),
    };
    [created, payment, delivery]
        .into_iter()
        .map(|event| {
            let topic = event.event_type.topic();
            let offset = offsets.entry((topic, partition)).or_default();
            let position = Position {
                topic,
                partition,
                offset: *offset,
            };
            *offset += 1;
            let value = event.to_json();
            (event, position, value)
        })
        .collect()
}

/// `count` events: whole order stories (created, paid, shipped), cut at `count`.
fn event_log(rng: &mut StdRng, count: usize) -> Vec<(Event, Position, String)> {
    let mut offsets = HashMap::new();
    let mut events = Vec::with_capacity(count + 2);
    let mut index = 0;
    while events.len() < count {
        events.extend(order_story(rng, index, &mut offsets));
        index += 1;
    }
    events.truncate(count);
    events
}

fn layout() -> TopicLayout {
    TopicLayout::uniform("", PARTITIONS)
}

/// Applies `records` (value bytes and position) to a fresh temporary store, in batches per
/// partition as the consumers hand them over, decoding each record first when `decode`;
/// returns the time from the first batch to the last commit.
fn apply_to_store(
    runtime: &tokio::runtime::Runtime,
    records: &[(Vec<u8>, Position)],
    decode: bool,
) -> Duration {
    let (store, _dir) = Store::temporary(64 << 20);
    runtime.block_on(store.check_layout(&layout())).unwrap();
    let decoded: Option<Vec<FetchedRecord>> = (!decode).then(|| {
        records
            .iter()
            .map(|(bytes, position)| fetched(bytes, *position))
            .collect()
    });
    let started = Instant::now();
    runtime.block_on(async {
        let mut batches: HashMap<(TopicRole, i32), Vec<FetchedRecord>> = HashMap::new();
        let mut decoded = decoded.map(Vec::into_iter);
        for (bytes, position) in records {
            let record = match decoded.as_mut() {
                Some(ready) => ready.next().unwrap(),
                None => fetched(bytes, *position),
            };
            let key = (position.topic, position.partition);
            let batch = batches.entry(key).or_default();
            batch.push(record);
            if batch.len() == STORE_BATCH {
                let full = std::mem::take(batch);
                store
                    .apply_fetched(key.0, key.1, full, position.offset + 1)
                    .await
                    .unwrap();
            }
        }
        for ((topic, partition), batch) in batches {
            if let Some(last) = batch.last() {
                let next = last.offset + 1;
                store
                    .apply_fetched(topic, partition, batch, next)
                    .await
                    .unwrap();
            }
        }
    });
    let took = started.elapsed();
    store.close();
    took
}

fn fetched(bytes: &[u8], position: Position) -> FetchedRecord {
    let event = Event::decode(bytes, position, position.topic.as_str(), epoch()).unwrap();
    FetchedRecord {
        offset: position.offset,
        key: Some(event.order_id.clone()),
        record_time: event.time,
        decoded: Ok((event, String::from_utf8_lossy(bytes).into_owned())),
        idempotency: None,
    }
}

fn main() {
    let settings = Settings::from_env();
    let samples = settings.samples;
    let big_samples = (samples / 3).max(3);
    let mut bench = Bench {
        settings,
        rows: Vec::new(),
    };
    let mut rng = StdRng::seed_from_u64(0x5eed_0f0d_d5ee);
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    eprintln!(
        "shopstream pipeline benchmarks: {samples} paired samples per row ({big_samples} for the \
         store rows), {cores} cores"
    );

    // --- The partitioner: 36-byte UUID keys, 3 partitions.
    let keys: Vec<String> = (0..1024).map(|_| random_uuid(&mut rng)).collect();
    {
        let mut i = 0;
        let mut j = 0;
        bench.compare(
            "murmur2 partition_for_key (36 B key)",
            per_op(|| {
                i = (i + 1) & 1023;
                partition_for_key(black_box(keys[i].as_bytes()), PARTITIONS)
            }),
            "SipHash-1-3 (std DefaultHasher) % 3",
            per_op(|| {
                j = (j + 1) & 1023;
                let mut h = DefaultHasher::new();
                h.write(black_box(keys[j].as_bytes()));
                h.finish() % 3
            }),
            samples,
        );
    }

    // --- The codec, on a typical order record.
    let order_id = random_uuid(&mut rng);
    let order = order_created(&mut rng, &order_id, epoch());
    let record = order.to_bytes();
    let record_value: Value = serde_json::from_slice(&record).unwrap();
    let position = Position {
        topic: TopicRole::Orders,
        partition: 1,
        offset: 42,
    };
    eprintln!(
        "  the order record is {} bytes: {}",
        record.len(),
        String::from_utf8_lossy(&record)
    );
    bench.compare(
        "Event::decode (order.created)",
        per_op(|| Event::decode(black_box(&record), position, "orders", epoch()).unwrap()),
        "serde_json::from_slice::<Value>",
        per_op(|| serde_json::from_slice::<Value>(black_box(&record)).unwrap()),
        samples,
    );
    bench.compare(
        "Event::to_bytes (order.created)",
        per_op(|| black_box(&order).to_bytes()),
        "serde_json::to_vec(&Value)",
        per_op(|| serde_json::to_vec(black_box(&record_value)).unwrap()),
        samples,
    );

    // --- The store: created + payment + delivery, per event, in batches per partition.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let events = event_log(&mut rng, APPLY_ORDERS * 3);
    let records: Vec<(Vec<u8>, Position)> =
        events.iter().map(|(e, p, _)| (e.to_bytes(), *p)).collect();
    drop(events);
    bench.compare(
        "store apply (created/paid/shipped mix)",
        fixed(|| {
            (
                apply_to_store(&runtime, &records, false),
                records.len() as u64,
            )
        }),
        "serde_json::from_slice::<Value>",
        per_op(|| serde_json::from_slice::<Value>(black_box(&record)).unwrap()),
        big_samples,
    );
    bench.compare(
        "decode + store apply per record (replay work)",
        fixed(|| {
            (
                apply_to_store(&runtime, &records, true),
                records.len() as u64,
            )
        }),
        "serde_json::from_slice::<Value>",
        per_op(|| serde_json::from_slice::<Value>(black_box(&record)).unwrap()),
        big_samples,
    );
    drop(records);

    bench.print();
    println!();
    println!(
        "ratio = subject time / reference time, median of {samples} paired samples \
         ({big_samples} for the store rows); p25-p75 shows their spread."
    );
    println!("order record: {} bytes of JSON", record.len());
}
