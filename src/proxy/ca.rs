//! Certificate authorities: a small general CA ([`Ca`]) and the interception CA of the
//! CONNECT proxy ([`InterceptionCa`]).
//!
//! # Why an interception CA
//!
//! When a protected homeserver uses the guard as its `https_proxy`, it sends `CONNECT
//! host:port` and then runs TLS to `host` through the tunnel. To inspect that traffic the guard
//! terminates the tunnelled TLS itself, with a leaf certificate for `host` minted on demand from
//! its own CA. The homeserver trusts that CA — and, with Synapse's
//! `federation_custom_ca_list`, *only* that CA — so the guard is the only party its federation
//! traffic can reach. The guard then re-originates the request to the real destination and
//! verifies the destination's real certificate against its own configured roots.
//!
//! # Key material and files
//!
//! `grenzwacht ca init --dir DIR` ([`InterceptionCa::init`]) writes `DIR/ca.crt` (give it to the
//! homeserver) and `DIR/ca.key` (mode 0600, never leaves the guard). Existing files are never
//! overwritten: replacing the CA silently would break every homeserver that trusts the old one.
//! Keys are ECDSA P-256 (fast to mint, accepted by every TLS stack); leaves get a fresh key each.
//!
//! The CA has `basicConstraints CA:TRUE, pathlen:0` (it can issue leaves, not sub-CAs) and key
//! usage `keyCertSign, cRLSign`; it is valid for ten years. Leaves carry their names as DNS or
//! IP SANs (interception leaves: exactly one, the CONNECT target), EKU `serverAuth`, key usage
//! `digitalSignature`, `CA:FALSE`, an authority key identifier equal to the CA's subject key
//! identifier (OpenSSL, and so Synapse, uses it to build the chain; Python ≥ 3.13's default
//! `VERIFY_X509_STRICT` requires it), random 128-bit serials, and `notBefore` backdated by
//! [`CLOCK_SKEW_ALLOWANCE`] so a peer whose clock is a little behind still accepts them.
//! Leaves from a CA made here and from an `openssl req -x509` CA pass
//! `openssl verify -x509_strict -purpose sslserver`.
//!
//! # Loading without x509-parser
//!
//! rcgen 0.13 signs only with an issuer certificate it built itself. [`Ca::load`] therefore
//! rebuilds the issuer from the stored certificate's subject name, subject key identifier and
//! the stored key (see the `der` submodule), and refuses to load when the rebuilt subject name
//! does not re-encode to exactly the stored bytes or the key does not match the certificate —
//! leaves signed by a mismatching issuer would fail chain building at the peer.
//!
//! # Leaf cache
//!
//! [`InterceptionCa::leaf_for`] caches one leaf per host. A leaf is re-minted when less than a
//! quarter of its validity remains, so a tunnel never gets a certificate about to expire. The
//! cache holds at most [`DEFAULT_CACHE_CAPACITY`] hosts; when full, stale entries are dropped
//! first, then the entry closest to expiry. Minting runs outside the cache lock (a P-256 key and
//! signature take well under a millisecond); two tunnels racing for the same new host may both
//! mint, and the later one replaces the earlier in the cache — both leaves are valid.
mod der;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use super::tls;

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// Common name of the CA made by [`InterceptionCa::init`].
pub const INTERCEPTION_CA_NAME: &str = "grenzwacht interception CA";
/// How far `notBefore` of every issued certificate lies in the past.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);
/// Validity of a CA made by [`Ca::generate`].
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Maximum number of hosts in the leaf cache of an [`InterceptionCa`].
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Errors of CA creation, loading and issuance.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// [`Ca::save`] found an existing CA file and left it alone.
    #[error("{0} already exists; refusing to overwrite an existing CA")]
    Exists(PathBuf),
    /// The CA certificate file holds no PEM certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(PathBuf),
    /// The CA key file holds no usable key.
    #[error("{path}: unusable private key: {source}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// The CA key does not belong to the CA certificate.
    #[error("{0}: the private key does not match the CA certificate")]
    KeyMismatch(PathBuf),
    /// The CA certificate cannot be used as an issuer by this implementation.
    #[error("{path}: unsupported CA certificate: {reason}")]
    UnsupportedCert {
        /// The certificate file.
        path: PathBuf,
        /// What was not supported.
        reason: String,
    },
    /// A name to certify is neither a DNS name nor an IP literal.
    #[error("not a DNS name or IP address: {0:?}")]
    BadName(String),
    /// [`Ca::issue_pem`] was given no names.
    #[error("a certificate needs at least one name")]
    NoNames,
    /// rcgen failed to generate a key or certificate.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the issued certificate/key pair.
    #[error("rustls refused the issued certificate: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A certificate authority: one key, one self-signed certificate, issuing server leaves.
pub struct Ca {
    key: KeyPair,
    /// rcgen's view of the CA, used only as the issuer when signing.
    issuer: rcgen::Certificate,
    /// Whether leaves carry an authority key identifier (the CA has a subject key identifier).
    with_aki: bool,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.issuer.params().distinguished_name)
            .finish_non_exhaustive()
    }
}

/// 128 random bits, top bit clear (a positive INTEGER of at most 16 bytes).
fn random_serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&bytes)
}

fn backdated_now() -> OffsetDateTime {
    OffsetDateTime::now_utc() - CLOCK_SKEW_ALLOWANCE
}

/// The SAN for one name: IP literal (brackets allowed) or DNS name (no wildcards).
fn san_for(name: &str) -> Result<SanType, CaError> {
    let bad = || CaError::BadName(name.to_string());
    let trimmed = name.trim();
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = trimmed.trim_end_matches('.').to_ascii_lowercase();
    if dns.contains('*') || rustls::pki_types::DnsName::try_from(dns.as_str()).is_err() {
        return Err(bad());
    }
    Ok(SanType::DnsName(dns.try_into().map_err(|_| bad())?))
}

impl Ca {
    /// Creates a new CA: ECDSA P-256 key, self-signed certificate with the given common name,
    /// `CA:TRUE, pathlen:0`, key usage `keyCertSign, cRLSign`, valid for [`CA_VALIDITY`].
    pub fn generate(common_name: &str) -> Result<Ca, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        params.not_before = backdated_now();
        params.not_after = OffsetDateTime::now_utc() + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: cert,
            with_aki: true,
            key,
        })
    }

    /// Writes `dir/ca.crt` (mode 0644) and `dir/ca.key` (mode 0600), creating `dir` (mode
    /// 0700) if needed. Refuses, without writing anything, when either file exists.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        create_private_dir(dir)?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        for path in [&cert_path, &key_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(CaError::Exists(path.clone()));
            }
        }
        write_new(&key_path, self.key.serialize_pem().as_bytes(), 0o600)?;
        if let Err(e) = write_new(&cert_path, self.cert_pem.as_bytes(), 0o644) {
            let _ = fs::remove_file(&key_path);
            return Err(e);
        }
        Ok(())
    }

    /// Loads `dir/ca.crt` and `dir/ca.key`.
    ///
    /// Fails when the key does not match the certificate, or when the certificate's subject
    /// name uses encodings this implementation cannot reproduce exactly (multi-valued RDNs,
    /// string types other than UTF8String, PrintableString and IA5String). Certificates made by
    /// [`Ca::generate`] and typical `openssl req -x509` CAs load fine.
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_der = tls::read_certs(&cert_path)
            .map_err(|e| match e {
                tls::TlsError::Io { path, source } => CaError::Io { path, source },
                _ => CaError::NoCertificate(cert_path.clone()),
            })?
            .swap_remove(0);
        let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|source| CaError::BadKey {
            path: key_path.clone(),
            source,
        })?;
        let unsupported = |reason: String| CaError::UnsupportedCert {
            path: cert_path.clone(),
            reason,
        };
        let parts = der::cert_parts(&cert_der).map_err(|e| unsupported(e.0.to_string()))?;
        if parts.spki != key.public_key_der().as_slice() {
            return Err(CaError::KeyMismatch(key_path));
        }
        let mut dn = DistinguishedName::new();
        for (oid, tag, bytes) in
            der::name_attributes(parts.subject).map_err(|e| unsupported(e.0.to_string()))?
        {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| unsupported("subject attribute is not valid text".into()))?;
            let value = match tag {
                0x0c => DnValue::Utf8String(text.to_string()),
                0x13 => DnValue::PrintableString(
                    text.try_into()
                        .map_err(|_| unsupported("bad PrintableString".into()))?,
                ),
                0x16 => DnValue::Ia5String(
                    text.try_into()
                        .map_err(|_| unsupported("bad IA5String".into()))?,
                ),
                other => {
                    return Err(unsupported(format!(
                        "subject attribute string type 0x{other:02x}"
                    )))
                }
            };
            dn.push(DnType::from_oid(&oid), value);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        if let Some(ski) = parts.ski {
            params.key_identifier_method = KeyIdMethod::PreSpecified(ski.to_vec());
        }
        let issuer = params.self_signed(&key)?;
        let rebuilt = der::cert_parts(issuer.der()).map_err(|e| unsupported(e.0.to_string()))?;
        if rebuilt.subject != parts.subject {
            return Err(unsupported(
                "subject name does not re-encode identically".into(),
            ));
        }
        Ok(Ca {
            with_aki: parts.ski.is_some(),
            cert_pem: der_to_pem(&cert_der),
            cert_der,
            issuer,
            key,
        })
    }

    /// The CA certificate in PEM (re-encoded from DER: exactly one certificate).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    fn issue(
        &self,
        names: &[String],
        validity: Duration,
    ) -> Result<(rcgen::Certificate, KeyPair), CaError> {
        if names.is_empty() {
            return Err(CaError::NoNames);
        }
        let sans = names
            .iter()
            .map(|n| san_for(n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let first = names[0].trim();
        if first.len() <= 64 {
            dn.push(DnType::CommonName, first);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        // NoCa, not ExplicitNoCa: an explicit `cA FALSE` is a DER-encoded default, which
        // strict parsers (Python `cryptography`, so Synapse) reject.
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = self.with_aki;
        params.serial_number = Some(random_serial());
        params.not_before = backdated_now();
        params.not_after = OffsetDateTime::now_utc() + validity;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok((cert, key))
    }

    /// Issues a server certificate for `names` (each a DNS name or an IP literal, optionally
    /// bracketed; becomes a DNS or IP SAN), valid from [`CLOCK_SKEW_ALLOWANCE`] ago until
    /// `validity` from now. Returns `(certificate PEM, PKCS#8 key PEM)`; the certificate PEM
    /// holds the leaf only.
    pub fn issue_pem(
        &self,
        names: &[String],
        validity: Duration,
    ) -> Result<(String, String), CaError> {
        let (cert, key) = self.issue(names, validity)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Like [`Ca::issue_pem`], as a rustls [`CertifiedKey`] whose chain is leaf + CA
    /// certificate.
    pub fn issue_certified_key(
        &self,
        names: &[String],
        validity: Duration,
    ) -> Result<Arc<CertifiedKey>, CaError> {
        let (cert, key) = self.issue(names, validity)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let certified = CertifiedKey::from_der(
            vec![cert.der().clone(), self.cert_der.clone()],
            key_der,
            &tls::provider(),
        )?;
        Ok(Arc::new(certified))
    }
}

/// PEM encoding of one DER certificate.
fn der_to_pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CaError::Exists(path.to_path_buf())
            } else {
                CaError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(CaError::Io {
            path: path.to_path_buf(),
            source: e,
        });
    }
    Ok(())
}

/// The interception CA of the CONNECT proxy: mints, caches and serves leaves per CONNECT target.
///
/// See the [module documentation](self) for the design.
pub struct InterceptionCa {
    ca: Ca,
    leaf_validity: Duration,
    capacity: usize,
    cache: Mutex<HashMap<String, CachedLeaf>>,
}

struct CachedLeaf {
    key: Arc<CertifiedKey>,
    not_after: SystemTime,
}

impl std::fmt::Debug for InterceptionCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterceptionCa")
            .field("ca", &self.ca)
            .field("leaf_validity", &self.leaf_validity)
            .field("cached_leaves", &self.cached_leaves())
            .finish()
    }
}

/// Canonical cache key and certificate name for a CONNECT target: host without port and
/// brackets, lower case, no trailing dot; IP literals in their canonical text form.
fn canonical_host(target: &str) -> Result<String, CaError> {
    let host = tls::host_part(target).trim_end_matches('.');
    if host.is_empty() {
        return Err(CaError::BadName(target.to_string()));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let host = host.to_ascii_lowercase();
    // Validate now so a bad name is refused before anything is cached.
    san_for(&host).map_err(|_| CaError::BadName(target.to_string()))?;
    Ok(host)
}

impl InterceptionCa {
    /// Creates a new interception CA in `dir` (`ca.crt`, `ca.key`) and returns the path of
    /// `ca.crt`. Refuses to overwrite an existing CA. Backs `grenzwacht ca init --dir DIR`.
    pub fn init(dir: &Path) -> Result<PathBuf, CaError> {
        let ca = Ca::generate(INTERCEPTION_CA_NAME)?;
        ca.save(dir)?;
        Ok(dir.join(CA_CERT_FILE))
    }

    /// Loads the CA from `dir`; leaves will be valid for `leaf_validity` (the config enforces
    /// at least 300 s; much shorter values make every tunnel mint a new leaf).
    pub fn load(dir: &Path, leaf_validity: Duration) -> Result<InterceptionCa, CaError> {
        Ok(Self::from_ca(Ca::load(dir)?, leaf_validity))
    }

    /// Wraps an existing [`Ca`].
    pub fn from_ca(ca: Ca, leaf_validity: Duration) -> InterceptionCa {
        Self::with_capacity(ca, leaf_validity, DEFAULT_CACHE_CAPACITY)
    }

    fn with_capacity(ca: Ca, leaf_validity: Duration, capacity: usize) -> InterceptionCa {
        InterceptionCa {
            ca,
            leaf_validity,
            capacity: capacity.max(1),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The underlying CA.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// Number of hosts with a cached leaf.
    pub fn cached_leaves(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedLeaf>> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leaf certificate (chain: leaf + CA) for a CONNECT target (`host`, `host:port`,
    /// `[v6]:port`, IP literal). Cached; re-minted when less than a quarter of the validity
    /// remains.
    pub fn leaf_for(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        self.leaf_for_at(host, SystemTime::now())
    }

    fn fresh(&self, leaf: &CachedLeaf, now: SystemTime) -> bool {
        now + self.leaf_validity / 4 < leaf.not_after
    }

    fn leaf_for_at(&self, host: &str, now: SystemTime) -> Result<Arc<CertifiedKey>, CaError> {
        let host = canonical_host(host)?;
        if let Some(leaf) = self.lock().get(&host) {
            if self.fresh(leaf, now) {
                return Ok(leaf.key.clone());
            }
        }
        let minted_at = SystemTime::now();
        let key = self
            .ca
            .issue_certified_key(std::slice::from_ref(&host), self.leaf_validity)?;
        let leaf = CachedLeaf {
            key: key.clone(),
            not_after: minted_at + self.leaf_validity,
        };
        let mut cache = self.lock();
        if cache.len() >= self.capacity && !cache.contains_key(&host) {
            cache.retain(|_, l| self.fresh(l, now));
            if cache.len() >= self.capacity {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, l)| l.not_after)
                    .map(|(h, _)| h.clone());
                if let Some(oldest) = oldest {
                    cache.remove(&oldest);
                }
            }
        }
        cache.insert(host, leaf);
        Ok(key)
    }

    /// A certificate resolver for one CONNECT tunnel: it serves the leaf for `host` whatever
    /// SNI the client sends (clients send none for IP targets). The leaf is minted (or taken
    /// from the cache) now, so a bad host is refused before the tunnel is confirmed.
    pub fn resolver_for(&self, host: &str) -> Result<Arc<dyn ResolvesServerCert>, CaError> {
        Ok(Arc::new(FixedResolver(self.leaf_for(host)?)))
    }
}

/// Serves one certificate regardless of the ClientHello.
#[derive(Debug)]
struct FixedResolver(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests;
