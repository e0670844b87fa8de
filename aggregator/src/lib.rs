//! The aggregator: ingest, the embedded store, site KPIs, the query API, and the dashboard's
//! view of the data. The `kilowatch` binary (src/main.rs) wires these together.

pub mod acct_api;
pub mod adapters;
pub mod admin;
pub mod alerting;
pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod conn;
pub mod demo;
pub mod events;
pub mod filing_api;
pub mod fleet;
pub mod forecast_api;
pub mod guard;
pub mod http;
pub mod influx_v1;
pub mod ledger_api;
pub mod metrics;
pub mod report;
pub mod restore;
pub mod server;
pub mod sink;
pub mod slurm;
pub mod tenant;
pub mod tls;
pub mod tokens_api;
pub mod view;
