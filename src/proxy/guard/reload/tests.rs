use super::*;
use crate::config::Config;
use crate::policy::identity::sha256_hex;

fn rules(word: &str) -> String {
    format!("mode = \"enforce\"\n[[rule]]\nid = \"t.word\"\ndescription = \"test\"\nseverity = \"high\"\naction = \"redact\"\nkeywords = [\"{word}\"]\n")
}

#[test]
fn load_records_name_config_rule_files_and_the_version_every_exchange_sees() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("a.toml"), rules("ALPHA")).unwrap();
    let cfg_path = dir.path().join("guard.toml");
    let cfg_text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[dlp]\npolicies = \"{}\"\nwatch_interval_ms = 0\n",
        policies.display()
    );
    std::fs::write(&cfg_path, &cfg_text).unwrap();
    let cfg = Config::load(&cfg_path).unwrap_or_else(|e| panic!("{e}"));
    let guard = Guard::from_config(&cfg, crate::store::Store::open_in_memory().unwrap()).unwrap();
    guard.set_config_file(&cfg_path);
    let seen = std::sync::Arc::new(Mutex::new(Vec::<LoadRecord>::new()));
    let s2 = seen.clone();
    assert!(guard.set_load_observer(Box::new(move |r| s2.lock().unwrap().push(r.clone()))));
    assert!(!guard.set_load_observer(Box::new(|_| {})), "one observer");

    let first = guard.record_load(LoadEvent::Startup);
    assert_eq!(first.event, LoadEvent::Startup);
    let config = first.config.as_ref().unwrap();
    assert_eq!(
        config.sha256.as_deref(),
        Some(sha256_hex(cfg_text.as_bytes()).as_str())
    );
    let rs = first.rule_set.as_ref().unwrap();
    assert_eq!((rs.rules, rs.files.len()), (1, 1));
    assert_eq!(rs.files[0].path, "a.toml");
    assert_eq!(
        rs.files[0].sha256.as_deref(),
        Some(sha256_hex(rules("ALPHA").as_bytes()).as_str())
    );
    let v1 = first.policy_version.clone().unwrap();
    assert_eq!(guard.policy().version(), Some(v1.as_str()));
    assert_eq!(v1, guard.policy_status().fingerprint.unwrap().to_string());

    // A reload: the record and the running stack carry the new version.
    std::fs::write(policies.join("a.toml"), rules("BRAVO")).unwrap();
    guard.reload_policies().unwrap();
    let second = guard.load_record(LoadEvent::Reload);
    let v2 = second.policy_version.clone().unwrap();
    assert_ne!(v1, v2);
    assert_eq!(guard.policy().version(), Some(v2.as_str()));
    assert_eq!(
        second.rule_set.unwrap().files[0].sha256,
        Some(sha256_hex(rules("BRAVO").as_bytes()))
    );
    assert_eq!(second.config, first.config, "the config is not reloaded");

    // A refused reload: the record names the running set, which stays.
    std::fs::write(
        policies.join("a.toml"),
        "mode = \"enforce\"\n[[rule]]\nid = 5\n",
    )
    .unwrap();
    assert!(guard.reload_policies().is_err());
    std::fs::remove_file(policies.join("a.toml")).unwrap();
    std::fs::write(
        policies.join("b.toml"),
        rules("CHARLIE").replace("t.word", "t.other"),
    )
    .unwrap();
    assert!(guard.reload_policies().is_err(), "t.word would be lost");
    let seen = seen.lock().unwrap();
    let events: Vec<(LoadEvent, Option<&str>)> = seen
        .iter()
        .map(|r| (r.event, r.refused.as_deref()))
        .collect();
    assert_eq!(
        events,
        [
            (LoadEvent::Startup, None),
            (LoadEvent::Reload, None),
            (LoadEvent::RefusedReload, Some("refused")),
            (LoadEvent::RefusedReload, Some("refused_shrink")),
        ]
    );
    assert_eq!(seen[1].policy_version.as_deref(), Some(v2.as_str()));
    for r in &seen[2..] {
        assert_eq!(
            r.policy_version.as_deref(),
            Some(v2.as_str()),
            "the running set stays"
        );
    }
}

fn yara_rule(name: &str, needle: &str) -> String {
    format!("rule {name} {{ strings: $a = \"{needle}\" condition: $a }}\n")
}

#[test]
fn yara_rules_load_with_the_dlp_set_and_a_broken_file_refuses_the_whole_reload() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    let yara = policies.join("yara");
    std::fs::create_dir_all(&yara).unwrap();
    std::fs::write(policies.join("a.toml"), rules("ALPHA")).unwrap();
    let cfg_path = dir.path().join("guard.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[dlp]\npolicies = \"{}\"\nwatch_interval_ms = 0\n",
            policies.display()
        ),
    )
    .unwrap();
    let cfg = Config::load(&cfg_path).unwrap_or_else(|e| panic!("{e}"));
    let t = Duration::from_secs(5);
    let hits = |g: &Guard, data: &[u8]| -> Vec<String> {
        g.yara_rules()
            .map(|r| {
                r.scan(data, t)
                    .unwrap()
                    .into_iter()
                    .map(|h| h.rule)
                    .collect()
            })
            .unwrap_or_default()
    };

    // Without a yara directory: no YARA rules, no yara layer, the DLP fingerprint alone.
    let g = Guard::from_config(&cfg, crate::store::Store::open_in_memory().unwrap()).unwrap();
    assert!(g.yara_rules().is_none());
    assert!(!g.policy().names().contains(&"yara"));
    let fp_dlp_only = g.policy_status().fingerprint.unwrap();
    drop(g);

    let text_rule = "rule secret : text { meta: fields = \"body\" strings: $a = \"NORDLICHT\" condition: $a }\n";
    std::fs::write(
        yara.join("x.yar"),
        format!("{}{text_rule}", yara_rule("r", "needle-one")),
    )
    .unwrap();
    let guard = Guard::from_config(&cfg, crate::store::Store::open_in_memory().unwrap()).unwrap();
    assert_eq!(hits(&guard, b"a needle-one b"), vec!["x.r"]);
    assert_eq!(
        guard.policy().names(),
        vec!["config", "media", "dlp", "yara", "opaque"]
    );
    let status = guard.policy_status();
    let fp1 = status.fingerprint.unwrap();
    assert_ne!(fp1, fp_dlp_only, "the YARA files are part of the identity");
    assert_eq!(fp1, PolicyRead::read(&policies).unwrap().fingerprint());
    assert_eq!((status.rules, status.files), (3, 2));
    let rec = guard.load_record(LoadEvent::Startup);
    let files: Vec<&str> = rec
        .rule_set
        .as_ref()
        .unwrap()
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(files, vec!["a.toml", "yara/x.yar"]);

    // A syntax error in a .yar: refused, the running rules and version stay.
    std::fs::write(
        yara.join("x.yar"),
        format!(
            "{}{text_rule}rule broken {{ condition }}\n",
            yara_rule("r", "needle-two")
        ),
    )
    .unwrap();
    match guard.reload_policies() {
        Err(GuardError::Yara { diagnostics, .. }) => {
            let shown = diagnostics.to_string();
            assert!(shown.contains("x.yar:3:"), "{shown}");
            assert!(shown.contains("error[YAR001]"), "{shown}");
        }
        other => panic!("expected a YARA error, got {other:?}"),
    }
    let status = guard.policy_status();
    assert_eq!(status.last_result, Some(ReloadResult::Refused));
    assert_eq!(status.fingerprint, Some(fp1));
    assert_eq!(guard.policy().version(), Some(fp1.to_string().as_str()));
    assert_eq!(hits(&guard, b"a needle-one b"), vec!["x.r"]);
    assert!(hits(&guard, b"a needle-two b").is_empty());

    // Fixed: the new rules run.
    std::fs::write(
        yara.join("x.yar"),
        format!("{}{text_rule}", yara_rule("r", "needle-two")),
    )
    .unwrap();
    assert_eq!(guard.reload_policies().unwrap(), 3);
    assert_eq!(hits(&guard, b"a needle-two b"), vec!["x.r"]);
    assert!(hits(&guard, b"a needle-one b").is_empty());
    assert_ne!(guard.policy_status().fingerprint, Some(fp1));

    // Dropping a YARA rule is a shrink like dropping a DLP rule.
    std::fs::write(yara.join("x.yar"), yara_rule("r", "needle-two")).unwrap();
    match guard.reload_policies() {
        Err(GuardError::DlpShrink { loss, .. }) => {
            assert_eq!(loss.ids, vec!["yara:x.secret".to_string()])
        }
        other => panic!("expected a refused shrink, got {other:?}"),
    }
    assert!(guard.policy().names().contains(&"yara"));
    guard.reload_policies_accepting_smaller().unwrap();
    assert!(
        !guard.policy().names().contains(&"yara"),
        "no text rules left"
    );
    assert_eq!(hits(&guard, b"needle-two"), vec!["x.r"]);
}
