//! The review UI's pages as HTML strings. Every value from a request, a held event or the
//! audit log is escaped here.
use std::fmt::Write as _;

use serde_json::Value;

use super::html::{banner, content_preview, escape, timestamp, STYLE};
use super::session::Active;
use crate::review::{AuditFilter, Decision, HeldDetail, HeldSummary, HoldState};

/// The page frame: head with the inline stylesheet, the header with navigation and logout.
pub fn layout(title: &str, active: Option<&Active>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(a) = active {
        let p = &a.principal;
        let _ = write!(nav, "<a href=\"/ui/held\">Held events</a>");
        if p.role.may_audit() {
            let _ = write!(nav, "<a href=\"/ui/audit\">Audit log</a>");
        }
        let _ = write!(
            nav,
            "<form method=\"post\" action=\"/ui/logout\"><span id=\"whoami\">{} ({})</span> \
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" id=\"logout\">Log out</button></form>",
            escape(&p.name),
            p.role.as_str(),
            escape(&a.csrf)
        );
    }
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} – grenzwacht review</title><style>{STYLE}</style></head><body>\
         <header><strong>grenzwacht review</strong>{nav}</header><main>{body}</main></body></html>",
        escape(title)
    )
}

/// A page with a heading and one message.
pub fn message(title: &str, text: &str) -> String {
    format!(
        "<h1>{}</h1><p class=\"msg err\" id=\"message\">{}</p><p><a href=\"/ui/held\">Back to the held events</a></p>",
        escape(title),
        escape(text)
    )
}

/// The login form (bearer token; or the TLS client principal when one is present).
pub fn login(tls: Option<&crate::review::Principal>, error: Option<&str>) -> String {
    let mut out = String::from("<h1>Log in</h1>");
    if let Some(e) = error {
        let _ = write!(out, "<p class=\"msg err\" id=\"message\">{}</p>", escape(e));
    }
    if let Some(p) = tls {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/ui/login\"><input type=\"hidden\" name=\"method\" value=\"certificate\">\
             <button type=\"submit\" id=\"login-certificate\">Continue as {} ({}, client certificate)</button></form><p>or</p>",
            escape(&p.name),
            p.role.as_str()
        );
    }
    out.push_str(
        "<form method=\"post\" action=\"/ui/login\">\
         <label>Access token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required></label>\
         <button type=\"submit\" id=\"login\">Log in</button></form>",
    );
    out
}

/// Four-eyes state of a held event, e.g. `1 of 2 approvals — awaiting second reviewer`.
pub fn four_eyes_state(s: &HeldSummary) -> String {
    if !s.four_eyes {
        return "one reviewer decides".to_string();
    }
    let mut reviewers: Vec<&str> = s
        .approvals
        .iter()
        .filter(|a| a.decision == Decision::Release)
        .map(|a| a.reviewer.as_str())
        .collect();
    reviewers.sort_unstable();
    reviewers.dedup();
    let n = reviewers.len().min(2);
    if s.state == HoldState::Pending && n == 1 {
        "1 of 2 approvals — awaiting second reviewer".to_string()
    } else {
        format!("{n} of 2 approvals")
    }
}

fn state_str(state: HoldState) -> &'static str {
    match state {
        HoldState::Pending => "pending",
        HoldState::Released => "released",
        HoldState::Rejected => "rejected",
    }
}

fn list_of(items: &[String]) -> String {
    if items.is_empty() {
        return "–".to_string();
    }
    items
        .iter()
        .map(|i| format!("<code>{}</code>", escape(i)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The held events list.
pub fn held_list(list: &[HeldSummary], all: bool) -> String {
    let mut out = String::from("<h1>Held events</h1>");
    let _ = write!(
        out,
        "<p>{} event(s). {}</p>",
        list.len(),
        if all {
            "<a href=\"/ui/held\">Show pending only</a>"
        } else {
            "<a href=\"/ui/held?all=1\">Show decided events too</a>"
        }
    );
    for s in list {
        let _ = write!(
            out,
            "<div class=\"card\" id=\"hold-{id}\">{banner}<div class=\"body\">\
             <p><a href=\"/ui/held/{id}\" class=\"open\">Held event #{id}</a> — {state} — {fe}</p>\
             <table><tr><th>Room</th><td>{room}</td></tr><tr><th>Sender</th><td>{sender}</td></tr>\
             <tr><th>Direction</th><td>{dir}</td></tr><tr><th>Destinations</th><td>{dest}</td></tr>\
             <tr><th>Rules</th><td>{rules}</td></tr><tr><th>Held at</th><td>{at}</td></tr></table></div></div>",
            id = s.id,
            banner = banner(s.marking.as_deref()),
            state = state_str(s.state),
            fe = escape(&four_eyes_state(s)),
            room = escape(&s.room_id),
            sender = escape(&s.sender),
            dir = escape(&s.direction),
            dest = list_of(&s.destinations),
            rules = list_of(&s.rules),
            at = timestamp(s.held_at_ms),
        );
    }
    out
}

fn flash(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "released" => Some("Released. The event is delivered."),
        "rejected" => Some("Rejected. The event is delivered redacted."),
        "awaiting" => Some("Your approval is recorded — awaiting second reviewer."),
        "pending" => Some("Your decision is recorded; the event is still pending."),
        _ => None,
    }
}

/// One held event: banner, facts, approvals, content preview with matches, decision form.
pub fn event(d: &HeldDetail, active: &Active, done: Option<&str>) -> String {
    let s = &d.summary;
    let mut out = banner(s.marking.as_deref());
    let _ = write!(out, "<h1>Held event #{}</h1>", s.id);
    if let Some(text) = flash(done) {
        let _ = write!(out, "<p class=\"msg\" id=\"message\">{}</p>", escape(text));
    }
    let _ = write!(
        out,
        "<table id=\"facts\"><tr><th>State</th><td id=\"state\">{state}</td></tr>\
         <tr><th>Four-eyes</th><td id=\"four-eyes\">{fe}</td></tr>\
         <tr><th>Event</th><td><code>{event}</code></td></tr><tr><th>Room</th><td><code>{room}</code></td></tr>\
         <tr><th>Sender</th><td>{sender}</td></tr><tr><th>Origin</th><td>{origin}</td></tr>\
         <tr><th>Direction</th><td>{dir}</td></tr><tr><th>Destinations</th><td>{dest}</td></tr>\
         <tr><th>Rules</th><td>{rules}</td></tr><tr><th>Marking</th><td>{marking}</td></tr>\
         <tr><th>Held at</th><td>{at}</td></tr></table>",
        state = state_str(s.state),
        fe = escape(&four_eyes_state(s)),
        event = escape(&s.event_id),
        room = escape(&s.room_id),
        sender = escape(&s.sender),
        origin = escape(&s.origin),
        dir = escape(&s.direction),
        dest = list_of(&s.destinations),
        rules = list_of(&s.rules),
        marking = escape(s.marking.as_deref().unwrap_or("none")),
        at = timestamp(s.held_at_ms),
    );

    out.push_str("<h2>Approvals</h2>");
    if s.approvals.is_empty() {
        out.push_str("<p id=\"approvals\">None yet.</p>");
    } else {
        out.push_str(
            "<table id=\"approvals\"><tr><th>Reviewer</th><th>Decision</th><th>Reason</th><th>At</th></tr>",
        );
        for a in &s.approvals {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&a.reviewer),
                match a.decision {
                    Decision::Release => "release",
                    Decision::Reject => "reject",
                },
                escape(&a.reason),
                timestamp(a.at_ms)
            );
        }
        out.push_str("</table>");
    }

    out.push_str("<h2>Content</h2>");
    let found = match &d.content {
        Some(content) => {
            let (html, found) = content_preview(content, &d.matches);
            let _ = write!(out, "<pre id=\"content\">{html}</pre>");
            found
        }
        None => {
            out.push_str("<p id=\"content\">The content preview is off by policy.</p>");
            0
        }
    };
    if !d.matches.is_empty() {
        out.push_str("<table id=\"matches\"><tr><th>Rule</th><th>Field</th><th>Bytes</th></tr>");
        for m in &d.matches {
            let _ = write!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}–{}</td></tr>",
                escape(&m.rule),
                escape(&m.field),
                m.start,
                m.end
            );
        }
        out.push_str("</table>");
        if d.content.is_some() && found < d.matches.len() {
            let _ = write!(
                out,
                "<p>{} match(es) lie in fields the preview does not show.</p>",
                d.matches.len() - found
            );
        }
    }

    if s.state == HoldState::Pending {
        if active.principal.role.may_decide() {
            let _ = write!(
                out,
                "<h2>Decide</h2><form method=\"post\" action=\"/ui/held/{}/decide\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <label>Reason (required, recorded in the audit log)<br>\
                 <textarea name=\"reason\" id=\"reason\" rows=\"3\" maxlength=\"2000\" required></textarea></label>\
                 <button type=\"submit\" name=\"decision\" value=\"release\" id=\"release\">Release</button> \
                 <button type=\"submit\" name=\"decision\" value=\"reject\" id=\"reject\">Reject (deliver redacted)</button>\
                 </form>",
                s.id,
                escape(&active.csrf)
            );
        } else {
            let _ = write!(
                out,
                "<p>Your role ({}) may not decide held events.</p>",
                active.principal.role.as_str()
            );
        }
    }
    out
}

fn cell(key: &str, v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        Value::Number(n) if key.ends_with("_ms") => n
            .as_i64()
            .map(timestamp)
            .unwrap_or_else(|| escape(&n.to_string())),
        other => escape(&other.to_string()),
    }
}

/// A record's cells by column name: top-level fields, and the fields of an object-valued
/// field (such as `data`) as `field.name`.
fn flatten(record: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    if let Value::Object(map) = record {
        for (k, v) in map {
            match v {
                Value::Object(inner) if !inner.is_empty() => {
                    for (ik, iv) in inner {
                        out.push((format!("{k}.{ik}"), iv));
                    }
                }
                _ => out.push((k.clone(), v)),
            }
        }
    }
    out
}

/// Columns first and last in the audit table; the others by name.
const FIRST_COLUMNS: [&str; 6] = ["seq", "ts", "time", "at_ms", "kind", "action"];
const LAST_COLUMNS: [&str; 2] = ["prev", "hash"];

fn column_rank(name: &str) -> usize {
    if let Some(i) = FIRST_COLUMNS.iter().position(|c| *c == name) {
        i
    } else if let Some(i) = LAST_COLUMNS.iter().position(|c| *c == name) {
        FIRST_COLUMNS.len() + 2 + i
    } else {
        FIRST_COLUMNS.len() + 1
    }
}

/// The audit search form and the matching records (columns: the records' keys, the well-known ones first,
/// the others by name).
pub fn audit(filter: &AuditFilter, records: &[Value]) -> String {
    let mut out =
        String::from("<h1>Audit log</h1><form method=\"get\" action=\"/ui/audit\" id=\"search\">");
    let fields: [(&str, &str, &Option<String>); 8] = [
        ("from", "From (RFC 3339)", &filter.from),
        ("to", "To (RFC 3339)", &filter.to),
        ("room", "Room", &filter.room),
        ("sender", "Sender", &filter.sender),
        ("server", "Server", &filter.server),
        ("verdict", "Verdict", &filter.verdict),
        ("rule", "Rule", &filter.rule),
        ("label", "Label", &filter.label),
    ];
    for (name, text, value) in fields {
        let _ = write!(
            out,
            "<label>{text} <input name=\"{name}\" id=\"f-{name}\" value=\"{}\"></label>",
            escape(value.as_deref().unwrap_or(""))
        );
    }
    let _ = write!(
        out,
        "<label>Limit <input name=\"limit\" id=\"f-limit\" inputmode=\"numeric\" value=\"{}\"></label>\
         <button type=\"submit\" id=\"search-button\">Search</button></form>",
        if filter.limit == 0 {
            String::new()
        } else {
            filter.limit.to_string()
        }
    );
    let _ = write!(out, "<p id=\"count\">{} record(s).</p>", records.len());
    if records.is_empty() {
        return out;
    }
    let rows: Vec<Vec<(String, &Value)>> = records.iter().map(flatten).collect();
    let mut columns: Vec<&str> = Vec::new();
    for row in &rows {
        for (k, _) in row {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    // Equal ranks by name: the same columns in the same order whatever the records' key order.
    columns.sort_by(|a, b| (column_rank(a), *a).cmp(&(column_rank(b), *b)));
    out.push_str("<table id=\"records\"><tr>");
    for c in &columns {
        let _ = write!(out, "<th>{}</th>", escape(c));
    }
    out.push_str("</tr>");
    for (record, row) in records.iter().zip(&rows) {
        out.push_str("<tr>");
        if row.is_empty() {
            let _ = write!(
                out,
                "<td colspan=\"{}\">{}</td>",
                columns.len().max(1),
                cell("", record)
            );
        } else {
            for c in &columns {
                let value = row.iter().find(|(k, _)| k == c).map(|(_, v)| cell(c, v));
                let _ = write!(out, "<td>{}</td>", value.unwrap_or_default());
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Approval;

    fn summary(four_eyes: bool, state: HoldState, releases: &[&str]) -> HeldSummary {
        HeldSummary {
            id: 7,
            room_id: "!r:a".into(),
            event_id: "$e".into(),
            sender: "@s:a".into(),
            origin: "a".into(),
            direction: "outbound".into(),
            destinations: vec![],
            rules: vec![],
            marking: None,
            held_at_ms: 0,
            state,
            approvals: releases
                .iter()
                .map(|r| Approval {
                    reviewer: r.to_string(),
                    decision: Decision::Release,
                    reason: "ok".into(),
                    at_ms: 0,
                })
                .collect(),
            four_eyes,
        }
    }

    #[test]
    fn four_eyes_state_counts_distinct_releasing_reviewers() {
        assert_eq!(
            four_eyes_state(&summary(true, HoldState::Pending, &[])),
            "0 of 2 approvals"
        );
        assert_eq!(
            four_eyes_state(&summary(true, HoldState::Pending, &["a", "a"])),
            "1 of 2 approvals — awaiting second reviewer"
        );
        assert_eq!(
            four_eyes_state(&summary(true, HoldState::Released, &["a", "b"])),
            "2 of 2 approvals"
        );
        assert_eq!(
            four_eyes_state(&summary(false, HoldState::Pending, &[])),
            "one reviewer decides"
        );
    }

    #[test]
    fn audit_table_flattens_orders_and_escapes() {
        let records = vec![
            serde_json::json!({"seq": 1, "ts": "2026-12-06T13:20:00Z", "kind": "decision",
                "hash": "h1", "data": {"verdict": "hold", "sender": "<b>@x</b>"}}),
            serde_json::json!({"seq": 2, "kind": "admin", "at_ms": 0, "note": "n"}),
        ];
        let html = audit(&AuditFilter::default(), &records);
        let header: Vec<&str> = html
            .split("<th>")
            .skip(1)
            .map(|h| h.split("</th>").next().unwrap())
            .collect();
        assert_eq!(
            header,
            [
                "seq",
                "ts",
                "at_ms",
                "kind",
                "data.sender",
                "data.verdict",
                "note",
                "hash"
            ]
        );
        assert!(html.contains("<td>&lt;b&gt;@x&lt;/b&gt;</td>"));
        assert!(!html.contains("<b>@x"));
        assert!(html.contains("<td>1970-01-01T00:00:00.000Z</td>"));
        assert!(html.contains("2 record(s)."));
    }

    #[test]
    fn the_audit_form_echoes_the_filter_escaped() {
        let filter = AuditFilter {
            room: Some("\"><script>".into()),
            limit: 5,
            ..AuditFilter::default()
        };
        let html = audit(&filter, &[]);
        assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;\""));
        assert!(html.contains("name=\"limit\" id=\"f-limit\" inputmode=\"numeric\" value=\"5\""));
        assert!(!html.contains("<table"));
    }
}
