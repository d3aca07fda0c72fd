//! Remote server keys: a bounded cache of verify keys with their validity, a fetch seam, and
//! verification of inbound X-Matrix signatures and PDU signatures/hashes against it.
//!
//! # Design notes
//!
//! * **Where keys come from.** [`RemoteKeys::insert_verified`] accepts a server key object only
//!   if it is self-signed by one of its own `verify_keys` (every such signature valid; see
//!   [`super::attest`]). Self-signing proves consistency, not authenticity: anyone can make a
//!   self-signed object for any name. Authenticity comes from the transport, so objects must
//!   come from the server itself over TLS with a verified certificate (or from a notary whose
//!   signature the caller checked). [`KeyFetcher`] implementations carry that duty and should
//!   also bound time and size. On a fetch, the response's `server_name` must be the server
//!   asked for.
//! * **Validity** (spec "Validating hashes and signatures on received events", Synapse
//!   `Keyring.process_request`): a key from `verify_keys` is valid until the object's
//!   `valid_until_ts`, capped at 7 days after it was received (the spec's rule for room
//!   versions ≥ 5; a capped key is simply re-fetched); a key from `old_verify_keys` until its
//!   `expired_ts`. [`RemoteKeys::key`] returns a key only if the asked time is at or before that
//!   instant: requests ask with "now", events of room versions ≥ 5 with their
//!   `origin_server_ts`, events of older room versions with time 0 (any key the server ever
//!   published, as Synapse does for them). A later response for the same key id extends the
//!   validity (same key); a different key under a cached key id replaces it only once the
//!   cached one has expired ("first seen wins" while valid, as MSC4499 proposes: a hijacked
//!   fetch cannot rebind a key id that is in use).
//! * **Bounds.** At most `capacity` servers (least recently used evicted), at most
//!   [`MAX_KEYS_PER_SERVER`] keys per server (those valid the shortest evicted). Fetches are
//!   single-flight per server and attempted at most once per [`REFETCH_INTERVAL`] per server,
//!   successful or not; the table of fetch attempts is bounded too (when it is full of recent
//!   attempts, further fetches are refused: fail closed). A global limit on concurrent fetches
//!   to distinct servers belongs to the fetcher.
//! * **PDUs.** [`RemoteKeys::verify_pdu`] lets ruma (`required_server_signatures_to_verify_event`)
//!   say which servers must have signed (sender's server; v1–v2 also the event id's server;
//!   restricted joins the authorising server), builds the public-key map for exactly those
//!   from the cache, and calls ruma's `verify_event`. A valid signature with a content hash
//!   mismatch is not an error: the event was redacted upstream and the receiver keeps the
//!   redacted form ([`PduCheck::HashMismatch`]). PDUs with floats (allowed in room versions
//!   before 6) cannot be turned into ruma's canonical JSON and are refused as malformed.
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use ruma::serde::Base64;
use ruma::signatures::{
    required_server_signatures_to_verify_event, verify_event, PublicKeyMap, VerificationError,
    Verified,
};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomVersionId};
use serde_json::value::RawValue;

use super::attest::{parse_verified, AttestError, KeyObject};
use crate::federation::xmatrix::{verify_request_for, XMatrix, XMatrixError};

/// Default number of servers kept.
pub const DEFAULT_CAPACITY: usize = 4096;
/// Keys kept per server.
pub const MAX_KEYS_PER_SERVER: usize = 64;
/// Minimum time between two key fetches for the same server.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Cap on how far in the future a `valid_until_ts` is honoured, from the time of receipt.
pub const MAX_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Errors of the remote key cache and of verification against it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteKeyError {
    /// The key object is malformed or not validly self-signed.
    #[error("invalid server key object: {0}")]
    KeyObject(#[from] AttestError),
    /// A fetched key object is for another server.
    #[error("key response for {got}, expected {expected}")]
    WrongServer {
        /// The server asked for.
        expected: String,
        /// The `server_name` in the response.
        got: String,
    },
    /// None of the needed keys is in the cache and valid at the time asked.
    #[error("no valid key of {server} among {key_ids:?}")]
    MissingKey {
        /// The server.
        server: String,
        /// The key ids that would do.
        key_ids: Vec<String>,
    },
    /// The server's freshly fetched keys do not include the key (or not valid at that time).
    #[error("{server} does not publish a valid key {key_id}")]
    UnknownKey {
        /// The server.
        server: String,
        /// The key id.
        key_id: String,
    },
    /// The key is unknown and the server's keys were fetched (or tried) less than
    /// [`REFETCH_INTERVAL`] ago.
    #[error("key fetch for {server} rate-limited")]
    RateLimited {
        /// The server.
        server: String,
    },
    /// Too many distinct servers had fetches recently; no room to track another.
    #[error("too many recent key fetches")]
    Busy,
    /// The fetcher failed.
    #[error("key fetch for {server} failed: {reason}")]
    Fetch {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
    /// The X-Matrix signature does not verify (or the header is unusable).
    #[error("X-Matrix: {0}")]
    XMatrix(#[from] XMatrixError),
    /// The room version is not one ruma knows rules for.
    #[error("unknown room version {0}")]
    UnknownRoomVersion(String),
    /// The PDU cannot be checked (not canonical JSON, fields missing, too large).
    #[error("malformed PDU: {0}")]
    MalformedPdu(String),
    /// The PDU has no signature by a server that must have signed it.
    #[error("PDU not signed by {server}")]
    PduNotSigned {
        /// The server.
        server: String,
    },
    /// A PDU signature does not verify.
    #[error("PDU signature does not verify: {0}")]
    BadPduSignature(String),
}

/// The outcome of a successful PDU check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduCheck {
    /// Signatures valid, content hash matches.
    Verified,
    /// Signatures valid, content hash does not match: the event was redacted on the way; the
    /// receiver must keep (and pass on) the redacted form.
    HashMismatch,
}

/// Fetches a server's key object (`GET /_matrix/key/v2/server` from the server itself, over
/// verified TLS). Returns the response body. See the module notes for its duties.
pub trait KeyFetcher: Send + Sync {
    /// Fetches the key object of `server`.
    fn fetch<'a>(&'a self, server: &'a str) -> BoxFuture<'a, Result<Vec<u8>, RemoteKeyError>>;
}

#[derive(Debug, Clone, Copy)]
struct KeyEntry {
    key: [u8; 32],
    /// Valid at any time ≤ this (ms since the epoch).
    valid_until_ms: u64,
}

#[derive(Debug)]
struct ServerKeys {
    keys: HashMap<String, KeyEntry>,
    last_used: AtomicU64,
}

struct FetchSlot {
    last_attempt: Option<SystemTime>,
    gate: Arc<tokio::sync::Mutex<()>>,
}

struct Inner {
    servers: RwLock<HashMap<String, ServerKeys>>,
    fetches: Mutex<HashMap<String, FetchSlot>>,
    capacity: usize,
    tick: AtomicU64,
}

/// The remote key cache. Cheap to clone (shared state behind an `Arc`); `Send + Sync`.
#[derive(Clone)]
pub struct RemoteKeys {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("servers", &self.len())
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

impl Default for RemoteKeys {
    fn default() -> Self {
        Self::new()
    }
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

enum FetchOutcome {
    Fetched,
    RecentlyTried,
}

impl RemoteKeys {
    /// An empty cache for up to [`DEFAULT_CAPACITY`] servers.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// An empty cache for up to `servers` servers (at least 1).
    pub fn with_capacity(servers: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                servers: RwLock::new(HashMap::new()),
                fetches: Mutex::new(HashMap::new()),
                capacity: servers.max(1),
                tick: AtomicU64::new(0),
            }),
        }
    }

    /// Number of servers with cached keys.
    pub fn len(&self) -> usize {
        self.inner.servers.read().expect("lock").len()
    }

    /// Whether no keys are cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Verifies a server key object (self-signed by one of its own `verify_keys`) and caches
    /// its keys; returns the cached key ids (current and old), sorted. `now` is the time of
    /// receipt (caps the validity, see the module notes). The caller vouches for where the
    /// object came from.
    pub fn insert_verified(
        &self,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<String>, RemoteKeyError> {
        self.insert_checked(None, body, now)
    }

    /// [`Self::insert_verified`] for an object fetched from `server`: its `server_name` must be
    /// `server`.
    pub fn insert_fetched(
        &self,
        server: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<String>, RemoteKeyError> {
        self.insert_checked(Some(server), body, now)
    }

    fn insert_checked(
        &self,
        expected: Option<&str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<String>, RemoteKeyError> {
        let value: CanonicalJsonValue = serde_json::from_slice(body)
            .map_err(|e| RemoteKeyError::KeyObject(AttestError::Json(e.to_string())))?;
        let CanonicalJsonValue::Object(obj) = value else {
            return Err(AttestError::Shape("not a JSON object").into());
        };
        let parsed = parse_verified(&obj)?;
        if let Some(expected) = expected {
            if parsed.server_name != expected {
                return Err(RemoteKeyError::WrongServer {
                    expected: expected.to_owned(),
                    got: parsed.server_name,
                });
            }
        }
        Ok(self.store(parsed, now))
    }

    fn store(&self, parsed: KeyObject, now: SystemTime) -> Vec<String> {
        let now_ms = to_ms(now);
        let cap = now_ms.saturating_add(MAX_VALIDITY.as_millis() as u64);
        let current_until = parsed.valid_until_ts.min(cap);
        let new_entries = parsed
            .verify_keys
            .iter()
            .map(|(id, k)| (id.clone(), *k, current_until))
            .chain(
                parsed
                    .old_verify_keys
                    .iter()
                    .filter(|(id, _)| !parsed.verify_keys.contains_key(*id))
                    .map(|(id, (k, exp))| (id.clone(), *k, *exp)),
            );

        let tick = self.inner.tick.fetch_add(1, Ordering::Relaxed);
        let mut servers = self.inner.servers.write().expect("lock");
        if !servers.contains_key(&parsed.server_name) && servers.len() >= self.inner.capacity {
            if let Some(lru) = servers
                .iter()
                .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
                .map(|(name, _)| name.clone())
            {
                servers.remove(&lru);
            }
        }
        let entry = servers
            .entry(parsed.server_name.clone())
            .or_insert_with(|| ServerKeys {
                keys: HashMap::new(),
                last_used: AtomicU64::new(tick),
            });
        entry.last_used.store(tick, Ordering::Relaxed);
        let mut ids = Vec::new();
        for (id, key, until) in new_entries {
            match entry.keys.get_mut(&id) {
                Some(e) if e.key == key => e.valid_until_ms = e.valid_until_ms.max(until),
                Some(e) if e.valid_until_ms >= now_ms => {
                    tracing::warn!(
                        server = %parsed.server_name,
                        key_id = %id,
                        "key id rebound to another key while the cached one is valid; keeping the cached key"
                    );
                    continue;
                }
                _ => {
                    entry.keys.insert(
                        id.clone(),
                        KeyEntry {
                            key,
                            valid_until_ms: until,
                        },
                    );
                }
            }
            ids.push(id);
        }
        while entry.keys.len() > MAX_KEYS_PER_SERVER {
            let shortest = entry
                .keys
                .iter()
                .min_by_key(|(_, e)| e.valid_until_ms)
                .map(|(id, _)| id.clone())
                .expect("non-empty");
            entry.keys.remove(&shortest);
        }
        ids.sort();
        ids.retain(|id| entry.keys.contains_key(id));
        ids
    }

    /// The key `key_id` of `server` if cached and valid at `at` (see the module notes).
    pub fn key(&self, server: &str, key_id: &str, at: SystemTime) -> Option<[u8; 32]> {
        self.key_at_ms(server, key_id, to_ms(at))
    }

    fn key_at_ms(&self, server: &str, key_id: &str, at_ms: u64) -> Option<[u8; 32]> {
        let servers = self.inner.servers.read().expect("lock");
        let s = servers.get(server)?;
        s.last_used.store(
            self.inner.tick.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let e = s.keys.get(key_id)?;
        (at_ms <= e.valid_until_ms).then_some(e.key)
    }

    /// Fetches `server`'s keys unless tried within [`REFETCH_INTERVAL`]; single-flight.
    async fn fetch_server(
        &self,
        fetcher: &dyn KeyFetcher,
        server: &str,
        now: SystemTime,
    ) -> Result<FetchOutcome, RemoteKeyError> {
        let gate = {
            let mut fetches = self.inner.fetches.lock().expect("lock");
            if !fetches.contains_key(server) {
                let limit = self.inner.capacity.saturating_mul(2);
                if fetches.len() >= limit {
                    fetches.retain(|_, slot| {
                        Arc::strong_count(&slot.gate) > 1
                            || slot.last_attempt.is_some_and(|t| {
                                now.duration_since(t)
                                    .is_ok_and(|elapsed| elapsed < REFETCH_INTERVAL)
                            })
                    });
                }
                if fetches.len() >= limit {
                    return Err(RemoteKeyError::Busy);
                }
            }
            fetches
                .entry(server.to_owned())
                .or_insert_with(|| FetchSlot {
                    last_attempt: None,
                    gate: Arc::new(tokio::sync::Mutex::new(())),
                })
                .gate
                .clone()
        };
        let _flight = gate.lock().await;
        {
            let mut fetches = self.inner.fetches.lock().expect("lock");
            let slot = fetches
                .entry(server.to_owned())
                .or_insert_with(|| FetchSlot {
                    last_attempt: None,
                    gate: gate.clone(),
                });
            // A clock that went backwards does not block fetches.
            if slot.last_attempt.is_some_and(|t| {
                now.duration_since(t)
                    .is_ok_and(|elapsed| elapsed < REFETCH_INTERVAL)
            }) {
                return Ok(FetchOutcome::RecentlyTried);
            }
            slot.last_attempt = Some(now);
        }
        let body = fetcher.fetch(server).await?;
        self.insert_checked(Some(server), &body, now)?;
        Ok(FetchOutcome::Fetched)
    }

    /// The key `key_id` of `server` valid at `now`, fetching the server's keys on a miss
    /// (single-flight per server; at most one attempt per server per [`REFETCH_INTERVAL`]).
    pub async fn key_or_fetch(
        &self,
        fetcher: &dyn KeyFetcher,
        server: &str,
        key_id: &str,
        now: SystemTime,
    ) -> Result<[u8; 32], RemoteKeyError> {
        if let Some(k) = self.key(server, key_id, now) {
            return Ok(k);
        }
        let outcome = self.fetch_server(fetcher, server, now).await?;
        if let Some(k) = self.key(server, key_id, now) {
            return Ok(k);
        }
        Err(match outcome {
            FetchOutcome::Fetched => RemoteKeyError::UnknownKey {
                server: server.to_owned(),
                key_id: key_id.to_owned(),
            },
            FetchOutcome::RecentlyTried => RemoteKeyError::RateLimited {
                server: server.to_owned(),
            },
        })
    }

    /// Verifies an inbound request's X-Matrix signature with the cached key of
    /// `header.origin` valid at `now`. `destination` is the server the request was received
    /// for (a header naming another destination is refused); `uri` the path and query as
    /// received; `content` the JSON body, if any. A key not in the cache is
    /// [`RemoteKeyError::MissingKey`]: use [`Self::verify_x_matrix_or_fetch`] to fetch it.
    pub fn verify_x_matrix(
        &self,
        header: &XMatrix,
        method: &str,
        uri: &str,
        content: Option<&RawValue>,
        destination: &str,
        now: SystemTime,
    ) -> Result<(), RemoteKeyError> {
        let key = self
            .key(header.origin.as_str(), header.key.as_str(), now)
            .ok_or_else(|| RemoteKeyError::MissingKey {
                server: header.origin.to_string(),
                key_ids: vec![header.key.to_string()],
            })?;
        Ok(verify_request_for(
            header,
            destination,
            method,
            uri,
            content,
            &key,
        )?)
    }

    /// [`Self::verify_x_matrix`], fetching the origin's keys on a miss.
    #[allow(clippy::too_many_arguments)]
    pub async fn verify_x_matrix_or_fetch(
        &self,
        fetcher: &dyn KeyFetcher,
        header: &XMatrix,
        method: &str,
        uri: &str,
        content: Option<&RawValue>,
        destination: &str,
        now: SystemTime,
    ) -> Result<(), RemoteKeyError> {
        let key = self
            .key_or_fetch(fetcher, header.origin.as_str(), header.key.as_str(), now)
            .await?;
        Ok(verify_request_for(
            header,
            destination,
            method,
            uri,
            content,
            &key,
        )?)
    }

    /// Verifies a PDU's signatures and content hash against the cache (see the module notes).
    /// `Ok(HashMismatch)` means: signatures valid, content redacted upstream.
    pub fn verify_pdu(
        &self,
        pdu: &RawValue,
        room_version: &RoomVersionId,
    ) -> Result<PduCheck, RemoteKeyError> {
        let rules = room_version
            .rules()
            .ok_or_else(|| RemoteKeyError::UnknownRoomVersion(room_version.to_string()))?;
        let obj: CanonicalJsonObject = serde_json::from_str(pdu.get())
            .map_err(|e| RemoteKeyError::MalformedPdu(e.to_string()))?;
        let servers = required_server_signatures_to_verify_event(&obj, &rules.signatures)
            .map_err(|e| RemoteKeyError::MalformedPdu(e.to_string()))?;
        let at_ms = if rules.enforce_key_validity {
            match obj.get("origin_server_ts") {
                Some(CanonicalJsonValue::Integer(i)) => u64::try_from(i64::from(*i)).unwrap_or(0),
                _ => return Err(RemoteKeyError::MalformedPdu("origin_server_ts".into())),
            }
        } else {
            0
        };
        let Some(CanonicalJsonValue::Object(signatures)) = obj.get("signatures") else {
            return Err(RemoteKeyError::MalformedPdu("signatures".into()));
        };

        let mut map = PublicKeyMap::new();
        for server in &servers {
            let server = server.as_str();
            let Some(CanonicalJsonValue::Object(sigs)) = signatures.get(server) else {
                return Err(RemoteKeyError::PduNotSigned {
                    server: server.to_owned(),
                });
            };
            let set: std::collections::BTreeMap<String, Base64> = sigs
                .keys()
                .filter_map(|id| {
                    self.key_at_ms(server, id, at_ms)
                        .map(|k| (id.clone(), Base64::new(k.to_vec())))
                })
                .collect();
            if set.is_empty() {
                let key_ids: BTreeSet<String> = sigs
                    .keys()
                    .filter(|id| id.starts_with("ed25519:"))
                    .cloned()
                    .collect();
                if key_ids.is_empty() {
                    return Err(RemoteKeyError::PduNotSigned {
                        server: server.to_owned(),
                    });
                }
                return Err(RemoteKeyError::MissingKey {
                    server: server.to_owned(),
                    key_ids: key_ids.into_iter().collect(),
                });
            }
            map.insert(server.to_owned(), set);
        }

        match verify_event(&map, &obj, &rules) {
            Ok(Verified::All) => Ok(PduCheck::Verified),
            Ok(Verified::Signatures) => Ok(PduCheck::HashMismatch),
            Err(e @ VerificationError::Json(_))
            | Err(e @ VerificationError::ParseIdentifier { .. }) => {
                Err(RemoteKeyError::MalformedPdu(e.to_string()))
            }
            Err(e) => Err(RemoteKeyError::BadPduSignature(e.to_string())),
        }
    }

    /// [`Self::verify_pdu`], fetching the keys of each signing server that is missing (each
    /// server at most once per call, subject to the refetch rate limit). `now` is the current
    /// time (for the rate limit and the receipt time of fetched keys).
    pub async fn verify_pdu_or_fetch(
        &self,
        fetcher: &dyn KeyFetcher,
        pdu: &RawValue,
        room_version: &RoomVersionId,
        now: SystemTime,
    ) -> Result<PduCheck, RemoteKeyError> {
        let mut fetched = BTreeSet::new();
        loop {
            match self.verify_pdu(pdu, room_version) {
                Err(RemoteKeyError::MissingKey { server, .. }) if !fetched.contains(&server) => {
                    match self.fetch_server(fetcher, &server, now).await? {
                        FetchOutcome::Fetched => {}
                        FetchOutcome::RecentlyTried => {
                            // Another task may have just fetched them: one more look.
                            if let Err(RemoteKeyError::MissingKey { .. }) =
                                self.verify_pdu(pdu, room_version)
                            {
                                return Err(RemoteKeyError::RateLimited { server });
                            }
                        }
                    }
                    fetched.insert(server);
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::xmatrix::sign_request;
    use crate::keys::SigningKey;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    const REMOTE: &str = "remote.example";
    const T0: u64 = 1_700_000_000_000; // ms

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn key_object(
        server: &str,
        current: &SigningKey,
        valid_until: u64,
        old: &[(&SigningKey, u64)],
    ) -> Vec<u8> {
        let mut old_map = serde_json::Map::new();
        for (k, exp) in old {
            old_map.insert(
                k.key_id(),
                json!({"key": k.public_key_base64(), "expired_ts": exp}),
            );
        }
        let v = json!({
            "server_name": server,
            "valid_until_ts": valid_until,
            "verify_keys": { current.key_id(): { "key": current.public_key_base64() } },
            "old_verify_keys": old_map,
        });
        let mut obj: CanonicalJsonObject = serde_json::from_value(v).unwrap();
        current.sign_json(server, &mut obj).unwrap();
        serde_json::to_vec(&obj).unwrap()
    }

    /// A fetcher that serves fixed bodies per server and counts calls.
    struct FakeFetcher {
        bodies: Mutex<HashMap<String, Vec<u8>>>,
        calls: AtomicUsize,
        delay: Duration,
    }

    impl FakeFetcher {
        fn new() -> Self {
            Self {
                bodies: Mutex::new(HashMap::new()),
                calls: AtomicUsize::new(0),
                delay: Duration::ZERO,
            }
        }
        fn serve(&self, server: &str, body: Vec<u8>) {
            self.bodies.lock().unwrap().insert(server.to_owned(), body);
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl KeyFetcher for FakeFetcher {
        fn fetch<'a>(&'a self, server: &'a str) -> BoxFuture<'a, Result<Vec<u8>, RemoteKeyError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                self.bodies
                    .lock()
                    .unwrap()
                    .get(server)
                    .cloned()
                    .ok_or_else(|| RemoteKeyError::Fetch {
                        server: server.to_owned(),
                        reason: "unreachable".into(),
                    })
            })
        }
    }

    #[test]
    fn insert_and_validity() {
        let cache = RemoteKeys::new();
        let cur = SigningKey::generate("a_cur").unwrap();
        let old = SigningKey::generate("a_old").unwrap();
        let body = key_object(REMOTE, &cur, T0 + 3_600_000, &[(&old, T0 - 1000)]);
        let ids = cache.insert_verified(&body, at(T0)).unwrap();
        assert_eq!(ids, vec![cur.key_id(), old.key_id()]);
        assert_eq!(cache.len(), 1);

        // Current key: valid up to valid_until_ts, not after.
        assert_eq!(
            cache.key(REMOTE, &cur.key_id(), at(T0)),
            Some(cur.public_key())
        );
        assert_eq!(
            cache.key(REMOTE, &cur.key_id(), at(T0 + 3_600_000)),
            Some(cur.public_key())
        );
        assert_eq!(cache.key(REMOTE, &cur.key_id(), at(T0 + 3_600_001)), None);
        // Old key: only for times at or before expired_ts.
        assert_eq!(cache.key(REMOTE, &old.key_id(), at(T0)), None);
        assert_eq!(
            cache.key(REMOTE, &old.key_id(), at(T0 - 1000)),
            Some(old.public_key())
        );
        // Unknown server / key id.
        assert_eq!(cache.key("other.example", &cur.key_id(), at(T0)), None);
        assert_eq!(cache.key(REMOTE, "ed25519:nope", at(T0)), None);
    }

    #[test]
    fn validity_is_capped_at_seven_days_after_receipt_and_extended_by_later_responses() {
        let cache = RemoteKeys::new();
        let cur = SigningKey::generate("a_cur").unwrap();
        let far = T0 + 365 * 24 * 3_600_000;
        cache
            .insert_verified(&key_object(REMOTE, &cur, far, &[]), at(T0))
            .unwrap();
        let week = 7 * 24 * 3_600_000;
        assert!(cache.key(REMOTE, &cur.key_id(), at(T0 + week)).is_some());
        assert!(cache
            .key(REMOTE, &cur.key_id(), at(T0 + week + 1))
            .is_none());
        // A later response extends it.
        cache
            .insert_verified(&key_object(REMOTE, &cur, far, &[]), at(T0 + week))
            .unwrap();
        assert!(cache
            .key(REMOTE, &cur.key_id(), at(T0 + week + 1))
            .is_some());
        // A different key under the same id does not replace it while the cached one is
        // valid (and is not reported as cached) …
        let other = SigningKey::generate("a_cur").unwrap();
        let ids = cache
            .insert_verified(&key_object(REMOTE, &other, far, &[]), at(T0 + week))
            .unwrap();
        assert!(ids.is_empty());
        assert_eq!(
            cache.key(REMOTE, &cur.key_id(), at(T0 + week)),
            Some(cur.public_key())
        );
        // … but does once it has expired.
        let later = T0 + 3 * week;
        let ids = cache
            .insert_verified(&key_object(REMOTE, &other, far, &[]), at(later))
            .unwrap();
        assert_eq!(ids, vec![cur.key_id()]);
        assert_eq!(
            cache.key(REMOTE, &cur.key_id(), at(later)),
            Some(other.public_key())
        );
    }

    #[test]
    fn unverifiable_objects_are_not_cached() {
        let cache = RemoteKeys::new();
        let cur = SigningKey::generate("a_cur").unwrap();
        let mut obj: CanonicalJsonObject =
            serde_json::from_slice(&key_object(REMOTE, &cur, T0 + 1000, &[])).unwrap();
        obj.insert(
            "valid_until_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::MAX),
        );
        let e = cache
            .insert_verified(&serde_json::to_vec(&obj).unwrap(), at(T0))
            .unwrap_err();
        assert!(matches!(
            e,
            RemoteKeyError::KeyObject(AttestError::BadSignature { .. })
        ));
        assert!(cache.is_empty());
        assert!(matches!(
            cache.insert_verified(b"[1]", at(T0)),
            Err(RemoteKeyError::KeyObject(AttestError::Shape(_)))
        ));
    }

    #[test]
    fn capacity_evicts_least_recently_used_server() {
        let cache = RemoteKeys::with_capacity(2);
        let k = SigningKey::generate("a_1").unwrap();
        for s in ["a.example", "b.example"] {
            cache
                .insert_verified(&key_object(s, &k, T0 + 1000, &[]), at(T0))
                .unwrap();
        }
        // Touch a, so b is the least recently used.
        assert!(cache.key("a.example", &k.key_id(), at(T0)).is_some());
        cache
            .insert_verified(&key_object("c.example", &k, T0 + 1000, &[]), at(T0))
            .unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.key("a.example", &k.key_id(), at(T0)).is_some());
        assert!(cache.key("b.example", &k.key_id(), at(T0)).is_none());
        assert!(cache.key("c.example", &k.key_id(), at(T0)).is_some());
    }

    #[test]
    fn keys_per_server_are_bounded() {
        let cache = RemoteKeys::new();
        let cur = SigningKey::generate("a_cur").unwrap();
        let olds: Vec<SigningKey> = (0..MAX_KEYS_PER_SERVER + 5)
            .map(|i| SigningKey::generate(&format!("o{i}")).unwrap())
            .collect();
        let list: Vec<(&SigningKey, u64)> = olds
            .iter()
            .enumerate()
            .map(|(i, k)| (k, T0 - 100_000 + i as u64))
            .collect();
        let ids = cache
            .insert_verified(&key_object(REMOTE, &cur, T0 + 1000, &list), at(T0))
            .unwrap();
        assert_eq!(ids.len(), MAX_KEYS_PER_SERVER);
        assert!(cache.key(REMOTE, &cur.key_id(), at(T0)).is_some());
        // The shortest-lived old keys went.
        assert!(cache.key(REMOTE, "ed25519:o0", at(0)).is_none());
        let last = format!("ed25519:o{}", MAX_KEYS_PER_SERVER + 4);
        assert!(cache.key(REMOTE, &last, at(0)).is_some());
    }

    #[tokio::test]
    async fn fetch_on_miss_and_refetch_rate_limit() {
        let cache = RemoteKeys::new();
        let fetcher = FakeFetcher::new();
        let k1 = SigningKey::generate("a_1").unwrap();
        fetcher.serve(REMOTE, key_object(REMOTE, &k1, T0 + 3_600_000, &[]));

        // Miss → fetch → found.
        let got = cache
            .key_or_fetch(&fetcher, REMOTE, &k1.key_id(), at(T0))
            .await
            .unwrap();
        assert_eq!(got, k1.public_key());
        assert_eq!(fetcher.calls(), 1);
        // Hit: no fetch.
        cache
            .key_or_fetch(&fetcher, REMOTE, &k1.key_id(), at(T0 + 1))
            .await
            .unwrap();
        assert_eq!(fetcher.calls(), 1);

        // Unknown key id: the fetch just happened → rate-limited, no new fetch.
        let e = cache
            .key_or_fetch(&fetcher, REMOTE, "ed25519:a_2", at(T0 + 30_000))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            RemoteKeyError::RateLimited {
                server: REMOTE.into()
            }
        );
        assert_eq!(fetcher.calls(), 1);

        // After the interval: the server rotated to a_2 → fetched and found.
        let k2 = SigningKey::generate("a_2").unwrap();
        fetcher.serve(
            REMOTE,
            key_object(REMOTE, &k2, T0 + 3_600_000, &[(&k1, T0 + 60_000)]),
        );
        let got = cache
            .key_or_fetch(&fetcher, REMOTE, "ed25519:a_2", at(T0 + 60_000))
            .await
            .unwrap();
        assert_eq!(got, k2.public_key());
        assert_eq!(fetcher.calls(), 2);

        // A key the server does not publish, after the interval: fetched, then UnknownKey.
        let e = cache
            .key_or_fetch(&fetcher, REMOTE, "ed25519:a_3", at(T0 + 120_000))
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteKeyError::UnknownKey { .. }));
        assert_eq!(fetcher.calls(), 3);

        // Failed fetches count as attempts too.
        let e = cache
            .key_or_fetch(&fetcher, "down.example", "ed25519:x", at(T0))
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteKeyError::Fetch { .. }));
        let e = cache
            .key_or_fetch(&fetcher, "down.example", "ed25519:x", at(T0 + 59_999))
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteKeyError::RateLimited { .. }));
        assert_eq!(fetcher.calls(), 4);
    }

    #[tokio::test]
    async fn fetched_object_for_another_server_is_refused() {
        let cache = RemoteKeys::new();
        let fetcher = FakeFetcher::new();
        let k = SigningKey::generate("a_1").unwrap();
        // evil.example serves a (validly self-signed) object for remote.example.
        fetcher.serve("evil.example", key_object(REMOTE, &k, T0 + 1000, &[]));
        let e = cache
            .key_or_fetch(&fetcher, "evil.example", &k.key_id(), at(T0))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            RemoteKeyError::WrongServer {
                expected: "evil.example".into(),
                got: REMOTE.into()
            }
        );
        assert!(cache.key(REMOTE, &k.key_id(), at(T0)).is_none());
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once() {
        let cache = RemoteKeys::new();
        let mut fetcher = FakeFetcher::new();
        fetcher.delay = Duration::from_millis(50);
        let k = SigningKey::generate("a_1").unwrap();
        fetcher.serve(REMOTE, key_object(REMOTE, &k, T0 + 3_600_000, &[]));
        let id = k.key_id();
        let (a, b, c) = tokio::join!(
            cache.key_or_fetch(&fetcher, REMOTE, &id, at(T0)),
            cache.key_or_fetch(&fetcher, REMOTE, &id, at(T0)),
            cache.key_or_fetch(&fetcher, REMOTE, &id, at(T0)),
        );
        assert_eq!(a.unwrap(), k.public_key());
        assert_eq!(b.unwrap(), k.public_key());
        assert_eq!(c.unwrap(), k.public_key());
        assert_eq!(fetcher.calls(), 1);
    }

    #[tokio::test]
    async fn fetch_table_is_bounded() {
        let cache = RemoteKeys::with_capacity(1); // fetch table holds 2
        let fetcher = FakeFetcher::new();
        for s in ["a.example", "b.example"] {
            let _ = cache.key_or_fetch(&fetcher, s, "ed25519:x", at(T0)).await;
        }
        let e = cache
            .key_or_fetch(&fetcher, "c.example", "ed25519:x", at(T0 + 1))
            .await
            .unwrap_err();
        assert_eq!(e, RemoteKeyError::Busy);
        assert_eq!(fetcher.calls(), 2);
        // Once the attempts are old, their slots are reclaimed.
        let e = cache
            .key_or_fetch(&fetcher, "c.example", "ed25519:x", at(T0 + 60_000))
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteKeyError::Fetch { .. }));
        assert_eq!(fetcher.calls(), 3);
    }

    fn body(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn x_matrix_verification() {
        let cache = RemoteKeys::new();
        let k = SigningKey::generate("a_1").unwrap();
        let uri = "/_matrix/federation/v1/send/t1";
        let content = body(r#"{"origin":"remote.example","pdus":[],"edus":[]}"#);
        let h = XMatrix::parse(
            &sign_request(&k, REMOTE, "hs1.example", "PUT", uri, Some(&content)).unwrap(),
        )
        .unwrap();

        // Not cached yet.
        assert!(matches!(
            cache.verify_x_matrix(&h, "PUT", uri, Some(&content), "hs1.example", at(T0)),
            Err(RemoteKeyError::MissingKey { .. })
        ));
        // Fetched on demand, then verifies.
        let fetcher = FakeFetcher::new();
        fetcher.serve(REMOTE, key_object(REMOTE, &k, T0 + 3_600_000, &[]));
        cache
            .verify_x_matrix_or_fetch(
                &fetcher,
                &h,
                "PUT",
                uri,
                Some(&content),
                "hs1.example",
                at(T0),
            )
            .await
            .unwrap();
        cache
            .verify_x_matrix(&h, "PUT", uri, Some(&content), "hs1.example", at(T0))
            .unwrap();

        // Failures: changed body, wrong destination, expired key, forged key.
        let changed = body(r#"{"origin":"remote.example","pdus":[],"edus":[{}]}"#);
        assert_eq!(
            cache.verify_x_matrix(&h, "PUT", uri, Some(&changed), "hs1.example", at(T0)),
            Err(RemoteKeyError::XMatrix(XMatrixError::BadSignature))
        );
        assert_eq!(
            cache.verify_x_matrix(&h, "PUT", uri, Some(&content), "hs2.example", at(T0)),
            Err(RemoteKeyError::XMatrix(XMatrixError::DestinationMismatch))
        );
        assert!(matches!(
            cache.verify_x_matrix(
                &h,
                "PUT",
                uri,
                Some(&content),
                "hs1.example",
                at(T0 + 3_600_001)
            ),
            Err(RemoteKeyError::MissingKey { .. })
        ));
        let forger = SigningKey::generate("a_1").unwrap();
        let forged = XMatrix::parse(
            &sign_request(&forger, REMOTE, "hs1.example", "PUT", uri, Some(&content)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            cache.verify_x_matrix(&forged, "PUT", uri, Some(&content), "hs1.example", at(T0)),
            Err(RemoteKeyError::XMatrix(XMatrixError::BadSignature))
        );
    }

    fn signed_pdu(
        key: &SigningKey,
        version: &RoomVersionId,
        ts: u64,
        extra: serde_json::Value,
    ) -> CanonicalJsonObject {
        let mut v = json!({
            "auth_events": [],
            "content": {"msgtype": "m.text", "body": "hello"},
            "depth": 3,
            "origin_server_ts": ts,
            "prev_events": [],
            "room_id": "!room:remote.example",
            "sender": "@alice:remote.example",
            "type": "m.room.message",
            "unsigned": {"age": 5},
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        let mut obj: CanonicalJsonObject = serde_json::from_value(v).unwrap();
        let rules = version.rules().unwrap();
        ruma::signatures::hash_and_sign_event(REMOTE, key.key_pair(), &mut obj, &rules.redaction)
            .unwrap();
        obj
    }

    fn raw(obj: &CanonicalJsonObject) -> Box<RawValue> {
        RawValue::from_string(serde_json::to_string(obj).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn pdu_verification() {
        let cache = RemoteKeys::new();
        let k = SigningKey::generate("a_1").unwrap();
        let v12 = RoomVersionId::V12;
        let pdu = signed_pdu(&k, &v12, T0, json!({}));

        // Missing key → typed; the async form fetches it.
        assert_eq!(
            cache.verify_pdu(&raw(&pdu), &v12),
            Err(RemoteKeyError::MissingKey {
                server: REMOTE.into(),
                key_ids: vec![k.key_id()]
            })
        );
        let fetcher = FakeFetcher::new();
        fetcher.serve(REMOTE, key_object(REMOTE, &k, T0 + 3_600_000, &[]));
        assert_eq!(
            cache
                .verify_pdu_or_fetch(&fetcher, &raw(&pdu), &v12, at(T0))
                .await,
            Ok(PduCheck::Verified)
        );
        assert_eq!(cache.verify_pdu(&raw(&pdu), &v12), Ok(PduCheck::Verified));

        // unsigned is not covered: changing it keeps it verified.
        let mut u = pdu.clone();
        u.insert(
            "unsigned".into(),
            CanonicalJsonValue::Object(Default::default()),
        );
        assert_eq!(cache.verify_pdu(&raw(&u), &v12), Ok(PduCheck::Verified));

        // Content changed (what a redaction does): signatures hold, hash does not.
        let mut redacted = pdu.clone();
        redacted.insert(
            "content".into(),
            CanonicalJsonValue::Object(Default::default()),
        );
        redacted.remove("unsigned");
        assert_eq!(
            cache.verify_pdu(&raw(&redacted), &v12),
            Ok(PduCheck::HashMismatch)
        );
        // And ruma's own redaction of it too.
        let rules = v12.rules().unwrap();
        let pruned = ruma::canonical_json::redact(pdu.clone(), &rules.redaction, None).unwrap();
        assert_eq!(
            cache.verify_pdu(&raw(&pruned), &v12),
            Ok(PduCheck::HashMismatch)
        );

        // A covered field changed: bad signature.
        let mut t = pdu.clone();
        t.insert("depth".into(), CanonicalJsonValue::Integer(4u8.into()));
        assert!(matches!(
            cache.verify_pdu(&raw(&t), &v12),
            Err(RemoteKeyError::BadPduSignature(_))
        ));

        // Signed by a forger under the same key id: bad signature.
        let forger = SigningKey::generate("a_1").unwrap();
        let forged = signed_pdu(&forger, &v12, T0, json!({}));
        assert!(matches!(
            cache.verify_pdu(&raw(&forged), &v12),
            Err(RemoteKeyError::BadPduSignature(_))
        ));

        // No signature by the sender's server.
        let mut ns = pdu.clone();
        ns.insert(
            "signatures".into(),
            serde_json::from_value(json!({"other.example": {}})).unwrap(),
        );
        assert_eq!(
            cache.verify_pdu(&raw(&ns), &v12),
            Err(RemoteKeyError::PduNotSigned {
                server: REMOTE.into()
            })
        );

        // Key validity: v5+ checks origin_server_ts against valid_until_ts …
        let late = signed_pdu(&k, &v12, T0 + 3_600_001, json!({}));
        assert!(matches!(
            cache.verify_pdu(&raw(&late), &v12),
            Err(RemoteKeyError::MissingKey { .. })
        ));
        // … v4 does not.
        let v4 = RoomVersionId::V4;
        let late4 = signed_pdu(&k, &v4, T0 + 3_600_001, json!({}));
        assert_eq!(cache.verify_pdu(&raw(&late4), &v4), Ok(PduCheck::Verified));

        // Malformed and unknown versions.
        assert!(matches!(
            cache.verify_pdu(&body(r#"{"a":1.5}"#), &v12),
            Err(RemoteKeyError::MalformedPdu(_))
        ));
        let custom = RoomVersionId::try_from("org.example.custom").unwrap();
        assert!(matches!(
            cache.verify_pdu(&raw(&pdu), &custom),
            Err(RemoteKeyError::UnknownRoomVersion(_))
        ));
    }

    #[test]
    fn pdu_v1_needs_the_event_id_server_too() {
        let cache = RemoteKeys::new();
        let k = SigningKey::generate("a_1").unwrap();
        cache
            .insert_verified(&key_object(REMOTE, &k, T0 + 3_600_000, &[]), at(T0))
            .unwrap();
        let v1 = RoomVersionId::V1;
        // event_id on another server: that server must have signed too.
        let pdu = signed_pdu(&k, &v1, T0, json!({"event_id": "$abc:third.example"}));
        assert_eq!(
            cache.verify_pdu(&raw(&pdu), &v1),
            Err(RemoteKeyError::PduNotSigned {
                server: "third.example".into()
            })
        );
        let third = SigningKey::generate("t_1").unwrap();
        let mut both = pdu.clone();
        ruma::signatures::sign_event(
            "third.example",
            third.key_pair(),
            &mut both,
            &v1.rules().unwrap().redaction,
        )
        .unwrap();
        assert_eq!(
            cache.verify_pdu(&raw(&both), &v1),
            Err(RemoteKeyError::MissingKey {
                server: "third.example".into(),
                key_ids: vec![third.key_id()]
            })
        );
        cache
            .insert_verified(
                &key_object("third.example", &third, T0 + 3_600_000, &[]),
                at(T0),
            )
            .unwrap();
        assert_eq!(cache.verify_pdu(&raw(&both), &v1), Ok(PduCheck::Verified));
        // Same event id server as sender: one signature is enough.
        let own = signed_pdu(&k, &v1, T0, json!({"event_id": "$abc:remote.example"}));
        assert_eq!(cache.verify_pdu(&raw(&own), &v1), Ok(PduCheck::Verified));
    }

    #[test]
    fn remote_keys_is_send_sync_and_shares_state_across_clones() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<RemoteKeys>();
        let a = RemoteKeys::new();
        let b = a.clone();
        let k = SigningKey::generate("a_1").unwrap();
        a.insert_verified(&key_object(REMOTE, &k, T0 + 1000, &[]), at(T0))
            .unwrap();
        assert_eq!(b.key(REMOTE, &k.key_id(), at(T0)), Some(k.public_key()));
    }
}
