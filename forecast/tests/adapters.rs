//! Each adapter reads its provider's documented answer, its error answer, and a stale answer
//! makes the forecast stale and the advice refuse. The fixtures under tests/fixtures follow the
//! providers' documented formats (see docs/forecast.md); no network.

use kilowatch_forecast::advice::{Request, Weight, advise};
use kilowatch_forecast::forecast::{Inputs, build};
use kilowatch_forecast::inputs::{ElectricityMaps, Entsoe, MeteoFrance, OpenMeteo, Parsed, Provider, ProviderError, RteEco2mix, Series};
use kilowatch_forecast::model::{FitOptions, HourRecord, ModelState, fit};

/// 2026-07-01T00:00:00Z, the fixtures' first forecast hour.
const T0: i64 = 1_782_864_000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn open_meteo() -> OpenMeteo {
    OpenMeteo { url: "http://127.0.0.1:9/v1/forecast".into(), latitude: 48.86, longitude: 2.34, api_key: None }
}

fn weather(p: Result<Parsed, ProviderError>) -> Series<kilowatch_forecast::inputs::Air> {
    match p {
        Ok(Parsed::Weather(s)) => s,
        other => panic!("weather expected: {other:?}"),
    }
}

fn carbon(p: Result<Parsed, ProviderError>) -> Series<f64> {
    match p {
        Ok(Parsed::Carbon(s)) => s,
        other => panic!("carbon expected: {other:?}"),
    }
}

#[test]
fn open_meteo_reads_hours_and_its_error() {
    let p = open_meteo();
    assert!(p.request(T0).url.contains("hourly=temperature_2m,relative_humidity_2m"));
    let s = weather(p.parse(200, &fixture("open-meteo.json"), T0 + 600));
    assert_eq!(s.hours.len(), 72);
    assert_eq!(s.hours[0].0, T0);
    let a = s.at(T0 + 15 * 3600).expect("15:00");
    assert!((a.dry_bulb_c - 30.0).abs() < 0.1, "{a:?}");
    // 30 °C at 45 % RH: wet bulb about 21 °C.
    assert!((a.wet_bulb_c - 21.0).abs() < 1.0, "{a:?}");
    match p.parse(400, &fixture("open-meteo-error.json"), T0) {
        Err(ProviderError::Refused { status: 400, message, .. }) => assert!(message.contains("tempeture_2m"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(p.parse(200, "<html>", T0), Err(ProviderError::Format { .. })));
}

#[test]
fn meteo_france_reads_hours() {
    let p = MeteoFrance { url: "http://127.0.0.1:9/forecast".into(), latitude: 48.86, longitude: 2.34, token: None };
    let s = weather(p.parse(200, &fixture("meteo-france.json"), T0 + 600));
    assert_eq!((s.hours.len(), s.hours[0].0, s.issued_s), (48, T0, T0 - 1800));
    assert!((s.hours[15].1.dry_bulb_c - 30.0).abs() < 0.1);
    assert!(matches!(p.parse(503, "{\"code\":503,\"message\":\"Service unavailable\"}", T0), Err(ProviderError::Refused { status: 503, .. })));
}

#[test]
fn electricity_maps_reads_the_forecast_and_its_error() {
    let p = ElectricityMaps { url: "http://127.0.0.1:9/v3/carbon-intensity/forecast".into(), zone: "FR".into(), token: Some("t".into()) };
    assert_eq!(p.request(T0).headers, vec![("auth-token".to_string(), "t".to_string())]);
    // Issue 29 item 14: the whole horizon, not the API's default 24 hours.
    assert!(p.request(T0).url.ends_with("?zone=FR&horizonHours=72"), "{}", p.request(T0).url);
    let s = carbon(p.parse(200, &fixture("electricity-maps.json"), T0 + 3600));
    assert_eq!((s.hours.len(), s.ahead, s.issued_s), (72, true, T0 + 751));
    // The evening peak is about three times the night.
    let (lo, hi) = s.hours.iter().fold((f64::MAX, f64::MIN), |(a, b), h| (a.min(h.1), b.max(h.1)));
    assert!(hi / lo > 2.0, "{lo} {hi}");
    match p.parse(401, &fixture("electricity-maps-error.json"), T0) {
        Err(ProviderError::Refused { status: 401, message, .. }) => assert!(message.contains("auth-token"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rte_eco2mix_averages_quarter_hours_into_an_observed_profile() {
    let p = RteEco2mix { url: "http://127.0.0.1:9/records".into() };
    let s = carbon(p.parse(200, &fixture("rte-eco2mix.json"), T0));
    assert_eq!((s.hours.len(), s.ahead), (24, false));
    assert_eq!(s.hours.last().map(|h| h.0), Some(T0 - 3600));
    assert_eq!(s.issued_s, T0);
    match p.parse(400, &fixture("rte-eco2mix-error.json"), T0) {
        Err(ProviderError::Refused { message, .. }) => assert!(message.contains("taux_co22"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn entsoe_turns_the_generation_mix_into_an_intensity_and_reads_its_acknowledgement() {
    let p = Entsoe { url: "http://127.0.0.1:9/api".into(), zone: "10YFR-RTE------C".into(), token: Some("k".into()) };
    assert!(p.request(T0).url.contains("documentType=A75&processType=A16&in_Domain=10YFR-RTE------C&periodStart=202606290000&periodEnd=202607010000"));
    let s = carbon(p.parse(200, &fixture("entsoe-a75.xml"), T0));
    assert_eq!(s.hours.len(), 24);
    // 03:00: 40 GW nuclear (12 g) + 2 GW gas (490 g) → (480 + 980) / 42 = 34.8 g/kWh.
    let night = s.at(T0 - 21 * 3600).expect("03:00");
    assert!((night - 1460.0 / 42.0).abs() < 1e-9, "{night}");
    let evening = s.at(T0 - 5 * 3600).expect("19:00");
    assert!(evening > 2.0 * night, "{evening} vs {night}");
    match p.parse(200, &fixture("entsoe-ack.xml"), T0) {
        Err(ProviderError::Refused { message, .. }) => assert!(message.starts_with("No matching data found"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// Ten days of a plant whose PUE and water follow the outside air.
fn model() -> ModelState {
    let rs: Vec<HourRecord> = (0..240)
        .map(|h| {
            let t = 14.0 + 14.0 * ((h as f64 - 9.0) / 24.0 * std::f64::consts::TAU).sin() + (h / 24) as f64 * 0.3;
            let wb = t - 6.0;
            let pue = 1.12 + 0.004 * (t - 18.0).max(0.0);
            let water = if t > 25.0 { 0.12 * (t - wb) } else { 0.0 };
            HourRecord { t: T0 - 240 * 3600 + h * 3600, it_kwh: 1200.0, facility_kwh: 1200.0 * pue, water_l: Some(1200.0 * water), dry_bulb_c: t, wet_bulb_c: wb, mode: None }
        })
        .collect();
    fit(&rs, &FitOptions::default())
}

#[test]
fn a_stale_forecast_makes_the_advice_say_so() {
    let m = model();
    assert!(matches!(m, ModelState::Ready(_)), "{m:?}");
    let w = weather(open_meteo().parse(200, &fixture("open-meteo.json"), T0 + 600));
    let em = ElectricityMaps { url: String::new(), zone: "FR".into(), token: None };
    let fresh = carbon(em.parse(200, &fixture("electricity-maps.json"), T0 + 600));
    let stale = carbon(em.parse(200, &fixture("electricity-maps-stale.json"), T0 + 600));
    let req = Request { gpus: 64, hours: 6, within_h: 40, weight: Weight::Balanced, kw_per_gpu: 1.275 };
    let inputs = |now_s, carbon| Inputs { site: "dc5", now_s, weather: Some(&w), carbon, configured_g_per_kwh: 56.0, it_kw: 1200.0, stale_after_h: 12.0 };

    // Fresh at 06:00: a forecast of 48 hours, and advice with a start that saves.
    let f = build(&m, &inputs(T0 + 6 * 3600, Some(&fresh)));
    assert!(f.stale.is_none(), "{:?}", f.stale);
    assert_eq!(f.hours.len(), 48);
    let a = advise(&f, &req, chrono_tz::Europe::Paris);
    assert!(a.refused.is_none());
    let best = &a.best[0];
    assert!(best.saves.co2_kg >= 0.0 && best.saves.facility_kwh >= 0.0 && best.saves.water_l.unwrap_or(0.0) >= 0.0, "{best:?}");
    assert!(best.sbatch.starts_with("sbatch --begin=2026-07-0"), "{}", best.sbatch);
    // Issue 29 item 14: on Electricity Maps' 72 hours every hour is a forecast ...
    assert!(a.best.iter().all(|o| o.carbon_not_forecast_h == 0 && o.caveat.is_none()), "{:?}", a.best);
    // ... while éCO2mix's observations are a repeated profile, and the advice says so.
    let observed = carbon(RteEco2mix { url: String::new() }.parse(200, &fixture("rte-eco2mix.json"), T0 + 600));
    let f = build(&m, &inputs(T0 + 6 * 3600, Some(&observed)));
    let a = advise(&f, &req, chrono_tz::Europe::Paris);
    let best = &a.best[0];
    assert_eq!(best.carbon_not_forecast_h, 6, "{best:?}");
    // Each carbon series says what it counts.
    assert_eq!((f.carbon_series_basis.emissions, f.carbon_series_basis.accounting, f.carbon_series_basis.kind), ("direct", "production", "average"));
    let f = build(&m, &inputs(T0 + 6 * 3600, Some(&fresh)));
    assert_eq!((f.carbon_series_basis.emissions, f.carbon_series_basis.accounting), ("life-cycle", "consumption"));
    assert!(best.caveat.as_deref().is_some_and(|c| c.contains("6 of the job's 6 hours") && c.contains("repeated daily profile")), "{best:?}");

    // The grid forecast was issued two days before: stale, and the advice refuses.
    let f = build(&m, &inputs(T0 + 6 * 3600, Some(&stale)));
    let reasons = f.stale.as_ref().expect("stale").reasons.join("; ");
    assert!(reasons.contains("electricity-maps"), "{reasons}");
    let a = advise(&f, &req, chrono_tz::Europe::Paris);
    assert!(a.best.is_empty() && a.refused.as_deref().is_some_and(|r| r.contains("stale")), "{a:?}");

    // The weather forecast fetched 30 hours ago is stale too.
    let f = build(&m, &inputs(T0 + 30 * 3600, Some(&fresh)));
    assert!(f.stale.as_ref().is_some_and(|s| s.reasons.iter().any(|r| r.contains("weather forecast from open-meteo"))), "{:?}", f.stale);
}

#[test]
fn kept_forecasts_are_scored_against_the_ledger() {
    use kilowatch_forecast::forecast::{IssuedHour, score};
    let actual: Vec<HourRecord> = (0..3).map(|h| HourRecord { t: T0 + h * 3600, it_kwh: 1000.0, facility_kwh: 1160.0, water_l: Some(200.0), dry_bulb_c: 20.0, wet_bulb_c: 15.0, mode: None }).collect();
    let kept = |target_s, lead_h, pue| IssuedHour { target_s, lead_h, pue, pue_low: Some(pue - 0.01), pue_high: Some(pue + 0.01), wue: Some(0.3) };
    // Two hours scored (one 0.02 off, outside its interval; one exact), one not yet happened.
    let s = score(&[kept(T0, 1, 1.18), kept(T0 + 3600, 30, 1.16), kept(T0 + 10 * 3600, 2, 1.2)], &actual);
    assert_eq!(s.hours, 2);
    assert!((s.pue_mae.unwrap_or(0.0) - 0.01).abs() < 1e-12, "{s:?}");
    assert!((s.wue_mae.unwrap_or(0.0) - 0.1).abs() < 1e-12, "{s:?}");
    assert_eq!(s.pue_interval_hit, Some(0.5));
    assert_eq!(s.pue_mae_by_lead.map(|m| m.map(|v| (v * 1000.0).round() / 1000.0)), [Some(0.02), None, Some(0.0), None]);
}

/// Issue 29 item 14: a key sends Open-Meteo requests to the customer host with `apikey`, and the
/// provider's relative humidity wins over its own wet bulb (the model was fitted on wet bulbs
/// computed from RH).
#[test]
fn open_meteo_customer_key_and_humidity_before_its_wet_bulb() {
    let cfg: kilowatch_forecast::config::ForecastConfig = toml::from_str("[weather]\nkind = \"open-meteo\"\nlatitude = 48.86\nlongitude = 2.34\ntoken_env = \"OM_KEY\"\n").expect("config");
    let providers = cfg.providers(|v| (v == "OM_KEY").then(|| "k3y".to_string()));
    let url = providers[0].request(T0).url;
    assert!(url.starts_with("https://customer-api.open-meteo.com/v1/forecast?") && url.ends_with("&apikey=k3y"), "{url}");
    let free = toml::from_str::<kilowatch_forecast::config::ForecastConfig>("[weather]\nkind = \"open-meteo\"\nlatitude = 48.86\nlongitude = 2.34\n").expect("config");
    let url = free.providers(|_| None)[0].request(T0).url;
    assert!(url.starts_with("https://api.open-meteo.com/v1/forecast?") && !url.contains("apikey"), "{url}");

    // Both columns at 30 °C: RH 45 % (wet bulb about 21 °C by the model's formula) and a
    // provider wet bulb of 25 °C. The RH one is used.
    let body = r#"{"utc_offset_seconds":0,"hourly":{"time":["2026-07-01T00:00"],"temperature_2m":[30.0],"relative_humidity_2m":[45.0],"wet_bulb_temperature_2m":[25.0]}}"#;
    let s = weather(open_meteo().parse(200, body, T0));
    let a = s.hours[0].1;
    assert!((a.wet_bulb_c - kilowatch_forecast::model::wet_bulb_from_rh(30.0, 45.0)).abs() < 1e-9 && a.wet_bulb_c < 23.0, "{a:?}");
}
