use std::io::Write;

use super::*;
use crate::media::samples::docs;

fn padded(head: &[u8], len: usize) -> Vec<u8> {
    let mut v = head.to_vec();
    v.resize(len.max(head.len()), 0x41);
    v
}

fn pe() -> Vec<u8> {
    let mut v = vec![0u8; 0x100];
    v[0] = b'M';
    v[1] = b'Z';
    v[0x3c] = 0x80;
    v[0x80..0x84].copy_from_slice(b"PE\0\0");
    v
}

/// `n` MPEG-1 Layer III frames of 128 kbit/s at 44.1 kHz (417 bytes each, no padding).
fn mp3_frames(n: usize) -> Vec<u8> {
    let mut frame = vec![0u8; 417];
    frame[..4].copy_from_slice(&[0xff, 0xfb, 0x90, 0x64]);
    frame.repeat(n)
}

#[test]
fn one_mpeg_header_alone_is_not_mp3() {
    // a header followed by other bytes where the next frame should start
    let mut v = mp3_frames(2);
    v[417] = 0x00;
    assert_eq!(sniff(&v), FileKind::Unknown);
    assert_eq!(sniff(&mp3_frames(1)[..100]), FileKind::Unknown);
    // a reserved bit rate is no header
    let mut v = mp3_frames(2);
    v[2] = 0xf0;
    assert_eq!(sniff(&v), FileKind::Unknown);
}

#[test]
fn generated_samples_sniff_as_their_kind() {
    let cases: Vec<(Vec<u8>, FileKind)> = vec![
        (docs::png(3, 2, None), FileKind::Png),
        (docs::png(1, 1, Some("hello")), FileKind::Png),
        (docs::jpeg(), FileKind::Jpeg),
        (docs::jpeg_with_comment("x"), FileKind::Jpeg),
        (docs::jpeg_with_exif("x"), FileKind::Jpeg),
        (docs::gif_with_comment("x"), FileKind::Gif),
        (docs::webp_with_metadata(None, Some("x")), FileKind::Webp),
        (docs::pdf("x"), FileKind::Pdf),
        (docs::docx("x"), FileKind::Docx),
        (docs::xlsx(&["x"]), FileKind::Xlsx),
        (docs::pptx("x"), FileKind::Pptx),
        (docs::docm("x"), FileKind::OfficeMacro),
        (docs::odt("x"), FileKind::Odt),
        (docs::ods(&["x"]), FileKind::Ods),
        (
            docs::odf_with("application/vnd.oasis.opendocument.presentation", "", &[]),
            FileKind::Odp,
        ),
        (docs::zip_parts(&[("a.txt", b"hello")]), FileKind::Zip),
    ];
    for (bytes, kind) in cases {
        assert_eq!(sniff(&bytes), kind, "expected {kind}");
    }
}

#[test]
fn crafted_headers_sniff_as_their_kind() {
    let mut wav = b"RIFF\x24\0\0\0WAVEfmt ".to_vec();
    wav.resize(44, 0);
    let mut bmp = b"BM".to_vec();
    bmp.resize(14, 0);
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.resize(60, 0);
    let cases: Vec<(Vec<u8>, FileKind)> = vec![
        (pe(), FileKind::Pe),
        (b"MZ".to_vec(), FileKind::Pe),
        (padded(b"\x7fELF\x02\x01\x01", 64), FileKind::Elf),
        (padded(&[0xcf, 0xfa, 0xed, 0xfe], 64), FileKind::MachO),
        (padded(&[0xfe, 0xed, 0xfa, 0xce], 64), FileKind::MachO),
        (
            padded(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2], 64),
            FileKind::MachO,
        ),
        (b"#!/bin/sh\nrm -rf /\n".to_vec(), FileKind::Script),
        (padded(b"II*\0\x08\0\0\0", 32), FileKind::Tiff),
        (padded(b"MM\0*\0\0\0\x08", 32), FileKind::Tiff),
        (bmp, FileKind::Bmp),
        (
            padded(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1], 512),
            FileKind::Ole,
        ),
        (
            b"PK\x05\x06".iter().copied().chain([0u8; 18]).collect(),
            FileKind::Zip,
        ),
        (
            padded(&[0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], 32),
            FileKind::OtherArchive,
        ),
        (padded(b"Rar!\x1a\x07\x01\x00", 32), FileKind::OtherArchive),
        (padded(b"BZh91AY&SY", 32), FileKind::OtherArchive),
        (
            padded(&[0xfd, b'7', b'z', b'X', b'Z', 0], 32),
            FileKind::OtherArchive,
        ),
        (
            padded(&[0x28, 0xb5, 0x2f, 0xfd], 32),
            FileKind::OtherArchive,
        ),
        (padded(b"MSCF\0\0\0\0", 32), FileKind::OtherArchive),
        (padded(b"\0\0\0\x20ftypisom\0\0\x02\0", 32), FileKind::Mp4),
        (padded(b"\0\0\0\x18ftypheic", 32), FileKind::Unknown),
        (padded(&[0x1a, 0x45, 0xdf, 0xa3], 32), FileKind::Webm),
        (padded(b"OggS\0\x02", 32), FileKind::Ogg),
        (padded(b"ID3\x04\0\0\0\0\0\0", 32), FileKind::Mp3),
        (mp3_frames(3), FileKind::Mp3),
        (mp3_frames(1), FileKind::Mp3),
        (wav, FileKind::Wav),
        (padded(b"\x1f\x8b\x08\0", 32), FileKind::Gzip),
        (vec![0u8, 1, 2, 3, 0xfe, 0xff], FileKind::Unknown),
    ];
    for (bytes, kind) in cases {
        assert_eq!(
            sniff(&bytes),
            kind,
            "expected {kind} for {:02x?}",
            &bytes[..8.min(bytes.len())]
        );
    }
}

#[test]
fn tar_gzip_from_real_writers() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(5);
    header.set_cksum();
    builder
        .append_data(&mut header, "a.txt", &b"hello"[..])
        .unwrap();
    let ustar = builder.into_inner().unwrap();
    assert_eq!(sniff(&ustar), FileKind::Tar);

    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_old();
    header.set_size(5);
    header.set_cksum();
    builder
        .append_data(&mut header, "a.txt", &b"hello"[..])
        .unwrap();
    let v7 = builder.into_inner().unwrap();
    assert_ne!(&v7[257..262], b"ustar");
    assert_eq!(sniff(&v7), FileKind::Tar);
    // a broken checksum is not a tar
    let mut broken = v7.clone();
    broken[0] ^= 0x01;
    assert_ne!(sniff(&broken), FileKind::Tar);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&ustar).unwrap();
    assert_eq!(sniff(&gz.finish().unwrap()), FileKind::Gzip);
}

#[test]
fn pe_header_is_checked_but_bare_mz_is_still_pe() {
    assert!(has_pe_header(&pe()));
    let mut stub = pe();
    stub[0x80] = b'X';
    assert!(!has_pe_header(&stub));
    assert_eq!(sniff(&stub), FileKind::Pe);
    let mut far = pe();
    far[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(!has_pe_header(&far));
}

#[test]
fn polyglots_decide_for_the_dangerous_kind() {
    // a PE whose bytes also contain PNG magic and a PDF header later
    let mut v = pe();
    v.extend_from_slice(b"\x89PNG\r\n\x1a\n%PDF-1.4\n");
    assert_eq!(sniff(&v), FileKind::Pe);
    assert_eq!(kinds(&v), vec![FileKind::Pe, FileKind::Pdf]);
    // MZ first, then a whole PDF
    let v = [&b"MZ"[..], &docs::pdf("x")].concat();
    assert_eq!(sniff(&v), FileKind::Pe);
    // a script line before a PDF
    let v = [&b"#!/bin/sh\n"[..], &docs::pdf("x")].concat();
    assert_eq!(sniff(&v), FileKind::Script);
    // PDF header after 500 bytes of text: readers accept it
    let v = [&[b' '; 500][..], &docs::pdf("x")].concat();
    assert_eq!(sniff(&v), FileKind::Pdf);
    // ... but not after 1024 bytes
    let v = [&[b'a'; 1100][..], b"%PDF-1.4"].concat();
    assert_eq!(sniff(&v), FileKind::Text);
    // a zip appended to a JPEG is both
    let v = [docs::jpeg(), docs::zip_parts(&[("evil.exe", &pe())])].concat();
    assert_eq!(sniff(&v), FileKind::Jpeg);
    assert_eq!(kinds(&v), vec![FileKind::Jpeg, FileKind::Zip]);
    // a plain PNG is one kind only
    assert_eq!(kinds(&docs::png(1, 1, None)), vec![FileKind::Png]);
}

#[test]
fn zip_interior_decides_the_office_kind() {
    // OOXML without word/ xl/ ppt/ is a plain zip
    let v = docs::zip_parts(&[("[Content_Types].xml", b"<Types/>"), ("x/y.xml", b"<a/>")]);
    assert_eq!(sniff(&v), FileKind::Zip);
    // any vbaProject.bin makes it macro-enabled, whatever the content types say
    let v = docs::zip_parts(&[
        ("[Content_Types].xml", b"<Types/>"),
        ("xl/workbook.xml", b"<a/>"),
        ("xl/vbaProject.bin", b"x"),
    ]);
    assert_eq!(sniff(&v), FileKind::OfficeMacro);
    // a macro-enabled content type without vbaProject.bin
    let v = docs::zip_parts(&[
        (
            "[Content_Types].xml",
            b"<Types><Override PartName=\"/ppt/presentation.xml\" ContentType=\"application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml\"/></Types>",
        ),
        ("ppt/presentation.xml", b"<a/>"),
    ]);
    assert_eq!(sniff(&v), FileKind::OfficeMacro);
    // Excel 4.0 macro sheets
    let v = docs::zip_parts(&[
        ("[Content_Types].xml", b"<Types/>"),
        ("xl/macrosheets/sheet1.xml", b"<a/>"),
    ]);
    assert_eq!(sniff(&v), FileKind::OfficeMacro);
    // ODF: the mimetype entry decides; Basic macros make it macro-enabled
    let v = docs::zip_parts(&[("mimetype", b"application/vnd.oasis.opendocument.graphics")]);
    assert_eq!(sniff(&v), FileKind::Zip);
    let v = docs::zip_parts(&[
        ("mimetype", b"application/vnd.oasis.opendocument.text"),
        ("Basic/Standard/Module1.xml", b"<a/>"),
    ]);
    assert_eq!(sniff(&v), FileKind::OfficeMacro);
    // a truncated zip is still a zip (the archive walker refuses it as malformed)
    let docx = docs::docx("x");
    assert_eq!(sniff(&docx[..docx.len() / 2]), FileKind::Zip);
}

#[test]
fn text_kinds() {
    let cases: Vec<(&[u8], FileKind)> = vec![
        (b"hello world\n", FileKind::Text),
        (b"", FileKind::Text),
        (b"a,b,c\r\n1,2,3\r\n", FileKind::Text),
        ("Grüße, \u{1b}[1mfett\u{1b}[0m\tok".as_bytes(), FileKind::Text),
        (b"\xef\xbb\xbfwith BOM", FileKind::Text),
        (b"  {\"a\": [1, 2, {\"b\": null}]}\n", FileKind::Json),
        (b"[1,2]", FileKind::Json),
        (b"{not json", FileKind::Text),
        (b"\n  <!DOCTYPE html><html><body>x</body></html>", FileKind::Html),
        (b"<HTML><BODY>x", FileKind::Html),
        (b"<script>alert(1)</script>", FileKind::Html),
        (b"<!-- c --><html>", FileKind::Html),
        (
            b"<?xml version=\"1.0\"?>\n<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"x\">\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            FileKind::Svg,
        ),
        (b"<svg:svg xmlns:svg=\"http://www.w3.org/2000/svg\"></svg:svg>", FileKind::Svg),
        (b"<?xml version=\"1.0\"?><note><to>x</to></note>", FileKind::Xml),
        (b"<note>x</note>", FileKind::Xml),
        (b"<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\"/>", FileKind::Html),
        (b"< not a tag", FileKind::Text),
        (b"text with a \x01 control", FileKind::Unknown),
        (b"nul\0inside", FileKind::Unknown),
        (b"{\\rtf1\\ansi {\\object\\objemb}}", FileKind::Unknown),
        (b"\xc3\x28 invalid utf-8", FileKind::Unknown),
    ];
    for (bytes, kind) in cases {
        assert_eq!(
            sniff(bytes),
            kind,
            "expected {kind} for {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn utf16_with_bom_is_text() {
    let utf16le: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain("{\"k\": \"v\"}".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    assert_eq!(sniff(&utf16le), FileKind::Json);
    let utf16be: Vec<u8> = [0xfe, 0xff]
        .into_iter()
        .chain("<svg></svg>".encode_utf16().flat_map(u16::to_be_bytes))
        .collect();
    assert_eq!(sniff(&utf16be), FileKind::Svg);
    // without a BOM, UTF-16 has NULs: not text
    let bare: Vec<u8> = "hello".encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(sniff(&bare), FileKind::Unknown);
    // odd length or an unpaired surrogate: not text
    assert_eq!(sniff(&[0xff, 0xfe, b'a']), FileKind::Unknown);
    assert_eq!(sniff(&[0xff, 0xfe, 0x00, 0xd8, b'a', 0]), FileKind::Unknown);
}

#[test]
fn truncated_files_are_still_recognised_or_unknown() {
    for (bytes, kind) in [
        (docs::png(2, 2, None), FileKind::Png),
        (docs::jpeg(), FileKind::Jpeg),
        (docs::pdf("x"), FileKind::Pdf),
    ] {
        assert_eq!(sniff(&bytes[..12]), kind);
    }
    assert_eq!(sniff(b"\x89PN"), FileKind::Unknown);
    assert_eq!(sniff(b"RIFF"), FileKind::Text);
    assert_eq!(sniff(b"\xff\xd8"), FileKind::Unknown);
}

/// Random bytes (as an encrypted attachment's ciphertext looks) sniff as `unknown` except
/// for the two-byte magics (`MZ`, `#!`, gzip) and, for short strings, UTF-16 byte order
/// marks: about 1 in 15 000.
#[test]
fn random_bytes_are_almost_always_unknown() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let rounds = 200_000;
    let mut known = std::collections::BTreeMap::new();
    let mut buf = vec![0u8; 64];
    for _ in 0..rounds {
        for chunk in buf.chunks_mut(8) {
            chunk.copy_from_slice(&next().to_le_bytes());
        }
        let kind = sniff(&buf);
        if kind != FileKind::Unknown {
            *known.entry(kind).or_insert(0usize) += 1;
        }
    }
    let total: usize = known.values().sum();
    eprintln!("random 64-byte strings not unknown: {total} of {rounds}: {known:?}");
    assert!(total * 5_000 < rounds, "{total} of {rounds}: {known:?}");
}
