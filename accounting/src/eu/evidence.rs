//! The filing's evidence bundle: what an auditor needs to recompute every metered figure of
//! the pack without Kilowatch. Each meter's energy (kWh) or water (m³) per clock hour of the
//! year, read through the same ledger the KPIs use (`Store::ledger`, the same hour bounds), so
//! the hourly values add up to the pack's figures; the meter inventory with each meter's role,
//! category, potable flag, coverage and what it counts towards; the pack itself; and a
//! manifest of SHA-256 hashes in `sha256sum -c` format.

use crate::report::csv_field;
use std::fmt::Write as _;

use crate::read::EnergyKind;
use crate::read::{ReadError, SeriesRead};
use kilowatch_model::TimeRange;
use kilowatch_model::Timestamp;
use kilowatch_model::energy::hour_bounds;
use kilowatch_model::metric::{WATER, role};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ledger;

/// One meter over the filing's year.
#[derive(Debug, Clone, Serialize)]
pub struct MeterRecord {
    pub meter: String,
    /// "meter" (energy) or "water".
    pub measurement: &'static str,
    /// The `role` tag of an energy meter; empty for water.
    pub role: String,
    pub category: Option<u8>,
    /// The `potable` tag of a water meter, where it says.
    pub potable: Option<bool>,
    /// "counter", or "power (estimated)" for a meter integrated by the trapezoid rule.
    pub kind: &'static str,
    pub unit: &'static str,
    pub total: f64,
    pub coverage_pct: f64,
    pub readings: usize,
    pub counter_resets: u32,
    /// One value per hour of `Inventory::bounds`.
    #[serde(skip)]
    pub hourly: Vec<f64>,
    #[serde(skip)]
    pub covered_s: Vec<f64>,
    /// The measurement device as `[eu.meters.<meter>]` declares it.
    pub device: Option<super::config::MeasurementDevice>,
}

impl MeterRecord {
    pub fn has_data(&self) -> bool {
        self.covered_s.iter().any(|c| *c > 0.0)
    }
}

/// Every energy and water meter over a window, hour by hour.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub bounds: Vec<i64>,
    pub meters: Vec<MeterRecord>,
}

impl Inventory {
    /// The category E_IT is taken at: the best (lowest) with data, as the KPIs choose it.
    pub fn it_category(&self) -> Option<u8> {
        self.meters.iter().filter(|m| m.role == role::IT && m.has_data()).filter_map(|m| m.category).min()
    }

    /// What a meter counts towards in the filing.
    pub fn used_for(&self, m: &MeterRecord) -> String {
        if m.measurement == "water" {
            return if m.potable == Some(true) { "WIN, WIN-POT".into() } else { "WIN".into() };
        }
        match m.role.as_str() {
            role::FACILITY => "EDC".into(),
            role::GENERATOR => "EDC, EDC-BG".into(),
            role::IT if m.category == self.it_category() => "EIT".into(),
            role::IT => format!("not in EIT (category {}; EIT is taken at category {})", m.category.unwrap_or(1), self.it_category().map(|c| c.to_string()).unwrap_or_else(|| "–".into())),
            crate::kpi::ROLE_REUSE => "EREUSE".into(),
            crate::kpi::ROLE_RENEWABLE => "ERES-OS, ERES-TOT".into(),
            other => format!("sub-meter ({other}): pPUE only"),
        }
    }
}

/// Reads the inventory over `r` at clock-hour bounds.
pub fn inventory(store: &(impl SeriesRead + ?Sized), r: TimeRange) -> Result<Inventory, ReadError> {
    let bounds = hour_bounds(r.from.0, r.to.0);
    let dur = r.duration_secs();
    let pct = |l: &kilowatch_model::energy::Ledger| if dur > 0.0 { (l.total_covered_s() / dur * 100.0).min(100.0) } else { 0.0 };
    let record = |m: &crate::read::Series, measurement: &'static str, kind: EnergyKind, l: kilowatch_model::energy::Ledger| {
        let water = measurement == "water";
        MeterRecord {
            meter: m.tag("meter").unwrap_or("?").to_owned(),
            measurement,
            role: if water { String::new() } else { m.tag("role").unwrap_or("").to_owned() },
            category: (m.tag("role") == Some(role::IT)).then(|| crate::kpi::category(m)),
            potable: if water { m.tag("potable").map(|p| p == "true") } else { None },
            kind: if kind == EnergyKind::Power { "power (estimated)" } else { "counter" },
            unit: if water { "m3" } else { "kWh" },
            total: l.total(),
            coverage_pct: pct(&l),
            readings: l.readings,
            counter_resets: l.resets,
            hourly: l.values,
            covered_s: l.covered_s,
            device: None,
        }
    };
    let mut meters = Vec::new();
    for (m, kind) in ledger::energy_meters(store)? {
        meters.push(record(&m, "meter", kind, ledger::meter_kwh(store, m.id, kind, &bounds)?));
    }
    for m in store.find_series(WATER, "volume_m3", &[])? {
        meters.push(record(&m, "water", EnergyKind::Counter, store.ledger(m.id, EnergyKind::Counter, &bounds)?));
    }
    Ok(Inventory { bounds, meters })
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// `hour_start,meter,role,category,kwh,covered_s` (energy) or `hour_start,meter,potable,m3,
/// covered_s` (water): every hour with a reading or a value. Values print as the shortest
/// decimal that reads back as the same f64, so sums recompute exactly.
fn hourly_csv(inv: &Inventory, water: bool) -> String {
    let mut s = String::from(if water { "hour_start,meter,potable,m3,covered_s\n" } else { "hour_start,meter,role,category,kwh,covered_s\n" });
    for m in inv.meters.iter().filter(|m| (m.measurement == "water") == water) {
        for (i, (v, c)) in m.hourly.iter().zip(&m.covered_s).enumerate() {
            if *v == 0.0 && *c == 0.0 {
                continue;
            }
            let t = Timestamp(inv.bounds[i]).to_rfc3339();
            let who = if water { format!("{},{}", csv_field(&m.meter), opt(m.potable)) } else { format!("{},{},{}", csv_field(&m.meter), csv_field(&m.role), opt(m.category)) };
            let _ = writeln!(s, "{t},{who},{v},{c}");
        }
    }
    s
}

fn meters_csv(inv: &Inventory) -> String {
    let mut s = String::from("meter,measurement,role,category,potable,kind,unit,total,coverage_pct,readings,counter_resets,used_for,device_type,accuracy_class,ct_ratio,last_calibration\n");
    for m in &inv.meters {
        let d = m.device.clone().unwrap_or_default();
        let text = |v: Option<String>| csv_field(&v.unwrap_or_default());
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&m.meter),
            m.measurement,
            csv_field(&m.role),
            opt(m.category),
            opt(m.potable),
            m.kind,
            m.unit,
            m.total,
            m.coverage_pct,
            m.readings,
            m.counter_resets,
            csv_field(&inv.used_for(m)),
            text(d.device_type),
            text(d.accuracy_class),
            text(d.ct_ratio),
            text(d.last_calibration)
        );
    }
    s
}

const README: &str = "Kilowatch EU filing evidence (Delegated Regulation (EU) 2024/1364)

filing.json          the yearly pack: Annex I, II, III, voluntary indicators, thresholds
filing.csv           the same items, one line each, keyed by item code
meters.csv           every energy and water meter: role, IT category, potable flag, kind,
                     total over the year, coverage (% of the year's seconds covered by readings),
                     which item it counts towards (used_for), and its measurement device as
                     declared in [eu.meters] (type, accuracy class, CT ratio, last calibration)
hourly-energy.csv    kWh per meter per clock hour (hour_start in UTC); hours with neither a
                     value nor a reading are left out (they are 0)
hourly-water.csv     m3 per water meter per clock hour
manifest.sha256      SHA-256 of every other file: check with `sha256sum -c manifest.sha256`

Recompute (sums over hourly-energy.csv / hourly-water.csv within the year):
  EDC    = sum of kwh where role is facility or generator
  EDC-BG = sum of kwh where role is generator
  EIT    = sum of kwh where role is it and category is the lowest category with data
  WIN    = sum of m3;  WIN-POT = sum of m3 where potable is true
  EREUSE = sum of kwh where role is reuse (when metered)
  PUE = EDC / EIT;  WUE = WIN * 1000 / EIT (L/kWh);  ERF = EREUSE / EDC;
  REF = ERES-TOT / EDC (uncapped), ERES-TOT = metered role=renewable + declared GOO, PPA, on-site
Where E_DC and E_IT cover different spans of the year, the shorter side is filled at its own
mean power (filing.json: the item's estimate, with hours and kWh filled), so EDC or EIT is the
CSV's sum plus that fill; filing.json's notes give the PUE over the span both cover.
";

/// The bundle's files, name and bytes, the manifest last.
pub fn bundle(inv: &Inventory, filing_json: Vec<u8>, filing_csv: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
    let mut files: Vec<(&'static str, Vec<u8>)> = vec![
        ("README.txt", README.as_bytes().to_vec()),
        ("filing.json", filing_json),
        ("filing.csv", filing_csv),
        ("meters.csv", meters_csv(inv).into_bytes()),
        ("hourly-energy.csv", hourly_csv(inv, false).into_bytes()),
        ("hourly-water.csv", hourly_csv(inv, true).into_bytes()),
    ];
    let manifest = manifest(&files);
    files.push(("manifest.sha256", manifest.into_bytes()));
    files
}

/// `<hex>  <name>` per file, as `sha256sum` writes and checks it.
pub fn manifest(files: &[(&'static str, Vec<u8>)]) -> String {
    let mut s = String::new();
    for (name, bytes) in files {
        let h = Sha256::digest(bytes);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(s, "{hex}  {name}");
    }
    s
}

/// The names of the bundle's files, in order.
pub const FILES: &[&str] = &["README.txt", "filing.json", "filing.csv", "meters.csv", "hourly-energy.csv", "hourly-water.csv", "manifest.sha256"];

/// The bundle as one POSIX ustar archive (what `tar -xf` reads), files under `dir/`, each
/// stamped `mtime` (seconds): one download whose files come from one computation, so the
/// manifest always matches them. Hand-written: the format is a 512-byte header per file and
/// two zero blocks at the end, and no tar crate is in the workspace.
pub fn tar(dir: &str, files: &[(&'static str, Vec<u8>)], mtime: i64) -> Vec<u8> {
    fn octal(field: &mut [u8], v: u64) {
        let s = format!("{v:0w$o}", w = field.len() - 1);
        field[..s.len()].copy_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    for (name, bytes) in files {
        let mut h = [0u8; 512];
        let path = format!("{dir}/{name}");
        let n = path.len().min(100);
        h[..n].copy_from_slice(&path.as_bytes()[..n]);
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], bytes.len() as u64);
        octal(&mut h[136..148], mtime.max(0) as u64);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // The checksum is taken with its own field as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(bytes);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}
