//! `grenzwacht audit verify`: checks a log directory record by record.
//!
//! The rules, in order, for every line of every segment (oldest segment first):
//! 1. the line ends with `\n` (a last line without one is a cut or torn tail);
//! 2. it is a JSON object with exactly the envelope keys, `v` = 1, a known `kind`, a valid
//!    `ts`, a 64-hex `prev` and `hash`, an object `data`;
//! 3. it is byte-for-byte its own canonical form (a flipped byte that still parses fails here
//!    or at 4);
//! 4. `hash` is the SHA-256 of the canonical form without `hash`;
//! 5. `seq` is one more than the previous record's (a deleted or swapped record fails here),
//!    and the first record of a segment has the seq its file name announces;
//! 6. `prev` is the previous record's `hash`;
//! 7. a checkpoint's `sig` verifies with the audit public key (if one is given) over the
//!    canonical form without `hash` and `data.sig`, and its `key_id` is the key's.
//!
//! The first record present must be seq 0 with 64 zeros as `prev`, or seq N+1 with `prev` =
//! H where (N, H) is the `retired` mark of a checkpoint in the log whose signature verified:
//! segments deleted by retention are attested, any other missing beginning is an attack.
//!
//! A cut tail (whole records removed at the end) leaves a valid chain; it is detected against
//! an **anchor**: a checkpoint kept elsewhere (the syslog collector's copy, or any saved
//! record line). With `--anchor FILE` (JSON lines or syslog lines; the last checkpoint in the
//! file counts) the log must contain a record with the anchor's seq and the same `hash`;
//! a log ending before it fails with "tail cut". Without an anchor, records after the last
//! checkpoint are reported as not attested (a live log always has some) but do not fail.
use std::collections::HashSet;
use std::path::Path;

use ring::signature::{UnparsedPublicKey, ED25519};
use serde_json::{Map, Value};

use super::format::{self, GENESIS_PREV};
use super::record::Kind;
use super::{segment, AuditError};

/// The audit public key checkpoints are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// `ed25519:<version>`.
    pub key_id: String,
    pub key: [u8; 32],
}

impl PublicKey {
    /// Reads a public key file (`ed25519 <version> <base64 public key>`, as written by
    /// `grenzwacht keys generate --kind audit` next to the key).
    pub fn from_file(path: &Path) -> Result<PublicKey, AuditError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuditError::io(format!("reading {}", path.display()), e))?;
        Self::parse(&text).ok_or_else(|| {
            AuditError::Invalid(format!(
                "{}: expected `ed25519 <version> <base64 public key>`",
                path.display()
            ))
        })
    }

    pub fn parse(text: &str) -> Option<PublicKey> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        let mut parts = line.split_whitespace();
        let (alg, version, b64) = (parts.next()?, parts.next()?, parts.next()?);
        if alg != "ed25519" || parts.next().is_some() {
            return None;
        }
        let key = crate::keys::decode_verify_key(b64).ok()?;
        Some(PublicKey {
            key_id: format!("ed25519:{version}"),
            key,
        })
    }

    /// The public half of a signing key file.
    pub fn from_signing_key_file(path: &Path) -> Result<PublicKey, AuditError> {
        let k = crate::keys::SigningKey::from_synapse_file(path)?;
        Ok(PublicKey {
            key_id: k.key_id(),
            key: k.public_key(),
        })
    }

    /// The public key file text.
    pub fn to_file_string(&self) -> String {
        use base64::Engine as _;
        let version = self.key_id.trim_start_matches("ed25519:");
        format!(
            "ed25519 {version} {}\n",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.key)
        )
    }
}

/// The first bad record and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The seq expected at that position (the record's own seq if it could be read).
    pub seq: u64,
    /// Record number in the log (1-based, over all segments present).
    pub number: usize,
    pub segment: String,
    /// 1-based line in the segment.
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record seq {} (record #{} in the log, {} line {}): {}",
            self.seq, self.number, self.segment, self.line, self.reason
        )
    }
}

/// What an intact log looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: usize,
    pub segments: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    pub checkpoints: usize,
    /// Whether checkpoint signatures were checked (a key was given).
    pub signatures_checked: bool,
    /// Records after the last checkpoint (not attested by a signature).
    pub unattested_tail: usize,
    /// The seq of the anchor checked, if any.
    pub anchor_seq: Option<u64>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Intact(Summary),
    Bad(BadRecord),
}

/// A checkpoint kept outside the log (seq and hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

impl Anchor {
    /// The last checkpoint record in a file of JSON lines or syslog lines (its signature is
    /// checked with `key`, if given).
    pub fn from_file(path: &Path, key: Option<&PublicKey>) -> Result<Anchor, AuditError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuditError::io(format!("reading {}", path.display()), e))?;
        for line in text.lines().rev() {
            let Some(start) = line.find('{') else {
                continue;
            };
            let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&line[start..]) else {
                continue;
            };
            if m.get("kind").and_then(Value::as_str) != Some("checkpoint") {
                continue;
            }
            let (Some(seq), Some(hash)) = (
                m.get("seq").and_then(Value::as_u64),
                m.get("hash").and_then(Value::as_str),
            ) else {
                continue;
            };
            if format::sha256_hex(format::hashed_form(&m).as_bytes()) != hash {
                return Err(AuditError::Invalid(format!(
                    "{}: the anchor checkpoint's hash does not match its content",
                    path.display()
                )));
            }
            if let Some(k) = key {
                check_signature(&m, k).map_err(|r| {
                    AuditError::Invalid(format!("{}: anchor checkpoint: {r}", path.display()))
                })?;
            }
            return Ok(Anchor {
                seq,
                hash: hash.to_owned(),
            });
        }
        Err(AuditError::Invalid(format!(
            "{}: no checkpoint record found",
            path.display()
        )))
    }
}

fn check_signature(m: &Map<String, Value>, key: &PublicKey) -> Result<(), String> {
    use base64::Engine as _;
    let data = m.get("data").and_then(Value::as_object);
    let key_id = data.and_then(|d| d.get("key_id")).and_then(Value::as_str);
    if key_id != Some(key.key_id.as_str()) {
        return Err(format!(
            "checkpoint signed with key {}, expected {}",
            key_id.unwrap_or("(none)"),
            key.key_id
        ));
    }
    let sig = data
        .and_then(|d| d.get("sig"))
        .and_then(Value::as_str)
        .ok_or("checkpoint without signature")?;
    let sig = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(sig.trim_end_matches('='))
        .map_err(|_| "checkpoint signature is not base64")?;
    UnparsedPublicKey::new(&ED25519, key.key)
        .verify(format::signed_form(m).as_bytes(), &sig)
        .map_err(|_| "checkpoint signature does not verify with the audit key".to_string())
}

/// Verifies the log in `dir`. `Err` only when the directory cannot be read.
pub fn verify(
    dir: &Path,
    key: Option<&PublicKey>,
    anchor: Option<&Anchor>,
) -> Result<Outcome, AuditError> {
    // One segment in memory at a time.
    let files = segment::list(dir)?;
    let mut number = 0usize;
    let mut last_pos = (String::new(), 0usize);
    let mut prev_hash: Option<String> = None;
    let mut expected: Option<u64> = None;
    let mut first: Option<(u64, String, String, usize)> = None;
    let mut floors: HashSet<(u64, String)> = HashSet::new();
    let mut checkpoints = 0;
    let mut since_checkpoint = 0;
    let mut last_segment = String::new();
    let mut anchor_found = false;
    let mut last_seq = 0;
    for file in &files {
        for l in segment::read_segment(file)?.iter() {
            number += 1;
            last_pos = (l.segment.clone(), l.line);
            let new_segment = l.segment != last_segment;
            last_segment.clone_from(&l.segment);
            let bad = |seq: u64, reason: String| {
                Ok(Outcome::Bad(BadRecord {
                    seq,
                    number,
                    segment: l.segment.clone(),
                    line: l.line,
                    reason,
                }))
            };
            let exp = expected.unwrap_or(0);
            if !l.complete {
                return bad(
                    exp,
                    "truncated record (no newline at the end of the segment)".into(),
                );
            }
            let m = match serde_json::from_str::<Value>(&l.text) {
                Ok(Value::Object(m)) => m,
                _ => return bad(exp, "not a JSON object".into()),
            };
            let seq = match m.get("seq").and_then(Value::as_u64) {
                Some(s) => s,
                None => return bad(exp, "no integer `seq`".into()),
            };
            let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
            keys.sort_unstable();
            if keys != format::ENVELOPE_KEYS {
                return bad(
                    seq,
                    format!(
                        "envelope keys are {keys:?}, expected {:?}",
                        format::ENVELOPE_KEYS
                    ),
                );
            }
            if m.get("v").and_then(Value::as_u64) != Some(format::FORMAT_VERSION) {
                return bad(seq, "unsupported format version `v`".into());
            }
            let kind = match m
                .get("kind")
                .and_then(Value::as_str)
                .map(|k| (k, Kind::parse(k)))
            {
                Some((_, Some(k))) => k,
                Some((k, None)) => return bad(seq, format!("unknown kind `{k}`")),
                None => return bad(seq, "`kind` is not a string".into()),
            };
            let ts_ok = m
                .get("ts")
                .and_then(Value::as_str)
                .and_then(format::parse_rfc3339_ms)
                .is_some();
            if !ts_ok {
                return bad(seq, "`ts` is not an RFC 3339 time".into());
            }
            if !m.get("data").is_some_and(Value::is_object) {
                return bad(seq, "`data` is not an object".into());
            }
            let hash = m.get("hash").and_then(Value::as_str).unwrap_or_default();
            let prev = m.get("prev").and_then(Value::as_str).unwrap_or_default();
            if !format::is_hash(hash) || !format::is_hash(prev) {
                return bad(
                    seq,
                    "`hash` or `prev` is not 64 lower-case hex digits".into(),
                );
            }
            if format::canonical(&Value::Object(m.clone())) != l.text {
                return bad(seq, "not in canonical form (the line was altered)".into());
            }
            if format::sha256_hex(format::hashed_form(&m).as_bytes()) != hash {
                return bad(
                    seq,
                    "hash does not match the record (the record was altered)".into(),
                );
            }
            match expected {
                Some(e) if seq != e => {
                    return bad(
                        e,
                        format!(
                    "found seq {seq} where seq {e} belongs (a record is missing or out of order)"
                ),
                    )
                }
                _ => {}
            }
            if new_segment {
                let announced = segment::parse_name(&l.segment);
                if announced != Some(seq) {
                    return bad(seq, format!("segment {} starts with seq {seq}", l.segment));
                }
            }
            match &prev_hash {
                Some(p) if p != prev => {
                    return bad(
                        seq,
                        "`prev` is not the previous record's hash (chain broken)".into(),
                    )
                }
                None => first = Some((seq, prev.to_owned(), l.segment.clone(), l.line)),
                _ => {}
            }
            if kind == Kind::Checkpoint {
                if let Some(k) = key {
                    if let Err(r) = check_signature(&m, k) {
                        return bad(seq, r);
                    }
                }
                checkpoints += 1;
                since_checkpoint = 0;
                if let Some(r) = m.get("data").and_then(|d| d.get("retired")) {
                    if let (Some(s), Some(h)) = (
                        r.get("seq").and_then(Value::as_u64),
                        r.get("hash").and_then(Value::as_str),
                    ) {
                        floors.insert((s, h.to_owned()));
                    }
                }
            } else {
                since_checkpoint += 1;
            }
            if let Some(a) = anchor {
                if a.seq == seq {
                    if a.hash != hash {
                        return bad(seq, "differs from the anchor checkpoint".into());
                    }
                    anchor_found = true;
                }
            }
            prev_hash = Some(hash.to_owned());
            expected = Some(seq + 1);
            last_seq = seq;
        }
    }
    if number == 0 {
        return Ok(Outcome::Bad(BadRecord {
            seq: 0,
            number: 0,
            segment: files.first().map(|f| f.name.clone()).unwrap_or_default(),
            line: 0,
            reason: "no records in the directory".into(),
        }));
    }
    let (first_seq, first_prev, seg, line) = first.unwrap_or_default();
    // Without a key the marks are taken as they are (the CLI says so).
    let attested = if first_seq == 0 {
        first_prev == GENESIS_PREV
    } else {
        floors.contains(&(first_seq - 1, first_prev.clone()))
    };
    if !attested {
        return Ok(Outcome::Bad(BadRecord {
            seq: first_seq,
            number: 1,
            segment: seg,
            line,
            reason: if first_seq == 0 {
                "the first record does not start the chain".into()
            } else {
                format!(
                    "records before seq {first_seq} are missing and no checkpoint attests their deletion by retention"
                )
            },
        }));
    }
    if let Some(a) = anchor {
        if !anchor_found {
            return Ok(Outcome::Bad(BadRecord {
                seq: last_seq + 1,
                number: number + 1,
                segment: last_pos.0,
                line: last_pos.1 + 1,
                reason: if a.seq > last_seq {
                    format!(
                        "tail cut: the log ends at seq {last_seq}, the anchor checkpoint is seq {}",
                        a.seq
                    )
                } else {
                    format!("the anchor checkpoint seq {} is not in the log", a.seq)
                },
            }));
        }
    }
    Ok(Outcome::Intact(Summary {
        records: number,
        segments: files.len(),
        first_seq,
        last_seq,
        checkpoints,
        signatures_checked: key.is_some(),
        unattested_tail: since_checkpoint,
        anchor_seq: anchor.map(|a| a.seq),
    }))
}
