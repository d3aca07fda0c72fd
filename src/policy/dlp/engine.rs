//! The compiled rule set and the scanner.
//!
//! # Design
//!
//! Compilation turns every rule of every file into one immutable [`Engine`]:
//!
//! * every `regex` pattern → one `regex-automata` meta regex (the ASCII dialect of
//!   [`super::rules`]) plus a [`prefilter`] plan: a required factor found in its HIR (a literal
//!   or a digit/upper/lower class sequence) and its maximum match length;
//! * literal factors and case-sensitive keywords → one Aho-Corasick automaton over the raw text;
//!   ASCII-case-insensitive keywords (non-ASCII letters expanded to their upper/lower variants)
//!   → a second one; case- and diacritic-folded keywords → a third, which runs on a lower-cased
//!   folded copy of the text (ASCII lower-cased, every non-ASCII character folded, positions
//!   mapped back through a breakpoint table). All three report every occurrence
//!   ([`AllMatches`]).
//!
//! A field is scanned with one pass of each automaton plus one block pass for the class
//! sequences (64 bytes at a time) — not a loop over rules. A pattern runs only inside the
//! windows around its factor's occurrences (exactly the matches a whole-field search finds:
//! see `regex_candidates`), and only those candidate spans go through the validator, value
//! allow-list and context words. Clean text (the common case) costs the automaton and block
//! passes. Buffers are per thread and reused.
//!
//! Rules are filtered before scanning: scope (direction, peer, room, event type) and
//! exceptions (file `[[exception]]`, rule `[rule.except]` senders/rooms/peers) decide which
//! rules are active for the event; field scope decides per field. `min_matches` counts
//! qualifying matches per rule within one field (so `body` and `formatted_body`, which usually
//! repeat each other, do not add up).
//!
//! The engine is `Send + Sync` and never mutated: share it as `Arc<Engine>` and swap the `Arc`
//! atomically to reload.
mod prefilter;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::{meta, Input};
use serde_json::Value;

use self::prefilter::{Hit, Triggers, TriggersBuilder};

use super::fields::{edu_texts, event_texts, EventParts, Field, Texts};
#[cfg(test)]
use super::rules::compile_regex;
use super::rules::{Action, Mode, RuleFile, Severity};
use super::validators::Validator;
use crate::telemetry::Direction;

/// What the scanner knows about the thing being scanned.
#[derive(Debug, Clone, Copy)]
pub struct ScanCtx<'a> {
    pub direction: Direction,
    /// The remote server name.
    pub peer: Option<&'a str>,
    pub room_id: Option<&'a str>,
    pub sender: Option<&'a str>,
    /// Event type (`m.room.message`), EDU type (`m.presence`) or a pseudo type for responses
    /// (`m.profile`, `m.directory`, `m.devices` — the caller's choice, matched by
    /// `scope.event_types`).
    pub event_type: &'a str,
}

/// One qualifying match.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub rule: Arc<str>,
    pub field: Field,
    /// Byte span in the extracted field text.
    pub start: usize,
    pub end: usize,
    /// The matched text with most characters masked (never the full value).
    pub excerpt: String,
    /// For generic fields (`content`, `unsigned`, `edu`): the JSON path of the string, key or
    /// number the match is in (`content.x.y`, `content.x (key)`); spans are then offsets into
    /// the field's blob (see [`super::fields::Texts`]).
    pub path: Option<String>,
    /// With `path`: where the string, key or number named by `path` starts in the blob, so
    /// `start - leaf_start .. end - leaf_start` is the span in that value itself (a reviewer's
    /// highlight); 0 otherwise.
    pub leaf_start: usize,
    /// Index of the scanned text among the texts passed to the scan (which piece of a unit).
    pub piece: usize,
    pub action: Action,
    pub mode: Mode,
    pub severity: Severity,
    pub confidence: f32,
}

/// The result of a scan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// The most severe action among matches of `enforce` rules (`Allow` if none).
    pub action: Action,
    /// The most severe action among matches of `shadow` rules (audit only).
    pub shadow_action: Action,
    /// Every qualifying match, enforce and shadow, in field order.
    pub matches: Vec<Match>,
}

impl Outcome {
    /// The verdict of one rule: its action if it matched, else `Allow`.
    pub fn verdict_of(&self, rule: &str) -> Action {
        self.matches
            .iter()
            .filter(|m| &*m.rule == rule)
            .map(|m| m.action)
            .max()
            .unwrap_or(Action::Allow)
    }
}

/// A `*`-glob (any run of characters).
#[derive(Debug, Clone)]
struct Glob(String);

impl Glob {
    fn new(s: &str, lower: bool) -> Glob {
        Glob(if lower {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        })
    }
    fn matches(&self, s: &str, lower: bool) -> bool {
        glob_match_by(self.0.as_bytes(), s.as_bytes(), lower)
    }
}

#[cfg(test)]
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    glob_match_by(p, s, false)
}

/// `lower`: compare `s` lower-cased (ASCII; the pattern is lower case already).
fn glob_match_by(p: &[u8], s: &[u8], lower: bool) -> bool {
    // Iterative matcher with single backtrack point.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len()
            && p[pi]
                == if lower {
                    s[si].to_ascii_lowercase()
                } else {
                    s[si]
                }
        {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn any_glob(globs: &[Glob], v: Option<&str>, lower: bool) -> bool {
    let Some(v) = v else { return false };
    globs.iter().any(|g| g.matches(v, lower))
}

#[derive(Debug)]
struct Context {
    ac: AhoCorasick,
    before: usize,
    after: usize,
    weight: f32,
}

#[derive(Debug)]
struct CRule {
    id: Arc<str>,
    action: Action,
    mode: Mode,
    severity: Severity,
    directions: Vec<Direction>,
    peers: Vec<Glob>,
    rooms: Vec<Glob>,
    event_types: Vec<Glob>,
    /// Bit mask of [`Field::bit`]; all ones when unrestricted.
    fields: u64,
    validator: Option<Validator>,
    confidence: f32,
    threshold: f32,
    min_matches: u32,
    context: Vec<Context>,
    except_senders: Vec<Glob>,
    except_rooms: Vec<Glob>,
    except_peers: Vec<Glob>,
    except_values: HashSet<String>,
    whole_word: bool,
    /// Also runs on the confusables views (`crate::text::confusables`).
    confusables: bool,
    /// Rule indices whose overlapping matches drop this rule's match.
    suppressed_by: Vec<usize>,
}

#[derive(Debug)]
struct CException {
    /// Rule indices; empty = all.
    rules: Vec<usize>,
    senders: Vec<Glob>,
    rooms: Vec<Glob>,
    peers: Vec<Glob>,
}

#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KwKind {
    Raw,
    Folded,
}

/// The keyword automata of the reference scan (overlapping search, tests only).
#[cfg(test)]
#[derive(Debug)]
struct Keywords {
    kind: KwKind,
    ac: AhoCorasick,
    /// Pattern index → rule index.
    rule: Vec<usize>,
}

/// An Aho-Corasick automaton that reports every occurrence of every pattern — the same set
/// as `find_overlapping_iter` — with the fast, prefilter-driven leftmost-longest search:
/// after a match at `s` the search restarts at `s + 1`, and the patterns that are prefixes of
/// the reported one (the only others that can start at `s`) are reported with it.
#[derive(Debug)]
struct AllMatches {
    ac: AhoCorasick,
    lens: Vec<usize>,
    /// Per pattern: the other patterns that are prefixes of it (equal ones included).
    prefixes: Vec<Vec<usize>>,
}

impl AllMatches {
    fn new(patterns: &[Vec<u8>], ci: bool) -> Result<AllMatches, CompileError> {
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(ci)
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns)
            .map_err(|e| CompileError(format!("keyword automaton: {e}")))?;
        let prefixes = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (0..patterns.len())
                    .filter(|&j| {
                        let q = &patterns[j];
                        j != i
                            && q.len() <= p.len()
                            && if ci {
                                q.eq_ignore_ascii_case(&p[..q.len()])
                            } else {
                                *q == p[..q.len()]
                            }
                    })
                    .collect()
            })
            .collect();
        Ok(AllMatches {
            ac,
            lens: patterns.iter().map(Vec::len).collect(),
            prefixes,
        })
    }

    /// Call `f(pattern, start, end)` for every occurrence.
    fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        let mut input = aho_corasick::Input::new(hay);
        while let Some(m) = self.ac.find(input.clone()) {
            let (p, s) = (m.pattern().as_usize(), m.start());
            f(p, s, m.end());
            for &q in &self.prefixes[p] {
                f(q, s, s + self.lens[q]);
            }
            if s + 1 >= hay.len() {
                break;
            }
            input.set_start(s + 1);
        }
    }
}

/// What a pattern of the raw (case-sensitive) automaton stands for.
#[derive(Debug, Clone, Copy)]
enum RawPat {
    /// A literal trigger (trigger id).
    Trig(u32),
    /// A case-sensitive keyword of a rule.
    Keyword(usize),
}

/// The compiled, immutable rule set (see the module docs).
#[derive(Debug)]
pub struct Engine {
    /// Process-unique id of this compiled rule set (keys the per-thread clean-text cache).
    id: u64,
    rules: Vec<CRule>,
    exceptions: Vec<CException>,
    /// One regex per pattern, the rule-file dialect (see [`super::rules::compile_regex`]).
    regexes: Vec<meta::Regex>,
    /// Per pattern: where it can match (see [`prefilter`]).
    plans: Vec<Plan>,
    triggers: Triggers,
    /// Pattern index → rule index.
    pattern_rule: Vec<usize>,
    /// Literal triggers and case-sensitive keywords, one pass over the raw text.
    raw: Option<(AllMatches, Vec<RawPat>)>,
    /// ASCII-case-insensitive keywords (non-ASCII case variants expanded) → rule index.
    raw_ci: Option<(AllMatches, Vec<usize>)>,
    /// Case- and diacritic-folded keywords (folded, lower case) on the folded text → rule.
    folded: Option<(AllMatches, Vec<usize>)>,
    /// No rule has a scope or an exception and there are no file exceptions: every rule is
    /// active for every event.
    unscoped: bool,
    /// Some rule matches look-alike letters: build confusables views.
    any_confusables: bool,
    #[cfg(test)]
    keywords: Vec<Keywords>,
    #[cfg(test)]
    reference: Vec<regex::bytes::Regex>,
}

/// How one pattern is searched.
#[derive(Debug)]
struct Plan {
    /// Trigger ids of its required factor; empty = no factor, search the whole field.
    trigs: Vec<u32>,
    /// Longest possible match; `None` = unbounded (search the whole field if a trigger
    /// occurs).
    max_len: Option<usize>,
}

/// Per-thread buffers reused between scans.
#[derive(Default)]
struct Scratch {
    hits: Vec<Hit>,
    last: Vec<usize>,
    want: Vec<bool>,
    windows: Vec<(usize, usize)>,
    /// The folded text and its breakpoints (see [`fold_into`]).
    folded: Vec<u8>,
    breaks: Vec<(usize, usize, usize, usize)>,
}

/// Texts up to this length may be remembered as clean.
const CLEAN_MAX: usize = 96;

/// Per-thread memory of short texts that an engine found clean (no match) in a field.
#[derive(Default)]
struct CleanCache {
    engine: u64,
    entries: Vec<(Field, Box<str>)>,
    next: usize,
}

impl CleanCache {
    const SIZE: usize = 64;

    fn contains(&self, engine: u64, field: Field, text: &str) -> bool {
        self.engine == engine
            && self
                .entries
                .iter()
                .any(|(f, t)| *f == field && &**t == text)
    }

    fn insert(&mut self, engine: u64, field: Field, text: &str) {
        if self.engine != engine {
            self.engine = engine;
            self.entries.clear();
            self.next = 0;
        }
        if self.entries.len() < Self::SIZE {
            self.entries.push((field, text.into()));
        } else {
            self.entries[self.next] = (field, text.into());
            self.next = (self.next + 1) % Self::SIZE;
        }
    }
}

thread_local! {
    static CLEAN: RefCell<CleanCache> = RefCell::new(CleanCache::default());
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    static VIEWS: RefCell<crate::text::Views> = RefCell::new(crate::text::Views::new());
}

/// The rule-file dialect as a `regex-automata` meta regex: the same configuration as
/// `regex::bytes::RegexBuilder` with `unicode(false)` and the size limits of
/// [`super::rules::regex_builder`], so matches are identical to [`compile_regex`]'s.
fn meta_regex(pattern: &str) -> Result<meta::Regex, String> {
    meta::Builder::new()
        .configure(
            meta::Config::new()
                .nfa_size_limit(Some(32 << 20))
                .hybrid_cache_capacity(32 << 20)
                .match_kind(regex_automata::MatchKind::LeftmostFirst)
                .utf8_empty(false),
        )
        .syntax(
            regex_automata::util::syntax::Config::new()
                .unicode(false)
                .utf8(false),
        )
        .build(pattern)
        .map_err(|e| e.to_string())
}

/// Analyse one pattern for its [`Plan`] (trigger references are provisional, see
/// [`TriggersBuilder::build`]).
fn plan_of(pattern: &str, tb: &mut TriggersBuilder) -> Result<Plan, String> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())?;
    let props = hir.properties();
    let max_len = props.maximum_len();
    // Patterns that can match the empty string have no required factor anyway; keep them on
    // the whole-field path explicitly (window search needs progress on every match).
    if props.minimum_len().is_none_or(|m| m == 0) {
        return Ok(Plan {
            trigs: Vec::new(),
            max_len,
        });
    }
    let trigs = match prefilter::required(&hir) {
        Some(r) => r.alts.iter().map(|f| tb.add(f) as u32).collect(),
        None => Vec::new(),
    };
    Ok(Plan { trigs, max_len })
}

/// Fold one character for diacritic- and case-insensitive comparison.
fn fold_char(c: char, out: &mut Vec<u8>) {
    let s = match c {
        'ä' | 'Ä' | 'à' | 'á' | 'â' | 'ã' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Å' | 'ā' | 'Ā' => {
            "a"
        }
        'æ' | 'Æ' => "ae",
        'ç' | 'Ç' | 'č' | 'Č' | 'ć' | 'Ć' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' | 'ē' | 'Ē' | 'ě' | 'Ě' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
        'ñ' | 'Ñ' | 'ń' | 'Ń' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => "o",
        'œ' | 'Œ' => "oe",
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' | 'ů' | 'Ů' => "u",
        'ý' | 'ÿ' | 'Ý' => "y",
        'ß' | 'ẞ' => "ss",
        'š' | 'Š' | 'ś' | 'Ś' => "s",
        'ž' | 'Ž' | 'ź' | 'Ź' | 'ż' | 'Ż' => "z",
        'ł' | 'Ł' => "l",
        '\u{2010}'..='\u{2015}' | '\u{2212}' => "-",
        _ => {
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase() as u8);
            } else {
                for l in c.to_lowercase() {
                    out.extend_from_slice(l.encode_utf8(&mut [0; 4]).as_bytes());
                }
            }
            return;
        }
    };
    out.extend_from_slice(s.as_bytes());
}

/// Fold a whole (short) string.
fn fold_str(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        fold_char(c, &mut out);
    }
    String::from_utf8(out).expect("folding keeps UTF-8")
}

/// Length of the leading ASCII run of `b`.
fn ascii_run(b: &[u8]) -> usize {
    let mut i = 0;
    while i + 8 <= b.len() {
        let w =
            u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes")) & 0x8080_8080_8080_8080;
        if w != 0 {
            return i + (w.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + b[i..]
        .iter()
        .position(|c| !c.is_ascii())
        .unwrap_or(b.len() - i)
}

/// Fold `s` for the folded keywords into `out`: ASCII lower-cased, every non-ASCII character
/// through [`fold_char`]; `breaks` gets (folded start, folded end, original start, original
/// end) per non-ASCII character. Lower-casing here lets the folded automaton search
/// case-sensitively (with its packed prefilter) instead of ASCII-case-insensitively.
fn fold_into(s: &str, out: &mut Vec<u8>, breaks: &mut Vec<(usize, usize, usize, usize)>) {
    out.clear();
    breaks.clear();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let run = ascii_run(&bytes[i..]);
        let at = out.len();
        out.resize(at + run, 0);
        for (d, &b) in out[at..].iter_mut().zip(&bytes[i..i + run]) {
            *d = b | (u8::from(b.wrapping_sub(b'A') < 26) << 5);
        }
        i += run;
        if i >= bytes.len() {
            break;
        }
        let c = s[i..].chars().next().expect("char boundary");
        let fs = out.len();
        fold_char(c, out);
        breaks.push((fs, out.len(), i, i + c.len_utf8()));
        i += c.len_utf8();
    }
}

fn break_entry(
    breaks: &[(usize, usize, usize, usize)],
    f: usize,
) -> Option<&(usize, usize, usize, usize)> {
    let idx = breaks.partition_point(|b| b.0 <= f);
    idx.checked_sub(1).map(|i| &breaks[i])
}

/// Original position of folded start position `f`.
fn map_start(breaks: &[(usize, usize, usize, usize)], f: usize) -> usize {
    match break_entry(breaks, f) {
        None => f,
        Some(&(_, fe, os, oe)) => {
            if f < fe {
                os
            } else {
                oe + (f - fe)
            }
        }
    }
}

/// Original position of folded end position `f`.
fn map_end(breaks: &[(usize, usize, usize, usize)], f: usize) -> usize {
    if f == 0 {
        return 0;
    }
    match break_entry(breaks, f - 1) {
        None => f,
        Some(&(_, fe, _, oe)) => {
            if f - 1 < fe {
                oe
            } else {
                oe + (f - fe)
            }
        }
    }
}

/// A folded copy of a haystack with the positions of its non-ASCII characters (the reference
/// scan's folding: ASCII case kept, searched ASCII-case-insensitively).
#[cfg(test)]
struct Folded {
    text: String,
    /// (folded start, folded end, original start, original end) per non-ASCII character.
    breaks: Vec<(usize, usize, usize, usize)>,
}

#[cfg(test)]
impl Folded {
    /// Fold non-ASCII characters only (ASCII case is handled by the automaton).
    fn new(s: &str) -> Folded {
        let mut text = Vec::with_capacity(s.len() + 16);
        let mut breaks = Vec::new();
        for (i, c) in s.char_indices() {
            if c.is_ascii() {
                text.push(c as u8);
            } else {
                let fs = text.len();
                fold_char(c, &mut text);
                breaks.push((fs, text.len(), i, i + c.len_utf8()));
            }
        }
        Folded {
            text: String::from_utf8(text).expect("UTF-8"),
            breaks,
        }
    }

    fn map_start(&self, f: usize) -> usize {
        map_start(&self.breaks, f)
    }

    fn map_end(&self, f: usize) -> usize {
        map_end(&self.breaks, f)
    }
}

/// What a character is to a whole-word keyword: letters continue letters and digits continue
/// digits (`GEHEIMNIS` is another word); a letter next to a digit is a word boundary, so
/// `GEHEIM1`, `2GEHEIM` and `GEHEIM¹` (a footnote marker; `¹` is a digit) show the word.
/// Everything else, `_` included, separates words (file names like `Bericht_GEHEIM.pdf`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum WordClass {
    Letter,
    Digit,
}

fn word_class(c: char) -> Option<WordClass> {
    if c.is_numeric() {
        Some(WordClass::Digit)
    } else if c.is_alphabetic() {
        Some(WordClass::Letter)
    } else {
        None
    }
}

/// Whether `a` followed by `b` is inside one word.
fn joins(a: char, b: char) -> bool {
    matches!((word_class(a), word_class(b)), (Some(x), Some(y)) if x == y)
}

/// Whole-word check on the original text.
fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let m = &text[start..end];
    if let (Some(before), Some(first)) = (text[..start].chars().next_back(), m.chars().next()) {
        if joins(before, first) {
            return false;
        }
    }
    if let (Some(last), Some(after)) = (m.chars().next_back(), text[end..].chars().next()) {
        if joins(last, after) {
            return false;
        }
    }
    true
}

/// Case variants of a keyword for the ASCII-case-insensitive automaton: non-ASCII letters
/// get their upper- and lower-case forms (at most 64 variants).
fn case_variants(k: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in k.chars() {
        let mut forms: Vec<String> = vec![c.to_string()];
        if !c.is_ascii() {
            for f in [
                c.to_lowercase().collect::<String>(),
                c.to_uppercase().collect::<String>(),
            ] {
                if !forms.contains(&f) {
                    forms.push(f);
                }
            }
        }
        if forms.len() > 1 && out.len() * forms.len() > 64 {
            forms.truncate(1);
        }
        out = out
            .iter()
            .flat_map(|p| forms.iter().map(move |f| format!("{p}{f}")))
            .collect();
    }
    out
}

/// Show at most four characters of a matched value: `DE**…**00`.
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().filter(|c| !c.is_control()).collect();
    let n = chars.len();
    let (head, tail) = match n {
        0..=3 => (0, 0),
        4..=9 => (1, 0),
        _ => (2, 2),
    };
    let hidden = n - head - tail;
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', hidden.min(12)));
    if hidden > 12 {
        out.push('…');
    }
    out.extend(&chars[n - tail..]);
    out
}

fn normalize_value(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Error while compiling a parsed rule set (only limits can fail: the parser checked every
/// pattern).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

fn ac(patterns: &[String], ci: bool) -> Result<AhoCorasick, CompileError> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(ci)
        .match_kind(MatchKind::Standard)
        .build(patterns)
        .map_err(|e| CompileError(format!("keyword automaton: {e}")))
}

impl Engine {
    /// Compile parsed rule files (already checked by the parser).
    pub fn compile(files: &[RuleFile]) -> Result<Engine, CompileError> {
        let all_rules: Vec<_> = files.iter().flat_map(|f| &f.rules).collect();
        let index_of = |id: &str| all_rules.iter().position(|r| r.id == id);
        let mut rules = Vec::new();
        let mut regexes = Vec::new();
        let mut plans = Vec::new();
        let mut tb = TriggersBuilder::default();
        #[cfg(test)]
        let mut reference = Vec::new();
        let mut pattern_rule = Vec::new();
        let (mut raw_cs, mut raw_cs_rule) = (Vec::new(), Vec::new());
        let (mut raw_ci, mut raw_ci_rule) = (Vec::new(), Vec::new());
        let (mut folded, mut folded_rule) = (Vec::new(), Vec::new());
        for (ri, r) in all_rules.iter().enumerate() {
            for p in &r.regex {
                let err = |e: String| CompileError(format!("rule {}: {e}", r.id));
                #[cfg(test)]
                reference.push(compile_regex(p).map_err(err)?);
                regexes.push(meta_regex(p).map_err(err)?);
                plans.push(plan_of(p, &mut tb).map_err(err)?);
                pattern_rule.push(ri);
            }
            for k in &r.keywords {
                // Keywords arrive normalised (the parser ran them through `crate::text`); a
                // confusables rule also matches its keyword's look-alike form.
                let mapped;
                let k = if r.confusables {
                    mapped = crate::text::confusables::map_str(k);
                    &mapped
                } else {
                    k
                };
                if r.case_sensitive {
                    raw_cs.push(k.clone());
                    raw_cs_rule.push(ri);
                } else if r.fold_diacritics {
                    folded.push(fold_str(k));
                    folded_rule.push(ri);
                } else {
                    for v in case_variants(k) {
                        raw_ci.push(v);
                        raw_ci_rule.push(ri);
                    }
                }
            }
            let mut context = Vec::new();
            for c in &r.context {
                let words: Vec<String> = c.words.iter().map(|w| fold_str(w)).collect();
                context.push(Context {
                    ac: ac(&words, true)?,
                    before: c.before,
                    after: c.after,
                    weight: c.weight,
                });
            }
            let fields = if r.scope.fields.is_empty() {
                u64::MAX
            } else {
                r.scope.fields.iter().fold(0, |m, f| m | f.bit())
            };
            let globs = |v: &[String], lower: bool| {
                v.iter().map(|s| Glob::new(s, lower)).collect::<Vec<_>>()
            };
            rules.push(CRule {
                id: Arc::from(r.id.as_str()),
                action: r.action,
                mode: r.mode,
                severity: r.severity,
                directions: r.scope.directions.clone(),
                peers: globs(&r.scope.peers, true),
                rooms: globs(&r.scope.rooms, false),
                event_types: globs(&r.scope.event_types, false),
                fields,
                validator: r.validator,
                confidence: r.confidence,
                threshold: r.threshold,
                min_matches: r.min_matches,
                context,
                except_senders: globs(&r.except.senders, false),
                except_rooms: globs(&r.except.rooms, false),
                except_peers: globs(&r.except.peers, true),
                except_values: r.except.values.iter().map(|v| normalize_value(v)).collect(),
                whole_word: r.whole_word,
                confusables: r.confusables,
                suppressed_by: r
                    .suppressed_by
                    .iter()
                    .filter_map(|(id, _)| index_of(id))
                    .collect(),
            });
        }
        let mut exceptions = Vec::new();
        for f in files {
            for e in &f.exceptions {
                let globs = |v: &[String], lower: bool| {
                    v.iter().map(|s| Glob::new(s, lower)).collect::<Vec<_>>()
                };
                exceptions.push(CException {
                    rules: e.rules.iter().filter_map(|(id, _)| index_of(id)).collect(),
                    senders: globs(&e.senders, false),
                    rooms: globs(&e.rooms, false),
                    peers: globs(&e.peers, true),
                });
            }
        }
        let (triggers, ids) = tb.build();
        for p in &mut plans {
            p.trigs.iter_mut().for_each(|t| *t = ids[*t as usize]);
            p.trigs.sort_unstable();
            p.trigs.dedup();
        }
        let mut raw_pats: Vec<Vec<u8>> = triggers.lits().to_vec();
        let mut raw_kinds: Vec<RawPat> = (0..raw_pats.len())
            .map(|i| RawPat::Trig(triggers.lit_base() + i as u32))
            .collect();
        for (k, &ri) in raw_cs.iter().zip(&raw_cs_rule) {
            raw_pats.push(k.as_bytes().to_vec());
            raw_kinds.push(RawPat::Keyword(ri));
        }
        let bytes_of = |v: &[String]| v.iter().map(|k| k.as_bytes().to_vec()).collect::<Vec<_>>();
        let raw = if raw_pats.is_empty() {
            None
        } else {
            Some((AllMatches::new(&raw_pats, false)?, raw_kinds))
        };
        let raw_ci_all = if raw_ci.is_empty() {
            None
        } else {
            Some((
                AllMatches::new(&bytes_of(&raw_ci), true)?,
                raw_ci_rule.clone(),
            ))
        };
        let folded_all = if folded.is_empty() {
            None
        } else {
            Some((
                AllMatches::new(&bytes_of(&folded), false)?,
                folded_rule.clone(),
            ))
        };
        #[cfg(test)]
        let mut keywords = Vec::new();
        #[cfg(test)]
        if !raw_cs.is_empty() {
            keywords.push(Keywords {
                kind: KwKind::Raw,
                ac: ac(&raw_cs, false)?,
                rule: raw_cs_rule,
            });
        }
        #[cfg(test)]
        if !raw_ci.is_empty() {
            keywords.push(Keywords {
                kind: KwKind::Raw,
                ac: ac(&raw_ci, true)?,
                rule: raw_ci_rule,
            });
        }
        #[cfg(test)]
        if !folded.is_empty() {
            keywords.push(Keywords {
                kind: KwKind::Folded,
                ac: ac(&folded, true)?,
                rule: folded_rule,
            });
        }
        let unscoped = exceptions.is_empty()
            && rules.iter().all(|r| {
                r.directions.is_empty()
                    && r.peers.is_empty()
                    && r.rooms.is_empty()
                    && r.event_types.is_empty()
                    && r.except_senders.is_empty()
                    && r.except_rooms.is_empty()
                    && r.except_peers.is_empty()
            });
        let any_confusables = rules.iter().any(|r| r.confusables);
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Engine {
            id,
            any_confusables,
            unscoped,
            rules,
            exceptions,
            regexes,
            plans,
            triggers,
            pattern_rule,
            raw,
            raw_ci: raw_ci_all,
            folded: folded_all,
            #[cfg(test)]
            keywords,
            #[cfg(test)]
            reference,
        })
    }

    /// Number of compiled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
    /// The ids of the compiled rules.
    pub fn rule_ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.rules.iter().map(|r| &r.id)
    }

    /// Which rules apply to `ctx` (scope and exceptions; fields are checked per field).
    fn active(&self, ctx: &ScanCtx<'_>) -> Vec<bool> {
        if self.unscoped {
            return vec![true; self.rules.len()];
        }
        let mut active: Vec<bool> = self
            .rules
            .iter()
            .map(|r| {
                (r.directions.is_empty() || r.directions.contains(&ctx.direction))
                    && (r.peers.is_empty() || any_glob(&r.peers, ctx.peer, true))
                    && (r.rooms.is_empty() || any_glob(&r.rooms, ctx.room_id, false))
                    && (r.event_types.is_empty()
                        || any_glob(&r.event_types, Some(ctx.event_type), false))
                    && !any_glob(&r.except_senders, ctx.sender, false)
                    && !any_glob(&r.except_rooms, ctx.room_id, false)
                    && !any_glob(&r.except_peers, ctx.peer, true)
            })
            .collect();
        for e in &self.exceptions {
            let fits = (e.senders.is_empty() || any_glob(&e.senders, ctx.sender, false))
                && (e.rooms.is_empty() || any_glob(&e.rooms, ctx.room_id, false))
                && (e.peers.is_empty() || any_glob(&e.peers, ctx.peer, true));
            if !fits {
                continue;
            }
            if e.rules.is_empty() {
                active.iter_mut().for_each(|a| *a = false);
            } else {
                for &i in &e.rules {
                    active[i] = false;
                }
            }
        }
        active
    }

    /// Scan an event's `content` as an event of type `ctx.event_type` (see
    /// [`Engine::scan_parts`]).
    pub fn scan_event(&self, ctx: &ScanCtx<'_>, content: &Value) -> Outcome {
        self.scan_parts(
            ctx,
            EventParts {
                event_type: ctx.event_type,
                state_key: None,
                redacts: None,
                content,
                unsigned: None,
                envelope: None,
            },
        )
    }

    /// Scan every piece of text of an event ([`super::fields::event_texts`]): type, state key,
    /// `redacts`, every string, key and number of `content` and `unsigned`. This is the one
    /// function from event to outcome that the guard, `policy test` and `policy explain` share.
    pub fn scan_parts(&self, ctx: &ScanCtx<'_>, parts: EventParts<'_>) -> Outcome {
        let texts = event_texts(parts);
        self.scan_texts(ctx, &texts)
    }

    /// Scan every piece of text of an EDU ([`super::fields::edu_texts`]).
    pub fn scan_edu(&self, ctx: &ScanCtx<'_>, edu_type: &str, content: &Value) -> Outcome {
        let texts = edu_texts(edu_type, content);
        self.scan_texts(ctx, &texts)
    }

    /// Scan extracted texts; matches in generic fields get their JSON path.
    pub fn scan_texts(&self, ctx: &ScanCtx<'_>, texts: &Texts<'_>) -> Outcome {
        let mut out = self.scan_fields(ctx, &texts.fields);
        for m in &mut out.matches {
            if let Some((path, leaf_start)) = texts.locate(m.piece, m.start) {
                m.path = Some(path);
                m.leaf_start = leaf_start;
            }
        }
        out
    }

    /// Scan already extracted fields: EDUs (`edu_fields`), profile and directory responses,
    /// device names, or any text under a field name.
    pub fn scan_fields<S: AsRef<str>>(&self, ctx: &ScanCtx<'_>, fields: &[(Field, S)]) -> Outcome {
        self.scan_fields_with(ctx, fields, false, true)
    }

    /// [`Self::scan_fields`] on the raw strings, without the text pipeline: what the engine
    /// did before normalisation existed. Only for measuring the pipeline's cost (benchmarks);
    /// never used on traffic.
    #[doc(hidden)]
    pub fn scan_fields_unnormalized<S: AsRef<str>>(
        &self,
        ctx: &ScanCtx<'_>,
        fields: &[(Field, S)],
    ) -> Outcome {
        self.scan_fields_with(ctx, fields, false, false)
    }

    /// [`Self::scan_fields`]; `reference` selects the simple candidate search (tests only).
    ///
    /// Each field is read through the text pipeline first ([`crate::text::Views`]): its
    /// normalised text, its HTML renderings if it contains `&` or `<`, and — for rules that ask
    /// for it — the confusables form of each. Every view is scanned; spans are mapped back to
    /// the original bytes of the field, and a match found in several views counts once.
    fn scan_fields_with<S: AsRef<str>>(
        &self,
        ctx: &ScanCtx<'_>,
        fields: &[(Field, S)],
        reference: bool,
        normalize: bool,
    ) -> Outcome {
        let mut out = Outcome::default();
        if fields.is_empty() || self.rules.is_empty() {
            return out;
        }
        let active = self.active(ctx);
        if !active.iter().any(|a| *a) {
            return out;
        }
        VIEWS.with(|views| {
            let mut views = views.borrow_mut();
            let mut cands: Vec<(usize, usize, usize)> = Vec::new();
            for (piece, (field, text)) in fields.iter().enumerate() {
                let text = text.as_ref();
                let bit = field.bit();
                let on_field = |ri: usize| active[ri] && self.rules[ri].fields & bit != 0;
                if !(0..self.rules.len()).any(on_field) {
                    continue;
                }
                // Short texts that recur in every event (types, keys, `msgtype` values) are
                // remembered as clean per thread: the outcome of a field is a function of the
                // engine, the field and the text when no rule has a scope or exception.
                let cacheable = normalize && !reference && self.unscoped && text.len() <= CLEAN_MAX;
                if cacheable && CLEAN.with(|c| c.borrow().contains(self.id, *field, text)) {
                    continue;
                }
                let field_first = out.matches.len();
                let built = if normalize {
                    views.build(text, self.any_confusables)
                } else {
                    views.build_raw(text)
                };
                for view in built {
                    let on = |ri: usize| {
                        on_field(ri) && (!view.confusable || self.rules[ri].confusables)
                    };
                    let vt = view.text.as_str();
                    cands.clear();
                    if reference {
                        #[cfg(test)]
                        self.candidates_reference(vt, &on, &mut cands);
                    } else {
                        self.candidates(vt, &on, &mut cands);
                    }
                    if cands.is_empty() {
                        continue;
                    }
                    cands.sort_unstable();
                    cands.dedup();
                    let first = out.matches.len();
                    self.qualify(*field, vt, &cands, &mut out);
                    self.suppress(first, &cands, &mut out.matches);
                    for m in &mut out.matches[first..] {
                        m.piece = piece;
                        if !view.is_identity() {
                            (m.start, m.end) = view.original(m.start, m.end);
                        }
                    }
                    // The same finding in another view of this field counts once.
                    let mut k = first;
                    while k < out.matches.len() {
                        let m = &out.matches[k];
                        let dup = out.matches[field_first..first]
                            .iter()
                            .any(|o| o.rule == m.rule && o.start < m.end && m.start < o.end);
                        if dup {
                            out.matches.remove(k);
                        } else {
                            k += 1;
                        }
                    }
                }
                if cacheable && out.matches.len() == field_first {
                    CLEAN.with(|c| c.borrow_mut().insert(self.id, *field, text));
                }
            }
        });
        for m in &out.matches {
            match m.mode {
                Mode::Enforce => out.action = out.action.max(m.action),
                Mode::Shadow => out.shadow_action = out.shadow_action.max(m.action),
            }
        }
        out
    }

    /// Candidate (rule, start, end) spans in one field.
    fn candidates(
        &self,
        text: &str,
        on: &dyn Fn(usize) -> bool,
        cands: &mut Vec<(usize, usize, usize)>,
    ) {
        SCRATCH.with(|scratch| {
            let mut guard = scratch.borrow_mut();
            self.candidates_in(text, on, cands, &mut guard);
        });
    }

    fn candidates_in(
        &self,
        text: &str,
        on: &dyn Fn(usize) -> bool,
        cands: &mut Vec<(usize, usize, usize)>,
        sc: &mut Scratch,
    ) {
        let bytes = text.as_bytes();
        let keyword = |ri: usize, s: usize, e: usize, cands: &mut Vec<(usize, usize, usize)>| {
            if on(ri) && (!self.rules[ri].whole_word || whole_word(text, s, e)) {
                cands.push((ri, s, e));
            }
        };
        // Which triggers matter, then the one raw pass for literal triggers and
        // case-sensitive keywords.
        let any_pattern = self.want_triggers(on, sc);
        sc.hits.clear();
        if let Some((all, kinds)) = &self.raw {
            let want = &sc.want;
            let hits = &mut sc.hits;
            all.for_each(bytes, |p, s, e| match kinds[p] {
                RawPat::Trig(t) => {
                    if want[t as usize] {
                        hits.push(Hit {
                            trig: t,
                            lo_end: e,
                            hi_start: s,
                        });
                    }
                }
                RawPat::Keyword(ri) => keyword(ri, s, e, cands),
            });
        }
        if any_pattern {
            self.regex_candidates(text, on, sc, &mut |ri, s, e| {
                push_widened(text, cands, ri, s, e)
            });
        }
        if let Some((all, rule)) = &self.raw_ci {
            all.for_each(bytes, |p, s, e| keyword(rule[p], s, e, cands));
        }
        if let Some((all, rule)) = &self.folded {
            fold_into(text, &mut sc.folded, &mut sc.breaks);
            let breaks = &sc.breaks;
            all.for_each(&sc.folded, |p, fs, fe| {
                let (s, e) = (map_start(breaks, fs), map_end(breaks, fe));
                if s < e {
                    keyword(rule[p], s, e, cands);
                }
            });
        }
    }

    /// Mark the triggers of the active patterns in `sc.want`; false if no pattern is active.
    fn want_triggers(&self, on: &dyn Fn(usize) -> bool, sc: &mut Scratch) -> bool {
        sc.want.clear();
        sc.want.resize(self.triggers.count(), false);
        let mut any = false;
        for (pi, plan) in self.plans.iter().enumerate() {
            if on(self.pattern_rule[pi]) {
                any = true;
                for &t in &plan.trigs {
                    sc.want[t as usize] = true;
                }
            }
        }
        any
    }

    /// Regex candidates: trigger scan, then each active pattern inside the windows around
    /// its triggers (or over the whole field when it has none).
    ///
    /// Why the windowed search finds exactly what `find_iter` over the whole field finds:
    /// every match of pattern `p` contains an occurrence `[s, e)` of one of its trigger
    /// factors and is at most `L` long, so it lies inside `[e - L, s + L)`. Merge these
    /// windows into disjoint ones. Any position where a match starts is then inside exactly
    /// one merged window `W`, and *every* match starting there (whatever its end) lies inside
    /// `W`. A search over `W` (with the whole field as look-around context) therefore finds
    /// the same leftmost start and the same leftmost-first end as a search over the whole
    /// field from the same position, and no match starts between windows. Matches are never
    /// empty on this path (`minimum_len ≥ 1`), so iteration continues at the previous end in
    /// both.
    fn regex_candidates(
        &self,
        text: &str,
        on: &dyn Fn(usize) -> bool,
        sc: &mut Scratch,
        push: &mut dyn FnMut(usize, usize, usize),
    ) {
        let bytes = text.as_bytes();
        // Literal trigger hits are already in `sc.hits` (from the raw pass).
        self.triggers
            .scan(bytes, &sc.want, &mut sc.hits, &mut sc.last);
        for (pi, plan) in self.plans.iter().enumerate() {
            let ri = self.pattern_rule[pi];
            if !on(ri) {
                continue;
            }
            let re = &self.regexes[pi];
            let whole = |push: &mut dyn FnMut(usize, usize, usize)| {
                for m in re.find_iter(bytes) {
                    push(ri, m.start(), m.end());
                }
            };
            if plan.trigs.is_empty() {
                whole(push);
                continue;
            }
            let mine = |h: &&Hit| plan.trigs.binary_search(&h.trig).is_ok();
            let Some(max_len) = plan.max_len else {
                if sc.hits.iter().any(|h| mine(&h)) {
                    whole(push);
                }
                continue;
            };
            sc.windows.clear();
            sc.windows.extend(sc.hits.iter().filter(mine).map(|h| {
                (
                    h.lo_end.saturating_sub(max_len),
                    (h.hi_start + max_len).min(bytes.len()),
                )
            }));
            if sc.windows.is_empty() {
                continue;
            }
            sc.windows.sort_unstable();
            let mut input = Input::new(bytes);
            let mut pos = 0;
            let mut i = 0;
            while i < sc.windows.len() {
                let (ws, mut we) = sc.windows[i];
                i += 1;
                while i < sc.windows.len() && sc.windows[i].0 <= we {
                    we = we.max(sc.windows[i].1);
                    i += 1;
                }
                pos = pos.max(ws);
                while pos < we {
                    input.set_range(pos..we);
                    let Some(m) = re.search(&input) else { break };
                    push(ri, m.start(), m.end());
                    pos = m.end().max(pos + 1);
                }
            }
        }
    }

    /// Drop matches (from index `first` on, one field) that overlap a candidate of a rule
    /// named in their rule's `suppressed_by`. Candidates, not qualified matches: an IBAN with
    /// a broken check digit is still not a phone number.
    fn suppress(&self, first: usize, cands: &[(usize, usize, usize)], matches: &mut Vec<Match>) {
        let mut k = 0;
        matches.retain(|m| {
            k += 1;
            if k <= first {
                return true;
            }
            let Some(ri) = self.rules.iter().position(|r| r.id == m.rule) else {
                return true;
            };
            let by = &self.rules[ri].suppressed_by;
            by.is_empty()
                || !cands
                    .iter()
                    .any(|&(o, s, e)| by.contains(&o) && s < m.end && m.start < e)
        });
    }

    /// Validators, value allow-lists, context and thresholds; then `min_matches` per rule.
    fn qualify(
        &self,
        field: Field,
        text: &str,
        cands: &[(usize, usize, usize)],
        out: &mut Outcome,
    ) {
        let mut i = 0;
        while i < cands.len() {
            let ri = cands[i].0;
            let j = i + cands[i..].iter().take_while(|c| c.0 == ri).count();
            let rule = &self.rules[ri];
            let mut found: Vec<Match> = Vec::new();
            let mut last_end = 0;
            for &(_, s, e) in &cands[i..j] {
                // Overlapping candidates of one rule (two patterns on the same text) count once.
                if s < last_end && !found.is_empty() {
                    continue;
                }
                let m = &text[s..e];
                if let Some(v) = rule.validator {
                    if !v.check(m) {
                        continue;
                    }
                }
                if !rule.except_values.is_empty()
                    && rule.except_values.contains(&normalize_value(m))
                {
                    continue;
                }
                let mut conf = rule.confidence;
                for c in &rule.context {
                    if context_hit(c, text, s, e) {
                        conf += c.weight;
                    }
                }
                let conf = conf.clamp(0.0, 1.0);
                if conf + 1e-6 < rule.threshold {
                    continue;
                }
                last_end = e;
                found.push(Match {
                    rule: rule.id.clone(),
                    field,
                    start: s,
                    end: e,
                    excerpt: mask(m),
                    path: None,
                    leaf_start: 0,
                    piece: 0,
                    action: rule.action,
                    mode: rule.mode,
                    severity: rule.severity,
                    confidence: conf,
                });
            }
            if found.len() >= rule.min_matches as usize {
                out.matches.extend(found);
            }
            i = j;
        }
    }
}

#[cfg(test)]
impl Engine {
    /// The simple reference: each pattern's `regex::bytes::Regex` separately over the whole
    /// field; keywords with overlapping Aho-Corasick searches, the folded ones ASCII-case-
    /// insensitively on a folded copy that keeps ASCII case (the engine's original design).
    fn candidates_reference(
        &self,
        text: &str,
        on: &dyn Fn(usize) -> bool,
        cands: &mut Vec<(usize, usize, usize)>,
    ) {
        let bytes = text.as_bytes();
        for (pi, re) in self.reference.iter().enumerate() {
            let ri = self.pattern_rule[pi];
            if on(ri) {
                for m in re.find_iter(bytes) {
                    push_widened(text, cands, ri, m.start(), m.end());
                }
            }
        }
        let mut folded: Option<Folded> = None;
        for kw in &self.keywords {
            let hay = match kw.kind {
                KwKind::Raw => None,
                KwKind::Folded => Some(folded.get_or_insert_with(|| Folded::new(text))),
            };
            let hb = hay.as_ref().map_or(bytes, |f| f.text.as_bytes());
            for m in kw.ac.find_overlapping_iter(hb) {
                let ri = kw.rule[m.pattern().as_usize()];
                if !on(ri) {
                    continue;
                }
                let (s, e) = match &hay {
                    None => (m.start(), m.end()),
                    Some(f) => (f.map_start(m.start()), f.map_end(m.end())),
                };
                if s < e && (!self.rules[ri].whole_word || whole_word(text, s, e)) {
                    cands.push((ri, s, e));
                }
            }
        }
    }

    /// [`Engine::scan_fields`] with [`Engine::candidates_reference`].
    pub(crate) fn scan_fields_reference<S: AsRef<str>>(
        &self,
        ctx: &ScanCtx<'_>,
        fields: &[(Field, S)],
    ) -> Outcome {
        self.scan_fields_with(ctx, fields, true, true)
    }
}

/// ASCII patterns can end inside a multi-byte character: widen to character boundaries.
fn push_widened(
    text: &str,
    cands: &mut Vec<(usize, usize, usize)>,
    ri: usize,
    mut s: usize,
    mut e: usize,
) {
    while !text.is_char_boundary(s) {
        s -= 1;
    }
    while !text.is_char_boundary(e) {
        e += 1;
    }
    if s < e {
        cands.push((ri, s, e));
    }
}

/// Is one of the context words (whole word, folded) within the window around `s..e`?
fn context_hit(c: &Context, text: &str, s: usize, e: usize) -> bool {
    let before_start = text[..s]
        .char_indices()
        .rev()
        .take(c.before)
        .last()
        .map_or(s, |(i, _)| i);
    let after_end = text[e..]
        .char_indices()
        .nth(c.after)
        .map_or(text.len(), |(i, _)| e + i);
    for window in [&text[before_start..s], &text[e..after_end]] {
        if window.is_empty() {
            continue;
        }
        let folded: Cow<'_, str> = if window.is_ascii() {
            Cow::Borrowed(window)
        } else {
            Cow::Owned(fold_str(window))
        };
        for m in c.ac.find_overlapping_iter(folded.as_bytes()) {
            if whole_word(&folded, m.start(), m.end()) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_maps_positions_back() {
        let s = "Die Verschlußsache für Äpfel";
        let f = Folded::new(s);
        assert_eq!(f.text, "Die Verschlusssache fur apfel");
        let fs = f
            .text
            .find("verschlusssache")
            .unwrap_or_else(|| f.text.find("Verschlusssache").unwrap());
        let fe = fs + "Verschlusssache".len();
        assert_eq!(&s[f.map_start(fs)..f.map_end(fe)], "Verschlußsache");
        let fs = f.text.find("fur").unwrap();
        assert_eq!(&s[f.map_start(fs)..f.map_end(fs + 3)], "für");
        let fs = f.text.find("apfel").unwrap();
        assert_eq!(&s[f.map_start(fs)..f.map_end(fs + 5)], "Äpfel");
    }

    #[test]
    fn whole_word_and_glob_and_mask() {
        assert!(whole_word("ist GEHEIM.", 4, 10));
        assert!(!whole_word("GEHEIMNIS", 0, 6));
        assert!(!whole_word("ÜGEHEIM", 2, 8));
        // Letters next to digits: a boundary (a footnote marker, a number glued on).
        assert!(whole_word("GEHEIM1", 0, 6));
        assert!(whole_word("GEHEIM¹", 0, 6));
        assert!(whole_word("2GEHEIM", 1, 7));
        assert!(!whole_word("GEHEIMx", 0, 6));
        assert!(!whole_word("A123456789", 1, 4));
        assert!(glob_match(b"*.example.org", b"hs1.example.org"));
        assert!(!glob_match(b"*.example.org", b"example.org"));
        assert!(glob_match(b"m.room.*", b"m.room.message"));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert_eq!(mask("DE89370400440532013000"), "DE************…00");
        assert_eq!(mask("GEHEIM"), "G*****");
        assert_eq!(mask("abc"), "***");
        assert!(!mask("ghp_abcdefghijklmnopqrstuvwxyz0123456789").contains("abcdef"));
    }

    use proptest::prelude::*;

    const SEED: &str = include_str!("../../../benches/corpus/seed_de.txt");
    const SENSITIVE: &str = include_str!("../../../benches/corpus/sensitive_de.txt");

    fn shipped() -> Arc<Engine> {
        crate::policy::dlp::RuleSet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
            .unwrap_or_else(|d| panic!("{d}"))
            .engine()
    }

    fn ctx() -> ScanCtx<'static> {
        ScanCtx {
            direction: Direction::Outbound,
            peer: Some("land.example.de"),
            room_id: Some("!lage:bund.example.de"),
            sender: Some("@alice:bund.example.de"),
            event_type: "m.room.message",
        }
    }

    /// The optimised scan and the reference scan agree on `text` (as body and as a field
    /// scoped differently), and return the outcome.
    fn assert_same(engine: &Engine, text: &str) -> Outcome {
        let fields = [(Field::Body, text), (Field::RoomTopic, text)];
        let fast = engine.scan_fields(&ctx(), &fields);
        let slow = engine.scan_fields_reference(&ctx(), &fields);
        assert_eq!(fast, slow, "text: {text:?}");
        fast
    }

    /// The bench corpus (same generator) plus every line alone: identical outcomes, and the
    /// planted items are found.
    #[test]
    fn optimised_scan_equals_reference_on_corpus() {
        let engine = shipped();
        let lines: Vec<&str> = SEED.lines().filter(|l| !l.is_empty()).collect();
        let sensitive: Vec<&str> = SENSITIVE.lines().filter(|l| !l.is_empty()).collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let mut found = 0;
        for i in 0..1000 {
            let n = 1 + next() % 8;
            let mut m: Vec<&str> = (0..n).map(|_| lines[next() % lines.len()]).collect();
            if i % 10 == 9 {
                m.insert(
                    next() % (m.len() + 1),
                    sensitive[(i / 10) % sensitive.len()],
                );
            }
            found += assert_same(&engine, &m.join(" ")).matches.len();
        }
        assert!(found >= 100, "found {found}");
        for l in lines.iter().chain(&sensitive) {
            assert_same(&engine, l);
        }
        // Every piece at every offset around the first block boundaries of the trigger scan.
        for piece in PIECES {
            for start in 40..140 {
                assert_same(
                    &engine,
                    &format!("{}{piece}{}", "x".repeat(start), " y".repeat(20)),
                );
            }
        }
        assert_same(&engine, SEED);
        assert_same(&engine, SENSITIVE);
    }

    /// Pieces that trigger the shipped rules, their near misses, and separators.
    const PIECES: &[&str] = &[
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "DE88 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "4111 1111 1111 1111",
        "4111-1111-1111-1112",
        "378282246310005",
        "86095742719",
        "65929970489",
        "12345678903",
        "A000500015",
        "A000500016",
        "T22000129",
        "T220001293",
        "L01X00T47",
        "COBADEFFXXX",
        "DEUTDEFF",
        "+49 30 1234567",
        "030/1234567",
        "0171 2345678",
        "(0)",
        "0049",
        "max.mustermann@bund.example.de",
        "a@b",
        "@",
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----",
        "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
        "github_pat_",
        "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"",
        "xoxb-1234567890-abcdefghij",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "glpat-abcdefghij0123456789",
        "sk_live_0123456789abcdefghijklmn",
        "AIzaSyA-0123456789abcdefghijklmnopqrstu",
        "GEHEIM",
        "STRENG GEHEIM",
        "VS-NfD",
        "VS – Nur für den Dienstgebrauch",
        "VS-VERTRAULICH",
        "NATO SECRET",
        "TRÈS SECRET UE",
        "geheim",
        "Geheim",
        "Verschlußsache",
        "VERSCHLUSSSACHE",
        "vertraulich",
        "eingestuft",
        "Steuer-ID",
        "KVNR",
        "Ausweis",
        "BIC",
        "IBAN",
        "Aktenzeichen",
        " ",
        " ",
        "\n",
        "-",
        "–",
        "_",
        ".",
        ",",
        "/",
        "ä",
        "Ü",
        "ß",
        "é",
        "0",
        "1",
        "9",
        "12",
        "123",
        "1234",
        "A",
        "Z",
        "AB",
        "XYZ",
        "Bericht",
        "die",
        "und",
        "für",
    ];

    fn text_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            3 => proptest::sample::select(PIECES).prop_map(str::to_owned),
            1 => "[0-9 ]{1,24}",
            1 => "[A-Z0-9]{1,14}",
            1 => "[a-zA-Z0-9 äöüß@._+-]{1,10}",
        ];
        proptest::collection::vec(piece, 0..30).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

        /// Random texts built from trigger pieces: the optimised scan equals the reference.
        #[test]
        fn optimised_scan_equals_reference_on_random_text(text in text_strategy()) {
            let engine = SHIPPED.with(|e| e.clone());
            assert_same(&engine, &text);
        }

        /// Generic patterns (unbounded, optional parts, empty matches, alternations, look
        /// arounds, Unicode classes) on random text over a small alphabet.
        #[test]
        fn optimised_scan_equals_reference_on_generic_patterns(text in "[ax0-9y#ßOob \n_-]{0,80}") {
            let engine = GENERIC.with(|e| e.clone());
            assert_same(&engine, &text);
        }
    }

    thread_local! {
        static SHIPPED: Arc<Engine> = shipped();
        static GENERIC: Arc<Engine> = {
            let patterns = [
                r"a*", r"x[0-9]+y", r"(?i)oo|b[0-9]{2}", r"[0-9]{3}(?:-[0-9]+)?", r"(?m)^#[0-9]", r"(?-u:\b)0[1-9]{2,}",
                r"(?u)\w+ß", r"[a-z]{2}[0-9]{2}(?: ?[a-z0-9]{2}){1,3}", r"_(?:xy|[0-9]{4})_", r"(?:ax|ya)[0-9]{0,3}",
                r"[ \n]{2}[0-9]", r"(?-u:\b)[0-9]{1,2}(?-u:\b)", r"y?[0-9a]{5}(?-u:\B)",
            ];
            let mut toml = String::new();
            for (i, p) in patterns.iter().enumerate() {
                toml.push_str(&format!(
                    "[[rule]]\nid = \"r{i}\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nregex = '{p}'\n"
                ));
            }
            toml.push_str("[[rule]]\nid = \"kw\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nkeywords = [\"oob\", \"ßa\", \"x y\"]\nwhole_word = false\n");
            let mut d = Vec::new();
            let f = super::super::rules::parse_file(&toml, "generic.toml", &mut d).expect("parses");
            assert!(d.is_empty(), "{d:?}");
            Arc::new(Engine::compile(&[f]).expect("compiles"))
        };
    }

    proptest! {
        /// `AllMatches` reports exactly the occurrences `find_overlapping_iter` reports,
        /// with prefixes, equal patterns and ASCII case folding.
        #[test]
        fn all_matches_equals_overlapping(
            pats in proptest::collection::vec("[abAB]{1,4}", 1..8),
            hay in "[abAB c]{0,60}",
            ci in any::<bool>(),
        ) {
            let bytes: Vec<Vec<u8>> = pats.iter().map(|p| p.as_bytes().to_vec()).collect();
            let all = AllMatches::new(&bytes, ci).unwrap();
            let mut got = Vec::new();
            all.for_each(hay.as_bytes(), |p, s, e| got.push((p, s, e)));
            let reference = AhoCorasickBuilder::new().ascii_case_insensitive(ci).build(&bytes).unwrap();
            let mut want: Vec<_> = reference
                .find_overlapping_iter(hay.as_bytes())
                .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
                .collect();
            got.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }

        /// The lower-cased folding maps back like the reference folding.
        #[test]
        fn fold_into_equals_reference_folding(text in "[a-zA-Z äÄöÖüÜßẞéÉæ–K-]{0,40}") {
            let (mut out, mut breaks) = (Vec::new(), Vec::new());
            fold_into(&text, &mut out, &mut breaks);
            let f = Folded::new(&text);
            prop_assert_eq!(String::from_utf8(out.clone()).unwrap(), f.text.to_lowercase());
            prop_assert_eq!(&breaks, &f.breaks);
        }
    }

    /// Every shipped pattern gets a trigger and a bounded window, except the e-mail pattern
    /// (unbounded local part: gated by `@`).
    #[test]
    fn shipped_patterns_are_windowed() {
        let engine = shipped();
        for (pi, plan) in engine.plans.iter().enumerate() {
            let rule = &engine.rules[engine.pattern_rule[pi]].id;
            assert!(!plan.trigs.is_empty(), "{rule} pattern {pi} has no trigger");
            assert_eq!(
                plan.max_len.is_none(),
                &**rule == "pii.email",
                "{rule}: {plan:?}"
            );
        }
    }

    #[test]
    fn case_variants_expand_non_ascii() {
        let v = case_variants("für");
        assert!(v.contains(&"für".to_owned()) && v.contains(&"fÜr".to_owned()));
        assert_eq!(case_variants("abc"), vec!["abc".to_owned()]);
    }
}
