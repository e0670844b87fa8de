//! Energy per token and per training step: training progress in (`POST /api/v1/progress`),
//! the serving and training footprint out (`GET /api/v1/models`), and the
//! `kilowatch_model_energy_joules_per_token` gauges of `GET /metrics` (docs/inference.md).

use crate::adapters::{StoreJobs, StoreRead, job_error};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use kilowatch_accounting::tokens;
use kilowatch_model::{TimeRange, Timestamp};
use kilowatch_store::jobs::{JobError, JobStore};
use kilowatch_store::progress::ProgressPost;
use serde_json::json;

use crate::acct_api::{Acct, OneOrMany, WindowParams, cached_value, read_window, rows_answer, write_denied};
use crate::api::AppState;

/// `POST /api/v1/progress`: steps a training job finished. Idempotent on (job, step).
pub async fn post_progress(State(st): State<AppState>, acct: Acct, headers: HeaderMap, Json(body): Json<OneOrMany<ProgressPost>>) -> Response {
    if let Some(r) = write_denied(&st, &headers) {
        return r;
    }
    let posts = body.into_vec();
    let a2 = acct.0.clone();
    let scope = st.auth.write_scope_of(&headers);
    let res = tokio::task::spawn_blocking(move || -> Result<usize, JobError> {
        let js = a2.jobs.as_ref().map_err(|e| JobError::Invalid(format!("job ledger unavailable: {e}")))?;
        // A narrowed token posts progress only for jobs of its nodes and owners.
        if let Some(scope) = &scope {
            for p in &posts {
                let known: Vec<(String, String)> = js.job(&p.job)?.into_iter().map(|a| (a.node, a.owner)).collect();
                if let Some(why) = scope.refuses_progress(&p.job, &known) {
                    return Err(JobError::Forbidden(why));
                }
            }
        }
        js.post_progress(&posts, Timestamp::now().0)
    })
    .await;
    acct.cache.clear();
    rows_answer(res, "training progress not stored")
}

/// `GET /api/v1/models?from=&to=` (or `period=`): per model and tenant, per hour, energy, water
/// and CO2 with the per-token figures; training jobs per step and per billion tokens.
pub async fn get_models(State(st): State<AppState>, acct: Acct, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    let (range, label, _) = match read_window(&st, &headers, &q) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let store = st.store.clone();
    let carbon = st.config.carbon.clone();
    let weights = tokens::PromptWeights::from(&st.config.accounting);
    let a2 = acct.0.clone();
    let resp = cached_value(&st, &acct.0, q.cache_key("models"), range, move || -> Result<serde_json::Value, JobError> {
        let js = a2.jobs.as_ref().map_err(|e| JobError::Invalid(e.clone()))?;
        let m = tokens::models(&StoreRead(&store), &StoreJobs::new(&store, js), range, &carbon, weights).map_err(job_error)?;
        let mut v = serde_json::to_value(&m).unwrap_or_default();
        v["window"] = json!(label);
        Ok(v)
    })
    .await;
    match resp {
        Ok(v) => Json(v.as_ref()).into_response(),
        Err(r) => r,
    }
}

/// How long the `/metrics` gauges of energy per token are kept before they are computed again.
const GAUGES_TTL: Duration = Duration::from_secs(300);

/// Sets the `kilowatch_model_energy_joules_per_token` gauges from the last complete clock hour
/// of data, at most every five minutes (a scrape every 15 s must not attribute the site each time).
pub async fn refresh_model_gauges(st: &AppState) {
    let m = st.metrics.clone();
    {
        let Ok(mut at) = m.model_gauges_at.lock() else { return };
        if at.is_some_and(|t| t.elapsed() < GAUGES_TTL) {
            return;
        }
        *at = Some(Instant::now());
    }
    let store = st.store.clone();
    let carbon = st.config.carbon.clone();
    let weights = tokens::PromptWeights::from(&st.config.accounting);
    let res = tokio::task::spawn_blocking(move || -> Result<tokens::ModelsAnswer, JobError> {
        const HOUR: i64 = 3_600_000_000_000;
        let end = store.live_now()?.div_euclid(HOUR) * HOUR;
        let js = JobStore::beside(&store)?;
        tokens::models(&StoreRead(&store), &StoreJobs::new(&store, &js), TimeRange::new(Timestamp(end - HOUR), Timestamp(end)), &carbon, weights).map_err(job_error)
    })
    .await;
    let answer = match res {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "energy per token gauges not computed");
            return;
        }
        Err(_) => return,
    };
    set_gauges(&m, &answer);
}

fn set_gauges(m: &Arc<crate::metrics::Metrics>, a: &tokens::ModelsAnswer) {
    m.model_j_per_token.clear();
    for model in &a.models {
        for (tokens_kind, e) in [("all", model.per_token.j_per_token), ("generated", model.per_token.j_per_generated_token)] {
            let Some(e) = e else { continue };
            // An unknown facility energy is no gauge, never a 0.
            for (basis, v) in [("gpu", Some(e.gpu)), ("it", Some(e.it)), ("facility", e.facility)] {
                let Some(v) = v else { continue };
                let labels = [("model", model.model.clone()), ("tenant", model.tenant.clone()), ("basis", basis.to_owned()), ("tokens", tokens_kind.to_owned())];
                m.model_j_per_token.get_or_create(&labels).set(v);
            }
        }
    }
}
