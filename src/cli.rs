//! Command-line interface (the only place where `anyhow` is used).
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::proxy::{Guard, Listeners};

#[derive(Parser, Debug)]
#[command(
    name = "grenzwacht",
    version,
    about = "Cross-domain guard and federation border proxy for Matrix"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the guard.
    Serve {
        #[arg(long, short, env = "GRENZWACHT_CONFIG")]
        config: PathBuf,
        /// Run as this half of a split appliance; the config's `[split] half` must say the
        /// same (a guard never starts as the wrong half).
        #[arg(long, value_parser = ["high", "low"])]
        half: Option<String>,
    },
    /// Validate the configuration (and every file it references) without starting.
    Check {
        #[arg(long, short, env = "GRENZWACHT_CONFIG")]
        config: PathBuf,
    },
    /// Interception CA for the CONNECT path.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// A local lab: two (or three) real Synapse homeservers federating through the guard.
    Lab {
        #[command(subcommand)]
        command: crate::lab::LabCommand,
    },
    /// Federation load generator: direct vs. through the guard, in one run.
    Bench(crate::bench::BenchArgs),
    /// Security policy information files (SPIF).
    Spif {
        #[command(subcommand)]
        command: crate::spif::cli::SpifCommand,
    },
    /// Security labels: markings, validation, access, translation.
    Label {
        #[command(subcommand)]
        command: crate::spif::cli::LabelCommand,
    },
    /// DLP rule authoring: check, test and explain the rule files.
    Policy {
        #[command(subcommand)]
        command: crate::policy::dlp::cli::PolicyCommand,
    },
    /// Paused rooms: list them, lift a pause.
    Rooms {
        #[command(subcommand)]
        command: crate::proxy::pause::cli::RoomsCommand,
    },
    /// Held events through the admin API: list, show, release, reject.
    Review(crate::admin::client::ReviewArgs),
    /// Federation signing keys (the guard key of `[keys] guard_key`) and the audit key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The audit log: verify its chain, query it, export it.
    Audit {
        #[command(subcommand)]
        command: crate::audit::cli::AuditCommand,
    },
    /// TI-Messenger: verify a signed federation list offline.
    Ti {
        #[command(subcommand)]
        command: crate::ti::cli::TiCommand,
    },
    /// Diode frames (hw/FRAMES.md): the reference verifier, test vectors, character tables.
    Hw {
        #[command(subcommand)]
        command: crate::diode::cli::HwCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a new ed25519 signing key in Synapse's `signing.key` format (`ed25519 VERSION
    /// SEED`, mode 0600); refuses to overwrite an existing file.
    Generate {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
        /// Key version: the key id is `ed25519:VERSION` (letters, digits, `_`).
        #[arg(long, default_value = "gw1")]
        version: String,
        /// `guard`: a federation signing key; `audit`: the key that signs audit checkpoints
        /// (`[audit] key_file`), and its public key is also written to OUT.pub (for
        /// `grenzwacht audit verify --key`).
        #[arg(long, value_enum, default_value = "guard")]
        kind: KeyKind,
    },
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Guard,
    Audit,
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create a new interception CA (ca.crt, ca.key) in DIR; refuses to overwrite.
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text is already in the
/// line (typed errors usually show their source in their own message, so `{:#}` repeats it).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let m = cause.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
    }
    out
}

fn load_config(path: &PathBuf) -> Result<Config, ExitCode> {
    Config::load_for_use(path).map_err(|errs| {
        eprintln!("{errs}");
        ExitCode::from(2)
    })
}

/// The store's directory exists, is a directory and is writable by this process (checked with
/// `access(2)`, nothing is created).
fn store_dir_usable(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let meta = std::fs::metadata(&dir).map_err(|e| format!("directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| "path contains NUL".to_string())?;
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(format!(
            "directory {} is not writable: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    if path.exists() {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| "path contains NUL".to_string())?;
        // SAFETY: as above.
        if unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) } != 0 {
            return Err(format!(
                "not readable and writable: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn generate_key(out: &std::path::Path, version: &str, kind: KeyKind) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = crate::keys::SigningKey::generate(version).context("invalid key version")?;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("{}: exists; not overwriting a key", out.display());
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", out.display())),
    };
    f.write_all(format!("{}\n", key.to_synapse_string()).as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    f.sync_all()
        .with_context(|| format!("writing {}", out.display()))?;
    if kind == KeyKind::Audit {
        let public = crate::audit::verify::PublicKey {
            key_id: key.key_id(),
            key: key.public_key(),
        };
        let mut pub_path = out.as_os_str().to_owned();
        pub_path.push(".pub");
        std::fs::write(&pub_path, public.to_file_string())
            .with_context(|| format!("writing {}", PathBuf::from(&pub_path).display()))?;
    }
    println!(
        "{}: {} (public key {})",
        out.display(),
        key.key_id(),
        key.public_key_base64()
    );
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keys {
            command: KeysCommand::Generate { out, version, kind },
        } => generate_key(&out, &version, kind),
        Command::Audit { command } => crate::audit::cli::run(command),
        Command::Check { config } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            // What `serve` needs of the store, checked without writing anything: its directory.
            if let Err(e) = store_dir_usable(&cfg.store.path) {
                eprintln!(
                    "{}: [store] path {}: {e}",
                    config.display(),
                    cfg.store.path.display()
                );
                return Ok(ExitCode::from(2));
            }
            // The configured store itself, read-only: identity, schema, integrity, writability.
            match crate::store::inspect_file(&cfg.store.path) {
                Ok(crate::store::Inspection::Absent) => println!(
                    "{}: [store] path {}: no store yet (serve creates it)",
                    config.display(),
                    cfg.store.path.display()
                ),
                Ok(crate::store::Inspection::Sound { warnings, .. }) => {
                    for w in warnings {
                        eprintln!("{}: [store] warning: {w}", config.display());
                    }
                }
                Err(e) => {
                    eprintln!("{}: [store] path: {e}", config.display());
                    return Ok(ExitCode::from(2));
                }
            }
            match &cfg.audit {
                Some(a) => {
                    if let Err(e) = crate::audit::check_config(a) {
                        eprintln!("{}: [audit]: {e}", config.display());
                        return Ok(ExitCode::from(2));
                    }
                }
                None => {
                    eprintln!("{}: {AUDIT_REQUIRED}", config.display());
                    return Ok(ExitCode::from(2));
                }
            }
            // Building the runtime object loads every certificate, key and CA it references.
            let store = crate::store::Store::open_in_memory().context("in-memory store")?;
            if let Err(e) = Guard::from_config(&cfg, store) {
                eprintln!("{}: {e}", config.display());
                return Ok(ExitCode::from(2));
            }
            println!("{}: OK", config.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config, half } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let configured = cfg.split.as_ref().map(|s| s.half.as_str());
            if half.as_deref() != configured {
                eprintln!(
                    "{}: `--half {}` but the config {}",
                    config.display(),
                    half.as_deref().unwrap_or("(none)"),
                    match configured {
                        Some(h) => format!("is the {h} half (`[split] half = \"{h}\"`)"),
                        None => "has no `[split]` section".to_string(),
                    }
                );
                return Ok(ExitCode::from(2));
            }
            crate::telemetry::init_tracing(cfg.log.format == LogFormat::Json, &cfg.log.level)
                .context("logging")?;
            crate::telemetry::describe();
            let Some(audit_cfg) = &cfg.audit else {
                eprintln!("{}: {AUDIT_REQUIRED}", config.display());
                return Ok(ExitCode::from(2));
            };
            let store = match crate::store::Store::open(&cfg.store.path) {
                Ok(s) => s,
                Err(e) => {
                    // Say what is wrong with the file and what to do, not only SQLite's word;
                    // exit 2 like a configuration error (the unit does not restart on it).
                    let why = match crate::store::inspect_file(&cfg.store.path) {
                        Err(diagnosis) => diagnosis.to_string(),
                        Ok(_) => error_chain(&anyhow::Error::new(e)),
                    };
                    tracing::error!("cannot open the store: {why}");
                    eprintln!("{}: [store] path: {why}", config.display());
                    return Ok(ExitCode::from(2));
                }
            };
            let mut guard =
                Guard::from_config(&cfg, store).with_context(|| format!("{}", config.display()))?;
            let auditor = crate::audit::Auditor::open(audit_cfg)
                .with_context(|| format!("audit log {}", audit_cfg.dir.display()))?;
            guard.set_auditor(auditor.clone());
            let guard = Arc::new(guard);
            guard.set_config_file(&config);
            guard.set_load_observer(crate::proxy::audit_trail::load_observer(auditor.clone()));
            let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
            rt.block_on(async move {
                reload_on_sighup(guard.clone());
                let listeners = Listeners::bind(&cfg).await?;
                crate::proxy::serve(guard, listeners, shutdown_signal()).await;
                // The last checkpoint: a cut tail after it is detectable.
                if let Err(e) = auditor.close().await {
                    tracing::error!(error = %e, "audit log: closing failed");
                }
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ca {
            command: CaCommand::Init { dir },
        } => {
            let path = crate::proxy::ca::InterceptionCa::init(&dir)
                .with_context(|| format!("ca init {}", dir.display()))?;
            println!("interception CA written: {}", path.display());
            println!("make the protected homeserver trust it (Synapse: federation_custom_ca_list)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab { command } => {
            crate::lab::run(command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            crate::bench::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Spif { command } => crate::spif::cli::run_spif(command),
        Command::Label { command } => crate::spif::cli::run_label(command),
        Command::Policy { command } => {
            crate::policy::dlp::cli::run_with(command, &[&crate::media::yara::PolicyCheck])
        }
        Command::Review(args) => Ok(crate::admin::client::run(args)),
        Command::Ti { command } => Ok(crate::ti::cli::run(command)),
        Command::Hw { command } => Ok(crate::diode::cli::run(command)),
        Command::Rooms { command } => {
            // The lift is logged like the guard logs (stderr), for the operator's record.
            crate::telemetry::init_tracing(false, "warn").context("logging")?;
            Ok(crate::proxy::pause::cli::run(command))
        }
    }
}

/// Why `serve` and `check` refuse a configuration without `[audit]`.
const AUDIT_REQUIRED: &str = "[audit] is required: the guard records every decision before it takes effect (dir and key_file; see deploy/grenzwacht.example.toml and `grenzwacht keys generate --kind audit`)";

/// SIGHUP reloads the DLP rule set (`Guard::reload_policies`): a rule set that fails to load, or
/// that lacks a rule file or rule id of the running one, is refused and the running one stays.
/// SIGUSR1 reloads and accepts a smaller rule set (`Guard::reload_policies_accepting_smaller`).
/// Other configuration changes need a restart (logged).
fn reload_on_sighup(guard: Arc<Guard>) {
    #[cfg(unix)]
    for (kind, accept_smaller) in [
        (tokio::signal::unix::SignalKind::hangup(), false),
        (tokio::signal::unix::SignalKind::user_defined1(), true),
    ] {
        let Ok(mut sig) = tokio::signal::unix::signal(kind) else {
            continue;
        };
        let guard = guard.clone();
        tokio::spawn(async move {
            while sig.recv().await.is_some() {
                if accept_smaller {
                    tracing::warn!(
                        "SIGUSR1 received: reloading the DLP rule set, accepting a smaller one"
                    );
                } else {
                    tracing::info!("SIGHUP received: reloading the DLP rule set (other configuration changes need a restart)");
                }
                let g = guard.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if accept_smaller {
                        g.reload_policies_accepting_smaller()
                    } else {
                        g.reload_policies()
                    }
                })
                .await;
            }
        });
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod error_chain_tests {
    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        // An error that prints its source in its own message and also returns it as source.
        #[derive(Debug, thiserror::Error)]
        #[error("{path}: {source}")]
        struct Repeats {
            path: String,
            #[source]
            source: std::io::Error,
        }
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(Repeats {
            path: "/x.xml".into(),
            source: io,
        })
        .context("loading SPIFs");
        assert_eq!(format!("{e:#}").matches("No such file").count(), 2);
        assert_eq!(
            super::error_chain(&e),
            "loading SPIFs: /x.xml: No such file"
        );
        let e = anyhow::anyhow!("outer").context("ctx");
        assert_eq!(super::error_chain(&e), "ctx: outer");
    }
}
