//! Reloading the DLP rule set: a rule set never shrinks by accident.
//!
//! * One consistent read: every load parses exactly the bytes of one [`Snapshot`] of the rule
//!   directory, and the running set's [`Manifest`] holds their hashes.
//! * Settle time: the watcher polls the directory (names and content hashes) and loads a new
//!   state only after it was seen unchanged in [`SETTLE_POLLS`] consecutive polls, so a file
//!   that is still being written is never loaded. SIGHUP loads at once.
//! * Shrink protection: a new set that lacks a rule file or a rule id of the running set, has
//!   a file without rules, or has a file that is its running version cut off at the end, is
//!   refused and the running set stays — unless the operator
//!   confirms it (SIGUSR1, [`Guard::reload_policies_accepting_smaller`]). A file without rules
//!   is also a load error (DLP019), so it never loads, confirmed or not.
//! * Identity: every load logs the set's fingerprint; gauges carry the number of rules and
//!   files and the fingerprint's first 48 bits.
//! * YARA: the rule files of `<dir>/yara/*.yar` (`media::yara`) are read in the same pass
//!   ([`PolicyRead`]) and belong to the set: their files (`yara/<file>`) and rules
//!   (`yara:<namespace>.<rule>`) are in the manifest, so they change the fingerprint and
//!   are protected against shrinking like DLP rules. A YARA file that does not compile
//!   refuses the whole reload. The compiled rules are swapped together with the layers
//!   ([`Guard::yara_rules`]); the `text` rules also form the `yara` layer.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::{error, info, warn};

use super::{Guard, GuardError, Shutdown};
use crate::media::yara::YaraRules;
use crate::policy::dlp::layer::DlpPolicy;
use crate::policy::dlp::markings::{DlpMarkings, MarkingRules};
use crate::policy::dlp::RuleSet;
use crate::policy::identity::{FileHash, LoadEvent, LoadRecord, RuleSetRecord};
use crate::policy::manifest::{Fingerprint, Manifest, Settle, Snapshot};
use crate::policy::Layers;
use crate::spif::SpifSet;

pub use crate::telemetry::POLICY_FILES_LOADED;
pub use crate::telemetry::POLICY_FINGERPRINT;
pub use crate::telemetry::POLICY_RELOADS_TOTAL;
pub use crate::telemetry::POLICY_RULES_LOADED;

/// Consecutive equal polls before the watcher loads a changed directory.
pub const SETTLE_POLLS: u32 = 2;

/// The outcome of one reload attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// Loaded; nothing of the running set was lost.
    Ok,
    /// The new set did not load (diagnostics); the running set stays.
    Refused,
    /// The new set would lose files or rule ids; the running set stays.
    RefusedShrink,
    /// The new set loses files or rule ids and was loaded by operator confirmation.
    AcceptedShrink,
}

impl ReloadResult {
    /// The `result` label of [`POLICY_RELOADS_TOTAL`].
    pub fn label(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Refused => "refused",
            ReloadResult::RefusedShrink => "refused_shrink",
            ReloadResult::AcceptedShrink => "accepted_shrink",
        }
    }
}

/// What the guard is running and how the last reload went.
#[derive(Debug, Clone, Default)]
pub struct PolicyStatus {
    /// The running DLP rule set's fingerprint (`None` without `[dlp]`).
    pub fingerprint: Option<Fingerprint>,
    pub rules: usize,
    pub files: usize,
    /// Reload attempts since start (any result).
    pub attempts: u64,
    pub last_result: Option<ReloadResult>,
}

/// The running rule set's manifest (its lock serialises reloads) and the status.
pub(super) struct Reloader {
    running: Mutex<Option<Manifest>>,
    status: Mutex<PolicyStatus>,
    /// The SPIF files of `[labels]` with their hashes (read at start-up).
    spifs: Vec<FileHash>,
    /// The configuration file the guard was started from ([`Guard::set_config_file`]).
    config: Mutex<Option<FileHash>>,
    /// Gets every load record ([`Guard::set_load_observer`]).
    observer: std::sync::OnceLock<LoadObserver>,
}

/// Receives every [`LoadRecord`] (start-up, reloads, refused reloads), e.g. for the audit log.
pub type LoadObserver = Box<dyn Fn(&LoadRecord) + Send + Sync>;

impl Reloader {
    /// With the SPIF files whose hashes the load records name.
    pub(super) fn with_spifs(mut self, spifs: &[PathBuf]) -> Self {
        self.spifs = spifs.iter().map(|p| FileHash::of_file(p)).collect();
        self
    }
    pub(super) fn new(manifest: Option<&Manifest>) -> Self {
        let status = PolicyStatus {
            fingerprint: manifest.map(Manifest::fingerprint),
            rules: manifest.map_or(0, Manifest::id_count),
            files: manifest.map_or(0, Manifest::file_count),
            ..PolicyStatus::default()
        };
        Reloader {
            running: Mutex::new(manifest.cloned()),
            status: Mutex::new(status),
            spifs: Vec::new(),
            config: Mutex::new(None),
            observer: std::sync::OnceLock::new(),
        }
    }
}

/// One read of the policy directory: its `*.toml` rule files and the `*.yar` files of its
/// `yara/` subdirectory (`None`: there is none).
#[derive(Debug, Clone)]
pub(super) struct PolicyRead {
    toml: Snapshot,
    yara: Option<Snapshot>,
}

impl PolicyRead {
    pub(super) fn read(dir: &Path) -> std::io::Result<PolicyRead> {
        Ok(PolicyRead {
            toml: Snapshot::read_dir(dir, "toml")?,
            yara: YaraRules::read_dir(dir)?,
        })
    }

    /// Equal to the fingerprint of the manifest a load of this read gives.
    pub(super) fn fingerprint(&self) -> Fingerprint {
        match &self.yara {
            None => self.toml.fingerprint(),
            Some(y) => self
                .toml
                .merged(&format!("{}/", crate::media::yara::SUBDIR), y)
                .fingerprint(),
        }
    }
}

/// [`PolicyRead::read`], its failure as the loader's diagnostic.
fn read_for_load(dir: &Path) -> Result<PolicyRead, GuardError> {
    use crate::media::yara::{YaraDiagnostic, YaraDiagnostics, YaraSeverity};
    use crate::policy::dlp::{Diagnostic, Diagnostics};
    let toml = Snapshot::read_dir(dir, "toml").map_err(|e| GuardError::Dlp {
        dir: dir.to_path_buf(),
        diagnostics: Diagnostics(vec![Diagnostic {
            code: "DLP014",
            file: dir.display().to_string(),
            line: 0,
            col: 0,
            message: format!("cannot read policy directory: {e}"),
        }]),
    })?;
    let yara = YaraRules::read_dir(dir).map_err(|e| {
        let ydir = YaraRules::dir_of(dir);
        GuardError::Yara {
            diagnostics: YaraDiagnostics(vec![YaraDiagnostic {
                code: "YAR006",
                severity: YaraSeverity::Error,
                file: ydir.display().to_string(),
                line: 0,
                col: 0,
                message: format!("cannot read the YARA rule directory: {e}"),
            }]),
            dir: ydir,
        }
    })?;
    Ok(PolicyRead { toml, yara })
}

/// What one load of the policy directory gives.
pub(super) struct Loaded {
    pub(super) dlp: DlpPolicy,
    pub(super) yara: Arc<YaraRules>,
    /// DLP and YARA files together.
    pub(super) manifest: Manifest,
    /// The label layer's marking rules of this rule set (`policy::dlp::markings`), when
    /// `load_dlp` was given the label layer's.
    pub(super) markings: Option<MarkingRules>,
}

/// Loads and compiles the DLP rule files and the YARA rule files of `dir` (one read) into a
/// policy layer, the compiled YARA rules and their common manifest. A YARA file that does not
/// compile fails the whole load.
///
/// With `labels` (the label layer's marking rules and SPIFs) every rule's `classification` is
/// resolved against the SPIFs; one that does not resolve fails the load (`DLP020`).
pub(super) fn load_dlp(
    dir: &Path,
    read: Option<&PolicyRead>,
    labels: Option<(&DlpMarkings, &SpifSet)>,
) -> Result<Loaded, GuardError> {
    let fresh;
    let read = match read {
        Some(r) => r,
        None => {
            fresh = read_for_load(dir)?;
            &fresh
        }
    };
    let (set, mut manifest) =
        RuleSet::from_snapshot(dir, &read.toml).map_err(|diagnostics| GuardError::Dlp {
            dir: dir.to_path_buf(),
            diagnostics,
        })?;
    let (yara, yara_manifest) =
        YaraRules::from_snapshot(dir, read.yara.as_ref()).map_err(|diagnostics| {
            GuardError::Yara {
                dir: YaraRules::dir_of(dir),
                diagnostics,
            }
        })?;
    let markings = labels
        .map(|(m, spifs)| m.build(&set, spifs))
        .transpose()
        .map_err(|diagnostics| GuardError::Dlp {
            dir: dir.to_path_buf(),
            diagnostics,
        })?;
    if read.yara.is_none() {
        info!(dir = %YaraRules::dir_of(dir).display(), "no YARA rules (the directory does not exist)");
    }
    for w in yara.warnings() {
        warn!("YARA rule warning: {w}");
    }
    manifest.extend(yara_manifest);
    Ok(Loaded {
        dlp: DlpPolicy::new(set.engine()),
        yara: Arc::new(yara),
        manifest,
        markings,
    })
}

/// Logs the identity of a loaded rule set.
pub(super) fn log_identity(dir: &Path, m: &Manifest, what: &str) {
    info!(dir = %dir.display(), rules = m.id_count(), files = m.file_count(), fingerprint = %m.fingerprint(), "DLP rule set {what}");
}

/// `layers` tagged with the policy version of `manifest` (its fingerprint).
pub(super) fn versioned(layers: Layers, manifest: Option<&Manifest>) -> Layers {
    match manifest {
        Some(m) => layers.with_version(m.fingerprint().to_string()),
        None => layers,
    }
}

impl Guard {
    /// Names the configuration file the guard was built from: its SHA-256 goes into every
    /// [`LoadRecord`].
    pub fn set_config_file(&self, path: &Path) {
        *self
            .reloader
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(FileHash::of_file(path));
    }

    /// Sets the receiver of every load record ([`Guard::record_load`] at start-up, each
    /// reload and each refused reload); only the first call takes effect (returns `false`
    /// otherwise). The observer runs on the reloading thread, under the reload lock.
    pub fn set_load_observer(&self, observer: LoadObserver) -> bool {
        self.reloader.observer.set(observer).is_ok()
    }

    /// Logs the record of the running policy and hands it to the load observer; `serve` calls
    /// it with [`LoadEvent::Startup`], reloads do it themselves.
    pub fn record_load(&self, event: LoadEvent) -> LoadRecord {
        let r = self.load_record(event);
        self.emit_load(&r);
        r
    }

    fn emit_load(&self, r: &LoadRecord) {
        r.log();
        if let Some(o) = self.reloader.observer.get() {
            o(r);
        }
    }

    /// The record of the running policy (rule set, SPIFs, config hash, policy version), for the
    /// log and the audit log.
    pub fn load_record(&self, event: LoadEvent) -> LoadRecord {
        let running = self
            .reloader
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.load_record_of(event, running.as_ref())
    }

    fn load_record_of(&self, event: LoadEvent, manifest: Option<&Manifest>) -> LoadRecord {
        let rule_set = match (&self.dlp, manifest) {
            (Some(d), Some(m)) => Some(RuleSetRecord::new(&d.policies, m)),
            _ => None,
        };
        LoadRecord {
            event,
            policy_version: manifest.map(|m| m.fingerprint().to_string()),
            config: self
                .reloader
                .config
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            rule_set,
            spifs: self.reloader.spifs.clone(),
            refused: None,
        }
    }

    /// Reloads the DLP rule set from its directory and swaps the whole policy in one step.
    /// A rule set that fails to load, or that lacks a rule file or rule id of the running one,
    /// is refused (logged, counted) and the running policy stays. Returns the number of rules
    /// now active. Without `[dlp]`, nothing to do (`Ok(0)`).
    pub fn reload_policies(&self) -> Result<usize, GuardError> {
        self.reload_dlp(None, false)
    }

    /// Like [`Guard::reload_policies`], but a set that lacks files or rule ids of the running
    /// one is taken (the operator's confirmation; SIGUSR1). Broken sets are still refused.
    pub fn reload_policies_accepting_smaller(&self) -> Result<usize, GuardError> {
        self.reload_dlp(None, true)
    }

    /// The running rule set's identity and the last reload's outcome.
    pub fn policy_status(&self) -> PolicyStatus {
        self.reloader
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the gauges of the running rule set (after the metrics recorder is installed).
    pub fn publish_policy_identity(&self) {
        let s = self.policy_status();
        if let Some(fp) = s.fingerprint {
            metrics::gauge!(POLICY_RULES_LOADED, "input" => "dlp").set(s.rules as f64);
            metrics::gauge!(POLICY_FILES_LOADED, "input" => "dlp").set(s.files as f64);
            metrics::gauge!(POLICY_FINGERPRINT, "input" => "dlp").set(fp.gauge_value());
        }
    }

    /// Loads `snap` (or a fresh read of the directory) and swaps it in, unless it is broken or,
    /// without `accept_smaller`, loses something of the running set.
    fn reload_dlp(
        &self,
        snap: Option<PolicyRead>,
        accept_smaller: bool,
    ) -> Result<usize, GuardError> {
        let Some(d) = &self.dlp else { return Ok(0) };
        let dir = &d.policies;
        let mut running = self
            .reloader
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let labels = self
            .dlp_markings
            .as_deref()
            .zip(self.labels.as_ref().map(|l| l.spifs()));
        let (result, out) = match load_dlp(dir, snap.as_ref(), labels) {
            Err(e) => {
                error!("DLP rule set refused, the running policy stays: {e}");
                (ReloadResult::Refused, Err(e))
            }
            Ok(Loaded {
                dlp: policy,
                yara,
                manifest,
                markings,
            }) => {
                let loss = running
                    .as_ref()
                    .map(|r| manifest.loss_from(r))
                    .unwrap_or_default();
                if !loss.is_empty() && !accept_smaller {
                    error!(
                        dir = %dir.display(), lost_files = ?loss.files, lost_rules = ?loss.ids, cut_off_files = ?loss.truncated_files,
                        "DLP rule set refused: it lacks rules of the running one ({loss}); the running policy stays (SIGUSR1 loads it anyway)"
                    );
                    (
                        ReloadResult::RefusedShrink,
                        Err(GuardError::DlpShrink {
                            dir: dir.clone(),
                            loss: Box::new(loss),
                        }),
                    )
                } else {
                    let rules = policy.rule_count() + yara.rule_count();
                    self.swap_policy(versioned(
                        Self::with_frame(
                            self.split.is_some(),
                            Self::layers(
                                &self.base,
                                &self.media,
                                Some(Arc::new(policy)),
                                Some(&yara),
                                self.labels.clone(),
                                self.opaque.clone(),
                                self.ti.as_ref(),
                            ),
                        ),
                        Some(&manifest),
                    ));
                    self.set_yara_rules(yara);
                    if let (Some(m), Some(r)) = (&self.dlp_markings, markings) {
                        m.set(r);
                    }
                    self.emit_load(&self.load_record_of(LoadEvent::Reload, Some(&manifest)));
                    let result = if loss.is_empty() {
                        log_identity(dir, &manifest, "reloaded");
                        ReloadResult::Ok
                    } else {
                        warn!(
                            dir = %dir.display(), lost_files = ?loss.files, lost_rules = ?loss.ids,
                            "DLP rule set shrunk by operator confirmation ({loss})"
                        );
                        log_identity(dir, &manifest, "reloaded (smaller, confirmed)");
                        ReloadResult::AcceptedShrink
                    };
                    let mut s = self
                        .reloader
                        .status
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    s.fingerprint = Some(manifest.fingerprint());
                    s.rules = manifest.id_count();
                    s.files = manifest.file_count();
                    *running = Some(manifest);
                    (result, Ok(rules))
                }
            }
        };
        if matches!(result, ReloadResult::Refused | ReloadResult::RefusedShrink) {
            let mut r = self.load_record_of(LoadEvent::RefusedReload, running.as_ref());
            r.refused = Some(result.label().to_string());
            self.emit_load(&r);
        }
        {
            let mut s = self
                .reloader
                .status
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            s.attempts += 1;
            s.last_result = Some(result);
        }
        metrics::counter!(POLICY_RELOADS_TOTAL, "result" => result.label()).increment(1);
        self.publish_policy_identity();
        out
    }
}

/// Polls the DLP rule directory and reloads a changed state once it has settled, until `stop`
/// resolves.
pub(super) async fn watch_dlp(
    guard: Arc<Guard>,
    dir: PathBuf,
    every: Duration,
    mut stop: Shutdown,
) {
    // Observation: the directory's fingerprint, `None` while it cannot be read.
    let mut settle = Settle::new(guard.policy_status().fingerprint, SETTLE_POLLS);
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let d = dir.clone();
        let snap = tokio::task::spawn_blocking(move || PolicyRead::read(&d).ok())
            .await
            .ok()
            .flatten();
        let fp = snap.as_ref().map(PolicyRead::fingerprint);
        if settle.observe(fp).is_none() || (fp.is_some() && fp == guard.policy_status().fingerprint)
        {
            // Unchanged, not settled yet, or already running (loaded by a signal).
            continue;
        }
        let g = guard.clone();
        // Loading compiles regexes: off the async workers. A directory that cannot be read is
        // read again by the loader, which reports it.
        let _ = tokio::task::spawn_blocking(move || g.reload_dlp(snap, false)).await;
    }
}

#[cfg(test)]
mod tests;
