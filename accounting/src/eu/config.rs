//! `[eu]`: what the operator declares for the EU filing (Delegated Regulation (EU) 2024/1364)
//! that no meter gives: the site's identity (Annex I), installed power, floor areas,
//! refrigerants, set points, contracted renewables, ICT capacity and traffic (Annex II), and
//! the jurisdiction's thresholds to check. Every field is optional: what is not declared is
//! reported "missing", never zero. `[eu.sources]` says where each declared figure comes from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::thresholds::ThresholdRule;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EuConfig {
    /// The data centre's name as filed (default `site.name`).
    #[serde(default)]
    pub name: Option<String>,
    /// The legal person that owns the data centre.
    #[serde(default)]
    pub owner: Option<String>,
    /// The legal person that operates it.
    #[serde(default)]
    pub operator: Option<String>,
    /// Contact details of the owner (Annex I 1(b)): address, e-mail or telephone.
    #[serde(default)]
    pub owner_contact: Option<String>,
    /// Contact details of the operator (Annex I 1(b)).
    #[serde(default)]
    pub operator_contact: Option<String>,
    /// Removed: Annex I 1(b) asks for the owner's and the operator's contact details; read only
    /// to refuse it with the new keys.
    #[serde(default, skip_serializing)]
    pub contact: Option<String>,
    /// Eurostat local administrative unit code of the site, e.g. "FR_91377".
    #[serde(default)]
    pub lau_code: Option<String>,
    /// "enterprise", "colocation" or "co-hosting" (Regulation, Article 2).
    #[serde(default, rename = "type")]
    pub data_centre_type: Option<DataCentreType>,
    /// Whether the data centre is one "structure" or a "group-of-structures" (Annex I 1(d)).
    #[serde(default)]
    pub structure: Option<Structure>,
    /// A colocation data centre that also offers co-hosting, or a co-hosting one that also
    /// offers colocation (Annex I 1(d) asks that this be indicated).
    #[serde(default)]
    pub also_offers_other_type: Option<bool>,
    /// The date the data centre started operating, YYYY-MM-DD: also decides which EnEfG
    /// thresholds apply (before or from 1 July 2026).
    #[serde(default)]
    pub entry_into_operation: Option<String>,
    /// Electrical infrastructure redundancy at high-voltage level, e.g. "2N" (Annex I 2(a)).
    #[serde(default)]
    pub redundancy_power_hv: Option<String>,
    /// …at low-voltage level (line-up), e.g. "N+1".
    #[serde(default)]
    pub redundancy_power_lv: Option<String>,
    /// …at rack level, e.g. "2N" (A and B feeds).
    #[serde(default)]
    pub redundancy_power_rack: Option<String>,
    /// Cooling infrastructure redundancy at room level, e.g. "N+1" (Annex I 2(b)).
    #[serde(default)]
    pub redundancy_cooling_room: Option<String>,
    /// …at rack level, e.g. "N".
    #[serde(default)]
    pub redundancy_cooling_rack: Option<String>,
    /// Removed (one figure for every level): read only to refuse it with the per-level keys.
    #[serde(default, skip_serializing)]
    pub power_redundancy: Option<String>,
    /// Removed, as `power_redundancy`.
    #[serde(default, skip_serializing)]
    pub cooling_redundancy: Option<String>,
    /// PDIT, installed IT power demand, kW.
    #[serde(default)]
    pub pdit_kw: Option<f64>,
    /// Whether `pdit_kw` is the installed equipment's power ("installed") or the rated
    /// capacity of the IT power supply ("rated").
    #[serde(default)]
    pub pdit_basis: Option<PditBasis>,
    /// SDC, total floor area, m².
    #[serde(default)]
    pub sdc_m2: Option<f64>,
    /// SCR, computer room floor area, m².
    #[serde(default)]
    pub scr_m2: Option<f64>,
    /// Grid functions the site offers (demand response, frequency containment…), or "none".
    #[serde(default)]
    pub grid_functions: Option<String>,
    /// CBtG, average capacity of the data centre's batteries offered to the grid through a
    /// market or contracts for grid functions over the year, kW (Annex II 1(g)); 0 for none.
    #[serde(default)]
    pub battery_to_grid_kw: Option<f64>,
    /// Installed capacity of the back-up generators, kW (0 for none). Not an Annex II item:
    /// shown beside the annexes, and 0 lets EDC-BG be filed as a declared 0 without a meter.
    #[serde(default)]
    pub backup_generator_kw: Option<f64>,
    /// The EN 50600-4-9 WUE category WIN is measured by, 1 or 2 (Annex II 1(h) asks which).
    #[serde(default)]
    pub win_category: Option<u8>,
    /// EREUSE, heat reused outside the boundary over the year, kWh, where no `role=reuse`
    /// meter measures it.
    #[serde(default)]
    pub ereuse_kwh: Option<f64>,
    /// TWH, average temperature of the waste heat, °C.
    #[serde(default)]
    pub twh_c: Option<f64>,
    /// CDD, cooling degree days of the year for the site's location from an open-access source
    /// (Annex II 1(n): Eurostat's nrg_chdd_a or the JRC's data, base 21 °C, threshold 24 °C).
    /// Filed as declared; without it CDD is computed from the site's outside temperature.
    #[serde(default)]
    pub cdd_degree_days: Option<f64>,
    /// Where `kilowatch eu-cdd` asks for the open-data daily mean temperatures CDD is computed
    /// from (`[eu.open_weather]`: `latitude`, `longitude`, `url`).
    #[serde(default)]
    pub open_weather: Option<super::open_weather::OpenWeatherConfig>,
    /// TIN, average set point of the IT equipment's intake air, °C.
    #[serde(default)]
    pub tin_c: Option<f64>,
    /// Refrigerants in the computer room's cooling, e.g. ["R-1234ze"]; `[]` for none (an
    /// evaporative site such as DC5 declares `[]`).
    #[serde(default)]
    pub refrigerants: Option<Vec<String>>,
    /// ERES-GOO, renewable energy covered by guarantees of origin over the year, kWh.
    #[serde(default)]
    pub eres_goo_kwh: Option<f64>,
    /// ERES-PPA, renewable energy from power purchase agreements, kWh.
    #[serde(default)]
    pub eres_ppa_kwh: Option<f64>,
    /// ERES-OS, on-site renewable energy not metered by a `role=renewable` meter, kWh.
    #[serde(default)]
    pub eres_os_kwh: Option<f64>,
    /// CSERV, ICT capacity of the servers: the sum of their SERT active-state performance
    /// (Annex II 2(a)), as of 31 December.
    #[serde(default)]
    pub server_capacity: Option<f64>,
    /// The share of the computer-room floor area CSERV covers, percent (Annex II 2(a)).
    #[serde(default)]
    pub server_capacity_floor_pct: Option<f64>,
    /// CSTOR, raw capacity of the storage devices, PB (Annex II 2(b)), as of 31 December.
    #[serde(default)]
    pub storage_capacity_pb: Option<f64>,
    /// The share of the computer-room floor area CSTOR covers, percent (Annex II 2(b)).
    #[serde(default)]
    pub storage_capacity_floor_pct: Option<f64>,
    /// Incoming data traffic over the year, EB.
    #[serde(default)]
    pub traffic_incoming_exabytes: Option<f64>,
    /// Outgoing data traffic over the year, EB.
    #[serde(default)]
    pub traffic_outgoing_exabytes: Option<f64>,
    /// BIN, incoming traffic bandwidth: the total provisioned bandwidth into the computer room,
    /// averaged over the year, in gigabytes per second (Annex II 3(a)); a 400 Gbit/s link is
    /// 50 GB/s.
    #[serde(default)]
    pub bandwidth_incoming_gb_per_s: Option<f64>,
    /// BOUT, outgoing traffic bandwidth, gigabytes per second (Annex II 3(b)).
    #[serde(default)]
    pub bandwidth_outgoing_gb_per_s: Option<f64>,
    /// Removed (it was in Gbit/s, the Regulation asks for GB/s): read only to refuse it with
    /// the conversion.
    #[serde(default, skip_serializing)]
    pub bandwidth_incoming_gbps: Option<f64>,
    /// Removed, as `bandwidth_incoming_gbps`.
    #[serde(default, skip_serializing)]
    pub bandwidth_outgoing_gbps: Option<f64>,
    /// The measurement devices, by meter name (the `meter` tag): type, accuracy class, CT ratio
    /// and last calibration, for the record of measurement devices Annex II asks operators to
    /// keep for ten years (the evidence bundle's `meters.csv`).
    #[serde(default)]
    pub meters: BTreeMap<String, MeasurementDevice>,
    /// Where each declared figure comes from, by its key: `pdit_kw = "design file DC5-E-001"`.
    /// Without one the source reads "declared in [eu]".
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// A jurisdiction's preset of thresholds to check in the yearly pack: "de-enefg"
    /// (Germany's Energy Efficiency Act §11), or none.
    #[serde(default)]
    pub thresholds: Option<String>,
    /// Custom thresholds checked besides the preset's (`[[eu.threshold]]`).
    #[serde(default, rename = "threshold")]
    pub custom_thresholds: Vec<ThresholdRule>,
}

/// One measurement device (`[eu.meters.<meter>]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementDevice {
    /// Make and model, e.g. "Schneider PM8000".
    #[serde(default)]
    pub device_type: Option<String>,
    /// Accuracy class, e.g. "0.2S" (IEC 62053-22) or "Class 1" for a water meter.
    #[serde(default)]
    pub accuracy_class: Option<String>,
    /// Current transformer ratio, e.g. "4000/5".
    #[serde(default)]
    pub ct_ratio: Option<String>,
    /// Date of the last calibration, YYYY-MM-DD.
    #[serde(default)]
    pub last_calibration: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Structure {
    Structure,
    GroupOfStructures,
}

impl Structure {
    pub fn as_str(self) -> &'static str {
        match self {
            Structure::Structure => "structure",
            Structure::GroupOfStructures => "group of structures",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataCentreType {
    Enterprise,
    Colocation,
    CoHosting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PditBasis {
    Installed,
    Rated,
}

impl DataCentreType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataCentreType::Enterprise => "enterprise",
            DataCentreType::Colocation => "colocation",
            DataCentreType::CoHosting => "co-hosting",
        }
    }
}

impl PditBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            PditBasis::Installed => "installed",
            PditBasis::Rated => "rated",
        }
    }
}

/// The keys `[eu.sources]` may name: every declared figure's.
pub const DECLARABLE: &[&str] = &[
    "name",
    "owner",
    "owner_contact",
    "operator",
    "operator_contact",
    "lau_code",
    "type",
    "structure",
    "also_offers_other_type",
    "entry_into_operation",
    "redundancy_power_hv",
    "redundancy_power_lv",
    "redundancy_power_rack",
    "redundancy_cooling_room",
    "redundancy_cooling_rack",
    "pdit_kw",
    "sdc_m2",
    "scr_m2",
    "grid_functions",
    "battery_to_grid_kw",
    "backup_generator_kw",
    "win_category",
    "ereuse_kwh",
    "twh_c",
    "tin_c",
    "cdd_degree_days",
    "refrigerants",
    "eres_goo_kwh",
    "eres_ppa_kwh",
    "eres_os_kwh",
    "server_capacity",
    "server_capacity_floor_pct",
    "storage_capacity_pb",
    "storage_capacity_floor_pct",
    "traffic_incoming_exabytes",
    "traffic_outgoing_exabytes",
    "bandwidth_incoming_gb_per_s",
    "bandwidth_outgoing_gb_per_s",
];

impl EuConfig {
    /// The source text of a declared figure.
    pub fn source_of(&self, key: &str) -> String {
        match self.sources.get(key) {
            Some(s) => format!("eu.{key}: {s}"),
            None => format!("eu.{key}, declared in the configuration"),
        }
    }

    /// Every declared number with its key, for range checks.
    pub fn numbers(&self) -> Vec<(&'static str, Option<f64>)> {
        vec![
            ("eu.pdit_kw", self.pdit_kw),
            ("eu.sdc_m2", self.sdc_m2),
            ("eu.scr_m2", self.scr_m2),
            ("eu.battery_to_grid_kw", self.battery_to_grid_kw),
            ("eu.backup_generator_kw", self.backup_generator_kw),
            ("eu.ereuse_kwh", self.ereuse_kwh),
            ("eu.cdd_degree_days", self.cdd_degree_days),
            ("eu.eres_goo_kwh", self.eres_goo_kwh),
            ("eu.eres_ppa_kwh", self.eres_ppa_kwh),
            ("eu.eres_os_kwh", self.eres_os_kwh),
            ("eu.server_capacity", self.server_capacity),
            ("eu.storage_capacity_pb", self.storage_capacity_pb),
            ("eu.traffic_incoming_exabytes", self.traffic_incoming_exabytes),
            ("eu.traffic_outgoing_exabytes", self.traffic_outgoing_exabytes),
            ("eu.bandwidth_incoming_gb_per_s", self.bandwidth_incoming_gb_per_s),
            ("eu.bandwidth_outgoing_gb_per_s", self.bandwidth_outgoing_gb_per_s),
        ]
    }

    /// The commissioning date, parsed.
    pub fn entry_date(&self) -> Option<chrono::NaiveDate> {
        self.entry_into_operation.as_deref().and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    }

    /// Declared renewable energy for the year (guarantees of origin, PPAs, on-site), kWh.
    pub fn declared_renewables_kwh(&self) -> Option<f64> {
        let vals: Vec<f64> = [self.eres_goo_kwh, self.eres_ppa_kwh, self.eres_os_kwh].into_iter().flatten().collect();
        (!vals.is_empty()).then(|| vals.iter().sum())
    }

    /// What is wrong with the declarations, with the key: bad numbers, dates, source keys and
    /// thresholds. The aggregator's `Config::validate` stops startup with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let removed: [(&'static str, &str, bool); 3] = [
            ("eu.contact", "Annex I 1(b) asks for the owner's and the operator's contact details: set eu.owner_contact and eu.operator_contact", self.contact.is_some()),
            (
                "eu.power_redundancy",
                "Annex I 2(a) asks for the electrical redundancy per level: set eu.redundancy_power_hv, eu.redundancy_power_lv and eu.redundancy_power_rack",
                self.power_redundancy.is_some(),
            ),
            ("eu.cooling_redundancy", "Annex I 2(b) asks for the cooling redundancy per level: set eu.redundancy_cooling_room and eu.redundancy_cooling_rack", self.cooling_redundancy.is_some()),
        ];
        if let Some((key, why, _)) = removed.into_iter().find(|r| r.2) {
            return Err((key, format!("no longer accepted: {why}")));
        }
        for (key, v) in [("eu.server_capacity_floor_pct", self.server_capacity_floor_pct), ("eu.storage_capacity_floor_pct", self.storage_capacity_floor_pct)] {
            if let Some(x) = v
                && !(x.is_finite() && (0.0..=100.0).contains(&x))
            {
                return Err((key, format!("{x} is not a percentage between 0 and 100")));
            }
        }
        if let Some(c) = self.win_category
            && !(1..=2).contains(&c)
        {
            return Err(("eu.win_category", format!("{c}: EN 50600-4-9 WUE category 1 or 2")));
        }
        if let Some(w) = &self.open_weather {
            w.check().map_err(|m| ("eu.open_weather", m))?;
        }
        for (meter, d) in &self.meters {
            if let Some(c) = &d.last_calibration
                && chrono::NaiveDate::parse_from_str(c, "%Y-%m-%d").is_err()
            {
                return Err(("eu.meters", format!("{meter}.last_calibration = {c:?}: expected a date YYYY-MM-DD")));
            }
        }
        for (old, new, v) in [
            ("eu.bandwidth_incoming_gbps", "eu.bandwidth_incoming_gb_per_s", self.bandwidth_incoming_gbps),
            ("eu.bandwidth_outgoing_gbps", "eu.bandwidth_outgoing_gb_per_s", self.bandwidth_outgoing_gbps),
        ] {
            if let Some(x) = v {
                return Err((old, format!("no longer accepted: Annex II 3 of Regulation (EU) 2024/1364 asks for gigabytes per second, not gigabits; divide by 8 and set {new} = {}", x / 8.0)));
            }
        }
        for (key, v) in self.numbers() {
            if let Some(x) = v
                && !(x.is_finite() && (0.0..1e15).contains(&x))
            {
                return Err((key, format!("{x} is not a finite number >= 0")));
            }
        }
        for (key, v) in [("eu.twh_c", self.twh_c), ("eu.tin_c", self.tin_c)] {
            if let Some(x) = v
                && !(x.is_finite() && (-50.0..=200.0).contains(&x))
            {
                return Err((key, format!("{x} °C is not a plausible temperature (-50 to 200)")));
            }
        }
        if self.entry_into_operation.is_some() && self.entry_date().is_none() {
            return Err(("eu.entry_into_operation", format!("{:?}: expected a date YYYY-MM-DD", self.entry_into_operation.as_deref().unwrap_or(""))));
        }
        if let Some(l) = &self.lau_code
            && (l.trim().is_empty() || l.len() > 32 || !l.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)))
        {
            return Err(("eu.lau_code", format!("{l:?}: a LAU code is letters, digits, '_' or '-' (e.g. FR_91377)")));
        }
        if let Some(k) = self.sources.keys().find(|k| !DECLARABLE.contains(&k.as_str())) {
            return Err(("eu.sources", format!("{k:?} is not a declarable [eu] key (one of {})", DECLARABLE.join(", "))));
        }
        super::thresholds::check_config(self)
    }
}
