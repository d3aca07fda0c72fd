//! DLP engine throughput on German office/chat text with the shipped rule set (`policies/`),
//! against a naive baseline that runs each rule's regex separately, in the same run.
//!
//! * Corpus: `benches/corpus/seed_de.txt` (hand-written German office chat, one sentence per
//!   line) recombined deterministically (LCG) into ~1000 messages of 1–8 sentences (~450 KB);
//!   every 40th message gets a line from `sensitive_de.txt` (IBAN, phone, e-mail, markings,
//!   Steuer-ID, token), so validators and context checks run too.
//! * `engine`: `Engine::scan_fields` per message (`body`), the whole shipped set in one
//!   `RegexSet` pass plus the keyword automata.
//! * `naive_per_rule`: per message, for each rule one regex (its patterns and escaped keywords
//!   as an alternation, same ASCII dialect), `find_iter` and the validator on each hit.
//! * `engine_unnormalized`: the same engine without the text pipeline (raw strings only):
//!   the engine as it was before normalisation, the baseline for the pipeline's cost.
//! * `corpus_non_ascii`: the corpus with a sentence of typographic punctuation, Polish,
//!   Czech, French and Cyrillic names and an emoji added to every message.
//! * `message_200B`: one ~200-byte message through `scan_fields` and `scan_event`, and
//!   `scan_event_html`: the whole event scanner on `body` plus an HTML `formatted_body`
//!   (`msgtype`, `format` and every key scanned too).
//!
//! Run: `cargo bench --bench dlp` (or `-- --quick`). After criterion's output a direct
//! interleaved measurement prints MB/s for both and the ratio.
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, Criterion, Throughput};
use grenzwacht::policy::dlp::{Field, RuleSet, ScanCtx};
use grenzwacht::telemetry::Direction;

const SEED: &str = include_str!("corpus/seed_de.txt");
const SENSITIVE: &str = include_str!("corpus/sensitive_de.txt");

fn corpus() -> Vec<String> {
    let lines: Vec<&str> = SEED.lines().filter(|l| !l.is_empty()).collect();
    let sensitive: Vec<&str> = SENSITIVE.lines().filter(|l| !l.is_empty()).collect();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..1000)
        .map(|i| {
            let n = 1 + next() % 8;
            let mut m: Vec<&str> = (0..n).map(|_| lines[next() % lines.len()]).collect();
            if i % 40 == 39 {
                m.insert(
                    next() % (m.len() + 1),
                    sensitive[(i / 40) % sensitive.len()],
                );
            }
            m.join(" ")
        })
        .collect()
}

/// The baseline: one regex per rule, run one after the other.
struct Naive {
    rules: Vec<(
        regex::bytes::Regex,
        Option<grenzwacht::policy::dlp::Validator>,
    )>,
}

impl Naive {
    fn new(set: &RuleSet) -> Naive {
        let rules = set
            .rules()
            .map(|r| {
                let mut alts: Vec<String> = r.regex.iter().map(|p| format!("(?:{p})")).collect();
                for k in &r.keywords {
                    let k = regex::escape(k);
                    alts.push(if r.case_sensitive {
                        k
                    } else {
                        format!("(?i:{k})")
                    });
                }
                let re = regex::bytes::RegexBuilder::new(&alts.join("|"))
                    .unicode(false)
                    .build()
                    .unwrap();
                (re, r.validator)
            })
            .collect();
        Naive { rules }
    }

    fn scan(&self, text: &str) -> usize {
        let mut hits = 0;
        for (re, v) in &self.rules {
            for m in re.find_iter(text.as_bytes()) {
                let ok = match (v, std::str::from_utf8(m.as_bytes())) {
                    (Some(v), Ok(s)) => v.check(s),
                    (None, _) => true,
                    (Some(_), Err(_)) => false,
                };
                hits += usize::from(ok);
            }
        }
        hits
    }
}

/// Sentences with characters beyond Latin-1, appended to the corpus for `corpus_non_ascii`.
const NON_ASCII: &[&str] = &[
    "„Passt“ – sagt Łukasz Wójcik aus Łódź 👍",
    "Zuständig: Jiří Dvořák (Brno), Kopie an Zoë Ærø.",
    "Привет из Москвы — Grüße an Ὀδυσσεύς …",
    "Termin: 3 – 5 ½ Std., Raum „Süd“ № 12 ✔",
];

fn non_ascii(msgs: &[String]) -> Vec<String> {
    msgs.iter()
        .enumerate()
        .map(|(i, m)| format!("{m} {}", NON_ASCII[i % NON_ASCII.len()]))
        .collect()
}

/// The 200-byte message as an event with an HTML `formatted_body`.
fn message_200_html() -> serde_json::Value {
    let m = message_200();
    let html = format!(
        "<p>{}</p><p><b>Rückmeldung</b> bitte bis <i>Freitag</i>.</p>",
        &m[..150]
    );
    serde_json::json!({"msgtype": "m.text", "body": m, "format": "org.matrix.custom.html", "formatted_body": html})
}

fn setup() -> (RuleSet, Vec<String>, u64) {
    let set = RuleSet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
        .unwrap_or_else(|d| panic!("{d}"));
    let msgs = corpus();
    let bytes: u64 = msgs.iter().map(|m| m.len() as u64).sum();
    (set, msgs, bytes)
}

const CTX: ScanCtx<'static> = ScanCtx {
    direction: Direction::Outbound,
    peer: Some("land.example.de"),
    room_id: Some("!lage:bund.example.de"),
    sender: Some("@alice:bund.example.de"),
    event_type: "m.room.message",
};

fn message_200() -> String {
    let m = "Kurze Frage: Gilt die neue Reisekostenregelung schon für Dienstreisen, die vor dem Stichtag genehmigt wurden? Ich habe die Zahlen noch einmal geprüft, passt. Rückmeldung bitte bis Freitag, 14 Uhr.";
    assert!((195..=205).contains(&m.len()), "{}", m.len());
    m.to_owned()
}

fn bench(c: &mut Criterion) {
    let (set, msgs, bytes) = setup();
    let engine = set.engine();
    let naive = Naive::new(&set);
    // Sanity: both find the planted items; clean messages are clean.
    let found: usize = msgs
        .iter()
        .map(|m| {
            engine
                .scan_fields(&CTX, &[(Field::Body, m.as_str())])
                .matches
                .len()
        })
        .sum();
    assert!(found >= 20, "engine found {found}");
    assert!(msgs.iter().map(|m| naive.scan(m)).sum::<usize>() >= 20);

    let mut g = c.benchmark_group("dlp/corpus");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("engine", |b| {
        b.iter(|| {
            let mut n = 0;
            for m in &msgs {
                n += engine
                    .scan_fields(&CTX, &[(Field::Body, m.as_str())])
                    .matches
                    .len();
            }
            black_box(n)
        })
    });
    g.bench_function("engine_unnormalized", |b| {
        b.iter(|| {
            let mut n = 0;
            for m in &msgs {
                n += engine
                    .scan_fields_unnormalized(&CTX, &[(Field::Body, m.as_str())])
                    .matches
                    .len();
            }
            black_box(n)
        })
    });
    g.bench_function("naive_per_rule", |b| {
        b.iter(|| {
            let mut n = 0;
            for m in &msgs {
                n += naive.scan(m);
            }
            black_box(n)
        })
    });
    g.finish();

    let wide = non_ascii(&msgs);
    let mut g = c.benchmark_group("dlp/corpus_non_ascii");
    g.throughput(Throughput::Bytes(wide.iter().map(|m| m.len() as u64).sum()));
    g.bench_function("engine", |b| {
        b.iter(|| {
            black_box(
                wide.iter()
                    .map(|m| {
                        engine
                            .scan_fields(&CTX, &[(Field::Body, m.as_str())])
                            .matches
                            .len()
                    })
                    .sum::<usize>(),
            )
        })
    });
    g.bench_function("engine_unnormalized", |b| {
        b.iter(|| {
            black_box(
                wide.iter()
                    .map(|m| {
                        engine
                            .scan_fields_unnormalized(&CTX, &[(Field::Body, m.as_str())])
                            .matches
                            .len()
                    })
                    .sum::<usize>(),
            )
        })
    });
    g.finish();

    // The text pipeline alone, with and without the decoded views (the cost of looking for
    // encoded runs in every string, and of decoding those that have them).
    let mut g = c.benchmark_group("text/views");
    g.throughput(Throughput::Bytes(bytes));
    let mut views = grenzwacht::text::Views::new();
    g.bench_function("build", |b| {
        b.iter(|| {
            let n: usize = msgs.iter().map(|m| views.build(m, true).len()).sum();
            black_box(n)
        })
    });
    g.bench_function("build_undecoded", |b| {
        b.iter(|| {
            let n: usize = msgs
                .iter()
                .map(|m| views.build_undecoded(m, true).len())
                .sum();
            black_box(n)
        })
    });
    g.finish();

    let m = message_200();
    let content = serde_json::json!({"msgtype": "m.text", "body": m});
    let mut g = c.benchmark_group("dlp/message_200B");
    g.throughput(Throughput::Bytes(m.len() as u64));
    g.bench_function("scan_fields", |b| {
        b.iter(|| black_box(engine.scan_fields(&CTX, &[(Field::Body, m.as_str())])))
    });
    g.bench_function("scan_event", |b| {
        b.iter(|| black_box(engine.scan_event(&CTX, &content)))
    });
    let html = message_200_html();
    g.bench_function("scan_event_html", |b| {
        b.iter(|| black_box(engine.scan_event(&CTX, &html)))
    });
    g.bench_function("scan_fields_unnormalized", |b| {
        b.iter(|| black_box(engine.scan_fields_unnormalized(&CTX, &[(Field::Body, m.as_str())])))
    });
    g.bench_function("naive_per_rule", |b| b.iter(|| black_box(naive.scan(&m))));
    g.finish();
}

/// Interleaved direct measurement: MB/s of both over the corpus, and the ratio.
fn report_ratio() {
    let (set, msgs, bytes) = setup();
    let engine = set.engine();
    let naive = Naive::new(&set);
    let wide = non_ascii(&msgs);
    let wide_bytes: u64 = wide.iter().map(|m| m.len() as u64).sum();
    // Interleaved rounds: normalising engine, the same engine unnormalised, naive per rule.
    let (mut te, mut tu, mut tn, mut twe, mut twu) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let rounds = 20;
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    for _ in 0..rounds {
        te += time(&mut || {
            msgs.iter().for_each(|m| {
                drop(black_box(
                    engine.scan_fields(&CTX, &[(Field::Body, m.as_str())]),
                ))
            })
        });
        tu += time(&mut || {
            msgs.iter().for_each(|m| {
                drop(black_box(engine.scan_fields_unnormalized(
                    &CTX,
                    &[(Field::Body, m.as_str())],
                )))
            })
        });
        tn += time(&mut || {
            msgs.iter().for_each(|m| {
                black_box(naive.scan(m));
            })
        });
        twe += time(&mut || {
            wide.iter().for_each(|m| {
                drop(black_box(
                    engine.scan_fields(&CTX, &[(Field::Body, m.as_str())]),
                ))
            })
        });
        twu += time(&mut || {
            wide.iter().for_each(|m| {
                drop(black_box(engine.scan_fields_unnormalized(
                    &CTX,
                    &[(Field::Body, m.as_str())],
                )))
            })
        });
    }
    let mbs = |b: u64, d: Duration| (b * rounds) as f64 / d.as_secs_f64() / 1e6;
    println!(
        "\ndlp corpus {} messages, {} bytes, {} rules: engine {:.1} MB/s, unnormalised {:.1} MB/s (normalising costs {:.2}x), naive per-rule {:.1} MB/s, engine/naive {:.2}x",
        msgs.len(),
        bytes,
        set.rules().count(),
        mbs(bytes, te),
        mbs(bytes, tu),
        te.as_secs_f64() / tu.as_secs_f64(),
        mbs(bytes, tn),
        tn.as_secs_f64() / te.as_secs_f64()
    );
    println!(
        "dlp corpus with non-ASCII sentences ({wide_bytes} bytes): engine {:.1} MB/s, unnormalised {:.1} MB/s (normalising costs {:.2}x)",
        mbs(wide_bytes, twe),
        mbs(wide_bytes, twu),
        twe.as_secs_f64() / twu.as_secs_f64()
    );
    let m = message_200();
    let html = message_200_html();
    let n = 20_000u32;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    let t1 = time(&mut || {
        (0..n).for_each(|_| {
            drop(black_box(engine.scan_fields_unnormalized(
                &CTX,
                &[(Field::Body, m.as_str())],
            )))
        })
    });
    let t2 = time(&mut || {
        (0..n).for_each(|_| {
            drop(black_box(
                engine.scan_fields(&CTX, &[(Field::Body, m.as_str())]),
            ))
        })
    });
    let t3 = time(&mut || (0..n).for_each(|_| drop(black_box(engine.scan_event(&CTX, &html)))));
    println!(
        "dlp 200-byte message ({} bytes): unnormalised body {:.2} µs, normalised body {:.2} µs, whole event with formatted_body {:.2} µs",
        m.len(),
        per(t1),
        per(t2),
        per(t3)
    );
}

criterion_group!(benches, bench);

/// `DLP_PROFILE=engine|naive|short|html [DLP_ROUNDS=n]`: run only that workload (for `perf` or
/// `valgrind --tool=callgrind`, which give repeatable instruction counts on a busy machine).
fn profile(which: &str) {
    let (set, msgs, _) = setup();
    let engine = set.engine();
    let naive = Naive::new(&set);
    let rounds: usize = std::env::var("DLP_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let short = message_200();
    let html = message_200_html();
    let mut n = 0;
    for _ in 0..rounds {
        match which {
            "engine" => msgs.iter().for_each(|m| {
                n += engine
                    .scan_fields(&CTX, &[(Field::Body, m.as_str())])
                    .matches
                    .len()
            }),
            "naive" => msgs.iter().for_each(|m| n += naive.scan(m)),
            "short" => (0..1000).for_each(|_| {
                n += engine
                    .scan_fields(&CTX, &[(Field::Body, short.as_str())])
                    .matches
                    .len()
            }),
            "html" => (0..1000).for_each(|_| n += engine.scan_event(&CTX, &html).matches.len()),
            _ => panic!("DLP_PROFILE must be engine, naive, short or html"),
        }
    }
    println!("{which}: {rounds} rounds, {n} matches");
}

fn main() {
    if let Ok(which) = std::env::var("DLP_PROFILE") {
        return profile(&which);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        report_ratio();
    }
}
