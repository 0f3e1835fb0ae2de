//! Where a live client is in the log, and what its session must replay before going live.
//!
//! A cursor is `topic:partition:next_offset,...` (`orders:0:12,payments:1:7`): per partition,
//! the next offset the client needs (its last offset seen + 1), topics by role name. A client
//! keeps the `start` cursor of the hello frame, moves it to `offset + 1` with every event (and
//! to `earliest` on a reset) and sends it back when it reconnects. A partition absent from a
//! client's cursor starts where the server is (live only). [`plan`] compares it with the
//! server's positions: pure, so that it is tested without a socket or a broker.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::domain::event::TopicRole;

/// Most entries a cursor may name.
const MAX_CURSOR_ENTRIES: usize = 10_000;

/// A topic (by role) and a partition.
pub type PartitionKey = (TopicRole, i32);

/// Per partition, the next offset a client needs. Formats as `orders:0:12,payments:1:7`, in
/// topic then partition order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(BTreeMap<PartitionKey, i64>);

/// Why a cursor is malformed; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CursorError(pub String);

impl Cursor {
    /// The server's consumed positions, as returned by `Store::subscribe`.
    pub fn from_positions(positions: &[(TopicRole, i32, i64)]) -> Self {
        Self(positions.iter().map(|&(t, p, o)| ((t, p), o)).collect())
    }

    /// Parses `topic:partition:next_offset,...`; the empty string is the empty cursor.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        let mut cursor = BTreeMap::new();
        if text.trim().is_empty() {
            return Ok(Self(cursor));
        }
        for entry in text.split(',') {
            if cursor.len() == MAX_CURSOR_ENTRIES {
                return Err(CursorError(format!(
                    "more than {MAX_CURSOR_ENTRIES} entries"
                )));
            }
            let (key, offset) = parse_entry(entry.trim())?;
            if cursor.insert(key, offset).is_some() {
                return Err(CursorError(format!(
                    "`{}` names {}:{} a second time",
                    entry.trim(),
                    key.0,
                    key.1
                )));
            }
        }
        Ok(Self(cursor))
    }

    pub fn get(&self, key: PartitionKey) -> Option<i64> {
        self.0.get(&key).copied()
    }

    pub fn set(&mut self, key: PartitionKey, next_offset: i64) {
        self.0.insert(key, next_offset);
    }

    /// Moves a partition forward to `next_offset`, never back.
    pub fn raise(&mut self, key: PartitionKey, next_offset: i64) {
        let entry = self.0.entry(key).or_insert(next_offset);
        *entry = (*entry).max(next_offset);
    }

    pub fn iter(&self) -> impl Iterator<Item = (PartitionKey, i64)> + '_ {
        self.0.iter().map(|(&k, &o)| (k, o))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_entry(entry: &str) -> Result<(PartitionKey, i64), CursorError> {
    let bad = |why: String| CursorError(format!("`{entry}`: {why}"));
    let parts: Vec<&str> = entry.split(':').collect();
    let [topic, partition, offset] = parts[..] else {
        return Err(bad(
            "expected topic:partition:next_offset, e.g. orders:0:12".into(),
        ));
    };
    let topic = TopicRole::parse(topic).ok_or_else(|| {
        bad(format!(
            "unknown topic `{topic}` (expected orders, payments or deliveries)"
        ))
    })?;
    let partition = partition
        .parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| {
            bad(format!(
                "partition `{partition}` is not a non-negative integer"
            ))
        })?;
    let offset = offset
        .parse::<i64>()
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| bad(format!("offset `{offset}` is not a non-negative integer")))?;
    Ok(((topic, partition), offset))
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ((topic, partition), offset)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{topic}:{partition}:{offset}")?;
        }
        Ok(())
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What a session must do for one partition named in the client's cursor before going live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatchUp {
    /// The client is behind: replay `[client, server)` from Kafka, from the earliest offset
    /// kept if `client` fell out of retention.
    Behind { requested: i64, server: i64 },
    /// The client is ahead (another instance served it, or the topic was recreated): nothing
    /// to replay, unless its offset is past the end of the log (then reset to the earliest
    /// kept and replay up to `server`).
    Ahead { requested: i64, server: i64 },
}

/// Where a session starts and what it replays first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The client's cursor where it sent one, the server's positions elsewhere.
    pub start: Cursor,
    pub catch_up: Vec<(PartitionKey, CatchUp)>,
}

/// Pure: compares the server's positions with the client's cursor. A partition the server has
/// not consumed yet needs no replay: its live frames start at the earliest offset kept.
pub(crate) fn plan(server: &Cursor, client: Option<&Cursor>) -> Plan {
    let mut start = server.clone();
    let mut catch_up = Vec::new();
    for (key, requested) in client.into_iter().flat_map(Cursor::iter) {
        start.set(key, requested);
        match server.get(key) {
            Some(server) if requested < server => {
                catch_up.push((key, CatchUp::Behind { requested, server }))
            }
            Some(server) if requested > server => {
                catch_up.push((key, CatchUp::Ahead { requested, server }))
            }
            _ => {}
        }
    }
    Plan { start, catch_up }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(s: &str) -> Cursor {
        Cursor::parse(s).unwrap()
    }

    #[test]
    fn a_cursor_round_trips_in_topic_then_partition_order() {
        let c = cursor("payments:1:7, orders:1:3,orders:0:12,deliveries:2:0");
        assert_eq!(
            c.to_string(),
            "orders:0:12,orders:1:3,payments:1:7,deliveries:2:0"
        );
        assert_eq!(c.get((TopicRole::Orders, 0)), Some(12));
        assert_eq!(c.get((TopicRole::Payments, 0)), None);
        assert_eq!(c.len(), 4);
        assert_eq!(cursor(&c.to_string()), c);
        assert!(cursor("").is_empty());
        assert_eq!(cursor("").to_string(), "");
    }

    #[test]
    fn a_malformed_cursor_names_the_bad_part() {
        let cases = [
            ("orders:x:1", "`orders:x:1`: partition `x`"),
            ("orders:0:1,orders:-1:1", "`orders:-1:1`: partition `-1`"),
            ("orders:0:y", "`orders:0:y`: offset `y`"),
            ("orders:0:-5", "offset `-5`"),
            ("refunds:0:1", "unknown topic `refunds`"),
            (
                "orders:0",
                "`orders:0`: expected topic:partition:next_offset",
            ),
            ("orders:0:1:2", "expected topic:partition:next_offset"),
            ("orders:0:1,", "``: expected"),
            ("orders:0:1,orders:0:2", "names orders:0 a second time"),
            ("orders.0.1", "expected topic:partition:next_offset"),
        ];
        for (text, needle) in cases {
            let error = Cursor::parse(text).unwrap_err();
            assert!(
                error.0.contains(needle),
                "{text:?}: {error} should contain {needle:?}"
            );
        }
    }

    #[test]
    fn a_cursor_has_a_size_limit() {
        let long: Vec<String> = (0..=MAX_CURSOR_ENTRIES)
            .map(|p| format!("orders:{p}:0"))
            .collect();
        assert!(
            Cursor::parse(&long.join(","))
                .unwrap_err()
                .0
                .contains("more than")
        );
    }

    #[test]
    fn raise_never_moves_back() {
        let mut c = cursor("orders:0:5");
        c.raise((TopicRole::Orders, 0), 3);
        c.raise((TopicRole::Orders, 1), 4);
        assert_eq!(c.to_string(), "orders:0:5,orders:1:4");
        c.raise((TopicRole::Orders, 0), 9);
        assert_eq!(c.get((TopicRole::Orders, 0)), Some(9));
    }

    #[test]
    fn without_a_cursor_a_session_starts_at_the_server_and_replays_nothing() {
        let server = cursor("orders:0:12,orders:1:7");
        let p = plan(&server, None);
        assert_eq!(p.start, server);
        assert!(p.catch_up.is_empty());
    }

    #[test]
    fn a_cursor_behind_replays_ahead_is_checked_absent_starts_live() {
        let server = cursor("orders:0:12,orders:1:7,payments:0:3");
        let client = cursor("orders:0:10,orders:1:9,payments:0:3,deliveries:0:4");
        let p = plan(&server, Some(&client));
        // Client entries win; partitions it did not name start at the server.
        assert_eq!(
            p.start.to_string(),
            "orders:0:10,orders:1:9,payments:0:3,deliveries:0:4"
        );
        assert_eq!(
            p.catch_up,
            vec![
                (
                    (TopicRole::Orders, 0),
                    CatchUp::Behind {
                        requested: 10,
                        server: 12
                    }
                ),
                (
                    (TopicRole::Orders, 1),
                    CatchUp::Ahead {
                        requested: 9,
                        server: 7
                    }
                ),
            ]
        );
        let partial = plan(&server, Some(&cursor("orders:1:2")));
        assert_eq!(
            partial.start.to_string(),
            "orders:0:12,orders:1:2,payments:0:3"
        );
    }
}
