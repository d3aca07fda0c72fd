//! `grenzwacht lab`: two (or three) real Synapse homeservers on loopback with the guard between them.
//!
//! The lab is a product feature: security officers try policies against real homeservers with
//! it, the end-to-end tests run on it, and `grenzwacht lab demo` shows it working. Keep its
//! layout and `lab.json` stable (new keys may be added, none are removed).
//!
//! # Topology
//!
//! ```text
//!                     ┌──────────────── guard ────────────────┐
//!  hs2 (remote) ─TLS─▶│ inbound 127.0.0.1:I  ──http──▶ hs1 fed │ hs1 (protected)
//!  fed TLS :F2  ◀─TLS─│ outbound CONNECT :O  or  proxy :O  ◀── │ server_name 127.0.0.1:I
//!                     └────────────────────────────────────────┘
//! ```
//!
//! - **hs1** is protected. Its `server_name` is `127.0.0.1:<guard inbound port>`, so every
//!   remote reaches it through the guard's TLS listener, which presents a certificate for
//!   `127.0.0.1` (IP SAN) from the lab's throwaway test CA and forwards to hs1's federation
//!   listener (plain http on loopback). hs1's outbound federation leaves through the guard:
//!   - `--outbound connect` (default): hs1's `https_proxy` is the guard's CONNECT listener and
//!     hs1 trusts only the guard's interception CA (`federation_custom_ca_list`). This is the
//!     default because any homeserver that honours `https_proxy` can use it;
//!   - `--outbound synapse-proxy`: Synapse's outbound federation proxy protocol
//!     (`instance_map` + `outbound_federation_restricted_to` + `worker_replication_secret`).
//! - **hs2** is the remote: a TLS federation listener with a test-CA certificate for
//!   `127.0.0.1`, `server_name` `127.0.0.1:<its port>`, trusting only the test CA.
//! - The guard trusts the test CA for destinations (`outbound.roots`) and has discovery off.
//! - With `--servers 3`, **hs3** is a second remote like hs2 (its own TLS federation
//!   listener and port). hs2 and hs3 federate with each other directly, past the guard — as
//!   two remote servers sharing a room with the protected one do. With labels, hs3 has its
//!   own, lower clearance (`lab::guard::LabLabels`).
//!
//! All server names are IP literals with ports: no name is ever resolved through DNS (Synapse
//! skips well-known and SRV for them, see `/work/notes/synapse-lab.md`).
//!
//! # Files (`DIR/…`)
//!
//! `lab.json` (the contract, see [`LabInfo`]), `pids.json` (what `down` stops), `guard.toml`,
//! `guard.log`, `certs/` (test CA and leaves), `interception-ca/` (connect mode),
//! `hs1/` and `hs2/` (`homeserver.yaml`, `log.yaml`, `signing.key`, `homeserver.log`,
//! `stdout.log`, database, media). `up` refuses a non-empty directory that is not a lab; on a
//! previous (stopped) lab it starts afresh (new ports mean new server names, so old state
//! cannot be reused).
//!
//! # Processes
//!
//! Started in their own process groups and recorded in `pids.json` with their argv; `down`
//! signals only PIDs whose `/proc/PID/cmdline` still matches (SIGTERM, SIGKILL after 10 s).
//! `up` returns when the guard's `/health` is 200, both homeservers answer
//! `/_matrix/client/versions` and every listener accepts connections; if a process exits
//! first, `up` stops the others and fails with the tail of its log.
pub mod client;
mod demo;
pub mod guard;
pub mod metrics;
pub mod process;
pub mod split;
pub mod synapse;
pub mod ti;

use crate::proxy::ca;

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use demo::{demo, DemoOptions};
pub use synapse::SYNAPSE_VERSION;

use client::MatrixClient;
use guard::{GuardConfig, GuardOutbound};
use process::{PidFile, ProcessRecord, StopOutcome};
use synapse::{HsConfig, Outbound};

/// File name of the lab description inside a lab directory.
pub const LAB_FILE: &str = "lab.json";
/// Default time `up` waits for everything to answer.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);
/// Grace period between SIGTERM and SIGKILL in `down`.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Lifetime of the lab's TLS certificates.
const CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// How the protected homeserver's outbound federation reaches the guard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OutboundMode {
    /// hs1 uses the guard as `https_proxy` (HTTP CONNECT, TLS intercepted with the guard's CA).
    /// Works with any homeserver that honours `https_proxy`.
    #[default]
    Connect,
    /// Synapse's outbound federation proxy protocol (`outbound_federation_restricted_to`).
    SynapseProxy,
}

impl std::fmt::Display for OutboundMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutboundMode::Connect => "connect",
            OutboundMode::SynapseProxy => "synapse-proxy",
        })
    }
}

/// `grenzwacht lab …` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LabCommand {
    /// Install the pinned Synapse into the lab venv (`lab up` does this on first use).
    Setup {
        /// Python used to create the venv (default `$GRENZWACHT_PYTHON` or `python3`).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Start two (or three) Synapse homeservers with the guard between them; returns when all
    /// answer.
    Up {
        /// Lab directory (created; must be empty or a previous lab).
        #[arg(long)]
        dir: PathBuf,
        /// How hs1's outbound federation reaches the guard.
        #[arg(long, value_enum, default_value_t = OutboundMode::Connect)]
        outbound: OutboundMode,
        /// The guard binary to run (default: this executable).
        #[arg(long)]
        guard_bin: Option<PathBuf>,
        /// Remote server names the guard refuses in both directions (repeatable).
        #[arg(long = "deny-server")]
        deny_servers: Vec<String>,
        /// Security labels: hs1's side uses the shipped DEU-VS policy, hs2's side NATO
        /// (`[labels]` in guard.toml, see `lab::guard::LAB_LABELS`).
        #[arg(long)]
        labels: bool,
        /// TI-Messenger profile: a federation list signed by a throwaway brainpool test PKI
        /// (`DIR/ti/`), hs2 on 127.0.0.2, a client-server listener in front of hs1.
        #[arg(long)]
        ti: bool,
        /// Number of homeservers: 2 (hs1 protected, hs2 remote) or 3 (a second remote, hs3,
        /// federating with hs2 directly; with `--labels` cleared lower than hs2).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
        servers: u8,
        /// Split appliance: the guard as two halves joined by two one-way UDP links, each
        /// through a relay that drops this share of datagrams (e.g. 0.01); see `lab::split`.
        #[arg(long, value_name = "LOSS")]
        split: Option<f64>,
    },
    /// Stop exactly the processes `lab up` started in DIR.
    Down {
        /// Lab directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// A scripted conversation between alice@hs1 and bob@hs2 through the guard, then what the
    /// guard saw.
    Demo {
        /// Lab directory (a running lab there is reused).
        #[arg(long)]
        dir: PathBuf,
        /// How hs1's outbound federation reaches the guard (when the lab is started).
        #[arg(long, value_enum, default_value_t = OutboundMode::Connect)]
        outbound: OutboundMode,
        /// Leave the lab running afterwards.
        #[arg(long)]
        keep: bool,
        /// The guard binary to run (default: this executable).
        #[arg(long)]
        guard_bin: Option<PathBuf>,
    },
}

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be read or written.
    #[error("{path}: {source}")]
    Json {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The lab's homeservers did not accept a set-up request (admin user registration).
    #[error("lab set-up: {0}")]
    Setup(String),
    /// Creating or checking the Synapse venv failed.
    #[error("synapse venv: {0}")]
    Venv(String),
    /// Certificate generation failed.
    #[error("test certificates: {0}")]
    Ca(String),
    /// A process could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// Which process.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A lab process exited while starting.
    #[error("{name} exited during start-up ({status}); last log lines:\n{log_tail}")]
    ProcessDied {
        /// Which process.
        name: String,
        /// Exit status.
        status: String,
        /// Tail of its log(s).
        log_tail: String,
    },
    /// Start-up did not finish in time.
    #[error("lab not ready after {waited:?}; waiting for: {pending}\n{log_tails}")]
    StartTimeout {
        /// How long `up` waited.
        waited: Duration,
        /// What had not answered.
        pending: String,
        /// Tails of all logs.
        log_tails: String,
    },
    /// `up` on a directory whose lab is still running.
    #[error("a lab is already running in {0} (run `grenzwacht lab down --dir {0}` first)")]
    AlreadyRunning(PathBuf),
    /// `up` on a non-empty directory that is not a lab.
    #[error("{0} is not empty and holds no lab.json; refusing to use it")]
    NotALab(PathBuf),
    /// No lab described in the directory.
    #[error("no lab in {0} (no lab.json)")]
    NoLab(PathBuf),
    /// Some processes could not be stopped.
    #[error("could not stop: {0}")]
    StopFailed(String),
    /// A client-API step failed (demo).
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

/// Options of [`up`].
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Lab directory.
    pub dir: PathBuf,
    /// Outbound way of hs1.
    pub outbound: OutboundMode,
    /// Guard binary (`<guard_bin> serve --config DIR/guard.toml`).
    pub guard_bin: PathBuf,
    /// `[policy] deny_servers` of the guard.
    pub deny_servers: Vec<String>,
    /// Synapse venv (default [`synapse::default_venv`]).
    pub venv: Option<PathBuf>,
    /// Python used to create the venv (default `$GRENZWACHT_PYTHON` or `python3`).
    pub python: Option<PathBuf>,
    /// How long to wait for everything to answer.
    pub start_timeout: Duration,
    /// Print progress to stderr.
    pub verbose: bool,
    /// Security labels on (default off): the guard gets a `[labels]` section with the shipped
    /// SPIFs (written to `DIR/spif/`), hs1's side DEU-VS, hs2's side NATO.
    pub labels: bool,
    /// Sender notices on (default off): the guard tells alice-side senders, through hs1's
    /// server notices, which of their events it redacted or held (`[notices]`, English).
    pub notices: bool,
    /// UNSAFE, for harness checks only: `[media] allow_unscanned = true` (media crosses
    /// uninspected). Default off: the guard inspects every file.
    pub media_allow_unscanned: bool,
    /// TI-Messenger profile (default off): hs2 on 127.0.0.2, the guard with `[ti]` — a
    /// federation list signed by a throwaway brainpool test PKI (`DIR/ti/`, both servers
    /// listed), hs1's permission configs read through its admin API, and a client-server
    /// listener in front of hs1 (`guard.ti_client_url`).
    pub ti: bool,
    /// Number of homeservers, 2 (default) or 3: hs3 is a second remote server (see the
    /// module docs); not with `ti`.
    pub servers: u8,
    /// Split appliance with this datagram loss on both links (`lab::split`); not with `ti`,
    /// `labels` or three servers.
    pub split: Option<f64>,
}

impl LabOptions {
    /// Defaults: guard binary = the current executable, no denied servers, default venv.
    pub fn new(dir: impl Into<PathBuf>, outbound: OutboundMode) -> LabOptions {
        LabOptions {
            dir: dir.into(),
            outbound,
            guard_bin: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("grenzwacht")),
            deny_servers: Vec::new(),
            venv: None,
            python: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            verbose: false,
            labels: false,
            notices: false,
            media_allow_unscanned: false,
            ti: false,
            servers: 2,
            split: None,
        }
    }
}

/// One homeserver in `lab.json`. The first four fields are a stable contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HomeserverInfo {
    /// `hs1` (protected), `hs2` or `hs3` (remote).
    pub name: String,
    /// Matrix server name (`127.0.0.1:PORT`).
    pub server_name: String,
    /// Client-server API base URL (plain http on loopback; serves `/_synapse/admin` too).
    pub client_url: String,
    /// Secret for `/_synapse/admin/v1/register`.
    pub registration_shared_secret: String,
    /// Whether the guard protects this homeserver.
    pub protected: bool,
    /// The homeserver's own federation listener (hs1: plain http behind the guard).
    pub federation_url: String,
    /// Its `homeserver.yaml`.
    pub config: PathBuf,
    /// Its Synapse log (access log included).
    pub log: PathBuf,
    /// Its signing key (Synapse format, key id [`synapse::SIGNING_KEY_ID`]).
    pub signing_key: PathBuf,
}

/// The guard in `lab.json`. `admin_url` is a stable contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GuardInfo {
    /// Admin listener (`/health`, `/metrics`).
    pub admin_url: String,
    /// Inbound TLS listener (hs1's public federation address).
    pub inbound_addr: SocketAddr,
    /// `https://` URL of the inbound listener.
    pub inbound_url: String,
    /// Outbound way.
    pub outbound_mode: OutboundMode,
    /// The outbound listener (CONNECT or proxy protocol).
    pub outbound_addr: SocketAddr,
    /// The outbound proxy secret: the proxy protocol's bearer token, or the password of
    /// hs1's CONNECT credentials.
    pub proxy_secret: Option<String>,
    /// Interception CA certificate (connect mode).
    pub interception_ca_cert: Option<PathBuf>,
    /// Remote server names the guard refuses.
    pub deny_servers: Vec<String>,
    /// `guard.toml`.
    pub config: PathBuf,
    /// Guard stdout/stderr.
    pub log: PathBuf,
    /// The admin API's principals and their token files (`grenzwacht review --admin
    /// ADMIN_URL --token-file FILE`): `lab-reviewer`, `lab-reviewer2`, `lab-auditor`,
    /// `lab-admin`.
    #[serde(default)]
    pub review_tokens: std::collections::BTreeMap<String, PathBuf>,
    /// The guard's audit log (`[audit] dir`; `grenzwacht audit verify|query DIR`).
    pub audit_dir: PathBuf,
    /// The public key of the audit key (`grenzwacht audit verify --key`).
    pub audit_public_key: PathBuf,
    /// TI lab: the guard's client-server listener in front of hs1 (`http://…`).
    #[serde(default)]
    pub ti_client_url: Option<String>,
}

/// `DIR/lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabInfo {
    /// hs1 then hs2 (then hs3).
    pub homeservers: Vec<HomeserverInfo>,
    /// The guard.
    pub guard: GuardInfo,
    /// The lab directory.
    pub dir: PathBuf,
    /// Synapse version of the lab.
    pub synapse_version: String,
    /// The test CA certificate (roots of all lab federation certificates but the intercepted).
    pub ca_cert: PathBuf,
    /// The split appliance (`lab up --split`): its halves and relays. `guard` then describes
    /// the HIGH half, but for `inbound_*` (the LOW half's listener).
    #[serde(default)]
    pub split: Option<split::SplitInfo>,
}

impl LabInfo {
    /// Reads `dir/lab.json`.
    pub fn load(dir: &Path) -> Result<LabInfo, LabError> {
        let path = dir.join(LAB_FILE);
        let bytes = fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                LabError::NoLab(dir.to_path_buf())
            } else {
                LabError::Io {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|source| LabError::Json { path, source })
    }

    /// The homeserver called `name`.
    pub fn homeserver(&self, name: &str) -> Option<&HomeserverInfo> {
        self.homeservers.iter().find(|h| h.name == name)
    }

    /// The protected homeserver.
    pub fn hs1(&self) -> &HomeserverInfo {
        self.homeserver("hs1").expect("lab.json has hs1")
    }

    /// The remote homeserver.
    pub fn hs2(&self) -> &HomeserverInfo {
        self.homeserver("hs2").expect("lab.json has hs2")
    }

    /// The second remote homeserver of a lab started with three servers.
    pub fn hs3(&self) -> Option<&HomeserverInfo> {
        self.homeserver("hs3")
    }
}

/// What [`down`] did.
#[derive(Debug, Clone, Default)]
pub struct DownReport {
    /// `(name, pid, outcome)` per recorded process.
    pub processes: Vec<(String, u32, StopOutcome)>,
}

pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), LabError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| LabError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    fs::write(&tmp, bytes).map_err(|source| LabError::Io {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, path).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    fs::write(path, bytes).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)
}

pub(crate) fn mkdir(path: &Path) -> Result<(), LabError> {
    fs::create_dir_all(path).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn random_secret() -> String {
    (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Entries of a lab directory that `up` owns (and removes when starting afresh).
const LAB_ENTRIES: &[&str] = &[
    "hs1",
    "hs2",
    "certs",
    "interception-ca",
    "guard.toml",
    "guard.log",
    ADMIN_TOKENS_DIR,
    LAB_FILE,
    process::PIDS_FILE,
];

/// Whether every process recorded in `dir/pids.json` is still running as started.
pub fn is_running(dir: &Path) -> Result<bool, LabError> {
    Ok(match PidFile::load(dir)? {
        Some(p) if !p.processes.is_empty() => p
            .processes
            .iter()
            .all(|r| process::is_running(r.pid) && process::matches_cmdline(r)),
        _ => false,
    })
}

fn prepare_dir(dir: &Path) -> Result<(), LabError> {
    if !dir.exists() {
        return mkdir(dir);
    }
    if let Some(p) = PidFile::load(dir)? {
        if p.processes
            .iter()
            .any(|r| process::is_running(r.pid) && process::matches_cmdline(r))
        {
            return Err(LabError::AlreadyRunning(dir.to_path_buf()));
        }
    }
    let mut entries = fs::read_dir(dir).map_err(|source| LabError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let empty = entries.next().is_none();
    let is_lab = dir.join(LAB_FILE).exists() || dir.join(process::PIDS_FILE).exists();
    if !empty && !is_lab {
        return Err(LabError::NotALab(dir.to_path_buf()));
    }
    for name in LAB_ENTRIES {
        let p = dir.join(name);
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LabError::Io { path: p, source }),
        }
    }
    Ok(())
}

/// `n` distinct free ports on 127.0.0.1 (all bound at once, then released).
fn free_ports(n: usize) -> Result<Vec<u16>, LabError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| LabError::Io {
            path: "127.0.0.1:0".into(),
            source,
        })?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| LabError::Io {
            path: "127.0.0.1:0".into(),
            source,
        })
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn issue_cert(ca: &ca::Ca, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), LabError> {
    issue_cert_for(ca, dir, stem, "127.0.0.1")
}

fn issue_cert_for(
    ca: &ca::Ca,
    dir: &Path,
    stem: &str,
    host: &str,
) -> Result<(PathBuf, PathBuf), LabError> {
    let (cert, key) = ca
        .issue_pem(&[host.to_string()], CERT_VALIDITY)
        .map_err(|e| LabError::Ca(e.to_string()))?;
    let (cp, kp) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    write_file(&cp, cert.as_bytes())?;
    write_private(&kp, key.as_bytes())?;
    Ok((cp, kp))
}

struct Plan {
    info: LabInfo,
    hs_configs: Vec<HsConfig>,
}

/// Writes certificates, keys and configs; returns what to start.
fn write_lab_files(dir: &Path, opts: &LabOptions) -> Result<Plan, LabError> {
    if !(2..=3).contains(&opts.servers) {
        return Err(LabError::Setup(format!(
            "a lab has 2 or 3 homeservers, not {}",
            opts.servers
        )));
    }
    if opts.split.is_some() && (opts.ti || opts.labels || opts.servers != 2) {
        return Err(LabError::Setup(
            "the split lab has two homeservers, without labels or the TI profile".into(),
        ));
    }
    if opts.split.is_some_and(|l| !(0.0..1.0).contains(&l)) {
        return Err(LabError::Setup("--split LOSS must be in [0, 1)".into()));
    }
    if opts.ti && opts.servers != 2 {
        return Err(LabError::Setup(
            "the TI-Messenger lab has two homeservers".into(),
        ));
    }
    let p = free_ports(15)?;
    let split_ports = split::SplitPorts {
        low_admin: p[10],
        high_receive: p[11],
        low_receive: p[12],
        relay_to_low: p[13],
        relay_to_high: p[14],
    };
    let (hs1_client, hs1_fed, hs2_client, hs2_fed, guard_in, guard_out, guard_admin) =
        (p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    // The TI profile matches domains without port: hs2 gets its own loopback address.
    let hs2_host = if opts.ti { "127.0.0.2" } else { "127.0.0.1" };
    let certs = dir.join("certs");
    mkdir(&certs)?;
    let test_ca =
        ca::Ca::generate("grenzwacht lab test CA").map_err(|e| LabError::Ca(e.to_string()))?;
    test_ca
        .save(&certs)
        .map_err(|e| LabError::Ca(e.to_string()))?;
    let ca_cert = certs.join("ca.crt");
    let (front_crt, front_key) = issue_cert(&test_ca, &certs, "hs1-front")?;
    let (hs2_crt, hs2_key) = issue_cert_for(&test_ca, &certs, "hs2", hs2_host)?;

    let hs1_dir = dir.join("hs1");
    let hs2_dir = dir.join("hs2");
    let hs1_name = format!("127.0.0.1:{guard_in}");
    let hs2_name = format!("{hs2_host}:{hs2_fed}");

    let (hs1_outbound, guard_outbound, proxy_secret, interception_ca_cert, hs1_roots) = match opts
        .outbound
    {
        OutboundMode::Connect => {
            let ca_dir = dir.join("interception-ca");
            let crt = ca::InterceptionCa::init(&ca_dir).map_err(|e| LabError::Ca(e.to_string()))?;
            // hs1 authenticates its CONNECTs with the proxy secret (Basic credentials in
            // its `https_proxy` URL).
            let secret = random_secret();
            (
                Outbound::Connect {
                    proxy_url: format!("http://grenzwacht:{secret}@127.0.0.1:{guard_out}"),
                },
                GuardOutbound::Connect {
                    listen: loopback(guard_out),
                    ca_dir,
                    secret: secret.clone(),
                },
                Some(secret),
                Some(crt.clone()),
                crt,
            )
        }
        OutboundMode::SynapseProxy => {
            let secret = random_secret();
            (
                Outbound::SynapseProxy {
                    port: guard_out,
                    secret: secret.clone(),
                },
                GuardOutbound::SynapseProxy {
                    listen: loopback(guard_out),
                    secret: secret.clone(),
                },
                Some(secret),
                None,
                ca_cert.clone(),
            )
        }
    };

    // The guard key exists before hs1's config: hs1 trusts the guard as its notary.
    let guard_key = crate::keys::SigningKey::generate("gw1")
        .map_err(|e| LabError::Ca(format!("guard key: {e}")))?;
    let hs_configs = vec![
        HsConfig {
            dir: hs1_dir.clone(),
            server_name: hs1_name.clone(),
            client_port: hs1_client,
            federation_port: hs1_fed,
            federation_host: "127.0.0.1".into(),
            federation_tls: None,
            federation_ca: hs1_roots,
            registration_shared_secret: random_secret(),
            outbound: hs1_outbound,
            // A split appliance has no notary: hs1 fetches keys itself, through the halves.
            notary: opts.split.is_none().then(|| {
                (
                    guard::LAB_NOTARY_NAME.to_string(),
                    guard_key.key_id(),
                    guard_key.public_key_base64(),
                )
            }),
        },
        HsConfig {
            dir: hs2_dir.clone(),
            server_name: hs2_name.clone(),
            client_port: hs2_client,
            federation_port: hs2_fed,
            federation_host: hs2_host.to_string(),
            federation_tls: Some((hs2_crt, hs2_key)),
            federation_ca: ca_cert.clone(),
            registration_shared_secret: random_secret(),
            outbound: Outbound::Direct,
            notary: None,
        },
    ];
    let mut hs_configs = hs_configs;
    let hs3_name = (opts.servers == 3).then(|| format!("127.0.0.1:{}", p[9]));
    if let Some(name) = &hs3_name {
        let (crt, key) = issue_cert(&test_ca, &certs, "hs3")?;
        hs_configs.push(HsConfig {
            dir: dir.join("hs3"),
            server_name: name.clone(),
            client_port: p[8],
            federation_port: p[9],
            federation_host: "127.0.0.1".into(),
            federation_tls: Some((crt, key)),
            federation_ca: ca_cert.clone(),
            registration_shared_secret: random_secret(),
            outbound: Outbound::Direct,
            notary: None,
        });
    }
    let mut homeservers = Vec::new();
    for (i, c) in hs_configs.iter().enumerate() {
        mkdir(&c.dir)?;
        let signing_key = c.dir.join("signing.key");
        synapse::write_signing_key(&signing_key)?;
        let log = c.dir.join("homeserver.log");
        write_file(
            &c.dir.join("log.yaml"),
            synapse::log_config(&log).as_bytes(),
        )?;
        let config = c.dir.join("homeserver.yaml");
        let yaml = serde_json::to_vec_pretty(&synapse::homeserver_config(c)).expect("json");
        write_private(&config, &yaml)?;
        homeservers.push(HomeserverInfo {
            name: format!("hs{}", i + 1),
            server_name: c.server_name.clone(),
            client_url: format!("http://127.0.0.1:{}", c.client_port),
            registration_shared_secret: c.registration_shared_secret.clone(),
            protected: i == 0,
            federation_url: format!(
                "{}://{}:{}",
                if c.federation_tls.is_some() {
                    "https"
                } else {
                    "http"
                },
                c.federation_host,
                c.federation_port
            ),
            config,
            log,
            signing_key,
        });
    }

    let guard_config = GuardConfig {
        admin: loopback(guard_admin),
        inbound: loopback(guard_in),
        protected_server_name: hs1_name.clone(),
        protected_cert: front_crt,
        protected_key: front_key,
        upstream: format!("http://127.0.0.1:{hs1_fed}"),
        signing_key: hs1_dir.join("signing.key"),
        admin_api: format!("http://127.0.0.1:{hs1_client}"),
        admin_token_file: dir.join(ADMIN_TOKEN_FILE),
        outbound: guard_outbound,
        roots: vec![ca_cert.clone()],
        deny_servers: opts.deny_servers.clone(),
        guard_key: dir.join("guard.signing.key"),
        store: dir.join("grenzwacht.db"),
        policies: dir.join("policies"),
        labels: if opts.labels {
            let mut l = guard::write_lab_spifs(dir, &hs2_name)?;
            l.third_server = hs3_name.clone();
            Some(l)
        } else {
            None
        },
        principals: guard::LAB_PRINCIPALS
            .iter()
            .map(|(name, role)| {
                let file = dir.join(ADMIN_TOKENS_DIR).join(format!("{name}.token"));
                (name.to_string(), role.to_string(), file)
            })
            .collect(),
        notices: opts.notices,
        media_allow_unscanned: opts.media_allow_unscanned,
        ti: if opts.ti {
            Some(ti::write_lab_ti(
                dir,
                &hs1_name,
                &hs2_name,
                &format!("http://127.0.0.1:{hs1_client}"),
                &dir.join(ADMIN_TOKEN_FILE),
                loopback(p[7]),
            )?)
        } else {
            None
        },
        audit_dir: dir.join("audit"),
        audit_key: dir.join("audit.key"),
    };
    mkdir(&dir.join(ADMIN_TOKENS_DIR))?;
    for (_, _, file) in &guard_config.principals {
        write_private(file, format!("{}\n", random_secret()).as_bytes())?;
    }
    mkdir(&guard_config.policies)?;
    for (name, text) in guard::SHIPPED_POLICIES {
        // The TI profile leaves the German PII rules out: they would act on patient
        // communication, which is end-to-end encrypted there anyway.
        if opts.ti && *name == "pii.toml" {
            continue;
        }
        // Names may have a directory (`yara/…`).
        let path = guard_config.policies.join(name);
        if let Some(parent) = path.parent() {
            mkdir(parent)?;
        }
        write_file(&path, text.as_bytes())?;
    }
    write_private(
        &guard_config.guard_key,
        guard_key.to_synapse_string().as_bytes(),
    )?;
    // The audit key signs the audit log's checkpoints; its public half is for `audit verify`.
    let audit_key = crate::keys::SigningKey::generate("audit1")
        .map_err(|e| LabError::Ca(format!("audit key: {e}")))?;
    write_private(
        &guard_config.audit_key,
        audit_key.to_synapse_string().as_bytes(),
    )?;
    let public = crate::audit::verify::PublicKey {
        key_id: audit_key.key_id(),
        key: audit_key.public_key(),
    };
    write_file(
        &dir.join("audit.key.pub"),
        public.to_file_string().as_bytes(),
    )?;
    let guard_toml_path = dir.join("guard.toml");
    let guard_text = guard::guard_toml(&guard_config);
    write_private(&guard_toml_path, guard_text.as_bytes())?;
    let split_info = match opts.split {
        Some(loss) => {
            let s = split::info(dir, loss, guard_admin, &split_ports);
            let (high, low) = split::halves(&guard_text, dir, &split_ports)?;
            write_private(&s.high_config, high.as_bytes())?;
            write_private(&s.low_config, low.as_bytes())?;
            Some(s)
        }
        None => None,
    };

    let info = LabInfo {
        homeservers,
        guard: GuardInfo {
            admin_url: format!("http://127.0.0.1:{guard_admin}"),
            inbound_addr: loopback(guard_in),
            inbound_url: format!("https://127.0.0.1:{guard_in}"),
            outbound_mode: opts.outbound,
            outbound_addr: loopback(guard_out),
            proxy_secret,
            interception_ca_cert,
            deny_servers: opts.deny_servers.clone(),
            config: split_info
                .as_ref()
                .map_or(guard_toml_path, |s| s.high_config.clone()),
            log: split_info
                .as_ref()
                .map_or(dir.join("guard.log"), |s| s.high_log.clone()),
            review_tokens: guard_config
                .principals
                .iter()
                .map(|(name, _, file)| (name.clone(), file.clone()))
                .collect(),
            audit_dir: match &split_info {
                Some(_) => dir.join("audit-high"),
                None => guard_config.audit_dir.clone(),
            },
            audit_public_key: dir.join("audit.key.pub"),
            ti_client_url: guard_config
                .ti
                .as_ref()
                .map(|t| format!("http://{}", t.client_listen)),
        },
        dir: dir.to_path_buf(),
        synapse_version: SYNAPSE_VERSION.to_string(),
        ca_cert,
        split: split_info,
    };
    Ok(Plan { info, hs_configs })
}

fn log_tails(info: &LabInfo) -> String {
    let mut out = String::new();
    for h in &info.homeservers {
        for (what, path) in [
            ("homeserver.log", h.log.clone()),
            ("stdout.log", h.log.with_file_name("stdout.log")),
        ] {
            out.push_str(&format!(
                "--- {} {what} ---\n{}\n",
                h.name,
                process::tail(&path, 2000)
            ));
        }
    }
    out.push_str(&format!(
        "--- guard.log ---\n{}\n",
        process::tail(&info.guard.log, 3000)
    ));
    if let Some(s) = &info.split {
        out.push_str(&format!(
            "--- guard-low.log ---\n{}\n",
            process::tail(&s.low_log, 3000)
        ));
    }
    out
}

fn tail_for(info: &LabInfo, name: &str) -> String {
    match info.homeserver(name) {
        Some(h) => format!(
            "--- {name} homeserver.log ---\n{}\n--- {name} stdout.log ---\n{}",
            process::tail(&h.log, 3000),
            process::tail(&h.log.with_file_name("stdout.log"), 3000)
        ),
        None => match (&info.split, name) {
            (Some(s), "guard-low") => {
                format!("--- guard-low.log ---\n{}", process::tail(&s.low_log, 4000))
            }
            (Some(s), n) if n.starts_with("relay-") => {
                let i = usize::from(n == "relay-low-high");
                format!("--- {n}.log ---\n{}", process::tail(&s.relay_logs[i], 2000))
            }
            _ => format!(
                "--- guard.log ---\n{}",
                process::tail(&info.guard.log, 4000)
            ),
        },
    }
}

fn stop_all(records: &[ProcessRecord]) -> Vec<(String, u32, StopOutcome)> {
    records
        .iter()
        .rev()
        .map(|r| (r.name.clone(), r.pid, process::stop(r, STOP_GRACE)))
        .collect()
}

async fn wait_ready(
    info: &LabInfo,
    records: &[ProcessRecord],
    timeout: Duration,
) -> Result<(), LabError> {
    let start = Instant::now();
    let admin = MatrixClient::new(&info.guard.admin_url);
    let hs: Vec<(String, MatrixClient)> = info
        .homeservers
        .iter()
        .map(|h| (h.name.clone(), MatrixClient::new(&h.client_url)))
        .collect();
    let hs1_fed: SocketAddr = info
        .hs1()
        .federation_url
        .trim_start_matches("http://")
        .parse()
        .expect("lab federation url");
    loop {
        for r in records {
            if let Some(status) = process::exited_child(r.pid) {
                return Err(LabError::ProcessDied {
                    name: r.name.clone(),
                    status: status.to_string(),
                    log_tail: tail_for(info, &r.name),
                });
            }
            if !process::is_running(r.pid) {
                return Err(LabError::ProcessDied {
                    name: r.name.clone(),
                    status: "gone".into(),
                    log_tail: tail_for(info, &r.name),
                });
            }
        }
        let mut pending = Vec::new();
        match admin
            .raw("GET", "/health", None, None, Duration::from_secs(2))
            .await
        {
            Ok(r) if r.status == 200 => {}
            _ => pending.push("guard /health".to_string()),
        }
        if let Some(s) = &info.split {
            match MatrixClient::new(&s.low_admin_url)
                .raw("GET", "/health", None, None, Duration::from_secs(2))
                .await
            {
                Ok(r) if r.status == 200 => {}
                _ => pending.push("LOW half /health".to_string()),
            }
        }
        for (name, c) in &hs {
            if c.versions().await.is_err() {
                pending.push(format!("{name} /_matrix/client/versions"));
            }
        }
        for (what, addr) in [
            ("guard inbound", info.guard.inbound_addr),
            ("guard outbound", info.guard.outbound_addr),
            ("hs1 federation", hs1_fed),
        ] {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
                pending.push(format!("{what} {addr}"));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(LabError::StartTimeout {
                waited: start.elapsed(),
                pending: pending.join(", "),
                log_tails: log_tails(info),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Starts the lab in `opts.dir` and returns when everything answers. See the module docs.
pub async fn up(opts: LabOptions) -> Result<LabInfo, LabError> {
    let dir = std::path::absolute(&opts.dir).map_err(|source| LabError::Io {
        path: opts.dir.clone(),
        source,
    })?;
    prepare_dir(&dir)?;
    let venv = opts.venv.clone().unwrap_or_else(synapse::default_venv);
    {
        let (venv, python, verbose) = (venv.clone(), opts.python.clone(), opts.verbose);
        tokio::task::spawn_blocking(move || {
            synapse::ensure_venv(&venv, python.as_deref(), verbose)
        })
        .await
        .map_err(|e| LabError::Venv(format!("venv task failed: {e}")))??;
    }
    let plan = write_lab_files(&dir, &opts)?;
    let info = plan.info;

    let mut pids = PidFile::default();
    let mut start =
        |name: &str, argv: Vec<String>, cwd: &Path, log: &Path| -> Result<(), LabError> {
            let rec = process::spawn(name, &argv, cwd, log, &[])?;
            pids.processes.push(rec);
            pids.save(&dir)
        };
    let started = (|| -> Result<(), LabError> {
        for (c, h) in plan.hs_configs.iter().zip(&info.homeservers).rev() {
            start(
                &h.name,
                synapse::homeserver_argv(&venv, &h.config),
                &c.dir,
                &c.dir.join("stdout.log"),
            )?;
        }
        if let Some(s) = &info.split {
            for (name, argv, log) in split::processes(&opts.guard_bin, s) {
                start(&name, argv, &dir, &log)?;
            }
            return Ok(());
        }
        let argv = vec![
            opts.guard_bin.display().to_string(),
            "serve".into(),
            "--config".into(),
            info.guard.config.display().to_string(),
        ];
        start("guard", argv, &dir, &info.guard.log)
    })();
    if opts.verbose {
        eprintln!(
            "lab: started {} processes, waiting for them to answer",
            pids.processes.len()
        );
    }
    let ready = match started {
        Ok(()) => wait_ready(&info, &pids.processes, opts.start_timeout).await,
        Err(e) => Err(e),
    };
    if let Err(e) = ready {
        let procs = pids.processes.clone();
        tokio::task::spawn_blocking(move || stop_all(&procs))
            .await
            .ok();
        let _ = fs::remove_file(dir.join(process::PIDS_FILE));
        return Err(e);
    }
    if let Err(e) = write_admin_token(&dir, &info).await {
        let procs = pids.processes.clone();
        tokio::task::spawn_blocking(move || stop_all(&procs))
            .await
            .ok();
        let _ = fs::remove_file(dir.join(process::PIDS_FILE));
        return Err(e);
    }
    write_json_atomic(&dir.join(LAB_FILE), &info)?;
    Ok(info)
}

/// The file (in the lab directory) with the admin token the guard uses for room label lookups
/// at the protected homeserver.
pub const ADMIN_TOKEN_FILE: &str = "hs1.admin-token";
/// Directory (in the lab directory) of the guard's admin API tokens, one file per principal of
/// [`guard::LAB_PRINCIPALS`].
pub const ADMIN_TOKENS_DIR: &str = "admin-tokens";

/// Registers the guard's admin user on the protected homeserver and writes its token where the
/// guard's `admin_token_file` points (the guard reads it when it first needs it).
async fn write_admin_token(dir: &Path, info: &LabInfo) -> Result<(), LabError> {
    let Some(hs) = info.homeservers.iter().find(|h| h.protected) else {
        return Ok(());
    };
    let client = client::MatrixClient::new(&hs.client_url);
    let session = client
        .register_shared_secret(
            &hs.registration_shared_secret,
            "grenzwacht-guard",
            &random_secret(),
            true,
        )
        .await
        .map_err(|e| {
            LabError::Setup(format!(
                "registering the guard's admin user on {}: {e}",
                hs.name
            ))
        })?;
    write_private(&dir.join(ADMIN_TOKEN_FILE), session.access_token.as_bytes())
}

/// Stops the processes recorded in `dir/pids.json` (guard first), only those whose command
/// line still matches. Idempotent: no `pids.json` means nothing to do.
pub fn down(dir: &Path) -> Result<DownReport, LabError> {
    let Some(pids) = PidFile::load(dir)? else {
        return Ok(DownReport::default());
    };
    let processes = stop_all(&pids.processes);
    let failed: Vec<String> = processes
        .iter()
        .filter(|(_, _, o)| *o == StopOutcome::StillRunning)
        .map(|(n, p, _)| format!("{n} (pid {p})"))
        .collect();
    if !failed.is_empty() {
        return Err(LabError::StopFailed(failed.join(", ")));
    }
    let path = dir.join(process::PIDS_FILE);
    fs::remove_file(&path).map_err(|source| LabError::Io { path, source })?;
    Ok(DownReport { processes })
}

fn print_info(info: &LabInfo) {
    println!(
        "lab up in {} (Synapse {})",
        info.dir.display(),
        info.synapse_version
    );
    for h in &info.homeservers {
        println!(
            "  {} {:<9} server_name {:<16} client {}",
            h.name,
            if h.protected { "protected" } else { "remote" },
            h.server_name,
            h.client_url
        );
    }
    println!(
        "  guard     inbound {}  outbound ({}) {}  admin {}",
        info.guard.inbound_addr,
        info.guard.outbound_mode,
        info.guard.outbound_addr,
        info.guard.admin_url
    );
    if let Some(s) = &info.split {
        println!(
            "  split     HIGH admin {}  LOW admin {}  links: udp through relays with {} % loss",
            s.high_admin_url,
            s.low_admin_url,
            f64::from(s.loss_ppm) / 1e4
        );
    }
    println!("  details: {}", info.dir.join(LAB_FILE).display());
    println!(
        "  stop with: grenzwacht lab down --dir {}",
        info.dir.display()
    );
}

/// Runs a `grenzwacht lab` subcommand (builds its own tokio runtime: call it outside one).
pub fn run(cmd: LabCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cmd {
            LabCommand::Setup { python } => {
                let venv = synapse::default_venv();
                let v = venv.clone();
                let installed = tokio::task::spawn_blocking(move || {
                    synapse::ensure_venv(&v, python.as_deref(), true)
                })
                .await??;
                println!(
                    "Synapse {SYNAPSE_VERSION} {} in {}",
                    if installed {
                        "installed"
                    } else {
                        "already present"
                    },
                    venv.display()
                );
            }
            LabCommand::Up {
                dir,
                outbound,
                guard_bin,
                deny_servers,
                labels,
                ti,
                servers,
                split,
            } => {
                let mut opts = LabOptions::new(dir, outbound);
                if let Some(g) = guard_bin {
                    opts.guard_bin = g;
                }
                opts.deny_servers = deny_servers;
                opts.labels = labels;
                opts.ti = ti;
                opts.servers = servers;
                opts.split = split;
                opts.verbose = true;
                let info = up(opts).await?;
                print_info(&info);
            }
            LabCommand::Down { dir } => {
                let report = down(&dir)?;
                if report.processes.is_empty() {
                    println!("nothing to stop in {}", dir.display());
                }
                for (name, pid, outcome) in report.processes {
                    println!("{name} (pid {pid}): {outcome:?}");
                }
            }
            LabCommand::Demo {
                dir,
                outbound,
                keep,
                guard_bin,
            } => {
                let mut opts = LabOptions::new(dir, outbound);
                if let Some(g) = guard_bin {
                    opts.guard_bin = g;
                }
                opts.verbose = true;
                demo(DemoOptions { lab: opts, keep }).await?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let p = free_ports(7).unwrap();
        let mut q = p.clone();
        q.sort();
        q.dedup();
        assert_eq!(q.len(), 7);
        assert!(p.iter().all(|&x| x != 0));
    }

    #[test]
    fn prepare_dir_refuses_foreign_nonempty_dirs_and_cleans_old_labs() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("precious.txt"), "x").unwrap();
        assert!(matches!(prepare_dir(d.path()), Err(LabError::NotALab(_))));
        assert!(d.path().join("precious.txt").exists());
        // A stopped lab: its entries go, foreign files stay.
        fs::write(d.path().join(LAB_FILE), "{}").unwrap();
        fs::create_dir(d.path().join("hs1")).unwrap();
        fs::write(d.path().join("hs1/homeserver.db"), "x").unwrap();
        prepare_dir(d.path()).unwrap();
        assert!(!d.path().join("hs1").exists());
        assert!(!d.path().join(LAB_FILE).exists());
        assert!(d.path().join("precious.txt").exists());
        // Fresh directories are created.
        let fresh = d.path().join("new/lab");
        prepare_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
    }

    #[test]
    fn prepare_dir_refuses_a_running_lab() {
        let d = tempfile::tempdir().unwrap();
        let argv = vec!["sleep".to_string(), "30".to_string()];
        let rec = process::spawn("hs1", &argv, d.path(), &d.path().join("s.log"), &[]).unwrap();
        PidFile {
            processes: vec![rec.clone()],
        }
        .save(d.path())
        .unwrap();
        assert!(is_running(d.path()).unwrap());
        assert!(matches!(
            prepare_dir(d.path()),
            Err(LabError::AlreadyRunning(_))
        ));
        let report = down(d.path()).unwrap();
        assert_eq!(report.processes.len(), 1);
        assert_eq!(report.processes[0].2, StopOutcome::Terminated);
        assert!(!process::is_running(rec.pid));
        assert!(!d.path().join(process::PIDS_FILE).exists());
        assert!(!is_running(d.path()).unwrap());
        // Idempotent.
        assert!(down(d.path()).unwrap().processes.is_empty());
    }

    /// `--servers 3`: hs3 is a second remote with its own TLS listener and, with labels, its
    /// own (lower) clearance as a second `[[labels.peer]]`; other counts are refused.
    #[test]
    fn a_three_server_lab_has_a_second_remote_with_its_own_clearance() {
        let d = tempfile::tempdir().unwrap();
        let mut opts = LabOptions::new(d.path(), OutboundMode::Connect);
        opts.labels = true;
        opts.servers = 3;
        let plan = write_lab_files(d.path(), &opts).unwrap();
        let info = &plan.info;
        assert_eq!(plan.hs_configs.len(), 3);
        let (hs2, hs3) = (info.hs2(), info.hs3().expect("hs3"));
        assert!(!hs3.protected);
        assert_ne!(hs2.server_name, hs3.server_name);
        assert_eq!(
            hs3.server_name,
            hs3.federation_url.trim_start_matches("https://")
        );
        assert!(hs3.signing_key.is_file() && hs3.config.is_file());
        let cfg = crate::config::Config::load(&info.guard.config).unwrap();
        let peers = &cfg.labels.as_ref().expect("labels").peer;
        let names: Vec<&str> = peers.iter().map(|p| p.server.as_str()).collect();
        assert_eq!(names, [hs2.server_name.as_str(), hs3.server_name.as_str()]);
        assert_ne!(peers[0].clearance, peers[1].clearance);
        // Two-server labs have no hs3; 1 and 4 servers, and TI with 3, are refused.
        let d2 = tempfile::tempdir().unwrap();
        let two = write_lab_files(
            d2.path(),
            &LabOptions::new(d2.path(), OutboundMode::Connect),
        );
        assert!(two.unwrap().info.hs3().is_none());
        for (n, ti) in [(1, false), (4, false), (3, true)] {
            let d = tempfile::tempdir().unwrap();
            let mut o = LabOptions::new(d.path(), OutboundMode::Connect);
            o.servers = n;
            o.ti = ti;
            assert!(
                matches!(write_lab_files(d.path(), &o), Err(LabError::Setup(_))),
                "{n} servers, ti {ti}"
            );
        }
    }

    #[test]
    fn lab_files_are_consistent_for_both_modes() {
        for mode in [OutboundMode::Connect, OutboundMode::SynapseProxy] {
            let d = tempfile::tempdir().unwrap();
            let mut opts = LabOptions::new(d.path(), mode);
            opts.deny_servers = vec!["127.0.0.2:8448".into()];
            let plan = write_lab_files(d.path(), &opts).unwrap();
            let info = &plan.info;
            let hs1 = info.hs1();
            let hs2 = info.hs2();
            assert_eq!(
                hs1.server_name,
                format!("127.0.0.1:{}", info.guard.inbound_addr.port())
            );
            assert!(hs1.protected && !hs2.protected);
            assert!(hs1.federation_url.starts_with("http://127.0.0.1:"));
            assert!(hs2.federation_url.starts_with("https://127.0.0.1:"));
            assert_eq!(
                hs2.server_name,
                hs2.federation_url.trim_start_matches("https://")
            );
            // The stable JSON contract.
            let v = serde_json::to_value(info).unwrap();
            for h in v["homeservers"].as_array().unwrap() {
                for k in [
                    "name",
                    "server_name",
                    "client_url",
                    "registration_shared_secret",
                ] {
                    assert!(h[k].as_str().is_some_and(|s| !s.is_empty()), "{k} in {h}");
                }
            }
            assert!(v["guard"]["admin_url"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:"));
            // hs1's config points its outbound at the guard.
            let hs1_cfg: serde_json::Value =
                serde_json::from_slice(&fs::read(&hs1.config).unwrap()).unwrap();
            let guard: toml::Value =
                toml::from_str(&fs::read_to_string(&info.guard.config).unwrap()).unwrap();
            assert_eq!(
                guard["protected"][0]["server_name"].as_str(),
                Some(hs1.server_name.as_str())
            );
            assert_eq!(
                guard["protected"][0]["upstream"].as_str(),
                Some(hs1.federation_url.as_str())
            );
            assert_eq!(
                guard["policy"]["deny_servers"][0].as_str(),
                Some("127.0.0.2:8448")
            );
            let out = info.guard.outbound_addr.to_string();
            match mode {
                OutboundMode::Connect => {
                    let secret = info.guard.proxy_secret.as_ref().unwrap();
                    assert_eq!(
                        hs1_cfg["https_proxy"],
                        format!("http://grenzwacht:{secret}@{out}")
                    );
                    assert_eq!(
                        guard["outbound"]["proxy_secret"].as_str(),
                        Some(secret.as_str())
                    );
                    let ica = info.guard.interception_ca_cert.as_ref().unwrap();
                    assert!(ica.exists());
                    assert_eq!(
                        hs1_cfg["federation_custom_ca_list"][0],
                        ica.display().to_string()
                    );
                    assert_eq!(
                        guard["outbound"]["connect_listen"].as_str(),
                        Some(out.as_str())
                    );
                }
                OutboundMode::SynapseProxy => {
                    assert_eq!(
                        hs1_cfg["instance_map"]["guard"]["port"],
                        info.guard.outbound_addr.port()
                    );
                    let secret = info.guard.proxy_secret.as_ref().unwrap();
                    assert_eq!(hs1_cfg["worker_replication_secret"], secret.as_str());
                    assert_eq!(
                        guard["outbound"]["proxy_secret"].as_str(),
                        Some(secret.as_str())
                    );
                    assert_eq!(
                        guard["outbound"]["proxy_listen"].as_str(),
                        Some(out.as_str())
                    );
                }
            }
            // hs2 trusts the test CA; the PEM files are real certificates.
            let hs2_cfg: serde_json::Value =
                serde_json::from_slice(&fs::read(&hs2.config).unwrap()).unwrap();
            assert_eq!(
                hs2_cfg["federation_custom_ca_list"][0],
                info.ca_cert.display().to_string()
            );
            let pem =
                fs::read_to_string(hs2_cfg["tls_certificate_path"].as_str().unwrap()).unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        }
    }
}
