//! The forwarding layer's way across a split appliance (`crate::split`): a permitted request
//! crosses the link to the other half as a frame, and the other half's answer comes back
//! released by its policy ([`Released`]).
use bytes::Bytes;

use super::upstream::{UpstreamError, UpstreamResponse};
use crate::policy::{Forward, Permit};
use crate::split::link::{self, Link};
use crate::split::{wire, Released};

/// The forwarding layer's way over the link: the permitted request crosses as a frame, the
/// other half's answer comes back as a released response.
pub async fn forward(
    link: &Link,
    permit: Permit<Forward>,
    destination: &str,
) -> Result<UpstreamResponse, UpstreamError> {
    let fwd = permit.into_inner();
    let target = destination.to_string();
    let body = wire::body_value(&fwd.body).map_err(|e| UpstreamError::NotCarried {
        target: target.clone(),
        reason: e.to_string(),
    })?;
    // Only the Authorization header crosses, in its one canonical form.
    let auth = match fwd.headers.get(http::header::AUTHORIZATION) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| wire::NonConforming::Field("auth"))
                .and_then(wire::canonical_auth)
                .map_err(|e| UpstreamError::NotCarried {
                    target: target.clone(),
                    reason: e.to_string(),
                })?,
        ),
        None => None,
    };
    let req = wire::Request {
        id: 0,
        method: fwd.method.as_str().to_string(),
        path: fwd.path_and_query,
        destination: target.clone(),
        auth,
        body,
    };
    let (resp, released) = link.call(req).await.map_err(|e| match e {
        link::CallError::NonConforming(e) => UpstreamError::NotCarried {
            target: target.clone(),
            reason: e.to_string(),
        },
        link::CallError::Timeout(_) => UpstreamError::Timeout {
            target: target.clone(),
            phase: super::upstream::TimeoutPhase::Total,
        },
        link::CallError::Busy => UpstreamError::Busy {
            target: target.clone(),
        },
        other => UpstreamError::Request {
            target: target.clone(),
            reason: other.to_string(),
        },
    })?;
    response_of(resp, released, &target)
}

/// The guard's own question for a server's keys, over the link.
pub async fn fetch_server_keys(link: &Link, server_name: &str) -> Result<Bytes, UpstreamError> {
    let target = server_name.to_string();
    let req = wire::Request {
        id: 0,
        method: "GET".into(),
        path: "/_matrix/key/v2/server".into(),
        destination: target.clone(),
        auth: None,
        body: None,
    };
    let (resp, released) = link.call(req).await.map_err(|e| UpstreamError::Request {
        target: target.clone(),
        reason: e.to_string(),
    })?;
    let r = response_of(resp, released, &target)?;
    if !r.status.is_success() {
        return Err(UpstreamError::Request {
            target,
            reason: format!("key server answered {}", r.status),
        });
    }
    Ok(r.body)
}

fn response_of(
    resp: wire::Response,
    released: Released,
    target: &str,
) -> Result<UpstreamResponse, UpstreamError> {
    let status = http::StatusCode::from_u16(resp.status).map_err(|_| UpstreamError::Request {
        target: target.to_string(),
        reason: "bad status".into(),
    })?;
    let mut headers = http::HeaderMap::new();
    let body = match &resp.body {
        Some(v) => {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Bytes::from(wire::body_bytes(v).map_err(|e| UpstreamError::Request {
                target: target.to_string(),
                reason: e.to_string(),
            })?)
        }
        None => Bytes::new(),
    };
    Ok(UpstreamResponse {
        status,
        headers,
        body,
        released: Some(released),
    })
}
