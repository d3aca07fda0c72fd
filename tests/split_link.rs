//! The split appliance's link ends (`grenzwacht::split`), without homeservers:
//! - requests and answers are matched across a pair of one-way links, also out of order;
//! - a frame that fails verification never reaches the receiving half's federation side —
//!   neither through the simulated verifier card (`hw/REGISTERS.md`) nor, without a card,
//!   past the reference verifier of the receive loop: every crafted invalid vector of
//!   `diode::vectors` is tried;
//! - an answer that never comes is a timeout, counted; gaps in the other half's sequence are
//!   counted.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grenzwacht::diode::device::{gate, CardDriver, SimCard};
use grenzwacht::diode::frame::{self, FrameType, Header, Reason};
use grenzwacht::diode::vectors;
use grenzwacht::split::link::{self, CallError, Handler, Link};
use grenzwacht::split::{wire, Half};
use tokio::sync::{mpsc, watch};

/// A handler that counts the requests reaching "the federation side" and echoes the path.
fn counting(calls: Arc<AtomicU64>) -> Handler {
    Arc::new(move |_proof, req: wire::Request| {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            // Answer later for early requests, so answers come back out of order.
            if req.path.ends_with("/slow") {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            wire::Response {
                id: req.id,
                status: 200,
                body: Some(serde_json::json!({ "path": req.path, "dest": req.destination })),
            }
        })
    })
}

fn request(path: &str) -> wire::Request {
    wire::Request {
        id: 0,
        method: "GET".into(),
        path: path.into(),
        destination: "127.0.0.1:8448".into(),
        auth: None,
        body: None,
    }
}

/// HIGH and LOW joined in process: HIGH's out → LOW's receive loop, LOW's out → HIGH's.
struct Pair {
    high: Arc<Link>,
    low: Arc<Link>,
    low_calls: Arc<AtomicU64>,
    _sd: watch::Sender<bool>,
}

fn pair(timeout: Duration) -> Pair {
    let (h_tx, h_rx) = mpsc::channel(64);
    let (l_tx, l_rx) = mpsc::channel(64);
    let high = Arc::new(Link::new(Half::High, h_tx, timeout, 16));
    let low = Arc::new(Link::new(Half::Low, l_tx, timeout, 16));
    let (sd, rx) = watch::channel(false);
    let low_calls = Arc::new(AtomicU64::new(0));
    tokio::spawn(link::receive(
        low.clone(),
        h_rx,
        counting(low_calls.clone()),
        rx.clone(),
    ));
    tokio::spawn(link::receive(
        high.clone(),
        l_rx,
        counting(Arc::default()),
        rx,
    ));
    Pair {
        high,
        low,
        low_calls,
        _sd: sd,
    }
}

#[tokio::test]
async fn requests_and_answers_are_matched_across_the_pair() {
    let p = pair(Duration::from_secs(5));
    let slow = {
        let h = p.high.clone();
        tokio::spawn(async move { h.call(request("/a/slow")).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (fast, _) = p.high.call(request("/b/fast")).await.unwrap();
    let (slow, _) = slow.await.unwrap().unwrap();
    assert_eq!(fast.body.unwrap()["path"], "/b/fast");
    assert_eq!(slow.body.unwrap()["path"], "/a/slow");
    // And the other way.
    let (r, _) = p.low.call(request("/from/low")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.unwrap()["path"], "/from/low");
    assert_eq!(p.low_calls.load(Ordering::SeqCst), 2);
    assert_eq!(p.high.stats.responses_matched.load(Ordering::Relaxed), 2);
    assert_eq!(p.high.pending(), 0);
}

#[tokio::test]
async fn a_request_without_answer_times_out_and_is_counted() {
    // HIGH's frames go nowhere (the receiver is kept but never read).
    let (tx, _rx) = mpsc::channel(64);
    let high = Link::new(Half::High, tx, Duration::from_millis(100), 4);
    let e = high.call(request("/x")).await.unwrap_err();
    assert!(matches!(e, CallError::Timeout(_)), "{e}");
    assert_eq!(high.stats.timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(high.pending(), 0, "a timed-out request is forgotten");
}

#[tokio::test]
async fn a_body_that_does_not_conform_is_not_sent() {
    let (tx, mut rx) = mpsc::channel(64);
    let high = Link::new(Half::High, tx, Duration::from_millis(100), 4);
    let mut r = request("/x");
    r.body = Some(serde_json::json!({"body": "two\nlines"}));
    let e = high.call(r).await.unwrap_err();
    assert!(matches!(e, CallError::NonConforming(_)), "{e}");
    assert!(rx.try_recv().is_err(), "nothing was framed");
}

/// A valid request frame of a foreign session.
fn request_frame(seq: u64, path: &str) -> Vec<u8> {
    let mut r = request(path);
    r.id = 1000 + seq;
    frame::encode(
        &Header {
            frame_type: FrameType::Request,
            session: 77,
            sequence: seq,
        },
        &r.encode().unwrap(),
    )
}

fn invalid_vectors() -> Vec<vectors::Vector> {
    let v: Vec<_> = vectors::crafted()
        .into_iter()
        .filter(|v| v.expected != Reason::Accept)
        .collect();
    assert!(v.len() >= 200, "{} crafted invalid vectors", v.len());
    v
}

/// Feeds `frames` to a receive loop (through the simulated card if `card`) and returns how many
/// reached the federation side, the receive loop's link and the card's reject count.
async fn feed(frames: Vec<Vec<u8>>, card: bool) -> (u64, Arc<Link>, u64) {
    let (out_tx, mut out_rx) = mpsc::channel(1024);
    let low = Arc::new(Link::new(Half::Low, out_tx, Duration::from_secs(5), 64));
    let calls = Arc::new(AtomicU64::new(0));
    let (in_tx, in_rx) = mpsc::channel(1024);
    let (_sd, sd_rx) = watch::channel(false);
    let (card_task, frames_rx) = if card {
        let (tx, rx) = mpsc::channel(1024);
        let driver = CardDriver::open(SimCard::new(1 << 25, 64)).unwrap();
        (Some(tokio::spawn(gate(driver, in_rx, tx))), rx)
    } else {
        (None, in_rx)
    };
    let recv = tokio::spawn(link::receive(
        low.clone(),
        frames_rx,
        counting(calls.clone()),
        sd_rx,
    ));
    for f in frames {
        in_tx.send(f).await.unwrap();
    }
    drop(in_tx);
    let rejected = match card_task {
        Some(t) => {
            let mut d = t.await.unwrap();
            d.counters()[1..].iter().map(|&c| c as u64).sum()
        }
        None => 0,
    };
    recv.await.unwrap();
    // Answers of accepted requests were framed back.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut answers = 0;
    while out_rx.try_recv().is_ok() {
        answers += 1;
    }
    assert_eq!(
        answers,
        calls.load(Ordering::SeqCst),
        "one answer per request handled"
    );
    (calls.load(Ordering::SeqCst), low, rejected)
}

#[tokio::test]
async fn invalid_frames_never_reach_the_federation_side_through_the_card() {
    let bad = invalid_vectors();
    let n_bad = bad.len() as u64;
    let mut frames: Vec<Vec<u8>> = vec![request_frame(0, "/first")];
    frames.extend(bad.into_iter().map(|v| v.bytes));
    frames.push(request_frame(1, "/last"));
    let (calls, low, card_rejected) = feed(frames, true).await;
    assert_eq!(calls, 2, "only the two valid requests were handled");
    assert_eq!(
        card_rejected, n_bad,
        "the card rejected every invalid vector"
    );
    assert_eq!(
        low.stats.frames_rejected.load(Ordering::Relaxed),
        0,
        "nothing invalid got past the card to the reference verifier"
    );
}

#[tokio::test]
async fn invalid_frames_never_reach_the_federation_side_without_a_card() {
    let bad = invalid_vectors();
    let n_bad = bad.len() as u64;
    let mut frames: Vec<Vec<u8>> = vec![request_frame(0, "/first")];
    frames.extend(bad.into_iter().map(|v| v.bytes));
    frames.push(request_frame(1, "/last"));
    let (calls, low, _) = feed(frames, false).await;
    assert_eq!(calls, 2);
    assert_eq!(low.stats.frames_rejected.load(Ordering::Relaxed), n_bad);
}

#[tokio::test]
async fn valid_frames_that_are_no_request_are_refused_and_gaps_counted() {
    let valid_other: Vec<Vec<u8>> = vectors::crafted()
        .into_iter()
        .filter(|v| v.expected == Reason::Accept)
        .map(|v| v.bytes)
        .collect();
    assert!(!valid_other.is_empty());
    // A request frame after a jump in the sequence: 3 frames missing.
    let mut frames = vec![request_frame(0, "/a")];
    frames.push(request_frame(4, "/b"));
    let n_other = valid_other.len();
    frames.extend(valid_other);
    let (calls, low, _) = feed(frames, false).await;
    // The crafted valid vectors carry JSON objects that are no request of the split protocol
    // (or requests of another session, which the loop counts as a restart).
    assert!(calls >= 2, "{calls}");
    assert!(
        calls < 2 + n_other as u64,
        "crafted payloads are not handled as requests"
    );
    assert!(low.stats.gaps.load(Ordering::Relaxed) >= 3);
}
