//! Modbus register maps: where a value lives (function, address), how it is encoded (type,
//! word and byte order, scale, offset) and which wire-schema point it becomes (measurement,
//! field, tags). One map can describe a whole device model and is shared by every device of
//! that model (`deploy/modbus/*.toml`); the plant server uses the same map to encode, so the
//! documented map is the only description of the layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Modbus allows at most 125 registers in one read (function 3 and 4).
pub const MAX_READ: u16 = 125;

#[derive(Debug, thiserror::Error)]
pub enum RegMapError {
    #[error("cannot read register map {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("register map {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("register map {path}: register {index} ({field}): {message}")]
    Invalid { path: PathBuf, index: usize, field: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    /// Function 3, read/write registers.
    Holding,
    /// Function 4, read-only registers (what most meters use for measurements).
    Input,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl RegType {
    pub fn words(self) -> u16 {
        match self {
            RegType::U16 | RegType::I16 => 1,
            RegType::U32 | RegType::I32 | RegType::F32 => 2,
            RegType::U64 | RegType::I64 | RegType::F64 => 4,
        }
    }
    /// Width in bits of an unsigned integer type: where a counter wraps.
    pub fn wrap_bits(self) -> Option<u32> {
        match self {
            RegType::U16 => Some(16),
            RegType::U32 => Some(32),
            _ => None,
        }
    }
}

/// Order of things: `big` = most significant first (Modbus' own byte order, and "ABCD" word
/// order as on Eastron meters); `little` = least significant first ("CDAB" word-swapped
/// floats as on many PLCs and Schneider meters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Big,
    Little,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    #[serde(default = "default_function")]
    pub function: Function,
    /// Zero-based protocol address (a vendor's "30053" or "input register 53" is address 52).
    pub address: u16,
    #[serde(rename = "type")]
    pub ty: RegType,
    #[serde(default)]
    pub word_order: Order,
    #[serde(default)]
    pub byte_order: Order,
    /// value = raw × scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    /// `meter`, `water`, `cooling`, … (the wire schema's measurements).
    pub measurement: String,
    pub field: String,
    /// Tags of this point beyond the device's own (`meter = "grid-a"`, `role = "facility"`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A cumulative counter: a decrease is a rollover (unwrapped) or a reset (event).
    #[serde(default)]
    pub counter: bool,
    /// The register holds a state number: `states[n]` is the string field value.
    #[serde(default)]
    pub states: Vec<String>,
}

fn default_function() -> Function {
    Function::Holding
}
fn one() -> f64 {
    1.0
}

/// A register map file: `[[register]]` entries.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterMap {
    /// What the map describes, for people.
    #[serde(default)]
    pub description: String,
    #[serde(default, rename = "register")]
    pub registers: Vec<Register>,
    /// Plausibility bounds by unit overriding the defaults (`[bounds.w] max = 2e8`); a value
    /// outside them is dropped and counted, not shipped. See docs/facility.md.
    #[serde(default)]
    pub bounds: super::validate::Bounds,
}

impl RegisterMap {
    pub fn load(path: &Path) -> Result<Self, RegMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegMapError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, RegMapError> {
        let map: RegisterMap = toml::from_str(text).map_err(|e| RegMapError::Parse { path: path.to_owned(), message: e.to_string() })?;
        map.validate(path)?;
        Ok(map)
    }

    pub fn validate(&self, path: &Path) -> Result<(), RegMapError> {
        super::validate::check_bounds(&self.bounds).map_err(|message| RegMapError::Parse { path: path.to_owned(), message })?;
        for (index, r) in self.registers.iter().enumerate() {
            let bad = |message: String| RegMapError::Invalid { path: path.to_owned(), index, field: r.field.clone(), message };
            if u32::from(r.address) + u32::from(r.ty.words()) > 65_536 {
                return Err(bad(format!("address {} + {} words runs past 65535", r.address, r.ty.words())));
            }
            if !r.scale.is_finite() || r.scale == 0.0 || !r.offset.is_finite() {
                return Err(bad("scale must be finite and non-zero, offset finite".into()));
            }
            if r.measurement.is_empty() || r.field.is_empty() {
                return Err(bad("measurement and field are required".into()));
            }
            if r.counter && !r.states.is_empty() {
                return Err(bad("a register is a counter or a state, not both".into()));
            }
        }
        Ok(())
    }
}

/// One read request covering several registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub function: Function,
    pub start: u16,
    pub count: u16,
    /// Indices into the map's registers.
    pub members: Vec<usize>,
}

/// Groups registers into as few reads as possible: same function, sorted by address, merged
/// while the gap between neighbours is at most `max_gap` registers (reading a few unused
/// registers is cheaper than a round trip; some devices refuse gaps, so it is configurable)
/// and the read stays within [`MAX_READ`].
pub fn plan_batches(regs: &[Register], max_gap: u16) -> Vec<Batch> {
    let mut order: Vec<usize> = (0..regs.len()).collect();
    order.sort_by_key(|&i| (regs[i].function, regs[i].address));
    let mut out: Vec<Batch> = Vec::new();
    for i in order {
        let r = &regs[i];
        let end = u32::from(r.address) + u32::from(r.ty.words());
        if let Some(b) = out.last_mut()
            && b.function == r.function
        {
            let b_end = u32::from(b.start) + u32::from(b.count);
            let fits = end.max(b_end) - u32::from(b.start) <= u32::from(MAX_READ);
            if u32::from(r.address) <= b_end + u32::from(max_gap) && fits {
                b.count = (end.max(b_end) - u32::from(b.start)) as u16;
                b.members.push(i);
                continue;
            }
        }
        out.push(Batch { function: r.function, start: r.address, count: r.ty.words(), members: vec![i] });
    }
    out
}

/// A decoded register before scaling: integers stay exact (u64 counters do not pass through
/// f64 until the scale is applied).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw {
    Int(i128),
    Float(f64),
}

/// Puts the words of one value in most-significant-first order with each word's bytes
/// most-significant-first.
fn normalise(words: &[u16], word_order: Order, byte_order: Order) -> Vec<u16> {
    let mut w: Vec<u16> = words.to_vec();
    if word_order == Order::Little {
        w.reverse();
    }
    if byte_order == Order::Little {
        for x in &mut w {
            *x = x.swap_bytes();
        }
    }
    w
}

/// Decodes one register's words (exactly `ty.words()` of them).
pub fn decode_raw(r: &Register, words: &[u16]) -> Raw {
    let w = normalise(words, r.word_order, r.byte_order);
    let bits: u64 = w.iter().fold(0u64, |acc, &x| (acc << 16) | u64::from(x));
    match r.ty {
        RegType::U16 | RegType::U32 | RegType::U64 => Raw::Int(i128::from(bits)),
        RegType::I16 => Raw::Int(i128::from(bits as u16 as i16)),
        RegType::I32 => Raw::Int(i128::from(bits as u32 as i32)),
        RegType::I64 => Raw::Int(i128::from(bits as i64)),
        RegType::F32 => Raw::Float(f64::from(f32::from_bits(bits as u32))),
        RegType::F64 => Raw::Float(f64::from_bits(bits)),
    }
}

/// Whether a register reads the pattern devices use for "no value" or a failed sensor: all ones
/// for an unsigned type (0xFFFF, 0xFFFFFFFF: 4.29 GW from a watt register), the most negative
/// number for a signed one (SunSpec's "not implemented"). Floats read NaN then, refused as not
/// finite.
pub fn is_fault_pattern(r: &Register, words: &[u16]) -> bool {
    let w = normalise(words, r.word_order, r.byte_order);
    let bits: u64 = w.iter().fold(0u64, |acc, &x| (acc << 16) | u64::from(x));
    match r.ty {
        RegType::U16 => bits == 0xFFFF,
        RegType::U32 => bits == 0xFFFF_FFFF,
        RegType::U64 => bits == u64::MAX,
        RegType::I16 => bits == 0x8000,
        RegType::I32 => bits == 0x8000_0000,
        RegType::I64 => bits == 1 << 63,
        RegType::F32 | RegType::F64 => false,
    }
}

impl Raw {
    pub fn as_f64(self) -> f64 {
        match self {
            Raw::Int(i) => i as f64,
            Raw::Float(f) => f,
        }
    }
}

/// Applies scale and offset: `raw × scale + offset`. A decimal scale such as 0.1 or 0.01 is
/// applied as a division by its exact inverse (10, 100), which gives the correctly rounded
/// decimal (112 × 0.1 = 11.200000000000001, 112 / 10 = 11.2): what an operator expects to see
/// and what a counter summed over a year should carry.
pub fn apply_scale(raw: f64, scale: f64, offset: f64) -> f64 {
    let inv = 1.0 / scale;
    let v = if scale == 1.0 {
        raw
    } else if inv.fract() == 0.0 && inv.abs() > 1.0 {
        raw / inv
    } else {
        raw * scale
    };
    if offset == 0.0 { v } else { v + offset }
}

pub fn scaled(r: &Register, raw: f64) -> f64 {
    apply_scale(raw, r.scale, r.offset)
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("{value} does not fit a {ty:?} register")]
    OutOfRange { value: f64, ty: RegType },
    #[error("state {0:?} is not in the register's states")]
    UnknownState(String),
}

/// The inverse of decoding, for servers (the simulated plant) and tests: the words that make
/// `value` read back through `r`.
pub fn encode(r: &Register, value: f64) -> Result<Vec<u16>, EncodeError> {
    let raw = (value - r.offset) / r.scale;
    let oor = || EncodeError::OutOfRange { value, ty: r.ty };
    let int = |lo: f64, hi: f64| -> Result<u64, EncodeError> {
        let n = raw.round();
        if !(lo..=hi).contains(&n) {
            return Err(oor());
        }
        Ok(n as i64 as u64)
    };
    let (bits, n): (u64, usize) = match r.ty {
        RegType::U16 => (int(0.0, 65_535.0)?, 1),
        RegType::I16 => (int(-32_768.0, 32_767.0)? & 0xFFFF, 1),
        RegType::U32 => (int(0.0, 4_294_967_295.0)?, 2),
        RegType::I32 => (int(-2_147_483_648.0, 2_147_483_647.0)? & 0xFFFF_FFFF, 2),
        RegType::U64 => (int(0.0, 1.8e19)?, 4),
        RegType::I64 => (int(-9.2e18, 9.2e18)?, 4),
        RegType::F32 => (u64::from((raw as f32).to_bits()), 2),
        RegType::F64 => (raw.to_bits(), 4),
    };
    let be: Vec<u16> = (0..n).rev().map(|i| (bits >> (16 * i)) as u16).collect();
    // normalise() is its own inverse for these two swaps.
    Ok(normalise(&be, r.word_order, r.byte_order))
}

/// Encodes a state name through the register's `states` list.
pub fn encode_state(r: &Register, state: &str) -> Result<Vec<u16>, EncodeError> {
    let n = r.states.iter().position(|s| s == state).ok_or_else(|| EncodeError::UnknownState(state.to_owned()))?;
    encode(r, scaled(r, n as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(ty: RegType, word_order: Order, byte_order: Order) -> Register {
        Register {
            function: Function::Holding,
            address: 0,
            ty,
            word_order,
            byte_order,
            scale: 1.0,
            offset: 0.0,
            measurement: "meter".into(),
            field: "power_w".into(),
            tags: BTreeMap::new(),
            counter: false,
            states: vec![],
        }
    }

    #[test]
    fn float_word_orders() {
        // 1234.5f32 = 0x449A5000: ABCD = [0x449A, 0x5000], CDAB = [0x5000, 0x449A].
        let abcd = reg(RegType::F32, Order::Big, Order::Big);
        assert_eq!(decode_raw(&abcd, &[0x449A, 0x5000]), Raw::Float(1234.5));
        let cdab = reg(RegType::F32, Order::Little, Order::Big);
        assert_eq!(decode_raw(&cdab, &[0x5000, 0x449A]), Raw::Float(1234.5));
        let badc = reg(RegType::F32, Order::Big, Order::Little);
        assert_eq!(decode_raw(&badc, &[0x9A44, 0x0050]), Raw::Float(1234.5));
        for r in [abcd, cdab, badc] {
            assert_eq!(decode_raw(&r, &encode(&r, 1234.5).expect("enc")), Raw::Float(1234.5));
        }
    }

    #[test]
    fn integers_scale_and_round_trip() {
        let mut r = reg(RegType::I16, Order::Big, Order::Big);
        r.scale = 0.1;
        assert_eq!(decode_raw(&r, &[0xFF9C]), Raw::Int(-100));
        assert_eq!(scaled(&r, -100.0), -10.0);
        // Decimal scales give the correctly rounded decimal, and encoding round-trips.
        assert_eq!(scaled(&r, 112.0), 11.2);
        for n in [-400i64, -1, 0, 1, 235, 799] {
            let v = n as f64 / 10.0;
            let w = encode(&r, v).expect("enc");
            assert_eq!(scaled(&r, decode_raw(&r, &w).as_f64()), v, "{n}");
        }
        let r = reg(RegType::U32, Order::Little, Order::Big);
        assert_eq!(decode_raw(&r, &[0x0002, 0x0001]), Raw::Int(0x0001_0002));
        let r = reg(RegType::F64, Order::Big, Order::Big);
        let v = 4_123_456.789_012_345_6;
        assert_eq!(decode_raw(&r, &encode(&r, v).expect("enc")), Raw::Float(v));
        assert!(encode(&reg(RegType::U16, Order::Big, Order::Big), 70_000.0).is_err());
    }

    #[test]
    fn batches_merge_small_gaps_only() {
        let mut regs = Vec::new();
        for (a, t) in [(0u16, RegType::F32), (2, RegType::F32), (6, RegType::F32), (200, RegType::U16), (124, RegType::F32)] {
            let mut r = reg(t, Order::Big, Order::Big);
            r.address = a;
            regs.push(r);
        }
        let mut input = reg(RegType::U16, Order::Big, Order::Big);
        input.function = Function::Input;
        regs.push(input);
        let b = plan_batches(&regs, 4);
        assert_eq!(b.len(), 4, "{b:?}");
        assert_eq!((b[0].start, b[0].count, b[0].members.clone()), (0, 8, vec![0, 1, 2]));
        assert_eq!((b[1].start, b[1].count), (124, 2));
        assert_eq!((b[2].start, b[2].count), (200, 1));
        assert_eq!(b[3].function, Function::Input);
        // Never more than 125 registers in one read.
        let many: Vec<Register> = (0..100u16)
            .map(|i| {
                let mut r = reg(RegType::F32, Order::Big, Order::Big);
                r.address = i * 2;
                r
            })
            .collect();
        assert!(plan_batches(&many, 0).iter().all(|b| b.count <= MAX_READ));
        assert_eq!(plan_batches(&many, 0).len(), 2);
    }

    #[test]
    fn mistyped_key_is_named() {
        let e = RegisterMap::parse("[[register]]\naddress = 0\ntype = \"f32\"\nmeasurment = \"meter\"\nfield = \"x\"\n", Path::new("m.toml")).expect_err("typo");
        assert!(e.to_string().contains("measurment"), "{e}");
    }
}
