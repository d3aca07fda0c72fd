//! Look-alike letters (Unicode TS #39 confusables), for the rules that ask for them.
//!
//! The table maps every non-ASCII character whose TS #39 *skeleton* (from the
//! `unicode-security` crate, combining marks removed) equals the skeleton of a printable ASCII
//! character to that ASCII character: Cyrillic `Е`, Greek `Ε` and the like become `E`. Where
//! several ASCII characters share a skeleton (`I`, `l`, `1`, `|` all have the skeleton `l`),
//! the one of the same kind is chosen: an upper-case letter for an upper-case look-alike, a
//! lower-case letter for a lower-case one, a digit for a digit, so a case-sensitive rule for
//! `GEHEIM` still matches `GEHEΙM` with a Greek capital iota.
//!
//! The TS #39 data maps no Latin small capital (`ɢᴇʜᴇɪᴍ`) to an ASCII letter, although a
//! reader sees a capital word; the table adds them ([`SMALL_CAPITALS`]), mapped to the ASCII
//! capital they show.
//!
//! Regional indicators (`🇦`–`🇿`) map to their capitals here, though not in the plain view:
//! a pair that is no flag shows as boxed letters.
//!
//! Only non-ASCII characters are mapped: ASCII text and ASCII rule patterns are untouched, so
//! the mapping works for regular expressions and keywords alike. The table is built once per
//! process on first use (a few tens of milliseconds).
use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::char::is_combining_mark;

use super::View;

fn skeleton(c: char) -> String {
    let mut buf = [0u8; 4];
    unicode_security::skeleton(c.encode_utf8(&mut buf))
        .filter(|d| !is_combining_mark(*d))
        .collect()
}

/// Rank of an ASCII candidate for a look-alike `c` (lower is better).
fn rank(c: char, a: char) -> u8 {
    let same = (c.is_uppercase() && a.is_ascii_uppercase())
        || (c.is_lowercase() && a.is_ascii_lowercase())
        || (c.is_numeric() && a.is_ascii_digit());
    match (same, a.is_ascii_alphanumeric()) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => 2,
    }
}

/// Latin small capitals and the ASCII capital each one shows (Unicode blocks IPA Extensions,
/// Phonetic Extensions, Latin Extended-D).
pub const SMALL_CAPITALS: &[(char, char)] = &[
    ('\u{1d00}', 'A'),
    ('\u{299}', 'B'),
    ('\u{1d04}', 'C'),
    ('\u{1d05}', 'D'),
    ('\u{1d07}', 'E'),
    ('\u{a730}', 'F'),
    ('\u{262}', 'G'),
    ('\u{29c}', 'H'),
    ('\u{26a}', 'I'),
    ('\u{1d0a}', 'J'),
    ('\u{1d0b}', 'K'),
    ('\u{29f}', 'L'),
    ('\u{1d0d}', 'M'),
    ('\u{274}', 'N'),
    ('\u{1d0f}', 'O'),
    ('\u{1d18}', 'P'),
    ('\u{a7af}', 'Q'),
    ('\u{280}', 'R'),
    ('\u{a731}', 'S'),
    ('\u{1d1b}', 'T'),
    ('\u{1d1c}', 'U'),
    ('\u{1d20}', 'V'),
    ('\u{1d21}', 'W'),
    ('\u{28f}', 'Y'),
    ('\u{1d22}', 'Z'),
];

fn build() -> Vec<(char, char)> {
    let mut by_skeleton: HashMap<String, Vec<char>> = HashMap::new();
    for a in (0x21u8..0x7f).map(char::from) {
        by_skeleton.entry(skeleton(a)).or_default().push(a);
    }
    let mut table = Vec::new();
    for cp in 0x80u32..=0x1_ffff {
        let Some(c) = char::from_u32(cp) else {
            continue;
        };
        if super::is_removed(c) || is_combining_mark(c) || c.is_whitespace() {
            continue;
        }
        let s = skeleton(c);
        if s.len() > 4 {
            continue;
        }
        if let Some(cands) = by_skeleton.get(&s) {
            let best = cands
                .iter()
                .copied()
                .min_by_key(|&a| rank(c, a))
                .expect("non-empty");
            table.push((c, best));
        }
    }
    // Regional indicators: a pair that is no flag shows as two boxed capitals (`🇬🇪🇭🇪🇮🇲`).
    // The plain view keeps them as symbols (a flag after a word keeps it a word); here they
    // read as letters, so a rule that asks for look-alikes sees both readings.
    let regional = (0u8..26)
        .filter_map(|i| char::from_u32(0x1f1e6 + u32::from(i)).map(|c| (c, char::from(b'A' + i))));
    for (c, a) in SMALL_CAPITALS.iter().copied().chain(regional) {
        match table.iter_mut().find(|e| e.0 == c) {
            Some(e) => e.1 = a,
            None => table.push((c, a)),
        }
    }
    table.sort_unstable_by_key(|e| e.0);
    table
}

fn table() -> &'static [(char, char)] {
    static TABLE: OnceLock<Vec<(char, char)>> = OnceLock::new();
    TABLE.get_or_init(build)
}

/// The ASCII look-alike of `c`, if it has one.
pub fn prototype(c: char) -> Option<char> {
    if c.is_ascii() {
        return None;
    }
    let t = table();
    t.binary_search_by_key(&c, |e| e.0).ok().map(|i| t[i].1)
}

/// Does `s` contain a character the table maps?
pub fn has_mapped(s: &str) -> bool {
    !s.is_ascii() && s.chars().any(|c| prototype(c).is_some())
}

/// Map every character of `s` that has an ASCII look-alike (for rule literals).
pub fn map_str(s: &str) -> String {
    s.chars().map(|c| prototype(c).unwrap_or(c)).collect()
}

/// `out` becomes `src` with every mapped character replaced; spans still lead to the
/// original.
pub(super) fn map_view(src: &View, out: &mut View) {
    out.kind = src.kind;
    out.confusable = true;
    out.text.clear();
    out.map.clear();
    for (i, c) in src.text.char_indices() {
        let d = prototype(c).unwrap_or(c);
        let before = out.text.len();
        out.text.push(d);
        let span = if src.map.is_empty() {
            (i as u32, (i + c.len_utf8()) as u32)
        } else {
            (src.map[i].0, src.map[i + c.len_utf8() - 1].1)
        };
        out.map
            .extend(std::iter::repeat_n(span, out.text.len() - before));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_map_to_ascii_of_the_same_kind() {
        assert_eq!(prototype('\u{415}'), Some('E'), "Cyrillic capital IE");
        assert_eq!(prototype('\u{435}'), Some('e'), "Cyrillic small ie");
        assert_eq!(prototype('\u{399}'), Some('I'), "Greek capital iota");
        assert_eq!(prototype('\u{41c}'), Some('M'), "Cyrillic capital em");
        assert_eq!(prototype('\u{397}'), Some('H'), "Greek capital eta");
        assert_eq!(prototype('\u{41d}'), Some('H'), "Cyrillic capital en");
        assert_eq!(prototype('G'), None, "ASCII is never mapped");
        assert_eq!(
            map_str("\u{262}\u{1d07}\u{29c}\u{1d07}\u{26a}\u{1d0d}"),
            "GEHEIM",
            "Latin small capitals"
        );
        assert_eq!(prototype('ß'), None);
        assert_eq!(map_str("G\u{415}H\u{415}\u{406}\u{41c}"), "GEHEIM");
    }

    #[test]
    fn spans_survive_mapping() {
        let src = View {
            kind: super::super::ViewKind::Text,
            confusable: false,
            text: "x \u{415}y".into(),
            map: Vec::new(),
        };
        let mut out = View::new(super::super::ViewKind::Text);
        map_view(&src, &mut out);
        assert_eq!(out.text, "x Ey");
        assert_eq!(out.original(2, 3), (2, 4));
    }
}
