//! mxc references in events (stub; owner: helper "plumbing").

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefPlace {
    Url,
    ThumbnailUrl,
    File,
    ThumbnailFile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxcRef {
    pub server_name: String,
    pub media_id: String,
    pub encrypted: bool,
    pub place: RefPlace,
}

pub fn parse_mxc(uri: &str) -> Option<(String, String)> {
    let _ = uri;
    None
}

pub fn refs_in_event(event: &serde_json::Value) -> Vec<MxcRef> {
    let _ = event;
    Vec::new()
}
