//! Room versions ranked by the strength of their source.
//!
//! A row of `room_versions` names the version, where it was learned (`learned_from`, a short
//! label) and the strength of that source (`strength`, since schema version 4; rows written
//! before have 0, the weakest). The store does not know what the strengths mean — the caller
//! (`proxy::rooms`) assigns them — it only keeps the order: a stronger source corrects a
//! weaker one, a source of equal or lesser strength never changes a stored version.
use std::sync::PoisonError;
use std::time::SystemTime;

use rusqlite::{params, TransactionBehavior};

use super::{
    check_room_id, check_text, load_room, sqlite, unix_ms, RoomVersionClaim, RoomVersionEntry,
    Store, StoreError, MAX_LABEL_BYTES, MAX_ROOM_VERSION_BYTES,
};

/// A stored room version with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomVersionRecord {
    /// The room version identifier, e.g. `"10"`.
    pub version: String,
    /// Where it was learned (short label).
    pub learned_from: String,
    /// The strength of that source (0 = weakest).
    pub strength: u8,
}

impl From<RoomVersionEntry> for RoomVersionRecord {
    fn from(e: RoomVersionEntry) -> Self {
        RoomVersionRecord {
            version: e.version,
            learned_from: e.learned_from,
            strength: e.strength,
        }
    }
}

/// What a claim does to an entry (pure; see [`Store::set_room_version_ranked`]).
fn judge(known: &RoomVersionEntry, version: &str, strength: u8) -> (RoomVersionClaim, bool) {
    match (known.version == version, strength > known.strength) {
        // Same version from a stronger source: the entry names the stronger source.
        (true, upgrade) => (RoomVersionClaim::Confirmed, upgrade),
        (false, true) => (
            RoomVersionClaim::Corrected {
                previous: known.version.clone(),
                previous_from: known.learned_from.clone(),
            },
            true,
        ),
        (false, false) => (
            RoomVersionClaim::Conflict {
                known: known.version.clone(),
                known_from: known.learned_from.clone(),
            },
            false,
        ),
    }
}

impl Store {
    /// Record that `room_id` has room version `version`, learned from `learned_from` (a short
    /// label such as `"create_event"`, `"make_join"`), a source of strength `strength`.
    ///
    /// An unknown room is learned ([`RoomVersionClaim::Learned`]). A known room keeps its
    /// version unless `strength` is greater than the stored source's: then the version is
    /// replaced ([`RoomVersionClaim::Corrected`]). The same version from a stronger source
    /// upgrades the entry's source ([`RoomVersionClaim::Confirmed`]). A different version from
    /// a source of equal or lesser strength changes nothing ([`RoomVersionClaim::Conflict`]).
    /// Whether a version is one the guard can redact under is the caller's business; the store
    /// only checks the identifier is plausible (1–32 visible ASCII characters).
    pub fn set_room_version_ranked(
        &self,
        room_id: &str,
        version: &str,
        learned_from: &str,
        strength: u8,
    ) -> Result<RoomVersionClaim, StoreError> {
        check_room_id(room_id)?;
        check_text(version, MAX_ROOM_VERSION_BYTES, "room version")?;
        check_text(learned_from, MAX_LABEL_BYTES, "room version source label")?;
        // Nothing to write: answered from memory (the hot path of a busy room).
        if let Some(known) = self.cached_room(room_id) {
            let (claim, write) = judge(&known, version, strength);
            if !write {
                return Ok(claim);
            }
        }
        let entry = RoomVersionEntry {
            version: version.to_owned(),
            learned_from: learned_from.to_owned(),
            strength,
        };
        let (claim, stored) = {
            let mut conn = self.conn();
            // Read and write under one write lock: another process on the file cannot slip a
            // row in between.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite("begin room version write"))?;
            let (claim, stored) = match load_room(&tx, room_id)? {
                None => {
                    tx.prepare_cached(
                        "INSERT INTO room_versions (room_id, version, learned_from, learned_at, strength) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            room_id,
                            version,
                            learned_from,
                            unix_ms(SystemTime::now()),
                            strength
                        ])
                    })
                    .map_err(sqlite("insert room version"))?;
                    (RoomVersionClaim::Learned, entry)
                }
                Some(known) => match judge(&known, version, strength) {
                    (claim, true) => {
                        tx.prepare_cached(
                            "UPDATE room_versions SET version = ?2, learned_from = ?3, \
                             learned_at = ?4, strength = ?5 WHERE room_id = ?1",
                        )
                        .and_then(|mut st| {
                            st.execute(params![
                                room_id,
                                version,
                                learned_from,
                                unix_ms(SystemTime::now()),
                                strength
                            ])
                        })
                        .map_err(sqlite("update room version"))?;
                        (claim, entry)
                    }
                    (claim, false) => (claim, known),
                },
            };
            tx.commit().map_err(sqlite("commit room version"))?;
            (claim, stored)
        };
        self.inner
            .rooms
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(room_id.to_owned(), stored);
        Ok(claim)
    }

    /// The stored room version of `room_id` with its source, if known. Served from memory
    /// after the first lookup of a known room, like [`Store::room_version`].
    pub fn room_version_record(
        &self,
        room_id: &str,
    ) -> Result<Option<RoomVersionRecord>, StoreError> {
        if let Some(known) = self.cached_room(room_id) {
            return Ok(Some(known.into()));
        }
        let Some(known) = load_room(&self.conn(), room_id)? else {
            return Ok(None);
        };
        self.inner
            .rooms
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(room_id.to_owned())
            .or_insert_with(|| known.clone());
        Ok(Some(known.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "!r:example.org";

    fn rec(s: &Store) -> Option<(String, String, u8)> {
        s.room_version_record(ROOM)
            .unwrap()
            .map(|r| (r.version, r.learned_from, r.strength))
    }

    #[test]
    fn a_stronger_source_corrects_a_weaker_one_and_equals_never_do() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(
            s.set_room_version_ranked(ROOM, "13", "invite_v2", 0)
                .unwrap(),
            RoomVersionClaim::Learned
        );
        // Equal strength: first wins.
        assert_eq!(
            s.set_room_version_ranked(ROOM, "10", "invite_v1", 0)
                .unwrap(),
            RoomVersionClaim::Conflict {
                known: "13".into(),
                known_from: "invite_v2".into()
            }
        );
        assert_eq!(rec(&s), Some(("13".into(), "invite_v2".into(), 0)));
        // Stronger: corrects.
        assert_eq!(
            s.set_room_version_ranked(ROOM, "10", "make_join", 1)
                .unwrap(),
            RoomVersionClaim::Corrected {
                previous: "13".into(),
                previous_from: "invite_v2".into()
            }
        );
        assert_eq!(s.room_version(ROOM).unwrap().as_deref(), Some("10"));
        // Same version, stronger: the entry names the stronger source.
        assert_eq!(
            s.set_room_version_ranked(ROOM, "10", "admin_api", 2)
                .unwrap(),
            RoomVersionClaim::Confirmed
        );
        assert_eq!(rec(&s), Some(("10".into(), "admin_api".into(), 2)));
        // Weaker and different: nothing changes.
        assert_eq!(
            s.set_room_version_ranked(ROOM, "1", "make_join", 1)
                .unwrap(),
            RoomVersionClaim::Conflict {
                known: "10".into(),
                known_from: "admin_api".into()
            }
        );
        // The plain setter is the weakest claim.
        assert!(matches!(
            s.set_room_version(ROOM, "9", "x").unwrap(),
            RoomVersionClaim::Conflict { .. }
        ));
        assert_eq!(rec(&s), Some(("10".into(), "admin_api".into(), 2)));
    }

    #[test]
    fn corrections_persist_and_a_fresh_store_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        {
            let s = Store::open(&path).unwrap();
            s.set_room_version(ROOM, "13", "create_event").unwrap();
            // Cached as "13" first, then corrected: the cache follows the write.
            assert_eq!(s.room_version(ROOM).unwrap().as_deref(), Some("13"));
            s.set_room_version_ranked(ROOM, "11", "admin_api", 2)
                .unwrap();
            assert_eq!(s.room_version(ROOM).unwrap().as_deref(), Some("11"));
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(rec(&s), Some(("11".into(), "admin_api".into(), 2)));
    }

    #[test]
    fn rows_of_older_schemas_are_the_weakest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        {
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            super::super::schema::migrate(&mut conn, &super::super::schema::MIGRATIONS[..3], "t")
                .unwrap();
            conn.execute(
                "INSERT INTO room_versions VALUES (?1, '13', 'create_event', 1)",
                params![ROOM],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(rec(&s), Some(("13".into(), "create_event".into(), 0)));
        assert!(matches!(
            s.set_room_version_ranked(ROOM, "10", "make_join", 1)
                .unwrap(),
            RoomVersionClaim::Corrected { .. }
        ));
    }
}
