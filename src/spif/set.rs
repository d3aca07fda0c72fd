//! [`SpifSet`]: several policies by OID, and every decision that needs a policy.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::label::{
    self, text_of, Clearance, Label, LabelError, MAX_LABEL_BYTES, SPIFFY_NS, STANAG_4774_NS,
};
use super::marking::PAGE_BOTTOM;
use super::model::{
    CategoryGroup, Classification, Diagnostic, Operation, Severity, Spif, SpifError,
};
use super::xml;
use super::{ber, Categories, CategoryRef, Oid, TagType};

/// Outcome of an access decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessDecision {
    Grant,
    Deny,
}

/// Why [`SpifSet::decide_access`] denied: every case is a denial (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenial {
    /// The label is unresolvable or invalid under its policy, or its translation is invalid
    /// under the clearance's policy (or that policy is not loaded).
    #[error("{0}")]
    Invalid(LabelError),
    /// The label's policy has no equivalence into the clearance's policy for some part of it.
    #[error("{0}")]
    NoEquivalent(LabelError),
    /// The label is valid (after translation) but the clearance does not cover it.
    #[error("not cleared: {0}")]
    NotCleared(String),
}

impl AccessDenial {
    /// A stable, bounded code: `invalid`, `no_equivalent`, `not_cleared`.
    pub fn code(&self) -> &'static str {
        match self {
            AccessDenial::Invalid(_) => "invalid",
            AccessDenial::NoEquivalent(_) => "no_equivalent",
            AccessDenial::NotCleared(_) => "not_cleared",
        }
    }
}

impl AccessDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessDecision::Grant => "grant",
            AccessDecision::Deny => "deny",
        }
    }
}

/// Several SPIFs, selected by policy OID (and, for STANAG 4774 labels without an OID, by
/// policy name). Cheap to clone (policies are shared).
#[derive(Debug, Clone, Default)]
pub struct SpifSet {
    spifs: HashMap<Oid, Arc<Spif>>,
    by_name: HashMap<String, Vec<Oid>>,
    /// The instants (seconds since the epoch, sorted) at which a label's validity can change:
    /// every `notBefore` and the second after every `notAfter` of every loaded policy.
    validity_changes: Vec<i64>,
}

/// A label resolved against its SPIF: classification and category ordinals (sorted).
struct Resolved<'a> {
    spif: &'a Spif,
    class: &'a Classification,
    cats: Vec<usize>,
}

fn unknown_cat(spif: &Spif, c: &CategoryRef) -> LabelError {
    LabelError::UnknownCategory {
        policy: spif.policy_id.clone(),
        category: format!("{} {} lacv {}", c.tag_set, c.tag_type, c.lacv),
    }
}

/// Now, in seconds since the Unix epoch, for `notBefore` / `notAfter` checks.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A SPIF validity bound — `xs:dateTime` as the schema types `notBefore` / `notAfter`
/// (`YYYY-MM-DDThh:mm:ss[.fff][Z|±hh:mm]`, UTC without an offset) or a bare `YYYY-MM-DD` — as
/// seconds since the epoch. A bare date is its first second (`end_of_day` false) or its last
/// (true). `None` when it is neither.
fn instant(s: &str, end_of_day: bool) -> Option<i64> {
    fn digits(s: &str, n: usize) -> Option<i64> {
        let t = s.get(..n)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    }
    let s = s.trim();
    let (y, mo, d) = (
        digits(s, 4)?,
        digits(s.get(5..)?, 2)?,
        digits(s.get(8..)?, 2)?,
    );
    let b = s.as_bytes();
    if b[4] != b'-' || b[7] != b'-' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(y, mo, d) * 86_400;
    let Some(time) = s[10..].strip_prefix('T') else {
        return s[10..]
            .is_empty()
            .then_some(day + if end_of_day { 86_399 } else { 0 });
    };
    let tb = time.as_bytes();
    if tb.len() < 8 || tb[2] != b':' || tb[5] != b':' {
        return None;
    }
    let (h, mi, sec) = (
        digits(time, 2)?,
        digits(&time[3..], 2)?,
        digits(&time[6..], 2)?,
    );
    if h > 24 || mi > 59 || sec > 60 {
        return None;
    }
    let mut tail = &time[8..];
    if let Some(frac) = tail.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        tail = &frac[n..];
    }
    let offset = match tail {
        "" | "Z" => 0,
        t => {
            let sign = match t.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = &t[1..];
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om) = (digits(o, 2)?, digits(&o[3..], 2)?);
            if oh > 14 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(day + h * 3600 + mi * 60 + sec - offset)
}

/// Checks a validity window at `now` (seconds since the epoch) to the second, offsets
/// applied; an unparsable bound fails closed.
fn within(not_before: &Option<String>, not_after: &Option<String>, now: i64) -> Result<(), String> {
    if let Some(nb) = not_before {
        let t = instant(nb, false).ok_or_else(|| format!("unparsable date '{nb}'"))?;
        if now < t {
            return Err(format!("not valid before {nb}"));
        }
    }
    if let Some(na) = not_after {
        let t = instant(na, true).ok_or_else(|| format!("unparsable date '{na}'"))?;
        if now > t {
            return Err(format!("not valid after {na}"));
        }
    }
    Ok(())
}

fn group_matches(g: &CategoryGroup, has: &dyn Fn(usize) -> bool) -> bool {
    let mut found = false;
    for m in &g.members {
        let hit = m.resolved.iter().any(|&c| has(c));
        match (hit, g.operation) {
            (true, Operation::OneOrMore) => return true,
            (true, Operation::OnlyOne) if found => return false,
            (false, Operation::All) => return false,
            _ => {}
        }
        found |= hit;
    }
    found
}

fn describe_group(spif: &Spif, g: &CategoryGroup) -> String {
    let op = match g.operation {
        Operation::OnlyOne => "exactly one of",
        Operation::OneOrMore => "one or more of",
        Operation::All => "all of",
    };
    let members: Vec<String> = g
        .members
        .iter()
        .map(|m| {
            let ts = m
                .tag_set_ref
                .clone()
                .or(m.tag_set_id.as_ref().map(|o| o.to_string()))
                .unwrap_or_default();
            match m.lacv {
                Some(l) => m
                    .resolved
                    .first()
                    .map(|&c| spif.categories[c].name.clone())
                    .unwrap_or_else(|| format!("{ts} {l}")),
                None => format!("any {} of '{ts}'", m.tag_type),
            }
        })
        .collect();
    format!("{op} [{}]", members.join(", "))
}

impl SpifSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every SPIF file; fails on the first file that does not load or on a duplicate
    /// policy OID.
    pub fn load<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<SpifSet, SpifError> {
        let mut set = SpifSet::new();
        for p in paths {
            let p = p.as_ref();
            let spif = Spif::load(p).map_err(|e| match e {
                SpifError::Io { .. } => e,
                other => SpifError::Io {
                    path: p.display().to_string(),
                    error: std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
                },
            })?;
            set.insert(spif)?;
        }
        Ok(set)
    }

    /// Adds a policy; a second policy with the same OID is refused.
    pub fn insert(&mut self, spif: Spif) -> Result<(), SpifError> {
        let id = spif.policy_id.clone();
        if self.spifs.contains_key(&id) {
            return Err(SpifError::DuplicatePolicy(id));
        }
        self.by_name
            .entry(spif.name.to_ascii_lowercase())
            .or_default()
            .push(id.clone());
        let bounds = spif
            .classifications
            .iter()
            .map(|c| (&c.not_before, &c.not_after))
            .chain(
                spif.categories
                    .iter()
                    .map(|c| (&c.not_before, &c.not_after)),
            );
        for (nb, na) in bounds {
            let nb = nb.as_deref().and_then(|s| instant(s, false));
            let na = na.as_deref().and_then(|s| instant(s, true)).map(|t| t + 1);
            self.validity_changes.extend(nb.into_iter().chain(na));
        }
        self.validity_changes.sort_unstable();
        self.spifs.insert(id, Arc::new(spif));
        Ok(())
    }

    /// How many validity bounds (`notBefore`, `notAfter`) of the loaded policies have passed:
    /// validity decisions ([`SpifSet::validate`] and everything that uses it) can change only
    /// when this number does, so callers that cache decisions key them by it.
    pub fn validity_epoch(&self) -> usize {
        self.validity_epoch_at(now_unix())
    }

    fn validity_epoch_at(&self, now: i64) -> usize {
        self.validity_changes.partition_point(|&t| t <= now)
    }

    /// The policy with this OID.
    pub fn get(&self, id: &Oid) -> Option<&Spif> {
        self.spifs.get(id).map(|a| a.as_ref())
    }

    /// Policy OIDs in the set (sorted).
    pub fn policies(&self) -> Vec<Oid> {
        let mut v: Vec<Oid> = self.spifs.keys().cloned().collect();
        v.sort();
        v
    }

    fn spif(&self, id: &Oid) -> Result<&Spif, LabelError> {
        self.get(id)
            .ok_or_else(|| LabelError::UnknownPolicy(id.clone()))
    }

    fn resolve<'a>(&'a self, label: &Label) -> Result<Resolved<'a>, LabelError> {
        let spif = self.spif(&label.policy)?;
        let class = spif.classification(label.classification).ok_or_else(|| {
            LabelError::UnknownClassification {
                policy: spif.policy_id.clone(),
                classification: label.classification.to_string(),
            }
        })?;
        let mut cats = Vec::with_capacity(label.categories.len());
        for c in &label.categories {
            cats.push(
                spif.category_index(&c.tag_set, c.tag_type, c.lacv)
                    .ok_or_else(|| unknown_cat(spif, c))?,
            );
        }
        cats.sort_unstable();
        Ok(Resolved { spif, class, cats })
    }

    /// Checks that `label` is valid under its policy: known policy, classification and
    /// categories; not obsolete or outside validity dates; the classification's and each
    /// category's required categories present, excluded classifications / categories absent;
    /// single/min/max selection per tag; privacy mark one of the SPIF's if it lists any.
    pub fn validate(&self, label: &Label) -> Result<(), LabelError> {
        let r = self.resolve(label)?;
        let invalid = |reason: String| LabelError::Invalid {
            policy: r.spif.policy_id.clone(),
            reason,
        };
        let has = |c: usize| r.cats.binary_search(&c).is_ok();
        let now = now_unix();
        let class = r.class;
        if class.obsolete {
            return Err(invalid(format!(
                "classification '{}' is obsolete",
                class.name
            )));
        }
        within(&class.not_before, &class.not_after, now)
            .map_err(|e| invalid(format!("classification '{}': {e}", class.name)))?;
        for g in &class.required {
            if !group_matches(g, &has) {
                return Err(invalid(format!(
                    "classification '{}' requires {}",
                    class.name,
                    describe_group(r.spif, g)
                )));
            }
        }
        for ex in &class.excluded {
            if let Some(&c) = ex.resolved.iter().find(|&&c| has(c)) {
                return Err(invalid(format!(
                    "classification '{}' excludes category '{}'",
                    class.name, r.spif.categories[c].name
                )));
            }
        }
        let mut per_tag: BTreeMap<(usize, usize), u32> = BTreeMap::new();
        for &ci in &r.cats {
            let cat = &r.spif.categories[ci];
            *per_tag.entry((cat.tag_set, cat.tag)).or_default() += 1;
            if cat.obsolete {
                return Err(invalid(format!("category '{}' is obsolete", cat.name)));
            }
            within(&cat.not_before, &cat.not_after, now)
                .map_err(|e| invalid(format!("category '{}': {e}", cat.name)))?;
            if cat.excluded_classes.contains(&class.lacv) {
                return Err(invalid(format!(
                    "category '{}' is not allowed with classification '{}'",
                    cat.name, class.name
                )));
            }
            for ex in &cat.excluded {
                if let Some(&c) = ex.resolved.iter().find(|&&c| has(c)) {
                    return Err(invalid(format!(
                        "category '{}' excludes category '{}'",
                        cat.name, r.spif.categories[c].name
                    )));
                }
            }
            for g in &cat.required {
                if !group_matches(g, &has) {
                    return Err(invalid(format!(
                        "category '{}' requires {}",
                        cat.name,
                        describe_group(r.spif, g)
                    )));
                }
            }
        }
        for (&(ts, t), &n) in &per_tag {
            let tag = &r.spif.tag_sets[ts].tags[t];
            if tag.single_selection && n > 1 {
                return Err(invalid(format!(
                    "tag '{}' allows a single selection, label has {n}",
                    tag.name
                )));
            }
            if let Some(min) = tag.min_selection {
                if n < min {
                    return Err(invalid(format!(
                        "tag '{}' needs at least {min} selections, label has {n}",
                        tag.name
                    )));
                }
            }
            if let Some(max) = tag.max_selection {
                if n > max {
                    return Err(invalid(format!(
                        "tag '{}' allows at most {max} selections, label has {n}",
                        tag.name
                    )));
                }
            }
        }
        if let Some(pm) = &label.privacy_mark {
            let pms = &r.spif.privacy_marks;
            if pms.restricted && !pms.marks.is_empty() && !pms.marks.iter().any(|m| m == pm) {
                return Err(invalid(format!(
                    "privacy mark '{pm}' is not one of the policy's"
                )));
            }
        }
        Ok(())
    }

    /// Display marking of `label` (page-bottom location) in `lang` (`None` = default);
    /// language fallback: exact, primary subtag, default. The label's privacy mark comes last
    /// ([`super::marking::privacy_mark_phrase`]).
    pub fn marking(&self, label: &Label, lang: Option<&str>) -> Result<String, LabelError> {
        let r = self.resolve(label)?;
        let lang = lang.unwrap_or("");
        let loc = PAGE_BOTTOM;
        let spif = r.spif;
        let pol = spif.markings.get(lang);
        let sep = pol
            .map(|m| m.separator.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(" ");
        let cat_md = |ci: usize| spif.categories[ci].markings.get(lang);
        let suppress = r
            .cats
            .iter()
            .any(|&c| cat_md(c).is_some_and(|m| m.suppress_class_name(loc)));
        let cls = r.class.markings.get(lang);
        let mut out = String::new();
        if let Some(m) = pol.filter(|m| m.replace_policy(loc)) {
            out.push_str(m.policy_phrase(loc, &spif.name));
        } else if let Some(m) = cls.filter(|m| m.replace_policy(loc)) {
            out.push_str(m.policy_phrase(loc, &r.class.name));
        } else if let Some((m, ci)) = r
            .cats
            .iter()
            .find_map(|&c| cat_md(c).filter(|m| m.replace_policy(loc)).map(|m| (m, c)))
        {
            out.push_str(m.policy_phrase(loc, &spif.categories[ci].name));
        } else {
            out.push_str(&spif.name);
        }
        if !suppress {
            if !out.is_empty() {
                out.push_str(sep);
            }
            let name = &r.class.name;
            out.push_str(cls.or(pol).map(|m| m.phrase(loc, name)).unwrap_or(name));
        }
        render_categories(spif, lang, loc, &mut out, &r.cats, sep);
        if let Some(pm) = label
            .privacy_mark
            .as_deref()
            .and_then(|pm| super::marking::privacy_mark_phrase(&spif.privacy_marks, pm, lang, loc))
        {
            if !out.is_empty() {
                out.push_str(sep);
            }
            out.push_str(&pm);
        }
        if let Some(m) = pol {
            out = format!("{}{out}{}", m.prefix, m.suffix);
        }
        Ok(out)
    }

    /// Display marking of a clearance: `{CLASS|CLASS…}` in hierarchy order, then categories.
    pub fn clearance_marking(
        &self,
        clearance: &Clearance,
        lang: Option<&str>,
    ) -> Result<String, LabelError> {
        let spif = self.spif(&clearance.policy)?;
        let lang = lang.unwrap_or("");
        let pol = spif.markings.get(lang);
        let sep = pol
            .map(|m| m.separator.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(" ");
        let mut classes = Vec::new();
        for l in &clearance.classifications {
            let c = spif
                .classification(*l)
                .ok_or_else(|| LabelError::UnknownClassification {
                    policy: spif.policy_id.clone(),
                    classification: l.to_string(),
                })?;
            classes.push(c);
        }
        classes.sort_by_key(|c| (c.hierarchy, c.lacv));
        let mut cats = Vec::new();
        for c in &clearance.categories {
            cats.push(
                spif.category_index(&c.tag_set, c.tag_type, c.lacv)
                    .ok_or_else(|| unknown_cat(spif, c))?,
            );
        }
        cats.sort_unstable();
        let mut out = String::from("{");
        out.push_str(
            &classes
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join("|"),
        );
        out.push('}');
        render_categories(spif, lang, PAGE_BOTTOM, &mut out, &cats, sep);
        if let Some(m) = pol {
            out = format!("{}{out}{}", m.prefix, m.suffix);
        }
        Ok(out)
    }

    /// Access decision (see the module documentation). An invalid or unresolvable label, or
    /// a policy mismatch, is an error — callers treat every error as deny.
    pub fn access(
        &self,
        label: &Label,
        clearance: &Clearance,
    ) -> Result<AccessDecision, LabelError> {
        if label.policy != clearance.policy {
            return Err(LabelError::PolicyMismatch {
                what: "label",
                got: label.policy.clone(),
                expected: clearance.policy.clone(),
            });
        }
        self.validate(label)?;
        let r = self.resolve(label)?;
        Ok(match decide(&r, clearance) {
            Ok(()) => AccessDecision::Grant,
            Err(_) => AccessDecision::Deny,
        })
    }

    /// The access decision for a label and a clearance in any loaded policies — the one the
    /// traffic path (release to a destination) and `label check` share. A label in another
    /// policy than the clearance is first translated into the clearance's policy
    /// ([`SpifSet::translate`]); a missing equivalence, an invalid label (before or after
    /// translation) and a clearance the label is not covered by are all denials, each with
    /// its reason (fail closed).
    pub fn decide_access(&self, label: &Label, clearance: &Clearance) -> Result<(), AccessDenial> {
        let translated = if label.policy == clearance.policy {
            self.validate(label).map_err(AccessDenial::Invalid)?;
            std::borrow::Cow::Borrowed(label)
        } else {
            std::borrow::Cow::Owned(self.translate(label, &clearance.policy).map_err(
                |e| match e {
                    LabelError::NoEquivalent { .. } => AccessDenial::NoEquivalent(e),
                    other => AccessDenial::Invalid(other),
                },
            )?)
        };
        let r = self.resolve(&translated).map_err(AccessDenial::Invalid)?;
        decide(&r, clearance).map_err(AccessDenial::NotCleared)
    }

    /// Translates `label` into the equivalent policy `to` (fail closed; see the module
    /// documentation). The result is validated under `to`.
    pub fn translate(&self, label: &Label, to: &Oid) -> Result<Label, LabelError> {
        self.validate(label)?;
        if &label.policy == to {
            return Ok(label.clone());
        }
        let r = self.resolve(label)?;
        let src = r.spif;
        let dst = self.spif(to)?;
        let no_eq = |what: String| LabelError::NoEquivalent {
            target: to.clone(),
            what,
        };
        // Classification.
        let mut required: Vec<&CategoryGroup> = Vec::new();
        let new_class = if let Some(e) = r
            .class
            .equivalents
            .iter()
            .find(|e| &e.policy == to && e.applied.encrypt())
        {
            required.extend(e.required.iter());
            e.lacv
        } else {
            dst.classifications
                .iter()
                .filter(|c| {
                    c.equivalents.iter().any(|e| {
                        e.policy == src.policy_id && e.applied.decrypt() && e.lacv == r.class.lacv
                    })
                })
                .max_by_key(|c| c.hierarchy)
                .map(|c| c.lacv)
                .ok_or_else(|| {
                    no_eq(format!(
                        "No equivalent classification for '{}'",
                        r.class.name
                    ))
                })?
        };
        if dst.classification(new_class).is_none() {
            return Err(no_eq(format!(
                "equivalent classification lacv {new_class} of '{}' does not exist in {}",
                r.class.name, dst.name
            )));
        }
        // Categories.
        let mut out: BTreeSet<usize> = BTreeSet::new();
        for &ci in &r.cats {
            let cat = &src.categories[ci];
            let eqs: Vec<_> = cat
                .equivalents
                .iter()
                .filter(|e| &e.policy == to && e.applied.encrypt())
                .collect();
            if !eqs.is_empty() {
                for e in eqs {
                    if e.discard {
                        continue;
                    }
                    let found = match (&e.tag_set, e.lacv) {
                        (Some(ts), Some(l)) => dst.category_index(ts, e.tag_type, l),
                        _ => None,
                    };
                    out.insert(found.ok_or_else(|| {
                        no_eq(format!(
                            "equivalent of category '{}' (line {}) does not exist in {}",
                            cat.name, e.line, dst.name
                        ))
                    })?);
                }
                continue;
            }
            let src_ts = &src.tag_sets[cat.tag_set].id;
            let src_type = src.tag_of(ci).tag_type;
            let mut any = false;
            for (di, dc) in dst.categories.iter().enumerate() {
                for e in &dc.equivalents {
                    if e.policy == src.policy_id
                        && e.applied.decrypt()
                        && e.tag_set.as_ref() == Some(src_ts)
                        && e.tag_type == src_type
                        && e.lacv == Some(cat.lacv)
                    {
                        any = true;
                        if !e.discard {
                            out.insert(di);
                        }
                    }
                }
            }
            if !any {
                return Err(no_eq(format!("No equivalence to '{}'", cat.name)));
            }
        }
        if let Some(ep) = src.equivalent_policy(to) {
            required.extend(ep.required.iter());
        }
        for g in required {
            for m in &g.members {
                let cats = dst.resolve_spec(m).map_err(|e| {
                    no_eq(format!(
                        "required category of the equivalence (line {}): {e}",
                        m.line
                    ))
                })?;
                out.extend(cats);
            }
        }
        let translated = Label {
            policy: to.clone(),
            classification: new_class,
            categories: out.into_iter().map(|c| dst.category_ref(c)).collect(),
            privacy_mark: label.privacy_mark.clone(),
        };
        self.validate(&translated).map_err(|e| match e {
            LabelError::Invalid { policy, reason } => LabelError::Invalid {
                policy,
                reason: format!("translated label: {reason}"),
            },
            other => other,
        })?;
        Ok(translated)
    }

    /// `true` iff `a` dominates `b` (see the module documentation); `false` on anything
    /// unresolvable or on different policies.
    pub fn dominates(&self, a: &Label, b: &Label) -> bool {
        if a.policy != b.policy {
            return false;
        }
        let (Ok(ra), Ok(rb)) = (self.resolve(a), self.resolve(b)) else {
            return false;
        };
        if ra.class.hierarchy < rb.class.hierarchy {
            return false;
        }
        let spif = ra.spif;
        let tt = |c: usize| spif.tag_of(c).tag_type;
        if rb
            .cats
            .iter()
            .any(|&c| tt(c).is_restrictive() && ra.cats.binary_search(&c).is_err())
        {
            return false;
        }
        // Permissive tags work inversely: a wider release is *less* sensitive. For every
        // permissive tag in which b is restricted, a must be restricted at least as much.
        let tag_key = |c: usize| (spif.categories[c].tag_set, spif.categories[c].tag);
        let mut b_perm: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for &c in rb.cats.iter().filter(|&&c| tt(c).is_permissive()) {
            b_perm.entry(tag_key(c)).or_default().push(c);
        }
        for (k, b_vals) in &b_perm {
            let mut a_vals = ra
                .cats
                .iter()
                .copied()
                .filter(|&c| tag_key(c) == *k)
                .peekable();
            if a_vals.peek().is_none() {
                return false;
            }
            if a_vals.any(|c| !b_vals.contains(&c)) {
                return false;
            }
        }
        true
    }

    /// Parses a STANAG 4774 `originatorConfidentialityLabel` (names resolved with the SPIF
    /// selected by the `PolicyIdentifier`'s `URI`/`URL` `urn:oid:`, else by its text).
    pub fn label_from_4774_xml(&self, s: &str) -> Result<Label, LabelError> {
        let root = xml::parse(s, MAX_LABEL_BYTES)?;
        self.label_from_4774_element(&root)
    }

    fn label_from_4774_element(&self, root: &xml::Element) -> Result<Label, LabelError> {
        let syn = |m: String| LabelError::Syntax(m);
        if !root
            .name
            .eq_ignore_ascii_case("originatorConfidentialityLabel")
            || root.namespace.as_deref() != Some(STANAG_4774_NS)
        {
            return Err(syn(format!(
                "expected <originatorConfidentialityLabel xmlns='{STANAG_4774_NS}'>, found <{}>",
                root.name
            )));
        }
        let info = root
            .child("ConfidentialityInformation")
            .ok_or_else(|| syn("Missing confidentiality information".into()))?;
        let pid = info
            .child("PolicyIdentifier")
            .ok_or_else(|| syn("No policy in label".into()))?;
        let pname = pid.trimmed_text();
        let spif = match pid
            .attr("URI")
            .or(pid.attr("URL"))
            .filter(|u| u.starts_with("urn:oid:"))
        {
            Some(u) => {
                let oid = Oid::parse(u).ok_or_else(|| syn(format!("invalid policy URI '{u}'")))?;
                self.spif(&oid)?
            }
            None => match self
                .by_name
                .get(&pname.to_ascii_lowercase())
                .map(Vec::as_slice)
            {
                Some([one]) => self.spif(one)?,
                Some(_) => {
                    return Err(syn(format!(
                        "policy name '{pname}' is ambiguous; use a URI"
                    )))
                }
                None => return Err(LabelError::UnknownPolicyName(pname.to_string())),
            },
        };
        let cname = info
            .child("Classification")
            .map(|c| c.trimmed_text())
            .ok_or_else(|| syn("label without Classification".into()))?;
        let class = spif
            .classification_by_name(cname)
            .or_else(|| {
                spif.classifications
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(cname))
            })
            .ok_or_else(|| LabelError::UnknownClassification {
                policy: spif.policy_id.clone(),
                classification: cname.to_string(),
            })?;
        let privacy_mark = info
            .child("PrivacyMark")
            .map(|p| p.trimmed_text().to_string());
        let mut categories = Categories::new();
        for cat in info.children_named("Category") {
            let ty = cat
                .attr("Type")
                .ok_or_else(|| syn(format!("line {}: Category without Type", cat.line)))?;
            let fits: fn(TagType) -> bool = match ty {
                "PERMISSIVE" => TagType::is_permissive,
                "RESTRICTIVE" => TagType::is_restrictive,
                "INFORMATIVE" => |t| t == TagType::Informative,
                o => return Err(syn(format!("line {}: unsupported tag type {o}", cat.line))),
            };
            let ts = match cat.attr("URI").filter(|u| u.starts_with("urn:oid:")) {
                Some(u) => Oid::parse(u).and_then(|o| spif.tag_set_index(&o)),
                None => {
                    let n = cat.attr("TagName").ok_or_else(|| {
                        syn(format!("line {}: Category without TagName", cat.line))
                    })?;
                    spif.tag_set_index_by_name(n).or_else(|| {
                        spif.tag_sets
                            .iter()
                            .position(|t| t.name.eq_ignore_ascii_case(n))
                    })
                }
            }
            .ok_or_else(|| LabelError::UnknownCategory {
                policy: spif.policy_id.clone(),
                category: format!("tag set {}", cat.attr("TagName").unwrap_or("?")),
            })?;
            for v in cat.children_named("GenericValue") {
                let name = v.trimmed_text();
                let hits: Vec<usize> = spif.tag_sets[ts]
                    .tags
                    .iter()
                    .filter(|t| fits(t.tag_type))
                    .flat_map(|t| t.categories.iter().copied())
                    .filter(|&c| spif.categories[c].name == name)
                    .collect();
                match hits.as_slice() {
                    [one] => {
                        if categories.len() >= label::MAX_CATEGORIES {
                            return Err(syn("too many categories".into()));
                        }
                        categories.insert(spif.category_ref(*one));
                    }
                    [] => {
                        return Err(LabelError::UnknownCategory {
                            policy: spif.policy_id.clone(),
                            category: format!("{ty} '{name}' in '{}'", spif.tag_sets[ts].name),
                        })
                    }
                    _ => {
                        return Err(syn(format!(
                            "category name '{name}' is ambiguous in '{}'",
                            spif.tag_sets[ts].name
                        )))
                    }
                }
            }
        }
        Ok(Label {
            policy: spif.policy_id.clone(),
            classification: class.lacv,
            categories,
            privacy_mark,
        })
    }

    /// Serialises `label` as a STANAG 4774 `originatorConfidentialityLabel`.
    pub fn to_4774_xml(&self, label: &Label) -> Result<String, LabelError> {
        let r = self.resolve(label)?;
        let spif = r.spif;
        let e = xml::escape;
        let mut s = format!(
            "<originatorConfidentialityLabel xmlns=\"{STANAG_4774_NS}\"><ConfidentialityInformation><PolicyIdentifier URI=\"urn:oid:{}\">{}</PolicyIdentifier><Classification>{}</Classification>",
            spif.policy_id,
            e(&spif.name),
            e(&r.class.name)
        );
        if let Some(p) = &label.privacy_mark {
            s.push_str(&format!("<PrivacyMark>{}</PrivacyMark>", e(p)));
        }
        let mut open: Option<(usize, &str)> = None;
        for &c in &r.cats {
            let cat = &spif.categories[c];
            let kind = spif.tag_of(c).tag_type.stanag_4774();
            if open != Some((cat.tag_set, kind)) {
                if open.is_some() {
                    s.push_str("</Category>");
                }
                let ts = &spif.tag_sets[cat.tag_set];
                s.push_str(&format!(
                    "<Category TagName=\"{}\" Type=\"{kind}\" URI=\"urn:oid:{}\">",
                    e(&ts.name),
                    ts.id
                ));
                open = Some((cat.tag_set, kind));
            }
            s.push_str(&format!("<GenericValue>{}</GenericValue>", e(&cat.name)));
        }
        if open.is_some() {
            s.push_str("</Category>");
        }
        s.push_str("</ConfidentialityInformation></originatorConfidentialityLabel>");
        Ok(s)
    }

    /// Parses a label in any supported format — spiffing XML, STANAG 4774 XML, JSON, ESS BER —
    /// and checks that its policy, classification and categories exist in the set.
    pub fn parse_label(&self, data: &[u8]) -> Result<Label, LabelError> {
        if data.is_empty() {
            return Err(LabelError::NoData);
        }
        if data.len() > MAX_LABEL_BYTES {
            return Err(LabelError::TooLarge(data.len()));
        }
        let first = data.iter().copied().find(|b| !b.is_ascii_whitespace());
        let label = match first {
            Some(b'<') | Some(0xef) => {
                let s = text_of(data)?;
                let root = xml::parse(s, MAX_LABEL_BYTES)?;
                if root.namespace.as_deref() == Some(SPIFFY_NS) {
                    Label::from_spiffing_element(&root)?
                } else if root.namespace.as_deref() == Some(STANAG_4774_NS) {
                    self.label_from_4774_element(&root)?
                } else {
                    return Err(LabelError::Syntax(format!(
                        "unknown label namespace {:?}",
                        root.namespace
                    )));
                }
            }
            Some(b'{') => {
                let s = text_of(data)?;
                let v: Value = serde_json::from_str(s)
                    .map_err(|e| LabelError::Syntax(format!("label JSON: {e}")))?;
                Label::from_json(&v)?
            }
            None => return Err(LabelError::NoData),
            // An ESS SecurityLabel is a SET (tag 0x31); anything else is no label at all.
            Some(b) if b != 0x31 || data[0] != 0x31 => {
                return Err(LabelError::Syntax(format!(
                    "neither XML (STANAG 4774, spiffing), the JSON form nor an ESS BER \
                     SecurityLabel (first byte {})",
                    if b.is_ascii_graphic() {
                        format!("'{}'", b as char)
                    } else {
                        format!("0x{b:02x}")
                    }
                )))
            }
            _ => {
                // BER: name an unknown policy before anything else.
                let ess = ber::parse_ess_security_label(data).map_err(LabelError::Ber)?;
                if let Some(p) = ess.policy.as_deref().and_then(Oid::parse) {
                    self.spif(&p)?;
                }
                self.label_from_ber(data)?
            }
        };
        self.resolve(&label)?;
        Ok(label)
    }

    /// Reads and parses a label file ([`SpifSet::parse_label`]); a missing or unreadable file
    /// is "No data to parse".
    pub fn load_label_file(&self, path: &Path) -> Result<Label, LabelError> {
        self.parse_label(&read_bounded(path)?)
    }

    /// Reads and parses a clearance file (spiffing XML or JSON) and checks its policy is known.
    pub fn load_clearance_file(&self, path: &Path) -> Result<Clearance, LabelError> {
        let c = Clearance::parse(&read_bounded(path)?)?;
        let spif = self.spif(&c.policy)?;
        for l in &c.classifications {
            if spif.classification(*l).is_none() {
                return Err(LabelError::UnknownClassification {
                    policy: spif.policy_id.clone(),
                    classification: l.to_string(),
                });
            }
        }
        for cat in &c.categories {
            spif.category_index(&cat.tag_set, cat.tag_type, cat.lacv)
                .ok_or_else(|| unknown_cat(spif, cat))?;
        }
        Ok(c)
    }

    /// Cross-policy checks of the equivalences between the loaded policies: every
    /// equivalent classification / category / required category must exist in the target
    /// policy when that policy is loaded.
    pub fn check_equivalences(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut err = |spif: &Spif, line: usize, m: String| {
            out.push(Diagnostic {
                severity: Severity::Error,
                code: "SPIF050",
                message: format!("{}: {m}", spif.name),
                line: Some(line),
            })
        };
        for id in self.policies() {
            let spif = &self.spifs[&id];
            for c in &spif.classifications {
                for e in &c.equivalents {
                    let Some(dst) = self.get(&e.policy) else {
                        continue;
                    };
                    if e.applied.encrypt() && dst.classification(e.lacv).is_none() {
                        err(
                            spif,
                            e.line,
                            format!(
                                "classification '{}' maps to lacv {} which {} does not have",
                                c.name, e.lacv, dst.name
                            ),
                        );
                    }
                    if e.applied.decrypt() && dst.classification(e.lacv).is_none() {
                        err(
                            spif,
                            e.line,
                            format!(
                                "classification '{}' is mapped from lacv {} which {} does not have",
                                c.name, e.lacv, dst.name
                            ),
                        );
                    }
                    for g in &e.required {
                        for m in &g.members {
                            if let Err(x) = dst.resolve_spec(m) {
                                err(spif, m.line, x);
                            }
                        }
                    }
                }
            }
            for cat in &spif.categories {
                for e in cat.equivalents.iter().filter(|e| !e.discard) {
                    let Some(dst) = self.get(&e.policy) else {
                        continue;
                    };
                    let ok = match (&e.tag_set, e.lacv) {
                        (Some(ts), Some(l)) => dst.category_index(ts, e.tag_type, l).is_some(),
                        _ => false,
                    };
                    if !ok {
                        err(
                            spif,
                            e.line,
                            format!(
                                "category '{}' maps to a category {} does not have",
                                cat.name, dst.name
                            ),
                        );
                    }
                }
            }
            for ep in &spif.equivalent_policies {
                let Some(dst) = self.get(&ep.id) else {
                    continue;
                };
                for g in &ep.required {
                    for m in &g.members {
                        if let Err(x) = dst.resolve_spec(m) {
                            err(spif, m.line, x);
                        }
                    }
                }
            }
        }
        out
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, LabelError> {
    let io = |e: std::io::Error| LabelError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_LABEL_BYTES as u64 {
        return Err(LabelError::TooLarge(meta.len() as usize));
    }
    std::fs::read(path).map_err(io)
}

/// `Ok` iff `clearance` covers the resolved label; otherwise the reason, naming the SPIF's
/// classification, category or tag the clearance lacks.
fn decide(r: &Resolved<'_>, clearance: &Clearance) -> Result<(), String> {
    let spif = r.spif;
    // Hierarchical: a clearance for a classification covers every lower one.
    let cleared = clearance
        .classifications
        .iter()
        .filter_map(|l| spif.classification(*l))
        .any(|c| c.hierarchy >= r.class.hierarchy);
    if !cleared {
        return Err(format!(
            "clearance does not cover classification '{}'",
            r.class.name
        ));
    }
    let mut permissive: BTreeMap<(usize, usize), bool> = BTreeMap::new();
    for &ci in &r.cats {
        let cref = spif.category_ref(ci);
        let tt = cref.tag_type;
        let held = clearance.categories.contains(&cref);
        if tt.is_restrictive() && !held {
            return Err(format!(
                "clearance lacks restrictive category '{}'",
                spif.categories[ci].name
            ));
        }
        if tt.is_permissive() {
            let cat = &spif.categories[ci];
            *permissive.entry((cat.tag_set, cat.tag)).or_default() |= held;
        }
    }
    match permissive.iter().find(|(_, &ok)| !ok) {
        None => Ok(()),
        Some((&(ts, t), _)) => Err(format!(
            "clearance holds none of the label's categories of permissive tag '{}'",
            spif.tag_sets[ts].tags[t].name
        )),
    }
}

fn sorted_refs(spif: &Spif, cats: &[usize]) -> Vec<CategoryRef> {
    cats.iter().map(|&c| spif.category_ref(c)).collect()
}

fn render_categories(
    spif: &Spif,
    lang: &str,
    loc: u32,
    out: &mut String,
    cats: &[usize],
    sep: &str,
) {
    let mut cur: Option<(usize, usize)> = None;
    let mut tag_suffix = String::new();
    let mut tag_sep = String::from("/");
    for &ci in cats {
        let cat = &spif.categories[ci];
        let tag = spif.tag_of(ci);
        let md = cat.markings.get(lang).or_else(|| tag.markings.get(lang));
        let phrase = md.map(|m| m.phrase(loc, &cat.name)).unwrap_or(&cat.name);
        if phrase.is_empty() {
            continue;
        }
        let key = (cat.tag_set, cat.tag);
        if cur != Some(key) {
            cur = Some(key);
            out.push_str(&tag_suffix);
            if !out.is_empty() {
                out.push_str(sep);
            }
            match tag.markings.get(lang) {
                Some(m) => {
                    tag_suffix = m.suffix.clone();
                    tag_sep = if m.separator.is_empty() {
                        "/".into()
                    } else {
                        m.separator.clone()
                    };
                    out.push_str(&m.prefix);
                }
                None => {
                    tag_suffix.clear();
                    tag_sep = "/".into();
                }
            }
        } else {
            out.push_str(&tag_sep);
        }
        out.push_str(phrase);
    }
    out.push_str(&tag_suffix);
}

/// Resolves a label's categories to `(tag set OID, type, LACV)` in ordinal order — exposed for
/// callers that cache labels keyed by their resolved form.
pub fn ordered_categories(set: &SpifSet, label: &Label) -> Result<Vec<CategoryRef>, LabelError> {
    let r = set.resolve(label)?;
    Ok(sorted_refs(r.spif, &r.cats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spif::{Lacv, Spif};
    use proptest::prelude::*;

    const DEU_XML: &str = include_str!("../../spif/deu-vs.xml");
    const NATO_XML: &str = include_str!("../../spif/nato.xml");
    const DEU: &str = "1.3.6.1.4.1.99999.1.1";
    const NATO: &str = "1.3.26.1.3.1";

    fn set() -> SpifSet {
        static SET: std::sync::OnceLock<SpifSet> = std::sync::OnceLock::new();
        SET.get_or_init(|| {
            let mut s = SpifSet::new();
            s.insert(Spif::parse(DEU_XML).unwrap()).unwrap();
            s.insert(Spif::parse(NATO_XML).unwrap()).unwrap();
            s
        })
        .clone()
    }

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    fn cat(ts: &str, t: TagType, l: u64) -> CategoryRef {
        CategoryRef {
            tag_set: oid(ts),
            tag_type: t,
            lacv: Lacv(l),
        }
    }

    fn deu(class: u64, cats: &[CategoryRef]) -> Label {
        Label {
            policy: oid(DEU),
            classification: Lacv(class),
            categories: cats.iter().cloned().collect(),
            privacy_mark: None,
        }
    }

    const FREIGABE: &str = "1.3.6.1.4.1.99999.1.1.1";
    const ZUSATZ: &str = "1.3.6.1.4.1.99999.1.1.2";

    fn nato_clearance(classes: &[u64], cats: &[CategoryRef]) -> Clearance {
        Clearance {
            policy: oid(NATO),
            classifications: classes.iter().map(|&l| Lacv(l)).collect(),
            categories: cats.iter().cloned().collect(),
        }
    }

    /// NATO "Releasable To" (enumerated permissive), DEU = 276 (spif/nato.xml).
    const NATO_REL: &str = "1.3.26.1.4.2";

    #[test]
    fn decide_access_translates_into_the_clearance_policy_and_fails_closed() {
        let s = set();
        let rel_deu = cat(NATO_REL, TagType::EnumeratedPermissive, 276);
        // The equivalentPolicy of DEU-VS adds the NATO context (Context, permissive, 1001).
        let ctx = cat("1.3.26.1.4.4", TagType::Permissive, 1001);
        let geheim_deu = deu(4, &[cat(FREIGABE, TagType::Permissive, 276)]);
        // DEU-VS GEHEIM (Freigabe an DEU) is NATO SECRET Releasable to Germany (the
        // equivalentClassification / equivalentSecCategoryTag of spif/deu-vs.xml).
        let secret_deu = nato_clearance(&[4], &[rel_deu.clone(), ctx.clone()]);
        assert_eq!(s.decide_access(&geheim_deu, &secret_deu), Ok(()));
        // The policy-bound decision refuses the same pair untranslated.
        assert!(matches!(
            s.access(&geheim_deu, &secret_deu),
            Err(LabelError::PolicyMismatch { .. })
        ));
        // Hierarchy: NATO CONFIDENTIAL does not cover SECRET.
        let conf_deu = nato_clearance(&[3], &[rel_deu.clone(), ctx.clone()]);
        let e = s.decide_access(&geheim_deu, &conf_deu).unwrap_err();
        assert_eq!(e.code(), "not_cleared");
        assert!(e.to_string().contains("'SECRET'"), "{e}");
        // Permissive tag: the clearance holds none of the label's release categories.
        let secret_only = nato_clearance(&[4], std::slice::from_ref(&ctx));
        let e = s.decide_access(&geheim_deu, &secret_only).unwrap_err();
        assert_eq!(e.code(), "not_cleared");
        assert!(e.to_string().contains("Releasable To"), "{e}");
        // "Freigabe an EU" has no NATO equivalent: deny, not a guess.
        let geheim_eu = deu(4, &[cat(FREIGABE, TagType::Permissive, 2000)]);
        let e = s.decide_access(&geheim_eu, &secret_deu).unwrap_err();
        assert_eq!(e.code(), "no_equivalent");
        assert!(e.to_string().contains("No equivalence to 'EU'"), "{e}");
        // An unknown classification is invalid before any translation.
        let e = s.decide_access(&deu(99, &[]), &secret_deu).unwrap_err();
        assert_eq!(e.code(), "invalid");
        // Same policy: no translation, same rules.
        let nato_secret = s.translate(&geheim_deu, &oid(NATO)).unwrap();
        assert_eq!(s.decide_access(&nato_secret, &secret_deu), Ok(()));
        assert_eq!(
            s.decide_access(&nato_secret, &conf_deu).unwrap_err().code(),
            "not_cleared"
        );
    }

    #[test]
    fn shipped_spifs_load_without_errors_and_equivalences_resolve() {
        let s = set();
        assert!(
            s.check_equivalences().is_empty(),
            "{:?}",
            s.check_equivalences()
        );
        assert!(s.get(&oid(DEU)).unwrap().warnings.is_empty());
    }

    #[test]
    fn geheim_translates_to_nato_secret_and_back() {
        let s = set();
        let g = deu(4, &[cat(FREIGABE, TagType::Permissive, 276)]);
        s.validate(&g).unwrap();
        assert_eq!(s.marking(&g, None).unwrap(), "GEHEIM - Freigabe an DEU");
        assert_eq!(
            s.marking(&g, Some("en-GB")).unwrap(),
            "SECRET (GEHEIM) - Releasable to Germany"
        );
        let n = s.translate(&g, &oid(NATO)).unwrap();
        assert_eq!(n.policy, oid(NATO));
        assert_eq!(n.classification, Lacv(4));
        assert_eq!(
            s.marking(&n, None).unwrap(),
            "NATO SECRET Releasable to Germany"
        );
        let back = s.translate(&n, &oid(DEU)).unwrap();
        assert_eq!(back, g, "round trip");
        // All four equivalences of BRIEF §5.
        for (l, want) in [
            (2, "NATO RESTRICTED"),
            (3, "NATO CONFIDENTIAL"),
            (4, "NATO SECRET"),
            (5, "COSMIC TOP SECRET"),
        ] {
            let t = s.translate(&deu(l, &[]), &oid(NATO)).unwrap();
            assert_eq!(s.marking(&t, None).unwrap(), want);
            assert_eq!(s.translate(&t, &oid(DEU)).unwrap(), deu(l, &[]));
        }
        assert_eq!(
            s.marking(&deu(2, &[]), None).unwrap(),
            "VS-NUR FÜR DEN DIENSTGEBRAUCH"
        );
    }

    #[test]
    fn translation_fails_closed() {
        let s = set();
        let eu = deu(4, &[cat(FREIGABE, TagType::Permissive, 2000)]);
        s.validate(&eu).unwrap();
        let e = s.translate(&eu, &oid(NATO)).unwrap_err();
        assert!(matches!(e, LabelError::NoEquivalent { .. }), "{e}");
        assert!(e.to_string().contains("EU"), "{e}");
        let sperr = deu(4, &[cat(ZUSATZ, TagType::Restrictive, 10)]);
        assert!(matches!(
            s.translate(&sperr, &oid(NATO)),
            Err(LabelError::NoEquivalent { .. })
        ));
        let nu = Label {
            policy: oid(NATO),
            classification: Lacv(1),
            categories: Default::default(),
            privacy_mark: None,
        };
        let e = s.translate(&nu, &oid(DEU)).unwrap_err();
        assert!(
            e.to_string().contains("No equivalent classification"),
            "{e}"
        );
        // An unknown target policy, and an invalid source label, fail too.
        assert!(matches!(
            s.translate(&deu(4, &[]), &oid("1.2.3")),
            Err(LabelError::UnknownPolicy(_))
        ));
        let invalid = deu(2, &[cat(ZUSATZ, TagType::Restrictive, 2)]);
        assert!(matches!(
            s.translate(&invalid, &oid(NATO)),
            Err(LabelError::Invalid { .. })
        ));
        // STRENG GEHEIM released to DEU is invalid in both policies, so never translated.
        assert!(s
            .validate(&deu(5, &[cat(FREIGABE, TagType::Permissive, 276)]))
            .is_err());
    }

    #[test]
    fn access_decisions() {
        let s = set();
        let clr = |classes: &[u64], cats: &[CategoryRef]| Clearance {
            policy: oid(DEU),
            classifications: classes.iter().map(|&l| Lacv(l)).collect(),
            categories: cats.iter().cloned().collect(),
        };
        let nfd = deu(2, &[]);
        let geheim = deu(4, &[]);
        let peer = clr(&[2], &[cat(FREIGABE, TagType::Permissive, 276)]);
        assert_eq!(s.access(&nfd, &peer).unwrap(), AccessDecision::Grant);
        assert_eq!(
            s.access(&deu(1, &[]), &peer).unwrap(),
            AccessDecision::Grant,
            "clearances are hierarchical"
        );
        assert_eq!(s.access(&geheim, &peer).unwrap(), AccessDecision::Deny);
        // Release category excludes the peer.
        let to_fra = deu(2, &[cat(FREIGABE, TagType::Permissive, 250)]);
        assert_eq!(s.access(&to_fra, &peer).unwrap(), AccessDecision::Deny);
        let to_fra_deu = deu(
            2,
            &[
                cat(FREIGABE, TagType::Permissive, 250),
                cat(FREIGABE, TagType::Permissive, 276),
            ],
        );
        assert_eq!(s.access(&to_fra_deu, &peer).unwrap(), AccessDecision::Grant);
        // Restrictive categories must all be held.
        let krypto = deu(4, &[cat(ZUSATZ, TagType::Restrictive, 2)]);
        assert_eq!(
            s.access(&krypto, &clr(&[4], &[])).unwrap(),
            AccessDecision::Deny
        );
        assert_eq!(
            s.access(&krypto, &clr(&[4], &[cat(ZUSATZ, TagType::Restrictive, 2)]))
                .unwrap(),
            AccessDecision::Grant
        );
        // Policy mismatch and invalid labels are errors (deny).
        let nato_clr = Clearance {
            policy: oid(NATO),
            classifications: [Lacv(4)].into(),
            categories: Default::default(),
        };
        assert!(matches!(
            s.access(&geheim, &nato_clr),
            Err(LabelError::PolicyMismatch { .. })
        ));
        assert!(s
            .access(
                &deu(2, &[cat(ZUSATZ, TagType::Restrictive, 2)]),
                &clr(&[2], &[cat(ZUSATZ, TagType::Restrictive, 2)])
            )
            .is_err());
    }

    #[test]
    fn dominance() {
        let s = set();
        let p = |l| cat(FREIGABE, TagType::Permissive, l);
        let room = deu(4, &[p(276), p(250)]);
        assert!(s.dominates(&room, &room));
        assert!(
            s.dominates(&room, &deu(2, &[])),
            "an unrestricted VS-NfD event fits a GEHEIM room released to DEU+FRA"
        );
        assert!(
            s.dominates(&room, &deu(2, &[p(276), p(250), p(840)])),
            "wider release is less sensitive"
        );
        assert!(
            !s.dominates(&room, &deu(2, &[p(276)])),
            "an event released to DEU only is more restricted than the room"
        );
        assert!(!s.dominates(&room, &deu(5, &[])));
        assert!(!s.dominates(&deu(4, &[]), &deu(4, &[p(276)])));
        assert!(!s.dominates(
            &deu(4, &[]),
            &deu(4, &[cat(ZUSATZ, TagType::Restrictive, 2)])
        ));
        assert!(s.dominates(
            &deu(4, &[cat(ZUSATZ, TagType::Restrictive, 2)]),
            &deu(4, &[])
        ));
        let nato = Label {
            policy: oid(NATO),
            classification: Lacv(1),
            categories: Default::default(),
            privacy_mark: None,
        };
        assert!(!s.dominates(&deu(5, &[]), &nato), "different policies");
        let unknown = deu(9, &[]);
        assert!(
            !s.dominates(&unknown, &deu(1, &[])),
            "unresolvable -> false"
        );
    }

    #[test]
    fn input_that_is_no_label_says_so() {
        let s = set();
        // Plain text used to reach the BER reader ("BER label: truncated").
        let e = s.parse_label(b"GEHEIM\n").unwrap_err();
        let why = e.not_a_label().expect("text is no label");
        assert!(why.contains("first byte 'G'"), "{why}");
        assert!(e.is_input_error());
        assert_eq!(s.parse_label(b"  \n").unwrap_err(), LabelError::NoData);
        assert!(s.parse_label(b"<a").unwrap_err().not_a_label().is_some());
        assert!(s
            .parse_label(b"{\"policy\":1}")
            .unwrap_err()
            .not_a_label()
            .is_some());
        // SET { OID 1.3.6.1.4.1.99999.1.1, INTEGER 2, SET {} }: categories are SIZE (1..64).
        let ber = [
            0x31, 0x11, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x86, 0x8d, 0x1f, 0x01, 0x01,
            0x02, 0x01, 0x02, 0x31, 0x00,
        ];
        let e = s.parse_label(&ber).unwrap_err();
        let why = e.not_a_label().expect("malformed BER is no label");
        assert!(why.contains("empty security categories"), "{why}");
        assert!(e.is_input_error());
        // Without the categories it is a label (VS-NfD).
        let mut plain = ber[..17].to_vec();
        plain[1] = 0x0f;
        assert_eq!(s.parse_label(&plain).unwrap(), deu(2, &[]));
        // About a label, not about the input: invalid under the policy.
        let e = s.parse_label(br#"{"policy":"1.3.6.1.4.1.99999.1.1","classification":9}"#);
        let e = e.unwrap_err();
        assert!(e.not_a_label().is_none() && !e.is_input_error(), "{e}");
        let e = s
            .parse_label(br#"{"policy":"1.2.3","classification":1}"#)
            .unwrap_err();
        assert!(e.is_input_error(), "unknown policy: {e}");
    }

    #[test]
    fn stanag_4774_round_trip() {
        let s = set();
        let g = Label {
            privacy_mark: Some("Übung <A&B>".into()),
            ..deu(
                4,
                &[
                    cat(FREIGABE, TagType::Permissive, 276),
                    cat(ZUSATZ, TagType::Restrictive, 2),
                ],
            )
        };
        let x = s.to_4774_xml(&g).unwrap();
        assert!(x.contains("<Classification>GEHEIM</Classification>"), "{x}");
        assert!(x.contains("&lt;A&amp;B&gt;"), "{x}");
        assert_eq!(s.label_from_4774_xml(&x).unwrap(), g);
        assert_eq!(s.parse_label(x.as_bytes()).unwrap(), g);
        assert_eq!(
            s.parse_label(g.to_json().to_string().as_bytes()).unwrap(),
            g
        );
        assert_eq!(s.parse_label(g.to_spiffing_xml().as_bytes()).unwrap(), g);
        // Unknown names fail.
        let bad = x.replace("GEHEIM", "SUPERGEHEIM");
        assert!(matches!(
            s.label_from_4774_xml(&bad),
            Err(LabelError::UnknownClassification { .. })
        ));
        let bad = x.replace(">DEU<", ">XYZ<");
        assert!(matches!(
            s.label_from_4774_xml(&bad),
            Err(LabelError::UnknownCategory { .. })
        ));
    }

    #[test]
    fn parse_label_errors() {
        let s = set();
        assert_eq!(s.parse_label(b"").unwrap_err(), LabelError::NoData);
        assert!(matches!(
            s.parse_label(&vec![b' '; MAX_LABEL_BYTES + 1]),
            Err(LabelError::TooLarge(_))
        ));
        let e = s
            .load_label_file(Path::new("/nonexistent/label.xml"))
            .unwrap_err();
        assert!(e.to_string().starts_with("No data to parse"), "{e}");
        let unknown = br#"{"policy":"1.1","classification":1}"#;
        assert_eq!(
            s.parse_label(unknown).unwrap_err().to_string(),
            "Unknown policy id: 1.1"
        );
        let bad_cat = format!(
            r#"{{"policy":"{DEU}","classification":1,"categories":[{{"tag_set":"{FREIGABE}","type":"restrictive","lacv":276}}]}}"#
        );
        assert!(
            matches!(
                s.parse_label(bad_cat.as_bytes()),
                Err(LabelError::UnknownCategory { .. })
            ),
            "wrong tag type"
        );
    }

    /// Garbled and truncated inputs never panic (SPIF, labels in every format, clearances).
    #[test]
    fn garbled_inputs_do_not_panic() {
        let s = set();
        let label = s
            .to_4774_xml(&deu(4, &[cat(FREIGABE, TagType::Permissive, 276)]))
            .unwrap();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for src in [DEU_XML, label.as_str()] {
            let b = src.as_bytes();
            for cut in (0..b.len()).step_by(7) {
                let _ = Spif::parse(&String::from_utf8_lossy(&b[..cut]));
                let _ = s.parse_label(&b[..cut]);
                let _ = Clearance::parse(&b[..cut]);
            }
            for _ in 0..300 {
                let mut v = b.to_vec();
                for _ in 0..4 {
                    let i = (next() as usize) % v.len();
                    let pool = b"<>&\"'/=x \x00\xff";
                    v[i] = pool[(next() as usize) % pool.len()];
                }
                let _ = Spif::parse(&String::from_utf8_lossy(&v));
                if let Ok(l) = s.parse_label(&v) {
                    let _ = s.validate(&l);
                    let _ = s.marking(&l, Some("en"));
                    let _ = s.translate(&l, &oid(NATO));
                }
            }
        }
    }

    fn arb_deu_label() -> impl Strategy<Value = Label> {
        (
            1u64..=5,
            proptest::collection::btree_set(
                prop_oneof![Just(276u64), Just(250), Just(840), Just(1001), Just(2000)],
                0..4,
            ),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(c, rel, krypto, sperr)| {
                let mut cats: Vec<CategoryRef> = rel
                    .into_iter()
                    .map(|l| cat(FREIGABE, TagType::Permissive, l))
                    .collect();
                if krypto {
                    cats.push(cat(ZUSATZ, TagType::Restrictive, 2));
                }
                if sperr {
                    cats.push(cat(ZUSATZ, TagType::Restrictive, 10));
                }
                deu(c, &cats)
            })
    }

    fn arb_deu_clearance() -> impl Strategy<Value = Clearance> {
        (
            proptest::collection::btree_set(1u64..=5, 0..5),
            proptest::collection::btree_set(
                prop_oneof![Just(276u64), Just(250), Just(840), Just(1001), Just(2000)],
                0..5,
            ),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(cls, rel, k, sp)| {
                let mut cats: Categories = rel
                    .into_iter()
                    .map(|l| cat(FREIGABE, TagType::Permissive, l))
                    .collect();
                if k {
                    cats.insert(cat(ZUSATZ, TagType::Restrictive, 2));
                }
                if sp {
                    cats.insert(cat(ZUSATZ, TagType::Restrictive, 10));
                }
                Clearance {
                    policy: oid(DEU),
                    classifications: cls.into_iter().map(Lacv).collect(),
                    categories: cats,
                }
            })
    }

    fn arb_nato_clearance() -> impl Strategy<Value = Clearance> {
        (
            proptest::collection::btree_set(1u64..=5, 0..5),
            proptest::collection::btree_set(prop_oneof![Just(276u64), Just(250), Just(840)], 0..4),
            any::<bool>(),
        )
            .prop_map(|(cls, rel, ctx)| {
                let mut cats: Vec<CategoryRef> = rel
                    .into_iter()
                    .map(|l| cat(NATO_REL, TagType::EnumeratedPermissive, l))
                    .collect();
                if ctx {
                    cats.push(cat("1.3.26.1.4.4", TagType::Permissive, 1001));
                }
                nato_clearance(&cls.into_iter().collect::<Vec<_>>(), &cats)
            })
    }

    fn grant(s: &SpifSet, l: &Label, c: &Clearance) -> bool {
        matches!(s.access(l, c), Ok(AccessDecision::Grant))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Raising a clearance (more classifications and categories) never turns grant into deny.
        #[test]
        fn access_monotone_in_clearance(l in arb_deu_label(), c in arb_deu_clearance(), extra in arb_deu_clearance()) {
            let s = set();
            let mut bigger = c.clone();
            bigger.classifications.extend(extra.classifications);
            bigger.categories.extend(extra.categories);
            prop_assert!(!grant(&s, &l, &c) || grant(&s, &l, &bigger));
        }

        /// Raising a label (one that dominates it) never turns deny into grant.
        #[test]
        fn access_monotone_in_label(low in arb_deu_label(), high in arb_deu_label(), c in arb_deu_clearance()) {
            let s = set();
            if s.dominates(&high, &low) && s.validate(&low).is_ok() {
                prop_assert!(!grant(&s, &high, &c) || grant(&s, &low, &c), "high granted, dominated low denied");
            }
        }

        /// The shared decision: same policy, it is `access`; across policies, it is `access`
        /// on the translation, and a label without a translation is denied with a reason.
        #[test]
        fn decide_access_is_translate_then_access(l in arb_deu_label(), d in arb_deu_clearance(), n in arb_nato_clearance()) {
            let s = set();
            prop_assert_eq!(s.decide_access(&l, &d).is_ok(), grant(&s, &l, &d));
            match s.translate(&l, &oid(NATO)) {
                Ok(t) => prop_assert_eq!(s.decide_access(&l, &n).is_ok(), grant(&s, &t, &n)),
                Err(e) => {
                    let code = s.decide_access(&l, &n).unwrap_err().code();
                    let want = if matches!(e, LabelError::NoEquivalent { .. }) { "no_equivalent" } else { "invalid" };
                    prop_assert_eq!(code, want);
                }
            }
        }

        /// Translation round-trips when it succeeds, and the NATO label keeps the access
        /// relation of the equivalent clearance classification.
        #[test]
        fn translation_round_trip(l in arb_deu_label()) {
            let s = set();
            if let Ok(n) = s.translate(&l, &oid(NATO)) {
                if l.classification == Lacv(1) {
                    // OFFEN -> NATO UNCLASSIFIED is one-way (no VS equivalent of NATO UNCLASSIFIED).
                    prop_assert!(s.translate(&n, &oid(DEU)).is_err());
                } else {
                    prop_assert_eq!(s.translate(&n, &oid(DEU)).unwrap(), l);
                }
            }
        }
    }

    #[test]
    fn validity_bounds_are_instants_with_offsets() {
        // 2026-12-06T10:00:00Z.
        let at = |h: i64, m: i64| days_from_civil(2026, 12, 6) * 86_400 + h * 3600 + m * 60;
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        let w = |nb: Option<&str>, na: Option<&str>, now| {
            within(&nb.map(String::from), &na.map(String::from), now)
        };
        // A dateTime bound is an instant, not a day: expired at midnight, not yet valid
        // until 23:00 the same day.
        assert!(w(None, Some("2026-12-06T00:00:00Z"), at(10, 0)).is_err());
        assert!(w(Some("2026-12-06T23:00:00Z"), None, at(10, 0)).is_err());
        assert!(w(
            Some("2026-12-06T09:59:59Z"),
            Some("2026-12-06T10:00:00Z"),
            at(10, 0)
        )
        .is_ok());
        // Offsets: 01:00 +02:00 on the 7th is 23:00 UTC on the 6th.
        assert!(w(None, Some("2026-12-07T01:00:00+02:00"), at(22, 30)).is_ok());
        assert!(w(None, Some("2026-12-07T01:00:00+02:00"), at(23, 30)).is_err());
        assert!(w(Some("2026-12-06T05:00:00-05:00"), None, at(9, 59)).is_err());
        assert!(w(Some("2026-12-06T05:00:00.250-05:00"), None, at(10, 0)).is_ok());
        // No offset: UTC. A bare date covers the whole day.
        assert!(w(None, Some("2026-12-06T10:00:00"), at(10, 1)).is_err());
        assert!(w(Some("2026-12-06"), Some("2026-12-06"), at(0, 0)).is_ok());
        assert!(w(Some("2026-12-06"), Some("2026-12-06"), at(23, 59)).is_ok());
        assert!(w(None, Some("2026-12-06"), at(24, 0)).is_err());
        assert!(w(Some("2026-12-07"), None, at(23, 59)).is_err());
        // Anything else fails closed.
        for bad in [
            "20261206000000Z",
            "2026-12-06x",
            "2026-13-01",
            "2026-12-06T10:00",
            "2026-12-06T10:00:00+0200",
            "2026-12-06T10:00:00.Z",
            "2026-12-06T10:00:00Q",
            "2026-12-06T1é:00:00Z",
            "",
        ] {
            let e = w(Some(bad), None, at(10, 0)).unwrap_err();
            assert!(e.starts_with("unparsable date"), "{bad}: {e}");
            assert!(w(None, Some(bad), at(10, 0)).is_err(), "{bad}");
        }
    }

    #[test]
    fn validity_epoch_counts_passed_bounds() {
        let mut s = SpifSet::new();
        s.insert(Spif::parse(include_str!("../../tests/fixtures/spif/features.xml")).unwrap())
            .unwrap();
        // features.xml: EXPIRED notAfter 2020-01-01T00:00:00Z, FUTURE notBefore
        // 2999-01-01T00:00:00Z, EPSILON notAfter 2020-06-30T12:00:00Z, ZETA notBefore
        // 2999-01-01T00:00:00+02:00, ETA 2000-01-01T00:00:00Z .. 2999-12-31T23:59:59Z.
        let t = |y, m, d, h: i64| days_from_civil(y, m, d) * 86_400 + h * 3600;
        assert_eq!(s.validity_epoch_at(t(1999, 1, 1, 0)), 0);
        assert_eq!(s.validity_epoch_at(t(2000, 1, 1, 0)), 1);
        // notAfter is valid through its second: the change is one second later.
        assert_eq!(s.validity_epoch_at(t(2020, 1, 1, 0)), 1);
        assert_eq!(s.validity_epoch_at(t(2020, 1, 1, 0) + 1), 2);
        assert_eq!(s.validity_epoch_at(t(2026, 12, 6, 10)), 3);
        assert_eq!(s.validity_epoch_at(t(2998, 12, 31, 22)), 4);
        assert_eq!(s.validity_epoch_at(t(2999, 1, 1, 0)), 5);
        assert_eq!(s.validity_epoch_at(t(3000, 1, 1, 0)), 6);
        assert_eq!(s.validity_epoch(), s.validity_epoch_at(now_unix()));
        // The shipped SPIFs have no validity bounds: one epoch forever.
        assert_eq!(
            set().validity_epoch_at(0),
            set().validity_epoch_at(i64::MAX)
        );
    }
}
