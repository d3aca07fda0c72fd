//! Paused rooms at runtime: the pause set, the [`RoomGate`] the policy layer judges with, and
//! the transaction plumbing (withheld PDUs removed, per-PDU errors for the sender).
//!
//! A pause is keyed by (direction, room): the direction the room's data would flow —
//! `outbound` holds the room's events back from the remote side, `inbound` from the protected
//! side. It is durable (`store::pauses`, table `room_pauses`) and lasts until an operator lifts
//! it (`grenzwacht rooms resume`). While a room is paused in a direction:
//!
//! - its PDUs in a transaction flowing that way are removed from the forwarded transaction and
//!   the sender gets `{"pdus": {"$event": {"error": …}}}` for each (merged into the receiver's
//!   response); other rooms' PDUs cross; typing and receipt EDUs naming it are dropped;
//! - any other exchange whose data would carry the room's events that way — `/event`,
//!   `/backfill`, `/get_missing_events`, `/state`, `/state_ids`, `/event_auth`, `make_join`,
//!   `send_join`, invites, … — answers 404 `M_NOT_FOUND` (before forwarding when the room is in
//!   the path);
//! - the gauge `grenzwacht_paused_rooms{direction}` counts it, withheld PDUs are counted in
//!   `grenzwacht_withheld_pdus_total{direction,cause}`, and pausing, withholding and lifting are
//!   logged.
//!
//! A retried transaction gets the same answer: the forwarded body is the stored decision
//! (`store::txn_decisions`), and the per-PDU errors are computed from what the received
//! transaction has and the forwarded one lacks (`proxy::perpdu::withheld`).
//!
//! The running guard notices pauses lifted (or added) by another process on the same store
//! file through SQLite's `PRAGMA data_version`, checked at most once per [`RELOAD_INTERVAL`].
//!
//! Held rooms (`proxy::hold`) go through the same [`Gate`]: a room waiting behind a held event
//! has its PDUs queued instead of withheld, and answers 404 like a paused room otherwise.
pub mod cli;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::guard::Guard;
use crate::federation::pdu::PduView;
use crate::federation::redact;
use crate::policy::pause::RoomGate;
use crate::policy::Direction;
use crate::store::{PauseCause, RoomPause, Store, StoreError};
use crate::telemetry as tm;

/// How often the pause set is checked for changes by another process (at most).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The error a sender gets for a withheld PDU (its room is paused, or the TI-Messenger profile
/// left it out: it names a server that is not on the federation list, or it is an invite the
/// invitee does not accept).
pub const WITHHELD_ERROR: &str =
    "withheld by the border guard: the room is paused or the event may not cross";

fn direction_str(d: Direction) -> &'static str {
    d.as_str()
}

fn parse_direction(s: &str) -> Option<Direction> {
    match s {
        "inbound" => Some(Direction::Inbound),
        "outbound" => Some(Direction::Outbound),
        _ => None,
    }
}

/// The paused rooms of each direction.
#[derive(Default, PartialEq, Eq)]
struct Set {
    inbound: HashSet<String>,
    outbound: HashSet<String>,
}

impl Set {
    fn of(&self, d: Direction) -> &HashSet<String> {
        match d {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }
    fn of_mut(&mut self, d: Direction) -> &mut HashSet<String> {
        match d {
            Direction::Inbound => &mut self.inbound,
            Direction::Outbound => &mut self.outbound,
        }
    }
}

struct State {
    /// `None` until the set was read from the store once (unknown: everything counts as paused).
    set: Option<Set>,
    /// Pauses the store refused to write: held in memory for the life of the process.
    unsaved: Vec<(Direction, String)>,
    data_version: Option<i64>,
}

/// The paused rooms: the store's `room_pauses` table with an in-memory copy for the hot path.
///
/// Reads and writes of the table happen under the state's write lock, so a reload never
/// loses a pause written at the same time.
pub struct Pauses {
    store: Store,
    state: RwLock<State>,
    last_check: Mutex<Option<Instant>>,
}

impl Pauses {
    /// The pause set of `store`, read on first use.
    pub fn new(store: Store) -> Self {
        Pauses {
            store,
            state: RwLock::new(State {
                set: None,
                unsaved: Vec::new(),
                data_version: None,
            }),
            last_check: Mutex::new(None),
        }
    }

    /// Re-reads the set if another connection changed the file (at most every
    /// [`RELOAD_INTERVAL`]).
    fn refresh(&self) {
        {
            let mut last = self
                .last_check
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < RELOAD_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        self.reload_if_changed(&mut st);
    }

    /// Reloads the set if the file's `data_version` moved (or it was never read).
    fn reload_if_changed(&self, st: &mut State) {
        let version = match self.store.data_version() {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("pause set: cannot check the store for changes: {e}");
                return;
            }
        };
        if st.set.is_some() && st.data_version == Some(version) {
            return;
        }
        let rows = match self.store.room_pauses() {
            Ok(r) => r,
            Err(e) => {
                // The previous set stays (or, never read, everything counts as paused).
                tracing::error!("pause set: cannot read paused rooms: {e}");
                return;
            }
        };
        let mut new = Set::default();
        for p in &rows {
            if let Some(d) = parse_direction(&p.direction) {
                new.of_mut(d).insert(p.room_id.clone());
            }
        }
        for (d, room) in &st.unsaved {
            new.of_mut(*d).insert(room.clone());
        }
        if let Some(old) = &st.set {
            for d in [Direction::Inbound, Direction::Outbound] {
                for room in old.of(d).difference(new.of(d)) {
                    tracing::warn!(direction = d.as_str(), room = %room, "room pause lifted (by another process)");
                }
                for room in new.of(d).difference(old.of(d)) {
                    tracing::warn!(direction = d.as_str(), room = %room, "room paused (by another process)");
                }
            }
        }
        st.set = Some(new);
        st.data_version = Some(version);
        Self::gauge(st.set.as_ref());
    }

    fn gauge(set: Option<&Set>) {
        for d in [Direction::Inbound, Direction::Outbound] {
            tm::set_paused_rooms(d, set.map_or(0, |s| s.of(d).len()));
        }
    }

    /// Reads the set now if it changed (at start, so the gauge is right before the first
    /// request; and periodically, see [`watch`]).
    pub fn load(&self) {
        self.refresh();
    }

    /// Is `room` paused for data flowing in `direction`? Fails closed: before the set could be
    /// read once, every room counts as paused.
    pub fn is_paused(&self, direction: Direction, room: &str) -> bool {
        self.refresh();
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        match &st.set {
            Some(set) => set.of(direction).contains(room),
            None => true,
        }
    }

    /// Pauses `room` for data flowing in `direction`. Returns `true` if it was not paused
    /// before. A failure to store the pause is logged; the pause then holds in memory for the
    /// life of the process.
    pub fn pause(
        &self,
        direction: Direction,
        room: &str,
        cause: PauseCause,
        event_id: Option<&str>,
        rule: &str,
    ) -> bool {
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        self.reload_if_changed(&mut st);
        let p = RoomPause::now(direction_str(direction), room, cause, event_id, rule);
        let stored = match self.store.pause_room(&p) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(
                    direction = direction.as_str(),
                    room,
                    "cannot store room pause (held in memory only): {e}"
                );
                st.unsaved.push((direction, room.to_owned()));
                true
            }
        };
        // Never read (store unreadable): everything counts as paused already.
        let inserted = st
            .set
            .as_mut()
            .is_some_and(|s| s.of_mut(direction).insert(room.to_owned()));
        if inserted || stored {
            tracing::warn!(
                direction = direction.as_str(),
                room,
                event_id = event_id.unwrap_or(""),
                rule,
                cause = cause.as_str(),
                "room paused: its events do not cross this way until an operator lifts the pause"
            );
        }
        Self::gauge(st.set.as_ref());
        inserted || stored
    }

    /// Every pause in the store.
    pub fn list(&self) -> Result<Vec<RoomPause>, StoreError> {
        self.store.room_pauses()
    }

    /// Lifts the pause of `room` in `direction` (both for `None`); returns what was lifted.
    pub fn lift(
        &self,
        direction: Option<Direction>,
        room: &str,
    ) -> Result<Vec<RoomPause>, StoreError> {
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let lifted = lift(&self.store, direction, room)?;
        st.unsaved
            .retain(|(d, r)| !(r == room && direction.is_none_or(|x| x == *d)));
        if let Some(set) = &mut st.set {
            for d in [Direction::Inbound, Direction::Outbound] {
                if direction.is_none_or(|x| x == d) {
                    set.of_mut(d).remove(room);
                }
            }
        }
        Self::gauge(st.set.as_ref());
        Ok(lifted)
    }
}

/// Keeps the pause set (and its gauge) current while the guard runs, so a pause lifted by the
/// operator CLI is logged and counted within [`RELOAD_INTERVAL`] even without traffic.
pub async fn watch(guard: std::sync::Arc<Guard>, mut stop: super::guard::Shutdown) {
    loop {
        let g = guard.clone();
        let _ = tokio::task::spawn_blocking(move || g.pauses().load()).await;
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(RELOAD_INTERVAL) => {}
        }
    }
}

/// Lifts pauses in `store` (also used by the CLI on the configured store file) and logs each.
pub fn lift(
    store: &Store,
    direction: Option<Direction>,
    room: &str,
) -> Result<Vec<RoomPause>, StoreError> {
    let lifted = store.lift_room_pause(direction.map(direction_str), room)?;
    for p in &lifted {
        tracing::warn!(direction = %p.direction, room = %p.room_id, event_id = p.event_id.as_deref().unwrap_or(""), rule = %p.rule, "room pause lifted");
    }
    Ok(lifted)
}

/// The event id of a PDU: `event_id` (room versions 1–2), else `$` + the reference hash under
/// its room's version rules (room version from the store, or from the content of a create
/// event). `None` if the version is unknown.
pub fn event_id_of(store: &Store, raw: &RawValue) -> Option<String> {
    let pdu = PduView::parse(raw).ok()?;
    if let Some(id) = &pdu.event_id {
        return Some(id.to_string());
    }
    let version = match pdu.room_id.as_deref() {
        Some(room) => store.room_version(room).ok()??,
        None => {
            #[derive(serde::Deserialize)]
            struct Create {
                room_version: Option<String>,
            }
            serde_json::from_str::<Create>(pdu.content.get())
                .ok()?
                .room_version
                .unwrap_or_else(|| "1".into())
        }
    };
    redact::reference_event_id(raw, &version)
}

/// The policy layer's view of rooms for one exchange.
pub struct Gate<'g> {
    pub guard: &'g Guard,
    /// The `roomId` path parameter, for events without `room_id` (stripped state).
    pub room_hint: Option<&'g str>,
}

impl RoomGate for Gate<'_> {
    fn room(&self, raw: &RawValue, room_id: Option<&str>) -> Option<String> {
        if let Some(r) = room_id {
            return Some(r.to_string());
        }
        PduView::parse(raw)
            .ok()
            .and_then(|p| super::rooms::create_room_id(&p))
            .or_else(|| self.room_hint.map(str::to_string))
    }
    fn is_paused(&self, direction: Direction, room: &str) -> bool {
        self.guard.pauses().is_paused(direction, room)
    }
    fn redacted(&self, raw: &RawValue, room: &str) -> Option<Box<RawValue>> {
        let version = self.guard.store().room_version(room).ok()??;
        redact::redact_pdu(raw, &redact::parse_room_version(&version)?).ok()
    }
    fn pause(&self, direction: Direction, room: &str, raw: &RawValue, rule: &str) {
        let id = event_id_of(self.guard.store(), raw);
        self.guard.pauses().pause(
            direction,
            room,
            PauseCause::RedactionKept,
            id.as_deref(),
            rule,
        );
    }
    fn holds(&self) -> bool {
        true
    }
    fn is_held(&self, direction: Direction, room: &str) -> bool {
        self.guard.holds().is_held(direction, room)
    }
    fn withheld(&self, direction: Direction, room: &str, cause: &'static str) {
        tm::record_withheld(direction, cause);
        tracing::info!(
            direction = direction.as_str(),
            room,
            cause,
            "event of a paused room withheld"
        );
    }
    fn event_id(&self, raw: &RawValue, _room: Option<&str>) -> Option<String> {
        super::perpdu::event_id(self.guard.store(), raw, self.room_hint)
    }
    fn review_decision(
        &self,
        direction: Direction,
        raw: &RawValue,
        _room: Option<&str>,
    ) -> Option<crate::review::Decision> {
        let event_id = super::perpdu::event_id(self.guard.store(), raw, self.room_hint)?;
        self.guard.holds().decision_of(direction, &event_id)
    }
}

/// The transaction `body` without the PDUs at `positions` (indices into `pdus`); every other
/// member is kept as it is. Members are written in sorted order, so a canonical body stays
/// canonical.
pub fn without_pdus(body: &[u8], positions: &[usize]) -> Result<Vec<u8>, serde_json::Error> {
    let members: BTreeMap<String, &RawValue> = serde_json::from_slice(body)?;
    let mut out = Vec::with_capacity(body.len());
    out.push(b'{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, k)?;
        out.push(b':');
        if k == "pdus" {
            let pdus: Vec<&RawValue> = serde_json::from_str(v.get())?;
            out.push(b'[');
            let mut first = true;
            for (j, p) in pdus.iter().enumerate() {
                if positions.contains(&j) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(p.get().as_bytes());
            }
            out.push(b']');
        } else {
            out.extend_from_slice(v.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_pdus_removes_exactly_the_positions_and_keeps_the_rest() {
        let body = br#"{"edus":[{"edu_type":"m.typing","content":{}}],"origin":"a","origin_server_ts":1,"pdus":[{"n":0},{"n":1},{"n":2}]}"#;
        let out = without_pdus(body, &[1]).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"edus":[{"edu_type":"m.typing","content":{}}],"origin":"a","origin_server_ts":1,"pdus":[{"n":0},{"n":2}]}"#
        );
        let out = without_pdus(body, &[0, 1, 2]).unwrap();
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .ends_with(r#""pdus":[]}"#));
        assert!(without_pdus(b"[1]", &[0]).is_err());
    }

    #[test]
    fn pause_set_fails_closed_until_read_and_notices_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        let store = Store::open(&path).unwrap();
        let pauses = Pauses::new(store.clone());
        assert!(!pauses.is_paused(Direction::Outbound, "!a:x"));
        assert!(pauses.pause(
            Direction::Outbound,
            "!a:x",
            PauseCause::RedactionKept,
            Some("$e"),
            "r"
        ));
        assert!(
            !pauses.pause(
                Direction::Outbound,
                "!a:x",
                PauseCause::RedactionKept,
                Some("$f"),
                "r"
            ),
            "already paused"
        );
        assert!(pauses.is_paused(Direction::Outbound, "!a:x"));
        assert!(!pauses.is_paused(Direction::Inbound, "!a:x"));
        // Restart: a new pause set over the same file.
        let again = Pauses::new(Store::open(&path).unwrap());
        assert!(again.is_paused(Direction::Outbound, "!a:x"));
        // The operator CLI lifts it in another connection; the guard notices within the interval.
        let cli = Store::open(&path).unwrap();
        assert_eq!(lift(&cli, None, "!a:x").unwrap().len(), 1);
        std::thread::sleep(RELOAD_INTERVAL + Duration::from_millis(50));
        assert!(!pauses.is_paused(Direction::Outbound, "!a:x"));
        // Lifting through the guard's own set works at once.
        pauses.pause(
            Direction::Inbound,
            "!b:x",
            PauseCause::RedactionKept,
            None,
            "r",
        );
        assert_eq!(
            pauses.lift(Some(Direction::Inbound), "!b:x").unwrap().len(),
            1
        );
        assert!(!pauses.is_paused(Direction::Inbound, "!b:x"));
    }
}
