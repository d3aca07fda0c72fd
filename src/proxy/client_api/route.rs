//! Which client-server requests the TI profile looks into, by method and path.
//!
//! The path is split at `/`, empty segments are dropped (`//`, a trailing `/`) and every
//! segment is percent-decoded before it is compared, so `inv%69te`, `m.room%2Emember`,
//! `/_matrix//client/v3/createRoom/` and the like are recognised like their plain forms;
//! a segment that does not decode (malformed `%`, not UTF-8) makes the whole request
//! undecidable ([`Route::Undecodable`]). The API version segment is not compared (`r0`, `v3`,
//! `unstable`, …: Synapse serves several). Methods are compared exactly.
use crate::federation::catalog::percent_decode;

/// What the listener does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST …/createRoom`, `PUT …/createRoom/{txnId}`: invitees, public rooms.
    CreateRoom,
    /// `POST …/rooms/{roomId}/invite`, `PUT …/rooms/{roomId}/invite/{txnId}`: `user_id`.
    Invite,
    /// `PUT …/rooms/{roomId}/state/m.room.member[/{stateKey}]` (`POST` too): an invite if the
    /// content's `membership` is `invite`; the state key (empty if absent) is the invitee.
    MemberState { state_key: String },
    /// A media download or thumbnail from `server` (client `v1` and legacy `/_matrix/media`).
    Media { server: String },
    /// `…/publicRooms` (any method): the `server` query parameter names whose room directory
    /// the homeserver is to ask.
    PublicRooms,
    /// `PUT …/directory/list/room/{roomId}`: publishing a room in the room directory.
    DirectoryVisibility { room_id: String },
    /// Not served on the client listener: `/_matrix/federation/…` and `/_matrix/key/…`
    /// (server-server traffic goes through the federation listeners and their checks, never
    /// around them through a homeserver listener that serves both), `/_synapse/admin/…` (it
    /// can join users to rooms without an invite), `/_synapse/replication/…`.
    NotServed,
    /// A path segment does not percent-decode: refused (nothing can be decided on it).
    Undecodable,
    /// Everything else: forwarded as it is, body streamed.
    Pass,
}

/// Classifies a request by method and path (without query).
pub fn classify(method: &http::Method, path: &str) -> Route {
    let mut segs = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        match percent_decode(raw) {
            Ok(s) => segs.push(s.into_owned()),
            Err(_) => return Route::Undecodable,
        }
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let writes = *method == http::Method::POST || *method == http::Method::PUT;
    match s.as_slice() {
        ["_synapse", "admin" | "replication", ..] | ["_matrix", "federation" | "key", ..] => {
            Route::NotServed
        }
        ["_matrix", "media", _, "download" | "thumbnail", server, ..]
        | ["_matrix", "client", _, "media", "download" | "thumbnail", server, ..] => Route::Media {
            server: (*server).to_string(),
        },
        ["_matrix", "client", _, "publicRooms"] => Route::PublicRooms,
        ["_matrix", "client", _, "directory", "list", "room", room]
            if *method == http::Method::PUT =>
        {
            Route::DirectoryVisibility {
                room_id: (*room).to_string(),
            }
        }
        ["_matrix", "client", _, rest @ ..] if writes => match rest {
            ["createRoom"] | ["createRoom", _] => Route::CreateRoom,
            ["rooms", _, "invite"] | ["rooms", _, "invite", _] => Route::Invite,
            ["rooms", _, "state", "m.room.member"] => Route::MemberState {
                state_key: String::new(),
            },
            ["rooms", _, "state", "m.room.member", key] => Route::MemberState {
                state_key: (*key).to_string(),
            },
            _ => Route::Pass,
        },
        _ => Route::Pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn c(m: Method, p: &str) -> Route {
        classify(&m, p)
    }

    #[test]
    fn create_room_in_every_form() {
        for p in [
            "/_matrix/client/v3/createRoom",
            "/_matrix/client/r0/createRoom",
            "/_matrix/client/unstable/createRoom",
            "/_matrix/client/v3/createRoom/",
            "//_matrix//client/v3/createRoom",
            "/_matrix/client/v3/create%52oom",
            "/%5Fmatrix/client/v3/createRoom",
        ] {
            assert_eq!(c(Method::POST, p), Route::CreateRoom, "{p}");
        }
        assert_eq!(
            c(Method::PUT, "/_matrix/client/v3/createRoom/txn1"),
            Route::CreateRoom
        );
        assert_eq!(c(Method::GET, "/_matrix/client/v3/createRoom"), Route::Pass);
        assert_eq!(
            c(Method::POST, "/_matrix/client/v3/createroom"),
            Route::Pass
        );
        assert_eq!(c(Method::POST, "/_matrix/client/createRoom"), Route::Pass);
    }

    #[test]
    fn invites_in_every_form() {
        for p in [
            "/_matrix/client/v3/rooms/!r:hs1/invite",
            "/_matrix/client/r0/rooms/%21r%3Ahs1/invite",
            "/_matrix/client/v3/rooms/!r:hs1/inv%69te/",
        ] {
            assert_eq!(c(Method::POST, p), Route::Invite, "{p}");
        }
        assert_eq!(
            c(Method::PUT, "/_matrix/client/v3/rooms/!r:hs1/invite/txn9"),
            Route::Invite
        );
        assert_eq!(
            c(Method::POST, "/_matrix/client/v3/rooms/!r:hs1/join"),
            Route::Pass
        );
    }

    #[test]
    fn member_state() {
        assert_eq!(
            c(
                Method::PUT,
                "/_matrix/client/v3/rooms/!r:hs1/state/m.room.member/%40bob%3Ahs2"
            ),
            Route::MemberState {
                state_key: "@bob:hs2".into()
            }
        );
        assert_eq!(
            c(
                Method::PUT,
                "/_matrix/client/r0/rooms/!r:hs1/state/m.room%2Emember/@bob:hs2/"
            ),
            Route::MemberState {
                state_key: "@bob:hs2".into()
            }
        );
        assert_eq!(
            c(
                Method::PUT,
                "/_matrix/client/v3/rooms/!r:hs1/state/m.room.member"
            ),
            Route::MemberState {
                state_key: String::new()
            }
        );
        assert_eq!(
            c(
                Method::PUT,
                "/_matrix/client/v3/rooms/!r:hs1/state/m.room.topic/"
            ),
            Route::Pass
        );
        assert_eq!(
            c(
                Method::GET,
                "/_matrix/client/v3/rooms/!r:hs1/state/m.room.member/@bob:hs2"
            ),
            Route::Pass
        );
    }

    #[test]
    fn media_server_names() {
        for (p, s) in [
            (
                "/_matrix/client/v1/media/download/hs2.example/abc",
                "hs2.example",
            ),
            (
                "/_matrix/client/v1/media/thumbnail/hs2.example:8448/abc",
                "hs2.example:8448",
            ),
            (
                "/_matrix/media/v3/download/hs2.example/abc/name.png",
                "hs2.example",
            ),
            ("/_matrix/media/r0/thumbnail/HS2.example/abc", "HS2.example"),
            (
                "/_matrix/media/r0/download/hs2%2Eexample/abc",
                "hs2.example",
            ),
            ("/_matrix/media/v3/download/hs2.example", "hs2.example"),
        ] {
            assert_eq!(c(Method::GET, p), Route::Media { server: s.into() }, "{p}");
        }
        assert_eq!(c(Method::POST, "/_matrix/media/v3/upload"), Route::Pass);
        assert_eq!(
            c(Method::GET, "/_matrix/client/v1/media/config"),
            Route::Pass
        );
    }

    #[test]
    fn directory() {
        for m in [Method::GET, Method::POST] {
            assert_eq!(c(m, "/_matrix/client/v3/publicRooms/"), Route::PublicRooms);
        }
        assert_eq!(
            c(
                Method::PUT,
                "/_matrix/client/r0/directory/list/room/%21r%3Ahs1"
            ),
            Route::DirectoryVisibility {
                room_id: "!r:hs1".into()
            }
        );
        assert_eq!(
            c(Method::GET, "/_matrix/client/v3/directory/list/room/!r:hs1"),
            Route::Pass
        );
    }

    #[test]
    fn admin_and_undecodable() {
        assert_eq!(
            c(Method::POST, "/_synapse/admin/v1/join/!r:hs1"),
            Route::NotServed
        );
        assert_eq!(
            c(Method::GET, "/_synapse//admin/v2/users"),
            Route::NotServed
        );
        assert_eq!(c(Method::GET, "/_synapse/client/x"), Route::Pass);
        for p in [
            "/_matrix/federation/v1/send/t1",
            "/_matrix//federation/v1/invite/!r/$e",
            "/_matrix/fed%65ration/v2/invite/!r/$e",
            "/_matrix/key/v2/server",
            "/_matrix/key/v2/query",
            "/_synapse/replication/tcp",
        ] {
            assert_eq!(c(Method::PUT, p), Route::NotServed, "{p}");
        }
        assert_eq!(
            c(Method::POST, "/_matrix/client/v3/rooms/%ZZ/invite"),
            Route::Undecodable
        );
        assert_eq!(c(Method::GET, "/x/%C3%28"), Route::Undecodable);
    }
}
