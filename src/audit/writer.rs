//! The writer: owns the current segment, the chain head, checkpoints, rotation and retention.
//! Runs on its own thread; [`super::Auditor`] talks to it through a channel.
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::format::{self, Encoded, GENESIS_PREV};
use super::record::Kind;
use super::segment;
use super::{AuditError, Shared};
use crate::config::audit::{AuditConfig, Durability, Forward};
use crate::keys::SigningKey;

/// Most jobs written as one group-commit batch.
const MAX_BATCH_JOBS: usize = 4096;

/// Where the writer answers an append: an awaiting task or a blocked thread.
pub(super) enum Reply {
    Task(tokio::sync::oneshot::Sender<Result<u64, AuditError>>),
    Thread(std::sync::mpsc::SyncSender<Result<u64, AuditError>>),
}

impl Reply {
    pub(super) fn send(self, r: Result<u64, AuditError>) -> Result<(), ()> {
        match self {
            Reply::Task(t) => t.send(r).map_err(|_| ()),
            Reply::Thread(t) => t.send(r).map_err(|_| ()),
        }
    }
}

/// A record ready for the writer: its `data` already in canonical form.
pub(crate) struct Prepared {
    pub kind: Kind,
    pub data: String,
}

pub(super) enum Job {
    Append { recs: Vec<Prepared>, reply: Reply },
    Checkpoint { reply: Reply },
    Close { reply: Reply },
}

/// A record as written, for the sink.
pub(crate) struct Written {
    pub kind: Kind,
    pub seq: u64,
    pub ts: String,
    pub hash: String,
    /// The line without its newline.
    pub line: String,
}

/// Where durable records go besides the file (the syslog forwarder).
pub(crate) trait Sink: Send {
    /// Takes a durable record; never blocks.
    fn send(&self, rec: &Written);
    /// Waits up to `timeout` for what was sent to leave.
    fn drain(&self, timeout: Duration);
}

struct SegInfo {
    name: String,
    first_seq: u64,
    /// Last record (seq, hash), if the segment holds any.
    last: Option<(u64, String)>,
    bytes: u64,
}

struct Current {
    file: File,
    path: PathBuf,
    info: SegInfo,
    opened: Instant,
    dev: u64,
    ino: u64,
}

pub(super) struct Writer {
    dir: PathBuf,
    durability: Durability,
    segment_max_bytes: u64,
    segment_max_age: Option<Duration>,
    retention_age: Option<Duration>,
    retention_max_bytes: u64,
    checkpoint_interval: Duration,
    key: Arc<SigningKey>,
    next_seq: u64,
    head: String,
    closed: Vec<SegInfo>,
    cur: Current,
    /// The newest record deleted by retention (seq, hash), as attested by checkpoints.
    retired: Option<(u64, String)>,
    buf: Vec<u8>,
    pending: Vec<Written>,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    sink: Option<Box<dyn Sink>>,
    forward: Forward,
    shared: Arc<Shared>,
    /// `DIR/.lock`, held with `flock(LOCK_EX)`: one writer per directory.
    lock: Option<File>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AuditError {
    let what = what.into();
    move |e| AuditError::io(what, e)
}

fn fsync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("fsync of directory {}", dir.display())))
}

/// What `open` found in the directory, for the startup record.
#[derive(Default)]
struct Found {
    segments: usize,
    last_kind: Option<String>,
    last_reason: Option<String>,
    torn_bytes: u64,
    torn_sha256: Option<String>,
}

impl Writer {
    /// Opens the directory: finds the chain head (repairing a torn last line), starts a new
    /// segment, writes `startup` and a checkpoint, durably.
    pub(super) fn open(
        cfg: &AuditConfig,
        shared: Arc<Shared>,
        sink: Option<Box<dyn Sink>>,
        forward: Forward,
    ) -> Result<Writer, AuditError> {
        let key = Arc::new(SigningKey::from_synapse_file(&cfg.key_file)?);
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let lock = lock_dir(&dir)?;
        let mut found = Found::default();
        let mut files = segment::list(&dir)?;
        found.segments = files.len();
        // A torn last line (a crash during a write; never acknowledged) is cut off and its
        // hash recorded in the startup record. An empty last segment (a crash right after a
        // rotation) is removed.
        while let Some(last) = files.last() {
            let (_, good) = segment::last_line(&last.path)?;
            let len = std::fs::metadata(&last.path)
                .map_err(io(format!("reading {}", last.path.display())))?
                .len();
            if len > good {
                let bytes = std::fs::read(&last.path)
                    .map_err(io(format!("reading {}", last.path.display())))?;
                found.torn_bytes += len - good;
                found.torn_sha256 = Some(format::sha256_hex(&bytes[good as usize..]));
                let f = OpenOptions::new()
                    .write(true)
                    .open(&last.path)
                    .map_err(io(format!("opening {}", last.path.display())))?;
                f.set_len(good)
                    .and_then(|()| f.sync_all())
                    .map_err(io(format!("truncating {}", last.path.display())))?;
            }
            if good == 0 {
                std::fs::remove_file(&last.path)
                    .map_err(io(format!("removing empty {}", last.path.display())))?;
                files.pop();
                continue;
            }
            break;
        }
        let mut closed = Vec::new();
        for f in &files {
            let (line, _) = segment::last_line(&f.path)?;
            let last = match line {
                Some(l) => Some(head_of(&l, &f.name)?),
                None => None,
            };
            let bytes = std::fs::metadata(&f.path)
                .map_err(io(format!("reading {}", f.path.display())))?
                .len();
            closed.push(SegInfo {
                name: f.name.clone(),
                first_seq: f.first_seq,
                last: last.map(|(s, h, _, _)| (s, h)),
                bytes,
            });
        }
        let (next_seq, head) = match files.last() {
            Some(f) => {
                let (line, _) = segment::last_line(&f.path)?;
                let line = line.unwrap_or_default();
                let (seq, hash, kind, reason) = head_of(&line, &f.name)?;
                found.last_kind = Some(kind);
                found.last_reason = reason;
                (seq + 1, hash)
            }
            None => (0, GENESIS_PREV.to_owned()),
        };
        let retired = latest_retired(&files)?;
        let cur = create_segment(&dir, next_seq)?;
        let mut w = Writer {
            dir,
            durability: cfg.durability,
            segment_max_bytes: cfg.segment_max_bytes,
            segment_max_age: (cfg.segment_max_age_secs > 0)
                .then(|| Duration::from_secs(cfg.segment_max_age_secs)),
            retention_age: (cfg.retention_days > 0)
                .then(|| Duration::from_secs(cfg.retention_days * 86_400)),
            retention_max_bytes: cfg.retention_max_bytes,
            checkpoint_interval: Duration::from_secs(cfg.checkpoint_interval_secs.max(1)),
            key,
            next_seq,
            head,
            closed,
            cur,
            retired,
            buf: Vec::with_capacity(1 << 16),
            pending: Vec::new(),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            sink,
            forward,
            shared,
            lock: Some(lock),
        };
        let mut startup = Map::new();
        startup.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        startup.insert("durability".into(), json!(cfg.durability.as_str()));
        startup.insert("segments_found".into(), json!(found.segments));
        let previous = match (&found.last_kind, &found.last_reason) {
            (None, _) => "none",
            (Some(k), Some(r)) if k == "checkpoint" && r == "shutdown" => "clean",
            _ => "unclean",
        };
        startup.insert("previous_run".into(), json!(previous));
        if found.torn_bytes > 0 {
            startup.insert("torn_tail_bytes".into(), json!(found.torn_bytes));
            startup.insert("torn_tail_sha256".into(), json!(found.torn_sha256));
        }
        w.push(Kind::Startup, startup)?;
        w.checkpoint("startup", &[])?;
        w.flush()?;
        Ok(w)
    }

    /// The loop of the writer thread.
    pub(super) fn run(mut self, rx: Receiver<Job>) {
        loop {
            let wait = self
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed());
            let first = match rx.recv_timeout(wait) {
                Ok(j) => j,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.tick() {
                        self.fail(e.to_string());
                        return drain_failed(&rx, &self.shared);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut jobs = vec![first];
            if self.durability == Durability::Group {
                // Let appenders that are about to queue do so (on a busy core the first append
                // wakes this thread before the others are queued): one fsync for all of them.
                std::thread::yield_now();
                while jobs.len() < MAX_BATCH_JOBS && !matches!(jobs.last(), Some(Job::Close { .. }))
                {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
            }
            // Group: everything queued is one batch with one fsync; fsync: one job per batch.
            if self.batch(jobs) {
                return;
            }
            // Under constant load the receive never times out: the cadence is kept here.
            if self.shared.failed().is_none()
                && self.last_checkpoint.elapsed() >= self.checkpoint_interval
            {
                if let Err(e) = self.tick() {
                    self.fail(e.to_string());
                }
            }
            if self.shared.failed().is_some() {
                return drain_failed(&rx, &self.shared);
            }
        }
    }

    /// Writes a batch of jobs with one fsync; returns whether the writer is finished.
    fn batch(&mut self, jobs: Vec<Job>) -> bool {
        let mut replies: Vec<(Reply, u64)> = Vec::with_capacity(jobs.len());
        let mut close = None;
        let mut result: Result<(), AuditError> = Ok(());
        for job in jobs {
            match job {
                Job::Append { recs, reply } => {
                    if result.is_ok() {
                        let mut last = 0;
                        for r in recs {
                            match self.push_canonical(r.kind, &r.data) {
                                Ok(seq) => last = seq,
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            }
                        }
                        replies.push((reply, last));
                    } else {
                        replies.push((reply, 0));
                    }
                }
                Job::Checkpoint { reply } => {
                    if result.is_ok() {
                        match self.checkpoint("requested", &[]) {
                            Ok(seq) => replies.push((reply, seq)),
                            Err(e) => {
                                result = Err(e);
                                replies.push((reply, 0));
                            }
                        }
                    } else {
                        replies.push((reply, 0));
                    }
                }
                Job::Close { reply } => close = Some(reply),
            }
        }
        if result.is_ok() {
            if let Some(reply) = close {
                let r = self
                    .push(Kind::Shutdown, Map::new())
                    .and_then(|_| self.checkpoint("shutdown", &[]))
                    .and_then(|seq| self.flush().map(|()| seq));
                result = result.and(self.flush());
                let ok = r.is_ok() && result.is_ok();
                self.answer(replies, &result);
                if let Err(e) = &r {
                    self.fail(e.to_string());
                }
                // The final checkpoint is the collector's anchor: give it time to leave.
                if let Some(sink) = &self.sink {
                    sink.drain(Duration::from_secs(2));
                }
                if ok {
                    self.shared.set_closed();
                }
                // Released before the answer: the caller may open the directory again at once.
                self.lock = None;
                let _ = reply.send(r.map_err(|e| AuditError::Failed(e.to_string())));
                return true;
            }
            result = self.flush();
        }
        if let Err(e) = &result {
            self.fail(e.to_string());
        }
        self.answer(replies, &result);
        if let Some(reply) = close {
            let _ = reply.send(Err(AuditError::Failed(
                self.shared.failed().unwrap_or_default(),
            )));
            return true;
        }
        false
    }

    fn answer(&self, replies: Vec<(Reply, u64)>, result: &Result<(), AuditError>) {
        for (reply, seq) in replies {
            let r = match result {
                Ok(()) => Ok(seq),
                Err(e) => Err(AuditError::Failed(e.to_string())),
            };
            let _ = reply.send(r);
        }
    }

    /// Enters the failed state; the directory lock is released so that a new `open` can
    /// take over while handles of this auditor still exist.
    fn fail(&mut self, reason: String) {
        self.shared.fail(reason);
        self.lock = None;
    }

    /// Timer: an interval checkpoint if anything was written since the last one, retention.
    fn tick(&mut self) -> Result<(), AuditError> {
        self.last_checkpoint = Instant::now();
        if self.since_checkpoint > 0 {
            self.checkpoint("interval", &[])?;
            self.flush()?;
        }
        self.retention()
    }

    /// Encodes one record into the buffer (rotating first if the segment is full or old).
    fn push(&mut self, kind: Kind, data: Map<String, Value>) -> Result<u64, AuditError> {
        let mut d = String::new();
        format::write_object(&data, None, &mut d);
        self.push_canonical(kind, &d)
    }

    /// [`Self::push`] for a `data` object already in canonical form.
    fn push_canonical(&mut self, kind: Kind, data: &str) -> Result<u64, AuditError> {
        let full = self.cur.info.bytes >= self.segment_max_bytes
            || self
                .segment_max_age
                .is_some_and(|a| self.cur.opened.elapsed() >= a);
        if full && self.cur.info.last.is_some() && kind != Kind::Checkpoint {
            self.rotate()?;
        }
        let seq = self.next_seq;
        let ts = format::rfc3339_ms(format::now_ms());
        let e = format::encode_canonical(seq, &ts, kind.as_str(), &self.head, data);
        Ok(self.add(kind, seq, ts, e))
    }

    /// Puts an encoded record into the buffer and advances the chain.
    fn add(&mut self, kind: Kind, seq: u64, ts: String, e: Encoded) -> u64 {
        let Encoded { line, hash } = e;
        self.buf.extend_from_slice(line.as_bytes());
        self.cur.info.bytes += line.len() as u64;
        self.cur.info.last = Some((seq, hash.clone()));
        if self.sink.is_some() && (self.forward == Forward::All || kind == Kind::Checkpoint) {
            self.pending.push(Written {
                kind,
                seq,
                ts,
                hash: hash.clone(),
                line: line.trim_end().to_owned(),
            });
        }
        self.head = hash;
        self.next_seq += 1;
        self.since_checkpoint += 1;
        seq
    }

    /// Appends a signed checkpoint to the buffer.
    fn checkpoint(&mut self, reason: &str, deleted: &[String]) -> Result<u64, AuditError> {
        let mut data = Map::new();
        data.insert("reason".into(), json!(reason));
        data.insert("key_id".into(), json!(self.key.key_id()));
        let mut segs: Vec<Value> = self
            .closed
            .iter()
            .map(|s| {
                let mut o = json!({"name": s.name, "first_seq": s.first_seq});
                if let Some((seq, hash)) = &s.last {
                    o["last_seq"] = json!(seq);
                    o["last_hash"] = json!(hash);
                }
                o
            })
            .collect();
        segs.push(json!({"name": self.cur.info.name, "first_seq": self.cur.info.first_seq}));
        data.insert("segments".into(), Value::Array(segs));
        if let Some((seq, hash)) = &self.retired {
            data.insert("retired".into(), json!({"seq": seq, "hash": hash}));
        }
        if !deleted.is_empty() {
            data.insert("deleted".into(), json!(deleted));
        }
        let key = Arc::clone(&self.key);
        let sign = move |msg: &[u8]| STANDARD_NO_PAD.encode(key.sign(msg));
        let seq = self.next_seq;
        let ts = format::rfc3339_ms(format::now_ms());
        let e = format::encode(seq, &ts, "checkpoint", &self.head, data, Some(&sign));
        self.add(Kind::Checkpoint, seq, ts, e);
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        Ok(seq)
    }

    /// Writes the buffer to the current segment, fsyncs, checks the file is still the one at
    /// its path, then hands the lines to the sink.
    fn flush(&mut self) -> Result<(), AuditError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.cur.path.display().to_string();
        crate::fault::audit_fault().map_err(io(format!("writing {path}")))?;
        self.cur
            .file
            .write_all(&self.buf)
            .map_err(io(format!("writing {path}")))?;
        self.cur
            .file
            .sync_data()
            .map_err(io(format!("fsync of {path}")))?;
        self.buf.clear();
        // A segment file removed or replaced under the guard would swallow the records.
        let meta = std::fs::symlink_metadata(&self.cur.path)
            .map_err(|e| AuditError::Failed(format!("segment {path} is gone: {e}")))?;
        if meta.dev() != self.cur.dev || meta.ino() != self.cur.ino {
            return Err(AuditError::Failed(format!(
                "segment {path} was replaced by another file"
            )));
        }
        if let Some(sink) = &self.sink {
            for w in self.pending.drain(..) {
                sink.send(&w);
            }
        }
        Ok(())
    }

    /// Closes the current segment (durably) and starts the next one.
    fn rotate(&mut self) -> Result<(), AuditError> {
        self.flush()?;
        let next = create_segment(&self.dir, self.next_seq)?;
        let old = std::mem::replace(&mut self.cur, next);
        self.closed.push(old.info);
        self.retention()
    }

    /// Deletes the oldest closed segments beyond the retention limits; a checkpoint naming
    /// them and the new `retired` mark is made durable first.
    fn retention(&mut self) -> Result<(), AuditError> {
        if self.retention_age.is_none() && self.retention_max_bytes == 0 {
            return Ok(());
        }
        let mut total: u64 = self.closed.iter().map(|s| s.bytes).sum::<u64>() + self.cur.info.bytes;
        let mut n = 0;
        for s in &self.closed {
            let old = self.retention_age.is_some_and(|age| {
                std::fs::metadata(self.dir.join(&s.name))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|e| e >= age)
            });
            let big = self.retention_max_bytes > 0 && total > self.retention_max_bytes;
            if !(old || big) {
                break;
            }
            total -= s.bytes;
            n += 1;
        }
        // Only segments with records can move the mark.
        let Some((seq, hash)) = self.closed[..n].iter().rev().find_map(|s| s.last.clone()) else {
            return Ok(());
        };
        let gone: Vec<SegInfo> = self.closed.drain(..n).collect();
        let names: Vec<String> = gone.iter().map(|s| s.name.clone()).collect();
        self.retired = Some((seq, hash));
        self.checkpoint("retention", &names)?;
        self.flush()?;
        for name in &names {
            let p = self.dir.join(name);
            std::fs::remove_file(&p).map_err(io(format!("removing {}", p.display())))?;
        }
        fsync_dir(&self.dir)
    }
}

fn drain_failed(rx: &Receiver<Job>, shared: &Shared) {
    let reason = shared.failed().unwrap_or_default();
    while let Ok(job) = rx.recv() {
        let reply = match job {
            Job::Append { reply, .. } | Job::Checkpoint { reply } | Job::Close { reply } => reply,
        };
        let _ = reply.send(Err(AuditError::Failed(reason.clone())));
    }
}

/// Takes `DIR/.lock` (`flock`, exclusive, not waiting): two writers on one directory would
/// interleave two chains.
fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    use std::os::fd::AsRawFd as _;
    let path = dir.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    // SAFETY: a valid open descriptor; flock only changes its lock.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
            AuditError::Invalid(format!(
                "audit directory {} is in use by another auditor",
                dir.display()
            ))
        } else {
            AuditError::io(format!("locking {}", path.display()), e)
        });
    }
    Ok(f)
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<Current, AuditError> {
    let name = segment::name(first_seq);
    let path = dir.join(&name);
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io(format!("creating segment {}", path.display())))?;
    fsync_dir(dir)?;
    let meta = file
        .metadata()
        .map_err(io(format!("reading {}", path.display())))?;
    Ok(Current {
        file,
        path,
        info: SegInfo {
            name,
            first_seq,
            last: None,
            bytes: 0,
        },
        opened: Instant::now(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// (seq, hash, kind, checkpoint reason) of a record line.
fn head_of(line: &str, segment: &str) -> Result<(u64, String, String, Option<String>), AuditError> {
    let bad = || {
        AuditError::Invalid(format!(
            "last record of {segment} is not a valid record (run `grenzwacht audit verify`)"
        ))
    };
    let v: Value = serde_json::from_str(line).map_err(|_| bad())?;
    let seq = v.get("seq").and_then(Value::as_u64).ok_or_else(bad)?;
    let hash = v
        .get("hash")
        .and_then(Value::as_str)
        .filter(|h| format::is_hash(h))
        .ok_or_else(bad)?
        .to_owned();
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_owned();
    let reason = v
        .pointer("/data/reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((seq, hash, kind, reason))
}

/// The `retired` mark of the newest checkpoint in the directory, if any.
fn latest_retired(files: &[segment::SegmentFile]) -> Result<Option<(u64, String)>, AuditError> {
    for f in files.iter().rev() {
        let text = std::fs::read_to_string(&f.path)
            .map_err(io(format!("reading {}", f.path.display())))?;
        for line in text.lines().rev() {
            if !line.contains("\"kind\":\"checkpoint\"") {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v.get("kind").and_then(Value::as_str) != Some("checkpoint") {
                continue;
            }
            let r = v.pointer("/data/retired");
            return Ok(r.and_then(|r| {
                Some((r.get("seq")?.as_u64()?, r.get("hash")?.as_str()?.to_owned()))
            }));
        }
    }
    Ok(None)
}
