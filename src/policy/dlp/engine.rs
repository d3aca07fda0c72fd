//! The compiled rule set and the scanner.
//!
//! # Design
//!
//! Compilation turns every rule of every file into one immutable [`Engine`]:
//!
//! * all `regex` patterns of all rules → one `regex::bytes::RegexSet` (ASCII dialect, see
//!   [`super::rules`]) plus one compiled `Regex` per pattern;
//! * all keywords → at most three Aho-Corasick automata: case-sensitive on the raw text,
//!   ASCII-case-insensitive on the raw text (non-ASCII letters of such keywords are expanded to
//!   their upper/lower variants), and case- and diacritic-folded, which runs on a folded copy of
//!   the text (ASCII runs copied as is, every non-ASCII character folded, positions mapped back
//!   through a breakpoint table). The folded automaton runs on the raw text when it is ASCII.
//!
//! A field is scanned with ONE pass of the `RegexSet` (which patterns occur anywhere) and one
//! pass of each keyword automaton — not a loop over rules. Only patterns the set reported are
//! run again to find their spans, and only those candidate spans go through the validator,
//! value allow-list and context words. Clean text (the common case) costs exactly the set pass
//! plus the automaton passes.
//!
//! Rules are filtered before scanning: scope (direction, peer, room, event type) and
//! exceptions (file `[[exception]]`, rule `[rule.except]` senders/rooms/peers) decide which
//! rules are active for the event; field scope decides per field. `min_matches` counts
//! qualifying matches per rule within one field (so `body` and `formatted_body`, which usually
//! repeat each other, do not add up).
//!
//! The engine is `Send + Sync` and never mutated: share it as `Arc<Engine>` and swap the `Arc`
//! atomically to reload.
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value;

use super::fields::{fields, Field};
use super::rules::{compile_regex, Action, Mode, RuleFile, Severity};
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
        self.matches.iter().filter(|m| &*m.rule == rule).map(|m| m.action).max().unwrap_or(Action::Allow)
    }
}

/// A `*`-glob (any run of characters).
#[derive(Debug, Clone)]
struct Glob(String);

impl Glob {
    fn new(s: &str, lower: bool) -> Glob {
        Glob(if lower { s.to_ascii_lowercase() } else { s.to_owned() })
    }
    fn matches(&self, s: &str) -> bool {
        glob_match(self.0.as_bytes(), s.as_bytes())
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with single backtrack point.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
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
    if lower {
        let v = v.to_ascii_lowercase();
        globs.iter().any(|g| g.matches(&v))
    } else {
        globs.iter().any(|g| g.matches(v))
    }
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
    fields: u32,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KwKind {
    Raw,
    Folded,
}

#[derive(Debug)]
struct Keywords {
    kind: KwKind,
    ac: AhoCorasick,
    /// Pattern index → rule index.
    rule: Vec<usize>,
}

/// The compiled, immutable rule set (see the module docs).
#[derive(Debug)]
pub struct Engine {
    rules: Vec<CRule>,
    exceptions: Vec<CException>,
    set: Option<regex::bytes::RegexSet>,
    regexes: Vec<regex::bytes::Regex>,
    /// Pattern index → rule index.
    pattern_rule: Vec<usize>,
    keywords: Vec<Keywords>,
}

/// Fold one character for diacritic- and case-insensitive comparison.
fn fold_char(c: char, out: &mut String) {
    let s = match c {
        'ä' | 'Ä' | 'à' | 'á' | 'â' | 'ã' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Å' | 'ā' | 'Ā' => "a",
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
                out.push(c.to_ascii_lowercase());
            } else {
                out.extend(c.to_lowercase());
            }
            return;
        }
    };
    out.push_str(s);
}

/// Fold a whole (short) string.
fn fold_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        fold_char(c, &mut out);
    }
    out
}

/// A folded copy of a haystack with the positions of its non-ASCII characters.
struct Folded {
    text: String,
    /// (folded start, folded end, original start, original end) per non-ASCII character.
    breaks: Vec<(usize, usize, usize, usize)>,
}

impl Folded {
    /// Fold non-ASCII characters only (ASCII case is handled by the automaton).
    fn new(s: &str) -> Folded {
        let mut text = String::with_capacity(s.len() + 16);
        let mut breaks = Vec::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let run = bytes[i..].iter().position(|b| !b.is_ascii()).unwrap_or(bytes.len() - i);
            text.push_str(&s[i..i + run]);
            i += run;
            if i >= bytes.len() {
                break;
            }
            let c = s[i..].chars().next().expect("char boundary");
            let fs = text.len();
            fold_char(c, &mut text);
            breaks.push((fs, text.len(), i, i + c.len_utf8()));
            i += c.len_utf8();
        }
        Folded { text, breaks }
    }

    fn entry(&self, f: usize) -> Option<&(usize, usize, usize, usize)> {
        let idx = self.breaks.partition_point(|b| b.0 <= f);
        idx.checked_sub(1).map(|i| &self.breaks[i])
    }

    fn map_start(&self, f: usize) -> usize {
        match self.entry(f) {
            None => f,
            Some(&(fs, fe, os, oe)) => {
                if f < fe {
                    let _ = fs;
                    os
                } else {
                    oe + (f - fe)
                }
            }
        }
    }

    fn map_end(&self, f: usize) -> usize {
        if f == 0 {
            return 0;
        }
        match self.entry(f - 1) {
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
}

/// Word characters for whole-word keywords: letters and digits. `_` separates words (file
/// names like `Bericht_GEHEIM.pdf`).
fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// Whole-word check on the original text.
fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let m = &text[start..end];
    let first_word = m.chars().next().is_some_and(is_word);
    let last_word = m.chars().next_back().is_some_and(is_word);
    if first_word && text[..start].chars().next_back().is_some_and(is_word) {
        return false;
    }
    if last_word && text[end..].chars().next().is_some_and(is_word) {
        return false;
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
            for f in [c.to_lowercase().collect::<String>(), c.to_uppercase().collect::<String>()] {
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
    s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
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
        let mut patterns = Vec::new();
        let mut regexes = Vec::new();
        let mut pattern_rule = Vec::new();
        let (mut raw_cs, mut raw_cs_rule) = (Vec::new(), Vec::new());
        let (mut raw_ci, mut raw_ci_rule) = (Vec::new(), Vec::new());
        let (mut folded, mut folded_rule) = (Vec::new(), Vec::new());
        for (ri, r) in all_rules.iter().enumerate() {
            for p in &r.regex {
                patterns.push(p.clone());
                regexes.push(compile_regex(p).map_err(|e| CompileError(format!("rule {}: {e}", r.id)))?);
                pattern_rule.push(ri);
            }
            for k in &r.keywords {
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
                context.push(Context { ac: ac(&words, true)?, before: c.before, after: c.after, weight: c.weight });
            }
            let fields = if r.scope.fields.is_empty() {
                u32::MAX
            } else {
                r.scope.fields.iter().fold(0, |m, f| m | f.bit())
            };
            let globs = |v: &[String], lower: bool| v.iter().map(|s| Glob::new(s, lower)).collect::<Vec<_>>();
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
                suppressed_by: r.suppressed_by.iter().filter_map(|(id, _)| index_of(id)).collect(),
            });
        }
        let mut exceptions = Vec::new();
        for f in files {
            for e in &f.exceptions {
                let globs = |v: &[String], lower: bool| v.iter().map(|s| Glob::new(s, lower)).collect::<Vec<_>>();
                exceptions.push(CException {
                    rules: e.rules.iter().filter_map(|(id, _)| index_of(id)).collect(),
                    senders: globs(&e.senders, false),
                    rooms: globs(&e.rooms, false),
                    peers: globs(&e.peers, true),
                });
            }
        }
        let set = if patterns.is_empty() {
            None
        } else {
            Some(
                regex::bytes::RegexSetBuilder::new(&patterns)
                    .unicode(false)
                    .size_limit(64 << 20)
                    .dfa_size_limit(64 << 20)
                    .build()
                    .map_err(|e| CompileError(format!("regex set: {e}")))?,
            )
        };
        let mut keywords = Vec::new();
        if !raw_cs.is_empty() {
            keywords.push(Keywords { kind: KwKind::Raw, ac: ac(&raw_cs, false)?, rule: raw_cs_rule });
        }
        if !raw_ci.is_empty() {
            keywords.push(Keywords { kind: KwKind::Raw, ac: ac(&raw_ci, true)?, rule: raw_ci_rule });
        }
        if !folded.is_empty() {
            keywords.push(Keywords { kind: KwKind::Folded, ac: ac(&folded, true)?, rule: folded_rule });
        }
        Ok(Engine { rules, exceptions, set, regexes, pattern_rule, keywords })
    }

    /// Number of compiled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Which rules apply to `ctx` (scope and exceptions; fields are checked per field).
    fn active(&self, ctx: &ScanCtx<'_>) -> Vec<bool> {
        let mut active: Vec<bool> = self
            .rules
            .iter()
            .map(|r| {
                (r.directions.is_empty() || r.directions.contains(&ctx.direction))
                    && (r.peers.is_empty() || any_glob(&r.peers, ctx.peer, true))
                    && (r.rooms.is_empty() || any_glob(&r.rooms, ctx.room_id, false))
                    && (r.event_types.is_empty() || any_glob(&r.event_types, Some(ctx.event_type), false))
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

    /// Scan an event's `content` (every field [`fields`] extracts for `ctx.event_type`).
    pub fn scan_event(&self, ctx: &ScanCtx<'_>, content: &Value) -> Outcome {
        let extracted = fields(ctx.event_type, content);
        self.scan_fields(ctx, &extracted)
    }

    /// Scan already extracted fields: EDUs (`edu_fields`), profile and directory responses,
    /// device names, or any text under a field name.
    pub fn scan_fields<S: AsRef<str>>(&self, ctx: &ScanCtx<'_>, fields: &[(Field, S)]) -> Outcome {
        let mut out = Outcome::default();
        if fields.is_empty() || self.rules.is_empty() {
            return out;
        }
        let active = self.active(ctx);
        if !active.iter().any(|a| *a) {
            return out;
        }
        let mut cands: Vec<(usize, usize, usize)> = Vec::new();
        for (field, text) in fields {
            let text = text.as_ref();
            let bit = field.bit();
            let on = |ri: usize| active[ri] && self.rules[ri].fields & bit != 0;
            if !(0..self.rules.len()).any(on) {
                continue;
            }
            cands.clear();
            self.candidates(text, &on, &mut cands);
            if cands.is_empty() {
                continue;
            }
            cands.sort_unstable();
            cands.dedup();
            let first = out.matches.len();
            self.qualify(*field, text, &cands, &mut out);
            self.suppress(first, &cands, &mut out.matches);
        }
        for m in &out.matches {
            match m.mode {
                Mode::Enforce => out.action = out.action.max(m.action),
                Mode::Shadow => out.shadow_action = out.shadow_action.max(m.action),
            }
        }
        out
    }

    /// Candidate (rule, start, end) spans in one field.
    fn candidates(&self, text: &str, on: &dyn Fn(usize) -> bool, cands: &mut Vec<(usize, usize, usize)>) {
        let bytes = text.as_bytes();
        if let Some(set) = &self.set {
            let hits = set.matches(bytes);
            if hits.matched_any() {
                for pi in hits.iter() {
                    let ri = self.pattern_rule[pi];
                    if !on(ri) {
                        continue;
                    }
                    for m in self.regexes[pi].find_iter(bytes) {
                        // ASCII patterns can end inside a multi-byte character: widen.
                        let (mut s, mut e) = (m.start(), m.end());
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
                }
            }
        }
        let mut folded: Option<Folded> = None;
        for kw in &self.keywords {
            match kw.kind {
                KwKind::Raw => {
                    for m in kw.ac.find_overlapping_iter(bytes) {
                        let ri = kw.rule[m.pattern().as_usize()];
                        if on(ri) && (!self.rules[ri].whole_word || whole_word(text, m.start(), m.end())) {
                            cands.push((ri, m.start(), m.end()));
                        }
                    }
                }
                KwKind::Folded => {
                    if text.is_ascii() {
                        for m in kw.ac.find_overlapping_iter(bytes) {
                            let ri = kw.rule[m.pattern().as_usize()];
                            if on(ri) && (!self.rules[ri].whole_word || whole_word(text, m.start(), m.end())) {
                                cands.push((ri, m.start(), m.end()));
                            }
                        }
                        continue;
                    }
                    let f = folded.get_or_insert_with(|| Folded::new(text));
                    for m in kw.ac.find_overlapping_iter(f.text.as_bytes()) {
                        let ri = kw.rule[m.pattern().as_usize()];
                        if !on(ri) {
                            continue;
                        }
                        let (s, e) = (f.map_start(m.start()), f.map_end(m.end()));
                        if s < e && (!self.rules[ri].whole_word || whole_word(text, s, e)) {
                            cands.push((ri, s, e));
                        }
                    }
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
            let Some(ri) = self.rules.iter().position(|r| r.id == m.rule) else { return true };
            let by = &self.rules[ri].suppressed_by;
            by.is_empty() || !cands.iter().any(|&(o, s, e)| by.contains(&o) && s < m.end && m.start < e)
        });
    }

    /// Validators, value allow-lists, context and thresholds; then `min_matches` per rule.
    fn qualify(&self, field: Field, text: &str, cands: &[(usize, usize, usize)], out: &mut Outcome) {
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
                if !rule.except_values.is_empty() && rule.except_values.contains(&normalize_value(m)) {
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

/// Is one of the context words (whole word, folded) within the window around `s..e`?
fn context_hit(c: &Context, text: &str, s: usize, e: usize) -> bool {
    let before_start = text[..s].char_indices().rev().take(c.before).last().map_or(s, |(i, _)| i);
    let after_end = text[e..].char_indices().nth(c.after).map_or(text.len(), |(i, _)| e + i);
    for window in [&text[before_start..s], &text[e..after_end]] {
        if window.is_empty() {
            continue;
        }
        let folded: Cow<'_, str> = if window.is_ascii() { Cow::Borrowed(window) } else { Cow::Owned(fold_str(window)) };
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
        let fs = f.text.find("verschlusssache").unwrap_or_else(|| f.text.find("Verschlusssache").unwrap());
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
        assert!(glob_match(b"*.example.org", b"hs1.example.org"));
        assert!(!glob_match(b"*.example.org", b"example.org"));
        assert!(glob_match(b"m.room.*", b"m.room.message"));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert_eq!(mask("DE89370400440532013000"), "DE************…00");
        assert_eq!(mask("GEHEIM"), "G*****");
        assert_eq!(mask("abc"), "***");
        assert!(!mask("ghp_abcdefghijklmnopqrstuvwxyz0123456789").contains("abcdef"));
    }

    #[test]
    fn case_variants_expand_non_ascii() {
        let v = case_variants("für");
        assert!(v.contains(&"für".to_owned()) && v.contains(&"fÜr".to_owned()));
        assert_eq!(case_variants("abc"), vec!["abc".to_owned()]);
    }
}
