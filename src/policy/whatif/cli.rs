//! `grenzwacht policy replay`: the command around [`super::replay`].
//!
//! Exit codes: 0 the replay ran (whether or not decisions change); 1 a rule set that does not
//! load, an unreadable or malformed corpus or audit log.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::{parse_events, read_audit, replay};
use crate::policy::dlp::layer::DlpPolicy;
use crate::policy::dlp::RuleSet;
use crate::policy::rules::{Rules, RulesPolicy};
use crate::policy::{Layers, StaticPolicy};

/// Arguments of `policy replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The candidate DLP rule directory.
    #[arg(long)]
    pub policies: PathBuf,
    /// A JSON-lines corpus of recorded events (format: `policy::whatif`).
    #[arg(long, conflicts_with = "audit", required_unless_present = "audit")]
    pub events: Option<PathBuf>,
    /// An audit log directory whose decision records stored the events' content.
    #[arg(long)]
    pub audit: Option<PathBuf>,
    /// The guard's configuration: its `[[rule]]` list judges with both rule sets, and its
    /// `[dlp] policies` is the current rule set for events without a recorded verdict.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The current DLP rule directory (instead of the one `--config` names).
    #[arg(long)]
    pub current: Option<PathBuf>,
    /// Also list decisions whose verdict stays but whose matched rules change.
    #[arg(long)]
    pub include_rule_changes: bool,
}

fn dlp_layer(dir: &Path) -> anyhow::Result<Arc<DlpPolicy>> {
    let set = RuleSet::load_dir(dir)
        .map_err(|d| anyhow::anyhow!("{d}\n{} problem(s) in {}", d.0.len(), dir.display()))?;
    Ok(Arc::new(DlpPolicy::new(set.engine())))
}

/// Runs `policy replay`: prints one JSON line per changed decision.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let cfg = match &args.config {
        Some(p) => Some(crate::config::Config::load(p).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let base: Option<Arc<RulesPolicy>> = match &cfg {
        Some(c) => Some(Arc::new(RulesPolicy {
            base: StaticPolicy::from_config(&c.policy),
            rules: Rules::compile(&c.rules).context("[[rule]]")?,
        })),
        None => None,
    };
    let stack = |dlp: Arc<DlpPolicy>| {
        let mut l = Layers::new();
        if let Some(b) = &base {
            l = l.with("config", b.clone());
        }
        l.with("dlp", dlp)
    };
    let current_dir = args.current.clone().or_else(|| {
        cfg.as_ref()
            .and_then(|c| c.dlp.as_ref())
            .map(|d| d.policies.clone())
    });
    let current = match &current_dir {
        Some(d) => {
            Some(stack(dlp_layer(d).with_context(|| {
                format!("current rule set {}", d.display())
            })?))
        }
        None => None,
    };
    let candidate = stack(
        dlp_layer(&args.policies)
            .with_context(|| format!("candidate rule set {}", args.policies.display()))?,
    );
    let items = match (&args.events, &args.audit) {
        (Some(f), _) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            parse_events(&text).with_context(|| f.display().to_string())?
        }
        (None, Some(dir)) => {
            let (items, skipped) = read_audit(dir)?;
            if skipped > 0 {
                eprintln!(
                    "{skipped} decision record(s) without a stored event skipped ([audit] store_content = true records it)"
                );
            }
            items
        }
        (None, None) => anyhow::bail!("give --events FILE or --audit DIR"),
    };
    let changes = replay(
        current.as_ref().map(|c| c as &dyn crate::policy::Policy),
        &candidate,
        &items,
        args.include_rule_changes,
    )?;
    for c in &changes {
        println!("{}", serde_json::to_string(c).context("encoding a change")?);
    }
    eprintln!("{} of {} decisions change", changes.len(), items.len());
    Ok(ExitCode::SUCCESS)
}
