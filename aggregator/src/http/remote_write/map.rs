//! Prometheus series to wire-schema points: the points of a whole request, grouped as the
//! collector groups its fields (one line per thing and timestamp). The rules are in
//! [`super::rules`], the series memory in [`super::cache`], the lines in [`super::batch`], XID
//! events in [`super::xid`].

use std::sync::Arc;

use super::batch::Num;
pub use super::batch::{Batch, Counts, OutLine};
use super::cache::Mapped;
pub use super::cache::{MAX_CACHED_BYTES, SeriesCache};
pub use super::key::Key;
use super::proto::{Request, STALE_NAN_BITS};
pub use super::rules::{LabelJob, Mapper, SHADOW_MEASUREMENT, SOURCE_TAG, Target};
use super::xid::xid_events;

/// Series in an answer's message, at most, and bytes of each series' description.
pub(super) const DESCRIBE_BYTES: usize = 200;

/// Decides, for a `gpu` point of a node, whether the collector already reports that node; and
/// says which XID code a GPU's newest stored `gpu_event` holds.
pub trait GpuOwners {
    fn collector_reports(&mut self, node: &str) -> bool;

    /// The `xid` of the newest `gpu_event` stored with `tags`, if any: a receiver that
    /// restarts does not take dcgm-exporter's unchanged gauge for a new XID.
    fn newest_xid(&mut self, _tags: &[(String, String)]) -> Option<f64> {
        None
    }
}

/// Maps every series of `req` and groups the values of one thing at one time into one line.
pub fn build(req: &Request<'_>, mapper: &Mapper, cache: &SeriesCache, owners: &mut dyn GpuOwners) -> Batch {
    build_into(req, mapper, cache, owners, Batch::default())
}

/// [`build`] into the memory of an earlier request's batch ([`Batch::recycle`]).
pub fn build_into(req: &Request<'_>, mapper: &Mapper, cache: &SeriesCache, owners: &mut dyn GpuOwners, into: Batch) -> Batch {
    let mut b = into.recycle();
    b.field_names = Some(mapper.field_names.clone());
    b.values.reserve(req.len());
    // The label jobs already in `b.label_jobs`, by address then by content (the series of one
    // job's GPUs have equal ones).
    let mut seen_jobs: hashbrown::HashSet<*const LabelJob> = hashbrown::HashSet::new();
    let mut cache = cache.lock();
    for (i, ts) in req.series_iter().enumerate() {
        let i = i as u32;
        let n = ts.samples.len() as u64;
        let mapped = mapper.mapped(&ts, &mut cache);
        let m = match &*mapped {
            Mapped::Field(m) => m,
            Mapped::Unmapped => {
                b.counts.unmapped += n;
                continue;
            }
            Mapped::Refused(why) => {
                b.counts.refused += n;
                b.refused.push((i, format!("{}: {why}", ts.describe(DESCRIBE_BYTES))));
                continue;
            }
        };
        let shadowed = m.node.as_deref().is_some_and(|node| owners.collector_reports(node));
        let series = b.series.len() as u32;
        if m.xid {
            // The collector writes the XID events of the nodes it reports.
            if shadowed {
                b.counts.shadowed += n;
            } else {
                xid_events(&mut b, &mut cache, owners, &ts, i, m, series, mapper);
                if b.values.last().is_some_and(|e| e.series == series) {
                    b.series.push(mapped.clone());
                }
            }
            continue;
        }
        if !shadowed
            && let Some(lj) = &m.label_job
            && seen_jobs.insert(Arc::as_ptr(lj))
            && !b.label_jobs.iter().any(|k| **k == **lj)
        {
            b.label_jobs.push(lj.clone());
        }
        let key = if shadowed { m.shadow_key.as_ref().unwrap_or(&m.key) } else { &m.key };
        // The collector writes its own `gpu_job` points for the nodes it reports.
        let job = if shadowed { None } else { m.job.as_ref() };
        let mut bad: Option<String> = None;
        for s in ts.samples {
            if s.value.to_bits() == STALE_NAN_BITS {
                b.counts.stale += 1;
                continue;
            }
            let value = s.value * m.scale;
            if !value.is_finite() || s.timestamp.checked_mul(1_000_000).is_none() {
                b.counts.refused += 1;
                bad.get_or_insert_with(|| format!("{}: value {} at {} ms is not a finite number at a representable time", ts.describe(DESCRIBE_BYTES), s.value, s.timestamp));
                continue;
            }
            // Integers as the collector writes them, within what line protocol keeps exactly.
            let num = if m.integer && value.fract() == 0.0 && value.abs() <= kilowatch_model::lineproto::MAX_EXACT_INTEGER as f64 { Num::I(value as i64) } else { Num::F(value) };
            if !b.put(key, s.timestamp, series, m.field, num) {
                continue;
            }
            if let Some((job_key, _)) = job {
                b.put(job_key, s.timestamp, series, mapper.job_field, Num::Job);
            }
            if shadowed {
                b.counts.shadowed += 1;
            } else {
                b.counts.mapped += 1;
            }
        }
        if b.values.last().is_some_and(|e| e.series == series) {
            b.series.push(mapped.clone());
        }
        if let Some(why) = bad {
            b.refused.push((i, why));
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use kilowatch_model::Timestamp;

    use super::super::proto::{Label, Sample, TimeSeries, WriteRequest};
    use super::*;
    use crate::config::kubernetes::KubernetesConfig;
    use crate::config::prometheus::PrometheusConfig;

    /// [`super::build`] of a request as a sender encodes it.
    fn build(req: &WriteRequest, mapper: &Mapper, cache: &SeriesCache, owners: &mut dyn GpuOwners) -> Batch {
        let buf = req.encode_to_vec();
        let r = Request::decode(&buf).expect("decodes");
        super::build(&r, mapper, cache, owners)
    }

    struct NoCollector;
    impl GpuOwners for NoCollector {
        fn collector_reports(&mut self, _: &str) -> bool {
            false
        }
    }

    struct Collector(&'static str);
    impl GpuOwners for Collector {
        fn collector_reports(&mut self, node: &str) -> bool {
            node == self.0
        }
    }

    fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        let mut l = vec![Label::new("__name__", name)];
        l.extend(labels.iter().map(|(k, v)| Label::new(k, v)));
        TimeSeries { labels: l, samples: samples.iter().map(|(t, v)| Sample { timestamp: *t, value: *v }).collect() }
    }

    const GPU0: &[(&str, &str)] = &[("gpu", "0"), ("UUID", "GPU-a"), ("Hostname", "dgx-001"), ("modelName", "NVIDIA H100 80GB HBM3"), ("job", "dcgm"), ("instance", "10.0.0.1:9400")];

    fn mapper(toml_text: &str) -> Mapper {
        let cfg: PrometheusConfig = toml::from_str(toml_text).expect("config");
        cfg.validate().expect("valid");
        Mapper::new(&cfg, "dc5", 256)
    }

    #[test]
    fn dcgm_series_become_one_gpu_line_per_timestamp_as_the_collector_writes_it() {
        let req = WriteRequest {
            timeseries: vec![
                series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(1000, 123456789.0), (2000, 123457289.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[(1000, 512.5), (2000, 500.0)]),
                series("DCGM_FI_DEV_FB_USED", GPU0, &[(1000, 3.0)]),
            ],
        };
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut NoCollector);
        assert_eq!(b.counts, Counts { mapped: 5, ..Counts::default() });
        let text = b.text();
        assert_eq!(
            text,
            "gpu,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a energy_mj=123456789i,power_w=512.5,mem_used_bytes=3145728i 1000\n\
             gpu,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a energy_mj=123457289i,power_w=500 2000\n"
        );
    }

    #[test]
    fn job_labels_become_gpu_job_points() {
        let hpc: Vec<(&str, &str)> = GPU0.iter().copied().chain([("hpc_job", "4242")]).collect();
        let k8s: Vec<(&str, &str)> = [("gpu", "1"), ("UUID", "GPU-b"), ("Hostname", "dgx-001"), ("pod", "train-0"), ("namespace", "mistral-train"), ("container", "main")].into();
        let req = WriteRequest {
            timeseries: vec![
                series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", &hpc, &[(1000, 5.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &hpc, &[(1000, 300.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &k8s, &[(1000, 200.0)]),
            ],
        };
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut NoCollector);
        let text = b.text();
        assert!(text.contains("gpu_job,gpu=0,node=dgx-001,site=dc5,uuid=GPU-a job=\"slurm:4242\" 1000\n"), "{text}");
        assert!(text.contains("gpu_job,gpu=1,node=dgx-001,site=dc5,uuid=GPU-b job=\"k8s:mistral-train/train-0\" 1000\n"), "{text}");
        assert_eq!(text.matches("gpu_job").count(), 2, "one gpu_job point per GPU and time: {text}");
        assert_eq!(b.counts.mapped, 3);
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut Collector("dgx-001"));
        assert!(!b.text().contains("gpu_job"), "the collector writes its own");
    }

    #[test]
    fn job_labels_give_owners_from_the_owner_label_or_the_namespace() {
        let k8s: KubernetesConfig = toml::from_str("namespace_owners = [{ namespace = \"mistral-*\", owner = \"mistral-ai/k8s\" }]").expect("k8s");
        let m = mapper("job_owner_label = \"slurm_account\"\n").with_namespace_owners(&k8s);
        let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> { GPU0.iter().copied().chain(extra.iter().copied()).collect() };
        let req = WriteRequest {
            timeseries: vec![
                series("DCGM_FI_DEV_POWER_USAGE", &with(&[("hpc_job", "42"), ("slurm_account", "acme/train")]), &[(1000, 1.0)]),
                series("DCGM_FI_DEV_GPU_TEMP", &with(&[("hpc_job", "42"), ("slurm_account", "acme/train")]), &[(1000, 60.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &with(&[("hpc_job", "43")]), &[(2000, 1.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &with(&[("pod", "p"), ("namespace", "mistral-x")]), &[(3000, 1.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &with(&[("pod", "q"), ("namespace", "other")]), &[(4000, 1.0)]),
            ],
        };
        let b = build(&req, &m, &SeriesCache::default(), &mut NoCollector);
        let got: Vec<(&str, &str, &str)> = b.label_jobs.iter().map(|j| (j.job.as_str(), j.owner.as_str(), j.project.as_str())).collect();
        assert_eq!(
            got,
            [("slurm:42", "acme/train", ""), ("k8s:mistral-x/p", "mistral-ai/k8s", "mistral-x"), ("k8s:other/q", "", "other")],
            "once per job; a Slurm job without the label has nothing to record"
        );
        let b = build(&req, &m, &SeriesCache::default(), &mut Collector("dgx-001"));
        assert!(b.label_jobs.is_empty(), "the collector's node: its own jobs");
    }

    /// The store's newest XID event holds this code.
    struct StoredXid(f64);
    impl GpuOwners for StoredXid {
        fn collector_reports(&mut self, _: &str) -> bool {
            false
        }
        fn newest_xid(&mut self, tags: &[(String, String)]) -> Option<f64> {
            assert!(tags.contains(&("source".into(), "prometheus".into())) && tags.contains(&("gpu".into(), "0".into())), "{tags:?}");
            Some(self.0)
        }
    }

    #[test]
    fn the_last_xid_gauge_becomes_one_event_per_new_code() {
        let gauge = |samples: &[(i64, f64)]| WriteRequest { timeseries: vec![series("DCGM_FI_DEV_XID_ERRORS", GPU0, samples)] };
        let m = mapper("");
        let cache = SeriesCache::default();
        let b = build(&gauge(&[(1000, 0.0), (2000, 0.0), (3000, 79.0), (4000, 79.0)]), &m, &cache, &mut NoCollector);
        assert_eq!(b.text(), "gpu_event,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a kind=\"xid\",xid=79i 3000\n");
        assert_eq!(b.counts.mapped, 4);
        // The next request: still 79 (no event), then 48, back to 0, 48 again.
        let b = build(&gauge(&[(5000, 79.0), (6000, 48.0), (7000, 0.0), (8000, 48.0)]), &m, &cache, &mut NoCollector);
        assert_eq!(
            b.text(),
            "gpu_event,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a kind=\"xid\",xid=48i 6000\n\
                              gpu_event,gpu=0,node=dgx-001,site=dc5,source=prometheus,uuid=GPU-a kind=\"xid\",xid=48i 8000\n"
        );
        // A restarted receiver: the stored newest event already says 48.
        let b = build(&gauge(&[(9000, 48.0)]), &m, &SeriesCache::default(), &mut StoredXid(48.0));
        assert_eq!(b.text(), "", "dcgm-exporter's unchanged gauge is no new XID");
        let b = build(&gauge(&[(9000, 0.5)]), &m, &SeriesCache::default(), &mut Collector("dgx-001"));
        assert_eq!((b.lines.len(), b.counts.shadowed), (0, 1), "the collector writes its own XIDs");
        let b = build(&gauge(&[(9000, 0.5)]), &m, &SeriesCache::default(), &mut NoCollector);
        assert!(b.refused[0].1.contains("not an XID code"), "{:?}", b.refused);
    }

    #[test]
    fn a_gpu_of_a_node_the_collector_reports_is_kept_apart() {
        let req = WriteRequest { timeseries: vec![series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(1000, 5.0)])] };
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut Collector("dgx-001"));
        assert_eq!(b.text(), "gpu_dcgm,gpu=0,node=dgx-001,site=dc5,uuid=GPU-a energy_mj=5i 1000\n", "no source tag");
        assert_eq!(b.counts.shadowed, 1);
    }

    #[test]
    fn stale_markers_are_skipped_and_nan_is_refused_naming_the_series() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let req =
            WriteRequest { timeseries: vec![series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[(1000, 300.0), (2000, stale)]), series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(1000, f64::NAN)])] };
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut NoCollector);
        assert_eq!((b.counts.mapped, b.counts.stale, b.counts.refused), (1, 1, 1));
        assert_eq!(b.refused.len(), 1);
        assert_eq!(b.refused[0].0, 1);
        assert!(b.refused[0].1.starts_with("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"0\""), "{}", b.refused[0].1);
        assert_eq!(b.lines.len(), 1);
    }

    #[test]
    fn a_missing_label_or_a_huge_one_refuses_the_series_only() {
        let huge = "x".repeat(1 << 20);
        let req = WriteRequest {
            timeseries: vec![
                series("DCGM_FI_DEV_POWER_USAGE", &[("gpu", "0"), ("UUID", "GPU-a")], &[(1000, 1.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", &[("gpu", "1"), ("UUID", &huge), ("Hostname", "n")], &[(1000, 1.0)]),
                series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[(1000, 2.0)]),
            ],
        };
        let b = build(&req, &mapper(""), &SeriesCache::default(), &mut NoCollector);
        assert_eq!(b.lines.len(), 1);
        assert!(b.refused[0].1.contains("label Hostname is missing"), "{}", b.refused[0].1);
        assert!(b.refused[1].1.contains("label UUID is 1048576 bytes"), "{}", b.refused[1].1);
        assert!(b.refused[1].1.len() < 400, "the message names the series without repeating 1 MB");
    }

    #[test]
    fn operator_rules_map_meters_and_water_and_unmapped_series_are_dropped_or_stored() {
        let cfg = "[[map]]\nmetric = \"pm_energy_wh_total\"\nmatch = { role = \"grid\" }\nmeasurement = \"meter\"\nfield = \"energy_kwh\"\nscale = 0.001\ntags = { meter = \"meter\" }\nset = { role = \"facility\" }\n\
                   [[map]]\nmetric = \"water_m3_total\"\nmeasurement = \"water\"\nfield = \"volume_m3\"\ntags = { meter = \"meter\" }\nset = { potable = \"true\" }\n";
        let req = WriteRequest {
            timeseries: vec![
                series("pm_energy_wh_total", &[("meter", "grid-a"), ("role", "grid")], &[(1000, 2500.0)]),
                series("pm_energy_wh_total", &[("meter", "ups-1"), ("role", "ups")], &[(1000, 7.0)]),
                series("water_m3_total", &[("meter", "makeup-1")], &[(1000, 4512.3)]),
            ],
        };
        let b = build(&req, &mapper(cfg), &SeriesCache::default(), &mut NoCollector);
        let text = b.text();
        assert_eq!(text, "meter,meter=grid-a,role=facility,site=dc5 energy_kwh=2.5 1000\nwater,meter=makeup-1,potable=true,site=dc5 volume_m3=4512.3 1000\n");
        assert_eq!(b.counts.unmapped, 1, "the UPS series matches no rule");
        let b = build(&req, &mapper(&format!("unmapped = \"store\"\n{cfg}")), &SeriesCache::default(), &mut NoCollector);
        let text = b.text();
        assert!(text.contains("pm_energy_wh_total,meter=ups-1,role=ups,site=dc5 value=7 1000\n"), "{text}");
    }

    #[test]
    fn store_lines_carry_raw_tags_and_the_plain_text_only_where_nothing_was_escaped() {
        let req = WriteRequest { timeseries: vec![series("node_power_watts", &[("host", "a b"), ("rack", "r=1")], &[(1000, 1.0)]), series("node_power_watts", &[("host", "c")], &[(1000, 2.0)])] };
        let cache = SeriesCache::default();
        let b = build(&req, &mapper("unmapped = \"store\"\n"), &cache, &mut NoCollector);
        assert!(cache.bytes() > 0, "mapped series are remembered and counted");
        let lines = b.store_lines();
        let l: Vec<_> = lines.iter().collect();
        assert_eq!(l[0].measurement(), "node_power_watts");
        assert_eq!(l[0].tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect::<Vec<_>>(), [("host", "a b"), ("rack", "r=1"), ("site", "dc5")]);
        assert_eq!(l[0].series_text(), None, "escaped text is not the store's lookup key");
        assert_eq!(l[1].tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect::<Vec<_>>(), [("host", "c"), ("site", "dc5")]);
        assert_eq!(l[1].series_text(), Some("node_power_watts,host=c,site=dc5"));
        assert_eq!(l[1].ts(), Timestamp(1_000_000_000));
    }

    #[test]
    fn an_operator_rule_replaces_the_shipped_one_for_the_same_name() {
        let m = mapper("[[map]]\nmetric = \"DCGM_FI_DEV_POWER_USAGE\"\nmeasurement = \"gpu\"\nfield = \"power_w\"\ntags = { node = \"instance\", gpu = \"gpu\" }\n");
        let buf = WriteRequest { timeseries: vec![series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[])] }.encode_to_vec();
        let r = Request::decode(&buf).expect("decodes");
        let Some(ts) = r.series_iter().next() else { panic!("one series") };
        let Target::Field { tags, .. } = m.target(&ts) else { panic!("mapped") };
        assert!(tags.contains(&("node".into(), "10.0.0.1:9400".into())), "{tags:?}");
    }
}
