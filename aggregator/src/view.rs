//! The dashboard's window on the store: the aggregator implements the dashboard's
//! `SiteView` trait here, so the dashboard never touches storage itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use kilowatch_dashboard::{Overview, SiteView, ViewError};
use kilowatch_model::Timestamp;
use kilowatch_model::metric::{COOLING, GPU, METER, role};

use crate::kpi;
use crate::store::{SeriesMeta, Store, StoreError, Value};

pub struct StoreView {
    store: Arc<Store>,
    site: String,
}

impl StoreView {
    pub fn new(store: Arc<Store>, site: String) -> Self {
        StoreView { store, site }
    }

    /// Newest value of each matching series, if it is no older than `since`.
    fn recent(&self, measurement: &str, field: &str, since: i64) -> Result<Vec<(SeriesMeta, Value)>, StoreError> {
        let metas = self.store.find_series(measurement, field, &[])?;
        let ids: Vec<_> = metas.iter().map(|m| m.id).collect();
        let latest = self.store.latest(&ids)?;
        Ok(metas
            .into_iter()
            .zip(latest)
            .filter_map(|(m, l)| l.filter(|(t, _)| *t >= since).map(|(_, v)| (m, v)))
            .collect())
    }

    fn build(&self) -> Result<Overview, StoreError> {
        let live = kpi::live_range(&self.store)?;
        let k = kpi::compute(&self.store, live, "live, last 5 min")?;
        let since = live.from.0;
        let meter_power = self.recent(METER, "power_w", since)?;
        let sum_roles = |roles: &[&str], category: Option<u8>| -> Option<f64> {
            let vals: Vec<f64> = meter_power
                .iter()
                .filter(|(m, _)| m.tag("role").is_some_and(|r| roles.contains(&r)))
                .filter(|(m, _)| category.is_none() || m.tag("category").and_then(|c| c.parse().ok()).unwrap_or(1) == category.unwrap_or(1))
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
            data_time: self.store.stats()?.newest_ts.map(|t| Timestamp(t).to_rfc3339()),
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
}

impl SiteView for StoreView {
    fn overview(&self) -> Result<Overview, ViewError> {
        self.build().map_err(|e| ViewError(e.to_string()))
    }
}
