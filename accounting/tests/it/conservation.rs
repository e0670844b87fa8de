//! Conservation over awkward inputs: for any window, Σ jobs + idle + unattributed = metered
//! E_IT (1e-9 relative), E_IT is the KPI's, and no figure is negative. Inputs: counter resets
//! inside hours, an IT meter that reports power only, meters that start late or stop early
//! (added or retired during the span), jobs open or closed, windows off the hour.

use kilowatch_accounting::attribution::attribute;
use kilowatch_accounting::kpi;
use kilowatch_accounting::memory::{MemoryReader, ScheduledJob, scheduled_allocations};
use kilowatch_accounting::settings::CarbonConfig;
use proptest::prelude::*;

use crate::site::{S, T0, window};

const SPAN_S: i64 = 3 * 3600;

#[derive(Debug, Clone)]
struct Case {
    /// Per series (4 GPUs on 2 nodes, 2 nodes, IT, facility): (step s, increment, reset?).
    readings: Vec<Vec<(i64, f64, bool)>>,
    /// Per series: seconds after the span's start it starts reporting, and before its end it
    /// stops (a meter added or retired).
    lifetimes: Vec<(i64, i64)>,
    it_power_only: bool,
    jobs: Vec<ScheduledJob>,
    windows: Vec<(i64, i64)>,
}

fn case() -> impl Strategy<Value = Case> {
    let reading = (1i64..900, 0.0f64..5000.0, prop::bool::weighted(0.05));
    let lifetime = prop_oneof![3 => Just((0i64, 0i64)), 1 => (0i64..SPAN_S / 2, 0i64..SPAN_S / 2)];
    let job = (0usize..2, prop::collection::vec(0u32..2, 1..3), 0i64..SPAN_S, prop::option::weighted(0.8, 1i64..4000));
    let window = (0i64..SPAN_S, 1i64..SPAN_S);
    (prop::collection::vec(prop::collection::vec(reading, 5..40), 8), prop::collection::vec(lifetime, 8), any::<bool>(), prop::collection::vec(job, 0..8), prop::collection::vec(window, 1..5))
        .prop_map(|(readings, lifetimes, it_power_only, jobs, windows)| Case { readings, lifetimes, it_power_only, jobs, windows })
}

fn site(c: &Case) -> MemoryReader {
    let mut r = MemoryReader::new();
    for (k, rs) in c.readings.iter().enumerate() {
        let (late, early) = c.lifetimes[k];
        let (first, last) = (T0 + late * S, T0 + (SPAN_S - early) * S);
        let mut t = T0 - 60 * S;
        let mut v = 1e6;
        for (i, &(dt, inc, reset)) in rs.iter().enumerate() {
            t += dt * S;
            v = if reset && i > 0 { inc } else { v + inc };
            if t < first || t > last {
                continue;
            }
            match k {
                0..4 => r.push("gpu", "energy_mj", &[("gpu", &(k % 2).to_string()), ("node", &format!("n{}", k / 2))], t, v * 1000.0),
                4..6 => r.push("node", "energy_j", &[("node", &format!("n{}", k - 4))], t, v * 3.0),
                6 if c.it_power_only => r.push("meter", "power_w", &[("category", "1"), ("meter", "ups"), ("role", "it")], t, inc * 10.0),
                6 => r.push("meter", "energy_kwh", &[("category", "1"), ("meter", "ups"), ("role", "it")], t, v / 1000.0 * 8.0),
                _ => r.push("meter", "energy_kwh", &[("meter", "grid"), ("role", "facility")], t, v / 1000.0 * 10.0),
            };
        }
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn jobs_idle_and_unattributed_add_up_to_metered_it(c in case()) {
        let r = site(&c);
        let allocs = scheduled_allocations(&c.jobs, T0);
        for (a, len) in &c.windows {
            let w = window(a * S, (a + len) * S);
            let att = attribute(&r, &allocs, w, None, &CarbonConfig::default()).expect("attribute");
            let sum: f64 = att.jobs.iter().map(|j| j.it_energy_kwh).sum::<f64>() + att.idle_kwh + att.unattributed_kwh;
            let tol = 1e-9 * att.it_energy_kwh.abs().max(1e-6);
            prop_assert!((sum - att.it_energy_kwh).abs() <= tol, "sum {} vs E_IT {}", sum, att.it_energy_kwh);
            let k = kpi::compute(&r, w, "test").expect("kpi");
            prop_assert!((k.it_energy_kwh - att.it_energy_kwh).abs() <= 1e-9 * k.it_energy_kwh.max(1e-6), "kpi {} vs ledger {}", k.it_energy_kwh, att.it_energy_kwh);
            prop_assert!(att.idle_kwh >= 0.0 && att.it_energy_kwh >= 0.0);
            if let Some(p) = k.pue {
                prop_assert!(p >= 1.0, "a PUE below 1 is a fault, never a figure: {}", p);
            }
            for j in &att.jobs {
                for v in [j.gpu_energy_kwh, j.it_energy_kwh, j.facility_energy_kwh, j.water_l.unwrap_or(0.0), j.co2_kg] {
                    prop_assert!(v >= 0.0 && v.is_finite(), "negative or non-finite figure in {:?}", j);
                }
                prop_assert!(j.gpu_energy_kwh <= j.it_energy_kwh + 1e-12);
            }
        }
    }
}
