//! Paris-like weather as a pure function of time: the same instant gives the same air whatever
//! the step that reached it. Climate anchors (Paris-Montsouris 1991–2020 normals, rounded):
//! annual mean ~12.5 °C, January mean ~4–5 °C, July mean ~21 °C, diurnal range 6–12 °C, a few
//! days a year above 33 °C, a few weeks of frost, dew point ~1–2 °C in winter and ~12–13 °C in
//! summer.

use chrono::{Datelike, NaiveDate};

use crate::noise::{gauss, value_noise};
use crate::psy;

const DAY: f64 = 86_400.0;
/// Mean tropical year, days: keeps the seasons in place over decades without a calendar.
const YEAR_DAYS: f64 = 365.2425;
/// Annual mean temperature, °C.
const T_MEAN: f64 = 12.5;
/// Half the gap between the July and January means (21 − 4) / 2.
const T_SEASON_AMP: f64 = 8.5;
/// Coldest day of the year, as days after 1 January (19 January): the seasonal lag of a
/// temperate maritime climate behind the solstice is about four weeks; the warmest day falls
/// half a year later, around 20 July.
const COLDEST_DAY: f64 = 18.0;

/// Noise streams, so each random quantity draws independent numbers.
const S_SLOW: u64 = 0x5710;
const S_FAST: u64 = 0x5711;
const S_CLOUD: u64 = 0x5712;
const S_DEW: u64 = 0x5713;
const S_JITTER: u64 = 0x5714;

/// What the air outside is doing at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutsideAir {
    pub temp_c: f64,
    pub rh_pct: f64,
    pub dew_point_c: f64,
    pub wet_bulb_c: f64,
}

#[derive(Debug, Clone)]
pub struct Weather {
    seed: u64,
}

impl Weather {
    pub fn new(seed: u64) -> Self {
        Weather { seed: seed ^ 0x0057_EA7E_u64 }
    }

    /// The outside air at `secs` since the Unix epoch (UTC).
    pub fn at(&self, secs: f64) -> OutsideAir {
        let days = secs / DAY;
        let season_cos = (std::f64::consts::TAU * (days.rem_euclid(YEAR_DAYS) - COLDEST_DAY) / YEAR_DAYS).cos();
        // 0 in mid-January, 1 in mid-July.
        let summer = (1.0 - season_cos) / 2.0;
        let t_season = T_MEAN - T_SEASON_AMP * season_cos;

        // Weather systems last days: a slow component on 3-day knots and a faster one on
        // 1-day knots. Warm anomalies are stretched in summer (heat waves under a blocking
        // high) and cold ones in winter (continental cold snaps).
        let raw = 2.9 * value_noise(self.seed, S_SLOW, days / 3.0) + 1.4 * value_noise(self.seed, S_FAST, days);
        let anomaly = if raw > 0.0 { raw * (1.0 + 0.35 * summer) } else { raw * (1.0 + 0.25 * (1.0 - summer)) };

        // Clear days swing more than overcast ones; summer sun swings more than winter sun.
        let clear = value_noise(self.seed, S_CLOUD, days / 1.5).clamp(-2.0, 2.0) / 4.0 + 0.5;
        let amp = (3.2 + 2.6 * summer) * (0.7 + 0.6 * clear);
        let local_h = ((secs + paris_offset_secs(secs) as f64) / 3600.0).rem_euclid(24.0);
        let temp_c = t_season + anomaly + amp * diurnal_shape(local_h) + 0.15 * gauss(self.seed, S_JITTER, (secs / 600.0).floor() as i64 as u64);

        // Dew point follows the season and, more weakly, the air mass (warm air masses carry
        // more water); it cannot exceed the temperature, which is where nights get misty.
        let td_season = 7.0 - 5.5 * season_cos;
        let td = td_season + 0.55 * anomaly + 1.8 * value_noise(self.seed, S_DEW, days) + 0.4 * diurnal_shape(local_h);
        let dew_point_c = td.min(temp_c - 0.4);
        let rh_pct = psy::rh_from_dew_point(temp_c, dew_point_c);
        OutsideAir { temp_c, rh_pct, dew_point_c, wet_bulb_c: psy::wet_bulb(temp_c, rh_pct) }
    }
}

/// The daily cycle in [−1, 1]: minimum at 05:00 local (around dawn), maximum at 15:00, with a
/// 10-hour warm-up and a 14-hour cool-down, both cosine-shaped so the slope is zero at the
/// turning points.
fn diurnal_shape(h: f64) -> f64 {
    let x = if h < 5.0 { h + 24.0 } else { h };
    if x < 15.0 { -(std::f64::consts::PI * (x - 5.0) / 10.0).cos() } else { (std::f64::consts::PI * (x - 15.0) / 14.0).cos() }
}

/// Europe/Paris UTC offset in seconds (CET +1 h, CEST +2 h from the last Sunday of March to the
/// last Sunday of October, both at 01:00 UTC). A ten-line EU rule instead of the whole tz
/// database: this crate stays light and pure.
pub fn paris_offset_secs(secs: f64) -> i64 {
    let s = secs.floor() as i64;
    let Some(dt) = chrono::DateTime::from_timestamp(s, 0) else { return 3600 };
    let y = dt.year();
    let (Some(start), Some(end)) = (last_sunday_01utc(y, 3), last_sunday_01utc(y, 10)) else { return 3600 };
    if s >= start && s < end { 7200 } else { 3600 }
}

fn last_sunday_01utc(year: i32, month: u32) -> Option<i64> {
    let d = NaiveDate::from_ymd_opt(year, month, 31)?;
    let back = i64::from(d.weekday().num_days_from_sunday());
    let sunday = d.checked_sub_days(chrono::Days::new(back as u64))?;
    Some(sunday.and_hms_opt(1, 0, 0)?.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> f64 {
        chrono::DateTime::parse_from_rfc3339(s).map(|d| d.timestamp() as f64).unwrap_or(0.0)
    }

    #[test]
    fn dst_rule() {
        assert_eq!(paris_offset_secs(ts("2024-03-31T00:59:59Z")), 3600);
        assert_eq!(paris_offset_secs(ts("2024-03-31T01:00:00Z")), 7200);
        assert_eq!(paris_offset_secs(ts("2024-10-27T00:59:59Z")), 7200);
        assert_eq!(paris_offset_secs(ts("2024-10-27T01:00:00Z")), 3600);
    }

    #[test]
    fn climate_is_parisian() {
        let w = Weather::new(5);
        let t0 = ts("2024-01-01T00:00:00Z");
        let (mut sum, mut n, mut jan, mut jul, mut hot, mut frost) = (0.0, 0.0, 0.0, 0.0, 0, 0);
        let mut rh_sum = 0.0;
        for day in 0..366 {
            let (mut max, mut min) = (f64::MIN, f64::MAX);
            for h in 0..24 {
                let a = w.at(t0 + day as f64 * DAY + h as f64 * 3600.0);
                sum += a.temp_c;
                n += 1.0;
                rh_sum += a.rh_pct;
                max = max.max(a.temp_c);
                min = min.min(a.temp_c);
                if day < 31 {
                    jan += a.temp_c / (31.0 * 24.0);
                }
                if (182..213).contains(&day) {
                    jul += a.temp_c / (31.0 * 24.0);
                }
            }
            hot += i32::from(max > 33.0);
            frost += i32::from(min < 0.0);
        }
        let mean = sum / n;
        assert!((mean - 12.5).abs() < 1.5, "annual mean {mean}");
        assert!((1.0..8.0).contains(&jan), "january {jan}");
        assert!((18.0..24.5).contains(&jul), "july {jul}");
        assert!((0..25).contains(&hot), "hot days {hot}");
        assert!(frost > 3, "frost days {frost}");
        let rh = rh_sum / n;
        assert!((60.0..85.0).contains(&rh), "mean RH {rh}");
    }
}
