//! Phases **forward**, **inspect_response** and **release**: the permitted bytes go upstream,
//! the answer is parsed strictly and judged, and only a `Permit<Release>` answers the requester.
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::inspect::inspect_response;
use super::{refuse, GuardResponse};
use crate::federation::catalog::{Direction as Part, Endpoint, Handler};
use crate::policy::{
    decide_response_recorded, Direction, ExchangeCtx, Forward, Refusal, RefusalReason, Release,
};
use crate::proxy::guard::Guard;
use crate::proxy::upstream::{strip_hop_by_hop, UpstreamError, UpstreamResponse};
use crate::proxy::{integrity, pause, rewrite, room_labels, rooms};
use crate::telemetry as tm;

/// Phase **forward**: the upstream client sends the permitted bytes.
pub(super) async fn send_upstream(
    guard: &Guard,
    direction: Direction,
    destination: &str,
    host_header: Option<String>,
    permit: crate::policy::Permit<Forward>,
    media: Option<crate::proxy::upstream::SpillSpec>,
) -> Result<UpstreamResponse, Refusal> {
    let destination = destination.to_string();
    let upstream = match direction {
        Direction::Inbound => guard.inbound_upstream(&destination),
        Direction::Outbound => guard.outbound_upstream(),
    }
    .ok_or_else(|| {
        refuse(
            RefusalReason::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "no upstream for this direction",
        )
    })?;
    let host = match direction {
        Direction::Inbound => host_header.unwrap_or_else(|| destination.clone()),
        Direction::Outbound => destination.clone(),
    };
    let up = match &media {
        Some(spill) => {
            upstream
                .send_media(permit, &destination, &host, spill)
                .await
        }
        None => upstream.send(permit, &destination, &host).await,
    };
    if let (Some(_), Err(UpstreamError::TooLarge { .. })) = (&media, &up) {
        tm::record_upstream(direction, None);
        return Err(refuse(
            RefusalReason::MediaRefused,
            StatusCode::FORBIDDEN,
            "M_TOO_LARGE",
            "media refused by the guard (too_large): the file exceeds the guard's limit",
        ));
    }
    let up = match up {
        Ok(r) => r,
        Err(e) => {
            tm::record_upstream(direction, None);
            return Err(upstream_refusal(&e));
        }
    };
    tm::record_upstream(direction, Some(up.status.as_u16()));
    Ok(up)
}

/// Phases **inspect_response** and **release**: strict parse of the response, the policy over it,
/// the permit to release it.
pub(super) async fn release(
    guard: &Guard,
    policy: &crate::policy::Layers,
    ctx: &ExchangeCtx,
    room_hint: Option<&str>,
    query_type: Option<&str>,
    notary: Option<&str>,
    up: UpstreamResponse,
) -> Result<GuardResponse, Refusal> {
    let (direction, endpoint) = (ctx.direction, ctx.endpoint);
    let mut resp_headers = up.headers;
    strip_hop_by_hop(&mut resp_headers);
    resp_headers.remove(http::header::CONTENT_LENGTH);
    // Media answers keep the disposition the media inspection judged; error answers are JSON.
    let json = endpoint.response_body.is_json() || !up.status.is_success();
    let extra: &[&str] = if json { &[] } else { &["content-disposition"] };
    crate::proxy::upstream::keep_headers(
        &mut resp_headers,
        crate::proxy::upstream::RESPONSE_HEADERS,
        extra,
        json,
    );
    let body = if up.status.is_success() && endpoint.handler == Handler::Keys {
        keys_in_transit(guard, endpoint, direction, notary, &ctx.protected, up.body)?
    } else {
        up.body
    };
    let release = Release {
        status: up.status,
        headers: resp_headers,
        body: body.clone(),
    };
    let permit = {
        let mut units = inspect_response(
            guard,
            endpoint,
            up.status,
            &release.headers,
            &body,
            query_type,
        )?;
        let gate = pause::Gate { guard, room_hint };
        units.rooms = Some(&gate);
        let left_out = rooms::settle(guard, ctx, Part::Response, room_hint, &body, &units).await?;
        units.omit.extend(left_out);
        let more =
            crate::proxy::perpdu::unacceptable(guard, ctx, Part::Response, &units, room_hint)?;
        units.omit.extend(more);
        let more = crate::proxy::ti_gate::screen(guard, ctx, Part::Response, &units).await?;
        units.omit.extend(more);
        room_labels::ensure(guard, ctx, direction.reverse(), &units, room_hint).await?;
        units.pdu_findings =
            integrity::check(guard, ctx, direction.reverse(), &units, room_hint).await?;
        let mut records = Vec::new();
        let decided = decide_response_recorded(
            policy,
            ctx,
            &units,
            release,
            &rewrite::ResponseRewriter {
                guard,
                ctx,
                endpoint,
                room_hint,
            },
            Some(&mut records),
        );
        // Recorded (durably) before the answer is released.
        crate::proxy::audit_trail::record_decisions(
            guard,
            ctx,
            true,
            &units,
            &records,
            policy.version(),
        )
        .await?;
        decided?
    };
    let rel = permit.into_inner();
    let mut resp = Response::new(Full::new(rel.body));
    *resp.status_mut() = rel.status;
    *resp.headers_mut() = rel.headers;
    Ok(resp)
}

/// Server keys crossing the guard.
///
/// - Outbound (a protected server fetches a remote's keys): the guard attests the remote's keys
///   with its own key, so it can re-sign inbound requests it modified (see ARCHITECTURE.md, "Key
///   attestation"); the verified originals also feed the guard's own key cache.
/// - Inbound (a remote asks a protected server's key server or notary): notary answers get the
///   remotes' original objects back, signed again as the notary (`keys::originals`); the guard
///   key never leaves.
///
/// Without a guard key configured, keys pass unchanged (inbound modifications are then refused).
fn keys_in_transit(
    guard: &Guard,
    endpoint: &'static Endpoint,
    direction: Direction,
    notary: Option<&str>,
    protected: &str,
    body: Bytes,
) -> Result<Bytes, Refusal> {
    use crate::keys::attest;
    let Some(key) = guard.guard_key() else {
        return Ok(body);
    };
    let bad = |e: attest::AttestError| {
        refuse(
            RefusalReason::Upstream,
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            format!("server keys refused: {e}"),
        )
    };
    let single = matches!(endpoint.id, "key_server" | "key_server_by_id");
    match direction {
        Direction::Outbound => {
            guard.key_originals().remember_response(&body);
            if single {
                if let Err(e) = guard
                    .remote_keys()
                    .insert_verified(&body, std::time::SystemTime::now())
                {
                    tracing::debug!("remote key object not cached: {e}");
                }
                attest::attest_server_keys(&body, key)
                    .map(Bytes::from)
                    .map_err(bad)
            } else if let Some(server_name) = notary {
                // The guard's own notary answer: attested and signed as the notary.
                let out = attest::attest_key_query_with(
                    &body,
                    key,
                    Some(attest::Notary { server_name, key }),
                )
                .map_err(bad)?;
                for (index, reason) in &out.dropped {
                    tracing::warn!(index, %reason, "notary: key object not attested, left out");
                }
                Ok(Bytes::from(out.body))
            } else {
                attest::attest_key_query(&body, key)
                    .map(Bytes::from)
                    .map_err(bad)
            }
        }
        Direction::Inbound => {
            let ids = [key.key_id()];
            if attest::contains_guard_key(&body, &ids) {
                let notary = guard.protected_key(protected).map(|k| (protected, k));
                crate::keys::originals::leaving_protected_side(
                    &body,
                    guard.key_originals(),
                    &ids,
                    notary,
                )
                .map(Bytes::from)
                .map_err(bad)
            } else {
                Ok(body)
            }
        }
    }
}

fn upstream_refusal(e: &UpstreamError) -> Refusal {
    // The log has the details; the peer learns only the kind of failure: upstream errors can
    // name internal addresses, ports and other servers' answers.
    tracing::warn!("upstream: {e}");
    match e {
        UpstreamError::Timeout { .. } => refuse(
            RefusalReason::Upstream,
            StatusCode::GATEWAY_TIMEOUT,
            "M_UNKNOWN",
            "the destination did not answer in time",
        ),
        UpstreamError::NoRoute { .. } => refuse(
            RefusalReason::NoRoute,
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            "no route to the destination",
        ),
        UpstreamError::NotCarried { reason, .. } => refuse(
            RefusalReason::Upstream,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            format!("the guard cannot pass this on: {reason}"),
        ),
        UpstreamError::Busy { .. } => refuse(
            RefusalReason::Overloaded,
            StatusCode::SERVICE_UNAVAILABLE,
            "M_LIMIT_EXCEEDED",
            "the guard is busy",
        ),
        UpstreamError::BadUrl(_) => refuse(
            RefusalReason::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "guard misconfiguration",
        ),
        _ => refuse(
            RefusalReason::Upstream,
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            "the destination could not be reached",
        ),
    }
}
