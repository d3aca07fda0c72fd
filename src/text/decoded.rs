//! The decoded view: runs of a string that are encoded text, decoded.
//!
//! A writer can hide a word from every text rule by encoding it: `%47%45%48%45%49%4D` in a
//! link, `R0VIRUlN` as base64, `47454845494D` as hex — the receiver's browser, a terminal or
//! a one-line script reads it back. [`decode_view`] writes a view of the string in which every
//! such run is replaced by what it decodes to:
//!
//! * **percent escapes** and **quoted-printable**: a run of consecutive `%XX` or `=XX`
//!   escapes (plain characters between runs stay as they are, so `%47EHEIM` and `GEH=45IM`
//!   read `GEHEIM`); quoted-printable's soft line breaks (`=` at the end of a line) join the
//!   lines, so `GEH=⏎EIM` reads `GEHEIM`;
//! * **backslash escapes** as programming languages write them: a run of `\uXXXX` (UTF-16
//!   code units) or of `\xXX` (bytes);
//! * **hex**: a run of at least [`MIN_RUN`] hex digits of even length, between characters that
//!   are not letters, digits, `+`, `/`, `-` or `_`; and hex dumps: at least [`MIN_PAIRS`]
//!   pairs of hex digits with one separator between them, each pair with or without `0x`
//!   (`47 45 48 45 49 4D`, `47:45:48:45:49:4D`, `0x47, 0x45, 0x48, 0x45`);
//! * **base64** (standard or URL-safe alphabet, padding optional): a run of at least
//!   [`MIN_RUN`] characters of the alphabet, with its padding, between such characters, that
//!   looks encoded rather than like a word — it has a digit, `+`, `/` or padding, or an
//!   upper-case letter after a lower-case one (`Nachrichtenübermittlung` and
//!   `E-Mail-Adresse` are left alone);
//! * **base32** (RFC 4648 alphabet, padding optional): such a run in capitals and digits
//!   `2`–`7` (`I5CUQRKJJU======`), or in small letters and those digits if it looks encoded
//!   as above.
//!
//! What a run decodes to is read as UTF-8, or as UTF-16 where it has a byte order mark or
//! every other byte zero. Escapes and hex dumps say that they are encoded, so they are
//! always replaced: invalid byte sequences are dropped and control characters are left to
//! normalisation, which removes them (`GEH%00EIM`, `%FFGEHEIM` read `GEHEIM`). Hex, base64
//! and base32 runs look like ids, hashes and random tokens, so they are replaced only if
//! they decode to text: without control characters or invalid sequences (tab, line feed and
//! carriage return allowed), or — stray characters at either end aside — with at least four
//! letters and at most one stray character per four others (`00` before `47454845494D`);
//! anything else stays as it is. Every byte of a decoded run maps to the whole run in the
//! original. What a run decodes to may be encoded again (base64 inside percent escapes):
//! [`crate::text::Views::build`] decodes up to [`MAX_LEVELS`] times, each level a view of
//! its own.
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::View;

/// The shortest hex or base64 run read as encoded text (8 base64 characters are 6 bytes).
pub const MIN_RUN: usize = 8;

/// How many times a string is decoded (encodings inside encodings).
pub const MAX_LEVELS: usize = 3;

/// The fewest pairs of a hex dump with separators (`47 45 48 45`).
pub const MIN_PAIRS: usize = 4;

/// The most padding characters a run can end with (base32 has up to 6).
const MAX_PADDING: usize = 6;

const CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);

fn is_alphabet(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_')
}

/// A percent (`%XX`) or quoted-printable (`=XX`) escape at `i`.
fn is_escape(b: &[u8], i: usize) -> bool {
    matches!(b[i], b'%' | b'=')
        && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
}

/// The length of a quoted-printable soft line break (`=` at the end of a line) at `i`, or 0.
fn soft_break(b: &[u8], i: usize) -> usize {
    match &b[i..] {
        [b'=', b'\r', b'\n', ..] => 3,
        [b'=', b'\n', ..] => 2,
        _ => 0,
    }
}

/// The value of the hex digits `h` (two of them).
fn hex_byte(h: &[u8]) -> u8 {
    let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    digit(h[0]) << 4 | digit(h[1])
}

/// What [`hex_dump`] found at `i`.
enum Dump {
    /// A dump: its end and bytes.
    Bytes(usize, Vec<u8>),
    /// Pairs with separators, but too few or followed by a letter or digit: where the last
    /// pair starts (every dump starting at a later pair would be the same or shorter).
    Not(usize),
}

/// A hex dump at `i`: at least [`MIN_PAIRS`] pairs of hex digits, each with the `0x` prefix
/// of the first or without, one separator (`, `, `,`, a space or `:`) between them, the last
/// not followed by a letter or digit. `None` where `i` starts no two pairs with a separator.
fn hex_dump(b: &[u8], i: usize) -> Option<Dump> {
    let prefix = match b.get(i..i + 2) {
        Some([b'0', b'x' | b'X']) => 2,
        _ => 0,
    };
    let pair = |at: usize| -> Option<u8> {
        let p = b.get(at..at + prefix + 2)?;
        let (x, h) = p.split_at(prefix);
        let prefixed = prefix == 0 || x.eq_ignore_ascii_case(b"0x");
        (prefixed && h.iter().all(u8::is_ascii_hexdigit)).then(|| hex_byte(h))
    };
    let width = prefix + 2;
    let first = pair(i)?;
    let mut at = i + width;
    let sep: &[u8] = match b.get(at) {
        Some(b',' | b' ' | b':') => [b", ".as_slice(), b",", b" ", b":"]
            .into_iter()
            .find(|s| b[at..].starts_with(s) && pair(at + s.len()).is_some())?,
        _ => return None,
    };
    let mut bytes = vec![first];
    while b[at..].starts_with(sep) {
        match pair(at + sep.len()) {
            Some(v) => {
                bytes.push(v);
                at += sep.len() + width;
            }
            None => break,
        }
    }
    let bounded = b.get(at).is_none_or(|c| !c.is_ascii_alphanumeric());
    Some(if bytes.len() >= MIN_PAIRS && bounded {
        Dump::Bytes(at, bytes)
    } else {
        Dump::Not(at - width)
    })
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

/// What decoded bytes read as: [`clean`] text (UTF-8, or UTF-16 as [`utf16_units`] finds it)
/// as it is. Otherwise the text a reader's software shows — invalid sequences dropped,
/// control characters kept here (normalisation removes them from the view), so stray bytes
/// (`%00GEHEIM`, `\x00`, a `00` in a hex dump) cannot hide a word — for *explicit*
/// encodings (escapes and hex dumps say what they are) always; for the others (hex, base64,
/// base32 runs, which ids, hashes and tokens resemble) only where, stray characters at either
/// end aside, at least four characters are letters and at most one in five is not text.
fn to_text(bytes: Vec<u8>, explicit: bool) -> Option<String> {
    let units = utf16_units(&bytes);
    let text = match String::from_utf8(bytes) {
        Ok(text) if clean(&text) => return Some(text),
        Ok(text) if units.is_none() => text,
        Err(e) if units.is_none() => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        _ => char::decode_utf16(units.unwrap_or_default())
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
    };
    let stray = |c: char| {
        c == char::REPLACEMENT_CHARACTER || (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    };
    if !explicit {
        let (mut good, mut letters, mut not) = (0, 0, 0);
        for c in text.trim_matches(stray).chars() {
            if stray(c) {
                not += 1;
            } else {
                good += 1;
                letters += usize::from(c.is_alphabetic());
            }
        }
        if letters < 4 || not * 4 > good {
            return None;
        }
    }
    Some(text.replace(char::REPLACEMENT_CHARACTER, ""))
}

/// UTF-16 with a byte order mark, or without one where every other byte is zero (text of
/// Latin letters): the code units, in the byte order the zeros show.
fn utf16_units(b: &[u8]) -> Option<Vec<u16>> {
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
    let units = body
        .chunks_exact(2)
        .map(|c| {
            if little {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        })
        .collect();
    Some(units)
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
    // base64 pads with two `=` at most; more (base32's) are not part of the data
    let pad = run.bytes().rev().take_while(|&c| c == b'=').count();
    let run = &run[..run.len() - pad.saturating_sub(2)];
    let b = run.as_bytes();
    if b.len().is_multiple_of(2) && b.iter().all(u8::is_ascii_hexdigit) {
        let bytes = (0..b.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&run[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        if let Some(t) = to_text(bytes, false) {
            return Some(t);
        }
    }
    let url_safe = b.iter().any(|c| matches!(c, b'-' | b'_'));
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    to_text(engine.decode(run).ok()?, false)
}

/// A base32 run (padding included) decoded to text: capitals or small letters, not both,
/// and digits `2`–`7`; `any_case` allows small letters.
fn base32(run: &str, any_case: bool) -> Option<String> {
    let body = run.trim_end_matches('=').as_bytes();
    let upper = body.iter().all(|c| matches!(c, b'A'..=b'Z' | b'2'..=b'7'));
    let lower = any_case && body.iter().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7'));
    if !(upper || lower) || !matches!(body.len() % 8, 0 | 2 | 4 | 5 | 7) {
        return None;
    }
    let mut bytes = Vec::with_capacity(body.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            _ => c - b'2' + 26,
        };
        // at most 4 bits are left over from before, so 12 are enough
        acc = ((acc << 5) | u32::from(v)) & 0xfff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
        }
    }
    to_text(bytes, false)
}

/// The runs of `s` that decode to text: (start, end, text), in order. Empty (and without
/// allocating) for the common string that has none.
fn runs(s: &str) -> Vec<(usize, usize, String)> {
    let b = s.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_escape(b, i) || soft_break(b, i) > 0 {
            let start = i;
            let mut bytes = Vec::new();
            while i < b.len() {
                if is_escape(b, i) {
                    bytes.push(hex_byte(&b[i + 1..i + 3]));
                    i += 3;
                } else if soft_break(b, i) > 0 {
                    // the lines joined
                    i += soft_break(b, i);
                } else {
                    break;
                }
            }
            if let Some(t) = to_text(bytes, true) {
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
                // unpaired surrogates dropped, as invalid bytes are
                Some(
                    char::decode_utf16(units)
                        .filter_map(Result::ok)
                        .collect::<String>(),
                )
            } else {
                to_text(units.iter().map(|&u| u as u8).collect(), true)
            };
            if let Some(t) = text {
                found.push((start, i, t));
            }
            continue;
        }
        if b[i].is_ascii_hexdigit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            match hex_dump(b, i) {
                Some(Dump::Bytes(end, bytes)) => {
                    if let Some(t) = to_text(bytes, true) {
                        found.push((i, end, t));
                    }
                    i = end;
                    continue;
                }
                // no dump starts inside this one either: on from its last pair
                Some(Dump::Not(last)) => {
                    i = last;
                    continue;
                }
                None => {}
            }
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
            while k < b.len() && b[k] == b'=' && k - j < MAX_PADDING {
                k += 1;
            }
            let bounded = k == b.len() || !is_alphabet(b[k]);
            if j - i >= MIN_RUN && bounded {
                let encoded = looks_encoded(&b[i..j], k > j);
                let text = if encoded { decode_run(&s[i..k]) } else { None }
                    .or_else(|| base32(&s[i..k], encoded));
                if let Some(t) = text {
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
