//! `grenzwacht audit export`: the log as JSON lines (the record lines as stored), RFC 5424
//! syslog lines, or ArcSight CEF lines.
//!
//! CEF: `CEF:0|grenzwacht|grenzwacht|<version>|<kind>|<name>|<severity>|<extension>`. Header
//! fields escape `\` and `|`; extension values escape `\`, `=`, newline (`\n`) and carriage
//! return (`\r`). Extension keys, in this order, when the record has the field:
//! `rt` (ts, ms since the epoch), `cn1`/`cn1Label=seq`, `act` (verdict, action or decision),
//! `outcome`, `shost` (origin), `dhost` (destination), `src` (peer), `suser` (sender or
//! principal), `requestMethod`, `request` (endpoint, path or target), `cs1`/`cs1Label=room`,
//! `cs2`/`cs2Label=eventId`, `cs3`/`cs3Label=rules` (comma-separated rule ids),
//! `cs4`/`cs4Label=label`, `cs5`/`cs5Label=hash`, `deviceDirection` (0 inbound, 1 outbound).
use serde_json::Value;

use super::format::parse_rfc3339_ms;

/// CEF severity (0–10) of a record.
pub fn cef_severity(rec: &Value) -> u8 {
    let d = |k: &str| rec.pointer(&format!("/data/{k}")).and_then(Value::as_str);
    match rec.get("kind").and_then(Value::as_str).unwrap_or("") {
        "decision" => match d("verdict").unwrap_or("") {
            "allow" => 1,
            "redact" | "withhold" | "hold" => 5,
            _ => 7,
        },
        "refusal" | "review" => 5,
        "load" if d("change") == Some("failed_reload") => 8,
        "load" | "admin" => 3,
        _ => 1,
    }
}

fn esc_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

fn esc_ext(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// The CEF line of a record.
pub fn cef(rec: &Value) -> String {
    let kind = rec.get("kind").and_then(Value::as_str).unwrap_or("unknown");
    let s = |k: &str| rec.pointer(&format!("/data/{k}")).and_then(Value::as_str);
    let name = match kind {
        "decision" => format!("decision {}", s("verdict").unwrap_or("")),
        "refusal" => format!(
            "refusal {} {}",
            rec.pointer("/data/status")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            s("errcode").unwrap_or("")
        ),
        "admin" => format!("admin {}", s("action").unwrap_or("")),
        "review" => format!("review {}", s("decision").unwrap_or("")),
        "load" => format!("load {}", s("change").unwrap_or("")),
        other => other.to_owned(),
    };
    let mut ext: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            ext.push((k.to_owned(), v));
        }
    };
    let o = |v: Option<&str>| v.map(str::to_owned);
    push(
        "rt",
        rec.get("ts")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339_ms)
            .map(|t| t.to_string()),
    );
    if let Some(seq) = rec.get("seq").and_then(Value::as_u64) {
        push("cn1", Some(seq.to_string()));
        push("cn1Label", Some("seq".into()));
    }
    push("act", o(s("verdict").or(s("action")).or(s("decision"))));
    push("outcome", o(s("outcome")));
    push("shost", o(s("origin")));
    push("dhost", o(s("destination")));
    push("src", o(s("peer")));
    push("suser", o(s("sender").or(s("principal"))));
    push("requestMethod", o(s("method")));
    push("request", o(s("endpoint").or(s("path")).or(s("target"))));
    let labelled =
        |k: &str, label: &str, v: Option<String>, push: &mut dyn FnMut(&str, Option<String>)| {
            if v.is_some() {
                push(k, v);
                push(&format!("{k}Label"), Some(label.into()));
            }
        };
    labelled("cs1", "room", o(s("room_id")), &mut push);
    labelled("cs2", "eventId", o(s("event_id")), &mut push);
    let rules = rec
        .pointer("/data/rules")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.iter()
                .filter_map(|m| m.get("rule").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(",")
        });
    labelled("cs3", "rules", rules, &mut push);
    labelled("cs4", "label", o(s("label")), &mut push);
    labelled(
        "cs5",
        "hash",
        o(rec.get("hash").and_then(Value::as_str)),
        &mut push,
    );
    push(
        "deviceDirection",
        match s("direction") {
            Some("inbound") => Some("0".into()),
            Some("outbound") => Some("1".into()),
            _ => None,
        },
    );
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", esc_ext(&v)))
        .collect();
    format!(
        "CEF:0|grenzwacht|grenzwacht|{}|{}|{}|{}|{}",
        esc_header(env!("CARGO_PKG_VERSION")),
        esc_header(kind),
        esc_header(&name),
        cef_severity(rec),
        ext.join(" ")
    )
}
