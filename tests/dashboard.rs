//! `deploy/grafana-dashboard.json`: valid JSON, well-formed panels, and every metric it queries
//! is one the guard exports.
use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// Metrics the dashboard shows that other parts of the guard add (hold queues and review,
/// audit log, sender notices). A name here that is also defined under `src/` is fine.
const FROM_OTHER_MODULES: &[&str] = &[
    "grenzwacht_held_events",
    "grenzwacht_hold_queue_depth",
    "grenzwacht_review_latency_seconds",
    "grenzwacht_hold_deliveries_total",
    "grenzwacht_audit_healthy",
    "grenzwacht_audit_records_total",
    "grenzwacht_audit_failures_total",
    "grenzwacht_notices_total",
];

/// Every `"grenzwacht_…"` string literal in the crate's sources.
fn defined_metrics() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("\"grenzwacht_") {
                    let rest = &text[i + 1..];
                    let end = rest.find('"').unwrap();
                    out.insert(rest[..end].to_string());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

/// The metric names in a PromQL expression (histogram series map to their metric).
fn queried(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("grenzwacht_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| b.ends_with("_seconds")))
            .unwrap_or(name);
        out.push(base.to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_is_valid_and_queries_only_exported_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana-dashboard.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("the dashboard is valid JSON");
    assert!(d["title"].is_string() && d["uid"].is_string());
    let defined = defined_metrics();
    assert!(
        defined.contains("grenzwacht_decisions_total"),
        "{defined:?}"
    );
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate panel id: {p}"
        );
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{p}"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel without a query: {}", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let names = queried(expr);
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                assert!(
                    defined.contains(&n) || FROM_OTHER_MODULES.contains(&n.as_str()),
                    "panel {:?} queries {n}, which the guard does not export",
                    p["title"]
                );
                used.insert(n);
            }
        }
    }
    // What the dashboard is for: decisions by verdict and rule, refusals, review, audit, latency.
    for must in [
        "grenzwacht_decisions_total",
        "grenzwacht_dlp_decisions_total",
        "grenzwacht_refusals_total",
        "grenzwacht_held_events",
        "grenzwacht_hold_queue_depth",
        "grenzwacht_review_latency_seconds",
        "grenzwacht_audit_healthy",
        "grenzwacht_upstream_requests_total",
        "grenzwacht_request_duration_seconds",
    ] {
        assert!(used.contains(must), "the dashboard lacks {must}");
    }
    assert!(queried("rate(grenzwacht_x_seconds_bucket[5m])") == ["grenzwacht_x_seconds"]);
}
