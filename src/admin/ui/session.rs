//! Review UI sessions: in memory, keyed by a random 256-bit id carried in a cookie, ended by
//! logout or after an idle period; each session has its own CSRF token.
//!
//! The map is keyed by the SHA-256 of the cookie value, so looking a session up does not
//! compare secrets byte by byte; the CSRF token is compared in constant time
//! ([`csrf_matches`]). The number of sessions is bounded: a login beyond the bound first drops
//! expired sessions and is refused if none expired.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::review::Principal;

/// How long a session lives without a request.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(15 * 60);
/// Most sessions held at once.
pub const DEFAULT_MAX_SESSIONS: usize = 1024;

/// Why a session could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the system random source failed")]
    Random,
    #[error("too many open sessions")]
    Full,
}

/// A live session as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub principal: Principal,
    /// The token every POST of this session must carry.
    pub csrf: String,
    /// The client-certificate principal name the session was opened with, if any: later
    /// requests must present the same one.
    pub tls_name: Option<String>,
}

struct Entry {
    active: Active,
    last_seen: Instant,
}

/// The open sessions of one review UI.
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Entry>>,
    idle: Duration,
    max: usize,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("idle", &self.idle)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(DEFAULT_IDLE, DEFAULT_MAX_SESSIONS)
    }
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a submitted CSRF token equals the session's (constant time in the token bytes).
pub fn csrf_matches(expected: &str, submitted: &str) -> bool {
    !expected.is_empty()
        && expected.len() == submitted.len()
        && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            max,
            rng: SystemRandom::new(),
        }
    }

    fn random_hex(&self) -> Result<String, SessionError> {
        let mut buf = [0u8; 32];
        self.rng.fill(&mut buf).map_err(|_| SessionError::Random)?;
        Ok(hex(&buf))
    }

    /// Opens a session; returns the cookie value (64 hex digits) and the session.
    pub fn create(
        &self,
        principal: Principal,
        tls_name: Option<String>,
    ) -> Result<(String, Active), SessionError> {
        self.create_at(principal, tls_name, Instant::now())
    }

    fn create_at(
        &self,
        principal: Principal,
        tls_name: Option<String>,
        now: Instant,
    ) -> Result<(String, Active), SessionError> {
        let id = self.random_hex()?;
        let csrf = self.random_hex()?;
        let active = Active {
            principal,
            csrf,
            tls_name,
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max {
            let idle = self.idle;
            map.retain(|_, e| now.saturating_duration_since(e.last_seen) < idle);
            if map.len() >= self.max {
                return Err(SessionError::Full);
            }
        }
        map.insert(
            key(&id),
            Entry {
                active: active.clone(),
                last_seen: now,
            },
        );
        Ok((id, active))
    }

    /// The live session with this cookie value (and marks it used), or `None` if unknown or
    /// idle for too long (an expired session is dropped).
    pub fn get(&self, id: &str) -> Option<Active> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Active> {
        let k = key(id);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.get_mut(&k)?;
        if now.saturating_duration_since(entry.last_seen) >= self.idle {
            map.remove(&k);
            return None;
        }
        entry.last_seen = now;
        Some(entry.active.clone())
    }

    /// Ends a session (logout).
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(id));
    }

    /// Number of sessions held (expired ones included until touched or pruned).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Role;

    fn who(name: &str) -> Principal {
        Principal {
            name: name.into(),
            role: Role::Reviewer,
            clearance: None,
        }
    }

    #[test]
    fn ids_and_tokens_are_random_256_bit() {
        let s = Sessions::default();
        let (a, sa) = s.create(who("a"), None).unwrap();
        let (b, sb) = s.create(who("a"), None).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(sa.csrf, sb.csrf);
        assert_ne!(a, sa.csrf);
        assert_eq!(s.get(&a).unwrap().principal.name, "a");
        assert!(s.get("00").is_none());
    }

    #[test]
    fn sessions_expire_when_idle_and_use_keeps_them_alive() {
        let s = Sessions::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let (id, _) = s.create_at(who("r"), None, t0).unwrap();
        // Used at 50 s: alive, and the idle clock restarts.
        assert!(s.get_at(&id, t0 + Duration::from_secs(50)).is_some());
        assert!(s.get_at(&id, t0 + Duration::from_secs(100)).is_some());
        // 60 s without use: gone, and stays gone.
        assert!(s.get_at(&id, t0 + Duration::from_secs(160)).is_none());
        assert!(s.get_at(&id, t0 + Duration::from_secs(161)).is_none());
        assert!(s.is_empty());
    }

    #[test]
    fn logout_ends_the_session() {
        let s = Sessions::default();
        let (id, _) = s.create(who("r"), None).unwrap();
        s.remove(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn the_session_count_is_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        s.create_at(who("a"), None, t0).unwrap();
        s.create_at(who("b"), None, t0).unwrap();
        assert_eq!(
            s.create_at(who("c"), None, t0 + Duration::from_secs(1)),
            Err(SessionError::Full)
        );
        // Once the old ones expired, a new login prunes them.
        assert!(s
            .create_at(who("c"), None, t0 + Duration::from_secs(61))
            .is_ok());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn csrf_check_needs_the_exact_token() {
        let s = Sessions::default();
        let (_, a) = s.create(who("r"), None).unwrap();
        assert!(csrf_matches(&a.csrf, &a.csrf.clone()));
        assert!(!csrf_matches(&a.csrf, ""));
        assert!(!csrf_matches(&a.csrf, &a.csrf[..63]));
        let mut flipped = a.csrf.clone().into_bytes();
        flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
        assert!(!csrf_matches(&a.csrf, &String::from_utf8(flipped).unwrap()));
        assert!(!csrf_matches("", ""));
    }
}
