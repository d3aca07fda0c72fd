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
//!
//! # Bounds
//!
//! A remote server can send any number of member events. At most [`MAX_USERS_PER_SERVER`]
//! users are kept per (room, server): the next new one marks the server present in the room
//! for good instead (a row for user `*`, never replaced). At most [`MAX_ROWS_PER_ROOM`] rows are
//! kept per room: the next new member marks the room *saturated* (user `*` of server `*`), and
//! from then on every remote server counts as a member. Both only ever add servers: the bounds
//! cannot make the guard release more.
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use rusqlite::params;

use super::{check_room_id, sqlite, unix_ms, Store, StoreError, MAX_ROOM_ID_BYTES};

/// Largest number of rooms whose server sets are cached in memory (the cache is cleared when
/// full).
const CACHE_MAX: usize = 10_000;

/// Most users kept per (room, server): beyond it the server is marked present in the room for
/// good (a row for the user `*`), so a remote cannot grow the table without bound.
pub const MAX_USERS_PER_SERVER: usize = 1_000;

/// Most rows kept per room: beyond it the room is marked *saturated* (a row for user `*` of
/// server `*`): every remote server counts as a member of it from then on.
pub const MAX_ROWS_PER_ROOM: usize = 10_000;

/// Marker rows: user `*<server>` marks a server present for good, user `**` (server `*`) a
/// saturated room. Real user ids start with `@`.
const MARKER: &str = "*";

/// The servers with a present member in a room, lower case, sorted; `known` says whether the
/// guard has any row for the room at all (a room it has never seen a membership for is
/// unknown, not empty); `saturated`: the room had more members than the guard keeps
/// ([`MAX_ROWS_PER_ROOM`]), so any remote server may be in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomServers {
    pub known: bool,
    pub saturated: bool,
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
        self.put_room_member_within(
            room_id,
            user_id,
            membership,
            origin_server_ts,
            source,
            (MAX_USERS_PER_SERVER, MAX_ROWS_PER_ROOM),
        )
    }

    /// [`Self::put_room_member`] with the bounds (users per server, rows per room) given.
    pub(crate) fn put_room_member_within(
        &self,
        room_id: &str,
        user_id: &str,
        membership: &str,
        origin_server_ts: i64,
        source: MembershipSource,
        (max_users, max_rows): (usize, usize),
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
        let conn = self.conn();
        // A new row: within the bounds, else a marker row instead.
        let exists: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = ?1 AND user_id = ?2)",
            )
            .and_then(|mut st| st.query_row(params![room_id, user_id], |r| r.get(0)))
            .map_err(sqlite("read room members"))?;
        if !exists {
            let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<usize, StoreError> {
                conn.prepare_cached(sql)
                    .and_then(|mut st| st.query_row(p, |r| r.get::<_, i64>(0)))
                    .map(|n| n as usize)
                    .map_err(sqlite("count room members"))
            };
            let marker = |server: &str| -> Result<bool, StoreError> {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO room_members (room_id, user_id, server_name, membership, origin_server_ts, learned_from, learned_at) \
                     VALUES (?1, ?2, ?3, 'join', 9223372036854775807, 'event', ?4)",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        room_id,
                        format!("{MARKER}{server}"),
                        server,
                        unix_ms(SystemTime::now())
                    ])
                })
                .map(|n| n > 0)
                .map_err(sqlite("write room member marker"))
            };
            let saturated = count(
                "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = ?1 AND user_id = '**')",
                &[&room_id],
            )? == 1;
            if saturated {
                return Ok(false);
            }
            let in_room = count(
                "SELECT COUNT(*) FROM (SELECT 1 FROM room_members WHERE room_id = ?1 LIMIT ?2)",
                &[&room_id, &(max_rows as i64)],
            )?;
            if in_room >= max_rows {
                tracing::warn!(room = room_id, "room membership: too many members to keep; every remote server counts as a member now");
                let changed = marker(MARKER)?;
                drop(conn);
                cache.remove(room_id);
                return Ok(changed);
            }
            let of_server = count(
                "SELECT COUNT(*) FROM (SELECT 1 FROM room_members WHERE room_id = ?1 AND server_name = ?2 LIMIT ?3)",
                &[&room_id, &server, &(max_users as i64)],
            )?;
            if of_server >= max_users {
                let changed = marker(&server)?;
                drop(conn);
                cache.remove(room_id);
                return Ok(changed);
            }
        }
        let changed = conn
            .prepare_cached(
                "INSERT INTO room_members (room_id, user_id, server_name, membership, origin_server_ts, learned_from, learned_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (room_id, user_id) DO UPDATE SET \
                 server_name = excluded.server_name, membership = excluded.membership, \
                 origin_server_ts = excluded.origin_server_ts, learned_from = excluded.learned_from, \
                 learned_at = excluded.learned_at \
                 WHERE excluded.origin_server_ts >= room_members.origin_server_ts \
                 AND (excluded.membership != room_members.membership \
                      OR excluded.origin_server_ts != room_members.origin_server_ts)",
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
        drop(conn);
        if changed > 0 {
            cache.remove(room_id);
        }
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
        let mut servers = conn
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
        let saturated = servers.iter().any(|s| s == MARKER);
        servers.retain(|s| s != MARKER);
        let entry = Arc::new(RoomServers {
            known,
            saturated,
            servers,
        });
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
        // The same membership again (state sent once more) writes nothing.
        assert!(!s
            .put_room_member(R, "@a:hs2", "join", 10, MembershipSource::State)
            .unwrap());
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

    /// A remote cannot grow the table without bound: past the per-server bound the server is
    /// present for good (its users' leaves no longer remove it), past the per-room bound the
    /// room is saturated.
    #[test]
    fn bounds_only_ever_add_servers() {
        const B: (usize, usize) = (10, 50);
        let s = Store::open_in_memory().unwrap();
        let put = |user: &str, m: &str, ts: i64| {
            s.put_room_member_within(R, user, m, ts, MembershipSource::Event, B)
                .unwrap()
        };
        for i in 0..B.0 + 5 {
            put(&format!("@u{i}:evil"), "join", 1);
        }
        for i in 0..B.0 {
            put(&format!("@u{i}:evil"), "leave", 2);
        }
        assert_eq!(servers(&s), ["evil"], "marked present for good");
        let rows = |s: &Store| -> i64 {
            s.conn()
                .query_row(
                    "SELECT COUNT(*) FROM room_members WHERE room_id = ?1",
                    [R],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(rows(&s) as usize, B.0 + 1);
        assert!(!s.room_servers(R).unwrap().saturated);
        // Fill the room up to its bound with many servers: then it is saturated.
        let mut i = 0;
        while !s.room_servers(R).unwrap().saturated {
            put(&format!("@a:s{i}"), "invite", 1);
            i += 1;
            assert!(i <= B.1, "saturates within the bound");
        }
        let rs = s.room_servers(R).unwrap();
        assert!(rs.saturated && !rs.servers.iter().any(|x| x.starts_with('*')));
        assert_eq!(rows(&s) as usize, B.1 + 1);
        // Nothing more is stored for a saturated room; existing rows still update.
        assert!(!put("@new:other", "join", 1));
        assert!(put("@a:s0", "leave", 5));
        assert_eq!(rows(&s) as usize, B.1 + 1);
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
