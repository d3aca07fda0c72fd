//! Parse path of a 50-PDU `/send` transaction: catalog lookup, strict JSON validation,
//! transaction view, per-PDU views.
//!
//! Run: `cargo bench --bench parse` (or `-- --quick`).
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use grenzwacht::federation::{
    catalog, json,
    txn::{Transaction, TxnLimits},
};
use http::Method;

/// A realistic ~1 KiB `m.room.message` PDU (room v10 shape) with German text.
fn pdu(i: usize) -> String {
    let body = format!(
        "Lagebericht {i}: Die Übergabe am Güterbahnhof verzögert sich um etwa zwei Stunden. \
         Bitte prüft, ob die Straßensperrung in der Münchner Straße aufgehoben ist, und \
         meldet euch über den gewohnten Kanal. Schöne Grüße aus Köln — Jürgen & Bärbel. \
         Nächste Abstimmung: Dienstag, 14:30 Uhr, Raum 3.17 („Lagezentrum“)."
    );
    let v = serde_json::json!({
        "auth_events": [
            "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg",
            "$hBhnS8xXQyjP8R5wqXcKMBy0mUBdQm5iqTe1Y8bK6vU",
            "$x7RDZ6c2mOn0q2WmbQ6X2wDqYfUVJp7c1HqWnE8c0Bs"
        ],
        "content": {
            "body": body,
            "msgtype": "m.text"
        },
        "depth": 1000 + i,
        "hashes": {"sha256": "8fKqBBsg2ZpUAWd6FPYtyPvw2bSeW3LMb3jVpE1f2Yw"},
        "origin_server_ts": 1_712_345_678_901u64 + i as u64,
        "prev_events": ["$3Vj7s0yU_tyxFn6Y7kE7oTQy3y0wK3x2Ww8K0dN3Dbw"],
        "room_id": "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM",
        "sender": "@juergen.mueller:bund.example.de",
        "signatures": {"bund.example.de": {"ed25519:a_AbCd": "uD8Rk2xG1yQbZ9s8FhQmJ3n6Wz0k4L7c2vP5tX1aR9eN3mB6yH0jT4fK8wS2dV5gC7qZ1xE9pU3rO6iA0lYbDg"}},
        "type": "m.room.message",
        "unsigned": {"age_ts": 1_712_345_678_901u64 + i as u64}
    });
    serde_json::to_string(&v).unwrap()
}

fn transaction(n: usize) -> Vec<u8> {
    let pdus: Vec<String> = (0..n).map(pdu).collect();
    format!(
        r#"{{"origin":"bund.example.de","origin_server_ts":1712345678901,"pdus":[{}],"edus":[{{"edu_type":"m.typing","content":{{"room_id":"!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM","user_id":"@juergen.mueller:bund.example.de","typing":true}}}}]}}"#,
        pdus.join(",")
    )
    .into_bytes()
}

fn parse_path(path: &str, body: &[u8], limits: json::JsonLimits) -> usize {
    let m = catalog::lookup(&Method::PUT, path).expect("catalog");
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
    n
}

fn bench(c: &mut Criterion) {
    let body = transaction(50);
    let path = "/_matrix/federation/v1/send/1712345678901";
    let limits = json::JsonLimits::default();
    let pdu_len = pdu(0).len();
    eprintln!("transaction: {} bytes, PDU ≈ {pdu_len} bytes", body.len());

    let mut g = c.benchmark_group("send_50_pdus");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("full_parse_path", |b| {
        b.iter(|| parse_path(black_box(path), black_box(&body), limits))
    });
    g.bench_function("catalog_lookup", |b| {
        b.iter(|| catalog::lookup(&Method::PUT, black_box(path)).map(|m| m.endpoint.id))
    });
    g.bench_function("json_validate", |b| {
        b.iter(|| json::validate_object(black_box(&body), limits))
    });
    g.bench_function("transaction_view", |b| {
        b.iter(|| Transaction::parse(black_box(&body), &TxnLimits::SPEC).map(|t| t.pdus.len()))
    });
    let txn = Transaction::parse(&body, &TxnLimits::SPEC).unwrap();
    g.bench_function("pdu_views", |b| {
        b.iter(|| txn.pdu_views().filter(|v| v.is_ok()).count())
    });
    g.bench_function("serde_json_value_baseline", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).is_ok())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
