//! Text of an HTML document with html5gum: text (character references decoded, script and
//! style contents included), comments and attribute values.
//!
//! Inline elements do not split text (`<b>GE</b>HEIM` is `GEHEIM`); block elements end a
//! line. Attribute values and comments are appended after the text, each on its own line.
use html5gum::{DefaultEmitter, Token, Tokenizer};

use super::{ExtractError, Sink};

/// Elements that end a line.
const BLOCKS: &[&[u8]] = &[
    b"p",
    b"div",
    b"br",
    b"li",
    b"tr",
    b"td",
    b"th",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"table",
    b"ul",
    b"ol",
    b"section",
    b"article",
    b"header",
    b"footer",
    b"title",
    b"pre",
    b"blockquote",
    b"hr",
    b"dd",
    b"dt",
    b"option",
    b"body",
    b"head",
    b"nav",
    b"form",
    b"script",
    b"style",
    b"textarea",
    b"main",
    b"aside",
    b"figcaption",
    b"caption",
    b"html",
];

fn block(name: &[u8]) -> bool {
    BLOCKS.iter().any(|b| b.eq_ignore_ascii_case(name))
}

/// Appends the text of `html` to `sink`.
pub(super) fn text(sink: &mut Sink, html: &str) -> Result<(), ExtractError> {
    let mut emitter = DefaultEmitter::default();
    emitter.naively_switch_states(true);
    let mut side = String::new();
    for token in Tokenizer::new_with_emitter(html, emitter) {
        sink.in_time()?;
        let Ok(token) = token;
        match token {
            Token::StartTag(tag) => {
                if block(&tag.name) {
                    sink.newline()?;
                }
                for value in tag.attributes.values() {
                    let v = String::from_utf8_lossy(&value.value);
                    if v.trim().is_empty() {
                        continue;
                    }
                    if sink.len() + side.len() + v.len() + 1 > sink.max {
                        return Err(sink.too_large());
                    }
                    side.push_str(&v);
                    side.push('\n');
                }
            }
            Token::EndTag(tag) => {
                if block(&tag.name) {
                    sink.newline()?;
                }
            }
            Token::String(s) => sink.push(&String::from_utf8_lossy(&s.value))?,
            Token::Comment(c) => {
                let c = String::from_utf8_lossy(&c.value);
                if sink.len() + side.len() + c.len() + 1 > sink.max {
                    return Err(sink.too_large());
                }
                side.push_str(&c);
                side.push('\n');
            }
            Token::Doctype(_) | Token::Error(_) => {}
        }
    }
    sink.newline()?;
    for line in side.lines() {
        sink.piece(line)?;
    }
    Ok(())
}
