//! The shop's clients during the campaign: writers that take orders through their lifecycle,
//! each command with an `Idempotency-Key` of its own, retried with the same key and body after
//! every timeout, refused connection or 5xx, on either instance. What every client saw goes
//! into the [`Journal`], which the checker compares with the log.
//!
//! - Each writer runs one order at a time, one command at a time, so the commands of an order
//!   have a causal order (the next is sent after the previous was acknowledged).
//! - A command goes to the instance that acknowledged the order's previous one, or, now and
//!   then and after every failure, to the other: both instances write to the same orders. The
//!   other instance may not have read the order yet (404, 409): such an answer is retried
//!   too, for a while, as a client of an eventually consistent shop does.
//! - Some orders get a cancel and a payment at the same moment, one on each instance: the two
//!   instances race, and must agree afterwards on who won.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::instances::Addresses;
use crate::support::http;

/// Seconds since the campaign began, the one time axis of the journal, the faults and the
/// report.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn now(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Create,
    Pay,
    Cancel,
    Ship,
    Advance,
}

impl OpKind {
    pub fn event_type(self) -> &'static str {
        match self {
            OpKind::Create => "order.created",
            OpKind::Pay => "payment.processed",
            OpKind::Cancel => "order.cancelled",
            OpKind::Ship => "delivery.created",
            OpKind::Advance => "delivery.updated",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ack {
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub instance: usize,
    /// Answered from an earlier write under the same key (`Idempotent-Replayed: true`).
    pub replayed: bool,
    /// The record value the answer carried.
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Acked(Ack),
    /// A final answer that is not a success (status, error code).
    Refused(u16, String),
    /// No acknowledgement within the budget: the event may or may not be in the log.
    GaveUp,
}

/// One command as its client saw it.
#[derive(Debug, Clone)]
pub struct OpRecord {
    pub writer: usize,
    pub kind: OpKind,
    pub key: String,
    pub order_id: Option<String>,
    pub first_sent: f64,
    pub done_at: f64,
    pub outcome: Outcome,
    pub attempts: u32,
    /// Attempts that timed out, could not connect or got a 5xx.
    pub failures: u32,
    /// When the first of those was sent.
    pub first_failure: Option<f64>,
    /// 404/409 answers retried while the instance had not read the order yet.
    pub visibility_retries: u32,
    /// What each failed try met, so that a long wait in the report says what it waited for.
    pub failed_tries: Vec<FailedTry>,
    /// One of a pair sent at once to the two instances (no causal order between them).
    pub racing: bool,
    /// Answers that no request of a well-behaved client should get (422, 400, ...).
    pub unexpected: Vec<String>,
}

/// One try that timed out, could not connect or got a 5xx.
#[derive(Debug, Clone)]
pub struct FailedTry {
    pub instance: usize,
    /// Seconds on the campaign's clock.
    pub sent: f64,
    pub answered: f64,
    /// The status and error code and message, or why there was no answer.
    pub answer: String,
}

impl OpRecord {
    pub fn ack(&self) -> Option<&Ack> {
        match &self.outcome {
            Outcome::Acked(ack) => Some(ack),
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct Journal {
    ops: Mutex<Vec<OpRecord>>,
}

impl Journal {
    fn push(&self, op: OpRecord) {
        self.ops.lock().unwrap().push(op);
    }

    pub fn snapshot(&self) -> Vec<OpRecord> {
        self.ops.lock().unwrap().clone()
    }
}

/// How the writers behave.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub writers: usize,
    /// Pause between two commands of a writer (the load's rate).
    pub think: Duration,
    /// How long a command is retried before the client gives up.
    pub budget: Duration,
    /// How long a 404/409 from an instance that has not read the order yet is retried.
    pub visibility_budget: Duration,
}

struct Shared {
    addresses: Addresses,
    journal: Arc<Journal>,
    clock: Clock,
    settings: WriterSettings,
    stop: AtomicBool,
    paused: AtomicBool,
    /// Writers between two orders while paused.
    idle: AtomicUsize,
}

pub struct Writers {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    pub fn start(
        addresses: Addresses,
        journal: Arc<Journal>,
        clock: Clock,
        settings: WriterSettings,
        seed: u64,
    ) -> Self {
        let shared = Arc::new(Shared {
            addresses,
            journal,
            clock,
            settings: settings.clone(),
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
        });
        let tasks = (0..settings.writers)
            .map(|w| {
                let shared = Arc::clone(&shared);
                tokio::spawn(writer(w, shared, seed.wrapping_add(w as u64 * 7919)))
            })
            .collect();
        Self { shared, tasks }
    }

    /// Lets every writer finish its order and wait (a quiet moment for a check).
    pub async fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
        while self.shared.idle.load(Ordering::SeqCst) < self.tasks.len()
            && !self.tasks.iter().all(|t| t.is_finished())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Stops the writers once their current order is done.
    pub async fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.paused.store(false, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a writer panicked");
        }
    }
}

/// The lifecycles the writers play.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Paid, shipped and delivered (or stopped on the way).
    Happy { steps: usize },
    /// The card is declined (`decline.test`), then the order is cancelled.
    Declined,
    /// Cancelled right away.
    Cancelled,
    /// A cancel and a payment at once, one on each instance.
    Race,
}

async fn writer(w: usize, shared: Arc<Shared>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        if shared.paused.load(Ordering::SeqCst) {
            shared.idle.fetch_add(1, Ordering::SeqCst);
            while shared.paused.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            shared.idle.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        n += 1;
        let plan = match rng.random_range(0..100) {
            0..60 => Plan::Happy {
                steps: rng.random_range(1..=5),
            },
            60..75 => Plan::Declined,
            75..90 => Plan::Cancelled,
            _ => Plan::Race,
        };
        run_order(w, n, plan, &shared, &mut rng).await;
    }
}

async fn run_order(w: usize, n: u64, plan: Plan, shared: &Arc<Shared>, rng: &mut StdRng) {
    let instances = shared.addresses.count().max(1);
    let home = rng.random_range(0..instances);
    let domain = if matches!(plan, Plan::Declined) {
        "decline.test"
    } else {
        "example.com"
    };
    let body = json!({
        "customer_name": format!("Writer {w} Customer {n}"),
        "customer_email": format!("w{w}.c{n}@{domain}"),
        "product": "Campaign Mug",
        "quantity": 1 + (n % 3),
        "amount": format!("{}.{:02}", 5 + n % 400, n % 100),
        "currency": "EUR",
        "address": format!("{n} Fault Street"),
    });
    let create = command(
        shared,
        w,
        OpKind::Create,
        None,
        "POST",
        "/api/orders".into(),
        body,
        home,
        false,
        rng,
    )
    .await;
    let Some(ack) = create.ack().cloned() else {
        return;
    };
    let order_id = ack.value["order_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if order_id.is_empty() {
        return;
    }
    let mut home = ack.instance;
    // Now and then a command goes to the other instance on purpose.
    let pick = |rng: &mut StdRng, home: usize| {
        if instances > 1 && rng.random_bool(0.15) {
            (home + 1) % instances
        } else {
            home
        }
    };
    let pay_path = format!("/api/orders/{order_id}/payments");
    let cancel_path = format!("/api/orders/{order_id}/cancel");
    match plan {
        Plan::Cancelled => {
            let to = pick(rng, home);
            command(
                shared,
                w,
                OpKind::Cancel,
                Some(&order_id),
                "POST",
                cancel_path,
                json!({"reason": "changed my mind"}),
                to,
                false,
                rng,
            )
            .await;
        }
        Plan::Declined => {
            let to = pick(rng, home);
            let paid = command(
                shared,
                w,
                OpKind::Pay,
                Some(&order_id),
                "POST",
                pay_path,
                json!({"method": "Credit Card"}),
                to,
                false,
                rng,
            )
            .await;
            let Some(ack) = paid.ack() else { return };
            home = ack.instance;
            let to = pick(rng, home);
            command(
                shared,
                w,
                OpKind::Cancel,
                Some(&order_id),
                "POST",
                cancel_path,
                json!({"reason": "card declined"}),
                to,
                false,
                rng,
            )
            .await;
        }
        Plan::Race => {
            let first = home;
            let second = (home + 1) % instances;
            let mut rng_a = StdRng::seed_from_u64(rng.random());
            let mut rng_b = StdRng::seed_from_u64(rng.random());
            let cancel = command(
                shared,
                w,
                OpKind::Cancel,
                Some(&order_id),
                "POST",
                cancel_path,
                json!({"reason": "raced"}),
                first,
                true,
                &mut rng_a,
            );
            let pay = command(
                shared,
                w,
                OpKind::Pay,
                Some(&order_id),
                "POST",
                pay_path,
                json!({"method": "PayPal"}),
                second,
                true,
                &mut rng_b,
            );
            tokio::join!(cancel, pay);
        }
        Plan::Happy { steps } => {
            let to = pick(rng, home);
            let paid = command(
                shared,
                w,
                OpKind::Pay,
                Some(&order_id),
                "POST",
                pay_path,
                json!({"method": "Credit Card"}),
                to,
                false,
                rng,
            )
            .await;
            let Some(ack) = paid.ack() else { return };
            if steps < 2 || ack.value["status"] != "SUCCESS" {
                return;
            }
            home = ack.instance;
            let to = pick(rng, home);
            let shipped = command(
                shared,
                w,
                OpKind::Ship,
                Some(&order_id),
                "POST",
                format!("/api/orders/{order_id}/deliveries"),
                json!({"carrier": "Colissimo"}),
                to,
                false,
                rng,
            )
            .await;
            let Some(ack) = shipped.ack() else { return };
            home = ack.instance;
            let Some(delivery_id) = ack.value["delivery_id"].as_str().map(str::to_string) else {
                return;
            };
            for status in ["In Transit", "Out for Delivery", "Delivered"]
                .iter()
                .take(steps.saturating_sub(2))
            {
                let to = pick(rng, home);
                let advanced = command(
                    shared,
                    w,
                    OpKind::Advance,
                    Some(&order_id),
                    "PATCH",
                    format!("/api/deliveries/{delivery_id}"),
                    json!({ "status": status }),
                    to,
                    false,
                    rng,
                )
                .await;
                let Some(ack) = advanced.ack() else { return };
                home = ack.instance;
            }
        }
    }
}

/// One command, retried with the same key and body until it is acknowledged, refused for
/// good, or its budget is spent; journaled either way.
#[allow(clippy::too_many_arguments)]
async fn command(
    shared: &Shared,
    w: usize,
    kind: OpKind,
    order_id: Option<&str>,
    method: &str,
    path: String,
    body: Value,
    first: usize,
    racing: bool,
    rng: &mut StdRng,
) -> OpRecord {
    let clock = shared.clock;
    let key = uuid::Uuid::new_v4().to_string();
    let body = body.to_string();
    let instances = shared.addresses.count().max(1);
    let mut op = OpRecord {
        writer: w,
        kind,
        key: key.clone(),
        order_id: order_id.map(str::to_string),
        first_sent: clock.now(),
        done_at: 0.0,
        outcome: Outcome::GaveUp,
        attempts: 0,
        failures: 0,
        first_failure: None,
        visibility_retries: 0,
        failed_tries: Vec::new(),
        racing,
        unexpected: Vec::new(),
    };
    let started = Instant::now();
    let mut visibility_since: Option<Instant> = None;
    let mut target = first;
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key.as_str()),
    ];
    loop {
        if started.elapsed() > shared.settings.budget {
            op.outcome = Outcome::GaveUp;
            break;
        }
        let Some(addr) = shared.addresses.get(target) else {
            // That instance is down: the other one, unless every one is.
            let other = (0..instances)
                .map(|k| (target + 1 + k) % instances)
                .find(|&i| shared.addresses.get(i).is_some());
            match other {
                Some(i) if i != target => target = i,
                _ => {
                    let now = clock.now();
                    op.failures += 1;
                    op.first_failure.get_or_insert(now);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        op.attempts += 1;
        let sent = clock.now();
        let reply = http::exchange(addr, method, &path, &headers, body.clone()).await;
        let failed = match reply {
            Ok(reply) if reply.status == 200 || reply.status == 201 => {
                let value = ["order", "payment", "delivery"]
                    .iter()
                    .find_map(|k| reply.json.get(*k).filter(|v| v.is_object()).cloned())
                    .unwrap_or(Value::Null);
                let kafka = &reply.json["kafka"];
                op.outcome = Outcome::Acked(Ack {
                    event_id: value["event_id"].as_str().unwrap_or_default().to_string(),
                    topic: kafka["topic"].as_str().unwrap_or_default().to_string(),
                    partition: kafka["partition"].as_i64().unwrap_or(-1) as i32,
                    offset: kafka["offset"].as_i64().unwrap_or(-1),
                    instance: target,
                    replayed: reply
                        .headers
                        .get("idempotent-replayed")
                        .is_some_and(|v| v == "true"),
                    value,
                });
                if op.order_id.is_none()
                    && let Some(ack) = op.ack()
                {
                    op.order_id = ack.value["order_id"].as_str().map(str::to_string);
                }
                break;
            }
            Ok(reply) if reply.status >= 500 => Some(format!(
                "{} {}: {}",
                reply.status,
                code_of(&reply.json),
                reply.json["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(120)
                    .collect::<String>()
            )),
            // The instance has not read the order (or its last change) yet. A racing command
            // may meet a 404 too (sent at once to the instance that did not take the order);
            // its 409 is the race lost, an answer.
            Ok(reply) if reply.status == 404 || (reply.status == 409 && !racing) => {
                let since = *visibility_since.get_or_insert_with(Instant::now);
                if since.elapsed() > shared.settings.visibility_budget {
                    op.outcome = Outcome::Refused(reply.status, code_of(&reply.json));
                    break;
                }
                op.visibility_retries += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
                // Back to where the order lives, which has read it for sure.
                if op.visibility_retries.is_multiple_of(2) {
                    target = (target + 1) % instances;
                }
                continue;
            }
            Ok(reply) if reply.status == 409 => {
                op.outcome = Outcome::Refused(409, code_of(&reply.json));
                break;
            }
            Ok(reply) => {
                op.unexpected.push(format!(
                    "{method} {path} answered {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.raw)
                ));
                op.outcome = Outcome::Refused(reply.status, code_of(&reply.json));
                break;
            }
            // No answer in time, or no connection: the write may or may not have happened.
            Err(error) => Some(format!("no answer: {error}")),
        };
        if let Some(answer) = failed {
            op.failed_tries.push(FailedTry {
                instance: target,
                sent,
                answered: clock.now(),
                answer,
            });
            op.failures += 1;
            op.first_failure.get_or_insert(sent);
            if instances > 1 {
                target = (target + 1) % instances;
            }
            let pause = rng.random_range(50..150);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
    op.done_at = clock.now();
    shared.journal.push(op.clone());
    tokio::time::sleep(shared.settings.think).await;
    op
}

fn code_of(body: &Value) -> String {
    body["error"]["code"].as_str().unwrap_or("?").to_string()
}
