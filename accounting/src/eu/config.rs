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
    /// Who answers for the filing (name, e-mail).
    #[serde(default)]
    pub contact: Option<String>,
    /// Eurostat local administrative unit code of the site, e.g. "FR_91377".
    #[serde(default)]
    pub lau_code: Option<String>,
    /// "enterprise", "colocation" or "co-hosting" (Regulation, Article 2).
    #[serde(default, rename = "type")]
    pub data_centre_type: Option<DataCentreType>,
    /// The date the data centre started operating, YYYY-MM-DD: also decides which EnEfG
    /// thresholds apply (before or from 1 July 2026).
    #[serde(default)]
    pub entry_into_operation: Option<String>,
    /// Redundancy of the power supply to the IT equipment, e.g. "2N", "N+1".
    #[serde(default)]
    pub power_redundancy: Option<String>,
    /// Redundancy of the cooling, e.g. "N+1".
    #[serde(default)]
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
    /// Installed capacity of the back-up generators, kW (0 for none).
    #[serde(default)]
    pub backup_generator_kw: Option<f64>,
    /// EREUSE, heat reused outside the boundary over the year, kWh, where no `role=reuse`
    /// meter measures it.
    #[serde(default)]
    pub ereuse_kwh: Option<f64>,
    /// TWH, average temperature of the waste heat, °C.
    #[serde(default)]
    pub twh_c: Option<f64>,
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
    /// CSERV, ICT capacity of the servers as the Regulation's method rates it.
    #[serde(default)]
    pub server_capacity: Option<f64>,
    /// CSTOR, ICT capacity of the storage equipment, PB.
    #[serde(default)]
    pub storage_capacity_pb: Option<f64>,
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
    "operator",
    "contact",
    "lau_code",
    "type",
    "entry_into_operation",
    "power_redundancy",
    "cooling_redundancy",
    "pdit_kw",
    "sdc_m2",
    "scr_m2",
    "grid_functions",
    "backup_generator_kw",
    "ereuse_kwh",
    "twh_c",
    "tin_c",
    "refrigerants",
    "eres_goo_kwh",
    "eres_ppa_kwh",
    "eres_os_kwh",
    "server_capacity",
    "storage_capacity_pb",
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
            ("eu.backup_generator_kw", self.backup_generator_kw),
            ("eu.ereuse_kwh", self.ereuse_kwh),
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
        for (old, new, v) in [("eu.bandwidth_incoming_gbps", "eu.bandwidth_incoming_gb_per_s", self.bandwidth_incoming_gbps), ("eu.bandwidth_outgoing_gbps", "eu.bandwidth_outgoing_gb_per_s", self.bandwidth_outgoing_gbps)] {
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
