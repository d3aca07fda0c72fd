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
}

/// What a walk has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Zip and tar entries (directories included).
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
            }));
        }
        self.open("", 0, kind, bytes, visit)
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
    /// file, and why it cannot be read.
    fn zip_meta<R: Read + Seek>(
        za: &mut zip::ZipArchive<R>,
        i: usize,
        path: &str,
    ) -> Result<(String, bool, Option<String>, u64), ArchiveError> {
        let f = za
            .by_index_raw(i)
            .map_err(|e| Self::zip_error(FileKind::Zip, path, e))?;
        let name = match f.name() {
            Ok(n) => n.into_owned(),
            Err(_) => String::from_utf8_lossy(f.name_raw()).into_owned(),
        };
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
        Ok((name, f.is_file(), unreadable, f.compressed_size()))
    }

    fn zip(
        &mut self,
        path: &str,
        depth: u32,
        bytes: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<ControlFlow<()>, ArchiveError> {
        let (reader, pos) = Tracked::new(bytes);
        let mut za =
            zip::ZipArchive::new(reader).map_err(|e| Self::zip_error(FileKind::Zip, path, e))?;
        self.count_entries(za.len(), path)?;
        for i in 0..za.len() {
            self.check_deadline(path)?;
            let (name, is_file, unreadable, declared) = Self::zip_meta(&mut za, i, path)?;
            let child = join(path, &name);
            if !is_file {
                continue;
            }
            if let Some(reason) = unreadable {
                return Err(ArchiveError::Unreadable {
                    path: child,
                    reason,
                });
            }
            let data = {
                let mut f = za
                    .by_index(i)
                    .map_err(|e| Self::zip_error(FileKind::Zip, &child, e))?;
                let start = pos.get();
                self.read_entry(
                    &mut f,
                    &|| pos.get().saturating_sub(start).min(declared),
                    &child,
                    FileKind::Zip,
                )?
            };
            if self.entry(&child, depth + 1, &data, visit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
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
        let mut ar = tar::Archive::new(bytes);
        let entries = ar.entries().map_err(|e| malformed(path, &e))?;
        for e in entries {
            self.check_deadline(path)?;
            let e = e.map_err(|e| malformed(path, &e))?;
            self.count_entries(1, path)?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let child = join(path, &name);
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::GNUSparse => {
                    return Err(ArchiveError::Unreadable {
                        path: child,
                        reason: "sparse file".to_owned(),
                    })
                }
                // Directories, links, devices, FIFOs: no content of their own.
                _ => continue,
            }
            let start = e.raw_file_position();
            let Some(end) = start
                .checked_add(e.size())
                .filter(|&end| end <= bytes.len() as u64)
            else {
                return Err(malformed(&child, &"entry runs past the end of the archive"));
            };
            let data = &bytes[start as usize..end as usize];
            if self.entry(&child, depth + 1, data, visit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn gzip(
        &mut self,
        path: &str,
        depth: u32,
        bytes: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<ControlFlow<()>, ArchiveError> {
        let (reader, pos) = Tracked::new(bytes);
        let mut d = flate2::read::MultiGzDecoder::new(reader);
        let data = self.read_entry(&mut d, &|| pos.get(), path, FileKind::Gzip)?;
        self.entry(path, depth + 1, &data, visit)
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
        let mut buf = Vec::with_capacity(prefix);
        for i in 0..za.len() {
            self.check_deadline("")?;
            let (name, is_file, unreadable, _) = Self::zip_meta(&mut za, i, "")?;
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
