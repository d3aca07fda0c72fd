//! Policy inputs manifest: what a loaded policy input is made of, and what a new version of it
//! would lose.
//!
//! A policy input is a directory of files that each define named things (DLP rule files define
//! rule ids; SPIFs, YARA rule files or a labels config fit the same shape). The pieces:
//!
//! * [`Snapshot::read_dir`] reads every matching file of a directory once. What is parsed is
//!   exactly what was read and hashed, so a file that changes while it is being loaded cannot
//!   mix two versions.
//! * [`Manifest`]: per file its SHA-256 and the ids it defines; [`Manifest::fingerprint`]
//!   identifies the whole set (the same value [`Snapshot::fingerprint`] gives for the files
//!   it was built from).
//! * [`Manifest::loss_from`]: the files and ids of the running set that a new set no longer
//!   has, the files of the new set that define nothing, and the files that are their running
//!   version cut off at the end. A reload that loses something is
//!   refused unless the operator confirms it (see `proxy::guard`).
//! * [`Settle`]: a polling watcher acts on a directory state only once it has been seen
//!   unchanged in consecutive polls, so a file that is still being written is never loaded.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A SHA-256 identifying a set of files (names and contents).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The first 48 bits as a number: exact in an `f64`, for a metrics gauge that lets an
    /// operator compare the running set with `grenzwacht policy check`.
    pub fn gauge_value(&self) -> f64 {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&self.0[..6]);
        u64::from_be_bytes(b) as f64
    }
    /// The first 12 hex digits (the same 48 bits as [`Fingerprint::gauge_value`]).
    pub fn short(&self) -> String {
        hex(&self.0[..6])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The fingerprint of `(file name, file hash)` pairs, sorted by name.
fn fingerprint_of<'a>(files: impl Iterator<Item = (&'a str, [u8; 32])>) -> Fingerprint {
    let mut h = Sha256::new();
    for (name, digest) in files {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(digest);
    }
    Fingerprint(h.finalize().into())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// One file of a [`Snapshot`].
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// The file name inside the directory.
    pub name: String,
    pub path: PathBuf,
    /// The bytes read, or why the file could not be read.
    pub content: Result<Vec<u8>, String>,
}

/// Every matching file of a directory, read once, sorted by name.
#[derive(Debug, Clone)]
pub struct Snapshot {
    files: Vec<SnapshotFile>,
}

impl Snapshot {
    /// Reads every regular file (symlinks followed) of `dir` whose name ends in `.{ext}`.
    /// Files that cannot be read are kept with their error, so the loader reports them.
    pub fn read_dir(dir: &Path, ext: &str) -> std::io::Result<Snapshot> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|x| x != ext) || !path.is_file() {
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let content = std::fs::read(&path).map_err(|e| e.to_string());
            files.push(SnapshotFile {
                name,
                path,
                content,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Snapshot { files })
    }

    /// A snapshot of in-memory files `(name, content)` (tests, other sources).
    pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Snapshot {
        let mut files: Vec<SnapshotFile> = files
            .into_iter()
            .map(|(n, c)| SnapshotFile {
                name: n.to_owned(),
                path: PathBuf::from(n),
                content: Ok(c.to_vec()),
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Snapshot { files }
    }

    pub fn files(&self) -> &[SnapshotFile] {
        &self.files
    }

    /// This snapshot and the files of `other` under the names `{prefix}{name}` (a
    /// subdirectory read on its own), sorted by name: its fingerprint is that of a manifest
    /// holding both (see [`Manifest::extend`]).
    pub fn merged(&self, prefix: &str, other: &Snapshot) -> Snapshot {
        let mut files = self.files.clone();
        files.extend(other.files.iter().map(|f| SnapshotFile {
            name: format!("{prefix}{}", f.name),
            ..f.clone()
        }));
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Snapshot { files }
    }

    /// Names and contents of every file; equal to the [`Manifest::fingerprint`] of a manifest
    /// built from this snapshot. An unreadable file contributes its error, so a change between
    /// readable and unreadable is a change.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of(self.files.iter().map(|f| {
            let d = match &f.content {
                Ok(c) => sha256(c),
                Err(e) => sha256(format!("\0unreadable\0{e}").as_bytes()),
            };
            (f.name.as_str(), d)
        }))
    }
}

/// One file of a [`Manifest`].
#[derive(Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub sha256: [u8; 32],
    pub ids: BTreeSet<String>,
    /// The bytes that were parsed (to recognise a file that was cut off).
    content: std::sync::Arc<[u8]>,
}

impl fmt::Debug for ManifestEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestEntry")
            .field("sha256", &hex(&self.sha256[..6]))
            .field("ids", &self.ids)
            .field("len", &self.content.len())
            .finish()
    }
}

/// What a loaded policy input consists of: per file name its content hash and the ids it defines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    files: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file with the bytes that were parsed and the ids they define.
    pub fn insert<I, S>(&mut self, name: &str, content: &[u8], ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ids = ids.into_iter().map(Into::into).collect();
        self.files.insert(
            name.to_owned(),
            ManifestEntry {
                sha256: sha256(content),
                ids,
                content: content.into(),
            },
        );
    }

    /// Adds every file of `other` (a policy input read alongside, e.g. the YARA rule files
    /// named `yara/<file>`); a file of the same name is replaced.
    pub fn extend(&mut self, other: Manifest) {
        self.files.extend(other.files);
    }

    pub fn files(&self) -> impl Iterator<Item = (&str, &ManifestEntry)> {
        self.files.iter().map(|(n, e)| (n.as_str(), e))
    }
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
    /// The number of ids over all files.
    pub fn id_count(&self) -> usize {
        self.files.values().map(|e| e.ids.len()).sum()
    }

    /// Identifies the set (file names and contents).
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of(self.files.iter().map(|(n, e)| (n.as_str(), e.sha256)))
    }

    /// What this (new) set loses against `running`: files and ids the running set has and
    /// this one does not (an id that moved to another file is not lost), files of this set
    /// without ids, and files that are a shorter prefix of their running version (cut off at
    /// the end: a truncation, even where every id survived).
    pub fn loss_from(&self, running: &Manifest) -> Loss {
        let ids: BTreeSet<&str> = self
            .files
            .values()
            .flat_map(|e| e.ids.iter().map(String::as_str))
            .collect();
        Loss {
            files: running
                .files
                .keys()
                .filter(|n| !self.files.contains_key(*n))
                .cloned()
                .collect(),
            ids: running
                .files
                .values()
                .flat_map(|e| e.ids.iter())
                .filter(|id| !ids.contains(id.as_str()))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            empty_files: self
                .files
                .iter()
                .filter(|(_, e)| e.ids.is_empty())
                .map(|(n, _)| n.clone())
                .collect(),
            truncated_files: self
                .files
                .iter()
                .filter(|(n, e)| {
                    running.files.get(*n).is_some_and(|r| {
                        e.content.len() < r.content.len() && r.content.starts_with(&e.content)
                    })
                })
                .map(|(n, _)| n.clone())
                .collect(),
        }
    }
}

/// What a new set loses against the running one ([`Manifest::loss_from`]). All lists sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loss {
    /// Files of the running set missing from the new one.
    pub files: Vec<String>,
    /// Ids of the running set defined nowhere in the new one.
    pub ids: Vec<String>,
    /// Files of the new set that define no ids.
    pub empty_files: Vec<String>,
    /// Files of the new set that are a shorter prefix of their running version.
    pub truncated_files: Vec<String>,
}

impl Loss {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.ids.is_empty()
            && self.empty_files.is_empty()
            && self.truncated_files.is_empty()
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.files.is_empty() {
            parts.push(format!("missing files: {}", self.files.join(", ")));
        }
        if !self.ids.is_empty() {
            parts.push(format!("missing ids: {}", self.ids.join(", ")));
        }
        if !self.empty_files.is_empty() {
            parts.push(format!(
                "files without ids: {}",
                self.empty_files.join(", ")
            ));
        }
        if !self.truncated_files.is_empty() {
            parts.push(format!(
                "files cut off: {}",
                self.truncated_files.join(", ")
            ));
        }
        if parts.is_empty() {
            f.write_str("nothing lost")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// Settle time for a polling watcher: an observation is acted on once it has been seen in
/// `need` consecutive polls and differs from the last one acted on.
#[derive(Debug, Clone)]
pub struct Settle<T> {
    need: u32,
    last: Option<T>,
    seen: u32,
    acted: T,
}

impl<T: PartialEq + Clone> Settle<T> {
    /// `acted`: the state already in force (nothing to do while it is observed).
    /// `need`: consecutive equal polls before acting (at least 1).
    pub fn new(acted: T, need: u32) -> Self {
        Settle {
            need: need.max(1),
            last: None,
            seen: 0,
            acted,
        }
    }

    /// Feeds one poll; returns the observation when it is now to be acted on (once per
    /// settled state).
    pub fn observe(&mut self, obs: T) -> Option<T> {
        if self.last.as_ref() == Some(&obs) {
            self.seen = self.seen.saturating_add(1);
        } else {
            self.last = Some(obs.clone());
            self.seen = 1;
        }
        if self.seen >= self.need && obs != self.acted {
            self.acted = obs.clone();
            Some(obs)
        } else {
            None
        }
    }

    /// Records a state that was put in force outside the watcher (for example by a signal).
    pub fn acted(&mut self, state: T) {
        self.acted = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(files: &[(&str, &str, &[&str])]) -> Manifest {
        let mut m = Manifest::new();
        for (name, content, ids) in files {
            m.insert(name, content.as_bytes(), ids.iter().copied());
        }
        m
    }

    #[test]
    fn loss_names_missing_files_ids_and_empty_files() {
        let running = m(&[("a.toml", "A", &["a.1", "a.2"]), ("b.toml", "B", &["b.1"])]);
        assert!(running.loss_from(&running).is_empty());
        // More is never a loss.
        let bigger = m(&[
            ("a.toml", "A2", &["a.1", "a.2", "a.3"]),
            ("b.toml", "B", &["b.1"]),
            ("c.toml", "C", &["c.1"]),
        ]);
        assert!(
            bigger.loss_from(&running).is_empty(),
            "{}",
            bigger.loss_from(&running)
        );
        // An edited file that lost an id.
        let edited = m(&[("a.toml", "A-", &["a.1"]), ("b.toml", "B", &["b.1"])]);
        let l = edited.loss_from(&running);
        assert_eq!(
            (l.files.clone(), l.ids.clone(), l.empty_files.clone()),
            (vec![], vec!["a.2".to_string()], vec![])
        );
        assert!(l.truncated_files.is_empty());
        assert_eq!(l.to_string(), "missing ids: a.2");
        // A file cut off at the end: a loss even where every id survived (a rule's last keys).
        let long = m(&[("a.toml", "[[rule]] id=a.1 validator=iban", &["a.1"])]);
        let cut = m(&[("a.toml", "[[rule]] id=a.1", &["a.1"])]);
        let l = cut.loss_from(&long);
        assert_eq!(
            (l.ids.clone(), l.truncated_files.clone()),
            (vec![], vec!["a.toml".to_string()])
        );
        assert_eq!(l.to_string(), "files cut off: a.toml");
        // Appending, or a same-length edit, is no truncation.
        assert!(long.loss_from(&cut).is_empty());
        assert!(m(&[("a.toml", "[[rule]] id=a.1 validator=luhn", &["a.1"])])
            .loss_from(&long)
            .is_empty());
        // An emptied file: all its ids gone, and it defines nothing.
        let emptied = m(&[("a.toml", "", &[]), ("b.toml", "B", &["b.1"])]);
        let l = emptied.loss_from(&running);
        assert_eq!(l.ids, vec!["a.1", "a.2"]);
        assert_eq!(l.empty_files, vec!["a.toml"]);
        assert!(l.files.is_empty());
        // A deleted file.
        let deleted = m(&[("b.toml", "B", &["b.1"])]);
        let l = deleted.loss_from(&running);
        assert_eq!(
            (l.files.clone(), l.ids.clone()),
            (
                vec!["a.toml".to_string()],
                vec!["a.1".to_string(), "a.2".to_string()]
            )
        );
        assert_eq!(
            l.to_string(),
            "missing files: a.toml; missing ids: a.1, a.2"
        );
        // An id that moved to another file is not lost; the file that is gone is.
        let moved = m(&[("b.toml", "B+", &["b.1", "a.1", "a.2"])]);
        let l = moved.loss_from(&running);
        assert_eq!((l.files, l.ids), (vec!["a.toml".to_string()], vec![]));
        // An empty file next to a complete set is still reported.
        let extra_empty = m(&[
            ("a.toml", "A", &["a.1", "a.2"]),
            ("b.toml", "B", &["b.1"]),
            ("z.toml", "# c", &[]),
        ]);
        assert_eq!(extra_empty.loss_from(&running).empty_files, vec!["z.toml"]);
    }

    #[test]
    fn fingerprints_follow_names_and_contents_and_agree_with_snapshots() {
        let a = m(&[("a.toml", "A", &["x"]), ("b.toml", "B", &["y"])]);
        let snap = Snapshot::from_files([("b.toml", &b"B"[..]), ("a.toml", &b"A"[..])]);
        assert_eq!(
            a.fingerprint(),
            snap.fingerprint(),
            "manifest and snapshot of the same files agree"
        );
        let renamed = m(&[("a2.toml", "A", &["x"]), ("b.toml", "B", &["y"])]);
        let changed = m(&[("a.toml", "A.", &["x"]), ("b.toml", "B", &["y"])]);
        // Moving bytes between name and content must not collide.
        let shifted = m(&[("a.tomlA", "", &["x"]), ("b.toml", "B", &["y"])]);
        let fps = [
            a.fingerprint(),
            renamed.fingerprint(),
            changed.fingerprint(),
            shifted.fingerprint(),
        ];
        for i in 0..fps.len() {
            for j in i + 1..fps.len() {
                assert_ne!(fps[i], fps[j], "{i} vs {j}");
            }
        }
        // Ids do not enter the fingerprint (they follow from the contents).
        assert_eq!(
            a.fingerprint(),
            m(&[("a.toml", "A", &[]), ("b.toml", "B", &["y"])]).fingerprint()
        );
        let fp = a.fingerprint();
        assert_eq!(fp.to_string().len(), "sha256:".len() + 64);
        assert_eq!(format!("{:012x}", fp.gauge_value() as u64), fp.short());
    }

    #[test]
    fn a_merged_snapshot_and_an_extended_manifest_agree() {
        let toml = Snapshot::from_files([("a.toml", &b"A"[..]), ("z.toml", &b"Z"[..])]);
        let sub = Snapshot::from_files([("x.yar", &b"X"[..])]);
        let merged = toml.merged("yara/", &sub);
        let names: Vec<_> = merged.files().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["a.toml", "yara/x.yar", "z.toml"]);
        let mut m = m(&[("a.toml", "A", &["a"]), ("z.toml", "Z", &["z"])]);
        assert_eq!(m.fingerprint(), toml.fingerprint());
        let mut y = Manifest::new();
        y.insert("yara/x.yar", b"X", ["yara:x.r"]);
        m.extend(y);
        assert_eq!(m.fingerprint(), merged.fingerprint());
        assert_ne!(m.fingerprint(), toml.fingerprint());
        assert_eq!((m.file_count(), m.id_count()), (3, 3));
    }

    #[test]
    fn snapshot_reads_matching_files_once_and_sees_unreadable_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.toml"), "B").unwrap();
        std::fs::write(dir.path().join("a.toml"), "A").unwrap();
        std::fs::write(dir.path().join(".a.toml.tmp"), "half").unwrap();
        std::fs::create_dir(dir.path().join("d.toml")).unwrap();
        let s = Snapshot::read_dir(dir.path(), "toml").unwrap();
        let names: Vec<_> = s.files().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["a.toml", "b.toml"]);
        assert_eq!(s.files()[0].content.as_deref().unwrap(), b"A");
        let fp = s.fingerprint();
        std::fs::write(dir.path().join("a.toml"), "A2").unwrap();
        assert_ne!(
            Snapshot::read_dir(dir.path(), "toml")
                .unwrap()
                .fingerprint(),
            fp
        );
        assert!(Snapshot::read_dir(&dir.path().join("missing"), "toml").is_err());
    }

    #[test]
    fn settle_acts_once_per_state_after_consecutive_equal_polls() {
        let mut s = Settle::new(0, 2);
        // The running state is never acted on.
        assert_eq!(s.observe(0), None);
        assert_eq!(s.observe(0), None);
        // A file being written: every poll differs, nothing is loaded.
        assert_eq!(s.observe(1), None);
        assert_eq!(s.observe(2), None);
        assert_eq!(s.observe(3), None);
        // Stable for two polls: act once.
        assert_eq!(s.observe(3), Some(3));
        assert_eq!(s.observe(3), None);
        assert_eq!(s.observe(3), None);
        // Back to the old state: that is a change too, after settling.
        assert_eq!(s.observe(0), None);
        assert_eq!(s.observe(0), Some(0));
        // A flicker (A, B, A) restarts the count.
        assert_eq!(s.observe(4), None);
        assert_eq!(s.observe(5), None);
        assert_eq!(s.observe(4), None);
        assert_eq!(s.observe(4), Some(4));
        // A state put in force elsewhere (a signal) is not acted on again.
        s.acted(7);
        assert_eq!(s.observe(7), None);
        assert_eq!(s.observe(7), None);
        // need = 3
        let mut s = Settle::new("a", 3);
        assert_eq!(
            (s.observe("b"), s.observe("b"), s.observe("b")),
            (None, None, Some("b"))
        );
        // need = 0 behaves as 1
        let mut s = Settle::new(0, 0);
        assert_eq!(s.observe(1), Some(1));
    }
}
