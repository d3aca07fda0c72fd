//! Key attestation: the guard vouches for a remote server's keys to the protected servers and
//! adds a guard-held key to them, so that it can re-sign modified inbound requests.
//!
//! # What is done to a server key object
//!
//! A server key object (`GET /_matrix/key/v2/server`, or one entry of the `server_keys` list of
//! a notary `/_matrix/key/v2/query` response) is
//!
//! 1. **verified as received**: `server_name` must be a valid server name, `valid_until_ts` an
//!    integer, every `ed25519:` entry of `verify_keys`/`old_verify_keys` a base64 32-byte key,
//!    and the object must be signed under `signatures[server_name]` by at least one of its own
//!    `verify_keys`, with **every** such signature valid (ruma's `verify_json` over a copy that
//!    keeps only the `server_name` signatures). The guard only attests what the remote really
//!    signed. (Synapse checks only the first such signature; we are stricter.) This proves
//!    self-consistency, not authenticity: authenticity comes from how the object was obtained
//!    (TLS to the server itself, or a notary), which is the caller's job;
//! 2. refused if its `verify_keys` or `old_verify_keys` already list the guard's key id (a
//!    remote could otherwise get its own key accepted under the id the guard signs with);
//! 3. stripped of **all** signatures: Synapse (`synapse/crypto/keyring.py`,
//!    `process_v2_response`) checks the first key id under `signatures[server_name]` that is
//!    listed in `verify_keys`, and a bad signature there fails the whole response — the remote's
//!    original signature no longer matches the modified object, so it must go; a notary's
//!    signature goes for the same reason;
//! 4. given the guard's verify key under `verify_keys["ed25519:<guard version>"]`;
//! 5. signed under `server_name` with the guard key (and, when the guard answers as the
//!    protected servers' configured notary, also under the notary's name with its key — Synapse
//!    checks that signature when `trusted_key_servers[].verify_keys` is configured).
//!
//! # The trust this implies
//!
//! The protected server accepts the attested object because it is signed under the remote's
//! name by a key the object itself lists: it trusts whoever delivered the object, i.e. the
//! guard. For notary responses the notary's signature is dropped as well, so the guard replaces
//! the notary as the party vouching for the keys. Anyone holding the guard key can sign requests
//! and events as any remote server whose keys the protected servers fetched through the guard.
//! See `ARCHITECTURE.md`, "Key attestation and the trust it implies".
//!
//! # Leaving the protected side
//!
//! A protected server stores what it fetched and re-serves it on its own
//! `/_matrix/key/v2/query`. Notary answers get the remote's original objects back
//! ([`super::originals`]); [`strip_attested`] removes the guard key ids from other key
//! responses (from `verify_keys`, `old_verify_keys` and every `signatures` map) so the guard key
//! is never handed out as a remote's key.
use std::collections::BTreeMap;

use ruma::serde::Base64;
use ruma::signatures::{verify_json, PublicKeyMap, VerificationError};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, ServerName};
use serde_json::Value;

use super::{decode_verify_key, SigningKey};

/// Errors of key attestation and stripping. Messages carry server names and key ids, never
/// key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// The body is not JSON acceptable as canonical JSON (floats, integers beyond ±2^53, …).
    #[error("key response is not canonical-JSON compatible: {0}")]
    Json(String),
    /// The body is not of the expected shape (server key object / `{"server_keys": [...]}`).
    #[error("key response has the wrong shape: {0}")]
    Shape(&'static str),
    /// `server_name` is missing or not a valid server name.
    #[error("key object has no valid `server_name`")]
    ServerName,
    /// A field is missing or malformed.
    #[error("key object for {server}: field `{field}` is missing or malformed")]
    Field {
        /// The object's server name.
        server: String,
        /// The field.
        field: &'static str,
    },
    /// The object already lists the guard's key id.
    #[error("key object for {server} already lists the guard key id {key_id}")]
    GuardKeyPresent {
        /// The object's server name.
        server: String,
        /// The guard key id found.
        key_id: String,
    },
    /// No signature under `server_name` by one of the object's own `verify_keys`.
    #[error("key object for {server} is not signed by any of its own verify keys")]
    NotSelfSigned {
        /// The object's server name.
        server: String,
    },
    /// A self-signature does not verify.
    #[error("key object for {server} has an invalid self-signature: {reason}")]
    BadSignature {
        /// The object's server name.
        server: String,
        /// ruma's reason.
        reason: String,
    },
    /// Signing the attested object failed.
    #[error("cannot sign attested key object: {0}")]
    Sign(String),
}

/// The identity the guard signs notary responses with, when the protected servers list the
/// guard as their `trusted_key_servers` notary.
#[derive(Debug, Clone, Copy)]
pub struct Notary<'a> {
    /// The notary's server name, as configured in the protected servers' `trusted_key_servers`.
    pub server_name: &'a str,
    /// The notary key (its verify key is what `trusted_key_servers[].verify_keys` lists).
    pub key: &'a SigningKey,
}

/// The result of attesting a notary `/_matrix/key/v2/query` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedQuery {
    /// The response to hand to the protected server: `{"server_keys": [attested objects]}`.
    pub body: Vec<u8>,
    /// Server names of the attested objects, in order.
    pub attested: Vec<String>,
    /// Objects left out (index in the original list, reason). Synapse skips bad entries of a
    /// notary response too; one bad object must not block the keys of the others.
    pub dropped: Vec<(usize, AttestError)>,
}

/// A server key object as verified: ed25519 keys only (other algorithms are ignored, as
/// Synapse's `is_signing_algorithm_supported` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyObject {
    /// `server_name`.
    pub server_name: String,
    /// `valid_until_ts` in ms (negative values as 0).
    pub valid_until_ts: u64,
    /// `verify_keys`: key id → public key.
    pub verify_keys: BTreeMap<String, [u8; 32]>,
    /// `old_verify_keys`: key id → (public key, `expired_ts` in ms).
    pub old_verify_keys: BTreeMap<String, ([u8; 32], u64)>,
}

fn parse_object(body: &[u8]) -> Result<CanonicalJsonObject, AttestError> {
    let value: CanonicalJsonValue =
        serde_json::from_slice(body).map_err(|e| AttestError::Json(e.to_string()))?;
    match value {
        CanonicalJsonValue::Object(o) => Ok(o),
        _ => Err(AttestError::Shape("not a JSON object")),
    }
}

fn to_bytes(obj: CanonicalJsonObject) -> Vec<u8> {
    serde_json::to_vec(&CanonicalJsonValue::Object(obj)).expect("canonical JSON serializes")
}

fn server_name_of(obj: &CanonicalJsonObject) -> Result<String, AttestError> {
    match obj.get("server_name") {
        Some(CanonicalJsonValue::String(s)) if <&ServerName>::try_from(s.as_str()).is_ok() => {
            Ok(s.clone())
        }
        _ => Err(AttestError::ServerName),
    }
}

fn ms(v: &CanonicalJsonValue) -> Option<u64> {
    match v {
        CanonicalJsonValue::Integer(i) => Some(u64::try_from(i64::from(*i)).unwrap_or(0)),
        _ => None,
    }
}

fn is_ed25519(key_id: &str) -> bool {
    key_id.starts_with("ed25519:")
}

/// Parses a server key object and verifies its self-signature (see the module notes).
pub(crate) fn parse_verified(obj: &CanonicalJsonObject) -> Result<KeyObject, AttestError> {
    let server = server_name_of(obj)?;
    let field = |field: &'static str| AttestError::Field {
        server: server.clone(),
        field,
    };
    let valid_until_ts = obj
        .get("valid_until_ts")
        .and_then(ms)
        .ok_or_else(|| field("valid_until_ts"))?;

    let mut verify_keys = BTreeMap::new();
    let Some(CanonicalJsonValue::Object(vk)) = obj.get("verify_keys") else {
        return Err(field("verify_keys"));
    };
    for (id, entry) in vk {
        if !is_ed25519(id) {
            continue;
        }
        let key = match entry {
            CanonicalJsonValue::Object(e) => match e.get("key") {
                Some(CanonicalJsonValue::String(k)) => decode_verify_key(k).ok(),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| field("verify_keys"))?;
        verify_keys.insert(id.clone(), key);
    }

    let mut old_verify_keys = BTreeMap::new();
    match obj.get("old_verify_keys") {
        None => {}
        Some(CanonicalJsonValue::Object(ok)) => {
            for (id, entry) in ok {
                if !is_ed25519(id) {
                    continue;
                }
                let parsed = match entry {
                    CanonicalJsonValue::Object(e) => {
                        let key = match e.get("key") {
                            Some(CanonicalJsonValue::String(k)) => decode_verify_key(k).ok(),
                            _ => None,
                        };
                        let expired = e.get("expired_ts").and_then(ms);
                        key.zip(expired)
                    }
                    _ => None,
                }
                .ok_or_else(|| field("old_verify_keys"))?;
                old_verify_keys.insert(id.clone(), parsed);
            }
        }
        Some(_) => return Err(field("old_verify_keys")),
    }

    // Verify only the server's own signatures, with only its own current keys.
    let own_sigs = match obj.get("signatures") {
        Some(CanonicalJsonValue::Object(s)) => match s.get(&server) {
            Some(CanonicalJsonValue::Object(own)) => own.clone(),
            Some(_) => return Err(field("signatures")),
            None => return Err(AttestError::NotSelfSigned { server }),
        },
        Some(_) => return Err(field("signatures")),
        None => return Err(AttestError::NotSelfSigned { server }),
    };
    let mut copy = obj.clone();
    let mut sigs = CanonicalJsonObject::new();
    sigs.insert(server.clone(), CanonicalJsonValue::Object(own_sigs));
    copy.insert("signatures".into(), CanonicalJsonValue::Object(sigs));
    let mut keys = PublicKeyMap::new();
    keys.insert(
        server.clone(),
        verify_keys
            .iter()
            .map(|(id, k)| (id.clone(), Base64::new(k.to_vec())))
            .collect(),
    );
    verify_json(&keys, &copy).map_err(|e| match e {
        VerificationError::NoSignaturesForEntity(_)
        | VerificationError::NoSupportedSignatureForEntity(_)
        | VerificationError::NoPublicKeysForEntity(_) => AttestError::NotSelfSigned {
            server: server.clone(),
        },
        other => AttestError::BadSignature {
            server: server.clone(),
            reason: other.to_string(),
        },
    })?;

    Ok(KeyObject {
        server_name: server,
        valid_until_ts,
        verify_keys,
        old_verify_keys,
    })
}

fn lists_key_id(obj: &CanonicalJsonObject, key_id: &str) -> bool {
    ["verify_keys", "old_verify_keys"].iter().any(
        |f| matches!(obj.get(*f), Some(CanonicalJsonValue::Object(m)) if m.contains_key(key_id)),
    )
}

/// Attests one object in place (see the module notes); returns its server name.
fn attest_object(
    obj: &mut CanonicalJsonObject,
    guard_key: &SigningKey,
    notary: Option<Notary<'_>>,
) -> Result<String, AttestError> {
    let server = server_name_of(obj)?;
    let guard_id = guard_key.key_id();
    if lists_key_id(obj, &guard_id) {
        return Err(AttestError::GuardKeyPresent {
            server,
            key_id: guard_id,
        });
    }
    parse_verified(obj)?;

    obj.remove("signatures");
    let Some(CanonicalJsonValue::Object(vk)) = obj.get_mut("verify_keys") else {
        unreachable!("parse_verified checked verify_keys");
    };
    let mut entry = CanonicalJsonObject::new();
    entry.insert(
        "key".into(),
        CanonicalJsonValue::String(guard_key.public_key_base64()),
    );
    vk.insert(guard_id, CanonicalJsonValue::Object(entry));
    guard_key
        .sign_json(&server, obj)
        .map_err(|e| AttestError::Sign(e.to_string()))?;
    if let Some(n) = notary {
        n.key
            .sign_json(n.server_name, obj)
            .map_err(|e| AttestError::Sign(e.to_string()))?;
    }
    Ok(server)
}

/// Attests a `GET /_matrix/key/v2/server` response (one server key object): verifies the
/// remote's self-signature, removes all signatures, adds the guard's verify key and signs the
/// object under its `server_name` with `guard_key`. Refuses (typed error) what cannot be
/// attested; the caller then refuses the key response (fail closed).
pub fn attest_server_keys(body: &[u8], guard_key: &SigningKey) -> Result<Vec<u8>, AttestError> {
    let mut obj = parse_object(body)?;
    if obj.contains_key("server_keys") {
        return Err(AttestError::Shape(
            "a key query response, not a server key object",
        ));
    }
    attest_object(&mut obj, guard_key, None)?;
    Ok(to_bytes(obj))
}

/// Attests a notary `/_matrix/key/v2/query` response (`{"server_keys": [obj, …]}`): every object
/// as [`attest_server_keys`] does; the notary's own signature is dropped too, so the guard
/// vouches for the keys in the notary's place. Objects that cannot be attested are left out
/// (logged); only a body of the wrong shape is an error. Objects are not signed as a notary:
/// use [`attest_key_query_with`] when the protected servers check a notary signature.
pub fn attest_key_query(body: &[u8], guard_key: &SigningKey) -> Result<Vec<u8>, AttestError> {
    let out = attest_key_query_with(body, guard_key, None)?;
    for (index, reason) in &out.dropped {
        tracing::warn!(index, %reason, "key query response entry not attested, left out");
    }
    Ok(out.body)
}

/// [`attest_key_query`] with an optional notary identity (each attested object is then also
/// signed under `notary.server_name`), reporting what was attested and what was left out.
pub fn attest_key_query_with(
    body: &[u8],
    guard_key: &SigningKey,
    notary: Option<Notary<'_>>,
) -> Result<AttestedQuery, AttestError> {
    let obj = parse_object(body)?;
    let Some(CanonicalJsonValue::Array(list)) = obj.get("server_keys") else {
        return Err(AttestError::Shape("no `server_keys` list"));
    };
    let mut out = Vec::with_capacity(list.len());
    let mut attested = Vec::new();
    let mut dropped = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let CanonicalJsonValue::Object(o) = entry else {
            dropped.push((
                i,
                AttestError::Shape("`server_keys` entry is not an object"),
            ));
            continue;
        };
        let mut o = o.clone();
        match attest_object(&mut o, guard_key, notary) {
            Ok(server) => {
                attested.push(server);
                out.push(CanonicalJsonValue::Object(o));
            }
            Err(e) => dropped.push((i, e)),
        }
    }
    let mut result = CanonicalJsonObject::new();
    result.insert("server_keys".into(), CanonicalJsonValue::Array(out));
    Ok(AttestedQuery {
        body: to_bytes(result),
        attested,
        dropped,
    })
}

/// The key objects of a key response: the body itself (`/server`) or its `server_keys` list
/// (`/query`). `None` for anything else.
fn objects_mut(body: &mut Value) -> Option<Vec<&mut serde_json::Map<String, Value>>> {
    let top = body.as_object_mut()?;
    if top.contains_key("server_keys") {
        let list = top.get_mut("server_keys")?.as_array_mut()?;
        list.iter_mut().map(Value::as_object_mut).collect()
    } else if top.contains_key("server_name") {
        Some(vec![top])
    } else {
        None
    }
}

fn strip_object(obj: &mut serde_json::Map<String, Value>, ids: &[String]) -> bool {
    let mut changed = false;
    for field in ["verify_keys", "old_verify_keys"] {
        if let Some(Value::Object(m)) = obj.get_mut(field) {
            for id in ids {
                changed |= m.remove(id).is_some();
            }
        }
    }
    if let Some(Value::Object(sigs)) = obj.get_mut("signatures") {
        for entity in sigs.values_mut() {
            if let Value::Object(m) = entity {
                for id in ids {
                    changed |= m.remove(id).is_some();
                }
            }
        }
        let before = sigs.len();
        sigs.retain(|_, v| !matches!(v, Value::Object(m) if m.is_empty()));
        changed |= sigs.len() != before;
    }
    changed
}

/// Removes the guard key ids from a key response leaving the protected side (a protected server
/// answering `/_matrix/key/v2/server` or `/_matrix/key/v2/query`): from `verify_keys`,
/// `old_verify_keys` and every entity's map in `signatures` (entity maps left empty are removed).
/// Works on a single object and on `{"server_keys": [...]}`. A body without guard key ids is
/// returned byte for byte; a body of neither shape is an error (the caller refuses it).
pub fn strip_attested(body: &[u8], guard_key_ids: &[String]) -> Result<Vec<u8>, AttestError> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| AttestError::Json(e.to_string()))?;
    let objects = objects_mut(&mut value).ok_or(AttestError::Shape(
        "neither a server key object nor a `server_keys` list of objects",
    ))?;
    let mut changed = false;
    for obj in objects {
        changed |= strip_object(obj, guard_key_ids);
    }
    if !changed {
        return Ok(body.to_vec());
    }
    Ok(serde_json::to_vec(&value).expect("JSON value serializes"))
}

/// Whether a key response lists or is signed with one of the guard key ids. A body that cannot
/// be parsed as a key response counts as containing them (it cannot be shown not to; the caller
/// then tries [`strip_attested`], which refuses it).
pub fn contains_guard_key(body: &[u8], guard_key_ids: &[String]) -> bool {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return true;
    };
    let Some(objects) = objects_mut(&mut value) else {
        return true;
    };
    objects.into_iter().any(|obj| {
        let listed = ["verify_keys", "old_verify_keys"].iter().any(|f| {
            matches!(obj.get(*f), Some(Value::Object(m)) if guard_key_ids.iter().any(|id| m.contains_key(id)))
        });
        let signed = matches!(obj.get("signatures"), Some(Value::Object(s)) if s.values().any(|e| {
            matches!(e, Value::Object(m) if guard_key_ids.iter().any(|id| m.contains_key(id)))
        }));
        listed || signed
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REMOTE: &str = "remote.example";

    fn guard() -> SigningKey {
        SigningKey::generate("gw1").unwrap()
    }

    /// A properly self-signed server key object for `REMOTE`.
    fn remote_object(key: &SigningKey) -> CanonicalJsonObject {
        let old = SigningKey::generate("a_old").unwrap();
        let v = json!({
            "server_name": REMOTE,
            "valid_until_ts": 1_900_000_000_000u64,
            "verify_keys": { key.key_id(): { "key": key.public_key_base64() } },
            "old_verify_keys": { old.key_id(): { "key": old.public_key_base64(), "expired_ts": 1_500_000_000_000u64 } },
        });
        let mut obj: CanonicalJsonObject = serde_json::from_value(v).unwrap();
        key.sign_json(REMOTE, &mut obj).unwrap();
        obj
    }

    fn bytes(obj: &CanonicalJsonObject) -> Vec<u8> {
        serde_json::to_vec(obj).unwrap()
    }

    fn only_key(server: &str, k: &SigningKey) -> PublicKeyMap {
        let mut set = BTreeMap::new();
        set.insert(k.key_id(), Base64::new(k.public_key().to_vec()));
        let mut map = PublicKeyMap::new();
        map.insert(server.to_owned(), set);
        map
    }

    fn sig_servers(obj: &CanonicalJsonObject) -> Vec<(String, Vec<String>)> {
        let Some(CanonicalJsonValue::Object(s)) = obj.get("signatures") else {
            return vec![];
        };
        s.iter()
            .map(|(k, v)| {
                let CanonicalJsonValue::Object(m) = v else {
                    panic!()
                };
                (k.clone(), m.keys().cloned().collect())
            })
            .collect()
    }

    #[test]
    fn attested_object_verifies_with_only_the_guard_key_and_drops_the_original_signature() {
        let remote = SigningKey::generate("a_remote").unwrap();
        let g = guard();
        let out = attest_server_keys(&bytes(&remote_object(&remote)), &g).unwrap();
        let obj: CanonicalJsonObject = serde_json::from_slice(&out).unwrap();

        // Verifies under the remote's name with a key map holding only the guard key …
        verify_json(&only_key(REMOTE, &g), &obj).unwrap();
        // … and the remote's own key no longer verifies anything: its signature is gone.
        assert_eq!(
            sig_servers(&obj),
            vec![(REMOTE.to_owned(), vec![g.key_id()])]
        );
        assert!(verify_json(&only_key(REMOTE, &remote), &obj).is_err());

        // The guard key is listed, the remote's keys are kept, and the Synapse check
        // (first signature key id that is in verify_keys) finds the guard's.
        let parsed = parse_verified(&obj).unwrap();
        assert_eq!(parsed.verify_keys.get(&g.key_id()), Some(&g.public_key()));
        assert_eq!(
            parsed.verify_keys.get(&remote.key_id()),
            Some(&remote.public_key())
        );
        assert_eq!(parsed.old_verify_keys.len(), 1);
        assert_eq!(parsed.valid_until_ts, 1_900_000_000_000);
    }

    #[test]
    fn tampered_unsigned_or_foreign_signed_input_is_refused() {
        let remote = SigningKey::generate("a_remote").unwrap();
        let g = guard();

        // Tampered after signing: a key added.
        let mut obj = remote_object(&remote);
        let evil = SigningKey::generate("evil").unwrap();
        if let Some(CanonicalJsonValue::Object(vk)) = obj.get_mut("verify_keys") {
            vk.insert(
                evil.key_id(),
                serde_json::from_value(json!({"key": evil.public_key_base64()})).unwrap(),
            );
        }
        assert!(matches!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::BadSignature { ref server, .. }) if server == REMOTE
        ));

        // Unsigned.
        let mut obj = remote_object(&remote);
        obj.remove("signatures");
        assert_eq!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::NotSelfSigned {
                server: REMOTE.into()
            })
        );

        // Signed only by a key it does not list (a forger's key, or only a notary).
        let mut obj = remote_object(&remote);
        obj.remove("signatures");
        evil.sign_json(REMOTE, &mut obj).unwrap();
        remote.sign_json("notary.example", &mut obj).unwrap();
        assert_eq!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::NotSelfSigned {
                server: REMOTE.into()
            })
        );

        // A correct signature plus a bad one by a listed key: refused (all must verify).
        let second = SigningKey::generate("a_second").unwrap();
        let mut obj = remote_object(&remote);
        if let Some(CanonicalJsonValue::Object(vk)) = obj.get_mut("verify_keys") {
            vk.insert(
                second.key_id(),
                serde_json::from_value(json!({"key": second.public_key_base64()})).unwrap(),
            );
        }
        obj.remove("signatures");
        remote.sign_json(REMOTE, &mut obj).unwrap();
        let mut other = obj.clone();
        other.insert(
            "valid_until_ts".into(),
            CanonicalJsonValue::Integer(1u8.into()),
        );
        second.sign_json(REMOTE, &mut other).unwrap();
        let bad_sig = sig_servers(&other); // second's signature is over a different object
        assert_eq!(bad_sig[0].1.len(), 2);
        if let (Some(CanonicalJsonValue::Object(dst)), Some(CanonicalJsonValue::Object(src))) =
            (obj.get_mut("signatures"), other.get("signatures"))
        {
            *dst = src.clone();
        }
        assert!(matches!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_objects_are_refused_with_typed_errors() {
        let remote = SigningKey::generate("a_remote").unwrap();
        let g = guard();

        let mut obj = remote_object(&remote);
        obj.remove("server_name");
        assert_eq!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::ServerName)
        );
        let mut obj = remote_object(&remote);
        obj.insert(
            "server_name".into(),
            CanonicalJsonValue::String("not a name".into()),
        );
        assert_eq!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::ServerName)
        );

        let mut obj = remote_object(&remote);
        obj.remove("valid_until_ts");
        assert_eq!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::Field {
                server: REMOTE.into(),
                field: "valid_until_ts"
            })
        );

        let mut obj = remote_object(&remote);
        if let Some(CanonicalJsonValue::Object(vk)) = obj.get_mut("verify_keys") {
            vk.insert(
                "ed25519:short".into(),
                serde_json::from_value(json!({"key": "AAAA"})).unwrap(),
            );
        }
        assert_eq!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::Field {
                server: REMOTE.into(),
                field: "verify_keys"
            })
        );

        assert!(matches!(
            attest_server_keys(br#"{"server_name":"a.example","valid_until_ts":1.5}"#, &g),
            Err(AttestError::Json(_))
        ));
        assert!(matches!(
            attest_server_keys(b"[]", &g),
            Err(AttestError::Shape(_))
        ));
        assert!(matches!(
            attest_server_keys(br#"{"server_keys":[]}"#, &g),
            Err(AttestError::Shape(_))
        ));
    }

    #[test]
    fn guard_key_id_already_listed_is_refused() {
        let g = guard();
        // The remote publishes a (its own) key under the guard's key id, properly self-signed.
        let remote = SigningKey::generate("gw1").unwrap();
        let obj = remote_object(&remote);
        assert_eq!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::GuardKeyPresent {
                server: REMOTE.into(),
                key_id: "ed25519:gw1".into()
            })
        );
        // Also in old_verify_keys.
        let remote = SigningKey::generate("a_remote").unwrap();
        let mut obj = remote_object(&remote);
        obj.remove("signatures");
        if let Some(CanonicalJsonValue::Object(ok)) = obj.get_mut("old_verify_keys") {
            ok.insert(
                g.key_id(),
                serde_json::from_value(json!({"key": remote.public_key_base64(), "expired_ts": 1}))
                    .unwrap(),
            );
        }
        remote.sign_json(REMOTE, &mut obj).unwrap();
        assert!(matches!(
            attest_server_keys(&bytes(&obj), &g),
            Err(AttestError::GuardKeyPresent { .. })
        ));
        // Attesting an attested object again is refused too.
        let remote = SigningKey::generate("a_remote").unwrap();
        let once = attest_server_keys(&bytes(&remote_object(&remote)), &g).unwrap();
        assert!(matches!(
            attest_server_keys(&once, &g),
            Err(AttestError::GuardKeyPresent { .. })
        ));
    }

    #[test]
    fn query_shape_attests_each_object_drops_notary_signature_and_bad_entries() {
        let g = guard();
        let a = SigningKey::generate("a_a").unwrap();
        let b = SigningKey::generate("a_b").unwrap();
        let notary_upstream = SigningKey::generate("n").unwrap();
        let mut oa = remote_object(&a);
        notary_upstream
            .sign_json("notary.example", &mut oa)
            .unwrap();
        let mut ob: CanonicalJsonObject = remote_object(&b);
        ob.insert(
            "server_name".into(),
            CanonicalJsonValue::String("b.example".into()),
        ); // now b's signature does not match
        let body = serde_json::to_vec(&json!({
            "server_keys": [oa, ob, 7]
        }))
        .unwrap();

        let out = attest_key_query_with(&body, &g, None).unwrap();
        assert_eq!(out.attested, vec![REMOTE.to_owned()]);
        assert_eq!(out.dropped.len(), 2);
        assert_eq!(out.dropped[0].0, 1);
        assert!(matches!(
            out.dropped[0].1,
            AttestError::NotSelfSigned { .. } | AttestError::BadSignature { .. }
        ));
        assert_eq!(out.dropped[1].0, 2);
        let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        let list = v["server_keys"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        let obj: CanonicalJsonObject = serde_json::from_value(list[0].clone()).unwrap();
        verify_json(&only_key(REMOTE, &g), &obj).unwrap();
        assert_eq!(
            sig_servers(&obj),
            vec![(REMOTE.to_owned(), vec![g.key_id()])]
        );
        // The simple form gives the same body.
        assert_eq!(attest_key_query(&body, &g).unwrap(), out.body);
        // Wrong shapes.
        assert!(matches!(
            attest_key_query(&bytes(&remote_object(&a)), &g),
            Err(AttestError::Shape(_))
        ));
        assert!(matches!(
            attest_key_query(br#"{"server_keys":{}}"#, &g),
            Err(AttestError::Shape(_))
        ));
    }

    #[test]
    fn notary_signature_is_added_when_asked() {
        let g = guard();
        let notary = SigningKey::generate("notary1").unwrap();
        let a = SigningKey::generate("a_a").unwrap();
        let body = serde_json::to_vec(&json!({ "server_keys": [remote_object(&a)] })).unwrap();
        let out = attest_key_query_with(
            &body,
            &g,
            Some(Notary {
                server_name: "guard.example",
                key: &notary,
            }),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        let obj: CanonicalJsonObject = serde_json::from_value(v["server_keys"][0].clone()).unwrap();
        let mut both = only_key(REMOTE, &g);
        both.extend(only_key("guard.example", &notary));
        verify_json(&both, &obj).unwrap();
        // Synapse's _validate_perspectives_response: the notary signature alone verifies.
        let mut notary_only = obj.clone();
        if let Some(CanonicalJsonValue::Object(s)) = notary_only.get_mut("signatures") {
            s.remove(REMOTE);
        }
        verify_json(&only_key("guard.example", &notary), &notary_only).unwrap();
        // A wrong notary key does not.
        let wrong = SigningKey::generate("notary1").unwrap();
        assert!(verify_json(&only_key("guard.example", &wrong), &notary_only).is_err());
    }

    #[test]
    fn strip_round_trip_on_both_shapes() {
        let g = guard();
        let ids = vec![g.key_id()];
        let remote = SigningKey::generate("a_remote").unwrap();
        let original = remote_object(&remote);
        let attested = attest_server_keys(&bytes(&original), &g).unwrap();
        assert!(contains_guard_key(&attested, &ids));

        let stripped = strip_attested(&attested, &ids).unwrap();
        assert!(!contains_guard_key(&stripped, &ids));
        let s: CanonicalJsonObject = serde_json::from_slice(&stripped).unwrap();
        // Same as the original minus its signature: the guard key and its signature are gone.
        let mut expected = original.clone();
        expected.remove("signatures");
        let mut s_nosig = s.clone();
        s_nosig.remove("signatures");
        assert_eq!(s_nosig, expected);
        assert!(matches!(s.get("signatures"), Some(CanonicalJsonValue::Object(m)) if m.is_empty()));
        // Fail closed: the stripped object no longer verifies for anyone.
        assert!(parse_verified(&s).is_err());

        // Query shape as a protected server would serve it: its own notary signature plus the
        // guard's; old_verify_keys carrying the id too.
        let protected = SigningKey::generate("a_hs1").unwrap();
        let mut served: CanonicalJsonObject = serde_json::from_slice(&attested).unwrap();
        protected.sign_json("hs1.example", &mut served).unwrap();
        if let Some(CanonicalJsonValue::Object(ok)) = served.get_mut("old_verify_keys") {
            ok.insert(
                g.key_id(),
                serde_json::from_value(json!({"key": g.public_key_base64(), "expired_ts": 5}))
                    .unwrap(),
            );
        }
        let body = serde_json::to_vec(&json!({ "server_keys": [served, original] })).unwrap();
        assert!(contains_guard_key(&body, &ids));
        let out = strip_attested(&body, &ids).unwrap();
        assert!(!contains_guard_key(&out, &ids));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let first = &v["server_keys"][0];
        assert!(first["verify_keys"].get(g.key_id()).is_none());
        assert!(first["verify_keys"].get(remote.key_id()).is_some());
        assert!(first["old_verify_keys"].get(g.key_id()).is_none());
        assert!(first["old_verify_keys"].get("ed25519:a_old").is_some());
        assert!(first["signatures"].get(REMOTE).is_none());
        assert!(first["signatures"]["hs1.example"]
            .get(protected.key_id())
            .is_some());
        // The untouched entry keeps its own signature.
        let second: CanonicalJsonObject =
            serde_json::from_value(v["server_keys"][1].clone()).unwrap();
        assert_eq!(second, original);

        // Nothing to strip: byte-identical.
        let clean = bytes(&original);
        assert!(!contains_guard_key(&clean, &ids));
        assert_eq!(strip_attested(&clean, &ids).unwrap(), clean);

        // Unknown shapes: refused by strip, "may contain" for the check.
        assert!(strip_attested(b"{\"x\":1}", &ids).is_err());
        assert!(strip_attested(b"not json", &ids).is_err());
        assert!(strip_attested(br#"{"server_keys":[1]}"#, &ids).is_err());
        assert!(contains_guard_key(b"not json", &ids));
    }
}
