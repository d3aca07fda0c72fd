//! Security labels: the release decision per event (`policy::labels::LabelPolicy::pdu`) with
//! a cached parsed label, and the load time of the shipped SPIFs.
//!
//! * `release/*`: one outbound `m.room.message` PDU (~600 bytes, German text) judged by the
//!   label layer as configured in the lab (hs1 side DEU-VS, peer under NATO, cleared for
//!   RESTRICTED releasable to DEU): parse of the content's top level, label from the parse
//!   cache, room label lookup (cached in the store), translation DEU-VS → NATO, access
//!   decision, marking scan of the body. The PDU view is built once (the exchange builds it
//!   anyway). Variants: JSON-form label, STANAG 4774 XML label, unlabeled (side default),
//!   denied (GEHEIM), labeled room.
//! * `spif_load/*`: parsing and checking the NATO SPIF (1 850 lines), and DEU-VS.
//!
//! Run: `cargo bench --bench labels` (or `-- --quick`).
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use grenzwacht::config::labels::{
    EncryptedWithoutLabel, LabelAction, LabelsConfig, PeerConfig, SideConfig,
};
use grenzwacht::federation::catalog;
use grenzwacht::federation::pdu::PduView;
use grenzwacht::policy::labels::LabelPolicy;
use grenzwacht::policy::{Direction, ExchangeCtx, PduVerdict, Policy};
use grenzwacht::spif::{Label, Spif, SpifSet};
use grenzwacht::store::Store;
use serde_json::{json, value::RawValue, Value};

const DEU: &str = "1.3.6.1.4.1.99999.1.1";
const NATO: &str = "1.3.26.1.3.1";
const DEU_XML: &str = include_str!("../spif/deu-vs.xml");
const NATO_XML: &str = include_str!("../spif/nato.xml");

fn deu(class: u64, rel: &[u64]) -> Value {
    json!({"policy": DEU, "classification": class, "categories": rel.iter().map(|l| json!({"tag_set": format!("{DEU}.1"), "type": "permissive", "lacv": l})).collect::<Vec<_>>()})
}

fn policy(store: Store) -> LabelPolicy {
    let mut set = SpifSet::new();
    set.insert(Spif::parse(DEU_XML).unwrap()).unwrap();
    set.insert(Spif::parse(NATO_XML).unwrap()).unwrap();
    let nato_clearance = json!({"policy": NATO, "classifications": [1, 2], "categories": [
        {"tag_set": "1.3.26.1.4.2", "type": "enumeratedPermissive", "lacv": 276},
        {"tag_set": "1.3.26.1.4.4", "type": "permissive", "lacv": 1001}]});
    let cfg = LabelsConfig {
        spifs: vec![],
        event_key: "de.grenzwacht.label".into(),
        room_label_type: "de.grenzwacht.room_label".into(),
        on_deny: LabelAction::Redact,
        on_mismatch: LabelAction::Hold,
        encrypted_without_label: EncryptedWithoutLabel::Deny,
        marking_check: true,
        protected: SideConfig {
            policy: DEU.into(),
            default_label: Some(deu(2, &[])),
            default_label_file: None,
            clearance: Some(json!({"policy": DEU, "classifications": [1, 2, 3, 4, 5]})),
            clearance_file: None,
        },
        remote: SideConfig {
            policy: NATO.into(),
            default_label: Some(
                json!({"policy": NATO, "classification": 2, "categories": [{"tag_set": "1.3.26.1.4.4", "type": "permissive", "lacv": 1001}]}),
            ),
            default_label_file: None,
            clearance: Some(nato_clearance.clone()),
            clearance_file: None,
        },
        peer: vec![PeerConfig {
            server: "land.example.de".into(),
            clearance: Some(nato_clearance),
            clearance_file: None,
        }],
        marking: vec![],
        marking_detector: Default::default(),
    };
    LabelPolicy::new(&cfg, set, store, &["bund.example.de".to_string()]).unwrap()
}

fn pdu(room: &str, label: Option<Value>) -> Box<RawValue> {
    let mut content = json!({
        "msgtype": "m.text",
        "body": "Lagebericht: Die Übergabe am Güterbahnhof verzögert sich um etwa zwei Stunden. Bitte prüft, ob die Straßensperrung in der Münchner Straße aufgehoben ist, und meldet euch über den gewohnten Kanal. Nächste Abstimmung: Dienstag, 14:30 Uhr.",
        "m.mentions": {}
    });
    if let Some(l) = label {
        content["de.grenzwacht.label"] = l;
    }
    let v = json!({"type": "m.room.message", "room_id": room, "sender": "@juergen:bund.example.de", "origin_server_ts": 1712345678901i64, "depth": 42,
        "auth_events": ["$hBhnS8xXQyjP8R5wqXcKMBy0mUBdQm5iqTe1Y8bK6vU"], "prev_events": ["$x7RDZ6c2mOn0q2WmbQ6X2wDqYfUVJp7c1HqWnE8c0Bs"],
        "content": content, "hashes": {"sha256": "abc"}, "signatures": {}});
    RawValue::from_string(v.to_string()).unwrap()
}

fn bench(c: &mut Criterion) {
    let store = Store::open_in_memory().unwrap();
    let p = policy(store.clone());
    let ctx = ExchangeCtx {
        direction: Direction::Outbound,
        endpoint: catalog::by_id("send_transaction").unwrap(),
        peer: Some("land.example.de".into()),
        protected: "bund.example.de".into(),
        txn_id: None,
    };
    let xml = p
        .spifs()
        .to_4774_xml(&Label::from_json(&deu(2, &[276])).unwrap())
        .unwrap();
    // A labeled room (VS-NfD, released to DEU and FRA), learned through the layer.
    let room_label = json!({"type": "de.grenzwacht.room_label", "state_key": "", "room_id": "!labeled:bund.example.de", "sender": "@juergen:bund.example.de", "origin_server_ts": 1, "content": {"de.grenzwacht.label": deu(2, &[276, 250])}});
    let rl = RawValue::from_string(room_label.to_string()).unwrap();
    p.pdu(&ctx, &PduView::parse(&rl).unwrap());
    let cases: Vec<(&str, Box<RawValue>, bool)> = vec![
        (
            "json_label",
            pdu("!r:bund.example.de", Some(deu(2, &[276]))),
            true,
        ),
        (
            "4774_label",
            pdu("!r:bund.example.de", Some(json!(xml))),
            true,
        ),
        ("unlabeled_default", pdu("!r:bund.example.de", None), true),
        (
            "labeled_room_unlabeled_event",
            pdu("!labeled:bund.example.de", None),
            true,
        ),
        (
            "labeled_room_json_label",
            pdu("!labeled:bund.example.de", Some(deu(2, &[276, 250, 840]))),
            true,
        ),
        (
            "denied_geheim",
            pdu("!r:bund.example.de", Some(deu(4, &[276]))),
            false,
        ),
    ];
    let mut g = c.benchmark_group("release");
    for (name, raw, allowed) in &cases {
        let view = PduView::parse(raw).unwrap();
        // Warm the parse cache and check the expected decision.
        assert_eq!(p.pdu(&ctx, &view) == PduVerdict::Allow, *allowed, "{name}");
        g.bench_function(*name, |b| {
            b.iter(|| black_box(p.pdu(black_box(&ctx), black_box(&view))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("spif_load");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("nato_parse", |b| {
        b.iter(|| black_box(Spif::parse(black_box(NATO_XML)).unwrap()))
    });
    g.bench_function("deu_vs_parse", |b| {
        b.iter(|| black_box(Spif::parse(black_box(DEU_XML)).unwrap()))
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("spif/nato.xml");
    g.bench_function("nato_load_file", |b| {
        b.iter(|| black_box(SpifSet::load([&path]).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
