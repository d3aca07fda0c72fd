//! The walker on generated archives, with a classifier of its own (magic numbers of the three
//! containers and of PE; everything else is text), so these tests decide only what this module
//! decides.
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::*;
use crate::media::samples;

fn classify(b: &[u8]) -> FileKind {
    if b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06") {
        FileKind::Zip
    } else if b.starts_with(&[0x1f, 0x8b]) {
        FileKind::Gzip
    } else if b.len() > 262 && &b[257..262] == b"ustar" {
        FileKind::Tar
    } else if b.starts_with(b"MZ") {
        FileKind::Pe
    } else {
        FileKind::Text
    }
}

fn limits() -> ArchiveLimits {
    ArchiveLimits::default()
}

/// The outcome of a walk, (path, depth, kind, container) of every entry, and the stats.
type Walked = (
    Result<ControlFlow<()>, ArchiveError>,
    Vec<(String, u32, FileKind, bool)>,
    Stats,
);

/// Walks `bytes` and returns (path, depth, kind, container) of every entry.
fn walk(bytes: &[u8], kind: FileKind, limits: &ArchiveLimits) -> Walked {
    let mut seen = Vec::new();
    let mut w = Walker::new(limits, None, &classify);
    let r = w.walk(bytes, kind, &mut |e: Entry<'_>| {
        if !e.meta {
            seen.push((e.path.to_owned(), e.depth, e.kind, e.container));
        }
        ControlFlow::Continue(())
    });
    (r, seen, w.stats())
}

/// Walks `bytes` and returns the container texts ([`Entry::meta`]): (path, depth, text).
fn texts(bytes: &[u8], kind: FileKind) -> Vec<(String, u32, String)> {
    let mut out = Vec::new();
    let mut w = Walker::new(&limits(), None, &classify);
    let r = w.walk(bytes, kind, &mut |e: Entry<'_>| {
        if e.meta {
            assert_eq!(e.kind, FileKind::Text);
            let text = std::str::from_utf8(e.bytes).expect("container text is UTF-8");
            out.push((e.path.to_owned(), e.depth, text.to_owned()));
        }
        ControlFlow::Continue(())
    });
    assert!(r.expect("walk").is_continue());
    out
}

/// The text of the one container that has text.
fn text_of(bytes: &[u8], kind: FileKind) -> String {
    let t = texts(bytes, kind);
    assert_eq!(t.len(), 1, "{t:?}");
    t[0].2.clone()
}

fn limit_of(r: Result<ControlFlow<()>, ArchiveError>) -> (Limit, String, u64) {
    match r {
        Err(ArchiveError::Limit {
            limit,
            path,
            produced,
        }) => (limit, path, produced),
        other => panic!("expected a limit, got {other:?}"),
    }
}

#[test]
fn zip_entries_with_paths_and_content() {
    let z = samples::zip(&[("a.txt", b"alpha"), ("dir/", b""), ("dir/b.txt", b"beta")]);
    let mut got = Vec::new();
    let mut w = Walker::new(&limits(), None, &classify);
    let r = w
        .walk(&z, FileKind::Zip, &mut |e: Entry<'_>| {
            if !e.meta {
                got.push((e.path.to_owned(), e.bytes.to_vec()));
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(r.is_continue());
    assert_eq!(
        got,
        vec![
            ("a.txt".to_owned(), b"alpha".to_vec()),
            ("dir/b.txt".to_owned(), b"beta".to_vec())
        ]
    );
    let s = w.stats();
    assert_eq!(s.entries, 3, "the directory counts as an entry");
    assert_eq!(s.total_bytes, 9);
}

#[test]
fn nested_gzip_tar_zip() {
    let inner = samples::zip(&[("x/evil.exe", &samples::pe_exe()), ("note.txt", b"hi")]);
    let tgz = samples::tar_gz(&[("docs/", b""), ("docs/inner.zip", &inner), ("readme", b"r")]);
    let (r, seen, stats) = walk(&tgz, FileKind::Gzip, &limits());
    assert!(r.unwrap().is_continue());
    let paths: Vec<(&str, u32, FileKind, bool)> = seen
        .iter()
        .map(|(p, d, k, c)| (p.as_str(), *d, *k, *c))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("", 1, FileKind::Tar, true),
            ("docs/inner.zip", 2, FileKind::Zip, true),
            ("docs/inner.zip/x/evil.exe", 3, FileKind::Pe, false),
            ("docs/inner.zip/note.txt", 3, FileKind::Text, false),
            ("readme", 2, FileKind::Text, false),
        ]
    );
    assert_eq!(stats.max_depth, 2);
}

#[test]
fn visitor_break_stops_the_walk() {
    let z = samples::zip(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
    let mut n = 0;
    let mut w = Walker::new(&limits(), None, &classify);
    let r = w
        .walk(&z, FileKind::Zip, &mut |_e: Entry<'_>| {
            n += 1;
            if n == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert!(r.is_break());
    assert_eq!(n, 2);
}

#[test]
fn depth_limit() {
    // nested_zip(4): the file (depth 0) and three zips inside, the innermost at depth 3.
    let z = samples::nested_zip(4);
    let ok = ArchiveLimits {
        max_depth: 3,
        ..limits()
    };
    let (r, seen, _) = walk(&z, FileKind::Zip, &ok);
    assert!(r.unwrap().is_continue());
    assert_eq!(seen.last().unwrap().0, "1.zip/2.zip/3.zip/leaf.txt");
    let tight = ArchiveLimits {
        max_depth: 2,
        ..limits()
    };
    let (limit, path, _) = limit_of(walk(&z, FileKind::Zip, &tight).0);
    assert_eq!(limit, Limit::Depth);
    assert_eq!(path, "1.zip/2.zip/3.zip");
    // gzip counts as a level: a tar.gz is two.
    let tgz = samples::tar_gz(&[("a", b"x")]);
    let flat = ArchiveLimits {
        max_depth: 0,
        ..limits()
    };
    assert_eq!(
        limit_of(walk(&tgz, FileKind::Gzip, &flat).0).0,
        Limit::Depth
    );
}

#[test]
fn entries_limit_counts_all_archives_and_is_checked_before_reading() {
    let names: Vec<String> = (0..11).map(|i| format!("f{i}.txt")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let l = ArchiveLimits {
        max_entries: 10,
        ..limits()
    };
    let z = samples::zip(&entries);
    let (r, seen, _) = walk(&z, FileKind::Zip, &l);
    assert_eq!(limit_of(r).0, Limit::Entries);
    assert!(
        seen.is_empty(),
        "refused from the central directory: {seen:?}"
    );
    // tar: counted one by one.
    let t = samples::tar(&entries);
    let (r, seen, _) = walk(&t, FileKind::Tar, &l);
    assert_eq!(limit_of(r).0, Limit::Entries);
    assert_eq!(seen.len(), 10);
    // Across archives: 6 + a zip of 5 inside = 12 entries.
    let inner = samples::zip(&entries[..5]);
    let mut outer: Vec<(&str, &[u8])> = entries[5..10].to_vec();
    outer.push(("inner.zip", &inner));
    let z = samples::zip(&outer);
    assert_eq!(limit_of(walk(&z, FileKind::Zip, &l).0).0, Limit::Entries);
    let (r, _, s) = walk(
        &z,
        FileKind::Zip,
        &ArchiveLimits {
            max_entries: 11,
            ..l
        },
    );
    assert!(r.unwrap().is_continue());
    assert_eq!(s.entries, 11);
}

#[test]
fn total_bytes_limit() {
    let a = samples::text(300_000);
    let z = samples::zip(&[("a.txt", &a), ("b.txt", &a), ("c.txt", &a)]);
    let l = ArchiveLimits {
        max_total_bytes: 700_000,
        ..limits()
    };
    let (r, seen, _) = walk(&z, FileKind::Zip, &l);
    let (limit, path, produced) = limit_of(r);
    assert_eq!((limit, path.as_str()), (Limit::TotalBytes, "c.txt"));
    assert_eq!(seen.len(), 2);
    assert!(
        produced <= 700_000 - 600_000 + 1,
        "read past the budget: {produced}"
    );
    let (r, _, s) = walk(
        &z,
        FileKind::Zip,
        &ArchiveLimits {
            max_total_bytes: 900_000,
            ..l
        },
    );
    assert!(r.unwrap().is_continue());
    assert_eq!(s.total_bytes, 900_000);
}

#[test]
fn ratio_limit_per_entry() {
    // 4 MiB of zeros deflate to about 4 KB: about 1000:1.
    let zeros = vec![0u8; 4 << 20];
    let z = samples::zip(&[("ok.txt", b"fine"), ("zeros.bin", &zeros)]);
    let (limit, path, produced) = limit_of(walk(&z, FileKind::Zip, &limits()).0);
    assert_eq!((limit, path.as_str()), (Limit::Ratio, "zeros.bin"));
    assert!(produced < 2 * RATIO_FLOOR, "refused late: {produced}");
    // Allowed with a ratio above what deflate reaches on zeros.
    let lax = ArchiveLimits {
        max_ratio: 2000,
        ..limits()
    };
    assert!(walk(&z, FileKind::Zip, &lax).0.unwrap().is_continue());
    // Below the floor a high ratio is not judged.
    let small = samples::zip(&[("spaces.txt", &vec![b' '; 500_000][..])]);
    assert!(walk(&small, FileKind::Zip, &limits())
        .0
        .unwrap()
        .is_continue());
    // gzip too.
    let gz = samples::gzip(&zeros);
    assert_eq!(
        limit_of(walk(&gz, FileKind::Gzip, &limits()).0).0,
        Limit::Ratio
    );
}

#[test]
fn one_gib_ratio_bomb_is_refused_after_a_few_mib() {
    let bomb = samples::zip_bomb_ratio(1 << 30);
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    // Even with ratio and total limits far beyond the bomb, the overall ratio stops it.
    for (l, want) in [
        (limits(), Limit::Ratio),
        (
            ArchiveLimits {
                max_ratio: 100_000,
                max_total_bytes: 8 << 20,
                ..limits()
            },
            Limit::TotalBytes,
        ),
    ] {
        let (r, seen, stats) = walk(&bomb, FileKind::Zip, &l);
        let (limit, path, produced) = limit_of(r);
        assert_eq!((limit, path.as_str()), (want, "zeros.bin"));
        assert!(seen.is_empty());
        // Bounded memory: what the walk decompressed before refusing (at most the budget
        // and one byte).
        assert!(
            produced <= (8 << 20) + 1,
            "decompressed {produced} bytes of a 1 GiB bomb"
        );
        assert_eq!(stats.total_bytes, 0, "nothing of the bomb was kept");
    }
}

#[test]
fn overlapping_bomb_hits_limits() {
    let bomb = samples::zip_bomb_overlapping(5000);
    // Default limits: more central entries than max_entries, refused before reading.
    let (r, seen, _) = walk(&bomb, FileKind::Zip, &limits());
    let (limit, _, _) = limit_of(r);
    assert_eq!(limit, Limit::Entries);
    assert!(seen.is_empty());
    // Few enough entries: the central directory's entries all point at one local header,
    // which the header check refuses before anything is decompressed.
    let bomb = samples::zip_bomb_overlapping(500);
    let (r, seen, stats) = walk(&bomb, FileKind::Zip, &limits());
    match r {
        Err(ArchiveError::Malformed { reason, .. }) => {
            assert!(reason.contains("header inconsistency"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(seen.is_empty());
    assert_eq!(stats.total_bytes, 0);
}

#[test]
fn encrypted_and_unsupported_methods_are_unreadable() {
    let e = samples::zip_encrypted("secret.txt");
    match walk(&e, FileKind::Zip, &limits()).0 {
        Err(ArchiveError::Unreadable { path, .. }) => assert_eq!(path, "secret.txt"),
        other => panic!("{other:?}"),
    }
    for method in [12u16, 14, 93, 95, 99] {
        let z = samples::zip_with_method("x.bin", method, b"whatever bytes");
        match walk(&z, FileKind::Zip, &limits()).0 {
            Err(ArchiveError::Unreadable { path, .. }) => assert_eq!(path, "x.bin"),
            other => panic!("method {method}: {other:?}"),
        }
    }
}

#[test]
fn garbage_is_malformed() {
    let mut z = samples::zip(&[("a.txt", &samples::text(10_000))]);
    // Corrupt the deflate data.
    for b in &mut z[40..200] {
        *b = 0xff;
    }
    assert!(matches!(
        walk(&z, FileKind::Zip, &limits()).0,
        Err(ArchiveError::Malformed { .. })
    ));
    let not_zip = b"PK\x03\x04 but nothing else".to_vec();
    assert!(matches!(
        walk(&not_zip, FileKind::Zip, &limits()).0,
        Err(ArchiveError::Malformed { .. })
    ));
    let mut gz = samples::gzip(&samples::text(10_000));
    let n = gz.len();
    gz.truncate(n / 2);
    assert!(matches!(
        walk(&gz, FileKind::Gzip, &limits()).0,
        Err(ArchiveError::Malformed { .. })
    ));
    let mut t = samples::tar(&[("a.txt", &samples::text(10_000))]);
    t.truncate(3000);
    assert!(matches!(
        walk(&t, FileKind::Tar, &limits()).0,
        Err(ArchiveError::Malformed { .. })
    ));
}

#[test]
fn multi_member_gzip_is_read_to_the_end() {
    let mut gz = samples::gzip(b"first member ");
    gz.extend_from_slice(&samples::gzip(b"second member"));
    let mut got = Vec::new();
    let mut w = Walker::new(&limits(), None, &classify);
    let r = w.walk(&gz, FileKind::Gzip, &mut |e: Entry<'_>| {
        got.extend_from_slice(e.bytes);
        ControlFlow::Continue(())
    });
    assert!(r.unwrap().is_continue());
    assert_eq!(got, b"first member second member");
}

#[test]
fn deadline_is_checked_inside_a_long_decompression() {
    let bomb = samples::zip_bomb_ratio(512 << 20);
    let lax = ArchiveLimits {
        max_ratio: 100_000,
        max_total_bytes: 1 << 30,
        ..limits()
    };
    let mut w = Walker::new(
        &lax,
        Some(Instant::now() + Duration::from_millis(5)),
        &classify,
    );
    let r = w.walk(&bomb, FileKind::Zip, &mut |_e: Entry<'_>| {
        ControlFlow::Continue(())
    });
    match r {
        Err(ArchiveError::Deadline { path }) => assert_eq!(path, "zeros.bin"),
        other => panic!("{other:?}"),
    }
    // Already passed: nothing is read.
    let z = samples::zip(&[("a", b"1")]);
    let mut w = Walker::new(&lax, Some(Instant::now()), &classify);
    assert!(matches!(
        w.walk(&z, FileKind::Zip, &mut |_e: Entry<'_>| {
            ControlFlow::Continue(())
        }),
        Err(ArchiveError::Deadline { .. })
    ));
}

#[test]
fn parts_of_a_document() {
    let doc = samples::zip(&[
        ("[Content_Types].xml", b"<Types/>"),
        ("word/document.xml", &samples::text(20_000)),
        ("word/embeddings/oleObject1.bin", &samples::pe_exe()),
    ]);
    let mut got = Vec::new();
    let mut w = Walker::new(&limits(), None, &classify);
    let r = w
        .parts(
            &doc,
            FileKind::Docx,
            64,
            &mut |name: &str, prefix: &[u8]| {
                got.push((name.to_owned(), prefix.len(), classify(prefix)));
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert!(r.is_continue());
    assert_eq!(
        got,
        vec![
            ("[Content_Types].xml".to_owned(), 8, FileKind::Text),
            ("word/document.xml".to_owned(), 64, FileKind::Text),
            (
                "word/embeddings/oleObject1.bin".to_owned(),
                64,
                FileKind::Pe
            ),
        ]
    );
}

/// Text that a container carries besides its entries' contents reaches the visitor: zip
/// comments and directory names, tar link targets, directory names, owners, pax records,
/// header padding and bytes after the end, gzip member names and comments — and none of
/// the entries' contents or the numeric header fields.
#[test]
fn container_text_outside_the_entries() {
    // zip: an archive comment, a directory, the data of a directory entry
    let mut z = samples::zip(&[("GEHEIM-dir/", b""), ("a.txt", b"nur Inhalt")]);
    let comment = b"Kommentar GEHEIM-zip";
    let at = z.len() - 2;
    z[at..].copy_from_slice(&(comment.len() as u16).to_le_bytes());
    z.extend_from_slice(comment);
    let t = text_of(&z, FileKind::Zip);
    assert!(t.contains("Kommentar GEHEIM-zip"), "{t}");
    assert!(t.lines().any(|l| l == "GEHEIM-dir/"), "{t}");
    assert!(
        !t.contains("nur Inhalt"),
        "entry content is no container text: {t}"
    );
    // a plain zip has only its names
    let plain = text_of(&samples::zip(&[("a.txt", b"nur Inhalt")]), FileKind::Zip);
    assert!(plain.lines().all(|l| l.contains("a.txt")), "{plain}");

    // tar: link target, directory, owner, pax record, header padding, bytes after the end
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mtime(1_712_345_678);
    b.append_link(&mut h, "link", "ziel/GEHEIM-link").unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    b.append_data(&mut h, "GEHEIM-tardir/", &[][..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(10);
    h.set_username("GEHEIM-owner").unwrap();
    h.set_mtime(1_712_345_678);
    // ustar header padding (bytes 500..512) carrying text
    h.as_mut_bytes()[500..510].copy_from_slice(b"GEHEIMpad!");
    h.set_cksum();
    b.append_data(&mut h, "a.txt", &b"nur Inhalt"[..]).unwrap();
    b.append_pax_extensions([("comment", &b"GEHEIM-pax"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    b.append_data(&mut h, "b.txt", &b"frei"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let text = text_of(&t, FileKind::Tar);
    for marker in [
        "ziel/GEHEIM-link",
        "GEHEIM-tardir/",
        "GEHEIM-owner",
        "GEHEIMpad!",
        "comment=GEHEIM-pax",
    ] {
        assert!(text.contains(marker), "{marker} missing: {text}");
    }
    assert!(
        !text.contains("nur Inhalt") && !text.contains("frei"),
        "{text}"
    );
    // numeric fields (mode, size, mtime, checksum, magic) are not text
    let mtime = format!("{:011o}", 1_712_345_678);
    assert!(!text.contains(&mtime) && !text.contains("ustar"), "{text}");

    // Bytes after the end of the archive, or in the padding after an entry's data, are
    // refused: tar writes zeros there.
    let mut after = t.clone();
    after.extend_from_slice(b"\0\0Anhang GEHEIM-after\0");
    let mut padding = t.clone();
    let a = padding
        .windows(10)
        .position(|w| w == b"nur Inhalt")
        .unwrap();
    padding[a + 10..a + 16].copy_from_slice(b"GEHEIM");
    for (what, bad) in [("after the end", after), ("in the padding", padding)] {
        match walk(&bad, FileKind::Tar, &limits()).0 {
            Err(ArchiveError::Malformed { reason, .. }) => {
                assert!(reason.contains("bytes"), "{what}: {reason}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }

    // gzip: name and comment of every member
    let member = |name: &str, comment: &str, data: &[u8]| {
        let mut e = flate2::GzBuilder::new()
            .filename(name)
            .comment(comment)
            .write(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    };
    let mut gz = member("GEHEIM-name.txt", "erstes", b"eins ");
    gz.extend_from_slice(&member("b.txt", "zweites GEHEIM-member", b"zwei"));
    let text = text_of(&gz, FileKind::Gzip);
    for marker in ["GEHEIM-name.txt", "erstes", "zweites GEHEIM-member"] {
        assert!(text.contains(marker), "{marker} missing: {text}");
    }
    // both members are the content, as gunzip reads them
    let mut content = Vec::new();
    let mut w = Walker::new(&limits(), None, &classify);
    let r = w.walk(&gz, FileKind::Gzip, &mut |e: Entry<'_>| {
        if !e.meta {
            content = e.bytes.to_vec();
        }
        ControlFlow::Continue(())
    });
    assert!(r.unwrap().is_continue());
    assert_eq!(content, b"eins zwei");
    // garbage after the last member is malformed, as before
    let mut bad = gz.clone();
    bad.extend_from_slice(b"GEHEIM");
    assert!(matches!(
        walk(&bad, FileKind::Gzip, &limits()).0,
        Err(ArchiveError::Malformed { .. })
    ));

    // nested: the text of a tar inside a gzip inside a zip comes with the tar's path
    let inner = samples::gzip(&t);
    let z = samples::zip(&[("x.tar.gz", &inner)]);
    let all = texts(&z, FileKind::Zip);
    assert!(
        all.iter()
            .any(|(p, d, text)| p == "x.tar.gz" && *d == 2 && text.contains("GEHEIM-owner")),
        "{all:?}"
    );
}

/// What a reader could extract that the walk would otherwise not judge is content or refused:
/// data of a zip directory entry, bytes after an entry's compressed stream, duplicate names;
/// tar entries of unknown type or links with data, sparse pax maps, pax sizes.
#[test]
fn entries_a_reader_could_extract_are_judged_or_refused() {
    // a "directory" with data: its data is content
    let z = samples::zip_entry_with_junk("GEHEIM/", b"verstecktes Dokument", b"");
    let (r, seen, _) = walk(&z, FileKind::Zip, &limits());
    assert!(r.unwrap().is_continue());
    assert_eq!(seen, vec![("GEHEIM/".to_owned(), 1, FileKind::Text, false)]);
    // bytes after the end of the compressed stream inside the entry
    let z = samples::zip_entry_with_junk("a.txt", b"harmlos", b"GEHEIM und mehr");
    match walk(&z, FileKind::Zip, &limits()).0 {
        Err(ArchiveError::Malformed { path, reason, .. }) => {
            assert_eq!(path, "a.txt");
            assert!(reason.contains("after the end"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(walk(
        &samples::zip_entry_with_junk("a.txt", b"harmlos", b""),
        FileKind::Zip,
        &limits()
    )
    .0
    .unwrap()
    .is_continue());
    // two entries of one name: a reader may extract either
    let z = samples::zip(&[("a.txt", b"eins"), ("a.txt", b"zwei")]);
    assert!(matches!(
        walk(&z, FileKind::Zip, &limits()).0,
        Err(ArchiveError::Malformed { .. })
    ));

    // tar: an entry of a type tar does not know, a symlink carrying data
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::new(b'Z'));
    h.set_size(10);
    b.append_data(&mut h, "fremd", &b"GEHEIM-typ"[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(11);
    b.append_data(&mut h, "link", &b"GEHEIM-link"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let (r, seen, _) = walk(&t, FileKind::Tar, &limits());
    assert!(r.unwrap().is_continue());
    let paths: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(paths, ["fremd", "link"]);
    // pax records that change what is extracted
    for (key, value, sparse) in [
        ("GNU.sparse.map", "0,10", true),
        ("GNU.sparse.size", "4096", true),
        ("size", "10", false),
    ] {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([(key, value.as_bytes())]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(10);
        b.append_data(&mut h, "a.txt", &b"0123456789"[..]).unwrap();
        let t = b.into_inner().unwrap();
        match (walk(&t, FileKind::Tar, &limits()).0, sparse) {
            (Err(ArchiveError::Unreadable { reason, .. }), true) => {
                assert!(reason.contains("sparse"), "{reason}")
            }
            (Err(ArchiveError::Malformed { reason, .. }), false) => {
                assert!(reason.contains("size"), "{reason}")
            }
            (other, _) => panic!("{key}: {other:?}"),
        }
    }
}

/// A gzip of many empty members counts each one after the first as an entry.
#[test]
fn gzip_members_count_as_entries() {
    let empty = samples::gzip(b"");
    let mut many = samples::gzip(b"x");
    for _ in 0..50 {
        many.extend_from_slice(&empty);
    }
    let tight = ArchiveLimits {
        max_entries: 10,
        ..limits()
    };
    assert_eq!(
        limit_of(walk(&many, FileKind::Gzip, &tight).0).0,
        Limit::Entries
    );
    let (r, _, stats) = walk(&many, FileKind::Gzip, &limits());
    assert!(r.unwrap().is_continue());
    assert_eq!(stats.entries, 50);
}

/// Every prefix and many single-byte corruptions of archives with container text (comments,
/// links, pax records, several gzip members, nesting): the walk ends with entries or a typed
/// error, never a panic, and its container text is UTF-8.
#[test]
fn truncated_and_corrupted_archives_never_panic() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "link", "ziel").unwrap();
    b.append_pax_extensions([("comment", &b"Notiz"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    b.append_data(&mut h, "a.txt", &b"Hallo"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let mut z = samples::zip(&[("d/", b""), ("a.txt", b"alpha"), ("x.tar", &t)]);
    let at = z.len() - 2;
    z[at..].copy_from_slice(&7u16.to_le_bytes());
    z.extend_from_slice(b"comment");
    let mut gz = samples::gzip(b"eins");
    gz.extend_from_slice(&samples::gzip(b"zwei"));
    let samples: Vec<(FileKind, Vec<u8>)> = vec![
        (FileKind::Zip, z),
        (FileKind::Tar, t.clone()),
        (FileKind::Gzip, samples::gzip(&t)),
        (FileKind::Gzip, gz),
        (
            FileKind::Zip,
            samples::zip_entry_with_junk("a.txt", b"alpha", b""),
        ),
    ];
    for (kind, full) in samples {
        let step = (full.len() / 200).max(1);
        let mut variants: Vec<Vec<u8>> = (0..full.len())
            .step_by(step)
            .map(|cut| full[..cut].to_vec())
            .collect();
        for at in (0..full.len()).step_by(step) {
            let mut v = full.clone();
            v[at] ^= 0xa5;
            variants.push(v);
        }
        for v in variants {
            let mut w = Walker::new(&limits(), None, &classify);
            let _ = w.walk(&v, kind, &mut |e: Entry<'_>| {
                if e.meta {
                    assert!(std::str::from_utf8(e.bytes).is_ok());
                }
                ControlFlow::Continue(())
            });
        }
    }
}
