//! Spill buffer (stub; owner: helper "plumbing").
use std::path::Path;

use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reading the body failed: {0}")]
    Body(String),
    #[error("spill file: {0}")]
    Io(#[from] std::io::Error),
}

/// A collected body.
pub struct Spilled {
    bytes: Bytes,
}

impl Spilled {
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
    pub fn is_spilled(&self) -> bool {
        false
    }
}

impl std::ops::Deref for Spilled {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

pub async fn collect<B>(
    body: B,
    max: usize,
    threshold: usize,
    dir: Option<&Path>,
) -> Result<Spilled, SpillError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let _ = (body, max, threshold, dir);
    Err(SpillError::Body("stub".into()))
}
