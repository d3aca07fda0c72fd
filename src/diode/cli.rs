//! `grenzwacht hw …`: the frame verifier's tools (`hw/FRAMES.md`).
use std::path::PathBuf;
use std::process::ExitCode;

use super::{charclass, frame, vectors};

/// `grenzwacht hw` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum HwCommand {
    /// Check every vector of `DIR/*.vec` with the reference verifier; prints
    /// `N vectors, M disagreements` (exit 1 when M > 0, 2 when the files cannot be read).
    Verify {
        /// Directory with `*.vec` files (written by `hw vectors`).
        #[arg(long)]
        vectors: PathBuf,
    },
    /// Write test vectors: `DIR/crafted.vec` (every rule broken on purpose) and
    /// `DIR/random.vec` (random valid frames and frames with one random defect).
    Vectors {
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
        /// Number of random vectors.
        #[arg(long, default_value_t = 10_000)]
        random: usize,
        /// Seed of the random vectors (the same seed gives the same vectors).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// A lossy UDP relay for testing a link: forwards datagrams from `--listen` to `--to`,
    /// dropping each with probability `--loss` (seeded); writes `relayed N dropped M` to
    /// `--stats` (replaced atomically) every 200 ms. Runs until killed.
    Relay {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Probability of dropping a datagram (0.0–1.0).
        #[arg(long, default_value_t = 0.01)]
        loss: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// File with the counts.
        #[arg(long)]
        stats: Option<PathBuf>,
    },
    /// Write the allowed-character tables from this build's Unicode data:
    /// `DIR/charclass.txt` and `DIR/rtl/charclass.vh`.
    Charclass {
        /// The `hw/` directory.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a `grenzwacht hw` subcommand.
pub fn run(cmd: HwCommand) -> ExitCode {
    match cmd {
        HwCommand::Verify { vectors: dir } => {
            let all = match vectors::read_dir(&dir) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if all.is_empty() {
                eprintln!("error: no vectors in {} (*.vec)", dir.display());
                return ExitCode::from(2);
            }
            let bad = vectors::disagreements(&all, frame::verify);
            for (v, got) in bad.iter().take(20) {
                eprintln!(
                    "vector {} ({}): expected {}, reference verifier says {got}",
                    v.id, v.name, v.expected
                );
            }
            println!("{} vectors, {} disagreements", all.len(), bad.len());
            if bad.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        HwCommand::Vectors { out, random, seed } => match vectors::write(&out, random, seed) {
            Ok((c, r)) => {
                println!(
                    "{c} crafted and {r} random vectors written to {}",
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        HwCommand::Relay {
            listen,
            to,
            loss,
            seed,
            stats,
        } => {
            if !(0.0..=1.0).contains(&loss) {
                eprintln!("error: --loss must be between 0 and 1");
                return ExitCode::from(2);
            }
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match rt.block_on(relay(listen, to, loss, seed, stats)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: relay {listen} -> {to}: {e}");
                    ExitCode::from(2)
                }
            }
        }
        HwCommand::Charclass { out } => {
            let r = charclass::compute();
            let write = |path: PathBuf, text: String| {
                if let Some(p) = path.parent() {
                    std::fs::create_dir_all(p)?;
                }
                std::fs::write(&path, text).map(|_| path)
            };
            for (path, text) in [
                (out.join("charclass.txt"), charclass::to_text(&r)),
                (
                    out.join("rtl").join("charclass.vh"),
                    charclass::to_verilog(&r),
                ),
            ] {
                match write(path.clone(), text) {
                    Ok(p) => println!("{} ({} ranges)", p.display(), r.len()),
                    Err(e) => {
                        eprintln!("error: {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                }
            }
            ExitCode::SUCCESS
        }
    }
}

async fn relay(
    listen: std::net::SocketAddr,
    to: std::net::SocketAddr,
    loss: f64,
    seed: u64,
    stats: Option<PathBuf>,
) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let cfg = super::udp::LinkConfig::default();
    let inbound = super::udp::socket(listen, None, &cfg).map_err(std::io::Error::other)?;
    let (dropped, relayed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    if let Some(path) = stats {
        let (d, r) = (dropped.clone(), relayed.clone());
        tokio::spawn(async move {
            let tmp = path.with_extension("tmp");
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let line = format!(
                    "relayed {} dropped {}\n",
                    r.load(Ordering::Relaxed),
                    d.load(Ordering::Relaxed)
                );
                if std::fs::write(&tmp, line).is_ok() {
                    let _ = std::fs::rename(&tmp, &path);
                }
            }
        });
    }
    super::udp::lossy_relay_counted(inbound, to, loss, seed, dropped, relayed, rx).await
}
