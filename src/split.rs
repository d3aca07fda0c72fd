//! The split appliance: the guard as two halves, HIGH and LOW, joined only by a pair of one-way
//! links that carry diode frames (`hw/FRAMES.md`).
//!
//! # Who does what
//!
//! * The **HIGH half** faces the protected (HIGH) homeservers: their outbound federation enters
//!   it (`[outbound]` listeners), and requests from the LOW side leave it towards them
//!   (`[[protected]] upstream`). It holds the protected servers' signing keys (re-signing
//!   modified outbound requests) and nothing of the LOW side.
//! * The **LOW half** faces the remote (LOW) servers: their requests to a protected server
//!   enter it (`[inbound]`, with the protected servers' TLS certificates), and the HIGH side's
//!   requests leave it towards them (`[outbound]` routes and discovery, no listeners). It holds
//!   no key of a HIGH server (configuration refuses `signing_key`, `upstream` and `admin_api`
//!   on the LOW half), so a compromised LOW half cannot speak as a HIGH server; it holds the
//!   guard key (`[keys] guard_key`) that attests remote keys and re-signs modified inbound
//!   requests, which speaks only for LOW servers.
//!
//! # The policy runs where the content comes from
//!
//! A request is judged by the half it enters (all request phases of `proxy::exchange`:
//! strict parsing, X-Matrix, the policy, redaction, re-signing); the answer is judged by the
//! half of the server that answered it. So everything HIGH → LOW is judged on HIGH (export:
//! outbound requests, answers to inbound ones), everything LOW → HIGH on LOW (import). The
//! receiving half re-checks every frame with the reference verifier (and the verifier card
//! model if configured), then forwards a request on the other half's decision
//! ([`link::Crossed`], `policy::Permit::crossed`) and passes an answer on as released
//! ([`link::Released`]). A frame that fails verification is counted and dropped; the request
//! waiting for it times out (`request_timeout_ms`, a 504 to the sender).
//!
//! What the frame format cannot carry does not cross: the sending half's policy redacts an
//! event whose content does not conform (`policy::frame`), drops such an EDU, and refuses any
//! other request or answer that has no frame encoding. Media files (binary) do not cross a
//! split appliance: media endpoints are refused on both halves.
//!
//! # Where state lives
//!
//! Each half has its own store, audit log and admin listener. Holds and review live on the half
//! whose policy held the event: exports are reviewed on HIGH, imports on LOW. Held traffic is
//! delivered by that half through the link like any other request. Room versions and labels
//! are learned by each half from the traffic it judges; only the HIGH half can ask a protected
//! server's admin API.
//!
//! # Links
//!
//! `[split.send]` and `[split.receive]`: one-way UDP with RaptorQ FEC (`diode::udp`) or TCP
//! (`diode::tcp`, the receiver never writes). A request waits `request_timeout_ms` for its
//! answer; at most `max_pending` wait at once each way (more: 503). Heartbeats every
//! `heartbeat_ms` tell the other half this one is alive (`/health` check `split_link`).
pub mod link;
pub mod wire;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::split::{LinkKind, SplitConfig, VerifierKind};
use crate::diode::{tcp, udp};

pub use link::{Crossed, Link, Released};

/// Which half this guard is (`[split] half`).
pub use crate::config::split::HalfName as Half;

/// Errors starting a half's links.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("split link: {0}")]
    Udp(#[from] udp::LinkError),
    #[error("split link: cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("split link already started")]
    Started,
    #[error("frame verifier card: {0}")]
    Card(#[from] crate::diode::device::DeviceError),
}

/// Counters of the link backends, exported as metrics (`grenzwacht_diode_*`).
pub const DIODE_DATAGRAMS_TOTAL: &str = "grenzwacht_diode_datagrams_total";
pub const DIODE_SYMBOLS_RECOVERED_TOTAL: &str = "grenzwacht_diode_symbols_recovered_total";
pub const DIODE_OBJECTS_LOST_TOTAL: &str = "grenzwacht_diode_objects_lost_total";
pub const DIODE_OBJECTS_DECODED_TOTAL: &str = "grenzwacht_diode_objects_decoded_total";
pub const DIODE_DATAGRAMS_MALFORMED_TOTAL: &str = "grenzwacht_diode_datagrams_malformed_total";
pub const DIODE_CARD_REJECTED_TOTAL: &str = "grenzwacht_diode_card_rejected_total";

/// A half at runtime: its link end and what is needed to start the carriers.
pub struct Split {
    pub link: Arc<Link>,
    cfg: SplitConfig,
    outgoing: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    pub udp_send: Arc<udp::LinkStats>,
    pub udp_receive: Arc<udp::LinkStats>,
}

impl Split {
    /// The half of `cfg` (nothing runs until [`Split::start`]).
    pub fn from_config(cfg: &SplitConfig) -> Split {
        let (tx, rx) = mpsc::channel(cfg.max_pending.max(16));
        let link = Arc::new(Link::new(
            cfg.half,
            tx,
            Duration::from_millis(cfg.request_timeout_ms),
            cfg.max_pending,
        ));
        Split {
            link,
            cfg: cfg.clone(),
            outgoing: Mutex::new(Some(rx)),
            udp_send: Arc::default(),
            udp_receive: Arc::default(),
        }
    }

    pub fn half(&self) -> Half {
        self.link.half()
    }

    fn udp_config(end: &crate::config::split::LinkEndConfig) -> udp::LinkConfig {
        udp::LinkConfig {
            mtu: end.mtu,
            repair_percent: end.repair_percent,
            rate_bits_per_sec: end.rate_mbps.map(|m| m * 1_000_000),
            ..udp::LinkConfig::default()
        }
    }

    /// Binds the receiving end, starts both carriers, the receive loop (requests go to
    /// `handler`), heartbeats and the metrics export. Returns the tasks.
    pub async fn start(
        &self,
        handler: link::Handler,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, SplitError> {
        let outgoing = self
            .outgoing
            .lock()
            .ok()
            .and_then(|mut o| o.take())
            .ok_or(SplitError::Started)?;
        let mut tasks = Vec::new();
        let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(self.cfg.max_pending.max(16));
        // Receiving end first (bind errors are start errors).
        let r = &self.cfg.receive;
        match r.kind {
            LinkKind::Udp => {
                let c = Self::udp_config(r);
                let sock = udp::socket(r.address, None, &c)?;
                let (stats, sd) = (self.udp_receive.clone(), shutdown.clone());
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = udp::run_receiver(sock, c, in_tx, stats, sd).await {
                        warn!("split link receiver ended: {e}");
                    }
                }));
            }
            LinkKind::Tcp => {
                let l = tokio::net::TcpListener::bind(r.address)
                    .await
                    .map_err(|source| SplitError::Listen {
                        addr: r.address,
                        source,
                    })?;
                let sd = shutdown.clone();
                tasks.push(tokio::spawn(async move {
                    tcp::run_receiver(l, in_tx, Arc::default(), sd).await;
                }));
            }
        }
        let s = &self.cfg.send;
        match s.kind {
            LinkKind::Udp => {
                let c = Self::udp_config(s);
                let bind = match s.address {
                    std::net::SocketAddr::V4(_) => "0.0.0.0:0",
                    std::net::SocketAddr::V6(_) => "[::]:0",
                }
                .parse()
                .expect("address");
                let sock = udp::socket(bind, Some(s.address), &c)?;
                let (stats, sd) = (self.udp_send.clone(), shutdown.clone());
                let session = rand::random::<u64>() | 1;
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = udp::run_sender(sock, c, session, outgoing, stats, sd).await {
                        warn!("split link sender ended: {e}");
                    }
                }));
            }
            LinkKind::Tcp => {
                let (to, sd) = (s.address, shutdown.clone());
                tasks.push(tokio::spawn(async move {
                    tcp::run_sender(to, outgoing, Arc::default(), sd).await;
                }));
            }
        }
        // What checks a frame before the reference verifier.
        let frames = match self.cfg.verifier {
            VerifierKind::Reference => in_rx,
            VerifierKind::SimulatedCard => {
                let (tx, rx) = mpsc::channel(self.cfg.max_pending.max(16));
                let card =
                    crate::diode::device::CardDriver::open(crate::diode::device::SimCard::new(
                        (crate::diode::frame::HEADER_LEN as u32) + crate::diode::frame::MAX_PAYLOAD,
                        64,
                    ))
                    .map_err(|e| SplitError::Listen {
                        addr: r.address,
                        source: std::io::Error::other(e.to_string()),
                    })?;
                tasks.push(tokio::spawn(async move {
                    let mut card = crate::diode::device::gate(card, in_rx, tx).await;
                    let rejected: u64 = card.counters()[1..].iter().map(|&c| c as u64).sum();
                    metrics::counter!(DIODE_CARD_REJECTED_TOTAL).absolute(rejected);
                }));
                rx
            }
        };
        tasks.push(tokio::spawn(link::receive(
            self.link.clone(),
            frames,
            handler,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(link::heartbeats(
            self.link.clone(),
            Duration::from_millis(self.cfg.heartbeat_ms),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(export_stats(
            self.udp_send.clone(),
            self.udp_receive.clone(),
            shutdown,
        )));
        info!(
            half = self.half().as_str(),
            send = %s.address,
            receive = %r.address,
            "split appliance links started"
        );
        Ok(tasks)
    }

    /// `/health`: the other half heard from within three heartbeats.
    pub fn health(&self) -> Result<(), String> {
        let limit = Duration::from_millis(self.cfg.heartbeat_ms * 3);
        match self.link.last_heard() {
            Some(d) if d <= limit => Ok(()),
            Some(d) => Err(format!(
                "nothing heard from the other half for {} s",
                d.as_secs()
            )),
            None => Err("nothing heard from the other half yet".into()),
        }
    }
}

async fn export_stats(
    send: Arc<udp::LinkStats>,
    recv: Arc<udp::LinkStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        metrics::counter!(DIODE_DATAGRAMS_TOTAL, "direction" => "sent")
            .absolute(g(&send.datagrams_sent));
        metrics::counter!(DIODE_DATAGRAMS_TOTAL, "direction" => "received")
            .absolute(g(&recv.datagrams_received));
        metrics::counter!(DIODE_SYMBOLS_RECOVERED_TOTAL).absolute(g(&recv.symbols_recovered));
        metrics::counter!(DIODE_OBJECTS_LOST_TOTAL).absolute(g(&recv.objects_lost));
        metrics::counter!(DIODE_OBJECTS_DECODED_TOTAL).absolute(g(&recv.objects_decoded));
        metrics::counter!(DIODE_DATAGRAMS_MALFORMED_TOTAL).absolute(g(&recv.datagrams_malformed));
    }
}
