use std::thread;

use super::*;
use crate::media::{FileKind, MediaFinding, MediaReason};

fn key(n: u8, version: &str, direction: Direction, dest: &str) -> CacheKey {
    CacheKey {
        sha256: [n; 32],
        policy_version: Arc::from(version),
        direction,
        destination: dest.to_owned(),
    }
}

fn k(n: u8) -> CacheKey {
    key(n, "v1", Direction::Outbound, "hs2")
}

fn report(size: u64, refused: bool) -> Arc<Report> {
    Arc::new(Report {
        kind: FileKind::Png,
        size,
        sha256: format!("{size:064x}"),
        findings: if refused {
            vec![MediaFinding {
                reason: MediaReason::Yara,
                rule: Some("yara:x.y".into()),
                path: String::new(),
                detail: "matched".into(),
            }]
        } else {
            Vec::new()
        },
        files: 1,
        text_bytes: 0,
    })
}

#[test]
fn hit_returns_the_same_report_and_counts() {
    let c = VerdictCache::new(4);
    assert!(c.get(&k(1)).is_none());
    let r = report(1, true);
    c.insert(k(1), r.clone());
    let got = c.get(&k(1)).unwrap();
    assert!(Arc::ptr_eq(&got, &r));
    assert!(!got.released());
    assert_eq!(c.stats(), (1, 1));
    assert_eq!(c.len(), 1);
}

#[test]
fn every_key_part_matters() {
    let c = VerdictCache::new(16);
    c.insert(k(1), report(1, false));
    for other in [
        key(2, "v1", Direction::Outbound, "hs2"),
        key(1, "v2", Direction::Outbound, "hs2"),
        key(1, "v1", Direction::Inbound, "hs2"),
        key(1, "v1", Direction::Outbound, "hs3"),
    ] {
        assert!(c.get(&other).is_none(), "{other:?}");
    }
    assert!(c.get(&k(1)).is_some());
}

#[test]
fn insert_replaces_the_verdict_of_a_key() {
    let c = VerdictCache::new(2);
    c.insert(k(1), report(1, false));
    c.insert(k(1), report(2, true));
    assert_eq!(c.len(), 1);
    assert_eq!(c.get(&k(1)).unwrap().size, 2);
}

#[test]
fn bounded_and_a_recently_used_entry_survives_eviction() {
    let c = VerdictCache::new(3);
    for n in 1..=3 {
        c.insert(k(n), report(n.into(), false));
    }
    // 1 is used; 2 and 3 are not: the next insert evicts one of them, never 1.
    assert!(c.get(&k(1)).is_some());
    c.insert(k(4), report(4, false));
    assert_eq!(c.len(), 3);
    assert!(c.get(&k(1)).is_some());
    assert!(c.get(&k(4)).is_some());
    let survivors = [2u8, 3].iter().filter(|&&n| c.get(&k(n)).is_some()).count();
    assert_eq!(survivors, 1);
    // Many more inserts: never more than the capacity.
    for n in 10..200 {
        c.insert(k(n), report(n.into(), false));
        assert!(c.len() <= 3);
    }
    assert!(c.get(&k(199)).is_some());
}

#[test]
fn capacity_zero_caches_nothing() {
    let c = VerdictCache::new(0);
    c.insert(k(1), report(1, false));
    assert!(c.get(&k(1)).is_none());
    assert!(c.is_empty());
    assert_eq!(c.stats(), (0, 1));
}

#[test]
fn clear_empties() {
    let c = VerdictCache::new(2);
    c.insert(k(1), report(1, false));
    c.insert(k(2), report(2, false));
    c.clear();
    assert!(c.is_empty());
    assert!(c.get(&k(1)).is_none());
    c.insert(k(3), report(3, false));
    assert!(c.get(&k(3)).is_some());
}

#[test]
fn shared_between_threads() {
    let c = Arc::new(VerdictCache::new(64));
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || {
                for n in 0..200u8 {
                    let key = key(n, "v1", Direction::Inbound, &format!("hs{t}"));
                    c.insert(key.clone(), report(n.into(), false));
                    let _ = c.get(&key);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(c.len(), 64);
    let (hits, misses) = c.stats();
    assert_eq!(hits + misses, 800);
    // Every index entry points at the slot holding its key.
    let t = c.table();
    assert_eq!(t.index.len(), t.slots.len());
    for (key, &i) in &t.index {
        assert_eq!(&t.slots[i].key, key);
    }
}
