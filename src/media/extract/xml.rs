//! Text of an XML document with quick-xml: text nodes, CDATA, entity references, comments and
//! attribute values.
//!
//! Text nodes are joined as a reader sees them. In [`Mode::Office`] only paragraph-like
//! elements (`w:p`, `a:p`, `text:p`, `text:h`, shared-string items, line breaks) end a line,
//! so a word Word split into runs (`<w:t>GE</w:t></w:r><w:r><w:t>HEIM</w:t>`) comes out
//! whole. In [`Mode::Generic`] every element ends a line except inline ones (SVG `tspan`,
//! XHTML `span`, `b`, `i`, …). Whitespace-only text with a line break (indentation) is not
//! text. Attribute values and comments are collected apart and appended after the text, each
//! on its own line, so they never split a run; namespace declarations are left out.
use quick_xml::events::Event;

use super::{ExtractError, Sink};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Generic,
    Office,
}

/// Elements of office formats that end a line (local names).
const OFFICE_BREAKS: &[&[u8]] = &[
    b"p",          // w:p, a:p, text:p
    b"h",          // text:h
    b"si",         // shared string item
    b"is",         // inline string
    b"br",         // w:br, a:br
    b"cr",         // w:cr
    b"line-break", // text:line-break
    b"c",          // a spreadsheet cell
    b"txBody",     // a PowerPoint text body
    b"table-cell", // table:table-cell
    b"instrText",  // a Word field code
    b"delText",    // deleted text kept in the file
    b"comment",    // a comment
    b"annotation", // office:annotation
    b"note-citation",
];

/// Inline elements of generic XML (SVG, XHTML) that do not end a line.
const GENERIC_INLINE: &[&[u8]] = &[
    b"tspan",
    b"textPath",
    b"tref",
    b"a",
    b"span",
    b"b",
    b"i",
    b"u",
    b"em",
    b"strong",
    b"sub",
    b"sup",
    b"small",
    b"big",
    b"font",
    b"code",
    b"mark",
    b"abbr",
    b"s",
];

/// Appends the text of `xml` to `sink`.
pub(super) fn text(sink: &mut Sink, xml: &str, mode: Mode) -> Result<(), ExtractError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut side = String::new();
    let max = sink.max;
    let side_push = |side: &mut String, s: &str, sink: &Sink| -> Result<(), ExtractError> {
        if s.trim().is_empty() {
            return Ok(());
        }
        if sink.len() + side.len() + s.len() + 1 > max {
            return Err(sink.too_large());
        }
        side.push_str(s);
        side.push('\n');
        Ok(())
    };
    loop {
        sink.in_time()?;
        let event = reader
            .read_event()
            .map_err(|_| sink.malformed("not well-formed XML"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                for attr in e.attributes() {
                    let attr = attr.map_err(|_| sink.malformed("bad XML attribute"))?;
                    let key = attr.key.as_ref();
                    if key == b"xmlns" || key.starts_with(b"xmlns:") || key == b"xml:space" {
                        continue;
                    }
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|_| sink.malformed("bad XML attribute value"))?;
                    side_push(&mut side, &value, sink)?;
                }
                let local = e.local_name();
                let name = local.as_ref();
                match (mode, name) {
                    (Mode::Office, b"tab") => sink.push("\t")?,
                    (Mode::Office, b"s") => sink.push(" ")?,
                    _ => {}
                }
                if matches!(event, Event::Empty(_)) && ends_line(mode, name) {
                    sink.newline()?;
                }
            }
            Event::End(ref e) => {
                if ends_line(mode, e.local_name().as_ref()) {
                    sink.newline()?;
                }
            }
            Event::Text(ref t) => {
                let s = t
                    .xml10_content()
                    .map_err(|_| sink.malformed("bad XML text encoding"))?;
                if s.trim().is_empty() && s.contains('\n') {
                    if mode == Mode::Generic {
                        sink.newline()?;
                    }
                } else {
                    sink.push(&s)?;
                }
            }
            Event::CData(ref t) => {
                let s = t
                    .decode()
                    .map_err(|_| sink.malformed("bad XML CDATA encoding"))?;
                sink.push(&s)?;
            }
            Event::GeneralRef(ref r) => {
                if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|_| sink.malformed("bad XML character reference"))?
                {
                    let mut buf = [0u8; 4];
                    sink.push(c.encode_utf8(&mut buf))?;
                } else {
                    let name = r
                        .decode()
                        .map_err(|_| sink.malformed("bad XML entity reference"))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => sink.push(s)?,
                        None => sink.push(&format!("&{name};"))?,
                    }
                }
            }
            Event::Comment(ref c) => {
                let s = c
                    .decode()
                    .map_err(|_| sink.malformed("bad XML comment encoding"))?;
                side_push(&mut side, &s, sink)?;
            }
            Event::DocType(ref d) => {
                // an internal subset can declare entities with text
                let s = d
                    .decode()
                    .map_err(|_| sink.malformed("bad XML doctype encoding"))?;
                if s.contains('[') {
                    side_push(&mut side, &s, sink)?;
                }
            }
            Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    sink.newline()?;
    for line in side.lines() {
        sink.piece(line)?;
    }
    sink.newline()
}

fn ends_line(mode: Mode, local: &[u8]) -> bool {
    match mode {
        Mode::Office => OFFICE_BREAKS.contains(&local),
        Mode::Generic => !GENERIC_INLINE.contains(&local),
    }
}
