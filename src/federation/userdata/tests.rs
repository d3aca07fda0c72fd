//! Extraction and removal over response bodies shaped as Synapse 1.163 sends them.
use serde_json::{json, Value};

use super::*;
use crate::federation::catalog::by_id;
use crate::federation::redact::rebuild_parsed_edus;
use crate::federation::txn::{Transaction, TxnLimits};

fn ep(id: &str) -> &'static Endpoint {
    by_id(id).unwrap_or_else(|| panic!("no endpoint {id}"))
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// (kind, path, value) of every field found, by path (object members come in document or
/// key order depending on serde_json's `preserve_order`, which a dependency switches on).
fn found(
    endpoint: &str,
    query_type: Option<&str>,
    body: &[u8],
) -> Vec<(FieldKind, String, String)> {
    let mut out: Vec<_> = fields_in(ep(endpoint), query_type, body)
        .unwrap()
        .into_iter()
        .map(|f| (f.kind, f.path.to_string(), f.value.into_owned()))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// Removes every field whose value contains `GEHEIM` and returns the parsed result.
fn remove_marked(endpoint: &str, query_type: Option<&str>, body: &[u8]) -> Value {
    let fields = fields_in(ep(endpoint), query_type, body).unwrap();
    let paths: Vec<&FieldPath> = fields
        .iter()
        .filter(|f| f.value.contains("GEHEIM"))
        .map(|f| &f.path)
        .collect();
    assert!(!paths.is_empty(), "test body has a marked field");
    let out = remove_fields(body, &paths).unwrap();
    serde_json::from_slice(&out).expect("valid JSON after removal")
}

fn device_keys(user: &str, device: &str, name: Option<&str>) -> Value {
    let mut k = json!({
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "device_id": device,
        "keys": {format!("curve25519:{device}"): "lHqQ0jdoZEkmT4PD0b7PzWW6Vt9W8X9nC6Pt8MH0IGo", format!("ed25519:{device}"): "9a0pFAU5fdNrqHZeMLa7wBJlT0OmhsWVc7zAq5o2tNE"},
        "signatures": {user: {format!("ed25519:{device}"): "dSO80A01XiigH3uBiDVx/EjzaoycHcjq9lfQX0uWsqxl2giMIiSPR8a4d291W1ihKJL/a+myXS367WT6NAIcBA"}},
        "user_id": user,
    });
    if let Some(n) = name {
        k["unsigned"] = json!({"device_display_name": n});
    }
    k
}

#[test]
fn profile_fields_all_top_level_members_null_skipped() {
    let body = bytes(
        &json!({"displayname": "Carol \u{1F512} GEHEIM", "avatar_url": "mxc://hs1.test/AbCdEf", "m.tz": "Europe/Berlin", "org.example.card": {"org": "Referat GEHEIM"}}),
    );
    let f = found("query_profile", None, &body);
    assert_eq!(
        f,
        vec![
            (
                FieldKind::AvatarUrl,
                "/avatar_url".into(),
                "mxc://hs1.test/AbCdEf".into()
            ),
            (
                FieldKind::Displayname,
                "/displayname".into(),
                "Carol \u{1F512} GEHEIM".into()
            ),
            (
                FieldKind::ProfileField,
                "/m.tz".into(),
                "Europe/Berlin".into()
            ),
            (
                FieldKind::ProfileField,
                "/org.example.card".into(),
                "org\nReferat GEHEIM".into()
            ),
        ]
    );
    // Synapse answers `{"displayname": null}` for a user without one: no text, not judged.
    assert!(found(
        "query_profile",
        None,
        br#"{"displayname":null,"avatar_url":null}"#
    )
    .is_empty());
    // Escapes are judged unescaped (a rule cannot be dodged by escaping).
    let f = found("query_profile", None, br#"{"displayname":"\u0047EHEIM"}"#);
    assert_eq!(f[0].2, "GEHEIM");

    let out = remove_marked("query_profile", None, &body);
    assert_eq!(
        out,
        json!({"avatar_url": "mxc://hs1.test/AbCdEf", "m.tz": "Europe/Berlin"})
    );
}

#[test]
fn generic_query_follows_the_query_type() {
    let profile = br#"{"displayname":"GEHEIM"}"#;
    assert_eq!(found("query_generic", Some("profile"), profile).len(), 1);
    let keys = bytes(
        &json!({"device_keys": {"@a:hs1.test": {"DEV": device_keys("@a:hs1.test", "DEV", Some("GEHEIM"))}}}),
    );
    assert_eq!(found("query_generic", Some("client_keys"), &keys).len(), 1);
    // Alias resolution carries no user text; unknown query types neither.
    assert!(found(
        "query_generic",
        Some("directory"),
        br#"{"room_id":"!r:hs1.test","servers":["hs1.test"]}"#
    )
    .is_empty());
    assert!(found("query_generic", None, profile).is_empty());
    assert!(found(
        "query_directory",
        None,
        br#"{"room_id":"!r:hs1.test","servers":["hs1.test"]}"#
    )
    .is_empty());
}

#[test]
fn user_devices_names_removed_devices_kept() {
    let body = bytes(&json!({
        "user_id": "@alice:hs1.test",
        "stream_id": 12,
        "devices": [
            {"device_id": "PHONE", "keys": device_keys("@alice:hs1.test", "PHONE", None), "device_display_name": "Alices GEHEIM-Handy"},
            {"device_id": "LAPTOP", "keys": device_keys("@alice:hs1.test", "LAPTOP", Some("GEHEIM laptop")), "device_display_name": "Laptop"},
            {"device_id": "NONAME"}
        ],
        "master_key": {"user_id": "@alice:hs1.test", "usage": ["master"], "keys": {"ed25519:bWFzdGVy": "bWFzdGVy"}},
        "self_signing_key": {"user_id": "@alice:hs1.test", "usage": ["self_signing"], "keys": {"ed25519:c2VsZg": "c2VsZg"}, "signatures": {"@alice:hs1.test": {"ed25519:bWFzdGVy": "c2ln"}}}
    }));
    let fields = fields_in(ep("user_devices"), None, &body).unwrap();
    let mut paths: Vec<String> = fields.iter().map(|f| f.path.to_string()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/devices/0/device_display_name",
            "/devices/1/device_display_name",
            "/devices/1/keys/unsigned/device_display_name"
        ]
    );
    assert!(fields.iter().all(|f| f.kind == FieldKind::DeviceDisplayName
        && f.user_id.as_deref() == Some("@alice:hs1.test")));
    assert_eq!(fields[1].device_id.as_deref(), Some("LAPTOP"));

    let original: Value = serde_json::from_slice(&body).unwrap();
    let out = remove_marked("user_devices", None, &body);
    let devices = out["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3, "no device removed");
    assert!(devices[0].get("device_display_name").is_none());
    assert_eq!(devices[0]["keys"], original["devices"][0]["keys"]);
    assert_eq!(
        devices[1]["device_display_name"], "Laptop",
        "clean name kept"
    );
    assert_eq!(
        devices[1]["keys"]["unsigned"],
        json!({}),
        "only the marked key is removed"
    );
    assert_eq!(
        devices[1]["keys"]["signatures"],
        original["devices"][1]["keys"]["signatures"]
    );
    assert_eq!(out["master_key"], original["master_key"]);
    assert_eq!(out["self_signing_key"], original["self_signing_key"]);
    assert!(!serde_json::to_string(&out).unwrap().contains("GEHEIM"));
}

#[test]
fn keys_query_unsigned_display_names() {
    let body = bytes(&json!({
        "device_keys": {
            "@alice:hs1.test": {"PHONE": device_keys("@alice:hs1.test", "PHONE", Some("GEHEIM phone")), "TABLET": device_keys("@alice:hs1.test", "TABLET", Some("Tablet"))},
            "@bob:hs1.test": {"BOBDEV": device_keys("@bob:hs1.test", "BOBDEV", None)}
        },
        "master_keys": {"@alice:hs1.test": {"user_id": "@alice:hs1.test", "usage": ["master"], "keys": {"ed25519:bQ": "bQ"}}},
        "self_signing_keys": {}
    }));
    let fields = fields_in(ep("user_keys_query"), None, &body).unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(
        fields[0].path.to_string(),
        "/device_keys/@alice:hs1.test/PHONE/unsigned/device_display_name"
    );
    assert_eq!(
        (fields[0].user_id.as_deref(), fields[0].device_id.as_deref()),
        (Some("@alice:hs1.test"), Some("PHONE"))
    );
    let original: Value = serde_json::from_slice(&body).unwrap();
    let out = remove_marked("user_keys_query", None, &body);
    let phone = &out["device_keys"]["@alice:hs1.test"]["PHONE"];
    assert_eq!(phone["unsigned"], json!({}));
    // The signed part of the device keys is unchanged (signatures still verify).
    for k in ["algorithms", "device_id", "keys", "signatures", "user_id"] {
        assert_eq!(
            phone[k], original["device_keys"]["@alice:hs1.test"]["PHONE"][k],
            "{k}"
        );
    }
    assert_eq!(
        out["device_keys"]["@alice:hs1.test"]["TABLET"]["unsigned"]["device_display_name"],
        "Tablet"
    );
    assert_eq!(
        out["device_keys"]["@bob:hs1.test"],
        original["device_keys"]["@bob:hs1.test"]
    );
    // A user id with `/` or `~` in a key: the path still finds it (JSON pointer escaping is
    // only for display).
    let odd = bytes(
        &json!({"device_keys": {"@a/b~c:hs1.test": {"D": device_keys("@a/b~c:hs1.test", "D", Some("GEHEIM"))}}}),
    );
    let f = fields_in(ep("user_keys_query"), None, &odd).unwrap();
    assert_eq!(
        f[0].path.to_string(),
        "/device_keys/@a~1b~0c:hs1.test/D/unsigned/device_display_name"
    );
    let out = remove_marked("user_keys_query", None, &odd);
    assert_eq!(
        out["device_keys"]["@a/b~c:hs1.test"]["D"]["unsigned"],
        json!({})
    );
}

#[test]
fn public_rooms_fields_removed_rooms_kept() {
    let body = bytes(&json!({
        "chunk": [
            {"room_id": "!lage:hs1.test", "name": "Lagezentrum GEHEIM", "topic": "täglich 9 Uhr", "canonical_alias": "#lage:hs1.test",
             "num_joined_members": 4, "world_readable": false, "guest_can_join": false, "join_rule": "public", "avatar_url": "mxc://hs1.test/x"},
            {"room_id": "!kantine:hs1.test", "name": "Kantine", "topic": "Speiseplan: GEHEIM", "canonical_alias": "#GEHEIM-kantine:hs1.test",
             "aliases": ["#k:hs1.test", "#GEHEIM:hs1.test"], "num_joined_members": 12, "world_readable": true, "guest_can_join": false, "join_rule": "public"},
            {"room_id": "!leer:hs1.test", "num_joined_members": 1, "world_readable": false, "guest_can_join": false, "join_rule": "public"}
        ],
        "next_batch": "p190",
        "total_room_count_estimate": 3
    }));
    let f = found("public_rooms_get", None, &body);
    // chunk[0]: avatar_url, canonical_alias, name, topic; chunk[1]: aliases, canonical_alias,
    // name, topic.
    assert_eq!(f.len(), 8);
    assert_eq!(
        f[0],
        (
            FieldKind::AvatarUrl,
            "/chunk/0/avatar_url".into(),
            "mxc://hs1.test/x".into()
        )
    );
    assert_eq!(
        f[5],
        (
            FieldKind::RoomAlias,
            "/chunk/1/canonical_alias".into(),
            "#GEHEIM-kantine:hs1.test".into()
        )
    );
    // A list is read string by string (one per line).
    assert_eq!(
        f[4],
        (
            FieldKind::RoomAlias,
            "/chunk/1/aliases".into(),
            "#k:hs1.test\n#GEHEIM:hs1.test".into()
        )
    );
    let rooms = fields_in(ep("public_rooms_post"), None, &body).unwrap();
    assert_eq!(rooms[0].room_id.as_deref(), Some("!lage:hs1.test"));

    let out = remove_marked("public_rooms_post", None, &body);
    let chunk = out["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 3, "no room removed");
    assert!(chunk[0].get("name").is_none());
    assert_eq!(chunk[0]["topic"], "täglich 9 Uhr");
    assert_eq!(chunk[0]["canonical_alias"], "#lage:hs1.test");
    assert_eq!(chunk[0]["avatar_url"], "mxc://hs1.test/x");
    assert_eq!(chunk[1]["name"], "Kantine");
    for k in ["topic", "canonical_alias", "aliases"] {
        assert!(chunk[1].get(k).is_none(), "{k}");
    }
    assert_eq!(chunk[1]["room_id"], "!kantine:hs1.test");
    assert_eq!(chunk[1]["num_joined_members"], 12);
    assert_eq!(out["next_batch"], "p190");
    assert_eq!(out["total_room_count_estimate"], 3);
}

#[test]
fn hierarchy_summaries_judged_children_state_left_to_event_rules() {
    let body = bytes(&json!({
        "room": {"room_id": "!space:hs1.test", "name": "Stab", "topic": "Projekt GEHEIM", "canonical_alias": "#stab:hs1.test",
                 "num_joined_members": 2, "world_readable": false, "guest_can_join": false, "join_rule": "public", "room_type": "m.space",
                 "children_state": [{"type": "m.space.child", "state_key": "!child:hs1.test", "content": {"via": ["hs1.test"], "order": "GEHEIM"}, "sender": "@a:hs1.test", "origin_server_ts": 1}]},
        "children": [
            {"room_id": "!child:hs1.test", "name": "Unterraum GEHEIM", "num_joined_members": 1, "world_readable": false, "guest_can_join": false, "join_rule": "public", "children_state": []},
            {"room_id": "!child2:hs1.test", "name": "offen", "num_joined_members": 1, "world_readable": false, "guest_can_join": false, "join_rule": "public", "children_state": []}
        ],
        "inaccessible_children": ["!secret:hs1.test"]
    }));
    let f = found("hierarchy", None, &body);
    let paths: Vec<&str> = f.iter().map(|x| x.1.as_str()).collect();
    // Document order (`json!` sorts keys).
    assert_eq!(
        paths,
        [
            "/children/0/name",
            "/children/1/name",
            "/room/canonical_alias",
            "/room/name",
            "/room/topic"
        ]
    );
    let out = remove_marked("hierarchy", None, &body);
    assert!(out["room"].get("topic").is_none());
    assert_eq!(out["room"]["name"], "Stab");
    assert_eq!(
        out["room"]["children_state"][0]["content"]["order"], "GEHEIM",
        "events are not this module's business"
    );
    assert!(out["children"][0].get("name").is_none());
    assert_eq!(out["children"][0]["room_id"], "!child:hs1.test");
    assert_eq!(out["children"][1]["name"], "offen");
    assert_eq!(out["inaccessible_children"], json!(["!secret:hs1.test"]));
}

#[test]
fn unknown_shapes_are_errors_not_skipped() {
    for (id, body) in [
        ("public_rooms_get", r#"{"chunk":{"name":"GEHEIM"}}"#),
        ("public_rooms_get", r#"{"chunk":["GEHEIM"]}"#),
        (
            "user_devices",
            r#"{"user_id":"@a:b","devices":{"D":{"device_display_name":"GEHEIM"}}}"#,
        ),
        (
            "user_devices",
            r#"{"devices":[{"device_id":"D","keys":{"unsigned":"GEHEIM"}}]}"#,
        ),
        ("user_keys_query", r#"{"device_keys":{"@a:b":["GEHEIM"]}}"#),
        ("hierarchy", r#"{"room":"GEHEIM"}"#),
        ("query_profile", r#"["GEHEIM"]"#),
    ] {
        assert!(
            matches!(
                fields_in(ep(id), None, body.as_bytes()),
                Err(UserDataError::Shape { .. })
            ),
            "{id}: {body}"
        );
    }
    // Absent containers are fine (nothing to judge).
    assert!(found(
        "public_rooms_get",
        None,
        br#"{"total_room_count_estimate":0}"#
    )
    .is_empty());
    assert!(found("user_devices", None, br#"{"user_id":"@a:b","stream_id":0}"#).is_empty());
}

#[test]
fn removal_fails_closed_on_a_path_that_leads_nowhere() {
    let body = br#"{"chunk":[{"room_id":"!a:b","name":"x"}]}"#;
    let bad = [
        FieldPath(vec![
            PathSeg::Key("chunk".into()),
            PathSeg::Index(3),
            PathSeg::Key("name".into()),
        ]),
        FieldPath(vec![
            PathSeg::Key("chunk".into()),
            PathSeg::Index(0),
            PathSeg::Key("topic".into()),
        ]),
        FieldPath(vec![PathSeg::Key("chunk".into()), PathSeg::Index(0)]),
        FieldPath(vec![]),
    ];
    for p in &bad {
        assert!(
            matches!(
                remove_fields(body, &[p]),
                Err(UserDataError::NoSuchField(_))
            ),
            "{p}"
        );
    }
    // Removing the same field twice is an error too (the second finds nothing).
    let name = FieldPath(vec![
        PathSeg::Key("chunk".into()),
        PathSeg::Index(0),
        PathSeg::Key("name".into()),
    ]);
    assert!(remove_fields(body, &[&name, &name]).is_err());
    assert_eq!(
        serde_json::from_slice::<Value>(&remove_fields(body, &[&name]).unwrap()).unwrap(),
        json!({"chunk": [{"room_id": "!a:b"}]})
    );
}

// --- to-device ---------------------------------------------------------------------------

fn to_device_edu(messages: Value) -> Value {
    json!({"edu_type": "m.direct_to_device", "content": {
        "sender": "@alice:hs1.test", "type": "org.example.note", "message_id": "aBcDeF123", "messages": messages
    }})
}

fn two_device_messages() -> Value {
    json!({
        "@bob:hs2.test": {"BOBPHONE": {"text": "Treffpunkt GEHEIM"}, "BOBLAPTOP": {"text": "Treffpunkt 10 Uhr"}},
        "@carol:hs2.test": {"*": {"text": "an alle Geräte"}}
    })
}

#[test]
fn to_device_messages_one_per_recipient_device() {
    let edu = bytes(&to_device_edu(two_device_messages()));
    let raw: &RawValue = serde_json::from_slice(&edu).unwrap();
    let view = EduView::parse(raw).unwrap();
    let msgs = to_device_in(7, &view).unwrap();
    let mut got: Vec<(usize, &str, &str, &str)> = msgs
        .iter()
        .map(|m| {
            (
                m.edu,
                m.user_id.as_str(),
                m.device_id.as_str(),
                m.content.get(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                7,
                "@bob:hs2.test",
                "BOBLAPTOP",
                r#"{"text":"Treffpunkt 10 Uhr"}"#
            ),
            (
                7,
                "@bob:hs2.test",
                "BOBPHONE",
                r#"{"text":"Treffpunkt GEHEIM"}"#
            ),
            (7, "@carol:hs2.test", "*", r#"{"text":"an alle Geräte"}"#),
        ]
    );
    assert_eq!(msgs[0].sender.as_deref(), Some("@alice:hs1.test"));
    assert_eq!(msgs[0].event_type.as_deref(), Some("org.example.note"));
    assert_eq!(msgs[0].message_id.as_deref(), Some("aBcDeF123"));

    // Other EDU types: none.
    let typing =
        br#"{"edu_type":"m.typing","content":{"room_id":"!r:x","user_id":"@a:x","typing":true}}"#;
    let raw: &RawValue = serde_json::from_slice(typing).unwrap();
    assert!(to_device_in(0, &EduView::parse(raw).unwrap())
        .unwrap()
        .is_empty());
    // Malformed `messages`: an error (the caller refuses), never skipped.
    for bad in [
        json!(["GEHEIM"]),
        json!({"@bob:hs2.test": ["GEHEIM"]}),
        json!({"@bob:hs2.test": "GEHEIM"}),
    ] {
        let edu = bytes(&to_device_edu(bad));
        let raw: &RawValue = serde_json::from_slice(&edu).unwrap();
        assert!(matches!(
            to_device_in(0, &EduView::parse(raw).unwrap()),
            Err(UserDataError::Shape { .. })
        ));
    }
}

#[test]
fn to_device_removal_per_device_then_user_then_edu() {
    let edu = bytes(&to_device_edu(two_device_messages()));
    let raw: &RawValue = serde_json::from_slice(&edu).unwrap();

    let one = without_messages(raw, &[("@bob:hs2.test", "BOBPHONE")])
        .unwrap()
        .unwrap();
    assert!(
        crate::federation::canonical::is_canonical(&one),
        "rebuilt EDU is canonical JSON"
    );
    let v: Value = serde_json::from_str(one.get()).unwrap();
    let mut expected = to_device_edu(two_device_messages());
    expected["content"]["messages"]["@bob:hs2.test"]
        .as_object_mut()
        .unwrap()
        .remove("BOBPHONE");
    assert_eq!(v, expected, "only that device's message is gone");

    let user_gone = without_messages(
        raw,
        &[
            ("@bob:hs2.test", "BOBPHONE"),
            ("@bob:hs2.test", "BOBLAPTOP"),
        ],
    )
    .unwrap()
    .unwrap();
    let v: Value = serde_json::from_str(user_gone.get()).unwrap();
    assert_eq!(
        v["content"]["messages"],
        json!({"@carol:hs2.test": {"*": {"text": "an alle Geräte"}}})
    );

    let all = [
        ("@bob:hs2.test", "BOBPHONE"),
        ("@bob:hs2.test", "BOBLAPTOP"),
        ("@carol:hs2.test", "*"),
    ];
    assert!(
        without_messages(raw, &all).unwrap().is_none(),
        "no messages left: drop the EDU"
    );

    assert_eq!(
        without_messages(raw, &[("@bob:hs2.test", "NOPE")]).unwrap_err(),
        UserDataError::NoSuchMessage
    );
    assert_eq!(
        without_messages(raw, &[("@dave:hs2.test", "X")]).unwrap_err(),
        UserDataError::NoSuchMessage
    );
    // A float cannot be rebuilt as canonical JSON: error, the caller refuses.
    let float = br#"{"edu_type":"m.direct_to_device","content":{"messages":{"@b:x":{"D":{"n":1.5},"E":{}}}}}"#;
    let raw: &RawValue = serde_json::from_slice(float).unwrap();
    assert_eq!(
        without_messages(raw, &[("@b:x", "E")]).unwrap_err(),
        UserDataError::NotCanonical
    );
}

#[test]
fn transaction_with_a_rewritten_to_device_edu_keeps_pdus_and_other_edus_byte_for_byte() {
    let pdu = r#"{"type":"m.room.message","room_id":"!r:hs1.test","sender":"@alice:hs1.test","content":{"body":"GEHEIM bleibt hier"},"depth":3}"#;
    let typing = r#"{"content":{"room_id":"!r:hs1.test","typing":true,"user_id":"@alice:hs1.test"},"edu_type":"m.typing"}"#;
    let td = serde_json::to_string(&to_device_edu(two_device_messages())).unwrap();
    let body = format!(
        r#"{{"origin":"hs1.test","origin_server_ts":5,"pdus":[{pdu}],"edus":[{typing},{td},{typing}]}}"#
    );
    let txn = Transaction::parse(body.as_bytes(), &TxnLimits::SPEC).unwrap();
    let rewritten = without_messages(txn.edus[1], &[("@bob:hs2.test", "BOBPHONE")])
        .unwrap()
        .unwrap();
    let out =
        rebuild_parsed_edus(body.as_bytes(), &txn, &[], &[(1, rewritten.clone())], &[]).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        format!(
            r#"{{"origin":"hs1.test","origin_server_ts":5,"pdus":[{pdu}],"edus":[{typing},{},{typing}]}}"#,
            rewritten.get()
        )
    );
    // Replace one, drop another.
    let out =
        rebuild_parsed_edus(body.as_bytes(), &txn, &[], &[(1, rewritten.clone())], &[2]).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["edus"].as_array().unwrap().len(), 2);
    assert_eq!(v["pdus"][0]["content"]["body"], "GEHEIM bleibt hier");
    // The same index both replaced and dropped, or out of range: refused.
    assert!(
        rebuild_parsed_edus(body.as_bytes(), &txn, &[], &[(1, rewritten.clone())], &[1]).is_err()
    );
    assert!(rebuild_parsed_edus(body.as_bytes(), &txn, &[], &[(3, rewritten)], &[]).is_err());
}
