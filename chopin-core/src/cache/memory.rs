//! The in-process tier: a moka cache bounded by total bytes, with a TTL per entry and tags.
//!
//! Used on its own by the `memory` backend and as the local tier of the `tiered` backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache as Moka;
use moka::notification::RemovalCause;

use super::stats::{Counters, Event, Tier, bump, record};

/// One cached value.
#[derive(Clone)]
pub(crate) struct Entry {
    /// The stored bytes.
    pub value: Bytes,
    /// Time to live from insertion.
    pub ttl: Duration,
    /// Tags given to [`set_bytes_tagged`](super::Cache::set_bytes_tagged); empty for most
    /// entries.
    pub tags: Arc<[Box<str>]>,
}

impl Entry {
    /// An entry without tags.
    pub fn new(value: Bytes, ttl: Duration) -> Entry {
        Entry {
            value,
            ttl,
            tags: Arc::from(Vec::new()),
        }
    }

    /// An entry carrying `tags`.
    pub fn tagged(value: Bytes, ttl: Duration, tags: &[&str]) -> Entry {
        if tags.is_empty() {
            return Entry::new(value, ttl);
        }
        let tags: Vec<Box<str>> = tags.iter().map(|t| Box::from(*t)).collect();
        Entry {
            value,
            ttl,
            tags: Arc::from(tags),
        }
    }

    fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| &**t == tag)
    }
}

/// Expire each entry `ttl` after it was (last) written; reads do not extend it.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// What an entry weighs against the byte budget: its key, value and tags. Entries larger than
/// `u32::MAX` bytes weigh `u32::MAX` (and never fit a budget that small anyway).
fn weight(key: &str, entry: &Entry) -> u32 {
    let tags: usize = entry.tags.iter().map(|t| t.len()).sum();
    u32::try_from(key.len() + entry.value.len() + tags).unwrap_or(u32::MAX)
}

/// A moka cache of [`Entry`] values bounded by bytes. Its size is reported by
/// `chopin_cache_memory_bytes` (feature `metrics`) for as long as it lives.
#[derive(Clone)]
pub(crate) struct MemoryTier {
    // In an `Arc` so that the metrics can watch it through a `Weak`.
    cache: Arc<Moka<String, Entry>>,
}

#[cfg(feature = "metrics")]
impl crate::metrics::MemorySource for Moka<String, Entry> {
    fn bytes(&self) -> u64 {
        self.weighted_size()
    }
}

impl MemoryTier {
    /// A tier holding at most `max_bytes` of keys + values + tags; size-based evictions and
    /// expirations are counted in `counters`.
    pub fn new(max_bytes: u64, counters: Arc<Counters>) -> MemoryTier {
        let cache = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Entry| weight(key, entry))
            .expire_after(PerEntryTtl)
            .eviction_listener(move |_key, _entry, cause| match cause {
                RemovalCause::Size => {
                    bump(&counters.evictions);
                    record(Tier::Memory, Event::Eviction);
                }
                RemovalCause::Expired => {
                    bump(&counters.expirations);
                    record(Tier::Memory, Event::Eviction);
                }
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        let cache = Arc::new(cache);
        #[cfg(feature = "metrics")]
        {
            let source = Arc::downgrade(&cache);
            crate::metrics::global().cache.watch_memory(source);
        }
        MemoryTier { cache }
    }

    /// The bytes stored under `key`, unless absent or expired.
    pub async fn get(&self, key: &str) -> Option<Bytes> {
        self.cache.get(key).await.map(|entry| entry.value)
    }

    /// Store `entry` under `key`, replacing any previous value.
    pub async fn insert(&self, key: &str, entry: Entry) {
        self.cache.insert(key.to_string(), entry).await;
        record(Tier::Memory, Event::Set);
    }

    /// Remove `key`.
    pub async fn remove(&self, key: &str) {
        self.cache.invalidate(key).await;
    }

    /// Remove every entry whose key starts with `prefix` (every entry for `""`).
    ///
    /// Walks the whole tier (O(entries)) and removes the matches before returning. Moka's own
    /// `invalidate_entries_if` is not used: in moka 0.12 it can let an entry through when
    /// reads run while its background scan is under way.
    pub async fn remove_prefix(&self, prefix: &str) {
        if prefix.is_empty() {
            self.clear();
            return;
        }
        self.remove_where(|key, _| key.starts_with(prefix)).await;
    }

    /// Remove every entry carrying `tag` (O(entries), like [`remove_prefix`](Self::remove_prefix)).
    pub async fn remove_tag(&self, tag: &str) {
        self.remove_where(|_, entry| entry.has_tag(tag)).await;
    }

    /// Remove everything.
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    async fn remove_where(&self, matches: impl Fn(&str, &Entry) -> bool) {
        let keys: Vec<Arc<String>> = self
            .cache
            .iter()
            .filter(|(key, entry)| matches(key, entry))
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.cache.invalidate(key.as_str()).await;
        }
    }

    /// Entries held now (approximate until maintenance runs).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Bytes held now (approximate until maintenance runs).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Run moka's pending maintenance: evictions, expirations, listener calls.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}
