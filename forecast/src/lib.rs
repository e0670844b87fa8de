//! kilowatch-forecast: tomorrow's PUE, WUE and CO2 per IT kWh, and when flexible work should
//! run. A site model learnt from the site's own hourly ledger ([`model`]), weather and grid
//! carbon inputs through provider adapters ([`inputs`]), the 48-hour forecast ([`forecast`]),
//! and advice for a job of N GPUs for H hours ([`advice`]). Pure: no I/O, no clock; the
//! aggregator reads the store, does the HTTP and calls these. See docs/forecast.md.

pub mod advice;
pub mod config;
pub mod forecast;
pub mod inputs;
pub mod lines;
pub mod model;

pub use advice::{Advice, Weight, advise};
pub use config::ForecastConfig;
pub use forecast::{Forecast, HORIZON_H, build};
pub use model::{FitOptions, HourRecord, ModelState, fit};
