//! The inspector (stub; owner: helper "inspector").
use std::sync::Arc;

use bytes::Bytes;

use super::{Direction, MediaConfig, Report};
use crate::policy::dlp::Engine;

/// Who the file goes to and where it comes from.
#[derive(Debug, Clone)]
pub struct InspectCtx {
    /// The direction the file's bytes flow (seen from the protected side).
    pub direction: Direction,
    /// The remote server taking part.
    pub peer: Option<String>,
    /// The server that hosts the media (`mxc://<server_name>/<media_id>`).
    pub server_name: String,
    pub media_id: String,
}

/// Why an inspector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InspectorError {
    #[error("[media.types] {0}")]
    UnknownType(String),
}

/// Runs every check on one file.
pub struct Inspector {
    _cfg: MediaConfig,
}

impl Inspector {
    pub fn new(
        cfg: &MediaConfig,
        dlp: Option<Arc<Engine>>,
        yara: Option<Arc<super::yara::YaraRules>>,
    ) -> Result<Inspector, InspectorError> {
        let _ = (dlp, yara);
        Ok(Inspector { _cfg: cfg.clone() })
    }

    /// Inspects one file on the calling thread (CPU-bound).
    pub fn inspect_blocking(&self, bytes: &[u8], ctx: &InspectCtx) -> Report {
        let _ = (bytes, ctx);
        unimplemented!("stub")
    }

    /// Inspects one file on a blocking thread, within `scan_deadline_ms` and the cap on
    /// concurrent scans; a timeout is a refusal (`MediaReason::ScanTimeout`).
    pub async fn inspect(self: &Arc<Self>, bytes: Bytes, ctx: InspectCtx) -> Report {
        let _ = (bytes, ctx);
        unimplemented!("stub")
    }
}
