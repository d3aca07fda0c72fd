//! Rule files: TOML → [`RuleFile`] with every problem reported at once as a [`Diagnostic`]
//! with a stable code and `file:line:col`.
//!
//! The parser walks the `toml_edit` document by hand (not through serde): every key is looked
//! up explicitly, so every wrong type, unknown key and bad value is reported with its own
//! position and the walk continues. Checks that need the whole directory (duplicate rule ids,
//! exceptions naming unknown rules) run in [`super::RuleSet::load_dir`].
//!
//! # Diagnostic codes (stable; documented in `policies/README.md`)
//!
//! | code   | meaning |
//! |--------|---------|
//! | DLP001 | TOML syntax error |
//! | DLP002 | unknown key |
//! | DLP003 | wrong type |
//! | DLP004 | missing required key |
//! | DLP005 | invalid value (unknown enum value, bad id) |
//! | DLP006 | duplicate rule id |
//! | DLP007 | invalid regular expression |
//! | DLP008 | unknown validator |
//! | DLP009 | unknown field name |
//! | DLP010 | rule has no detector (neither `regex` nor `keywords`) |
//! | DLP011 | invalid embedded test |
//! | DLP012 | conflicting options |
//! | DLP013 | exception or `suppressed_by` names an unknown rule |
//! | DLP014 | cannot read the policy directory or a file |
//! | DLP015 | no rule files (`*.toml`) in the directory |
//! | DLP016 | number out of range |
//! | DLP017 | rule set too large to compile |
//! | DLP018 | pattern or keyword that normalised text never contains (invisible, control or combining characters) |
//! | DLP019 | rule file without rules (empty, truncated or only comments) |
//! | DLP020 | `classification` not in the loaded SPIFs (checked where `[labels]` is loaded: `policy::dlp::markings`) |
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde_json::Value as Json;
use toml_edit::{ImDocument, Item, TableLike, Value};

use super::fields::Field;
use super::validators::Validator;
use crate::telemetry::Direction;

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code, `DLP0xx`.
    pub code: &'static str,
    pub file: String,
    /// 1-based; 0 when the problem has no position (a whole file or directory).
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: error[{}]: {}", self.file, self.code, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: error[{}]: {}",
                self.file, self.line, self.col, self.code, self.message
            )
        }
    }
}

/// Every problem found while loading a rule set; `Display` prints one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Rollout mode of a rule file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Decisions are applied.
    Enforce,
    /// Decisions are computed and audited; traffic is forwarded unchanged.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// What a rule does when it matches, ordered by severity (`Allow` < `Tag` < `Redact` <
/// `Hold` < `Reject`): the most severe matching action wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Action {
    /// Nothing (also the verdict when nothing matched).
    #[default]
    Allow,
    /// Audit only.
    Tag,
    /// Redact the event (drop an EDU / field).
    Redact,
    /// Hold for review (`proxy::hold`; without a review queue the caller treats it as redact).
    Hold,
    /// Refuse single-event endpoints; inside a transaction the caller treats it as redact.
    Reject,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Allow,
        Action::Tag,
        Action::Redact,
        Action::Hold,
        Action::Reject,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Tag => "tag",
            Action::Redact => "redact",
            Action::Hold => "hold",
            Action::Reject => "reject",
        }
    }
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a match is (for audit and review ordering; does not change the action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Where in a file something is (for diagnostics raised after parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
}

/// Where a rule applies. Empty lists mean "all".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeDef {
    pub directions: Vec<Direction>,
    /// Server-name globs (`*` matches any run of characters).
    pub peers: Vec<String>,
    /// Room-id globs.
    pub rooms: Vec<String>,
    /// Event-type globs (`m.room.*`).
    pub event_types: Vec<String>,
    pub fields: Vec<Field>,
}

/// Context words near a match change its confidence by `weight` (may be negative).
#[derive(Debug, Clone, PartialEq)]
pub struct ContextDef {
    pub words: Vec<String>,
    /// Characters before the match to look in.
    pub before: usize,
    /// Characters after the match to look in.
    pub after: usize,
    pub weight: f32,
}

/// Per-rule allow-lists (applied before the rule runs; `values` after matching).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExceptDef {
    pub senders: Vec<String>,
    pub rooms: Vec<String>,
    pub peers: Vec<String>,
    /// Matched values that are fine (compared without spaces, case-insensitively), e.g. the
    /// organisation's own published IBAN.
    pub values: Vec<String>,
}

/// A file-level `[[exception]]`: when sender/room/peer all fit (empty = any), the listed
/// rules (empty = all rules) do not apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExceptionDef {
    pub rules: Vec<(String, Loc)>,
    pub senders: Vec<String>,
    pub rooms: Vec<String>,
    pub peers: Vec<String>,
    pub reason: String,
}

/// The input of an embedded test.
#[derive(Debug, Clone, PartialEq)]
pub enum TestInput {
    /// Text in one field (`field`, default `body`) of an event of `event_type`.
    Text { text: String, field: Field },
    /// A PDU or bare event JSON (`type`, `content`, optional `room_id`, `sender`).
    Event(Json),
}

/// A `[[rule.test]]`: run the whole rule set on the input and compare this rule's verdict
/// (its action if it matched, else `allow`) with `expect`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestDef {
    pub name: Option<String>,
    pub input: TestInput,
    pub event_type: String,
    pub direction: Direction,
    pub peer: Option<String>,
    pub room: Option<String>,
    pub sender: Option<String>,
    pub expect: Action,
    pub loc: Loc,
}

/// One `[[rule]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub action: Action,
    pub mode: Mode,
    pub scope: ScopeDef,
    /// Patterns, ASCII by default (`(?u)` opts into Unicode classes).
    pub regex: Vec<String>,
    pub keywords: Vec<String>,
    pub case_sensitive: bool,
    pub fold_diacritics: bool,
    pub whole_word: bool,
    /// Also match look-alike letters (Unicode TS #39 confusables, see `crate::text`).
    pub confusables: bool,
    pub validator: Option<Validator>,
    pub confidence: f32,
    pub threshold: f32,
    pub min_matches: u32,
    pub context: Vec<ContextDef>,
    pub except: ExceptDef,
    /// Matches of this rule that overlap a match of one of these rules (same field) are
    /// dropped: a phone-number pattern inside an IBAN is part of the IBAN.
    pub suppressed_by: Vec<(String, Loc)>,
    /// The classification a match of this rule means (`classification = { policy = …,
    /// name = … }`): the label layer's marking detector (`policy::dlp_markings`) reads it.
    pub classification: Option<ClassificationRef>,
    pub tests: Vec<TestDef>,
    pub file: Arc<str>,
    pub loc: Loc,
}

/// A rule's `classification`: a security classification of a SPIF, named by the policy (its
/// OID or the SPIF's policy name) and the classification's name or LACV (or both, which must
/// agree). Resolved against the loaded SPIFs where the label layer is built
/// (`policy::dlp_markings::resolve`); the rule file alone only checks the shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassificationRef {
    /// Policy OID (`1.3.26.1.3.1`) or SPIF policy name (`NATO`).
    pub policy: String,
    /// Classification name as written in the SPIF (`GEHEIM`).
    pub name: Option<String>,
    /// Classification LACV.
    pub lacv: Option<u64>,
    /// Where `classification` is written.
    pub loc: Loc,
}

/// One parsed rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFile {
    pub file: Arc<str>,
    pub mode: Mode,
    pub rules: Vec<RuleDef>,
    pub exceptions: Vec<ExceptionDef>,
}

/// The regex dialect of rule files: bytes, Unicode off (ASCII `\b`, `\w`, `\d`, fast on
/// German text), `(?u)` opts in.
pub(crate) fn regex_builder(patterns: &[String]) -> regex::bytes::RegexBuilder {
    let mut b = regex::bytes::RegexBuilder::new(patterns.first().map_or("", |s| s.as_str()));
    b.unicode(false)
        .size_limit(32 << 20)
        .dfa_size_limit(32 << 20);
    b
}

/// Compile one pattern in the rule-file dialect.
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex_builder(&[pattern.to_owned()]).build().map_err(|e| {
        let s = e.to_string();
        s.lines()
            .find_map(|l| l.strip_prefix("error: "))
            .map(str::to_owned)
            .unwrap_or_else(|| s.replace('\n', " "))
    })
}

/// The first character of `s` that normalised text never contains (removed controls and
/// invisible characters, combining marks), if any.
fn never_in_normalized(s: &str) -> Option<char> {
    s.chars()
        .find(|&c| crate::text::is_removed(c) || unicode_normalization::char::is_combining_mark(c))
}

type Span = Option<Range<usize>>;

struct Parser<'a> {
    text: &'a str,
    file: Arc<str>,
    diags: &'a mut Vec<Diagnostic>,
}

impl Parser<'_> {
    fn loc(&self, span: &Span) -> Loc {
        let Some(span) = span else {
            return Loc::default();
        };
        let offset = span.start.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Loc {
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    }

    fn err(&mut self, code: &'static str, span: &Span, message: impl Into<String>) {
        let loc = self.loc(span);
        // Errors without a span point at the start of the file rather than nowhere.
        let loc = if loc.line == 0 {
            Loc { line: 1, col: 1 }
        } else {
            loc
        };
        self.diags.push(Diagnostic {
            code,
            file: self.file.to_string(),
            line: loc.line,
            col: loc.col,
            message: message.into(),
        });
    }
}

/// A table being read: tracks which keys were consumed so the rest are reported unknown.
struct Tab<'t> {
    t: &'t dyn TableLike,
    span: Span,
    path: String,
    used: Vec<&'static str>,
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => match v {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a datetime",
            Value::Array(_) => "an array",
            Value::InlineTable(_) => "an inline table",
        },
    }
}

impl<'t> Tab<'t> {
    fn new(t: &'t dyn TableLike, span: Span, path: String) -> Self {
        Tab {
            t,
            span,
            path,
            used: Vec::new(),
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, key: &'static str) -> Option<(&'t Item, Span)> {
        self.used.push(key);
        let item = self.t.get(key)?;
        let span = item
            .span()
            .or_else(|| self.t.key(key).and_then(|k| k.span()));
        Some((item, span))
    }

    fn missing(&self, p: &mut Parser<'_>, key: &str) {
        p.err(
            "DLP004",
            &self.span,
            format!("missing required key `{}`", self.key_path(key)),
        );
    }

    fn wrong(&self, p: &mut Parser<'_>, key: &str, span: &Span, want: &str, item: &Item) {
        p.err(
            "DLP003",
            span,
            format!(
                "`{}` must be {want}, found {}",
                self.key_path(key),
                type_name(item)
            ),
        );
    }

    fn string(
        &mut self,
        p: &mut Parser<'_>,
        key: &'static str,
        required: bool,
    ) -> Option<(String, Span)> {
        match self.get(key) {
            None => {
                if required {
                    self.missing(p, key);
                }
                None
            }
            Some((Item::Value(Value::String(s)), span)) => Some((s.value().clone(), span)),
            Some((item, span)) => {
                self.wrong(p, key, &span, "a string", item);
                None
            }
        }
    }

    fn boolean(&mut self, p: &mut Parser<'_>, key: &'static str) -> Option<bool> {
        match self.get(key)? {
            (Item::Value(Value::Boolean(b)), _) => Some(*b.value()),
            (item, span) => {
                self.wrong(p, key, &span, "a boolean", item);
                None
            }
        }
    }

    fn number(&mut self, p: &mut Parser<'_>, key: &'static str, range: Range<f64>) -> Option<f64> {
        let (v, span) = match self.get(key)? {
            (Item::Value(Value::Float(f)), span) => (*f.value(), span),
            (Item::Value(Value::Integer(i)), span) => (*i.value() as f64, span),
            (item, span) => {
                self.wrong(p, key, &span, "a number", item);
                return None;
            }
        };
        if !(range.start..=range.end).contains(&v) {
            p.err(
                "DLP016",
                &span,
                format!(
                    "`{}` = {v} is out of range {} ..= {}",
                    self.key_path(key),
                    range.start,
                    range.end
                ),
            );
            return None;
        }
        Some(v)
    }

    fn uint(&mut self, p: &mut Parser<'_>, key: &'static str, min: i64, max: i64) -> Option<u64> {
        match self.get(key)? {
            (Item::Value(Value::Integer(i)), span) => {
                let v = *i.value();
                if v < min || v > max {
                    p.err(
                        "DLP016",
                        &span,
                        format!(
                            "`{}` = {v} is out of range {min} ..= {max}",
                            self.key_path(key)
                        ),
                    );
                    return None;
                }
                Some(v as u64)
            }
            (item, span) => {
                self.wrong(p, key, &span, "an integer", item);
                None
            }
        }
    }

    /// An array of strings (or, with `single`, one string), each with its span.
    fn strings(
        &mut self,
        p: &mut Parser<'_>,
        key: &'static str,
        single: bool,
    ) -> Vec<(String, Span)> {
        let Some((item, span)) = self.get(key) else {
            return Vec::new();
        };
        match item {
            Item::Value(Value::String(s)) if single => vec![(s.value().clone(), span)],
            Item::Value(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    match v {
                        Value::String(s) => out.push((s.value().clone(), v.span())),
                        other => p.err(
                            "DLP003",
                            &other.span(),
                            format!(
                                "`{}[{i}]` must be a string, found {}",
                                self.key_path(key),
                                type_name(&Item::Value(other.clone()))
                            ),
                        ),
                    }
                }
                out
            }
            item => {
                let want = if single {
                    "a string or an array of strings"
                } else {
                    "an array of strings"
                };
                self.wrong(p, key, &span, want, item);
                Vec::new()
            }
        }
    }

    /// A sub-table (`[rule.scope]` or `scope = { … }`).
    fn table(&mut self, p: &mut Parser<'_>, key: &'static str) -> Option<Tab<'t>> {
        let (item, span) = self.get(key)?;
        let path = self.key_path(key);
        match item.as_table_like() {
            Some(t) => Some(Tab::new(t, span, path)),
            None => {
                self.wrong(p, key, &span, "a table", item);
                None
            }
        }
    }

    /// An array of tables (`[[rule.test]]` or an inline array of inline tables).
    fn tables(&mut self, p: &mut Parser<'_>, key: &'static str) -> Vec<Tab<'t>> {
        let Some((item, span)) = self.get(key) else {
            return Vec::new();
        };
        let path = self.key_path(key);
        match item {
            Item::ArrayOfTables(a) => a
                .iter()
                .enumerate()
                .map(|(i, t)| Tab::new(t, t.span(), format!("{path}[{i}]")))
                .collect(),
            Item::Value(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    match v {
                        Value::InlineTable(t) => {
                            out.push(Tab::new(t, v.span(), format!("{path}[{i}]")))
                        }
                        other => p.err(
                            "DLP003",
                            &other.span(),
                            format!("`{path}[{i}]` must be a table"),
                        ),
                    }
                }
                out
            }
            item => {
                self.wrong(
                    p,
                    key,
                    &span,
                    format!("an array of tables (`[[{path}]]`)").as_str(),
                    item,
                );
                Vec::new()
            }
        }
    }

    /// Report every key that was not read.
    fn finish(self, p: &mut Parser<'_>) {
        for (name, _) in self.t.iter() {
            if !self.used.contains(&name) {
                let span = self
                    .t
                    .key(name)
                    .and_then(|k| k.span())
                    .or_else(|| self.span.clone());
                p.err(
                    "DLP002",
                    &span,
                    format!("unknown key `{}`", self.key_path(name)),
                );
            }
        }
    }
}

fn parse_direction(p: &mut Parser<'_>, s: &str, span: &Span, what: &str) -> Option<Direction> {
    match s {
        "inbound" => Some(Direction::Inbound),
        "outbound" => Some(Direction::Outbound),
        _ => {
            p.err(
                "DLP005",
                span,
                format!("invalid {what} `{s}` (expected \"inbound\" or \"outbound\")"),
            );
            None
        }
    }
}

fn parse_action(p: &mut Parser<'_>, s: &str, span: &Span, what: &str) -> Option<Action> {
    let a = Action::parse(s);
    if a.is_none() {
        p.err(
            "DLP005",
            span,
            format!("invalid {what} `{s}` (expected one of allow, tag, redact, hold, reject)"),
        );
    }
    a
}

fn parse_fields(p: &mut Parser<'_>, list: Vec<(String, Span)>) -> Vec<Field> {
    let mut out = Vec::new();
    for (s, span) in list {
        match s.parse::<Field>() {
            Ok(f) => out.push(f),
            Err(()) => {
                let known: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
                p.err(
                    "DLP009",
                    &span,
                    format!("unknown field `{s}` (known: {})", known.join(", ")),
                );
            }
        }
    }
    out
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn just(v: Vec<(String, Span)>) -> Vec<String> {
    v.into_iter().map(|(s, _)| s).collect()
}

/// Parse one rule file. Problems go to `diags`; the result holds what could be read (it is
/// only used when `diags` stays empty).
pub fn parse_file(text: &str, file: &str, diags: &mut Vec<Diagnostic>) -> Option<RuleFile> {
    let file: Arc<str> = Arc::from(file);
    let mut p = Parser {
        text,
        file: file.clone(),
        diags,
    };
    let doc = match ImDocument::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.message().trim().replace('\n', "; ");
            p.err("DLP001", &e.span(), format!("TOML syntax error: {msg}"));
            return None;
        }
    };
    let mut root = Tab::new(doc.as_table(), None, String::new());
    let mode = match root.string(&mut p, "mode", false) {
        None => Mode::Enforce,
        Some((s, span)) => match s.as_str() {
            "enforce" => Mode::Enforce,
            "shadow" => Mode::Shadow,
            _ => {
                p.err(
                    "DLP005",
                    &span,
                    format!("invalid mode `{s}` (expected \"enforce\" or \"shadow\")"),
                );
                Mode::Enforce
            }
        },
    };
    let mut rules = Vec::new();
    for t in root.tables(&mut p, "rule") {
        if let Some(r) = parse_rule(&mut p, t, mode) {
            rules.push(r);
        }
    }
    let mut exceptions = Vec::new();
    for mut t in root.tables(&mut p, "exception") {
        let rules = t
            .strings(&mut p, "rules", false)
            .into_iter()
            .map(|(s, span)| (s, p.loc(&span)))
            .collect();
        let e = ExceptionDef {
            rules,
            senders: just(t.strings(&mut p, "senders", false)),
            rooms: just(t.strings(&mut p, "rooms", false)),
            peers: just(t.strings(&mut p, "peers", false)),
            reason: t
                .string(&mut p, "reason", false)
                .map(|(s, _)| s)
                .unwrap_or_default(),
        };
        t.finish(&mut p);
        exceptions.push(e);
    }
    root.finish(&mut p);
    Some(RuleFile {
        file,
        mode,
        rules,
        exceptions,
    })
}

fn parse_rule(p: &mut Parser<'_>, mut t: Tab<'_>, mode: Mode) -> Option<RuleDef> {
    let errors_before = p.diags.len();
    let loc = p.loc(&t.span);
    let id = t.string(p, "id", true);
    if let Some((id, span)) = &id {
        if !valid_id(id) {
            p.err(
                "DLP005",
                span,
                format!("invalid rule id `{id}` (letters, digits, `.`, `_`, `-`)"),
            );
        }
    }
    let id_loc = id.as_ref().map(|(_, s)| p.loc(s)).unwrap_or(loc);
    let description = t
        .string(p, "description", true)
        .map(|(s, _)| s)
        .unwrap_or_default();
    let severity = t.string(p, "severity", true).and_then(|(s, span)| {
        let v = Severity::parse(&s);
        if v.is_none() {
            p.err(
                "DLP005",
                &span,
                format!("invalid severity `{s}` (expected low, medium, high, critical)"),
            );
        }
        v
    });
    let action = t
        .string(p, "action", true)
        .and_then(|(s, span)| parse_action(p, &s, &span, "action"));

    // Patterns and keywords go through the text pipeline: they are matched against
    // normalised text, so they are compiled in normalised form (`FÜR` → `FUR`), and a
    // character normalised text never contains is an error.
    let mut regex = t.strings(p, "regex", true);
    for (pat, span) in &mut regex {
        if let Some(c) = never_in_normalized(pat) {
            p.err(
                "DLP018",
                span,
                format!(
                    "pattern contains U+{:04X}, which normalised text never contains",
                    c as u32
                ),
            );
            continue;
        }
        *pat = crate::text::normalize(pat).into_owned();
        if let Err(e) = compile_regex(pat) {
            p.err("DLP007", span, format!("invalid regex: {e}"));
        }
    }
    let mut keywords = t.strings(p, "keywords", false);
    for (k, span) in &mut keywords {
        if let Some(c) = never_in_normalized(k) {
            p.err(
                "DLP018",
                span,
                format!(
                    "keyword contains U+{:04X}, which normalised text never contains",
                    c as u32
                ),
            );
            continue;
        }
        *k = crate::text::normalize(k).into_owned();
        if k.trim().is_empty() {
            p.err("DLP005", span, "empty keyword");
        }
    }
    let kw_span = t.get("keywords").map(|(_, s)| s).unwrap_or(t.span.clone());
    if regex.is_empty() && keywords.is_empty() {
        p.err(
            "DLP010",
            &t.span,
            "rule has no detector: give `regex` or `keywords`",
        );
    }
    let case_sensitive = t.boolean(p, "case_sensitive").unwrap_or(false);
    let fold = t.boolean(p, "fold_diacritics");
    if case_sensitive && fold == Some(true) {
        p.err(
            "DLP012",
            &kw_span,
            "`fold_diacritics = true` needs `case_sensitive = false`",
        );
    }
    let fold_diacritics = fold.unwrap_or(!case_sensitive);
    let whole_word = t.boolean(p, "whole_word").unwrap_or(true);
    let confusables = t.boolean(p, "confusables").unwrap_or(false);
    let validator = t.string(p, "validator", false).and_then(|(s, span)| {
        let v = s.parse::<Validator>().ok();
        if v.is_none() {
            let known: Vec<&str> = Validator::ALL.iter().map(|v| v.as_str()).collect();
            p.err(
                "DLP008",
                &span,
                format!("unknown validator `{s}` (known: {})", known.join(", ")),
            );
        }
        v
    });
    let confidence = t.number(p, "confidence", 0.0..1.0).unwrap_or(1.0) as f32;
    let threshold = t.number(p, "threshold", 0.0..1.0).unwrap_or(0.5) as f32;
    let min_matches = t.uint(p, "min_matches", 1, 1000).unwrap_or(1) as u32;

    let mut context = Vec::new();
    for mut c in t.tables(p, "context") {
        let words = c.strings(p, "words", false);
        if words.is_empty() && c.get("words").is_none() {
            c.missing(p, "words");
        }
        let before = c.uint(p, "before", 0, 10_000).unwrap_or(40) as usize;
        let after = c.uint(p, "after", 0, 10_000).unwrap_or(40) as usize;
        let weight = match c.number(p, "weight", -1.0..1.0) {
            Some(w) => w as f32,
            None => {
                if c.t.get("weight").is_none() {
                    c.missing(p, "weight");
                }
                0.0
            }
        };
        c.finish(p);
        context.push(ContextDef {
            words: just(words),
            before,
            after,
            weight,
        });
    }

    let mut scope = ScopeDef::default();
    if let Some(mut s) = t.table(p, "scope") {
        for (d, span) in s.strings(p, "directions", false) {
            if let Some(d) = parse_direction(p, &d, &span, "direction") {
                scope.directions.push(d);
            }
        }
        scope.peers = just(s.strings(p, "peers", false));
        scope.rooms = just(s.strings(p, "rooms", false));
        scope.event_types = just(s.strings(p, "event_types", false));
        let fields = s.strings(p, "fields", false);
        scope.fields = parse_fields(p, fields);
        s.finish(p);
    }
    let mut except = ExceptDef::default();
    if let Some(mut e) = t.table(p, "except") {
        except.senders = just(e.strings(p, "senders", false));
        except.rooms = just(e.strings(p, "rooms", false));
        except.peers = just(e.strings(p, "peers", false));
        except.values = just(e.strings(p, "values", false));
        e.finish(p);
    }

    let suppressed_by = t
        .strings(p, "suppressed_by", false)
        .into_iter()
        .map(|(s, span)| (s, p.loc(&span)))
        .collect();
    let classification = t.table(p, "classification").and_then(|mut c| {
        let loc = p.loc(&c.span);
        let policy = c.string(p, "policy", true);
        if let Some((s, span)) = &policy {
            if s.trim().is_empty() {
                p.err("DLP005", span, "`classification.policy` must not be empty");
            }
        }
        let name = c.string(p, "name", false);
        if let Some((s, span)) = &name {
            if s.trim().is_empty() {
                p.err("DLP005", span, "`classification.name` must not be empty");
            }
        }
        let lacv = c.uint(p, "lacv", 0, i64::MAX);
        if name.is_none() && lacv.is_none() && c.t.get("lacv").is_none() {
            p.err(
                "DLP004",
                &c.span,
                "`classification` needs `name` or `lacv` (the SPIF's classification)",
            );
        }
        c.finish(p);
        Some(ClassificationRef {
            policy: policy?.0.trim().to_owned(),
            name: name.map(|(s, _)| s.trim().to_owned()),
            lacv,
            loc,
        })
    });

    let mut tests = Vec::new();
    for mut tt in t.tables(p, "test") {
        let tloc = p.loc(&tt.span);
        let name = tt.string(p, "name", false).map(|(s, _)| s);
        let text = tt.string(p, "text", false);
        let field = tt.string(p, "field", false);
        let event = tt.string(p, "event", false);
        let event_type = tt.string(p, "event_type", false).map(|(s, _)| s);
        let direction = tt
            .string(p, "direction", false)
            .and_then(|(s, span)| parse_direction(p, &s, &span, "direction"))
            .unwrap_or(Direction::Outbound);
        let peer = tt.string(p, "peer", false).map(|(s, _)| s);
        let room = tt.string(p, "room", false).map(|(s, _)| s);
        let sender = tt.string(p, "sender", false).map(|(s, _)| s);
        let expect = tt
            .string(p, "expect", true)
            .and_then(|(s, span)| parse_action(p, &s, &span, "expected verdict"));
        let input = match (text, event) {
            (Some((text, _)), None) => {
                let field = match field {
                    None => Some(Field::Body),
                    Some((f, span)) => parse_fields(p, vec![(f, span)]).pop(),
                };
                field.map(|field| TestInput::Text { text, field })
            }
            (None, Some((ev, span))) => {
                if let Some((_, fspan)) = &field {
                    p.err("DLP011", fspan, "`field` only applies to `text` tests");
                }
                match serde_json::from_str::<Json>(&ev) {
                    Ok(v)
                        if v.get("type").and_then(Json::as_str).is_some()
                            && v.get("content").is_some_and(Json::is_object) =>
                    {
                        Some(TestInput::Event(v))
                    }
                    Ok(_) => {
                        p.err("DLP011", &span, "test `event` must be a JSON object with `type` and an object `content`");
                        None
                    }
                    Err(e) => {
                        p.err(
                            "DLP011",
                            &span,
                            format!("test `event` is not valid JSON: {e}"),
                        );
                        None
                    }
                }
            }
            (Some(_), Some((_, span))) => {
                p.err(
                    "DLP011",
                    &span,
                    "a test has either `text` or `event`, not both",
                );
                None
            }
            (None, None) => {
                p.err("DLP011", &tt.span, "a test needs `text` or `event`");
                None
            }
        };
        tt.finish(p);
        if let (Some(input), Some(expect)) = (input, expect) {
            let event_type = match (&input, event_type) {
                (_, Some(t)) => t,
                (TestInput::Event(v), None) => v["type"].as_str().unwrap_or_default().to_owned(),
                (TestInput::Text { .. }, None) => "m.room.message".to_owned(),
            };
            tests.push(TestDef {
                name,
                input,
                event_type,
                direction,
                peer,
                room,
                sender,
                expect,
                loc: tloc,
            });
        }
    }
    t.finish(p);
    if p.diags.len() > errors_before {
        return None;
    }
    Some(RuleDef {
        id: id?.0,
        description,
        severity: severity?,
        action: action?,
        mode,
        scope,
        regex: just(regex),
        keywords: just(keywords),
        case_sensitive,
        fold_diacritics,
        whole_word,
        confusables,
        validator,
        confidence,
        threshold,
        min_matches,
        context,
        except,
        suppressed_by,
        classification,
        tests,
        file: p.file.clone(),
        loc: id_loc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<RuleFile>, Vec<Diagnostic>) {
        let mut d = Vec::new();
        let f = parse_file(text, "t.toml", &mut d);
        (f, d)
    }

    #[test]
    fn minimal_rule() {
        let (f, d) = parse(
            r#"
mode = "shadow"
[[rule]]
id = "x"
description = "d"
severity = "low"
action = "tag"
keywords = ["GEHEIM"]
case_sensitive = true
[[rule.test]]
text = "GEHEIM"
expect = "tag"
"#,
        );
        assert!(d.is_empty(), "{d:?}");
        let f = f.unwrap();
        assert_eq!(f.mode, Mode::Shadow);
        let r = &f.rules[0];
        assert_eq!(r.mode, Mode::Shadow);
        assert!(r.case_sensitive && !r.fold_diacritics && r.whole_word);
        assert_eq!(r.tests.len(), 1);
        assert_eq!(r.tests[0].event_type, "m.room.message");
        assert_eq!(r.loc, Loc { line: 4, col: 6 });
    }

    #[test]
    fn all_errors_at_once_with_positions() {
        let (_, d) = parse(
            r#"mode = "loud"
bogus = 1
[[rule]]
id = "a b"
description = "d"
severity = "extreme"
action = "explode"
regex = "(unclosed"
validator = "mod97"
threshold = 2.0
case_sensitive = true
fold_diacritics = true
keywords = ["k"]
[rule.scope]
fields = ["bodyy"]
directions = ["up"]
[[rule.test]]
expect = "allow"
[[rule]]
description = "no id, no detector"
severity = "low"
action = "tag"
"#,
        );
        let got: Vec<(&str, usize)> = d.iter().map(|d| (d.code, d.line)).collect();
        for want in [
            ("DLP005", 1),
            ("DLP002", 2),
            ("DLP005", 4),
            ("DLP005", 6),
            ("DLP005", 7),
            ("DLP007", 8),
            ("DLP008", 9),
            ("DLP016", 10),
            ("DLP012", 13),
            ("DLP009", 15),
            ("DLP005", 16),
            ("DLP011", 17),
            ("DLP004", 19),
            ("DLP010", 19),
        ] {
            assert!(got.contains(&want), "missing {want:?} in {got:?}");
        }
        assert!(d.iter().all(|d| d.col >= 1 && d.file == "t.toml"));
    }

    #[test]
    fn wrong_types_and_bad_json() {
        let (_, d) = parse(
            r#"[[rule]]
id = 5
description = "d"
severity = "low"
action = "tag"
keywords = "single"
whole_word = "yes"
[[rule.test]]
event = "{not json"
expect = "tag"
"#,
        );
        let codes: Vec<(&str, usize, usize)> = d.iter().map(|d| (d.code, d.line, d.col)).collect();
        assert!(codes.contains(&("DLP003", 2, 6)), "{codes:?}");
        assert!(codes.contains(&("DLP003", 6, 12)), "{codes:?}");
        assert!(codes.contains(&("DLP003", 7, 14)), "{codes:?}");
        assert!(codes.contains(&("DLP011", 9, 9)), "{codes:?}");
    }

    #[test]
    fn classification_key_shape() {
        let rule = |c: &str| {
            format!("[[rule]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"low\"\naction = \"tag\"\nkeywords = [\"GEHEIM\"]\nclassification = {c}\n")
        };
        let (f, d) = parse(&rule(r#"{ policy = "DEU-VS", name = "GEHEIM" }"#));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            f.unwrap().rules[0].classification,
            Some(ClassificationRef {
                policy: "DEU-VS".into(),
                name: Some("GEHEIM".into()),
                lacv: None,
                loc: Loc { line: 7, col: 18 },
            })
        );
        let (f, d) = parse(&rule(r#"{ policy = "1.3.26.1.3.1", lacv = 4 }"#));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            f.unwrap().rules[0].classification.as_ref().unwrap().lacv,
            Some(4)
        );
        for (c, code, col) in [
            (r#"{ policy = "NATO" }"#, "DLP004", 18),
            (r#"{ name = "SECRET" }"#, "DLP004", 18),
            (r#"{ policy = "NATO", lacv = -1 }"#, "DLP016", 44),
            (r#"{ policy = "NATO", lacv = "4" }"#, "DLP003", 44),
            (
                r#"{ policy = "NATO", name = "SECRET", level = 4 }"#,
                "DLP002",
                54,
            ),
            (r#"{ policy = "", name = "SECRET" }"#, "DLP005", 29),
            (r#""NATO SECRET""#, "DLP003", 18),
        ] {
            let (_, d) = parse(&rule(c));
            assert!(
                d.iter()
                    .any(|d| d.code == code && d.line == 7 && d.col == col),
                "{c}: {d:?}"
            );
        }
    }

    #[test]
    fn syntax_error_has_position() {
        let (f, d) = parse("[[rule]\nid = 1");
        assert!(f.is_none());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "DLP001");
        assert_eq!(d[0].line, 1);
    }

    #[test]
    fn action_order() {
        assert!(Action::Reject > Action::Hold && Action::Hold > Action::Redact);
        assert!(Action::Redact > Action::Tag && Action::Tag > Action::Allow);
    }
}
