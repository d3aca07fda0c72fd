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
