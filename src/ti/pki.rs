//! Trust anchors for the federation list signer: the TSL root list and intermediates, and the
//! X.509 chain check (brainpoolP256r1 / ECDSA-SHA256). Owner: helper `ti-pki`.
//!
//! The TSL root list is gematik's JSON format: an array of objects whose `cert` (base64 DER) is
//! a root CA certificate; `next` / `prev` (base64 DER, may be empty) are cross certificates
//! between consecutive root generations and are kept as intermediates, so a chain can reach an
//! older or newer root through them.
//!
//! [`TrustAnchors::verify_leaf`] builds a path leaf → intermediates → root depth first
//! (issuer DN = subject DN byte for byte; where the child has an authority key identifier and
//! the candidate a subject key identifier, they must be equal; no certificate and no subject
//! with the same key twice; roots are tried before intermediates; at most [`MAX_PATH`]
//! certificates) and accepts the first path on which:
//! * every signature is ecdsa-with-SHA256 by an issuer key on brainpoolP256r1 (anything else is
//!   an "unsupported algorithm"), checked with the `bp256` / `ecdsa` crates;
//! * every certificate, the root included, is valid at the given time;
//! * every issuer is a CA (basicConstraints `cA`), has keyUsage with keyCertSign, and its
//!   pathLenConstraint admits the CA certificates below it;
//! * the leaf has keyUsage digitalSignature, is not a CA and has a brainpoolP256r1 key;
//! * no certificate has a critical extension this check does not know.
//!
//! When no path is accepted the most telling error is reported: the first validity, signature
//! or constraint failure, else the first unsupported algorithm, else "no path".
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

/// At most this many certificates in a path, leaf and root included.
pub const MAX_PATH: usize = 6;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_BRAINPOOL_P256R1: &str = "1.3.36.3.3.2.8.1.1.7";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

/// Extensions that may be critical (their content is either checked here or does not restrict
/// the use of a list signer chain).
const KNOWN_CRITICAL: &[&str] = &[
    "2.5.29.14",    // subjectKeyIdentifier
    "2.5.29.15",    // keyUsage
    "2.5.29.17",    // subjectAltName
    "2.5.29.19",    // basicConstraints
    "2.5.29.32",    // certificatePolicies
    "2.5.29.35",    // authorityKeyIdentifier
    "2.5.29.37",    // extKeyUsage
    "1.3.36.8.3.3", // admission (gematik profession information)
];

/// Errors reading trust anchors or checking a chain.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    /// The TSL root list is not in the expected format.
    #[error("TSL root list {path}: {reason}")]
    TslFormat { path: String, reason: String },
    /// There is no root to check against.
    #[error("no trusted root certificates")]
    NoRoots,
    /// A certificate is not parseable DER X.509.
    #[error("{what}: not a readable X.509 certificate ({reason})")]
    Parse { what: String, reason: String },
    /// A signature or key algorithm other than ECDSA-SHA256 on brainpoolP256r1.
    #[error("unsupported algorithm in {subject}: {algorithm}")]
    UnsupportedAlgorithm { subject: String, algorithm: String },
    /// The certificate's validity period has not started.
    #[error("certificate {subject} is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    /// The certificate's validity period is over.
    #[error("certificate {subject} expired at {not_after}")]
    Expired { subject: String, not_after: String },
    /// The signature on a certificate does not verify with its issuer's key.
    #[error("the signature on certificate {subject} does not verify with the key of {issuer}")]
    BadSignature { subject: String, issuer: String },
    /// Key usage, basic constraints, path length or a critical extension.
    #[error("certificate {subject}: {reason}")]
    Constraint { subject: String, reason: String },
    /// No issuer of a certificate is known.
    #[error("no path to a trusted root: no known issuer {issuer} for {subject}")]
    NoPath { subject: String, issuer: String },
    /// The path would exceed [`MAX_PATH`].
    #[error("no path to a trusted root within {MAX_PATH} certificates for {subject}")]
    PathTooLong { subject: String },
}

/// Roots (from the TSL root list) and intermediate CA certificates (DER).
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    pub roots: Vec<Vec<u8>>,
    pub intermediates: Vec<Vec<u8>>,
}

/// The signer certificate of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLeaf {
    /// SEC1 (uncompressed) brainpoolP256r1 public key.
    pub public_key: Vec<u8>,
    /// Subject DN as text (RFC 4514 style).
    pub subject: String,
    /// Validity period, RFC 3339.
    pub not_before: String,
    pub not_after: String,
    /// Subject DNs of the path above the leaf, the root last.
    pub path: Vec<String>,
}

impl TrustAnchors {
    /// Reads the TSL root list (JSON) and the intermediate DER files.
    pub fn load(tsl_roots: &Path, intermediates: &[PathBuf]) -> Result<Self, PkiError> {
        let json = std::fs::read(tsl_roots).map_err(|e| PkiError::Read {
            path: tsl_roots.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut anchors =
            TrustAnchors::from_tsl_json(&json).map_err(|reason| PkiError::TslFormat {
                path: tsl_roots.display().to_string(),
                reason,
            })?;
        for path in intermediates {
            let der = std::fs::read(path).map_err(|e| PkiError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            parse(&der, &path.display().to_string())?;
            anchors.intermediates.push(der);
        }
        Ok(anchors)
    }

    /// Reads a TSL root list (JSON text): roots from `cert`, cross certificates from
    /// `next` / `prev` as intermediates. Every certificate must parse.
    pub fn from_tsl_json(json: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("not JSON ({e})"))?;
        let items = value
            .as_array()
            .ok_or_else(|| "not a JSON array".to_owned())?;
        let mut anchors = TrustAnchors::default();
        for (i, item) in items.iter().enumerate() {
            let obj = item
                .as_object()
                .ok_or_else(|| format!("entry {i} is not an object"))?;
            let name = obj
                .get("cn")
                .or_else(|| obj.get("name"))
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            for key in ["cert", "next", "prev"] {
                let text = match obj.get(key) {
                    None | Some(serde_json::Value::Null) if key != "cert" => continue,
                    Some(serde_json::Value::String(s)) if s.trim().is_empty() && key != "cert" => {
                        continue
                    }
                    Some(serde_json::Value::String(s)) => s,
                    _ => return Err(format!("entry {i} ({name}): {key} is not a base64 string")),
                };
                let der = decode_b64_lenient(text)
                    .ok_or_else(|| format!("entry {i} ({name}): {key} is not base64"))?;
                parse(&der, &format!("{name} {key}"))
                    .map_err(|e| format!("entry {i} ({name}): {e}"))?;
                if key == "cert" {
                    anchors.roots.push(der);
                } else {
                    anchors.intermediates.push(der);
                }
            }
        }
        if anchors.roots.is_empty() {
            return Err("no root certificates".into());
        }
        Ok(anchors)
    }

    /// Checks that `leaf_der` chains to a root at `at` (validity, key usage, CA constraints,
    /// signatures); returns the leaf's brainpoolP256r1 public key (SEC1 bytes).
    pub fn verify_leaf(&self, leaf_der: &[u8], at: SystemTime) -> Result<Vec<u8>, PkiError> {
        self.verify_leaf_detailed(leaf_der, at)
            .map(|v| v.public_key)
    }

    /// [`TrustAnchors::verify_leaf`] with the leaf's subject, validity and path.
    pub fn verify_leaf_detailed(
        &self,
        leaf_der: &[u8],
        at: SystemTime,
    ) -> Result<VerifiedLeaf, PkiError> {
        if self.roots.is_empty() {
            return Err(PkiError::NoRoots);
        }
        let at_unix = unix_seconds(at);
        let leaf = parse(leaf_der, "signer certificate")?;
        check_validity(&leaf, at_unix)?;
        check_critical(&leaf)?;
        check_leaf(&leaf)?;
        let public_key = brainpool_key(&leaf)?;
        let roots = parse_all(&self.roots)?;
        let intermediates = parse_all(&self.intermediates)?;
        let mut path: Vec<&X509Certificate<'_>> = vec![&leaf];
        build(&roots, &intermediates, &mut path, at_unix)?;
        Ok(VerifiedLeaf {
            public_key,
            subject: leaf.subject().to_string(),
            not_before: rfc3339(leaf.validity().not_before.timestamp()),
            not_after: rfc3339(leaf.validity().not_after.timestamp()),
            path: path[1..].iter().map(|c| c.subject().to_string()).collect(),
        })
    }
}

fn parse_all(ders: &[Vec<u8>]) -> Result<Vec<X509Certificate<'_>>, PkiError> {
    ders.iter().map(|d| parse(d, "trust anchor")).collect()
}

/// Depth-first path building from `path.last()` to a root; on success `path` holds the path.
fn build<'c>(
    roots: &'c [X509Certificate<'c>],
    intermediates: &'c [X509Certificate<'c>],
    path: &mut Vec<&'c X509Certificate<'c>>,
    at: i64,
) -> Result<(), PkiError> {
    let Some(&child) = path.last() else {
        return Err(PkiError::NoRoots);
    };
    let mut best_error: Option<PkiError> = None;
    let candidates = roots
        .iter()
        .map(|c| (c, true))
        .chain(intermediates.iter().map(|c| (c, false)));
    for (cand, is_root) in candidates {
        // no certificate, and no subject with the same key (a cross certificate of a CA
        // already on the path), twice
        if !may_have_issued(cand, child)
            || path.iter().any(|p| {
                p.as_raw() == cand.as_raw()
                    || (p.subject().as_raw() == cand.subject().as_raw()
                        && p.public_key().raw == cand.public_key().raw)
            })
        {
            continue;
        }
        if path.len() >= MAX_PATH {
            keep_best(
                &mut best_error,
                PkiError::PathTooLong {
                    subject: child.subject().to_string(),
                },
            );
            continue;
        }
        // CA certificates below `cand`: everything on the path but the leaf.
        let below = path.len() - 1;
        if let Err(e) = check_issuer(cand, child, below, at) {
            keep_best(&mut best_error, e);
            continue;
        }
        path.push(cand);
        if is_root {
            return Ok(());
        }
        match build(roots, intermediates, path, at) {
            Ok(()) => return Ok(()),
            Err(e) => {
                path.pop();
                keep_best(&mut best_error, e);
            }
        }
    }
    Err(best_error.unwrap_or_else(|| PkiError::NoPath {
        subject: child.subject().to_string(),
        issuer: child.issuer().to_string(),
    }))
}

/// Keeps the more telling of two failures (the first of equally telling ones): validity,
/// signature and constraint failures say more than an unsupported algorithm on a detour, which
/// says more than "no path".
fn keep_best(best: &mut Option<PkiError>, e: PkiError) {
    fn rank(e: &PkiError) -> u8 {
        match e {
            PkiError::NoPath { .. } | PkiError::PathTooLong { .. } | PkiError::NoRoots => 0,
            PkiError::UnsupportedAlgorithm { .. } => 1,
            _ => 2,
        }
    }
    if best.as_ref().is_none_or(|b| rank(&e) > rank(b)) {
        *best = Some(e);
    }
}

/// Names (and key identifiers, where both are present) match.
fn may_have_issued(issuer: &X509Certificate<'_>, child: &X509Certificate<'_>) -> bool {
    if issuer.subject().as_raw() != child.issuer().as_raw() {
        return false;
    }
    match (authority_key_id(child), subject_key_id(issuer)) {
        (Some(aki), Some(ski)) => aki == ski,
        _ => true,
    }
}

fn authority_key_id<'a>(cert: &'a X509Certificate<'a>) -> Option<&'a [u8]> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        })
}

fn subject_key_id<'a>(cert: &'a X509Certificate<'a>) -> Option<&'a [u8]> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        })
}

/// `issuer` may sign `child` with `below` CA certificates under it, at `at`.
fn check_issuer(
    issuer: &X509Certificate<'_>,
    child: &X509Certificate<'_>,
    below: usize,
    at: i64,
) -> Result<(), PkiError> {
    let subject = issuer.subject().to_string();
    let constraint = |reason: String| PkiError::Constraint {
        subject: subject.clone(),
        reason,
    };
    check_validity(issuer, at)?;
    check_critical(issuer)?;
    let bc = issuer
        .basic_constraints()
        .map_err(|e| constraint(format!("unreadable basicConstraints ({e})")))?;
    let Some(bc) = bc.filter(|bc| bc.value.ca) else {
        return Err(constraint(
            "is not a CA (basicConstraints cA missing)".into(),
        ));
    };
    if let Some(max) = bc.value.path_len_constraint {
        if below > max as usize {
            return Err(constraint(format!(
                "pathLenConstraint {max} exceeded ({below} CA certificates below it)"
            )));
        }
    }
    let ku = issuer
        .key_usage()
        .map_err(|e| constraint(format!("unreadable keyUsage ({e})")))?;
    if !ku.is_some_and(|ku| ku.value.key_cert_sign()) {
        return Err(constraint("keyUsage lacks keyCertSign".into()));
    }
    verify_signature(child, issuer)
}

fn check_leaf(leaf: &X509Certificate<'_>) -> Result<(), PkiError> {
    let subject = leaf.subject().to_string();
    let constraint = |reason: &str| PkiError::Constraint {
        subject: subject.clone(),
        reason: reason.to_owned(),
    };
    match leaf.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            return Err(constraint("a CA certificate cannot sign lists"))
        }
        Ok(_) => {}
        Err(_) => return Err(constraint("unreadable basicConstraints")),
    }
    match leaf.key_usage() {
        Ok(Some(ku)) if ku.value.digital_signature() => Ok(()),
        Ok(_) => Err(constraint("keyUsage lacks digitalSignature")),
        Err(_) => Err(constraint("unreadable keyUsage")),
    }
}

fn check_critical(cert: &X509Certificate<'_>) -> Result<(), PkiError> {
    for ext in cert.extensions() {
        if !ext.critical {
            continue;
        }
        let oid = ext.oid.to_id_string();
        if !KNOWN_CRITICAL.contains(&oid.as_str()) {
            return Err(PkiError::Constraint {
                subject: cert.subject().to_string(),
                reason: format!("unknown critical extension {oid}"),
            });
        }
        if let ParsedExtension::ParseError { .. } = ext.parsed_extension() {
            return Err(PkiError::Constraint {
                subject: cert.subject().to_string(),
                reason: format!("unreadable critical extension {oid}"),
            });
        }
    }
    Ok(())
}

fn check_validity(cert: &X509Certificate<'_>, at: i64) -> Result<(), PkiError> {
    let v = cert.validity();
    let (nb, na) = (v.not_before.timestamp(), v.not_after.timestamp());
    if at < nb {
        return Err(PkiError::NotYetValid {
            subject: cert.subject().to_string(),
            not_before: rfc3339(nb),
        });
    }
    if at > na {
        return Err(PkiError::Expired {
            subject: cert.subject().to_string(),
            not_after: rfc3339(na),
        });
    }
    Ok(())
}

/// The certificate's key as SEC1 bytes, if it is an EC key on brainpoolP256r1.
fn brainpool_key(cert: &X509Certificate<'_>) -> Result<Vec<u8>, PkiError> {
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    if alg != OID_EC_PUBLIC_KEY || curve.as_deref() != Some(OID_BRAINPOOL_P256R1) {
        return Err(PkiError::UnsupportedAlgorithm {
            subject: cert.subject().to_string(),
            algorithm: format!(
                "public key {} {}",
                alg_name(&alg),
                curve.as_deref().map(alg_name).unwrap_or_default()
            )
            .trim_end()
            .to_owned(),
        });
    }
    Ok(spki.subject_public_key.data.to_vec())
}

/// Verifies the signature on `child` with the key of `issuer`.
fn verify_signature(
    child: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), PkiError> {
    let alg = child.signature_algorithm.algorithm.to_id_string();
    if alg != OID_ECDSA_SHA256 {
        return Err(PkiError::UnsupportedAlgorithm {
            subject: child.subject().to_string(),
            algorithm: format!("signature {}", alg_name(&alg)),
        });
    }
    let key = brainpool_key(issuer)?;
    let bad = || PkiError::BadSignature {
        subject: child.subject().to_string(),
        issuer: issuer.subject().to_string(),
    };
    let vk =
        ecdsa::VerifyingKey::<bp256::BrainpoolP256r1>::from_sec1_bytes(&key).map_err(|_| {
            PkiError::Constraint {
                subject: issuer.subject().to_string(),
                reason: "public key is not a brainpoolP256r1 point".into(),
            }
        })?;
    let sig =
        bp256::r1::ecdsa::Signature::from_der(&child.signature_value.data).map_err(|_| bad())?;
    use ecdsa::signature::Verifier as _;
    vk.verify(child.tbs_certificate.as_ref(), &sig)
        .map_err(|_| bad())
}

/// The brainpoolP256r1 key (SEC1) of a certificate, without any chain check.
pub fn leaf_key(der: &[u8]) -> Result<Vec<u8>, PkiError> {
    brainpool_key(&parse(der, "signer certificate")?)
}

/// Verifies a raw r‖s ECDSA-SHA256 signature on brainpoolP256r1 (`key`: SEC1).
pub fn verify_bp256(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use ecdsa::signature::Verifier as _;
    let Ok(vk) = ecdsa::VerifyingKey::<bp256::BrainpoolP256r1>::from_sec1_bytes(key) else {
        return false;
    };
    let Ok(sig) = bp256::r1::ecdsa::Signature::from_slice(signature) else {
        return false;
    };
    vk.verify(message, &sig).is_ok()
}

fn alg_name(oid: &str) -> &str {
    match oid {
        "1.2.840.113549.1.1.1" => "rsaEncryption",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10045.2.1" => "ecPublicKey",
        "1.2.840.10045.3.1.7" => "prime256v1",
        "1.3.132.0.34" => "secp384r1",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        "1.3.36.3.3.2.8.1.1.11" => "brainpoolP384r1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        other => other,
    }
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(PkiError::Parse {
            what: what.to_owned(),
            reason: "trailing bytes".into(),
        }),
        Err(e) => Err(PkiError::Parse {
            what: what.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Standard base64, padding optional, whitespace ignored.
fn decode_b64_lenient(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let trimmed = compact.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .ok()
}

pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn rfc3339(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix.to_string(),
    }
}

#[cfg(test)]
mod tests;
