//! Typed view of a `PUT /_matrix/federation/v1/send/{txnId}` transaction body.
//!
//! # Design notes
//!
//! * The view keeps every PDU and EDU as `&RawValue` borrowed from the request body (as ruma's
//!   `send_transaction_message` keeps `Vec<Box<RawJsonValue>>`): the bytes are forwarded as
//!   they came unless policy changes something. Per-PDU/EDU views are built on demand
//!   ([`Transaction::pdu`], [`Transaction::pdu_views`]).
//! * Limits from the spec: ≤ 50 PDUs, ≤ 100 EDUs, each PDU ≤ 65 536 bytes. The PDU size is
//!   measured on its raw JSON bytes as received (Synapse measures the canonical form, which is
//!   never longer for well-formed senders, so this is at least as strict). Array lengths are
//!   counted without keeping elements beyond the limit, so an oversized array cannot make the
//!   guard allocate in proportion to it.
//! * `pdus` and `edus` are optional (Synapse's receiver treats both as optional and some
//!   senders omit `pdus` in EDU-only transactions); `origin` and `origin_server_ts` are
//!   required as in the spec. The caller must check that `origin` equals the X-Matrix origin.
//! * Errors carry the index of the offending PDU/EDU and the field, never payload.
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::json::KeySeed;
use super::pdu::{int_field, required, str_field, BoundedArray, EduView, EventError, PduView};

/// Limits for one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnLimits {
    /// Maximum number of PDUs (spec: 50).
    pub max_pdus: usize,
    /// Maximum number of EDUs (spec: 100).
    pub max_edus: usize,
    /// Maximum size of one PDU's raw JSON in bytes (spec: 65 536).
    pub max_pdu_bytes: usize,
}

impl TxnLimits {
    /// The spec's limits.
    pub const SPEC: Self = Self {
        max_pdus: 50,
        max_edus: 100,
        max_pdu_bytes: 65_536,
    };
}

impl Default for TxnLimits {
    fn default() -> Self {
        Self::SPEC
    }
}

/// A transaction body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// The transaction object itself is malformed (`origin`, `origin_server_ts`, `pdus`,
    /// `edus` missing or of the wrong type, not an object, not JSON).
    #[error("transaction: {0}")]
    Body(#[source] EventError),
    /// More PDUs than allowed.
    #[error("transaction has {count} PDUs, more than the limit of {max}")]
    TooManyPdus {
        /// Number of PDUs in the body.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// More EDUs than allowed.
    #[error("transaction has {count} EDUs, more than the limit of {max}")]
    TooManyEdus {
        /// Number of EDUs in the body.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// One PDU is too large.
    #[error("PDU {index} is {size} bytes, more than the limit of {max}")]
    PduTooLarge {
        /// Index in `pdus`.
        index: usize,
        /// Its raw size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// One PDU is malformed.
    #[error("PDU {index}: {source}")]
    Pdu {
        /// Index in `pdus`.
        index: usize,
        /// What is wrong.
        #[source]
        source: EventError,
    },
    /// One EDU is malformed.
    #[error("EDU {index}: {source}")]
    Edu {
        /// Index in `edus`.
        index: usize,
        /// What is wrong.
        #[source]
        source: EventError,
    },
}

impl TxnError {
    /// The Matrix error code: `M_TOO_LARGE` for the limits, `M_NOT_JSON` if the body is not
    /// JSON, else `M_BAD_JSON`.
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::TooManyPdus { .. } | Self::TooManyEdus { .. } | Self::PduTooLarge { .. } => {
                "M_TOO_LARGE"
            }
            Self::Body(e) | Self::Pdu { source: e, .. } | Self::Edu { source: e, .. } => {
                e.errcode()
            }
        }
    }
}

/// View of a `/send` body.
#[derive(Debug, Clone)]
pub struct Transaction<'a> {
    /// `origin`: the sending server (must equal the X-Matrix origin; checked by the caller).
    pub origin: Cow<'a, str>,
    /// `origin_server_ts`.
    pub origin_server_ts: i64,
    /// The PDUs, raw, in order.
    pub pdus: Vec<&'a RawValue>,
    /// The EDUs, raw, in order.
    pub edus: Vec<&'a RawValue>,
}

impl<'a> Transaction<'a> {
    /// Parses a `/send` body (normally after [`crate::federation::json::validate_object`]) and
    /// applies the count and PDU size limits. Does not build per-PDU views.
    pub fn parse(body: &'a [u8], limits: &TxnLimits) -> Result<Self, TxnError> {
        Self::parse_from(serde_json::Deserializer::from_slice(body), body, limits)
    }

    /// As [`Self::parse`], on a raw value.
    pub fn parse_raw(raw: &'a RawValue, limits: &TxnLimits) -> Result<Self, TxnError> {
        let text = raw.get();
        Self::parse_from(
            serde_json::Deserializer::from_str(text),
            text.as_bytes(),
            limits,
        )
    }

    /// One pass over the body: the top-level members are visited once, the `pdus`/`edus`
    /// arrays are split into raw elements while they are read.
    fn parse_from<R: serde_json::de::Read<'a>>(
        mut de: serde_json::Deserializer<R>,
        bytes: &[u8],
        limits: &TxnLimits,
    ) -> Result<Self, TxnError> {
        let body_err = TxnError::Body;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(body_err(
                match serde_json::from_slice::<IgnoredAny>(bytes) {
                    Ok(_) => EventError::NotObject,
                    Err(_) => EventError::NotJson,
                },
            ));
        }
        let failure = Cell::new(None);
        let parts = de
            .deserialize_map(TxnVisitor {
                limits,
                failure: &failure,
            })
            .and_then(|p| de.end().map(|()| p));
        let parts = match parts {
            Ok(p) => p,
            Err(_) => return Err(body_err(failure.take().unwrap_or(EventError::NotJson))),
        };
        let Parts {
            origin,
            ts,
            pdus,
            edus,
        } = parts;
        let origin = str_field(
            "origin",
            required("origin", origin).map_err(TxnError::Body)?,
        )
        .map_err(TxnError::Body)?;
        let origin_server_ts = int_field(
            "origin_server_ts",
            required("origin_server_ts", ts).map_err(TxnError::Body)?,
        )
        .map_err(TxnError::Body)?;

        let pdus = match pdus {
            Some((_, count)) if count > limits.max_pdus => {
                return Err(TxnError::TooManyPdus {
                    count,
                    max: limits.max_pdus,
                })
            }
            Some((items, _)) => items,
            None => Vec::new(),
        };
        let edus = match edus {
            Some((_, count)) if count > limits.max_edus => {
                return Err(TxnError::TooManyEdus {
                    count,
                    max: limits.max_edus,
                })
            }
            Some((items, _)) => items,
            None => Vec::new(),
        };
        for (index, pdu) in pdus.iter().enumerate() {
            let size = pdu.get().len();
            if size > limits.max_pdu_bytes {
                return Err(TxnError::PduTooLarge {
                    index,
                    size,
                    max: limits.max_pdu_bytes,
                });
            }
        }
        Ok(Self {
            origin,
            origin_server_ts,
            pdus,
            edus,
        })
    }

    /// View of PDU `index` (panics if out of range).
    pub fn pdu(&self, index: usize) -> Result<PduView<'a>, TxnError> {
        PduView::parse(self.pdus[index]).map_err(|source| TxnError::Pdu { index, source })
    }

    /// View of EDU `index` (panics if out of range).
    pub fn edu(&self, index: usize) -> Result<EduView<'a>, TxnError> {
        EduView::parse(self.edus[index]).map_err(|source| TxnError::Edu { index, source })
    }

    /// Views of all PDUs, in order.
    pub fn pdu_views(&self) -> impl Iterator<Item = Result<PduView<'a>, TxnError>> + '_ {
        (0..self.pdus.len()).map(|i| self.pdu(i))
    }

    /// Views of all EDUs, in order.
    pub fn edu_views(&self) -> impl Iterator<Item = Result<EduView<'a>, TxnError>> + '_ {
        (0..self.edus.len()).map(|i| self.edu(i))
    }
}

type RawArray<'a> = (Vec<&'a RawValue>, usize);

/// Top-level members of a transaction, as read.
struct Parts<'a> {
    origin: Option<&'a RawValue>,
    ts: Option<&'a RawValue>,
    pdus: Option<RawArray<'a>>,
    edus: Option<RawArray<'a>>,
}

struct TxnVisitor<'c> {
    limits: &'c TxnLimits,
    failure: &'c Cell<Option<EventError>>,
}

impl TxnVisitor<'_> {
    fn fail<T, E: de::Error>(&self, e: EventError) -> Result<T, E> {
        self.failure.set(Some(e));
        Err(E::custom("rejected"))
    }

    fn array<'de, A: MapAccess<'de>>(
        &self,
        map: &mut A,
        slot: &mut Option<RawArray<'de>>,
        field: &'static str,
        keep: usize,
    ) -> Result<(), A::Error> {
        if slot.is_some() {
            return self.fail(EventError::Duplicate(field));
        }
        let not_array = Cell::new(false);
        match map.next_value_seed(BoundedArray {
            keep,
            not_array: &not_array,
        }) {
            Ok(v) => {
                *slot = Some(v);
                Ok(())
            }
            Err(_) if not_array.get() => self.fail(EventError::WrongType {
                field,
                expected: "an array",
            }),
            Err(e) => Err(e),
        }
    }
}

impl<'de> Visitor<'de> for TxnVisitor<'_> {
    type Value = Parts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a transaction object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut p = Parts {
            origin: None,
            ts: None,
            pdus: None,
            edus: None,
        };
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match &*key {
                "origin" => {
                    let v: &'de RawValue = map.next_value()?;
                    if p.origin.replace(v).is_some() {
                        return self.fail(EventError::Duplicate("origin"));
                    }
                }
                "origin_server_ts" => {
                    let v: &'de RawValue = map.next_value()?;
                    if p.ts.replace(v).is_some() {
                        return self.fail(EventError::Duplicate("origin_server_ts"));
                    }
                }
                "pdus" => self.array(&mut map, &mut p.pdus, "pdus", self.limits.max_pdus)?,
                "edus" => self.array(&mut map, &mut p.edus, "edus", self.limits.max_edus)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu(body: &str) -> String {
        format!(
            r#"{{"auth_events":[],"content":{{"body":{},"msgtype":"m.text"}},"depth":3,"hashes":{{"sha256":"h"}},"origin_server_ts":1712345678901,"prev_events":[],"room_id":"!r:example.org","sender":"@a:example.org","signatures":{{}},"type":"m.room.message"}}"#,
            serde_json::to_string(body).unwrap()
        )
    }

    fn txn(pdus: &[String], edus: &[&str]) -> String {
        format!(
            r#"{{"origin":"example.org","origin_server_ts":1712345678901,"pdus":[{}],"edus":[{}]}}"#,
            pdus.join(","),
            edus.join(",")
        )
    }

    const TYPING: &str = r#"{"edu_type":"m.typing","content":{"room_id":"!r:example.org","user_id":"@a:example.org","typing":true}}"#;

    #[test]
    fn parses_and_views() {
        let body = txn(&[pdu("Hallo Welt, schöne Grüße"), pdu("zwei")], &[TYPING]);
        let t = Transaction::parse(body.as_bytes(), &TxnLimits::SPEC).unwrap();
        assert_eq!(t.origin, "example.org");
        assert_eq!(t.origin_server_ts, 1712345678901);
        assert_eq!(t.pdus.len(), 2);
        assert_eq!(t.edus.len(), 1);
        let views: Vec<_> = t.pdu_views().collect::<Result<_, _>>().unwrap();
        assert_eq!(views[0].event_type, "m.room.message");
        assert!(views[0].content.get().contains("schöne"));
        assert_eq!(t.edu(0).unwrap().edu_type, "m.typing");
        // The raw PDU is the exact byte range of the body.
        assert!(body.contains(t.pdus[1].get()));
    }

    #[test]
    fn pdus_and_edus_are_optional_origin_is_not() {
        let t = Transaction::parse(br#"{"origin":"b","origin_server_ts":1}"#, &TxnLimits::SPEC)
            .unwrap();
        assert!(t.pdus.is_empty() && t.edus.is_empty());
        let e = Transaction::parse(br#"{"origin_server_ts":1,"pdus":[]}"#, &TxnLimits::SPEC)
            .unwrap_err();
        assert_eq!(e, TxnError::Body(EventError::Missing("origin")));
        assert_eq!(e.errcode(), "M_BAD_JSON");
        let e = Transaction::parse(
            br#"{"origin":"b","origin_server_ts":"1"}"#,
            &TxnLimits::SPEC,
        )
        .unwrap_err();
        assert_eq!(
            e,
            TxnError::Body(EventError::WrongType {
                field: "origin_server_ts",
                expected: "an integer"
            })
        );
        let e = Transaction::parse(
            br#"{"origin":"b","origin_server_ts":1,"pdus":{}}"#,
            &TxnLimits::SPEC,
        )
        .unwrap_err();
        assert_eq!(
            e,
            TxnError::Body(EventError::WrongType {
                field: "pdus",
                expected: "an array"
            })
        );
        let e = Transaction::parse(
            br#"{"origin":"b","origin":"c","origin_server_ts":1}"#,
            &TxnLimits::SPEC,
        )
        .unwrap_err();
        assert_eq!(e, TxnError::Body(EventError::Duplicate("origin")));
        let e = Transaction::parse(
            br#"{"origin":"b","origin_server_ts":1,"pdus":[],"pdus":[]}"#,
            &TxnLimits::SPEC,
        )
        .unwrap_err();
        assert_eq!(e, TxnError::Body(EventError::Duplicate("pdus")));
        let e = Transaction::parse(
            br#"{"origin":"b","origin_server_ts":1,"edus":"x"}"#,
            &TxnLimits::SPEC,
        )
        .unwrap_err();
        assert_eq!(
            e,
            TxnError::Body(EventError::WrongType {
                field: "edus",
                expected: "an array"
            })
        );
        let e = Transaction::parse(
            br#"{"origin":"b","origin_server_ts":1} x"#,
            &TxnLimits::SPEC,
        )
        .unwrap_err();
        assert_eq!(e, TxnError::Body(EventError::NotJson));
        let e = Transaction::parse(
            br#"{"origin":"b","origin_server_ts":1,"pdus":[1,}"#,
            &TxnLimits::SPEC,
        )
        .unwrap_err();
        assert_eq!(e, TxnError::Body(EventError::NotJson));
        // parse_raw agrees with parse.
        let raw: &RawValue =
            serde_json::from_str(r#"{"origin":"b","origin_server_ts":1,"pdus":[{}]}"#).unwrap();
        assert_eq!(
            Transaction::parse_raw(raw, &TxnLimits::SPEC)
                .unwrap()
                .pdus
                .len(),
            1
        );
        let e = Transaction::parse(b"[]", &TxnLimits::SPEC).unwrap_err();
        assert_eq!(e, TxnError::Body(EventError::NotObject));
        let e = Transaction::parse(b"{\"origin\":", &TxnLimits::SPEC).unwrap_err();
        assert_eq!(e.errcode(), "M_NOT_JSON");
    }

    #[test]
    fn limits() {
        let fifty: Vec<_> = (0..50).map(|i| pdu(&format!("n{i}"))).collect();
        assert!(Transaction::parse(txn(&fifty, &[]).as_bytes(), &TxnLimits::SPEC).is_ok());
        let fifty_one: Vec<_> = (0..51).map(|i| pdu(&format!("n{i}"))).collect();
        let e = Transaction::parse(txn(&fifty_one, &[]).as_bytes(), &TxnLimits::SPEC).unwrap_err();
        assert_eq!(e, TxnError::TooManyPdus { count: 51, max: 50 });
        assert_eq!(e.errcode(), "M_TOO_LARGE");

        let edus = vec![TYPING; 101];
        let e = Transaction::parse(txn(&[], &edus).as_bytes(), &TxnLimits::SPEC).unwrap_err();
        assert_eq!(
            e,
            TxnError::TooManyEdus {
                count: 101,
                max: 100
            }
        );
        let edus = vec![TYPING; 100];
        assert!(Transaction::parse(txn(&[], &edus).as_bytes(), &TxnLimits::SPEC).is_ok());

        // A 70 KB PDU.
        let big = pdu(&"ä".repeat(35_000));
        let e = Transaction::parse(
            txn(&[pdu("a"), big.clone()], &[]).as_bytes(),
            &TxnLimits::SPEC,
        )
        .unwrap_err();
        assert!(
            matches!(e, TxnError::PduTooLarge { index: 1, size, max: 65_536 } if size == big.len())
        );
        assert_eq!(e.errcode(), "M_TOO_LARGE");
        // Exactly at the limit passes.
        let base = pdu("").len();
        let exact = pdu(&"x".repeat(65_536 - base));
        assert_eq!(exact.len(), 65_536);
        assert!(Transaction::parse(txn(&[exact], &[]).as_bytes(), &TxnLimits::SPEC).is_ok());
    }

    #[test]
    fn huge_arrays_are_counted_not_kept() {
        let many = format!(
            r#"{{"origin":"b","origin_server_ts":1,"pdus":[{}]}}"#,
            vec!["1"; 100_000].join(",")
        );
        let e = Transaction::parse(many.as_bytes(), &TxnLimits::SPEC).unwrap_err();
        assert_eq!(
            e,
            TxnError::TooManyPdus {
                count: 100_000,
                max: 50
            }
        );
    }

    #[test]
    fn per_pdu_errors_carry_the_index() {
        let body = txn(
            &[pdu("ok"), r#"{"type":"m.room.message"}"#.to_owned()],
            &[r#"{"edu_type":1,"content":{}}"#],
        );
        let t = Transaction::parse(body.as_bytes(), &TxnLimits::SPEC).unwrap();
        assert!(t.pdu(0).is_ok());
        let e = t.pdu(1).unwrap_err();
        assert!(matches!(
            e,
            TxnError::Pdu {
                index: 1,
                source: EventError::Missing(_)
            }
        ));
        assert!(e.to_string().starts_with("PDU 1: missing field"));
        let e = t.edu(0).unwrap_err();
        assert_eq!(
            e,
            TxnError::Edu {
                index: 0,
                source: EventError::WrongType {
                    field: "edu_type",
                    expected: "a string"
                }
            }
        );
        let errs: Vec<_> = t.pdu_views().map(|r| r.is_ok()).collect();
        assert_eq!(errs, [true, false]);
    }
}
