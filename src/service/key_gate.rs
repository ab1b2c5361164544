//! One request per key at a time into the database; the others queue inside the instance.
//!
//! Without it, every request for a hot key takes a pooled connection and then waits on the key's
//! advisory lock inside PostgreSQL, and enough of them leave no connection for other keys. With
//! it, requests for a key that already has one in flight wait here, in arrival order, holding
//! nothing, and a hot key uses one connection. The advisory lock still serialises writers across
//! instances and other programs; this only keeps one instance from queueing on it with
//! connections in hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::domain::ProductKey;

/// The gate: a queue per key that has requests in flight.
#[derive(Debug, Default)]
pub struct KeyGate {
    queues: Mutex<HashMap<ProductKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// The right to go to the database for one key; the next request for it enters on drop.
#[derive(Debug)]
pub struct KeyPass<'a> {
    gate: &'a KeyGate,
    key: ProductKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyGate {
    /// Waits (first come, first served) until no other request of this instance is in flight
    /// for `key`.
    pub async fn enter(&self, key: &ProductKey) -> KeyPass<'_> {
        let queue = {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(queues.entry(key.clone()).or_default())
        };
        let guard = queue.lock_owned().await;
        KeyPass {
            gate: self,
            key: key.clone(),
            guard: Some(guard),
        }
    }

    /// Keys with requests in flight or queued.
    pub fn keys_in_flight(&self) -> usize {
        self.queues.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for KeyPass<'_> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let queue = Arc::clone(OwnedMutexGuard::mutex(&guard));
        drop(guard);
        // Clones of a queue are only made under this lock, so the count is exact here: the map's
        // and ours mean nobody is waiting, and the entry can go.
        let mut queues = self.gate.queues.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&queue) == 2 {
            queues.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(serial: &str) -> ProductKey {
        ProductKey::new("b", serial, "m")
    }

    #[tokio::test]
    async fn a_second_request_for_a_key_waits_and_other_keys_do_not() {
        let gate = KeyGate::default();
        let first = gate.enter(&key("1")).await;

        let other =
            tokio::time::timeout(std::time::Duration::from_millis(100), gate.enter(&key("2")))
                .await;
        let same =
            tokio::time::timeout(std::time::Duration::from_millis(100), gate.enter(&key("1")))
                .await;

        assert!(other.is_ok(), "another key enters at once");
        assert!(
            same.is_err(),
            "the same key waits while the first is in flight"
        );
        drop(other);
        drop(first);
        assert_eq!(
            gate.keys_in_flight(),
            0,
            "finished keys leave no entry behind"
        );
        let _again = gate.enter(&key("1")).await;
        assert_eq!(gate.keys_in_flight(), 1);
    }
}
