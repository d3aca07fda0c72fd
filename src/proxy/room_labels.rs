//! Learn a protected room's security label before anything of that room leaves the protected
//! side.
//!
//! # Design notes
//!
//! The label layer (`policy::labels`) judges an event by its room's label, which it learns from
//! the room label state events it sees pass. A room whose label event never crossed the guard
//! (created and labeled on the protected side, then published in the room directory, or put in
//! a space) would be judged by the protected side's *default* label — too low for a room
//! labeled above it. So before the policy judges data leaving the protected side, this phase
//! asks the protected homeserver itself for the state of every room in the body whose label the
//! guard does not know: `GET /_synapse/admin/v1/rooms/{roomId}/state` on the configured
//! `[[protected]] admin_api` with the admin token from `admin_token_file`.
//!
//! The same lookup runs for a room whose members the guard has never seen: the label layer
//! judges a room against every remote server in it, and learns them from this state too.
//!
//! * A label event in the state is learned (as coming from the protected side); every member
//!   event is stored as the room's current membership.
//! * No label event, or a room the homeserver does not know (404): nothing to learn; the
//!   answer is remembered for [`RECHECK`], so a busy room is not looked up on every request.
//! * Any other answer or no answer: the exchange is refused with 503 (the sender retries) —
//!   the guard never judges a room by a default it could not confirm.
//!
//! Without `admin_api` the phase does nothing and rooms without a seen label are judged by
//! the default label (documented as a deployment choice in deploy/README.md).
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;

use super::guard::Guard;
use crate::policy::{Direction, ExchangeCtx, Refusal, RefusalReason, Units};

pub mod view;

/// How long "this room has no label" is believed before the homeserver is asked again.
pub const RECHECK: Duration = Duration::from_secs(30);

/// Counter: room label lookups at the protected homeservers, by `outcome`
/// (`labeled`, `unlabeled`, `unknown_room`, `failed`).
pub const LABEL_LOOKUPS_TOTAL: &str = "grenzwacht_room_label_lookups_total";

/// Rooms recently looked up without finding a label.
#[derive(Debug, Default)]
pub struct Lookups {
    checked: Mutex<HashMap<String, Instant>>,
}

impl Lookups {
    fn fresh(&self, room: &str) -> bool {
        let map = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(room).is_some_and(|t| t.elapsed() < RECHECK)
    }

    fn remember(&self, room: &str) {
        let mut map = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 100_000 {
            map.retain(|_, t| t.elapsed() < RECHECK);
        }
        map.insert(room.to_owned(), Instant::now());
    }
}

/// The rooms of a body: PDUs', events' (or the body's room for stripped state) and user
/// fields' (directory, hierarchy).
fn rooms_of(units: &Units<'_>, room_hint: Option<&str>) -> BTreeSet<String> {
    let hint = units.room_hint().or_else(|| room_hint.map(str::to_owned));
    let mut rooms = BTreeSet::new();
    rooms.extend(
        units
            .pdus
            .iter()
            .filter_map(|p| p.room_id.as_deref().map(str::to_owned)),
    );
    for e in &units.events {
        match e.room_id.as_deref() {
            Some(r) => {
                rooms.insert(r.to_owned());
            }
            None => rooms.extend(hint.clone()),
        }
    }
    rooms.extend(
        units
            .user_fields
            .iter()
            .filter_map(|f| f.room_id.as_deref().map(str::to_owned)),
    );
    rooms
}

fn unavailable() -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNKNOWN",
        RefusalReason::Upstream,
        "the guard cannot determine a room's security label now; retry later",
    )
}

/// Before the policy judges data flowing `data` (see the module docs): learn the label of
/// every room of the body that the guard has no label for, from the protected homeserver.
pub async fn ensure(
    guard: &Guard,
    ctx: &ExchangeCtx,
    data: Direction,
    units: &Units<'_>,
    room_hint: Option<&str>,
) -> Result<(), Refusal> {
    if data != Direction::Outbound {
        return Ok(());
    }
    let Some(labels) = guard.labels() else {
        return Ok(());
    };
    let Some((admin, token_file)) = guard
        .protected_named(&ctx.protected)
        .and_then(|p| p.admin.as_ref())
    else {
        return Ok(());
    };
    for room in rooms_of(units, room_hint) {
        let known = labels.room_label_known(&room) && labels.room_members_known(&room);
        if known || guard.label_lookups().fresh(&room) {
            continue;
        }
        let token = match tokio::fs::read_to_string(token_file).await {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                tracing::warn!(room = %room, file = %token_file.display(), "room label lookup: no admin token");
                metrics::counter!(LABEL_LOOKUPS_TOTAL, "outcome" => "failed").increment(1);
                return Err(unavailable());
            }
        };
        let path = format!(
            "/_synapse/admin/v1/rooms/{}/state",
            crate::federation::catalog::encode_segment(&room)
        );
        let outcome = match admin.admin_get(&path, &token).await {
            Ok((status, body)) if status.is_success() => {
                let state: Vec<Value> = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("state").and_then(Value::as_array).cloned())
                    .ok_or_else(|| {
                        tracing::warn!(room = %room, "room label lookup: unreadable answer");
                        metrics::counter!(LABEL_LOOKUPS_TOTAL, "outcome" => "failed").increment(1);
                        unavailable()
                    })?;
                if labels.learn_from_state(ctx, &room, &state) {
                    "labeled"
                } else {
                    guard.label_lookups().remember(&room);
                    "unlabeled"
                }
            }
            Ok((StatusCode::NOT_FOUND, _)) => {
                guard.label_lookups().remember(&room);
                "unknown_room"
            }
            Ok((status, _)) => {
                tracing::warn!(room = %room, %status, "room label lookup refused by the homeserver");
                metrics::counter!(LABEL_LOOKUPS_TOTAL, "outcome" => "failed").increment(1);
                return Err(unavailable());
            }
            Err(e) => {
                tracing::warn!(room = %room, "room label lookup failed: {e}");
                metrics::counter!(LABEL_LOOKUPS_TOTAL, "outcome" => "failed").increment(1);
                return Err(unavailable());
            }
        };
        tracing::info!(room = %room, outcome, "room label looked up at the protected homeserver");
        metrics::counter!(LABEL_LOOKUPS_TOTAL, "outcome" => outcome).increment(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::catalog::encode_segment;

    #[test]
    fn room_ids_are_encoded_as_one_segment() {
        assert_eq!(
            encode_segment("!abc:127.0.0.1:8448"),
            "%21abc%3A127.0.0.1%3A8448"
        );
        assert_eq!(encode_segment("!a/b?c#d"), "%21a%2Fb%3Fc%23d");
    }

    #[test]
    fn lookups_are_remembered_for_a_while() {
        let l = Lookups::default();
        assert!(!l.fresh("!r:x"));
        l.remember("!r:x");
        assert!(l.fresh("!r:x"));
        assert!(!l.fresh("!s:x"));
    }
}
