//! The yearly EU filing (Delegated Regulation (EU) 2024/1364) for a calendar year in the
//! site's time zone: Annex I (the site's identity, from `[site]` and `[eu]`), Annex II (every
//! key performance indicator, each "metered" with its meters and coverage, "declared" with
//! its source, or "missing" with what would give it, never a zero standing in for nothing),
//! Annex III (PUE, WUE, ERF, REF), the voluntary GPU indicators, and the jurisdiction's
//! thresholds judged. Metered figures are the KPI function's over the year (`kpi::
//! compute_declared`), the same ledger as the API and the monthly reports; the evidence
//! bundle's hourly values add up to them. Mapping of every item: docs/filing.md.

use crate::report::csv_field;
use std::collections::BTreeMap;

use chrono_tz::Tz;
use kilowatch_model::Timestamp;
use serde::Serialize;
use serde::ser::SerializeMap;

use super::config::{DataCentreType, EuConfig};
use super::evidence::{Inventory, MeterRecord};
use super::fill::{self, Estimate};
use super::thresholds::{self, Kpi as ThresholdKpi, Thresholds};
use crate::gpu_efficiency::GpuEfficiency;
use crate::kpi::{self, Kpi};
use crate::periods;
use crate::read::SeriesRead;
use crate::report::{ReportError, generation_time};
use crate::settings::Settings;

pub const REGULATION: &str = "Commission Delegated Regulation (EU) 2024/1364 (data centre rating scheme), under Directive (EU) 2023/1791 art. 12";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Metered,
    /// Metered, with a stated part filled where the meters were silent (`Item::estimate`).
    Estimated,
    /// Metered over less of the reporting period than `accounting.official_min_coverage_pct`:
    /// the figure covers its metered part only (`Item::coverage_pct`).
    Partial,
    Declared,
    Missing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Metered => "metered",
            Status::Estimated => "estimated",
            Status::Partial => "partial",
            Status::Declared => "declared",
            Status::Missing => "missing",
        }
    }
}

/// One item of an annex.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The Regulation's symbol where it has one (EDC, WIN-POT…), else Kilowatch's (docs/filing.md).
    pub code: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    /// A number, a text or a list; null when missing.
    pub value: Option<serde_json::Value>,
    pub status: Status,
    /// Metered: the meters' roles; declared: the configuration key and its source; missing:
    /// what would give it.
    pub source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<String>,
    /// Metered: the lowest coverage of the year among its meters, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage_pct: Option<f64>,
    /// Estimated: what was filled, over how many hours, by which method (docs/filing.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
}

impl Item {
    pub fn number(&self) -> Option<f64> {
        self.value.as_ref().and_then(serde_json::Value::as_f64)
    }
}

/// An annex: its items in the Regulation's order, as a JSON object keyed by item code.
#[derive(Debug, Clone)]
pub struct Items(pub Vec<Item>);

impl Serialize for Items {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for i in &self.0 {
            m.serialize_entry(i.code, i)?;
        }
        m.end()
    }
}

impl Items {
    pub fn get(&self, code: &str) -> Option<&Item> {
        self.0.iter().find(|i| i.code == code)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FilingMeta {
    pub site: String,
    pub year: i32,
    pub regulation: &'static str,
    /// e.g. "calendar year 2025 (Europe/Paris)".
    pub period: String,
    pub from: String,
    pub to: String,
    pub timezone: String,
    pub hours: f64,
    /// The lowest coverage of the year among the meters that make EDC, EIT and WIN: below 100
    /// the year is not wholly metered and the figures cover only its metered part.
    pub coverage_pct: f64,
    /// Coverage at least `accounting.official_min_coverage_pct`.
    pub complete: bool,
    pub pue_category: Option<u8>,
    pub kilowatch_version: &'static str,
    pub due: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Voluntary {
    /// The GPU-aware IT-efficiency indicators over the year (docs/report.md).
    pub gpu_efficiency: Option<GpuEfficiency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    pub note: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Filing {
    pub meta: FilingMeta,
    pub annex_i: Items,
    pub annex_ii: Items,
    pub annex_iii: Items,
    /// Declared figures that are not Annex items but the pack keeps beside them (the back-up
    /// generators' installed capacity).
    pub outside_annexes: Items,
    pub voluntary: Voluntary,
    pub thresholds: Thresholds,
    pub data_quality: kpi::DataQuality,
    /// Data-quality notes on the filed figures (e.g. the common-span PUE where a side was
    /// filled).
    pub notes: Vec<String>,
    pub methodology: Vec<&'static str>,
    /// The evidence bundle's files (GET /api/v1/eu-filing/{year}/evidence/{file}).
    pub evidence_files: Vec<&'static str>,
    pub generated_at: String,
}

fn declared_text(code: &'static str, name: &'static str, v: Option<&str>, key: &str, eu: &EuConfig) -> Item {
    let v = v.filter(|s| !s.trim().is_empty());
    Item {
        code,
        name,
        unit: "",
        value: v.map(|s| serde_json::Value::from(s.to_owned())),
        status: if v.is_some() { Status::Declared } else { Status::Missing },
        source: if v.is_some() { eu.source_of(key) } else { format!("not declared: set eu.{key}") },
        meters: Vec::new(),
        coverage_pct: None,
        estimate: None,
    }
}

fn declared_num(code: &'static str, name: &'static str, unit: &'static str, v: Option<f64>, key: &str, eu: &EuConfig) -> Item {
    Item {
        code,
        name,
        unit,
        value: v.map(serde_json::Value::from),
        status: if v.is_some() { Status::Declared } else { Status::Missing },
        source: if v.is_some() { eu.source_of(key) } else { format!("not declared: set eu.{key}") },
        meters: Vec::new(),
        coverage_pct: None,
        estimate: None,
    }
}

/// The inventory's meters that `pick` selects.
fn of(inv: &Inventory, pick: impl Fn(&MeterRecord) -> bool) -> Vec<&MeterRecord> {
    inv.meters.iter().filter(|m| pick(m)).collect()
}

/// A metered item from the meters `ms`; missing (with `why`) when none of them has data in
/// the year.
fn metered(code: &'static str, name: &'static str, unit: &'static str, value: Option<f64>, ms: Vec<&MeterRecord>, what: &str, why: &str) -> Item {
    let with_data = ms.iter().any(|m| m.has_data());
    match value.filter(|_| with_data) {
        Some(v) => Item {
            code,
            name,
            unit,
            value: Some(v.into()),
            status: Status::Metered,
            source: format!("metered: {what}"),
            meters: ms.iter().map(|m| m.meter.clone()).collect(),
            coverage_pct: Some(ms.iter().map(|m| m.coverage_pct).fold(f64::INFINITY, f64::min)),
            estimate: None,
        },
        None => Item { code, name, unit, value: None, status: Status::Missing, source: why.to_owned(), meters: Vec::new(), coverage_pct: None, estimate: None },
    }
}

fn missing(code: &'static str, name: &'static str, unit: &'static str, why: String) -> Item {
    Item { code, name, unit, value: None, status: Status::Missing, source: why, meters: Vec::new(), coverage_pct: None, estimate: None }
}

fn annex_i(cfg: &impl Settings) -> Items {
    let eu = cfg.eu();
    let name = Item {
        code: "NAME",
        name: "Name of the data centre",
        unit: "",
        value: Some(eu.name.clone().unwrap_or_else(|| cfg.site_name().to_owned()).into()),
        status: Status::Declared,
        source: if eu.name.is_some() { eu.source_of("name") } else { "site.name (no eu.name declared)".into() },
        meters: Vec::new(),
        coverage_pct: None,
        estimate: None,
    };
    let type_text = eu.data_centre_type.map(|t| format!("{} data centre", t.as_str()));
    // Annex I 1(e) asks for the year and month of entry into operation.
    let entry_month = eu.entry_date().map(|d| d.format("%Y-%m").to_string());
    let other_type = match (eu.data_centre_type, eu.also_offers_other_type) {
        (Some(DataCentreType::Colocation), Some(true)) => Some("yes: also offers co-hosting services"),
        (Some(DataCentreType::CoHosting), Some(true)) => Some("yes: also offers colocation services"),
        (_, Some(true)) => Some("yes"),
        (_, Some(false)) => Some("no"),
        (_, None) => None,
    };
    Items(vec![
        name,
        declared_text("OWNER", "Owner of the data centre (name)", eu.owner.as_deref(), "owner", eu),
        declared_text("OWNER-CONTACT", "Owner's contact details", eu.owner_contact.as_deref(), "owner_contact", eu),
        declared_text("OPERATOR", "Operator of the data centre (name)", eu.operator.as_deref(), "operator", eu),
        declared_text("OPERATOR-CONTACT", "Operator's contact details", eu.operator_contact.as_deref(), "operator_contact", eu),
        declared_text("LAU", "Location: local administrative unit (LAU) code", eu.lau_code.as_deref(), "lau_code", eu),
        declared_text("TYPE", "Type of data centre (Art. 2)", type_text.as_deref(), "type", eu),
        declared_text("STRUCTURE", "Structure or group of structures", eu.structure.map(|s| s.as_str()), "structure", eu),
        declared_text("OTHER-TYPE", "Colocation also offering co-hosting, or co-hosting also offering colocation", other_type, "also_offers_other_type", eu),
        declared_text("ENTRY", "Year and month of entry into operation", entry_month.as_deref(), "entry_into_operation", eu),
        declared_text("RED-POWER-HV", "Electrical infrastructure redundancy, high-voltage level", eu.redundancy_power_hv.as_deref(), "redundancy_power_hv", eu),
        declared_text("RED-POWER-LV", "Electrical infrastructure redundancy, low-voltage level (line-up)", eu.redundancy_power_lv.as_deref(), "redundancy_power_lv", eu),
        declared_text("RED-POWER-RACK", "Electrical infrastructure redundancy, rack level", eu.redundancy_power_rack.as_deref(), "redundancy_power_rack", eu),
        declared_text("RED-COOLING-ROOM", "Cooling infrastructure redundancy, room level", eu.redundancy_cooling_room.as_deref(), "redundancy_cooling_room", eu),
        declared_text("RED-COOLING-RACK", "Cooling infrastructure redundancy, rack level", eu.redundancy_cooling_rack.as_deref(), "redundancy_cooling_rack", eu),
    ])
}

fn role_is(roles: &'static [&'static str]) -> impl Fn(&MeterRecord) -> bool {
    move |m| m.measurement == "meter" && roles.contains(&m.role.as_str())
}

/// A metered item with the part `est` filled: its value grows by the fill, and it says so.
fn with_fill(mut item: Item, est: Option<&Estimate>) -> Item {
    if let (Status::Metered, Some(e), Some(v)) = (item.status, est, item.number()) {
        item.value = Some((v + e.kwh_filled).into());
        item.status = Status::Estimated;
        item.source = format!("{}; estimated: {:.3} kWh filled over {:.2} h ({})", item.source, e.kwh_filled, e.hours_filled, e.method);
        item.estimate = Some(e.clone());
    }
    item
}

/// CDD (Annex II 1(n)): declared from an open-access source (`eu.cdd_degree_days`, e.g.
/// Eurostat's nrg_chdd_a or the JRC's data for the site's region) where given; else by the
/// Eurostat/JRC method from open-data daily means (`[eu.open_weather]`, fetched by `kilowatch
/// eu-cdd`), else from the site's own outside-temperature series; every day of the period
/// needed: a day without a mean makes CDD missing, never a smaller number.
fn cdd_item(store: &(impl SeriesRead + ?Sized), eu: &EuConfig, range: kilowatch_model::TimeRange, tz: Tz) -> Result<Item, ReportError> {
    use super::open_weather as ow;
    const NAME: &str = "Cooling degree days (Eurostat/JRC method: base 21 °C, days with a mean of 24 °C or more)";
    if eu.cdd_degree_days.is_some() {
        let mut i = declared_num("CDD", NAME, "degree days", eu.cdd_degree_days, "cdd_degree_days", eu);
        i.source = format!("{} (open-access source, Annex II 1(n))", i.source);
        return Ok(i);
    }
    // (series, what it is, what a missing day asks for), open data first.
    let sources = [
        ((ow::MEASUREMENT, ow::FIELD), format!("open-access data: {} (kilowatch eu-cdd)", ow::SOURCE), ow::PROVIDER, "no open-data daily mean: run kilowatch eu-cdd again once the archive has them"),
        (
            ("cooling", "outside_temp_c"),
            "metered: daily mean of the first cooling unit's outside_temp_c (the Regulation asks for open-access data: set [eu.open_weather] or eu.cdd_degree_days)".to_owned(),
            "cooling outside_temp_c",
            "no outside temperature reading: CDD cannot be computed (declare eu.cdd_degree_days from an open-access source)",
        ),
    ];
    for ((measurement, field), what, meter, gap) in sources {
        let Some(days) = super::daily_means(store, range, tz, measurement, field)? else { continue };
        return Ok(match super::jrc_cdd(&days) {
            Ok(v) => Item {
                code: "CDD",
                name: NAME,
                unit: "degree days",
                value: Some(v.into()),
                status: Status::Metered,
                source: format!("{what}; Σ (mean − 21 °C) over days with a mean ≥ 24 °C"),
                meters: vec![meter.into()],
                coverage_pct: Some(100.0),
                estimate: None,
            },
            Err(n) => missing("CDD", NAME, "degree days", format!("{n} of the period's {} days have {gap}", days.len())),
        });
    }
    Ok(missing("CDD", NAME, "degree days", "no open-access figure (eu.cdd_degree_days, or [eu.open_weather] fetched by kilowatch eu-cdd) and no cooling series with outside_temp_c".into()))
}

#[allow(clippy::too_many_arguments)]
fn annex_ii(
    store: &(impl SeriesRead + ?Sized),
    cfg: &impl Settings,
    k: &Kpi,
    inv: &Inventory,
    filled: &fill::Fill,
    declared_res: Option<f64>,
    range: kilowatch_model::TimeRange,
    tz: Tz,
) -> Result<Items, ReportError> {
    let eu = cfg.eu();
    let it_cat = inv.it_category();
    let mut pdit = declared_num("PDIT", "Installed IT power demand", "kW", eu.pdit_kw, "pdit_kw", eu);
    if pdit.status == Status::Declared {
        pdit.source = format!("{} ({})", pdit.source, eu.pdit_basis.map(|b| format!("{} power", b.as_str())).unwrap_or_else(|| "installed or rated: eu.pdit_basis not declared".into()));
    }
    let edc_bg = if !inv.meters.iter().any(role_is(&["generator"])) && eu.backup_generator_kw == Some(0.0) {
        Item {
            code: "EDC-BG",
            name: "Energy consumption of the back-up generators",
            unit: "kWh",
            value: Some(0.0.into()),
            status: Status::Declared,
            source: format!("no back-up generator: {}", eu.source_of("backup_generator_kw")),
            meters: Vec::new(),
            coverage_pct: None,
            estimate: None,
        }
    } else {
        let gens = of(inv, role_is(&["generator"]));
        // A generator meter without a reading in the period says nothing: missing, not a
        // metered 0 (a meter that reads its counter while the set stands by gives the 0).
        let why = if gens.is_empty() {
            "no meter with role=generator (declare eu.backup_generator_kw = 0 for a site without generators)".to_owned()
        } else {
            format!("the generator meters ({}) have no reading in the period: EDC-BG is unknown", gens.iter().map(|m| m.meter.as_str()).collect::<Vec<_>>().join(", "))
        };
        metered("EDC-BG", "Energy consumption of the back-up generators", "kWh", Some(k.generator_energy_kwh), gens, "meters with role=generator", &why)
    };
    let potable_known = inv.meters.iter().any(|m| m.measurement == "water" && m.potable.is_some());
    let water = |m: &MeterRecord| m.measurement == "water";
    let reuse = match (k.reuse_energy_kwh, eu.ereuse_kwh) {
        (Some(v), _) => metered("EREUSE", "Waste heat reused", "kWh", Some(v), of(inv, role_is(&["reuse"])), "meters with role=reuse", ""),
        (None, Some(_)) => declared_num("EREUSE", "Waste heat reused", "kWh", eu.ereuse_kwh, "ereuse_kwh", eu),
        (None, None) => missing("EREUSE", "Waste heat reused", "kWh", "no meter with role=reuse and no eu.ereuse_kwh declared".into()),
    };
    let cdd = cdd_item(store, eu, range, tz)?;
    let metered_res = inv.meters.iter().any(|m| role_is(&["renewable"])(m) && m.has_data());
    let metered_res_kwh: f64 = inv.meters.iter().filter(|m| role_is(&["renewable"])(m)).map(|m| m.total).sum();
    let eres_os = match (metered_res, eu.eres_os_kwh) {
        (true, d) => {
            let mut i =
                metered("ERES-OS", "Renewable energy from on-site generation", "kWh", Some(metered_res_kwh + d.unwrap_or(0.0)), of(inv, role_is(&["renewable"])), "meters with role=renewable", "");
            if d.is_some() {
                i.source = format!("{} plus {}", i.source, eu.source_of("eres_os_kwh"));
            }
            i
        }
        (false, _) => declared_num("ERES-OS", "Renewable energy from on-site generation", "kWh", eu.eres_os_kwh, "eres_os_kwh", eu),
    };
    let eres_tot = match (k.renewable_energy_kwh, metered_res, declared_res) {
        (Some(v), true, None) => metered("ERES-TOT", "Total renewable energy", "kWh", Some(v), of(inv, role_is(&["renewable"])), "meters with role=renewable", ""),
        (Some(v), _, Some(_)) => Item {
            code: "ERES-TOT",
            name: "Total renewable energy",
            unit: "kWh",
            value: Some(v.into()),
            status: Status::Declared,
            source: format!("ERES-GOO + ERES-PPA + ERES-OS{}", if metered_res { " (on-site part metered)" } else { "" }),
            meters: Vec::new(),
            coverage_pct: None,
            estimate: None,
        },
        _ => missing("ERES-TOT", "Total renewable energy", "kWh", "no meter with role=renewable and no eu.eres_goo_kwh, eres_ppa_kwh or eres_os_kwh declared".into()),
    };
    let refrigerants = match &eu.refrigerants {
        Some(list) => Item {
            code: "REFRIG",
            name: "Refrigerants in the computer room cooling",
            unit: "",
            value: Some(serde_json::Value::from(list.clone())),
            status: Status::Declared,
            source: if list.is_empty() { format!("none used: {}", eu.source_of("refrigerants")) } else { eu.source_of("refrigerants") },
            meters: Vec::new(),
            coverage_pct: None,
            estimate: None,
        },
        None => missing("REFRIG", "Refrigerants in the computer room cooling", "", "not declared: set eu.refrigerants (an empty list for none)".into()),
    };
    let mut refrigerants = refrigerants;
    if refrigerants.status == Status::Declared {
        // Annex II 1(m) cites Regulation (EU) No 517/2014, which Regulation (EU) 2024/573
        // repealed and replaced: its Annexes now give the designations.
        refrigerants.source = format!("{}; designations as in the Annexes to Regulation (EU) 2024/573 (which replaced Regulation (EU) No 517/2014, cited by Annex II 1(m))", refrigerants.source);
    }
    let mut win_cat = declared_num("WIN-CAT", "EN 50600-4-9 WUE category WIN is measured by", "", eu.win_category.map(f64::from), "win_category", eu);
    if win_cat.status == Status::Declared {
        win_cat.source = format!("{} (Annex II 1(h): category 2, or 1 where 2 is not possible)", win_cat.source);
    }
    Ok(Items(vec![
        pdit,
        declared_num("SDC", "Total floor area of the data centre", "m²", eu.sdc_m2, "sdc_m2", eu),
        declared_num("SCR", "Computer room floor area", "m²", eu.scr_m2, "scr_m2", eu),
        with_fill(
            metered(
                "EDC",
                "Total energy consumption",
                "kWh",
                Some(k.facility_energy_kwh),
                of(inv, role_is(&["facility", "generator"])),
                "meters with role=facility (every grid supply) and role=generator",
                "no meter with role=facility or role=generator has data in the year",
            ),
            filled.edc.as_ref(),
        ),
        edc_bg,
        declared_text("GRID-FN", "Grid functions offered", eu.grid_functions.as_deref(), "grid_functions", eu),
        declared_num("CBtG", "Average battery capacity offered to the grid", "kW", eu.battery_to_grid_kw, "battery_to_grid_kw", eu),
        with_fill(
            metered(
                "EIT",
                "Energy consumption of the IT equipment",
                "kWh",
                k.pue_category.map(|_| k.it_energy_kwh),
                of(inv, |m| m.measurement == "meter" && m.role == "it" && m.category == it_cat),
                &format!(
                    "meters with role=it, category {} ({})",
                    it_cat.unwrap_or(1),
                    match it_cat {
                        Some(1) => "UPS outputs, as the Regulation asks",
                        Some(2) => "PDU outputs",
                        _ => "IT equipment inputs",
                    }
                ),
                "no meter with role=it has data in the year",
            ),
            filled.eit.as_ref(),
        ),
        metered("WIN", "Total water input", "m³", k.water_m3, of(inv, water), "water meters (volume_m3)", "no water meter has data in the year"),
        win_cat,
        metered(
            "WIN-POT",
            "Potable water input",
            "m³",
            k.water_potable_m3.filter(|_| potable_known),
            of(inv, |m| m.measurement == "water" && m.potable == Some(true)),
            "water meters tagged potable=true",
            if k.water_m3.is_some() { "water meters do not say whether they are potable (tag them potable=true or potable=false)" } else { "no water meter has data in the year" },
        ),
        reuse,
        declared_num("TWH", "Average temperature of the waste heat", "°C", eu.twh_c, "twh_c", eu),
        declared_num("TIN", "Average IT intake air set point", "°C", eu.tin_c, "tin_c", eu),
        refrigerants,
        cdd,
        eres_tot,
        declared_num("ERES-GOO", "Renewable energy covered by guarantees of origin", "kWh", eu.eres_goo_kwh, "eres_goo_kwh", eu),
        declared_num("ERES-PPA", "Renewable energy from power purchase agreements", "kWh", eu.eres_ppa_kwh, "eres_ppa_kwh", eu),
        eres_os,
        declared_num("CSERV", "ICT capacity of the servers (sum of SERT active-state performance)", "", eu.server_capacity, "server_capacity", eu),
        declared_num("CSERV-FLOOR", "Share of the computer room floor area CSERV covers", "%", eu.server_capacity_floor_pct, "server_capacity_floor_pct", eu),
        declared_num("CSTOR", "ICT capacity of the storage equipment (raw capacity)", "PB", eu.storage_capacity_pb, "storage_capacity_pb", eu),
        declared_num("CSTOR-FLOOR", "Share of the computer room floor area CSTOR covers", "%", eu.storage_capacity_floor_pct, "storage_capacity_floor_pct", eu),
        declared_num("TRAFFIC-IN", "Incoming data traffic", "EB", eu.traffic_incoming_exabytes, "traffic_incoming_exabytes", eu),
        declared_num("TRAFFIC-OUT", "Outgoing data traffic", "EB", eu.traffic_outgoing_exabytes, "traffic_outgoing_exabytes", eu),
        declared_num("BIN", "Incoming traffic bandwidth (provisioned, averaged over the year)", "GB/s", eu.bandwidth_incoming_gb_per_s, "bandwidth_incoming_gb_per_s", eu),
        declared_num("BOUT", "Outgoing traffic bandwidth (provisioned, averaged over the year)", "GB/s", eu.bandwidth_outgoing_gb_per_s, "bandwidth_outgoing_gb_per_s", eu),
    ]))
}

/// A KPI from the filed Annex II items (Annex III: the database computes it from them, so the
/// pack files exactly their ratio): metered when every input is, estimated or declared when
/// one is, missing (naming the inputs) when one is missing.
fn kpi_item(code: &'static str, name: &'static str, unit: &'static str, num: &Item, den: &Item, scale: f64) -> Item {
    let formula = match code {
        "PUE" => "EDC / EIT",
        "WUE" => "WIN / EIT (L/kWh = m³/MWh)",
        "ERF" => "EREUSE / EDC",
        _ => "ERES-TOT / EDC",
    };
    let inputs = [num, den];
    let missing_inputs: Vec<&str> = inputs.iter().filter(|i| i.status == Status::Missing).map(|i| i.code).collect();
    if !missing_inputs.is_empty() {
        return missing(code, name, unit, format!("{formula}: {} missing", missing_inputs.join(", ")));
    }
    let value = match (num.number(), den.number()) {
        (Some(n), Some(d)) if d > 0.0 => n * scale / d,
        _ => return missing(code, name, unit, format!("{formula}: {} is 0", den.code)),
    };
    if code == "PUE" && value < 1.0 {
        return missing(code, name, unit, format!("{formula} computes to {value:.4}, below 1: a data fault (meter roles, coverage or a counter), not a result"));
    }
    let status = if inputs.iter().any(|i| i.status == Status::Declared) {
        Status::Declared
    } else if inputs.iter().any(|i| i.status == Status::Partial) {
        Status::Partial
    } else if inputs.iter().any(|i| i.status == Status::Estimated) {
        Status::Estimated
    } else {
        Status::Metered
    };
    Item {
        code,
        name,
        unit,
        value: Some(value.into()),
        status,
        source: format!("{formula} of the filed figures, over the year"),
        meters: Vec::new(),
        coverage_pct: inputs.iter().filter_map(|i| i.coverage_pct).reduce(f64::min),
        estimate: None,
    }
}

fn annex_iii(ii: &Items) -> Items {
    let g = |c: &str| ii.get(c).cloned().unwrap_or_else(|| missing("?", "?", "", String::new()));
    let (edc, eit, win, reuse, res) = (g("EDC"), g("EIT"), g("WIN"), g("EREUSE"), g("ERES-TOT"));
    Items(vec![
        kpi_item("PUE", "Power usage effectiveness", "", &edc, &eit, 1.0),
        kpi_item("WUE", "Water usage effectiveness", "L/kWh", &win, &eit, 1000.0),
        kpi_item("ERF", "Energy reuse factor", "", &reuse, &edc, 1.0),
        // Annex III (d) defines REF = ERES-TOT / EDC with no cap: it is filed as the ratio, and
        // a figure above 1 is only a data-quality note.
        kpi_item("REF", "Renewable energy factor", "", &res, &edc, 1.0),
    ])
}

/// Figures kept beside the annexes: the generators' installed capacity is not an Annex II item.
fn outside_annexes(eu: &EuConfig) -> Items {
    Items(vec![declared_num("CAP-BG", "Installed capacity of the back-up generators (not an Annex II item)", "kW", eu.backup_generator_kw, "backup_generator_kw", eu)])
}

/// Data-quality notes on the filed figures: where EDC or EIT was filled, the PUE over the span
/// both meters cover (what the KPI API gives for the year); a REF above 1.
fn notes(k: &Kpi, filled: &fill::Fill, iii: &Items) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(v) = iii.get("REF").and_then(Item::number).filter(|v| *v > 1.0) {
        out.push(format!(
            "REF {v} exceeds 1: the renewable energy declared and metered (ERES-TOT) exceeds EDC. Annex III (d) files the ratio uncapped; capped at 1 (as the KPI API shows it) it would read 1."
        ));
    }
    if filled.edc.is_some() || filled.eit.is_some() {
        let common = match (&k.pue_span, k.pue) {
            (Some(sp), Some(p)) => format!("PUE over the span both EDC and EIT cover ({} to {}, {:.1} h): {p}", sp.from, sp.to, sp.hours),
            (None, Some(p)) => format!("PUE over the span both EDC and EIT cover: {p}"),
            _ => "EDC and EIT cover no common span: no common-span PUE".into(),
        };
        out.push(format!("{common}; the filed PUE is the filed EDC / the filed EIT, with the shorter side filled ({})", fill::METHOD));
    }
    out
}

const METHODOLOGY: &[&str] = &[
    "Calendar year in the site's time zone; every energy and water figure is the ledger the KPI API and the monthly reports use (counter increases, resets counted from the new reading, power-only meters integrated and marked estimated).",
    "EDC = every grid supply (role=facility) + back-up generators (role=generator); EIT at the best IT meter category with data (1 = UPS outputs).",
    "PUE = EDC / EIT of the filed totals (Annex III (a)); where one side's meters cover less of the year than the other's, the shorter side is filled at its own mean power and marked estimated, with the hours filled, and the PUE over the common span is kept as a note. WUE = WIN / EIT; ERF = EREUSE / EDC; REF = ERES-TOT / EDC, uncapped as Annex III (d) defines it (a value above 1 is noted).",
    "CDD (Annex II 1(n), Eurostat/JRC method): declared from an open-access source (eu.cdd_degree_days), else Σ over the local days of the period of (daily mean outside temperature − 21 °C) for days with a mean ≥ 24 °C; a day without readings makes CDD missing.",
    "Status: metered (meters named, with the lowest coverage of the year), declared ([eu] in the configuration, with its source), missing (absent: never reported as zero).",
    "Evidence: the bundle's hourly CSVs add up to every metered figure; its manifest holds their SHA-256.",
];

/// The period a filing for `year` covers (Art. 3): the calendar year in the site's time zone,
/// or, for a data centre that entered operation during it (`eu.entry_into_operation`), from
/// that local date to the year's end.
pub fn reporting_period(eu: &EuConfig, year: i32, tz: Tz) -> Result<periods::Period, ReportError> {
    use chrono::Datelike;
    let mut p = periods::resolve("year", None, None, Some(&year.to_string()), tz, Timestamp::now())?;
    if let Some(entry) = eu.entry_date().filter(|d| d.year() == year && d.ordinal() > 1) {
        p.range.from = periods::local_midnight(tz, entry)?;
        p.label = format!("operating period {entry} to {year}-12-31 ({}): in operation since {entry}, less than the calendar year (Regulation (EU) 2024/1364, Art. 3)", tz.name());
    }
    Ok(p)
}

/// The coverage at or above which an item is "metered" rather than "partial": the accounting's
/// official minimum, less the meters' reading phase at the period's two edges (10 minutes).
fn full_coverage_pct(official_min_pct: f64, r: kilowatch_model::TimeRange) -> f64 {
    official_min_pct - 600.0 / r.duration_secs().max(1.0) * 100.0
}

/// Builds the filing for calendar `year`, with the meter inventory it rests on (the evidence
/// bundle's data).
pub fn build(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, year: i32, generated_at: Option<&str>) -> Result<(Filing, Inventory), ReportError> {
    let tz: Tz = cfg.timezone().parse().map_err(|_| ReportError::TimeZone(cfg.timezone().to_owned()))?;
    let p = reporting_period(cfg.eu(), year, tz)?;
    assemble(store, cfg, year, tz, p, Scope::Filing, generated_at)
}

/// What a pack is assembled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The yearly filing: declared yearly figures (renewables) count, the voluntary GPU
    /// indicators are computed.
    Filing,
    /// A shorter period (the monthly report's year to date, `GET /api/v1/eu-indicators`): the
    /// yearly declared renewables do not count in ERES-TOT and REF; no GPU indicators.
    Summary,
}

/// The pack over period `p` of `year`: the one code path for the filing, `GET
/// /api/v1/eu-indicators`, the monthly report's EU section and the fleet's side-by-side view.
pub fn assemble(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, year: i32, tz: Tz, p: periods::Period, scope: Scope, generated_at: Option<&str>) -> Result<(Filing, Inventory), ReportError> {
    let declared_res = if scope == Scope::Filing { cfg.eu().declared_renewables_kwh() } else { None };
    let k = kpi::compute_declared(store, p.range, &p.label, cfg, declared_res)?;
    let mut inv = super::evidence::inventory(store, p.range)?;
    for m in &mut inv.meters {
        m.device = cfg.eu().meters.get(&m.meter).cloned();
    }
    let filled = fill::fill(&inv, inv.it_category());
    let mut annex_ii = annex_ii(store, cfg, &k, &inv, &filled, declared_res, p.range, tz)?;
    let full_pct = full_coverage_pct(cfg.accounting().official_min_coverage_pct, p.range);
    for i in annex_ii.0.iter_mut().filter(|i| i.status == Status::Metered && i.coverage_pct.is_some_and(|c| c < full_pct)) {
        i.status = Status::Partial;
    }
    let annex_iii = annex_iii(&annex_ii);
    let notes = notes(&k, &filled, &annex_iii);
    let figure = |x: ThresholdKpi| annex_iii.get(x.code()).and_then(Item::number);
    let mut thresholds = thresholds::check(cfg.eu(), year, figure);
    let coverage = k.data_quality.coverage_pct;
    let complete = coverage >= full_pct;
    if !complete {
        // A pass or fail on a partly metered year is provisional: say so beside the figure.
        for c in thresholds.checks.iter_mut().filter(|c| matches!(c.status, "pass" | "fail")) {
            c.reason = format!("{} (provisional: only {coverage:.1} % of the year metered)", c.reason);
        }
    }
    let voluntary = match store.jobs() {
        _ if scope == Scope::Summary => Voluntary { gpu_efficiency: None, unavailable: Some("not computed for a summary".into()), note: VOLUNTARY },
        // No GPU with power readings: the indicators are missing, not a row of zeros.
        Ok(js) => match crate::report::gpu_efficiency_over(store, cfg, &js, p.range, &p.label)? {
            g if g.gpus == 0 => Voluntary { gpu_efficiency: None, unavailable: Some("missing: no GPU power readings in the year".into()), note: VOLUNTARY },
            g => Voluntary { gpu_efficiency: Some(g), unavailable: None, note: VOLUNTARY },
        },
        Err(e) => Voluntary { gpu_efficiency: None, unavailable: Some(format!("job ledger unavailable: {e}")), note: VOLUNTARY },
    };
    let filing = Filing {
        meta: FilingMeta {
            site: cfg.site_name().to_owned(),
            year,
            regulation: REGULATION,
            period: p.label.clone(),
            from: p.range.from.to_rfc3339(),
            to: p.range.to.to_rfc3339(),
            timezone: cfg.timezone().to_owned(),
            hours: p.range.duration_secs() / 3600.0,
            coverage_pct: coverage,
            complete,
            pue_category: k.pue_category,
            kilowatch_version: env!("CARGO_PKG_VERSION"),
            due: format!("{}-05-15", year + 1),
        },
        annex_i: annex_i(cfg),
        annex_ii,
        annex_iii,
        voluntary,
        thresholds,
        notes,
        outside_annexes: outside_annexes(cfg.eu()),
        data_quality: k.data_quality,
        methodology: METHODOLOGY.to_vec(),
        evidence_files: super::evidence::FILES.to_vec(),
        generated_at: generation_time(generated_at),
    };
    Ok((filing, inv))
}

const VOLUNTARY: &str = "Voluntary indicators, not part of the Regulation: no standard covers accelerator servers (ISO/IEC 30134-5 excludes them). Definitions in docs/report.md.";

/// Counts of items per status over the three annexes, for the summary.
pub fn status_counts(f: &Filing) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::new();
    for i in f.annex_i.0.iter().chain(&f.annex_ii.0).chain(&f.annex_iii.0) {
        *c.entry(i.status.as_str()).or_insert(0) += 1;
    }
    c
}

fn value_text(v: &Option<serde_json::Value>) -> String {
    match v {
        None => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(a)) => a.iter().map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())).collect::<Vec<_>>().join("; "),
        Some(other) => other.to_string(),
    }
}

/// The filing as CSV, one line per item keyed by its code: `annex,code,name,value,unit,status,
/// source,meters,coverage_pct`, then the voluntary GPU indicators and the threshold checks.
/// Numbers print as the shortest decimal that reads back as the same f64; a missing value is
/// an empty field, never 0.
pub fn csv(f: &Filing) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("annex,code,name,value,unit,status,source,meters,coverage_pct\n");
    for (annex, items) in [("I", &f.annex_i), ("II", &f.annex_ii), ("III", &f.annex_iii)] {
        for i in &items.0 {
            let _ = writeln!(
                s,
                "{annex},{},{},{},{},{},{},{},{}",
                i.code,
                csv_field(i.name),
                csv_field(&value_text(&i.value)),
                csv_field(i.unit),
                i.status.as_str(),
                csv_field(&i.source),
                csv_field(&i.meters.join(" ")),
                i.coverage_pct.map(|c| c.to_string()).unwrap_or_default()
            );
        }
    }
    if let Some(g) = &f.voluntary.gpu_efficiency {
        let rows: [(&str, &str, &str, Option<f64>); 8] = [
            ("GPU-N", "GPUs with power readings", "", Some(g.gpus as f64)),
            ("GPU-H-POWERED", "GPU-hours powered", "h", Some(g.gpu_hours_powered)),
            ("GPU-H-ALLOCATED", "GPU-hours allocated to jobs", "h", Some(g.gpu_hours_allocated)),
            ("GPU-H-BUSY", "GPU-hours busy", "h", g.gpu_hours_busy),
            ("GPU-ALLOCATED-PCT", "Allocated / powered", "%", g.allocated_pct),
            ("GPU-BUSY-PCT", "Busy / powered", "%", g.busy_pct),
            ("GPU-IDLE-ENERGY-PCT", "Idle energy share of EIT", "%", g.idle_energy_share_pct),
            ("GPU-KWH-PER-BUSY-H", "IT energy per busy GPU-hour", "kWh/h", g.it_kwh_per_busy_gpu_hour),
        ];
        for (code, name, unit, v) in rows {
            let status = if v.is_some() { "metered" } else { "missing" };
            let _ = writeln!(s, "voluntary,{code},{},{},{unit},{status},Kilowatch GPU-aware indicator (docs/report.md),,", csv_field(name), v.map(|x| x.to_string()).unwrap_or_default());
        }
    }
    for (n, c) in f.thresholds.checks.iter().enumerate() {
        let _ = writeln!(
            s,
            "threshold,T{},{},{},{},{},{},,",
            n + 1,
            csv_field(&c.name),
            c.figure.map(|x| x.to_string()).unwrap_or_default(),
            csv_field(&c.limit),
            c.status,
            csv_field(&format!("{} ({})", c.reason, c.source))
        );
    }
    s
}
