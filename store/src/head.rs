//! Recent samples, compressed as they arrive: each series keeps one open segment per UTC day,
//! encoded in the chunk layout the checkpoint writes as is (`FMT_PACKED`). A sample costs about
//! one byte of timestamp (delta of delta) and one to nine bytes of value (XOR with the previous
//! value, zero bytes dropped), instead of the 32 bytes of a `(i64, Value)` plus vector slack:
//! memory follows the number of series, not the number of samples, and each sample is encoded
//! once on its way to disk.
//!
//! Samples are kept in arrival order: a late or repeated timestamp is appended like any other
//! (its delta is negative or zero) and readers sort and de-duplicate, the last write winning,
//! as they do across chunks.

use super::codec::{CorruptRecord, Reader, put_ivarint, put_uvarint};
use super::{Value, rollup};

/// `chunks.fmt` of a chunk written by [`Segment::to_chunk`]; 0 is the older plain layout.
pub const FMT_PACKED: i64 = 1;

const SAME: u8 = 0;
const TEXT: u8 = 0xFF;

/// One series' samples of one UTC day since the last checkpoint.
#[derive(Debug, Clone)]
pub struct Segment {
    pub day: i64,
    pub n: u32,
    pub t_min: i64,
    pub t_max: i64,
    prev_t: i64,
    prev_d: i64,
    prev_bits: u64,
    /// Bytes the buffer grows by when full (see `push`).
    step: u32,
    buf: Vec<u8>,
}

impl Segment {
    /// `hint`: bytes the series' previous head ended with (0: none). The buffer grows by a
    /// quarter of it (series arrive at steady rates): at most a quarter of slack, where
    /// doubling leaves up to a half, and no room taken ahead while a checkpoint still holds the
    /// previous head (reserving all of it at once doubled the heads' memory at each
    /// checkpoint). Without a previous head, about a minute of 1 Hz samples at a time.
    fn new(day: i64, hint: u32) -> Segment {
        let step = if hint > 0 { hint / 4 + 32 } else { 64 };
        Segment { day, n: 0, t_min: i64::MAX, t_max: i64::MIN, prev_t: 0, prev_d: 0, prev_bits: 0, step, buf: Vec::new() }
    }

    fn push(&mut self, t: i64, v: &Value) {
        // A number takes at most 19 bytes (timestamp, control byte, value); text grows the
        // buffer as a Vec does.
        if self.buf.capacity() - self.buf.len() < 19 {
            self.buf.reserve_exact(self.step as usize);
        }
        if self.n == 0 {
            put_ivarint(&mut self.buf, t);
        } else {
            let d = t.wrapping_sub(self.prev_t);
            put_ivarint(&mut self.buf, d.wrapping_sub(self.prev_d));
            self.prev_d = d;
        }
        self.prev_t = t;
        self.t_min = self.t_min.min(t);
        self.t_max = self.t_max.max(t);
        self.n += 1;
        match v {
            Value::Num(f) => {
                let bits = f.to_bits();
                let x = bits ^ self.prev_bits;
                self.prev_bits = bits;
                if x == 0 {
                    self.buf.push(SAME);
                } else {
                    let lz = (x.leading_zeros() / 8) as usize;
                    let tz = (x.trailing_zeros() / 8) as usize;
                    // x != 0, so lz + tz <= 7 and the control byte is 1..=64.
                    self.buf.push(1 + (lz * 8 + tz) as u8);
                    self.buf.extend_from_slice(&x.to_le_bytes()[tz..8 - lz]);
                }
            }
            Value::Text(s) => {
                self.buf.push(TEXT);
                put_uvarint(&mut self.buf, s.len() as u64);
                self.buf.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// Bytes held, slack included.
    pub fn bytes(&self) -> usize {
        self.buf.capacity() + std::mem::size_of::<Segment>()
    }

    /// The chunk blob of this segment (`FMT_PACKED`): its sample count, then its bytes.
    pub fn to_chunk(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 5);
        put_uvarint(&mut out, u64::from(self.n));
        out.extend_from_slice(&self.buf);
        out
    }

    pub fn decode_into(&self, out: &mut Vec<(i64, Value)>) -> Result<(), CorruptRecord> {
        decode_body(&self.buf, self.n as usize, out)
    }
}

/// Decodes a `FMT_PACKED` chunk blob.
pub fn decode_chunk(data: &[u8], out: &mut Vec<(i64, Value)>) -> Result<(), CorruptRecord> {
    let mut r = Reader::new(data);
    let n = r.uvarint()? as usize;
    decode_body(r.rest(), n, out)
}

fn decode_body(data: &[u8], n: usize, out: &mut Vec<(i64, Value)>) -> Result<(), CorruptRecord> {
    out.reserve(n.min(1 << 20));
    walk_body(data, n, |t, v| {
        out.push((
            t,
            match v {
                Packed::Num(f) => Value::Num(f),
                Packed::Text(s) => Value::Text(s.into()),
            },
        ));
        true
    })?;
    Ok(())
}

/// A packed sample's value, as stored.
pub enum Packed<'a> {
    Num(f64),
    Text(&'a str),
}

/// Walks the `n` samples of a packed body in stored order, while `each` says to go on; false
/// if it stopped early.
pub fn walk_body(data: &[u8], n: usize, mut each: impl FnMut(i64, Packed<'_>) -> bool) -> Result<bool, CorruptRecord> {
    let mut r = Reader::new(data);
    let (mut t, mut d, mut bits) = (0i64, 0i64, 0u64);
    for i in 0..n {
        if i == 0 {
            t = r.ivarint()?;
        } else {
            d = d.wrapping_add(r.ivarint()?);
            t = t.wrapping_add(d);
        }
        let c = r.bytes(1)?[0];
        let v = match c {
            SAME => Packed::Num(f64::from_bits(bits)),
            TEXT => {
                let len = r.uvarint()? as usize;
                Packed::Text(std::str::from_utf8(r.bytes(len)?).map_err(|_| CorruptRecord("text is not UTF-8"))?)
            }
            1..=64 => {
                let k = usize::from(c - 1);
                let (lz, tz) = (k / 8, k % 8);
                if lz + tz > 7 {
                    return Err(CorruptRecord("bad value control byte"));
                }
                let mut a = [0u8; 8];
                a[tz..8 - lz].copy_from_slice(r.bytes(8 - lz - tz)?);
                bits ^= u64::from_le_bytes(a);
                Packed::Num(f64::from_bits(bits))
            }
            _ => return Err(CorruptRecord("bad value control byte")),
        };
        if !each(t, v) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A series' samples since the last checkpoint: its open segments, one per UTC day, oldest
/// first (almost always one).
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub segments: Vec<Segment>,
    /// Bytes the series' previous head ended with: what a new segment reserves.
    hint: u32,
}

impl Head {
    /// The empty head that follows this one at a checkpoint, sized by it.
    pub fn successor(&self) -> Head {
        let hint = self.segments.last().map_or(self.hint, |s| u32::try_from(s.buf.len().min(1 << 16)).unwrap_or(0));
        Head { segments: Vec::new(), hint }
    }

    pub fn push(&mut self, t: i64, v: &Value) {
        let day = t.div_euclid(rollup::DAY);
        let seg = match self.segments.iter().rposition(|s| s.day == day) {
            Some(i) => &mut self.segments[i],
            None => {
                // One segment is the rule: a Vec's first growth would hold four (320 bytes).
                self.segments.reserve_exact(1);
                self.segments.push(Segment::new(day, self.hint));
                self.segments.sort_by_key(|s| s.day);
                let i = self.segments.iter().position(|s| s.day == day).unwrap_or(0);
                &mut self.segments[i]
            }
        };
        seg.push(t, v);
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.segments.iter().map(Segment::bytes).sum()
    }

    pub fn t_min(&self) -> Option<i64> {
        self.segments.iter().map(|s| s.t_min).min()
    }

    /// Every sample, in arrival order within each day.
    pub fn decode_into(&self, out: &mut Vec<(i64, Value)>) -> Result<(), CorruptRecord> {
        for s in &self.segments {
            s.decode_into(out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[(i64, Value)]) -> Vec<(i64, Value)> {
        let mut h = Head::default();
        for (t, v) in samples {
            h.push(*t, v);
        }
        let mut out = Vec::new();
        for s in &h.segments {
            decode_chunk(&s.to_chunk(), &mut out).expect("valid");
        }
        let mut direct = Vec::new();
        h.decode_into(&mut direct).expect("valid");
        assert_eq!(format!("{out:?}"), format!("{direct:?}"));
        out
    }

    #[test]
    fn packs_and_unpacks_bit_exact_in_arrival_order() {
        const S: i64 = 1_000_000_000;
        let t0 = 1_790_812_800 * S;
        let mut samples: Vec<(i64, Value)> = (0..500).map(|i| (t0 + i * S + (i % 7) * 13, Value::Num((i as f64 * 0.37).sin() * 712.123_456_7))).collect();
        samples.push((t0 + 3 * S, Value::Num(-0.0)));
        samples.push((t0 + 3 * S, Value::Num(f64::NAN)));
        samples.push((t0 - 5 * rollup::DAY, Value::Text("free cooling".into())));
        samples.push((i64::MIN, Value::Num(f64::MAX)));
        samples.push((i64::MAX, Value::Num(f64::MIN_POSITIVE)));
        samples.push((t0 + 10 * S, Value::Num(4512.0)));
        samples.push((t0 + 11 * S, Value::Num(4512.0)));
        let out = round_trip(&samples);
        let mut want = samples.clone();
        // Segments come out by day; within a day in arrival order.
        want.sort_by_key(|(t, _)| t.div_euclid(rollup::DAY));
        assert_eq!(out.len(), want.len());
        for ((ta, va), (tb, vb)) in out.iter().zip(&want) {
            assert_eq!(ta, tb);
            match (va, vb) {
                (Value::Num(a), Value::Num(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                (a, b) => assert_eq!(a, b),
            }
        }
    }

    #[test]
    fn a_regular_series_costs_a_few_bytes_a_sample() {
        const S: i64 = 1_000_000_000;
        let mut h = Head::default();
        for i in 0..3600 {
            h.push(1_790_812_800 * S + i * S, &Value::Num(700.0 + (i % 3) as f64 * 0.5));
        }
        let len = h.segments[0].to_chunk().len();
        assert!(len < 3600 * 4, "{len} bytes for 3600 samples");
        let mut out = Vec::new();
        assert!(decode_chunk(&[3, 0], &mut out).is_err());
        assert!(decode_chunk(&[1, 0, 99], &mut out).is_err());
    }
}
