//! The in-process (moka) cache backend: typed and raw values, TTLs, deletes by key, prefix and
//! tag, byte-weighted eviction, stats, single flight, and the readiness check.

mod cache_support;

use std::time::Duration;

use bytes::Bytes;
use cache_support::{
    abandoned_leaders_do_not_wedge, loader_error_is_shared_and_not_cached, single_flight_1000,
};
use chopin_core::cache::{Cache, CacheBackend, CacheConfig};
use chopin_core::prelude::*;
use chopin_core::testing::TestClient;
use serde::{Deserialize, Serialize};

const MINUTE: Duration = Duration::from_secs(60);

fn memory(bytes: u64) -> Cache {
    Cache::memory(&CacheConfig {
        memory_bytes: bytes,
        ..CacheConfig::default()
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    id: u64,
    title: String,
    tags: Vec<String>,
}

fn post(id: u64) -> Post {
    Post {
        id,
        title: format!("post {id}"),
        tags: vec!["a".into(), "b".into()],
    }
}

#[tokio::test]
async fn typed_and_raw_values_round_trip() {
    let cache = memory(1 << 20);
    assert_eq!(cache.backend(), CacheBackend::Memory);
    assert_eq!(cache.namespace(), "chopin");
    assert_eq!(cache.get::<Post>("post:1").await, None);

    cache.set("post:1", &post(1), MINUTE).await;
    assert_eq!(cache.get::<Post>("post:1").await, Some(post(1)));
    // Typed values are JSON bytes (through chopin_core::json).
    let raw = cache.get_bytes("post:1").await.expect("stored");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&raw).unwrap(),
        serde_json::json!({"id": 1, "title": "post 1", "tags": ["a", "b"]})
    );
    // Unsized values (str, slices) are accepted.
    cache.set("greeting", "hello", MINUTE).await;
    assert_eq!(
        cache.get::<String>("greeting").await.as_deref(),
        Some("hello")
    );

    cache
        .set_bytes("raw", Bytes::from_static(b"\x00\x01binary"), MINUTE)
        .await;
    assert_eq!(
        cache.get_bytes("raw").await,
        Some(Bytes::from_static(b"\x00\x01binary"))
    );

    // A value that does not decode as the asked-for type is a miss, counted.
    assert_eq!(cache.get::<Post>("greeting").await, None);
    assert_eq!(cache.stats().codec_errors, 1);

    // Overwrite.
    cache.set("post:1", &post(2), MINUTE).await;
    assert_eq!(cache.get::<Post>("post:1").await, Some(post(2)));
}

#[tokio::test]
async fn entries_expire_after_their_own_ttl() {
    let cache = memory(1 << 20);
    cache.set("short", &1u32, Duration::from_millis(200)).await;
    cache.set("long", &2u32, MINUTE).await;
    assert_eq!(cache.get::<u32>("short").await, Some(1));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(cache.get::<u32>("short").await, None, "expired");
    assert_eq!(cache.get::<u32>("long").await, Some(2));
    // moka's timer wheel removes expired entries (and so counts them) at a coarser, ~1 s
    // granularity than it hides them.
    let counted = cache_support::eventually(Duration::from_secs(5), || async {
        cache.run_pending_tasks().await;
        cache.stats().expirations == 1
    })
    .await;
    assert!(counted, "{:?}", cache.stats());
    assert_eq!(cache.stats().evictions, 0);

    // Overwriting restarts the TTL.
    cache
        .set("renewed", &1u32, Duration::from_millis(200))
        .await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    cache
        .set("renewed", &2u32, Duration::from_millis(200))
        .await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(cache.get::<u32>("renewed").await, Some(2));
}

#[tokio::test]
async fn delete_by_key_prefix_and_tag() {
    let cache = memory(16 << 20);
    for i in 0..1500 {
        cache.set(&format!("user:{i}"), &i, MINUTE).await;
    }
    cache.set("users", &"not under the prefix", MINUTE).await;
    cache.set("post:1", &post(1), MINUTE).await;

    cache.delete("user:0").await.unwrap();
    assert_eq!(cache.get::<u32>("user:0").await, None);
    assert_eq!(cache.get::<u32>("user:1").await, Some(1));
    cache.delete("never-set").await.unwrap();

    cache.delete_prefix("user:").await.unwrap();
    for i in 0..1500 {
        assert_eq!(
            cache.get::<u32>(&format!("user:{i}")).await,
            None,
            "user:{i}"
        );
    }
    assert!(cache.get::<String>("users").await.is_some());
    assert!(cache.get::<Post>("post:1").await.is_some());
    // A key stored after the prefix deletion is kept.
    cache.set("user:7", &7u32, MINUTE).await;
    assert_eq!(cache.get::<u32>("user:7").await, Some(7));

    let ttl = MINUTE;
    cache
        .set_bytes_tagged("a", Bytes::from_static(b"1"), ttl, &["posts", "user:1"])
        .await;
    cache
        .set_bytes_tagged("b", Bytes::from_static(b"2"), ttl, &["posts"])
        .await;
    cache
        .set_bytes_tagged("c", Bytes::from_static(b"3"), ttl, &["user:1"])
        .await;
    cache.set_bytes("d", Bytes::from_static(b"4"), ttl).await;
    cache.delete_tag("posts").await.unwrap();
    assert_eq!(cache.get_bytes("a").await, None);
    assert_eq!(cache.get_bytes("b").await, None);
    assert_eq!(cache.get_bytes("c").await, Some(Bytes::from_static(b"3")));
    assert_eq!(cache.get_bytes("d").await, Some(Bytes::from_static(b"4")));
    cache.delete_tag("user:1").await.unwrap();
    assert_eq!(cache.get_bytes("c").await, None);
    cache.delete_tag("no such tag").await.unwrap();

    cache.delete_prefix("").await.unwrap();
    assert_eq!(cache.get_bytes("d").await, None, "\"\" empties the cache");
}

#[tokio::test]
async fn eviction_is_weighted_by_bytes() {
    const MIB: u64 = 1024 * 1024;
    let cache = memory(MIB);
    let value = Bytes::from(vec![7u8; 4096]);
    // 512 values of 4 KiB = 2 MiB of values into a 1 MiB cache.
    for i in 0..512 {
        cache
            .set_bytes(&format!("blob:{i:04}"), value.clone(), MINUTE)
            .await;
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(
        stats.bytes <= MIB,
        "{} bytes held in a 1 MiB cache",
        stats.bytes
    );
    assert!(
        stats.bytes > MIB / 2,
        "the budget is used: {} bytes",
        stats.bytes
    );
    assert!(stats.evictions >= 200, "{stats:?}");
    let mut present = 0;
    for i in 0..512 {
        if cache.get_bytes(&format!("blob:{i:04}")).await.is_some() {
            present += 1;
        }
    }
    // ~1 MiB / (4 KiB + key) entries fit; none of the rest.
    assert!((128..=256).contains(&present), "{present} entries present");
    assert_eq!(stats.entries, present);

    // A value larger than the whole budget is never kept.
    cache
        .set_bytes("huge", Bytes::from(vec![0u8; 2 * MIB as usize]), MINUTE)
        .await;
    cache.run_pending_tasks().await;
    assert_eq!(cache.get_bytes("huge").await, None);
    assert!(cache.stats().bytes <= MIB);
}

#[tokio::test]
async fn stats_count_hits_misses_and_loads() {
    let cache = memory(1 << 20);
    let start = cache.stats();
    assert_eq!(start.hits + start.misses + start.loads, 0);
    assert_eq!(start.hit_ratio(), 0.0);

    cache.set("k", &1u8, MINUTE).await;
    assert!(cache.get::<u8>("k").await.is_some());
    assert!(cache.get_bytes("k").await.is_some());
    assert!(cache.get::<u8>("missing").await.is_none());
    let value = cache
        .get_or_load("loaded", MINUTE, || async { Ok::<u8, String>(9) })
        .await;
    assert_eq!(value, Ok(9));
    let value = cache
        .get_or_load("loaded", MINUTE, || async { Ok::<u8, String>(10) })
        .await;
    assert_eq!(value, Ok(9), "the second call is served from the cache");
    let failed = cache
        .get_or_load("bad", MINUTE, || async { Err::<u8, String>("no".into()) })
        .await;
    assert!(failed.is_err());

    let s = cache.stats();
    assert_eq!(s.backend, CacheBackend::Memory);
    assert_eq!(s.hits, 3, "{s:?}");
    assert_eq!(s.local_hits, 3, "every memory hit is local");
    assert_eq!(s.misses, 3, "{s:?}");
    assert_eq!(s.loads, 2);
    assert_eq!(s.load_errors, 1);
    assert_eq!(s.errors, 0);
    assert_eq!(s.hit_ratio(), 0.5);
    // Clones share the counters.
    let clone = cache.clone();
    clone.get::<u8>("k").await;
    assert_eq!(cache.stats().hits, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_runs_the_loader_once_for_1000_callers() {
    let cache = memory(1 << 20);
    assert_eq!(single_flight_1000(&cache).await, 1);
    let stats = cache.stats();
    assert_eq!(stats.loads, 1);
    assert_eq!(stats.misses, 1000, "every caller missed first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_errors_reach_every_waiter_and_are_not_cached() {
    loader_error_is_shared_and_not_cached(&memory(1 << 20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_or_cancelled_leaders_do_not_wedge_the_key() {
    let cache = memory(1 << 20);
    abandoned_leaders_do_not_wedge(&cache).await;
    assert!(cache.stats().load_errors >= 2, "{:?}", cache.stats());
}

#[tokio::test]
async fn chopin_errors_can_be_loader_errors() {
    let cache = memory(1 << 20);
    let result: Result<u8, ChopinError> = cache
        .get_or_load("missing-post", MINUTE, || async {
            Err(ChopinError::internal(std::io::Error::other("disk on fire")))
        })
        .await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InternalError);
    let copy = err.clone();
    assert_eq!(
        std::error::Error::source(&copy).map(ToString::to_string),
        Some("disk on fire".to_string())
    );
}

#[tokio::test]
async fn from_config_and_the_readiness_check() {
    let config = Config::from_lookup(|name| match name {
        "CHOPIN_ENV" => Some("test".into()),
        "CHOPIN_CACHE_MEMORY" => Some("2MiB".into()),
        "CHOPIN_CACHE_NAMESPACE" => Some("shop".into()),
        _ => None,
    })
    .unwrap();
    let cache = Cache::from_config(&config.cache).await.unwrap();
    assert_eq!(cache.backend(), CacheBackend::Memory);
    assert_eq!(cache.namespace(), "shop");
    assert!(cache.ping().await.is_ok());
    assert!(cache.is_coherent());

    let client = TestClient::new(App::new(config).cache(&cache).into_router());
    let res = client.get("/health/ready").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.value()["data"]["checks"]["cache"], "ok");
}
