//! The Redis cache backend against a real Redis (`CHOPIN_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), each test in its own namespace, emptied at the end. The failure
//! tests run a `redis-server` of their own, kill it and restart it.
#![cfg(feature = "redis")]

mod cache_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_support::{
    RELAXED, RedisServer, abandoned_leaders_do_not_wedge, config, eventually,
    loader_error_is_shared_and_not_cached, single_flight_1000, within,
};
use chopin_core::cache::{Cache, CacheBackend, CacheConfig, CacheError};
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, redis_url_or_skip};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

const MINUTE: Duration = Duration::from_secs(60);

/// A Redis cache in a fresh namespace, or `None` when Redis is unreachable outside CI.
async fn cache() -> Option<(Cache, CacheConfig)> {
    let url = redis_url_or_skip().await?;
    let config = config(CacheBackend::Redis, &url, RELAXED);
    let cache = Cache::redis(&config)
        .await
        .expect("connect to the test Redis");
    Some((cache, config))
}

/// A plain connection to look at what the cache stored.
async fn raw(config: &CacheConfig) -> redis::aio::MultiplexedConnection {
    redis::Client::open(config.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Empty the namespace, and check that it is empty.
async fn cleanup(cache: &Cache, config: &CacheConfig) {
    cache.delete_prefix("").await.expect("clean up");
    let mut conn = raw(config).await;
    let left: Vec<String> = conn.keys(format!("{}:*", config.namespace)).await.unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    id: u64,
    title: String,
}

#[tokio::test]
async fn typed_and_raw_values_round_trip_under_the_namespace() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    assert_eq!(cache.backend(), CacheBackend::Redis);
    assert_eq!(cache.namespace(), config.namespace);
    let post = Post {
        id: 1,
        title: "Hello".into(),
    };
    assert_eq!(cache.get::<Post>("post:1").await, None);
    cache.set("post:1", &post, MINUTE).await;
    assert_eq!(cache.get::<Post>("post:1").await, Some(post));

    // Stored as JSON under `<namespace>:<key>`, with the TTL in Redis.
    let mut conn = raw(&config).await;
    let key = format!("{}:post:1", config.namespace);
    let stored: Vec<u8> = conn.get(&key).await.unwrap();
    assert_eq!(stored, br#"{"id":1,"title":"Hello"}"#);
    let pttl: i64 = conn.pttl(&key).await.unwrap();
    assert!((59_000..=60_000).contains(&pttl), "PTTL {pttl}");

    let bytes = Bytes::from_static(b"\x00\xffraw");
    cache.set_bytes("raw", bytes.clone(), MINUTE).await;
    assert_eq!(cache.get_bytes("raw").await, Some(bytes));
    assert_eq!(cache.get::<Post>("raw").await, None, "not JSON: a miss");
    assert_eq!(cache.stats().codec_errors, 1);

    cleanup(&cache, &config).await;
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    cache.set("short", &1u8, Duration::from_millis(200)).await;
    cache.set("long", &2u8, MINUTE).await;
    assert_eq!(cache.get::<u8>("short").await, Some(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cache.get::<u8>("short").await, None);
    assert_eq!(cache.get::<u8>("long").await, Some(2));
    cleanup(&cache, &config).await;
}

#[tokio::test]
async fn delete_by_key_and_by_prefix_across_scan_pages() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    // 1,200 keys under the prefix: SCAN … COUNT 500 needs several pages.
    for i in 0..1200 {
        cache.set(&format!("user:{i}"), &i, MINUTE).await;
    }
    cache.set("users", &"kept", MINUTE).await;
    cache.set("post:1", &1, MINUTE).await;
    // Glob characters in a prefix are literal.
    cache.set("glob*x", &1, MINUTE).await;
    cache.set("globbed", &1, MINUTE).await;

    cache.delete("user:0").await.unwrap();
    assert_eq!(cache.get::<u32>("user:0").await, None);
    cache.delete("never-set").await.unwrap();

    cache.delete_prefix("user:").await.unwrap();
    let mut conn = raw(&config).await;
    let left: Vec<String> = conn
        .keys(format!("{}:user:*", config.namespace))
        .await
        .unwrap();
    assert!(left.is_empty(), "{} keys left", left.len());
    assert_eq!(cache.get::<u32>("user:1199").await, None);
    assert!(cache.get::<String>("users").await.is_some());
    assert!(cache.get::<u32>("post:1").await.is_some());

    cache.delete_prefix("glob*").await.unwrap();
    assert_eq!(cache.get::<u32>("glob*x").await, None);
    assert_eq!(
        cache.get::<u32>("globbed").await,
        Some(1),
        "`*` is not a wildcard"
    );

    cleanup(&cache, &config).await;
}

#[tokio::test]
async fn delete_by_tag() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    cache
        .set_bytes_tagged("a", v("1"), MINUTE, &["posts", "user:1"])
        .await;
    cache
        .set_bytes_tagged("b", v("2"), Duration::from_secs(5), &["posts"])
        .await;
    cache
        .set_bytes_tagged("c", v("3"), MINUTE, &["user:1"])
        .await;
    cache.set_bytes("d", v("4"), MINUTE).await;

    // The tag set lives as long as its longest-lived member: a later, shorter member does
    // not shorten it.
    let mut conn = raw(&config).await;
    let tag_key = format!("{}:tag:posts", config.namespace);
    let members: Vec<String> = conn.zrange(&tag_key, 0, -1).await.unwrap();
    assert_eq!(members.len(), 2);
    // Scored by expiry: the 5 s member first.
    assert_eq!(members[0], format!("{}:b", config.namespace));
    let pttl: i64 = conn.pttl(&tag_key).await.unwrap();
    assert!(pttl > 55_000, "tag set PTTL {pttl}");

    cache.delete_tag("posts").await.unwrap();
    assert_eq!(cache.get_bytes("a").await, None);
    assert_eq!(cache.get_bytes("b").await, None);
    assert_eq!(cache.get_bytes("c").await, Some(v("3")));
    assert_eq!(cache.get_bytes("d").await, Some(v("4")));
    let exists: bool = conn.exists(&tag_key).await.unwrap();
    assert!(!exists, "the tag set is deleted with its members");

    cache.delete_tag("user:1").await.unwrap();
    assert_eq!(cache.get_bytes("c").await, None);
    cache.delete_tag("no such tag").await.unwrap();

    // A tag with more members than one batch.
    for i in 0..1200 {
        cache
            .set_bytes_tagged(&format!("m:{i}"), v("x"), MINUTE, &["many"])
            .await;
    }
    cache.delete_tag("many").await.unwrap();
    assert_eq!(cache.get_bytes("m:0").await, None);
    assert_eq!(cache.get_bytes("m:1199").await, None);

    cleanup(&cache, &config).await;
}

#[tokio::test]
async fn tag_sets_stay_bounded_as_variants_expire() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    let mut conn = raw(&config).await;
    let tag_key = format!("{}:tag:page", config.namespace);
    // A long-lived member keeps the set alive; 300 short-lived variants join it. After they
    // expired, the next write drops them: the set holds the live entries only.
    cache
        .set_bytes_tagged("long", Bytes::from_static(b"y"), MINUTE, &["page"])
        .await;
    for i in 0..300 {
        cache
            .set_bytes_tagged(
                &format!("short:{i}"),
                Bytes::from_static(b"x"),
                Duration::from_secs(1),
                &["page"],
            )
            .await;
    }
    let before: usize = conn.zcard(&tag_key).await.unwrap();
    assert_eq!(before, 301);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cache
        .set_bytes_tagged("next", Bytes::from_static(b"y"), MINUTE, &["page"])
        .await;
    let members: Vec<String> = conn.zrange(&tag_key, 0, -1).await.unwrap();
    assert_eq!(members.len(), 2, "the expired variants are gone");
    let ns = &config.namespace;
    assert_eq!(members, vec![format!("{ns}:long"), format!("{ns}:next")]);
    // Its TTL follows its longest-lived member, and it goes with it.
    let pttl: i64 = conn.pttl(&tag_key).await.unwrap();
    assert!((55_000..=60_000).contains(&pttl), "tag set PTTL {pttl}");
    cache
        .set_bytes_tagged(
            "brief",
            Bytes::from_static(b"z"),
            Duration::from_millis(80),
            &["brief"],
        )
        .await;
    let brief_key = format!("{}:tag:brief", config.namespace);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let exists: bool = conn.exists(&brief_key).await.unwrap();
    assert!(!exists, "a tag set expires with its last member");
    // A steady stream of new, short-lived variants next to a long-lived entry: the set holds
    // about one TTL's worth of them, not all of them.
    cache
        .set_bytes_tagged("anchor", Bytes::from_static(b"a"), MINUTE, &["stream"])
        .await;
    for i in 0..2000 {
        cache
            .set_bytes_tagged(
                &format!("stream:{i}"),
                Bytes::from_static(b"s"),
                Duration::from_millis(20),
                &["stream"],
            )
            .await;
    }
    let stream_key = format!("{}:tag:stream", config.namespace);
    let live: usize = conn.zcard(&stream_key).await.unwrap();
    eprintln!("tag set after 2000 writes of 20 ms entries: {live} members");
    assert!(
        live < 1000,
        "{live} members: expired ones are trimmed on write"
    );
    cleanup(&cache, &config).await;
}

#[tokio::test]
async fn an_old_format_tag_set_is_emptied_not_fatal() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    let mut conn = raw(&config).await;
    let ns = &config.namespace;
    // What an earlier Chopin wrote: a plain SET of full keys, the keys themselves.
    let tag_key = format!("{ns}:tag:legacy");
    for i in 0..1100 {
        let _: () = conn.set_ex(format!("{ns}:old:{i}"), "v", 60).await.unwrap();
        let _: () = conn.sadd(&tag_key, format!("{ns}:old:{i}")).await.unwrap();
    }
    // A tagged write finds it: it is emptied (its members deleted — they could no longer be
    // invalidated otherwise) and replaced by a sorted set.
    cache
        .set_bytes_tagged("new", Bytes::from_static(b"n"), MINUTE, &["legacy"])
        .await;
    assert_eq!(cache.get_bytes("new").await, Some(Bytes::from_static(b"n")));
    assert_eq!(cache.get_bytes("old:0").await, None);
    assert_eq!(cache.get_bytes("old:1099").await, None);
    let kind: String = redis::cmd("TYPE")
        .arg(&tag_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "zset");
    // delete_tag on an old-format set works too.
    let other = format!("{ns}:tag:legacy2");
    let _: () = conn.set_ex(format!("{ns}:old2"), "v", 60).await.unwrap();
    let _: () = conn.sadd(&other, format!("{ns}:old2")).await.unwrap();
    cache.delete_tag("legacy2").await.unwrap();
    assert_eq!(cache.get_bytes("old2").await, None);
    let exists: bool = conn.exists(&other).await.unwrap();
    assert!(!exists);
    cache.delete_tag("legacy").await.unwrap();
    assert_eq!(cache.get_bytes("new").await, None);
    cleanup(&cache, &config).await;
}

/// The longest a `PING` on another connection waited while `work` ran.
async fn worst_ping_during<F: std::future::Future>(
    config: &CacheConfig,
    work: F,
) -> (Duration, u32, F::Output) {
    let mut conn = raw(config).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let pinger = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut pings = 0u32;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let start = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
            worst = worst.max(start.elapsed());
            pings += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (worst, pings)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let output = work.await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (worst, pings) = pinger.await.unwrap();
    (worst, pings, output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_20k_members_runs_in_batches_and_redis_stays_responsive() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    let mut conn = raw(&config).await;
    let ns = config.namespace.clone();
    let tag_key = format!("{ns}:tag:big");
    // 20 000 members, written directly (through the cache it would take 20 000 round trips),
    // in the format the cache writes: keys with a TTL, a sorted set scored by expiry.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for chunk in (0..20_000).collect::<Vec<u32>>().chunks(1000) {
        let mut p = redis::pipe();
        for i in chunk {
            let key = format!("{ns}:big:{i}");
            p.cmd("SET")
                .arg(&key)
                .arg("v")
                .arg("PX")
                .arg(60_000)
                .ignore();
            p.cmd("ZADD")
                .arg(&tag_key)
                .arg(now_ms + 60_000)
                .arg(&key)
                .ignore();
        }
        let _: () = p.query_async(&mut conn).await.unwrap();
    }
    let n: usize = conn.zcard(&tag_key).await.unwrap();
    assert_eq!(n, 20_000);

    let started = Instant::now();
    let (worst, pings, deleted) = worst_ping_during(&config, cache.delete_tag("big")).await;
    let took = started.elapsed();
    deleted.unwrap();
    eprintln!("delete_tag of 20000 members: {took:?}; {pings} PINGs meanwhile, slowest {worst:?}");
    assert!(worst < Duration::from_millis(50), "a PING waited {worst:?}");
    assert!(
        pings >= 2,
        "PINGs were answered during the invalidation ({pings})"
    );
    let left: usize = conn.zcard(&tag_key).await.unwrap();
    assert_eq!(left, 0);
    let keys: Vec<String> = conn.keys(format!("{ns}:big:*")).await.unwrap();
    assert!(keys.is_empty(), "{} members left", keys.len());
    cleanup(&cache, &config).await;
}

#[tokio::test]
async fn namespaces_are_isolated() {
    let Some((a, a_config)) = cache().await else {
        return;
    };
    let (b, b_config) = cache().await.expect("Redis is up");
    assert_ne!(a.namespace(), b.namespace());
    a.set("shared-key", &"a", MINUTE).await;
    b.set("shared-key", &"b", MINUTE).await;
    assert_eq!(a.get::<String>("shared-key").await.as_deref(), Some("a"));
    assert_eq!(b.get::<String>("shared-key").await.as_deref(), Some("b"));

    a.delete_prefix("").await.unwrap();
    assert_eq!(a.get::<String>("shared-key").await, None);
    assert_eq!(
        b.get::<String>("shared-key").await.as_deref(),
        Some("b"),
        "emptying one namespace leaves the other alone"
    );
    cleanup(&a, &a_config).await;
    cleanup(&b, &b_config).await;
}

#[tokio::test]
async fn stats_count_hits_and_misses() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    cache.set("k", &1u8, MINUTE).await;
    cache.get::<u8>("k").await;
    cache.get_bytes("k").await;
    cache.get::<u8>("missing").await;
    let s = cache.stats();
    assert_eq!(s.backend, CacheBackend::Redis);
    assert_eq!((s.hits, s.local_hits, s.misses), (2, 0, 1), "{s:?}");
    assert_eq!(s.errors, 0);
    assert_eq!((s.entries, s.bytes), (0, 0), "no in-process tier");
    cleanup(&cache, &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_runs_the_loader_once_for_1000_callers() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    assert_eq!(single_flight_1000(&cache).await, 1);
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(cache.get::<Vec<u32>>("flight").await, Some(vec![1, 2, 3]));
    cleanup(&cache, &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_errors_reach_every_waiter_and_are_not_cached() {
    let Some((cache, config)) = cache().await else {
        return;
    };
    loader_error_is_shared_and_not_cached(&cache).await;
    abandoned_leaders_do_not_wedge(&cache).await;
    cleanup(&cache, &config).await;
}

#[tokio::test]
async fn start_up_fails_fast_when_redis_is_unreachable() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = CacheConfig {
        backend: CacheBackend::Redis,
        redis_url: format!("redis://:s3cret@127.0.0.1:{port}"),
        ..CacheConfig::default()
    };
    let started = Instant::now();
    let err = Cache::redis(&config).await.expect_err("nothing listens");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, CacheError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains(&port.to_string()), "{text}");

    let err = Cache::from_config(&CacheConfig {
        namespace: "a:b".into(),
        ..config.clone()
    })
    .await
    .expect_err("invalid namespace");
    assert!(matches!(err, CacheError::InvalidConfig(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_fast_misses_then_recovery_without_a_new_cache() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    // The default 50 ms timeout.
    let config = config(
        CacheBackend::Redis,
        &server.url(),
        Duration::from_millis(50),
    );
    let cache = Cache::from_config(&config).await.expect("connect");
    cache.set("k", &1u32, MINUTE).await;
    assert_eq!(cache.get::<u32>("k").await, Some(1));
    let router = App::new(Config::for_environment(Environment::Test))
        .cache(&cache)
        .into_router();
    let client = TestClient::new(router);
    assert_eq!(client.get("/health/ready").await.status, 200);

    server.kill();
    let errors_before = cache.stats().errors;
    // Bounded by the 50 ms timeout, not by TCP's own (seconds or minutes); the margin absorbs
    // a loaded CI machine.
    let limit = Duration::from_secs(1);
    for round in 0..20 {
        let got = within(limit, "get while down", cache.get::<u32>("k")).await;
        assert_eq!(got, None, "round {round}: a miss");
        within(limit, "set while down", cache.set("k", &2u32, MINUTE)).await;
        let deleted = within(limit, "delete while down", cache.delete("k")).await;
        assert!(
            matches!(deleted, Err(CacheError::Unavailable)),
            "{deleted:?}"
        );
        let deleted = within(limit, "delete_prefix while down", cache.delete_prefix("")).await;
        assert!(deleted.is_err());
        let loaded = within(
            limit,
            "get_or_load while down",
            cache.get_or_load("k", MINUTE, || async { Ok::<u32, String>(3) }),
        )
        .await;
        assert_eq!(loaded, Ok(3), "the loader still answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errors = cache.stats().errors - errors_before;
    assert!(errors >= 80, "every failed round trip is counted: {errors}");
    let res = client.get("/health/ready").await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.error_code().as_deref(), Some("SERVICE_UNAVAILABLE"));

    server.restart().await;
    let recovered = eventually(Duration::from_secs(10), || async {
        cache.set("k", &4u32, MINUTE).await;
        cache.get::<u32>("k").await == Some(4)
    })
    .await;
    assert!(recovered, "the same Cache works again once Redis is back");
    cache.delete("k").await.expect("deletes work again");
    assert_eq!(client.get("/health/ready").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_midway_through_delete_tag_is_an_error_and_a_retry_finishes() {
    // A persistent server (append-only file, fsync on every write): killed midway, it comes
    // back with the batches done gone and the others still in the tag set.
    let Some(mut server) = RedisServer::start_persistent().await else {
        return;
    };
    let config = config(
        CacheBackend::Tiered,
        &server.url(),
        Duration::from_millis(250),
    );
    // Two instances: `a` invalidates, `b` has read some of the entries into its local tier.
    let a = Cache::tiered(&config).await.expect("instance a");
    let b = Cache::tiered(&config).await.expect("instance b");
    let mut conn = raw(&config).await;
    let ns = config.namespace.clone();
    let tag_key = format!("{ns}:tag:big");
    let total: u64 = 100_000;
    // Scored by expiry, one millisecond apart: batches pop them in order.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for chunk in (0..total).collect::<Vec<u64>>().chunks(2000) {
        let mut p = redis::pipe();
        for i in chunk {
            let key = format!("{ns}:big:{i}");
            p.cmd("SET")
                .arg(&key)
                .arg("\"v\"")
                .arg("PX")
                .arg(600_000)
                .ignore();
            p.cmd("ZADD")
                .arg(&tag_key)
                .arg(now_ms + 300_000 + i)
                .arg(&key)
                .ignore();
        }
        let _: () = p.query_async(&mut conn).await.unwrap();
    }
    // `b` reads every 1000th entry, all through the range, into its local tier.
    let sample: Vec<String> = (0..total)
        .step_by(1000)
        .map(|i| format!("big:{i}"))
        .collect();
    for key in &sample {
        assert_eq!(b.get::<String>(key).await.as_deref(), Some("v"));
    }
    assert!(b.stats().entries >= sample.len() as u64 / 2);

    let deleting = {
        let a = a.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = a.delete_tag("big").await;
            (result, started.elapsed())
        })
    };
    // Kill it once some batches are done, long before all are.
    let mut watch = raw(&config).await;
    let left_at_kill = loop {
        let left: u64 = watch.zcard(&tag_key).await.unwrap();
        if left <= total - 10 * 500 {
            server.kill();
            break left;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    assert!(
        left_at_kill > 0,
        "the kill came after the whole delete (make the set larger)"
    );
    let (result, took) = tokio::time::timeout(Duration::from_secs(10), deleting)
        .await
        .expect("delete_tag returns while Redis is down")
        .expect("delete_tag does not panic");
    assert!(
        matches!(result, Err(CacheError::Unavailable)),
        "a delete_tag cut short is an error, not Ok: {result:?}"
    );
    eprintln!(
        "delete_tag: {left_at_kill} of {total} members left at the kill; the call failed \
         after {took:?}"
    );

    server.restart().await;
    let mut conn = raw(&config).await;
    let left: u64 = conn.zcard(&tag_key).await.unwrap();
    assert!(
        left > 0 && left < total,
        "the restarted server kept the batches done and the rest ({left} left)"
    );
    // The retry (once the breakers have closed and `a` is subscribed again) finishes the job.
    let finished = eventually(Duration::from_secs(10), || async {
        a.delete_tag("big").await.is_ok()
    })
    .await;
    assert!(finished, "a retry after Redis is back finishes the delete");
    let left: u64 = conn.zcard(&tag_key).await.unwrap();
    assert_eq!(left, 0);
    let keys: Vec<String> = conn.keys(format!("{ns}:big:*")).await.unwrap();
    assert!(keys.is_empty(), "{} members left", keys.len());
    // Nothing is served stale, by either instance.
    for key in &sample {
        assert_eq!(a.get::<String>(key).await, None, "{key} from a");
        assert_eq!(b.get::<String>(key).await, None, "{key} from b");
    }
    cleanup(&a, &config).await;
}
