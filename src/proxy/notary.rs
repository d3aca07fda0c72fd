//! The guard as the protected servers' notary (`trusted_key_servers`).
//!
//! # Design notes
//!
//! A protected Synapse that lists the guard as its trusted key server
//! (`trusted_key_servers: [{server_name: <[keys] notary_name>, verify_keys: {<guard key id>:
//! <guard public key>}}]`) asks it for remote keys with `POST /_matrix/key/v2/query` (or
//! `GET …/query/{serverName}`) over its outbound path. The guard answers those requests itself:
//! it fetches each named server's key object directly from that server (verified TLS; a
//! protected server's from its own listener), keeps only objects that are validly self-signed
//! by the server (they also feed the guard's own key cache), and returns them as a notary
//! response. On the way back, `exchange::keys_in_transit` attests every object with the guard
//! key (so re-signed inbound requests verify) and signs it as the notary — Synapse checks the
//! notary signature against the configured verify key, then each object's own signatures.
//!
//! Servers whose keys cannot be fetched or verified are left out of the answer, as notaries do
//! (Synapse then falls back to a direct fetch, through the guard as well). Requests to the
//! notary name for anything but a key query are refused: the name is the guard's, not a
//! server to forward to.
use std::collections::BTreeSet;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::value::RawValue;

use super::guard::{Guard, GuardKeyFetcher};
use super::upstream::UpstreamResponse;
use crate::keys::KeyFetcher;
use crate::policy::{Forward, Permit, Refusal, RefusalReason};

/// At most this many servers per query (a Synapse batch is far smaller).
pub const MAX_SERVERS_PER_QUERY: usize = 100;

fn bad(msg: &str) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
        RefusalReason::BadJson,
        msg,
    )
}

/// The server names a key query asks for: `GET …/query/{serverName}` or the keys of the
/// POST body's `server_keys` object.
pub fn requested_servers(
    endpoint_id: &str,
    server_param: Option<&str>,
    body: &[u8],
) -> Result<Vec<String>, Refusal> {
    let names: Vec<String> = match endpoint_id {
        "key_query_get" | "key_query_get_by_id" => vec![server_param
            .ok_or_else(|| bad("no server name"))?
            .to_string()],
        "key_query_post" => {
            #[derive(serde::Deserialize)]
            struct Query<'a> {
                #[serde(borrow)]
                server_keys: std::collections::BTreeMap<String, &'a RawValue>,
            }
            let q: Query<'_> = serde_json::from_slice(body)
                .map_err(|_| bad("key query without a `server_keys` object"))?;
            q.server_keys.into_keys().collect()
        }
        _ => return Err(bad("not a key query")),
    };
    let unique: BTreeSet<String> = names.into_iter().collect();
    if unique.len() > MAX_SERVERS_PER_QUERY {
        return Err(bad("too many servers in one key query"));
    }
    Ok(unique.into_iter().collect())
}

/// Answers a permitted key query as the notary: the verified, self-signed key objects of the
/// requested servers (attestation and the notary signature are added on release).
pub async fn answer(
    guard: &Guard,
    permit: Permit<Forward>,
    servers: &[String],
) -> UpstreamResponse {
    let _request = permit.into_inner();
    let fetcher = GuardKeyFetcher(guard);
    let mut objects: Vec<Box<RawValue>> = Vec::with_capacity(servers.len());
    for server in servers {
        let fetched = fetcher.fetch(server).await;
        let verified = fetched.and_then(|body| {
            guard
                .remote_keys()
                .insert_fetched(server, &body, SystemTime::now())?;
            serde_json::from_slice::<Box<RawValue>>(&body).map_err(|e| {
                crate::keys::RemoteKeyError::Fetch {
                    server: server.clone(),
                    reason: e.to_string(),
                }
            })
        });
        match verified {
            Ok(obj) => objects.push(obj),
            Err(e) => tracing::info!(server = %server, "notary: keys not served: {e}"),
        }
    }
    let body = serde_json::to_vec(&serde_json::json!({ "server_keys": objects }))
        .unwrap_or_else(|_| br#"{"server_keys":[]}"#.to_vec());
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    UpstreamResponse {
        status: StatusCode::OK,
        headers,
        body: Bytes::from(body),
        released: None,
    }
}
