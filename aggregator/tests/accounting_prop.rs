//! Property: for random job schedules, counter resets and gaps, Σ jobs + idle + unattributed =
//! metered E_IT to 1e-9 relative for every window, E_IT agrees with the KPI, and no energy,
//! water or CO2 figure is ever negative.

use kilowatch_accounting::attribution::attribute;
use kilowatch_accounting::kpi;
use kilowatch_accounting::memory::{ScheduledJob, scheduled_allocations};
use kilowatch_aggregator::adapters::StoreRead;
use kilowatch_aggregator::config::CarbonConfig;
use kilowatch_model::{Point, TimeRange, Timestamp};
use kilowatch_store::Store;
use proptest::prelude::*;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_790_812_800 * S;
const SPAN: i64 = 3 * 3600 * S;

#[derive(Debug, Clone)]
struct Case {
    /// Per series (4 GPUs, 2 nodes, IT, facility): readings as (offset s, increment, reset?, skip?).
    readings: Vec<Vec<(i64, f64, bool, bool)>>,
    jobs: Vec<ScheduledJob>,
    windows: Vec<(i64, i64)>,
}

fn case() -> impl Strategy<Value = Case> {
    let reading = (1i64..900, 0.0f64..5000.0, prop::bool::weighted(0.05), prop::bool::weighted(0.1));
    let series = prop::collection::vec(reading, 5..40);
    let job = (0usize..2, prop::collection::vec(0u32..2, 1..3), 0i64..SPAN / S, prop::option::weighted(0.8, 1i64..4000));
    let window = (0i64..SPAN / S, 1i64..SPAN / S);
    (prop::collection::vec(series, 8), prop::collection::vec(job, 0..8), prop::collection::vec(window, 1..5)).prop_map(|(readings, jobs, windows)| Case { readings, jobs, windows })
}

fn points(c: &Case) -> Vec<Point> {
    let mut pts = Vec::new();
    for (k, rs) in c.readings.iter().enumerate() {
        let mut t = T0 - 60 * S;
        let mut v = 1e6;
        for (i, &(dt, inc, reset, skip)) in rs.iter().enumerate() {
            t += dt * S;
            v = if reset && i > 0 { inc } else { v + inc };
            if skip {
                continue;
            }
            let p = match k {
                0..4 => Point::new("gpu", Timestamp(t)).tag("node", format!("n{}", k / 2)).tag("gpu", (k % 2).to_string()).field("energy_mj", v * 1000.0),
                4..6 => Point::new("node", Timestamp(t)).tag("node", format!("n{}", k - 4)).field("energy_j", v * 3.0),
                6 => Point::new("meter", Timestamp(t)).tag("meter", "ups").tag("role", "it").tag("category", "1").field("energy_kwh", v / 1000.0 * 8.0),
                _ => Point::new("meter", Timestamp(t)).tag("meter", "grid").tag("role", "facility").field("energy_kwh", v / 1000.0 * 10.0),
            };
            pts.push(p);
        }
    }
    pts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn conservation_and_no_negative_energy(c in case()) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        store.write(&points(&c)).expect("write");
        let allocs = scheduled_allocations(&c.jobs, T0);
        for (a, len) in &c.windows {
            let r = TimeRange::new(Timestamp(T0 + a * S), Timestamp(T0 + (a + len) * S));
            let att = attribute(&StoreRead(&store), &allocs, r, None, &CarbonConfig::default()).expect("attribute");
            let sum: f64 = att.jobs.iter().map(|j| j.it_energy_kwh).sum::<f64>() + att.idle_kwh + att.unattributed_kwh;
            let tol = 1e-9 * att.it_energy_kwh.abs().max(1e-6);
            prop_assert!((sum - att.it_energy_kwh).abs() <= tol, "sum {} vs E_IT {}", sum, att.it_energy_kwh);
            let k = kpi::compute(&StoreRead(&store), r, "test").expect("kpi");
            prop_assert!((k.it_energy_kwh - att.it_energy_kwh).abs() <= 1e-9 * k.it_energy_kwh.max(1e-6), "kpi {} vs ledger {}", k.it_energy_kwh, att.it_energy_kwh);
            prop_assert!(att.idle_kwh >= 0.0 && att.it_energy_kwh >= 0.0);
            for j in &att.jobs {
                for v in [j.gpu_energy_kwh, j.it_energy_kwh, j.facility_energy_kwh, j.water_l.unwrap_or(0.0), j.co2_kg] {
                    prop_assert!(v >= 0.0 && v.is_finite(), "negative or non-finite figure in {:?}", j);
                }
                prop_assert!(j.gpu_energy_kwh <= j.it_energy_kwh + 1e-12);
            }
        }
    }
}
