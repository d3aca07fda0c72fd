//! HTML building blocks of the review UI: escaping, the classification banner, timestamps,
//! and the pretty-printed content preview with rule matches highlighted.
//!
//! Everything that reaches a page from a held event, the audit log or a request goes through
//! [`escape`]; the preview renderer escapes every string segment itself.
use std::fmt::Write as _;

use serde_json::Value;

use crate::review::Match;

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Display level of a classification marking, used for the banner colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// No label on the event.
    Unlabelled,
    /// OFFEN / UNCLASSIFIED.
    Open,
    /// VS-NUR FÜR DEN DIENSTGEBRAUCH / VS-NfD / RESTRICTED.
    Restricted,
    /// VS-VERTRAULICH / CONFIDENTIAL.
    Confidential,
    /// GEHEIM / SECRET.
    Secret,
    /// STRENG GEHEIM / TOP SECRET.
    TopSecret,
    /// A marking none of the above words names.
    Other,
}

impl Level {
    /// The level a display marking names (by its classification words, German or English).
    pub fn of(marking: Option<&str>) -> Level {
        let Some(m) = marking else {
            return Level::Unlabelled;
        };
        let m = m.to_uppercase();
        if m.contains("STRENG GEHEIM") || m.contains("TOP SECRET") {
            Level::TopSecret
        } else if m.contains("GEHEIM") || m.contains("SECRET") {
            Level::Secret
        } else if m.contains("VERTRAULICH") || m.contains("CONFIDENTIAL") {
            Level::Confidential
        } else if m.contains("DIENSTGEBRAUCH") || m.contains("VS-NFD") || m.contains("RESTRICTED") {
            Level::Restricted
        } else if m.contains("OFFEN") || m.contains("UNCLASSIFIED") {
            Level::Open
        } else {
            Level::Other
        }
    }

    /// CSS class of the banner.
    pub fn class(self) -> &'static str {
        match self {
            Level::Unlabelled => "lv-none",
            Level::Open => "lv-open",
            Level::Restricted => "lv-restricted",
            Level::Confidential => "lv-confidential",
            Level::Secret => "lv-secret",
            Level::TopSecret => "lv-topsecret",
            Level::Other => "lv-other",
        }
    }
}

/// The classification banner of one event.
pub fn banner(marking: Option<&str>) -> String {
    let level = Level::of(marking);
    let text = marking.unwrap_or("NO LABEL");
    format!(
        "<div class=\"banner {}\">{}</div>",
        level.class(),
        escape(text)
    )
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC (`2026-12-06T13:20:00.123Z`).
pub fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Byte ranges of `text` to highlight: the spans clamped to the text, widened to whole
/// UTF-8 characters, sorted and merged. Empty spans vanish.
pub fn normalize_spans(text: &str, spans: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let len = text.len();
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut sorted: Vec<(usize, usize)> = spans
        .iter()
        .filter_map(|&(s, e)| {
            let mut s = s.min(len);
            let mut e = e.min(len);
            if s >= e {
                return None;
            }
            while !text.is_char_boundary(s) {
                s -= 1;
            }
            while !text.is_char_boundary(e) {
                e += 1;
            }
            Some((s, e))
        })
        .collect();
    sorted.sort_unstable();
    for (s, e) in sorted {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// A string's JSON form without the quotes (escapes as `serde_json` writes them).
fn json_inner(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""));
    quoted[1..quoted.len() - 1].to_string()
}

/// A JSON string literal, HTML-escaped, with the given byte spans of its text in `<mark>`.
pub fn highlighted_string(text: &str, spans: &[(usize, usize)]) -> String {
    let mut out = String::from("&quot;");
    let mut at = 0;
    for (s, e) in normalize_spans(text, spans) {
        out.push_str(&escape(&json_inner(&text[at..s])));
        out.push_str("<mark>");
        out.push_str(&escape(&json_inner(&text[s..e])));
        out.push_str("</mark>");
        at = e;
    }
    out.push_str(&escape(&json_inner(&text[at..])));
    out.push_str("&quot;");
    out
}

/// The DLP engine's named fields and the content key each reads.
const NAMED_FIELDS: [(&str, &str); 5] = [
    ("new_content.body", "m.new_content.body"),
    ("new_content.formatted_body", "m.new_content.formatted_body"),
    ("room.name", "name"),
    ("room.topic", "topic"),
    ("member.displayname", "displayname"),
];

/// A field path in one spelling: array indices as `.N` (`a[0].b` → `a.0.b`), without a
/// leading `content.`, named DLP fields as their content key.
fn canonical_path(field: &str) -> String {
    let field = field.strip_prefix("content.").unwrap_or(field);
    if let Some((_, key)) = NAMED_FIELDS.iter().find(|(name, _)| *name == field) {
        return (*key).to_string();
    }
    field.replace('[', ".").replace(']', "")
}

/// Whether a match's field names this path of the content: `body`, `content.body`,
/// `m.relates_to.list[0]` / `m.relates_to.list.0`, or a named DLP field (`new_content.body`).
/// A match in an object key (`… (key)`) names no string value.
fn field_is(field: &str, path: &str) -> bool {
    !field.ends_with(" (key)") && canonical_path(field) == path
}

/// Pretty-printed JSON (two-space indent) of an event's content, HTML-escaped, with each
/// match's byte span highlighted in the string value its field names. Returns the HTML and
/// how many matches found their field.
pub fn content_preview(content: &Value, matches: &[Match]) -> (String, usize) {
    let mut out = String::new();
    let mut found = 0;
    render_value(content, "", 0, matches, &mut out, &mut found);
    (out, found)
}

fn render_value(
    value: &Value,
    path: &str,
    depth: usize,
    matches: &[Match],
    out: &mut String,
    found: &mut usize,
) {
    let pad = |n: usize| "  ".repeat(n);
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            let n = map.len();
            for (i, (k, v)) in map.iter().enumerate() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let _ = write!(
                    out,
                    "{}&quot;{}&quot;: ",
                    pad(depth + 1),
                    escape(&json_inner(k))
                );
                render_value(v, &child, depth + 1, matches, out, found);
                out.push_str(if i + 1 < n { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            let n = items.len();
            for (i, v) in items.iter().enumerate() {
                let child = if path.is_empty() {
                    i.to_string()
                } else {
                    format!("{path}.{i}")
                };
                out.push_str(&pad(depth + 1));
                render_value(v, &child, depth + 1, matches, out, found);
                out.push_str(if i + 1 < n { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push(']');
        }
        Value::String(text) => {
            let spans: Vec<(usize, usize)> = matches
                .iter()
                .filter(|m| field_is(&m.field, path))
                .map(|m| (m.start, m.end))
                .collect();
            *found += spans.len();
            out.push_str(&highlighted_string(text, &spans));
        }
        other => out.push_str(&escape(&other.to_string())),
    }
}

/// The shared stylesheet (inline; the CSP allows inline styles only).
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#f6f6f4}\
header{background:#1d2b36;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center}\
header a{color:#fff}header form{margin:0 0 0 auto}\
main{padding:1em;max-width:70em}\
.banner{font-weight:bold;text-align:center;padding:.3em;letter-spacing:.05em}\
.lv-none{background:#ddd;color:#333}.lv-open{background:#2e7d32;color:#fff}\
.lv-restricted{background:#f9a825;color:#000}.lv-confidential{background:#1565c0;color:#fff}\
.lv-secret{background:#c62828;color:#fff}.lv-topsecret{background:#6a1b9a;color:#fff}\
.lv-other{background:#555;color:#fff}\
.card{background:#fff;border:1px solid #ccc;margin:0 0 1em 0}\
.card .body{padding:.5em 1em}\
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
pre{background:#fff;border:1px solid #ccc;padding:.5em;white-space:pre-wrap;word-break:break-all}\
mark{background:#ffeb3b;outline:1px solid #c00}\
.msg{padding:.5em 1em;border:1px solid #999;background:#fff8e1;margin-bottom:1em}\
.err{border-color:#c62828;background:#ffebee}\
label{display:block;margin:.4em 0}textarea{width:100%;max-width:40em}\
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'q'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"
        );
        assert_eq!(escape("Grüße ☃"), "Grüße ☃");
        for c in ['<', '>', '"', '\'', '&'] {
            let out = escape(&format!("a{c}b"));
            // The only raw '&' left starts an entity; no other raw special character.
            assert!(!out.contains(['<', '>', '"', '\'']), "{out}");
            assert!(out.starts_with("a&") && out.ends_with(";b"), "{out}");
        }
    }

    #[test]
    fn levels_follow_marking_words() {
        assert_eq!(Level::of(None), Level::Unlabelled);
        assert_eq!(Level::of(Some("STRENG GEHEIM")), Level::TopSecret);
        assert_eq!(Level::of(Some("COSMIC TOP SECRET")), Level::TopSecret);
        assert_eq!(Level::of(Some("GEHEIM")), Level::Secret);
        assert_eq!(Level::of(Some("NATO SECRET")), Level::Secret);
        assert_eq!(Level::of(Some("VS-VERTRAULICH")), Level::Confidential);
        assert_eq!(
            Level::of(Some("VS-NUR FÜR DEN DIENSTGEBRAUCH")),
            Level::Restricted
        );
        assert_eq!(Level::of(Some("UNCLASSIFIED (OFFEN)")), Level::Open);
        assert_eq!(Level::of(Some("PINK")), Level::Other);
        assert!(banner(Some("<b>GEHEIM</b>")).contains("&lt;b&gt;GEHEIM&lt;/b&gt;"));
        assert!(banner(Some("GEHEIM")).contains("lv-secret"));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(timestamp(1_796_563_200_000), "2026-12-06T13:20:00.000Z");
        assert_eq!(timestamp(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn spans_are_clamped_widened_and_merged() {
        let t = "aäb€c"; // a(0) ä(1..3) b(3) €(4..7) c(7)
        assert_eq!(normalize_spans(t, &[(2, 5)]), vec![(1, 7)]);
        assert_eq!(normalize_spans(t, &[(7, 100)]), vec![(7, 8)]);
        assert_eq!(normalize_spans(t, &[(5, 5), (9, 12), (3, 2)]), vec![]);
        assert_eq!(normalize_spans(t, &[(3, 4), (0, 1), (1, 3)]), vec![(0, 4)]);
        assert_eq!(normalize_spans(t, &[(0, 1), (3, 4)]), vec![(0, 1), (3, 4)]);
    }

    #[test]
    fn highlight_marks_bytes_and_escapes_each_segment() {
        let text = "pay <IBAN> DE89 now";
        let start = text.find("DE89").unwrap();
        let html = highlighted_string(text, &[(start, start + 4)]);
        assert_eq!(html, "&quot;pay &lt;IBAN&gt; <mark>DE89</mark> now&quot;");
        // A span cutting a multi-byte character marks the whole character, never half of it.
        let html = highlighted_string("x€y", &[(2, 3)]);
        assert_eq!(html, "&quot;x<mark>€</mark>y&quot;");
        // JSON escapes inside and outside a mark.
        let html = highlighted_string("a\"b\nc", &[(1, 2)]);
        assert_eq!(html, "&quot;a<mark>\\&quot;</mark>b\\nc&quot;");
    }

    #[test]
    fn field_paths_in_every_spelling() {
        assert!(field_is("body", "body"));
        assert!(field_is("content.body", "body"));
        assert!(field_is("content.a[1].b", "a.1.b"));
        assert!(field_is("a.1.b", "a.1.b"));
        assert!(field_is("new_content.body", "m.new_content.body"));
        assert!(field_is("room.topic", "topic"));
        assert!(!field_is("content.body (key)", "body"));
        assert!(!field_is("formatted_body", "body"));
    }

    #[test]
    fn preview_highlights_the_named_field_only() {
        let content = serde_json::json!({
            "body": "secret <script>alert(1)</script> word",
            "formatted_body": "secret",
            "m.relates_to": {"rel_type": "m.thread", "list": ["secret"]}
        });
        let m = |field: &str, s: usize, e: usize| Match {
            rule: "r".into(),
            field: field.into(),
            start: s,
            end: e,
        };
        let (html, found) = content_preview(
            &content,
            &[
                m("body", 0, 6),
                m("content.m.relates_to.list.0", 0, 6),
                m("nowhere", 0, 1),
                m("content.m.relates_to (key)", 0, 1),
            ],
        );
        assert_eq!(found, 2);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(html.matches("<mark>").count(), 2, "{html}");
        assert!(html.contains("&quot;body&quot;: &quot;<mark>secret</mark> &lt;script"));
        assert!(html.contains("&quot;formatted_body&quot;: &quot;secret&quot;"));
        assert!(
            html.contains("    &quot;<mark>secret</mark>&quot;\n"),
            "{html}"
        );
    }
}
