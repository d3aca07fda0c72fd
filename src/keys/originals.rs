//! The remote key objects as their servers signed them, so that a protected server's notary
//! answers can be given back their original form.
//!
//! # Design notes
//!
//! * **Why.** The guard attests every remote key object a protected server fetches through it
//!   ([`super::attest`]): all signatures removed, the guard key added, signed with the guard
//!   key. The protected server stores that object and, acting as a notary
//!   (`/_matrix/key/v2/query` asked by a third server), serves it again with its own notary
//!   signature added. Stripping the guard key from that answer (as [`super::attest::strip_attested`]
//!   does) leaves an object without the remote's self-signature and with a notary signature
//!   over a different object: the requester refuses it.
//! * **What is done instead** ([`restore_notary_answer`]): every attested object of such an
//!   answer is replaced by the original the guard attested — the remote's own bytes with its
//!   self-signature, remembered here when the guard attested it — and signed again as the notary
//!   with the protected server's key the guard holds (the key that signed the answer). The
//!   requester then verifies the remote's self-signature and the notary signature of the
//!   protected server, as it would without the guard. The guard key never leaves.
//! * **Matching.** An original is found by a fingerprint: SHA-256 of the canonical form of the
//!   object without `signatures` and `unsigned` (for the attested object: also without the
//!   guard key ids in `verify_keys`/`old_verify_keys`). Attestation changes nothing else, so
//!   the fingerprints of an original and its attested form are equal, and a different object
//!   (other keys, another `valid_until_ts`) never matches.
//! * **Fail closed.** An attested object whose original is not known (the guard restarted, or
//!   the memory limit dropped it) or that cannot be signed again (the guard holds no key for
//!   the protected server) is left out of the answer: notaries leave out what they cannot
//!   vouch for, and the requester asks elsewhere. Objects without the guard key pass unchanged.
//! * **Bounded.** At most [`MAX_ORIGINALS`] objects are remembered, the oldest dropped first;
//!   in memory only.
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use sha2::{Digest, Sha256};

use super::attest::{parse_verified, AttestError};
use super::SigningKey;

/// Most original key objects remembered at once.
pub const MAX_ORIGINALS: usize = 4096;

type Fingerprint = [u8; 32];

/// Remembered originals (see the module notes).
#[derive(Default)]
pub struct KeyOriginals {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_print: HashMap<Fingerprint, CanonicalJsonObject>,
    order: VecDeque<Fingerprint>,
}

fn fingerprint(obj: &CanonicalJsonObject, drop_ids: &[String]) -> Fingerprint {
    let mut o = obj.clone();
    o.remove("signatures");
    o.remove("unsigned");
    for field in ["verify_keys", "old_verify_keys"] {
        if let Some(CanonicalJsonValue::Object(m)) = o.get_mut(field) {
            for id in drop_ids {
                m.remove(id);
            }
        }
    }
    let bytes = serde_json::to_vec(&CanonicalJsonValue::Object(o)).expect("canonical JSON");
    Sha256::digest(&bytes).into()
}

/// The key objects of a key response (a single object, or `server_keys`).
fn objects(value: &CanonicalJsonValue) -> Vec<&CanonicalJsonObject> {
    match value {
        CanonicalJsonValue::Object(o) => match o.get("server_keys") {
            Some(CanonicalJsonValue::Array(list)) => list
                .iter()
                .filter_map(|e| match e {
                    CanonicalJsonValue::Object(o) => Some(o),
                    _ => None,
                })
                .collect(),
            Some(_) => Vec::new(),
            None => vec![o],
        },
        _ => Vec::new(),
    }
}

impl KeyOriginals {
    /// Remembers every validly self-signed key object of a key response the guard is about to
    /// attest (`/_matrix/key/v2/server` or a `/_matrix/key/v2/query` answer). Returns how many.
    pub fn remember_response(&self, body: &[u8]) -> usize {
        let Ok(value) = serde_json::from_slice::<CanonicalJsonValue>(body) else {
            return 0;
        };
        let mut n = 0;
        for obj in objects(&value) {
            if parse_verified(obj).is_ok() {
                self.remember(obj);
                n += 1;
            }
        }
        n
    }

    fn remember(&self, original: &CanonicalJsonObject) {
        let print = fingerprint(original, &[]);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.by_print.insert(print, original.clone()).is_none() {
            inner.order.push_back(print);
        }
        while inner.order.len() > MAX_ORIGINALS {
            if let Some(old) = inner.order.pop_front() {
                inner.by_print.remove(&old);
            }
        }
    }

    /// The original of an attested object (`guard_key_ids` removed from it first), if known.
    fn original_of(
        &self,
        attested: &CanonicalJsonObject,
        guard_key_ids: &[String],
    ) -> Option<CanonicalJsonObject> {
        let print = fingerprint(attested, guard_key_ids);
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_print.get(&print).cloned()
    }
}

/// Whether `obj` lists or is signed with one of `ids`.
fn has_guard_key(obj: &CanonicalJsonObject, ids: &[String]) -> bool {
    let listed = ["verify_keys", "old_verify_keys"].iter().any(|f| {
        matches!(obj.get(*f), Some(CanonicalJsonValue::Object(m)) if ids.iter().any(|id| m.contains_key(id)))
    });
    let signed = matches!(obj.get("signatures"), Some(CanonicalJsonValue::Object(s)) if s.values().any(|e| {
        matches!(e, CanonicalJsonValue::Object(m) if ids.iter().any(|id| m.contains_key(id)))
    }));
    listed || signed
}

/// What [`restore_notary_answer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The answer to pass on.
    pub body: Vec<u8>,
    /// Server names whose original objects were restored and signed again as the notary.
    pub restored: Vec<String>,
    /// Attested objects left out (their original is not known, or no notary key): server names.
    pub left_out: Vec<String>,
}

/// Gives a protected server's notary answer (`{"server_keys": [...]}`) its original key
/// objects back (see the module notes): each object that carries a guard key id is replaced by
/// the remembered original, signed as `notary` (the protected server's name and key) when the
/// answer's object carried that server's signature; objects that cannot be restored are left
/// out. A body of another shape is an error (the caller strips or refuses it).
pub fn restore_notary_answer(
    body: &[u8],
    originals: &KeyOriginals,
    guard_key_ids: &[String],
    notary: Option<(&str, &SigningKey)>,
) -> Result<Restored, AttestError> {
    let value: CanonicalJsonValue =
        serde_json::from_slice(body).map_err(|e| AttestError::Json(e.to_string()))?;
    let CanonicalJsonValue::Object(mut top) = value else {
        return Err(AttestError::Shape("not a JSON object"));
    };
    let Some(CanonicalJsonValue::Array(list)) = top.remove("server_keys") else {
        return Err(AttestError::Shape("no `server_keys` list"));
    };
    let mut out = Vec::with_capacity(list.len());
    let (mut restored, mut left_out) = (Vec::new(), Vec::new());
    for entry in list {
        let CanonicalJsonValue::Object(obj) = &entry else {
            out.push(entry);
            continue;
        };
        if !has_guard_key(obj, guard_key_ids) {
            out.push(entry);
            continue;
        }
        let server = match obj.get("server_name") {
            Some(CanonicalJsonValue::String(s)) => s.clone(),
            _ => String::new(),
        };
        let signed_by_notary = |name: &str| matches!(obj.get("signatures"), Some(CanonicalJsonValue::Object(s)) if s.contains_key(name));
        let original = originals.original_of(obj, guard_key_ids);
        let resigned = match (original, notary) {
            (Some(mut o), Some((name, key))) if signed_by_notary(name) => {
                key.sign_json(name, &mut o).ok().map(|()| o)
            }
            // The answer carried no signature of the protected server: the original as it is.
            (Some(o), Some((name, _))) if !signed_by_notary(name) => Some(o),
            _ => None,
        };
        match resigned {
            Some(o) => {
                restored.push(server);
                out.push(CanonicalJsonValue::Object(o));
            }
            None => left_out.push(server),
        }
    }
    top.insert("server_keys".into(), CanonicalJsonValue::Array(out));
    Ok(Restored {
        body: serde_json::to_vec(&CanonicalJsonValue::Object(top)).expect("canonical JSON"),
        restored,
        left_out,
    })
}

/// A key response leaving the protected side that carries guard key ids: a notary answer gets
/// its originals back ([`restore_notary_answer`], what cannot be restored is left out and
/// logged); a single key object is stripped of the guard key ids
/// ([`super::attest::strip_attested`]).
pub fn leaving_protected_side(
    body: &[u8],
    originals: &KeyOriginals,
    guard_key_ids: &[String],
    notary: Option<(&str, &SigningKey)>,
) -> Result<Vec<u8>, AttestError> {
    let is_query = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("server_keys").is_some());
    if !is_query {
        return super::attest::strip_attested(body, guard_key_ids);
    }
    let r = restore_notary_answer(body, originals, guard_key_ids, notary)?;
    for server in &r.left_out {
        tracing::warn!(server = %server, "notary answer of a protected server: attested key object whose original is not known, left out");
    }
    if !r.restored.is_empty() {
        tracing::debug!(servers = ?r.restored, "notary answer of a protected server: original key objects restored and signed as the notary");
    }
    Ok(r.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::attest;
    use ruma::signatures::{verify_json, PublicKeyMap};

    fn key_object(server: &str, key: &SigningKey, until: u64) -> Vec<u8> {
        let mut obj: CanonicalJsonObject = serde_json::from_value(serde_json::json!({
            "server_name": server, "valid_until_ts": until, "old_verify_keys": {},
            "verify_keys": {key.key_id(): {"key": key.public_key_base64()}}
        }))
        .unwrap();
        key.sign_json(server, &mut obj).unwrap();
        serde_json::to_vec(&obj).unwrap()
    }

    fn verifies(obj: &CanonicalJsonObject, signer: &str, key: &SigningKey) -> bool {
        let mut only: CanonicalJsonObject = obj.clone();
        if let Some(CanonicalJsonValue::Object(s)) = only.get_mut("signatures") {
            s.retain(|k, _| k == signer);
        }
        let mut map = PublicKeyMap::new();
        let mut set = std::collections::BTreeMap::new();
        set.insert(
            key.key_id(),
            ruma::serde::Base64::new(key.public_key().to_vec()),
        );
        map.insert(signer.to_owned(), set);
        verify_json(&map, &only).is_ok()
    }

    /// The protected server stored what the guard attested and answers a key query as notary:
    /// the answer's objects become the originals again, signed as the notary by the protected
    /// server's key; the guard key is gone; unknown attested objects are left out.
    #[test]
    fn notary_answers_get_their_originals_back_and_verify() {
        let remote = SigningKey::generate("r1").unwrap();
        let other = SigningKey::generate("o1").unwrap();
        let guard = SigningKey::generate("gw1").unwrap();
        let hs1 = SigningKey::generate("hs1").unwrap();
        let originals = KeyOriginals::default();
        let original = key_object("remote.test", &remote, 4_000_000_000_000);
        assert_eq!(originals.remember_response(&original), 1);
        // What hs1 stored (attested by the guard) and what it serves as notary.
        let attested = attest::attest_server_keys(&original, &guard).unwrap();
        let mut served: CanonicalJsonObject = serde_json::from_slice(&attested).unwrap();
        hs1.sign_json("hs1.test", &mut served).unwrap();
        // An object the guard never saw (attested elsewhere, e.g. before a restart).
        let unknown = attest::attest_server_keys(
            &key_object("other.test", &other, 4_000_000_000_000),
            &guard,
        )
        .unwrap();
        let mut unknown: CanonicalJsonObject = serde_json::from_slice(&unknown).unwrap();
        hs1.sign_json("hs1.test", &mut unknown).unwrap();
        // An object without the guard key (hs1's own keys): unchanged.
        let own: CanonicalJsonObject =
            serde_json::from_slice(&key_object("hs1.test", &hs1, 4_000_000_000_000)).unwrap();
        let answer = serde_json::to_vec(&serde_json::json!({
            "server_keys": [served, unknown, own.clone()]
        }))
        .unwrap();

        let ids = [guard.key_id()];
        let r = restore_notary_answer(&answer, &originals, &ids, Some(("hs1.test", &hs1))).unwrap();
        assert_eq!(r.restored, vec!["remote.test".to_string()]);
        assert_eq!(r.left_out, vec!["other.test".to_string()]);
        assert!(!String::from_utf8_lossy(&r.body).contains("gw1"));
        let v: CanonicalJsonValue = serde_json::from_slice(&r.body).unwrap();
        let list = objects(&v);
        assert_eq!(list.len(), 2);
        assert!(verifies(list[0], "remote.test", &remote), "self-signature");
        assert!(verifies(list[0], "hs1.test", &hs1), "notary signature");
        assert!(attest::parse_verified(list[0]).is_ok());
        assert_eq!(list[1], &own);

        // Without hs1's key the attested object cannot be vouched for: left out.
        let r = restore_notary_answer(&answer, &originals, &ids, None).unwrap();
        assert_eq!(r.left_out.len(), 2);
    }

    #[test]
    fn another_object_never_matches_and_memory_is_bounded() {
        let remote = SigningKey::generate("r1").unwrap();
        let guard = SigningKey::generate("gw1").unwrap();
        let hs1 = SigningKey::generate("hs1").unwrap();
        let originals = KeyOriginals::default();
        originals.remember_response(&key_object("remote.test", &remote, 1_000));
        // Same keys, later validity: a different object.
        let later = key_object("remote.test", &remote, 2_000);
        let attested = attest::attest_server_keys(&later, &guard).unwrap();
        let mut served: CanonicalJsonObject = serde_json::from_slice(&attested).unwrap();
        hs1.sign_json("hs1.test", &mut served).unwrap();
        let answer = serde_json::to_vec(&serde_json::json!({ "server_keys": [served] })).unwrap();
        let r = restore_notary_answer(
            &answer,
            &originals,
            &[guard.key_id()],
            Some(("hs1.test", &hs1)),
        )
        .unwrap();
        assert_eq!(r.left_out, vec!["remote.test".to_string()]);

        for i in 0..(MAX_ORIGINALS as u64 + 10) {
            originals.remember_response(&key_object("remote.test", &remote, 10_000 + i));
        }
        let inner = originals.inner.lock().unwrap();
        assert_eq!(inner.by_print.len(), MAX_ORIGINALS);
        assert_eq!(inner.order.len(), MAX_ORIGINALS);
    }
}
