//! TLS configuration for every TLS endpoint of the guard.
//!
//! All TLS in grenzwacht — the inbound federation listener, the tunnelled TLS of the CONNECT
//! proxy, the guard's own outbound connections, the admin listener and the audit log's syslog
//! forwarder — goes through one [`provider`] (`crate::crypto::tls_provider`), so the algorithm
//! policy lives in exactly one place.
//!
//! # Algorithm policy (BSI TR-02102-2)
//!
//! [`provider`] is rustls' *ring* provider restricted to the intersection of what BSI
//! TR-02102-2 ("Verwendung von Transport Layer Security") recommends and what the *ring*
//! provider implements:
//!
//! | | allowed |
//! |---|---|
//! | protocol versions | TLS 1.3, TLS 1.2 (nothing older; rustls implements nothing older) |
//! | TLS 1.3 suites | `TLS_AES_256_GCM_SHA384`, `TLS_AES_128_GCM_SHA256` |
//! | TLS 1.2 suites | `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`, `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256` |
//! | key exchange groups | `secp384r1`, `secp256r1` |
//!
//! Left out on purpose:
//! - ChaCha20-Poly1305 (both versions): not in TR-02102-2.
//! - X25519: not among the TR-02102-2 groups (it names the brainpool and NIST curves and the
//!   FFDHE groups). *ring* has no brainpool curves and rustls no FFDHE in this provider, so the
//!   NIST curves are what remains.
//! - CBC suites (`…_CBC_SHA256`), CCM suites and DHE suites: TR-02102-2 permits some of them,
//!   but rustls/*ring* does not implement them, and GCM-only is the stricter choice anyway.
//!
//! The signature algorithms used to verify certificate chains and handshake signatures are
//! *ring*'s defaults (ECDSA P-256/P-384, RSA-PSS, RSA PKCS#1 v1.5 with ≥ 2048-bit keys,
//! Ed25519). They are not narrowed because the federation's PKI is not ours to choose: public
//! CAs still sign with RSA PKCS#1 v1.5, and refusing those chains would cut off most of the
//! Matrix federation while adding nothing to the confidentiality of the record layer.
//!
//! Compatibility: the TLS stacks under the common homeservers (OpenSSL for Synapse, Go
//! crypto/tls for Dendrite, rustls for Conduit and its forks) all offer AES-GCM with P-256 by
//! default, so the restriction should cost no interoperability with them.
//!
//! # ALPN
//!
//! Both the server and client configs offer only `http/1.1`. Federation traffic is HTTP/1.1
//! (Synapse's federation client speaks nothing else); a peer that insists on `h2` without
//! `http/1.1` fails the handshake (`no_application_protocol`), which is the fail-closed outcome.
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Errors of the TLS setup (loading certificates, keys and roots).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file held no certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificates(PathBuf),
    /// A PEM file held no private key.
    #[error("{0}: no PEM private key (PKCS#8, PKCS#1 or SEC1) found")]
    NoPrivateKey(PathBuf),
    /// rustls refused a key, a certificate or the key/certificate pair.
    #[error("{context}: {source}")]
    Rustls {
        /// What was being loaded.
        context: String,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// A root certificate could not be added to the trust store.
    #[error("{path}: unusable root certificate: {source}")]
    BadRoot {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// [`SniResolver::new`] was given no certificates.
    #[error("SNI resolver needs at least one certificate")]
    NoServerCertificates,
}

/// The only ALPN protocol offered and accepted.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider for all TLS in grenzwacht: *ring*, restricted to BSI TR-02102-2
/// (defined in [`crate::crypto::tls_provider`], shared with the admin listener and the audit
/// log's syslog forwarder; the list and the reasons are in the [module documentation](self)).
pub fn provider() -> Arc<CryptoProvider> {
    crate::crypto::tls_provider()
}

/// The protocol versions grenzwacht speaks: TLS 1.3 and TLS 1.2.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A server config using [`provider`], TLS 1.2 + 1.3, ALPN `http/1.1`, no client certificates,
/// and the given certificate resolver.
///
/// The server's suite order is preferred over the client's (`ignore_client_order`), so peers
/// that offer both get AES-256-GCM.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .expect("the TR-02102-2 provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.ignore_client_order = true;
    Arc::new(config)
}

/// A client config using [`provider`], TLS 1.2 + 1.3, ALPN `http/1.1`, verifying servers
/// against the PEM roots in `roots` (every certificate in every file), or against the
/// Mozilla roots of `webpki-roots` when `roots` is empty.
///
/// A configured root file that holds no certificate is an error (an empty trust store would
/// otherwise silently refuse everything, or worse, be mistaken for "use the defaults").
pub fn client_config(roots: &[PathBuf]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut store = RootCertStore::empty();
    if roots.is_empty() {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for path in roots {
            for cert in read_certs(path)? {
                store.add(cert).map_err(|source| TlsError::BadRoot {
                    path: path.clone(),
                    source,
                })?;
            }
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .expect("the TR-02102-2 provider supports TLS 1.2 and 1.3")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// Reads every PEM certificate in `path` (at least one).
pub(crate) fn read_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates(path.to_path_buf()));
    }
    Ok(certs)
}

/// Loads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1)
/// into a [`CertifiedKey`], checking that the key belongs to the leaf.
pub fn load_certified_key(cert_pem: &Path, key_pem: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert_pem)?;
    let io = |source| TlsError::Io {
        path: key_pem.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(key_pem).map_err(io)?);
    let key = rustls_pemfile::private_key(&mut reader)
        .map_err(io)?
        .ok_or_else(|| TlsError::NoPrivateKey(key_pem.to_path_buf()))?;
    let certified =
        CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::Rustls {
            context: format!("{} + {}", cert_pem.display(), key_pem.display()),
            source,
        })?;
    Ok(Arc::new(certified))
}

pub use crate::federation::server_name::host_part;

/// Normalised lookup key for a host: lower case, no trailing dot.
fn host_key(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Chooses the certificate of a protected server by the SNI of the ClientHello.
///
/// Built from `(server_name, certificate)` pairs, where `server_name` is the Matrix server name
/// (`host`, `host:port`, `[v6]:port`). The SNI is compared with the host part of each server
/// name, ignoring case and a trailing dot.
///
/// When the client sends no SNI, or an SNI that matches no entry, the **first** entry is used.
/// Rationale: clients connecting to an IP-literal server name send no SNI at all (RFC 6066
/// forbids IP addresses in SNI), so the default must serve them; put the IP-literal protected
/// server first when there is one. Serving the default for an unknown name rather than aborting
/// leaves the decision to the client's certificate check, which fails for a name the
/// certificate does not cover — the same outcome as an abort, with a clearer error at the peer.
/// When two entries have the same host (different ports), the first wins.
#[derive(Debug, Clone)]
pub struct SniResolver {
    entries: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    /// Builds the resolver. Fails when `entries` is empty.
    pub fn new(
        entries: impl IntoIterator<Item = (String, Arc<CertifiedKey>)>,
    ) -> Result<SniResolver, TlsError> {
        let entries: Vec<_> = entries
            .into_iter()
            .map(|(name, key)| (host_key(host_part(&name)), key))
            .collect();
        if entries.is_empty() {
            return Err(TlsError::NoServerCertificates);
        }
        Ok(SniResolver { entries })
    }

    /// The certificate served for `sni` (`None` = no SNI sent).
    pub fn lookup(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(sni) = sni {
            let wanted = host_key(host_part(sni));
            if let Some((_, key)) = self.entries.iter().find(|(host, _)| *host == wanted) {
                return key.clone();
            }
        }
        self.entries[0].1.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(client_hello.server_name()))
    }
}

#[cfg(test)]
mod tests;
