//! The collector: sources of samples and the loop that samples them every interval; the
//! batches go out through kilowatch-ship's spool and shipper.

pub mod agent;
pub mod clock;
pub mod config;
pub mod endpoint;
pub mod facility;
pub mod inference;
pub mod metrics_server;
pub mod nvml;
pub mod sanitize;
pub mod source;
