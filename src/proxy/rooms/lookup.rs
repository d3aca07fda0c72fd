//! A room's version from the protected homeserver itself: Synapse's admin API
//! `GET /_synapse/admin/v1/rooms/{roomId}` (the room details; `version` is the room version
//! the homeserver uses for the room), on the `[[protected]]
//! admin_api` with the token from `admin_token_file` — the client the label lookups use
//! (`proxy::room_labels`).
//!
//! Why the admin API and not federation: the guard could ask the protected server's own
//! federation listener (`/state_ids`, `/event`), but those answer only X-Matrix requests of
//! other servers, for rooms they share, and need an event id; the admin API answers for any
//! room the homeserver knows, with the version it uses itself. The homeserver is in the room
//! (it knows it), so its answer is authoritative for what crosses to it and from it.
//!
//! Only the answer for a room the homeserver has joined members in counts: Synapse also keeps
//! a row for a room it was merely invited to, with the version the inviter named — a remote's
//! claim, not the homeserver's knowledge — so such an answer is treated as "unknown room".
//!
//! Answers that say nothing (404: the homeserver does not know the room) and failures are
//! remembered for a while ([`NOT_FOUND_RECHECK`], [`FAILED_RECHECK`]) so a busy room is not
//! looked up on every request; a version found is stored by the caller and never looked up
//! again. Lookups of one room are single-flight: concurrent exchanges for a room wait for the
//! one lookup in progress and take its answer (remembered for [`FAILED_RECHECK`], also when a
//! version was found), so a burst for an unknown room asks the homeserver once.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde::Deserialize;

use crate::proxy::guard::Guard;

/// How long "the homeserver does not know this room" is believed.
pub const NOT_FOUND_RECHECK: Duration = Duration::from_secs(30);
/// How long after a failed lookup the homeserver is asked again.
pub const FAILED_RECHECK: Duration = Duration::from_secs(5);

/// Counter: room version lookups at the protected homeservers, by `outcome`
/// (`found`, `unknown_room`, `not_joined`, `failed`).
pub const VERSION_LOOKUPS_TOTAL: &str = "grenzwacht_room_version_lookups_total";

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The homeserver's room version for the room.
    Found(String),
    /// The homeserver does not know the room, or has no joined member in it (now, or within
    /// [`NOT_FOUND_RECHECK`]).
    UnknownRoom,
    /// No answer, an unusable answer, or one within [`FAILED_RECHECK`].
    Failed,
    /// No admin API configured for this protected server.
    Unconfigured,
}

/// Rooms recently looked up, and the lookups in progress.
#[derive(Debug, Default)]
pub struct Lookups {
    recent: Mutex<HashMap<String, (Instant, Lookup)>>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The turn to look up one room; the next waiter for the room gets it when this is dropped.
struct Turn<'a> {
    lookups: &'a Lookups,
    room: String,
    lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        let mut map = self
            .lookups
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Nobody else holds or waits for this room's lock: forget it.
        if map
            .get(&self.room)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.room);
        }
    }
}

impl Lookups {
    /// Waits until no other lookup of `room` is in progress.
    async fn turn(&self, room: &str) -> Turn<'_> {
        let lock = {
            let mut map = self
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(room.to_owned()).or_default().clone()
        };
        Turn {
            lookups: self,
            room: room.to_owned(),
            lock: Some(lock.lock_owned().await),
        }
    }

    fn recent(&self, room: &str) -> Option<Lookup> {
        let map = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (at, what) = map.get(room)?;
        let ttl = match what {
            Lookup::UnknownRoom => NOT_FOUND_RECHECK,
            _ => FAILED_RECHECK,
        };
        (at.elapsed() < ttl).then(|| what.clone())
    }

    fn remember(&self, room: &str, what: Lookup) {
        let mut map = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 100_000 {
            map.retain(|_, (t, _)| t.elapsed() < NOT_FOUND_RECHECK);
        }
        map.insert(room.to_owned(), (Instant::now(), what));
    }
}

/// Synapse's room details (`rooms.room_version AS version`, `local_users_in_room AS
/// joined_local_members`).
#[derive(Deserialize)]
struct RoomDetails {
    version: String,
    #[serde(default)]
    joined_local_members: Option<u64>,
}

/// The room version of `room` as the protected server `protected` knows it.
pub async fn room_version(guard: &Guard, protected: &str, room: &str) -> Lookup {
    let Some((admin, token_file)) = guard
        .protected_named(protected)
        .and_then(|p| p.admin.as_ref())
    else {
        return Lookup::Unconfigured;
    };
    if let Some(recent) = guard.version_lookups().recent(room) {
        return recent;
    }
    // Single-flight: after waiting for a lookup in progress, its answer is the answer.
    let _turn = guard.version_lookups().turn(room).await;
    if let Some(recent) = guard.version_lookups().recent(room) {
        return recent;
    }
    let mut label = None;
    let outcome = match tokio::fs::read_to_string(token_file).await {
        Ok(t) if !t.trim().is_empty() => {
            let path = format!(
                "/_synapse/admin/v1/rooms/{}",
                crate::federation::catalog::encode_segment(room)
            );
            match admin.admin_get(&path, t.trim()).await {
                Ok((status, body)) if status.is_success() => {
                    match serde_json::from_slice::<RoomDetails>(&body) {
                        Ok(d) if d.joined_local_members.is_some_and(|n| n > 0) => {
                            Lookup::Found(d.version)
                        }
                        Ok(_) => {
                            label = Some("not_joined");
                            Lookup::UnknownRoom
                        }
                        Err(_) => {
                            tracing::warn!(room, "room version lookup: unreadable answer");
                            Lookup::Failed
                        }
                    }
                }
                Ok((StatusCode::NOT_FOUND, _)) => Lookup::UnknownRoom,
                Ok((status, _)) => {
                    tracing::warn!(room, %status, "room version lookup refused by the homeserver");
                    Lookup::Failed
                }
                Err(e) => {
                    tracing::warn!(room, "room version lookup failed: {e}");
                    Lookup::Failed
                }
            }
        }
        _ => {
            tracing::warn!(room, file = %token_file.display(), "room version lookup: no admin token");
            Lookup::Failed
        }
    };
    let label = label.unwrap_or(match &outcome {
        Lookup::Found(_) => "found",
        Lookup::UnknownRoom => "unknown_room",
        _ => "failed",
    });
    tracing::info!(
        room,
        outcome = label,
        "room version looked up at the protected homeserver"
    );
    metrics::counter!(VERSION_LOOKUPS_TOTAL, "outcome" => label).increment(1);
    guard.version_lookups().remember(room, outcome.clone());
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_without_a_version_are_remembered_for_a_while() {
        let l = Lookups::default();
        assert_eq!(l.recent("!r:x"), None);
        l.remember("!r:x", Lookup::UnknownRoom);
        l.remember("!f:x", Lookup::Failed);
        assert_eq!(l.recent("!r:x"), Some(Lookup::UnknownRoom));
        assert_eq!(l.recent("!f:x"), Some(Lookup::Failed));
        assert_eq!(l.recent("!s:x"), None);
    }

    #[tokio::test]
    async fn lookups_of_one_room_take_turns_and_the_waiter_sees_the_answer() {
        let l = Arc::new(Lookups::default());
        let first = l.turn("!r:x").await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let waiter = tokio::spawn({
            let l = l.clone();
            async move {
                let _t = l.turn("!r:x").await;
                tx.send(l.recent("!r:x")).unwrap();
            }
        });
        // Another room is not held up.
        drop(l.turn("!other:x").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            rx.try_recv().is_err(),
            "the waiter waits for the first lookup"
        );
        l.remember("!r:x", Lookup::Found("10".into()));
        drop(first);
        waiter.await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), Some(Lookup::Found("10".into())));
        assert!(
            l.inflight.lock().unwrap().is_empty(),
            "finished turns are forgotten"
        );
    }

    #[test]
    fn the_admin_answer_is_read_for_its_version_and_local_members() {
        // Synapse's room details carry many fields; `version` and `joined_local_members` are read.
        let body =
            br#"{"room_id":"!r:x","version":"10","joined_members":2,"joined_local_members":1}"#;
        let d: RoomDetails = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (d.version.as_str(), d.joined_local_members),
            ("10", Some(1))
        );
        // A room it was only invited to: no local member (the version is the inviter's claim).
        let invited = br#"{"room_id":"!r:x","version":"10","joined_local_members":null}"#;
        let d: RoomDetails = serde_json::from_slice(invited).unwrap();
        assert_eq!(d.joined_local_members, None);
        // No version (a room row without one): no answer.
        assert!(
            serde_json::from_slice::<RoomDetails>(br#"{"room_id":"!r:x","version":null}"#).is_err()
        );
    }
}
