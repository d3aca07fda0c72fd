//! The label layer's marking detector (`[labels] marking_detector`): one outbound
//! `m.room.message` PDU (~600 bytes, German text, labeled VS-NfD released to DEU) judged by the
//! label layer with the SPIF phrase scan (`spif`, the default), the shipped DLP marking rules
//! (`dlp`, `policy::dlp::markings`) and both. Everything else as in `benches/labels.rs`
//! (`release/json_label`): the difference between the variants is the detector.
//!
//! Run: `cargo bench --bench label_detector` (or `-- --quick`).
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use grenzwacht::config::Config;
use grenzwacht::federation::catalog;
use grenzwacht::federation::pdu::PduView;
use grenzwacht::policy::dlp::markings::DlpMarkings;
use grenzwacht::policy::dlp::RuleSet;
use grenzwacht::policy::labels::LabelPolicy;
use grenzwacht::policy::{Direction, ExchangeCtx, PduVerdict, Policy};
use grenzwacht::store::Store;
use serde_json::{json, value::RawValue};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DEU: &str = "1.3.6.1.4.1.99999.1.1";
const NATO: &str = "1.3.26.1.3.1";

fn layer(detector: &str) -> std::sync::Arc<LabelPolicy> {
    let cfg = Config::from_str(
        &format!(
            r#"
[store]
path = "/tmp/x.db"
[dlp]
policies = "{ROOT}/policies"
[labels]
spifs = ["{ROOT}/spif/deu-vs.xml", "{ROOT}/spif/nato.xml"]
marking_detector = "{detector}"
[labels.protected]
policy = "{DEU}"
default_label = {{ policy = "{DEU}", classification = 2 }}
clearance = {{ policy = "{DEU}", classifications = [1, 2, 3, 4, 5] }}
[labels.remote]
policy = "{NATO}"
default_label = {{ policy = "{NATO}", classification = 2, categories = [{{ tag_set = "1.3.26.1.4.4", type = "permissive", lacv = 1001 }}] }}
clearance = {{ policy = "{NATO}", classifications = [1, 2], categories = [{{ tag_set = "1.3.26.1.4.2", type = "enumeratedPermissive", lacv = 276 }}, {{ tag_set = "1.3.26.1.4.4", type = "permissive", lacv = 1001 }}] }}
"#
        ),
        "/etc/gw/gw.toml",
    )
    .unwrap();
    let m = DlpMarkings::new("de.grenzwacht.label");
    let p =
        LabelPolicy::from_config_with(&cfg, Store::open_in_memory().unwrap(), Some(m.detector()))
            .unwrap()
            .unwrap();
    let rules = RuleSet::load_dir(format!("{ROOT}/policies")).unwrap();
    m.set(m.build(&rules, p.spifs()).unwrap());
    p
}

fn bench(c: &mut Criterion) {
    let content = json!({
        "msgtype": "m.text",
        "body": "Lagebericht: Die Übergabe am Güterbahnhof verzögert sich um etwa zwei Stunden. Bitte prüft, ob die Straßensperrung in der Münchner Straße aufgehoben ist, und meldet euch über den gewohnten Kanal. Nächste Abstimmung: Dienstag, 14:30 Uhr.",
        "m.mentions": {},
        "de.grenzwacht.label": {"policy": DEU, "classification": 2, "categories": [{"tag_set": format!("{DEU}.1"), "type": "permissive", "lacv": 276}]}
    });
    let v = json!({"type": "m.room.message", "room_id": "!r:bund.example.de", "sender": "@juergen:bund.example.de", "origin_server_ts": 1712345678901i64, "depth": 42,
        "auth_events": ["$hBhnS8xXQyjP8R5wqXcKMBy0mUBdQm5iqTe1Y8bK6vU"], "prev_events": ["$x7RDZ6c2mOn0q2WmbQ6X2wDqYfUVJp7c1HqWnE8c0Bs"],
        "content": content, "hashes": {"sha256": "abc"}, "signatures": {}});
    let raw = RawValue::from_string(v.to_string()).unwrap();
    let view = PduView::parse(&raw).unwrap();
    let ctx = ExchangeCtx {
        direction: Direction::Outbound,
        endpoint: catalog::by_id("send_transaction").unwrap(),
        peer: Some("land.example.de".into()),
        protected: "bund.example.de".into(),
        txn_id: None,
    };
    let mut g = c.benchmark_group("marking_detector");
    for d in ["spif", "dlp", "both"] {
        let p = layer(d);
        assert_eq!(p.pdu(&ctx, &view), PduVerdict::Allow, "{d}");
        g.bench_function(d, |b| {
            b.iter(|| black_box(p.pdu(black_box(&ctx), black_box(&view))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
