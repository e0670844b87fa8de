//! What the remote-write tests share: a request as Prometheus sends it.
#![allow(dead_code)]

use crate::common::{Server, WRITE};
use kilowatch_aggregator::http::remote_write::proto::WriteRequest;
use prost::Message;

pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy")
}

/// `body` POSTed to `/api/v1/write` with Prometheus' headers and `token`.
pub async fn post_raw(s: &Server, body: Vec<u8>, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(s.url("/api/v1/write"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("send")
}

/// `req` encoded, compressed and POSTed with the write token.
pub async fn post(s: &Server, req: &WriteRequest) -> reqwest::Response {
    post_raw(s, snappy(&req.encode_to_vec()), WRITE).await
}
