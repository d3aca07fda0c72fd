//! TLS for the admin listener (`[admin.tls]`) and for the `review` CLI that talks to it.
//!
//! The server config offers TLS 1.3 and 1.2 with the suites of BSI TR-02102-2 (the same list
//! as the federation listeners), ALPN `http/1.1`, and, with `client_ca_file`, asks for client
//! certificates through rustls' `WebPkiClientVerifier` (optional or required). A verified
//! client certificate is reduced to a [`CertIdentity`] (its subject in RFC 4514 form and its
//! common name), which `admin::auth` maps to a principal.
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::AdminError;
use crate::config::admin::{AdminTlsConfig, ClientAuth};

/// The crypto provider: *ring*, restricted to the TR-02102-2 suites and groups
/// ([`crate::crypto::tls_provider`], the same as every other TLS endpoint of the guard).
pub fn provider() -> Arc<CryptoProvider> {
    crate::crypto::tls_provider()
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AdminError + '_ {
    move |source| AdminError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every PEM certificate in `path` (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AdminError> {
    let mut reader = BufReader::new(File::open(path).map_err(io_err(path))?);
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(path))?;
    if certs.is_empty() {
        return Err(AdminError::Tls(format!(
            "{}: no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The first PEM private key in `path`.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, AdminError> {
    let mut reader = BufReader::new(File::open(path).map_err(io_err(path))?);
    rustls_pemfile::private_key(&mut reader)
        .map_err(io_err(path))?
        .ok_or_else(|| AdminError::Tls(format!("{}: no PEM private key", path.display())))
}

fn roots(path: &Path) -> Result<RootCertStore, AdminError> {
    let mut store = RootCertStore::empty();
    for cert in read_certs(path)? {
        store
            .add(cert)
            .map_err(|e| AdminError::Tls(format!("{}: {e}", path.display())))?;
    }
    Ok(store)
}

/// The admin listener's server config (see the module documentation).
pub fn server_config(cfg: &AdminTlsConfig) -> Result<Arc<ServerConfig>, AdminError> {
    let chain = read_certs(&cfg.cert_file)?;
    let key = read_key(&cfg.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| AdminError::Tls(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider());
            let verifier = match cfg.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| AdminError::Tls(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| AdminError::Tls(format!("{}: {e}", cfg.key_file.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// A client config for the `review` CLI: server verified against `ca` (PEM) or the webpki
/// roots; with `identity` (certificate chain file, key file) a client certificate.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, AdminError> {
    let store = match ca {
        Some(ca) => roots(ca)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| AdminError::Tls(e.to_string()))?
        .with_root_certificates(store);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| AdminError::Tls(format!("{}: {e}", key.display())))?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a verified client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject in RFC 4514 form (last RDN first), e.g. `CN=alice,O=Example`.
    pub subject: String,
    /// The (last) common name of the subject, if any.
    pub cn: Option<String>,
}

/// One DER TLV: (tag, contents, rest). Single-octet tags, definite lengths only.
fn tlv(data: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, rest) = data.split_first().ok_or("truncated")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-octet tag".into());
    }
    let (&l0, mut rest) = rest.split_first().ok_or("truncated")?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 3 || rest.len() < n {
            return Err("bad length".into());
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err("truncated".into());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn oid_name(body: &[u8]) -> Option<&'static str> {
    Some(match body {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x05] => "SERIALNUMBER",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

fn dotted(body: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for &b in body {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (acc / 40).min(2);
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// RFC 4514 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn string_value(tag: u8, body: &[u8]) -> Result<String, String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString
        0x0c | 0x13 | 0x16 | 0x12 => std::str::from_utf8(body)
            .map(str::to_owned)
            .map_err(|_| "attribute value is not UTF-8".into()),
        // BMPString (UTF-16BE)
        0x1e if body.len().is_multiple_of(2) => {
            let units: Vec<u16> = body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| "bad BMPString".into())
        }
        _ => Err(format!("unsupported attribute string type 0x{tag:02x}")),
    }
}

/// The subject of a DER certificate (`Certificate ::= SEQUENCE { tbsCertificate, … }`).
pub fn identity(cert: &[u8]) -> Result<CertIdentity, String> {
    let (0x30, certificate, _) = tlv(cert)? else {
        return Err("not a certificate".into());
    };
    let (0x30, tbs, _) = tlv(certificate)? else {
        return Err("no tbsCertificate".into());
    };
    let mut rest = tbs;
    // version [0] EXPLICIT (optional), serialNumber, signature, issuer, validity, subject
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r;
    }
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (0x30, mut subject, _) = tlv(rest)? else {
        return Err("no subject".into());
    };
    let mut rdns: Vec<String> = Vec::new();
    let mut cn = None;
    while !subject.is_empty() {
        let (0x31, mut set, r) = tlv(subject)? else {
            return Err("bad RDN".into());
        };
        subject = r;
        let mut atvs = Vec::new();
        while !set.is_empty() {
            let (0x30, atv, r) = tlv(set)? else {
                return Err("bad attribute".into());
            };
            set = r;
            let (0x06, oid, value) = tlv(atv)? else {
                return Err("bad attribute type".into());
            };
            let (tag, body, _) = tlv(value)?;
            let text = string_value(tag, body)?;
            let name = oid_name(oid).map_or_else(|| dotted(oid), str::to_owned);
            if name == "CN" {
                cn = Some(text.clone());
            }
            atvs.push(format!("{name}={}", escape(&text)));
        }
        rdns.push(atvs.join("+"));
    }
    rdns.reverse();
    Ok(CertIdentity {
        subject: rdns.join(","),
        cn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_cn_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = identity(cert.der()).unwrap();
        assert_eq!(id.cn.as_deref(), Some("alice"));
        assert_eq!(id.subject, "CN=alice,O=Example\\, Inc");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(identity(b"").is_err());
        assert!(identity(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01]).is_err());
        assert!(identity(&[0x30, 0x82, 0xff, 0xff]).is_err());
    }
}
