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
