//! kilowatch-accounting: turns what the store holds into the site's figures: energy ledgers,
//! KPIs (PUE, WUE, CUE, coverage), job attribution, carbon, the EU Annex II indicators and
//! calendar periods, and assembles the monthly report from them. Pure over the reads of its own traits ([`read::SeriesRead`], [`read::JobsRead`]); no HTTP, no tasks. Its slice
//! of the configuration is [`Settings`].

pub mod attribution;
pub mod carbon;
pub mod eu;
pub mod gpu_efficiency;
pub mod kepler;
pub mod kpi;
pub mod ledger;
#[cfg(feature = "memory")]
pub mod memory;
pub mod meters;
pub mod periods;
pub mod read;
pub mod report;
pub mod settings;
pub mod statement;
pub mod tokens;

pub use settings::{Rules, Settings};
