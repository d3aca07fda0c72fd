//! `grenzwacht audit verify|query|export` (anyhow at this edge only).
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};

use super::query::{self, Filter};
use super::verify::{self, Anchor, Outcome, PublicKey};

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain, record format and checkpoint signatures of a log directory.
    /// Exit 0: intact; 1: the first bad record is printed; 2: the check could not run.
    Verify {
        /// The audit directory.
        dir: PathBuf,
        /// Audit public key file (`ed25519 VERSION BASE64`, the `.pub` file of
        /// `keys generate --kind audit`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Take the public key from this guard config's `[audit] key_file`.
        #[arg(long, conflicts_with = "key")]
        config: Option<PathBuf>,
        /// A checkpoint kept elsewhere (syslog or JSON lines; the last checkpoint counts):
        /// the log must contain it (detects a cut tail).
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
    /// Print the records matching every given filter as JSON lines (log order).
    Query {
        dir: PathBuf,
        /// RFC 3339 time or date, inclusive.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 time or date, exclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        room: Option<String>,
        #[arg(long)]
        sender: Option<String>,
        /// Origin, destination or peer.
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        verdict: Option<String>,
        /// A matched rule id.
        #[arg(long)]
        rule: Option<String>,
        /// The effective label's display marking.
        #[arg(long)]
        label: Option<String>,
        /// Only the newest N matches (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Print every record in another format.
    Export {
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// HOSTNAME of the syslog lines (default: this host).
        #[arg(long)]
        hostname: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Syslog,
    Cef,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify {
            dir,
            key,
            config,
            anchor,
        } => match run_verify(dir, key, config, anchor) {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                Ok(ExitCode::from(2))
            }
        },
        AuditCommand::Query {
            dir,
            from,
            to,
            room,
            sender,
            server,
            verdict,
            rule,
            label,
            limit,
        } => {
            let filter = Filter {
                from,
                to,
                room,
                sender,
                server,
                verdict,
                rule,
                label,
                limit,
            };
            let out = std::io::stdout();
            let mut out = out.lock();
            if limit == 0 {
                query::for_each(&dir, &filter, |line, _| {
                    writeln!(out, "{line}").map_err(|e| super::AuditError::io("stdout", e))
                })?;
            } else {
                for v in query::search(&dir, &filter)? {
                    writeln!(out, "{}", super::format::canonical(&v))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            dir,
            format,
            hostname,
        } => {
            let host = hostname.unwrap_or_else(super::syslog::hostname);
            let out = std::io::stdout();
            let mut out = out.lock();
            query::for_each(&dir, &Filter::default(), |line, v| {
                let text = match format {
                    ExportFormat::Jsonl => line.to_owned(),
                    ExportFormat::Syslog => super::syslog::message(line, &host).unwrap_or_default(),
                    ExportFormat::Cef => super::export::cef(&v),
                };
                writeln!(out, "{text}").map_err(|e| super::AuditError::io("stdout", e))
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_verify(
    dir: PathBuf,
    key: Option<PathBuf>,
    config: Option<PathBuf>,
    anchor: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let key = match (key, config) {
        (Some(k), _) => Some(PublicKey::from_file(&k)?),
        (None, Some(c)) => {
            let cfg = crate::config::Config::load(&c).map_err(|e| anyhow::anyhow!("{e}"))?;
            let a = cfg
                .audit
                .with_context(|| format!("{}: no [audit] section", c.display()))?;
            Some(PublicKey::from_signing_key_file(&a.key_file)?)
        }
        (None, None) => None,
    };
    let anchor = anchor
        .map(|a| Anchor::from_file(&a, key.as_ref()))
        .transpose()?;
    match verify::verify(&dir, key.as_ref(), anchor.as_ref())? {
        Outcome::Intact(s) => {
            println!(
                "OK: {} records (seq {}..={}) in {} segments, {} checkpoints",
                s.records, s.first_seq, s.last_seq, s.segments, s.checkpoints
            );
            match &key {
                Some(k) => println!("checkpoint signatures verified with {}", k.key_id),
                None => println!(
                    "WARNING: checkpoint signatures and retention marks NOT verified (no --key)"
                ),
            }
            if let Some(a) = s.anchor_seq {
                println!("anchor checkpoint seq {a} found");
            }
            if s.unattested_tail > 0 {
                println!(
                            "note: {} records after the last checkpoint are not attested by a signature (a cut there is detected only with --anchor)",
                            s.unattested_tail
                        );
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Bad(b) => {
            println!("FAIL: {b}");
            Ok(ExitCode::from(1))
        }
    }
}
