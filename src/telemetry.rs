//! Logging (tracing) and metrics (Prometheus) set-up, and the guard's metric vocabulary.
//!
//! # Logs
//!
//! [`init_tracing`] installs a `tracing-subscriber` fmt layer writing to stderr (systemd's
//! journal and container runtimes collect stderr), as human-readable text (with colour codes
//! only when stderr is a terminal, [`ansi_for_stderr`]) or as one JSON object per line (`[log] format = "json"`, for SIEM ingestion). The filter is an `EnvFilter`
//! directive from the config (`[log] level`); a non-empty `RUST_LOG` overrides it, so an
//! operator can raise verbosity for one run without editing the config.
//!
//! # Metrics
//!
//! [`metrics_handle`] installs a Prometheus recorder as the process-global `metrics` recorder
//! the first time it is called and returns a handle to it on every call (so tests in one
//! process can all call it). The admin listener renders the handle on `GET /metrics`
//! ([`crate::admin`]). A background thread runs the recorder's upkeep every
//! [`UPKEEP_INTERVAL`] so histogram samples are folded into buckets even when nobody scrapes.
//!
//! Metric names and label values are fixed here so dashboards and alerts can rely on them:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | [`REQUESTS_TOTAL`] `grenzwacht_requests_total` | counter | `direction`, `endpoint` (catalog id or `unknown`), `status` (HTTP status code the guard answered) |
//! | [`REQUEST_DURATION_SECONDS`] `grenzwacht_request_duration_seconds` | histogram, [`DURATION_BUCKETS`] | `direction`, `endpoint` |
//! | [`BYTES_TOTAL`] `grenzwacht_bytes_total` | counter | `direction`, `kind` = `request` \| `response` |
//! | [`REFUSALS_TOTAL`] `grenzwacht_refusals_total` | counter | `direction`, `reason` ([`RefusalReason`]) |
//! | [`UPSTREAM_REQUESTS_TOTAL`] `grenzwacht_upstream_requests_total` | counter | `direction`, `status` (upstream status code, or `error` when no response arrived) |
//! | [`CONNECTIONS_TOTAL`] `grenzwacht_connections_total` | counter | `listener` ([`Listener`]) |
//! | [`TUNNELS_ACTIVE`] `grenzwacht_tunnels_active` | gauge | — |
//! | [`UI_REQUESTS_TOTAL`] `grenzwacht_ui_requests_total` | counter | `page`, `status` (review UI, `admin::ui`) |
//! | [`ADMISSION_REFUSED_TOTAL`] `grenzwacht_admission_refused_total` | counter | `listener` ([`Listener`]), `cause` (`connections`, `connections_per_ip`, `body_budget`, `body_budget_origin`, `body_timeout`, `key_fetches`) |
//! | [`CONNECTIONS_OPEN`] `grenzwacht_connections_open` | gauge | `side` (`inbound`; `outbound`: proxy and CONNECT listeners together) |
//! | [`DLP_DECISIONS_TOTAL`] `grenzwacht_dlp_decisions_total` | counter | `mode`, `action`, `rule` (deciding rule id of the loaded set, or `other`) |
//! | [`YARA_TEXT_DECISIONS_TOTAL`] `grenzwacht_yara_text_decisions_total` | counter | `action`, `result` (`match`, `scan_failed`, `unreadable`) |
//! | [`DECISIONS_TOTAL`] `grenzwacht_decisions_total` | counter | `direction`, `verdict`, `unit` (see `policy::decisions`) |
//! | [`BODY_BUDGET_BYTES`] `grenzwacht_body_budget_bytes` | gauge | `direction`: bytes of unauthenticated request bodies held |
//!
//! `direction` is `inbound` (remote → protected) or `outbound` (protected → remote), see
//! [`Direction`]. The `record_*` helpers below are the intended way to update these metrics;
//! they keep label names and values consistent.
use std::sync::OnceLock;
use std::time::Duration;

use metrics::SharedString;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Errors of the logging set-up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter directive (from config or `RUST_LOG`) does not parse.
    #[error("invalid log filter {filter:?}: {message}")]
    Filter {
        /// The directive as given.
        filter: String,
        /// The parser's complaint.
        message: String,
    },
    /// A global tracing subscriber is already installed.
    #[error("logging is already initialised: {0}")]
    AlreadyInitialised(String),
}

/// Builds the filter: `rust_log` (the value of `RUST_LOG`) if set and non-blank, else `filter`.
pub fn build_filter(filter: &str, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let directive = match rust_log {
        Some(env) if !env.trim().is_empty() => env,
        _ => filter,
    };
    EnvFilter::try_new(directive).map_err(|e| TelemetryError::Filter {
        filter: directive.to_string(),
        message: e.to_string(),
    })
}

/// Whether log lines on stderr get ANSI colour codes: only when stderr is a terminal and
/// `NO_COLOR` is not set.
pub fn ansi_for_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global tracing subscriber: text or JSON lines on stderr, filtered by `filter`
/// (an `EnvFilter` directive such as `info` or `grenzwacht=debug,hyper=warn`), or by
/// `RUST_LOG` when that is set. Fails on a bad directive or when called twice.
pub fn init_tracing(json: bool, filter: &str) -> Result<(), TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = build_filter(filter, rust_log.as_deref())?;
    // Colour codes only for a terminal: a log file (the lab's, a service manager's) gets
    // plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi_for_stderr())
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}

/// Counter: DLP decisions with at least one match, by `mode` (enforce/shadow), winning
/// `action` and the `rule` that decided (an id of the loaded rule set, else `other`).
pub const DLP_DECISIONS_TOTAL: &str = "grenzwacht_dlp_decisions_total";
/// Counter: events judged by the YARA `text` rules with a match or a failed scan, by winning
/// `action` and `result` (`match`, `scan_failed`, `unreadable`).
pub const YARA_TEXT_DECISIONS_TOTAL: &str = "grenzwacht_yara_text_decisions_total";
/// Counter: per-unit policy decisions, by `direction` (the way the data flows), `verdict`
/// (`allow`, `redact`, `hold`, `reject`, `drop`, `withhold`, `unjudged`) and `unit` (`pdu`,
/// `event`, `edu`, `to_device`, `field`); see `policy::decisions`.
pub const DECISIONS_TOTAL: &str = "grenzwacht_decisions_total";
/// Metric: decisions on opaque content, by direction and outcome.
pub const OPAQUE_DECISIONS_TOTAL: &str = "grenzwacht_opaque_decisions_total";
/// Counter: policy reloads by `result` (ok, refused, refused_shrink, accepted_shrink).
pub const POLICY_RELOADS_TOTAL: &str = "grenzwacht_policy_reloads_total";
/// Gauge: rules in the running policy input, by `input` (`dlp`).
pub const POLICY_RULES_LOADED: &str = "grenzwacht_policy_rules_loaded";
/// Gauge: files in the running policy input, by `input`.
pub const POLICY_FILES_LOADED: &str = "grenzwacht_policy_files_loaded";
/// Gauge: the first 48 bits of the running input's fingerprint, by `input`.
pub const POLICY_FINGERPRINT: &str = "grenzwacht_policy_fingerprint";
/// Counter: federation requests answered by the guard.
pub const REQUESTS_TOTAL: &str = "grenzwacht_requests_total";
/// Histogram: time from request received to response sent, in seconds.
pub const REQUEST_DURATION_SECONDS: &str = "grenzwacht_request_duration_seconds";
/// Counter: body bytes passed through the guard.
pub const BYTES_TOTAL: &str = "grenzwacht_bytes_total";
/// Counter: requests or responses refused, by reason.
pub const REFUSALS_TOTAL: &str = "grenzwacht_refusals_total";
/// Counter: the guard's own PDU checks (`direction`, `outcome` ∈ verified, hash_mismatch,
/// bad_signature, keys_unavailable, unknown_room_version).
pub const PDU_CHECKS_TOTAL: &str = "grenzwacht_pdu_checks_total";
/// Counter: requests the guard sent on (to a protected homeserver or a remote server).
pub const UPSTREAM_REQUESTS_TOTAL: &str = "grenzwacht_upstream_requests_total";
/// Counter: accepted TCP connections per listener.
pub const CONNECTIONS_TOTAL: &str = "grenzwacht_connections_total";
/// Counter: connections or requests turned away by `proxy::admission` (caps, budgets, timeouts).
pub const ADMISSION_REFUSED_TOTAL: &str = "grenzwacht_admission_refused_total";
/// Gauge: open connections counted against the `[admission]` caps, per side.
pub const CONNECTIONS_OPEN: &str = "grenzwacht_connections_open";
/// Gauge: bytes of request bodies held before their authentication, per direction.
pub const BODY_BUDGET_BYTES: &str = "grenzwacht_body_budget_bytes";
/// Gauge: open CONNECT tunnels.
pub const TUNNELS_ACTIVE: &str = "grenzwacht_tunnels_active";
/// Counter: review UI requests by `page` (`root`, `login`, `logout`, `held`, `event`,
/// `decide`, `audit`, `other`) and `status` (the code, `5xx` or `other`).
pub const UI_REQUESTS_TOTAL: &str = "grenzwacht_ui_requests_total";
/// Gauge: rooms paused, by the direction their data is held back (`proxy::pause`).
pub const PAUSED_ROOMS: &str = "grenzwacht_paused_rooms";
/// Counter: events withheld because their room is paused, by direction and cause (`paused`:
/// the room was paused before; `redaction_kept`: a rule still matched the redacted event). In
/// a transaction the PDU is removed; any other exchange carrying one is refused (404).
pub const WITHHELD_PDUS_TOTAL: &str = "grenzwacht_withheld_pdus_total";
/// Counter: sender notices by result (`sent`, `failed`, `rate_limited`, `queue_full`,
/// `no_admin_api`, `duplicate`).
pub const NOTICES_TOTAL: &str = "grenzwacht_notices_total";
/// Gauge: held events waiting for a review decision, by direction (`proxy::hold`).
pub const HELD_EVENTS: &str = "grenzwacht_held_events";
/// Gauge: PDUs waiting in hold queues for delivery (held ones and those behind them), by
/// direction.
pub const HOLD_QUEUE_DEPTH: &str = "grenzwacht_hold_queue_depth";
/// Histogram: seconds from holding an event to its final decision, by decision
/// (`release`/`reject`).
pub const REVIEW_LATENCY_SECONDS: &str = "grenzwacht_review_latency_seconds";
/// Counter: delivery attempts of held traffic, by result (`delivered`, `failed`, `refused`).
pub const HOLD_DELIVERIES_TOTAL: &str = "grenzwacht_hold_deliveries_total";
/// Gauge: 1 while the audit log can be written, 0 once it failed (`crate::audit`).
/// Files judged by media inspection, by `direction`, `verdict` (`release`, `refuse`) and
/// `reason` (`crate::media::MediaReason`, `none` for releases).
pub const MEDIA_DECISIONS_TOTAL: &str = "grenzwacht_media_decisions_total";
/// Bytes of files inspected, by `direction`.
pub const MEDIA_BYTES_TOTAL: &str = "grenzwacht_media_bytes_total";
pub const AUDIT_HEALTHY: &str = "grenzwacht_audit_healthy";
/// Counter: audit log failures (each puts the auditor in the failed state).
pub const AUDIT_FAILURES_TOTAL: &str = "grenzwacht_audit_failures_total";
/// Counter: records appended to the audit log (durable).
pub const AUDIT_RECORDS_TOTAL: &str = "grenzwacht_audit_records_total";
/// Gauge: 1 while the audit syslog forwarder is connected to its collector.
pub const AUDIT_SYSLOG_CONNECTED: &str = "grenzwacht_audit_syslog_connected";
/// Counter: audit records not forwarded to syslog because the queue was full.
pub const AUDIT_SYSLOG_DROPPED_TOTAL: &str = "grenzwacht_audit_syslog_dropped_total";
/// Counter: lookups in the media verdict cache (`crate::media::cache`), by result (`hit`,
/// `miss`).
pub const MEDIA_CACHE_TOTAL: &str = "grenzwacht_media_cache_total";

/// Histogram buckets of [`REQUEST_DURATION_SECONDS`]: 0.1 ms to 10 s, roughly 1-2.5-5 per
/// decade (the guard adds well under a millisecond; `send_join` through a slow upstream takes
/// seconds).
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often the metrics upkeep thread runs.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Traffic direction label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Remote server → protected homeserver.
    Inbound,
    /// Protected homeserver → remote server.
    Outbound,
}

impl Direction {
    /// The other direction (the data of a response flows against its request).
    pub fn reverse(self) -> Direction {
        match self {
            Direction::Inbound => Direction::Outbound,
            Direction::Outbound => Direction::Inbound,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Listener label of [`CONNECTIONS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The inbound federation TLS listener.
    Inbound,
    /// The outbound HTTP CONNECT proxy.
    Connect,
    /// The outbound Synapse federation proxy listener.
    Proxy,
    /// The admin listener.
    Admin,
}

impl Listener {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Inbound => "inbound",
            Listener::Connect => "connect",
            Listener::Proxy => "proxy",
            Listener::Admin => "admin",
        }
    }
}

/// Kind label of [`BYTES_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// Request bodies.
    Request,
    /// Response bodies.
    Response,
}

impl BodyKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::Request => "request",
            BodyKind::Response => "response",
        }
    }
}

/// Reason label of [`REFUSALS_TOTAL`]: a fixed set, so the label cardinality stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The request matches no catalog entry.
    UnknownEndpoint,
    /// A body is not (acceptable) JSON: syntax, duplicate keys, depth, PDU/EDU counts; or a
    /// path or query parameter does not percent-decode to UTF-8.
    BadJson,
    /// A body or PDU exceeds a size limit.
    TooLarge,
    /// The remote server name is refused by policy.
    ServerDenied,
    /// The endpoint class is refused by policy.
    ClassDenied,
    /// The client address may not use an outbound listener.
    ClientDenied,
    /// Missing or wrong proxy secret / authentication.
    Auth,
    /// The upstream failed or sent an unacceptable response.
    Upstream,
    /// An internal fault (fail closed).
    Internal,
    /// No route to the destination (discovery failed or disabled).
    NoRoute,
    /// A content rule of the policy refused (or could not apply its verdict).
    Policy,
    /// An event that must be redacted is in a room whose version the guard does not know.
    UnknownRoomVersion,
    /// The event's room is paused towards the side it would reach (`proxy::pause`).
    RoomPaused,
    /// Text the request itself carries (path or query parameter, non-event body) was refused
    /// by a content rule.
    RequestText,
    /// Text a response carries outside its events and user-data fields (key material,
    /// identifiers, directory members, error messages) was refused by a content rule.
    ResponseText,
    /// A media download or thumbnail refused by inspection (`crate::media`): type, size,
    /// archive limits, DLP or YARA-X rules, the mxc index, a redirect.
    MediaRefused,
    /// A connection cap or the budget of unauthenticated bodies is exhausted (503, retry).
    Overloaded,
    /// The request body did not arrive within `[admission] body_timeout_ms`.
    Timeout,
    /// The TI-Messenger profile refused it (`crate::ti`): a domain not on the federation list,
    /// a stale list, an invite the invitee's permissions refuse, a client-server rule.
    TiDenied,
    /// The guard did not decide within `[limits] decision_timeout_ms` (fail closed).
    DecisionTimeout,
}

impl RefusalReason {
    /// Every reason, in label order.
    pub const ALL: [RefusalReason; 20] = [
        RefusalReason::UnknownEndpoint,
        RefusalReason::BadJson,
        RefusalReason::TooLarge,
        RefusalReason::ServerDenied,
        RefusalReason::ClassDenied,
        RefusalReason::ClientDenied,
        RefusalReason::Auth,
        RefusalReason::Upstream,
        RefusalReason::Internal,
        RefusalReason::NoRoute,
        RefusalReason::Policy,
        RefusalReason::UnknownRoomVersion,
        RefusalReason::RoomPaused,
        RefusalReason::RequestText,
        RefusalReason::ResponseText,
        RefusalReason::MediaRefused,
        RefusalReason::Overloaded,
        RefusalReason::Timeout,
        RefusalReason::TiDenied,
        RefusalReason::DecisionTimeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::UnknownEndpoint => "unknown_endpoint",
            RefusalReason::BadJson => "bad_json",
            RefusalReason::TooLarge => "too_large",
            RefusalReason::ServerDenied => "server_denied",
            RefusalReason::ClassDenied => "class_denied",
            RefusalReason::ClientDenied => "client_denied",
            RefusalReason::Auth => "auth",
            RefusalReason::Upstream => "upstream",
            RefusalReason::Internal => "internal",
            RefusalReason::NoRoute => "no_route",
            RefusalReason::Policy => "policy",
            RefusalReason::UnknownRoomVersion => "unknown_room_version",
            RefusalReason::RoomPaused => "room_paused",
            RefusalReason::RequestText => "request_text",
            RefusalReason::ResponseText => "response_text",
            RefusalReason::MediaRefused => "media_refused",
            RefusalReason::Overloaded => "overloaded",
            RefusalReason::DecisionTimeout => "decision_timeout",
            RefusalReason::Timeout => "timeout",
            RefusalReason::TiDenied => "ti_denied",
        }
    }
}

/// The Prometheus builder with the guard's histogram buckets.
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(REQUEST_DURATION_SECONDS.to_string()),
            DURATION_BUCKETS,
        )
        .expect("DURATION_BUCKETS is not empty")
        .set_buckets_for_metric(
            Matcher::Full(REVIEW_LATENCY_SECONDS.to_string()),
            REVIEW_LATENCY_BUCKETS,
        )
        .expect("REVIEW_LATENCY_BUCKETS is not empty")
}

/// Histogram buckets of [`REVIEW_LATENCY_SECONDS`]: 10 s to a week.
pub const REVIEW_LATENCY_BUCKETS: &[f64] =
    &[10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 604800.0];

/// Handle to the process-global Prometheus recorder, installing it (and describing the metrics)
/// on first use. Safe to call any number of times from any thread.
///
/// If some other `metrics` recorder was installed first, a warning is logged and the returned
/// handle belongs to a recorder that receives nothing; grenzwacht itself never installs another.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!("metrics: a global recorder is already installed: {e}");
            }
            describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!("metrics: cannot start the upkeep thread: {e}");
            }
            handle
        })
        .clone()
}

/// Registers the descriptions (Prometheus `# HELP`) of all grenzwacht metrics with the global
/// recorder. Idempotent; called by [`metrics_handle`].
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        REQUESTS_TOTAL,
        "Federation requests answered by the guard, by direction, catalog endpoint and status."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from request received to response sent, by direction and catalog endpoint."
    );
    describe_counter!(
        BYTES_TOTAL,
        Unit::Bytes,
        "Body bytes passed through the guard, by direction and kind (request/response)."
    );
    describe_counter!(
        REFUSALS_TOTAL,
        "Requests or responses refused by the guard, by direction and reason."
    );
    describe_counter!(
        UPSTREAM_REQUESTS_TOTAL,
        "Requests sent on by the guard, by direction and upstream status (or error)."
    );
    describe_counter!(
        PDU_CHECKS_TOTAL,
        "PDU signature and content-hash checks by the guard, by direction and outcome."
    );
    describe_counter!(
        POLICY_RELOADS_TOTAL,
        "Policy (DLP rule set) reloads, by result (ok, refused, refused_shrink, accepted_shrink)."
    );
    describe_gauge!(
        POLICY_RULES_LOADED,
        "Rules in the running policy input, by input (dlp)."
    );
    describe_gauge!(
        POLICY_FILES_LOADED,
        "Files in the running policy input, by input (dlp)."
    );
    describe_gauge!(
        POLICY_FINGERPRINT,
        "First 48 bits of the running policy input's SHA-256 fingerprint (as `grenzwacht policy check` prints it), by input."
    );
    describe_counter!(
        DLP_DECISIONS_TOTAL,
        "DLP scans with matches, by mode (enforce, shadow), winning action and deciding rule."
    );
    describe_counter!(
        YARA_TEXT_DECISIONS_TOTAL,
        "Events judged by YARA text rules with a match or a failed scan, by action and result."
    );
    describe_counter!(
        DECISIONS_TOTAL,
        "Policy decisions per unit (PDU, event, EDU, to-device message, field), by direction, verdict and unit."
    );
    describe_counter!(
        OPAQUE_DECISIONS_TOTAL,
        "Decisions on opaque content (ciphertext, encrypted attachments), by direction and outcome."
    );
    describe_counter!(
        MEDIA_DECISIONS_TOTAL,
        "Files judged by media inspection, by direction, verdict and reason."
    );
    describe_counter!(
        MEDIA_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of files inspected, by direction."
    );
    describe_counter!(CONNECTIONS_TOTAL, "Accepted TCP connections, by listener.");
    describe_gauge!(TUNNELS_ACTIVE, "Open CONNECT tunnels.");
    describe_counter!(UI_REQUESTS_TOTAL, "Review UI requests, by page and status.");
    describe_counter!(
        ADMISSION_REFUSED_TOTAL,
        "Connections or requests turned away by a cap, budget or timeout, by listener and cause."
    );
    describe_gauge!(
        CONNECTIONS_OPEN,
        "Open connections counted against the admission caps, by side (inbound, outbound)."
    );
    describe_gauge!(
        BODY_BUDGET_BYTES,
        Unit::Bytes,
        "Bytes of request bodies held before their authentication, by direction."
    );
    describe_gauge!(
        PAUSED_ROOMS,
        "Rooms paused, by the direction their data is held back."
    );
    describe_counter!(
        NOTICES_TOTAL,
        "Notices to protected senders about their events (redacted, held, rejected), by result."
    );
    describe_gauge!(
        HELD_EVENTS,
        "Held events waiting for a review decision, by direction."
    );
    describe_gauge!(
        HOLD_QUEUE_DEPTH,
        "PDUs waiting in hold queues for delivery, by direction."
    );
    describe_histogram!(
        REVIEW_LATENCY_SECONDS,
        Unit::Seconds,
        "Seconds from holding an event to its final review decision, by decision."
    );
    describe_counter!(
        HOLD_DELIVERIES_TOTAL,
        "Delivery attempts of held traffic, by result."
    );
    describe_counter!(WITHHELD_PDUS_TOTAL, "Events withheld because their room is paused, by direction and cause (removed from a transaction; any other exchange carrying one is refused).");
    describe_gauge!(
        AUDIT_HEALTHY,
        "1 while the audit log can be written; 0 once it failed (nothing crosses)."
    );
    describe_counter!(
        AUDIT_FAILURES_TOTAL,
        "Audit log write failures (each puts the audit log in the failed state)."
    );
    describe_counter!(
        AUDIT_RECORDS_TOTAL,
        "Records appended durably to the audit log."
    );
    describe_gauge!(
        AUDIT_SYSLOG_CONNECTED,
        "1 while the audit syslog forwarder is connected to its collector."
    );
    describe_counter!(
        AUDIT_SYSLOG_DROPPED_TOTAL,
        "Audit records not forwarded to syslog because the forwarding queue was full."
    );
    describe_counter!(
        MEDIA_CACHE_TOTAL,
        "Lookups in the media verdict cache (SHA-256, policy version, direction, destination), by result (hit, miss)."
    );
}

/// Label value for an HTTP status code (static for the common ones: no allocation).
fn status_label(status: u16) -> SharedString {
    let s: &'static str = match status {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => return SharedString::from(other.to_string()),
    };
    SharedString::from(s)
}

/// Counts one answered federation request and records its duration.
pub fn record_request(
    direction: Direction,
    endpoint: impl Into<SharedString>,
    status: u16,
    elapsed: Duration,
) {
    let endpoint = endpoint.into();
    metrics::counter!(REQUESTS_TOTAL,
        "direction" => direction.as_str(),
        "endpoint" => endpoint.clone(),
        "status" => status_label(status))
    .increment(1);
    metrics::histogram!(REQUEST_DURATION_SECONDS,
        "direction" => direction.as_str(),
        "endpoint" => endpoint)
    .record(elapsed.as_secs_f64());
}

/// Adds `bytes` to the body byte counter.
pub fn record_bytes(direction: Direction, kind: BodyKind, bytes: u64) {
    metrics::counter!(BYTES_TOTAL,
        "direction" => direction.as_str(),
        "kind" => kind.as_str())
    .increment(bytes);
}

/// Counts one PDU check; `outcome` is one of the fixed names of [`PDU_CHECKS_TOTAL`].
pub fn record_pdu_check(direction: Direction, outcome: &'static str) {
    metrics::counter!(PDU_CHECKS_TOTAL,
        "direction" => direction.as_str(),
        "outcome" => outcome)
    .increment(1);
}

/// Counts one refusal.
pub fn record_refusal(direction: Direction, reason: RefusalReason) {
    metrics::counter!(REFUSALS_TOTAL,
        "direction" => direction.as_str(),
        "reason" => reason.as_str())
    .increment(1);
}

/// Counts one request sent on; `status` is `None` when no response arrived (label `error`).
pub fn record_upstream(direction: Direction, status: Option<u16>) {
    let status = status.map_or(SharedString::from("error"), status_label);
    metrics::counter!(UPSTREAM_REQUESTS_TOTAL,
        "direction" => direction.as_str(),
        "status" => status)
    .increment(1);
}

/// Sets the number of rooms paused in `direction`.
pub fn set_paused_rooms(direction: Direction, n: usize) {
    metrics::gauge!(PAUSED_ROOMS, "direction" => direction.as_str()).set(n as f64);
}

/// Counts one event withheld (paused room); `cause` is `paused` or `redaction_kept`.
pub fn record_withheld(direction: Direction, cause: &'static str) {
    metrics::counter!(WITHHELD_PDUS_TOTAL,
        "direction" => direction.as_str(),
        "cause" => cause)
    .increment(1);
}

/// Counts `n` unit decisions ([`DECISIONS_TOTAL`]); `verdict` and `unit` come from the fixed
/// sets of `policy::decisions`.
pub fn record_decisions(direction: Direction, verdict: &'static str, unit: &'static str, n: u64) {
    metrics::counter!(DECISIONS_TOTAL,
        "direction" => direction.as_str(),
        "verdict" => verdict,
        "unit" => unit)
    .increment(n);
}

/// Sets the number of held events waiting for a decision and of queued PDUs in `direction`.
pub fn set_holds(direction: Direction, held: usize, queued: usize) {
    metrics::gauge!(HELD_EVENTS, "direction" => direction.as_str()).set(held as f64);
    metrics::gauge!(HOLD_QUEUE_DEPTH, "direction" => direction.as_str()).set(queued as f64);
}

/// Records the time a held event waited for its final decision (`release`/`reject`).
pub fn record_review_latency(decision: &'static str, seconds: f64) {
    metrics::histogram!(REVIEW_LATENCY_SECONDS, "decision" => decision).record(seconds);
}

/// Counts one lookup in the media verdict cache (`hit` or `miss`).
pub fn record_media_cache(result: &'static str) {
    metrics::counter!(MEDIA_CACHE_TOTAL, "result" => result).increment(1);
}

/// Counts one delivery attempt of held traffic (`delivered`, `failed`, `refused`).
pub fn record_hold_delivery(result: &'static str) {
    metrics::counter!(HOLD_DELIVERIES_TOTAL, "result" => result).increment(1);
}

/// Counts one accepted connection.
pub fn record_connection(listener: Listener) {
    metrics::counter!(CONNECTIONS_TOTAL, "listener" => listener.as_str()).increment(1);
}

/// Marks a CONNECT tunnel open until the returned guard is dropped.
pub fn tunnel_opened() -> TunnelGuard {
    metrics::gauge!(TUNNELS_ACTIVE).increment(1.0);
    TunnelGuard { _private: () }
}

/// Decrements [`TUNNELS_ACTIVE`] when dropped; see [`tunnel_opened`].
#[derive(Debug)]
#[must_use = "the tunnel counts as open only while the guard lives"]
pub struct TunnelGuard {
    _private: (),
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        metrics::gauge!(TUNNELS_ACTIVE).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line starting with `prefix` (name + labels) in `text`.
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn filter_from_config_or_rust_log() {
        assert!(build_filter("info", None).is_ok());
        assert!(build_filter("grenzwacht=debug,hyper=warn", None).is_ok());
        let err = build_filter("grenzwacht=loud", None).unwrap_err();
        assert!(
            matches!(err, TelemetryError::Filter { ref filter, .. } if filter == "grenzwacht=loud")
        );
        // RUST_LOG wins over the config, blank RUST_LOG does not.
        let err = build_filter("info", Some("x=nonsense")).unwrap_err();
        assert!(matches!(err, TelemetryError::Filter { ref filter, .. } if filter == "x=nonsense"));
        assert!(build_filter("info", Some("  ")).is_ok());
        let f = build_filter("info", Some("debug")).unwrap();
        assert_eq!(f.to_string(), "debug");
    }

    #[test]
    fn handle_is_shared_and_renders_guard_metrics() {
        let a = metrics_handle();
        let b = metrics_handle();
        // A unique endpoint label so parallel tests cannot interfere.
        let endpoint = "telemetry_test_endpoint";
        record_request(
            Direction::Inbound,
            endpoint,
            200,
            Duration::from_micros(300),
        );
        record_request(Direction::Inbound, endpoint, 200, Duration::from_millis(30));
        record_request(Direction::Inbound, endpoint, 599, Duration::from_millis(30));
        let text = b.render();
        assert!(text.contains("# HELP grenzwacht_requests_total"), "{text}");
        let line = format!(
            "{REQUESTS_TOTAL}{{direction=\"inbound\",endpoint=\"{endpoint}\",status=\"200\"}}"
        );
        assert_eq!(sample(&text, &line), Some(2.0), "{text}");
        // Both handles see the same recorder.
        assert_eq!(sample(&a.render(), &line), Some(2.0));
        let line = format!(
            "{REQUESTS_TOTAL}{{direction=\"inbound\",endpoint=\"{endpoint}\",status=\"599\"}}"
        );
        assert_eq!(sample(&text, &line), Some(1.0), "{text}");
        // A real histogram with our buckets, not a summary.
        let bucket = |le: &str| {
            format!(
                "{REQUEST_DURATION_SECONDS}_bucket{{direction=\"inbound\",endpoint=\"{endpoint}\",le=\"{le}\"}}"
            )
        };
        assert_eq!(sample(&text, &bucket("0.0001")), Some(0.0), "{text}");
        assert_eq!(sample(&text, &bucket("0.0005")), Some(1.0), "{text}");
        assert_eq!(sample(&text, &bucket("0.05")), Some(3.0), "{text}");
        assert_eq!(sample(&text, &bucket("10")), Some(3.0), "{text}");
    }

    #[test]
    fn refusal_upstream_and_tunnel_metrics() {
        // A local recorder: isolated from whatever else the test process records.
        let recorder = builder().build_recorder();
        let h = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            record_refusal(Direction::Outbound, RefusalReason::NoRoute);
            record_refusal(Direction::Outbound, RefusalReason::NoRoute);
            record_upstream(Direction::Outbound, None);
            record_upstream(Direction::Inbound, Some(502));
            record_bytes(Direction::Inbound, BodyKind::Response, 1234);
            record_connection(Listener::Connect);
            let guard1 = tunnel_opened();
            let guard2 = tunnel_opened();
            assert_eq!(sample(&h.render(), TUNNELS_ACTIVE), Some(2.0));
            drop(guard1);
            assert_eq!(sample(&h.render(), TUNNELS_ACTIVE), Some(1.0));
            drop(guard2);
        });
        let text = h.render();
        assert_eq!(sample(&text, TUNNELS_ACTIVE), Some(0.0), "{text}");
        let expect = [
            (
                format!("{REFUSALS_TOTAL}{{direction=\"outbound\",reason=\"no_route\"}}"),
                2.0,
            ),
            (
                format!("{UPSTREAM_REQUESTS_TOTAL}{{direction=\"outbound\",status=\"error\"}}"),
                1.0,
            ),
            (
                format!("{UPSTREAM_REQUESTS_TOTAL}{{direction=\"inbound\",status=\"502\"}}"),
                1.0,
            ),
            (
                format!("{BYTES_TOTAL}{{direction=\"inbound\",kind=\"response\"}}"),
                1234.0,
            ),
            (format!("{CONNECTIONS_TOTAL}{{listener=\"connect\"}}"), 1.0),
        ];
        for (line, value) in expect {
            assert_eq!(sample(&text, &line), Some(value), "{line} in\n{text}");
        }
        assert!(
            text.contains("# HELP grenzwacht_tunnels_active Open CONNECT tunnels."),
            "{text}"
        );
    }

    #[test]
    fn refusal_reasons_are_distinct() {
        let mut labels: Vec<_> = RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
    }
}
