//! The store as PromQL sees it: a series (measurement, field, tags) is named
//! `{measurement}_{field}` (`gpu_power_w`), or `{measurement}` alone when its field is `value`
//! (series that came in by remote write keep their Prometheus names), and its tags are its
//! labels. Text and boolean readings are not samples.

use std::sync::Arc;

use kilowatch_query::{Labels, MatchOp, Matcher, NAME_LABEL, Selection, SeriesSource, SourceError, SourceSeries};
use kilowatch_store::rollup::Level;
use kilowatch_store::{Horizons, SeriesId, SeriesMeta, Store};

use crate::tenant::OwnerScope;

const NS_PER_MS: i64 = 1_000_000;

/// The field whose series keep the measurement's name alone.
const PLAIN_FIELD: &str = "value";

/// The store, seen by one caller: a tenant-scoped token sees only series whose `owner` label
/// its globs allow.
pub struct StoreSource {
    pub store: Arc<Store>,
    pub scope: Option<Arc<OwnerScope>>,
}

/// A series' PromQL name.
pub fn metric_name(measurement: &str, field: &str) -> String {
    if field == PLAIN_FIELD { measurement.to_owned() } else { format!("{measurement}_{field}") }
}

/// A series' labels: its tags and its name.
pub fn labels_of(m: &SeriesMeta) -> Labels {
    let mut l: Labels = m.tags.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    l.insert(NAME_LABEL.to_owned(), metric_name(&m.measurement, &m.field));
    l
}

fn label<'a>(m: &'a SeriesMeta, name: &str) -> &'a str {
    m.tag(name).unwrap_or("")
}

impl StoreSource {
    fn visible(&self, m: &SeriesMeta) -> bool {
        self.scope.as_ref().is_none_or(|s| s.allows(label(m, "owner")))
    }

    /// The series every matcher accepts. An exact name is looked up by each way it splits into
    /// a measurement and a field; anything else looks through every series.
    pub fn matching(&self, matchers: &[Matcher]) -> Result<Vec<(SeriesMeta, Labels)>, SourceError> {
        let err = store_error;
        let accepts = |m: &SeriesMeta| -> bool {
            self.visible(m) && matchers.iter().all(|x| if x.name == NAME_LABEL { x.is_match(&metric_name(&m.measurement, &m.field)) } else { x.is_match(label(m, &x.name)) })
        };
        let name = matchers.iter().find(|x| x.name == NAME_LABEL && x.op == MatchOp::Equal).map(|x| x.value.clone());
        let found = match name {
            Some(name) => {
                let mut splits = vec![(name.clone(), PLAIN_FIELD.to_owned())];
                splits.extend(name.match_indices('_').map(|(i, _)| (name[..i].to_owned(), name[i + 1..].to_owned())));
                let mut out = Vec::new();
                for (measurement, field) in splits {
                    if field.is_empty() || measurement.is_empty() {
                        continue;
                    }
                    out.extend(self.store.find_series(&measurement, &field, &[]).map_err(err)?.into_iter().filter(|m| accepts(m)));
                }
                out
            }
            None => self.store.series_where(accepts).map_err(err)?,
        };
        Ok(found
            .into_iter()
            .map(|m| {
                let l = labels_of(&m);
                (m, l)
            })
            .collect())
    }

    /// A series' numeric samples in `[from, to]` (ns) older than the raw retention: one per
    /// roll-up bucket (its last reading, a real sample), with a warning that says so.
    fn rollup_samples(&self, m: &SeriesMeta, h: &Horizons, from: i64, to: i64, out: &mut Vec<(i64, f64)>, warnings: &mut Vec<String>) -> Result<(), kilowatch_store::StoreError> {
        let end = to.min(h.raw_from.saturating_sub(1));
        for (level, level_from, word) in [(Level::Hour, h.hour_from, "hour"), (Level::Minute, h.minute_from, "minute")] {
            let a = if level == Level::Hour { from } else { from.max(h.minute_from) };
            let b = if level == Level::Hour { end.min(h.minute_from.saturating_sub(1)) } else { end };
            if a > b || b < level_from {
                continue;
            }
            let buckets = self.store.read_rollups(m.id, level, a.saturating_sub(level.step()), b + 1)?;
            let mut any = false;
            for bk in buckets {
                if let Some((ts, v)) = bk.last
                    && (a..=b).contains(&ts)
                {
                    push(out, ts, v.as_f64());
                    any = true;
                }
            }
            if any {
                let w = format!("samples older than the raw retention are read from {word} roll-ups: one sample per {word} (each {word}'s last reading)");
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
        }
        Ok(())
    }
}

fn store_error(e: kilowatch_store::StoreError) -> SourceError {
    SourceError(e.to_string())
}

/// Adds a sample (ns) as PromQL's (ms): Prometheus keeps one sample per millisecond, the newest.
fn push(out: &mut Vec<(i64, f64)>, ns: i64, v: Option<f64>) {
    let Some(v) = v else { return };
    let ms = ns.div_euclid(NS_PER_MS);
    match out.last_mut() {
        Some(last) if last.0 == ms => last.1 = v,
        _ => out.push((ms, v)),
    }
}

impl SeriesSource for StoreSource {
    fn select(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Result<Selection, SourceError> {
        let (from, to) = (from_ms.saturating_mul(NS_PER_MS), to_ms.saturating_mul(NS_PER_MS) + NS_PER_MS - 1);
        let mut sel = Selection::default();
        let found = self.matching(matchers)?;
        // Roll-ups and raw samples as of one set of horizons while maintenance moves them
        // (`Store::read_consistent`): a read done again keeps only the last try's samples and
        // warnings, so no sample is seen in neither place nor in both.
        let samples = self
            .store
            .read_consistent(|h| {
                sel.warnings.clear();
                let mut samples: Vec<Vec<(i64, f64)>> = vec![Vec::new(); found.len()];
                if from < h.raw_from {
                    for ((m, _), out) in found.iter().zip(&mut samples) {
                        self.rollup_samples(m, &h, from, to, out, &mut sel.warnings)?;
                    }
                }
                let ids: Vec<SeriesId> = found.iter().map(|(m, _)| m.id).collect();
                if from >= h.raw_from {
                    // Every matching series in one read of the store, numbers only and only
                    // the window's blobs.
                    self.store.read_many_numeric(&ids, from, to, |i, pieces| {
                        let out = &mut samples[i];
                        out.reserve(pieces.iter().map(|p| p.len()).sum());
                        for &(ts, v) in pieces.iter().flat_map(|p| p.iter()) {
                            push(out, ts, Some(v));
                        }
                    })?;
                } else if to >= h.raw_from {
                    // Roll-ups before the window's raw part: the general read, whose left
                    // neighbour may fall inside the window.
                    self.store.read_many_with_neighbours(&ids, from.max(h.raw_from), to, |i, read| {
                        let out = &mut samples[i];
                        out.reserve(read.len());
                        for (ts, v) in read {
                            if (from..=to).contains(&ts) {
                                push(out, ts, v.as_f64());
                            }
                        }
                    })?;
                }
                Ok(samples)
            })
            .map_err(store_error)?;
        for ((_, labels), samples) in found.into_iter().zip(samples) {
            if !samples.is_empty() {
                sel.series.push(SourceSeries { labels, samples });
            }
        }
        Ok(sel)
    }

    fn series(&self, matchers: &[Matcher]) -> Result<Vec<Labels>, SourceError> {
        Ok(self.matching(matchers)?.into_iter().map(|(_, l)| l).collect())
    }
}
