//! Room versions: learned from authoritative sources only, looked up at the protected
//! homeserver when unknown (needed to verify and to redact correctly).
//!
//! # Sources and their strength
//!
//! Every version is stored with the strength of its source (`store::Store::set_room_version_ranked`):
//! a stronger source corrects a weaker one; a claim of equal or lesser strength never changes
//! a stored version (among equals the first wins). Each claim is counted in
//! [`CLAIMS_TOTAL`]`{source,outcome}` and a conflict or correction is logged.
//!
//! | strength | source (`learned_from`) |
//! |---|---|
//! | 3, create | `create_event`: an `m.room.create` PDU (in any request or response) that passes the create auth rules ([`create::auth_rules`]) and whose signatures and content hash the guard verified ([`create::verify`]: signed by the sender's server, which in versions 1–11 must be the room id's server; in version 12+ the room id is the event's reference hash) — the room's own definition |
//! | 2, authoritative | `admin_api`: the protected homeserver's answer for a room it has joined members in ([`lookup`]); `protected_make_join`/`_leave`/`_knock`: a protected server's answer to a remote's `make_*`; `protected_invite_v2`: the `room_version` of an invite a protected server sends |
//! | 1, answer | `make_join`/`make_leave`/`make_knock`: a remote room server's answer to a protected server's `make_*` request; `protected_invite_v1`: a v1 invite a protected server sends (version 1) |
//! | 0, claim | `invite_v2`, `invite_v1`: the version a remote's invite names (v1 invites are for rooms of version 1 or 2, judged as 1), only for a room the guard knows nothing about and never for a room of a protected server; `create_event_unverified`: a create event that passes the auth rules while `[keys] verify_pdus = false`; rows stored before sources were ranked |
//!
//! The create event outranks the protected server's word: a homeserver may hold a version it
//! was told by an invite before it joined, and the create event it receives on joining is what
//! the room is. (A room server of versions 1–11 can sign a second create event for its own
//! room; among create events the first learned wins, and only that server's own room is
//! affected.)
//!
//! A create event that fails the auth rules or the guard's verification teaches nothing
//! (`outcome="unverified"`, logged): a remote cannot pin a wrong version on a room, neither
//! by a forged create event nor by an invite. Stripped state (invites, knocks) is unsigned and
//! teaches nothing.
//!
//! # Rooms whose version is unknown
//!
//! [`settle`] runs before the integrity check and the policy: for every room of the body whose
//! version is unknown, only claimed, or not one the guard knows rules for, it asks the
//! protected homeserver ([`lookup`], Synapse's admin API) and stores the answer as
//! authoritative. If the version is still unusable and a PDU of that room must be verified
//! (data entering the protected side, `[keys] verify_pdus`), the exchange is refused:
//! 503 when the lookup failed or no admin API is configured (the sender retries; the refusal
//! is not stored as a transaction decision, so the retry is judged again); when the
//! homeserver does not know the room, a transaction's PDUs of that room are left out on their
//! own (returned by [`settle`]; no entry in the answer, as Synapse ignores events of rooms it
//! does not know) and any other request is refused with 403 (its events cannot be verified);
//! a claimed version the guard has no rules for is 400 `M_UNSUPPORTED_ROOM_VERSION`. Elsewhere a failed
//! lookup refuses nothing here; a redaction that needs the version refuses later (503,
//! `proxy::rewrite`). Lost store: every room the protected homeserver is in is learned again
//! on its first event.
use std::borrow::Cow;
use std::collections::BTreeMap;

use http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::guard::Guard;
use crate::federation::catalog::{Direction as Part, Handler};
use crate::federation::redact;
use crate::policy::{Direction, ExchangeCtx, Refusal, RefusalReason, Units};
use crate::store::RoomVersionClaim;

pub mod create;
pub mod lookup;

/// Counter: room version claims, by `source` (the `learned_from` labels of the module docs)
/// and `outcome` (`learned`, `confirmed`, `corrected`, `conflict`, `unverified`, `ignored`: a
/// remote's claim for a protected server's room, `failed`: not stored).
pub const CLAIMS_TOTAL: &str = "grenzwacht_room_version_claims_total";

/// Strength of a claim a remote makes without proof.
pub const CLAIM: u8 = 0;
/// Strength of a remote room server's answer to the protected server.
pub const ANSWER: u8 = 1;
/// Strength of the protected server's own word.
pub const AUTHORITATIVE: u8 = 2;
/// Strength of a verified create event: the room's definition, signed by its creator's server.
pub const CREATE: u8 = 3;

/// Where a room version comes from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A create event that passed the auth rules and the guard's verification.
    CreateEvent,
    /// A create event that passed the auth rules, PDU verification switched off.
    CreateEventUnverified,
    /// The protected homeserver's admin API.
    AdminApi,
    /// A protected server's answer to a remote's `make_join`/`make_leave`/`make_knock`.
    ProtectedTemplate(&'static str),
    /// A remote's answer to a protected server's `make_join`/`make_leave`/`make_knock`.
    RemoteTemplate(&'static str),
    /// An invite (v2) a protected server sends.
    ProtectedInviteV2,
    /// A v1 invite a protected server sends.
    ProtectedInviteV1,
    /// An invite (v2) a remote sends.
    RemoteInviteV2,
    /// A v1 invite a remote sends.
    RemoteInviteV1,
}

impl Source {
    /// The `learned_from` label (and metric label value).
    pub fn label(self) -> &'static str {
        match self {
            Source::CreateEvent => "create_event",
            Source::CreateEventUnverified => "create_event_unverified",
            Source::AdminApi => "admin_api",
            Source::ProtectedTemplate("make_join") => "protected_make_join",
            Source::ProtectedTemplate("make_leave") => "protected_make_leave",
            Source::ProtectedTemplate("make_knock") => "protected_make_knock",
            Source::ProtectedTemplate(_) => "protected_template",
            Source::RemoteTemplate("make_join") => "make_join",
            Source::RemoteTemplate("make_leave") => "make_leave",
            Source::RemoteTemplate("make_knock") => "make_knock",
            Source::RemoteTemplate(_) => "template",
            Source::ProtectedInviteV2 => "protected_invite_v2",
            Source::ProtectedInviteV1 => "protected_invite_v1",
            Source::RemoteInviteV2 => "invite_v2",
            Source::RemoteInviteV1 => "invite_v1",
        }
    }

    /// The strength the store ranks it by.
    pub fn strength(self) -> u8 {
        match self {
            Source::CreateEvent => CREATE,
            Source::AdminApi | Source::ProtectedTemplate(_) | Source::ProtectedInviteV2 => {
                AUTHORITATIVE
            }
            Source::RemoteTemplate(_) | Source::ProtectedInviteV1 => ANSWER,
            Source::CreateEventUnverified | Source::RemoteInviteV2 | Source::RemoteInviteV1 => {
                CLAIM
            }
        }
    }
}

#[derive(Deserialize)]
struct TopVersion<'a> {
    #[serde(borrow, default)]
    room_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CreateContent<'a> {
    #[serde(borrow, default)]
    room_version: Option<Cow<'a, str>>,
}

fn create_version(content: &RawValue) -> Option<String> {
    let c: CreateContent<'_> = serde_json::from_str(content.get()).ok()?;
    Some(
        c.room_version
            .map(|v| v.into_owned())
            .unwrap_or_else(|| "1".to_string()),
    )
}

/// The room id of a room version 12+ create event, which has no `room_id`: `!` followed by the
/// event's reference hash (the create event's id with `!` instead of `$`). `None` for room
/// versions that carry `room_id` in the create event, or a malformed event.
pub fn create_room_id(pdu: &crate::federation::pdu::PduView<'_>) -> Option<String> {
    let version = crate::federation::redact::parse_room_version(&create_version(pdu.content)?)?;
    let rules = version.rules()?;
    if !rules.authorization.room_create_event_id_as_room_id {
        return None;
    }
    let obj: ruma::CanonicalJsonObject = serde_json::from_str(pdu.raw.get()).ok()?;
    let hash = ruma::signatures::reference_hash(&obj, &rules).ok()?;
    Some(format!("!{hash}"))
}

fn count(source: Source, outcome: &'static str) {
    metrics::counter!(CLAIMS_TOTAL, "source" => source.label(), "outcome" => outcome).increment(1);
}

/// Stores a claim with its source's strength (on the blocking pool: it may write to SQLite);
/// counts and logs what it did.
pub async fn record(guard: &Guard, room: &str, version: &str, source: Source) {
    let (store, r, v) = (guard.store().clone(), room.to_owned(), version.to_owned());
    let stored = tokio::task::spawn_blocking(move || {
        store.set_room_version_ranked(&r, &v, source.label(), source.strength())
    })
    .await;
    let Ok(stored) = stored else {
        tracing::warn!(room, version, "room version write did not complete");
        count(source, "failed");
        return;
    };
    let outcome = match stored {
        Ok(RoomVersionClaim::Learned) => {
            tracing::debug!(room, version, from = source.label(), "room version learned");
            "learned"
        }
        Ok(RoomVersionClaim::Confirmed) => "confirmed",
        Ok(RoomVersionClaim::Corrected {
            previous,
            previous_from,
        }) => {
            tracing::info!(room, version, from = source.label(), %previous, %previous_from, "room version corrected by a stronger source");
            "corrected"
        }
        Ok(RoomVersionClaim::Conflict { known, known_from }) => {
            tracing::warn!(room, version, from = source.label(), %known, %known_from, "room version claim conflicts with a source at least as strong; ignored");
            "conflict"
        }
        Err(e) => {
            tracing::warn!(
                room,
                version,
                from = source.label(),
                "cannot store room version: {e}"
            );
            "failed"
        }
    };
    count(source, outcome);
}

/// Whether `room` is a room of a protected server (its id names one; version 12+ room ids
/// name no server).
fn protected_room(guard: &Guard, room: &str) -> bool {
    room.split_once(':')
        .is_some_and(|(_, server)| guard.is_protected(server))
}

/// A remote's unproven claim: only for a room the guard knows nothing about, never for a room
/// of a protected server (its homeserver is asked instead).
async fn record_claim(guard: &Guard, room: &str, version: &str, source: Source) {
    if protected_room(guard, room) {
        tracing::info!(
            room,
            version,
            from = source.label(),
            "a remote's room version claim for a protected server's room is not used"
        );
        count(source, "ignored");
        return;
    }
    record(guard, room, version, source).await;
}

/// Learns the room versions the body reveals, from the sources of the module docs.
pub async fn learn(
    guard: &Guard,
    ctx: &ExchangeCtx,
    part: Part,
    room_hint: Option<&str>,
    body: &[u8],
    units: &Units<'_>,
) {
    let endpoint = ctx.endpoint;
    let outbound = ctx.direction == Direction::Outbound;
    if let Some(room) = room_hint {
        let top = || match serde_json::from_slice::<TopVersion<'_>>(body) {
            Ok(TopVersion {
                room_version: Some(v),
            }) => Some(v.into_owned()),
            _ => None,
        };
        match (endpoint.handler, endpoint.id, part) {
            (Handler::Template, id, Part::Response) => {
                if let Some(v) = top() {
                    // An outbound request's answer comes from the remote room server.
                    let source = match outbound {
                        true => Source::RemoteTemplate(id),
                        false => Source::ProtectedTemplate(id),
                    };
                    record(guard, room, &v, source).await;
                }
            }
            (_, "invite_v2", Part::Request) => {
                if let Some(v) = top() {
                    match outbound {
                        true => record(guard, room, &v, Source::ProtectedInviteV2).await,
                        false => record_claim(guard, room, &v, Source::RemoteInviteV2).await,
                    }
                }
            }
            // A v1 invite is for a room of version 1 or 2 (the spec sends every other version
            // through v2 invites); both share the event format and redaction rules, so version 1
            // is what the guard needs to judge it.
            (_, "invite_v1", Part::Request) => match outbound {
                true => record(guard, room, "1", Source::ProtectedInviteV1).await,
                false => record_claim(guard, room, "1", Source::RemoteInviteV1).await,
            },
            _ => {}
        }
    }
    for pdu in units
        .pdus
        .iter()
        .filter(|p| p.event_type == "m.room.create")
    {
        let claim = match create::auth_rules(pdu) {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(room = ?pdu.room_id, sender = %pdu.sender, why, "a create event that fails the create auth rules teaches no room version");
                count(Source::CreateEvent, "unverified");
                continue;
            }
        };
        if !guard.verify_pdus() {
            record(
                guard,
                &claim.room,
                &claim.version,
                Source::CreateEventUnverified,
            )
            .await;
            continue;
        }
        // Already known from an authoritative source with this version: nothing to verify.
        if let Ok(Some(known)) = guard.store().room_version_record(&claim.room) {
            if known.strength >= AUTHORITATIVE && known.version == claim.version {
                count(Source::CreateEvent, "confirmed");
                continue;
            }
        }
        match create::verify(guard, pdu, &claim).await {
            Ok(()) => record(guard, &claim.room, &claim.version, Source::CreateEvent).await,
            Err(why) => {
                tracing::warn!(room = %claim.room, version = %claim.version, sender = %pdu.sender, "a create event the guard cannot verify teaches no room version: {why}");
                count(Source::CreateEvent, "unverified");
            }
        }
    }
}

/// 503: the version of a room whose events must be verified or redacted cannot be had now.
pub fn unknown_version() -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNKNOWN",
        RefusalReason::UnknownRoomVersion,
        "the guard cannot determine the room version now; retry later",
    )
}

/// A room version the guard has no rules for: 400 `M_UNSUPPORTED_ROOM_VERSION`, as Synapse.
pub fn unsupported_version() -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "M_UNSUPPORTED_ROOM_VERSION",
        RefusalReason::UnknownRoomVersion,
        "unsupported room version: the event cannot be verified, so it does not pass",
    )
}

/// Before the integrity check and the policy (see the module docs): every room of the body
/// has a usable version, looked up at the protected homeserver if needed. `data` is the
/// direction the data flows.
pub async fn ensure(
    guard: &Guard,
    ctx: &ExchangeCtx,
    data: Direction,
    units: &Units<'_>,
    room_hint: Option<&str>,
) -> Result<Vec<String>, Refusal> {
    let mut left_out = Vec::new();
    if units.pdus.is_empty() && units.events.is_empty() {
        return Ok(left_out);
    }
    // A transaction's PDUs for a room the protected homeserver does not know are left out on
    // their own (Synapse ignores them too); the transaction's other PDUs go on.
    let per_pdu = ctx.endpoint.handler == Handler::Transaction && data == ctx.direction;
    // Room → must its version be known (a PDU the guard verifies)?
    let verifying = data == Direction::Inbound && guard.verify_pdus();
    // Borrowed where the body names the room (no allocation per PDU on the hot path).
    let mut rooms: BTreeMap<Cow<'_, str>, bool> = BTreeMap::new();
    for pdu in &units.pdus {
        let room = match pdu.room_id.as_deref() {
            Some(r) => Some(Cow::Borrowed(r)),
            None => super::integrity::pdu_room(pdu, room_hint).map(Cow::Owned),
        };
        if let Some(room) = room {
            *rooms.entry(room).or_default() |= verifying;
        }
    }
    for e in &units.events {
        if let Some(room) = e.room_id.as_deref().or(room_hint) {
            rooms.entry(Cow::Borrowed(room)).or_default();
        }
    }
    for (room, required) in rooms {
        let known = match guard.store().room_version_record(&room) {
            Ok(k) => k,
            Err(e) if required => {
                tracing::warn!(room = %room, "room version lookup: {e}");
                return Err(unknown_version());
            }
            Err(_) => continue,
        };
        let usable = known
            .as_ref()
            .is_some_and(|k| redact::parse_room_version(&k.version).is_some());
        let settled = match &known {
            None => false,
            // What the protected homeserver or a verified create event said stays, even a
            // version the guard has no rules for (then its events are refused, 400).
            Some(k) if k.strength >= AUTHORITATIVE => true,
            Some(k) => usable && k.strength > CLAIM,
        };
        if settled {
            continue;
        }
        match lookup::room_version(guard, &ctx.protected, &room).await {
            lookup::Lookup::Found(v) => record(guard, &room, &v, Source::AdminApi).await,
            _ if usable || !required => {}
            lookup::Lookup::UnknownRoom if per_pdu => {
                crate::telemetry::record_withheld(data, super::perpdu::CAUSE_UNKNOWN_ROOM);
                tracing::info!(room = %room, "room unknown to the protected homeserver: its PDUs are left out of the transaction");
                left_out.push(room.into_owned());
            }
            lookup::Lookup::UnknownRoom if known.is_some() => {
                // Only a claim of a version the guard has no rules for (e.g. an invite's
                // `room_version`): answered as Synapse answers a version it does not implement.
                crate::telemetry::record_pdu_check(data, "unknown_room_version");
                tracing::warn!(room = %room, "room version claimed but not supported, and the protected homeserver does not know the room");
                return Err(unsupported_version());
            }
            lookup::Lookup::UnknownRoom => {
                crate::telemetry::record_pdu_check(data, "unknown_room_version");
                tracing::warn!(room = %room, "unknown room version, and the protected homeserver does not know the room: its events cannot be verified and do not pass");
                return Err(Refusal::forbidden(
                    RefusalReason::UnknownRoomVersion,
                    "unknown room version: the event cannot be verified, so it does not pass",
                ));
            }
            _ => {
                crate::telemetry::record_pdu_check(data, "unknown_room_version");
                tracing::warn!(room = %room, "unknown room version and no answer from the protected homeserver: refused for now, the sender retries");
                return Err(unknown_version());
            }
        }
    }
    Ok(left_out)
}

/// The room version phase of an exchange: [`learn`] from the body, then [`ensure`] every room
/// of it has a usable version.
///
/// Returns the positions (as in `units.pdu_pos`) of a transaction's PDUs in rooms the
/// protected homeserver does not know: they are left out, the others go on.
pub async fn settle(
    guard: &Guard,
    ctx: &ExchangeCtx,
    part: Part,
    room_hint: Option<&str>,
    body: &[u8],
    units: &Units<'_>,
) -> Result<Vec<usize>, Refusal> {
    learn(guard, ctx, part, room_hint, body, units).await;
    let data = match part {
        Part::Request => ctx.direction,
        Part::Response => ctx.direction.reverse(),
    };
    let rooms = ensure(guard, ctx, data, units, room_hint).await?;
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    Ok(units
        .pdus
        .iter()
        .zip(&units.pdu_pos)
        .filter(|(pdu, _)| {
            super::integrity::pdu_room(pdu, room_hint).is_some_and(|r| rooms.contains(&r))
        })
        .map(|(_, pos)| *pos)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::federation::catalog;
    use crate::proxy::ca::Ca;
    use http::Method;

    const HS1: &str = "hs1.test";

    /// A guard protecting HS1 (no outbound, PDU verification off, no admin API).
    fn guard(dir: &std::path::Path) -> Guard {
        let ca = Ca::generate("rooms test CA").unwrap();
        let (c, k) = ca
            .issue_pem(
                &["127.0.0.1".to_string()],
                std::time::Duration::from_secs(3600),
            )
            .unwrap();
        let (cert, key) = (dir.join("leaf.crt"), dir.join("leaf.key"));
        std::fs::write(&cert, c).unwrap();
        std::fs::write(&key, k).unwrap();
        let toml = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[inbound]\nlisten = \"127.0.0.1:0\"\nverify_signatures = false\n\
             [keys]\nverify_pdus = false\n[[protected]]\nserver_name = \"{HS1}\"\ncert = \"{}\"\nkey = \"{}\"\nupstream = \"http://127.0.0.1:9\"\n",
            cert.display(),
            key.display()
        );
        let cfg = Config::from_str(&toml, dir.join("guard.toml"))
            .unwrap_or_else(|e| panic!("config: {e}"));
        Guard::from_config(&cfg, crate::store::Store::open_in_memory().unwrap()).unwrap()
    }

    fn ctx(direction: Direction, method: Method, path: &str) -> ExchangeCtx {
        let m = catalog::lookup(&method, path).expect("catalogued");
        ExchangeCtx {
            direction,
            endpoint: m.endpoint,
            peer: Some("remote.test".into()),
            protected: HS1.into(),
            txn_id: None,
        }
    }

    fn stored(g: &Guard, room: &str) -> Option<(String, String, u8)> {
        g.store()
            .room_version_record(room)
            .unwrap()
            .map(|r| (r.version, r.learned_from, r.strength))
    }

    /// Who answered or sent decides the strength: the same body teaches differently by
    /// direction, and a remote's word never overrides a stronger source.
    #[tokio::test]
    async fn the_direction_of_an_exchange_decides_its_sources_strength() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path());
        let units = Units::default();
        let template = br#"{"room_version":"10","event":{}}"#;
        let join = "/_matrix/federation/v1/make_join/%21a%3Aremote.test/%40alice%3Ahs1.test";

        // hs1 asked a remote room server: an answer (1).
        let out = ctx(Direction::Outbound, Method::GET, join);
        learn(
            &g,
            &out,
            Part::Response,
            Some("!a:remote.test"),
            template,
            &units,
        )
        .await;
        assert_eq!(
            stored(&g, "!a:remote.test"),
            Some(("10".into(), "make_join".into(), ANSWER))
        );
        // A remote asked hs1: hs1's own answer (2), which corrects a weaker claim.
        g.store()
            .set_room_version("!b:hs1.test", "13", "invite_v2")
            .unwrap();
        let inb = ctx(
            Direction::Inbound,
            Method::GET,
            "/_matrix/federation/v1/make_join/%21b%3Ahs1.test/%40bob%3Aremote.test",
        );
        learn(
            &g,
            &inb,
            Part::Response,
            Some("!b:hs1.test"),
            template,
            &units,
        )
        .await;
        assert_eq!(
            stored(&g, "!b:hs1.test"),
            Some(("10".into(), "protected_make_join".into(), AUTHORITATIVE))
        );

        // Invites: a remote's v2 invite is a claim for its own room only ...
        let invite = |room: &str| {
            format!(
                "/_matrix/federation/v2/invite/{}/%24e",
                catalog::encode_segment(room)
            )
        };
        let v13 = br#"{"room_version":"13","event":{},"invite_room_state":[]}"#;
        let r = invite("!c:hs1.test");
        learn(
            &g,
            &ctx(Direction::Inbound, Method::PUT, &r),
            Part::Request,
            Some("!c:hs1.test"),
            v13,
            &units,
        )
        .await;
        assert_eq!(
            stored(&g, "!c:hs1.test"),
            None,
            "never for a protected server's room"
        );
        let r = invite("!d:remote.test");
        learn(
            &g,
            &ctx(Direction::Inbound, Method::PUT, &r),
            Part::Request,
            Some("!d:remote.test"),
            v13,
            &units,
        )
        .await;
        assert_eq!(
            stored(&g, "!d:remote.test"),
            Some(("13".into(), "invite_v2".into(), CLAIM))
        );
        // ... hs1's own invite is authoritative and corrects it.
        let v11 = br#"{"room_version":"11","event":{},"invite_room_state":[]}"#;
        learn(
            &g,
            &ctx(Direction::Outbound, Method::PUT, &r),
            Part::Request,
            Some("!d:remote.test"),
            v11,
            &units,
        )
        .await;
        assert_eq!(
            stored(&g, "!d:remote.test"),
            Some(("11".into(), "protected_invite_v2".into(), AUTHORITATIVE))
        );
        // A remote's make_join answer cannot override it.
        let j = "/_matrix/federation/v1/make_join/%21d%3Aremote.test/%40alice%3Ahs1.test";
        learn(
            &g,
            &ctx(Direction::Outbound, Method::GET, j),
            Part::Response,
            Some("!d:remote.test"),
            template,
            &units,
        )
        .await;
        assert_eq!(stored(&g, "!d:remote.test").unwrap().0, "11");

        // A v1 invite implies version 1, as a claim.
        let v1 = "/_matrix/federation/v1/invite/%21e%3Aremote.test/%24e%3Aremote.test";
        learn(
            &g,
            &ctx(Direction::Inbound, Method::PUT, v1),
            Part::Request,
            Some("!e:remote.test"),
            b"{}",
            &units,
        )
        .await;
        assert_eq!(
            stored(&g, "!e:remote.test"),
            Some(("1".into(), "invite_v1".into(), CLAIM))
        );
    }

    #[test]
    fn sources_are_ranked_as_documented() {
        // A remote's word never outranks an answer or an authoritative source.
        for weak in [
            Source::RemoteInviteV1,
            Source::RemoteInviteV2,
            Source::CreateEventUnverified,
        ] {
            assert_eq!(weak.strength(), CLAIM, "{weak:?}");
        }
        for answer in [
            Source::RemoteTemplate("make_join"),
            Source::ProtectedInviteV1,
        ] {
            assert_eq!(answer.strength(), ANSWER, "{answer:?}");
        }
        assert_eq!(Source::CreateEvent.strength(), CREATE);
        for strong in [
            Source::AdminApi,
            Source::ProtectedTemplate("make_knock"),
            Source::ProtectedInviteV2,
        ] {
            assert_eq!(strong.strength(), AUTHORITATIVE, "{strong:?}");
        }
        // Labels are distinct (they are stored and used as metric labels).
        let all = [
            Source::CreateEvent,
            Source::CreateEventUnverified,
            Source::AdminApi,
            Source::ProtectedTemplate("make_join"),
            Source::ProtectedTemplate("make_leave"),
            Source::ProtectedTemplate("make_knock"),
            Source::RemoteTemplate("make_join"),
            Source::RemoteTemplate("make_leave"),
            Source::RemoteTemplate("make_knock"),
            Source::ProtectedInviteV2,
            Source::ProtectedInviteV1,
            Source::RemoteInviteV2,
            Source::RemoteInviteV1,
        ];
        let labels: std::collections::BTreeSet<_> = all.iter().map(|s| s.label()).collect();
        assert_eq!(labels.len(), all.len());
    }
}
