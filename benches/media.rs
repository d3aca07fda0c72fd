//! Media inspection throughput: `Inspector::inspect_blocking` on a fixed mixed corpus, with
//! the shipped DLP rules (`policies/*.toml`) and the shipped YARA rules (`policies/yara`),
//! against SHA-256 over the same bytes in the same run.
//!
//! * Corpus (built from `media::samples`, deterministic): plain text (1 KB, 1 MB), a zip of
//!   texts (~2 MB), a tar.gz of texts (~3 MB), a tar.gz holding a zip of texts and documents
//!   (nested), and from `samples::docs` PNG (64×64 and 1024×1024), JPEG, PDF, docx, xlsx (each
//!   document ~140 KB of text) and a zip of documents.
//! * `inspect/<name>`: one file per iteration, `Throughput::Bytes` of the file.
//! * `sha256/<name>`: the baseline, SHA-256 of the same bytes.
//! * `small/text_1KB`, `small/png_small`: per-file time for small files.
//!
//! Goals: ≥ 300 MB/s per core on the large files, ≤ 1 ms per small file. After criterion's
//! output a direct measurement prints MB/s and µs per file for every sample, next to SHA-256.
//!
//! Run: `cargo bench --bench media` (or `-- --quick`).
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, Criterion, Throughput};
use grenzwacht::media::inspect::{InspectCtx, Inspector};
use grenzwacht::media::{samples, Direction, MediaConfig};
use grenzwacht::policy::dlp::RuleSet;
use sha2::{Digest, Sha256};

/// Documents and images from `samples::docs`.
fn docs() -> Vec<(&'static str, Vec<u8>)> {
    use samples::docs;
    let para = "Lagebericht Referat 3: Abstimmung der Termine, keine Auffälligkeiten. ";
    let long = para.repeat(2000);
    let cells: Vec<String> = (0..2000).map(|i| format!("Posten {i}: {para}")).collect();
    let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
    vec![
        ("png_small", docs::png(64, 64, None)),
        ("png_large", docs::png(1024, 1024, Some("Urlaubsfoto"))),
        ("jpeg", docs::jpeg()),
        ("pdf", docs::pdf(&long)),
        ("docx", docs::docx(&long)),
        ("xlsx", docs::xlsx(&cells)),
    ]
}

fn text_kb(kb: usize) -> Vec<u8> {
    samples::text(kb * 1024)
}

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = vec![("text_1KB", text_kb(1)), ("text_1MB", text_kb(1024))];
    let names: Vec<String> = (0..40).map(|i| format!("akte/teil_{i:02}.txt")).collect();
    let texts: Vec<Vec<u8>> = (0..40).map(|i| text_kb(40 + i)).collect();
    let entries: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&texts)
        .map(|(n, t)| (n.as_str(), t.as_slice()))
        .collect();
    v.push(("zip_texts_2MB", samples::zip(&entries)));
    let more: Vec<Vec<u8>> = (0..40).map(|i| text_kb(70 + i)).collect();
    let tar_entries: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&more)
        .map(|(n, t)| (n.as_str(), t.as_slice()))
        .collect();
    v.push(("tar_gz_texts_3MB", samples::tar_gz(&tar_entries)));
    let docs = docs();
    let mut inner: Vec<(&str, &[u8])> = entries[..10].to_vec();
    inner.extend(docs.iter().map(|(n, b)| (*n, b.as_slice())));
    let inner_zip = samples::zip(&inner);
    v.push((
        "tar_gz_nested",
        samples::tar_gz(&[
            ("a/", b""),
            ("a/inner.zip", &inner_zip),
            ("b.txt", &texts[0]),
        ]),
    ));
    if !docs.is_empty() {
        let doc_entries: Vec<(&str, &[u8])> =
            docs.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        v.push(("zip_of_docs", samples::zip(&doc_entries)));
    }
    v.extend(docs);
    v
}

fn inspector() -> Arc<Inspector> {
    let mut cfg = MediaConfig::default();
    for k in ["tar", "gzip", "xml", "json"] {
        cfg.types.outbound.push(k.to_owned());
    }
    cfg.scan_deadline_ms = 60_000;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let dlp = RuleSet::load_dir(root)
        .unwrap_or_else(|d| panic!("{d}"))
        .engine();
    let yara = Some(Arc::new(
        grenzwacht::media::yara::YaraRules::load_dir(root).expect("shipped YARA rules"),
    ));
    Arc::new(Inspector::new(&cfg, Some(dlp), yara).expect("inspector"))
}

fn ctx() -> InspectCtx {
    InspectCtx {
        direction: Direction::Outbound,
        peer: Some("remote.example".to_owned()),
        server_name: "local.example".to_owned(),
        media_id: "bench".to_owned(),
    }
}

fn bench(c: &mut Criterion) {
    let insp = inspector();
    let cx = ctx();
    let corpus = corpus();
    for (name, bytes) in &corpus {
        let r = insp.inspect_blocking(bytes, &cx);
        eprintln!(
            "{name}: {} bytes, kind {}, files {}, text {} B, findings {:?}",
            bytes.len(),
            r.kind,
            r.files,
            r.text_bytes,
            r.findings
                .iter()
                .map(|f| f.reason.as_str())
                .collect::<Vec<_>>()
        );
    }
    let mut g = c.benchmark_group("inspect");
    for (name, bytes) in &corpus {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| black_box(insp.inspect_blocking(black_box(bytes), &cx)))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("sha256");
    for (name, bytes) in &corpus {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| black_box(Sha256::digest(black_box(bytes))))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("small");
    for (name, bytes) in corpus
        .iter()
        .filter(|(n, _)| *n == "text_1KB" || *n == "png_small")
    {
        g.bench_function(*name, |b| {
            b.iter(|| black_box(insp.inspect_blocking(black_box(bytes), &cx)))
        });
    }
    g.finish();
}

/// Interleaved direct measurement: per sample MB/s of the inspector and of SHA-256, and µs
/// per file.
fn direct() {
    let insp = inspector();
    let cx = ctx();
    println!(
        "\n{:<18} {:>10} {:>12} {:>12} {:>12}",
        "sample", "bytes", "inspect MB/s", "sha256 MB/s", "µs/file"
    );
    for (name, bytes) in corpus() {
        let reps = (32 << 20) / bytes.len().max(1) + 3;
        let (mut t_insp, mut t_sha) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..reps {
            let t = Instant::now();
            black_box(insp.inspect_blocking(black_box(&bytes), &cx));
            t_insp += t.elapsed();
            let t = Instant::now();
            black_box(Sha256::digest(black_box(&bytes)));
            t_sha += t.elapsed();
        }
        let mb = (bytes.len() * reps) as f64 / 1e6;
        println!(
            "{name:<18} {:>10} {:>12.1} {:>12.1} {:>12.1}",
            bytes.len(),
            mb / t_insp.as_secs_f64(),
            mb / t_sha.as_secs_f64(),
            t_insp.as_secs_f64() * 1e6 / reps as f64
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        direct();
    }
}
