//! The media layer of the policy stack: what events say about media.
//!
//! Files themselves are judged where their bytes cross, on the answer of a media download
//! (`proxy::media`, `crate::media`); media requests pass this layer. With `[media]
//! redact_events_with_blocked_media = true`, an event that references (`url`, `file.url`,
//! `info.thumbnail_url`, …) a media id the guard refused is redacted (rule `media:blocked`),
//! so a receiver does not see a link to content that may not cross. A store that cannot be
//! read redacts too (fail closed).
use super::{Decision, EduVerdict, ExchangeCtx, PduVerdict, Policy};
use crate::config::MediaConfig;
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::store::Store;

/// The rule name of a redaction for blocked media.
pub const BLOCKED_RULE: &str = "media:blocked";

/// Redacts events referencing refused media, if configured.
#[derive(Clone)]
pub struct MediaPolicy {
    redact_blocked: bool,
    store: Store,
}

impl MediaPolicy {
    pub fn from_config(cfg: &MediaConfig, store: Store) -> Self {
        MediaPolicy {
            redact_blocked: cfg.redact_events_with_blocked_media && !cfg.allow_unscanned,
            store,
        }
    }

    fn judge(&self, raw: &str) -> PduVerdict {
        if !self.redact_blocked || !raw.contains("mxc://") {
            return PduVerdict::Allow;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(raw) else {
            return PduVerdict::Allow;
        };
        for r in crate::federation::mxc::refs_in_event(&value) {
            match self.store.media_blocked(&r.server_name, &r.media_id) {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => {
                    return PduVerdict::Redact {
                        rule: BLOCKED_RULE.to_string(),
                    }
                }
            }
        }
        PduVerdict::Allow
    }
}

impl Policy for MediaPolicy {
    fn request(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
    fn pdu(&self, _ctx: &ExchangeCtx, pdu: &PduView<'_>) -> PduVerdict {
        self.judge(pdu.raw.get())
    }
    fn event(&self, _ctx: &ExchangeCtx, event: &EventView<'_>) -> PduVerdict {
        self.judge(event.raw.get())
    }
    fn redacted_pdu(&self, _ctx: &ExchangeCtx, _pdu: &PduView<'_>) -> PduVerdict {
        // A redacted event keeps no content, so no media reference.
        PduVerdict::Allow
    }
    fn redacted_event(&self, _ctx: &ExchangeCtx, _event: &EventView<'_>) -> PduVerdict {
        PduVerdict::Allow
    }
    fn edu(&self, _ctx: &ExchangeCtx, _edu: &EduView<'_>) -> EduVerdict {
        EduVerdict::Allow
    }
    fn response(&self, _ctx: &ExchangeCtx) -> Decision {
        Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::catalog;
    use crate::policy::Direction;

    fn ctx(id: &str, direction: Direction) -> ExchangeCtx {
        ExchangeCtx {
            direction,
            endpoint: catalog::by_id(id).unwrap(),
            peer: Some("hs2.test".into()),
            protected: "hs1.test".into(),
            txn_id: None,
        }
    }

    #[test]
    fn media_requests_pass_this_layer_their_answers_are_inspected_elsewhere() {
        let p = MediaPolicy::from_config(&MediaConfig::default(), Store::open_in_memory().unwrap());
        for id in [
            "media_download",
            "media_thumbnail",
            "legacy_media_download_v3",
        ] {
            for d in [Direction::Inbound, Direction::Outbound] {
                assert_eq!(p.request(&ctx(id, d)), Decision::Allow, "{id}");
            }
        }
    }

    #[test]
    fn events_referencing_blocked_media_are_redacted_when_configured() {
        let store = Store::open_in_memory().unwrap();
        let raw = r#"{"type":"m.room.message","content":{"msgtype":"m.file","body":"a","url":"mxc://hs1.test/AbC"}}"#;
        let on = MediaPolicy::from_config(
            &MediaConfig {
                redact_events_with_blocked_media: true,
                ..MediaConfig::default()
            },
            store.clone(),
        );
        let off = MediaPolicy::from_config(&MediaConfig::default(), store.clone());
        assert_eq!(on.judge(raw), PduVerdict::Allow, "nothing blocked yet");
        store
            .mark_media_blocked("hs1.test", "AbC", "yara", None)
            .unwrap();
        assert_eq!(
            on.judge(raw),
            PduVerdict::Redact {
                rule: BLOCKED_RULE.into()
            }
        );
        assert_eq!(off.judge(raw), PduVerdict::Allow, "off by default");
        let other = raw.replace("AbC", "Other");
        assert_eq!(on.judge(&other), PduVerdict::Allow, "other media");
    }

    #[test]
    fn media_config_defaults_to_inspection_and_unknown_keys_are_errors() {
        use crate::config::Config;
        let c = Config::from_str("", "g.toml").unwrap();
        assert!(!c.media.allow_unscanned);
        assert!(c.media.require_reference);
        let c = Config::from_str("[media]\nallow_unscanned = true\n", "g.toml").unwrap();
        assert!(c.media.allow_unscanned);
        let e = Config::from_str("[media]\nallow_unscaned = true\n", "g.toml")
            .expect_err("typo refused");
        assert!(
            e.to_string().contains("unknown key `media.allow_unscaned`"),
            "{e}"
        );
        let e = Config::from_str("[media.archive]\nmax_depth = \"deep\"\n", "g.toml")
            .expect_err("wrong type refused");
        assert!(e.to_string().contains("media.archive.max_depth"), "{e}");
    }
}
