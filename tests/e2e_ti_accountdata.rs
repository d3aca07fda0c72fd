//! End-to-end: the TI profile's permission config reader (`ti::accountdata`) against real
//! Synapse (hs1 of `grenzwacht lab`).
//!
//! - alice@hs1 stores her permission config as account data through the client API; the
//!   reader, with an admin's token, reads it back through the admin API (her user ID
//!   `@alice:127.0.0.1:PORT` percent-encoded in the path);
//! - a user without a config → none; the ePA variant's type is not the Pro one → none;
//! - a non-admin token → an error (fail closed).
#[path = "common/lab.rs"]
mod common;

use grenzwacht::config::ti::{TiConfig, TiHomeserver, TiVariant};
use grenzwacht::lab::client::MatrixClient;
use grenzwacht::ti::accountdata::AccountDataReader;
use grenzwacht::ti::permissions::{normalize_mxid, DefaultSetting};
use serde_json::json;

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

fn config(
    dir: &std::path::Path,
    hs: &grenzwacht::lab::HomeserverInfo,
    name: &str,
    token: &str,
) -> TiConfig {
    let file = dir.join(format!("{name}.token"));
    std::fs::write(&file, token).unwrap();
    TiConfig {
        homeserver: vec![TiHomeserver {
            server_name: hs.server_name.clone(),
            admin_url: hs.client_url.clone(),
            admin_token_file: file,
            client_listen: None,
            client_upstream: None,
            client_tls_cert: None,
            client_tls_key: None,
        }],
        ..TiConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_reads_permission_configs_from_real_synapse() {
    let lab = common::e2e_lab("ti-accountdata", false).await;
    let hs1 = lab.info.hs1().clone();
    let client = MatrixClient::new(&hs1.client_url);
    let admin = client
        .register_shared_secret(
            &hs1.registration_shared_secret,
            "ti-admin",
            "pw-admin",
            true,
        )
        .await
        .expect("admin user");
    let carol = client
        .register_shared_secret(&hs1.registration_shared_secret, "carol", "pw-carol", false)
        .await
        .expect("carol");
    let alice = &lab.alice;
    let bob = &lab.bob;
    let content = json!({
        "defaultSetting": "block all",
        "userExceptions": { bob.user_id.clone(): {} },
        "serverExceptions": { "hs3.example.de": {} }
    });
    client
        .call(
            "PUT",
            &format!(
                "/_matrix/client/v3/user/{}/account_data/{PRO}",
                encode(&alice.user_id)
            ),
            Some(&alice.access_token),
            Some(&content),
        )
        .await
        .expect("alice stores her permission config");

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &hs1, "admin", &admin.access_token);
    let reader = AccountDataReader::new(&cfg).unwrap();
    let got = reader
        .permission_config(&alice.user_id)
        .await
        .expect("read through the admin API")
        .expect("alice has a config");
    assert_eq!(got.default_setting, DefaultSetting::BlockAll);
    assert!(
        got.user_exceptions
            .contains(&normalize_mxid(&bob.user_id).unwrap()),
        "{got:?}"
    );
    assert!(
        got.server_exceptions.iter().any(|s| s == "hs3.example.de"),
        "{got:?}"
    );
    assert_eq!(
        reader.permission_config(&carol.user_id).await.unwrap(),
        None
    );

    let epa = AccountDataReader::new(&TiConfig {
        variant: TiVariant::Epa,
        ..cfg.clone()
    })
    .unwrap();
    assert_eq!(epa.permission_config(&alice.user_id).await.unwrap(), None);

    // A user of hs2 is no [[ti.homeserver]]; a non-admin token is refused by Synapse.
    assert!(reader.permission_config(&bob.user_id).await.is_err());
    let weak =
        AccountDataReader::new(&config(dir.path(), &hs1, "carol", &carol.access_token)).unwrap();
    let e = weak.permission_config(&alice.user_id).await.unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    assert!(!e.to_string().contains(&carol.access_token));
}
