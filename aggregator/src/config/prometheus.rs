//! `[prometheus]`: how series arriving by Prometheus remote write (`POST /api/v1/write`) become
//! points of the wire schema. Kilowatch ships rules for dcgm-exporter's names
//! (`DCGM_FI_DEV_*`, see [`default_rules`]); an operator adds rules for facility meters, water
//! meters and other exporters with `[[prometheus.map]]`, which are tried first, so a rule of
//! theirs for a DCGM name replaces the shipped one (docs/prometheus.md).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;

pub mod kepler;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// What becomes of a series that no rule maps: `drop` (default: counted in
    /// `kilowatch_remote_write_samples_total{outcome="unmapped"}`) or `store` (kept as measurement
    /// = the metric name, field `value`, its labels as tags, so PromQL finds it under its own name).
    #[serde(default)]
    pub unmapped: Unmapped,
    /// Use the shipped dcgm-exporter rules after the operator's (default true); `false` turns
    /// off the shipped Kepler rules too.
    #[serde(default = "yes")]
    pub default_rules: bool,
    /// Use the shipped Kepler rules (node and pod joules, 0.7.x and 0.10+: [`kepler::rules`])
    /// after the dcgm-exporter ones (default true; `default_rules = false` turns both off).
    #[serde(default = "yes")]
    pub kepler_rules: bool,
    /// The label that names the owner of the job a series' job labels name (dcgm-exporter's
    /// `hpc_job`, or `pod`/`namespace`), e.g. `slurm_account` added by a relabelling rule. A
    /// pod without it takes its owner from `[kubernetes] namespace_owners`; a Slurm job without
    /// it has none, unless the jobs API or the Slurm hooks declare it (docs/prometheus.md).
    #[serde(default)]
    pub job_owner_label: Option<String>,
    /// The operator's rules, tried in order before the shipped ones; the first that matches a
    /// series maps it.
    #[serde(default)]
    pub map: Vec<MapRule>,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig { unmapped: Unmapped::default(), default_rules: true, kepler_rules: true, job_owner_label: None, map: Vec::new() }
    }
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    #[default]
    Drop,
    Store,
}

/// One rule: a Prometheus metric (and label matchers) to one field of the wire schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapRule {
    /// The metric name (`__name__`), exactly.
    pub metric: String,
    /// Label matchers, all of which must hold: label name = glob over its value (`*` any run
    /// of characters, `?` one). An absent label has the value "".
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// The wire-schema measurement: `gpu`, `node`, `meter`, `water` or `cooling`; or
    /// `gpu_event` with field `xid` for a gauge of the last XID code (an event per new code).
    pub measurement: String,
    /// A field of that measurement in the metric table (`energy_kwh`, `power_w`, `volume_m3`…).
    pub field: String,
    /// The value is multiplied by this: 0.001 for Wh into kWh, 1048576 for MiB into bytes.
    #[serde(default = "one")]
    pub scale: f64,
    /// Wire-schema tags taken from labels: tag = label, or `"LabelA|LabelB"` for the first of
    /// them present. A series without any of them is refused (400, named).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Wire-schema tags with a fixed value: `role`, `category`, `potable`, `meter`, `unit`…
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

/// The shipped rules: dcgm-exporter's default counters (NVIDIA/dcgm-exporter,
/// `etc/default-counters.csv`, plus the ones the collector's own `/metrics` also exports) onto
/// the `gpu` measurement, in the units and under the tags the collector writes.
pub fn default_rules() -> Vec<MapRule> {
    const MIB: f64 = 1024.0 * 1024.0;
    let gpu = |metric: &str, field: &str, scale: f64| MapRule {
        metric: metric.to_owned(),
        matchers: BTreeMap::new(),
        measurement: "gpu".to_owned(),
        field: field.to_owned(),
        scale,
        tags: [("node", "Hostname"), ("gpu", "gpu"), ("uuid", "UUID")].into_iter().map(|(t, l)| (t.to_owned(), l.to_owned())).collect(),
        set: BTreeMap::new(),
    };
    vec![
        gpu("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "energy_mj", 1.0),
        gpu("DCGM_FI_DEV_POWER_USAGE", "power_w", 1.0),
        gpu("DCGM_FI_DEV_POWER_MGMT_LIMIT", "power_limit_w", 1.0),
        gpu("DCGM_FI_DEV_GPU_TEMP", "temp_c", 1.0),
        gpu("DCGM_FI_DEV_MEMORY_TEMP", "mem_temp_c", 1.0),
        gpu("DCGM_FI_DEV_GPU_UTIL", "util_pct", 1.0),
        gpu("DCGM_FI_DEV_MEM_COPY_UTIL", "mem_util_pct", 1.0),
        gpu("DCGM_FI_DEV_SM_CLOCK", "sm_clock_mhz", 1.0),
        gpu("DCGM_FI_DEV_MEM_CLOCK", "mem_clock_mhz", 1.0),
        gpu("DCGM_FI_DEV_FB_USED", "mem_used_bytes", MIB),
        gpu("DCGM_FI_DEV_FB_TOTAL", "mem_total_bytes", MIB),
        gpu("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "throttle_reasons", 1.0),
        // The name newer dcgm-exporters use for the same bitmask.
        gpu("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "throttle_reasons", 1.0),
        gpu("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "ecc_corrected", 1.0),
        gpu("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "ecc_uncorrected", 1.0),
        // A gauge of the last XID: each change to a new non-zero code becomes one `gpu_event`
        // (kind "xid"), as the collector writes the driver's XID events.
        MapRule { measurement: XID.0.to_owned(), field: XID.1.to_owned(), ..gpu("DCGM_FI_DEV_XID_ERRORS", "", 1.0) },
    ]
}

/// Measurements a rule may write: the wire schema's, whose fields the ledger and the views read.
const MEASUREMENTS: &[&str] = &["gpu", "node", "meter", "water", "cooling", kilowatch_model::metric::POD];

/// The one target that is not a numeric field: a gauge of the last XID code, written as a
/// `gpu_event` of kind "xid" each time it changes to a new non-zero code.
pub const XID: (&str, &str) = ("gpu_event", "xid");

impl PrometheusConfig {
    /// The operator's rules, then the shipped ones unless `default_rules = false`.
    pub fn rules(&self) -> Vec<MapRule> {
        let mut r = self.map.clone();
        if self.default_rules {
            r.extend(default_rules());
            if self.kepler_rules {
                r.extend(kepler::rules());
            }
        }
        r
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(l) = &self.job_owner_label
            && (l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(ConfigError::Invalid { key: "prometheus.job_owner_label", message: format!("{l:?} is not a Prometheus label name") });
        }
        let bad = |message: String| ConfigError::Invalid { key: "prometheus.map", message };
        for (i, r) in self.map.iter().enumerate() {
            let at = format!("rule {} ({})", i + 1, r.metric);
            if r.metric.trim().is_empty() {
                return Err(bad(format!("rule {}: metric is empty", i + 1)));
            }
            if (r.measurement.as_str(), r.field.as_str()) == XID {
                if !r.tags.contains_key("node") || !r.tags.contains_key("gpu") {
                    return Err(bad(format!("{at}: a gpu_event.xid rule needs the node and gpu tags")));
                }
            } else if !MEASUREMENTS.contains(&r.measurement.as_str()) {
                return Err(bad(format!("{at}: measurement {:?} is not one of {}", r.measurement, MEASUREMENTS.join(", "))));
            }
            match kilowatch_model::metric::lookup_metric(&r.measurement, &r.field) {
                _ if (r.measurement.as_str(), r.field.as_str()) == XID => {}
                Some(d) if d.kind != kilowatch_model::metric::Kind::Label => {}
                _ => return Err(bad(format!("{at}: {}.{} is not a numeric field of the metric table (model/src/metric.rs), nor gpu_event.xid", r.measurement, r.field))),
            }
            if r.measurement == kilowatch_model::metric::POD && !["node", "namespace", "pod"].iter().all(|t| r.tags.contains_key(*t) || r.set.contains_key(*t)) {
                return Err(bad(format!("{at}: a pod rule needs the node, namespace and pod tags (the job is k8s:<namespace>/<pod> on its node)")));
            }
            if !(r.scale.is_finite() && r.scale > 0.0) {
                return Err(bad(format!("{at}: scale must be a finite number > 0")));
            }
            for (k, v) in r.tags.iter().chain(&r.set) {
                if k.is_empty() || v.is_empty() || k.chars().chain(v.chars()).any(char::is_control) {
                    return Err(bad(format!("{at}: tag {k:?} = {v:?} is empty or holds a control character")));
                }
            }
            if let Some(k) = r.tags.keys().find(|k| r.set.contains_key(*k)) {
                return Err(bad(format!("{at}: tag {k:?} is both in tags and in set")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PrometheusConfig, String> {
        let c: PrometheusConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn shipped_rules_name_fields_of_the_metric_table() {
        let c = PrometheusConfig { map: default_rules(), default_rules: false, ..Default::default() };
        c.validate().expect("the shipped rules are valid");
        let c = PrometheusConfig { map: kepler::rules(), default_rules: false, ..Default::default() };
        c.validate().expect("the shipped Kepler rules are valid");
        let all = PrometheusConfig::default().rules().len();
        assert_eq!(all, default_rules().len() + kepler::rules().len());
        assert_eq!(parse("kepler_rules = false\n").expect("valid").rules().len(), default_rules().len(), "Kepler's rules off, dcgm's kept");
        let e = parse("[[map]]\nmetric = \"x\"\nmeasurement = \"pod\"\nfield = \"energy_j\"\ntags = { node = \"n\" }\n").expect_err("a pod without namespace");
        assert!(e.contains("pod rule"), "{e}");
    }

    #[test]
    fn operator_rules_come_first_and_are_checked() {
        let c =
            parse("[[map]]\nmetric = \"pm_kwh_total\"\nmatch = { meter = \"grid-*\" }\nmeasurement = \"meter\"\nfield = \"energy_kwh\"\ntags = { meter = \"meter\" }\nset = { role = \"facility\" }\n")
                .expect("valid");
        assert_eq!(c.rules()[0].metric, "pm_kwh_total");
        assert_eq!(c.rules().len(), 1 + default_rules().len() + kepler::rules().len());
        let e = parse("[[map]]\nmetric = \"x\"\nmeasurement = \"meter\"\nfield = \"kwh\"\n").expect_err("unknown field");
        assert!(e.contains("meter.kwh"), "{e}");
        let e = parse("[[map]]\nmetric = \"x\"\nmeasurement = \"meter\"\nfield = \"energy_kwh\"\nscale = 0\n").expect_err("zero scale");
        assert!(e.contains("scale"), "{e}");
        assert!(parse("unmapped = \"keep\"\n").is_err(), "only drop or store");
        assert!(parse("[[map]]\nmetric = \"x\"\nmeasurement = \"meter\"\nfield = \"energy_kwh\"\nunit = \"Wh\"\n").is_err(), "unknown keys are errors");
    }
}
