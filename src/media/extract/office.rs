//! Text of office packages (OOXML and OpenDocument, macro-enabled ones included): every XML
//! part of the zip except themes, styles, font tables and the content-type list, and the text
//! of every other part by what its bytes are: an imported chunk (`w:altChunk`: HTML, plain
//! text), which Word shows as document text, an embedded document (a workbook in a document,
//! one level deep), the metadata of pictures and thumbnails. Parts without a text reader
//! (fonts, OLE objects, macro projects, media) are left to the inspector's part checks and
//! YARA-X.
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

/// Parts left out: formatting only, large and without document text.
fn skipped(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let file = lower.rsplit('/').next().unwrap_or(&lower);
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

/// Whether an embedded part of `kind` has text to read here.
fn readable_part(kind: FileKind) -> bool {
    !matches!(
        kind,
        FileKind::Ole
            | FileKind::OfficeMacro
            | FileKind::Bmp
            | FileKind::Zip
            | FileKind::Tar
            | FileKind::Gzip
            | FileKind::OtherArchive
            | FileKind::Pe
            | FileKind::Elf
            | FileKind::MachO
            | FileKind::Mp4
            | FileKind::Webm
            | FileKind::Ogg
            | FileKind::Mp3
            | FileKind::Wav
            | FileKind::Unknown
    )
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
    let total_limit = part_limit.saturating_mul(4);
    let xml_parts = parts
        .into_iter()
        .map(|(_, name, index)| (true, name, index));
    let other_parts = others.into_iter().map(|(name, index)| (false, name, index));
    for (is_xml, name, index) in xml_parts.chain(other_parts) {
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
            other_part(sink, &buf, depth)?;
            continue;
        }
        let xml_text = super::decode_lenient(&buf)
            .ok_or_else(|| sink.malformed("package part is not UTF-8"))?;
        xml::text(sink, &xml_text, mode(&name))?;
    }
    Ok(())
}

/// The text of a part that is not an XML part of the package, by what its bytes are.
fn other_part(sink: &mut Sink, bytes: &[u8], depth: u8) -> Result<(), ExtractError> {
    let kind = sniff(bytes);
    if !readable_part(kind) {
        return Ok(());
    }
    let office = matches!(
        kind,
        FileKind::Docx
            | FileKind::Xlsx
            | FileKind::Pptx
            | FileKind::Odt
            | FileKind::Ods
            | FileKind::Odp
    );
    if office && depth >= MAX_DEPTH {
        return Err(sink.unreadable("office documents nested more than one level deep"));
    }
    let room = sink.max.saturating_sub(sink.len());
    match super::text_at(kind, bytes, room, depth + 1) {
        Ok(Some(t)) => sink.piece(&t),
        Ok(None) => Ok(()),
        Err(ExtractError::TooLarge { .. }) => Err(sink.too_large()),
        Err(e) => Err(e),
    }
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
