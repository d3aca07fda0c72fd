//! The guard's room labels and refused label changes for the admin API
//! (`GET /_grenzwacht/v1/rooms/labels`, [`crate::admin::RoomLabelsView`]), read from the label
//! layer. Without `[labels]` the guard holds no room labels: both lists are empty.
use std::sync::Arc;

use crate::admin::api::{RefusedLabelChange, RoomLabelEntry, RoomLabels};
use crate::admin::RoomLabelsView;
use crate::proxy::Guard;

/// Most room labels one answer lists.
pub const MAX_LISTED: usize = 10_000;

/// [`RoomLabelsView`] over a running guard.
pub struct GuardRoomLabels(pub Arc<Guard>);

impl RoomLabelsView for GuardRoomLabels {
    fn room_labels(&self) -> Result<RoomLabels, String> {
        let Some(layer) = self.0.labels() else {
            return Ok(RoomLabels::default());
        };
        Ok(RoomLabels {
            rooms: layer
                .room_labels(MAX_LISTED)?
                .into_iter()
                .map(|r| RoomLabelEntry {
                    room_id: r.room_id,
                    label: r.label,
                    marking: r.marking,
                    event_id: r.event_id,
                    sender: r.sender,
                    origin_server_ts: r.origin_server_ts,
                    learned_from: r.learned_from,
                })
                .collect(),
            refused_changes: layer
                .refused_changes()
                .into_iter()
                .map(|c| RefusedLabelChange {
                    room_id: c.room_id,
                    event_id: c.event_id,
                    sender: c.sender,
                    at_ms: c.at_ms,
                    reason: c.reason.to_owned(),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_labels_the_lists_are_empty() {
        let cfg =
            crate::config::Config::from_str("[store]\npath = \"/tmp/x.db\"\n", "gw.toml").unwrap();
        let store = crate::store::Store::open_in_memory().unwrap();
        let guard = Arc::new(Guard::from_config(&cfg, store).unwrap());
        let view = GuardRoomLabels(guard);
        assert_eq!(view.room_labels().unwrap(), RoomLabels::default());
    }
}
