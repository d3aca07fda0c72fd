//! Matrix server names (`host[:port]`, spec appendices "Server name"): parsing and the host
//! part used for TLS names, SNI and allow lists.
use std::fmt;
use std::net::IpAddr;

/// The default federation port.
pub const DEFAULT_PORT: u16 = 8448;

/// A string that is not a valid Matrix server name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid server name `{name}`: {reason}")]
pub struct ServerNameError {
    /// The input.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

/// The host part of a server name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 literal or a bracketed IPv6 literal (stored without brackets).
    Ip(IpAddr),
    /// A DNS name, as written.
    Name(String),
}

/// A parsed Matrix server name: `host[:port]` per the spec grammar (appendices, "Server name").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerName {
    /// Host part.
    pub host: Host,
    /// Explicit port, if any.
    pub port: Option<u16>,
}

impl ServerName {
    /// Parse `hostname [":" port]`, where hostname is an IPv4 literal, `[IPv6]`, or a DNS name of
    /// 1–255 characters from `[A-Za-z0-9.-]`, and port is 1–5 digits (1–65535).
    pub fn parse(s: &str) -> Result<ServerName, ServerNameError> {
        let bad = |reason: &str| ServerNameError {
            name: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest.find(']').ok_or_else(|| bad("missing `]`"))?;
            let ip: std::net::Ipv6Addr = rest[..end]
                .parse()
                .map_err(|_| bad("invalid IPv6 literal"))?;
            let after = &rest[end + 1..];
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (h, port) = match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            };
            if h.is_empty() {
                return Err(bad("empty hostname"));
            }
            if h.len() > 255 {
                return Err(bad("hostname longer than 255 characters"));
            }
            if !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(bad(
                    "hostname may only contain letters, digits, `-` and `.` (IPv6 needs [brackets])",
                ));
            }
            let host = match h.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V4(ip)),
                Err(_) => Host::Name(h.to_owned()),
            };
            (host, port)
        };
        let port = match port {
            None => None,
            Some(p) => {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("port must be 1 to 5 digits"));
                }
                match p.parse::<u16>() {
                    Ok(0) | Err(_) => return Err(bad("port out of range 1..=65535")),
                    Ok(n) => Some(n),
                }
            }
        };
        Ok(ServerName { host, port })
    }

    /// The host without brackets: `1.2.3.4`, `::1`, `example.org`. This is the TLS name.
    pub fn host_str(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        }
    }

    /// The port, or [`DEFAULT_PORT`].
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            Host::Name(n) => f.write_str(n)?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ServerName {
    type Err = ServerNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServerName::parse(s)
    }
}

/// `(localpart, server name)` of a user ID `@localpart:server_name` (split at the first `:`,
/// so the server name keeps its port); `None` when either part is empty or the `@` is
/// missing. The server name is not validated.
pub fn split_user_id(user_id: &str) -> Option<(&str, &str)> {
    let (local, server) = user_id.strip_prefix('@')?.split_once(':')?;
    (!local.is_empty() && !server.is_empty()).then_some((local, server))
}

/// The host part of a Matrix server name or an HTTP authority: without the port, without the
/// brackets of an IPv6 literal. Case is kept.
///
/// `"hs.example.org:8448"` → `"hs.example.org"`, `"[::1]:8448"` → `"::1"`, `"[::1]"` → `"::1"`,
/// `"127.0.0.1:8448"` → `"127.0.0.1"`. A bare IPv6 literal (`"::1"`, not valid as a Matrix
/// server name but seen in the wild) is returned whole.
pub fn host_part(server_name: &str) -> &str {
    let s = server_name.trim();
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => &rest[..end],
            None => rest,
        };
    }
    match s.rfind(':') {
        // Exactly one colon: host:port.
        Some(i) if !s[..i].contains(':') => &s[..i],
        // None: plain host; several: a bare IPv6 literal.
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::split_user_id;

    #[test]
    fn user_ids_split_at_the_first_colon() {
        let server = |u| split_user_id(u).map(|(_, s)| s);
        assert_eq!(server("@a:b.de"), Some("b.de"));
        assert_eq!(server("@a:127.0.0.1:8448"), Some("127.0.0.1:8448"));
        assert_eq!(server("a:b.de"), None);
        assert_eq!(server("@:b.de"), None);
        assert_eq!(server("@a:"), None);
        assert_eq!(split_user_id("@a:b.de"), Some(("a", "b.de")));
    }
}
