//! The part of `kilowatch serve`'s configuration that accounting reads: `[carbon]`,
//! `[accounting]`, the site's time zone and the `[eu]` declarations. The TOML structs live here
//! (the aggregator's `Config` embeds them); functions take any [`Settings`], so the aggregator
//! passes its whole `Config` and tests and tools a [`Rules`].

use serde::Deserialize;

/// What accounting reads from the configuration.
pub trait Settings {
    fn carbon(&self) -> &CarbonConfig;
    fn accounting(&self) -> &AccountingConfig;
    /// The site's name (`site.name`), for the report.
    fn site_name(&self) -> &str;
    /// The site's IANA time zone (`site.timezone`), for calendar periods.
    fn timezone(&self) -> &str;
    /// What the operator declares for the EU filing (`[eu]`).
    fn eu(&self) -> &crate::eu::EuConfig;
}

/// Settings on their own, with the configuration's defaults (site dc5 in Europe/Paris, no declarations).
#[derive(Debug, Clone)]
pub struct Rules {
    pub carbon: CarbonConfig,
    pub accounting: AccountingConfig,
    pub site_name: String,
    pub timezone: String,
    pub eu: crate::eu::EuConfig,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { carbon: CarbonConfig::default(), accounting: AccountingConfig::default(), site_name: "dc5".into(), timezone: "Europe/Paris".into(), eu: crate::eu::EuConfig::default() }
    }
}

impl Settings for Rules {
    fn site_name(&self) -> &str {
        &self.site_name
    }
    fn carbon(&self) -> &CarbonConfig {
        &self.carbon
    }
    fn accounting(&self) -> &AccountingConfig {
        &self.accounting
    }
    fn timezone(&self) -> &str {
        &self.timezone
    }
    fn eu(&self) -> &crate::eu::EuConfig {
        &self.eu
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarbonConfig {
    /// Location-based grid factor, kg CO2eq per kWh (default 0.056, Ember 2024 for France, what
    /// the DC5 operator publishes). An ingested `carbon` series (`intensity_g_per_kwh`) takes
    /// precedence hour by hour.
    #[serde(default = "default_factor")]
    pub factor_kg_per_kwh: f64,
    #[serde(default = "default_factor_source")]
    pub source: String,
    #[serde(default = "default_factor_year")]
    pub year: i32,
    /// Residual-mix factor for market-based CO2 of the energy not covered by renewables
    /// (`role=renewable` meters). Defaults to the location-based factor.
    #[serde(default)]
    pub residual_factor_kg_per_kwh: Option<f64>,
    /// The factor of generator energy (`role=generator` meters), never the grid's.
    #[serde(default)]
    pub generator: crate::carbon::GeneratorFactor,
}

/// How the ledger judges meters and spans (`[accounting]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountingConfig {
    /// Meters (their `meter` tag) always expected to report: a window they are silent in has
    /// lower coverage even before they were first seen or long after they went quiet.
    #[serde(default)]
    pub expected_meters: Vec<String>,
    /// A meter silent for longer than this many hours before a window starts is taken as
    /// retired for that window (default 24): it no longer lowers coverage.
    #[serde(default = "default_retired_after_h")]
    pub retired_after_h: f64,
    /// PUE is computed over the span E_DC and E_IT both cover; when that span falls short of
    /// the window by more than this share (percent, default 1) and more than two reading
    /// intervals, a data-quality fault says so.
    #[serde(default = "default_span_tolerance_pct")]
    pub span_tolerance_pct: f64,
    /// A rolling-12-month or calendar-year figure is called official only when its window's
    /// coverage (the lowest of the meters that make PUE and WUE) is at least this share
    /// (percent, default 100); below it the figure is shown with its metered share.
    #[serde(default = "default_official_min_coverage_pct")]
    pub official_min_coverage_pct: f64,
    /// A computed prompt token's energy relative to a generated one's, dividing an inference
    /// server's energy among its models and tenants and splitting J per prompt / per generated
    /// token (default 0.1; 0 to 1; docs/inference.md). A stated assumption, not a measurement.
    #[serde(default = "default_prompt_token_weight")]
    pub prompt_token_weight: f64,
    /// The range over which `/api/v1/models` and the statements show each row's (and each
    /// tenant's) energy at the weight's two ends (default `[0.05, 0.3]`, ascending, 0 to 1).
    #[serde(default = "default_prompt_weight_range")]
    pub prompt_weight_range: [f64; 2],
}

fn default_retired_after_h() -> f64 {
    24.0
}
fn default_span_tolerance_pct() -> f64 {
    1.0
}
fn default_official_min_coverage_pct() -> f64 {
    100.0
}
fn default_prompt_token_weight() -> f64 {
    crate::tokens::PROMPT_TOKEN_WEIGHT
}
fn default_prompt_weight_range() -> [f64; 2] {
    crate::tokens::PROMPT_WEIGHT_RANGE
}

impl Default for AccountingConfig {
    fn default() -> Self {
        AccountingConfig {
            expected_meters: Vec::new(),
            retired_after_h: default_retired_after_h(),
            span_tolerance_pct: default_span_tolerance_pct(),
            official_min_coverage_pct: default_official_min_coverage_pct(),
            prompt_token_weight: default_prompt_token_weight(),
            prompt_weight_range: default_prompt_weight_range(),
        }
    }
}

impl Default for CarbonConfig {
    fn default() -> Self {
        CarbonConfig { factor_kg_per_kwh: default_factor(), source: default_factor_source(), year: default_factor_year(), residual_factor_kg_per_kwh: None, generator: Default::default() }
    }
}

fn default_factor() -> f64 {
    0.056
}
fn default_factor_source() -> String {
    "Ember".into()
}
fn default_factor_year() -> i32 {
    2024
}
