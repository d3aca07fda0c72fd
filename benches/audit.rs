//! Audit log appends: records/s through the writer thread, pinned to one core (the process's
//! CPU affinity is set to CPU 0 before any thread starts, so the appending tasks, the writer
//! thread and the fsyncs share it). Files go to a temp dir on the real disk (ext4 here, so
//! fsync is real).
//!
//! * `audit/baseline_encode_hash`: the same decision records built, serialised canonically and
//!   hashed into the chain, without writing: the floor of the cost.
//! * `audit/group_commit_1000_appends`: 1000 concurrent `append` calls (one record each),
//!   group commit; an iteration ends when all are durable (a closed loop: the last fsync of
//!   each iteration overlaps with nothing).
//! * `audit/group_commit_stream_2048_clients`: 2048 clients each appending 10 records in
//!   turn: a steady stream, the next batch queues while one is fsynced.
//! * `audit/group_commit_append_all_10x100`: ten concurrent `append_all` batches of 100.
//! * `audit/fsync_1000_appends`: the same 1000 concurrent appends with `durability = "fsync"`
//!   (one fsync per append).
//! * `audit/latency_group_single_append`: one append awaited alone (an idle guard's added
//!   latency on the `/send` path: one write and one fsync).
//!
//! Run: `cargo bench --bench audit` (or `-- --quick`).
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use grenzwacht::audit::format::{encode_canonical, rfc3339_ms, write_object, GENESIS_PREV};
use grenzwacht::audit::{
    AuditConfig, Auditor, DecisionRecord, Direction, Durability, Record, RuleMatch, Unit, Verdict,
};

fn pin_to_one_core() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn decision(i: usize) -> Record {
    Record::from(DecisionRecord {
        unit: Unit::Pdu,
        txn_id: Some(format!("1733490000000{i}")),
        event_id: Some(format!("$Rk3vX9aJm2Q7yYfLw0ZcN8tHuS4pD6eBgKoV1iIxTq{i}")),
        room_id: Some("!VmJqPzKxLrTnBwYc:hs1.example".into()),
        sender: Some("@alice:hs1.example".into()),
        origin: "hs1.example".into(),
        destination: "hs2.example".into(),
        direction: Direction::Outbound,
        endpoint: "/_matrix/federation/v1/send/{txnId}".into(),
        verdict: if i.is_multiple_of(4) {
            Verdict::Redact
        } else {
            Verdict::Allow
        },
        effect: None,
        rules: if i.is_multiple_of(4) {
            vec![RuleMatch {
                rule: "vs-nfd-marking".into(),
                field: "content.body".into(),
                excerpt: "…Einstufung: VS-******** bis…".into(),
            }]
        } else {
            vec![]
        },
        label: Some("VS-NUR FÜR DEN DIENSTGEBRAUCH".into()),
        clearance: Some("VS-NfD".into()),
        policy_hash: Some("3f1c9a0d5e7b2468".into()),
        content_sha256: Some(grenzwacht::audit::content_sha256(format!("{i}").as_bytes())),
        content: None,
    })
}

fn open(dir: &std::path::Path, durability: Durability) -> Auditor {
    let key = grenzwacht::keys::SigningKey::generate("bench").unwrap();
    let key_file = dir.join("audit.key");
    std::fs::write(&key_file, key.to_synapse_string()).unwrap();
    Auditor::open(&AuditConfig {
        dir: dir.join("log"),
        key_file,
        durability,
        ..AuditConfig::default()
    })
    .unwrap()
}

fn bench(c: &mut Criterion) {
    pin_to_one_core();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("audit");
    g.sample_size(10).measurement_time(Duration::from_secs(5));

    g.throughput(Throughput::Elements(1000));
    g.bench_function("baseline_encode_hash", |b| {
        let mut prev = GENESIS_PREV.to_owned();
        let mut seq = 0u64;
        b.iter(|| {
            let mut bytes = 0;
            for i in 0..1000 {
                let rec = decision(i);
                let mut data = String::new();
                write_object(rec.data(), None, &mut data);
                let ts = rfc3339_ms(grenzwacht::audit::format::now_ms());
                let e = encode_canonical(seq, &ts, "decision", &prev, &data);
                bytes += e.line.len();
                prev = e.hash;
                seq += 1;
            }
            bytes
        })
    });

    for (name, durability, n) in [
        ("group_commit_1000_appends", Durability::Group, 1000),
        ("fsync_1000_appends", Durability::Fsync, 1000),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let a = open(tmp.path(), durability);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(async {
                        let futs = (0..n).map(|i| a.append(decision(i)));
                        for r in futures_util::future::join_all(futs).await {
                            r.unwrap();
                        }
                    });
                }
                start.elapsed()
            })
        });
        rt.block_on(a.close()).unwrap();
    }

    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), Durability::Group);
    // A steady stream: 2048 clients, each appending 10 records one after the other, so the
    // next batch queues while the current one is written and fsynced.
    g.throughput(Throughput::Elements(2048 * 10));
    g.bench_function("group_commit_stream_2048_clients", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(async {
                    let clients = (0..2048).map(|c| {
                        let a = &a;
                        async move {
                            for i in 0..10 {
                                a.append(decision(c * 10 + i)).await.unwrap();
                            }
                        }
                    });
                    futures_util::future::join_all(clients).await;
                });
            }
            start.elapsed()
        })
    });

    g.throughput(Throughput::Elements(1000));
    g.bench_function("group_commit_append_all_10x100", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(async {
                    let futs = (0..10)
                        .map(|k| a.append_all((0..100).map(|i| decision(k * 100 + i)).collect()));
                    for r in futures_util::future::join_all(futs).await {
                        r.unwrap();
                    }
                });
            }
            start.elapsed()
        })
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("latency_group_single_append", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                rt.block_on(a.append(decision(i as usize))).unwrap();
            }
            start.elapsed()
        })
    });
    rt.block_on(a.close()).unwrap();
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
