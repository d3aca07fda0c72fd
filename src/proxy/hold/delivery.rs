//! The guard's own delivery of held traffic (see the parent module).
//!
//! Once per [`TICK`] (and when a decision wakes it) the task applies the review timeout, then
//! sends every queue whose head is deliverable: a decided held event, or PDUs queued behind
//! one that was delivered. A batch is the queue's first PDUs (at most [`MAX_BATCH`], one
//! origin) up to the next held event still pending. It becomes a new transaction
//! `grenzwacht-<seq of the first PDU>-<PDUs in it>` from the original origin, goes through
//! `policy::decide` with the reviewers' decisions as `Units::reviewed`, is re-signed like any
//! modified transaction, and is sent through the upstream of its direction. 200: the PDUs are
//! marked delivered (per-PDU errors in the answer are logged, not retried). Anything else, or
//! no answer: the head's next attempt waits `delivery_backoff_initial_ms`, doubled per failed
//! attempt up to `delivery_backoff_max_ms`. A PDU of the batch that the policy holds becomes the
//! new head of its queue (a held event of its own), and the batch is cut before it. A queue
//! whose room is paused (`proxy::pause`) waits until the pause is lifted.
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::value::RawValue;

use super::{now_ms, parse_direction, HoldQueue};
use crate::federation::catalog;
use crate::federation::pdu::PduView;
use crate::federation::txn::Transaction;
use crate::policy::pause::RoomGate;
use crate::policy::{
    Direction, ExchangeCtx, Forward, Modification, Policy, Refusal, Rewrite, Units, Verdicts,
};
use crate::proxy::guard::{Guard, Shutdown};
use crate::proxy::rewrite::{self, RequestRewriter};
use crate::review::Decision;
use crate::store::{NewHold, QueueEntry, QueueKey};
use crate::telemetry as tm;

/// How often queues are looked at without a wake-up.
pub const TICK: Duration = Duration::from_secs(1);

/// Most PDUs in one delivered transaction (the spec's limit).
pub const MAX_BATCH: usize = 50;

/// The transaction id prefix of the guard's own transactions (Synapse's ids are numbers and
/// clock-based; these never collide with them).
pub const TXN_PREFIX: &str = "grenzwacht-";

/// Runs until `stop`: delivers held traffic (see the module documentation).
pub async fn run(guard: Arc<Guard>, mut stop: Shutdown) {
    loop {
        let g = guard.clone();
        let queues = tokio::task::spawn_blocking(move || {
            g.holds().load();
            g.holds().expire();
            g.holds().store().hold_queues()
        })
        .await;
        match queues {
            Ok(Ok(queues)) => {
                let all = queues.into_iter().map(|k| deliver_queue(&guard, k));
                futures_util::future::join_all(all).await;
            }
            Ok(Err(e)) => tracing::warn!("hold delivery: cannot list queues: {e}"),
            Err(_) => tracing::warn!("hold delivery: store task failed"),
        }
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(TICK) => {}
            _ = guard.holds().woken() => {}
        }
    }
}

/// Delivers batches of one queue while they succeed.
async fn deliver_queue(guard: &Guard, key: QueueKey) {
    for _ in 0..100 {
        match deliver_batch(guard, &key).await {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(direction = %key.0, destination = %key.1, room = %key.2, "hold delivery: {e}");
                return;
            }
        }
    }
}

/// The decided holds among `entries` as (position, decision), and the batch length: up to the
/// first pending hold, one origin, at most [`MAX_BATCH`].
fn batch_of(
    queue: &HoldQueue,
    entries: &[QueueEntry],
) -> Result<(usize, Vec<(usize, Decision)>), String> {
    let mut reviewed = Vec::new();
    let mut n = 0;
    for e in entries.iter().take(MAX_BATCH) {
        if e.origin != entries[0].origin {
            break;
        }
        if let Some(id) = e.hold_id {
            let rec = queue
                .store()
                .held_event(id)
                .map_err(|e| e.to_string())?
                .ok_or("queued event names a missing hold")?;
            match rec.state.as_str() {
                "released" => reviewed.push((n, Decision::Release)),
                "rejected" => reviewed.push((n, Decision::Reject)),
                _ => break,
            }
        }
        n += 1;
    }
    Ok((n, reviewed))
}

/// One batch of a queue. `Ok(true)`: something changed (delivered, or a new head held), try
/// the next; `Ok(false)`: nothing to do now.
async fn deliver_batch(guard: &Guard, key: &QueueKey) -> Result<bool, String> {
    let holds = guard.holds();
    let direction = parse_direction(&key.0).ok_or("queue with an unknown direction")?;
    if guard.pauses().is_paused(direction, &key.2) {
        return Ok(false);
    }
    let entries = holds
        .store()
        .hold_queue(key, MAX_BATCH)
        .map_err(|e| e.to_string())?;
    let Some(head) = entries.first() else {
        holds.load();
        return Ok(false);
    };
    if head.next_attempt_at > now_ms() {
        return Ok(false);
    }
    // TI-Messenger profile: the other side must still be on a current federation list.
    if let Some(ti) = guard.ti() {
        let other = match direction {
            Direction::Outbound => key.1.as_str(),
            Direction::Inbound => head.origin.as_str(),
        };
        if let Err(d) = ti.check_server(other).await {
            tm::record_hold_delivery("refused");
            tracing::warn!(room = %key.2, destination = %key.1, reason = d.as_str(), "held traffic not delivered, retried later: {d}");
            backoff(holds, head);
            return Ok(false);
        }
    }
    let (mut n, mut reviewed) = batch_of(holds, &entries)?;
    let permit = loop {
        if n == 0 {
            return Ok(false);
        }
        let batch = &entries[..n];
        match permit_for(guard, direction, key, batch, &reviewed) {
            Ok(p) => break p,
            Err(Stop::Held(pos, rule, matches)) => {
                // The new head of the queue: a held event of its own.
                hold_queued(guard, direction, key, &batch[pos], rule, matches)?;
                n = pos;
                reviewed.retain(|(p, _)| *p < pos);
                if n == 0 {
                    return Ok(true);
                }
            }
            Err(Stop::Refused(r)) => {
                tm::record_hold_delivery("refused");
                tracing::warn!(room = %key.2, destination = %key.1, "held traffic refused by the policy, retried later: {r}");
                backoff(holds, head);
                return Ok(false);
            }
        }
    };
    let (permit, recs) = permit;
    // Recorded (durably) before the held traffic crosses; no record, no crossing.
    if let Some(a) = guard.auditor() {
        if let Err(e) = a.append_all(recs).await {
            tracing::error!(room = %key.2, destination = %key.1, error = %e, "held traffic not recorded: not delivered, retried later");
            backoff(holds, head);
            return Ok(false);
        }
    }
    let batch = &entries[..n];
    let upstream = match direction {
        Direction::Inbound => guard.inbound_upstream(&key.1),
        Direction::Outbound => guard.outbound_upstream(),
    }
    .ok_or("no upstream for this direction")?;
    let txn_id = permit_txn_id(batch);
    // Never beside the origin's own transaction to that destination (`proxy::txn_slots`).
    let slot = guard.txn_slots().acquire(&batch[0].origin, &key.1).await;
    let sent = upstream.send(permit, &key.1, &key.1).await;
    drop(slot);
    match sent {
        Ok(resp) if resp.status == StatusCode::OK => {
            tm::record_upstream(direction, Some(200));
            tm::record_hold_delivery("delivered");
            log_pdu_errors(&resp.body, &key.2);
            let seqs: Vec<i64> = batch.iter().map(|e| e.seq).collect();
            holds
                .store()
                .mark_delivered(&seqs, now_ms())
                .map_err(|e| e.to_string())?;
            tracing::info!(room = %key.2, destination = %key.1, txn = %txn_id, pdus = n, "held traffic delivered");
            notify_decided(guard, direction, batch, &reviewed);
            holds.load();
            Ok(true)
        }
        Ok(resp) => {
            tm::record_upstream(direction, Some(resp.status.as_u16()));
            tm::record_hold_delivery("failed");
            tracing::warn!(room = %key.2, destination = %key.1, txn = %txn_id, status = resp.status.as_u16(), "held traffic not accepted, retried later");
            backoff(holds, head);
            Ok(false)
        }
        Err(e) => {
            tm::record_upstream(direction, None);
            tm::record_hold_delivery("failed");
            tracing::warn!(room = %key.2, destination = %key.1, txn = %txn_id, "held traffic not delivered, retried later: {e}");
            backoff(holds, head);
            Ok(false)
        }
    }
}

/// Sender notices for the decided held events of a delivered batch.
fn notify_decided(
    guard: &Guard,
    direction: Direction,
    batch: &[QueueEntry],
    reviewed: &[(usize, Decision)],
) {
    use crate::proxy::notices::NoticeOutcome;
    for &(pos, decision) in reviewed {
        let Some(e) = batch.get(pos) else { continue };
        let Ok(raw) = serde_json::from_slice::<&RawValue>(&e.pdu) else {
            continue;
        };
        let Ok(view) = PduView::parse(raw) else {
            continue;
        };
        let (outcome, rule) = match decision {
            Decision::Release => (NoticeOutcome::Released, "review_released"),
            Decision::Reject => (NoticeOutcome::Rejected, "review_rejected"),
        };
        super::notify(
            guard,
            direction,
            &view.sender,
            &e.room_id,
            &e.event_id,
            outcome,
            rule,
        );
    }
}

fn permit_txn_id(batch: &[QueueEntry]) -> String {
    format!("{TXN_PREFIX}{}-{}", batch[0].seq, batch.len())
}

/// The next attempt of the queue's head waits: initial delay doubled per failed attempt.
fn backoff(holds: &HoldQueue, head: &QueueEntry) {
    let cfg = holds.config();
    let attempts = head.attempts.saturating_add(1);
    let shift = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(30);
    let delay = cfg
        .delivery_backoff_initial_ms
        .saturating_mul(1u64 << shift)
        .min(cfg.delivery_backoff_max_ms);
    let next = now_ms().saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
    if let Err(e) = holds.store().delivery_failed(head.seq, attempts, next) {
        tracing::warn!("hold delivery: cannot record the attempt: {e}");
    }
}

fn log_pdu_errors(body: &[u8], room: &str) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    if let Some(pdus) = v.get("pdus").and_then(|p| p.as_object()) {
        for (id, r) in pdus {
            if r.get("error").is_some() {
                tracing::warn!(room, event_id = %id, "receiver refused a delivered held PDU (not retried)");
            }
        }
    }
}

/// Why a batch got no permit.
enum Stop {
    /// The policy holds the PDU at this position (with this rule; the rule matches as JSON).
    Held(usize, String, String),
    Refused(Refusal),
}

/// The batch's transaction through the permit gate.
fn permit_for(
    guard: &Guard,
    direction: Direction,
    key: &QueueKey,
    batch: &[QueueEntry],
    reviewed: &[(usize, Decision)],
) -> Result<(crate::policy::Permit<Forward>, Vec<crate::audit::Record>), Stop> {
    let origin = batch[0].origin.clone();
    let txn_id = permit_txn_id(batch);
    let path = format!("/_matrix/federation/v1/send/{txn_id}");
    let endpoint = catalog::lookup(&Method::PUT, &path)
        .ok_or_else(|| Stop::Refused(internal("transaction endpoint not catalogued")))?
        .endpoint;
    let (peer, protected) = match direction {
        Direction::Outbound => (key.1.clone(), origin.clone()),
        Direction::Inbound => (origin.clone(), key.1.clone()),
    };
    let ctx = ExchangeCtx {
        direction,
        endpoint,
        peer: Some(peer),
        protected,
        txn_id: Some(txn_id.clone()),
    };
    let body = body_of(&origin, batch).map_err(Stop::Refused)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut forward = Forward {
        method: Method::PUT,
        path_and_query: path,
        headers,
        body: Bytes::new(),
    };
    let rewriter = RequestRewriter {
        guard,
        ctx: &ctx,
        endpoint,
        room_hint: Some(&key.2),
    };
    // Signed as the rewriter signs a modified transaction (origin, key and destination by
    // direction).
    let (signer, as_origin, for_destination) = rewriter.signer().map_err(Stop::Refused)?;
    rewrite::resign(
        &mut forward,
        signer,
        as_origin,
        for_destination,
        body.clone(),
    )
    .map_err(Stop::Refused)?;
    let body = forward.body.clone();
    let limits = crate::proxy::perpdu::read_limits(guard.txn_limits());
    let t = Transaction::parse(&body, &limits)
        .map_err(|e| Stop::Refused(internal(&format!("held transaction: {e}"))))?;
    let (pdus, pdu_pos, omit) =
        crate::proxy::perpdu::txn_pdus(&t, guard.txn_limits().max_pdu_bytes, direction);
    let gate = DeliveryGate {
        inner: crate::proxy::pause::Gate {
            guard,
            room_hint: Some(&key.2),
        },
    };
    let units = Units {
        pdus,
        pdu_pos,
        omit,
        reviewed: reviewed.to_vec(),
        rooms: Some(&gate),
        ..Default::default()
    };
    let held = Mutex::new(None);
    let policy = guard.policy();
    let mut records = Vec::new();
    let r = crate::policy::decide_recorded(
        &*policy,
        &ctx,
        &units,
        forward,
        &DeliveryRewriter {
            inner: rewriter,
            held: &held,
        },
        Some(&mut records),
    );
    if let Some((pos, rule)) = held.lock().unwrap_or_else(PoisonError::into_inner).take() {
        let matches = units
            .pdus
            .iter()
            .zip(&units.pdu_pos)
            .find(|(_, &p)| p == pos)
            .map(|(view, _)| policy.matches(&ctx, view))
            .unwrap_or_default();
        let matches = serde_json::to_string(&matches).unwrap_or_else(|_| "[]".into());
        return Err(Stop::Held(pos, rule, matches));
    }
    // Media referenced by delivered events may be fetched once they crossed.
    if r.is_ok() {
        crate::proxy::audit_trail::index_media(guard, &ctx, false, &units, &records);
    }
    // The delivery's decisions, for the audit log (appended before the transaction is sent).
    let recs = match guard.auditor() {
        Some(a) => crate::proxy::audit_trail::decision_records(
            &ctx,
            &crate::proxy::audit_trail::Parties::of(&ctx, false),
            &units,
            &records,
            policy.version(),
            a.stores_content(),
        ),
        None => Vec::new(),
    };
    r.map(|p| (p, recs)).map_err(Stop::Refused)
}

fn internal(msg: &str) -> Refusal {
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "M_UNKNOWN",
        crate::policy::RefusalReason::Internal,
        msg,
    )
}

/// `{"edus":[],"origin":…,"origin_server_ts":…,"pdus":[…]}` with the PDUs as received.
fn body_of(origin: &str, batch: &[QueueEntry]) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    out.extend_from_slice(br#"{"edus":[],"origin":"#);
    serde_json::to_writer(&mut out, origin).map_err(|_| internal("origin"))?;
    out.extend_from_slice(br#","origin_server_ts":"#);
    out.extend_from_slice(now_ms().to_string().as_bytes());
    out.extend_from_slice(br#","pdus":["#);
    for (i, e) in batch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Stored as received (it was a valid PDU then).
        let raw: &RawValue =
            serde_json::from_slice(&e.pdu).map_err(|_| internal("stored PDU unreadable"))?;
        out.extend_from_slice(raw.get().as_bytes());
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// Makes a queued PDU the held head of its queue.
fn hold_queued(
    guard: &Guard,
    direction: Direction,
    key: &QueueKey,
    e: &QueueEntry,
    rule: String,
    matches: String,
) -> Result<(), String> {
    let raw: &RawValue = serde_json::from_slice(&e.pdu).map_err(|_| "stored PDU unreadable")?;
    let view = PduView::parse(raw).map_err(|_| "stored PDU unreadable")?;
    let (label, marking) = super::label_of(guard, direction, &key.2, view.content);
    let id = guard
        .holds()
        .hold(&NewHold {
            direction: key.0.clone(),
            room_id: key.2.clone(),
            event_id: e.event_id.clone(),
            origin: e.origin.clone(),
            sender: view.sender.to_string(),
            destination: key.1.clone(),
            rules: vec![rule.clone()],
            label,
            marking,
            matches,
            pdu: e.pdu.clone(),
            created_at: now_ms(),
        })
        .map_err(|e| e.to_string())?;
    tracing::warn!(hold = id, room = %key.2, event_id = %e.event_id, rule = %rule, "queued event held for review: it heads its queue now");
    super::notify(
        guard,
        direction,
        &view.sender,
        &key.2,
        &e.event_id,
        crate::proxy::notices::NoticeOutcome::Held,
        &rule,
    );
    Ok(())
}

/// The room gate of a delivery: as the exchange's, except that the delivered room does not
/// wait behind itself.
struct DeliveryGate<'g> {
    inner: crate::proxy::pause::Gate<'g>,
}

impl RoomGate for DeliveryGate<'_> {
    fn room(&self, raw: &RawValue, room_id: Option<&str>) -> Option<String> {
        self.inner.room(raw, room_id)
    }
    fn is_paused(&self, direction: Direction, room: &str) -> bool {
        self.inner.is_paused(direction, room)
    }
    fn redacted(&self, raw: &RawValue, room: &str) -> Option<Box<RawValue>> {
        self.inner.redacted(raw, room)
    }
    fn pause(&self, direction: Direction, room: &str, raw: &RawValue, rule: &str) {
        self.inner.pause(direction, room, raw, rule)
    }
    fn withheld(&self, direction: Direction, room: &str, cause: &'static str) {
        self.inner.withheld(direction, room, cause)
    }
    fn holds(&self) -> bool {
        true
    }
    fn is_held(&self, _direction: Direction, _room: &str) -> bool {
        false
    }
}

/// The request rewriter, except that a PDU the policy holds stops the batch (it becomes the
/// new head of its queue).
struct DeliveryRewriter<'r> {
    inner: RequestRewriter<'r>,
    held: &'r Mutex<Option<(usize, String)>>,
}

impl Rewrite<Forward> for DeliveryRewriter<'_> {
    fn rewrite(&self, fwd: Forward, v: &Verdicts) -> Result<Forward, Refusal> {
        let first: Option<&Modification> = v.hold.iter().min_by_key(|m| m.pos);
        if let Some(m) = first {
            *self.held.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((m.pos, m.rule.clone()));
            return Err(internal("held in delivery"));
        }
        self.inner.rewrite(fwd, v)
    }
}
