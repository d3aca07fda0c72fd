//! Diode frames and the one-way UDP link.
//!
//! * `verify/*`: frames per second through the reference verifier (`diode::frame::verify`) for
//!   a 2 KiB and a 64 KiB frame, against the baseline `sha256/*`: hashing the same payload
//!   alone (the verifier hashes it too, so the ratio is the price of the syntax checks).
//! * `udp/*`: goodput of the one-way link on loopback — 4 MiB of frames per iteration through
//!   sender → lossy relay (1 % of datagrams dropped) → receiver, 10 % repair symbols, datagrams
//!   of an MTU of 1500 and of 9000 — against the baseline `udp_raw/*`: the same bytes as plain
//!   datagrams of the same size straight to a receiving socket (no coding, no relay, no loss).
//!   Throughput is frame bytes delivered.
//!
//! Run: `cargo bench --bench diode` (or `-- --quick`). Loopback only.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use grenzwacht::diode::frame::{self, FrameType, Header};
use grenzwacht::diode::udp::{self, LinkConfig, LinkStats};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

fn frame_of(size: usize, i: u64) -> Vec<u8> {
    let pad = size.saturating_sub(40);
    let body = format!(
        "{{\"i\":{i},\"pad\":\"{}\"}}",
        "é".repeat(pad / 4) + &"x".repeat(pad - pad / 4 * 2)
    );
    frame::encode(
        &Header {
            frame_type: FrameType::Request,
            session: 1,
            sequence: i,
        },
        body.as_bytes(),
    )
}

fn verifier(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    for size in [2048usize, 65_536] {
        let f = frame_of(size, 1);
        assert_eq!(frame::verify(&f), frame::Reason::Accept);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("verify/{size}"), |b| {
            b.iter(|| frame::verify(black_box(&f)))
        });
        let payload = f[frame::HEADER_LEN..].to_vec();
        g.bench_function(format!("sha256/{size}"), |b| {
            b.iter(|| Sha256::digest(black_box(&payload)))
        });
    }
    g.finish();
}

/// A running link with its lossy relay; frames go in at `tx`, come out at `rx`.
struct Link {
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<Vec<u8>>,
    stats: Arc<LinkStats>,
    dropped: Arc<AtomicU64>,
    _stop: watch::Sender<bool>,
}

async fn link(mtu: u16) -> Link {
    let cfg = LinkConfig {
        mtu,
        repair_percent: 10,
        rate_bits_per_sec: std::env::var("GW_BENCH_RATE")
            .ok()
            .and_then(|r| r.parse().ok())
            .or(Some(3_000_000_000)),
        gap_timeout: Duration::from_secs(5),
        ..LinkConfig::default()
    };
    let rx_sock = udp::socket("127.0.0.1:0".parse().unwrap(), None, &cfg).unwrap();
    let rx_addr = rx_sock.local_addr().unwrap();
    let relay = udp::socket("127.0.0.1:0".parse().unwrap(), None, &cfg).unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let tx_sock = udp::socket("127.0.0.1:0".parse().unwrap(), Some(relay_addr), &cfg).unwrap();
    let (stop_tx, stop) = watch::channel(false);
    let dropped = Arc::new(AtomicU64::new(0));
    tokio::spawn(udp::lossy_relay(
        relay,
        rx_addr,
        0.01,
        3,
        dropped.clone(),
        stop.clone(),
    ));
    let (deliver, rx) = mpsc::channel(1 << 16);
    let stats = Arc::new(LinkStats::default());
    tokio::spawn(udp::run_receiver(
        rx_sock,
        cfg.clone(),
        deliver,
        stats.clone(),
        stop.clone(),
    ));
    let (tx, frames) = mpsc::channel(1 << 16);
    tokio::spawn(udp::run_sender(
        tx_sock,
        cfg,
        1,
        frames,
        Arc::new(LinkStats::default()),
        stop,
    ));
    Link {
        tx,
        rx,
        stats,
        dropped,
        _stop: stop_tx,
    }
}

fn udp_link(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let frames: Vec<Vec<u8>> = (0..64).map(|i| frame_of(65_536 - 64, i)).collect();
    let total: usize = frames.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("udp");
    g.throughput(Throughput::Bytes(total as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for mtu in [1500u16, 9000] {
        let mut l = rt.block_on(link(mtu));
        g.bench_function(format!("fec_loss1/{mtu}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for f in &frames {
                            l.tx.send(f.clone()).await.unwrap();
                        }
                        for _ in 0..frames.len() {
                            tokio::time::timeout(Duration::from_secs(30), l.rx.recv())
                                .await
                                .expect("frames delivered (a gap would stall the benchmark)")
                                .unwrap();
                        }
                    }
                    start.elapsed()
                })
            })
        });
        eprintln!(
            "udp/{mtu}: relay dropped {} datagrams, FEC recovered {} symbols, objects lost {}",
            l.dropped.load(Ordering::Relaxed),
            l.stats.symbols_recovered.load(Ordering::Relaxed),
            l.stats.objects_lost.load(Ordering::Relaxed)
        );
        // Baseline: the same bytes as plain datagrams of the same size.
        let size = mtu as usize - udp::IP_UDP_OVERHEAD;
        let (sock_rx, sock_tx) = rt.block_on(async {
            let cfg = LinkConfig::default();
            let r = udp::socket("127.0.0.1:0".parse().unwrap(), None, &cfg).unwrap();
            let t = udp::socket(
                "127.0.0.1:0".parse().unwrap(),
                Some(r.local_addr().unwrap()),
                &cfg,
            )
            .unwrap();
            (Arc::new(r), t)
        });
        let got = Arc::new(AtomicU64::new(0));
        {
            let (r, got) = (sock_rx.clone(), got.clone());
            rt.spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = r.recv(&mut buf).await {
                    got.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
        let bytes: Vec<u8> = frames.concat();
        g.bench_function(format!("udp_raw/{mtu}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for chunk in bytes.chunks(size) {
                            sock_tx.send(chunk).await.unwrap();
                        }
                    }
                    start.elapsed()
                })
            })
        });
        black_box(got.load(Ordering::Relaxed));
    }
    g.finish();
}

criterion_group!(benches, verifier, udp_link);
criterion_main!(benches);
