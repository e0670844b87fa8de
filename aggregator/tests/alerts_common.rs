//! Shared by the alert tests: a webhook receiver on loopback that can be told to fail.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub signature: Option<String>,
    pub body: serde_json::Value,
    pub raw: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
pub struct Receiver {
    /// Answers to give, in order; 200 once empty. (status, Retry-After)
    pub script: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    pub log: Mutex<Vec<Received>>,
}

impl Receiver {
    pub fn fail_with(&self, answers: &[(u16, Option<&'static str>)]) {
        if let Ok(mut s) = self.script.lock() {
            s.extend(answers.iter().copied());
        }
    }
    pub fn all(&self) -> Vec<Received> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
    /// Requests it acknowledged with a 2xx: what a real receiver acted on.
    pub fn acknowledged(&self) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.status < 300).collect()
    }
}

async fn hook(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let (status, retry) = rx.script.lock().ok().and_then(|mut s| s.pop_front()).unwrap_or((200, None));
    let rec = Received {
        id: headers.get("x-kilowatch-notification-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        signature: headers.get("x-kilowatch-signature").and_then(|v| v.to_str().ok()).map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        raw: body.to_vec(),
        status,
    };
    if let Ok(mut l) = rx.log.lock() {
        l.push(rec);
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    match retry {
        Some(r) => (code, [("retry-after", r)]).into_response(),
        None => code.into_response(),
    }
}

pub async fn start_receiver() -> (SocketAddr, Arc<Receiver>) {
    let rx = Arc::new(Receiver::default());
    // `/api/v2/alerts`: what an Alertmanager receiver (kind = "alertmanager") is pushed to.
    let app = Router::new().route("/hook", post(hook)).route("/api/v2/alerts", post(hook)).with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, rx)
}
