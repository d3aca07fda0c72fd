//! `grenzwacht spif …` and `grenzwacht label …` (anyhow at this edge only).
//!
//! Output contracts:
//! - `spif check FILE…`: one line per diagnostic on stderr, `FILE: OK (policy NAME OID)` on
//!   stdout; exit 0 when every file is valid (warnings allowed), 1 otherwise. Several files
//!   are also checked against each other (equivalences).
//! - `label marking`: the display marking on stdout.
//! - `label check`: JSON `{"valid": bool, "error": string|null, "access": "grant"|"deny"|null}`
//!   on stdout; exit 0 whenever the JSON was produced (an invalid label is a result, not a
//!   failure); `access` is `null` without `--clearance`, `"deny"` for an invalid label.
//! - `label translate`: JSON `{"label": "<4774 XML>", "marking": "…"}`; a failed translation
//!   prints the reason on stderr and exits 1.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::{Oid, Severity, Spif, SpifError, SpifSet};

#[derive(Subcommand, Debug)]
pub enum SpifCommand {
    /// Check one or more SPIF files (and the equivalences between them).
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum LabelCommand {
    /// Print the display marking of a label.
    Marking {
        /// SPIF file (repeatable); the label's policy identifier selects one.
        #[arg(long = "spif", required = true)]
        spif: Vec<PathBuf>,
        #[arg(long)]
        label: PathBuf,
        /// Marking language (xml:lang), e.g. de, fr-CA.
        #[arg(long)]
        lang: Option<String>,
    },
    /// Validate a label, optionally decide access for a clearance; prints JSON.
    Check {
        #[arg(long = "spif", required = true)]
        spif: Vec<PathBuf>,
        #[arg(long)]
        label: PathBuf,
        #[arg(long)]
        clearance: Option<PathBuf>,
    },
    /// Translate a label into an equivalent policy; prints JSON with the 4774 XML and marking.
    Translate {
        #[arg(long = "spif", required = true)]
        spif: Vec<PathBuf>,
        #[arg(long)]
        label: PathBuf,
        /// Target policy OID.
        #[arg(long = "to")]
        to: String,
        #[arg(long)]
        lang: Option<String>,
    },
}

pub fn run_spif(cmd: SpifCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SpifCommand::Check { files } => {
            let mut ok = true;
            let mut set = SpifSet::new();
            for f in &files {
                match Spif::load(f) {
                    Ok(spif) => {
                        for w in &spif.warnings {
                            eprintln!("{}: {w}", f.display());
                        }
                        println!(
                            "{}: OK (policy {} {})",
                            f.display(),
                            spif.name,
                            spif.policy_id
                        );
                        if let Err(e) = set.insert(spif) {
                            eprintln!("{}: {e}", f.display());
                            ok = false;
                        }
                    }
                    Err(SpifError::Invalid { diagnostics }) => {
                        for d in &diagnostics {
                            eprintln!("{}: {d}", f.display());
                        }
                        let n = diagnostics
                            .iter()
                            .filter(|d| d.severity == Severity::Error)
                            .count();
                        eprintln!("{}: INVALID ({n} error(s))", f.display());
                        ok = false;
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", f.display());
                        ok = false;
                    }
                }
            }
            for d in set.check_equivalences() {
                eprintln!("{d}");
                if d.severity == Severity::Error {
                    ok = false;
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn load_set(paths: &[PathBuf]) -> anyhow::Result<SpifSet> {
    SpifSet::load(paths).context("loading SPIFs")
}

pub fn run_label(cmd: LabelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabelCommand::Marking { spif, label, lang } => {
            let set = load_set(&spif)?;
            let l = set
                .load_label_file(&label)
                .with_context(|| label.display().to_string())?;
            println!("{}", set.marking(&l, lang.as_deref())?);
            Ok(ExitCode::SUCCESS)
        }
        LabelCommand::Check {
            spif,
            label,
            clearance,
        } => {
            let set = load_set(&spif)?;
            let clearance = match &clearance {
                Some(p) => Some(
                    set.load_clearance_file(p)
                        .with_context(|| p.display().to_string())?,
                ),
                None => None,
            };
            let outcome = set
                .load_label_file(&label)
                .and_then(|l| set.validate(&l).map(|_| l));
            let out = match outcome {
                Ok(l) => {
                    let access = clearance.as_ref().map(|c| match set.access(&l, c) {
                        Ok(d) => d.as_str().to_string(),
                        Err(_) => "deny".to_string(),
                    });
                    json!({"valid": true, "error": null, "access": access})
                }
                Err(e) => {
                    json!({"valid": false, "error": e.to_string(), "access": clearance.as_ref().map(|_| "deny")})
                }
            };
            println!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        LabelCommand::Translate {
            spif,
            label,
            to,
            lang,
        } => {
            let set = load_set(&spif)?;
            let to: Oid = to.parse().map_err(anyhow::Error::msg)?;
            let l = set
                .load_label_file(&label)
                .with_context(|| label.display().to_string())?;
            match set.translate(&l, &to) {
                Ok(t) => {
                    let xml = set.to_4774_xml(&t)?;
                    let marking = set.marking(&t, lang.as_deref())?;
                    println!("{}", json!({"label": xml, "marking": marking}));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: translation to {to} failed: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
