//! Every example configuration under deploy/ parses, and a mistyped key is named.

use std::path::{Path, PathBuf};

use kilowatch_aggregator::config::Config;
use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::facility::regmap::RegisterMap;
use kilowatch_collector::facility::snmp::OidMap;

fn tomls(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read deploy/").flatten() {
        let p = e.path();
        if p.is_dir() {
            tomls(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_deploy_example_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut files = Vec::new();
    tomls(&root, &mut files);
    assert!(!files.is_empty());
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let folder = f.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()).unwrap_or_default();
        if folder == "modbus" {
            RegisterMap::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        } else if folder == "snmp" {
            OidMap::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        } else if name.starts_with("kilowatch") {
            Config::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        } else if name.starts_with("collector") {
            CollectorConfig::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        } else if name.starts_with("rules") {
            let text = std::fs::read_to_string(&f).expect("read");
            kilowatch_alerts::RulePack::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        } else if name.starts_with("routing") {
            kilowatch_alerts::config::Routing::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        } else {
            panic!("{}: no parser is known for this example; name it kilowatch*.toml, collector*.toml, rules*.toml or routing*.toml, or teach this test", f.display());
        }
    }
}

#[test]
fn a_mistyped_key_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("kilowatch.toml");
    std::fs::write(&p, "[server]\nlisten = \"127.0.0.1:1\"\ndata_dri = \"/x\"\n").expect("write");
    let e = Config::load(&p).expect_err("unknown key").to_string();
    assert!(e.contains("data_dri"), "{e}");
    std::fs::write(&p, "[site]\ntimezone = \"Europe/Pariss\"\n").expect("write");
    let e = Config::load(&p).expect_err("bad zone").to_string();
    assert!(e.contains("site.timezone"), "{e}");
    for key in ["max_future_skew_s", "max_series", "max_name_bytes"] {
        std::fs::write(&p, format!("[store]\n{key} = 0\n")).expect("write");
        let e = Config::load(&p).expect_err("zero limit").to_string();
        assert!(e.contains(&format!("store.{key}")), "{e}");
    }
    // The admin scope is a scope of [[auth.tokens]].
    std::fs::write(&p, format!("[[auth.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscope = \"admin\"\n", "ab".repeat(32))).expect("write");
    Config::load(&p).expect("admin scope");
    // Facility sections and register maps name a mistyped key too.
    let p = dir.path().join("collector.toml");
    std::fs::write(&p, "[aggregator]\nurl = \"http://x\"\n[facility]\n[[facility.modbus]]\nname = \"m\"\nhost = \"h\"\ntimeout = 5\n").expect("write");
    let e = CollectorConfig::load(&p).expect_err("unknown key").to_string();
    assert!(e.contains("timeout"), "{e}");
    let p = dir.path().join("map.toml");
    std::fs::write(&p, "[[register]]\naddress = 1\ntype = \"f32\"\nmeasurement = \"meter\"\nfield = \"power_w\"\nword_ordr = \"little\"\n").expect("write");
    let e = RegisterMap::load(&p).expect_err("unknown key").to_string();
    assert!(e.contains("word_ordr"), "{e}");
}

/// The InfluxQL Grafana dashboard is valid JSON and queries only measurements and fields that
/// exist (the PromQL one's panels are run through the API by `promql_grafana`).
#[test]
fn grafana_dashboard_names_real_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana");
    for e in std::fs::read_dir(&root).expect("deploy/grafana").flatten() {
        if !e.file_name().to_string_lossy().ends_with("-influxql.json") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("read");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        for p in v["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().expect("targets") {
                let q = t["query"].as_str().expect("query");
                let mut quoted = q.split('"').skip(1).step_by(2);
                let names: Vec<&str> = quoted.by_ref().collect();
                let measurement_ok = names.iter().any(|n| kilowatch_model::METRICS.iter().any(|m| m.measurement == *n));
                assert!(measurement_ok, "{}: no known measurement in {q}", p["title"]);
                for n in names {
                    let known = kilowatch_model::METRICS.iter().any(|m| m.measurement == n || m.field == n);
                    let tag_or_alias = ["role", "meter", "node", "gpu", "f", "i", "p", "m", "outside", "supply"].contains(&n);
                    assert!(known || tag_or_alias, "{}: unknown name {n:?} in {q}", p["title"]);
                }
            }
        }
    }
}
