//! Every state transition of the engine, driven by a hand-moved clock.

use kilowatch_alerts::engine::{AlertStatus, Engine, EngineState, Sample};
use kilowatch_alerts::rule::RulePack;
use kilowatch_model::{Labels, Timestamp};

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(1_750_000_000 + s)
}

fn sample(metric: &str, labels: &[(&str, &str)], v: f64, ts: Timestamp) -> Sample {
    Sample { metric: metric.into(), labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect::<Labels>(), value: v, ts }
}

fn engine(toml: &str) -> Engine {
    Engine::new(RulePack::parse(toml).expect("pack").rules, EngineState::default())
}

fn status(e: &Engine) -> Vec<AlertStatus> {
    e.alerts().map(|a| a.status).collect()
}

const HOT: &str = r#"
[[rule]]
name = "Hot"
metric = "cooling.supply_temp_c"
match = ['unit="cu-01"']
kind = "threshold"
op = ">"
threshold = 27.0
clear = 26.0
for = "5m"
severity = "warning"
labels = { team = "{{ $labels.unit }}-crew" }
annotations = { summary = "{{ $labels.unit }} at {{ $value }} °C" }
"#;

#[test]
fn inactive_pending_firing_resolved_with_for_and_hysteresis() {
    let mut e = engine(HOT);
    let s = |v: f64, at: i64| vec![sample("cooling.supply_temp_c", &[("unit", "cu-01")], v, t(at)), sample("cooling.supply_temp_c", &[("unit", "cu-02")], 99.0, t(at))];
    assert!(e.evaluate(t(0), &s(25.0, 0)).is_empty(), "inactive stays inactive");
    assert!(status(&e).is_empty(), "cu-02 is not matched");
    assert_eq!(e.evaluate(t(60), &s(27.5, 60)).len(), 1);
    assert_eq!(status(&e), vec![AlertStatus::Pending]);
    // Back under before `for`: pending ends silently.
    e.evaluate(t(120), &s(25.5, 120));
    assert!(status(&e).is_empty(), "pending → inactive");
    e.evaluate(t(180), &s(28.0, 180));
    e.evaluate(t(400), &s(28.0, 400));
    assert_eq!(status(&e), vec![AlertStatus::Pending], "for 5m not yet reached");
    e.evaluate(t(480), &s(28.3, 480));
    assert_eq!(status(&e), vec![AlertStatus::Firing]);
    let a = e.alerts().next().expect("alert");
    assert_eq!(a.annotations["summary"], "cu-01 at 28.30 °C");
    assert_eq!(a.labels["team"], "cu-01-crew");
    assert_eq!(a.labels["alertname"], "Hot");
    let fp = a.fingerprint.clone();
    // Hysteresis: below the threshold but above `clear` keeps it firing.
    e.evaluate(t(540), &s(26.5, 540));
    assert_eq!(status(&e), vec![AlertStatus::Firing]);
    e.evaluate(t(600), &s(25.9, 600));
    assert_eq!(status(&e), vec![AlertStatus::Resolved]);
    let a = e.alerts().next().expect("alert");
    assert_eq!(a.fingerprint, fp, "stable fingerprint");
    assert_eq!(a.history.iter().map(|h| h.to).collect::<Vec<_>>(), vec![AlertStatus::Pending, AlertStatus::Firing, AlertStatus::Resolved]);
    // A new episode starts from pending again.
    e.evaluate(t(660), &s(30.0, 660));
    assert_eq!(status(&e), vec![AlertStatus::Pending]);
}

#[test]
fn vanished_series_resolve_and_resolved_are_forgotten_after_retention() {
    let mut e = engine(&HOT.replace("for = \"5m\"", "for = \"0s\""));
    e.evaluate(t(0), &[sample("cooling.supply_temp_c", &[("unit", "cu-01")], 30.0, t(0))]);
    assert_eq!(status(&e), vec![AlertStatus::Firing], "for 0 fires at once");
    e.evaluate(t(10), &[]);
    assert_eq!(status(&e), vec![AlertStatus::Resolved]);
    e.evaluate(t(10 + 3600), &[]);
    assert!(status(&e).is_empty());
}

#[test]
fn absence_rate_baseline_and_bits() {
    let mut e = engine(
        r#"
[[rule]]
name = "Silent"
metric = "meter.energy_kwh"
kind = "absent"
stale_after = "15m"
[[rule]]
name = "Backwards"
metric = "meter.energy_kwh"
kind = "rate"
op = "<"
threshold = 0.0
[[rule]]
name = "Water"
metric = "derived.daily_water_m3"
kind = "baseline"
baseline = "derived.daily_water_baseline_m3"
factor = 2.0
[[rule]]
name = "Slowdown"
metric = "gpu.throttle_reasons"
kind = "bits_set"
mask = 200
"#,
    );
    let m = |v: f64, ts: i64| sample("meter.energy_kwh", &[("meter", "grid-a")], v, t(ts));
    let names = |e: &Engine| e.alerts().filter(|a| a.status == AlertStatus::Firing).map(|a| a.rule.clone()).collect::<Vec<_>>();
    e.evaluate(t(0), &[m(100.0, 0)]);
    e.evaluate(t(60), &[m(101.0, 60)]);
    assert!(names(&e).is_empty());
    e.evaluate(t(120), &[m(5.0, 120)]);
    assert_eq!(names(&e), vec!["Backwards"]);
    // The same sample again (meter silent): no new rate, verdict kept; 15 min later stale.
    e.evaluate(t(120 + 901), &[m(5.0, 120)]);
    let mut n = names(&e);
    n.sort();
    assert_eq!(n, vec!["Backwards", "Silent"]);
    let w = |v: f64, b: f64| vec![sample("derived.daily_water_m3", &[("band", "10-12")], v, t(0)), sample("derived.daily_water_baseline_m3", &[("band", "10-12")], b, t(0))];
    let mut e2 = engine(
        r#"
[[rule]]
name = "Water"
metric = "derived.daily_water_m3"
kind = "baseline"
baseline = "derived.daily_water_baseline_m3"
factor = 2.0
[[rule]]
name = "Slowdown"
metric = "gpu.throttle_reasons"
kind = "bits_set"
mask = 200
"#,
    );
    e2.evaluate(t(0), &w(150.0, 100.0));
    assert!(names(&e2).is_empty());
    e2.evaluate(t(1), &w(201.0, 100.0));
    assert_eq!(names(&e2), vec!["Water"]);
    e2.evaluate(t(2), &[sample("gpu.throttle_reasons", &[("gpu", "0")], 4.0, t(2))]);
    assert!(names(&e2).is_empty(), "sw power cap (0x4) is not a hardware slowdown");
    e2.evaluate(t(3), &[sample("gpu.throttle_reasons", &[("gpu", "0")], 64.0, t(3))]);
    assert_eq!(names(&e2), vec!["Slowdown"]);
}

#[test]
fn default_pack_parses_and_typos_are_caught() {
    let p = RulePack::parse(kilowatch_alerts::rule::DEFAULT_PACK).expect("default pack");
    assert!(p.rules.len() >= 20, "{}", p.rules.len());
    let e = RulePack::parse("[[rule]]\nname='x'\nmetric='a.b'\nkind='threshold'\nop='>'\nthreshhold=1\n").expect_err("typo");
    assert!(e.contains("threshhold") || e.contains("threshold"), "{e}");
}
