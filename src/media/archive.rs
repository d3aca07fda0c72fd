//! Archives: zip, tar and gzip, nested, walked with limits.
//!
//! A [`Walker`] opens a container, reads its entries one after the other and gives every
//! entry to a visitor ([`Entry`]: path, depth, kind, bytes); entries that are containers
//! themselves are opened in turn (depth + 1). Which bytes are a container is decided by the
//! classifier the walker is given (the inspector passes [`super::sniff::sniff`]): a file's
//! type comes from its bytes, never from its name. Office and ODF files are zips but
//! documents: the walker does not open them (the classifier names them `docx`, `odt`, …);
//! [`Walker::parts`] lists their parts for the embedded-object check.
//!
//! Limits ([`ArchiveLimits`]), the first one passed stops the walk with
//! [`ArchiveError::Limit`] naming it ([`Limit`]):
//! - **depth**: the file itself is depth 0; a container deeper than `max_depth` is refused;
//! - **entries**: entries of all zips and tars of the file together (directories included;
//!   a zip's count is checked against the limit from its central directory before any entry
//!   is read);
//! - **total bytes**: bytes decompressed (zip entries, gzip members) together; tar entries are
//!   views into their archive and add nothing;
//! - **ratio** per entry: decompressed bytes against the compressed bytes consumed so far
//!   (for zip at most the declared compressed size: the smaller of the two counts), checked
//!   after every chunk (64 KiB) — a deflate bomb is refused after a few MiB, never after its
//!   declared uncompressed size (declared sizes only ever make the limits stricter; zip local
//!   and central sizes lie in bombs);
//! - **overall ratio**: decompressed bytes of the whole walk against the size of the file (an
//!   overlapping-entry bomb, whose entries all point at one compressed body, hits this or the
//!   entry or total limit).
//!
//! Strictness (each refused as [`ArchiveError::Malformed`] unless said otherwise), so that no
//! reader extracts from the file what the walk did not see:
//! - zip: the zip crate's header consistency check (duplicate names, local headers that
//!   disagree with the central directory, overlapping entries, local headers the directory
//!   does not list); entries are inflated here over exactly their bytes, so bytes after the
//!   end of an entry's compressed stream are refused, and the CRC-32 must match; directory
//!   and link entries that carry data are read as content;
//! - tar: entries of types tar does not know (GNU tar extracts them as files) and links or
//!   devices that carry data are read as content; pax sparse maps are
//!   [`ArchiveError::Unreadable`], pax `size` records malformed; the padding after each
//!   entry's data and everything after the last entry must be zeros;
//! - gzip: every member after the first counts as an entry (a stream of empty members is
//!   stopped by the entry limit), the deadline is checked per member.
//!
//! Ratios are judged only beyond [`RATIO_FLOOR`] decompressed bytes per entry and twice that
//! for the whole file (a small text of spaces compresses far better than 100:1 and is
//! harmless). Decompression goes through
//! `Read::take(budget + 1)`, so memory stays within the total-bytes budget; the deadline is
//! checked between entries and after every chunk. Encrypted zip entries and compression
//! methods other than stored and deflate (bzip2, lzma, zstd, …) are
//! [`ArchiveError::Unreadable`]; anything that does not parse is
//! [`ArchiveError::Malformed`]. Gzip input is read as a multi-member stream (every member,
//! like `gunzip`); its content keeps the gzip's path.
use std::cell::Cell;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::rc::Rc;
use std::time::Instant;

use zip::CompressionMethod;

use super::{ArchiveLimits, FileKind};

/// Decompressed bytes below which the ratio limits are not applied.
pub const RATIO_FLOOR: u64 = 1 << 20;
/// Bytes decompressed between two checks of the limits and the deadline.
const CHUNK: u64 = 64 * 1024;

/// Which archive limit was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Depth,
    Entries,
    TotalBytes,
    Ratio,
    OverallRatio,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Depth => "depth",
            Limit::Entries => "entries",
            Limit::TotalBytes => "total_bytes",
            Limit::Ratio => "ratio",
            Limit::OverallRatio => "overall_ratio",
        }
    }
}

/// Why a walk stopped. No variant carries file content.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A limit was passed at `path`; `produced` bytes of that entry had been decompressed.
    #[error("archive limit {} passed at {path:?} ({produced} bytes of the entry read)", limit.as_str())]
    Limit {
        limit: Limit,
        path: String,
        produced: u64,
    },
    #[error("malformed {kind} at {path:?}: {reason}")]
    Malformed {
        kind: FileKind,
        path: String,
        reason: String,
    },
    /// Encrypted, or compressed with a method the guard does not read.
    #[error("unreadable entry {path:?}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("deadline passed at {path:?}")]
    Deadline { path: String },
}

impl ArchiveError {
    /// Where in the file the walk stopped.
    pub fn path(&self) -> &str {
        match self {
            ArchiveError::Limit { path, .. }
            | ArchiveError::Malformed { path, .. }
            | ArchiveError::Unreadable { path, .. }
            | ArchiveError::Deadline { path } => path,
        }
    }
}

/// One entry of an archive, given to the visitor.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// `dir/file.txt`, `inner.zip/dir/file.txt` (a gzip's content keeps the gzip's path).
    pub path: &'a str,
    /// 1 for entries of the file itself.
    pub depth: u32,
    /// From the classifier.
    pub kind: FileKind,
    pub bytes: &'a [u8],
    /// A zip, tar or gzip: the walker opens it after the visitor returns.
    pub container: bool,
    /// Not an entry but the text a container carries besides its entries' contents (see
    /// [`Walker::walk`]): `path` is the container's, `kind` is [`FileKind::Text`], `bytes`
    /// the text (UTF-8, one piece per line).
    pub meta: bool,
}

/// What a walk has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Zip and tar entries (directories included) and gzip members after the first.
    pub entries: usize,
    /// Entries given to the visitor (files, containers included).
    pub visited: usize,
    /// Decompressed bytes (zip entries and gzip members).
    pub total_bytes: u64,
    /// The largest single decompressed entry (what the walk held at most for one entry).
    pub largest_entry: u64,
    /// The deepest container opened.
    pub max_depth: u32,
}

/// Whether the walker opens files of `kind`.
pub fn is_container(kind: FileKind) -> bool {
    matches!(kind, FileKind::Zip | FileKind::Tar | FileKind::Gzip)
}

/// A cursor over a byte slice whose position is visible from outside while a decoder owns it
/// (how many compressed bytes a decompression has consumed).
struct Tracked<'a> {
    inner: Cursor<&'a [u8]>,
    pos: Rc<Cell<u64>>,
}

impl<'a> Tracked<'a> {
    fn new(bytes: &'a [u8]) -> (Tracked<'a>, Rc<Cell<u64>>) {
        let pos = Rc::new(Cell::new(0));
        (
            Tracked {
                inner: Cursor::new(bytes),
                pos: pos.clone(),
            },
            pos,
        )
    }
}

impl Read for Tracked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos.set(self.inner.position());
        Ok(n)
    }
}

impl io::BufRead for Tracked<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.pos.set(self.inner.position());
    }
}

impl Seek for Tracked<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let p = self.inner.seek(to)?;
        self.pos.set(p);
        Ok(p)
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

type Visit<'v> = dyn FnMut(Entry<'_>) -> ControlFlow<()> + 'v;

/// The numeric fields of a tar header (offsets from its start): mode, uid, gid, size, mtime,
/// checksum and type flag; magic and version; device numbers.
const TAR_NUMERIC: [(u64, u64); 3] = [(100, 157), (257, 265), (329, 345)];

/// The members of a gzip stream one after the other, as `gunzip` reads them (anything after
/// a member that is no gzip member is malformed), keeping the name, comment and extra field
/// of every member's header.
struct GzMembers<'a> {
    len: usize,
    current: flate2::bufread::GzDecoder<&'a [u8]>,
    /// Compressed bytes read so far.
    consumed: Rc<Cell<u64>>,
    text: String,
    /// Members begun after the first, and how many the entry limit leaves.
    members: usize,
    max_members: usize,
    deadline: Option<Instant>,
    /// Why the stream was stopped (the reader's error only says that it was).
    stopped: Option<Limit>,
}

impl Read for GzMembers<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.current.read(buf)?;
            let rest: &[u8] = self.current.get_ref();
            self.consumed.set((self.len - rest.len()) as u64);
            if n > 0 {
                return Ok(n);
            }
            if let Some(h) = self.current.header() {
                for field in [h.filename(), h.comment()].into_iter().flatten() {
                    push_line(&mut self.text, &String::from_utf8_lossy(field));
                }
                push_line(&mut self.text, &strings(h.extra().unwrap_or_default()));
            }
            if rest.is_empty() {
                return Ok(0);
            }
            // Many empty members would keep this loop going without output: each counts
            // as an entry, and the deadline is checked per member.
            self.members += 1;
            if self.members > self.max_members {
                self.stopped = Some(Limit::Entries);
                return Err(io::Error::other("too many gzip members"));
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::Error::other("deadline passed"));
            }
            self.current = flate2::bufread::GzDecoder::new(rest);
        }
    }
}

/// What the central directory says about one zip entry.
struct ZipMeta {
    name: String,
    is_file: bool,
    unreadable: Option<String>,
    compressed: u64,
    deflated: bool,
    crc32: u32,
    data_start: Option<u64>,
    /// Raw name and comments that a reader could show besides `name`, one per line.
    text: String,
}

/// The four-byte signatures that start zip records (local and central headers, data
/// descriptors, end records): blanked before the printable runs are taken, so that a name
/// is not run together with the `PK` of the record after it.
const ZIP_SIGNATURES: [[u8; 2]; 6] = [[1, 2], [3, 4], [5, 6], [6, 6], [6, 7], [7, 8]];

fn blank_zip_signatures(gap: &mut [u8]) {
    for i in 0..gap.len().saturating_sub(3) {
        if &gap[i..i + 2] == b"PK" && ZIP_SIGNATURES.contains(&[gap[i + 2], gap[i + 3]]) {
            gap[i..i + 4].fill(0);
        }
    }
}

/// The printable runs ([`strings`]) of `bytes` outside the `ranges`, with the bytes of
/// `blank` read as zeros, one per line (both lists are sorted here). `prepare` sees every
/// gap before its runs are taken.
fn strings_outside(
    bytes: &[u8],
    ranges: &mut [(u64, u64)],
    blank: &mut [(u64, u64)],
    prepare: fn(&mut [u8]),
) -> String {
    ranges.sort_unstable();
    blank.sort_unstable();
    let len = bytes.len();
    let mut gaps = Vec::new();
    let mut at = 0usize;
    for &(start, end) in ranges.iter() {
        let (start, end) = (clamp(start, len), clamp(end, len));
        if start >= end {
            continue;
        }
        if start > at {
            gaps.push((at, start));
        }
        at = at.max(end);
    }
    if at < len {
        gaps.push((at, len));
    }
    let mut out = String::new();
    let mut first_blank = 0;
    for (from, to) in gaps {
        let mut gap = bytes[from..to].to_vec();
        while blank
            .get(first_blank)
            .is_some_and(|&(_, e)| clamp(e, len) <= from)
        {
            first_blank += 1;
        }
        for &(s, e) in &blank[first_blank..] {
            let (s, e) = (clamp(s, len).max(from), clamp(e, len).min(to));
            if s >= to {
                break;
            }
            if s < e {
                gap[s - from..e - from].fill(0);
            }
        }
        prepare(&mut gap);
        push_line(&mut out, &strings(&gap));
    }
    out
}

/// Are `bytes[from..to]` (clamped to the slice) all zero?
fn zeros(bytes: &[u8], from: u64, to: u64) -> bool {
    let (from, to) = (clamp(from, bytes.len()), clamp(to, bytes.len()));
    from >= to || bytes[from..to].iter().all(|&b| b == 0)
}

fn clamp(offset: u64, len: usize) -> usize {
    usize::try_from(offset).map_or(len, |o| o.min(len))
}

fn push_line(out: &mut String, text: &str) {
    if !text.is_empty() {
        out.push_str(text);
        out.push('\n');
    }
}

/// The printable runs of `b` (text of at least four characters that are no controls, read
/// as UTF-8; invalid bytes end a run), one per line.
pub fn strings(b: &[u8]) -> String {
    let text = String::from_utf8_lossy(b);
    let mut out = String::new();
    for run in text.split(|c: char| c == '\u{fffd}' || (c.is_control() && c != '\t')) {
        if run.chars().count() >= 4 && !run.trim().is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(run);
        }
    }
    out
}

/// Walks the containers of one file within [`ArchiveLimits`] and a deadline.
pub struct Walker<'c> {
    limits: ArchiveLimits,
    deadline: Option<Instant>,
    classify: &'c dyn Fn(&[u8]) -> FileKind,
    file_len: u64,
    stats: Stats,
}

impl<'c> Walker<'c> {
    /// `classify` names the kind of every entry (containers among them are opened).
    pub fn new(
        limits: &ArchiveLimits,
        deadline: Option<Instant>,
        classify: &'c dyn Fn(&[u8]) -> FileKind,
    ) -> Walker<'c> {
        Walker {
            limits: *limits,
            deadline,
            classify,
            file_len: 0,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Walks `bytes`, the file itself (depth 0), a container of `kind`; every entry goes to
    /// `visit` (containers before they are opened). A visitor's `Break` ends the walk with
    /// `Ok(Break)`. A `kind` that is no container is given to the visitor as the one entry
    /// (path `""`, depth 0).
    ///
    /// After its entries, every container gives the visitor its own text as one
    /// [`Entry::meta`] (nothing when it has none), so that nothing it carries goes unjudged:
    /// - zip: the archive comment; the printable runs ([`strings`]) of every byte that is no
    ///   entry's data (local and central headers with their names, extra fields and comments,
    ///   bytes before, between and after the entries); the raw name and comment of an entry
    ///   where they differ from the decoded ones; the names of directories and links;
    /// - tar: the printable runs of every byte that is no entry's data, with the numeric
    ///   header fields blanked (names, link targets, owner names, the ustar prefix and header
    ///   padding, pax records, GNU long names), and the names and link targets of directories,
    ///   links and devices;
    /// - gzip: the name, comment and extra field of every member.
    pub fn walk(
        &mut self,
        bytes: &[u8],
        kind: FileKind,
        visit: &mut Visit<'_>,
    ) -> Result<ControlFlow<()>, ArchiveError> {
        self.file_len = bytes.len() as u64;
        if !is_container(kind) {
            self.stats.visited += 1;
            return Ok(visit(Entry {
                path: "",
                depth: 0,
                kind,
                bytes,
                container: false,
                meta: false,
            }));
        }
        self.open("", 0, kind, bytes, visit)
    }

    /// The text of the container at `path` to the visitor, unless it has none.
    fn meta(
        &mut self,
        path: &str,
        depth: u32,
        text: &str,
        visit: &mut Visit<'_>,
    ) -> ControlFlow<()> {
        if text.trim().is_empty() {
            return ControlFlow::Continue(());
        }
        visit(Entry {
            path,
            depth,
            kind: FileKind::Text,
            bytes: text.as_bytes(),
            container: false,
            meta: true,
        })
    }

    fn check_deadline(&self, path: &str) -> Result<(), ArchiveError> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(ArchiveError::Deadline {
                path: path.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    fn count_entries(&mut self, n: usize, path: &str) -> Result<(), ArchiveError> {
        self.stats.entries = self.stats.entries.saturating_add(n);
        if self.stats.entries > self.limits.max_entries {
            return Err(ArchiveError::Limit {
                limit: Limit::Entries,
                path: path.to_owned(),
                produced: 0,
            });
        }
        Ok(())
    }

    /// Opens a container found at `path` (depth of the container itself).
    fn open(
        &mut self,
        path: &str,
        depth: u32,
        kind: FileKind,
        bytes: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<ControlFlow<()>, ArchiveError> {
        if depth > self.limits.max_depth {
            return Err(ArchiveError::Limit {
                limit: Limit::Depth,
                path: path.to_owned(),
                produced: 0,
            });
        }
        self.stats.max_depth = self.stats.max_depth.max(depth);
        self.check_deadline(path)?;
        match kind {
            FileKind::Zip => self.zip(path, depth, bytes, visit),
            FileKind::Tar => self.tar(path, depth, bytes, visit),
            FileKind::Gzip => self.gzip(path, depth, bytes, visit),
            _ => Ok(ControlFlow::Continue(())),
        }
    }

    /// An entry at `depth`: to the visitor, then opened if it is a container.
    fn entry(
        &mut self,
        path: &str,
        depth: u32,
        bytes: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<ControlFlow<()>, ArchiveError> {
        let kind = (self.classify)(bytes);
        let container = is_container(kind);
        self.stats.visited += 1;
        let flow = visit(Entry {
            path,
            depth,
            kind,
            bytes,
            container,
            meta: false,
        });
        if flow.is_break() || !container {
            return Ok(flow);
        }
        self.open(path, depth, kind, bytes, visit)
    }

    /// Decompresses one entry from `r` within the limits. `consumed` tells how many compressed
    /// bytes the decoder has read so far (for the ratio).
    fn read_entry(
        &mut self,
        r: &mut dyn Read,
        consumed: &dyn Fn() -> u64,
        path: &str,
        kind: FileKind,
    ) -> Result<Vec<u8>, ArchiveError> {
        let remaining = self
            .limits
            .max_total_bytes
            .saturating_sub(self.stats.total_bytes);
        let overall = self
            .limits
            .max_ratio
            .saturating_mul(self.file_len)
            .max(2 * RATIO_FLOOR)
            .saturating_sub(self.stats.total_bytes);
        let cap = remaining.min(overall);
        let mut limited = r.take(cap.saturating_add(1));
        let mut buf = Vec::new();
        loop {
            self.check_deadline(path)?;
            let n = (&mut limited)
                .take(CHUNK)
                .read_to_end(&mut buf)
                .map_err(|e| ArchiveError::Malformed {
                    kind,
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            let produced = buf.len() as u64;
            let limit = if produced > remaining {
                Some(Limit::TotalBytes)
            } else if produced > RATIO_FLOOR
                && produced > self.limits.max_ratio.saturating_mul(consumed().max(1))
            {
                Some(Limit::Ratio)
            } else if produced > cap {
                Some(Limit::OverallRatio)
            } else {
                None
            };
            if let Some(limit) = limit {
                return Err(ArchiveError::Limit {
                    limit,
                    path: path.to_owned(),
                    produced,
                });
            }
            if n == 0 {
                break;
            }
        }
        let produced = buf.len() as u64;
        self.stats.total_bytes += produced;
        self.stats.largest_entry = self.stats.largest_entry.max(produced);
        Ok(buf)
    }

    fn zip_error(kind: FileKind, path: &str, e: zip::result::ZipError) -> ArchiveError {
        use zip::result::ZipError;
        match e {
            ZipError::UnsupportedArchive(m) => ArchiveError::Unreadable {
                path: path.to_owned(),
                reason: m.to_owned(),
            },
            ZipError::CompressionMethodNotSupported(m) => ArchiveError::Unreadable {
                path: path.to_owned(),
                reason: format!("compression method {m}"),
            },
            ZipError::InvalidPassword => ArchiveError::Unreadable {
                path: path.to_owned(),
                reason: "encrypted".to_owned(),
            },
            e => ArchiveError::Malformed {
                kind,
                path: path.to_owned(),
                reason: e.to_string(),
            },
        }
    }

    /// Metadata of zip entry `i` from the central directory: name, whether it is a regular
    /// file, why it cannot be read, its compressed size and where its data starts.
    fn zip_meta<R: Read + Seek>(
        za: &mut zip::ZipArchive<R>,
        i: usize,
        path: &str,
    ) -> Result<ZipMeta, ArchiveError> {
        let f = za
            .by_index_raw(i)
            .map_err(|e| Self::zip_error(FileKind::Zip, path, e))?;
        let raw_name = String::from_utf8_lossy(f.name_raw());
        let name = match f.name() {
            Ok(n) => n.into_owned(),
            Err(_) => raw_name.clone().into_owned(),
        };
        // What a reader could show besides the decoded name: the raw name where an extra field
        // replaced it, and the comment in both forms.
        let mut text = String::new();
        let raw_comment = String::from_utf8_lossy(f.comment_raw());
        for piece in [&*raw_name, f.comment(), &*raw_comment] {
            if !piece.is_empty() && piece != name && !text.lines().any(|l| l == piece) {
                text.push_str(piece);
                text.push('\n');
            }
        }
        let unreadable = if f.encrypted() {
            Some("encrypted".to_owned())
        } else if !matches!(
            f.compression(),
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            Some(format!("compression method {}", f.compression()))
        } else {
            None
        };
        Ok(ZipMeta {
            name,
            is_file: f.is_file(),
            unreadable,
            compressed: f.compressed_size(),
            deflated: f.compression() == CompressionMethod::Deflated,
            crc32: f.crc32(),
            data_start: f.data_start(),
            text,
        })
    }

    fn zip(
        &mut self,
        path: &str,
        depth: u32,
        bytes: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<ControlFlow<()>, ArchiveError> {
        let malformed = |p: &str, reason: &str| ArchiveError::Malformed {
            kind: FileKind::Zip,
            path: p.to_owned(),
            reason: reason.to_owned(),
        };
        let mut za = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| Self::zip_error(FileKind::Zip, path, e))?;
        self.count_entries(za.len(), path)?;
        // Duplicate names, local headers that disagree with the central directory, overlapping
        // entries, local headers the directory does not list (a second archive in front of
        // this one): each would let a reader see an entry or a name this walk does not.
        za.validate_header_consistency()
            .map_err(|e| Self::zip_error(FileKind::Zip, path, e))?;
        let mut text = String::new();
        push_line(&mut text, &String::from_utf8_lossy(za.comment()));
        // the entries' data, judged as their content
        let mut content: Vec<(u64, u64)> = Vec::new();
        for i in 0..za.len() {
            self.check_deadline(path)?;
            let m = Self::zip_meta(&mut za, i, path)?;
            text.push_str(&m.text);
            let child = join(path, &m.name);
            if !m.is_file {
                // A directory or link: its name is the archive's text. Data it carries
                // anyway is read as content (some readers extract it as a file).
                push_line(&mut text, &m.name);
                if m.compressed == 0 {
                    continue;
                }
            }
            if let Some(reason) = m.unreadable {
                return Err(ArchiveError::Unreadable {
                    path: child,
                    reason,
                });
            }
            let start = m
                .data_start
                .ok_or_else(|| malformed(&child, "entry data not found"))?;
            let end = start.saturating_add(m.compressed);
            let raw = usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(s, e)| bytes.get(s..e))
                .ok_or_else(|| malformed(&child, "entry runs past the end of the archive"))?;
            content.push((start, end));
            let data = if m.deflated {
                // Inflated here over exactly the entry's bytes, so that what follows the end
                // of the compressed stream inside the entry is seen (and refused).
                let (reader, used) = Tracked::new(raw);
                let mut d = flate2::bufread::DeflateDecoder::new(reader);
                let data = self.read_entry(&mut d, &|| used.get(), &child, FileKind::Zip)?;
                if used.get() != raw.len() as u64 {
                    return Err(malformed(
                        &child,
                        "bytes after the end of the compressed data",
                    ));
                }
                data
            } else {
                let n = raw.len() as u64;
                self.read_entry(&mut &raw[..], &|| n, &child, FileKind::Zip)?
            };
            let mut crc = flate2::Crc::new();
            crc.update(&data);
            if crc.sum() != m.crc32 {
                return Err(malformed(&child, "CRC-32 does not match"));
            }
            if self.entry(&child, depth + 1, &data, visit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        text.push_str(&strings_outside(
            bytes,
            &mut content,
            &mut [],
            blank_zip_signatures,
        ));
        Ok(self.meta(path, depth, &text, visit))
    }

    fn tar(
        &mut self,
        path: &str,
        depth: u32,
        bytes: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<ControlFlow<()>, ArchiveError> {
        let malformed = |p: &str, e: &dyn std::fmt::Display| ArchiveError::Malformed {
            kind: FileKind::Tar,
            path: p.to_owned(),
            reason: e.to_string(),
        };
        let mut text = String::new();
        // the entries' data, judged as their content
        let mut content: Vec<(u64, u64)> = Vec::new();
        let mut ar = tar::Archive::new(bytes);
        let entries = ar.entries().map_err(|e| malformed(path, &e))?;
        for e in entries {
            self.check_deadline(path)?;
            let mut e = e.map_err(|e| malformed(path, &e))?;
            self.count_entries(1, path)?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let child = join(path, &name);
            // pax records that change how an entry is read: a sparse map (GNU tar restores a
            // file other than the bytes stored), a size beyond the header's (larger than any
            // file the guard reads, and the raw pass below would read the entries apart)
            if let Some(pax) = e.pax_extensions().map_err(|e| malformed(&child, &e))? {
                for record in pax {
                    let key = record.map_err(|e| malformed(&child, &e))?.key_bytes();
                    if key.starts_with(b"GNU.sparse.") {
                        return Err(ArchiveError::Unreadable {
                            path: child,
                            reason: "sparse file".to_owned(),
                        });
                    }
                    if key == b"size" {
                        return Err(malformed(&child, &"pax size record"));
                    }
                }
            }
            let file = match e.header().entry_type() {
                tar::EntryType::GNUSparse => {
                    return Err(ArchiveError::Unreadable {
                        path: child,
                        reason: "sparse file".to_owned(),
                    })
                }
                // its records are the archive's text (the bytes outside the entries below)
                tar::EntryType::XGlobalHeader => continue,
                tar::EntryType::Link
                | tar::EntryType::Symlink
                | tar::EntryType::Char
                | tar::EntryType::Block
                | tar::EntryType::Directory
                | tar::EntryType::Fifo => false,
                // regular files, and types tar does not know (GNU tar extracts them as
                // regular files)
                _ => true,
            };
            if !file {
                // Directories, links, devices, FIFOs: their names and link targets are the
                // archive's text. Data they carry anyway is read as content.
                push_line(&mut text, &name);
                if let Some(link) = e.link_name_bytes() {
                    push_line(&mut text, &String::from_utf8_lossy(&link));
                }
                if e.size() == 0 {
                    continue;
                }
            }
            let start = e.raw_file_position();
            let Some(end) = start
                .checked_add(e.size())
                .filter(|&end| end <= bytes.len() as u64)
            else {
                return Err(malformed(&child, &"entry runs past the end of the archive"));
            };
            content.push((start, end));
            let data = &bytes[start as usize..end as usize];
            if self.entry(&child, depth + 1, data, visit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        // Every header, pax and GNU extension headers too, with its numeric fields blanked:
        // what remains of it is text (names, link targets, owners, prefix, padding). The
        // padding after each entry's data and everything after the last entry must be
        // zeros, as tar writes them: bytes there are read by no tool this walk imitates.
        let mut blank = Vec::new();
        let mut last = 0u64;
        let mut raw = tar::Archive::new(bytes);
        for e in raw.entries().map_err(|e| malformed(path, &e))?.raw(true) {
            let e = e.map_err(|e| malformed(path, &e))?;
            let at = e.raw_header_position();
            for (from, to) in TAR_NUMERIC {
                blank.push((at + from, at + to));
            }
            if e.header().as_gnu().is_some() {
                blank.push((at + 345, at + 495));
            }
            let data_end = e.raw_file_position().saturating_add(e.size());
            let padded = data_end.div_ceil(512).saturating_mul(512);
            if !zeros(bytes, data_end, padded) {
                return Err(malformed(path, &"bytes in the padding after an entry"));
            }
            last = last.max(padded);
        }
        if !zeros(bytes, last, bytes.len() as u64) {
            return Err(malformed(path, &"bytes after the end of the archive"));
        }
        text.push_str(&strings_outside(bytes, &mut content, &mut blank, |_| {}));
        Ok(self.meta(path, depth, &text, visit))
    }

    fn gzip(
        &mut self,
        path: &str,
        depth: u32,
        bytes: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<ControlFlow<()>, ArchiveError> {
        let consumed = Rc::new(Cell::new(0));
        let mut members = GzMembers {
            len: bytes.len(),
            current: flate2::bufread::GzDecoder::new(bytes),
            consumed: consumed.clone(),
            text: String::new(),
            members: 0,
            max_members: self.limits.max_entries.saturating_sub(self.stats.entries),
            deadline: self.deadline,
            stopped: None,
        };
        let read = self.read_entry(&mut members, &|| consumed.get(), path, FileKind::Gzip);
        self.stats.entries = self.stats.entries.saturating_add(members.members);
        if let Some(limit) = members.stopped {
            return Err(ArchiveError::Limit {
                limit,
                path: path.to_owned(),
                produced: 0,
            });
        }
        self.check_deadline(path)?;
        let data = read?;
        if self.entry(path, depth + 1, &data, visit)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
        Ok(self.meta(path, depth, &members.text, visit))
    }

    /// The parts of an office or ODF file (a zip that is a document): for every regular
    /// entry its name and its first `prefix` decompressed bytes (enough to tell its kind).
    /// The entry limit, the deadline, encryption and compression methods are checked as for
    /// archives; the parts are not opened further.
    pub fn parts(
        &mut self,
        bytes: &[u8],
        kind: FileKind,
        prefix: usize,
        visit: &mut dyn FnMut(&str, &[u8]) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, ArchiveError> {
        self.file_len = bytes.len() as u64;
        let mut za =
            zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| Self::zip_error(kind, "", e))?;
        self.count_entries(za.len(), "")?;
        za.validate_header_consistency()
            .map_err(|e| Self::zip_error(kind, "", e))?;
        let mut buf = Vec::with_capacity(prefix);
        for i in 0..za.len() {
            self.check_deadline("")?;
            let ZipMeta {
                name,
                is_file,
                unreadable,
                ..
            } = Self::zip_meta(&mut za, i, "")?;
            if !is_file {
                continue;
            }
            if let Some(reason) = unreadable {
                return Err(ArchiveError::Unreadable { path: name, reason });
            }
            buf.clear();
            let f = za
                .by_index(i)
                .map_err(|e| Self::zip_error(kind, &name, e))?;
            f.take(prefix as u64)
                .read_to_end(&mut buf)
                .map_err(|e| ArchiveError::Malformed {
                    kind,
                    path: name.clone(),
                    reason: e.to_string(),
                })?;
            self.stats.visited += 1;
            if visit(&name, &buf).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

#[cfg(test)]
#[path = "archive/tests.rs"]
mod tests;
