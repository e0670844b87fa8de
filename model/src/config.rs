//! Helpers every crate's configuration uses: TOML with the offending key named by its whole
//! path, and range checks that name the key they refuse.

/// Deserializes a TOML document, naming the key of a value of the wrong type or range by its
/// whole path (`sim.nodes: invalid type: floating point `NaN`, expected usize`).
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." { inner.to_string() } else { format!("{path}: {inner}") }
    })
}

/// A number of seconds (or any bounded quantity) within `min..=max`: `nan`, `inf`, `1e300`,
/// negative numbers and zero (where `min` > 0) are refused with the key named.
pub fn within(key: &'static str, v: f64, min: f64, max: f64) -> Result<(), (&'static str, String)> {
    if v.is_finite() && (min..=max).contains(&v) { Ok(()) } else { Err((key, format!("{v} is outside {min}..{max}"))) }
}

/// The same for integers.
pub fn within_u64(key: &'static str, v: u64, min: u64, max: u64) -> Result<(), (&'static str, String)> {
    if (min..=max).contains(&v) { Ok(()) } else { Err((key, format!("{v} is outside {min}..{max}"))) }
}
