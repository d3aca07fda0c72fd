//! Text of office packages (OOXML and OpenDocument, macro-enabled ones included): every XML
//! part of the zip except themes, styles, font tables and the content-type list, and the text
//! of every other part by what its bytes are ([`other_part`]):
//!
//! * imported chunks (`w:altChunk`), which Word shows as document text: HTML, plain text, RTF
//!   (read as written, `\'hh` and `\u` escapes decoded), MHT (quoted-printable decoded; a
//!   base64 body is unreadable);
//! * embedded documents (a workbook in a document), one level deep and at most
//!   [`MAX_EMBEDDED`] of them; deeper ones make the file unreadable;
//! * the metadata of pictures and thumbnails.
//!
//! Parts with no text to read: fonts, EMF/WMF drawings, printer settings and ODF's layout
//! cache (by name), audio and video, and OLE objects and macro projects (the inspector's part
//! check refuses these unless their kind is allowed; YARA-X sees only the package's compressed
//! bytes). Any other part — an archive, or bytes of no known kind — makes the file unreadable:
//! what the guard cannot read does not cross.
//!
//! The package type comes from its parts, not from the kind it was sniffed as. Main parts are
//! read first (document, shared strings, sheets, slides, `content.xml`), then the rest
//! (headers, footers, notes, comments, `styles.xml` of OpenDocument — it holds headers and
//! footers —, document properties, custom XML). Each entry is read through `Read::take` with
//! the part limit; declared sizes are not trusted. An encrypted entry or an unsupported
//! compression method makes the file unreadable; a corrupt entry makes it malformed.
use std::io::{Cursor, Read};

use super::xml::{self, Mode};
use super::{ExtractError, Sink};
use crate::media::inspect::part_kind_by_name;
use crate::media::sniff::sniff;
use crate::media::FileKind;

/// XML parts left out: formatting only, large and without document text. Only XML parts: a
/// part of any other kind is read whatever its name.
fn skipped(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let file = lower.rsplit('/').next().unwrap_or(&lower);
    if !lower.ends_with(".xml") {
        return false;
    }
    lower == "[content_types].xml"
        || lower.contains("/theme/")
        || lower.starts_with("theme/")
        || (file == "styles.xml" && name.contains('/'))
        || file == "fonttable.xml"
        || file == "manifest.xml"
}

/// Whether a part holds XML to read.
fn xml_part(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (lower.ends_with(".xml") || lower.ends_with(".rels")) && !skipped(name)
}

/// Reading order: main content first.
fn rank(name: &str) -> u8 {
    const MAIN: &[&str] = &[
        "word/document.xml",
        "xl/sharedStrings.xml",
        "content.xml",
        "styles.xml",
        "meta.xml",
    ];
    if MAIN.contains(&name) {
        0
    } else if name.starts_with("xl/worksheets/") || name.starts_with("ppt/slides/") {
        1
    } else if name.starts_with("word/")
        || name.starts_with("xl/")
        || name.starts_with("ppt/notesSlides/")
        || name.starts_with("ppt/comments/")
    {
        2
    } else if name.starts_with("docProps/") {
        3
    } else {
        4
    }
}

/// Parts whose elements are fields (properties, custom XML): each element is a line.
fn mode(name: &str) -> Mode {
    if name.starts_with("docProps/")
        || name.starts_with("customXml/")
        || name == "meta.xml"
        || name.ends_with(".rels")
    {
        Mode::Generic
    } else {
        Mode::Office
    }
}

/// How deep embedded office documents are read: a document in a document, not deeper.
const MAX_DEPTH: u8 = 1;

/// How many embedded office documents one document may hold (each is read with limits of its
/// own).
pub const MAX_EMBEDDED: usize = 8;

/// Parts of no known kind that hold no text, by name: fonts (also obfuscated ones), EMF/WMF
/// drawings, printer settings, OpenDocument's layout cache.
fn textless_by_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let file = lower.rsplit('/').next().unwrap_or(&lower);
    let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    matches!(
        ext,
        "odttf" | "ttf" | "otf" | "fntdata" | "emf" | "wmf" | "emz" | "wmz"
    ) || (file.starts_with("printersettings") && ext == "bin")
        || file == "layout-cache"
}

pub(super) fn text(
    sink: &mut Sink,
    bytes: &[u8],
    part_limit: usize,
    depth: u8,
) -> Result<(), ExtractError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|_| sink.malformed("not a readable zip package"))?;
    let mut parts: Vec<(u8, String, usize)> = Vec::new();
    let mut others: Vec<(String, usize)> = Vec::new();
    let mut ooxml = false;
    let mut odf = false;
    for index in 0..zip.len() {
        let entry = zip.by_index_raw(index).map_err(|e| zip_error(sink, &e))?;
        let name = entry
            .name()
            .map_err(|_| sink.malformed("bad entry name"))?
            .into_owned();
        ooxml |= name == "[Content_Types].xml";
        odf |= name == "mimetype" || name == "content.xml";
        if entry.is_dir() || skipped(&name) {
            continue;
        }
        if xml_part(&name) {
            parts.push((rank(&name), name, index));
        } else if part_kind_by_name(&name).is_none() {
            others.push((name, index));
        }
    }
    if !ooxml && !odf {
        return Err(sink.malformed("no office package parts"));
    }
    parts.sort();
    let mut read_total = 0usize;
    let mut embedded = 0usize;
    let total_limit = part_limit.saturating_mul(4);
    let xml_parts = parts
        .into_iter()
        .map(|(_, name, index)| (true, name, index));
    let other_parts = others.into_iter().map(|(name, index)| (false, name, index));
    for (is_xml, name, index) in xml_parts.chain(other_parts) {
        sink.in_time()?;
        let entry = zip.by_index(index).map_err(|e| zip_error(sink, &e))?;
        if entry.encrypted() {
            return Err(sink.unreadable("encrypted package entry"));
        }
        if !matches!(
            entry.compression(),
            zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated
        ) {
            return Err(sink.unreadable("unsupported compression method"));
        }
        let mut buf = Vec::new();
        entry
            .take(part_limit as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|_| sink.malformed("corrupt package entry"))?;
        if buf.len() > part_limit {
            return Err(sink.too_large());
        }
        read_total += buf.len();
        if read_total > total_limit {
            return Err(sink.too_large());
        }
        if !is_xml {
            other_part(sink, &name, &buf, depth, &mut embedded)?;
            continue;
        }
        let xml_text = super::decode_lenient(&buf)
            .ok_or_else(|| sink.malformed("package part is not UTF-8"))?;
        xml::text(sink, &xml_text, mode(&name))?;
    }
    Ok(())
}

/// The text of a part that is not an XML part of the package, by what its bytes are.
fn other_part(
    sink: &mut Sink,
    name: &str,
    bytes: &[u8],
    depth: u8,
    embedded: &mut usize,
) -> Result<(), ExtractError> {
    // RTF and MHT may sniff as text: read them as what they are first.
    if let Some(text) = imported_chunk(sink, bytes)? {
        return sink.piece(&text);
    }
    let kind = sniff(bytes);
    match kind {
        // Checked by the inspector (refused unless allowed), no text here.
        FileKind::Ole | FileKind::OfficeMacro | FileKind::Pe | FileKind::Elf | FileKind::MachO => {
            return Ok(())
        }
        // No text read at the top level either.
        FileKind::Bmp
        | FileKind::Mp4
        | FileKind::Webm
        | FileKind::Ogg
        | FileKind::Mp3
        | FileKind::Wav => return Ok(()),
        FileKind::Zip | FileKind::Tar | FileKind::Gzip | FileKind::OtherArchive => {
            return Err(sink.unreadable("an archive inside an office document"));
        }
        FileKind::Unknown => {
            if textless_by_name(name) {
                return Ok(());
            }
            return Err(sink.unreadable("a part of the office document the guard cannot read"));
        }
        FileKind::Docx
        | FileKind::Xlsx
        | FileKind::Pptx
        | FileKind::Odt
        | FileKind::Ods
        | FileKind::Odp => {
            if depth >= MAX_DEPTH {
                return Err(sink.unreadable("office documents nested more than one level deep"));
            }
            *embedded += 1;
            if *embedded > MAX_EMBEDDED {
                return Err(sink.unreadable("too many embedded office documents"));
            }
        }
        _ => {}
    }
    let room = sink.max.saturating_sub(sink.len());
    match super::text_at(kind, bytes, room, sink.deadline, depth + 1) {
        Ok(Some(t)) => sink.piece(&t),
        Ok(None) => Ok(()),
        Err(ExtractError::TooLarge { .. }) => Err(sink.too_large()),
        Err(e) => Err(e),
    }
}

/// The text of an imported chunk that sniffing does not name: RTF (read as written, with its
/// `\'hh` and `\uN` escapes decoded) or MHT (a MIME message: quoted-printable decoded; a
/// base64 body is unreadable). `None` for anything else.
fn imported_chunk(sink: &Sink, bytes: &[u8]) -> Result<Option<String>, ExtractError> {
    let head: Vec<u8> = bytes.iter().take(256).map(u8::to_ascii_lowercase).collect();
    if bytes.starts_with(b"{\\rtf") {
        return Ok(Some(rtf_text(bytes)));
    }
    let mime =
        head.starts_with(b"mime-version:") || head.windows(13).any(|w| w == b"content-type:");
    if !mime {
        return Ok(None);
    }
    let lower = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    if lower.contains("content-transfer-encoding: base64") {
        return Err(sink.unreadable("an MHT part with a base64 body"));
    }
    Ok(Some(quoted_printable(bytes)))
}

/// RTF as written, escapes decoded: `\'e4` (a code page byte, read as Latin-1) and `\u228?`
/// (a UTF-16 unit; the fallback character after it is skipped).
fn rtf_text(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\'') {
            let hex = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(char::from(v));
                i += 4;
                continue;
            }
        }
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'u') {
            let digits: usize = b[i + 2..]
                .iter()
                .take(7)
                .take_while(|c| c.is_ascii_digit() || **c == b'-')
                .count();
            let n = std::str::from_utf8(&b[i + 2..i + 2 + digits])
                .ok()
                .and_then(|d| d.parse::<i32>().ok());
            if let Some(n) = n.filter(|_| digits > 0) {
                let unit = if n < 0 { n + 65536 } else { n };
                if let Some(c) = u32::try_from(unit).ok().and_then(char::from_u32) {
                    out.push(c);
                }
                i += 2 + digits;
                // The fallback character for readers without Unicode (one, by default).
                if b.get(i) == Some(&b' ') {
                    i += 1;
                }
                if i < b.len() && b[i] != b'\\' && b[i] != b'{' && b[i] != b'}' {
                    i += 1;
                }
                continue;
            }
        }
        out.push(char::from(b[i]));
        i += 1;
    }
    out
}

/// Quoted-printable decoded (soft line breaks removed, `=hh` decoded), read as UTF-8.
fn quoted_printable(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if b.get(i + 1..i + 3) == Some(b"\r\n") {
                i += 3;
                continue;
            }
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn zip_error(sink: &Sink, e: &zip::result::ZipError) -> ExtractError {
    use zip::result::ZipError;
    match e {
        ZipError::UnsupportedArchive(_)
        | ZipError::InvalidPassword
        | ZipError::CompressionMethodNotSupported(_) => {
            sink.unreadable("encrypted entry or unsupported compression")
        }
        _ => sink.malformed("corrupt zip package"),
    }
}
