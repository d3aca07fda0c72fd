//! Sender notices: a user of a protected homeserver whose event was redacted in transit, held
//! for review or rejected by a reviewer is told so through their own homeserver (Synapse's
//! server notices, `POST /_synapse/admin/v1/send_server_notice` on `[[protected]] admin_api`).
//!
//! Design notes:
//! - **Only protected senders, only outgoing events.** A remote sender is never told anything
//!   (the guard does not speak to remote users), nor is a protected recipient of an inbound
//!   event that was redacted (the redaction itself is visible to them).
//! - **Never content.** A notice names the event id, the room, the outcome and the time; rule
//!   ids only with `[notices] include_rule_ids = true` (they help an insider probe the rules).
//! - **Off the request path.** [`Notifier::notify`] never blocks and never fails the exchange:
//!   notices go into a bounded queue (full → counted, dropped) and a task delivers them with
//!   retries and backoff. A rate limit per sender and a dedup set per (event id, outcome)
//!   keep a flood of redactions or a retried transaction from flooding the user.
//! - Results are counted in `grenzwacht_notices_total{result}`.
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::guard::Guard;
pub use crate::config::notices::{Language, NoticeOutcome, NoticesConfig};
use crate::federation::server_name::host_part;
use crate::telemetry as tm;

/// Notices waiting for delivery (beyond: dropped and counted).
pub const QUEUE: usize = 1024;
/// Delivery attempts per notice.
pub const ATTEMPTS: u32 = 5;
/// First retry delay (doubles per attempt).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// (event id, outcome) pairs remembered for deduplication.
pub const DEDUP_CAPACITY: usize = 10_000;

/// One notice to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The protected user to tell.
    pub user_id: String,
    pub room_id: String,
    pub event_id: String,
    pub outcome: NoticeOutcome,
    /// Rule ids (only rendered with `include_rule_ids`).
    pub rules: Vec<String>,
    /// Milliseconds since the Unix epoch at which the guard decided.
    pub at_ms: i64,
}

/// The text of a notice: event, room, outcome, time — never content.
pub fn render(cfg: &NoticesConfig, n: &Notice) -> String {
    let when = time::OffsetDateTime::from_unix_timestamp(n.at_ms.div_euclid(1000))
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_default();
    let what = match (cfg.language, n.outcome) {
        (Language::De, NoticeOutcome::Redacted) => {
            "wurde vom Grenzschutz (grenzwacht) ohne Inhalt zugestellt (redigiert)"
        }
        (Language::De, NoticeOutcome::Held) => {
            "wird vom Grenzschutz (grenzwacht) zur Prüfung zurückgehalten und ist noch nicht zugestellt"
        }
        (Language::De, NoticeOutcome::Rejected) => {
            "wurde nach Prüfung abgelehnt und ohne Inhalt zugestellt (redigiert)"
        }
        (Language::De, NoticeOutcome::Released) => "wurde nach Prüfung freigegeben und zugestellt",
        (Language::En, NoticeOutcome::Redacted) => {
            "was delivered without its content (redacted) by the border guard (grenzwacht)"
        }
        (Language::En, NoticeOutcome::Held) => {
            "is held for review by the border guard (grenzwacht) and has not been delivered yet"
        }
        (Language::En, NoticeOutcome::Rejected) => {
            "was rejected after review and delivered without its content (redacted)"
        }
        (Language::En, NoticeOutcome::Released) => "was released after review and delivered",
    };
    let (event, room, at) = match cfg.language {
        Language::De => ("Ihre Nachricht", "im Raum", "Zeitpunkt"),
        Language::En => ("Your message", "in room", "Time"),
    };
    let mut text = format!(
        "{event} {} {room} {} {what}. {at}: {when}.",
        n.event_id, n.room_id
    );
    if cfg.include_rule_ids && !n.rules.is_empty() {
        let label = match cfg.language {
            Language::De => "Regeln",
            Language::En => "Rules",
        };
        text.push_str(&format!(" {label}: {}.", n.rules.join(", ")));
    }
    text
}

/// Rate limit per sender (a fixed one-minute window) and dedup per (event, outcome).
struct Limits {
    per_minute: u32,
    windows: HashMap<String, (Instant, u32)>,
    seen: HashSet<(String, NoticeOutcome)>,
    order: VecDeque<(String, NoticeOutcome)>,
}

/// Why a notice was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    Disabled,
    Duplicate,
    RateLimited,
    QueueFull,
}

impl Limits {
    fn admit(&mut self, n: &Notice, now: Instant) -> Result<(), Skipped> {
        let key = (n.event_id.clone(), n.outcome);
        if self.seen.contains(&key) {
            return Err(Skipped::Duplicate);
        }
        // Bounded: windows older than a minute are forgotten when the map grows.
        if self.windows.len() > DEDUP_CAPACITY {
            self.windows
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let w = self.windows.entry(n.user_id.clone()).or_insert((now, 0));
        if now.duration_since(w.0) >= Duration::from_secs(60) {
            *w = (now, 0);
        }
        if w.1 >= self.per_minute {
            return Err(Skipped::RateLimited);
        }
        w.1 += 1;
        self.seen.insert(key.clone());
        self.order.push_back(key);
        while self.order.len() > DEDUP_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Ok(())
    }
}

/// The notice queue the decision path and the hold queue feed.
pub struct Notifier {
    cfg: NoticesConfig,
    tx: Option<mpsc::Sender<Notice>>,
    rx: Mutex<Option<mpsc::Receiver<Notice>>>,
    limits: Mutex<Limits>,
}

impl Notifier {
    pub fn new(cfg: &NoticesConfig) -> Self {
        let (tx, rx) = if cfg.enabled {
            let (tx, rx) = mpsc::channel(QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Notifier {
            cfg: cfg.clone(),
            tx,
            rx: Mutex::new(rx),
            limits: Mutex::new(Limits {
                per_minute: cfg.per_sender_per_minute.max(1),
                windows: HashMap::new(),
                seen: HashSet::new(),
                order: VecDeque::new(),
            }),
        }
    }

    pub fn config(&self) -> &NoticesConfig {
        &self.cfg
    }

    /// Queues a notice for `sender` if notices are on for `outcome`; never blocks.
    pub fn notify(
        &self,
        sender: &str,
        room_id: &str,
        event_id: &str,
        outcome: NoticeOutcome,
        rules: &[String],
    ) -> Result<(), Skipped> {
        let Some(tx) = &self.tx else {
            return Err(Skipped::Disabled);
        };
        if !self.cfg.tells(outcome) {
            return Err(Skipped::Disabled);
        }
        let notice = Notice {
            user_id: sender.to_string(),
            room_id: room_id.to_string(),
            event_id: event_id.to_string(),
            outcome,
            rules: rules.to_vec(),
            at_ms: now_ms(),
        };
        let admitted = self
            .limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(&notice, Instant::now());
        if let Err(skip) = admitted {
            let result = match skip {
                Skipped::Duplicate => "duplicate",
                _ => "rate_limited",
            };
            metrics::counter!(tm::NOTICES_TOTAL, "result" => result).increment(1);
            return Err(skip);
        }
        tx.try_send(notice).map_err(|_| {
            metrics::counter!(tm::NOTICES_TOTAL, "result" => "queue_full").increment(1);
            Skipped::QueueFull
        })
    }

    /// Takes the receiving end (once) for [`deliver`].
    fn take_receiver(&self) -> Option<mpsc::Receiver<Notice>> {
        self.rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Delivers queued notices until `stop` completes (started by `serve` when notices are on).
pub async fn deliver(guard: Arc<Guard>, stop: impl std::future::Future<Output = ()>) {
    let Some(mut rx) = guard.notifier().take_receiver() else {
        return;
    };
    tokio::pin!(stop);
    loop {
        let notice = tokio::select! {
            n = rx.recv() => match n { Some(n) => n, None => return },
            () = &mut stop => return,
        };
        let guard = guard.clone();
        // One notice at a time per guard keeps the homeserver's admin API calm; a failing one
        // is retried in its own task so it does not hold up the others.
        tokio::spawn(async move { send_with_retries(&guard, &notice).await });
    }
}

async fn send_with_retries(guard: &Guard, n: &Notice) {
    let result = {
        let mut delay = FIRST_BACKOFF;
        let mut last = "failed";
        for attempt in 1..=ATTEMPTS {
            match send_once(guard, n).await {
                Ok(()) => {
                    last = "sent";
                    break;
                }
                Err(SendError::NoAdminApi) => {
                    last = "no_admin_api";
                    break;
                }
                Err(SendError::Failed(why)) => {
                    tracing::warn!(user = %n.user_id, event_id = %n.event_id, attempt, error = %why, "sender notice not delivered");
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        last
    };
    if result == "sent" {
        tracing::info!(user = %n.user_id, event_id = %n.event_id, room_id = %n.room_id, outcome = n.outcome.as_str(), "sender notice delivered");
    }
    metrics::counter!(tm::NOTICES_TOTAL, "result" => result).increment(1);
}

enum SendError {
    NoAdminApi,
    Failed(String),
}

async fn send_once(guard: &Guard, n: &Notice) -> Result<(), SendError> {
    let server = n
        .user_id
        .split_once(':')
        .map(|(_, s)| s)
        .ok_or(SendError::NoAdminApi)?;
    let Some((admin, token_file)) = guard.protected_named(server).and_then(|p| p.admin.as_ref())
    else {
        return Err(SendError::NoAdminApi);
    };
    let token = tokio::fs::read_to_string(token_file)
        .await
        .map_err(|_| SendError::Failed("admin token unreadable".into()))?;
    let body = serde_json::json!({
        "user_id": n.user_id,
        "content": {"msgtype": "m.text", "body": render(guard.notifier().config(), n)},
    });
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    match admin
        .admin_post("/_synapse/admin/v1/send_server_notice", token.trim(), body)
        .await
    {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, _)) => Err(SendError::Failed(format!("admin API answered {status}"))),
        Err(e) => Err(SendError::Failed(e.to_string())),
    }
}

/// Whether `user_id` belongs to a server the guard protects (only they get notices).
pub fn is_protected_user(guard: &Guard, user_id: &str) -> bool {
    user_id.split_once(':').is_some_and(|(_, server)| {
        guard.is_protected(server) || guard.is_protected(host_part(server))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NoticesConfig {
        NoticesConfig {
            enabled: true,
            ..NoticesConfig::default()
        }
    }

    fn notice(event: &str, outcome: NoticeOutcome) -> Notice {
        Notice {
            user_id: "@alice:hs1".into(),
            room_id: "!r:hs1".into(),
            event_id: event.into(),
            outcome,
            rules: vec!["marking.geheim".into()],
            at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn text_names_event_room_and_outcome_but_no_rules_by_default() {
        let n = notice("$ev1", NoticeOutcome::Redacted);
        let t = render(&cfg(), &n);
        assert!(t.contains("$ev1") && t.contains("!r:hs1"), "{t}");
        assert!(t.contains("redigiert"), "{t}");
        assert!(!t.contains("marking.geheim"), "{t}");
        assert!(t.contains("2023-11-14T22:13:20Z"), "{t}");
        let en = NoticesConfig {
            language: Language::En,
            include_rule_ids: true,
            ..cfg()
        };
        let t = render(&en, &notice("$ev2", NoticeOutcome::Held));
        assert!(
            t.contains("held for review") && t.contains("marking.geheim"),
            "{t}"
        );
    }

    #[test]
    fn disabled_or_untold_outcomes_are_not_queued() {
        let off = Notifier::new(&NoticesConfig::default());
        assert_eq!(
            off.notify("@a:hs1", "!r:hs1", "$e", NoticeOutcome::Redacted, &[]),
            Err(Skipped::Disabled)
        );
        let on = Notifier::new(&cfg());
        assert_eq!(
            on.notify("@a:hs1", "!r:hs1", "$e", NoticeOutcome::Released, &[]),
            Err(Skipped::Disabled),
            "released is not told by default"
        );
        assert_eq!(
            on.notify("@a:hs1", "!r:hs1", "$e", NoticeOutcome::Redacted, &[]),
            Ok(())
        );
    }

    #[test]
    fn duplicates_and_floods_are_cut() {
        let n = Notifier::new(&NoticesConfig {
            per_sender_per_minute: 3,
            ..cfg()
        });
        let ok = |e: &str| n.notify("@a:hs1", "!r:hs1", e, NoticeOutcome::Redacted, &[]);
        assert_eq!(ok("$1"), Ok(()));
        assert_eq!(ok("$1"), Err(Skipped::Duplicate), "a retried transaction");
        assert_eq!(
            n.notify("@a:hs1", "!r:hs1", "$1", NoticeOutcome::Held, &[]),
            Ok(()),
            "another outcome of the same event is told"
        );
        assert_eq!(ok("$2"), Ok(()));
        assert_eq!(ok("$3"), Err(Skipped::RateLimited));
        assert_eq!(
            n.notify("@b:hs1", "!r:hs1", "$4", NoticeOutcome::Redacted, &[]),
            Ok(()),
            "another sender has its own budget"
        );
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let n = Notifier::new(&NoticesConfig {
            per_sender_per_minute: u32::MAX,
            ..cfg()
        });
        for i in 0..QUEUE {
            assert_eq!(
                n.notify(
                    "@a:hs1",
                    "!r",
                    &format!("$e{i}"),
                    NoticeOutcome::Redacted,
                    &[]
                ),
                Ok(())
            );
        }
        assert_eq!(
            n.notify("@a:hs1", "!r", "$over", NoticeOutcome::Redacted, &[]),
            Err(Skipped::QueueFull)
        );
    }
}
