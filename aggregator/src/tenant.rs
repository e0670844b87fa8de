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

/// `[[auth.tokens]] owners` narrows a read or a write token and lists at least one non-empty
/// pattern.
pub fn check_owners(scope: TokenScope, owners: &[String]) -> Result<(), String> {
    if scope == TokenScope::Admin {
        return Err("owners applies to scope = \"read\" or \"write\", not to an admin token".into());
    }
    check_patterns("owners", owners, "an owner pattern (e.g. \"mistral-ai/*\")")
}

/// `[[auth.tokens]] nodes` narrows a write token (a node's collector) and lists at least one
/// non-empty pattern.
pub fn check_nodes(scope: TokenScope, nodes: &[String]) -> Result<(), String> {
    if scope != TokenScope::Write {
        return Err("nodes applies to scope = \"write\" only".into());
    }
    check_patterns("nodes", nodes, "a node pattern (e.g. \"dgx-001\" or \"dgx-0*\")")
}

fn check_patterns(key: &str, patterns: &[String], what: &str) -> Result<(), String> {
    if patterns.is_empty() {
        return Err(format!("{key} = [] would allow nothing; list the patterns, or remove the key for an unnarrowed token"));
    }
    if let Some(p) = patterns.iter().find(|p| p.trim().is_empty() || p.chars().any(char::is_control)) {
        return Err(format!("{p:?} is not {what}"));
    }
    Ok(())
}

/// What a narrowed write token (`[[auth.tokens]] scope = "write"` with `nodes` and/or
/// `owners`) may write: lines, job posts and training progress of its nodes and/or owners, so
/// that a node's collector cannot write for another node, nor reassign, end or post progress
/// for another tenant's jobs, nor create serving jobs under another tenant.
#[derive(Debug, Clone)]
pub struct WriteScope {
    nodes: Option<Vec<String>>,
    owners: Option<OwnerScope>,
}

/// The tags a line names its node and its tenant with (`inference` points carry `tenant`; it
/// becomes the owner of their serving job).
const NODE_TAG: &str = "node";
const TENANT_TAG: &str = "tenant";

impl WriteScope {
    pub fn new(nodes: Option<&[String]>, owners: Option<&[String]>) -> Self {
        WriteScope { nodes: nodes.map(<[String]>::to_vec), owners: owners.map(OwnerScope::new) }
    }

    fn node_ok(&self, node: &str) -> bool {
        self.nodes.as_ref().is_none_or(|ps| ps.iter().any(|p| glob(p, node)))
    }

    fn owner_ok(&self, owner: &str) -> bool {
        self.owners.as_ref().is_none_or(|o| o.allows(owner))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = &self.nodes {
            parts.push(format!("nodes {n:?}"));
        }
        if let Some(o) = &self.owners {
            parts.push(format!("owners {:?}", o.patterns()));
        }
        format!("this write token is narrowed to {}", parts.join(" and "))
    }

    /// Why a line of `tags` is not this token's to write, if it is not. A token narrowed to
    /// nodes writes only lines that name one of them; a line naming a tenant must name one of
    /// its owners; a token narrowed to owners alone writes only lines naming one of them.
    pub fn refuses_line<'t>(&self, tags: impl Iterator<Item = (&'t str, &'t str)>) -> Option<String> {
        let (mut node, mut tenant) = (None, None);
        for (k, v) in tags {
            match k {
                NODE_TAG => node = Some(v),
                TENANT_TAG => tenant = Some(v),
                _ => {}
            }
        }
        if self.nodes.is_some() {
            match node {
                None => return Some(format!("{}: the line names no node", self.describe())),
                Some(n) if !self.node_ok(n) => return Some(format!("{}: node={n:?} is not one of them", self.describe())),
                Some(_) => {}
            }
        }
        match tenant {
            Some(t) if !self.owner_ok(t) => Some(format!("{}: tenant={t:?} is not one of them", self.describe())),
            None if self.nodes.is_none() && self.owners.is_some() => Some(format!("{}: the line names no tenant", self.describe())),
            _ => None,
        }
    }

    /// Leaves in `lines` only those this token may write; the others' numbers and reasons.
    pub fn retain_lines(&self, lines: &mut kilowatch_model::Lines<'_>) -> Vec<(usize, String)> {
        let mut refused = Vec::new();
        lines.retain(|l| match self.refuses_line(l.tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref()))) {
            Some(why) => {
                refused.push((l.number(), why));
                false
            }
            None => true,
        });
        refused
    }

    /// Why this token may not apply a job post, given the job's allocations already known
    /// (`known`, every node's). A narrowed token names the node and/or the owner it posts for,
    /// and touches no job another node or tenant holds.
    pub fn refuses_job(&self, post_node: Option<&str>, post_owner: Option<&str>, known: &[(String, String)]) -> Option<String> {
        if self.nodes.is_some() {
            match post_node {
                None => return Some(format!("{}: a post names its node", self.describe())),
                Some(n) if !self.node_ok(n) => return Some(format!("{}: node={n:?} is not one of them", self.describe())),
                Some(_) => {}
            }
        }
        if self.owners.is_some() {
            match post_owner.filter(|o| !o.is_empty()) {
                Some(o) if !self.owner_ok(o) => return Some(format!("{}: owner={o:?} is not one of them", self.describe())),
                None if known.is_empty() => return Some(format!("{}: a new job names its owner", self.describe())),
                _ => {}
            }
            if let Some((_, o)) = known.iter().find(|(_, o)| !o.is_empty() && !self.owner_ok(o)) {
                return Some(format!("{}: the job is {o:?}'s", self.describe()));
            }
        }
        None
    }

    /// Why this token may not post training progress for a job with allocations `known`
    /// (node, owner): the job must be known, run on one of its nodes and be one of its owners'.
    pub fn refuses_progress(&self, job: &str, known: &[(String, String)]) -> Option<String> {
        if known.is_empty() {
            return Some(format!("{}: job {job:?} is not in the job ledger, so whose it is cannot be checked", self.describe()));
        }
        if self.nodes.is_some() && !known.iter().any(|(n, _)| self.node_ok(n)) {
            return Some(format!("{}: job {job:?} runs on none of them", self.describe()));
        }
        if let Some((_, o)) = known.iter().find(|(_, o)| !self.owner_ok(o)) {
            return Some(format!("{}: job {job:?} is {o:?}'s", self.describe()));
        }
        None
    }
}

/// Whether a write token (narrowed to `scope`, or not; admin or not) may apply job post `p`,
/// given the job's allocations already known.
pub fn job_post_allowed(p: &kilowatch_store::jobs::JobPost, known: &[kilowatch_store::jobs::Allocation], scope: Option<&WriteScope>, admin: bool) -> Result<(), String> {
    let known: Vec<(String, String)> = known.iter().map(|a| (a.node.clone(), a.owner.clone())).collect();
    if let Some(why) = scope.and_then(|s| s.refuses_job(p.node.as_deref(), p.owner.as_deref(), &known)) {
        return Err(why);
    }
    match changes_owner(&p.job, p.owner.as_deref(), &known) {
        Some(why) if !admin => Err(why),
        _ => Ok(()),
    }
}

/// Why a post would change a job's owner, which only an admin token may do: the job is known
/// with another, non-empty owner (`known`: its allocations' (node, owner)).
pub fn changes_owner(job: &str, post_owner: Option<&str>, known: &[(String, String)]) -> Option<String> {
    let new = post_owner.filter(|o| !o.is_empty())?;
    let (_, old) = known.iter().find(|(_, o)| !o.is_empty() && o != new)?;
    Some(format!("job {job:?} is {old:?}'s: changing its owner to {new:?} needs an admin token"))
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
    fn owners_narrow_read_and_write_tokens_nodes_write_tokens() {
        assert!(check_owners(TokenScope::Read, &["a/*".into()]).is_ok());
        assert!(check_owners(TokenScope::Write, &["a/*".into()]).is_ok());
        assert!(check_owners(TokenScope::Admin, &["a/*".into()]).is_err());
        assert!(check_owners(TokenScope::Read, &[]).is_err());
        assert!(check_owners(TokenScope::Read, &[" ".into()]).is_err());
        assert!(check_nodes(TokenScope::Write, &["dgx-0*".into()]).is_ok());
        assert!(check_nodes(TokenScope::Read, &["dgx-0*".into()]).is_err());
        assert!(check_nodes(TokenScope::Admin, &["dgx-0*".into()]).is_err());
        assert!(check_nodes(TokenScope::Write, &[]).is_err());
    }

    #[test]
    fn a_narrowed_write_token_writes_its_nodes_and_owners_only() {
        let tags = |t: &'static [(&'static str, &'static str)]| t.iter().copied();
        let node = WriteScope::new(Some(&["dgx-00?".into()]), None);
        assert!(node.refuses_line(tags(&[("node", "dgx-001"), ("gpu", "0")])).is_none());
        assert!(node.refuses_line(tags(&[("node", "dgx-010")])).is_some());
        assert!(node.refuses_line(tags(&[("meter", "grid-a")])).is_some(), "a line of no node");
        assert!(node.refuses_line(tags(&[("node", "dgx-001"), ("tenant", "anyone")])).is_none(), "no owners: any tenant");
        let both = WriteScope::new(Some(&["dgx-001".into()]), Some(&["acme/*".into()]));
        assert!(both.refuses_line(tags(&[("node", "dgx-001")])).is_none(), "a GPU line names no tenant");
        assert!(both.refuses_line(tags(&[("node", "dgx-001"), ("tenant", "other/x")])).is_some());
        let owners = WriteScope::new(None, Some(&["acme/*".into()]));
        assert!(owners.refuses_line(tags(&[("node", "dgx-001")])).is_some(), "owners alone: only lines naming them");
        assert!(owners.refuses_line(tags(&[("node", "dgx-001"), ("tenant", "acme/x")])).is_none());
        let known = [("dgx-002".to_owned(), "other/x".to_owned())];
        assert!(both.refuses_job(Some("dgx-001"), Some("acme/a"), &[]).is_none());
        assert!(both.refuses_job(Some("dgx-001"), None, &[]).is_some(), "a new job names its owner");
        assert!(both.refuses_job(Some("dgx-001"), Some("acme/a"), &known).is_some(), "another tenant's job");
        assert!(node.refuses_job(None, None, &known).is_some(), "an end-only post names its node");
        assert!(both.refuses_progress("j", &known).is_some());
        assert!(node.refuses_progress("j", &[]).is_some());
        assert!(node.refuses_progress("j", &[("dgx-001".into(), "".into())]).is_none());
        assert!(changes_owner("j", Some("acme/a"), &known).is_some());
        assert!(changes_owner("j", Some("other/x"), &known).is_none());
        assert!(changes_owner("j", None, &known).is_none());
        assert!(changes_owner("j", Some("acme/a"), &[("n".into(), "".into())]).is_none(), "filling an unknown owner is no change");
    }

    #[test]
    fn scoped_tokens_reach_only_filtered_routes() {
        let get = Method::GET;
        for ok in ["/", "/jobs", "/job", "/gpus", "/dashboard/assets/app.js", "/api/v1/jobs", "/api/v1/jobs/42", "/api/v1/statements/kyutai/2026-10.pdf", "/api/v1/kpi", "/api/v1/health", "/health"] {
            assert!(tenant_route(&get, ok), "{ok}");
        }
        for no in [
            "/dashboard/overview.json",
            "/dashboard/live",
            "/dashboard/gpus.json",
            "/dashboard/gpus/dgx-001",
            "/api/v1/alerts",
            "/api/v1/reports/2026-10.pdf",
            "/api/v1/eu-indicators",
            "/api/v1/rules",
            "/api/v1/silences",
            "/metrics",
            "/api/v1/jobsx",
            "/api/v2/write",
        ] {
            assert!(!tenant_route(&get, no), "{no}");
        }
        assert!(!tenant_route(&Method::POST, "/api/v1/jobs"));
        assert!(tenant_route(&get, "/prometheus/api/v1/query_range"));
        assert!(tenant_route(&Method::POST, "/prometheus/api/v1/query"));
    }
}
