//! Canonical JSON per room version: the strict number checks of room versions 6+, and the
//! canonical serialisation used for everything the guard re-emits (redacted events).
//!
//! # Design notes
//!
//! * Canonical JSON (spec appendix "Canonical JSON"): object keys sorted by code point, no
//!   insignificant whitespace, shortest UTF-8 string escapes, integers only, within
//!   ±(2^53 − 1), no `-0`. Room versions 6+ must **enforce** the number rules (a PDU that
//!   breaks them is discarded over federation); room versions 1–5 must not (old rooms hold
//!   events with floats and big integers that are still valid there).
//! * [`check_canonical`] is one streaming pass of `serde_json` with a visitor that looks only
//!   at numbers; nothing is allocated for valid input. Duplicate keys are not its concern:
//!   [`crate::federation::json::validate`] has already refused them on every body.
//! * `serde_json` reports `-0` as the float `-0.0` and integers beyond the 64-bit range as
//!   floats, so the checks see: a float that is `-0.0` → [`CanonicalError::NegativeZero`]; an
//!   integral float of magnitude ≥ 2^53 (e.g. `1e20`, `99999999999999999999`) →
//!   [`CanonicalError::IntegerOutOfRange`]; any other float (`1.5`, `1e2`) →
//!   [`CanonicalError::Float`]. `-0.0` is reported as a negative zero too.
//! * Serialisation is ruma's: [`CanonicalJsonValue`] keeps objects in a `BTreeMap` (sorted by
//!   code point, which is UTF-8 byte order) and serialises compactly through `serde_json`,
//!   whose string escaping is the canonical one (`\"`, `\\`, the short escapes `\b \f \n \r
//!   \t`, `\u00XX` for other control characters, everything else as literal UTF-8). Nothing is
//!   hand-rolled here.
//! * Errors are typed and never carry payload.
use std::borrow::Cow;
use std::fmt;

use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Largest integer magnitude canonical JSON allows: 2^53 − 1.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A value breaks the canonical-JSON rules of its room version. No payload in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A number with a fraction or exponent (`1.5`, `1e2`).
    #[error("JSON contains a non-integer number")]
    Float,
    /// An integer outside ±(2^53 − 1).
    #[error("JSON contains an integer outside ±(2^53 − 1)")]
    IntegerOutOfRange,
    /// `-0` (or `-0.0`).
    #[error("JSON contains a negative zero")]
    NegativeZero,
    /// Not valid JSON, or nested deeper than the parser allows.
    #[error("not valid JSON")]
    NotJson,
}

impl CanonicalError {
    /// The Matrix error code: `M_NOT_JSON` for [`Self::NotJson`], else `M_BAD_JSON`.
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::NotJson => "M_NOT_JSON",
            _ => "M_BAD_JSON",
        }
    }
}

/// Checks `raw` against the canonical-JSON number rules.
///
/// With `strict` (room versions 6+, see [`ruma::room_version_rules::AuthorizationRules`]
/// `strict_canonical_json`): floats, integers outside ±(2^53 − 1) and `-0` are refused,
/// anywhere in the value. Without `strict` (room versions 1–5) every JSON value passes.
pub fn check_canonical(raw: &RawValue, strict: bool) -> Result<(), CanonicalError> {
    if !strict {
        return Ok(());
    }
    let failure = std::cell::Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(raw.get());
    match (NumberCheck { failure: &failure }).deserialize(&mut de) {
        Ok(()) => Ok(()),
        Err(_) => Err(failure.get().unwrap_or(CanonicalError::NotJson)),
    }
}

/// Classifies a number `serde_json` delivered as a float.
fn classify_float(v: f64) -> CanonicalError {
    if v == 0.0 && v.is_sign_negative() {
        CanonicalError::NegativeZero
    } else if v.fract() == 0.0 && v.abs() >= (MAX_SAFE_INTEGER as f64) + 1.0 {
        CanonicalError::IntegerOutOfRange
    } else {
        CanonicalError::Float
    }
}

/// Walks any JSON value, failing on the first non-canonical number.
#[derive(Clone, Copy)]
struct NumberCheck<'c> {
    failure: &'c std::cell::Cell<Option<CanonicalError>>,
}

impl NumberCheck<'_> {
    fn fail<E: de::Error>(self, e: CanonicalError) -> Result<(), E> {
        self.failure.set(Some(e));
        Err(E::custom("not canonical"))
    }
}

impl<'de> DeserializeSeed<'de> for NumberCheck<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumberCheck<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&v) {
            Ok(())
        } else {
            self.fail(CanonicalError::IntegerOutOfRange)
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        if v <= MAX_SAFE_INTEGER as u64 {
            Ok(())
        } else {
            self.fail(CanonicalError::IntegerOutOfRange)
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.fail(classify_float(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// Parses `raw` into ruma's canonical value, refusing what canonical JSON cannot represent
/// (floats, integers outside ±(2^53 − 1), `-0`) with the precise reason.
pub fn parse_canonical(raw: &RawValue) -> Result<CanonicalJsonValue, CanonicalError> {
    serde_json::from_str::<CanonicalJsonValue>(raw.get()).map_err(|_| {
        // ruma's error is a string; re-run the typed check to say why.
        match check_canonical(raw, true) {
            Err(e) => e,
            Ok(()) => CanonicalError::NotJson,
        }
    })
}

/// True if `raw` is already byte for byte in canonical form (and within the strict number
/// rules): then its canonical serialisation is the text itself and need not be computed.
///
/// One pass over the bytes, no allocation. Synapse sends every request body as canonical JSON
/// (`encode_canonical_json` in `matrixfederationclient.py`), and a canonical body with one PDU
/// replaced by a canonical redacted PDU is still canonical, so the guard's re-signing can skip
/// the parse-and-reserialise step on the common path. Conservative: object keys that contain
/// escapes, and nesting beyond 128 levels, answer `false` (use the slow path).
pub fn is_canonical(raw: &RawValue) -> bool {
    is_canonical_str(raw.get())
}

/// [`is_canonical`] on text that may not even be JSON (`false` for non-JSON).
pub fn is_canonical_str(text: &str) -> bool {
    let mut scan = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    scan.value(0) && scan.i == scan.b.len()
}

/// The canonical form of `raw`: borrowed when it already is canonical ([`is_canonical`]),
/// else parsed and re-serialised by ruma. Refuses what canonical JSON cannot represent
/// (floats, integers outside ±(2^53 − 1), `-0`).
pub fn canonical_form(raw: &RawValue) -> Result<Cow<'_, str>, CanonicalError> {
    if is_canonical(raw) {
        return Ok(Cow::Borrowed(raw.get()));
    }
    let bytes = to_canonical_bytes(&parse_canonical(raw)?);
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| CanonicalError::NotJson)
}

/// Recursion limit of the canonical-form scanner (`serde_json`'s own limit).
const MAX_SCAN_DEPTH: usize = 128;

/// Recogniser of the canonical JSON grammar: no whitespace, object keys strictly ascending
/// (by bytes = code points; strictly, so no duplicates), strings with exactly the escapes
/// canonical JSON uses, integers `-?(0|[1-9][0-9]*)` within ±(2^53 − 1) and not `-0`.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_SCAN_DEPTH {
            return false;
        }
        match self.b.get(self.i) {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        self.i += 1; // `{`
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return true;
        }
        let mut previous: Option<&[u8]> = None;
        loop {
            let start = self.i + 1;
            if self.b.get(self.i) != Some(&b'"') {
                return false;
            }
            // Keys with escapes would have to be compared unescaped: leave them to the slow
            // path.
            match self.string() {
                Some(false) => {}
                _ => return false,
            }
            let key = &self.b[start..self.i - 1];
            if previous.is_some_and(|p| p >= key) {
                return false;
            }
            previous = Some(key);
            if self.next() != Some(b':') || !self.value(depth + 1) {
                return false;
            }
            match self.next() {
                Some(b',') => continue,
                Some(b'}') => return true,
                _ => return false,
            }
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        self.i += 1; // `[`
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return true,
                _ => return false,
            }
        }
    }

    /// Advances to the next byte that needs attention inside a string (`"`, `\\` or a control
    /// character), eight bytes at a time. Per category, the word test `(v - k) & !v & 0x80…`
    /// flags the lowest byte below `k` exactly (bytes before it cause no borrow; only bytes
    /// after it may be flagged spuriously), so the lowest flag of the three tests together is
    /// the first special byte of the word. The byte loop in [`Self::string`] reads it.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // Flags bytes of `v` below `k` (k ≤ 0x80).
        let below = |v: u64, k: u64| v.wrapping_sub(ONES * k) & !v & HIGH;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let special = below(x, 0x20)
                | below(x ^ (ONES * u64::from(b'"')), 1)
                | below(x ^ (ONES * u64::from(b'\\')), 1);
            if special != 0 {
                self.i += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
    }

    /// A string in canonical form; `Some(had_escapes)` or `None` if not canonical.
    fn string(&mut self) -> Option<bool> {
        self.i += 1; // `"`
        let mut escaped = false;
        loop {
            self.skip_plain();
            match self.next()? {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    match self.next()? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            // Only `\u00xx` (lower-case hex) for a control character without
                            // a short escape.
                            let h = self.b.get(self.i..self.i + 4)?;
                            self.i += 4;
                            let hex = |c: u8| match c {
                                b'0'..=b'9' => Some(c - b'0'),
                                b'a'..=b'f' => Some(c - b'a' + 10),
                                _ => None,
                            };
                            if h[0] != b'0' || h[1] != b'0' {
                                return None;
                            }
                            let v = hex(h[2])? * 16 + hex(h[3])?;
                            if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => {}
            }
        }
    }

    fn integer(&mut self) -> bool {
        let negative = self.b[self.i] == b'-';
        if negative {
            self.i += 1;
        }
        let digits_start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let digits = &self.b[digits_start..self.i];
        if digits.is_empty()
            || (digits[0] == b'0' && digits.len() > 1)
            || (negative && digits == b"0")
            || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'))
            || digits.len() > 16
        {
            return false;
        }
        let value = digits
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
        value <= MAX_SAFE_INTEGER
    }
}

/// The canonical JSON bytes of `value`: keys sorted, compact, shortest UTF-8 escapes.
pub fn to_canonical_bytes(value: &CanonicalJsonValue) -> Vec<u8> {
    // Serialising a CanonicalJsonValue into a Vec cannot fail: every variant maps to a plain
    // JSON value and object keys are strings.
    serde_json::to_vec(value).expect("canonical JSON value serialises")
}

/// As [`to_canonical_bytes`], for an object.
pub fn object_to_canonical_bytes(object: &CanonicalJsonObject) -> Vec<u8> {
    serde_json::to_vec(object).expect("canonical JSON object serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        serde_json::from_str(s).unwrap()
    }

    fn strict(s: &str) -> Result<(), CanonicalError> {
        check_canonical(&raw(s), true)
    }

    fn lenient(s: &str) -> Result<(), CanonicalError> {
        check_canonical(&raw(s), false)
    }

    #[test]
    fn integers_at_the_limits() {
        assert_eq!(strict("9007199254740991"), Ok(()));
        assert_eq!(strict("-9007199254740991"), Ok(()));
        assert_eq!(strict("0"), Ok(()));
        assert_eq!(
            strict("9007199254740992"),
            Err(CanonicalError::IntegerOutOfRange)
        );
        assert_eq!(
            strict("-9007199254740992"),
            Err(CanonicalError::IntegerOutOfRange)
        );
        assert_eq!(
            strict("18446744073709551615"),
            Err(CanonicalError::IntegerOutOfRange)
        );
        // Beyond u64: serde_json hands over a float, still an out-of-range integer.
        assert_eq!(
            strict("99999999999999999999"),
            Err(CanonicalError::IntegerOutOfRange)
        );
        assert_eq!(
            strict("-99999999999999999999"),
            Err(CanonicalError::IntegerOutOfRange)
        );
        assert_eq!(strict("1e20"), Err(CanonicalError::IntegerOutOfRange));
        for ok in [
            "9007199254740992",
            "-9007199254740992",
            "99999999999999999999",
        ] {
            assert_eq!(lenient(ok), Ok(()));
        }
    }

    #[test]
    fn floats_and_negative_zero() {
        assert_eq!(strict("1.5"), Err(CanonicalError::Float));
        assert_eq!(strict("1.0"), Err(CanonicalError::Float));
        assert_eq!(strict("1e2"), Err(CanonicalError::Float));
        assert_eq!(strict("1E2"), Err(CanonicalError::Float));
        assert_eq!(strict("-2.5e-3"), Err(CanonicalError::Float));
        assert_eq!(strict("-0"), Err(CanonicalError::NegativeZero));
        assert_eq!(strict("-0.0"), Err(CanonicalError::NegativeZero));
        assert_eq!(strict("0.0"), Err(CanonicalError::Float));
        for s in ["1.5", "1e2", "-0", "-0.0", "0.0"] {
            assert_eq!(lenient(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn nested_numbers_are_found() {
        let deep = r#"{"a":[1,2,{"b":{"c":[true,null,"x",{"d":1.25}]}}],"z":1}"#;
        assert_eq!(strict(deep), Err(CanonicalError::Float));
        assert_eq!(lenient(deep), Ok(()));
        let pl = r#"{"content":{"users":{"@a:b":-0}},"type":"m.room.power_levels"}"#;
        assert_eq!(strict(pl), Err(CanonicalError::NegativeZero));
        let ok =
            r#"{"content":{"users":{"@a:b":100,"@c:b":-100},"ts":1712345678901},"s":"1.5 -0 1e2"}"#;
        assert_eq!(strict(ok), Ok(()));
        assert_eq!(CanonicalError::Float.errcode(), "M_BAD_JSON");
        assert_eq!(CanonicalError::NotJson.errcode(), "M_NOT_JSON");
    }

    #[test]
    fn parse_canonical_gives_the_reason() {
        assert_eq!(
            parse_canonical(&raw(r#"{"a":1.5}"#)).unwrap_err(),
            CanonicalError::Float
        );
        assert_eq!(
            parse_canonical(&raw(r#"{"a":[-0]}"#)).unwrap_err(),
            CanonicalError::NegativeZero
        );
        assert_eq!(
            parse_canonical(&raw(r#"{"a":9007199254740992}"#)).unwrap_err(),
            CanonicalError::IntegerOutOfRange
        );
        let v = parse_canonical(&raw(r#"{"b":9007199254740991,"a":-9007199254740991}"#)).unwrap();
        assert_eq!(
            to_canonical_bytes(&v),
            br#"{"a":-9007199254740991,"b":9007199254740991}"#
        );
    }

    #[test]
    fn string_scan_finds_special_bytes_at_every_position_of_a_word() {
        // Special bytes at every offset of the eight-byte words, next to non-ASCII bytes
        // (0x80, 0xa0, 0xbf, 0xc3 …) that must not hide them or be taken for them.
        let fillers = ["a", "ÿ", "\u{80}", "\u{a0}", "€", "Ü"];
        for filler in fillers {
            for n in 0..20 {
                let pad = filler.repeat(n);
                for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}", "/", "\u{7f}"] {
                    let value = format!("{pad}{special}{pad}x");
                    let canon = serde_json::to_string(&value).unwrap();
                    assert!(is_canonical_str(&canon), "{canon:?}");
                    // The same text with the special byte raw (breaks the string for `"`,
                    // is a bare control character for the others) is refused, except where
                    // the raw byte is allowed (`/`, DEL).
                    let raw_text = format!("\"{value}\"");
                    let allowed = matches!(special, "/" | "\u{7f}");
                    assert_eq!(is_canonical_str(&raw_text), allowed, "{raw_text:?}");
                }
            }
        }
    }

    #[test]
    fn canonical_serialisation() {
        // Examples of the spec appendix "Canonical JSON" plus escaping cases.
        let cases = [
            ("{}", "{}"),
            (r#"{"one": 1, "two": "Two"}"#, r#"{"one":1,"two":"Two"}"#),
            (r#"{"b": "2", "a": "1"}"#, r#"{"a":"1","b":"2"}"#),
            (
                r#"{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}"#,
                r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#,
            ),
            (r#"{"a": "日本語"}"#, r#"{"a":"日本語"}"#),
            (r#"{"本": 2, "日": 1}"#, r#"{"日":1,"本":2}"#),
            (r#"{"a": "\u65E5"}"#, r#"{"a":"日"}"#),
            (r#"{"a": null}"#, r#"{"a":null}"#),
            (
                r#"{"a": "\u0000\u0001\b\t\n\f\r\u001f\"\\\/ Grüße"}"#,
                r#"{"a":"\u0000\u0001\b\t\n\f\r\u001f\"\\/ Grüße"}"#,
            ),
            (
                r#"[ 1 , -2 , true , false , null ]"#,
                "[1,-2,true,false,null]",
            ),
            (
                r#"{"a": {"c": 1, "b": [ {"z": 0, "y": 0} ]}}"#,
                r#"{"a":{"b":[{"y":0,"z":0}],"c":1}}"#,
            ),
        ];
        for (input, expected) in cases {
            let v = parse_canonical(&raw(input)).unwrap();
            assert_eq!(
                String::from_utf8(to_canonical_bytes(&v)).unwrap(),
                expected,
                "{input}"
            );
        }
        // Keys sort by code point (= UTF-8 byte order), not by UTF-16 units: U+FFFD sorts
        // before U+1F600 although its UTF-16 unit is larger.
        let v = parse_canonical(&raw(r#"{"😀":1,"\uFFFD":2,"Z":3,"a":4}"#)).unwrap();
        assert_eq!(
            String::from_utf8(to_canonical_bytes(&v)).unwrap(),
            "{\"Z\":3,\"a\":4,\"\u{FFFD}\":2,\"😀\":1}"
        );
        let CanonicalJsonValue::Object(obj) = v else {
            panic!("object")
        };
        assert_eq!(
            object_to_canonical_bytes(&obj),
            to_canonical_bytes(&CanonicalJsonValue::Object(obj.clone()))
        );
    }

    #[test]
    fn canonical_form_recogniser() {
        let yes = [
            "{}",
            "[]",
            "0",
            "-1",
            "9007199254740991",
            "-9007199254740991",
            "true",
            r#""""#,
            r#"{"a":1,"b":[true,false,null,"x"]}"#,
            r#"{"a":{"b":{}},"aa":0,"b":-5}"#,
            r#"{"Z":1,"a":2,"é":3,"😀":4}"#,
            r#"{"k":"\"\\\b\f\n\r\t\u0000\u001f/ü😀"}"#,
            "\"\u{7f}\u{2028}\"",
        ];
        for s in yes {
            assert!(is_canonical_str(s), "{s}");
            // And ruma agrees it is canonical.
            let v = parse_canonical(&raw(s)).unwrap();
            assert_eq!(to_canonical_bytes(&v), s.as_bytes(), "{s}");
            assert!(matches!(canonical_form(&raw(s)).unwrap(), Cow::Borrowed(_)));
        }
        let no = [
            "",
            " {}",
            "{} ",
            "{ }",
            r#"{"a": 1}"#,
            r#"{"a":1 }"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            "[1, 2]",
            "01",
            "-0",
            "1.0",
            "1e2",
            "1E2",
            "9007199254740992",
            "-9007199254740992",
            "12345678901234567890",
            r#""\/""#,
            r#""\u0041""#,
            r#""\u00e9""#,
            r#""\u000a""#,
            r#""\u001F""#,
            r#""\u007f""#,
            r#""\u0008""#,
            "\"\u{1}\"",
            "\"\n\"",
            r#"{"a\n":1}"#, // canonical, but escaped keys take the slow path
            "tru",
            "nul",
            "{",
            "[1,]",
            "{\"a\":}",
            r#"{"a":1,}"#,
            "\"abc",
        ];
        for s in no {
            assert!(!is_canonical_str(s), "{s:?}");
        }
        // Nesting: deep canonical arrays are fine up to the limit, refused beyond.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(is_canonical_str(&deep(129)));
        assert!(!is_canonical_str(&deep(130)));
        assert!(!is_canonical_str(&deep(100_000)));
        // canonical_form computes the form when needed.
        assert_eq!(
            canonical_form(&raw(r#"{ "b" : "\u00e9\/", "a" : [ 1 ] }"#)).unwrap(),
            r#"{"a":[1],"b":"é/"}"#
        );
        assert_eq!(
            canonical_form(&raw(r#"{"a":1.5}"#)).unwrap_err(),
            CanonicalError::Float
        );
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum J {
            Null,
            Bool(bool),
            Int(i64),
            Str(String),
            Arr(Vec<J>),
            Obj(Vec<(String, J)>),
        }

        fn text() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop::sample::select(vec![
                    'a', 'b', 'A', '/', '"', '\\', '\u{0}', '\u{8}', '\n', '\u{1f}', '\u{7f}', 'é',
                    '😀', '\u{2028}', '\u{fffd}',
                ]),
                0..5,
            )
            .prop_map(String::from_iter)
        }

        fn key() -> impl Strategy<Value = String> {
            prop::sample::select(vec!["a", "b", "B", "ab", "é", "😀", "\u{fffd}", "", "a\n"])
                .prop_map(str::to_owned)
        }

        fn json() -> impl Strategy<Value = J> {
            let leaf = prop_oneof![
                Just(J::Null),
                any::<bool>().prop_map(J::Bool),
                (-(1i64 << 54)..(1i64 << 54)).prop_map(J::Int),
                (-3i64..3).prop_map(J::Int),
                text().prop_map(J::Str),
            ];
            leaf.prop_recursive(4, 32, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
                    prop::collection::vec((key(), inner), 0..5).prop_map(J::Obj),
                ]
            })
        }

        /// Renders with non-canonical variations chosen by `seed` (sometimes none at all).
        struct Render {
            seed: u64,
            variation: bool,
        }

        impl Render {
            fn coin(&mut self, one_in: u64) -> bool {
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                self.variation && self.seed.is_multiple_of(one_in)
            }

            fn ws(&mut self, out: &mut String) {
                if self.coin(40) {
                    out.push(' ');
                }
            }

            fn string(&mut self, s: &str, out: &mut String) {
                out.push('"');
                for c in s.chars() {
                    if self.coin(3) {
                        // Any character may be written as \\uXXXX (surrogate pairs beyond
                        // the BMP), `/` as `\/`.
                        if c == '/' && self.coin(2) {
                            out.push_str("\\/");
                        } else {
                            let mut buf = [0u16; 2];
                            for unit in c.encode_utf16(&mut buf) {
                                if self.coin(2) {
                                    out.push_str(&format!("\\u{unit:04X}"));
                                } else {
                                    out.push_str(&format!("\\u{unit:04x}"));
                                }
                            }
                        }
                    } else {
                        // serde_json's escaping, i.e. the canonical one.
                        let e = serde_json::to_string(&c.to_string()).unwrap();
                        out.push_str(&e[1..e.len() - 1]);
                    }
                }
                out.push('"');
            }

            fn value(&mut self, j: &J, out: &mut String) {
                self.ws(out);
                match j {
                    J::Null => out.push_str("null"),
                    J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    J::Int(0) if self.coin(5) => out.push_str("-0"),
                    J::Int(i) if self.coin(20) => out.push_str(&format!("{i}.0")),
                    J::Int(i) => out.push_str(&i.to_string()),
                    J::Str(s) => self.string(s, out),
                    J::Arr(items) => {
                        out.push('[');
                        for (n, item) in items.iter().enumerate() {
                            if n > 0 {
                                out.push(',');
                            }
                            self.value(item, out);
                        }
                        self.ws(out);
                        out.push(']');
                    }
                    J::Obj(members) => {
                        let mut members = members.clone();
                        if !self.coin(3) {
                            // Usually sorted (duplicates stay), sometimes in given order.
                            members.sort_by(|a, b| a.0.cmp(&b.0));
                        }
                        out.push('{');
                        for (n, (k, v)) in members.iter().enumerate() {
                            if n > 0 {
                                out.push(',');
                            }
                            self.ws(out);
                            self.string(k, out);
                            self.ws(out);
                            out.push(':');
                            self.value(v, out);
                        }
                        self.ws(out);
                        out.push('}');
                    }
                }
                self.ws(out);
            }
        }

        /// Whether the canonical text has an object key that needs escapes.
        fn has_escaped_key(canon: &str) -> bool {
            fn walk(v: &serde_json::Value) -> bool {
                match v {
                    serde_json::Value::Array(items) => items.iter().any(walk),
                    serde_json::Value::Object(members) => members.iter().any(|(k, v)| {
                        k.chars().any(|c| c < ' ' || c == '"' || c == '\\') || walk(v)
                    }),
                    _ => false,
                }
            }
            walk(&serde_json::from_str(canon).unwrap())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// is_canonical never says yes to text whose canonical form differs (soundness),
            /// says yes to every canonical text without escaped keys (completeness), and
            /// canonical_form always equals ruma's canonical serialisation.
            #[test]
            fn recogniser_agrees_with_ruma(j in json(), seed in 1u64.., variation in any::<bool>()) {
                let mut text = String::new();
                Render { seed, variation }.value(&j, &mut text);
                let raw: Box<RawValue> = serde_json::from_str(&text).unwrap();
                let fast = is_canonical_str(&text);
                match parse_canonical(&raw) {
                    Ok(v) => {
                        let canon = String::from_utf8(to_canonical_bytes(&v)).unwrap();
                        if fast {
                            prop_assert_eq!(&text, &canon);
                        } else if text == canon {
                            prop_assert!(has_escaped_key(&canon), "canonical text refused: {}", text);
                        }
                        prop_assert_eq!(canonical_form(&raw).unwrap(), canon.as_str());
                        let canon_raw: Box<RawValue> = serde_json::from_str(&canon).unwrap();
                        prop_assert_eq!(is_canonical(&canon_raw), !has_escaped_key(&canon));
                    }
                    Err(e) => {
                        prop_assert!(!fast, "non-canonical number accepted: {}", text);
                        prop_assert_eq!(canonical_form(&raw).unwrap_err(), e);
                    }
                }
            }
        }
    }
}
