//! The SPIF data model (Open XML SPIF 1.0–2.1) and its loader with diagnostics.
//!
//! Design notes:
//! - Categories are stored flat in document order ([`Spif::categories`]); the index of a
//!   category is its *ordinal*, which orders categories in display markings exactly as the
//!   SPIF lists them (the conformance data depends on this order, e.g. "Ireland, Sweden,
//!   Ukraine, NATO ONLY").
//! - A category is identified inside its tag set by `(tagType, lacv)`; labels refer to it as
//!   `(tag set OID, tagType, lacv)` ([`super::CategoryRef`]).
//! - References inside the policy (`excludedClass`, `requiredCategory`/`categoryGroup`,
//!   `excludedCategory`) are resolved at load time; a dangling one is an error. References into
//!   *another* policy (the `requiredCategory` of `equivalentPolicy` / `equivalentClassification`
//!   and `equivalentSecCategoryTag`) can only be resolved against that policy, at translation
//!   time ([`super::SpifSet::translate`]) or by [`super::SpifSet::check_equivalences`].
//! - Diagnostics carry a stable code (`SPIF0xx`), a message and the source line.
//!
//! # What loads (Open XML SPIF 2.0/2.1)
//!
//! Every element, attribute and value the schema defines loads. Errors refuse the file
//! (missing required attributes `SPIF001`, bad numbers/OIDs `SPIF002`/`SPIF003`, values outside
//! the schema's enumerations `SPIF004`–`SPIF006`/`SPIF021`/`SPIF026`/`SPIF040`, duplicates,
//! dangling references `SPIF014`/`SPIF024`/`SPIF031`). Warnings keep the file:
//!
//! | code | construct | handling |
//! |---|---|---|
//! | `SPIF041` | marking codes `firstLineOfText`, `lastLineOfText`, `subject`, `xHeader`, `portionMarking`, `inputTitle`, `waterMark` | kept in [`Markings`] (see [`super::marking`]), not rendered |
//! | `SPIF032` | one name under two tags of one tag set with the same STANAG 4774 type (e.g. permissive and enumerated permissive) | both loaded; a 4774 label naming it is refused as ambiguous |
//! | `SPIF033` | a tag with `tagType="notApplicable"` | its categories are not loaded |
//! | `SPIF034` | a classification, category or `equivalentSecCategoryTag` whose `lacv` is a string (the schema allows integer or string) | not loaded: labels cannot carry it, labels naming it (or translating through it) fail closed |
//! | `SPIF060`–`SPIF063` | undefined elements/attributes, foreign namespaces, `updateInfo`, `extensions`, `equivalentSecurityCategoryTagSet`, `userInput`/`dateFormat` | not read ([`super::schema`]) |
//!
//! Also accepted: a tag without `name` (the tag set's name stands in), `minSelection` /
//! `maxSelection` = `unbounded` (no limit), and `requiredClass` on a category, which is applied
//! as "every other classification is excluded".
//!
//! # Repeated categories
//!
//! A category is keyed by **(tag set, tag type, lacv)**. Published SPIFs (the NCIA NATO SPIF)
//! repeat a category — same name and lacv — under several tag sets or several tag types to give
//! it different rules. Each such entry is its own category:
//! - its own rules (`excludedClass`, `requiredClass`, `requiredCategory`, `excludedCategory`,
//!   `obsolete`, validity) apply when a label carries *that* entry;
//! - its own markings and name are used in display markings (normally the same name);
//! - for access, the entries are distinct: a clearance holding "Releasable To / enumerated
//!   permissive / DEU" does not hold "Releasable To / restrictive / DEU" or "Only / DEU";
//! - a label names an entry by tag set and tag type (JSON, spiffing XML, BER: by OID, type and
//!   lacv; STANAG 4774: by tag set name or URI, `Type` and name) and gets that entry's rules.
//!   A STANAG 4774 name that matches two entries of one tag set and `Type` is refused
//!   (warned at load time as `SPIF032`).
//!
//! The same (tag set, tag type, lacv) twice is an exact duplicate and an error (`SPIF027`),
//! whether in one tag or in two tags of that tag set and type.
use std::collections::{BTreeSet, HashMap};
use std::fmt;

use super::marking::Markings;
use super::xml::{self, Element};
use super::{Lacv, Oid, TagType};

/// Maximum SPIF document size accepted (the NATO SPIF is 87 KB).
pub const MAX_SPIF_BYTES: usize = 8 * 1024 * 1024;

/// Severity of a [`Diagnostic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a SPIF: stable code, message, line (1-based) where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub line: Option<usize>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.line {
            Some(l) => write!(f, "{sev}[{}] line {l}: {}", self.code, self.message),
            None => write!(f, "{sev}[{}]: {}", self.code, self.message),
        }
    }
}

/// How a `requiredCategory` combines its `categoryGroup`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    OnlyOne,
    OneOrMore,
    All,
}

/// Direction in which an equivalence applies (`applied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Used when a label of this policy is translated *to* the other policy.
    Encrypt,
    /// Used when a label of the other policy is translated *into* this policy.
    Decrypt,
    Both,
}

impl Applied {
    pub fn encrypt(self) -> bool {
        matches!(self, Applied::Encrypt | Applied::Both)
    }
    pub fn decrypt(self) -> bool {
        matches!(self, Applied::Decrypt | Applied::Both)
    }
}

/// Encoding of an informative (tagType7) tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InformativeEncoding {
    NotApplicable,
    BitSet,
    Enumerated,
}

/// A reference to one category (`lacv` given) or all categories of a type in a tag set.
#[derive(Debug, Clone)]
pub struct CategorySpec {
    /// `tagSetRef` (tag set *name*).
    pub tag_set_ref: Option<String>,
    /// `tagSetId` (tag set OID), an alternative to `tagSetRef`.
    pub tag_set_id: Option<Oid>,
    pub tag_type: TagType,
    /// `None` = every category of `tag_type` in the tag set (`all="true"` or no `lacv`).
    pub lacv: Option<Lacv>,
    pub line: usize,
    /// Resolved category indices (own policy only; empty for cross-policy specs).
    pub resolved: Vec<usize>,
}

/// `requiredCategory`: an operation over category groups.
#[derive(Debug, Clone)]
pub struct CategoryGroup {
    pub operation: Operation,
    pub members: Vec<CategorySpec>,
    pub line: usize,
}

/// `equivalentPolicy`.
#[derive(Debug, Clone)]
pub struct EquivalentPolicy {
    pub name: String,
    pub id: Oid,
    /// Categories (of the *target* policy) added to every label translated to it.
    pub required: Vec<CategoryGroup>,
}

/// `equivalentClassification`.
#[derive(Debug, Clone)]
pub struct EquivalentClassification {
    pub policy: Oid,
    pub lacv: Lacv,
    pub applied: Applied,
    /// Categories (of the target policy) added to the translated label.
    pub required: Vec<CategoryGroup>,
    pub line: usize,
}

/// `equivalentSecCategoryTag`.
#[derive(Debug, Clone)]
pub struct EquivalentCategory {
    pub policy: Oid,
    pub tag_set: Option<Oid>,
    pub tag_type: TagType,
    pub lacv: Option<Lacv>,
    pub applied: Applied,
    /// `action="discard"`: the category is dropped in the target policy (an explicit, not a
    /// missing, equivalence).
    pub discard: bool,
    pub line: usize,
}

/// `securityClassification`.
#[derive(Debug, Clone)]
pub struct Classification {
    pub name: String,
    pub lacv: Lacv,
    pub hierarchy: u64,
    pub obsolete: bool,
    pub color: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub markings: Markings,
    pub required: Vec<CategoryGroup>,
    pub excluded: Vec<CategorySpec>,
    pub equivalents: Vec<EquivalentClassification>,
    pub line: usize,
}

/// `securityCategoryTagSet`.
#[derive(Debug, Clone)]
pub struct TagSet {
    pub name: String,
    pub id: Oid,
    pub markings: Markings,
    pub tags: Vec<Tag>,
    pub line: usize,
}

/// `securityCategoryTag`.
#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub tag_type: TagType,
    pub informative_encoding: InformativeEncoding,
    pub single_selection: bool,
    pub min_selection: Option<u32>,
    pub max_selection: Option<u32>,
    pub markings: Markings,
    /// Flat category indices (ordinals) of this tag's categories.
    pub categories: Vec<usize>,
    pub line: usize,
}

/// `tagCategory`.
#[derive(Debug, Clone)]
pub struct Category {
    pub name: String,
    pub lacv: Lacv,
    pub tag_set: usize,
    pub tag: usize,
    pub obsolete: bool,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub excluded_classes: Vec<Lacv>,
    pub required: Vec<CategoryGroup>,
    pub excluded: Vec<CategorySpec>,
    pub equivalents: Vec<EquivalentCategory>,
    pub markings: Markings,
    pub line: usize,
}

/// `privacyMark` entries and their selection rules.
#[derive(Debug, Clone, Default)]
pub struct PrivacyMarks {
    pub marks: Vec<String>,
    pub min_selection: Option<u32>,
    pub max_selection: Option<u32>,
    /// A label's privacy mark must be one of `marks` when this is set and `marks` is non-empty.
    pub restricted: bool,
    /// The `markingData` / `markingQualifier` of `privacyMarks` (all marks).
    pub markings: Markings,
    /// The `markingData` / `markingQualifier` of each `privacyMark`, parallel to `marks`.
    pub mark_markings: Vec<Markings>,
}

/// A parsed and checked security policy.
#[derive(Debug, Clone)]
pub struct Spif {
    pub policy_id: Oid,
    pub name: String,
    pub schema_version: Option<String>,
    pub rbac_id: Option<String>,
    pub privilege_id: Option<String>,
    pub default_policy: Option<(String, String)>,
    pub classifications: Vec<Classification>,
    pub tag_sets: Vec<TagSet>,
    /// All categories, flat, in document order (index = ordinal).
    pub categories: Vec<Category>,
    pub equivalent_policies: Vec<EquivalentPolicy>,
    pub privacy_marks: PrivacyMarks,
    pub markings: Markings,
    /// Non-fatal findings from loading.
    pub warnings: Vec<Diagnostic>,
    class_by_lacv: HashMap<Lacv, usize>,
    class_by_name: HashMap<String, usize>,
    tagset_by_id: HashMap<Oid, usize>,
    tagset_by_name: HashMap<String, usize>,
    cat_index: HashMap<(usize, TagType, Lacv), usize>,
}

impl From<xml::XmlError> for SpifError {
    fn from(e: xml::XmlError) -> Self {
        SpifError::Xml(e)
    }
}

/// Errors from loading a SPIF. No variant has a `source`: each message is complete.
#[derive(Debug, thiserror::Error)]
pub enum SpifError {
    /// The file could not be read (or the SPIF in it could not be loaded, as wrapped by
    /// [`super::SpifSet::load`]). The reason is part of the message and not repeated as a
    /// `source`, so an error chain prints it once.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// Not well-formed XML (or beyond the size and depth limits); the line is where the parser
    /// stopped.
    #[error("SPIF is not well-formed XML at line {}: {}", .0.line, .0.message)]
    Xml(xml::XmlError),
    /// The SPIF has at least one error; the message shows the first, all are in `diagnostics`.
    #[error("{}{}", .diagnostics.iter().find(|d| d.severity == Severity::Error).map(|d| d.to_string()).unwrap_or_default(), if .diagnostics.iter().filter(|d| d.severity == Severity::Error).count() > 1 { format!(" (and {} more errors)", .diagnostics.iter().filter(|d| d.severity == Severity::Error).count() - 1) } else { String::new() })]
    Invalid { diagnostics: Vec<Diagnostic> },
    #[error("duplicate policy id {0} in the SPIF set")]
    DuplicatePolicy(Oid),
}

struct Ctx {
    diags: Vec<Diagnostic>,
}

impl Ctx {
    fn error(&mut self, code: &'static str, line: usize, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            line: Some(line),
        });
    }
    fn warn(&mut self, code: &'static str, line: usize, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity: Severity::Warning,
            code,
            message: message.into(),
            line: Some(line),
        });
    }
    fn req<'a>(&mut self, el: &'a Element, attr: &str) -> Option<&'a str> {
        let v = el.attr(attr);
        if v.is_none() {
            self.error(
                "SPIF001",
                el.line,
                format!("<{}> lacks required attribute '{attr}'", el.name),
            );
        }
        v
    }
    fn lacv(&mut self, el: &Element, attr: &str) -> Option<Lacv> {
        let v = self.req(el, attr)?;
        match Lacv::parse(v) {
            Some(l) => Some(l),
            None => {
                self.error(
                    "SPIF002",
                    el.line,
                    format!(
                        "<{}> has an invalid {attr} '{v}' (expected a non-negative integer)",
                        el.name
                    ),
                );
                None
            }
        }
    }
    fn oid(&mut self, el: &Element, attr: &str) -> Option<Oid> {
        let v = self.req(el, attr)?;
        match Oid::parse(v) {
            Some(o) => Some(o),
            None => {
                self.error(
                    "SPIF003",
                    el.line,
                    format!("<{}> has an invalid OID {attr}='{v}'", el.name),
                );
                None
            }
        }
    }
    /// The `lacv` of a classification or category. The schema's lacv is an integer *or a
    /// string*; a value that is not a non-negative integer cannot be carried by a label, so the
    /// entry is reported (SPIF034, warning) and not loaded: labels naming it fail closed.
    fn entry_lacv(&mut self, el: &Element) -> Option<Lacv> {
        let v = self.req(el, "lacv")?;
        let l = Lacv::parse(v);
        if l.is_none() {
            self.warn(
                "SPIF034",
                el.line,
                format!(
                    "<{}> '{}' has the non-numeric lacv '{v}': not loaded (a label cannot carry it)",
                    el.name,
                    el.attr("name").unwrap_or("?")
                ),
            );
        }
        l
    }
    /// A selection limit: a non-negative integer, or `unbounded` (no limit).
    fn opt_u32(&mut self, el: &Element, attr: &str) -> Option<u32> {
        let v = el.attr(attr)?;
        if v.trim() == "unbounded" {
            return None;
        }
        match v.trim().parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    "SPIF002",
                    el.line,
                    format!("<{}> has an invalid {attr} '{v}'", el.name),
                );
                None
            }
        }
    }
}

fn bool_attr(el: &Element, attr: &str) -> bool {
    matches!(el.attr(attr).map(str::trim), Some("true") | Some("1"))
}

/// Parses `tagType` (+ `enumType`) as used on tags, category groups and equivalences.
fn parse_tag_type(ctx: &mut Ctx, el: &Element) -> Option<TagType> {
    let t = ctx.req(el, "tagType")?;
    match t {
        "restrictive" => Some(TagType::Restrictive),
        "permissive" => Some(TagType::Permissive),
        "enumeratedRestrictive" => Some(TagType::EnumeratedRestrictive),
        "enumeratedPermissive" => Some(TagType::EnumeratedPermissive),
        "tagType7" | "informative" => Some(TagType::Informative),
        "enumerated" => match el.attr("enumType") {
            Some("permissive") => Some(TagType::EnumeratedPermissive),
            Some("restrictive") => Some(TagType::EnumeratedRestrictive),
            Some(o) => {
                ctx.error("SPIF004", el.line, format!("unknown enumType '{o}'"));
                None
            }
            None => {
                ctx.error("SPIF004", el.line, "enumerated tagType without enumType");
                None
            }
        },
        o => {
            ctx.error("SPIF004", el.line, format!("unknown tagType '{o}'"));
            None
        }
    }
}

fn parse_applied(ctx: &mut Ctx, el: &Element) -> Applied {
    match el.attr("applied") {
        None | Some("both") => Applied::Both,
        Some("encrypt") => Applied::Encrypt,
        Some("decrypt") => Applied::Decrypt,
        Some(o) => {
            ctx.error(
                "SPIF005",
                el.line,
                format!("unknown applied value '{o}' (encrypt|decrypt|both)"),
            );
            Applied::Both
        }
    }
}

fn parse_spec(ctx: &mut Ctx, el: &Element) -> Option<CategorySpec> {
    let tag_set_ref = el.attr("tagSetRef").map(str::to_string);
    let tag_set_id = match el.attr("tagSetId") {
        Some(v) => match Oid::parse(v) {
            Some(o) => Some(o),
            None => {
                ctx.error("SPIF003", el.line, format!("invalid tagSetId '{v}'"));
                return None;
            }
        },
        None => None,
    };
    if tag_set_ref.is_none() && tag_set_id.is_none() {
        ctx.error(
            "SPIF001",
            el.line,
            format!("<{}> needs tagSetRef or tagSetId", el.name),
        );
        return None;
    }
    let tag_type = parse_tag_type(ctx, el)?;
    let lacv = if bool_attr(el, "all") {
        None
    } else {
        match el.attr("lacv") {
            None => None,
            Some(_) => Some(ctx.lacv(el, "lacv")?),
        }
    };
    Some(CategorySpec {
        tag_set_ref,
        tag_set_id,
        tag_type,
        lacv,
        line: el.line,
        resolved: Vec::new(),
    })
}

fn parse_required(ctx: &mut Ctx, el: &Element) -> Option<CategoryGroup> {
    let operation = match el.attr("operation") {
        Some("onlyOne") => Operation::OnlyOne,
        Some("oneOrMore") | None => Operation::OneOrMore,
        Some("all") => Operation::All,
        Some(o) => {
            ctx.error(
                "SPIF006",
                el.line,
                format!("unknown requiredCategory operation '{o}'"),
            );
            return None;
        }
    };
    let members: Vec<_> = el
        .children_named("categoryGroup")
        .filter_map(|g| parse_spec(ctx, g))
        .collect();
    if members.is_empty() {
        ctx.error("SPIF007", el.line, "requiredCategory without categoryGroup");
    }
    Some(CategoryGroup {
        operation,
        members,
        line: el.line,
    })
}

impl Spif {
    /// Parses and checks a SPIF document. Errors are fatal; warnings end up in
    /// [`Spif::warnings`].
    pub fn parse(input: &str) -> Result<Spif, SpifError> {
        let root = xml::parse(input, MAX_SPIF_BYTES)?;
        let mut ctx = Ctx { diags: Vec::new() };
        let spif = Self::from_root(&mut ctx, &root);
        if root.name == "SPIF" {
            for f in super::schema::check(&root) {
                ctx.warn(f.code, f.line, f.message);
            }
        }
        if ctx.diags.iter().any(|d| d.severity == Severity::Error) {
            return Err(SpifError::Invalid {
                diagnostics: ctx.diags,
            });
        }
        let mut spif = spif.ok_or_else(|| SpifError::Invalid {
            diagnostics: ctx.diags.clone(),
        })?;
        spif.warnings = ctx.diags;
        Ok(spif)
    }

    /// Reads and parses a SPIF file.
    pub fn load(path: &std::path::Path) -> Result<Spif, SpifError> {
        let meta = std::fs::metadata(path).map_err(|e| SpifError::Io {
            path: path.display().to_string(),
            error: e,
        })?;
        if meta.len() > MAX_SPIF_BYTES as u64 {
            return Err(SpifError::Io {
                path: path.display().to_string(),
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("file larger than {MAX_SPIF_BYTES} bytes"),
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| SpifError::Io {
            path: path.display().to_string(),
            error: e,
        })?;
        Self::parse(&text)
    }

    fn from_root(ctx: &mut Ctx, root: &Element) -> Option<Spif> {
        if root.name != "SPIF" {
            ctx.error(
                "SPIF010",
                root.line,
                format!("root element is <{}>, not <SPIF>", root.name),
            );
            return None;
        }
        if let Some(ns) = &root.namespace {
            if ns != "http://www.xmlspif.org/spif" {
                ctx.warn(
                    "SPIF011",
                    root.line,
                    format!("unexpected SPIF namespace '{ns}'"),
                );
            }
        }
        let Some(pid) = root.child("securityPolicyId") else {
            ctx.error("SPIF012", root.line, "missing <securityPolicyId>");
            return None;
        };
        let policy_id = ctx.oid(pid, "id");
        let name = ctx.req(pid, "name").unwrap_or("").to_string();
        let default_policy = root.child("defaultSecurityPolicyId").map(|d| {
            (
                d.attr("name").unwrap_or("").to_string(),
                d.attr("id").unwrap_or("").to_string(),
            )
        });

        // Equivalent policies (name -> id) first: classifications and categories refer to them.
        let mut equivalent_policies = Vec::new();
        let mut eq_by_name: HashMap<String, Oid> = HashMap::new();
        if let Some(eps) = root.child("equivalentPolicies") {
            for ep in eps.children_named("equivalentPolicy") {
                let (Some(n), Some(id)) =
                    (ctx.req(ep, "name").map(str::to_string), ctx.oid(ep, "id"))
                else {
                    continue;
                };
                if eq_by_name.insert(n.clone(), id.clone()).is_some() {
                    ctx.error(
                        "SPIF013",
                        ep.line,
                        format!("duplicate equivalentPolicy name '{n}'"),
                    );
                }
                if equivalent_policies
                    .iter()
                    .any(|e: &EquivalentPolicy| e.id == id)
                {
                    ctx.error(
                        "SPIF013",
                        ep.line,
                        format!("duplicate equivalentPolicy id {id}"),
                    );
                }
                if Some(&id) == policy_id.as_ref() {
                    ctx.error(
                        "SPIF013",
                        ep.line,
                        "a policy cannot be equivalent to itself",
                    );
                }
                let required = ep
                    .children_named("requiredCategory")
                    .filter_map(|r| parse_required(ctx, r))
                    .collect();
                equivalent_policies.push(EquivalentPolicy {
                    name: n,
                    id,
                    required,
                });
            }
        }
        let policy_ref = |ctx: &mut Ctx, el: &Element| -> Option<Oid> {
            let r = ctx.req(el, "policyRef")?;
            match eq_by_name.get(r) {
                Some(id) => Some(id.clone()),
                None => {
                    ctx.error(
                        "SPIF014",
                        el.line,
                        format!("PolicyRef not found: '{r}' is not an equivalentPolicy"),
                    );
                    None
                }
            }
        };

        // Classifications.
        let mut classifications: Vec<Classification> = Vec::new();
        let mut class_by_lacv = HashMap::new();
        let mut class_by_name = HashMap::new();
        match root.child("securityClassifications") {
            None => ctx.error("SPIF015", root.line, "missing <securityClassifications>"),
            Some(cls) => {
                for c in cls.children_named("securityClassification") {
                    let (Some(n), Some(lacv)) =
                        (ctx.req(c, "name").map(str::to_string), ctx.entry_lacv(c))
                    else {
                        continue;
                    };
                    let hierarchy = match ctx.req(c, "hierarchy").map(|h| h.trim().parse::<u64>()) {
                        Some(Ok(h)) => h,
                        Some(Err(_)) => {
                            ctx.error("SPIF002", c.line, "invalid hierarchy");
                            0
                        }
                        None => 0,
                    };
                    let mut equivalents = Vec::new();
                    for e in c.children_named("equivalentClassification") {
                        let pol = policy_ref(ctx, e);
                        let l = ctx.lacv(e, "lacv");
                        let applied = parse_applied(ctx, e);
                        let required = e
                            .children_named("requiredCategory")
                            .filter_map(|r| parse_required(ctx, r))
                            .collect();
                        if let (Some(policy), Some(lacv)) = (pol, l) {
                            if equivalents.iter().any(|x: &EquivalentClassification| {
                                x.policy == policy
                                    && ((x.applied.encrypt() && applied.encrypt())
                                        || (x.applied.decrypt() && applied.decrypt()))
                            }) {
                                ctx.error("SPIF016", e.line, format!("duplicate equivalentClassification to {policy} for the same direction in '{n}'"));
                            }
                            equivalents.push(EquivalentClassification {
                                policy,
                                lacv,
                                applied,
                                required,
                                line: e.line,
                            });
                        }
                    }
                    let markings = markings(ctx, c);
                    let required = c
                        .children_named("requiredCategory")
                        .filter_map(|r| parse_required(ctx, r))
                        .collect();
                    let excluded = c
                        .children_named("excludedCategory")
                        .filter_map(|r| parse_spec(ctx, r))
                        .collect();
                    if class_by_lacv.insert(lacv, classifications.len()).is_some() {
                        ctx.error(
                            "SPIF017",
                            c.line,
                            format!("Duplicate classification {n} (lacv {lacv})"),
                        );
                    }
                    if class_by_name
                        .insert(n.clone(), classifications.len())
                        .is_some()
                    {
                        ctx.error(
                            "SPIF017",
                            c.line,
                            format!("Duplicate classification name {n}"),
                        );
                    }
                    if let Some(o) = classifications.iter().find(|o| o.hierarchy == hierarchy) {
                        ctx.warn("SPIF018", c.line, format!("classifications '{}' and '{n}' share hierarchy {hierarchy}: dominance between them is equality", o.name));
                    }
                    classifications.push(Classification {
                        name: n,
                        lacv,
                        hierarchy,
                        obsolete: bool_attr(c, "obsolete"),
                        color: c.attr("color").map(str::to_string),
                        not_before: c.attr("notBefore").map(str::to_string),
                        not_after: c.attr("notAfter").map(str::to_string),
                        markings,
                        required,
                        excluded,
                        equivalents,
                        line: c.line,
                    });
                }
                if classifications.is_empty() {
                    ctx.error("SPIF015", cls.line, "no securityClassification");
                }
            }
        }

        // Tag sets, tags, categories.
        let mut tag_sets: Vec<TagSet> = Vec::new();
        let mut categories: Vec<Category> = Vec::new();
        let mut tagset_by_id = HashMap::new();
        let mut tagset_by_name = HashMap::new();
        let mut cat_index = HashMap::new();
        if let Some(tss) = root.child("securityCategoryTagSets") {
            for ts in tss.children_named("securityCategoryTagSet") {
                let (Some(tsname), Some(tsid)) =
                    (ctx.req(ts, "name").map(str::to_string), ctx.oid(ts, "id"))
                else {
                    continue;
                };
                let ts_idx = tag_sets.len();
                if tagset_by_id.insert(tsid.clone(), ts_idx).is_some() {
                    ctx.error("SPIF020", ts.line, format!("Duplicate TagSet id {tsid}"));
                }
                if tagset_by_name.insert(tsname.clone(), ts_idx).is_some() {
                    ctx.error(
                        "SPIF020",
                        ts.line,
                        format!("Duplicate TagSet name {tsname}"),
                    );
                }
                let mut tags = Vec::new();
                for t in ts.children_named("securityCategoryTag") {
                    // `name` is optional on a tag in the schema; the tag set's name stands in.
                    let tname = t.attr("name").unwrap_or(&tsname).to_string();
                    if t.attr("tagType") == Some("notApplicable") {
                        ctx.warn(
                            "SPIF033",
                            t.line,
                            format!("tag '{tname}' has tagType notApplicable: its categories cannot appear in labels and are not loaded"),
                        );
                        continue;
                    }
                    let Some(tag_type) = parse_tag_type(ctx, t) else {
                        continue;
                    };
                    let informative_encoding = if tag_type == TagType::Informative {
                        match t.attr("tag7Encoding") {
                            Some("bitSetAttributes") => InformativeEncoding::BitSet,
                            Some("securityAttributes") => InformativeEncoding::Enumerated,
                            Some(o) => {
                                ctx.error("SPIF021", t.line, format!("unknown tag7Encoding '{o}'"));
                                InformativeEncoding::BitSet
                            }
                            None => {
                                ctx.warn(
                                    "SPIF021",
                                    t.line,
                                    "tagType7 tag without tag7Encoding (assuming bitSetAttributes)",
                                );
                                InformativeEncoding::BitSet
                            }
                        }
                    } else {
                        InformativeEncoding::NotApplicable
                    };
                    let min_selection = ctx.opt_u32(t, "minSelection");
                    let max_selection = ctx.opt_u32(t, "maxSelection");
                    if let (Some(a), Some(b)) = (min_selection, max_selection) {
                        if a > b {
                            ctx.error(
                                "SPIF022",
                                t.line,
                                format!("minSelection {a} > maxSelection {b} in tag '{tname}'"),
                            );
                        }
                    }
                    let tag_idx = tags.len();
                    let mut cat_ids = Vec::new();
                    let mut names_seen = BTreeSet::new();
                    for c in t.children_named("tagCategory") {
                        let (Some(cname), Some(lacv)) =
                            (ctx.req(c, "name").map(str::to_string), ctx.entry_lacv(c))
                        else {
                            continue;
                        };
                        let mut excluded_classes: Vec<Lacv> = Vec::new();
                        for ex in c.children_named("excludedClass") {
                            let cn = ex.trimmed_text();
                            if cn.is_empty() {
                                ctx.error("SPIF023", ex.line, "Empty excludedClass element");
                                continue;
                            }
                            match class_by_name.get(cn) {
                                None => ctx.error(
                                    "SPIF024",
                                    ex.line,
                                    format!("Unknown classification in exclusion: '{cn}'"),
                                ),
                                Some(&ci) => {
                                    let l = classifications[ci].lacv;
                                    if excluded_classes.contains(&l) {
                                        ctx.error("SPIF025", ex.line, format!("Duplicate excluded classification in category: '{cn}' in '{cname}'"));
                                    } else {
                                        excluded_classes.push(l);
                                    }
                                }
                            }
                        }
                        if let Some(rc) = c.attr("requiredClass") {
                            // The category may only be used with this classification: every
                            // other classification is excluded.
                            match class_by_name.get(rc.trim()) {
                                None => ctx.error(
                                    "SPIF024",
                                    c.line,
                                    format!("Unknown classification in requiredClass: '{rc}'"),
                                ),
                                Some(&ci) => {
                                    let keep = classifications[ci].lacv;
                                    for cl in &classifications {
                                        if cl.lacv != keep && !excluded_classes.contains(&cl.lacv) {
                                            excluded_classes.push(cl.lacv);
                                        }
                                    }
                                }
                            }
                        }
                        let required = c
                            .children_named("requiredCategory")
                            .filter_map(|r| parse_required(ctx, r))
                            .collect();
                        let excluded = c
                            .children_named("excludedCategory")
                            .filter_map(|r| parse_spec(ctx, r))
                            .collect();
                        let mut equivalents = Vec::new();
                        for e in c.children_named("equivalentSecCategoryTag") {
                            let Some(policy) = policy_ref(ctx, e) else {
                                continue;
                            };
                            let discard = e.attr("action").is_some();
                            if let Some(a) = e.attr("action") {
                                if a != "discard" {
                                    ctx.error(
                                        "SPIF026",
                                        e.line,
                                        format!("unknown action '{a}' (only 'discard')"),
                                    );
                                }
                            }
                            let applied = parse_applied(ctx, e);
                            let (tag_set, tag_type, lacv) = if discard {
                                (
                                    e.attr("tagSetId").and_then(Oid::parse),
                                    parse_tag_type_lenient(e),
                                    e.attr("lacv").and_then(Lacv::parse),
                                )
                            } else {
                                let Some(tsid) = ctx.oid(e, "tagSetId") else {
                                    continue;
                                };
                                let Some(tt) = parse_tag_type(ctx, e) else {
                                    continue;
                                };
                                // A string lacv (allowed by the schema) cannot be carried:
                                // the equivalence is skipped (SPIF034) and translation of the
                                // category fails closed.
                                let Some(l) = ctx.entry_lacv(e) else {
                                    continue;
                                };
                                (Some(tsid), tt, Some(l))
                            };
                            equivalents.push(EquivalentCategory {
                                policy,
                                tag_set,
                                tag_type,
                                lacv,
                                applied,
                                discard,
                                line: e.line,
                            });
                        }
                        let markings = markings(ctx, c);
                        let id = categories.len();
                        if cat_index.insert((ts_idx, tag_type, lacv), id).is_some() {
                            ctx.error("SPIF027", c.line, format!("Duplicate category {tag_type} lacv {lacv} in tag set '{tsname}'"));
                        }
                        if !names_seen.insert(cname.clone()) {
                            ctx.error(
                                "SPIF028",
                                c.line,
                                format!("Duplicate category name '{cname}' in tag '{tname}'"),
                            );
                        }
                        cat_ids.push(id);
                        categories.push(Category {
                            name: cname,
                            lacv,
                            tag_set: ts_idx,
                            tag: tag_idx,
                            obsolete: bool_attr(c, "obsolete"),
                            not_before: c.attr("notBefore").map(str::to_string),
                            not_after: c.attr("notAfter").map(str::to_string),
                            excluded_classes,
                            required,
                            excluded,
                            equivalents,
                            markings,
                            line: c.line,
                        });
                    }
                    if cat_ids.is_empty() {
                        ctx.warn(
                            "SPIF029",
                            t.line,
                            format!("tag '{tname}' has no categories"),
                        );
                    }
                    let markings = markings(ctx, t);
                    tags.push(Tag {
                        name: tname,
                        tag_type,
                        informative_encoding,
                        single_selection: bool_attr(t, "singleSelection"),
                        min_selection,
                        max_selection,
                        markings,
                        categories: cat_ids,
                        line: t.line,
                    });
                }
                warn_ambiguous_names(ctx, &tsname, &tags, &categories);
                let markings = markings(ctx, ts);
                tag_sets.push(TagSet {
                    name: tsname,
                    id: tsid,
                    markings,
                    tags,
                    line: ts.line,
                });
            }
        }

        // Privacy marks.
        let mut privacy_marks = PrivacyMarks::default();
        if let Some(pm) = root.child("privacyMarks") {
            privacy_marks.min_selection = ctx.opt_u32(pm, "minSelection");
            privacy_marks.max_selection = ctx.opt_u32(pm, "maxSelection");
            privacy_marks.restricted = true;
            privacy_marks.markings = markings(ctx, pm);
        }
        for pm in root.children_named("privacyMark").chain(
            root.child("privacyMarks")
                .into_iter()
                .flat_map(|p| p.children_named("privacyMark")),
        ) {
            let v = pm
                .attr("name")
                .or(pm.attr("phrase"))
                .map(str::to_string)
                .unwrap_or_else(|| pm.trimmed_text().to_string());
            if v.is_empty() {
                ctx.error("SPIF030", pm.line, "empty privacyMark");
            } else if privacy_marks.marks.contains(&v) {
                ctx.error("SPIF030", pm.line, format!("duplicate privacyMark '{v}'"));
            } else {
                privacy_marks.marks.push(v);
                privacy_marks.mark_markings.push(markings(ctx, pm));
            }
        }
        if !privacy_marks.marks.is_empty() {
            privacy_marks.restricted = true;
        }

        let markings = markings(ctx, root);
        let mut spif = Spif {
            policy_id: policy_id?,
            name,
            schema_version: root.attr("schemaVersion").map(str::to_string),
            rbac_id: root.attr("rbacId").map(str::to_string),
            privilege_id: root.attr("privilegeId").map(str::to_string),
            default_policy,
            classifications,
            tag_sets,
            categories,
            equivalent_policies,
            privacy_marks,
            markings,
            warnings: Vec::new(),
            class_by_lacv,
            class_by_name,
            tagset_by_id,
            tagset_by_name,
            cat_index,
        };
        spif.resolve_internal(ctx);
        Some(spif)
    }

    /// Resolves the policy-internal category references; dangling ones are errors.
    fn resolve_internal(&mut self, ctx: &mut Ctx) {
        let mut resolve = |spif: &Spif, spec: &mut CategorySpec| match spif.resolve_spec(spec) {
            Ok(v) => spec.resolved = v,
            Err(m) => ctx.error("SPIF031", spec.line, m),
        };
        let mut classes = std::mem::take(&mut self.classifications);
        for c in &mut classes {
            for g in &mut c.required {
                for m in &mut g.members {
                    resolve(self, m);
                }
            }
            for m in &mut c.excluded {
                resolve(self, m);
            }
        }
        self.classifications = classes;
        let mut cats = std::mem::take(&mut self.categories);
        for c in &mut cats {
            for g in &mut c.required {
                for m in &mut g.members {
                    resolve(self, m);
                }
            }
            for m in &mut c.excluded {
                resolve(self, m);
            }
        }
        self.categories = cats;
    }

    /// Resolves a category reference against *this* policy.
    pub fn resolve_spec(&self, spec: &CategorySpec) -> Result<Vec<usize>, String> {
        let ts = match (&spec.tag_set_id, &spec.tag_set_ref) {
            (Some(id), _) => self
                .tagset_by_id
                .get(id)
                .copied()
                .ok_or_else(|| format!("Unknown tagset id: {id}"))?,
            (None, Some(n)) => self
                .tagset_by_name
                .get(n)
                .copied()
                .ok_or_else(|| format!("Unknown tagset name: {n}"))?,
            (None, None) => return Err("category reference without tag set".into()),
        };
        match spec.lacv {
            Some(l) => self
                .cat_index
                .get(&(ts, spec.tag_type, l))
                .map(|&i| vec![i])
                .ok_or_else(|| {
                    format!(
                        "Unknown category {} lacv {l} in tag set '{}'",
                        spec.tag_type, self.tag_sets[ts].name
                    )
                }),
            None => Ok(self.tag_sets[ts]
                .tags
                .iter()
                .filter(|t| t.tag_type == spec.tag_type)
                .flat_map(|t| t.categories.iter().copied())
                .collect()),
        }
    }

    /// Classification by LACV.
    pub fn classification(&self, lacv: Lacv) -> Option<&Classification> {
        self.class_by_lacv
            .get(&lacv)
            .map(|&i| &self.classifications[i])
    }

    /// Classification by name.
    pub fn classification_by_name(&self, name: &str) -> Option<&Classification> {
        self.class_by_name
            .get(name)
            .map(|&i| &self.classifications[i])
    }

    /// Tag set index by OID.
    pub fn tag_set_index(&self, id: &Oid) -> Option<usize> {
        self.tagset_by_id.get(id).copied()
    }

    /// Tag set index by name.
    pub fn tag_set_index_by_name(&self, name: &str) -> Option<usize> {
        self.tagset_by_name.get(name).copied()
    }

    /// Category index (ordinal) by tag set OID, type and LACV.
    pub fn category_index(&self, tag_set: &Oid, tag_type: TagType, lacv: Lacv) -> Option<usize> {
        let ts = self.tag_set_index(tag_set)?;
        self.cat_index.get(&(ts, tag_type, lacv)).copied()
    }

    /// The tag a category belongs to.
    pub fn tag_of(&self, cat: usize) -> &Tag {
        let c = &self.categories[cat];
        &self.tag_sets[c.tag_set].tags[c.tag]
    }

    /// The category reference (tag set OID, type, LACV) of category `cat`.
    pub fn category_ref(&self, cat: usize) -> super::CategoryRef {
        let c = &self.categories[cat];
        super::CategoryRef {
            tag_set: self.tag_sets[c.tag_set].id.clone(),
            tag_type: self.tag_of(cat).tag_type,
            lacv: c.lacv,
        }
    }

    /// The equivalent policy entry for `id`, if declared.
    pub fn equivalent_policy(&self, id: &Oid) -> Option<&EquivalentPolicy> {
        self.equivalent_policies.iter().find(|e| &e.id == id)
    }
}

/// Warns (SPIF032) when two categories of one tag set share a name and the STANAG 4774 type
/// (RESTRICTIVE, PERMISSIVE, INFORMATIVE): both load, each with its own rules, but a STANAG 4774
/// label, which names categories, cannot say which one it means and is refused as ambiguous.
fn warn_ambiguous_names(ctx: &mut Ctx, tsname: &str, tags: &[Tag], categories: &[Category]) {
    let mut seen: HashMap<(&str, &str), (TagType, usize)> = HashMap::new();
    for t in tags {
        for &ci in &t.categories {
            let c = &categories[ci];
            match seen.get(&(c.name.as_str(), t.tag_type.stanag_4774())) {
                Some(&(other, line)) => ctx.warn(
                    "SPIF032",
                    c.line,
                    format!("category '{}' is both {other} (line {line}) and {} in tag set '{tsname}': both are loaded, a STANAG 4774 label naming it is refused as ambiguous", c.name, t.tag_type),
                ),
                None => {
                    seen.insert((c.name.as_str(), t.tag_type.stanag_4774()), (t.tag_type, c.line));
                }
            }
        }
    }
}

fn parse_tag_type_lenient(el: &Element) -> TagType {
    let mut ctx = Ctx { diags: Vec::new() };
    parse_tag_type(&mut ctx, el).unwrap_or(TagType::Informative)
}

/// Parses the markings of `el`: marking codes outside the schema are errors (SPIF040), schema
/// codes for locations the guard does not render are warnings (SPIF041).
fn markings(ctx: &mut Ctx, el: &Element) -> Markings {
    let (mut errs, mut warns) = (Vec::new(), Vec::new());
    let m = Markings::parse_reporting(el, &mut errs, &mut warns);
    for (line, msg) in errs {
        ctx.error("SPIF040", line, msg);
    }
    for (line, msg) in warns {
        ctx.warn("SPIF041", line, msg);
    }
    m
}
