//! dcgm-exporter's gauge of the last XID code (`DCGM_FI_DEV_XID_ERRORS`) as `gpu_event` points:
//! one event each time the code changes to a new non-zero one.

use super::batch::{Batch, Num};
use super::cache::{CacheInner, ENTRY_BYTES, MappedField};
use super::map::{DESCRIBE_BYTES, GpuOwners};
use super::proto::{STALE_NAN_BITS, Series};
use super::rules::Mapper;

/// The samples of a gauge of the last XID code: one `gpu_event` (kind "xid") at each change to
/// a new non-zero code. The code before the first sample is the last one remembered, else the
/// newest stored event's.
#[allow(clippy::too_many_arguments)]
pub(super) fn xid_events(b: &mut Batch, cache: &mut CacheInner, owners: &mut dyn GpuOwners, ts: &Series<'_, '_>, i: u32, m: &MappedField, series: u32, mapper: &Mapper) {
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
        if s.value != last && s.value != 0.0 && b.put(&m.key, s.timestamp, series, mapper.kind_field, Num::Text("xid")) {
            b.put(&m.key, s.timestamp, series, m.field, Num::I(s.value as i64));
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
