//! Security labels on federation traffic: the release decision per event and destination
//! (BRIEF §5). Configured by `[labels]` (`config::labels`).
//!
//! # Model
//!
//! * **Two sides.** The *protected* side (the servers behind the guard) and the *remote* side
//!   (every other server) each have a security policy (a SPIF, by OID), a default label for
//!   what comes from them unlabeled, and a default clearance; `[[labels.peer]]` gives single
//!   servers their own clearance. Data flowing **outbound** comes from the protected side and
//!   goes to the remote peer (`ExchangeCtx::peer`); data flowing **inbound** comes from the
//!   remote side and goes to the protected server (`ExchangeCtx::protected`). Responses are
//!   judged in the direction their data flows (`policy::decide_response`).
//! * **Effective label** of an event: its own label (content key `event_key`, as a STANAG 4774
//!   XML string, any other string form `grenzwacht label` reads, or the JSON form as an
//!   object), else the room's label (learned, see below), else the *source* side's default. An
//!   event label the room label does not dominate (`SpifSet::dominates`, after translating it
//!   into the room label's policy) is invalid: the room label is the ceiling.
//! * **Release**: the effective label is translated into the *destination* side's policy if
//!   it is in another one (fail closed: no equivalent → deny), then checked against the
//!   destination's clearance (`SpifSet::access`). An invalid, unparsable or untranslatable
//!   label, or a denied access, denies the event: `on_deny` (redact, or hold, which acts as
//!   redact: there is no review queue), rule ids `label:invalid`, `label:above_room`, `label:no_equivalent`,
//!   `label:deny`, `label:unlabeled_encrypted`, `label:room_server` (see below).
//! * **Rooms with several remote servers.** A remote server passes a room's events on to the
//!   other servers in the room (`get_missing_events`, `backfill`, `/event`), out of the guard's
//!   sight. So what leaves the protected side for a room is judged against the destination
//!   *and* every other remote server with a member in the room (joined, invited, knocking):
//!   the room is released at the lowest clearance among its remote servers; an event one of
//!   them is not cleared for is denied to all of them (`label:room_server`). The guard knows a
//!   room's members from the `m.room.member` PDUs it sees in both directions (`send_join`
//!   state included) and, where `[[protected]] admin_api` is set, from the protected
//!   homeserver's current state, asked once for a room whose members it has not seen
//!   (`proxy::room_labels`); they are kept in the store (`store::room_members`). A server
//!   joining later through another remote server can read the history that remote server
//!   holds: the guard judged it against the servers in the room when it left (see
//!   ARCHITECTURE.md).
//! * **Encrypted traffic** (`m.room.encrypted` events, to-device messages of that type) is
//!   opaque: only a cleartext label next to the ciphertext can release it. Without one it is
//!   denied (`encrypted_without_label = "deny"`, the default) — the room label is *not* used,
//!   because the guard cannot see whether the ciphertext is what the room label says.
//! * **EDUs** are judged by a label in their content if there is one, else the room label
//!   (`m.typing`, which names its room), else the source side's default; a denied EDU is
//!   dropped. To-device messages are judged per recipient device (their content's label, else
//!   the source side's default; encrypted ones as above).
//! * **Label/content consistency** (`marking_check`): classification markings in the body
//!   (`body`, `formatted_body`, also inside `m.new_content`) are detected with the marking
//!   phrases of the loaded SPIFs themselves — every classification's name and marking phrases
//!   in every language, plus a parenthesised short form (`RESTRICTED (VS-NfD)` → `VS-NfD`),
//!   matched case-sensitively as whole words (markings are written in capitals; the word
//!   "geheim" in a sentence is no marking). A detected classification is compared with the
//!   effective label in the label's policy (through the SPIFs' equivalent classifications,
//!   the highest equivalent when there are several); a body marked above its label is a
//!   mismatch: `on_mismatch` (hold by default), rule `label:mismatch`. This is deliberately
//!   independent of the DLP rule files: the phrases cannot drift from the policy they
//!   describe. A further detector (e.g. the DLP engine's marking rules) can be added with
//!   [`LabelPolicy::with_detector`]; the highest detection counts.
//!
//! # Room labels
//!
//! A room's label is the state event `room_label_type` (state key `""`) with the label under
//! `event_key` in its content. The guard learns it from every such event it sees — PDUs in
//! transactions and responses (`send_join` state, backfill, state), stripped state of
//! invites and knocks — before judging the event itself, and persists it in the store
//! (`room_labels`). Which changes it accepts (the room label is the default and the ceiling
//! of the room, so lowering it releases more):
//!
//! * the first label seen for a room;
//! * a label that dominates the current one (a raise: more restrictive, fail closed);
//! * any change (also a lowering) only if it is a PDU **leaving** the protected side, sent by
//!   a user of the protected server taking part, and not older (`origin_server_ts`) than the
//!   current one: the protected side's own room administrators are trusted with their rooms'
//!   labels, remote servers are not (a remote could otherwise lower a room's ceiling and get
//!   the protected side's unlabeled messages released to it).
//!
//! An unparsable room label is stored too: the room's unlabeled events are then denied (fail
//! closed). The room label event itself is judged by the label it carries (no ceiling check:
//! it defines the ceiling); a peer not cleared for the room gets it redacted.
//!
//! # What is trusted
//!
//! Labels are asserted by the sending user's client and server; the guard checks their form,
//! validity under the SPIF, the room ceiling, the destination's clearance and (for cleartext)
//! that the body carries no higher marking. It cannot check that an encrypted payload matches
//! its label. See ARCHITECTURE.md, "Security labels on federation traffic".
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{Decision, Direction, EduVerdict, ExchangeCtx, PduVerdict, Policy, ToDeviceMessage};
use crate::config::labels::{EncryptedWithoutLabel, LabelAction, LabelsConfig};
use crate::config::Config;
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::userdata::TO_DEVICE_EDU;
use crate::spif::{
    AccessDenial, Clearance, Label, LabelError, Lacv, Oid, Severity, SpifError, SpifSet,
};
use crate::store::room_members::MembershipSource;
use crate::store::{RoomLabelRecord, Store, StoreError};

/// Metric: label decisions that were not "allow", by direction and rule (`label:*`), plus
/// `allow`.
pub const LABEL_DECISIONS_TOTAL: &str = "grenzwacht_label_decisions_total";

/// Most parsed labels kept in the parse cache (it is cleared when full).
const LABEL_CACHE_MAX: usize = 10_000;

/// The event type of room membership events.
const MEMBER_TYPE: &str = "m.room.member";

/// The event type of encrypted room events and to-device messages.
pub const ENCRYPTED_TYPE: &str = "m.room.encrypted";

/// An extra marking detector: content → the highest classification it finds (policy, LACV).
pub type MarkingDetector = Arc<dyn Fn(&RawValue) -> Option<(Oid, Lacv)> + Send + Sync>;

/// The `[labels]` configuration does not load. Messages name the key.
#[derive(Debug, thiserror::Error)]
pub enum LabelConfigError {
    #[error("labels.spifs: {0}")]
    Spif(#[from] SpifError),
    #[error("labels.spifs: {0}")]
    Equivalence(String),
    #[error("labels.{key}: {error}")]
    Label { key: String, error: LabelError },
    #[error("labels.{key}: {message}")]
    Invalid { key: String, message: String },
}

fn bad(key: impl Into<String>) -> impl FnOnce(LabelError) -> LabelConfigError {
    let key = key.into();
    move |error| LabelConfigError::Label { key, error }
}

/// One side of the guard at runtime.
#[derive(Debug, Clone)]
struct Side {
    policy: Oid,
    default_label: Arc<Result<Label, String>>,
    clearance: Arc<Clearance>,
}

/// Why an event is not released (or held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `label:deny`, `label:invalid`, … (see the module documentation).
    pub rule: &'static str,
    /// For logs: never content, only label facts.
    pub reason: String,
    /// Mismatch (content vs label) rather than a release denial.
    pub mismatch: bool,
}

fn deny(rule: &'static str, reason: impl Into<String>) -> Denial {
    Denial {
        rule,
        reason: reason.into(),
        mismatch: false,
    }
}

/// Marking phrases of the loaded SPIFs (see the module documentation).
struct Markings {
    ac: AhoCorasick,
    /// Per pattern: the highest equivalent hierarchy in each policy.
    hits: Vec<Vec<(Oid, u64)>>,
}

impl Markings {
    fn build(
        set: &SpifSet,
        words: &HashMap<Oid, crate::config::labels::MarkingWords>,
    ) -> Option<Markings> {
        use crate::config::labels::MarkingWords;
        let mut phrases: BTreeMap<String, HashMap<Oid, u64>> = BTreeMap::new();
        for pid in set.policies() {
            let spif = set.get(&pid)?;
            let mode = words.get(&pid).copied().unwrap_or_default();
            if mode == MarkingWords::Off {
                continue;
            }
            for c in &spif.classifications {
                // Where this classification lands in each policy.
                let mut levels: HashMap<Oid, u64> = HashMap::new();
                levels.insert(pid.clone(), c.hierarchy);
                for other in set.policies().into_iter().filter(|o| *o != pid) {
                    let Some(os) = set.get(&other) else { continue };
                    let mut best: Option<u64> = None;
                    for e in c.equivalents.iter().filter(|e| e.policy == other) {
                        if let Some(oc) = os.classification(e.lacv) {
                            best = best.max(Some(oc.hierarchy));
                        }
                    }
                    for oc in &os.classifications {
                        if oc
                            .equivalents
                            .iter()
                            .any(|e| e.policy == pid && e.lacv == c.lacv)
                        {
                            best = best.max(Some(oc.hierarchy));
                        }
                    }
                    if let Some(h) = best {
                        levels.insert(other, h);
                    }
                }
                let mut names = vec![c.name.clone()];
                for lang in c.markings.languages() {
                    if let Some(m) = c.markings.get(lang) {
                        names.extend(m.phrases.iter().filter_map(|(_, p)| p.clone()));
                    }
                }
                let inner: Vec<String> = names
                    .iter()
                    .filter_map(|n| Some(n[n.find('(')? + 1..n.rfind(')')?].trim().to_string()))
                    .collect();
                names.extend(inner);
                if mode == MarkingWords::Qualified {
                    // A bare classification name is an ordinary word; with the policy's name
                    // in front, or inside a longer marking phrase, it reads as a marking.
                    let bare: Vec<String> = spif
                        .classifications
                        .iter()
                        .map(|k| k.name.trim().to_string())
                        .collect();
                    names.retain(|n| !bare.contains(&n.trim().to_string()));
                    names.push(format!("{} {}", spif.name.trim(), c.name.trim()));
                }
                for n in names {
                    let n = n.trim().to_string();
                    // Markings are written in capitals; short or lower-case phrases would
                    // match ordinary words.
                    if n.chars().count() < 4
                        || !n.chars().any(|c| c.is_uppercase())
                        || n.chars().filter(|c| c.is_lowercase()).count() > 2
                    {
                        continue;
                    }
                    let e = phrases.entry(n).or_default();
                    for (p, h) in &levels {
                        let v = e.entry(p.clone()).or_insert(*h);
                        *v = (*v).max(*h);
                    }
                }
            }
        }
        if phrases.is_empty() {
            return None;
        }
        // Matched on the text pipeline's views (`crate::text`), so the phrases are normalised
        // and their look-alike form is what the confusables view shows.
        let (pats, hits): (Vec<String>, Vec<Vec<(Oid, u64)>>) = phrases
            .into_iter()
            .map(|(p, m)| {
                (
                    crate::text::confusables::map_str(&crate::text::normalize(&p)),
                    m.into_iter().collect(),
                )
            })
            .unzip();
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&pats)
            .ok()?;
        Some(Markings { ac, hits })
    }

    /// The highest hierarchy (in `policy`) of a marking in `text`, whole words only, in every
    /// view of the text pipeline (normalised, HTML, look-alikes mapped).
    fn scan(&self, text: &str, policy: &Oid, best: &mut Option<u64>) {
        thread_local! {
            static VIEWS: std::cell::RefCell<crate::text::Views> = std::cell::RefCell::new(crate::text::Views::new());
        }
        VIEWS.with(|v| {
            let mut v = v.borrow_mut();
            for view in v.build(text, true) {
                self.scan_view(&view.text, policy, best);
            }
        });
    }

    fn scan_view(&self, text: &str, policy: &Oid, best: &mut Option<u64>) {
        for m in self.ac.find_overlapping_iter(text) {
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
            if word(before) || word(after) {
                continue;
            }
            if let Some((_, h)) = self.hits[m.pattern().as_usize()]
                .iter()
                .find(|(p, _)| p == policy)
            {
                *best = (*best).max(Some(*h));
            }
        }
    }
}

/// The label layer; see the module documentation.
pub struct LabelPolicy {
    spifs: SpifSet,
    event_key: String,
    room_label_type: String,
    on_deny: LabelAction,
    on_mismatch: LabelAction,
    encrypted: EncryptedWithoutLabel,
    protected: Side,
    remote: Side,
    /// Lower-case server name → clearance.
    peers: HashMap<String, Arc<Clearance>>,
    /// The protected servers' names, lower case (never counted as remote room members).
    protected_servers: Vec<String>,
    /// Rooms with a membership the store could not write (see [`Self::store_member`]).
    unrecorded: Unrecorded,
    store: Store,
    markings: Option<Markings>,
    detector: Option<MarkingDetector>,
    /// Raw label text → parsed and validated label (or why not).
    cache: RwLock<HashMap<String, Arc<Result<Label, String>>>>,
    /// Release decisions: (label, clearance, validity epoch) → outcome; see [`Self::release`].
    decisions: RwLock<HashMap<(usize, usize, usize), ReleaseEntry>>,
    /// Room-ceiling checks: (event label, room label, validity epoch) → outcome; see
    /// [`Self::within_room`].
    ceilings: RwLock<HashMap<(usize, usize, usize), CeilingEntry>>,
    /// Serialises room label changes (read, compare, write).
    learn: Mutex<()>,
    /// Room label changes refused (`view`).
    refused: view::Refused,
}

/// A cached release decision, holding the label it was made for.
type ReleaseEntry = (Arc<Result<Label, String>>, Result<(), Denial>);
/// Rooms whose membership the store failed to record; past [`Unrecorded::MAX`] rooms every
/// room counts as one.
#[derive(Debug, Default)]
struct Unrecorded {
    rooms: Mutex<std::collections::HashSet<String>>,
    /// Any room marked (the per-event check takes no lock until then).
    any: std::sync::atomic::AtomicBool,
    all: std::sync::atomic::AtomicBool,
}

impl Unrecorded {
    const MAX: usize = 10_000;

    fn mark(&self, room: &str) {
        let mut r = self
            .rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if r.len() >= Self::MAX {
            self.all.store(true, std::sync::atomic::Ordering::Release);
        } else {
            r.insert(room.to_owned());
        }
        self.any.store(true, std::sync::atomic::Ordering::Release);
    }

    fn contains(&self, room: &str) -> bool {
        if !self.any.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        self.all.load(std::sync::atomic::Ordering::Acquire)
            || self
                .rooms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(room)
    }
}

/// A cached room-ceiling check, holding both labels it was made for.
type CeilingEntry = (
    Arc<Result<Label, String>>,
    Arc<Result<Label, String>>,
    Result<(), Denial>,
);

impl std::fmt::Debug for LabelPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelPolicy")
            .field("policies", &self.spifs.policies())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

fn read_label(
    set: &SpifSet,
    inline: &Option<Value>,
    file: &Option<PathBuf>,
    key: &str,
) -> Result<Label, LabelConfigError> {
    let l = match (inline, file) {
        (Some(v), _) => Label::from_json(v).map_err(bad(key))?,
        (None, Some(p)) => set
            .load_label_file(p)
            .map_err(bad(format!("{key}_file ({})", p.display())))?,
        (None, None) => {
            return Err(LabelConfigError::Invalid {
                key: key.into(),
                message: "missing".into(),
            })
        }
    };
    set.validate(&l).map_err(bad(key))?;
    Ok(l)
}

fn read_clearance(
    set: &SpifSet,
    inline: &Option<Value>,
    file: &Option<PathBuf>,
    key: &str,
    policy: &Oid,
) -> Result<Clearance, LabelConfigError> {
    let c = match (inline, file) {
        (Some(v), _) => Clearance::from_json(v).map_err(bad(key))?,
        (None, Some(p)) => set
            .load_clearance_file(p)
            .map_err(bad(format!("{key}_file ({})", p.display())))?,
        (None, None) => {
            return Err(LabelConfigError::Invalid {
                key: key.into(),
                message: "missing".into(),
            })
        }
    };
    // Resolves every classification and category against the SPIF.
    set.clearance_marking(&c, None).map_err(bad(key))?;
    if &c.policy != policy {
        return Err(LabelConfigError::Invalid {
            key: key.into(),
            message: format!(
                "clearance is in policy {}, the side's policy is {policy}",
                c.policy
            ),
        });
    }
    Ok(c)
}

impl LabelPolicy {
    /// Builds the layer from `[labels]`; `Ok(None)` when the section is absent. Loads the
    /// SPIFs and checks every label and clearance against them (this is what
    /// `grenzwacht check` reports).
    pub fn from_config(
        cfg: &Config,
        store: Store,
    ) -> Result<Option<Arc<LabelPolicy>>, LabelConfigError> {
        Self::from_config_with(cfg, store, None)
    }

    /// [`Self::from_config`] with the DLP marking detector (`policy::dlp::markings`), used
    /// when `marking_detector` is `"dlp"` or `"both"` (and `marking_check` is on); without
    /// one such a setting is an error.
    pub fn from_config_with(
        cfg: &Config,
        store: Store,
        dlp: Option<MarkingDetector>,
    ) -> Result<Option<Arc<LabelPolicy>>, LabelConfigError> {
        let Some(l) = &cfg.labels else {
            return Ok(None);
        };
        let set = SpifSet::load(&l.spifs)?;
        let errors: Vec<String> = set
            .check_equivalences()
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        if !errors.is_empty() {
            return Err(LabelConfigError::Equivalence(errors.join("; ")));
        }
        let protected: Vec<String> = cfg
            .protected
            .iter()
            .map(|p| p.server_name.to_ascii_lowercase())
            .collect();
        let p = Self::new(l, set, store, &protected)?;
        let p = match (l.marking_detector.uses_dlp() && l.marking_check, dlp) {
            (true, Some(d)) => p.with_detector(d),
            (true, None) => {
                return Err(LabelConfigError::Invalid {
                    key: "marking_detector".into(),
                    message: "needs the DLP rule set (`[dlp] policies`)".into(),
                })
            }
            (false, _) => p,
        };
        Ok(Some(Arc::new(p)))
    }

    /// Builds the layer from a parsed section and loaded SPIFs. `protected` are the protected
    /// servers' names (a `[[labels.peer]]` naming one gets a clearance in the protected side's
    /// policy).
    pub fn new(
        l: &LabelsConfig,
        spifs: SpifSet,
        store: Store,
        protected: &[String],
    ) -> Result<LabelPolicy, LabelConfigError> {
        let side =
            |name: &str, s: &crate::config::labels::SideConfig| -> Result<Side, LabelConfigError> {
                let policy = Oid::parse(&s.policy).ok_or_else(|| LabelConfigError::Invalid {
                    key: format!("{name}.policy"),
                    message: format!("`{}` is not an OID", s.policy),
                })?;
                if spifs.get(&policy).is_none() {
                    return Err(LabelConfigError::Invalid {
                        key: format!("{name}.policy"),
                        message: format!("no SPIF in labels.spifs has policy {policy}"),
                    });
                }
                let default_label = read_label(
                    &spifs,
                    &s.default_label,
                    &s.default_label_file,
                    &format!("{name}.default_label"),
                )?;
                let clearance = read_clearance(
                    &spifs,
                    &s.clearance,
                    &s.clearance_file,
                    &format!("{name}.clearance"),
                    &policy,
                )?;
                Ok(Side {
                    policy,
                    default_label: Arc::new(Ok(default_label)),
                    clearance: Arc::new(clearance),
                })
            };
        let protected_side = side("protected", &l.protected)?;
        let remote_side = side("remote", &l.remote)?;
        let mut peers = HashMap::new();
        for (i, p) in l.peer.iter().enumerate() {
            let name = p.server.to_ascii_lowercase();
            let policy = if protected.contains(&name) {
                &protected_side.policy
            } else {
                &remote_side.policy
            };
            let c = read_clearance(
                &spifs,
                &p.clearance,
                &p.clearance_file,
                &format!("peer[{i}].clearance"),
                policy,
            )?;
            peers.insert(name, Arc::new(c));
        }
        let mut words = HashMap::new();
        for (i, m) in l.marking.iter().enumerate() {
            let key = format!("marking[{i}].policy");
            let policy = Oid::parse(&m.policy).ok_or_else(|| LabelConfigError::Invalid {
                key: key.clone(),
                message: format!("`{}` is not an OID", m.policy),
            })?;
            if spifs.get(&policy).is_none() {
                return Err(LabelConfigError::Invalid {
                    key,
                    message: format!("no SPIF in labels.spifs has policy {policy}"),
                });
            }
            words.insert(policy, m.words);
        }
        let markings = if l.marking_check && l.marking_detector.uses_spif() {
            Markings::build(&spifs, &words)
        } else {
            None
        };
        Ok(LabelPolicy {
            event_key: l.event_key.clone(),
            room_label_type: l.room_label_type.clone(),
            on_deny: l.on_deny,
            on_mismatch: l.on_mismatch,
            encrypted: l.encrypted_without_label,
            protected: protected_side,
            remote: remote_side,
            peers,
            protected_servers: protected.to_vec(),
            unrecorded: Unrecorded::default(),
            store,
            markings,
            detector: None,
            cache: RwLock::new(HashMap::new()),
            ceilings: RwLock::new(HashMap::new()),
            decisions: RwLock::new(HashMap::new()),
            learn: Mutex::new(()),
            refused: view::Refused::default(),
            spifs,
        })
    }

    /// Adds a marking detector (e.g. the DLP engine's marking rules): its finding counts like
    /// the built-in SPIF phrases (only when `marking_check` is on).
    pub fn with_detector(mut self, d: MarkingDetector) -> Self {
        self.detector = Some(d);
        self
    }

    /// The loaded policies.
    pub fn spifs(&self) -> &SpifSet {
        &self.spifs
    }

    /// Parses (cached by the raw JSON text) and validates a label value: a string in any
    /// format `SpifSet::parse_label` reads, or the JSON form.
    fn parse_cached(&self, raw: &RawValue) -> Arc<Result<Label, String>> {
        let key = raw.get();
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
        {
            return hit.clone();
        }
        let parsed = (|| -> Result<Label, String> {
            let v: Value = serde_json::from_str(key).map_err(|e| e.to_string())?;
            let l = match &v {
                Value::String(s) => self
                    .spifs
                    .parse_label(s.as_bytes())
                    .map_err(|e| e.to_string())?,
                Value::Object(_) => Label::from_json(&v).map_err(|e| e.to_string())?,
                _ => return Err("label: expected a string or an object".into()),
            };
            self.spifs.validate(&l).map_err(|e| e.to_string())?;
            Ok(l)
        })();
        let out = Arc::new(parsed);
        let mut c = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.len() >= LABEL_CACHE_MAX {
            c.clear();
        }
        c.insert(key.to_owned(), out.clone());
        out
    }

    /// [`Self::parse_cached`] on stored JSON text.
    fn parse_text(&self, text: String) -> Arc<Result<Label, String>> {
        match RawValue::from_string(text) {
            Ok(raw) => self.parse_cached(&raw),
            Err(e) => Arc::new(Err(format!("stored room label: {e}"))),
        }
    }

    fn room_label(&self, room: &str) -> Option<Arc<Result<Label, String>>> {
        match self.store.room_label(room) {
            Ok(Some(rec)) => Some(self.parse_text(rec.label)),
            Ok(None) => None,
            // Cannot tell whether the room is labeled: fail closed.
            Err(e) => Some(Arc::new(Err(format!("room label lookup failed: {e}")))),
        }
    }

    /// The effective label of an event flowing in `direction` (its own label, else its room's,
    /// else the sending side's default), as [`Self::judge`] takes it; `Err` if the label that
    /// applies cannot be read. For review queues (`proxy::hold`): who may see a held event.
    pub fn effective_label(
        &self,
        direction: Direction,
        room: Option<&str>,
        content: &RawValue,
    ) -> Result<Label, String> {
        let fields: BTreeMap<Cow<'_, str>, &RawValue> =
            serde_json::from_str(content.get()).unwrap_or_default();
        let eff = match fields.get(self.event_key.as_str()) {
            Some(raw) => self.parse_cached(raw),
            None => match room.and_then(|r| self.room_label(r)) {
                Some(rl) => rl,
                None => self.sides(direction).0.default_label.clone(),
            },
        };
        eff.as_ref().clone()
    }

    fn sides(&self, direction: Direction) -> (&Side, &Side) {
        match direction {
            Direction::Outbound => (&self.protected, &self.remote),
            Direction::Inbound => (&self.remote, &self.protected),
        }
    }

    /// The clearance of the destination server.
    fn clearance_for(&self, direction: Direction, ctx: &ExchangeCtx) -> &Arc<Clearance> {
        let dest = match direction {
            Direction::Outbound => ctx.peer.as_deref().unwrap_or(""),
            Direction::Inbound => ctx.protected.as_str(),
        };
        let (_, to) = self.sides(direction);
        self.peers
            .get(&dest.to_ascii_lowercase())
            .unwrap_or(&to.clearance)
    }

    /// The release decision for one event, EDU or to-device message. `room` is its room (if
    /// any), `content` its content, `encrypted` whether it is ciphertext, `room_label_event`
    /// whether it is the room label state event itself (no ceiling check).
    pub fn judge(
        &self,
        ctx: &ExchangeCtx,
        room: Option<&str>,
        content: &RawValue,
        encrypted: bool,
        room_label_event: bool,
    ) -> Result<(), Denial> {
        let direction = ctx.direction;
        let fields: BTreeMap<Cow<'_, str>, &RawValue> =
            serde_json::from_str(content.get()).unwrap_or_default();
        let room_label = room.and_then(|r| self.room_label(r));
        let (from, to) = self.sides(direction);
        // Effective label.
        let own = fields
            .get(self.event_key.as_str())
            .map(|raw| self.parse_cached(raw));
        let eff: Arc<Result<Label, String>> = match &own {
            Some(parsed) => {
                let label = parsed
                    .as_ref()
                    .as_ref()
                    .map_err(|e| deny("label:invalid", format!("event label: {e}")))?;
                if let (Some(rl_arc), false) = (&room_label, room_label_event) {
                    let rl = rl_arc
                        .as_ref()
                        .as_ref()
                        .map_err(|e| deny("label:invalid", format!("room label: {e}")))?;
                    self.within_room(parsed, label, rl_arc, rl)?;
                }
                parsed.clone()
            }
            None if encrypted && self.encrypted == EncryptedWithoutLabel::Deny => {
                return Err(deny(
                    "label:unlabeled_encrypted",
                    "encrypted without a cleartext label",
                ));
            }
            None => match &room_label {
                Some(rl) => rl.clone(),
                None => from.default_label.clone(),
            },
        };
        let eff_ref: &Label = eff
            .as_ref()
            .as_ref()
            .map_err(|e| deny("label:invalid", format!("room label: {e}")))?;
        // Release towards the destination (cached per label and clearance).
        let clearance = self.clearance_for(direction, ctx);
        self.release(&eff, eff_ref, to, clearance)?;
        if let (Direction::Outbound, Some(room)) = (direction, room) {
            self.release_to_room(room, &eff, eff_ref, to, clearance)?;
        }
        // Consistency: a body marked above its label.
        if !encrypted {
            if let Some(found) = self.highest_marking(&fields, content, &eff_ref.policy) {
                let own_h = self
                    .spifs
                    .get(&eff_ref.policy)
                    .and_then(|s| s.classification(eff_ref.classification))
                    .map(|c| c.hierarchy)
                    .unwrap_or(u64::MAX);
                if found > own_h {
                    return Err(Denial {
                        rule: "label:mismatch",
                        reason: "body carries a marking above its label".into(),
                        mismatch: true,
                    });
                }
            }
        }
        Ok(())
    }

    /// The room label is the ceiling: the event label, translated into the room label's policy,
    /// must be dominated by it.
    ///
    /// Cached like [`Self::release`]: by the identity of both parsed labels (the entry holds
    /// both `Arc`s, so their addresses cannot be reused while cached) and the SPIFs' validity epoch
    /// (`SpifSet::validity_epoch`: the number of validity bounds passed).
    fn within_room(
        &self,
        own: &Arc<Result<Label, String>>,
        label: &Label,
        room: &Arc<Result<Label, String>>,
        rl: &Label,
    ) -> Result<(), Denial> {
        let key = (
            Arc::as_ptr(own) as usize,
            Arc::as_ptr(room) as usize,
            self.spifs.validity_epoch(),
        );
        if let Some((_, _, r)) = self
            .ceilings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return r.clone();
        }
        let r = match self.spifs.translate(label, &rl.policy) {
            Err(e) => Err(deny(
                "label:above_room",
                format!("event label not comparable with the room label: {e}"),
            )),
            Ok(in_room) if !self.spifs.dominates(rl, &in_room) => Err(deny(
                "label:above_room",
                "event label not dominated by the room label",
            )),
            Ok(_) => Ok(()),
        };
        let mut c = self
            .ceilings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.len() >= LABEL_CACHE_MAX {
            c.clear();
        }
        c.insert(key, (own.clone(), room.clone(), r.clone()));
        r
    }

    /// Translation into the destination side's policy and access against `clearance`.
    ///
    /// Cached by the identity of the parsed label (`Arc` from the parse cache, the room label
    /// or the side default — the entry holds the `Arc`, so its address cannot be reused while
    /// cached), the clearance and the SPIFs' validity epoch (a decision is kept until a
    /// `notBefore` or `notAfter` of the loaded SPIFs passes).
    fn release(
        &self,
        eff: &Arc<Result<Label, String>>,
        label: &Label,
        to: &Side,
        clearance: &Arc<Clearance>,
    ) -> Result<(), Denial> {
        let key = (
            Arc::as_ptr(eff) as usize,
            Arc::as_ptr(clearance) as usize,
            self.spifs.validity_epoch(),
        );
        if let Some((_, r)) = self
            .decisions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return r.clone();
        }
        // The side's clearance is in the side's policy (checked at load), so the shared
        // decision translates the label into the destination's policy first.
        debug_assert_eq!(clearance.policy, to.policy);
        let r = self
            .spifs
            .decide_access(label, clearance)
            .map_err(|e| match e {
                AccessDenial::NoEquivalent(e) => deny("label:no_equivalent", e.to_string()),
                AccessDenial::Invalid(e) => deny("label:invalid", e.to_string()),
                AccessDenial::NotCleared(_) => {
                    deny("label:deny", "destination not cleared for the label")
                }
            });
        let mut d = self
            .decisions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if d.len() >= LABEL_CACHE_MAX {
            d.clear();
        }
        d.insert(key, (eff.clone(), r.clone()));
        r
    }

    /// A room's release: every remote server with a member in `room` (as far as the guard
    /// knows, `store::room_members`) must be cleared for the label, not only the destination
    /// (`dest`, already checked): a remote server passes the room's events on to the others in
    /// it. Each distinct clearance is checked once (cached like [`Self::release`]).
    fn release_to_room(
        &self,
        room: &str,
        eff: &Arc<Result<Label, String>>,
        label: &Label,
        to: &Side,
        dest: &Arc<Clearance>,
    ) -> Result<(), Denial> {
        if self.unrecorded.contains(room) {
            return Err(deny(
                "label:room_server",
                "a membership of the room could not be recorded",
            ));
        }
        let members = self.store.room_servers(room).map_err(|e| {
            deny(
                "label:room_server",
                format!("room membership lookup failed: {e}"),
            )
        })?;
        let mut checked: Vec<*const Clearance> = vec![Arc::as_ptr(dest)];
        // A saturated room (more members than the guard keeps): any remote server may be in
        // it, so every remote clearance counts — the side default and every peer's.
        let everyone: Vec<(&str, &Arc<Clearance>)> = if members.saturated {
            std::iter::once(("any remote server", &to.clearance))
                .chain(
                    self.peers
                        .iter()
                        .filter(|(name, _)| !self.protected_servers.contains(*name))
                        .map(|(name, c)| (name.as_str(), c)),
                )
                .collect()
        } else {
            Vec::new()
        };
        let listed = members
            .servers
            .iter()
            .filter(|server| !self.protected_servers.contains(*server))
            .map(|server| {
                (
                    server.as_str(),
                    self.peers.get(server).unwrap_or(&to.clearance),
                )
            });
        for (server, c) in everyone.into_iter().chain(listed) {
            if checked.contains(&Arc::as_ptr(c)) {
                continue;
            }
            checked.push(Arc::as_ptr(c));
            self.release(eff, label, to, c).map_err(|d| Denial {
                rule: "label:room_server",
                reason: format!("{server} is in the room: {}", d.reason),
                mismatch: false,
            })?;
        }
        Ok(())
    }

    /// Records the membership an `m.room.member` event states (`store::room_members`).
    fn learn_member(
        &self,
        room: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: &RawValue,
        ts: i64,
        source: MembershipSource,
    ) {
        let (MEMBER_TYPE, Some(user)) = (event_type, state_key) else {
            return;
        };
        #[derive(serde::Deserialize)]
        struct Member<'a> {
            #[serde(borrow)]
            membership: Option<Cow<'a, str>>,
        }
        // A member event without a readable membership still names a user of the room: count
        // it as present (fail closed).
        let membership = serde_json::from_str::<Member<'_>>(content.get())
            .ok()
            .and_then(|m| m.membership)
            .unwrap_or(Cow::Borrowed("unknown"));
        self.store_member(room, user, &membership, ts, source);
    }

    /// Stores one membership. A membership the store could not write leaves the room's
    /// member list incomplete, so the room is marked (`unrecorded`) and its releases are
    /// denied for the life of the process (fail closed); a malformed user id is only logged.
    fn store_member(
        &self,
        room: &str,
        user: &str,
        membership: &str,
        ts: i64,
        source: MembershipSource,
    ) {
        match self
            .store
            .put_room_member(room, user, membership, ts, source)
        {
            Ok(_) => {}
            Err(e @ StoreError::InvalidInput { .. }) => {
                tracing::warn!(room, user, "room membership not stored: {e}");
            }
            Err(e) => {
                tracing::warn!(
                    room,
                    user,
                    "cannot store room membership, the room's releases are denied: {e}"
                );
                self.unrecorded.mark(room);
            }
        }
    }

    /// Whether the guard has seen any membership of `room` (`store::room_members`); an error
    /// counts as unknown.
    pub fn room_members_known(&self, room: &str) -> bool {
        self.store.room_servers(room).is_ok_and(|r| r.known)
    }

    /// The highest marking hierarchy (in `policy`) found in the body fields.
    fn highest_marking(
        &self,
        fields: &BTreeMap<Cow<'_, str>, &RawValue>,
        content: &RawValue,
        policy: &Oid,
    ) -> Option<u64> {
        let mut best = None;
        if let Some(m) = &self.markings {
            let mut scan_fields = |f: &BTreeMap<Cow<'_, str>, &RawValue>| {
                for k in ["body", "formatted_body"] {
                    if let Some(Ok(s)) = f
                        .get(k)
                        .map(|r| serde_json::from_str::<Cow<'_, str>>(r.get()))
                    {
                        m.scan(&s, policy, &mut best);
                    }
                }
            };
            scan_fields(fields);
            if let Some(nc) = fields.get("m.new_content") {
                let inner: BTreeMap<Cow<'_, str>, &RawValue> =
                    serde_json::from_str(nc.get()).unwrap_or_default();
                scan_fields(&inner);
            }
        }
        if let Some(d) = &self.detector {
            if let Some((p, lacv)) = d(content) {
                let h = if &p == policy {
                    self.spifs
                        .get(&p)
                        .and_then(|s| s.classification(lacv))
                        .map(|c| c.hierarchy)
                } else {
                    let bare = Label {
                        policy: p,
                        classification: lacv,
                        categories: Default::default(),
                        privacy_mark: None,
                    };
                    // An untranslatable finding counts as the highest level (fail closed).
                    Some(
                        self.spifs
                            .translate(&bare, policy)
                            .ok()
                            .and_then(|t| {
                                self.spifs
                                    .get(policy)
                                    .and_then(|s| s.classification(t.classification))
                                    .map(|c| c.hierarchy)
                            })
                            .unwrap_or(u64::MAX),
                    )
                };
                best = best.max(h);
            }
        }
        best
    }

    /// Whether a label (valid or not) is known for `room`.
    pub fn room_label_known(&self, room: &str) -> bool {
        self.room_label(room).is_some()
    }

    /// Learn a room's label and membership from its current state as the protected homeserver
    /// reports it (`proxy::room_labels`): the room label event among `state` (client-format
    /// events), if any, and every member event (`store::room_members`: newer than what the
    /// guard saw wins). Returns whether the state had a label. The label is judged like
    /// a room label event leaving the protected side: the protected homeserver's own state may
    /// set or lower it.
    pub fn learn_from_state(&self, ctx: &ExchangeCtx, room: &str, state: &[Value]) -> bool {
        for ev in state {
            let (Some(MEMBER_TYPE), Some(user)) = (
                ev.get("type").and_then(Value::as_str),
                ev.get("state_key").and_then(Value::as_str),
            ) else {
                continue;
            };
            let membership = ev
                .get("content")
                .and_then(|c| c.get("membership"))
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let ts = ev
                .get("origin_server_ts")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            self.store_member(room, user, membership, ts, MembershipSource::State);
        }
        let Some(ev) = state.iter().find(|e| {
            e.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| self.is_room_label(t, e.get("state_key").and_then(Value::as_str)))
        }) else {
            return false;
        };
        let Ok(content) = RawValue::from_string(
            ev.get("content")
                .map(Value::to_string)
                .unwrap_or_else(|| "{}".into()),
        ) else {
            return false;
        };
        let sender = ev.get("sender").and_then(Value::as_str).unwrap_or("");
        let id = ev.get("event_id").and_then(Value::as_str);
        let ts = ev
            .get("origin_server_ts")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let out = ExchangeCtx {
            direction: Direction::Outbound,
            ..ctx.clone()
        };
        self.learn(&out, room, sender, id, ts, &content, "admin_api");
        true
    }

    /// Learns a room label from a room label state event (see the module documentation).
    #[allow(clippy::too_many_arguments)]
    fn learn(
        &self,
        ctx: &ExchangeCtx,
        room: &str,
        sender: &str,
        event_id: Option<&str>,
        ts: i64,
        content: &RawValue,
        from: &str,
    ) {
        let fields: BTreeMap<Cow<'_, str>, &RawValue> =
            serde_json::from_str(content.get()).unwrap_or_default();
        // A room label event without a label (e.g. redacted) says nothing.
        let Some(raw) = fields.get(self.event_key.as_str()) else {
            return;
        };
        let new = self.parse_cached(raw);
        let _g = self
            .learn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = match self.store.room_label(room) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(room, "room label lookup failed: {e}");
                return;
            }
        };
        if current.as_ref().is_some_and(|c| c.label == raw.get()) {
            return;
        }
        let sender_server = sender.split_once(':').map(|(_, s)| s).unwrap_or("");
        let own_side = ctx.direction == Direction::Outbound
            && sender_server.eq_ignore_ascii_case(&ctx.protected);
        let accept = match &current {
            None => true,
            Some(c) => {
                let raise = match (self.parse_text(c.label.clone()).as_ref(), new.as_ref()) {
                    (Ok(cur), Ok(n)) => self
                        .spifs
                        .translate(cur, &n.policy)
                        .is_ok_and(|cur| self.spifs.dominates(n, &cur)),
                    _ => false,
                };
                raise || (own_side && ts >= c.origin_server_ts)
            }
        };
        if !accept {
            tracing::warn!(
                room,
                sender,
                "room label change refused: neither a raise nor from the protected side"
            );
            self.refused.push(view::RefusedChange {
                room_id: room.to_owned(),
                event_id: event_id.map(str::to_owned),
                sender: sender.to_owned(),
                at_ms: view::now_ms(),
                reason: "neither a raise nor from the protected side",
            });
            return;
        }
        let rec = RoomLabelRecord {
            label: raw.get().to_owned(),
            event_id: event_id.map(str::to_owned),
            sender: sender.to_owned(),
            origin_server_ts: ts,
            learned_from: from.to_owned(),
        };
        match self.store.put_room_label(room, &rec) {
            Ok(()) => tracing::info!(room, valid = new.is_ok(), "room label learned"),
            Err(e) => tracing::warn!(room, "cannot store room label: {e}"),
        }
    }

    fn is_room_label(&self, event_type: &str, state_key: Option<&str>) -> bool {
        event_type == self.room_label_type && state_key == Some("")
    }

    fn record(
        &self,
        ctx: &ExchangeCtx,
        what: &str,
        id: Option<&str>,
        room: Option<&str>,
        r: &Result<(), Denial>,
    ) {
        let rule = match r {
            Ok(()) => "allow",
            Err(d) => d.rule,
        };
        metrics::counter!(LABEL_DECISIONS_TOTAL, "direction" => ctx.direction.as_str(), "outcome" => rule).increment(1);
        if let Err(d) = r {
            tracing::info!(what, event_id = id.unwrap_or(""), room = room.unwrap_or(""), rule = d.rule, reason = %d.reason, "label decision");
        }
    }

    fn pdu_verdict(&self, r: Result<(), Denial>) -> PduVerdict {
        match r {
            Ok(()) => PduVerdict::Allow,
            Err(d) => {
                let action = if d.mismatch {
                    self.on_mismatch
                } else {
                    self.on_deny
                };
                let rule = d.rule.to_string();
                match action {
                    LabelAction::Redact => PduVerdict::Redact { rule },
                    LabelAction::Hold => PduVerdict::Hold { rule },
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event_like(
        &self,
        ctx: &ExchangeCtx,
        what: &'static str,
        event_type: &str,
        state_key: Option<&str>,
        room: Option<&str>,
        sender: &str,
        id: Option<&str>,
        ts: i64,
        content: &RawValue,
    ) -> PduVerdict {
        let is_label = self.is_room_label(event_type, state_key);
        if let (true, Some(room)) = (is_label, room) {
            self.learn(ctx, room, sender, id, ts, content, what);
        }
        let r = self.judge(ctx, room, content, event_type == ENCRYPTED_TYPE, is_label);
        self.record(ctx, what, id, room, &r);
        self.pdu_verdict(r)
    }

    /// The event id of a PDU of room version 3+ (reference hash), for the log of a denial.
    fn computed_event_id(&self, pdu: &PduView<'_>) -> Option<String> {
        let version = self.store.room_version(pdu.room_id.as_deref()?).ok()??;
        crate::federation::redact::reference_event_id(pdu.raw, &version)
    }
}

impl Policy for LabelPolicy {
    fn request(&self, _: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn response(&self, _: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    /// Learn every room label of the body before any event is judged: a label listed after
    /// the state it governs (a `send_join` response in any order) still decides that state.
    fn prepare(&self, ctx: &ExchangeCtx, units: &crate::policy::Units<'_>) {
        for pdu in &units.pdus {
            if let Some(room) = pdu.room_id.as_deref() {
                self.learn_member(
                    room,
                    &pdu.event_type,
                    pdu.state_key.as_deref(),
                    pdu.content,
                    pdu.origin_server_ts,
                    MembershipSource::Event,
                );
            }
            if let (true, Some(room)) = (
                self.is_room_label(&pdu.event_type, pdu.state_key.as_deref()),
                pdu.room_id.as_deref(),
            ) {
                self.learn(
                    ctx,
                    room,
                    &pdu.sender,
                    pdu.event_id.as_deref(),
                    pdu.origin_server_ts,
                    pdu.content,
                    "pdu",
                );
            }
        }
        let hint = units.room_hint();
        for ev in &units.events {
            if let (true, Some(room)) = (
                self.is_room_label(&ev.event_type, ev.state_key.as_deref()),
                ev.room_id.as_deref().or(hint.as_deref()),
            ) {
                self.learn(
                    ctx,
                    room,
                    &ev.sender,
                    ev.event_id.as_deref(),
                    ev.origin_server_ts.unwrap_or(0),
                    ev.content,
                    "event",
                );
            }
        }
    }
    fn pdu(&self, ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        let v = self.event_like(
            ctx,
            "pdu",
            &pdu.event_type,
            pdu.state_key.as_deref(),
            pdu.room_id.as_deref(),
            &pdu.sender,
            pdu.event_id.as_deref(),
            pdu.origin_server_ts,
            pdu.content,
        );
        if v != PduVerdict::Allow && pdu.event_id.is_none() {
            // Room versions 3+ carry no event id: name the denied event in the log.
            if let Some(id) = self.computed_event_id(pdu) {
                tracing::info!(event_id = %id, verdict = ?v, "label decision applies to event");
            }
        }
        v
    }
    fn explain_pdu(
        &self,
        ctx: &ExchangeCtx,
        pdu: &PduView<'_>,
        found: &mut crate::policy::Findings,
    ) -> PduVerdict {
        let v = self.pdu(ctx, pdu);
        self.explain_verdict(ctx, pdu.room_id.as_deref(), pdu.content, &v, found);
        v
    }
    fn explain_event(
        &self,
        ctx: &ExchangeCtx,
        ev: &EventView<'_>,
        found: &mut crate::policy::Findings,
    ) -> PduVerdict {
        let v = self.event(ctx, ev);
        self.explain_verdict(ctx, ev.room_id.as_deref(), ev.content, &v, found);
        v
    }
    fn event(&self, ctx: &ExchangeCtx, ev: &EventView<'_>) -> PduVerdict {
        self.event_like(
            ctx,
            "event",
            &ev.event_type,
            ev.state_key.as_deref(),
            ev.room_id.as_deref(),
            &ev.sender,
            ev.event_id.as_deref(),
            ev.origin_server_ts.unwrap_or(0),
            ev.content,
        )
    }
    fn edu(&self, ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        if edu.edu_type == TO_DEVICE_EDU {
            return EduVerdict::Allow; // judged per recipient device
        }
        #[derive(serde::Deserialize)]
        struct Typing<'a> {
            #[serde(borrow, default)]
            room_id: Option<Cow<'a, str>>,
        }
        let room = if edu.edu_type == "m.typing" {
            serde_json::from_str::<Typing<'_>>(edu.content.get())
                .ok()
                .and_then(|t| t.room_id)
        } else {
            None
        };
        let r = self.judge(ctx, room.as_deref(), edu.content, false, false);
        self.record(ctx, "edu", None, room.as_deref(), &r);
        match r {
            Ok(()) => EduVerdict::Allow,
            Err(d) => EduVerdict::Drop {
                rule: d.rule.to_string(),
            },
        }
    }
    /// Room fields of directory and hierarchy responses (name, topic, alias, …) carry a room's
    /// state outside any event: they are judged like an unlabeled event of that room (its
    /// learned label, else the side default) and removed where that is not released. Fields
    /// without a room (profiles, devices) are judged by the side default.
    fn user_field(
        &self,
        ctx: &ExchangeCtx,
        field: &crate::policy::UserField<'_>,
    ) -> crate::policy::FieldVerdict {
        let empty = RawValue::from_string("{}".to_owned()).expect("valid JSON");
        let r = self.judge(ctx, field.room_id.as_deref(), &empty, false, false);
        self.record(ctx, "user_field", None, field.room_id.as_deref(), &r);
        match r {
            Ok(()) => crate::policy::FieldVerdict::Allow,
            Err(d) => crate::policy::FieldVerdict::Remove {
                rule: d.rule.to_string(),
            },
        }
    }
    fn to_device(&self, ctx: &ExchangeCtx, msg: &ToDeviceMessage<'_>) -> EduVerdict {
        let r = self.judge(
            ctx,
            None,
            msg.content,
            msg.event_type.as_deref() == Some(ENCRYPTED_TYPE),
            false,
        );
        self.record(ctx, "to_device", msg.message_id.as_deref(), None, &r);
        match r {
            Ok(()) => EduVerdict::Allow,
            Err(d) => EduVerdict::Drop {
                rule: d.rule.to_string(),
            },
        }
    }
    /// The label layer decides by the room's and the event's labels, and redaction is its
    /// answer to a denial: the redacted event of a room above the destination's clearance
    /// crosses, so the room's DAG stays whole. Text that redaction keeps is judged by the
    /// content layers (`[[rule]]`, DLP), which see the redacted form again.
    fn redacted_pdu(&self, _: &ExchangeCtx, _: &PduView<'_>) -> PduVerdict {
        PduVerdict::Allow
    }
    fn redacted_event(&self, _: &ExchangeCtx, _: &EventView<'_>) -> PduVerdict {
        PduVerdict::Allow
    }
}

mod explain;
#[cfg(test)]
mod tests;
mod view;
pub use view::{RefusedChange, RoomLabelInfo, ROOM_LABEL_CHANGES_REFUSED_TOTAL};
