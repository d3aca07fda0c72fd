//! One half's end of the pair of one-way links: requests out with an id, answers matched back,
//! requests from the other half verified and handed to the federation side.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{debug, info, warn};

use super::wire;
use super::Half;
use crate::diode::frame::{self, FrameType, Header, Reason};

/// Frames sent and received (`direction`: `sent`/`received`; `type`: `request`, `response`,
/// `heartbeat`).
pub const FRAMES_TOTAL: &str = "grenzwacht_split_frames_total";
/// Frames the receiving half refused (`reason`: the frame verifier's reason names, or
/// `message` for a verified frame that is no message of its type).
pub const FRAMES_REJECTED_TOTAL: &str = "grenzwacht_split_frames_rejected_total";
/// Requests to the other half that got no answer in time.
pub const TIMEOUTS_TOTAL: &str = "grenzwacht_split_timeouts_total";
/// Frames missing in the other half's sequence (lost on the link).
pub const GAPS_TOTAL: &str = "grenzwacht_split_sequence_gaps_total";
/// Requests refused because too many were waiting (`side`: `out` for this half's own
/// requests, `in` for the other half's).
pub const BUSY_TOTAL: &str = "grenzwacht_split_busy_total";

/// Why a request to the other half got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the request has no frame encoding: {0}")]
    NonConforming(#[from] wire::NonConforming),
    #[error("too many requests wait for the other half")]
    Busy,
    #[error("the link to the other half is down")]
    Down,
    #[error("no answer from the other half within {0:?}")]
    Timeout(Duration),
}

/// Proof that a request came from the other half in a frame the verifier accepted; only the
/// receive loop makes one. The forwarding layer takes it instead of a policy decision of this
/// half (`policy::Permit::crossed`): the other half's policy decided the request.
#[derive(Debug)]
pub struct Crossed {
    _private: (),
}

/// Marks an answer that came back from the other half: its policy released it there, so this
/// half passes it on as it is. Only [`Link::call`] makes one.
#[derive(Debug, Clone)]
pub struct Released {
    _private: (),
}

/// What the federation side of this half does with a request from the other half.
pub type Handler =
    Arc<dyn Fn(Crossed, wire::Request) -> BoxFuture<'static, wire::Response> + Send + Sync>;

/// Counters of one half's link end (read any time; also exported as metrics).
#[derive(Debug, Default)]
pub struct SplitStats {
    pub requests_sent: AtomicU64,
    pub responses_matched: AtomicU64,
    pub responses_unmatched: AtomicU64,
    pub requests_received: AtomicU64,
    pub responses_sent: AtomicU64,
    pub frames_rejected: AtomicU64,
    pub timeouts: AtomicU64,
    pub gaps: AtomicU64,
    pub heartbeats_received: AtomicU64,
    pub peer_restarts: AtomicU64,
}

/// This half's end.
pub struct Link {
    half: Half,
    session: u64,
    sequence: AtomicU64,
    next_id: AtomicU64,
    out: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<(wire::Response, Released)>>>,
    max_pending: usize,
    timeout: Duration,
    /// When the last verified frame of the other half arrived.
    last_heard: Mutex<Option<Instant>>,
    pub stats: Arc<SplitStats>,
}

impl Link {
    /// A link end sending frames into `out`; answers are awaited `timeout` at most, at most
    /// `max_pending` at once.
    pub fn new(
        half: Half,
        out: mpsc::Sender<Vec<u8>>,
        timeout: Duration,
        max_pending: usize,
    ) -> Link {
        let mut session = rand::random::<u64>();
        if session == 0 {
            session = 1;
        }
        Link {
            half,
            session,
            sequence: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            out,
            pending: Mutex::new(HashMap::new()),
            max_pending,
            timeout,
            last_heard: Mutex::new(None),
            stats: Arc::new(SplitStats::default()),
        }
    }

    pub fn half(&self) -> Half {
        self.half
    }

    /// Requests waiting for an answer.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Time since the other half was last heard from (`None`: never).
    pub fn last_heard(&self) -> Option<Duration> {
        self.last_heard
            .lock()
            .ok()
            .and_then(|t| t.map(|t| t.elapsed()))
    }

    async fn send_frame(&self, ty: FrameType, payload: &[u8]) -> Result<(), CallError> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let f = frame::encode(
            &Header {
                frame_type: ty,
                session: self.session,
                sequence: seq,
            },
            payload,
        );
        // Never send what the other half's verifier would refuse.
        let r = frame::verify(&f);
        if r != Reason::Accept {
            warn!(
                reason = r.name(),
                "split: a frame of this half failed its own verification; not sent"
            );
            return Err(CallError::NonConforming(wire::NonConforming::Field(
                "frame",
            )));
        }
        match tokio::time::timeout(self.timeout, self.out.send(f)).await {
            Ok(Ok(())) => {
                metrics::counter!(FRAMES_TOTAL, "direction" => "sent", "type" => type_name(ty))
                    .increment(1);
                Ok(())
            }
            Ok(Err(_)) => Err(CallError::Down),
            Err(_) => Err(CallError::Timeout(self.timeout)),
        }
    }

    /// Sends a request to the other half and waits for its answer. The request's `id` is set
    /// here.
    pub async fn call(
        &self,
        mut req: wire::Request,
    ) -> Result<(wire::Response, Released), CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        req.id = id;
        let payload = req.encode()?;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().map_err(|_| CallError::Down)?;
            if p.len() >= self.max_pending {
                metrics::counter!(BUSY_TOTAL, "side" => "out").increment(1);
                return Err(CallError::Busy);
            }
            p.insert(id, tx);
        }
        let forget = || {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
        };
        if let Err(e) = self.send_frame(FrameType::Request, &payload).await {
            forget();
            return Err(e);
        }
        self.stats.requests_sent.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => {
                forget();
                Err(CallError::Down)
            }
            Err(_) => {
                forget();
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(TIMEOUTS_TOTAL).increment(1);
                Err(CallError::Timeout(self.timeout))
            }
        }
    }

    /// Sends one heartbeat.
    pub async fn heartbeat(&self) -> Result<(), CallError> {
        let hb = wire::Heartbeat {
            half: self.half.as_str().to_string(),
            pending: self.pending() as u64,
        };
        self.send_frame(FrameType::Heartbeat, &hb.encode()?).await
    }
}

fn type_name(t: FrameType) -> &'static str {
    match t {
        FrameType::Request => "request",
        FrameType::Response => "response",
        FrameType::Heartbeat => "heartbeat",
    }
}

fn reject(link: &Link, reason: &'static str) {
    link.stats.frames_rejected.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(FRAMES_REJECTED_TOTAL, "reason" => reason).increment(1);
}

/// The receive loop of one half: every frame from `frames` is verified with the reference
/// verifier (whatever checked it before); a request goes to `handler` (at most `max_pending`
/// at once, more are answered 503) and its answer back over the link; an answer wakes the
/// request waiting for it. Runs until `frames` closes or `shutdown` turns true.
pub async fn receive(
    link: Arc<Link>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(link.max_pending));
    // The other half's session and the next sequence number expected from it.
    let mut peer: Option<(u64, u64)> = None;
    loop {
        let f = tokio::select! {
            f = frames.recv() => match f { Some(f) => f, None => return },
            _ = shutdown.changed() => return,
        };
        let r = frame::verify(&f);
        if r != Reason::Accept {
            warn!(
                reason = r.name(),
                len = f.len(),
                "split: frame from the other half refused by the verifier"
            );
            reject(&link, r.name());
            continue;
        }
        let Some(h) = frame::header(&f) else {
            reject(&link, "message");
            continue;
        };
        match &mut peer {
            Some((s, next)) if *s == h.session => {
                if h.sequence > *next {
                    let lost = h.sequence - *next;
                    link.stats.gaps.fetch_add(lost, Ordering::Relaxed);
                    metrics::counter!(GAPS_TOTAL).increment(lost);
                    warn!(
                        lost,
                        "split: frames of the other half missing (lost on the link)"
                    );
                }
                if h.sequence >= *next {
                    // Any value is a valid sequence number: it wraps, never overflows.
                    *next = h.sequence.wrapping_add(1);
                }
            }
            _ => {
                if peer.is_some() {
                    link.stats.peer_restarts.fetch_add(1, Ordering::Relaxed);
                    info!("split: the other half started a new session");
                }
                peer = Some((h.session, h.sequence.wrapping_add(1)));
            }
        }
        if let Ok(mut t) = link.last_heard.lock() {
            *t = Some(Instant::now());
        }
        metrics::counter!(FRAMES_TOTAL, "direction" => "received", "type" => type_name(h.frame_type)).increment(1);
        let payload = &f[frame::HEADER_LEN..];
        match h.frame_type {
            FrameType::Heartbeat => match wire::Heartbeat::decode(payload) {
                Ok(_) => {
                    link.stats
                        .heartbeats_received
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => reject(&link, "message"),
            },
            FrameType::Response => match wire::Response::decode(payload) {
                Ok(resp) => {
                    let waiter = link
                        .pending
                        .lock()
                        .ok()
                        .and_then(|mut p| p.remove(&resp.id));
                    match waiter {
                        Some(tx) => {
                            link.stats.responses_matched.fetch_add(1, Ordering::Relaxed);
                            let _ = tx.send((resp, Released { _private: () }));
                        }
                        None => {
                            link.stats
                                .responses_unmatched
                                .fetch_add(1, Ordering::Relaxed);
                            debug!(id = resp.id, "split: answer for no waiting request (timed out or from before a restart)");
                        }
                    }
                }
                Err(_) => reject(&link, "message"),
            },
            FrameType::Request => {
                let req = match wire::Request::decode(payload) {
                    Ok(r) => r,
                    Err(_) => {
                        reject(&link, "message");
                        continue;
                    }
                };
                link.stats.requests_received.fetch_add(1, Ordering::Relaxed);
                let id = req.id;
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    metrics::counter!(BUSY_TOTAL, "side" => "in").increment(1);
                    let busy = wire::Response {
                        id,
                        status: 503,
                        body: Some(
                            serde_json::json!({"errcode": "M_LIMIT_EXCEEDED", "error": "the guard is busy"}),
                        ),
                    };
                    if let Ok(p) = busy.encode() {
                        let _ = link.send_frame(FrameType::Response, &p).await;
                    }
                    continue;
                };
                let (link, handler) = (link.clone(), handler.clone());
                tokio::spawn(async move {
                    let resp = handler(Crossed { _private: () }, req).await;
                    let resp = wire::Response { id, ..resp };
                    let payload = match resp.encode() {
                        Ok(p) => p,
                        Err(e) => {
                            warn!("split: answer has no frame encoding ({e}); 502 instead");
                            wire::Response {
                                id,
                                status: 502,
                                body: Some(serde_json::json!({"errcode": "M_UNKNOWN", "error": "the answer cannot cross the guard"})),
                            }
                            .encode()
                            .expect("fixed answer encodes")
                        }
                    };
                    if link.send_frame(FrameType::Response, &payload).await.is_ok() {
                        link.stats.responses_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(slot);
                });
            }
        }
    }
}

/// Sends a heartbeat every `every` until `shutdown` turns true.
pub async fn heartbeats(link: Arc<Link>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = link.heartbeat().await {
                    debug!("split: heartbeat not sent: {e}");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
