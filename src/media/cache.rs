//! Verdicts of inspected files, so the same file is not inspected again.
//!
//! The key is the file's SHA-256 together with everything else the verdict depends on: the
//! policy version (a reload with other rules gives other verdicts), the direction and the
//! destination (rules and allowed types can differ per peer). A [`Report`] is kept whole, so
//! a hit gives the same findings, records and refusal as the first inspection.
//!
//! The cache is bounded ([`VerdictCache::new`] takes the number of entries) and evicts with
//! the CLOCK algorithm (a second-chance approximation of least-recently-used): each entry has
//! a reference bit set by every hit; the eviction hand clears set bits and takes the first
//! entry whose bit is clear. `get` and `insert` are O(1) (amortised for the hand). One
//! `Mutex` guards the table: a lookup is a hash and a few field writes, far shorter than any
//! inspection it saves. Every `get` counts a hit or a miss in
//! [`crate::telemetry::MEDIA_CACHE_TOTAL`] (`result="hit"|"miss"`) and in
//! [`VerdictCache::stats`]. A capacity of 0 disables the cache (every `get` misses).
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Direction, Report};

/// What a verdict depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub sha256: [u8; 32],
    pub policy_version: Arc<str>,
    pub direction: Direction,
    pub destination: String,
}

struct Slot {
    key: CacheKey,
    report: Arc<Report>,
    referenced: bool,
}

struct Table {
    index: HashMap<CacheKey, usize>,
    slots: Vec<Slot>,
    hand: usize,
}

/// A bounded, thread-safe map from [`CacheKey`] to the [`Report`] of the inspection.
pub struct VerdictCache {
    capacity: usize,
    table: Mutex<Table>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (hits, misses) = self.stats();
        f.debug_struct("VerdictCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .field("hits", &hits)
            .field("misses", &misses)
            .finish()
    }
}

impl VerdictCache {
    /// A cache of at most `capacity` verdicts.
    pub fn new(capacity: usize) -> Self {
        VerdictCache {
            capacity,
            table: Mutex::new(Table {
                index: HashMap::with_capacity(capacity.min(1 << 16)),
                slots: Vec::with_capacity(capacity.min(1 << 16)),
                hand: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic cannot leave a half-written entry: every write below is complete or absent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The verdict for `key`, if cached; counts a hit or a miss.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Report>> {
        let found = {
            let mut t = self.table();
            match t.index.get(key).copied() {
                Some(i) => {
                    let slot = &mut t.slots[i];
                    slot.referenced = true;
                    Some(slot.report.clone())
                }
                None => None,
            }
        };
        let result = if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            "hit"
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            "miss"
        };
        crate::telemetry::record_media_cache(result);
        found
    }

    /// Store the verdict for `key` (replacing an earlier one for the same key), evicting one
    /// entry when full.
    pub fn insert(&self, key: CacheKey, report: Arc<Report>) {
        if self.capacity == 0 {
            return;
        }
        let mut t = self.table();
        if let Some(&i) = t.index.get(&key) {
            let slot = &mut t.slots[i];
            slot.report = report;
            slot.referenced = true;
            return;
        }
        if t.slots.len() < self.capacity {
            let i = t.slots.len();
            t.slots.push(Slot {
                key: key.clone(),
                report,
                referenced: false,
            });
            t.index.insert(key, i);
            return;
        }
        // CLOCK: clear reference bits until an unreferenced slot is under the hand. Ends
        // within two turns (the first turn clears every bit).
        let victim = loop {
            let h = t.hand;
            t.hand = (h + 1) % self.capacity;
            let slot = &mut t.slots[h];
            if slot.referenced {
                slot.referenced = false;
            } else {
                break h;
            }
        };
        let old = std::mem::replace(
            &mut t.slots[victim],
            Slot {
                key: key.clone(),
                report,
                referenced: false,
            },
        );
        t.index.remove(&old.key);
        t.index.insert(key, victim);
    }

    /// Entries now cached.
    pub fn len(&self) -> usize {
        self.table().slots.len()
    }

    /// Nothing cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// (hits, misses) counted by [`VerdictCache::get`] since the cache was made.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Drop every entry (e.g. after a policy reload; entries of an old policy version are
    /// never hit again, so this only frees memory sooner).
    pub fn clear(&self) {
        let mut t = self.table();
        t.index.clear();
        t.slots.clear();
        t.hand = 0;
    }
}

#[cfg(test)]
mod tests;
