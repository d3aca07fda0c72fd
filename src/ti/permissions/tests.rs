use serde_json::json;

use super::*;

const ALICE: &str = "@alice:hs1.example";
const INS: &str = "kasse.example"; // an insurance domain in these tests

fn insurance(server: &str) -> bool {
    domain_of(server) == INS
}

fn cfg(v: serde_json::Value) -> PermissionConfig {
    PermissionConfig::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn pro(c: Option<&PermissionConfig>, inviter: &str) -> Result<(), TiDenial> {
    decide_with(TiVariant::Pro, c, inviter, ALICE, insurance)
}

fn allowed(c: &PermissionConfig, inviter: &str) -> bool {
    pro(Some(c), inviter).is_ok()
}

#[test]
fn parse_reads_every_field_and_ignores_unknown_keys() {
    let c = cfg(json!({
        "defaultSetting": "block all",
        "serverExceptions": {"HS2.example:8448": {}, "hs3.example": {"future": 1}},
        "userExceptions": {"@bob:HS4.example": {}, "not-an-mxid": {}},
        "groupExceptions": [{"groupName": "isInsuredPerson"}, {"groupName": "unknownGroup"}, 7],
        "somethingNew": [1, 2, 3]
    }));
    assert_eq!(c.default_setting, DefaultSetting::BlockAll);
    let mut s: Vec<_> = c.server_exceptions.iter().cloned().collect();
    s.sort();
    assert_eq!(
        s,
        [domain_of("hs2.example:8448"), "hs3.example".to_string()]
    );
    let u: Vec<_> = c.user_exceptions.iter().cloned().collect();
    assert_eq!(u, ["@bob:hs4.example".to_string()]);
    assert_eq!(
        c.group_exceptions.iter().copied().collect::<Vec<_>>(),
        [Group::InsuredPerson]
    );
}

#[test]
fn parse_defaults_and_refusals() {
    // Missing or null defaultSetting: allow all (the reference implementations' reading).
    assert_eq!(cfg(json!({})), PermissionConfig::default());
    assert_eq!(
        cfg(json!({"defaultSetting": null})).default_setting,
        DefaultSetting::AllowAll
    );
    assert_eq!(
        cfg(json!({"defaultSetting": "allow all"})).default_setting,
        DefaultSetting::AllowAll
    );
    // Anything else is an error: the caller fails closed.
    for bad in [
        json!({"defaultSetting": "Block All"}),
        json!({"defaultSetting": "block"}),
        json!({"defaultSetting": true}),
        json!({"defaultSetting": "allow all", "serverExceptions": ["hs2.example"]}),
        json!({"defaultSetting": "allow all", "userExceptions": "@bob:hs2.example"}),
        json!({"defaultSetting": "block all", "groupExceptions": {"groupName": "isInsuredPerson"}}),
        json!([]),
        json!("allow all"),
    ] {
        assert!(PermissionConfig::parse(&bad).is_err(), "{bad} parsed");
    }
}

#[test]
fn no_config_allows_all() {
    assert_eq!(pro(None, "@bob:hs2.example"), Ok(()));
    assert_eq!(pro(None, "@carl:kasse.example"), Ok(()));
}

#[test]
fn default_settings_without_exceptions() {
    let allow = cfg(json!({"defaultSetting": "allow all"}));
    let block = cfg(json!({"defaultSetting": "block all"}));
    assert!(allowed(&allow, "@bob:hs2.example"));
    assert_eq!(
        pro(Some(&block), "@bob:hs2.example"),
        Err(TiDenial::InviteRefused {
            inviter: "@bob:hs2.example".into(),
            invitee: ALICE.into()
        })
    );
}

#[test]
fn user_exception_flips_for_that_user_only() {
    let block =
        cfg(json!({"defaultSetting": "block all", "userExceptions": {"@bob:hs2.example": {}}}));
    assert!(allowed(&block, "@bob:hs2.example"));
    assert!(
        allowed(&block, "@bob:HS2.Example"),
        "server name case-insensitive"
    );
    assert!(!allowed(&block, "@Bob:hs2.example"), "localpart is exact");
    assert!(!allowed(&block, "@bob2:hs2.example"));
    assert!(!allowed(&block, "@bob:hs2.example.evil"));
    assert!(!allowed(&block, "@bob:evil.hs2.example"));
    assert!(!allowed(&block, "@carl:hs2.example"));
    let allow =
        cfg(json!({"defaultSetting": "allow all", "userExceptions": {"@bob:hs2.example": {}}}));
    assert!(!allowed(&allow, "@bob:hs2.example"));
    assert!(allowed(&allow, "@carl:hs2.example"));
}

#[test]
fn server_exception_flips_for_the_domain_only() {
    let allow =
        cfg(json!({"defaultSetting": "allow all", "serverExceptions": {"hs2.example": {}}}));
    assert!(!allowed(&allow, "@bob:hs2.example"));
    assert!(!allowed(&allow, "@carl:HS2.EXAMPLE"));
    assert!(
        allowed(&allow, "@bob:hs2.example.evil"),
        "near miss is not the domain"
    );
    assert!(allowed(&allow, "@bob:xhs2.example"));
    assert!(allowed(&allow, "@bob:hs3.example"));
    let block =
        cfg(json!({"defaultSetting": "block all", "serverExceptions": {"Hs2.Example": {}}}));
    assert!(allowed(&block, "@bob:hs2.example"));
    assert!(!allowed(&block, "@bob:hs2.evil"));
}

#[test]
fn server_exceptions_ignore_ports_user_exceptions_do_not() {
    let block =
        cfg(json!({"defaultSetting": "block all", "serverExceptions": {"hs2.example:8448": {}}}));
    assert!(allowed(&block, "@bob:hs2.example"));
    assert!(allowed(&block, "@bob:hs2.example:443"));
    // A user exception names one user: the port is part of the server name there.
    let block =
        cfg(json!({"defaultSetting": "block all", "userExceptions": {"@bob:hs2.example": {}}}));
    assert!(!allowed(&block, "@bob:hs2.example:8448"));
    let block = cfg(
        json!({"defaultSetting": "block all", "userExceptions": {"@bob:HS2.example:8448": {}}}),
    );
    assert!(allowed(&block, "@bob:hs2.example:8448"));
    assert!(!allowed(&block, "@bob:hs2.example"));
}

#[test]
fn group_exception_needs_insurance_on_the_list() {
    let block = cfg(
        json!({"defaultSetting": "block all", "groupExceptions": [{"groupName": "isInsuredPerson"}]}),
    );
    assert!(allowed(&block, "@vers:kasse.example"));
    assert!(allowed(&block, "@vers:KASSE.example"));
    assert!(!allowed(&block, "@bob:hs2.example"), "not insurance");
    assert!(!allowed(&block, "@vers:kasse.example.evil"));
    let allow = cfg(
        json!({"defaultSetting": "allow all", "groupExceptions": [{"groupName": "isInsuredPerson"}]}),
    );
    assert!(!allowed(&allow, "@vers:kasse.example"));
    assert!(allowed(&allow, "@bob:hs2.example"));
    // Without the group exception, insurance changes nothing.
    let block = cfg(json!({"defaultSetting": "block all"}));
    assert!(!allowed(&block, "@vers:kasse.example"));
}

#[test]
fn several_matching_exceptions_flip_once() {
    let block = cfg(json!({
        "defaultSetting": "block all",
        "userExceptions": {"@vers:kasse.example": {}},
        "serverExceptions": {"kasse.example": {}},
        "groupExceptions": [{"groupName": "isInsuredPerson"}]
    }));
    assert!(allowed(&block, "@vers:kasse.example"));
    let allow = cfg(json!({
        "defaultSetting": "allow all",
        "userExceptions": {"@bob:hs2.example": {}},
        "serverExceptions": {"hs2.example": {}}
    }));
    assert!(!allowed(&allow, "@bob:hs2.example"));
    assert!(!allowed(&allow, "@carl:hs2.example"));
    assert!(allowed(&allow, "@bob:hs3.example"));
}

#[test]
fn an_inviter_that_is_no_mxid_is_refused() {
    for bad in ["bob:hs2.example", "@bob", "@:hs2.example", "@bob:", ""] {
        assert!(pro(None, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn epa_refuses_insured_to_insured_whatever_the_config() {
    let epa = |c: Option<&PermissionConfig>, inviter: &str, invitee: &str| {
        decide_with(TiVariant::Epa, c, inviter, invitee, insurance)
    };
    let allow = cfg(json!({"defaultSetting": "allow all"}));
    let block_user =
        cfg(json!({"defaultSetting": "block all", "userExceptions": {"@a:kasse.example": {}}}));
    assert_eq!(
        epa(None, "@a:kasse.example", "@b:kasse.example"),
        Err(TiDenial::InsuredToInsured)
    );
    assert_eq!(
        epa(Some(&allow), "@a:KASSE.example", "@b:kasse.example"),
        Err(TiDenial::InsuredToInsured)
    );
    assert_eq!(
        epa(Some(&block_user), "@a:kasse.example", "@b:kasse.example"),
        Err(TiDenial::InsuredToInsured)
    );
    // A practitioner inviting an insured person, and the other way round: the config decides.
    assert_eq!(
        epa(Some(&allow), "@doc:hs2.example", "@b:kasse.example"),
        Ok(())
    );
    assert_eq!(
        epa(Some(&allow), "@a:kasse.example", "@doc:hs2.example"),
        Ok(())
    );
    let block = cfg(json!({"defaultSetting": "block all"}));
    assert!(epa(Some(&block), "@doc:hs2.example", "@b:kasse.example").is_err());
    // The Pro variant has no such rule.
    assert_eq!(
        decide_with(
            TiVariant::Pro,
            None,
            "@a:kasse.example",
            "@b:kasse.example",
            insurance
        ),
        Ok(())
    );
}

#[test]
fn decide_reads_insurance_from_the_list() {
    let list = FederationList::parse_payload(
        serde_json::to_vec(&json!({"version": 3, "domainList": [
            {"domain": "kasse.example", "telematikID": "1", "isInsurance": true},
            {"domain": "Praxis.example", "telematikID": "2", "isInsurance": false}
        ]}))
        .unwrap()
        .as_slice(),
    )
    .unwrap();
    let group = cfg(
        json!({"defaultSetting": "block all", "groupExceptions": [{"groupName": "isInsuredPerson"}]}),
    );
    let d = |v, inviter: &str, invitee: &str| decide(v, Some(&group), inviter, invitee, &list);
    assert_eq!(d(TiVariant::Pro, "@v:kasse.example", ALICE), Ok(()));
    assert_eq!(d(TiVariant::Pro, "@v:KASSE.example:8448", ALICE), Ok(()));
    assert!(d(TiVariant::Pro, "@doc:praxis.example", ALICE).is_err());
    assert!(d(TiVariant::Pro, "@x:unlisted.example", ALICE).is_err());
    assert_eq!(
        d(TiVariant::Epa, "@v:kasse.example", "@w:kasse.example"),
        Err(TiDenial::InsuredToInsured)
    );
    assert_eq!(
        d(TiVariant::Epa, "@v:kasse.example", "@doc:praxis.example"),
        Ok(())
    );
}
