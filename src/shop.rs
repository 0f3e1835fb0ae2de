//! The commands: place an order, pay, cancel, ship, advance a delivery.
//!
//! Each command is checked against the read model (the lifecycle's rule book decides; an
//! illegal move is a [`ShopError::Conflict`] that says why), turned into one event, written to
//! Kafka, and answered with where the event landed. The read model itself changes only when
//! the consumers read that event back.
//!
//! Within one instance, commands on the same order (and requests with the same
//! `Idempotency-Key`) run one at a time, and each first waits until the consumers caught up
//! with what this instance already wrote for that order: a client that places an order and
//! pays it right after sees its own order. Across instances, a race that slips through is
//! kept in the log and flagged as an anomaly by the read model.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::value::RawValue;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::domain::demo;
use crate::domain::event::{
    DeliveryDetails, DeliveryStatus, Event, EventBody, EventType, OrderDetails, PaymentDetails,
    Position, TopicRole, headers,
};
use crate::domain::gateway;
use crate::domain::json;
use crate::domain::lifecycle::OrderStatus;
use crate::domain::lifecycle::transition;
use crate::domain::validation::{DeliveryRequest, Invalid, PaymentRequest};
use crate::kafka::KafkaError;
use crate::kafka::producer::{OutgoingRecord, Producer, RecordSink};
use crate::messages::api::WriteAck;
use crate::model::store::{ReadView, Store};
use crate::model::{IdempotentWrite, StoreError};

/// Longest a command waits for the read model to show this instance's earlier writes.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// Longest `?wait=true` waits for the read model to show the write.
pub const VISIBLE_WAIT: Duration = Duration::from_secs(5);

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("{0}")]
    Invalid(Invalid),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("this Idempotency-Key was used with another request")]
    IdempotencyMismatch,
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("the read model is still catching up with the log; retry in a moment")]
    CatchingUp,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the event was written at {position:?} but the read model did not show it within {after:?}"
    )]
    NotVisible { position: Position, after: Duration },
}

/// The client's `Idempotency-Key` and the fingerprint of its request (method, path, body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// Options every write takes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub idempotency: Option<Idempotency>,
    /// Answer only once the read model shows the write (`?wait=true`).
    pub wait_visible: bool,
    /// The request's W3C trace context, written into the record's headers.
    pub traceparent: Option<String>,
}

/// A written (or replayed) event: the answer to a write.
#[derive(Debug, Clone)]
pub struct Written {
    pub event_type: EventType,
    /// The record value.
    pub data: Box<RawValue>,
    pub position: Position,
    /// True when this answers a repeated `Idempotency-Key` without writing again.
    pub replayed: bool,
}

impl Written {
    /// The JSON answer: `{"<kind>": data, "kafka": {topic, partition, offset}}`.
    pub fn body(&self) -> WriteAck<'_> {
        WriteAck::new(self.event_type, &self.data, self.position)
    }

    /// A string field of the record value (`order_id`, `status`...).
    pub fn field(&self, name: &str) -> Option<String> {
        json::object(&self.data)?
            .get(name)
            .and_then(|v| json::string(v))
    }
}

/// The commands, writing through `P` (Kafka's [`Producer`] outside unit tests).
#[derive(Debug)]
pub struct Shop<P: RecordSink = Producer> {
    store: Arc<Store>,
    producer: P,
    /// One lock per order id and per idempotency key in use: a command holds only its own
    /// order's (and key's), so no client can stall another's orders by aiming at a shared
    /// shard.
    locks: KeyedLocks,
    /// The `producer` header of every record this instance writes.
    producer_name: String,
}

impl<P: RecordSink> Shop<P> {
    pub fn new(store: Arc<Store>, producer: P) -> Self {
        Self {
            store,
            producer,
            locks: KeyedLocks::default(),
            producer_name: format!("shopstream/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Whether writes can go to Kafka right now (the simulator waits for this).
    pub fn can_write(&self) -> bool {
        self.producer.partition_for(TopicRole::Orders, "").is_ok()
    }

    /// `POST /api/orders`.
    pub async fn place_order(
        &self,
        details: OrderDetails,
        options: WriteOptions,
    ) -> Result<Written, ShopError> {
        let order_id = new_id("order", options.idempotency.as_ref());
        // An id drawn at random names an order nothing was ever written to: its decision reads
        // nothing, so it need not wait for this instance's earlier writes to be applied. An id
        // derived from an Idempotency-Key may have been written by an earlier try: that one
        // waits, so that the try is found and answered again instead of written twice.
        let reads = if options.idempotency.is_some() {
            Reads::OwnWrites
        } else {
            Reads::Nothing
        };
        self.write_reading(&order_id, &options, reads, |_| {
            Ok((EventType::OrderCreated, EventBody::OrderCreated(details)))
        })
        .await
    }

    /// `POST /api/orders/create`: a realistic generated order.
    pub async fn place_demo_order(&self, options: WriteOptions) -> Result<Written, ShopError> {
        let details = demo::demo_order(&mut rand::rng());
        self.place_order(details, options).await
    }

    /// `POST /api/orders/{id}/payments`: the simulated gateway decides the outcome.
    pub async fn pay(
        &self,
        order_id: &str,
        request: PaymentRequest,
        options: WriteOptions,
    ) -> Result<Written, ShopError> {
        let payment_id = new_id("payment", options.idempotency.as_ref());
        let id = order_id.to_string();
        self.write(order_id, &options, move |view| {
            let (details, status) = existing_order(view, &id)?;
            let outcome = gateway::authorise(&details, &request.method, request.amount);
            let body = EventBody::PaymentProcessed(PaymentDetails {
                payment_id,
                amount: outcome.amount,
                currency: details.currency.clone(),
                method: request.method.clone(),
                status: outcome.status,
                failure_reason: outcome.failure_reason.map(str::to_string),
            });
            check(status, &body)?;
            Ok((EventType::PaymentProcessed, body))
        })
        .await
    }

    /// `POST /api/orders/{id}/cancel`.
    pub async fn cancel(
        &self,
        order_id: &str,
        reason: Option<String>,
        options: WriteOptions,
    ) -> Result<Written, ShopError> {
        let id = order_id.to_string();
        self.write(order_id, &options, move |view| {
            let (_, status) = existing_order(view, &id)?;
            let body = EventBody::OrderCancelled { reason };
            check(status, &body)?;
            Ok((EventType::OrderCancelled, body))
        })
        .await
    }

    /// `POST /api/orders/{id}/deliveries`: ship a paid order.
    pub async fn ship(
        &self,
        order_id: &str,
        request: DeliveryRequest,
        options: WriteOptions,
    ) -> Result<Written, ShopError> {
        let delivery_id = new_id("delivery", options.idempotency.as_ref());
        let id = order_id.to_string();
        self.write(order_id, &options, move |view| {
            let (details, status) = existing_order(view, &id)?;
            let carrier = request
                .carrier
                .clone()
                .unwrap_or_else(|| "Colissimo".to_string());
            let body = EventBody::Delivery(DeliveryDetails {
                delivery_id,
                address: details.address,
                status: DeliveryStatus::Shipped,
                estimated_date: Some(demo::estimated_delivery(Utc::now().date_naive(), &carrier)),
                carrier: Some(carrier),
            });
            check(status, &body)?;
            Ok((EventType::DeliveryCreated, body))
        })
        .await
    }

    /// `PATCH /api/deliveries/{id}`: move a delivery forward.
    pub async fn advance_delivery(
        &self,
        delivery_id: &str,
        next: DeliveryStatus,
        options: WriteOptions,
    ) -> Result<Written, ShopError> {
        let not_found = |id: &str| ShopError::NotFound(format!("delivery {id} not found"));
        let id = delivery_id.to_string();
        let order_id = self
            .store
            .query(move |view| Ok(view.delivery(&id)?.map(|d| d.order_id)))
            .await?
            .ok_or_else(|| not_found(delivery_id))?;
        let (id, order) = (delivery_id.to_string(), order_id.clone());
        self.write(&order_id, &options, move |view| {
            let delivery = view.delivery(&id)?.ok_or_else(|| not_found(&id))?;
            let (_, status) = existing_order(view, &order)?;
            let body = EventBody::Delivery(DeliveryDetails {
                delivery_id: id,
                address: delivery.address,
                status: next,
                estimated_date: delivery.estimated_date,
                carrier: delivery.carrier,
            });
            check(status, &body)?;
            Ok((EventType::DeliveryUpdated, body))
        })
        .await
    }

    /// The common path of every write: serialise, catch up, honour the idempotency key,
    /// decide, write, optionally wait until visible.
    async fn write(
        &self,
        order_id: &str,
        options: &WriteOptions,
        decide: impl FnOnce(&ReadView) -> Result<(EventType, EventBody), ShopError> + Send + 'static,
    ) -> Result<Written, ShopError> {
        self.write_reading(order_id, options, Reads::OwnWrites, decide)
            .await
    }

    /// [`Self::write`], told whether the decision may depend on this instance's earlier writes.
    async fn write_reading(
        &self,
        order_id: &str,
        options: &WriteOptions,
        reads: Reads,
        decide: impl FnOnce(&ReadView) -> Result<(EventType, EventBody), ShopError> + Send + 'static,
    ) -> Result<Written, ShopError> {
        if let Some(fault) = self.store.fault() {
            return Err(ShopError::Store(StoreError::Io(fault)));
        }
        let key = options.idempotency.as_ref().map(|i| i.key.as_str());
        let _guards = self.lock(order_id, key).await;
        if reads == Reads::OwnWrites {
            self.catch_up_with_own_writes(order_id).await?;
        }

        // One read transaction: the earlier write under this key, else the decision. A few
        // point reads, served from fjall's cache and memtables, run right here: handing them to
        // the blocking pool cost more than the reads (11% of the CPU per order at 64 and 256
        // connections, `benches/wrk/post-orders`).
        let key = options.idempotency.as_ref().map(|i| i.key.clone());
        let looked_up = self.store.query_blocking(move |view| {
            if let Some(key) = key
                && let Some(earlier) = view.idempotent_write(&key)?
            {
                return Ok(Err(earlier));
            }
            Ok(Ok(decide(view)))
        })?;
        let (event_type, body) = match looked_up {
            Ok(decided) => decided?,
            Err(earlier) => return replay(earlier, options.idempotency.as_ref()),
        };
        let event = Event {
            event_id: new_id("event", options.idempotency.as_ref()),
            event_type,
            order_id: order_id.to_string(),
            time: Utc::now(),
            body,
        };
        let value = event.to_raw_json();
        let mut record_headers = BTreeMap::from([
            (
                headers::EVENT_TYPE.to_string(),
                event_type.as_str().as_bytes().to_vec(),
            ),
            (
                headers::CONTENT_TYPE.to_string(),
                b"application/json".to_vec(),
            ),
            (
                headers::PRODUCER.to_string(),
                self.producer_name.as_bytes().to_vec(),
            ),
        ]);
        if let Some(traceparent) = &options.traceparent {
            record_headers.insert(
                headers::TRACEPARENT.to_string(),
                traceparent.as_bytes().to_vec(),
            );
        }
        if let Some(i) = &options.idempotency {
            record_headers.insert(
                headers::IDEMPOTENCY_KEY.to_string(),
                i.key.as_bytes().to_vec(),
            );
            record_headers.insert(
                headers::REQUEST_FINGERPRINT.to_string(),
                i.fingerprint.as_bytes().to_vec(),
            );
        }
        let record = OutgoingRecord {
            key: order_id.to_string(),
            value: value.get().as_bytes().to_vec(),
            headers: record_headers,
            time: event.time,
        };
        let position = self.producer.send(event_type.topic(), record).await?;

        if options.wait_visible {
            let visible = self
                .store
                .wait_for(VISIBLE_WAIT, |c| {
                    c.has_applied(position.topic, position.partition, position.offset)
                })
                .await;
            if !visible {
                return Err(ShopError::NotVisible {
                    position,
                    after: VISIBLE_WAIT,
                });
            }
        }
        Ok(Written {
            event_type,
            data: value,
            position,
            replayed: false,
        })
    }

    /// Locks the order and the idempotency key (in a fixed order, so two requests can never
    /// wait on each other).
    async fn lock(&self, order_id: &str, key: Option<&str>) -> Vec<KeyedGuard> {
        let mut names = vec![format!("order\0{order_id}")];
        if let Some(key) = key {
            names.push(format!("key\0{key}"));
        }
        names.sort_unstable();
        let mut guards = Vec::with_capacity(names.len());
        for name in names {
            guards.push(self.locks.lock(name).await);
        }
        guards
    }

    /// Waits until the consumers have read everything this instance wrote to the order's
    /// partitions on all three topics.
    async fn catch_up_with_own_writes(&self, order_id: &str) -> Result<(), ShopError> {
        let mut wanted = Vec::new();
        for topic in TopicRole::ALL {
            let partition = self.producer.partition_for(topic, order_id)?;
            if let Some(offset) = self.producer.written(topic, partition) {
                wanted.push((topic, partition, offset));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let caught_up = self
            .store
            .wait_for(CATCH_UP_WAIT, |c| {
                wanted
                    .iter()
                    .all(|&(t, p, offset)| c.has_applied(t, p, offset))
            })
            .await;
        if caught_up {
            Ok(())
        } else {
            Err(ShopError::CatchingUp)
        }
    }
}

/// What a command's decision reads besides the committed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// The order as it stands after every write this instance made to its partitions: the
    /// command waits until they are applied.
    OwnWrites,
    /// Nothing this instance wrote: a new order whose id nobody can have written to.
    Nothing,
}

/// The answer to a repeated `Idempotency-Key`: the earlier write, if the request is the same.
fn replay(earlier: IdempotentWrite, asked: Option<&Idempotency>) -> Result<Written, ShopError> {
    if asked.is_none_or(|i| i.fingerprint != earlier.fingerprint) {
        return Err(ShopError::IdempotencyMismatch);
    }
    /// The one field of a record value the answer needs.
    #[derive(serde::Deserialize)]
    struct Kind {
        event_type: Option<EventType>,
    }
    let event_type = serde_json::from_str::<Kind>(&earlier.data)
        .ok()
        .and_then(|k| k.event_type)
        .unwrap_or(EventType::OrderCreated);
    // Every value kept was JSON when it was applied.
    let data = RawValue::from_string(earlier.data).unwrap_or_else(|_| json::null());
    Ok(Written {
        event_type,
        data,
        position: earlier.position,
        replayed: true,
    })
}

/// The order's details and status, or 404.
fn existing_order(
    view: &ReadView,
    order_id: &str,
) -> Result<(OrderDetails, Option<OrderStatus>), ShopError> {
    view.order(order_id)?
        .and_then(|o| o.details.map(|d| (d, o.status)))
        .ok_or_else(|| ShopError::NotFound(format!("order {order_id} not found")))
}

fn check(status: Option<OrderStatus>, body: &EventBody) -> Result<(), ShopError> {
    transition(status, body)
        .map(|_| ())
        .map_err(|v| ShopError::Conflict(v.0))
}

/// A fresh id, or, under an idempotency key, the same id every time the same request comes
/// again: a retry after an ambiguous failure then carries the same event id and order id, and
/// the read model counts it once.
fn new_id(kind: &str, idempotency: Option<&Idempotency>) -> String {
    match idempotency {
        Some(i) => Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("shopstream/{kind}/{}/{}", i.key, i.fingerprint).as_bytes(),
        ),
        // From the thread's random generator: `Uuid::new_v4` asks the kernel for every id
        // (a getrandom call per id, two per write).
        None => uuid::Builder::from_random_bytes(rand::random()).into_uuid(),
    }
    .to_string()
}

/// Locks by name, made when first asked for and dropped when nobody holds or waits for them:
/// memory follows the commands in flight, not the orders ever seen.
#[derive(Debug, Default)]
struct KeyedLocks {
    held: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

/// A held lock; releasing it removes the lock once nobody else wants it.
struct KeyedGuard {
    name: String,
    guard: Option<OwnedMutexGuard<()>>,
    held: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl KeyedLocks {
    async fn lock(&self, name: String) -> KeyedGuard {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(held.entry(name.clone()).or_default())
        };
        let guard = lock.lock_owned().await;
        KeyedGuard {
            name,
            guard: Some(guard),
            held: Arc::clone(&self.held),
        }
    }

    /// How many locks exist right now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for KeyedGuard {
    fn drop(&mut self) {
        // The owned guard keeps its lock alive: release it first.
        drop(self.guard.take());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it now: no holder, no waiter (a waiter holds a clone).
        if held
            .get(&self.name)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            held.remove(&self.name);
        }
    }
}

/// The fingerprint of a request: method, path and body (canonical JSON: keys sorted).
pub fn fingerprint(method: &str, path: &str, body: &RawValue) -> String {
    let body = json::canonical(body);
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("{method} {path}\n{body}").as_bytes(),
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    //! The commands against a log in memory that the read model consumes at once: the
    //! decisions, refusals and idempotency rules without a broker (the same paths run against
    //! a real one in `tests/api.rs`).

    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use rskafka::record::Record;

    use super::*;
    use crate::domain::event::TopicLayout;
    use crate::domain::money::Money;
    use crate::domain::partitioner::partition_for_key;
    use crate::kafka::records;
    use crate::model::store::TempDir;

    const PARTITIONS: i32 = 3;

    #[tokio::test]
    async fn a_lock_covers_its_own_order_only_and_goes_when_released() {
        let locks = KeyedLocks::default();
        let first = locks.lock("order\0a".into()).await;
        // Another order is not held up by it.
        let other = tokio::time::timeout(Duration::from_secs(5), locks.lock("order\0b".into()))
            .await
            .expect("another order's lock is free");
        assert_eq!(locks.len(), 2);
        // The same order waits until the first is released.
        let same = locks.lock("order\0a".into());
        tokio::pin!(same);
        assert!(futures_util::FutureExt::now_or_never(same.as_mut()).is_none());
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), same)
            .await
            .expect("released");
        drop(second);
        drop(other);
        assert_eq!(locks.len(), 0, "no lock outlives its holders");
    }

    /// A log in memory: each record gets the next offset of its partition and is applied to
    /// the store before `send` answers, as if the consumers had read it at once.
    struct MemoryLog {
        store: Arc<Store>,
        next: StdMutex<HashMap<(TopicRole, i32), i64>>,
        records: StdMutex<Vec<(TopicRole, OutgoingRecord)>>,
        /// While set, every write fails as with the broker away.
        broker_away: AtomicBool,
        /// While set, the producer reports a write on every partition that the consumers have
        /// not applied yet, as when they lag behind.
        consumers_lag: AtomicBool,
    }

    impl RecordSink for MemoryLog {
        fn partition_for(&self, _topic: TopicRole, key: &str) -> Result<i32, KafkaError> {
            Ok(partition_for_key(key.as_bytes(), PARTITIONS))
        }

        async fn send(
            &self,
            topic: TopicRole,
            record: OutgoingRecord,
        ) -> Result<Position, KafkaError> {
            if self.broker_away.load(Ordering::Relaxed) {
                return Err(KafkaError::NotConnected("the broker is away (test)".into()));
            }
            let partition = partition_for_key(record.key.as_bytes(), PARTITIONS);
            let offset = {
                let mut next = self.next.lock().unwrap();
                let offset = next.entry((topic, partition)).or_default();
                *offset += 1;
                *offset - 1
            };
            let position = Position {
                topic,
                partition,
                offset,
            };
            let as_read = Record {
                key: Some(record.key.clone().into_bytes()),
                value: Some(record.value.clone()),
                headers: record.headers.clone(),
                timestamp: record.time,
            };
            let fetched = records::decode(position, topic.as_str(), as_read);
            self.store
                .apply_fetched(topic, partition, vec![fetched], offset + 1)
                .await
                .expect("the store applies");
            self.records.lock().unwrap().push((topic, record));
            Ok(position)
        }

        fn written(&self, topic: TopicRole, partition: i32) -> Option<i64> {
            let next = self.next.lock().unwrap().get(&(topic, partition)).copied();
            if self.consumers_lag.load(Ordering::Relaxed) {
                return Some(next.unwrap_or_default());
            }
            next.map(|next| next - 1)
        }
    }

    struct Fixture {
        shop: Shop<MemoryLog>,
        store: Arc<Store>,
        _dir: TempDir,
    }

    impl Fixture {
        async fn new() -> Self {
            let (store, dir) = Store::temporary(4 << 20);
            store
                .check_layout(&TopicLayout::uniform("", PARTITIONS))
                .await
                .unwrap();
            let store = Arc::new(store);
            let log = MemoryLog {
                store: Arc::clone(&store),
                next: StdMutex::default(),
                records: StdMutex::default(),
                broker_away: AtomicBool::new(false),
                consumers_lag: AtomicBool::new(false),
            };
            Fixture {
                shop: Shop::new(Arc::clone(&store), log),
                store,
                _dir: dir,
            }
        }

        fn log(&self) -> &MemoryLog {
            &self.shop.producer
        }

        fn written(&self) -> usize {
            self.log().records.lock().unwrap().len()
        }

        fn status(&self, order_id: &str) -> Option<OrderStatus> {
            let id = order_id.to_string();
            self.store
                .query_blocking(move |v| v.order(&id))
                .unwrap()
                .and_then(|o| o.status)
        }

        async fn place(&self, email: &str) -> String {
            let written = self
                .shop
                .place_order(details(email), WriteOptions::default())
                .await
                .unwrap();
            assert_eq!(written.position.topic, TopicRole::Orders);
            assert!(!written.replayed);
            written.field("order_id").unwrap()
        }

        async fn pay(&self, order_id: &str) -> Result<Written, ShopError> {
            self.shop
                .pay(
                    order_id,
                    PaymentRequest {
                        order_id: None,
                        method: "PayPal".into(),
                        amount: None,
                    },
                    WriteOptions::default(),
                )
                .await
        }
    }

    fn details(email: &str) -> OrderDetails {
        OrderDetails {
            customer_name: "Ann Lee".into(),
            customer_email: email.into(),
            product: "Lamp".into(),
            quantity: 1,
            amount: Money::from_minor(4_990),
            currency: "EUR".into(),
            address: "1 Rue A, Paris".into(),
        }
    }

    #[tokio::test]
    async fn an_order_goes_from_placed_to_delivered_one_event_per_command() {
        let f = Fixture::new().await;
        let order_id = f.place("ann@example.com").await;
        assert_eq!(f.status(&order_id), Some(OrderStatus::Pending));

        let paid = f.pay(&order_id).await.unwrap();
        assert_eq!(paid.field("status").as_deref(), Some("SUCCESS"));
        assert_eq!(f.status(&order_id), Some(OrderStatus::Paid));

        let shipped = f
            .shop
            .ship(
                &order_id,
                DeliveryRequest {
                    order_id: None,
                    carrier: Some("DHL".into()),
                },
                WriteOptions::default(),
            )
            .await
            .unwrap();
        let delivery_id = shipped.field("delivery_id").unwrap();
        assert_eq!(shipped.field("carrier").as_deref(), Some("DHL"));
        for next in [
            DeliveryStatus::InTransit,
            DeliveryStatus::OutForDelivery,
            DeliveryStatus::Delivered,
        ] {
            f.shop
                .advance_delivery(&delivery_id, next, WriteOptions::default())
                .await
                .unwrap();
        }
        assert_eq!(f.status(&order_id), Some(OrderStatus::Delivered));
        assert_eq!(f.written(), 6);
        // Every record carries the headers other consumers rely on.
        for (_, record) in f.log().records.lock().unwrap().iter() {
            assert_eq!(record.key, order_id);
            assert!(record.headers.contains_key(headers::EVENT_TYPE));
            assert_eq!(record.headers[headers::CONTENT_TYPE], b"application/json");
        }
    }

    #[tokio::test]
    async fn a_declined_payment_may_be_retried_and_cancelled_but_never_after_payment() {
        let f = Fixture::new().await;
        let order_id = f.place("bob@decline.test").await;
        let declined = f.pay(&order_id).await.unwrap();
        assert_eq!(declined.field("status").as_deref(), Some("FAILED"));
        assert_eq!(
            declined.field("failure_reason").as_deref(),
            Some("card_declined")
        );
        assert_eq!(f.status(&order_id), Some(OrderStatus::PaymentFailed));
        // A failed payment may be tried again (declined again: same card rules).
        let retried = f.pay(&order_id).await.unwrap();
        assert_eq!(retried.field("status").as_deref(), Some("FAILED"));
        assert_ne!(retried.position, declined.position);
        f.shop
            .cancel(
                &order_id,
                Some("changed my mind".into()),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(f.status(&order_id), Some(OrderStatus::Cancelled));

        // Refused commands write nothing.
        let before = f.written();
        let refused = f.pay(&order_id).await.unwrap_err();
        assert!(matches!(refused, ShopError::Conflict(_)), "{refused:?}");
        let refused = f
            .shop
            .ship(
                &order_id,
                DeliveryRequest {
                    order_id: None,
                    carrier: None,
                },
                WriteOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(refused, ShopError::Conflict(_)), "{refused:?}");
        assert_eq!(f.written(), before);
    }

    #[tokio::test]
    async fn unknown_orders_and_deliveries_are_not_found() {
        let f = Fixture::new().await;
        assert!(matches!(
            f.pay("no-such-order").await.unwrap_err(),
            ShopError::NotFound(_)
        ));
        assert!(matches!(
            f.shop
                .advance_delivery(
                    "no-such-delivery",
                    DeliveryStatus::Delivered,
                    WriteOptions::default()
                )
                .await
                .unwrap_err(),
            ShopError::NotFound(_)
        ));
        assert_eq!(f.written(), 0);
    }

    #[tokio::test]
    async fn an_idempotency_key_gives_the_same_answer_once_and_refuses_another_request() {
        let f = Fixture::new().await;
        let key = |fingerprint: &str| WriteOptions {
            idempotency: Some(Idempotency {
                key: "checkout-42".into(),
                fingerprint: fingerprint.into(),
            }),
            ..WriteOptions::default()
        };
        let first = f
            .shop
            .place_order(details("ann@example.com"), key("f-1"))
            .await
            .unwrap();
        let again = f
            .shop
            .place_order(details("ann@example.com"), key("f-1"))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.position, first.position);
        assert_eq!(again.data.get(), first.data.get());
        assert_eq!(f.written(), 1);

        let other = f
            .shop
            .place_order(details("eve@example.com"), key("f-2"))
            .await
            .unwrap_err();
        assert!(matches!(other, ShopError::IdempotencyMismatch), "{other:?}");
        assert_eq!(f.written(), 1);
    }

    #[tokio::test]
    async fn a_new_order_does_not_wait_for_the_consumers_unless_a_key_may_name_an_earlier_try() {
        let f = Fixture::new().await;
        let order_id = f.place("ann@example.com").await;
        f.log().consumers_lag.store(true, Ordering::Relaxed);
        // An order id drawn at random: nothing to read, so no wait for the lagging consumers.
        f.place("eve@example.com").await;
        assert_eq!(f.written(), 2);

        // Commands on an existing order, and a new order under an Idempotency-Key (its id
        // comes from the key: an earlier try may be among the unapplied writes), wait for
        // the consumers, and refuse once the wait is over.
        tokio::time::pause();
        let paid = f.pay(&order_id).await.unwrap_err();
        assert!(matches!(paid, ShopError::CatchingUp), "{paid:?}");
        let keyed = WriteOptions {
            idempotency: Some(Idempotency {
                key: "checkout-7".into(),
                fingerprint: "f-7".into(),
            }),
            ..WriteOptions::default()
        };
        let placed = f
            .shop
            .place_order(details("bob@example.com"), keyed)
            .await
            .unwrap_err();
        assert!(matches!(placed, ShopError::CatchingUp), "{placed:?}");
        assert_eq!(f.written(), 2);
    }

    #[tokio::test]
    async fn a_write_the_broker_refuses_is_an_error_and_leaves_nothing_behind() {
        let f = Fixture::new().await;
        f.log().broker_away.store(true, Ordering::Relaxed);
        let error = f
            .shop
            .place_order(details("ann@example.com"), WriteOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(error, ShopError::Kafka(_)), "{error:?}");
        assert_eq!(f.written(), 0);
        let counters = f.store.query_blocking(|v| v.counters()).unwrap();
        assert_eq!(counters.orders, 0);
    }
}
