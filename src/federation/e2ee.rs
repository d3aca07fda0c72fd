//! End-to-end encrypted content: strict structural parsers for Olm and Megolm messages (no
//! cryptography; the guard holds no keys) and the detection of encrypted attachments.
//!
//! # What counts as well-formed
//!
//! [`classify`] looks at a content object with a `ciphertext` key (`m.room.encrypted` events
//! and to-device messages; any other type carrying that key too; `algorithm` alone, as in
//! `m.room.encryption`, is no ciphertext):
//!
//! * **Megolm** (`algorithm = "m.megolm.v1.aes-sha2"`, `ciphertext` a string): version byte
//!   `0x03`, then exactly the fields libolm and vodozemac write, in their order — message index
//!   (tag `0x08`, varint, at most 32 bits) and ciphertext (tag `0x12`, length-delimited) — then an
//!   8-byte MAC and a 64-byte Ed25519 signature; nothing left over.
//! * **Olm** (`algorithm = "m.olm.v1.curve25519-aes-sha2"`, `ciphertext` a non-empty object
//!   `{<recipient curve25519 key>: {"type": 0|1, "body": <base64>}}`, every entry checked):
//!   type 1, a normal message: version `0x03`, ratchet key (tag `0x0A`, 32 bytes), chain index
//!   (tag `0x10`, varint), ciphertext (tag `0x22`), then an 8-byte MAC; type 0, a pre-key
//!   message: version `0x03`, one-time key (`0x0A`), base key (`0x12`), identity key (`0x1A`),
//!   each 32 bytes, and the embedded normal message (`0x22`), which must itself be well-formed.
//!   An entry object has exactly the keys `type` and `body`.
//! * In both, the AES-256-CBC ciphertext (PKCS#7 padded) is a non-empty multiple of 16 bytes,
//!   and varints are minimal (no redundant `0x80` continuation bytes).
//! * **Base64**: unpadded standard base64 with canonical trailing bits, which is what libolm and
//!   vodozemac emit. Padded, URL-safe or otherwise non-canonical encodings are not well-formed
//!   (vodozemac would decode some of them; a real client never writes them).
//! * **Plausibility**: a well-formed structure can still carry plain text in its key, ciphertext,
//!   MAC or signature bytes. A message whose decoded bytes contain a run of
//!   [`PRINTABLE_RUN_LIMIT`] or more printable ASCII bytes is not well-formed. For random bytes
//!   the chance of such a run is about `n · (95/256)^16` for an `n`-byte message (≈ 10⁻⁵ for a
//!   1 KiB message): such a false positive only means the bytes are judged as text.
//!
//! Any other content with `ciphertext` — another or no algorithm (e.g. `m.megolm.v2.*`,
//! version byte `0x04` with a full MAC), a wrongly typed `ciphertext`, a truncated or extended
//! message, wrong tags — is [`Ciphertext::Malformed`], carrying the decoded bytes of every
//! ciphertext string that decodes as base64 under a lenient reading (padding optional, ASCII
//! whitespace ignored, either alphabet), so the content rules can judge them as text.
//!
//! # Limits
//!
//! The check is structural. Whoever controls a client can encrypt anything (or dress up any
//! bytes as ciphertext in a way these checks cannot tell apart): releasing well-formed
//! ciphertext means trusting the sending clients.
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use serde_json::Value;

/// `algorithm` of Megolm-encrypted room events.
pub const MEGOLM_V1: &str = "m.megolm.v1.aes-sha2";
/// `algorithm` of Olm-encrypted to-device messages.
pub const OLM_V1: &str = "m.olm.v1.curve25519-aes-sha2";

/// The version byte of Olm and Megolm messages (truncated 8-byte MAC).
const VERSION: u8 = 0x03;
const MAC_LEN: usize = 8;
const SIGNATURE_LEN: usize = 64;
const KEY_LEN: usize = 32;
const AES_BLOCK: usize = 16;

/// A run of this many printable ASCII bytes in a decoded message makes it not well-formed.
pub const PRINTABLE_RUN_LIMIT: usize = 16;

/// Unpadded standard base64, canonical trailing bits: what libolm and vodozemac write.
const STRICT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);
/// Anything that is base64 at all (padding optional, loose trailing bits).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);
const LENIENT_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// What a content's ciphertext is; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ciphertext {
    /// Olm or Megolm messages that parse strictly: opaque to the guard.
    WellFormed,
    /// Encrypted-looking content that does not parse: judged as text. `decoded` holds the
    /// base64-decoded bytes of every ciphertext string that decoded (empty if none did).
    Malformed { decoded: Vec<Vec<u8>> },
    /// No `ciphertext`: not encrypted content.
    NotEncrypted,
}

/// Classify an event/to-device content (`m.room.encrypted` or any content with
/// `algorithm`+`ciphertext`). `decoded` holds the base64-decoded bytes of every ciphertext
/// string that decoded (empty if none did); these are judged as text by the DLP layer.
pub fn classify(content: &Value) -> Ciphertext {
    let Some(obj) = content.as_object() else {
        return Ciphertext::NotEncrypted;
    };
    let (algorithm, ciphertext) = (obj.get("algorithm"), obj.get("ciphertext"));
    // `algorithm` alone is no ciphertext: `m.room.encryption` state, cleartext key requests.
    let Some(ciphertext) = ciphertext else {
        return Ciphertext::NotEncrypted;
    };
    let well_formed = match (algorithm.and_then(Value::as_str), ciphertext) {
        (Some(MEGOLM_V1), Value::String(s)) => megolm_ok(s),
        (Some(OLM_V1), Value::Object(recipients)) => {
            !recipients.is_empty() && recipients.values().all(olm_entry_ok)
        }
        _ => false,
    };
    if well_formed {
        return Ciphertext::WellFormed;
    }
    let mut decoded = Vec::new();
    collect_decoded(ciphertext, &mut decoded);
    Ciphertext::Malformed { decoded }
}

/// Whether a message content carries an encrypted attachment: `file` or `info.thumbnail_file`
/// (also inside an edit's `m.new_content`) is an object with `key`, `iv`, `hashes` and `url`.
pub fn has_encrypted_file(content: &Value) -> bool {
    fn at(c: &Value) -> bool {
        is_encrypted_file(c.get("file"))
            || is_encrypted_file(c.get("info").and_then(|i| i.get("thumbnail_file")))
    }
    at(content) || content.get("m.new_content").is_some_and(at)
}

fn is_encrypted_file(v: Option<&Value>) -> bool {
    v.and_then(Value::as_object).is_some_and(|f| {
        ["key", "iv", "hashes", "url"]
            .iter()
            .all(|k| f.contains_key(*k))
    })
}

/// The base64 strings under a ciphertext value (a string, or Olm's `body` strings), decoded
/// leniently.
fn collect_decoded(v: &Value, out: &mut Vec<Vec<u8>>) {
    match v {
        Value::String(s) => {
            if let Some(b) = decode_lenient(s) {
                out.push(b);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_decoded(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_decoded(x, out)),
        _ => {}
    }
}

/// Padding optional, ASCII whitespace ignored, standard or URL-safe alphabet.
pub fn decode_lenient(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    LENIENT
        .decode(&compact)
        .or_else(|_| LENIENT_URL.decode(&compact))
        .ok()
}

fn strict_decode(s: &str) -> Option<Vec<u8>> {
    STRICT.decode(s).ok()
}

/// No run of [`PRINTABLE_RUN_LIMIT`] printable ASCII bytes.
fn plausible(bytes: &[u8]) -> bool {
    let mut run = 0;
    for b in bytes {
        if (0x20..0x7f).contains(b) {
            run += 1;
            if run >= PRINTABLE_RUN_LIMIT {
                return false;
            }
        } else {
            run = 0;
        }
    }
    true
}

fn megolm_ok(s: &str) -> bool {
    strict_decode(s).is_some_and(|b| parse_megolm(&b).is_some() && plausible(&b))
}

fn olm_entry_ok(entry: &Value) -> bool {
    let Some(e) = entry.as_object() else {
        return false;
    };
    if e.len() != 2 {
        return false;
    }
    let (Some(ty), Some(Value::String(body))) =
        (e.get("type").and_then(Value::as_u64), e.get("body"))
    else {
        return false;
    };
    let Some(b) = strict_decode(body) else {
        return false;
    };
    let ok = match ty {
        0 => parse_olm_pre_key(&b).is_some(),
        1 => parse_olm_message(&b).is_some(),
        _ => false,
    };
    ok && plausible(&b)
}

/// A cursor over protobuf-style fields.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    /// A minimal varint (no trailing zero group) of at most `max_bits` bits.
    fn varint(&mut self, max_bits: u32) -> Option<u64> {
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if (i > 0 && b == 0) || (i == 9 && part > 1) {
                return None;
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return (max_bits >= 64 || v >> max_bits == 0).then_some(v);
            }
        }
        None
    }
    fn tag(&mut self, tag: u8) -> Option<()> {
        (self.byte()? == tag).then_some(())
    }
    /// A length-delimited field with exactly `tag`.
    fn bytes(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.tag(tag)?;
        let len = usize::try_from(self.varint(32)?).ok()?;
        if len > self.buf.len() {
            return None;
        }
        let (v, rest) = self.buf.split_at(len);
        self.buf = rest;
        Some(v)
    }
    fn done(&self) -> bool {
        self.buf.is_empty()
    }
}

fn aes_ok(ct: &[u8]) -> bool {
    !ct.is_empty() && ct.len().is_multiple_of(AES_BLOCK)
}

/// Megolm message: version, index, ciphertext, MAC, signature. Returns the message index.
fn parse_megolm(b: &[u8]) -> Option<u32> {
    let body_end = b.len().checked_sub(MAC_LEN + SIGNATURE_LEN)?;
    let mut r = Reader {
        buf: &b[..body_end],
    };
    (r.byte()? == VERSION).then_some(())?;
    r.tag(0x08)?;
    let index = u32::try_from(r.varint(32)?).ok()?;
    let ct = r.bytes(0x12)?;
    (r.done() && aes_ok(ct)).then_some(index)
}

/// Olm normal message: version, ratchet key, chain index, ciphertext, MAC.
fn parse_olm_message(b: &[u8]) -> Option<()> {
    let body_end = b.len().checked_sub(MAC_LEN)?;
    let mut r = Reader {
        buf: &b[..body_end],
    };
    (r.byte()? == VERSION).then_some(())?;
    (r.bytes(0x0A)?.len() == KEY_LEN).then_some(())?;
    r.tag(0x10)?;
    r.varint(64)?;
    let ct = r.bytes(0x22)?;
    (r.done() && aes_ok(ct)).then_some(())
}

/// Olm pre-key message: version, one-time key, base key, identity key, embedded message.
fn parse_olm_pre_key(b: &[u8]) -> Option<()> {
    let mut r = Reader { buf: b };
    (r.byte()? == VERSION).then_some(())?;
    for tag in [0x0A, 0x12, 0x1A] {
        (r.bytes(tag)?.len() == KEY_LEN).then_some(())?;
    }
    let inner = r.bytes(0x22)?;
    r.done().then_some(())?;
    parse_olm_message(inner)
}

/// Builders of structurally well-formed messages from random bytes (no real encryption): for
/// tests and the lab demo, which have no E2EE client.
pub mod synthetic {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(tag);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    /// Random bytes without a printable run (so the result passes the plausibility check).
    pub fn random_bytes(n: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
        for (i, b) in v.iter_mut().enumerate() {
            if i % 8 == 7 {
                *b |= 0x80;
            }
        }
        v
    }

    /// A Megolm message: `0x03`, index, `blocks` × 16 bytes of ciphertext, MAC, signature.
    pub fn megolm_bytes(index: u32, blocks: usize) -> Vec<u8> {
        let mut m = vec![VERSION, 0x08];
        varint(u64::from(index), &mut m);
        field(0x12, &random_bytes(blocks * AES_BLOCK), &mut m);
        m.extend(random_bytes(MAC_LEN + SIGNATURE_LEN));
        m
    }

    /// An Olm normal message (type 1).
    pub fn olm_message_bytes(chain_index: u64, blocks: usize) -> Vec<u8> {
        let mut m = vec![VERSION];
        field(0x0A, &random_bytes(KEY_LEN), &mut m);
        m.push(0x10);
        varint(chain_index, &mut m);
        field(0x22, &random_bytes(blocks * AES_BLOCK), &mut m);
        m.extend(random_bytes(MAC_LEN));
        m
    }

    /// An Olm pre-key message (type 0) embedding a normal message.
    pub fn olm_pre_key_bytes(chain_index: u64, blocks: usize) -> Vec<u8> {
        let mut m = vec![VERSION];
        for tag in [0x0A, 0x12, 0x1A] {
            field(tag, &random_bytes(KEY_LEN), &mut m);
        }
        field(0x22, &olm_message_bytes(chain_index, blocks), &mut m);
        m
    }

    /// Unpadded standard base64.
    pub fn b64(bytes: &[u8]) -> String {
        STRICT.encode(bytes)
    }

    /// `m.room.encrypted` content with a well-formed Megolm ciphertext.
    pub fn megolm_content(index: u32, blocks: usize) -> Value {
        serde_json::json!({
            "algorithm": MEGOLM_V1,
            "ciphertext": b64(&megolm_bytes(index, blocks)),
            "sender_key": b64(&random_bytes(KEY_LEN)),
            "device_id": "SYNTHETIC",
            "session_id": b64(&random_bytes(KEY_LEN)),
        })
    }

    /// Olm-encrypted to-device content with one recipient (`pre_key`: type 0, else type 1).
    pub fn olm_content(pre_key: bool) -> Value {
        let (ty, body) = if pre_key {
            (0, olm_pre_key_bytes(0, 2))
        } else {
            (1, olm_message_bytes(3, 2))
        };
        serde_json::json!({
            "algorithm": OLM_V1,
            "sender_key": b64(&random_bytes(KEY_LEN)),
            "ciphertext": { b64(&random_bytes(KEY_LEN)): {"type": ty, "body": b64(&body)} },
        })
    }
}

#[cfg(test)]
mod tests;
