//! Room membership as the guard saw it (`room_members`, schema version 7).
//!
//! The label layer (`policy::labels`) judges what leaves the protected side for a room against
//! every remote server with a member in that room, not only against the destination: a remote
//! server passes the room's events on to the other servers in it (`get_missing_events`,
//! `backfill`, `/event`). This table is where it keeps who is in which room.
//!
//! # Ordering
//!
//! Membership events arrive out of order (backfill brings old ones after new ones). A row is
//! replaced only by a membership event that is not older (`origin_server_ts`) than the row's,
//! whether it crossed the guard (`event`) or is part of the protected homeserver's current
//! state (`state`): the homeserver's state can lag behind an event the guard has just passed
//! to it, and must not bring back a member who has left. A user counts as present in every membership but `leave` and `ban`
//! (an unknown membership value counts as present: fail closed, the room is judged against
//! more servers, never fewer).
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use rusqlite::params;

use super::{check_room_id, sqlite, unix_ms, Store, StoreError, MAX_ROOM_ID_BYTES};

/// Largest number of rooms whose server sets are cached in memory (the cache is cleared when
/// full).
const CACHE_MAX: usize = 10_000;

/// The servers with a present member in a room, lower case, sorted; `known` says whether the
/// guard has any row for the room at all (a room it has never seen a membership for is
/// unknown, not empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomServers {
    pub known: bool,
    pub servers: Vec<String>,
}

/// Where a membership was learned (`learned_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipSource {
    /// A membership event that crossed the guard: ordered by `origin_server_ts`.
    Event,
    /// The protected homeserver's current state.
    State,
}

impl MembershipSource {
    fn as_str(self) -> &'static str {
        match self {
            MembershipSource::Event => "event",
            MembershipSource::State => "state",
        }
    }
}

/// Whether `membership` counts as being in the room.
pub fn is_present(membership: &str) -> bool {
    !matches!(membership, "leave" | "ban")
}

impl Store {
    /// Records `user_id`'s `membership` in `room_id` (see the module docs for which record
    /// wins). `user_id` must be `@local:server`; the server name is stored in lower case.
    /// Returns whether the row changed.
    pub fn put_room_member(
        &self,
        room_id: &str,
        user_id: &str,
        membership: &str,
        origin_server_ts: i64,
        source: MembershipSource,
    ) -> Result<bool, StoreError> {
        check_room_id(room_id)?;
        let Some((_, server)) = crate::federation::server_name::split_user_id(user_id) else {
            return Err(StoreError::InvalidInput {
                what: "room member: not a user ID",
            });
        };
        if user_id.len() > MAX_ROOM_ID_BYTES || membership.is_empty() || membership.len() > 64 {
            return Err(StoreError::InvalidInput {
                what: "room member: user ID or membership too long or empty",
            });
        }
        let server = server.to_ascii_lowercase();
        let mut cache = self
            .inner
            .room_servers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let changed = self
            .conn()
            .prepare_cached(
                "INSERT INTO room_members (room_id, user_id, server_name, membership, origin_server_ts, learned_from, learned_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (room_id, user_id) DO UPDATE SET \
                 server_name = excluded.server_name, membership = excluded.membership, \
                 origin_server_ts = excluded.origin_server_ts, learned_from = excluded.learned_from, \
                 learned_at = excluded.learned_at \
                 WHERE excluded.origin_server_ts >= room_members.origin_server_ts",
            )
            .and_then(|mut st| {
                st.execute(params![
                    room_id,
                    user_id,
                    server,
                    membership,
                    origin_server_ts,
                    source.as_str(),
                    unix_ms(SystemTime::now())
                ])
            })
            .map_err(sqlite("write room member"))?;
        cache.remove(room_id);
        Ok(changed > 0)
    }

    /// The servers with a present member in `room_id` (cached; every write of the room
    /// invalidates its entry).
    pub fn room_servers(&self, room_id: &str) -> Result<Arc<RoomServers>, StoreError> {
        if let Some(hit) = self
            .inner
            .room_servers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(room_id)
        {
            return Ok(hit.clone());
        }
        // Read under the write lock: a concurrent `put_room_member` cannot slip between the
        // query and the cache insert and leave a stale entry behind.
        let mut cache = self
            .inner
            .room_servers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let conn = self.conn();
        let known: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = ?1)")
            .and_then(|mut st| st.query_row(params![room_id], |r| r.get(0)))
            .map_err(sqlite("read room members"))?;
        let servers = conn
            .prepare_cached(
                "SELECT DISTINCT server_name FROM room_members \
                 WHERE room_id = ?1 AND membership NOT IN ('leave', 'ban') ORDER BY server_name",
            )
            .and_then(|mut st| {
                st.query_map(params![room_id], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sqlite("read room members"))?;
        drop(conn);
        let entry = Arc::new(RoomServers { known, servers });
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(room_id.to_owned(), entry.clone());
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "!r:hs1";

    fn servers(s: &Store) -> Vec<String> {
        s.room_servers(R).unwrap().servers.clone()
    }

    #[test]
    fn a_room_without_rows_is_unknown_and_present_members_give_their_servers() {
        let s = Store::open_in_memory().unwrap();
        let rs = s.room_servers(R).unwrap();
        assert!(!rs.known && rs.servers.is_empty());
        s.put_room_member(R, "@a:HS2.example", "join", 1, MembershipSource::Event)
            .unwrap();
        s.put_room_member(R, "@b:hs3", "invite", 2, MembershipSource::Event)
            .unwrap();
        s.put_room_member(R, "@c:hs4", "knock", 2, MembershipSource::Event)
            .unwrap();
        s.put_room_member(R, "@d:hs5", "leave", 2, MembershipSource::Event)
            .unwrap();
        s.put_room_member(R, "@e:hs6", "ban", 2, MembershipSource::Event)
            .unwrap();
        s.put_room_member(R, "@f:hs7", "x.unknown", 2, MembershipSource::Event)
            .unwrap();
        assert!(s.room_servers(R).unwrap().known);
        assert_eq!(servers(&s), ["hs2.example", "hs3", "hs4", "hs7"]);
        // Other rooms are separate.
        assert!(!s.room_servers("!other:hs1").unwrap().known);
    }

    #[test]
    fn older_events_do_not_replace_newer_ones_from_either_source() {
        let s = Store::open_in_memory().unwrap();
        s.put_room_member(R, "@a:hs2", "join", 10, MembershipSource::Event)
            .unwrap();
        // Backfilled older leave: ignored.
        assert!(!s
            .put_room_member(R, "@a:hs2", "leave", 5, MembershipSource::Event)
            .unwrap());
        assert_eq!(servers(&s), ["hs2"]);
        // Newer leave: applies, the server is gone.
        assert!(s
            .put_room_member(R, "@a:hs2", "leave", 11, MembershipSource::Event)
            .unwrap());
        assert!(servers(&s).is_empty());
        assert!(s.room_servers(R).unwrap().known);
        // A lagging state (the join before the leave) does not bring the member back; a
        // newer one does.
        assert!(!s
            .put_room_member(R, "@a:hs2", "join", 10, MembershipSource::State)
            .unwrap());
        assert!(servers(&s).is_empty());
        s.put_room_member(R, "@a:hs2", "join", 12, MembershipSource::State)
            .unwrap();
        assert_eq!(servers(&s), ["hs2"]);
    }

    #[test]
    fn a_server_stays_while_any_of_its_users_is_present_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        {
            let s = Store::open(&path).unwrap();
            s.put_room_member(R, "@a:hs2", "join", 1, MembershipSource::Event)
                .unwrap();
            s.put_room_member(R, "@b:hs2", "join", 1, MembershipSource::Event)
                .unwrap();
            s.put_room_member(R, "@a:hs2", "leave", 2, MembershipSource::Event)
                .unwrap();
            assert_eq!(servers(&s), ["hs2"]);
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(servers(&s), ["hs2"]);
    }

    #[test]
    fn malformed_input_is_refused() {
        let s = Store::open_in_memory().unwrap();
        for (room, user, m) in [
            (R, "not-a-user", "join"),
            (R, "@:hs2", "join"),
            (R, "@a:hs2", ""),
            ("", "@a:hs2", "join"),
        ] {
            assert!(
                s.put_room_member(room, user, m, 0, MembershipSource::Event)
                    .is_err(),
                "{room} {user} {m}"
            );
        }
        let long = format!("@{}:hs2", "a".repeat(300));
        assert!(s
            .put_room_member(R, &long, "join", 0, MembershipSource::Event)
            .is_err());
    }
}
