use std::collections::BTreeMap;

use crate::time::Timestamp;

/// Tags that identify a series (`site`, `node`, `gpu`, `meter`, `role`, …), sorted by key so
/// that the same set always spells the same series key.
pub type Labels = BTreeMap<String, String>;

/// One field value, with the type line protocol gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    /// The numeric value, where there is one (see [`crate::FieldValueRef::as_f64`]).
    pub fn as_f64(&self) -> Option<f64> {
        crate::lineproto::FieldValueRef::from(self).as_f64()
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::F64(v)
    }
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::I64(v)
    }
}
impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::U64(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_owned())
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}

/// One line of line protocol: a measurement, its identifying tags, its fields, one timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: Labels,
    pub fields: Vec<(String, FieldValue)>,
    pub ts: Timestamp,
}

impl Point {
    pub fn new(measurement: impl Into<String>, ts: Timestamp) -> Self {
        Point { measurement: measurement.into(), tags: Labels::new(), fields: Vec::new(), ts }
    }
    pub fn tag(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.tags.insert(k.into(), v.into());
        self
    }
    pub fn field(mut self, k: impl Into<String>, v: impl Into<FieldValue>) -> Self {
        self.fields.push((k.into(), v.into()));
        self
    }
    pub fn get(&self, field: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(k, _)| k == field).map(|(_, v)| v)
    }
    pub fn get_f64(&self, field: &str) -> Option<f64> {
        self.get(field).and_then(FieldValue::as_f64)
    }
    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}
