//! Response text outside events and user-data fields (`federation::response_text`): every
//! carrier a user fills with text of their choosing is judged, with the DLP engine and with
//! config rules, and a match refuses the whole response.
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{decide_response, Release, Rewrite, Units, Verdicts};
use crate::federation::catalog;
use crate::federation::response_text::response_texts;
use crate::federation::userdata::{self, fields_in};
use crate::policy::dlp::layer::DlpPolicy;
use crate::policy::dlp::RuleSet;
use crate::policy::{Direction, ExchangeCtx, Layers, Refusal, RefusalReason};

const DLP: &str = r#"
mode = "enforce"
[[rule]]
id = "t.geheim"
description = "marking"
severity = "high"
action = "redact"
keywords = ["GEHEIM"]
case_sensitive = true
confusables = true
[[rule]]
id = "t.card"
description = "card number"
severity = "high"
action = "redact"
regex = '(?-u:\b)[0-9]{16}(?-u:\b)'
validator = "luhn"
"#;

fn dlp() -> Layers {
    let set = RuleSet::from_sources(&[("t.toml", DLP)]).unwrap_or_else(|d| panic!("{d}"));
    Layers::new().with("dlp", Arc::new(DlpPolicy::new(set.engine())))
}

fn config(fields: &[&str]) -> Layers {
    super::tests::config_rules(fields)
}

/// Applies field removals, as the proxy's response rewriter does.
struct RemoveFields;
impl Rewrite<Release> for RemoveFields {
    fn rewrite(&self, mut rel: Release, v: &Verdicts) -> Result<Release, Refusal> {
        let paths: Vec<_> = v.remove_fields.iter().map(|f| &f.path).collect();
        rel.body = Bytes::from(userdata::remove_fields(&rel.body, &paths).unwrap());
        Ok(rel)
    }
}

/// The answer of hs1 to a request of hs2 (`endpoint` by id), as the guard releases it:
/// `Ok(body)` or the refusal.
fn answer(
    layers: &Layers,
    endpoint: &str,
    status: StatusCode,
    body: &str,
) -> Result<serde_json::Value, Refusal> {
    let endpoint = catalog::by_id(endpoint).unwrap();
    let ctx = ExchangeCtx {
        direction: Direction::Inbound,
        endpoint,
        peer: Some("hs2.test".into()),
        protected: "hs1.test".into(),
        txn_id: None,
    };
    let bytes = body.as_bytes();
    let user_fields = if status.is_success() {
        fields_in(endpoint, None, bytes).unwrap()
    } else {
        Vec::new()
    };
    let typed: Vec<_> = user_fields.iter().map(|f| &f.path).collect();
    let units = Units {
        response_texts: response_texts(endpoint, bytes, &typed).unwrap(),
        user_fields,
        ..Default::default()
    };
    let release = Release {
        status,
        headers: HeaderMap::new(),
        body: Bytes::copy_from_slice(bytes),
    };
    decide_response(layers, &ctx, &units, release, &RemoveFields)
        .map(|p| serde_json::from_slice(&p.into_inner().body).unwrap())
}

fn refused(r: Result<serde_json::Value, Refusal>) -> Refusal {
    let r = r.expect_err("the response must be refused");
    assert_eq!(
        (r.status.as_u16(), r.errcode, r.reason),
        (403, "M_FORBIDDEN", RefusalReason::ResponseText),
        "{r}"
    );
    assert!(!r.message.contains("GEHEIM"), "no payload in refusals: {r}");
    r
}

const OK: StatusCode = StatusCode::OK;

#[test]
fn key_material_in_claim_and_query_answers_is_judged() {
    for layers in [dlp(), config(&[]), config(&["response.body"])] {
        let clean = r#"{"one_time_keys":{"@a:hs1.test":{"DEV":{"signed_curve25519:AAAAAA":
            {"key":"zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs","signatures":{"@a:hs1.test":
            {"ed25519:DEV":"FLWxXqGbwrb8SM3Y795eB6OA8bwBcoMZFXBqnTn58AYWZSqiD45tlBVcDa2L7RwdKXebW/VzDlnfVJ+9jok1Bw"}}}}}}}"#;
        assert!(answer(&layers, "user_keys_claim", OK, clean).is_ok());
        // In the key id, in the key, escaped, in look-alike letters.
        for marked in [
            r#"{"one_time_keys":{"@a:hs1.test":{"DEV":{"signed_curve25519:GEHEIM":{"key":"k"}}}}}"#,
            r#"{"one_time_keys":{"@a:hs1.test":{"DEV":{"signed_curve25519:A":{"key":"Einstufung GEHEIM"}}}}}"#,
            r#"{"one_time_keys":{"@a:hs1.test":{"DEV":{"signed_curve25519:A":{"key":"\u0047EHEIM"}}}}}"#,
        ] {
            refused(answer(&layers, "user_keys_claim", OK, marked));
        }
        let query = r#"{"device_keys":{"@a:hs1.test":{"DEV":{"user_id":"@a:hs1.test","device_id":"DEV",
            "algorithms":["m.olm.v1.curve25519-aes-sha2","Einstufung GEHEIM"],"keys":{}}}}}"#;
        refused(answer(&layers, "user_keys_query", OK, query));
    }
    // Look-alike letters (Cyrillic Е) are read by the DLP engine's views.
    let cyrillic = r#"{"one_time_keys":{"@a:hs1.test":{"DEV":{"signed_curve25519:A":{"key":"G\u0415HEIM"}}}}}"#;
    refused(answer(&dlp(), "user_keys_claim", OK, cyrillic));
}

#[test]
fn profile_avatars_custom_fields_and_numbers_are_judged() {
    for layers in [dlp(), config(&[])] {
        // A marked avatar is removed like a marked display name; the rest crosses.
        let got = answer(
            &layers,
            "query_profile",
            OK,
            r#"{"displayname":"Alice","avatar_url":"mxc://hs1.test/GEHEIM"}"#,
        )
        .unwrap();
        assert_eq!(got, serde_json::json!({"displayname": "Alice"}));
        // A custom field whose value is an object: its strings are read unescaped.
        let got = answer(
            &layers,
            "query_profile",
            OK,
            r#"{"displayname":"Alice","org.example.note":{"t":"GEH\u0045IM"}}"#,
        )
        .unwrap();
        assert_eq!(got, serde_json::json!({"displayname": "Alice"}));
        // A custom field's name (its value null): the name is the text.
        refused(answer(
            &layers,
            "query_profile",
            OK,
            r#"{"displayname":"Alice","org.example.GEHEIM_0600":null}"#,
        ));
    }
    // A number is text too (a card number that passes the Luhn check): a profile field
    // holding one is removed, one elsewhere refuses the answer.
    let got = answer(
        &dlp(),
        "query_profile",
        OK,
        r#"{"displayname":"Alice","n":4111111111111111}"#,
    )
    .unwrap();
    assert_eq!(got, serde_json::json!({"displayname": "Alice"}));
    refused(answer(
        &dlp(),
        "user_keys_claim",
        OK,
        r#"{"one_time_keys":{},"n":4111111111111111}"#,
    ));
    assert!(answer(
        &dlp(),
        "user_keys_claim",
        OK,
        r#"{"one_time_keys":{},"n":4111111111111112}"#
    )
    .is_ok());
}

#[test]
fn directory_entries_and_error_messages_are_judged() {
    for layers in [dlp(), config(&[])] {
        let entry = |extra: &str| {
            format!(
                r#"{{"chunk":[{{"room_id":"!r:hs1.test","name":"Lobby","num_joined_members":3,
                "world_readable":false,"guest_can_join":false{extra}}}],"total_room_count_estimate":1}}"#
            )
        };
        assert!(answer(&layers, "public_rooms_get", OK, &entry("")).is_ok());
        // The avatar of an entry is a field: removed alone.
        let got = answer(
            &layers,
            "public_rooms_get",
            OK,
            &entry(r#","avatar_url":"mxc://hs1.test/GEHEIM""#),
        )
        .unwrap();
        assert!(got["chunk"][0].get("avatar_url").is_none(), "{got}");
        assert_eq!(got["chunk"][0]["name"], "Lobby");
        // A room type (free text at room creation) refuses the answer.
        refused(answer(
            &layers,
            "public_rooms_get",
            OK,
            &entry(r#","room_type":"GEHEIM""#),
        ));
        // Error answers are read too.
        refused(answer(
            &layers,
            "query_profile",
            StatusCode::NOT_FOUND,
            r#"{"errcode":"M_NOT_FOUND","error":"Profile GEHEIM not found"}"#,
        ));
        assert!(answer(
            &layers,
            "query_profile",
            StatusCode::NOT_FOUND,
            r#"{"errcode":"M_NOT_FOUND","error":"Profile was not found"}"#,
        )
        .is_ok());
    }
}

#[test]
fn config_rules_filter_on_response_body() {
    let marked =
        r#"{"one_time_keys":{"@a:hs1.test":{"DEV":{"signed_curve25519:GEHEIM":{"key":"k"}}}}}"#;
    refused(answer(
        &config(&["response.body"]),
        "user_keys_claim",
        OK,
        marked,
    ));
    // A rule limited to other fields does not judge response text.
    assert!(answer(&config(&["request.body"]), "user_keys_claim", OK, marked).is_ok());
}
