//! The collector: sources of samples, the loop that samples them every interval, and the
//! shipper that sends line protocol to the aggregator.

pub mod agent;
pub mod clock;
pub mod config;
pub mod endpoint;
pub mod facility;
pub mod inference;
pub mod metrics_server;
pub mod nvml;
pub mod sanitize;
pub mod ship;
pub mod source;
pub mod spool;
