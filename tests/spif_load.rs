//! Loading real-world SPIFs (Open XML SPIF 2.0/2.1): `tests/fixtures/spif/quirks.xml` is a
//! generated policy with the constructs and quirks of published SPIFs. Every expectation below
//! is derived from a rule written in that SPIF (quoted in the comment next to it) or from the
//! loader's documented rules in `grenzwacht::spif::model` / `grenzwacht::spif::schema`.
use std::collections::BTreeSet;
use std::path::PathBuf;

use grenzwacht::spif::marking::{PORTION_MARKING, WATER_MARK};
use grenzwacht::spif::{
    AccessDecision, CategoryRef, Clearance, Label, Lacv, Oid, Severity, Spif, SpifError, SpifSet,
    TagType,
};

const POLICY: &str = "1.3.6.1.4.1.99999.14.1";
const REL_TO: &str = "1.3.6.1.4.1.99999.14.1.1";
const ONLY: &str = "1.3.6.1.4.1.99999.14.1.2";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/spif")
        .join(name)
}

fn text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// 1-based lines of `text` that contain `needle`.
fn lines_with(text: &str, needle: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect()
}

fn oid(s: &str) -> Oid {
    Oid::parse(s).unwrap()
}

fn cat(tag_set: &str, tag_type: TagType, lacv: u64) -> CategoryRef {
    CategoryRef {
        tag_set: oid(tag_set),
        tag_type,
        lacv: Lacv(lacv),
    }
}

fn label(class: u64, cats: &[CategoryRef]) -> Label {
    Label {
        policy: oid(POLICY),
        classification: Lacv(class),
        categories: cats.iter().cloned().collect(),
        privacy_mark: None,
    }
}

fn clearance(cats: &[CategoryRef]) -> Clearance {
    Clearance {
        policy: oid(POLICY),
        classifications: [1, 2, 4].into_iter().map(Lacv).collect(),
        categories: cats.iter().cloned().collect(),
    }
}

fn quirks() -> (Spif, SpifSet) {
    let spif = Spif::load(&fixture("quirks.xml")).expect("quirks.xml loads");
    let mut set = SpifSet::new();
    set.insert(Spif::load(&fixture("quirks.xml")).unwrap())
        .unwrap();
    (spif, set)
}

#[test]
fn quirks_spif_loads_with_each_warning_at_its_line() {
    let (spif, _) = quirks();
    let t = text("quirks.xml");
    assert!(spif
        .warnings
        .iter()
        .all(|w| w.severity == Severity::Warning && w.line.is_some()));
    let at = |code: &str, line: usize| {
        spif.warnings
            .iter()
            .filter(|w| w.code == code && w.line == Some(line))
            .count()
    };
    // SPIF041: each schema marking code for a location the guard does not render.
    let mut unrendered = Vec::new();
    for code in [
        "portionMarking",
        "firstLineOfText",
        "lastLineOfText",
        "subject",
        "xHeader",
        "inputTitle",
        "waterMark",
    ] {
        unrendered.extend(lines_with(&t, &format!("<spif:code>{code}</spif:code>")));
    }
    assert_eq!(unrendered.len(), 9);
    for l in &unrendered {
        assert_eq!(
            at("SPIF041", *l),
            1,
            "SPIF041 at line {l}: {:#?}",
            spif.warnings
        );
    }
    // SPIF032: DEU 276 is enumerated permissive and permissive in "Releasable To".
    let legacy = lines_with(&t, r#"name="DEU" lacv="276" obsolete="true""#);
    assert_eq!(at("SPIF032", legacy[0]), 1);
    // SPIF033: the tag with tagType notApplicable.
    assert_eq!(
        at("SPIF033", lines_with(&t, r#"tagType="notApplicable""#)[0]),
        1
    );
    // SPIF063: schema constructs kept but not used.
    for needle in [
        "<spif:updateInfo/>",
        "<spif:equivalentSecurityCategoryTagSet/>",
        "<spif:extensions>",
    ] {
        assert_eq!(at("SPIF063", lines_with(&t, needle)[0]), 1, "{needle}");
    }
    let review = lines_with(&t, "userInput=")[0];
    assert_eq!(at("SPIF063", review), 2, "userInput and dateFormat");
    // SPIF062: an attribute the vocabulary does not define.
    assert_eq!(at("SPIF062", review), 1);
    // SPIF034: a category whose lacv is a string (schema: integer or string) is not loaded.
    assert_eq!(at("SPIF034", lines_with(&t, r#"lacv="x1F""#)[0]), 1);
    assert!(spif.categories.iter().all(|c| c.name != "Hex Value"));
    let codes: BTreeSet<&str> = spif.warnings.iter().map(|w| w.code).collect();
    assert_eq!(
        codes,
        BTreeSet::from(["SPIF032", "SPIF033", "SPIF034", "SPIF041", "SPIF062", "SPIF063"])
    );
    // maxSelection="unbounded": no upper limit; minSelection="0".
    let admin = &spif.tag_sets[2].tags[0];
    assert_eq!((admin.min_selection, admin.max_selection), (Some(0), None));
}

#[test]
fn a_repeated_category_is_one_category_per_tag_set_and_tag_type() {
    let (spif, _) = quirks();
    let entries = [
        (REL_TO, TagType::EnumeratedPermissive),
        (REL_TO, TagType::Restrictive),
        (REL_TO, TagType::Permissive),
        (ONLY, TagType::EnumeratedPermissive),
    ];
    let idx: BTreeSet<usize> = entries
        .iter()
        .map(|(ts, tt)| {
            spif.category_index(&oid(ts), *tt, Lacv(276))
                .unwrap_or_else(|| panic!("DEU under {ts} {tt}"))
        })
        .collect();
    assert_eq!(idx.len(), 4, "four distinct categories");
    for i in &idx {
        assert_eq!(
            spif.categories[*i].name, "DEU",
            "the display name is the entry's own"
        );
        assert_eq!(spif.category_ref(*i).lacv, Lacv(276));
    }
    // Same (tag set, type, lacv) in another tag set / type does not exist: no cross-talk.
    assert!(spif
        .category_index(&oid(ONLY), TagType::Restrictive, Lacv(276))
        .is_none());
    // The unnamed tag of "Only" takes the tag set's name; the notApplicable tag's categories
    // are not loaded.
    let only = &spif.tag_sets[spif.tag_set_index(&oid(ONLY)).unwrap()];
    assert_eq!(only.tags.len(), 1);
    assert_eq!(only.tags[0].name, "Only");
    assert!(spif.categories.iter().all(|c| c.name != "NONE"));
}

#[test]
fn each_repetition_keeps_its_own_rules() {
    let (_, set) = quirks();
    let rel_enum = cat(REL_TO, TagType::EnumeratedPermissive, 276);
    let rel_restr = cat(REL_TO, TagType::Restrictive, 276);
    let rel_legacy = cat(REL_TO, TagType::Permissive, 276);
    let only = cat(ONLY, TagType::EnumeratedPermissive, 276);
    // Releasable To / enumerated permissive DEU has no rule: valid at UNCLASSIFIED.
    assert!(set
        .validate(&label(1, std::slice::from_ref(&rel_enum)))
        .is_ok());
    // Releasable To / restrictive DEU: <excludedClass>UNCLASSIFIED</excludedClass>.
    assert!(set
        .validate(&label(1, std::slice::from_ref(&rel_restr)))
        .is_err());
    assert!(set
        .validate(&label(2, std::slice::from_ref(&rel_restr)))
        .is_ok());
    // Releasable To / permissive DEU: obsolete="true" (not for new labels), at any class.
    for c in [1, 2, 4] {
        assert!(set
            .validate(&label(c, std::slice::from_ref(&rel_legacy)))
            .is_err());
    }
    // Only / DEU: requiredClass="SECRET" — only with SECRET.
    assert!(set.validate(&label(4, std::slice::from_ref(&only))).is_ok());
    for c in [1, 2] {
        let e = set
            .validate(&label(c, std::slice::from_ref(&only)))
            .unwrap_err();
        assert!(e.to_string().contains("DEU"), "{e}");
    }
}

#[test]
fn access_treats_repetitions_as_distinct_categories() {
    let (_, set) = quirks();
    let rel_enum = cat(REL_TO, TagType::EnumeratedPermissive, 276);
    let rel_restr = cat(REL_TO, TagType::Restrictive, 276);
    let only = cat(ONLY, TagType::EnumeratedPermissive, 276);
    let cleared_rel = clearance(std::slice::from_ref(&rel_enum));
    // Releasable To DEU (permissive) is held: granted.
    assert_eq!(
        set.access(&label(2, std::slice::from_ref(&rel_enum)), &cleared_rel)
            .unwrap(),
        AccessDecision::Grant
    );
    // The restrictive DEU of the same tag set is another category, not held: denied.
    assert_eq!(
        set.access(&label(2, std::slice::from_ref(&rel_restr)), &cleared_rel)
            .unwrap(),
        AccessDecision::Deny
    );
    // Only DEU (another tag set's permissive tag) needs a category of *that* tag: denied.
    assert_eq!(
        set.access(&label(4, std::slice::from_ref(&only)), &cleared_rel)
            .unwrap(),
        AccessDecision::Deny
    );
    let cleared_both = clearance(&[rel_restr.clone(), only.clone()]);
    assert_eq!(
        set.access(&label(2, std::slice::from_ref(&rel_restr)), &cleared_both)
            .unwrap(),
        AccessDecision::Grant
    );
    assert_eq!(
        set.access(&label(4, std::slice::from_ref(&only)), &cleared_both)
            .unwrap(),
        AccessDecision::Grant
    );
}

#[test]
fn page_markings_use_page_phrases_and_portion_markings_are_kept() {
    let (spif, set) = quirks();
    // Display marking = policy name, classification phrase, category phrases (page bottom).
    // UNCLASSIFIED: phrase "QU" is portionMarking only, "Q-UNCLASSIFIED" pageTopBottom.
    let m = set.marking(&label(1, &[]), None).unwrap();
    assert_eq!(m, "QUIRKS Q-UNCLASSIFIED");
    // SECRET + Only DEU: the entry's own phrase "DEU ONLY" (pageTopBottom); "QS" is portion.
    let m = set
        .marking(
            &label(4, &[cat(ONLY, TagType::EnumeratedPermissive, 276)]),
            None,
        )
        .unwrap();
    assert_eq!(m, "QUIRKS Q-SECRET DEU ONLY");
    // RESTRICTED + Releasable To DEU: prefix "REL TO " of that tag.
    let m = set
        .marking(
            &label(2, &[cat(REL_TO, TagType::EnumeratedPermissive, 276)]),
            None,
        )
        .unwrap();
    assert_eq!(m, "QUIRKS Q-RESTRICTED REL TO DEU");
    // The portion and watermark phrases stay in the model.
    let u = spif
        .classification(Lacv(1))
        .unwrap()
        .markings
        .get("")
        .unwrap();
    assert_eq!(u.located(PORTION_MARKING), Some(Some("QU")));
    assert_eq!(u.located(WATER_MARK), None);
    let s = spif
        .classification(Lacv(4))
        .unwrap()
        .markings
        .get("")
        .unwrap();
    assert_eq!(s.located(WATER_MARK), Some(Some("Q-SECRET")));
    assert_eq!(s.located(PORTION_MARKING), Some(Some("QS")));
}

#[test]
fn stanag_4774_names_resolve_per_tag_set_and_type() {
    let (_, set) = quirks();
    let x = |tag_name: &str, ty: &str| {
        format!(
            r#"<originatorConfidentialityLabel xmlns="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0"><ConfidentialityInformation><PolicyIdentifier URI="urn:oid:{POLICY}">QUIRKS</PolicyIdentifier><Classification>SECRET</Classification><Category TagName="{tag_name}" Type="{ty}"><GenericValue>DEU</GenericValue></Category></ConfidentialityInformation></originatorConfidentialityLabel>"#
        )
    };
    let l = set
        .label_from_4774_xml(&x("Releasable To", "RESTRICTIVE"))
        .unwrap();
    assert_eq!(
        l.categories,
        [cat(REL_TO, TagType::Restrictive, 276)]
            .into_iter()
            .collect()
    );
    let l = set.label_from_4774_xml(&x("Only", "PERMISSIVE")).unwrap();
    assert_eq!(
        l.categories,
        [cat(ONLY, TagType::EnumeratedPermissive, 276)]
            .into_iter()
            .collect()
    );
    // "Releasable To" has DEU as enumerated permissive and as permissive (SPIF032): a name
    // cannot say which, so the label is refused.
    let e = set
        .label_from_4774_xml(&x("Releasable To", "PERMISSIVE"))
        .unwrap_err();
    assert!(e.to_string().contains("ambiguous"), "{e}");
}

#[test]
fn exact_duplicate_within_tag_set_and_type_is_an_error() {
    let t = text("duplicate.xml");
    let Err(SpifError::Invalid { diagnostics }) = Spif::load(&fixture("duplicate.xml")) else {
        panic!("duplicate.xml must be refused");
    };
    let second = *lines_with(&t, r#"<tagCategory name="DEU" lacv="276"/>"#)
        .last()
        .unwrap();
    assert!(
        diagnostics.iter().any(|d| d.severity == Severity::Error
            && d.code == "SPIF027"
            && d.line == Some(second)),
        "{diagnostics:#?}"
    );
}

#[test]
fn marking_code_outside_the_schema_is_an_error() {
    let t = text("bad-code.xml");
    let Err(SpifError::Invalid { diagnostics }) = Spif::load(&fixture("bad-code.xml")) else {
        panic!("bad-code.xml must be refused");
    };
    let line = lines_with(&t, "pageMiddle")[0];
    assert!(
        diagnostics
            .iter()
            .any(|d| d.code == "SPIF040" && d.line == Some(line)),
        "{diagnostics:#?}"
    );
}

/// The error and all its sources, joined as an error chain prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn load_errors_state_their_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, "<SPIF>\n<securityPolicyId name='X' id='1.2'/>\n").unwrap();
    for e in [
        SpifSet::load([&broken]).unwrap_err(),
        Spif::load(&broken).unwrap_err(),
    ] {
        let c = chain(&e);
        assert_eq!(c.matches("not well-formed").count(), 1, "{c}");
        assert_eq!(c.matches("unclosed").count(), 1, "{c}");
    }
    let missing = dir.path().join("missing.xml");
    let e = SpifSet::load([&missing]).unwrap_err();
    let c = chain(&e);
    assert_eq!(c.matches("missing.xml").count(), 1, "{c}");
    assert_eq!(c.matches("os error").count(), 1, "{c}");
}

#[test]
fn spif_check_lists_warnings_with_lines_and_succeeds() {
    let t = text("quirks.xml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["spif", "check"])
        .arg(fixture("quirks.xml"))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "warnings only: exit 0\n{all}");
    let portion = lines_with(&t, "<spif:code>portionMarking</spif:code>")[0];
    assert!(
        all.contains(&format!(
            "warning[SPIF041] line {portion}: marking code 'portionMarking'"
        )),
        "{all}"
    );
    assert!(all.contains("warning[SPIF032]"), "{all}");
    assert!(!all.contains("error["), "{all}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(["spif", "check"])
        .arg(fixture("bad-code.xml"))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    let line = lines_with(&text("bad-code.xml"), "pageMiddle")[0];
    assert!(
        all.contains(&format!("error[SPIF040] line {line}")),
        "{all}"
    );
}

/// Every SPIF in the repository loads: the shipped ones (`spif/`), spiffing's and the generated
/// ones — except the two that are broken on purpose (spiffing's `food-policy-borked.xml`, a
/// duplicate excluded classification, and `bsi-commercial.xml`, truncated) and this suite's
/// own invalid fixtures.
#[test]
fn every_spif_in_the_repository_loads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let broken = [
        "food-policy-borked.xml",
        "bsi-commercial.xml",
        "duplicate.xml",
        "bad-code.xml",
    ];
    let mut loaded = 0;
    for dir in ["spif", "tests/fixtures/spiffing", "tests/fixtures/spif"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if !name.ends_with(".xml") || !text.contains("securityPolicyId") {
                continue;
            }
            let res = Spif::load(&path);
            if broken.contains(&name.as_str()) {
                assert!(res.is_err(), "{name} must be refused");
            } else {
                let spif = res.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(spif
                    .warnings
                    .iter()
                    .all(|w| w.severity == Severity::Warning));
                loaded += 1;
            }
        }
    }
    // spif/: 2, spiffing: 6 policies (food, food-missi, nato, tlp, tlp-plus, uk-demo), quirks,
    // features, features-peer.
    assert_eq!(loaded, 11);
}
