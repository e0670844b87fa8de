//! The series memory: each series' mapping, made once and found again by the series' label
//! bytes as sent, bounded by bytes ([`MAX_CACHED_BYTES`]).

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use super::key::{Key, KeyText};
use super::proto::Series;
use super::rules::{LabelJob, Mapper, SHADOW_MEASUREMENT, SOURCE_TAG, Target, put};
use crate::config::prometheus::XID;

/// A series' mapping with its keys made once: a sender repeats the same series in every
/// request, so the rules run once per series, not once per sample.
#[derive(Debug)]
pub(super) enum Mapped {
    Field(MappedField),
    Unmapped,
    Refused(String),
}

#[derive(Debug)]
pub(super) struct MappedField {
    pub(super) key: Arc<Key>,
    /// For a `gpu` series: its node, and its key when the collector reports that node.
    pub(super) node: Option<Box<str>>,
    pub(super) shadow_key: Option<Arc<Key>>,
    /// The field's number in the mapper's field names.
    pub(super) field: u16,
    pub(super) scale: f64,
    pub(super) integer: bool,
    /// The `gpu_job` key and the job (`slurm:42`), from the job labels.
    pub(super) job: Option<(Arc<Key>, Box<str>)>,
    /// That job with its owner, when an owner or a project is known.
    pub(super) label_job: Option<Arc<LabelJob>>,
    /// A gauge of the last XID code (`gpu_event.xid`, the event's tags in `key`): its samples
    /// become an event each time the code changes to a new non-zero one.
    pub(super) xid: bool,
}

impl Mapped {
    /// Bytes it holds besides its keys.
    pub(super) fn bytes(&self) -> usize {
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

/// What a remembered series costs besides its labels: its entry, its table slot and the `Arc`.
pub(super) const ENTRY_BYTES: usize = std::mem::size_of::<(Box<[u8]>, Arc<Mapped>)>() + 24;

/// The mapped series, by their labels' bytes as sent.
#[derive(Default)]
pub struct SeriesCache(Mutex<CacheInner>);

#[derive(Default)]
pub(super) struct CacheInner {
    /// The remembered series (their labels' bytes as sent, and their mappings), in the order
    /// they were first seen. Senders repeat their series in the same order request after
    /// request, so the entry after the previous series' is compared first ([`CacheInner::find`]):
    /// reading the entries in order follows memory, where a table lookup of 100,000 series
    /// missed the CPU cache on every series (13% of the high-cardinality bench's CPU).
    entries: Vec<(Box<[u8]>, Arc<Mapped>)>,
    /// Indices into `entries`, by the hash of their bytes: for a series out of that order. (A
    /// `u32` is enough: [`MAX_CACHED_BYTES`] holds far fewer than 4 billion entries.)
    by_identity: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// The entry expected next.
    next: usize,
    /// One `Arc` per distinct key, so that the series of one GPU (one per dcgm field) share it
    /// and their values are grouped into one line by the key's address.
    pub(super) keys: hashbrown::HashSet<Arc<Key>>,
    /// The last XID code seen per `gpu_event` key (0: none since the exporter started).
    pub(super) last_xid: hashbrown::HashMap<Arc<Key>, f64>,
    pub(super) bytes: usize,
}

impl CacheInner {
    /// The mapping of the series whose labels' bytes are `identity`, if remembered.
    fn find(&mut self, identity: &[u8]) -> Option<Arc<Mapped>> {
        if let Some((id, m)) = self.entries.get(self.next)
            && **id == *identity
        {
            self.next += 1;
            return Some(m.clone());
        }
        let entries = &self.entries;
        let i = *self.by_identity.find(self.hasher.hash_one(identity), |&i| *entries[i as usize].0 == *identity)? as usize;
        self.next = i + 1;
        Some(self.entries[i].1.clone())
    }

    fn remember(&mut self, identity: &[u8], m: Arc<Mapped>) {
        self.bytes += identity.len() + ENTRY_BYTES + m.bytes();
        let i = self.entries.len();
        self.entries.push((identity.into(), m));
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.by_identity.insert_unique(hasher.hash_one(identity), i as u32, |&j| hasher.hash_one(&*entries[j as usize].0));
        self.next = i + 1;
    }

    /// Forgets everything (past [`MAX_CACHED_BYTES`]).
    fn clear(&mut self) {
        *self = CacheInner::default();
    }

    pub(super) fn intern(&mut self, measurement: &str, tags: &[(String, String)]) -> Arc<Key> {
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
    /// The memory, for one request at a time (a poisoned lock still holds whole entries: each
    /// is inserted in one step).
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Bytes held, as counted against [`MAX_CACHED_BYTES`].
    pub fn bytes(&self) -> usize {
        self.0.lock().map_or(0, |c| c.bytes)
    }
}

impl Mapper {
    pub(super) fn mapped(&self, ts: &Series<'_, '_>, cache: &mut CacheInner) -> Arc<Mapped> {
        if let Some(m) = ts.identity.and_then(|id| cache.find(id)) {
            return m;
        }
        if cache.bytes >= MAX_CACHED_BYTES {
            cache.clear();
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
            cache.remember(id, m.clone());
        }
        m
    }
}
