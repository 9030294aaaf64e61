//! Cost of the cache's hot paths, one criterion group each:
//!
//! * `cache_memory_hit` — [`Cache::memory`] (moka) hits: `get_bytes` of a ~400-byte value, and
//!   the typed `get` of the same ~400-byte struct (adds the JSON decode);
//! * `cache_tiered_hit` — [`Cache::tiered`] answering from its in-process tier (`get_bytes`);
//! * `cache_redis_hit` — [`Cache::redis`] `get_bytes` hit: one Redis round trip;
//! * `cache_single_flight` — [`Cache::get_or_load`] under contention: per iteration 64 tasks
//!   miss on one cold key at once and the loader sleeps ~1 ms. The time is per batch of 64; the
//!   loader must run once per batch (checked on every iteration, and summed at the end).
//!
//! Redis is `CHOPIN_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) under a unique namespace,
//! emptied afterwards. When it cannot be reached the Redis groups are skipped with a message.
//! Run with
//!
//! ```text
//! cargo bench -p chopin-web-core --features redis --bench cache -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chopin_core::cache::{Cache, CacheConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

/// TTL of the entries read by the hit benchmarks: far longer than a run.
const TTL: Duration = Duration::from_secs(600);

/// Concurrent callers per single-flight batch.
const CALLERS: usize = 64;

/// How long the single-flight loader takes.
const LOAD_TIME: Duration = Duration::from_millis(1);

/// A typical cached API object: ~400 bytes of JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Product {
    /// Primary key.
    id: u64,
    /// Stock-keeping unit.
    sku: String,
    /// Display title.
    title: String,
    /// Free text.
    description: String,
    /// Price in cents.
    price_cents: i64,
    /// ISO 4217 currency code.
    currency: String,
    /// Average rating.
    rating: f64,
    /// Whether it can be ordered.
    in_stock: bool,
    /// Units in stock.
    quantity: u32,
    /// Tags.
    tags: Vec<String>,
    /// Warehouse city.
    warehouse: String,
    /// Creation time (RFC 3339).
    created_at: String,
}

/// The value every hit benchmark reads.
fn product() -> Product {
    Product {
        id: 500_042,
        sku: "SKU-0500042".into(),
        title: "Chef's knife \"Pro\" 20 cm".into(),
        description: "Forged stainless steel blade, full tang, riveted handle; \
                      dishwasher-safe but hand washing keeps the edge longer. Ships in a box."
            .into(),
        price_cents: 8_999,
        currency: "EUR".into(),
        rating: 4.7,
        in_stock: true,
        quantity: 132,
        tags: vec!["kitchen".into(), "knives".into(), "sale".into()],
        warehouse: "Rotterdam".into(),
        created_at: "2024-05-17T09:30:00Z".into(),
    }
}

/// A two-worker multi-threaded runtime (the machine has two cores).
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `CacheConfig` for Redis at `CHOPIN_TEST_REDIS_URL` under a namespace no one else uses.
fn redis_config() -> CacheConfig {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    CacheConfig {
        redis_url: std::env::var("CHOPIN_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        namespace: format!("chopin-bench-cache-{}-{nanos}", std::process::id()),
        ..CacheConfig::default()
    }
}

/// Moka hits: raw bytes and the typed (JSON-decoded) value.
fn memory_hit(c: &mut Criterion) {
    let rt = runtime();
    let cache = Cache::memory(&CacheConfig::default());
    let value = product();
    let bytes = chopin_core::json::to_bytes(&value).expect("encode");
    eprintln!("cache bench: value is {} bytes of JSON", bytes.len());
    rt.block_on(async {
        cache.set_bytes("p:bytes", bytes.clone(), TTL).await;
        cache.set("p:typed", &value, TTL).await;
        assert_eq!(cache.get_bytes("p:bytes").await, Some(bytes));
        assert_eq!(cache.get::<Product>("p:typed").await, Some(value));
    });

    let mut group = c.benchmark_group("cache_memory_hit");
    group.bench_function("get_bytes", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get_bytes(black_box("p:bytes")).await) });
    });
    group.bench_function("get_typed", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get::<Product>(black_box("p:typed")).await) });
    });
    group.finish();
}

/// The Redis-backed groups, or a message when Redis cannot be reached.
fn redis_groups(c: &mut Criterion) {
    let rt = runtime();
    let config = redis_config();
    let connected = rt.block_on(async {
        let redis = Cache::redis(&config).await?;
        let tiered = Cache::tiered(&config).await?;
        Ok::<_, chopin_core::cache::CacheError>((redis, tiered))
    });
    let (redis, tiered) = match connected {
        Ok(caches) => caches,
        Err(e) => {
            println!(
                "cache bench: skipping cache_tiered_hit and cache_redis_hit: Redis unreachable \
                 ({e}); set CHOPIN_TEST_REDIS_URL"
            );
            return;
        }
    };
    let bytes = chopin_core::json::to_bytes(&product()).expect("encode");
    rt.block_on(async {
        redis.set_bytes("p:redis", bytes.clone(), TTL).await;
        tiered.set_bytes("p:tiered", bytes.clone(), TTL).await;
        // The local tier is used only once the invalidation subscription is live.
        for _ in 0..200 {
            if tiered.is_coherent() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(tiered.is_coherent(), "tiered cache never subscribed");
        assert_eq!(redis.get_bytes("p:redis").await, Some(bytes.clone()));
        assert_eq!(tiered.get_bytes("p:tiered").await, Some(bytes));
    });

    let mut group = c.benchmark_group("cache_tiered_hit");
    group.bench_function("get_bytes_local", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(tiered.get_bytes(black_box("p:tiered")).await) });
    });
    group.finish();
    let stats = tiered.stats();
    println!(
        "cache bench: tiered hits {} of which local {} (misses {})",
        stats.hits, stats.local_hits, stats.misses
    );

    let mut group = c.benchmark_group("cache_redis_hit");
    group.bench_function("get_bytes", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(redis.get_bytes(black_box("p:redis")).await) });
    });
    group.finish();
    let stats = redis.stats();
    println!(
        "cache bench: redis hits {} misses {} (a miss means a timeout or error)",
        stats.hits, stats.misses
    );

    rt.block_on(async {
        let _ = redis.delete_prefix("").await;
    });
}

/// 64 concurrent `get_or_load` calls on one cold key per iteration; the loader runs once.
fn single_flight(c: &mut Criterion) {
    let rt = runtime();
    let cache = Cache::memory(&CacheConfig::default());
    let value = Arc::new(product());
    let next_key = Arc::new(AtomicU64::new(0));
    let batches = Arc::new(AtomicU64::new(0));
    let total_loads = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("cache_single_flight");
    group.bench_function("get_or_load_64_callers_1ms_loader", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (cache, value) = (cache.clone(), Arc::clone(&value));
            let (next_key, batches, total_loads) = (
                Arc::clone(&next_key),
                Arc::clone(&batches),
                Arc::clone(&total_loads),
            );
            async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let key = format!("cold:{}", next_key.fetch_add(1, Ordering::Relaxed));
                    let loads = Arc::new(AtomicUsize::new(0));
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..CALLERS)
                        .map(|_| {
                            let (cache, value, key, loads) = (
                                cache.clone(),
                                Arc::clone(&value),
                                key.clone(),
                                Arc::clone(&loads),
                            );
                            tokio::spawn(async move {
                                cache
                                    .get_or_load(&key, TTL, || async move {
                                        loads.fetch_add(1, Ordering::Relaxed);
                                        tokio::time::sleep(LOAD_TIME).await;
                                        Ok::<_, ()>(Product::clone(&value))
                                    })
                                    .await
                            })
                        })
                        .collect();
                    for task in tasks {
                        let got = task.await.expect("caller panicked").expect("loader failed");
                        black_box(got);
                    }
                    elapsed += start.elapsed();
                    let ran = loads.load(Ordering::Relaxed);
                    assert_eq!(ran, 1, "loader ran {ran} times for one cold key");
                    batches.fetch_add(1, Ordering::Relaxed);
                    total_loads.fetch_add(ran as u64, Ordering::Relaxed);
                }
                elapsed
            }
        });
    });
    group.finish();
    println!(
        "cache bench: single flight: {} batches of {CALLERS} callers, {} loader runs \
         (stats.loads = {})",
        batches.load(Ordering::Relaxed),
        total_loads.load(Ordering::Relaxed),
        cache.stats().loads
    );
}

criterion_group!(benches, memory_hit, redis_groups, single_flight);
criterion_main!(benches);
