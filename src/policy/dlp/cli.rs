//! `grenzwacht policy check|test|explain|replay`: the authoring loop for security officers
//! (`replay`: `policy::whatif`).
//!
//! Exit codes: 0 success; 1 diagnostics (`check`), failed tests (`test`) or unreadable input;
//! every command prints all diagnostics of a rule set that does not load.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use super::{event_ctx, RuleSet};
use crate::telemetry::Direction;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check every rule file of the policy directory; prints all diagnostics at once.
    Check {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Run every embedded `[[rule.test]]`.
    Test {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Scan one event (a PDU or bare event JSON, `-` for stdin) and explain the verdict.
    Explain {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Event JSON file, or `-` for stdin.
        #[arg(long)]
        event: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Direction of the traffic (for rule scopes).
        #[arg(long, value_enum, default_value_t = Dir::Outbound)]
        direction: Dir,
        /// The remote server (for rule scopes and exceptions).
        #[arg(long)]
        peer: Option<String>,
    },
    /// Run recorded events through a candidate rule set and list every decision that would
    /// change (JSON lines).
    Replay(crate::policy::whatif::cli::ReplayArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dir {
    Inbound,
    Outbound,
}

/// Another policy input kept in the DLP rule directory and checked with it by `policy check`
/// (`media::yara` implements it for `<dir>/yara/*.yar`). Defined here so that `policy` does
/// not depend on the modules that implement it.
pub trait CompanionInput {
    /// Loads the input of the policy directory `dir`, or gives every error and warning.
    fn check(&self, dir: &Path) -> Result<CompanionReport, CompanionErrors>;
    /// `policy explain` (human format): lines saying what the input makes of `event` (a PDU
    /// or bare event) going in `direction`; nothing when it has no say on event text.
    fn explain(
        &self,
        _dir: &Path,
        _event: &serde_json::Value,
        _direction: Direction,
    ) -> Vec<String> {
        Vec::new()
    }
}

/// The diagnostics of a companion input that did not load, one per line.
#[derive(Debug, Clone, Default)]
pub struct CompanionErrors {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// A companion input that loaded.
#[derive(Debug, Clone)]
pub struct CompanionReport {
    /// One line: what was loaded.
    pub summary: String,
    /// Warnings, one per line (printed; they do not fail the check).
    pub warnings: Vec<String>,
    /// Its files and ids, part of the policy fingerprint.
    pub manifest: crate::policy::manifest::Manifest,
    /// Its embedded tests, already run (`policy test`).
    pub tests: Vec<CompanionTest>,
}

/// One embedded test of a companion input.
#[derive(Debug, Clone)]
pub struct CompanionTest {
    pub name: String,
    pub passed: bool,
    /// What went wrong (printed for failed tests).
    pub failure: String,
}

fn load(dir: &Path) -> Result<RuleSet, ExitCode> {
    RuleSet::load_dir(dir).map_err(|d| report(dir, &d))
}

fn report(dir: &Path, d: &super::Diagnostics) -> ExitCode {
    eprintln!("{d}");
    eprintln!("error: {} problem(s) in {}", d.0.len(), dir.display());
    ExitCode::from(1)
}

/// Run a `policy` subcommand.
pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    run_with(command, &[])
}

/// [`run`], where `policy check` also checks the `companions` and prints their diagnostics
/// the same way; the fingerprint covers them (as the running guard's does).
pub fn run_with(
    command: PolicyCommand,
    companions: &[&dyn CompanionInput],
) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Replay(args) => crate::policy::whatif::cli::run(args),
        PolicyCommand::Check { policies } => {
            let loaded = RuleSet::load_dir_with_manifest(&policies);
            let mut problems = 0;
            let mut reports = Vec::new();
            for c in companions {
                match c.check(&policies) {
                    Ok(r) => {
                        for w in &r.warnings {
                            eprintln!("{w}");
                        }
                        reports.push(r);
                    }
                    Err(e) => {
                        for d in e.errors.iter().chain(&e.warnings) {
                            eprintln!("{d}");
                        }
                        problems += e.errors.len();
                    }
                }
            }
            let (set, mut manifest) = match loaded {
                Ok(s) if problems == 0 => s,
                Ok(_) => {
                    eprintln!("error: {problems} problem(s) in {}", policies.display());
                    return Ok(ExitCode::from(1));
                }
                Err(d) => {
                    eprintln!("{d}");
                    eprintln!(
                        "error: {} problem(s) in {}",
                        d.0.len() + problems,
                        policies.display()
                    );
                    return Ok(ExitCode::from(1));
                }
            };
            let tests: usize = set.rules().map(|r| r.tests.len()).sum();
            println!(
                "{}: OK ({} rules in {} files, {} embedded tests, mode {})",
                policies.display(),
                set.rules().count(),
                set.files().len(),
                tests,
                set.mode().as_str()
            );
            for r in reports {
                println!("{}", r.summary);
                manifest.extend(r.manifest);
            }
            let fp = manifest.fingerprint();
            // The running guard logs the same fingerprint and exports its first 48 bits as
            // the gauge `grenzwacht_policy_fingerprint`.
            println!("fingerprint {fp} (gauge value {})", fp.gauge_value());
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test { policies } => {
            let set = match load(&policies) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let mut more = Vec::new();
            for c in companions {
                match c.check(&policies) {
                    Ok(r) => more.extend(r.tests),
                    Err(e) => {
                        for d in e.errors.iter().chain(&e.warnings) {
                            eprintln!("{d}");
                        }
                        eprintln!(
                            "error: {} problem(s) in {}",
                            e.errors.len(),
                            policies.display()
                        );
                        return Ok(ExitCode::from(1));
                    }
                }
            }
            let results = set.run_tests();
            println!("\nrunning {} tests", results.len() + more.len());
            for t in &more {
                println!(
                    "test {} ... {}",
                    t.name,
                    if t.passed { "ok" } else { "FAILED" }
                );
            }
            for r in &results {
                let name = r
                    .name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                println!(
                    "test {}::{}{name} ... {}",
                    r.rule,
                    r.index,
                    if r.passed() { "ok" } else { "FAILED" }
                );
            }
            let failed: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
            let failed_more: Vec<_> = more.iter().filter(|t| !t.passed).collect();
            if !failed.is_empty() || !failed_more.is_empty() {
                println!("\nfailures:");
                for t in &failed_more {
                    println!("    {} at {}", t.name, t.failure);
                }
                for r in &failed {
                    let spans: Vec<String> = r
                        .matches
                        .iter()
                        .map(|m| format!("{}@{}..{} {}", m.field, m.start, m.end, m.excerpt))
                        .collect();
                    println!(
                        "    {}::{} at {}:{}:{}: expected {}, got {}{}",
                        r.rule,
                        r.index,
                        r.file,
                        r.loc.line,
                        r.loc.col,
                        r.expected,
                        r.got,
                        if spans.is_empty() {
                            String::new()
                        } else {
                            format!(" (matches: {})", spans.join(", "))
                        }
                    );
                }
            }
            let all_passed = failed.is_empty() && failed_more.is_empty();
            println!(
                "\ntest result: {}. {} passed; {} failed\n",
                if all_passed { "ok" } else { "FAILED" },
                results.len() + more.len() - failed.len() - failed_more.len(),
                failed.len() + failed_more.len()
            );
            Ok(if all_passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PolicyCommand::Explain {
            policies,
            event,
            format,
            direction,
            peer,
        } => {
            let set = match load(&policies) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let text = if event.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the event from stdin")?;
                s
            } else {
                std::fs::read_to_string(&event)
                    .with_context(|| format!("reading {}", event.display()))?
            };
            let ev: serde_json::Value =
                serde_json::from_str(&text).context("the event is not valid JSON")?;
            if ev.get("type").and_then(|t| t.as_str()).is_none()
                || !ev.get("content").is_some_and(|c| c.is_object())
            {
                anyhow::bail!("the event needs a string `type` and an object `content` (a PDU or a bare event)");
            }
            let direction = match direction {
                Dir::Inbound => Direction::Inbound,
                Dir::Outbound => Direction::Outbound,
            };
            let ctx = event_ctx(&ev, direction, peer.as_deref());
            let engine = set.engine();
            // The guard's own event scanner: type, state key, redacts, content, unsigned.
            let outcome = engine.scan_parts(&ctx, super::fields::EventParts::of(&ev));
            match format {
                Format::Json => {
                    let matches: Vec<serde_json::Value> = outcome
                        .matches
                        .iter()
                        .map(|m| {
                            let mut j = serde_json::json!({"rule": &*m.rule, "field": m.field.as_str(), "start": m.start, "end": m.end});
                            // Generic fields (`content`, `unsigned`, `edu`): where in the JSON.
                            if let Some(p) = &m.path {
                                j["path"] = p.as_str().into();
                            }
                            j
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({"verdict": outcome.action.as_str(), "matches": matches})
                    );
                }
                Format::Human => {
                    println!("verdict: {}", outcome.action);
                    if outcome.shadow_action != super::Action::Allow {
                        println!("shadow verdict (not enforced): {}", outcome.shadow_action);
                    }
                    println!(
                        "event: type {}, room {}, sender {}, direction {:?}, peer {}",
                        ctx.event_type,
                        ctx.room_id.unwrap_or("-"),
                        ctx.sender.unwrap_or("-"),
                        direction,
                        ctx.peer.unwrap_or("-")
                    );
                    let texts = super::fields::event_texts(super::fields::EventParts::of(&ev));
                    let fields = texts.fields;
                    let scanned: Vec<String> = fields
                        .iter()
                        .map(|(f, s)| format!("{f} ({} bytes)", s.len()))
                        .collect();
                    println!(
                        "fields scanned: {}",
                        if scanned.is_empty() {
                            "none".to_owned()
                        } else {
                            scanned.join(", ")
                        }
                    );
                    if outcome.matches.is_empty() {
                        println!("no rule matched");
                    }
                    for m in &outcome.matches {
                        println!(
                            "  rule {} [{} {} {}]: field {} bytes {}..{} excerpt \"{}\" confidence {:.2}",
                            m.rule,
                            m.action,
                            m.mode.as_str(),
                            m.severity.as_str(),
                            m.path.as_deref().unwrap_or(m.field.as_str()),
                            m.start,
                            m.end,
                            m.excerpt,
                            m.confidence
                        );
                    }
                    for c in companions {
                        for line in c.explain(&policies, &ev, direction) {
                            println!("{line}");
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
