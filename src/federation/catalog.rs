//! Endpoint catalog (stub: the class enum is shared with config).
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
    /// query/profile, user/devices, user/keys/*, openid/userinfo
    User,
    /// media download/thumbnail
    Media,
    /// publicRooms, hierarchy, query/directory
    Directory,
    /// key/v2/server, key/v2/query
    Keys,
    /// /version
    Version,
    /// 3pid/onbind, third-party invites
    ThirdParty,
    /// policy server signing
    PolicyServer,
}
