//! The examples of `docs/labels.md` (files in `docs/labels/`) load against the shipped SPIFs
//! and show what the page says: markings, access, translation, and the labels carried in the
//! Matrix event and room state examples.
use std::path::{Path, PathBuf};

use grenzwacht::spif::{AccessDecision, Oid, SpifSet};

fn doc(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/labels")
        .join(name)
}

fn spifs() -> SpifSet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    SpifSet::load([root.join("spif/deu-vs.xml"), root.join("spif/nato.xml")]).expect("SPIFs")
}

fn marking(set: &SpifSet, file: &str) -> String {
    let label = set.load_label_file(&doc(file)).expect(file);
    set.marking(&label, None).expect("marking")
}

/// The label a Matrix example carries under the default `event_key`, as bytes of its form.
fn carried(file: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(doc(file)).unwrap()).unwrap();
    match &v["content"]["de.grenzwacht.label"] {
        serde_json::Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap(),
    }
}

#[test]
fn every_form_loads_with_the_marking_the_page_shows() {
    let set = spifs();
    assert_eq!(
        marking(&set, "nato-secret-rel-deu.json"),
        "NATO SECRET Releasable to Germany"
    );
    assert_eq!(
        marking(&set, "deu-nfd.4774.xml"),
        "VS-NUR FÜR DEN DIENSTGEBRAUCH"
    );
    assert_eq!(
        marking(&set, "nato-restricted.spiffing.xml"),
        "NATO RESTRICTED"
    );
    // ESS BER with an enumerated permissive category and a privacy mark.
    assert_eq!(
        marking(&set, "nato-secret-rel-fra-deu.ber"),
        "NATO SECRET Releasable to France, Germany EXERCISE"
    );
}

#[test]
fn both_clearance_forms_grant_restricted_and_deny_secret() {
    let set = spifs();
    let restricted = set
        .load_label_file(&doc("nato-restricted.spiffing.xml"))
        .unwrap();
    let secret = set
        .load_label_file(&doc("nato-secret-rel-deu.json"))
        .unwrap();
    for c in [
        "nato-clearance-restricted-deu.json",
        "nato-clearance-restricted-deu.spiffing.xml",
    ] {
        let clearance = set.load_clearance_file(&doc(c)).expect(c);
        assert_eq!(
            set.access(&restricted, &clearance).unwrap(),
            AccessDecision::Grant,
            "{c}"
        );
        assert_eq!(
            set.access(&secret, &clearance).unwrap(),
            AccessDecision::Deny,
            "{c}"
        );
    }
}

#[test]
fn the_translation_example_holds() {
    let set = spifs();
    let secret = set
        .load_label_file(&doc("nato-secret-rel-deu.json"))
        .unwrap();
    let deu = set
        .translate(&secret, &Oid::parse("1.3.6.1.4.1.99999.1.1").unwrap())
        .expect("equivalent");
    assert_eq!(set.marking(&deu, None).unwrap(), "GEHEIM - Freigabe an DEU");
}

#[test]
fn labels_carried_in_events_and_room_state_parse() {
    let set = spifs();
    let event = set
        .parse_label(&carried("message-with-label.json"))
        .unwrap();
    assert_eq!(set.marking(&event, None).unwrap(), "NATO RESTRICTED");
    let room = set.parse_label(&carried("room-label-state.json")).unwrap();
    assert_eq!(set.marking(&room, None).unwrap(), "GEHEIM");
}
