//! Media crossing the guard: every file is inspected before a byte of it is released.
//!
//! Media endpoints (catalog class `media`: `media_download`, `media_thumbnail` and Synapse's
//! legacy `/_matrix/media/{v3,r0}/download/{serverName}/{mediaId}` fallback) are forwarded like
//! any request; their **answer** is what is judged, in the direction its bytes flow (an inbound
//! request's answer leaves the protected side). Phase by phase ([`inspect_answer`]):
//!
//! 1. **collect** — the upstream's answer is buffered up to `[media] max_file_bytes` (plus the
//!    multipart frame), in memory up to `memory_threshold_bytes` and in a temporary file beyond
//!    (`crate::media::spill`); nothing is released while it is read. A larger answer is refused.
//! 2. **frame** — the federation answer must be the strict `multipart/mixed` form (JSON
//!    metadata, then the bytes or a `Location`; `crate::media::multipart`). A `Location` is
//!    followed by the guard itself, only to a host of `[media] redirect_hosts`, and the file is
//!    then answered inline: a `Location` never reaches the requester (its homeserver would
//!    fetch the file past the guard). Any other redirect (a 3xx answer) is refused.
//! 3. **reference** — the mxc index ([`index_decisions`], `store::media_refs`) must hold an
//!    event that crossed the guard, in the direction the file flows and with the same peer, and
//!    references this media (`url`, `file.url`, `info.thumbnail_url`, …). No such event →
//!    refused (`unreferenced`); only events that did not cross as sent (redacted, held,
//!    withheld, refused by a label) → refused (`event_not_released`).
//! 4. **inspect** — the file's type from its bytes against the allow-list of the direction,
//!    archives with limits, text through the DLP rules, YARA-X (`crate::media::inspect`), within
//!    the scan deadline; verdicts are cached by SHA-256, policy version, direction and
//!    destination. An **encrypted attachment** (referenced only through `file` objects, whose
//!    AES keys are in the event) is ciphertext to the guard: it is released on its events'
//!    decision when its bytes look like ciphertext (no known type, high entropy); bytes of a
//!    known type are inspected like any file.
//! 5. **record** — a `media` audit record (verdict, reason, rules, events, SHA-256) is durable
//!    before anything is released; a refused media id is remembered (`[media]
//!    redact_events_with_blocked_media` redacts later events that reference it).
//!
//! A refusal is 403 `M_FORBIDDEN` to the requesting server (reason `media_refused` in
//! `grenzwacht_refusals_total`; the media reason in `grenzwacht_media_decisions_total`).
//! Requests a homeserver makes without the guard (a redirect it follows itself, URL previews,
//! fetches from other networks) are closed by network policy, see `deploy/README.md`.
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use super::guard::Guard;
use super::upstream::{SpillSpec, Upstream, UpstreamError, UpstreamResponse};
use crate::audit::record::{Direction as AuditDirection, MediaRecord, RuleMatch};
use crate::config::MediaConfig;
use crate::federation::catalog::{EndpointClass, Handler};
use crate::media::cache::{CacheKey, VerdictCache};
use crate::media::inspect::{InspectCtx, Inspector, InspectorError};
use crate::media::multipart::{self, Content};
use crate::media::{FileKind, MediaFinding, MediaReason, Report, Scanners};
use crate::policy::{Direction, ExchangeCtx, Layers, Refusal, RefusalReason, UnitDecision};
use crate::store::media_refs::MediaRefRow;
use crate::telemetry as tm;

/// Room for the multipart frame and metadata around a file of `max_file_bytes`.
const FRAME_ALLOWANCE: usize = 64 * 1024;

/// The media side of the guard: configuration, the inspector of the current rules, the
/// verdict cache and the client for redirects.
pub struct MediaGate {
    cfg: MediaConfig,
    /// The inspector built for the scanners of one load (rebuilt when a reload swaps them).
    inspector: Mutex<Option<(ScannerIds, Arc<Inspector>)>>,
    cache: VerdictCache,
    /// Trust roots for following a `Location` over https.
    redirect_tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

/// Identity of a [`Scanners`] value (the addresses of its compiled rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScannerIds(usize, usize);

impl ScannerIds {
    fn of(s: &Scanners) -> Self {
        ScannerIds(
            s.dlp
                .as_ref()
                .map_or(0, |a| Arc::as_ptr(a) as *const u8 as usize),
            s.yara
                .as_ref()
                .map_or(0, |a| Arc::as_ptr(a) as *const u8 as usize),
        )
    }
}

impl MediaGate {
    /// Checks `[media]` (type names) and builds the gate.
    pub fn from_config(
        cfg: &MediaConfig,
        redirect_tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, InspectorError> {
        Inspector::new(cfg, None, None)?;
        Ok(MediaGate {
            cfg: cfg.clone(),
            inspector: Mutex::new(None),
            cache: VerdictCache::new(cfg.cache_entries),
            redirect_tls,
            connect_timeout,
            request_timeout,
        })
    }

    /// Whether media is inspected (`false` only with the unsafe `allow_unscanned`).
    pub fn inspects(&self) -> bool {
        !self.cfg.allow_unscanned
    }

    pub fn config(&self) -> &MediaConfig {
        &self.cfg
    }

    /// How answers of media endpoints are collected.
    pub fn spill(&self) -> SpillSpec {
        SpillSpec {
            max: self.cfg.max_file_bytes.saturating_add(FRAME_ALLOWANCE),
            threshold: self.cfg.memory_threshold_bytes,
            dir: self.cfg.spill_dir.clone(),
        }
    }

    /// The inspector for the rules of one policy snapshot.
    fn inspector(&self, scanners: &Scanners) -> Result<Arc<Inspector>, InspectorError> {
        let ids = ScannerIds::of(scanners);
        let mut slot = self
            .inspector
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((have, i)) = slot.as_ref() {
            if *have == ids {
                return Ok(i.clone());
            }
        }
        let i = Arc::new(Inspector::new(
            &self.cfg,
            scanners.dlp.clone(),
            scanners.yara.clone(),
        )?);
        *slot = Some((ids, i.clone()));
        Ok(i)
    }

    fn redirect_allowed(&self, host: &str) -> bool {
        self.cfg
            .redirect_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    }
}

/// The media a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaTarget {
    /// The server that hosts the media (`mxc://<server_name>/…`).
    pub server_name: String,
    pub media_id: String,
    /// The federation form (multipart answer) rather than the legacy one (raw bytes).
    pub multipart: bool,
}

impl MediaTarget {
    pub fn mxc(&self) -> String {
        format!("mxc://{}/{}", self.server_name, self.media_id)
    }
}

/// Which media a media request is about: the federation endpoints name only the media id
/// (the server asked hosts it), the legacy ones name the server in the path.
pub fn target_of(
    ctx: &ExchangeCtx,
    destination: &str,
    params: &[(&'static str, String)],
) -> Option<MediaTarget> {
    if ctx.endpoint.class != EndpointClass::Media {
        return None;
    }
    let param = |n: &str| params.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
    let media_id = param("mediaId")?;
    match param("serverName") {
        Some(server_name) => Some(MediaTarget {
            server_name,
            media_id,
            multipart: false,
        }),
        None => Some(MediaTarget {
            server_name: destination.to_string(),
            media_id,
            multipart: true,
        }),
    }
}

fn refused(reason: MediaReason, msg: &str) -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
        RefusalReason::MediaRefused,
        format!("media refused by the guard ({}): {msg}", reason.as_str()),
    )
}

fn finding(reason: MediaReason, detail: impl Into<String>) -> MediaFinding {
    MediaFinding {
        reason,
        rule: None,
        path: String::new(),
        detail: detail.into(),
    }
}

/// A report for a file that was not inspected (refused before, or judged by its events).
fn bare_report(bytes: &[u8], kind: FileKind, findings: Vec<MediaFinding>) -> Report {
    Report {
        kind,
        size: bytes.len() as u64,
        sha256: hex(&Sha256::digest(bytes)),
        findings,
        files: 1,
        text_bytes: 0,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the mxc index says about one media for one direction and peer.
struct References {
    events: Vec<String>,
    /// Some referencing event crossed as sent.
    crossed: bool,
    /// Every event that crossed references it only through `file` objects (ciphertext).
    encrypted: bool,
}

fn references(
    guard: &Guard,
    target: &MediaTarget,
    direction: Direction,
    peer: &str,
) -> Result<References, Refusal> {
    let rows = guard
        .store()
        .media_refs(&target.server_name, &target.media_id)
        .map_err(|e| {
            tracing::error!(error = %e, media = %target.mxc(), "mxc index unreadable: refused");
            refused(MediaReason::Internal, "internal error")
        })?;
    let mine: Vec<&MediaRefRow> = rows
        .iter()
        .filter(|r| r.direction == direction.as_str() && r.peer.eq_ignore_ascii_case(peer))
        .collect();
    let crossed: Vec<&&MediaRefRow> = mine.iter().filter(|r| r.crossed).collect();
    Ok(References {
        events: mine.iter().map(|r| r.event_id.clone()).collect(),
        crossed: !crossed.is_empty(),
        encrypted: !crossed.is_empty() && crossed.iter().all(|r| r.encrypted),
    })
}

/// `json` in Matrix canonical form (keys sorted, no insignificant whitespace, escapes only
/// where JSON needs them); `None` if it has none (not JSON, floats, out-of-range integers).
fn canonical_json(json: &[u8]) -> Option<Vec<u8>> {
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(json).ok()?;
    let canonical = crate::federation::canonical::canonical_form(&raw).ok()?;
    Some(canonical.into_owned().into_bytes())
}

/// How a released multipart answer is framed again ([`multipart::build`]): built only when
/// the file is released, so a refused file is never copied.
struct Frame {
    metadata: Vec<u8>,
    content_type: String,
    disposition: Option<String>,
}

/// Every string and object key of a JSON document (the metadata part), decoded (a `\u`
/// escape hides nothing). Not JSON (the parser checked it is): nothing added.
fn json_texts(json: &[u8], out: &mut Vec<String>) {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| {
                out.push(k.clone());
                walk(x, out)
            }),
            _ => {}
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) {
        walk(&v, out);
    }
}

/// The declared type and the served name of a file, as written and percent-decoded
/// (`filename*=UTF-8''…` carries the name percent-encoded). `false` if a value does not
/// decode (bad escapes, not UTF-8): it cannot be judged, so the file is refused.
fn header_texts(
    content_type: Option<&str>,
    disposition: Option<&str>,
    out: &mut Vec<String>,
) -> bool {
    for v in [content_type, disposition].into_iter().flatten() {
        out.push(v.to_string());
        match crate::federation::catalog::percent_decode(v) {
            Ok(std::borrow::Cow::Owned(d)) => out.push(d),
            Ok(std::borrow::Cow::Borrowed(_)) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Bits of entropy per byte (0–8) of a sample of the bytes.
fn entropy(bytes: &[u8]) -> f64 {
    let sample = &bytes[..bytes.len().min(64 * 1024)];
    if sample.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in sample {
        counts[*b as usize] += 1;
    }
    let n = sample.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Ciphertext of an encrypted attachment: no type the guard knows, and bytes that look random
/// (AES-CTR output has ~8 bits of entropy per byte; text or a known format does not pass).
fn looks_encrypted(bytes: &[u8]) -> bool {
    let threshold = if bytes.len() >= 4096 { 7.5 } else { 6.0 };
    crate::media::sniff::sniff(bytes) == FileKind::Unknown
        && bytes.len() >= 16
        && entropy(bytes) >= threshold
}

/// Phases collect → record of a media answer. Returns the answer to release (the bytes
/// inline; a multipart answer rebuilt with a fresh boundary) or the refusal.
pub(crate) async fn inspect_answer(
    guard: &Guard,
    policy: &Layers,
    ctx: &ExchangeCtx,
    target: &MediaTarget,
    up: UpstreamResponse,
) -> Result<UpstreamResponse, Refusal> {
    let gate = guard.media();
    // The file flows the other way than the request.
    let direction = ctx.direction.reverse();
    let peer = ctx.peer.clone().unwrap_or_default();
    let (origin, destination) = match direction {
        Direction::Outbound => (ctx.protected.clone(), peer.clone()),
        Direction::Inbound => (peer.clone(), ctx.protected.clone()),
    };
    let mut record = MediaRecord {
        media: target.mxc(),
        endpoint: ctx.endpoint.id.to_string(),
        origin,
        destination: destination.clone(),
        direction: match direction {
            Direction::Inbound => AuditDirection::Inbound,
            Direction::Outbound => AuditDirection::Outbound,
        },
        verdict: String::new(),
        reason: None,
        rules: Vec::new(),
        file_kind: None,
        size: None,
        sha256: None,
        events: Vec::new(),
        encrypted: false,
        cached: false,
        policy_hash: policy.version().map(str::to_string),
    };
    if up.status.is_redirection() {
        let report = bare_report(
            &[],
            FileKind::Unknown,
            vec![finding(
                MediaReason::Redirect,
                "the answer is a redirect; the guard answers media inline only",
            )],
        );
        return conclude(guard, target, direction, record, &report, None).await;
    }
    if !up.status.is_success() {
        // Errors go on to the JSON checks of the release phase (a Matrix error or nothing).
        return Ok(up);
    }
    // --- frame
    let content_type = up
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut frame: Option<Frame> = None;
    // The text that travels with the file (names, types, metadata): judged too.
    let mut names: Vec<String> = Vec::new();
    let file: Bytes = if target.multipart {
        let answer = match multipart::parse(&content_type, &up.body) {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(media = %target.mxc(), error = %e, "media answer not strict multipart");
                let report = bare_report(
                    &[],
                    FileKind::Unknown,
                    vec![finding(MediaReason::BadMultipart, e.to_string())],
                );
                return conclude(guard, target, direction, record, &report, None).await;
            }
        };
        json_texts(answer.metadata, &mut names);
        // The answer crosses rebuilt, never as the sender framed it: a fresh boundary, the
        // metadata re-serialised, the part headers rewritten, so that neither the boundary nor
        // the spelling of the frame can carry anything.
        let Some(metadata) = canonical_json(answer.metadata) else {
            let report = bare_report(
                &[],
                FileKind::Unknown,
                vec![finding(
                    MediaReason::BadMultipart,
                    "metadata does not re-serialise",
                )],
            );
            return conclude(guard, target, direction, record, &report, None).await;
        };
        match answer.content {
            Content::Bytes {
                bytes,
                content_type,
                disposition,
            } => {
                if !header_texts(content_type.as_deref(), disposition.as_deref(), &mut names) {
                    return unreadable_names(guard, target, direction, record).await;
                }
                frame = Some(Frame {
                    metadata,
                    content_type: content_type.unwrap_or_default(),
                    disposition,
                });
                up.body.slice_ref(bytes)
            }
            Content::Location(url) => match follow(gate, &url).await {
                Ok((bytes, ct, disposition)) => {
                    if !header_texts(Some(&ct), disposition.as_deref(), &mut names) {
                        return unreadable_names(guard, target, direction, record).await;
                    }
                    frame = Some(Frame {
                        metadata,
                        content_type: ct,
                        disposition,
                    });
                    bytes
                }
                Err(f) => {
                    let report = bare_report(&[], FileKind::Unknown, vec![f]);
                    return conclude(guard, target, direction, record, &report, None).await;
                }
            },
        }
    } else {
        let header = |n: http::header::HeaderName| {
            up.headers
                .get(n)
                .and_then(|v| v.to_str().ok().map(str::to_string))
        };
        let readable = header_texts(
            Some(&content_type),
            header(http::header::CONTENT_DISPOSITION).as_deref(),
            &mut names,
        );
        // A header value that is not visible ASCII cannot be read as text either.
        let opaque_header = up
            .headers
            .get(http::header::CONTENT_DISPOSITION)
            .is_some_and(|v| v.to_str().is_err());
        if !readable || opaque_header {
            return unreadable_names(guard, target, direction, record).await;
        }
        up.body.clone()
    };
    // --- reference
    let refs = references(guard, target, direction, &peer)?;
    record.events = refs.events.clone();
    // TI-Messenger profile: in end-to-end encrypted rooms the events that reference a file are
    // ciphertext too, so an encrypted attachment has no reference the guard can see. Bytes
    // that look like ciphertext are released as such (`[ti] release_encrypted`); anything of
    // a known type or readable is still refused unreferenced.
    let ti_ciphertext = refs.events.is_empty()
        && guard.ti().is_some_and(|t| t.releases_encrypted())
        && looks_encrypted(&file);
    if gate.cfg.require_reference && !refs.crossed && !ti_ciphertext {
        let (reason, msg) = if refs.events.is_empty() {
            (
                MediaReason::Unreferenced,
                "no event seen by the guard references this media",
            )
        } else {
            (
                MediaReason::EventNotReleased,
                "the events referencing this media did not cross",
            )
        };
        let report = bare_report(
            &file,
            crate::media::sniff::sniff(&file),
            vec![finding(reason, msg)],
        );
        return conclude(guard, target, direction, record, &report, None).await;
    }
    // --- inspect
    let none = Scanners::default();
    let scanners = policy.attachment::<Scanners>().unwrap_or(&none);
    let inspector = gate.inspector(scanners).map_err(|e| {
        tracing::error!(error = %e, "media inspector unavailable: refused");
        refused(MediaReason::Internal, "internal error")
    })?;
    let ictx = InspectCtx {
        direction,
        peer: ctx.peer.clone(),
        server_name: target.server_name.clone(),
        media_id: target.media_id.clone(),
    };
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let name_findings = inspector.inspect_names(&name_refs, &ictx, "(name, type, metadata)");
    let report = if (refs.encrypted || ti_ciphertext) && looks_encrypted(&file) {
        record.encrypted = true;
        Arc::new(bare_report(&file, FileKind::Unknown, Vec::new()))
    } else {
        let sha: [u8; 32] = Sha256::digest(&file).into();
        let key = CacheKey {
            sha256: sha,
            policy_version: Arc::from(policy.version().unwrap_or("")),
            direction,
            destination: destination.clone(),
        };
        match gate.cache.get(&key) {
            Some(r) => {
                record.cached = true;
                r
            }
            None => {
                let r = Arc::new(inspector.inspect(file.clone(), ictx).await);
                // Timeouts and internal errors are not facts about the file: not cached.
                let transient = r
                    .findings
                    .iter()
                    .any(|f| matches!(f.reason, MediaReason::ScanTimeout | MediaReason::Internal));
                if !transient {
                    gate.cache.insert(key, r.clone());
                }
                r
            }
        }
    };
    let report = if name_findings.is_empty() {
        report
    } else {
        let mut r = (*report).clone();
        r.findings.splice(0..0, name_findings);
        Arc::new(r)
    };
    metrics::counter!(tm::MEDIA_BYTES_TOTAL, "direction" => direction.as_str())
        .increment(file.len() as u64);
    let released = conclude(guard, target, direction, record, &report, Some(up)).await?;
    Ok(match frame {
        None => released,
        Some(f) => {
            let (ct, body) = multipart::build(
                &f.metadata,
                &f.content_type,
                f.disposition.as_deref(),
                &file,
            );
            let body = Bytes::from(body);
            let mut r = released;
            if let Ok(v) = HeaderValue::from_str(&ct) {
                r.headers.insert(http::header::CONTENT_TYPE, v);
            }
            r.headers.remove(http::header::LOCATION);
            r.body = body;
            r
        }
    })
}

/// Refuses a file whose name or type cannot be read as text.
async fn unreadable_names(
    guard: &Guard,
    target: &MediaTarget,
    direction: Direction,
    record: MediaRecord,
) -> Result<UpstreamResponse, Refusal> {
    let report = bare_report(
        &[],
        FileKind::Unknown,
        vec![finding(
            MediaReason::Malformed,
            "the file's name or type does not decode",
        )],
    );
    conclude(guard, target, direction, record, &report, None).await
}

/// Phase **record**: the audit record, metrics, the blocked-media memory; the answer if the
/// report releases it (and `up` is given), else the refusal.
async fn conclude(
    guard: &Guard,
    target: &MediaTarget,
    direction: Direction,
    mut record: MediaRecord,
    report: &Report,
    up: Option<UpstreamResponse>,
) -> Result<UpstreamResponse, Refusal> {
    let release = report.released() && up.is_some();
    record.verdict = if release { "release" } else { "refuse" }.to_string();
    record.reason = report
        .findings
        .first()
        .map(|f| f.reason.as_str().to_string());
    record.rules = report
        .findings
        .iter()
        .map(|f| RuleMatch {
            rule: f
                .rule
                .clone()
                .unwrap_or_else(|| format!("media:{}", f.reason.as_str())),
            field: f.path.clone(),
            excerpt: f.detail.chars().take(200).collect(),
        })
        .collect();
    if report.size > 0 || report.kind != FileKind::Unknown {
        record.file_kind = Some(report.kind.as_str().to_string());
        record.size = Some(report.size);
        record.sha256 = Some(report.sha256.clone());
    }
    if let Some(auditor) = guard.auditor() {
        auditor
            .append(crate::audit::Record::from(record))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, media = %target.mxc(), "media decision not recorded: refused");
                Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "M_UNKNOWN",
                    RefusalReason::Internal,
                    "audit log unavailable",
                )
            })?;
    }
    let reason = report
        .findings
        .first()
        .map(|f| f.reason.as_str())
        .unwrap_or("none");
    metrics::counter!(
        tm::MEDIA_DECISIONS_TOTAL,
        "direction" => direction.as_str(),
        "verdict" => if release { "release" } else { "refuse" },
        "reason" => reason
    )
    .increment(1);
    match (release, up) {
        (true, Some(up)) => {
            tracing::info!(media = %target.mxc(), kind = %report.kind, size = report.size, "media released");
            Ok(up)
        }
        _ => {
            let first = report.findings.first();
            let why = first.map(|f| f.reason).unwrap_or(MediaReason::Internal);
            tracing::info!(
                media = %target.mxc(),
                reason = why.as_str(),
                rule = first.and_then(|f| f.rule.as_deref()).unwrap_or(""),
                "media refused"
            );
            if !matches!(why, MediaReason::ScanTimeout | MediaReason::Internal) {
                if let Err(e) = guard.store().mark_media_blocked(
                    &target.server_name,
                    &target.media_id,
                    why.as_str(),
                    (!report.sha256.is_empty()).then_some(report.sha256.as_str()),
                ) {
                    tracing::warn!(error = %e, "blocked media not remembered");
                }
            }
            let msg = match first.and_then(|f| f.rule.as_deref()) {
                Some(rule) => format!("rule {rule}"),
                None => "the file may not cross".to_string(),
            };
            Err(refused(why, &msg))
        }
    }
}

/// Follows a `Location` of a federation media answer: only to an allow-listed host, once (a
/// further redirect is refused), collected like the answer itself. Returns the bytes, their
/// declared content type and disposition.
async fn follow(
    gate: &MediaGate,
    url: &str,
) -> Result<(Bytes, String, Option<String>), MediaFinding> {
    let bad = |d: &str| finding(MediaReason::Redirect, d.to_string());
    let uri: http::Uri = url.parse().map_err(|_| bad("the Location is not a URL"))?;
    let scheme = uri.scheme_str().unwrap_or("");
    let authority = uri
        .authority()
        .ok_or_else(|| bad("the Location has no host"))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if !gate.redirect_allowed(host) {
        tracing::info!(host = %host.escape_debug(), "media redirect to a host not allowed: refused");
        return Err(bad("redirect to a host not on [media] redirect_hosts"));
    }
    let tls = match scheme {
        "https" => Some(
            gate.redirect_tls
                .clone()
                .ok_or_else(|| bad("no trust roots for https redirects"))?,
        ),
        "http" => None,
        _ => return Err(bad("the Location is neither https nor http")),
    };
    let base = format!("{scheme}://{authority}");
    let client = Upstream::fixed(
        "media",
        &base,
        tls,
        super::upstream::Timeouts {
            connect: gate.connect_timeout,
            first_byte: gate.request_timeout,
            total: gate.request_timeout,
        },
        gate.spill().max,
    )
    .map_err(|_| bad("the Location is not usable"))?;
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let resp = client
        .fetch_redirect(pq, authority.as_str(), &gate.spill())
        .await
        .map_err(|e| {
            tracing::info!(error = %e, "media redirect failed");
            match e {
                UpstreamError::TooLarge { .. } => {
                    finding(MediaReason::TooLarge, "the file exceeds max_file_bytes")
                }
                _ => bad("the redirect target could not be fetched"),
            }
        })?;
    if resp.status != StatusCode::OK {
        return Err(bad("the redirect target did not answer 200"));
    }
    let header = |n: http::header::HeaderName| {
        resp.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ct = header(http::header::CONTENT_TYPE)
        .unwrap_or_else(|| "application/octet-stream".to_string());
    let disposition = header(http::header::CONTENT_DISPOSITION);
    Ok((resp.body, ct, disposition))
}

/// Prunes the mxc index of references older than `[media] reference_retention_days`, hourly.
pub async fn prune(guard: Arc<Guard>, mut stop: super::guard::Shutdown) {
    let keep = Duration::from_secs(
        guard
            .media()
            .cfg
            .reference_retention_days
            .saturating_mul(86_400),
    );
    loop {
        if let Some(before) = std::time::SystemTime::now().checked_sub(keep) {
            let g = guard.clone();
            match tokio::task::spawn_blocking(move || g.store().prune_media_refs(before)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(pruned = n, "mxc index pruned"),
                Ok(Err(e)) => tracing::warn!(error = %e, "mxc index not pruned"),
                _ => {}
            }
        }
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// The mxc index: records which events that crossed (or did not) reference which media,
/// from the decisions of one body. Called with every body's decision records
/// (`proxy::audit_trail`). A failure is logged: downloads then find no reference and are
/// refused (fail closed).
pub(crate) fn index_decisions(
    guard: &Guard,
    ctx: &ExchangeCtx,
    response: bool,
    contents: &[(&UnitDecision, &str)],
) {
    let Some(peer) = ctx.peer.as_deref() else {
        return;
    };
    // Only data-carrying endpoints index; an answer to a media request carries no events.
    if ctx.endpoint.handler == Handler::Keys {
        return;
    }
    let direction = if response {
        ctx.direction.reverse()
    } else {
        ctx.direction
    };
    let now = crate::store::media_refs::now_ms();
    let mut rows = Vec::new();
    for (d, raw) in contents {
        if !raw.contains("mxc://") {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(raw) else {
            continue;
        };
        for r in crate::federation::mxc::refs_in_event(&value) {
            rows.push(MediaRefRow {
                server_name: r.server_name,
                media_id: r.media_id,
                event_id: d.event_id.clone().unwrap_or_default(),
                room_id: d.room_id.clone().unwrap_or_default(),
                direction: direction.as_str().to_string(),
                peer: peer.to_ascii_lowercase(),
                encrypted: r.encrypted,
                crossed: d.effect == crate::policy::decisions::Effect::Crossed,
                verdict: d.verdict.as_str().to_string(),
                ts: now,
            });
        }
    }
    // A row the store would refuse (an event without id) must not sink the others.
    rows.retain(|r| r.check().is_ok());
    if rows.is_empty() {
        return;
    }
    if let Err(e) = guard.store().record_media_refs(&rows) {
        tracing::warn!(error = %e, "mxc index not updated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::catalog;

    fn ctx(id: &str) -> ExchangeCtx {
        ExchangeCtx {
            direction: Direction::Outbound,
            endpoint: catalog::by_id(id).unwrap(),
            peer: Some("hs2.test".into()),
            protected: "hs1.test".into(),
            txn_id: None,
        }
    }

    #[test]
    fn the_media_of_a_request_is_named_by_the_destination_or_the_legacy_path() {
        let params = vec![("mediaId", "AbC".to_string())];
        let t = target_of(&ctx("media_download"), "hs2.test", &params).unwrap();
        assert_eq!(t.mxc(), "mxc://hs2.test/AbC");
        assert!(t.multipart);
        let t = target_of(&ctx("media_thumbnail"), "hs2.test", &params).unwrap();
        assert_eq!(t.mxc(), "mxc://hs2.test/AbC");
        let legacy = vec![
            ("serverName", "hs3.test".to_string()),
            ("mediaId", "XyZ".to_string()),
        ];
        let t = target_of(&ctx("legacy_media_download_v3"), "hs2.test", &legacy).unwrap();
        assert_eq!(t.mxc(), "mxc://hs3.test/XyZ");
        assert!(!t.multipart);
        assert_eq!(
            target_of(&ctx("send_transaction"), "hs2.test", &params),
            None
        );
        assert_eq!(target_of(&ctx("media_download"), "hs2.test", &[]), None);
    }

    #[test]
    fn only_random_looking_bytes_of_no_known_type_pass_as_ciphertext() {
        use rand::RngCore;
        let mut random = vec![0u8; 8192];
        rand::thread_rng().fill_bytes(&mut random);
        // No magic number by chance (a random start can look like an MP3 frame sync).
        random[..4].copy_from_slice(b"\x17\x42\x17\x42");
        assert!(entropy(&random) > 7.9);
        assert!(looks_encrypted(&random));
        let text = "GEHEIM Lagebericht ".repeat(400).into_bytes();
        assert!(entropy(&text) < 5.0);
        assert!(!looks_encrypted(&text), "plain text is no ciphertext");
        assert!(!looks_encrypted(&random[..8]), "too short to tell");
        assert!(!looks_encrypted(&[]));
        assert_eq!(entropy(&[7u8; 100]), 0.0);
    }
}
