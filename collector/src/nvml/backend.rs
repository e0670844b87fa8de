//! [`GpuBackend`] and its NVML implementation over `nvml-wrapper`.
//!
//! Three kinds of failure, three treatments:
//! - a value the GPU or driver does not offer (NOT_SUPPORTED, FUNCTION_NOT_FOUND, a symbol
//!   missing from an older `libnvidia-ml`) is absent for good: logged once, never asked again;
//! - a GPU that stops answering (GPU_IS_LOST, UNKNOWN, TIMEOUT, RESET_REQUIRED, …) is reported
//!   as a `lost` event and retried with exponential backoff counted in sampling cycles, while
//!   the other GPUs go on being sampled;
//! - anything else fails that one value for that one interval.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor, TemperatureThreshold};
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError as WrapError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_MEMORY_TEMP;
use nvml_wrapper::{Device, EventSet, Nvml};
use tracing::{debug, info, warn};

use super::procs::JobResolver;
use super::{GpuEvent, GpuEventKind, GpuProcess, GpuReading, GpuSampleSet, GpuStatic, MigMode, NvmlError};

/// A source of GPU readings: NVML on a real node, something simulated elsewhere. Calls block;
/// run them off the async runtime (`tokio::task::spawn_blocking`).
pub trait GpuBackend: Send {
    /// The GPUs and their static facts, read once when the backend opened.
    fn devices(&mut self) -> Vec<GpuStatic>;
    /// This interval's values for every GPU that answers, plus the events since the last call.
    fn sample(&mut self) -> GpuSampleSet;
}

/// Where NVML and `/proc` are.
#[derive(Debug, Clone)]
pub struct NvmlOptions {
    pub lib_path: PathBuf,
    pub proc_root: PathBuf,
}

impl NvmlOptions {
    pub fn new(lib_path: impl Into<PathBuf>) -> Self {
        NvmlOptions { lib_path: lib_path.into(), proc_root: PathBuf::from("/proc") }
    }
    /// `KILOWATCH_NVML_LIB`, else the config's path, else `libnvidia-ml.so.1`.
    pub fn from_env(config_lib: Option<&Path>) -> Self {
        Self::new(super::resolve_lib_path(config_lib))
    }
    pub fn proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }
}

/// The most sampling cycles a down GPU waits between two attempts.
pub const MAX_BACKOFF_CYCLES: u32 = 60;
/// Bounds the event drain so a storm of events cannot stall a cycle.
const MAX_EVENTS_PER_CYCLE: usize = 64;

/// Cycles to skip after the `failures`-th consecutive failure: 1, 2, 4, … up to 60.
pub fn backoff_cycles(failures: u32) -> u32 {
    1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX).min(MAX_BACKOFF_CYCLES)
}

/// Each value we ask NVML for; the bit of a value the GPU does not offer is set in
/// `Slot::absent` and the value is never asked for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Uuid,
    PciBusId,
    Thresholds,
    Mig,
    Power,
    Energy,
    PowerLimit,
    Temp,
    MemTemp,
    Utilization,
    SmClock,
    MemClock,
    Memory,
    Throttle,
    EccCorrected,
    EccUncorrected,
    PcieReplays,
    Processes,
    Events,
}

impl Field {
    pub const ALL: [Field; 20] = [
        Field::Name,
        Field::Uuid,
        Field::PciBusId,
        Field::Thresholds,
        Field::Mig,
        Field::Power,
        Field::Energy,
        Field::PowerLimit,
        Field::Temp,
        Field::MemTemp,
        Field::Utilization,
        Field::SmClock,
        Field::MemClock,
        Field::Memory,
        Field::Throttle,
        Field::EccCorrected,
        Field::EccUncorrected,
        Field::PcieReplays,
        Field::Processes,
        Field::Events,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Uuid => "uuid",
            Field::PciBusId => "pci_bus_id",
            Field::Thresholds => "temperature_thresholds",
            Field::Mig => "mig_mode",
            Field::Power => "power_usage",
            Field::Energy => "total_energy",
            Field::PowerLimit => "enforced_power_limit",
            Field::Temp => "gpu_temperature",
            Field::MemTemp => "memory_temperature",
            Field::Utilization => "utilization",
            Field::SmClock => "sm_clock",
            Field::MemClock => "mem_clock",
            Field::Memory => "memory_info",
            Field::Throttle => "clock_event_reasons",
            Field::EccCorrected => "ecc_corrected",
            Field::EccUncorrected => "ecc_uncorrected",
            Field::PcieReplays => "pcie_replay_counter",
            Field::Processes => "compute_processes",
            Field::Events => "xid_events",
        }
    }
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

enum Class {
    /// This GPU or driver will never answer this.
    Unsupported,
    /// The GPU itself is in trouble.
    Fault,
    /// Just this value, just now.
    Transient,
}

fn classify(e: &WrapError) -> Class {
    match e {
        WrapError::NotSupported | WrapError::FunctionNotFound | WrapError::FailedToLoadSymbol(_) => Class::Unsupported,
        WrapError::GpuLost
        | WrapError::Unknown
        | WrapError::Timeout
        | WrapError::ResetRequired
        | WrapError::IrqIssue
        | WrapError::OperatingSystem
        | WrapError::InsufficientPower
        | WrapError::Uninitialized
        | WrapError::DriverNotLoaded => Class::Fault,
        _ => Class::Transient,
    }
}

struct Slot {
    statics: GpuStatic,
    /// False while a static fact could not be read because the GPU was down.
    statics_read: bool,
    absent: u32,
    events: Option<EventSet<'static>>,
    last_energy: Option<u64>,
    failures: u32,
    skip: u32,
}

impl Slot {
    fn is_absent(&self, f: Field) -> bool {
        self.absent & f.bit() != 0
    }

    /// Reads one value. `Ok(None)`: absent (for good or for now); `Err`: the GPU is in trouble.
    fn read<T>(&mut self, field: Field, f: impl FnOnce() -> Result<T, WrapError>) -> Result<Option<T>, WrapError> {
        if self.is_absent(field) {
            return Ok(None);
        }
        match f() {
            Ok(v) => Ok(Some(v)),
            Err(e) => self.failed(field, e).map(|()| None),
        }
    }

    fn failed(&mut self, field: Field, e: WrapError) -> Result<(), WrapError> {
        match classify(&e) {
            Class::Unsupported => {
                self.absent |= field.bit();
                info!(gpu = self.statics.index, field = field.name(), reason = %e, "NVML value not offered by this GPU or driver; not asking again");
                Ok(())
            }
            Class::Fault => Err(e),
            Class::Transient => {
                debug!(gpu = self.statics.index, field = field.name(), error = %e, "NVML read failed this interval");
                Ok(())
            }
        }
    }
}

/// NVML initialised once per library path for the life of the process. `Device` and
/// `EventSet` borrow the `Nvml` they came from; keeping it `'static` lets the backend own both
/// without self-reference. The cost is that `nvmlShutdown` is never called, which the driver
/// handles at process exit as for any client that dies.
fn shared_nvml(path: &Path) -> Result<&'static Nvml, NvmlError> {
    static OPENED: Mutex<Vec<(PathBuf, &'static Nvml)>> = Mutex::new(Vec::new());
    let mut opened = OPENED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, nvml)) = opened.iter().find(|(p, _)| p == path) {
        return Ok(nvml);
    }
    let nvml = Nvml::builder().lib_path(path.as_os_str()).init().map_err(|e| init_error(path, e))?;
    let nvml: &'static Nvml = Box::leak(Box::new(nvml));
    opened.push((path.to_owned(), nvml));
    Ok(nvml)
}

fn init_error(path: &Path, e: WrapError) -> NvmlError {
    let path = path.to_owned();
    match e {
        WrapError::LibloadingError(le) => NvmlError::LibraryNotFound { path, detail: le.to_string() },
        WrapError::FailedToLoadSymbol(s) => NvmlError::LibraryNotFound { path, detail: format!("it is not an NVML library (no {s})") },
        WrapError::LibraryNotFound => NvmlError::LibraryNotFound { path, detail: "NVML could not find the driver's libraries".into() },
        WrapError::DriverNotLoaded => NvmlError::DriverNotLoaded { path },
        WrapError::NoPermission => NvmlError::NoPermission { path },
        source => NvmlError::Init { path, source },
    }
}

/// [`GpuBackend`] over the NVIDIA driver.
pub struct NvmlBackend {
    nvml: &'static Nvml,
    slots: Vec<Slot>,
    jobs: JobResolver,
    driver_version: Option<String>,
    /// Events seen while opening, handed out by the first `sample()`.
    pending: Vec<GpuEvent>,
}

impl std::fmt::Debug for NvmlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlBackend").field("gpus", &self.slots.len()).field("driver_version", &self.driver_version).finish()
    }
}

impl NvmlBackend {
    /// Loads NVML from `opts.lib_path`, counts the GPUs, reads their static facts and
    /// registers for XID events. A GPU that fails here is reported as lost by the first
    /// `sample()` and retried like any other.
    pub fn open(opts: NvmlOptions) -> Result<Self, NvmlError> {
        let nvml = shared_nvml(&opts.lib_path)?;
        let count = nvml.device_count().map_err(|source| NvmlError::DeviceCount { path: opts.lib_path.clone(), source })?;
        let driver_version = nvml.sys_driver_version().ok();
        info!(lib = %opts.lib_path.display(), gpus = count, driver = driver_version.as_deref().unwrap_or("?"), "NVML ready");
        let mut me = NvmlBackend { nvml, slots: Vec::with_capacity(count as usize), jobs: JobResolver::new(opts.proc_root), driver_version, pending: Vec::new() };
        for index in 0..count {
            let mut slot = Slot { statics: GpuStatic { index, ..GpuStatic::default() }, statics_read: false, absent: 0, events: None, last_energy: None, failures: 0, skip: 0 };
            let res = nvml.device_by_index(index).and_then(|dev| open_gpu(nvml, &mut slot, &dev));
            if let Err(e) = res {
                gpu_failed(&mut slot, e, &mut me.pending);
            }
            me.slots.push(slot);
        }
        Ok(me)
    }

    pub fn driver_version(&self) -> Option<&str> {
        self.driver_version.as_deref()
    }

    /// The values GPU `index` does not offer (never asked for again).
    pub fn absent_fields(&self, index: u32) -> Vec<&'static str> {
        let Some(slot) = self.slots.get(index as usize) else { return Vec::new() };
        Field::ALL.iter().filter(|f| slot.is_absent(**f)).map(|f| f.name()).collect()
    }
}

/// Static facts and event registration; also run again when a GPU that was down at start
/// comes back.
fn open_gpu(nvml: &'static Nvml, slot: &mut Slot, dev: &Device<'static>) -> Result<(), WrapError> {
    let st = GpuStatic {
        index: slot.statics.index,
        name: slot.read(Field::Name, || dev.name())?,
        uuid: slot.read(Field::Uuid, || dev.uuid())?,
        pci_bus_id: slot.read(Field::PciBusId, || dev.pci_info().map(|p| p.bus_id))?,
        memory_total_bytes: slot.read(Field::Memory, || dev.memory_info().map(|m| m.total))?,
        slowdown_temp_c: slot.read(Field::Thresholds, || dev.temperature_threshold(TemperatureThreshold::Slowdown))?,
        shutdown_temp_c: slot.read(Field::Thresholds, || dev.temperature_threshold(TemperatureThreshold::Shutdown))?,
        mig: slot.read(Field::Mig, || dev.mig_mode())?.map(|m| MigMode { current: m.current != 0, pending: m.pending != 0 }),
    };
    slot.statics = st;
    slot.statics_read = true;
    if slot.events.is_none() {
        let supported = slot.read(Field::Events, || dev.supported_event_types())?;
        if supported.is_some_and(|s| s.contains(EventTypes::CRITICAL_XID_ERROR)) {
            let registered = nvml.create_event_set().and_then(|set| dev.register_events(EventTypes::CRITICAL_XID_ERROR, set).map_err(|e| e.error));
            match registered {
                Ok(set) => slot.events = Some(set),
                Err(e) => slot.failed(Field::Events, e)?,
            }
        }
    }
    Ok(())
}

fn gpu_failed(slot: &mut Slot, e: WrapError, events: &mut Vec<GpuEvent>) {
    slot.failures += 1;
    slot.skip = backoff_cycles(slot.failures);
    let gpu = slot.statics.index;
    if slot.failures == 1 {
        warn!(gpu, error = %e, retry_in_cycles = slot.skip, "GPU stopped answering; the others go on, this one is retried with backoff");
        events.push(GpuEvent { gpu, kind: GpuEventKind::Lost { error: e.to_string() } });
    } else {
        debug!(gpu, error = %e, failures = slot.failures, retry_in_cycles = slot.skip, "GPU still not answering");
    }
}

fn sample_gpu(slot: &mut Slot, dev: &Device<'static>, jobs: &JobResolver, events: &mut Vec<GpuEvent>) -> Result<GpuReading, WrapError> {
    let gpu = slot.statics.index;
    // The energy counter first: it is the value the ledgers are built on.
    let energy_mj = slot.read(Field::Energy, || dev.total_energy_consumption())?;
    if let (Some(prev), Some(cur)) = (slot.last_energy, energy_mj)
        && cur < prev
    {
        warn!(gpu, previous_mj = prev, current_mj = cur, "GPU energy counter went backwards (driver reload or reset); counting from the new value");
        events.push(GpuEvent { gpu, kind: GpuEventKind::CounterReset { previous_mj: prev, current_mj: cur } });
    }
    if energy_mj.is_some() {
        slot.last_energy = energy_mj;
    }
    let power_w = slot.read(Field::Power, || dev.power_usage())?.map(|mw| f64::from(mw) / 1000.0);
    let power_limit_w = slot.read(Field::PowerLimit, || dev.enforced_power_limit())?.map(|mw| f64::from(mw) / 1000.0);
    let temp_c = slot.read(Field::Temp, || dev.temperature(TemperatureSensor::Gpu))?;
    let mem_temp_c = read_mem_temp(slot, dev)?;
    let util = slot.read(Field::Utilization, || dev.utilization_rates())?;
    let sm_clock_mhz = slot.read(Field::SmClock, || dev.clock_info(Clock::SM))?;
    let mem_clock_mhz = slot.read(Field::MemClock, || dev.clock_info(Clock::Memory))?;
    let mem = slot.read(Field::Memory, || dev.memory_info())?;
    let throttle_reasons = slot.read(Field::Throttle, || dev.current_throttle_reasons().map(|r| r.bits()))?;
    let ecc_corrected = slot.read(Field::EccCorrected, || dev.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile))?;
    let ecc_uncorrected = slot.read(Field::EccUncorrected, || dev.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile))?;
    let pcie_replays = slot.read(Field::PcieReplays, || dev.pcie_replay_counter())?.map(u64::from);
    let procs = slot.read(Field::Processes, || dev.running_compute_processes())?.unwrap_or_default();
    let processes = procs
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            used_memory_bytes: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b),
                UsedGpuMemory::Unavailable => None,
            },
            job: jobs.job_of(p.pid),
        })
        .collect();
    let temp_margin_c = match (slot.statics.slowdown_temp_c, temp_c) {
        (Some(slow), Some(t)) => Some(i64::from(slow) - i64::from(t)),
        _ => None,
    };
    Ok(GpuReading {
        index: gpu,
        power_w,
        energy_mj,
        power_limit_w,
        temp_c,
        temp_margin_c,
        mem_temp_c,
        util_pct: util.as_ref().map(|u| u.gpu),
        mem_util_pct: util.as_ref().map(|u| u.memory),
        sm_clock_mhz,
        mem_clock_mhz,
        mem_used_bytes: mem.as_ref().map(|m| m.used),
        mem_total_bytes: mem.as_ref().map(|m| m.total),
        throttle_reasons,
        ecc_corrected,
        ecc_uncorrected,
        pcie_replays,
        processes,
    })
}

/// HBM temperature has no getter of its own; it is field NVML_FI_DEV_MEMORY_TEMP, whose
/// per-field status says NOT_SUPPORTED on GPUs without the sensor.
fn read_mem_temp(slot: &mut Slot, dev: &Device<'static>) -> Result<Option<u32>, WrapError> {
    let Some(mut values) = slot.read(Field::MemTemp, || dev.field_values_for(&[FieldId(NVML_FI_DEV_MEMORY_TEMP)]))? else {
        return Ok(None);
    };
    let Some(sample) = values.pop() else { return Ok(None) };
    match sample.and_then(|s| s.value) {
        Ok(SampleValue::U32(v)) => Ok(Some(v)),
        Ok(SampleValue::U64(v)) => Ok(u32::try_from(v).ok()),
        Ok(SampleValue::I64(v)) => Ok(u32::try_from(v).ok()),
        Ok(SampleValue::F64(v)) => Ok(Some(v.round().max(0.0) as u32)),
        Err(e) => slot.failed(Field::MemTemp, e).map(|()| None),
    }
}

fn drain_events(slot: &mut Slot, events: &mut Vec<GpuEvent>) {
    let Some(set) = slot.events.as_ref() else { return };
    let gpu = slot.statics.index;
    for _ in 0..MAX_EVENTS_PER_CYCLE {
        match set.wait(0) {
            Ok(ev) if ev.event_type.contains(EventTypes::CRITICAL_XID_ERROR) => {
                let code = match ev.event_data {
                    Some(XidError::Value(v)) => v,
                    _ => 0,
                };
                warn!(gpu, xid = code, "XID error");
                events.push(GpuEvent { gpu, kind: GpuEventKind::Xid { code } });
            }
            Ok(_) => {}
            Err(WrapError::Timeout) => return,
            Err(e) => {
                debug!(gpu, error = %e, "XID event wait failed");
                return;
            }
        }
    }
}

impl GpuBackend for NvmlBackend {
    fn devices(&mut self) -> Vec<GpuStatic> {
        self.slots.iter().map(|s| s.statics.clone()).collect()
    }

    fn sample(&mut self) -> GpuSampleSet {
        let mut out = GpuSampleSet { events: std::mem::take(&mut self.pending), ..GpuSampleSet::default() };
        for slot in &mut self.slots {
            let index = slot.statics.index;
            if slot.skip > 0 {
                slot.skip -= 1;
                out.down.push(index);
                continue;
            }
            let res = self.nvml.device_by_index(index).and_then(|dev| {
                if !slot.statics_read {
                    open_gpu(self.nvml, slot, &dev)?;
                }
                sample_gpu(slot, &dev, &self.jobs, &mut out.events)
            });
            match res {
                Ok(reading) => {
                    if slot.failures > 0 {
                        info!(gpu = index, after_failures = slot.failures, "GPU answers again");
                        out.events.push(GpuEvent { gpu: index, kind: GpuEventKind::Recovered });
                        slot.failures = 0;
                    }
                    out.readings.push(reading);
                }
                Err(e) => {
                    gpu_failed(slot, e, &mut out.events);
                    out.down.push(index);
                }
            }
            drain_events(slot, &mut out.events);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let seq: Vec<u32> = (1..=9).map(backoff_cycles).collect();
        assert_eq!(seq, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_cycles(200), MAX_BACKOFF_CYCLES);
    }

    #[test]
    fn field_bits_are_distinct() {
        let all = Field::ALL.iter().fold(0u32, |acc, f| {
            assert_eq!(acc & f.bit(), 0, "{f:?}");
            acc | f.bit()
        });
        assert_eq!(all.count_ones() as usize, Field::ALL.len());
    }
}
