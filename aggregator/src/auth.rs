//! Who may write and who may read. Writers and readers hold different tokens: a collector's
//! token cannot read customers' figures, and a dashboard's cannot inject data.

use axum::http::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    None,
    Read,
    Write,
}

#[derive(Debug, Clone, Default)]
pub struct Auth {
    write: Vec<String>,
    read: Vec<String>,
    /// Reads without a token: only for the demo on loopback (`--insecure-no-auth`).
    open_reads: bool,
}

impl Auth {
    pub fn new(write: Vec<String>, read: Vec<String>, open_reads: bool) -> Self {
        Auth { write, read, open_reads }
    }

    pub fn open_reads(&self) -> bool {
        self.open_reads
    }

    /// The token a request carries: `Authorization: Token …` (InfluxDB clients, Telegraf) or
    /// `Bearer …`, else a `token` query parameter (links into the dashboard).
    pub fn presented<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a str> {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Some(h) = header {
            let h = h.trim();
            for scheme in ["Token ", "Bearer ", "token ", "bearer "] {
                if let Some(t) = h.strip_prefix(scheme) {
                    return Some(t.trim());
                }
            }
        }
        query_token
    }

    pub fn grant(&self, token: Option<&str>) -> Grant {
        let Some(t) = token else { return Grant::None };
        if self.write.iter().any(|w| constant_time_eq(w.as_bytes(), t.as_bytes())) {
            Grant::Write
        } else if self.read.iter().any(|r| constant_time_eq(r.as_bytes(), t.as_bytes())) {
            Grant::Read
        } else {
            Grant::None
        }
    }

    pub fn may_read(&self, token: Option<&str>) -> bool {
        self.open_reads || self.grant(token) == Grant::Read
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of a guessed
/// token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_what_they_are_for() {
        let a = Auth::new(vec!["w".repeat(20)], vec!["r".repeat(20)], false);
        assert_eq!(a.grant(Some(&"w".repeat(20))), Grant::Write);
        assert_eq!(a.grant(Some(&"r".repeat(20))), Grant::Read);
        assert_eq!(a.grant(Some("nope")), Grant::None);
        assert_eq!(a.grant(None), Grant::None);
        assert!(!a.may_read(Some(&"w".repeat(20))));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Token abc".parse().expect("header"));
        assert_eq!(Auth::presented(&h, Some("q")), Some("abc"));
    }
}
