//! Verdict cache (stub; owner: helper "plumbing").
use std::sync::Arc;

use super::{Direction, Report};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub sha256: [u8; 32],
    pub policy_version: Arc<str>,
    pub direction: Direction,
    pub destination: String,
}

pub struct VerdictCache {}

impl VerdictCache {
    pub fn new(capacity: usize) -> Self {
        let _ = capacity;
        VerdictCache {}
    }
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Report>> {
        let _ = key;
        None
    }
    pub fn insert(&self, key: CacheKey, report: Arc<Report>) {
        let _ = (key, report);
    }
}
