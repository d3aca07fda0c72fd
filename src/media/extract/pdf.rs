//! Text of a PDF with lopdf: every page's text, the text drawn by Form XObjects (stamps,
//! letterheads, watermarks, annotation appearances, forms inside forms) and tiling patterns,
//! annotation texts (`/Contents`, `/T`, `/Subj`), form field names and values, every string of
//! the Info dictionary and the XMP metadata stream.
//!
//! The text of a content stream is read here, over lopdf's parser (`content_text`), for pages
//! and for what pages draw with `Do`: every Form XObject and tiling pattern in the file,
//! whether a page uses it or not (including those whose `/Subtype` is an indirect object), with
//! the fonts of its own resources (else those of the pages, which a form without resources
//! inherits). A string shown with a font whose encoding is unknown is read as its bytes rather
//! than dropped; a move of the text position reads as a space, so words drawn apart stay
//! apart.
//!
//! Streams are decompressed with a hard limit. A PDF with embedded files (attachments) is
//! unreadable: the files inside are not inspected. An encrypted PDF (an `/Encrypt` entry, even
//! one lopdf could open with the empty password) is unreadable: the guard does not vouch for
//! the text of a file whose content it reads through a decryption it does not check. Any
//! lopdf error, and a panic inside lopdf, makes the file malformed. Text drawn with fonts
//! lopdf cannot map to Unicode (embedded fonts without a `ToUnicode` map, unusual
//! encodings) comes out garbled or not at all: DLP on PDF text is best effort, YARA-X sees
//! the raw bytes.
use std::panic::{catch_unwind, AssertUnwindSafe};

use std::collections::BTreeMap;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Encoding, LoadOptions, Object};

use super::xml::{self, Mode};
use super::{ExtractError, Sink};

pub(super) fn text(sink: &mut Sink, bytes: &[u8], limit: usize) -> Result<(), ExtractError> {
    let mut inner = Sink::new(
        sink.kind(),
        sink.max.saturating_sub(sink.len()),
        sink.deadline,
    );
    match catch_unwind(AssertUnwindSafe(|| read(&mut inner, bytes, limit))) {
        Ok(Ok(())) => sink.piece(&inner.finish()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(sink.malformed("the PDF parser failed")),
    }
}

fn read(sink: &mut Sink, bytes: &[u8], limit: usize) -> Result<(), ExtractError> {
    let options = LoadOptions {
        max_decompressed_size: Some(limit),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(bytes, options).map_err(|e| match e {
        lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_) => {
            sink.unreadable("encrypted PDF")
        }
        _ => sink.malformed("lopdf could not parse the file"),
    })?;
    if doc.trailer.has(b"Encrypt") || doc.is_encrypted() || doc.was_encrypted() {
        return Err(sink.unreadable("encrypted PDF"));
    }
    if embeds_files(&doc) {
        return Err(sink.unreadable("PDF with embedded files"));
    }
    let pages = doc.get_pages();
    for page_id in pages.values() {
        sink.in_time()?;
        let data = doc
            .get_page_content_with_limit(*page_id, limit)
            .map_err(|_| sink.malformed("page content could not be read"))?;
        let fonts = doc.get_page_fonts(*page_id).unwrap_or_default();
        let text = content_text(sink, &doc, &data, &fonts, &BTreeMap::new(), limit)?;
        sink.piece(&text)?;
        if let Ok(annotations) = doc.get_page_annotations(*page_id) {
            for annotation in annotations {
                for key in [&b"Contents"[..], b"T", b"Subj"] {
                    if let Ok(obj) = annotation.get(key) {
                        string(sink, &doc, obj)?;
                    }
                }
            }
        }
    }
    drawn_text(sink, &doc, limit)?;
    if let Ok(info) = doc.trailer.get(b"Info") {
        if let Ok((_, Object::Dictionary(info))) = doc.dereference(info) {
            for (_, value) in info.iter() {
                string(sink, &doc, value)?;
            }
        }
    }
    // form fields: name, tooltip, value (filled-in forms)
    for obj in doc.objects.values() {
        sink.in_time()?;
        if let Object::Dictionary(field) = obj {
            if field.has(b"FT") || (field.has(b"Parent") && field.has(b"V")) {
                for key in [&b"T"[..], b"TU", b"V"] {
                    match field.get(key) {
                        Ok(Object::Array(values)) => {
                            for v in values {
                                string(sink, &doc, v)?;
                            }
                        }
                        Ok(v) => string(sink, &doc, v)?,
                        Err(_) => {}
                    }
                }
            }
        }
    }
    let metadata = doc
        .catalog()
        .ok()
        .and_then(|catalog| catalog.get(b"Metadata").ok())
        .and_then(|m| doc.dereference(m).ok());
    if let Some((_, Object::Stream(stream))) = metadata {
        let content = stream
            .decompressed_content_with_limit(limit)
            .map_err(|_| sink.malformed("XMP metadata could not be read"))?;
        let xmp = String::from_utf8_lossy(&content);
        sink.newline()?;
        match xml::text(sink, &xmp, Mode::Generic) {
            Ok(()) => {}
            // XMP that is not well-formed XML is still text a reader can see
            Err(ExtractError::Malformed { .. }) => sink.piece(&xmp)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The text of every Form XObject and tiling pattern (see the module notes). Their content
/// streams together may decompress to at most four times `limit`.
fn drawn_text(sink: &mut Sink, doc: &Document, limit: usize) -> Result<(), ExtractError> {
    let mut inherited: BTreeMap<Vec<u8>, &Dictionary> = BTreeMap::new();
    for id in doc.get_pages().values() {
        if let Ok(fonts) = doc.get_page_fonts(*id) {
            for (name, font) in fonts {
                inherited.entry(name).or_insert(font);
            }
        }
    }
    let mut budget = limit.saturating_mul(4);
    for obj in doc.objects.values() {
        sink.in_time()?;
        let Object::Stream(stream) = obj else {
            continue;
        };
        let dict = &stream.dict;
        // Indirect values are followed, as viewers follow them.
        let value = |key: &[u8]| {
            dict.get(key)
                .ok()
                .and_then(|o| doc.dereference(o).ok())
                .map(|(_, o)| o)
        };
        let form = matches!(value(b"Subtype"), Some(Object::Name(n)) if n == b"Form");
        let pattern = matches!(value(b"PatternType"), Some(Object::Integer(1)));
        if !form && !pattern {
            continue;
        }
        if budget == 0 {
            return Err(sink.too_large());
        }
        let data = stream
            .decompressed_content_with_limit(limit.min(budget))
            .map_err(|_| sink.malformed("a form's content could not be read"))?;
        budget = budget.saturating_sub(data.len());
        let own = resource_fonts(doc, dict);
        let text = content_text(sink, doc, &data, &own, &inherited, limit)?;
        sink.piece(&text)?;
    }
    Ok(())
}

/// The text a content stream shows (a page's, a form's, a pattern's), with the fonts of its
/// resources (`fonts`, else `fallback`): every string of `Tj`, `TJ`, `'` and `"`, decoded with
/// its font's encoding (read once per font name) or read as its bytes when that is unknown; a
/// line break at `T*` and `ET`, a space where the text position moves (`Td`, `TD`, `Tm`:
/// `(Lage) Tj 50 0 Td (GEHEIM) Tj` shows two words, not one).
fn content_text(
    sink: &Sink,
    doc: &Document,
    data: &[u8],
    fonts: &BTreeMap<Vec<u8>, &Dictionary>,
    fallback: &BTreeMap<Vec<u8>, &Dictionary>,
    limit: usize,
) -> Result<String, ExtractError> {
    let content = Content::decode(data)
        .map_err(|_| sink.malformed("a content stream could not be parsed"))?;
    let mut encodings: BTreeMap<Vec<u8>, Option<Encoding<'_>>> = BTreeMap::new();
    let mut current: Option<Vec<u8>> = None;
    let mut text = String::new();
    for op in &content.operations {
        sink.in_time()?;
        if op.operator == "Tf" {
            current = op
                .operands
                .first()
                .and_then(|o| o.as_name().ok())
                .map(<[u8]>::to_vec);
            if let Some(name) = &current {
                if !encodings.contains_key(name) {
                    let encoding = fonts
                        .get(name)
                        .or_else(|| fallback.get(name))
                        .and_then(|f| f.get_font_encoding_with_limit(doc, limit).ok());
                    encodings.insert(name.clone(), encoding);
                }
            }
            continue;
        }
        let encoding = current
            .as_ref()
            .and_then(|n| encodings.get(n))
            .and_then(Option::as_ref);
        match op.operator.as_str() {
            "Tj" | "TJ" => show(&mut text, encoding, &op.operands),
            "'" => {
                text.push('\n');
                show(&mut text, encoding, &op.operands);
            }
            "\"" => {
                text.push('\n');
                show(&mut text, encoding, op.operands.get(2..).unwrap_or(&[]));
            }
            "Td" | "TD" | "Tm" => text.push(' '),
            "T*" | "ET" => text.push('\n'),
            _ => {}
        }
    }
    Ok(text)
}

/// The fonts of a form's or pattern's own `/Resources`.
fn resource_fonts<'a>(
    doc: &'a Document,
    dict: &'a Dictionary,
) -> BTreeMap<Vec<u8>, &'a Dictionary> {
    let mut out = BTreeMap::new();
    let Ok(resources) = doc.get_dict_in_dict(dict, b"Resources") else {
        return out;
    };
    let Ok(fonts) = doc.get_dict_in_dict(resources, b"Font") else {
        return out;
    };
    for (name, value) in fonts.iter() {
        let font = match value {
            Object::Reference(id) => doc.get_dictionary(*id).ok(),
            Object::Dictionary(d) => Some(d),
            _ => None,
        };
        if let Some(font) = font {
            out.insert(name.clone(), font);
        }
    }
    out
}

/// Appends the strings a text-showing operator shows (`TJ` arrays: a kerning of more than a
/// tenth of an em reads as a space).
fn show(text: &mut String, encoding: Option<&Encoding<'_>>, operands: &[Object]) {
    for operand in operands {
        match operand {
            Object::String(bytes, _) => {
                match encoding.and_then(|e| e.bytes_to_string(bytes).ok()) {
                    Some(s) => text.push_str(&s),
                    None => text.push_str(&String::from_utf8_lossy(bytes)),
                }
            }
            Object::Array(items) => show(text, encoding, items),
            Object::Integer(i) if *i < -100 => text.push(' '),
            Object::Real(r) if *r < -100.0 => text.push(' '),
            _ => {}
        }
    }
}

/// Whether the document references an embedded file: a file specification with `/EF`, an
/// `/EmbeddedFile` stream or an `EmbeddedFiles` name tree anywhere in the file (attached or
/// not).
fn embeds_files(doc: &Document) -> bool {
    doc.objects.values().any(|obj| {
        let dict = match obj {
            Object::Dictionary(d) => d,
            Object::Stream(s) => &s.dict,
            _ => return false,
        };
        dict.has(b"EF")
            || dict.has(b"EmbeddedFiles")
            || matches!(dict.get(b"Type"), Ok(Object::Name(n)) if n == b"EmbeddedFile")
    })
}

fn string(sink: &mut Sink, doc: &Document, obj: &Object) -> Result<(), ExtractError> {
    let Ok((_, obj)) = doc.dereference(obj) else {
        return Ok(());
    };
    if let Object::String(..) = obj {
        match lopdf::decode_text_string(obj) {
            Ok(s) => sink.piece(&s)?,
            Err(_) => sink.piece(&String::from_utf8_lossy(obj.as_str().unwrap_or_default()))?,
        }
    }
    Ok(())
}
