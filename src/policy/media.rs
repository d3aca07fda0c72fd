//! Media fails closed: the guard does not inspect files, so media downloads and thumbnails do
//! not cross unless the configuration says so.
//!
//! Every catalog entry of class `media` (`media_download`, `media_thumbnail` and Synapse's
//! legacy `/_matrix/media/{v3,r0}/download` fallback) is refused in both directions with 403
//! `M_FORBIDDEN`, reason `media_unscanned` (counted in `grenzwacht_refusals_total`, logged in
//! the exchange's span). `[media] allow_unscanned = true` lets them through uninspected; other
//! layers (e.g. `[policy] deny_classes`) still apply.
use super::{Decision, EduVerdict, ExchangeCtx, PduVerdict, Policy, Refusal, RefusalReason};
use crate::config::MediaConfig;
use crate::federation::pdu::{EduView, EventView, PduView};
use crate::federation::EndpointClass;

/// Refuses media requests unless `allow_unscanned`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaPolicy {
    allow_unscanned: bool,
}

impl MediaPolicy {
    pub fn from_config(cfg: &MediaConfig) -> Self {
        MediaPolicy {
            allow_unscanned: cfg.allow_unscanned,
        }
    }
}

impl Policy for MediaPolicy {
    fn request(&self, ctx: &ExchangeCtx) -> Decision {
        if ctx.endpoint.class == EndpointClass::Media && !self.allow_unscanned {
            return Decision::Refuse(Refusal::forbidden(
                RefusalReason::MediaUnscanned,
                format!(
                    "{} refused: media is not inspected by this guard",
                    ctx.endpoint.id
                ),
            ));
        }
        Decision::Allow
    }
    fn pdu(&self, _ctx: &ExchangeCtx, _pdu: &PduView<'_>) -> PduVerdict {
        PduVerdict::Allow
    }
    fn event(&self, _ctx: &ExchangeCtx, _event: &EventView<'_>) -> PduVerdict {
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
    fn every_media_endpoint_is_refused_by_default_in_both_directions() {
        let media: Vec<&str> = catalog::entries()
            .iter()
            .filter(|e| e.class == EndpointClass::Media)
            .map(|e| e.id)
            .collect();
        assert!(media.len() >= 4, "{media:?}");
        let closed = MediaPolicy::from_config(&MediaConfig::default());
        let open = MediaPolicy::from_config(&MediaConfig {
            allow_unscanned: true,
            ..MediaConfig::default()
        });
        for id in media {
            for d in [Direction::Inbound, Direction::Outbound] {
                match closed.request(&ctx(id, d)) {
                    Decision::Refuse(r) => {
                        assert_eq!(
                            (r.status.as_u16(), r.errcode, r.reason),
                            (403, "M_FORBIDDEN", RefusalReason::MediaUnscanned),
                            "{id}"
                        );
                    }
                    Decision::Allow => panic!("{id} {d:?} allowed by default"),
                }
                assert_eq!(
                    open.request(&ctx(id, d)),
                    Decision::Allow,
                    "{id} with allow_unscanned"
                );
            }
        }
        // Everything else is not this layer's business.
        for id in ["send_transaction", "query_profile", "key_server"] {
            assert_eq!(
                closed.request(&ctx(id, Direction::Outbound)),
                Decision::Allow,
                "{id}"
            );
        }
    }

    #[test]
    fn media_config_defaults_to_closed_and_unknown_keys_are_errors() {
        use crate::config::Config;
        let c = Config::from_str("", "g.toml").unwrap();
        assert!(!c.media.allow_unscanned);
        let c = Config::from_str("[media]\nallow_unscanned = true\n", "g.toml").unwrap();
        assert!(c.media.allow_unscanned);
        let e = Config::from_str("[media]\nallow_unscaned = true\n", "g.toml")
            .expect_err("typo refused");
        assert!(
            e.to_string().contains("unknown key `media.allow_unscaned`"),
            "{e}"
        );
        let e = Config::from_str("[media]\nallow_unscanned = \"yes\"\n", "g.toml")
            .expect_err("wrong type refused");
        assert!(e.to_string().contains("media.allow_unscanned"), "{e}");
    }
}
