//! Strict multipart/mixed (stub; owner: helper "plumbing").

#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    #[error("stub")]
    Stub,
}

pub struct MediaAnswer<'a> {
    pub metadata: &'a [u8],
    pub content: Content<'a>,
}

pub enum Content<'a> {
    Bytes {
        content_type: Option<String>,
        disposition: Option<String>,
        bytes: &'a [u8],
    },
    Location(String),
}

pub fn parse<'a>(content_type: &str, body: &'a [u8]) -> Result<MediaAnswer<'a>, MultipartError> {
    let _ = (content_type, body);
    Err(MultipartError::Stub)
}

pub fn build(
    metadata: &[u8],
    content_type: &str,
    disposition: Option<&str>,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let _ = (metadata, content_type, disposition, bytes);
    (String::new(), Vec::new())
}
