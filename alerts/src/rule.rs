//! Alert rules, as written in TOML (see deploy/alerts/rules.toml and docs/alerts.md).

use kilowatch_model::Labels;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A label matcher in Alertmanager's string form: `node="dgx-001"`, `severity!="info"`,
/// `unit=~"cu-0*|cu-10"`. `=~`/`!~` take `|`-separated alternatives with `*` wildcards, not
/// full regular expressions (what rule packs and silences have needed so far).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MatcherRepr", into = "MatcherRepr")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    pub is_equal: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum MatcherRepr {
    Text(String),
    Obj {
        name: String,
        value: String,
        #[serde(default, rename = "isRegex")]
        is_regex: bool,
        #[serde(default = "yes", rename = "isEqual")]
        is_equal: bool,
    },
}
fn yes() -> bool {
    true
}

impl TryFrom<MatcherRepr> for Matcher {
    type Error = String;
    fn try_from(r: MatcherRepr) -> Result<Self, String> {
        match r {
            MatcherRepr::Text(s) => Matcher::parse(&s),
            MatcherRepr::Obj { name, value, is_regex, is_equal } => Ok(Matcher { name, value, is_regex, is_equal }),
        }
    }
}
impl From<Matcher> for MatcherRepr {
    fn from(m: Matcher) -> Self {
        MatcherRepr::Obj { name: m.name, value: m.value, is_regex: m.is_regex, is_equal: m.is_equal }
    }
}

impl Matcher {
    pub fn eq(name: &str, value: &str) -> Self {
        Matcher { name: name.into(), value: value.into(), is_regex: false, is_equal: true }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        for (op, is_regex, is_equal) in [("=~", true, true), ("!~", true, false), ("!=", false, false), ("=", false, true)] {
            if let Some(i) = s.find(op) {
                let name = s[..i].trim();
                let value = s[i + op.len()..].trim().trim_matches('"');
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("matcher {s:?}: bad label name"));
                }
                return Ok(Matcher { name: name.into(), value: value.into(), is_regex, is_equal });
            }
        }
        Err(format!("matcher {s:?}: expected name=\"v\", name!=\"v\", name=~\"a*|b\" or name!~\"…\""))
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        let hit = if self.is_regex { self.value.split('|').any(|alt| glob(alt, v)) } else { v == self.value };
        hit == self.is_equal
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (true, false) => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

/// `*` matches any run of characters; everything else is literal.
fn glob(pat: &str, s: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return pat == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut pos = first.len();
    let end = s.len() - last.len();
    for mid in &parts[1..parts.len() - 1] {
        match s[pos..end].find(mid) {
            Some(i) => pos += i + mid.len(),
            None => return false,
        }
    }
    true
}

pub fn all_match(ms: &[Matcher], labels: &Labels) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn test(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// What makes a series active. One rule has exactly one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// `value OP threshold`. With `clear`, a pending or firing alert stays active until the
    /// value is back past `clear` (hysteresis), so a reading hovering at the threshold does not
    /// flap.
    Threshold {
        op: Op,
        threshold: f64,
        #[serde(default)]
        clear: Option<f64>,
    },
    /// The series' newest sample is older than `stale_after` (a silent meter or collector).
    Absent {
        #[serde(with = "crate::dur")]
        stale_after: i64,
    },
    /// The change per hour between two evaluations, `rate OP threshold` (ASHRAE: ≤ 20 °C/h;
    /// a counter going backwards: rate < 0).
    Rate { op: Op, threshold: f64 },
    /// `value > factor × baseline`, where the baseline is the series named `baseline` with
    /// the same labels (e.g. the 30-day median of daily water for the same wet-bulb band).
    Baseline { baseline: String, factor: f64 },
    /// Any of the bits in `mask` set in the value (NVML throttle reasons: thermal slowdown).
    BitsSet { mask: u64 },
}

// No deny_unknown_fields here: serde does not support it together with `flatten`; the
// condition itself denies unknown fields, which catches the typos that matter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The `alertname` label.
    pub name: String,
    /// `measurement.field` of the wire schema (`cooling.supply_temp_c`) or a derived value
    /// (`derived.dew_point_c`, `derived.daily_pue`, …), see docs/alerts.md.
    pub metric: String,
    #[serde(default, rename = "match")]
    pub matchers: Vec<Matcher>,
    #[serde(flatten)]
    pub condition: Condition,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", with = "crate::dur")]
    pub for_s: i64,
    #[serde(default = "warning")]
    pub severity: String,
    /// Extra labels; values may use templates.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `runbook_url`…; values may use templates.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Label names of the series kept on the alert (default: all of them).
    #[serde(default)]
    pub keep_labels: Option<Vec<String>>,
}

fn warning() -> String {
    "warning".into()
}

/// A rule pack file: `[[rule]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePack {
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

impl RulePack {
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: RulePack = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = std::collections::BTreeSet::new();
        for r in &p.rules {
            if !r.metric.contains('.') {
                return Err(format!("rule {}: metric {:?} must be measurement.field", r.name, r.metric));
            }
            if !seen.insert((r.name.clone(), r.severity.clone(), r.metric.clone())) {
                return Err(format!("rule {} with severity {} on {} is defined twice", r.name, r.severity, r.metric));
            }
        }
        Ok(p)
    }

    /// The pack shipped in deploy/alerts/rules.toml, compiled in so a site runs with sane
    /// alerts before anyone writes a rule.
    pub fn default_pack() -> Self {
        // Tested to parse in tests/default_pack.rs; an empty pack is the safe fallback.
        Self::parse(DEFAULT_PACK).unwrap_or_default()
    }
}

pub const DEFAULT_PACK: &str = include_str!("../../deploy/alerts/rules.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_and_match() {
        let mut l = Labels::new();
        l.insert("unit".into(), "cu-03".into());
        assert!(Matcher::parse("unit=\"cu-03\"").expect("m").matches(&l));
        assert!(Matcher::parse("unit=~\"cu-0*|cu-10\"").expect("m").matches(&l));
        assert!(!Matcher::parse("unit!~\"cu-*\"").expect("m").matches(&l));
        assert!(Matcher::parse("node!=\"x\"").expect("m").matches(&l));
        assert!(Matcher::parse("node=\"\"").expect("m").matches(&l));
        assert!(Matcher::parse("=x").is_err());
        assert!(glob("a*c*e", "abcde") && !glob("a*c*e", "abde"));
    }
}
