//! A fake `libnvidia-ml.so` for tests: it exports the NVML C functions Kilowatch's collector
//! calls, with `nvml-wrapper-sys`'s own types for the ABI, and answers from a scenario file
//! (see [`scenario`]). Loaded by the real `nvml-wrapper` through `Nvml::builder().lib_path()`.
//! Never installed or shipped.
//!
//! Where the scenario comes from: `fake-nvml.toml` in the same folder as the loaded `.so`
//! (so each test copies the library into its own temp folder and gets its own independent
//! instance: glibc loads a copy with a different inode as a separate object), else the file
//! named by `FAKE_NVML_SCENARIO`.
//!
//! Deliberately NOT exported: `nvmlDeviceGetPcieReplayCounter`, so the collector's handling
//! of a symbol missing from an older driver is exercised on every run.

// Exporting C functions, writing through the caller's out-pointers and calling dladdr is the
// whole point of this crate, so the workspace's `unsafe_code = "deny"` is lifted here only.
#![allow(unsafe_code)]
#![allow(non_snake_case, non_upper_case_globals, clippy::missing_safety_doc)]

pub mod scenario;

use std::collections::VecDeque;
use std::ffi::{CStr, c_char, c_int, c_uint, c_ulonglong, c_void};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use nvml_wrapper_sys::bindings::*;

use crate::scenario::Scenario;

struct EventSet {
    /// Registered (gpu index, event mask) pairs.
    devices: Vec<(usize, u64)>,
}

struct Fake {
    scenario: Scenario,
    /// Handle lookups per GPU; the frame is `lookups - 1`.
    lookups: Vec<usize>,
    pending_xids: Vec<VecDeque<u64>>,
    sets: Vec<Option<EventSet>>,
    log: Option<File>,
    refcount: usize,
}

static STATE: Mutex<Option<Fake>> = Mutex::new(None);

const OK: nvmlReturn_t = nvmlReturn_enum_NVML_SUCCESS;

fn error_code(name: &str) -> nvmlReturn_t {
    match name {
        "gpu_lost" => nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST,
        "timeout" => nvmlReturn_enum_NVML_ERROR_TIMEOUT,
        "not_supported" => nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
        "no_permission" => nvmlReturn_enum_NVML_ERROR_NO_PERMISSION,
        "reset_required" => nvmlReturn_enum_NVML_ERROR_RESET_REQUIRED,
        _ => nvmlReturn_enum_NVML_ERROR_UNKNOWN,
    }
}

/// The path of this very `.so`, from the dynamic loader.
fn own_path() -> Option<PathBuf> {
    #[repr(C)]
    struct DlInfo {
        fname: *const c_char,
        fbase: *mut c_void,
        sname: *const c_char,
        saddr: *mut c_void,
    }
    unsafe extern "C" {
        fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
    }
    let mut info = DlInfo { fname: std::ptr::null(), fbase: std::ptr::null_mut(), sname: std::ptr::null(), saddr: std::ptr::null_mut() };
    // SAFETY: dladdr only reads the address and fills `info`; fname points into the loader's
    // own tables, valid while the library is loaded.
    let found = unsafe { dladdr(own_path as *const c_void, &mut info) };
    if found == 0 || info.fname.is_null() {
        return None;
    }
    let name = unsafe { CStr::from_ptr(info.fname) };
    Some(PathBuf::from(name.to_string_lossy().into_owned()))
}

fn load_scenario() -> Result<Scenario, String> {
    let beside = own_path().and_then(|p| p.parent().map(|d| d.join("fake-nvml.toml"))).filter(|p| p.exists());
    let path = match beside {
        Some(p) => p,
        None => std::env::var_os("FAKE_NVML_SCENARIO").map(PathBuf::from).ok_or("no fake-nvml.toml beside the library and FAKE_NVML_SCENARIO is not set")?,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn init() -> nvmlReturn_t {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(fake) = guard.as_mut() {
        fake.refcount += 1;
        return OK;
    }
    let scenario = match load_scenario() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-nvml: {e}");
            return nvmlReturn_enum_NVML_ERROR_UNKNOWN;
        }
    };
    if !scenario.driver_loaded {
        return nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED;
    }
    let n = scenario.gpu.len();
    let log = scenario.call_log.as_ref().and_then(|p| File::options().create(true).append(true).open(p).ok());
    *guard = Some(Fake { scenario, lookups: vec![0; n], pending_xids: vec![VecDeque::new(); n], sets: Vec::new(), log, refcount: 1 });
    OK
}

/// Runs `f` on the state and the GPU behind `device`, after logging the call and applying the
/// scenario's faults and unsupported getters.
fn with_gpu(sym: &str, getter: &str, device: nvmlDevice_t, f: impl FnOnce(&scenario::Gpu, usize) -> nvmlReturn_t) -> nvmlReturn_t {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fake) = guard.as_mut() else { return nvmlReturn_enum_NVML_ERROR_UNINITIALIZED };
    let idx = (device as usize).wrapping_sub(1);
    if let Some(log) = fake.log.as_mut() {
        let _ = writeln!(log, "{sym} {idx}");
    }
    let Some(gpu) = fake.scenario.gpu.get(idx) else { return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT };
    let frame = fake.lookups[idx].saturating_sub(1);
    if let Some(err) = gpu.fault_at(frame) {
        return error_code(err);
    }
    if gpu.not_supported.iter().any(|g| g == getter) {
        return nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
    }
    if gpu.function_not_found.iter().any(|g| g == getter) {
        return nvmlReturn_enum_NVML_ERROR_FUNCTION_NOT_FOUND;
    }
    f(gpu, frame)
}

/// Writes `s` as a NUL-terminated string into a caller buffer of `len` bytes.
unsafe fn write_str(s: &str, buf: *mut c_char, len: usize) -> nvmlReturn_t {
    if buf.is_null() {
        return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
    }
    if s.len() + 1 > len {
        return nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr().cast::<c_char>(), buf, s.len());
        *buf.add(s.len()) = 0;
    }
    OK
}

macro_rules! out {
    ($ptr:expr, $v:expr) => {{
        if $ptr.is_null() {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        unsafe { *$ptr = $v };
        OK
    }};
}

fn uuid_of(gpu: &scenario::Gpu, idx: usize) -> String {
    gpu.uuid.clone().unwrap_or_else(|| format!("GPU-00000000-0000-0000-0000-{idx:012x}"))
}
fn bus_id_of(gpu: &scenario::Gpu, idx: usize) -> String {
    gpu.pci_bus_id.clone().unwrap_or_else(|| format!("00000000:{:02X}:00.0", 0x18 + idx))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    init()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    init()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_mut() {
        None => nvmlReturn_enum_NVML_ERROR_UNINITIALIZED,
        Some(f) if f.refcount > 1 => {
            f.refcount -= 1;
            OK
        }
        Some(_) => {
            *guard = None;
            OK
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    let s: &'static CStr = match result {
        nvmlReturn_enum_NVML_SUCCESS => c"Success",
        nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED => c"Not Supported",
        nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST => c"GPU is lost",
        nvmlReturn_enum_NVML_ERROR_TIMEOUT => c"Timeout",
        nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED => c"Driver Not Loaded",
        _ => c"Unknown Error",
    };
    s.as_ptr()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    let guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fake) = guard.as_ref() else { return nvmlReturn_enum_NVML_ERROR_UNINITIALIZED };
    unsafe { write_str(&fake.scenario.driver_version, version, length as usize) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    let guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fake) = guard.as_ref() else { return nvmlReturn_enum_NVML_ERROR_UNINITIALIZED };
    out!(count, fake.scenario.gpu.len() as c_uint)
}

/// Also the fake's clock: each lookup of a GPU advances that GPU to its next frame.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut nvmlDevice_t) -> nvmlReturn_t {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fake) = guard.as_mut() else { return nvmlReturn_enum_NVML_ERROR_UNINITIALIZED };
    let idx = index as usize;
    if idx >= fake.scenario.gpu.len() || device.is_null() {
        return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
    }
    if let Some(log) = fake.log.as_mut() {
        let _ = writeln!(log, "nvmlDeviceGetHandleByIndex_v2 {idx}");
    }
    fake.lookups[idx] += 1;
    let frame = fake.lookups[idx] - 1;
    for xid in fake.scenario.gpu[idx].xids.iter().filter(|x| x.frame == frame) {
        fake.pending_xids[idx].push_back(xid.code);
    }
    // Handles are opaque to the caller; index + 1 keeps them non-null.
    out!(device, (idx + 1) as nvmlDevice_t)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetIndex", "index", device, |_, _| out!(index, (device as usize - 1) as c_uint))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(device: nvmlDevice_t, name: *mut c_char, length: c_uint) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetName", "name", device, |g, _| unsafe { write_str(&g.name, name, length as usize) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(device: nvmlDevice_t, uuid: *mut c_char, length: c_uint) -> nvmlReturn_t {
    let idx = (device as usize).wrapping_sub(1);
    with_gpu("nvmlDeviceGetUUID", "uuid", device, |g, _| unsafe { write_str(&uuid_of(g, idx), uuid, length as usize) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(device: nvmlDevice_t, pci: *mut nvmlPciInfo_t) -> nvmlReturn_t {
    let idx = (device as usize).wrapping_sub(1);
    with_gpu("nvmlDeviceGetPciInfo_v3", "pci", device, |g, _| {
        if pci.is_null() {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        let bus_id = bus_id_of(g, idx);
        // SAFETY: `pci` is the caller's zeroed struct; the strings fit their arrays (checked).
        unsafe {
            let p = &mut *pci;
            p.domain = 0;
            p.bus = (0x18 + idx) as c_uint;
            p.device = 0;
            p.pciDeviceId = 0x2330_10de;
            p.pciSubSystemId = 0x16c1_10de;
            let legacy = bus_id.get(4..).unwrap_or(&bus_id);
            let r = write_str(&bus_id, p.busId.as_mut_ptr(), p.busId.len());
            if r != OK {
                return r;
            }
            write_str(legacy, p.busIdLegacy.as_mut_ptr(), p.busIdLegacy.len())
        }
    })
}

macro_rules! simple_getter {
    ($fn_name:ident, $getter:literal, $ty:ty, $field:ident) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $fn_name(device: nvmlDevice_t, value: *mut $ty) -> nvmlReturn_t {
            with_gpu(stringify!($fn_name), $getter, device, |g, f| out!(value, g.$field.at(f) as $ty))
        }
    };
}

simple_getter!(nvmlDeviceGetPowerUsage, "power", c_uint, power_mw);
simple_getter!(nvmlDeviceGetTotalEnergyConsumption, "energy", c_ulonglong, energy_mj);
simple_getter!(nvmlDeviceGetEnforcedPowerLimit, "power_limit", c_uint, power_limit_mw);
simple_getter!(nvmlDeviceGetCurrentClocksThrottleReasons, "throttle", c_ulonglong, throttle);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(device: nvmlDevice_t, _sensor: nvmlTemperatureSensors_t, temp: *mut c_uint) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetTemperature", "temp", device, |g, f| out!(temp, g.temp_c.at(f) as c_uint))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTemperatureThreshold(device: nvmlDevice_t, kind: nvmlTemperatureThresholds_t, temp: *mut c_uint) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetTemperatureThreshold", "threshold", device, |g, f| match kind {
        nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_SHUTDOWN => out!(temp, g.shutdown_c.at(f) as c_uint),
        nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_SLOWDOWN => out!(temp, g.slowdown_c.at(f) as c_uint),
        _ => nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
    })
}

/// Only NVML_FI_DEV_MEMORY_TEMP is known; other ids come back NOT_SUPPORTED in their slot,
/// as the real driver does for fields a GPU lacks.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetFieldValues(device: nvmlDevice_t, count: c_int, values: *mut nvmlFieldValue_t) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetFieldValues", "fields", device, |g, f| {
        if values.is_null() || count < 0 {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        let mem_temp_supported = !g.not_supported.iter().any(|n| n == "mem_temp");
        // SAFETY: the caller passes `count` initialised structs.
        let slots = unsafe { std::slice::from_raw_parts_mut(values, count as usize) };
        for v in slots {
            if v.fieldId == field_id::NVML_FI_DEV_MEMORY_TEMP && mem_temp_supported {
                v.valueType = nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT;
                v.value.uiVal = g.mem_temp_c.at(f) as c_uint;
                v.nvmlReturn = OK;
            } else {
                v.nvmlReturn = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
            }
        }
        OK
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(device: nvmlDevice_t, util: *mut nvmlUtilization_t) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetUtilizationRates", "utilization", device, |g, f| out!(util, nvmlUtilization_t { gpu: g.util_gpu.at(f) as c_uint, memory: g.util_mem.at(f) as c_uint }))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(device: nvmlDevice_t, kind: nvmlClockType_t, clock: *mut c_uint) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetClockInfo", "clock", device, |g, f| match kind {
        nvmlClockType_enum_NVML_CLOCK_SM | nvmlClockType_enum_NVML_CLOCK_GRAPHICS => out!(clock, g.sm_clock.at(f) as c_uint),
        nvmlClockType_enum_NVML_CLOCK_MEM => out!(clock, g.mem_clock.at(f) as c_uint),
        _ => nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(device: nvmlDevice_t, mem: *mut nvmlMemory_v2_t) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetMemoryInfo_v2", "memory", device, |g, f| {
        if mem.is_null() {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        let total = g.memory_total.at(f);
        let used = g.memory_used.at(f).min(total);
        // SAFETY: checked non-null; the caller owns the struct.
        unsafe {
            (*mem).total = total;
            (*mem).used = used;
            (*mem).reserved = 0;
            (*mem).free = total - used;
        }
        OK
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTotalEccErrors(device: nvmlDevice_t, kind: nvmlMemoryErrorType_t, _counter: nvmlEccCounterType_t, count: *mut c_ulonglong) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetTotalEccErrors", "ecc", device, |g, f| match kind {
        nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_CORRECTED => out!(count, g.ecc_corrected.at(f)),
        _ => out!(count, g.ecc_uncorrected.at(f)),
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(device: nvmlDevice_t, current: *mut c_uint, pending: *mut c_uint) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetMigMode", "mig", device, |g, _| {
        if pending.is_null() {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        unsafe { *pending = g.mig_pending };
        out!(current, g.mig_current)
    })
}

/// NVML's two-call protocol: a null or too small buffer gets INSUFFICIENT_SIZE and the count.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(device: nvmlDevice_t, count: *mut c_uint, infos: *mut nvmlProcessInfo_t) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetComputeRunningProcesses_v3", "processes", device, |g, f| {
        if count.is_null() {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        let live: Vec<&scenario::Process> = g.processes.iter().filter(|p| p.from <= f && f < p.until).collect();
        // SAFETY: checked non-null; `infos` holds `*count` entries when non-null.
        unsafe {
            let room = *count as usize;
            *count = live.len() as c_uint;
            if live.is_empty() {
                return OK;
            }
            if infos.is_null() || room < live.len() {
                return nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
            }
            for (i, p) in live.iter().enumerate() {
                *infos.add(i) = nvmlProcessInfo_t { pid: p.pid, usedGpuMemory: p.used_memory, gpuInstanceId: u32::MAX, computeInstanceId: u32::MAX };
            }
        }
        OK
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSupportedEventTypes(device: nvmlDevice_t, types: *mut c_ulonglong) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetSupportedEventTypes", "events", device, |_, _| out!(types, (nvmlEventTypeXidCriticalError | nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError) as c_ulonglong))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut nvmlEventSet_t) -> nvmlReturn_t {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fake) = guard.as_mut() else { return nvmlReturn_enum_NVML_ERROR_UNINITIALIZED };
    fake.sets.push(Some(EventSet { devices: Vec::new() }));
    out!(set, fake.sets.len() as nvmlEventSet_t)
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlEventSetFree(set: nvmlEventSet_t) -> nvmlReturn_t {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fake) = guard.as_mut() else { return nvmlReturn_enum_NVML_ERROR_UNINITIALIZED };
    match fake.sets.get_mut((set as usize).wrapping_sub(1)) {
        Some(slot) => {
            *slot = None;
            OK
        }
        None => nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceRegisterEvents(device: nvmlDevice_t, types: c_ulonglong, set: nvmlEventSet_t) -> nvmlReturn_t {
    let idx = (device as usize).wrapping_sub(1);
    let r = with_gpu("nvmlDeviceRegisterEvents", "events", device, |_, _| OK);
    if r != OK {
        return r;
    }
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fake) = guard.as_mut() else { return nvmlReturn_enum_NVML_ERROR_UNINITIALIZED };
    match fake.sets.get_mut((set as usize).wrapping_sub(1)) {
        Some(Some(s)) => {
            s.devices.push((idx, types));
            OK
        }
        _ => nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
    }
}

/// Never blocks: the collector always waits 0 ms, and a test must not hang on a fake.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetWait_v2(set: nvmlEventSet_t, data: *mut nvmlEventData_t, _timeout_ms: c_uint) -> nvmlReturn_t {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fake) = guard.as_mut() else { return nvmlReturn_enum_NVML_ERROR_UNINITIALIZED };
    let Some(Some(s)) = fake.sets.get((set as usize).wrapping_sub(1)) else { return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT };
    let targets: Vec<usize> = s.devices.iter().filter(|(_, mask)| mask & nvmlEventTypeXidCriticalError as u64 != 0).map(|(i, _)| *i).collect();
    if let Some(log) = fake.log.as_mut() {
        let _ = writeln!(log, "nvmlEventSetWait_v2 {}", targets.first().copied().unwrap_or(usize::MAX));
    }
    for idx in targets {
        if let Some(code) = fake.pending_xids[idx].pop_front() {
            if data.is_null() {
                return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
            }
            // SAFETY: checked non-null; the caller owns the struct.
            unsafe {
                *data = nvmlEventData_t {
                    device: (idx + 1) as nvmlDevice_t,
                    eventType: nvmlEventTypeXidCriticalError as c_ulonglong,
                    eventData: code,
                    gpuInstanceId: u32::MAX,
                    computeInstanceId: u32::MAX,
                };
            }
            return OK;
        }
    }
    nvmlReturn_enum_NVML_ERROR_TIMEOUT
}
