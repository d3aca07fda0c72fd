//! The store's SQLite schema and its forward migrations.
//!
//! # Format (schema version 8)
//!
//! The file is an ordinary SQLite 3 database in WAL mode. `PRAGMA application_id` is
//! [`APPLICATION_ID`] (`"gzwc"`), `PRAGMA user_version` is the schema version: the number of
//! entries of [`MIGRATIONS`] applied. Both tables are `STRICT` (SQLite checks the column types
//! below on every write). Times are integers: milliseconds since the Unix epoch, UTC.
//! Text is UTF-8 and compared byte for byte (`BINARY` collation): callers normalise names
//! before they store or look them up.
//!
//! `room_versions`: one row per room, replaced only by a source of greater strength (among
//! sources of equal strength the first claim wins; `store::versions`).
//!
//! | column         | type    | meaning                                                    |
//! |----------------|---------|------------------------------------------------------------|
//! | `room_id`      | TEXT PK | the room ID, e.g. `!abc:example.org`                       |
//! | `version`      | TEXT    | the room version identifier, e.g. `"10"`, `"12"`           |
//! | `learned_from` | TEXT    | where it was learned: `create_event`, `make_join`, …       |
//! | `learned_at`   | INTEGER | when (Unix ms)                                             |
//! | `strength`     | INTEGER | the source's strength, 0 = weakest (since version 4; rows  |
//! |                |         | of older files get 0)                                      |
//!
//! `room_labels` (since version 2): the current security label of a room, one row per room,
//! replaced when the guard accepts a newer room label state event (`policy::labels` decides
//! which changes it accepts; the store keeps whatever it is given).
//!
//! | column             | type    | meaning                                                   |
//! |--------------------|---------|-----------------------------------------------------------|
//! | `room_id`          | TEXT PK | the room ID                                               |
//! | `label`            | TEXT    | the label as received (JSON text of the content value)    |
//! | `event_id`         | TEXT    | the state event it came from, if known                    |
//! | `sender`           | TEXT    | that event's sender                                       |
//! | `origin_server_ts` | INTEGER | that event's `origin_server_ts` (ms)                      |
//! | `learned_from`     | TEXT    | where: `pdu`, `event` (stripped state, templates), …      |
//! | `learned_at`       | INTEGER | when (Unix ms)                                            |
//!
//! `room_pauses` (since version 3): rooms whose events do not cross in one direction until an
//! operator lifts the pause (`store::pauses`). One row per (direction, room); the first cause
//! is kept, lifting deletes the row.
//!
//! | column      | type    | meaning                                                         |
//! |-------------|---------|-----------------------------------------------------------------|
//! | `direction` | TEXT    | key: the direction the data would flow, `inbound` / `outbound`  |
//! | `room_id`   | TEXT    | key: the room ID                                                |
//! | `cause`     | TEXT    | why: `redaction_kept` (a rule still matched the redacted event) |
//! | `event_id`  | TEXT    | the event that caused it, if known                              |
//! | `rule`      | TEXT    | the rule that matched                                           |
//! | `paused_at` | INTEGER | when (Unix ms)                                                  |
//!
//! `held_events` (since version 5): events a rule held for review (`store::holds`), one row
//! per (direction, event id); `destinations`, `rules`, `matches` and `approvals` are JSON
//! arrays, `label` the effective label's JSON form, `pdu` the PDU bytes as received, `state`
//! `pending` / `released` / `rejected`, `decided_at` set with the final decision.
//!
//! `hold_queue` (since version 5): the ordered delivery queue per (direction, destination,
//! room): a held PDU (`hold_id` set) and every later PDU of the room that arrived while it
//! waited, in `seq` order. Delivered rows keep `delivered_at` and lose their `pdu` bytes (a
//! retried transaction finds its PDUs' ids there); `attempts` and `next_attempt_at` (Unix ms) drive the delivery backoff.
//!
//! `media_refs` (since version 6): the mxc index (`store::media_refs`), one row per
//! (server name, media id, event id, direction, peer); at most 64 rows per media id.
//!
//! | column        | type    | meaning                                                       |
//! |---------------|---------|---------------------------------------------------------------|
//! | `id`          | INTEGER | row id (insertion order, for ties)                            |
//! | `server_name` | TEXT    | key: the media's server name (from `mxc://<server>/<id>`)     |
//! | `media_id`    | TEXT    | key: the media id                                             |
//! | `event_id`    | TEXT    | key: the event that references it                             |
//! | `room_id`     | TEXT    | that event's room                                             |
//! | `direction`   | TEXT    | key: `inbound` / `outbound`, the way the event crossed        |
//! | `peer`        | TEXT    | key: the remote server the event came from or went to        |
//! | `encrypted`   | INTEGER | 1: an encrypted attachment (`file`, `thumbnail_file`)         |
//! | `crossed`     | INTEGER | 1: the event crossed unmodified                               |
//! | `verdict`     | TEXT    | the decision about the event (`allow`, `redact`, …)           |
//! | `ts`          | INTEGER | when (Unix ms); pruned by age                                 |
//!
//! `media_blocked` (since version 6): media the guard refused, one row per (server name,
//! media id): `reason`, the file's `sha256` (lower-case hex) if known, `blocked_at` (Unix ms).
//!
//! `room_members` (since version 7): the membership of users in rooms as the guard last saw it
//! (`store::room_members`), one row per (room, user); `policy::labels` judges a room's
//! release against every remote server with a member in it.
//!
//! | column             | type    | meaning                                                      |
//! |--------------------|---------|--------------------------------------------------------------|
//! | `room_id`          | TEXT    | key: the room ID                                             |
//! | `user_id`          | TEXT    | key: the member's user ID (the state key), or `*` for a marker row (`store::room_members`, "Bounds") |
//! | `server_name`      | TEXT    | the user's server name, lower case                           |
//! | `membership`       | TEXT    | `join`, `invite`, `knock`, `leave`, `ban` or another value   |
//! | `origin_server_ts` | INTEGER | the membership event's `origin_server_ts` (ms)               |
//! | `learned_from`     | TEXT    | `event` (a membership event that crossed) or `state` (the protected homeserver's current state) |
//! | `learned_at`       | INTEGER | when (Unix ms)                                               |
//!
//! `health_probe` (since version 8): one row (`id` 1) whose `at` every `/health` probe
//! rewrites with a fresh value and reads back (`store::health`).
//!
//! `txn_decisions`: one row per federation transaction the guard decided, written once
//! (insert-or-ignore), deleted by age. The decision is stored as explicit columns, not as
//! serialised Rust data, so the format does not depend on the program's types:
//!
//! | column               | type    | meaning                                                  |
//! |----------------------|---------|----------------------------------------------------------|
//! | `direction`          | TEXT    | key: e.g. `inbound` / `outbound`                         |
//! | `origin`             | TEXT    | key: the sending server name                             |
//! | `destination`        | TEXT    | key: the receiving server name                           |
//! | `txn_id`             | TEXT    | key: the transaction ID from the path                    |
//! | `body_sha256`        | BLOB    | SHA-256 of the received request body (32 bytes)          |
//! | `status`             | INTEGER | the decided HTTP status (100–599)                        |
//! | `forwarded_body`     | BLOB    | the bytes forwarded, or NULL when refused                |
//! | `forwarded_x_matrix` | TEXT    | the `Authorization: X-Matrix …` value forwarded, or NULL |
//! | `refusal_errcode`    | TEXT    | the Matrix `errcode` when refused, else NULL             |
//! | `refusal_error`      | TEXT    | the Matrix `error` message when refused, else NULL       |
//! | `created_at`         | INTEGER | when the decision was stored (Unix ms)                   |
//!
//! Primary key `(direction, origin, destination, txn_id)`; index on `created_at` for pruning.
//! `CHECK` constraints hold the invariants: exactly one of `forwarded_body` and
//! `refusal_errcode` is set, `refusal_errcode` and `refusal_error` are set together, and
//! `forwarded_x_matrix` only with a forwarded body.
//!
//! # Migrations
//!
//! A migration is a batch of SQL statements; migration `i` (0-based) takes the schema from
//! version `i` to `i + 1`. Each runs in its own `BEGIN IMMEDIATE` transaction together with the
//! `user_version` update, so a crash leaves the previous version intact and two processes
//! opening the same file do not both migrate. Migrations are append-only: a released entry is
//! never edited. A file whose version is newer than this build knows is refused rather than
//! written to.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// `PRAGMA application_id` of a grenzwacht store: the ASCII bytes `gzwc`.
pub const APPLICATION_ID: i32 = i32::from_be_bytes(*b"gzwc");

/// The migrations, in order. `MIGRATIONS.len()` is the schema version this build writes.
pub const MIGRATIONS: &[&str] = &[
    // 1: room versions and transaction decisions.
    r#"
    CREATE TABLE room_versions (
        room_id      TEXT    NOT NULL PRIMARY KEY,
        version      TEXT    NOT NULL,
        learned_from TEXT    NOT NULL,
        learned_at   INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE txn_decisions (
        direction          TEXT    NOT NULL,
        origin             TEXT    NOT NULL,
        destination        TEXT    NOT NULL,
        txn_id             TEXT    NOT NULL,
        body_sha256        BLOB    NOT NULL CHECK (length(body_sha256) = 32),
        status             INTEGER NOT NULL CHECK (status BETWEEN 100 AND 599),
        forwarded_body     BLOB,
        forwarded_x_matrix TEXT,
        refusal_errcode    TEXT,
        refusal_error      TEXT,
        created_at         INTEGER NOT NULL,
        PRIMARY KEY (direction, origin, destination, txn_id),
        CHECK ((forwarded_body IS NULL) = (refusal_errcode IS NOT NULL)),
        CHECK ((refusal_errcode IS NULL) = (refusal_error IS NULL)),
        CHECK (forwarded_x_matrix IS NULL OR forwarded_body IS NOT NULL)
    ) STRICT;

    CREATE INDEX txn_decisions_by_created_at ON txn_decisions (created_at);
    "#,
    // 2: room security labels.
    r#"
    CREATE TABLE room_labels (
        room_id          TEXT    NOT NULL PRIMARY KEY,
        label            TEXT    NOT NULL,
        event_id         TEXT,
        sender           TEXT    NOT NULL,
        origin_server_ts INTEGER NOT NULL,
        learned_from     TEXT    NOT NULL,
        learned_at       INTEGER NOT NULL
    ) STRICT;
    "#,
    // 3: paused rooms (`store::pauses`).
    r#"
    CREATE TABLE room_pauses (
        direction  TEXT    NOT NULL,
        room_id    TEXT    NOT NULL,
        cause      TEXT    NOT NULL,
        event_id   TEXT,
        rule       TEXT    NOT NULL,
        paused_at  INTEGER NOT NULL,
        PRIMARY KEY (direction, room_id)
    ) STRICT;
    "#,
    // 4: the strength of a room version's source (`store::versions`); older rows are the
    // weakest, so any authoritative source corrects them.
    r#"
    ALTER TABLE room_versions ADD COLUMN strength INTEGER NOT NULL DEFAULT 0;
    "#,
    // 5: held events and their ordered delivery queues (`store::holds`).
    r#"
    CREATE TABLE held_events (
        id           INTEGER PRIMARY KEY,
        direction    TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        room_id      TEXT    NOT NULL,
        event_id     TEXT    NOT NULL,
        origin       TEXT    NOT NULL,
        sender       TEXT    NOT NULL,
        destinations TEXT    NOT NULL,
        rules        TEXT    NOT NULL,
        label        TEXT,
        marking      TEXT,
        matches      TEXT    NOT NULL,
        pdu          BLOB    NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('pending', 'released', 'rejected')),
        approvals    TEXT    NOT NULL,
        created_at   INTEGER NOT NULL,
        decided_at   INTEGER,
        UNIQUE (direction, event_id)
    ) STRICT;

    CREATE TABLE hold_queue (
        seq             INTEGER PRIMARY KEY,
        direction       TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        destination     TEXT    NOT NULL,
        room_id         TEXT    NOT NULL,
        event_id        TEXT    NOT NULL,
        origin          TEXT    NOT NULL,
        pdu             BLOB    NOT NULL,
        hold_id         INTEGER REFERENCES held_events (id),
        enqueued_at     INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        delivered_at    INTEGER,
        UNIQUE (direction, destination, event_id)
    ) STRICT;

    CREATE INDEX hold_queue_waiting ON hold_queue (direction, destination, room_id, seq)
        WHERE delivered_at IS NULL;
    "#,
    // 6: the mxc index and blocked media (`store::media_refs`).
    r#"
    CREATE TABLE media_refs (
        id          INTEGER PRIMARY KEY,
        server_name TEXT    NOT NULL,
        media_id    TEXT    NOT NULL,
        event_id    TEXT    NOT NULL,
        room_id     TEXT    NOT NULL,
        direction   TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        peer        TEXT    NOT NULL,
        encrypted   INTEGER NOT NULL CHECK (encrypted IN (0, 1)),
        crossed     INTEGER NOT NULL CHECK (crossed IN (0, 1)),
        verdict     TEXT    NOT NULL,
        ts          INTEGER NOT NULL,
        UNIQUE (server_name, media_id, event_id, direction, peer)
    ) STRICT;

    CREATE INDEX media_refs_by_ts ON media_refs (ts);

    CREATE TABLE media_blocked (
        server_name TEXT    NOT NULL,
        media_id    TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        sha256      TEXT,
        blocked_at  INTEGER NOT NULL,
        PRIMARY KEY (server_name, media_id)
    ) STRICT;

    CREATE INDEX media_blocked_by_sha256 ON media_blocked (sha256) WHERE sha256 IS NOT NULL;
    "#,
    // 7: room membership as seen (`store::room_members`).
    r#"
    CREATE TABLE room_members (
        room_id          TEXT    NOT NULL,
        user_id          TEXT    NOT NULL,
        server_name      TEXT    NOT NULL,
        membership       TEXT    NOT NULL,
        origin_server_ts INTEGER NOT NULL,
        learned_from     TEXT    NOT NULL CHECK (learned_from IN ('event', 'state')),
        learned_at       INTEGER NOT NULL,
        PRIMARY KEY (room_id, user_id)
    ) STRICT;

    CREATE INDEX room_members_by_server ON room_members (room_id, server_name, membership);
    "#,
    // 8: the `/health` probe row (`store::health`): one row, rewritten by every probe.
    r#"
    CREATE TABLE health_probe (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        at INTEGER NOT NULL
    ) STRICT;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

/// The file's `user_version`.
pub(super) fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn
        .query_row("SELECT user_version FROM pragma_user_version", [], |r| {
            r.get(0)
        })
        .map_err(sqlite("read schema version"))?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        table: "pragma user_version",
        what: "negative schema version",
    })
}

/// Bring `conn` up to `migrations.len()`. Idempotent. `location` names the file in errors.
///
/// A fresh file (version 0, no tables, application_id 0) is claimed by setting
/// [`APPLICATION_ID`]; a file that belongs to something else is refused.
pub(super) fn migrate(
    conn: &mut Connection,
    migrations: &[&str],
    location: &str,
) -> Result<(), StoreError> {
    let latest = migrations.len() as u32;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite("begin migration"))?;
        // Re-read inside the write lock: another process may have migrated meanwhile.
        let version = user_version(&tx)?;
        let app_id: i32 = tx
            .query_row(
                "SELECT application_id FROM pragma_application_id",
                [],
                |r| r.get(0),
            )
            .map_err(sqlite("read application id"))?;
        if version == 0 && app_id == 0 {
            let objects: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(sqlite("inspect schema"))?;
            if objects != 0 {
                return Err(StoreError::NotAStore {
                    location: location.to_owned(),
                });
            }
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(sqlite("set application id"))?;
        } else if app_id != APPLICATION_ID {
            return Err(StoreError::NotAStore {
                location: location.to_owned(),
            });
        }
        if version > latest {
            return Err(StoreError::SchemaTooNew {
                location: location.to_owned(),
                found: version,
                supported: latest,
            });
        }
        if version == latest {
            tx.commit().map_err(sqlite("commit migration"))?;
            return Ok(());
        }
        let next = version + 1;
        tx.execute_batch(migrations[version as usize])
            .map_err(|source| StoreError::Migration {
                version: next,
                source,
            })?;
        tx.pragma_update(None, "user_version", next)
            .map_err(|source| StoreError::Migration {
                version: next,
                source,
            })?;
        tx.commit().map_err(|source| StoreError::Migration {
            version: next,
            source,
        })?;
    }
}
