//! The TI-Messenger profile's layer for EDUs (`crate::ti`): an EDU that names a Matrix user of
//! a server that is neither protected nor on the current federation list is dropped (rule
//! `ti:not_listed`; without a current list every EDU naming another server is dropped,
//! `ti:list_stale`).
//!
//! Events are judged before the policy (`proxy::ti_gate::screen`, which can refetch the list
//! and read invite permissions); EDUs are small and many, so they are judged here against the
//! list as it is, without a refetch. Every string of the EDU's content, and every object key,
//! that is a whole Matrix user ID counts (typing and presence `user_id`, receipt and
//! to-device keys, device list and signing key updates).
use std::sync::Arc;

use serde_json::Value;

use super::{Decision, EduVerdict, ExchangeCtx, PduVerdict, Policy};
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::ti::Ti;

/// See the module documentation.
pub struct TiEduPolicy {
    ti: Arc<Ti>,
}

impl TiEduPolicy {
    pub fn new(ti: Arc<Ti>) -> TiEduPolicy {
        TiEduPolicy { ti }
    }

    fn judge(&self, content: &Value) -> EduVerdict {
        let mut servers = Vec::new();
        user_servers(content, &mut servers);
        servers.retain(|s| !self.ti.is_own(s));
        if servers.is_empty() {
            return EduVerdict::Allow;
        }
        let Some(list) = self.ti.keeper.current() else {
            return EduVerdict::Drop {
                rule: "ti:list_stale".into(),
            };
        };
        match servers.iter().find(|s| list.lookup(s).is_none()) {
            Some(_) => EduVerdict::Drop {
                rule: "ti:not_listed".into(),
            },
            None => EduVerdict::Allow,
        }
    }
}

/// The server name of a whole Matrix user ID (`@local:server`).
fn user_server(s: &str) -> Option<&str> {
    use crate::federation::server_name::{split_user_id, ServerName};
    let (_, server) = split_user_id(s)?;
    ServerName::parse(server).ok()?;
    Some(server)
}

/// Every user ID's server name in `v` (strings and object keys, at any depth).
fn user_servers(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.extend(user_server(s).map(str::to_owned)),
        Value::Array(a) => a.iter().for_each(|x| user_servers(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                out.extend(user_server(k).map(str::to_owned));
                user_servers(x, out);
            }
        }
        _ => {}
    }
}

impl Policy for TiEduPolicy {
    fn request(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn pdu(&self, _ctx: &ExchangeCtx, _pdu: &PduView<'_>) -> PduVerdict {
        PduVerdict::Allow
    }
    fn event(&self, _ctx: &ExchangeCtx, _event: &EventView<'_>) -> PduVerdict {
        PduVerdict::Allow
    }
    fn edu(&self, _ctx: &ExchangeCtx, edu: &EduView<'_>) -> EduVerdict {
        match serde_json::from_str::<Value>(edu.content.get()) {
            Ok(content) => self.judge(&content),
            // Strict JSON was checked before; anything else is not judged here.
            Err(_) => EduVerdict::Drop {
                rule: "ti:unreadable".into(),
            },
        }
    }
    fn response(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ti::testpki::TestPki;
    use serde_json::json;

    #[tokio::test]
    async fn edus_naming_servers_off_the_list_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86_400);
        let pki = TestPki::generate(now - day, now + day);
        let files = pki.write_files(dir.path()).unwrap();
        let list = dir.path().join("list.jws");
        std::fs::write(
            &list,
            pki.sign_list(&TestPki::payload(1, &[("listed.example", false)])),
        )
        .unwrap();
        let cfg = crate::config::ti::TiConfig {
            tsl_roots: files.tsl_roots,
            intermediates: vec![files.intermediate],
            list_file: Some(list),
            state_dir: dir.path().join("state"),
            ..Default::default()
        };
        let ti = Arc::new(Ti::from_config(&cfg, vec!["own.example:8448".into()]).unwrap());
        let p = TiEduPolicy::new(ti.clone());
        let drop = |rule: &str| EduVerdict::Drop { rule: rule.into() };
        // No list yet: only the own server's users pass.
        assert_eq!(
            p.judge(&json!({"user_id": "@a:own.example"})),
            EduVerdict::Allow
        );
        assert_eq!(
            p.judge(&json!({"user_id": "@a:listed.example"})),
            drop("ti:list_stale")
        );
        ti.keeper.refresh().await.expect("list installed");
        for ok in [
            json!({"user_id": "@a:LISTED.example:8448", "typing": true}),
            json!({"push": [{"user_id": "@a:own.example"}]}),
            json!({"sender": "@a:listed.example", "messages": {"@b:own.example": {"D": {}}}}),
        ] {
            assert_eq!(p.judge(&ok), EduVerdict::Allow, "{ok}");
        }
        for bad in [
            json!({"user_id": "@a:evil.example"}),
            json!({"!r:listed.example": {"m.read": {"@x:evil.example": {"event_ids": []}}}}),
            json!({"sender": "@a:listed.example", "messages": {"@b:listed.example.evil": {}}}),
        ] {
            assert_eq!(p.judge(&bad), drop("ti:not_listed"), "{bad}");
        }
    }

    #[test]
    fn every_user_id_in_strings_and_keys_is_found() {
        let v = serde_json::json!({
            "!room:a.example": {"m.read": {"@x:b.example:8448": {"event_ids": ["$e"]}}},
            "push": [{"user_id": "@y:c.example", "status_msg": "not @a user id"}],
            "user_id": "@z:D.example",
            "text": "@:empty.example",
        });
        let mut out = Vec::new();
        user_servers(&v, &mut out);
        out.sort();
        assert_eq!(out, vec!["D.example", "b.example:8448", "c.example"]);
    }
}
