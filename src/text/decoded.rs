//! The decoded view: runs of a string that are encoded text, decoded.
//!
//! A writer can hide a word from every text rule by encoding it: `%47%45%48%45%49%4D` in a
//! link, `R0VIRUlN` as base64, `47454845494D` as hex — the receiver's browser, a terminal or
//! a one-line script reads it back. [`decode_view`] writes a view of the string in which every
//! such run is replaced by what it decodes to:
//!
//! * **percent escapes**: a run of consecutive `%XX` escapes (plain characters between runs
//!   stay as they are, so `%47EHEIM` reads `GEHEIM`);
//! * **backslash escapes** as programming languages write them: a run of `\uXXXX` (UTF-16
//!   code units) or of `\xXX` (bytes);
//! * **hex**: a run of at least [`MIN_RUN`] hex digits of even length, between characters that
//!   are not letters, digits, `+`, `/`, `-` or `_`;
//! * **base64** (standard or URL-safe alphabet, padding optional): a run of at least
//!   [`MIN_RUN`] characters of the alphabet, with its padding, between such characters, that
//!   looks encoded rather than like a word — it has a digit, `+`, `/` or padding, or an
//!   upper-case letter after a lower-case one (`Nachrichtenübermittlung` and
//!   `E-Mail-Adresse` are left alone).
//!
//! A run is replaced only if its bytes are text without control characters (tab, line feed
//! and carriage return allowed) — UTF-8, or UTF-16 with a byte order mark or with every other
//! byte zero; anything else — ids, hashes, random tokens — stays as it is. Every byte of a
//! decoded run maps to the whole run in the original. What a run decodes to may be encoded
//! again (base64 inside percent escapes): [`crate::text::Views::build`] decodes up to
//! [`MAX_LEVELS`] times, each level a view of its own.
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::View;

/// The shortest hex or base64 run read as encoded text (8 base64 characters are 6 bytes).
pub const MIN_RUN: usize = 8;

/// How many times a string is decoded (encodings inside encodings).
pub const MAX_LEVELS: usize = 3;

const CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);

fn is_alphabet(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_')
}

fn is_escape(b: &[u8], i: usize) -> bool {
    b[i] == b'%'
        && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
}

/// The end of the alphabet run starting at `i`.
fn run_end(b: &[u8], i: usize) -> usize {
    i + b[i..].iter().take_while(|&&c| is_alphabet(c)).count()
}

/// Not a word: padded, or with a digit, `+` or `/`, or an upper-case letter after a
/// lower-case one (`-` and `_` alone are no sign: hyphenated words have them); and of a
/// length base64 can have. One pass over the run.
fn looks_encoded(run: &[u8], padded: bool) -> bool {
    if run.len() % 4 == 1 {
        return false;
    }
    let mut sign = padded;
    let (mut standard, mut url_safe) = (false, false);
    let mut lower = false;
    for &c in run {
        match c {
            b'0'..=b'9' => sign = true,
            b'+' | b'/' => {
                sign = true;
                standard = true;
            }
            b'-' | b'_' => url_safe = true,
            b'A'..=b'Z' if lower => sign = true,
            _ => {}
        }
        lower = c.is_ascii_lowercase();
    }
    sign && !(standard && url_safe)
}

/// Text, not bytes: not empty, no control characters (tab, line feed, carriage return
/// allowed).
fn clean(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// `bytes` as [`clean`] text: UTF-8, or UTF-16 ([`utf16`]).
fn as_text(bytes: Vec<u8>) -> Option<String> {
    match String::from_utf8(bytes) {
        Ok(text) if clean(&text) => Some(text),
        Ok(text) => utf16(text.as_bytes()).filter(|t| clean(t)),
        Err(e) => utf16(e.as_bytes()).filter(|t| clean(t)),
    }
}

/// UTF-16 with a byte order mark, or without one where every other byte is zero (text of
/// Latin letters): the byte order the zeros show.
fn utf16(b: &[u8]) -> Option<String> {
    if b.len() < 2 || !b.len().is_multiple_of(2) {
        return None;
    }
    let (body, little) = match b {
        [0xff, 0xfe, rest @ ..] => (rest, true),
        [0xfe, 0xff, rest @ ..] => (rest, false),
        _ if b.iter().skip(1).step_by(2).all(|&c| c == 0) => (b, true),
        _ if b.iter().step_by(2).all(|&c| c == 0) => (b, false),
        _ => return None,
    };
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| {
            if little {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        })
        .collect();
    String::from_utf16(&units).ok()
}

/// Where a run of `\uXXXX` or `\xXX` escapes starts at `i`: its kind (`u` or `x`).
fn escape_kind(b: &[u8], i: usize) -> Option<u8> {
    if b[i] != b'\\' {
        return None;
    }
    let hex = |from: usize, n: usize| {
        b.get(from..from + n)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    };
    match b.get(i + 1) {
        Some(b'u') if hex(i + 2, 4) => Some(b'u'),
        Some(b'x') if hex(i + 2, 2) => Some(b'x'),
        _ => None,
    }
}

/// A hex or base64 run (padding included) decoded to text.
fn decode_run(run: &str) -> Option<String> {
    let b = run.as_bytes();
    if b.len().is_multiple_of(2) && b.iter().all(u8::is_ascii_hexdigit) {
        let bytes = (0..b.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&run[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        if let Some(t) = as_text(bytes) {
            return Some(t);
        }
    }
    let url_safe = b.iter().any(|c| matches!(c, b'-' | b'_'));
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    as_text(engine.decode(run).ok()?)
}

/// The runs of `s` that decode to text: (start, end, text), in order. Empty (and without
/// allocating) for the common string that has none.
fn runs(s: &str) -> Vec<(usize, usize, String)> {
    let b = s.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_escape(b, i) {
            let start = i;
            let mut bytes = Vec::new();
            while i < b.len() && is_escape(b, i) {
                bytes.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(0));
                i += 3;
            }
            if let Some(t) = as_text(bytes) {
                found.push((start, i, t));
            }
            continue;
        }
        if let Some(kind) = escape_kind(b, i) {
            // a run of escapes of one kind: UTF-16 code units or bytes
            let start = i;
            let width = if kind == b'u' { 6 } else { 4 };
            let mut units = Vec::new();
            while i < b.len() && escape_kind(b, i) == Some(kind) {
                units.push(u16::from_str_radix(&s[i + 2..i + width], 16).unwrap_or(0));
                i += width;
            }
            let text = if kind == b'u' {
                String::from_utf16(&units).ok().filter(|t| clean(t))
            } else {
                as_text(units.iter().map(|&u| u as u8).collect())
            };
            if let Some(t) = text {
                found.push((start, i, t));
            }
            continue;
        }
        if is_alphabet(b[i]) {
            // the rest of a run glued to an escape is no run of its own
            let glued = i > 0 && is_alphabet(b[i - 1]);
            let j = run_end(b, i);
            if glued {
                i = j;
                continue;
            }
            let mut k = j;
            while k < b.len() && b[k] == b'=' && k - j < 2 {
                k += 1;
            }
            let bounded = k == b.len() || !is_alphabet(b[k]);
            if j - i >= MIN_RUN && bounded && looks_encoded(&b[i..j], k > j) {
                if let Some(t) = decode_run(&s[i..k]) {
                    found.push((i, k, t));
                    i = k;
                    continue;
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    found
}

/// Writes into `out` the view `src` with its encoded runs decoded. Returns whether any run
/// was; `out` is only written then.
pub fn decode_view(src: &View, out: &mut View) -> bool {
    let s = src.text.as_str();
    let found = runs(s);
    if found.is_empty() {
        return false;
    }
    let span = |start: usize, end: usize| -> (u32, u32) {
        if src.map.is_empty() {
            (start as u32, end as u32)
        } else {
            (src.map[start].0, src.map[end - 1].1)
        }
    };
    let mut at = 0;
    for (start, end, text) in found {
        out.text.push_str(&s[at..start]);
        out.map.extend((at..start).map(|k| span(k, k + 1)));
        let whole = span(start, end);
        out.text.push_str(&text);
        out.map.extend(std::iter::repeat_n(whole, text.len()));
        at = end;
    }
    out.text.push_str(&s[at..]);
    out.map.extend((at..s.len()).map(|k| span(k, k + 1)));
    true
}
