//! Event time, bounded by the Kafka record's own timestamp.
//!
//! An event says when it happened (`timestamp`), and the read model orders an order's events by
//! it, so that the three topics may be read in any interleaving. A producer controls that
//! field, so it is bounded, by the one other time every record carries: its Kafka timestamp.
//! Never by the wall clock: every instance and every replay must decide alike.
//!
//! - An event dated more than [`SKEW`] after its record's timestamp (a clock far ahead, a
//!   naive local time taken as UTC) is placed, listed and counted at its record's timestamp,
//!   so it can neither push itself to the top of the lists nor move the per-minute statistics
//!   into the future, where their window would drop the real minutes.
//! - One dated more than [`ABSURD_BEFORE`] before its record's timestamp is treated alike. A
//!   record dated a few years back is a backfill, and is taken as dated.
//! - An event dated before another event of its order although its record was written more
//!   than [`SKEW`] after that one's (a cancel back-dated to before a payment already in the
//!   log) is placed after it: it cannot rewrite what the log said before it existed. Events
//!   written together (a backfill, three producers at once) keep their event-time order.
//!
//! Each such event stays in the timeline with the reason as its anomaly. The rules read only
//! the two times of the events themselves, so the outcome does not depend on the order in
//! which the topics were read.

use chrono::{DateTime, TimeDelta, Utc};

use super::TimelineEntry;
use crate::domain::event::{EventType, format_time};

/// How far an event may be dated after its record's timestamp, and how much later than another
/// event's record a record must be written for its event not to precede that one.
pub const SKEW: TimeDelta = TimeDelta::minutes(5);
/// How far before its record's timestamp an event may be dated (ten years).
pub const ABSURD_BEFORE: TimeDelta = TimeDelta::days(3650);

/// The time an event counts at (lists, statistics, its place in the timeline), and why it is
/// not its own time when it is not.
pub fn bounded(
    event_time: DateTime<Utc>,
    record_time: DateTime<Utc>,
) -> (DateTime<Utc>, Option<String>) {
    // Checked: a record's timestamp may sit at the very end of the range of dates.
    if record_time
        .checked_add_signed(SKEW)
        .is_some_and(|latest| event_time > latest)
    {
        return (
            record_time,
            Some(format!(
                "dated {}, {} after its Kafka record's timestamp {} (more than {} min): \
                 counted at the record's timestamp",
                format_time(event_time),
                duration(event_time - record_time),
                format_time(record_time),
                SKEW.num_minutes()
            )),
        );
    }
    if record_time
        .checked_sub_signed(ABSURD_BEFORE)
        .is_some_and(|earliest| event_time < earliest)
    {
        return (
            record_time,
            Some(format!(
                "dated {}, more than {} days before its Kafka record's timestamp {}: counted \
                 at the record's timestamp",
                format_time(event_time),
                ABSURD_BEFORE.num_days(),
                format_time(record_time)
            )),
        );
    }
    (event_time, None)
}

/// Sorts an order's timeline by the rules of this module and returns, for each entry in its
/// new place, why its time was not taken as written (if it was not).
pub fn arrange(timeline: &mut Vec<TimelineEntry>) -> Vec<Option<String>> {
    struct Placed {
        entry: TimelineEntry,
        at: DateTime<Utc>,
        /// Placed after an event written well before it, instead of at its own time.
        after: bool,
        why: Option<String>,
    }
    let mut placed: Vec<Placed> = timeline
        .drain(..)
        .map(|entry| {
            let (at, why) = match entry.record_time {
                Some(rt) => bounded(entry.time, rt),
                None => (entry.time, None),
            };
            Placed {
                entry,
                at,
                after: false,
                why,
            }
        })
        .collect();
    // In the order the records were written; each entry may not be placed before any entry
    // whose record was written more than SKEW before its own.
    let mut by_written: Vec<usize> = (0..placed.len())
        .filter(|&i| placed[i].entry.record_time.is_some())
        .collect();
    by_written.sort_by_key(|&i| (placed[i].entry.record_time, placed[i].entry.position));
    let mut floor: Option<(DateTime<Utc>, String)> = None;
    let mut earlier = 0;
    for k in 0..by_written.len() {
        let i = by_written[k];
        let written = placed[i].entry.record_time.expect("filtered");
        while earlier < k {
            let j = by_written[earlier];
            let before = placed[j].entry.record_time.expect("filtered");
            if before.checked_add_signed(SKEW).is_none_or(|t| t >= written) {
                break;
            }
            if floor.as_ref().is_none_or(|(t, _)| placed[j].at > *t) {
                floor = Some((
                    placed[j].at,
                    placed[j].entry.event_type.as_str().to_string(),
                ));
            }
            earlier += 1;
        }
        if let Some((at, what)) = &floor
            && placed[i].at < *at
        {
            let why = format!(
                "dated {}, before a {what} whose record was written more than {} min before its \
                 own: placed after it",
                format_time(placed[i].entry.time),
                SKEW.num_minutes()
            );
            placed[i].at = *at;
            placed[i].after = true;
            placed[i].why = Some(match placed[i].why.take() {
                Some(first) => format!("{first}; {why}"),
                None => why,
            });
        }
    }
    placed.sort_by_key(|p| {
        let tiebreak = if p.after {
            // After every entry at that time placed by its own time, in the order written.
            (1, p.entry.record_time.map_or(0, |t| t.timestamp_micros()))
        } else {
            (0, rank(p.entry.event_type))
        };
        (p.at, tiebreak, p.entry.position)
    });
    let mut reasons = Vec::with_capacity(placed.len());
    for p in placed {
        reasons.push(p.why);
        timeline.push(p.entry);
    }
    reasons
}

/// An order is created before it is paid, paid before it ships: the order of events dated
/// alike.
fn rank(event_type: EventType) -> i64 {
    match event_type {
        EventType::OrderCreated => 0,
        EventType::PaymentProcessed => 1,
        EventType::OrderCancelled => 2,
        EventType::DeliveryCreated => 3,
        EventType::DeliveryUpdated => 4,
    }
}

/// "2 h 3 min", "45 s", "3 days".
fn duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds >= 2 * 86_400 {
        format!("{} days", seconds / 86_400)
    } else if seconds >= 3600 {
        format!("{} h {} min", seconds / 3600, seconds % 3600 / 60)
    } else if seconds >= 60 {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}
