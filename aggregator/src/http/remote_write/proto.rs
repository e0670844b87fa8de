//! Prometheus' remote-write 1.0 messages, mirroring `prompb/types.proto` and `prompb/remote.proto`
//! (prometheus/prometheus) field for field: prost derives the decoder, so no protoc and no
//! build script. Fields Kilowatch does not use (metadata, exemplars, native histograms) are not
//! declared: prost skips unknown fields while decoding.

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: one series (its labels, `__name__` among them) and its samples,
/// oldest first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`. Read as bytes (the wire format of a protobuf string), sliced from the
/// request without a copy; [`TimeSeries::label`] checks the UTF-8 of what is used.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Label {
    #[prost(bytes = "bytes", tag = "1")]
    pub name: prost::bytes::Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: prost::bytes::Bytes,
}

impl Label {
    pub fn new(name: &str, value: &str) -> Label {
        Label { name: prost::bytes::Bytes::copy_from_slice(name.as_bytes()), value: prost::bytes::Bytes::copy_from_slice(value.as_bytes()) }
    }

    /// The name, if UTF-8.
    pub fn name(&self) -> Option<&str> {
        std::str::from_utf8(&self.name).ok()
    }

    /// The value, if UTF-8.
    pub fn value(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// `prometheus.Sample`: a value at a time in milliseconds since the epoch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The NaN Prometheus writes when a series goes stale (`value.StaleNaN` in prometheus/model):
/// the series disappeared from its target, which is not a reading.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A label as it lies in the request: a protobuf string's bytes (UTF-8 is checked where a
/// label is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRef<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> LabelRef<'a> {
    /// The name, if UTF-8.
    pub fn name(&self) -> Option<&'a str> {
        std::str::from_utf8(self.name).ok()
    }

    /// The value, if UTF-8.
    pub fn value(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }
}

/// Why a body is not a `WriteRequest`.
#[derive(Debug, thiserror::Error)]
#[error("{0} at byte {1}")]
pub struct DecodeError(&'static str, usize);

/// A `WriteRequest` read in place: every label a slice of the inflated body, the labels and
/// samples of all series in two flat vectors. Decoding allocates three vectors a request,
/// nothing a series (prost's derived decoder allocated two vectors a series and counted a
/// reference a label).
#[derive(Debug, Default)]
pub struct Request<'a> {
    spans: Vec<Span<'a>>,
    labels: Vec<LabelRef<'a>>,
    samples: Vec<Sample>,
}

/// The memory of a decoded [`Request`], for the next request ([`Request::decode_into`]).
#[derive(Debug, Default)]
pub struct RequestBuffers {
    spans: Vec<Span<'static>>,
    labels: Vec<LabelRef<'static>>,
    samples: Vec<Sample>,
}

impl RequestBuffers {
    /// Bytes reserved, for a caller that bounds what it keeps.
    pub fn capacity_bytes(&self) -> usize {
        self.spans.capacity() * std::mem::size_of::<Span<'static>>() + self.labels.capacity() * std::mem::size_of::<LabelRef<'static>>() + self.samples.capacity() * std::mem::size_of::<Sample>()
    }
}

/// The allocation of `v`, emptied, as a vector of the same type with another lifetime:
/// collecting a vector's own `into_iter` in place keeps its allocation.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

#[derive(Debug)]
struct Span<'a> {
    identity: Option<&'a [u8]>,
    labels: (u32, u32),
    samples: (u32, u32),
}

/// One series of a [`Request`].
#[derive(Debug, Clone, Copy)]
pub struct Series<'r, 'a> {
    pub labels: &'r [LabelRef<'a>],
    pub samples: &'r [Sample],
    /// The bytes of its label fields as sent, when they lie together (every known sender writes
    /// the labels before the samples): what the series is remembered by, hashed once.
    pub identity: Option<&'a [u8]>,
}

/// Protobuf's wire types (the encoding guide's numbers).
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, why: &'static str) -> DecodeError {
        DecodeError(why, self.pos)
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        // Field keys and the lengths of labels are one byte: read without the loop.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else { return Err(self.err("a varint runs past the end")) };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("a varint is longer than ten bytes"))
    }

    /// A field's number and wire type.
    #[inline]
    fn key(&mut self) -> Result<(u64, u8), DecodeError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(|| self.err("a field runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| self.err("a length does not fit"))?;
        self.take(n)
    }

    /// Passes over a field Kilowatch does not read (metadata, exemplars, histograms).
    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            I32 => self.take(4).map(drop),
            _ => Err(self.err("unsupported wire type")),
        }
    }

    fn expect(&self, wire: u8, want: u8) -> Result<(), DecodeError> {
        if wire == want { Ok(()) } else { Err(self.err("a known field has the wrong wire type")) }
    }
}

impl<'a> Request<'a> {
    /// Reads `prometheus.WriteRequest` from `buf` (inflated), fields in any order, unknown
    /// fields passed over, as protobuf decoders do.
    pub fn decode(buf: &'a [u8]) -> Result<Request<'a>, DecodeError> {
        Request::decode_into(buf, RequestBuffers::default())
    }

    /// [`Request::decode`] into the memory of an earlier request: its vectors are already
    /// grown, so a request costs no allocation and no page fault.
    pub fn decode_into(buf: &'a [u8], buffers: RequestBuffers) -> Result<Request<'a>, DecodeError> {
        let mut r = Request { spans: recycle(buffers.spans), labels: recycle(buffers.labels), samples: recycle(buffers.samples) };
        let mut c = Cursor { buf, pos: 0 };
        while !c.done() {
            let (field, wire) = c.key()?;
            if field == 1 {
                c.expect(wire, LEN)?;
                let start = c.pos;
                let ts = c.bytes()?;
                r.series(ts).map_err(|DecodeError(why, at)| DecodeError(why, at + start))?;
            } else {
                c.skip(wire)?;
            }
        }
        Ok(r)
    }

    fn series(&mut self, buf: &'a [u8]) -> Result<(), DecodeError> {
        let (l0, s0) = (self.labels.len() as u32, self.samples.len() as u32);
        let mut c = Cursor { buf, pos: 0 };
        // The label fields' extent, while they lie together.
        let mut ids: Option<(usize, usize)> = None;
        let mut together = true;
        while !c.done() {
            let at = c.pos;
            let (field, wire) = c.key()?;
            match field {
                1 => {
                    c.expect(wire, LEN)?;
                    let label = label(c.bytes()?)?;
                    self.labels.push(label);
                    ids = match ids {
                        None => Some((at, c.pos)),
                        Some((s, e)) if e == at => Some((s, c.pos)),
                        other => {
                            together = false;
                            other
                        }
                    };
                }
                2 => {
                    c.expect(wire, LEN)?;
                    self.samples.push(sample(c.bytes()?)?);
                }
                _ => c.skip(wire)?,
            }
        }
        let identity = ids.filter(|_| together).map(|(s, e)| &buf[s..e]);
        self.spans.push(Span { identity, labels: (l0, self.labels.len() as u32), samples: (s0, self.samples.len() as u32) });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// This request's memory, for the next one.
    pub fn into_buffers(self) -> RequestBuffers {
        RequestBuffers { spans: recycle(self.spans), labels: recycle(self.labels), samples: recycle(self.samples) }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn series_iter(&self) -> impl ExactSizeIterator<Item = Series<'_, 'a>> + '_ {
        self.spans.iter().map(|s| Series { labels: &self.labels[s.labels.0 as usize..s.labels.1 as usize], samples: &self.samples[s.samples.0 as usize..s.samples.1 as usize], identity: s.identity })
    }
}

fn label(buf: &[u8]) -> Result<LabelRef<'_>, DecodeError> {
    let mut l = LabelRef { name: &[], value: &[] };
    let mut c = Cursor { buf, pos: 0 };
    while !c.done() {
        let (field, wire) = c.key()?;
        match field {
            1 => {
                c.expect(wire, LEN)?;
                l.name = c.bytes()?;
            }
            2 => {
                c.expect(wire, LEN)?;
                l.value = c.bytes()?;
            }
            _ => c.skip(wire)?,
        }
    }
    Ok(l)
}

fn sample(buf: &[u8]) -> Result<Sample, DecodeError> {
    let mut s = Sample { value: 0.0, timestamp: 0 };
    let mut c = Cursor { buf, pos: 0 };
    while !c.done() {
        let (field, wire) = c.key()?;
        match field {
            1 => {
                c.expect(wire, I64)?;
                let b = c.take(8)?;
                let mut v = [0u8; 8];
                v.copy_from_slice(b);
                s.value = f64::from_le_bytes(v);
            }
            2 => {
                c.expect(wire, VARINT)?;
                // int64: the varint's bits are the two's complement value.
                s.timestamp = c.varint()? as i64;
            }
            _ => c.skip(wire)?,
        }
    }
    Ok(s)
}

impl<'a> Series<'_, 'a> {
    /// The value of label `name`, if present and not empty (Prometheus treats an empty label as
    /// absent).
    pub fn label(&self, name: &str) -> Option<&'a str> {
        self.labels.iter().find(|l| l.name == name.as_bytes()).and_then(LabelRef::value).filter(|v| !v.is_empty())
    }

    /// The metric name (`__name__`).
    pub fn name(&self) -> Option<&'a str> {
        self.label("__name__")
    }

    /// `name{a="x",b="y"}` for messages, cut to `max` bytes.
    pub fn describe(&self, max: usize) -> String {
        let mut s = self.name().unwrap_or("(no __name__)").to_owned();
        let labels: Vec<String> = self.labels.iter().filter(|l| l.name != b"__name__").map(|l| format!("{}={:?}", String::from_utf8_lossy(l.name), String::from_utf8_lossy(l.value))).collect();
        s.push('{');
        s.push_str(&labels.join(","));
        s.push('}');
        if s.len() > max {
            let mut cut = max;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn req() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![Label::new("__name__", "up"), Label::new("job", "a")],
                    samples: vec![Sample { value: 1.5, timestamp: -3 }, Sample { value: 2.0, timestamp: 1_700_000_000_000 }],
                },
                TimeSeries { labels: vec![Label::new("__name__", "x")], samples: vec![] },
            ],
        }
    }

    #[test]
    fn reads_what_prost_writes_labels_as_slices_and_the_label_bytes_as_identity() {
        let buf = req().encode_to_vec();
        let r = Request::decode(&buf).expect("decodes");
        let s: Vec<Series<'_, '_>> = r.series_iter().collect();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name(), Some("up"));
        assert_eq!(s[0].label("job"), Some("a"));
        assert_eq!(s[0].samples, &[Sample { value: 1.5, timestamp: -3 }, Sample { value: 2.0, timestamp: 1_700_000_000_000 }]);
        assert!(s[1].samples.is_empty());
        let one = WriteRequest { timeseries: vec![TimeSeries { labels: req().timeseries[0].labels.clone(), samples: vec![Sample { value: 9.0, timestamp: 5 }] }] }.encode_to_vec();
        let again = Request::decode(&one).expect("decodes");
        assert_eq!(again.series_iter().next().and_then(|x| x.identity), s[0].identity, "same labels, other samples: same identity");
        assert_ne!(s[0].identity, s[1].identity);
    }

    #[test]
    fn labels_after_samples_have_no_identity_and_are_still_read() {
        // TimeSeries{label, sample, label}: valid protobuf, unusual order.
        let l = |k: &str, v: &str| Label::new(k, v).encode_to_vec();
        let field = |tag: u8, b: Vec<u8>| [vec![tag << 3 | 2, b.len() as u8], b].concat();
        let ts = [field(1, l("__name__", "up")), field(2, Sample { value: 1.0, timestamp: 1 }.encode_to_vec()), field(1, l("job", "a"))].concat();
        let buf = field(1, ts);
        let r = Request::decode(&buf).expect("decodes");
        let s = r.series_iter().next().expect("one series");
        assert_eq!((s.name(), s.label("job"), s.identity), (Some("up"), Some("a"), None));
    }

    #[test]
    fn truncated_and_malformed_bodies_are_errors_not_panics() {
        let buf = req().encode_to_vec();
        for cut in 1..buf.len() {
            let _ = Request::decode(&buf[..cut]);
        }
        assert!(Request::decode(&buf[..buf.len() - 1]).is_err());
        assert!(Request::decode(&[0x0b]).is_err(), "wire type 3 (groups)");
        assert!(Request::decode(&[0x08, 0x01]).is_err(), "timeseries as a varint");
        assert!(Request::decode(&[0xff; 11]).is_err());
    }
}
