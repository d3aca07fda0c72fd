//! The signed federation list: JWS compact serialisation, `alg` BP256R1 (ECDSA on
//! brainpoolP256r1 with SHA-256, signature r‖s), signer certificate in `x5c[0]`.
//! Owner: helper `ti-pki`.
//!
//! Checks, in order: at most [`MAX_JWS_BYTES`]; exactly three non-empty base64url parts (no padding, no stray bits;
//! whitespace at the end of the input is tolerated); the header is a JSON object with `alg`
//! exactly `BP256R1` (`none`, `ES256`, … are refused) and no `crit`; `x5c[0]` is standard
//! base64 DER; the 64-byte signature verifies over `header '.' payload` with the key of
//! `x5c[0]`; that certificate chains to the trust anchors at the given time
//! ([`TrustAnchors::verify_leaf_detailed`]); the payload parses
//! ([`FederationList::parse_payload`]).
use std::time::SystemTime;

use base64::Engine as _;

use super::list::{FederationList, PayloadError};
use super::pki::{PkiError, TrustAnchors, VerifiedLeaf};

/// The only accepted `alg`.
pub const ALG: &str = "BP256R1";

/// A larger JWS is refused unread (gematik's test list of 175 entries has 35 KB).
pub const MAX_JWS_BYTES: usize = 16 * 1024 * 1024;

/// Why a signed list is invalid.
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    /// Not a well-formed compact JWS with a usable header.
    #[error("malformed JWS: {0}")]
    Malformed(String),
    /// `alg` is not `BP256R1` (the value, shortened).
    #[error("JWS algorithm {0:?} is not accepted (only BP256R1)")]
    Algorithm(String),
    /// The signature does not verify with the key of `x5c[0]`.
    #[error("the JWS signature does not verify with the signer certificate")]
    Signature,
    /// The signer certificate does not chain to the trust anchors.
    #[error("signer certificate: {0}")]
    Chain(#[from] PkiError),
    /// The payload is not a federation list.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

impl JwsError {
    /// Bounded metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            JwsError::Malformed(_) => "malformed",
            JwsError::Algorithm(_) => "algorithm",
            JwsError::Signature => "signature",
            JwsError::Chain(_) => "chain",
            JwsError::Payload(_) => "payload",
        }
    }
}

/// A verified list and its signer.
#[derive(Debug, Clone)]
pub struct VerifiedList {
    pub list: FederationList,
    pub signer: VerifiedLeaf,
}

/// Verifies the JWS against the anchors at `at` and parses its payload.
pub fn verify_list(
    jws: &[u8],
    anchors: &TrustAnchors,
    at: SystemTime,
) -> Result<FederationList, JwsError> {
    verify_list_detailed(jws, anchors, at).map(|v| v.list)
}

/// [`verify_list`] with the signer certificate's details.
pub fn verify_list_detailed(
    jws: &[u8],
    anchors: &TrustAnchors,
    at: SystemTime,
) -> Result<VerifiedList, JwsError> {
    let malformed = |s: &str| JwsError::Malformed(s.to_owned());
    if jws.len() > MAX_JWS_BYTES {
        return Err(JwsError::Malformed(format!(
            "larger than {MAX_JWS_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(jws).map_err(|_| malformed("not text"))?;
    let text = text.trim_end_matches([' ', '\t', '\r', '\n']);
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 3 {
        return Err(JwsError::Malformed(format!(
            "{} parts, a compact JWS has 3",
            parts.len()
        )));
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut decoded = Vec::with_capacity(3);
    for (name, part) in ["header", "payload", "signature"].iter().zip(&parts) {
        if part.is_empty() {
            return Err(JwsError::Malformed(format!("empty {name}")));
        }
        let bytes = b64
            .decode(part)
            .map_err(|_| JwsError::Malformed(format!("{name} is not unpadded base64url")))?;
        decoded.push(bytes);
    }
    let (header, payload, signature) = (&decoded[0], &decoded[1], &decoded[2]);

    let header: serde_json::Value =
        serde_json::from_slice(header).map_err(|_| malformed("header is not JSON"))?;
    let header = header
        .as_object()
        .ok_or_else(|| malformed("header is not a JSON object"))?;
    match header.get("alg") {
        Some(serde_json::Value::String(a)) if a == ALG => {}
        Some(serde_json::Value::String(a)) => {
            return Err(JwsError::Algorithm(a.chars().take(32).collect()))
        }
        Some(_) => return Err(JwsError::Algorithm("(not a string)".into())),
        None => return Err(JwsError::Algorithm("(missing)".into())),
    }
    if header.contains_key("crit") {
        return Err(malformed(
            "header has crit (no critical header is supported)",
        ));
    }
    let leaf_b64 = header
        .get("x5c")
        .and_then(|v| v.as_array())
        .and_then(|a| a.first())
        .and_then(|v| v.as_str())
        .ok_or_else(|| malformed("header has no x5c certificate"))?;
    let leaf_der = base64::engine::general_purpose::STANDARD
        .decode(leaf_b64)
        .map_err(|_| malformed("x5c[0] is not base64"))?;

    if signature.len() != 64 {
        return Err(JwsError::Malformed(format!(
            "signature has {} bytes, BP256R1 has 64",
            signature.len()
        )));
    }
    // The key of x5c[0] first (the signature decides before the chain is built), then the chain.
    let key = super::pki::leaf_key(&leaf_der)?;
    let signing_input = &text.as_bytes()[..parts[0].len() + 1 + parts[1].len()];
    if !super::pki::verify_bp256(&key, signing_input, signature) {
        return Err(JwsError::Signature);
    }
    let signer = anchors.verify_leaf_detailed(&leaf_der, at)?;
    let list = FederationList::parse_payload(payload)?;
    Ok(VerifiedList { list, signer })
}

#[cfg(test)]
mod tests;
