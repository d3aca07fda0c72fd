//! One transaction at a time from an origin to a destination.
//!
//! Synapse answers a transaction that arrives while another one from the same origin is still
//! being processed with 429 (`Too many concurrent transactions`), and the sender then backs off
//! that destination. A homeserver sends one transaction at a time per destination, but the
//! guard also sends its own transactions as that origin (the delivery of held traffic), which
//! would collide with the homeserver's. Every `/send` the guard forwards or delivers takes the
//! slot of its (origin, destination) for the time of the upstream request, so the receiver never
//! sees two at once from the guard.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

/// One slot: held while a transaction of its pair is in flight.
type Slot = Arc<tokio::sync::Mutex<()>>;

/// The slots, one per (origin, destination) pair seen (a few per destination server).
#[derive(Default)]
pub struct TxnSlots {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl TxnSlots {
    /// Waits until no other transaction from `origin` to `destination` is in flight through
    /// the guard; the slot is held until the returned guard is dropped.
    pub async fn acquire(&self, origin: &str, destination: &str) -> OwnedMutexGuard<()> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((
                origin.to_ascii_lowercase(),
                destination.to_ascii_lowercase(),
            ))
            .or_default()
            .clone();
        slot.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_transaction_per_origin_and_destination_at_a_time() {
        let slots = Arc::new(TxnSlots::default());
        let held = slots.acquire("hs1", "hs2").await;
        // Another pair is free.
        let other = tokio::time::timeout(Duration::from_millis(50), slots.acquire("hs1", "hs3"))
            .await
            .expect("another destination is not blocked");
        drop(other);
        // The same pair (names are case-insensitive) waits until the first is done.
        let s = slots.clone();
        let waiting = tokio::spawn(async move { s.acquire("HS1", "hs2").await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a second transaction went in flight"
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the slot is free again")
            .unwrap();
    }
}
