use super::*;

/// The shipped rule files (`policies/yara/`).
fn shipped() -> YaraRules {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    YaraRules::load_dir(&dir).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn rendered(d: &[YaraDiagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn names(hits: &[YaraHit]) -> Vec<&str> {
    hits.iter().map(|h| h.rule.as_str()).collect()
}

const T: Duration = Duration::from_secs(5);

#[test]
fn diagnostics_name_file_line_col_code_and_message() {
    let broken_syntax = "rule ok { condition: filesize > 0 }\n\nrule broken {\n  strings:\n    $a = \"x\"\n  condition\n    $a\n}\n";
    let unknown = "import \"nosuchmodule\"\nrule a { condition: filesize > 0 }\n";
    let unknown_ident = "rule b {\n  condition:\n    filesize > 0 and nothing_here\n}\n";
    let empty = "// only a comment\n";
    let err = YaraRules::from_sources(&[
        ("a.yar", broken_syntax),
        ("b.yar", unknown),
        ("c.yar", unknown_ident),
        ("d.yar", empty),
        ("e.yar", "rule fine { condition: filesize > 0 }"),
        ("f.yar", "/* rule in a comment */ import \"pe\"\n"),
    ])
    .unwrap_err();
    let out = rendered(&err);
    let golden = "\
a.yar:7:5: error[YAR001]: syntax error: expecting `:`, found `$a` (yara-x E001)
b.yar:1:1: error[YAR002]: unknown module `nosuchmodule`: module `nosuchmodule` not found (yara-x E010)
c.yar:3:22: error[YAR002]: unknown identifier `nothing_here`: this identifier has not been declared (yara-x E009)
d.yar: error[YAR003]: rule file has no rules; remove the file instead
f.yar: error[YAR003]: rule file has no rules; remove the file instead";
    assert_eq!(out, golden, "\n{out}");
}

#[test]
fn line_col_counts_characters_and_lines() {
    let t = "ab\ncdé\nf";
    assert_eq!(line_col(t, 0), (1, 1));
    assert_eq!(line_col(t, 3), (2, 1));
    // After the two-byte `é`: column 4 in characters.
    assert_eq!(line_col(t, 7), (2, 4));
    assert_eq!(line_col(t, 8), (3, 1));
    // Inside a character: its start.
    assert_eq!(line_col(t, 6), (2, 3));
}

#[test]
fn warnings_are_kept_and_do_not_fail() {
    // A pattern yara-x considers slow, and an unused-looking construct.
    let src = "rule slow {\n  strings:\n    $a = /a.*b/\n  condition:\n    $a\n}\n";
    let r =
        YaraRules::from_sources(&[("w.yar", src)]).unwrap_or_else(|d| panic!("{}", rendered(&d)));
    assert_eq!(r.rule_count(), 1);
    for w in r.warnings() {
        assert_eq!(w.severity, YaraSeverity::Warning);
        assert!(w.to_string().starts_with("w.yar:"), "{w}");
        assert!(w.to_string().contains("warning[YAR010]"), "{w}");
    }
}

#[test]
fn namespaces_are_file_stems_and_rules_are_named_namespace_rule() {
    let r = YaraRules::from_sources(&[
        ("one.yar", "rule same { strings: $a = \"needle-one\" condition: $a }"),
        ("two.yar", "rule same : t1 t2 { meta: description = \"d\" n = 3 strings: $a = \"needle\" condition: $a }"),
    ])
    .unwrap_or_else(|d| panic!("{}", rendered(&d)));
    assert_eq!(r.rule_names(), &["one.same", "two.same"]);
    let hits = r.scan(b"xx needle-one yy", T).unwrap();
    assert_eq!(names(&hits), vec!["one.same", "two.same"]);
    assert_eq!(hits[1].tags, vec!["t1", "t2"]);
    assert_eq!(
        hits[1].meta,
        vec![("description".into(), "d".into()), ("n".into(), "3".into())]
    );
    assert!(r.scan(b"needl", T).unwrap().is_empty());
}

#[test]
fn timeouts_are_whole_seconds_rounded_up() {
    assert_eq!(YaraRules::timeout_secs(Duration::ZERO), 1);
    assert_eq!(YaraRules::timeout_secs(Duration::from_millis(1)), 1);
    assert_eq!(YaraRules::timeout_secs(Duration::from_millis(1000)), 1);
    assert_eq!(YaraRules::timeout_secs(Duration::from_millis(1001)), 2);
    assert_eq!(YaraRules::timeout_secs(Duration::from_millis(2500)), 3);
}

#[test]
fn a_scan_that_runs_too_long_times_out() {
    // A condition that loops over every byte many times: far longer than a second on a few
    // megabytes.
    let src = "rule slow { condition: for all i in (0..filesize) : ( for all j in (0..filesize) : ( uint8(i) != 0xFF or uint8(j) != 0xFE ) ) }";
    let r =
        YaraRules::from_sources(&[("s.yar", src)]).unwrap_or_else(|d| panic!("{}", rendered(&d)));
    let data = vec![0u8; 4 << 20];
    match r.scan(&data, Duration::from_millis(10)) {
        Err(YaraScanError::Timeout) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn missing_directory_is_no_rules_and_files_are_read_from_the_yara_subdir() {
    let dir = tempfile::tempdir().unwrap();
    let r = YaraRules::load_dir(dir.path()).unwrap();
    assert_eq!(r.rule_count(), 0);
    assert!(r.scan(b"anything", T).unwrap().is_empty());
    let y = dir.path().join("yara");
    std::fs::create_dir(&y).unwrap();
    std::fs::write(
        y.join("a.yar"),
        "rule r { strings: $a = \"abc\" condition: $a }",
    )
    .unwrap();
    std::fs::write(y.join("notes.txt"), "not a rule file").unwrap();
    let snap = YaraRules::read_dir(dir.path()).unwrap();
    let (r, m) = YaraRules::from_snapshot(dir.path(), snap.as_ref()).unwrap();
    assert_eq!(r.rule_names(), &["a.r"]);
    let files: Vec<_> = m
        .files()
        .map(|(n, e)| (n.to_string(), e.ids.clone()))
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "yara/a.yar");
    assert!(files[0].1.contains("yara:a.r"));
    // An empty file fails the whole directory, with its path.
    std::fs::write(y.join("b.yar"), "").unwrap();
    let err = YaraRules::load_dir(dir.path()).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].code, "YAR003");
    assert!(err[0].file.ends_with("yara/b.yar"), "{}", err[0]);
}

#[test]
fn text_rules_carry_their_scope_and_bad_scopes_are_diagnosed() {
    let ok = "rule t : text {\n meta:\n  fields = \"body, formatted_body\"\n  directions = \"outbound\"\n  event_types = \"m.room.message\"\n  action = \"hold\"\n strings: $a = \"geheim\"\n condition: $a\n}\nrule files_only { strings: $a = \"geheim\" condition: $a }\n";
    let r =
        YaraRules::from_sources(&[("x.yar", ok)]).unwrap_or_else(|d| panic!("{}", rendered(&d)));
    let t = r.text_rules();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].name, "x.t");
    assert_eq!(t[0].fields, vec![Field::Body, Field::FormattedBody]);
    assert_eq!(t[0].directions, vec![Direction::Outbound]);
    assert_eq!(t[0].event_types, vec!["m.room.message"]);
    assert_eq!(t[0].action, Action::Hold);
    // Only the text rule answers text scans.
    assert_eq!(
        r.match_texts(&[b"ist geheim", b"offen"]).unwrap(),
        vec![vec![0], vec![]]
    );
    let bad = "rule ok { condition: true }\n\nrule t : text {\n meta:\n  fields = \"body,nosuchfield\"\n  action = \"allow\"\n condition: true\n}\n";
    let mut err = YaraRules::from_sources(&[("y.yar", bad)]).unwrap_err();
    err.retain(|d| d.severity == YaraSeverity::Error);
    assert_eq!(
        rendered(&err),
        "y.yar:3:1: error[YAR005]: rule `y.t`: unknown field `nosuchfield` in meta `fields`\n\
         y.yar:3:1: error[YAR005]: rule `y.t`: invalid action `allow` in meta `action` (expected tag, redact, hold, reject)"
    );
}

/// The EICAR test string, put together at run time from two halves (no file of the
/// repository holds it whole).
fn eicar() -> Vec<u8> {
    let a = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR";
    let b = "-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    format!("{a}{b}").into_bytes()
}

/// A minimal PE: DOS header with e_lfanew, a PE signature, a COFF header and an optional
/// header of a 32-bit image.
fn minimal_pe() -> Vec<u8> {
    let mut b = vec![0u8; 0x200];
    b[0..4].copy_from_slice(b"MZ\x90\x00");
    b[0x3C..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    b[0x80..0x84].copy_from_slice(b"PE\0\0");
    b[0x84..0x86].copy_from_slice(&0x14Cu16.to_le_bytes()); // i386
    b[0x86..0x88].copy_from_slice(&1u16.to_le_bytes()); // one section
    b[0x94..0x96].copy_from_slice(&0xE0u16.to_le_bytes()); // optional header size
    b[0x96..0x98].copy_from_slice(&0x0102u16.to_le_bytes()); // executable, 32-bit
    b[0x98..0x9A].copy_from_slice(&0x10Bu16.to_le_bytes()); // PE32 magic
    b
}

fn minimal_elf() -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[0..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little endian
    b[6] = 1; // version
    b[16] = 2; // ET_EXEC
    b[18] = 0x3E; // x86-64
    b
}

/// A zip with one stored entry (local header, central directory, end record).
fn zip_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut z = Vec::new();
    z.extend_from_slice(b"PK\x03\x04");
    z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    z.extend_from_slice(&0u32.to_le_bytes()); // crc (not checked by the rules)
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(data);
    let cd = z.len();
    z.extend_from_slice(b"PK\x01\x02");
    z.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0; 12]);
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    let cd_len = z.len() - cd;
    z.extend_from_slice(b"PK\x05\x06");
    z.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    z.extend_from_slice(&(cd_len as u32).to_le_bytes());
    z.extend_from_slice(&(cd as u32).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

/// The start of an OLE compound file with the given UTF-16 directory names and text.
fn ole_with(names: &[&str], text: &str) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[0..8].copy_from_slice(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    for n in names {
        let mut e = vec![0u8; 128];
        for (i, u) in n.encode_utf16().enumerate() {
            e[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
        b.extend_from_slice(&e);
    }
    b.extend_from_slice(text.as_bytes());
    b
}

#[test]
fn shipped_rules_find_their_samples() {
    let r = shipped();
    let hit = |data: &[u8]| -> Vec<String> {
        r.scan(data, T)
            .unwrap()
            .into_iter()
            .map(|h| h.rule)
            .collect()
    };
    assert_eq!(hit(&eicar()), vec!["eicar.eicar_test_file"]);
    // In an archive entry (stored) too.
    assert!(hit(&zip_with("readme.com", &eicar())).contains(&"eicar.eicar_test_file".into()));
    // Half of it is nothing.
    assert!(hit(&eicar()[..40]).is_empty());

    let pe = minimal_pe();
    assert!(
        hit(&pe).contains(&"executables.pe_executable".into()),
        "{:?}",
        hit(&pe)
    );
    // The same PE inside a document: only the embedded rule.
    let mut doc = b"%PDF-1.7\n1 0 obj << /Type /EmbeddedFile >> stream\n".to_vec();
    doc.extend_from_slice(&pe);
    doc.extend_from_slice(b"\nendstream endobj\n%%EOF\n");
    assert_eq!(hit(&doc), vec!["executables.pe_embedded"]);
    // `MZ` without a PE header is nothing.
    let mut fake = pe.clone();
    fake[0x80..0x84].copy_from_slice(b"XX\0\0");
    let mut in_doc = b"%PDF-1.7\n".to_vec();
    in_doc.extend_from_slice(&fake);
    assert!(hit(&in_doc).is_empty(), "{:?}", hit(&in_doc));

    let elf = minimal_elf();
    assert_eq!(hit(&elf), vec!["executables.elf_executable"]);
    let mut elf_in = b"some text before\n".to_vec();
    elf_in.extend_from_slice(&elf);
    assert_eq!(hit(&elf_in), vec!["executables.elf_embedded"]);
    let mut macho = vec![0u8; 64];
    macho[0..4].copy_from_slice(&0xFEEDFACFu32.to_le_bytes());
    assert_eq!(hit(&macho), vec!["executables.macho_executable"]);
    // A Java class file shares the universal-binary magic.
    let mut class = vec![0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 52];
    class.extend_from_slice(&[0; 32]);
    assert!(hit(&class).is_empty());

    // Macro-enabled OOXML: a zip naming word/vbaProject.bin.
    let docm = zip_with("word/vbaProject.bin", b"\xD0\xCF\x11\xE0 not really");
    assert_eq!(hit(&docm), vec!["office_macros.ooxml_vba_project"]);
    // The VBA project itself (an OLE file) with an auto-exec macro.
    let vba = ole_with(
        &["_VBA_PROJECT", "dir"],
        "Attribute VB_Name = \"ThisDocument\"\nSub AutoOpen()\nEnd Sub\n",
    );
    let mut got = hit(&vba);
    got.sort();
    assert_eq!(
        got,
        vec!["office_macros.ole_vba_project", "scripts.vba_auto_exec"]
    );
    // An OLE file without a VBA project (a legacy .doc) is nothing.
    assert!(hit(&ole_with(&["WordDocument", "1Table"], "Sub AutoOpen")).is_empty());

    assert_eq!(
        hit(b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"),
        vec!["scripts.html_script_element"]
    );
    assert_eq!(
        hit(b"cmd /c powershell.exe -NoP -W Hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA"),
        vec!["scripts.powershell_encoded_command"]
    );
    assert_eq!(
        hit(b"%PDF-1.4\n1 0 obj << /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >>\n"),
        vec!["documents.pdf_javascript"]
    );
    assert_eq!(
        hit(b"{\\rtf1{\\object\\objemb{\\*\\objdata 0105000002000000}}}"),
        vec!["documents.rtf_embedded_object"]
    );
}

#[test]
fn shipped_rules_do_not_fire_on_ordinary_files() {
    let r = shipped();
    let samples: Vec<(&str, Vec<u8>)> = vec![
        ("png", png()),
        (
            "pdf",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec(),
        ),
        (
            "text",
            "Sehr geehrte Damen und Herren,\nanbei das Protokoll (MZ-Nummer 4711, PE-Folie, ELF Uhr).\nMit freundlichen Grüßen\n"
                .as_bytes()
                .to_vec(),
        ),
        (
            "docx",
            zip_with("word/document.xml", b"<w:document><w:body><w:p><w:r><w:t>Hallo</w:t></w:r></w:p></w:body></w:document>"),
        ),
        ("json", br#"{"msgtype":"m.text","body":"Auto open the document please"}"#.to_vec()),
        ("zeros", vec![0u8; 4096]),
    ];
    for (name, data) in samples {
        let hits = r.scan(&data, T).unwrap();
        assert!(hits.is_empty(), "{name}: {:?}", names(&hits));
    }
}

/// A 1×1 PNG.
fn png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(&[0, 0, 0, 13]);
    b.extend_from_slice(b"IHDR");
    b.extend_from_slice(&[
        0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
    ]);
    b.extend_from_slice(&[0, 0, 0, 13]);
    b.extend_from_slice(b"IDAT");
    b.extend_from_slice(&[
        0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4,
    ]);
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(b"IEND");
    b.extend_from_slice(&[0xae, 0x42, 0x60, 0x82]);
    b
}

/// Not an assertion on speed: prints what scanning costs with a new scanner per call and
/// with the thread's cached one (`cargo test --lib media::yara::tests::yara_scanner_cost --
/// --nocapture`).
#[test]
fn yara_scanner_cost() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/yara");
    let mut sources: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yar"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    sources.push((
        "t.yar".into(),
        "rule w : text { strings: $a = \"Nordlicht\" condition: $a }".into(),
    ));
    let refs: Vec<(&str, &str)> = sources
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let t0 = std::time::Instant::now();
    let r = YaraRules::from_sources(&refs).unwrap_or_else(|d| panic!("{}", rendered(&d)));
    let compile = t0.elapsed();
    let n = 200u32;
    let small = b"a short chat message of about sixty bytes, nothing in it....";
    let t0 = std::time::Instant::now();
    for _ in 0..20 {
        let mut s = yara_x::Scanner::new(&r.rules);
        let _ = s.scan(small).unwrap().matching_rules().count();
    }
    let fresh = t0.elapsed() / 20;
    let _ = r.scan(small, T).unwrap();
    let t0 = std::time::Instant::now();
    for _ in 0..n {
        let _ = r.scan(small, T).unwrap();
    }
    let cached = t0.elapsed() / n;
    let texts: Vec<&[u8]> = (0..n).map(|_| &small[..]).collect();
    let t0 = std::time::Instant::now();
    assert_eq!(r.match_texts(&texts).unwrap().len(), texts.len());
    let per_text = t0.elapsed() / n;
    let big = vec![b'a'; 1 << 20];
    let t0 = std::time::Instant::now();
    let _ = r.scan(&big, T).unwrap();
    println!(
        "yara: {} rules compiled in {compile:?}; 60 B with a new scanner: {fresh:?}; with the thread's scanner: {cached:?}; text rules per text: {per_text:?}; 1 MiB: {:?}",
        r.rule_count(),
        t0.elapsed()
    );
}

#[test]
fn embedded_tests_run_and_bad_test_lines_are_diagnosed() {
    let src = "rule r { strings: $a = \"ab\\\"c\" condition: $a }\n// test: r matches \"x ab\\\"c \\x00\"\n// test: r ignores \"abc\"\n// test: r matches \"abc\"\n";
    let r =
        YaraRules::from_sources(&[("t.yar", src)]).unwrap_or_else(|d| panic!("{}", rendered(&d)));
    let res = r.run_tests();
    assert_eq!(
        res.iter()
            .map(|r| (r.test.line, r.passed()))
            .collect::<Vec<_>>(),
        vec![(2, true), (3, true), (4, false)]
    );
    assert_eq!(res[0].test.data, b"x ab\"c \0");
    assert_eq!(res[0].test.rule, "t.r");
    let bad = "rule r { condition: filesize > 0 }\n  // test: r maybe \"x\"\n// test: nope matches \"x\"\n";
    let err = YaraRules::from_sources(&[("b.yar", bad)]).unwrap_err();
    assert_eq!(
        rendered(&err),
        "b.yar:2:3: error[YAR007]: invalid test line (expected `// test: <rule> matches|ignores \"<data>\"`)\n\
         b.yar:3:1: error[YAR007]: test names unknown rule `b.nope`"
    );
}

#[test]
fn the_shipped_embedded_tests_pass() {
    let r = shipped();
    let res = r.run_tests();
    assert!(res.len() >= 10, "{}", res.len());
    for t in &res {
        assert!(t.passed(), "{t:?}");
    }
}
