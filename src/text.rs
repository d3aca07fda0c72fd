//! The one text pipeline: how the guard reads a string before any rule sees it.
//!
//! Every layer that judges text (the DLP engine, the config's keyword rules, label markings)
//! matches on the *views* of a string that this module produces, in the form a reader on the
//! other side would see it — never on the raw bytes alone.
//!
//! # Views
//!
//! 1. **Normalised text** ([`normalize_into`]), always:
//!    * controls are removed (C0 and C1, also ASCII ones such as NUL or ESC), except tab, line
//!      feed and carriage return, which stay as they are;
//!    * default-ignorable and format code points are removed: zero-width space/joiners, soft
//!      hyphen, word joiner and the other invisible operators, bidi controls (U+202A–U+202E,
//!      U+2066–U+2069, U+061C, U+200E/F), variation selectors, tag characters, Hangul fillers,
//!      the BOM, and every other character of General_Category `Cf`;
//!    * compatibility decomposition (NFKD: fullwidth forms, mathematical alphanumerics,
//!      ligatures, circled and superscript letters become their plain letters), then every
//!      combining mark (General_Category `M`) is removed — `GEHEİM`, `Ǵ`, `ü` read as `GEHEIM`,
//!      `G`, `u`;
//!    * letters and digits in circles, squares, parentheses or with a full stop become the
//!      plain letters and digits, also where NFKD has no mapping or adds punctuation: `🅶🅴🅷🅴🅸🅼`,
//!      `🅖🅔🅗🅔🅘🅜`, `🄖🄔🄗🄔🄘🄜` and `⒢⒠⒣⒠⒤⒨` read as `GEHEIM` and `geheim`, `❶⓫⑵⒊` as `11123`;
//!    * dashes a reader takes for a hyphen (en and em dash, minus sign, horizontal bar, `ー`, …;
//!      [`is_dash`]) become `-`, so `VS—NfD` reads as `VS-NfD`;
//!    * space separators (NBSP, thin and ideographic spaces, …) become U+0020, line and
//!      paragraph separators a line feed.
//!
//!    Rules are compiled through the same function, so a rule literal `FÜR` matches `FUR`,
//!    `FÜR`, `F&Uuml;R` or `ＦÜＲ` alike. Case is untouched here: case sensitivity stays a
//!    per-rule choice.
//! 2. **HTML** ([`html`]): a string that contains `&` or `<` is also read as HTML with a WHATWG
//!    tokenizer (html5gum: every named character reference including the legacy ones without
//!    `;`, numeric references of any length), giving two more views, each normalised as above:
//!    the *rendered text* (text tokens with references decoded; block elements and `<br>`
//!    become line breaks, inline tags nothing, so `GEH<b>EIM</b>` reads `GEHEIM`) and the
//!    *markup* (comments, tag names, attribute names and values, doctype fields — everything
//!    that is not rendered text — one item per line).
//! 3. **Decoded** ([`decoded`]): where a view has runs of percent escapes, quoted-printable,
//!    backslash escapes, hex (also as a dump with separators), base64 or base32 that decode
//!    to text (`%47%45%48%45%49%4D`, `=47=45HEIM`, `\u0047EHEIM`, `47454845494D`,
//!    `47 45 48 45 49 4D`, `R0VIRUlN`, `I5CUQRKJJU`), a view with those runs decoded,
//!    normalised as above (and decoded again, up to three levels, where the result is encoded
//!    too).
//! 4. **Confusables** ([`confusables`]), for rules that ask for them: every non-ASCII letter
//!    whose Unicode TS #39 skeleton equals that of an ASCII letter is replaced by that letter
//!    (Cyrillic `Е` → `E`, Greek `Ι` → `I`), on each of the views above.
//!
//! # Spans
//!
//! Each byte of a view knows the byte range of the original string it came from
//! ([`View::original`]), so a match in any view is reported as a span of the original bytes
//! (for `policy explain` and masked excerpts). A character that expands (`ﬁ` → `fi`) maps every
//! output byte to the whole character; in HTML text, a run that contained a character
//! reference maps to the whole run.
//!
//! # Fast path
//!
//! A string of printable ASCII (plus tab, line feed, carriage return) without `&` or `<` is
//! its own normalised form and has no HTML view: [`Views::build`] then copies nothing unless
//! it has encoded runs.
//!
//! # Known limits
//!
//! Text spread out by the writer (`G E H E I M`, one letter per line or per message), text in
//! images, leetspeak digits (`GEHE1M`), homoglyphs made of several characters, letter
//! substitutions (ROT13), encoded runs shorter than [`decoded::MIN_RUN`] and decimal
//! character codes are not undone. See `docs/scanning.md`.
pub mod confusables;
pub mod decoded;
pub mod html;

use std::borrow::Cow;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Which reading of a string a view is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewKind {
    /// The string itself, normalised.
    Text,
    /// The string read as HTML: rendered text, normalised.
    HtmlText,
    /// The string read as HTML: comments, tag and attribute names, attribute values.
    HtmlMarkup,
    /// One of the views above with its percent-escaped, quoted-printable, backslash-escaped,
    /// hex, base64 and base32 runs decoded ([`decoded`]), or such a view decoded again.
    Decoded,
}

impl ViewKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ViewKind::Text => "text",
            ViewKind::HtmlText => "html_text",
            ViewKind::HtmlMarkup => "html_markup",
            ViewKind::Decoded => "decoded",
        }
    }
}

/// One view of a string: text plus, per byte, the original byte range it came from.
#[derive(Debug, Clone)]
pub struct View {
    pub kind: ViewKind,
    /// The confusables mapping was applied.
    pub confusable: bool,
    pub text: String,
    /// Per byte of `text`: `(start, end)` in the original; empty when the view is the
    /// original itself (identity).
    map: Vec<(u32, u32)>,
}

impl View {
    fn new(kind: ViewKind) -> View {
        View {
            kind,
            confusable: false,
            text: String::new(),
            map: Vec::new(),
        }
    }

    /// The original byte span of the view span `start..end` (`start < end`).
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        if self.map.is_empty() || start >= end {
            return (start, end);
        }
        let s = self.map[start.min(self.map.len() - 1)].0;
        let e = self.map[(end - 1).min(self.map.len() - 1)].1;
        (s as usize, e.max(s) as usize)
    }

    /// Is the view the original string, byte for byte?
    pub fn is_identity(&self) -> bool {
        self.map.is_empty()
    }
}

/// Does `s` need anything of the pipeline (non-ASCII, controls)? `false` means `s` is its
/// own normalised form.
#[inline]
pub fn needs_normalizing(s: &str) -> bool {
    s.bytes()
        .any(|b| !(0x20..0x7f).contains(&b) && !matches!(b, b'\t' | b'\n' | b'\r'))
}

/// Does `s` also need reading as HTML?
#[inline]
pub fn looks_like_html(s: &str) -> bool {
    memchr::memchr2(b'&', b'<', s.as_bytes()).is_some()
}

/// Characters the pipeline removes outright (besides combining marks).
pub fn is_removed(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r');
    }
    matches!(c,
        '\u{80}'..='\u{9f}'          // C1 controls
        | '\u{ad}'                   // soft hyphen
        | '\u{34f}'                  // combining grapheme joiner
        | '\u{61c}'                  // Arabic letter mark
        | '\u{115f}' | '\u{1160}'    // Hangul fillers
        | '\u{17b4}' | '\u{17b5}'    // Khmer inherent vowels
        | '\u{180b}'..='\u{180f}'    // Mongolian variation selectors, vowel separator
        | '\u{200b}'..='\u{200f}'    // zero-width space/non-joiner/joiner, LRM, RLM
        | '\u{202a}'..='\u{202e}'    // bidi embeddings and overrides
        | '\u{2060}'..='\u{206f}'    // word joiner, invisible operators, bidi isolates, deprecated format
        | '\u{3164}'                 // Hangul filler
        | '\u{fe00}'..='\u{fe0f}'    // variation selectors
        | '\u{feff}'                 // BOM / zero-width no-break space
        | '\u{ffa0}'                 // halfwidth Hangul filler
        | '\u{fff0}'..='\u{fff8}'    // unassigned specials
        | '\u{1bca0}'..='\u{1bca3}'  // shorthand format controls
        | '\u{1d173}'..='\u{1d17a}'  // musical format controls
        | '\u{e0000}'..='\u{e0fff}'  // tags, variation selectors supplement
    ) || matches!(
        c.general_category(),
        GeneralCategory::Format | GeneralCategory::Control
    )
}

/// Push the normalised form of `c` (original span `span`) to `out`/`map`.
#[inline]
fn push_normalized(c: char, span: (u32, u32), out: &mut String, map: &mut Vec<(u32, u32)>) {
    let put = |d: char, out: &mut String, map: &mut Vec<(u32, u32)>| {
        let before = out.len();
        out.push(d);
        map.extend(std::iter::repeat_n(span, out.len() - before));
    };
    if c.is_ascii() {
        if !is_removed(c) {
            put(c, out, map);
        }
        return;
    }
    if is_removed(c) {
        return;
    }
    match c.general_category() {
        GeneralCategory::SpaceSeparator => return put(' ', out, map),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            return put('\n', out, map)
        }
        _ => {}
    }
    if enclosed(c, |d| put(d, out, map)) {
        return;
    }
    decompose_compatible(c, |d| {
        if d.is_ascii() {
            if !is_removed(d) {
                put(d, out, map);
            }
        } else if is_dash(d) {
            put('-', out, map);
        } else if !is_combining_mark(d) && !is_removed(d) {
            match d.general_category() {
                GeneralCategory::SpaceSeparator => put(' ', out, map),
                _ => put(d, out, map),
            }
        }
    });
}

/// Dashes and hyphens a reader takes for `-`: the hyphens, figure, en and em dashes, the
/// horizontal bar, the minus sign, the two- and three-em dashes, the Armenian, Hebrew and
/// Mongolian hyphens, the presentation forms, and the Katakana prolonged sound mark `ー` (a
/// letter, but drawn as an em dash: `GEHEIMー` reads as `GEHEIM-`). Dashes drawn as `=` or `~`
/// (double hyphens, wave dashes) are not.
pub fn is_dash(c: char) -> bool {
    const DASHES: &[char] = &[
        '\u{2d7}',
        '\u{58a}',
        '\u{5be}',
        '\u{1806}',
        '\u{2010}',
        '\u{2011}',
        '\u{2012}',
        '\u{2013}',
        '\u{2014}',
        '\u{2015}',
        '\u{2043}',
        '\u{2212}',
        '\u{2796}',
        '\u{2e1a}',
        '\u{2e3a}',
        '\u{2e3b}',
        '\u{2e5d}',
        '\u{30fc}',
        '\u{fe31}',
        '\u{fe32}',
        '\u{fe58}',
        '\u{ff70}',
        '\u{10ead}',
    ];
    DASHES.contains(&c)
}

/// Letters and digits drawn in a circle or square, in parentheses or with a full stop or comma
/// (Enclosed Alphanumerics and their supplement, the dingbat digits): `put` gets the plain
/// letters or digits a reader sees, and the function says whether `c` was one. NFKD gives most
/// of them with their parentheses or full stop (`⒜` → `(a)`, `⒈` → `1.`), which would split a
/// word or a number, and nothing at all for the negative (white on black) and dingbat forms
/// (`🅶`, `🅖`, `❶`, `⓫`), and the squared words (`🆚` → `VS`). Regional indicators (`🇩🇪`)
/// are not mapped here: a reader sees flags (the look-alike view maps them).
fn enclosed(c: char, mut put: impl FnMut(char)) -> bool {
    let cp = c as u32;
    let nth = |first: u32, base: u8| char::from(base + (cp - first) as u8);
    let mut number = |n: u32| {
        if n >= 10 {
            put(char::from(b'0' + (n / 10) as u8));
        }
        put(char::from(b'0' + (n % 10) as u8));
    };
    match cp {
        // Negative circled and negative squared Latin capitals.
        0x1f150..=0x1f169 => put(nth(0x1f150, b'A')),
        0x1f170..=0x1f189 => put(nth(0x1f170, b'A')),
        // Negative circled numbers 11–20; double circled, dingbat circled and negative circled
        // digits 1–10; negative and dingbat circled zeros.
        0x24eb..=0x24f4 => number(cp - 0x24eb + 11),
        0x24f5..=0x24fe => number(cp - 0x24f5 + 1),
        0x2776..=0x277f => number(cp - 0x2776 + 1),
        0x2780..=0x2789 => number(cp - 0x2780 + 1),
        0x278a..=0x2793 => number(cp - 0x278a + 1),
        0x24ff | 0x1f10b | 0x1f10c => number(0),
        // Squared words (`🆚`, `🆗`, `🆘`, …) and the negative squared letters beside them.
        0x1f18a..=0x1f1ac => {
            const WORDS: [&str; 35] = [
                "P", "IC", "PA", "SA", "AB", "WC", "DJ", "CL", "COOL", "FREE", "ID", "NEW", "NG",
                "OK", "SOS", "UP!", "VS", "3D", "2ndScr", "2K", "4K", "8K", "5.1", "7.1", "22.2",
                "60P", "120P", "d", "HC", "HDR", "Hi-Res", "Lossless", "SHV", "UHD", "VOD",
            ];
            WORDS[(cp - 0x1f18a) as usize].chars().for_each(&mut put);
        }
        // Parenthesised digits and letters, digits with a full stop or comma: NFKD without
        // the punctuation.
        0x2474..=0x24b5 | 0x1f100..=0x1f10a | 0x1f110..=0x1f129 => {
            decompose_compatible(c, |d| {
                if d.is_ascii_alphanumeric() {
                    put(d)
                }
            });
        }
        _ => return false,
    }
    true
}

/// Normalise `src` into `out` (cleared first), with `map` the original span of every output
/// byte. `base` maps `src` itself to an earlier original (empty: `src` is the original).
pub fn normalize_into(src: &str, base: &[(u32, u32)], out: &mut String, map: &mut Vec<(u32, u32)>) {
    out.clear();
    map.clear();
    out.reserve(src.len());
    map.reserve(src.len());
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Copy runs of printable ASCII in one go.
        let run = bytes[i..]
            .iter()
            .position(|&b| !(0x20..0x7f).contains(&b) && !matches!(b, b'\t' | b'\n' | b'\r'))
            .unwrap_or(bytes.len() - i);
        if run > 0 {
            out.push_str(&src[i..i + run]);
            if base.is_empty() {
                map.extend((i..i + run).map(|k| (k as u32, k as u32 + 1)));
            } else {
                map.extend_from_slice(&base[i..i + run]);
            }
            i += run;
            if i >= bytes.len() {
                break;
            }
        }
        let c = src[i..].chars().next().expect("char boundary");
        let len = c.len_utf8();
        let span = if base.is_empty() {
            (i as u32, (i + len) as u32)
        } else {
            (base[i].0, base[i + len - 1].1)
        };
        push_normalized(c, span, out, map);
        i += len;
    }
}

/// The normalised form of `s` (rule literals and patterns are compiled through this).
pub fn normalize(s: &str) -> Cow<'_, str> {
    if !needs_normalizing(s) {
        return Cow::Borrowed(s);
    }
    let (mut out, mut map) = (String::new(), Vec::new());
    normalize_into(s, &[], &mut out, &mut map);
    Cow::Owned(out)
}

/// The views of one string, built into reusable buffers.
#[derive(Debug, Default)]
pub struct Views {
    views: Vec<View>,
    used: usize,
    scratch: String,
    scratch_map: Vec<(u32, u32)>,
}

impl Views {
    pub fn new() -> Views {
        Views::default()
    }

    fn slot(&mut self, kind: ViewKind) -> usize {
        if self.used == self.views.len() {
            self.views.push(View::new(kind));
        }
        let v = &mut self.views[self.used];
        v.kind = kind;
        v.confusable = false;
        v.text.clear();
        v.map.clear();
        self.used += 1;
        self.used - 1
    }

    /// The string as its only view, without any normalisation: the engine before the text
    /// pipeline existed (the benchmark's baseline).
    pub fn build_raw(&mut self, s: &str) -> &[View] {
        self.used = 0;
        let i = self.slot(ViewKind::Text);
        self.views[i].text.push_str(s);
        &self.views[..self.used]
    }

    /// Build the views of `s`: the normalised text, plus the HTML views when `s` contains
    /// `&` or `<`, plus the decoded form of each of these that has encoded runs, plus (with
    /// `confusables`) the confusables-mapped form of each view where it differs. Returns them
    /// (valid until the next `build`).
    pub fn build(&mut self, s: &str, confusables: bool) -> &[View] {
        self.build_with(s, confusables, true)
    }

    /// [`Views::build`] without the decoded views: the benchmark's baseline for them.
    pub fn build_undecoded(&mut self, s: &str, confusables: bool) -> &[View] {
        self.build_with(s, confusables, false)
    }

    fn build_with(&mut self, s: &str, confusables: bool, decode: bool) -> &[View] {
        self.used = 0;
        let i = self.slot(ViewKind::Text);
        if needs_normalizing(s) {
            let v = &mut self.views[i];
            normalize_into(s, &[], &mut v.text, &mut v.map);
        } else {
            self.views[i].text.push_str(s);
        }
        if looks_like_html(s) {
            let t = self.slot(ViewKind::HtmlText);
            let m = self.slot(ViewKind::HtmlMarkup);
            let (a, b) = self.views.split_at_mut(m);
            html::render(
                s,
                &mut a[t],
                &mut b[0],
                &mut self.scratch,
                &mut self.scratch_map,
            );
        }
        let n = if decode { self.used } else { 0 };
        for k in 0..n {
            let mut from = k;
            for _ in 0..decoded::MAX_LEVELS {
                let j = self.slot(ViewKind::Decoded);
                let (a, b) = self.views.split_at_mut(j);
                if !decoded::decode_view(&a[from], &mut b[0]) {
                    self.used -= 1;
                    break;
                }
                normalize_view(&mut b[0], &mut self.scratch, &mut self.scratch_map);
                from = j;
            }
        }
        if confusables {
            let n = self.used;
            for k in 0..n {
                if !confusables::has_mapped(&self.views[k].text) {
                    continue;
                }
                let j = self.slot(self.views[k].kind);
                let (a, b) = self.views.split_at_mut(j);
                confusables::map_view(&a[k], &mut b[0]);
            }
        }
        &self.views[..self.used]
    }
}

/// Normalise an already built view in place (used by the HTML reader): `view.text` with its
/// map becomes its normalised form.
pub(crate) fn normalize_view(
    view: &mut View,
    scratch: &mut String,
    scratch_map: &mut Vec<(u32, u32)>,
) {
    if !needs_normalizing(&view.text) {
        return;
    }
    normalize_into(&view.text, &view.map, scratch, scratch_map);
    std::mem::swap(&mut view.text, scratch);
    std::mem::swap(&mut view.map, scratch_map);
}

#[cfg(test)]
mod tests;
