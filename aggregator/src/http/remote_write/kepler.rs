//! Kepler's pods as jobs: a `pod` series (a container's or pod's joules, mapped by the shipped
//! Kepler rules, `config/prometheus/kepler.rs`) names the job `k8s:<namespace>/<pod>`, the id
//! dcgm-exporter's Kubernetes labels and `POST /api/v1/jobs` give a pod, with its owner from the
//! owner label or `[kubernetes] namespace_owners` and its namespace as project. The receiver
//! records that owner in the job ledger ([`super::owners::JobOwners`]); the ledger makes the
//! pod's allocation on its node from its `pod` series (accounting's attribution).

use super::map::LabelJob;
use crate::config::kubernetes::KubernetesConfig;

/// The job of a `pod` point's tags (`namespace`, `pod`), with its owner: `labelled` (the
/// series' `job_owner_label`) first, else the namespace's owner; `None` without both tags.
pub fn pod_job(tags: &[(String, String)], labelled: Option<&str>, k8s: &KubernetesConfig) -> Option<LabelJob> {
    let tag = |k: &str| tags.iter().find(|(t, _)| t == k).map(|(_, v)| v.as_str());
    let (namespace, pod) = (tag("namespace")?, tag("pod")?);
    let owner = labelled.or_else(|| k8s.owner_of(namespace)).unwrap_or_default();
    Some(LabelJob { job: kilowatch_model::metric::pod_job_id(namespace, pod), owner: owner.to_owned(), project: namespace.to_owned() })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use prost::Message;

    use super::super::map::{Mapper, SeriesCache, build};
    use super::super::proto::{Label, Request, Sample, TimeSeries, WriteRequest};
    use super::*;
    use crate::config::prometheus::PrometheusConfig;

    fn series(name: &str, labels: &[(&str, &str)], v: f64) -> TimeSeries {
        let mut l = vec![Label::new("__name__", name)];
        l.extend(labels.iter().map(|(k, v)| Label::new(k, v)));
        TimeSeries { labels: l, samples: vec![Sample { timestamp: 1000, value: v }] }
    }

    #[test]
    fn kepler_07_and_010_counters_become_node_and_pod_series_each_of_its_own() {
        let k8s: KubernetesConfig = toml::from_str("namespace_owners = [{ namespace = \"acme-*\", owner = \"acme\" }]").expect("k8s");
        let m = Mapper::new(&PrometheusConfig::default(), "dc5", 256).with_namespace_owners(&k8s);
        // Kepler 0.7 scraped with honor_labels off (its `instance` renamed), a `node` label
        // relabelled onto the container series; Kepler 0.10 with its `node_name`.
        let node07 = |mode| [("exported_instance", "cpu-01"), ("instance", "10.0.0.5:9102"), ("package", "0"), ("mode", mode), ("source", "rapl")];
        let pod07 = |mode| [("node", "cpu-01"), ("container_namespace", "acme-web"), ("pod_name", "web-0"), ("container_name", "nginx"), ("container_id", "abc"), ("mode", mode)];
        let req = WriteRequest {
            timeseries: vec![
                series("kepler_node_platform_joules_total", &node07("dynamic"), 100.0),
                series("kepler_node_platform_joules_total", &node07("idle"), 50.0),
                series("kepler_node_package_joules_total", &node07("dynamic"), 70.0),
                series("kepler_container_joules_total", &pod07("dynamic"), 30.0),
                series("kepler_container_joules_total", &pod07("idle"), 5.0),
                series("kepler_node_cpu_active_joules_total", &[("node_name", "cpu-02"), ("zone", "package"), ("path", "/sys/class/powercap/intel-rapl:0")], 7.0),
                series("kepler_node_cpu_idle_joules_total", &[("node_name", "cpu-02"), ("zone", "package"), ("path", "/sys/class/powercap/intel-rapl:0")], 3.0),
                series("kepler_node_cpu_active_joules_total", &[("node_name", "cpu-02"), ("zone", "core"), ("path", "/sys/class/powercap/intel-rapl:0:0")], 6.0),
                series("kepler_pod_cpu_joules_total", &[("node_name", "cpu-02"), ("pod_namespace", "other"), ("pod_name", "db-0"), ("pod_id", "u-1"), ("zone", "package"), ("state", "running")], 2.0),
            ],
        };
        let buf = req.encode_to_vec();
        let r = Request::decode(&buf).expect("decodes");
        let b = build(&r, &m, &SeriesCache::default(), &mut HashSet::<String>::new());
        let mut lines: Vec<&str> = Vec::new();
        let text = b.text();
        lines.extend(text.lines());
        lines.sort();
        assert_eq!(
            lines,
            [
                "node,mode=dynamic,node=cpu-01,package=0,site=dc5,source=kepler,zone=package energy_j=70 1000",
                "node,mode=dynamic,node=cpu-01,package=0,site=dc5,source=kepler,zone=platform energy_j=100 1000",
                "node,mode=dynamic,node=cpu-02,path=/sys/class/powercap/intel-rapl:0,site=dc5,source=kepler,zone=package energy_j=7 1000",
                "node,mode=idle,node=cpu-01,package=0,site=dc5,source=kepler,zone=platform energy_j=50 1000",
                "node,mode=idle,node=cpu-02,path=/sys/class/powercap/intel-rapl:0,site=dc5,source=kepler,zone=package energy_j=3 1000",
                "pod,container=nginx,namespace=acme-web,node=cpu-01,pod=web-0,site=dc5,source=kepler,zone=total energy_j=30 1000",
                "pod,namespace=other,node=cpu-02,pod=db-0,site=dc5,source=kepler,zone=package energy_j=2 1000",
            ]
        );
        assert_eq!(b.counts.unmapped, 2, "a container's idle share and the core zone (inside package) are not used");
        let jobs: Vec<(&str, &str, &str)> = b.label_jobs.iter().map(|j| (j.job.as_str(), j.owner.as_str(), j.project.as_str())).collect();
        assert_eq!(jobs, [("k8s:acme-web/web-0", "acme", "acme-web"), ("k8s:other/db-0", "", "other")], "pods' owners recorded for the ledger");
    }

    #[test]
    fn a_pod_is_the_job_of_its_namespace_and_name_owned_as_its_namespace_says() {
        let k8s: KubernetesConfig = toml::from_str("namespace_owners = [{ namespace = \"acme-*\", owner = \"acme\" }]").expect("k8s");
        let tags = |ns: &str| vec![("namespace".to_owned(), ns.to_owned()), ("node".to_owned(), "cpu-01".to_owned()), ("pod".to_owned(), "web-0".to_owned())];
        let j = pod_job(&tags("acme-web"), None, &k8s).expect("a job");
        assert_eq!((j.job.as_str(), j.owner.as_str(), j.project.as_str()), ("k8s:acme-web/web-0", "acme", "acme-web"));
        assert_eq!(pod_job(&tags("acme-web"), Some("billing/x"), &k8s).map(|j| j.owner), Some("billing/x".to_owned()), "the owner label wins");
        assert_eq!(pod_job(&tags("other"), None, &k8s).map(|j| j.owner), Some(String::new()));
        assert!(pod_job(&[("node".to_owned(), "n".to_owned())], None, &k8s).is_none());
    }
}
