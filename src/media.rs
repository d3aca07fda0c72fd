//! Media inspection: every file crossing the guard is read before a byte of it reaches the
//! other side.
//!
//! The pieces, each in its own module:
//! - [`sniff`] — the file type from its bytes (magic numbers and structure), never from a
//!   declared `Content-Type` or file name;
//! - [`archive`] — zip, tar and gzip, nested, walked with limits on depth, entries, total size
//!   and compression ratio (bounded memory: a zip bomb fails fast);
//! - [`extract`] — the text of a file for the DLP rule set (text formats, office formats, PDF,
//!   image metadata);
//! - [`yara`] — YARA-X rules from `<policies>/yara/*.yar`, compiled once at load;
//! - [`inspect`] — the [`Inspector`](inspect::Inspector) that runs all of them on one file,
//!   within a deadline and a cap on concurrent scans, and gives a [`Report`];
//! - [`multipart`] — the strict `multipart/mixed` form of federation media answers;
//! - [`refs`] — `mxc://` references in events (which events a download belongs to);
//! - [`cache`] — verdicts by SHA-256, policy version, direction and destination;
//! - [`spill`] — response buffering that moves to a temporary file beyond a threshold;
//! - [`samples`] — generated files of every kind for tests and benchmarks (no live malware).
//!
//! The proxy side (which endpoints, redirects, the mxc index, decision records) is
//! `crate::proxy::media`.
use std::fmt;

use serde::Serialize;

pub use crate::config::media::{ArchiveLimits, MediaConfig, MediaTypes};
pub use crate::telemetry::Direction;

/// The compiled rules a file is judged with: the DLP engine and the YARA-X rules of one load
/// (attached to the policy stack of that load, `policy::Layers::attachment`).
#[derive(Default, Clone)]
pub struct Scanners {
    pub dlp: Option<std::sync::Arc<crate::policy::dlp::Engine>>,
    pub yara: Option<std::sync::Arc<yara::YaraRules>>,
}

/// What a file is, judged from its bytes. [`FileKind::as_str`] is the name used in
/// `[media.types]`, decision records and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Png,
    Jpeg,
    Gif,
    Webp,
    Bmp,
    Tiff,
    /// SVG (XML with an `<svg>` root): text, but it can carry scripts.
    Svg,
    Pdf,
    /// UTF-8 text (plain, CSV, Markdown, …) that is none of the structured text kinds.
    Text,
    Json,
    Xml,
    Html,
    Docx,
    Xlsx,
    Pptx,
    /// Macro-enabled office files: OOXML with `vbaProject.bin`, `vbaData.xml`, an Excel 4.0 macro
    /// sheet or a macro-enabled content type (`.docm`, `.xlsm`, `.pptm`), and OpenDocument files
    /// with Basic or script libraries.
    OfficeMacro,
    Odt,
    Ods,
    Odp,
    /// OLE compound file (legacy `.doc`, `.xls`, `.ppt`, `.msg`).
    Ole,
    Zip,
    Tar,
    Gzip,
    /// Other compression or archive formats the guard does not open (7z, rar, bzip2, xz, zstd).
    OtherArchive,
    /// Windows PE executable or DLL (`MZ`).
    Pe,
    Elf,
    MachO,
    /// A script with a `#!` line.
    Script,
    Mp4,
    Webm,
    Ogg,
    Mp3,
    Wav,
    /// Bytes the guard recognises as none of the above.
    Unknown,
}

impl FileKind {
    /// Every kind, in a stable order.
    pub const ALL: &'static [FileKind] = &[
        FileKind::Png,
        FileKind::Jpeg,
        FileKind::Gif,
        FileKind::Webp,
        FileKind::Bmp,
        FileKind::Tiff,
        FileKind::Svg,
        FileKind::Pdf,
        FileKind::Text,
        FileKind::Json,
        FileKind::Xml,
        FileKind::Html,
        FileKind::Docx,
        FileKind::Xlsx,
        FileKind::Pptx,
        FileKind::OfficeMacro,
        FileKind::Odt,
        FileKind::Ods,
        FileKind::Odp,
        FileKind::Ole,
        FileKind::Zip,
        FileKind::Tar,
        FileKind::Gzip,
        FileKind::OtherArchive,
        FileKind::Pe,
        FileKind::Elf,
        FileKind::MachO,
        FileKind::Script,
        FileKind::Mp4,
        FileKind::Webm,
        FileKind::Ogg,
        FileKind::Mp3,
        FileKind::Wav,
        FileKind::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Png => "png",
            FileKind::Jpeg => "jpeg",
            FileKind::Gif => "gif",
            FileKind::Webp => "webp",
            FileKind::Bmp => "bmp",
            FileKind::Tiff => "tiff",
            FileKind::Svg => "svg",
            FileKind::Pdf => "pdf",
            FileKind::Text => "text",
            FileKind::Json => "json",
            FileKind::Xml => "xml",
            FileKind::Html => "html",
            FileKind::Docx => "docx",
            FileKind::Xlsx => "xlsx",
            FileKind::Pptx => "pptx",
            FileKind::OfficeMacro => "office_macro",
            FileKind::Odt => "odt",
            FileKind::Ods => "ods",
            FileKind::Odp => "odp",
            FileKind::Ole => "ole",
            FileKind::Zip => "zip",
            FileKind::Tar => "tar",
            FileKind::Gzip => "gzip",
            FileKind::OtherArchive => "other_archive",
            FileKind::Pe => "pe",
            FileKind::Elf => "elf",
            FileKind::MachO => "macho",
            FileKind::Script => "script",
            FileKind::Mp4 => "mp4",
            FileKind::Webm => "webm",
            FileKind::Ogg => "ogg",
            FileKind::Mp3 => "mp3",
            FileKind::Wav => "wav",
            FileKind::Unknown => "unknown",
        }
    }

    pub fn from_name(name: &str) -> Option<FileKind> {
        FileKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a file was refused. [`MediaReason::as_str`] is a bounded metrics label and the
/// `reason` of decision records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaReason {
    /// The file (or an entry of an archive) is of a type not allowed in this direction.
    TypeNotAllowed,
    /// Larger than `max_file_bytes`.
    TooLarge,
    /// An archive limit (depth, entries, total size, ratio) was exceeded.
    ArchiveLimit,
    /// The file claims a format but does not parse as it; the guard cannot read it.
    Malformed,
    /// Encrypted or password-protected content the guard cannot read (zip, PDF, office).
    Unreadable,
    /// A DLP rule matched the file's text.
    Dlp,
    /// A YARA-X rule matched.
    Yara,
    /// The scan did not finish within `scan_deadline_ms`.
    ScanTimeout,
    /// No event seen by the guard references this media (or none that crossed).
    Unreferenced,
    /// The events referencing this media did not cross (refused, redacted, held, label).
    EventNotReleased,
    /// A `Location` redirect to a host not on `redirect_hosts`, or one that failed.
    Redirect,
    /// The media answer is not the strict `multipart/mixed` form.
    BadMultipart,
    /// An internal error while inspecting (fails closed).
    Internal,
}

impl MediaReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaReason::TypeNotAllowed => "type_not_allowed",
            MediaReason::TooLarge => "too_large",
            MediaReason::ArchiveLimit => "archive_limit",
            MediaReason::Malformed => "malformed",
            MediaReason::Unreadable => "unreadable",
            MediaReason::Dlp => "dlp",
            MediaReason::Yara => "yara",
            MediaReason::ScanTimeout => "scan_timeout",
            MediaReason::Unreferenced => "unreferenced",
            MediaReason::EventNotReleased => "event_not_released",
            MediaReason::Redirect => "redirect",
            MediaReason::BadMultipart => "bad_multipart",
            MediaReason::Internal => "internal",
        }
    }
}

impl fmt::Display for MediaReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing the inspection found (a refusal reason with the rule and where).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaFinding {
    pub reason: MediaReason,
    /// The rule that matched: `dlp:<id>` or `yara:<namespace>.<rule>`; `None` for type,
    /// size and structure findings.
    pub rule: Option<String>,
    /// Where in the file: `""` for the file itself, `a.zip/b/c.docx/word/document.xml` for an
    /// archive entry.
    pub path: String,
    /// A short human-readable reason (no file content; DLP excerpts are masked).
    pub detail: String,
}

/// The result of inspecting one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The file's type, from its bytes.
    pub kind: FileKind,
    pub size: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// Release only if empty. The first finding is the one the refusal names.
    pub findings: Vec<MediaFinding>,
    /// Files looked at, archive entries included.
    pub files: usize,
    /// Bytes of text extracted and given to the DLP rules.
    pub text_bytes: usize,
}

impl Report {
    pub fn released(&self) -> bool {
        self.findings.is_empty()
    }
}

pub mod archive;
pub mod cache;
pub mod extract;
pub mod inspect;
pub mod multipart;
pub use crate::federation::mxc as refs;
#[doc(hidden)]
pub mod samples;
pub mod sniff;
pub mod spill;
pub mod yara;
