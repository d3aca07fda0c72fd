//! DLP: content rules written by security officers, compiled once, applied to every field
//! users can type.
//!
//! # Pieces
//!
//! * [`rules`]: the rule-file format (TOML, one or more files per directory) and its
//!   diagnostics (stable `DLP0xx` codes, `file:line:col`, all at once).
//! * [`engine`]: the compiled [`Engine`] — one multi-pattern pass per field, validators only
//!   on candidates, verdicts with rule id, field, byte span and masked excerpt.
//! * [`validators`]: IBAN, Luhn, Steuer-ID, KVNR, ICAO 9303 document numbers, BIC.
//! * [`fields`]: the stable field names and the extractors (events, EDUs, responses,
//!   HTML → text).
//! * [`markings`]: rules with a `classification` as the label layer's marking detector.
//! * [`cli`]: `grenzwacht policy check|test|explain`.
//!
//! # Using it from the proxy
//!
//! ```no_run
//! use std::sync::Arc;
//! use grenzwacht::policy::dlp::{RuleSet, ScanCtx, Mode, Action};
//! use grenzwacht::telemetry::Direction;
//!
//! let set = RuleSet::load_dir("policies").map_err(|d| d.to_string())?;   // all diagnostics
//! let engine: Arc<grenzwacht::policy::dlp::Engine> = set.engine();        // swap this Arc to reload
//! let content = serde_json::json!({"msgtype": "m.text", "body": "IBAN DE89 3704 0044 0532 0130 00"});
//! let ctx = ScanCtx { direction: Direction::Outbound, peer: Some("land.example.de"),
//!     room_id: Some("!r:bund.example.de"), sender: Some("@a:bund.example.de"), event_type: "m.room.message" };
//! let outcome = engine.scan_event(&ctx, &content);
//! assert_eq!(outcome.action, Action::Redact);        // enforce-mode verdict
//! let _audit_only = outcome.shadow_action;            // what shadow-mode rules would have done
//! let _ = set.mode() == Mode::Shadow;
//! # Ok::<(), String>(())
//! ```
//!
//! For EDUs and user-data responses use [`Engine::scan_fields`] with [`fields::edu_fields`],
//! [`fields::profile_fields`], [`fields::directory_fields`] or [`fields::device_fields`].
//!
//! Rollout: `mode` is per file; every match carries the mode of its file. [`Outcome::action`]
//! only counts `enforce` rules, [`Outcome::shadow_action`] the `shadow` ones, so one directory
//! can enforce its established rules while a new file runs in shadow.
pub mod cli;
pub mod engine;
pub mod fields;
pub mod layer;
pub mod markings;
pub mod rules;
pub mod validators;

use std::path::Path;
use std::sync::Arc;

pub use engine::{mask, CompileError, Engine, Match, Outcome, ScanCtx};
pub use fields::Field;
pub use rules::{
    Action, ClassificationRef, Diagnostic, Diagnostics, Loc, Mode, RuleDef, RuleFile, Severity,
    TestDef, TestInput,
};
pub use validators::Validator;

use crate::policy::manifest::{Manifest, Snapshot};

use crate::telemetry::Direction;

/// A loaded, checked and compiled rule set (all files of a directory).
#[derive(Debug, Clone)]
pub struct RuleSet {
    files: Vec<RuleFile>,
    engine: Arc<Engine>,
}

/// The result of one embedded test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    pub rule: String,
    /// 1-based index of the test within its rule.
    pub index: usize,
    pub name: Option<String>,
    pub file: String,
    pub loc: Loc,
    pub expected: Action,
    pub got: Action,
    /// The matches of this rule (for failure output).
    pub matches: Vec<Match>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.expected == self.got
    }
}

fn diag(code: &'static str, file: &str, loc: Loc, message: String) -> Diagnostic {
    Diagnostic {
        code,
        file: file.to_owned(),
        line: loc.line,
        col: loc.col,
        message,
    }
}

impl RuleSet {
    /// Load every `*.toml` file of `dir` (sorted by name), check and compile. On any problem
    /// returns every diagnostic of every file.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<RuleSet, Diagnostics> {
        Self::load_dir_with_manifest(dir).map(|(set, _)| set)
    }

    /// [`RuleSet::load_dir`], also returning the set's [`Manifest`] (file names, rule ids,
    /// content hashes of exactly the bytes that were parsed).
    pub fn load_dir_with_manifest(
        dir: impl AsRef<Path>,
    ) -> Result<(RuleSet, Manifest), Diagnostics> {
        let dir = dir.as_ref();
        let snap = Snapshot::read_dir(dir, "toml").map_err(|e| {
            Diagnostics(vec![diag(
                "DLP014",
                &dir.display().to_string(),
                Loc::default(),
                format!("cannot read policy directory: {e}"),
            )])
        })?;
        Self::from_snapshot(dir, &snap)
    }

    /// Check and compile the rule files of one read of `dir` ([`Snapshot::read_dir`] with
    /// extension `toml`). Diagnostics name the files by their path.
    pub fn from_snapshot(dir: &Path, snap: &Snapshot) -> Result<(RuleSet, Manifest), Diagnostics> {
        if snap.files().is_empty() {
            let shown = dir.display().to_string();
            return Err(Diagnostics(vec![diag(
                "DLP015",
                &shown,
                Loc::default(),
                "no rule files (*.toml) in the policy directory".into(),
            )]));
        }
        let mut sources = Vec::new();
        let mut diags = Vec::new();
        for f in snap.files() {
            let shown = f.path.display().to_string();
            match f.content.as_deref().map(std::str::from_utf8) {
                Ok(Ok(text)) => sources.push((shown, text, f)),
                Ok(Err(_)) => diags.push(diag(
                    "DLP014",
                    &shown,
                    Loc::default(),
                    "cannot read: not valid UTF-8".into(),
                )),
                Err(e) => diags.push(diag(
                    "DLP014",
                    &shown,
                    Loc::default(),
                    format!("cannot read: {e}"),
                )),
            }
        }
        let refs: Vec<(&str, &str)> = sources.iter().map(|(n, t, _)| (n.as_str(), *t)).collect();
        match Self::from_sources(&refs) {
            Ok(set) if diags.is_empty() => {
                let mut manifest = Manifest::new();
                for (shown, text, f) in &sources {
                    let ids = set
                        .files
                        .iter()
                        .filter(|rf| &*rf.file == shown.as_str())
                        .flat_map(|rf| rf.rules.iter().map(|r| r.id.clone()));
                    manifest.insert(&f.name, text.as_bytes(), ids);
                }
                Ok((set, manifest))
            }
            Ok(_) => Err(Diagnostics(diags)),
            Err(Diagnostics(more)) => {
                diags.extend(more);
                Err(Diagnostics(diags))
            }
        }
    }

    /// Parse, check and compile in-memory sources `(file name, TOML text)`.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<RuleSet, Diagnostics> {
        let mut diags = Vec::new();
        let mut files = Vec::new();
        for (name, text) in sources {
            let before = diags.len();
            if let Some(f) = rules::parse_file(text, name, &mut diags) {
                // A file without rules (emptied, truncated, only comments) would silently
                // shrink the rule set.
                if f.rules.is_empty() && diags.len() == before {
                    diags.push(diag(
                        "DLP019",
                        name,
                        Loc::default(),
                        "rule file has no rules (`[[rule]]`); remove the file instead".into(),
                    ));
                }
                files.push(f);
            }
        }
        // Directory-wide checks.
        let mut seen: std::collections::HashMap<&str, (&str, Loc)> =
            std::collections::HashMap::new();
        for f in &files {
            for r in &f.rules {
                if let Some((file, loc)) = seen.insert(&r.id, (&f.file, r.loc)) {
                    diags.push(diag(
                        "DLP006",
                        &f.file,
                        r.loc,
                        format!(
                            "duplicate rule id `{}` (first defined at {file}:{}:{})",
                            r.id, loc.line, loc.col
                        ),
                    ));
                }
            }
        }
        for f in &files {
            for e in &f.exceptions {
                for (id, loc) in &e.rules {
                    if !seen.contains_key(id.as_str()) {
                        diags.push(diag(
                            "DLP013",
                            &f.file,
                            *loc,
                            format!("exception names unknown rule `{id}`"),
                        ));
                    }
                }
            }
        }
        for f in &files {
            for r in &f.rules {
                for (id, loc) in &r.suppressed_by {
                    if !seen.contains_key(id.as_str()) {
                        diags.push(diag(
                            "DLP013",
                            &f.file,
                            *loc,
                            format!("`suppressed_by` names unknown rule `{id}`"),
                        ));
                    }
                }
            }
        }
        if !diags.is_empty() {
            return Err(Diagnostics(diags));
        }
        let engine = Engine::compile(&files).map_err(|e| {
            Diagnostics(vec![diag(
                "DLP017",
                sources.first().map_or("", |s| s.0),
                Loc::default(),
                e.to_string(),
            )])
        })?;
        Ok(RuleSet {
            files,
            engine: Arc::new(engine),
        })
    }

    /// `Shadow` when every file is in shadow mode, else `Enforce` (individual matches carry
    /// their file's mode).
    pub fn mode(&self) -> Mode {
        if !self.files.is_empty() && self.files.iter().all(|f| f.mode == Mode::Shadow) {
            Mode::Shadow
        } else {
            Mode::Enforce
        }
    }

    /// The compiled engine (cheap to clone; swap it atomically to reload).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    pub fn files(&self) -> &[RuleFile] {
        &self.files
    }

    pub fn rules(&self) -> impl Iterator<Item = &RuleDef> {
        self.files.iter().flat_map(|f| &f.rules)
    }

    /// Run every embedded `[[rule.test]]` against the whole rule set; a test's verdict is its
    /// rule's action if that rule matched, else `allow`.
    pub fn run_tests(&self) -> Vec<TestResult> {
        let mut out = Vec::new();
        for r in self.rules() {
            for (i, t) in r.tests.iter().enumerate() {
                let outcome = run_test(&self.engine, t);
                let matches: Vec<Match> = outcome
                    .matches
                    .into_iter()
                    .filter(|m| *m.rule == *r.id)
                    .collect();
                let got = matches
                    .iter()
                    .map(|m| m.action)
                    .max()
                    .unwrap_or(Action::Allow);
                out.push(TestResult {
                    rule: r.id.clone(),
                    index: i + 1,
                    name: t.name.clone(),
                    file: r.file.to_string(),
                    loc: t.loc,
                    expected: t.expect,
                    got,
                    matches,
                });
            }
        }
        out
    }
}

fn run_test(engine: &Engine, t: &TestDef) -> Outcome {
    match &t.input {
        TestInput::Text { text, field } => {
            let ctx = ScanCtx {
                direction: t.direction,
                peer: t.peer.as_deref(),
                room_id: t.room.as_deref(),
                sender: t.sender.as_deref(),
                event_type: &t.event_type,
            };
            engine.scan_fields(&ctx, &[(*field, text.as_str())])
        }
        TestInput::Event(ev) => {
            let ctx = ScanCtx {
                direction: t.direction,
                peer: t.peer.as_deref(),
                room_id: t
                    .room
                    .as_deref()
                    .or_else(|| ev.get("room_id").and_then(|v| v.as_str())),
                sender: t
                    .sender
                    .as_deref()
                    .or_else(|| ev.get("sender").and_then(|v| v.as_str())),
                event_type: &t.event_type,
            };
            engine.scan_parts(&ctx, fields::EventParts::of(ev))
        }
    }
}

/// Convenience: a [`ScanCtx`] for an event JSON (PDU or bare event): type, room and sender
/// are taken from it.
pub fn event_ctx<'a>(
    event: &'a serde_json::Value,
    direction: Direction,
    peer: Option<&'a str>,
) -> ScanCtx<'a> {
    ScanCtx {
        direction,
        peer,
        room_id: event.get("room_id").and_then(|v| v.as_str()),
        sender: event.get("sender").and_then(|v| v.as_str()),
        event_type: event.get("type").and_then(|v| v.as_str()).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests;
