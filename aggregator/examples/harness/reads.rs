//! A reader that asks what an operator's screen asks, in a loop, while a harness runs: the day's
//! KPIs and every dashboard JSON, with the read token, one request at a time. It keeps each
//! route's latencies (answers that came back 2xx) and counts the others, and prints p50, p99
//! and max per route at the end.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The routes read, in the order of one round. Node 1 and its GPU 0 exist in every harness run.
pub const ROUTES: &[&str] = &[
    "/api/v1/kpi?period=day",
    "/dashboard/overview.json",
    "/dashboard/power.json",
    "/dashboard/climate.json",
    "/dashboard/cooling.json",
    "/dashboard/water.json",
    "/dashboard/gpus.json",
    "/dashboard/gpus/dgx-001",
    "/dashboard/gpus/dgx-001/0",
];

#[derive(Default)]
pub struct RouteLatency {
    pub route: &'static str,
    /// Seconds, of the answers that came back 2xx.
    pub ok: Vec<f64>,
    /// Answers with another status (a 503 while the store is busy, a 500).
    pub bad_status: u64,
    /// No answer: the aggregator was down (killed, away for the outage) or the request timed out.
    pub no_answer: u64,
}

pub struct Reader {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<RouteLatency>>,
}

impl Reader {
    /// Starts reading from the aggregator on `port`, a round of every route each `pause`.
    pub fn start(port: u16, token: &'static str, pause: Duration) -> Reader {
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
            let mut lat: Vec<RouteLatency> = ROUTES.iter().map(|r| RouteLatency { route: r, ..Default::default() }).collect();
            while !*rx.borrow() {
                for l in &mut lat {
                    let t = Instant::now();
                    match client.get(format!("http://127.0.0.1:{port}{}", l.route)).header("Authorization", format!("Token {token}")).send().await {
                        Ok(r) if r.status().is_success() => {
                            // The whole answer, as a browser waits for it.
                            if r.bytes().await.is_ok() {
                                l.ok.push(t.elapsed().as_secs_f64());
                            } else {
                                l.no_answer += 1;
                            }
                        }
                        Ok(_) => l.bad_status += 1,
                        Err(_) => l.no_answer += 1,
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = rx.changed() => {}
                }
            }
            lat
        });
        Reader { stop, task }
    }

    pub async fn finish(self) -> Vec<RouteLatency> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// The value below which a share `q` of the sorted `v` lies (nearest rank).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub fn print_latencies(lat: &mut [RouteLatency]) {
    println!("\n{:<28} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10}", "route (read token)", "ok", "p50 ms", "p99 ms", "max ms", "bad status", "no answer");
    for l in lat.iter_mut() {
        l.ok.sort_by(f64::total_cmp);
        let ms = |q: f64| quantile(&l.ok, q) * 1e3;
        println!("{:<28} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>10}", l.route, l.ok.len(), ms(0.5), ms(0.99), ms(1.0), l.bad_status, l.no_answer);
    }
}
