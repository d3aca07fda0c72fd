//! The small HTTP(S) GET client of the TI profile: the VZD's federation list
//! ([`super::ListKeeper`]) and the homeserver's admin API ([`crate::ti::accountdata`]).
//!
//! One connection per request (HTTP/1.1), a connect timeout and a total timeout, a cap on the
//! body. TLS through [`crate::crypto::tls_provider`] with configured PEM roots or the web PKI
//! roots. Error texts name the host and what failed, never a token or a body.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};

/// Limits of one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    pub total: Duration,
    pub max_body: usize,
}

/// A request failed (no answer that could be read).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}: connect timed out")]
    ConnectTimeout(String),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}: {1}")]
    Connect(String, String),
    #[error("{0}: the answer is larger than {1} bytes")]
    TooLarge(String, usize),
    #[error("{0}: {1}")]
    Protocol(String, String),
}

/// Where requests go: scheme, host, port, base path (with any query), TLS config.
#[derive(Clone)]
pub struct Target {
    host: String,
    port: u16,
    authority: String,
    /// Path and query of the URL as configured (`/` when empty).
    base: String,
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("authority", &self.authority)
            .field("base", &self.base)
            .field("https", &self.tls.is_some())
            .finish()
    }
}

impl Target {
    /// Parses `url` (`http://` or `https://`). `ca`: PEM roots for https (default: the web PKI
    /// roots). With `loopback_only_http`, plain `http://` is accepted only for a loopback host.
    pub fn parse(url: &str, ca: Option<&Path>, loopback_only_http: bool) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("`{url}`: use http:// or https://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("`{url}`: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !https && loopback_only_http && !is_loopback(&host) {
            return Err(format!(
                "`{url}`: plain http:// only to a loopback address; use https://"
            ));
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let base = match uri.path_and_query() {
            Some(pq) if !pq.as_str().is_empty() => pq.as_str().to_owned(),
            _ => "/".to_owned(),
        };
        let tls = if https {
            Some(client_config(ca)?)
        } else {
            None
        };
        Ok(Target {
            host,
            port,
            authority,
            base,
            tls,
        })
    }

    /// Path and query of the configured URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `host:port` (for logs and errors).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `GET path_and_query` with an optional bearer token; the status and the body (up to
    /// `limits.max_body`).
    pub async fn get(
        &self,
        path_and_query: &str,
        bearer: Option<&str>,
        limits: Limits,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        tokio::time::timeout(limits.total, self.get_inner(path_and_query, bearer, limits))
            .await
            .map_err(|_| HttpError::Timeout(self.authority.clone(), limits.total))?
    }

    async fn get_inner(
        &self,
        path_and_query: &str,
        bearer: Option<&str>,
        limits: Limits,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let at = || self.authority.clone();
        let tcp = tokio::time::timeout(
            limits.connect,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| HttpError::ConnectTimeout(at()))?
        .map_err(|e| HttpError::Connect(at(), e.to_string()))?;
        let mut request = Request::builder()
            .method(http::Method::GET)
            .uri(path_and_query)
            .header(http::header::HOST, &self.authority)
            .header(http::header::USER_AGENT, "grenzwacht")
            .header(http::header::ACCEPT, "*/*");
        if let Some(t) = bearer {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| HttpError::Protocol(at(), format!("request: {e}")))?;
        match &self.tls {
            None => send(TokioIo::new(tcp), request, limits.max_body, &self.authority).await,
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| HttpError::Connect(at(), format!("TLS name: {e}")))?;
                let tls = tokio::time::timeout(
                    limits.connect,
                    tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
                )
                .await
                .map_err(|_| HttpError::ConnectTimeout(at()))?
                .map_err(|e| HttpError::Connect(at(), format!("TLS: {e}")))?;
                send(TokioIo::new(tls), request, limits.max_body, &self.authority).await
            }
        }
    }
}

async fn send<T>(
    io: T,
    request: Request<Empty<Bytes>>,
    max_body: usize,
    authority: &str,
) -> Result<(StatusCode, Bytes), HttpError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let proto =
        |e: &dyn std::fmt::Display| HttpError::Protocol(authority.to_owned(), e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| proto(&e))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| proto(&e))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    HttpError::TooLarge(authority.to_owned(), max_body)
                } else {
                    proto(&e)
                }
            })?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

/// A loopback host: `localhost`, 127.0.0.0/8, `::1`.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A TLS client config over the guard's TLS policy: roots from the PEM file `ca`, else the
/// web PKI roots.
fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut store = RootCertStore::empty();
    match ca {
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(file))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no PEM certificate", path.display()));
            }
            for c in certs {
                store
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
    }
    let mut config = ClientConfig::builder_with_provider(crate::crypto::tls_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for one path segment).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `base` with `name=value` appended to its query (`?` or `&` as needed).
pub fn with_query_param(base: &str, name: &str, value: &str) -> String {
    let sep = match base.find('?') {
        None => "?",
        Some(i) if i + 1 == base.len() || base.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{base}{sep}{name}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameter_is_appended_to_any_query() {
        assert_eq!(
            with_query_param("/l.jws", "version", "3"),
            "/l.jws?version=3"
        );
        assert_eq!(
            with_query_param("/l.jws?a=b", "version", "3"),
            "/l.jws?a=b&version=3"
        );
        assert_eq!(
            with_query_param("/l.jws?", "version", "3"),
            "/l.jws?version=3"
        );
        assert_eq!(
            with_query_param("/l.jws?a=b&", "version", "3"),
            "/l.jws?a=b&version=3"
        );
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            encode_segment("@user:127.0.0.1:8448"),
            "%40user%3A127.0.0.1%3A8448"
        );
        assert_eq!(encode_segment("a/b?c#d é"), "a%2Fb%3Fc%23d%20%C3%A9");
    }

    #[test]
    fn plain_http_only_to_loopback_when_asked() {
        assert!(Target::parse("http://127.0.0.1:8/x", None, true).is_ok());
        assert!(Target::parse("http://[::1]:8/x", None, true).is_ok());
        assert!(Target::parse("http://vzd.example/x", None, true).is_err());
        assert!(Target::parse("http://synapse:8008", None, false).is_ok());
        assert!(Target::parse("ftp://vzd.example/x", None, false).is_err());
        let t = Target::parse("https://vzd.example/a/b?c=d", None, true).unwrap();
        assert_eq!(t.base(), "/a/b?c=d");
        assert_eq!(t.authority(), "vzd.example:443");
    }

    /// HTTPS on 127.0.0.1:0 with a self-signed certificate for IP 127.0.0.1 answering `body`.
    async fn tls_server(body: &'static [u8]) -> (u16, String) {
        use hyper::service::service_fn;
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let pem = ck.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(crate::crypto::tls_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(
                        move |_req: http::Request<hyper::body::Incoming>| async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(Bytes::from_static(body)),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        (port, pem)
    }

    const LIMITS: Limits = Limits {
        connect: Duration::from_secs(2),
        total: Duration::from_secs(5),
        max_body: 1024,
    };

    #[tokio::test]
    async fn https_with_the_configured_roots_only() {
        let (port, pem) = tls_server(b"signed list").await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("vzd-ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let url = format!("https://127.0.0.1:{port}/fl.jws");
        let t = Target::parse(&url, Some(&ca), true).unwrap();
        let (status, body) = t.get("/fl.jws", Some("tok"), LIMITS).await.unwrap();
        assert_eq!((status.as_u16(), &body[..]), (200, &b"signed list"[..]));
        // The web PKI roots do not know the self-signed certificate.
        let t = Target::parse(&url, None, true).unwrap();
        let e = t.get("/fl.jws", None, LIMITS).await.unwrap_err();
        assert!(matches!(e, HttpError::Connect(..)), "{e}");
        // A roots file without a certificate is a setup error.
        std::fs::write(&ca, "").unwrap();
        assert!(Target::parse(&url, Some(&ca), true).is_err());
    }

    #[tokio::test]
    async fn the_body_is_capped() {
        let (port, pem) = tls_server(&[b'x'; 4096]).await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let t = Target::parse(&format!("https://127.0.0.1:{port}"), Some(&ca), true).unwrap();
        let e = t.get("/", None, LIMITS).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge(..)), "{e}");
    }
}
