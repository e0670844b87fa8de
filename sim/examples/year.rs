//! A calendar year of the whole site at a 15-minute step: annual and monthly PUE (category 1)
//! and WUE from the meter counters, plus the time to generate a month at a 60 s step with all
//! points built. Run in release:
//!
//! ```text
//! cargo run --release -p kilowatch-sim --example year
//! ```

use std::time::Instant;

use chrono::{Datelike, TimeZone, Utc};
use kilowatch_model::Timestamp;
use kilowatch_sim::{Mode, PointBuf, SimConfig, Site, Truth};

fn ts(y: i32, m: u32, d: u32) -> Timestamp {
    Timestamp::from_datetime(Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).single().expect("valid date"))
}

fn kpis(a: &Truth, b: &Truth) -> (f64, f64, f64) {
    let it = b.it_kwh - a.it_kwh;
    ((b.facility_kwh - a.facility_kwh) / it, (b.water_m3 - a.water_m3) * 1000.0 / it, it)
}

fn main() {
    let year = 2025;
    let step = 900;
    let mut site = Site::new(SimConfig { start: ts(year, 1, 1), ..SimConfig::default() });
    let end = ts(year + 1, 1, 1);
    let t0 = Instant::now();
    let mut month_start = site.truth();
    let mut month = 1;
    let mut mode_h = [0.0f64; 4];
    let (mut alloc, mut samples) = (0.0, 0.0);
    let total_gpus = 127.0 * 8.0;
    println!("month   IT MWh   PUE     WUE L/kWh  water m3   min/max outside °C");
    let (mut tmin, mut tmax) = (f64::MAX, f64::MIN);
    // Per UTC day: (truth at start, sum of outside temp, max, min, samples).
    let mut days: Vec<(Truth, Truth, f64, f64, f64)> = Vec::new();
    let (mut day_start, mut d_sum, mut d_max, mut d_min, mut d_n) = (site.truth(), 0.0, f64::MIN, f64::MAX, 0.0);
    let mut t = site.now();
    while t < end {
        t = Timestamp(t.0 + step * 1_000_000_000);
        site.advance_to(t);
        let air = site.outside_air();
        tmin = tmin.min(air.temp_c);
        tmax = tmax.max(air.temp_c);
        let m = match site.cooling_mode() {
            Mode::Mix => 0,
            Mode::Free => 1,
            Mode::Evaporative => 2,
            Mode::Humidify => 3,
        };
        mode_h[m] += step as f64 / 3600.0;
        d_sum += air.temp_c;
        d_max = d_max.max(air.temp_c);
        d_min = d_min.min(air.temp_c);
        d_n += 1.0;
        if t.0.rem_euclid(86_400_000_000_000) == 0 {
            let now = site.truth();
            days.push((day_start, now, d_sum / d_n, d_max, d_min));
            (day_start, d_sum, d_max, d_min, d_n) = (now, 0.0, f64::MIN, f64::MAX, 0.0);
        }
        alloc += site.active_jobs().iter().map(|a| a.gpus.len()).sum::<usize>() as f64 / total_gpus;
        samples += 1.0;
        let dt = t.to_datetime();
        let new_month = if dt.year() > year { 13 } else { dt.month() };
        if new_month != month {
            let now = site.truth();
            let (pue, wue, it) = kpis(&month_start, &now);
            println!("{year}-{month:02}  {:7.1}  {pue:.4}  {wue:.4}     {:8.1}   {tmin:5.1} / {tmax:4.1}", it / 1000.0, now.water_m3 - month_start.water_m3);
            month_start = now;
            month = new_month;
            tmin = f64::MAX;
            tmax = f64::MIN;
        }
        let _ = site.take_job_events();
    }
    let tr = site.truth();
    let (pue, wue, it) = kpis(&Truth::default(), &tr);
    println!(
        "year {year}: IT {:.0} MWh, facility {:.0} MWh (generator {:.1} MWh), PUE (Cat 1) {pue:.4}, WUE {wue:.4} L/kWh, water {:.0} m3",
        it / 1000.0,
        tr.facility_kwh / 1000.0,
        tr.generator_kwh / 1000.0,
        tr.water_m3
    );
    println!("  pPUE cooling {:.4}, losses {:.4}, other {:.4}; mean GPU allocation {:.1} %", 1.0 + tr.cooling_kwh / it, 1.0 + tr.losses_kwh / it, 1.0 + tr.other_kwh / it, 100.0 * alloc / samples);
    println!("  hours per mode: mix {:.0}, free {:.0}, evaporative {:.0}, humidify {:.0}; simulated in {:.2} s", mode_h[0], mode_h[1], mode_h[2], mode_h[3], t0.elapsed().as_secs_f64());

    let hot = days.iter().filter(|d| d.3 > 33.0).count();
    let frost = days.iter().filter(|d| d.4 < 0.0).count();
    if let Some(h) = days.iter().max_by(|a, b| a.2.total_cmp(&b.2)) {
        let (p, w, _) = kpis(&h.0, &h.1);
        println!("  hottest day (mean {:.1} °C, max {:.1}): PUE {p:.4}, WUE {w:.3}", h.2, h.3);
    }
    if let Some(m) = days.iter().filter(|d| d.3 < 22.0).min_by(|a, b| (a.2 - 16.0).abs().total_cmp(&(b.2 - 16.0).abs())) {
        let (p, w, _) = kpis(&m.0, &m.1);
        println!("  mildest day (mean {:.1} °C, max {:.1}): PUE {p:.4}, WUE {w:.3}", m.2, m.3);
    }
    println!("  days above 33 °C: {hot}, frost days: {frost}");
    if std::env::args().any(|a| a == "--no-timing") {
        return;
    }
    // A month of the whole site at 60 s with every point built (1,172 points a step).
    let mut site = Site::new(SimConfig { start: ts(year, 7, 1), ..SimConfig::default() });
    let mut buf = PointBuf::new();
    let t0 = Instant::now();
    let mut t = site.now();
    let end = ts(year, 8, 1);
    let mut n_points = 0usize;
    while t < end {
        t = Timestamp(t.0 + 60_000_000_000);
        site.advance_to(t);
        site.fill_points(&mut buf);
        n_points += buf.points().len();
        let _ = site.take_job_events();
    }
    println!("month of July at 60 s, reused point buffer: {:.2} s for {} points", t0.elapsed().as_secs_f64(), n_points);
    // The allocating `points()` path, one day, to show what reuse saves.
    let t0 = Instant::now();
    let end = Timestamp(t.0 + 86_400_000_000_000);
    let mut n_points = 0usize;
    while t < end {
        t = Timestamp(t.0 + 60_000_000_000);
        site.advance_to(t);
        n_points += site.points().len();
    }
    println!("one day at 60 s with fresh points(): {:.2} s for {} points (x31 for a month: {:.1} s)", t0.elapsed().as_secs_f64(), n_points, 31.0 * t0.elapsed().as_secs_f64());
}
