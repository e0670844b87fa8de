//! The aggregator: ingest, the embedded store, site KPIs, the query API, and the dashboard's
//! view of the data. The `kilowatch` binary (src/main.rs) wires these together.

pub mod alerting;
pub mod api;
pub mod auth;
pub mod config;
pub mod counter;
pub mod demo;
pub mod kpi;
pub mod server;
pub mod sink;
pub mod store;
pub mod view;
