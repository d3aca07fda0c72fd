//! Applying policy verdicts to bodies in transit: redaction, EDU removal, to-device messages
//! removed per recipient device, user-data fields removed from responses, re-signing.
//!
//! Redaction uses the spec algorithm of the event's room version (`federation::redact`), so the
//! event keeps its id and its signatures; the receiver's content-hash check fails and it stores
//! the redacted form. A transaction never loses a PDU. Modified requests are re-signed:
//! outbound as the origin with the protected server's own key, inbound with the guard key that
//! the guard attests to the protected servers (see ARCHITECTURE.md, "Key attestation").
//! Responses are not signed and are rewritten freely.
//!
//! To-device EDUs with refused recipient devices are rebuilt without those messages
//! (`federation::userdata::without_messages`) and spliced in place of the original EDU; an EDU
//! left without messages is dropped. User-data fields are removed after any event redaction of
//! the same response (the field paths never point into events). Anything that cannot be applied
//! refuses the exchange: the original is never forwarded instead.
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::value::RawValue;

use super::guard::Guard;
use crate::federation::catalog::{Direction as Part, Endpoint, Handler};
use crate::federation::redact::{self, RedactError};
use crate::federation::txn::Transaction;
use crate::federation::{pdu, userdata, xmatrix};
use crate::keys::SigningKey;
use crate::policy::{
    Direction, ExchangeCtx, Forward, Refusal, RefusalReason, Release, Rewrite, Units, Verdicts,
};

/// Rewrites requests and re-signs them.
pub struct RequestRewriter<'a> {
    pub guard: &'a Guard,
    pub ctx: &'a ExchangeCtx,
    pub endpoint: &'static Endpoint,
    /// The `roomId` path parameter, if the endpoint has one (fallback for room version lookup).
    pub room_hint: Option<&'a str>,
}

/// Rewrites responses (unsigned: no re-signing needed).
pub struct ResponseRewriter<'a> {
    pub guard: &'a Guard,
    pub ctx: &'a ExchangeCtx,
    pub endpoint: &'static Endpoint,
    pub room_hint: Option<&'a str>,
}

fn policy_refusal(msg: impl Into<String>) -> Refusal {
    Refusal::forbidden(RefusalReason::Policy, msg)
}

fn internal(msg: impl Into<String>) -> Refusal {
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "M_UNKNOWN",
        RefusalReason::Internal,
        msg,
    )
}

fn redact_error(e: RedactError) -> Refusal {
    internal(format!("cannot redact in transit: {e}"))
}

/// Redacted replacements for every event the verdicts name, looked up by position.
/// The events of a non-transaction body in `pdus_in` order (see `policy::Units`).
fn events_of<'b>(
    endpoint: &'static Endpoint,
    part: Part,
    body: &'b [u8],
) -> Result<Vec<&'b RawValue>, Refusal> {
    Ok(pdu::pdus_in(endpoint, part, body)
        .map_err(|e| internal(format!("re-parse: {e}")))?
        .into_iter()
        .map(|f| f.raw)
        .collect())
}

/// Redacted replacements for every event the verdicts name; `raws` are the body's events in
/// the order the verdict positions refer to.
fn redactions(
    guard: &Guard,
    raws: &[&RawValue],
    verdicts: &Verdicts,
    room_hint: Option<&str>,
) -> Result<Vec<(usize, Box<RawValue>)>, Refusal> {
    let mut out = Vec::with_capacity(verdicts.redact.len());
    for m in &verdicts.redact {
        let raw = raws
            .get(m.pos)
            .ok_or_else(|| internal("event position out of range"))?;
        let room = m
            .room_id
            .as_deref()
            .or(room_hint)
            .ok_or_else(|| policy_refusal("event without room: cannot redact"))?;
        let known = guard
            .store()
            .room_version(room)
            .map_err(|e| internal(format!("room version lookup: {e}")))?;
        let version = known.as_deref().and_then(redact::parse_room_version).ok_or_else(|| {
            tracing::warn!(room, rule = %m.rule, known = ?known, "unknown or unsupported room version: the event cannot be redacted and does not pass");
            // Unknown now (the protected homeserver could not be asked): the sender retries.
            match known {
                None => super::rooms::unknown_version(),
                Some(_) => Refusal::forbidden(RefusalReason::UnknownRoomVersion, "unsupported room version: the event cannot be redacted, so it does not pass"),
            }
        })?;
        tracing::info!(room, rule = %m.rule, pos = m.pos, "redacting event in transit");
        out.push((
            m.pos,
            redact::redact_pdu(raw, &version).map_err(redact_error)?,
        ));
    }
    Ok(out)
}

/// Rebuilt to-device EDUs (by EDU index) for the refused recipient devices; EDUs left without
/// messages are added to `drop`.
fn to_device_rewrites(
    edus: &[&RawValue],
    v: &Verdicts,
    drop: &mut Vec<usize>,
) -> Result<Vec<(usize, Box<RawValue>)>, Refusal> {
    let mut indices: Vec<usize> = v.drop_to_device.iter().map(|d| d.edu).collect();
    indices.sort_unstable();
    indices.dedup();
    let mut out = Vec::with_capacity(indices.len());
    for i in indices {
        if drop.contains(&i) {
            return Err(internal("to-device EDU both dropped and rewritten"));
        }
        let raw = edus
            .get(i)
            .ok_or_else(|| internal("EDU position out of range"))?;
        let pairs: Vec<(&str, &str)> = v
            .drop_to_device
            .iter()
            .filter(|d| d.edu == i)
            .map(|d| (d.user_id.as_str(), d.device_id.as_str()))
            .collect();
        for d in v.drop_to_device.iter().filter(|d| d.edu == i) {
            tracing::info!(rule = %d.rule, edu = i, user = %d.user_id, device = %d.device_id, "dropping to-device message in transit");
        }
        match userdata::without_messages(raw, &pairs)
            .map_err(|e| internal(format!("cannot rebuild to-device EDU: {e}")))?
        {
            Some(edu) => out.push((i, edu)),
            None => {
                tracing::info!(edu = i, "to-device EDU has no messages left: dropped");
                drop.push(i);
            }
        }
    }
    Ok(out)
}

impl RequestRewriter<'_> {
    /// Who signs the modified request, as whom, for whom.
    pub(crate) fn signer(&self) -> Result<(&SigningKey, &str, &str), Refusal> {
        let peer = self
            .ctx
            .peer
            .as_deref()
            .ok_or_else(|| policy_refusal("unauthenticated request cannot be modified"))?;
        match self.ctx.direction {
            Direction::Outbound => {
                let key = self.guard.protected_key(&self.ctx.protected).ok_or_else(|| {
                    policy_refusal(format!("no signing key configured for {}: modified request cannot be re-signed", self.ctx.protected))
                })?;
                Ok((key, self.ctx.protected.as_str(), peer))
            }
            Direction::Inbound => {
                let key = self.guard.guard_key().ok_or_else(|| {
                    policy_refusal(
                        "no guard key configured: modified inbound request cannot be re-signed",
                    )
                })?;
                Ok((key, peer, self.ctx.protected.as_str()))
            }
        }
    }
}

impl Rewrite<Forward> for RequestRewriter<'_> {
    fn rewrite(&self, fwd: Forward, v: &Verdicts) -> Result<Forward, Refusal> {
        self.rewrite_request(fwd, v, None)
    }
}

/// A [`RequestRewriter`] that takes a transaction's PDUs and EDUs from the [`Units`] the
/// exchange built when it inspected the body, instead of parsing the transaction again.
///
/// Used only when `units` is the inspection of this very body: for a transaction the units
/// then hold every PDU (positions `0..n`, the positions the verdicts refer to) and every EDU,
/// in order. Anything else (other endpoints, units without the identity positions) falls back
/// to parsing. The splice checks that every element it keeps or replaces is a byte range of
/// the body being rewritten, so units of another body cannot be spliced in.
pub struct ParsedRequestRewriter<'r, 'b> {
    pub rewriter: RequestRewriter<'r>,
    pub units: &'r Units<'b>,
}

impl Rewrite<Forward> for ParsedRequestRewriter<'_, '_> {
    fn rewrite(&self, fwd: Forward, v: &Verdicts) -> Result<Forward, Refusal> {
        let u = self.units;
        let complete = self.rewriter.endpoint.handler == Handler::Transaction
            && u.events.is_empty()
            && u.pdu_pos.len() == u.pdus.len()
            && u.pdu_pos.iter().enumerate().all(|(i, &p)| i == p);
        if !complete {
            return self.rewriter.rewrite_request(fwd, v, None);
        }
        let pdus: Vec<&RawValue> = u.pdus.iter().map(|p| p.raw).collect();
        let edus: Vec<&RawValue> = u.edus.iter().map(|e| e.raw).collect();
        let fwd = self
            .rewriter
            .rewrite_request(fwd, v, Some((&pdus, &edus)))?;
        self.notify_redacted(v);
        Ok(fwd)
    }
}

impl ParsedRequestRewriter<'_, '_> {
    /// Tells the protected senders of outgoing PDUs redacted in transit (`proxy::notices`;
    /// only when notices are on). A retried transaction replays its first decision without
    /// coming here, so each redaction is told once.
    fn notify_redacted(&self, v: &Verdicts) {
        let guard = self.rewriter.guard;
        let notifier = guard.notifier();
        if self.rewriter.ctx.direction != crate::policy::Direction::Outbound
            || !notifier
                .config()
                .tells(super::notices::NoticeOutcome::Redacted)
        {
            return;
        }
        for m in &v.redact {
            let Some(i) = self.units.pdu_pos.iter().position(|&p| p == m.pos) else {
                continue;
            };
            let Some(pdu) = self.units.pdus.get(i) else {
                continue;
            };
            if !super::notices::is_protected_user(guard, &pdu.sender) {
                continue;
            }
            let (Some(room), Some(event_id)) = (
                pdu.room_id.as_deref(),
                super::pause::event_id_of(guard.store(), pdu.raw),
            ) else {
                continue;
            };
            let _ = notifier.notify(
                &pdu.sender,
                room,
                &event_id,
                super::notices::NoticeOutcome::Redacted,
                std::slice::from_ref(&m.rule),
            );
        }
    }
}

impl RequestRewriter<'_> {
    /// Applies the verdicts and re-signs. `parsed`: all PDUs and EDUs of a transaction body,
    /// in order, borrowed from `fwd.body` (else the transaction is parsed here).
    fn rewrite_request(
        &self,
        mut fwd: Forward,
        v: &Verdicts,
        parsed: Option<(&[&RawValue], &[&RawValue])>,
    ) -> Result<Forward, Refusal> {
        let (key, origin, destination) = self.signer()?;
        let body = if self.endpoint.handler == Handler::Transaction {
            let reparsed;
            let (pdus, edus) = match parsed {
                Some(p) => p,
                None => {
                    let limits = super::perpdu::read_limits(self.guard.txn_limits());
                    reparsed = Transaction::parse(&fwd.body, &limits)
                        .map_err(|e| internal(format!("re-parse: {e}")))?;
                    (&reparsed.pdus[..], &reparsed.edus[..])
                }
            };
            // Held and queued PDUs are taken over by the hold queue before anything crosses.
            super::hold::take_over(self.guard, self.ctx, pdus, v)?;
            let replacements = redactions(self.guard, pdus, v, self.room_hint)?;
            let mut drop: Vec<usize> = v.drop_edus.iter().map(|m| m.pos).collect();
            for m in &v.drop_edus {
                tracing::info!(rule = %m.rule, pos = m.pos, "dropping EDU in transit");
            }
            let edu_replacements = to_device_rewrites(edus, v, &mut drop)?;
            let body = redact::rebuild_elements(
                &fwd.body,
                pdus,
                edus,
                &replacements,
                &edu_replacements,
                &drop,
            )
            .map_err(redact_error)?;
            if v.withhold.is_empty() && v.hold.is_empty() && v.queue.is_empty() {
                body
            } else {
                // PDUs of paused rooms, held PDUs and those queued behind them leave the
                // transaction (positions are unchanged by the in-place redactions above).
                let positions: Vec<usize> = v
                    .withhold
                    .iter()
                    .chain(&v.hold)
                    .chain(&v.queue)
                    .map(|m| m.pos)
                    .collect();
                super::pause::without_pdus(&body, &positions)
                    .map_err(|_| internal("cannot remove withheld PDUs"))?
            }
        } else {
            if !v.withhold.is_empty() || !v.hold.is_empty() || !v.queue.is_empty() {
                return Err(internal("withheld PDUs outside a transaction"));
            }
            if !v.drop_edus.is_empty() || !v.drop_to_device.is_empty() {
                return Err(internal("EDUs outside a transaction"));
            }
            if !v.remove_fields.is_empty() {
                return Err(internal("user-data fields in a request"));
            }
            let raws = events_of(self.endpoint, Part::Request, &fwd.body)?;
            let replacements = redactions(self.guard, &raws, v, self.room_hint)?;
            redact::replace_events(&fwd.body, self.endpoint, Part::Request, &replacements)
                .map_err(redact_error)?
        };
        resign(&mut fwd, key, origin, destination, body)?;
        Ok(fwd)
    }
}

/// Puts a rewritten `body` into `fwd` and replaces its `Authorization` header with an X-Matrix
/// signature of the new request as `origin` for `destination`.
///
/// The body is signed as it is when it is canonical JSON (one pass of the canonical recogniser
/// validates it and shows that; a canonical body with canonical redacted events spliced in
/// stays canonical), else in its canonical form; a body that is not JSON, or not representable
/// in canonical JSON, is refused (500): nothing is forwarded that the signature does not cover.
pub fn resign(
    fwd: &mut Forward,
    key: &SigningKey,
    origin: &str,
    destination: &str,
    body: Vec<u8>,
) -> Result<(), Refusal> {
    let header = xmatrix::sign_request_body(
        key,
        origin,
        destination,
        fwd.method.as_str(),
        &fwd.path_and_query,
        &body,
    )
    .map_err(|e| internal(format!("re-signing: {e}")))?;
    let header = HeaderValue::from_str(&header)
        .map_err(|_| internal("re-signing produced an invalid header"))?;
    fwd.headers.insert(http::header::AUTHORIZATION, header);
    fwd.body = Bytes::from(body);
    Ok(())
}

impl Rewrite<Release> for ResponseRewriter<'_> {
    fn rewrite(&self, mut rel: Release, v: &Verdicts) -> Result<Release, Refusal> {
        let _ = self.ctx;
        if !v.drop_edus.is_empty() || !v.drop_to_device.is_empty() {
            return Err(internal("EDUs in a response"));
        }
        let mut body = if v.redact.is_empty() {
            rel.body.to_vec()
        } else {
            let raws = events_of(self.endpoint, Part::Response, &rel.body)?;
            let replacements = redactions(self.guard, &raws, v, self.room_hint)?;
            redact::replace_events(&rel.body, self.endpoint, Part::Response, &replacements)
                .map_err(redact_error)?
        };
        if !v.withhold.is_empty() {
            // Events the receiver would reject (`proxy::perpdu`) leave their arrays; positions
            // are unchanged by the redactions above.
            let positions: Vec<usize> = v.withhold.iter().map(|m| m.pos).collect();
            body = super::perpdu::without_events(&body, self.endpoint, Part::Response, &positions)
                .map_err(|e| {
                    Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        "M_UNKNOWN",
                        RefusalReason::Upstream,
                        format!("upstream sent an event that cannot be passed on: {e}"),
                    )
                })?;
        }
        if !v.remove_fields.is_empty() {
            for f in &v.remove_fields {
                tracing::info!(rule = %f.rule, field = f.kind.as_str(), path = %f.path, "removing user-data field in transit");
            }
            let paths: Vec<_> = v.remove_fields.iter().map(|f| &f.path).collect();
            body = userdata::remove_fields(&body, &paths)
                .map_err(|e| internal(format!("cannot remove user-data fields: {e}")))?;
        }
        rel.body = Bytes::from(body);
        Ok(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::federation::catalog;
    use crate::federation::txn::TxnLimits;
    use crate::policy::Modification;
    use crate::proxy::ca::Ca;
    use http::{HeaderMap, Method};

    const HS1: &str = "hs1.test";
    const REMOTE: &str = "remote.test";
    const ROOM: &str = "!r:remote.test";
    const PATH: &str = "/_matrix/federation/v1/send/t1";

    /// A guard protecting HS1 with a guard key (inbound re-signing), room v10 known.
    fn guard(dir: &std::path::Path) -> (Guard, SigningKey) {
        let ca = Ca::generate("rewrite test CA").unwrap();
        let (c, k) = ca
            .issue_pem(
                &["127.0.0.1".to_string()],
                std::time::Duration::from_secs(3600),
            )
            .unwrap();
        let (cert, key) = (dir.join("leaf.crt"), dir.join("leaf.key"));
        std::fs::write(&cert, c).unwrap();
        std::fs::write(&key, k).unwrap();
        let guard_key = SigningKey::generate("gw1").unwrap();
        let gk = dir.join("guard.signing.key");
        std::fs::write(&gk, guard_key.to_synapse_string()).unwrap();
        let toml = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[inbound]\nlisten = \"127.0.0.1:0\"\nverify_signatures = false\n\
             [keys]\nverify_pdus = false\nguard_key = \"{}\"\n[[protected]]\nserver_name = \"{HS1}\"\ncert = \"{}\"\nkey = \"{}\"\nupstream = \"http://127.0.0.1:9\"\n",
            gk.display(),
            cert.display(),
            key.display()
        );
        let cfg = Config::from_str(&toml, dir.join("guard.toml"))
            .unwrap_or_else(|e| panic!("config: {e}"));
        let g = Guard::from_config(&cfg, crate::store::Store::open_in_memory().unwrap()).unwrap();
        g.store().set_room_version(ROOM, "10", "test").unwrap();
        (g, guard_key)
    }

    fn pdu(i: usize, text: &str) -> String {
        format!(
            r#"{{"auth_events":[],"content":{{"body":"{text}","msgtype":"m.text"}},"depth":{i},"hashes":{{"sha256":"h"}},"origin_server_ts":1712345678901,"prev_events":[],"room_id":"{ROOM}","sender":"@a:{REMOTE}","signatures":{{}},"type":"m.room.message","unsigned":{{"age_ts":1}}}}"#
        )
    }

    fn body() -> Bytes {
        Bytes::from(format!(
            r#"{{"edus":[{{"content":{{"room_id":"{ROOM}","typing":true,"user_id":"@a:{REMOTE}"}},"edu_type":"m.typing"}},{{"content":{{"x":1}},"edu_type":"m.other"}}],"origin":"{REMOTE}","origin_server_ts":1,"pdus":[{},{},{}]}}"#,
            pdu(1, "eins"),
            pdu(2, "Lage: GEHEIM"),
            pdu(3, "drei")
        ))
    }

    fn units(body: &[u8]) -> Units<'_> {
        let t = Transaction::parse(body, &TxnLimits::SPEC).unwrap();
        let pdus: Vec<_> = t.pdu_views().collect::<Result<_, _>>().unwrap();
        let edus: Vec<_> = t.edu_views().collect::<Result<_, _>>().unwrap();
        Units {
            pdu_pos: (0..pdus.len()).collect(),
            pdus,
            edus,
            ..Units::default()
        }
    }

    fn forward(body: Bytes) -> Forward {
        Forward {
            method: Method::PUT,
            path_and_query: PATH.into(),
            headers: HeaderMap::new(),
            body,
        }
    }

    fn verdicts() -> Verdicts {
        Verdicts {
            redact: vec![Modification {
                pos: 1,
                room_id: Some(ROOM.into()),
                rule: "geheim".into(),
            }],
            drop_edus: vec![Modification {
                pos: 1,
                room_id: None,
                rule: "edu".into(),
            }],
            ..Verdicts::default()
        }
    }

    #[test]
    fn views_of_the_exchange_give_the_same_request_as_a_second_parse() {
        let dir = tempfile::tempdir().unwrap();
        let (g, guard_key) = guard(dir.path());
        let endpoint = catalog::lookup(&Method::PUT, PATH).unwrap().endpoint;
        let ctx = ExchangeCtx {
            direction: Direction::Inbound,
            endpoint,
            peer: Some(REMOTE.into()),
            protected: HS1.into(),
            txn_id: Some("t1".into()),
        };
        let rw = || RequestRewriter {
            guard: &g,
            ctx: &ctx,
            endpoint,
            room_hint: None,
        };
        let b = body();
        let u = units(&b);
        let reparsed = rw().rewrite(forward(b.clone()), &verdicts()).unwrap();
        let viewed = ParsedRequestRewriter {
            rewriter: rw(),
            units: &u,
        }
        .rewrite(forward(b.clone()), &verdicts())
        .unwrap();
        assert_eq!(reparsed.body, viewed.body);
        assert_eq!(
            reparsed.headers.get(http::header::AUTHORIZATION),
            viewed.headers.get(http::header::AUTHORIZATION)
        );
        // Redacted, EDU dropped, PDUs kept, and the guard's signature covers the new body.
        let text = std::str::from_utf8(&viewed.body).unwrap();
        assert!(
            !text.contains("GEHEIM")
                && text.contains("drei")
                && !text.contains("m.other")
                && text.contains("m.typing")
        );
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["pdus"].as_array().unwrap().len(), 3);
        let raw: &RawValue = serde_json::from_str(text).unwrap();
        let x = xmatrix::XMatrix::parse(
            viewed.headers[http::header::AUTHORIZATION]
                .to_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(x.origin.as_str(), REMOTE);
        xmatrix::verify_request(&x, "PUT", PATH, Some(raw), &guard_key.public_key())
            .expect("guard signature verifies");
    }

    #[test]
    fn views_of_another_body_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = guard(dir.path());
        let endpoint = catalog::lookup(&Method::PUT, PATH).unwrap().endpoint;
        let ctx = ExchangeCtx {
            direction: Direction::Inbound,
            endpoint,
            peer: Some(REMOTE.into()),
            protected: HS1.into(),
            txn_id: Some("t1".into()),
        };
        // Same content, different buffer: nothing of it may be spliced into the forwarded body.
        let other = Bytes::from(body().to_vec());
        let u = units(&other);
        let r = ParsedRequestRewriter {
            rewriter: RequestRewriter {
                guard: &g,
                ctx: &ctx,
                endpoint,
                room_hint: None,
            },
            units: &u,
        }
        .rewrite(forward(body()), &verdicts())
        .unwrap_err();
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.message);
    }
}
