//! ESS BER labels with security categories (ACP 145(A) syntaxes), read and written, against
//! the spiffing conformance SPIFs and the shipped ones; privacy marks in display markings.
//!
//! The DER vectors below are written by hand from the standards (RFC 2634 / X.841
//! `SecurityLabel`, ACP 145(A) category syntaxes, X.690 DER), not produced by the encoder.
use std::path::{Path, PathBuf};

use grenzwacht::spif::{Label, LabelError, SpifSet};
use serde_json::json;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn set(files: &[&str]) -> SpifSet {
    SpifSet::load(files.iter().map(|f| root().join(f))).expect("SPIFs load")
}

const FX: &str = "tests/fixtures/spiffing";

fn food() -> SpifSet {
    set(&["tests/fixtures/spiffing/food-policy.xml"])
}

fn nato() -> SpifSet {
    set(&["spif/deu-vs.xml", "spif/nato.xml"])
}

fn label(v: serde_json::Value) -> Label {
    Label::from_json(&v).unwrap()
}

const FOOD: &str = "1.2.826.0.1.6726289.0.0";

/// Vector 1, restrictive bit map (type 2.16.840.1.101.2.1.8.3.0): Food, Commodity (51),
/// Allergens (tag set …0.0.2) Peanut (bit 0) and Gluten (bit 3).
const V_RESTRICTIVE: &[u8] = &[
    0x31, 0x36, // SecurityLabel SET
    0x02, 0x01, 0x33, // classification 51
    0x06, 0x0b, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, // policy
    0x31, 0x24, // SecurityCategories SET OF
    0x30, 0x22, // SecurityCategory SEQUENCE
    0x80, 0x0a, 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x08, 0x03, 0x00, // type [0]
    0xa1, 0x14, // value [1] EXPLICIT
    0x30, 0x12, // RestrictiveTag SEQUENCE
    0x06, 0x0c, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00,
    0x02, // tagName
    0x03, 0x02, 0x04, 0x90, // attributeFlags: 4 unused bits, 1001 0000
];

/// Vector 2, enumerated permissive (….3.1): NATO SECRET (4), Releasable To (1.3.26.1.4.2)
/// FRA (250) and DEU (276); the SET OF INTEGER in DER order (00 fa before 01 14).
const V_ENUM_PERMISSIVE: &[u8] = &[
    0x31, 0x2f, //
    0x02, 0x01, 0x04, //
    0x06, 0x05, 0x2b, 0x1a, 0x01, 0x03, 0x01, // 1.3.26.1.3.1
    0x31, 0x23, //
    0x30, 0x21, //
    0x80, 0x0a, 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x08, 0x03, 0x01, //
    0xa1, 0x13, //
    0x30, 0x11, // EnumeratedTag
    0x06, 0x05, 0x2b, 0x1a, 0x01, 0x04, 0x02, // 1.3.26.1.4.2
    0x31, 0x08, 0x02, 0x02, 0x00, 0xfa, 0x02, 0x02, 0x01, 0x14, // { 250, 276 }
];

/// Vector 3, permissive bit map (….3.2): Food, Commodity, Taste Sensations (…0.0.1) Chewy
/// (bit 1) and Gooey (bit 2).
const V_PERMISSIVE: &[u8] = &[
    0x31, 0x36, //
    0x02, 0x01, 0x33, //
    0x06, 0x0b, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, //
    0x31, 0x24, //
    0x30, 0x22, //
    0x80, 0x0a, 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x08, 0x03, 0x02, //
    0xa1, 0x14, //
    0x30, 0x12, // PermissiveTag
    0x06, 0x0c, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, 0x01, //
    0x03, 0x02, 0x05, 0x60, // 5 unused bits, 0110 0000
];

/// Vector 4, informative bitSetAttributes (….3.3): Food, Commodity, Colour Brown (bit 78 of
/// tag set …0.0.1, `tag7Encoding="bitSetAttributes"`): 10 octets, 1 unused bit.
const V_INFORMATIVE_BITS: &[u8] = &[
    0x31, 0x3f, //
    0x02, 0x01, 0x33, //
    0x06, 0x0b, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, //
    0x31, 0x2d, //
    0x30, 0x2b, //
    0x80, 0x0a, 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x08, 0x03, 0x03, //
    0xa1, 0x1d, //
    0x30, 0x1b, // InformativeTag
    0x06, 0x0c, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, 0x01, //
    0x03, 0x0b, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // FreeFormField bitSetAttributes
];

/// Vector 5, informative securityAttributes (….3.3): Food, Commodity, Packaging (…0.0.4)
/// Plastic (0), `tag7Encoding="securityAttributes"`.
const V_INFORMATIVE_ENUM: &[u8] = &[
    0x31, 0x37, //
    0x02, 0x01, 0x33, //
    0x06, 0x0b, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, //
    0x31, 0x25, //
    0x30, 0x23, //
    0x80, 0x0a, 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x08, 0x03, 0x03, //
    0xa1, 0x15, //
    0x30, 0x13, //
    0x06, 0x0c, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, 0x04, //
    0x31, 0x03, 0x02, 0x01, 0x00, // FreeFormField securityAttributes { 0 }
];

/// Vector 6, enumerated restrictive (….3.4): Food, Commodity, Ethics (…0.0.3) Not Fairtrade
/// (742) and Not Vegan (9954).
const V_ENUM_RESTRICTIVE: &[u8] = &[
    0x31, 0x3c, //
    0x02, 0x01, 0x33, //
    0x06, 0x0b, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, //
    0x31, 0x2a, //
    0x30, 0x28, //
    0x80, 0x0a, 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x08, 0x03, 0x04, //
    0xa1, 0x1a, //
    0x30, 0x18, //
    0x06, 0x0c, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, 0x03, //
    0x31, 0x08, 0x02, 0x02, 0x02, 0xe6, 0x02, 0x02, 0x26, 0xe2, // { 742, 9954 }
];

fn food_cats(cats: serde_json::Value) -> Label {
    label(json!({"policy": FOOD, "classification": 51, "categories": cats}))
}

fn vectors() -> Vec<(&'static str, SpifSet, &'static [u8], Label)> {
    let ts = |n: u32| format!("{FOOD}.{n}");
    vec![
        (
            "restrictive bit map",
            food(),
            V_RESTRICTIVE,
            food_cats(json!([
                {"tag_set": ts(2), "type": "restrictive", "lacv": 0},
                {"tag_set": ts(2), "type": "restrictive", "lacv": 3}
            ])),
        ),
        (
            "enumerated permissive",
            nato(),
            V_ENUM_PERMISSIVE,
            label(
                json!({"policy": "1.3.26.1.3.1", "classification": 4, "categories": [
                    {"tag_set": "1.3.26.1.4.2", "type": "enumeratedPermissive", "lacv": 276},
                    {"tag_set": "1.3.26.1.4.2", "type": "enumeratedPermissive", "lacv": 250}
                ]}),
            ),
        ),
        (
            "permissive bit map",
            food(),
            V_PERMISSIVE,
            food_cats(json!([
                {"tag_set": ts(1), "type": "permissive", "lacv": 1},
                {"tag_set": ts(1), "type": "permissive", "lacv": 2}
            ])),
        ),
        (
            "informative bitSetAttributes",
            food(),
            V_INFORMATIVE_BITS,
            food_cats(json!([{"tag_set": ts(1), "type": "informative", "lacv": 78}])),
        ),
        (
            "informative securityAttributes",
            food(),
            V_INFORMATIVE_ENUM,
            food_cats(json!([{"tag_set": ts(4), "type": "informative", "lacv": 0}])),
        ),
        (
            "enumerated restrictive",
            food(),
            V_ENUM_RESTRICTIVE,
            food_cats(json!([
                {"tag_set": ts(3), "type": "enumeratedRestrictive", "lacv": 9954},
                {"tag_set": ts(3), "type": "enumeratedRestrictive", "lacv": 742}
            ])),
        ),
    ]
}

#[test]
fn hand_built_der_vectors_of_each_syntax_read_and_write() {
    for (name, s, der, want) in vectors() {
        assert_eq!(Label::from_ber(der).expect(name), want, "{name}");
        assert_eq!(s.parse_label(der).expect(name), want, "{name}");
        s.validate(&want).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.to_ber(&want).expect(name), der, "{name}: DER output");
    }
}

#[test]
fn ber_freedoms_that_keep_the_value_are_read_and_written_canonically() {
    let s = food();
    let want = Label::from_ber(V_RESTRICTIVE).unwrap();
    // SET components in another order (OID before INTEGER) and a long-form length.
    let mut v = vec![0x31, 0x81, 0x36];
    v.extend_from_slice(&V_RESTRICTIVE[5..18]); // policy
    v.extend_from_slice(&V_RESTRICTIVE[2..5]); // classification
    v.extend_from_slice(&V_RESTRICTIVE[18..]);
    assert_eq!(Label::from_ber(&v).unwrap(), want);
    assert_eq!(s.to_ber(&want).unwrap(), V_RESTRICTIVE);
    // A trailing zero octet in the bit map (BER, not DER): same bits.
    let mut t = V_RESTRICTIVE.to_vec();
    for i in [1, 19, 21, 35, 37] {
        t[i] += 1; // SET, SET OF, SEQUENCE, [1], RestrictiveTag lengths
    }
    t[53] = 0x03; // BIT STRING length 3
    t[54] = 0x00; // no unused bits now
    t.push(0x00);
    assert_eq!(Label::from_ber(&t).unwrap(), want);
    // Two categories in non-DER order are read; the output sorts them.
    let mut two = vec![0x31, 0x5a];
    two.extend_from_slice(&V_RESTRICTIVE[2..18]);
    two.extend_from_slice(&[0x31, 0x48]);
    two.extend_from_slice(&V_PERMISSIVE[20..]); // type .2 first
    two.extend_from_slice(&V_RESTRICTIVE[20..]); // type .0 second
    let l = s.parse_label(&two).unwrap();
    assert_eq!(l.categories.len(), 4);
    let mut der = vec![0x31, 0x5a];
    der.extend_from_slice(&V_RESTRICTIVE[2..18]);
    der.extend_from_slice(&[0x31, 0x48]);
    der.extend_from_slice(&V_RESTRICTIVE[20..]);
    der.extend_from_slice(&V_PERMISSIVE[20..]);
    assert_eq!(s.to_ber(&l).unwrap(), der);
}

fn ber_err(data: &[u8]) -> String {
    let e = Label::from_ber(data).unwrap_err();
    assert!(
        matches!(e, LabelError::Ber(_)),
        "malformed BER is a BER error: {e:?}"
    );
    assert!(e.is_input_error());
    e.to_string()
}

#[test]
fn malformed_ber_is_refused_with_clear_messages() {
    // Truncated anywhere.
    for (_, _, der, _) in vectors() {
        for n in 1..der.len() {
            ber_err(&der[..n]);
        }
    }
    // Trailing bytes after the label.
    let mut v = V_RESTRICTIVE.to_vec();
    v.push(0);
    assert!(ber_err(&v).contains("trailing data"));
    // Bad tags: type not [0] IMPLICIT, value not [1] EXPLICIT, bit map not a BIT STRING.
    let mut v = V_RESTRICTIVE.to_vec();
    v[22] = 0xa0;
    assert!(ber_err(&v).contains("expected type [0]"), "{}", ber_err(&v));
    let mut v = V_RESTRICTIVE.to_vec();
    v[34] = 0x81;
    assert!(ber_err(&v).contains("value [1]"), "{}", ber_err(&v));
    let mut v = V_RESTRICTIVE.to_vec();
    v[52] = 0x04;
    assert!(
        ber_err(&v).contains("expected BIT STRING"),
        "{}",
        ber_err(&v)
    );
    let mut v = V_ENUM_RESTRICTIVE.to_vec();
    v[52] = 0x30;
    assert!(
        ber_err(&v).contains("expected SET OF INTEGER"),
        "{}",
        ber_err(&v)
    );
    // Non-zero unused bits, an empty bit map, a repeated attribute, a non-minimal INTEGER.
    let mut v = V_RESTRICTIVE.to_vec();
    v[55] = 0x91;
    assert!(ber_err(&v).contains("non-zero unused bits"));
    let mut v = V_RESTRICTIVE.to_vec();
    v[55] = 0x00;
    assert!(ber_err(&v).contains("no bit set"));
    let mut v = V_ENUM_RESTRICTIVE.to_vec();
    v[60..62].copy_from_slice(&[0x02, 0xe6]);
    assert!(ber_err(&v).contains("repeated attribute"));
    let mut v = V_ENUM_PERMISSIVE.to_vec();
    v[43..45].copy_from_slice(&[0x00, 0x7a]);
    assert!(ber_err(&v).contains("non-minimal"));
    // Duplicate category: the same (type, tag set) twice.
    let cat = &V_RESTRICTIVE[20..];
    let mut v = vec![0x31, 0x5a];
    v.extend_from_slice(&V_RESTRICTIVE[2..18]);
    v.extend_from_slice(&[0x31, 0x48]);
    v.extend_from_slice(cat);
    v.extend_from_slice(cat);
    assert!(ber_err(&v).contains("duplicate security category"));
    // Oversized bit map: 2049 octets (limit 2048).
    let bits = 2049usize;
    let field_len = bits + 1;
    let inner_len = 14 + 4 + field_len;
    let value_len = inner_len + 4;
    let cat_len = 12 + value_len + 4;
    let cats_len = cat_len + 4;
    let mut v = vec![0x31, 0x82];
    v.extend_from_slice(&((16 + cats_len + 4) as u16).to_be_bytes());
    v.extend_from_slice(&V_RESTRICTIVE[2..18]);
    for (tag, len) in [(0x31, cats_len), (0x30, cat_len)] {
        v.push(tag);
        v.push(0x82);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    }
    v.extend_from_slice(&V_RESTRICTIVE[22..34]);
    for (tag, len) in [(0xa1, value_len), (0x30, inner_len)] {
        v.push(tag);
        v.push(0x82);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    }
    v.extend_from_slice(&V_RESTRICTIVE[38..52]);
    v.extend_from_slice(&[0x03, 0x82]);
    v.extend_from_slice(&(field_len as u16).to_be_bytes());
    v.push(0x00);
    v.push(0x80);
    v.extend(std::iter::repeat_n(0, bits - 1));
    assert!(ber_err(&v).contains("limit 2048"), "{}", ber_err(&v));
    // Too many categories (ub-security-categories = 64): 65 distinct tag sets.
    let mut cats = Vec::new();
    for i in 0..65u8 {
        let mut c = V_RESTRICTIVE[20..].to_vec();
        c[31] = i + 0x10; // last arc of tagName
        cats.extend_from_slice(&c);
    }
    let mut v = vec![0x31, 0x82];
    v.extend_from_slice(&((16 + 4 + cats.len()) as u16).to_be_bytes());
    v.extend_from_slice(&V_RESTRICTIVE[2..18]);
    v.extend_from_slice(&[0x31, 0x82]);
    v.extend_from_slice(&(cats.len() as u16).to_be_bytes());
    v.extend_from_slice(&cats);
    assert!(ber_err(&v).contains("more than 64 security categories"));
}

#[test]
fn categories_the_spif_does_not_know_make_an_invalid_label() {
    let s = food();
    // A category type outside the ACP 145 and MISSI syntaxes (2.16.840.1.101.2.1.8.3.5) is
    // well-formed but unknown: the label is invalid under its policy (exit 1 in the CLI), not
    // unreadable.
    let mut v = V_RESTRICTIVE.to_vec();
    v[33] = 0x05;
    let e = s.parse_label(&v).unwrap_err();
    assert!(
        matches!(e, LabelError::UnknownCategory { .. }) && !e.is_input_error(),
        "{e:?}"
    );
    assert!(e.to_string().contains("2.16.840.1.101.2.1.8.3.5"), "{e}");
    // A tag set the SPIF does not define.
    let mut v = V_RESTRICTIVE.to_vec();
    v[51] = 0x09;
    let e = s.parse_label(&v).unwrap_err();
    assert!(matches!(e, LabelError::UnknownCategory { .. }), "{e:?}");
    // A type the tag set does not have: Ethics (…0.0.3) has no restrictive tag.
    let mut v = V_RESTRICTIVE.to_vec();
    v[51] = 0x03;
    let e = s.parse_label(&v).unwrap_err();
    assert!(matches!(e, LabelError::UnknownCategory { .. }), "{e:?}");
    // A LACV the tag does not define: Allergens bit 7.
    let mut v = V_RESTRICTIVE.to_vec();
    v[55] = 0x01;
    v[54] = 0x00;
    let e = s.parse_label(&v).unwrap_err();
    assert!(e.to_string().contains("lacv 7"), "{e}");
}

/// Every conformance label (spiffing XML and STANAG 4774) with a loaded policy goes
/// XML → BER → JSON → XML unchanged, with the same marking in every form.
#[test]
fn conformance_labels_round_trip_through_ber_and_json() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["food-policy.xml"],
            &[
                "food-label-milk-chocolate.xml",
                "food-label-cheap-milk-chocolate.xml",
                "food-label-gimmick-milk-chocolate.xml",
                "food-label-meaty-milk-chocolate.xml",
                "food-label-bacon.xml",
                "food-label-water.xml",
            ],
        ),
        (
            &["nato-4774-policy.xml"],
            &[
                "nato-4774-17-1.xml",
                "nato-4774-17-1.nato",
                "nato-4774-17-2.xml",
                "nato-4774-17-3.xml",
                "nato-4774-17-3.nato",
                "nato-4774-17-4.xml",
                "nato-4774-17-5.xml",
                "nato-4774-17-6.xml",
                "nato-4774-17-6.nato",
                "nato-4774-extra-1.xml",
            ],
        ),
        (
            &["tlp-plus.xml", "tlp.xml", "uk-demo.xml"],
            &["tlpx-amber-eu.xml", "tlpx-green-sh-na.xml"],
        ),
    ];
    let mut with_categories = 0;
    for (spifs, labels) in cases {
        let files: Vec<String> = spifs.iter().map(|f| format!("{FX}/{f}")).collect();
        let s = set(&files.iter().map(String::as_str).collect::<Vec<_>>());
        for f in *labels {
            let l = s
                .load_label_file(&root().join(FX).join(f))
                .unwrap_or_else(|e| panic!("{f}: {e}"));
            with_categories += usize::from(!l.categories.is_empty());
            let ber = s.to_ber(&l).unwrap_or_else(|e| panic!("{f}: {e}"));
            let back = s.parse_label(&ber).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(back, l, "{f}: BER round trip");
            assert_eq!(s.to_ber(&back).unwrap(), ber, "{f}: DER is canonical");
            let json = back.to_json();
            let from_json = s.parse_label(json.to_string().as_bytes()).unwrap();
            assert_eq!(from_json, l, "{f}: JSON");
            let xml = from_json.to_spiffing_xml();
            assert_eq!(
                s.parse_label(xml.as_bytes()).unwrap(),
                l,
                "{f}: spiffing XML"
            );
            let m = s.marking(&l, None).unwrap();
            assert_eq!(s.marking(&back, None).unwrap(), m, "{f}");
        }
    }
    assert!(with_categories >= 12, "{with_categories}");
}

#[test]
fn shipped_spif_labels_round_trip_and_translate_after_ber() {
    let s = nato();
    let l = s
        .load_label_file(&root().join("docs/labels/nato-secret-rel-deu.json"))
        .unwrap();
    let ber = s.to_ber(&l).unwrap();
    let back = s.parse_label(&ber).unwrap();
    assert_eq!(back, l);
    assert_eq!(
        s.marking(&back, None).unwrap(),
        "NATO SECRET Releasable to Germany"
    );
    // DEU-VS, permissive bit map (bit 276 of 1.3.6.1.4.1.99999.1.1.1), translated to NATO.
    let deu = s
        .translate(&back, &"1.3.6.1.4.1.99999.1.1".parse().unwrap())
        .unwrap();
    let deu_ber = s.to_ber(&deu).unwrap();
    assert_eq!(s.parse_label(&deu_ber).unwrap(), deu);
    // NATO's permissive Context tag reaches LACV 10000: a 1251-octet bit map.
    let wide = label(
        json!({"policy": "1.3.26.1.3.1", "classification": 1, "categories": [
        {"tag_set": "1.3.26.1.4.4", "type": "permissive", "lacv": 10000}]}),
    );
    let b = s.to_ber(&wide).unwrap();
    // BIT STRING 4 + 1 + 1251, tagName 7, RestrictiveTag and [1] 4 each, type 12,
    // SecurityCategory and SET OF 4 each, classification 3, policy 7, SET 4.
    assert_eq!(b.len(), 1256 + 7 + 8 + 12 + 8 + 10 + 4, "{b:02x?}");
    assert_eq!(s.parse_label(&b).unwrap(), wide);
}

/// MISSI syntax (type 2.16.840.1.101.2.1.8.1, `prbacSecurityCategories`): Food, Commodity,
/// Allergens restrictive bit map [1] Peanut and Gluten; Ethics enumerated attributes [2]
/// Not Fairtrade and Not Vegan (restrictive: the tag set's only enumerated tag) and permissive
/// bit map [6] Animal Rights (bit 0). Named tag sets in DER order (shorter encoding first).
const V_MISSI: &[u8] = &[
    0x31, 0x5f, //
    0x02, 0x01, 0x33, //
    0x06, 0x0b, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, //
    0x31, 0x4d, // SecurityCategories
    0x30, 0x4b, // SecurityCategory
    0x80, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x08, 0x01, // type: MISSI
    0xa1, 0x3e, // value [1]
    0x31, 0x3c, // prbacSecurityCategories: SET OF NamedTagSet
    0x30, 0x16, // NamedTagSet Allergens
    0x06, 0x0c, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, 0x02, //
    0x30, 0x06, // securityTags
    0xa1, 0x04, 0x03, 0x02, 0x04, 0x90, // [1] restrictivebitMap { attributeFlags }
    0x30, 0x22, // NamedTagSet Ethics
    0x06, 0x0c, 0x2a, 0x86, 0x3a, 0x00, 0x01, 0x83, 0x9a, 0xc5, 0x11, 0x00, 0x00, 0x03, //
    0x30, 0x12, //
    0xa2, 0x0a, 0x31, 0x08, 0x02, 0x02, 0x02, 0xe6, 0x02, 0x02, 0x26,
    0xe2, // [2] { 742, 9954 }
    0xa6, 0x04, 0x03, 0x02, 0x07, 0x80, // [6] permissivebitMap { bit 0 }
];

#[test]
fn missi_syntax_read_and_written() {
    let s = set(&["tests/fixtures/spiffing/food-policy-missi.xml"]);
    let want = food_cats(json!([
        {"tag_set": format!("{FOOD}.2"), "type": "restrictive", "lacv": 0},
        {"tag_set": format!("{FOOD}.2"), "type": "restrictive", "lacv": 3},
        {"tag_set": format!("{FOOD}.3"), "type": "enumeratedRestrictive", "lacv": 742},
        {"tag_set": format!("{FOOD}.3"), "type": "enumeratedRestrictive", "lacv": 9954},
        {"tag_set": format!("{FOOD}.3"), "type": "permissive", "lacv": 0}
    ]));
    assert_eq!(s.parse_label(V_MISSI).unwrap(), want);
    assert_eq!(s.to_ber(&want).unwrap(), V_MISSI);
    // Without the SPIF, enumerated attributes cannot be typed.
    assert!(matches!(
        Label::from_ber(V_MISSI),
        Err(LabelError::Unsupported(_))
    ));
    // Reading does not depend on the SPIF's rbacId: the ACP 145 food policy reads it too.
    assert_eq!(food().parse_label(V_MISSI).unwrap(), want);
    // Every food conformance label round-trips through the MISSI form.
    for f in [
        "food-label-milk-chocolate.xml",
        "food-label-bacon.xml",
        "food-label-water.xml",
        "food-label-meaty-milk-chocolate.xml",
    ] {
        let l = s.load_label_file(&root().join(FX).join(f)).unwrap();
        let b = s.to_ber(&l).unwrap();
        let missi_type = &V_MISSI[22..33];
        let acp_type = &V_RESTRICTIVE[22..31];
        assert_eq!(
            b.windows(11).filter(|w| *w == missi_type).count(),
            1,
            "{f}: one MISSI category"
        );
        assert!(!b.windows(9).any(|w| w == acp_type), "{f}: no ACP 145 type");
        assert_eq!(s.parse_label(&b).unwrap(), l, "{f}");
        assert_eq!(
            food().to_ber(&l).unwrap(),
            food().to_ber(&s.parse_label(&b).unwrap()).unwrap()
        );
    }
    // Malformed MISSI values.
    let err = |v: &[u8]| s.parse_label(v).unwrap_err().to_string();
    let mut v = V_MISSI.to_vec();
    v[35] = 0x30;
    assert!(err(&v).contains("lrbacInfo"), "{}", err(&v));
    let mut v = V_MISSI.to_vec();
    v[55] = 0xa3;
    assert!(err(&v).contains("unknown security tag"), "{}", err(&v));
    let mut v = V_MISSI.to_vec();
    v[79] = 0xa1; // [2] enumerated → [1] with a SET OF: wrong content
    assert!(err(&v).contains("unexpected tag 0x31"), "{}", err(&v));
    // securityLevel INTEGER before the bit map.
    let mut v = V_MISSI.to_vec();
    v.splice(57..57, [0x02, 0x01, 0x01]);
    for i in [1, 19, 21, 34, 36, 38, 54, 56] {
        v[i] += 3;
    }
    assert!(err(&v).contains("securityLevel"), "{}", err(&v));
    // The same tag set twice.
    let mut v = V_MISSI.to_vec();
    v[76] = 0x02;
    assert!(err(&v).contains("duplicate tag set"), "{}", err(&v));
    // A MISSI category next to an ACP 145 one.
    let mut v = vec![0x31, 0x81, 0x83];
    v.extend_from_slice(&V_MISSI[2..18]);
    v.extend_from_slice(&[0x31, 0x71]);
    v.extend_from_slice(&V_MISSI[20..]);
    v.extend_from_slice(&V_RESTRICTIVE[20..]);
    assert!(err(&v).contains("MISSI category next to"), "{}", err(&v));
}

#[test]
fn privacy_marks_in_ber() {
    let s = nato();
    let l = label(json!({"policy": "1.3.26.1.3.1", "classification": 2, "privacy_mark": "Übung"}));
    let b = s.to_ber(&l).unwrap();
    // UTF8String (0x0c) after the policy OID in DER order.
    let tail = [&[0x0c, 0x06][..], "Übung".as_bytes()].concat();
    assert!(b.ends_with(&tail), "{b:02x?}");
    assert_eq!(Label::from_ber(&b).unwrap(), l);
    // PrintableString input is read; characters outside its set are refused.
    let mut p = vec![
        0x31, 0x0e, 0x02, 0x01, 0x02, 0x06, 0x05, 0x2b, 0x1a, 0x01, 0x03, 0x01,
    ];
    p.extend_from_slice(&[0x13, 0x02, b'O', b'K']);
    assert_eq!(
        Label::from_ber(&p).unwrap().privacy_mark.as_deref(),
        Some("OK")
    );
    p[15] = b'!';
    assert!(ber_err(&p).contains("PrintableString"));
    let long = label(
        json!({"policy": "1.3.26.1.3.1", "classification": 2, "privacy_mark": "x".repeat(129)}),
    );
    assert!(s.to_ber(&long).unwrap_err().to_string().contains("128"));
}

fn pm_set() -> SpifSet {
    set(&["tests/fixtures/spif-privacy/privacy-marks.xml"])
}

fn pm_label(class: u64, mark: Option<&str>, rel: &[u64]) -> Label {
    let cats: Vec<_> = rel
        .iter()
        .map(|l| json!({"tag_set": "1.3.6.1.4.1.99999.9.1.1", "type": "permissive", "lacv": l}))
        .collect();
    let mut v =
        json!({"policy": "1.3.6.1.4.1.99999.9.1", "classification": class, "categories": cats});
    if let Some(m) = mark {
        v["privacy_mark"] = json!(m);
    }
    label(v)
}

/// Expected markings written from the Open XML SPIF rules of the test policy
/// (tests/fixtures/spif-privacy/privacy-marks.xml).
#[test]
fn privacy_marks_are_shown_as_the_spif_says() {
    let s = pm_set();
    assert!(s
        .get(&"1.3.6.1.4.1.99999.9.1".parse().unwrap())
        .unwrap()
        .warnings
        .is_empty());
    let mk = |l: &Label, lang: Option<&str>| {
        s.validate(l).unwrap();
        s.marking(l, lang).unwrap()
    };
    // No privacy mark: policy, classification, categories (tag prefix "REL TO ", separator ", ").
    assert_eq!(
        mk(&pm_label(1, None, &[1, 2]), None),
        "PM-TEST OFFICIAL REL TO DEU, FRA"
    );
    // <privacyMark name="PERSONAL"/> has no marking data: its name, after the categories,
    // with the prefix of <privacyMarks>' markingQualifier ("PRIVACY: ").
    assert_eq!(
        mk(&pm_label(1, Some("PERSONAL"), &[1]), None),
        "PM-TEST OFFICIAL REL TO DEU PRIVACY: PERSONAL"
    );
    // MEDICAL: markingData phrase "MEDICAL IN CONFIDENCE" (pageTopBottom), and the xml:lang="de"
    // phrase for German; the group prefix still applies (qualifiers fall back to privacyMarks).
    assert_eq!(
        mk(&pm_label(2, Some("MEDICAL"), &[]), None),
        "PM-TEST SECRET PRIVACY: MEDICAL IN CONFIDENCE"
    );
    assert_eq!(
        mk(&pm_label(2, Some("MEDICAL"), &[]), Some("de-AT")),
        "PM-TEST SECRET PRIVACY: ÄRZTLICHE SCHWEIGEPFLICHT"
    );
    // EXERCISE: markingData with noNameDisplay: not shown.
    assert_eq!(
        mk(&pm_label(1, Some("EXERCISE"), &[]), None),
        "PM-TEST OFFICIAL"
    );
    // STAFF: its own markingQualifier (prefix "[", suffix "]") replaces the group's.
    assert_eq!(
        mk(&pm_label(1, Some("STAFF"), &[2]), None),
        "PM-TEST OFFICIAL REL TO FRA [STAFF]"
    );
    // The SPIF lists its privacy marks: another one makes the label invalid.
    assert!(s.validate(&pm_label(1, Some("SECRET STUFF"), &[])).is_err());
}

#[test]
fn free_text_privacy_marks_are_shown_bounded_on_one_line() {
    // The shipped NATO SPIF lists no privacy marks: any text is allowed and shown as written.
    let s = nato();
    let l = label(
        json!({"policy": "1.3.26.1.3.1", "classification": 2, "privacy_mark": "Übung\nTest"}),
    );
    s.validate(&l).unwrap();
    assert_eq!(s.marking(&l, None).unwrap(), "NATO RESTRICTED Übung Test");
    let long = label(
        json!({"policy": "1.3.26.1.3.1", "classification": 2, "privacy_mark": "x".repeat(500)}),
    );
    let m = s.marking(&long, None).unwrap();
    assert_eq!(m, format!("NATO RESTRICTED {}…", "x".repeat(128)));
    // Marking after a BER round trip is the same.
    let b = s.to_ber(&l).unwrap();
    assert_eq!(
        s.marking(&s.parse_label(&b).unwrap(), None).unwrap(),
        "NATO RESTRICTED Übung Test"
    );
}

#[test]
fn ber_file_with_categories_loads_from_disk() {
    let s = food();
    let dir = std::env::temp_dir().join(format!("gw-ber-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f: &Path = &dir.join("label.ber");
    std::fs::write(f, V_ENUM_RESTRICTIVE).unwrap();
    let l = s.load_label_file(f).unwrap();
    assert_eq!(l, Label::from_ber(V_ENUM_RESTRICTIVE).unwrap());
    assert_eq!(
        s.marking(&l, None).unwrap(),
        "[ Food Commodity Not Fairtrade/Not Vegan ]"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Random corruptions of every vector never panic; whatever still reads as a label is written
/// back to DER that reads as the same label (the reader accepts nothing the writer cannot
/// represent).
#[test]
fn corrupted_vectors_never_panic_and_what_reads_round_trips() {
    let missi = set(&["tests/fixtures/spiffing/food-policy-missi.xml"]);
    let mut cases: Vec<(SpifSet, &[u8])> =
        vectors().into_iter().map(|(_, s, d, _)| (s, d)).collect();
    cases.push((missi, V_MISSI));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut read = 0;
    for (s, der) in &cases {
        for _ in 0..3000 {
            let mut v = der.to_vec();
            for _ in 0..(1 + next() % 3) {
                let i = (next() as usize) % v.len();
                v[i] = match next() % 4 {
                    0 => v[i] ^ (1 << (next() % 8)),
                    1 => 0x00,
                    2 => 0xff,
                    _ => next() as u8,
                };
            }
            if let Ok(l) = s.parse_label(&v) {
                read += 1;
                if let Ok(b) = s.to_ber(&l) {
                    assert_eq!(s.parse_label(&b).unwrap(), l, "{v:02x?}");
                }
            }
        }
    }
    assert!(read > 0, "some corruptions keep a readable label");
}

/// One tag set with informative tags of both encodings (test policy, tag set "Handling"): each
/// alone is written in its tag's encoding; both together cannot be one category and are refused.
#[test]
fn informative_tags_of_both_encodings_in_one_tag_set() {
    let s = pm_set();
    let h = |lacvs: &[u64]| {
        let cats: Vec<_> = lacvs
            .iter()
            .map(
                |l| json!({"tag_set": "1.3.6.1.4.1.99999.9.1.2", "type": "informative", "lacv": l}),
            )
            .collect();
        label(json!({"policy": "1.3.6.1.4.1.99999.9.1", "classification": 1, "categories": cats}))
    };
    let bits = s.to_ber(&h(&[1])).unwrap();
    assert!(bits.ends_with(&[0x03, 0x02, 0x06, 0x40]), "{bits:02x?}");
    assert_eq!(s.parse_label(&bits).unwrap(), h(&[1]));
    let ints = s.to_ber(&h(&[7])).unwrap();
    assert!(
        ints.ends_with(&[0x31, 0x03, 0x02, 0x01, 0x07]),
        "{ints:02x?}"
    );
    assert_eq!(s.parse_label(&ints).unwrap(), h(&[7]));
    let e = s.to_ber(&h(&[1, 7])).unwrap_err();
    assert!(
        matches!(e, LabelError::Unsupported(_)) && e.to_string().contains("both encodings"),
        "{e}"
    );
}

/// Every category of every SPIF shipped in `spif/` and of the conformance policies, alone and
/// all of a policy's categories in one label, goes through BER unchanged (the SPIFs' own
/// `rbacId` chooses the syntax; validity is not the point here).
#[test]
fn every_category_of_every_policy_round_trips() {
    use grenzwacht::spif::{Categories, Lacv};
    let files = [
        "spif/deu-vs.xml",
        "spif/nato.xml",
        "tests/fixtures/spiffing/food-policy.xml",
        "tests/fixtures/spiffing/nato-4774-policy.xml",
        "tests/fixtures/spiffing/tlp.xml",
        "tests/fixtures/spiffing/tlp-plus.xml",
        "tests/fixtures/spiffing/uk-demo.xml",
    ];
    let mut total = 0;
    for f in files {
        let s = set(&[f]);
        let oid = s.policies()[0].clone();
        let spif = s.get(&oid).unwrap();
        let class = spif.classifications[0].lacv;
        let mut all = Categories::new();
        for i in 0..spif.categories.len() {
            let c = spif.category_ref(i);
            all.insert(c.clone());
            let one = Label {
                policy: oid.clone(),
                classification: class,
                categories: Categories::from([c]),
                privacy_mark: None,
            };
            let b = s.to_ber(&one).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(s.parse_label(&b).unwrap(), one, "{f}");
            total += 1;
        }
        let every = Label {
            policy: oid,
            classification: Lacv(class.0),
            categories: all,
            privacy_mark: Some("ALL".into()),
        };
        let b = s.to_ber(&every).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(s.parse_label(&b).unwrap(), every, "{f}: all categories");
    }
    assert!(total > 400, "{total} categories in these policies");
}
