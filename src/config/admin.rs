//! `[admin]` principals and TLS: who may use the admin API (`crate::admin`) and how they
//! authenticate.
//!
//! ```toml
//! [admin]
//! listen = "127.0.0.1:9100"
//! # metrics_auth = false        # true: /metrics needs a principal's token or certificate
//!
//! [admin.tls]                   # optional: HTTPS, and client certificates (mutual TLS)
//! cert_file = "admin/server.crt"
//! key_file = "admin/server.key"
//! client_ca_file = "admin/clients-ca.crt"   # CA of the client certificates
//! # client_auth = "optional"    # or "required": no connection without a client certificate
//!
//! [[admin.principal]]
//! name = "alice"
//! role = "reviewer"             # reviewer | auditor | admin
//! token_file = "admin/alice.token"
//! clearance = { policy = "1.3.6.1.4.1.99999.1.1", classifications = [1, 2, 3] }
//!
//! [[admin.principal]]
//! name = "audit-office"
//! role = "auditor"
//! cert_cn = "audit-office"      # or cert_subject = "CN=audit-office,O=Example"
//! ```
//!
//! A principal authenticates with the token in `token_file` (bearer), with a client
//! certificate whose subject matches `cert_cn` / `cert_subject`, or either. A clearance is
//! given inline in the JSON form of `crate::spif` or as `clearance_file` (spiffing XML or
//! JSON); without one a principal is cleared only for unlabelled events. Parsing here checks
//! the shape; the token and clearance files are read, and with `[labels]` every clearance is
//! resolved against the loaded SPIFs, when the admin listener is built
//! (`admin::AdminAccess::from_config`, also run by `grenzwacht check`).
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A principal's role (`crate::review::Role` at runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    /// Lists, shows (within clearance) and decides held events.
    Reviewer,
    /// Reads the audit log and lists held events.
    Auditor,
    /// Everything.
    Admin,
}

/// Longest principal name (it is recorded in the audit log).
pub const MAX_PRINCIPAL_NAME: usize = 64;
/// Principal names no configured principal may have: the hold queue records its timeout
/// decisions under `timeout` (`proxy::hold::TIMEOUT_REVIEWER`).
pub const RESERVED_NAMES: &[&str] = &["timeout"];

/// `[[admin.principal]]`: one user of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PrincipalConfig {
    /// Stable name, recorded in the audit log (letters, digits, `.`, `_`, `-`, `@`).
    pub name: String,
    /// `reviewer`, `auditor` or `admin`.
    pub role: RoleName,
    /// File holding the principal's bearer token (surrounding whitespace ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Client certificate common name that maps to this principal (needs `[admin.tls]`).
    #[serde(default)]
    pub cert_cn: Option<String>,
    /// Full client certificate subject (RFC 4514 form, e.g. `CN=alice,O=Example`).
    #[serde(default)]
    pub cert_subject: Option<String>,
    /// Clearance in the JSON form of `crate::spif` …
    #[serde(default)]
    pub clearance: Option<serde_json::Value>,
    /// … or read from a file (spiffing XML or JSON).
    #[serde(default)]
    pub clearance_file: Option<PathBuf>,
}

/// Whether the admin listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A client may present a certificate (checked against `client_ca_file`) or use a token.
    #[default]
    Optional,
    /// No TLS connection without a valid client certificate.
    Required,
}

/// `[admin.tls]`: serve the admin listener over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AdminTlsConfig {
    /// PEM certificate chain of the admin listener.
    pub cert_file: PathBuf,
    /// PEM private key for `cert_file`.
    pub key_file: PathBuf,
    /// PEM CA certificate(s) client certificates must chain to; without it no client
    /// certificates are asked for.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `optional` (default) or `required`.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// One step of a key path inside `[admin]` (for error positions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(&'static str),
    Index(usize),
}

/// A shape error inside `[admin]`: the key path below `admin` and the message.
pub type ShapeError = (Vec<PathStep>, String);

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PRINCIPAL_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Checks that need no files (names, one clearance form, a way to authenticate, unique
/// names and certificate mappings, TLS for certificate mappings). Paths are below `admin`.
pub fn check(
    principals: &[PrincipalConfig],
    tls: Option<&AdminTlsConfig>,
    metrics_auth: bool,
) -> Vec<ShapeError> {
    use PathStep::{Index, Key};
    let mut out: Vec<ShapeError> = Vec::new();
    let mut names = std::collections::HashMap::new();
    let mut certs = std::collections::HashMap::new();
    for (i, p) in principals.iter().enumerate() {
        let at = |k: &'static str| vec![Key("principal"), Index(i), Key(k)];
        if !valid_name(&p.name) {
            out.push((
                at("name"),
                format!(
                    "invalid value for `admin.principal[{i}].name`: `{}` must be 1 to {MAX_PRINCIPAL_NAME} letters, digits, `.`, `_`, `-` or `@`",
                    p.name
                ),
            ));
        }
        if RESERVED_NAMES.contains(&p.name.as_str()) {
            out.push((
                at("name"),
                format!(
                    "`admin.principal[{i}].name` = `{}` is reserved (the hold queue's timeout decisions are recorded under it)",
                    p.name
                ),
            ));
        }
        if let Some(first) = names.insert(p.name.clone(), i) {
            out.push((
                at("name"),
                format!(
                    "duplicate principal name `{}` (also in `admin.principal[{first}]`)",
                    p.name
                ),
            ));
        }
        let has_cert = p.cert_cn.is_some() || p.cert_subject.is_some();
        if p.token_file.is_none() && !has_cert {
            out.push((
                vec![Key("principal"), Index(i)],
                format!("`admin.principal[{i}]` needs `token_file`, `cert_cn` or `cert_subject`"),
            ));
        }
        for (key, v) in [("cert_cn", &p.cert_cn), ("cert_subject", &p.cert_subject)] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                out.push((
                    at(key),
                    format!("`admin.principal[{i}].{key}` must not be empty"),
                ));
            }
        }
        if has_cert {
            let mapping = (p.cert_cn.clone(), p.cert_subject.clone());
            if let Some(first) = certs.insert(mapping, i) {
                out.push((
                    at(if p.cert_cn.is_some() {
                        "cert_cn"
                    } else {
                        "cert_subject"
                    }),
                    format!(
                        "`admin.principal[{i}]` has the same certificate mapping as `admin.principal[{first}]`"
                    ),
                ));
            }
            if tls.is_none_or(|t| t.client_ca_file.is_none()) {
                out.push((
                    at(if p.cert_cn.is_some() {
                        "cert_cn"
                    } else {
                        "cert_subject"
                    }),
                    format!(
                        "`admin.principal[{i}]` maps a client certificate: it needs `[admin.tls] client_ca_file`"
                    ),
                ));
            }
        }
        match (&p.clearance, &p.clearance_file) {
            (Some(_), Some(_)) => out.push((
                at("clearance_file"),
                format!(
                    "set only one of `admin.principal[{i}].clearance` and `admin.principal[{i}].clearance_file`"
                ),
            )),
            (Some(v), None) => {
                if let Err(e) = crate::spif::Clearance::from_json(v) {
                    out.push((
                        at("clearance"),
                        format!("invalid value for `admin.principal[{i}].clearance`: {e}"),
                    ));
                }
            }
            _ => {}
        }
    }
    if let Some(t) = tls {
        if t.client_auth == ClientAuth::Required && t.client_ca_file.is_none() {
            out.push((
                vec![Key("tls"), Key("client_auth")],
                "`admin.tls.client_auth = \"required\"` needs `admin.tls.client_ca_file`".into(),
            ));
        }
    }
    if metrics_auth && principals.is_empty() {
        out.push((
            vec![Key("metrics_auth")],
            "`admin.metrics_auth = true` needs at least one `[[admin.principal]]`".into(),
        ));
    }
    out
}

/// Resolves relative file paths against `base` (the config file's directory).
pub fn resolve_paths(
    principals: &mut [PrincipalConfig],
    tls: Option<&mut AdminTlsConfig>,
    base: &Path,
) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    for p in principals {
        p.token_file.as_mut().map(fix);
        p.clearance_file.as_mut().map(fix);
    }
    if let Some(t) = tls {
        fix(&mut t.cert_file);
        fix(&mut t.key_file);
        t.client_ca_file.as_mut().map(fix);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn cfg(admin: &str) -> Result<Config, crate::config::ConfigErrors> {
        Config::from_str(
            &format!("[store]\npath = \"/tmp/x.db\"\n{admin}"),
            "/etc/gw/gw.toml",
        )
    }

    #[test]
    fn principals_parse_with_resolved_paths() {
        let c = cfg(r#"
[admin]
listen = "127.0.0.1:9200"
metrics_auth = true
[admin.tls]
cert_file = "a.crt"
key_file = "/abs/a.key"
client_ca_file = "ca.crt"
client_auth = "required"
[[admin.principal]]
name = "alice"
role = "reviewer"
token_file = "alice.token"
clearance = { policy = "1.3.6.1.4.1.99999.1.1", classifications = [1, 2] }
[[admin.principal]]
name = "audit-office"
role = "auditor"
cert_cn = "audit-office"
"#)
        .unwrap();
        let a = &c.admin;
        assert!(a.metrics_auth);
        assert_eq!(a.principal.len(), 2);
        assert_eq!(a.principal[0].role, super::RoleName::Reviewer);
        assert_eq!(
            a.principal[0].token_file.as_deref(),
            Some(std::path::Path::new("/etc/gw/alice.token"))
        );
        let t = a.tls.as_ref().unwrap();
        assert_eq!(t.cert_file, std::path::Path::new("/etc/gw/a.crt"));
        assert_eq!(t.key_file, std::path::Path::new("/abs/a.key"));
        assert_eq!(t.client_auth, super::ClientAuth::Required);
        assert!(cfg("").unwrap().admin.principal.is_empty());
    }

    #[test]
    fn bad_roles_unknown_keys_and_shape_errors_are_positioned() {
        let e = cfg(r#"
[admin]
colour = 1
[[admin.principal]]
name = "alice"
role = "boss"
token_file = "a.token"
"#)
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/etc/gw/gw.toml:5:1: unknown key `admin.colour`"),
            "{e}"
        );
        assert!(
            e.lines()
                .any(|l| l.starts_with("/etc/gw/gw.toml:8:")
                    && l.contains("admin.principal[0].role")),
            "{e}"
        );

        let e = cfg(r#"
[admin]
metrics_auth = true
[[admin.principal]]
name = "bad name"
role = "admin"
[[admin.principal]]
name = "bob"
role = "reviewer"
cert_cn = "bob"
clearance = { policy = "1.3.6.1.4.1.99999.1.1", classifications = [1] }
clearance_file = "c.json"
[[admin.principal]]
name = "timeout"
role = "reviewer"
token_file = "t.token"
"#)
        .unwrap_err()
        .to_string();
        let has = |line: usize, needle: &str| {
            e.lines()
                .any(|l| l.starts_with(&format!("/etc/gw/gw.toml:{line}:")) && l.contains(needle))
        };
        assert!(has(7, "admin.principal[0].name"), "{e}");
        assert!(
            e.contains("`admin.principal[0]` needs `token_file`, `cert_cn` or `cert_subject`"),
            "{e}"
        );
        assert!(has(12, "needs `[admin.tls] client_ca_file`"), "{e}");
        assert!(
            has(14, "set only one of `admin.principal[1].clearance`"),
            "{e}"
        );
        assert!(has(16, "`timeout` is reserved"), "{e}");
    }

    #[test]
    fn missing_token_file_is_reported_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(
            &path,
            "[store]\npath = \"gw.db\"\n[[admin.principal]]\nname = \"alice\"\nrole = \"reviewer\"\ntoken_file = \"missing.token\"\n",
        )
        .unwrap();
        let e = Config::load_for_use(&path).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "{}:6:14: `admin.principal[0].token_file` = {}: does not exist",
                path.display(),
                dir.path().join("missing.token").display()
            )),
            "{e}"
        );
    }
}
