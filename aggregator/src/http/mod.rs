//! HTTP route families in their own modules.

pub mod prometheus;
