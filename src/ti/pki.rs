//! Trust anchors for the federation list signer: the TSL root list and intermediates, and the
//! X.509 chain check (brainpoolP256r1 / ECDSA-SHA256). Owner: helper `ti-pki`.
use std::path::Path;
use std::time::SystemTime;

/// Errors reading trust anchors or checking a chain.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0}")]
    Invalid(String),
}

/// Roots (from the TSL root list) and intermediate CA certificates (DER).
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    pub roots: Vec<Vec<u8>>,
    pub intermediates: Vec<Vec<u8>>,
}

impl TrustAnchors {
    /// Reads the TSL root list (JSON) and the intermediate DER files.
    pub fn load(
        _tsl_roots: &Path,
        _intermediates: &[std::path::PathBuf],
    ) -> Result<Self, PkiError> {
        Err(PkiError::Invalid("not implemented".into()))
    }
    /// Checks that `leaf_der` chains to a root at `at` (validity, key usage, CA constraints,
    /// signatures); returns the leaf's brainpoolP256r1 public key (SEC1 bytes).
    pub fn verify_leaf(&self, _leaf_der: &[u8], _at: SystemTime) -> Result<Vec<u8>, PkiError> {
        Err(PkiError::Invalid("not implemented".into()))
    }
}
