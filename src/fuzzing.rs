//! Fuzz target bodies: one function per parser that reads peer or operator input.
//!
//! Each function takes arbitrary bytes, runs one parser on them and checks properties that
//! must hold for every input; a violated property panics, which is what a fuzzer reports. The
//! same functions serve two callers:
//!
//! * `fuzz/fuzz_targets/<name>.rs` (cargo fuzz, libFuzzer, nightly, sanitizer build) runs them
//!   coverage-guided; `fuzz/run-all HOURS` drives every target for a share of the time.
//! * `tests/fuzz_corpus.rs` replays every file of `fuzz/corpus/<name>/` and
//!   `fuzz/regressions/<name>/` through them in the ordinary test build, so `.ci/run` checks
//!   every input the fuzzers found interesting without an instrumented build.
//!
//! # Design notes
//!
//! * Properties, not just "no panic": where an independent reference exists the target is
//!   differential (the strict JSON validator against `serde_json`, the canonical-JSON
//!   recogniser against ruma's canonical serialisation); where a format promises one encoding
//!   per value the target round-trips (split frame messages, X-Matrix headers, ESS BER labels,
//!   redaction).
//! * Inputs that are not UTF-8 are skipped by the text parsers whose callers only ever hand
//!   them text (config, rule files, X-Matrix headers); the byte parsers see every input.
//! * Nothing here writes files or opens sockets.
use std::sync::OnceLock;

use serde_json::value::RawValue;

use crate::federation::{
    canonical, catalog, json, pdu, redact, response_text, txn, userdata, xmatrix,
};
use crate::spif::set::SpifSet;

/// A fuzz target: its name (the directory under `fuzz/corpus/`) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target, by name.
pub const TARGETS: &[Target] = &[
    ("strict_json", strict_json),
    ("txn", txn),
    ("pdu", pdu),
    ("redact", redact),
    ("xmatrix", xmatrix),
    ("canonical", canonical),
    ("catalog", catalog),
    ("spif_xml", spif_xml),
    ("label_4774", label_4774),
    ("label_json", label_json),
    ("ess_ber", ess_ber),
    ("dlp_rules", dlp_rules),
    ("config", config),
    ("multipart", multipart),
    ("diode_frame", diode_frame),
    ("split_message", split_message),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The strict JSON validator against `serde_json`: whatever it accepts, `serde_json` accepts
/// too; whatever `serde_json` accepts, it accepts unless it names a duplicate key, the depth
/// limit or the size limit, and a duplicate key it names really is one.
pub fn strict_json(data: &[u8]) {
    let limits = json::JsonLimits::default();
    let ours = json::validate(data, limits);
    let reference = serde_json::from_slice::<serde_json::Value>(data);
    match (&ours, &reference) {
        (Ok(()), Err(e)) => panic!("strict parser accepted what serde_json refuses: {e}"),
        (Err(json::JsonError::NotJson { .. }), Ok(_)) => {
            panic!("strict parser called valid JSON not JSON")
        }
        (Err(json::JsonError::DuplicateKey { .. }), Ok(v)) => {
            // serde_json keeps one of the duplicates, so the value re-serialised holds fewer
            // members than the text: count the text's members with a raw walk.
            assert!(
                members_in(data) > members_in_value(v),
                "duplicate key reported where there is none"
            );
        }
        _ => {}
    }
    if ours.is_ok() {
        // Accepted input is one value whose top level is what `validate_object` decides.
        let is_object = matches!(reference, Ok(serde_json::Value::Object(_)));
        assert_eq!(json::validate_object(data, limits).is_ok(), is_object);
    }
}

fn members_in(data: &[u8]) -> usize {
    fn walk(v: &RawValue) -> usize {
        let t = v.get().trim_start();
        if t.starts_with('{') {
            let m: Vec<(String, &RawValue)> = match serde_json::from_str::<RawMembers>(v.get()) {
                Ok(RawMembers(m)) => m,
                Err(_) => return 0,
            };
            m.len() + m.iter().map(|(_, v)| walk(v)).sum::<usize>()
        } else if t.starts_with('[') {
            match serde_json::from_str::<Vec<&RawValue>>(v.get()) {
                Ok(items) => items.iter().map(|v| walk(v)).sum(),
                Err(_) => 0,
            }
        } else {
            0
        }
    }
    match serde_json::from_slice::<&RawValue>(data) {
        Ok(raw) => walk(raw),
        Err(_) => 0,
    }
}

fn members_in_value(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => m.len() + m.values().map(members_in_value).sum::<usize>(),
        serde_json::Value::Array(a) => a.iter().map(members_in_value).sum(),
        _ => 0,
    }
}

/// Every member of an object, duplicates kept, in order.
struct RawMembers<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = RawMembers<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    out.push((k, m.next_value::<&'de RawValue>()?));
                }
                Ok(RawMembers(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A `/send` body: strict validation, the transaction view with the spec limits, then the PDU
/// and EDU views of every element; and the event sites of one catalog endpoint (chosen by the
/// first byte) over the rest, and for a response that validates, its user-data fields and the
/// rest of its text (which must always list: an error there would refuse every such answer).
pub fn txn(data: &[u8]) {
    let limits = txn::TxnLimits::default();
    if json::validate_object(data, json::JsonLimits::default()).is_ok() {
        if let Ok(t) = txn::Transaction::parse(data, &limits) {
            assert!(t.pdus.len() <= limits.max_pdus && t.edus.len() <= limits.max_edus);
            for p in &t.pdus {
                let _ = pdu::PduView::parse(p);
            }
            for e in &t.edus {
                let _ = pdu::EduView::parse(e);
            }
        }
    }
    if let Some((&sel, body)) = data.split_first() {
        let entries = catalog::entries();
        let endpoint = &entries[sel as usize % entries.len()];
        let direction = if sel & 0x80 == 0 {
            catalog::Direction::Request
        } else {
            catalog::Direction::Response
        };
        if let Ok(found) = pdu::pdus_in(endpoint, direction, body) {
            for f in found {
                // Every located event is a piece of the body.
                let s = f.raw.get();
                assert!(
                    std::str::from_utf8(body).is_ok_and(|b| b.contains(s)),
                    "located event is not part of the body"
                );
            }
        }
        if direction == catalog::Direction::Response
            && json::validate(body, json::JsonLimits::default()).is_ok()
        {
            let fields = userdata::fields_in(endpoint, None, body).unwrap_or_default();
            let typed: Vec<_> = fields.iter().map(|f| &f.path).collect();
            response_text::response_texts(endpoint, body, &typed)
                .expect("the text of a valid JSON response lists");
        }
    }
}

/// One event: the strict PDU view, the lenient event view and the EDU view.
pub fn pdu(data: &[u8]) {
    let Ok(raw) = serde_json::from_slice::<&RawValue>(data) else {
        return;
    };
    if let Ok(v) = pdu::PduView::parse(raw) {
        // The lenient view accepts whatever the strict one does.
        let e = pdu::EventView::parse(raw).expect("lenient view refused a valid PDU");
        assert_eq!(e.event_type, v.event_type);
        assert_eq!(e.sender, v.sender);
    }
    let _ = pdu::EduView::parse(raw);
}

/// Redaction of one PDU in the room version the first byte selects: the result is canonical
/// JSON and redacting it again changes nothing.
pub fn redact(data: &[u8]) {
    const VERSIONS: &[&str] = &[
        "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
    ];
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let Some(version) = redact::parse_room_version(VERSIONS[sel as usize % VERSIONS.len()]) else {
        return;
    };
    let Ok(raw) = serde_json::from_slice::<&RawValue>(body) else {
        return;
    };
    if let Ok(once) = redact::redact_pdu(raw, &version) {
        let twice = redact::redact_pdu(&once, &version).expect("a redacted PDU is redactable");
        assert_eq!(once.get(), twice.get(), "redaction is not idempotent");
        if let Ok(form) = canonical::canonical_form(&once) {
            assert_eq!(form, once.get(), "redacted PDU is not canonical JSON");
        }
    }
    let _ = redact::redact_pdu_lenient(raw, &version);
}

/// The X-Matrix `Authorization` header: what parses renders to a header that parses to the
/// same credential and renders the same again.
pub fn xmatrix(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(x) = xmatrix::XMatrix::parse(header) {
        let rendered = x.to_header_value();
        let again = xmatrix::XMatrix::parse(&rendered).expect("rendered header does not parse");
        assert!(again == x, "rendered header is another credential");
        assert_eq!(again.to_header_value(), rendered);
    }
}

/// The canonical-JSON recogniser against ruma: what it calls canonical is exactly ruma's
/// canonical serialisation of the value, and `canonical_form` always equals ruma's.
pub fn canonical(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fast = canonical::is_canonical_str(text);
    let ruma = serde_json::from_str::<ruma::CanonicalJsonValue>(text)
        .ok()
        .and_then(|v| serde_json::to_string(&v).ok());
    // Duplicate keys: ruma keeps the last, the text holds both, so it cannot be canonical.
    if fast {
        let canon = ruma
            .as_deref()
            .expect("recogniser accepted what ruma refuses");
        assert_eq!(text, canon, "recogniser accepted a non-canonical text");
    }
    if let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
        match (canonical::canonical_form(raw), &ruma) {
            (Ok(form), Some(r)) => assert_eq!(form.as_ref(), r.as_str()),
            (Ok(_), None) => panic!("canonical_form accepted what ruma refuses"),
            (Err(_), Some(_)) => panic!("canonical_form refused what ruma accepts"),
            (Err(_), None) => {}
        }
        // The number check agrees with ruma's value model.
        if canonical::check_canonical(raw, true).is_ok() {
            assert!(ruma.is_some(), "number check passed what ruma refuses");
        }
    }
}

/// The federation catalog's path matcher: the first byte picks the method, the rest is the
/// path. A match names an endpoint the catalog knows by id, and its parameters are pieces of
/// the path.
pub fn catalog(data: &[u8]) {
    const METHODS: &[http::Method] = &[
        http::Method::GET,
        http::Method::PUT,
        http::Method::POST,
        http::Method::DELETE,
        http::Method::HEAD,
        http::Method::OPTIONS,
    ];
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let method = &METHODS[sel as usize % METHODS.len()];
    let _ = catalog::percent_decode(path);
    let known = catalog::path_known(path);
    if let Some(m) = catalog::lookup(method, path) {
        assert!(known, "a path the matcher routes is not known");
        let by_id = catalog::by_id(m.endpoint.id).expect("matched endpoint has an id");
        assert!(std::ptr::eq(by_id, m.endpoint));
        for name in [
            "roomId",
            "eventId",
            "serverName",
            "txnId",
            "userId",
            "mediaId",
        ] {
            if let Some(p) = m.param(name) {
                assert!(path.contains(p), "parameter is not part of the path");
            }
        }
    }
}

fn spif_set() -> &'static SpifSet {
    static SET: OnceLock<SpifSet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut set = SpifSet::new();
        for text in [
            include_str!("../spif/nato.xml"),
            include_str!("../spif/deu-vs.xml"),
        ] {
            let spif = crate::spif::model::Spif::parse(text).expect("shipped SPIF parses");
            set.insert(spif).expect("shipped SPIFs are distinct");
        }
        set
    })
}

/// A SPIF document (operator input): parsed, and the schema checks of its XML run.
pub fn spif_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::spif::model::Spif::parse(text);
    if let Ok(root) = crate::spif::xml::parse(text, 1 << 20) {
        let _ = crate::spif::schema::check(&root);
    }
}

/// Check a label the set parsed: its marking renders, and it re-parses from its JSON form.
fn label_properties(set: &SpifSet, label: &crate::spif::label::Label) {
    let _ = set.marking(label, None);
    let json = label.to_json();
    let again = crate::spif::label::Label::from_json(&json).expect("a label's JSON re-parses");
    assert_eq!(again.to_json(), json, "label JSON does not round-trip");
}

/// STANAG 4774 (and spiffing) XML labels, checked against the shipped SPIFs.
pub fn label_4774(data: &[u8]) {
    let set = spif_set();
    if let Ok(label) = set.parse_label(data) {
        label_properties(set, &label);
        if let Ok(xml) = set.to_4774_xml(&label) {
            let again = set
                .label_from_4774_xml(&xml)
                .expect("rendered 4774 XML re-parses");
            assert_eq!(
                again.to_json(),
                label.to_json(),
                "4774 XML does not round-trip"
            );
        }
    }
    let _ = crate::spif::label::Clearance::parse(data);
}

/// JSON labels (the guard's own form), checked against the shipped SPIFs.
pub fn label_json(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let set = spif_set();
    if let Ok(label) = crate::spif::label::Label::from_json(&v) {
        if set.validate(&label).is_ok() {
            label_properties(set, &label);
        }
    }
    let _ = crate::spif::label::Clearance::from_json(&v);
}

/// ESS SecurityLabel BER: what parses encodes to bytes that parse to the same label; the
/// set's label parser sees the bytes too.
pub fn ess_ber(data: &[u8]) {
    use crate::spif::ber;
    if let Ok(label) = ber::parse_ess_security_label(data) {
        if let Ok(bytes) = ber::encode_ess_security_label(&label) {
            let again = ber::parse_ess_security_label(&bytes).expect("encoded label re-parses");
            assert_eq!(again, label, "ESS label does not round-trip");
        }
    }
    let set = spif_set();
    if let Ok(label) = set.parse_label(data) {
        label_properties(set, &label);
    }
}

/// One DLP rule file (operator input): parsed, and compiled when it has no diagnostics.
pub fn dlp_rules(data: &[u8]) {
    use crate::policy::dlp::{engine::Engine, rules};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut diags = Vec::new();
    if let Some(file) = rules::parse_file(text, "fuzz.toml", &mut diags) {
        if diags.is_empty() {
            let _ = Engine::compile(&[file]);
        }
    }
    for d in &diags {
        assert!(!d.code.is_empty(), "diagnostic without a code");
    }
}

/// The guard's config file (operator input).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = crate::config::Config::from_str(text, "/nonexistent/fuzz.toml") {
        assert!(
            !errors.to_string().is_empty(),
            "config refused without a message"
        );
    }
}

/// A multipart media answer: the first line is the `Content-Type`, the rest the body. Every
/// part found is a piece of the body.
pub fn multipart(data: &[u8]) {
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let Ok(ct) = std::str::from_utf8(ct) else {
        return;
    };
    let _ = crate::media::multipart::parse(ct, body);
}

/// A diode frame: the reference verifier and the header reader never disagree about whether
/// a header is there, and a payload check runs on every input.
pub fn diode_frame(data: &[u8]) {
    use crate::diode::frame;
    let reason = frame::verify(data);
    if reason == frame::Reason::Accept {
        assert!(
            frame::header(data).is_some(),
            "accepted frame without header"
        );
    }
    let _ = frame::check_payload(data);
}

/// A split-link frame message (request, response, heartbeat): whatever decodes re-encodes to
/// exactly the same bytes — one encoding per value, no covert channel in the spelling.
pub fn split_message(data: &[u8]) {
    use crate::split::wire;
    if let Ok(r) = wire::Request::decode(data) {
        assert_eq!(r.encode().expect("decoded request encodes"), data);
    }
    if let Ok(r) = wire::Response::decode(data) {
        assert_eq!(r.encode().expect("decoded response encodes"), data);
    }
    if let Ok(h) = wire::Heartbeat::decode(data) {
        assert_eq!(h.encode().expect("decoded heartbeat encodes"), data);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = wire::conforms(s);
        if let Ok(h) = wire::canonical_auth(s) {
            assert_eq!(wire::canonical_auth(&h).as_deref(), Ok(h.as_str()));
        }
    }
}
