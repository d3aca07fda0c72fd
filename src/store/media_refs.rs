//! The mxc index (stub; owner: helper "plumbing").
use super::{Store, StoreError};

/// One reference of an event to a media id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRefRow {
    pub server_name: String,
    pub media_id: String,
    pub event_id: String,
    pub room_id: String,
    /// `inbound` or `outbound`: the direction the event crossed.
    pub direction: String,
    /// The remote server the event came from or went to.
    pub peer: String,
    pub encrypted: bool,
    /// The event crossed unmodified.
    pub crossed: bool,
    pub verdict: String,
    pub ts: i64,
}

impl Store {
    pub fn record_media_refs(&self, rows: &[MediaRefRow]) -> Result<(), StoreError> {
        let _ = rows;
        Ok(())
    }
    pub fn media_refs(
        &self,
        server_name: &str,
        media_id: &str,
    ) -> Result<Vec<MediaRefRow>, StoreError> {
        let _ = (server_name, media_id);
        Ok(Vec::new())
    }
    pub fn mark_media_blocked(
        &self,
        server_name: &str,
        media_id: &str,
        reason: &str,
        sha256: Option<&str>,
    ) -> Result<(), StoreError> {
        let _ = (server_name, media_id, reason, sha256);
        Ok(())
    }
    pub fn media_blocked(
        &self,
        server_name: &str,
        media_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let _ = (server_name, media_id);
        Ok(None)
    }
}
