//! The fault campaign (issue 14): shopstream under randomized faults of every class, against a
//! three-broker cluster of its own, with two instances and clients that retry with
//! `Idempotency-Key`; then a checker that reads the log with a plain Kafka consumer finds no
//! acknowledged order lost, no duplicate, no event out of its causal order, and no instance
//! that differs from the log or from the other one.
//!
//! - `cargo test --test fault_campaign` runs the bounded CI mode: 50 cycles over every class,
//!   a seed printed at the start and in the report.
//! - `SHOPSTREAM_FAULT_SEED=<seed>` replays a schedule; `SHOPSTREAM_FAULT_CYCLES=<n>` runs
//!   more (from 200 on: the long campaign's load and a quiet check every 100 cycles);
//!   `compose/fault-campaign` wraps the long campaign in one command.
//! - `SHOPSTREAM_FAULT_REPORT=<file>` keeps the report; `SHOPSTREAM_FAULT_BINARY=<path>`
//!   measures another build of shopstream (the one before a fix, say);
//!   `SHOPSTREAM_FAULT_CLASSES=broker-kill,...` draws from some classes only;
//!   `SHOPSTREAM_FAULT_BROKER_CONFIG=<lines>` adds broker settings (Kafka's defaults, to
//!   measure without compose/kafka-local's); `SHOPSTREAM_FAULT_PORT` moves the ports (29092
//!   on, see tests/faults/cluster.rs).
//! - To study a failover: `SHOPSTREAM_TEST_LOG_DIR=<dir>` keeps every instance's log there
//!   (`shopstream-<pid>.log`) and the brokers' `server.log` at the end, and
//!   `SHOPSTREAM_FAULT_RUST_LOG` sets the instances' `RUST_LOG` (`info,rskafka=info` shows
//!   rskafka's leader lookups). The report's times count from the moment printed at the start.
//!
//! Seeds worth replaying (`SHOPSTREAM_FAULT_SEED=<seed>`):
//! - 101 with `SHOPSTREAM_FAULT_CLASSES=broker-kill SHOPSTREAM_FAULT_CYCLES=5`: five kills of
//!   a leader, the before/after failover figures of the README's "Fault campaign" (writes
//!   paused up to 14.1 s, 5.2 s beyond the cluster's detection, with Kafka's defaults and the
//!   shopstream before; the fixes are in src/kafka/{consumer,fetch,mod}.rs);
//! - 1168861515870562494 with `SHOPSTREAM_FAULT_CLASSES=broker-kill SHOPSTREAM_FAULT_CYCLES=30`:
//!   the replica fetch settings of compose/kafka-local (README "Fault campaign": 27 of 30 kills
//!   within detection + 2 s with Kafka's defaults, 30 of 30 with them);
//! - 777 with `SHOPSTREAM_FAULT_CLASSES=broker-pause SHOPSTREAM_FAULT_CYCLES=20`: twenty
//!   paused brokers, the before/after of the produce path's leader lookups (README "Fault
//!   campaign"; src/kafka/{connection,fetch,partitions}.rs);
//! - 20261206 and 10863299162892273332: CI-mode runs of every class, no anomaly.
//!
//! No seed so far found an acknowledged order lost, a duplicate, an event out of causal order
//! or a divergence.

mod faults;
mod support;

use std::collections::HashSet;
use std::time::Duration;

use faults::campaign::{self, Class, Settings};
use faults::checker::{self, Kind, LogRecord, ShownOrder, View};
use faults::clients::{Ack, OpKind, OpRecord, Outcome, WriterSettings};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_class_loses_duplicates_reorders_and_diverges_nothing() {
    use rand::Rng;
    let cycles = env_number("SHOPSTREAM_FAULT_CYCLES").unwrap_or(50) as usize;
    let seed = env_number("SHOPSTREAM_FAULT_SEED").unwrap_or_else(|| rand::rng().random());
    let long = cycles >= 200;
    let classes = std::env::var("SHOPSTREAM_FAULT_CLASSES")
        .map(|list| Class::parse_list(&list))
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| Class::ALL.to_vec());
    let report = std::env::var("SHOPSTREAM_FAULT_REPORT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join(format!("shopstream-faults-{seed}.txt")));
    let binary = std::env::var("SHOPSTREAM_FAULT_BINARY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shopstream").into());
    let settings = Settings {
        cycles,
        seed,
        writers: WriterSettings {
            writers: if long { 4 } else { 6 },
            think: Duration::from_millis(if long { 60 } else { 25 }),
            budget: Duration::from_secs(120),
            visibility_budget: Duration::from_secs(30),
        },
        checkpoint_every: long.then_some(100),
        report: report.clone(),
        binary,
        disk_mb: if long { 1024 } else { 256 },
        // A tmpfs needs root; CI runs as root, where the disk faults must run.
        disk_optional: !rustix::process::geteuid().is_root() && std::env::var_os("CI").is_none(),
        classes: classes.clone(),
        broker_config: std::env::var("SHOPSTREAM_FAULT_BROKER_CONFIG")
            .ok()
            .filter(|c| !c.trim().is_empty()),
    };
    let disk_optional = settings.disk_optional;
    let outcome = campaign::run(settings).await;

    let exercised: HashSet<Class> = outcome.faults.iter().map(|f| f.class).collect();
    for class in classes {
        assert!(
            exercised.contains(&class) || (class == Class::DiskFull && disk_optional),
            "seed {seed}: {} never exercised",
            class.name()
        );
    }
    assert!(
        outcome.ops.iter().filter(|o| o.ack().is_some()).count() > 100,
        "seed {seed}: too few acknowledged commands to judge:\n{}",
        outcome.report
    );
    assert!(
        outcome.anomalies.is_empty(),
        "seed {seed} (SHOPSTREAM_FAULT_SEED={seed} replays it; report in {}):\n{}",
        report.display(),
        outcome.report
    );
    let _ = outcome.kills;
}

// ------------------------------------------------------------------------------------------
// The checker itself, on logs and views made up here: it must see every kind of anomaly.

fn record(topic: usize, offset: i64, id: &str, ty: &str, at: &str, key: &str) -> LogRecord {
    LogRecord {
        topic,
        partition: 0,
        offset,
        event_id: id.into(),
        event_type: ty.into(),
        order_id: "o1".into(),
        time: chrono::DateTime::parse_from_rfc3339(at).unwrap().into(),
        key: Some(key.into()),
        status: (ty == "payment.processed").then(|| "SUCCESS".into()),
        payment_id: (ty == "payment.processed").then(|| format!("p-{id}")),
        delivery_id: None,
    }
}

fn op(kind: OpKind, key: &str, event: &str, sent: f64, done: f64) -> OpRecord {
    OpRecord {
        writer: 0,
        kind,
        key: key.into(),
        order_id: Some("o1".into()),
        first_sent: sent,
        done_at: done,
        outcome: Outcome::Acked(Ack {
            event_id: event.into(),
            topic: "orders".into(),
            partition: 0,
            offset: 0,
            instance: 0,
            replayed: false,
            value: serde_json::Value::Null,
        }),
        attempts: 1,
        failures: 0,
        first_failure: None,
        visibility_retries: 0,
        failed_tries: Vec::new(),
        racing: false,
        unexpected: Vec::new(),
    }
}

fn view(name: &str, shown: ShownOrder, total: u64, status: &str) -> View {
    View {
        name: name.into(),
        orders: [("o1".to_string(), Some(shown))].into_iter().collect(),
        stats: serde_json::json!({
            "orders": {"total": total, "by_status": {status: 1}},
        }),
    }
}

fn kinds(found: &[checker::Anomaly]) -> HashSet<Kind> {
    found.iter().map(|a| a.kind).collect()
}

#[test]
fn the_checker_passes_a_clean_history_and_sees_every_kind_of_anomaly() {
    let created = record(0, 0, "e1", "order.created", "2026-01-01T10:00:00Z", "k1");
    let paid = record(
        1,
        0,
        "e2",
        "payment.processed",
        "2026-01-01T10:00:01Z",
        "k2",
    );
    // A retried write leaves a second copy of the payment: the same event, not a duplicate.
    let paid_again = LogRecord {
        offset: 1,
        time: chrono::DateTime::parse_from_rfc3339("2026-01-01T10:00:02Z")
            .unwrap()
            .into(),
        ..paid.clone()
    };
    let log = vec![created.clone(), paid.clone(), paid_again];
    let ops = vec![
        op(OpKind::Create, "k1", "e1", 0.0, 1.0),
        op(OpKind::Pay, "k2", "e2", 2.0, 3.0),
    ];
    let folded = checker::fold(&log);
    let good = ShownOrder {
        status: folded["o1"].status.map(str::to_string),
        timeline: folded["o1"].timeline.clone(),
        payments: folded["o1"].payments.clone(),
        deliveries: Default::default(),
    };
    assert_eq!(good.status.as_deref(), Some("Paid"));
    assert_eq!(good.timeline.len(), 2, "{:?}", good.timeline);
    let views = [
        view("a", good.clone(), 1, "Paid"),
        view("b", good.clone(), 1, "Paid"),
    ];
    let found = checker::check(&ops, &log, &[], &views, None);
    assert!(found.is_empty(), "{found:?}");

    // An acknowledged cancel whose event is not in the log.
    let mut lost = ops.clone();
    lost.push(op(OpKind::Cancel, "k3", "e3", 4.0, 5.0));
    assert!(kinds(&checker::check(&lost, &log, &[], &views, None)).contains(&Kind::Missing));

    // One key, two events.
    let mut twice = log.clone();
    twice.push(record(
        1,
        2,
        "e9",
        "payment.processed",
        "2026-01-01T10:00:05Z",
        "k2",
    ));
    assert!(kinds(&checker::check(&ops, &twice, &[], &[], None)).contains(&Kind::Duplicate));

    // The payment, sent after the order was acknowledged, dated before it.
    let early = record(
        1,
        0,
        "e2",
        "payment.processed",
        "2026-01-01T09:59:00Z",
        "k2",
    );
    let reordered = vec![created.clone(), early];
    assert!(kinds(&checker::check(&ops, &reordered, &[], &[], None)).contains(&Kind::Causal));

    // An instance that shows another status than the log's, and so differs from the other.
    let mut stale = good.clone();
    stale.status = Some("Pending".into());
    let views = [view("a", good, 1, "Paid"), view("b", stale, 1, "Pending")];
    let found = kinds(&checker::check(&ops, &log, &[], &views, None));
    assert!(found.contains(&Kind::Fold), "{found:?}");
    assert!(found.contains(&Kind::Divergence), "{found:?}");
}
