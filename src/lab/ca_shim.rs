//! TEMPORARY shim — REMOVE when `crate::proxy::ca` lands on main.
//!
//! Mirrors the signatures of `crate::proxy::ca::{Ca, InterceptionCa}` that the lab uses
//! (`Ca::generate(cn)`, `Ca::save(dir)`, `Ca::cert_pem()`, `Ca::issue_pem(names, validity)`,
//! `InterceptionCa::init(dir)`), so switching is one `use` line in `lab.rs`. Only what the lab
//! needs: an ECDSA P-256 CA and server leaves with DNS or IP SANs.
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// Errors of the shim.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A name is neither a DNS name nor an IP literal.
    #[error("not a DNS name or IP address: {0:?}")]
    BadName(String),
    /// Refusing to overwrite.
    #[error("{0} already exists")]
    Exists(PathBuf),
}

/// A CA issuing server leaves.
pub struct Ca {
    key: KeyPair,
    issuer: rcgen::Certificate,
    cert_pem: String,
}

fn backdated() -> OffsetDateTime {
    OffsetDateTime::now_utc() - Duration::from_secs(300)
}

impl Ca {
    /// New self-signed CA (P-256) with common name `cn`, valid ten years.
    pub fn generate(cn: &str) -> Result<Ca, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = backdated();
        params.not_after = OffsetDateTime::now_utc() + Duration::from_secs(10 * 365 * 86400);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: cert,
            key,
        })
    }

    /// Writes `dir/ca.crt` and `dir/ca.key` (refuses to overwrite).
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        for p in [&crt, &key] {
            if p.exists() {
                return Err(CaError::Exists(p.clone()));
            }
        }
        fs::write(&key, self.key.serialize_pem()).map_err(io(&key))?;
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).map_err(io(&key))?;
        }
        fs::write(&crt, &self.cert_pem).map_err(io(&crt))?;
        Ok(())
    }

    /// The CA certificate (PEM).
    #[allow(dead_code)]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server leaf for `names` (DNS names or IP literals), `(cert PEM, key PEM)`.
    pub fn issue_pem(
        &self,
        names: &[String],
        validity: Duration,
    ) -> Result<(String, String), CaError> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = names
            .iter()
            .map(|n| {
                if let Ok(ip) = n.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
                    Ok(SanType::IpAddress(ip))
                } else {
                    n.clone()
                        .try_into()
                        .map(SanType::DnsName)
                        .map_err(|_| CaError::BadName(n.clone()))
                }
            })
            .collect::<Result<_, _>>()?;
        // Not `ExplicitNoCa`: that encodes `cA FALSE` explicitly, a DER violation (DEFAULT value)
        // that Python `cryptography` (and so Synapse) rejects: "EncodedDefault BasicConstraints::ca".
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = backdated();
        params.not_after = OffsetDateTime::now_utc() + validity;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The guard's interception CA (only `init` is needed by the lab).
pub struct InterceptionCa;

impl InterceptionCa {
    /// Creates `dir/ca.crt` + `dir/ca.key`, returns the path of `ca.crt`.
    pub fn init(dir: &Path) -> Result<PathBuf, CaError> {
        Ca::generate("grenzwacht interception CA")?.save(dir)?;
        Ok(dir.join("ca.crt"))
    }
}
