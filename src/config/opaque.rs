//! `[opaque]`: what may cross that the guard cannot read (end-to-end encrypted events and
//! to-device messages, encrypted attachments); the decision is `policy::opaque`.
//!
//! ```toml
//! [opaque]
//! # "deny" (default): redact/drop; "labeled": only with a cleartext security label next to
//! # the ciphertext (needs [labels]); "allow": E2EE is the norm (e.g. TI-Messenger)
//! release = "deny"
//! # optional, with "labeled"/"allow": only for these peers (globs over the whole server name,
//! # `*` any run of characters, `?` one; case-insensitive); every other peer gets "deny"
//! peers = ["*.example.org", "*.example.org:*"]
//! ```
//!
//! Without the section, `release = "deny"` applies.
use serde::Deserialize;

/// `[opaque] release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpaqueRelease {
    /// Opaque content is redacted (events) or dropped (to-device messages, EDUs).
    #[default]
    Deny,
    /// Released only with the content's own security label (`[labels] event_key`); the label
    /// layer then decides access.
    Labeled,
    /// Released (well-formed ciphertext only; malformed ciphertext is judged as text).
    Allow,
}

impl OpaqueRelease {
    pub fn as_str(self) -> &'static str {
        match self {
            OpaqueRelease::Deny => "deny",
            OpaqueRelease::Labeled => "labeled",
            OpaqueRelease::Allow => "allow",
        }
    }
}

/// `[opaque]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct OpaqueConfig {
    /// What may cross; default `deny`.
    #[serde(default)]
    pub release: OpaqueRelease,
    /// Only these peers (globs) get `release`; the others get `deny`. `None`: every peer.
    #[serde(default)]
    pub peers: Option<Vec<String>>,
}

/// A check failure: the key below `opaque` (with the index into `peers`, if any) and the
/// message.
pub type OpaqueError = (&'static str, Option<usize>, String);

impl OpaqueConfig {
    /// Checks within the section and against `[labels]` (`labels_on`: the section exists).
    pub fn check(&self, labels_on: bool) -> Vec<OpaqueError> {
        let mut out = Vec::new();
        if self.release == OpaqueRelease::Labeled && !labels_on {
            out.push(("release", None, "`opaque.release = \"labeled\"` needs `[labels]` (the label next to the ciphertext is judged there)".to_string()));
        }
        if let Some(peers) = &self.peers {
            if self.release == OpaqueRelease::Deny {
                out.push(("peers", None, "`opaque.peers` has no effect with `release = \"deny\"`; remove it or choose \"labeled\"/\"allow\"".to_string()));
            }
            if peers.is_empty() {
                out.push((
                    "peers",
                    None,
                    "`opaque.peers` is empty; remove the key to release to every peer".to_string(),
                ));
            }
            for (i, p) in peers.iter().enumerate() {
                if let Err(why) = check_glob(p) {
                    out.push((
                        "peers",
                        Some(i),
                        format!("invalid value for `opaque.peers[{i}]`: {why}"),
                    ));
                }
            }
        }
        out
    }
}

/// A peer glob: non-empty, server-name characters plus `*` and `?`.
fn check_glob(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty pattern".into());
    }
    if let Some(c) = p
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-.:[]*?_".contains(*c)))
    {
        return Err(format!(
            "`{p}` contains `{c}`; patterns are server names with `*` and `?`"
        ));
    }
    Ok(())
}

/// Whether `name` matches the glob `pattern` (ASCII case-insensitive; `*` any run, `?` one
/// character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<u8>, Vec<u8>) = (
        pattern.bytes().map(|b| b.to_ascii_lowercase()).collect(),
        name.bytes().map(|b| b.to_ascii_lowercase()).collect(),
    );
    // Iterative wildcard matching with backtracking to the last `*`.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cfg(text: &str) -> Result<Config, crate::config::ConfigErrors> {
        Config::from_str(
            &format!("[store]\npath = \"/tmp/x.db\"\n{text}"),
            "/etc/gw/gw.toml",
        )
    }

    #[test]
    fn default_is_deny_for_every_peer() {
        let c = cfg("").unwrap();
        assert_eq!(
            c.opaque,
            OpaqueConfig {
                release: OpaqueRelease::Deny,
                peers: None
            }
        );
        let c = cfg("[opaque]\nrelease = \"allow\"\npeers = [\"*.example.org\"]\n").unwrap();
        assert_eq!(c.opaque.release, OpaqueRelease::Allow);
        assert_eq!(c.opaque.peers, Some(vec!["*.example.org".to_string()]));
    }

    #[test]
    fn errors_are_positioned() {
        let e = cfg("[opaque]\nrelease = \"sometimes\"\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/gw/gw.toml:4:11: invalid value for `opaque.release`"),
            "{e}"
        );
        assert!(
            e.contains("/etc/gw/gw.toml:5:1: unknown key `opaque.colour`"),
            "{e}"
        );
        let e = cfg("[opaque]\nrelease = \"labeled\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/gw/gw.toml:4:11:") && e.contains("needs `[labels]`"),
            "{e}"
        );
        let e = cfg("[opaque]\npeers = [\"a.example\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/gw/gw.toml:4:") && e.contains("no effect"),
            "{e}"
        );
        let e = cfg("[opaque]\nrelease = \"allow\"\npeers = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is empty"), "{e}");
        let e = cfg("[opaque]\nrelease = \"allow\"\npeers = [\"ok.example\", \"bad name\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/gw/gw.toml:5:24: invalid value for `opaque.peers[1]`"),
            "{e}"
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.example.org", "hs.EXAMPLE.org"));
        assert!(!glob_match("*.example.org", "example.org"));
        assert!(!glob_match("*.example.org", "hs.example.org:8448"));
        assert!(glob_match("*.example.org:*", "hs.example.org:8448"));
        assert!(glob_match("127.0.0.1:*", "127.0.0.1:40123"));
        assert!(!glob_match("127.0.0.1:*", "127.0.0.10:1"));
        assert!(glob_match("hs?.test", "hs2.test"));
        assert!(!glob_match("hs?.test", "hs22.test"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(!glob_match(
            "evil.example.org",
            "evil.example.org.attacker.test"
        ));
    }
}
