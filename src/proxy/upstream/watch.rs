//! What an upstream is doing: requests in flight and their age, the last failure, timeouts.
//!
//! Every request through an [`super::Upstream`] holds a [`Pending`] from start to finish. The
//! watch feeds three things:
//!
//! * metrics — `grenzwacht_upstream_in_flight{upstream}`, `grenzwacht_upstream_stuck{upstream}`
//!   (requests older than the stuck threshold; the serve loop sums [`Watch::refresh`] over the
//!   watches of one name every second), `grenzwacht_upstream_timeouts_total{upstream,phase}` and
//!   `grenzwacht_upstream_failures_total{upstream,kind}`;
//! * `/health` — [`Watch::health`]: degraded while a request is stuck, or while the last
//!   request failed and none succeeded since (for [`RECENT`]);
//! * logs — a timeout is logged with the upstream and the phase when it happens.
//!
//! A frozen upstream (a stopped process, a black-holed route) therefore shows up at once as
//! stuck requests and, after the first-byte timeout, as counted timeouts and 504s.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures older than this no longer degrade `/health` (the upstream may just be idle).
pub const RECENT: Duration = Duration::from_secs(300);

/// Which deadline fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// No TCP connection within `connect_timeout_ms`.
    Connect,
    /// Connected, request sent, no response head within `first_byte_timeout_ms`.
    FirstByte,
    /// The whole exchange, body included, took longer than `request_timeout_ms`.
    Total,
}

impl TimeoutPhase {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::FirstByte => "first_byte",
            Self::Total => "total",
        }
    }
}

/// The watch of one upstream (shared by its clones).
#[derive(Debug)]
pub struct Watch {
    /// Metric label: `protected`, `federation`, `link`, `media`.
    name: &'static str,
    /// Requests older than this count as stuck.
    stuck_after: Duration,
    next: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_flight: HashMap<u64, Instant>,
    last_success: Option<Instant>,
    last_failure: Option<(Instant, String)>,
}

/// One request in flight; dropping it without [`Pending::finish`] counts as a failure
/// (cancelled).
#[derive(Debug)]
pub struct Pending {
    watch: Arc<Watch>,
    id: u64,
    done: bool,
}

impl Watch {
    /// A watch named `name` (a fixed metric label) that calls requests older than
    /// `stuck_after` stuck.
    pub fn new(name: &'static str, stuck_after: Duration) -> Arc<Self> {
        Arc::new(Watch {
            name,
            stuck_after,
            next: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        })
    }

    /// The metric label.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request starts.
    pub fn start(self: &Arc<Self>) -> Pending {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.state().in_flight.insert(id, Instant::now());
        Pending {
            watch: self.clone(),
            id,
            done: false,
        }
    }

    /// A connection attempt timed out (the connector knows no request).
    pub fn connect_timeout(&self) {
        self.timeout(TimeoutPhase::Connect);
        self.state().last_failure = Some((Instant::now(), "connect timeout".into()));
    }

    fn timeout(&self, phase: TimeoutPhase) {
        metrics::counter!("grenzwacht_upstream_timeouts_total", "upstream" => self.name, "phase" => phase.as_str())
            .increment(1);
        tracing::warn!(
            upstream = self.name,
            phase = phase.as_str(),
            "upstream timed out"
        );
    }

    /// Requests in flight, those among them older than the stuck threshold, and the age of
    /// the oldest.
    pub fn refresh(&self) -> (usize, usize, Option<Duration>) {
        let now = Instant::now();
        let s = self.state();
        let oldest = s.in_flight.values().map(|t| now - *t).max();
        let stuck = s
            .in_flight
            .values()
            .filter(|t| now - **t >= self.stuck_after)
            .count();
        (s.in_flight.len(), stuck, oldest)
    }

    /// `Ok` or why this upstream degrades the guard (no addresses, no content).
    pub fn health(&self) -> Result<(), String> {
        let (_, stuck, oldest) = self.refresh();
        if stuck > 0 {
            return Err(format!(
                "{stuck} request(s) to the {} upstream waiting for {} s or longer (oldest {} s)",
                self.name,
                self.stuck_after.as_secs(),
                oldest.unwrap_or_default().as_secs()
            ));
        }
        let s = self.state();
        if let Some((at, why)) = &s.last_failure {
            let after_success = s.last_success.is_none_or(|ok| ok < *at);
            if after_success && at.elapsed() < RECENT {
                return Err(format!(
                    "the last request to the {} upstream failed {} s ago ({why}) and none succeeded since",
                    self.name,
                    at.elapsed().as_secs()
                ));
            }
        }
        Ok(())
    }
}

impl Pending {
    /// The request ended; `Err` names the failure kind (a fixed label value) and, for
    /// timeouts, the phase.
    pub fn finish(mut self, outcome: Result<(), (&'static str, Option<TimeoutPhase>)>) {
        self.done = true;
        let w = &self.watch;
        match outcome {
            Ok(()) => w.state().last_success = Some(Instant::now()),
            Err((kind, phase)) => {
                if let Some(p) = phase {
                    w.timeout(p);
                }
                metrics::counter!("grenzwacht_upstream_failures_total", "upstream" => w.name, "kind" => kind)
                    .increment(1);
                let why = match phase {
                    Some(p) => format!("{} timeout", p.as_str().replace('_', " ")),
                    None => kind.replace('_', " "),
                };
                w.state().last_failure = Some((Instant::now(), why));
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.watch.state().in_flight.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_requests_and_failures_degrade_until_a_success() {
        let w = Watch::new("protected", Duration::from_millis(20));
        assert!(w.health().is_ok());
        let p = w.start();
        assert!(w.health().is_ok(), "young request is not stuck");
        std::thread::sleep(Duration::from_millis(30));
        let why = w.health().unwrap_err();
        assert!(
            why.contains("1 request(s) to the protected upstream"),
            "{why}"
        );
        p.finish(Err(("timeout", Some(TimeoutPhase::FirstByte))));
        let why = w.health().unwrap_err();
        assert!(why.contains("first byte timeout"), "{why}");
        w.start().finish(Ok(()));
        assert!(w.health().is_ok());
        assert_eq!(w.refresh().0, 0);
    }
}
