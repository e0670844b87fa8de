//! Prometheus series to wire-schema points: which rule of `[prometheus]` maps a series, the
//! tags it gets, and the points of a whole request, grouped as the collector groups its fields
//! (one line per thing and timestamp).

use std::collections::HashMap;
#[cfg(test)]
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use kilowatch_model::{FieldValueRef, Lines, Timestamp};

use super::proto::{Request, STALE_NAN_BITS, Series};
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
    /// Every field name a series can map to, numbered (a line's fields are a bitmap of them).
    field_numbers: HashMap<String, u16>,
    field_names: Arc<[Box<str>]>,
    job_field: u16,
    /// `gpu_event`'s `kind` field, for XID events.
    kind_field: u16,
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
        let mut field_numbers: HashMap<String, u16> = HashMap::new();
        for name in ["job", "value", "kind"].into_iter().chain(rules.iter().map(|r| r.rule.field.as_str())) {
            let n = field_numbers.len() as u16;
            field_numbers.entry(name.to_owned()).or_insert(n);
        }
        let job_field = field_numbers.get("job").copied().unwrap_or_default();
        let kind_field = field_numbers.get("kind").copied().unwrap_or_default();
        let mut names: Vec<(&String, &u16)> = field_numbers.iter().collect();
        names.sort_by_key(|(_, n)| **n);
        let field_names = names.into_iter().map(|(f, _)| f.as_str().into()).collect();
        Mapper {
            rules,
            by_metric,
            site: site.to_owned(),
            unmapped: cfg.unmapped,
            max_name_bytes,
            field_numbers,
            field_names,
            job_field,
            kind_field,
            job_owner_label: cfg.job_owner_label.clone(),
            namespace_owners: KubernetesConfig::default(),
        }
    }

    /// Pods named by job labels take their owner from `[kubernetes] namespace_owners`.
    pub fn with_namespace_owners(mut self, k8s: &KubernetesConfig) -> Mapper {
        self.namespace_owners = k8s.clone();
        self
    }

    /// The job that `ts`' job labels name, with its owner and project where they are known
    /// (see [`job_of`]): the owner label (`job_owner_label`) first; for a pod, else the
    /// namespace's owner; a pod's project is its namespace, as `POST /api/v1/jobs` makes it.
    fn label_job(&self, ts: &Series<'_, '_>) -> Option<LabelJob> {
        let job = job_of(ts)?;
        let labelled = self.job_owner_label.as_deref().and_then(|l| ts.label(l)).filter(|o| !o.is_empty() && o.len() <= self.max_name_bytes && !o.chars().any(char::is_control));
        let namespace = if ts.label("hpc_job").is_some() { None } else { ts.label("namespace") };
        let owner = labelled.or_else(|| namespace.and_then(|ns| self.namespace_owners.owner_of(ns))).unwrap_or_default();
        Some(LabelJob { job, owner: owner.to_owned(), project: namespace.unwrap_or_default().to_owned() })
    }

    /// Kepler's pod series name their job (`k8s:<namespace>/<pod>`): see [`super::kepler`].
    fn pod_job(&self, measurement: &str, tags: &[(String, String)], ts: &Series<'_, '_>) -> Option<LabelJob> {
        let labelled = self.job_owner_label.as_deref().and_then(|l| ts.label(l)).filter(|o| !o.is_empty() && o.len() <= self.max_name_bytes && !o.chars().any(char::is_control));
        (measurement == kilowatch_model::metric::POD).then(|| super::kepler::pod_job(tags, labelled, &self.namespace_owners)).flatten()
    }

    /// The number of field `name` (every rule's field and `value` are numbered at start).
    fn field_number(&self, name: &str) -> u16 {
        self.field_numbers.get(name).copied().unwrap_or(u16::MAX)
    }

    /// The target of `ts`: the first rule whose metric and matchers hold.
    pub fn target(&self, ts: &Series<'_, '_>) -> Target {
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

    fn unmapped(&self, name: &str, ts: &Series<'_, '_>) -> Target {
        if self.unmapped == Unmapped::Drop {
            return Target::Unmapped;
        }
        // Names become the measurement and tag keys as they are: held to what line protocol
        // (the sink, an export) can carry, as their values are.
        if let Err(why) = self.tag_value_ok("__name__", name) {
            return Target::Refused(why);
        }
        let mut tags: Vec<(String, String)> = Vec::with_capacity(ts.labels.len());
        for l in ts.labels.iter().filter(|l| l.name != b"__name__" && !l.value.is_empty()) {
            let (Some(name), Some(value)) = (l.name(), l.value()) else { return Target::Refused("a label is not UTF-8".into()) };
            if name.is_empty() {
                return Target::Refused("a label has an empty name".into());
            }
            if let Err(why) = self.tag_value_ok("name", name).and_then(|()| self.tag_value_ok(name, value)) {
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
fn job_of(ts: &Series<'_, '_>) -> Option<String> {
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

impl LabelJob {
    fn bytes(&self) -> usize {
        std::mem::size_of::<LabelJob>() + self.job.len() + self.owner.len() + self.project.len()
    }
}

/// What a request becomes: the store's lines (one per thing and time, ms timestamps), built
/// without line-protocol text, and what was left out.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<OutLine>,
    /// Every value, in request order: grouped by line in [`Batch::store_lines`].
    values: Vec<Entry>,
    /// The mappings the values name (one per series of the request that has values), which
    /// hold their job strings while the lines borrow them.
    series: Vec<Arc<Mapped>>,
    /// The mapper's field names, by number.
    field_names: Option<Arc<[Box<str>]>>,
    /// The jobs the request's job labels name, once each, with an owner or a project: the
    /// receiver records them for the runs of their `gpu_job` points ([`super::owners`]).
    pub label_jobs: Vec<Arc<LabelJob>>,
    /// Series refused whole or in part, with why, in request order.
    pub refused: Vec<(u32, String)>,
    pub counts: Counts,
}

/// One line: a series key and a time in ms; its values are the batch's entries naming it.
#[derive(Debug)]
pub struct OutLine {
    pub key: Arc<Key>,
    pub ts_ms: i64,
    /// The fields it has, by [`Mapper`] field number (the first [`SEEN_BITS`]): two rules for
    /// one field (an old and a new dcgm name) give it once.
    seen: u128,
}

const SEEN_BITS: u16 = 128;

/// One value of a line.
#[derive(Debug, Clone, Copy)]
struct Entry {
    line: u32,
    /// Index in [`Batch::series`].
    series: u32,
    field: u16,
    value: Num,
}

#[derive(Debug, Clone, Copy)]
enum Num {
    F(f64),
    I(i64),
    /// The series' job string (a `gpu_job` line's `job` field).
    Job,
    /// A string known when compiled (an XID event's `kind`).
    Text(&'static str),
}

/// A series key as the store names it: the line protocol of its measurement and sorted tags.
/// Where nothing needed escaping (nearly always) the text alone is kept and split again into
/// measurement and tags when a line is built; otherwise the parts are kept beside it.
#[derive(Debug)]
pub struct Key {
    text: Box<str>,
    parts: Option<Box<(String, Vec<(String, String)>)>>,
}

impl Key {
    fn new(measurement: &str, tags: &[(String, String)]) -> Key {
        let text = series_key(measurement, tags);
        let parts = text.contains('\\').then(|| Box::new((measurement.to_owned(), tags.to_vec())));
        Key { text: text.into(), parts }
    }

    /// `measurement,k=v,…` escaped as line protocol.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text where it names the series without escapes (the store's cheap lookup key).
    fn plain(&self) -> Option<&str> {
        self.parts.is_none().then_some(&*self.text)
    }

    fn measurement(&self) -> &str {
        match &self.parts {
            Some(p) => &p.0,
            None => self.text.split(',').next().unwrap_or_default(),
        }
    }

    #[inline]
    fn tags(&self) -> impl Iterator<Item = (&str, &str)> {
        let (owned, plain) = match &self.parts {
            Some(p) => (Some(p.1.iter().map(|(k, v)| (k.as_str(), v.as_str()))), None),
            // No escapes: every `,` and `=` is a separator.
            None => (None, Some(self.text.split(',').skip(1).map(|kv| kv.split_once('=').unwrap_or((kv, ""))))),
        };
        owned.into_iter().flatten().chain(plain.into_iter().flatten())
    }

    /// Bytes it holds, for the memory of mapped series.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Key>() + self.text.len() + self.parts.as_ref().map_or(0, |p| 2 * self.text.len() + p.1.len() * std::mem::size_of::<(String, String)>())
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.text.hash(h);
    }
}
impl PartialEq for Key {
    fn eq(&self, o: &Key) -> bool {
        self.text == o.text
    }
}
impl Eq for Key {}

/// A key looked up by its text.
#[derive(Hash)]
struct KeyText<'a>(&'a str);
impl hashbrown::Equivalent<Arc<Key>> for KeyText<'_> {
    fn equivalent(&self, k: &Arc<Key>) -> bool {
        *k.text == *self.0
    }
}

impl Batch {
    /// The store's lines of the batch: each line's values in request order, borrowed from the
    /// batch (nothing is formatted or parsed again).
    pub fn store_lines(&self) -> Lines<'_> {
        // Values grouped by line with a counting sort: lines fill in request order, a GPU's
        // values arriving one series (dcgm field) after the other.
        let mut start = vec![0u32; self.lines.len() + 1];
        for e in &self.values {
            start[e.line as usize + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut next = start.clone();
        let mut order = vec![0u32; self.values.len()];
        for (i, e) in self.values.iter().enumerate() {
            let slot = &mut next[e.line as usize];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        let names: &[Box<str>] = self.field_names.as_deref().unwrap_or_default();
        let mut out = Lines::default();
        for (li, l) in self.lines.iter().enumerate() {
            let values = order[start[li] as usize..start[li + 1] as usize].iter().map(|&i| {
                let e = &self.values[i as usize];
                let name = names.get(e.field as usize).map_or("value", |n| &**n);
                match e.value {
                    Num::F(v) => (name, FieldValueRef::F64(v)),
                    Num::I(v) => (name, FieldValueRef::I64(v)),
                    Num::Job => {
                        let job = match &*self.series[e.series as usize] {
                            Mapped::Field(m) => m.job.as_ref().map_or("", |(_, j)| &**j),
                            _ => "",
                        };
                        (name, FieldValueRef::Str(std::borrow::Cow::Borrowed(job)))
                    }
                    Num::Text(t) => (name, FieldValueRef::Str(std::borrow::Cow::Borrowed(t))),
                }
            });
            let k = &l.key;
            out.push_line(k.plain(), k.measurement(), k.tags(), values, Timestamp(l.ts_ms.saturating_mul(1_000_000)));
        }
        out
    }

    /// The line protocol of the batch, millisecond precision (what the store is given, as text).
    #[cfg(test)]
    pub fn text(&self) -> String {
        let lines = self.store_lines();
        let mut out = String::new();
        for (l, line) in self.lines.iter().zip(lines.iter()) {
            let fields: Vec<String> = line
                .fields()
                .iter()
                .map(|(k, v)| match v {
                    FieldValueRef::I64(i) => format!("{k}={i}i"),
                    FieldValueRef::F64(f) => format!("{k}={f}"),
                    FieldValueRef::Str(s) => format!("{k}=\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
                    other => format!("{k}={other:?}"),
                })
                .collect();
            let _ = writeln!(out, "{} {} {}", l.key.text, fields.join(","), l.ts_ms);
        }
        out
    }

    /// Adds a value to the line of `key` at `ts_ms` unless that line has the field already.
    // Inlined into the per-sample loop, as before it had a second caller (XID events).
    #[inline]
    fn put(&mut self, at: &mut hashbrown::HashMap<(*const Key, i64), u32>, key: &Arc<Key>, ts_ms: i64, series: u32, field: u16, value: Num) -> bool {
        // A GPU's series come one after the other: the last line is the likely one.
        let line = match self.lines.last() {
            Some(l) if Arc::ptr_eq(&l.key, key) && l.ts_ms == ts_ms => (self.lines.len() - 1) as u32,
            _ => {
                let lines = &mut self.lines;
                *at.entry((Arc::as_ptr(key), ts_ms)).or_insert_with(|| {
                    lines.push(OutLine { key: key.clone(), ts_ms, seen: 0 });
                    (lines.len() - 1) as u32
                })
            }
        };
        let l = &mut self.lines[line as usize];
        if field < SEEN_BITS {
            let bit = 1u128 << field;
            if l.seen & bit != 0 {
                return false;
            }
            l.seen |= bit;
        } else if self.values.iter().any(|e| e.line == line && e.field == field) {
            // Past the bitmap (more than 128 distinct fields in the rules): rare, slower.
            return false;
        }
        self.values.push(Entry { line, series, field, value });
        true
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

/// A series' mapping with its keys made once: a sender repeats the same series in every
/// request, so the rules run once per series, not once per sample.
#[derive(Debug)]
enum Mapped {
    Field(MappedField),
    Unmapped,
    Refused(String),
}

#[derive(Debug)]
struct MappedField {
    key: Arc<Key>,
    /// For a `gpu` series: its node, and its key when the collector reports that node.
    node: Option<Box<str>>,
    shadow_key: Option<Arc<Key>>,
    /// The field's number in the mapper's field names.
    field: u16,
    scale: f64,
    integer: bool,
    /// The `gpu_job` key and the job (`slurm:42`), from the job labels.
    job: Option<(Arc<Key>, Box<str>)>,
    /// That job with its owner, when an owner or a project is known.
    label_job: Option<Arc<LabelJob>>,
    /// A gauge of the last XID code (`gpu_event.xid`, the event's tags in `key`): its samples
    /// become an event each time the code changes to a new non-zero one.
    xid: bool,
}

impl Mapped {
    /// Bytes it holds besides its keys.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Mapped>()
            + match self {
                Mapped::Field(m) => m.node.as_ref().map_or(0, |n| n.len()) + m.job.as_ref().map_or(0, |(_, j)| j.len()) + m.label_job.as_ref().map_or(0, |j| j.bytes()),
                _ => 0,
            }
    }
}

/// Bytes the memory of mapped series may hold (their labels as sent, mappings and keys); past
/// it, it is emptied and filled again. 100,000 container series take about 30 MB; a site
/// of 50,000 GPUs' dcgm series more: they are then mapped again every so often, which costs
/// CPU, not memory.
pub const MAX_CACHED_BYTES: usize = 64 << 20;

/// What a remembered series costs besides its labels: its table slot and the `Arc`.
const ENTRY_BYTES: usize = std::mem::size_of::<(Box<[u8]>, Arc<Mapped>)>() + 16;

/// The mapped series, by their labels' bytes as sent.
#[derive(Default)]
pub struct SeriesCache(Mutex<CacheInner>);

#[derive(Default)]
struct CacheInner {
    series: hashbrown::HashMap<Box<[u8]>, Arc<Mapped>>,
    /// One `Arc` per distinct key, so that the series of one GPU (one per dcgm field) share it
    /// and their values are grouped into one line by the key's address.
    keys: hashbrown::HashSet<Arc<Key>>,
    /// The last XID code seen per `gpu_event` key (0: none since the exporter started).
    last_xid: hashbrown::HashMap<Arc<Key>, f64>,
    bytes: usize,
}

impl CacheInner {
    fn intern(&mut self, measurement: &str, tags: &[(String, String)]) -> Arc<Key> {
        let key = Key::new(measurement, tags);
        if let Some(k) = self.keys.get(&KeyText(&key.text)) {
            return k.clone();
        }
        self.bytes += key.bytes() + 16;
        let key = Arc::new(key);
        self.keys.insert(key.clone());
        key
    }
}

impl SeriesCache {
    /// Bytes held, as counted against [`MAX_CACHED_BYTES`].
    pub fn bytes(&self) -> usize {
        self.0.lock().map_or(0, |c| c.bytes)
    }
}

impl Mapper {
    fn mapped(&self, ts: &Series<'_, '_>, cache: &mut CacheInner) -> Arc<Mapped> {
        if let Some(m) = ts.identity.and_then(|id| cache.series.get(id)) {
            return m.clone();
        }
        if cache.bytes >= MAX_CACHED_BYTES {
            cache.series = hashbrown::HashMap::new();
            cache.keys = hashbrown::HashSet::new();
            cache.last_xid = hashbrown::HashMap::new();
            cache.bytes = 0;
        }
        let m = Arc::new(match self.target(ts) {
            Target::Unmapped => Mapped::Unmapped,
            Target::Refused(why) => Mapped::Refused(why),
            Target::Field { measurement, mut tags, field, scale, .. } if (measurement.as_str(), field.as_str()) == XID => {
                let node = tags.iter().find(|(k, _)| k == "node").map(|(_, v)| v.as_str().into());
                put(&mut tags, SOURCE_TAG.0, SOURCE_TAG.1);
                tags.sort();
                Mapped::Field(MappedField {
                    key: cache.intern(&measurement, &tags),
                    node,
                    shadow_key: None,
                    field: self.field_number(&field),
                    scale,
                    integer: true,
                    job: None,
                    label_job: None,
                    xid: true,
                })
            }
            Target::Field { measurement, mut tags, field, scale, integer } => {
                let is_gpu = measurement == "gpu";
                let node = if is_gpu { tags.iter().find(|(k, _)| k == "node").map(|(_, v)| v.as_str().into()) } else { None };
                let shadow_key = is_gpu.then(|| cache.intern(SHADOW_MEASUREMENT, &tags));
                let label_job = if is_gpu { self.label_job(ts) } else { self.pod_job(&measurement, &tags, ts) };
                let job = label_job.as_ref().filter(|_| is_gpu).map(|lj| (cache.intern(kilowatch_model::metric::GPU_JOB, &tags), lj.job.as_str().into()));
                let label_job = label_job.filter(|lj| !lj.owner.is_empty() || !lj.project.is_empty()).map(Arc::new);
                if is_gpu {
                    put(&mut tags, SOURCE_TAG.0, SOURCE_TAG.1);
                    tags.sort();
                }
                Mapped::Field(MappedField { key: cache.intern(&measurement, &tags), node, shadow_key, field: self.field_number(&field), scale, integer, job, label_job, xid: false })
            }
        });
        // A refused series is not remembered: its labels may be the 1 MB that refused it.
        if matches!(*m, Mapped::Refused(_)) {
            return m;
        }
        if let Some(id) = ts.identity {
            cache.bytes += id.len() + ENTRY_BYTES + m.bytes();
            cache.series.insert(id.into(), m.clone());
        }
        m
    }
}

/// `measurement,k=v,…` escaped for line protocol (tags sorted by the caller).
fn series_key(measurement: &str, tags: &[(String, String)]) -> String {
    let esc = |o: &mut String, s: &str, special: &[char]| {
        for c in s.chars() {
            if special.contains(&c) {
                o.push('\\');
            }
            o.push(c);
        }
    };
    let mut k = String::with_capacity(measurement.len() + tags.iter().map(|(t, v)| t.len() + v.len() + 2).sum::<usize>());
    esc(&mut k, measurement, &[',', ' ']);
    for (t, v) in tags {
        k.push(',');
        esc(&mut k, t, &[',', '=', ' ']);
        k.push('=');
        esc(&mut k, v, &[',', '=', ' ']);
    }
    k
}

/// Maps every series of `req` and groups the values of one thing at one time into one line.
pub fn build(req: &Request<'_>, mapper: &Mapper, cache: &SeriesCache, owners: &mut dyn GpuOwners) -> Batch {
    let mut b = Batch { field_names: Some(mapper.field_names.clone()), ..Batch::default() };
    b.values.reserve(req.len());
    let mut at: hashbrown::HashMap<(*const Key, i64), u32> = hashbrown::HashMap::with_capacity(req.len());
    // The label jobs already in `b.label_jobs`, by address then by content (the series of one
    // job's GPUs have equal ones).
    let mut seen_jobs: hashbrown::HashSet<*const LabelJob> = hashbrown::HashSet::new();
    let mut cache = match cache.0.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    for (i, ts) in req.series_iter().enumerate() {
        let i = i as u32;
        let n = ts.samples.len() as u64;
        let mapped = mapper.mapped(&ts, &mut cache);
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
        let series = b.series.len() as u32;
        if m.xid {
            // The collector writes the XID events of the nodes it reports.
            if shadowed {
                b.counts.shadowed += n;
            } else {
                xid_events(&mut b, &mut at, &mut cache, owners, &ts, i, m, series, mapper);
                if b.values.last().is_some_and(|e| e.series == series) {
                    b.series.push(mapped.clone());
                }
            }
            continue;
        }
        if !shadowed
            && let Some(lj) = &m.label_job
            && seen_jobs.insert(Arc::as_ptr(lj))
            && !b.label_jobs.iter().any(|k| **k == **lj)
        {
            b.label_jobs.push(lj.clone());
        }
        let key = if shadowed { m.shadow_key.as_ref().unwrap_or(&m.key) } else { &m.key };
        // The collector writes its own `gpu_job` points for the nodes it reports.
        let job = if shadowed { None } else { m.job.as_ref() };
        let mut bad: Option<String> = None;
        for s in ts.samples {
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
            // Integers as the collector writes them, within what line protocol keeps exactly.
            let num = if m.integer && value.fract() == 0.0 && value.abs() <= kilowatch_model::lineproto::MAX_EXACT_INTEGER as f64 { Num::I(value as i64) } else { Num::F(value) };
            if !b.put(&mut at, key, s.timestamp, series, m.field, num) {
                continue;
            }
            if let Some((job_key, _)) = job {
                b.put(&mut at, job_key, s.timestamp, series, mapper.job_field, Num::Job);
            }
            if shadowed {
                b.counts.shadowed += 1;
            } else {
                b.counts.mapped += 1;
            }
        }
        if b.values.last().is_some_and(|e| e.series == series) {
            b.series.push(mapped.clone());
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
fn xid_events(
    b: &mut Batch,
    at: &mut hashbrown::HashMap<(*const Key, i64), u32>,
    cache: &mut CacheInner,
    owners: &mut dyn GpuOwners,
    ts: &Series<'_, '_>,
    i: u32,
    m: &MappedField,
    series: u32,
    mapper: &Mapper,
) {
    let mut last = match cache.last_xid.get(&m.key) {
        Some(v) => *v,
        None => {
            let tags: Vec<(String, String)> = m.key.tags().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            owners.newest_xid(&tags).unwrap_or(0.0)
        }
    };
    let mut bad: Option<String> = None;
    for s in ts.samples {
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
        if s.value != last && s.value != 0.0 && b.put(at, &m.key, s.timestamp, series, mapper.kind_field, Num::Text("xid")) {
            b.put(at, &m.key, s.timestamp, series, m.field, Num::I(s.value as i64));
        }
        last = s.value;
    }
    // Bounded with the series: emptied when the series memory is.
    if cache.last_xid.insert(m.key.clone(), last).is_none() {
        cache.bytes += ENTRY_BYTES;
    }
    if let Some(why) = bad {
        b.refused.push((i, why));
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::proto::{Label, Sample, TimeSeries, WriteRequest};
    use super::*;

    /// [`super::build`] of a request as a sender encodes it.
    fn build(req: &WriteRequest, mapper: &Mapper, cache: &SeriesCache, owners: &mut dyn GpuOwners) -> Batch {
        let buf = req.encode_to_vec();
        let r = Request::decode(&buf).expect("decodes");
        super::build(&r, mapper, cache, owners)
    }

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
        assert_eq!(
            got,
            [("slurm:42", "acme/train", ""), ("k8s:mistral-x/p", "mistral-ai/k8s", "mistral-x"), ("k8s:other/q", "", "other")],
            "once per job; a Slurm job without the label has nothing to record"
        );
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
        assert_eq!(
            b.text(),
            "gpu_event,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a kind=\"xid\",xid=48i 6000\n\
                              gpu_event,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a kind=\"xid\",xid=48i 8000\n"
        );
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
        let req =
            WriteRequest { timeseries: vec![series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[(1000, 300.0), (2000, stale)]), series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(1000, f64::NAN)])] };
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
    fn store_lines_carry_raw_tags_and_the_plain_text_only_where_nothing_was_escaped() {
        let req = WriteRequest { timeseries: vec![series("node_power_watts", &[("host", "a b"), ("rack", "r=1")], &[(1000, 1.0)]), series("node_power_watts", &[("host", "c")], &[(1000, 2.0)])] };
        let cache = SeriesCache::default();
        let b = build(&req, &mapper("unmapped = \"store\"\n"), &cache, &mut NoCollector);
        assert!(cache.bytes() > 0, "mapped series are remembered and counted");
        let lines = b.store_lines();
        let l: Vec<_> = lines.iter().collect();
        assert_eq!(l[0].measurement(), "node_power_watts");
        assert_eq!(l[0].tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect::<Vec<_>>(), [("host", "a b"), ("rack", "r=1"), ("site", "dc5")]);
        assert_eq!(l[0].series_text(), None, "escaped text is not the store's lookup key");
        assert_eq!(l[1].tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect::<Vec<_>>(), [("host", "c"), ("site", "dc5")]);
        assert_eq!(l[1].series_text(), Some("node_power_watts,host=c,site=dc5"));
        assert_eq!(l[1].ts(), Timestamp(1_000_000_000));
    }

    #[test]
    fn an_operator_rule_replaces_the_shipped_one_for_the_same_name() {
        let m = mapper("[[map]]\nmetric = \"DCGM_FI_DEV_POWER_USAGE\"\nmeasurement = \"gpu\"\nfield = \"power_w\"\ntags = { node = \"instance\", gpu = \"gpu\" }\n");
        let buf = WriteRequest { timeseries: vec![series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[])] }.encode_to_vec();
        let r = Request::decode(&buf).expect("decodes");
        let Some(ts) = r.series_iter().next() else { panic!("one series") };
        let Target::Field { tags, .. } = m.target(&ts) else { panic!("mapped") };
        assert!(tags.contains(&("node".into(), "10.0.0.1:9400".into())), "{tags:?}");
    }
}
