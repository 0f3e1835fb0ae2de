//! The store's binary encoding of the records it writes most: orders with their timelines,
//! payments, deliveries and the answers kept for idempotency keys. An order is rewritten at
//! every event it receives, and every written byte is written again by the compactions that
//! carry it down the tree: in JSON an order took about 1 KB per write (field names, RFC 3339
//! times, ids as 36 characters); here it takes about a quarter. Integers are LEB128 varints
//! (signed ones zigzagged first), strings are their length then their bytes, ids in the
//! canonical UUID form are their 16 bytes.
//!
//! The layout is fixed by the store's format version: a change here bumps it, and a store of
//! another version is rebuilt from the log. Decoding never panics: bytes that do not read back
//! are [`StoreError::Corrupt`].

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::{
    DeliveryRecord, IdempotentWrite, OrderRecord, PaymentRecord, StoreError, TimelineEntry,
};
use crate::domain::event::{
    DeliveryStatus, EventType, OrderDetails, PaymentStatus, Position, TopicRole,
};
use crate::domain::lifecycle::{OrderStatus, Step};
use crate::domain::money::Money;

/// Bytes being written.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn with_capacity(bytes: usize) -> Self {
        Self(Vec::with_capacity(bytes))
    }

    pub fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    pub fn unsigned(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    pub fn signed(&mut self, n: i64) {
        self.unsigned(((n << 1) ^ (n >> 63)) as u64);
    }

    pub fn str(&mut self, s: &str) {
        self.unsigned(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    /// An id: 0 then its 16 bytes when it is a UUID written the canonical way (lower-case,
    /// hyphenated), else its length plus one, then its bytes. Any other spelling is kept as
    /// it came, so that it reads back the same.
    pub fn id(&mut self, id: &str) {
        if let Some(uuid) = canonical_uuid(id) {
            self.0.push(0);
            self.0.extend_from_slice(uuid.as_bytes());
        } else {
            self.unsigned(id.len() as u64 + 1);
            self.0.extend_from_slice(id.as_bytes());
        }
    }

    /// A time to the nanosecond: 0 then the microseconds when that is exact (nearly always),
    /// else 1 then the seconds and the nanoseconds (a leap second's nanoseconds pass 10^9,
    /// which microseconds since the epoch cannot tell).
    pub fn time(&mut self, t: DateTime<Utc>) {
        let nanos = t.timestamp_subsec_nanos();
        if nanos < 1_000_000_000 && nanos.is_multiple_of(1_000) {
            self.byte(0);
            self.signed(t.timestamp_micros());
        } else {
            self.byte(1);
            self.signed(t.timestamp());
            self.unsigned(u64::from(nanos));
        }
    }

    pub fn option<T>(&mut self, value: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match value {
            None => self.byte(0),
            Some(v) => {
                self.byte(1);
                put(self, v);
            }
        }
    }

    pub fn ids(&mut self, ids: &[String]) {
        self.unsigned(ids.len() as u64);
        for id in ids {
            self.id(id);
        }
    }
}

/// The UUID `id` spells, when it spells it the canonical way (lower-case, hyphenated).
pub(super) fn canonical_uuid(id: &str) -> Option<uuid::Uuid> {
    // 36 bytes parse only in the hyphenated form: lower case is all that is left to check.
    if id.len() != 36 || id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    uuid::Uuid::try_parse(id).ok()
}

/// Bytes being read back; `what` names the record in errors.
pub struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self { bytes, what }
    }

    pub fn corrupt(&self, why: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: {why}", self.what))
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), StoreError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("bytes left after the record"))
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < n {
            return Err(self.corrupt("value too short"));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    pub fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    pub fn unsigned(&mut self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(self.corrupt("number too large"));
            }
            n |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.corrupt("number too long"))
    }

    pub fn signed(&mut self) -> Result<i64, StoreError> {
        let n = self.unsigned()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    /// A length, checked against the bytes left so that a corrupt one allocates nothing.
    fn len(&mut self) -> Result<usize, StoreError> {
        let n = self.unsigned()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.bytes.len())
            .ok_or_else(|| self.corrupt("length past the end"))
    }

    fn utf8(&self, bytes: &[u8]) -> Result<String, StoreError> {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| self.corrupt("text is not UTF-8"))
    }

    pub fn str(&mut self) -> Result<String, StoreError> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        self.utf8(bytes)
    }

    pub fn id(&mut self) -> Result<String, StoreError> {
        match self.unsigned()? {
            0 => {
                let bytes: [u8; 16] = self.take(16)?.try_into().expect("16 bytes");
                Ok(uuid::Uuid::from_bytes(bytes).hyphenated().to_string())
            }
            n => {
                let n = usize::try_from(n - 1)
                    .ok()
                    .filter(|n| *n <= self.bytes.len())
                    .ok_or_else(|| self.corrupt("length past the end"))?;
                let bytes = self.take(n)?;
                self.utf8(bytes)
            }
        }
    }

    pub fn time(&mut self) -> Result<DateTime<Utc>, StoreError> {
        let t = match self.byte()? {
            0 => DateTime::from_timestamp_micros(self.signed()?),
            1 => {
                let secs = self.signed()?;
                let nanos = u32::try_from(self.unsigned()?).ok();
                nanos.and_then(|n| DateTime::from_timestamp(secs, n))
            }
            _ => return Err(self.corrupt("unknown time form")),
        };
        t.ok_or_else(|| self.corrupt("time out of range"))
    }

    pub fn option<T>(
        &mut self,
        take: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self.byte()? {
            0 => Ok(None),
            1 => take(self).map(Some),
            _ => Err(self.corrupt("unknown option tag")),
        }
    }

    pub fn ids(&mut self) -> Result<Vec<String>, StoreError> {
        // Every id takes at least one byte: a count past the bytes left is corrupt.
        let n = self.len()?;
        (0..n).map(|_| self.id()).collect()
    }

    /// A code written by [`code_of`]: the position in `all`.
    fn code<T: Copy>(&mut self, all: &[T]) -> Result<T, StoreError> {
        let code = self.byte()?;
        all.get(usize::from(code))
            .copied()
            .ok_or_else(|| self.corrupt("unknown code"))
    }
}

/// The position of `value` in `all` (every enum below lists all its values there).
fn code_of<T: PartialEq>(all: &[T], value: &T) -> u8 {
    all.iter().position(|v| v == value).unwrap_or(0) as u8
}

/// Something the store keeps in this encoding.
pub trait Stored: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError>;
}

/// A record's bytes.
pub fn encode<T: Stored>(value: &T) -> Vec<u8> {
    let mut w = Writer::with_capacity(256);
    value.write(&mut w);
    w.0
}

/// A record from all of `bytes`.
pub fn decode<T: Stored>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    let mut r = Reader::new(what, bytes);
    let value = T::read(&mut r)?;
    r.finish()?;
    Ok(value)
}

impl Stored for Position {
    fn write(&self, w: &mut Writer) {
        w.byte(code_of(&TopicRole::ALL, &self.topic));
        w.signed(i64::from(self.partition));
        w.signed(self.offset);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        let topic = r.code(&TopicRole::ALL)?;
        let partition = i32::try_from(r.signed()?).map_err(|_| r.corrupt("partition"))?;
        Ok(Self {
            topic,
            partition,
            offset: r.signed()?,
        })
    }
}

impl Stored for Money {
    fn write(&self, w: &mut Writer) {
        w.signed(self.minor());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        Ok(Money::from_minor(r.signed()?))
    }
}

impl Stored for OrderDetails {
    fn write(&self, w: &mut Writer) {
        w.str(&self.customer_name);
        w.str(&self.customer_email);
        w.str(&self.product);
        w.unsigned(u64::from(self.quantity));
        self.amount.write(w);
        w.str(&self.currency);
        w.str(&self.address);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            customer_name: r.str()?,
            customer_email: r.str()?,
            product: r.str()?,
            quantity: u32::try_from(r.unsigned()?).map_err(|_| r.corrupt("quantity"))?,
            amount: Money::read(r)?,
            currency: r.str()?,
            address: r.str()?,
        })
    }
}

impl Stored for OrderRecord {
    fn write(&self, w: &mut Writer) {
        w.id(&self.order_id);
        w.option(self.details.as_ref(), |w, d| d.write(w));
        w.option(self.created_at, Writer::time);
        w.option(self.status, |w, s| w.byte(code_of(&OrderStatus::ALL, &s)));
        w.time(self.updated_at);
        w.unsigned(self.anomalies as u64);
        w.ids(&self.payment_ids);
        w.ids(&self.delivery_ids);
        w.unsigned(self.seq);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            order_id: r.id()?,
            details: r.option(OrderDetails::read)?,
            created_at: r.option(Reader::time)?,
            status: r.option(|r| r.code(&OrderStatus::ALL))?,
            updated_at: r.time()?,
            anomalies: usize::try_from(r.unsigned()?).map_err(|_| r.corrupt("anomalies"))?,
            payment_ids: r.ids()?,
            delivery_ids: r.ids()?,
            seq: r.unsigned()?,
        })
    }
}

/// A lifecycle step as one byte: create, cancel, then the payment and delivery outcomes.
fn step_code(step: Step) -> u8 {
    match step {
        Step::Create => 0,
        Step::Cancel => 1,
        Step::Pay(s) => 2 + code_of(&PaymentStatus::ALL, &s),
        Step::Deliver(s) => 2 + PaymentStatus::ALL.len() as u8 + code_of(&DeliveryStatus::ALL, &s),
    }
}

fn step_of(code: u8) -> Option<Step> {
    let pay = PaymentStatus::ALL.len() as u8;
    match code {
        0 => Some(Step::Create),
        1 => Some(Step::Cancel),
        c if c < 2 + pay => Some(Step::Pay(PaymentStatus::ALL[usize::from(c - 2)])),
        c => DeliveryStatus::ALL
            .get(usize::from(c - 2 - pay))
            .map(|s| Step::Deliver(*s)),
    }
}

impl Stored for TimelineEntry {
    fn write(&self, w: &mut Writer) {
        w.id(&self.event_id);
        w.byte(code_of(&EventType::ALL, &self.event_type));
        self.position.write(w);
        w.time(self.time);
        w.option(self.anomaly.as_deref(), Writer::str);
        w.byte(step_code(self.step));
        w.unsigned(self.data_key);
        w.option(self.status_after, |w, s| {
            w.byte(code_of(&OrderStatus::ALL, &s))
        });
        w.option(self.record_time, Writer::time);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            event_id: r.id()?,
            event_type: r.code(&EventType::ALL)?,
            position: Position::read(r)?,
            time: r.time()?,
            anomaly: r.option(Reader::str)?,
            step: {
                let code = r.byte()?;
                step_of(code).ok_or_else(|| r.corrupt("unknown step"))?
            },
            data_key: r.unsigned()?,
            status_after: r.option(|r| r.code(&OrderStatus::ALL))?,
            record_time: r.option(Reader::time)?,
        })
    }
}

impl Stored for Vec<TimelineEntry> {
    fn write(&self, w: &mut Writer) {
        w.unsigned(self.len() as u64);
        for entry in self {
            entry.write(w);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        // An entry takes well over one byte: a count past the bytes left is corrupt.
        let n = r.len()?;
        (0..n).map(|_| TimelineEntry::read(r)).collect()
    }
}

impl Stored for PaymentRecord {
    fn write(&self, w: &mut Writer) {
        w.id(&self.payment_id);
        w.id(&self.order_id);
        self.amount.write(w);
        w.str(&self.currency);
        w.str(&self.method);
        w.byte(code_of(&PaymentStatus::ALL, &self.status));
        w.option(self.failure_reason.as_deref(), Writer::str);
        w.time(self.time);
        self.position.write(w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            payment_id: r.id()?,
            order_id: r.id()?,
            amount: Money::read(r)?,
            currency: r.str()?,
            method: r.str()?,
            status: r.code(&PaymentStatus::ALL)?,
            failure_reason: r.option(Reader::str)?,
            time: r.time()?,
            position: Position::read(r)?,
        })
    }
}

impl Stored for DeliveryRecord {
    fn write(&self, w: &mut Writer) {
        w.id(&self.delivery_id);
        w.id(&self.order_id);
        w.str(&self.address);
        w.byte(code_of(&DeliveryStatus::ALL, &self.status));
        w.option(self.carrier.as_deref(), Writer::str);
        w.option(self.estimated_date, |w, d| {
            w.signed(i64::from(d.num_days_from_ce()))
        });
        w.time(self.created_at);
        w.time(self.updated_at);
        self.position.write(w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            delivery_id: r.id()?,
            order_id: r.id()?,
            address: r.str()?,
            status: r.code(&DeliveryStatus::ALL)?,
            carrier: r.option(Reader::str)?,
            estimated_date: r.option(|r| {
                let days = i32::try_from(r.signed()?).ok();
                days.and_then(NaiveDate::from_num_days_from_ce_opt)
                    .ok_or_else(|| r.corrupt("date out of range"))
            })?,
            created_at: r.time()?,
            updated_at: r.time()?,
            position: Position::read(r)?,
        })
    }
}

impl Stored for IdempotentWrite {
    fn write(&self, w: &mut Writer) {
        w.str(&self.fingerprint);
        w.id(&self.event_id);
        self.position.write(w);
        w.str(&self.data);
        w.time(self.record_time);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            fingerprint: r.str()?,
            event_id: r.id()?,
            position: Position::read(r)?,
            data: r.str()?,
            record_time: r.time()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn position(offset: i64) -> Position {
        Position {
            topic: TopicRole::Deliveries,
            partition: 7,
            offset,
        }
    }

    fn order() -> OrderRecord {
        OrderRecord {
            order_id: "6f1c2a4e-8b0d-4c3e-9a57-2d1e0f9b8c7a".into(),
            details: Some(OrderDetails {
                customer_name: "Zoé Dupont".into(),
                customer_email: "zoe@example.com".into(),
                product: "Lampe ✨".into(),
                quantity: 3,
                amount: Money::from_minor(-1_999),
                currency: "EUR".into(),
                address: "1 rue de la Paix".into(),
            }),
            created_at: Some(at("2026-12-07T10:00:00.123456Z")),
            status: Some(OrderStatus::OutForDelivery),
            // Nanoseconds that microseconds cannot hold.
            updated_at: at("2026-12-07T10:00:01.123456789Z"),
            anomalies: 2,
            // A UUID in upper case and an id of another shape keep their spelling.
            payment_ids: vec!["6F1C2A4E-8B0D-4C3E-9A57-2D1E0F9B8C7A".into(), "p-1".into()],
            delivery_ids: vec![String::new()],
            seq: u64::MAX,
        }
    }

    fn entries() -> Vec<TimelineEntry> {
        let steps = [
            Step::Create,
            Step::Cancel,
            Step::Pay(PaymentStatus::Success),
            Step::Pay(PaymentStatus::Failed),
            Step::Deliver(DeliveryStatus::Shipped),
            Step::Deliver(DeliveryStatus::Delivered),
        ];
        steps
            .iter()
            .zip(EventType::ALL.iter().cycle())
            .enumerate()
            .map(|(i, (step, event_type))| TimelineEntry {
                event_id: uuid::Uuid::new_v4().to_string(),
                event_type: *event_type,
                position: position(i as i64 * 1_000_000_007),
                time: at("1969-12-31T23:59:59.999999Z"),
                anomaly: (i % 2 == 0).then(|| format!("anomaly {i}")),
                step: *step,
                data_key: i as u64,
                status_after: OrderStatus::ALL.get(i).copied(),
                record_time: (i % 3 != 0).then(|| at("2262-04-11T23:47:16.854775807Z")),
            })
            .collect()
    }

    fn payment() -> PaymentRecord {
        PaymentRecord {
            payment_id: "pay 1".into(),
            order_id: uuid::Uuid::new_v4().to_string(),
            amount: Money::from_minor(i64::MIN),
            currency: "JPY".into(),
            method: "card".into(),
            status: PaymentStatus::Failed,
            failure_reason: Some("declined".into()),
            time: at("2026-12-07T10:00:00Z"),
            position: position(i64::MAX),
        }
    }

    fn delivery() -> DeliveryRecord {
        DeliveryRecord {
            delivery_id: uuid::Uuid::new_v4().to_string(),
            order_id: "o".into(),
            address: "2 place du Marché".into(),
            status: DeliveryStatus::InTransit,
            carrier: None,
            estimated_date: NaiveDate::from_ymd_opt(-44, 3, 15),
            created_at: at("2026-12-07T10:00:00Z"),
            updated_at: at("2026-12-08T10:00:00Z"),
            position: position(-1),
        }
    }

    #[test]
    fn every_record_reads_back_as_it_was_written() {
        let order = order();
        assert_eq!(
            decode::<OrderRecord>("order", &encode(&order)).unwrap(),
            order
        );
        let bare = OrderRecord {
            details: None,
            created_at: None,
            status: None,
            payment_ids: Vec::new(),
            delivery_ids: Vec::new(),
            ..order
        };
        assert_eq!(
            decode::<OrderRecord>("order", &encode(&bare)).unwrap(),
            bare
        );
        let timeline = entries();
        assert_eq!(
            decode::<Vec<TimelineEntry>>("t", &encode(&timeline)).unwrap(),
            timeline
        );
        let payment = payment();
        assert_eq!(
            decode::<PaymentRecord>("p", &encode(&payment)).unwrap(),
            payment
        );
        let delivery = delivery();
        assert_eq!(
            decode::<DeliveryRecord>("d", &encode(&delivery)).unwrap(),
            delivery
        );
        // A leap second (accepted in events' times) keeps its :60.
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 1_500_000)
            .unwrap()
            .and_utc();
        let mut w = Writer::default();
        w.time(leap);
        assert_eq!(Reader::new("t", &w.0).time().unwrap(), leap);
        let write = IdempotentWrite {
            fingerprint: "f".repeat(64),
            event_id: uuid::Uuid::new_v4().to_string(),
            position: position(12),
            data: r#"{"order_id":"o","note":"\"quoted\" ✨"}"#.into(),
            record_time: at("2026-12-07T10:00:00.5Z"),
        };
        assert_eq!(
            decode::<IdempotentWrite>("i", &encode(&write)).unwrap(),
            write
        );
        let with_carrier = DeliveryRecord {
            carrier: Some("La Poste".into()),
            estimated_date: None,
            ..delivery
        };
        assert_eq!(
            decode::<DeliveryRecord>("d", &encode(&with_carrier)).unwrap(),
            with_carrier
        );
    }

    #[test]
    fn every_step_has_its_own_code() {
        let mut steps = vec![Step::Create, Step::Cancel];
        steps.extend(PaymentStatus::ALL.map(Step::Pay));
        steps.extend(DeliveryStatus::ALL.map(Step::Deliver));
        let codes: std::collections::BTreeSet<u8> = steps.iter().map(|s| step_code(*s)).collect();
        assert_eq!(codes.len(), steps.len());
        for step in steps {
            assert_eq!(step_of(step_code(step)), Some(step));
        }
        assert_eq!(step_of(u8::MAX), None);
    }

    #[test]
    fn canonical_uuids_take_sixteen_bytes_and_numbers_few() {
        let mut w = Writer::default();
        w.id("6f1c2a4e-8b0d-4c3e-9a57-2d1e0f9b8c7a");
        assert_eq!(w.0.len(), 17);
        for (n, bytes) in [
            (0, 1),
            (-1, 1),
            (63, 1),
            (64, 2),
            (i64::MAX, 10),
            (i64::MIN, 10),
        ] {
            let mut w = Writer::default();
            w.signed(n);
            assert_eq!(w.0.len(), bytes, "{n}");
            assert_eq!(Reader::new("n", &w.0).signed().unwrap(), n);
        }
    }

    #[test]
    fn bytes_that_do_not_read_back_are_corrupt_never_a_panic() {
        let order = encode(&order());
        let timeline = encode(&entries());
        // Every cut of a whole value, and one byte too many.
        for cut in 0..order.len() {
            assert!(matches!(
                decode::<OrderRecord>("order", &order[..cut]),
                Err(StoreError::Corrupt(_))
            ));
        }
        for cut in 0..timeline.len() {
            assert!(decode::<Vec<TimelineEntry>>("t", &timeline[..cut]).is_err());
        }
        let mut longer = order.clone();
        longer.push(0);
        assert!(decode::<OrderRecord>("order", &longer).is_err());
        // A varint that never ends, one past 64 bits, huge lengths and counts.
        assert!(Reader::new("n", &[0xff; 11]).unsigned().is_err());
        assert!(
            Reader::new(
                "n",
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]
            )
            .unsigned()
            .is_err()
        );
        assert!(
            Reader::new("s", &[0xff, 0xff, 0xff, 0xff, 0x0f])
                .str()
                .is_err()
        );
        assert!(
            Reader::new("ids", &[0xff, 0xff, 0xff, 0xff, 0x0f])
                .ids()
                .is_err()
        );
        assert!(decode::<Vec<TimelineEntry>>("t", &[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        // Bytes flipped at random read back as something or as an error, never a panic.
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for _ in 0..20_000 {
            let mut bytes = if rng.random_bool(0.5) {
                order.clone()
            } else {
                timeline.clone()
            };
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            let _ = decode::<OrderRecord>("order", &bytes);
            let _ = decode::<Vec<TimelineEntry>>("t", &bytes);
            let _ = decode::<PaymentRecord>("p", &bytes);
            let _ = decode::<DeliveryRecord>("d", &bytes);
            let _ = decode::<IdempotentWrite>("i", &bytes);
        }
    }
}
