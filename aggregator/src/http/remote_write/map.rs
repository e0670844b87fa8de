//! Prometheus series to wire-schema points: which rule of `[prometheus]` maps a series, the
//! tags it gets, and the points of a whole request, grouped as the collector groups its fields
//! (one line per thing and timestamp).

use std::collections::HashMap;

use kilowatch_model::{Point, Timestamp};

use super::proto::{STALE_NAN_BITS, TimeSeries, WriteRequest};
use crate::config::prometheus::{MapRule, PrometheusConfig, Unmapped};
use crate::tenant::glob;

/// Fields the collector writes as integers: written the same way, so that a series fed by
/// remote write reads back exactly as the collector's would.
const INTEGER_FIELDS: &[(&str, &str)] = &[
    ("gpu", "energy_mj"),
    ("gpu", "sm_clock_mhz"),
    ("gpu", "mem_clock_mhz"),
    ("gpu", "mem_used_bytes"),
    ("gpu", "mem_total_bytes"),
    ("gpu", "throttle_reasons"),
    ("gpu", "ecc_corrected"),
    ("gpu", "ecc_uncorrected"),
];

/// The tag remote-write `gpu` points carry, so that the collector's series of the same GPU
/// (without it) can be told apart and win (see [`super::owners`]).
pub const SOURCE_TAG: (&str, &str) = ("source", "prometheus");

/// Where the readings of a GPU that the collector also reports go: kept for comparison, read
/// by no ledger.
pub const SHADOW_MEASUREMENT: &str = "gpu_dcgm";

/// Series in an answer's message, at most, and bytes of each series' description.
const DESCRIBE_BYTES: usize = 200;

struct Rule {
    rule: MapRule,
    /// Tag name and the labels it is read from, first present wins.
    tags: Vec<(String, Vec<String>)>,
    integer: bool,
}

/// The compiled `[prometheus]` rules.
pub struct Mapper {
    rules: Vec<Rule>,
    by_metric: HashMap<String, Vec<usize>>,
    site: String,
    unmapped: Unmapped,
    max_name_bytes: usize,
}

/// What one series becomes.
#[derive(Debug, PartialEq)]
pub enum Target {
    Field { measurement: String, tags: Vec<(String, String)>, field: String, scale: f64, integer: bool },
    Unmapped,
    Refused(String),
}

impl Mapper {
    pub fn new(cfg: &PrometheusConfig, site: &str, max_name_bytes: usize) -> Mapper {
        let rules: Vec<Rule> = cfg
            .rules()
            .into_iter()
            .map(|r| Rule {
                tags: r.tags.iter().map(|(t, l)| (t.clone(), l.split('|').map(str::trim).map(str::to_owned).collect())).collect(),
                integer: INTEGER_FIELDS.contains(&(r.measurement.as_str(), r.field.as_str())),
                rule: r,
            })
            .collect();
        let mut by_metric: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_metric.entry(r.rule.metric.clone()).or_default().push(i);
        }
        Mapper { rules, by_metric, site: site.to_owned(), unmapped: cfg.unmapped, max_name_bytes }
    }

    /// The target of `ts`: the first rule whose metric and matchers hold.
    pub fn target(&self, ts: &TimeSeries) -> Target {
        let Some(name) = ts.name() else { return Target::Refused("no __name__ label".into()) };
        let rule = self.by_metric.get(name).into_iter().flatten().map(|i| &self.rules[*i]).find(|r| r.rule.matchers.iter().all(|(l, g)| glob(g, ts.label(l).unwrap_or(""))));
        let Some(r) = rule else { return self.unmapped(name, ts) };
        let mut tags: Vec<(String, String)> = vec![("site".to_owned(), self.site.clone())];
        for (tag, labels) in &r.tags {
            let Some(v) = labels.iter().find_map(|l| ts.label(l)) else {
                return Target::Refused(format!("label {} is missing (rule for {} → {}.{})", labels.join(" or "), name, r.rule.measurement, r.rule.field));
            };
            if let Err(why) = self.tag_value_ok(&labels.join("|"), v) {
                return Target::Refused(why);
            }
            put(&mut tags, tag, v);
        }
        for (k, v) in &r.rule.set {
            put(&mut tags, k, v);
        }
        tags.sort();
        Target::Field { measurement: r.rule.measurement.clone(), tags, field: r.rule.field.clone(), scale: r.rule.scale, integer: r.integer }
    }

    fn unmapped(&self, name: &str, ts: &TimeSeries) -> Target {
        if self.unmapped == Unmapped::Drop {
            return Target::Unmapped;
        }
        let mut tags: Vec<(String, String)> = Vec::with_capacity(ts.labels.len());
        for l in ts.labels.iter().filter(|l| l.name != "__name__" && !l.value.is_empty()) {
            if let Err(why) = self.tag_value_ok(&l.name, &l.value) {
                return Target::Refused(why);
            }
            put(&mut tags, &l.name, &l.value);
        }
        if !tags.iter().any(|(k, _)| k == "site") {
            tags.push(("site".to_owned(), self.site.clone()));
        }
        tags.sort();
        Target::Field { measurement: name.to_owned(), tags, field: "value".to_owned(), scale: 1.0, integer: false }
    }

    /// A label value line protocol can carry as a tag, within `[store] max_name_bytes`.
    fn tag_value_ok(&self, label: &str, v: &str) -> Result<(), String> {
        if v.len() > self.max_name_bytes {
            return Err(format!("label {label} is {} bytes, longer than the limit of {} bytes ([store] max_name_bytes)", v.len(), self.max_name_bytes));
        }
        if v.chars().any(char::is_control) {
            return Err(format!("label {label} holds a control character"));
        }
        Ok(())
    }
}

/// The job named by dcgm-exporter's job labels: `hpc_job` (its HPC job mapping, Slurm job ids)
/// as `slurm:<id>`, the id the Slurm hooks and poller give; else `pod` and `namespace` (its
/// Kubernetes mode) as `k8s:<namespace>/<pod>`.
fn job_of(ts: &TimeSeries) -> Option<String> {
    if let Some(j) = ts.label("hpc_job") {
        return Some(if j.contains(':') { j.to_owned() } else { format!("slurm:{j}") });
    }
    Some(format!("k8s:{}/{}", ts.label("namespace")?, ts.label("pod")?))
}

fn put(tags: &mut Vec<(String, String)>, k: &str, v: &str) {
    match tags.iter_mut().find(|(t, _)| t == k) {
        Some(slot) => slot.1 = v.to_owned(),
        None => tags.push((k.to_owned(), v.to_owned())),
    }
}

/// What a request becomes: points to store, and what was left out.
#[derive(Debug, Default)]
pub struct Batch {
    pub points: Vec<Point>,
    /// Series refused whole or in part, with why, in request order.
    pub refused: Vec<(u32, String)>,
    pub counts: Counts,
}

/// Samples by what became of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub mapped: u64,
    pub unmapped: u64,
    pub refused: u64,
    /// Prometheus' staleness markers: a series that disappeared, not a reading.
    pub stale: u64,
    /// Readings of a GPU the collector reports too, kept apart (see [`SHADOW_MEASUREMENT`]).
    pub shadowed: u64,
}

/// Decides, for a `gpu` point of a node, whether the collector already reports that node.
pub trait GpuOwners {
    fn collector_reports(&mut self, node: &str) -> bool;
}

/// Maps every series of `req` and groups the values of one thing at one time into one point.
pub fn build(req: &WriteRequest, mapper: &Mapper, owners: &mut dyn GpuOwners) -> Batch {
    let mut b = Batch::default();
    let mut groups: HashMap<(String, Vec<(String, String)>), u32> = HashMap::new();
    let mut at: HashMap<(u32, i64), usize> = HashMap::new();
    for (i, ts) in req.timeseries.iter().enumerate() {
        let i = i as u32;
        let n = ts.samples.len() as u64;
        let (mut measurement, mut tags, field, scale, integer) = match mapper.target(ts) {
            Target::Field { measurement, tags, field, scale, integer } => (measurement, tags, field, scale, integer),
            Target::Unmapped => {
                b.counts.unmapped += n;
                continue;
            }
            Target::Refused(why) => {
                b.counts.refused += n;
                b.refused.push((i, format!("{}: {why}", ts.describe(DESCRIBE_BYTES))));
                continue;
            }
        };
        let shadowed = measurement == "gpu" && tags.iter().find(|(k, _)| k == "node").is_some_and(|(_, node)| owners.collector_reports(node));
        // The job holding the GPU, as the collector's `gpu_job` points say it (the collector
        // writes its own for the nodes it reports).
        let job = if measurement == "gpu" && !shadowed { job_of(ts) } else { None };
        let job_group = job.as_ref().map(|_| {
            let next = groups.len() as u32;
            *groups.entry((kilowatch_model::metric::GPU_JOB.to_owned(), tags.clone())).or_insert(next)
        });
        if shadowed {
            measurement = SHADOW_MEASUREMENT.to_owned();
        } else if measurement == "gpu" {
            put(&mut tags, SOURCE_TAG.0, SOURCE_TAG.1);
            tags.sort();
        }
        let next = groups.len() as u32;
        let group = *groups.entry((measurement.clone(), tags.clone())).or_insert(next);
        let mut bad: Option<String> = None;
        for s in &ts.samples {
            if s.value.to_bits() == STALE_NAN_BITS {
                b.counts.stale += 1;
                continue;
            }
            let value = s.value * scale;
            let Some(ns) = s.timestamp.checked_mul(1_000_000).filter(|_| value.is_finite()) else {
                b.counts.refused += 1;
                bad.get_or_insert_with(|| format!("{}: value {} at {} ms is not a finite number at a representable time", ts.describe(DESCRIBE_BYTES), s.value, s.timestamp));
                continue;
            };
            let idx = *at.entry((group, ns)).or_insert_with(|| {
                let mut p = Point::new(measurement.as_str(), Timestamp(ns));
                for (k, v) in &tags {
                    p = p.tag(k.as_str(), v.as_str());
                }
                b.points.push(p);
                b.points.len() - 1
            });
            if let (Some(g), Some(job)) = (job_group, &job) {
                let j = *at.entry((g, ns)).or_insert_with(|| {
                    let mut p = Point::new(kilowatch_model::metric::GPU_JOB, Timestamp(ns));
                    for (k, v) in tags.iter().filter(|(k, _)| k != SOURCE_TAG.0) {
                        p = p.tag(k.as_str(), v.as_str());
                    }
                    b.points.push(p);
                    b.points.len() - 1
                });
                if b.points[j].get("job").is_none() {
                    b.points[j].fields.push(("job".to_owned(), kilowatch_model::FieldValue::Str(job.clone())));
                }
            }
            let p = &mut b.points[idx];
            // Two rules for one field (an old and a new dcgm name): the first series keeps it.
            if p.get(&field).is_some() {
                continue;
            }
            if integer && value.fract() == 0.0 && value.abs() < 9.0e18 {
                p.fields.push((field.clone(), kilowatch_model::FieldValue::I64(value as i64)));
            } else {
                p.fields.push((field.clone(), kilowatch_model::FieldValue::F64(value)));
            }
            if shadowed {
                b.counts.shadowed += 1;
            } else {
                b.counts.mapped += 1;
            }
        }
        if let Some(why) = bad {
            b.refused.push((i, why));
        }
    }
    // Points with no field left (every value of theirs refused) are not lines.
    b.points.retain(|p| !p.fields.is_empty());
    b
}

#[cfg(test)]
mod tests {
    use super::super::proto::{Label, Sample};
    use super::*;

    struct NoCollector;
    impl GpuOwners for NoCollector {
        fn collector_reports(&mut self, _: &str) -> bool {
            false
        }
    }

    struct Collector(&'static str);
    impl GpuOwners for Collector {
        fn collector_reports(&mut self, node: &str) -> bool {
            node == self.0
        }
    }

    fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        let mut l = vec![Label { name: "__name__".into(), value: name.into() }];
        l.extend(labels.iter().map(|(k, v)| Label { name: (*k).into(), value: (*v).into() }));
        TimeSeries { labels: l, samples: samples.iter().map(|(t, v)| Sample { timestamp: *t, value: *v }).collect() }
    }

    const GPU0: &[(&str, &str)] = &[("gpu", "0"), ("UUID", "GPU-a"), ("Hostname", "dgx-001"), ("modelName", "NVIDIA H100 80GB HBM3"), ("job", "dcgm"), ("instance", "10.0.0.1:9400")];

    fn mapper(toml_text: &str) -> Mapper {
        let cfg: PrometheusConfig = toml::from_str(toml_text).expect("config");
        cfg.validate().expect("valid");
        Mapper::new(&cfg, "dc5", 256)
    }

    #[test]
    fn dcgm_series_become_one_gpu_line_per_timestamp_as_the_collector_writes_it() {
        let req = WriteRequest {
            timeseries: vec![
                series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(1000, 123456789.0), (2000, 123457289.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[(1000, 512.5), (2000, 500.0)]),
                series("DCGM_FI_DEV_FB_USED", GPU0, &[(1000, 3.0)]),
            ],
        };
        let b = build(&req, &mapper(""), &mut NoCollector);
        assert_eq!(b.counts, Counts { mapped: 5, ..Counts::default() });
        let text = kilowatch_model::encode_points(&b.points, kilowatch_model::Precision::Ms);
        assert_eq!(
            text,
            "gpu,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a energy_mj=123456789i,power_w=512.5,mem_used_bytes=3145728i 1000\n\
             gpu,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a energy_mj=123457289i,power_w=500 2000\n"
        );
    }

    #[test]
    fn job_labels_become_gpu_job_points() {
        let hpc: Vec<(&str, &str)> = GPU0.iter().copied().chain([("hpc_job", "4242")]).collect();
        let k8s: Vec<(&str, &str)> = [("gpu", "1"), ("UUID", "GPU-b"), ("Hostname", "dgx-001"), ("pod", "train-0"), ("namespace", "mistral-train"), ("container", "main")].into();
        let req = WriteRequest {
            timeseries: vec![
                series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", &hpc, &[(1000, 5.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &hpc, &[(1000, 300.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &k8s, &[(1000, 200.0)]),
            ],
        };
        let b = build(&req, &mapper(""), &mut NoCollector);
        let text = kilowatch_model::encode_points(&b.points, kilowatch_model::Precision::Ms);
        assert!(text.contains("gpu_job,gpu=0,node=dgx-001,site=dc5,uuid=GPU-a job=\"slurm:4242\" 1000\n"), "{text}");
        assert!(text.contains("gpu_job,gpu=1,node=dgx-001,site=dc5,uuid=GPU-b job=\"k8s:mistral-train/train-0\" 1000\n"), "{text}");
        assert_eq!(text.matches("gpu_job").count(), 2, "one gpu_job point per GPU and time: {text}");
        assert_eq!(b.counts.mapped, 3);
        let b = build(&req, &mapper(""), &mut Collector("dgx-001"));
        assert!(b.points.iter().all(|p| p.measurement != "gpu_job"), "the collector writes its own");
    }

    #[test]
    fn a_gpu_of_a_node_the_collector_reports_is_kept_apart() {
        let req = WriteRequest { timeseries: vec![series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(1000, 5.0)])] };
        let b = build(&req, &mapper(""), &mut Collector("dgx-001"));
        assert_eq!(b.points[0].measurement, SHADOW_MEASUREMENT);
        assert_eq!(b.points[0].tag_value("source"), None);
        assert_eq!(b.counts.shadowed, 1);
    }

    #[test]
    fn stale_markers_are_skipped_and_nan_is_refused_naming_the_series() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let req = WriteRequest {
            timeseries: vec![
                series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[(1000, 300.0), (2000, stale)]),
                series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(1000, f64::NAN)]),
            ],
        };
        let b = build(&req, &mapper(""), &mut NoCollector);
        assert_eq!((b.counts.mapped, b.counts.stale, b.counts.refused), (1, 1, 1));
        assert_eq!(b.refused.len(), 1);
        assert_eq!(b.refused[0].0, 1);
        assert!(b.refused[0].1.starts_with("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"0\""), "{}", b.refused[0].1);
        assert_eq!(b.points.len(), 1);
    }

    #[test]
    fn a_missing_label_or_a_huge_one_refuses_the_series_only() {
        let huge = "x".repeat(1 << 20);
        let req = WriteRequest {
            timeseries: vec![
                series("DCGM_FI_DEV_POWER_USAGE", &[("gpu", "0"), ("UUID", "GPU-a")], &[(1000, 1.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &[("gpu", "1"), ("UUID", &huge), ("Hostname", "n")], &[(1000, 1.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[(1000, 2.0)]),
            ],
        };
        let b = build(&req, &mapper(""), &mut NoCollector);
        assert_eq!(b.points.len(), 1);
        assert!(b.refused[0].1.contains("label Hostname is missing"), "{}", b.refused[0].1);
        assert!(b.refused[1].1.contains("label UUID is 1048576 bytes"), "{}", b.refused[1].1);
        assert!(b.refused[1].1.len() < 400, "the message names the series without repeating 1 MB");
    }

    #[test]
    fn operator_rules_map_meters_and_water_and_unmapped_series_are_dropped_or_stored() {
        let cfg = "[[map]]\nmetric = \"pm_energy_wh_total\"\nmatch = { role = \"grid\" }\nmeasurement = \"meter\"\nfield = \"energy_kwh\"\nscale = 0.001\ntags = { meter = \"meter\" }\nset = { role = \"facility\" }\n\
                   [[map]]\nmetric = \"water_m3_total\"\nmeasurement = \"water\"\nfield = \"volume_m3\"\ntags = { meter = \"meter\" }\nset = { potable = \"true\" }\n";
        let req = WriteRequest {
            timeseries: vec![
                series("pm_energy_wh_total", &[("meter", "grid-a"), ("role", "grid")], &[(1000, 2500.0)]),
                series("pm_energy_wh_total", &[("meter", "ups-1"), ("role", "ups")], &[(1000, 7.0)]),
                series("water_m3_total", &[("meter", "makeup-1")], &[(1000, 4512.3)]),
            ],
        };
        let b = build(&req, &mapper(cfg), &mut NoCollector);
        let text = kilowatch_model::encode_points(&b.points, kilowatch_model::Precision::Ms);
        assert_eq!(text, "meter,meter=grid-a,role=facility,site=dc5 energy_kwh=2.5 1000\nwater,meter=makeup-1,potable=true,site=dc5 volume_m3=4512.3 1000\n");
        assert_eq!(b.counts.unmapped, 1, "the UPS series matches no rule");
        let b = build(&req, &mapper(&format!("unmapped = \"store\"\n{cfg}")), &mut NoCollector);
        let text = kilowatch_model::encode_points(&b.points, kilowatch_model::Precision::Ms);
        assert!(text.contains("pm_energy_wh_total,meter=ups-1,role=ups,site=dc5 value=7 1000\n"), "{text}");
    }

    #[test]
    fn an_operator_rule_replaces_the_shipped_one_for_the_same_name() {
        let m = mapper("[[map]]\nmetric = \"DCGM_FI_DEV_POWER_USAGE\"\nmeasurement = \"gpu\"\nfield = \"power_w\"\ntags = { node = \"instance\", gpu = \"gpu\" }\n");
        let Target::Field { tags, .. } = m.target(&series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[])) else { panic!("mapped") };
        assert!(tags.contains(&("node".into(), "10.0.0.1:9400".into())), "{tags:?}");
    }
}
