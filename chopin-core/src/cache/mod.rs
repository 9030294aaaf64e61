//! Caching: one [`Cache`] handle over three backends, plus HTTP caching ([`http`]).
//!
//! | backend | where entries live | shared between instances | needs |
//! |---|---|---|---|
//! | [`Cache::memory`] | an in-process moka cache bounded by bytes | no | nothing |
//! | `Cache::redis` | Redis | yes | feature `redis` |
//! | `Cache::tiered` | moka in front of Redis, kept coherent by pub/sub | yes | feature `redis` |
//!
//! Values are JSON (through [`crate::json`], the one JSON engine) for the typed
//! [`get`](Cache::get) / [`set`](Cache::set), or raw bytes for
//! [`get_bytes`](Cache::get_bytes) / [`set_bytes`](Cache::set_bytes). Every entry has a TTL.
//! [`get_or_load`](Cache::get_or_load) runs a loader on a miss, once per key however many
//! callers miss at the same time.
//!
//! ```
//! use std::time::Duration;
//! use chopin_core::cache::{Cache, CacheConfig};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Post { id: u64, title: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cache = Cache::memory(&CacheConfig::default());
//! let ttl = Duration::from_secs(60);
//!
//! cache.set("post:7", &Post { id: 7, title: "Hello".into() }, ttl).await;
//! assert_eq!(cache.get::<Post>("post:7").await.map(|p| p.title), Some("Hello".into()));
//!
//! // On a miss the loader runs (once, even with many concurrent callers) and its value is
//! // cached; errors are returned and not cached.
//! let post = cache
//!     .get_or_load("post:8", ttl, || async {
//!         Ok::<_, chopin_core::ChopinError>(Post { id: 8, title: "Loaded".into() })
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(post.id, 8);
//!
//! cache.delete_prefix("post:").await.unwrap();
//! assert!(cache.get::<Post>("post:7").await.is_none());
//! # }
//! ```
//!
//! **Failure.** When Redis is unreachable or slow, every call gives up after
//! [`CacheConfig::timeout`]: reads are misses, writes are skipped, deletes return
//! [`CacheError::Unavailable`] — never a panic, never a blocked runtime — and the connection
//! comes back by itself. See `docs/caching.md` for the whole story, including how the tiered
//! backend keeps instances coherent.

pub mod http;

mod flight;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod stats;
#[cfg(feature = "redis")]
mod tiered;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::config::cache::{CacheBackend, CacheConfig};
pub use stats::CacheStats;

use crate::error::{BoxError, ChopinError, DEFAULT_RETRY_AFTER};
use crate::json;
use flight::{Flights, Role};
use memory::{Entry, MemoryTier};
use stats::{Counters, Event, Tier, bump, record};

/// What a read found, and which tiers it asked (for [`CacheStats`] and the metrics).
pub(crate) struct Lookup {
    /// The stored bytes, if a tier had them.
    value: Option<Bytes>,
    /// The tier that answered: the one holding the value, or the last one asked.
    tier: Tier,
    /// Whether the in-process tier was asked first and missed (`tiered` only).
    memory_missed: bool,
}

impl Lookup {
    /// `value`, found in `tier`.
    pub(crate) fn found(value: Bytes, tier: Tier, memory_missed: bool) -> Lookup {
        Lookup {
            value: Some(value),
            tier,
            memory_missed,
        }
    }

    /// Nothing; `tier` was the last asked.
    pub(crate) fn missed(tier: Tier, memory_missed: bool) -> Lookup {
        Lookup {
            value: None,
            tier,
            memory_missed,
        }
    }
}

/// The longest time a `tiered` cache keeps an entry in its in-process tier, whatever the
/// entry's TTL in Redis: the bound on staleness should an invalidation bypass Chopin (a `DEL`
/// from `redis-cli`, another program writing the namespace).
pub const TIERED_LOCAL_TTL_MAX: Duration = Duration::from_secs(10);

/// The longest TTL an entry can have; longer TTLs are shortened to this.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A TTL as whole milliseconds (rounded up), between 1 ms and [`MAX_TTL`].
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms)
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL.as_secs() * 1000)
}

/// A TTL rounded up to whole milliseconds, between 1 ms and [`MAX_TTL`] (what Redis stores,
/// applied to every backend alike).
fn normalize_ttl(ttl: Duration) -> Duration {
    Duration::from_millis(ttl_millis(ttl))
}

/// Why a cache could not be built, or a delete could not be confirmed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Redis failed or did not answer within [`CacheConfig::timeout`] — or, for a `tiered`
    /// delete, not every instance confirmed the invalidation in time. The deletion may have
    /// happened in part (in Redis but not everywhere, or on some keys of a prefix); deletes
    /// are idempotent, so retrying is safe. Converts into a 503 [`ChopinError`].
    #[error("cache unavailable: Redis failed or did not answer in time")]
    Unavailable,
    /// Redis could not be reached (or refused the credentials) when the cache was built.
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        /// `REDIS_URL` with its password redacted.
        url: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The [`CacheConfig`] cannot be used (bad URL, namespace or timeout).
    #[error("invalid cache configuration: {0}")]
    InvalidConfig(String),
    /// The configured backend needs a cargo feature this build of chopin-core lacks.
    #[error("the `{0}` cache backend needs chopin-core's `redis` cargo feature")]
    FeatureDisabled(CacheBackend),
}

/// A Redis that could not be reached when a cache was built is an error of the Redis tier
/// in the metrics (the cache, and its [`CacheStats`], never came to be).
#[cfg(feature = "redis")]
fn count_connect_failure(err: &CacheError) {
    if matches!(err, CacheError::Connect { .. }) {
        record(Tier::Redis, Event::Error);
    }
}

impl From<CacheError> for ChopinError {
    fn from(err: CacheError) -> Self {
        match err {
            CacheError::Unavailable => ChopinError::ServiceUnavailable {
                message: "the cache is unavailable; retry shortly".into(),
                retry_after: DEFAULT_RETRY_AFTER,
                source: Some(Box::new(err)),
            },
            other => ChopinError::internal(other),
        }
    }
}

/// A cache handle: cheap to clone (an `Arc` inside), `Send + Sync`; clones share entries,
/// connections and [`stats`](Cache::stats). Build one at start-up and put it in your state.
///
/// Keys are any string; in Redis they are stored as `<namespace>:<key>`. Keys starting with
/// `tag:` are reserved for tag sets.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    kind: CacheBackend,
    namespace: String,
    /// `CacheConfig::x_cache_header`: the default of the response cache layers on this cache.
    x_cache_header: bool,
    counters: Arc<Counters>,
    flights: Flights,
}

enum Backend {
    Memory(MemoryTier),
    #[cfg(feature = "redis")]
    Redis {
        tier: Box<redis::RedisTier>,
        /// Identifies this instance's invalidation messages.
        instance: String,
    },
    #[cfg(feature = "redis")]
    Tiered(tiered::Tiered),
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.kind)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

impl Cache {
    fn build(
        backend: Backend,
        kind: CacheBackend,
        config: &CacheConfig,
        counters: Arc<Counters>,
    ) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                backend,
                kind,
                namespace: config.namespace.clone(),
                x_cache_header: config.x_cache_header,
                counters,
                flights: Flights::default(),
            }),
        }
    }

    /// An in-process cache (moka) holding at most `config.memory_bytes` of keys + values;
    /// least useful entries are evicted first. Nothing is shared with other processes.
    pub fn memory(config: &CacheConfig) -> Cache {
        let counters = Arc::new(Counters::default());
        let tier = MemoryTier::new(config.memory_bytes, Arc::clone(&counters));
        Cache::build(
            Backend::Memory(tier),
            CacheBackend::Memory,
            config,
            counters,
        )
    }

    /// A cache in Redis at `config.redis_url`, shared by every instance using the same
    /// namespace. Connects now and fails within about a second (at least
    /// `config.timeout`) when Redis is unreachable; afterwards the connection reconnects by
    /// itself.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn redis(config: &CacheConfig) -> Result<Cache, CacheError> {
        let counters = Arc::new(Counters::default());
        let tier = redis::RedisTier::connect(config, Arc::clone(&counters))
            .await
            .inspect_err(count_connect_failure)?;
        Ok(Cache::build(
            Backend::Redis {
                tier: Box::new(tier),
                instance: tiered::instance_id(),
            },
            CacheBackend::Redis,
            config,
            counters,
        ))
    }

    /// A moka tier (`config.memory_bytes`) in front of Redis, with cross-instance
    /// invalidation over pub/sub (`<namespace>:invalidate`): after a delete returns `Ok` on
    /// one instance, no instance serves the deleted value. Connects and subscribes now,
    /// failing fast like [`Cache::redis`].
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn tiered(config: &CacheConfig) -> Result<Cache, CacheError> {
        let counters = Arc::new(Counters::default());
        let tiered = tiered::Tiered::connect(config, Arc::clone(&counters))
            .await
            .inspect_err(count_connect_failure)?;
        Ok(Cache::build(
            Backend::Tiered(tiered),
            CacheBackend::Tiered,
            config,
            counters,
        ))
    }

    /// The backend `config.backend` names. Without the `redis` feature, `Redis` and
    /// `Tiered` are [`CacheError::FeatureDisabled`].
    pub async fn from_config(config: &CacheConfig) -> Result<Cache, CacheError> {
        match config.backend {
            CacheBackend::Memory => Ok(Cache::memory(config)),
            #[cfg(feature = "redis")]
            CacheBackend::Redis => Cache::redis(config).await,
            #[cfg(feature = "redis")]
            CacheBackend::Tiered => Cache::tiered(config).await,
            #[cfg(not(feature = "redis"))]
            other => Err(CacheError::FeatureDisabled(other)),
        }
    }

    /// Whether response cache layers built on this cache send `x-cache` by default
    /// (`CHOPIN_CACHE_HEADER`, [`CacheConfig::x_cache_header`]).
    pub fn x_cache_header(&self) -> bool {
        self.inner.x_cache_header
    }

    /// Which backend this is.
    pub fn backend(&self) -> CacheBackend {
        self.inner.kind
    }

    /// The namespace (`CHOPIN_CACHE_NAMESPACE`): the prefix of every Redis key.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The stored bytes and the tiers asked; not counted in stats.
    async fn fetch(&self, key: &str) -> Lookup {
        match &self.inner.backend {
            Backend::Memory(tier) => match tier.get(key).await {
                Some(value) => Lookup::found(value, Tier::Memory, false),
                None => Lookup::missed(Tier::Memory, false),
            },
            #[cfg(feature = "redis")]
            Backend::Redis { tier, .. } => match tier.get(key).await {
                Ok(Some(value)) => Lookup::found(value, Tier::Redis, false),
                // A failure was counted as an error where it happened; it reads as a miss.
                Ok(None) | Err(_) => Lookup::missed(Tier::Redis, false),
            },
            #[cfg(feature = "redis")]
            Backend::Tiered(tiered) => tiered.get(key).await,
        }
    }

    /// Count a read that returned a value: in stats, and as a hit of the tier that answered
    /// (after a miss of the in-process tier when it was asked first) in the metrics.
    fn record_hit(&self, lookup: &Lookup) {
        bump(&self.inner.counters.hits);
        if lookup.tier == Tier::Memory {
            bump(&self.inner.counters.local_hits);
        }
        if lookup.memory_missed {
            record(Tier::Memory, Event::Miss);
        }
        record(lookup.tier, Event::Hit);
    }

    /// Count a read that returned nothing: a miss of every tier it asked.
    fn record_miss(&self, lookup: &Lookup) {
        bump(&self.inner.counters.misses);
        if lookup.memory_missed {
            record(Tier::Memory, Event::Miss);
        }
        record(lookup.tier, Event::Miss);
    }

    /// The value under `key`, decoded from JSON; `None` when absent, expired, not decodable
    /// as `T` (counted in [`CacheStats::codec_errors`]), or when Redis fails.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let lookup = self.fetch(key).await;
        let Some(bytes) = &lookup.value else {
            self.record_miss(&lookup);
            return None;
        };
        match json::from_slice::<T>(bytes) {
            Ok(value) => {
                self.record_hit(&lookup);
                Some(value)
            }
            Err(e) => {
                // Bad stored data: an error of the tier that held it, and a miss.
                bump(&self.inner.counters.codec_errors);
                record(lookup.tier, Event::Error);
                self.record_miss(&lookup);
                tracing::debug!(key, error = %e, "cached value does not decode; treated as a miss");
                None
            }
        }
    }

    /// Store `value` as JSON under `key` for `ttl`. A value that cannot be encoded is not
    /// stored (counted in [`CacheStats::codec_errors`]); when Redis fails, nothing is stored.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T, ttl: Duration) {
        match json::to_bytes(value) {
            Ok(bytes) => self.set_bytes(key, bytes, ttl).await,
            Err(e) => {
                bump(&self.inner.counters.codec_errors);
                tracing::warn!(key, error = %e, "value not cached: it does not encode as JSON");
            }
        }
    }

    /// The raw bytes under `key`.
    pub async fn get_bytes(&self, key: &str) -> Option<Bytes> {
        let mut lookup = self.fetch(key).await;
        match lookup.value.take() {
            Some(bytes) => {
                self.record_hit(&lookup);
                Some(bytes)
            }
            None => {
                self.record_miss(&lookup);
                None
            }
        }
    }

    /// Store raw bytes under `key` for `ttl` (rounded up to whole milliseconds, at most
    /// [`MAX_TTL`]).
    pub async fn set_bytes(&self, key: &str, value: Bytes, ttl: Duration) {
        self.set_bytes_tagged(key, value, ttl, &[]).await;
    }

    /// Store raw bytes under `key` for `ttl`, tagged: [`delete_tag`](Cache::delete_tag)
    /// removes every entry carrying a tag. In Redis a tag is a sorted set
    /// `<namespace>:tag:<tag>` of keys scored by their expiry; each tagged write drops the
    /// members that have expired and lets the set expire with its longest-lived member, so a
    /// tag set only ever holds live entries.
    pub async fn set_bytes_tagged(&self, key: &str, value: Bytes, ttl: Duration, tags: &[&str]) {
        let ttl = normalize_ttl(ttl);
        match &self.inner.backend {
            Backend::Memory(tier) => tier.insert(key, Entry::tagged(value, ttl, tags)).await,
            #[cfg(feature = "redis")]
            Backend::Redis { tier, instance } => {
                let message =
                    tiered::encode(instance, 0, false, tiered::Op::Keys(vec![key.to_string()]));
                let _ = tier.set(key, &value, ttl, tags, message.as_deref()).await;
            }
            #[cfg(feature = "redis")]
            Backend::Tiered(tiered) => tiered.set(key, value, ttl, tags).await,
        }
    }

    /// Remove `key`. `Err(Unavailable)` means the removal may not have happened (Redis
    /// failed) or, for `tiered`, was not confirmed by every instance: see [`CacheError`].
    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        match &self.inner.backend {
            Backend::Memory(tier) => {
                tier.remove(key).await;
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Redis { tier, instance } => {
                let message =
                    tiered::encode(instance, 0, false, tiered::Op::Keys(vec![key.to_string()]));
                tier.delete(key, message.as_deref()).await?;
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Tiered(tiered) => tiered.delete(key).await,
        }
    }

    /// Remove every key starting with `prefix` (`""` empties the namespace). In Redis this
    /// walks the namespace with `SCAN … MATCH <namespace>:<prefix>* COUNT 500` and `UNLINK`s
    /// page by page (never `KEYS`); each round trip has the timeout.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), CacheError> {
        match &self.inner.backend {
            Backend::Memory(tier) => {
                tier.remove_prefix(prefix).await;
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Redis { tier, instance } => {
                let deleted = tier.delete_prefix(prefix).await;
                let op = tiered::Op::Prefix(prefix.to_string());
                if let Some(message) = tiered::encode(instance, 0, false, op) {
                    let _ = tier.publish(&message).await;
                }
                deleted?;
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Tiered(tiered) => tiered.delete_prefix(prefix).await,
        }
    }

    /// Remove every entry stored with `tag` by [`set_bytes_tagged`](Cache::set_bytes_tagged).
    /// In Redis the tag set is emptied 500 members per round trip (each batch's members leave
    /// the set and are `UNLINK`ed together, atomically), so a large tag never blocks Redis;
    /// after an error, the batches already done stay done, and calling again finishes.
    pub async fn delete_tag(&self, tag: &str) -> Result<(), CacheError> {
        match &self.inner.backend {
            Backend::Memory(tier) => {
                tier.remove_tag(tag).await;
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Redis { tier, instance } => {
                let (keys, deleted) = tier.delete_tag(tag).await;
                // Even after a partial failure, tell the others about the keys already gone.
                let op = tiered::tag_op(tag, keys);
                if let Some(message) = tiered::encode(instance, 0, false, op) {
                    let _ = tier.publish(&message).await;
                }
                deleted?;
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Tiered(tiered) => tiered.delete_tag(tag).await,
        }
    }

    /// The cached value under `key`, or else the loader's: on a miss `loader` runs and an
    /// `Ok` value is cached for `ttl`.
    ///
    /// **Single flight:** concurrent calls that miss on the same key run the loader once;
    /// the others wait for its result — the value, or the *same error* (which is not cached:
    /// the next call loads again). If the running loader panics or its caller is cancelled,
    /// the waiting calls start over and one of them loads. Deduplication is per `Cache`
    /// (per instance); across instances each may load once. Calls on one key with different
    /// `T` or `E` types do not wait for each other.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(value) = self.get::<T>(key).await {
            return Ok(value);
        }
        let counters = &self.inner.counters;
        let leader = loop {
            match self.inner.flights.join::<T, E>(key, counters) {
                Role::Leader(guard) => break Some(guard),
                Role::Alone => break None,
                Role::Follower(mut result) => {
                    if let Ok(done) = result.wait_for(Option::is_some).await
                        && let Some(result) = done.as_ref()
                    {
                        #[cfg(feature = "metrics")]
                        crate::metrics::global().cache.coalesced.inc();
                        return result.clone();
                    }
                    // The leader went away without a result: start over.
                }
            }
        };
        // Another leader may have stored the value between our miss and our turn.
        if let Some(bytes) = self.fetch(key).await.value
            && let Ok(value) = json::from_slice::<T>(&bytes)
        {
            if let Some(guard) = leader {
                guard.finish(Ok(value.clone()));
            }
            return Ok(value);
        }
        bump(&counters.loads);
        let result = loader().await;
        match &result {
            Ok(value) => self.set(key, value, ttl).await,
            Err(_) => bump(&counters.load_errors),
        }
        if let Some(guard) = leader {
            guard.finish(result.clone());
        }
        result
    }

    /// Check the backend: a Redis `PING` within the timeout (always `Ok` for `memory`).
    /// [`App::cache`](crate::App::cache) registers it as the `cache` readiness check.
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &self.inner.backend {
            Backend::Memory(_) => Ok(()),
            #[cfg(feature = "redis")]
            Backend::Redis { tier, .. } => Ok(tier.ping().await?),
            #[cfg(feature = "redis")]
            Backend::Tiered(tiered) => Ok(tiered.remote().ping().await?),
        }
    }

    /// A snapshot of this cache's counters.
    pub fn stats(&self) -> CacheStats {
        let (entries, bytes) = match self.local_tier() {
            Some(tier) => (tier.entry_count(), tier.weighted_size()),
            None => (0, 0),
        };
        self.inner
            .counters
            .snapshot(self.inner.kind, entries, bytes)
    }

    /// Run the in-process tier's pending maintenance now — evictions, expirations, and the
    /// counters that track them — which otherwise happens in the course of later calls.
    /// Useful before reading [`stats`](Cache::stats) in a test; never needed for correctness.
    pub async fn run_pending_tasks(&self) {
        if let Some(tier) = self.local_tier() {
            tier.run_pending_tasks().await;
        }
    }

    /// Whether a `tiered` cache's invalidation subscription is live (its in-process tier is
    /// used only then); `true` for the other backends, which have none to lose.
    pub fn is_coherent(&self) -> bool {
        match &self.inner.backend {
            #[cfg(feature = "redis")]
            Backend::Tiered(tiered) => tiered.is_subscribed(),
            _ => true,
        }
    }

    fn local_tier(&self) -> Option<&MemoryTier> {
        match &self.inner.backend {
            Backend::Memory(tier) => Some(tier),
            #[cfg(feature = "redis")]
            Backend::Redis { .. } => None,
            #[cfg(feature = "redis")]
            Backend::Tiered(tiered) => Some(tiered.local()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_milliseconds_within_bounds() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(2)), 2000);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL.as_secs() * 1000);
        assert_eq!(
            normalize_ttl(Duration::from_nanos(10)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn cache_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Cache>();
    }

    #[test]
    fn unavailable_is_a_503() {
        let err: ChopinError = CacheError::Unavailable.into();
        assert_eq!(err.status(), ::http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
