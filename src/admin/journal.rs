//! The audit log (`crate::audit`) as the admin listener's [`ActionJournal`] and
//! [`AuditSearch`].
//!
//! An admin action becomes an `admin` record (principal, role, action, target, outcome) and the
//! call returns once the record is durable (per `[audit] durability`); a failed audit log
//! refuses it. The journal is called off the async workers by the API (`spawn_blocking`) and
//! from the review UI's handler; waiting needs no runtime (the writer thread answers over a
//! oneshot channel), so [`block_on`] parks the calling thread until then.
//!
//! Searches read the segment files of `[audit] dir` (`audit::query::search`) with the same
//! filter fields as `grenzwacht audit query`.
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

use crate::audit::query::{search, Filter};
use crate::audit::{AdminRecord, Auditor, Record};
use crate::review::{ActionJournal, AuditFilter, AuditSearch, Principal};

/// The audit log of a running guard: where actions are appended and searches read.
#[derive(Debug, Clone)]
pub struct AuditLog {
    pub auditor: Auditor,
    /// `[audit] dir`.
    pub dir: PathBuf,
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` on the calling thread, parking it between wake-ups.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Arc::new(ThreadWaker(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

impl ActionJournal for AuditLog {
    fn admin_action(
        &self,
        who: Option<&Principal>,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> Result<(), String> {
        let rec = Record::from(AdminRecord {
            principal: who.map(|p| p.name.clone()),
            role: who.map(|p| p.role.as_str().to_owned()),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
        });
        block_on(self.auditor.append(rec))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl AuditSearch for AuditLog {
    fn search(&self, f: &AuditFilter) -> Result<Vec<serde_json::Value>, String> {
        let filter = Filter {
            from: f.from.clone(),
            to: f.to.clone(),
            room: f.room.clone(),
            sender: f.sender.clone(),
            server: f.server.clone(),
            verdict: f.verdict.clone(),
            rule: f.rule.clone(),
            label: f.label.clone(),
            limit: f.limit,
        };
        search(&self.dir, &filter).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Role;

    #[test]
    fn admin_actions_are_appended_durably_and_found_by_search() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::keys::SigningKey::generate("audit1").unwrap();
        let key_file = dir.path().join("audit.key");
        std::fs::write(&key_file, key.to_synapse_string()).unwrap();
        let log_dir = dir.path().join("log");
        let cfg = crate::audit::AuditConfig {
            dir: log_dir.clone(),
            key_file,
            ..Default::default()
        };
        let log = AuditLog {
            auditor: Auditor::open(&cfg).unwrap(),
            dir: log_dir,
        };
        let alice = Principal {
            name: "alice".into(),
            role: Role::Reviewer,
            clearance: None,
        };
        log.admin_action(Some(&alice), "holds.release", "7", "requested")
            .unwrap();
        log.admin_action(None, "holds.list", "", "unauthenticated: unknown token")
            .unwrap();
        let all = log.search(&AuditFilter::default()).unwrap();
        let admin: Vec<&serde_json::Value> = all.iter().filter(|r| r["kind"] == "admin").collect();
        assert_eq!(admin.len(), 2, "{all:?}");
        assert_eq!(admin[0]["data"]["principal"], "alice");
        assert_eq!(admin[0]["data"]["role"], "reviewer");
        assert_eq!(admin[0]["data"]["action"], "holds.release");
        assert_eq!(admin[0]["data"]["target"], "7");
        assert!(admin[1]["data"].get("principal").is_none());
        // A closed log refuses.
        block_on(log.auditor.close()).unwrap();
        assert!(log
            .admin_action(Some(&alice), "holds.reject", "7", "requested")
            .is_err());
    }
}
