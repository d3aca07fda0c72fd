//! Endpoint catalog: the one table of every federation operation the guard knows.
//!
//! # Design notes
//!
//! * **One static table** ([`entries`]) holds every server-server and key operation of Matrix
//!   spec v1.19 (the 36 operations of `data/api/server-server/*.yaml` in `matrix-org/matrix-spec`)
//!   plus the forms current Synapse still serves or sends although the spec no longer lists them
//!   ([`Source::Synapse`], [`Source::LegacyMedia`]). A request that matches no entry is not
//!   forwarded (fail closed); the proxy answers 404 `M_UNRECOGNIZED` or 403 by config.
//! * Each entry says what its bodies carry ([`Carries`]), how they are framed ([`BodyKind`]),
//!   how the proxy treats it ([`Handler`]) and where events sit inside the bodies
//!   ([`EventSite`], used by [`crate::federation::pdu::pdus_in`]), so everything downstream is
//!   table-driven.
//! * The `id` is stable, snake_case and bounded (≤ 32 bytes): it is a Prometheus label value and
//!   part of audit records. Never rename an id; add a new entry instead.
//! * **Matching works on the raw request path** (percent-encoding intact, no query string):
//!   the path is split on `/`; a literal segment must equal the template byte for byte (so
//!   `%2F`, `%2E` or any other escape never matches a fixed part); each `{param}` matches
//!   exactly one non-empty segment. Paths with empty segments (`//`, trailing `/`), `.`/`..`
//!   segments (also percent-encoded ones such as `%2e%2E`), bytes outside RFC 3986 `pchar` or
//!   malformed escapes are refused outright, whatever the method. Synapse routes on the same raw
//!   path (its servlet regexes run on the undecoded path), so guard and homeserver agree on which
//!   operation a request is.
//! * When two templates match (only `GET /query/{queryType}` overlaps with `query/profile` and
//!   `query/directory`), the one with a literal at the earliest differing segment wins. A test
//!   proves no other ambiguity exists.
//! * Parameters come back raw (still percent-encoded); [`EndpointMatch::param_decoded`] decodes
//!   one to UTF-8 when the caller needs the identifier.
//!
//! The table is rendered to `docs/endpoints.md` by [`render_markdown`]; a golden test keeps the
//! committed file in sync (regenerate with `GRENZWACHT_BLESS=1 cargo test --lib
//! federation::catalog`).
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::OnceLock;

use http::Method;
use serde::Deserialize;

/// Coarse class of a federation endpoint, used by policy allow/deny lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointClass {
    /// `PUT /send/{txnId}`
    Transaction,
    /// make_/send_ join, leave, knock; invite; exchange_third_party_invite
    Membership,
    /// backfill, get_missing_events, event, state, state_ids, event_auth, timestamp_to_event
    Events,
    /// query/profile, user/devices, user/keys/*, openid/userinfo; also the generic
    /// `query/{queryType}` (Synapse dispatches it to profile, directory and client-key handlers,
    /// so it is classed with the most sensitive of them)
    User,
    /// media download/thumbnail (authenticated `/_matrix/federation/v1/media/*` and the legacy
    /// `/_matrix/media/{v3,r0}/download` fallback)
    Media,
    /// publicRooms, hierarchy, query/directory
    Directory,
    /// key/v2/server, key/v2/query
    Keys,
    /// /version, and `/.well-known/matrix/server` (server discovery)
    Version,
    /// 3pid/onbind, third-party invites
    ThirdParty,
    /// policy server signing
    PolicyServer,
}

impl EndpointClass {
    /// The snake_case name (as in config files and metrics).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::Membership => "membership",
            Self::Events => "events",
            Self::User => "user",
            Self::Media => "media",
            Self::Directory => "directory",
            Self::Keys => "keys",
            Self::Version => "version",
            Self::ThirdParty => "third_party",
            Self::PolicyServer => "policy_server",
        }
    }
}

/// What a request or response body carries, from the point of view of release policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Carries {
    /// No content of policy interest: no body, `{}`, or a processing acknowledgement
    /// (the `/send` response's per-PDU results).
    Nothing,
    /// Room events (full PDUs; for knock/invite room state since v1.16 also PDUs, from older
    /// servers stripped state). See the entry's [`EventSite`]s for where they sit.
    Pdus,
    /// PDUs and EDUs: only the `/send` transaction.
    PdusAndEdus,
    /// Unsigned event templates (`make_join`/`make_leave`/`make_knock` responses) plus the
    /// room version.
    Templates,
    /// Event IDs only (state_ids, get_missing_events request, timestamp_to_event): references,
    /// no event content.
    EventIds,
    /// Data about users: profiles, devices and their display names, E2EE keys, OpenID subject,
    /// third-party identifiers (e-mail addresses).
    UserData,
    /// Media bytes and their metadata.
    Media,
    /// Room directory data: public room lists and their search filters, space hierarchy
    /// (includes stripped state: names, topics), alias resolution.
    RoomMetadata,
    /// Server signing keys (key objects, key queries).
    Keys,
    /// Signatures over an event (policy server).
    Signatures,
    /// Server software/version or discovery data.
    ServerInfo,
}

impl Carries {
    /// True if the body may contain room events (PDUs, templates).
    pub const fn has_events(self) -> bool {
        matches!(self, Self::Pdus | Self::PdusAndEdus | Self::Templates)
    }

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Nothing => "nothing",
            Self::Pdus => "pdus",
            Self::PdusAndEdus => "pdus_and_edus",
            Self::Templates => "templates",
            Self::EventIds => "event_ids",
            Self::UserData => "user_data",
            Self::Media => "media",
            Self::RoomMetadata => "room_metadata",
            Self::Keys => "keys",
            Self::Signatures => "signatures",
            Self::ServerInfo => "server_info",
        }
    }
}

/// How a body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// No body is defined. The proxy should refuse a non-empty body (nothing in the spec sends
    /// one, and an unparsed body must not cross).
    None,
    /// `application/json`, top level is an object (validate with
    /// [`crate::federation::json::validate_object`]).
    Json,
    /// `application/json` in the legacy v1 form `[200, {…}]` (v1 invite, send_join,
    /// send_leave responses); validate with [`crate::federation::json::TopLevel::StatusPair`].
    JsonStatusPair,
    /// `multipart/mixed`: a JSON metadata part, then the bytes or a `Location` redirect
    /// (authenticated media).
    Multipart,
    /// Opaque bytes with the media's own content type (legacy `/_matrix/media/*/download`).
    Binary,
}

impl BodyKind {
    /// True for the JSON framings.
    pub const fn is_json(self) -> bool {
        matches!(self, Self::Json | Self::JsonStatusPair)
    }

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Json => "json",
            Self::JsonStatusPair => "json_status_pair",
            Self::Multipart => "multipart",
            Self::Binary => "binary",
        }
    }
}

/// How the proxy pipeline treats an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Handler {
    /// `PUT /send/{txnId}`: a transaction of PDUs and EDUs, each judged on its own
    /// ([`crate::federation::txn::Transaction`]).
    Transaction,
    /// The request carries one or more PDUs (invite, send_join, send_leave, send_knock,
    /// exchange_third_party_invite, policy sign); the response may carry PDUs too (send_join
    /// state, signed invite, knock room state). Requests are X-Matrix signed: changing them
    /// needs a re-signature.
    PduRequest,
    /// The request is a query; the response carries PDUs (backfill, get_missing_events, event,
    /// state, event_auth). Responses are unsigned and may be rewritten (redacted).
    PduResponse,
    /// `make_join`/`make_leave`/`make_knock`: the response carries an event template and the
    /// room version (learn the room version here).
    Template,
    /// Generic JSON both ways (user data, directory, version, …): parsed and checked, judged as
    /// a whole.
    Json,
    /// Media downloads (multipart or binary response).
    Media,
    /// Server key objects (`/_matrix/key/v2/*`): subject to key attestation.
    Keys,
}

impl Handler {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::PduRequest => "pdu_request",
            Self::PduResponse => "pdu_response",
            Self::Template => "template",
            Self::Json => "json",
            Self::Media => "media",
            Self::Keys => "keys",
        }
    }
}

/// Where an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Matrix spec v1.19 server-server API (`data/api/server-server/*.yaml`).
    Spec,
    /// Not (or no longer) in the spec, but served by current Synapse (`element-hq/synapse`
    /// `synapse/federation/transport/server/federation.py`, `synapse/rest/key/v2/`).
    Synapse,
    /// Client-server legacy media download that Synapse still *sends* to remote servers as a
    /// fallback when `/_matrix/federation/v1/media/download` answers 404 `M_UNRECOGNIZED`
    /// (`synapse/federation/federation_client.py federation_download_media`).
    LegacyMedia,
}

impl Source {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Spec => "spec",
            Self::Synapse => "synapse",
            Self::LegacyMedia => "legacy_media",
        }
    }
}

/// Which body of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The request body (signed by X-Matrix where the endpoint requires it).
    Request,
    /// The response body (protected by TLS only).
    Response,
}

/// One step of the path from a body's root to events inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Member of an object.
    Key(&'static str),
    /// Every element of an array.
    Each,
    /// One element of an array (the object of a `[200, {…}]` pair is `Index(1)`).
    Index(usize),
}

/// What kind of event sits at an [`EventSite`], i.e. how strictly it can be viewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A full PDU (view with [`crate::federation::pdu::PduView`]).
    Pdu,
    /// Room state shown to invitees/knockers/space browsers: full PDUs since spec v1.16,
    /// stripped state (`type`, `state_key`, `sender`, `content`) from older servers and in
    /// `hierarchy` (view with [`crate::federation::pdu::EventView`]).
    StrippedState,
    /// An unsigned event template from `make_*`.
    Template,
    /// A partial event to be completed by the receiver (exchange_third_party_invite).
    PartialEvent,
}

/// Where events sit in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventSite {
    /// Steps from the body root; empty = the body itself is the event.
    pub path: &'static [Step],
    /// What sits there.
    pub kind: EventKind,
    /// If true, a body without this site is malformed; otherwise the site is optional.
    pub required: bool,
}

impl EventSite {
    /// Renders the path as `state[]`, `[1].event`, `(body)`.
    pub fn display_path(&self) -> String {
        if self.path.is_empty() {
            return "(body)".to_owned();
        }
        let mut s = String::new();
        for step in self.path {
            match step {
                Step::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Step::Each => s.push_str("[]"),
                Step::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
            }
        }
        s
    }
}

/// One catalog entry: a federation operation.
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Stable snake_case id (≤ 32 bytes), used as a metrics label and in audit records.
    pub id: &'static str,
    /// HTTP method.
    pub method: Method,
    /// Path template, e.g. `/_matrix/federation/v1/send/{txnId}`.
    pub path: &'static str,
    /// Coarse class for allow/deny policy.
    pub class: EndpointClass,
    /// Where the entry comes from.
    pub source: Source,
    /// True if the request must carry an `Authorization: X-Matrix …` header (false for
    /// discovery, keys, version, `openid/userinfo`, `3pid/onbind`, legacy media).
    pub x_matrix: bool,
    /// How the proxy treats it.
    pub handler: Handler,
    /// What the request body carries.
    pub request: Carries,
    /// What the response body carries.
    pub response: Carries,
    /// Request body framing.
    pub request_body: BodyKind,
    /// Response body framing.
    pub response_body: BodyKind,
    /// Where events sit in the request body.
    pub request_events: &'static [EventSite],
    /// Where events sit in the response body.
    pub response_events: &'static [EventSite],
    /// One-line description for the docs.
    pub summary: &'static str,
}

impl Endpoint {
    /// Event sites for one direction.
    pub fn events(&self, direction: Direction) -> &'static [EventSite] {
        match direction {
            Direction::Request => self.request_events,
            Direction::Response => self.response_events,
        }
    }

    /// What the body of one direction carries.
    pub fn carries(&self, direction: Direction) -> Carries {
        match direction {
            Direction::Request => self.request,
            Direction::Response => self.response,
        }
    }

    /// Body framing of one direction.
    pub fn body(&self, direction: Direction) -> BodyKind {
        match direction {
            Direction::Request => self.request_body,
            Direction::Response => self.response_body,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Event sites (shared by several entries).

const fn site(path: &'static [Step], kind: EventKind, required: bool) -> EventSite {
    EventSite {
        path,
        kind,
        required,
    }
}

const NO_EVENTS: &[EventSite] = &[];
const BODY_IS_PDU: &[EventSite] = &[site(&[], EventKind::Pdu, true)];
const TXN_PDUS: &[EventSite] = &[site(
    &[Step::Key("pdus"), Step::Each],
    EventKind::Pdu,
    false,
)];
const RESP_PDUS: &[EventSite] = &[site(&[Step::Key("pdus"), Step::Each], EventKind::Pdu, true)];
const STATE_RESP: &[EventSite] = &[
    site(&[Step::Key("pdus"), Step::Each], EventKind::Pdu, true),
    site(&[Step::Key("auth_chain"), Step::Each], EventKind::Pdu, true),
];
const AUTH_CHAIN: &[EventSite] = &[site(
    &[Step::Key("auth_chain"), Step::Each],
    EventKind::Pdu,
    true,
)];
const MISSING_EVENTS: &[EventSite] = &[site(
    &[Step::Key("events"), Step::Each],
    EventKind::Pdu,
    true,
)];
const TEMPLATE: &[EventSite] = &[site(&[Step::Key("event")], EventKind::Template, true)];
const SEND_JOIN_V2_RESP: &[EventSite] = &[
    site(&[Step::Key("state"), Step::Each], EventKind::Pdu, true),
    site(&[Step::Key("auth_chain"), Step::Each], EventKind::Pdu, true),
    site(&[Step::Key("event")], EventKind::Pdu, false),
];
const SEND_JOIN_V1_RESP: &[EventSite] = &[
    site(
        &[Step::Index(1), Step::Key("state"), Step::Each],
        EventKind::Pdu,
        true,
    ),
    site(
        &[Step::Index(1), Step::Key("auth_chain"), Step::Each],
        EventKind::Pdu,
        true,
    ),
    site(&[Step::Index(1), Step::Key("event")], EventKind::Pdu, false),
];
const KNOCK_RESP: &[EventSite] = &[site(
    &[Step::Key("knock_room_state"), Step::Each],
    EventKind::StrippedState,
    true,
)];
const INVITE_V1_REQ: &[EventSite] = &[
    site(&[], EventKind::Pdu, true),
    site(
        &[
            Step::Key("unsigned"),
            Step::Key("invite_room_state"),
            Step::Each,
        ],
        EventKind::StrippedState,
        false,
    ),
];
const INVITE_V1_RESP: &[EventSite] = &[site(
    &[Step::Index(1), Step::Key("event")],
    EventKind::Pdu,
    true,
)];
const INVITE_V2_REQ: &[EventSite] = &[
    site(&[Step::Key("event")], EventKind::Pdu, true),
    site(
        &[Step::Key("invite_room_state"), Step::Each],
        EventKind::StrippedState,
        false,
    ),
];
const INVITE_V2_RESP: &[EventSite] = &[site(&[Step::Key("event")], EventKind::Pdu, true)];
const PARTIAL_EVENT: &[EventSite] = &[site(&[], EventKind::PartialEvent, true)];
const HIERARCHY_RESP: &[EventSite] = &[
    site(
        &[Step::Key("room"), Step::Key("children_state"), Step::Each],
        EventKind::StrippedState,
        true,
    ),
    site(
        &[
            Step::Key("children"),
            Step::Each,
            Step::Key("children_state"),
            Step::Each,
        ],
        EventKind::StrippedState,
        false,
    ),
];

// ---------------------------------------------------------------------------------------------
// The table.

use BodyKind as B;
use Carries as C;
use EndpointClass as K;
use Handler as H;

macro_rules! endpoints {
    ($( { $($field:ident : $value:expr),* $(,)? } ),* $(,)?) => {
        &[ $( Endpoint { $($field: $value),* } ),* ]
    };
}

static ENTRIES: &[Endpoint] = endpoints![
    // --- transactions -------------------------------------------------------------------
    {
        id: "send_transaction", method: Method::PUT,
        path: "/_matrix/federation/v1/send/{txnId}",
        class: K::Transaction, source: Source::Spec, x_matrix: true, handler: H::Transaction,
        request: C::PdusAndEdus, response: C::Nothing,
        request_body: B::Json, response_body: B::Json,
        request_events: TXN_PDUS, response_events: NO_EVENTS,
        summary: "Push a transaction of PDUs (≤ 50) and EDUs (≤ 100)",
    },
    // --- events ---------------------------------------------------------------------------
    {
        id: "get_event", method: Method::GET,
        path: "/_matrix/federation/v1/event/{eventId}",
        class: K::Events, source: Source::Spec, x_matrix: true, handler: H::PduResponse,
        request: C::Nothing, response: C::Pdus,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: RESP_PDUS,
        summary: "Fetch one event",
    },
    {
        id: "get_state", method: Method::GET,
        path: "/_matrix/federation/v1/state/{roomId}",
        class: K::Events, source: Source::Spec, x_matrix: true, handler: H::PduResponse,
        request: C::Nothing, response: C::Pdus,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: STATE_RESP,
        summary: "Room state at an event, with its auth chain",
    },
    {
        id: "get_state_ids", method: Method::GET,
        path: "/_matrix/federation/v1/state_ids/{roomId}",
        class: K::Events, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::Nothing, response: C::EventIds,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "IDs of the room state and auth chain at an event",
    },
    {
        id: "backfill", method: Method::GET,
        path: "/_matrix/federation/v1/backfill/{roomId}",
        class: K::Events, source: Source::Spec, x_matrix: true, handler: H::PduResponse,
        request: C::Nothing, response: C::Pdus,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: RESP_PDUS,
        summary: "Earlier events of a room",
    },
    {
        id: "get_missing_events", method: Method::POST,
        path: "/_matrix/federation/v1/get_missing_events/{roomId}",
        class: K::Events, source: Source::Spec, x_matrix: true, handler: H::PduResponse,
        request: C::EventIds, response: C::Pdus,
        request_body: B::Json, response_body: B::Json,
        request_events: NO_EVENTS, response_events: MISSING_EVENTS,
        summary: "Events between earliest_events and latest_events",
    },
    {
        id: "event_auth", method: Method::GET,
        path: "/_matrix/federation/v1/event_auth/{roomId}/{eventId}",
        class: K::Events, source: Source::Spec, x_matrix: true, handler: H::PduResponse,
        request: C::Nothing, response: C::Pdus,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: AUTH_CHAIN,
        summary: "Auth chain of an event",
    },
    {
        id: "timestamp_to_event", method: Method::GET,
        path: "/_matrix/federation/v1/timestamp_to_event/{roomId}",
        // The v1.19 yaml names `accessToken` security here (a spec error); Synapse requires
        // X-Matrix like every other `/_matrix/federation` servlet.
        class: K::Events, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::Nothing, response: C::EventIds,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Event ID closest to a timestamp",
    },
    // --- membership ------------------------------------------------------------------------
    {
        id: "make_join", method: Method::GET,
        path: "/_matrix/federation/v1/make_join/{roomId}/{userId}",
        class: K::Membership, source: Source::Spec, x_matrix: true, handler: H::Template,
        request: C::Nothing, response: C::Templates,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: TEMPLATE,
        summary: "Join template and room version",
    },
    {
        id: "send_join_v1", method: Method::PUT,
        path: "/_matrix/federation/v1/send_join/{roomId}/{eventId}",
        class: K::Membership, source: Source::Synapse, x_matrix: true, handler: H::PduRequest,
        request: C::Pdus, response: C::Pdus,
        request_body: B::Json, response_body: B::JsonStatusPair,
        request_events: BODY_IS_PDU, response_events: SEND_JOIN_V1_RESP,
        summary: "Submit a signed join (v1, `[200, {…}]` response); removed from the spec",
    },
    {
        id: "send_join_v2", method: Method::PUT,
        path: "/_matrix/federation/v2/send_join/{roomId}/{eventId}",
        class: K::Membership, source: Source::Spec, x_matrix: true, handler: H::PduRequest,
        request: C::Pdus, response: C::Pdus,
        request_body: B::Json, response_body: B::Json,
        request_events: BODY_IS_PDU, response_events: SEND_JOIN_V2_RESP,
        summary: "Submit a signed join; response has the room state and auth chain",
    },
    {
        id: "make_leave", method: Method::GET,
        path: "/_matrix/federation/v1/make_leave/{roomId}/{userId}",
        class: K::Membership, source: Source::Spec, x_matrix: true, handler: H::Template,
        request: C::Nothing, response: C::Templates,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: TEMPLATE,
        summary: "Leave template and room version",
    },
    {
        id: "send_leave_v1", method: Method::PUT,
        path: "/_matrix/federation/v1/send_leave/{roomId}/{eventId}",
        class: K::Membership, source: Source::Synapse, x_matrix: true, handler: H::PduRequest,
        request: C::Pdus, response: C::Nothing,
        request_body: B::Json, response_body: B::JsonStatusPair,
        request_events: BODY_IS_PDU, response_events: NO_EVENTS,
        summary: "Submit a signed leave (v1, `[200, {}]` response); removed from the spec",
    },
    {
        id: "send_leave_v2", method: Method::PUT,
        path: "/_matrix/federation/v2/send_leave/{roomId}/{eventId}",
        class: K::Membership, source: Source::Spec, x_matrix: true, handler: H::PduRequest,
        request: C::Pdus, response: C::Nothing,
        request_body: B::Json, response_body: B::Json,
        request_events: BODY_IS_PDU, response_events: NO_EVENTS,
        summary: "Submit a signed leave",
    },
    {
        id: "make_knock", method: Method::GET,
        path: "/_matrix/federation/v1/make_knock/{roomId}/{userId}",
        class: K::Membership, source: Source::Spec, x_matrix: true, handler: H::Template,
        request: C::Nothing, response: C::Templates,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: TEMPLATE,
        summary: "Knock template and room version",
    },
    {
        id: "send_knock", method: Method::PUT,
        path: "/_matrix/federation/v1/send_knock/{roomId}/{eventId}",
        class: K::Membership, source: Source::Spec, x_matrix: true, handler: H::PduRequest,
        request: C::Pdus, response: C::Pdus,
        request_body: B::Json, response_body: B::Json,
        request_events: BODY_IS_PDU, response_events: KNOCK_RESP,
        summary: "Submit a signed knock; response has knock_room_state",
    },
    {
        id: "invite_v1", method: Method::PUT,
        path: "/_matrix/federation/v1/invite/{roomId}/{eventId}",
        class: K::Membership, source: Source::Spec, x_matrix: true, handler: H::PduRequest,
        request: C::Pdus, response: C::Pdus,
        request_body: B::Json, response_body: B::JsonStatusPair,
        request_events: INVITE_V1_REQ, response_events: INVITE_V1_RESP,
        summary: "Invite (v1, rooms v1/v2): event in, `[200, {event}]` out",
    },
    {
        id: "invite_v2", method: Method::PUT,
        path: "/_matrix/federation/v2/invite/{roomId}/{eventId}",
        class: K::Membership, source: Source::Spec, x_matrix: true, handler: H::PduRequest,
        request: C::Pdus, response: C::Pdus,
        request_body: B::Json, response_body: B::Json,
        request_events: INVITE_V2_REQ, response_events: INVITE_V2_RESP,
        summary: "Invite: event, room_version and invite_room_state in, signed event out",
    },
    {
        id: "exchange_third_party_invite", method: Method::PUT,
        path: "/_matrix/federation/v1/exchange_third_party_invite/{roomId}",
        class: K::Membership, source: Source::Spec, x_matrix: true, handler: H::PduRequest,
        request: C::Pdus, response: C::Nothing,
        request_body: B::Json, response_body: B::Json,
        request_events: PARTIAL_EVENT, response_events: NO_EVENTS,
        summary: "Complete a third-party invite (partial m.room.member event)",
    },
    // --- third-party identifiers -------------------------------------------------------------
    {
        id: "third_party_onbind", method: Method::PUT,
        path: "/_matrix/federation/v1/3pid/onbind",
        class: K::ThirdParty, source: Source::Spec, x_matrix: false, handler: H::Json,
        request: C::UserData, response: C::Nothing,
        request_body: B::Json, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Identity server tells of a bound 3PID (e-mail address); no X-Matrix",
    },
    {
        id: "third_party_onbind_post", method: Method::POST,
        path: "/_matrix/federation/v1/3pid/onbind",
        // Synapse's On3pidBindServlet only implements POST (and Sydent sends POST), although
        // the spec says PUT.
        class: K::ThirdParty, source: Source::Synapse, x_matrix: false, handler: H::Json,
        request: C::UserData, response: C::Nothing,
        request_body: B::Json, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "As third_party_onbind, with the POST method Synapse and Sydent use",
    },
    // --- directory ---------------------------------------------------------------------------
    {
        id: "public_rooms_get", method: Method::GET,
        path: "/_matrix/federation/v1/publicRooms",
        class: K::Directory, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::Nothing, response: C::RoomMetadata,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Public room list",
    },
    {
        id: "public_rooms_post", method: Method::POST,
        path: "/_matrix/federation/v1/publicRooms",
        class: K::Directory, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::RoomMetadata, response: C::RoomMetadata,
        request_body: B::Json, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Filtered public room list (search term in the request)",
    },
    {
        id: "hierarchy", method: Method::GET,
        path: "/_matrix/federation/v1/hierarchy/{roomId}",
        class: K::Directory, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::Nothing, response: C::RoomMetadata,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: HIERARCHY_RESP,
        summary: "Space hierarchy (stripped state of the space and its children)",
    },
    {
        id: "query_directory", method: Method::GET,
        path: "/_matrix/federation/v1/query/directory",
        class: K::Directory, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::Nothing, response: C::RoomMetadata,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Resolve a room alias",
    },
    // --- user data ---------------------------------------------------------------------------
    {
        id: "query_profile", method: Method::GET,
        path: "/_matrix/federation/v1/query/profile",
        class: K::User, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::Nothing, response: C::UserData,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Profile (display name, avatar) of a user",
    },
    {
        id: "query_generic", method: Method::GET,
        path: "/_matrix/federation/v1/query/{queryType}",
        class: K::User, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::Nothing, response: C::UserData,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Generic query (other query types than profile/directory)",
    },
    {
        id: "user_devices", method: Method::GET,
        path: "/_matrix/federation/v1/user/devices/{userId}",
        class: K::User, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::Nothing, response: C::UserData,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Devices (with display names) and cross-signing keys of a user",
    },
    {
        id: "user_keys_query", method: Method::POST,
        path: "/_matrix/federation/v1/user/keys/query",
        class: K::User, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::UserData, response: C::UserData,
        request_body: B::Json, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Device and cross-signing keys of users",
    },
    {
        id: "user_keys_claim", method: Method::POST,
        path: "/_matrix/federation/v1/user/keys/claim",
        class: K::User, source: Source::Spec, x_matrix: true, handler: H::Json,
        request: C::UserData, response: C::UserData,
        request_body: B::Json, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Claim one-time keys",
    },
    {
        id: "openid_userinfo", method: Method::GET,
        path: "/_matrix/federation/v1/openid/userinfo",
        class: K::User, source: Source::Spec, x_matrix: false, handler: H::Json,
        request: C::Nothing, response: C::UserData,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Exchange an OpenID token for the user ID; no X-Matrix (token in the query)",
    },
    // --- media -------------------------------------------------------------------------------
    {
        id: "media_download", method: Method::GET,
        path: "/_matrix/federation/v1/media/download/{mediaId}",
        class: K::Media, source: Source::Spec, x_matrix: true, handler: H::Media,
        request: C::Nothing, response: C::Media,
        request_body: B::None, response_body: B::Multipart,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Download media (multipart/mixed: metadata, then bytes or Location)",
    },
    {
        id: "media_thumbnail", method: Method::GET,
        path: "/_matrix/federation/v1/media/thumbnail/{mediaId}",
        class: K::Media, source: Source::Spec, x_matrix: true, handler: H::Media,
        request: C::Nothing, response: C::Media,
        request_body: B::None, response_body: B::Multipart,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Download a thumbnail (multipart/mixed)",
    },
    {
        id: "legacy_media_download_v3", method: Method::GET,
        path: "/_matrix/media/v3/download/{serverName}/{mediaId}",
        class: K::Media, source: Source::LegacyMedia, x_matrix: false, handler: H::Media,
        request: C::Nothing, response: C::Media,
        request_body: B::None, response_body: B::Binary,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Legacy media download (Synapse's fallback; unauthenticated, raw bytes)",
    },
    {
        id: "legacy_media_download_r0", method: Method::GET,
        path: "/_matrix/media/r0/download/{serverName}/{mediaId}",
        class: K::Media, source: Source::LegacyMedia, x_matrix: false, handler: H::Media,
        request: C::Nothing, response: C::Media,
        request_body: B::None, response_body: B::Binary,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Legacy media download, r0 form (Synapse's second fallback)",
    },
    // --- keys --------------------------------------------------------------------------------
    {
        id: "key_server", method: Method::GET,
        path: "/_matrix/key/v2/server",
        class: K::Keys, source: Source::Spec, x_matrix: false, handler: H::Keys,
        request: C::Nothing, response: C::Keys,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "The server's own signing keys",
    },
    {
        id: "key_server_by_id", method: Method::GET,
        path: "/_matrix/key/v2/server/{keyId}",
        class: K::Keys, source: Source::Synapse, x_matrix: false, handler: H::Keys,
        request: C::Nothing, response: C::Keys,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Deprecated form with a key ID (Synapse ignores the ID)",
    },
    {
        id: "key_query_get", method: Method::GET,
        path: "/_matrix/key/v2/query/{serverName}",
        class: K::Keys, source: Source::Spec, x_matrix: false, handler: H::Keys,
        request: C::Nothing, response: C::Keys,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Notary: keys of one server",
    },
    {
        id: "key_query_get_by_id", method: Method::GET,
        path: "/_matrix/key/v2/query/{serverName}/{keyId}",
        class: K::Keys, source: Source::Synapse, x_matrix: false, handler: H::Keys,
        request: C::Nothing, response: C::Keys,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Notary: keys of one server, deprecated form with a key ID (Synapse still serves it)",
    },
    {
        id: "key_query_post", method: Method::POST,
        path: "/_matrix/key/v2/query",
        class: K::Keys, source: Source::Spec, x_matrix: false, handler: H::Keys,
        request: C::Keys, response: C::Keys,
        request_body: B::Json, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Notary: keys of several servers",
    },
    // --- discovery -----------------------------------------------------------------------------
    {
        id: "version", method: Method::GET,
        path: "/_matrix/federation/v1/version",
        class: K::Version, source: Source::Spec, x_matrix: false, handler: H::Json,
        request: C::Nothing, response: C::ServerInfo,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Server software name and version",
    },
    {
        id: "well_known_server", method: Method::GET,
        path: "/.well-known/matrix/server",
        class: K::Version, source: Source::Spec, x_matrix: false, handler: H::Json,
        request: C::Nothing, response: C::ServerInfo,
        request_body: B::None, response_body: B::Json,
        request_events: NO_EVENTS, response_events: NO_EVENTS,
        summary: "Server discovery: delegated federation host:port",
    },
    // --- policy server -------------------------------------------------------------------------
    {
        id: "policy_sign", method: Method::POST,
        path: "/_matrix/policy/v1/sign",
        class: K::PolicyServer, source: Source::Spec, x_matrix: true, handler: H::PduRequest,
        request: C::Pdus, response: C::Signatures,
        request_body: B::Json, response_body: B::Json,
        request_events: BODY_IS_PDU, response_events: NO_EVENTS,
        summary: "Ask a room's policy server to sign an event (MSC4284)",
    },
];

/// Every catalog entry, in table order.
pub fn entries() -> &'static [Endpoint] {
    ENTRIES
}

/// The entry with this id.
pub fn by_id(id: &str) -> Option<&'static Endpoint> {
    ENTRIES.iter().find(|e| e.id == id)
}

// ---------------------------------------------------------------------------------------------
// Matching.

/// Maximum number of path segments of any template (`/_matrix/federation/v2/send_join/{r}/{e}`
/// has 6); longer paths never match.
const MAX_SEGMENTS: usize = 8;
/// Maximum number of parameters of any template.
pub const MAX_PARAMS: usize = 2;

#[derive(Debug)]
enum Seg {
    Lit(&'static str),
    Param(&'static str),
}

#[derive(Debug)]
struct Compiled {
    endpoint: &'static Endpoint,
    segs: Vec<Seg>,
    /// Bit (MAX_SEGMENTS-1-i) set if segment i is a literal: a larger mask is more specific.
    literal_mask: u16,
}

fn compiled() -> &'static [Compiled] {
    static COMPILED: OnceLock<Vec<Compiled>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        ENTRIES
            .iter()
            .map(|endpoint| {
                let segs: Vec<Seg> = endpoint.path[1..]
                    .split('/')
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) => Seg::Param(name),
                            None => Seg::Lit(s),
                        },
                    )
                    .collect();
                assert!(
                    segs.len() <= MAX_SEGMENTS,
                    "template too long: {}",
                    endpoint.path
                );
                let mut literal_mask = 0u16;
                for (i, s) in segs.iter().enumerate() {
                    if matches!(s, Seg::Lit(_)) {
                        literal_mask |= 1 << (MAX_SEGMENTS - 1 - i);
                    }
                }
                Compiled {
                    endpoint,
                    segs,
                    literal_mask,
                }
            })
            .collect()
    })
}

/// A matched request: the entry and its raw path parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointMatch<'p> {
    /// The catalog entry.
    pub endpoint: &'static Endpoint,
    params: [(&'static str, &'p str); MAX_PARAMS],
    len: u8,
}

impl<'p> EndpointMatch<'p> {
    /// Raw (still percent-encoded) value of a path parameter, by template name
    /// (`roomId`, `eventId`, …).
    pub fn param(&self, name: &str) -> Option<&'p str> {
        self.params()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// All path parameters in template order, raw.
    pub fn params(&self) -> &[(&'static str, &'p str)] {
        &self.params[..usize::from(self.len)]
    }

    /// A path parameter percent-decoded to UTF-8 (`None` if the template has no such
    /// parameter).
    pub fn param_decoded(&self, name: &str) -> Option<Result<Cow<'p, str>, PercentError>> {
        self.param(name).map(percent_decode)
    }
}

/// A path segment could not be percent-decoded to UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PercentError {
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    Malformed,
    /// The decoded bytes are not UTF-8.
    #[error("percent-decoded path parameter is not UTF-8")]
    NotUtf8,
}

/// Percent-decodes a raw path segment (no `+` → space translation: that is for query strings).
pub fn percent_decode(raw: &str) -> Result<Cow<'_, str>, PercentError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex_val(*b)),
                bytes.get(i + 2).and_then(|b| hex_val(*b)),
            ) else {
                return Err(PercentError::Malformed);
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PercentError::NotUtf8)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 `pchar` without `%` (checked separately): unreserved / sub-delims / ":" / "@".
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// Checks one raw segment: non-empty, only pchar and well-formed `%XX`, and not a dot segment
/// (also not `%2e`, `.%2E`, …).
fn segment_ok(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut i = 0;
    let mut dots = 0usize; // decoded length if the segment is made of dots only
    let mut only_dots = true;
    while i < b.len() {
        let c = if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|x| hex_val(*x)),
                b.get(i + 2).and_then(|x| hex_val(*x)),
            ) else {
                return false;
            };
            i += 3;
            h << 4 | l
        } else if is_pchar(b[i]) {
            i += 1;
            b[i - 1]
        } else {
            return false;
        };
        if c == b'.' {
            dots += 1;
        } else {
            only_dots = false;
        }
    }
    !(only_dots && dots <= 2)
}

/// Finds the catalog entry for a request.
///
/// `path` is the raw request path as received (percent-encoding intact, **without** the query
/// string: pass `uri.path()`). Returns `None` for a wrong method, an unknown path, or a path
/// that is not in normal form (empty or dot segments, bytes outside `pchar`, malformed
/// escapes, more than 8 segments). Allocation-free.
pub fn lookup<'p>(method: &Method, path: &'p str) -> Option<EndpointMatch<'p>> {
    let rest = path.strip_prefix('/')?;
    let mut segs: [&'p str; MAX_SEGMENTS] = [""; MAX_SEGMENTS];
    let mut n = 0;
    for seg in rest.split('/') {
        if n == MAX_SEGMENTS || !segment_ok(seg) {
            return None;
        }
        segs[n] = seg;
        n += 1;
    }
    let segs = &segs[..n];

    let mut best: Option<&Compiled> = None;
    for c in compiled() {
        if c.segs.len() != n || c.endpoint.method != method {
            continue;
        }
        if best.is_some_and(|b| b.literal_mask >= c.literal_mask) {
            continue;
        }
        let matches = c.segs.iter().zip(segs).all(|(t, s)| match t {
            Seg::Lit(l) => l == s,
            Seg::Param(_) => true,
        });
        if matches {
            best = Some(c);
        }
    }
    let c = best?;
    let mut params = [("", ""); MAX_PARAMS];
    let mut len = 0u8;
    for (t, s) in c.segs.iter().zip(segs) {
        if let Seg::Param(name) = t {
            params[usize::from(len)] = (name, s);
            len += 1;
        }
    }
    Some(EndpointMatch {
        endpoint: c.endpoint,
        params,
        len,
    })
}

/// True if some entry has this path template shape for *another* method (useful to answer
/// 405 vs 404; the guard refuses either way).
pub fn path_known(path: &str) -> bool {
    [Method::GET, Method::PUT, Method::POST]
        .iter()
        .any(|m| lookup(m, path).is_some())
}

// ---------------------------------------------------------------------------------------------
// Documentation.

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters): how a
/// room id, user id or alias goes into a path template's `{param}`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Renders the catalog as Markdown (committed as `docs/endpoints.md`).
pub fn render_markdown() -> String {
    let mut s = String::new();
    s.push_str(
        "# Federation endpoint catalog\n\n\
         <!-- Generated by `grenzwacht::federation::catalog::render_markdown`. Do not edit: \
         regenerate with `GRENZWACHT_BLESS=1 cargo test --lib federation::catalog`. -->\n\n\
         Every operation the guard forwards. A request that matches no row is refused \
         (404 `M_UNRECOGNIZED` or 403 `M_FORBIDDEN` by config) and never forwarded.\n\n\
         Matching is on the raw path (percent-encoding intact, no query): each `{param}` is \
         exactly one non-empty segment; empty segments, `.`/`..` segments (also \
         percent-encoded), bytes outside RFC 3986 `pchar` and malformed escapes are refused. \
         `GET /_matrix/federation/v1/query/{queryType}` is the fallback for query types other \
         than `profile` and `directory`.\n\n\
         Sources: `spec` = Matrix spec v1.19 server-server API; `synapse` = not in the spec but \
         served by current Synapse; `legacy_media` = client-server media download that Synapse \
         still sends to remote servers as a fallback.\n\n",
    );
    s.push_str(
        "| id | method | path | class | X-Matrix | handler | request | response | source |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for e in ENTRIES {
        let _ = writeln!(
            s,
            "| `{}` | {} | `{}` | {} | {} | {} | {} | {} | {} |",
            e.id,
            e.method,
            e.path,
            e.class.as_str(),
            if e.x_matrix { "yes" } else { "no" },
            e.handler.as_str(),
            body_cell(e.request_body, e.request),
            body_cell(e.response_body, e.response),
            e.source.as_str(),
        );
    }
    s.push_str(
        "\n## Where events sit\n\n\
         `(body)` = the body itself is the event; `[]` = every element of an array; `[1]` = the \
         object of a legacy `[200, {…}]` pair. Required sites must be present, optional ones \
         may be absent.\n\n\
         | id | direction | site | kind | required |\n|---|---|---|---|---|\n",
    );
    for e in ENTRIES {
        for (dir, sites) in [
            ("request", e.request_events),
            ("response", e.response_events),
        ] {
            for site in sites {
                let kind = match site.kind {
                    EventKind::Pdu => "pdu",
                    EventKind::StrippedState => "stripped_state",
                    EventKind::Template => "template",
                    EventKind::PartialEvent => "partial_event",
                };
                let _ = writeln!(
                    s,
                    "| `{}` | {} | `{}` | {} | {} |",
                    e.id,
                    dir,
                    site.display_path(),
                    kind,
                    if site.required { "yes" } else { "no" }
                );
            }
        }
    }
    s.push_str("\n## Summaries\n\n");
    for e in ENTRIES {
        let _ = writeln!(s, "- `{}`: {}", e.id, e.summary);
    }
    s
}

fn body_cell(kind: BodyKind, carries: Carries) -> String {
    match kind {
        BodyKind::None => "—".to_owned(),
        _ => format!("{} ({})", carries.as_str(), kind.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Realistic raw (percent-encoded as Synapse's `urllib.parse.quote(arg, "")` does) values.
    fn sample(param: &str) -> &'static str {
        match param {
            "roomId" => "%21r%3Aexample.org",
            "eventId" => "%24ev",
            "userId" => "%40u%3Aexample.org",
            "txnId" => "1712345678901",
            "mediaId" => "AbCdEf123",
            "queryType" => "client_keys",
            "serverName" => "example.org",
            "keyId" => "ed25519%3Aa_AbCd",
            other => panic!("no sample for {other}"),
        }
    }

    /// Other valid forms: unencoded sigils, v3 event IDs with an encoded `/`, a v12 room ID.
    fn alt_sample(param: &str) -> &'static str {
        match param {
            "roomId" => "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM",
            "eventId" => "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg",
            "userId" => "@u:example.org",
            "txnId" => "m1712345678901.0",
            "mediaId" => "m3d1a_x-Y",
            "queryType" => "foo",
            "serverName" => "%5B%3A%3A1%5D%3A8448",
            "keyId" => "ed25519:a_AbCd",
            other => panic!("no sample for {other}"),
        }
    }

    fn fill(template: &str, f: fn(&str) -> &'static str) -> String {
        template
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => f(name).to_owned(),
                    None => s.to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn table_has_all_spec_operations_and_the_synapse_extras() {
        let spec = ENTRIES.iter().filter(|e| e.source == Source::Spec).count();
        assert_eq!(spec, 36, "spec v1.19 has 36 server-server operations");
        for id in ["send_join_v1", "send_leave_v1", "key_server_by_id"] {
            assert_eq!(by_id(id).map(|e| e.source), Some(Source::Synapse), "{id}");
        }
        for (m, p) in [
            (
                Method::PUT,
                "/_matrix/federation/v1/send_join/{roomId}/{eventId}",
            ),
            (
                Method::PUT,
                "/_matrix/federation/v1/send_leave/{roomId}/{eventId}",
            ),
            (Method::GET, "/_matrix/key/v2/server/{keyId}"),
            (Method::POST, "/_matrix/policy/v1/sign"),
            (
                Method::GET,
                "/_matrix/federation/v1/media/download/{mediaId}",
            ),
            (
                Method::GET,
                "/_matrix/federation/v1/media/thumbnail/{mediaId}",
            ),
            (Method::POST, "/_matrix/key/v2/query"),
            (Method::GET, "/.well-known/matrix/server"),
        ] {
            assert!(
                ENTRIES.iter().any(|e| e.method == m && e.path == p),
                "{m} {p}"
            );
        }
    }

    #[test]
    fn ids_are_unique_bounded_snake_case() {
        let mut seen = HashSet::new();
        for e in ENTRIES {
            assert!(seen.insert(e.id), "duplicate id {}", e.id);
            assert!(!e.id.is_empty() && e.id.len() <= 32, "{}", e.id);
            assert!(
                e.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                e.id
            );
            assert!(e.id.as_bytes()[0].is_ascii_lowercase());
        }
        let mut seen = HashSet::new();
        for e in ENTRIES {
            assert!(
                seen.insert((e.method.clone(), e.path)),
                "duplicate {} {}",
                e.method,
                e.path
            );
        }
    }

    #[test]
    fn entries_are_internally_consistent() {
        for e in ENTRIES {
            assert_eq!(
                e.request_body == BodyKind::None,
                e.method == Method::GET,
                "{}",
                e.id
            );
            if e.request_body == BodyKind::None {
                assert_eq!(e.request, Carries::Nothing, "{}", e.id);
            }
            for dir in [Direction::Request, Direction::Response] {
                let sites = e.events(dir);
                if e.carries(dir).has_events() {
                    assert!(!sites.is_empty(), "{} {dir:?}", e.id);
                }
                if !sites.is_empty() {
                    assert!(
                        e.carries(dir).has_events() || e.carries(dir) == Carries::RoomMetadata,
                        "{} {dir:?}",
                        e.id
                    );
                }
                let pair = e.body(dir) == BodyKind::JsonStatusPair;
                for s in sites {
                    assert_eq!(s.path.first() == Some(&Step::Index(1)), pair, "{}", e.id);
                }
            }
            if e.handler == Handler::Transaction {
                assert_eq!(e.request, Carries::PdusAndEdus);
            }
            if e.handler == Handler::PduRequest {
                assert!(e.request.has_events(), "{}", e.id);
            }
            if e.handler == Handler::PduResponse {
                assert!(e.response.has_events(), "{}", e.id);
            }
            if e.handler == Handler::Media {
                assert!(matches!(
                    e.response_body,
                    BodyKind::Multipart | BodyKind::Binary
                ));
            }
            // Only Synapse/legacy extras and the unauthenticated spec endpoints skip X-Matrix.
            if !e.x_matrix {
                assert!(
                    matches!(
                        e.class,
                        EndpointClass::Keys
                            | EndpointClass::Version
                            | EndpointClass::Media
                            | EndpointClass::ThirdParty
                    ) || e.id == "openid_userinfo",
                    "{}",
                    e.id
                );
            }
        }
        for id in [
            "openid_userinfo",
            "third_party_onbind",
            "key_server",
            "version",
        ] {
            assert!(!by_id(id).unwrap().x_matrix, "{id}");
        }
        for id in [
            "send_transaction",
            "invite_v2",
            "media_download",
            "policy_sign",
        ] {
            assert!(by_id(id).unwrap().x_matrix, "{id}");
        }
    }

    #[test]
    fn every_template_matches_itself_and_only_itself() {
        for e in ENTRIES {
            for f in [sample as fn(&str) -> &'static str, alt_sample] {
                let path = fill(e.path, f);
                let m = lookup(&e.method, &path)
                    .unwrap_or_else(|| panic!("{} {path} did not match", e.method));
                assert_eq!(m.endpoint.id, e.id, "{path}");
                // Parameters come back raw and in order.
                let names: Vec<_> = m.params().iter().map(|(n, _)| *n).collect();
                let expected: Vec<_> = e
                    .path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                    .collect();
                assert_eq!(names, expected, "{}", e.id);
                for (n, v) in m.params() {
                    assert_eq!(*v, f(n));
                }
                // Exactly one entry's template accepts this path with this method, apart from
                // the generic query fallback, which is shadowed by the specific ones.
                let others: Vec<_> = ENTRIES
                    .iter()
                    .filter(|o| o.id != e.id && o.method == e.method)
                    .filter(|o| template_accepts(o.path, &path))
                    .map(|o| o.id)
                    .collect();
                let allowed: &[&str] = if matches!(e.id, "query_profile" | "query_directory") {
                    &["query_generic"]
                } else {
                    &[]
                };
                assert_eq!(others, allowed, "{path}");
                // Wrong methods are refused.
                for m in [
                    Method::GET,
                    Method::PUT,
                    Method::POST,
                    Method::DELETE,
                    Method::OPTIONS,
                ] {
                    if m != e.method
                        && !ENTRIES
                            .iter()
                            .any(|o| o.method == m && template_accepts(o.path, &path))
                    {
                        assert!(lookup(&m, &path).is_none(), "{m} {path}");
                    }
                }
            }
        }
    }

    /// Independent oracle: does `template` accept `path` (one non-empty segment per param)?
    fn template_accepts(template: &str, path: &str) -> bool {
        let t: Vec<_> = template.split('/').collect();
        let p: Vec<_> = path.split('/').collect();
        t.len() == p.len()
            && t.iter().zip(&p).all(|(t, p)| {
                if t.starts_with('{') {
                    !p.is_empty()
                } else {
                    t == p
                }
            })
    }

    #[test]
    fn params_decode() {
        let m = lookup(
            &Method::PUT,
            "/_matrix/federation/v2/invite/%21r%3Aexample.org/%24a%2Fb",
        )
        .unwrap();
        assert_eq!(m.endpoint.id, "invite_v2");
        assert_eq!(m.param("roomId"), Some("%21r%3Aexample.org"));
        assert_eq!(
            m.param_decoded("roomId").unwrap().unwrap(),
            "!r:example.org"
        );
        assert_eq!(m.param_decoded("eventId").unwrap().unwrap(), "$a/b");
        assert!(m.param("userId").is_none());
        assert_eq!(percent_decode("%C3%BC").unwrap(), "ü");
        assert_eq!(percent_decode("%FF"), Err(PercentError::NotUtf8));
        assert_eq!(percent_decode("%F"), Err(PercentError::Malformed));
    }

    #[test]
    fn query_fallback_is_shadowed() {
        let q = |p: &str| lookup(&Method::GET, p).map(|m| m.endpoint.id);
        assert_eq!(
            q("/_matrix/federation/v1/query/profile"),
            Some("query_profile")
        );
        assert_eq!(
            q("/_matrix/federation/v1/query/directory"),
            Some("query_directory")
        );
        assert_eq!(
            q("/_matrix/federation/v1/query/client_keys"),
            Some("query_generic")
        );
        // An encoded literal is not the literal: it falls to the generic entry.
        assert_eq!(
            q("/_matrix/federation/v1/query/%70rofile"),
            Some("query_generic")
        );
    }

    #[test]
    fn no_ambiguous_templates() {
        for (i, a) in ENTRIES.iter().enumerate() {
            for b in &ENTRIES[i + 1..] {
                if a.method != b.method {
                    continue;
                }
                let (sa, sb): (Vec<_>, Vec<_>) =
                    (a.path.split('/').collect(), b.path.split('/').collect());
                if sa.len() != sb.len() {
                    continue;
                }
                let overlap = sa
                    .iter()
                    .zip(&sb)
                    .all(|(x, y)| x.starts_with('{') || y.starts_with('{') || x == y);
                if overlap {
                    // Must be resolved by specificity: the literal masks differ.
                    let lit = |v: &Vec<&str>| -> Vec<bool> {
                        v.iter().map(|s| !s.starts_with('{')).collect()
                    };
                    assert_ne!(lit(&sa), lit(&sb), "{} vs {}", a.id, b.id);
                }
            }
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        let get = |p: &str| lookup(&Method::GET, p).is_some();
        assert!(get("/_matrix/federation/v1/version"));
        for bad in [
            "",
            "_matrix/federation/v1/version",
            "/_matrix/federation/v1/version/",
            "//_matrix/federation/v1/version",
            "/_matrix//federation/v1/version",
            "/_matrix/federation/v1/./version",
            "/_matrix/federation/v1/../v1/version",
            "/_matrix/federation%2Fv1/version",
            "/_matrix/federation%2fv1/version",
            "/_matrix/federation/v1/versio%6E",
            "/_matrix/federation/v1/version?x=1",
            "/_matrix/federation/v1/version#x",
            "/_matrix/federation/v1/Version",
            "/_matrix/federation/v1/version/x",
            "/_matrix/federation/v1/state/",
            "/_matrix/federation/v1/state/%2e",
            "/_matrix/federation/v1/state/..",
            "/_matrix/federation/v1/state/.%2E",
            "/_matrix/federation/v1/state/%zz",
            "/_matrix/federation/v1/state/%2",
            "/_matrix/federation/v1/state/a b",
            "/_matrix/federation/v1/state/a\"b",
            "/_matrix/federation/v1/state/\u{fc}",
            "/_matrix/federation/v1/event_auth/%21r/",
            "/_matrix/federation/v1/a/b/c/d/e/f/g/h/i",
        ] {
            assert!(!get(bad), "{bad:?} must be refused");
        }
        // An encoded slash inside a parameter is fine (v3 event IDs).
        assert!(get("/_matrix/federation/v1/event/%24abc%2Fdef"));
        // `...` is not a dot segment.
        assert!(get("/_matrix/federation/v1/state/..."));
        assert!(!path_known("/nope"));
        assert!(path_known("/_matrix/federation/v1/send/1"));
    }

    #[test]
    fn deprecated_key_query_with_a_key_id_is_catalogued() {
        let m =
            lookup(&Method::GET, "/_matrix/key/v2/query/hs2.test/ed25519:abc").expect("catalogued");
        assert_eq!(m.endpoint.id, "key_query_get_by_id");
        assert_eq!(m.endpoint.handler, Handler::Keys);
        assert_eq!(
            lookup(&Method::GET, "/_matrix/key/v2/query/hs2.test")
                .unwrap()
                .endpoint
                .id,
            "key_query_get"
        );
    }

    #[test]
    fn golden_docs_endpoints_md() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/endpoints.md");
        let rendered = render_markdown();
        if std::env::var_os("GRENZWACHT_BLESS").is_some() {
            std::fs::write(path, &rendered).expect("write docs/endpoints.md");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == rendered,
            "docs/endpoints.md is out of date with the catalog; regenerate it with \
             `GRENZWACHT_BLESS=1 cargo test --lib federation::catalog::tests::golden` and commit it"
        );
    }

    // --- property tests ------------------------------------------------------------------

    /// Oracle for "valid instance": some entry's template, filled with segments that are
    /// non-empty, pchar/escape-only and not dot segments.
    fn oracle(method: &Method, path: &str) -> Option<&'static str> {
        let rest = path.strip_prefix('/')?;
        let segs: Vec<&str> = rest.split('/').collect();
        let re_ok = |s: &str| {
            // Decode to bytes (not necessarily UTF-8); malformed escapes are invalid.
            let decoded: Option<Vec<u8>> = {
                let b = s.as_bytes();
                let mut out = Vec::new();
                let mut i = 0;
                let mut ok = true;
                while i < b.len() {
                    if b[i] == b'%' {
                        match s
                            .get(i + 1..i + 3)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                        {
                            Some(v)
                                if b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() =>
                            {
                                out.push(v);
                                i += 3;
                            }
                            _ => {
                                ok = false;
                                break;
                            }
                        }
                    } else {
                        out.push(b[i]);
                        i += 1;
                    }
                }
                ok.then_some(out)
            };
            !s.is_empty()
                && decoded.is_some_and(|d| d != b"." && d != b"..")
                && s.bytes().all(|b| is_pchar(b) || b == b'%')
        };
        if !segs.iter().all(|s| re_ok(s)) {
            return None;
        }
        let mut hits: Vec<&Endpoint> = ENTRIES
            .iter()
            .filter(|e| e.method == method && template_accepts(e.path, path))
            .collect();
        // Specific beats generic.
        if hits.len() > 1 {
            hits.retain(|e| e.id != "query_generic");
        }
        assert!(hits.len() <= 1, "{path}");
        hits.first().map(|e| e.id)
    }

    fn method_strategy() -> impl Strategy<Value = Method> {
        prop_oneof![
            Just(Method::GET),
            Just(Method::PUT),
            Just(Method::POST),
            Just(Method::DELETE)
        ]
    }

    fn segment_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_.~!$&'()*+,;=:@%-]{0,12}",
            Just(String::new()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2F".to_owned()),
            Just("%2e%2E".to_owned()),
            Just("_matrix".to_owned()),
            Just("federation".to_owned()),
            Just("v1".to_owned()),
            Just("send".to_owned()),
            Just("query".to_owned()),
            Just("profile".to_owned()),
            Just("key".to_owned()),
            Just("v2".to_owned()),
            Just("server".to_owned()),
            ".{0,4}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_paths_match_only_valid_instances(
            method in method_strategy(),
            segs in proptest::collection::vec(segment_strategy(), 0..9),
        ) {
            let path = format!("/{}", segs.join("/"));
            let got = lookup(&method, &path).map(|m| m.endpoint.id);
            prop_assert_eq!(got, oracle(&method, &path), "{}", path);
        }

        #[test]
        fn mutated_real_paths_match_only_valid_instances(
            idx in 0..ENTRIES.len(),
            pos in any::<prop::sample::Index>(),
            op in 0u8..6,
            byte in prop_oneof![
                Just(b'/'), Just(b'.'), Just(b'%'), Just(b'?'), Just(b' '), Just(b'{'),
                Just(b'a'), Just(b'Z'), Just(b'0'), any::<u8>()
            ],
            alt in any::<bool>(),
        ) {
            let e = &ENTRIES[idx];
            let base = fill(e.path, if alt { alt_sample } else { sample });
            let mut bytes = base.clone().into_bytes();
            let i = pos.index(bytes.len());
            match op {
                0 => { bytes.remove(i); }
                1 => bytes.insert(i, byte),
                2 => bytes[i] = byte,
                3 => bytes.truncate(i),
                4 => bytes.extend_from_slice(b"/x"),
                _ => {
                    // Percent-encode one byte of the path.
                    let b = bytes[i];
                    let enc = format!("%{b:02X}").into_bytes();
                    bytes.splice(i..=i, enc);
                }
            }
            let Ok(path) = String::from_utf8(bytes) else { return Ok(()); };
            let got = lookup(&e.method, &path).map(|m| m.endpoint.id);
            prop_assert_eq!(got, oracle(&e.method, &path), "{} (from {})", path, base);
        }
    }
}
