//! Labels and clearances as plain values, and their SPIF-independent formats (JSON, spiffing
//! XML, ESS BER). The STANAG 4774 form names tag sets and categories, so it needs the SPIF and
//! lives on [`super::SpifSet`].
use serde_json::{json, Map, Value};

use super::xml::{self, XmlError};
use super::{ber, Categories, CategoryRef, Lacv, Oid, TagType};

/// Maximum size of a label or clearance document (any format).
pub const MAX_LABEL_BYTES: usize = 64 * 1024;
/// Maximum number of categories in one label or clearance.
pub const MAX_CATEGORIES: usize = 4096;

/// Namespace of the spiffing XML label/clearance form (conformance data).
pub const SPIFFY_NS: &str = "http://surevine.com/xmlns/spiffy";
/// Namespace of STANAG 4774 confidentiality labels.
pub const STANAG_4774_NS: &str = "urn:nato:stanag:4774:confidentialitymetadatalabel:1:0";

/// A security label: policy, classification, categories, optional privacy mark.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label {
    pub policy: Oid,
    pub classification: Lacv,
    pub categories: Categories,
    pub privacy_mark: Option<String>,
}

/// A clearance: the classifications and categories a peer (or user) is cleared for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clearance {
    pub policy: Oid,
    pub classifications: std::collections::BTreeSet<Lacv>,
    pub categories: Categories,
}

/// Errors about labels and clearances: parsing, resolution against a SPIF, validity,
/// translation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("No data to parse")]
    NoData,
    #[error("No data to parse: {path}: {message}")]
    Io { path: String, message: String },
    #[error("label too large ({0} bytes, limit {MAX_LABEL_BYTES})")]
    TooLarge(usize),
    #[error("label XML: {0}")]
    Xml(XmlError),
    #[error("label syntax: {0}")]
    Syntax(String),
    #[error("BER label: {0}")]
    Ber(String),
    /// A well-formed label in a form this guard does not decide on (fail closed).
    #[error("unsupported label: {0}")]
    Unsupported(String),
    #[error("Unknown policy id: {0}")]
    UnknownPolicy(Oid),
    #[error("Unknown policy name: {0}")]
    UnknownPolicyName(String),
    #[error("Unknown classification {classification} in policy {policy}")]
    UnknownClassification { policy: Oid, classification: String },
    #[error("Unknown category in policy {policy}: {category}")]
    UnknownCategory { policy: Oid, category: String },
    #[error("policy mismatch: {what} is policy {got}, expected {expected}")]
    PolicyMismatch {
        what: &'static str,
        got: Oid,
        expected: Oid,
    },
    #[error("label is not valid under policy {policy}: {reason}")]
    Invalid { policy: Oid, reason: String },
    #[error("no equivalent in policy {target}: {what}")]
    NoEquivalent { target: Oid, what: String },
}

// Not `#[from]`: the XML error is part of the message, not a separate source, so an error
// chain does not print it twice.
impl From<XmlError> for LabelError {
    fn from(e: XmlError) -> Self {
        LabelError::Xml(e)
    }
}

impl LabelError {
    /// The input is no security label (or clearance) in any form read: empty, too large, not
    /// UTF-8 where text is needed, not well-formed, not of the JSON / spiffing / STANAG 4774 /
    /// ESS BER shape. `None` for errors about a label (unknown policy, invalid, …).
    pub fn not_a_label(&self) -> Option<String> {
        match self {
            LabelError::NoData => Some("empty input".into()),
            LabelError::TooLarge(_) => Some(self.to_string()),
            LabelError::Xml(e) => Some(e.to_string()),
            LabelError::Syntax(m) => Some(m.clone()),
            LabelError::Ber(m) => Some(format!("BER: {m}")),
            _ => None,
        }
    }

    /// An error about the input rather than about the label under its policy: unreadable,
    /// no label, unsupported form, unknown policy. (`grenzwacht label` exits 2 on these, 1
    /// on an invalid label.)
    pub fn is_input_error(&self) -> bool {
        self.not_a_label().is_some()
            || matches!(
                self,
                LabelError::Io { .. }
                    | LabelError::Unsupported(_)
                    | LabelError::UnknownPolicy(_)
                    | LabelError::UnknownPolicyName(_)
            )
    }
}

fn syntax(m: impl Into<String>) -> LabelError {
    LabelError::Syntax(m.into())
}

fn lacv_json(v: &Value, what: &str) -> Result<Lacv, LabelError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(Lacv)
            .ok_or_else(|| syntax(format!("{what}: not a non-negative integer"))),
        Value::String(s) => {
            Lacv::parse(s).ok_or_else(|| syntax(format!("{what}: not a non-negative integer")))
        }
        _ => Err(syntax(format!("{what}: expected an integer"))),
    }
}

fn oid_json(v: Option<&Value>, what: &str) -> Result<Oid, LabelError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| syntax(format!("{what}: expected an OID string")))?;
    Oid::parse(s).ok_or_else(|| syntax(format!("{what}: invalid OID '{s}'")))
}

fn check_keys(o: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), LabelError> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(syntax(format!("{what}: unknown key '{k}'"))),
        None => Ok(()),
    }
}

fn categories_json(v: Option<&Value>) -> Result<Categories, LabelError> {
    let mut out = Categories::new();
    let Some(v) = v else { return Ok(out) };
    let arr = v
        .as_array()
        .ok_or_else(|| syntax("categories: expected an array"))?;
    if arr.len() > MAX_CATEGORIES {
        return Err(syntax("too many categories"));
    }
    for (i, c) in arr.iter().enumerate() {
        let o = c
            .as_object()
            .ok_or_else(|| syntax(format!("categories[{i}]: expected an object")))?;
        check_keys(o, &["tag_set", "type", "lacv"], &format!("categories[{i}]"))?;
        let tag_set = oid_json(o.get("tag_set"), &format!("categories[{i}].tag_set"))?;
        let t = o
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| syntax(format!("categories[{i}].type: expected a string")))?;
        let tag_type = TagType::parse(t)
            .ok_or_else(|| syntax(format!("categories[{i}].type: unknown tag type '{t}'")))?;
        let lacv = lacv_json(
            o.get("lacv")
                .ok_or_else(|| syntax(format!("categories[{i}].lacv missing")))?,
            &format!("categories[{i}].lacv"),
        )?;
        out.insert(CategoryRef {
            tag_set,
            tag_type,
            lacv,
        });
    }
    Ok(out)
}

fn categories_to_json(c: &Categories) -> Value {
    Value::Array(c.iter().map(|c| json!({"tag_set": c.tag_set.as_str(), "type": c.tag_type.as_str(), "lacv": c.lacv.0})).collect())
}

/// Parses one spiffing-XML `<tag type=… id=… lacv=…/>`.
fn spiffy_tag(t: &xml::Element) -> Result<CategoryRef, LabelError> {
    let ty = t
        .attr("type")
        .ok_or_else(|| syntax(format!("line {}: tag without type", t.line)))?;
    let tag_type = TagType::parse(ty)
        .ok_or_else(|| syntax(format!("line {}: unsupported tag type {ty}", t.line)))?;
    let id = t
        .attr("id")
        .ok_or_else(|| syntax(format!("line {}: tag without id", t.line)))?;
    let tag_set =
        Oid::parse(id).ok_or_else(|| syntax(format!("line {}: invalid tag id '{id}'", t.line)))?;
    let l = t
        .attr("lacv")
        .ok_or_else(|| syntax(format!("line {}: tag without lacv", t.line)))?;
    let lacv =
        Lacv::parse(l).ok_or_else(|| syntax(format!("line {}: invalid lacv '{l}'", t.line)))?;
    Ok(CategoryRef {
        tag_set,
        tag_type,
        lacv,
    })
}

fn spiffy_root<'a>(
    root: &'a xml::Element,
    name: &str,
) -> Result<(&'a xml::Element, Oid), LabelError> {
    if root.name != name || root.namespace.as_deref() != Some(SPIFFY_NS) {
        return Err(syntax(format!(
            "expected <{name} xmlns='{SPIFFY_NS}'>, found <{}>",
            root.name
        )));
    }
    let p = root
        .child("policy")
        .ok_or_else(|| syntax(format!("No policy in {name}")))?;
    let id = p.attr("id").ok_or_else(|| syntax("policy without id"))?;
    let oid = Oid::parse(id).ok_or_else(|| syntax(format!("invalid policy id '{id}'")))?;
    Ok((p, oid))
}

/// Bytes → text with the size bound and the empty-input error.
pub(crate) fn text_of(data: &[u8]) -> Result<&str, LabelError> {
    if data.is_empty() {
        return Err(LabelError::NoData);
    }
    if data.len() > MAX_LABEL_BYTES {
        return Err(LabelError::TooLarge(data.len()));
    }
    let s = std::str::from_utf8(data).map_err(|_| syntax("not UTF-8"))?;
    Ok(s.strip_prefix('\u{feff}').unwrap_or(s))
}

impl Label {
    /// Parses the JSON form (see the module documentation).
    pub fn from_json(v: &Value) -> Result<Label, LabelError> {
        let o = v
            .as_object()
            .ok_or_else(|| syntax("label: expected a JSON object"))?;
        check_keys(
            o,
            &["policy", "classification", "categories", "privacy_mark"],
            "label",
        )?;
        let policy = oid_json(o.get("policy"), "policy")?;
        let classification = lacv_json(
            o.get("classification")
                .ok_or_else(|| syntax("classification missing"))?,
            "classification",
        )?;
        let categories = categories_json(o.get("categories"))?;
        let privacy_mark = match o.get("privacy_mark") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(syntax("privacy_mark: expected a string")),
        };
        Ok(Label {
            policy,
            classification,
            categories,
            privacy_mark,
        })
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "policy": self.policy.as_str(),
            "classification": self.classification.0,
            "categories": categories_to_json(&self.categories),
        });
        if let Some(p) = &self.privacy_mark {
            v["privacy_mark"] = Value::String(p.clone());
        }
        v
    }

    /// Parses the spiffing XML label form (`<label xmlns='http://surevine.com/xmlns/spiffy'>`).
    pub fn from_spiffing_xml(s: &str) -> Result<Label, LabelError> {
        let root = xml::parse(s, MAX_LABEL_BYTES)?;
        Self::from_spiffing_element(&root)
    }

    pub(crate) fn from_spiffing_element(root: &xml::Element) -> Result<Label, LabelError> {
        let (_, policy) = spiffy_root(root, "label")?;
        let c = root
            .child("classification")
            .ok_or_else(|| syntax("label without classification"))?;
        let l = c
            .attr("lacv")
            .ok_or_else(|| syntax("classification without lacv"))?;
        let classification =
            Lacv::parse(l).ok_or_else(|| syntax(format!("invalid classification lacv '{l}'")))?;
        let mut categories = Categories::new();
        for t in root.children_named("tag") {
            if categories.len() >= MAX_CATEGORIES {
                return Err(syntax("too many categories"));
            }
            categories.insert(spiffy_tag(t)?);
        }
        let privacy_mark = root
            .child("privacyMark")
            .map(|p| p.trimmed_text().to_string());
        Ok(Label {
            policy,
            classification,
            categories,
            privacy_mark,
        })
    }

    /// Serialises to the spiffing XML label form.
    pub fn to_spiffing_xml(&self) -> String {
        let mut s = format!(
            "<label xmlns='{SPIFFY_NS}'><policy id='{}'/><classification lacv='{}'/>",
            self.policy, self.classification
        );
        for c in &self.categories {
            s.push_str(&format!(
                "<tag type='{}' id='{}' lacv='{}'/>",
                c.tag_type, c.tag_set, c.lacv
            ));
        }
        if let Some(p) = &self.privacy_mark {
            s.push_str(&format!("<privacyMark>{}</privacyMark>", xml::escape(p)));
        }
        s.push_str("</label>");
        s
    }

    /// Parses an ESS `SecurityLabel` in BER/DER: policy, classification, privacy mark and
    /// security categories in the ACP 145(A) syntaxes and the MISSI syntax (see
    /// [`super::ber`]). A category of another syntax is reported as
    /// [`LabelError::UnknownCategory`] of the label's policy (an invalid label, like a category
    /// the SPIF does not define). MISSI enumerated attributes need the SPIF
    /// ([`super::SpifSet::label_from_ber`]); here they are [`LabelError::Unsupported`].
    /// Writing needs the SPIF too: [`super::SpifSet::to_ber`].
    pub fn from_ber(data: &[u8]) -> Result<Label, LabelError> {
        Self::from_ber_with(data, &|_, _| {
            Err(LabelError::Unsupported(
                "MISSI enumerated attributes without the SPIF (permissive or restrictive is \
                 the SPIF's tag set's)"
                    .into(),
            ))
        })
    }

    /// As [`Label::from_ber`]; `missi_enumerated(policy, tag set)` says which enumerated tag
    /// type MISSI `enumeratedAttributes` stand for.
    pub(crate) fn from_ber_with(
        data: &[u8],
        missi_enumerated: &dyn Fn(&Oid, &Oid) -> Result<TagType, LabelError>,
    ) -> Result<Label, LabelError> {
        if data.is_empty() {
            return Err(LabelError::NoData);
        }
        if data.len() > MAX_LABEL_BYTES {
            return Err(LabelError::TooLarge(data.len()));
        }
        let ess = ber::parse_ess_security_label(data).map_err(LabelError::Ber)?;
        let policy = ess
            .policy
            .ok_or_else(|| LabelError::Ber("No policy in label".into()))?;
        let policy = Oid::parse(&policy)
            .ok_or_else(|| LabelError::Ber(format!("invalid policy OID {policy}")))?;
        let classification = ess
            .classification
            .map(Lacv)
            .ok_or_else(|| LabelError::Ber("label without classification".into()))?;
        let mut categories = Categories::new();
        for c in &ess.categories {
            let tag_type = match (&c.syntax, c.syntax.tag_type()) {
                (_, Some(t)) => Some(t),
                (ber::Syntax::MissiEnumerated, None) => {
                    let ts = Oid::parse(&c.tag_set).ok_or_else(|| {
                        LabelError::Ber(format!("invalid tag set OID {}", c.tag_set))
                    })?;
                    Some(missi_enumerated(&policy, &ts)?)
                }
                _ => None,
            };
            let Some(tag_type) = tag_type else {
                return Err(LabelError::UnknownCategory {
                    policy,
                    category: format!(
                        "security category of type {} (not an ACP 145 or MISSI category syntax)",
                        c.syntax.type_oid()
                    ),
                });
            };
            let tag_set = Oid::parse(&c.tag_set)
                .ok_or_else(|| LabelError::Ber(format!("invalid tag set OID {}", c.tag_set)))?;
            if categories.len() + c.lacvs.len() > MAX_CATEGORIES {
                return Err(LabelError::Ber("too many categories".into()));
            }
            categories.extend(c.lacvs.iter().map(|&l| CategoryRef {
                tag_set: tag_set.clone(),
                tag_type,
                lacv: Lacv(l),
            }));
        }
        Ok(Label {
            policy,
            classification,
            categories,
            privacy_mark: ess.privacy_mark,
        })
    }
}

impl Clearance {
    /// Parses the JSON form: `{"policy": OID, "classifications": [N…], "categories": […]}`.
    pub fn from_json(v: &Value) -> Result<Clearance, LabelError> {
        let o = v
            .as_object()
            .ok_or_else(|| syntax("clearance: expected a JSON object"))?;
        check_keys(o, &["policy", "classifications", "categories"], "clearance")?;
        let policy = oid_json(o.get("policy"), "policy")?;
        let arr = o
            .get("classifications")
            .and_then(Value::as_array)
            .ok_or_else(|| syntax("classifications: expected an array"))?;
        let mut classifications = std::collections::BTreeSet::new();
        for (i, c) in arr.iter().enumerate() {
            classifications.insert(lacv_json(c, &format!("classifications[{i}]"))?);
        }
        let categories = categories_json(o.get("categories"))?;
        Ok(Clearance {
            policy,
            classifications,
            categories,
        })
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "policy": self.policy.as_str(),
            "classifications": self.classifications.iter().map(|l| l.0).collect::<Vec<_>>(),
            "categories": categories_to_json(&self.categories),
        })
    }

    /// Parses the spiffing XML clearance form (`<clearance xmlns='http://surevine.com/xmlns/spiffy'>`).
    pub fn from_spiffing_xml(s: &str) -> Result<Clearance, LabelError> {
        let root = xml::parse(s, MAX_LABEL_BYTES)?;
        let (_, policy) = spiffy_root(&root, "clearance")?;
        let mut classifications = std::collections::BTreeSet::new();
        for c in root.children_named("classification") {
            if let Some(l) = c.attr("lacv") {
                classifications.insert(
                    Lacv::parse(l)
                        .ok_or_else(|| syntax(format!("invalid classification lacv '{l}'")))?,
                );
            }
        }
        let mut categories = Categories::new();
        for t in root.children_named("tag") {
            if categories.len() >= MAX_CATEGORIES {
                return Err(syntax("too many categories"));
            }
            categories.insert(spiffy_tag(t)?);
        }
        Ok(Clearance {
            policy,
            classifications,
            categories,
        })
    }

    /// Parses a clearance in JSON or spiffing XML (detected by the first character).
    pub fn parse(data: &[u8]) -> Result<Clearance, LabelError> {
        let s = text_of(data)?;
        if s.trim_start().starts_with('{') {
            let v: Value =
                serde_json::from_str(s).map_err(|e| syntax(format!("clearance JSON: {e}")))?;
            Clearance::from_json(&v)
        } else {
            Clearance::from_spiffing_xml(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_strictness() {
        let v = json!({"policy": "1.2.3", "classification": 2, "categories": [{"tag_set": "1.2.3.4", "type": "permissive", "lacv": "7"}], "privacy_mark": "X"});
        let l = Label::from_json(&v).unwrap();
        assert_eq!(l.classification, Lacv(2));
        assert_eq!(l.categories.iter().next().unwrap().lacv, Lacv(7));
        assert_eq!(Label::from_json(&l.to_json()).unwrap(), l);
        assert!(Label::from_json(
            &json!({"policy": "1.2.3", "classification": 2, "categoris": []})
        )
        .is_err());
        assert!(Label::from_json(&json!({"policy": "x", "classification": 2})).is_err());
        assert!(Label::from_json(&json!({"policy": "1.2", "classification": -1})).is_err());
        assert!(Label::from_json(&json!({"policy": "1.2", "classification": 1, "categories": [{"tag_set": "1.2", "type": "bogus", "lacv": 1}]})).is_err());
    }

    #[test]
    fn spiffing_xml_round_trip() {
        let s = "<label xmlns='http://surevine.com/xmlns/spiffy'><policy id='1.2.3'/><classification lacv='5'/><tag type='restrictive' id='1.2.3.1' lacv='004'/></label>";
        let l = Label::from_spiffing_xml(s).unwrap();
        assert_eq!(l.categories.iter().next().unwrap().lacv, Lacv(4));
        assert_eq!(Label::from_spiffing_xml(&l.to_spiffing_xml()).unwrap(), l);
        assert!(
            Label::from_spiffing_xml("<label><policy id='1.2'/></label>").is_err(),
            "namespace required"
        );
    }

    #[test]
    fn clearance_json_and_xml() {
        let c = Clearance::parse(br#"{"policy":"1.2.3","classifications":[1,2],"categories":[]}"#)
            .unwrap();
        assert_eq!(c.classifications.len(), 2);
        assert_eq!(Clearance::from_json(&c.to_json()).unwrap(), c);
        assert_eq!(Clearance::parse(b"").unwrap_err(), LabelError::NoData);
    }
}
