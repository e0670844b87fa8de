//! The store behind the traits other crates own: accounting's reads ([`store_read`]).

pub mod store_read;

pub use store_read::{StoreJobs, StoreRead, allocation, job_error, store_error};
