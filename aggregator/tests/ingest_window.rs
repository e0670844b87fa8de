//! The write path: the out-of-order window (store and HTTP, and what a collector does with a
//! refused line), partial writes through the series cache, and the borrowed parse
//! storing what the owned one did.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, WRITE};
use kilowatch_model::{Point, Precision, Timestamp, parse_batch};
use kilowatch_ship::{Fsync, Spool, SpoolConfig};
use kilowatch_ship::{ShipStats, ship_loop};
use kilowatch_ship::{Shipper, ShipperConfig};
use kilowatch_store::{Store, Value};
use tokio::sync::{Notify, watch};

const H: i64 = 3600 * 1_000_000_000;
const T0: i64 = 1_790_812_800 * 1_000_000_000;

fn meter(v: f64, t: i64) -> Point {
    Point::new("meter", Timestamp(t)).tag("meter", "grid-a").tag("role", "facility").field("energy_kwh", v).field("power_w", v * 2.0)
}

fn read_all(s: &Store, field: &str) -> Vec<(i64, Value)> {
    let ids = s.find_series("meter", field, &[("meter", "grid-a")]).expect("find");
    assert_eq!(ids.len(), 1, "{field}");
    s.read_with_neighbours(ids[0].id, i64::MIN, i64::MAX).expect("read")
}

#[test]
fn lines_older_than_the_window_are_refused_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    s.set_out_of_order_window(Some(Duration::from_secs(2 * 3600))).expect("window");
    // A first write may be as old as it likes: the window counts from a series' newest sample.
    s.write(&[meter(1.0, T0), meter(2.0, T0 + 3 * H)]).expect("first write");
    // Inside the window, out of order, and a replay: accepted, stored once.
    s.write(&[meter(1.5, T0 + 2 * H)]).expect("within the window");
    s.write(&[meter(1.5, T0 + 2 * H)]).expect("replayed");
    let before = s.stats().expect("stats");

    // One too-old line is refused; the request's other lines, a new series among them, are stored.
    let new_series = Point::new("meter", Timestamp(T0 + 3 * H)).tag("meter", "new").field("energy_kwh", 1.0);
    let w = s.write(&[meter(3.0, T0 + 4 * H), new_series.clone(), meter(0.5, T0 + H / 2)]).expect("partial write");
    assert_eq!(w.refused.len(), 1, "{w:?}");
    assert_eq!((w.refused[0].line, w.points, w.samples, w.new_series), (3, 2, 3, 1));
    let msg = w.refused[0].to_string();
    assert!(msg.starts_with("line 3: meter,meter=grid-a,role=facility energy_kwh at 2026-10-01T00:30:00Z"), "{msg}");
    assert!(msg.contains("2026-10-01T04:00:00Z"), "the newest counts the request's own earlier lines: {msg}");
    assert!(msg.contains("7200 s") && msg.contains("out_of_order_window_s"), "{msg}");
    let after = s.stats().expect("stats");
    assert_eq!((after.series, after.samples_written), (before.series + 1, before.samples_written + 3));
    assert_eq!(s.find_series("meter", "energy_kwh", &[("meter", "new")]).expect("find").len(), 1);
    assert_eq!(read_all(&s, "energy_kwh").iter().map(|(t, _)| (t - T0) / (H / 2)).collect::<Vec<_>>(), vec![0, 4, 6, 8], "sorted, one per timestamp, the refused one absent");
    assert_eq!(read_all(&s, "power_w").last(), Some(&(T0 + 4 * H, Value::Num(6.0))));
    // A request whose every line is refused stores nothing and still answers.
    let w = s.write(&[meter(0.1, T0)]).expect("all refused");
    assert_eq!((w.refused.len(), w.points, w.samples), (1, 0, 0));
    assert_eq!(s.stats().expect("stats").samples_written, after.samples_written);
    s.checkpoint().expect("checkpoint");
    drop(s);

    // After a restart the newest comes from the stored data.
    let s = Store::open(dir.path()).expect("reopen");
    s.set_out_of_order_window(Some(Duration::from_secs(2 * 3600))).expect("window");
    assert_eq!(s.write(&[meter(0.1, T0 + H / 2)]).expect("write").refused.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1]);
    assert!(s.write(&[meter(0.1, T0 + 3 * H)]).expect("inside").refused.is_empty());
}

#[test]
fn time_ordered_backfill_passes_any_window() {
    // As the demo's backfill writes: a long history, in time order per series.
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    s.set_out_of_order_window(Some(Duration::from_secs(60))).expect("window");
    for i in 0..200 {
        s.write(&[meter(f64::from(i), T0 - 30 * 24 * H + i64::from(i) * H)]).expect("in order");
    }
    assert_eq!(read_all(&s, "energy_kwh").len(), 200);
}

#[test]
fn borrowed_parse_stores_what_points_store() {
    let body = "meter,meter=grid-a,role=facility energy_kwh=1,power_w=2 1\n\
                meter,role=facility,meter=grid-a energy_kwh=3,power_w=6 2\n\
                meter,meter=grid-a,role=facility power_w=8,energy_kwh=4 3\n\
                meter,meter=grid\\ b,role=facility energy_kwh=5i 4\n\
                cooling,unit=cu-01 mode=\"free\",fan_power_w=10 5\n";
    let (a, b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let (sa, sb) = (Store::open(a.path()).expect("open"), Store::open(b.path()).expect("open"));
    let lines = parse_batch(body, Precision::S, Timestamp(0)).expect("valid");
    let wa = sa.write_lines(&lines).expect("write");
    let wb = sb.write(&lines.to_points()).expect("write");
    assert_eq!(wa, wb);
    assert_eq!(wa.new_series, 5);
    for s in [&sa, &sb] {
        assert_eq!(s.stats().expect("stats").series, 5);
        assert_eq!(read_all(s, "energy_kwh").iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), vec![Value::Num(1.0), Value::Num(3.0), Value::Num(4.0)]);
        let mode = s.find_series("cooling", "mode", &[("unit", "cu-01")]).expect("find");
        assert_eq!(s.latest(&[mode[0].id]).expect("latest")[0], Some((5_000_000_000, Value::Text("free".into()))));
    }
    // The second write resolves every series from the cache, new spellings included.
    sa.write_lines(&lines).expect("again");
    assert_eq!(sa.stats().expect("stats").series, 5);
    drop(sa);
    let sa = Store::open(a.path()).expect("reopen from the log");
    assert_eq!(read_all(&sa, "power_w").len(), 3);
}

#[tokio::test]
async fn http_answers_a_partial_write_with_422_the_line_and_the_counts() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    s.store.set_out_of_order_window(Some(Duration::from_secs(3600))).expect("window");
    let t = T0 / 1_000_000_000;
    assert_eq!(s.write(&format!("m,k=a v=1 {}\n", t + 7200), "s", WRITE).await.status(), 204);
    let before = s.store.stats().expect("stats");
    let r = s.write(&format!("m,k=a v=2 {}\nm,k=b v=1 {}\nm,k=a v=3 {t}\n", t + 7200, t + 7200), "s", WRITE).await;
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().await.expect("json");
    assert_eq!(e["line"], 3, "{e}");
    assert_eq!((e["refused"].as_u64(), e["accepted"].as_u64()), (Some(1), Some(2)), "{e}");
    assert_eq!(e["code"], "unprocessable entity");
    assert!(e["message"].as_str().expect("message").contains("out-of-order window"), "{e}");
    assert_eq!(e["errors"][0]["line"], 3, "{e}");
    let after = s.store.stats().expect("stats");
    assert_eq!((after.series, after.samples_written), (before.series + 1, before.samples_written + 2), "the good lines are stored");
}

/// A collector whose spool holds a line the aggregator refuses as too old delivers the lines
/// around it, counts the refused one and does not resend anything.
#[tokio::test]
async fn a_collector_counts_a_refused_line_and_delivers_the_rest() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(&dir.path().join("agg")).await;
    s.store.set_out_of_order_window(Some(Duration::from_secs(3600))).expect("window");
    let t = T0;
    let mut spool = Spool::open(SpoolConfig { dir: dir.path().join("spool"), fsync: Fsync::Never, ..SpoolConfig::default() }).expect("spool");
    for body in [format!("m,k=a v=1 {}\n", t + 10 * H), format!("m,k=a v=2 {t}\nm,k=b v=2 {t}\n"), format!("m,k=a v=3 {}\n", t + 11 * H)] {
        spool.append(body.as_bytes()).expect("append");
    }
    let stats = Arc::new(ShipStats::default());
    let shipper = Shipper::new(&ShipperConfig { url: format!("http://{}", s.addr), token: WRITE.into(), org: None, bucket: None, timeout: Duration::from_secs(5) }).expect("shipper");
    let spool = Arc::new(Mutex::new(spool));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(ship_loop(shipper, spool.clone(), Arc::new(Notify::new()), stats.clone(), rx));
    for _ in 0..100 {
        if spool.lock().expect("lock").peek(0).expect("peek").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    task.await.expect("ship loop");
    assert!(spool.lock().expect("lock").peek(0).expect("peek").is_empty(), "the spool drained: nothing retried forever");
    assert_eq!(stats.lines_refused.load(Ordering::Relaxed), 1);
    assert_eq!(stats.batches_rejected.load(Ordering::Relaxed), 0, "no batch dropped whole");
    assert_eq!(stats.batches_sent.load(Ordering::Relaxed), 3);
    let ids = s.store.find_series("m", "v", &[("k", "a")]).expect("find");
    let got: Vec<i64> = s.store.read_with_neighbours(ids[0].id, i64::MIN, i64::MAX).expect("read").iter().map(|(t, _)| *t).collect();
    assert_eq!(got, vec![t + 10 * H, t + 11 * H]);
    assert_eq!(s.store.find_series("m", "v", &[("k", "b")]).expect("find").len(), 1, "the good line of the mixed batch is stored");
}
