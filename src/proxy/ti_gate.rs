//! Where the TI-Messenger profile (`crate::ti`) is enforced on traffic, and how its refusals
//! are answered, counted and recorded.
use http::StatusCode;

use super::guard::Guard;
use crate::policy::{Direction, Refusal, RefusalReason};
use crate::ti::TiDenial;

/// Counter of TI refusals by `reason` (`TiDenial::as_str`) and `side` (`inbound`, `outbound`,
/// `client`).
pub const TI_REFUSALS_TOTAL: &str = "grenzwacht_ti_refusals_total";

/// The Matrix error for a TI refusal: 403 `M_FORBIDDEN` naming the domain or user (a stale
/// list also refuses with 403: the sender must not retry into a blocked federation).
pub fn refusal(d: &TiDenial) -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
        RefusalReason::TiDenied,
        d.to_string(),
    )
}

/// Counts, logs and audits a TI refusal of a request that did not pass through the federation
/// exchange (the client-server listener); returns the refusal to answer with.
pub async fn record_client_refusal(
    guard: &Guard,
    d: &TiDenial,
    method: &str,
    path: &str,
    client: Option<String>,
) -> Refusal {
    metrics::counter!(TI_REFUSALS_TOTAL, "reason" => d.as_str(), "side" => "client").increment(1);
    tracing::info!(reason = d.as_str(), "TI: client request refused: {d}");
    let r = refusal(d);
    super::audit_trail::record_refusal(guard, Direction::Outbound, method, path, None, client, &r)
        .await;
    r
}

/// Endpoints that pass without a listed peer: what discovery, key verification and the VZD
/// need (the protected server's `.well-known`, its public keys, `openid/userinfo`). They carry
/// no room content. Everything else unauthenticated (`version` included) is refused.
const UNCHECKED_INBOUND: &[&str] = &[
    "well_known_server",
    "key_server",
    "key_server_by_id",
    "openid_userinfo",
];

fn side(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

fn denied(direction: Direction, d: &TiDenial) -> Refusal {
    metrics::counter!(TI_REFUSALS_TOTAL, "reason" => d.as_str(), "side" => side(direction))
        .increment(1);
    refusal(d)
}

/// Phase **ti** (before the body is read): the parties of the exchange.
///
/// * inbound: the X-Matrix `origin` must be listed; an unauthenticated request passes only to
///   the endpoints in [`UNCHECKED_INBOUND`] (the requester cannot be told otherwise);
/// * outbound: the destination — the signed X-Matrix `destination`, else the `Host` header (the
///   server name, as Synapse sends it), never the host the homeserver resolved and connects to;
///   a `.well-known/matrix/server` fetch by its host;
/// * media, both ways: the `{serverName}` of the path.
///
/// Same-domain traffic is not checked; a stale list refuses everything else.
pub async fn admit(
    guard: &Guard,
    direction: Direction,
    endpoint: &crate::federation::catalog::Endpoint,
    xm: Option<&crate::federation::xmatrix::XMatrix>,
    host_header: Option<&str>,
    proxy_destination: &str,
    params: &[(&'static str, String)],
) -> Result<(), Refusal> {
    let Some(ti) = guard.ti() else {
        return Ok(());
    };
    let check = |name: String| async move {
        ti.check_server(&name)
            .await
            .map_err(|d| denied(direction, &d))
    };
    // The room directory is not offered over federation in TI-Messenger (gematik A_26520).
    if direction == Direction::Inbound
        && matches!(endpoint.id, "public_rooms_get" | "public_rooms_post")
    {
        return Err(denied(
            direction,
            &TiDenial::ClientRule("the room directory is not available over federation".into()),
        ));
    }
    match direction {
        Direction::Inbound => match xm {
            Some(x) => check(x.origin.to_string()).await?,
            None if UNCHECKED_INBOUND.contains(&endpoint.id) => {}
            // Unauthenticated: 401 (gematik A_26331 asks this of `version`).
            None => {
                metrics::counter!(TI_REFUSALS_TOTAL, "reason" => "unauthenticated", "side" => side(direction))
                    .increment(1);
                return Err(Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "M_UNAUTHORIZED",
                    RefusalReason::TiDenied,
                    "unauthenticated federation requests are not accepted",
                ));
            }
        },
        Direction::Outbound => {
            let dest = xm
                .and_then(|x| x.destination.as_ref().map(|d| d.to_string()))
                .or_else(|| host_header.map(str::to_owned))
                .unwrap_or_else(|| proxy_destination.to_owned());
            check(dest).await?;
        }
    }
    if let Some((_, server)) = params.iter().find(|(k, _)| *k == "serverName") {
        if endpoint.class == crate::federation::EndpointClass::Media {
            check(server.clone()).await?;
        }
    }
    Ok(())
}

/// The Matrix domains an event names: its sender, the user of a member event's `state_key`,
/// `content.join_authorised_via_users_server`, the server names of its media (mxc URIs).
/// User IDs are read laxly on purpose: whatever follows the first `:` is checked, so a
/// malformed ID names a domain that is not listed rather than none.
pub fn named_domains(
    sender: &str,
    state_key: Option<&str>,
    event_type: &str,
    event: &serde_json::Value,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut user = |u: &str| {
        if let Some((_, server)) = u.strip_prefix('@').and_then(|u| u.split_once(':')) {
            out.push(server.to_owned());
        }
    };
    user(sender);
    if event_type == "m.room.member" {
        if let Some(k) = state_key {
            user(k);
        }
    }
    if let Some(u) = event["content"]
        .get("join_authorised_via_users_server")
        .and_then(|v| v.as_str())
    {
        user(u);
    }
    for r in crate::federation::mxc::refs_in_event(event) {
        out.push(r.server_name);
    }
    out.sort();
    out.dedup();
    out
}

/// An invite for a protected user (`membership: invite`, the `state_key` a user of a
/// protected server), as (inviter, invitee).
fn invite_of<'a>(
    ti: &crate::ti::Ti,
    sender: &'a str,
    event_type: &str,
    state_key: Option<&'a str>,
    event: &serde_json::Value,
) -> Option<(&'a str, &'a str)> {
    if event_type != "m.room.member" || event["content"]["membership"] != "invite" {
        return None;
    }
    let invitee = state_key?;
    let (_, server) = invitee.strip_prefix('@')?.split_once(':')?;
    ti.is_own(server).then_some((sender, invitee))
}

/// The events of a body under the TI profile: every domain they name must be listed, and an
/// invite for a protected user (data entering the protected side) needs the invitee's
/// permission. A transaction or response leaves such a PDU out (its position is returned); any
/// other request carrying one is refused.
pub async fn screen(
    guard: &Guard,
    ctx: &crate::policy::ExchangeCtx,
    part: crate::federation::catalog::Direction,
    units: &crate::policy::permit::Units<'_>,
) -> Result<Vec<usize>, Refusal> {
    use crate::federation::catalog::{Direction as Part, Handler};
    let Some(ti) = guard.ti() else {
        return Ok(Vec::new());
    };
    // The direction the data flows.
    let data = match part {
        Part::Request => ctx.direction,
        Part::Response => ctx.direction.reverse(),
    };
    let leaves_out = part == Part::Response || ctx.endpoint.handler == Handler::Transaction;
    let mut out = Vec::new();
    // One parse per event: the domains it names and, for invites entering the protected
    // side as requests (not history in a response), the invite to check.
    let judge = |raw: &serde_json::value::RawValue,
                 sender: &str,
                 state_key: Option<&str>,
                 event_type: &str| {
        let event: serde_json::Value =
            serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null);
        let domains = named_domains(sender, state_key, event_type, &event);
        let invite = (data == Direction::Inbound && part == Part::Request)
            .then(|| invite_of(ti, sender, event_type, state_key, &event))
            .flatten()
            .map(|(a, b)| (a.to_owned(), b.to_owned()));
        async move {
            for d in domains {
                ti.check_server(&d).await?;
            }
            if let Some((inviter, invitee)) = invite {
                ti.check_invite(&inviter, &invitee).await?;
            }
            Ok::<(), TiDenial>(())
        }
    };
    for (i, pdu) in units.pdus.iter().enumerate() {
        let r = judge(
            pdu.raw,
            &pdu.sender,
            pdu.state_key.as_deref(),
            &pdu.event_type,
        )
        .await;
        if let Err(d) = r {
            let r = denied(data, &d);
            if !leaves_out {
                return Err(r);
            }
            tracing::info!(room = ?pdu.room_id, sender = %pdu.sender, reason = d.as_str(), "TI: event left out: {d}");
            crate::telemetry::record_withheld(data, "ti_denied");
            super::audit_trail::record_ti_withheld(
                guard,
                ctx,
                part == Part::Response,
                pdu,
                d.as_str(),
            )
            .await;
            out.push(units.pdu_pos[i]);
        }
    }
    for ev in &units.events {
        let r = judge(ev.raw, &ev.sender, ev.state_key.as_deref(), &ev.event_type).await;
        if let Err(d) = r {
            return Err(denied(data, &d));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::named_domains;

    fn event(content: &str) -> serde_json::Value {
        serde_json::json!({ "content": serde_json::from_str::<serde_json::Value>(content).unwrap() })
    }

    #[test]
    fn every_domain_an_event_names_is_found() {
        // Sender, invitee of a member event, the restricted-join authoriser, media servers
        // (also in an edit's new content and a thumbnail), each once.
        let content = r#"{"membership":"invite","join_authorised_via_users_server":"@x:auth.example",
            "url":"mxc://media.example/abc","info":{"thumbnail_url":"mxc://thumbs.example:8448/t1"},
            "m.new_content":{"url":"mxc://edit.example/e1"}}"#;
        let d = named_domains(
            "@alice:hs2.example",
            Some("@bob:HS1.example:8448"),
            "m.room.member",
            &event(content),
        );
        for want in [
            "hs2.example",
            "HS1.example:8448",
            "auth.example",
            "media.example",
            "thumbs.example:8448",
            "edit.example",
        ] {
            assert!(d.iter().any(|x| x == want), "{want} missing from {d:?}");
        }
        // The state key of a non-member event is not a user.
        let d = named_domains(
            "@a:one.example",
            Some("@b:two.example"),
            "m.room.topic",
            &event("{}"),
        );
        assert_eq!(d, vec!["one.example".to_string()]);
        // An event that is not JSON names only the sender.
        let d = named_domains(
            "@a:one.example",
            None,
            "m.room.message",
            &serde_json::Value::Null,
        );
        assert_eq!(d, vec!["one.example".to_string()]);
    }
}
