//! Cost of redacting one PDU of a 50-PDU `/send` transaction and re-signing the request,
//! against the pass-through parse path, in the same run.
//!
//! * `pass_through`: catalog lookup, strict JSON validation, transaction view, PDU and EDU
//!   views (what every transaction costs; the bytes are then forwarded unchanged).
//! * `redact_one_and_resign`: the same parse path, then what `proxy::rewrite::RequestRewriter`
//!   does with it, function for function: `Transaction::parse` of the body again, the room
//!   version, `redact::redact_pdu` of PDU 17 (room v12 rules), `redact::rebuild_elements`, and
//!   `rewrite::resign` (X-Matrix signature of the rebuilt body as the origin via
//!   `xmatrix::sign_request_body`, header, body).
//! * `redact_one_and_resign_views`: the same, but the rewriter takes the PDUs and EDUs from the
//!   views the parse path built (`rewrite::ParsedRequestRewriter`) instead of parsing the
//!   transaction again.
//! * `verify_50_pdus`: `keys::RemoteKeys::verify_pdu` (signatures and content hash) over the 50
//!   PDUs, keys cached beforehand: what the guard's PDU verification (inbound) costs.
//! * `step/*`: the added steps alone.
//!
//! The body is canonical JSON as Synapse sends it; the PDUs are realistic room-v12
//! `m.room.message` events (~1 KiB, German text), hashed and signed by ruma with a generated
//! key. Inbound X-Matrix verification (common to both paths) is not included.
//!
//! Run: `cargo bench --bench redact` (or `-- --quick`). After criterion's output, a direct
//! interleaved measurement prints the per-transaction times and their ratios.
//!
//! For instruction counts: `REDACT_BENCH_ONLY=<pass|redact|views|verify> REDACT_BENCH_N=<n>
//! valgrind --tool=callgrind <bench binary>` runs only that case `n` times (after the setup).
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{black_box, criterion_group, Criterion, Throughput};
use grenzwacht::federation::{
    canonical, catalog, json,
    pdu::{EduView, PduView},
    redact::{parse_room_version, rebuild_elements, redact_pdu},
    txn::{Transaction, TxnLimits},
    xmatrix::{sign_request, sign_request_body, verify_request, XMatrix},
};
use grenzwacht::keys::{PduCheck, RemoteKeys, SigningKey};
use grenzwacht::policy::Forward;
use grenzwacht::proxy::rewrite::resign;
use http::{HeaderMap, Method};
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

/// The pass-through parse path (as `exchange::inspect_request`); returns the PDU and EDU views.
fn parse_path(
    body: &[u8],
    limits: json::JsonLimits,
) -> (Vec<PduView<'_>>, Vec<EduView<'_>>, usize) {
    let m = catalog::lookup(&Method::PUT, PATH).expect("catalog");
    assert_eq!(m.endpoint.id, "send_transaction");
    json::validate_object(body, limits).expect("valid");
    let txn = Transaction::parse(body, &TxnLimits::SPEC).expect("transaction");
    let pdus: Vec<PduView> = txn.pdu_views().collect::<Result<_, _>>().expect("pdu");
    let edus: Vec<EduView> = txn.edu_views().collect::<Result<_, _>>().expect("edu");
    let n = pdus
        .iter()
        .map(|v| v.event_type.len() + v.content.get().len())
        .sum::<usize>()
        + edus.iter().map(|e| e.edu_type.len()).sum::<usize>();
    (pdus, edus, n)
}

fn pass_through(body: &Bytes, limits: json::JsonLimits) -> usize {
    parse_path(body, limits).2
}

fn forward(body: &Bytes) -> Forward {
    Forward {
        method: Method::PUT,
        path_and_query: PATH.to_owned(),
        headers: HeaderMap::new(),
        body: body.clone(),
    }
}

/// The rewriter's steps after the policy asked to redact PDU 17 (`RequestRewriter::rewrite`
/// minus the store lookup of the room version, a cached map lookup).
fn rewrite(fwd: &mut Forward, pdus: &[&RawValue], edus: &[&RawValue], key: &SigningKey) {
    let version = parse_room_version("12").expect("known version");
    let redacted = redact_pdu(pdus[REDACTED_INDEX], &version).expect("redact");
    let rebuilt = rebuild_elements(
        &fwd.body,
        pdus,
        edus,
        &[(REDACTED_INDEX, redacted)],
        &[],
        &[],
    )
    .expect("rebuild");
    resign(fwd, key, ORIGIN, DESTINATION, rebuilt).expect("re-sign");
}

/// Parse path, then the rewriter as the guard runs it today: it parses the transaction again.
fn redact_one_and_resign(body: &Bytes, limits: json::JsonLimits, key: &SigningKey) -> Forward {
    let (_, _, n) = parse_path(body, limits);
    black_box(n);
    let mut fwd = forward(body);
    let body = fwd.body.clone();
    let txn = Transaction::parse(&body, &TxnLimits::SPEC).expect("re-parse");
    rewrite(&mut fwd, &txn.pdus, &txn.edus, key);
    fwd
}

/// Parse path, then the rewriter with the views of the parse path (`ParsedRequestRewriter`).
fn redact_one_and_resign_views(
    body: &Bytes,
    limits: json::JsonLimits,
    key: &SigningKey,
) -> Forward {
    let (pdu_views, edu_views, n) = parse_path(body, limits);
    black_box(n);
    let mut fwd = forward(body);
    let pdus: Vec<&RawValue> = pdu_views.iter().map(|p| p.raw).collect();
    let edus: Vec<&RawValue> = edu_views.iter().map(|e| e.raw).collect();
    rewrite(&mut fwd, &pdus, &edus, key);
    fwd
}

/// A key cache holding `key` for `ORIGIN`, valid when the PDUs were sent.
fn remote_keys(key: &SigningKey) -> RemoteKeys {
    let ts = 1_712_345_678_901u64;
    let v = serde_json::json!({
        "server_name": ORIGIN,
        "valid_until_ts": ts + 3_600_000,
        "verify_keys": { key.key_id(): { "key": key.public_key_base64() } },
        "old_verify_keys": {},
    });
    let mut obj: CanonicalJsonObject = serde_json::from_value(v).unwrap();
    key.sign_json(ORIGIN, &mut obj).unwrap();
    let cache = RemoteKeys::new();
    cache
        .insert_verified(
            &serde_json::to_vec(&obj).unwrap(),
            UNIX_EPOCH + Duration::from_millis(ts - 1000),
        )
        .expect("key object");
    cache
}

/// The guard's PDU verification over all PDUs of the transaction; counts verified ones.
fn verify_pdus(cache: &RemoteKeys, pdus: &[&RawValue]) -> usize {
    pdus.iter()
        .filter(|p| {
            cache
                .verify_pdu(p, &ruma::RoomVersionId::V12)
                .expect("verifies")
                == PduCheck::Verified
        })
        .count()
}

/// Runs one case `REDACT_BENCH_N` times (for callgrind) if `REDACT_BENCH_ONLY` is set.
fn only() -> bool {
    let Ok(case) = std::env::var("REDACT_BENCH_ONLY") else {
        return false;
    };
    let n: usize = std::env::var("REDACT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let key = SigningKey::generate("a_AbCd").unwrap();
    let body = Bytes::from(transaction(50, &key));
    let limits = json::JsonLimits::default();
    let cache = remote_keys(&key);
    let txn = Transaction::parse(&body, &TxnLimits::SPEC).unwrap();
    for _ in 0..n {
        match case.as_str() {
            "pass" => drop(black_box(pass_through(black_box(&body), limits))),
            "redact" => drop(black_box(redact_one_and_resign(
                black_box(&body),
                limits,
                &key,
            ))),
            "views" => drop(black_box(redact_one_and_resign_views(
                black_box(&body),
                limits,
                &key,
            ))),
            "verify" => drop(black_box(verify_pdus(&cache, black_box(&txn.pdus)))),
            other => panic!("unknown case {other}"),
        }
    }
    true
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate("a_AbCd").unwrap();
    let body = Bytes::from(transaction(50, &key));
    let limits = json::JsonLimits::default();
    eprintln!(
        "transaction: {} bytes, PDU ≈ {} bytes",
        body.len(),
        pdu(0, &key).len()
    );
    // Both modifying paths really remove the marked content, produce the same bytes and
    // header, and the header is a valid X-Matrix signature of the rebuilt request (equal to
    // sign_request over the parsed body: ed25519 is deterministic).
    let a = redact_one_and_resign(&body, limits, &key);
    let b = redact_one_and_resign_views(&body, limits, &key);
    assert_eq!(
        (&a.body, a.headers.get("authorization")),
        (&b.body, b.headers.get("authorization"))
    );
    assert!(String::from_utf8_lossy(&body).contains("GEHEIM"));
    assert!(!String::from_utf8_lossy(&a.body).contains("GEHEIM"));
    let check = a.body.clone();
    let content: &RawValue = serde_json::from_slice(&check).unwrap();
    assert!(canonical::is_canonical(content));
    let header_value = a.headers.get("authorization").unwrap().to_str().unwrap();
    let header = XMatrix::parse(header_value).unwrap();
    verify_request(&header, "PUT", PATH, Some(content), &key.public_key()).expect("verifies");
    assert_eq!(
        header_value,
        sign_request(&key, ORIGIN, DESTINATION, "PUT", PATH, Some(content)).unwrap()
    );
    let cache = remote_keys(&key);
    let txn = Transaction::parse(&body, &TxnLimits::SPEC).unwrap();
    assert_eq!(verify_pdus(&cache, &txn.pdus), 50);

    let mut g = c.benchmark_group("send_50_pdus_redact");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("pass_through", |b| {
        b.iter(|| pass_through(black_box(&body), limits))
    });
    g.bench_function("redact_one_and_resign", |b| {
        b.iter(|| redact_one_and_resign(black_box(&body), limits, &key))
    });
    g.bench_function("redact_one_and_resign_views", |b| {
        b.iter(|| redact_one_and_resign_views(black_box(&body), limits, &key))
    });
    g.bench_function("verify_50_pdus", |b| {
        b.iter(|| verify_pdus(&cache, black_box(&txn.pdus)))
    });
    let pdu17 = txn.pdus[REDACTED_INDEX];
    let redacted = redact_pdu(pdu17, &ruma::RoomVersionId::V12).unwrap();
    g.bench_function("step/transaction_parse", |b| {
        b.iter(|| Transaction::parse(black_box(&body), &TxnLimits::SPEC).map(|t| t.pdus.len()))
    });
    g.bench_function("step/redact_pdu", |b| {
        b.iter(|| redact_pdu(black_box(pdu17), &ruma::RoomVersionId::V12).map(|r| r.get().len()))
    });
    g.bench_function("step/rebuild_elements", |b| {
        b.iter(|| {
            rebuild_elements(
                black_box(&body),
                &txn.pdus,
                &txn.edus,
                &[(REDACTED_INDEX, redacted.clone())],
                &[],
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
    g.bench_function("step/sign_request_body", |b| {
        b.iter(|| sign_request_body(&key, ORIGIN, DESTINATION, "PUT", PATH, black_box(&check)))
    });
    g.finish();
}

/// Direct measurement of the paths, interleaved, for the ratios (median of rounds).
fn report_ratio() {
    let key = SigningKey::generate("a_AbCd").unwrap();
    let body = Bytes::from(transaction(50, &key));
    let limits = json::JsonLimits::default();
    let cache = remote_keys(&key);
    let txn = Transaction::parse(&body, &TxnLimits::SPEC).unwrap();
    let per_round = 200u32;
    let rounds = 25;
    let time = |f: &dyn Fn() -> usize| {
        let start = Instant::now();
        for _ in 0..per_round {
            black_box(f());
        }
        start.elapsed() / per_round
    };
    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        a.push(time(&|| pass_through(black_box(&body), limits)));
        b.push(time(&|| {
            redact_one_and_resign(black_box(&body), limits, &key)
                .body
                .len()
        }));
        c.push(time(&|| {
            redact_one_and_resign_views(black_box(&body), limits, &key)
                .body
                .len()
        }));
        if round % 5 == 0 {
            d.push(time(&|| verify_pdus(&cache, black_box(&txn.pdus))));
        }
    }
    // Median and minimum of the rounds: on a shared machine the minimum is the closer estimate
    // of the uncontended cost; the ratios are taken per statistic.
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2].as_secs_f64() * 1e6, v[0].as_secs_f64() * 1e6)
    };
    let (a, b, c, d) = (stats(&mut a), stats(&mut b), stats(&mut c), stats(&mut d));
    println!(
        "\nper 50-PDU transaction ({} bytes), {rounds} rounds × {per_round}, median / minimum:\n  \
         pass-through:                                 {:>7.1} / {:>7.1} µs\n  \
         redact one + re-sign (rewriter parses again): {:>7.1} / {:>7.1} µs   ratio {:>4.2} / {:>4.2} ×\n  \
         redact one + re-sign (views of the parse):    {:>7.1} / {:>7.1} µs   ratio {:>4.2} / {:>4.2} ×\n  \
         verify 50 PDU signatures + hashes:            {:>7.1} / {:>7.1} µs   ({:.1} / {:.1} µs per PDU)",
        body.len(),
        a.0, a.1,
        b.0, b.1, b.0 / a.0, b.1 / a.1,
        c.0, c.1, c.0 / a.0, c.1 / a.1,
        d.0, d.1, d.0 / 50.0, d.1 / 50.0
    );
}

criterion_group!(benches, bench);

fn main() {
    if only() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only under `cargo bench` (criterion's test mode under `cargo test` runs each once).
    if std::env::args().any(|a| a == "--bench") {
        report_ratio();
    }
}
