//! Paused rooms as the policy layer sees them, and the judgement of what redaction keeps.
//!
//! Redaction keeps some keys (`m.room.create` content from room version 11, `join_rules.allow`,
//! `power_levels` user and event-type keys, `type`, `state_key`, …), so a rule can still match
//! an event after the guard redacted it for that rule. [`Screen`] judges the redacted form of
//! every event a verdict asks to redact again, with the same policy
//! ([`Policy::redacted_pdu`]/[`Policy::redacted_event`]). If it is still refused, the event does
//! not cross and the room is **paused** in that direction: neither that event nor anything of
//! the room after it crosses until an operator lifts the pause.
//!
//! The policy layer does not own the pause state: the proxy passes a [`RoomGate`] with the
//! [`Units`](super::Units) (`units.rooms`). Without one (tests, `policy explain`) nothing is
//! re-judged and nothing is paused.
//!
//! In a transaction an event of a paused room is withheld (`Verdicts::withhold`: removed from
//! the forwarded transaction; the sender gets a per-PDU error) and the rest of the transaction
//! crosses. In any other body (responses, invites, joins) it refuses the whole exchange with
//! 404 `M_NOT_FOUND`. Typing and receipt EDUs that name a paused room are dropped.
//!
//! Held rooms work alike, with a review queue behind the gate ([`RoomGate::holds`]): a room
//! waiting behind a held event ([`RoomGate::is_held`], or an event held earlier in the same
//! body) has its PDUs queued behind the held one ([`Screened::Queue`], `Verdicts::queue`)
//! instead of withheld; any other exchange carrying its events answers 404, its typing and
//! receipt EDUs are dropped.
use std::borrow::Cow;
use std::collections::BTreeMap;

use http::StatusCode;
use serde_json::value::RawValue;

use super::{Direction, ExchangeCtx, PduVerdict, Policy, Refusal, RefusalReason};
use crate::federation::pdu::{EduView, EventView, PduView};

/// Why a unit is withheld (a metrics label value).
pub const CAUSE_PAUSED: &str = "paused";
/// A rule still matched the redacted form.
pub const CAUSE_REDACTION_KEPT: &str = "redaction_kept";

/// What the policy layer needs to know and do about rooms: implemented by the proxy over the
/// guard's pause set, room versions and store.
pub trait RoomGate: Send + Sync {
    /// The room an event belongs to: `room_id` as given, else derived (room version 12 create
    /// events) or taken from the request path.
    fn room(&self, raw: &RawValue, room_id: Option<&str>) -> Option<String>;
    /// Is `room` paused for data flowing in `direction`?
    fn is_paused(&self, direction: Direction, room: &str) -> bool;
    /// The event as it would cross redacted (the spec algorithm of its room version); `None`
    /// when it cannot be redacted here (the rewrite then refuses the exchange anyway).
    fn redacted(&self, raw: &RawValue, room: &str) -> Option<Box<RawValue>>;
    /// Pauses `room` for data flowing in `direction`: `raw` (as received) is the event whose
    /// redacted form `rule` still refused.
    fn pause(&self, direction: Direction, room: &str, raw: &RawValue, rule: &str);
    /// Counts and logs one unit withheld (`cause`: [`CAUSE_PAUSED`] or [`CAUSE_REDACTION_KEPT`]).
    fn withheld(&self, direction: Direction, room: &str, cause: &'static str);
    /// The event id of a PDU: `event_id` (room versions 1–2), else its reference hash under
    /// its room's version; `None` when unknown (decision records, `policy::decisions`).
    fn event_id(&self, _raw: &RawValue, _room: Option<&str>) -> Option<String> {
        None
    }
    /// A reviewer's final decision on this event, held before for data flowing in
    /// `direction`: an answer that carries a decided event follows the decision (released:
    /// as is; rejected: redacted); `None` while it waits or when it was never held.
    fn review_decision(
        &self,
        _direction: Direction,
        _raw: &RawValue,
        _room: Option<&str>,
    ) -> Option<crate::review::Decision> {
        None
    }
    /// Whether held events go to a review queue (`proxy::hold`). Without one (the default),
    /// a hold verdict acts as redact.
    fn holds(&self) -> bool {
        false
    }
    /// Is `room` waiting behind a held event for data flowing in `direction`? Its PDUs then
    /// queue behind the held one ([`Screened::Queue`]).
    fn is_held(&self, _direction: Direction, _room: &str) -> bool {
        false
    }
}

impl std::fmt::Debug for dyn RoomGate + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomGate")
    }
}

/// The refusal for an exchange that would carry an event of a paused room.
pub fn not_found() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
        RefusalReason::RoomPaused,
        "room not available",
    )
}

/// The rule of a verdict that asks to redact (or acts as redact), `None` for allow.
fn redacting_rule(v: &PduVerdict) -> Option<&str> {
    match v {
        PduVerdict::Allow => None,
        PduVerdict::Redact { rule } | PduVerdict::Hold { rule } | PduVerdict::Reject { rule } => {
            Some(rule)
        }
    }
}

/// One event as [`Screen`] sees it.
pub enum Unit<'u, 'a> {
    Pdu(&'u PduView<'a>),
    Event(&'u EventView<'a>),
}

impl Unit<'_, '_> {
    fn raw(&self) -> &RawValue {
        match self {
            Unit::Pdu(p) => p.raw,
            Unit::Event(e) => e.raw,
        }
    }
    fn room_id(&self) -> Option<&str> {
        match self {
            Unit::Pdu(p) => p.room_id.as_deref(),
            Unit::Event(e) => e.room_id.as_deref(),
        }
    }
}

/// What [`Screen::before`] and [`Screen::after`] decide for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screened {
    /// Judge (or keep) the event as usual.
    Pass,
    /// The event must not cross: its room is paused.
    Withhold { room: String, rule: String },
    /// The event's room waits behind a held event: in a transaction the PDU queues behind it,
    /// any other exchange is answered as for a paused room.
    Queue { room: String },
}

/// Pause checks and re-judgement for the units of one body (one direction).
pub struct Screen<'g> {
    gate: Option<&'g dyn RoomGate>,
    direction: Direction,
    /// Rooms paused while judging this body (later events of them are withheld too).
    paused_here: Vec<String>,
    /// Rooms with an event held in this body (later events of them queue behind it).
    held_here: Vec<String>,
}

impl<'g> Screen<'g> {
    pub fn new(gate: Option<&'g dyn RoomGate>, direction: Direction) -> Self {
        Screen {
            gate,
            direction,
            paused_here: Vec::new(),
            held_here: Vec::new(),
        }
    }

    /// An event of `room` in this body was held: later events of the room queue behind it.
    pub fn held(&mut self, room: String) {
        if !self.held_here.contains(&room) {
            self.held_here.push(room);
        }
    }

    /// Before judging an event: withhold it if its room is paused.
    pub fn before(&self, unit: &Unit<'_, '_>) -> Screened {
        let Some(gate) = self.gate else {
            return Screened::Pass;
        };
        let Some(room) = gate.room(unit.raw(), unit.room_id()) else {
            return Screened::Pass;
        };
        if self.paused_here.contains(&room) || gate.is_paused(self.direction, &room) {
            gate.withheld(self.direction, &room, CAUSE_PAUSED);
            return Screened::Withhold {
                room,
                rule: "room_paused".into(),
            };
        }
        if self.held_here.contains(&room) || gate.is_held(self.direction, &room) {
            return Screened::Queue { room };
        }
        Screened::Pass
    }

    /// After the verdict: if it asks to redact, judge the redacted form again; still refused →
    /// the room is paused and the event withheld.
    pub fn after(
        &mut self,
        policy: &dyn Policy,
        ctx: &ExchangeCtx,
        unit: &Unit<'_, '_>,
        verdict: &PduVerdict,
    ) -> Screened {
        let (Some(gate), Some(first_rule)) = (self.gate, redacting_rule(verdict)) else {
            return Screened::Pass;
        };
        let Some(room) = gate.room(unit.raw(), unit.room_id()) else {
            return Screened::Pass;
        };
        let Some(redacted) = gate.redacted(unit.raw(), &room) else {
            return Screened::Pass;
        };
        let again = match unit {
            Unit::Pdu(_) => match PduView::parse(&redacted) {
                Ok(view) => policy.redacted_pdu(ctx, &view),
                // The redacted form cannot be read: it cannot be shown to be clean.
                Err(_) => PduVerdict::Redact {
                    rule: first_rule.to_string(),
                },
            },
            Unit::Event(_) => match EventView::parse(&redacted) {
                Ok(view) => policy.redacted_event(ctx, &view),
                Err(_) => PduVerdict::Redact {
                    rule: first_rule.to_string(),
                },
            },
        };
        let Some(rule) = redacting_rule(&again) else {
            return Screened::Pass;
        };
        gate.pause(self.direction, &room, unit.raw(), rule);
        gate.withheld(self.direction, &room, CAUSE_REDACTION_KEPT);
        let rule = rule.to_string();
        if !self.paused_here.contains(&room) {
            self.paused_here.push(room.clone());
        }
        Screened::Withhold { room, rule }
    }

    /// Is this EDU about a paused room (typing notifications, read receipts)?
    pub fn edu_paused(&self, edu: &EduView<'_>) -> bool {
        let Some(gate) = self.gate else { return false };
        edu_rooms(edu).iter().any(|r| {
            self.paused_here.iter().any(|p| p == r)
                || self.held_here.iter().any(|p| p == r)
                || gate.is_paused(self.direction, r)
                || gate.is_held(self.direction, r)
        })
    }
}

/// The rooms an EDU names: `m.typing` `room_id`, the room keys of `m.receipt`.
pub fn edu_rooms(edu: &EduView<'_>) -> Vec<String> {
    match &*edu.edu_type {
        "m.typing" => {
            #[derive(serde::Deserialize)]
            struct Typing<'a> {
                #[serde(borrow)]
                room_id: Option<Cow<'a, str>>,
            }
            serde_json::from_str::<Typing<'_>>(edu.content.get())
                .ok()
                .and_then(|t| t.room_id)
                .map(|r| vec![r.into_owned()])
                .unwrap_or_default()
        }
        "m.receipt" => serde_json::from_str::<BTreeMap<String, &RawValue>>(edu.content.get())
            .map(|m| m.into_keys().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::catalog;
    use crate::policy::{Decision, EduVerdict};
    use std::sync::Mutex;

    /// A policy that redacts any event whose content or `type` contains `GEHEIM`.
    struct Marking;
    fn marked(raw: &RawValue) -> PduVerdict {
        let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
        let text = format!("{}{}", v["content"], v["type"]);
        if text.contains("GEHEIM") {
            PduVerdict::Redact {
                rule: "geheim".into(),
            }
        } else {
            PduVerdict::Allow
        }
    }
    impl Policy for Marking {
        fn request(&self, _: &ExchangeCtx) -> Decision {
            Decision::Allow
        }
        fn pdu(&self, _: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
            marked(pdu.raw)
        }
        fn event(&self, _: &ExchangeCtx, e: &EventView<'_>) -> PduVerdict {
            marked(e.raw)
        }
        fn edu(&self, _: &ExchangeCtx, _: &EduView<'_>) -> EduVerdict {
            EduVerdict::Allow
        }
        fn response(&self, _: &ExchangeCtx) -> Decision {
            Decision::Allow
        }
    }

    /// A gate that redacts by room version 11 rules and records pauses.
    #[derive(Default)]
    struct TestGate {
        paused: Mutex<Vec<(Direction, String, String)>>,
        withheld: Mutex<Vec<&'static str>>,
    }
    impl RoomGate for TestGate {
        fn room(&self, _: &RawValue, room_id: Option<&str>) -> Option<String> {
            room_id.map(str::to_string)
        }
        fn is_paused(&self, d: Direction, room: &str) -> bool {
            self.paused
                .lock()
                .unwrap()
                .iter()
                .any(|(pd, r, _)| *pd == d && r == room)
        }
        fn redacted(&self, raw: &RawValue, _: &str) -> Option<Box<RawValue>> {
            crate::federation::redact::redact_pdu(
                raw,
                &crate::federation::redact::parse_room_version("11").unwrap(),
            )
            .ok()
        }
        fn pause(&self, d: Direction, room: &str, _: &RawValue, rule: &str) {
            self.paused
                .lock()
                .unwrap()
                .push((d, room.into(), rule.into()));
        }
        fn withheld(&self, _: Direction, _: &str, cause: &'static str) {
            self.withheld.lock().unwrap().push(cause);
        }
    }

    fn ctx() -> ExchangeCtx {
        ExchangeCtx {
            direction: Direction::Outbound,
            endpoint: catalog::by_id("send_transaction").unwrap(),
            peer: Some("hs2".into()),
            protected: "hs1".into(),
            txn_id: None,
        }
    }

    fn raw(v: serde_json::Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    fn event(
        room: &str,
        ty: &str,
        state_key: Option<&str>,
        content: serde_json::Value,
    ) -> Box<RawValue> {
        let mut v = serde_json::json!({
            "auth_events": [], "prev_events": [], "depth": 1, "hashes": {"sha256": "x"}, "origin_server_ts": 1,
            "room_id": room, "sender": "@a:hs1", "type": ty, "content": content, "signatures": {}
        });
        if let Some(k) = state_key {
            v["state_key"] = k.into();
        }
        raw(v)
    }

    /// Holds `VS-VERTRAULICH`, allows the rest.
    struct Holding;
    impl Policy for Holding {
        fn request(&self, _: &ExchangeCtx) -> Decision {
            Decision::Allow
        }
        fn pdu(&self, _: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
            if pdu.content.get().contains("VS-VERTRAULICH") {
                PduVerdict::Hold { rule: "vs".into() }
            } else {
                PduVerdict::Allow
            }
        }
        fn event(&self, _: &ExchangeCtx, _: &EventView<'_>) -> PduVerdict {
            PduVerdict::Allow
        }
        fn edu(&self, _: &ExchangeCtx, _: &EduView<'_>) -> EduVerdict {
            EduVerdict::Allow
        }
        fn response(&self, _: &ExchangeCtx) -> Decision {
            Decision::Allow
        }
    }

    /// [`TestGate`] with a hold queue: `held` rooms wait (outbound).
    struct HoldGate {
        inner: TestGate,
        held: Vec<&'static str>,
    }
    impl RoomGate for HoldGate {
        fn room(&self, raw: &RawValue, room_id: Option<&str>) -> Option<String> {
            self.inner.room(raw, room_id)
        }
        fn is_paused(&self, d: Direction, room: &str) -> bool {
            self.inner.is_paused(d, room)
        }
        fn redacted(&self, raw: &RawValue, room: &str) -> Option<Box<RawValue>> {
            self.inner.redacted(raw, room)
        }
        fn pause(&self, d: Direction, room: &str, raw: &RawValue, rule: &str) {
            self.inner.pause(d, room, raw, rule)
        }
        fn withheld(&self, d: Direction, room: &str, cause: &'static str) {
            self.inner.withheld(d, room, cause)
        }
        fn holds(&self) -> bool {
            true
        }
        fn is_held(&self, d: Direction, room: &str) -> bool {
            d == Direction::Outbound && self.held.contains(&room)
        }
    }

    #[test]
    fn held_events_leave_a_transaction_later_ones_queue_and_reviews_decide() {
        use crate::policy::permit::check_units_for_tests as check;
        use crate::policy::Units;
        use crate::review::Decision as D;
        let gate = HoldGate {
            inner: TestGate::default(),
            held: vec!["!c:hs1"],
        };
        let body = |b: &str| serde_json::json!({ "body": b });
        let raws = [
            event("!a:hs1", "m.room.message", None, body("VS-VERTRAULICH")),
            event("!a:hs1", "m.room.message", None, body("danach")),
            event("!b:hs1", "m.room.message", None, body("frei")),
            event("!c:hs1", "m.room.message", None, body("wartet schon")),
        ];
        let views: Vec<PduView<'_>> = raws.iter().map(|r| PduView::parse(r).unwrap()).collect();
        let mut units = Units {
            pdus: views,
            pdu_pos: vec![0, 1, 2, 3],
            rooms: Some(&gate),
            ..Default::default()
        };
        let pos = |m: &[crate::policy::Modification]| m.iter().map(|m| m.pos).collect::<Vec<_>>();
        let v = check(&Holding, &ctx(), &units).unwrap();
        assert_eq!(pos(&v.hold), [0], "held");
        assert_eq!(
            pos(&v.queue),
            [1, 3],
            "behind a hold: in this body, or before"
        );
        assert!(v.redact.is_empty() && v.withhold.is_empty());
        // A reviewer's release: allowed (only when the room's queue delivers it: here the
        // test gate says nothing waits in room a).
        units.reviewed = vec![(0, D::Release)];
        let v = check(&Holding, &ctx(), &units).unwrap();
        assert!(v.hold.is_empty() && v.redact.is_empty());
        assert_eq!(pos(&v.queue), [3]);
        // A rejection: redacted.
        units.reviewed = vec![(0, D::Reject)];
        let v = check(&Holding, &ctx(), &units).unwrap();
        assert_eq!(pos(&v.redact), [0]);
        assert!(v.hold.is_empty());
        // Without a hold queue, hold acts as redact and nothing queues.
        units.reviewed.clear();
        let plain = TestGate::default();
        units.rooms = Some(&plain);
        let v = check(&Holding, &ctx(), &units).unwrap();
        assert_eq!(pos(&v.redact), [0]);
        assert!(v.hold.is_empty() && v.queue.is_empty());
        // Any other body: 404.
        units.rooms = Some(&gate);
        let fetch = ExchangeCtx {
            endpoint: catalog::by_id("backfill").unwrap(),
            ..ctx()
        };
        units.pdus.truncate(1);
        units.pdu_pos.truncate(1);
        let r = check(&Holding, &fetch, &units).unwrap_err();
        assert_eq!((r.status.as_u16(), r.errcode), (404, "M_NOT_FOUND"));
    }

    #[test]
    fn redacted_form_still_refused_pauses_the_room_and_withholds() {
        let gate = TestGate::default();
        let c = ctx();
        let mut screen = Screen::new(Some(&gate), Direction::Outbound);
        // v11 keeps all of the create content: the marking survives redaction.
        let create = event(
            "!a:hs1",
            "m.room.create",
            Some(""),
            serde_json::json!({"room_version": "11", "x": "GEHEIM"}),
        );
        let create = PduView::parse(&create).unwrap();
        let u = Unit::Pdu(&create);
        assert_eq!(screen.before(&u), Screened::Pass);
        let v = Marking.pdu(&c, &create);
        assert_eq!(
            screen.after(&Marking, &c, &u, &v),
            Screened::Withhold {
                room: "!a:hs1".into(),
                rule: "geheim".into()
            }
        );
        assert_eq!(
            gate.paused.lock().unwrap().clone(),
            vec![(
                Direction::Outbound,
                "!a:hs1".to_string(),
                "geheim".to_string()
            )]
        );
        // A later clean event of that room: withheld; the other direction is not paused.
        let msg = event(
            "!a:hs1",
            "m.room.message",
            None,
            serde_json::json!({"body": "hallo"}),
        );
        let msg = PduView::parse(&msg).unwrap();
        assert!(matches!(
            screen.before(&Unit::Pdu(&msg)),
            Screened::Withhold { .. }
        ));
        assert_eq!(
            Screen::new(Some(&gate), Direction::Inbound).before(&Unit::Pdu(&msg)),
            Screened::Pass
        );
        assert_eq!(
            gate.withheld.lock().unwrap().clone(),
            vec![CAUSE_REDACTION_KEPT, CAUSE_PAUSED]
        );
    }

    #[test]
    fn redaction_that_removes_the_marking_passes_and_pauses_nothing() {
        let gate = TestGate::default();
        let c = ctx();
        let mut screen = Screen::new(Some(&gate), Direction::Outbound);
        let msg = event(
            "!b:hs1",
            "m.room.message",
            None,
            serde_json::json!({"body": "Lage: GEHEIM"}),
        );
        let msg = PduView::parse(&msg).unwrap();
        let v = Marking.pdu(&c, &msg);
        assert!(
            matches!(v, PduVerdict::Redact { .. }),
            "the message itself is refused"
        );
        assert_eq!(
            screen.after(&Marking, &c, &Unit::Pdu(&msg), &v),
            Screened::Pass
        );
        // Allowed events are not re-judged at all.
        let clean = event(
            "!b:hs1",
            "m.room.message",
            None,
            serde_json::json!({"body": "hallo"}),
        );
        let clean = PduView::parse(&clean).unwrap();
        assert_eq!(
            screen.after(&Marking, &c, &Unit::Pdu(&clean), &PduVerdict::Allow),
            Screened::Pass
        );
        assert!(gate.paused.lock().unwrap().is_empty());
        // v11 keeps `type` and `state_key`: a marking there survives any redaction.
        let typed = event("!c:hs1", "GEHEIM.x", Some(""), serde_json::json!({"a": 1}));
        let typed = PduView::parse(&typed).unwrap();
        let v = Marking.pdu(&c, &typed);
        assert!(matches!(
            screen.after(&Marking, &c, &Unit::Pdu(&typed), &v),
            Screened::Withhold { .. }
        ));
        // power_levels `users` keys survive too.
        let pl = event(
            "!d:hs1",
            "m.room.power_levels",
            Some(""),
            serde_json::json!({"users": {"@GEHEIM:hs1": 100}, "x": "y"}),
        );
        let pl = PduView::parse(&pl).unwrap();
        let v = Marking.pdu(&c, &pl);
        assert!(matches!(
            screen.after(&Marking, &c, &Unit::Pdu(&pl), &v),
            Screened::Withhold { .. }
        ));
    }

    /// Captures the verdicts `decide` hands to the rewrite.
    struct Capture(Mutex<Option<crate::policy::Verdicts>>);
    impl crate::policy::Rewrite<crate::policy::Forward> for Capture {
        fn rewrite(
            &self,
            f: crate::policy::Forward,
            v: &crate::policy::Verdicts,
        ) -> Result<crate::policy::Forward, Refusal> {
            *self.0.lock().unwrap() = Some(v.clone());
            Ok(f)
        }
    }

    fn forward(method: http::Method, path_and_query: &str) -> crate::policy::Forward {
        crate::policy::Forward {
            method,
            path_and_query: path_and_query.into(),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
        }
    }

    #[test]
    fn decide_withholds_in_a_transaction_and_refuses_404_elsewhere() {
        let gate = TestGate::default();
        let create = event(
            "!a:hs1",
            "m.room.create",
            Some(""),
            serde_json::json!({"room_version": "11", "x": "GEHEIM"}),
        );
        let later = event(
            "!a:hs1",
            "m.room.message",
            None,
            serde_json::json!({"body": "hallo"}),
        );
        let other = event(
            "!b:hs1",
            "m.room.message",
            None,
            serde_json::json!({"body": "Lage GEHEIM"}),
        );
        let pdus: Vec<PduView<'_>> = [&create, &later, &other]
            .iter()
            .map(|r| PduView::parse(r).unwrap())
            .collect();
        let units = crate::policy::Units {
            pdu_pos: vec![0, 1, 2],
            pdus,
            rooms: Some(&gate),
            ..Default::default()
        };
        let cap = Capture(Mutex::new(None));
        crate::policy::decide(
            &Marking,
            &ctx(),
            &units,
            forward(http::Method::PUT, "/_matrix/federation/v1/send/t1"),
            &cap,
        )
        .unwrap();
        let v = cap.0.lock().unwrap().clone().unwrap();
        assert_eq!(
            v.withhold.iter().map(|m| m.pos).collect::<Vec<_>>(),
            vec![0, 1],
            "the create and the later event of its room"
        );
        assert_eq!(
            v.redact.iter().map(|m| m.pos).collect::<Vec<_>>(),
            vec![2],
            "the other room's message is only redacted"
        );

        // Outside a transaction: the exchange is refused with 404.
        let mut c = ctx();
        c.endpoint = catalog::by_id("backfill").unwrap();
        let units = crate::policy::Units {
            pdu_pos: vec![0],
            pdus: vec![PduView::parse(&later).unwrap()],
            rooms: Some(&gate),
            ..Default::default()
        };
        let r = crate::policy::decide(
            &Marking,
            &c,
            &units,
            forward(
                http::Method::GET,
                "/_matrix/federation/v1/backfill/%21a%3Ahs1?v=%24x&limit=1",
            ),
            &cap,
        )
        .unwrap_err();
        assert_eq!(
            (r.status, r.errcode, r.reason),
            (
                StatusCode::NOT_FOUND,
                "M_NOT_FOUND",
                RefusalReason::RoomPaused
            )
        );
    }

    #[test]
    fn without_a_gate_nothing_is_screened() {
        let c = ctx();
        let mut screen = Screen::new(None, Direction::Outbound);
        let create = event(
            "!a:hs1",
            "m.room.create",
            Some(""),
            serde_json::json!({"room_version": "11", "x": "GEHEIM"}),
        );
        let create = PduView::parse(&create).unwrap();
        let v = Marking.pdu(&c, &create);
        assert_eq!(
            screen.after(&Marking, &c, &Unit::Pdu(&create), &v),
            Screened::Pass
        );
    }

    #[test]
    fn typing_and_receipts_name_their_rooms() {
        let t = raw(
            serde_json::json!({"edu_type": "m.typing", "content": {"room_id": "!a:x", "user_id": "@u:x", "typing": true}}),
        );
        assert_eq!(
            edu_rooms(&EduView::parse(&t).unwrap()),
            vec!["!a:x".to_string()]
        );
        let r =
            raw(serde_json::json!({"edu_type": "m.receipt", "content": {"!a:x": {}, "!b:x": {}}}));
        assert_eq!(
            edu_rooms(&EduView::parse(&r).unwrap()),
            vec!["!a:x".to_string(), "!b:x".to_string()]
        );
        let p = raw(serde_json::json!({"edu_type": "m.presence", "content": {"push": []}}));
        assert!(edu_rooms(&EduView::parse(&p).unwrap()).is_empty());
    }
}
