//! Strict JSON validation of federation bodies, before anything is forwarded.
//!
//! # Design notes
//!
//! * One pass of `serde_json` driven by our own [`Visitor`]: it counts the nesting depth and
//!   remembers the keys of each open object, so it rejects **duplicate keys at any level**
//!   (compared after unescaping: `"a"` and `"\u0061"` are the same key — different JSON parsers
//!   keep different duplicates, which would let the guard judge one value while the homeserver
//!   acts on another) and **nesting deeper than the limit**. Trailing data after the value, an
//!   empty body, invalid UTF-8 (also inside strings), lone surrogate escapes and numbers out of
//!   range are "not JSON".
//! * Stack safety: `serde_json` recurses once per nesting level and stops at its own limit of
//!   128 levels with a generic "recursion limit exceeded" error. Our visitor refuses a level
//!   *before* descending into it, and the effective depth limit is capped at
//!   [`JsonLimits::MAX_SUPPORTED_DEPTH`] (100), below `serde_json`'s limit: so the recursion
//!   never goes deeper than 101 frames whatever the input (a test feeds 10 000 levels on a
//!   small stack), and a too-deep body is always reported as [`JsonError::TooDeep`], never as a
//!   confusing syntax error. Depth counts containers: `{}` and `[]` are depth 1,
//!   `{"a":[1]}` is depth 2; scalars add nothing.
//! * Allocation-light: keys are borrowed from the input unless they contain escapes; one
//!   scratch `Vec` holds the keys of all open objects (objects are checked linearly up to 16
//!   keys, with a hash set beyond, so a huge object is not quadratic). Valid input allocates
//!   nothing else.
//! * Errors never contain payload bytes: only a category, line and column.
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Size and nesting limits for one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Maximum body size in bytes.
    pub max_bytes: usize,
    /// Maximum nesting depth of arrays/objects (capped at [`Self::MAX_SUPPORTED_DEPTH`]).
    pub max_depth: usize,
}

impl JsonLimits {
    /// Highest depth limit honoured; larger `max_depth` values are treated as this. Kept below
    /// `serde_json`'s internal recursion limit (128) so that our depth error always fires first.
    pub const MAX_SUPPORTED_DEPTH: usize = 100;

    /// Synapse's request cap: 200 × the 65 536-byte PDU limit = 12.5 MiB
    /// (`synapse/http/server.py`, `MAX_REQUEST_SIZE`).
    pub const DEFAULT_MAX_BYTES: usize = 200 * 65_536;

    /// Default depth limit: far above real events, far below anything that stresses a parser.
    pub const DEFAULT_MAX_DEPTH: usize = 64;

    /// Limits with the given size and depth.
    pub const fn new(max_bytes: usize, max_depth: usize) -> Self {
        Self {
            max_bytes,
            max_depth,
        }
    }

    /// The depth limit actually applied.
    pub const fn effective_depth(&self) -> usize {
        if self.max_depth > Self::MAX_SUPPORTED_DEPTH {
            Self::MAX_SUPPORTED_DEPTH
        } else {
            self.max_depth
        }
    }
}

impl Default for JsonLimits {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_BYTES, Self::DEFAULT_MAX_DEPTH)
    }
}

/// What the top-level value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopLevel {
    /// Any JSON value.
    Any,
    /// An object (every federation JSON body except the legacy v1 responses).
    Object,
    /// The legacy v1 response form `[200, {…}]` (v1 invite/send_join/send_leave).
    StatusPair,
}

/// Why a body was refused. Messages carry no payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The body exceeds `max_bytes`.
    #[error("body of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Body size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Not a single well-formed JSON value (syntax error, truncation, trailing data, invalid
    /// UTF-8, lone surrogate, number out of range).
    #[error("body is not valid JSON ({reason} at line {line}, column {column})")]
    NotJson {
        /// Short category.
        reason: &'static str,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// An object has the same key twice (after unescaping).
    #[error("duplicate object key at depth {depth} (line {line}, column {column})")]
    DuplicateKey {
        /// Depth of the object holding the duplicate.
        depth: usize,
        /// Line of the duplicate.
        line: usize,
        /// Column of the duplicate.
        column: usize,
    },
    /// Nesting deeper than the limit.
    #[error("JSON nested deeper than {max} levels")]
    TooDeep {
        /// Effective limit.
        max: usize,
    },
    /// The top-level value has the wrong type.
    #[error("top-level JSON value must be {expected}")]
    WrongTopLevel {
        /// What was required.
        expected: &'static str,
    },
}

impl JsonError {
    /// The Matrix error code for a refusal of this kind.
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "M_TOO_LARGE",
            Self::NotJson { .. } => "M_NOT_JSON",
            Self::DuplicateKey { .. } | Self::TooDeep { .. } | Self::WrongTopLevel { .. } => {
                "M_BAD_JSON"
            }
        }
    }

    /// HTTP status for refusing a request with this error (413 for size, else 400).
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// Validates any JSON value (see [`validate_with`]).
pub fn validate(bytes: &[u8], limits: JsonLimits) -> Result<(), JsonError> {
    validate_with(bytes, limits, TopLevel::Any)
}

/// Validates a JSON body whose top level must be an object.
pub fn validate_object(bytes: &[u8], limits: JsonLimits) -> Result<(), JsonError> {
    validate_with(bytes, limits, TopLevel::Object)
}

/// Validates `bytes` as exactly one JSON value within `limits`, with no duplicate keys, whose
/// top level is `top`.
pub fn validate_with(bytes: &[u8], limits: JsonLimits, top: TopLevel) -> Result<(), JsonError> {
    if bytes.len() > limits.max_bytes {
        return Err(JsonError::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let max_depth = limits.effective_depth();
    let mut state = State {
        max_depth,
        keys: Vec::new(),
        failure: None,
        top,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = Node {
        st: &mut state,
        depth: 1,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Err(e) = result {
        return Err(match state.failure {
            Some(Failure::Duplicate { depth }) => JsonError::DuplicateKey {
                depth,
                line: e.line(),
                column: e.column(),
            },
            Some(Failure::TooDeep) => JsonError::TooDeep { max: max_depth },
            Some(Failure::WrongTop) => JsonError::WrongTopLevel {
                expected: top.expected(),
            },
            None => classify(&e, max_depth),
        });
    }
    if top == TopLevel::StatusPair {
        // Shape check on already validated input: exactly `[200, {…}]`.
        match serde_json::from_slice::<(u16, &RawValue)>(bytes) {
            Ok((200, obj)) if obj.get().starts_with('{') => {}
            _ => {
                return Err(JsonError::WrongTopLevel {
                    expected: top.expected(),
                })
            }
        }
    }
    Ok(())
}

impl TopLevel {
    fn expected(self) -> &'static str {
        match self {
            TopLevel::Any => "a JSON value",
            TopLevel::Object => "an object",
            TopLevel::StatusPair => "[200, {…}]",
        }
    }
}

fn classify(e: &serde_json::Error, max_depth: usize) -> JsonError {
    use serde_json::error::Category;
    // Defensive: serde_json's own recursion guard. Unreachable while the effective depth is
    // below 128, but never let it surface as a syntax error.
    if e.to_string().starts_with("recursion limit exceeded") {
        return JsonError::TooDeep { max: max_depth };
    }
    let reason = match e.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "invalid value",
        Category::Io => "read error",
    };
    JsonError::NotJson {
        reason,
        line: e.line(),
        column: e.column(),
    }
}

/// Keys of one object are compared linearly up to this count, then through a hash set.
const LINEAR_KEYS: usize = 16;

enum Failure {
    Duplicate { depth: usize },
    TooDeep,
    WrongTop,
}

struct State<'de> {
    max_depth: usize,
    /// Keys of all open objects, innermost last (each object truncates back on exit).
    keys: Vec<Cow<'de, str>>,
    failure: Option<Failure>,
    top: TopLevel,
}

/// Visits one value at `depth` (the depth its container would have).
struct Node<'s, 'de> {
    st: &'s mut State<'de>,
    depth: usize,
}

impl<'s, 'de> Node<'s, 'de> {
    fn fail<E: de::Error>(self, f: Failure) -> Result<(), E> {
        self.st.failure = Some(f);
        Err(E::custom("rejected"))
    }

    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.depth == 1 && self.st.top != TopLevel::Any {
            return self.fail(Failure::WrongTop);
        }
        Ok(())
    }

    /// Checks entering a container; `Err` stops before any recursion.
    fn enter<E: de::Error>(&mut self, is_object: bool) -> Result<(), E> {
        let wrong_top = self.depth == 1
            && match self.st.top {
                TopLevel::Any => false,
                TopLevel::Object => !is_object,
                TopLevel::StatusPair => is_object,
            };
        let failure = if wrong_top {
            Failure::WrongTop
        } else if self.depth > self.st.max_depth {
            Failure::TooDeep
        } else {
            return Ok(());
        };
        self.st.failure = Some(failure);
        Err(E::custom("rejected"))
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter(false)?;
        let depth = self.depth + 1;
        let st = self.st;
        while seq
            .next_element_seed(Node {
                st: &mut *st,
                depth,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter(true)?;
        let depth = self.depth;
        let st = self.st;
        let start = st.keys.len();
        let mut large: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let duplicate = match large.as_mut() {
                Some(set) => !set.insert(key),
                None => {
                    let dup = st.keys[start..].contains(&key);
                    st.keys.push(key);
                    if st.keys.len() - start > LINEAR_KEYS {
                        large = Some(st.keys.drain(start..).collect());
                    }
                    dup
                }
            };
            if duplicate {
                st.failure = Some(Failure::Duplicate { depth });
                return Err(de::Error::custom("rejected"));
            }
            map.next_value_seed(Node {
                st: &mut *st,
                depth: depth + 1,
            })?;
        }
        st.keys.truncate(start);
        Ok(())
    }
}

/// Deserializes an object key, borrowing it from the input unless it had escapes.
pub(crate) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(CowStrVisitor)
    }
}

/// Visitor producing a `Cow<str>` that borrows when the deserializer can lend the string.
pub(crate) struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> JsonLimits {
        JsonLimits::new(1 << 20, 32)
    }

    fn nested(depth: usize, open: &str, close: &str) -> String {
        let mut s = String::with_capacity(depth * 2 + 2);
        for _ in 0..depth {
            s.push_str(open);
        }
        s.push('1');
        for _ in 0..depth {
            s.push_str(close);
        }
        s
    }

    #[test]
    fn accepts_valid_json() {
        for ok in [
            r#"{}"#,
            r#"{"a":1,"b":[1,2,{"a":1}],"c":{"a":{"a":null}}}"#,
            "  {\"ä\": \"Grüße aus München\", \"n\": -1.5e3, \"t\": true}\n",
            r#"{"a":1,"A":2,"a ":3}"#,
            r#"{"x":{"k":1},"y":{"k":1}}"#,
        ] {
            assert_eq!(validate_object(ok.as_bytes(), lim()), Ok(()), "{ok}");
        }
        assert_eq!(validate(b"[1,2]", lim()), Ok(()));
        assert_eq!(validate(b"\"s\"", lim()), Ok(()));
    }

    #[test]
    fn rejects_too_large_before_parsing() {
        let body = vec![b'x'; 101];
        let e = validate(&body, JsonLimits::new(100, 10)).unwrap_err();
        assert_eq!(
            e,
            JsonError::TooLarge {
                size: 101,
                max: 100
            }
        );
        assert_eq!(e.errcode(), "M_TOO_LARGE");
        assert_eq!(e.status(), 413);
        assert_eq!(validate(b"{\"a\":1}", JsonLimits::new(7, 10)), Ok(()));
    }

    #[test]
    fn rejects_not_json() {
        for bad in [
            &b""[..],
            b"   ",
            b"{\"a\":1",
            b"{\"a\":1}}",
            b"{\"a\":1} x",
            b"{\"a\":1}{}",
            b"{'a':1}",
            b"{\"a\":01}",
            b"{\"a\":NaN}",
            b"{\"a\":\"\xff\xfe\"}",
            b"{\"\xc3\":1}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":1e400}",
            b"\xef\xbb\xbf{}",
            b"{\"a\":\"tab\there\"}",
        ] {
            let e = validate(bad, lim()).unwrap_err();
            assert!(
                matches!(e, JsonError::NotJson { .. }),
                "{:?} gave {e:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(e.errcode(), "M_NOT_JSON");
        }
    }

    #[test]
    fn rejects_duplicate_keys_at_any_level_after_unescaping() {
        let cases: &[(&str, usize)] = &[
            (r#"{"a":1,"a":2}"#, 1),
            (r#"{"a":1,"\u0061":2}"#, 1),
            (r#"{"\u00e4":1,"ä":2}"#, 1),
            (r#"{"x":{"b":1,"c":2,"b":3}}"#, 2),
            (r#"{"x":[{"k":1},{"k":1,"k":2}]}"#, 3),
            (r#"[{"a":1,"a":1}]"#, 2),
        ];
        for (bad, depth) in cases {
            let e = validate(bad.as_bytes(), lim()).unwrap_err();
            assert!(
                matches!(e, JsonError::DuplicateKey { depth: d, .. } if d == *depth),
                "{bad} gave {e:?}"
            );
            assert_eq!(e.errcode(), "M_BAD_JSON");
            assert!(!e.to_string().contains('a') || !e.to_string().contains("\"a\""));
        }
    }

    #[test]
    fn duplicate_keys_in_large_objects_use_the_hash_path() {
        let mut s = String::from("{");
        for i in 0..1000 {
            s.push_str(&format!("\"k{i}\":{i},"));
        }
        s.push_str("\"k1\":0}");
        assert!(matches!(
            validate(s.as_bytes(), lim()),
            Err(JsonError::DuplicateKey { .. })
        ));
        // The escaped form of a key seen before the switch to the set is still found.
        let s2 = s.replace("\"k1\":0}", "\"\\u006b1\":0}");
        assert!(matches!(
            validate(s2.as_bytes(), lim()),
            Err(JsonError::DuplicateKey { .. })
        ));
        let ok = s.replace(",\"k1\":0}", "}");
        assert_eq!(validate(ok.as_bytes(), lim()), Ok(()));
    }

    #[test]
    fn depth_limit() {
        let l = JsonLimits::new(1 << 20, 5);
        assert_eq!(validate(nested(5, "[", "]").as_bytes(), l), Ok(()));
        assert_eq!(
            validate(nested(6, "[", "]").as_bytes(), l),
            Err(JsonError::TooDeep { max: 5 })
        );
        assert_eq!(validate(nested(5, "{\"a\":", "}").as_bytes(), l), Ok(()));
        assert_eq!(
            validate(nested(6, "{\"a\":", "}").as_bytes(), l),
            Err(JsonError::TooDeep { max: 5 })
        );
        // Depth 500 with a large configured limit: our error, not serde_json's.
        let big = JsonLimits::new(1 << 20, 100_000);
        let e = validate(nested(500, "[", "]").as_bytes(), big).unwrap_err();
        assert_eq!(
            e,
            JsonError::TooDeep {
                max: JsonLimits::MAX_SUPPORTED_DEPTH
            }
        );
        assert_eq!(e.errcode(), "M_BAD_JSON");
        assert_eq!(validate(nested(100, "[", "]").as_bytes(), big), Ok(()));
        // Truncated deep input is still reported as too deep (checked before the end).
        let truncated = "[".repeat(500);
        assert!(matches!(
            validate(truncated.as_bytes(), big),
            Err(JsonError::TooDeep { .. })
        ));
    }

    #[test]
    fn depth_10000_does_not_overflow_a_small_stack() {
        // 256 KiB of stack: far less than a tokio worker's 2 MiB.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let l = JsonLimits::new(1 << 20, usize::MAX);
                let arrays = validate(nested(10_000, "[", "]").as_bytes(), l);
                let objects = validate(nested(10_000, "{\"a\":", "}").as_bytes(), l);
                let mixed = validate(nested(100, "{\"a\":[", "]}").as_bytes(), l);
                (arrays, objects, mixed)
            })
            .unwrap();
        let (arrays, objects, mixed) = handle.join().expect("validator overflowed the stack");
        assert_eq!(arrays, Err(JsonError::TooDeep { max: 100 }));
        assert_eq!(objects, Err(JsonError::TooDeep { max: 100 }));
        assert_eq!(mixed, Err(JsonError::TooDeep { max: 100 }), "200 levels");
    }

    #[test]
    fn top_level_shapes() {
        for bad in ["[]", "1", "\"x\"", "null", "true"] {
            assert_eq!(
                validate_object(bad.as_bytes(), lim()),
                Err(JsonError::WrongTopLevel {
                    expected: "an object"
                }),
                "{bad}"
            );
            assert_eq!(validate(bad.as_bytes(), lim()), Ok(()));
        }
        let pair = |s: &str| validate_with(s.as_bytes(), lim(), TopLevel::StatusPair);
        assert_eq!(pair(r#"[200, {"event": {}}]"#), Ok(()));
        assert_eq!(pair("[200,{}]"), Ok(()));
        for bad in [
            "{}",
            "[200]",
            "[200,{},1]",
            "[201,{}]",
            "[\"200\",{}]",
            "[200,[]]",
            "7",
        ] {
            assert!(
                matches!(pair(bad), Err(JsonError::WrongTopLevel { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            pair(r#"[200,{"a":1,"a":1}]"#),
            Err(JsonError::DuplicateKey { .. })
        ));
    }

    #[test]
    fn messages_do_not_leak_payload() {
        let secret = "GEHEIM-4711";
        for body in [
            format!("{{\"{secret}\":1,\"{secret}\":2}}"),
            format!("{{\"a\":\"{secret}\" x}}"),
            format!("[\"{secret}\""),
        ] {
            let e = validate(body.as_bytes(), lim()).unwrap_err();
            assert!(!e.to_string().contains(secret), "{e}");
        }
    }
}
