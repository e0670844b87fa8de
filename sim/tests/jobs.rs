mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{MIN, ts};
use kilowatch_model::Timestamp;
use kilowatch_sim::{Emit, JobEvent, SimConfig, Site};

#[test]
fn a_month_of_jobs_is_consistent_and_busy() {
    let start = ts("2025-02-01T00:00:00Z");
    let mut site = Site::new(SimConfig { start, emit: Emit { gpus: false, nodes: false, facility: true }, ..SimConfig::default() });
    // (node, gpu) -> busy since, per job.
    let mut holder: BTreeMap<(String, u32), (String, Timestamp)> = BTreeMap::new();
    for a in site.active_jobs() {
        assert!(a.start <= start && a.end.is_none());
        for g in &a.gpus {
            assert!(holder.insert((a.node.clone(), *g), (a.job.clone(), a.start)).is_none(), "overlap at start");
        }
    }
    let mut nodes_per_job: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut owners = BTreeSet::new();
    let (mut alloc, mut samples) = (0.0, 0.0);
    let mut last = start;
    while site.now() < ts("2025-03-01T00:00:00Z") {
        let window_from = site.now();
        site.advance_to(Timestamp(site.now().0 + 15 * MIN));
        for e in site.take_job_events() {
            match e {
                JobEvent::Start(a) => {
                    assert!(a.start > window_from && a.start <= site.now(), "start out of window");
                    assert!(a.start >= last, "events out of time order");
                    last = a.start;
                    assert!((1..=8).contains(&a.gpus.len()) && a.gpus.iter().all(|g| *g < 8));
                    assert!(a.job.len() == 7 && a.job.starts_with('1'), "{}", a.job);
                    owners.insert(a.owner.clone());
                    nodes_per_job.entry(a.job.clone()).or_default().insert(a.node.clone());
                    for g in &a.gpus {
                        let prev = holder.insert((a.node.clone(), *g), (a.job.clone(), a.start));
                        assert!(prev.is_none(), "GPU {}:{g} given to {} while {prev:?} holds it", a.node, a.job);
                    }
                }
                JobEvent::End { job, node, end } => {
                    assert!(end > window_from && end <= site.now());
                    assert!(end >= last, "events out of time order");
                    last = end;
                    let held: Vec<_> = holder.iter().filter(|(k, v)| k.0 == node && v.0 == job).map(|(k, _)| k.clone()).collect();
                    assert!(!held.is_empty(), "end of {job} on {node} that never started");
                    for k in held {
                        let (_, since) = holder.remove(&k).expect("held");
                        assert!(since < end);
                    }
                }
            }
        }
        let active: usize = site.active_jobs().iter().map(|a| a.gpus.len()).sum();
        assert_eq!(active, holder.len(), "active_jobs disagrees with the event stream");
        alloc += active as f64 / 1016.0;
        samples += 1.0;
    }
    let alloc = alloc / samples;
    assert!((0.70..=0.90).contains(&alloc), "GPU allocation {alloc}");
    let sizes: Vec<usize> = nodes_per_job.values().map(BTreeSet::len).collect();
    assert!(sizes.iter().all(|n| (1..=64).contains(n)));
    assert!(sizes.iter().any(|&n| n >= 16), "no large job in a month: {sizes:?}");
    assert!(sizes.iter().filter(|&&n| n == 1).count() > sizes.len() / 3, "not skewed to small");
    assert!(owners.len() >= 8, "{owners:?}");
}
