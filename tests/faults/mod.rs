//! The fault campaign's harness (issue 14): a cluster of three brokers of its own, Toxiproxy
//! between shopstream and the brokers, two shopstream instances as child processes, clients
//! that retry with `Idempotency-Key`, randomized fault cycles, and a checker that reads the
//! log with a plain Kafka consumer. `tests/fault_campaign.rs` runs it; the README's "Fault
//! campaign" says how and what the report means.

pub mod campaign;
pub mod checker;
pub mod clients;
pub mod cluster;
pub mod instances;
pub mod proxy;
