//! `grenzwacht review whoami|list|show|release|reject`: the admin API from the command line.
//!
//! Talks HTTP/1.1 (or HTTPS, with `--ca` for the listener's CA and `--cert`/`--key` for a
//! client certificate) to the admin listener with hyper, one connection per command, and
//! prints JSON on stdout: `whoami` the principal, `list` one held event per line, `show` the
//! event, `release` and `reject` the outcome. Any answer other than 200 prints `error: STATUS ERRCODE: message` on
//! stderr and exits with 1 (401, 403, 404, …); a usage, file or connection error exits with 2.
//!
//! The address defaults to the `[admin] listen` address of `--config` (HTTPS if
//! `[admin.tls]` is set; a wildcard address is reached over loopback), else
//! `http://127.0.0.1:9100`.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// Largest answer the client reads (bytes).
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// How long one command may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// `grenzwacht review …`
#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    /// Admin API base URL (`http://host:port` or `https://host:port`).
    #[arg(long, global = true, env = "GRENZWACHT_ADMIN_URL")]
    pub admin: Option<String>,
    /// Config file whose `[admin] listen` is the default address.
    #[arg(long, short, global = true, env = "GRENZWACHT_CONFIG")]
    pub config: Option<PathBuf>,
    /// File holding the bearer token.
    #[arg(long, global = true, env = "GRENZWACHT_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate(s) the HTTPS listener's certificate chains to.
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS); needs `--key`.
    #[arg(long, global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `--cert`.
    #[arg(long, global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ReviewCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ReviewCommand {
    /// Who the credentials authenticate as (`{"name","role"}`).
    Whoami,
    /// Held events you are cleared for (one JSON object per line).
    List {
        /// Include decided events.
        #[arg(long)]
        all: bool,
    },
    /// One held event with its content preview.
    Show { id: i64 },
    /// Release a held event (forwarded unchanged).
    Release {
        id: i64,
        #[arg(long)]
        reason: String,
    },
    /// Reject a held event (forwarded redacted).
    Reject {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

/// Why a command could not talk to the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid --admin URL `{0}`: {1}")]
    Url(String, String),
    #[error("{0}")]
    Setup(String),
    #[error("cannot reach {0}: {1}")]
    Connect(String, String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Where and how to connect.
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub token: Option<String>,
}

impl Target {
    /// From a base URL, optional PEM CA, optional client identity and optional token file.
    pub fn new(
        url: &str,
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
        token_file: Option<&Path>,
    ) -> Result<Target, ClientError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| ClientError::Url(url.into(), e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(ClientError::Url(
                    url.into(),
                    "use http:// or https://".into(),
                ))
            }
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(ClientError::Url(
                url.into(),
                "give only scheme, host and port".into(),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Url(url.into(), "no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            Some(
                super::tls::client_config(ca, identity)
                    .map_err(|e| ClientError::Setup(e.to_string()))?,
            )
        } else {
            if identity.is_some() {
                return Err(ClientError::Setup(
                    "--cert/--key need an https:// admin URL".into(),
                ));
            }
            None
        };
        let token = token_file
            .map(|f| {
                super::auth::read_token_file(f)
                    .map_err(|e| ClientError::Setup(format!("{}: {e}", f.display())))
            })
            .transpose()?;
        Ok(Target {
            https,
            host,
            port,
            tls,
            token,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// One request; returns the status and the body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        tokio::time::timeout(TIMEOUT, self.call_inner(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout(TIMEOUT))?
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let authority = self.authority();
        let connect =
            |e: &dyn std::fmt::Display| ClientError::Connect(authority.clone(), e.to_string());
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| connect(&e))?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &authority)
            .header(http::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        match &self.tls {
            None => send(TokioIo::new(tcp), request)
                .await
                .map_err(|e| connect(&e)),
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| ClientError::Setup(format!("TLS name `{}`: {e}", self.host)))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| connect(&e))?;
                send(TokioIo::new(tls), request)
                    .await
                    .map_err(|e| connect(&e))
            }
        }
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

/// The admin URL: `--admin`, else `[admin] listen` of `--config`, else the default listen.
fn admin_url(args: &ReviewArgs) -> Result<String, ClientError> {
    if let Some(u) = &args.admin {
        return Ok(u.trim_end_matches('/').to_owned());
    }
    let (listen, https) = match &args.config {
        Some(path) => {
            let cfg =
                crate::config::Config::load(path).map_err(|e| ClientError::Setup(e.to_string()))?;
            (cfg.admin.listen, cfg.admin.tls.is_some())
        }
        None => (crate::config::AdminConfig::default().listen, false),
    };
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(format!("{}://{addr}", if https { "https" } else { "http" }))
}

fn report_error(status: StatusCode, body: &[u8]) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let errcode = v["errcode"].as_str().unwrap_or("-");
    let message = v["error"].as_str().unwrap_or("");
    eprintln!("error: {} {errcode}: {message}", status.as_u16());
}

/// Runs a `review` command (see the module documentation for the exit codes).
pub fn run(args: ReviewArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(execute(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn execute(args: &ReviewArgs) -> Result<ExitCode, ClientError> {
    let url = admin_url(args)?;
    let identity = args.cert.as_deref().zip(args.key.as_deref());
    let target = Target::new(
        &url,
        args.ca.as_deref(),
        identity,
        args.token_file.as_deref(),
    )?;
    let base = super::API_PREFIX;
    let (method, path, body) = match &args.command {
        ReviewCommand::Whoami => (Method::GET, format!("{base}whoami"), None),
        ReviewCommand::List { all } => (
            Method::GET,
            format!("{base}holds{}", if *all { "?all=true" } else { "" }),
            None,
        ),
        ReviewCommand::Show { id } => (Method::GET, format!("{base}holds/{id}"), None),
        ReviewCommand::Release { id, reason } => (
            Method::POST,
            format!("{base}holds/{id}/release"),
            Some(json!({ "reason": reason })),
        ),
        ReviewCommand::Reject { id, reason } => (
            Method::POST,
            format!("{base}holds/{id}/reject"),
            Some(json!({ "reason": reason })),
        ),
    };
    let (status, answer) = target.call(method, &path, body).await?;
    if status != StatusCode::OK {
        report_error(status, &answer);
        return Ok(ExitCode::from(1));
    }
    let v: Value = serde_json::from_slice(&answer)
        .map_err(|e| ClientError::Setup(format!("the admin API answered no JSON: {e}")))?;
    match &args.command {
        ReviewCommand::List { .. } => {
            for h in v["holds"].as_array().map(Vec::as_slice).unwrap_or_default() {
                println!("{h}");
            }
        }
        ReviewCommand::Show { .. } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
            );
        }
        _ => println!("{v}"),
    }
    Ok(ExitCode::SUCCESS)
}
