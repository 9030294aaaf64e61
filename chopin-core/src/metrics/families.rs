//! Chopin's metric families below HTTP: server, database, cache, pass-through, auth and rate
//! limits. Each is registered once in [`Metrics`](super::Metrics); the parts of Chopin record
//! into them through `crate::metrics::global()`.

use std::sync::{Mutex, PoisonError, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// A label set of one label, `name="value"`, with a static value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct KeyLabel {
    key: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct TierLabel {
    tier: &'static str,
}

/// Buckets for latencies of a fast API: 100 µs to 10 s.
pub(crate) const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Connections and their timeouts ([`crate::server`]).
#[derive(Debug)]
pub(crate) struct ServerMetrics {
    /// Connections open now.
    pub(crate) open: Gauge,
    /// Connections accepted.
    pub(crate) accepted: Counter,
    /// Times the accept loop paused at the connection cap (new connections then wait in the
    /// listen backlog until one closes).
    pub(crate) accept_paused: Counter,
    /// Failed accepts, by `kind`: `client` (the client gave up or reset the connection before
    /// it was accepted: routine on a public server) or `system` (the server could not accept:
    /// `EMFILE` and the like).
    accept_errors: Family<KindLabel, Counter>,
    /// Connections closed by a timeout: `kind` = `header`, `idle`, `age`, `write`, `shutdown`.
    pub(crate) timeouts: Family<KindLabel, Counter>,
}

impl ServerMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let this = Self {
            open: Gauge::default(),
            accepted: Counter::default(),
            accept_paused: Counter::default(),
            accept_errors: Family::default(),
            timeouts: Family::default(),
        };
        registry.register(
            "chopin_server_connections_open",
            "HTTP connections open now",
            this.open.clone(),
        );
        registry.register(
            "chopin_server_connections_accepted",
            "HTTP connections accepted",
            this.accepted.clone(),
        );
        registry.register(
            "chopin_server_accept_paused",
            "Times accepting paused at the connection cap (CHOPIN_MAX_CONNECTIONS)",
            this.accept_paused.clone(),
        );
        registry.register(
            "chopin_server_accept_errors",
            "Failed accepts, by kind (client: aborted or reset by the client; system: EMFILE and the like)",
            this.accept_errors.clone(),
        );
        registry.register(
            "chopin_server_timeouts",
            "Connections closed by a timeout, by kind (header, idle, age, write, shutdown)",
            this.timeouts.clone(),
        );
        this
    }

    /// Count a failed accept of `kind` (`client` or `system`).
    pub(crate) fn accept_error(&self, kind: &'static str) {
        self.accept_errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// Count a connection closed by the `kind` timeout.
    pub(crate) fn timeout(&self, kind: &'static str) {
        self.timeouts.get_or_create(&KindLabel { kind }).inc();
    }
}

/// What a database pool reports at each scrape.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PoolSnapshot {
    /// Connections open (idle and in use).
    pub(crate) size: u32,
    /// Idle connections.
    pub(crate) idle: u32,
    /// The pool's maximum.
    pub(crate) max: u32,
    /// Whether the circuit breaker is open.
    pub(crate) breaker_open: bool,
}

/// A database pool watched by [`DbMetrics`].
pub(crate) trait PoolSource: Send + Sync {
    /// The pool's figures now.
    fn snapshot(&self) -> PoolSnapshot;
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolStateLabel {
    pool: String,
    state: &'static str,
}

/// The pools the gauges read, by name; a dropped pool disappears from the next scrape. Pools
/// watched under one name (say one pool per worker, each connected by `Db::connect`) are
/// reported as one: their figures are added up, and the breaker is open if any one is.
#[derive(Default)]
struct Pools(Mutex<Vec<(String, Weak<dyn PoolSource>)>>);

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pools")
    }
}

impl Collector for Pools {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools: Vec<(String, PoolSnapshot)> = {
            let mut pools = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            pools.retain(|(_, source)| source.strong_count() > 0);
            let mut merged: Vec<(String, PoolSnapshot)> = Vec::with_capacity(pools.len());
            for (name, source) in pools.iter() {
                let Some(s) = source.upgrade().map(|source| source.snapshot()) else {
                    continue;
                };
                match merged.iter_mut().find(|(n, _)| n == name) {
                    Some((_, sum)) => {
                        sum.size = sum.size.saturating_add(s.size);
                        sum.idle = sum.idle.saturating_add(s.idle);
                        sum.max = sum.max.saturating_add(s.max);
                        sum.breaker_open |= s.breaker_open;
                    }
                    None => merged.push((name.clone(), s)),
                }
            }
            merged
        };
        if pools.is_empty() {
            return Ok(());
        }
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "chopin_db_pool_connections",
            "Database connections, by state (idle, in_use)",
            None,
            gauge.metric_type(),
        )?;
        for (name, s) in &pools {
            for (state, value) in [("idle", s.idle), ("in_use", s.size.saturating_sub(s.idle))] {
                let labels = PoolStateLabel {
                    pool: name.clone(),
                    state,
                };
                ConstGauge::new(i64::from(value)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (metric, help, pick) in [
            (
                "chopin_db_pool_max_connections",
                "The pool's maximum number of connections",
                (|s: &PoolSnapshot| i64::from(s.max)) as fn(&PoolSnapshot) -> i64,
            ),
            (
                "chopin_db_breaker_open",
                "1 while the database circuit breaker is open (queries answer 503 at once)",
                |s: &PoolSnapshot| i64::from(s.breaker_open),
            ),
        ] {
            let mut family = encoder.encode_descriptor(metric, help, None, gauge.metric_type())?;
            for (name, s) in &pools {
                let labels = PoolLabel { pool: name.clone() };
                ConstGauge::new(pick(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The database: pool gauges (read at each scrape), acquire waits, errors, slow queries.
#[derive(Debug)]
pub(crate) struct DbMetrics {
    pools: std::sync::Arc<Pools>,
    /// Time to get a connection, for the acquisitions Chopin makes itself (pass-through
    /// queries from the pool; the migration lock's and the breaker probe's own connections).
    pub(crate) acquire: Histogram,
    /// Operations through `Db` that gave up waiting for a pooled connection.
    pub(crate) acquire_timeouts: Counter,
    /// Failed operations through `Db`, by `kind` (`connection`, `timeout`, `constraint`,
    /// `other`; see `db::metrics`).
    pub(crate) errors: Family<KindLabel, Counter>,
    /// Statements through `Db` slower than `CHOPIN_DB_SLOW_QUERY`.
    pub(crate) slow_queries: Counter,
    /// Times the circuit breaker opened.
    pub(crate) breaker_opened: Counter,
}

impl DbMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let this = Self {
            pools: std::sync::Arc::default(),
            acquire: latency_histogram(),
            acquire_timeouts: Counter::default(),
            errors: Family::default(),
            slow_queries: Counter::default(),
            breaker_opened: Counter::default(),
        };
        registry.register_collector(Box::new(this.pools.clone()));
        registry.register_with_unit(
            "chopin_db_pool_acquire_duration",
            "Time to get a database connection, for the acquisitions Chopin makes itself (pass-through queries, migration lock, breaker probe)",
            Unit::Seconds,
            this.acquire.clone(),
        );
        registry.register(
            "chopin_db_pool_acquire_timeouts",
            "Database operations that gave up waiting for a pooled connection",
            this.acquire_timeouts.clone(),
        );
        registry.register(
            "chopin_db_errors",
            "Failed database operations through Db, by kind (connection, timeout, constraint, other)",
            this.errors.clone(),
        );
        registry.register(
            "chopin_db_slow_queries",
            "Statements through Db that ran longer than CHOPIN_DB_SLOW_QUERY",
            this.slow_queries.clone(),
        );
        registry.register(
            "chopin_db_breaker_opened",
            "Times the database circuit breaker opened",
            this.breaker_opened.clone(),
        );
        this
    }

    #[cfg_attr(not(chopin_db), allow(dead_code))]
    /// Report `source`'s pool gauges under `pool="name"` (added to those of other pools
    /// watched under the same name). Watching a source again moves it to the new name.
    pub(crate) fn watch_pool(&self, name: &str, source: Weak<dyn PoolSource>) {
        let mut pools = self.pools.0.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|(_, s)| !s.ptr_eq(&source) && s.strong_count() > 0);
        pools.push((name.to_string(), source));
    }

    #[cfg_attr(not(chopin_db), allow(dead_code))]
    /// Count a failed database operation of `kind`.
    pub(crate) fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }
}

/// A cache tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheTier {
    /// The in-process moka tier.
    Memory = 0,
    /// The Redis tier.
    Redis = 1,
}

/// One counter per cache tier.
#[derive(Debug)]
pub(crate) struct PerTier([Counter; 2]);

impl PerTier {
    fn new(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<TierLabel, Counter>::default();
        registry.register(name, help, family.clone());
        Self([
            family.get_or_create_owned(&TierLabel { tier: "memory" }),
            family.get_or_create_owned(&TierLabel { tier: "redis" }),
        ])
    }

    /// Add one for `tier`.
    pub(crate) fn inc(&self, tier: CacheTier) {
        self.0[tier as usize].inc();
    }
}

/// The cache, per tier, and HTTP caching.
#[derive(Debug)]
pub(crate) struct CacheMetrics {
    /// Lookups that found a value.
    pub(crate) hits: PerTier,
    /// Lookups that found nothing.
    pub(crate) misses: PerTier,
    /// Values stored.
    pub(crate) sets: PerTier,
    /// Values the in-process tier dropped for size (or refused) or expiry. Chopin never
    /// deletes from Redis for size: the Redis tier's stays 0 (Redis reports its own
    /// evictions as `evicted_keys`).
    pub(crate) evictions: PerTier,
    /// Operations that failed: Redis round trips that failed or timed out, invalidations not
    /// confirmed, a Redis unreachable when a cache is built, stored values that do not
    /// decode.
    pub(crate) errors: PerTier,
    /// The in-process tiers whose bytes `chopin_cache_memory_bytes` sums at each scrape.
    memory: std::sync::Arc<MemoryTiers>,
    /// `get_or_load` calls that waited for another caller's load instead of loading.
    pub(crate) coalesced: Counter,
    /// Responses served from the response cache.
    pub(crate) http_hits: Counter,
    /// Responses the response cache did not store: their path had too many variants.
    pub(crate) http_variants_refused: Counter,
    /// `304 Not Modified` answers.
    pub(crate) not_modified: Counter,
    /// Redis circuit breakers open now (one per Redis connection: a cache's Redis tier,
    /// the revocation store).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) redis_breakers_open: Gauge,
    /// Times a Redis circuit breaker opened.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) redis_breaker_opened: Counter,
}

impl CacheMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let coalesced = Counter::default();
        let http_hits = Counter::default();
        let http_variants_refused = Counter::default();
        let not_modified = Counter::default();
        let this = Self {
            hits: PerTier::new(
                registry,
                "chopin_cache_hits",
                "Cache lookups that found a value, by tier",
            ),
            misses: PerTier::new(
                registry,
                "chopin_cache_misses",
                "Cache lookups that found nothing, by tier",
            ),
            sets: PerTier::new(
                registry,
                "chopin_cache_sets",
                "Values stored in the cache, by tier",
            ),
            evictions: PerTier::new(
                registry,
                "chopin_cache_evictions",
                "Values the cache dropped for size or expiry, by tier",
            ),
            errors: PerTier::new(
                registry,
                "chopin_cache_errors",
                "Cache operations that failed, by tier",
            ),
            memory: std::sync::Arc::default(),
            coalesced,
            http_hits,
            http_variants_refused,
            not_modified,
            redis_breakers_open: Gauge::default(),
            redis_breaker_opened: Counter::default(),
        };
        registry.register_collector(Box::new(this.memory.clone()));
        registry.register(
            "chopin_redis_breakers_open",
            "Redis circuit breakers open now (calls through them fail at once)",
            this.redis_breakers_open.clone(),
        );
        registry.register(
            "chopin_redis_breaker_opened",
            "Times a Redis circuit breaker opened",
            this.redis_breaker_opened.clone(),
        );
        registry.register(
            "chopin_cache_coalesced_loads",
            "get_or_load calls that waited for a concurrent load of the same key instead of loading",
            this.coalesced.clone(),
        );
        registry.register(
            "chopin_http_cache_hits",
            "Responses served from the response cache",
            this.http_hits.clone(),
        );
        registry.register(
            "chopin_http_cache_variants_refused",
            "Responses the response cache did not store because their path had too many variants",
            this.http_variants_refused.clone(),
        );
        registry.register(
            "chopin_http_cache_not_modified",
            "304 Not Modified answers to conditional requests",
            this.not_modified.clone(),
        );
        this
    }

    /// Count one `event` on `tier`.
    pub(crate) fn record(&self, tier: CacheTier, event: CacheEvent) {
        let counters = match event {
            CacheEvent::Hit => &self.hits,
            CacheEvent::Miss => &self.misses,
            CacheEvent::Set => &self.sets,
            CacheEvent::Eviction => &self.evictions,
            CacheEvent::Error => &self.errors,
        };
        counters.inc(tier);
    }

    /// Add `source`'s bytes to `chopin_cache_memory_bytes` for as long as it lives.
    pub(crate) fn watch_memory(&self, source: Weak<dyn MemorySource>) {
        let mut tiers = self.memory.0.lock().unwrap_or_else(PoisonError::into_inner);
        tiers.retain(|s| s.strong_count() > 0);
        tiers.push(source);
    }
}

/// What a cache operation did, for [`CacheMetrics::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheEvent {
    /// A lookup found a value.
    Hit,
    /// A lookup found nothing.
    Miss,
    /// A value was stored.
    Set,
    /// A value was dropped for size or expiry.
    Eviction,
    /// An operation failed.
    Error,
}

/// An in-process cache tier watched by [`CacheMetrics`].
pub(crate) trait MemorySource: Send + Sync {
    /// The bytes it holds now.
    fn bytes(&self) -> u64;
}

/// The in-process tiers alive now; a dropped tier disappears from the next scrape.
#[derive(Default)]
struct MemoryTiers(Mutex<Vec<Weak<dyn MemorySource>>>);

impl std::fmt::Debug for MemoryTiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryTiers")
    }
}

impl Collector for MemoryTiers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let bytes: u64 = {
            let mut tiers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            tiers.retain(|s| s.strong_count() > 0);
            tiers
                .iter()
                .filter_map(Weak::upgrade)
                .map(|s| s.bytes())
                .fold(0u64, u64::saturating_add)
        };
        let gauge = ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX));
        let family = encoder.encode_descriptor(
            "chopin_cache_memory",
            "Bytes (keys, values and tags) held by the in-process cache tiers now",
            Some(&Unit::Bytes),
            gauge.metric_type(),
        )?;
        gauge.encode(family)
    }
}

/// The pass-through responder.
#[derive(Debug)]
pub(crate) struct PassthroughMetrics {
    /// Rows written.
    pub(crate) rows: Counter,
    /// Body bytes written.
    pub(crate) bytes: Counter,
    /// From the start of the query to the first body chunk.
    pub(crate) first_byte: Histogram,
    /// Streams cut off, by `reason` (`database`, `disconnect`, `stalled`: the client took no
    /// data for the send timeout, `deadline`: past `CHOPIN_DB_STREAM_DEADLINE`).
    pub(crate) aborted: Family<ReasonLabel, Counter>,
}

impl PassthroughMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let this = Self {
            rows: Counter::default(),
            bytes: Counter::default(),
            first_byte: latency_histogram(),
            aborted: Family::default(),
        };
        registry.register(
            "chopin_passthrough_rows",
            "Rows the pass-through responder wrote",
            this.rows.clone(),
        );
        registry.register_with_unit(
            "chopin_passthrough",
            "Body bytes the pass-through responder wrote",
            Unit::Bytes,
            this.bytes.clone(),
        );
        registry.register_with_unit(
            "chopin_passthrough_first_byte",
            "Time from the start of a pass-through query to its first body chunk",
            Unit::Seconds,
            this.first_byte.clone(),
        );
        registry.register(
            "chopin_passthrough_streams_aborted",
            "Pass-through streams cut off, by reason (database, disconnect, stalled, deadline)",
            this.aborted.clone(),
        );
        this
    }

    #[cfg_attr(not(chopin_db), allow(dead_code))] // Only streams (a database) are cut off.
    /// Count a stream cut off for `reason`.
    pub(crate) fn aborted(&self, reason: &'static str) {
        self.aborted.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// Auth and rate limits.
#[derive(Debug)]
pub(crate) struct AuthMetrics {
    /// Logins by `outcome` (`success`, `failure`, `rate_limited`).
    pub(crate) logins: Family<OutcomeLabel, Counter>,
    /// Tokens refused, by `reason` (`expired`, `invalid`, `revoked`, `unavailable`).
    pub(crate) verification_failures: Family<ReasonLabel, Counter>,
    /// Refresh tokens presented again after rotation (the family is revoked).
    pub(crate) refresh_reuse: Counter,
    /// 429 answers, by the `key` that ran out (`ip`, `user`, `login`, `login_failures`,
    /// `signup`, `password_reset`, `verification`, `refresh`).
    pub(crate) rate_limited: Family<KeyLabel, Counter>,
    /// Background jobs (reset, verification mail) dropped because the mail queue was full.
    #[cfg_attr(not(all(feature = "auth", chopin_db)), allow(dead_code))]
    pub(crate) mail_queue_overflow: Counter,
}

impl AuthMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let this = Self {
            logins: Family::default(),
            verification_failures: Family::default(),
            refresh_reuse: Counter::default(),
            rate_limited: Family::default(),
            mail_queue_overflow: Counter::default(),
        };
        registry.register(
            "chopin_auth_mail_queue_overflow",
            "Auth background jobs (password reset, verification mail) dropped because the mail queue was full",
            this.mail_queue_overflow.clone(),
        );
        registry.register(
            "chopin_auth_logins",
            "Logins, by outcome (success, failure, rate_limited)",
            this.logins.clone(),
        );
        registry.register(
            "chopin_auth_token_verification_failures",
            "Access tokens refused, by reason",
            this.verification_failures.clone(),
        );
        registry.register(
            "chopin_auth_refresh_reuse",
            "Rotated refresh tokens presented again (their family is revoked)",
            this.refresh_reuse.clone(),
        );
        registry.register(
            "chopin_rate_limit_rejections",
            "Requests answered 429, by the key whose budget ran out",
            this.rate_limited.clone(),
        );
        this
    }

    /// Count a login with `outcome` (by the auth routes, which need a database feature).
    #[cfg_attr(not(all(feature = "auth", chopin_db)), allow(dead_code))]
    pub(crate) fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Count a token refused for `reason`.
    #[cfg_attr(not(feature = "auth"), allow(dead_code))]
    pub(crate) fn verification_failure(&self, reason: &'static str) {
        self.verification_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Count a 429 for the `key` budget.
    pub(crate) fn rate_limited(&self, key: &'static str) {
        self.rate_limited.get_or_create(&KeyLabel { key }).inc();
    }
}
