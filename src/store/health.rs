//! Is the store usable? The running guard's write-and-read probe ([`Store::probe`]) and the
//! offline inspection `grenzwacht check` runs ([`inspect_file`]).
//!
//! # Design notes
//!
//! * The probe writes one row (`health_probe`, id 1) with a fresh value and reads it back, in
//!   one immediate transaction: it fails exactly where the guard's own writes would — the
//!   file locked by another process, made immutable or read-only, the disk full, the file
//!   replaced by something that is no database. A read-only probe would stay green through
//!   all of these (the pages a transaction needs are often cached).
//! * The probe waits for the write lock at most [`PROBE_BUSY`], not the store's
//!   [`super::BUSY_TIMEOUT`], so `/health` answers quickly while a lock is held.
//! * [`inspect_file`] never writes: the file is opened read-only (no create, no migration),
//!   its identity (application id, schema version) is read and `PRAGMA integrity_check` runs
//!   over every page. It also says whether the guard could write it (permissions, the
//!   immutable flag, free space).
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{schema, Store, StoreError};

/// How long the probe waits for the write lock.
pub const PROBE_BUSY: Duration = Duration::from_millis(500);

/// Below this much free space on the store's file system `check` warns.
pub const LOW_SPACE_BYTES: u64 = 64 << 20;

impl Store {
    /// Writes a fresh value into the probe row and reads it back (see the module docs).
    pub fn probe(&self) -> Result<(), StoreError> {
        injected_fault("probe")?;
        if self.inner.location != ":memory:" {
            file_fit(Path::new(&self.inner.location))?;
        }
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(1)
            ^ (std::process::id() as i64) << 48;
        let mut conn = self.conn();
        conn.busy_timeout(PROBE_BUSY)
            .map_err(sqlite("probe: set busy timeout"))?;
        let result = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite("probe: begin"))?;
            tx.execute(
                "INSERT INTO health_probe (id, at) VALUES (1, ?1) \
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                [nonce],
            )
            .map_err(sqlite("probe: write"))?;
            let read: i64 = tx
                .query_row("SELECT at FROM health_probe WHERE id = 1", [], |r| r.get(0))
                .map_err(sqlite("probe: read"))?;
            tx.commit().map_err(sqlite("probe: commit"))?;
            if read != nonce {
                return Err(StoreError::Corrupt {
                    table: "health_probe",
                    what: "the probe read back another value than it wrote",
                });
            }
            Ok(())
        })();
        // Back to the store's own patience, whatever happened.
        let _ = conn.busy_timeout(super::BUSY_TIMEOUT);
        result
    }
}

/// What the open connection does not notice at once: the file made unwritable (its writes go
/// to the WAL until a checkpoint fails) or overwritten (the pages the probe needs are cached
/// or in the WAL). Reads the header from disk: the SQLite magic (the application id may
/// still be in the WAL).
fn file_fit(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let damaged = |what| StoreError::Corrupt {
        table: "file header",
        what,
    };
    writable(path).map_err(|_| StoreError::Corrupt {
        table: "file",
        what: "the store file is not writable (read-only or immutable)",
    })?;
    let mut header = [0u8; 100];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|_| damaged("the store file cannot be read"))?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(damaged("the store file is no SQLite database any more"));
    }
    Ok(())
}

fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

/// What [`inspect_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// No file yet: `serve` creates it.
    Absent,
    /// A grenzwacht store that passed the integrity check.
    Sound {
        /// Its schema version (`serve` migrates an older one forward).
        schema_version: u32,
        /// Warnings that do not stop `serve` (little free space).
        warnings: Vec<String>,
    },
}

/// Why the configured store cannot be used; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "`{location}` is not an SQLite database (its header is damaged or it holds other \
         data): restore it from a backup or move it away (the guard then starts with an empty \
         store and relearns room versions)"
    )]
    NotADatabase { location: String },
    #[error("`{location}` is locked by another process; stop it, the guard needs the write lock")]
    Locked { location: String },
    #[error("`{location}` fails the integrity check: {first}{more}")]
    Damaged {
        location: String,
        first: String,
        more: String,
    },
    #[error("`{location}` cannot be written: {reason}")]
    NotWritable { location: String, reason: String },
}

/// Inspects the store file at `path` without writing to it (see the module docs).
pub fn inspect_file(path: &Path) -> Result<Inspection, InspectError> {
    let location = path.display().to_string();
    if !path.exists() {
        return Ok(Inspection::Absent);
    }
    writable(path).map_err(|reason| InspectError::NotWritable {
        location: location.clone(),
        reason,
    })?;
    // The file itself, not what the WAL still holds of it.
    if file_fit(path).is_err() {
        return Err(InspectError::NotADatabase { location });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let classify = |source: rusqlite::Error, what: &'static str| match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => InspectError::NotADatabase {
            location: location.clone(),
        },
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            InspectError::Locked {
                location: location.clone(),
            }
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => InspectError::Damaged {
            location: location.clone(),
            first: source.to_string(),
            more: String::new(),
        },
        _ => InspectError::Store(StoreError::Open {
            location: location.clone(),
            what,
            source,
        }),
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(e, "open"))?;
    conn.busy_timeout(PROBE_BUSY)
        .map_err(|e| classify(e, "set busy timeout"))?;
    let app_id: i32 = conn
        .query_row(
            "SELECT application_id FROM pragma_application_id",
            [],
            |r| r.get(0),
        )
        .map_err(|e| classify(e, "read header"))?;
    let version = schema::user_version(&conn).map_err(|e| match e {
        StoreError::Sqlite { source, .. } => classify(source, "read schema version"),
        other => InspectError::Store(other),
    })?;
    let fresh = app_id == 0
        && version == 0
        && conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| classify(e, "read schema"))?
            == 0;
    if app_id != schema::APPLICATION_ID && !fresh {
        return Err(StoreError::NotAStore { location }.into());
    }
    if version > schema::SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            location,
            found: version,
            supported: schema::SCHEMA_VERSION,
        }
        .into());
    }
    let mut stmt = conn
        .prepare("PRAGMA integrity_check(20)")
        .map_err(|e| classify(e, "integrity check"))?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| classify(e, "integrity check"))?
        .collect::<Result<_, _>>()
        .map_err(|e| classify(e, "integrity check"))?;
    if problems.len() != 1 || problems[0] != "ok" {
        let more = if problems.len() > 1 {
            format!(" (and {} more)", problems.len() - 1)
        } else {
            String::new()
        };
        return Err(InspectError::Damaged {
            location,
            first: problems.first().cloned().unwrap_or_default(),
            more,
        });
    }
    drop(stmt);
    drop(conn);
    lock_free(path).map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            InspectError::Locked {
                location: location.clone(),
            }
        }
        _ => InspectError::Store(StoreError::Open {
            location: location.clone(),
            what: "take the write lock",
            source: e,
        }),
    })?;
    let mut warnings = Vec::new();
    if let Some(free) = free_space(path) {
        if free < LOW_SPACE_BYTES {
            warnings.push(format!(
                "only {} KiB free on the store's file system",
                free >> 10
            ));
        }
    }
    Ok(Inspection::Sound {
        schema_version: version,
        warnings,
    })
}

/// Can the write lock be taken? `BEGIN IMMEDIATE` and `ROLLBACK` on a connection that may not
/// create the file: takes the lock that every write of the guard needs and writes nothing.
fn lock_free(path: &Path) -> rusqlite::Result<()> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(PROBE_BUSY)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.rollback()
}

/// `access(2)` with `W_OK` on the file and its directory: refuses read-only files, the
/// immutable flag (even for root) and read-only mounts.
fn writable(path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    for p in [path, dir] {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| "path contains NUL".to_string())?;
        // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
        if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
            return Err(format!(
                "{}: {}",
                p.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    // The immutable flag does not always show in access(2) for root: ask the file system.
    if is_immutable(path) {
        return Err(format!(
            "{}: the immutable attribute is set",
            path.display()
        ));
    }
    Ok(())
}

fn is_immutable(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_IMMUTABLE_FL: libc::c_long = 0x10;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one `long` into `flags`, which outlives the call.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) };
    rc == 0 && flags & FS_IMMUTABLE_FL != 0
}

fn free_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid path and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// The error every store operation meets while the fault seam's store or disk-full fault is
/// active ([`crate::fault`]).
pub(super) fn injected_fault(op: &'static str) -> Result<(), StoreError> {
    use crate::fault::{active, Fault};
    let (code, what) = if active(Fault::DiskFull) {
        (rusqlite::ffi::SQLITE_FULL, "database or disk is full")
    } else if active(Fault::Store) {
        (rusqlite::ffi::SQLITE_IOERR, "disk I/O error")
    } else {
        return Ok(());
    };
    Err(StoreError::Sqlite {
        op,
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            Some(format!("{what} (injected fault)")),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_in(dir: &Path) -> (Store, std::path::PathBuf) {
        let path = dir.join("store.db");
        let s = Store::open(&path).unwrap();
        s.set_room_version("!r:x", "10", "test").unwrap();
        (s, path)
    }

    fn chattr(flag: &str, path: &Path) {
        let ok = std::process::Command::new("chattr")
            .arg(flag)
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chattr {flag} {} failed", path.display());
    }

    #[test]
    fn the_probe_fails_while_another_process_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store_in(dir.path());
        s.probe().unwrap();
        let mut other = Connection::open(&path).unwrap();
        let tx = other
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .unwrap();
        let e = s.probe().unwrap_err();
        assert!(format!("{e:?}").contains("DatabaseBusy"), "{e:?}");
        assert!(matches!(
            inspect_file(&path),
            Err(InspectError::Locked { .. })
        ));
        tx.rollback().unwrap();
        s.probe().unwrap();
        assert!(matches!(
            inspect_file(&path),
            Ok(Inspection::Sound {
                schema_version: schema::SCHEMA_VERSION,
                ..
            })
        ));
    }

    #[test]
    fn the_probe_fails_on_a_file_overwritten_with_random_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store_in(dir.path());
        s.probe().unwrap();
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        let noise: Vec<u8> = (0..len.max(8192)).map(|_| rand::random::<u8>()).collect();
        std::fs::write(&path, &noise).unwrap();
        let e = s.probe().unwrap_err();
        assert!(e.to_string().contains("file header"), "{e}");
        let e = inspect_file(&path).unwrap_err();
        assert!(matches!(e, InspectError::NotADatabase { .. }), "{e:?}");
        assert!(e.to_string().contains("restore it from a backup"), "{e}");
    }

    #[test]
    fn the_probe_and_check_refuse_an_immutable_file() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store_in(dir.path());
        s.probe().unwrap();
        chattr("+i", &path);
        let probe = s.probe();
        let inspected = inspect_file(&path);
        chattr("-i", &path);
        let e = probe.unwrap_err();
        assert!(e.to_string().contains("not writable"), "{e}");
        let e = inspected.unwrap_err();
        assert!(matches!(e, InspectError::NotWritable { .. }), "{e:?}");
        s.probe().unwrap();
    }

    #[test]
    fn check_finds_damaged_pages_and_foreign_or_newer_files() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store_in(dir.path());
        for i in 0..2000 {
            s.set_room_version(&format!("!room{i}:example.org"), "10", "test")
                .unwrap();
        }
        drop(s);
        // Checkpoint the WAL into the file, then damage a page in the middle.
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 5 * 4096, "{}", bytes.len());
        for b in &mut bytes[3 * 4096..4 * 4096] {
            *b = 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let e = inspect_file(&path).unwrap_err();
        assert!(matches!(e, InspectError::Damaged { .. }), "{e:?}");

        let foreign = dir.path().join("other.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(matches!(
            inspect_file(&foreign),
            Err(InspectError::Store(StoreError::NotAStore { .. }))
        ));
        let newer = dir.path().join("newer.db");
        drop(Store::open(&newer).unwrap());
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", schema::SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            inspect_file(&newer),
            Err(InspectError::Store(StoreError::SchemaTooNew { .. }))
        ));
        assert_eq!(
            inspect_file(&dir.path().join("absent.db")).unwrap(),
            Inspection::Absent
        );
    }

    #[test]
    fn inspection_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store_in(dir.path());
        drop(s);
        let before = std::fs::read(&path).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        inspect_file(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    }
}
