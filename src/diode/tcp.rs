//! The TCP link: frames back to back on a TCP connection, for two halves on separate boxes
//! behind a firewall that allows one connection in one direction.
//!
//! Frames are self-delimiting (their header carries the payload length), so the stream is just
//! the frames. The receiving end only reads: it shuts down its writing side at once, so nothing
//! flows back but TCP's own acknowledgements. The receiver bounds each frame by
//! `64 + MAX_PAYLOAD` before reading it and checks nothing else (the receiving half verifies
//! every frame); a length beyond the bound ends the connection. The sender reconnects with
//! backoff; frames queued while it is disconnected wait in its bounded queue (the frame being
//! written when a connection breaks is lost and counted, the link does not retransmit it).
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::frame::{HEADER_LEN, MAX_PAYLOAD};

/// Counters of one end of a TCP link.
#[derive(Debug, Default)]
pub struct TcpStats {
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    /// Frames lost with a broken connection (sender) or cut short (receiver).
    pub frames_lost: AtomicU64,
    /// Connections refused or ended for a frame length beyond the bound.
    pub oversized: AtomicU64,
    pub connections: AtomicU64,
}

/// The sending end: connects to `to` (reconnecting with backoff up to 5 s) and writes every
/// frame from `frames`. Returns when `frames` closes (after writing what was queued) or on
/// `shutdown`.
pub async fn run_sender(
    to: SocketAddr,
    mut frames: mpsc::Receiver<Vec<u8>>,
    stats: Arc<TcpStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let f = tokio::select! {
            f = frames.recv() => match f {
                Some(f) => f,
                None => {
                    if let Some(mut c) = conn.take() {
                        let _ = c.shutdown().await;
                    }
                    return;
                }
            },
            _ = shutdown.changed() => return,
        };
        loop {
            if conn.is_none() {
                match TcpStream::connect(to).await {
                    Ok(c) => {
                        let _ = c.set_nodelay(true);
                        stats.connections.fetch_add(1, Ordering::Relaxed);
                        conn = Some(c);
                        backoff = Duration::from_millis(50);
                    }
                    Err(e) => {
                        tracing::warn!(%to, "diode tcp link: cannot connect: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.changed() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected");
            match c.write_all(&f).await {
                Ok(()) => {
                    stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(%to, "diode tcp link: connection broke, a frame is lost: {e}");
                    stats.frames_lost.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
            }
            break;
        }
    }
}

/// The receiving end: accepts connections on `listener` one at a time and delivers every
/// frame read to `deliver`. Returns on `shutdown` or when `deliver` closes.
pub async fn run_receiver(
    listener: TcpListener,
    deliver: mpsc::Sender<Vec<u8>>,
    stats: Arc<TcpStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut c = tokio::select! {
            a = listener.accept() => match a {
                Ok((c, _)) => c,
                Err(e) => {
                    tracing::warn!("diode tcp link: accept: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        // One way: nothing is ever written back.
        let (mut r, mut w) = c.split();
        let _ = w.shutdown().await;
        loop {
            let mut head = [0u8; HEADER_LEN];
            let read = tokio::select! {
                r = r.read_exact(&mut head) => r,
                _ = shutdown.changed() => return,
            };
            if read.is_err() {
                break; // connection closed (between frames or within a header)
            }
            let len = u32::from_be_bytes([head[24], head[25], head[26], head[27]]);
            if len > MAX_PAYLOAD {
                stats.oversized.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    len,
                    "diode tcp link: frame beyond the size bound, connection ended"
                );
                break;
            }
            let mut f = vec![0u8; HEADER_LEN + len as usize];
            f[..HEADER_LEN].copy_from_slice(&head);
            if r.read_exact(&mut f[HEADER_LEN..]).await.is_err() {
                stats.frames_lost.fetch_add(1, Ordering::Relaxed);
                break;
            }
            stats.frames_received.fetch_add(1, Ordering::Relaxed);
            if deliver.send(f).await.is_err() {
                return;
            }
        }
    }
}

/// The in-process link: a bounded channel (both halves in one process).
pub fn in_process(capacity: usize) -> (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>) {
    mpsc::channel(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diode::frame::{self, FrameType, Header, Reason};

    fn f(i: u64) -> Vec<u8> {
        frame::encode(
            &Header {
                frame_type: FrameType::Response,
                session: 1,
                sequence: i,
            },
            format!("{{\"i\":{i}}}").as_bytes(),
        )
    }

    #[tokio::test]
    async fn frames_cross_in_order_and_an_oversized_length_ends_the_connection() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (deliver, mut got) = mpsc::channel(64);
        let rs = Arc::new(TcpStats::default());
        tokio::spawn(run_receiver(l, deliver, rs.clone(), stop.clone()));
        let (tx, rx) = in_process(64);
        let ss = Arc::new(TcpStats::default());
        let sender = tokio::spawn(run_sender(addr, rx, ss.clone(), stop.clone()));
        for i in 0..100 {
            tx.send(f(i)).await.unwrap();
        }
        drop(tx);
        sender.await.unwrap();
        for i in 0..100 {
            let g = got.recv().await.unwrap();
            assert_eq!(g, f(i));
            assert_eq!(frame::verify(&g), Reason::Accept);
        }
        // A peer announcing a frame beyond the bound is cut off; the receiver keeps serving.
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut bad = f(1);
        bad[24..28].copy_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
        c.write_all(&bad[..HEADER_LEN]).await.unwrap();
        let mut buf = [0u8; 1];
        // The receiver never writes: the read ends with EOF (0) or a reset.
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)));
        assert_eq!(rs.oversized.load(Ordering::Relaxed), 1);
        let mut c2 = TcpStream::connect(addr).await.unwrap();
        c2.write_all(&f(7)).await.unwrap();
        assert_eq!(got.recv().await.unwrap(), f(7));
        let _ = stop_tx.send(true);
    }

    #[tokio::test]
    async fn the_sender_waits_for_the_receiver_and_reconnects() {
        // Reserve an address, start sending before anything listens there.
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let (stop_tx, stop) = watch::channel(false);
        let (tx, rx) = in_process(8);
        let ss = Arc::new(TcpStats::default());
        tokio::spawn(run_sender(addr, rx, ss.clone(), stop.clone()));
        tx.send(f(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let l = TcpListener::bind(addr).await.unwrap();
        let (deliver, mut got) = mpsc::channel(8);
        tokio::spawn(run_receiver(
            l,
            deliver,
            Arc::new(TcpStats::default()),
            stop.clone(),
        ));
        let g = tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await
            .unwrap();
        assert_eq!(g.unwrap(), f(1));
        assert_eq!(ss.connections.load(Ordering::Relaxed), 1);
        let _ = stop_tx.send(true);
    }
}
