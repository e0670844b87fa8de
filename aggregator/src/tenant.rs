//! Tenant scopes: a read token limited to some owners (`[[auth.tokens]] owners = ["acme/*"]`)
//! reads its own jobs and statements and the site-level KPIs its figures rest on, and nothing
//! that names another tenant's jobs, owners, nodes or GPUs.
//!
//! Default deny: [`gate`] lets a scoped token through only to the routes listed in
//! [`tenant_route`] (the jobs list and one job, statements, KPIs, health, and the pages and
//! assets, which hold no data); every other data route (the dashboard's JSON and live stream,
//! GPU and node views, alerts, reports, EU indicators, metrics) is the operator's and answers
//! 403. The routes let through filter what they answer by the scope the gate puts in the
//! request ([`Tenant`]); a route added later is refused to scoped tokens until it is listed here.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::error;
use crate::auth::{Auth, ReadAccess};
use crate::config::TokenScope;

/// The owners a scoped token may read, as globs over the job's `owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerScope {
    patterns: Vec<String>,
}

impl OwnerScope {
    pub fn new(patterns: &[String]) -> Self {
        OwnerScope { patterns: patterns.to_vec() }
    }

    /// Whether a job of `owner` is this tenant's. A job with no owner (seen only in `gpu_job`
    /// points) belongs to no tenant.
    pub fn allows(&self, owner: &str) -> bool {
        !owner.is_empty() && self.patterns.iter().any(|p| glob(p, owner))
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// The scope of the token a request carries, put in its extensions by [`gate`]; absent for an
/// operator's (unscoped) read token.
#[derive(Debug, Clone)]
pub struct Tenant(pub Arc<OwnerScope>);

/// Shell-style match of the whole of `s`: `*` any run of characters (`/` included), `?` any one
/// character, everything else itself (case-sensitive).
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si) = (0, 0);
    // Where the last `*` was and how much of `s` it has taken: on a mismatch it takes one more.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `[[auth.tokens]] owners` is for read tokens and lists at least one non-empty pattern.
pub fn check_owners(scope: TokenScope, owners: &[String]) -> Result<(), String> {
    if scope != TokenScope::Read {
        return Err("owners applies to scope = \"read\" only".into());
    }
    if owners.is_empty() {
        return Err("owners = [] would show no job at all; list the owners' patterns, or remove the key for an unscoped read token".into());
    }
    if let Some(p) = owners.iter().find(|p| p.trim().is_empty() || p.chars().any(char::is_control)) {
        return Err(format!("{p:?} is not an owner pattern (e.g. \"mistral-ai/*\")"));
    }
    Ok(())
}

/// Whether a tenant-scoped token may use `path`: the pages and their assets (they hold no
/// data), and the API routes that filter by the scope. Everything else under `/api/`,
/// `/dashboard/` and `/metrics` is the operator's.
pub fn tenant_route(method: &Method, path: &str) -> bool {
    // The Prometheus API filters every answer by the scope (only series of its owners).
    if path.starts_with(crate::http::prometheus::PREFIX) && (method == Method::GET || method == Method::HEAD || crate::http::prometheus::is_read_post(path)) {
        return true;
    }
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let data = path.starts_with("/api/") || (path.starts_with("/dashboard/") && !path.starts_with("/dashboard/assets/")) || path == "/metrics";
    !data || matches!(path, "/api/v1/jobs" | "/api/v1/kpi" | "/api/v1/health") || path.starts_with("/api/v1/jobs/") || path.starts_with("/api/v1/statements/")
}

/// Refuses operator routes to tenant-scoped tokens (403) and hands the scope to the routes
/// that filter by it.
pub async fn gate(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let token = crate::server::query_token(req.uri());
    if let ReadAccess::Owners(scope) = auth.read_access(Auth::presented(req.headers(), token.as_deref())) {
        if !tenant_route(req.method(), req.uri().path()) {
            return error(StatusCode::FORBIDDEN, "forbidden", "this token is scoped to its owners' jobs: this is an operator view, not available to it (docs/security.md, \"Tenant scopes\")");
        }
        req.extensions_mut().insert(Tenant(scope));
    }
    next.run(req).await
}

/// Adds one job's figures (its JSON in `GET /api/v1/jobs`) to a roll-up, in the order and
/// the way `attribution` sums its own `by_owner`, so a tenant's roll-up equals the operator's.
fn add_to_rollup(r: &mut Value, j: &Value) {
    let n = |v: &Value| v.as_f64().unwrap_or(0.0);
    r["jobs"] = json!(r["jobs"].as_u64().unwrap_or(0) + 1);
    for k in ["gpu_energy_kwh", "it_energy_kwh", "facility_energy_kwh", "co2_kg"] {
        r[k] = json!(n(&r[k]) + n(&j[k]));
    }
    if let Some(w) = j["water_l"].as_f64() {
        r["water_l"] = json!(r["water_l"].as_f64().unwrap_or(0.0) + w);
    }
}

/// The jobs answer (`GET /api/v1/jobs`) as a tenant sees it: its own jobs and their roll-ups,
/// the site's E_IT, E_DC, PUE and carbon factor; not the site's idle and unattributed energy,
/// other tenants' totals, nor which nodes lack power readings.
pub fn jobs_answer(all: &Value, scope: &OwnerScope) -> Value {
    let jobs: Vec<&Value> = all["jobs"].as_array().map(|a| a.iter().filter(|j| scope.allows(j["owner"].as_str().unwrap_or(""))).collect()).unwrap_or_default();
    let mut by_owner: BTreeMap<String, Value> = BTreeMap::new();
    let mut by_project: BTreeMap<String, Value> = BTreeMap::new();
    let mut jobs_it = 0.0;
    let mut low = 0;
    let zero = || json!({ "jobs": 0, "gpu_energy_kwh": 0.0, "it_energy_kwh": 0.0, "facility_energy_kwh": 0.0, "water_l": null, "co2_kg": 0.0 });
    for j in &jobs {
        jobs_it += j["it_energy_kwh"].as_f64().unwrap_or(0.0);
        low += usize::from(j["confidence"] == "low");
        for (map, key) in [(&mut by_owner, &j["owner"]), (&mut by_project, &j["project"])] {
            let key = key.as_str().filter(|k| !k.is_empty()).unwrap_or("(unknown)").to_owned();
            add_to_rollup(map.entry(key).or_insert_with(zero), j);
        }
    }
    let q = &all["data_quality"];
    json!({
        "scope": { "owners": scope.patterns() },
        "from": all["from"], "to": all["to"], "step_s": all["step_s"], "window": all["window"],
        "it_energy_kwh": all["it_energy_kwh"], "facility_energy_kwh": all["facility_energy_kwh"],
        "pue": all["pue"], "carbon_factor": all["carbon_factor"],
        "jobs_it_energy_kwh": jobs_it,
        "jobs": jobs,
        "by_owner": by_owner,
        "by_project": by_project,
        "data_quality": { "it_category": q["it_category"], "it_estimated": q["it_estimated"], "steps_without_pue": q["steps_without_pue"], "low_confidence_jobs": low },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_owners() {
        assert!(glob("mistral-ai/*", "mistral-ai/pretrain"));
        assert!(glob("mistral-ai/*", "mistral-ai/"));
        assert!(!glob("mistral-ai/*", "mistral-ai"));
        assert!(!glob("mistral-ai/*", "mistral-ai-evil/x"));
        assert!(glob("*", "anyone/at/all"));
        assert!(glob("k?utai/*", "kyutai/moshi"));
        assert!(glob("*/inference", "scaleway/inference"));
        assert!(!glob("*/inference", "scaleway/inference-eu"));
        assert!(glob("a*b*c", "axxbyybzc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("owkin/pathology", "owkin/pathology"));
        assert!(!glob("owkin/pathology", "Owkin/pathology"), "case-sensitive");
        let s = OwnerScope::new(&["kyutai/*".into()]);
        assert!(s.allows("kyutai/moshi"));
        assert!(!s.allows(""), "a job without owner is nobody's");
    }

    #[test]
    fn owners_are_for_read_tokens_with_patterns() {
        assert!(check_owners(TokenScope::Read, &["a/*".into()]).is_ok());
        assert!(check_owners(TokenScope::Write, &["a/*".into()]).is_err());
        assert!(check_owners(TokenScope::Read, &[]).is_err());
        assert!(check_owners(TokenScope::Read, &[" ".into()]).is_err());
    }

    #[test]
    fn scoped_tokens_reach_only_filtered_routes() {
        let get = Method::GET;
        for ok in ["/", "/jobs", "/job", "/gpus", "/dashboard/assets/app.js", "/api/v1/jobs", "/api/v1/jobs/42", "/api/v1/statements/kyutai/2026-10.pdf", "/api/v1/kpi", "/api/v1/health", "/health"] {
            assert!(tenant_route(&get, ok), "{ok}");
        }
        for no in ["/dashboard/overview.json", "/dashboard/live", "/dashboard/gpus.json", "/dashboard/gpus/dgx-001", "/api/v1/alerts", "/api/v1/reports/2026-10.pdf", "/api/v1/eu-indicators", "/api/v1/rules", "/api/v1/silences", "/metrics", "/api/v1/jobsx", "/api/v2/write"] {
            assert!(!tenant_route(&get, no), "{no}");
        }
        assert!(!tenant_route(&Method::POST, "/api/v1/jobs"));
        assert!(tenant_route(&get, "/prometheus/api/v1/query_range"));
        assert!(tenant_route(&Method::POST, "/prometheus/api/v1/query"));
    }
}
