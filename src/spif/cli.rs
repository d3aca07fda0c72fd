//! `grenzwacht spif …` and `grenzwacht label …` (anyhow at this edge only).
//!
//! Output contracts:
//! - `spif check FILE…`: one line per diagnostic on stderr, `FILE: OK (policy NAME OID)` on
//!   stdout; exit 0 when every file is valid (warnings allowed), 1 otherwise. Several files
//!   are also checked against each other (equivalences).
//! - `label marking`: the display marking on stdout (exit 0); a label its SPIF says is invalid
//!   is refused: exit 1, the reason on stderr.
//! - `label check`: JSON `{"valid": bool, "error": string|null, "access": "grant"|"deny"|null,
//!   "reason": string|null}` on stdout. `access` is `null` without `--clearance`; with one it
//!   is [`SpifSet::decide_access`] — the decision of the traffic path, which translates a label
//!   of another policy into the clearance's policy first — and `"deny"` for an invalid label.
//!   `reason` says why (`invalid: …`, `no_equivalent: …`, `not_cleared: …`) and is also printed
//!   on stderr. Exit 0 for a valid label (and a grant), 1 for an invalid label or a denial.
//! - `label translate`: JSON `{"label": "<4774 XML>", "marking": "…"}`; a failed translation
//!   prints the reason on stderr and exits 1.
//! - `label convert --to json|spiffing|4774|ber [--out FILE]`: the label in that form on stdout
//!   (BER: the DER bytes) or in FILE; a label its SPIF says is invalid, or one the form cannot
//!   carry (a privacy mark over 128 characters in BER), exits 1 with the reason on stderr;
//!   categories of a SPIF whose `rbacId` names a syntax the guard does not write are an
//!   unsupported form (exit 2). BER uses the ACP 145 or the MISSI syntax as the `rbacId` says.
//!
//! Every `label` subcommand exits 2 on usage and input errors — an unreadable file, input that
//! is no security label (or clearance), a label form the guard does not support, a policy no
//! `--spif` defines, a SPIF that does not load — with one `error: …` line on stderr and nothing
//! on stdout.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::{AccessDenial, Clearance, Label, LabelError, Oid, Severity, Spif, SpifError, SpifSet};

/// Help of `--spif` (one form per line).
const SPIF_HELP: &str = "SPIF file (repeatable; the label's policy identifier selects one)\n\
    - Open XML SPIF 1.0-2.1 (with or without the spif: prefix), e.g. spif/deu-vs.xml";

/// Help of `--label` (the accepted forms, one per line).
const LABEL_HELP: &str = "Label file, any of these forms (detected from the content):\n\
    - STANAG 4774 XML: <originatorConfidentialityLabel xmlns=\"urn:nato:stanag:4774:confidentialitymetadatalabel:1:0\">\n\
    - spiffing XML: <label xmlns=\"http://surevine.com/xmlns/spiffy\"><policy id=OID/><classification lacv=N/>…</label>\n\
    - ESS SecurityLabel, BER/DER (RFC 2634; policy, classification, privacy mark, security categories in the ACP 145 or MISSI syntax)\n\
    - JSON: {\"policy\": OID, \"classification\": N, \"categories\": [{\"tag_set\": OID, \"type\": \"permissive\", \"lacv\": N}], \"privacy_mark\": \"…\"}";

/// Help of `--clearance`.
const CLEARANCE_HELP: &str = "Clearance file, any of these forms (detected from the content):\n\
    - spiffing XML: <clearance xmlns=\"http://surevine.com/xmlns/spiffy\"><policy id=OID/><classification lacv=N/>…</clearance>\n\
    - JSON: {\"policy\": OID, \"classifications\": [N, …], \"categories\": [{\"tag_set\": OID, \"type\": …, \"lacv\": N}]}\n\
    A clearance in another policy than the label: the label is translated into it first (as on traffic)";

/// Help of `--lang`.
const LANG_HELP: &str = "Marking language (the SPIF's xml:lang), e.g. de, fr-CA; falls back to the primary subtag, then the default marking";

#[derive(Subcommand, Debug)]
pub enum SpifCommand {
    /// Check one or more SPIF files (and the equivalences between them).
    Check {
        /// SPIF files: Open XML SPIF 1.0-2.1 (with or without the spif: prefix).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum LabelCommand {
    /// Print the display marking of a label (exit 1 if its SPIF says it is invalid).
    Marking {
        #[arg(long = "spif", required = true, help = SPIF_HELP)]
        spif: Vec<PathBuf>,
        #[arg(long, help = LABEL_HELP)]
        label: PathBuf,
        #[arg(long, help = LANG_HELP)]
        lang: Option<String>,
    },
    /// Validate a label, optionally decide access for a clearance; prints JSON.
    ///
    /// Exit 0: valid (and granted); 1: invalid or denied (reason in the JSON and on stderr);
    /// 2: usage or input error (unreadable file, no label, unknown policy).
    Check {
        #[arg(long = "spif", required = true, help = SPIF_HELP)]
        spif: Vec<PathBuf>,
        #[arg(long, help = LABEL_HELP)]
        label: PathBuf,
        #[arg(long, help = CLEARANCE_HELP)]
        clearance: Option<PathBuf>,
    },
    /// Translate a label into an equivalent policy; prints JSON with the 4774 XML and marking.
    Translate {
        #[arg(long = "spif", required = true, help = SPIF_HELP)]
        spif: Vec<PathBuf>,
        #[arg(long, help = LABEL_HELP)]
        label: PathBuf,
        /// Target policy OID (dotted, `urn:oid:` accepted); a --spif must define it.
        #[arg(long = "to")]
        to: String,
        #[arg(long, help = LANG_HELP)]
        lang: Option<String>,
    },
    /// Write a label in another form (exit 1 if its SPIF says it is invalid).
    Convert {
        #[arg(long = "spif", required = true, help = SPIF_HELP)]
        spif: Vec<PathBuf>,
        #[arg(long, help = LABEL_HELP)]
        label: PathBuf,
        #[arg(long = "to", help = FORM_HELP, value_parser = ["json", "spiffing", "4774", "ber"])]
        to: String,
        /// Write the label to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Help of `label convert --to`.
const FORM_HELP: &str = "Output form: json, spiffing (spiffing XML), 4774 (STANAG 4774 XML), \
    ber (ESS SecurityLabel, DER, binary)";

/// Exit code of a usage or input error.
const INPUT_ERROR: u8 = 2;
/// Exit code of an invalid label or a denial.
const REFUSED: u8 = 1;

/// A usage or input error: printed once, exit 2.
struct InputError(String);

/// The message for an error reading a label or clearance file; the path is named once.
fn file_error(path: &Path, what: &str, e: &LabelError) -> InputError {
    let p = path.display();
    InputError(match e {
        LabelError::Io { message, .. } => format!("{p}: cannot read: {message}"),
        e => match e.not_a_label() {
            Some(why) => format!("{p}: not a {what}: {why}"),
            None => format!("{p}: {e}"),
        },
    })
}

fn load_set(paths: &[PathBuf]) -> Result<SpifSet, InputError> {
    let mut set = SpifSet::new();
    for p in paths {
        let spif = Spif::load(p).map_err(|e| match e {
            // Names its path already.
            SpifError::Io { .. } => InputError(e.to_string()),
            e => InputError(format!("{}: {e}", p.display())),
        })?;
        set.insert(spif)
            .map_err(|e| InputError(format!("{}: {e}", p.display())))?;
    }
    Ok(set)
}

/// Reads a label: input errors (exit 2) apart from a label its policy rejects.
fn read_label(set: &SpifSet, path: &Path) -> Result<Result<Label, LabelError>, InputError> {
    match set.load_label_file(path) {
        Ok(l) => Ok(Ok(l)),
        Err(e) if e.is_input_error() => Err(file_error(path, "security label", &e)),
        Err(e) => Ok(Err(e)),
    }
}

fn read_clearance(set: &SpifSet, path: &Path) -> Result<Clearance, InputError> {
    set.load_clearance_file(path)
        .map_err(|e| file_error(path, "clearance", &e))
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
                    Err(e @ SpifError::Io { .. }) => {
                        // Names its path already.
                        eprintln!("{e}");
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

pub fn run_label(cmd: LabelCommand) -> anyhow::Result<ExitCode> {
    Ok(match label(cmd) {
        Ok(code) => code,
        Err(InputError(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(INPUT_ERROR)
        }
    })
}

fn label(cmd: LabelCommand) -> Result<ExitCode, InputError> {
    match cmd {
        LabelCommand::Marking { spif, label, lang } => {
            let set = load_set(&spif)?;
            let l = match read_label(&set, &label)?.and_then(|l| set.validate(&l).map(|_| l)) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {}: {e}", label.display());
                    return Ok(ExitCode::from(REFUSED));
                }
            };
            let m = set
                .marking(&l, lang.as_deref())
                .map_err(|e| InputError(format!("{}: {e}", label.display())))?;
            println!("{m}");
            Ok(ExitCode::SUCCESS)
        }
        LabelCommand::Check {
            spif,
            label,
            clearance,
        } => {
            let set = load_set(&spif)?;
            let clearance = match &clearance {
                Some(p) => Some(read_clearance(&set, p)?),
                None => None,
            };
            let outcome = read_label(&set, &label)?.and_then(|l| set.validate(&l).map(|_| l));
            let (out, reason) = match outcome {
                Ok(l) => match clearance.as_ref().map(|c| set.decide_access(&l, c)) {
                    None => (
                        json!({"valid": true, "error": null, "access": null, "reason": null}),
                        None,
                    ),
                    Some(Ok(())) => (
                        json!({"valid": true, "error": null, "access": "grant", "reason": null}),
                        None,
                    ),
                    Some(Err(d)) => {
                        let reason = denial(&d);
                        (
                            json!({"valid": true, "error": null, "access": "deny", "reason": reason}),
                            Some(reason),
                        )
                    }
                },
                Err(e) => {
                    let reason = format!("invalid: {e}");
                    let access = clearance.as_ref().map(|_| "deny");
                    (
                        json!({"valid": false, "error": e.to_string(), "access": access, "reason": reason}),
                        Some(reason),
                    )
                }
            };
            println!("{out}");
            Ok(match reason {
                None => ExitCode::SUCCESS,
                Some(r) => {
                    eprintln!("{}: {r}", label.display());
                    ExitCode::from(REFUSED)
                }
            })
        }
        LabelCommand::Convert {
            spif,
            label,
            to,
            out,
        } => convert(&spif, &label, &to, out.as_deref()),
        LabelCommand::Translate {
            spif,
            label,
            to,
            lang,
        } => {
            let set = load_set(&spif)?;
            let to: Oid = to.parse().map_err(|e| InputError(format!("--to: {e}")))?;
            if set.get(&to).is_none() {
                return Err(InputError(format!("--to: no --spif defines policy {to}")));
            }
            let translated = read_label(&set, &label)?.and_then(|l| set.translate(&l, &to));
            match translated {
                Ok(t) => {
                    let rendered = set
                        .to_4774_xml(&t)
                        .and_then(|xml| Ok((xml, set.marking(&t, lang.as_deref())?)))
                        .map_err(|e| InputError(format!("{}: {e}", label.display())))?;
                    println!("{}", json!({"label": rendered.0, "marking": rendered.1}));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: translation to {to} failed: {e}");
                    Ok(ExitCode::from(REFUSED))
                }
            }
        }
    }
}

/// `label convert`: the label in the form `to`, on stdout or into `out`.
fn convert(
    spif: &[PathBuf],
    label: &Path,
    to: &str,
    out: Option<&Path>,
) -> Result<ExitCode, InputError> {
    let set = load_set(spif)?;
    let l = match read_label(&set, label)?.and_then(|l| set.validate(&l).map(|_| l)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {}: {e}", label.display());
            return Ok(ExitCode::from(REFUSED));
        }
    };
    let bytes = match to {
        "json" => Ok(format!("{}\n", l.to_json()).into_bytes()),
        "spiffing" => Ok(format!("{}\n", l.to_spiffing_xml()).into_bytes()),
        "4774" => set.to_4774_xml(&l).map(|x| format!("{x}\n").into_bytes()),
        _ => set.to_ber(&l),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) if e.is_input_error() => {
            return Err(InputError(format!("{}: {e}", label.display())))
        }
        Err(e) => {
            eprintln!("error: {}: {e}", label.display());
            return Ok(ExitCode::from(REFUSED));
        }
    };
    match out {
        Some(p) => std::fs::write(p, &bytes)
            .map_err(|e| InputError(format!("{}: cannot write: {e}", p.display())))?,
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| InputError(format!("stdout: {e}")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The reason of a denial, prefixed with its code.
fn denial(d: &AccessDenial) -> String {
    match d {
        AccessDenial::NotCleared(r) => format!("not_cleared: {r}"),
        d => format!("{}: {d}", d.code()),
    }
}
