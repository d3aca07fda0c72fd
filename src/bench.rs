//! `grenzwacht bench`: a federation load generator for sizing.
//!
//! One run measures the same signed `PUT /send` transactions twice: directly against a built-in
//! sink (a homeserver stand-in that speaks TLS like a real federation listener) and through an
//! in-process guard whose upstream is the same sink over loopback HTTP (the usual deployment:
//! guard and homeserver side by side). Both runs share the machine, so the ratio is what
//! matters, not the absolute numbers.
pub mod load;
pub mod sink;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use crate::config::Config;
use crate::proxy::ca::Ca;
use crate::proxy::{Guard, Listeners};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// PDUs per transaction (1–50).
    #[arg(long, default_value_t = 50)]
    pub pdus: usize,
    /// Approximate size of each event in bytes.
    #[arg(long, default_value_t = 1024)]
    pub event_size: usize,
    /// Transactions per measured run (each run: direct, then through the guard).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Target rate in transactions/s per run (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Bench failures (setup or load generation).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench setup: {0}")]
    Setup(String),
    #[error("load generation: {0}")]
    Load(String),
    #[error("bench I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What one measured run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The bench result (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub pdus: usize,
    pub event_size: usize,
    pub requests: usize,
    pub concurrency: usize,
    pub direct: RunStats,
    pub guard: RunStats,
    pub direct_rps: f64,
    pub guard_rps: f64,
    /// guard_rps / direct_rps
    pub ratio: f64,
    pub p50_added_ms: f64,
    pub p99_added_ms: f64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=50).contains(&args.pdus), "--pdus must be 1..=50");
    anyhow::ensure!(
        args.requests > 0 && args.concurrency > 0,
        "--requests and --concurrency must be > 0"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = rt.block_on(run_async(args.clone()))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &BenchReport) {
    println!(
        "grenzwacht bench: {} transactions × {} PDUs of ~{} B, {} connections",
        r.requests, r.pdus, r.event_size, r.concurrency
    );
    println!(
        "{:<8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "path", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );
    for (name, s) in [("direct", &r.direct), ("guard", &r.guard)] {
        println!(
            "{:<8} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7}",
            name, s.rps, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms, s.errors
        );
    }
    println!(
        "ratio guard/direct: {:.3}   added latency p50 {:.3} ms, p99 {:.3} ms",
        r.ratio, r.p50_added_ms, r.p99_added_ms
    );
}

/// Runs the whole benchmark in the current runtime.
pub async fn run_async(args: BenchArgs) -> anyhow::Result<BenchReport> {
    let dir = tempfile::tempdir().context("temp dir")?;
    // Throwaway PKI: one CA, one leaf for 127.0.0.1 used by the sink and the guard.
    let ca = Ca::generate("grenzwacht bench CA").context("bench CA")?;
    let (cert_pem, key_pem) = ca
        .issue_pem(&["127.0.0.1".to_string()], Duration::from_secs(3600))
        .context("bench leaf")?;
    let cert = dir.path().join("leaf.crt");
    let key = dir.path().join("leaf.key");
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&cert, &cert_pem)?;
    std::fs::write(&key, &key_pem)?;
    std::fs::write(&ca_path, ca.cert_pem())?;

    let sink = sink::Sink::start(&cert, &key).await.context("sink")?;
    let server_name = "sink.bench";
    let toml = format!(
        r#"
[log]
level = "warn"
[admin]
listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
# The sink's origin has no key server: the bench measures the proxy path without signature
# verification (the guard's key cache would make it a hash-map lookup plus one ed25519 check).
verify_signatures = false
# Its PDUs carry placeholder signatures: no PDU verification either (measured separately in
# the criterion bench `redact`).
[keys]
verify_pdus = false
[[protected]]
server_name = "{server_name}"
cert = "{cert}"
key = "{key}"
upstream = "http://{plain}"
"#,
        cert = cert.display(),
        key = key.display(),
        plain = sink.plain_addr,
    );
    let cfg_path = dir.path().join("guard.toml");
    std::fs::write(&cfg_path, &toml)?;
    let cfg = Config::load(&cfg_path).map_err(|e| anyhow::anyhow!("bench config: {e}"))?;
    let guard = Arc::new(Guard::from_config(
        &cfg,
        crate::store::Store::open_in_memory()?,
    )?);
    let listeners = Listeners::bind(&cfg).await?;
    let guard_addr = listeners
        .inbound
        .as_ref()
        .context("inbound listener")?
        .local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(crate::proxy::serve(guard, listeners, async move {
        let _ = stop_rx.await;
    }));

    let plan =
        load::Plan::new(&args, "origin.bench", server_name).context("signing transactions")?;
    let roots = vec![ca_path.clone()];
    // Warm up both paths (connections, caches), then measure direct, then the guard.
    let warm = load::Plan {
        txns: plan.txns[..plan.txns.len().min(args.concurrency * 4)].to_vec(),
    };
    load::run(&warm, sink.tls_addr, &roots, args.concurrency, 0).await?;
    load::run(&warm, guard_addr, &roots, args.concurrency, 0).await?;
    let direct = load::run(&plan, sink.tls_addr, &roots, args.concurrency, args.rate).await?;
    let guard = load::run(&plan, guard_addr, &roots, args.concurrency, args.rate).await?;

    let _ = stop_tx.send(());
    let _ = serving.await;
    sink.stop().await;

    anyhow::ensure!(
        direct.errors == 0,
        "{} direct requests failed",
        direct.errors
    );
    anyhow::ensure!(
        guard.errors == 0,
        "{} requests through the guard failed",
        guard.errors
    );
    Ok(BenchReport {
        pdus: args.pdus,
        event_size: args.event_size,
        requests: args.requests,
        concurrency: args.concurrency,
        direct_rps: direct.rps,
        guard_rps: guard.rps,
        ratio: if direct.rps > 0.0 {
            guard.rps / direct.rps
        } else {
            0.0
        },
        p50_added_ms: guard.p50_ms - direct.p50_ms,
        p99_added_ms: guard.p99_ms - direct.p99_ms,
        direct,
        guard,
    })
}
