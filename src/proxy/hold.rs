//! Hold queues: events a rule held for review, the rooms waiting behind them, reviewers'
//! decisions and the guard's own delivery of held traffic.
//!
//! # What a hold does
//!
//! A PDU with a hold verdict in a transaction is removed from the forwarded transaction and
//! taken over by the guard ([`take_over`], called by the request rewriter): it is stored
//! (`store::holds`, with its effective label and display marking) and put at the end of the
//! delivery queue of (direction, destination, room). The sender gets success for it — the
//! guard owns its delivery now. The room then **waits in that direction**, towards every
//! destination: later PDUs of the room in transactions that way queue behind the held one
//! (also success to the sender); fetches of the room (`/event`, `/backfill`,
//! `/get_missing_events`, `/state`, …) answer 404 as for a paused room; typing and receipt
//! EDUs naming it are dropped. Other rooms flow. A hold inside any other body (a response, an
//! invite, a join) is answered 404. A retried transaction gets the same answer: the forwarded
//! body is the stored decision (`store::txn_decisions`), and PDUs the guard took over get no
//! per-PDU error ([`HoldQueue::took_over`]).
//!
//! # Decisions
//!
//! [`HoldQueue`] implements [`ReviewQueue`]: a principal lists, sees and decides a held event
//! only if its clearance covers the event's effective label (SPIF access decision; no label:
//! visible to every reviewer). Release delivers the PDU unchanged (same event id, full
//! content); reject delivers it redacted (same event id). With `[review] four_eyes`, a release
//! needs two different reviewers; a reject by one reviewer is final (nothing of the content
//! crosses, so a second opinion adds no protection). A held event nobody decided within
//! `[review] timeout_secs` gets `timeout_decision` (default reject). Every hold and decision
//! goes to the [`HoldJournal`] first; its refusal refuses the transaction (503) or the
//! decision ([`ReviewError::Unavailable`]).
//!
//! # Delivery
//!
//! [`delivery::run`] (started by `serve`) sends each queue, in order, as new transactions
//! `PUT /_matrix/federation/v1/send/grenzwacht-<seq>-<n>` (the guard's own transaction-id
//! namespace) with the original origin, through the same permit gate as any transaction (the
//! reviewer's decision is an input of `policy::decide`: `Units::reviewed`), re-signed as the
//! request rewriter does, with exponential backoff until the receiver answers 200. A queued
//! PDU that is held itself becomes the new head of its queue. When a queue is empty the room
//! flows again. Everything is in the store: queues, order and decisions survive restarts, and
//! decisions written by another process (on the same store file) are seen within a second.
//!
//! Protected senders of outgoing events are told (`proxy::notices`, when `[notices]` is on):
//! held when the guard takes the PDU over, released or rejected when it delivers it.
pub mod delivery;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::value::RawValue;

use super::guard::Guard;
use crate::config::review::{ReviewConfig, TimeoutDecision};
use crate::federation::pdu::PduView;
use crate::policy::{Direction, ExchangeCtx, Policy, Refusal, RefusalReason, Verdicts};
use crate::review::{
    Approval, Decision, HeldDetail, HeldSummary, HoldId, HoldJournal, HoldState, LogJournal,
    Outcome, Principal, ReviewError, ReviewQueue,
};
use crate::spif::{Clearance, Label, SpifSet};
use crate::store::{HeldRecord, NewHold, Store, StoreError};
use crate::telemetry as tm;

/// How often the set of held rooms is checked for changes by another process (at most).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The reviewer name recorded for the default decision at the review timeout.
pub const TIMEOUT_REVIEWER: &str = "timeout";

/// Why the hold queue could not take a PDU over.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("hold store: {0}")]
    Store(#[from] StoreError),
    #[error("review journal refused: {0}")]
    Journal(String),
    #[error("held PDU without {0}")]
    Incomplete(&'static str),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn parse_direction(s: &str) -> Option<Direction> {
    match s {
        "inbound" => Some(Direction::Inbound),
        "outbound" => Some(Direction::Outbound),
        _ => None,
    }
}

fn state_of(s: &str) -> HoldState {
    match s {
        "released" => HoldState::Released,
        "rejected" => HoldState::Rejected,
        _ => HoldState::Pending,
    }
}

struct HeldSet {
    /// `None` until read once (unknown: every room counts as held).
    set: Option<HashSet<(Direction, String)>>,
    data_version: Option<i64>,
}

/// The hold queue: the store's held events and queues, the set of waiting rooms for the hot
/// path, the review configuration and the journal.
pub struct HoldQueue {
    store: Store,
    cfg: ReviewConfig,
    spifs: Option<SpifSet>,
    journal: RwLock<Arc<dyn HoldJournal>>,
    held: RwLock<HeldSet>,
    last_check: Mutex<Option<Instant>>,
    wake: tokio::sync::Notify,
    /// Serialises holds: the id is chosen, journalled, then stored.
    hold_lock: Mutex<()>,
}

impl HoldQueue {
    /// The hold queue of `store`. `spifs`: the SPIFs that decide reviewers' access to labelled
    /// events (`None`: labelled events are visible to nobody). The journal only logs until
    /// [`HoldQueue::set_journal`] connects the audit log.
    pub fn new(store: Store, cfg: ReviewConfig, spifs: Option<SpifSet>) -> Self {
        HoldQueue {
            store,
            cfg,
            spifs,
            journal: RwLock::new(Arc::new(LogJournal)),
            held: RwLock::new(HeldSet {
                set: None,
                data_version: None,
            }),
            last_check: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            hold_lock: Mutex::new(()),
        }
    }

    /// Connects the journal every hold and decision is recorded in first.
    pub fn set_journal(&self, journal: Arc<dyn HoldJournal>) {
        *self.journal.write().unwrap_or_else(PoisonError::into_inner) = journal;
    }

    fn journal(&self) -> Arc<dyn HoldJournal> {
        self.journal
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn config(&self) -> &ReviewConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Wakes the delivery task (a decision was taken).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    // ---- the set of waiting rooms ----------------------------------------------------------

    /// Re-reads the set of waiting rooms now (and the gauges).
    pub fn load(&self) {
        let mut st = self.held.write().unwrap_or_else(PoisonError::into_inner);
        self.reload(&mut st, true);
    }

    fn refresh(&self) {
        {
            let mut last = self
                .last_check
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < RELOAD_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut st = self.held.write().unwrap_or_else(PoisonError::into_inner);
        self.reload(&mut st, false);
    }

    fn reload(&self, st: &mut HeldSet, force: bool) {
        let version = match self.store.data_version() {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("hold queue: cannot check the store for changes: {e}");
                return;
            }
        };
        if !force && st.set.is_some() && st.data_version == Some(version) {
            return;
        }
        match self.store.held_rooms() {
            Ok(rows) => {
                st.set = Some(
                    rows.into_iter()
                        .filter_map(|(d, r)| parse_direction(&d).map(|d| (d, r)))
                        .collect(),
                );
                st.data_version = Some(version);
            }
            Err(e) => {
                tracing::error!("hold queue: cannot read held rooms: {e}");
                return;
            }
        }
        self.gauges();
    }

    fn gauges(&self) {
        if let Ok(counts) = self.store.hold_counts() {
            for (d, held, queued) in counts {
                if let Some(d) = parse_direction(&d) {
                    tm::set_holds(d, held as usize, queued as usize);
                }
            }
        }
    }

    /// Does `room` wait behind a held event for data flowing in `direction`? Fails closed:
    /// before the set could be read once, every room counts as waiting.
    pub fn is_held(&self, direction: Direction, room: &str) -> bool {
        self.refresh();
        let st = self.held.read().unwrap_or_else(PoisonError::into_inner);
        match &st.set {
            Some(s) => s.contains(&(direction, room.to_owned())),
            None => true,
        }
    }

    fn mark_held(&self, direction: Direction, room: &str) {
        let mut st = self.held.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = &mut st.set {
            s.insert((direction, room.to_owned()));
        }
        drop(st);
        self.gauges();
    }

    /// Whether the guard took the PDU `event_id` flowing in `direction` over (held or queued):
    /// its sender gets success for it, never a per-PDU error. Unknown (store error) counts
    /// as not taken over.
    /// The final decision on `event_id` held for data flowing in `direction`: `None` while it
    /// waits (or was never held). An answer carrying a decided event follows the decision.
    pub fn decision_of(&self, direction: Direction, event_id: &str) -> Option<Decision> {
        let id = self
            .store
            .held_event_id(direction.as_str(), event_id)
            .ok()??;
        let h = self.store.held_event(id).ok()??;
        match h.state.as_str() {
            "released" => Some(Decision::Release),
            "rejected" => Some(Decision::Reject),
            _ => None,
        }
    }

    pub fn took_over(&self, direction: Direction, event_id: &str) -> bool {
        self.store
            .hold_took_over(direction.as_str(), event_id)
            .unwrap_or(false)
    }

    // ---- taking PDUs over ------------------------------------------------------------------

    /// Holds `h` (journal first) and marks its room waiting.
    pub fn hold(&self, h: &NewHold) -> Result<HoldId, HoldError> {
        let direction = parse_direction(&h.direction).ok_or(HoldError::Incomplete("direction"))?;
        let _serial = self
            .hold_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let id = self.store.next_hold_id(&h.direction, &h.event_id)?;
        // An event held before towards another destination: the journal names the new one.
        let summary = HeldSummary {
            id,
            room_id: h.room_id.clone(),
            event_id: h.event_id.clone(),
            sender: h.sender.clone(),
            origin: h.origin.clone(),
            direction: h.direction.clone(),
            destinations: vec![h.destination.clone()],
            rules: h.rules.clone(),
            marking: h.marking.clone(),
            held_at_ms: h.created_at,
            state: HoldState::Pending,
            approvals: Vec::new(),
            four_eyes: self.cfg.four_eyes,
        };
        // Journalled before anything is stored: a refusal leaves no trace and refuses the
        // transaction.
        self.journal().held(&summary).map_err(HoldError::Journal)?;
        let (id, _) = self.store.hold_event(h, id)?;
        self.mark_held(direction, &h.room_id);
        self.wake();
        Ok(id)
    }

    /// Queues a PDU behind its room's held event.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &self,
        direction: Direction,
        destination: &str,
        room: &str,
        event_id: &str,
        origin: &str,
        pdu: &[u8],
    ) -> Result<(), HoldError> {
        self.store.enqueue_pdu(
            direction.as_str(),
            destination,
            room,
            event_id,
            origin,
            pdu,
            now_ms(),
        )?;
        self.mark_held(direction, room);
        Ok(())
    }

    // ---- reviewers --------------------------------------------------------------------------

    fn cleared(&self, who: &Principal, label: Option<&str>) -> bool {
        let Some(text) = label else { return true };
        let (Some(spifs), Some(c)) = (&self.spifs, &who.clearance) else {
            return false;
        };
        let Ok(clearance) = Clearance::from_json(c) else {
            return false;
        };
        let Ok(Ok(label)) =
            serde_json::from_str::<serde_json::Value>(text).map(|v| Label::from_json(&v))
        else {
            return false;
        };
        // The decision the traffic path makes (a label of another policy translated first).
        spifs.decide_access(&label, &clearance).is_ok()
    }

    fn summary(&self, r: &HeldRecord) -> HeldSummary {
        HeldSummary {
            id: r.id,
            room_id: r.room_id.clone(),
            event_id: r.event_id.clone(),
            sender: r.sender.clone(),
            origin: r.origin.clone(),
            direction: r.direction.clone(),
            destinations: r.destinations.clone(),
            rules: r.rules.clone(),
            marking: r.marking.clone(),
            held_at_ms: r.created_at,
            state: state_of(&r.state),
            approvals: serde_json::from_str(&r.approvals).unwrap_or_default(),
            four_eyes: self.cfg.four_eyes,
        }
    }

    fn record(&self, id: HoldId) -> Result<HeldRecord, ReviewError> {
        self.store
            .held_event(id)
            .map_err(|e| ReviewError::Unavailable(e.to_string()))?
            .ok_or(ReviewError::NotFound)
    }

    /// Applies one decision step as `who` (a principal's name or [`TIMEOUT_REVIEWER`]);
    /// checks of role and clearance are the caller's.
    fn apply(
        &self,
        rec: &HeldRecord,
        who: &str,
        decision: Decision,
        reason: &str,
    ) -> Result<Outcome, ReviewError> {
        if reason.trim().is_empty() {
            return Err(ReviewError::ReasonRequired);
        }
        if rec.state != "pending" {
            return Err(ReviewError::AlreadyDecided);
        }
        let summary = self.summary(rec);
        let mut approvals = summary.approvals.clone();
        let outcome = match decision {
            Decision::Reject => Outcome::Decided(HoldState::Rejected),
            Decision::Release if !self.cfg.four_eyes || who == TIMEOUT_REVIEWER => {
                Outcome::Decided(HoldState::Released)
            }
            Decision::Release => {
                let releases = approvals.iter().filter(|a| a.decision == Decision::Release);
                let mut others = false;
                for a in releases {
                    if a.reviewer == who {
                        return Err(ReviewError::SameReviewer);
                    }
                    others = true;
                }
                if others {
                    Outcome::Decided(HoldState::Released)
                } else {
                    Outcome::AwaitingSecond
                }
            }
        };
        let at = now_ms();
        approvals.push(Approval {
            reviewer: who.to_owned(),
            decision,
            reason: reason.to_owned(),
            at_ms: at,
        });
        self.journal()
            .decided(&summary, who, decision, reason, &outcome)
            .map_err(ReviewError::Unavailable)?;
        let state = match outcome {
            Outcome::Decided(HoldState::Released) => Some("released"),
            Outcome::Decided(HoldState::Rejected) => Some("rejected"),
            _ => None,
        };
        let json = serde_json::to_string(&approvals)
            .map_err(|e| ReviewError::Unavailable(e.to_string()))?;
        let stored = self
            .store
            .decide_held_event(rec.id, &rec.approvals, &json, state, at)
            .map_err(|e| ReviewError::Unavailable(e.to_string()))?;
        if !stored {
            // Changed meanwhile: decided, or another approval came first (then this step is
            // judged again against it).
            let now = self.record(rec.id)?;
            if now.state != "pending" || now.approvals == rec.approvals {
                return Err(ReviewError::AlreadyDecided);
            }
            return self.apply(&now, who, decision, reason);
        }
        if let Some(s) = state {
            let label = if s == "released" { "release" } else { "reject" };
            tm::record_review_latency(label, (at - rec.created_at).max(0) as f64 / 1000.0);
            tracing::warn!(hold = rec.id, room = %rec.room_id, event_id = %rec.event_id, reviewer = who, decision = label, "held event decided: delivery follows");
            self.gauges();
            self.wake();
        }
        Ok(outcome)
    }

    /// Applies the default decision to held events older than the review timeout; returns
    /// how many were decided.
    pub fn expire(&self) -> usize {
        if self.cfg.timeout_secs == 0 {
            return 0;
        }
        let timeout_ms =
            i64::try_from(self.cfg.timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let ids = match self
            .store
            .held_events_older_than(now_ms().saturating_sub(timeout_ms))
        {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("hold queue: cannot list expired held events: {e}");
                return 0;
            }
        };
        let decision = match self.cfg.timeout_decision {
            TimeoutDecision::Release => Decision::Release,
            TimeoutDecision::Reject => Decision::Reject,
        };
        let mut n = 0;
        for id in ids {
            let r = self
                .record(id)
                .and_then(|rec| self.apply(&rec, TIMEOUT_REVIEWER, decision, "review timeout"));
            match r {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(
                    hold = id,
                    "default decision at the review timeout failed: {e}"
                ),
            }
        }
        n
    }
}

impl ReviewQueue for HoldQueue {
    fn list(
        &self,
        who: &Principal,
        include_decided: bool,
    ) -> Result<Vec<HeldSummary>, ReviewError> {
        let rows = self
            .store
            .held_events(include_decided)
            .map_err(|e| ReviewError::Unavailable(e.to_string()))?;
        Ok(rows
            .iter()
            .filter(|r| self.cleared(who, r.label.as_deref()))
            .map(|r| self.summary(r))
            .collect())
    }

    fn show(&self, who: &Principal, id: HoldId) -> Result<HeldDetail, ReviewError> {
        let rec = self.record(id)?;
        if !self.cleared(who, rec.label.as_deref()) {
            return Err(ReviewError::NotCleared);
        }
        let content = if self.cfg.preview {
            serde_json::from_slice::<serde_json::Value>(&rec.pdu)
                .ok()
                .and_then(|mut v| v.get_mut("content").map(serde_json::Value::take))
        } else {
            None
        };
        Ok(HeldDetail {
            summary: self.summary(&rec),
            content,
            matches: serde_json::from_str(&rec.matches).unwrap_or_default(),
        })
    }

    fn decide(
        &self,
        who: &Principal,
        id: HoldId,
        decision: Decision,
        reason: &str,
    ) -> Result<Outcome, ReviewError> {
        let rec = self.record(id)?;
        if !self.cleared(who, rec.label.as_deref()) {
            return Err(ReviewError::NotCleared);
        }
        if !who.role.may_decide() {
            return Err(ReviewError::Forbidden);
        }
        if who.name == TIMEOUT_REVIEWER {
            return Err(ReviewError::Forbidden);
        }
        self.apply(&rec, &who.name, decision, reason)
    }
}

/// The running guard's hold queue as a shareable [`ReviewQueue`] (for the admin listener).
#[derive(Clone)]
pub struct GuardReviews(pub Arc<Guard>);

impl ReviewQueue for GuardReviews {
    fn list(
        &self,
        who: &Principal,
        include_decided: bool,
    ) -> Result<Vec<HeldSummary>, ReviewError> {
        self.0.holds().list(who, include_decided)
    }
    fn show(&self, who: &Principal, id: HoldId) -> Result<HeldDetail, ReviewError> {
        self.0.holds().show(who, id)
    }
    fn decide(
        &self,
        who: &Principal,
        id: HoldId,
        decision: Decision,
        reason: &str,
    ) -> Result<Outcome, ReviewError> {
        self.0.holds().decide(who, id, decision, reason)
    }
}

fn unavailable(msg: &str) -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNKNOWN",
        RefusalReason::Internal,
        msg,
    )
}

/// (origin, destination) of a transaction in `ctx`.
fn ends(ctx: &ExchangeCtx) -> Option<(String, String)> {
    let peer = ctx.peer.clone()?;
    Some(match ctx.direction {
        Direction::Outbound => (ctx.protected.clone(), peer.to_ascii_lowercase()),
        Direction::Inbound => (peer, ctx.protected.clone()),
    })
}

/// Takes the PDUs a transaction's verdicts hold or queue over (`Verdicts::hold`,
/// `Verdicts::queue`; `pdus` are the transaction's PDUs in order): each is stored in its
/// queue before the sender gets its answer. Any failure refuses the transaction (503: the
/// sender retries, and nothing was forwarded).
pub fn take_over(
    guard: &Guard,
    ctx: &ExchangeCtx,
    pdus: &[&RawValue],
    v: &Verdicts,
) -> Result<(), Refusal> {
    if v.hold.is_empty() && v.queue.is_empty() {
        return Ok(());
    }
    let (origin, destination) =
        ends(ctx).ok_or_else(|| unavailable("held PDU in an unauthenticated request"))?;
    let holds = guard.holds();
    let gate = super::pause::Gate {
        guard,
        room_hint: None,
    };
    use crate::policy::pause::RoomGate;
    // In transaction order: a held PDU and the PDUs of its room after it.
    let mut items: Vec<(&crate::policy::Modification, bool)> = v
        .hold
        .iter()
        .map(|m| (m, true))
        .chain(v.queue.iter().map(|m| (m, false)))
        .collect();
    items.sort_by_key(|(m, _)| m.pos);
    for (m, is_hold) in items {
        let raw = pdus
            .get(m.pos)
            .ok_or_else(|| unavailable("held PDU position out of range"))?;
        let view = PduView::parse(raw).map_err(|_| unavailable("held PDU unreadable"))?;
        let room = gate
            .room(raw, view.room_id.as_deref())
            .ok_or_else(|| unavailable("held PDU without a room"))?;
        let event_id = super::pause::event_id_of(guard.store(), raw)
            .ok_or_else(super::rooms::unknown_version)?;
        let r = if is_hold {
            let (label, marking) = label_of(guard, ctx.direction, &room, view.content);
            let matches = serde_json::to_string(&guard.policy().matches(ctx, &view))
                .unwrap_or_else(|_| "[]".into());
            holds
                .hold(&NewHold {
                    direction: ctx.direction.as_str().to_owned(),
                    room_id: room.clone(),
                    event_id: event_id.clone(),
                    origin: origin.clone(),
                    sender: view.sender.to_string(),
                    destination: destination.clone(),
                    rules: vec![m.rule.clone()],
                    label,
                    marking,
                    matches,
                    pdu: raw.get().as_bytes().to_vec(),
                    created_at: now_ms(),
                })
                .map(|id| {
                    tracing::warn!(hold = id, room = %room, event_id = %event_id, rule = %m.rule, destination = %destination, "event held for review: its room waits in this direction");
                    notify(
                        guard,
                        ctx.direction,
                        &view.sender,
                        &room,
                        &event_id,
                        super::notices::NoticeOutcome::Held,
                        &m.rule,
                    );
                })
        } else {
            holds
                .enqueue(
                    ctx.direction,
                    &destination,
                    &room,
                    &event_id,
                    &origin,
                    raw.get().as_bytes(),
                )
                .map(|()| {
                    tracing::info!(room = %room, event_id = %event_id, destination = %destination, "event queued behind a held event");
                })
        };
        r.map_err(|e| {
            tracing::error!("hold queue cannot take a PDU over: {e}");
            unavailable("review queue unavailable")
        })?;
    }
    Ok(())
}

/// Tells a protected sender what happened to an outgoing event (sender notices, when on).
pub(crate) fn notify(
    guard: &Guard,
    direction: Direction,
    sender: &str,
    room: &str,
    event_id: &str,
    outcome: super::notices::NoticeOutcome,
    rule: &str,
) {
    if direction != Direction::Outbound || !super::notices::is_protected_user(guard, sender) {
        return;
    }
    let _ = guard.notifier().notify(
        sender,
        room,
        event_id,
        outcome,
        std::slice::from_ref(&rule.to_owned()),
    );
}

/// The effective label's JSON text and display marking of a held event (`None`, `None` without
/// `[labels]`). A label that cannot be read is stored as `null`: no reviewer is cleared for it.
fn label_of(
    guard: &Guard,
    direction: Direction,
    room: &str,
    content: &RawValue,
) -> (Option<String>, Option<String>) {
    let Some(labels) = guard.labels() else {
        return (None, None);
    };
    match labels.effective_label(direction, Some(room), content) {
        Ok(l) => {
            let marking = labels.spifs().marking(&l, None).ok();
            (Some(l.to_json().to_string()), marking)
        }
        Err(_) => (Some("null".into()), Some("(unreadable label)".into())),
    }
}
