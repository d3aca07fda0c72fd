//! The one-way UDP link: frames cross as RaptorQ-coded datagrams (RFC 6330, crate `raptorq`)
//! with no back channel.
//!
//! # Design notes
//!
//! * **Objects.** The sender takes frames from a bounded queue and packs whole frames (each
//!   self-delimiting by its header's payload length) into an *object* of at most
//!   [`LinkConfig::batch_bytes`]. An object is RaptorQ-encoded with parameters both ends derive
//!   from its length and the configured MTU alone (`ObjectTransmissionInformation::with_defaults`),
//!   so the wire never carries coding parameters a receiver would have to trust.
//! * **Datagrams.** Each carries a 64-byte link header — magic `GWL1`, kind (data / heartbeat),
//!   source-or-repair flag, the sender's session id, the object's sequence number, its length
//!   and its SHA-256 — then the RaptorQ payload id and one symbol. The per-object hash is checked
//!   after decoding; a mismatch drops the object.
//! * **Repair.** For every source block of K symbols the sender adds
//!   ⌈K · `repair_percent` / 100⌉ repair symbols (at least one); any K of the K + R symbols decode
//!   the block with high probability.
//! * **No back channel.** Loss cannot be reported back. The receiver declares an object *lost*
//!   (a gap) when it is still incomplete [`LinkConfig::gap_timeout`] after a later object
//!   or a heartbeat showed it was sent; it counts gaps and moves on. Heartbeats
//!   ([`LinkConfig::heartbeat`]) carry the sender's next sequence number (so a fully lost last
//!   object is noticed) and its MTU and repair ratio (a mismatch with the receiver's own is
//!   counted and logged: the receiver could not decode).
//! * **Bounds.** The send queue, the number of objects being decoded and the object size are
//!   bounded; the sender paces datagrams to [`LinkConfig::rate_bits_per_sec`] (a one-way link
//!   cannot slow its sender down, so the rate must fit the receiver). Every datagram is
//!   length- and field-checked before the decoder sees it (the decoder indexes by block number
//!   and assumes symbol sizes).
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raptorq::{
    Decoder, EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockEncoder,
};
use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::frame::{HEADER_LEN as FRAME_HEADER_LEN, MAX_PAYLOAD};

/// Link header magic.
pub const MAGIC: [u8; 4] = *b"GWL1";
/// Link header length.
pub const LINK_HEADER: usize = 64;
/// RaptorQ payload id length.
const PAYLOAD_ID: usize = 4;
/// IPv4 + UDP header bytes subtracted from the MTU.
pub const IP_UDP_OVERHEAD: usize = 28;
/// Largest object (one frame of the largest payload, with its header).
pub const MAX_OBJECT: usize = FRAME_HEADER_LEN + MAX_PAYLOAD as usize;

const KIND_DATA: u8 = 1;
const KIND_HEARTBEAT: u8 = 2;

/// Link settings; both ends must use the same `mtu` and `repair_percent`.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Link MTU: datagrams are `mtu − 28` bytes (e.g. 1500 or 9000).
    pub mtu: u16,
    /// Repair symbols per source block, in percent of its source symbols.
    pub repair_percent: u32,
    /// Largest object the sender packs frames into (a larger frame is an object of its own).
    pub batch_bytes: usize,
    /// Sender pacing (bits per second of datagram payload); `None` sends as fast as it can.
    pub rate_bits_per_sec: Option<u64>,
    /// Interval of heartbeats.
    pub heartbeat: Duration,
    /// How long an object may stay incomplete after a later one was seen.
    pub gap_timeout: Duration,
    /// Frames waiting to be sent.
    pub queue: usize,
    /// Objects being decoded at once; beyond it the oldest is given up (counted as lost).
    pub max_pending: usize,
    /// Receive and send socket buffers (bytes).
    pub socket_buffer: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            mtu: 1500,
            repair_percent: 10,
            batch_bytes: 1 << 20,
            rate_bits_per_sec: None,
            heartbeat: Duration::from_millis(500),
            gap_timeout: Duration::from_secs(2),
            queue: 1024,
            max_pending: 64,
            socket_buffer: 8 << 20,
        }
    }
}

impl LinkConfig {
    /// Largest symbol (the datagram minus the link header and payload id).
    pub fn symbol_budget(&self) -> u16 {
        (self.mtu as usize).saturating_sub(IP_UDP_OVERHEAD + LINK_HEADER + PAYLOAD_ID) as u16
    }

    fn oti(&self, len: u64) -> ObjectTransmissionInformation {
        ObjectTransmissionInformation::with_defaults(len, self.symbol_budget())
    }
}

/// Counters of one end of a link (shared; read them any time).
#[derive(Debug, Default)]
pub struct LinkStats {
    pub frames_sent: AtomicU64,
    pub objects_sent: AtomicU64,
    pub datagrams_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub datagrams_received: AtomicU64,
    /// Datagrams refused before decoding (bad header, wrong sizes, foreign session).
    pub datagrams_malformed: AtomicU64,
    /// Datagrams of objects already complete or given up.
    pub datagrams_late: AtomicU64,
    pub objects_decoded: AtomicU64,
    /// Source symbols that never arrived in objects that decoded anyway (losses FEC repaired).
    pub symbols_recovered: AtomicU64,
    pub objects_hash_mismatch: AtomicU64,
    /// Objects given up: gaps in the sequence.
    pub objects_lost: AtomicU64,
    pub frames_delivered: AtomicU64,
    /// Objects whose frames did not split cleanly (dropped).
    pub objects_malformed: AtomicU64,
    pub heartbeats_received: AtomicU64,
    /// Heartbeats announcing another MTU or repair ratio than this receiver's.
    pub config_mismatches: AtomicU64,
    pub session_changes: AtomicU64,
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Errors of the link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("udp link socket {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("udp link: MTU {0} leaves no room for a symbol")]
    Mtu(u16),
}

/// A UDP socket bound to `bind` with the configured buffers; `connect` for a sender.
pub fn socket(
    bind: SocketAddr,
    connect: Option<SocketAddr>,
    cfg: &LinkConfig,
) -> Result<UdpSocket, LinkError> {
    let err = |source| LinkError::Socket { addr: bind, source };
    let domain = socket2::Domain::for_address(bind);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(err)?;
    // Best effort: the kernel caps buffers at net.core.{r,w}mem_max.
    let _ = s.set_recv_buffer_size(cfg.socket_buffer);
    let _ = s.set_send_buffer_size(cfg.socket_buffer);
    s.set_nonblocking(true).map_err(err)?;
    s.bind(&bind.into()).map_err(err)?;
    if let Some(to) = connect {
        s.connect(&to.into()).map_err(err)?;
    }
    UdpSocket::from_std(s.into()).map_err(err)
}

/// Datagram header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    kind: u8,
    repair: bool,
    session: u64,
    seq: u64,
    len: u32,
    sha256: [u8; 32],
}

fn put_head(buf: &mut Vec<u8>, h: &Head) {
    buf.extend_from_slice(&MAGIC);
    buf.push(h.kind);
    buf.push(h.repair as u8);
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&h.session.to_be_bytes());
    buf.extend_from_slice(&h.seq.to_be_bytes());
    buf.extend_from_slice(&h.len.to_be_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&h.sha256);
}

fn get_head(d: &[u8]) -> Option<Head> {
    if d.len() < LINK_HEADER || d[0..4] != MAGIC || d[6..8] != [0, 0] || d[28..32] != [0; 4] {
        return None;
    }
    let repair = match d[5] {
        0 => false,
        1 => true,
        _ => return None,
    };
    Some(Head {
        kind: d[4],
        repair,
        session: u64::from_be_bytes(d[8..16].try_into().ok()?),
        seq: u64::from_be_bytes(d[16..24].try_into().ok()?),
        len: u32::from_be_bytes(d[24..28].try_into().ok()?),
        sha256: d[32..64].try_into().ok()?,
    })
}

/// Paces datagrams to a rate (a token bucket of one millisecond's worth).
struct Pacer {
    rate: Option<u64>,
    next: Instant,
}

impl Pacer {
    async fn wait(&mut self, bytes: usize) {
        let Some(rate) = self.rate else {
            return;
        };
        let now = Instant::now();
        if self.next < now {
            self.next = now;
        }
        self.next +=
            Duration::from_nanos((bytes as u64 * 8).saturating_mul(1_000_000_000) / rate.max(1));
        let ahead = self.next.saturating_duration_since(now);
        if ahead > Duration::from_millis(1) {
            tokio::time::sleep(ahead).await;
        }
    }
}

/// The sending end. Frames come from `frames`; it runs until the channel closes (after
/// sending what is queued) or `shutdown` turns true.
pub async fn run_sender(
    socket: UdpSocket,
    cfg: LinkConfig,
    session: u64,
    mut frames: mpsc::Receiver<Vec<u8>>,
    stats: Arc<LinkStats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    if cfg.symbol_budget() < 16 {
        return Err(LinkError::Mtu(cfg.mtu));
    }
    let addr = socket.local_addr().map_err(|source| LinkError::Socket {
        addr: "0.0.0.0:0".parse().expect("address"),
        source,
    })?;
    let io = |source| LinkError::Socket { addr, source };
    let mut seq: u64 = 0;
    let mut pacer = Pacer {
        rate: cfg.rate_bits_per_sec,
        next: Instant::now(),
    };
    let mut beat = tokio::time::interval(cfg.heartbeat);
    let mut carry: Option<Vec<u8>> = None;
    loop {
        let first = match carry.take() {
            Some(f) => f,
            None => tokio::select! {
                f = frames.recv() => match f {
                    Some(f) => f,
                    None => {
                        send_heartbeat(&socket, &cfg, session, seq, &stats).await.map_err(io)?;
                        return Ok(());
                    }
                },
                _ = beat.tick() => {
                    send_heartbeat(&socket, &cfg, session, seq, &stats).await.map_err(io)?;
                    continue;
                }
                _ = shutdown.changed() => return Ok(()),
            },
        };
        // Pack whole frames up to the batch size.
        let mut object = first;
        let mut n = 1;
        while object.len() < cfg.batch_bytes {
            match frames.try_recv() {
                Ok(f) if object.len() + f.len() <= cfg.batch_bytes => {
                    object.extend_from_slice(&f);
                    n += 1;
                }
                Ok(f) => {
                    carry = Some(f);
                    break;
                }
                Err(_) => break,
            }
        }
        send_object(&socket, &cfg, session, seq, &object, &mut pacer, &stats)
            .await
            .map_err(io)?;
        inc(&stats.frames_sent, n);
        seq += 1;
    }
}

async fn send_heartbeat(
    socket: &UdpSocket,
    cfg: &LinkConfig,
    session: u64,
    next_seq: u64,
    stats: &LinkStats,
) -> std::io::Result<()> {
    let mut d = Vec::with_capacity(LINK_HEADER + 8);
    put_head(
        &mut d,
        &Head {
            kind: KIND_HEARTBEAT,
            repair: false,
            session,
            seq: next_seq,
            len: 0,
            sha256: [0; 32],
        },
    );
    d.extend_from_slice(&cfg.mtu.to_be_bytes());
    d.extend_from_slice(&(cfg.repair_percent as u16).to_be_bytes());
    socket.send(&d).await?;
    inc(&stats.heartbeats_sent, 1);
    Ok(())
}

async fn send_object(
    socket: &UdpSocket,
    cfg: &LinkConfig,
    session: u64,
    seq: u64,
    object: &[u8],
    pacer: &mut Pacer,
    stats: &LinkStats,
) -> std::io::Result<()> {
    let oti = cfg.oti(object.len() as u64);
    let sha: [u8; 32] = Sha256::digest(object).into();
    let mut datagram = Vec::with_capacity(cfg.mtu as usize);
    let send = |p: EncodingPacket, repair: bool, datagram: &mut Vec<u8>| {
        datagram.clear();
        put_head(
            datagram,
            &Head {
                kind: KIND_DATA,
                repair,
                session,
                seq,
                len: object.len() as u32,
                sha256: sha,
            },
        );
        datagram.extend_from_slice(&p.payload_id().serialize());
        datagram.extend_from_slice(p.data());
    };
    for (b, block) in raptorq::calculate_block_offsets(object, &oti)
        .into_iter()
        .enumerate()
    {
        let (start, end) = block;
        let data: std::borrow::Cow<'_, [u8]> = if end > object.len() {
            let mut v = object[start..].to_vec();
            v.resize(end - start, 0);
            v.into()
        } else {
            object[start..end].into()
        };
        let enc = SourceBlockEncoder::new(b as u8, &oti, &data);
        let source = enc.source_packets();
        let repairs = (source.len() as u64 * cfg.repair_percent as u64)
            .div_ceil(100)
            .max(1);
        let repair = enc.repair_packets(0, repairs as u32);
        for (p, is_repair) in source
            .into_iter()
            .map(|p| (p, false))
            .chain(repair.into_iter().map(|p| (p, true)))
        {
            send(p, is_repair, &mut datagram);
            pacer.wait(datagram.len()).await;
            // A full socket buffer: wait for room rather than drop here.
            socket.send(&datagram).await?;
            inc(&stats.datagrams_sent, 1);
            inc(&stats.bytes_sent, datagram.len() as u64);
        }
    }
    inc(&stats.objects_sent, 1);
    Ok(())
}

/// An object being decoded.
struct Pending {
    decoder: Decoder,
    oti: ObjectTransmissionInformation,
    sha256: [u8; 32],
    len: u32,
    sources: HashSet<u32>,
}

/// Receiver state (sequence bookkeeping).
struct Rx {
    cfg: LinkConfig,
    session: Option<u64>,
    pending: BTreeMap<u64, Pending>,
    /// Every object below `floor` is complete or given up.
    floor: u64,
    /// Highest sequence number known to have been sent, plus one.
    known: u64,
    /// Completed objects at or above `floor`.
    done: HashSet<u64>,
    /// Since when `floor` has been waited for.
    floor_since: Instant,
}

impl Rx {
    fn reset(&mut self, session: u64) {
        self.session = Some(session);
        self.pending.clear();
        self.floor = 0;
        self.known = 0;
        self.done.clear();
        self.floor_since = Instant::now();
    }

    fn learn_sent(&mut self, next: u64) {
        if next > self.known {
            if self.known <= self.floor {
                self.floor_since = Instant::now();
            }
            self.known = next;
        }
    }

    /// Advances `floor` over completed objects and gives up ones waited for too long.
    fn sweep(&mut self, stats: &LinkStats) {
        loop {
            if self.floor >= self.known {
                return;
            }
            if self.done.remove(&self.floor) {
                self.floor += 1;
                self.floor_since = Instant::now();
                continue;
            }
            if self.floor_since.elapsed() >= self.cfg.gap_timeout {
                // Everything from `floor` up to the next object received (or known to be
                // sent) is lost: given up at once, so a jump in the sequence — a long outage,
                // or a forged datagram — costs one step, not one per missing number.
                let next = self
                    .pending
                    .range(self.floor + 1..)
                    .map(|(k, _)| *k)
                    .chain(self.done.iter().copied().filter(|&d| d > self.floor))
                    .min()
                    .unwrap_or(self.known)
                    .min(self.known);
                self.pending.remove(&self.floor);
                let lost = next - self.floor;
                inc(&stats.objects_lost, lost);
                tracing::warn!(from = self.floor, lost, "diode link: objects lost (gap)");
                self.floor = next;
                self.floor_since = Instant::now();
                continue;
            }
            return;
        }
    }
}

/// Splits an object into its frames (each `64 + payload_length` bytes); `None` if it does not
/// split cleanly.
pub fn split_frames(object: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < object.len() {
        let rest = &object[at..];
        if rest.len() < FRAME_HEADER_LEN {
            return None;
        }
        let len = u32::from_be_bytes(rest[24..28].try_into().ok()?) as usize;
        let size = FRAME_HEADER_LEN.checked_add(len)?;
        if len > MAX_PAYLOAD as usize || rest.len() < size {
            return None;
        }
        out.push(&rest[..size]);
        at += size;
    }
    Some(out)
}

/// The receiving end: decodes objects and hands their frames to `deliver` (a bounded channel:
/// when it is full the receiver waits, and the socket buffer absorbs or drops datagrams).
/// Runs until `shutdown` turns true or `deliver` closes.
pub async fn run_receiver(
    socket: UdpSocket,
    cfg: LinkConfig,
    deliver: mpsc::Sender<Vec<u8>>,
    stats: Arc<LinkStats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let mut rx = Rx {
        cfg: cfg.clone(),
        session: None,
        pending: BTreeMap::new(),
        floor: 0,
        known: 0,
        done: HashSet::new(),
        floor_since: Instant::now(),
    };
    let mut buf = vec![0u8; 65_536];
    let mut tick = tokio::time::interval(cfg.gap_timeout / 4);
    loop {
        let n = tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => n,
                // ICMP errors (no listener yet) surface as recv errors on connected sockets.
                Err(_) => continue,
            },
            _ = tick.tick() => {
                rx.sweep(&stats);
                continue;
            }
            _ = shutdown.changed() => return Ok(()),
        };
        inc(&stats.datagrams_received, 1);
        let d = &buf[..n];
        let Some(h) = get_head(d) else {
            inc(&stats.datagrams_malformed, 1);
            continue;
        };
        if rx.session != Some(h.session) {
            if h.session == 0 {
                inc(&stats.datagrams_malformed, 1);
                continue;
            }
            if rx.session.is_some() {
                inc(&stats.session_changes, 1);
                tracing::info!(session = h.session, "diode link: new sender session");
            }
            rx.reset(h.session);
        }
        match h.kind {
            KIND_HEARTBEAT => {
                if d.len() != LINK_HEADER + 4 {
                    inc(&stats.datagrams_malformed, 1);
                    continue;
                }
                inc(&stats.heartbeats_received, 1);
                let mtu = u16::from_be_bytes([d[64], d[65]]);
                let pct = u16::from_be_bytes([d[66], d[67]]);
                if mtu != cfg.mtu || pct as u32 != cfg.repair_percent {
                    inc(&stats.config_mismatches, 1);
                    tracing::warn!(
                        mtu,
                        repair_percent = pct,
                        "diode link: sender uses other FEC parameters"
                    );
                }
                rx.learn_sent(h.seq);
                rx.sweep(&stats);
            }
            KIND_DATA => {
                if let Some(object) = receive_data(&mut rx, &h, d, &stats) {
                    match split_frames(&object) {
                        Some(frames) => {
                            for f in frames {
                                if deliver.send(f.to_vec()).await.is_err() {
                                    return Ok(());
                                }
                                inc(&stats.frames_delivered, 1);
                            }
                        }
                        None => inc(&stats.objects_malformed, 1),
                    }
                }
                rx.sweep(&stats);
            }
            _ => inc(&stats.datagrams_malformed, 1),
        }
    }
}

/// One data datagram: the decoded object when it completes.
fn receive_data(rx: &mut Rx, h: &Head, d: &[u8], stats: &LinkStats) -> Option<Vec<u8>> {
    let len = h.len as usize;
    if len == 0 || len > MAX_OBJECT {
        inc(&stats.datagrams_malformed, 1);
        return None;
    }
    rx.learn_sent(h.seq.saturating_add(1));
    if h.seq < rx.floor || rx.done.contains(&h.seq) {
        inc(&stats.datagrams_late, 1);
        return None;
    }
    if !rx.pending.contains_key(&h.seq) {
        if rx.pending.len() >= rx.cfg.max_pending {
            // Give up the oldest object being decoded.
            if let Some((&old, _)) = rx.pending.iter().next() {
                rx.pending.remove(&old);
                rx.done.insert(old);
                inc(&stats.objects_lost, 1);
            }
        }
        let oti = rx.cfg.oti(len as u64);
        rx.pending.insert(
            h.seq,
            Pending {
                decoder: Decoder::new(oti),
                oti,
                sha256: h.sha256,
                len: h.len,
                sources: HashSet::new(),
            },
        );
    }
    let p = rx.pending.get_mut(&h.seq).expect("inserted");
    let sym = &d[LINK_HEADER..];
    // The same object must keep its length and hash; the symbol must have the object's size
    // and a block number within it (the decoder assumes both).
    if p.len != h.len
        || p.sha256 != h.sha256
        || sym.len() != PAYLOAD_ID + p.oti.symbol_size() as usize
        || sym[0] >= p.oti.source_blocks()
    {
        inc(&stats.datagrams_malformed, 1);
        return None;
    }
    let id = PayloadId::deserialize(&[sym[0], sym[1], sym[2], sym[3]]);
    if !h.repair {
        p.sources
            .insert(((id.source_block_number() as u32) << 24) | id.encoding_symbol_id());
    }
    let packet = EncodingPacket::new(id, sym[PAYLOAD_ID..].to_vec());
    let object = p.decoder.decode(packet)?;
    let p = rx.pending.remove(&h.seq).expect("pending");
    rx.done.insert(h.seq);
    if <[u8; 32]>::from(Sha256::digest(&object)) != p.sha256 {
        inc(&stats.objects_hash_mismatch, 1);
        tracing::warn!(seq = h.seq, "diode link: object hash mismatch, dropped");
        return None;
    }
    let symbols = (p.len as u64).div_ceil(p.oti.symbol_size() as u64);
    inc(
        &stats.symbols_recovered,
        symbols.saturating_sub(p.sources.len() as u64),
    );
    inc(&stats.objects_decoded, 1);
    Some(object)
}

/// A lossy relay for tests and benchmarks: forwards datagrams from `inbound` to `to`, dropping
/// each with probability `loss` (seeded, reproducible). Returns when `shutdown` turns true.
pub async fn lossy_relay(
    inbound: UdpSocket,
    to: SocketAddr,
    loss: f64,
    seed: u64,
    dropped: Arc<AtomicU64>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    lossy_relay_counted(inbound, to, loss, seed, dropped, Arc::default(), shutdown).await
}

/// [`lossy_relay`], also counting the datagrams it passed on in `relayed`.
pub async fn lossy_relay_counted(
    inbound: UdpSocket,
    to: SocketAddr,
    loss: f64,
    seed: u64,
    dropped: Arc<AtomicU64>,
    relayed: Arc<AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let out = UdpSocket::bind(match to {
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(_) => "[::]:0",
    })
    .await?;
    out.connect(to).await?;
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = tokio::select! {
            r = inbound.recv(&mut buf) => r?,
            _ = shutdown.changed() => return Ok(()),
        };
        if rng.gen_bool(loss) {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let _ = out.send(&buf[..n]).await;
        relayed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diode::frame::{self, FrameType, Header, Reason};

    fn frame_n(i: u64, size: usize) -> Vec<u8> {
        let body = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(size));
        frame::encode(
            &Header {
                frame_type: FrameType::Request,
                session: 9,
                sequence: i,
            },
            body.as_bytes(),
        )
    }

    /// Sender → lossy relay (1 % loss) → receiver on loopback: every frame arrives intact and in
    /// a verifiable state, losses happened and FEC repaired them.
    #[tokio::test]
    async fn frames_cross_a_lossy_link_and_fec_repairs_the_losses() {
        let cfg = LinkConfig {
            rate_bits_per_sec: Some(400_000_000),
            gap_timeout: Duration::from_secs(5),
            ..LinkConfig::default()
        };
        let rx_sock = socket("127.0.0.1:0".parse().unwrap(), None, &cfg).unwrap();
        let rx_addr = rx_sock.local_addr().unwrap();
        let relay_in = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay_in.local_addr().unwrap();
        let tx_sock = socket("127.0.0.1:0".parse().unwrap(), Some(relay_addr), &cfg).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(lossy_relay(
            relay_in,
            rx_addr,
            0.01,
            5,
            dropped.clone(),
            stop.clone(),
        ));
        let (deliver, mut got) = mpsc::channel(4096);
        let rstats = Arc::new(LinkStats::default());
        tokio::spawn(run_receiver(
            rx_sock,
            cfg.clone(),
            deliver,
            rstats.clone(),
            stop.clone(),
        ));
        let (frames, frames_rx) = mpsc::channel(cfg.queue);
        let tstats = Arc::new(LinkStats::default());
        let sender = tokio::spawn(run_sender(
            tx_sock,
            cfg.clone(),
            77,
            frames_rx,
            tstats.clone(),
            stop.clone(),
        ));
        let n = 1000u64;
        let sent: Vec<Vec<u8>> = (0..n)
            .map(|i| frame_n(i, (i as usize * 37) % 3000))
            .collect();
        for f in &sent {
            frames.send(f.clone()).await.unwrap();
        }
        drop(frames);
        sender.await.unwrap().unwrap();
        let mut received = Vec::new();
        while received.len() < n as usize {
            match tokio::time::timeout(Duration::from_secs(10), got.recv()).await {
                Ok(Some(f)) => received.push(f),
                _ => break,
            }
        }
        let _ = stop_tx.send(true);
        let s = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert!(s(&dropped) > 0, "the relay dropped datagrams");
        assert!(s(&rstats.symbols_recovered) > 0, "FEC repaired losses");
        assert_eq!(s(&rstats.objects_lost), 0);
        assert_eq!(
            received.len(),
            n as usize,
            "every frame arrived: {rstats:?}"
        );
        assert_eq!(received, sent, "in order and intact");
        assert!(received.iter().all(|f| frame::verify(f) == Reason::Accept));
        assert!(
            s(&tstats.objects_sent) < n,
            "frames were batched into objects"
        );
    }

    #[tokio::test]
    async fn a_fully_lost_object_is_a_counted_gap_and_later_ones_still_arrive() {
        let cfg = LinkConfig {
            gap_timeout: Duration::from_millis(200),
            heartbeat: Duration::from_millis(50),
            batch_bytes: 1,
            ..LinkConfig::default()
        };
        let rx_sock = socket("127.0.0.1:0".parse().unwrap(), None, &cfg).unwrap();
        let rx_addr = rx_sock.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (deliver, mut got) = mpsc::channel(16);
        let rstats = Arc::new(LinkStats::default());
        tokio::spawn(run_receiver(
            rx_sock,
            cfg.clone(),
            deliver,
            rstats.clone(),
            stop.clone(),
        ));
        // Send objects 0 and 2 by hand; object 1 never arrives.
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        tx.connect(rx_addr).await.unwrap();
        let st = LinkStats::default();
        let mut pacer = Pacer {
            rate: None,
            next: Instant::now(),
        };
        for seq in [0u64, 2] {
            send_object(&tx, &cfg, 5, seq, &frame_n(seq, 10), &mut pacer, &st)
                .await
                .unwrap();
        }
        let a = got.recv().await.unwrap();
        let b = got.recv().await.unwrap();
        assert_eq!((a, b), (frame_n(0, 10), frame_n(2, 10)));
        tokio::time::sleep(Duration::from_millis(600)).await;
        send_heartbeat(&tx, &cfg, 5, 3, &st).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rstats.objects_lost.load(Ordering::Relaxed), 1);
        // Garbage and a mismatching heartbeat are counted, not fatal.
        tx.send(b"not a datagram").await.unwrap();
        let other = LinkConfig {
            mtu: 9000,
            ..cfg.clone()
        };
        send_heartbeat(&tx, &other, 5, 3, &st).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rstats.datagrams_malformed.load(Ordering::Relaxed) >= 1);
        assert_eq!(rstats.config_mismatches.load(Ordering::Relaxed), 1);
        let _ = stop_tx.send(true);
    }

    /// A datagram numbered far ahead (up to `u64::MAX`) neither panics the receiver nor stalls
    /// it: the gap is given up in one step and counted once per missing object.
    #[tokio::test]
    async fn a_sequence_jump_is_one_counted_gap() {
        let cfg = LinkConfig {
            gap_timeout: Duration::from_millis(100),
            batch_bytes: 1,
            ..LinkConfig::default()
        };
        let rx_sock = socket("127.0.0.1:0".parse().unwrap(), None, &cfg).unwrap();
        let rx_addr = rx_sock.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (deliver, mut got) = mpsc::channel(16);
        let rstats = Arc::new(LinkStats::default());
        tokio::spawn(run_receiver(
            rx_sock,
            cfg.clone(),
            deliver,
            rstats.clone(),
            stop.clone(),
        ));
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        tx.connect(rx_addr).await.unwrap();
        let st = LinkStats::default();
        let mut pacer = Pacer {
            rate: None,
            next: Instant::now(),
        };
        for seq in [0u64, 1_000_000, u64::MAX] {
            send_object(&tx, &cfg, 5, seq, &frame_n(seq % 7, 10), &mut pacer, &st)
                .await
                .unwrap();
            assert_eq!(
                tokio::time::timeout(Duration::from_secs(2), got.recv())
                    .await
                    .unwrap()
                    .unwrap(),
                frame_n(seq % 7, 10),
                "object {seq} delivered"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let lost = rstats.objects_lost.load(Ordering::Relaxed);
        // 999 999 between the first two, u64::MAX − 1 000 001 before the last (saturating).
        assert!(lost >= 999_999, "{lost}");
        let _ = stop_tx.send(true);
    }

    #[test]
    fn objects_split_into_whole_frames_only() {
        let a = frame_n(1, 5);
        let b = frame_n(2, 50);
        let mut o = a.clone();
        o.extend_from_slice(&b);
        assert_eq!(split_frames(&o).unwrap(), vec![&a[..], &b[..]]);
        assert!(split_frames(&o[..o.len() - 1]).is_none());
        assert!(split_frames(&o[..10]).is_none());
        assert_eq!(split_frames(&[]).unwrap().len(), 0);
    }

    #[test]
    fn link_headers_round_trip_and_bad_ones_are_refused() {
        let h = Head {
            kind: KIND_DATA,
            repair: true,
            session: 3,
            seq: 4,
            len: 5,
            sha256: [7; 32],
        };
        let mut d = Vec::new();
        put_head(&mut d, &h);
        assert_eq!(d.len(), LINK_HEADER);
        assert_eq!(get_head(&d), Some(h));
        for i in [0usize, 5, 6, 28] {
            let mut e = d.clone();
            e[i] ^= 0x40;
            assert_eq!(get_head(&e), None, "byte {i}");
        }
        assert_eq!(get_head(&d[..63]), None);
        assert_eq!(LinkConfig::default().symbol_budget(), 1500 - 28 - 64 - 4);
    }
}
