use serde_json::json;

use super::*;

fn r(server: &str, media: &str, encrypted: bool, place: RefPlace) -> MxcRef {
    MxcRef {
        server_name: server.into(),
        media_id: media.into(),
        encrypted,
        place,
    }
}

#[test]
fn parse_mxc_accepts_valid_uris() {
    assert_eq!(
        parse_mxc("mxc://hs1.example.org/AbC_-09"),
        Some(("hs1.example.org".into(), "AbC_-09".into()))
    );
    assert_eq!(
        parse_mxc("mxc://127.0.0.1:8448/x"),
        Some(("127.0.0.1:8448".into(), "x".into()))
    );
    assert_eq!(
        parse_mxc("mxc://[::1]:8448/x"),
        Some(("[::1]:8448".into(), "x".into()))
    );
    assert!(parse_mxc(&format!("mxc://a.b/{}", "m".repeat(255))).is_some());
}

#[test]
fn parse_mxc_refuses_everything_else() {
    for bad in [
        "",
        "mxc://",
        "mxc:///abc",
        "mxc://hs1/",
        "mxc://hs1",
        "MXC://hs1/abc",
        "https://hs1/abc",
        "mxc://hs1/ab/c",
        "mxc://hs1/ab.c",
        "mxc://hs1/ab?c",
        "mxc://hs1/ab#c",
        "mxc://hs1/ab%20c",
        "mxc://hs 1/abc",
        "mxc://hs1:99999/abc",
        "mxc://hs1:/abc",
        "mxc://user@hs1/abc",
        "mxc://[::1/abc",
        " mxc://hs1/abc",
        "mxc://hs1/abc\n",
    ] {
        assert_eq!(parse_mxc(bad), None, "{bad:?}");
    }
    assert_eq!(parse_mxc(&format!("mxc://a.b/{}", "m".repeat(256))), None);
}

#[test]
fn image_message_with_thumbnail() {
    let ev = json!({
        "type": "m.room.message",
        "content": {
            "msgtype": "m.image", "body": "cat.png",
            "url": "mxc://hs1/full",
            "info": {"mimetype": "image/png", "thumbnail_url": "mxc://hs1/thumb"}
        }
    });
    assert_eq!(
        refs_in_event(&ev),
        [
            r("hs1", "full", false, RefPlace::Url),
            r("hs1", "thumb", false, RefPlace::ThumbnailUrl)
        ]
    );
}

#[test]
fn encrypted_attachment_and_thumbnail_file() {
    let file = |u: &str| json!({"url": u, "key": {"k": "x"}, "iv": "y", "hashes": {"sha256": "z"}, "v": "v2"});
    let ev = json!({
        "type": "m.room.message",
        "content": {
            "msgtype": "m.file", "body": "a.pdf",
            "file": file("mxc://hs2/enc"),
            "info": {"thumbnail_file": file("mxc://hs2/encthumb")}
        }
    });
    assert_eq!(
        refs_in_event(&ev),
        [
            r("hs2", "enc", true, RefPlace::File),
            r("hs2", "encthumb", true, RefPlace::ThumbnailFile)
        ]
    );
}

#[test]
fn edits_stickers_avatars_members() {
    let edit = json!({
        "type": "m.room.message",
        "content": {
            "msgtype": "m.image", "body": "* new", "url": "mxc://hs1/old",
            "m.new_content": {"msgtype": "m.image", "body": "new", "url": "mxc://hs1/new",
                              "info": {"thumbnail_url": "mxc://hs1/newthumb"}},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}
        }
    });
    assert_eq!(
        refs_in_event(&edit),
        [
            r("hs1", "old", false, RefPlace::Url),
            r("hs1", "new", false, RefPlace::Url),
            r("hs1", "newthumb", false, RefPlace::ThumbnailUrl)
        ]
    );
    let sticker = json!({"type": "m.sticker", "content": {"body": "s", "url": "mxc://hs3/st",
        "info": {"thumbnail_url": "mxc://hs3/st"}}});
    assert_eq!(
        refs_in_event(&sticker),
        [
            r("hs3", "st", false, RefPlace::Url),
            r("hs3", "st", false, RefPlace::ThumbnailUrl)
        ]
    );
    let avatar = json!({"type": "m.room.avatar", "state_key": "",
        "content": {"url": "mxc://hs1/av", "info": {"thumbnail_url": "mxc://hs1/avt"}}});
    assert_eq!(refs_in_event(&avatar).len(), 2);
    let member = json!({"type": "m.room.member", "state_key": "@a:hs1",
        "content": {"membership": "join", "avatar_url": "mxc://hs1/me", "displayname": "A"}});
    assert_eq!(
        refs_in_event(&member),
        [r("hs1", "me", false, RefPlace::Url)]
    );
}

#[test]
fn extensible_event_shapes() {
    let ev = json!({
        "type": "m.image",
        "content": {
            "m.text": [{"body": "cat"}],
            "m.file": {"url": "mxc://hs1/ext", "name": "cat.png", "mimetype": "image/png"},
            "m.image": {"width": 10, "height": 10},
            "m.thumbnail": [{"url": "mxc://hs1/t1", "mimetype": "image/png"},
                            {"url": "mxc://hs1/t2", "key": {}, "iv": "i"}]
        }
    });
    assert_eq!(
        refs_in_event(&ev),
        [
            r("hs1", "ext", false, RefPlace::Url),
            r("hs1", "t1", false, RefPlace::ThumbnailUrl),
            r("hs1", "t2", true, RefPlace::ThumbnailFile)
        ]
    );
    let enc = json!({"type": "m.file", "content": {"m.file": {"url": "mxc://hs1/e", "key": {}, "iv": "i", "hashes": {}}}});
    assert_eq!(refs_in_event(&enc), [r("hs1", "e", true, RefPlace::File)]);
}

#[test]
fn absent_null_and_empty_are_no_reference() {
    for ev in [
        json!({"type": "m.room.member", "content": {"membership": "join", "avatar_url": null}}),
        json!({"type": "m.room.member", "content": {"membership": "join", "avatar_url": ""}}),
        json!({"type": "m.room.message", "content": {"body": "hi", "msgtype": "m.text"}}),
        json!({"type": "m.room.message"}),
        json!({"type": "m.room.message", "content": "not an object"}),
        json!({"type": "m.room.message", "content": {}, "unsigned": {"url": "mxc://hs1/x"}}),
    ] {
        let (refs, invalid) = refs_in_event_checked(&ev);
        assert!(refs.is_empty() && invalid.is_empty(), "{ev}");
    }
}

#[test]
fn invalid_values_are_reported_by_path_not_value() {
    let ev = json!({
        "type": "m.room.message",
        "content": {
            "url": "https://evil.example/x.exe",
            "info": {"thumbnail_url": 7, "thumbnail_file": {"key": {}}},
            "file": "mxc://hs1/notanobject",
            "m.new_content": {"url": "mxc://bad server/x", "avatar_url": "mxc://hs1/ok"},
            "m.thumbnail": {"url": "mxc://hs1/t"}
        }
    });
    let (refs, invalid) = refs_in_event_checked(&ev);
    assert_eq!(refs, [r("hs1", "ok", false, RefPlace::Url)]);
    let paths: Vec<&str> = invalid.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "content.url",
            "content.file",
            "content.info.thumbnail_url",
            "content.info.thumbnail_file.url",
            "content.m.thumbnail",
            "content.m.new_content.url",
        ]
    );
    assert_eq!(invalid[0].place, RefPlace::Url);
    assert_eq!(invalid[3].place, RefPlace::ThumbnailFile);
    for i in &invalid {
        assert!(!i.path.contains("evil") && !i.path.contains("mxc"));
    }
}
