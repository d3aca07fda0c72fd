//! `grenzwacht ti …`. Owner: helper `ti-pki`.
//!
//! `grenzwacht ti verify-list --jws FILE --roots FILE [--intermediate DER]... [--at RFC3339]`
//! verifies a signed federation list offline, exactly as the guard does
//! ([`super::jws::verify_list_detailed`]). Exit codes: 0 valid (version, entry and domain
//! counts and the signer on stdout), 1 invalid (`invalid: <reason>` on stderr), 2 a usage
//! error or a file that cannot be read (the trust anchors included).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use super::jws::verify_list_detailed;
use super::pki::{rfc3339, unix_seconds, TrustAnchors};

/// `grenzwacht ti` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TiCommand {
    /// Verify a signed federation list (JWS, alg BP256R1) against the TSL roots: exit 0 valid,
    /// 1 invalid, 2 usage error or unreadable file.
    VerifyList(VerifyListArgs),
}

/// Arguments of `ti verify-list`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyListArgs {
    /// The signed federation list (JWS compact serialisation, as the VZD serves it).
    #[arg(long, value_name = "FILE")]
    pub jws: PathBuf,
    /// The TSL root list (JSON array of {"cert": base64 DER, "next", "prev", …}).
    #[arg(long, value_name = "FILE")]
    pub roots: PathBuf,
    /// An intermediate CA certificate (DER), e.g. GEM.KOMP-CA50; repeat for several.
    #[arg(long, value_name = "DER")]
    pub intermediate: Vec<PathBuf>,
    /// Check the certificates' validity at this time (RFC 3339, e.g. 2026-06-01T00:00:00Z)
    /// instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_at)]
    pub at: Option<SystemTime>,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also print the listed domains (sorted), one per line (with --json: a "domains" array).
    #[arg(long)]
    pub domains: bool,
}

/// Runs a `ti` subcommand.
pub fn run(cmd: TiCommand) -> ExitCode {
    match cmd {
        TiCommand::VerifyList(args) => verify_list_cmd(&args),
    }
}

fn verify_list_cmd(args: &VerifyListArgs) -> ExitCode {
    let jws = match std::fs::read(&args.jws) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.jws.display());
            return ExitCode::from(2);
        }
    };
    let anchors = match TrustAnchors::load(&args.roots, &args.intermediate) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: trust anchors: {e}");
            return ExitCode::from(2);
        }
    };
    let at = args.at.unwrap_or_else(SystemTime::now);
    let at_text = rfc3339(unix_seconds(at));
    match verify_list_detailed(&jws, &anchors, at) {
        Ok(v) => {
            let mut domains: Vec<&str> = v.list.domains().collect();
            domains.sort_unstable();
            if args.json {
                let mut out = serde_json::json!({
                    "valid": true,
                    "version": v.list.version,
                    "entries": v.list.entry_count(),
                    "domains_distinct": v.list.len(),
                    "skipped": v.list.skipped(),
                    "at": at_text,
                    "signer": {
                        "subject": v.signer.subject,
                        "not_before": v.signer.not_before,
                        "not_after": v.signer.not_after,
                        "path": v.signer.path,
                    },
                });
                if args.domains {
                    out["domains"] = serde_json::json!(domains);
                }
                println!("{out}");
            } else {
                println!(
                    "valid: federation list version {}, {} entries ({} distinct domains, {} skipped)",
                    v.list.version,
                    v.list.entry_count(),
                    v.list.len(),
                    v.list.skipped()
                );
                println!("signer: {}", v.signer.subject);
                println!("  valid {} to {}", v.signer.not_before, v.signer.not_after);
                println!("  path: {}", v.signer.path.join(" -> "));
                println!("checked at: {at_text}");
                if args.domains {
                    for d in domains {
                        println!("{d}");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "valid": false,
                        "kind": e.as_str(),
                        "reason": e.to_string(),
                        "at": at_text,
                    })
                );
            }
            ExitCode::from(1)
        }
    }
}

/// RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) or a date (midnight UTC).
fn parse_at(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time (e.g. 2026-06-01T00:00:00Z)");
    let num = |s: &str| -> Result<u32, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let t = text.trim();
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let dp: Vec<&str> = date.split('-').collect();
    let [y, mo, d] = dp.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || mo.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let month =
        time::Month::try_from(u8::try_from(num(mo)?).map_err(|_| bad())?).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(
        i32::try_from(num(y)?).map_err(|_| bad())?,
        month,
        u8::try_from(num(d)?).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    let (secs_of_day, offset) = match rest {
        None => (0i64, 0i64),
        Some(r) => {
            let (clock, offset) = if let Some(c) = r.strip_suffix(['Z', 'z']) {
                (c, 0i64)
            } else if r.len() > 6 && matches!(r.as_bytes()[r.len() - 6], b'+' | b'-') {
                let (c, o) = r.split_at(r.len() - 6);
                let sign = if o.starts_with('-') { -1 } else { 1 };
                let (oh, om) = o[1..].split_once(':').ok_or_else(bad)?;
                if oh.len() != 2 || om.len() != 2 {
                    return Err(bad());
                }
                (
                    c,
                    sign * (i64::from(num(oh)?) * 3600 + i64::from(num(om)?) * 60),
                )
            } else {
                return Err(bad());
            };
            let clock = clock.split_once('.').map_or(clock, |(c, frac)| {
                if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    ""
                } else {
                    c
                }
            });
            let cp: Vec<&str> = clock.split(':').collect();
            let [h, mi, s] = cp.as_slice() else {
                return Err(bad());
            };
            if h.len() != 2 || mi.len() != 2 || s.len() != 2 {
                return Err(bad());
            }
            let (h, mi, s) = (num(h)?, num(mi)?, num(s)?);
            if h > 23 || mi > 59 || s > 60 {
                return Err(bad());
            }
            (i64::from(h * 3600 + mi * 60 + s.min(59)), offset)
        }
    };
    // Julian day number of 1970-01-01
    let days = i64::from(date.to_julian_day()) - 2_440_588;
    let unix = days * 86_400 + secs_of_day - offset;
    if unix >= 0 {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs()))
    } else {
        Ok(SystemTime::UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests;
