//! The record line: canonical JSON, the chain hash, the checkpoint signature, timestamps.
//!
//! Canonical JSON here: object keys sorted by byte order (UTF-8), no whitespace, strings
//! escaped as `serde_json` escapes them (`\"`, `\\`, `\b \f \n \r \t`, `\u00XX` for other
//! control characters, everything else literal UTF-8), integers as decimal, other numbers as
//! `serde_json` prints them (shortest round-trip form). Parsing a line and writing it again
//! gives the same bytes; `verify` relies on that and refuses a line that is not in this form.
use std::fmt::Write as _;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev` of the first record ever written (seq 0).
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The record format version (`"v"`).
pub const FORMAT_VERSION: u64 = 1;

/// The envelope keys, in canonical order. A record has exactly these.
pub const ENVELOPE_KEYS: [&str; 7] = ["data", "hash", "kind", "prev", "seq", "ts", "v"];

/// Appends the canonical form of `v` to `out`.
pub fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => write_object(m, None, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        // Null, booleans and numbers: serde_json's compact form is the canonical one.
        other => out.push_str(&other.to_string()),
    }
}

/// Writes an object with its keys sorted, leaving out `skip`.
pub fn write_object(m: &Map<String, Value>, skip: Option<&str>, out: &mut String) {
    // serde_json's map iterates in key order unless its `preserve_order` feature is on
    // somewhere in the build; sort only when it does not.
    let sorted = m.keys().zip(m.keys().skip(1)).all(|(a, b)| a < b);
    let mut first = true;
    let mut one = |k: &String, v: &Value, out: &mut String| {
        if Some(k.as_str()) == skip {
            return;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_string(k, out);
        out.push(':');
        write_canonical(v, out);
    };
    out.push('{');
    if sorted {
        for (k, v) in m {
            one(k, v, out);
        }
    } else {
        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (k, v) in entries {
            one(k, v, out);
        }
    }
    out.push('}');
}

fn write_string(s: &str, out: &mut String) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // serde_json's escaping is the canonical one; it cannot fail for a str.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// The canonical form of a value.
pub fn canonical(v: &Value) -> String {
    let mut s = String::new();
    write_canonical(v, &mut s);
    s
}

/// Lower-case hex of a SHA-256 digest of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Whether `s` is 64 lower-case hex digits.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Milliseconds since the Unix epoch → RFC 3339 UTC with milliseconds
/// (`2026-12-06T13:23:52.123Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses RFC 3339 (`2026-12-06T13:23:52Z`, `…52.123Z`, `…52+01:00`, lower-case `t`/`z`
/// too) or a bare date (`2026-12-06`, midnight UTC) into milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if b.len() == i + 6 && b[i + 3] == b':' => {
            let v = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000 + ms)
}

// Howard Hinnant's days ↔ civil date algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Signs the bytes of a checkpoint; returns the `sig` value.
pub type Sign<'a> = &'a dyn Fn(&[u8]) -> String;

/// One encoded record: the line (with its trailing newline) and its hash.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub line: String,
    pub hash: String,
}

/// Builds the line of a record. `sign` (checkpoints) gets the canonical form of the record
/// without `hash` and without `data.sig` and returns the `sig` value to add to `data`.
pub fn encode(
    seq: u64,
    ts: &str,
    kind: &str,
    prev: &str,
    mut data: Map<String, Value>,
    sign: Option<Sign<'_>>,
) -> Encoded {
    if let Some(sign) = sign {
        data.remove("sig");
        let mut body = String::with_capacity(256);
        body.push_str("{\"data\":");
        write_object(&data, None, &mut body);
        push_tail(seq, ts, kind, prev, &mut body);
        let sig = sign(body.as_bytes());
        data.insert("sig".into(), Value::String(sig));
    }
    let mut d = String::with_capacity(256);
    write_object(&data, None, &mut d);
    encode_canonical(seq, ts, kind, prev, &d)
}

/// The keys after `data` and `hash`, to the closing brace.
fn push_tail(seq: u64, ts: &str, kind: &str, prev: &str, t: &mut String) {
    t.push_str(",\"kind\":");
    write_string(kind, t);
    t.push_str(",\"prev\":\"");
    t.push_str(prev);
    let _ = write!(t, "\",\"seq\":{seq},\"ts\":");
    write_string(ts, t);
    let _ = write!(t, ",\"v\":{FORMAT_VERSION}}}");
}

/// [`encode`] for a `data` object already in canonical form (the appending thread makes it, so
/// the writer only adds the envelope and hashes).
pub fn encode_canonical(seq: u64, ts: &str, kind: &str, prev: &str, data: &str) -> Encoded {
    let mut body = String::with_capacity(data.len() + 160);
    body.push_str("{\"data\":");
    body.push_str(data);
    let data_end = body.len();
    push_tail(seq, ts, kind, prev, &mut body);
    let hash = sha256_hex(body.as_bytes());
    let mut line = String::with_capacity(body.len() + 80);
    line.push_str(&body[..data_end]);
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push('"');
    line.push_str(&body[data_end..]);
    line.push('\n');
    Encoded { line, hash }
}

/// The bytes a record's `hash` covers: the canonical form without `hash`.
pub fn hashed_form(record: &Map<String, Value>) -> String {
    let mut s = String::new();
    write_object(record, Some("hash"), &mut s);
    s
}

/// The bytes a checkpoint's signature covers: the canonical form without `hash` and without
/// `data.sig`.
pub fn signed_form(record: &Map<String, Value>) -> String {
    let mut r = record.clone();
    r.remove("hash");
    if let Some(Value::Object(d)) = r.get_mut("data") {
        d.remove("sig");
    }
    canonical(&Value::Object(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_and_escapes() {
        let v = json!({"b": 1, "a": [true, null, "x\"y\\z\n\u{1}é"], "A": {"z": -3, "m": 1.5}});
        assert_eq!(
            canonical(&v),
            r#"{"A":{"m":1.5,"z":-3},"a":[true,null,"x\"y\\z\n\u0001é"],"b":1}"#
        );
        let back: Value = serde_json::from_str(&canonical(&v)).unwrap();
        assert_eq!(canonical(&back), canonical(&v));
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0i64, 951_782_400_123, 1_796_563_432_999, 4_102_444_800_000] {
            let s = rfc3339_ms(ms);
            assert_eq!(parse_rfc3339_ms(&s), Some(ms), "{s}");
        }
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T01:00:00+01:00"),
            Some(951_782_400_000)
        );
        assert_eq!(parse_rfc3339_ms("2000-02-29"), Some(951_782_400_000));
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00.5Z"),
            Some(951_782_400_500)
        );
        for bad in [
            "",
            "2000-13-01",
            "2000-02-29T00:00:00",
            "yesterday",
            "2000-02-29T00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn encode_hash_covers_the_line_without_hash() {
        let mut data = Map::new();
        data.insert("x".into(), json!("y"));
        let e = encode(
            7,
            "2026-01-01T00:00:00.000Z",
            "notice",
            GENESIS_PREV,
            data,
            None,
        );
        let v: Value = serde_json::from_str(e.line.trim_end()).unwrap();
        let m = v.as_object().unwrap();
        assert_eq!(canonical(&v), e.line.trim_end());
        assert_eq!(sha256_hex(hashed_form(m).as_bytes()), e.hash);
        assert_eq!(m["hash"], Value::String(e.hash.clone()));
    }

    /// The worked example of `deploy/AUDIT-FORMAT.md` (expected lines computed independently,
    /// with Python's `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
    /// and `hashlib.sha256`). The format is stable: this test must never change.
    #[test]
    fn golden_records() {
        use crate::audit::record::*;
        let refusal = Record::from(RefusalRecord {
            status: 403,
            errcode: "M_FORBIDDEN".into(),
            reason: "unknown_path".into(),
            method: "GET".into(),
            path: "/_matrix/federation/v1/query/unknown".into(),
            origin: None,
            peer: Some("192.0.2.7".into()),
            direction: Direction::Inbound,
        });
        let (kind, data) = refusal.into_parts();
        let a = encode(
            0,
            "2026-12-06T13:23:52.123Z",
            kind.as_str(),
            GENESIS_PREV,
            data,
            None,
        );
        assert_eq!(
            a.line,
            concat!(
                r#"{"data":{"direction":"inbound","errcode":"M_FORBIDDEN","method":"GET","path":"/_matrix/federation/v1/query/unknown","peer":"192.0.2.7","reason":"unknown_path","status":403},"#,
                r#""hash":"25ec9a20e265e80ebaa84d40204215f4322de54f4d643bf28a7963adc1b760e2","kind":"refusal","#,
                r#""prev":"0000000000000000000000000000000000000000000000000000000000000000","seq":0,"ts":"2026-12-06T13:23:52.123Z","v":1}"#,
                "\n"
            )
        );
        let decision = Record::from(DecisionRecord {
            unit: Unit::Pdu,
            txn_id: Some("1733491432123".into()),
            event_id: Some("$Rk3vX9aJm2Q7yYfLw0ZcN8tHuS4pD6eBgKoV1iIxTq".into()),
            room_id: Some("!VmJqPzKxLrTnBwYc:hs1.example".into()),
            sender: Some("@alice:hs1.example".into()),
            origin: "hs1.example".into(),
            destination: "hs2.example".into(),
            direction: Direction::Outbound,
            endpoint: "/_matrix/federation/v1/send/{txnId}".into(),
            verdict: Verdict::Redact,
            effect: None,
            rules: vec![RuleMatch {
                rule: "vs-nfd-marking".into(),
                field: "content.body".into(),
                excerpt: "…Einstufung: VS-******** bis…".into(),
            }],
            label: Some("VS-NUR FÜR DEN DIENSTGEBRAUCH".into()),
            clearance: Some("OFFEN".into()),
            policy_hash: Some("3f1c9a0d5e7b2468".into()),
            content_sha256: Some(crate::audit::content_sha256(br#"{"body":"x"}"#)),
            content: None,
        });
        let (kind, data) = decision.into_parts();
        let b = encode(
            1,
            "2026-12-06T13:23:52.125Z",
            kind.as_str(),
            &a.hash,
            data,
            None,
        );
        assert_eq!(
            b.line,
            concat!(
                r#"{"data":{"clearance":"OFFEN","content_sha256":"95d1504ea9e70f474b35a354180f4a4c2528f3a38b0584fe4b563c27cdabe512","#,
                r#""destination":"hs2.example","direction":"outbound","endpoint":"/_matrix/federation/v1/send/{txnId}","#,
                r#""event_id":"$Rk3vX9aJm2Q7yYfLw0ZcN8tHuS4pD6eBgKoV1iIxTq","label":"VS-NUR FÜR DEN DIENSTGEBRAUCH","#,
                r#""origin":"hs1.example","policy_hash":"3f1c9a0d5e7b2468","room_id":"!VmJqPzKxLrTnBwYc:hs1.example","#,
                r#""rules":[{"excerpt":"…Einstufung: VS-******** bis…","field":"content.body","rule":"vs-nfd-marking"}],"#,
                r#""sender":"@alice:hs1.example","txn_id":"1733491432123","unit":"pdu","verdict":"redact"},"#,
                r#""hash":"99dfafd795ed3f06a1d1f6451ade6073c01858d8754f08a888154c101b0dfaaf","kind":"decision","#,
                r#""prev":"25ec9a20e265e80ebaa84d40204215f4322de54f4d643bf28a7963adc1b760e2","seq":1,"ts":"2026-12-06T13:23:52.125Z","v":1}"#,
                "\n"
            )
        );
    }
}
