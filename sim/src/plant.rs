//! The cooling plant: outside air through filters, mixed with hot-aisle return air, over
//! cellulose media that can be wetted. No compressors. Like the rest of the simulator the
//! plant is quasi-static (no control lag, no hysteresis), so its state is a pure function of
//! the outside air and the IT heat at that instant.

use crate::psy::{self, CP_AIR, H_FG};
use crate::weather::OutsideAir;

/// Supply set point, °C (ASHRAE recommended is 18–27).
pub const SUPPLY_TARGET_C: f64 = 24.0;
/// Below this outside temperature return air is mixed in to hold the set point; above it the
/// plant runs on outside air alone.
const MIX_BELOW_C: f64 = 23.0;
/// Outside temperature above which the media are wetted: holding free cooling further would
/// push the supply past ~27 °C and make the IT fans (and PUE) pay.
const EVAP_ABOVE_C: f64 = 25.0;
/// Saturation effectiveness of wetted cellulose media at the plant's face velocity.
const MEDIA_EFFECTIVENESS: f64 = 0.85;
/// The plant never supplies colder than this (bottom of its 20–31 °C window).
const SUPPLY_MIN_C: f64 = 20.0;
const SUPPLY_MAX_C: f64 = 31.0;
/// Fan motor heat picked up by the air, K.
const FAN_HEAT_K: f64 = 0.5;
/// Humidify when the supply would fall below this RH (static risk, ASHRAE A1 lower bound with
/// margin) or the outside dew point is below −5 °C.
const HUMIDIFY_BELOW_RH: f64 = 25.0;
const HUMIDIFY_BELOW_DEW_C: f64 = -5.0;
/// Humidification target, supply RH %.
const HUMIDIFY_TARGET_RH: f64 = 45.0;
/// Blowdown keeps dissolved solids in the sump in check: five cycles of concentration means
/// a fifth of the make-up water is drained, i.e. blowdown = evaporation / 4.
const BLOWDOWN_PER_EVAPORATED: f64 = 0.25;
/// Supply air exceeds what the servers draw (containment leakage, hot-aisle bypass).
const AIR_OVERSUPPLY: f64 = 1.12;
/// Site design point (127 nodes): 1.35 MW of IT at an 11 K server ΔT.
const DESIGN_IT_W: f64 = 1_350_000.0;
const DESIGN_DT_K: f64 = 11.0;
/// Pressure the fans work against: a fixed part (filters at their control set point, dampers)
/// and a part growing with flow squared (coils, ducts), Pa at design flow. Fan power =
/// flow × pressure / efficiency, which for the square part is the affinity law's cube.
const P_STATIC_PA: f64 = 420.0;
const P_DYNAMIC_DESIGN_PA: f64 = 900.0;
/// Wetted media add pressure drop, Pa at design flow.
const P_MEDIA_DESIGN_PA: f64 = 140.0;
const FAN_EFFICIENCY: f64 = 0.62;
/// Recirculation pumps on the media of the whole site, W, when water is on.
const PUMPS_W: f64 = 14_000.0;
/// Controls, sensors and actuators of the whole plant, W.
const CONTROLS_W: f64 = 2_500.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Mix,
    Free,
    Evaporative,
    Humidify,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Mix => "mix",
            Mode::Free => "free",
            Mode::Evaporative => "evaporative",
            Mode::Humidify => "humidify",
        }
    }
}

/// What the air handling does with the outside air, independent of load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AirPath {
    pub mode: Mode,
    pub supply_c: f64,
    /// Supply humidity ratio, kg/kg.
    pub supply_w: f64,
    pub supply_rh_pct: f64,
    /// Humidity ratio picked up over the media by the air that crosses them, kg/kg.
    pub media_dw: f64,
}

/// Whole-plant state at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlantState {
    pub path: AirPath,
    pub return_c: f64,
    pub fan_w: f64,
    pub pump_w: f64,
    /// Fans + pumps + controls: the cooling sub-meter.
    pub total_w: f64,
    /// Make-up water, m³/s.
    pub water_m3_s: f64,
}

/// The supply air the plant makes from the outside air. Depends only on the weather.
pub fn air_path(air: &OutsideAir) -> AirPath {
    let w_out = psy::humidity_ratio_from_dew_point(air.dew_point_c);
    if air.temp_c >= EVAP_ABOVE_C {
        // Direct evaporative cooling: outside air through wet media. Very dry hot air could
        // go below the window; the media are then partly bypassed.
        let depression = air.temp_c - air.wet_bulb_c;
        let cooling = (MEDIA_EFFECTIVENESS * depression).min(air.temp_c + FAN_HEAT_K - SUPPLY_MIN_C).max(0.0);
        let media_out = air.temp_c - cooling;
        let media_dw = CP_AIR * cooling / H_FG;
        let supply_w = w_out + media_dw;
        let supply_c = (media_out + FAN_HEAT_K).min(SUPPLY_MAX_C);
        return AirPath { mode: Mode::Evaporative, supply_c, supply_w, supply_rh_pct: psy::rh_from_humidity_ratio(supply_c, supply_w), media_dw };
    }
    if air.temp_c >= MIX_BELOW_C {
        let supply_c = air.temp_c + FAN_HEAT_K;
        return AirPath { mode: Mode::Free, supply_c, supply_w: w_out, supply_rh_pct: psy::rh_from_humidity_ratio(supply_c, w_out), media_dw: 0.0 };
    }
    // Mixing: moisture only enters with outside air and leaves with the exhaust, so in steady
    // state the supply carries the outside humidity ratio.
    let supply_c = SUPPLY_TARGET_C;
    let rh = psy::rh_from_humidity_ratio(supply_c, w_out);
    if rh < HUMIDIFY_BELOW_RH || air.dew_point_c < HUMIDIFY_BELOW_DEW_C {
        let target_w = psy::humidity_ratio_from_dew_point(psy::dew_point(supply_c, HUMIDIFY_TARGET_RH));
        let media_dw = (target_w - w_out).max(0.0);
        return AirPath { mode: Mode::Humidify, supply_c, supply_w: w_out + media_dw, supply_rh_pct: psy::rh_from_humidity_ratio(supply_c, w_out + media_dw), media_dw };
    }
    AirPath { mode: Mode::Mix, supply_c, supply_w: w_out, supply_rh_pct: rh, media_dw: 0.0 }
}

/// Server air temperature rise, K: IT fans spin up with a warmer inlet, so more air carries
/// the same heat with a smaller rise.
#[inline]
pub fn server_dt_k(supply_c: f64) -> f64 {
    (13.0 - 0.35 * (supply_c - SUPPLY_TARGET_C)).clamp(9.0, 15.0)
}

/// The plant at one instant: the air path, and the flows the IT heat calls for. `scale` is the
/// site's size relative to 127 nodes.
pub fn plant_at(air: &OutsideAir, path: AirPath, it_heat_w: f64, scale: f64) -> PlantState {
    let dt = server_dt_k(path.supply_c);
    let return_c = path.supply_c + dt;
    let mass_kg_s = AIR_OVERSUPPLY * it_heat_w.max(0.0) / (CP_AIR * dt);
    let rho = psy::P_ATM / (287.05 * (path.supply_c + 273.15));
    let flow = mass_kg_s / rho;
    let design_mass = AIR_OVERSUPPLY * DESIGN_IT_W * scale / (CP_AIR * DESIGN_DT_K);
    let design_flow = design_mass / 1.18;
    let x = flow / design_flow.max(1e-9);
    // Only outside air crosses the media (evaporative: all of it; humidify: the fresh-air
    // share that the mixing dampers admit to hold the set point).
    let outside_share = match path.mode {
        Mode::Evaporative | Mode::Free => 1.0,
        Mode::Mix | Mode::Humidify => {
            let mixed = path.supply_c - FAN_HEAT_K;
            ((return_c - mixed) / (return_c - air.temp_c).max(1.0)).clamp(0.05, 1.0)
        }
    };
    let wet = path.media_dw > 0.0;
    // The media sit in the outside-air intake, so their drop scales with that share of the flow.
    let media_pa = if wet { P_MEDIA_DESIGN_PA * (x * outside_share).powi(2) } else { 0.0 };
    let fan_w = flow * (P_STATIC_PA + P_DYNAMIC_DESIGN_PA * x * x + media_pa) / FAN_EFFICIENCY;
    // Humidifying wets only the intake section: a third of the pumps.
    let pump_w = match (wet, path.mode) {
        (false, _) => 0.0,
        (true, Mode::Humidify) => PUMPS_W * scale / 3.0,
        (true, _) => PUMPS_W * scale,
    };
    let evaporated_kg_s = if wet { mass_kg_s * outside_share * path.media_dw } else { 0.0 };
    let water_m3_s = evaporated_kg_s * (1.0 + BLOWDOWN_PER_EVAPORATED) / 1000.0;
    let total_w = fan_w + pump_w + CONTROLS_W * scale;
    PlantState { path, return_c, fan_w, pump_w, total_w, water_m3_s }
}
