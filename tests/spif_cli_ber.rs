//! `grenzwacht label` with ESS BER labels that carry security categories, run as the real
//! binary: `label convert` writes them, `label marking` and `label check` read them.
use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn p(rel: &str) -> String {
    root().join(rel).display().to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(args)
        .output()
        .expect("run grenzwacht")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("gw-cli-ber-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const FOOD: &str = "tests/fixtures/spiffing/food-policy.xml";
const MILK: &str = "tests/fixtures/spiffing/food-label-milk-chocolate.xml";

/// The conformance suite's test 1 (tests.xml): milk chocolate, its marking and the two access
/// decisions — here with the label converted to BER by the CLI and read back from the file.
#[test]
fn convert_to_ber_then_marking_and_check_read_it() {
    let t = Tmp::new("conv");
    let ber = t.file("milk.ber");
    let o = run(&[
        "label",
        "convert",
        "--spif",
        &p(FOOD),
        "--label",
        &p(MILK),
        "--to",
        "ber",
        "--out",
        &ber,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    let bytes = std::fs::read(&ber).unwrap();
    assert_eq!(bytes[0], 0x31, "an ESS SecurityLabel SET");
    // Without --out the same DER bytes go to stdout.
    let o = run(&[
        "label",
        "convert",
        "--spif",
        &p(FOOD),
        "--label",
        &p(MILK),
        "--to",
        "ber",
    ]);
    assert!(o.status.success());
    assert_eq!(o.stdout, bytes);

    let o = run(&["label", "marking", "--spif", &p(FOOD), "--label", &ber]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "[ Food Sweet/Yummy Chocolate Brown Contains Lactose Not Vegan Animal Rights ]"
    );
    let check = |clearance: &str| {
        run(&[
            "label",
            "check",
            "--spif",
            &p(FOOD),
            "--label",
            &ber,
            "--clearance",
            &p(&format!("tests/fixtures/spiffing/{clearance}")),
        ])
    };
    let deny = check("food-clearance-lactose-intolerant.xml");
    assert_eq!(deny.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&deny.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["access"], "deny");
    assert!(v["reason"].as_str().unwrap().contains("Lactose"), "{v}");
    let grant = check("food-clearance-all-okay.xml");
    assert_eq!(grant.status.code(), Some(0), "{}", text(&grant.stderr));

    // BER → JSON → the categories of the original label.
    let o = run(&[
        "label",
        "convert",
        "--spif",
        &p(FOOD),
        "--label",
        &ber,
        "--to",
        "json",
    ]);
    assert!(o.status.success());
    let from_ber: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = run(&[
        "label",
        "convert",
        "--spif",
        &p(FOOD),
        "--label",
        &p(MILK),
        "--to",
        "json",
    ]);
    let from_xml: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(from_ber, from_xml);
    assert_eq!(from_ber["categories"].as_array().unwrap().len(), 6);
    // And on to STANAG 4774 and spiffing XML.
    for form in ["4774", "spiffing"] {
        let o = run(&[
            "label",
            "convert",
            "--spif",
            &p(FOOD),
            "--label",
            &ber,
            "--to",
            form,
        ]);
        assert!(o.status.success(), "{form}: {}", text(&o.stderr));
        let x = t.file(&format!("milk.{form}.xml"));
        std::fs::write(&x, &o.stdout).unwrap();
        let o = run(&[
            "label",
            "convert",
            "--spif",
            &p(FOOD),
            "--label",
            &x,
            "--to",
            "ber",
        ]);
        assert_eq!(o.stdout, bytes, "{form}");
    }
}

#[test]
fn broken_and_unknown_ber_exit_codes() {
    let t = Tmp::new("bad");
    let o = run(&[
        "label",
        "convert",
        "--spif",
        &p(FOOD),
        "--label",
        &p(MILK),
        "--to",
        "ber",
    ]);
    let good = o.stdout;
    // Truncated: no label at all, exit 2 with one error line.
    let cut = t.file("cut.ber");
    std::fs::write(&cut, &good[..good.len() - 3]).unwrap();
    let o = run(&["label", "check", "--spif", &p(FOOD), "--label", &cut]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let e = text(&o.stderr);
    assert!(
        e.starts_with("error: ") && e.contains("not a security label: BER:"),
        "{e}"
    );
    // A category of a syntax other than ACP 145 and MISSI (type 2.16.840.1.101.2.1.8.3.5):
    // readable, but not a category of the policy: invalid, exit 1.
    // SET { INTEGER 51, OID policy, SET OF { SEQUENCE { [0] ….3.5, [1] { NULL } } } }
    let mut unknown = vec![0x31, 0x24, 0x02, 0x01, 0x33];
    unknown.extend_from_slice(&[
        0x06, 0x0b, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00,
    ]);
    unknown.extend_from_slice(&[0x31, 0x12, 0x30, 0x10, 0x80, 0x0a]);
    unknown.extend_from_slice(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x08, 0x03, 0x05]);
    unknown.extend_from_slice(&[0xa1, 0x02, 0x05, 0x00]);
    let f = t.file("unknown.ber");
    std::fs::write(&f, &unknown).unwrap();
    let o = run(&["label", "check", "--spif", &p(FOOD), "--label", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("2.16.840.1.101.2.1.8.3.5"),
        "{v}"
    );
    let o = run(&["label", "marking", "--spif", &p(FOOD), "--label", &f]);
    assert_eq!(o.status.code(), Some(1));
    // An invalid label (cheap milk chocolate: Chocolate excludes Commodity) is not converted.
    let o = run(&[
        "label",
        "convert",
        "--spif",
        &p(FOOD),
        "--label",
        &p("tests/fixtures/spiffing/food-label-cheap-milk-chocolate.xml"),
        "--to",
        "ber",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    // A MISSI policy (rbacId 2.16.840.1.101.2.1.8.1): the categories go into one MISSI
    // category; marking and check read it back.
    let missi_spif = p("tests/fixtures/spiffing/food-policy-missi.xml");
    let mb = t.file("milk-missi.ber");
    let o = run(&[
        "label",
        "convert",
        "--spif",
        &missi_spif,
        "--label",
        &p(MILK),
        "--to",
        "ber",
        "--out",
        &mb,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let bytes = std::fs::read(&mb).unwrap();
    assert_ne!(bytes, good, "MISSI and ACP 145 encodings differ");
    let o = run(&["label", "marking", "--spif", &missi_spif, "--label", &mb]);
    assert_eq!(
        text(&o.stdout),
        "[ Food Sweet/Yummy Chocolate Brown Contains Lactose Not Vegan Animal Rights ]"
    );
}

#[test]
fn help_names_ber_categories_and_convert() {
    let o = run(&["label", "marking", "--help"]);
    let h = text(&o.stdout);
    assert!(
        h.contains("security categories in the ACP 145 or MISSI syntax"),
        "{h}"
    );
    assert!(!h.contains("no categories"), "{h}");
    let o = run(&["label", "convert", "--help"]);
    let h = text(&o.stdout);
    assert!(h.contains("ber (ESS SecurityLabel, DER, binary)"), "{h}");
}

/// `label marking` shows a privacy mark as the test SPIF's `privacyMark` entries say
/// (tests/fixtures/spif-privacy/privacy-marks.xml: MEDICAL has the phrase "MEDICAL IN
/// CONFIDENCE", in German "ÄRZTLICHE SCHWEIGEPFLICHT"; `privacyMarks` adds "PRIVACY: ").
#[test]
fn marking_shows_privacy_marks_from_json_and_ber() {
    let t = Tmp::new("pm");
    let spif = p("tests/fixtures/spif-privacy/privacy-marks.xml");
    let json = t.file("medical.json");
    std::fs::write(
        &json,
        r#"{"policy": "1.3.6.1.4.1.99999.9.1", "classification": 2, "privacy_mark": "MEDICAL"}"#,
    )
    .unwrap();
    let ber = t.file("medical.ber");
    let o = run(&[
        "label", "convert", "--spif", &spif, "--label", &json, "--to", "ber", "--out", &ber,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for l in [&json, &ber] {
        let o = run(&["label", "marking", "--spif", &spif, "--label", l]);
        assert_eq!(
            text(&o.stdout),
            "PM-TEST SECRET PRIVACY: MEDICAL IN CONFIDENCE"
        );
        let o = run(&[
            "label", "marking", "--spif", &spif, "--label", l, "--lang", "de",
        ]);
        assert_eq!(
            text(&o.stdout),
            "PM-TEST SECRET PRIVACY: ÄRZTLICHE SCHWEIGEPFLICHT"
        );
    }
    // A mark the SPIF does not list: invalid, exit 1.
    std::fs::write(
        &json,
        r#"{"policy": "1.3.6.1.4.1.99999.9.1", "classification": 2, "privacy_mark": "GOSSIP"}"#,
    )
    .unwrap();
    let o = run(&["label", "marking", "--spif", &spif, "--label", &json]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("privacy mark 'GOSSIP'"),
        "{}",
        text(&o.stderr)
    );
}
