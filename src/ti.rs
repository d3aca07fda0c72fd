//! The TI-Messenger profile: the guard as the Messenger-Proxy of a TI-Messenger homeserver.
//!
//! * [`list`]: the federation list (lenient payload parsing, domain matching).
//! * [`pki`]: the TSL root list, intermediate certificates and the X.509 chain check.
//! * [`jws`]: the signed list (JWS compact, `alg` BP256R1, `x5c` leaf) verified against [`pki`].
//! * [`keeper`]: where the list comes from (VZD or file), the last good list on disk, refresh,
//!   refetch on a miss, the 72 h age limit.
//! * [`accountdata`]: a protected user's invite permission config, read through the
//!   homeserver's admin API, cached briefly, fail closed.
//! * [`permissions`]: the permission config and the invite decision.
//! * [`testpki`]: a throwaway brainpoolP256r1 CA and list signer for tests and the lab.
//! * [`cli`]: `grenzwacht ti verify-list`.
//!
//! The enforcement points are in `proxy` (the federation exchange and the client-server
//! listener); they all ask [`Ti`].
pub mod accountdata;
pub mod cli;
pub mod jws;
pub mod keeper;
pub mod list;
pub mod permissions;
pub mod pki;
pub mod testpki;

use std::sync::Arc;

use crate::config::ti::{TiConfig, TiHomeserver, TiVariant};

/// Why the TI profile refuses something. The text is safe to send to a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TiDenial {
    /// The domain is not on the federation list (after one refetch).
    #[error("{domain} is not on the TI-Messenger federation list")]
    NotListed { domain: String },
    /// The list is older than the age limit (or there has never been a verified one).
    #[error("the TI-Messenger federation list is not current: federation is blocked")]
    ListStale,
    /// The invitee's permission config refuses the inviter.
    #[error("{invitee} does not accept invites from {inviter}")]
    InviteRefused { inviter: String, invitee: String },
    /// Invites between two insured persons' domains (ePA).
    #[error("invites between insured persons are not permitted")]
    InsuredToInsured,
    /// The permission config could not be read (fail closed).
    #[error("the invite permissions of {invitee} cannot be read")]
    PermissionsUnreadable { invitee: String },
    /// A client-server request the TI profile refuses (createRoom with several invitees, …).
    #[error("{0}")]
    ClientRule(String),
}

impl TiDenial {
    /// Bounded metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            TiDenial::NotListed { .. } => "not_listed",
            TiDenial::ListStale => "list_stale",
            TiDenial::InviteRefused { .. } => "invite_refused",
            TiDenial::InsuredToInsured => "insured_to_insured",
            TiDenial::PermissionsUnreadable { .. } => "permissions_unreadable",
            TiDenial::ClientRule(_) => "client_rule",
        }
    }
}

/// Errors setting the TI profile up.
#[derive(Debug, thiserror::Error)]
pub enum TiError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Keeper(#[from] keeper::KeeperError),
    #[error(transparent)]
    AccountData(#[from] accountdata::AccountDataError),
}

/// The TI profile at run time: one per guard.
pub struct Ti {
    variant: TiVariant,
    /// The federation list.
    pub keeper: Arc<keeper::ListKeeper>,
    /// Permission configs of protected users.
    pub accounts: accountdata::AccountDataReader,
    /// Protected server names (same-domain traffic is not checked).
    protected: Vec<String>,
    /// `[[ti.homeserver]]` (the client-server listeners read theirs).
    homeservers: Vec<TiHomeserver>,
    /// `[ti] release_encrypted`.
    release_encrypted: bool,
}

impl Ti {
    /// Builds the profile from `[ti]` (loads the trust anchors and the last good list; no
    /// network access).
    pub fn from_config(cfg: &TiConfig, protected: Vec<String>) -> Result<Ti, TiError> {
        Ok(Ti {
            variant: cfg.variant,
            keeper: Arc::new(keeper::ListKeeper::new(cfg)?),
            accounts: accountdata::AccountDataReader::new(cfg)?,
            protected,
            homeservers: cfg.homeserver.clone(),
            release_encrypted: cfg.release_encrypted,
        })
    }

    /// The `[[ti.homeserver]]` entry of a protected server.
    pub fn homeserver(&self, server_name: &str) -> Option<&TiHomeserver> {
        self.homeservers
            .iter()
            .find(|h| h.server_name.eq_ignore_ascii_case(server_name))
    }

    /// End-to-end encrypted content crosses (`[ti] release_encrypted`): ciphertext events,
    /// and files whose bytes are ciphertext (encrypted attachments of E2EE rooms, whose
    /// referencing events the guard cannot read).
    pub fn releases_encrypted(&self) -> bool {
        self.release_encrypted
    }

    pub fn variant(&self) -> TiVariant {
        self.variant
    }

    /// Whether `server_name` is (the domain of) a protected server: not checked against the list.
    pub fn is_own(&self, server_name: &str) -> bool {
        let d = list::domain_of(server_name);
        self.protected.iter().any(|p| list::domain_of(p) == d)
    }

    /// The server may be talked to: own domain, or listed in a current list (an unknown
    /// domain refetches the list once, rate limited, before it is refused).
    pub async fn check_server(&self, server_name: &str) -> Result<(), TiDenial> {
        if self.is_own(server_name) {
            return Ok(());
        }
        self.keeper.check(server_name).await.map(|_| ())
    }

    /// An invite from `inviter` (MXID) for the protected user `invitee` (MXID): the invitee's
    /// permission config decides (read through the admin API, fail closed).
    pub async fn check_invite(&self, inviter: &str, invitee: &str) -> Result<(), TiDenial> {
        let list = self.keeper.current().ok_or(TiDenial::ListStale)?;
        let config = self
            .accounts
            .permission_config(invitee)
            .await
            .map_err(|e| {
                tracing::warn!(invitee, error = %e, "TI: permission config unreadable");
                TiDenial::PermissionsUnreadable {
                    invitee: invitee.to_owned(),
                }
            })?;
        permissions::decide(self.variant, config.as_ref(), inviter, invitee, &list)
    }
}
