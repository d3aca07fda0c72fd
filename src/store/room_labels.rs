//! Listing the stored room labels (what the admin API shows as the guard's room labels).
use rusqlite::params;

use super::{sqlite, RoomLabelRecord, Store, StoreError};

impl Store {
    /// Stored room labels in room id order, at most `limit`: (room id, record).
    pub fn list_room_labels(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, RoomLabelRecord)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT room_id, label, event_id, sender, origin_server_ts, learned_from \
                 FROM room_labels ORDER BY room_id LIMIT ?1",
            )
            .map_err(sqlite("list room labels"))?;
        let rows = st
            .query_map(params![limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    RoomLabelRecord {
                        label: r.get(1)?,
                        event_id: r.get(2)?,
                        sender: r.get(3)?,
                        origin_server_ts: r.get(4)?,
                        learned_from: r.get(5)?,
                    },
                ))
            })
            .map_err(sqlite("list room labels"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(sqlite("list room labels"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_stored_label_in_room_order_up_to_the_limit() {
        let store = Store::open_in_memory().unwrap();
        assert!(store.list_room_labels(10).unwrap().is_empty());
        for (room, ts) in [("!b:hs1", 2), ("!a:hs1", 1), ("!c:hs1", 3)] {
            store
                .put_room_label(
                    room,
                    &RoomLabelRecord {
                        label: format!("{{\"classification\":{ts}}}"),
                        event_id: Some(format!("$e{ts}")),
                        sender: "@admin:hs1".into(),
                        origin_server_ts: ts,
                        learned_from: "pdu".into(),
                    },
                )
                .unwrap();
        }
        let all = store.list_room_labels(10).unwrap();
        let rooms: Vec<&str> = all.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(rooms, ["!a:hs1", "!b:hs1", "!c:hs1"]);
        assert_eq!(all[1].1.origin_server_ts, 2);
        assert_eq!(all[1].1.event_id.as_deref(), Some("$e2"));
        assert_eq!(store.list_room_labels(2).unwrap().len(), 2);
    }
}
