//! Where the federation list comes from and how current it is.
//!
//! * **Source**: `[ti] vzd_url` — an HTTP GET with `?version=<current version>` (appended to
//!   any query the URL has) and `Authorization: Bearer <vzd_token_file>` if configured; https
//!   with the `vzd_ca` PEM roots or the web PKI roots, plain http only to a loopback address;
//!   connect timeout 5 s, total 30 s, body at most 8 MiB. 200 → the body is the JWS: verified,
//!   then installed; 204 → the current version is unchanged: the held list is verified again
//!   (at now) and counts as a successful verification (only when a list is held); any other
//!   answer, a timeout or a list that does not verify → an error, the held list stays.
//!   Or `[ti] list_file` — a JWS file another process keeps current: read, verified, and its
//!   freshness is the file's modification time (the other process touches it whenever the VZD
//!   confirms the list; a file nobody updates goes stale after `max_age_secs`).
//! * **Versions**: a verified list whose version is lower than the held one is refused (a
//!   replayed old list must not bring back removed domains); an equal version refreshes.
//! * **Disk**: the last good list is kept in `state_dir` as `federation-list.jws` and
//!   `federation-list.state.json` (version, last successful verification as Unix seconds and
//!   RFC 3339, source, SHA-256 of the JWS), each written atomically (temporary file, fsync,
//!   rename, fsync of the directory). [`ListKeeper::new`] loads them and verifies the list again
//!   (at now), so a restart keeps the list and its age; a missing, corrupt or no longer valid
//!   saved list is a warning and the keeper starts without a list (federation is blocked until
//!   a fetch succeeds).
//! * **Age**: [`ListKeeper::current`] returns the list only while
//!   `now − last successful verification < max_age_secs` (72 h by default); after that all
//!   federation is refused ([`TiDenial::ListStale`]).
//! * **Miss**: [`ListKeeper::check`] of a domain the current list does not name fetches once
//!   before it refuses: concurrent misses share one fetch (single flight), and misses fetch at
//!   most once per `miss_refetch_secs`. Such a check waits for that one fetch (or for a fetch
//!   already running), at most the VZD timeouts; a listed domain never waits.
//! * **Refresh**: [`ListKeeper::run`] fetches at start and every `refresh_interval_secs`; after
//!   a failed fetch it retries after 60 s, doubling up to 15 min (never later than the
//!   interval).
//! * **Observability**: [`ListKeeper::status`] (for `/health` and logs) and the metrics
//!   [`METRIC_LIST_VERSION`], [`METRIC_LIST_AGE_SECONDS`], [`METRIC_FETCH_TOTAL`]
//!   (`result` = `ok` | `unchanged` | `invalid` | `error`).
//!
//! The verification itself is one call, [`super::jws::verify_list`]; tests inject their own
//! verifier and clock through [`ListKeeper::with_verifier`].
pub mod client;
#[cfg(test)]
pub(crate) mod testserver;

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::list::{FederationList, ListEntry};
use super::TiDenial;
use crate::config::ti::TiConfig;

/// Gauge: version of the held federation list (absent until one is held).
pub const METRIC_LIST_VERSION: &str = "grenzwacht_ti_list_version";
/// Gauge: seconds since the last successful verification of the held list.
pub const METRIC_LIST_AGE_SECONDS: &str = "grenzwacht_ti_list_age_seconds";
/// Counter: list fetches by `result` (`ok`, `unchanged`, `invalid`, `error`).
pub const METRIC_FETCH_TOTAL: &str = "grenzwacht_ti_list_fetch_total";

/// Registers the descriptions (Prometheus `# HELP`) of the keeper's metrics. Idempotent.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        METRIC_LIST_VERSION,
        "Version of the held TI-Messenger federation list."
    );
    metrics::describe_gauge!(
        METRIC_LIST_AGE_SECONDS,
        metrics::Unit::Seconds,
        "Seconds since the federation list was last verified successfully (federation is blocked beyond ti.max_age_secs)."
    );
    metrics::describe_counter!(
        METRIC_FETCH_TOTAL,
        "Federation list fetches by result (ok, unchanged, invalid, error)."
    );
}

/// Name of the saved list in `state_dir`.
pub const LIST_FILE_NAME: &str = "federation-list.jws";
/// Name of the saved state in `state_dir`.
pub const STATE_FILE_NAME: &str = "federation-list.state.json";

/// Largest list accepted (VZD answer or file).
pub const MAX_LIST_BYTES: usize = 8 * 1024 * 1024;
const VZD_LIMITS: client::Limits = client::Limits {
    connect: Duration::from_secs(5),
    total: Duration::from_secs(30),
    max_body: MAX_LIST_BYTES,
};
/// First retry delay after a failed fetch (doubles per failure).
const RETRY_FIRST: Duration = Duration::from_secs(60);
/// Longest retry delay after failed fetches.
const RETRY_MAX: Duration = Duration::from_secs(15 * 60);
/// The age gauge is refreshed at least this often while [`ListKeeper::run`] waits.
const GAUGE_TICK: Duration = Duration::from_secs(30);

/// Verifies a signed list at a time: the JWS bytes → the list, or why not.
pub type Verifier = Box<dyn Fn(&[u8], SystemTime) -> Result<FederationList, String> + Send + Sync>;
/// The keeper's notion of now.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Errors setting up the keeper.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("{0}")]
    Setup(String),
}

/// Why a fetch did not install or confirm a list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The source answered with a list that is not acceptable (signature, chain, payload, an
    /// older version, a 204 without a held list).
    #[error("invalid list: {0}")]
    Invalid(String),
    /// The source could not be read (connection, timeout, status, size, file).
    #[error("{0}")]
    Source(String),
}

impl FetchError {
    fn label(&self) -> &'static str {
        match self {
            FetchError::Invalid(_) => "invalid",
            FetchError::Source(_) => "error",
        }
    }
}

/// What a successful fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A verified list was installed (a newer or the same version).
    Installed { version: u64 },
    /// The source confirmed the held version (VZD 204); the held list was verified again.
    Unchanged { version: u64 },
}

/// The keeper's state for `/health` and logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeeperStatus {
    /// Version of the held list (current or stale).
    pub version: Option<u64>,
    /// Domains in the held list.
    pub domains: usize,
    /// Last successful verification, RFC 3339 UTC.
    pub last_verified: Option<String>,
    /// Seconds since then.
    pub age_secs: Option<u64>,
    /// No list, or older than the age limit: federation is blocked.
    pub stale: bool,
    /// `vzd` or `file`.
    pub source: &'static str,
    /// The last fetch's error, cleared by the next success.
    pub last_error: Option<String>,
}

enum Source {
    Vzd {
        target: client::Target,
        token: Option<String>,
    },
    File(PathBuf),
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::Vzd { .. } => "vzd",
            Source::File(_) => "file",
        }
    }
}

/// A verified list and when it was last verified successfully.
struct Held {
    list: Arc<FederationList>,
    jws: Bytes,
    last_verified: SystemTime,
}

#[derive(Default)]
struct Inner {
    held: Option<Held>,
    last_error: Option<String>,
    /// When a miss last caused a fetch.
    last_miss_fetch: Option<SystemTime>,
}

/// Keeps the current verified federation list.
pub struct ListKeeper {
    inner: RwLock<Inner>,
    verify: Verifier,
    clock: Clock,
    source: Source,
    state_dir: PathBuf,
    max_age: Duration,
    miss_refetch: Duration,
    refresh_interval: Duration,
    /// Held while a fetch runs (single flight).
    fetching: tokio::sync::Mutex<()>,
    /// Finished fetches (a miss that waited for a running fetch does not fetch again).
    fetches: AtomicU64,
}

impl ListKeeper {
    /// Loads the anchors and the last good list of `state_dir` (no network access).
    pub fn new(cfg: &TiConfig) -> Result<ListKeeper, KeeperError> {
        let anchors = super::pki::TrustAnchors::load(&cfg.tsl_roots, &cfg.intermediates)
            .map_err(|e| KeeperError::Setup(format!("TI trust anchors: {e}")))?;
        let verify: Verifier = Box::new(move |jws, at| {
            super::jws::verify_list(jws, &anchors, at).map_err(|e| e.to_string())
        });
        ListKeeper::with_verifier(cfg, verify, Arc::new(SystemTime::now))
    }

    /// [`ListKeeper::new`] with another verifier and clock (tests, tools).
    pub fn with_verifier(
        cfg: &TiConfig,
        verify: Verifier,
        clock: Clock,
    ) -> Result<ListKeeper, KeeperError> {
        let source = match (&cfg.vzd_url, &cfg.list_file) {
            (Some(url), None) => {
                let target = client::Target::parse(url, cfg.vzd_ca.as_deref(), true)
                    .map_err(|e| KeeperError::Setup(format!("ti.vzd_url: {e}")))?;
                let token = cfg
                    .vzd_token_file
                    .as_deref()
                    .map(|p| read_token(p).map_err(KeeperError::Setup))
                    .transpose()?;
                Source::Vzd { target, token }
            }
            (None, Some(file)) => Source::File(file.clone()),
            _ => {
                return Err(KeeperError::Setup(
                    "[ti] needs exactly one list source: `vzd_url` or `list_file`".into(),
                ))
            }
        };
        if cfg.state_dir.as_os_str().is_empty() {
            return Err(KeeperError::Setup("`ti.state_dir` must be set".into()));
        }
        let keeper = ListKeeper {
            inner: RwLock::new(Inner::default()),
            verify,
            clock,
            source,
            state_dir: cfg.state_dir.clone(),
            max_age: Duration::from_secs(cfg.max_age_secs),
            miss_refetch: Duration::from_secs(cfg.miss_refetch_secs),
            refresh_interval: Duration::from_secs(cfg.refresh_interval_secs.max(1)),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        };
        match keeper.load_saved() {
            Ok(None) => {
                tracing::info!(dir = %keeper.state_dir.display(), "TI: no saved federation list");
            }
            Ok(Some(held)) => {
                tracing::info!(
                    version = held.list.version,
                    domains = held.list.len(),
                    last_verified = %rfc3339(held.last_verified),
                    "TI: saved federation list loaded"
                );
                metrics::gauge!(METRIC_LIST_VERSION).set(held.list.version as f64);
                keeper.write_inner().held = Some(held);
            }
            Err(e) => {
                tracing::warn!(
                    dir = %keeper.state_dir.display(),
                    error = %e,
                    "TI: the saved federation list is not used; federation is blocked until a fetch succeeds"
                );
                keeper.write_inner().last_error = Some(format!("saved list not used: {e}"));
            }
        }
        keeper.publish_age();
        Ok(keeper)
    }

    fn read_inner(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_inner(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn age(&self, last_verified: SystemTime) -> Duration {
        (self.clock)()
            .duration_since(last_verified)
            .unwrap_or(Duration::ZERO)
    }

    /// The list, if one is current (verified within the age limit).
    pub fn current(&self) -> Option<Arc<FederationList>> {
        let inner = self.read_inner();
        let held = inner.held.as_ref()?;
        (self.age(held.last_verified) < self.max_age).then(|| held.list.clone())
    }

    /// The entry of a server name; an unknown domain refetches once (rate limited) first.
    pub async fn check(&self, server_name: &str) -> Result<ListEntry, TiDenial> {
        let list = self.current().ok_or(TiDenial::ListStale)?;
        if let Some(e) = list.lookup(server_name) {
            return Ok(e.clone());
        }
        self.refetch_on_miss(server_name).await;
        let list = self.current().ok_or(TiDenial::ListStale)?;
        list.lookup(server_name)
            .cloned()
            .ok_or_else(|| TiDenial::NotListed {
                domain: super::list::domain_of(server_name),
            })
    }

    /// One fetch for a miss, unless a fetch finished while this one waited or a miss fetched
    /// less than `miss_refetch_secs` ago.
    async fn refetch_on_miss(&self, server_name: &str) {
        let seen = self.fetches.load(Ordering::SeqCst);
        let _flight = self.fetching.lock().await;
        if self.fetches.load(Ordering::SeqCst) != seen {
            return;
        }
        {
            let now = (self.clock)();
            let mut inner = self.write_inner();
            if let Some(t) = inner.last_miss_fetch {
                if now.duration_since(t).unwrap_or(Duration::ZERO) < self.miss_refetch && now >= t {
                    return;
                }
            }
            inner.last_miss_fetch = Some(now);
        }
        tracing::info!(
            server = server_name,
            "TI: not on the federation list; fetching it once"
        );
        let _ = self.fetch_locked().await;
    }

    /// Fetches the list now (waits for a running fetch first) and installs or confirms it.
    pub async fn refresh(&self) -> Result<FetchOutcome, FetchError> {
        let _flight = self.fetching.lock().await;
        self.fetch_locked().await
    }

    /// The fetch, with `fetching` held.
    async fn fetch_locked(&self) -> Result<FetchOutcome, FetchError> {
        let result = self.fetch_once().await;
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let label = match &result {
            Ok(FetchOutcome::Installed { version }) => {
                tracing::info!(
                    version,
                    source = self.source.name(),
                    "TI: federation list installed"
                );
                "ok"
            }
            Ok(FetchOutcome::Unchanged { version }) => {
                tracing::debug!(version, "TI: federation list unchanged");
                "unchanged"
            }
            Err(e) => {
                tracing::warn!(source = self.source.name(), error = %e, "TI: federation list fetch failed; the held list stays");
                e.label()
            }
        };
        {
            let mut inner = self.write_inner();
            inner.last_error = result.as_ref().err().map(|e| e.to_string());
        }
        metrics::counter!(METRIC_FETCH_TOTAL, "result" => label).increment(1);
        self.publish_age();
        result
    }

    async fn fetch_once(&self) -> Result<FetchOutcome, FetchError> {
        match &self.source {
            Source::Vzd { target, token } => {
                let held_version = self.read_inner().held.as_ref().map(|h| h.list.version);
                let path = match held_version {
                    Some(v) => client::with_query_param(target.base(), "version", &v.to_string()),
                    None => target.base().to_owned(),
                };
                let (status, body) = target
                    .get(&path, token.as_deref(), VZD_LIMITS)
                    .await
                    .map_err(|e| FetchError::Source(format!("VZD: {e}")))?;
                match status.as_u16() {
                    200 => {
                        let now = (self.clock)();
                        self.install(body, now, now).await
                    }
                    204 => self.confirm().await,
                    s => Err(FetchError::Source(format!(
                        "VZD {}: answered {s}",
                        target.authority()
                    ))),
                }
            }
            Source::File(path) => {
                let (bytes, mtime) = read_list_file(path).map_err(FetchError::Source)?;
                let now = (self.clock)();
                self.install(Bytes::from(bytes), now, mtime.min(now)).await
            }
        }
    }

    /// Verifies `jws` at `now` and installs it as verified at `fresh_at`.
    async fn install(
        &self,
        jws: Bytes,
        now: SystemTime,
        fresh_at: SystemTime,
    ) -> Result<FetchOutcome, FetchError> {
        let list = (self.verify)(&jws, now).map_err(FetchError::Invalid)?;
        let version = list.version;
        if let Some(held) = self.read_inner().held.as_ref() {
            if version < held.list.version {
                return Err(FetchError::Invalid(format!(
                    "version {version} is older than the held version {}",
                    held.list.version
                )));
            }
        }
        self.save(Some(jws.clone()), version, fresh_at).await;
        self.write_inner().held = Some(Held {
            list: Arc::new(list),
            jws,
            last_verified: fresh_at,
        });
        metrics::gauge!(METRIC_LIST_VERSION).set(version as f64);
        Ok(FetchOutcome::Installed { version })
    }

    /// A 204 for the held version: verify the held list again and count it as verified now.
    async fn confirm(&self) -> Result<FetchOutcome, FetchError> {
        let (jws, version) = match self.read_inner().held.as_ref() {
            Some(h) => (h.jws.clone(), h.list.version),
            None => {
                return Err(FetchError::Invalid(
                    "the VZD answered 204 but no list is held".into(),
                ))
            }
        };
        let now = (self.clock)();
        let list = (self.verify)(&jws, now).map_err(FetchError::Invalid)?;
        if list.version != version {
            return Err(FetchError::Invalid(
                "the held list changed its version".into(),
            ));
        }
        self.save(None, version, now).await;
        if let Some(h) = self.write_inner().held.as_mut() {
            h.last_verified = now;
        }
        Ok(FetchOutcome::Unchanged { version })
    }

    /// Writes the list (when given) and the state to `state_dir`; a failure is logged (the
    /// list in memory is verified either way).
    async fn save(&self, jws: Option<Bytes>, version: u64, verified: SystemTime) {
        let dir = self.state_dir.clone();
        let source = self.source.name();
        let digest = match &jws {
            Some(b) => hex(&Sha256::digest(b)),
            None => match self.read_inner().held.as_ref() {
                Some(h) => hex(&Sha256::digest(&h.jws)),
                None => return,
            },
        };
        let state = SavedState {
            version,
            last_verified: verified
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            last_verified_at: rfc3339(verified),
            source: source.to_owned(),
            sha256: digest,
        };
        let result = tokio::task::spawn_blocking(move || -> Result<(), String> {
            if let Some(b) = &jws {
                write_atomic(&dir, LIST_FILE_NAME, b)?;
            }
            let text = serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?;
            write_atomic(&dir, STATE_FILE_NAME, &text)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = result {
            tracing::warn!(dir = %self.state_dir.display(), error = %e, "TI: cannot save the federation list");
        }
    }

    /// The saved list of `state_dir`, verified again at now; `Ok(None)` when there is none.
    fn load_saved(&self) -> Result<Option<Held>, String> {
        let list_path = self.state_dir.join(LIST_FILE_NAME);
        let state_path = self.state_dir.join(STATE_FILE_NAME);
        if !list_path.exists() && !state_path.exists() {
            return Ok(None);
        }
        let text =
            std::fs::read(&state_path).map_err(|e| format!("{}: {e}", state_path.display()))?;
        let state: SavedState =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", state_path.display()))?;
        let jws = std::fs::read(&list_path).map_err(|e| format!("{}: {e}", list_path.display()))?;
        if hex(&Sha256::digest(&jws)) != state.sha256 {
            return Err(format!(
                "{} does not match the state file",
                list_path.display()
            ));
        }
        let now = (self.clock)();
        let list = (self.verify)(&jws, now).map_err(|e| format!("{}: {e}", list_path.display()))?;
        if list.version != state.version {
            return Err(format!(
                "{}: version {} but the state says {}",
                list_path.display(),
                list.version,
                state.version
            ));
        }
        let last_verified = (UNIX_EPOCH + Duration::from_secs(state.last_verified)).min(now);
        Ok(Some(Held {
            list: Arc::new(list),
            jws: Bytes::from(jws),
            last_verified,
        }))
    }

    /// Sets the age gauge.
    fn publish_age(&self) {
        if let Some(h) = self.read_inner().held.as_ref() {
            metrics::gauge!(METRIC_LIST_AGE_SECONDS).set(self.age(h.last_verified).as_secs_f64());
        }
    }

    /// Version, last verification, age, staleness, source and last error.
    pub fn status(&self) -> KeeperStatus {
        self.publish_age();
        let inner = self.read_inner();
        let held = inner.held.as_ref();
        let age = held.map(|h| self.age(h.last_verified));
        KeeperStatus {
            version: held.map(|h| h.list.version),
            domains: held.map_or(0, |h| h.list.len()),
            last_verified: held.map(|h| rfc3339(h.last_verified)),
            age_secs: age.map(|a| a.as_secs()),
            stale: age.is_none_or(|a| a >= self.max_age),
            source: self.source.name(),
            last_error: inner.last_error.clone(),
        }
    }

    /// Delay before the next fetch after `failures` failed fetches in a row.
    fn next_delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return self.refresh_interval;
        }
        let backoff = RETRY_FIRST
            .saturating_mul(1u32 << (failures - 1).min(16))
            .min(RETRY_MAX);
        backoff.min(self.refresh_interval)
    }

    /// Fetches at start, then every `refresh_interval_secs` (sooner after a failure), until
    /// `shutdown` completes. Keeps the age gauge current meanwhile.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            match self.refresh().await {
                Ok(_) => failures = 0,
                Err(_) => failures = failures.saturating_add(1),
            }
            let until = tokio::time::Instant::now() + self.next_delay(failures);
            loop {
                self.publish_age();
                let now = tokio::time::Instant::now();
                if now >= until {
                    break;
                }
                let step = (until - now).min(GAUGE_TICK);
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(step) => {}
                }
            }
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedState {
    version: u64,
    /// Unix seconds of the last successful verification.
    last_verified: u64,
    /// The same as RFC 3339 (for people).
    last_verified_at: String,
    source: String,
    /// SHA-256 (hex) of the saved JWS.
    sha256: String,
}

/// Reads a token file (content trimmed, not empty).
pub(crate) fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{}: the token file is empty", path.display()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{}: the token must be visible ASCII without spaces",
            path.display()
        ));
    }
    Ok(token.to_owned())
}

/// The list file's bytes (at most [`MAX_LIST_BYTES`]) and modification time.
fn read_list_file(path: &Path) -> Result<(Vec<u8>, SystemTime), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if meta.len() > MAX_LIST_BYTES as u64 {
        return Err(format!(
            "{}: larger than {MAX_LIST_BYTES} bytes",
            path.display()
        ));
    }
    let mtime = meta.modified().map_err(err)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_LIST_BYTES as u64 + 1),
        &mut bytes,
    )
    .map_err(err)?;
    if bytes.len() > MAX_LIST_BYTES {
        return Err(format!(
            "{}: larger than {MAX_LIST_BYTES} bytes",
            path.display()
        ));
    }
    Ok((bytes, mtime))
}

/// Writes `dir/name` atomically: a temporary file in `dir`, fsync, rename, fsync of `dir`.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(dir.join(name)).map_err(|e| err(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A time as RFC 3339 UTC with seconds (`2026-12-06T13:23:52Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests;
