//! TI-Messenger profile costs, each against a baseline measured in the same run:
//!
//! * `verify/list_v956`: `ti::jws::verify_list` of gematik's signed test list v956 (35 KB, 175
//!   entries; ECDSA brainpoolP256r1 signature, chain leaf → KOMP-CA50 → RCA4, payload parse)
//!   against `verify/sha256_v956`, SHA-256 of the same bytes.
//! * `lookup/listed`, `lookup/unlisted`: `FederationList::lookup` of a server name with port
//!   (what every federation request and every domain an event names costs once the list is
//!   held) against `lookup/hashmap`, a plain `HashMap<String, _>` get of the ready key.
//!
//! Run: `cargo bench --bench ti` (or `-- --quick`).
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use grenzwacht::ti::jws::verify_list;
use grenzwacht::ti::pki::TrustAnchors;
use sha2::{Digest, Sha256};

fn fixtures() -> (Vec<u8>, TrustAnchors) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ti-messenger");
    let jws = std::fs::read(dir.join("federation-list-v956.jws")).expect("list");
    let anchors = TrustAnchors::load(
        &dir.join("tsl_roots_test.json"),
        &[dir.join("GEM.KOMP-CA50-TEST-ONLY.der")],
    )
    .expect("anchors");
    (jws, anchors)
}

/// 2026-06-01: inside the signer's validity.
fn pinned() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_272_000)
}

fn bench(c: &mut Criterion) {
    let (jws, anchors) = fixtures();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(jws.len() as u64));
    g.bench_function("list_v956", |b| {
        b.iter(|| verify_list(black_box(&jws), &anchors, pinned()).expect("valid"))
    });
    g.bench_function("sha256_v956", |b| {
        b.iter(|| Sha256::digest(black_box(&jws)))
    });
    g.finish();

    let list = verify_list(&jws, &anchors, pinned()).expect("valid");
    let listed = format!(
        "{}:8448",
        list.domains().next().expect("a domain").to_uppercase()
    );
    let plain: HashMap<String, u64> = list
        .domains()
        .enumerate()
        .map(|(i, d)| (d.to_owned(), i as u64))
        .collect();
    let key = list.domains().next().expect("a domain").to_owned();
    let mut g = c.benchmark_group("lookup");
    g.bench_function("listed", |b| {
        b.iter(|| black_box(list.lookup(black_box(&listed))).map(|e| e.is_insurance))
    });
    g.bench_function("unlisted", |b| {
        b.iter(|| {
            assert!(list
                .lookup(black_box("not-listed.example.org:8448"))
                .is_none())
        })
    });
    g.bench_function("hashmap", |b| {
        b.iter(|| black_box(plain.get(black_box(&key))).copied())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
