//! `[labels]`: security labels on federation traffic (the decision is
//! `policy::labels`).
//!
//! ```toml
//! [labels]
//! spifs = ["spif/deu-vs.xml", "spif/nato.xml"]
//! # event_key = "de.grenzwacht.label"            # content key of an event's label
//! # room_label_type = "de.grenzwacht.room_label" # state event type of a room's label
//! # on_deny = "redact"                            # or "hold"
//! # on_mismatch = "hold"                          # or "redact"; body marking above the label
//! # encrypted_without_label = "deny"              # or "default" (room label / side default)
//! # marking_check = true                          # label/content consistency (body markings)
//! # marking_detector = "spif"                     # or "dlp" (DLP rules with `classification`), "both"
//!
//! [[labels.marking]]                              # per SPIF: which of its words count as a
//! policy = "1.3.26.1.3.1"                         # body marking: "all" (default), "qualified"
//! words = "qualified"                             # ("NATO CONFIDENTIAL", not "CONFIDENTIAL"), "off"
//!
//! [labels.protected]                              # the side behind the guard
//! policy = "1.3.6.1.4.1.99999.1.1"
//! default_label = { policy = "1.3.6.1.4.1.99999.1.1", classification = 2 }
//! clearance = { policy = "1.3.6.1.4.1.99999.1.1", classifications = [1, 2, 3, 4] }
//!
//! [labels.remote]                                 # every other server
//! policy = "1.3.26.1.3.1"
//! default_label_file = "labels/remote-default.xml"  # any label format `grenzwacht label` reads
//! clearance_file = "labels/remote-clearance.json"
//!
//! [[labels.peer]]                                 # a server's own clearance
//! server = "partner.example"
//! clearance = { policy = "1.3.26.1.3.1", classifications = [1, 2], categories = [
//!   { tag_set = "1.3.26.1.4.2", type = "enumeratedPermissive", lacv = 276 } ] }
//! ```
//!
//! Labels and clearances are given inline in the JSON form of `crate::spif` (as TOML tables)
//! or as a file (`*_file`: STANAG 4774 XML, spiffing XML or JSON for labels; spiffing XML or
//! JSON for clearances). Exactly one of the two per item. Parsing here checks the shape (keys,
//! OIDs, JSON form); loading the SPIFs and checking every label and clearance against them
//! happens when the guard is built (`policy::labels::LabelPolicy::from_config`, also run by
//! `grenzwacht check`), with diagnostics that name the key.
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default content key of an event's label.
pub const DEFAULT_EVENT_KEY: &str = "de.grenzwacht.label";
/// Default state event type of a room's label.
pub const DEFAULT_ROOM_LABEL_TYPE: &str = "de.grenzwacht.room_label";

/// What a denied event gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelAction {
    /// Redact in transit (EDUs and to-device messages: dropped).
    #[default]
    Redact,
    /// Hold for review (`proxy::hold`).
    Hold,
}

/// Encrypted events (`m.room.encrypted`, encrypted to-device messages) without a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncryptedWithoutLabel {
    /// Denied (default): only a cleartext label can release ciphertext.
    #[default]
    Deny,
    /// Judged by the room label, else the side default, like cleartext.
    Default,
}

/// `[labels]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LabelsConfig {
    /// SPIF files (Open XML SPIF); a label's policy OID selects its SPIF.
    pub spifs: Vec<PathBuf>,
    /// Content key of an event's label (and of the room label in the room label event).
    #[serde(default = "default_event_key")]
    pub event_key: String,
    /// State event type (state key `""`) that carries a room's label.
    #[serde(default = "default_room_label_type")]
    pub room_label_type: String,
    /// Action for an event that may not be released (invalid label, no clearance, …).
    #[serde(default)]
    pub on_deny: LabelAction,
    /// Action for a body marked above its label (default hold).
    #[serde(default = "default_hold")]
    pub on_mismatch: LabelAction,
    /// Encrypted traffic without a cleartext label.
    #[serde(default)]
    pub encrypted_without_label: EncryptedWithoutLabel,
    /// Check bodies for classification markings above the label (default true).
    #[serde(default = "default_true")]
    pub marking_check: bool,
    /// `[labels.protected]`: the protected side.
    pub protected: SideConfig,
    /// `[labels.remote]`: the remote side.
    pub remote: SideConfig,
    /// `[[labels.peer]]`: clearances of single servers.
    #[serde(default)]
    pub peer: Vec<PeerConfig>,
    /// `[[labels.marking]]`: how each SPIF's words count as body markings (default: every
    /// SPIF `all`).
    #[serde(default)]
    pub marking: Vec<MarkingConfig>,
    /// What finds the markings of `marking_check` (default: the SPIFs' phrases).
    #[serde(default)]
    pub marking_detector: MarkingDetectorKind,
}

/// `labels.marking_detector`: what reads classification markings in message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkingDetectorKind {
    /// The loaded SPIFs' classification names and marking phrases in `body` and
    /// `formatted_body` (`[[labels.marking]]` tunes them per SPIF).
    #[default]
    Spif,
    /// The DLP rules that carry a `classification` (`policy::dlp::markings`), on every text
    /// field the DLP layer scans; needs `[dlp]`.
    Dlp,
    /// Both; the highest finding counts.
    Both,
}

impl MarkingDetectorKind {
    /// The SPIF phrase scan is on.
    pub fn uses_spif(self) -> bool {
        matches!(self, MarkingDetectorKind::Spif | MarkingDetectorKind::Both)
    }
    /// The DLP marking rules are on.
    pub fn uses_dlp(self) -> bool {
        matches!(self, MarkingDetectorKind::Dlp | MarkingDetectorKind::Both)
    }
}

/// Which words of a SPIF count as a classification marking in a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkingWords {
    /// Classification names and marking phrases, as whole words in capitals (default).
    #[default]
    All,
    /// Only what reads as a marking of this policy: its marking phrases other than a bare
    /// classification name, and a classification name right after the policy's name
    /// (`NATO CONFIDENTIAL`); a bare `CONFIDENTIAL` does not count. For a SPIF whose names
    /// are ordinary words of the deployment's other language (an English footer in a German
    /// deployment).
    Qualified,
    /// This SPIF's words do not count at all.
    Off,
}

/// `[[labels.marking]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkingConfig {
    /// The SPIF's policy OID.
    pub policy: String,
    pub words: MarkingWords,
}

fn default_event_key() -> String {
    DEFAULT_EVENT_KEY.to_owned()
}
fn default_room_label_type() -> String {
    DEFAULT_ROOM_LABEL_TYPE.to_owned()
}
fn default_hold() -> LabelAction {
    LabelAction::Hold
}
fn default_true() -> bool {
    true
}

/// `[labels.protected]` / `[labels.remote]`: one side of the guard.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SideConfig {
    /// The side's security policy OID: labels are translated into it on the way to this side.
    pub policy: String,
    /// Label of unlabeled events in unlabeled rooms that come from this side (JSON form).
    #[serde(default)]
    pub default_label: Option<serde_json::Value>,
    /// … or read from a file.
    #[serde(default)]
    pub default_label_file: Option<PathBuf>,
    /// Clearance of this side's servers unless a `[[labels.peer]]` names them (JSON form).
    #[serde(default)]
    pub clearance: Option<serde_json::Value>,
    /// … or read from a file.
    #[serde(default)]
    pub clearance_file: Option<PathBuf>,
}

/// `[[labels.peer]]`: the clearance of one server (remote or protected).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PeerConfig {
    /// Server name, compared case-insensitively.
    pub server: String,
    /// Clearance (JSON form) …
    #[serde(default)]
    pub clearance: Option<serde_json::Value>,
    /// … or a file.
    #[serde(default)]
    pub clearance_file: Option<PathBuf>,
}

/// One step of a key path inside `[labels]` (for error positions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(&'static str),
    Index(usize),
}

/// A shape error inside `[labels]`: the key path below `labels` and the message.
pub type ShapeError = (Vec<PathStep>, String);

impl LabelsConfig {
    /// Checks that need no files: OIDs, exactly one of inline/file per item, inline labels and
    /// clearances in the JSON form, unique peers, non-empty keys. Paths are below `labels`.
    pub fn check(&self) -> Vec<ShapeError> {
        use PathStep::{Index, Key};
        let mut out: Vec<ShapeError> = Vec::new();
        if self.spifs.is_empty() {
            out.push((
                vec![Key("spifs")],
                "`labels.spifs` must name at least one SPIF file".into(),
            ));
        }
        if self.event_key.trim().is_empty() {
            out.push((
                vec![Key("event_key")],
                "`labels.event_key` must not be empty".into(),
            ));
        }
        if self.room_label_type.trim().is_empty() {
            out.push((
                vec![Key("room_label_type")],
                "`labels.room_label_type` must not be empty".into(),
            ));
        }
        for (name, side) in [("protected", &self.protected), ("remote", &self.remote)] {
            let at = |k: &'static str| vec![Key(name), Key(k)];
            if crate::spif::Oid::parse(&side.policy).is_none() {
                out.push((
                    at("policy"),
                    format!(
                        "invalid value for `labels.{name}.policy`: `{}` is not an OID",
                        side.policy
                    ),
                ));
            }
            match (&side.default_label, &side.default_label_file) {
                (Some(_), Some(_)) => out.push((at("default_label_file"), format!("set only one of `labels.{name}.default_label` and `labels.{name}.default_label_file`"))),
                (None, None) => out.push((vec![Key(name)], format!("`labels.{name}` needs `default_label` or `default_label_file`"))),
                (Some(v), None) => {
                    if let Err(e) = crate::spif::Label::from_json(v) {
                        out.push((at("default_label"), format!("invalid value for `labels.{name}.default_label`: {e}")));
                    }
                }
                _ => {}
            }
            match (&side.clearance, &side.clearance_file) {
                (Some(_), Some(_)) => out.push((at("clearance_file"), format!("set only one of `labels.{name}.clearance` and `labels.{name}.clearance_file`"))),
                (None, None) => out.push((vec![Key(name)], format!("`labels.{name}` needs `clearance` or `clearance_file`"))),
                (Some(v), None) => {
                    if let Err(e) = crate::spif::Clearance::from_json(v) {
                        out.push((at("clearance"), format!("invalid value for `labels.{name}.clearance`: {e}")));
                    }
                }
                _ => {}
            }
        }
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, p) in self.peer.iter().enumerate() {
            let at = |k: &'static str| vec![Key("peer"), Index(i), Key(k)];
            if let Err(e) = crate::federation::server_name::ServerName::parse(&p.server) {
                out.push((
                    at("server"),
                    format!("invalid value for `labels.peer[{i}].server`: {e}"),
                ));
            }
            if let Some(first) = seen.insert(p.server.to_ascii_lowercase(), i) {
                out.push((
                    at("server"),
                    format!(
                        "duplicate peer `{}` (also in `labels.peer[{first}]`)",
                        p.server
                    ),
                ));
            }
            match (&p.clearance, &p.clearance_file) {
                (Some(_), Some(_)) => out.push((at("clearance_file"), format!("set only one of `labels.peer[{i}].clearance` and `labels.peer[{i}].clearance_file`"))),
                (None, None) => out.push((vec![Key("peer"), Index(i)], format!("`labels.peer[{i}]` needs `clearance` or `clearance_file`"))),
                (Some(v), None) => {
                    if let Err(e) = crate::spif::Clearance::from_json(v) {
                        out.push((at("clearance"), format!("invalid value for `labels.peer[{i}].clearance`: {e}")));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Resolves relative file paths against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.spifs.iter_mut().for_each(fix);
        for side in [&mut self.protected, &mut self.remote] {
            side.default_label_file.as_mut().map(fix);
            side.clearance_file.as_mut().map(fix);
        }
        for p in &mut self.peer {
            p.clearance_file.as_mut().map(fix);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const DEU: &str = "1.3.6.1.4.1.99999.1.1";

    fn cfg(labels: &str) -> Result<Config, crate::config::ConfigErrors> {
        Config::from_str(
            &format!("[store]\npath = \"/tmp/x.db\"\n{labels}"),
            "/etc/gw/gw.toml",
        )
    }

    #[test]
    fn full_section_parses_with_defaults_and_resolved_paths() {
        let c = cfg(&format!(
            r#"
[labels]
spifs = ["spif/deu-vs.xml"]
[labels.protected]
policy = "{DEU}"
default_label = {{ policy = "{DEU}", classification = 2 }}
clearance = {{ policy = "{DEU}", classifications = [1, 2, 3] }}
[labels.remote]
policy = "{DEU}"
default_label_file = "l.xml"
clearance_file = "/abs/c.json"
[[labels.peer]]
server = "hs2.example"
clearance = {{ policy = "{DEU}", classifications = [1], categories = [{{ tag_set = "{DEU}.1", type = "permissive", lacv = 276 }}] }}
"#
        ))
        .unwrap();
        let l = c.labels.expect("labels");
        assert_eq!(l.event_key, super::DEFAULT_EVENT_KEY);
        assert_eq!(l.room_label_type, super::DEFAULT_ROOM_LABEL_TYPE);
        assert_eq!(l.on_deny, super::LabelAction::Redact);
        assert_eq!(l.on_mismatch, super::LabelAction::Hold);
        assert_eq!(
            l.encrypted_without_label,
            super::EncryptedWithoutLabel::Deny
        );
        assert!(l.marking_check);
        assert_eq!(l.spifs[0], std::path::Path::new("/etc/gw/spif/deu-vs.xml"));
        assert_eq!(
            l.remote.default_label_file.as_deref(),
            Some(std::path::Path::new("/etc/gw/l.xml"))
        );
        assert_eq!(
            l.remote.clearance_file.as_deref(),
            Some(std::path::Path::new("/abs/c.json"))
        );
        assert_eq!(l.peer.len(), 1);
        assert!(cfg("").unwrap().labels.is_none(), "no section: no labels");
    }

    #[test]
    fn marking_detector_defaults_to_spif_and_dlp_needs_the_rule_set() {
        let section = |extra: &str| {
            format!(
                r#"
[labels]
spifs = ["spif/deu-vs.xml"]
{extra}
[labels.protected]
policy = "{DEU}"
default_label = {{ policy = "{DEU}", classification = 2 }}
clearance = {{ policy = "{DEU}", classifications = [1, 2] }}
[labels.remote]
policy = "{DEU}"
default_label = {{ policy = "{DEU}", classification = 2 }}
clearance = {{ policy = "{DEU}", classifications = [1, 2] }}
"#
            )
        };
        let l = cfg(&section("")).unwrap().labels.unwrap();
        assert_eq!(l.marking_detector, super::MarkingDetectorKind::Spif);
        assert!(l.marking_detector.uses_spif() && !l.marking_detector.uses_dlp());
        for (v, kind) in [
            ("dlp", super::MarkingDetectorKind::Dlp),
            ("both", super::MarkingDetectorKind::Both),
        ] {
            let text = format!(
                "[dlp]\npolicies = \"policies\"\n{}",
                section(&format!("marking_detector = \"{v}\""))
            );
            let l = cfg(&text).unwrap().labels.unwrap();
            assert_eq!(l.marking_detector, kind);
            assert!(l.marking_detector.uses_dlp());
            assert_eq!(l.marking_detector.uses_spif(), v == "both");
            // Without a DLP rule set there is nothing to detect with: an error at the key.
            let e = cfg(&section(&format!("marking_detector = \"{v}\"")))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!(
                    "/etc/gw/gw.toml:6:20: `labels.marking_detector = \"{v}\"` needs `[dlp] policies`"
                )),
                "{e}"
            );
        }
        let e = cfg(&section("marking_detector = \"yara\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/gw/gw.toml:6:20: invalid value for `labels.marking_detector`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_values_and_unknown_keys_are_positioned() {
        let e = cfg("\n[labels]\nspifs = [\"a.xml\"]\non_deny = \"explode\"\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/gw/gw.toml:6:11: invalid value for `labels.on_deny`"),
            "{e}"
        );
        assert!(
            e.contains("/etc/gw/gw.toml:7:1: unknown key `labels.colour`"),
            "{e}"
        );
    }

    #[test]
    fn shape_errors_are_positioned_and_all_reported() {
        let text = format!(
            r#"
[labels]
spifs = ["a.xml"]
[labels.protected]
policy = "not-an-oid"
default_label = {{ policy = "{DEU}", classification = 2, extra = 1 }}
clearance = {{ policy = "{DEU}", classifications = [1] }}
clearance_file = "c.json"
[labels.remote]
policy = "{DEU}"
clearance = {{ policy = "{DEU}", classifications = [1] }}
[[labels.peer]]
server = "hs2.example"
[[labels.peer]]
server = "HS2.example"
clearance = {{ policy = "{DEU}", classifications = [1] }}
"#
        );
        let e = cfg(&text).unwrap_err().to_string();
        let lines: Vec<&str> = e.lines().collect();
        let has = |line: usize, needle: &str| {
            lines
                .iter()
                .any(|l| l.starts_with(&format!("/etc/gw/gw.toml:{line}:")) && l.contains(needle))
        };
        assert!(has(7, "labels.protected.policy"), "{e}");
        assert!(has(8, "unknown key 'extra'"), "{e}");
        assert!(
            has(10, "set only one of `labels.protected.clearance`"),
            "{e}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("/etc/gw/gw.toml:")
                && l.contains("`labels.remote` needs `default_label`")),
            "{e}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("/etc/gw/gw.toml:")
                && l.contains("`labels.peer[0]` needs `clearance`")),
            "{e}"
        );
        assert!(has(17, "duplicate peer `HS2.example`"), "{e}");
    }
}
