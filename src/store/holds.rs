//! Held events and their delivery queues.
//!
//! A rule may hold an event for review. The event is stored here (`held_events`) with what a
//! reviewer needs (room, sender, rules, effective label and marking, the PDU bytes as
//! received) and its state (`pending` until decided, then `released` or `rejected`). Held
//! traffic is delivered by the guard itself, in order, from one **queue per (direction,
//! destination, room)** (`hold_queue`): the held PDU and every later PDU of that room that
//! arrived while it waited. A queue entry points at its held event (`hold_id`) when it is
//! one. Entries are marked delivered, not deleted, so a retried transaction still finds the
//! PDUs the guard took over.
//!
//! The store keeps whatever it is given: states and approvals are plain text and JSON here;
//! `proxy::hold` owns their meaning. Every write is one SQLite transaction; a held event and
//! its queue entry are written together, after the caller's journal accepted them
//! ([`Store::hold_event`]).
use rusqlite::{params, OptionalExtension, Row};

use super::{check_room_id, sqlite, Store, StoreError};

/// Longest event id, server name or user id stored with a hold (bytes).
pub const MAX_HOLD_ID_BYTES: usize = 1024;

/// A held event to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHold {
    /// `inbound` or `outbound`.
    pub direction: String,
    pub room_id: String,
    pub event_id: String,
    pub origin: String,
    pub sender: String,
    /// The destination whose queue the PDU enters.
    pub destination: String,
    pub rules: Vec<String>,
    /// The effective label's JSON text, if labelled.
    pub label: Option<String>,
    /// Its display marking.
    pub marking: Option<String>,
    /// JSON array of rule matches (no matched text).
    pub matches: String,
    /// The PDU as received.
    pub pdu: Vec<u8>,
    /// Unix ms.
    pub created_at: i64,
}

/// One stored held event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRecord {
    pub id: i64,
    pub direction: String,
    pub room_id: String,
    pub event_id: String,
    pub origin: String,
    pub sender: String,
    pub destinations: Vec<String>,
    pub rules: Vec<String>,
    pub label: Option<String>,
    pub marking: Option<String>,
    pub matches: String,
    pub pdu: Vec<u8>,
    /// `pending`, `released` or `rejected`.
    pub state: String,
    /// JSON array of approvals.
    pub approvals: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

/// One PDU waiting in a delivery queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub seq: i64,
    pub direction: String,
    pub destination: String,
    pub room_id: String,
    pub event_id: String,
    pub origin: String,
    pub pdu: Vec<u8>,
    /// The held event this entry is, if it is one.
    pub hold_id: Option<i64>,
    pub enqueued_at: i64,
    pub attempts: i64,
    /// Unix ms before which no delivery is attempted.
    pub next_attempt_at: i64,
}

/// A queue: (direction, destination, room).
pub type QueueKey = (String, String, String);

fn check_direction(d: &str) -> Result<(), StoreError> {
    match d {
        "inbound" | "outbound" => Ok(()),
        _ => Err(StoreError::InvalidInput {
            what: "hold direction: not inbound/outbound",
        }),
    }
}

fn check_id(s: &str, what: &'static str) -> Result<(), StoreError> {
    if s.is_empty() || s.len() > MAX_HOLD_ID_BYTES {
        return Err(StoreError::InvalidInput { what });
    }
    Ok(())
}

fn json_list(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|_| StoreError::Corrupt {
        table: "held_events",
        what: "list column is not a JSON array of strings",
    })
}

fn to_json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

const HELD_COLUMNS: &str = "id, direction, room_id, event_id, origin, sender, destinations, rules, label, marking, matches, pdu, state, approvals, created_at, decided_at";

type HeldRow = (
    HeldRecord,
    // destinations, rules as JSON text
    String,
    String,
);

fn held_row(r: &Row<'_>) -> rusqlite::Result<HeldRow> {
    Ok((
        HeldRecord {
            id: r.get(0)?,
            direction: r.get(1)?,
            room_id: r.get(2)?,
            event_id: r.get(3)?,
            origin: r.get(4)?,
            sender: r.get(5)?,
            destinations: Vec::new(),
            rules: Vec::new(),
            label: r.get(8)?,
            marking: r.get(9)?,
            matches: r.get(10)?,
            pdu: r.get(11)?,
            state: r.get(12)?,
            approvals: r.get(13)?,
            created_at: r.get(14)?,
            decided_at: r.get(15)?,
        },
        r.get(6)?,
        r.get(7)?,
    ))
}

fn into_held((mut rec, dest, rules): HeldRow) -> Result<HeldRecord, StoreError> {
    rec.destinations = json_list(&dest)?;
    rec.rules = json_list(&rules)?;
    Ok(rec)
}

const QUEUE_COLUMNS: &str = "seq, direction, destination, room_id, event_id, origin, pdu, hold_id, enqueued_at, attempts, next_attempt_at";

fn queue_row(r: &Row<'_>) -> rusqlite::Result<QueueEntry> {
    Ok(QueueEntry {
        seq: r.get(0)?,
        direction: r.get(1)?,
        destination: r.get(2)?,
        room_id: r.get(3)?,
        event_id: r.get(4)?,
        origin: r.get(5)?,
        pdu: r.get(6)?,
        hold_id: r.get(7)?,
        enqueued_at: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt_at: r.get(10)?,
    })
}

impl Store {
    /// The id a held event has ([`Store::held_event_id`]) or gets: the next free id. Ids are
    /// never reused (rows are never deleted). A process that holds events must not hold two at
    /// once between this call and [`Store::hold_event`] (`proxy::hold` serialises them).
    pub fn next_hold_id(&self, direction: &str, event_id: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.held_event_id(direction, event_id)? {
            return Ok(id);
        }
        self.conn()
            .query_row(
                "SELECT coalesce(max(id), 0) + 1 FROM held_events",
                [],
                |r| r.get(0),
            )
            .map_err(sqlite("next held event id"))
    }

    /// The id of the event held in `direction`, if it is held.
    pub fn held_event_id(
        &self,
        direction: &str,
        event_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.conn()
            .prepare_cached("SELECT id FROM held_events WHERE direction = ?1 AND event_id = ?2")
            .and_then(|mut st| {
                st.query_row(params![direction, event_id], |r| r.get(0))
                    .optional()
            })
            .map_err(sqlite("read held event id"))
    }

    /// Holds an event under `id` (from [`Store::next_hold_id`]): stores it (or, held before in
    /// this direction, adds the destination and rules to it) and puts it at the end of the
    /// queue of (direction, destination, room), in one transaction. Returns the event's id and
    /// whether it is new.
    pub fn hold_event(&self, h: &NewHold, id: i64) -> Result<(i64, bool), StoreError> {
        check_direction(&h.direction)?;
        check_room_id(&h.room_id)?;
        check_id(&h.event_id, "hold event ID: empty or too long")?;
        check_id(&h.origin, "hold origin: empty or too long")?;
        check_id(&h.destination, "hold destination: empty or too long")?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sqlite("begin hold event"))?;
        let existing = tx
            .query_row(
                "SELECT id, destinations, rules FROM held_events WHERE direction = ?1 AND event_id = ?2",
                params![h.direction, h.event_id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
            )
            .optional()
            .map_err(sqlite("read held event"))?;
        let (id, new) = match existing {
            Some((id, dest, rules)) => {
                let mut dest = json_list(&dest)?;
                let mut rules = json_list(&rules)?;
                if !dest.contains(&h.destination) {
                    dest.push(h.destination.clone());
                }
                for r in &h.rules {
                    if !rules.contains(r) {
                        rules.push(r.clone());
                    }
                }
                tx.execute(
                    "UPDATE held_events SET destinations = ?2, rules = ?3 WHERE id = ?1",
                    params![id, to_json_list(&dest), to_json_list(&rules)],
                )
                .map_err(sqlite("update held event"))?;
                (id, false)
            }
            None => {
                tx.execute(
                    "INSERT INTO held_events (direction, room_id, event_id, origin, sender, destinations, rules, label, marking, matches, pdu, state, approvals, created_at, id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', '[]', ?12, ?13)",
                    params![
                        h.direction,
                        h.room_id,
                        h.event_id,
                        h.origin,
                        h.sender,
                        to_json_list(std::slice::from_ref(&h.destination)),
                        to_json_list(&h.rules),
                        h.label,
                        h.marking,
                        h.matches,
                        h.pdu,
                        h.created_at,
                        id
                    ],
                )
                .map_err(sqlite("insert held event"))?;
                (id, true)
            }
        };
        let queued = tx
            .query_row(
                "SELECT seq FROM hold_queue WHERE direction = ?1 AND destination = ?2 AND event_id = ?3",
                params![h.direction, h.destination, h.event_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(sqlite("read hold queue"))?;
        match queued {
            Some(seq) => {
                tx.execute(
                    "UPDATE hold_queue SET hold_id = ?2 WHERE seq = ?1",
                    params![seq, id],
                )
                .map_err(sqlite("mark queued event held"))?;
            }
            None => {
                tx.execute(
                    "INSERT INTO hold_queue (direction, destination, room_id, event_id, origin, pdu, hold_id, enqueued_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        h.direction,
                        h.destination,
                        h.room_id,
                        h.event_id,
                        h.origin,
                        h.pdu,
                        id,
                        h.created_at
                    ],
                )
                .map_err(sqlite("enqueue held event"))?;
            }
        }
        tx.commit().map_err(sqlite("commit hold event"))?;
        Ok((id, new))
    }

    /// Puts a PDU at the end of the queue of (direction, destination, room). Returns `false`
    /// if it was queued there before (a retried transaction): nothing changes then.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue_pdu(
        &self,
        direction: &str,
        destination: &str,
        room_id: &str,
        event_id: &str,
        origin: &str,
        pdu: &[u8],
        at: i64,
    ) -> Result<bool, StoreError> {
        check_direction(direction)?;
        check_room_id(room_id)?;
        check_id(event_id, "queued event ID: empty or too long")?;
        check_id(origin, "queued origin: empty or too long")?;
        check_id(destination, "queued destination: empty or too long")?;
        let n = self
            .conn()
            .prepare_cached(
                "INSERT OR IGNORE INTO hold_queue (direction, destination, room_id, event_id, origin, pdu, enqueued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![direction, destination, room_id, event_id, origin, pdu, at])
            })
            .map_err(sqlite("enqueue PDU"))?;
        Ok(n == 1)
    }

    /// Whether the guard took `event_id` over in `direction` (held or queued, delivered or
    /// not).
    pub fn hold_took_over(&self, direction: &str, event_id: &str) -> Result<bool, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM hold_queue WHERE direction = ?1 AND event_id = ?2)",
            )
            .and_then(|mut st| st.query_row(params![direction, event_id], |r| r.get(0)))
            .map_err(sqlite("read hold queue"))
    }

    /// The (direction, room) pairs with PDUs waiting for delivery.
    pub fn held_rooms(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT DISTINCT direction, room_id FROM hold_queue WHERE delivered_at IS NULL",
            )
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sqlite("list held rooms"))
    }

    /// Per direction: pending held events and PDUs waiting for delivery.
    pub fn hold_counts(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let conn = self.conn();
        let mut out = Vec::new();
        for d in ["inbound", "outbound"] {
            let held: i64 = conn
                .query_row(
                    "SELECT count(*) FROM held_events WHERE direction = ?1 AND state = 'pending'",
                    params![d],
                    |r| r.get(0),
                )
                .map_err(sqlite("count held events"))?;
            let queued: i64 = conn
                .query_row(
                    "SELECT count(*) FROM hold_queue WHERE direction = ?1 AND delivered_at IS NULL",
                    params![d],
                    |r| r.get(0),
                )
                .map_err(sqlite("count queued PDUs"))?;
            out.push((d.to_owned(), held, queued));
        }
        Ok(out)
    }

    /// One held event.
    pub fn held_event(&self, id: i64) -> Result<Option<HeldRecord>, StoreError> {
        let r = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {HELD_COLUMNS} FROM held_events WHERE id = ?1"
            ))
            .and_then(|mut st| st.query_row(params![id], held_row).optional())
            .map_err(sqlite("read held event"))?;
        r.map(into_held).transpose()
    }

    /// Held events, oldest first: pending ones, and with `include_decided` the decided too.
    pub fn held_events(&self, include_decided: bool) -> Result<Vec<HeldRecord>, StoreError> {
        let rows = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {HELD_COLUMNS} FROM held_events WHERE ?1 OR state = 'pending' ORDER BY id"
            ))
            .and_then(|mut st| {
                st.query_map(params![include_decided], held_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sqlite("list held events"))?;
        rows.into_iter().map(into_held).collect()
    }

    /// Records a decision step on a pending held event whose approvals are still `before`: the
    /// new approvals (JSON array) and, for a final decision, the new state and time. Returns
    /// `false` if the event changed meanwhile (decided, or another approval recorded, perhaps
    /// by another process): nothing is written then.
    pub fn decide_held_event(
        &self,
        id: i64,
        before: &str,
        approvals: &str,
        state: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError> {
        if let Some(s) = state {
            if !matches!(s, "released" | "rejected") {
                return Err(StoreError::InvalidInput {
                    what: "hold decision: not released/rejected",
                });
            }
        }
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE held_events SET approvals = ?2, state = coalesce(?3, state),
                 decided_at = CASE WHEN ?3 IS NULL THEN NULL ELSE ?4 END
                 WHERE id = ?1 AND state = 'pending' AND approvals = ?5",
            )
            .and_then(|mut st| st.execute(params![id, approvals, state, at, before]))
            .map_err(sqlite("decide held event"))?;
        Ok(n == 1)
    }

    /// Pending held events created before `before` (Unix ms): ids, oldest first.
    pub fn held_events_older_than(&self, before: i64) -> Result<Vec<i64>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT id FROM held_events WHERE state = 'pending' AND created_at < ?1 ORDER BY id",
            )
            .and_then(|mut st| {
                st.query_map(params![before], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sqlite("list expired held events"))
    }

    /// The queues with PDUs waiting for delivery.
    pub fn hold_queues(&self) -> Result<Vec<QueueKey>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT direction, destination, room_id FROM hold_queue WHERE delivered_at IS NULL
                 GROUP BY direction, destination, room_id ORDER BY min(seq)",
            )
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sqlite("list hold queues"))
    }

    /// The first `limit` waiting PDUs of a queue, in order.
    pub fn hold_queue(&self, key: &QueueKey, limit: usize) -> Result<Vec<QueueEntry>, StoreError> {
        self.conn()
            .prepare_cached(&format!(
                "SELECT {QUEUE_COLUMNS} FROM hold_queue
                 WHERE direction = ?1 AND destination = ?2 AND room_id = ?3 AND delivered_at IS NULL
                 ORDER BY seq LIMIT ?4"
            ))
            .and_then(|mut st| {
                st.query_map(
                    params![
                        key.0,
                        key.1,
                        key.2,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    queue_row,
                )?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sqlite("read hold queue"))
    }

    /// Marks queue entries delivered and drops their PDU bytes (the held event keeps its own
    /// copy for the review record).
    pub fn mark_delivered(&self, seqs: &[i64], at: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sqlite("begin mark delivered"))?;
        for s in seqs {
            tx.execute(
                "UPDATE hold_queue SET delivered_at = ?2, pdu = x'' WHERE seq = ?1",
                params![s, at],
            )
            .map_err(sqlite("mark delivered"))?;
        }
        tx.commit().map_err(sqlite("commit mark delivered"))
    }

    /// Records a failed delivery attempt of the queue entry `seq`.
    pub fn delivery_failed(
        &self,
        seq: i64,
        attempts: i64,
        next_attempt_at: i64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE hold_queue SET attempts = ?2, next_attempt_at = ?3 WHERE seq = ?1",
                params![seq, attempts, next_attempt_at],
            )
            .map(|_| ())
            .map_err(sqlite("record delivery attempt"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(event: &str, dest: &str) -> NewHold {
        NewHold {
            direction: "outbound".into(),
            room_id: "!r:a".into(),
            event_id: event.into(),
            origin: "a".into(),
            sender: "@u:a".into(),
            destination: dest.into(),
            rules: vec!["r1".into()],
            label: None,
            marking: None,
            matches: "[]".into(),
            pdu: b"{}".to_vec(),
            created_at: 5,
        }
    }

    fn put(s: &Store, h: &NewHold) -> (i64, bool) {
        let id = s.next_hold_id(&h.direction, &h.event_id).unwrap();
        s.hold_event(h, id).unwrap()
    }

    #[test]
    fn held_event_queue_order_and_decisions() {
        let s = Store::open_in_memory().unwrap();
        let (id, new) = put(&s, &hold("$h", "b"));
        assert!(new);
        assert!(s
            .enqueue_pdu("outbound", "b", "!r:a", "$later", "a", b"{}", 6)
            .unwrap());
        assert!(!s
            .enqueue_pdu("outbound", "b", "!r:a", "$later", "a", b"{}", 7)
            .unwrap());
        // The same event held towards another destination: one held event, two queues.
        let (again, new) = put(&s, &hold("$h", "c"));
        assert_eq!((again, new), (id, false));
        assert_eq!(s.held_event(id).unwrap().unwrap().destinations, ["b", "c"]);
        assert_eq!(s.next_hold_id("outbound", "$h").unwrap(), id);
        assert_eq!(s.next_hold_id("outbound", "$x").unwrap(), id + 1);
        let key = ("outbound".to_string(), "b".to_string(), "!r:a".to_string());
        let q = s.hold_queue(&key, 10).unwrap();
        assert_eq!(
            q.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
            ["$h", "$later"]
        );
        assert_eq!(q[0].hold_id, Some(id));
        assert_eq!(q[1].hold_id, None);
        assert_eq!(
            s.held_rooms().unwrap(),
            [("outbound".into(), "!r:a".into())]
        );
        assert_eq!(s.hold_queues().unwrap().len(), 2);
        assert!(s.decide_held_event(id, "[]", "[1]", None, 9).unwrap());
        assert_eq!(s.held_event(id).unwrap().unwrap().state, "pending");
        assert!(
            !s.decide_held_event(id, "[]", "[2]", None, 9).unwrap(),
            "a concurrent approval is not lost"
        );
        assert!(s
            .decide_held_event(id, "[1]", "[1,2]", Some("released"), 9)
            .unwrap());
        assert!(!s
            .decide_held_event(id, "[1,2]", "[1,2,3]", Some("rejected"), 9)
            .unwrap());
        let rec = s.held_event(id).unwrap().unwrap();
        assert_eq!((rec.state.as_str(), rec.decided_at), ("released", Some(9)));
        assert!(s.held_events(false).unwrap().is_empty());
        assert_eq!(s.held_events(true).unwrap().len(), 1);
        s.mark_delivered(&[q[0].seq, q[1].seq], 10).unwrap();
        assert!(s.hold_queue(&key, 10).unwrap().is_empty());
        assert!(s.hold_took_over("outbound", "$later").unwrap());
        assert_eq!(
            s.held_rooms().unwrap(),
            [("outbound".into(), "!r:a".into())],
            "queue c waits"
        );
    }
}
