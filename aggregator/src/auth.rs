//! Who may write and who may read. Writers and readers hold different tokens: a collector's
//! token cannot read customers' figures, and a dashboard's cannot inject data. Tokens are kept
//! only as SHA-256 hashes in memory, and may be configured that way.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::config::{AuthConfig, TokenScope};
use crate::tenant::{OwnerScope, WriteScope};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    None,
    Read,
    Write,
}

#[derive(Debug, Clone)]
struct Known {
    name: String,
    hash: [u8; 32],
    scope: TokenScope,
    /// A read token limited to these owners' jobs (`[[auth.tokens]] owners`).
    owners: Option<Arc<OwnerScope>>,
    /// A write token narrowed to nodes and/or owners (`[[auth.tokens]] nodes`, `owners`).
    writes: Option<Arc<WriteScope>>,
}

/// What a token may read.
#[derive(Debug, Clone)]
pub enum ReadAccess {
    Denied,
    /// Everything a read token reads: the operator's view.
    All,
    /// Only these owners' jobs and statements, and the site-level KPIs.
    Owners(Arc<OwnerScope>),
}

#[derive(Debug, Clone, Default)]
pub struct Auth {
    known: Vec<Known>,
    /// Reads without a token: only for the demo on loopback (`--insecure-no-auth`).
    open_reads: bool,
}

pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn sha256_hex(token: &str) -> String {
    sha256(token).iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(h: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Auth {
    /// Plain tokens (from the environment or a test), hashed at once.
    pub fn new(write: Vec<String>, read: Vec<String>, open_reads: bool) -> Self {
        let mut known = Vec::new();
        for (list, scope, name) in [(write, TokenScope::Write, "write token"), (read, TokenScope::Read, "read token")] {
            for (i, t) in list.iter().enumerate() {
                known.push(Known { name: format!("{name} {}", i + 1), hash: sha256(t), scope, owners: None, writes: None });
            }
        }
        Auth { known, open_reads }
    }

    pub fn from_config(cfg: &AuthConfig, open_reads: bool) -> Self {
        let mut a = Auth::new(cfg.write_tokens.clone(), cfg.read_tokens.clone(), open_reads);
        // Validated at load: every hash is 64 hex digits.
        a.known.extend(cfg.tokens.iter().filter_map(|t| {
            let read = t.scope == TokenScope::Read;
            let owners = t.owners.as_ref().filter(|_| read).map(|o| Arc::new(OwnerScope::new(o)));
            let narrowed = !read && (t.nodes.is_some() || t.owners.is_some());
            let writes = narrowed.then(|| Arc::new(WriteScope::new(t.nodes.as_deref(), t.owners.as_deref())));
            Some(Known { name: t.name.clone(), hash: from_hex(&t.sha256)?, scope: t.scope, owners, writes })
        }));
        a
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

    /// The entry of a token.
    fn find(&self, token: Option<&str>) -> Option<&Known> {
        let h = sha256(token?);
        // Every entry is compared, without early exit, so timing says nothing about which
        // (or whether one) matched.
        let mut found: Option<&Known> = None;
        for k in &self.known {
            if constant_time_eq(&k.hash, &h) {
                found = Some(k);
            }
        }
        found
    }

    /// What a token may do, and the name of whoever holds it.
    pub fn identify(&self, token: Option<&str>) -> (Grant, Option<&str>) {
        match self.find(token) {
            // An admin token writes too; what it may do beyond is asked with `admin`.
            Some(k) => (if k.scope == TokenScope::Read { Grant::Read } else { Grant::Write }, Some(k.name.as_str())),
            None => (Grant::None, None),
        }
    }

    /// The holder's name if the token has the admin scope, else what it may do.
    pub fn admin(&self, token: Option<&str>) -> Result<&str, Grant> {
        match self.find(token) {
            Some(k) if k.scope == TokenScope::Admin => Ok(k.name.as_str()),
            _ => Err(self.grant(token)),
        }
    }

    /// What a write token is narrowed to (`None`: it writes for every node and owner, or it
    /// is no write token; [`Auth::grant`] says which).
    pub fn write_scope(&self, token: Option<&str>) -> Option<Arc<WriteScope>> {
        self.find(token).and_then(|k| k.writes.clone())
    }

    /// [`Auth::write_scope`] of the token a request carries in its headers.
    pub fn write_scope_of(&self, headers: &HeaderMap) -> Option<Arc<WriteScope>> {
        self.write_scope(Self::presented(headers, None))
    }

    /// Whether the token a request carries is an admin token.
    pub fn is_admin(&self, headers: &HeaderMap) -> bool {
        self.admin(Self::presented(headers, None)).is_ok()
    }

    pub fn grant(&self, token: Option<&str>) -> Grant {
        self.identify(token).0
    }

    pub fn may_read(&self, token: Option<&str>) -> bool {
        self.open_reads || self.grant(token) == Grant::Read
    }

    /// What a token may read: a tenant-scoped token is held to its owners even where reads are
    /// open (demo), so that trying one there shows what its holder would see.
    pub fn read_access(&self, token: Option<&str>) -> ReadAccess {
        match self.find(token) {
            Some(Known { scope: TokenScope::Read, owners: Some(o), .. }) => ReadAccess::Owners(o.clone()),
            Some(Known { scope: TokenScope::Read, .. }) => ReadAccess::All,
            _ if self.open_reads => ReadAccess::All,
            _ => ReadAccess::Denied,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenEntry;

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

    #[test]
    fn hashed_tokens_identify_their_holder() {
        let cfg = AuthConfig {
            tokens: vec![TokenEntry { name: "collector dgx-001".into(), sha256: sha256_hex("s3cret-token-for-dgx-001"), scope: TokenScope::Write, owners: None, nodes: None }],
            ..AuthConfig::default()
        };
        let a = Auth::from_config(&cfg, false);
        assert_eq!(a.identify(Some("s3cret-token-for-dgx-001")), (Grant::Write, Some("collector dgx-001")));
        assert_eq!(a.grant(Some("s3cret-token-for-dgx-002")), Grant::None);
        assert_eq!(a.admin(Some("s3cret-token-for-dgx-001")), Err(Grant::Write), "a write token is no admin");
        let cfg = AuthConfig {
            tokens: vec![TokenEntry { name: "ops on call".into(), sha256: sha256_hex("admin-token-0123456789"), scope: TokenScope::Admin, owners: None, nodes: None }],
            ..AuthConfig::default()
        };
        let a = Auth::from_config(&cfg, false);
        assert_eq!(a.admin(Some("admin-token-0123456789")), Ok("ops on call"));
        assert_eq!(a.grant(Some("admin-token-0123456789")), Grant::Write, "an admin token writes");
        assert_eq!(a.admin(None), Err(Grant::None));
        // sha256("abc"), the FIPS 180-2 test vector.
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
