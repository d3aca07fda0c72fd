//! The text of a file for the DLP rule set: what a reader of the file could see, and what
//! hides in its metadata.
//!
//! - text kinds: UTF-8 (byte order mark allowed) or UTF-16 with a byte order mark; JSON gives
//!   every key, string and number; XML and SVG give text content, CDATA, comments and
//!   attribute values ([`xml`]); HTML gives text, comments and attribute values ([`html`]);
//! - office files (OOXML, OpenDocument, macro-enabled OOXML): every XML part of the package
//!   except themes, styles and font tables — body, headers, footers, notes, comments, shared
//!   strings, inline strings, slides, document properties — and the text of the other parts
//!   by their kind: imported HTML or text chunks, embedded documents one level deep, picture
//!   metadata ([`office`]). Runs within a paragraph are joined without a separator,
//!   paragraphs end with a line feed;
//! - PDF: the text of every page and of what pages draw with Form XObjects and patterns,
//!   annotation texts, form fields, the Info dictionary and XMP metadata ([`pdf`]); an encrypted PDF or one with embedded files is
//!   [`ExtractError::Unreadable`];
//! - images: PNG `tEXt`/`zTXt`/`iTXt`/`eXIf`, JPEG comments, EXIF and XMP, GIF comment and
//!   plain-text extensions, WebP `EXIF`/`XMP ` chunks, TIFF tags; in PNG, JPEG, GIF and WebP
//!   also the printable runs of every other chunk, segment or extension and of the bytes
//!   after the end of the image ([`image`]);
//! - scripts (`#!`): their text (invalid UTF-8 replaced);
//! - legacy OLE documents are [`ExtractError::Unreadable`] (the guard does not read them);
//! - archives, executables, audio and video have no text here (`Ok(None)`): the inspector
//!   walks archives itself.
//!
//! Pieces are joined with `\n`. The result never exceeds `max_text` bytes: extraction stops
//! with [`ExtractError::TooLarge`] as soon as it would. A part read from inside a file (a zip
//! entry, a PDF stream, a compressed PNG chunk) is read with a hard limit
//! ([`part_limit`]), never trusting a declared size. The text is not normalised here; the DLP
//! engine normalises every field it scans.
use std::time::Instant;

use super::FileKind;

mod html;
mod image;
mod office;
mod pdf;
mod xml;

/// Why no text could be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The file does not parse as its kind.
    #[error("malformed {kind}: {reason}")]
    Malformed { kind: FileKind, reason: String },
    /// Encrypted or otherwise unreadable (password-protected PDF or office file).
    #[error("unreadable {kind}: {reason}")]
    Unreadable { kind: FileKind, reason: String },
    /// The text (or a part read to get it) exceeds the limit.
    #[error("{kind}: text exceeds {limit} bytes")]
    TooLarge { kind: FileKind, limit: usize },
    /// The deadline passed while the text was being read.
    #[error("{kind}: text not read before the deadline")]
    Deadline { kind: FileKind },
}

/// The largest part read from inside a file (a zip entry, a decompressed PDF stream or PNG
/// chunk) when the text may have `max_text` bytes: eight times `max_text`, at least 1 MiB,
/// at most 256 MiB. Markup and compression overhead make a part larger than its text.
pub fn part_limit(max_text: usize) -> usize {
    max_text.saturating_mul(8).clamp(1 << 20, 256 << 20)
}

/// The text of a file of `kind` for the DLP rules. `Ok(None)` for kinds without text.
pub fn text(kind: FileKind, bytes: &[u8], max_text: usize) -> Result<Option<String>, ExtractError> {
    text_at(kind, bytes, max_text, None, 0)
}

/// [`text`] that stops with [`ExtractError::Deadline`] once `deadline` has passed: checked
/// with every piece of text, every page, part, content operator, XML or HTML token and
/// object read, so a file built to be slow to read cannot hold the scan beyond it (one call
/// into a parser, such as loading a PDF's object table, is not interrupted).
pub fn text_until(
    kind: FileKind,
    bytes: &[u8],
    max_text: usize,
    deadline: Instant,
) -> Result<Option<String>, ExtractError> {
    text_at(kind, bytes, max_text, Some(deadline), 0)
}

/// [`text`] of a file found `depth` levels deep inside another (an office package's part).
fn text_at(
    kind: FileKind,
    bytes: &[u8],
    max_text: usize,
    deadline: Option<Instant>,
    depth: u8,
) -> Result<Option<String>, ExtractError> {
    let mut sink = Sink::new(kind, max_text, deadline);
    let limit = part_limit(max_text);
    match kind {
        FileKind::Text => {
            let text = decode(kind, bytes)?;
            sink.piece(&text)?;
        }
        FileKind::Script => sink.piece(&String::from_utf8_lossy(bytes))?,
        FileKind::Json => json(&mut sink, &decode(kind, bytes)?)?,
        FileKind::Xml | FileKind::Svg => {
            xml::text(&mut sink, &decode(kind, bytes)?, xml::Mode::Generic)?
        }
        FileKind::Html => html::text(&mut sink, &decode(kind, bytes)?)?,
        FileKind::Docx
        | FileKind::Xlsx
        | FileKind::Pptx
        | FileKind::OfficeMacro
        | FileKind::Odt
        | FileKind::Ods
        | FileKind::Odp => office::text(&mut sink, bytes, limit, depth)?,
        FileKind::Pdf => pdf::text(&mut sink, bytes, limit)?,
        FileKind::Png | FileKind::Jpeg | FileKind::Gif | FileKind::Webp | FileKind::Tiff => {
            image::text(&mut sink, bytes, limit)?
        }
        FileKind::Ole => {
            return Err(ExtractError::Unreadable {
                kind,
                reason: "legacy OLE documents are not read".into(),
            });
        }
        FileKind::Bmp
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
        | FileKind::Unknown => return Ok(None),
    }
    Ok(Some(sink.finish()))
}

/// Text decoded as [`super::sniff::decode_text`] accepts it (controls excepted: a text part
/// of a document may carry any character).
fn decode(kind: FileKind, bytes: &[u8]) -> Result<String, ExtractError> {
    decode_lenient(bytes).ok_or_else(|| ExtractError::Malformed {
        kind,
        reason: "not UTF-8 or UTF-16 with a byte order mark".into(),
    })
}

/// UTF-8 (byte order mark stripped) or UTF-16 with a byte order mark.
pub(crate) fn decode_lenient(b: &[u8]) -> Option<String> {
    if let Some(rest) = b.strip_prefix(b"\xef\xbb\xbf") {
        return std::str::from_utf8(rest).ok().map(str::to_owned);
    }
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        if !rest.len().is_multiple_of(2) {
            return None;
        }
        let units: Vec<u16> = rest.chunks_exact(2).map(|c| unit([c[0], c[1]])).collect();
        String::from_utf16(&units).ok()
    };
    if let Some(rest) = b.strip_prefix(b"\xff\xfe") {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = b.strip_prefix(b"\xfe\xff") {
        return utf16(rest, u16::from_be_bytes);
    }
    std::str::from_utf8(b).ok().map(str::to_owned)
}

/// Every key, string and number of a JSON document, one per line.
fn json(sink: &mut Sink, text: &str) -> Result<(), ExtractError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| sink.malformed("not valid JSON"))?;
    enum Item<'a> {
        Key(&'a str),
        Value(&'a serde_json::Value),
    }
    let mut stack = vec![Item::Value(&value)];
    while let Some(item) = stack.pop() {
        match item {
            Item::Key(k) => sink.piece(k)?,
            Item::Value(serde_json::Value::String(s)) => sink.piece(s)?,
            Item::Value(serde_json::Value::Number(n)) => sink.piece(&n.to_string())?,
            Item::Value(serde_json::Value::Array(items)) => {
                stack.extend(items.iter().rev().map(Item::Value))
            }
            Item::Value(serde_json::Value::Object(map)) => {
                for (k, v) in map.iter().rev() {
                    stack.push(Item::Value(v));
                    stack.push(Item::Key(k));
                }
            }
            Item::Value(serde_json::Value::Bool(_) | serde_json::Value::Null) => {}
        }
    }
    Ok(())
}

/// The text being built, bounded by `max` bytes.
pub(crate) struct Sink {
    kind: FileKind,
    max: usize,
    deadline: Option<Instant>,
    out: String,
}

impl Sink {
    fn new(kind: FileKind, max: usize, deadline: Option<Instant>) -> Sink {
        Sink {
            kind,
            max,
            deadline,
            out: String::new(),
        }
    }

    /// [`ExtractError::Deadline`] once the deadline has passed.
    fn in_time(&self) -> Result<(), ExtractError> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(ExtractError::Deadline { kind: self.kind }),
            _ => Ok(()),
        }
    }

    fn kind(&self) -> FileKind {
        self.kind
    }

    fn len(&self) -> usize {
        self.out.len()
    }

    fn too_large(&self) -> ExtractError {
        ExtractError::TooLarge {
            kind: self.kind,
            limit: self.max,
        }
    }

    fn malformed(&self, reason: &str) -> ExtractError {
        ExtractError::Malformed {
            kind: self.kind,
            reason: reason.into(),
        }
    }

    fn unreadable(&self, reason: &str) -> ExtractError {
        ExtractError::Unreadable {
            kind: self.kind,
            reason: reason.into(),
        }
    }

    /// Appends `s` to the current line.
    fn push(&mut self, s: &str) -> Result<(), ExtractError> {
        self.in_time()?;
        if self.out.len().saturating_add(s.len()) > self.max {
            return Err(self.too_large());
        }
        self.out.push_str(s);
        Ok(())
    }

    /// Ends the current line (nothing if there is none).
    fn newline(&mut self) -> Result<(), ExtractError> {
        if self.out.is_empty() || self.out.ends_with('\n') {
            return Ok(());
        }
        self.push("\n")
    }

    /// `s` as a piece of its own (skipped if it is empty or only whitespace).
    fn piece(&mut self, s: &str) -> Result<(), ExtractError> {
        if s.trim().is_empty() {
            return Ok(());
        }
        self.newline()?;
        self.push(s)
    }

    fn finish(mut self) -> String {
        while self.out.ends_with('\n') {
            self.out.pop();
        }
        self.out
    }
}

#[cfg(test)]
mod tests;
