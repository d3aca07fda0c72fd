//! Generated documents and images, built in memory: valid files of each kind the guard reads
//! text from, with the text a test or benchmark wants hidden in a chosen place.
//!
//! Images: PNG (real zlib `IDAT`, valid CRCs, optional text chunks), a baseline JPEG (a
//! 1×1 grey image) with comment, EXIF or XMP segments, a 1×1 GIF with a comment extension,
//! a 1×1 lossless WebP with `EXIF`/`XMP ` chunks. Documents: PDF 1.4 (Helvetica, one content
//! stream per page, exact cross-reference offsets; optional Info dictionary, XMP stream,
//! encryption dictionary), OOXML (`docx`, `xlsx`, `pptx`, `docm`) and OpenDocument (`odt`,
//! `ods`) packages written with the `zip` crate.
use std::io::{Cursor, Write};

use flate2::write::ZlibEncoder;
use flate2::Compression;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

// ---------------------------------------------------------------------------------------
// PNG

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// An RGB PNG of `w`×`h` grey pixels; `text_chunk` becomes a `tEXt` chunk with keyword
/// `Comment`.
pub fn png(w: u32, h: u32, text_chunk: Option<&str>) -> Vec<u8> {
    let extra: Vec<([u8; 4], Vec<u8>)> = text_chunk
        .map(|t| (*b"tEXt", [&b"Comment\0"[..], &latin1_bytes(t)].concat()))
        .into_iter()
        .collect();
    png_with_chunks(w, h, &extra)
}

/// An RGB PNG of `w`×`h` grey pixels with `chunks` (type, data) before the image data.
pub fn png_with_chunks(w: u32, h: u32, chunks: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    for (kind, data) in chunks {
        png_chunk(&mut out, kind, data);
    }
    let row = 1 + 3 * w as usize;
    let mut raw = vec![0x80u8; row * h as usize];
    for y in 0..h as usize {
        raw[y * row] = 0; // filter type none
    }
    png_chunk(&mut out, b"IDAT", &zlib(&raw));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A `zTXt` chunk's data: `keyword`, NUL, method 0, zlib-compressed `text`.
pub fn png_ztxt(keyword: &str, text: &str) -> ([u8; 4], Vec<u8>) {
    let mut data = latin1_bytes(keyword);
    data.extend_from_slice(&[0, 0]);
    data.extend_from_slice(&zlib(&latin1_bytes(text)));
    (*b"zTXt", data)
}

/// An `iTXt` chunk's data (UTF-8 `text`, compressed if `compressed`).
pub fn png_itxt(keyword: &str, text: &str, compressed: bool) -> ([u8; 4], Vec<u8>) {
    let mut data = latin1_bytes(keyword);
    data.extend_from_slice(&[0, u8::from(compressed), 0]);
    data.extend_from_slice(b"de\0\0");
    if compressed {
        data.extend_from_slice(&zlib(text.as_bytes()));
    } else {
        data.extend_from_slice(text.as_bytes());
    }
    (*b"iTXt", data)
}

fn latin1_bytes(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

// ---------------------------------------------------------------------------------------
// EXIF, XMP

/// EXIF data (a little-endian TIFF structure) with one IFD holding `entries`
/// (tag, TIFF type, value bytes; type 2 is ASCII, 1 BYTE, 7 UNDEFINED).
pub fn exif_tiff(entries: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
    let mut entries: Vec<&(u16, u16, Vec<u8>)> = entries.iter().collect();
    entries.sort_by_key(|e| e.0);
    let ifd_len = 2 + 12 * entries.len() + 4;
    let mut data_offset = 8 + ifd_len;
    let mut out = b"II*\0\x08\0\0\0".to_vec();
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    let mut data = Vec::new();
    for (tag, kind, value) in &entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        if value.len() <= 4 {
            let mut inline = value.clone();
            inline.resize(4, 0);
            out.extend_from_slice(&inline);
        } else {
            out.extend_from_slice(&(data_offset as u32).to_le_bytes());
            data.extend_from_slice(value);
            data_offset += value.len();
            if value.len() % 2 == 1 {
                data.push(0);
                data_offset += 1;
            }
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// EXIF with an ImageDescription tag.
pub fn exif_description(description: &str) -> Vec<u8> {
    let mut value = description.as_bytes().to_vec();
    value.push(0);
    exif_tiff(&[(0x010e, 2, value)])
}

/// An XMP packet with `text` as the document title (`dc:title`).
pub fn xmp_packet(text: &str) -> String {
    format!(
        "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\
<rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\
<dc:title><rdf:Alt><rdf:li xml:lang=\"x-default\">{}</rdf:li></rdf:Alt></dc:title>\
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>",
        xml_escape(text)
    )
}

// ---------------------------------------------------------------------------------------
// JPEG

/// A 1×1 grey baseline JPEG: JFIF header, one quantisation table, a frame, two one-code
/// Huffman tables and a scan of one block (DC difference 0, end of block).
const JPEG_HEAD: &[u8] = &[
    0xff, 0xd8, // SOI
    0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01,
    0x00, 0x00, // APP0 JFIF
];

fn jpeg_body() -> Vec<u8> {
    let mut out = vec![0xff, 0xdb, 0x00, 0x43, 0x00];
    out.extend_from_slice(&[1u8; 64]); // DQT
    out.extend_from_slice(&[
        0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00, // SOF0
    ]);
    for class in [0x00u8, 0x10] {
        // DHT: one code of length 1 for symbol 0
        out.extend_from_slice(&[0xff, 0xc4, 0x00, 0x14, class, 0x01]);
        out.extend_from_slice(&[0u8; 15]);
        out.push(0x00);
    }
    out.extend_from_slice(&[
        0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, // SOS
        0x3f, // DC "0", EOB "0", padded with ones
        0xff, 0xd9, // EOI
    ]);
    out
}

fn segment(marker: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff, marker];
    out.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A JPEG with `segments` (marker, data) after the JFIF header.
pub fn jpeg_with_segments(segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = JPEG_HEAD.to_vec();
    for (marker, data) in segments {
        out.extend_from_slice(&segment(*marker, data));
    }
    out.extend_from_slice(&jpeg_body());
    out
}

/// A JPEG without metadata.
pub fn jpeg() -> Vec<u8> {
    jpeg_with_segments(&[])
}

/// A JPEG with a comment (`COM`) segment.
pub fn jpeg_with_comment(comment: &str) -> Vec<u8> {
    jpeg_with_segments(&[(0xfe, comment.as_bytes().to_vec())])
}

/// A JPEG with EXIF (`APP1`) whose ImageDescription is `description`.
pub fn jpeg_with_exif(description: &str) -> Vec<u8> {
    jpeg_with_exif_data(&exif_description(description))
}

/// A JPEG with `tiff` as its EXIF data.
pub fn jpeg_with_exif_data(tiff: &[u8]) -> Vec<u8> {
    jpeg_with_segments(&[(0xe1, [&b"Exif\0\0"[..], tiff].concat())])
}

/// A JPEG with an IPTC caption (`APP13`, Photoshop resource 0x0404, record 2:120).
pub fn jpeg_with_iptc(caption: &str) -> Vec<u8> {
    let mut iptc = vec![0x1c, 2, 0, 0, 2, 0, 4]; // record version 4
    iptc.extend_from_slice(&[0x1c, 2, 120]);
    iptc.extend_from_slice(&(caption.len() as u16).to_be_bytes());
    iptc.extend_from_slice(caption.as_bytes());
    let mut data = b"Photoshop 3.0\08BIM\x04\x04\0\0".to_vec();
    data.extend_from_slice(&(iptc.len() as u32).to_be_bytes());
    data.extend_from_slice(&iptc);
    if iptc.len() % 2 == 1 {
        data.push(0);
    }
    jpeg_with_segments(&[(0xed, data)])
}

/// A JPEG with a comment segment after the scan (as progressive images have between scans).
pub fn jpeg_with_late_comment(comment: &str) -> Vec<u8> {
    let mut out = jpeg();
    let eoi = out.len() - 2;
    out.splice(eoi..eoi, segment(0xfe, comment.as_bytes()));
    out
}

/// A JPEG with an XMP packet whose title is `text`.
pub fn jpeg_with_xmp(text: &str) -> Vec<u8> {
    let data = [
        &b"http://ns.adobe.com/xap/1.0/\0"[..],
        xmp_packet(text).as_bytes(),
    ]
    .concat();
    jpeg_with_segments(&[(0xe1, data)])
}

// ---------------------------------------------------------------------------------------
// GIF, WebP

/// A 1×1 GIF with a comment extension.
pub fn gif_with_comment(comment: &str) -> Vec<u8> {
    let mut out = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
    out.extend_from_slice(&[0x21, 0xfe]);
    for block in comment.as_bytes().chunks(255) {
        out.push(block.len() as u8);
        out.extend_from_slice(block);
    }
    out.push(0);
    out.extend_from_slice(b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;");
    out
}

/// A 1×1 lossless WebP (extended format) with optional `EXIF` and `XMP ` chunks.
pub fn webp_with_metadata(exif: Option<&[u8]>, xmp: Option<&str>) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(fourcc);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
    }
    let mut flags = 0u8;
    if exif.is_some() {
        flags |= 0x08;
    }
    if xmp.is_some() {
        flags |= 0x04;
    }
    let mut body = b"WEBP".to_vec();
    chunk(&mut body, b"VP8X", &[flags, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    chunk(
        &mut body,
        b"VP8L",
        &[
            0x2f, 0x00, 0x00, 0x00, 0x10, 0x07, 0x10, 0x11, 0x11, 0x88, 0x88, 0xfe, 0x07,
        ],
    );
    if let Some(exif) = exif {
        chunk(&mut body, b"EXIF", exif);
    }
    if let Some(xmp) = xmp {
        chunk(&mut body, b"XMP ", xmp_packet(xmp).as_bytes());
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

// ---------------------------------------------------------------------------------------
// PDF

/// What goes into a generated PDF.
#[derive(Debug, Clone, Default)]
pub struct PdfSpec<'a> {
    /// One page per entry; each line of a page is drawn with `Tj`.
    pub pages: Vec<&'a str>,
    /// Info dictionary entries (`Title`, `Author`, …).
    pub info: Vec<(&'a str, &'a str)>,
    /// An XMP metadata stream whose title is this.
    pub xmp: Option<&'a str>,
    /// An `/Encrypt` dictionary (standard handler, R2) with a user password nobody knows.
    pub encrypted: bool,
    /// An embedded file (name, content) in the document's `EmbeddedFiles` name tree.
    pub attachment: Option<(&'a str, &'a [u8])>,
    /// A filled-in text form field (name, value) in the document's `AcroForm`.
    pub form_field: Option<(&'a str, &'a str)>,
    /// A stamp: a Form XObject that the first page draws with `Do`, showing this text with
    /// `TJ`, split in two halves with a small kerning between them. Its font comes from the
    /// form's own resources, or (`stamp_inherits`) from the page's.
    pub stamp: Option<&'a str>,
    /// The stamp has no resources of its own.
    pub stamp_inherits: bool,
    /// The stamp's `/Subtype` is an indirect object (`/Subtype 12 0 R`, object 12 being
    /// `/Form`), as viewers accept.
    pub stamp_subtype_indirect: bool,
    /// The whole content stream of the first page, instead of one `Tj` per line.
    pub page_content: Option<&'a str>,
}

/// A one-page PDF 1.4 drawing `text` in Helvetica.
pub fn pdf(text: &str) -> Vec<u8> {
    pdf_from(&PdfSpec {
        pages: vec![text],
        ..PdfSpec::default()
    })
}

/// A one-page PDF with an empty page and `title` in the Info dictionary.
pub fn pdf_with_info(title: &str) -> Vec<u8> {
    pdf_from(&PdfSpec {
        pages: vec![""],
        info: vec![("Title", title)],
        ..PdfSpec::default()
    })
}

fn pdf_string(s: &str) -> String {
    let mut out = String::from("(");
    for c in s.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push_str(&format!("\\{:03o}", u32::from(c).min(0x3f))),
        }
    }
    out.push(')');
    out
}

/// A PDF built from `spec`.
pub fn pdf_from(spec: &PdfSpec<'_>) -> Vec<u8> {
    let pages = if spec.pages.is_empty() {
        vec![""]
    } else {
        spec.pages.clone()
    };
    // objects: 1 catalog, 2 pages, 3 font, then per page (page, content), then info, xmp,
    // encrypt, embedded file stream, file specification, form field
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let n_pages = pages.len();
    let first_page = 4;
    let info_id = first_page + 2 * n_pages;
    let xmp_id = info_id + 1;
    let encrypt_id = xmp_id + 1;
    let embedded_id = encrypt_id + 1;
    let filespec_id = embedded_id + 1;
    let field_id = filespec_id + 1;
    let stamp_id = field_id + 1;
    let kids: Vec<String> = (0..n_pages)
        .map(|i| format!("{} 0 R", first_page + 2 * i))
        .collect();
    let metadata = if spec.xmp.is_some() {
        format!(" /Metadata {xmp_id} 0 R")
    } else {
        String::new()
    };
    let names = match spec.attachment {
        Some((name, _)) => format!(
            " /Names << /EmbeddedFiles << /Names [{} {filespec_id} 0 R] >> >>",
            pdf_string(name)
        ),
        None => String::new(),
    };
    let form = if spec.form_field.is_some() {
        format!(" /AcroForm << /Fields [{field_id} 0 R] >>")
    } else {
        String::new()
    };
    objects.push(format!("<< /Type /Catalog /Pages 2 0 R{metadata}{names}{form} >>").into_bytes());
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            n_pages
        )
        .into_bytes(),
    );
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );
    for (i, text) in pages.iter().enumerate() {
        let content_id = first_page + 2 * i + 1;
        let stamped = i == 0 && spec.stamp.is_some();
        let xobject = if stamped {
            format!(" /XObject << /Fm0 {stamp_id} 0 R >>")
        } else {
            String::new()
        };
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
/Resources << /Font << /F1 3 0 R >>{xobject} >> /Contents {content_id} 0 R >>"
            )
            .into_bytes(),
        );
        let mut stream = String::from("BT\n/F1 12 Tf\n14 TL\n72 720 Td\n");
        for line in text.lines() {
            stream.push_str(&format!("{} Tj T*\n", pdf_string(line)));
        }
        stream.push_str("ET\n");
        if let (0, Some(content)) = (i, spec.page_content) {
            stream = content.to_string();
        }
        if stamped {
            stream.push_str("q 1 0 0 1 300 50 cm /Fm0 Do Q\n");
        }
        objects.push(
            format!(
                "<< /Length {} >>\nstream\n{}endstream",
                stream.len(),
                stream
            )
            .into_bytes(),
        );
    }
    let info: Vec<String> = spec
        .info
        .iter()
        .map(|(k, v)| format!("/{k} {}", pdf_string(v)))
        .collect();
    objects.push(format!("<< {} >>", info.join(" ")).into_bytes());
    let xmp = spec.xmp.map(xmp_packet).unwrap_or_default();
    objects.push(
        format!(
            "<< /Type /Metadata /Subtype /XML /Length {} >>\nstream\n{}\nendstream",
            xmp.len() + 1,
            xmp
        )
        .into_bytes(),
    );
    let hex32 = "7a".repeat(32);
    objects.push(
        format!("<< /Filter /Standard /V 1 /R 2 /O <{hex32}> /U <{hex32}> /P -4 >>").into_bytes(),
    );
    match spec.attachment {
        Some((name, content)) => {
            let mut embedded = format!(
                "<< /Type /EmbeddedFile /Length {} >>\nstream\n",
                content.len()
            )
            .into_bytes();
            embedded.extend_from_slice(content);
            embedded.extend_from_slice(b"\nendstream");
            objects.push(embedded);
            objects.push(
                format!(
                    "<< /Type /Filespec /F {} /EF << /F {embedded_id} 0 R >> >>",
                    pdf_string(name)
                )
                .into_bytes(),
            );
        }
        None => {
            // unused object numbers stay in the table as null objects
            objects.push(b"null".to_vec());
            objects.push(b"null".to_vec());
        }
    }
    objects.push(match spec.form_field {
        Some((name, value)) => format!(
            "<< /FT /Tx /T {} /V {} /Rect [72 600 300 620] >>",
            pdf_string(name),
            pdf_string(value)
        )
        .into_bytes(),
        None => b"null".to_vec(),
    });
    if let Some(stamp) = spec.stamp {
        let half = stamp
            .char_indices()
            .map(|(i, _)| i)
            .nth(stamp.chars().count() / 2)
            .unwrap_or(0);
        let (a, b) = stamp.split_at(half);
        let content = format!(
            "BT\n/F1 10 Tf\n[{} -40 {}] TJ\nET\n",
            pdf_string(a),
            pdf_string(b)
        );
        let resources = if spec.stamp_inherits {
            ""
        } else {
            " /Resources << /Font << /F1 3 0 R >> >>"
        };
        let subtype = if spec.stamp_subtype_indirect {
            format!("{} 0 R", stamp_id + 1)
        } else {
            "/Form".to_string()
        };
        objects.push(
            format!(
                "<< /Type /XObject /Subtype {subtype} /BBox [0 0 200 40]{resources} /Length {} >>\nstream\n{content}endstream",
                content.len()
            )
            .into_bytes(),
        );
        if spec.stamp_subtype_indirect {
            objects.push(b"/Form".to_vec());
        }
    }

    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n", objects.len() + 1).as_bytes());
    out.extend_from_slice(b"0000000000 65535 f \n");
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    let encrypt = if spec.encrypted {
        format!(
            " /Encrypt {encrypt_id} 0 R /ID [<{hex32}> <{hex32}>]",
            hex32 = "01".repeat(16)
        )
    } else {
        String::new()
    };
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info {info_id} 0 R{encrypt} >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

// ---------------------------------------------------------------------------------------
// Office packages

/// A zip of `parts` (name, bytes), deflated; an entry named `mimetype` is stored (as
/// OpenDocument requires).
pub fn zip_parts(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in parts {
        let method = if *name == "mimetype" {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default().compression_method(method);
        zip.start_file(*name, options).expect("writing to memory");
        zip.write_all(data).expect("writing to memory");
    }
    zip.finish().expect("writing to memory").into_inner()
}

/// `s` with `&`, `<`, `>`, `"` escaped.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n";
const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
const R_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const REL_BASE: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";

fn content_types(overrides: &[(&str, &str)]) -> String {
    let mut out = format!(
        "{XML_DECL}<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
<Default Extension=\"xml\" ContentType=\"application/xml\"/>"
    );
    for (part, ct) in overrides {
        out.push_str(&format!(
            "<Override PartName=\"{part}\" ContentType=\"{ct}\"/>"
        ));
    }
    out.push_str("</Types>");
    out
}

fn rels(targets: &[(&str, &str)]) -> String {
    let mut out = format!(
        "{XML_DECL}<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"
    );
    for (i, (kind, target)) in targets.iter().enumerate() {
        let kind = if kind.starts_with("http") {
            kind.to_string()
        } else {
            format!("{REL_BASE}/{kind}")
        };
        out.push_str(&format!(
            "<Relationship Id=\"rId{}\" Type=\"{kind}\" Target=\"{target}\"/>",
            i + 1
        ));
    }
    out.push_str("</Relationships>");
    out
}

/// `docProps/core.xml` with title, creator and keywords.
pub fn core_props(title: &str, creator: &str, keywords: &str) -> String {
    format!(
        "{XML_DECL}<cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><dc:title>{}</dc:title><dc:creator>{}</dc:creator>\
<cp:keywords>{}</cp:keywords></cp:coreProperties>",
        xml_escape(title),
        xml_escape(creator),
        xml_escape(keywords)
    )
}

/// Word paragraphs: one `w:p` per line of `text`, one run per line.
pub fn word_paragraphs(text: &str) -> String {
    text.lines()
        .map(|line| {
            format!(
                "<w:p><w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
                xml_escape(line)
            )
        })
        .collect()
}

/// `word/document.xml` with `body` (WordprocessingML) in `w:body`.
pub fn word_document(body: &str) -> String {
    format!(
        "{XML_DECL}<w:document xmlns:w=\"{W_NS}\" xmlns:r=\"{R_NS}\"><w:body>{body}\
<w:sectPr><w:pgSz w:w=\"11906\" w:h=\"16838\"/></w:sectPr></w:body></w:document>"
    )
}

const DOCX_MAIN: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml";
const DOCM_MAIN: &str = "application/vnd.ms-word.document.macroEnabled.main+xml";

/// A docx whose `word/document.xml` body is `body` (WordprocessingML), plus `extra` parts
/// (name, XML) such as `word/header1.xml`, `word/comments.xml` or `docProps/core.xml`.
pub fn docx_with(body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let extra: Vec<(&str, &[u8])> = extra.iter().map(|(n, x)| (*n, x.as_bytes())).collect();
    office_word(body, &extra, false)
}

/// [`docx_with`] with parts of any bytes (pictures, embedded documents, imported chunks).
pub fn docx_with_parts(body: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    office_word(body, extra, false)
}

fn office_word(body: &str, extra: &[(&str, &[u8])], macros: bool) -> Vec<u8> {
    let main = if macros { DOCM_MAIN } else { DOCX_MAIN };
    let mut ct = content_types(&[("/word/document.xml", main)]);
    if macros {
        ct = ct.replace(
            "</Types>",
            "<Default Extension=\"bin\" ContentType=\"application/vnd.ms-office.vbaProject\"/></Types>",
        );
    }
    let root_rels = rels(&[("officeDocument", "word/document.xml")]);
    let doc = word_document(body);
    let doc_rels = rels(&[(
        "http://schemas.microsoft.com/office/2006/relationships/vbaProject",
        "vbaProject.bin",
    )]);
    let mut parts: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", ct.as_bytes()),
        ("_rels/.rels", root_rels.as_bytes()),
        ("word/document.xml", doc.as_bytes()),
    ];
    if macros {
        parts.push(("word/_rels/document.xml.rels", doc_rels.as_bytes()));
        parts.push((
            "word/vbaProject.bin",
            &[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1],
        ));
    }
    parts.extend_from_slice(extra);
    zip_parts(&parts)
}

/// A docx with one paragraph per line of `text`.
pub fn docx(text: &str) -> Vec<u8> {
    docx_with(&word_paragraphs(text), &[])
}

/// A macro-enabled Word document (`.docm`, with `word/vbaProject.bin`).
pub fn docm(text: &str) -> Vec<u8> {
    office_word(&word_paragraphs(text), &[], true)
}

fn column(mut i: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

/// An xlsx with one sheet whose first row holds `cells` as shared strings.
pub fn xlsx(cells: &[&str]) -> Vec<u8> {
    let strings: String = cells
        .iter()
        .map(|c| format!("<si><t xml:space=\"preserve\">{}</t></si>", xml_escape(c)))
        .collect();
    let shared = format!(
        "{XML_DECL}<sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" count=\"{n}\" uniqueCount=\"{n}\">{strings}</sst>",
        n = cells.len()
    );
    let row: String = (0..cells.len())
        .map(|i| format!("<c r=\"{}1\" t=\"s\"><v>{i}</v></c>", column(i)))
        .collect();
    xlsx_with(&row, &shared, &[])
}

/// An xlsx whose first sheet row is `row_xml` (`<c>` elements) and whose shared strings
/// part is `shared_strings`, plus `extra` parts.
pub fn xlsx_with(row_xml: &str, shared_strings: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    const S_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    let ct = content_types(&[
        (
            "/xl/workbook.xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        ),
        (
            "/xl/worksheets/sheet1.xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml",
        ),
        (
            "/xl/sharedStrings.xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml",
        ),
    ]);
    let root_rels = rels(&[("officeDocument", "xl/workbook.xml")]);
    let wb_rels = rels(&[
        ("worksheet", "worksheets/sheet1.xml"),
        ("sharedStrings", "sharedStrings.xml"),
    ]);
    let workbook = format!(
        "{XML_DECL}<workbook xmlns=\"{S_NS}\" xmlns:r=\"{R_NS}\"><sheets><sheet name=\"Sheet1\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>"
    );
    let sheet = format!(
        "{XML_DECL}<worksheet xmlns=\"{S_NS}\"><sheetData><row r=\"1\">{row_xml}</row></sheetData></worksheet>"
    );
    let mut parts: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", ct.as_bytes()),
        ("_rels/.rels", root_rels.as_bytes()),
        ("xl/workbook.xml", workbook.as_bytes()),
        ("xl/_rels/workbook.xml.rels", wb_rels.as_bytes()),
        ("xl/worksheets/sheet1.xml", sheet.as_bytes()),
        ("xl/sharedStrings.xml", shared_strings.as_bytes()),
    ];
    for (name, xml) in extra {
        parts.push((name, xml.as_bytes()));
    }
    zip_parts(&parts)
}

/// A pptx with one slide; each line of `text` is a paragraph of one text box.
pub fn pptx(text: &str) -> Vec<u8> {
    const P_NS: &str = "http://schemas.openxmlformats.org/presentationml/2006/main";
    const A_NS: &str = "http://schemas.openxmlformats.org/drawingml/2006/main";
    let ct = content_types(&[
        (
            "/ppt/presentation.xml",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
        ),
        (
            "/ppt/slides/slide1.xml",
            "application/vnd.openxmlformats-officedocument.presentationml.slide+xml",
        ),
    ]);
    let root_rels = rels(&[("officeDocument", "ppt/presentation.xml")]);
    let pres_rels = rels(&[("slide", "slides/slide1.xml")]);
    let presentation = format!(
        "{XML_DECL}<p:presentation xmlns:p=\"{P_NS}\" xmlns:r=\"{R_NS}\"><p:sldIdLst><p:sldId id=\"256\" r:id=\"rId1\"/></p:sldIdLst>\
<p:sldSz cx=\"9144000\" cy=\"6858000\"/><p:notesSz cx=\"6858000\" cy=\"9144000\"/></p:presentation>"
    );
    let paragraphs: String = text
        .lines()
        .map(|l| {
            format!(
                "<a:p><a:r><a:rPr lang=\"de-DE\"/><a:t>{}</a:t></a:r></a:p>",
                xml_escape(l)
            )
        })
        .collect();
    let slide = format!(
        "{XML_DECL}<p:sld xmlns:p=\"{P_NS}\" xmlns:a=\"{A_NS}\"><p:cSld><p:spTree><p:nvGrpSpPr><p:cNvPr id=\"1\" name=\"\"/>\
<p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr><p:grpSpPr/><p:sp><p:nvSpPr><p:cNvPr id=\"2\" name=\"Text\"/><p:cNvSpPr txBox=\"1\"/><p:nvPr/></p:nvSpPr>\
<p:spPr/><p:txBody><a:bodyPr/>{paragraphs}</p:txBody></p:sp></p:spTree></p:cSld></p:sld>"
    );
    zip_parts(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("_rels/.rels", root_rels.as_bytes()),
        ("ppt/presentation.xml", presentation.as_bytes()),
        ("ppt/_rels/presentation.xml.rels", pres_rels.as_bytes()),
        ("ppt/slides/slide1.xml", slide.as_bytes()),
    ])
}

const ODF_NS: &str = "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" \
xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" \
xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" \
xmlns:meta=\"urn:oasis:names:tc:opendocument:xmlns:meta:1.0\" \
xmlns:dc=\"http://purl.org/dc/elements/1.1/\"";

/// An OpenDocument package of `mimetype` with `body` (the content of `office:body`) in
/// `content.xml`, plus `extra` parts (name, XML) such as `styles.xml` or `meta.xml`.
pub fn odf_with(mimetype: &str, body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let manifest = format!(
        "{XML_DECL}<manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\" manifest:version=\"1.2\">\
<manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"{mimetype}\"/>\
<manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/></manifest:manifest>"
    );
    let content = format!(
        "{XML_DECL}<office:document-content {ODF_NS} office:version=\"1.2\"><office:body>{body}</office:body></office:document-content>"
    );
    let mut parts: Vec<(&str, &[u8])> = vec![
        ("mimetype", mimetype.as_bytes()),
        ("META-INF/manifest.xml", manifest.as_bytes()),
        ("content.xml", content.as_bytes()),
    ];
    for (name, xml) in extra {
        parts.push((name, xml.as_bytes()));
    }
    zip_parts(&parts)
}

/// An ODF text document with one paragraph per line of `text`.
pub fn odt(text: &str) -> Vec<u8> {
    let paragraphs: String = text
        .lines()
        .map(|l| format!("<text:p>{}</text:p>", xml_escape(l)))
        .collect();
    odf_with(
        "application/vnd.oasis.opendocument.text",
        &format!("<office:text>{paragraphs}</office:text>"),
        &[],
    )
}

/// An ODF spreadsheet whose first row holds `cells` as strings.
pub fn ods(cells: &[&str]) -> Vec<u8> {
    let row: String = cells
        .iter()
        .map(|c| {
            format!(
                "<table:table-cell office:value-type=\"string\"><text:p>{}</text:p></table:table-cell>",
                xml_escape(c)
            )
        })
        .collect();
    odf_with(
        "application/vnd.oasis.opendocument.spreadsheet",
        &format!(
            "<office:spreadsheet><table:table table:name=\"Sheet1\"><table:table-row>{row}</table:table-row></table:table></office:spreadsheet>"
        ),
        &[],
    )
}

/// `meta.xml` of an OpenDocument package with a title and keyword.
pub fn odf_meta(title: &str, keyword: &str) -> String {
    format!(
        "{XML_DECL}<office:document-meta {ODF_NS} office:version=\"1.2\"><office:meta><dc:title>{}</dc:title>\
<meta:keyword>{}</meta:keyword></office:meta></office:document-meta>",
        xml_escape(title),
        xml_escape(keyword)
    )
}

// ---------------------------------------------------------------------------------------
// Every place

/// One generated file of each kind the guard reads text from, `marker` hidden in each place
/// text can hide: (kind the bytes sniff as, place, bytes). For tests and benchmarks of the
/// whole inspection (a DLP rule matching `marker` must refuse every one of them).
pub fn marked(marker: &str) -> Vec<(crate::media::FileKind, &'static str, Vec<u8>)> {
    use crate::media::FileKind as K;
    let para = word_paragraphs(marker);
    let w = |root: &str| format!("<w:{root} xmlns:w=\"{W_NS}\">{para}</w:{root}>");
    let header = w("hdr");
    let comments = format!(
        "<w:comments xmlns:w=\"{W_NS}\"><w:comment w:id=\"0\">{para}</w:comment></w:comments>"
    );
    let core = core_props(marker, "author", "keywords");
    let mut user_comment = b"ASCII\0\0\0".to_vec();
    user_comment.extend_from_slice(marker.as_bytes());
    vec![
        (K::Text, "body", marker.as_bytes().to_vec()),
        (
            K::Json,
            "string",
            format!("{{\"k\": \"{}\"}}", marker.replace('"', "")).into_bytes(),
        ),
        (
            K::Html,
            "body",
            format!("<!DOCTYPE html><p>{}</p>", xml_escape(marker)).into_bytes(),
        ),
        (
            K::Svg,
            "text",
            format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\"><text>{}</text></svg>",
                xml_escape(marker)
            )
            .into_bytes(),
        ),
        (K::Docx, "body", docx(marker)),
        (
            K::Docx,
            "header",
            docx_with("", &[("word/header1.xml", &header)]),
        ),
        (
            K::Docx,
            "comment",
            docx_with("", &[("word/comments.xml", &comments)]),
        ),
        (
            K::Docx,
            "core properties",
            docx_with("", &[("docProps/core.xml", &core)]),
        ),
        (K::Xlsx, "shared strings", xlsx(&[marker])),
        (K::Pptx, "slide", pptx(marker)),
        (K::OfficeMacro, "body", docm(marker)),
        (K::Odt, "body", odt(marker)),
        (K::Ods, "cell", ods(&[marker])),
        (K::Pdf, "page", pdf(marker)),
        (K::Pdf, "info", pdf_with_info(marker)),
        (
            K::Pdf,
            "form field",
            pdf_from(&PdfSpec {
                pages: vec![""],
                form_field: Some(("field", marker)),
                ..PdfSpec::default()
            }),
        ),
        (
            K::Pdf,
            "xmp",
            pdf_from(&PdfSpec {
                pages: vec![""],
                xmp: Some(marker),
                ..PdfSpec::default()
            }),
        ),
        (K::Png, "tEXt", png(2, 2, Some(marker))),
        (
            K::Png,
            "zTXt",
            png_with_chunks(2, 2, &[png_ztxt("Comment", marker)]),
        ),
        (K::Jpeg, "comment", jpeg_with_comment(marker)),
        (K::Jpeg, "exif", jpeg_with_exif(marker)),
        (
            K::Jpeg,
            "exif user comment",
            jpeg_with_exif_data(&exif_tiff(&[(0x9286, 7, user_comment)])),
        ),
        (K::Jpeg, "xmp", jpeg_with_xmp(marker)),
        (K::Jpeg, "iptc", jpeg_with_iptc(marker)),
        (
            K::Jpeg,
            "comment after the scan",
            jpeg_with_late_comment(marker),
        ),
        (K::Gif, "comment", gif_with_comment(marker)),
        (K::Webp, "xmp", webp_with_metadata(None, Some(marker))),
    ]
}
