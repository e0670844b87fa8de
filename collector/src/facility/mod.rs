//! The facility role of the collector: energy meters, water totalisers and evaporative cooling
//! units over Modbus TCP, validated before they leave (ranges, frozen sensors, counter
//! rollovers and swaps, silent devices), plus a simulated plant that serves the simulator over
//! Modbus for the demo and the end-to-end tests.

pub mod derive;
pub mod modbus;
pub mod plant_server;
pub mod redfish;
pub mod regmap;
pub mod snmp;
pub mod validate;

use serde::Deserialize;

pub use modbus::{ModbusDevice, ModbusSource};

/// `[facility]` in the collector configuration. One section for every facility protocol keeps
/// the shared `CollectorConfig` to a single added field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilityConfig {
    /// `site` tag of every facility point (default `dc5`).
    #[serde(default = "default_site")]
    pub site: String,
    /// Modbus TCP devices (`[[facility.modbus]]`).
    #[serde(default)]
    pub modbus: Vec<ModbusDevice>,
    /// SNMP v2c agents: UPSs and rack PDUs (`[[facility.snmp]]`).
    #[serde(default)]
    pub snmp: Vec<snmp::SnmpDevice>,
    /// Redfish BMCs for node power (`[[facility.redfish]]`).
    #[serde(default)]
    pub redfish: Vec<redfish::RedfishDevice>,
}

fn default_site() -> String {
    "dc5".into()
}

impl FacilityConfig {
    /// Tags every facility point carries.
    pub fn site_tags(&self) -> kilowatch_model::Labels {
        [("site".to_owned(), self.site.clone())].into_iter().collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FacilityError {
    #[error(transparent)]
    Modbus(#[from] modbus::ModbusError),
    #[error(transparent)]
    Snmp(#[from] snmp::SnmpError),
    #[error(transparent)]
    Redfish(#[from] redfish::RedfishError),
}

/// The sources a `[facility]` section asks for; `base_dir` resolves relative paths (register
/// maps, CA files) from the configuration file's folder.
pub fn sources(cfg: &FacilityConfig, base_dir: &std::path::Path) -> Result<Vec<Box<dyn crate::source::Source>>, FacilityError> {
    let mut out: Vec<Box<dyn crate::source::Source>> = Vec::new();
    if !cfg.modbus.is_empty() {
        out.push(Box::new(ModbusSource::new(&cfg.modbus, base_dir, &cfg.site_tags())?));
    }
    if !cfg.snmp.is_empty() {
        out.push(Box::new(snmp::SnmpSource::new(&cfg.snmp, base_dir, &cfg.site_tags())?));
    }
    if !cfg.redfish.is_empty() {
        out.push(Box::new(redfish::RedfishSource::new(&cfg.redfish, base_dir, &cfg.site_tags())?));
    }
    Ok(out)
}
