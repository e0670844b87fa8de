//! The shipped rules for Kepler (sustainable-computing-io/kepler), 0.7.x and 0.10+, onto the
//! `node` and `pod` measurements (docs/prometheus.md, "Kepler").
//!
//! Each Kepler counter stays its own series, told apart by the tags `zone` (`platform`,
//! `package`, `dram`), `mode` (`dynamic`, `idle`) and the socket (`package` in 0.7, `path` in
//! 0.10): Prometheus may send the two modes of one scrape in different requests, so the
//! receiver keeps no state and the ledger sums a node's series (accounting's attribution), each
//! series' resets and gaps handled on its own as the collector's counters are.

use std::collections::BTreeMap;

use super::MapRule;

/// The tag every Kepler series carries, so the ledger tells Kepler's node counters from a
/// measured input (the collector's, a BMC's) and prefers the latter.
pub const SOURCE: (&str, &str) = ("source", "kepler");

/// Where the node's name is: Kepler 0.10's constant label `node_name`; else a `node` label a
/// relabelling adds from `__meta_kubernetes_pod_node_name` (Kepler 0.7's container series have
/// no node label); else Kepler 0.7's own `instance` label, which Prometheus renames
/// `exported_instance` (honor_labels off).
pub const NODE_LABELS: &str = "node_name|node|exported_instance";

/// The socket (device) of a 0.7 node series; a series without it (Prometheus drops empty labels)
/// is still taken, named by its mode.
const SOCKET_07: &str = "package|mode";
/// The power domain's sysfs path of a 0.10 node series, else its zone.
const SOCKET_010: &str = "path|zone";

fn rule(metric: &str, measurement: &str, matchers: &[(&str, &str)], tags: &[(&str, &str)], set: &[(&str, &str)]) -> MapRule {
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, l)| ((*k).to_owned(), (*l).to_owned())).collect::<BTreeMap<_, _>>();
    let mut tags = pairs(tags);
    tags.insert("node".to_owned(), NODE_LABELS.to_owned());
    let mut set = pairs(set);
    set.insert(SOURCE.0.to_owned(), SOURCE.1.to_owned());
    MapRule { metric: metric.to_owned(), matchers: pairs(matchers), measurement: measurement.to_owned(), field: "energy_j".to_owned(), scale: 1.0, tags, set }
}

/// Kepler's energy counters (joules) as `node` and `pod` `energy_j` series.
pub fn rules() -> Vec<MapRule> {
    let mut r = vec![
        // 0.7.x: one series per mode; the platform (whole node) and per socket package and DRAM.
        rule("kepler_node_platform_joules_total", "node", &[], &[("mode", "mode"), ("package", SOCKET_07)], &[("zone", "platform")]),
        rule("kepler_node_package_joules_total", "node", &[], &[("mode", "mode"), ("package", SOCKET_07)], &[("zone", "package")]),
        rule("kepler_node_dram_joules_total", "node", &[], &[("mode", "mode"), ("package", SOCKET_07)], &[("zone", "dram")]),
        // 0.7.x: a container's dynamic energy (package + DRAM + other + GPU); its idle share
        // is the node's idle, which the ledger already counts as the node's.
        rule(
            "kepler_container_joules_total",
            "pod",
            &[("mode", "dynamic")],
            &[("namespace", "container_namespace"), ("pod", "pod_name"), ("container", "container_name|container_id")],
            &[("zone", "total")],
        ),
    ];
    // 0.10+: active and idle per zone (`psys` is the platform); sockets by `path`.
    for (zone, tag) in [("psys", "platform"), ("package", "package"), ("dram", "dram")] {
        for (metric, mode) in [("kepler_node_cpu_active_joules_total", "dynamic"), ("kepler_node_cpu_idle_joules_total", "idle")] {
            r.push(rule(metric, "node", &[("zone", zone)], &[("path", SOCKET_010)], &[("zone", tag), ("mode", mode)]));
        }
    }
    // 0.10+: a pod's active energy, package and DRAM (psys is not split per pod everywhere).
    for zone in ["package", "dram"] {
        r.push(rule("kepler_pod_cpu_joules_total", "pod", &[("zone", zone)], &[("namespace", "pod_namespace"), ("pod", "pod_name")], &[("zone", zone)]));
    }
    r
}
