//! One test per fault class of the seam (`grenzwacht::fault`, feature `fault-injection`):
//! the store failing, the disk full, the audit log unwritable, an upstream resetting or
//! hanging, a policy layer panicking or stalling, key fetches failing. Each asserts that
//! nothing crosses unchecked (the homeserver behind the guard sees nothing), the sender gets a
//! Matrix error, the fault is counted (metrics) and reported (`/health`, the audit log where it
//! works), and the guard recovers when the fault ends (for the audit log: on restart, by
//! design — the log is never resumed behind an operator's back).
//!
//! The seam is process-wide: the tests run one at a time ([`serial`]).
mod common;

use std::time::Duration;

use common::*;
use grenzwacht::fault::{inject, Fault};
use grenzwacht::keys::SigningKey;
use serde_json::{json, Value};
use tokio::sync::{Mutex, MutexGuard};

const REMOTE: &str = "remote.test";
const ROOM: &str = "!r:remote.test";

async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// A guard with a store file, the audit log, the shipped rules and a guard key, in front of a
/// recording homeserver.
struct Bed {
    p: Pki,
    up: Recorder,
    toml: String,
    key: SigningKey,
    store_path: std::path::PathBuf,
}

async fn bed(extra: &str) -> Bed {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let (_, audit_key) = guard_key_file(&p);
    let store_path = p.dir.path().join("store.db");
    let toml = inbound_toml(
        &p,
        up.addr,
        &format!(
            "[keys]\nverify_pdus = false\nguard_key = \"{k}\"\n[dlp]\npolicies = \"{pol}\"\nwatch_interval_ms = 0\n[store]\npath = \"{st}\"\n[audit]\ndir = \"{a}\"\nkey_file = \"{k}\"\n{extra}",
            k = audit_key.display(),
            pol = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies").display(),
            st = store_path.display(),
            a = p.dir.path().join("audit").display(),
        ),
    );
    Bed {
        p,
        up,
        toml,
        key: SigningKey::generate("t1").unwrap(),
        store_path,
    }
}

impl Bed {
    async fn start(&self) -> RunningGuard {
        let store = grenzwacht::store::Store::open(&self.store_path).unwrap();
        store.set_room_version(ROOM, "10", "test").unwrap();
        let g = start_guard_store(&self.p, &self.toml, store).await;
        for _ in 0..50 {
            if health(&g).await.1["status"] != "starting" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        g
    }

    /// A transaction with one message; `marked` ones carry a marking the rules redact.
    async fn send(&self, g: &RunningGuard, txn: &str, marked: bool) -> Got {
        let text = if marked {
            format!("Einstufung: GEHEIM ({txn})")
        } else {
            format!("hello ({txn})")
        };
        let body = serde_json::to_vec(&json!({
            "origin": REMOTE, "origin_server_ts": 1,
            "pdus": [{"type": "m.room.message", "room_id": ROOM, "sender": "@a:remote.test",
                      "origin_server_ts": 5, "content": {"msgtype": "m.text", "body": text}}],
            "edus": []
        }))
        .unwrap();
        let uri = format!("/_matrix/federation/v1/send/{txn}");
        let hdr = auth(&self.key, REMOTE, TEST_HS1, "PUT", &uri, Some(&body));
        tls_request(
            g.inbound.unwrap(),
            &self.p.ca_path,
            "PUT",
            &uri,
            &[("authorization", hdr)],
            body,
        )
        .await
    }

    /// The guard works: a marked transaction crosses redacted, a plain one intact.
    async fn assert_works(&self, g: &RunningGuard, tag: &str) {
        let before = self.up.seen().len();
        let got = self.send(g, &format!("{tag}-m"), true).await;
        assert_eq!(got.status, 200, "{tag}: {:?}", got.body);
        let got = self.send(g, &format!("{tag}-p"), false).await;
        assert_eq!(got.status, 200, "{tag}: {:?}", got.body);
        let seen = self.up.seen();
        assert_eq!(seen.len(), before + 2, "{tag}");
        let marked = String::from_utf8_lossy(&seen[before].body).to_string();
        assert!(!marked.contains("GEHEIM"), "{tag}: {marked}");
        let plain = String::from_utf8_lossy(&seen[before + 1].body).to_string();
        assert!(plain.contains("hello"), "{tag}: {plain}");
    }

    /// Under a fault: both transactions refused with `status` and a Matrix error, nothing
    /// reaches the homeserver.
    async fn assert_refused(&self, g: &RunningGuard, tag: &str, status: u16) {
        let before = self.up.seen().len();
        for (i, marked) in [true, false].into_iter().enumerate() {
            let got = self.send(g, &format!("{tag}-{i}"), marked).await;
            assert_eq!(got.status, status, "{tag}: {:?}", got.body);
            assert!(!got.errcode().is_empty(), "{tag}: no Matrix error");
        }
        assert_eq!(self.up.seen().len(), before, "{tag}: something crossed");
    }
}

async fn health(g: &RunningGuard) -> (u16, Value) {
    let r = plain_request(g.admin, "GET", "/health", &[], vec![]).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn refusals(g: &RunningGuard, reason: &str) -> f64 {
    let m = metrics(g.admin).await;
    counter(
        &m,
        "grenzwacht_refusals_total",
        &[("direction", "inbound"), ("reason", reason)],
    )
}

/// The audit log's refusal records (what an auditor sees of the fault).
fn refusal_records(b: &Bed) -> Vec<Value> {
    grenzwacht::audit::query::search(
        &b.p.dir.path().join("audit"),
        &grenzwacht::audit::query::Filter::default(),
    )
    .unwrap()
    .into_iter()
    .filter(|r| r["kind"] == "refusal")
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure() {
    let _s = serial().await;
    let b = bed("").await;
    let g = b.start().await;
    b.assert_works(&g, "before").await;
    let n = refusals(&g, "internal").await;
    {
        let _f = inject(Fault::Store);
        b.assert_refused(&g, "store", 503).await;
        let (code, h) = health(&g).await;
        assert_eq!(code, 503, "{h}");
        assert_eq!(h["checks"]["store"]["status"], "failed", "{h}");
        assert!(refusals(&g, "internal").await >= n + 2.0);
    }
    assert!(
        refusal_records(&b)
            .iter()
            .filter(|r| r["data"]["status"] == 503 && r["data"]["reason"] == "internal")
            .count()
            >= 2,
        "the refusals are in the audit log"
    );
    assert_eq!(health(&g).await.0, 200);
    b.assert_works(&g, "after").await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full() {
    let _s = serial().await;
    let b = bed("").await;
    let g = b.start().await;
    b.assert_works(&g, "before").await;
    {
        let _f = inject(Fault::DiskFull);
        b.assert_refused(&g, "full", 503).await;
        let (code, h) = health(&g).await;
        assert_eq!(code, 503, "{h}");
        assert_eq!(h["checks"]["store"]["status"], "failed", "{h}");
        assert!(
            h["checks"]["store"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("full"),
            "{h}"
        );
    }
    // Space is back. The store recovers at once; the audit log stays closed until restart if
    // a write failed (it is never resumed silently) — nothing crosses meanwhile.
    let (_, h) = health(&g).await;
    assert_eq!(h["checks"]["store"]["status"], "ok", "{h}");
    if h["checks"]["audit"]["status"] == "failed" {
        b.assert_refused(&g, "audit-closed", 503).await;
    }
    g.stop().await;
    let g = b.start().await;
    assert_eq!(health(&g).await.0, 200);
    b.assert_works(&g, "restarted").await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_unwritable() {
    let _s = serial().await;
    let b = bed("").await;
    let g = b.start().await;
    b.assert_works(&g, "before").await;
    {
        let _f = inject(Fault::AuditUnwritable);
        b.assert_refused(&g, "audit", 503).await;
        let (code, h) = health(&g).await;
        assert_eq!(code, 503, "{h}");
        assert_eq!(h["checks"]["audit"]["status"], "failed", "{h}");
        let m = metrics(g.admin).await;
        assert_eq!(counter(&m, "grenzwacht_audit_healthy", &[]), 0.0, "{m}");
    }
    // Closed until restart (by design); then the log continues and everything crosses.
    b.assert_refused(&g, "still-closed", 503).await;
    g.stop().await;
    let g = b.start().await;
    assert_eq!(health(&g).await.0, 200);
    b.assert_works(&g, "restarted").await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset() {
    let _s = serial().await;
    let b = bed("").await;
    let g = b.start().await;
    b.assert_works(&g, "before").await;
    let m0 = metrics(g.admin).await;
    let failures = |m: &str| {
        counter(
            m,
            "grenzwacht_upstream_failures_total",
            &[("upstream", "protected"), ("kind", "request")],
        )
    };
    {
        let _f = inject(Fault::UpstreamReset);
        b.assert_refused(&g, "reset", 502).await;
        let (code, h) = health(&g).await;
        assert_eq!((code, h["status"].as_str()), (200, Some("degraded")), "{h}");
        assert_eq!(h["checks"]["upstreams"]["status"], "degraded", "{h}");
        let m = metrics(g.admin).await;
        assert_eq!(failures(&m), failures(&m0) + 2.0, "{m}");
    }
    b.assert_works(&g, "after").await;
    assert_eq!(health(&g).await.1["status"], "ok");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hang() {
    let _s = serial().await;
    let b = bed("[outbound]\nfirst_byte_timeout_ms = 800\nrequest_timeout_ms = 3000\n").await;
    let g = b.start().await;
    b.assert_works(&g, "before").await;
    let timeouts = |m: &str| {
        counter(
            m,
            "grenzwacht_upstream_timeouts_total",
            &[("upstream", "protected"), ("phase", "first_byte")],
        )
    };
    let t0 = timeouts(&metrics(g.admin).await);
    {
        let _f = inject(Fault::UpstreamHang);
        b.assert_refused(&g, "hang", 504).await;
        assert_eq!(timeouts(&metrics(g.admin).await), t0 + 2.0);
        let (_, h) = health(&g).await;
        assert_eq!(h["checks"]["upstreams"]["status"], "degraded", "{h}");
    }
    b.assert_works(&g, "after").await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_panic() {
    let _s = serial().await;
    let b = bed("").await;
    let g = b.start().await;
    b.assert_works(&g, "before").await;
    let n = refusals(&g, "internal").await;
    {
        let _f = inject(Fault::PolicyPanic);
        b.assert_refused(&g, "panic", 500).await;
        assert_eq!(refusals(&g, "internal").await, n + 2.0);
    }
    assert!(
        refusal_records(&b)
            .iter()
            .filter(|r| r["data"]["status"] == 500 && r["data"]["reason"] == "internal")
            .count()
            >= 2,
        "the refusals are in the audit log"
    );
    b.assert_works(&g, "after").await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_timeout() {
    let _s = serial().await;
    let b = bed("[limits]\ndecision_timeout_ms = 500\n").await;
    let g = b.start().await;
    b.assert_works(&g, "before").await;
    let n = refusals(&g, "decision_timeout").await;
    {
        let _f = inject(Fault::PolicySlow);
        b.assert_refused(&g, "slow", 503).await;
        assert_eq!(refusals(&g, "decision_timeout").await, n + 2.0);
    }
    b.assert_works(&g, "after").await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_fetch_failure() {
    let _s = serial().await;
    // Inbound X-Matrix verification on: the guard fetches the sender's keys itself, over its
    // outbound path, from the remote server (a recorder serving them over TLS).
    let p = pki();
    let remote_key = SigningKey::generate("r1").unwrap();
    let remote = recorder(Some(acceptor(&p)), key_server_answer(REMOTE, &remote_key)).await;
    let up = recorder(None, default_answer()).await;
    let toml = inbound_toml(&p, up.addr, "")
        .replace("verify_signatures = false", "verify_signatures = true")
        + &format!(
            "[outbound]\nroots = [\"{ca}\"]\n[[route]]\nserver_name = \"{REMOTE}\"\naddress = \"{addr}\"\ntls_name = \"127.0.0.1\"\n[discovery]\nenabled = false\n",
            ca = p.ca_path.display(),
            addr = remote.addr
        );
    let g = start_guard(&p, &toml).await;
    let send = |txn: &str| {
        let body = serde_json::to_vec(
            &json!({"origin": REMOTE, "origin_server_ts": 1, "pdus": [], "edus": []}),
        )
        .unwrap();
        let uri = format!("/_matrix/federation/v1/send/{txn}");
        let hdr = auth(&remote_key, REMOTE, TEST_HS1, "PUT", &uri, Some(&body));
        let (addr, ca) = (g.inbound.unwrap(), p.ca_path.clone());
        async move { tls_request(addr, &ca, "PUT", &uri, &[("authorization", hdr)], body).await }
    };
    {
        let _f = inject(Fault::KeyFetch);
        for i in 0..2 {
            let got = send(&format!("k{i}")).await;
            assert_eq!(got.status, 401, "{:?}", got.body);
            assert_eq!(got.errcode(), "M_UNAUTHORIZED");
        }
        assert!(up.seen().is_empty(), "nothing crossed unauthenticated");
        let (code, h) = health(&g).await;
        assert_eq!(code, 200, "{h}");
        assert_eq!(h["checks"]["keys"]["status"], "degraded", "{h}");
        assert!(refusals(&g, "auth").await >= 2.0);
    }
    let mut got = send("k-after").await;
    // A server's keys are fetched at most once per minute (`keys::remote::REFETCH_INTERVAL`),
    // failed attempts included: recovery takes up to a minute.
    for i in 0..70 {
        if got.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        got = send(&format!("k-after{i}")).await;
    }
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(up.seen().len(), 1);
    assert_eq!(health(&g).await.1["checks"]["keys"]["status"], "ok");
    g.stop().await;
}
