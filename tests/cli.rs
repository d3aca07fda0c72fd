//! The real binary on declarative cases: `check`, `ca init`, `serve` + graceful shutdown.
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_grenzwacht");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run grenzwacht");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_accepts_a_valid_config_and_reports_every_error_of_a_bad_one() {
    let p = common::pki();
    let (_, audit_key) = common::guard_key_file(&p);
    let good = p.dir.path().join("good.toml");
    let without_audit = format!(
        "[store]\npath = \"{}\"\n[inbound]\nlisten = \"127.0.0.1:0\"\nverify_signatures = false\n[keys]\nverify_pdus = false\n[[protected]]\nserver_name = \"hs1.test\"\ncert = \"{}\"\nkey = \"{}\"\nupstream = \"http://127.0.0.1:8008\"\n",
        p.dir.path().join("store/grenzwacht.db").display(),
        p.cert.display(),
        p.key.display()
    );
    std::fs::write(
        &good,
        format!(
            "{without_audit}[audit]\ndir = \"{}\"\nkey_file = \"{}\"\n",
            p.dir.path().join("store/audit").display(),
            audit_key.display()
        ),
    )
    .unwrap();
    // `check` verifies the store's directory without creating anything.
    let (code, _, err) = run(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 2, "the store directory does not exist yet: {err}");
    assert!(
        err.contains("[store] path") && err.contains("store"),
        "{err}"
    );
    assert!(
        !p.dir.path().join("store").exists(),
        "check never creates the store directory"
    );
    std::fs::create_dir(p.dir.path().join("store")).unwrap();
    let (code, out, err) = run(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("OK"));
    assert!(
        !p.dir.path().join("store/grenzwacht.db").exists(),
        "check never creates the store"
    );
    assert!(
        !p.dir.path().join("store/audit").exists(),
        "check never creates the audit log"
    );
    // Without an audit log the guard does not run: `check` says so.
    let unaudited = p.dir.path().join("unaudited.toml");
    std::fs::write(&unaudited, &without_audit).unwrap();
    let (code, _, err) = run(&["check", "--config", unaudited.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[audit] is required"), "{err}");

    let bad = p.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[log]\nformat = \"xml\"\n\n[outbound]\nconect_listen = \"127.0.0.1:3128\"\n\n[limits]\nmax_pdus = \"fifty\"\n\n[[rule]]\nid = \"r1\"\nregex = \"(unclosed\"\naction = \"redact\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml:2:"),
        "format error with its line: {err}"
    );
    assert!(
        err.contains("bad.toml:5:") && err.contains("conect_listen"),
        "unknown key with its line: {err}"
    );
    assert!(
        err.contains("bad.toml:8:") && err.contains("max_pdus"),
        "type error with its line: {err}"
    );
    assert!(
        err.contains("bad.toml:12:") && err.contains("regex"),
        "rule regex error with its line: {err}"
    );

    // Referenced files are checked too: a missing certificate fails `check`.
    let missing = p.dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace(p.cert.to_str().unwrap(), "/nonexistent/cert.pem"),
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--config", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    // Every missing file in one run, each at its line.
    let several = p.dir.path().join("several-missing.toml");
    std::fs::write(
        &several,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace(p.cert.to_str().unwrap(), "/nonexistent/cert.pem")
            .replace(p.key.to_str().unwrap(), "/nonexistent/key.pem")
            + "[dlp]\npolicies = \"/nonexistent/policies\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--config", several.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    for (what, line) in [
        ("/nonexistent/cert.pem", 10),
        ("/nonexistent/key.pem", 11),
        ("/nonexistent/policies", 17),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(what) && l.contains(&format!(":{line}:"))),
            "{what} at line {line}: {err}"
        );
    }

    // The DLP rule set is loaded by `check`: a broken rule file fails it with the rule file's
    // diagnostics (file:line:col), a good one passes.
    let rules = p.dir.path().join("policies");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("r.toml"), "mode = \"enforce\"\n[[rule]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"high\"\naction = \"explode\"\nkeywords = [\"A\"]\n").unwrap();
    let with_dlp = p.dir.path().join("dlp.toml");
    std::fs::write(
        &with_dlp,
        format!(
            "{}[dlp]\npolicies = \"policies\"\n",
            std::fs::read_to_string(&good).unwrap()
        ),
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--config", with_dlp.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("r.toml:6:"),
        "rule file diagnostic with its line: {err}"
    );
    std::fs::write(rules.join("r.toml"), "mode = \"enforce\"\n[[rule]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"high\"\naction = \"redact\"\nkeywords = [\"A\"]\n").unwrap();
    let (code, out, err) = run(&["check", "--config", with_dlp.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    // The YARA rules of `policies/yara/` too: a file that does not compile fails the check
    // with its diagnostic (file:line:col, YAR code).
    std::fs::create_dir_all(rules.join("yara")).unwrap();
    std::fs::write(
        rules.join("yara/x.yar"),
        "rule x {\n  condition:\n    filesize >\n}\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", "--config", with_dlp.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("x.yar:4:1: error[YAR001]: syntax error")),
        "{err}"
    );
    std::fs::write(
        rules.join("yara/x.yar"),
        "rule x {\n  strings:\n    $a = \"abc\"\n  condition:\n    $a\n}\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", "--config", with_dlp.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn keys_generate_writes_a_synapse_key_once() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("guard.signing.key");
    let (code, out, err) = run(&[
        "keys",
        "generate",
        "--out",
        key.to_str().unwrap(),
        "--version",
        "gw7",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ed25519:gw7"), "{out}");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "private key file mode"
    );
    let loaded =
        grenzwacht::keys::SigningKey::from_synapse_file(&key).expect("Synapse signing.key format");
    assert_eq!(loaded.key_id(), "ed25519:gw7");
    assert!(
        out.contains(&loaded.public_key_base64()),
        "prints the public key: {out}"
    );
    let before = std::fs::read(&key).unwrap();
    let (code, _, err) = run(&["keys", "generate", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 1, "refuses to overwrite: {err}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the existing key is untouched"
    );
    let (code, _, _) = run(&[
        "keys",
        "generate",
        "--out",
        dir.path().join("k2").to_str().unwrap(),
        "--version",
        "bad version",
    ]);
    assert_ne!(code, 0, "an invalid version is refused");
    assert!(!dir.path().join("k2").exists());
}

#[test]
fn ca_init_creates_a_ca_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let (code, out, err) = run(&["ca", "init", "--dir", ca.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(ca.join("ca.crt").exists() && ca.join("ca.key").exists());
    let crt = std::fs::read(ca.join("ca.crt")).unwrap();
    let (code, _, err) = run(&["ca", "init", "--dir", ca.to_str().unwrap()]);
    assert_ne!(code, 0, "second init must refuse to overwrite");
    assert!(!err.is_empty());
    assert_eq!(
        std::fs::read(ca.join("ca.crt")).unwrap(),
        crt,
        "existing CA untouched"
    );
}

#[tokio::test]
async fn serve_answers_health_and_shuts_down_gracefully_on_sigterm() {
    let p = common::pki();
    let up = common::recorder(None, common::default_answer()).await;
    // Ports: the binary binds them; pick free ones by binding 0 and releasing.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (admin, inbound) = (free(), free());
    let rules = p.dir.path().join("serve-policies");
    std::fs::create_dir_all(&rules).unwrap();
    let rule = |id: &str, action: &str| {
        format!("mode = \"enforce\"\n[[rule]]\nid = \"{id}\"\ndescription = \"d\"\nseverity = \"high\"\naction = \"{action}\"\nkeywords = [\"A\"]\n")
    };
    std::fs::write(rules.join("r.toml"), rule("x", "redact")).unwrap();
    std::fs::write(rules.join("s.toml"), rule("s", "redact")).unwrap();
    let cfg = p.dir.path().join("serve.toml");
    let audit_dir = p.dir.path().join("audit");
    let audit_key = p.dir.path().join("audit.key");
    let (code, _, err) = run(&[
        "keys",
        "generate",
        "--kind",
        "audit",
        "--out",
        audit_key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        &cfg,
        format!(
            "[audit]\ndir = \"{}\"\nkey_file = \"{}\"\n[log]\nformat = \"json\"\n[admin]\nlisten = \"{admin}\"\n[inbound]\nlisten = \"{inbound}\"\nverify_signatures = false\n[keys]\nverify_pdus = false\n[dlp]\npolicies = \"{}\"\nwatch_interval_ms = 0\n[store]\npath = \"{}\"\n[[protected]]\nserver_name = \"hs1.test\"\ncert = \"{}\"\nkey = \"{}\"\nupstream = \"http://{}\"\n",
            audit_dir.display(),
            audit_key.display(),
            rules.display(),
            p.dir.path().join("state.db").display(),
            p.cert.display(),
            p.key.display(),
            up.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(tcp) = tokio::net::TcpStream::connect(admin).await {
            let got = common::send_over(
                hyper_util::rt::TokioIo::new(tcp),
                "GET",
                "/health",
                &[],
                vec![],
            )
            .await;
            if got.status == 200 {
                break;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "guard exited ({status}) before it was healthy: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "guard did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = common::tls_request(
        inbound,
        &p.ca_path,
        "GET",
        "/_matrix/federation/v1/version",
        &[],
        vec![],
    )
    .await;
    assert_eq!(got.status, 200);
    let m = common::metrics(admin).await;
    assert!(
        common::counter(
            &m,
            "grenzwacht_requests_total",
            &[
                ("direction", "inbound"),
                ("endpoint", "version"),
                ("status", "200")
            ]
        ) >= 1.0,
        "{m}"
    );

    // SIGHUP reloads the DLP rule set: a broken one is refused (the guard keeps running), a
    // good one is taken, one that lacks a rule file or rule id of the running one is refused;
    // SIGUSR1 takes it (the operator's confirmation).
    let pid = child.id() as i32;
    let reloads = |m: &str, result: &str| {
        common::counter(m, "grenzwacht_policy_reloads_total", &[("result", result)])
    };
    let gauge = |m: &str, name: &str| common::counter(m, name, &[("input", "dlp")]);
    assert_eq!(
        gauge(
            &common::metrics(admin).await,
            "grenzwacht_policy_rules_loaded"
        ),
        2.0
    );
    let steps = [
        ("HUP", Some(("x", "explode")), "refused", 2.0),
        ("HUP", Some(("x", "hold")), "ok", 2.0),
        ("HUP", None, "refused_shrink", 2.0),
        ("USR1", None, "accepted_shrink", 1.0),
    ];
    for (signal, file, result, rules_after) in steps {
        match file {
            Some((id, action)) => std::fs::write(rules.join("r.toml"), rule(id, action)).unwrap(),
            None => {
                let _ = std::fs::remove_file(rules.join("s.toml"));
            }
        }
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let t0 = Instant::now();
        let m = loop {
            let m = common::metrics(admin).await;
            if reloads(&m, result) >= 1.0 {
                break m;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the guard died on SIG{signal}"
            );
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no {result} reload after SIG{signal}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            gauge(&m, "grenzwacht_policy_rules_loaded"),
            rules_after,
            "after SIG{signal} ({result})"
        );
    }
    // The running set's identity is the one `policy check` prints for the directory.
    let (code, out, err) = run(&["policy", "check", "--policies", rules.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let printed: f64 = out
        .split("gauge value ")
        .nth(1)
        .and_then(|r| r.trim_end().trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let m = common::metrics(admin).await;
    assert_eq!(gauge(&m, "grenzwacht_policy_fingerprint"), printed, "{m}");
    assert_eq!(gauge(&m, "grenzwacht_policy_files_loaded"), 1.0);

    // SIGTERM: the process drains and exits 0.
    assert_eq!(send_sigterm(pid), 0);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "guard did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let out = child.wait_with_output().unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // JSON log lines, one of them the shutdown notice.
    let shutdown_line = log
        .lines()
        .find(|l| l.contains("shutting down"))
        .unwrap_or_else(|| panic!("no shutdown line in {log}"));
    let v: serde_json::Value = serde_json::from_str(shutdown_line).expect("JSON log format");
    assert_eq!(v["level"], "INFO");
    // The audit log of the run is intact, signed, and closed with a shutdown record.
    let public = format!("{}.pub", audit_key.display());
    let (code, out, err) = run(&[
        "audit",
        "verify",
        audit_dir.to_str().unwrap(),
        "--key",
        &public,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&["audit", "query", audit_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let kinds: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["kind"].as_str().unwrap_or("").to_string())
        .collect();
    for kind in ["startup", "checkpoint", "shutdown"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}

fn send_sigterm(pid: i32) -> i32 {
    // `kill -TERM pid` without a libc dependency.
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| if s.success() { 0 } else { 1 })
        .unwrap_or(1)
}
