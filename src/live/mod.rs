//! The live stream: every consumed event goes to every open dashboard.
//!
//! - [`hub`]: the fan-out. One bounded broadcast ring; each frame is serialised once and shared.
//! - [`ws`]: the WebSocket sessions (`GET /ws`): a first frame with the cursor, a replay of
//!   what a reconnecting client missed (read from Kafka itself), then live frames.

pub mod hub;
pub mod ws;
