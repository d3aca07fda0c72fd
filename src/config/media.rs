//! `[media]`: media downloads and thumbnails crossing the guard (`crate::media`,
//! `proxy::media`).
//!
//! ```toml
//! [media]
//! # UNSAFE: let media cross uninspected (files cross unread). Default false.
//! allow_unscanned = false
//! # largest file the guard buffers and inspects; larger ones are refused
//! max_file_bytes = 52428800
//! # a response larger than this is spilled to a temporary file while it is inspected
//! memory_threshold_bytes = 8388608
//! # where spilled responses go (default: the system's temporary directory)
//! # spill_dir = "/var/lib/grenzwacht/spill"
//! # hosts a `Location` part of a federation media answer may point to (exact, case-insensitive)
//! redirect_hosts = []
//! # media that no event seen by the guard references is refused
//! require_reference = true
//! # redact events that reference media the guard refused
//! redact_events_with_blocked_media = false
//! # per-file deadline for the content scan, milliseconds
//! scan_deadline_ms = 2000
//! # scans running at once (0: one per CPU)
//! max_concurrent_scans = 0
//! # verdict cache entries (SHA-256 + policy version + direction + destination)
//! cache_entries = 4096
//! # references of events to media are kept this long (older media is then unreferenced)
//! reference_retention_days = 365
//!
//! [media.types]
//! # file types (crate::media::FileKind names) that may cross, per direction of the data
//! outbound = ["png", "jpeg", "gif", "webp", "pdf", "text", "docx", "xlsx", "pptx", "odt", "ods", "zip"]
//! inbound = ["png", "jpeg", "gif", "webp", "pdf", "text", "docx", "xlsx", "pptx", "odt", "ods", "zip"]
//!
//! [media.archive]
//! max_depth = 3
//! max_entries = 1000
//! max_total_bytes = 104857600
//! max_ratio = 100
//! ```
use std::path::PathBuf;

use serde::Deserialize;

/// `[media]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    /// UNSAFE: let media cross without inspection (files cross unread). Default `false`.
    pub allow_unscanned: bool,
    /// Largest file the guard buffers and inspects (bytes); larger ones are refused.
    pub max_file_bytes: usize,
    /// Beyond this many bytes a response is spilled to a temporary file while inspected.
    pub memory_threshold_bytes: usize,
    /// Directory for spilled responses (default: the system's temporary directory).
    pub spill_dir: Option<PathBuf>,
    /// Hosts a `Location` part of a federation media answer may point to.
    pub redirect_hosts: Vec<String>,
    /// Media that no event seen by the guard references is refused.
    pub require_reference: bool,
    /// Redact events that reference media the guard refused.
    pub redact_events_with_blocked_media: bool,
    /// Per-file deadline for the content scan (milliseconds).
    pub scan_deadline_ms: u64,
    /// Scans running at once (0: one per CPU).
    pub max_concurrent_scans: usize,
    /// Verdict cache entries.
    pub cache_entries: usize,
    /// How long the mxc index keeps a reference (days); downloads of media whose events are
    /// older are refused as unreferenced.
    pub reference_retention_days: u64,
    /// `[media.types]`: file types allowed per direction of the data.
    pub types: MediaTypes,
    /// `[media.archive]`: limits for archives (zip, tar, gzip, nested).
    pub archive: ArchiveLimits,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            allow_unscanned: false,
            max_file_bytes: 50 * 1024 * 1024,
            memory_threshold_bytes: 8 * 1024 * 1024,
            spill_dir: None,
            redirect_hosts: Vec::new(),
            require_reference: true,
            redact_events_with_blocked_media: false,
            scan_deadline_ms: 2000,
            max_concurrent_scans: 0,
            cache_entries: 4096,
            reference_retention_days: 365,
            types: MediaTypes::default(),
            archive: ArchiveLimits::default(),
        }
    }
}

/// The file types allowed by default in both directions (`crate::media::FileKind` names).
pub const DEFAULT_TYPES: &[&str] = &[
    "png", "jpeg", "gif", "webp", "pdf", "text", "docx", "xlsx", "pptx", "odt", "ods", "zip",
];

/// `[media.types]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MediaTypes {
    /// Types that may leave the protected side.
    pub outbound: Vec<String>,
    /// Types that may enter the protected side.
    pub inbound: Vec<String>,
}

impl Default for MediaTypes {
    fn default() -> Self {
        let all: Vec<String> = DEFAULT_TYPES.iter().map(|s| s.to_string()).collect();
        MediaTypes {
            outbound: all.clone(),
            inbound: all,
        }
    }
}

/// `[media.archive]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ArchiveLimits {
    /// Archives inside archives: how deep (the file itself is depth 0).
    pub max_depth: u32,
    /// Entries in all archives of one file together.
    pub max_entries: usize,
    /// Uncompressed bytes of all entries together.
    pub max_total_bytes: u64,
    /// Largest uncompressed/compressed ratio of one entry (and of the whole file).
    pub max_ratio: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_depth: 3,
            max_entries: 1000,
            max_total_bytes: 100 * 1024 * 1024,
            max_ratio: 100,
        }
    }
}
