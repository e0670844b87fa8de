//! The compiled `[prometheus]` rules: which rule maps a series, and the measurement, tags and
//! field it gets (or why it is refused).

use std::collections::HashMap;
use std::sync::Arc;

use super::proto::Series;
use crate::config::kubernetes::KubernetesConfig;
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
    pub(super) field_names: Arc<[Box<str>]>,
    pub(super) job_field: u16,
    /// `gpu_event`'s `kind` field, for XID events.
    pub(super) kind_field: u16,
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
    pub(super) fn label_job(&self, ts: &Series<'_, '_>) -> Option<LabelJob> {
        let job = job_of(ts)?;
        let labelled = self.job_owner_label.as_deref().and_then(|l| ts.label(l)).filter(|o| !o.is_empty() && o.len() <= self.max_name_bytes && !o.chars().any(char::is_control));
        let namespace = if ts.label("hpc_job").is_some() { None } else { ts.label("namespace") };
        let owner = labelled.or_else(|| namespace.and_then(|ns| self.namespace_owners.owner_of(ns))).unwrap_or_default();
        Some(LabelJob { job, owner: owner.to_owned(), project: namespace.unwrap_or_default().to_owned() })
    }

    /// Kepler's pod series name their job (`k8s:<namespace>/<pod>`): see [`super::kepler`].
    pub(super) fn pod_job(&self, measurement: &str, tags: &[(String, String)], ts: &Series<'_, '_>) -> Option<LabelJob> {
        let labelled = self.job_owner_label.as_deref().and_then(|l| ts.label(l)).filter(|o| !o.is_empty() && o.len() <= self.max_name_bytes && !o.chars().any(char::is_control));
        (measurement == kilowatch_model::metric::POD).then(|| super::kepler::pod_job(tags, labelled, &self.namespace_owners)).flatten()
    }

    /// The number of field `name` (every rule's field and `value` are numbered at start).
    pub(super) fn field_number(&self, name: &str) -> u16 {
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

pub(super) fn put(tags: &mut Vec<(String, String)>, k: &str, v: &str) {
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
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<LabelJob>() + self.job.len() + self.owner.len() + self.project.len()
    }
}
