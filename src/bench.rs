//! `grenzwacht bench`: a federation load generator for sizing.
//!
//! One run sends the same signed `PUT /send` transactions (real room-version-12 PDUs, hashed
//! and signed by the origin) directly to a built-in sink — a homeserver stand-in that speaks
//! TLS like a real federation listener — and then through an in-process guard per
//! configuration ([`guard::Setup`]), whose upstream is the same sink over loopback HTTP (the
//! usual deployment: guard and homeserver side by side):
//!
//! * `pass_through`: no verification, no content rules (the proxy path alone);
//! * `default_unaudited`: `default` without the audit log (the baseline for what recording
//!   every decision adds);
//! * `default`: what a deployment runs by default — X-Matrix and PDU signatures and content
//!   hashes verified with keys the guard fetches from the origin (the sink serves them), the
//!   shipped DLP rule set, every decision recorded in the audit log before it crosses;
//! * `labels` (`--labels`): the default plus security labels (shipped SPIFs, a labeled room,
//!   a label on every message).
//!
//! All runs share the machine, so the ratios against the direct run of the same invocation
//! are what matters, not the absolute numbers. `--tamper` signs the requests or the PDUs with
//! a forged key: the direct run and `pass_through` accept them, a verifying guard does not —
//! the proof that verification is on (see the counters in the report).
pub mod guard;
pub mod load;
pub mod sink;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::proxy::ca::Ca;
use guard::{Counts, Setup};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// PDUs per transaction (1–50).
    #[arg(long, default_value_t = 50)]
    pub pdus: usize,
    /// Approximate size of each event in bytes.
    #[arg(long, default_value_t = 1024)]
    pub event_size: usize,
    /// Transactions per measured run (each run: direct, then through each guard configuration).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Target rate in transactions/s per run (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Also measure the default configuration with security labels (shipped SPIFs, labeled
    /// room and messages).
    #[arg(long)]
    pub labels: bool,
    /// Measure only these guard configurations (comma-separated; `labels` implies `--labels`).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Setup>,
    /// Forge signatures (for checking that verification is on): `xmatrix` signs every request,
    /// `pdu` every message PDU with another key under the origin's key id. Refused requests
    /// and rejected PDUs are reported, not errors of the bench.
    #[arg(long, value_enum)]
    pub tamper: Option<Tamper>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `--tamper` forges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// The X-Matrix signature of every transaction.
    Xmatrix,
    /// The signature of every message PDU.
    Pdu,
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
    /// Answers other than 2xx (and failed requests).
    pub errors: usize,
    pub seconds: f64,
    /// Answered transactions per second.
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU time of the whole bench process (load generator, sink and guard) per transaction:
    /// less sensitive to other load on the machine than rates and latencies.
    pub cpu_ms_per_txn: f64,
}

/// What the sink received in one run.
#[derive(Debug, Clone, Serialize)]
pub struct SinkCounts {
    /// Transactions that reached the sink.
    pub transactions: u64,
    /// PDUs whose message text reached the sink (counted with `--tamper` only, else `null`).
    pub text_pdus: Option<u64>,
}

/// One guard configuration measured against the direct run.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub name: &'static str,
    pub verify_signatures: bool,
    pub verify_pdus: bool,
    pub dlp_rules: bool,
    pub labels: bool,
    /// Decisions recorded in an audit log (group commit, fsync).
    pub audit: bool,
    pub stats: RunStats,
    /// rps / direct rps.
    pub ratio: f64,
    pub p50_added_ms: f64,
    /// Added p99 latency per transaction of `pdus` PDUs.
    pub p99_added_ms: f64,
    /// CPU per transaction added by the guard: `cpu_ms_per_txn` minus the direct run's.
    pub cpu_added_ms_per_txn: f64,
    /// ratio ≥ [`GOAL_MIN_RATIO`] and p99_added_ms ≤ [`GOAL_MAX_ADDED_P99_MS`] (the goal is
    /// stated for 50-PDU transactions, the default `--pdus`).
    pub meets_goal: bool,
    /// The guard's counters during the measured run (PDU checks, refusals, label and DLP
    /// decisions), by label value.
    pub guard: Counts,
    pub sink: SinkCounts,
}

/// Throughput goal: through the guard at least this share of the direct rate.
pub const GOAL_MIN_RATIO: f64 = 0.8;
/// Latency goal: at most this much added p99 per 50-PDU transaction.
pub const GOAL_MAX_ADDED_P99_MS: f64 = 1.0;

/// The bench result (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub pdus: usize,
    pub event_size: usize,
    pub requests: usize,
    pub concurrency: usize,
    /// `debug` or `release`: debug builds are several times slower on the guard's side.
    pub build: &'static str,
    pub tamper: Option<Tamper>,
    pub goal_min_ratio: f64,
    pub goal_max_added_p99_ms: f64,
    pub direct: RunStats,
    pub direct_sink: SinkCounts,
    /// `pass_through`, `default`, and with `--labels` `labels`, in that order.
    pub configurations: Vec<ConfigReport>,
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
        "grenzwacht bench ({} build): {} transactions × {} PDUs of ~{} B, {} connections{}",
        r.build,
        r.requests,
        r.pdus,
        r.event_size,
        r.concurrency,
        match r.tamper {
            Some(Tamper::Xmatrix) => ", forged X-Matrix signatures",
            Some(Tamper::Pdu) => ", forged PDU signatures",
            None => "",
        }
    );
    println!(
        "{:<13} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>7} {:>11} {:>9}",
        "path",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "cpu ms/tx",
        "ratio",
        "+p99 ms",
        "verified"
    );
    let row = |name: &str, s: &RunStats, extra: String| {
        println!(
            "{:<13} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>9.3} {extra}",
            name, s.rps, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms, s.errors, s.cpu_ms_per_txn
        )
    };
    row("direct", &r.direct, String::new());
    for c in &r.configurations {
        let verified = c.guard.pdu_checks.get("verified").copied().unwrap_or(0);
        row(
            c.name,
            &c.stats,
            format!("{:>7.3} {:>11.3} {:>9}", c.ratio, c.p99_added_ms, verified),
        );
    }
    println!(
        "goal: ratio ≥ {GOAL_MIN_RATIO} and added p99 ≤ {GOAL_MAX_ADDED_P99_MS} ms per 50-PDU transaction: {}",
        r.configurations
            .iter()
            .map(|c| format!("{} {}", c.name, if c.meets_goal { "met" } else { "not met" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The origin of the bench's transactions, and the protected server (the sink's name).
const ORIGIN: &str = "origin.bench";
const SERVER_NAME: &str = "sink.bench";

/// Runs the whole benchmark in the current runtime.
pub async fn run_async(args: BenchArgs) -> anyhow::Result<BenchReport> {
    let labels = args.labels || args.only.contains(&Setup::Labels);
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

    // The origin's signing key and its self-signed key object, served by the sink.
    let origin_key = crate::keys::SigningKey::generate("bench").context("origin key")?;
    let key_object = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("clock")?
            .as_millis() as u64;
        let mut obj: ruma::CanonicalJsonObject = serde_json::from_value(serde_json::json!({
            "server_name": ORIGIN, "valid_until_ts": now + 86_400_000, "old_verify_keys": {},
            "verify_keys": {origin_key.key_id(): {"key": origin_key.public_key_base64()}}
        }))?;
        origin_key.sign_json(ORIGIN, &mut obj)?;
        serde_json::to_vec(&obj)?
    };
    let sink = sink::Sink::start(&cert, &key, key_object, args.tamper.is_some())
        .await
        .context("sink")?;
    let env = guard::Env::write(
        dir.path(),
        cert,
        key,
        ca_path.clone(),
        SERVER_NAME,
        ORIGIN,
        sink.plain_addr,
        sink.tls_addr,
        labels,
    )?;

    // The label of the room and of every message: the remote side's default (NATO
    // RESTRICTED, NATO context), which the protected side is cleared for.
    let label = labels.then(|| {
        (
            crate::config::labels::DEFAULT_EVENT_KEY,
            crate::config::labels::DEFAULT_ROOM_LABEL_TYPE,
            serde_json::json!({"policy": crate::lab::guard::LAB_NATO_POLICY, "classification": 2,
                "categories": [{"tag_set": "1.3.26.1.4.4", "type": "permissive", "lacv": 1001}]}),
        )
    });
    let sender = load::Sender {
        key: &origin_key,
        origin: ORIGIN,
        destination: SERVER_NAME,
        label,
    };
    // Signing takes a while (threads of its own) and blocks this task: nothing but the idle
    // sink runs yet.
    let plan = load::Plan::new(&args, &sender, args.concurrency * 4, args.tamper)
        .context("signing transactions")?;
    let roots = vec![ca_path];
    let c = args.concurrency;

    // Direct: the baseline.
    for t in &plan.setup {
        load::run(std::slice::from_ref(t), sink.tls_addr, &roots, 1, 0).await?;
    }
    load::run(&plan.warm, sink.tls_addr, &roots, c, 0).await?;
    let before = sink.direct.snapshot();
    let direct = load::run(&plan.txns, sink.tls_addr, &roots, c, args.rate).await?;
    let direct_sink = sink_counts(before, sink.direct.snapshot(), args.tamper.is_some());

    let setups: Vec<Setup> = [
        Setup::PassThrough,
        Setup::DefaultUnaudited,
        Setup::Default,
        Setup::Labels,
    ]
    .into_iter()
    .filter(|s| match (args.only.is_empty(), s) {
        (true, Setup::Labels) => labels,
        (true, _) => true,
        (false, s) => args.only.contains(s),
    })
    .collect();
    let mut configurations = Vec::new();
    for setup in setups {
        let g = guard::Running::start(&env, setup).await?;
        for t in &plan.setup {
            load::run(std::slice::from_ref(t), g.addr, &roots, 1, 0).await?;
        }
        load::run(&plan.warm, g.addr, &roots, c, 0).await?;
        let counts = Counts::now();
        let before = sink.upstream.snapshot();
        let stats = load::run(&plan.txns, g.addr, &roots, c, args.rate).await?;
        let sink_got = sink_counts(before, sink.upstream.snapshot(), args.tamper.is_some());
        let guard_counts = Counts::now().since(&counts);
        g.stop().await;
        let ratio = if direct.rps > 0.0 {
            stats.rps / direct.rps
        } else {
            0.0
        };
        let p99_added_ms = stats.p99_ms - direct.p99_ms;
        configurations.push(ConfigReport {
            name: setup.name(),
            verify_signatures: setup.verifies(),
            verify_pdus: setup.verifies(),
            dlp_rules: setup != Setup::PassThrough,
            labels: setup == Setup::Labels,
            audit: setup.audits(),
            ratio,
            p50_added_ms: stats.p50_ms - direct.p50_ms,
            p99_added_ms,
            cpu_added_ms_per_txn: stats.cpu_ms_per_txn - direct.cpu_ms_per_txn,
            meets_goal: ratio >= GOAL_MIN_RATIO && p99_added_ms <= GOAL_MAX_ADDED_P99_MS,
            stats,
            guard: guard_counts,
            sink: sink_got,
        });
    }
    sink.stop().await;

    anyhow::ensure!(
        direct.errors == 0,
        "{} direct requests failed",
        direct.errors
    );
    if args.tamper.is_none() {
        for c in &configurations {
            anyhow::ensure!(
                c.stats.errors == 0,
                "{} requests through the guard ({}) failed",
                c.stats.errors,
                c.name
            );
        }
    }
    Ok(BenchReport {
        pdus: args.pdus,
        event_size: args.event_size,
        requests: args.requests,
        concurrency: args.concurrency,
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        tamper: args.tamper,
        goal_min_ratio: GOAL_MIN_RATIO,
        goal_max_added_p99_ms: GOAL_MAX_ADDED_P99_MS,
        direct,
        direct_sink,
        configurations,
    })
}

fn sink_counts(before: (u64, u64), after: (u64, u64), inspected: bool) -> SinkCounts {
    SinkCounts {
        transactions: after.0 - before.0,
        text_pdus: inspected.then_some(after.1 - before.1),
    }
}
