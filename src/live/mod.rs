//! The live stream: every consumed event goes to every open dashboard.
//!
//! The fan-out itself is the store's broadcast ring ([`crate::model::store::Store::subscribe`]):
//! each committed event's frame ([`crate::messages::LiveFrame`]) is serialised once and shared.
//!
//! - [`cursor`]: where a client is in the log, and the plan of what its session replays.
//! - [`session`]: a WebSocket session: a first frame with the cursor, a replay of what a
//!   reconnecting client missed (read from Kafka itself), then live frames. The HTTP edge does
//!   the upgrade ([`crate::http::upgrade`]) and hands the socket over with a narrow context.
//! - [`replay`]: the replay itself, against the Kafka access layer's `PartitionLog` and a sink of
//!   frames, so that it is unit-tested with a log in memory.

pub mod cursor;
pub mod replay;
pub mod session;
