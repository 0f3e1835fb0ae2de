//! The shop's pure logic: money, the partitioner, events and their JSON records, the order
//! lifecycle, validation. No I/O here, so all of it is unit-tested, fuzzed and benched alone.

pub mod demo;
pub mod event;
pub mod gateway;
pub mod json;
pub mod lifecycle;
pub mod money;
pub mod partitioner;
pub mod validation;
