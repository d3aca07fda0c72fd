//! The mxc index: which events referenced which media, in which direction and towards or from
//! which peer, and whether each event crossed the guard unmodified; and the media the guard
//! has blocked.
//!
//! A download of media is let through only for media an event referenced that crossed
//! (`proxy::media`); the index is what that decision reads. One row per (server name, media
//! id, event id, direction, peer); recording the same key again replaces the row (a later
//! decision about the same event wins). Rows per media id are bounded by
//! [`MAX_REFS_PER_MEDIA`]: beyond it the oldest rows are dropped, rows of events that did not
//! cross before those that did (so events that never cross cannot push out the one that
//! did). [`Store::prune_media_refs`] deletes rows by age.
//!
//! Blocked media ([`Store::mark_media_blocked`]) are kept until an operator removes them:
//! one row per (server name, media id), the first reason stays, a SHA-256 learned later is
//! added. [`Store::media_blocked_by_sha256`] finds the same file under another id.
use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::{check_room_id, check_text, sqlite, unix_ms, Store, StoreError};

/// Most index rows kept per media id.
pub const MAX_REFS_PER_MEDIA: usize = 64;
/// Longest server name, media id, event id or peer accepted (bytes).
pub const MAX_MEDIA_KEY_BYTES: usize = 255;
/// Longest verdict or block reason accepted (bytes).
pub const MAX_MEDIA_REASON_BYTES: usize = 256;

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
    /// When, in Unix **milliseconds** ([`now_ms`]); [`Store::prune_media_refs`] compares it
    /// with a time in milliseconds.
    pub ts: i64,
}

impl MediaRefRow {
    /// Whether [`Store::record_media_refs`] accepts this row: server name, media id, event id
    /// and peer non-empty visible ASCII of at most 255 bytes, a room id starting with `!`,
    /// direction `inbound` / `outbound`, a non-empty verdict. A batch with one refused row is
    /// refused whole, so callers drop rows that fail this (e.g. without an event id) first.
    pub fn check(&self) -> Result<(), StoreError> {
        check_row(self)
    }
}

/// Now, in the unit of [`MediaRefRow::ts`] (Unix milliseconds).
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

fn check_direction(d: &str) -> Result<(), StoreError> {
    match d {
        "inbound" | "outbound" => Ok(()),
        _ => Err(StoreError::InvalidInput {
            what: "media ref direction: not inbound/outbound",
        }),
    }
}

fn check_media_key(server_name: &str, media_id: &str) -> Result<(), StoreError> {
    check_text(
        server_name,
        MAX_MEDIA_KEY_BYTES,
        "media server name: empty, too long or not visible ASCII",
    )?;
    check_text(
        media_id,
        MAX_MEDIA_KEY_BYTES,
        "media id: empty, too long or not visible ASCII",
    )
}

fn check_row(r: &MediaRefRow) -> Result<(), StoreError> {
    check_media_key(&r.server_name, &r.media_id)?;
    check_text(
        &r.event_id,
        MAX_MEDIA_KEY_BYTES,
        "media ref event id: empty, too long or not visible ASCII",
    )?;
    check_room_id(&r.room_id)?;
    check_direction(&r.direction)?;
    check_text(
        &r.peer,
        MAX_MEDIA_KEY_BYTES,
        "media ref peer: empty, too long or not visible ASCII",
    )?;
    check_text(
        &r.verdict,
        MAX_MEDIA_REASON_BYTES,
        "media ref verdict: empty, too long or not visible ASCII",
    )
}

impl Store {
    /// Record references (one transaction). A row whose key (server name, media id, event id,
    /// direction, peer) is stored already replaces it. Afterwards each media id touched keeps
    /// at most [`MAX_REFS_PER_MEDIA`] rows. Every row is checked before anything is written.
    pub fn record_media_refs(&self, rows: &[MediaRefRow]) -> Result<(), StoreError> {
        for r in rows {
            check_row(r)?;
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sqlite("begin media refs"))?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO media_refs (server_name, media_id, event_id, room_id, direction, \
                     peer, encrypted, crossed, verdict, ts) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                     ON CONFLICT (server_name, media_id, event_id, direction, peer) DO UPDATE SET \
                     room_id = excluded.room_id, encrypted = excluded.encrypted, \
                     crossed = excluded.crossed, verdict = excluded.verdict, ts = excluded.ts",
                )
                .map_err(sqlite("record media refs"))?;
            let mut cap = tx
                .prepare_cached(
                    "DELETE FROM media_refs WHERE server_name = ?1 AND media_id = ?2 AND id NOT IN \
                     (SELECT id FROM media_refs WHERE server_name = ?1 AND media_id = ?2 \
                      ORDER BY crossed DESC, ts DESC, id DESC LIMIT ?3)",
                )
                .map_err(sqlite("cap media refs"))?;
            for r in rows {
                upsert
                    .execute(params![
                        r.server_name,
                        r.media_id,
                        r.event_id,
                        r.room_id,
                        r.direction,
                        r.peer,
                        r.encrypted,
                        r.crossed,
                        r.verdict,
                        r.ts
                    ])
                    .map_err(sqlite("record media refs"))?;
                cap.execute(params![
                    r.server_name,
                    r.media_id,
                    MAX_REFS_PER_MEDIA as i64
                ])
                .map_err(sqlite("cap media refs"))?;
            }
        }
        tx.commit().map_err(sqlite("commit media refs"))
    }

    /// The references to a media id, newest first.
    pub fn media_refs(
        &self,
        server_name: &str,
        media_id: &str,
    ) -> Result<Vec<MediaRefRow>, StoreError> {
        check_media_key(server_name, media_id)?;
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT server_name, media_id, event_id, room_id, direction, peer, encrypted, \
                 crossed, verdict, ts FROM media_refs WHERE server_name = ?1 AND media_id = ?2 \
                 ORDER BY ts DESC, id DESC",
            )
            .map_err(sqlite("read media refs"))?;
        let rows = st
            .query_map(params![server_name, media_id], |r| {
                Ok(MediaRefRow {
                    server_name: r.get(0)?,
                    media_id: r.get(1)?,
                    event_id: r.get(2)?,
                    room_id: r.get(3)?,
                    direction: r.get(4)?,
                    peer: r.get(5)?,
                    encrypted: r.get(6)?,
                    crossed: r.get(7)?,
                    verdict: r.get(8)?,
                    ts: r.get(9)?,
                })
            })
            .map_err(sqlite("read media refs"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(sqlite("read media refs"))
    }

    /// Block a media id (e.g. its file was refused). The first reason stays; a `sha256`
    /// (lower-case hex) is added if none was stored.
    pub fn mark_media_blocked(
        &self,
        server_name: &str,
        media_id: &str,
        reason: &str,
        sha256: Option<&str>,
    ) -> Result<(), StoreError> {
        check_media_key(server_name, media_id)?;
        check_text(
            reason,
            MAX_MEDIA_REASON_BYTES,
            "media block reason: empty, too long or not visible ASCII",
        )?;
        if let Some(h) = sha256 {
            check_sha256(h)?;
        }
        self.conn()
            .prepare_cached(
                "INSERT INTO media_blocked (server_name, media_id, reason, sha256, blocked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (server_name, media_id) DO UPDATE SET \
                 sha256 = coalesce(media_blocked.sha256, excluded.sha256)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    server_name,
                    media_id,
                    reason,
                    sha256,
                    unix_ms(SystemTime::now())
                ])
            })
            .map(drop)
            .map_err(sqlite("block media"))
    }

    /// Why a media id is blocked, if it is.
    pub fn media_blocked(
        &self,
        server_name: &str,
        media_id: &str,
    ) -> Result<Option<String>, StoreError> {
        check_media_key(server_name, media_id)?;
        self.conn()
            .prepare_cached(
                "SELECT reason FROM media_blocked WHERE server_name = ?1 AND media_id = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![server_name, media_id], |r| r.get(0))
                    .optional()
            })
            .map_err(sqlite("read media block"))
    }

    /// Why a file with this SHA-256 (lower-case hex) is blocked under some media id, if it is.
    pub fn media_blocked_by_sha256(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        check_sha256(sha256)?;
        self.conn()
            .prepare_cached("SELECT reason FROM media_blocked WHERE sha256 = ?1 LIMIT 1")
            .and_then(|mut st| st.query_row(params![sha256], |r| r.get(0)).optional())
            .map_err(sqlite("read media block"))
    }

    /// Lift the block of a media id; returns whether one was stored.
    pub fn unblock_media(&self, server_name: &str, media_id: &str) -> Result<bool, StoreError> {
        check_media_key(server_name, media_id)?;
        self.conn()
            .prepare_cached("DELETE FROM media_blocked WHERE server_name = ?1 AND media_id = ?2")
            .and_then(|mut st| st.execute(params![server_name, media_id]))
            .map(|n| n > 0)
            .map_err(sqlite("unblock media"))
    }

    /// Delete index rows older than `older_than`; returns how many. Blocks are kept.
    pub fn prune_media_refs(&self, older_than: SystemTime) -> Result<usize, StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM media_refs WHERE ts < ?1")
            .and_then(|mut st| st.execute(params![unix_ms(older_than)]))
            .map_err(sqlite("prune media refs"))
    }
}

fn check_sha256(h: &str) -> Result<(), StoreError> {
    if h.len() != 64 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(StoreError::InvalidInput {
            what: "media sha256: not 64 lower-case hex digits",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
