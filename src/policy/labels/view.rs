//! What the label layer shows of itself: the room labels it holds (with their display
//! markings) and the room label changes it refused, kept in memory (the newest
//! [`MAX_REFUSED_CHANGES`]) and counted in [`ROOM_LABEL_CHANGES_REFUSED_TOTAL`].
use std::collections::VecDeque;

use super::LabelPolicy;

/// Counter: room label changes refused (neither a raise nor from the protected side).
pub const ROOM_LABEL_CHANGES_REFUSED_TOTAL: &str = "grenzwacht_room_label_changes_refused_total";
/// How many refused changes are kept for [`LabelPolicy::refused_changes`].
pub const MAX_REFUSED_CHANGES: usize = 1000;

/// A room label change the layer refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedChange {
    pub room_id: String,
    pub event_id: Option<String>,
    pub sender: String,
    /// When it was refused (ms since the Unix epoch).
    pub at_ms: i64,
    pub reason: &'static str,
}

/// A room label as the layer holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomLabelInfo {
    pub room_id: String,
    /// The label's JSON (the stored text, parsed; a string if it is not JSON).
    pub label: serde_json::Value,
    /// Its display marking, if the label is valid under a loaded SPIF.
    pub marking: Option<String>,
    pub event_id: Option<String>,
    pub sender: String,
    pub origin_server_ts: i64,
    pub learned_from: String,
}

/// The refused changes, bounded.
#[derive(Debug, Default)]
pub(super) struct Refused(std::sync::Mutex<VecDeque<RefusedChange>>);

impl Refused {
    pub(super) fn push(&self, change: RefusedChange) {
        metrics::counter!(ROOM_LABEL_CHANGES_REFUSED_TOTAL).increment(1);
        let mut q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= MAX_REFUSED_CHANGES {
            q.pop_front();
        }
        q.push_back(change);
    }
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl LabelPolicy {
    /// The refused room label changes, oldest first (at most [`MAX_REFUSED_CHANGES`]).
    pub fn refused_changes(&self) -> Vec<RefusedChange> {
        self.refused
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The stored room labels in room id order (at most `limit`), with display markings.
    pub fn room_labels(&self, limit: usize) -> Result<Vec<RoomLabelInfo>, String> {
        let rows = self
            .store
            .list_room_labels(limit)
            .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|(room_id, rec)| {
                let marking = match self.parse_text(rec.label.clone()).as_ref() {
                    Ok(label) => self.spifs.marking(label, None).ok(),
                    Err(_) => None,
                };
                RoomLabelInfo {
                    label: serde_json::from_str(&rec.label)
                        .unwrap_or(serde_json::Value::String(rec.label)),
                    marking,
                    room_id,
                    event_id: rec.event_id,
                    sender: rec.sender,
                    origin_server_ts: rec.origin_server_ts,
                    learned_from: rec.learned_from,
                }
            })
            .collect())
    }
}
