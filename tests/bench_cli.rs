//! The real binary: `grenzwacht bench --json` with tiny numbers. The report has the direct
//! baseline and every guard configuration of the same run; the verifying configurations really
//! verify (PDU checks counted by the guard, and forged signatures are caught where the direct
//! run and the pass-through guard accept them).
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_grenzwacht");
const REQUESTS: u64 = 20;
const PDUS: u64 = 10;

fn bench(extra: &[&str]) -> Value {
    let requests = REQUESTS.to_string();
    let pdus = PDUS.to_string();
    let out = Command::new(BIN)
        .args([
            "bench",
            "--json",
            "--requests",
            &requests,
            "--pdus",
            &pdus,
            "--concurrency",
            "2",
        ])
        .args(extra)
        .output()
        .expect("run grenzwacht bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn config<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["configurations"]
        .as_array()
        .expect("configurations")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no configuration {name}: {r}"))
}

fn count(c: &Value, map: &str, key: &str) -> u64 {
    c["guard"][map][key].as_u64().unwrap_or(0)
}

#[test]
fn bench_reports_every_configuration_and_the_verifying_ones_verify() {
    let r = bench(&["--labels"]);
    let names: Vec<&str> = r["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["pass_through", "default_unaudited", "default", "labels"]
    );
    // The deployment configurations record their decisions; the baseline does not.
    for (name, audit) in [
        ("pass_through", false),
        ("default_unaudited", false),
        ("default", true),
        ("labels", true),
    ] {
        assert_eq!(config(&r, name)["audit"], audit, "{name}");
    }
    assert!(r["direct"]["rps"].as_f64().unwrap() > 0.0, "{r}");
    for name in &names {
        let c = config(&r, name);
        let s = &c["stats"];
        assert_eq!(s["requests"], REQUESTS, "{name}: {c}");
        assert_eq!(s["errors"], 0, "{name}: {c}");
        assert!(s["rps"].as_f64().unwrap() > 0.0, "{name}: {c}");
        assert!(c["ratio"].as_f64().unwrap() > 0.0, "{name}: {c}");
        for k in ["p50_ms", "p99_ms"] {
            assert!(s[k].as_f64().unwrap() > 0.0, "{name} {k}: {c}");
        }
        assert!(c["p99_added_ms"].is_number(), "{name}: {c}");
        assert!(s["cpu_ms_per_txn"].as_f64().unwrap() > 0.0, "{name}: {c}");
        assert!(c["cpu_added_ms_per_txn"].is_number(), "{name}: {c}");
        assert_eq!(
            c["sink"]["transactions"], REQUESTS,
            "{name}: every transaction reached the sink"
        );
    }
    // Pass-through verifies nothing; the default and labeled configurations verify every
    // PDU of the measured transactions, and only the labeled one judges labels.
    let pt = config(&r, "pass_through");
    assert_eq!(pt["verify_pdus"], false);
    assert_eq!(pt["guard"]["pdu_checks"], serde_json::json!({}), "{pt}");
    for name in ["default_unaudited", "default", "labels"] {
        let c = config(&r, name);
        assert_eq!(c["verify_signatures"], true);
        assert_eq!(
            count(c, "pdu_checks", "verified"),
            REQUESTS * PDUS,
            "{name}: {c}"
        );
        assert_eq!(
            c["guard"]["pdu_checks"].as_object().unwrap().len(),
            1,
            "{name}: only verified PDUs: {c}"
        );
    }
    assert_eq!(count(config(&r, "default"), "label_decisions", "allow"), 0);
    assert!(
        count(config(&r, "labels"), "label_decisions", "allow") >= REQUESTS * PDUS,
        "{}",
        config(&r, "labels")
    );
}

/// PDUs signed with a forged key: the direct run and the pass-through guard deliver their text;
/// the default guard finds every signature bad and the text does not reach the sink (the PDUs
/// cross redacted, the transactions still arrive).
#[test]
fn forged_pdu_signatures_are_caught_only_by_the_verifying_guard() {
    let r = bench(&["--tamper", "pdu"]);
    assert_eq!(r["tamper"], "pdu");
    assert_eq!(r["direct_sink"]["text_pdus"], REQUESTS * PDUS, "{r}");
    let pt = config(&r, "pass_through");
    assert_eq!(pt["sink"]["text_pdus"], REQUESTS * PDUS, "{pt}");
    let d = config(&r, "default");
    assert_eq!(
        count(d, "pdu_checks", "bad_signature"),
        REQUESTS * PDUS,
        "{d}"
    );
    assert_eq!(count(d, "pdu_checks", "verified"), 0, "{d}");
    assert_eq!(d["sink"]["transactions"], REQUESTS, "{d}");
    assert_eq!(d["sink"]["text_pdus"], 0, "no forged content crossed: {d}");
}

/// Requests signed with a forged key: refused (401) by the default guard, nothing reaches the
/// sink; the pass-through guard (verification off) forwards them.
#[test]
fn forged_request_signatures_are_refused_by_the_verifying_guard() {
    let r = bench(&["--tamper", "xmatrix"]);
    let pt = config(&r, "pass_through");
    assert_eq!(pt["stats"]["errors"], 0, "{pt}");
    assert_eq!(pt["sink"]["transactions"], REQUESTS, "{pt}");
    let d = config(&r, "default");
    assert_eq!(d["stats"]["errors"], REQUESTS, "{d}");
    assert_eq!(count(d, "refusals", "auth"), REQUESTS, "{d}");
    assert_eq!(d["sink"]["transactions"], 0, "{d}");
}
