//! Single flight for [`Cache::get_or_load`](super::Cache::get_or_load): concurrent misses on
//! one key share one loader run.
//!
//! The first caller to miss becomes the *leader* and registers a `watch` channel under the key;
//! later callers (*followers*) subscribe to it and wait. The leader publishes its result
//! (value or error) and then unregisters. If the leader goes away without a result — its
//! loader panicked, or its future was dropped — its guard unregisters the key and drops the
//! sender, so every follower wakes up with "closed" and tries again: one of them becomes the
//! next leader. A key can never stay wedged.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::stats::{Counters, bump};

/// What followers wait on: `None` until the leader's result is in.
type Slot<T, E> = watch::Sender<Option<Result<T, E>>>;

/// The keys being loaded right now, each with its (type-erased) [`Slot`].
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

/// The part a caller plays for one key.
pub(crate) enum Role<'a, T, E> {
    /// Run the loader and publish the result through the guard.
    Leader(LeaderGuard<'a, T, E>),
    /// Wait for the leader's result.
    Follower(watch::Receiver<Option<Result<T, E>>>),
    /// Another call is loading this key with different value / error types: load without
    /// coordination.
    Alone,
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<dyn Any + Send + Sync>>> {
        // The map is never left half-updated, so a panic elsewhere while it was held leaves
        // it usable.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Join the flight for `key`, or start it.
    pub fn join<T, E>(&self, key: &str, counters: &Arc<Counters>) -> Role<'_, T, E>
    where
        T: Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
    {
        let mut map = self.lock();
        if let Some(existing) = map.get(key) {
            return match Arc::clone(existing).downcast::<Slot<T, E>>() {
                Ok(slot) => Role::Follower(slot.subscribe()),
                Err(_) => Role::Alone,
            };
        }
        let slot: Arc<Slot<T, E>> = Arc::new(watch::Sender::new(None));
        let erased: Arc<dyn Any + Send + Sync> = slot.clone();
        map.insert(key.to_string(), erased);
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.to_string(),
            slot,
            counters: Arc::clone(counters),
            finished: false,
        })
    }

    /// Keys being loaded now (for tests and diagnostics).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Held by the leader while its loader runs; unregisters the key when dropped.
pub(crate) struct LeaderGuard<'a, T, E> {
    flights: &'a Flights,
    key: String,
    slot: Arc<Slot<T, E>>,
    counters: Arc<Counters>,
    finished: bool,
}

impl<T, E> LeaderGuard<'_, T, E> {
    /// Hand `result` to every follower; the key is unregistered when the guard drops.
    pub fn finish(mut self, result: Result<T, E>) {
        self.finished = true;
        self.slot.send_replace(Some(result));
    }
}

impl<T, E> Drop for LeaderGuard<'_, T, E> {
    fn drop(&mut self) {
        if !self.finished {
            // Panicked or cancelled: followers see the channel close and retry.
            bump(&self.counters.load_errors);
        }
        let mut map = self.flights.lock();
        let ours = map.get(&self.key).is_some_and(|registered| {
            std::ptr::addr_eq(Arc::as_ptr(registered), Arc::as_ptr(&self.slot))
        });
        if ours {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_then_followers_then_cleanup() {
        let flights = Flights::default();
        let counters = Arc::new(Counters::default());
        let Role::Leader(guard) = flights.join::<u32, String>("k", &counters) else {
            panic!("first caller leads");
        };
        let Role::Follower(mut rx) = flights.join::<u32, String>("k", &counters) else {
            panic!("second caller follows");
        };
        assert!(matches!(
            flights.join::<String, String>("k", &counters),
            Role::Alone
        ));
        guard.finish(Ok(7));
        assert_eq!(flights.len(), 0);
        let value = rx.borrow_and_update().clone();
        assert_eq!(value, Some(Ok(7)));
    }

    #[test]
    fn abandoned_leader_closes_the_channel() {
        let flights = Flights::default();
        let counters = Arc::new(Counters::default());
        let Role::Leader(guard) = flights.join::<u32, String>("k", &counters) else {
            panic!("first caller leads");
        };
        let Role::Follower(rx) = flights.join::<u32, String>("k", &counters) else {
            panic!("second caller follows");
        };
        drop(guard);
        assert!(rx.has_changed().is_err(), "sender dropped");
        assert_eq!(flights.len(), 0);
        assert_eq!(
            counters
                .load_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(matches!(
            flights.join::<u32, String>("k", &counters),
            Role::Leader(_)
        ));
    }
}
