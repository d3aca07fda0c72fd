//! What the guard decides with: the record of a policy load (start-up and every reload).
//!
//! A [`LoadRecord`] names the loaded DLP rule set (directory, per file its SHA-256 and rule
//! count, and the set's fingerprint, which is the **policy version** decision records carry:
//! [`super::Layers::version`]), the SPIF files of the label layer (path and SHA-256) and the
//! configuration file's SHA-256. The guard logs it at start-up, after every reload that
//! swapped a new rule set in, and after every refused reload (naming the running set, which
//! stays), and hands it to a load observer (`Guard::set_load_observer`, e.g. the audit log);
//! it serialises as one JSON object.
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::manifest::Manifest;

/// Why a policy was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadEvent {
    Startup,
    Reload,
    /// A reload that was refused ([`LoadRecord::refused`] says why); the record names the
    /// running policy, which stays.
    RefusedReload,
}

impl LoadEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadEvent::Startup => "startup",
            LoadEvent::Reload => "reload",
            LoadEvent::RefusedReload => "refused_reload",
        }
    }
}

/// One input file and its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileHash {
    /// The path as configured (rule files: the file name inside the rule directory).
    pub path: String,
    /// `sha256:` and the hex SHA-256 of the bytes read; `None` when the file cannot be read.
    pub sha256: Option<String>,
    /// Rule files: the number of rule ids the file defines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<usize>,
}

impl FileHash {
    /// Hashes the file at `path` (read once, whole).
    pub fn of_file(path: &Path) -> FileHash {
        FileHash {
            path: path.display().to_string(),
            sha256: std::fs::read(path).ok().map(|b| sha256_hex(&b)),
            rules: None,
        }
    }
}

/// `sha256:` followed by the hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d: [u8; 32] = Sha256::digest(bytes).into();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The DLP rule set of a [`LoadRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSetRecord {
    pub dir: String,
    /// The set's fingerprint over file names and hashes (`grenzwacht policy check` prints it).
    pub fingerprint: String,
    pub rules: usize,
    pub files: Vec<FileHash>,
}

impl RuleSetRecord {
    pub fn new(dir: &Path, m: &Manifest) -> RuleSetRecord {
        RuleSetRecord {
            dir: dir.display().to_string(),
            fingerprint: m.fingerprint().to_string(),
            rules: m.id_count(),
            files: m
                .files()
                .map(|(name, e)| FileHash {
                    path: name.to_string(),
                    sha256: Some(format!(
                        "sha256:{}",
                        e.sha256
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    )),
                    rules: Some(e.ids.len()),
                })
                .collect(),
        }
    }
}

/// The record of one policy load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadRecord {
    pub event: LoadEvent,
    /// The policy version decisions are made under: the DLP rule set's fingerprint; `None`
    /// without `[dlp]`.
    pub policy_version: Option<String>,
    /// The configuration file; `None` when the guard was not started from a file.
    pub config: Option<FileHash>,
    pub rule_set: Option<RuleSetRecord>,
    /// The SPIF files of `[labels]`.
    pub spifs: Vec<FileHash>,
    /// Why a reload was refused (`refused`: the new set did not load; `refused_shrink`: it
    /// lacks rules or files of the running set), for [`LoadEvent::RefusedReload`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl LoadRecord {
    /// Logs the record: one line naming the policy version, config hash and input counts,
    /// and one line per input file with its hash.
    pub fn log(&self) {
        let event = self.event.as_str();
        tracing::info!(
            event,
            policy_version = self.policy_version.as_deref().unwrap_or(""),
            config = self.config.as_ref().map(|c| c.path.as_str()).unwrap_or(""),
            config_sha256 = self
                .config
                .as_ref()
                .and_then(|c| c.sha256.as_deref())
                .unwrap_or(""),
            rule_dir = self.rule_set.as_ref().map(|r| r.dir.as_str()).unwrap_or(""),
            rules = self.rule_set.as_ref().map_or(0, |r| r.rules),
            rule_files = self.rule_set.as_ref().map_or(0, |r| r.files.len()),
            spifs = self.spifs.len(),
            refused = self.refused.as_deref().unwrap_or(""),
            "{}",
            match self.event {
                LoadEvent::RefusedReload => "policy reload refused: the running policy stays",
                _ => "policy loaded",
            }
        );
        for f in self.rule_set.iter().flat_map(|r| &r.files) {
            tracing::info!(
                event,
                input = "rule_file",
                path = %f.path,
                sha256 = f.sha256.as_deref().unwrap_or("unreadable"),
                rules = f.rules.unwrap_or(0),
                "policy input"
            );
        }
        for f in &self.spifs {
            tracing::info!(
                event,
                input = "spif",
                path = %f.path,
                sha256 = f.sha256.as_deref().unwrap_or("unreadable"),
                "policy input"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_each_input_with_its_hash_and_the_version_is_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let spif = dir.path().join("s.xml");
        std::fs::write(&spif, b"<spif/>").unwrap();
        let mut m = Manifest::new();
        m.insert("a.toml", b"rules a", ["a.1", "a.2"]);
        m.insert("b.toml", b"rules b", ["b.1"]);
        let rs = RuleSetRecord::new(Path::new("/p"), &m);
        let r = LoadRecord {
            event: LoadEvent::Startup,
            policy_version: Some(m.fingerprint().to_string()),
            config: Some(FileHash::of_file(&spif)),
            rule_set: Some(rs),
            spifs: vec![
                FileHash::of_file(&spif),
                FileHash::of_file(&dir.path().join("missing.xml")),
            ],
            refused: None,
        };
        let rs = r.rule_set.as_ref().unwrap();
        assert_eq!(rs.rules, 3);
        assert_eq!(
            rs.files
                .iter()
                .map(|f| (f.path.as_str(), f.rules))
                .collect::<Vec<_>>(),
            vec![("a.toml", Some(2)), ("b.toml", Some(1))]
        );
        assert_eq!(
            rs.files[0].sha256.as_deref(),
            Some(sha256_hex(b"rules a").as_str())
        );
        assert_eq!(r.spifs[0].sha256, Some(sha256_hex(b"<spif/>")));
        assert_eq!(r.spifs[1].sha256, None, "an unreadable file has no hash");
        assert_eq!(r.policy_version.as_deref(), Some(rs.fingerprint.as_str()));
        // Changing one file's bytes changes its hash and the version.
        let mut m2 = m.clone();
        m2.insert("b.toml", b"rules B", ["b.1"]);
        assert_ne!(m2.fingerprint(), m.fingerprint());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["event"], "startup");
        assert_eq!(json["rule_set"]["files"][1]["rules"], 1);
    }
}
