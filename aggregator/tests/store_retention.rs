//! Retention and roll-ups do not change the accounting: KPIs over whole hours (days, the
//! whole period) are the same, to the bit, before and after the raw samples they were computed
//! from are deleted and only roll-ups remain, and they still equal the simulator's truth.

use kilowatch_aggregator::adapters::StoreRead;
use std::time::Duration;

use kilowatch_accounting::kpi;
use kilowatch_aggregator::demo::backfill;
use kilowatch_model::{TimeRange, Timestamp};
use kilowatch_sim::{SimConfig, Site};
use kilowatch_store::{Retention, Store};

const HOUR: i64 = 3_600_000_000_000;

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("time")
}

fn figures(store: &Store, from: &str, to: &str) -> [Option<f64>; 7] {
    let k = kpi::compute(&StoreRead(store), TimeRange { from: ts(from), to: ts(to) }, "test").expect("kpi");
    [Some(k.facility_energy_kwh), Some(k.it_energy_kwh), k.water_m3, k.pue, k.wue_l_per_kwh, Some(k.co2_location_kg), Some(k.grid_energy_kwh)]
}

#[test]
fn kpis_are_unchanged_when_raw_samples_give_way_to_rollups() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let start = ts("2025-07-14T00:00:00Z");
    let end = ts("2025-07-17T00:30:00Z");
    let mut site = Site::new(SimConfig { start, nodes: 8, ..SimConfig::default() });
    backfill(&store, &mut site, end, Duration::from_secs(60)).expect("backfill");
    let truth = site.truth();
    let windows = [
        ("2025-07-14T00:00:00Z", "2025-07-15T00:00:00Z"),
        ("2025-07-15T00:00:00Z", "2025-07-16T00:00:00Z"),
        ("2025-07-15T22:00:00Z", "2025-07-16T23:00:00Z"),
        ("2025-07-14T00:00:00Z", "2025-07-17T00:00:00Z"),
    ];
    let before: Vec<_> = windows.iter().map(|(a, b)| figures(&store, a, b)).collect();
    // Raw kept 12 h and minute buckets 36 h behind the newest data (00:30 on the 17th): the
    // 14th is read from hour buckets, the 15th from minute buckets, the 16th partly raw.
    let rep = store.maintain(&Retention { raw: 12 * HOUR, minute: 36 * HOUR, hour: None }, i64::MAX).expect("maintain");
    assert_eq!(rep.hours_rolled_up, 72, "{rep:?}");
    let h = store.horizons().expect("horizons");
    assert_eq!(h.raw_from, ts("2025-07-16T12:00:00Z").0);
    assert_eq!(h.minute_from, ts("2025-07-15T12:00:00Z").0);
    let after: Vec<_> = windows.iter().map(|(a, b)| figures(&store, a, b)).collect();
    for ((w, b), a) in windows.iter().zip(&before).zip(&after) {
        assert_eq!(a, b, "window {w:?}: [E_DC, E_IT, water, PUE, WUE, CO2, grid]");
    }
    // The simulator's truth runs to the end of the backfill.
    let whole = figures(&store, "2025-07-14T00:00:00Z", "2025-07-17T00:30:00Z");
    let close = |x: Option<f64>, y: f64| (x.expect("value") - y).abs() <= 1e-6 * y.abs().max(1.0);
    assert!(close(whole[0], truth.facility_kwh), "E_DC {:?} vs truth {}", whole[0], truth.facility_kwh);
    assert!(close(whole[1], truth.it_kwh), "E_IT {:?} vs truth {}", whole[1], truth.it_kwh);
}
