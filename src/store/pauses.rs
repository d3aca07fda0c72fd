//! Paused rooms: rooms whose events do not cross in one direction until an operator lifts the
//! pause.
//!
//! A pause is keyed by (direction, room): the direction the room's data would flow
//! (`inbound` = towards the protected side, `outbound` = away from it). It records why (a
//! [`PauseCause`]), the event that caused it and the rule. The first pause of a key wins;
//! pausing again changes nothing. Lifting deletes the row. The table is read by the running
//! guard (`proxy::pause`) and written by it and by the operator CLI (`grenzwacht rooms`),
//! possibly at the same time from two processes: [`Store::data_version`] tells a process that
//! another one changed the file.
use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::{check_room_id, sqlite, unix_ms, Store, StoreError, MAX_ROOM_ID_BYTES};

/// Longest rule id stored with a pause (bytes); longer ones are cut.
pub const MAX_PAUSE_RULE_BYTES: usize = 256;

/// Why a room was paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseCause {
    /// A rule still matched an event after it was redacted for that rule: the marking is in
    /// what redaction keeps.
    RedactionKept,
}

impl PauseCause {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseCause::RedactionKept => "redaction_kept",
        }
    }

    /// The cause a stored text stands for.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "redaction_kept" => Some(PauseCause::RedactionKept),
            _ => None,
        }
    }
}

/// One paused (direction, room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPause {
    /// `inbound` or `outbound`: the direction the room's data is not let through.
    pub direction: String,
    pub room_id: String,
    pub cause: PauseCause,
    /// The event that caused the pause, if known.
    pub event_id: Option<String>,
    /// The rule that matched.
    pub rule: String,
    /// When (Unix ms).
    pub paused_at: i64,
}

impl RoomPause {
    /// A pause of `room_id` in `direction` now.
    pub fn now(
        direction: &str,
        room_id: &str,
        cause: PauseCause,
        event_id: Option<&str>,
        rule: &str,
    ) -> Self {
        RoomPause {
            direction: direction.to_owned(),
            room_id: room_id.to_owned(),
            cause,
            event_id: event_id.map(str::to_owned),
            rule: rule.to_owned(),
            paused_at: unix_ms(SystemTime::now()),
        }
    }
}

fn check_direction(d: &str) -> Result<(), StoreError> {
    match d {
        "inbound" | "outbound" => Ok(()),
        _ => Err(StoreError::InvalidInput {
            what: "pause direction: not inbound/outbound",
        }),
    }
}

fn row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, Option<String>, String, i64)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn into_pause(
    (direction, room_id, cause, event_id, rule, paused_at): (
        String,
        String,
        String,
        Option<String>,
        String,
        i64,
    ),
) -> Result<RoomPause, StoreError> {
    let cause = PauseCause::parse(&cause).ok_or(StoreError::Corrupt {
        table: "room_pauses",
        what: "unknown cause",
    })?;
    Ok(RoomPause {
        direction,
        room_id,
        cause,
        event_id,
        rule,
        paused_at,
    })
}

const COLUMNS: &str = "direction, room_id, cause, event_id, rule, paused_at";

impl Store {
    /// Pauses `p.room_id` in `p.direction`. Returns `true` if the room was not paused in that
    /// direction before (the first cause is kept).
    pub fn pause_room(&self, p: &RoomPause) -> Result<bool, StoreError> {
        check_direction(&p.direction)?;
        check_room_id(&p.room_id)?;
        if p.event_id
            .as_ref()
            .is_some_and(|e| e.len() > MAX_ROOM_ID_BYTES)
        {
            return Err(StoreError::InvalidInput {
                what: "pause event ID: too long",
            });
        }
        let mut rule = p.rule.as_str();
        if rule.len() > MAX_PAUSE_RULE_BYTES {
            let mut end = MAX_PAUSE_RULE_BYTES;
            while !rule.is_char_boundary(end) {
                end -= 1;
            }
            rule = &rule[..end];
        }
        let n = self
            .conn()
            .prepare_cached(&format!(
                "INSERT OR IGNORE INTO room_pauses ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    p.direction,
                    p.room_id,
                    p.cause.as_str(),
                    p.event_id,
                    rule,
                    p.paused_at
                ])
            })
            .map_err(sqlite("pause room"))?;
        Ok(n == 1)
    }

    /// The pause of `room_id` in `direction`, if any.
    pub fn room_pause(
        &self,
        direction: &str,
        room_id: &str,
    ) -> Result<Option<RoomPause>, StoreError> {
        let r = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM room_pauses WHERE direction = ?1 AND room_id = ?2"
            ))
            .and_then(|mut st| st.query_row(params![direction, room_id], row).optional())
            .map_err(sqlite("read room pause"))?;
        r.map(into_pause).transpose()
    }

    /// Every pause, oldest first.
    pub fn room_pauses(&self) -> Result<Vec<RoomPause>, StoreError> {
        let rows = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM room_pauses ORDER BY paused_at, room_id, direction"
            ))
            .and_then(|mut st| st.query_map([], row)?.collect::<Result<Vec<_>, _>>())
            .map_err(sqlite("list room pauses"))?;
        rows.into_iter().map(into_pause).collect()
    }

    /// Lifts the pause of `room_id` in `direction`, or in both directions for `None`. Returns
    /// the pauses lifted (empty if there were none).
    pub fn lift_room_pause(
        &self,
        direction: Option<&str>,
        room_id: &str,
    ) -> Result<Vec<RoomPause>, StoreError> {
        if let Some(d) = direction {
            check_direction(d)?;
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(sqlite("begin lift room pause"))?;
        let rows = tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM room_pauses WHERE room_id = ?1 AND (?2 IS NULL OR direction = ?2)"))
            .and_then(|mut st| st.query_map(params![room_id, direction], row)?.collect::<Result<Vec<_>, _>>())
            .map_err(sqlite("read room pause"))?;
        tx.execute(
            "DELETE FROM room_pauses WHERE room_id = ?1 AND (?2 IS NULL OR direction = ?2)",
            params![room_id, direction],
        )
        .map_err(sqlite("lift room pause"))?;
        tx.commit().map_err(sqlite("commit lift room pause"))?;
        rows.into_iter().map(into_pause).collect()
    }

    /// SQLite's `PRAGMA data_version` of this store's connection: it changes when another
    /// connection (another process, e.g. the operator CLI) committed a change to the file.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(sqlite("read data version"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "!r:example.org";

    #[test]
    fn pause_is_keyed_by_direction_and_room_first_cause_wins_and_lift_deletes() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.room_pause("outbound", ROOM).unwrap(), None);
        let p = RoomPause::now(
            "outbound",
            ROOM,
            PauseCause::RedactionKept,
            Some("$e1"),
            "marking.geheim",
        );
        assert!(s.pause_room(&p).unwrap());
        let later = RoomPause::now(
            "outbound",
            ROOM,
            PauseCause::RedactionKept,
            Some("$e2"),
            "other",
        );
        assert!(!s.pause_room(&later).unwrap(), "already paused");
        assert_eq!(
            s.room_pause("outbound", ROOM)
                .unwrap()
                .unwrap()
                .event_id
                .as_deref(),
            Some("$e1")
        );
        assert_eq!(
            s.room_pause("inbound", ROOM).unwrap(),
            None,
            "the other direction is not paused"
        );
        assert!(s
            .pause_room(&RoomPause::now(
                "inbound",
                ROOM,
                PauseCause::RedactionKept,
                None,
                "r"
            ))
            .unwrap());
        assert_eq!(s.room_pauses().unwrap().len(), 2);
        let lifted = s.lift_room_pause(Some("inbound"), ROOM).unwrap();
        assert_eq!(lifted.len(), 1);
        assert_eq!(lifted[0].direction, "inbound");
        assert_eq!(s.room_pauses().unwrap(), vec![p]);
        assert_eq!(s.lift_room_pause(None, ROOM).unwrap().len(), 1);
        assert!(s.room_pauses().unwrap().is_empty());
        assert!(
            s.lift_room_pause(None, ROOM).unwrap().is_empty(),
            "lifting twice lifts nothing"
        );
    }

    #[test]
    fn invalid_pauses_are_refused() {
        let s = Store::open_in_memory().unwrap();
        let bad_dir = RoomPause::now("sideways", ROOM, PauseCause::RedactionKept, None, "r");
        assert!(matches!(
            s.pause_room(&bad_dir),
            Err(StoreError::InvalidInput { .. })
        ));
        let bad_room = RoomPause::now("inbound", "no-bang", PauseCause::RedactionKept, None, "r");
        assert!(matches!(
            s.pause_room(&bad_room),
            Err(StoreError::InvalidInput { .. })
        ));
        let long_rule = RoomPause::now(
            "inbound",
            ROOM,
            PauseCause::RedactionKept,
            None,
            &"ü".repeat(400),
        );
        assert!(s.pause_room(&long_rule).unwrap());
        assert!(s.room_pause("inbound", ROOM).unwrap().unwrap().rule.len() <= MAX_PAUSE_RULE_BYTES);
        assert!(s.room_pauses().unwrap().len() == 1);
    }

    #[test]
    fn pauses_survive_reopening_and_another_connection_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        let guard = Store::open(&path).unwrap();
        guard
            .pause_room(&RoomPause::now(
                "outbound",
                ROOM,
                PauseCause::RedactionKept,
                Some("$e"),
                "r",
            ))
            .unwrap();
        let v0 = guard.data_version().unwrap();
        // Another process (the operator CLI) opens the same file and lifts the pause.
        let cli = Store::open(&path).unwrap();
        assert_eq!(
            cli.room_pauses().unwrap().len(),
            1,
            "the pause is in the file"
        );
        assert_eq!(guard.data_version().unwrap(), v0, "no foreign commit yet");
        assert_eq!(cli.lift_room_pause(None, ROOM).unwrap().len(), 1);
        assert_ne!(
            guard.data_version().unwrap(),
            v0,
            "the guard's connection sees a foreign commit"
        );
        assert_eq!(guard.room_pause("outbound", ROOM).unwrap(), None);
    }
}
