//! DLP rules as the label layer's marking detector (`[labels] marking_detector = "dlp"` or
//! `"both"`).
//!
//! A rule with a `classification` key says which security classification its match means:
//!
//! ```toml
//! [[rule]]
//! id = "marking.geheim"
//! classification = { policy = "DEU-VS", name = "GEHEIM" }   # or lacv = 4; policy by OID too
//! ```
//!
//! * **Resolution.** `policy` is a policy OID or the SPIF's policy name (`securityPolicyId
//!   name`, compared ignoring ASCII case); `name` a classification name of that SPIF (exact,
//!   else ignoring case), `lacv` its LACV; with both they must name the same classification.
//!   Every rule's classification is resolved against the label layer's SPIFs when the rule set
//!   loads next to `[labels]` (start-up, `grenzwacht check`, every reload): one that does not
//!   resolve is a diagnostic `DLP020` at the rule file's line and column, and the rule set is
//!   refused. Without `[labels]` the key is not checked and has no effect.
//! * **Detection.** [`MarkingRules::detect`] scans an event's content the way the DLP layer
//!   does (every text field, `body`, `formatted_body`, edits, file names, every other string
//!   of the content; normalised, HTML rendered, look-alike letters for rules that ask) with
//!   the enforce-mode rules that carry a classification. What the text says does not depend on
//!   where it goes, so the rules' `scope` and allow-lists (`except`, `[[exception]]`) are not
//!   applied here; a rule's confidence, context and validator are. The label itself (the label
//!   layer's `event_key`) is not scanned: its classification name is no marking of the body.
//! * **Highest finding.** Several rules may match; the detector reports the classification
//!   that is highest in every loaded policy: each finding is placed in every policy (its own
//!   hierarchy, or the hierarchy of its translation through the SPIFs' equivalences, the
//!   highest level when it has no equivalent: fail closed) and the findings are compared by
//!   those levels, policies in OID order.
//! * **Reload.** [`DlpMarkings`] holds the rules of the running rule set; the guard swaps them
//!   with the DLP layer on every accepted reload, so the label layer's detector always reads
//!   the rules that run.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::value::RawValue;
use serde_json::Value;

use super::rules::{ClassificationRef, Diagnostic, Diagnostics, ExceptDef, Mode, RuleFile};
use super::{Engine, RuleSet, ScanCtx};
use crate::policy::labels::MarkingDetector;
use crate::spif::{Label, Lacv, Oid, Spif, SpifSet};
use crate::telemetry::Direction;

/// Diagnostic code: a rule's `classification` does not resolve against the loaded SPIFs.
pub const DLP020: &str = "DLP020";

/// A resolved classification of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    policy: Oid,
    lacv: Lacv,
    /// The classification's level in every loaded policy (OID order); see the module docs.
    levels: Vec<u64>,
}

/// The enforce-mode rules with a classification, compiled for detection (see the module
/// documentation).
#[derive(Debug)]
pub struct MarkingRules {
    engine: Option<Engine>,
    by_rule: HashMap<String, Resolved>,
    /// Content key of an event's label (not scanned).
    event_key: String,
}

/// Finds the SPIF a `policy` value names: an OID, else a policy name (ASCII case ignored).
fn find_policy<'a>(spifs: &'a SpifSet, policy: &str) -> Option<&'a Spif> {
    if let Some(oid) = Oid::parse(policy) {
        if let Some(s) = spifs.get(&oid) {
            return Some(s);
        }
    }
    spifs
        .policies()
        .into_iter()
        .filter_map(|p| spifs.get(&p))
        .find(|s| s.name.trim().eq_ignore_ascii_case(policy.trim()))
}

/// Resolves one `classification` against the SPIFs: (policy, LACV) or why not.
pub fn resolve(spifs: &SpifSet, c: &ClassificationRef) -> Result<(Oid, Lacv), String> {
    let Some(spif) = find_policy(spifs, &c.policy) else {
        let known: Vec<String> = spifs
            .policies()
            .into_iter()
            .filter_map(|p| spifs.get(&p).map(|s| format!("{} ({p})", s.name)))
            .collect();
        return Err(format!(
            "`classification.policy`: no loaded SPIF is policy `{}` (loaded: {})",
            c.policy,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ));
    };
    let names = || -> String {
        spif.classifications
            .iter()
            .map(|k| format!("{} = {}", k.name, k.lacv))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let by_name = match &c.name {
        None => None,
        Some(n) => Some(
            spif.classification_by_name(n)
                .or_else(|| {
                    spif.classifications
                        .iter()
                        .find(|k| k.name.trim().to_lowercase() == n.to_lowercase())
                })
                .ok_or_else(|| {
                    format!(
                        "`classification.name`: policy {} has no classification `{n}` (it has {})",
                        spif.name,
                        names()
                    )
                })?,
        ),
    };
    let by_lacv = match c.lacv {
        None => None,
        Some(v) => Some(spif.classification(Lacv(v)).ok_or_else(|| {
            format!(
                "`classification.lacv`: policy {} has no classification with LACV {v} (it has {})",
                spif.name,
                names()
            )
        })?),
    };
    match (by_name, by_lacv) {
        (Some(a), Some(b)) if a.lacv != b.lacv => Err(format!(
            "`classification`: name `{}` is LACV {} in policy {}, not {}",
            a.name, a.lacv, spif.name, b.lacv
        )),
        (Some(k), _) | (None, Some(k)) => Ok((spif.policy_id.clone(), k.lacv)),
        (None, None) => Err("`classification` needs `name` or `lacv`".into()),
    }
}

/// The level of classification (`policy`, `lacv`) in every loaded policy (OID order).
fn levels(spifs: &SpifSet, policy: &Oid, lacv: Lacv) -> Vec<u64> {
    let bare = Label::from_json(&serde_json::json!({
        "policy": policy.as_str(),
        "classification": lacv.0,
    }));
    spifs
        .policies()
        .iter()
        .map(|to| {
            let Ok(bare) = &bare else { return u64::MAX };
            let l = if to == policy {
                Some(bare.clone())
            } else {
                spifs.translate(bare, to).ok()
            };
            l.and_then(|l| {
                spifs
                    .get(to)
                    .and_then(|s| s.classification(l.classification))
                    .map(|c| c.hierarchy)
            })
            .unwrap_or(u64::MAX)
        })
        .collect()
}

impl MarkingRules {
    /// Resolves the `classification` of every rule of `set` against `spifs` (all problems at
    /// once, `DLP020` at the rule file's position) and compiles the enforce-mode rules that
    /// carry one. `event_key` is the label layer's label key (not scanned).
    pub fn build(
        set: &RuleSet,
        spifs: &SpifSet,
        event_key: &str,
    ) -> Result<MarkingRules, Diagnostics> {
        let mut diags = Vec::new();
        let mut by_rule = HashMap::new();
        for r in set.rules() {
            let Some(c) = &r.classification else { continue };
            match resolve(spifs, c) {
                Err(message) => diags.push(Diagnostic {
                    code: DLP020,
                    file: r.file.to_string(),
                    line: c.loc.line.max(1),
                    col: c.loc.col.max(1),
                    message: format!("rule `{}`: {message}", r.id),
                }),
                Ok((policy, lacv)) => {
                    if r.mode == Mode::Enforce {
                        let levels = levels(spifs, &policy, lacv);
                        by_rule.insert(
                            r.id.clone(),
                            Resolved {
                                policy,
                                lacv,
                                levels,
                            },
                        );
                    }
                }
            }
        }
        if !diags.is_empty() {
            return Err(Diagnostics(diags));
        }
        let files: Vec<RuleFile> = set
            .files()
            .iter()
            .map(|f| RuleFile {
                file: f.file.clone(),
                mode: Mode::Enforce,
                exceptions: Vec::new(),
                rules: f
                    .rules
                    .iter()
                    .filter(|r| by_rule.contains_key(&r.id))
                    .map(|r| {
                        let mut r = r.clone();
                        r.scope = Default::default();
                        r.except = ExceptDef {
                            values: std::mem::take(&mut r.except.values),
                            ..Default::default()
                        };
                        r.suppressed_by.retain(|(id, _)| by_rule.contains_key(id));
                        r.tests.clear();
                        r
                    })
                    .collect(),
            })
            .collect();
        let engine = if by_rule.is_empty() {
            None
        } else {
            Some(Engine::compile(&files).map_err(|e| {
                Diagnostics(vec![Diagnostic {
                    code: "DLP017",
                    file: files
                        .first()
                        .map(|f| f.file.to_string())
                        .unwrap_or_default(),
                    line: 1,
                    col: 1,
                    message: e.to_string(),
                }])
            })?)
        };
        Ok(MarkingRules {
            engine,
            by_rule,
            event_key: event_key.to_owned(),
        })
    }

    /// Number of rules the detector uses (enforce mode, with a classification).
    pub fn rule_count(&self) -> usize {
        self.by_rule.len()
    }

    /// The classification a rule's match means, if it has one the detector uses.
    pub fn classification_of(&self, rule: &str) -> Option<(Oid, Lacv)> {
        self.by_rule.get(rule).map(|r| (r.policy.clone(), r.lacv))
    }

    /// The highest classification a marking in `content` (an event's or message's content)
    /// means; `None` if no rule with a classification matches or the content is no JSON
    /// object.
    pub fn detect(&self, content: &RawValue) -> Option<(Oid, Lacv)> {
        let mut v: Value = serde_json::from_str(content.get()).ok()?;
        self.detect_value(&mut v)
    }

    /// [`Self::detect`] on parsed content (the label key is removed from it).
    pub fn detect_value(&self, content: &mut Value) -> Option<(Oid, Lacv)> {
        let engine = self.engine.as_ref()?;
        content.as_object_mut()?.remove(&self.event_key);
        let ctx = ScanCtx {
            direction: Direction::Outbound,
            peer: None,
            room_id: None,
            sender: None,
            event_type: "m.room.message",
        };
        let out = engine.scan_event(&ctx, content);
        out.matches
            .iter()
            .filter_map(|m| self.by_rule.get(&*m.rule))
            .max_by(|a, b| a.levels.cmp(&b.levels))
            .map(|r| (r.policy.clone(), r.lacv))
    }
}

/// The marking rules of the running DLP rule set, swapped on reload (see the module
/// documentation). Empty until the first rule set is set: the detector then finds nothing.
#[derive(Debug, Default)]
pub struct DlpMarkings {
    /// The label layer's label key (not scanned).
    event_key: String,
    current: RwLock<Option<Arc<MarkingRules>>>,
}

impl DlpMarkings {
    /// Empty; `event_key` is the label layer's label key (`[labels] event_key`).
    pub fn new(event_key: &str) -> Arc<DlpMarkings> {
        Arc::new(DlpMarkings {
            event_key: event_key.to_owned(),
            current: RwLock::default(),
        })
    }

    /// [`MarkingRules::build`] for this label layer: checks every rule's classification
    /// against `spifs` and compiles the detector's rules (to [`Self::set`] once the rule set
    /// is accepted).
    pub fn build(&self, set: &RuleSet, spifs: &SpifSet) -> Result<MarkingRules, Diagnostics> {
        MarkingRules::build(set, spifs, &self.event_key)
    }

    /// Replaces the rules (a reload of the DLP rule set).
    pub fn set(&self, rules: MarkingRules) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(rules));
    }

    /// The rules in use.
    pub fn current(&self) -> Option<Arc<MarkingRules>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The label layer's detector (`LabelPolicy::with_detector`): always the current rules.
    pub fn detector(self: &Arc<Self>) -> MarkingDetector {
        let me = self.clone();
        Arc::new(move |content: &RawValue| me.current()?.detect(content))
    }
}

#[cfg(test)]
mod tests;
