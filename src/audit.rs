//! The tamper-evident audit log: every decision, refusal, policy load, admin action and review
//! decision, appended to a hash chain of records in segment files, with signed checkpoints.
//!
//! # Record format (version 1; the full reference is `deploy/AUDIT-FORMAT.md`)
//!
//! One record is one line of canonical JSON (keys sorted, no whitespace, see
//! [`format`]) followed by `\n`, with exactly the keys `data`, `hash`, `kind`, `prev`,
//! `seq`, `ts` and `v`:
//! - `v`: `1`; `seq`: 0, 1, 2, … over all segments without gaps; `ts`: RFC 3339 UTC with
//!   milliseconds, set when the writer encodes the record;
//! - `kind`: one of [`Kind`]; `data`: the kind's fields (the typed builders in [`record`]);
//! - `prev`: the `hash` of the record before (64 zeros for seq 0);
//! - `hash`: hex SHA-256 of the record's canonical form without `hash`.
//!
//! A `checkpoint` record carries `data.sig`: ed25519 (the audit key) over the canonical form
//! of the record without `hash` and without `data.sig`, so it attests the whole chain up to
//! itself. Checkpoints are written at open (after `startup`), every
//! `checkpoint_interval_secs` when something was written, before retention deletes segments
//! (with `deleted` and the `retired` mark: the seq and hash of the newest deleted record),
//! and at [`Auditor::close`] (after `shutdown`).
//!
//! # Files
//!
//! `DIR/audit-<seq of the first record, 20 digits>.log`. Each open starts a new segment;
//! a segment is closed when it reaches `segment_max_bytes` or `segment_max_age_secs`.
//! Retention deletes closed segments (oldest first) whose last write is older than
//! `retention_days`, or while all segments together exceed `retention_max_bytes`.
//! At open a torn last line (a crash during a write, never acknowledged) is cut off and its
//! length and SHA-256 go into the `startup` record; an empty last segment is removed.
//!
//! # Durability and failure
//!
//! [`Auditor::append`] resolves once the record is fsynced: with `durability = "group"` a
//! writer thread takes everything queued (up to 4096 appends) as one batch, writes it and
//! fsyncs once, so callers wait for at most the batch in progress plus their own; with
//! `"fsync"` every append is written and fsynced on its own. After each fsync the writer checks
//! that the segment path still names the file it writes (a removed or replaced segment, or a
//! directory moved away, would swallow records).
//!
//! Any write, fsync or file error puts the auditor in a failed state for good: every later
//! append returns [`AuditError::Failed`], [`Auditor::health`] returns the reason, the gauge
//! `grenzwacht_audit_healthy` is 0 and `grenzwacht_audit_failures_total` counts the failure.
//! It recovers only by opening a new [`Auditor`] (which repairs a torn line and starts a new
//! segment); there is no background retry, so an operator sees every gap. One auditor writes a
//! directory at a time (`DIR/.lock`, `flock`); a failed or closed one gives it up at once.
//!
//! # Syslog
//!
//! With `[audit.syslog]`, durable records (all, or checkpoints only) are also sent as RFC 5424
//! messages over TLS (RFC 5425 octet counting) by a forwarder thread with a bounded queue and
//! reconnect with backoff ([`syslog`]). A failing collector never blocks appends: records
//! beyond the queue are dropped from forwarding (`grenzwacht_audit_syslog_dropped_total`),
//! and [`Auditor::syslog_health`] reports it.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub mod cli;
pub mod export;
pub mod format;
pub mod query;
pub mod record;
pub mod segment;
pub mod syslog;
pub mod verify;
mod writer;

pub use crate::config::audit::{AuditConfig, Durability, SyslogConfig};
pub use record::{
    AdminRecord, DecisionRecord, Direction, Kind, LoadChange, LoadRecord, NamedHash, NoticeRecord,
    Record, RefusalRecord, ReviewRecord, RuleMatch, Unit, Verdict,
};

use crate::telemetry::{AUDIT_FAILURES_TOTAL, AUDIT_HEALTHY, AUDIT_RECORDS_TOTAL};

/// Errors of the audit log. Messages name files and causes, never record content or keys.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit key could not be loaded.
    #[error("audit key: {0}")]
    Key(#[from] crate::keys::KeyError),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The auditor is in the failed state (the reason of the first failure).
    #[error("audit log failed: {0}")]
    Failed(String),
    /// The auditor was closed.
    #[error("audit log closed")]
    Closed,
    /// Bad input: an invalid existing log at open, a bad filter, a bad key file.
    #[error("{0}")]
    Invalid(String),
    /// The syslog forwarder could not be set up.
    #[error("audit syslog: {0}")]
    Syslog(String),
}

impl AuditError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        AuditError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Hex SHA-256 of a unit's content as received: the `content_sha256` of decision records.
pub fn content_sha256(bytes: &[u8]) -> String {
    format::sha256_hex(bytes)
}

/// State the writer thread and the handles share.
pub(crate) struct Shared {
    failed: Mutex<Option<String>>,
    closed: AtomicBool,
}

impl Shared {
    fn new() -> Self {
        Shared {
            failed: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }
    pub(crate) fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub(crate) fn fail(&self, reason: String) {
        let mut f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            tracing::error!(reason = %reason, "audit log failed: nothing crosses until it is reopened");
            metrics::counter!(AUDIT_FAILURES_TOTAL).increment(1);
            metrics::gauge!(AUDIT_HEALTHY).set(0.0);
            *f = Some(reason);
        }
    }
    fn set_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// The audit log writer. Cheap to clone (one writer thread behind an `Arc`).
#[derive(Clone)]
pub struct Auditor {
    inner: Arc<Inner>,
}

struct Inner {
    tx: std::sync::mpsc::Sender<writer::Job>,
    shared: Arc<Shared>,
    store_content: bool,
    syslog: Option<syslog::Forwarder>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("failed", &self.inner.shared.failed())
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// Opens (or creates) the log in `cfg.dir`: loads the audit key, finds the chain head,
    /// starts a new segment, writes `startup` and a checkpoint durably, and spawns the writer
    /// thread (and the syslog forwarder, if configured). Needs no async runtime.
    pub fn open(cfg: &AuditConfig) -> Result<Auditor, AuditError> {
        let shared = Arc::new(Shared::new());
        let (forwarder, sink, forward) = match &cfg.syslog {
            Some(s) => {
                let f = syslog::Forwarder::start(s)?;
                let sink = f.sink();
                (Some(f), Some(sink), s.forward)
            }
            None => (None, None, crate::config::audit::Forward::All),
        };
        let w = writer::Writer::open(cfg, Arc::clone(&shared), sink, forward)?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("grenzwacht-audit".into())
            .spawn(move || w.run(rx))
            .map_err(|e| AuditError::io("spawning the audit writer thread", e))?;
        metrics::gauge!(AUDIT_HEALTHY).set(1.0);
        Ok(Auditor {
            inner: Arc::new(Inner {
                tx,
                shared,
                store_content: cfg.store_content,
                syslog: forwarder,
            }),
        })
    }

    fn check(&self) -> Result<(), AuditError> {
        if let Some(reason) = self.inner.shared.failed() {
            return Err(AuditError::Failed(reason));
        }
        if self.inner.shared.is_closed() {
            return Err(AuditError::Closed);
        }
        Ok(())
    }

    /// Drops decision content unless configured, and writes `data` in canonical form here,
    /// on the appending thread (the writer only adds the envelope and hashes).
    fn prepare(&self, rec: Record) -> writer::Prepared {
        let (kind, mut data) = rec.into_parts();
        if kind == Kind::Decision && !self.inner.store_content {
            data.remove("content");
        }
        let mut d = String::with_capacity(512);
        format::write_object(&data, None, &mut d);
        writer::Prepared { kind, data: d }
    }

    async fn submit(
        &self,
        job: impl FnOnce(writer::Reply) -> writer::Job,
    ) -> Result<u64, AuditError> {
        self.check()?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.inner
            .tx
            .send(job(writer::Reply::Task(reply)))
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    fn gone(&self) -> AuditError {
        match self.inner.shared.failed() {
            Some(r) => AuditError::Failed(r),
            None => AuditError::Closed,
        }
    }

    /// Appends one record; resolves with its seq once it is durable.
    pub async fn append(&self, rec: Record) -> Result<u64, AuditError> {
        let recs = vec![self.prepare(rec)];
        let seq = self
            .submit(|reply| writer::Job::Append { recs, reply })
            .await?;
        metrics::counter!(AUDIT_RECORDS_TOTAL).increment(1);
        Ok(seq)
    }

    /// [`Auditor::append`] for synchronous callers (e.g. the admin listener's
    /// `review::ActionJournal`): blocks the calling thread until the record is durable (one
    /// batch, typically one fsync). Works inside an async task too, but blocks its worker for
    /// that long; prefer `append` there.
    pub fn append_blocking(&self, rec: Record) -> Result<u64, AuditError> {
        self.check()?;
        let recs = vec![self.prepare(rec)];
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.inner
            .tx
            .send(writer::Job::Append {
                recs,
                reply: writer::Reply::Thread(reply),
            })
            .map_err(|_| self.gone())?;
        let seq = rx.recv().map_err(|_| self.gone())??;
        metrics::counter!(AUDIT_RECORDS_TOTAL).increment(1);
        Ok(seq)
    }

    /// Appends records as one batch (consecutive seqs, one fsync); resolves once all are
    /// durable.
    pub async fn append_all(&self, recs: Vec<Record>) -> Result<(), AuditError> {
        if recs.is_empty() {
            return self.check();
        }
        let n = recs.len() as u64;
        let recs: Vec<writer::Prepared> = recs.into_iter().map(|r| self.prepare(r)).collect();
        self.submit(|reply| writer::Job::Append { recs, reply })
            .await?;
        metrics::counter!(AUDIT_RECORDS_TOTAL).increment(n);
        Ok(())
    }

    /// Writes a signed checkpoint now; resolves with its seq once durable.
    pub async fn checkpoint(&self) -> Result<u64, AuditError> {
        self.submit(|reply| writer::Job::Checkpoint { reply }).await
    }

    /// Whether decision records keep the full content (`[audit] store_content`).
    pub fn stores_content(&self) -> bool {
        self.inner.store_content
    }

    /// `Ok` while records can be written; the reason of the failure otherwise.
    pub fn health(&self) -> Result<(), String> {
        match self.inner.shared.failed() {
            Some(r) => Err(r),
            None if self.inner.shared.is_closed() => Err("audit log closed".into()),
            None => Ok(()),
        }
    }

    /// The syslog forwarder's state: `Ok` when connected (or not configured), the last error
    /// otherwise. Does not affect [`Auditor::health`]: the local log is the record.
    pub fn syslog_health(&self) -> Result<(), String> {
        match &self.inner.syslog {
            Some(f) => f.health(),
            None => Ok(()),
        }
    }

    /// Writes `shutdown` and a final checkpoint, durably, and gives the syslog forwarder up to
    /// 2 s to send what it holds; later appends fail with [`AuditError::Closed`].
    pub async fn close(&self) -> Result<(), AuditError> {
        self.submit(|reply| writer::Job::Close { reply }).await?;
        Ok(())
    }
}

/// What `grenzwacht check` verifies of `[audit]` without writing anything: the key loads, the
/// directory (or its nearest existing parent) is a writable directory, the syslog TLS files
/// load.
pub fn check_config(cfg: &AuditConfig) -> Result<(), AuditError> {
    crate::keys::SigningKey::from_synapse_file(&cfg.key_file)?;
    let mut dir = cfg.dir.as_path();
    while !dir.exists() {
        dir = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
    }
    let meta =
        std::fs::metadata(dir).map_err(|e| AuditError::io(format!("{}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(AuditError::Invalid(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    writable(dir)?;
    if let Some(s) = &cfg.syslog {
        syslog::client_config(s)?;
    }
    Ok(())
}

fn writable(dir: &std::path::Path) -> Result<(), AuditError> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| AuditError::Invalid("path contains NUL".into()))?;
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(AuditError::io(
            format!("directory {} is not writable", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
