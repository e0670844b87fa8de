//! The byte layout of stored samples: the older request-log records, plain chunks and blocks
//! (packed chunks are in `head.rs`).
//! Varints keep timestamps small (consecutive samples are seconds apart); values stay raw
//! `f64` so that stored energy is bit-exact with what was sent.

use super::{SeriesId, Value};

#[derive(Debug, thiserror::Error)]
#[error("corrupt stored record: {0}")]
pub struct CorruptRecord(pub &'static str);

pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub fn put_ivarint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn uvarint(&mut self) -> Result<u64, CorruptRecord> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = *self.buf.get(self.pos).ok_or(CorruptRecord("truncated varint"))?;
            self.pos += 1;
            if shift >= 64 {
                return Err(CorruptRecord("varint too long"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }
    pub fn ivarint(&mut self) -> Result<i64, CorruptRecord> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CorruptRecord> {
        let end = self.pos.checked_add(n).ok_or(CorruptRecord("length overflow"))?;
        let s = self.buf.get(self.pos..end).ok_or(CorruptRecord("truncated bytes"))?;
        self.pos = end;
        Ok(s)
    }
    pub fn rest_is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }
    pub fn f32(&mut self) -> Result<f32, CorruptRecord> {
        let b = self.bytes(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(f32::from_le_bytes(a))
    }
    pub fn f64(&mut self) -> Result<f64, CorruptRecord> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }
}

const TAG_NUM: u8 = 0;
const TAG_TEXT: u8 = 1;

pub fn put_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Num(f) => {
            buf.push(TAG_NUM);
            buf.extend_from_slice(&f.to_le_bytes());
        }
        Value::Text(s) => {
            buf.push(TAG_TEXT);
            put_uvarint(buf, s.len() as u64);
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

pub fn get_value(r: &mut Reader<'_>) -> Result<Value, CorruptRecord> {
    match r.bytes(1)?[0] {
        TAG_NUM => Ok(Value::Num(r.f64()?)),
        TAG_TEXT => {
            let n = r.uvarint()? as usize;
            let s = std::str::from_utf8(r.bytes(n)?).map_err(|_| CorruptRecord("text is not UTF-8"))?;
            Ok(Value::Text(s.into()))
        }
        _ => Err(CorruptRecord("unknown value tag")),
    }
}

/// A record of the request log an older version kept in SQLite: rows of (series, timestamp,
/// value) exactly as accepted. Only read now (`Inner::load`), and written by tests.
#[cfg(test)]
pub fn encode_rows(rows: &[(SeriesId, i64, Value)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(rows.len() * 14 + 4);
    put_uvarint(&mut buf, rows.len() as u64);
    for (sid, ts, v) in rows {
        put_uvarint(&mut buf, u64::from(*sid));
        put_ivarint(&mut buf, *ts);
        put_value(&mut buf, v);
    }
    buf
}

pub fn decode_rows(data: &[u8]) -> Result<Vec<(SeriesId, i64, Value)>, CorruptRecord> {
    let mut r = Reader::new(data);
    let n = r.uvarint()? as usize;
    let mut rows = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let sid = SeriesId::try_from(r.uvarint()?).map_err(|_| CorruptRecord("series id out of range"))?;
        let ts = r.ivarint()?;
        rows.push((sid, ts, get_value(&mut r)?));
    }
    Ok(rows)
}

/// A chunk: one series' samples sorted by time, timestamps as deltas.
pub fn encode_chunk(samples: &[(i64, Value)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(samples.len() * 11 + 4);
    put_uvarint(&mut buf, samples.len() as u64);
    let mut prev = 0i64;
    for (ts, v) in samples {
        put_ivarint(&mut buf, ts.wrapping_sub(prev));
        prev = *ts;
        put_value(&mut buf, v);
    }
    buf
}

pub fn decode_chunk(data: &[u8], out: &mut Vec<(i64, Value)>) -> Result<(), CorruptRecord> {
    let mut r = Reader::new(data);
    let n = r.uvarint()? as usize;
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(r.ivarint()?);
        out.push((prev, get_value(&mut r)?));
    }
    Ok(())
}

/// Decodes a chunk of either layout (`chunks.fmt`).
pub fn decode_chunk_fmt(fmt: i64, data: &[u8], out: &mut Vec<(i64, Value)>) -> Result<(), CorruptRecord> {
    match fmt {
        0 => decode_chunk(data, out),
        super::head::FMT_PACKED => super::head::decode_chunk(data, out),
        _ => Err(CorruptRecord("unknown chunk format")),
    }
}

const BLOCK_PLAIN: u8 = 0;
const BLOCK_PCO: u8 = 1;

/// A compacted block: samples of one series, sorted, one per timestamp. Numeric blocks are two
/// columns compressed with pco (lossless: values come back bit for bit); blocks holding text
/// keep the chunk layout.
pub fn encode_block(samples: &[(i64, Value)]) -> Vec<u8> {
    let mut ts = Vec::with_capacity(samples.len());
    let mut vs = Vec::with_capacity(samples.len());
    for (t, v) in samples {
        match v {
            Value::Num(f) => {
                ts.push(*t);
                vs.push(*f);
            }
            Value::Text(_) => break,
        }
    }
    if ts.len() == samples.len() {
        let cfg = pco::ChunkConfig::default();
        if let (Ok(a), Ok(b)) = (pco::standalone::simple_compress(&ts, &cfg), pco::standalone::simple_compress(&vs, &cfg)) {
            let mut buf = Vec::with_capacity(a.len() + b.len() + 8);
            buf.push(BLOCK_PCO);
            put_uvarint(&mut buf, a.len() as u64);
            buf.extend_from_slice(&a);
            buf.extend_from_slice(&b);
            return buf;
        }
    }
    let mut buf = vec![BLOCK_PLAIN];
    buf.extend_from_slice(&encode_chunk(samples));
    buf
}

pub fn decode_block(data: &[u8], out: &mut Vec<(i64, Value)>) -> Result<(), CorruptRecord> {
    match decode_block_columns(data)? {
        Some((ts, vs)) => {
            out.extend(ts.into_iter().zip(vs).map(|(t, v)| (t, Value::Num(v))));
            Ok(())
        }
        None => decode_chunk(Reader::new(data).rest().get(1..).unwrap_or(&[]), out),
    }
}

/// A numeric block's two columns, timestamps and values; `None` for a block in the chunk
/// layout (one holding text).
pub fn decode_block_columns(data: &[u8]) -> Result<Option<(Vec<i64>, Vec<f64>)>, CorruptRecord> {
    let mut r = Reader::new(data);
    match r.bytes(1)?[0] {
        BLOCK_PLAIN => Ok(None),
        BLOCK_PCO => {
            let n = r.uvarint()? as usize;
            let ts: Vec<i64> = pco::standalone::simple_decompress(r.bytes(n)?).map_err(|_| CorruptRecord("bad timestamp column"))?;
            let vs: Vec<f64> = pco::standalone::simple_decompress(r.rest()).map_err(|_| CorruptRecord("bad value column"))?;
            if ts.len() != vs.len() {
                return Err(CorruptRecord("block columns differ in length"));
            }
            Ok(Some((ts, vs)))
        }
        _ => Err(CorruptRecord("unknown block format")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_chunks_round_trip() {
        let rows = vec![(3, -5, Value::Num(1.5)), (70_000, i64::MAX, Value::Text("free".into())), (0, 0, Value::Num(-0.0))];
        assert_eq!(decode_rows(&encode_rows(&rows)).expect("valid"), rows);
        let samples = vec![(i64::MIN, Value::Num(f64::MAX)), (0, Value::Text("é".into())), (1_700_000_000_000_000_000, Value::Num(4512.3))];
        let mut out = Vec::new();
        decode_chunk(&encode_chunk(&samples), &mut out).expect("valid");
        assert_eq!(out, samples);
        assert!(decode_rows(&[5, 1]).is_err());
    }

    #[test]
    fn blocks_round_trip_bit_exact() {
        let num: Vec<(i64, Value)> = (0..3600).map(|i| (1_700_000_000_000_000_000 + i * 1_000_000_007, Value::Num(f64::from(i as u32).sin() * 700.0 + 0.1))).collect();
        let b = encode_block(&num);
        assert!(b.len() < num.len() * 9, "pco should beat 9 bytes a sample: {}", b.len());
        let mut out = Vec::new();
        decode_block(&b, &mut out).expect("valid");
        assert_eq!(out, num);
        let mixed = vec![(1, Value::Num(f64::NAN.copysign(-1.0))), (2, Value::Text("free".into()))];
        out.clear();
        decode_block(&encode_block(&mixed), &mut out).expect("valid");
        assert_eq!(out[1], mixed[1]);
        assert!(decode_block(&[9], &mut out).is_err());
    }
}
