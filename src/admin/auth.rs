//! Who is asking: bearer tokens and client certificates → [`Principal`].
//!
//! Tokens are read once, when the admin listener is built, from each principal's
//! `token_file` (surrounding whitespace ignored, at least [`MIN_TOKEN_LEN`] bytes, no two
//! principals with the same token). Only their SHA-256 digests are kept; a presented token is
//! hashed and compared with every digest in constant time (`subtle`), so neither the token nor
//! how much of it matched shows in the timing. Tokens are never logged or recorded.
//!
//! A client certificate (already verified against `[admin.tls] client_ca_file` by the TLS
//! handshake) maps to the principal whose `cert_cn` and/or `cert_subject` equal the
//! certificate's common name / subject; a certificate that maps to no principal is refused
//! (401) even if a token comes with it. With both a mapped certificate and a token, the token
//! must belong to the same principal.
use std::collections::HashMap;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::tls::CertIdentity;
use super::AdminError;
use crate::config::admin::{PrincipalConfig, RoleName};
use crate::review::{Authenticate, Principal, Role};

/// Shortest accepted bearer token (bytes).
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest accepted bearer token (bytes); longer `Authorization` headers are refused unread.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a request is not authenticated (all answered with 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("unknown token")]
    UnknownToken,
    #[error("client certificate maps to no principal")]
    UnknownCertificate,
    #[error("token and client certificate name different principals")]
    Mismatch,
}

struct CertMapping {
    cn: Option<String>,
    subject: Option<String>,
    principal: usize,
}

/// The configured principals and how they authenticate.
pub struct AdminAuth {
    principals: Vec<Principal>,
    /// (SHA-256 of the token, index into `principals`).
    tokens: Vec<([u8; 32], usize)>,
    certs: Vec<CertMapping>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field(
                "principals",
                &self.principals.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn role(r: RoleName) -> Role {
    match r {
        RoleName::Reviewer => Role::Reviewer,
        RoleName::Auditor => Role::Auditor,
        RoleName::Admin => Role::Admin,
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Reads a token file: trimmed, [`MIN_TOKEN_LEN`]..=[`MAX_TOKEN_LEN`] bytes, visible ASCII.
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN || token.len() > MAX_TOKEN_LEN {
        return Err(format!(
            "the token must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} bytes long"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII without spaces".into());
    }
    Ok(token.to_owned())
}

impl AdminAuth {
    /// Builds the principals of `[[admin.principal]]`: reads token and clearance files; with
    /// `spifs` (the label layer's), every clearance must resolve against them.
    pub fn from_config(
        principals: &[PrincipalConfig],
        spifs: Option<&crate::spif::SpifSet>,
    ) -> Result<AdminAuth, AdminError> {
        let mut auth = AdminAuth {
            principals: Vec::new(),
            tokens: Vec::new(),
            certs: Vec::new(),
        };
        let mut seen: HashMap<[u8; 32], String> = HashMap::new();
        for (i, p) in principals.iter().enumerate() {
            let bad = |what: String| AdminError::Principal {
                name: p.name.clone(),
                reason: what,
            };
            let clearance = match (&p.clearance, &p.clearance_file) {
                (Some(v), _) => Some(
                    crate::spif::Clearance::from_json(v)
                        .map_err(|e| bad(format!("clearance: {e}")))?,
                ),
                (None, Some(f)) => {
                    let bytes = std::fs::read(f)
                        .map_err(|e| bad(format!("clearance_file {}: {e}", f.display())))?;
                    Some(
                        crate::spif::Clearance::parse(&bytes)
                            .map_err(|e| bad(format!("clearance_file {}: {e}", f.display())))?,
                    )
                }
                (None, None) => None,
            };
            if let (Some(c), Some(set)) = (&clearance, spifs) {
                // Resolves every classification and category against the loaded SPIFs.
                set.clearance_marking(c, None)
                    .map_err(|e| bad(format!("clearance: {e}")))?;
            }
            let clearance = clearance.map(|c| c.to_json());
            auth.principals.push(Principal {
                name: p.name.clone(),
                role: role(p.role),
                clearance,
            });
            if let Some(f) = &p.token_file {
                let token = read_token_file(f).map_err(|reason| AdminError::Principal {
                    name: p.name.clone(),
                    reason: format!("token_file {}: {reason}", f.display()),
                })?;
                let d = digest(token.as_bytes());
                if let Some(other) = seen.insert(d, p.name.clone()) {
                    return Err(AdminError::Principal {
                        name: p.name.clone(),
                        reason: format!("has the same token as principal `{other}`"),
                    });
                }
                auth.tokens.push((d, i));
            }
            if p.cert_cn.is_some() || p.cert_subject.is_some() {
                auth.certs.push(CertMapping {
                    cn: p.cert_cn.clone(),
                    subject: p.cert_subject.clone(),
                    principal: i,
                });
            }
        }
        Ok(auth)
    }

    /// Whether any principal is configured.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }

    /// The principal a client certificate maps to.
    pub fn certificate(&self, id: &CertIdentity) -> Option<Principal> {
        self.certs
            .iter()
            .find(|m| {
                m.cn.as_ref().is_none_or(|cn| id.cn.as_ref() == Some(cn))
                    && m.subject.as_ref().is_none_or(|s| *s == id.subject)
            })
            .map(|m| self.principals[m.principal].clone())
    }

    fn token_index(&self, token: &str) -> Option<usize> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let d = digest(token.as_bytes());
        let mut found = None;
        // Every digest is compared; none is skipped once one matched.
        for (digest, i) in &self.tokens {
            if bool::from(digest.ct_eq(&d)) {
                found = Some(*i);
            }
        }
        found
    }

    /// The principal of a request: its client certificate (if one was presented) and/or its
    /// `Authorization: Bearer` token (see the module documentation).
    pub fn identify(
        &self,
        headers: &HeaderMap,
        cert: Option<&CertIdentity>,
    ) -> Result<Principal, AuthError> {
        let by_cert = match cert {
            Some(id) => Some(self.certificate(id).ok_or(AuthError::UnknownCertificate)?),
            None => None,
        };
        let by_token = match bearer_token(headers)? {
            Some(token) => Some(self.bearer(token).ok_or(AuthError::UnknownToken)?),
            None => None,
        };
        match (by_cert, by_token) {
            (Some(c), Some(t)) if c.name != t.name => Err(AuthError::Mismatch),
            (Some(p), _) | (None, Some(p)) => Ok(p),
            (None, None) => Err(AuthError::Missing),
        }
    }
}

impl Authenticate for AdminAuth {
    fn bearer(&self, token: &str) -> Option<Principal> {
        self.token_index(token).map(|i| self.principals[i].clone())
    }
}

/// The token of an `Authorization: Bearer …` header; `Ok(None)` without the header.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() || value.len() > MAX_TOKEN_LEN + 16 {
        return Err(AuthError::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(
        dir: &std::path::Path,
        name: &str,
        role: RoleName,
        token: &str,
    ) -> PrincipalConfig {
        let f = dir.join(format!("{name}.token"));
        std::fs::write(&f, format!("{token}\n")).unwrap();
        PrincipalConfig {
            name: name.into(),
            role,
            token_file: Some(f),
            cert_cn: None,
            cert_subject: None,
            clearance: None,
            clearance_file: None,
        }
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn tokens_resolve_to_their_principal_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut cert_only = principal(dir.path(), "carol", RoleName::Admin, "unused-unused-unused");
        cert_only.token_file = None;
        cert_only.cert_cn = Some("carol".into());
        let auth = AdminAuth::from_config(
            &[
                principal(
                    dir.path(),
                    "alice",
                    RoleName::Reviewer,
                    "alice-token-0123456789",
                ),
                principal(dir.path(), "bob", RoleName::Auditor, "bob-token-0123456789"),
                cert_only,
            ],
            None,
        )
        .unwrap();
        let alice = auth.bearer("alice-token-0123456789").unwrap();
        assert_eq!((alice.name.as_str(), alice.role), ("alice", Role::Reviewer));
        assert_eq!(
            auth.bearer("bob-token-0123456789").unwrap().role,
            Role::Auditor
        );
        assert!(auth.bearer("alice-token-012345678").is_none());
        assert!(auth.bearer("").is_none());
        assert_eq!(
            auth.identify(&headers("Bearer alice-token-0123456789"), None)
                .unwrap()
                .name,
            "alice"
        );
        assert_eq!(
            auth.identify(&headers("bearer   bob-token-0123456789"), None)
                .unwrap()
                .name,
            "bob"
        );
        assert_eq!(
            auth.identify(&headers("Basic YWxpY2U6eA=="), None),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            auth.identify(&HeaderMap::new(), None),
            Err(AuthError::Missing)
        );
        let carol = CertIdentity {
            subject: "CN=carol".into(),
            cn: Some("carol".into()),
        };
        let mallory = CertIdentity {
            subject: "CN=mallory".into(),
            cn: Some("mallory".into()),
        };
        assert_eq!(
            auth.identify(&HeaderMap::new(), Some(&carol)).unwrap().name,
            "carol"
        );
        assert_eq!(
            auth.identify(&headers("Bearer alice-token-0123456789"), Some(&mallory)),
            Err(AuthError::UnknownCertificate)
        );
        assert_eq!(
            auth.identify(&headers("Bearer alice-token-0123456789"), Some(&carol)),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn clearances_resolve_against_the_label_layers_spifs() {
        let dir = tempfile::tempdir().unwrap();
        let spifs =
            crate::spif::SpifSet::load([concat!(env!("CARGO_MANIFEST_DIR"), "/spif/deu-vs.xml")])
                .unwrap();
        let deu = "1.3.6.1.4.1.99999.1.1";
        let mut p = principal(dir.path(), "a", RoleName::Reviewer, "a-token-0123456789ab");
        p.clearance = Some(serde_json::json!({"policy": deu, "classifications": [1, 2]}));
        let auth = AdminAuth::from_config(std::slice::from_ref(&p), Some(&spifs)).unwrap();
        let a = auth.bearer("a-token-0123456789ab").unwrap();
        assert_eq!(
            a.clearance.unwrap()["classifications"],
            serde_json::json!([1, 2])
        );
        p.clearance = Some(serde_json::json!({"policy": deu, "classifications": [99]}));
        assert!(AdminAuth::from_config(std::slice::from_ref(&p), None).is_ok());
        let e = AdminAuth::from_config(&[p.clone()], Some(&spifs))
            .unwrap_err()
            .to_string();
        assert!(e.contains("principal `a`: clearance"), "{e}");
        p.clearance = Some(serde_json::json!({"policy": "1.2.3", "classifications": [1]}));
        assert!(AdminAuth::from_config(&[p], Some(&spifs)).is_err());
    }

    #[test]
    fn short_shared_and_missing_tokens_are_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let e = AdminAuth::from_config(
            &[principal(dir.path(), "a", RoleName::Admin, "short")],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`a`") && e.contains("16 to 4096"), "{e}");
        let e = AdminAuth::from_config(
            &[
                principal(dir.path(), "a", RoleName::Admin, "same-token-0123456789"),
                principal(dir.path(), "b", RoleName::Reviewer, "same-token-0123456789"),
            ],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("same token as principal `a`"), "{e}");
        assert!(
            !e.contains("same-token-0123456789"),
            "no token in errors: {e}"
        );
        let mut p = principal(dir.path(), "c", RoleName::Admin, "x");
        p.token_file = Some(dir.path().join("missing"));
        let e = AdminAuth::from_config(&[p], None).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
