//! `[store]`: how the embedded store keeps, checkpoints and limits what it is sent.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Seconds between checkpoints of the in-memory heads into chunks (default 60). Shorter
    /// means less memory for recent samples and a smaller write-ahead log to replay after a
    /// crash; longer means fewer, larger chunks until maintenance compacts each hour.
    #[serde(default = "default_checkpoint")]
    pub checkpoint_interval_s: u64,
    /// Hours of raw samples kept (default 48). Older data is read from the roll-ups: the last
    /// reading of each minute, then of each hour. Energy and water totals stay exact at those
    /// readings; see docs/storage.md.
    #[serde(default = "default_raw_retention")]
    pub raw_retention_h: u64,
    /// Days of one-minute roll-ups kept (default 35: a month, plus the days until the monthly
    /// report is produced, at minute resolution).
    #[serde(default = "default_minute_retention")]
    pub minute_rollup_retention_d: u64,
    /// Days of one-hour roll-ups kept; 0 (the default) keeps them forever.
    #[serde(default)]
    pub hour_rollup_retention_d: u64,
    /// Seconds between maintenance passes: roll-ups, compaction, retention (default 60).
    #[serde(default = "default_maintenance")]
    pub maintenance_interval_s: u64,
    /// Seconds a sample may lie behind the newest sample of its series (default 172800, 48 h,
    /// the raw retention). A write with an older sample is refused whole (HTTP 422). A
    /// collector replays its spool oldest first, so a replay after an outage stays in order.
    #[serde(default = "default_out_of_order_window")]
    pub out_of_order_window_s: u64,
    /// Seconds a sample may be stamped ahead of the server's clock (default 300). A line with a
    /// later sample is refused (HTTP 422, the request's other lines are stored): one node with a
    /// wrong clock must not block its series for months nor move "now" for the whole site.
    /// Five minutes is far above the drift of any node that runs NTP (milliseconds) or of one
    /// whose NTP has been off for days (seconds a day), and no more than one live window (the
    /// live KPIs and the dashboard's staleness count five minutes), the most "now" can move.
    #[serde(default = "default_max_future_skew")]
    pub max_future_skew_s: u64,
    /// Most series the store holds (default 1,000,000). A line that would create more is
    /// refused (HTTP 422, naming this key). A GPU sends about 13 series (10 `gpu` fields, its
    /// share of `node`, `gpu_job`), so 50,000 GPUs make about 650,000, plus the facility's few
    /// thousand; a million leaves room for swapped GPUs' new series. Each costs about 1.5 KB of
    /// memory.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Longest measurement, tag key, tag value or field key accepted, in bytes (default 256).
    /// A line with a longer one is refused (HTTP 422, naming this key).
    #[serde(default = "default_max_name_bytes")]
    pub max_name_bytes: usize,
    /// Megabytes of memory the store may hold for its series and for samples waiting for a
    /// checkpoint (default 2048). Past it, writes are refused with 503 and `Retry-After` (the
    /// collectors' spools keep the data and send it again) instead of the process growing
    /// until the kernel kills it. Each series counts 1 KB; the process's resident memory stays
    /// under this plus the margin measured in docs/performance.md.
    #[serde(default = "default_memory_budget")]
    pub memory_budget_mb: u64,
    /// Megabytes of compressed samples in memory that start a checkpoint before
    /// `checkpoint_interval_s` is up (default 128; a sample takes 2 to 10 bytes).
    #[serde(default = "default_checkpoint_head")]
    pub checkpoint_head_mb: u64,
    /// New series a minute, all write tokens together (default 1,000,000). A line that would
    /// create more is refused with 429 and `Retry-After`, naming this key; the collector sends
    /// it again later. Series that exist are never limited.
    #[serde(default = "default_new_series_all")]
    pub max_new_series_per_minute: u64,
    /// New series a minute for each write token (default 100,000: the first start of a site of
    /// about 7,500 GPUs, whose collectors share one token, takes a minute; a larger one takes
    /// a few, its spools holding the data). A typo in a tag that changes on every line meets
    /// this cap instead of creating a million series.
    #[serde(default = "default_new_series_token")]
    pub max_new_series_per_minute_per_token: u64,
}

impl StoreConfig {
    /// What writes refuse, line by line.
    pub fn policy(&self) -> kilowatch_store::WritePolicy {
        let ns = |s: u64| i64::try_from(s).unwrap_or(i64::MAX / 1_000_000_000).saturating_mul(1_000_000_000);
        kilowatch_store::WritePolicy {
            out_of_order_window_ns: Some(ns(self.out_of_order_window_s)),
            max_future_skew_ns: Some(ns(self.max_future_skew_s)),
            max_series: Some(self.max_series),
            max_name_bytes: Some(self.max_name_bytes),
            max_new_series_per_minute: Some(usize::try_from(self.max_new_series_per_minute).unwrap_or(usize::MAX)),
            max_new_series_per_minute_per_writer: Some(usize::try_from(self.max_new_series_per_minute_per_token).unwrap_or(usize::MAX)),
            memory_budget_bytes: Some(usize::try_from(self.memory_budget_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)),
        }
    }

    pub fn retention(&self) -> kilowatch_store::Retention {
        const H: i64 = 3_600_000_000_000;
        let h = |n: u64| i64::try_from(n).unwrap_or(i64::MAX / H).saturating_mul(H);
        kilowatch_store::Retention {
            raw: h(self.raw_retention_h),
            minute: h(self.minute_rollup_retention_d.saturating_mul(24)),
            hour: (self.hour_rollup_retention_d > 0).then(|| h(self.hour_rollup_retention_d.saturating_mul(24))),
        }
    }
}

fn default_checkpoint() -> u64 {
    60
}
fn default_raw_retention() -> u64 {
    48
}
fn default_minute_retention() -> u64 {
    35
}
fn default_maintenance() -> u64 {
    60
}
fn default_out_of_order_window() -> u64 {
    48 * 3600
}
fn default_max_future_skew() -> u64 {
    300
}
fn default_max_series() -> usize {
    1_000_000
}
fn default_max_name_bytes() -> usize {
    256
}
fn default_memory_budget() -> u64 {
    2048
}
fn default_checkpoint_head() -> u64 {
    128
}
fn default_new_series_all() -> u64 {
    1_000_000
}
fn default_new_series_token() -> u64 {
    100_000
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            checkpoint_interval_s: default_checkpoint(),
            raw_retention_h: default_raw_retention(),
            minute_rollup_retention_d: default_minute_retention(),
            hour_rollup_retention_d: 0,
            maintenance_interval_s: default_maintenance(),
            out_of_order_window_s: default_out_of_order_window(),
            max_future_skew_s: default_max_future_skew(),
            max_series: default_max_series(),
            max_name_bytes: default_max_name_bytes(),
            memory_budget_mb: default_memory_budget(),
            checkpoint_head_mb: default_checkpoint_head(),
            max_new_series_per_minute: default_new_series_all(),
            max_new_series_per_minute_per_token: default_new_series_token(),
        }
    }
}
