//! placeholder
pub mod nvml;
