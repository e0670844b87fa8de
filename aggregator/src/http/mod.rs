//! HTTP route families that live in their own modules (the rest are still beside `api.rs`).

pub mod remote_write;
pub mod sources;
