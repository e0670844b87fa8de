//! Any bytes POSTed to /api/v2/write with a valid token, through the real router and store: the
//! answer is 204, 400 or 422, and a 400 (no line parsed) stores nothing at all.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use kilowatch_aggregator::api::AppState;
use kilowatch_aggregator::auth::Auth;
use kilowatch_aggregator::config::Config;
use kilowatch_aggregator::server;
use kilowatch_store::Store;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-write-token-0123456789";

struct World {
    rt: tokio::runtime::Runtime,
    state: AppState,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let state = AppState { store, auth: Arc::new(Auth::new(vec![TOKEN.into()], vec![], false)), config: Arc::new(Config::default()), sink: None, metrics: Default::default() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        World { rt, state, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let before = w.state.store.stats().expect("stats");
    let app = server::router(w.state.clone());
    let req = Request::post("/api/v2/write?precision=s").header("Authorization", format!("Token {TOKEN}")).body(Body::from(data.to_vec())).expect("request");
    let status = w.rt.block_on(app.oneshot(req)).expect("infallible").status().as_u16();
    let after = w.state.store.stats().expect("stats");
    match status {
        204 => {}
        // No line parsed: nothing of the request is stored.
        400 => {
            assert_eq!(after.samples_written, before.samples_written, "a rejected write stored samples");
            assert_eq!(after.series, before.series, "a rejected write created series");
        }
        // A partial write: the lines that parsed are stored, the others named (docs/api.md).
        422 => {}
        other => panic!("unexpected status {other}"),
    }
});
