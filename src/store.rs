//! The embedded store: state the guard must keep across requests and restarts.
//!
//! The kinds of state that live here:
//!
//! * **Room versions.** A PDU can only be redacted correctly under its room's version rules,
//!   and a PDU does not say which version its room has. The guard learns it from authoritative
//!   sources (`proxy::rooms`: verified create events, `make_*` answers, the protected server's
//!   invites and admin API), each stored with its strength ([`versions`]), and looks it up for
//!   every PDU it inspects.
//! * **Paused rooms** ([`pauses`]): rooms whose events do not cross in one direction until an
//!   operator lifts the pause (`proxy::pause`).
//! * **Held events** ([`holds`]): events held for review and the ordered delivery queues of
//!   their rooms (`proxy::hold`).
//! * **The mxc index** ([`media_refs`]): which events referenced which media and whether
//!   they crossed, and the media the guard blocked (`proxy::media`).
//! * **Transaction decisions.** A sending server retries a transaction with the same
//!   `txnId` until it gets a 200. Every retry must get the same decision and the same forwarded
//!   bytes as the first attempt: a guard that decided again could forward, on a retry, content
//!   it had refused or redacted before. See [`Store::put_txn_decision`].
//!
//! # Design notes
//!
//! * **SQLite, bundled** (`rusqlite` with the `bundled` feature): one file, no server, no
//!   system library. The file format is documented in [`schema`] (explicit columns, no
//!   serialiser's memory layout); the schema is versioned with `PRAGMA user_version` and
//!   migrated forward on open. A file written by a newer build is refused, not modified.
//! * **One connection behind a mutex.** Writes are serialised by SQLite anyway, reads are
//!   point lookups by primary key, and the hot path (room version per PDU) is served from
//!   memory, so a pool would add little. [`Store`] is a cheap `Arc` clone; all clones share
//!   the connection and the cache.
//! * **WAL journal, `synchronous = NORMAL`.** Readers do not block the writer; a commit is
//!   durable against a crash of the guard, and only the last commits can be lost on power
//!   failure. Losing a transaction decision that way means the retry is decided again by the
//!   same policy, which redacts the same way; it never means content is forwarded that the
//!   current policy refuses. `busy_timeout` is [`BUSY_TIMEOUT`] in case another process (e.g.
//!   an `sqlite3` shell of an operator) holds the lock. The WAL file is truncated to
//!   [`JOURNAL_SIZE_LIMIT`] after checkpoints.
//! * **The file is created with mode 0600**: forwarded transaction bodies are message
//!   content. SQLite gives its `-wal` / `-shm` files the database file's permissions.
//! * **Room versions are ranked by the strength of their source** (a small integer the
//!   caller assigns, see `proxy::rooms`): a version is replaced only by a source of greater
//!   strength ([`RoomVersionClaim::Corrected`]); a different claim of equal or lesser strength
//!   is reported ([`RoomVersionClaim::Conflict`]) and not stored, so among equals the first
//!   wins. The cache (`HashMap` behind an `RwLock`) is filled on first use of each room
//!   (read-through, also from rows written by another process) and updated by every write of
//!   this store; a correction written by another process is seen after a restart (only the
//!   guard writes room versions). Unknown rooms are looked up in SQLite every time (a
//!   primary-key lookup); they are not cached negatively, so a room learned by another
//!   `Store` on the same file is seen at once.
//! * **Blocking calls.** Every method may block on SQLite (except a cache hit in
//!   [`Store::room_version`]). Writes are short, but a transaction decision can carry a body of
//!   megabytes: async callers should use `tokio::task::spawn_blocking` for
//!   [`Store::put_txn_decision`] and [`Store::prune_txn_decisions`].
//! * **Errors carry context, never payloads**: an error names the operation, the file and what
//!   failed, never a room ID, server name or body. Invalid inputs (empty or oversized keys, a
//!   status outside 100–599) are refused before they reach SQLite.
//! * **A poisoned lock is recovered**: a panic while holding the connection cannot leave a
//!   half-written row (SQLite transactions roll back when dropped), and the cache only ever
//!   gains complete entries.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use sha2::{Digest, Sha256};

mod health;
pub mod holds;
pub mod media_refs;
pub mod pauses;
mod room_labels;
pub mod room_members;
pub mod schema;
#[cfg(test)]
mod tests;
pub mod versions;

pub use health::{inspect_file, InspectError, Inspection, PROBE_BUSY};
pub use holds::{HeldRecord, NewHold, QueueEntry, QueueKey};
pub use pauses::{PauseCause, RoomPause};
pub use room_members::RoomServers;
pub use schema::SCHEMA_VERSION;
pub use versions::RoomVersionRecord;

/// How long a statement waits for a lock held by another connection before it fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Size the WAL file is truncated to after a checkpoint (bytes).
pub const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Longest room ID accepted (bytes; the spec's limit for identifiers).
pub const MAX_ROOM_ID_BYTES: usize = 255;
/// Longest room version identifier accepted (the spec's limit: 32 code points, ASCII here).
pub const MAX_ROOM_VERSION_BYTES: usize = 32;
/// Longest `learned_from` label accepted (bytes).
pub const MAX_LABEL_BYTES: usize = 64;
/// Longest transaction key part (direction, origin, destination, txn ID) accepted (bytes).
pub const MAX_TXN_KEY_PART_BYTES: usize = 1024;

/// SHA-256 digest of a request body.
pub type BodyDigest = [u8; 32];

/// The SHA-256 of `body`, as stored in [`TxnRecord::body_sha256`].
pub fn body_sha256(body: &[u8]) -> BodyDigest {
    Sha256::digest(body).into()
}

/// A store error. Messages name the operation and the file, never request data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be created.
    #[error("cannot create store database `{}`", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open or set up the database (also: the file is not a database).
    #[error("cannot open store database `{location}`: {what}")]
    Open {
        /// The file (`:memory:` for an in-memory store).
        location: String,
        /// The step that failed.
        what: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database could not be switched to WAL mode (e.g. a network file system).
    #[error("store database `{}` cannot use WAL journaling (mode `{mode}`)", path.display())]
    JournalMode {
        /// The file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The file is an SQLite database of some other program.
    #[error("`{location}` is not a grenzwacht store (foreign SQLite database)")]
    NotAStore {
        /// The file.
        location: String,
    },
    /// The file was written by a newer grenzwacht.
    #[error(
        "store `{location}` has schema version {found}, this build supports up to {supported}"
    )]
    SchemaTooNew {
        /// The file.
        location: String,
        /// Its schema version.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// A schema migration failed; the file keeps its previous version.
    #[error("store migration to schema version {version} failed")]
    Migration {
        /// The version the migration was to reach.
        version: u32,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed.
    #[error("store operation failed: {op}")]
    Sqlite {
        /// What was being done, e.g. `"insert txn decision"`.
        op: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// An argument was refused before it reached the database.
    #[error("invalid {what} (refused by the store)")]
    InvalidInput {
        /// Which argument and why, e.g. `"room ID: empty"`.
        what: &'static str,
    },
    /// A stored row violates the documented format.
    #[error("corrupt store data in {table}: {what}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        what: &'static str,
    },
}

fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

/// The outcome of [`Store::set_room_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomVersionClaim {
    /// The room was unknown; the version is now stored.
    Learned,
    /// The room already had this version (if it was from a weaker source, the entry now
    /// names the stronger one).
    Confirmed,
    /// The room had a different version from a weaker source; the new one replaced it.
    Corrected {
        /// The version replaced.
        previous: String,
        /// Where that version was learned.
        previous_from: String,
    },
    /// The room already has a different version from a source at least as strong, which
    /// stays. The caller should count and audit this: a source that claims another version
    /// for a known room is wrong or lying.
    Conflict {
        /// The version the store keeps.
        known: String,
        /// Where that version was learned.
        known_from: String,
    },
}

#[derive(Debug, Clone)]
struct RoomVersionEntry {
    version: String,
    learned_from: String,
    strength: u8,
}

/// What the guard did with a transaction, as stored for its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDecision {
    /// The HTTP status decided (100–599): the status of the refusal, or the status the
    /// forwarded request was answered with.
    pub status: u16,
    /// Forwarded or refused.
    pub action: TxnAction,
}

/// The two kinds of transaction decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnAction {
    /// The transaction was forwarded; a retry forwards exactly these bytes.
    Forward {
        /// The request body as forwarded (possibly modified).
        body: Vec<u8>,
        /// The `Authorization` header value forwarded when the guard re-signed the request;
        /// `None` when the sender's own header was forwarded.
        x_matrix: Option<String>,
    },
    /// The transaction was refused with a Matrix error.
    Refuse {
        /// Matrix `errcode`, e.g. `M_FORBIDDEN`.
        errcode: String,
        /// Matrix `error` message.
        error: String,
    },
}

impl TxnDecision {
    /// A forwarding decision.
    pub fn forward(status: u16, body: Vec<u8>, x_matrix: Option<String>) -> Self {
        Self {
            status,
            action: TxnAction::Forward { body, x_matrix },
        }
    }

    /// A refusal.
    pub fn refuse(status: u16, errcode: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            status,
            action: TxnAction::Refuse {
                errcode: errcode.into(),
                error: error.into(),
            },
        }
    }

    /// The forwarded body, `None` when refused.
    pub fn forwarded_body(&self) -> Option<&[u8]> {
        match &self.action {
            TxnAction::Forward { body, .. } => Some(body),
            TxnAction::Refuse { .. } => None,
        }
    }
}

/// A stored transaction decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// SHA-256 of the body received with the first attempt.
    pub body_sha256: BodyDigest,
    /// The decision.
    pub decision: TxnDecision,
    /// When it was stored (millisecond precision).
    pub created_at: SystemTime,
}

impl TxnRecord {
    /// Whether `body` is the body this decision was made for. A retry with a different body
    /// under the same transaction ID is a protocol violation; the caller decides what to do
    /// (the store never replaces the first decision).
    pub fn body_matches(&self, body: &[u8]) -> bool {
        body_sha256(body) == self.body_sha256
    }
}

/// The outcome of [`Store::put_txn_decision`]: the record now stored, and whether it is the
/// one just offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnPut {
    /// The decision was stored.
    Inserted(TxnRecord),
    /// A decision for this key was already stored; it stays and is returned. The caller must
    /// apply it instead of its own (it lost a race with a concurrent attempt).
    Existing(TxnRecord),
}

impl TxnPut {
    /// The record now stored, whichever it is.
    pub fn record(&self) -> &TxnRecord {
        match self {
            TxnPut::Inserted(r) | TxnPut::Existing(r) => r,
        }
    }

    /// The record now stored.
    pub fn into_record(self) -> TxnRecord {
        match self {
            TxnPut::Inserted(r) | TxnPut::Existing(r) => r,
        }
    }

    /// `true` if the offered decision was stored.
    pub fn inserted(&self) -> bool {
        matches!(self, TxnPut::Inserted(_))
    }
}

/// A room's security label as stored ([`Store::room_label`]); see `schema` for the columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLabelRecord {
    /// The label as received: the JSON text of the state event's label value.
    pub label: String,
    /// The state event it came from, if known.
    pub event_id: Option<String>,
    /// That event's sender.
    pub sender: String,
    /// That event's `origin_server_ts` (ms).
    pub origin_server_ts: i64,
    /// Where it was learned (short label, e.g. `pdu`).
    pub learned_from: String,
}

/// Longest stored room label text (bytes).
pub const MAX_ROOM_LABEL_BYTES: usize = 64 * 1024;

struct Inner {
    conn: Mutex<Connection>,
    rooms: RwLock<HashMap<String, RoomVersionEntry>>,
    /// Room labels, also negatively cached (only this store writes them; see `room_label`).
    room_labels: RwLock<HashMap<String, Option<RoomLabelRecord>>>,
    /// Remote-member server sets per room (`room_members`), invalidated on every write.
    room_servers: RwLock<HashMap<String, Arc<RoomServers>>>,
    location: String,
}

/// The embedded store. Cheap to clone; clones share one connection and one cache.
///
/// Use one `Store` per database file in a process (clone it); several are correct but each
/// keeps its own cache.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open the store at `path`, creating the file (mode 0600) and schema if needed and
    /// migrating an older schema forward. The parent directory must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let location = path.display().to_string();
        create_private(path)?;
        let open_err = |what| {
            let location = location.clone();
            move |source| StoreError::Open {
                location,
                what,
                source,
            }
        };
        // No SQLITE_OPEN_URI: a configured path is a path, never a `file:` URI with options.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(open_err("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(open_err("set busy timeout"))?;
        // The first statement that reads the file: fails here for a file that is no database.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err("set journal mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::JournalMode {
                path: path.to_path_buf(),
                mode,
            });
        }
        configure(&conn).map_err(open_err("configure connection"))?;
        schema::migrate(&mut conn, schema::MIGRATIONS, &location)?;
        crate::fault::arm_connection(&mut conn);
        Ok(Store::from_conn(conn, location))
    }

    /// A store in memory, for tests: same schema and behaviour, nothing persists.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let location = ":memory:".to_owned();
        let open_err = |what| {
            let location = location.clone();
            move |source| StoreError::Open {
                location,
                what,
                source,
            }
        };
        let mut conn = Connection::open_in_memory().map_err(open_err("open"))?;
        configure(&conn).map_err(open_err("configure connection"))?;
        schema::migrate(&mut conn, schema::MIGRATIONS, &location)?;
        crate::fault::arm_connection(&mut conn);
        Ok(Store::from_conn(conn, location))
    }

    fn from_conn(conn: Connection, location: String) -> Store {
        Store {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                rooms: RwLock::new(HashMap::new()),
                room_labels: RwLock::new(HashMap::new()),
                room_servers: RwLock::new(HashMap::new()),
                location,
            }),
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The schema version of the open file (equals [`SCHEMA_VERSION`] after a successful open).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::user_version(&self.conn())
    }

    // ---- room versions ------------------------------------------------------------------

    /// Record that `room_id` has room version `version`, learned from `learned_from` (a short
    /// label such as `"invite_v2"`), as a claim of the weakest strength (0): it fills a room
    /// the store knows nothing about and never changes a stored version. A later claim of the
    /// same version returns [`RoomVersionClaim::Confirmed`], a different one
    /// [`RoomVersionClaim::Conflict`] with the version kept. Sources that may correct a stored
    /// version use [`Store::set_room_version_ranked`].
    pub fn set_room_version(
        &self,
        room_id: &str,
        version: &str,
        learned_from: &str,
    ) -> Result<RoomVersionClaim, StoreError> {
        self.set_room_version_ranked(room_id, version, learned_from, 0)
    }

    /// The room version of `room_id`, if known. Served from memory after the first lookup of
    /// a known room; an unknown room costs one primary-key lookup in SQLite.
    pub fn room_version(&self, room_id: &str) -> Result<Option<String>, StoreError> {
        if let Some(known) = self.cached_room(room_id) {
            return Ok(Some(known.version));
        }
        let Some(known) = load_room(&self.conn(), room_id)? else {
            return Ok(None);
        };
        let version = known.version.clone();
        self.inner
            .rooms
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(room_id.to_owned())
            .or_insert(known);
        Ok(Some(version))
    }

    fn cached_room(&self, room_id: &str) -> Option<RoomVersionEntry> {
        self.inner
            .rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(room_id)
            .cloned()
    }

    // ---- room labels --------------------------------------------------------------------

    /// The stored security label of `room_id`, if any.
    ///
    /// Cached in memory after the first lookup, **also when the room has none**: unlike room
    /// versions, labels change, and only [`Store::put_room_label`] of this store (and its
    /// clones) writes them — one guard process per file — so the cache is updated on every
    /// write and never stale within the process.
    pub fn room_label(&self, room_id: &str) -> Result<Option<RoomLabelRecord>, StoreError> {
        if let Some(hit) = self
            .inner
            .room_labels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(room_id)
        {
            return Ok(hit.clone());
        }
        let row = self
            .conn()
            .prepare_cached("SELECT label, event_id, sender, origin_server_ts, learned_from FROM room_labels WHERE room_id = ?1")
            .and_then(|mut st| {
                st.query_row(params![room_id], |r| {
                    Ok(RoomLabelRecord { label: r.get(0)?, event_id: r.get(1)?, sender: r.get(2)?, origin_server_ts: r.get(3)?, learned_from: r.get(4)? })
                })
                .optional()
            })
            .map_err(sqlite("read room label"))?;
        // A concurrent `put_room_label` may have cached a newer value meanwhile: it wins.
        Ok(self
            .inner
            .room_labels
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(room_id.to_owned())
            .or_insert(row)
            .clone())
    }

    /// Stores (inserts or replaces) the security label of `room_id`. Whether a new label may
    /// replace the old one is the caller's decision.
    pub fn put_room_label(&self, room_id: &str, rec: &RoomLabelRecord) -> Result<(), StoreError> {
        check_room_id(room_id)?;
        check_text(
            &rec.learned_from,
            MAX_LABEL_BYTES,
            "room label source label",
        )?;
        if rec.label.is_empty() || rec.label.len() > MAX_ROOM_LABEL_BYTES {
            return Err(StoreError::InvalidInput {
                what: "room label: empty or too long",
            });
        }
        if rec.sender.len() > MAX_ROOM_ID_BYTES
            || rec
                .event_id
                .as_ref()
                .is_some_and(|e| e.len() > MAX_ROOM_ID_BYTES)
        {
            return Err(StoreError::InvalidInput {
                what: "room label sender or event ID: too long",
            });
        }
        // Hold the cache's write lock across the write so readers never see the old value
        // after the row changed.
        let mut cache = self
            .inner
            .room_labels
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.conn()
            .prepare_cached(
                "INSERT INTO room_labels (room_id, label, event_id, sender, origin_server_ts, learned_from, learned_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (room_id) DO UPDATE SET label = excluded.label, \
                 event_id = excluded.event_id, sender = excluded.sender, origin_server_ts = excluded.origin_server_ts, \
                 learned_from = excluded.learned_from, learned_at = excluded.learned_at",
            )
            .and_then(|mut st| {
                st.execute(params![room_id, rec.label, rec.event_id, rec.sender, rec.origin_server_ts, rec.learned_from, unix_ms(SystemTime::now())])
            })
            .map_err(sqlite("write room label"))?;
        cache.insert(room_id.to_owned(), Some(rec.clone()));
        Ok(())
    }

    // ---- transaction decisions ----------------------------------------------------------

    /// The stored decision for transaction `txn_id` from `origin` to `destination` in
    /// `direction` (e.g. `"inbound"` / `"outbound"`), if any. Keys are compared byte for byte.
    pub fn txn_decision(
        &self,
        direction: &str,
        origin: &str,
        destination: &str,
        txn_id: &str,
    ) -> Result<Option<TxnRecord>, StoreError> {
        check_txn_key(direction, origin, destination, txn_id)?;
        load_txn(&self.conn(), direction, origin, destination, txn_id)
    }

    /// Store the decision for a transaction, made for `received_body` (its SHA-256 is kept).
    ///
    /// Insert-or-ignore: if a decision for the key is already stored it stays and is returned
    /// as [`TxnPut::Existing`]; the caller must then apply that one. This is what makes
    /// retries idempotent: look up with [`txn_decision`](Self::txn_decision) first, decide only
    /// when there is none, and store before answering.
    pub fn put_txn_decision(
        &self,
        direction: &str,
        origin: &str,
        destination: &str,
        txn_id: &str,
        received_body: &[u8],
        decision: &TxnDecision,
    ) -> Result<TxnPut, StoreError> {
        self.put_txn_decision_at(
            direction,
            origin,
            destination,
            txn_id,
            received_body,
            decision,
            SystemTime::now(),
        )
    }

    /// [`put_txn_decision`](Self::put_txn_decision) with an explicit creation time.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn put_txn_decision_at(
        &self,
        direction: &str,
        origin: &str,
        destination: &str,
        txn_id: &str,
        received_body: &[u8],
        decision: &TxnDecision,
        now: SystemTime,
    ) -> Result<TxnPut, StoreError> {
        check_txn_key(direction, origin, destination, txn_id)?;
        check_decision(decision)?;
        let digest = body_sha256(received_body);
        let created_ms = unix_ms(now);
        let (fwd_body, fwd_xm, errcode, error) = match &decision.action {
            TxnAction::Forward { body, x_matrix } => {
                (Some(body.as_slice()), x_matrix.as_deref(), None, None)
            }
            TxnAction::Refuse { errcode, error } => {
                (None, None, Some(errcode.as_str()), Some(error.as_str()))
            }
        };
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sqlite("begin txn decision"))?;
        let inserted = tx
            .prepare_cached(
                "INSERT INTO txn_decisions (direction, origin, destination, txn_id, body_sha256, \
                 status, forwarded_body, forwarded_x_matrix, refusal_errcode, refusal_error, \
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (direction, origin, destination, txn_id) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![
                    direction,
                    origin,
                    destination,
                    txn_id,
                    digest.as_slice(),
                    i64::from(decision.status),
                    fwd_body,
                    fwd_xm,
                    errcode,
                    error,
                    created_ms,
                ])
            })
            .map_err(sqlite("insert txn decision"))?;
        let out = if inserted == 1 {
            TxnPut::Inserted(TxnRecord {
                body_sha256: digest,
                decision: decision.clone(),
                created_at: from_unix_ms(created_ms)?,
            })
        } else {
            TxnPut::Existing(
                load_txn(&tx, direction, origin, destination, txn_id)?.ok_or(
                    StoreError::Corrupt {
                        table: "txn_decisions",
                        what: "row vanished after a conflicting insert",
                    },
                )?,
            )
        };
        tx.commit().map_err(sqlite("commit txn decision"))?;
        Ok(out)
    }

    /// Delete transaction decisions stored before `older_than`; returns how many. Run it
    /// periodically with `now - [store] txn_retention_hours`.
    pub fn prune_txn_decisions(&self, older_than: SystemTime) -> Result<usize, StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM txn_decisions WHERE created_at < ?1")
            .and_then(|mut st| st.execute(params![unix_ms(older_than)]))
            .map_err(sqlite("prune txn decisions"))
    }
}

/// Create `path` with mode 0600 if it does not exist (an existing file is left as it is).
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .map(drop)
        .map_err(|source| StoreError::Create {
            path: path.to_path_buf(),
            source,
        })
}

/// Per-connection settings (both for files and memory).
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Schema objects never run code we did not write.
    conn.pragma_update(None, "trusted_schema", false)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    Ok(())
}

fn load_room(conn: &Connection, room_id: &str) -> Result<Option<RoomVersionEntry>, StoreError> {
    conn.prepare_cached(
        "SELECT version, learned_from, strength FROM room_versions WHERE room_id = ?1",
    )
    .and_then(|mut st| {
        st.query_row(params![room_id], |r| {
            Ok(RoomVersionEntry {
                version: r.get(0)?,
                learned_from: r.get(1)?,
                // Out of range only in a hand-edited file: the weakest strength then.
                strength: u8::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            })
        })
        .optional()
    })
    .map_err(sqlite("read room version"))
}

/// A `txn_decisions` row as read, before its invariants are checked.
struct RawTxnRow {
    digest: Vec<u8>,
    status: i64,
    body: Option<Vec<u8>>,
    x_matrix: Option<String>,
    errcode: Option<String>,
    error: Option<String>,
    created_at: i64,
}

impl RawTxnRow {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            digest: r.get(0)?,
            status: r.get(1)?,
            body: r.get(2)?,
            x_matrix: r.get(3)?,
            errcode: r.get(4)?,
            error: r.get(5)?,
            created_at: r.get(6)?,
        })
    }

    fn into_record(self) -> Result<TxnRecord, StoreError> {
        let corrupt = |what| StoreError::Corrupt {
            table: "txn_decisions",
            what,
        };
        let body_sha256: BodyDigest = self
            .digest
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("body_sha256 is not 32 bytes"))?;
        let status = u16::try_from(self.status)
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or(corrupt("status out of range"))?;
        let action = match (self.body, self.errcode, self.error) {
            (Some(body), None, None) => TxnAction::Forward {
                body,
                x_matrix: self.x_matrix,
            },
            (None, Some(errcode), Some(error)) if self.x_matrix.is_none() => {
                TxnAction::Refuse { errcode, error }
            }
            _ => return Err(corrupt("inconsistent decision columns")),
        };
        Ok(TxnRecord {
            body_sha256,
            decision: TxnDecision { status, action },
            created_at: from_unix_ms(self.created_at)?,
        })
    }
}

fn load_txn(
    conn: &Connection,
    direction: &str,
    origin: &str,
    destination: &str,
    txn_id: &str,
) -> Result<Option<TxnRecord>, StoreError> {
    let raw = conn
        .prepare_cached(
            "SELECT body_sha256, status, forwarded_body, forwarded_x_matrix, refusal_errcode, \
             refusal_error, created_at FROM txn_decisions \
             WHERE direction = ?1 AND origin = ?2 AND destination = ?3 AND txn_id = ?4",
        )
        .and_then(|mut st| {
            st.query_row(
                params![direction, origin, destination, txn_id],
                RawTxnRow::read,
            )
            .optional()
        })
        .map_err(sqlite("read txn decision"))?;
    raw.map(RawTxnRow::into_record).transpose()
}

fn check_room_id(room_id: &str) -> Result<(), StoreError> {
    if !room_id.starts_with('!') {
        return Err(StoreError::InvalidInput {
            what: "room ID: must start with `!`",
        });
    }
    if room_id.len() > MAX_ROOM_ID_BYTES {
        return Err(StoreError::InvalidInput {
            what: "room ID: longer than 255 bytes",
        });
    }
    Ok(())
}

/// Non-empty, at most `max` bytes, visible ASCII only.
fn check_text(s: &str, max: usize, what: &'static str) -> Result<(), StoreError> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::InvalidInput { what });
    }
    Ok(())
}

fn check_txn_key(
    direction: &str,
    origin: &str,
    destination: &str,
    txn_id: &str,
) -> Result<(), StoreError> {
    for (part, what) in [
        (direction, "txn direction: empty or too long"),
        (origin, "txn origin: empty or too long"),
        (destination, "txn destination: empty or too long"),
        (txn_id, "txn ID: empty or too long"),
    ] {
        if part.is_empty() || part.len() > MAX_TXN_KEY_PART_BYTES {
            return Err(StoreError::InvalidInput { what });
        }
    }
    Ok(())
}

fn check_decision(d: &TxnDecision) -> Result<(), StoreError> {
    if !(100..=599).contains(&d.status) {
        return Err(StoreError::InvalidInput {
            what: "txn decision status: not 100-599",
        });
    }
    Ok(())
}

/// Milliseconds since the Unix epoch; times before it become 0, beyond `i64` saturate.
fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn from_unix_ms(ms: i64) -> Result<SystemTime, StoreError> {
    u64::try_from(ms)
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .ok_or(StoreError::Corrupt {
            table: "txn_decisions",
            what: "created_at out of range",
        })
}
