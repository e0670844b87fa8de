//! The read-only trait the dashboard needs and the shapes it returns. The aggregator
//! implements [`SiteView`] over its store; tests implement it over fixed data.

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{0}")]
    Backend(String),
    #[error("not found: {0}")]
    NotFound(String),
}

/// The live state of the site, as the overview page shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    pub site: String,
    /// The site's IANA time zone (`site.timezone`): every time on the pages is shown in it.
    pub timezone: String,
    /// Time of the newest data (RFC 3339). Runs ahead of the clock in a fast demo.
    pub data_time: Option<String>,
    pub pue: Option<f64>,
    pub pue_category: Option<u8>,
    /// The window a live ratio covers, e.g. "live, last 5 min".
    pub window: String,
    pub wue_l_per_kwh: Option<f64>,
    pub facility_power_w: Option<f64>,
    pub it_power_w: Option<f64>,
    pub cooling_power_w: Option<f64>,
    pub outside_temp_c: Option<f64>,
    pub outside_rh_pct: Option<f64>,
    pub supply_temp_c: Option<f64>,
    pub cooling_mode: Option<String>,
    pub gpu_count: usize,
    pub gpu_power_w: f64,
    /// Data faults that withhold or qualify a figure.
    pub faults: Vec<String>,
}

/// A time window ending at the newest data, cut into about `points` buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub span_s: i64,
    pub step_s: i64,
}

impl Window {
    /// `24h`, `7d`, `30d` (or `1h`, `6h`): about 300 buckets on round steps.
    pub fn parse(s: &str) -> Option<Window> {
        let span_s = match s {
            "1h" => 3_600,
            "6h" => 21_600,
            "24h" => 86_400,
            "7d" => 604_800,
            "30d" => 2_592_000,
            _ => return None,
        };
        // Round steps, never below the backfill's 15 min for the long windows (a bucket with
        // no reading would show as a hole).
        let step_s = match span_s {
            3_600 => 15,
            21_600 => 60,
            86_400 => 300,
            604_800 => 1_800,
            _ => 7_200,
        };
        Some(Window { span_s, step_s })
    }
}

/// One line on a chart: `[t_ms, value]` pairs, value null where the bucket held no reading.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    pub name: String,
    pub unit: String,
    pub points: Vec<(i64, Option<f64>)>,
}

/// A stretch of time in one cooling mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModeSpan {
    pub from_ms: i64,
    pub to_ms: i64,
    pub mode: String,
}

/// Outside air and the cooling mode over a window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Climate {
    pub series: Vec<Series>,
    pub modes: Vec<ModeSpan>,
}

/// One cooling unit over a window, and its newest readings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CoolingUnit {
    pub unit: String,
    pub supply_temp_c: Option<f64>,
    pub supply_rh_pct: Option<f64>,
    pub dew_point_c: Option<f64>,
    pub mode: Option<String>,
    /// Supply temperature, RH and dew point, bucketed.
    pub series: Vec<Series>,
    /// (dry bulb °C, dew point °C) pairs for the envelope scatter.
    pub envelope: Vec<(f64, f64)>,
    pub modes: Vec<ModeSpan>,
}

/// Water drawn per bucket against outside wet bulb.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Water {
    pub hourly: Vec<Series>,
    pub daily: Vec<Series>,
}

/// The newest readings of one GPU.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GpuCell {
    pub node: String,
    pub gpu: u32,
    /// The board's UUID (the `uuid` tag), for search.
    pub uuid: Option<String>,
    pub power_w: Option<f64>,
    pub temp_margin_c: Option<f64>,
    pub util_pct: Option<f64>,
    pub throttle_reasons: i64,
    /// No reading in the last 5 minutes of data.
    pub stale: bool,
}

/// One node's or one GPU's series over a window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GpuDetail {
    pub node: String,
    pub gpu: Option<u32>,
    pub series: Vec<Series>,
}

/// What the dashboard needs from whoever holds the data. Calls may block (storage reads):
/// the dashboard runs them off the async runtime.
pub trait SiteView: Send + Sync + 'static {
    fn overview(&self) -> Result<Overview, ViewError>;
    /// Facility, IT, cooling and losses power (W), bucketed.
    fn power(&self, w: Window) -> Result<Vec<Series>, ViewError>;
    fn climate(&self, w: Window) -> Result<Climate, ViewError>;
    fn cooling(&self, w: Window) -> Result<Vec<CoolingUnit>, ViewError>;
    fn water(&self, w: Window) -> Result<Water, ViewError>;
    fn gpus(&self) -> Result<Vec<GpuCell>, ViewError>;
    /// A node's GPUs (power per GPU), or one GPU's power, temperature margin and utilization.
    fn gpu_detail(&self, node: &str, gpu: Option<u32>, w: Window) -> Result<GpuDetail, ViewError>;
}
