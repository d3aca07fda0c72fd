//! Collecting a response body whole, in memory up to a threshold and in a temporary file
//! beyond it.
//!
//! A media answer must be read completely before any byte of it is released, and files can
//! be large. [`collect`] keeps up to `threshold` bytes in memory; once the body grows past
//! that, everything (the bytes so far and the rest) goes to an unnamed temporary file
//! (`tempfile::tempfile_in`: no name in the directory, removed by the kernel when the last
//! handle closes, also after a crash), which is then mapped read-only with `memmap2`. The
//! result derefs to `[u8]` either way, and [`Spilled::into_bytes`] hands out a `Bytes`
//! without copying (the mapping is the owner of the `Bytes`).
//!
//! A body longer than `max` fails with [`SpillError::TooLarge`] as soon as the limit is
//! passed (or at once when the body's size hint says so); nothing more is read. File writes
//! go through `tokio::fs` (the blocking thread pool), never on the async worker.
//!
//! The temporary file lives in `dir` or, without one, the system temporary directory. Nobody
//! else can open it (it has no name; `tempfile` creates it with mode 0600 before unlinking
//! it), so the mapping cannot change under the reader.
use std::path::Path;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

/// Why a body could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The body is longer than the limit.
    #[error("body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// The body stream failed (the message is the body's own error, for logs only: it may
    /// carry upstream details and must not be sent to a peer).
    #[error("reading the body failed: {0}")]
    Body(String),
    /// The temporary file could not be created, written or mapped.
    #[error("spill file: {0}")]
    Io(#[from] std::io::Error),
}

/// A collected body: in memory, or in a mapped temporary file.
pub struct Spilled {
    bytes: Bytes,
    spilled: bool,
}

impl std::fmt::Debug for Spilled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spilled")
            .field("len", &self.bytes.len())
            .field("spilled", &self.spilled)
            .finish()
    }
}

impl Spilled {
    /// The bytes, without copying (a spilled body stays mapped until the last clone drops).
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The body went to a temporary file.
    pub fn is_spilled(&self) -> bool {
        self.spilled
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl std::ops::Deref for Spilled {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsRef<[u8]> for Spilled {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Read `body` whole: at most `max` bytes, in memory while it is at most `threshold` bytes,
/// otherwise in an unnamed temporary file in `dir` (the system temporary directory when
/// `None`). Trailers are ignored.
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
    if body.size_hint().lower() > max as u64 {
        return Err(SpillError::TooLarge { limit: max });
    }
    let mut body = std::pin::pin!(body);
    let mut memory: Vec<u8> = Vec::new();
    let mut file: Option<tokio::fs::File> = None;
    let mut len: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| SpillError::Body(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len = match len.checked_add(data.len()) {
            Some(n) if n <= max => n,
            _ => return Err(SpillError::TooLarge { limit: max }),
        };
        if file.is_none() && len > threshold {
            let std_file = match dir {
                Some(d) => {
                    let d = d.to_path_buf();
                    tokio::task::spawn_blocking(move || tempfile::tempfile_in(d)).await
                }
                None => tokio::task::spawn_blocking(tempfile::tempfile).await,
            }
            .map_err(|e| SpillError::Io(std::io::Error::other(e)))??;
            let mut f = tokio::fs::File::from_std(std_file);
            f.write_all(&memory).await?;
            memory = Vec::new();
            file = Some(f);
        }
        match file.as_mut() {
            Some(f) => f.write_all(&data).await?,
            None => memory.extend_from_slice(&data),
        }
    }
    let Some(mut f) = file else {
        return Ok(Spilled {
            bytes: Bytes::from(memory),
            spilled: false,
        });
    };
    f.flush().await?;
    let std_file = f.into_std().await;
    let map = tokio::task::spawn_blocking(move || {
        // SAFETY: the file is unnamed and only this process holds its descriptor (created
        // here, never shared), so nothing can truncate or modify it while it is mapped; the
        // mapping is read-only.
        unsafe { memmap2::Mmap::map(&std_file) }
    })
    .await
    .map_err(|e| SpillError::Io(std::io::Error::other(e)))??;
    if map.len() != len {
        return Err(SpillError::Io(std::io::Error::other(
            "spill file length differs from the bytes written",
        )));
    }
    Ok(Spilled {
        bytes: Bytes::from_owner(map),
        spilled: true,
    })
}

#[cfg(test)]
mod tests;
