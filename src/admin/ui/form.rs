//! `application/x-www-form-urlencoded` parsing for the review UI's forms and query strings.
//!
//! Strict: invalid percent escapes, invalid UTF-8 and repeated names are errors (the request
//! is refused), so a form never means two things.
use std::collections::BTreeMap;

/// Why a form or query string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("invalid percent escape")]
    Escape,
    #[error("form data is not UTF-8")]
    Utf8,
    #[error("a field appears twice")]
    Duplicate,
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn decode(part: &str) -> Result<String, FormError> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_val);
                let lo = bytes.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(FormError::Escape),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::Utf8)
}

/// Parses `a=1&b=x+y` into a map; empty pairs are skipped.
pub fn parse(data: &[u8]) -> Result<BTreeMap<String, String>, FormError> {
    let text = std::str::from_utf8(data).map_err(|_| FormError::Utf8)?;
    let mut map = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if map.insert(decode(k)?, decode(v)?).is_some() {
            return Err(FormError::Duplicate);
        }
    }
    Ok(map)
}

/// Percent-encodes a value for a query string.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let m = parse(b"reason=too+many%20words%21&decision=release&empty=&flag").unwrap();
        assert_eq!(m["reason"], "too many words!");
        assert_eq!(m["decision"], "release");
        assert_eq!(m["empty"], "");
        assert_eq!(m["flag"], "");
        assert_eq!(parse(b"r=Gr%C3%BC%C3%9Fe").unwrap()["r"], "Grüße");
        assert!(parse(b"").unwrap().is_empty());
    }

    #[test]
    fn refuses_ambiguous_or_broken_input() {
        assert_eq!(parse(b"a=1&a=2"), Err(FormError::Duplicate));
        assert_eq!(parse(b"a=%4"), Err(FormError::Escape));
        assert_eq!(parse(b"a=%zz"), Err(FormError::Escape));
        assert_eq!(parse(b"a=%FF"), Err(FormError::Utf8));
        assert_eq!(parse(b"a=\xff"), Err(FormError::Utf8));
    }

    #[test]
    fn encode_round_trips() {
        let v = "a b&c=d/é?";
        let m = parse(format!("x={}", encode(v)).as_bytes()).unwrap();
        assert_eq!(m["x"], v);
    }
}
