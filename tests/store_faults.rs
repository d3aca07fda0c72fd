//! Real faults of the store file under a running guard — another process holding the write
//! lock, the immutable attribute, the file overwritten with random bytes, a full disk (a tmpfs
//! of a few MiB): `/health` reports each (503, `store` failed, the reason), `grenzwacht check`
//! reports each without writing, transactions that need the store are refused with a Matrix
//! error and nothing reaches the homeserver, and the guard recovers when the fault ends. A
//! store file that is no database stops `serve` at start with exit 2 and a diagnosis.
//!
//! Needs root (chattr, mount): the CI machines run the suite as root.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use grenzwacht::keys::SigningKey;
use serde_json::{json, Value};

const REMOTE: &str = "remote.test";

struct Setup {
    p: Pki,
    up: Recorder,
    store_path: PathBuf,
    toml: String,
    config_file: PathBuf,
    key: SigningKey,
}

async fn setup(store_dir: &Path) -> Setup {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let (_, audit_key) = guard_key_file(&p);
    let store_path = store_dir.join("store.db");
    let extra = format!(
        "[keys]\nverify_pdus = false\nguard_key = \"{}\"\n[dlp]\npolicies = \"{}\"\nwatch_interval_ms = 0\n[store]\npath = \"{}\"\n[audit]\ndir = \"{}\"\nkey_file = \"{}\"\n",
        audit_key.display(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies").display(),
        store_path.display(),
        p.dir.path().join("audit").display(),
        audit_key.display()
    );
    let toml = inbound_toml(&p, up.addr, &extra);
    let config_file = p.dir.path().join("check.toml");
    std::fs::write(&config_file, &toml).unwrap();
    Setup {
        p,
        up,
        store_path,
        toml,
        config_file,
        key: SigningKey::generate("t1").unwrap(),
    }
}

/// The room of the test events, its version known to the store (a redaction needs it).
const ROOM: &str = "!r:remote.test";

/// A transaction with one message; `marked`: it carries a marking the shipped rules redact,
/// so its decision must be stored (a retry must get the redaction too).
fn body(n: u32, marked: bool) -> Vec<u8> {
    let text = if marked {
        format!("Einstufung: GEHEIM, message {n}")
    } else {
        format!("message {n}")
    };
    serde_json::to_vec(&json!({
        "origin": REMOTE, "origin_server_ts": 1,
        "pdus": [{"type": "m.room.message", "room_id": ROOM, "sender": "@a:remote.test",
                  "origin_server_ts": 5, "content": {"msgtype": "m.text", "body": text}}],
        "edus": []
    }))
    .unwrap()
}

fn open_store(s: &Setup) -> grenzwacht::store::Store {
    let store = grenzwacht::store::Store::open(&s.store_path).unwrap();
    store.set_room_version(ROOM, "10", "test").unwrap();
    store
}

async fn send(s: &Setup, g: &RunningGuard, txn: &str, n: u32, marked: bool) -> Got {
    let b = body(n, marked);
    let uri = format!("/_matrix/federation/v1/send/{txn}");
    let hdr = auth(&s.key, REMOTE, TEST_HS1, "PUT", &uri, Some(&b));
    tls_request(
        g.inbound.unwrap(),
        &s.p.ca_path,
        "PUT",
        &uri,
        &[("authorization", hdr)],
        b,
    )
    .await
}

async fn health(g: &RunningGuard) -> (u16, Value) {
    let r = plain_request(g.admin, "GET", "/health", &[], vec![]).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// `grenzwacht check` on the setup's config: exit code and stderr.
fn check(s: &Setup) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["check", "--config"])
        .arg(&s.config_file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn store_reason(h: &Value) -> String {
    h["checks"]["store"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Healthy: `/health` 200 with the store ok, a marked transaction crosses redacted (its
/// decision stored), `check` passes.
async fn assert_healthy(s: &Setup, g: &RunningGuard, txn: &str, n: u32) {
    let mut h = health(g).await;
    for _ in 0..50 {
        if h.1["status"] != "starting" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        h = health(g).await;
    }
    let (code, h) = h;
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["checks"]["store"]["status"], "ok", "{h}");
    let before = s.up.seen().len();
    let got = send(s, g, txn, n, true).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let seen = s.up.seen();
    assert_eq!(seen.len(), before + 1);
    let forwarded = String::from_utf8_lossy(&seen[before].body).to_string();
    assert!(!forwarded.contains("GEHEIM"), "{forwarded}");
    let (code, err) = check(s);
    assert_eq!(code, 0, "check: {err}");
}

async fn assert_store_failed(g: &RunningGuard, needle: &str) {
    let (code, h) = health(g).await;
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["status"], "failed", "{h}");
    assert_eq!(h["checks"]["store"]["status"], "failed", "{h}");
    assert!(store_reason(&h).contains(needle), "{h}");
    let m = metrics(g.admin).await;
    assert_eq!(counter(&m, "grenzwacht_health", &[("check", "store")]), 2.0);
}

fn chattr(flag: &str, path: &Path) {
    let ok = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chattr {flag} {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_is_reported_refuses_transactions_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let g = start_guard_store(&s.p, &s.toml, open_store(&s)).await;
    assert_healthy(&s, &g, "ok1", 1).await;

    // Another process takes the write lock and keeps it.
    let mut other = rusqlite::Connection::open(&s.store_path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    assert_store_failed(&g, "locked").await;
    let (code, err) = check(&s);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("locked by another process"), "{err}");
    let before = s.up.seen().len();
    // A transaction whose decision must be stored (it withheld something) is refused.
    let got = send(&s, &g, "locked1", 2, true).await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (503, "M_UNKNOWN"),
        "{:?}",
        got.body
    );
    assert_eq!(
        s.up.seen().len(),
        before,
        "nothing crossed without the store"
    );
    let m = metrics(g.admin).await;
    assert!(
        counter(&m, "grenzwacht_refusals_total", &[("reason", "internal")]) >= 1.0,
        "{m}"
    );
    // Pass-through needs no write (reads still work beside the lock): it crosses.
    let got = send(&s, &g, "plain1", 3, false).await;
    assert_eq!(got.status, 200, "{:?}", got.body);

    // The lock is released: healthy again, and the same transaction now crosses.
    tx.rollback().unwrap();
    drop(other);
    assert_healthy(&s, &g, "locked1", 2).await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_store_file_is_reported_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let g = start_guard_store(&s.p, &s.toml, open_store(&s)).await;
    assert_healthy(&s, &g, "ok1", 1).await;
    chattr("+i", &s.store_path);
    let (code, h) = health(&g).await;
    let (check_code, err) = check(&s);
    chattr("-i", &s.store_path);
    assert_eq!(code, 503, "{h}");
    assert!(store_reason(&h).contains("not writable"), "{h}");
    assert_eq!(check_code, 2, "{err}");
    assert!(err.contains("[store]"), "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_healthy(&s, &g, "ok2", 2).await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_overwritten_with_random_bytes_is_reported_and_stops_serve_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let g = start_guard_store(&s.p, &s.toml, open_store(&s)).await;
    assert_healthy(&s, &g, "ok1", 1).await;
    let len = std::fs::metadata(&s.store_path).unwrap().len().max(8192) as usize;
    let noise: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&s.store_path, &noise).unwrap();
    assert_store_failed(&g, "no SQLite database").await;
    let (code, err) = check(&s);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not an SQLite database"), "{err}");
    g.stop().await;

    // `serve` on that file: exit 2 with the diagnosis (no crash loop under the unit's
    // RestartPreventExitStatus=2).
    for f in ["store.db-wal", "store.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    std::fs::write(&s.store_path, &noise).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["serve", "--config"])
        .arg(&s.config_file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not an SQLite database"), "{err}");
    assert!(err.contains("restore it from a backup"), "{err}");
}

/// A tmpfs of 4 MiB under the test's directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount tmpfs at {} (needs root)", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with one file until it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_refuses_transactions_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("small"));
    let s = setup(&fs.0).await;
    let g = start_guard_store(&s.p, &s.toml, open_store(&s)).await;
    assert_healthy(&s, &g, "ok1", 1).await;

    let filler = fill(&fs.0);
    assert_store_failed(&g, "full").await;
    let before = s.up.seen().len();
    // Decisions of new transactions cannot be stored: refused, nothing crosses.
    for i in 0..3 {
        let got = send(&s, &g, &format!("full{i}"), 10 + i, true).await;
        assert_eq!(got.status, 503, "{:?}", got.body);
        assert_eq!(got.errcode(), "M_UNKNOWN");
    }
    assert_eq!(s.up.seen().len(), before, "nothing crossed on a full disk");

    std::fs::remove_file(&filler).unwrap();
    assert_healthy(&s, &g, "full0", 10).await;
    g.stop().await;
    drop(fs);
}
