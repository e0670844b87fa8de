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

impl TimeSeries {
    /// The value of label `name`, if present and not empty (Prometheus treats an empty label as
    /// absent).
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|l| l.name == name.as_bytes()).and_then(Label::value).filter(|v| !v.is_empty())
    }

    /// The metric name (`__name__`).
    pub fn name(&self) -> Option<&str> {
        self.label("__name__")
    }

    /// `name{a="x",b="y"}` for messages, cut to `max` bytes.
    pub fn describe(&self, max: usize) -> String {
        let mut s = self.name().unwrap_or("(no __name__)").to_owned();
        let labels: Vec<String> = self.labels.iter().filter(|l| l.name != "__name__".as_bytes()).map(|l| format!("{}={:?}", String::from_utf8_lossy(&l.name), String::from_utf8_lossy(&l.value))).collect();
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
