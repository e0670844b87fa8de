//! Reads during the first maintenance pass after a backfill, through the real `kilowatch
//! serve`: the day chart of power has every one of its points while the pass rolls two days up
//! (several batches of series), compacts their chunks into blocks and expires. Before the fix a
//! chart answered 36 or 63 of its 96 points for seconds at a time: the roll-up's horizon moved
//! before the roll-ups behind it were written.

mod common;
mod maintenance_common;

use std::time::Duration;

use common::{READ, Reaped, WRITE};
use maintenance_common::{backfill, config, free_addr, http, serve, store_health, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_chart_keeps_every_point_during_the_first_pass_after_a_backfill() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    // 8 nodes: about 700 series, two batches of the roll-up; a reading every 2 minutes.
    backfill(&data, 2, 8, 120);
    let addr = free_addr();
    let log = dir.path().join("kilowatch.log");
    let _server = Reaped(serve(&config(dir.path(), &data, addr, 5), &log, WRITE, READ));
    until("the server answers", 60, &log, async || store_health(addr, READ).await.is_some()).await;

    let url = format!("http://{addr}/dashboard/power.json?range=24h");
    let (mut reads, mut during, mut short) = (0usize, 0usize, Vec::new());
    let t0 = std::time::Instant::now();
    loop {
        let h = store_health(addr, READ).await.expect("health");
        let passes = h["maintenance_passes"].as_u64().unwrap_or(0);
        // One pass that rolled the two days up, then another look: the chart after it counts too.
        let caught_up = passes >= 1 && h["last_maintenance"]["hours_rolled_up"].as_u64().unwrap_or(0) > 0 || passes >= 2;
        let r = http().get(&url).header("Authorization", format!("Token {READ}")).send().await.expect("power.json");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        let facility = v.as_array().and_then(|a| a.iter().find(|s| s["name"] == "facility")).unwrap_or_else(|| panic!("no facility series: {v}"));
        let points = facility["points"].as_array().expect("points");
        let filled = points.iter().filter(|p| p[1].is_number()).count();
        reads += 1;
        if passes == 0 {
            during += 1;
        }
        if filled != points.len() {
            short.push((filled, points.len(), passes));
        }
        if caught_up && h["horizons"]["rolled_to"].is_number() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "the first pass did not end within 300 s\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    assert!(during >= 2, "the chart was read during the pass ({during} of {reads} reads)");
    assert!(short.is_empty(), "{} of {reads} charts had points missing (filled, of, passes): {:?}", short.len(), &short[..short.len().min(5)]);
}
