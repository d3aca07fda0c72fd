//! Security labels: Open XML SPIF policies, labels and clearances, validation, display
//! markings, access decisions and translation between equivalent policies (BRIEF §5).
//!
//! # Overview
//!
//! - [`Spif`] is one parsed policy (Open XML SPIF 1.0–2.1, with or without the `spif:`
//!   prefix). Loading checks the policy itself (duplicates, dangling references, unknown
//!   codes) and reports [`Diagnostic`]s with a stable code and the source line.
//! - [`SpifSet`] holds several policies by policy OID, the way a site with several policies
//!   (one per side of the guard) uses them. A label's policy identifier selects its SPIF.
//! - [`Label`] and [`Clearance`] are plain values (policy OID, classification LACV, categories as
//!   `(tag set OID, tag type, LACV)`), independent of any SPIF, so they can be cached, compared
//!   and serialised cheaply. Formats: the JSON form (below), STANAG 4774 XML
//!   (`originatorConfidentialityLabel`), the spiffing XML label/clearance form of the
//!   conformance data, and ESS `SecurityLabel` BER/DER with security categories in the ACP
//!   145(A) or MISSI syntax (read by [`SpifSet::parse_label`] / [`Label::from_ber`], written by
//!   [`SpifSet::to_ber`] in the syntax the SPIF's `rbacId` names; the mapping of SPIF tag types
//!   to category syntaxes is in [`ber`]).
//! - Display markings ([`SpifSet::marking`]) show the label's privacy mark after the
//!   categories, as the SPIF's `privacyMark` marking data says ([`marking`]).
//! - The decisions live on [`SpifSet`]: [`SpifSet::validate`], [`SpifSet::marking`],
//!   [`SpifSet::access`], [`SpifSet::translate`], [`SpifSet::dominates`], and
//!   [`SpifSet::decide_access`] (translate into the clearance's policy, then decide: the
//!   decision the traffic path and `grenzwacht label check` share).
//!
//! # JSON form of a label (for Matrix events)
//!
//! ```json
//! {
//!   "policy": "1.3.6.1.4.1.99999.1.1",
//!   "classification": 3,
//!   "categories": [
//!     {"tag_set": "1.3.6.1.4.1.99999.1.1.1", "type": "permissive", "lacv": 1}
//!   ],
//!   "privacy_mark": "optional free text"
//! }
//! ```
//!
//! `type` is one of `restrictive`, `permissive`, `enumeratedRestrictive`,
//! `enumeratedPermissive`, `informative` and must be the type of the tag the category belongs
//! to in the SPIF. `lacv` is a non-negative integer (a decimal string is accepted too).
//! `categories` and `privacy_mark` may be omitted. Unknown keys are rejected (a typo must not
//! silently drop a caveat). A clearance has the same shape with `"classifications": [N, …]`
//! instead of `"classification"` and no privacy mark.
//!
//! # Access decision
//!
//! [`SpifSet::access`] grants iff (same policy as the clearance, BRIEF §5 / spiffing `acdf`):
//! the label is valid; the clearance lists the label's classification or one above it in
//! the hierarchy (deliberately hierarchical, unlike spiffing's exact match, so that decisions
//! are monotone: a peer cleared for GEHEIM is cleared for VS-NfD); every restrictive
//! (incl. enumerated restrictive) category of the label is in the clearance; and for each
//! permissive (incl. enumerated permissive) tag of the label, at least one of the label's
//! categories of that tag is in the clearance. Informative categories never matter.
//!
//! # Dominance
//!
//! [`SpifSet::dominates`]`(a, b)` — "b is no more sensitive than a", used for room labels as a
//! ceiling: same policy; hierarchy(a) ≥ hierarchy(b); b's restrictive categories ⊆ a's; and
//! for every permissive tag in which b has categories, a has categories of that tag and they
//! are ⊆ b's (permissive categories are release groups: releasing to *more* groups is *less*
//! sensitive, so a room released to DEU+FRA holds an event released to DEU+FRA+USA or an
//! unrestricted one, not one released to DEU only). Informative categories are ignored.
//! Anything unresolvable → `false` (fail closed). With this order access is monotone:
//! if a dominates b and a is granted, b is granted.
//!
//! # Translation
//!
//! [`SpifSet::translate`] maps a label into an equivalent policy: the classification through an
//! `equivalentClassification` (source SPIF, `applied` encrypt|both; or else the target SPIF's
//! `applied` decrypt|both entry pointing back), each category through its
//! `equivalentSecCategoryTag`s (same rule; `action="discard"` drops it), then the categories
//! required by the `equivalentClassification` / `equivalentPolicy` are added (they name tag sets
//! of the *target* policy). Anything without an equivalent is an error (fail closed), and the
//! result must be valid under the target policy.
use std::collections::BTreeSet;
use std::fmt;

pub mod ber;
pub mod cli;
pub mod label;
pub mod marking;
pub mod model;
pub mod schema;
pub mod set;
pub mod xml;

pub use label::{Clearance, Label, LabelError};
pub use model::{Diagnostic, Severity, Spif, SpifError};
pub use set::{AccessDecision, AccessDenial, SpifSet};

/// An object identifier in dotted decimal form (`1.3.26.1.3.1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid(String);

impl Oid {
    /// Parses a dotted OID (at least two arcs, decimal, ≤ 256 characters); `urn:oid:` accepted.
    pub fn parse(s: &str) -> Option<Oid> {
        let s = s.trim();
        let s = s.strip_prefix("urn:oid:").unwrap_or(s);
        if s.is_empty() || s.len() > 256 {
            return None;
        }
        let arcs: Vec<&str> = s.split('.').collect();
        if arcs.len() < 2
            || arcs
                .iter()
                .any(|a| a.is_empty() || a.len() > 20 || !a.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        Some(Oid(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Oid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Oid::parse(s).ok_or_else(|| format!("invalid OID '{s}'"))
    }
}

/// A label and certificate value (LACV): a non-negative integer ("004" = 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lacv(pub u64);

impl Lacv {
    pub fn parse(s: &str) -> Option<Lacv> {
        let s = s.trim();
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().map(Lacv)
    }
}

impl fmt::Display for Lacv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The type of a security category tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TagType {
    Restrictive,
    Permissive,
    EnumeratedRestrictive,
    EnumeratedPermissive,
    /// tagType7 (informative): carried and displayed, never part of access decisions.
    Informative,
}

impl TagType {
    /// The JSON / spiffing-XML name.
    pub fn as_str(self) -> &'static str {
        match self {
            TagType::Restrictive => "restrictive",
            TagType::Permissive => "permissive",
            TagType::EnumeratedRestrictive => "enumeratedRestrictive",
            TagType::EnumeratedPermissive => "enumeratedPermissive",
            TagType::Informative => "informative",
        }
    }

    pub fn parse(s: &str) -> Option<TagType> {
        Some(match s {
            "restrictive" => TagType::Restrictive,
            "permissive" => TagType::Permissive,
            "enumeratedRestrictive" => TagType::EnumeratedRestrictive,
            "enumeratedPermissive" => TagType::EnumeratedPermissive,
            "informative" | "tagType7" => TagType::Informative,
            _ => return None,
        })
    }

    /// Restrictive or enumerated restrictive.
    pub fn is_restrictive(self) -> bool {
        matches!(self, TagType::Restrictive | TagType::EnumeratedRestrictive)
    }

    /// Permissive or enumerated permissive.
    pub fn is_permissive(self) -> bool {
        matches!(self, TagType::Permissive | TagType::EnumeratedPermissive)
    }

    /// The STANAG 4774 `Type` attribute value.
    pub fn stanag_4774(self) -> &'static str {
        if self.is_restrictive() {
            "RESTRICTIVE"
        } else if self.is_permissive() {
            "PERMISSIVE"
        } else {
            "INFORMATIVE"
        }
    }
}

impl fmt::Display for TagType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One security category of a label or clearance: tag set OID, tag type and LACV.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CategoryRef {
    pub tag_set: Oid,
    pub tag_type: TagType,
    pub lacv: Lacv,
}

/// A set of categories (ordered for deterministic output).
pub type Categories = BTreeSet<CategoryRef>;
