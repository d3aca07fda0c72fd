//! Searching the log: [`search`] (the admin API) and `grenzwacht audit query` (JSON lines).
//! Records are read as they are (run `verify` for integrity); a line that is not a record
//! is an error, except a torn last line of the newest segment (a write in progress).
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::format::parse_rfc3339_ms;
use super::{segment, AuditError};

/// Most records [`search`] returns when `limit` is 0.
pub const DEFAULT_LIMIT: usize = 1000;

/// Every field narrows; `None` = any. The same fields as `review::AuditFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// RFC 3339 (or a date) lower bound, inclusive, of `ts`.
    pub from: Option<String>,
    /// RFC 3339 (or a date) upper bound, exclusive.
    pub to: Option<String>,
    /// `data.room_id`.
    pub room: Option<String>,
    /// `data.sender`.
    pub sender: Option<String>,
    /// `data.origin`, `data.destination` or `data.peer` (case-insensitive).
    pub server: Option<String>,
    /// `data.verdict`.
    pub verdict: Option<String>,
    /// A `data.rules[].rule`.
    pub rule: Option<String>,
    /// `data.label` (the display marking).
    pub label: Option<String>,
    /// Most records returned, the newest ones (in log order); 0 = [`DEFAULT_LIMIT`].
    pub limit: usize,
}

/// A filter with its times parsed.
struct Compiled<'a> {
    f: &'a Filter,
    from: Option<i64>,
    to: Option<i64>,
}

impl Filter {
    fn compile(&self) -> Result<Compiled<'_>, AuditError> {
        let t = |s: &Option<String>, name: &str| -> Result<Option<i64>, AuditError> {
            s.as_deref()
                .map(|s| {
                    parse_rfc3339_ms(s).ok_or_else(|| {
                        AuditError::Invalid(format!(
                            "`{name}` is not an RFC 3339 time or a date: {s}"
                        ))
                    })
                })
                .transpose()
        };
        Ok(Compiled {
            from: t(&self.from, "from")?,
            to: t(&self.to, "to")?,
            f: self,
        })
    }
}

impl Compiled<'_> {
    fn matches(&self, rec: &Value) -> bool {
        let data = rec.get("data");
        let field = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_str);
        let eq =
            |want: &Option<String>, k: &str| want.as_deref().is_none_or(|w| field(k) == Some(w));
        if self.from.is_some() || self.to.is_some() {
            let Some(ts) = rec
                .get("ts")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339_ms)
            else {
                return false;
            };
            if self.from.is_some_and(|f| ts < f) || self.to.is_some_and(|t| ts >= t) {
                return false;
            }
        }
        let f = self.f;
        if !(eq(&f.room, "room_id")
            && eq(&f.sender, "sender")
            && eq(&f.verdict, "verdict")
            && eq(&f.label, "label"))
        {
            return false;
        }
        if let Some(s) = &f.server {
            let hit = ["origin", "destination", "peer"]
                .iter()
                .any(|k| field(k).is_some_and(|v| v.eq_ignore_ascii_case(s)));
            if !hit {
                return false;
            }
        }
        if let Some(r) = &f.rule {
            let hit = data
                .and_then(|d| d.get("rules"))
                .and_then(Value::as_array)
                .is_some_and(|rules| {
                    rules
                        .iter()
                        .any(|m| m.get("rule").and_then(Value::as_str) == Some(r.as_str()))
                });
            if !hit {
                return false;
            }
        }
        true
    }
}

/// Calls `each` with every record of `dir` matching `filter`, in log order (no limit).
pub fn for_each(
    dir: &Path,
    filter: &Filter,
    mut each: impl FnMut(&str, Value) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    let c = filter.compile()?;
    let files = segment::list(dir)?;
    for (i, file) in files.iter().enumerate() {
        for l in segment::read_segment(file)? {
            if !l.complete && i + 1 == files.len() {
                break;
            }
            let v: Value = serde_json::from_str(&l.text).map_err(|_| {
                AuditError::Invalid(format!(
                    "{} line {}: not a record (run `grenzwacht audit verify`)",
                    l.segment, l.line
                ))
            })?;
            if c.matches(&v) {
                each(&l.text, v)?;
            }
        }
    }
    Ok(())
}

/// The newest `filter.limit` (0: [`DEFAULT_LIMIT`]) records matching `filter`, oldest first.
pub fn search(dir: &Path, filter: &Filter) -> Result<Vec<Value>, AuditError> {
    let limit = if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    };
    let mut out = std::collections::VecDeque::new();
    for_each(dir, filter, |_, v| {
        if out.len() == limit {
            out.pop_front();
        }
        out.push_back(v);
        Ok(())
    })?;
    Ok(out.into())
}
