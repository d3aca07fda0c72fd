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
//!   lines, so `GEH=⏎EIM` reads `GEHEIM`. An `=` followed by a run that decodes
//!   (`?d=47454845494D`) is a query string's, not an escape;
//! * **backslash escapes** as programming languages write them: a run of `\uXXXX` (UTF-16
//!   code units) or of `\xXX` (bytes);
//! * **hex**: a run of at least [`MIN_RUN`] hex digits of even length (also after `0x`); and
//!   hex dumps: groups of 2 to 8 hex digits (an even number; with the `0x` of the first group
//!   or without) with one to three of space, tab, `,`, `:`, `;` or `-` between them, at least
//!   [`MIN_PAIRS`] bytes (`47 45 48 45 49 4D`, `47-45-48-…`, `4745 4845 494D` as `xxd`
//!   groups them, `0x47, 0x45, 0x48, 0x45`); a last group glued to a word is left out;
//! * **base64** (standard or URL-safe alphabet, padding optional): a run of at least
//!   [`MIN_RUN`] characters of the alphabet, with its padding, that looks encoded rather than
//!   like a word — it has a digit, `+`, `/` or padding, or an upper-case letter after a
//!   lower-case one (`Nachrichtenübermittlung` and `E-Mail-Adresse` are left alone);
//! * **base32** (RFC 4648 alphabet, padding optional): such a run in capitals and digits
//!   `2`–`7` (`I5CUQRKJJU======`), or in small letters and those digits if it looks encoded
//!   as above; tried before base64, whose random output rarely has base32's alphabet.
//!
//! A run is taken between characters that are not letters, digits, `+`, `/`, `-` or `_`;
//! where such a run does not decode, its parts between `/`, `-` and `_` are tried on their
//! own (`/d/47454845494D`, `ID-47454845494D`, `Bericht_R0VIRUlN_final`). Lines of one width
//! (a multiple of 4, at least [`MIN_RUN`]: base64 and hex as encoders wrap them at 76, 64 or
//! 60 characters) and lines joined by soft line breaks are one run, so a word across a line
//! break is found.
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

/// The fewest bytes of a hex dump with separators (`47 45 48 45`, `4745 4845`).
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
    /// Groups with separators, but too few bytes: where the last group starts (the scan goes
    /// on there, so no dump is read twice).
    Not(usize),
}

/// The separator between two groups of a hex dump at `at`: one to three of space, tab, `,`,
/// `:`, `;` and `-`. Its length.
fn separator(b: &[u8], at: usize) -> usize {
    b[at..]
        .iter()
        .take(3)
        .take_while(|c| matches!(c, b' ' | b'\t' | b',' | b':' | b';' | b'-'))
        .count()
}

/// A group of a hex dump at `at`: an even number of hex digits, 2 to 8 (`47`, `4745` as
/// `xxd` groups them), after `0x` where `prefixed`. The end of its prefix and its end.
fn group(b: &[u8], at: usize, prefixed: bool) -> Option<(usize, usize)> {
    let from = if prefixed {
        b.get(at..at + 2)?
            .eq_ignore_ascii_case(b"0x")
            .then_some(at + 2)?
    } else {
        at
    };
    let n = b[from..]
        .iter()
        .take(9)
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    ((2..=8).contains(&n) && n.is_multiple_of(2)).then_some((from, from + n))
}

/// A hex dump at `i`: groups of hex digits ([`group`], with the `0x` prefix of the first or
/// without) with separators ([`separator`]) between them, at least [`MIN_PAIRS`] bytes; a
/// last group glued to a letter or digit is not part of it. `None` where `i` does not start
/// two groups with a separator.
fn hex_dump(b: &[u8], i: usize) -> Option<Dump> {
    let prefixed = matches!(b.get(i..i + 2), Some([b'0', b'x' | b'X']));
    let (mut from, mut to) = group(b, i, prefixed)?;
    let second = separator(b, to);
    if second == 0 || group(b, to + second, prefixed).is_none() {
        return None;
    }
    let mut bytes = Vec::new();
    let mut start = i;
    let (mut end, mut last);
    loop {
        last = bytes.len();
        bytes.extend((from..to).step_by(2).map(|k| hex_byte(&b[k..k + 2])));
        end = to;
        let sep = separator(b, end);
        match (sep > 0).then(|| group(b, end + sep, prefixed)).flatten() {
            Some(g) => {
                start = end + sep;
                (from, to) = g;
            }
            None => break,
        }
    }
    if b.get(end).is_some_and(u8::is_ascii_alphanumeric) {
        // glued to a word: the dump ends before that group
        bytes.truncate(last);
        end = b[..start]
            .iter()
            .rposition(u8::is_ascii_hexdigit)
            .map_or(i, |k| k + 1);
    }
    Some(if bytes.len() >= MIN_PAIRS {
        Dump::Bytes(end, bytes)
    } else {
        Dump::Not(start)
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
    if b.len() < 2 {
        return None;
    }
    // an odd length: little-endian text whose last zero byte was cut off
    let padded;
    let b = if b.len().is_multiple_of(2) {
        b
    } else if b.len() >= 3 && b.iter().skip(1).step_by(2).all(|&c| c == 0) {
        padded = [b, &[0]].concat();
        &padded
    } else {
        return None;
    };
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

/// A hex, base32 or base64 run (padding included) decoded to text; `encoded`: it looks
/// encoded ([`looks_encoded`]). Hex first (also after `0x`), then base32 where the run has its
/// alphabet (base64 of random bytes almost never does), then base64.
fn decode_run(run: &str, encoded: bool) -> Option<String> {
    let b = run.as_bytes();
    if encoded {
        let hex = match b {
            [b'0', b'x' | b'X', rest @ ..] => rest,
            _ => b,
        };
        if hex.len().is_multiple_of(2) && hex.iter().all(u8::is_ascii_hexdigit) {
            let bytes = hex.chunks_exact(2).map(hex_byte).collect();
            if let Some(t) = to_text(bytes, false) {
                return Some(t);
            }
        }
    }
    if let Some(t) = base32(run, encoded) {
        return Some(t);
    }
    if !encoded {
        return None;
    }
    // base64 pads with two `=` at most; more (base32's) are not part of the data
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    let run = &run[..run.len() - pad.saturating_sub(2)];
    let url_safe = run.bytes().any(|c| matches!(c, b'-' | b'_'));
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
        // at most 7 bits are left over from before: with 5 more, 12 are enough
        acc = ((acc << 5) | u32::from(v)) & 0xfff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
        }
    }
    to_text(bytes, false)
}

/// The length of a line break at `at` (`\n` or `\r\n`), or 0.
fn newline(b: &[u8], at: usize) -> usize {
    match b.get(at..) {
        Some([b'\n', ..]) => 1,
        Some([b'\r', b'\n', ..]) => 2,
        _ => 0,
    }
}

/// The end of the padding (up to [`MAX_PADDING`] `=`) after a run ending at `j`.
fn padding_end(b: &[u8], j: usize) -> usize {
    j + b[j..]
        .iter()
        .take(MAX_PADDING)
        .take_while(|&&c| c == b'=')
        .count()
}

/// Not followed by a character of the alphabet.
fn bounded(b: &[u8], k: usize) -> bool {
    b.get(k).is_none_or(|&c| !is_alphabet(c))
}

/// Where the block of lines that starts with the run `i..j` ends: encoders wrap base64 and
/// hex into lines of one width (76, 64 or 60 characters; the width is a multiple of 4 and at
/// least [`MIN_RUN`]), quoted-printable with soft line breaks (any width). `j` if the run is
/// one line.
fn block_end(b: &[u8], i: usize, j: usize) -> usize {
    let width = j - i;
    let (mut end, mut line) = (j, width);
    loop {
        let soft = if end < b.len() { soft_break(b, end) } else { 0 };
        let brk = if soft > 0 {
            soft
        } else if line == width && width >= MIN_RUN && width.is_multiple_of(4) {
            newline(b, end)
        } else {
            0
        };
        let next = end + brk;
        if brk == 0 || !b.get(next).is_some_and(|&c| is_alphabet(c)) {
            return end;
        }
        let e = run_end(b, next);
        (line, end) = (e - next, e);
    }
}

/// The hex, base32 or base64 run `i..j` (its padding after it) decoded: its end and text.
fn single_run(s: &str, i: usize, j: usize) -> Option<(usize, String)> {
    let b = s.as_bytes();
    let k = padding_end(b, j);
    if j - i < MIN_RUN || !bounded(b, k) {
        return None;
    }
    let text = decode_run(&s[i..k], looks_encoded(&b[i..j], k > j))?;
    Some((k, text))
}

/// The parts of the run `i..j` between `/`, `-` and `_` that decode on their own
/// (`/d/47454845494D`, `ID-47454845494D`, `Bericht_R0VIRUlN`), into `found`. Where the scan
/// goes on.
fn parts(s: &str, i: usize, j: usize, found: &mut Vec<(usize, usize, String)>) -> usize {
    let mut next = j;
    let mut at = i;
    let b = s.as_bytes();
    for part in s[i..j].split(['/', '-', '_']) {
        let start = at;
        at += part.len() + 1;
        let end = start + part.len();
        // the last part ends the run: its padding and boundary are the run's
        let k = if end == j { padding_end(b, j) } else { end };
        if part.len() < MIN_RUN || (end == j && !bounded(b, k)) {
            continue;
        }
        if let Some(t) = decode_run(&s[start..k], looks_encoded(part.as_bytes(), k > end)) {
            found.push((start, k, t));
            next = next.max(k);
        }
    }
    next
}

/// A run at `i` that [`runs`] would decode (a hex dump or a single run).
fn decodes_at(s: &str, i: usize) -> bool {
    let b = s.as_bytes();
    if i >= b.len() || !is_alphabet(b[i]) {
        return false;
    }
    if let Some(Dump::Bytes(..)) = hex_dump(b, i) {
        return true;
    }
    single_run(s, i, run_end(b, i)).is_some()
}

/// The runs of `s` that decode to text: (start, end, text), in order. Empty (and without
/// allocating) for the common string that has none. One pass: every branch goes on after
/// what it read (a block of lines that did not decode as a whole is read line by line, but
/// is not taken for a block again).
fn runs(s: &str) -> Vec<(usize, usize, String)> {
    let b = s.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    let mut no_block_until = 0;
    while i < b.len() {
        // `key=47454845494D`: an `=` before a run that decodes is no escape
        if b[i] == b'=' && is_escape(b, i) && decodes_at(s, i + 1) {
            i += 1;
            continue;
        }
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
                // no dump starts inside this one either: on from its last group
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
            if i >= no_block_until {
                let end = block_end(b, i, j);
                if end > j {
                    // the lines of a wrapped block, joined
                    let mut joined: String = s[i..end]
                        .chars()
                        .filter(|c| !matches!(c, '=' | '\r' | '\n'))
                        .collect();
                    let k = padding_end(b, end);
                    let encoded = looks_encoded(joined.as_bytes(), k > end);
                    joined.push_str(&s[end..k]);
                    if let Some(t) = bounded(b, k)
                        .then(|| decode_run(&joined, encoded))
                        .flatten()
                    {
                        found.push((i, k, t));
                        i = k;
                        continue;
                    }
                    no_block_until = end;
                }
            }
            if let Some((k, t)) = single_run(s, i, j) {
                found.push((i, k, t));
                i = k;
                continue;
            }
            i = if j - i > MIN_RUN && s[i..j].contains(['/', '-', '_']) {
                parts(s, i, j, &mut found)
            } else {
                j
            };
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
