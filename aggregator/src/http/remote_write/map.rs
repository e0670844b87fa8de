//! Prometheus series to wire-schema points: which rule of `[prometheus]` maps a series, the
//! tags it gets, and the points of a whole request, grouped as the collector groups its fields
//! (one line per thing and timestamp).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use super::proto::{STALE_NAN_BITS, TimeSeries, WriteRequest};
use crate::config::kubernetes::KubernetesConfig;
use crate::config::prometheus::{MapRule, PrometheusConfig, Unmapped, XID};
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
    job_owner_label: Option<String>,
    namespace_owners: KubernetesConfig,
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
        Mapper { rules, by_metric, site: site.to_owned(), unmapped: cfg.unmapped, max_name_bytes, job_owner_label: cfg.job_owner_label.clone(), namespace_owners: KubernetesConfig::default() }
    }

    /// Pods named by job labels take their owner from `[kubernetes] namespace_owners`.
    pub fn with_namespace_owners(mut self, k8s: &KubernetesConfig) -> Mapper {
        self.namespace_owners = k8s.clone();
        self
    }

    /// The job that `ts`' job labels name, with its owner and project where they are known
    /// (see [`job_of`]): the owner label (`job_owner_label`) first; for a pod, else the
    /// namespace's owner; a pod's project is its namespace, as `POST /api/v1/jobs` makes it.
    fn label_job(&self, ts: &TimeSeries) -> Option<LabelJob> {
        let job = job_of(ts)?;
        let labelled = self.job_owner_label.as_deref().and_then(|l| ts.label(l)).filter(|o| !o.is_empty() && o.len() <= self.max_name_bytes && !o.chars().any(char::is_control));
        let namespace = if ts.label("hpc_job").is_some() { None } else { ts.label("namespace") };
        let owner = labelled.or_else(|| namespace.and_then(|ns| self.namespace_owners.owner_of(ns))).unwrap_or_default();
        Some(LabelJob { job, owner: owner.to_owned(), project: namespace.unwrap_or_default().to_owned() })
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
        for l in ts.labels.iter().filter(|l| l.name != "__name__".as_bytes() && !l.value.is_empty()) {
            let (Some(name), Some(value)) = (l.name(), l.value()) else { return Target::Refused("a label is not UTF-8".into()) };
            if let Err(why) = self.tag_value_ok(name, value) {
                return Target::Refused(why);
            }
            put(&mut tags, name, value);
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

/// A job named by a series' job labels, with the owner and project found for it (empty when
/// none is known).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelJob {
    pub job: String,
    pub owner: String,
    pub project: String,
}

/// What a request becomes: lines of line protocol (ms timestamps), and what was left out.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<OutLine>,
    /// The jobs the request's job labels name, once each, with an owner or a project: the
    /// receiver records them for the runs of their `gpu_job` points ([`super::owners`]).
    pub label_jobs: Vec<Arc<LabelJob>>,
    /// Series refused whole or in part, with why, in request order.
    pub refused: Vec<(u32, String)>,
    pub counts: Counts,
}

/// One line: a series key (measurement and tags, escaped), its fields, a time in ms.
#[derive(Debug)]
pub struct OutLine {
    pub key: Arc<str>,
    pub fields: String,
    pub ts_ms: i64,
}

impl Batch {
    /// The line protocol of the batch, millisecond precision.
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.lines.iter().map(|l| l.key.len() + l.fields.len() + 16).sum());
        for l in &self.lines {
            let _ = writeln!(out, "{} {} {}", l.key, l.fields, l.ts_ms);
        }
        out
    }
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

/// Decides, for a `gpu` point of a node, whether the collector already reports that node; and
/// says which XID code a GPU's newest stored `gpu_event` holds.
pub trait GpuOwners {
    fn collector_reports(&mut self, node: &str) -> bool;

    /// The `xid` of the newest `gpu_event` stored with `tags`, if any: a receiver that
    /// restarts does not take dcgm-exporter's unchanged gauge for a new XID.
    fn newest_xid(&mut self, _tags: &[(String, String)]) -> Option<f64> {
        None
    }
}

/// A series' mapping with its line-protocol keys written once: a sender repeats the same series
/// in every request, so the rules run once per series, not once per sample.
#[derive(Debug)]
enum Mapped {
    Field(MappedField),
    Unmapped,
    Refused(String),
}

#[derive(Debug)]
struct MappedField {
    key: Arc<str>,
    /// For a `gpu` series: its node, and its key when the collector reports that node.
    node: Option<String>,
    shadow_key: Option<Arc<str>>,
    field: String,
    scale: f64,
    integer: bool,
    /// The `gpu_job` key and the job's field text (`job="slurm:42"`), from the job labels.
    job: Option<(Arc<str>, String)>,
    /// That job with its owner, when an owner or a project is known.
    label_job: Option<Arc<LabelJob>>,
    /// For a gauge of the last XID (`gpu_event.xid`): the event's tags. Its samples become an
    /// event each time the code changes to a new non-zero one.
    xid_tags: Option<Vec<(String, String)>>,
}

/// Series remembered, at most (their labels, ~300 bytes each for dcgm-exporter's, plus their
/// keys); past it the memory is emptied and filled again.
const MAX_CACHED: usize = 1 << 18;

/// The mapped series, by their labels.
#[derive(Default)]
pub struct SeriesCache(Mutex<CacheInner>);

#[derive(Default)]
struct CacheInner {
    series: hashbrown::HashMap<Vec<super::proto::Label>, Arc<Mapped>>,
    /// One `Arc` per distinct key, so that the series of one GPU (one per dcgm field) share it
    /// and their values are grouped into one line by the key's address.
    keys: hashbrown::HashSet<Arc<str>>,
    /// The last XID code seen per `gpu_event` key (0: none since the exporter started).
    last_xid: hashbrown::HashMap<Arc<str>, f64>,
}

impl CacheInner {
    fn intern(&mut self, key: Arc<str>) -> Arc<str> {
        match self.keys.get(&key) {
            Some(k) => k.clone(),
            None => {
                self.keys.insert(key.clone());
                key
            }
        }
    }
}

impl Mapper {
    fn mapped(&self, ts: &TimeSeries, cache: &mut CacheInner) -> Arc<Mapped> {
        if let Some(m) = cache.series.get(&ts.labels) {
            return m.clone();
        }
        let m = Arc::new(match self.target(ts) {
            Target::Unmapped => Mapped::Unmapped,
            Target::Refused(why) => Mapped::Refused(why),
            Target::Field { measurement, mut tags, field, scale, integer } if (measurement.as_str(), field.as_str()) == XID => {
                let node = tags.iter().find(|(k, _)| k == "node").map(|(_, v)| v.clone());
                put(&mut tags, SOURCE_TAG.0, SOURCE_TAG.1);
                tags.sort();
                Mapped::Field(MappedField { key: cache.intern(series_key(&measurement, &tags)), node, shadow_key: None, field, scale, integer, job: None, label_job: None, xid_tags: Some(tags) })
            }
            Target::Field { measurement, mut tags, field, scale, integer } => {
                let is_gpu = measurement == "gpu";
                let node = if is_gpu { tags.iter().find(|(k, _)| k == "node").map(|(_, v)| v.clone()) } else { None };
                let shadow_key = is_gpu.then(|| cache.intern(series_key(SHADOW_MEASUREMENT, &tags)));
                let label_job = if is_gpu { self.label_job(ts) } else { None };
                let job = label_job.as_ref().map(|lj| &lj.job).map(|j| (cache.intern(series_key(kilowatch_model::metric::GPU_JOB, &tags)), format!("job=\"{}\"", j.replace('\\', "\\\\").replace('"', "\\\""))));
                let label_job = label_job.filter(|lj| !lj.owner.is_empty() || !lj.project.is_empty()).map(Arc::new);
                if is_gpu {
                    put(&mut tags, SOURCE_TAG.0, SOURCE_TAG.1);
                    tags.sort();
                }
                Mapped::Field(MappedField { key: cache.intern(series_key(&measurement, &tags)), node, shadow_key, field, scale, integer, job, label_job, xid_tags: None })
            }
        });
        // A refused series is not remembered: its labels may be the 1 MB that refused it.
        if matches!(*m, Mapped::Refused(_)) {
            return m;
        }
        if cache.series.len() >= MAX_CACHED {
            cache.series.clear();
            cache.keys.clear();
            cache.last_xid.clear();
        }
        cache.series.insert(ts.labels.clone(), m.clone());
        m
    }
}

/// `measurement,k=v,…` escaped for line protocol (tags sorted by the caller).
fn series_key(measurement: &str, tags: &[(String, String)]) -> Arc<str> {
    let esc = |s: &str, special: &[char]| -> String {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            if special.contains(&c) {
                o.push('\\');
            }
            o.push(c);
        }
        o
    };
    let mut k = esc(measurement, &[',', ' ']);
    for (t, v) in tags {
        k.push(',');
        k.push_str(&esc(t, &[',', '=', ' ']));
        k.push('=');
        k.push_str(&esc(v, &[',', '=', ' ']));
    }
    Arc::from(k)
}

/// Maps every series of `req` and groups the values of one thing at one time into one line.
pub fn build(req: &WriteRequest, mapper: &Mapper, cache: &SeriesCache, owners: &mut dyn GpuOwners) -> Batch {
    let mut b = Batch::default();
    let mut at: hashbrown::HashMap<(*const u8, i64), usize> = hashbrown::HashMap::new();
    let mut cache = match cache.0.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    for (i, ts) in req.timeseries.iter().enumerate() {
        let i = i as u32;
        let n = ts.samples.len() as u64;
        let mapped = mapper.mapped(ts, &mut cache);
        let m = match &*mapped {
            Mapped::Field(m) => m,
            Mapped::Unmapped => {
                b.counts.unmapped += n;
                continue;
            }
            Mapped::Refused(why) => {
                b.counts.refused += n;
                b.refused.push((i, format!("{}: {why}", ts.describe(DESCRIBE_BYTES))));
                continue;
            }
        };
        let shadowed = m.node.as_deref().is_some_and(|node| owners.collector_reports(node));
        if let Some(tags) = &m.xid_tags {
            // The collector writes the XID events of the nodes it reports.
            if shadowed {
                b.counts.shadowed += n;
            } else {
                xid_events(&mut b, &mut at, &mut cache, owners, ts, i, m, tags);
            }
            continue;
        }
        let key = if shadowed { m.shadow_key.as_ref().unwrap_or(&m.key) } else { &m.key };
        // The collector writes its own `gpu_job` points for the nodes it reports.
        let job = if shadowed { None } else { m.job.as_ref() };
        if !shadowed
            && let Some(lj) = &m.label_job
            && !b.label_jobs.iter().any(|k| Arc::ptr_eq(k, lj) || **k == **lj)
        {
            b.label_jobs.push(lj.clone());
        }
        let mut bad: Option<String> = None;
        for s in &ts.samples {
            if s.value.to_bits() == STALE_NAN_BITS {
                b.counts.stale += 1;
                continue;
            }
            let value = s.value * m.scale;
            if !value.is_finite() || s.timestamp.checked_mul(1_000_000).is_none() {
                b.counts.refused += 1;
                bad.get_or_insert_with(|| format!("{}: value {} at {} ms is not a finite number at a representable time", ts.describe(DESCRIBE_BYTES), s.value, s.timestamp));
                continue;
            }
            let idx = line_at(&mut b.lines, &mut at, key, s.timestamp);
            let fields = &mut b.lines[idx].fields;
            // Two rules for one field (an old and a new dcgm name): the first series keeps it.
            if has_field(fields, &m.field) {
                continue;
            }
            if !fields.is_empty() {
                fields.push(',');
            }
            fields.push_str(&m.field);
            fields.push('=');
            if m.integer && value.fract() == 0.0 && value.abs() < 9.0e18 {
                let _ = write!(fields, "{}i", value as i64);
            } else {
                let _ = write!(fields, "{value}");
            }
            if let Some((job_key, job_field)) = job {
                let j = line_at(&mut b.lines, &mut at, job_key, s.timestamp);
                if b.lines[j].fields.is_empty() {
                    b.lines[j].fields.push_str(job_field);
                }
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
    b
}

/// The samples of a gauge of the last XID code: one `gpu_event` (kind "xid") at each change to
/// a new non-zero code. The code before the first sample is the last one remembered, else the
/// newest stored event's.
#[allow(clippy::too_many_arguments)]
fn xid_events(b: &mut Batch, at: &mut hashbrown::HashMap<(*const u8, i64), usize>, cache: &mut CacheInner, owners: &mut dyn GpuOwners, ts: &TimeSeries, i: u32, m: &MappedField, tags: &[(String, String)]) {
    let mut last = match cache.last_xid.get(&m.key) {
        Some(v) => *v,
        None => owners.newest_xid(tags).unwrap_or(0.0),
    };
    let mut bad: Option<String> = None;
    for s in &ts.samples {
        if s.value.to_bits() == STALE_NAN_BITS {
            b.counts.stale += 1;
            continue;
        }
        if !s.value.is_finite() || s.value.fract() != 0.0 || s.value < 0.0 || s.value >= 9.0e18 || s.timestamp.checked_mul(1_000_000).is_none() {
            b.counts.refused += 1;
            bad.get_or_insert_with(|| format!("{}: value {} at {} ms is not an XID code", ts.describe(DESCRIBE_BYTES), s.value, s.timestamp));
            continue;
        }
        b.counts.mapped += 1;
        if s.value != last && s.value != 0.0 {
            let idx = line_at(&mut b.lines, at, &m.key, s.timestamp);
            if b.lines[idx].fields.is_empty() {
                let _ = write!(b.lines[idx].fields, "kind=\"xid\",xid={}i", s.value as i64);
            }
        }
        last = s.value;
    }
    cache.last_xid.insert(m.key.clone(), last);
    if let Some(why) = bad {
        b.refused.push((i, why));
    }
}

/// The index of the line of `key` at `ts_ms`, made if new.
fn line_at(lines: &mut Vec<OutLine>, at: &mut hashbrown::HashMap<(*const u8, i64), usize>, key: &Arc<str>, ts_ms: i64) -> usize {
    *at.entry((key.as_ptr(), ts_ms)).or_insert_with(|| {
        lines.push(OutLine { key: key.clone(), fields: String::new(), ts_ms });
        lines.len() - 1
    })
}

/// Whether `fields` (`a=1,b=2i`) holds field `name`.
fn has_field(fields: &str, name: &str) -> bool {
    fields.split(',').any(|f| f.split_once('=').is_some_and(|(k, _)| k == name))
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
        let mut l = vec![Label::new("__name__", name)];
        l.extend(labels.iter().map(|(k, v)| Label::new(k, v)));
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
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut NoCollector);
        assert_eq!(b.counts, Counts { mapped: 5, ..Counts::default() });
        let text = b.text();
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
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut NoCollector);
        let text = b.text();
        assert!(text.contains("gpu_job,gpu=0,node=dgx-001,site=dc5,uuid=GPU-a job=\"slurm:4242\" 1000\n"), "{text}");
        assert!(text.contains("gpu_job,gpu=1,node=dgx-001,site=dc5,uuid=GPU-b job=\"k8s:mistral-train/train-0\" 1000\n"), "{text}");
        assert_eq!(text.matches("gpu_job").count(), 2, "one gpu_job point per GPU and time: {text}");
        assert_eq!(b.counts.mapped, 3);
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut Collector("dgx-001"));
        assert!(!b.text().contains("gpu_job"), "the collector writes its own");
    }

    #[test]
    fn job_labels_give_owners_from_the_owner_label_or_the_namespace() {
        let k8s: KubernetesConfig = toml::from_str("namespace_owners = [{ namespace = \"mistral-*\", owner = \"mistral-ai/k8s\" }]").expect("k8s");
        let m = mapper("job_owner_label = \"slurm_account\"\n").with_namespace_owners(&k8s);
        let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> { GPU0.iter().copied().chain(extra.iter().copied()).collect() };
        let req = WriteRequest {
            timeseries: vec![
                series("DCGM_FI_DEV_POWER_USAGE", &with(&[("hpc_job", "42"), ("slurm_account", "acme/train")]), &[(1000, 1.0)]),
                series("DCGM_FI_DEV_GPU_TEMP", &with(&[("hpc_job", "42"), ("slurm_account", "acme/train")]), &[(1000, 60.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &with(&[("hpc_job", "43")]), &[(2000, 1.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &with(&[("pod", "p"), ("namespace", "mistral-x")]), &[(3000, 1.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &with(&[("pod", "q"), ("namespace", "other")]), &[(4000, 1.0)]),
            ],
        };
        let b = build(&req, &m, &SeriesCache::default(), &mut NoCollector);
        let got: Vec<(&str, &str, &str)> = b.label_jobs.iter().map(|j| (j.job.as_str(), j.owner.as_str(), j.project.as_str())).collect();
        assert_eq!(got, [("slurm:42", "acme/train", ""), ("k8s:mistral-x/p", "mistral-ai/k8s", "mistral-x"), ("k8s:other/q", "", "other")], "once per job; a Slurm job without the label has nothing to record");
        let b = build(&req, &m, &SeriesCache::default(), &mut Collector("dgx-001"));
        assert!(b.label_jobs.is_empty(), "the collector's node: its own jobs");
    }

    /// The store's newest XID event holds this code.
    struct StoredXid(f64);
    impl GpuOwners for StoredXid {
        fn collector_reports(&mut self, _: &str) -> bool {
            false
        }
        fn newest_xid(&mut self, tags: &[(String, String)]) -> Option<f64> {
            assert!(tags.contains(&("source".into(), "prometheus".into())) && tags.contains(&("gpu".into(), "0".into())), "{tags:?}");
            Some(self.0)
        }
    }

    #[test]
    fn the_last_xid_gauge_becomes_one_event_per_new_code() {
        let gauge = |samples: &[(i64, f64)]| WriteRequest { timeseries: vec![series("DCGM_FI_DEV_XID_ERRORS", GPU0, samples)] };
        let m = mapper("");
        let cache = SeriesCache::default();
        let b = build(&gauge(&[(1000, 0.0), (2000, 0.0), (3000, 79.0), (4000, 79.0)]), &m, &cache, &mut NoCollector);
        assert_eq!(b.text(), "gpu_event,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a kind=\"xid\",xid=79i 3000\n");
        assert_eq!(b.counts.mapped, 4);
        // The next request: still 79 (no event), then 48, back to 0, 48 again.
        let b = build(&gauge(&[(5000, 79.0), (6000, 48.0), (7000, 0.0), (8000, 48.0)]), &m, &cache, &mut NoCollector);
        assert_eq!(b.text(), "gpu_event,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a kind=\"xid\",xid=48i 6000\n\
                              gpu_event,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a kind=\"xid\",xid=48i 8000\n");
        // A restarted receiver: the stored newest event already says 48.
        let b = build(&gauge(&[(9000, 48.0)]), &m, &SeriesCache::default(), &mut StoredXid(48.0));
        assert_eq!(b.text(), "", "dcgm-exporter's unchanged gauge is no new XID");
        let b = build(&gauge(&[(9000, 0.5)]), &m, &SeriesCache::default(), &mut Collector("dgx-001"));
        assert_eq!((b.lines.len(), b.counts.shadowed), (0, 1), "the collector writes its own XIDs");
        let b = build(&gauge(&[(9000, 0.5)]), &m, &SeriesCache::default(), &mut NoCollector);
        assert!(b.refused[0].1.contains("not an XID code"), "{:?}", b.refused);
    }

    #[test]
    fn a_gpu_of_a_node_the_collector_reports_is_kept_apart() {
        let req = WriteRequest { timeseries: vec![series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(1000, 5.0)])] };
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut Collector("dgx-001"));
        assert_eq!(b.text(), "gpu_dcgm,gpu=0,node=dgx-001,site=dc5,uuid=GPU-a energy_mj=5i 1000\n", "no source tag");
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
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut NoCollector);
        assert_eq!((b.counts.mapped, b.counts.stale, b.counts.refused), (1, 1, 1));
        assert_eq!(b.refused.len(), 1);
        assert_eq!(b.refused[0].0, 1);
        assert!(b.refused[0].1.starts_with("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"0\""), "{}", b.refused[0].1);
        assert_eq!(b.lines.len(), 1);
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
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut NoCollector);
        assert_eq!(b.lines.len(), 1);
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
        let b = build(&req, &mapper(cfg), &SeriesCache::default(), &mut NoCollector);
        let text = b.text();
        assert_eq!(text, "meter,meter=grid-a,role=facility,site=dc5 energy_kwh=2.5 1000\nwater,meter=makeup-1,potable=true,site=dc5 volume_m3=4512.3 1000\n");
        assert_eq!(b.counts.unmapped, 1, "the UPS series matches no rule");
        let b = build(&req, &mapper(&format!("unmapped = \"store\"\n{cfg}")), &SeriesCache::default(), &mut NoCollector);
        let text = b.text();
        assert!(text.contains("pm_energy_wh_total,meter=ups-1,role=ups,site=dc5 value=7 1000\n"), "{text}");
    }

    #[test]
    fn an_operator_rule_replaces_the_shipped_one_for_the_same_name() {
        let m = mapper("[[map]]\nmetric = \"DCGM_FI_DEV_POWER_USAGE\"\nmeasurement = \"gpu\"\nfield = \"power_w\"\ntags = { node = \"instance\", gpu = \"gpu\" }\n");
        let Target::Field { tags, .. } = m.target(&series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[])) else { panic!("mapped") };
        assert!(tags.contains(&("node".into(), "10.0.0.1:9400".into())), "{tags:?}");
    }
}
