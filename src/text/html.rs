//! HTML as a reader sees it, with a WHATWG tokenizer (html5gum).
//!
//! [`render`] splits one string into two views: the rendered text and the markup. Both are
//! then normalised like any text (see the parent module). The tokenizer decodes every
//! character reference the way a browser does — the 2,231 named references, the legacy ones
//! without `;` (`&auml` reads `ä`), numeric references with any number of leading zeros, and
//! the replacement rules for invalid numbers — so the guard reads `&#x47;&#0000069;HEIM` as
//! `GEHEIM`. Malformed markup never fails: the tokenizer recovers as a browser would.
//!
//! The tokenizer stays in its data state (it does not switch to raw text inside `<script>`,
//! `<style>` or `<textarea>`), so text inside such elements is read as markup and text: a
//! little more is scanned than a browser shows, never less.
use std::convert::Infallible;

use html5gum::emitters::callback::{CallbackEmitter, CallbackEvent};
use html5gum::{Span, Tokenizer};

use super::{normalize_view, View};

/// Elements that break the line of rendered text (so words in separate blocks stay apart).
fn is_block(name: &[u8]) -> bool {
    const BLOCK: &[&[u8]] = &[
        b"address",
        b"article",
        b"aside",
        b"blockquote",
        b"br",
        b"caption",
        b"dd",
        b"details",
        b"div",
        b"dl",
        b"dt",
        b"fieldset",
        b"figcaption",
        b"figure",
        b"footer",
        b"form",
        b"h1",
        b"h2",
        b"h3",
        b"h4",
        b"h5",
        b"h6",
        b"header",
        b"hr",
        b"li",
        b"main",
        b"mx-reply",
        b"nav",
        b"ol",
        b"p",
        b"pre",
        b"section",
        b"summary",
        b"table",
        b"tbody",
        b"td",
        b"tfoot",
        b"th",
        b"thead",
        b"tr",
        b"ul",
    ];
    BLOCK.iter().any(|b| b.eq_ignore_ascii_case(name))
}

/// Append `value` (bytes the tokenizer produced for the original span `span`) to `view`:
/// byte for byte when the value is the original's bytes, else every byte mapped to the whole
/// span (a run with a decoded character reference).
fn append(view: &mut View, src: &str, value: &[u8], span: Span<usize>) {
    let (s, e) = (
        span.start.min(src.len()),
        span.end.min(src.len()).max(span.start.min(src.len())),
    );
    let before = view.text.len();
    if src.as_bytes().get(s..e) == Some(value) && src.is_char_boundary(s) && src.is_char_boundary(e)
    {
        // The original bytes themselves (no reference decoded): no UTF-8 check needed.
        view.text.push_str(&src[s..e]);
        view.map.extend((s..e).map(|k| (k as u32, k as u32 + 1)));
    } else {
        view.text.push_str(&String::from_utf8_lossy(value));
        let whole = (s as u32, e.max(s + 1).min(src.len().max(1)) as u32);
        view.map
            .extend(std::iter::repeat_n(whole, view.text.len() - before));
    }
}

/// Append a tag or attribute name in the case the writer used (the tokenizer lower-cases
/// names; a case-sensitive rule must still see `<GEHEIM>`): the original bytes near `span`
/// that equal `name` ignoring ASCII case, else `name` itself.
fn append_name(view: &mut View, src: &str, name: &[u8], span: Span<usize>) {
    let lo = span.start.min(src.len());
    let hi = (span.end + name.len() + 2).min(src.len());
    let window = &src.as_bytes()[lo..hi];
    if !name.is_empty() && name.len() <= window.len() {
        if let Some(at) = window
            .windows(name.len())
            .position(|w| w.eq_ignore_ascii_case(name))
        {
            let s = lo + at;
            if src.is_char_boundary(s) && src.is_char_boundary(s + name.len()) {
                return append(
                    view,
                    src,
                    &src.as_bytes()[s..s + name.len()],
                    Span {
                        start: s,
                        end: s + name.len(),
                    },
                );
            }
        }
    }
    append(view, src, name, span)
}

/// A separator that belongs to no original byte in particular (mapped to the nearest one).
fn separate(view: &mut View, at: usize, c: char) {
    if view.text.is_empty() || view.text.ends_with(c) {
        return;
    }
    view.text.push(c);
    let at = at as u32;
    view.map.push((at, at + 1));
}

/// Read `src` as HTML into `text` (rendered text) and `markup` (comments, tag names, attribute
/// names and values, doctype fields, one item per line); both views are normalised. The
/// scratch buffers are reused between calls.
pub fn render(
    src: &str,
    text: &mut View,
    markup: &mut View,
    scratch: &mut String,
    scratch_map: &mut Vec<(u32, u32)>,
) {
    text.text.clear();
    text.map.clear();
    markup.text.clear();
    markup.map.clear();
    {
        let emitter = CallbackEmitter::new(
            |event: CallbackEvent<'_>, span: Span<usize>| -> Option<()> {
                let last = span.end.min(src.len()).saturating_sub(1);
                match event {
                    CallbackEvent::String { value } => append(text, src, value, span),
                    CallbackEvent::OpenStartTag { name } | CallbackEvent::EndTag { name } => {
                        if is_block(name) {
                            separate(text, last, '\n');
                        }
                        append_name(markup, src, name, span);
                        separate(markup, last, '\n');
                    }
                    CallbackEvent::AttributeName { name } => {
                        append_name(markup, src, name, span);
                        separate(markup, last, '\n');
                    }
                    CallbackEvent::AttributeValue { value } => {
                        append(markup, src, value, span);
                        separate(markup, last, '\n');
                    }
                    CallbackEvent::Comment { value } => {
                        append(markup, src, value, span);
                        separate(markup, last, '\n');
                    }
                    CallbackEvent::Doctype {
                        name,
                        public_identifier,
                        system_identifier,
                        ..
                    } => {
                        for v in [Some(name), public_identifier, system_identifier]
                            .into_iter()
                            .flatten()
                        {
                            append(markup, src, v, span);
                            separate(markup, last, '\n');
                        }
                    }
                    CallbackEvent::CloseStartTag { .. } | CallbackEvent::Error(_) => {}
                }
                None
            },
        );
        let tokenizer = Tokenizer::new_with_emitter(src, emitter);
        for item in tokenizer {
            let _: Result<(), Infallible> = item;
        }
    }
    normalize_view(text, scratch, scratch_map);
    normalize_view(markup, scratch, scratch_map);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::ViewKind;

    fn views(s: &str) -> (View, View) {
        let mut t = View::new(ViewKind::HtmlText);
        let mut m = View::new(ViewKind::HtmlMarkup);
        let (mut a, mut b) = (String::new(), Vec::new());
        render(s, &mut t, &mut m, &mut a, &mut b);
        (t, m)
    }

    #[test]
    fn references_decode_as_in_a_browser() {
        assert_eq!(views("&#x47;&#0000069;HEIM").0.text, "GEHEIM");
        assert_eq!(views("&#00000000000000071;EHEIM").0.text, "GEHEIM");
        // Legacy named reference without `;`, and the umlaut stripped by normalisation.
        assert_eq!(views("F&UumlR").0.text, "FUR");
        assert_eq!(
            views("&Gscr;EHEIM").0.text,
            "GEHEIM",
            "named reference for a script letter, NFKC"
        );
        assert_eq!(views("a &amp b").0.text, "a & b");
    }

    #[test]
    fn inline_tags_join_blocks_separate_markup_is_its_own_view() {
        let (t, m) = views(
            "<p>GEH<b>EIM</b></p><p>Rest</p><!-- GEHEIM --><img src=\"x\" data-x=\"VS-NfD\">",
        );
        assert!(t.text.contains("GEHEIM"), "{:?}", t.text);
        assert!(t.text.contains("\nRest"), "{:?}", t.text);
        assert!(!t.text.contains("VS-NfD"));
        assert!(m.text.contains(" GEHEIM "), "{:?}", m.text);
        assert!(m.text.contains("VS-NfD"), "{:?}", m.text);
        assert!(m.text.contains("data-x"), "{:?}", m.text);
        let (_, m) = views("<GEHEIM>x</GEHEIM>");
        assert!(
            m.text.contains("GEHEIM"),
            "tag names in the writer's case: {:?}",
            m.text
        );
    }

    #[test]
    fn spans_map_to_the_original_bytes() {
        let src = "<b>Hallo</b> GEHEIM";
        let (t, _) = views(src);
        let at = t.text.find("GEHEIM").unwrap();
        let (s, e) = t.original(at, at + 6);
        assert_eq!(&src[s..e], "GEHEIM");
        let src = "x &#71;EHEIM y";
        let (t, _) = views(src);
        let at = t.text.find("GEHEIM").unwrap();
        let (s, e) = t.original(at, at + 6);
        assert!(src[s..e].contains("&#71;EHEIM"), "{:?}", &src[s..e]);
    }

    #[test]
    fn malformed_markup_never_fails() {
        for s in [
            "<",
            "<<<>",
            "<a href='",
            "&#xFFFFFFFFFF;",
            "<!--",
            "</>",
            "<!DOCTYPE",
            "&#0;",
            "<a b=c d='e' f=\"g",
        ] {
            let _ = views(s);
        }
    }
}
