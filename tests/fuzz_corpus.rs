//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`) and its crash regressions
//! (`fuzz/regressions/<target>/`) through the target bodies of `grenzwacht::fuzzing`, in the
//! ordinary test build: what a fuzzer once found must keep passing, without an instrumented
//! build in CI.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` regenerates the seed files (named
//! `seed-*`) from the repository's fixtures and from values the code itself encodes.
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use grenzwacht::fuzzing::{self, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    out.retain(|p| p.is_file());
    out.sort();
    out
}

#[test]
fn every_target_has_a_fuzz_binary_a_corpus_and_a_dictionary_entry() {
    let dir = fuzz_dir();
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(
            dir.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{name}.rs missing"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} is not a [[bin]] of fuzz/Cargo.toml"
        );
        assert!(
            files(&dir.join("corpus").join(name)).len() >= 3,
            "fuzz/corpus/{name} has fewer than 3 inputs"
        );
    }
    // And no stray target binary without a body here.
    for f in files(&dir.join("fuzz_targets")) {
        let stem = f.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(
            fuzzing::target(&stem).is_some(),
            "{stem} is not in fuzzing::TARGETS"
        );
    }
}

#[test]
fn corpora_and_regressions_replay_without_a_finding() {
    let dir = fuzz_dir();
    let mut counts = BTreeMap::new();
    let mut failures = Vec::new();
    // Panics are the findings; keep the default hook quiet while replaying.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for (name, body) in TARGETS {
        for sub in ["corpus", "regressions"] {
            for f in files(&dir.join(sub).join(name)) {
                let data = std::fs::read(&f).unwrap();
                *counts.entry(*name).or_insert(0usize) += 1;
                if let Err(e) = catch_unwind(AssertUnwindSafe(|| body(&data))) {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{}: {msg}", f.display()));
                }
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!("replayed: {counts:?}");
    assert!(failures.is_empty(), "findings:\n{}", failures.join("\n"));
    assert_eq!(counts.len(), TARGETS.len());
}

/// Properties the targets check must be able to fail: a few inputs that break them.
#[test]
fn the_targets_report_what_they_check() {
    let panics = |name: &str, data: &[u8]| {
        let body = fuzzing::target(name).unwrap();
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = catch_unwind(AssertUnwindSafe(|| body(data))).is_err();
        std::panic::set_hook(hook);
        r
    };
    // Valid inputs of each kind pass.
    assert!(!panics("strict_json", br#"{"a":[1,2,{"b":null}]}"#));
    assert!(!panics("strict_json", br#"{"a":1,"a":2}"#));
    assert!(!panics("canonical", br#"{"a":1,"b":"x"}"#));
    assert!(!panics("canonical", br#"{"b":1,"a":2}"#));
    assert!(!panics(
        "xmatrix",
        br#"X-Matrix origin="a.example",destination="b.example",key="ed25519:1",sig="YWJj""#
    ));
    assert!(!panics("split_message", b"not a message"));
    assert!(fuzzing::target("nope").is_none());
}

// ------------------------------------------------------------------ seeds

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_matching(dirs: &[&str], pred: impl Fn(&Path) -> bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for d in dirs {
        let mut stack = vec![repo().join(d)];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if pred(&p) {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    out.sort();
    out
}

fn ext(p: &Path, e: &[&str]) -> bool {
    p.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| e.contains(&x))
}

const EVENTS: &[&str] = &[
    r#"{"auth_events":["$a"],"content":{"body":"Hallo","msgtype":"m.text"},"depth":5,"hashes":{"sha256":"aGFzaA"},"origin":"hs1.test","origin_server_ts":1700000000000,"prev_events":["$b"],"room_id":"!r:hs1.test","sender":"@alice:hs1.test","signatures":{"hs1.test":{"ed25519:a":"c2ln"}},"type":"m.room.message","unsigned":{"age":1}}"#,
    r#"{"content":{"creator":"@alice:hs1.test","room_version":"12"},"depth":1,"origin_server_ts":1,"sender":"@alice:hs1.test","state_key":"","type":"m.room.create","hashes":{"sha256":"x"},"signatures":{}}"#,
    r#"{"content":{"membership":"join","displayname":"Alice","join_authorised_via_users_server":"@b:hs2.test"},"room_id":"!r:hs1.test","sender":"@alice:hs1.test","state_key":"@alice:hs1.test","type":"m.room.member","origin_server_ts":2,"depth":3}"#,
    r#"{"content":{"redacts":"$x"},"redacts":"$x","room_id":"!r:hs1.test","sender":"@a:hs1.test","type":"m.room.redaction","origin_server_ts":3}"#,
    r#"{"content":{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!o:h"}]},"room_id":"!r:h","sender":"@a:h","state_key":"","type":"m.room.join_rules","origin_server_ts":4}"#,
    r#"{"content":{"users":{"@a:h":100},"events_default":0,"invite":50,"notifications":{"room":50}},"room_id":"!r:h","sender":"@a:h","state_key":"","type":"m.room.power_levels","origin_server_ts":5}"#,
    r#"{"content":{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"QUJD","device_id":"D","sender_key":"k","session_id":"s"},"room_id":"!r:h","sender":"@a:h","type":"m.room.encrypted","origin_server_ts":6}"#,
    r#"{"content":{"body":"\u00e9\ud83d\ude00 \"q\" \\ \n","n":-5,"f":1.5,"big":9007199254740992,"z":-0},"room_id":"!r:h","sender":"@a:h","type":"m.room.message","origin_server_ts":7}"#,
    r#"{"edu_type":"m.typing","content":{"room_id":"!r:h","user_id":"@a:h","typing":true}}"#,
    r#"{"edu_type":"m.receipt","content":{"!r:h":{"m.read":{"@a:h":{"event_ids":["$e"],"data":{"ts":1}}}}}}"#,
    r#"{"edu_type":"m.direct_to_device","content":{"sender":"@a:h","type":"m.room_key_request","message_id":"m","messages":{"@b:g":{"*":{"x":1}}}}}"#,
    r#"{"edu_type":"m.presence","content":{"push":[{"user_id":"@a:h","presence":"online","status_msg":"hi","last_active_ago":5}]}}"#,
];

fn txn_bodies() -> Vec<String> {
    let pdus: Vec<&str> = EVENTS
        .iter()
        .filter(|e| !e.contains("edu_type"))
        .copied()
        .collect();
    let edus: Vec<&str> = EVENTS
        .iter()
        .filter(|e| e.contains("edu_type"))
        .copied()
        .collect();
    vec![
        format!(
            r#"{{"origin":"hs1.test","origin_server_ts":1700000000000,"pdus":[{}],"edus":[{}]}}"#,
            pdus.join(","),
            edus.join(",")
        ),
        format!(
            r#"{{"origin":"hs2.test","origin_server_ts":1,"pdus":[{}]}}"#,
            pdus[0]
        ),
        r#"{"origin":"hs2.test","origin_server_ts":1,"pdus":[],"edus":[]}"#.into(),
        format!(
            r#"{{"pdus":[{}],"origin_server_ts":2,"origin":"h","extra":{{"a":[1,2,3]}}}}"#,
            pdus[1]
        ),
    ]
}

/// Inputs of one kind.
type Inputs = Vec<Vec<u8>>;

fn label_seeds() -> (Inputs, Inputs, Inputs) {
    let xml = read_matching(&["tests/fixtures", "../shared/conformance"], |p| {
        ext(p, &["xml", "nato"])
            && !p.to_string_lossy().contains("policy")
            && !p.to_string_lossy().contains("spif/")
    });
    let json = read_matching(&["tests/fixtures/spif-labels"], |p| ext(p, &["json"]));
    let ber = read_matching(&["tests/fixtures", "../shared/conformance"], |p| {
        ext(p, &["ber"])
    });
    (xml, json, ber)
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand when the seeds change"]
fn write_seeds() {
    use grenzwacht::federation::catalog;
    let mut seeds: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
    let mut add = |t: &'static str, d: Vec<u8>| seeds.entry(t).or_default().push(d);

    let json_texts: Vec<String> = EVENTS
        .iter()
        .map(|s| s.to_string())
        .chain(txn_bodies())
        .chain(
            [
                "[]",
                "{}",
                "null",
                "true",
                "-0",
                "1e5",
                "[1,[2,[3]]]",
                "\"\\u0000\"",
                r#"{"a":{"b":{"c":[]}},"a":1}"#,
                r#"{"\u00e9":1,"e":2}"#,
                "9007199254740991",
                "-9007199254740992",
                "\"\\ud800\"",
                r#"{"k":"\/"}"#,
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .collect();
    for t in &json_texts {
        add("strict_json", t.clone().into_bytes());
        add("canonical", t.clone().into_bytes());
    }
    for e in EVENTS {
        add("pdu", e.as_bytes().to_vec());
    }
    let send_index = catalog::entries()
        .iter()
        .position(|e| e.id == "send_transaction" || e.path.ends_with("/send/{txnId}"))
        .unwrap() as u8;
    for b in txn_bodies() {
        let mut d = vec![send_index];
        d.extend_from_slice(b.as_bytes());
        add("txn", d);
        add("txn", b.into_bytes());
    }
    for (i, e) in EVENTS
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.contains("edu_type"))
    {
        for v in [0u8, 5, 9, 10, 11] {
            let mut d = vec![v.wrapping_add(i as u8 * 12)];
            d.extend_from_slice(e.as_bytes());
            add("redact", d);
        }
    }
    for h in [
        r#"X-Matrix origin="hs1.test",destination="hs2.test",key="ed25519:a_bc",sig="dGVzdA""#,
        r#"X-Matrix origin=hs1.test,key="ed25519:1",sig="ABC+/def""#,
        r#"X-Matrix  key="ed25519:k", origin="[::1]:8448", sig="c2ln", destination="h.test""#,
        r#"x-matrix origin="a",destination="b",key="ed25519:x",sig="y",extra="z""#,
        r#"X-Matrix origin="a\"b",key="ed25519:x",sig="y""#,
    ] {
        add("xmatrix", h.as_bytes().to_vec());
        add("split_message", h.as_bytes().to_vec());
    }
    const METHODS: [&str; 6] = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS"];
    for e in catalog::entries() {
        let m = METHODS
            .iter()
            .position(|m| *m == e.method.as_str())
            .unwrap_or(0) as u8;
        let mut path = String::new();
        let mut rest = e.path;
        while let Some(i) = rest.find('{') {
            path.push_str(&rest[..i]);
            let j = rest[i..].find('}').unwrap() + i;
            path.push_str(match &rest[i + 1..j] {
                "roomId" => "%21room%3Ahs1.test",
                "eventId" => "%24ev",
                "userId" => "%40alice%3Ahs1.test",
                "serverName" => "hs1.test",
                _ => "x1",
            });
            rest = &rest[j + 1..];
        }
        path.push_str(rest);
        let mut d = vec![m];
        d.extend_from_slice(path.as_bytes());
        add("catalog", d.clone());
        d.extend_from_slice(b"?limit=10&ver=10&ver=11");
        add("catalog", d);
    }
    for s in read_matching(&["spif", "../shared/conformance/spiffing"], |p| {
        ext(p, &["xml"])
            && (p.to_string_lossy().contains("policy") || p.starts_with(repo().join("spif")))
    }) {
        add("spif_xml", s);
    }
    let (xml, json, ber) = label_seeds();
    for x in xml {
        add("label_4774", x);
    }
    for j in &json {
        add("label_json", j.clone());
    }
    add(
        "label_json",
        br#"{"policy":"1.3.6.1.4.1.31778.110.2","classification":"SECRET"}"#.to_vec(),
    );
    for b in ber {
        add("ess_ber", b);
    }
    // BER of the JSON labels, as the set renders them.
    {
        use grenzwacht::spif::set::SpifSet;
        let mut set = SpifSet::new();
        for f in ["spif/nato.xml", "spif/deu-vs.xml"] {
            set.insert(grenzwacht::spif::model::Spif::load(&repo().join(f)).unwrap())
                .unwrap();
        }
        for j in &json {
            if let Ok(l) = set.parse_label(j) {
                if let Ok(x) = set.to_4774_xml(&l) {
                    add("label_4774", x.into_bytes());
                }
            }
        }
        add("ess_ber", vec![0x31, 0x00]);
        add("ess_ber", vec![0x31, 0x03, 0x02, 0x01, 0x01]);
    }
    for p in read_matching(&["policies"], |p| ext(p, &["toml"])) {
        add("dlp_rules", p);
    }
    for c in read_matching(&["deploy"], |p| ext(p, &["toml"])) {
        add("config", c);
    }
    add("config", b"[inbound]\nlisten = \"127.0.0.1:0\"\n".to_vec());
    for (ct, body) in [
        grenzwacht::media::multipart::build(br#"{}"#, "text/plain", None, b"hello"),
        grenzwacht::media::multipart::build(
            br#"{"a":1}"#,
            "image/png",
            Some("inline; filename=a.png"),
            b"\x89PNG\r\n\x1a\n",
        ),
    ] {
        let mut d = ct.into_bytes();
        d.push(b'\n');
        d.extend_from_slice(&body);
        add("multipart", d);
    }
    add(
        "multipart",
        b"multipart/mixed; boundary=B\n--B\r\nContent-Type: application/json\r\n\r\n{}\r\n--B\r\nLocation: https://x/y\r\n\r\n\r\n--B--\r\n".to_vec(),
    );
    {
        use grenzwacht::diode::vectors;
        for v in vectors::crafted()
            .into_iter()
            .step_by(8)
            .chain(vectors::random(16, 7, 1 << 20))
        {
            add("diode_frame", v.bytes);
        }
    }
    {
        use grenzwacht::split::wire::{Heartbeat, Request, Response};
        let req = Request {
            id: 7,
            method: "PUT".into(),
            path: "/_matrix/federation/v1/send/t1".into(),
            destination: "hs2.test".into(),
            auth: Some(
                r#"X-Matrix origin="hs1.test",destination="hs2.test",key="ed25519:a",sig="c2ln""#
                    .into(),
            ),
            body: Some(serde_json::from_str(&txn_bodies()[1]).unwrap()),
        };
        add("split_message", req.encode().unwrap());
        add(
            "split_message",
            Response {
                id: 7,
                status: 200,
                body: Some(serde_json::json!({"pdus": {}})),
            }
            .encode()
            .unwrap(),
        );
        add(
            "split_message",
            Heartbeat {
                half: "high".into(),
                pending: 3,
            }
            .encode()
            .unwrap(),
        );
    }
    let dir = fuzz_dir().join("corpus");
    for (name, list) in seeds {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in files(&d) {
            if f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
            {
                std::fs::remove_file(f).unwrap();
            }
        }
        for (i, data) in list.iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i:03}")), data).unwrap();
        }
    }
}
