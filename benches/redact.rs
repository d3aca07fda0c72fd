//! Cost of redacting one PDU of a 50-PDU `/send` transaction and re-signing the request,
//! against the pass-through parse path, in the same run.
//!
//! * `pass_through`: catalog lookup, strict JSON validation, transaction view, PDU and EDU
//!   views (what every transaction costs; the bytes are then forwarded unchanged).
//! * `redact_one_and_resign`: the same parse path, then the room version lookup, redaction of
//!   PDU 17 (room v12 rules), `rebuild_transaction` and a new X-Matrix signature over the
//!   rebuilt body as the origin with today's `xmatrix::sign_request`.
//! * `redact_one_and_resign_fast`: the same, but splicing with the parsed view
//!   (`rebuild_parsed`) and computing the X-Matrix signing bytes around
//!   `canonical::canonical_form` of the body — borrowed as is, because Synapse sends canonical
//!   JSON and the spliced-in redacted PDU is canonical. This is what `sign_request` would cost
//!   if `xmatrix::signing_bytes` used `canonical_form`; the setup checks that its header
//!   verifies with `xmatrix::verify_request`.
//! * `step/*`: the added steps alone.
//!
//! The body is canonical JSON as Synapse sends it; the PDUs are realistic room-v12
//! `m.room.message` events (~1 KiB, German text), hashed and signed by ruma with a generated
//! key. Inbound X-Matrix verification (common to both paths) is not included.
//!
//! Run: `cargo bench --bench redact` (or `-- --quick`). After criterion's output, a direct
//! interleaved measurement prints the per-transaction times and their ratios.
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, Criterion, Throughput};
use grenzwacht::federation::{
    canonical, catalog, json,
    redact::{parse_room_version, rebuild_parsed, rebuild_transaction, redact_pdu},
    txn::{Transaction, TxnLimits},
    xmatrix::{sign_request, verify_request, XMatrix},
};
use grenzwacht::keys::SigningKey;
use http::Method;
use ruma::CanonicalJsonObject;
use serde_json::value::RawValue;

const ORIGIN: &str = "bund.example.de";
const DESTINATION: &str = "land.example.de";
const PATH: &str = "/_matrix/federation/v1/send/1712345678901";
const REDACTED_INDEX: usize = 17;

/// A realistic ~1 KiB room-v12 `m.room.message` PDU with German text, hashed and signed.
fn pdu(i: usize, key: &SigningKey) -> String {
    let body = format!(
        "Lagebericht {i}: Die Übergabe am Güterbahnhof verzögert sich um etwa zwei Stunden. \
         Bitte prüft, ob die Straßensperrung in der Münchner Straße aufgehoben ist, und \
         meldet euch über den gewohnten Kanal. Schöne Grüße aus Köln — Jürgen & Bärbel. \
         Nächste Abstimmung: Dienstag, 14:30 Uhr, Raum 3.17 („Lagezentrum“).{}",
        if i == REDACTED_INDEX { " GEHEIM" } else { "" }
    );
    let v = serde_json::json!({
        "auth_events": [
            "$hBhnS8xXQyjP8R5wqXcKMBy0mUBdQm5iqTe1Y8bK6vU",
            "$x7RDZ6c2mOn0q2WmbQ6X2wDqYfUVJp7c1HqWnE8c0Bs"
        ],
        "content": {
            "body": body,
            "msgtype": "m.text",
            "m.mentions": {}
        },
        "depth": 1000 + i,
        "origin_server_ts": 1_712_345_678_901u64 + i as u64,
        "prev_events": ["$3Vj7s0yU_tyxFn6Y7kE7oTQy3y0wK3x2Ww8K0dN3Dbw"],
        "room_id": "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM",
        "sender": "@juergen.mueller:bund.example.de",
        "type": "m.room.message",
    });
    let mut obj: CanonicalJsonObject = serde_json::from_value(v).unwrap();
    let rules = ruma::RoomVersionId::V12.rules().unwrap();
    ruma::signatures::hash_and_sign_event(ORIGIN, key.key_pair(), &mut obj, &rules.redaction)
        .unwrap();
    obj.insert(
        "unsigned".into(),
        serde_json::from_value(serde_json::json!({"age_ts": 1_712_345_678_901u64 + i as u64}))
            .unwrap(),
    );
    serde_json::to_string(&obj).unwrap()
}

/// The body as Synapse sends it: canonical JSON (`encode_canonical_json`).
fn transaction(n: usize, key: &SigningKey) -> Vec<u8> {
    let pdus: Vec<String> = (0..n).map(|i| pdu(i, key)).collect();
    let body = format!(
        r#"{{"edus":[{{"content":{{"room_id":"!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM","typing":true,"user_id":"@juergen.mueller:bund.example.de"}},"edu_type":"m.typing"}}],"origin":"{ORIGIN}","origin_server_ts":1712345678901,"pdus":[{}]}}"#,
        pdus.join(",")
    );
    assert!(canonical::is_canonical_str(&body));
    body.into_bytes()
}

/// The pass-through parse path; returns the transaction view for the modifying path.
fn parse_path<'a>(body: &'a [u8], limits: json::JsonLimits) -> (Transaction<'a>, usize) {
    let m = catalog::lookup(&Method::PUT, PATH).expect("catalog");
    assert_eq!(m.endpoint.id, "send_transaction");
    json::validate_object(body, limits).expect("valid");
    let txn = Transaction::parse(body, &TxnLimits::SPEC).expect("transaction");
    let mut n = 0;
    for v in txn.pdu_views() {
        let v = v.expect("pdu");
        n += v.event_type.len() + v.content.get().len();
    }
    for e in txn.edu_views() {
        n += e.expect("edu").edu_type.len();
    }
    (txn, n)
}

fn pass_through(body: &[u8], limits: json::JsonLimits) -> usize {
    parse_path(body, limits).1
}

/// Parse path, then redact one PDU, splice it in, re-sign the request (today's API).
fn redact_one_and_resign(body: &[u8], limits: json::JsonLimits, key: &SigningKey) -> usize {
    let (txn, n) = parse_path(body, limits);
    let version = parse_room_version("12").expect("known version");
    let redacted = redact_pdu(txn.pdus[REDACTED_INDEX], &version).expect("redact");
    let rebuilt = rebuild_transaction(body, &[(REDACTED_INDEX, redacted)], &[]).expect("rebuild");
    let content: &RawValue = serde_json::from_slice(&rebuilt).expect("json");
    let header = sign_request(key, ORIGIN, DESTINATION, "PUT", PATH, Some(content)).expect("sign");
    n + header.len() + rebuilt.len()
}

/// The fixed parts of the signature object, prepared once per origin/destination.
struct Signer<'k> {
    key: &'k SigningKey,
    template: XMatrix,
    /// `,"destination":…,"method":"PUT","origin":…,"uri":…}` (keys in canonical order after
    /// `content`).
    tail: String,
}

impl<'k> Signer<'k> {
    fn new(key: &'k SigningKey) -> Self {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        Self {
            key,
            template: XMatrix {
                origin: ORIGIN.try_into().unwrap(),
                destination: Some(DESTINATION.try_into().unwrap()),
                key: key.key_id().as_str().try_into().unwrap(),
                sig: Vec::new(),
            },
            tail: format!(
                r#","destination":{},"method":"PUT","origin":{},"uri":{}}}"#,
                q(DESTINATION),
                q(ORIGIN),
                q(PATH)
            ),
        }
    }

    /// X-Matrix over `{"content":<canonical body>,…}` with the body's canonical form borrowed
    /// when it already is canonical.
    fn sign(&self, content: &RawValue) -> String {
        let content = canonical::canonical_form(content).expect("canonical");
        let mut bytes = String::with_capacity(content.len() + self.tail.len() + 12);
        bytes.push_str(r#"{"content":"#);
        bytes.push_str(&content);
        bytes.push_str(&self.tail);
        let mut header = self.template.clone();
        header.sig = self.key.sign(bytes.as_bytes()).to_vec();
        header.to_header_value()
    }
}

/// Parse path, redact one PDU, splice with the parsed view, sign with the canonical fast path.
fn redact_one_and_resign_fast(body: &[u8], limits: json::JsonLimits, signer: &Signer) -> usize {
    let (txn, n) = parse_path(body, limits);
    let version = parse_room_version("12").expect("known version");
    let redacted = redact_pdu(txn.pdus[REDACTED_INDEX], &version).expect("redact");
    let rebuilt = rebuild_parsed(body, &txn, &[(REDACTED_INDEX, redacted)], &[]).expect("rebuild");
    let content: &RawValue = serde_json::from_slice(&rebuilt).expect("json");
    let header = signer.sign(content);
    n + header.len() + rebuilt.len()
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate("a_AbCd").unwrap();
    let body = transaction(50, &key);
    let limits = json::JsonLimits::default();
    eprintln!(
        "transaction: {} bytes, PDU ≈ {} bytes",
        body.len(),
        pdu(0, &key).len()
    );
    // The modifying path really removes the marked content.
    let check = {
        let (txn, _) = parse_path(&body, limits);
        let red = redact_pdu(txn.pdus[REDACTED_INDEX], &ruma::RoomVersionId::V12).unwrap();
        rebuild_transaction(&body, &[(REDACTED_INDEX, red)], &[]).unwrap()
    };
    assert!(String::from_utf8_lossy(&body).contains("GEHEIM"));
    assert!(!String::from_utf8_lossy(&check).contains("GEHEIM"));
    // The fast signature is a valid X-Matrix signature of the rebuilt request, and equals
    // today's sign_request (ed25519 is deterministic).
    let signer = Signer::new(&key);
    let content: &RawValue = serde_json::from_slice(&check).unwrap();
    let fast = signer.sign(content);
    let header = XMatrix::parse(&fast).unwrap();
    verify_request(&header, "PUT", PATH, Some(content), &key.public_key()).expect("verifies");
    assert_eq!(
        fast,
        sign_request(&key, ORIGIN, DESTINATION, "PUT", PATH, Some(content)).unwrap()
    );
    assert!(canonical::is_canonical(content));

    let mut g = c.benchmark_group("send_50_pdus_redact");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("pass_through", |b| {
        b.iter(|| pass_through(black_box(&body), limits))
    });
    g.bench_function("redact_one_and_resign", |b| {
        b.iter(|| redact_one_and_resign(black_box(&body), limits, &key))
    });
    g.bench_function("redact_one_and_resign_fast", |b| {
        b.iter(|| redact_one_and_resign_fast(black_box(&body), limits, &signer))
    });
    let txn = Transaction::parse(&body, &TxnLimits::SPEC).unwrap();
    let pdu17 = txn.pdus[REDACTED_INDEX];
    let redacted = redact_pdu(pdu17, &ruma::RoomVersionId::V12).unwrap();
    g.bench_function("step/redact_pdu", |b| {
        b.iter(|| redact_pdu(black_box(pdu17), &ruma::RoomVersionId::V12).map(|r| r.get().len()))
    });
    g.bench_function("step/rebuild_transaction", |b| {
        b.iter(|| {
            rebuild_transaction(black_box(&body), &[(REDACTED_INDEX, redacted.clone())], &[])
                .map(|v| v.len())
        })
    });
    g.bench_function("step/rebuild_parsed", |b| {
        b.iter(|| {
            rebuild_parsed(
                black_box(&body),
                &txn,
                &[(REDACTED_INDEX, redacted.clone())],
                &[],
            )
            .map(|v| v.len())
        })
    });
    g.bench_function("step/is_canonical", |b| {
        b.iter(|| canonical::is_canonical(black_box(content)))
    });
    g.bench_function("step/ed25519_sign_body", |b| {
        b.iter(|| key.sign(black_box(&check)))
    });
    g.bench_function("step/sign_fast", |b| {
        b.iter(|| signer.sign(black_box(content)))
    });
    g.bench_function("step/sign_request", |b| {
        b.iter(|| {
            sign_request(
                &key,
                ORIGIN,
                DESTINATION,
                "PUT",
                PATH,
                Some(black_box(content)),
            )
        })
    });
    g.finish();
}

/// Direct measurement of the paths, interleaved, for the ratios (median of rounds).
fn report_ratio() {
    let key = SigningKey::generate("a_AbCd").unwrap();
    let signer = Signer::new(&key);
    let body = transaction(50, &key);
    let limits = json::JsonLimits::default();
    let per_round = 200u32;
    let rounds = 25;
    let time = |f: &dyn Fn() -> usize| {
        let start = Instant::now();
        for _ in 0..per_round {
            black_box(f());
        }
        start.elapsed() / per_round
    };
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(time(&|| pass_through(black_box(&body), limits)));
        b.push(time(&|| {
            redact_one_and_resign(black_box(&body), limits, &key)
        }));
        c.push(time(&|| {
            redact_one_and_resign_fast(black_box(&body), limits, &signer)
        }));
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    let (a, b, c) = (median(&mut a), median(&mut b), median(&mut c));
    println!(
        "\nper 50-PDU transaction ({} bytes), median of {rounds} rounds × {per_round}:\n  \
         pass-through:                          {a:>8.1} µs\n  \
         redact one + re-sign (sign_request):   {b:>8.1} µs   ratio {:>5.2} ×\n  \
         redact one + re-sign (canonical fast): {c:>8.1} µs   ratio {:>5.2} ×",
        body.len(),
        b / a,
        c / a
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only under `cargo bench` (criterion's test mode under `cargo test` runs each once).
    if std::env::args().any(|a| a == "--bench") {
        report_ratio();
    }
}
