//! The dashboard's window on the store: the aggregator implements the dashboard's
//! `SiteView` trait here, so the dashboard never touches storage itself. Charts get bucketed
//! means (about 300 buckets a window), never raw 1 Hz samples.

use crate::adapters::{StoreRead, store_error};
use std::collections::BTreeMap;
use std::sync::Arc;

use kilowatch_dashboard::{Climate, CoolingUnit, GpuCell, GpuDetail, ModeSpan, Overview, Series, SiteView, ViewError, Water, Window};
use kilowatch_model::Timestamp;
use kilowatch_model::metric::{COOLING, GPU, METER, WATER, role};
use kilowatch_model::psychro::{dew_point_c, wet_bulb_c};
use kilowatch_model::time::NANOS_PER_SEC;

use chrono_tz::Tz;
use kilowatch_accounting::{kpi, meters, periods};
use kilowatch_store::rollup::EnergyKind;
use kilowatch_store::rollup::{Bucket, HOUR, Level, MINUTE};
use kilowatch_store::{SeriesId, SeriesMeta, Store, StoreError, Value};

/// A reading older than this (behind the newest data) marks a GPU silent.
const STALE_NS: i64 = 300 * NANOS_PER_SEC;
/// Points of the envelope scatter per unit: the newest ones.
const ENVELOPE_POINTS: usize = 120;
const DAY: i64 = 86_400 * NANOS_PER_SEC;

pub struct StoreView {
    store: Arc<Store>,
    site: String,
    /// `site.timezone`: daily charts cut at its midnights.
    tz: Tz,
}

/// A window resolved against the newest data: `[from, to)` in ns cut into `step`s. Built only
/// by [`Span::ending`], so `from <= to` even at the ends of time: a sample stamped near the
/// largest timestamp must not make a chart overflow or panic.
#[derive(Clone, Copy)]
struct Span {
    from: i64,
    to: i64,
    step: i64,
}

impl Span {
    /// `span_ns` before the end of the `step` holding `newest`, aligned to `step` so buckets
    /// stay put between refreshes (saturated at the ends of time).
    fn ending(newest: i64, span_ns: i64, step: i64) -> Span {
        let to = newest.div_euclid(step).saturating_add(1).saturating_mul(step);
        Span { from: to.saturating_sub(span_ns), to, step }
    }
    fn buckets(&self) -> usize {
        usize::try_from(self.to.saturating_sub(self.from) / self.step).unwrap_or(0).max(1)
    }
    /// The bucket holding `t` (`usize::MAX` outside the span: no bucket).
    fn index(&self, t: i64) -> usize {
        t.checked_sub(self.from).filter(|d| *d >= 0).and_then(|d| usize::try_from(d / self.step).ok()).unwrap_or(usize::MAX)
    }
    fn at(&self, i: usize) -> i64 {
        i64::try_from(i).unwrap_or(i64::MAX).saturating_mul(self.step).saturating_add(self.from)
    }
    fn ms(&self, i: usize) -> i64 {
        self.at(i) / 1_000_000
    }
}

fn err(e: StoreError) -> ViewError {
    ViewError::Backend(e.to_string())
}

impl StoreView {
    pub fn new(store: Arc<Store>, site: String, tz: Tz) -> Self {
        StoreView { store, site, tz }
    }

    /// "Now" for live views: the newest data, never later than the clock plus the allowed skew.
    fn newest(&self) -> Result<i64, StoreError> {
        self.store.live_now()
    }

    /// The window ending at the newest data.
    fn span(&self, w: Window) -> Result<Span, StoreError> {
        Ok(Span::ending(self.newest()?, w.span_s.saturating_mul(NANOS_PER_SEC), w.step_s.saturating_mul(NANOS_PER_SEC).max(1)))
    }

    /// The series over the span as buckets: roll-ups up to where they end (hour ones when the
    /// span's step is an hour or more, and before the minute ones' horizon), then each raw
    /// reading as a bucket of its own. Charts of weeks thus read a few hundred buckets a series
    /// instead of a reading a second.
    /// Each bucket comes with its width (0 for a raw reading).
    fn pieces(&self, id: SeriesId, s: Span) -> Result<Vec<(Bucket, i64)>, StoreError> {
        // One resolution per instant even while maintenance rolls up or expires (a chart with a
        // 15-hour hole during a backfill's first pass otherwise).
        self.store.read_consistent(|h| self.pieces_at(id, s, h))
    }

    fn pieces_at(&self, id: SeriesId, s: Span, h: kilowatch_store::Horizons) -> Result<Vec<(Bucket, i64)>, StoreError> {
        let rolled = h.rolled_to.unwrap_or(i64::MIN).clamp(s.from, s.to);
        let mut out = Vec::new();
        if s.step >= MINUTE && rolled > s.from {
            let minute_from = if s.step >= HOUR { rolled } else { h.minute_from.clamp(s.from, rolled) };
            if minute_from > s.from {
                out.extend(self.store.read_rollups(id, Level::Hour, s.from, minute_from)?.into_iter().map(|b| (b, HOUR)));
            }
            if rolled > minute_from {
                out.extend(self.store.read_rollups(id, Level::Minute, minute_from, rolled)?.into_iter().map(|b| (b, MINUTE)));
            }
        }
        let raw_from = if s.step >= MINUTE { rolled } else { s.from };
        for (t, v) in self.store.read_with_neighbours(id, raw_from, s.to.saturating_sub(1))? {
            if t >= raw_from && t < s.to {
                let f = v.as_f64().filter(|f| f.is_finite()).unwrap_or(f64::NAN);
                out.push((Bucket { n: 1, min: f, max: f, mean: f, last: Some((t, v)), ..Bucket::empty(t) }, 0));
            }
        }
        Ok(out)
    }

    /// Mean of each bucket's numeric readings; `None` where a bucket holds none.
    fn bucketed(&self, id: SeriesId, s: Span) -> Result<Vec<Option<f64>>, StoreError> {
        let mut sum = vec![0.0; s.buckets()];
        let mut n = vec![0.0; s.buckets()];
        for (b, width) in self.pieces(id, s)? {
            if b.mean.is_finite() {
                // A roll-up wider than the chart's step (hour buckets under a minute step, once
                // the minute ones are expired) fills every chart bucket it spans.
                // A raw reading (width 0) stays in its own bucket: `t - 1` of one stamped at the
                // span's start is outside the span, and it used to fill every bucket.
                let first = s.index(b.t);
                for i in first..=s.index(b.t.saturating_add(width.max(1) - 1)).max(first).min(s.buckets()) {
                    if let (Some(a), Some(c)) = (sum.get_mut(i), n.get_mut(i)) {
                        *a += b.mean * f64::from(b.n);
                        *c += f64::from(b.n);
                    }
                }
            }
        }
        Ok(sum.into_iter().zip(n).map(|(a, c)| (c > 0.0).then(|| a / c)).collect())
    }

    /// Σ over series of their bucket means (a bucket is `None` only when no series has one).
    fn summed(&self, metas: &[&SeriesMeta], s: Span) -> Result<Vec<Option<f64>>, StoreError> {
        let mut out = vec![None; s.buckets()];
        for m in metas {
            for (o, v) in out.iter_mut().zip(self.bucketed(m.id, s)?) {
                if let Some(v) = v {
                    *o = Some(o.unwrap_or(0.0) + v);
                }
            }
        }
        Ok(out)
    }

    /// Mean over series of their bucket means, reading each series once. Outside air is the
    /// same at every unit: this is the mean over the units that reported.
    fn mean_of(&self, metas: &[SeriesMeta], s: Span) -> Result<Vec<Option<f64>>, StoreError> {
        let mut sum = vec![0.0; s.buckets()];
        let mut count = vec![0.0; s.buckets()];
        for m in metas {
            for ((a, c), v) in sum.iter_mut().zip(count.iter_mut()).zip(self.bucketed(m.id, s)?) {
                if let Some(v) = v {
                    *a += v;
                    *c += 1.0;
                }
            }
        }
        Ok(sum.into_iter().zip(count).map(|(a, c)| (c > 0.0).then(|| a / c)).collect())
    }

    /// The mode each bucket spent most readings in, merged into spans.
    fn modes(&self, meta: Option<&SeriesMeta>, s: Span) -> Result<Vec<ModeSpan>, StoreError> {
        let Some(meta) = meta else { return Ok(Vec::new()) };
        let mut counts: Vec<BTreeMap<String, u32>> = vec![BTreeMap::new(); s.buckets()];
        for (b, _) in self.pieces(meta.id, s)? {
            if let Some((_, Value::Text(m))) = b.last
                && let Some(c) = counts.get_mut(s.index(b.t))
            {
                *c.entry(m).or_default() += b.n;
            }
        }
        let mut spans: Vec<ModeSpan> = Vec::new();
        for (i, c) in counts.iter().enumerate() {
            let Some((mode, _)) = c.iter().max_by_key(|(_, n)| **n) else { continue };
            let (from_ms, to_ms) = (s.ms(i), s.ms(i + 1));
            // A mode holds until the next reading: buckets without one (a 15-min backfill under
            // 5-min buckets) belong to the span before them.
            match spans.last_mut() {
                Some(l) if l.mode == *mode => l.to_ms = to_ms,
                Some(l) => {
                    l.to_ms = from_ms;
                    spans.push(ModeSpan { from_ms, to_ms, mode: mode.clone() });
                }
                None => spans.push(ModeSpan { from_ms, to_ms, mode: mode.clone() }),
            }
        }
        Ok(spans)
    }

    fn series(name: &str, unit: &str, s: Span, v: Vec<Option<f64>>) -> Series {
        Series { name: name.into(), unit: unit.into(), points: v.into_iter().enumerate().map(|(i, v)| (s.ms(i), v)).collect() }
    }

    /// Newest value of each matching series, if it is no older than `since`.
    fn recent(&self, measurement: &str, field: &str, since: i64) -> Result<Vec<(SeriesMeta, Value)>, StoreError> {
        let metas = self.store.find_series(measurement, field, &[])?;
        let ids: Vec<_> = metas.iter().map(|m| m.id).collect();
        let latest = self.store.latest(&ids)?;
        Ok(metas.into_iter().zip(latest).filter_map(|(m, l)| l.filter(|(t, _)| *t >= since).map(|(_, v)| (m, v))).collect())
    }

    fn build_overview(&self) -> Result<Overview, StoreError> {
        let live = kpi::live_range(&StoreRead(&self.store)).map_err(store_error)?;
        let k = kpi::compute(&StoreRead(&self.store), live, "live, last 5 min").map_err(store_error)?;
        let since = live.from.0;
        let meter_power = self.recent(METER, "power_w", since)?;
        let sum_roles = |roles: &[&str], category: Option<u8>| -> Option<f64> {
            let vals: Vec<f64> = meter_power
                .iter()
                .filter(|(m, _)| m.tag("role").is_some_and(|r| roles.contains(&r)))
                .filter(|(m, _)| category.is_none() || meters::category(m.tag("category")) == category.unwrap_or(1))
                .filter_map(|(_, v)| v.as_f64())
                .collect();
            (!vals.is_empty()).then(|| vals.iter().sum())
        };
        let mean = |vals: Vec<(SeriesMeta, Value)>| -> Option<f64> {
            let v: Vec<f64> = vals.iter().filter_map(|(_, v)| v.as_f64()).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let mut modes: BTreeMap<String, usize> = BTreeMap::new();
        for (_, v) in self.recent(COOLING, "mode", since)? {
            if let Some(s) = v.as_text() {
                *modes.entry(s.to_owned()).or_default() += 1;
            }
        }
        let gpus = self.recent(GPU, "power_w", since)?;
        Ok(Overview {
            site: self.site.clone(),
            timezone: self.tz.name().to_owned(),
            data_time: self.store.stats()?.newest_ts.map(|t| Timestamp(t.min(live.to.0)).to_rfc3339()),
            pue: k.pue,
            pue_category: k.pue_category,
            window: "live, last 5 min".into(),
            wue_l_per_kwh: k.wue_l_per_kwh,
            facility_power_w: sum_roles(&[role::FACILITY, role::GENERATOR], None),
            it_power_w: sum_roles(&[role::IT], k.pue_category),
            cooling_power_w: sum_roles(&[role::COOLING], None),
            outside_temp_c: mean(self.recent(COOLING, "outside_temp_c", since)?),
            outside_rh_pct: mean(self.recent(COOLING, "outside_rh_pct", since)?),
            supply_temp_c: mean(self.recent(COOLING, "supply_temp_c", since)?),
            cooling_mode: modes.into_iter().max_by_key(|(_, n)| *n).map(|(m, _)| m),
            gpu_count: gpus.len(),
            gpu_power_w: gpus.iter().filter_map(|(_, v)| v.as_f64()).sum(),
            faults: k.data_quality.faults,
        })
    }

    fn build_power(&self, w: Window) -> Result<Vec<Series>, StoreError> {
        let s = self.span(w)?;
        let all = self.store.find_series(METER, "power_w", &[])?;
        // IT at the best category present, as the KPIs take it: mixing would count twice.
        let best = meters::best_category(all.iter().filter(|m| meters::is_it(m.tag("role"))).map(|m| meters::category(m.tag("category"))));
        let mut out = Vec::new();
        for (name, roles) in [("facility", &[role::FACILITY, role::GENERATOR][..]), ("IT", &[role::IT]), ("cooling", &[role::COOLING]), ("losses", &[role::POWER_LOSSES])] {
            let pick: Vec<&SeriesMeta> =
                all.iter().filter(|m| m.tag("role").is_some_and(|r| roles.contains(&r))).filter(|m| name != "IT" || meters::category(m.tag("category")) == best.unwrap_or(1)).collect();
            if !pick.is_empty() {
                out.push(Self::series(name, "W", s, self.summed(&pick, s)?));
            }
        }
        Ok(out)
    }

    fn build_climate(&self, w: Window) -> Result<Climate, StoreError> {
        let s = self.span(w)?;
        let temp = self.store.find_series(COOLING, "outside_temp_c", &[])?;
        let rh = self.store.find_series(COOLING, "outside_rh_pct", &[])?;
        let mut series = Vec::new();
        if !temp.is_empty() {
            series.push(Self::series("outside temperature °C", "°C", s, self.mean_of(&temp, s)?));
        }
        if !rh.is_empty() {
            series.push(Self::series("outside RH %", "%", s, self.mean_of(&rh, s)?));
        }
        let modes = self.store.find_series(COOLING, "mode", &[])?;
        Ok(Climate { series, modes: self.modes(modes.first(), s)? })
    }

    fn build_cooling(&self, w: Window) -> Result<Vec<CoolingUnit>, StoreError> {
        let s = self.span(w)?;
        let newest = self.newest()?;
        let mut out = Vec::new();
        for t_meta in self.store.find_series(COOLING, "supply_temp_c", &[])? {
            let unit = t_meta.tag("unit").unwrap_or("?").to_owned();
            let tags = [("unit", unit.as_str())];
            let rh_meta = self.store.find_series(COOLING, "supply_rh_pct", &tags)?.into_iter().next();
            let mode_meta = self.store.find_series(COOLING, "mode", &tags)?.into_iter().next();
            let temp = self.bucketed(t_meta.id, s)?;
            let rh = match &rh_meta {
                Some(m) => self.bucketed(m.id, s)?,
                None => vec![None; s.buckets()],
            };
            let dew: Vec<Option<f64>> = temp.iter().zip(&rh).map(|(t, h)| dew_point_c((*t)?, (*h)?)).collect();
            let mut envelope: Vec<(f64, f64)> = temp.iter().zip(&dew).filter_map(|(t, d)| Some(((*t)?, (*d)?))).collect();
            envelope.drain(..envelope.len().saturating_sub(ENVELOPE_POINTS));
            let fresh = |m: Option<&SeriesMeta>| -> Result<Option<Value>, StoreError> {
                let Some(m) = m else { return Ok(None) };
                Ok(self.store.latest(&[m.id])?.into_iter().flatten().find(|(t, _)| *t >= newest.saturating_sub(STALE_NS)).map(|(_, v)| v))
            };
            let supply_temp_c = fresh(Some(&t_meta))?.and_then(|v| v.as_f64());
            let supply_rh_pct = fresh(rh_meta.as_ref())?.and_then(|v| v.as_f64());
            out.push(CoolingUnit {
                unit,
                supply_temp_c,
                supply_rh_pct,
                dew_point_c: supply_temp_c.zip(supply_rh_pct).and_then(|(t, h)| dew_point_c(t, h)),
                mode: fresh(mode_meta.as_ref())?.and_then(|v| v.as_text().map(str::to_owned)),
                series: vec![Self::series("supply temperature", "°C", s, temp), Self::series("supply RH", "%", s, rh), Self::series("dew point", "°C", s, dew)],
                envelope,
                modes: self.modes(mode_meta.as_ref(), s)?,
            });
        }
        out.sort_by(|a, b| a.unit.cmp(&b.unit));
        Ok(out)
    }

    /// Water drawn per bucket (L, counter deltas) and the mean outside wet bulb (Stull 2011).
    fn water_at(&self, s: Span) -> Result<Vec<Series>, StoreError> {
        let bounds: Vec<i64> = (0..=s.buckets()).map(|i| s.at(i)).collect();
        let litres = self.litres(&bounds)?;
        let t = self.mean_of(&self.store.find_series(COOLING, "outside_temp_c", &[])?, s)?;
        let h = self.mean_of(&self.store.find_series(COOLING, "outside_rh_pct", &[])?, s)?;
        let wb = t.iter().zip(&h).map(|(t, h)| Some(wet_bulb_c((*t)?, (*h)?))).collect();
        Ok(vec![Self::series("water L", "L", s, litres), Self::series("outside wet bulb °C", "°C", s, wb)])
    }

    /// Water and wet bulb per local day of `site.timezone` (23 and 25 hours on the days the
    /// clocks change), over the `days` days ending with the one holding the newest data. Water
    /// is metered between the local midnights; the wet bulb is the mean of the day's hours.
    fn water_days(&self, newest: i64, days: usize) -> Result<Vec<Series>, StoreError> {
        // A local midnight that does not exist (a few historical zones) falls back to UTC days.
        let day_start = |at: i64| periods::resolve("day", Some(Timestamp(at)), None, None, self.tz, Timestamp(at)).map(|p| p.range.from.0).unwrap_or(at.div_euclid(DAY).saturating_mul(DAY));
        let day_end =
            |at: i64| periods::resolve("day", Some(Timestamp(at)), None, None, self.tz, Timestamp(at)).map(|p| p.range.to.0).unwrap_or(at.div_euclid(DAY).saturating_add(1).saturating_mul(DAY));
        let mut bounds = vec![day_end(newest)];
        while bounds.len() <= days {
            bounds.push(day_start(bounds[bounds.len() - 1].saturating_sub(1)));
        }
        bounds.reverse();
        let litres = self.litres(&bounds)?;
        let (from, to) = (bounds[0], bounds[bounds.len() - 1]);
        let hours = Span::ending(to.saturating_sub(1), to.saturating_sub(from.div_euclid(HOUR).saturating_mul(HOUR)), HOUR);
        let t = self.mean_of(&self.store.find_series(COOLING, "outside_temp_c", &[])?, hours)?;
        let h = self.mean_of(&self.store.find_series(COOLING, "outside_rh_pct", &[])?, hours)?;
        let mut wb = vec![(0.0, 0.0); days];
        for (i, (t, h)) in t.iter().zip(&h).enumerate() {
            let (Some(t), Some(h)) = (t, h) else { continue };
            let d = bounds.partition_point(|b| *b <= hours.at(i)).saturating_sub(1);
            if let Some(w) = wb.get_mut(d) {
                *w = (w.0 + wet_bulb_c(*t, *h), w.1 + 1.0);
            }
        }
        let points = |v: Vec<Option<f64>>| bounds.iter().zip(v).map(|(b, v)| (b / 1_000_000, v)).collect();
        Ok(vec![
            Series { name: "water L".into(), unit: "L".into(), points: points(litres) },
            Series { name: "outside wet bulb °C".into(), unit: "°C".into(), points: points(wb.into_iter().map(|(s, n)| (n > 0.0).then(|| s / n)).collect()) },
        ])
    }

    /// Litres drawn between consecutive `bounds` (ns), summed over the water meters; `None`
    /// where no meter covered any of the interval.
    fn litres(&self, bounds: &[i64]) -> Result<Vec<Option<f64>>, StoreError> {
        let mut litres = vec![None; bounds.len().saturating_sub(1)];
        for m in self.store.find_series(WATER, "volume_m3", &[])? {
            let l = self.store.ledger(m.id, EnergyKind::Counter, bounds)?;
            for ((o, v), c) in litres.iter_mut().zip(&l.values).zip(&l.covered_s) {
                if *c > 0.0 {
                    *o = Some(o.unwrap_or(0.0) + v * 1000.0);
                }
            }
        }
        Ok(litres)
    }

    fn build_water(&self, w: Window) -> Result<Water, StoreError> {
        let base = self.span(w)?;
        let at = |step_s: i64| {
            let step = step_s * NANOS_PER_SEC;
            Span::ending(base.to, w.span_s.max(step_s).saturating_mul(NANOS_PER_SEC).div_euclid(step).saturating_mul(step), step)
        };
        // Every local day the window touches: a 24 h window spans two.
        let days = usize::try_from(w.span_s / 86_400).unwrap_or(1).max(1) + 1;
        Ok(Water { hourly: self.water_at(at(3600))?, daily: self.water_days(base.to.saturating_sub(1), days)? })
    }

    fn build_gpus(&self) -> Result<Vec<GpuCell>, StoreError> {
        let latest: Vec<_> = ["power_w", "temp_margin_c", "util_pct", "throttle_reasons"].into_iter().map(|f| self.store.latest_of(GPU, f).map(|l| (f, l))).collect::<Result<_, _>>()?;
        // A GPU is stale against the newest GPU reading, not against the newest sample of any
        // kind: a series stamped later (a forecast, a meter on another clock) must not turn
        // every GPU grey.
        let newest = latest.first().and_then(|(_, l)| l.iter().filter_map(|(_, s)| s.as_ref().map(|(t, _)| *t)).max()).map_or(self.newest(), Ok)?;
        // The fields of one GPU share their tag map (one Arc per tag set): cells are found by
        // that pointer first, by (node, GPU) only for a field written under other tags. 10,000
        // GPUs took a string key allocated and compared per field and GPU. The maps hash with
        // foldhash: SipHash was a fifth of this page's time at 10,000 GPUs (examples/gpus_cost.rs).
        let gpus = latest.first().map_or(0, |(_, l)| l.len());
        let mut cells: Vec<GpuCell> = Vec::with_capacity(gpus);
        let mut by_tags: hashbrown::HashMap<*const kilowatch_store::Tags, usize> = hashbrown::HashMap::with_capacity(gpus);
        let mut by_name: hashbrown::HashMap<(&str, u32), usize> = hashbrown::HashMap::with_capacity(gpus);
        for (field, list) in &latest {
            for (tags, l) in list {
                let i = match by_tags.get(&Arc::as_ptr(tags)) {
                    Some(i) => *i,
                    None => {
                        let tag = |k: &str| tags.get(k);
                        let (Some(node), Some(gpu)) = (tag("node"), tag("gpu").and_then(|g| g.parse::<u32>().ok())) else { continue };
                        let i = *by_name.entry((node, gpu)).or_insert_with(|| {
                            cells.push(GpuCell { node: node.to_owned(), gpu, stale: true, ..Default::default() });
                            cells.len() - 1
                        });
                        by_tags.insert(Arc::as_ptr(tags), i);
                        if cells[i].uuid.is_none() {
                            cells[i].uuid = tag("uuid").map(str::to_owned);
                        }
                        i
                    }
                };
                let c = &mut cells[i];
                let Some((t, v)) = l else { continue };
                let v = v.as_f64();
                match *field {
                    "power_w" => {
                        c.power_w = v;
                        c.stale = *t < newest.saturating_sub(STALE_NS);
                    }
                    "temp_margin_c" => c.temp_margin_c = v,
                    "util_pct" => c.util_pct = v,
                    _ => c.throttle_reasons = v.map(|x| x as i64).unwrap_or(0),
                }
            }
        }
        cells.sort_unstable_by(|a, b| (a.node.as_str(), a.gpu).cmp(&(b.node.as_str(), b.gpu)));
        Ok(cells)
    }

    fn build_gpu_detail(&self, node: &str, gpu: Option<u32>, w: Window) -> Result<Option<GpuDetail>, StoreError> {
        let s = self.span(w)?;
        let mut power = self.store.find_series(GPU, "power_w", &[("node", node)])?;
        if power.is_empty() {
            return Ok(None);
        }
        power.sort_by_key(|m| m.tag("gpu").and_then(|g| g.parse::<u32>().ok()));
        let mut series = Vec::new();
        match gpu {
            None => {
                for m in &power {
                    series.push(Self::series(&format!("GPU {}", m.tag("gpu").unwrap_or("?")), "W", s, self.bucketed(m.id, s)?));
                }
            }
            Some(g) => {
                let gs = g.to_string();
                let tags = [("node", node), ("gpu", gs.as_str())];
                for (field, name, unit) in [("power_w", "power", "W"), ("temp_margin_c", "temperature margin", "°C"), ("util_pct", "utilization", "%")] {
                    if let Some(m) = self.store.find_series(GPU, field, &tags)?.first() {
                        series.push(Self::series(name, unit, s, self.bucketed(m.id, s)?));
                    }
                }
                if series.is_empty() {
                    return Ok(None);
                }
            }
        }
        Ok(Some(GpuDetail { node: node.to_owned(), gpu, series }))
    }
}

impl SiteView for StoreView {
    fn overview(&self) -> Result<Overview, ViewError> {
        self.build_overview().map_err(err)
    }
    fn power(&self, w: Window) -> Result<Vec<Series>, ViewError> {
        self.build_power(w).map_err(err)
    }
    fn climate(&self, w: Window) -> Result<Climate, ViewError> {
        self.build_climate(w).map_err(err)
    }
    fn cooling(&self, w: Window) -> Result<Vec<CoolingUnit>, ViewError> {
        self.build_cooling(w).map_err(err)
    }
    fn water(&self, w: Window) -> Result<Water, ViewError> {
        self.build_water(w).map_err(err)
    }
    fn gpus(&self) -> Result<Vec<GpuCell>, ViewError> {
        self.build_gpus().map_err(err)
    }
    fn gpu_detail(&self, node: &str, gpu: Option<u32>, w: Window) -> Result<GpuDetail, ViewError> {
        match self.build_gpu_detail(node, gpu, w).map_err(err)? {
            Some(d) => Ok(d),
            None => Err(ViewError::NotFound(match gpu {
                Some(g) => format!("no series for {node} GPU {g}"),
                None => format!("no GPU series for node {node}"),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kilowatch_model::Point;

    const S: i64 = NANOS_PER_SEC;
    const T0: i64 = 1_790_812_800 * S;

    /// Without a skew limit (the demo's store), "now" is the newest sample, here the last
    /// instant there is: every view still answers.
    #[test]
    fn views_answer_with_a_sample_at_the_end_of_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        for t in [T0, i64::MAX - 1, i64::MAX] {
            store
                .write(&[
                    Point::new(METER, Timestamp(t)).tag("meter", "grid").tag("role", role::FACILITY).field("power_w", 1e6),
                    Point::new(COOLING, Timestamp(t)).tag("unit", "cu1").field("supply_temp_c", 20.0).field("supply_rh_pct", 50.0).field("mode", "free"),
                    Point::new(WATER, Timestamp(t)).tag("meter", "w1").field("volume_m3", 10.0),
                    Point::new(GPU, Timestamp(t)).tag("node", "dgx-001").tag("gpu", "0").field("power_w", 500.0),
                ])
                .expect("write");
        }
        let view = StoreView::new(store.clone(), "dc5".into(), chrono_tz::Europe::Paris);
        for w in ["1h", "24h", "30d"].map(|w| Window::parse(w).expect("window")) {
            view.build_power(w).expect("power");
            view.build_climate(w).expect("climate");
            view.build_cooling(w).expect("cooling");
            view.build_water(w).expect("water");
            view.build_gpu_detail("dgx-001", Some(0), w).expect("gpu");
        }
        view.build_gpus().expect("gpus");
        view.build_overview().expect("overview");
    }

    /// Daily water is cut at the site's midnights: in Paris, 25 October 2026 has 25 hours
    /// (the clocks go back), so it draws 25 hours of water, and its neighbours 24.
    #[test]
    fn daily_water_is_cut_at_local_midnights() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        // 1 m3 an hour from 2026-10-23 12:00 UTC to 2026-10-26 22:00 UTC; outside 50 % and
        // a degree warmer each day from 10 °C.
        let pts: Vec<Point> = (0..=82)
            .flat_map(|h| {
                let t = Timestamp((1_792_756_800 + h * 3600) * S);
                [
                    Point::new(WATER, t).tag("meter", "w1").field("volume_m3", h as f64),
                    Point::new(COOLING, t).tag("unit", "cu1").field("outside_temp_c", 10.0 + (h / 24) as f64).field("outside_rh_pct", 50.0),
                ]
            })
            .collect();
        store.write(&pts).expect("write");
        let view = StoreView::new(store, "dc5".into(), chrono_tz::Europe::Paris);
        let days = view.water_days((1_792_756_800 + 82 * 3600) * S, 3).expect("water");
        let water = &days[0].points;
        // Local midnights of 24, 25 and 26 October (CEST, CEST, CET).
        assert_eq!(water.iter().map(|p| p.0 / 1000).collect::<Vec<_>>(), [1_792_792_800, 1_792_879_200, 1_792_969_200]);
        assert_eq!(water[0].1.map(f64::round), Some(24_000.0), "{water:?}");
        assert_eq!(water[1].1.map(f64::round), Some(25_000.0), "the 25-hour day: {water:?}");
        let wb = &days[1].points;
        assert!(wb.iter().all(|p| p.1.is_some_and(|v| v > wet_bulb_c(10.0, 50.0) - 0.01 && v < wet_bulb_c(14.0, 50.0))), "{wb:?}");
        // A day's figures do not depend on how many days are asked for.
        let two = view.water_days((1_792_756_800 + 82 * 3600) * S, 2).expect("water");
        assert_eq!(two[0].points[..], days[0].points[1..], "water");
        assert_eq!(two[1].points[..], days[1].points[1..], "wet bulb");
    }

    #[test]
    fn charts_read_the_same_from_rollups_as_from_raw() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        let mut pts = Vec::new();
        for i in 0..(4 * 3600 + 600) {
            let t = Timestamp(T0 + i * S);
            pts.push(Point::new(METER, t).tag("meter", "grid").tag("role", role::FACILITY).field("power_w", 1_000_000.0 + ((i * 7919) % 1000) as f64));
            pts.push(Point::new(COOLING, t).tag("unit", "cu1").field("mode", if (i / 2000) % 2 == 0 { "free" } else { "evaporative" }));
        }
        for c in pts.chunks(1000) {
            store.write(c).expect("write");
        }
        store.checkpoint().expect("checkpoint");
        let view = StoreView::new(store.clone(), "dc5".into(), chrono_tz::Europe::Paris);
        let windows = ["6h", "24h", "7d"].map(|w| Window::parse(w).expect("window"));
        let before: Vec<_> = windows.iter().map(|w| (view.build_power(*w).expect("power"), view.build_climate(*w).expect("climate").modes)).collect();
        let rep = store.maintain(&kilowatch_store::Retention { raw: HOUR, minute: 8 * HOUR, hour: None }, i64::MAX).expect("maintain");
        assert_eq!(rep.hours_rolled_up, 4);
        assert!(store.horizons().expect("h").raw_from > T0);
        for (w, (power, modes)) in windows.iter().zip(before) {
            let after = view.build_power(*w).expect("power");
            assert_eq!(after.len(), power.len());
            for (a, b) in after[0].points.iter().zip(&power[0].points) {
                assert_eq!(a.0, b.0);
                match (a.1, b.1) {
                    // Means are stored as f32.
                    (Some(x), Some(y)) => assert!((x - y).abs() / y < 1e-6, "{w:?} at {}: {x} vs {y}", a.0),
                    (x, y) => assert_eq!(x.is_some(), y.is_some(), "{w:?} at {}", a.0),
                }
            }
            let after_modes = view.build_climate(*w).expect("climate").modes;
            assert_eq!(after_modes.iter().map(|m| m.mode.clone()).collect::<Vec<_>>(), modes.iter().map(|m| m.mode.clone()).collect::<Vec<_>>(), "{w:?}");
        }
    }
}
