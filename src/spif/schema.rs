//! The Open XML SPIF 2.0/2.1 vocabulary: which elements and attributes the schema defines where,
//! and which of them the guard keeps without using. [`check`] walks a parsed SPIF and reports,
//! with their lines:
//!
//! - `SPIF060` (warning): an element the SPIF vocabulary does not define at that place (for
//!   example a SPIF 3.0 element, or a misspelling). It is not read; the rules the guard applies
//!   are exactly the ones listed in [`super::model`].
//! - `SPIF061` (warning): an element of another namespace outside `extensions`; not read.
//! - `SPIF062` (warning): an attribute the vocabulary does not define on that element; not read.
//! - `SPIF063` (warning): a construct the schema defines and the guard does not use:
//!   `updateInfo`, the content of `extensions`, `equivalentSecurityCategoryTagSet` (translation
//!   uses the per-category `equivalentSecCategoryTag`s and fails closed without them), and the
//!   `userInput` / `dateFormat` of a category (a label carries only the category's LACV), and
//!   marking data on holders display markings do not use (policy ids,
//!   `securityClassifications`).
//!
//! Attributes in the `xml:`, `xmlns` and `xsi:` spaces are always allowed. Elements without a
//! namespace are treated as SPIF elements (the spiffing conformance SPIFs have none).
use super::xml::Element;

/// The SPIF namespace.
pub const SPIF_NS: &str = "http://www.xmlspif.org/spif";

const MARKINGS: &[&str] = &["markingData", "markingQualifier"];
const SPEC_ATTRS: &[&str] = &[
    "tagSetRef",
    "tagSetId",
    "tagType",
    "enumType",
    "lacv",
    "all",
];

/// `(element, attributes, children)` of the vocabulary. `markingData` / `markingQualifier` are
/// allowed as children of every element whose entry lists `MARKINGS` via [`takes_markings`].
const ELEMENTS: &[(&str, &[&str], &[&str])] = &[
    (
        "SPIF",
        &[
            "schemaVersion",
            "version",
            "creationDate",
            "originatorDN",
            "keyIdentifier",
            "privilegeId",
            "rbacId",
            "userRefURI",
            "docRefURI",
            "notBefore",
            "notAfter",
        ],
        &[
            "defaultSecurityPolicyId",
            "securityPolicyId",
            "updateInfo",
            "securityClassifications",
            "securityCategoryTagSets",
            "privacyMarks",
            // spiffing's SPIFs list privacy marks directly under the root.
            "privacyMark",
            "equivalentPolicies",
            "extensions",
        ],
    ),
    ("defaultSecurityPolicyId", &["name", "id"], &[]),
    ("securityPolicyId", &["name", "id"], &[]),
    (
        "securityClassifications",
        &["name"],
        &["securityClassification"],
    ),
    (
        "securityClassification",
        &[
            "name",
            "lacv",
            "hierarchy",
            "color",
            "obsolete",
            "notBefore",
            "notAfter",
        ],
        &[
            "equivalentClassification",
            "requiredCategory",
            "excludedCategory",
        ],
    ),
    (
        "equivalentClassification",
        &["policyRef", "lacv", "applied"],
        &["requiredCategory"],
    ),
    ("requiredCategory", &["operation"], &["categoryGroup"]),
    ("categoryGroup", SPEC_ATTRS, &[]),
    ("excludedCategory", SPEC_ATTRS, &[]),
    ("securityCategoryTagSets", &[], &["securityCategoryTagSet"]),
    (
        "securityCategoryTagSet",
        &["name", "id"],
        &["securityCategoryTag", "equivalentSecurityCategoryTagSet"],
    ),
    (
        "securityCategoryTag",
        &[
            "name",
            "tagType",
            "enumType",
            "tag7Encoding",
            "singleSelection",
            "maxSelection",
            "minSelection",
        ],
        &["tagCategory"],
    ),
    (
        "tagCategory",
        &[
            "name",
            "lacv",
            "requiredClass",
            "obsolete",
            "userInput",
            "dateFormat",
            "notBefore",
            "notAfter",
        ],
        &[
            "equivalentSecCategoryTag",
            "excludedClass",
            "requiredCategory",
            "excludedCategory",
        ],
    ),
    (
        "equivalentSecCategoryTag",
        &[
            "policyRef",
            "tagSetId",
            "tagType",
            "enumType",
            "lacv",
            "applied",
            "action",
        ],
        &[],
    ),
    ("excludedClass", &[], &[]),
    (
        "privacyMarks",
        &["minSelection", "maxSelection"],
        &["privacyMark"],
    ),
    ("privacyMark", &["name", "phrase", "obsolete"], &[]),
    ("equivalentPolicies", &[], &["equivalentPolicy"]),
    (
        "equivalentPolicy",
        &["name", "id", "docRefURI"],
        &["requiredCategory"],
    ),
    ("markingData", &["phrase"], &["code"]),
    ("code", &[], &[]),
    ("markingQualifier", &["markingCode"], &["qualifier"]),
    ("qualifier", &["markingQualifier", "qualifierCode"], &[]),
];

/// Elements that carry `markingData` / `markingQualifier` children.
fn takes_markings(name: &str) -> bool {
    matches!(
        name,
        "SPIF"
            | "defaultSecurityPolicyId"
            | "securityPolicyId"
            | "securityClassifications"
            | "securityClassification"
            | "securityCategoryTagSet"
            | "securityCategoryTag"
            | "tagCategory"
            | "privacyMarks"
            | "privacyMark"
    )
}

/// Holders whose markings the display marking uses (the others' are reported, `SPIF063`).
fn markings_read(name: &str) -> bool {
    matches!(
        name,
        "SPIF"
            | "securityClassification"
            | "securityCategoryTagSet"
            | "securityCategoryTag"
            | "tagCategory"
            | "privacyMarks"
            | "privacyMark"
    )
}

/// One finding of [`check`]: code, line, message (all warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub code: &'static str,
    pub line: usize,
    pub message: String,
}

fn in_spif_ns(el: &Element) -> bool {
    el.namespace.as_deref().is_none_or(|n| n == SPIF_NS)
}

fn spec(name: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    ELEMENTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, a, c)| (a, c))
}

/// Walks the SPIF rooted at `root` (a `<SPIF>` element) and reports what the vocabulary does
/// not define and what the guard keeps without using.
pub fn check(root: &Element) -> Vec<Finding> {
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

fn walk(el: &Element, out: &mut Vec<Finding>) {
    fn push(out: &mut Vec<Finding>, code: &'static str, line: usize, message: String) {
        out.push(Finding {
            code,
            line,
            message,
        });
    }
    let Some((attrs, children)) = spec(&el.name) else {
        return;
    };
    for (k, _) in &el.attrs {
        if k.starts_with("xmlns") || k.starts_with("xml:") || k.starts_with("xsi:") {
            continue;
        }
        let local = k.split_once(':').map_or(k.as_str(), |(_, l)| l);
        if !attrs.contains(&local) {
            push(
                out,
                "SPIF062",
                el.line,
                format!("attribute '{k}' is not defined on <{}>; not read", el.name),
            );
        } else if el.name == "tagCategory" && matches!(local, "userInput" | "dateFormat") {
            push(
                out,
                "SPIF063",
                el.line,
                format!(
                    "{local} of category '{}' is kept but not used: a label carries only the category's lacv",
                    el.attr("name").unwrap_or("?")
                ),
            );
        }
    }
    for c in &el.children {
        if !in_spif_ns(c) {
            push(
                out,
                "SPIF061",
                c.line,
                format!(
                    "element <{}> of namespace '{}' is not part of the SPIF; not read",
                    c.name,
                    c.namespace.as_deref().unwrap_or("")
                ),
            );
            continue;
        }
        let known = children.contains(&c.name.as_str())
            || (takes_markings(&el.name) && MARKINGS.contains(&c.name.as_str()));
        if !known {
            push(
                out,
                "SPIF060",
                c.line,
                format!(
                    "element <{}> is not defined inside <{}>; not read",
                    c.name, el.name
                ),
            );
            continue;
        }
        if MARKINGS.contains(&c.name.as_str()) && !markings_read(&el.name) {
            push(
                out,
                "SPIF063",
                c.line,
                format!("<{}> of <{}> is kept but not rendered", c.name, el.name),
            );
            continue;
        }
        match c.name.as_str() {
            "updateInfo" => push(
                out,
                "SPIF063",
                c.line,
                "<updateInfo> is kept but not used".to_string(),
            ),
            "extensions" => {
                if !c.children.is_empty() {
                    push(
                        out,
                        "SPIF063",
                        c.line,
                        format!(
                            "<extensions> ({} element(s)) are kept but not read",
                            c.children.len()
                        ),
                    );
                }
            }
            "equivalentSecurityCategoryTagSet" => push(
                out,
                "SPIF063",
                c.line,
                "<equivalentSecurityCategoryTagSet> is not used: categories translate through their equivalentSecCategoryTag entries only (none = no translation)".to_string(),
            ),
            _ => walk(c, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spif::xml;

    fn codes(doc: &str) -> Vec<(&'static str, usize)> {
        let root = xml::parse(doc, 1 << 16).unwrap();
        check(&root).into_iter().map(|f| (f.code, f.line)).collect()
    }

    #[test]
    fn known_vocabulary_is_silent() {
        let doc = r#"<SPIF xmlns="http://www.xmlspif.org/spif" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="x" schemaVersion="2.1" version="1" creationDate="2026" originatorDN="CN=x" keyIdentifier="0" privilegeId="1.2" rbacId="1.2">
<securityPolicyId name="P" id="1.2"/><markingData phrase="P"><code>replacePolicy</code></markingData>
<securityClassifications><securityClassification name="U" lacv="1" hierarchy="1" color="white"><markingQualifier markingCode="pageTop"><qualifier markingQualifier="x" qualifierCode="prefix" xml:lang="en"/></markingQualifier></securityClassification></securityClassifications>
<privacyMarks><privacyMark name="STAFF"/></privacyMarks>
</SPIF>"#;
        assert_eq!(codes(doc), vec![]);
    }

    #[test]
    fn undefined_and_foreign_constructs_are_reported_with_lines() {
        let doc = "<s:SPIF xmlns:s=\"http://www.xmlspif.org/spif\" xmlns:o=\"urn:other\" s:bogus=\"1\">\n\
<s:securityPolicyId name=\"P\" id=\"1.2\"/>\n\
<s:securityClassifications>\n\
<s:securityClassification name=\"U\" lacv=\"1\" hierarchy=\"1\"><s:simplePhrase/></s:securityClassification>\n\
</s:securityClassifications>\n\
<o:thing/>\n\
<s:extensions><o:x/></s:extensions>\n\
<s:privacyMarks><s:markingData phrase=\"x\"><s:code>pageTop</s:code></s:markingData></s:privacyMarks>\n\
</s:SPIF>";
        assert_eq!(
            codes(doc),
            vec![
                ("SPIF062", 1),
                ("SPIF060", 4),
                ("SPIF061", 6),
                ("SPIF063", 7)
            ]
        );
    }
}
