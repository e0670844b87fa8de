//! The worked examples of `DOMAIN.md` (tolerance 1e-9 relative), each over one meter set.

use kilowatch_accounting::attribution::attribute;
use kilowatch_accounting::kpi::{self, Kpi};
use kilowatch_accounting::ledger;
use kilowatch_accounting::memory::MemoryReader;
use kilowatch_accounting::read::{Allocation, EnergyKind, SeriesRead};
use kilowatch_accounting::settings::CarbonConfig;

use crate::site::{H, S, T0, close, counter, hour, water, window};

fn kpi_hour(r: &MemoryReader) -> Kpi {
    kpi::compute(r, window(0, H), "test").expect("kpi")
}

#[test]
fn example_1_pue_is_facility_over_it() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 1_250_000.0);
    hour(&mut r, "ups", "it", &[("category", "1")], 1_000_000.0);
    let k = kpi_hour(&r);
    assert!(close(k.pue.expect("pue"), 1.25), "{k:?}");
    assert_eq!(k.pue_category, Some(1));
    assert!(k.official(&Default::default()), "a fully metered window passes the coverage half of the official rule");
}

#[test]
fn example_2_two_months_divide_sums_not_average_ratios() {
    let mut r = MemoryReader::new();
    counter(&mut r, "grid", "facility", &[], &[(0, 0.0), (H, 1_150_000.0), (2 * H, 650_000.0)]);
    counter(&mut r, "ups", "it", &[], &[(0, 0.0), (H, 1_000_000.0), (2 * H, 500_000.0)]);
    let k = kpi::compute(&r, window(0, 2 * H), "two").expect("kpi");
    assert!(close(k.pue.expect("pue"), 1.2), "{k:?}");
    assert!(close(kpi::pue(1_800_000.0, 1_500_000.0).expect("pue"), 1.2));
}

#[test]
fn example_3_generator_energy_is_in_e_dc_and_reported_apart() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 1_200_000.0);
    hour(&mut r, "gen-1", "generator", &[], 10_000.0);
    hour(&mut r, "ups", "it", &[], 1_000_000.0);
    let k = kpi_hour(&r);
    assert!(close(k.pue.expect("pue"), 1.21), "{k:?}");
    assert!(close(k.generator_energy_kwh, 10_000.0) && close(k.facility_energy_kwh, 1_210_000.0), "{k:?}");
}

#[test]
fn example_4_pue_wue_erf_ref() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 10_000_000.0);
    hour(&mut r, "ups", "it", &[], 8_000_000.0);
    hour(&mut r, "heat", kpi::ROLE_REUSE, &[], 1_500_000.0);
    hour(&mut r, "ppa", kpi::ROLE_RENEWABLE, &[], 6_000_000.0);
    water(&mut r, "makeup-1", true, 100.0, 12_100.0);
    let k = kpi_hour(&r);
    assert!(close(k.pue.expect("pue"), 1.25), "{k:?}");
    assert!(close(k.wue_l_per_kwh.expect("wue"), 1.5), "{k:?}");
    assert!(close(k.erf.expect("erf"), 0.15), "{k:?}");
    assert!(close(k.ref_.expect("ref"), 0.60), "{k:?}");
}

#[test]
fn example_5_wue_from_a_water_totaliser() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 1_160_000.0);
    hour(&mut r, "ups", "it", &[], 1_000_000.0);
    water(&mut r, "makeup-1", true, 4_512.3, 4_726.3);
    let k = kpi_hour(&r);
    // The totaliser's own difference in binary floating point, then the ratio: 1e-9 relative.
    assert!((k.water_m3.expect("water") - 214.0).abs() < 1e-9, "{k:?}");
    assert!((k.wue_l_per_kwh.expect("wue") - 0.214).abs() < 1e-9 * 0.214 + 1e-12, "{k:?}");
    assert_eq!(k.water_potable_m3, k.water_m3);
}

#[test]
fn example_6_co2_and_cue() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 1_250_000.0);
    hour(&mut r, "ups", "it", &[], 1_000_000.0);
    let k = kpi_hour(&r);
    assert!(close(k.co2_location_kg, 70_000.0), "{k:?}");
    assert!(close(k.cue_kg_per_kwh.expect("cue"), 0.070), "{k:?}");
}

#[test]
fn example_7_partial_pue_per_subsystem() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 1_250_000.0);
    hour(&mut r, "ups", "it", &[], 1_000_000.0);
    hour(&mut r, "cooling", "cooling", &[], 100_000.0);
    hour(&mut r, "losses", "power_losses", &[], 120_000.0);
    hour(&mut r, "other", "other", &[], 30_000.0);
    let k = kpi_hour(&r);
    let ppue = |s: &str| k.subsystems[s].ppue.expect("ppue");
    assert!(close(ppue("cooling"), 1.10) && close(ppue("power_losses"), 1.12) && close(ppue("other"), 1.03), "{k:?}");
    assert!(close(1.0 + k.subsystems.values().map(|s| s.ppue.unwrap_or(1.0) - 1.0).sum::<f64>(), k.pue.expect("pue")));
}

#[test]
fn example_8_a_jobs_power_samples_with_the_hours_pue_and_carbon() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 1_250.0);
    hour(&mut r, "ups", "it", &[], 1_000.0);
    let gpu = [("gpu", "0"), ("node", "n1")];
    for (t, w) in [(0, 6_000.0), (60, 9_000.0), (120, 10_000.0), (180, 8_000.0)] {
        r.push("gpu", "power_w", &gpu, T0 + t * S, w);
    }
    let id = r.find_series("gpu", "power_w", &[]).expect("find")[0].id;
    assert!(close(ledger::meter_kwh(&r, id, EnergyKind::Power, &[T0, T0 + 180 * S]).expect("ledger").total(), 1_560_000.0 / 3.6e6));
    let job = Allocation { job: "j".into(), owner: "o".into(), project: String::new(), node: "n1".into(), gpus: vec![0], start: T0, end: Some(T0 + 180 * S), source: "api".into() };
    let att = attribute(&r, &[job], window(0, H), None, &CarbonConfig::default()).expect("attribute");
    let j = &att.jobs[0];
    assert!(close(j.gpu_energy_kwh, 0.433_333_333_333_333_3), "{j:?}");
    assert!(close(j.it_energy_kwh, j.gpu_energy_kwh), "no node reading: IT energy is the GPUs'");
    assert!(close(j.facility_energy_kwh, 0.541_666_666_666_666_6), "{j:?}");
    assert!(close(j.co2_kg * 1000.0, 30.333_333_333_333_33), "{j:?}");
}

#[test]
fn example_9_and_10_trapezoid_and_nvml_counter() {
    let mut r = MemoryReader::new();
    for (t, w) in [(0, 700.0), (10, 700.0), (40, 400.0)] {
        r.push("gpu", "power_w", &[("gpu", "0"), ("node", "n1")], T0 + t * S, w);
    }
    r.push("gpu", "energy_mj", &[("gpu", "1"), ("node", "n1")], T0, 1_000_000_000.0).push("gpu", "energy_mj", &[("gpu", "1"), ("node", "n1")], T0 + 40 * S, 1_025_200_000.0);
    let p = r.find_series("gpu", "power_w", &[]).expect("find")[0].id;
    let c = r.find_series("gpu", "energy_mj", &[]).expect("find")[0].id;
    assert!(close(r.ledger(p, EnergyKind::Power, &[T0, T0 + 40 * S]).expect("ledger").total(), 23_500.0));
    // mJ → J → Wh.
    assert!(close(r.ledger(c, EnergyKind::Counter, &[T0, T0 + 40 * S]).expect("ledger").total() / 1000.0 / 3600.0, 7.0));
}

#[test]
fn example_14_a_power_only_meter_over_an_hour() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 232.0);
    let tags = [("category", "1"), ("meter", "ups"), ("role", "it")];
    for i in 0..=360 {
        r.push("meter", "power_w", &tags, T0 + i * 10 * S, if i % 2 == 0 { 100_000.0 } else { 300_000.0 });
    }
    let k = kpi_hour(&r);
    assert!(close(k.it_energy_kwh, 200.0), "{k:?}");
    assert!(close(k.pue.expect("pue"), 1.16), "{k:?}");
}

#[test]
fn a_pue_below_one_is_a_fault_not_a_figure() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 900.0);
    hour(&mut r, "ups", "it", &[], 1_000.0);
    let k = kpi_hour(&r);
    assert_eq!(k.pue, None);
    assert!(k.data_quality.faults.iter().any(|f| f.contains("below 1")), "{:?}", k.data_quality.faults);
    assert_eq!(kpi::pue(900.0, 1_000.0), None);
    assert_eq!(kpi::pue(1.0, 0.0), None);
}

#[test]
fn e_it_is_taken_at_the_best_category_with_data_never_mixed() {
    let mut r = MemoryReader::new();
    hour(&mut r, "grid", "facility", &[], 1_300.0);
    hour(&mut r, "ups", "it", &[("category", "1")], 1_000.0);
    hour(&mut r, "pdu", "it", &[("category", "2")], 950.0);
    assert_eq!((kpi_hour(&r).pue_category, kpi_hour(&r).it_energy_kwh), (Some(1), 1_000.0));
    // Without the UPS meter, the PDUs' category 2 is the best one present.
    let mut r2 = MemoryReader::new();
    hour(&mut r2, "grid", "facility", &[], 1_300.0);
    hour(&mut r2, "pdu", "it", &[("category", "2")], 950.0);
    hour(&mut r2, "psu", "it", &[("category", "3")], 900.0);
    let k = kpi_hour(&r2);
    assert_eq!((k.pue_category, k.it_energy_kwh), (Some(2), 950.0));
    let site = ledger::site_ledgers(&r2, &[T0, T0 + H]).expect("ledgers");
    assert_eq!((site.it_category, site.it_kwh.clone()), (Some(2), vec![950.0]), "the ledger and the KPI take the same category");
}
