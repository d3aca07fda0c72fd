//! A small, bounded XML tree built on quick-xml, just enough for SPIFs and labels.
//!
//! Design notes:
//! - Input is size-bounded by the caller ([`parse`] takes a limit) and the tree is bounded in
//!   depth and element count, so hostile input cannot exhaust memory or the stack.
//! - Element and attribute names are matched by *local* name (the `spif:` prefix of the NATO
//!   SPIF and the unprefixed conformance SPIFs are the same vocabulary); `xml:lang` is the one
//!   attribute matched with its prefix. Each element records its resolved namespace URI so
//!   label parsers can check the document namespace.
//! - End-tag names are deliberately *not* checked against start tags: the conformance data
//!   (`food-policy.xml`) closes `<securityCategoryTagSet>` with a misspelt end tag, which the
//!   reference implementation accepts. Nesting is still tracked by the start/end sequence.
//! - Only the predefined entities and character references are expanded; a DTD is refused.
use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::Reader;

/// Maximum element nesting depth.
pub const MAX_DEPTH: usize = 64;
/// Maximum number of elements in one document.
pub const MAX_ELEMENTS: usize = 400_000;

/// An XML syntax or limit error with the (1-based) line where it was detected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("XML error at line {line}: {message}")]
pub struct XmlError {
    pub line: usize,
    pub message: String,
}

/// One element: local name, namespace, attributes (qualified names as written), children and
/// the concatenated direct text content.
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: String,
    pub namespace: Option<String>,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
    pub line: usize,
}

impl Element {
    /// Attribute by local name (prefix ignored), except `xml:lang`, which must match exactly.
    pub fn attr(&self, name: &str) -> Option<&str> {
        if name.contains(':') {
            return self
                .attrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
        }
        self.attrs
            .iter()
            .find(|(k, _)| {
                let local = k.rsplit(':').next().unwrap_or(k);
                local == name && !k.starts_with("xmlns") && !k.starts_with("xml:")
            })
            .map(|(_, v)| v.as_str())
    }

    /// Child elements with the given local name, in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// First child element with the given local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Trimmed text content.
    pub fn trimmed_text(&self) -> &str {
        self.text.trim()
    }
}

/// Line numbers of increasing byte positions, counted incrementally: each byte is looked at
/// once per document, not once per element (a document of many small elements would
/// otherwise cost elements × bytes).
struct Lines<'a> {
    input: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lines<'_> {
    fn at(&mut self, pos: u64) -> usize {
        let pos = (pos as usize).min(self.input.len());
        if pos < self.pos {
            return line_of_bytes(self.input, pos);
        }
        self.line += self.input[self.pos..pos]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = pos;
        self.line
    }
}

fn line_of_bytes(input: &[u8], pos: usize) -> usize {
    input[..pos.min(input.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn line_of(input: &str, pos: u64) -> usize {
    line_of_bytes(input.as_bytes(), pos as usize)
}

fn split_qname(q: &str) -> (Option<&str>, &str) {
    match q.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, q),
    }
}

/// Parses `input` (at most `max_bytes` long) into its root element.
pub fn parse(input: &str, max_bytes: usize) -> Result<Element, XmlError> {
    if input.len() > max_bytes {
        return Err(XmlError {
            line: 1,
            message: format!(
                "document too large ({} bytes, limit {max_bytes})",
                input.len()
            ),
        });
    }
    let mut reader = Reader::from_str(input);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = false;
        cfg.trim_text(false);
        cfg.expand_empty_elements = false;
    }
    // Stack of open elements and of namespace scopes (prefix -> uri; "" = default namespace).
    let mut stack: Vec<Element> = Vec::new();
    let mut scopes: Vec<HashMap<String, String>> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let mut lines = Lines {
        input: input.as_bytes(),
        pos: 0,
        line: 1,
    };
    let err = |pos: u64, m: String| XmlError {
        line: line_of(input, pos),
        message: m,
    };
    loop {
        let pos = reader.buffer_position();
        let ev = reader
            .read_event()
            .map_err(|e| err(reader.error_position(), e.to_string()))?;
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                let empty = matches!(ev, Event::Empty(_));
                if root.is_some() {
                    return Err(err(pos, "content after the root element".into()));
                }
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(err(pos, format!("more than {MAX_ELEMENTS} elements")));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(err(pos, format!("nesting deeper than {MAX_DEPTH}")));
                }
                let qname = std::str::from_utf8(s.name().as_ref())
                    .map_err(|_| err(pos, "element name is not UTF-8".into()))?
                    .to_string();
                let mut attrs = Vec::new();
                let mut scope = HashMap::new();
                for a in s.attributes() {
                    let a = a.map_err(|e| err(pos, e.to_string()))?;
                    let key = std::str::from_utf8(a.key.as_ref())
                        .map_err(|_| err(pos, "attribute name is not UTF-8".into()))?
                        .to_string();
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| err(pos, e.to_string()))?
                        .into_owned();
                    if key == "xmlns" {
                        scope.insert(String::new(), value.clone());
                    } else if let Some(p) = key.strip_prefix("xmlns:") {
                        scope.insert(p.to_string(), value.clone());
                    }
                    attrs.push((key, value));
                }
                scopes.push(scope);
                let (prefix, local) = split_qname(&qname);
                let want = prefix.unwrap_or("");
                let namespace = scopes.iter().rev().find_map(|s| s.get(want)).cloned();
                let el = Element {
                    name: local.to_string(),
                    namespace,
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                    line: lines.at(pos),
                };
                if empty {
                    scopes.pop();
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| err(pos, "unexpected end tag".into()))?;
                scopes.pop();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| err(pos, e.to_string()))?;
                match stack.last_mut() {
                    Some(cur) => cur.text.push_str(&s),
                    None => {
                        if !s.trim().is_empty() {
                            return Err(err(pos, "text outside the root element".into()));
                        }
                    }
                }
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| err(pos, e.to_string()))?;
                match stack.last_mut() {
                    Some(cur) => cur.text.push_str(&s),
                    None => return Err(err(pos, "CDATA outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| err(pos, e.to_string()))?
                } else {
                    let name = std::str::from_utf8(&r).unwrap_or("");
                    match name {
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "amp" => Some('&'),
                        "apos" => Some('\''),
                        "quot" => Some('"'),
                        _ => return Err(err(pos, format!("unknown entity &{name};"))),
                    }
                };
                let ch = ch.ok_or_else(|| err(pos, "invalid character reference".into()))?;
                match stack.last_mut() {
                    Some(cur) => cur.text.push(ch),
                    None => return Err(err(pos, "reference outside the root element".into())),
                }
            }
            Event::DocType(_) => return Err(err(pos, "DOCTYPE is not allowed".into())),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError {
            line: line_of(input, input.len() as u64),
            message: "unexpected end of document (unclosed element)".into(),
        });
    }
    root.ok_or(XmlError {
        line: 1,
        message: "no root element".into(),
    })
}

/// Escapes text for element content or a double-quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixed_names_namespaces_and_entities() {
        let doc = r#"<?xml version="1.0"?><s:SPIF xmlns:s="urn:x"><s:a xml:lang="fr" s:b="1">x &amp; &#65;</s:a><c/></s:SPIF>"#;
        let root = parse(doc, 1 << 20).unwrap();
        assert_eq!(root.name, "SPIF");
        assert_eq!(root.namespace.as_deref(), Some("urn:x"));
        let a = root.child("a").unwrap();
        assert_eq!(a.attr("xml:lang"), Some("fr"));
        assert_eq!(a.attr("lang"), None);
        assert_eq!(a.attr("b"), Some("1"));
        assert_eq!(a.text, "x & A");
        assert!(root.child("c").unwrap().namespace.is_none());
    }

    #[test]
    fn rejects_truncation_doctype_limits() {
        assert!(parse("<a><b></b>", 1000).is_err());
        assert!(parse("<!DOCTYPE a []><a/>", 1000).is_err());
        assert!(parse("<a/>", 2).is_err());
        assert!(parse("<a>&foo;</a>", 100).is_err());
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        let e = parse(&deep, 1 << 20).unwrap_err();
        assert!(e.message.contains("nesting"), "{e}");
        assert!(parse("", 10).is_err());
    }

    #[test]
    fn tolerates_misspelt_end_tag_and_reports_lines() {
        let root = parse("<a>\n<b>\n</c>\n</a>", 100).unwrap();
        assert_eq!(root.children[0].name, "b");
        assert_eq!(root.children[0].line, 2);
        let e = parse("<a>\n\n<b x='1' x='2'/></a>", 100).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn element_lines_are_counted_once_through_the_document() {
        fn lines(e: &Element, out: &mut Vec<(String, usize)>) {
            out.push((e.name.clone(), e.line));
            for c in &e.children {
                lines(c, out);
            }
        }
        let doc = "<a>\n<b/><c>\n\n<d>t\n</d></c>\r\n<e\n x='\n'/>\n<f/></a>";
        let mut got = Vec::new();
        lines(&parse(doc, 1 << 10).unwrap(), &mut got);
        let want: Vec<(String, usize)> =
            [("a", 1), ("b", 2), ("c", 2), ("d", 4), ("e", 6), ("f", 9)]
                .iter()
                .map(|&(n, l)| (n.to_string(), l))
                .collect();
        assert_eq!(got, want);
        // Many elements on many lines: each one's line is right (the counter is incremental).
        let many: String = (0..2000).map(|i| format!("<x i='{i}'/>\n")).collect();
        let root = parse(&format!("<r>\n{many}</r>"), 1 << 20).unwrap();
        assert_eq!(root.children.len(), 2000);
        for (i, c) in root.children.iter().enumerate() {
            assert_eq!(c.line, i + 2);
        }
    }
}
