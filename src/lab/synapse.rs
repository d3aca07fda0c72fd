//! Synapse for the lab: the pinned venv, `homeserver.yaml`, signing key and log config.
//!
//! # Design notes
//!
//! - The venv lives outside the lab directory (`$GRENZWACHT_SYNAPSE_VENV`, else
//!   `$HOME/.cache/grenzwacht/synapse-venv-<version>`) so labs come and go without reinstalling.
//!   It is (re)installed when `bin/python -c "import synapse"` does not report exactly
//!   [`SYNAPSE_VERSION`]; concurrent `up`s (parallel tests) serialise on an `flock` next to it.
//! - `homeserver.yaml` is written as JSON (valid YAML) from a `serde_json::Value`, so no YAML
//!   library is needed and every value is quoted correctly. The settings and why each is there
//!   are in `/work/notes/synapse-lab.md` §c (checked against Synapse 1.163.2):
//!   IP-literal server names need `federation_ip_range_blacklist: []`; `no_proxy_hosts: []`
//!   makes sure an inherited `no_proxy` never lets hs1 bypass the guard; the federation trust
//!   root is replaced by the lab's CA (`federation_custom_ca_list`).
//! - The signing key is written directly in Synapse's format (`ed25519 <version> <unpadded
//!   base64 seed>`): no `--generate-keys` run, and the lab (and tests) know the key.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::LabError;
use crate::keys::SigningKey;

/// The pinned Synapse version of the lab.
pub const SYNAPSE_VERSION: &str = "1.163.2";
/// Key id of the signing keys the lab writes.
pub const SIGNING_KEY_ID: &str = "ed25519:a_lab";

/// Default venv location for the pinned version.
pub fn default_venv() -> PathBuf {
    if let Some(v) = std::env::var_os("GRENZWACHT_SYNAPSE_VENV") {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into());
    home.join(".cache/grenzwacht")
        .join(format!("synapse-venv-{SYNAPSE_VERSION}"))
}

/// The venv's Python interpreter.
pub fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin/python")
}

fn installed_version(venv: &Path) -> Option<String> {
    let out = Command::new(venv_python(venv))
        .args([
            "-c",
            "import sys, synapse; sys.stdout.write(synapse.__version__)",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

struct FileLock(fs::File);

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock, LabError> {
        use std::os::fd::AsRawFd;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| LabError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(LabError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(FileLock(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Makes sure `venv` holds exactly `matrix-synapse==SYNAPSE_VERSION`, creating it with `python`
/// (default `python3`) if needed. Blocking; installing takes ~15–60 s. Returns `true` when it
/// had to install.
pub fn ensure_venv(venv: &Path, python: Option<&Path>, verbose: bool) -> Result<bool, LabError> {
    if installed_version(venv).as_deref() == Some(SYNAPSE_VERSION) {
        return Ok(false);
    }
    if let Some(parent) = venv.parent() {
        fs::create_dir_all(parent).map_err(|source| LabError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let lock_path = venv.with_extension("lock");
    let _lock = FileLock::acquire(&lock_path)?;
    // Someone else may have installed it while we waited.
    if installed_version(venv).as_deref() == Some(SYNAPSE_VERSION) {
        return Ok(false);
    }
    let run = |what: &str, cmd: &mut Command| -> Result<(), LabError> {
        if verbose {
            // Interactive (`lab setup`): the tool's own progress goes to the terminal.
            eprintln!("lab: {what} (this takes a minute the first time)");
            let status = cmd
                .stdout(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::inherit())
                .status()
                .map_err(|e| LabError::Venv(format!("{what}: {e}")))?;
            return if status.success() {
                Ok(())
            } else {
                Err(LabError::Venv(format!(
                    "{what} failed ({status}); its output is above"
                )))
            };
        }
        let out = cmd
            .output()
            .map_err(|e| LabError::Venv(format!("{what}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let tail: String = text
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            Err(LabError::Venv(format!(
                "{what} failed ({}):\n{tail}",
                out.status
            )))
        }
    };
    if !venv_python(venv).exists() {
        let py = python
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("GRENZWACHT_PYTHON").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("python3"));
        run(
            &format!("creating venv {} with {}", venv.display(), py.display()),
            Command::new(&py).arg("-m").arg("venv").arg(venv),
        )?;
    }
    run(
        &format!(
            "installing matrix-synapse=={SYNAPSE_VERSION} into {}",
            venv.display()
        ),
        Command::new(venv.join("bin/pip"))
            .args(["install", "--disable-pip-version-check"])
            .arg(if verbose {
                "--progress-bar=on"
            } else {
                "--quiet"
            })
            .arg(format!("matrix-synapse=={SYNAPSE_VERSION}")),
    )?;
    match installed_version(venv) {
        Some(v) if v == SYNAPSE_VERSION => Ok(true),
        other => Err(LabError::Venv(format!(
            "after installing, {} reports Synapse version {other:?}, expected {SYNAPSE_VERSION}",
            venv.display()
        ))),
    }
}

/// Writes a fresh Synapse signing key file (`ed25519 a_lab <seed>`) and returns the key.
pub fn write_signing_key(path: &Path) -> Result<SigningKey, LabError> {
    let key = SigningKey::generate(SIGNING_KEY_ID.trim_start_matches("ed25519:"))
        .map_err(|e| LabError::Ca(format!("signing key: {e}")))?;
    super::write_private(path, key.to_synapse_string().as_bytes())?;
    Ok(key)
}

/// Python logging config: everything at INFO into `log_file`, unbuffered (tests read it).
pub fn log_config(log_file: &Path) -> String {
    let file = serde_json::to_string(&log_file.display().to_string()).expect("string");
    format!(
        "version: 1\n\
         formatters:\n  precise:\n    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'\n\
         handlers:\n  file:\n    class: logging.FileHandler\n    formatter: precise\n    filename: {file}\n    encoding: utf8\n\
         loggers:\n  synapse.storage.SQL:\n    level: INFO\n\
         root:\n  level: INFO\n  handlers: [file]\n\
         disable_existing_loggers: false\n"
    )
}

/// How hs1 (the protected server) sends federation traffic out.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Directly (hs2, the remote server).
    Direct,
    /// `https_proxy` = the guard's CONNECT listener.
    Connect {
        /// `http://127.0.0.1:PORT`
        proxy_url: String,
    },
    /// Synapse's outbound federation proxy protocol to the guard.
    SynapseProxy {
        /// The guard's `proxy_listen` port on 127.0.0.1.
        port: u16,
        /// `worker_replication_secret` (sent as `Proxy-Authorization: Bearer`).
        secret: String,
    },
}

/// Everything that differs between the lab's homeservers.
#[derive(Debug, Clone)]
pub struct HsConfig {
    /// Directory of this homeserver (database, media, logs, config).
    pub dir: PathBuf,
    /// Matrix server name, `127.0.0.1:PORT`.
    pub server_name: String,
    /// Client API port (plain http on 127.0.0.1).
    pub client_port: u16,
    /// Federation listener port.
    pub federation_port: u16,
    /// Address of the federation listener (`127.0.0.1`; the TI lab puts hs2 on `127.0.0.2`
    /// so that its domain differs from hs1's).
    pub federation_host: String,
    /// `Some((cert, key))`: the federation listener speaks TLS with these files.
    pub federation_tls: Option<(PathBuf, PathBuf)>,
    /// PEM roots for outbound federation (`federation_custom_ca_list`).
    pub federation_ca: PathBuf,
    /// Shared secret for `/_synapse/admin/v1/register`.
    pub registration_shared_secret: String,
    /// Outbound federation path.
    pub outbound: Outbound,
    /// `trusted_key_servers`: `(server name, key id, public key base64)` of the notary, if any
    /// (hs1 uses the guard as its notary).
    pub notary: Option<(String, String, String)>,
}

/// The homeserver.yaml content (as JSON) for `c`.
pub fn homeserver_config(c: &HsConfig) -> Value {
    let d = |name: &str| c.dir.join(name).display().to_string();
    let lim = json!({"per_second": 1000, "burst_count": 1000});
    let mut cfg = json!({
        "server_name": c.server_name,
        "pid_file": d("homeserver.pid"),
        "listeners": [
            {
                "port": c.client_port, "bind_addresses": ["127.0.0.1"], "type": "http",
                "tls": false, "x_forwarded": false,
                "resources": [{"names": ["client"], "compress": false}]
            },
            {
                "port": c.federation_port, "bind_addresses": [c.federation_host], "type": "http",
                "tls": c.federation_tls.is_some(), "x_forwarded": false,
                "resources": [{"names": ["federation"], "compress": false}]
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": d("homeserver.db")}},
        "log_config": d("log.yaml"),
        "media_store_path": d("media_store"),
        "signing_key_path": d("signing.key"),
        "registration_shared_secret": c.registration_shared_secret,
        "enable_registration": false,
        "report_stats": false,
        "enable_metrics": false,
        "trusted_key_servers": match &c.notary {
            Some((name, key_id, key)) => json!([{"server_name": name, "verify_keys": {key_id: key}}]),
            None => json!([]),
        },
        "suppress_key_server_warning": true,
        "federation_custom_ca_list": [c.federation_ca.display().to_string()],
        "federation_verify_certificates": true,
        "federation_ip_range_blacklist": [],
        "ip_range_whitelist": ["127.0.0.0/8"],
        "no_proxy_hosts": [],
        "bcrypt_rounds": 4,
        // Server notices: the guard tells a local user through them what it did to their
        // event (`[notices]`); the notices user is created on first use.
        "server_notices": {
            "system_mxid_localpart": "grenzwacht-notices",
            "system_mxid_display_name": "Grenzwacht",
            "room_name": "Grenzwacht"
        },
        // Presence on: its `status_msg` is free text that policy must see (EDU filtering).
        "presence": {"enabled": true},
        // The room directory, also over federation (Synapse lets no user publish by default):
        // room names and topics in it are user data that policy must see.
        "allow_public_rooms_over_federation": true,
        "room_list_publication_rules": [{"action": "allow"}],
        // Invites and knocks carry the room's security label in their stripped state, so the
        // guard judges the room name and topic next to it by that label.
        "room_prejoin_state": {"additional_event_types": [crate::config::labels::DEFAULT_ROOM_LABEL_TYPE]},
        "rc_message": lim,
        "rc_registration": lim,
        "rc_login": {"address": lim, "account": lim, "failed_attempts": lim},
        "rc_joins": {"local": lim, "remote": lim},
        "rc_joins_per_room": lim,
        "rc_invites": {"per_room": lim, "per_user": lim, "per_issuer": lim},
        "rc_admin_redaction": lim,
        "rc_presence": {"per_user": lim},
        "rc_delayed_event_mgmt": lim,
        "rc_room_creation": lim,
        "rc_federation": {
            "window_size": 1000, "sleep_limit": 1000, "sleep_delay": 1,
            "reject_limit": 1000, "concurrent": 100
        }
    });
    let obj = cfg.as_object_mut().expect("object");
    if let Some((cert, key)) = &c.federation_tls {
        obj.insert(
            "tls_certificate_path".into(),
            json!(cert.display().to_string()),
        );
        obj.insert(
            "tls_private_key_path".into(),
            json!(key.display().to_string()),
        );
    }
    match &c.outbound {
        Outbound::Direct => {}
        Outbound::Connect { proxy_url } => {
            obj.insert("https_proxy".into(), json!(proxy_url));
        }
        Outbound::SynapseProxy { port, secret } => {
            obj.insert(
                "instance_map".into(),
                json!({"guard": {"host": "127.0.0.1", "port": port, "tls": false}}),
            );
            obj.insert("outbound_federation_restricted_to".into(), json!(["guard"]));
            obj.insert("worker_replication_secret".into(), json!(secret));
        }
    }
    cfg
}

/// argv that starts a homeserver in the foreground.
pub fn homeserver_argv(venv: &Path, config: &Path) -> Vec<String> {
    vec![
        venv_python(venv).display().to_string(),
        "-m".into(),
        "synapse.app.homeserver".into(),
        "-c".into(),
        config.display().to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(outbound: Outbound) -> HsConfig {
        HsConfig {
            dir: "/lab/hs1".into(),
            server_name: "127.0.0.1:8448".into(),
            client_port: 8008,
            federation_port: 8009,
            federation_host: "127.0.0.1".into(),
            federation_tls: None,
            federation_ca: "/lab/ca.crt".into(),
            registration_shared_secret: "s".into(),
            outbound,
            notary: None,
        }
    }

    #[test]
    fn connect_mode_sets_https_proxy_and_empty_no_proxy() {
        let cfg = homeserver_config(&base(Outbound::Connect {
            proxy_url: "http://127.0.0.1:3128".into(),
        }));
        assert_eq!(cfg["https_proxy"], "http://127.0.0.1:3128");
        assert_eq!(cfg["no_proxy_hosts"], json!([]));
        assert_eq!(cfg["federation_ip_range_blacklist"], json!([]));
        assert!(cfg.get("instance_map").is_none());
        assert!(cfg.get("tls_certificate_path").is_none());
        assert_eq!(cfg["listeners"][1]["tls"], false);
        assert_eq!(
            cfg["listeners"][1]["resources"][0]["names"],
            json!(["federation"])
        );
        assert_eq!(cfg["federation_custom_ca_list"], json!(["/lab/ca.crt"]));
    }

    #[test]
    fn synapse_proxy_mode_sets_instance_map_and_secret() {
        let cfg = homeserver_config(&base(Outbound::SynapseProxy {
            port: 8010,
            secret: "sec".into(),
        }));
        assert_eq!(cfg["instance_map"]["guard"]["port"], 8010);
        assert_eq!(cfg["instance_map"]["guard"]["host"], "127.0.0.1");
        assert!(cfg["instance_map"].get("main").is_none());
        assert_eq!(cfg["outbound_federation_restricted_to"], json!(["guard"]));
        assert_eq!(cfg["worker_replication_secret"], "sec");
        assert!(cfg.get("https_proxy").is_none());
    }

    #[test]
    fn tls_listener_gets_cert_paths() {
        let mut c = base(Outbound::Direct);
        c.federation_tls = Some(("/c.crt".into(), "/c.key".into()));
        let cfg = homeserver_config(&c);
        assert_eq!(cfg["listeners"][1]["tls"], true);
        assert_eq!(cfg["tls_certificate_path"], "/c.crt");
        assert_eq!(cfg["tls_private_key_path"], "/c.key");
    }

    #[test]
    fn signing_key_round_trips_in_synapse_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("signing.key");
        let key = write_signing_key(&p).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0], "ed25519");
        assert_eq!(fields[1], "a_lab");
        assert_eq!(fields[2].len(), 43, "32 bytes, unpadded base64");
        let back = SigningKey::from_synapse_file(&p).unwrap();
        assert_eq!(back.key_id(), SIGNING_KEY_ID);
        assert_eq!(back.public_key(), key.public_key());
    }

    #[test]
    fn log_config_quotes_the_path() {
        let y = log_config(Path::new("/tmp/a b/homeserver.log"));
        assert!(y.contains("filename: \"/tmp/a b/homeserver.log\""));
        assert!(y.contains("class: logging.FileHandler"));
    }
}
