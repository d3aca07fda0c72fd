//! Fault injection: a seam through which tests make the guard's dependencies fail.
//!
//! Compiled in only with the cargo feature `fault-injection` (off by default and in every
//! release build): without it every function here is an empty inline function and
//! [`inject`] does not exist. Tests that use it (`tests/fault_injection.rs`) declare
//! `required-features = ["fault-injection"]`; `.ci/run` runs them in a build with the
//! feature.
//!
//! | fault | where it acts | what the guard does |
//! |---|---|---|
//! | [`Fault::Store`] | every SQLite statement of the store fails (`SQLITE_INTERRUPT` from a progress handler, so the real error paths run) | transactions needing the store are refused (500), `/health` `store` failed |
//! | [`Fault::DiskFull`] | store statements fail as above, and audit appends fail with `ENOSPC` | refused (503/500), `/health` failed |
//! | [`Fault::AuditUnwritable`] | audit appends fail with `EACCES` | nothing crosses (503), `/health` `audit` failed |
//! | [`Fault::UpstreamReset`] | the upstream request fails as a reset connection | 502 to the sender |
//! | [`Fault::UpstreamHang`] | the upstream never answers | the first-byte timeout fires: 504, counted, `/health` `upstreams` degraded |
//! | [`Fault::PolicyPanic`] | the policy layers panic while judging an event | 500 to the sender, nothing forwarded |
//! | [`Fault::PolicySlow`] | the decision phase stalls | the decision deadline fires: 503, nothing forwarded |
//! | [`Fault::KeyFetch`] | the guard's fetches of remote signing keys fail | requests from servers whose keys are unknown are refused (401) |
//!
//! A fault lasts until the [`Injected`] handle is dropped: the test then checks that the
//! guard recovers.
#[cfg(feature = "fault-injection")]
use std::sync::Mutex;

/// A fault class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    Store,
    DiskFull,
    AuditUnwritable,
    UpstreamReset,
    UpstreamHang,
    PolicyPanic,
    PolicySlow,
    KeyFetch,
}

#[cfg(feature = "fault-injection")]
static ACTIVE: Mutex<Vec<Fault>> = Mutex::new(Vec::new());

/// While alive, its fault is active.
#[cfg(feature = "fault-injection")]
#[derive(Debug)]
pub struct Injected(Fault);

#[cfg(feature = "fault-injection")]
impl Drop for Injected {
    fn drop(&mut self) {
        let mut a = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = a.iter().position(|f| *f == self.0) {
            a.remove(i);
        }
    }
}

/// Activates `fault` until the returned handle is dropped.
#[cfg(feature = "fault-injection")]
pub fn inject(fault: Fault) -> Injected {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).push(fault);
    Injected(fault)
}

/// Is `fault` active?
#[cfg(feature = "fault-injection")]
pub fn active(fault: Fault) -> bool {
    ACTIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&fault)
}

/// Is `fault` active? (Never, without the feature.)
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn active(_fault: Fault) -> bool {
    false
}

/// Installs the store fault on a connection: while active, every statement is interrupted.
#[inline]
pub(crate) fn arm_connection(_conn: &mut rusqlite::Connection) {
    #[cfg(feature = "fault-injection")]
    let _ = _conn.progress_handler(1, Some(|| active(Fault::Store) || active(Fault::DiskFull)));
}

/// The audit log's appends fail while [`Fault::AuditUnwritable`] or [`Fault::DiskFull`] is
/// active.
#[inline]
pub(crate) fn audit_fault() -> std::io::Result<()> {
    if active(Fault::DiskFull) {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    if active(Fault::AuditUnwritable) {
        return Err(std::io::Error::from_raw_os_error(libc::EACCES));
    }
    Ok(())
}

/// What an upstream request does under a fault.
pub(crate) enum UpstreamFault {
    Reset,
    Hang,
}

/// The upstream fault in force, if any.
#[inline]
pub(crate) fn upstream_fault() -> Option<UpstreamFault> {
    if active(Fault::UpstreamReset) {
        Some(UpstreamFault::Reset)
    } else if active(Fault::UpstreamHang) {
        Some(UpstreamFault::Hang)
    } else {
        None
    }
}

/// Panics (inside the policy) while [`Fault::PolicyPanic`] is active.
#[inline]
pub(crate) fn policy_panic() {
    if active(Fault::PolicyPanic) {
        panic!("injected fault: policy layer panic");
    }
}

/// Stalls the decision phase while [`Fault::PolicySlow`] is active.
#[inline]
pub(crate) async fn policy_stall() {
    while active(Fault::PolicySlow) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Remote key fetches fail while [`Fault::KeyFetch`] is active.
#[inline]
pub(crate) fn key_fetch_fault() -> Result<(), String> {
    if active(Fault::KeyFetch) {
        return Err("injected fault: key fetch failed".into());
    }
    Ok(())
}
