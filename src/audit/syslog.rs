//! Live forwarding to a syslog collector: RFC 5424 messages over TLS with RFC 5425 octet
//! counting (`<length> <message>`), one forwarder thread, a bounded queue, reconnect with
//! backoff (0.1 s doubling to 30 s).
//!
//! A message: `<PRI>1 TS HOST grenzwacht - KIND [gw@32473 seq="N" hash="H"] LINE` — facility
//! 13 (log audit), severity 5 (notice) for checkpoint, startup, shutdown, load, admin and
//! review records and 6 (info) for the others; `TS` is the record's `ts`, `LINE` the record's
//! canonical JSON line exactly as in the segment file (so a collector holds verifiable copies,
//! and its last checkpoint is the anchor `grenzwacht audit verify --anchor` checks a cut tail
//! against).
use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::AuditError;
use crate::config::audit::{split_host_port, SyslogConfig};
use crate::telemetry::{AUDIT_SYSLOG_CONNECTED, AUDIT_SYSLOG_DROPPED_TOTAL};

/// IANA private enterprise number for documentation (RFC 5612), the SD-ID suffix.
pub const SD_ID: &str = "gw@32473";

/// Syslog severity of a record kind.
pub fn severity(kind: &str) -> u8 {
    match kind {
        "checkpoint" | "startup" | "shutdown" | "load" | "admin" | "review" => 5,
        _ => 6,
    }
}

/// The RFC 5424 message of one record line (without framing). `None` if the line is not a
/// record (no `seq`, `hash`, `kind` or `ts`).
pub fn message(line: &str, hostname: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    let seq = v.get("seq")?.as_u64()?;
    let hash = v.get("hash")?.as_str()?;
    let kind = v.get("kind")?.as_str()?;
    let ts = v.get("ts")?.as_str()?;
    Some(message_parts(seq, hash, kind, ts, line, hostname))
}

fn message_parts(seq: u64, hash: &str, kind: &str, ts: &str, line: &str, hostname: &str) -> String {
    let pri = 13 * 8 + u32::from(severity(kind));
    let host = header_token(hostname);
    let msgid = header_token(kind);
    format!(
        "<{pri}>1 {ts} {host} grenzwacht - {msgid} [{SD_ID} seq=\"{seq}\" hash=\"{}\"] {line}",
        sd_escape(hash)
    )
}

/// A header field: printable US-ASCII without spaces, at most 48 characters, `-` if empty.
fn header_token(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(48)
        .collect();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

fn sd_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// RFC 5425 framing: `<octet count> <message>`.
pub fn frame(msg: &str) -> Vec<u8> {
    let mut v = format!("{} ", msg.len()).into_bytes();
    v.extend_from_slice(msg.as_bytes());
    v
}

/// This host's name (`-` if unknown).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "-".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    header_token(&String::from_utf8_lossy(&buf[..end]))
}

/// The TLS client configuration of `[audit.syslog]` (CA, optional client certificate).
pub fn client_config(cfg: &SyslogConfig) -> Result<Arc<rustls::ClientConfig>, AuditError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| AuditError::Syslog(format!("{what}: {e}"));
    let read_certs = |p: &std::path::Path| -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, AuditError> {
        let f = std::fs::File::open(p).map_err(|e| bad(&p.display().to_string(), &e))?;
        let certs: Result<Vec<_>, _> =
            rustls_pemfile::certs(&mut std::io::BufReader::new(f)).collect();
        let certs = certs.map_err(|e| bad(&p.display().to_string(), &e))?;
        if certs.is_empty() {
            return Err(AuditError::Syslog(format!("{}: no certificate", p.display())));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(&cfg.ca_file)? {
        roots
            .add(c)
            .map_err(|e| bad(&cfg.ca_file.display().to_string(), &e))?;
    }
    // The guard's TLS policy (BSI TR-02102-2), as for every other TLS connection.
    let provider = crate::crypto::tls_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(c), Some(k)) => {
            let chain = read_certs(c)?;
            let f = std::fs::File::open(k).map_err(|e| bad(&k.display().to_string(), &e))?;
            let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(f))
                .map_err(|e| bad(&k.display().to_string(), &e))?
                .ok_or_else(|| AuditError::Syslog(format!("{}: no private key", k.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client certificate", &e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

struct State {
    health: Mutex<Result<(), String>>,
    queued: AtomicUsize,
}

/// The forwarder: a thread that owns the connection, fed through a bounded queue.
pub struct Forwarder {
    tx: SyncSender<Vec<u8>>,
    state: Arc<State>,
    hostname: String,
}

impl Forwarder {
    /// Loads the TLS configuration and starts the thread (it connects in the background).
    pub fn start(cfg: &SyslogConfig) -> Result<Forwarder, AuditError> {
        let tls = client_config(cfg)?;
        let (host, port) = split_host_port(&cfg.address)
            .ok_or_else(|| AuditError::Syslog(format!("`{}` is not host:port", cfg.address)))?;
        let name = cfg.server_name.clone().unwrap_or_else(|| host.clone());
        let server_name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|_| AuditError::Syslog(format!("`{name}` is not a TLS server name")))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue);
        let state = Arc::new(State {
            health: Mutex::new(Err("not connected yet".into())),
            queued: AtomicUsize::new(0),
        });
        let st = Arc::clone(&state);
        let address = format!("{host}:{port}");
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            address
        };
        std::thread::Builder::new()
            .name("grenzwacht-audit-syslog".into())
            .spawn(move || run(rx, st, tls, server_name, address))
            .map_err(|e| AuditError::io("spawning the audit syslog thread", e))?;
        metrics::gauge!(AUDIT_SYSLOG_CONNECTED).set(0.0);
        Ok(Forwarder {
            tx,
            state,
            hostname: hostname(),
        })
    }

    /// The writer's sink: formats and queues durable records (never blocks).
    pub(crate) fn sink(&self) -> Box<dyn super::writer::Sink> {
        Box::new(ForwardSink {
            tx: self.tx.clone(),
            state: Arc::clone(&self.state),
            host: self.hostname.clone(),
        })
    }

    /// `Ok` while connected; the last error otherwise.
    pub fn health(&self) -> Result<(), String> {
        self.state
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct ForwardSink {
    tx: SyncSender<Vec<u8>>,
    state: Arc<State>,
    host: String,
}

impl super::writer::Sink for ForwardSink {
    fn send(&self, w: &super::writer::Written) {
        let msg = message_parts(w.seq, &w.hash, w.kind.as_str(), &w.ts, &w.line, &self.host);
        self.state.queued.fetch_add(1, Ordering::SeqCst);
        if self.tx.try_send(frame(&msg)).is_err() {
            self.state.queued.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!(AUDIT_SYSLOG_DROPPED_TOTAL).increment(1);
            let mut h = self.state.health.lock().unwrap_or_else(|e| e.into_inner());
            if h.is_ok() {
                *h = Err("forwarding queue full: records dropped".into());
            }
        }
    }

    fn drain(&self, timeout: Duration) {
        let until = std::time::Instant::now() + timeout;
        while self.state.queued.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

type Conn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(
    tls: &Arc<rustls::ClientConfig>,
    name: &rustls::pki_types::ServerName<'static>,
    address: &str,
) -> Result<Conn, String> {
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| format!("resolving the collector: {e}"))?
        .collect();
    let mut last = "no address".to_string();
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(tcp) => {
                let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = tcp.set_nodelay(true);
                let conn = rustls::ClientConnection::new(Arc::clone(tls), name.clone())
                    .map_err(|e| format!("TLS: {e}"))?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                while s.conn.is_handshaking() {
                    s.conn
                        .complete_io(&mut s.sock)
                        .map_err(|e| format!("TLS handshake with the collector: {e}"))?;
                }
                // With TLS 1.3 the collector judges the client certificate after the client
                // is done: wait briefly for its verdict (session tickets or an alert).
                let _ = s.sock.set_read_timeout(Some(Duration::from_millis(250)));
                peer_state(&mut s)?;
                let _ = s.sock.set_read_timeout(Some(Duration::from_secs(10)));
                return Ok(s);
            }
            Err(e) => last = format!("connecting to the collector: {e}"),
        }
    }
    Err(last)
}

/// Reads what the collector sent (it sends nothing but TLS records): `Err` if it refused
/// the connection (an alert) or closed it; a read timeout means it is fine.
fn peer_state(s: &mut Conn) -> Result<(), String> {
    match s.conn.read_tls(&mut s.sock) {
        Ok(0) => Err("the collector closed the connection".into()),
        Ok(_) => match s.conn.process_new_packets() {
            Err(e) => Err(format!("the collector refused the connection: {e}")),
            Ok(st) if st.peer_has_closed() => Err("the collector closed the connection".into()),
            Ok(_) => Ok(()),
        },
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("reading from the collector: {e}")),
    }
}

/// Before a write: whether the collector has closed or refused the connection meanwhile.
fn still_open(s: &mut Conn) -> Result<(), String> {
    let _ = s.sock.set_nonblocking(true);
    let r = peer_state(s);
    let _ = s.sock.set_nonblocking(false);
    r
}

fn run(
    rx: Receiver<Vec<u8>>,
    state: Arc<State>,
    tls: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
    address: String,
) {
    let set = |h: Result<(), String>| {
        let up = h.is_ok();
        *state.health.lock().unwrap_or_else(|e| e.into_inner()) = h;
        metrics::gauge!(AUDIT_SYSLOG_CONNECTED).set(if up { 1.0 } else { 0.0 });
    };
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(100);
    // Connect at once, so health reports the collector before the first record.
    while let Ok(frame) = recv_or_connect(&rx, &mut conn, &tls, &name, &address, &set, &mut backoff)
    {
        loop {
            if conn.is_none() {
                match connect(&tls, &name, &address) {
                    Ok(c) => {
                        conn = Some(c);
                        backoff = Duration::from_millis(100);
                        set(Ok(()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "audit syslog: collector unreachable");
                        set(Err(e));
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            if let Err(e) = still_open(c) {
                conn = None;
                set(Err(e));
                continue;
            }
            match c.write_all(&frame).and_then(|()| c.flush()) {
                Ok(()) => {
                    // Connected and sending again (a full queue earlier shows in the counter).
                    if state.health.lock().map(|h| h.is_err()).unwrap_or(true) {
                        set(Ok(()));
                    }
                    break;
                }
                Err(e) => {
                    conn = None;
                    set(Err(format!("writing to the collector: {e}")));
                }
            }
        }
        state.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The next frame; while idle and disconnected, tries to connect (with backoff).
fn recv_or_connect(
    rx: &Receiver<Vec<u8>>,
    conn: &mut Option<Conn>,
    tls: &Arc<rustls::ClientConfig>,
    name: &rustls::pki_types::ServerName<'static>,
    address: &str,
    set: &dyn Fn(Result<(), String>),
    backoff: &mut Duration,
) -> Result<Vec<u8>, ()> {
    loop {
        if conn.is_some() {
            return rx.recv().map_err(|_| ());
        }
        match rx.recv_timeout(*backoff) {
            Ok(f) => return Ok(f),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => match connect(tls, name, address) {
                Ok(c) => {
                    *conn = Some(c);
                    *backoff = Duration::from_millis(100);
                    set(Ok(()));
                }
                Err(e) => {
                    set(Err(e));
                    *backoff = (*backoff * 2).min(Duration::from_secs(30));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_frame() {
        let line = r#"{"data":{},"hash":"ab","kind":"checkpoint","prev":"00","seq":3,"ts":"2026-01-02T03:04:05.006Z","v":1}"#;
        let m = message(line, "guard one").unwrap();
        assert_eq!(
            m,
            format!("<109>1 2026-01-02T03:04:05.006Z guardone grenzwacht - checkpoint [gw@32473 seq=\"3\" hash=\"ab\"] {line}")
        );
        let f = frame(&m);
        assert!(f.starts_with(format!("{} <109>1 ", m.len()).as_bytes()));
        assert_eq!(message("not json", "h"), None);
    }
}
