//! A minimal Matrix client-server API client for the lab (plain http to loopback).
//!
//! Only what the demo and the end-to-end tests need: shared-secret registration, rooms,
//! invites, joins, messages, profiles — and bounded waits, because federation is asynchronous:
//! "bob sees alice's message" is a poll until a deadline, never a sleep.
//!
//! Built on hyper 1 with hyper-util's legacy client (connection pooling, no TLS: the lab's
//! client listeners are plain http on 127.0.0.1). Every request has a timeout.
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// Default timeout of a single request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the lab client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status.
    #[error("{method} {url}: HTTP {status} {errcode}: {error}")]
    Status {
        /// Method.
        method: String,
        /// URL (without access token).
        url: String,
        /// HTTP status.
        status: u16,
        /// Matrix `errcode` (empty if none).
        errcode: String,
        /// Matrix `error` or the raw body.
        error: String,
    },
    /// Connection or protocol failure.
    #[error("{method} {url}: {message}")]
    Transport {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The response was not the JSON expected.
    #[error("{url}: unexpected response: {message}")]
    Unexpected {
        /// URL.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {waited:?} waiting for {what}{}", last.as_ref().map(|l| format!(" (last error: {l})")).unwrap_or_default())]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// The last error seen while polling, if any.
        last: Option<String>,
    },
}

impl ClientError {
    /// HTTP status if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Matrix errcode if the server answered with one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Status { errcode, .. } if !errcode.is_empty() => Some(errcode),
            _ => None,
        }
    }
}

pub use crate::federation::catalog::encode_segment;

/// The shared-secret registration MAC: hex HMAC-SHA1 over
/// `nonce \0 user \0 password \0 ("admin" | "notadmin")` keyed with the shared secret
/// (Synapse `synapse/rest/admin/users.py UserRegisterServlet`).
pub fn registration_mac(
    secret: &str,
    nonce: &str,
    user: &str,
    password: &str,
    admin: bool,
) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(nonce.as_bytes());
    mac.update(b"\0");
    mac.update(user.as_bytes());
    mac.update(b"\0");
    mac.update(password.as_bytes());
    mac.update(b"\0");
    mac.update(if admin { b"admin" } else { b"notadmin" });
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An HTTP client bound to one homeserver's client API.
#[derive(Clone)]
pub struct MatrixClient {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl std::fmt::Debug for MatrixClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixClient")
            .field("base", &self.base)
            .finish()
    }
}

/// A response: status and body bytes.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Bytes,
}

impl RawResponse {
    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl MatrixClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8008`).
    pub fn new(base_url: &str) -> MatrixClient {
        let http = Client::builder(TokioExecutor::new()).build_http();
        MatrixClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request to `base + path_and_query` and returns status and body, whatever the status.
    pub async fn raw(
        &self,
        method: &str,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<RawResponse, ClientError> {
        let bytes = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).expect("serialisable")),
            None => Bytes::new(),
        };
        let r = self
            .raw_bytes(
                method,
                path_and_query,
                token,
                Some("application/json"),
                bytes,
                timeout,
            )
            .await?;
        Ok(RawResponse {
            status: r.status,
            body: r.body,
        })
    }

    /// A JSON request that must succeed with 2xx; returns the JSON body.
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.call_with_timeout(method, path_and_query, token, body, REQUEST_TIMEOUT)
            .await
    }

    async fn call_with_timeout(
        &self,
        method: &str,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let resp = self
            .raw(method, path_and_query, token, body, timeout)
            .await?;
        let json = resp.json();
        if (200..300).contains(&resp.status) {
            return Ok(json);
        }
        Err(ClientError::Status {
            method: method.to_string(),
            url: format!("{}{}", self.base, path_and_query),
            status: resp.status,
            errcode: json["errcode"].as_str().unwrap_or("").to_string(),
            error: json["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).into_owned()),
        })
    }

    /// `GET /_matrix/client/versions` answers 200.
    pub async fn versions(&self) -> Result<Value, ClientError> {
        self.call_with_timeout(
            "GET",
            "/_matrix/client/versions",
            None,
            None,
            Duration::from_secs(5),
        )
        .await
    }

    /// Registers `user` with the shared secret (`/_synapse/admin/v1/register`) and returns
    /// a logged-in session.
    pub async fn register_shared_secret(
        &self,
        shared_secret: &str,
        user: &str,
        password: &str,
        admin: bool,
    ) -> Result<Session, ClientError> {
        let path = "/_synapse/admin/v1/register";
        let nonce_resp = self.call("GET", path, None, None).await?;
        let nonce = nonce_resp["nonce"]
            .as_str()
            .ok_or_else(|| ClientError::Unexpected {
                url: path.into(),
                message: format!("no nonce in {nonce_resp}"),
            })?;
        let body = json!({
            "nonce": nonce,
            "username": user,
            "password": password,
            "admin": admin,
            "mac": registration_mac(shared_secret, nonce, user, password, admin),
        });
        let r = self.call("POST", path, None, Some(&body)).await?;
        self.session_from(&r, path)
    }

    /// Password login of an existing user.
    pub async fn login(&self, user: &str, password: &str) -> Result<Session, ClientError> {
        let path = "/_matrix/client/v3/login";
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        let r = self.call("POST", path, None, Some(&body)).await?;
        self.session_from(&r, path)
    }

    fn session_from(&self, r: &Value, path: &str) -> Result<Session, ClientError> {
        let get = |k: &str| {
            r[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| ClientError::Unexpected {
                    url: path.into(),
                    message: format!("no {k} in {r}"),
                })
        };
        Ok(Session {
            client: self.clone(),
            user_id: get("user_id")?,
            access_token: get("access_token")?,
            device_id: get("device_id")?,
        })
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// The homeserver's client.
    pub client: MatrixClient,
    /// Full user id, `@user:server`.
    pub user_id: String,
    /// Access token.
    pub access_token: String,
    /// The device this session logged in as.
    pub device_id: String,
}

/// A message event as seen by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Event id.
    pub event_id: String,
    /// Sender user id.
    pub sender: String,
    /// `content.body`.
    pub body: String,
}

impl Session {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.client
            .call(method, path, Some(&self.access_token), body)
            .await
    }

    /// The rooms this user has joined.
    pub async fn joined_rooms(&self) -> Result<Vec<String>, ClientError> {
        let r = self
            .call("GET", "/_matrix/client/v3/joined_rooms", None)
            .await?;
        Ok(r["joined_rooms"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }

    /// `POST /createRoom` with the given body; returns the room id.
    pub async fn create_room(&self, body: &Value) -> Result<String, ClientError> {
        let r = self
            .call("POST", "/_matrix/client/v3/createRoom", Some(body))
            .await?;
        r["room_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Unexpected {
                url: "createRoom".into(),
                message: format!("no room_id in {r}"),
            })
    }

    /// Invites `user_id` into `room_id`.
    pub async fn invite(&self, room_id: &str, user_id: &str) -> Result<(), ClientError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/invite",
            encode_segment(room_id)
        );
        self.call("POST", &path, Some(&json!({"user_id": user_id})))
            .await?;
        Ok(())
    }

    /// Joins a room (id or alias) via the given servers (`server_name` query parameters).
    pub async fn join(&self, room: &str, via: &[&str]) -> Result<String, ClientError> {
        let mut path = format!("/_matrix/client/v3/join/{}", encode_segment(room));
        for (i, s) in via.iter().enumerate() {
            path.push(if i == 0 { '?' } else { '&' });
            path.push_str("server_name=");
            path.push_str(&encode_segment(s));
        }
        let r = self.call("POST", &path, Some(&json!({}))).await?;
        r["room_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Unexpected {
                url: path,
                message: format!("no room_id in {r}"),
            })
    }

    /// `POST /rooms/{room}/leave`.
    pub async fn leave(&self, room_id: &str) -> Result<(), ClientError> {
        let path = format!("/_matrix/client/v3/rooms/{}/leave", encode_segment(room_id));
        self.call("POST", &path, Some(&json!({}))).await?;
        Ok(())
    }

    /// Sends an `m.text` message; returns the event id.
    pub async fn send_text(&self, room_id: &str, text: &str) -> Result<String, ClientError> {
        let txn = format!("lab{}", rand::random::<u64>());
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            encode_segment(room_id)
        );
        let r = self
            .call(
                "PUT",
                &path,
                Some(&json!({"msgtype": "m.text", "body": text})),
            )
            .await?;
        r["event_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Unexpected {
                url: path,
                message: format!("no event_id in {r}"),
            })
    }

    /// Sends an event of any type with `content`; returns the event id.
    pub async fn send_event(
        &self,
        room_id: &str,
        event_type: &str,
        content: &Value,
    ) -> Result<String, ClientError> {
        let txn = format!("lab{}", rand::random::<u64>());
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{}/{txn}",
            encode_segment(room_id),
            encode_segment(event_type)
        );
        let r = self.call("PUT", &path, Some(content)).await?;
        r["event_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Unexpected {
                url: path,
                message: format!("no event_id in {r}"),
            })
    }

    /// The latest (up to `limit`) `m.room.message` events of a room, newest first.
    pub async fn messages(&self, room_id: &str, limit: u32) -> Result<Vec<Message>, ClientError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}",
            encode_segment(room_id)
        );
        let r = self.call("GET", &path, None).await?;
        Ok(r["chunk"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| Message {
                event_id: e["event_id"].as_str().unwrap_or("").to_string(),
                sender: e["sender"].as_str().unwrap_or("").to_string(),
                body: e["content"]["body"].as_str().unwrap_or("").to_string(),
            })
            .collect())
    }

    /// Joined members of a room (user ids).
    pub async fn joined_members(&self, room_id: &str) -> Result<Vec<String>, ClientError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            encode_segment(room_id)
        );
        let r = self.call("GET", &path, None).await?;
        Ok(r["joined"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// Rooms this user is invited to (from a full `/sync` with `timeout=0`).
    pub async fn invited_rooms(&self) -> Result<Vec<String>, ClientError> {
        // Synapse caches initial syncs (no `since`) for minutes, keyed by the filter: a fresh
        // inline filter per call makes every call see the current invites.
        let n = rand::random::<u16>() % 1000 + 1;
        let filter = encode_segment(&format!(r#"{{"room":{{"timeline":{{"limit":{n}}}}}}}"#));
        let r = self
            .call(
                "GET",
                &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
                None,
            )
            .await?;
        Ok(r["rooms"]["invite"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// `GET /profile/{userId}` (for a remote user this is a federation `query/profile`).
    pub async fn profile(&self, user_id: &str) -> Result<Value, ClientError> {
        let path = format!("/_matrix/client/v3/profile/{}", encode_segment(user_id));
        self.call("GET", &path, None).await
    }

    /// Sets this user's display name.
    pub async fn set_displayname(&self, name: &str) -> Result<(), ClientError> {
        let path = format!(
            "/_matrix/client/v3/profile/{}/displayname",
            encode_segment(&self.user_id)
        );
        self.call("PUT", &path, Some(&json!({"displayname": name})))
            .await?;
        Ok(())
    }

    /// Sends to-device messages: `PUT /sendToDevice/{event_type}/{txn}` with `messages` as
    /// `{user_id: {device_id or "*": content}}`. Messages for remote users travel as one
    /// `m.direct_to_device` EDU per destination server.
    pub async fn send_to_device(
        &self,
        event_type: &str,
        messages: &Value,
    ) -> Result<(), ClientError> {
        let txn = format!("lab{}", rand::random::<u64>());
        let path = format!(
            "/_matrix/client/v3/sendToDevice/{}/{txn}",
            encode_segment(event_type)
        );
        self.call("PUT", &path, Some(&json!({"messages": messages})))
            .await?;
        Ok(())
    }

    /// The to-device events waiting for this session's device, from a `/sync` without `since`
    /// (which acknowledges nothing, so repeated calls see the same events until a later sync
    /// with a `since` token).
    pub async fn to_device_events(&self) -> Result<Vec<Value>, ClientError> {
        // A fresh inline filter per call avoids Synapse's cache of initial syncs.
        let n = rand::random::<u16>() % 1000 + 1;
        let filter = encode_segment(&format!(r#"{{"room":{{"timeline":{{"limit":{n}}}}}}}"#));
        let r = self
            .call(
                "GET",
                &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
                None,
            )
            .await?;
        Ok(r["to_device"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until this user is invited to `room_id`.
    pub async fn wait_for_invite(
        &self,
        room_id: &str,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        wait_until(
            &format!("an invite of {} to {room_id}", self.user_id),
            timeout,
            || async {
                Ok(self
                    .invited_rooms()
                    .await?
                    .iter()
                    .any(|r| r == room_id)
                    .then_some(()))
            },
        )
        .await
    }

    /// Waits until the event `event_id` of `room_id` is visible to this user; returns it.
    pub async fn wait_for_event(
        &self,
        room_id: &str,
        event_id: &str,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode_segment(room_id),
            encode_segment(event_id)
        );
        wait_until(
            &format!("{} to see {event_id}", self.user_id),
            timeout,
            || async {
                match self.call("GET", &path, None).await {
                    Ok(v) => Ok(Some(v)),
                    Err(ClientError::Status { status: 404, .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            },
        )
        .await
    }

    /// Waits until a message with exactly `text` from `sender` is visible in the room.
    pub async fn wait_for_text(
        &self,
        room_id: &str,
        sender: &str,
        text: &str,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        wait_until(
            &format!("{} to see {text:?} from {sender}", self.user_id),
            timeout,
            || async {
                Ok(self
                    .messages(room_id, 50)
                    .await?
                    .into_iter()
                    .find(|m| m.sender == sender && m.body == text))
            },
        )
        .await
    }

    /// Waits until `user_id` is no longer joined in `room_id` (as this user sees it).
    pub async fn wait_for_member_gone(
        &self,
        room_id: &str,
        user_id: &str,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        wait_until(
            &format!("{user_id} to leave {room_id} (seen by {})", self.user_id),
            timeout,
            || async {
                Ok((!self
                    .joined_members(room_id)
                    .await?
                    .iter()
                    .any(|m| m == user_id))
                .then_some(()))
            },
        )
        .await
    }

    /// Waits until `user_id` is a joined member of the room (as seen by this user).
    pub async fn wait_for_member(
        &self,
        room_id: &str,
        user_id: &str,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        wait_until(
            &format!(
                "{user_id} to be joined in {room_id} (seen by {})",
                self.user_id
            ),
            timeout,
            || async {
                Ok(self
                    .joined_members(room_id)
                    .await?
                    .iter()
                    .any(|m| m == user_id)
                    .then_some(()))
            },
        )
        .await
    }
}

/// Helpers for the read paths other carriers use (state, invite state, history, directory,
/// space hierarchy); `send_event` above sends any event.
impl Session {
    /// `PUT /rooms/{room}/state/{event_type}/{state_key}`; returns the event id.
    pub async fn send_state(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        content: &Value,
    ) -> Result<String, ClientError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/{}/{}",
            encode_segment(room_id),
            encode_segment(event_type),
            encode_segment(state_key)
        );
        let r = self.call("PUT", &path, Some(content)).await?;
        r["event_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Unexpected {
                url: path,
                message: format!("no event_id in {r}"),
            })
    }

    /// `GET /rooms/{room}/state`: the room's current state events as this user sees them.
    pub async fn room_state(&self, room_id: &str) -> Result<Vec<Value>, ClientError> {
        let path = format!("/_matrix/client/v3/rooms/{}/state", encode_segment(room_id));
        Ok(self
            .call("GET", &path, None)
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The stripped state of a pending invite to `room_id` (`/sync` `invite_state.events`), or
    /// `None` if there is no such invite.
    pub async fn invite_state(&self, room_id: &str) -> Result<Option<Vec<Value>>, ClientError> {
        let n = rand::random::<u16>() % 1000 + 1;
        let filter = encode_segment(&format!(r#"{{"room":{{"timeline":{{"limit":{n}}}}}}}"#));
        let r = self
            .call(
                "GET",
                &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
                None,
            )
            .await?;
        Ok(r["rooms"]["invite"].get(room_id).map(|i| {
            i["invite_state"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }))
    }

    /// `GET /rooms/{room}/messages?dir=b&limit={limit}`: the latest events of any type, newest
    /// first (a remote room's older history is backfilled over federation).
    pub async fn room_events(&self, room_id: &str, limit: u32) -> Result<Vec<Value>, ClientError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}",
            encode_segment(room_id)
        );
        Ok(self.call("GET", &path, None).await?["chunk"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// `GET /publicRooms?server={server}`: a server's room directory.
    pub async fn public_rooms(&self, server: &str) -> Result<Value, ClientError> {
        self.call(
            "GET",
            &format!(
                "/_matrix/client/v3/publicRooms?server={}&limit=100",
                encode_segment(server)
            ),
            None,
        )
        .await
    }

    /// `PUT /directory/list/room/{room}`: publishes a room in this server's directory.
    pub async fn publish_room(&self, room_id: &str) -> Result<(), ClientError> {
        let path = format!(
            "/_matrix/client/v3/directory/list/room/{}",
            encode_segment(room_id)
        );
        self.call("PUT", &path, Some(&json!({"visibility": "public"})))
            .await?;
        Ok(())
    }

    /// `POST /knock/{room}?server_name=…`: asks to join a room with `join_rule` `knock`.
    pub async fn knock(&self, room: &str, via: &[&str]) -> Result<(), ClientError> {
        let mut path = format!("/_matrix/client/v3/knock/{}", encode_segment(room));
        for (i, s) in via.iter().enumerate() {
            path.push(if i == 0 { '?' } else { '&' });
            path.push_str("server_name=");
            path.push_str(&encode_segment(s));
        }
        self.call("POST", &path, Some(&json!({}))).await?;
        Ok(())
    }

    /// The stripped state of a pending knock on `room_id` (`/sync` `knock_state.events`), or
    /// `None` if there is no such knock.
    pub async fn knock_state(&self, room_id: &str) -> Result<Option<Vec<Value>>, ClientError> {
        let n = rand::random::<u16>() % 1000 + 1;
        let filter = encode_segment(&format!(r#"{{"room":{{"timeline":{{"limit":{n}}}}}}}"#));
        let r = self
            .call(
                "GET",
                &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
                None,
            )
            .await?;
        Ok(r["rooms"]["knock"].get(room_id).map(|i| {
            i["knock_state"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }))
    }

    /// `GET /rooms/{room}/hierarchy` (client API v1): a space's rooms.
    pub async fn hierarchy(&self, room_id: &str) -> Result<Value, ClientError> {
        let path = format!(
            "/_matrix/client/v1/rooms/{}/hierarchy?limit=50",
            encode_segment(room_id)
        );
        self.call("GET", &path, None).await
    }
}

/// A media answer, whatever its status: status, `Content-Type` and the body bytes.
#[derive(Debug, Clone)]
pub struct MediaResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body.
    pub body: Bytes,
}

impl MediaResponse {
    /// The body as JSON (`Value::Null` if it is not JSON), e.g. a Matrix error.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Time a media request may take: a download of remote media waits for the homeserver's own
/// federation fetch.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(90);

/// `(server_name, media_id)` of an `mxc://server/id` URI.
pub fn parse_mxc(mxc: &str) -> Option<(&str, &str)> {
    let (server, id) = mxc.strip_prefix("mxc://")?.split_once('/')?;
    (!server.is_empty() && !id.is_empty() && !id.contains('/')).then_some((server, id))
}

impl MatrixClient {
    /// Sends `body` as raw bytes with `content_type` and returns status, content type and body
    /// whatever the status.
    pub async fn raw_bytes(
        &self,
        method: &str,
        path_and_query: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<MediaResponse, ClientError> {
        let url = format!("{}{}", self.base, path_and_query);
        let transport = |message: String| ClientError::Transport {
            method: method.to_string(),
            url: url.clone(),
            message,
        };
        let mut req = http::Request::builder().method(method).uri(&url);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| transport(e.to_string()))?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| transport(format!("{e:?}")))?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(e.to_string()))?
                .to_bytes();
            Ok(MediaResponse {
                status,
                content_type,
                body,
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| transport(format!("no response within {timeout:?}")))?
    }
}

/// Media: upload to this user's homeserver, download and thumbnails through it (authenticated
/// media, client API v1; remote media is fetched by the homeserver over federation).
impl Session {
    /// `POST /_matrix/media/v3/upload?filename=…` with `bytes` as `content_type`; returns the
    /// `mxc://` URI.
    pub async fn upload(
        &self,
        bytes: &[u8],
        content_type: &str,
        filename: &str,
    ) -> Result<String, ClientError> {
        let path = format!(
            "/_matrix/media/v3/upload?filename={}",
            encode_segment(filename)
        );
        let r = self
            .client
            .raw_bytes(
                "POST",
                &path,
                Some(&self.access_token),
                Some(content_type),
                Bytes::copy_from_slice(bytes),
                MEDIA_TIMEOUT,
            )
            .await?;
        let json = r.json();
        if !(200..300).contains(&r.status) {
            return Err(ClientError::Status {
                method: "POST".into(),
                url: format!("{}{}", self.client.base, path),
                status: r.status,
                errcode: json["errcode"].as_str().unwrap_or("").to_string(),
                error: json["error"].as_str().unwrap_or("").to_string(),
            });
        }
        json["content_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Unexpected {
                url: path,
                message: format!("no content_uri in {json}"),
            })
    }

    fn media_path(kind: &str, mxc: &str) -> Result<String, ClientError> {
        let (server, id) = parse_mxc(mxc).ok_or_else(|| ClientError::Unexpected {
            url: mxc.to_string(),
            message: "not an mxc:// URI".into(),
        })?;
        Ok(format!(
            "/_matrix/client/v1/media/{kind}/{}/{}",
            encode_segment(server),
            encode_segment(id)
        ))
    }

    /// `GET /_matrix/client/v1/media/download/{server}/{id}`: the file, or the error, whatever
    /// the status.
    pub async fn download(&self, mxc: &str) -> Result<MediaResponse, ClientError> {
        let path = Self::media_path("download", mxc)?;
        self.client
            .raw_bytes(
                "GET",
                &path,
                Some(&self.access_token),
                None,
                Bytes::new(),
                MEDIA_TIMEOUT,
            )
            .await
    }

    /// `GET /_matrix/client/v1/media/thumbnail/{server}/{id}?width=…&height=…&method=…`
    /// (`method`: `scale` or `crop`), whatever the status.
    pub async fn thumbnail(
        &self,
        mxc: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> Result<MediaResponse, ClientError> {
        let path = format!(
            "{}?width={width}&height={height}&method={}",
            Self::media_path("thumbnail", mxc)?,
            encode_segment(method)
        );
        self.client
            .raw_bytes(
                "GET",
                &path,
                Some(&self.access_token),
                None,
                Bytes::new(),
                MEDIA_TIMEOUT,
            )
            .await
    }
}

/// Polls `probe` every 200 ms until it returns `Ok(Some(_))` or `timeout` passes. Errors from
/// the probe do not end the wait (the last one is reported on timeout).
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, ClientError>>,
{
    let start = Instant::now();
    let mut last = None;
    loop {
        let remaining = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(remaining.max(Duration::from_millis(1)), probe()).await {
            Ok(Ok(Some(v))) => return Ok(v),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => {}
        }
        if start.elapsed() >= timeout {
            return Err(ClientError::Timeout {
                what: what.to_string(),
                waited: start.elapsed(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(200).min(timeout.saturating_sub(start.elapsed())))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_mac_matches_python_hmac() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"sekrit", b"abcd\x00alice\x00pw\x00notadmin", hashlib.sha1).hexdigest())'
        assert_eq!(
            registration_mac("sekrit", "abcd", "alice", "pw", false),
            "26ccdfa8f510b6e882ef8081977e1b700ae50bf5"
        );
        assert_eq!(
            registration_mac("sekrit", "abcd", "alice", "pw", true),
            "d48d20b72a403fca371dc3cc6f412f5300a809be"
        );
    }

    #[test]
    fn mxc_uris_split_into_server_and_id() {
        assert_eq!(
            parse_mxc("mxc://127.0.0.1:8448/AbC123"),
            Some(("127.0.0.1:8448", "AbC123"))
        );
        assert_eq!(parse_mxc("mxc://hs/"), None);
        assert_eq!(parse_mxc("mxc:///id"), None);
        assert_eq!(parse_mxc("mxc://hs/a/b"), None);
        assert_eq!(parse_mxc("https://hs/id"), None);
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            encode_segment("!room:127.0.0.1:8448"),
            "%21room%3A127.0.0.1%3A8448"
        );
        assert_eq!(encode_segment("@a b/c"), "%40a%20b%2Fc");
        assert_eq!(encode_segment("A-z_0.~"), "A-z_0.~");
        assert_eq!(encode_segment("ü"), "%C3%BC");
    }

    #[tokio::test]
    async fn wait_until_returns_value_or_times_out_with_last_error() {
        let mut n = 0;
        let v = wait_until("three polls", Duration::from_secs(5), || {
            n += 1;
            let k = n;
            async move { Ok((k >= 3).then_some(k)) }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
        let t0 = Instant::now();
        let e = wait_until::<(), _, _>("never", Duration::from_millis(500), || async {
            Err(ClientError::Unexpected {
                url: "u".into(),
                message: "boom".into(),
            })
        })
        .await
        .unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(500));
        assert!(t0.elapsed() < Duration::from_secs(3));
        let text = e.to_string();
        assert!(text.contains("never") && text.contains("boom"), "{text}");
    }

    #[tokio::test]
    async fn raw_reports_connection_refused_as_transport_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let c = MatrixClient::new(&format!("http://{addr}"));
        let e = c.versions().await.unwrap_err();
        assert!(matches!(e, ClientError::Transport { .. }), "{e:?}");
        assert_eq!(e.status(), None);
    }
}
