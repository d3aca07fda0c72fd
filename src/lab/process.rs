//! Starting and stopping the lab's processes.
//!
//! # Design notes
//!
//! - Every process is started in its own process group (so a Ctrl-C in the terminal that ran
//!   `lab up` does not reach the homeservers) with stdout/stderr appended to a log file, and is
//!   recorded in `DIR/pids.json` with its PID and its exact argv *before* `up` waits for it —
//!   a failed `up` can always be cleaned up by `down`.
//! - `down` only signals a PID whose `/proc/PID/cmdline` still equals the recorded argv: PIDs
//!   are recycled, and stopping an unrelated process would be far worse than leaving a stale
//!   entry. SIGTERM first, SIGKILL after a grace period.
//! - When the process that started a child is still alive (tests, `lab demo`), the child is
//!   its child: [`std::process::Child`] handles are kept in a process-wide registry so that exits
//!   are noticed (`try_wait`) and zombies reaped. Otherwise `/proc/PID/stat` tells whether a
//!   process is gone (missing or state `Z`).
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::LabError;

/// File name of the PID record inside a lab directory.
pub const PIDS_FILE: &str = "pids.json";

/// Environment variables never passed to lab processes: a proxy setting inherited from the
/// caller's shell would reroute (or bypass) the lab's federation traffic.
const SCRUBBED_ENV: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// One started process as recorded in `pids.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    /// Role in the lab: `hs1`, `hs2`, `guard`.
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// Exact argv it was started with (compared with `/proc/PID/cmdline` before signalling).
    pub argv: Vec<String>,
    /// Where its stdout/stderr go.
    pub log: PathBuf,
}

/// Contents of `pids.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PidFile {
    /// Started processes, in start order.
    pub processes: Vec<ProcessRecord>,
}

impl PidFile {
    /// Reads `dir/pids.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<PidFile>, LabError> {
        let path = dir.join(PIDS_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| LabError::Json { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LabError::Io { path, source }),
        }
    }

    /// Writes `dir/pids.json` (atomically: temp file + rename).
    pub fn save(&self, dir: &Path) -> Result<(), LabError> {
        super::write_json_atomic(&dir.join(PIDS_FILE), self)
    }
}

static CHILDREN: Mutex<Option<HashMap<u32, Child>>> = Mutex::new(None);

/// Starts `argv` in `cwd`, output appended to `log`, without proxy variables in its
/// environment, in a new process group. Returns its record.
pub fn spawn(
    name: &str,
    argv: &[String],
    cwd: &Path,
    log: &Path,
    env: &[(String, String)],
) -> Result<ProcessRecord, LabError> {
    use std::os::unix::process::CommandExt;
    let open_log = || {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| LabError::Io {
                path: log.to_path_buf(),
                source,
            })
    };
    let mut cmd = build_command(argv, cwd, env);
    cmd.stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?)
        .process_group(0);
    let child = cmd.spawn().map_err(|source| LabError::Spawn {
        what: format!("{name} ({})", argv[0]),
        source,
    })?;
    let pid = child.id();
    CHILDREN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(pid, child);
    let rec = ProcessRecord {
        name: name.to_string(),
        pid,
        argv: argv.to_vec(),
        log: log.to_path_buf(),
    };
    // Until the child has exec'd, /proc/PID/cmdline is still ours: wait for it (a few ms), so
    // the record can be matched (and stopped) from the moment it is returned.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches_cmdline(&rec) && is_running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(rec)
}

fn build_command(argv: &[String], cwd: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(cwd);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// If `pid` is a child of this process that has exited, its exit status (and it is reaped).
pub fn exited_child(pid: u32) -> Option<ExitStatus> {
    let mut guard = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.as_mut()?;
    let status = map.get_mut(&pid)?.try_wait().ok().flatten()?;
    map.remove(&pid);
    Some(status)
}

/// Whether the process is still running (not gone, not a zombie).
pub fn is_running(pid: u32) -> bool {
    if exited_child(pid).is_some() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// Whether `/proc/PID/cmdline` still belongs to the recorded process (so the PID was not
/// recycled): the recorded arguments (everything after argv\[0\]) must be the tail of the
/// actual command line, and the program's file name must appear in it.
///
/// Not full equality, because launchers re-exec: a wrapper script `grenzwacht` that does
/// `exec python guard.py "$@"` shows up as `python guard.py serve --config …`. The lab's
/// arguments always contain a path inside the lab directory (`--config DIR/guard.toml`,
/// `-c DIR/hs1/homeserver.yaml`), which no unrelated process has.
pub fn matches_cmdline(rec: &ProcessRecord) -> bool {
    let Ok(raw) = fs::read(format!("/proc/{}/cmdline", rec.pid)) else {
        return false;
    };
    let actual: Vec<&[u8]> = raw
        .strip_suffix(b"\0")
        .unwrap_or(&raw)
        .split(|b| *b == 0)
        .collect();
    cmdline_matches(&actual, &rec.argv)
}

fn cmdline_matches(actual: &[&[u8]], recorded: &[String]) -> bool {
    let Some((program, args)) = recorded.split_first() else {
        return false;
    };
    if actual.is_empty() || actual.len() < recorded.len() {
        return false;
    }
    let tail = &actual[actual.len() - args.len()..];
    let args_match = tail.iter().zip(args).all(|(a, b)| *a == b.as_bytes());
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let head = &actual[..actual.len() - args.len()];
    let program_match = head
        .iter()
        .any(|a| String::from_utf8_lossy(a).contains(name.as_str()));
    args_match && program_match
}

/// What [`stop`] did with one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Exited after SIGTERM.
    Terminated,
    /// Needed SIGKILL.
    Killed,
    /// Was not running any more.
    NotRunning,
    /// The PID now belongs to another program: left alone.
    PidReused,
    /// Still there after SIGKILL and the grace period (should not happen).
    StillRunning,
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_running(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops one recorded process: SIGTERM, then SIGKILL after `grace`.
pub fn stop(rec: &ProcessRecord, grace: Duration) -> StopOutcome {
    if !is_running(rec.pid) {
        return StopOutcome::NotRunning;
    }
    if !matches_cmdline(rec) {
        return StopOutcome::PidReused;
    }
    signal(rec.pid, libc::SIGTERM);
    if wait_gone(rec.pid, grace) {
        return StopOutcome::Terminated;
    }
    if !matches_cmdline(rec) {
        return StopOutcome::PidReused;
    }
    signal(rec.pid, libc::SIGKILL);
    if wait_gone(rec.pid, Duration::from_secs(5)) {
        StopOutcome::Killed
    } else {
        StopOutcome::StillRunning
    }
}

/// Kills the process recorded as `name` in `dir/pids.json` with SIGKILL — no grace period, as
/// a crash or power loss would — and returns when it is gone. Only a process whose command line
/// still matches its record is signalled. Returns the record, for [`restart`].
pub fn kill_recorded(dir: &Path, name: &str) -> Result<ProcessRecord, LabError> {
    let pids = PidFile::load(dir)?.ok_or_else(|| LabError::NoLab(dir.to_path_buf()))?;
    let rec = pids
        .processes
        .iter()
        .find(|r| r.name == name)
        .cloned()
        .ok_or_else(|| LabError::StopFailed(format!("{name}: not in {PIDS_FILE}")))?;
    if !is_running(rec.pid) || !matches_cmdline(&rec) {
        return Err(LabError::StopFailed(format!(
            "{name} (pid {}): not running",
            rec.pid
        )));
    }
    signal(rec.pid, libc::SIGKILL);
    if !wait_gone(rec.pid, Duration::from_secs(10)) {
        return Err(LabError::StopFailed(format!(
            "{name} (pid {}): still running after SIGKILL",
            rec.pid
        )));
    }
    Ok(rec)
}

/// Starts the command line of `rec` again in `cwd` (same arguments, same log, appended) and
/// replaces its entry in `dir/pids.json`, so `down` stops the new process. For a process
/// [`kill_recorded`] stopped: the lab's guard restarts with the same config, store and audit
/// directory. Returns the new record; the caller waits for it to answer.
pub fn restart(dir: &Path, rec: &ProcessRecord, cwd: &Path) -> Result<ProcessRecord, LabError> {
    let mut pids = PidFile::load(dir)?.ok_or_else(|| LabError::NoLab(dir.to_path_buf()))?;
    let new = spawn(&rec.name, &rec.argv, cwd, &rec.log, &[])?;
    match pids.processes.iter_mut().find(|r| r.name == rec.name) {
        Some(slot) => *slot = new.clone(),
        None => pids.processes.push(new.clone()),
    }
    pids.save(dir)?;
    Ok(new)
}

/// The last `max_bytes` of a file (lossy UTF-8), or a note that it cannot be read.
pub fn tail(path: &Path, max_bytes: u64) -> String {
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("({}: {e})", path.display()),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    // Start at a line boundary when we cut.
    match (start > 0, text.find('\n')) {
        (true, Some(i)) => text[i + 1..].to_string(),
        _ => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_track_and_stop_a_real_process() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let argv = vec!["sleep".to_string(), "30".to_string()];
        let rec = spawn("sleeper", &argv, dir.path(), &log, &[]).unwrap();
        assert!(is_running(rec.pid));
        assert!(matches_cmdline(&rec));
        // A record whose argv differs (as after PID reuse) is never signalled.
        let mut other = rec.clone();
        other.argv = vec!["sleep".into(), "31".into()];
        assert!(!matches_cmdline(&other));
        assert_eq!(stop(&other, Duration::from_secs(1)), StopOutcome::PidReused);
        assert!(is_running(rec.pid));
        assert_eq!(stop(&rec, Duration::from_secs(5)), StopOutcome::Terminated);
        assert!(!is_running(rec.pid));
        assert_eq!(stop(&rec, Duration::from_secs(1)), StopOutcome::NotRunning);
    }

    #[test]
    fn sigkill_after_grace_when_sigterm_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("trap.log");
        let argv: Vec<String> = [
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 1; done",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rec = spawn("stubborn", &argv, dir.path(), &log, &[]).unwrap();
        // Wait until the trap is installed.
        let t0 = Instant::now();
        while !tail(&log, 100).contains("ready") && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(stop(&rec, Duration::from_millis(500)), StopOutcome::Killed);
        assert!(!is_running(rec.pid));
    }

    #[test]
    fn cmdline_matching_tolerates_exec_wrappers_but_not_other_args() {
        let rec: Vec<String> = [
            "/usr/bin/grenzwacht",
            "serve",
            "--config",
            "/lab/guard.toml",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let b = |v: &[&'static str]| v.iter().map(|s| s.as_bytes()).collect::<Vec<&[u8]>>();
        assert!(cmdline_matches(
            &b(&[
                "/usr/bin/grenzwacht",
                "serve",
                "--config",
                "/lab/guard.toml"
            ]),
            &rec
        ));
        // `exec python grenzwacht.py "$@"` from a wrapper.
        assert!(cmdline_matches(
            &b(&[
                "/usr/bin/python3",
                "/opt/grenzwacht.py",
                "serve",
                "--config",
                "/lab/guard.toml"
            ]),
            &rec
        ));
        assert!(!cmdline_matches(
            &b(&[
                "/usr/bin/grenzwacht",
                "serve",
                "--config",
                "/other/guard.toml"
            ]),
            &rec
        ));
        assert!(!cmdline_matches(
            &b(&["/usr/bin/vim", "serve", "--config", "/lab/guard.toml"]),
            &rec
        ));
        assert!(!cmdline_matches(&b(&["--config", "/lab/guard.toml"]), &rec));
        assert!(!cmdline_matches(&b(&[]), &rec));
    }

    #[test]
    fn kill_recorded_and_restart_keep_pids_json_current() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let argv = vec!["sleep".to_string(), "31".to_string()];
        let first = spawn("sleeper", &argv, dir.path(), &log, &[]).unwrap();
        PidFile {
            processes: vec![first.clone()],
        }
        .save(dir.path())
        .unwrap();
        assert!(matches!(
            kill_recorded(dir.path(), "nobody"),
            Err(LabError::StopFailed(_))
        ));
        let killed = kill_recorded(dir.path(), "sleeper").unwrap();
        assert_eq!(killed, first);
        assert!(!is_running(first.pid));
        // Nothing left to kill.
        assert!(matches!(
            kill_recorded(dir.path(), "sleeper"),
            Err(LabError::StopFailed(_))
        ));
        let second = restart(dir.path(), &killed, dir.path()).unwrap();
        assert_ne!(second.pid, first.pid);
        assert_eq!(second.argv, first.argv);
        assert!(is_running(second.pid) && matches_cmdline(&second));
        let saved = PidFile::load(dir.path()).unwrap().unwrap();
        assert_eq!(saved.processes, vec![second.clone()]);
        assert_eq!(
            stop(&second, Duration::from_secs(5)),
            StopOutcome::Terminated
        );
    }

    #[test]
    fn tail_cuts_at_line_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "first line\nsecond line\nthird\n").unwrap();
        assert_eq!(tail(&p, 15), "third\n");
        assert_eq!(tail(&p, 1000), "first line\nsecond line\nthird\n");
        assert!(tail(&dir.path().join("missing"), 10).contains("missing"));
    }

    #[test]
    fn proxy_variables_are_removed_and_extra_env_is_set() {
        let argv = vec!["true".to_string()];
        let cmd = build_command(&argv, Path::new("/"), &[("LABVAR".into(), "x".into())]);
        let envs: HashMap<String, Option<String>> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        for var in SCRUBBED_ENV {
            assert_eq!(envs.get(*var), Some(&None), "{var} must be removed");
        }
        assert_eq!(envs.get("LABVAR"), Some(&Some("x".to_string())));
    }
}
