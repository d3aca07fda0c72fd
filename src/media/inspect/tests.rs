//! The inspector on generated files. Tests marked `needs_sniff` rely on `media::sniff` and
//! `media::extract` naming and reading plain text, zip, tar, gzip and PE.
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::media::samples;
use crate::policy::dlp::RuleSet;

const RULES: &str = r#"
mode = "enforce"

[[rule]]
id = "geheim"
description = "GEHEIM marking"
severity = "critical"
action = "reject"
keywords = ["GEHEIM"]
case_sensitive = true

[[rule]]
id = "intern"
description = "internal, audited only"
severity = "low"
action = "tag"
keywords = ["INTERN"]
case_sensitive = true
"#;

fn engine() -> Arc<Engine> {
    RuleSet::from_sources(&[("t.toml", RULES)])
        .unwrap_or_else(|d| panic!("{d}"))
        .engine()
}

fn cfg(outbound: &[&str], inbound: &[&str]) -> MediaConfig {
    let mut c = MediaConfig::default();
    c.types.outbound = outbound.iter().map(|s| s.to_string()).collect();
    c.types.inbound = inbound.iter().map(|s| s.to_string()).collect();
    c
}

fn ctx(direction: Direction) -> InspectCtx {
    InspectCtx {
        direction,
        peer: Some("remote.example".to_owned()),
        server_name: "local.example".to_owned(),
        media_id: "abc".to_owned(),
    }
}

fn inspector(c: &MediaConfig) -> Inspector {
    Inspector::new(c, Some(engine()), None).unwrap()
}

fn reasons(r: &Report) -> Vec<(MediaReason, Option<&str>, &str)> {
    r.findings
        .iter()
        .map(|f| (f.reason, f.rule.as_deref(), f.path.as_str()))
        .collect()
}

#[test]
fn unknown_type_names_are_all_listed() {
    let c = cfg(&["png", "exe", "text"], &["pdf", "docm"]);
    let e = Inspector::new(&c, None, None).err().expect("refused");
    let msg = e.to_string();
    assert!(msg.contains("outbound \"exe\""), "{msg}");
    assert!(msg.contains("inbound \"docm\""), "{msg}");
    assert!(!msg.contains("\"png\""), "{msg}");
    assert!(Inspector::new(&MediaConfig::default(), None, None).is_ok());
}

#[test]
fn allowed_per_direction() {
    let i = Inspector::new(&cfg(&["text", "zip"], &["png"]), None, None).unwrap();
    assert!(i.allowed(Direction::Outbound, FileKind::Text));
    assert!(i.allowed(Direction::Outbound, FileKind::Zip));
    assert!(!i.allowed(Direction::Inbound, FileKind::Text));
    assert!(i.allowed(Direction::Inbound, FileKind::Png));
    assert!(!i.allowed(Direction::Outbound, FileKind::Unknown));
}

#[test]
fn report_fields_and_size_limit() {
    let mut c = cfg(&["unknown"], &["unknown"]);
    c.max_file_bytes = 100;
    let i = Inspector::new(&c, None, None).unwrap();
    let small = [7u8; 100];
    let r = i.inspect_blocking(&small, &ctx(Direction::Outbound));
    assert_eq!(r.size, 100);
    assert_eq!(r.sha256, hex(&Sha256::digest(small)));
    assert_eq!(r.sha256.len(), 64);
    let big = [7u8; 101];
    let r = i.inspect_blocking(&big, &ctx(Direction::Outbound));
    assert_eq!(reasons(&r), vec![(MediaReason::TooLarge, None, "")]);
    assert!(!r.released());
}

#[test]
fn type_not_allowed_for_the_file_itself() {
    // With no kind allowed, whatever sniff says is refused.
    let i = Inspector::new(&cfg(&[], &[]), None, None).unwrap();
    let r = i.inspect_blocking(b"hello", &ctx(Direction::Outbound));
    assert_eq!(reasons(&r), vec![(MediaReason::TypeNotAllowed, None, "")]);
}

#[test]
fn deadline_passed_is_a_timeout() {
    let i = Inspector::new(&cfg(&["unknown"], &["unknown"]), None, None).unwrap();
    let r = i.inspect_until(&[1, 2, 3], &ctx(Direction::Inbound), Instant::now());
    assert_eq!(reasons(&r), vec![(MediaReason::ScanTimeout, None, "")]);
    let r = i.inspect_until(
        &[1, 2, 3],
        &ctx(Direction::Inbound),
        Instant::now() + Duration::from_secs(60),
    );
    assert!(r.released(), "{r:?}");
}

#[test]
fn office_parts_with_objects_or_macros_are_refused() {
    let c = cfg(&["docx"], &["docx", "ole"]);
    let i = inspector(&c);
    let doc = samples::zip(&[
        ("[Content_Types].xml", b"<Types/>"),
        ("word/document.xml", b"<w:document/>"),
        ("word/embeddings/oleObject1.bin", b"not really OLE"),
    ]);
    let run = |dir: Direction| {
        let cx = ctx(dir);
        let mut report = Report {
            kind: FileKind::Docx,
            size: 0,
            sha256: String::new(),
            findings: Vec::new(),
            files: 1,
            text_bytes: 0,
        };
        let mut s = Scan {
            insp: &i,
            ctx: &cx,
            deadline: Instant::now() + Duration::from_secs(60),
            text_left: MAX_TEXT_BYTES,
            report: &mut report,
        };
        s.parts(FileKind::Docx, &doc, "a.zip/b.docx");
        report
    };
    let out = run(Direction::Outbound);
    assert_eq!(
        reasons(&out),
        vec![(
            MediaReason::TypeNotAllowed,
            None,
            "a.zip/b.docx/word/embeddings/oleObject1.bin"
        )]
    );
    // OLE allowed inbound: the part passes.
    assert!(run(Direction::Inbound).findings.is_empty());
    assert_eq!(
        part_kind_by_name("xl/vbaProject.bin"),
        Some(FileKind::OfficeMacro)
    );
    assert_eq!(
        part_kind_by_name("Basic/Standard/Module1.xml"),
        Some(FileKind::OfficeMacro)
    );
    assert_eq!(
        part_kind_by_name("ppt/activeX/activeX1.bin"),
        Some(FileKind::Ole)
    );
    assert_eq!(
        part_kind_by_name("xl/printerSettings/printerSettings1.bin"),
        None
    );
    assert_eq!(part_kind_by_name("word/document.xml"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_deadline_is_a_timeout() {
    let mut c = cfg(&["unknown"], &["unknown"]);
    c.scan_deadline_ms = 1;
    c.max_file_bytes = 256 << 20;
    let i = Arc::new(Inspector::new(&c, None, None).unwrap());
    // SHA-256 of 128 MiB alone takes far longer than 1 ms.
    let big = Bytes::from(vec![0x41u8; 128 << 20]);
    let r = i.inspect(big, ctx(Direction::Outbound)).await;
    assert_eq!(reasons(&r), vec![(MediaReason::ScanTimeout, None, "")]);
    assert_eq!(r.size, 128 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scans_are_capped() {
    for cap in [1usize, 2] {
        let all: Vec<&str> = FileKind::ALL.iter().map(|k| k.as_str()).collect();
        let mut c = cfg(&all, &all);
        c.max_concurrent_scans = cap;
        c.scan_deadline_ms = 120_000;
        let i = Arc::new(Inspector::new(&c, None, None).unwrap());
        assert_eq!(i.max_concurrent_scans(), cap);
        let data = Bytes::from(vec![0u8; 12 << 20]);
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let i = Arc::clone(&i);
                let d = data.clone();
                tokio::spawn(async move { i.inspect(d, ctx(Direction::Inbound)).await })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert!(r.released(), "{r:?}");
            assert_eq!(r.sha256.len(), 64);
        }
        assert!(i.peak_scans() >= 1);
        assert!(i.peak_scans() <= cap, "peak {} > cap {cap}", i.peak_scans());
        assert_eq!(i.scans_running(), 0);
    }
    // 0: one per CPU.
    let i = Inspector::new(&MediaConfig::default(), None, None).unwrap();
    assert_eq!(
        i.max_concurrent_scans(),
        std::thread::available_parallelism().unwrap().get()
    );
}

// ---- relying on media::sniff / media::extract ----

#[test]
fn text_allowed_one_way_only() {
    let i = inspector(&cfg(&["text"], &["png"]));
    let out = i.inspect_blocking(b"Hallo, hier der Bericht.\n", &ctx(Direction::Outbound));
    assert_eq!(out.kind, FileKind::Text);
    assert!(out.released(), "{out:?}");
    assert!(out.text_bytes > 0);
    let back = i.inspect_blocking(b"Hallo, hier der Bericht.\n", &ctx(Direction::Inbound));
    assert_eq!(
        reasons(&back),
        vec![(MediaReason::TypeNotAllowed, None, "")]
    );
}

#[test]
fn pe_inside_zip_inside_tar_gz_is_refused() {
    let i = inspector(&cfg(&["text", "zip", "tar", "gzip"], &[]));
    let inner = samples::zip(&[("note.txt", b"hello"), ("x/tool.exe", &samples::pe_exe())]);
    let tgz = samples::tar_gz(&[("docs/", b""), ("docs/inner.zip", &inner)]);
    let r = i.inspect_blocking(&tgz, &ctx(Direction::Outbound));
    assert_eq!(r.kind, FileKind::Gzip);
    assert_eq!(
        reasons(&r),
        vec![(
            MediaReason::TypeNotAllowed,
            None,
            "docs/inner.zip/x/tool.exe"
        )]
    );
    assert!(r.findings[0].detail.contains("pe"), "{:?}", r.findings);
    // Without the PE the same archive crosses; every entry was looked at.
    let inner = samples::zip(&[("note.txt", b"hello"), ("b.txt", b"world")]);
    let tgz = samples::tar_gz(&[("docs/", b""), ("docs/inner.zip", &inner)]);
    let r = i.inspect_blocking(&tgz, &ctx(Direction::Outbound));
    assert!(r.released(), "{r:?}");
    // gzip, tar, zip, two texts, and the file itself.
    assert_eq!(r.files, 5);
    // A tar not on the list is refused even inside an allowed gzip.
    let i = inspector(&cfg(&["text", "zip", "gzip"], &[]));
    let r = i.inspect_blocking(&tgz, &ctx(Direction::Outbound));
    assert_eq!(reasons(&r), vec![(MediaReason::TypeNotAllowed, None, "")]);
}

#[test]
fn executables_and_scripts_are_refused_by_default() {
    let i = inspector(&MediaConfig::default());
    for (bytes, kind) in [
        (samples::pe_exe(), FileKind::Pe),
        (samples::elf(), FileKind::Elf),
        (samples::script(), FileKind::Script),
    ] {
        let r = i.inspect_blocking(&bytes, &ctx(Direction::Inbound));
        assert_eq!(r.kind, kind);
        assert_eq!(reasons(&r), vec![(MediaReason::TypeNotAllowed, None, "")]);
        let z = samples::zip(&[("a/b", &bytes)]);
        let r = i.inspect_blocking(&z, &ctx(Direction::Inbound));
        assert_eq!(
            reasons(&r),
            vec![(MediaReason::TypeNotAllowed, None, "a/b")]
        );
    }
}

#[test]
fn dlp_on_text_entries_and_names() {
    let i = inspector(&cfg(&["text", "zip"], &["text", "zip"]));
    let z = samples::zip(&[
        ("a.txt", b"nothing here"),
        ("b/c.txt", b"Einstufung: GEHEIM, nicht weitergeben"),
    ]);
    let r = i.inspect_blocking(&z, &ctx(Direction::Outbound));
    assert_eq!(
        reasons(&r),
        vec![(MediaReason::Dlp, Some("dlp:geheim"), "b/c.txt")]
    );
    let d = &r.findings[0].detail;
    assert!(d.starts_with("reject"), "{d}");
    assert!(!d.contains("GEHEIM"), "excerpt not masked: {d}");
    // A tag rule audits but does not refuse.
    let z = samples::zip(&[("a.txt", b"nur INTERN verwenden")]);
    assert!(i.inspect_blocking(&z, &ctx(Direction::Outbound)).released());
    // Entry names are scanned as media.name.
    let z = samples::zip(&[("GEHEIM/plan.txt", b"harmless")]);
    let r = i.inspect_blocking(&z, &ctx(Direction::Outbound));
    assert_eq!(
        reasons(&r),
        vec![(MediaReason::Dlp, Some("dlp:geheim"), "GEHEIM/plan.txt")]
    );
    // The file itself.
    let r = i.inspect_blocking(b"Vermerk GEHEIM", &ctx(Direction::Inbound));
    assert_eq!(
        reasons(&r),
        vec![(MediaReason::Dlp, Some("dlp:geheim"), "")]
    );
    // Without a DLP engine nothing is scanned.
    let bare = Inspector::new(&cfg(&["text"], &[]), None, None).unwrap();
    assert!(bare
        .inspect_blocking(b"Vermerk GEHEIM", &ctx(Direction::Outbound))
        .released());
}

/// What a container carries besides its entries is judged like text: a tar's link target
/// inside a gzip inside a zip (compressed twice, so the file's own bytes never show it), a
/// zip comment, a gzip member's comment; YARA sees a nested container's bytes after
/// decompression.
#[test]
fn container_text_and_nested_container_bytes_are_judged() {
    let i = inspector(&cfg(&["text", "zip", "tar", "gzip"], &[]));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "link", "Vermerk GEHEIM").unwrap();
    let t = b.into_inner().unwrap();
    let z = samples::zip(&[("a.txt", b"harmless"), ("x.tar.gz", &samples::gzip(&t))]);
    let r = i.inspect_blocking(&z, &ctx(Direction::Outbound));
    assert_eq!(
        reasons(&r),
        vec![(MediaReason::Dlp, Some("dlp:geheim"), "x.tar.gz")]
    );

    let mut z = samples::zip(&[("a.txt", b"harmless")]);
    let comment = b"Einstufung GEHEIM";
    let at = z.len() - 2;
    z[at..].copy_from_slice(&(comment.len() as u16).to_le_bytes());
    z.extend_from_slice(comment);
    let r = i.inspect_blocking(&z, &ctx(Direction::Outbound));
    assert_eq!(
        reasons(&r),
        vec![(MediaReason::Dlp, Some("dlp:geheim"), "")]
    );

    let mut e = flate2::GzBuilder::new()
        .comment("Einstufung GEHEIM")
        .write(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut e, b"harmless").unwrap();
    let gz = e.finish().unwrap();
    let r = i.inspect_blocking(&gz, &ctx(Direction::Outbound));
    assert_eq!(
        reasons(&r),
        vec![(MediaReason::Dlp, Some("dlp:geheim"), "")]
    );
    // the same files without the marker pass
    let clean = samples::zip(&[
        ("a.txt", b"harmless"),
        ("x.tar.gz", &samples::tar_gz(&[("b.txt", b"frei")])),
    ]);
    let r = i.inspect_blocking(&clean, &ctx(Direction::Outbound));
    assert!(r.released(), "{:?}", r.findings);

    // YARA: a rule on bytes that only the decompressed inner tar shows (its header magic,
    // which is no container text)
    let yara = crate::media::yara::YaraRules::from_sources(&[(
        "t.yar",
        "rule tar_magic { strings: $a = \"ustar\" condition: $a }",
    )])
    .unwrap_or_else(|d| panic!("{d:?}"));
    let iy = Inspector::new(
        &cfg(&["text", "zip", "tar", "gzip"], &[]),
        None,
        Some(Arc::new(yara)),
    )
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(8);
    h.set_username("GEHEIM-owner").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, "a.txt", &b"harmless"[..]).unwrap();
    let z = samples::zip(&[("x.tar.gz", &samples::gzip(&b.into_inner().unwrap()))]);
    let r = iy.inspect_blocking(&z, &ctx(Direction::Outbound));
    assert!(
        reasons(&r)
            .iter()
            .any(|(reason, rule, _)| *reason == MediaReason::Yara
                && *rule == Some("yara:t.tar_magic")),
        "{:?}",
        reasons(&r)
    );
}

#[test]
fn archive_limits_and_unreadable_entries_are_findings() {
    let i = inspector(&MediaConfig::default());
    let r = i.inspect_blocking(&samples::zip_bomb_ratio(1 << 30), &ctx(Direction::Inbound));
    assert_eq!(
        reasons(&r),
        vec![(MediaReason::ArchiveLimit, None, "zeros.bin")]
    );
    assert!(r.findings[0].detail.contains("ratio"), "{:?}", r.findings);
    let r = i.inspect_blocking(
        &samples::zip_bomb_overlapping(5000),
        &ctx(Direction::Inbound),
    );
    assert_eq!(r.findings[0].reason, MediaReason::ArchiveLimit);
    let r = i.inspect_blocking(&samples::nested_zip(6), &ctx(Direction::Inbound));
    assert_eq!(r.findings[0].reason, MediaReason::ArchiveLimit);
    assert!(r.findings[0].detail.contains("depth"));
    let r = i.inspect_blocking(&samples::zip_encrypted("s.txt"), &ctx(Direction::Inbound));
    assert_eq!(reasons(&r), vec![(MediaReason::Unreadable, None, "s.txt")]);
}
