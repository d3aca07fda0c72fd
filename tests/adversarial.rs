//! The adversarial corpus (`tests/adversarial/corpus.toml`) in process, against the shipped
//! rule set (`policies/`):
//! - every case through the rule set's event scanner (`Engine::scan_parts`, what
//!   `policy explain` and `policy test` use) and through the guard's DLP policy layer, as a PDU
//!   in both directions and as a non-PDU event (stripped state): none may be allowed, except
//!   the known gaps of the scanner, which must be exactly the listed ones;
//! - every negative allowed by both;
//! - the real binary's `policy explain --format json` agrees with the in-process verdict;
//! - property tests: random ignorable characters inserted into `GEHEIM`, `STRENG GEHEIM` and a
//!   valid IBAN, random per-letter compatibility forms and look-alikes, random combining marks,
//!   random case and separators in the IBAN — all still caught.
#[path = "adversarial/corpus.rs"]
mod corpus;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use corpus::{Case, Gap};
use grenzwacht::federation::catalog;
use grenzwacht::federation::pdu::{EventView, PduView};
use grenzwacht::policy::dlp::fields::EventParts;
use grenzwacht::policy::dlp::layer::DlpPolicy;
use grenzwacht::policy::dlp::{event_ctx, Action, Engine, RuleSet};
use grenzwacht::policy::{Direction, ExchangeCtx, PduVerdict, Policy};
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{json, Value};

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        RuleSet::load_dir(policies())
            .unwrap_or_else(|d| panic!("{d}"))
            .engine()
    })
    .clone()
}

const DIRECTIONS: [Direction; 2] = [Direction::Outbound, Direction::Inbound];

/// The scanner's action on a bare event.
fn scan(ev: &Value, direction: Direction) -> Action {
    engine()
        .scan_parts(
            &event_ctx(ev, direction, Some("hs2.test")),
            EventParts::of(ev),
        )
        .action
}

fn crosses(a: Action) -> bool {
    matches!(a, Action::Allow | Action::Tag)
}

fn ctx(direction: Direction, endpoint: &str) -> ExchangeCtx {
    ExchangeCtx {
        direction,
        endpoint: catalog::by_id(endpoint).expect("endpoint"),
        peer: Some("hs2.test".into()),
        protected: "hs1.test".into(),
        txn_id: Some("t1".into()),
    }
}

/// The event as a full PDU from the side it comes from.
fn pdu_of(ev: &Value, direction: Direction) -> Box<RawValue> {
    let sender = match direction {
        Direction::Outbound => "@alice:hs1.test",
        _ => "@bob:hs2.test",
    };
    let mut pdu = json!({
        "type": ev["type"], "content": ev["content"], "room_id": "!adv:hs1.test", "sender": sender,
        "origin_server_ts": 1_700_000_000_000u64, "depth": 5, "auth_events": [], "prev_events": [],
        "hashes": {"sha256": "aGFzaA"}, "signatures": {}
    });
    if let Some(k) = ev.get("state_key") {
        pdu["state_key"] = k.clone();
    }
    serde_json::value::to_raw_value(&pdu).unwrap()
}

/// The guard layer's verdicts on the event: as a PDU in a transaction and as stripped state in
/// an invite, in the given direction.
fn layer_verdicts(ev: &Value, direction: Direction) -> [PduVerdict; 2] {
    let layer = DlpPolicy::new(engine());
    let raw = pdu_of(ev, direction);
    let as_pdu = layer.pdu(
        &ctx(direction, "send_transaction"),
        &PduView::parse(&raw).expect("PDU view"),
    );
    let mut stripped =
        json!({"type": ev["type"], "content": ev["content"], "sender": "@alice:hs1.test"});
    if let Some(k) = ev.get("state_key") {
        stripped["state_key"] = k.clone();
    }
    let raw = serde_json::value::to_raw_value(&stripped).unwrap();
    let as_event = layer.event(
        &ctx(direction, "invite_v2"),
        &EventView::parse(&raw).expect("event view"),
    );
    [as_pdu, as_event]
}

/// Everything in process that can judge a case, as (what, crosses).
fn judgements(case: &Case) -> Vec<(String, bool)> {
    let ev = case.event();
    let mut out = Vec::new();
    for d in DIRECTIONS {
        out.push((format!("scanner {}", d.as_str()), crosses(scan(&ev, d))));
        let [p, e] = layer_verdicts(&ev, d);
        out.push((format!("layer pdu {}", d.as_str()), p == PduVerdict::Allow));
        out.push((
            format!("layer stripped-state {}", d.as_str()),
            e == PduVerdict::Allow,
        ));
    }
    out
}

#[test]
fn corpus_is_refused_by_the_scanner_and_the_guard_layer_in_both_directions() {
    let corpus = corpus::load();
    assert!(
        corpus.case.len() >= 40,
        "the corpus has {} cases",
        corpus.case.len()
    );
    let mut problems = Vec::new();
    let mut scanner_gaps = Vec::new();
    for case in &corpus.case {
        let js = judgements(case);
        if js.iter().all(|(_, crosses)| *crosses) {
            scanner_gaps.push(case.class.clone());
        }
        match case.gap() {
            Some(Gap::Scanner) => {
                // A known scanner gap crosses everywhere; if some path catches it now, the
                // corpus (and docs/scanning.md) must be updated.
                for (what, crosses) in &js {
                    if !crosses {
                        problems.push(format!(
                            "{}: listed as a scanner gap but refused by {what}",
                            case.class
                        ));
                    }
                }
            }
            None | Some(Gap::Delivery) => {
                for (what, crosses) in &js {
                    if *crosses {
                        problems.push(format!("{}: allowed by {what}", case.class));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    let listed: Vec<String> = corpus
        .case
        .iter()
        .filter(|c| c.gap() == Some(Gap::Scanner))
        .map(|c| c.class.clone())
        .collect();
    assert_eq!(
        scanner_gaps, listed,
        "the scanner's known gaps are exactly the listed ones"
    );
}

#[test]
fn negatives_cross_unchanged() {
    let corpus = corpus::load();
    assert!(corpus.negative.len() >= 5);
    let mut problems = Vec::new();
    for case in &corpus.negative {
        for (what, crosses) in judgements(case) {
            if !crosses {
                problems.push(format!("{}: refused by {what}", case.class));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The binary, hard-linked once to a private place (the target dir may be rebuilt by another
/// checkout while the tests run).
fn bin() -> Command {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    let path = COPY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Earlier runs' links would keep replaced binaries on disk.
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with("grenzwacht-adversarial-")
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let to = dir.join(format!("grenzwacht-adversarial-{}", std::process::id()));
        if std::fs::hard_link(env!("CARGO_BIN_EXE_grenzwacht"), &to).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_grenzwacht"), &to).unwrap();
        }
        to
    });
    Command::new(path)
}

fn explain(ev: &Value, direction: Direction) -> String {
    let mut child = bin()
        .args(["policy", "explain", "--format", "json", "--policies"])
        .arg(policies())
        .args([
            "--event",
            "-",
            "--direction",
            direction.as_str(),
            "--peer",
            "hs2.test",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run grenzwacht policy explain");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ev.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "policy explain: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("explain JSON");
    v["verdict"].as_str().expect("verdict").to_string()
}

/// Corpus classes on which `policy explain` disagrees with the guard today: explain scans
/// only `type` and `content` (`Engine::scan_event`), the guard also `state_key`, `redacts` and
/// `unsigned` (`Engine::scan_parts`). The test fails when this list is not exact.
const EXPLAIN_KNOWN_MISMATCHES: &[&str] = &[];

#[test]
fn policy_explain_agrees_with_the_guard_on_corpus_cases() {
    let corpus = corpus::load();
    let picked = [
        "zero_width",
        "cyrillic",
        "math_bold",
        "html_comment",
        "html_entity_no_semicolon",
        "iban_dashes",
        "iban_fullwidth",
        "custom_key_next_to_body",
        "object_key",
        "event_type",
        "state_key",
        "html_topic",
        "spaced_out_letters",
        "lower_case_word",
        "iban_broken_check_digit_dashes",
        "state_clean",
    ];
    let mut problems = Vec::new();
    let mut mismatches = Vec::new();
    for class in picked {
        let case = corpus
            .case
            .iter()
            .chain(&corpus.negative)
            .find(|c| c.class == class)
            .unwrap_or_else(|| panic!("no case {class}"));
        let ev = case.event();
        for d in DIRECTIONS {
            let cli = explain(&ev, d);
            let guard = scan(&ev, d);
            let [pdu, _] = layer_verdicts(&ev, d);
            if crosses(guard) != (pdu == PduVerdict::Allow) {
                problems.push(format!(
                    "{class} {}: the scanner says {}, the guard layer {pdu:?}",
                    d.as_str(),
                    guard.as_str()
                ));
            }
            if cli != guard.as_str() {
                if !EXPLAIN_KNOWN_MISMATCHES.contains(&class) {
                    problems.push(format!(
                        "{class} {}: policy explain says {cli}, the guard {}",
                        d.as_str(),
                        guard.as_str()
                    ));
                }
                if !mismatches.contains(&class) {
                    mismatches.push(class);
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        mismatches, EXPLAIN_KNOWN_MISMATCHES,
        "known explain/guard mismatches are exactly the listed ones"
    );
}

// ------------------------------------------------------------------------------ properties

/// Default-ignorable, format and bidi characters a writer can hide in a word.
fn ignorable() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{00AD}', '\u{2060}', '\u{FEFF}', '\u{200E}',
            '\u{200F}', '\u{061C}', '\u{180E}', '\u{2061}', '\u{2062}', '\u{2063}', '\u{2064}',
            '\u{034F}'
        ]),
        (0x202Au32..=0x202E).prop_map(|c| char::from_u32(c).unwrap()),
        (0x2066u32..=0x2069).prop_map(|c| char::from_u32(c).unwrap()),
        (0xFE00u32..=0xFE0F).prop_map(|c| char::from_u32(c).unwrap()),
        (0xE0100u32..=0xE01EF).prop_map(|c| char::from_u32(c).unwrap()),
        (0xE0020u32..=0xE007F).prop_map(|c| char::from_u32(c).unwrap()),
    ]
}

/// `marker` with ignorables inserted at the given (char index, char) positions.
fn insert(marker: &str, ins: &[(usize, char)]) -> String {
    let chars: Vec<char> = marker.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        for (_, x) in ins.iter().filter(|(p, _)| p % (chars.len() + 1) == i) {
            out.push(*x);
        }
        out.push(*c);
    }
    for (_, x) in ins
        .iter()
        .filter(|(p, _)| p % (chars.len() + 1) == chars.len())
    {
        out.push(*x);
    }
    out
}

const IBAN: &str = "DE89370400440532013000";
const MARKERS: [&str; 3] = ["GEHEIM", "STRENG GEHEIM", IBAN];

fn body(text: &str) -> Value {
    json!({"type": "m.room.message", "content": {"msgtype": "m.text", "body": format!("Einstufung: {text} – bitte prüfen")}})
}

fn caught(text: &str) -> bool {
    let ev = body(text);
    DIRECTIONS.iter().all(|d| !crosses(scan(&ev, *d)))
}

/// One upper-case ASCII letter in another form: a compatibility form (fullwidth, mathematical
/// alphanumerics, circled, parenthesized-free forms), a Cyrillic or Greek look-alike where one
/// exists, or the letter itself; optionally followed by combining marks.
fn letter_form(c: char) -> BoxedStrategy<String> {
    if !c.is_ascii_uppercase() {
        return if c == ' ' {
            prop::sample::select(vec![
                ' ', '\u{00A0}', '\u{2002}', '\u{2003}', '\u{2007}', '\u{2009}', '\u{200A}',
                '\u{202F}', '\u{205F}', '\u{3000}',
            ])
            .prop_map(String::from)
            .boxed()
        } else {
            Just(c.to_string()).boxed()
        };
    }
    let i = c as u32 - 'A' as u32;
    let mut forms: Vec<char> = vec![
        c,
        char::from_u32(0xFF21 + i).unwrap(),
        char::from_u32(0x24B6 + i).unwrap(),
    ];
    // Mathematical alphanumeric capitals: bold, italic, bold italic, sans-serif (4 styles),
    // monospace; these blocks have no holes for capitals.
    for base in [
        0x1D400, 0x1D434, 0x1D468, 0x1D5A0, 0x1D5D4, 0x1D608, 0x1D63C, 0x1D670,
    ] {
        forms.push(char::from_u32(base + i).unwrap());
    }
    let look_alikes: &[char] = match c {
        'E' => &['\u{0415}', '\u{0395}'],
        'H' => &['\u{041D}', '\u{0397}'],
        'I' => &['\u{0406}', '\u{0399}', '\u{04C0}'],
        'M' => &['\u{041C}', '\u{039C}'],
        'T' => &['\u{0422}', '\u{03A4}'],
        'N' => &['\u{039D}'],
        'S' => &['\u{0405}'],
        'G' => &['\u{050C}'],
        _ => &[],
    };
    forms.extend_from_slice(look_alikes);
    (
        prop::sample::select(forms),
        prop::collection::vec(0x0300u32..=0x036F, 0..3),
    )
        .prop_map(|(f, marks)| {
            let mut s = f.to_string();
            s.extend(marks.into_iter().map(|m| char::from_u32(m).unwrap()));
            s
        })
        .boxed()
}

fn disguised(marker: &'static str) -> impl Strategy<Value = String> {
    marker
        .chars()
        .map(letter_form)
        .collect::<Vec<_>>()
        .prop_map(|parts| parts.concat())
}

/// The IBAN in groups of four with random separators, random case and fullwidth digits.
fn iban_written() -> impl Strategy<Value = String> {
    let n = IBAN.len();
    (
        prop::collection::vec(any::<bool>(), n),
        prop::collection::vec(any::<bool>(), n),
        prop::collection::vec(
            prop::sample::select(vec!["", " ", "-", ".", "\u{00A0}", "\u{202F}"]),
            n / 4 + 1,
        ),
    )
        .prop_map(|(lower, wide, seps)| {
            let mut out = String::new();
            for (i, c) in IBAN.chars().enumerate() {
                if i > 0 && i % 4 == 0 {
                    out.push_str(seps[i / 4]);
                }
                let c = if lower[i] { c.to_ascii_lowercase() } else { c };
                if c.is_ascii_digit() && wide[i] {
                    out.push(char::from_u32(0xFF10 + (c as u32 - '0' as u32)).unwrap());
                } else {
                    out.push(c);
                }
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ignorable_characters_anywhere_are_still_caught(
        which in 0usize..3,
        ins in prop::collection::vec((any::<usize>(), ignorable()), 1..8),
    ) {
        let text = insert(MARKERS[which], &ins);
        prop_assert!(caught(&text), "crossed: {:?}", text);
    }

    #[test]
    fn compatibility_forms_confusables_and_combining_marks_are_still_caught(
        text in prop_oneof![disguised("GEHEIM"), disguised("STRENG GEHEIM"), disguised("NATO SECRET")],
    ) {
        prop_assert!(caught(&text), "crossed: {:?}", text);
    }

    #[test]
    fn forms_and_ignorables_together_are_still_caught(
        text in disguised("GEHEIM"),
        ins in prop::collection::vec((any::<usize>(), ignorable()), 1..4),
    ) {
        let text = insert(&text, &ins);
        prop_assert!(caught(&text), "crossed: {:?}", text);
    }

    #[test]
    fn iban_in_any_case_with_separators_and_fullwidth_digits_is_still_caught(text in iban_written()) {
        prop_assert!(caught(&text), "crossed: {:?}", text);
    }

    #[test]
    fn iban_with_a_wrong_check_digit_crosses_however_written(text in iban_written()) {
        // Negative control: the same writings with broken check digits (89 → 88) cross.
        let broken = text.replacen('9', "8", 1).replacen('\u{FF19}', "\u{FF18}", 1);
        let ev = body(&broken);
        prop_assert!(DIRECTIONS.iter().all(|d| crosses(scan(&ev, *d))), "refused: {:?}", broken);
    }
}

#[test]
fn insert_places_every_character() {
    assert_eq!(
        insert("AB", &[(0, 'x'), (1, 'y'), (2, 'z'), (3, 'w')]),
        "xwAyBz"
    );
}
