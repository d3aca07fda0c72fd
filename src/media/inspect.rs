//! The inspector: every check on one file, within a deadline and a cap on concurrent scans.
//!
//! [`Inspector::inspect_blocking`] on the file's bytes, in this order, stopping at the first
//! step that finds something (the first finding is the one a refusal names):
//! 1. size: more than `max_file_bytes` → [`MediaReason::TooLarge`];
//! 2. type: [`sniff::sniff`] on the bytes, checked against `[media.types]` for the direction
//!    of the data → [`MediaReason::TypeNotAllowed`];
//! 3. archives (zip, tar, gzip, nested) are walked by [`archive::Walker`] within
//!    `[media.archive]`; every entry is sniffed and checked against the same list (a PE inside
//!    a zip is refused; so is a zip inside a tar when `zip` is not listed), its path goes to
//!    the DLP rules as `media.name`, and each file entry is inspected like a file of its own
//!    (steps 4–6); the text every container carries besides its entries (comments, names of
//!    directories and links, link targets, owners, pax records, extra fields, bytes outside
//!    the entries: [`archive::Walker::walk`]) goes to the DLP rules as `media.text` and to
//!    YARA; a limit → [`MediaReason::ArchiveLimit`], an encrypted entry or an unknown
//!    compression method → [`MediaReason::Unreadable`], what does not parse →
//!    [`MediaReason::Malformed`];
//! 4. office and ODF documents are zips but not walked as archives: their parts are listed
//!    and parts that are executables, scripts, OLE objects (`*/embeddings/*.bin`,
//!    `*/activeX/*.bin`) or macros (`vbaProject.bin`, ODF `Basic/`, `Scripts/`) are checked
//!    against the list → [`MediaReason::TypeNotAllowed`];
//! 5. text: [`extract::text`] (at most [`MAX_TEXT_BYTES`] per file, entries together) to the
//!    DLP rules as `media.text` (`event_type` `m.media`); an enforced match whose action is
//!    more than `tag` → [`MediaReason::Dlp`] (`dlp:<rule id>`, masked excerpt in the detail);
//!    extraction errors → `Malformed`, `Unreadable`, or `ArchiveLimit` (text too large);
//! 6. YARA-X rules on the bytes of the file, of every file entry and of every container
//!    inside it (after decompression) → [`MediaReason::Yara`]
//!    (`yara:<namespace>.<rule>`), with the whole seconds left before the deadline.
//!
//! The deadline is checked between steps, inside decompression and inside text extraction (→
//! [`MediaReason::ScanTimeout`]); a panic anywhere inside becomes a
//! [`MediaReason::Internal`] finding. [`Inspector::inspect`] runs this on a blocking thread
//! after taking one of `max_concurrent_scans` permits (0: one per CPU); the permit moves into
//! the blocking task, so a scan that overran its deadline keeps its slot until it really ends,
//! and the caller gets a `ScanTimeout` report at the deadline (waiting for a permit counts).
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::archive::{self, ArchiveError, Entry, Walker};
use super::extract::{self, ExtractError};
use super::sniff;
use super::yara::{YaraRules, YaraScanError};
use super::{Direction, FileKind, MediaConfig, MediaFinding, MediaReason, Report};
use crate::policy::dlp::{Action, Engine, Field, Mode, ScanCtx};

/// Text extracted from one file (its archive entries together) for the DLP rules.
pub const MAX_TEXT_BYTES: usize = 16 << 20;
/// Bytes of each part of an office document read to tell its kind.
const PART_PREFIX: usize = 4096;
/// Kinds that are active content when found inside a document.
const ACTIVE: &[FileKind] = &[
    FileKind::Pe,
    FileKind::Elf,
    FileKind::MachO,
    FileKind::Script,
    FileKind::Ole,
    FileKind::OfficeMacro,
];

/// Who the file goes to and where it comes from.
#[derive(Debug, Clone)]
pub struct InspectCtx {
    /// The direction the file's bytes flow (seen from the protected side).
    pub direction: Direction,
    /// The remote server taking part.
    pub peer: Option<String>,
    /// The server that hosts the media (`mxc://<server_name>/<media_id>`).
    pub server_name: String,
    pub media_id: String,
}

/// Why an inspector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InspectorError {
    #[error("[media.types] {0}")]
    UnknownType(String),
}

/// Office and ODF documents: zips whose parts are checked but not walked.
pub fn is_document(kind: FileKind) -> bool {
    matches!(
        kind,
        FileKind::Docx
            | FileKind::Xlsx
            | FileKind::Pptx
            | FileKind::OfficeMacro
            | FileKind::Odt
            | FileKind::Ods
            | FileKind::Odp
    )
}

/// The kind of a document part by its name alone (OLE objects and macro containers), if the
/// name says.
pub fn part_kind_by_name(name: &str) -> Option<FileKind> {
    let lower = name.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    if base == "vbaproject.bin"
        || base == "vbadata.xml"
        || lower.starts_with("basic/")
        || lower.starts_with("scripts/")
    {
        Some(FileKind::OfficeMacro)
    } else if (lower.contains("/embeddings/") || lower.contains("/activex/"))
        && base.ends_with(".bin")
    {
        Some(FileKind::Ole)
    } else {
        None
    }
}

fn bit(kind: FileKind) -> u64 {
    1u64 << (kind as u32)
}

fn finding(reason: MediaReason, rule: Option<String>, path: &str, detail: String) -> MediaFinding {
    MediaFinding {
        reason,
        rule,
        path: path.to_owned(),
        detail,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Counts a scan as running while alive (and records the highest count seen).
struct Running<'a>(&'a Inspector);

impl<'a> Running<'a> {
    fn new(i: &'a Inspector) -> Running<'a> {
        let now = i.running.fetch_add(1, Ordering::SeqCst) + 1;
        i.peak.fetch_max(now, Ordering::SeqCst);
        Running(i)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs every check on one file.
pub struct Inspector {
    cfg: MediaConfig,
    outbound: u64,
    inbound: u64,
    dlp: Option<Arc<Engine>>,
    yara: Option<Arc<YaraRules>>,
    permits: Arc<Semaphore>,
    max_scans: usize,
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl Inspector {
    /// Checks the `[media.types]` names (all unknown names in one error).
    pub fn new(
        cfg: &MediaConfig,
        dlp: Option<Arc<Engine>>,
        yara: Option<Arc<YaraRules>>,
    ) -> Result<Inspector, InspectorError> {
        let mut unknown = Vec::new();
        let mut mask = |dir: &str, names: &[String]| {
            let mut m = 0u64;
            for n in names {
                match FileKind::from_name(n) {
                    Some(k) => m |= bit(k),
                    None => unknown.push(format!("{dir} {n:?}")),
                }
            }
            m
        };
        let outbound = mask("outbound", &cfg.types.outbound);
        let inbound = mask("inbound", &cfg.types.inbound);
        if !unknown.is_empty() {
            let known: Vec<&str> = FileKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(InspectorError::UnknownType(format!(
                "unknown file types: {} (known: {})",
                unknown.join(", "),
                known.join(", ")
            )));
        }
        let max_scans = match cfg.max_concurrent_scans {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(Inspector {
            cfg: cfg.clone(),
            outbound,
            inbound,
            dlp,
            yara,
            permits: Arc::new(Semaphore::new(max_scans)),
            max_scans,
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// Whether files of `kind` may cross in `direction`.
    pub fn allowed(&self, direction: Direction, kind: FileKind) -> bool {
        let m = match direction {
            Direction::Outbound => self.outbound,
            Direction::Inbound => self.inbound,
        };
        m & bit(kind) != 0
    }

    /// The cap on scans running at once ([`Self::inspect`]).
    pub fn max_concurrent_scans(&self) -> usize {
        self.max_scans
    }

    /// Scans running now on blocking threads (started by [`Self::inspect`]).
    pub fn scans_running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// The most scans seen running at once since the inspector was built.
    pub fn peak_scans(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// The per-file deadline (`scan_deadline_ms`).
    pub fn scan_deadline(&self) -> Duration {
        Duration::from_millis(self.cfg.scan_deadline_ms)
    }

    /// Inspects one file on the calling thread (CPU-bound), within `scan_deadline_ms` from
    /// now.
    pub fn inspect_blocking(&self, bytes: &[u8], ctx: &InspectCtx) -> Report {
        self.inspect_until(bytes, ctx, Instant::now() + self.scan_deadline())
    }

    /// [`Self::inspect_blocking`] with an explicit deadline.
    pub fn inspect_until(&self, bytes: &[u8], ctx: &InspectCtx, deadline: Instant) -> Report {
        self.inspect_with(bytes, ctx, deadline, None)
    }

    fn inspect_with(
        &self,
        bytes: &[u8],
        ctx: &InspectCtx,
        deadline: Instant,
        early: Option<&OnceLock<(FileKind, String)>>,
    ) -> Report {
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let sha256 = hex(&Sha256::digest(bytes));
            let kind = sniff::sniff(bytes);
            if let Some(e) = early {
                let _ = e.set((kind, sha256.clone()));
            }
            let mut report = Report {
                kind,
                size: bytes.len() as u64,
                sha256,
                findings: Vec::new(),
                files: 1,
                text_bytes: 0,
            };
            let mut scan = Scan {
                insp: self,
                ctx,
                deadline,
                text_left: MAX_TEXT_BYTES,
                report: &mut report,
            };
            scan.file(bytes);
            report
        }));
        caught.unwrap_or_else(|_| {
            tracing::error!(media_id = %ctx.media_id, "media inspection panicked");
            let (kind, sha256) = early
                .and_then(|e| e.get().cloned())
                .unwrap_or((FileKind::Unknown, String::new()));
            failed_report(
                kind,
                bytes.len() as u64,
                sha256,
                MediaReason::Internal,
                "inspection failed".to_owned(),
            )
        })
    }

    /// DLP on the text that travels with a file rather than in it — its served name
    /// (`Content-Disposition`), its declared type, the metadata of a federation answer — as
    /// `media.name`, at the place `path`. Not part of [`Report`]s (and so not cached by the
    /// file's hash): the same bytes can travel under another name.
    pub fn inspect_names(&self, names: &[&str], ctx: &InspectCtx, path: &str) -> Vec<MediaFinding> {
        let mut report = Report {
            kind: FileKind::Unknown,
            size: 0,
            sha256: String::new(),
            findings: Vec::new(),
            files: 0,
            text_bytes: 0,
        };
        let fields: Vec<(Field, &str)> = names
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| (Field::MediaName, *n))
            .collect();
        let mut scan = Scan {
            insp: self,
            ctx,
            deadline: Instant::now() + self.scan_deadline(),
            text_left: MAX_TEXT_BYTES,
            report: &mut report,
        };
        scan.dlp(&fields, path);
        report.findings
    }

    /// Inspects one file on a blocking thread, within `scan_deadline_ms` and the cap on
    /// concurrent scans; a timeout is a refusal (`MediaReason::ScanTimeout`). Such a report
    /// carries the kind and SHA-256 if the scan got that far (else `unknown` and `""`).
    pub async fn inspect(self: &Arc<Self>, bytes: Bytes, ctx: InspectCtx) -> Report {
        let deadline = Instant::now() + self.scan_deadline();
        let size = bytes.len() as u64;
        let early: Arc<OnceLock<(FileKind, String)>> = Arc::new(OnceLock::new());
        let this = Arc::clone(self);
        let early2 = Arc::clone(&early);
        let work = async move {
            let permit = Arc::clone(&this.permits).acquire_owned().await.ok()?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let _running = Running::new(&this);
                this.inspect_with(&bytes, &ctx, deadline, Some(&early2))
            })
            .await
            .ok()
        };
        let (reason, detail) =
            match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), work).await {
                Ok(Some(report)) => return report,
                Ok(None) => (MediaReason::Internal, "inspection task failed".to_owned()),
                Err(_) => (
                    MediaReason::ScanTimeout,
                    format!("not finished within {} ms", self.cfg.scan_deadline_ms),
                ),
            };
        let (kind, sha256) = early
            .get()
            .cloned()
            .unwrap_or((FileKind::Unknown, String::new()));
        failed_report(kind, size, sha256, reason, detail)
    }
}

fn failed_report(
    kind: FileKind,
    size: u64,
    sha256: String,
    reason: MediaReason,
    detail: String,
) -> Report {
    Report {
        kind,
        size,
        sha256,
        findings: vec![finding(reason, None, "", detail)],
        files: 0,
        text_bytes: 0,
    }
}

/// One inspection in progress.
struct Scan<'a> {
    insp: &'a Inspector,
    ctx: &'a InspectCtx,
    deadline: Instant,
    text_left: usize,
    report: &'a mut Report,
}

impl Scan<'_> {
    fn push(&mut self, f: MediaFinding) {
        self.report.findings.push(f);
    }

    fn found(&self) -> bool {
        !self.report.findings.is_empty()
    }

    /// Records a timeout if the deadline has passed.
    fn past_deadline(&mut self, path: &str) -> bool {
        if Instant::now() < self.deadline {
            return false;
        }
        let d = format!("not finished within {} ms", self.insp.cfg.scan_deadline_ms);
        self.push(finding(MediaReason::ScanTimeout, None, path, d));
        true
    }

    fn type_check(&mut self, kind: FileKind, path: &str, what: &str) -> bool {
        if self.insp.allowed(self.ctx.direction, kind) {
            return true;
        }
        let d = format!("{what}{kind} not allowed {}", self.ctx.direction.as_str());
        self.push(finding(MediaReason::TypeNotAllowed, None, path, d));
        false
    }

    /// The file itself.
    fn file(&mut self, bytes: &[u8]) {
        let kind = self.report.kind;
        let max = self.insp.cfg.max_file_bytes;
        if bytes.len() > max {
            let d = format!("{} bytes, more than {max}", bytes.len());
            self.push(finding(MediaReason::TooLarge, None, "", d));
            return;
        }
        if !self.type_check(kind, "", "") || self.past_deadline("") {
            return;
        }
        if archive::is_container(kind) {
            self.archive(bytes, kind);
            if self.found() {
                return;
            }
            self.yara(bytes, "");
        } else {
            self.content(kind, bytes, "");
        }
    }

    /// Walks an archive; every entry through [`Self::entry`].
    fn archive(&mut self, bytes: &[u8], kind: FileKind) {
        let limits = self.insp.cfg.archive;
        let deadline = self.deadline;
        let classify = |b: &[u8]| sniff::sniff(b);
        let mut w = Walker::new(&limits, Some(deadline), &classify);
        let r = w.walk(bytes, kind, &mut |e: Entry<'_>| self.entry(e));
        self.report.files += w.stats().visited;
        if let Err(e) = r {
            self.archive_error(e, "");
        }
    }

    fn entry(&mut self, e: Entry<'_>) -> ControlFlow<()> {
        if e.meta {
            self.container_text(e.bytes, e.path);
        } else if !self.type_check(e.kind, e.path, "") || self.past_deadline(e.path) {
            return ControlFlow::Break(());
        } else if e.container {
            // A container inside the file: its name, and its bytes as they are after
            // decompression (the file's own bytes are scanned after the walk).
            self.dlp(&[(Field::MediaName, e.path)], e.path);
            if !self.found() {
                self.yara(e.bytes, e.path);
            }
        } else {
            self.content(e.kind, e.bytes, e.path);
        }
        if self.found() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// The text a container carries besides its entries ([`Entry::meta`]): DLP as media text,
    /// and YARA (which sees a nested container's headers nowhere else).
    fn container_text(&mut self, text: &[u8], path: &str) {
        let text = String::from_utf8_lossy(text);
        if text.len() > self.text_left {
            let e = ExtractError::TooLarge {
                kind: FileKind::Text,
                limit: MAX_TEXT_BYTES,
            };
            self.extract_error(e, path);
            return;
        }
        self.text_left -= text.len();
        self.report.text_bytes += text.len();
        self.dlp(&[(Field::MediaText, &text)], path);
        if !self.found() && !self.past_deadline(path) {
            self.yara(text.as_bytes(), path);
        }
    }

    /// Steps 4–6 for one file (the file itself or an archive entry at `path`).
    fn content(&mut self, kind: FileKind, bytes: &[u8], path: &str) {
        if is_document(kind) {
            self.parts(kind, bytes, path);
            if self.found() || self.past_deadline(path) {
                return;
            }
        }
        let text = match extract::text_until(kind, bytes, self.text_left, self.deadline) {
            Ok(t) => t,
            Err(e) => {
                self.extract_error(e, path);
                return;
            }
        };
        if let Some(t) = &text {
            self.text_left = self.text_left.saturating_sub(t.len());
            self.report.text_bytes += t.len();
        }
        if self.past_deadline(path) {
            return;
        }
        let mut fields: Vec<(Field, &str)> = Vec::with_capacity(2);
        if !path.is_empty() {
            fields.push((Field::MediaName, path));
        }
        if let Some(t) = text.as_deref().filter(|t| !t.is_empty()) {
            fields.push((Field::MediaText, t));
        }
        self.dlp(&fields, path);
        if self.found() || self.past_deadline(path) {
            return;
        }
        self.yara(bytes, path);
    }

    /// The parts of an office or ODF document: no executables, OLE objects or macros unless
    /// their kind is allowed.
    fn parts(&mut self, kind: FileKind, bytes: &[u8], path: &str) {
        let limits = self.insp.cfg.archive;
        let classify = |b: &[u8]| sniff::sniff(b);
        let mut w = Walker::new(&limits, Some(self.deadline), &classify);
        let mut refused: Option<MediaFinding> = None;
        let (insp, dir) = (self.insp, self.ctx.direction);
        let r = w.parts(
            bytes,
            kind,
            PART_PREFIX,
            &mut |name: &str, prefix: &[u8]| {
                let part = part_kind_by_name(name).unwrap_or_else(|| sniff::sniff(prefix));
                if ACTIVE.contains(&part) && !insp.allowed(dir, part) {
                    let at = if path.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{path}/{name}")
                    };
                    let d = format!("{part} inside {kind} not allowed {}", dir.as_str());
                    refused = Some(finding(MediaReason::TypeNotAllowed, None, &at, d));
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            },
        );
        if let Some(f) = refused {
            self.push(f);
        } else if let Err(e) = r {
            self.archive_error(e, path);
        }
    }

    fn archive_error(&mut self, e: ArchiveError, base: &str) {
        let at = match (base, e.path()) {
            ("", p) => p.to_owned(),
            (b, "") => b.to_owned(),
            (b, p) => format!("{b}/{p}"),
        };
        let limits = self.insp.cfg.archive;
        let (reason, detail) = match &e {
            ArchiveError::Limit { limit, .. } => {
                let value = match limit {
                    archive::Limit::Depth => format!("max_depth {}", limits.max_depth),
                    archive::Limit::Entries => format!("max_entries {}", limits.max_entries),
                    archive::Limit::TotalBytes => {
                        format!("max_total_bytes {}", limits.max_total_bytes)
                    }
                    archive::Limit::Ratio | archive::Limit::OverallRatio => {
                        format!("max_ratio {}", limits.max_ratio)
                    }
                };
                (
                    MediaReason::ArchiveLimit,
                    format!("archive limit {}: {value}", limit.as_str()),
                )
            }
            ArchiveError::Malformed { kind, reason, .. } => (
                MediaReason::Malformed,
                format!("malformed {kind}: {reason}"),
            ),
            ArchiveError::Unreadable { reason, .. } => {
                (MediaReason::Unreadable, format!("unreadable: {reason}"))
            }
            ArchiveError::Deadline { .. } => (
                MediaReason::ScanTimeout,
                format!("not finished within {} ms", self.insp.cfg.scan_deadline_ms),
            ),
        };
        self.push(finding(reason, None, &at, detail));
    }

    fn extract_error(&mut self, e: ExtractError, path: &str) {
        let reason = match e {
            ExtractError::Malformed { .. } => MediaReason::Malformed,
            ExtractError::Unreadable { .. } => MediaReason::Unreadable,
            ExtractError::TooLarge { .. } => MediaReason::ArchiveLimit,
            ExtractError::Deadline { .. } => {
                self.past_deadline(path);
                return;
            }
        };
        self.push(finding(reason, None, path, e.to_string()));
    }

    /// DLP on names and texts; enforced matches above `tag` are findings (one per rule).
    fn dlp(&mut self, fields: &[(Field, &str)], path: &str) {
        let Some(engine) = self.insp.dlp.as_deref() else {
            return;
        };
        if fields.is_empty() {
            return;
        }
        let sctx = ScanCtx {
            direction: self.ctx.direction,
            peer: self.ctx.peer.as_deref(),
            room_id: None,
            sender: None,
            event_type: "m.media",
        };
        let out = engine.scan_fields(&sctx, fields);
        let mut seen: Vec<&str> = Vec::new();
        for m in &out.matches {
            if m.mode != Mode::Enforce || m.action <= Action::Tag || seen.contains(&&*m.rule) {
                continue;
            }
            seen.push(&m.rule);
            let d = format!("{} ({}): {}", m.action, m.field, m.excerpt);
            self.report.findings.push(finding(
                MediaReason::Dlp,
                Some(format!("dlp:{}", m.rule)),
                path,
                d,
            ));
        }
    }

    fn yara(&mut self, bytes: &[u8], path: &str) {
        let Some(rules) = self.insp.yara.as_deref() else {
            return;
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.past_deadline(path);
            return;
        }
        let secs = left.as_millis().div_ceil(1000) as u64;
        match rules.scan(bytes, Duration::from_secs(secs)) {
            Ok(hits) => {
                for h in hits {
                    let d = format!("YARA rule {} matched", h.rule);
                    self.push(finding(
                        MediaReason::Yara,
                        Some(format!("yara:{}", h.rule)),
                        path,
                        d,
                    ));
                }
            }
            Err(YaraScanError::Timeout) => {
                let d = format!(
                    "YARA scan not finished within {} ms",
                    self.insp.cfg.scan_deadline_ms
                );
                self.push(finding(MediaReason::ScanTimeout, None, path, d));
            }
            Err(YaraScanError::Failed(e)) => {
                tracing::warn!(media_id = %self.ctx.media_id, error = %e, "YARA scan failed");
                let d = "YARA scan failed".to_owned();
                self.push(finding(MediaReason::Internal, None, path, d));
            }
        }
    }
}

#[cfg(test)]
#[path = "inspect/tests.rs"]
mod tests;
