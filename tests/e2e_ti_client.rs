//! End-to-end: the TI profile's client-server listener (`proxy::client_api`) in front of a real
//! Synapse (hs1 of `grenzwacht lab`), with a federation list signed by a test PKI.
//!
//! - a public room created through the listener has `m.federate: false` in Synapse's create
//!   event; a private one federates;
//! - alice invites carol (block all, alice excepted) through the listener: Synapse has the
//!   invite; dave (block all) is refused and Synapse never hears of it; a `createRoom` with two
//!   invitees is refused;
//! - publishing the federating room in the directory is refused, the public one is published.
#[path = "common/lab.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use grenzwacht::lab::client::MatrixClient;
use serde_json::{json, Value};

const PRO: &str = "de.gematik.tim.account.permissionconfig.pro.v1";

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_listener_in_front_of_real_synapse() {
    let lab = common::e2e_lab("ti-client", false).await;
    let hs1 = lab.info.hs1().clone();
    let direct = MatrixClient::new(&hs1.client_url);
    let secret = &hs1.registration_shared_secret;
    let admin = direct
        .register_shared_secret(secret, "ti-admin", "pw-admin", true)
        .await
        .unwrap();
    let carol = direct
        .register_shared_secret(secret, "carol", "pw-carol", false)
        .await
        .unwrap();
    let dave = direct
        .register_shared_secret(secret, "dave", "pw-dave", false)
        .await
        .unwrap();
    let alice = &lab.alice;
    for (who, cfg) in [
        (
            &carol,
            json!({"defaultSetting": "block all", "userExceptions": {alice.user_id.clone(): {}}}),
        ),
        (&dave, json!({"defaultSetting": "block all"})),
    ] {
        direct
            .call(
                "PUT",
                &format!(
                    "/_matrix/client/v3/user/{}/account_data/{PRO}",
                    encode(&who.user_id)
                ),
                Some(&who.access_token),
                Some(&cfg),
            )
            .await
            .unwrap();
    }

    // The guard: [ti] with hs1's client listener, a list naming the lab's host.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(86_400);
    let tpki = grenzwacht::ti::testpki::TestPki::generate(now - day, now + day);
    tpki.write_files(d).unwrap();
    let payload = grenzwacht::ti::testpki::TestPki::payload(1, &[("127.0.0.1", false)]);
    std::fs::write(d.join("list.jws"), tpki.sign_list(&payload)).unwrap();
    std::fs::write(d.join("admin.token"), &admin.access_token).unwrap();
    let ca = grenzwacht::proxy::ca::Ca::generate("e2e ti-client CA").unwrap();
    let (cert, key) = ca
        .issue_pem(&["127.0.0.1".to_string()], Duration::from_secs(3600))
        .unwrap();
    std::fs::write(d.join("leaf.crt"), cert).unwrap();
    std::fs::write(d.join("leaf.key"), key).unwrap();
    std::fs::create_dir_all(d.join("state")).unwrap();
    let toml = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[[protected]]
server_name = "{sn}"
cert = "{d}/leaf.crt"
key = "{d}/leaf.key"
upstream = "{fed}"
[ti]
tsl_roots = "{d}/tsl_roots.json"
intermediates = ["{d}/intermediate.der"]
list_file = "{d}/list.jws"
state_dir = "{d}/state"
[[ti.homeserver]]
server_name = "{sn}"
admin_url = "{url}"
admin_token_file = "{d}/admin.token"
client_listen = "127.0.0.1:0"
client_upstream = "{url}"
"#,
        sn = hs1.server_name,
        d = d.display(),
        fed = hs1.federation_url,
        url = hs1.client_url,
    );
    std::fs::write(d.join("guard.toml"), toml).unwrap();
    let cfg = grenzwacht::config::Config::load(d.join("guard.toml")).unwrap();
    let guard = Arc::new(
        grenzwacht::proxy::Guard::from_config(
            &cfg,
            grenzwacht::store::Store::open_in_memory().unwrap(),
        )
        .unwrap(),
    );
    guard.ti().unwrap().keeper.refresh().await.unwrap();
    let listeners = grenzwacht::proxy::Listeners::bind(&cfg).await.unwrap();
    let addr = listeners.client[0].1.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(grenzwacht::proxy::serve(guard, listeners, async move {
        let _ = rx.await;
    }));
    let proxy = MatrixClient::new(&format!("http://{addr}"));
    let t = Some(alice.access_token.as_str());
    let raw = |method: &'static str, path: String, body: Value| {
        let proxy = proxy.clone();
        async move {
            proxy
                .raw(method, &path, t, Some(&body), Duration::from_secs(30))
                .await
                .unwrap()
        }
    };
    let create_event = |room: String| {
        let direct = direct.clone();
        let token = alice.access_token.clone();
        async move {
            direct
                .call(
                    "GET",
                    &format!(
                        "/_matrix/client/v3/rooms/{}/state/m.room.create",
                        encode(&room)
                    ),
                    Some(&token),
                    None,
                )
                .await
                .unwrap()
        }
    };

    // Public rooms do not federate; private ones do.
    let r = raw(
        "POST",
        "/_matrix/client/v3/createRoom".into(),
        json!({"preset": "public_chat", "name": "Lobby"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let public = r.json()["room_id"].as_str().unwrap().to_string();
    assert_eq!(
        create_event(public.clone()).await["m.federate"],
        json!(false)
    );
    let r = raw(
        "POST",
        "/_matrix/client/v3/createRoom".into(),
        json!({"preset": "private_chat"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let private = r.json()["room_id"].as_str().unwrap().to_string();
    assert_eq!(create_event(private.clone()).await.get("m.federate"), None);

    // Invites follow the invitee's permission config.
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", encode(&private));
    let r = raw("POST", invite.clone(), json!({"user_id": carol.user_id})).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let r = raw("POST", invite.clone(), json!({"user_id": dave.user_id})).await;
    assert_eq!(r.status, 403, "{:?}", r.json());
    assert_eq!(r.json()["errcode"], "M_FORBIDDEN");
    let r = raw(
        "POST",
        "/_matrix/client/v3/createRoom".into(),
        json!({"invite": [carol.user_id, dave.user_id]}),
    )
    .await;
    assert_eq!(r.status, 403);
    let carol_invites = carol.invited_rooms().await.unwrap();
    assert_eq!(carol_invites, std::slice::from_ref(&private));
    assert!(dave.invited_rooms().await.unwrap().is_empty());

    // Only the room that does not federate may be published.
    let r = raw(
        "PUT",
        format!(
            "/_matrix/client/v3/directory/list/room/{}",
            encode(&private)
        ),
        json!({"visibility": "public"}),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.json());
    let r = raw(
        "PUT",
        format!("/_matrix/client/v3/directory/list/room/{}", encode(&public)),
        json!({"visibility": "public"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());

    let _ = tx.send(());
    let _ = task.await;
}
