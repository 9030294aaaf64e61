//! The two-tier cache (moka in front of Redis) against a real Redis: the same contract as the
//! other backends, plus coherence between instances — two `Cache::tiered` values on one
//! namespace are two app instances — and behaviour while Redis is down.
#![cfg(feature = "redis")]

mod cache_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cache_support::{
    RELAXED, RedisServer, abandoned_leaders_do_not_wedge, config, eventually,
    loader_error_is_shared_and_not_cached, single_flight_1000, within,
};
use chopin_core::cache::{Cache, CacheBackend, CacheConfig, CacheError};
use chopin_core::testing::redis_url_or_skip;

const MINUTE: Duration = Duration::from_secs(60);

/// One tiered cache in a fresh namespace.
async fn tiered() -> Option<(Cache, CacheConfig)> {
    let url = redis_url_or_skip().await?;
    let config = config(CacheBackend::Tiered, &url, RELAXED);
    let cache = Cache::tiered(&config)
        .await
        .expect("connect to the test Redis");
    Some((cache, config))
}

/// Two instances sharing one namespace.
async fn two_instances() -> Option<(Cache, Cache, CacheConfig)> {
    let (a, config) = tiered().await?;
    let b = Cache::tiered(&config).await.expect("second instance");
    Some((a, b, config))
}

async fn cleanup(cache: &Cache) {
    cache.delete_prefix("").await.expect("clean up");
}

#[tokio::test]
async fn values_round_trip_and_reads_are_served_locally() {
    let Some((cache, _config)) = tiered().await else {
        return;
    };
    assert_eq!(cache.backend(), CacheBackend::Tiered);
    assert!(cache.is_coherent());
    cache.set("greeting", "hello", MINUTE).await;
    assert_eq!(
        cache.get::<String>("greeting").await.as_deref(),
        Some("hello")
    );
    let bytes = Bytes::from_static(b"\x01\x02");
    cache.set_bytes("raw", bytes.clone(), MINUTE).await;
    assert_eq!(cache.get_bytes("raw").await, Some(bytes.clone()));
    assert_eq!(cache.get_bytes("missing").await, None);

    // A second instance reads from Redis first, then from its own local tier.
    let other = Cache::tiered(&CacheConfig {
        backend: CacheBackend::Tiered,
        ..cache_config_of(&cache, &_config)
    })
    .await
    .unwrap();
    assert_eq!(other.get_bytes("raw").await, Some(bytes.clone()));
    assert_eq!(other.get_bytes("raw").await, Some(bytes));
    let s = other.stats();
    assert_eq!((s.hits, s.local_hits, s.misses), (2, 1, 0), "{s:?}");
    assert!(
        s.entries >= 1 || {
            other.run_pending_tasks().await;
            other.stats().entries >= 1
        }
    );
    cleanup(&cache).await;
}

fn cache_config_of(cache: &Cache, config: &CacheConfig) -> CacheConfig {
    assert_eq!(cache.namespace(), config.namespace);
    config.clone()
}

#[tokio::test]
async fn entries_expire_in_both_tiers() {
    let Some((a, b, _config)) = two_instances().await else {
        return;
    };
    a.set("short", &1u8, Duration::from_millis(200)).await;
    assert_eq!(a.get::<u8>("short").await, Some(1), "local");
    assert_eq!(b.get::<u8>("short").await, Some(1), "from Redis");
    assert_eq!(b.get::<u8>("short").await, Some(1), "B's local copy");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.get::<u8>("short").await, None);
    assert_eq!(
        b.get::<u8>("short").await,
        None,
        "the local copy expires with Redis's"
    );
    cleanup(&a).await;
}

#[tokio::test]
async fn delete_by_key_prefix_and_tag_reaches_every_instance_before_returning() {
    let Some((a, b, _config)) = two_instances().await else {
        return;
    };
    for i in 0..1200 {
        a.set(&format!("user:{i}"), &i, MINUTE).await;
    }
    a.set("post:1", &1, MINUTE).await;
    // B reads some keys into its local tier.
    for i in (0..1200).step_by(100) {
        assert_eq!(b.get::<u32>(&format!("user:{i}")).await, Some(i));
        assert_eq!(b.get::<u32>(&format!("user:{i}")).await, Some(i));
    }
    assert!(b.stats().local_hits >= 12, "{:?}", b.stats());

    a.delete("user:0").await.unwrap();
    assert_eq!(b.get::<u32>("user:0").await, None, "B dropped its copy");
    a.delete_prefix("user:").await.unwrap();
    for i in (0..1200).step_by(100) {
        assert_eq!(b.get::<u32>(&format!("user:{i}")).await, None, "user:{i}");
        assert_eq!(a.get::<u32>(&format!("user:{i}")).await, None, "user:{i}");
    }
    assert_eq!(b.get::<u32>("post:1").await, Some(1));

    let v = Bytes::from_static(b"v");
    a.set_bytes_tagged("t1", v.clone(), MINUTE, &["posts"])
        .await;
    a.set_bytes_tagged("t2", v.clone(), MINUTE, &["posts", "x"])
        .await;
    a.set_bytes_tagged("t3", v.clone(), MINUTE, &["x"]).await;
    for key in ["t1", "t2", "t3"] {
        assert!(b.get_bytes(key).await.is_some());
        assert!(b.get_bytes(key).await.is_some());
    }
    b.delete_tag("posts").await.unwrap();
    for cache in [&a, &b] {
        assert_eq!(cache.get_bytes("t1").await, None);
        assert_eq!(cache.get_bytes("t2").await, None);
        assert_eq!(cache.get_bytes("t3").await, Some(v.clone()));
    }
    cleanup(&a).await;
    assert_eq!(b.get::<u32>("post:1").await, None);
}

#[tokio::test]
async fn a_write_on_one_instance_replaces_the_others_local_copy() {
    let Some((a, b, _config)) = two_instances().await else {
        return;
    };
    a.set("k", &1u32, MINUTE).await;
    assert_eq!(b.get::<u32>("k").await, Some(1));
    assert_eq!(b.get::<u32>("k").await, Some(1));
    a.set("k", &2u32, MINUTE).await;
    // Writes do not wait for acknowledgements: B converges within the pub/sub delay.
    assert!(
        eventually(Duration::from_secs(1), || async {
            b.get::<u32>("k").await == Some(2)
        })
        .await
    );
    assert!(b.stats().invalidations_received >= 1);
    cleanup(&a).await;
}

#[tokio::test]
async fn namespaces_are_isolated() {
    let Some((a, _)) = tiered().await else {
        return;
    };
    let (b, _) = tiered().await.expect("Redis is up");
    a.set("k", &"a", MINUTE).await;
    b.set("k", &"b", MINUTE).await;
    a.delete_prefix("").await.unwrap();
    assert_eq!(a.get::<String>("k").await, None);
    assert_eq!(b.get::<String>("k").await.as_deref(), Some("b"));
    cleanup(&b).await;
}

#[tokio::test]
async fn redis_backend_instances_invalidate_tiered_ones() {
    let Some((tiered, config)) = tiered().await else {
        return;
    };
    let plain = Cache::redis(&CacheConfig {
        backend: CacheBackend::Redis,
        ..config.clone()
    })
    .await
    .unwrap();
    plain.set("k", &1u32, MINUTE).await;
    assert_eq!(tiered.get::<u32>("k").await, Some(1));
    assert_eq!(tiered.get::<u32>("k").await, Some(1));
    plain.delete("k").await.unwrap();
    assert!(
        eventually(Duration::from_secs(1), || async {
            tiered.get::<u32>("k").await.is_none()
        })
        .await
    );
    cleanup(&tiered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_runs_the_loader_once_for_1000_callers() {
    let Some((cache, _)) = tiered().await else {
        return;
    };
    assert_eq!(single_flight_1000(&cache).await, 1);
    assert_eq!(cache.stats().loads, 1);
    cleanup(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_errors_reach_every_waiter_and_are_not_cached() {
    let Some((cache, _)) = tiered().await else {
        return;
    };
    loader_error_is_shared_and_not_cached(&cache).await;
    abandoned_leaders_do_not_wedge(&cache).await;
    cleanup(&cache).await;
}

/// The core guarantee: once `delete` returned `Ok` on A, no read that starts afterwards — on
/// A or on B — returns the deleted value. Readers on B race the delete, including reads that
/// fetched from Redis just before it and fill B's local tier just after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_delete_returns_no_instance_serves_the_old_value() {
    let Some((a, b, _config)) = two_instances().await else {
        return;
    };
    let violations = Arc::new(AtomicUsize::new(0));
    let reads_after = Arc::new(AtomicUsize::new(0));
    for i in 0..300u32 {
        let key = format!("race:{i}");
        let old = format!("old-{i}");
        a.set(&key, &old, MINUTE).await;
        if i % 2 == 0 {
            // Half the rounds start with the value in B's local tier.
            b.get::<String>(&key).await;
        }
        let deleted = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..4 {
            let reader = if r == 3 { a.clone() } else { b.clone() };
            let (key, old) = (key.clone(), old.clone());
            let deleted = Arc::clone(&deleted);
            let violations = Arc::clone(&violations);
            let reads_after = Arc::clone(&reads_after);
            readers.push(tokio::spawn(async move {
                let mut after = 0;
                while after < 25 {
                    let started_after_delete = deleted.load(Ordering::SeqCst);
                    let got = reader.get::<String>(&key).await;
                    if started_after_delete {
                        after += 1;
                        reads_after.fetch_add(1, Ordering::Relaxed);
                        if got.as_deref() == Some(old.as_str()) {
                            violations.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        // Let the readers get going (some reading Redis, some filling B's local tier).
        tokio::time::sleep(Duration::from_micros(u64::from(i % 7) * 150)).await;
        a.delete(&key)
            .await
            .expect("delete confirmed by both instances");
        deleted.store(true, Ordering::SeqCst);
        for reader in readers {
            reader.await.expect("reader");
        }
    }
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "stale reads after delete"
    );
    assert!(reads_after.load(Ordering::Relaxed) >= 300 * 4 * 25);
    assert!(
        b.stats().local_hits > 0,
        "B's local tier was exercised: {:?}",
        b.stats()
    );
    cleanup(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_fast_misses_and_no_stale_local_reads_then_recovery() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let config = config(
        CacheBackend::Tiered,
        &server.url(),
        Duration::from_millis(50),
    );
    let a = Cache::tiered(&config).await.expect("connect A");
    let b = Cache::tiered(&config).await.expect("connect B");
    a.set("k", &1u32, MINUTE).await;
    assert_eq!(b.get::<u32>("k").await, Some(1));
    assert_eq!(b.get::<u32>("k").await, Some(1), "in B's local tier");

    server.kill();
    // Both instances notice the lost subscription and stop trusting their local tier.
    assert!(
        eventually(Duration::from_secs(3), || async {
            !a.is_coherent() && !b.is_coherent()
        })
        .await
    );
    let limit = Duration::from_millis(200);
    let errors_before = b.stats().errors;
    for _ in 0..20 {
        assert_eq!(
            within(limit, "get while down", b.get::<u32>("k")).await,
            None
        );
        within(limit, "set while down", a.set("k", &2u32, MINUTE)).await;
        let deleted = within(limit, "delete while down", a.delete("k")).await;
        assert!(
            matches!(deleted, Err(CacheError::Unavailable)),
            "{deleted:?}"
        );
        let deleted = within(limit, "delete_tag while down", a.delete_tag("t")).await;
        assert!(deleted.is_err());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.stats().errors - errors_before >= 20, "{:?}", b.stats());

    server.restart().await;
    for cache in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                cache.set("probe", &1u8, MINUTE).await;
                cache.is_coherent() && cache.get::<u8>("probe").await == Some(1)
            })
            .await,
            "recovers by itself"
        );
    }
    a.set("k", &3u32, MINUTE).await;
    assert_eq!(b.get::<u32>("k").await, Some(3));
    assert_eq!(b.get::<u32>("k").await, Some(3));
    a.delete("k").await.expect("deletes are confirmed again");
    assert_eq!(b.get::<u32>("k").await, None);
}
