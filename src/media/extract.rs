//! Text extraction (stub; owner: helper "extract").
use super::FileKind;

/// Why no text could be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The file does not parse as its kind.
    #[error("malformed {kind}: {reason}")]
    Malformed { kind: FileKind, reason: String },
    /// Encrypted or otherwise unreadable (password-protected PDF or office file).
    #[error("unreadable {kind}: {reason}")]
    Unreadable { kind: FileKind, reason: String },
    /// The text (or a part read to get it) exceeds the limit.
    #[error("{kind}: text exceeds {limit} bytes")]
    TooLarge { kind: FileKind, limit: usize },
}

/// The text of a file of `kind` for the DLP rules. `Ok(None)` for kinds without text.
pub fn text(kind: FileKind, bytes: &[u8], max_text: usize) -> Result<Option<String>, ExtractError> {
    let _ = (kind, bytes, max_text);
    Ok(None)
}
