//! Cache counters: lock-free atomics updated on every call, read as a [`CacheStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::CacheBackend;

/// A snapshot of a [`Cache`](super::Cache)'s counters, from [`Cache::stats`](super::Cache::stats).
///
/// Counters only grow, from the moment the `Cache` was built; clones of one `Cache` share them.
/// Every field is meaningful for every backend (a field that cannot move for a backend stays
/// 0: `errors` for `memory`, `evictions` for `redis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// The backend these numbers describe.
    pub backend: CacheBackend,
    /// Reads answered with a value (from either tier).
    pub hits: u64,
    /// Of `hits`, those answered by the in-process (moka) tier without touching Redis: all of
    /// them for `memory`, none for `redis`.
    pub local_hits: u64,
    /// Reads that found nothing, including reads that gave up because Redis failed or was slow.
    pub misses: u64,
    /// Loader runs started by [`get_or_load`](super::Cache::get_or_load) (one per key per
    /// miss, however many callers waited for it).
    pub loads: u64,
    /// Of `loads`, those whose loader returned an error (or panicked, or was cancelled).
    pub load_errors: u64,
    /// Entries the in-process tier evicted to stay within its byte budget (including entries
    /// it refused to admit).
    pub evictions: u64,
    /// Entries the in-process tier dropped because their TTL ran out.
    pub expirations: u64,
    /// Redis round trips that failed or exceeded the configured timeout, plus invalidations
    /// that were not confirmed in time.
    pub errors: u64,
    /// Values that could not be encoded to or decoded from JSON by the typed
    /// [`get`](super::Cache::get) / [`set`](super::Cache::set) (a decoding failure reads as a
    /// miss).
    pub codec_errors: u64,
    /// Invalidation messages this instance applied to its in-process tier (tiered only).
    pub invalidations_received: u64,
    /// Entries in the in-process tier now (approximate; 0 for `redis`).
    pub entries: u64,
    /// Bytes (keys + values + tags) held by the in-process tier now (approximate; 0 for
    /// `redis`).
    pub bytes: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 before the first read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

/// The live counters behind [`CacheStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub local_hits: AtomicU64,
    pub misses: AtomicU64,
    pub loads: AtomicU64,
    pub load_errors: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
    pub errors: AtomicU64,
    pub codec_errors: AtomicU64,
    pub invalidations_received: AtomicU64,
}

/// Add one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A cache tier, as the process-wide metrics label it (`tier="memory"`, `tier="redis"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// The in-process moka tier.
    Memory,
    /// The Redis tier.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Redis,
}

/// What a tier did, for the process-wide metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// `chopin_cache_hits_total`.
    Hit,
    /// `chopin_cache_misses_total`.
    Miss,
    /// `chopin_cache_sets_total`.
    Set,
    /// `chopin_cache_evictions_total`.
    Eviction,
    /// `chopin_cache_errors_total`.
    Error,
}

/// Count `event` on `tier` in the process-wide metrics (`chopin_cache_*`; feature `metrics`,
/// nothing without it): one atomic add. Called at the points that update [`Counters`], so a
/// `memory` cache's [`CacheStats`] and the metrics agree.
#[inline]
pub(crate) fn record(tier: Tier, event: Event) {
    #[cfg(feature = "metrics")]
    {
        use crate::metrics::{CacheEvent, CacheTier};
        let tier = match tier {
            Tier::Memory => CacheTier::Memory,
            Tier::Redis => CacheTier::Redis,
        };
        let event = match event {
            Event::Hit => CacheEvent::Hit,
            Event::Miss => CacheEvent::Miss,
            Event::Set => CacheEvent::Set,
            Event::Eviction => CacheEvent::Eviction,
            Event::Error => CacheEvent::Error,
        };
        crate::metrics::global().cache.record(tier, event);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (tier, event);
}

/// A failed Redis round trip (or unconfirmed invalidation): [`CacheStats::errors`] and
/// `chopin_cache_errors_total{tier="redis"}`.
#[cfg(feature = "redis")]
pub(crate) fn redis_error(counters: &Counters) {
    bump(&counters.errors);
    record(Tier::Redis, Event::Error);
}

impl Counters {
    /// A snapshot; `entries` and `bytes` come from the in-process tier, if any.
    pub fn snapshot(&self, backend: CacheBackend, entries: u64, bytes: u64) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            backend,
            hits: get(&self.hits),
            local_hits: get(&self.local_hits),
            misses: get(&self.misses),
            loads: get(&self.loads),
            load_errors: get(&self.load_errors),
            evictions: get(&self.evictions),
            expirations: get(&self.expirations),
            errors: get(&self.errors),
            codec_errors: get(&self.codec_errors),
            invalidations_received: get(&self.invalidations_received),
            entries,
            bytes,
        }
    }
}
