//! HTTP route families in their own modules (the rest are still beside `api.rs`).

pub mod prometheus;
pub mod remote_write;
pub mod sources;
