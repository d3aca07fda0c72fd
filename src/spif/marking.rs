//! Marking data (`markingData`, `markingQualifier`) per language, and display markings.
//!
//! Design notes (semantics follow the conformance data of surevine/spiffing):
//! - Each holder (policy, classification, tag set, tag, category) has one [`Marking`] per
//!   language tag (`xml:lang`, "" = no language). Qualifiers (prefix / suffix / separator) of a
//!   language fall back to the language-less qualifiers of the same holder; phrases do not (a
//!   language's `markingData` replaces the default phrases).
//! - Language lookup: exact tag, then the primary subtag (`fr-CA` → `fr`), then "" (default).
//!   Tags compare case-insensitively.
//! - `markingQualifier`'s own code attribute is not a filter (the NATO SPIF puts
//!   `markingCode="pageTop"` on qualifiers that the expected bottom markings use).
//! - A `markingData` without a location code applies to the page bottom, the location display
//!   markings are rendered for. `noNameDisplay` / `noMarkingDisplay` hide the phrase;
//!   `replacePolicy` replaces the policy name; `suppressClassName` hides the classification.
//! - Every `markingCode` of Open XML SPIF 2.0/2.1 is accepted ([`MARKING_CODES`]). The guard
//!   renders the page and document locations; the other locations (`firstLineOfText`,
//!   `lastLineOfText`, `subject`, `xHeader`, `portionMarking`, `inputTitle`, `waterMark`) are
//!   kept in the model with their phrase ([`Marking::located`]) and reported as warnings by the
//!   loader. A `markingData` that names only such locations does not apply to the page bottom,
//!   so a portion marking ("NU") never replaces the display marking ("NATO UNCLASSIFIED").
//!   A code outside the schema's enumeration is an error.
//!
//! # Privacy marks in display markings
//!
//! Open XML SPIF 2.0/2.1 gives `privacyMarks` and each `privacyMark` their own `markingData` and
//! `markingQualifier` ([`privacy_mark_phrase`]). A label's privacy mark is shown at the end of
//! the display marking, after the classification and the categories, separated by the policy's
//! separator and inside the policy's prefix and suffix:
//! - the phrase is the `markingData` phrase of the SPIF's `privacyMark` with that name for the
//!   location (language fallback as above); without one, the mark itself. A free-text mark (the
//!   SPIF lists none, or the mark is not listed) is shown as written;
//! - `noNameDisplay` / `noMarkingDisplay` on the `privacyMark`, or on `privacyMarks` (all
//!   marks), hide it;
//! - the prefix and suffix come from the `privacyMark`'s qualifiers, else from those of
//!   `privacyMarks` (e.g. a prefix `"PRIVACY: "`);
//! - control characters of the mark are shown as spaces (a marking is one line), and at most
//!   [`MAX_PRIVACY_MARK_DISPLAY`] characters of it.
use std::collections::HashMap;

use super::model::PrivacyMarks;
use super::xml::Element;

pub const PAGE_TOP: u32 = 1 << 0;
pub const PAGE_BOTTOM: u32 = 1 << 1;
pub const DOCUMENT_END: u32 = 1 << 2;
pub const NO_NAME_DISPLAY: u32 = 1 << 3;
pub const NO_MARKING_DISPLAY: u32 = 1 << 4;
pub const DOCUMENT_START: u32 = 1 << 5;
pub const SUPPRESS_CLASS_NAME: u32 = 1 << 6;
pub const REPLACE_POLICY: u32 = 1 << 7;
pub const FIRST_LINE_OF_TEXT: u32 = 1 << 8;
pub const LAST_LINE_OF_TEXT: u32 = 1 << 9;
pub const SUBJECT: u32 = 1 << 10;
pub const X_HEADER: u32 = 1 << 11;
pub const PORTION_MARKING: u32 = 1 << 12;
pub const INPUT_TITLE: u32 = 1 << 13;
pub const WATER_MARK: u32 = 1 << 14;
/// Locations the guard renders display markings for.
const RENDERED_LOCATIONS: u32 = PAGE_TOP | PAGE_BOTTOM | DOCUMENT_END | DOCUMENT_START;
/// Locations the schema defines and the guard keeps but does not render.
pub const UNRENDERED_LOCATIONS: u32 = FIRST_LINE_OF_TEXT
    | LAST_LINE_OF_TEXT
    | SUBJECT
    | X_HEADER
    | PORTION_MARKING
    | INPUT_TITLE
    | WATER_MARK;
const LOCATIONS: u32 = RENDERED_LOCATIONS | UNRENDERED_LOCATIONS;

/// Every `markingCode` value of the Open XML SPIF 2.0/2.1 schema with its flags.
pub const MARKING_CODES: &[(&str, u32)] = &[
    ("pageTop", PAGE_TOP),
    ("pageBottom", PAGE_BOTTOM),
    ("pageTopBottom", PAGE_TOP | PAGE_BOTTOM),
    ("documentStart", DOCUMENT_START),
    ("documentEnd", DOCUMENT_END),
    ("noNameDisplay", NO_NAME_DISPLAY),
    ("noMarkingDisplay", NO_MARKING_DISPLAY),
    ("suppressClassName", SUPPRESS_CLASS_NAME),
    ("firstLineOfText", FIRST_LINE_OF_TEXT),
    ("lastLineOfText", LAST_LINE_OF_TEXT),
    ("subject", SUBJECT),
    ("xHeader", X_HEADER),
    ("portionMarking", PORTION_MARKING),
    ("inputTitle", INPUT_TITLE),
    ("waterMark", WATER_MARK),
    ("replacePolicy", REPLACE_POLICY),
];

/// The flags of a schema `markingCode` value; `None` if the schema does not define it.
pub fn code_flags(code: &str) -> Option<u32> {
    MARKING_CODES
        .iter()
        .find(|(n, _)| *n == code)
        .map(|&(_, f)| f)
}

/// Marking data of one holder in one language.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marking {
    pub prefix: String,
    pub suffix: String,
    pub separator: String,
    /// `(code flags, phrase)` in document order; `None` phrase = use the holder's name.
    pub phrases: Vec<(u32, Option<String>)>,
}

impl Marking {
    fn entry(&self, loc: u32) -> Option<&(u32, Option<String>)> {
        self.phrases.iter().find(|(f, _)| f & loc != 0)
    }

    /// The phrase shown for a holder named `name`.
    pub fn phrase<'a>(&'a self, loc: u32, name: &'a str) -> &'a str {
        match self.entry(loc) {
            Some((f, _)) if f & (NO_NAME_DISPLAY | NO_MARKING_DISPLAY) != 0 => "",
            Some((f, p)) if f & REPLACE_POLICY != 0 || p.is_none() => name,
            Some((_, Some(p))) => p,
            _ => name,
        }
    }

    /// The phrase that replaces the policy name.
    pub fn policy_phrase<'a>(&'a self, loc: u32, name: &'a str) -> &'a str {
        match self
            .phrases
            .iter()
            .find(|(f, _)| f & (loc | REPLACE_POLICY) != 0)
        {
            Some((_, Some(p))) => p,
            _ => name,
        }
    }

    pub fn suppress_class_name(&self, loc: u32) -> bool {
        self.entry(loc)
            .is_some_and(|(f, _)| f & SUPPRESS_CLASS_NAME != 0)
    }

    /// The first phrase entry for a location the guard does not render (e.g.
    /// [`PORTION_MARKING`]): `Some(Some(phrase))`, `Some(None)` when the holder's name is to be
    /// used, `None` when the holder has no entry for `loc`.
    pub fn located(&self, loc: u32) -> Option<Option<&str>> {
        self.entry(loc).map(|(_, p)| p.as_deref())
    }

    pub fn replace_policy(&self, loc: u32) -> bool {
        self.entry(loc)
            .is_some_and(|(f, _)| f & REPLACE_POLICY != 0)
    }
}

/// All languages' marking data of one holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markings {
    by_lang: HashMap<String, Marking>,
}

impl Markings {
    pub fn is_empty(&self) -> bool {
        self.by_lang.is_empty()
    }

    /// The languages with marking data ("" = default).
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.by_lang.keys().map(String::as_str)
    }

    /// Marking for `lang` with the fallback exact → primary subtag → default.
    pub fn get(&self, lang: &str) -> Option<&Marking> {
        let lang = lang.to_ascii_lowercase();
        if let Some(m) = self.by_lang.get(&lang) {
            return Some(m);
        }
        if let Some(p) = lang.find(['-', '_']) {
            if let Some(m) = self.by_lang.get(&lang[..p]) {
                return Some(m);
            }
        }
        self.by_lang.get("")
    }

    /// Parses the direct `markingQualifier` / `markingData` children of `holder`. Problems
    /// (codes outside the schema) are appended to `errs` as `(line, message)`; schema codes
    /// the guard keeps without rendering are dropped from the report (see
    /// [`Markings::parse_reporting`]).
    pub fn parse(holder: &Element, errs: &mut Vec<(usize, String)>) -> Markings {
        Self::parse_reporting(holder, errs, &mut Vec::new())
    }

    /// As [`Markings::parse`], and appends one `(line, message)` to `warns` for each schema
    /// code that names a location the guard does not render.
    pub fn parse_reporting(
        holder: &Element,
        errs: &mut Vec<(usize, String)>,
        warns: &mut Vec<(usize, String)>,
    ) -> Markings {
        // (lang, code, text)
        let mut quals: Vec<(String, String, String)> = Vec::new();
        for mq in holder.children_named("markingQualifier") {
            if let Some(code) = mq.attr("markingCode") {
                if code_flags(code).is_none() {
                    errs.push((mq.line, format!("Unknown marking code '{code}'")));
                }
            }
            for q in mq.children_named("qualifier") {
                let lang = q.attr("xml:lang").unwrap_or("").to_ascii_lowercase();
                let (Some(text), Some(code)) =
                    (q.attr("markingQualifier"), q.attr("qualifierCode"))
                else {
                    continue;
                };
                if !matches!(code, "prefix" | "suffix" | "separator") {
                    errs.push((q.line, format!("unknown qualifierCode '{code}'")));
                    continue;
                }
                quals.push((lang, code.to_string(), text.to_string()));
            }
        }
        let mut data: Vec<(String, u32, Option<String>)> = Vec::new();
        for md in holder.children_named("markingData") {
            let lang = md.attr("xml:lang").unwrap_or("").to_ascii_lowercase();
            let mut flags = 0u32;
            for c in md.children_named("code") {
                let code = c.trimmed_text();
                match code_flags(code) {
                    Some(f) => {
                        if f & UNRENDERED_LOCATIONS != 0 {
                            warns.push((
                                c.line,
                                format!("marking code '{code}' is kept but not rendered (the guard renders page and document markings)"),
                            ));
                        }
                        flags |= f;
                    }
                    None => errs.push((c.line, format!("Unknown marking code '{code}'"))),
                }
            }
            if flags & NO_MARKING_DISPLAY != 0 {
                // Hidden everywhere.
                flags |= LOCATIONS;
            } else if flags & LOCATIONS == 0 {
                flags |= PAGE_BOTTOM;
            }
            data.push((lang, flags, md.attr("phrase").map(str::to_string)));
        }
        let mut langs: Vec<&str> = quals
            .iter()
            .map(|q| q.0.as_str())
            .chain(data.iter().map(|d| d.0.as_str()))
            .collect();
        langs.sort_unstable();
        langs.dedup();
        let mut by_lang = HashMap::new();
        for lang in langs {
            let pick = |code: &str| -> String {
                quals
                    .iter()
                    .find(|q| q.0 == lang && q.1 == code)
                    .or_else(|| quals.iter().find(|q| q.0.is_empty() && q.1 == code))
                    .map(|q| q.2.clone())
                    .unwrap_or_default()
            };
            let m = Marking {
                prefix: pick("prefix"),
                suffix: pick("suffix"),
                separator: pick("separator"),
                phrases: data
                    .iter()
                    .filter(|d| d.0 == lang)
                    .map(|d| (d.1, d.2.clone()))
                    .collect(),
            };
            by_lang.insert(lang.to_string(), m);
        }
        Markings { by_lang }
    }
}

/// A privacy mark is shown with at most this many characters (`ub-privacy-mark-length`),
/// longer ones end in "…".
pub const MAX_PRIVACY_MARK_DISPLAY: usize = 128;

/// The text a label's privacy mark `mark` adds to the display marking at `loc` in `lang`
/// (see the module documentation); `None` when the SPIF hides it.
pub fn privacy_mark_phrase(pms: &PrivacyMarks, mark: &str, lang: &str, loc: u32) -> Option<String> {
    let group = pms.markings.get(lang);
    let own = pms
        .marks
        .iter()
        .position(|m| m == mark)
        .and_then(|i| pms.mark_markings.get(i))
        .and_then(|m| m.get(lang));
    let hidden = |m: Option<&Marking>| {
        m.and_then(|m| m.entry(loc))
            .is_some_and(|(f, _)| f & (NO_NAME_DISPLAY | NO_MARKING_DISPLAY) != 0)
    };
    if hidden(own) || hidden(group) {
        return None;
    }
    let phrase = own.map(|m| m.phrase(loc, mark)).unwrap_or(mark);
    let qualifier = |pick: fn(&Marking) -> &str| -> &str {
        own.map(pick)
            .filter(|q| !q.is_empty())
            .or_else(|| group.map(pick))
            .unwrap_or("")
    };
    let mut text: String = phrase
        .chars()
        .take(MAX_PRIVACY_MARK_DISPLAY)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if phrase.chars().nth(MAX_PRIVACY_MARK_DISPLAY).is_some() {
        text.push('…');
    }
    Some(format!(
        "{}{text}{}",
        qualifier(|m| &m.prefix),
        qualifier(|m| &m.suffix)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spif::xml;

    #[test]
    fn language_fallback_and_qualifier_backfill() {
        let el = xml::parse(
            r#"<t><markingQualifier><qualifier markingQualifier="Rel " qualifierCode="prefix"/><qualifier xml:lang="fr" markingQualifier="Comm " qualifierCode="prefix"/><qualifier markingQualifier=", " qualifierCode="separator"/></markingQualifier></t>"#,
            10_000,
        )
        .unwrap();
        let mut errs = Vec::new();
        let m = Markings::parse(&el, &mut errs);
        assert!(errs.is_empty());
        assert_eq!(m.get("fr-CA").unwrap().prefix, "Comm ");
        assert_eq!(m.get("fr-CA").unwrap().separator, ", ");
        assert_eq!(m.get("FR").unwrap().prefix, "Comm ");
        assert_eq!(m.get("en-GB").unwrap().prefix, "Rel ");
        assert_eq!(m.get("").unwrap().prefix, "Rel ");
    }

    #[test]
    fn codes_and_phrases() {
        let el = xml::parse(
            r#"<c><markingData phrase="X"><code>noNameDisplay</code><code>replacePolicy</code></markingData><markingData xml:lang="de" phrase="Y"><code>pageTop</code></markingData></c>"#,
            10_000,
        )
        .unwrap();
        let mut errs = Vec::new();
        let m = Markings::parse(&el, &mut errs);
        let d = m.get("").unwrap();
        assert!(d.replace_policy(PAGE_BOTTOM));
        assert_eq!(d.phrase(PAGE_BOTTOM, "name"), "");
        assert_eq!(d.policy_phrase(PAGE_BOTTOM, "P"), "X");
        let de = m.get("de").unwrap();
        assert_eq!(
            de.phrase(PAGE_BOTTOM, "name"),
            "name",
            "pageTop phrase is not used at the bottom"
        );
        assert_eq!(de.phrase(PAGE_TOP, "name"), "Y");
        let bad = xml::parse(
            r#"<c><markingData phrase="X"><code>bogus</code></markingData></c>"#,
            1000,
        )
        .unwrap();
        let mut errs = Vec::new();
        Markings::parse(&bad, &mut errs);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].1.contains("Unknown marking code"));
    }

    #[test]
    fn every_schema_code_loads_and_unrendered_locations_are_kept_apart() {
        for (code, _) in MARKING_CODES {
            let el = xml::parse(
                &format!(r#"<c><markingData phrase="X"><code>{code}</code></markingData><markingQualifier markingCode="{code}"><qualifier markingQualifier=" " qualifierCode="separator"/></markingQualifier></c>"#),
                1000,
            )
            .unwrap();
            let (mut errs, mut warns) = (Vec::new(), Vec::new());
            Markings::parse_reporting(&el, &mut errs, &mut warns);
            assert!(errs.is_empty(), "{code}: {errs:?}");
            let unrendered = code_flags(code).unwrap() & UNRENDERED_LOCATIONS != 0;
            assert_eq!(warns.len(), usize::from(unrendered), "{code}: {warns:?}");
        }
        // NATO style: a portion marking next to the page marking of the same holder.
        let el = xml::parse(
            "<c>\n<markingData phrase=\"NU\"><code>portionMarking</code></markingData>\n<markingData phrase=\"NATO UNCLASSIFIED\"><code>pageTopBottom</code></markingData></c>",
            1000,
        )
        .unwrap();
        let (mut errs, mut warns) = (Vec::new(), Vec::new());
        let m = Markings::parse_reporting(&el, &mut errs, &mut warns);
        assert!(errs.is_empty());
        assert_eq!(warns.len(), 1);
        assert_eq!(warns[0].0, 2, "warning carries the line of the <code>");
        let d = m.get("").unwrap();
        assert_eq!(d.phrase(PAGE_BOTTOM, "n"), "NATO UNCLASSIFIED");
        assert_eq!(d.phrase(PAGE_TOP, "n"), "NATO UNCLASSIFIED");
        assert_eq!(d.located(PORTION_MARKING), Some(Some("NU")));
        assert_eq!(d.located(WATER_MARK), None);
        let bad = xml::parse(
            r#"<c><markingQualifier markingCode="pageMiddle"><qualifier markingQualifier=" " qualifierCode="separator"/></markingQualifier></c>"#,
            1000,
        )
        .unwrap();
        let mut errs = Vec::new();
        Markings::parse(&bad, &mut errs);
        assert_eq!(
            errs.len(),
            1,
            "a markingCode outside the schema is an error"
        );
    }
}
