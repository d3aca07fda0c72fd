//! What `/health` checks of a running guard, one entry per dependency.
//!
//! | check | state when it fails | what it probes |
//! |---|---|---|
//! | `store` | failed | a write and a read-back of the probe row ([`crate::store::Store::probe`]): locked, read-only, immutable, full or damaged files fail it |
//! | `audit` | failed | the audit writer has not failed ([`crate::audit::Auditor::health`]) |
//! | `rules` | failed without a rule set, degraded after a refused reload | the running DLP rule set and the last reload's outcome |
//! | `keys` | degraded | the guard's own fetches of remote signing keys succeed (requests whose keys it cannot get are refused) |
//! | `upstreams` | degraded | no request stuck, no failure without a success since ([`super::upstream::Watch::health`]) |
//! | `ti_list` | failed | a current TI-Messenger federation list (with `[ti]`) |
//! | `split_link` | failed | heartbeats from the other half (with `[split]`) |
//!
//! A failed check makes `/health` answer 503: the guard refuses what needs that dependency, so
//! the orchestrator must know. A degraded one keeps 200 with the reason in the body.
use std::sync::Arc;

use crate::admin::HealthCheck;

use super::guard::{Guard, ReloadResult};

/// The checks of `guard`'s `/health`.
pub(crate) fn checks(guard: &Arc<Guard>) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    let store = guard.store().clone();
    out.push(HealthCheck::required("store", move || {
        store
            .probe()
            .map_err(|e| match std::error::Error::source(&e) {
                Some(src) => format!("{e}: {src}"),
                None => e.to_string(),
            })
    }));
    if let Some(a) = guard.auditor() {
        let a = a.clone();
        // Nothing crosses while the audit log cannot be written.
        out.push(HealthCheck::required("audit", move || a.health()));
    }
    let g = guard.clone();
    out.push(HealthCheck {
        name: "rules",
        check: Arc::new(move || rules(&g)),
    });
    let g = guard.clone();
    out.push(HealthCheck {
        name: "keys",
        check: Arc::new(move || g.keys_health()),
    });
    let watches = guard.upstream_watches();
    out.push(HealthCheck::degrading("upstreams", move || {
        let reasons: Vec<String> = watches.iter().filter_map(|w| w.health().err()).collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }));
    if let Some(ti) = guard.ti() {
        let keeper = ti.keeper.clone();
        // A stale federation list blocks all federation.
        out.push(HealthCheck::required("ti_list", move || {
            match keeper.current() {
                Some(_) => Ok(()),
                None => {
                    Err("no current TI-Messenger federation list: federation is blocked".into())
                }
            }
        }));
    }
    if let Some(split) = guard.split().cloned() {
        out.push(HealthCheck::required("split_link", move || split.health()));
    }
    out
}

fn rules(guard: &Guard) -> crate::admin::Health {
    use crate::admin::Health;
    let status = guard.policy_status();
    if !guard.has_dlp() {
        return Health::Ok;
    }
    if status.fingerprint.is_none() || status.rules == 0 {
        return Health::Failed("no DLP rule set is loaded".into());
    }
    match status.last_result {
        Some(ReloadResult::Refused) => Health::Degraded(
            "the last rule reload was refused (see the log); the previous rule set runs".into(),
        ),
        Some(ReloadResult::RefusedShrink) => Health::Degraded(
            "the last rule reload would have dropped rules and was refused; the previous rule set runs"
                .into(),
        ),
        _ => Health::Ok,
    }
}

/// Every second: the upstream gauges (in flight, stuck), so a frozen upstream shows in
/// `/metrics` without anyone asking `/health`.
pub(crate) async fn refresh_gauges(guard: Arc<Guard>, mut shutdown: super::guard::Shutdown) {
    let watches = guard.upstream_watches();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut by_name: std::collections::BTreeMap<&'static str, (usize, usize)> =
                    Default::default();
                for w in &watches {
                    let (n, stuck, _) = w.refresh();
                    let e = by_name.entry(w.name()).or_default();
                    e.0 += n;
                    e.1 += stuck;
                }
                for (name, (n, stuck)) in by_name {
                    metrics::gauge!("grenzwacht_upstream_in_flight", "upstream" => name).set(n as f64);
                    metrics::gauge!("grenzwacht_upstream_stuck", "upstream" => name).set(stuck as f64);
                }
            }
            _ = shutdown.wait() => return,
        }
    }
}
