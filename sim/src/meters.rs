//! The electrical chain from the grid to the IT: two grid supplies (A and B) and a generator
//! into the switchgear, transformers and UPSs, out to the IT (nodes plus storage and network),
//! with the cooling plant and the building on their own feeders. Every instant balances
//! exactly: grid + generator = IT + cooling + losses + other.

use crate::noise::u01;
use crate::weather::paris_offset_secs;

/// The meters of the wire schema, in emission order: (meter tag, role, category tag).
pub const METERS: &[(&str, &str, Option<&str>)] = &[
    ("grid-a", "facility", None),
    ("grid-b", "facility", None),
    ("gen-1", "generator", None),
    ("ups-a-out", "it", Some("1")),
    ("ups-b-out", "it", Some("1")),
    ("cooling", "cooling", None),
    ("losses", "power_losses", None),
    ("other", "other", None),
];
pub const N_METERS: usize = 8;

/// Share of the site load drawn on grid supply A (the mechanical plant sits on A).
const GRID_A_SHARE: f64 = 0.515;
/// Share of the IT on UPS A (dual-corded PSUs share almost evenly).
const UPS_A_SHARE: f64 = 0.503;
/// Storage, network and management racks outside the DGX nodes: a fixed part plus traffic.
const STORAGE_NET_FIXED_W: f64 = 16_000.0;
const STORAGE_NET_PER_NODE_W: f64 = 0.018;
/// Transformer no-load and UPS standby losses, W, for a 127-node site.
const LOSSES_FIXED_W: f64 = 9_000.0;
/// Double-conversion UPS at ~40–60 % load (~96.5 %), plus LV distribution (~0.7 %).
const LOSSES_IT_SHARE: f64 = 0.047;
/// Transformer and cabling losses on the mechanical and building feeders.
const LOSSES_OTHER_SHARE: f64 = 0.012;
/// Lighting, security, offices: base, weekday office hours, office heating when cold.
const OTHER_BASE_W: f64 = 9_000.0;
const OTHER_OFFICE_W: f64 = 5_000.0;
const OTHER_HEATING_W_PER_K: f64 = 350.0;
/// Monthly on-load generator test: 30 minutes carrying this share of the site.
const GEN_TEST_SHARE: f64 = 0.4;
const GEN_TEST_S: i64 = 30 * 60;

/// Powers of every meter at one instant, W, in `METERS` order.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeterPowers {
    pub w: [f64; N_METERS],
    pub storage_net_w: f64,
}

/// Non-IT, non-cooling load of the building, W.
pub fn other_w(t_s: f64, outside_c: f64, scale: f64) -> f64 {
    let local = t_s + paris_offset_secs(t_s) as f64;
    let hour = (local / 3600.0).rem_euclid(24.0);
    // 1970-01-01 was a Thursday: day 0 → weekday index 3 with Monday = 0.
    let weekday = ((local / 86_400.0).floor() as i64 + 3).rem_euclid(7);
    let office = if weekday < 5 && (8.0..19.0).contains(&hour) { OTHER_OFFICE_W } else { 0.0 };
    let heating = (OTHER_HEATING_W_PER_K * (12.0 - outside_c)).clamp(0.0, 4_000.0);
    scale * (OTHER_BASE_W + office + heating)
}

/// Whether the monthly generator test runs at `t_s`: first Tuesday of each month, starting at
/// a seeded time between 08:00 and 11:00 UTC (working hours, staff on site).
pub fn generator_test(seed: u64, t_s: f64) -> bool {
    let s = t_s.floor() as i64;
    let Some(dt) = chrono::DateTime::from_timestamp(s, 0) else { return false };
    use chrono::Datelike;
    let day = dt.day();
    // The first Tuesday falls on day 1–7.
    if day > 7 || dt.weekday() != chrono::Weekday::Tue {
        return false;
    }
    let month_key = (dt.year() as u64) * 12 + u64::from(dt.month());
    let start_min = 8 * 60 + (u01(seed, 0x6E4, month_key) * 180.0) as i64;
    let sod = s.rem_euclid(86_400);
    sod >= start_min * 60 && sod < start_min * 60 + GEN_TEST_S
}

/// Balances the site at one instant.
pub fn balance(nodes_w: f64, cooling_w: f64, other_w: f64, gen_test: bool, scale: f64) -> MeterPowers {
    let storage_net_w = STORAGE_NET_FIXED_W * scale + STORAGE_NET_PER_NODE_W * nodes_w;
    let it = nodes_w + storage_net_w;
    let losses = LOSSES_FIXED_W * scale + LOSSES_IT_SHARE * it + LOSSES_OTHER_SHARE * (cooling_w + other_w);
    let facility = it + cooling_w + losses + other_w;
    let generator = if gen_test { GEN_TEST_SHARE * facility } else { 0.0 };
    let grid = facility - generator;
    let grid_a = GRID_A_SHARE * grid;
    let ups_a = UPS_A_SHARE * it;
    MeterPowers { w: [grid_a, grid - grid_a, generator, ups_a, it - ups_a, cooling_w, losses, other_w], storage_net_w }
}

/// Meter registers at simulation start, kWh: meters have run for years before we look.
pub fn initial_kwh(seed: u64) -> [f64; N_METERS] {
    let mut out = [0.0; N_METERS];
    for (i, v) in out.iter_mut().enumerate() {
        let years = match i {
            2 => 0.002,
            5 => 0.3,
            6 => 0.2,
            7 => 0.05,
            _ => 1.0,
        };
        *v = (u01(seed, 0x3E7, i as u64) * 2.0 + 1.0) * years * 4_000_000.0;
        *v = (*v * 10.0).round() / 10.0;
    }
    out
}
