//! YARA-X rules: every `*.yar` file of `<policies>/yara/`, compiled once at load.
//!
//! # Loading
//!
//! Each file is compiled into its own namespace, the file stem (`eicar.yar` → `eicar`), so
//! rules are named `namespace.rule` and two files may use the same rule name. All files are
//! compiled by one `yara_x::Compiler` into one `yara_x::Rules`. A policy directory without a
//! `yara/` subdirectory has no YARA rules (that is no error; the guard logs it). Every problem
//! of every file is reported at once as a [`YaraDiagnostic`] with a stable code and the
//! `file:line:col` of yara-x's error span:
//!
//! | code | meaning |
//! |---|---|
//! | `YAR001` | syntax error (also invalid numbers, escapes, UTF-8) |
//! | `YAR002` | unknown identifier, module, field, pattern or tag |
//! | `YAR003` | a file without rules (empty, only comments or imports) |
//! | `YAR004` | any other compile error (types, patterns, regexps, limits) |
//! | `YAR005` | invalid scope `meta:` of a `text` rule (see `policy::yara_text`) |
//! | `YAR006` | the directory or a file cannot be read, or is not UTF-8 |
//! | `YAR007` | an embedded test line that does not parse or names an unknown rule |
//! | `YAR010` | a yara-x warning (slow pattern, …): printed, never fails the load |
//!
//! The message ends with yara-x's own code (`(yara-x E009)`).
//!
//! # Embedded tests
//!
//! A comment line `// test: <rule> matches "<data>"` or `// test: <rule> ignores "<data>"`
//! in a rule file is a test of rule `<rule>` of that file: `grenzwacht policy test` scans the
//! data with the whole set and checks whether that rule matched. The data is a string with the
//! escapes `\"`, `\\`, `\n`, `\r`, `\t` and `\xHH`.
//!
//! # Scanning
//!
//! [`YaraRules::scan`] runs every rule over a buffer with a `yara_x::Scanner` built for the
//! call (it borrows the rules; building one costs little next to a scan, see the report of
//! `yara_scanner_cost` in the tests). yara-x's timeout has a granularity of whole seconds:
//! the timeout is rounded up and at least 1 s; callers enforce their own finer deadline
//! around the call. Rules tagged `text` are also run over event text by
//! `policy::yara_text` through the [`TextMatcher`] implementation.
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::policy::dlp::{Action, Field};
use crate::policy::manifest::{Manifest, Snapshot};
use crate::policy::yara_text::{TextMatcher, TextRule, TextScanError};
use crate::telemetry::Direction;

/// The subdirectory of the policy directory that holds the YARA rule files.
pub const SUBDIR: &str = "yara";
/// The extension of YARA rule files.
pub const EXT: &str = "yar";
/// The tag that makes a rule also apply to event text.
pub const TEXT_TAG: &str = "text";

/// Compiled YARA-X rules.
pub struct YaraRules {
    rules: Arc<yara_x::Rules>,
    /// The files that hold `text` rules, compiled on their own: text scans run only them
    /// (and only the modules they import). `None` without text rules.
    text_rules: Option<Arc<yara_x::Rules>>,
    /// Every rule as `namespace.rule`, in compile order.
    names: Vec<String>,
    /// The rules tagged `text` with their scope.
    text: Vec<TextRule>,
    /// `namespace.rule` → index into `text`.
    text_index: BTreeMap<String, usize>,
    /// Per file (name inside the yara directory): the rules it defines.
    files: Vec<(String, Vec<String>)>,
    /// yara-x's warnings (`YAR010`).
    warnings: Vec<YaraDiagnostic>,
    /// The embedded tests of all files.
    tests: Vec<YaraTest>,
}

/// One embedded test (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YaraTest {
    /// `namespace.rule`
    pub rule: String,
    /// The file as shown in diagnostics, and the test's line.
    pub file: String,
    pub line: usize,
    /// `true`: the rule must match; `false`: it must not.
    pub expect_match: bool,
    pub data: Vec<u8>,
}

/// The outcome of one embedded test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YaraTestResult {
    pub test: YaraTest,
    /// Whether the rule matched (`Err`: the scan failed).
    pub matched: Result<bool, String>,
}

impl YaraTestResult {
    pub fn passed(&self) -> bool {
        self.matched.as_ref() == Ok(&self.test.expect_match)
    }
}

/// Decodes the quoted data of a test line.
fn unescape(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = Vec::new();
    let mut it = inner.bytes();
    while let Some(b) = it.next() {
        if b == b'"' {
            return None;
        }
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next()? {
            b'"' => out.push(b'"'),
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'x' => {
                let h = [it.next()?, it.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&h).ok()?, 16).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The test lines of one file; problems as `YAR007`.
fn parse_tests(s: &Source<'_>, diags: &mut Vec<YaraDiagnostic>) -> Vec<YaraTest> {
    let mut out = Vec::new();
    for (i, line) in s.text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("// test:") else {
            continue;
        };
        let col = line.len() - line.trim_start().len() + 1;
        let mut parts = rest.trim_start().splitn(3, ' ');
        let (rule, verb, data) = (parts.next(), parts.next(), parts.next());
        let parsed = match (rule, verb, data.and_then(unescape)) {
            (Some(r), Some("matches"), Some(d)) if !r.is_empty() => Some((r, true, d)),
            (Some(r), Some("ignores"), Some(d)) if !r.is_empty() => Some((r, false, d)),
            _ => None,
        };
        match parsed {
            Some((rule, expect_match, data)) => out.push(YaraTest {
                rule: format!("{}.{rule}", namespace_of(s.name)),
                file: s.shown.clone(),
                line: i + 1,
                expect_match,
                data,
            }),
            None => diags.push(diag(
                "YAR007",
                &s.shown,
                (i + 1, col),
                "invalid test line (expected `// test: <rule> matches|ignores \"<data>\"`)".into(),
            )),
        }
    }
    out
}

impl fmt::Debug for YaraRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YaraRules")
            .field("rules", &self.names.len())
            .field("text_rules", &self.text.len())
            .field("files", &self.files.len())
            .finish()
    }
}

/// One matching rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YaraHit {
    /// `namespace.rule`
    pub rule: String,
    /// The rule's tags.
    pub tags: Vec<String>,
    /// The rule's `meta:` string values (`description`, `author`, …); other types as text.
    pub meta: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum YaraScanError {
    #[error("scan timed out")]
    Timeout,
    #[error("scan failed: {0}")]
    Failed(String),
}

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YaraSeverity {
    Error,
    Warning,
}

/// One problem of a YARA rule file: `file:line:col: error[YAR001]: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YaraDiagnostic {
    /// Stable code `YAR0xx` (see the module documentation).
    pub code: &'static str,
    pub severity: YaraSeverity,
    /// The file's path as read (or the directory's).
    pub file: String,
    /// 1-based; 0 when the problem has no position.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
}

impl fmt::Display for YaraDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            YaraSeverity::Error => "error",
            YaraSeverity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {sev}[{}]: {}", self.file, self.code, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {sev}[{}]: {}",
                self.file, self.line, self.col, self.code, self.message
            )
        }
    }
}

/// Every error of a YARA rule set that did not load; `Display` prints one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct YaraDiagnostics(pub Vec<YaraDiagnostic>);

impl fmt::Display for YaraDiagnostics {
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

fn diag(
    code: &'static str,
    file: &str,
    (line, col): (usize, usize),
    message: String,
) -> YaraDiagnostic {
    YaraDiagnostic {
        code,
        severity: YaraSeverity::Error,
        file: file.to_owned(),
        line,
        col,
        message,
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Our code for a yara-x error code.
fn code_of(err: &yara_x::errors::CompileError) -> &'static str {
    use yara_x::errors::CompileError as E;
    match err {
        E::SyntaxError(_)
        | E::InvalidInteger(_)
        | E::InvalidFloat(_)
        | E::InvalidEscapeSequence(_)
        | E::UnexpectedEscapeSequence(_)
        | E::InvalidUTF8(_)
        | E::InvalidRegexpModifier(_) => "YAR001",
        E::UnknownIdentifier(_)
        | E::UnknownModule(_)
        | E::UnknownField(_)
        | E::UnknownPattern(_)
        | E::UnknownTag(_) => "YAR002",
        _ => "YAR004",
    }
}

/// The message of a yara-x report: title, the first label's text, yara-x's code.
fn message_of(
    title: &str,
    labels: impl Iterator<Item = (String, usize)>,
    code: &str,
) -> (String, Option<usize>) {
    let mut first = None;
    let mut msg = title.to_string();
    for (text, start) in labels {
        if first.is_none() {
            first = Some(start);
            if !text.is_empty() && text != title {
                msg.push_str(": ");
                msg.push_str(&text);
            }
        }
    }
    msg.push_str(&format!(" (yara-x {code})"));
    (msg, first)
}

/// One source file to compile: its name inside the yara directory, the path shown in
/// diagnostics, and its text.
struct Source<'a> {
    name: &'a str,
    shown: String,
    text: &'a str,
}

/// The namespace of a file: its stem.
fn namespace_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(stem, _)| stem)
}

fn meta_text(v: &yara_x::MetaValue<'_>) -> String {
    match v {
        yara_x::MetaValue::Integer(i) => i.to_string(),
        yara_x::MetaValue::Float(f) => f.to_string(),
        yara_x::MetaValue::Bool(b) => b.to_string(),
        yara_x::MetaValue::String(s) => (*s).to_string(),
        yara_x::MetaValue::Bytes(b) => String::from_utf8_lossy(b.as_ref()).into_owned(),
    }
}

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

/// The scope of a `text` rule from its meta values; errors are messages for `YAR005`.
fn text_rule(name: String, meta: &[(String, String)]) -> Result<TextRule, Vec<String>> {
    let mut rule = TextRule {
        name,
        fields: Vec::new(),
        directions: Vec::new(),
        event_types: Vec::new(),
        action: Action::Redact,
    };
    let mut errs = Vec::new();
    for (k, v) in meta {
        match k.as_str() {
            "fields" => {
                for f in list(v) {
                    match f.parse::<Field>() {
                        Ok(f) => rule.fields.push(f),
                        Err(()) => errs.push(format!(
                            "rule `{}`: unknown field `{f}` in meta `fields`",
                            rule.name
                        )),
                    }
                }
            }
            "directions" => {
                for d in list(v) {
                    match d {
                        "inbound" => rule.directions.push(Direction::Inbound),
                        "outbound" => rule.directions.push(Direction::Outbound),
                        _ => errs.push(format!(
                            "rule `{}`: invalid direction `{d}` in meta `directions` (expected inbound, outbound)",
                            rule.name
                        )),
                    }
                }
            }
            "event_types" => rule.event_types = list(v).map(str::to_string).collect(),
            "action" => match Action::parse(v.trim()) {
                Some(a @ (Action::Tag | Action::Redact | Action::Hold | Action::Reject)) => {
                    rule.action = a
                }
                _ => errs.push(format!(
                    "rule `{}`: invalid action `{v}` in meta `action` (expected tag, redact, hold, reject)",
                    rule.name
                )),
            },
            _ => {}
        }
    }
    if errs.is_empty() {
        Ok(rule)
    } else {
        Err(errs)
    }
}

impl YaraRules {
    /// A set without rules.
    pub fn empty() -> YaraRules {
        Self::from_sources(&[]).unwrap_or_else(|_| unreachable!("an empty set compiles"))
    }

    /// The YARA directory of a policy directory: `<policies>/yara`.
    pub fn dir_of(policies: &Path) -> PathBuf {
        policies.join(SUBDIR)
    }

    /// Reads every `*.yar` of `<policies>/yara/` once; `Ok(None)` when that directory does
    /// not exist.
    pub fn read_dir(policies: &Path) -> std::io::Result<Option<Snapshot>> {
        match Snapshot::read_dir(&Self::dir_of(policies), EXT) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Loads and compiles every `*.yar` of `<policies>/yara/` (see the module documentation).
    /// A missing `yara/` directory gives a set without rules.
    pub fn load_dir(policies: impl AsRef<Path>) -> Result<YaraRules, Vec<YaraDiagnostic>> {
        let policies = policies.as_ref();
        match Self::read_dir(policies) {
            Ok(snap) => Self::from_snapshot(policies, snap.as_ref())
                .map(|(r, _)| r)
                .map_err(|d| d.0),
            Err(e) => Err(vec![diag(
                "YAR006",
                &Self::dir_of(policies).display().to_string(),
                (0, 0),
                format!("cannot read the YARA rule directory: {e}"),
            )]),
        }
    }

    /// Compiles the files of one read of `<policies>/yara/` ([`YaraRules::read_dir`]; `None`:
    /// no such directory). The manifest names each file `yara/<file>` with the ids
    /// `yara:<namespace>.<rule>`, to be merged into the DLP set's manifest.
    pub fn from_snapshot(
        policies: &Path,
        snap: Option<&Snapshot>,
    ) -> Result<(YaraRules, Manifest), YaraDiagnostics> {
        let Some(snap) = snap else {
            return Ok((Self::empty(), Manifest::new()));
        };
        let _ = policies;
        let mut diags = Vec::new();
        let mut sources = Vec::new();
        for f in snap.files() {
            let shown = f.path.display().to_string();
            match f.content.as_deref().map(std::str::from_utf8) {
                Ok(Ok(text)) => sources.push(Source {
                    name: &f.name,
                    shown,
                    text,
                }),
                Ok(Err(_)) => diags.push(diag(
                    "YAR006",
                    &shown,
                    (0, 0),
                    "cannot read: not valid UTF-8".into(),
                )),
                Err(e) => diags.push(diag("YAR006", &shown, (0, 0), format!("cannot read: {e}"))),
            }
        }
        match Self::compile(&sources) {
            Ok(rules) if diags.is_empty() => {
                let mut manifest = Manifest::new();
                for s in &sources {
                    let ids = rules
                        .files
                        .iter()
                        .filter(|(n, _)| n == s.name)
                        .flat_map(|(_, r)| r.iter().map(|r| format!("yara:{r}")));
                    manifest.insert(&format!("{SUBDIR}/{}", s.name), s.text.as_bytes(), ids);
                }
                Ok((rules, manifest))
            }
            Ok(_) => Err(YaraDiagnostics(diags)),
            Err(more) => {
                diags.extend(more);
                Err(YaraDiagnostics(diags))
            }
        }
    }

    /// Compiles in-memory sources `(file name, text)`; the file name gives the namespace and
    /// names the file in diagnostics.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<YaraRules, Vec<YaraDiagnostic>> {
        let sources: Vec<Source<'_>> = sources
            .iter()
            .map(|(n, t)| Source {
                name: n,
                shown: n.to_string(),
                text: t,
            })
            .collect();
        Self::compile(&sources)
    }

    fn compile(sources: &[Source<'_>]) -> Result<YaraRules, Vec<YaraDiagnostic>> {
        let mut compiler = yara_x::Compiler::new();
        compiler.colorize_errors(false);
        // Includes would read files outside the one snapshot of the directory.
        compiler.enable_includes(false);
        let mut diags = Vec::new();
        let mut warnings = Vec::new();
        for s in sources {
            if !declares_rules(s.text) {
                diags.push(no_rules(&s.shown));
            }
            compiler.new_namespace(namespace_of(s.name));
            let (e0, w0) = (compiler.errors().len(), compiler.warnings().len());
            let _ = compiler.add_source(yara_x::SourceCode::from(s.text).with_origin(&s.shown));
            for e in &compiler.errors()[e0..] {
                let (message, at) = message_of(
                    e.title(),
                    e.labels().map(|l| (l.text().to_string(), l.span().start())),
                    e.code(),
                );
                let pos = at.map_or((0, 0), |a| line_col(s.text, a));
                diags.push(diag(code_of(e), &s.shown, pos, message));
            }
            for w in &compiler.warnings()[w0..] {
                let (message, at) = message_of(
                    w.title(),
                    w.labels().map(|l| (l.text().to_string(), l.span().start())),
                    w.code(),
                );
                let pos = at.map_or((0, 0), |a| line_col(s.text, a));
                let mut d = diag("YAR010", &s.shown, pos, message);
                d.severity = YaraSeverity::Warning;
                warnings.push(d);
            }
        }
        if !diags.is_empty() {
            diags.extend(warnings);
            return Err(diags);
        }
        let rules = compiler.build();
        let mut names = Vec::new();
        let mut per_ns: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut text = Vec::new();
        let mut text_index = BTreeMap::new();
        for r in rules.iter() {
            let name = format!("{}.{}", r.namespace(), r.identifier());
            per_ns.entry(r.namespace()).or_default().push(name.clone());
            if r.tags().any(|t| t.identifier() == TEXT_TAG) {
                let meta: Vec<(String, String)> = r
                    .metadata()
                    .map(|(k, v)| (k.to_string(), meta_text(&v)))
                    .collect();
                match text_rule(name.clone(), &meta) {
                    Ok(tr) => {
                        text_index.insert(name.clone(), text.len());
                        text.push(tr);
                    }
                    Err(errs) => {
                        let src = sources
                            .iter()
                            .find(|s| namespace_of(s.name) == r.namespace());
                        for m in errs {
                            let (file, pos) = match src {
                                Some(s) => (s.shown.as_str(), rule_pos(s.text, r.identifier())),
                                None => ("", (0, 0)),
                            };
                            diags.push(diag("YAR005", file, pos, m));
                        }
                    }
                }
            }
            names.push(name);
        }
        let mut tests = Vec::new();
        for s in sources {
            for t in parse_tests(s, &mut diags) {
                if names.contains(&t.rule) {
                    tests.push(t);
                } else {
                    diags.push(diag(
                        "YAR007",
                        &t.file,
                        (t.line, 1),
                        format!("test names unknown rule `{}`", t.rule),
                    ));
                }
            }
        }
        let mut files = Vec::new();
        for s in sources {
            let defined = per_ns.remove(namespace_of(s.name)).unwrap_or_default();
            if defined.is_empty()
                && !diags
                    .iter()
                    .any(|d| d.code == "YAR003" && d.file == s.shown)
            {
                diags.push(no_rules(&s.shown));
            }
            files.push((s.name.to_string(), defined));
        }
        if !diags.is_empty() {
            diags.extend(warnings);
            return Err(diags);
        }
        Ok(YaraRules {
            text_rules: Self::compile_text(sources, &text)?,
            rules: Arc::new(rules),
            names,
            text,
            text_index,
            files,
            warnings,
            tests,
        })
    }

    /// The files of the `text` rules compiled again on their own (they compiled above).
    fn compile_text(
        sources: &[Source<'_>],
        text: &[TextRule],
    ) -> Result<Option<Arc<yara_x::Rules>>, Vec<YaraDiagnostic>> {
        if text.is_empty() {
            return Ok(None);
        }
        let mut compiler = yara_x::Compiler::new();
        compiler.colorize_errors(false);
        compiler.enable_includes(false);
        for s in sources {
            let ns = namespace_of(s.name);
            if !text
                .iter()
                .any(|t| t.name.split_once('.').is_some_and(|(n, _)| n == ns))
            {
                continue;
            }
            compiler.new_namespace(ns);
            if let Err(e) =
                compiler.add_source(yara_x::SourceCode::from(s.text).with_origin(&s.shown))
            {
                return Err(vec![diag("YAR004", &s.shown, (0, 0), e.to_string())]);
            }
        }
        Ok(Some(Arc::new(compiler.build())))
    }

    /// The embedded tests of all files.
    pub fn tests(&self) -> &[YaraTest] {
        &self.tests
    }

    /// Runs every embedded test.
    pub fn run_tests(&self) -> Vec<YaraTestResult> {
        self.tests
            .iter()
            .map(|t| YaraTestResult {
                test: t.clone(),
                matched: self
                    .scan(&t.data, Duration::from_secs(5))
                    .map(|hits| hits.iter().any(|h| h.rule == t.rule))
                    .map_err(|e| e.to_string()),
            })
            .collect()
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.names.len()
    }

    /// Every rule as `namespace.rule`.
    pub fn rule_names(&self) -> &[String] {
        &self.names
    }

    /// Per file (its name inside the yara directory) the rules it defines.
    pub fn files(&self) -> &[(String, Vec<String>)] {
        &self.files
    }

    /// yara-x's warnings of the load (`YAR010`).
    pub fn warnings(&self) -> &[YaraDiagnostic] {
        &self.warnings
    }

    /// The seconds yara-x is given for a scan with `timeout`: rounded up, at least 1.
    pub fn timeout_secs(timeout: Duration) -> u64 {
        let s = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        s.max(1)
    }

    /// Runs `f` with this thread's scanner of `rules` (built on first use; a thread keeps the
    /// scanners of its [`CACHED_SCANNERS`] most recently used rule sets), its timeout set.
    fn with_scanner<R>(
        rules: &Arc<yara_x::Rules>,
        timeout: Duration,
        f: impl FnOnce(&mut yara_x::Scanner<'_>) -> R,
    ) -> R {
        let timeout = Duration::from_secs(Self::timeout_secs(timeout));
        SCANNER.with(|cell| {
            let Ok(mut cache) = cell.try_borrow_mut() else {
                // Only if `f` itself scanned again: a scanner of its own.
                let mut s = yara_x::Scanner::new(rules);
                s.set_timeout(timeout);
                return f(&mut s);
            };
            match cache.iter().position(|c| Arc::ptr_eq(&c.rules, rules)) {
                Some(0) => {}
                Some(i) => cache.swap(0, i),
                None => {
                    // A dropped entry drops its scanner before the rules it borrows (field
                    // order of `Cached`).
                    cache.truncate(CACHED_SCANNERS - 1);
                    cache.insert(0, Cached::new(rules.clone()));
                }
            }
            let cached = &mut cache[0];
            cached.scanner.set_timeout(timeout);
            f(&mut cached.scanner)
        })
    }

    fn hit(r: &yara_x::Rule<'_, '_>) -> YaraHit {
        YaraHit {
            rule: format!("{}.{}", r.namespace(), r.identifier()),
            tags: r.tags().map(|t| t.identifier().to_string()).collect(),
            meta: r
                .metadata()
                .map(|(k, v)| (k.to_string(), meta_text(&v)))
                .collect(),
        }
    }

    /// Runs every rule over `bytes`; the matching rules in rule order.
    pub fn scan(&self, bytes: &[u8], timeout: Duration) -> Result<Vec<YaraHit>, YaraScanError> {
        if self.names.is_empty() {
            return Ok(Vec::new());
        }
        Self::with_scanner(&self.rules, timeout, |scanner| {
            let results = scanner.scan(bytes).map_err(scan_error)?;
            Ok(results.matching_rules().map(|r| Self::hit(&r)).collect())
        })
    }
}

fn scan_error(e: yara_x::ScanError) -> YaraScanError {
    match e {
        yara_x::ScanError::Timeout => YaraScanError::Timeout,
        other => YaraScanError::Failed(other.to_string()),
    }
}

fn no_rules(file: &str) -> YaraDiagnostic {
    diag(
        "YAR003",
        file,
        (0, 0),
        "rule file has no rules; remove the file instead".into(),
    )
}

/// Whether `text` has the keyword `rule` outside comments and strings (a file without it
/// defines nothing, whatever else it holds).
fn declares_rules(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if &b[start..i] == b"rule" {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// Where rule `ident` is declared in `text` (its first `rule <ident>`), for diagnostics
/// about a rule as a whole.
fn rule_pos(text: &str, ident: &str) -> (usize, usize) {
    let mut from = 0;
    while let Some(i) = text[from..].find(ident) {
        let at = from + i;
        let before = text[..at].trim_end();
        let after = text[at + ident.len()..].chars().next();
        if before.ends_with("rule")
            && after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
        {
            let start = before.len() - "rule".len();
            return line_col(text, start);
        }
        from = at + ident.len();
    }
    (0, 0)
}

impl TextMatcher for YaraRules {
    fn text_rules(&self) -> &[TextRule] {
        &self.text
    }

    fn match_texts(&self, texts: &[&[u8]]) -> Result<Vec<Vec<usize>>, TextScanError> {
        let mut out = Vec::with_capacity(texts.len());
        let Some(rules) = &self.text_rules else {
            out.resize(texts.len(), Vec::new());
            return Ok(out);
        };
        Self::with_scanner(rules, Duration::from_secs(1), |scanner| {
            for t in texts {
                let results = scanner.scan(t).map_err(|e| match e {
                    yara_x::ScanError::Timeout => TextScanError::Timeout,
                    _ => TextScanError::Failed,
                })?;
                out.push(
                    results
                        .matching_rules()
                        .filter_map(|r| {
                            self.text_index
                                .get(&format!("{}.{}", r.namespace(), r.identifier()))
                                .copied()
                        })
                        .collect(),
                );
            }
            Ok(out)
        })
    }
}

/// A thread's scanner and the rules it borrows. Building a `yara_x::Scanner` instantiates the
/// compiled rules' WebAssembly module (milliseconds); scanning a short text with a built one
/// takes microseconds, so each thread keeps one per rule set.
struct Cached {
    /// Borrows `*rules`; declared first so it is dropped first.
    scanner: yara_x::Scanner<'static>,
    rules: Arc<yara_x::Rules>,
}

impl Cached {
    fn new(rules: Arc<yara_x::Rules>) -> Cached {
        let scanner = yara_x::Scanner::new(&rules);
        // SAFETY: the scanner borrows the `Rules` inside the `Arc`, whose heap address does
        // not change while this `Cached` holds the `Arc`; the scanner is dropped before that
        // `Arc` (field order), is never moved out of the `Cached`, and the only access to it
        // (`YaraRules::with_scanner`) hands out a reborrow for the duration of one call.
        let scanner: yara_x::Scanner<'static> = unsafe { std::mem::transmute(scanner) };
        Cached { scanner, rules }
    }
}

/// Rule sets per thread with a kept scanner: the file rules and the text rules (the rules of
/// a replaced set are freed when the thread next scans with two others).
const CACHED_SCANNERS: usize = 2;

thread_local! {
    static SCANNER: std::cell::RefCell<Vec<Cached>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests;

/// `grenzwacht policy check` of `<policies>/yara/` (with the DLP rule files of the same
/// directory).
pub struct PolicyCheck;

impl crate::policy::dlp::cli::CompanionInput for PolicyCheck {
    fn check(
        &self,
        dir: &Path,
    ) -> Result<crate::policy::dlp::cli::CompanionReport, crate::policy::dlp::cli::CompanionErrors>
    {
        use crate::policy::dlp::cli::{CompanionErrors, CompanionReport};
        let show = |d: &[YaraDiagnostic], sev: YaraSeverity| {
            d.iter()
                .filter(|d| d.severity == sev)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        let ydir = YaraRules::dir_of(dir);
        let snap = YaraRules::read_dir(dir).map_err(|e| CompanionErrors {
            errors: vec![diag(
                "YAR006",
                &ydir.display().to_string(),
                (0, 0),
                format!("cannot read the YARA rule directory: {e}"),
            )
            .to_string()],
            warnings: Vec::new(),
        })?;
        let (rules, manifest) =
            YaraRules::from_snapshot(dir, snap.as_ref()).map_err(|d| CompanionErrors {
                errors: show(&d.0, YaraSeverity::Error),
                warnings: show(&d.0, YaraSeverity::Warning),
            })?;
        let summary = match snap {
            None => format!("{}: no YARA rules (no such directory)", ydir.display()),
            Some(_) => format!(
                "{}: OK ({} YARA rules in {} files, {} of them text rules, {} warnings)",
                ydir.display(),
                rules.rule_count(),
                rules.files().len(),
                rules.text_rules().len(),
                rules.warnings().len()
            ),
        };
        Ok(CompanionReport {
            summary,
            warnings: show(rules.warnings(), YaraSeverity::Warning),
            manifest,
            tests: rules
                .run_tests()
                .into_iter()
                .map(|r| crate::policy::dlp::cli::CompanionTest {
                    name: format!("yara:{}@{}", r.test.rule, r.test.line),
                    passed: r.passed(),
                    failure: format!(
                        "{}:{}: expected the rule to {}, {}",
                        r.test.file,
                        r.test.line,
                        if r.test.expect_match {
                            "match"
                        } else {
                            "not match"
                        },
                        match &r.matched {
                            Ok(true) => "it matched".to_string(),
                            Ok(false) => "it did not".to_string(),
                            Err(e) => format!("the scan failed: {e}"),
                        }
                    ),
                })
                .collect(),
        })
    }

    fn explain(&self, dir: &Path, event: &serde_json::Value, direction: Direction) -> Vec<String> {
        use crate::policy::dlp::fields::EventParts;
        use crate::policy::yara_text::YaraTextPolicy;
        let rules = match YaraRules::load_dir(dir) {
            Ok(r) => Arc::new(r),
            Err(d) => return d.iter().map(|d| d.to_string()).collect(),
        };
        if rules.text_rules().is_empty() {
            return Vec::new();
        }
        let policy = YaraTextPolicy::new(rules.clone());
        let out = policy.scan_parts(direction, EventParts::of(event));
        let mut lines = vec![format!(
            "YARA text rules: {}{}",
            out.action,
            out.failed.map(|f| format!(" ({f})")).unwrap_or_default()
        )];
        for h in &out.hits {
            let r = &rules.text_rules()[h.rule];
            lines.push(format!(
                "  rule yara:{} [{}]: field {}",
                r.name, r.action, h.field
            ));
        }
        lines
    }
}
