//! How the store lays records out in fjall: every key opened by the byte of its table, in two
//! keyspaces written by one atomic batch per group commit. `shop` holds the records and their
//! indexes, which change; `events` holds the record values, written once under keys that only
//! grow, so that compactions move its tables without rewriting them.
//!
//! Keys sort as the lists are shown: times are big-endian with the sign bit flipped, strings
//! inside a key end with a 0 byte (words never hold one) or come last, and every list is a
//! range walked backwards (newest first). Times in keys are microseconds since the epoch.
//! Ids of orders, payments and deliveries end their keys in a compact form ([`Key::id`]).
//! Orders, payments, deliveries and idempotency answers, written most, are in the store's
//! binary encoding ([`codec`]); an event's record value is stored once as the bytes that were
//! read; the rest (counters, progress, minutes, meta) is JSON.
//!
//! | table | key | value |
//! |---|---|---|
//! | `Meta` | name | format version, topic layout, counters |
//! | `Progress` | topic, partition | [`PartitionProgress`] |
//! | `Orders` | order id | [`OrderRecord`] and its timeline (without record values): [`encode_order`] |
//! | `Events` (keyspace `events`) | [`TimelineEntry::data_key`] | the record value |
//! | `Payments`, `Deliveries` | id | the record ([`codec`]) |
//! | `*ByTime` | time, id | empty |
//! | `*ByStatus` | status, time, id | empty |
//! | `Search` | kind, word 0, time, id | empty: a word's entry on its own |
//! | `SearchBlocks` | kind, word 0, newest time, oldest time, commit, chunk | the entries of one word that one commit added ([`encode_block`]) |
//! | `Idempotency` | key | [`IdempotentWrite`] ([`codec`]) |
//! | `IdempotencyByTime` | record time, key | empty, for pruning |
//! | `Minutes` | unix minute | [`MinuteStats`] |

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use chrono::{DateTime, TimeDelta, Utc};
use fjall::Readable;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{self, Reader, Stored, Writer};
use super::{
    Changes, Counters, DeliveryRecord, Lookup, MINUTES_KEPT, MinuteStats, OrderRecord,
    PartitionProgress, PaymentRecord, StoreError, StoredOrder,
};
use crate::domain::event::{DeliveryStatus, PaymentStatus, TopicRole};
use crate::domain::lifecycle::OrderStatus;

/// The first byte of every key: which table it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Table {
    Meta = 1,
    Progress,
    Orders,
    Events,
    Payments,
    Deliveries,
    OrdersByTime,
    OrdersByStatus,
    PaymentsByTime,
    PaymentsByStatus,
    DeliveriesByTime,
    DeliveriesByStatus,
    Search,
    Idempotency,
    IdempotencyByTime,
    Minutes,
    SearchBlocks,
}

pub const META_FORMAT: &str = "format";
pub const META_TOPICS: &str = "topics";
/// The name of the store's event numbering (`Store::numbering`).
pub const META_NUMBERING: &str = "numbering";
pub const META_COUNTERS: &str = "counters";
/// The widest time span (microseconds) of any `SearchBlocks` entry, per [`Kind`]: how far
/// above a cursor a block that still holds entries below it can start.
pub const META_SEARCH_SPAN: &str = "search_span";

/// Which list a `Search` entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Orders = 0,
    Payments = 1,
    Deliveries = 2,
}

impl Kind {
    pub fn tables(self) -> (Table, Table) {
        match self {
            Kind::Orders => (Table::OrdersByTime, Table::OrdersByStatus),
            Kind::Payments => (Table::PaymentsByTime, Table::PaymentsByStatus),
            Kind::Deliveries => (Table::DeliveriesByTime, Table::DeliveriesByStatus),
        }
    }
}

/// Most pruned entries per commit, so that pruning never makes one commit long.
pub(super) const PRUNE_PER_COMMIT: usize = 2_000;

/// Most index entries counted to tell how common a search word is ([`ReadView::word_entries`]):
/// past this a word is as common as any other for choosing the walk.
pub const WORD_COUNT_CAP: usize = 2_048;

/// A commit that adds at least this many entries of one word writes them as one block
/// (`SearchBlocks`) instead of a key each: during a replay a group of 2,048 records holds
/// hundreds of entries of a common word (a city, a carrier, a payment method), and one key
/// in place of hundreds is most of what a replay's search index costs the store.
pub const BLOCK_MIN_ENTRIES: usize = 4;
/// Most entries in one block, so that a read decodes little it does not need.
pub const BLOCK_MAX_ENTRIES: usize = 1_024;

/// A key under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(pub Vec<u8>);

impl Key {
    pub fn new(table: Table) -> Self {
        Self::with_capacity(table, 48)
    }

    /// A key of about `bytes` bytes, allocated once.
    pub fn with_capacity(table: Table, bytes: usize) -> Self {
        let mut key = Vec::with_capacity(bytes);
        key.push(table as u8);
        Self(key)
    }

    pub fn byte(mut self, b: u8) -> Self {
        self.0.push(b);
        self
    }

    /// A signed number that sorts as numbers do.
    pub fn int(mut self, n: i64) -> Self {
        self.0
            .extend_from_slice(&((n as u64) ^ (1 << 63)).to_be_bytes());
        self
    }

    /// A string in the middle of a key (a search word: never holds a 0 byte).
    pub fn word(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }

    /// A string that ends the key.
    pub fn last(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// An order's, payment's or delivery's id that ends the key: 0 then the 16 bytes of a
    /// UUID spelled the canonical way (less than half its text), or 1 then any other id as it is
    /// spelled. Canonical UUIDs sort among themselves as their text does. [`key_id`] reads it
    /// back.
    pub fn id(mut self, id: &str) -> Self {
        push_id(&mut self.0, id);
        self
    }

    /// An id already in the form [`Key::id`] gives it ([`id_order`]): a record's index keys
    /// all end with the same one, worked out once.
    pub fn encoded_id(mut self, id: &[u8]) -> Self {
        self.0.extend_from_slice(id);
        self
    }
}

fn push_id(bytes: &mut Vec<u8>, id: &str) {
    match codec::canonical_uuid(id) {
        Some(uuid) => {
            bytes.push(0);
            bytes.extend_from_slice(uuid.as_bytes());
        }
        None => {
            bytes.push(1);
            bytes.extend_from_slice(id.as_bytes());
        }
    }
}

/// An id as the indexes order it ([`Key::id`]), for orderings that must agree with theirs.
pub fn id_order(id: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + id.len());
    push_id(&mut bytes, id);
    bytes
}

/// The id that ends a key ([`Key::id`]).
pub(super) fn key_id(tail: &[u8]) -> Result<String, StoreError> {
    match tail.split_first() {
        Some((0, uuid)) => {
            let bytes: [u8; 16] = uuid
                .try_into()
                .map_err(|_| StoreError::Corrupt("index key: a UUID of another length".into()))?;
            Ok(uuid::Uuid::from_bytes(bytes).hyphenated().to_string())
        }
        Some((1, text)) => std::str::from_utf8(text)
            .map(str::to_string)
            .map_err(|_| StoreError::Corrupt("index key is not UTF-8".into())),
        _ => Err(StoreError::Corrupt("index key: unknown id form".into())),
    }
}

/// The key of a record value in the `events` keyspace.
pub fn event_key(data_key: u64) -> Key {
    Key::new(Table::Events).int(data_key as i64)
}

/// Splits the time (8 bytes) that follows `prefix` bytes of a key from what comes after it.
fn split_time(key: &[u8], prefix: usize) -> Result<(i64, &[u8]), StoreError> {
    let rest = key
        .get(prefix..)
        .filter(|r| r.len() >= 8)
        .ok_or_else(|| StoreError::Corrupt("index key too short".into()))?;
    let (time, tail) = rest.split_at(8);
    let time = (u64::from_be_bytes(time.try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
    Ok((time, tail))
}

/// Reads the (time, id) that end an index key after `prefix` bytes ([`Key::id`]).
pub fn time_and_id(key: &[u8], prefix: usize) -> Result<(i64, String), StoreError> {
    let (time, tail) = split_time(key, prefix)?;
    Ok((time, key_id(tail)?))
}

/// Reads the (time, text) that end a key after `prefix` bytes ([`Key::last`]).
fn time_and_text(key: &[u8], prefix: usize) -> Result<(i64, String), StoreError> {
    let (time, tail) = split_time(key, prefix)?;
    let text = std::str::from_utf8(tail)
        .map_err(|_| StoreError::Corrupt("index key is not UTF-8".into()))?;
    Ok((time, text.to_string()))
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("stored records always serialise")
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// An order's value ([`codec`]): the length of its record, its record, then its timeline. One
/// key per order, and list rows still decode the record alone.
pub fn encode_order(order: &StoredOrder) -> Vec<u8> {
    let mut record = Writer::with_capacity(256);
    order.record.write(&mut record);
    // About what a timeline entry takes, so that the buffer seldom grows.
    let mut value = Writer::with_capacity(record.0.len() + 8 + 64 * order.timeline.len());
    value.unsigned(record.0.len() as u64);
    value.0.extend_from_slice(&record.0);
    order.timeline.write(&mut value);
    value.0
}

/// The record's and the timeline's bytes of an order's value ([`encode_order`]).
fn split_order(bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let mut r = Reader::new("order", bytes);
    let len = usize::try_from(r.unsigned()?).map_err(|_| r.corrupt("value too short"))?;
    let record = r.take(len)?;
    Ok((record, r.rest()))
}

/// A search entry: the time its record is listed at and the record's id as keys end with it
/// ([`Key::id`]). Entries sort as their keys would.
pub type SearchEntry = (i64, Vec<u8>);

/// A block's value: how many entries, then each entry newest first (as the index is
/// walked): how far its time lies below `newest` (a varint), then its id's length and bytes.
/// `entries` are sorted newest first and `newest` is the first one's time.
pub fn encode_block(newest: i64, entries: &[SearchEntry]) -> Vec<u8> {
    let mut w = Writer::with_capacity(2 + entries.len() * 21);
    w.unsigned(entries.len() as u64);
    for (t, id) in entries {
        w.unsigned(newest.abs_diff(*t));
        w.unsigned(id.len() as u64);
        w.0.extend_from_slice(id);
    }
    w.0
}

/// The entries of a block whose newest time is `newest` ([`encode_block`]).
pub fn decode_block(newest: i64, bytes: &[u8]) -> Result<Vec<SearchEntry>, StoreError> {
    let mut r = Reader::new("search block", bytes);
    let count = r.unsigned()?;
    // Every entry takes at least two bytes: a count past that is not a block.
    let count = usize::try_from(count)
        .ok()
        .filter(|n| n.saturating_mul(2) <= bytes.len())
        .ok_or_else(|| r.corrupt("more entries than bytes"))?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let below = r.unsigned()?;
        let t = i64::try_from(i128::from(newest) - i128::from(below))
            .map_err(|_| r.corrupt("time out of range"))?;
        let len = usize::try_from(r.unsigned()?).map_err(|_| r.corrupt("id too long"))?;
        entries.push((t, r.take(len)?.to_vec()));
    }
    r.finish()?;
    Ok(entries)
}

/// How many entries a block holds, without decoding them.
fn block_count(bytes: &[u8]) -> Result<u64, StoreError> {
    Reader::new("search block", bytes).unsigned()
}

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn topic_code(topic: TopicRole) -> u8 {
    match topic {
        TopicRole::Orders => 0,
        TopicRole::Payments => 1,
        TopicRole::Deliveries => 2,
    }
}

pub fn order_status_code(s: OrderStatus) -> u8 {
    OrderStatus::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8
}

pub fn payment_status_code(s: PaymentStatus) -> u8 {
    match s {
        PaymentStatus::Success => 0,
        PaymentStatus::Failed => 1,
    }
}

pub fn delivery_status_code(s: DeliveryStatus) -> u8 {
    DeliveryStatus::ALL
        .iter()
        .position(|x| *x == s)
        .unwrap_or(0) as u8
}

/// A record as its lists show it.
trait Listed {
    /// The time (microseconds) and status code it is listed under; `None`: not listed.
    fn listing(&self) -> Option<(i64, Option<u8>)>;
    /// The text fields its words come from.
    fn word_fields(&self) -> Vec<&str>;
    /// The words `q` finds it by.
    fn words(&self) -> BTreeSet<String> {
        super::search_words(self.word_fields())
    }
}

impl Listed for OrderRecord {
    fn listing(&self) -> Option<(i64, Option<u8>)> {
        self.created_at
            .map(|t| (micros(t), self.status.map(order_status_code)))
    }

    fn word_fields(&self) -> Vec<&str> {
        OrderRecord::word_fields(self)
    }
}

impl Listed for PaymentRecord {
    fn listing(&self) -> Option<(i64, Option<u8>)> {
        Some((micros(self.time), Some(payment_status_code(self.status))))
    }

    fn word_fields(&self) -> Vec<&str> {
        PaymentRecord::word_fields(self)
    }
}

impl Listed for DeliveryRecord {
    fn listing(&self) -> Option<(i64, Option<u8>)> {
        Some((
            micros(self.created_at),
            Some(delivery_status_code(self.status)),
        ))
    }

    fn word_fields(&self) -> Vec<&str> {
        DeliveryRecord::word_fields(self)
    }
}

/// The records a commit changed: id, saved version (or what the indexes need of it), new
/// version.
fn changed<T, B>(
    touched: &HashMap<String, super::Touched<T, B>>,
) -> impl Iterator<Item = (&str, Option<&B>, &T)> {
    touched
        .iter()
        .filter_map(|(id, t)| match (&t.after, t.changed) {
            (Some(after), true) => Some((id.as_str(), t.before.as_ref(), after)),
            _ => None,
        })
}

/// A consistent view of the last commit: reads never block the applier, and the applier
/// reads its saved state through one too.
pub struct ReadView {
    pub(super) snapshot: fjall::Snapshot,
    pub(super) shop: fjall::Keyspace,
    pub(super) events: fjall::Keyspace,
}

impl ReadView {
    pub(super) fn get(&self, key: &Key) -> Result<Option<fjall::Slice>, StoreError> {
        Ok(self.snapshot.get(&self.shop, &key.0)?)
    }

    pub(super) fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        key: &Key,
    ) -> Result<Option<T>, StoreError> {
        match self.get(key)? {
            Some(v) => Ok(Some(decode(what, &v)?)),
            None => Ok(None),
        }
    }

    pub(super) fn binary<T: Stored>(
        &self,
        what: &'static str,
        key: &Key,
    ) -> Result<Option<T>, StoreError> {
        match self.get(key)? {
            Some(v) => Ok(Some(codec::decode(what, &v)?)),
            None => Ok(None),
        }
    }

    /// The keys in `[lower, upper)`, first to last (`.rev()`: last first).
    pub(super) fn keys(
        &self,
        lower: Key,
        upper: Key,
    ) -> impl DoubleEndedIterator<Item = Result<fjall::Slice, StoreError>> + '_ {
        self.snapshot
            .range(
                &self.shop,
                (Bound::Included(lower.0), Bound::Excluded(upper.0)),
            )
            .map(|guard| guard.into_inner().map(|(k, _)| k).map_err(StoreError::from))
    }

    /// The keys from `lower` (included) to `upper` (excluded), last first.
    pub(super) fn keys_back(
        &self,
        lower: Key,
        upper: Key,
    ) -> impl Iterator<Item = Result<fjall::Slice, StoreError>> + '_ {
        self.keys(lower, upper).rev()
    }

    /// An order's value ([`encode_order`]) handed to `read` as its record's and its timeline's
    /// bytes.
    fn with_order<T>(
        &self,
        order_id: &str,
        read: impl FnOnce(&[u8], &[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self.get(&Key::new(Table::Orders).id(order_id))? {
            Some(value) => {
                let (record, timeline) = split_order(&value)?;
                read(record, timeline).map(Some)
            }
            None => Ok(None),
        }
    }

    pub(super) fn read_order(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        self.with_order(order_id, |record, timeline| {
            Ok(StoredOrder {
                record: codec::decode("order", record)?,
                timeline: codec::decode("timeline", timeline)?,
            })
        })
    }

    /// An order's record without its timeline (its bytes are not even read).
    pub(super) fn read_order_record(
        &self,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        self.with_order(order_id, |record, _| codec::decode("order", record))
    }

    /// The record value of a timeline entry.
    pub(super) fn event_data(&self, data_key: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .snapshot
            .get(&self.events, event_key(data_key).0)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// How many entries of `kind` hold `word`, counted up to `cap`. Counting on a search
    /// instead of keeping a count per word saves every write a read and a write per word.
    pub(super) fn word_entries(
        &self,
        kind: Kind,
        word: &str,
        cap: usize,
    ) -> Result<usize, StoreError> {
        let prefix = Key::new(Table::Search).byte(kind as u8).word(word);
        let upper = prefix.clone().byte(0xff);
        let mut n = 0;
        for key in self.snapshot.range(&self.shop, prefix.0..upper.0).take(cap) {
            key.key()?;
            n += 1;
        }
        let prefix = Key::new(Table::SearchBlocks).byte(kind as u8).word(word);
        let upper = prefix.clone().byte(0xff);
        for block in self.snapshot.range(&self.shop, prefix.0..upper.0) {
            if n >= cap {
                break;
            }
            let (_, value) = block.into_inner()?;
            n = n.saturating_add(usize::try_from(block_count(&value)?).unwrap_or(usize::MAX));
        }
        Ok(n.min(cap))
    }

    /// The widest span of a search block, per [`Kind`] ([`META_SEARCH_SPAN`]).
    pub(super) fn search_spans(&self) -> Result<[i64; 3], StoreError> {
        Ok(self
            .json("search span", &Key::new(Table::Meta).last(META_SEARCH_SPAN))?
            .unwrap_or_default())
    }

    /// The entries of `word` in `kind`'s search index, newest first, strictly below `below`:
    /// the keys of their own and the blocks' entries merged, each entry once. Blocks may
    /// overlap in time, so an entry is handed out only once every block that could hold a
    /// newer one has been read; at most `cap` entries are kept waiting, so a caller must take
    /// no more than `cap` (the older ones waiting are let go first, and are never needed
    /// before `cap` have been taken).
    pub(super) fn search_entries(
        &self,
        kind: Kind,
        word: &str,
        below: Option<SearchEntry>,
        cap: usize,
    ) -> Result<impl Iterator<Item = Result<SearchEntry, StoreError>> + '_, StoreError> {
        let prefix = Key::new(Table::Search).byte(kind as u8).word(word);
        let skip = prefix.0.len();
        let upper = match &below {
            Some((t, id)) => prefix.clone().int(*t).encoded_id(id),
            None => prefix.clone().byte(0xff),
        };
        let singles = self.keys_back(prefix, upper).map(move |key| {
            let key = key?;
            let (t, id) = split_time(&key, skip)?;
            Ok((t, id.to_vec()))
        });

        let prefix = Key::new(Table::SearchBlocks).byte(kind as u8).word(word);
        let skip = prefix.0.len();
        let upper = match &below {
            // A block whose newest entry lies further above the cursor than the widest block
            // spans holds nothing below it.
            Some((t, _)) => {
                let span = self.search_spans()?[kind as usize];
                prefix.clone().int(t.saturating_add(span).saturating_add(1))
            }
            None => prefix.clone().byte(0xff),
        };
        let blocks = self
            .snapshot
            .range(
                &self.shop,
                (Bound::Included(prefix.0), Bound::Excluded(upper.0)),
            )
            .rev()
            .map(move |block| {
                let (key, value) = block.into_inner()?;
                let (newest, rest) = split_time(&key, skip)?;
                let (oldest, _) = split_time(rest, 0)?;
                Ok(Block {
                    newest,
                    oldest,
                    value,
                })
            });
        let blocks = BlockEntries {
            blocks: (Box::new(blocks) as Blocks<'_>).peekable(),
            waiting: BTreeSet::new(),
            below: below.clone(),
            cap: cap.max(1),
        };
        Ok(NewestFirst {
            a: singles.peekable(),
            b: blocks.peekable(),
            last: None,
        })
    }

    /// Every partition's saved progress.
    pub(super) fn read_progress(&self) -> Result<Vec<PartitionProgress>, StoreError> {
        let lower = Key::new(Table::Progress);
        let upper = Key(vec![Table::Progress as u8 + 1]);
        let mut all = Vec::new();
        for row in self.snapshot.range(&self.shop, lower.0..upper.0) {
            let (_, value) = row.into_inner()?;
            all.push(decode("progress", &value)?);
        }
        Ok(all)
    }

    pub(super) fn read_counters(&self) -> Result<Counters, StoreError> {
        Ok(self
            .json("counters", &Key::new(Table::Meta).last(META_COUNTERS))?
            .unwrap_or_default())
    }
}

impl Lookup for ReadView {
    fn order(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        self.read_order(order_id)
    }

    fn payment(&self, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError> {
        self.binary("payment", &Key::new(Table::Payments).id(payment_id))
    }

    fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        self.binary("delivery", &Key::new(Table::Deliveries).id(delivery_id))
    }

    fn idempotency_known(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .snapshot
            .contains_key(&self.shop, Key::new(Table::Idempotency).last(key).0)?)
    }

    fn minute(&self, minute: i64) -> Result<Option<MinuteStats>, StoreError> {
        self.json("minute", &Key::new(Table::Minutes).int(minute))
    }
}

/// A search block as its key and value give it.
struct Block {
    newest: i64,
    oldest: i64,
    value: fjall::Slice,
}

type Blocks<'a> = Box<dyn Iterator<Item = Result<Block, StoreError>> + 'a>;

/// The entries of blocks walked from the newest ([`ReadView::search_entries`]).
struct BlockEntries<'a> {
    blocks: std::iter::Peekable<Blocks<'a>>,
    /// Entries read and not handed out yet.
    waiting: BTreeSet<SearchEntry>,
    below: Option<SearchEntry>,
    cap: usize,
}

impl Iterator for BlockEntries<'_> {
    type Item = Result<SearchEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let newest_waiting = self.waiting.last().map(|(t, _)| *t);
            let read_next = match self.blocks.peek() {
                None => false,
                Some(Err(_)) => true,
                // A block whose newest entry is as new as the newest waiting one may hold a
                // newer entry (same time, greater id): read it first.
                Some(Ok(block)) => newest_waiting.is_none_or(|t| block.newest >= t),
            };
            if !read_next {
                return self.waiting.pop_last().map(Ok);
            }
            let block = match self.blocks.next()? {
                Ok(block) => block,
                Err(e) => return Some(Err(e)),
            };
            if self.below.as_ref().is_some_and(|(t, _)| block.oldest > *t) {
                // Every entry is above the cursor.
                continue;
            }
            let entries = match decode_block(block.newest, &block.value) {
                Ok(entries) => entries,
                Err(e) => return Some(Err(e)),
            };
            for entry in entries {
                if self.below.as_ref().is_none_or(|below| entry < *below) {
                    self.waiting.insert(entry);
                }
            }
            while self.waiting.len() > self.cap {
                self.waiting.pop_first();
            }
        }
    }
}

/// Two streams of entries, each newest first, merged newest first; an entry both hold is
/// handed out once.
struct NewestFirst<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
    last: Option<SearchEntry>,
}

impl<A, B> Iterator for NewestFirst<A, B>
where
    A: Iterator<Item = Result<SearchEntry, StoreError>>,
    B: Iterator<Item = Result<SearchEntry, StoreError>>,
{
    type Item = Result<SearchEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_a = match (self.a.peek(), self.b.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(Ok(_)), None) => true,
                (None, Some(_)) | (_, Some(Err(_))) => false,
                (Some(Ok(a)), Some(Ok(b))) => a >= b,
            };
            let next = if take_a { self.a.next() } else { self.b.next() };
            match next? {
                Ok(entry) if self.last.as_ref() == Some(&entry) => continue,
                Ok(entry) => {
                    self.last = Some(entry.clone());
                    return Some(Ok(entry));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// How far the pruning of aged entries has gone: everything below these bounds is deleted.
/// A commit's pruning then walks only what aged out since the last one: a deleted key stays in
/// the tree as a tombstone until compactions drop it, and a walk from the start of the table
/// at every commit would step over all of them again. Kept by the applier, forgotten on a
/// restart or reopen (the first walk after it starts at the table's start).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Idempotency records of a time (microseconds) below this are gone.
    pub idempotency_below: Option<i64>,
    /// Minute statistics below this unix minute are gone.
    pub minutes_below: Option<i64>,
}

/// The key of a word's entry on its own: table, kind, word and its 0, time, id.
fn single_entry(kind: Kind, word: &str, t: i64, id: &[u8]) -> Key {
    Key::with_capacity(Table::Search, 11 + word.len() + id.len())
        .byte(kind as u8)
        .word(word)
        .int(t)
        .encoded_id(id)
}

/// One group commit's writes, read against the view of the commit before it.
pub struct WriteTables<'a> {
    saved: &'a ReadView,
    batch: fjall::OwnedWriteBatch,
    /// The search entries this commit adds, per word: written at the end of [`Self::write`],
    /// as a block where a word has many.
    added_words: std::collections::BTreeMap<(Kind, String), Vec<SearchEntry>>,
}

impl<'a> WriteTables<'a> {
    pub fn new(db: &fjall::Database, saved: &'a ReadView) -> Self {
        Self {
            saved,
            batch: db.batch(),
            added_words: std::collections::BTreeMap::new(),
        }
    }

    fn put(&mut self, key: Key, value: impl Into<fjall::Slice>) {
        self.batch.insert(&self.saved.shop, key.0, value.into());
    }

    fn delete(&mut self, key: Key) {
        self.batch.remove(&self.saved.shop, key.0);
    }

    pub fn put_meta(&mut self, name: &str, value: Vec<u8>) {
        self.put(Key::new(Table::Meta).last(name), value);
    }

    /// Commits the batch (written to the journal, not synced).
    pub fn commit(self) -> Result<(), StoreError> {
        Ok(self.batch.commit()?)
    }

    /// Adds one group's changes, its counters and its offsets, and prunes what fell out of
    /// retention; returns how far pruning has gone once this batch is committed.
    pub fn write(
        &mut self,
        changes: &Changes,
        retention: TimeDelta,
        pruned: Pruned,
    ) -> Result<Pruned, StoreError> {
        let mut now_pruned = pruned;
        for (id, before, after) in changed(&changes.orders) {
            self.reindex(Kind::Orders, id, before, &after.record);
            self.put(Key::new(Table::Orders).id(id), encode_order(after));
        }
        for (data_key, data) in &changes.event_data {
            self.batch
                .insert(&self.saved.events, event_key(*data_key).0, data.as_bytes());
        }
        for (id, before, after) in changed(&changes.payments) {
            self.reindex(Kind::Payments, id, before, after);
            self.put(Key::new(Table::Payments).id(id), codec::encode(after));
        }
        for (id, before, after) in changed(&changes.deliveries) {
            self.reindex(Kind::Deliveries, id, before, after);
            self.put(Key::new(Table::Deliveries).id(id), codec::encode(after));
        }
        let cutoff = changes
            .counters
            .newest_record_time
            .and_then(|newest| newest.checked_sub_signed(retention))
            .map(micros);
        for (key, write) in &changes.idempotency {
            let t = micros(write.record_time);
            if cutoff.is_some_and(|cutoff| t < cutoff) {
                // Already out of retention.
                continue;
            }
            self.put(Key::new(Table::Idempotency).last(key), codec::encode(write));
            self.put(
                Key::new(Table::IdempotencyByTime).int(t).last(key),
                fjall::Slice::empty(),
            );
        }
        // The series keeps the minutes up to a day before the newest: a minute below that, or
        // below where pruning already went, is out of it and not written.
        let minutes_floor = changes
            .minutes
            .keys()
            .next_back()
            .map(|newest| newest - MINUTES_KEPT);
        let kept_from = minutes_floor.max(pruned.minutes_below);
        for (minute, stats) in &changes.minutes {
            if kept_from.is_none_or(|from| *minute >= from) {
                self.put(Key::new(Table::Minutes).int(*minute), encode(stats));
            }
        }
        if let Some(floor) = minutes_floor {
            now_pruned.minutes_below = self.prune_minutes(floor, pruned.minutes_below)?;
        }
        self.put_meta(META_COUNTERS, encode(&changes.counters));
        for key in &changes.changed_progress {
            if let Some(p) = changes.progress.get(key) {
                let k = Key::new(Table::Progress)
                    .byte(topic_code(key.0))
                    .int(i64::from(key.1));
                self.put(k, encode(p));
            }
        }
        if let Some(cutoff) = cutoff {
            now_pruned.idempotency_below = self.prune(cutoff, pruned.idempotency_below)?;
        }
        self.write_words(changes.counters.events)?;
        Ok(now_pruned)
    }

    /// Moves a record's index entries (time, status, words) from where its saved version
    /// put them to where its new one does.
    fn reindex<T: Listed>(&mut self, kind: Kind, id: &str, before: Option<&T>, after: &T) {
        let listed_before = before.and_then(Listed::listing);
        let listed_after = after.listing();
        let id = id_order(id);
        self.move_listing(kind, &id, listed_before, listed_after);
        // Most changes move a status: the words, and the time they are filed under, stay.
        let time = |listed: Option<(i64, Option<u8>)>| listed.map(|(t, _)| t);
        if let Some(before) = before
            && time(listed_before) == time(listed_after)
            && before.word_fields() == after.word_fields()
        {
            return;
        }
        let words = |r: &T| r.listing().map(|(t, _)| (t, r.words()));
        self.reindex_words(kind, &id, before.and_then(words), words(after));
    }

    /// Moves a record's entries in its time and status indexes from where its old (time,
    /// status) put them to where its new one does; `None`: not listed.
    fn move_listing(
        &mut self,
        kind: Kind,
        id: &[u8],
        old: Option<(i64, Option<u8>)>,
        new: Option<(i64, Option<u8>)>,
    ) {
        if old == new {
            return;
        }
        let (by_time, by_status) = kind.tables();
        if let Some((t, status)) = old {
            if new.is_none_or(|(nt, _)| nt != t) {
                self.delete(Key::new(by_time).int(t).encoded_id(id));
            }
            if let Some(s) = status {
                self.delete(Key::new(by_status).byte(s).int(t).encoded_id(id));
            }
        }
        if let Some((t, status)) = new {
            if old.is_none_or(|(ot, _)| ot != t) {
                self.put(
                    Key::new(by_time).int(t).encoded_id(id),
                    fjall::Slice::empty(),
                );
            }
            if let Some(s) = status {
                self.put(
                    Key::new(by_status).byte(s).int(t).encoded_id(id),
                    fjall::Slice::empty(),
                );
            }
        }
    }

    /// Moves a record's search entries from its old words (and time) to its new ones. An
    /// entry that a block holds cannot be taken out of it: it stays, and reads skip it, as
    /// they check every candidate's words and time against the record itself.
    fn reindex_words(
        &mut self,
        kind: Kind,
        id: &[u8],
        before: Option<(i64, BTreeSet<String>)>,
        after: Option<(i64, BTreeSet<String>)>,
    ) {
        if before == after {
            return;
        }
        let same_time = matches!((&before, &after), (Some((a, _)), Some((b, _))) if a == b);
        let kept = |word: &String, other: &Option<(i64, BTreeSet<String>)>| {
            same_time
                && other
                    .as_ref()
                    .is_some_and(|(_, words)| words.contains(word))
        };
        if let Some((t, words)) = &before {
            for word in words.iter().filter(|w| !kept(w, &after)) {
                self.delete(single_entry(kind, word, *t, id));
            }
        }
        if let Some((t, words)) = &after {
            for word in words.iter().filter(|w| !kept(w, &before)) {
                self.added_words
                    .entry((kind, word.clone()))
                    .or_default()
                    .push((*t, id.to_vec()));
            }
        }
    }

    /// Writes the search entries this commit added: a key each for a word with few, blocks
    /// of at most [`BLOCK_MAX_ENTRIES`] for a word with [`BLOCK_MIN_ENTRIES`] or more.
    /// `commit` (the events applied so far) tells this commit's blocks from earlier ones'.
    fn write_words(&mut self, commit: u64) -> Result<(), StoreError> {
        let added = std::mem::take(&mut self.added_words);
        let mut spans: Option<[i64; 3]> = None;
        let mut widened = false;
        for ((kind, word), mut entries) in added {
            if entries.len() < BLOCK_MIN_ENTRIES {
                for (t, id) in &entries {
                    self.put(single_entry(kind, &word, *t, id), fjall::Slice::empty());
                }
                continue;
            }
            entries.sort_unstable_by(|a, b| b.cmp(a));
            entries.dedup();
            let spans = match &mut spans {
                Some(spans) => spans,
                None => spans.insert(self.saved.search_spans()?),
            };
            for (chunk, entries) in entries.chunks(BLOCK_MAX_ENTRIES).enumerate() {
                let newest = entries[0].0;
                let oldest = entries[entries.len() - 1].0;
                let key = Key::with_capacity(Table::SearchBlocks, 30 + word.len())
                    .byte(kind as u8)
                    .word(&word)
                    .int(newest)
                    .int(oldest)
                    .int(commit as i64)
                    .int(chunk as i64);
                self.put(key, encode_block(newest, entries));
                let span = newest.saturating_sub(oldest);
                if span > spans[kind as usize] {
                    spans[kind as usize] = span;
                    widened = true;
                }
            }
        }
        if let (Some(spans), true) = (spans, widened) {
            self.put_meta(META_SEARCH_SPAN, encode(&spans));
        }
        Ok(())
    }

    /// Forgets idempotency keys whose record is older than `cutoff` (microseconds); see
    /// [`Self::prune_table`].
    fn prune(&mut self, cutoff: i64, below: Option<i64>) -> Result<Option<i64>, StoreError> {
        self.prune_table(Table::IdempotencyByTime, cutoff, below, |tables, key| {
            let (_, idempotency_key) = time_and_text(key, 1)?;
            tables.delete(Key::new(Table::Idempotency).last(&idempotency_key));
            Ok(())
        })
    }

    /// Forgets the statistics of minutes before `bound`; see [`Self::prune_table`].
    fn prune_minutes(&mut self, bound: i64, below: Option<i64>) -> Result<Option<i64>, StoreError> {
        self.prune_table(Table::Minutes, bound, below, |_, _| Ok(()))
    }

    /// Deletes the keys of `table` (opened by a time or a minute) below `bound`, the oldest
    /// first and at most [`PRUNE_PER_COMMIT`], walking from `below` (everything under it is
    /// gone already); `also` deletes what each key stands for elsewhere. Returns the new
    /// bound: `bound` when the walk got there, else the last time it reached (keys of that
    /// same time may remain, so the next walk starts at it, not after it).
    fn prune_table(
        &mut self,
        table: Table,
        bound: i64,
        below: Option<i64>,
        mut also: impl FnMut(&mut Self, &fjall::Slice) -> Result<(), StoreError>,
    ) -> Result<Option<i64>, StoreError> {
        if below.is_some_and(|below| below >= bound) {
            return Ok(below);
        }
        let lower = match below {
            Some(below) => Key::new(table).int(below),
            None => Key::new(table),
        };
        let old: Vec<fjall::Slice> = self
            .saved
            .keys(lower, Key::new(table).int(bound))
            .take(PRUNE_PER_COMMIT)
            .collect::<Result<_, _>>()?;
        let complete = old.len() < PRUNE_PER_COMMIT;
        let mut reached = below;
        for key in &old {
            reached = Some(split_time(key, 1)?.0);
            also(self, key)?;
            self.delete(Key(key.to_vec()));
        }
        Ok(if complete { Some(bound) } else { reached })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TimelineEntry;

    #[test]
    fn an_order_value_holds_its_record_then_its_timeline() {
        let record = OrderRecord {
            order_id: "o1".into(),
            details: None,
            created_at: None,
            status: None,
            updated_at: Utc::now(),
            anomalies: 0,
            payment_ids: vec!["p1".into()],
            delivery_ids: Vec::new(),
            seq: 7,
        };
        let order = StoredOrder {
            record: record.clone(),
            timeline: Vec::new(),
        };
        let value = encode_order(&order);
        let (r, t) = split_order(&value).unwrap();
        assert_eq!(codec::decode::<OrderRecord>("order", r).unwrap(), record);
        assert!(
            codec::decode::<Vec<TimelineEntry>>("timeline", t)
                .unwrap()
                .is_empty()
        );
        // A value cut short is a clear corruption, not a panic.
        for cut in [0, 3, 4, value.len() - t.len() - 1] {
            assert!(matches!(
                split_order(&value[..cut]),
                Err(StoreError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn an_id_ends_a_key_in_its_compact_form_and_reads_back() {
        let prefix = Key::new(Table::OrdersByTime).int(-5);
        let uuid = "0f1c2a4e-8b0d-4c3e-9a57-2d1e0f9b8c7a";
        for id in [
            uuid,
            "6F1C2A4E-8B0D-4C3E-9A57-2D1E0F9B8C7A",
            "order-1",
            "",
            "é",
        ] {
            let key = prefix.clone().id(id);
            assert_eq!(time_and_id(&key.0, 1).unwrap(), (-5, id.to_string()));
        }
        assert_eq!(prefix.clone().id(uuid).0.len(), 1 + 8 + 17);
        // Canonical UUIDs sort as their text does, so lists keep their order among equal times.
        let mut ids: Vec<String> = (0..64).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let mut keys: Vec<Vec<u8>> = ids.iter().map(|id| prefix.clone().id(id).0).collect();
        ids.sort();
        keys.sort();
        let read: Vec<String> = keys.iter().map(|k| time_and_id(k, 1).unwrap().1).collect();
        assert_eq!(read, ids);
        // Tails that are not an id are a clear corruption.
        for tail in [&[][..], &[0, 1, 2][..], &[1, 0xff][..], &[7, b'a'][..]] {
            let mut key = prefix.0.clone();
            key.extend_from_slice(tail);
            assert!(matches!(time_and_id(&key, 1), Err(StoreError::Corrupt(_))));
        }
    }

    fn entry(t: i64, id: &str) -> SearchEntry {
        (t, id_order(id))
    }

    #[test]
    fn a_block_reads_back_its_entries_and_refuses_what_is_not_one() {
        let entries = vec![
            entry(i64::MAX / 2, "o-9"),
            entry(50, "0f1c2a4e-8b0d-4c3e-9a57-2d1e0f9b8c7a"),
            entry(50, "a"),
            entry(i64::MIN / 2, "o-1"),
        ];
        let value = encode_block(entries[0].0, &entries);
        assert_eq!(decode_block(entries[0].0, &value).unwrap(), entries);
        assert_eq!(block_count(&value).unwrap(), 4);
        // Cut anywhere, or with bytes after it, or a count past its length: corrupt, no panic.
        for end in 0..value.len() {
            assert!(decode_block(0, &value[..end]).is_err(), "cut at {end}");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert!(decode_block(entries[0].0, &longer).is_err());
        assert!(decode_block(0, &[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        // A time below the range of microseconds is refused, not wrapped.
        let mut far = Writer::default();
        far.unsigned(1);
        far.unsigned(u64::MAX);
        far.unsigned(0);
        assert!(decode_block(i64::MIN, &far.0).is_err());
        // Bytes flipped at random read back as some block or as an error, never a panic.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for _ in 0..20_000 {
            let mut bytes = value.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            let newest = if rng.random_bool(0.1) {
                i64::MIN
            } else {
                entries[0].0
            };
            let _ = decode_block(newest, &bytes);
            let _ = block_count(&bytes);
        }
    }

    /// Blocks as a walk from the newest reads them: by newest entry, newest first.
    fn blocks_of(blocks: &[Vec<SearchEntry>]) -> Blocks<'static> {
        let mut blocks: Vec<Block> = blocks
            .iter()
            .map(|entries| {
                let mut entries = entries.clone();
                entries.sort_by(|a, b| b.cmp(a));
                Block {
                    newest: entries[0].0,
                    oldest: entries[entries.len() - 1].0,
                    value: encode_block(entries[0].0, &entries).into(),
                }
            })
            .collect();
        blocks.sort_by_key(|b| std::cmp::Reverse(b.newest));
        Box::new(blocks.into_iter().map(Ok))
    }

    fn walk(
        blocks: &[Vec<SearchEntry>],
        below: Option<SearchEntry>,
        cap: usize,
    ) -> Vec<SearchEntry> {
        BlockEntries {
            blocks: blocks_of(blocks).peekable(),
            waiting: BTreeSet::new(),
            below,
            cap,
        }
        .map(Result::unwrap)
        .collect()
    }

    #[test]
    fn overlapping_blocks_are_walked_newest_first_each_entry_once() {
        let blocks = vec![
            vec![
                entry(10, "a"),
                entry(20, "b"),
                entry(30, "c"),
                entry(30, "x"),
            ],
            vec![
                entry(15, "d"),
                entry(25, "e"),
                entry(30, "f"),
                entry(40, "g"),
            ],
            vec![entry(30, "c"), entry(5, "h"), entry(35, "i"), entry(1, "j")],
            vec![entry(-3, "k"), entry(2, "l"), entry(3, "m"), entry(4, "n")],
        ];
        let mut all: Vec<SearchEntry> = blocks.iter().flatten().cloned().collect();
        all.sort_by(|a, b| b.cmp(a));
        all.dedup();
        assert_eq!(walk(&blocks, None, 1_000), all);
        // From every cursor: what lies below it, in the same order.
        for (i, cursor) in all.iter().enumerate() {
            assert_eq!(walk(&blocks, Some(cursor.clone()), 1_000), all[i + 1..]);
        }
        // A cap keeps the first `cap` right, whatever it lets go after them.
        for cap in 1..all.len() {
            assert_eq!(walk(&blocks, None, cap)[..cap], all[..cap], "cap {cap}");
        }
    }

    #[test]
    fn singles_and_blocks_merge_newest_first_once_each() {
        let singles = vec![
            entry(40, "g"),
            entry(12, "s"),
            entry(10, "a"),
            entry(0, "z"),
        ];
        let blocks = vec![vec![entry(10, "a"), entry(20, "b"), entry(40, "g")]];
        let merged: Vec<SearchEntry> = NewestFirst {
            a: singles.clone().into_iter().map(Ok).peekable(),
            b: BlockEntries {
                blocks: blocks_of(&blocks).peekable(),
                waiting: BTreeSet::new(),
                below: None,
                cap: 100,
            }
            .peekable(),
            last: None,
        }
        .map(Result::unwrap)
        .collect();
        assert_eq!(
            merged,
            [
                entry(40, "g"),
                entry(20, "b"),
                entry(12, "s"),
                entry(10, "a"),
                entry(0, "z")
            ]
        );
        // An error from either side is handed on, not swallowed.
        let failing = NewestFirst {
            a: vec![Ok(entry(1, "a")), Err(StoreError::Corrupt("bad".into()))]
                .into_iter()
                .peekable(),
            b: std::iter::empty::<Result<SearchEntry, StoreError>>().peekable(),
            last: None,
        };
        assert!(failing.collect::<Result<Vec<_>, _>>().is_err());
    }
}
