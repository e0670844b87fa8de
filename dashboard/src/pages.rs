//! The pages: one shell (header, navigation, range selector) around a body fragment and its
//! script, all compiled in with `include_str!`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// (path, navigation label, title, body fragment, script asset).
struct Page {
    path: &'static str,
    nav: Option<&'static str>,
    title: &'static str,
    body: &'static str,
    script: &'static str,
}

const PAGES: &[Page] = &[
    Page { path: "/", nav: Some("Overview"), title: "Overview", body: include_str!("../assets/pages/overview.html"), script: "overview.js" },
    Page { path: "/jobs", nav: Some("Jobs"), title: "Jobs", body: include_str!("../assets/pages/jobs.html"), script: "jobs.js" },
    Page { path: "/job", nav: None, title: "Job", body: include_str!("../assets/pages/job.html"), script: "job.js" },
    Page { path: "/gpus", nav: Some("GPUs"), title: "GPUs", body: include_str!("../assets/pages/gpus.html"), script: "gpus.js" },
    Page { path: "/gpu", nav: None, title: "GPU", body: include_str!("../assets/pages/gpu.html"), script: "gpu.js" },
    Page { path: "/cooling", nav: Some("Cooling"), title: "Cooling", body: include_str!("../assets/pages/cooling.html"), script: "cooling.js" },
    Page { path: "/alerts", nav: Some("Alerts"), title: "Alerts", body: include_str!("../assets/pages/alerts.html"), script: "alerts.js" },
    Page { path: "/models", nav: Some("Models"), title: "Models", body: include_str!("../assets/pages/models.html"), script: "models.js" },
    Page { path: "/forecast", nav: Some("Forecast"), title: "Forecast", body: include_str!("../assets/pages/forecast.html"), script: "forecast.js" },
    // Only a fleet aggregator (`[fleet]`) has the data; it is its home page.
    Page { path: "/fleet", nav: None, title: "Fleet", body: include_str!("../assets/pages/fleet.html"), script: "fleet.js" },
];

/// Static assets by name: (content type, body).
fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    const JS: &str = "text/javascript; charset=utf-8";
    Some(match name {
        "app.css" => ("text/css; charset=utf-8", include_str!("../assets/app.css")),
        "app.js" => (JS, include_str!("../assets/js/app.js")),
        "uPlot.iife.min.js" => (JS, include_str!("../assets/vendor/uplot/uPlot.iife.min.js")),
        "uPlot.min.css" => ("text/css; charset=utf-8", include_str!("../assets/vendor/uplot/uPlot.min.css")),
        "uPlot.LICENSE.txt" => ("text/plain; charset=utf-8", include_str!("../assets/vendor/uplot/LICENSE")),
        "chart.js" => (JS, include_str!("../assets/js/chart.js")),
        "overview.js" => (JS, include_str!("../assets/js/overview.js")),
        "jobs.js" => (JS, include_str!("../assets/js/jobs.js")),
        "job.js" => (JS, include_str!("../assets/js/job.js")),
        "gpus.js" => (JS, include_str!("../assets/js/gpus.js")),
        "gpu.js" => (JS, include_str!("../assets/js/gpu.js")),
        "cooling.js" => (JS, include_str!("../assets/js/cooling.js")),
        "alerts.js" => (JS, include_str!("../assets/js/alerts.js")),
        "forecast.js" => (JS, include_str!("../assets/js/forecast.js")),
        "fleet.js" => (JS, include_str!("../assets/js/fleet.js")),
        "models.js" => (JS, include_str!("../assets/js/models.js")),
        _ => return None,
    })
}

fn render(p: &Page) -> String {
    let nav: String = PAGES
        .iter()
        .filter_map(|q| q.nav.map(|label| (q, label)))
        .map(|(q, label)| {
            let active = if q.path == p.path || (p.path == "/job" && q.path == "/jobs") || (p.path == "/gpu" && q.path == "/gpus") { " class=\"active\"" } else { "" };
            format!("<a href=\"{}\" data-nav{active}>{label}</a>", q.path)
        })
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Kilowatch · {title}</title><link rel=\"icon\" href=\"data:,\">\
<link rel=\"stylesheet\" href=\"/dashboard/assets/uPlot.min.css\"><link rel=\"stylesheet\" href=\"/dashboard/assets/app.css\"></head><body>\
<header><h1><span class=\"brand\">Kilowatch</span> · <span id=\"site\">site</span></h1><nav aria-label=\"pages\">{nav}</nav>\
<button type=\"button\" id=\"zone\" class=\"zone\">time zone</button>\
<div id=\"status\" role=\"status\">connecting…</div></header><main id=\"main\">{body}</main>\
<script src=\"/dashboard/assets/app.js\"></script><script src=\"/dashboard/assets/uPlot.iife.min.js\"></script><script src=\"/dashboard/assets/chart.js\"></script>\
<script src=\"/dashboard/assets/{script}\"></script></body></html>",
        title = p.title,
        body = p.body,
        script = p.script
    )
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn serve_asset(Path(name): Path<String>) -> Response {
    match asset(&name) {
        // Assets change only with the binary; an hour of caching spares a wall screen's reloads.
        Some((ct, body)) => ([(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "max-age=3600")], body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

pub fn router() -> Router {
    let mut r = Router::new().route("/dashboard/assets/{name}", get(serve_asset));
    for p in PAGES {
        let page = render(p);
        r = r.route(p.path, get(move || async move { html(page) }));
    }
    r
}

/// Every page path, for tests.
#[cfg(test)]
pub fn paths() -> impl Iterator<Item = &'static str> {
    PAGES.iter().map(|p| p.path)
}

/// Every asset name, for tests.
#[cfg(test)]
pub const ASSETS: &[&str] = &[
    "app.css",
    "app.js",
    "uPlot.iife.min.js",
    "uPlot.min.css",
    "uPlot.LICENSE.txt",
    "chart.js",
    "overview.js",
    "jobs.js",
    "job.js",
    "gpus.js",
    "gpu.js",
    "cooling.js",
    "alerts.js",
    "forecast.js",
    "fleet.js",
    "models.js",
];
