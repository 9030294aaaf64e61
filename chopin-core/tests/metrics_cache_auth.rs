//! The cache, HTTP-cache, auth and rate-limit metric families as a scrape shows them: exact
//! deltas of `chopin_cache_*` per tier (memory, Redis, tiered), evictions and the bytes
//! gauge, coalesced loads, Redis errors, response-cache hits and `304`s, logins by outcome,
//! refused tokens by reason, refresh-token reuse and 429s by key.
//!
//! The registry is process-wide and these tests run in parallel threads: each holds [`LOCK`]
//! for its whole run, so the deltas it reads are its own.

mod cache_support;
mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use bytes::Bytes;
use cache_support::{RELAXED, RedisServer, config, eventually};
use chopin_core::auth::{
    Auth, AuthModule, AuthRateLimits, AuthStore, AuthUser, Claims, JwtKeys, TokenSettings,
};
use chopin_core::cache::http::{ETagLayer, ResponseCacheLayer};
use chopin_core::cache::{Cache, CacheBackend, CacheConfig};
use chopin_core::config::{AuthRateLimitConfig, Environment, Rate};
use chopin_core::prelude::*;
use chopin_core::rate_limit::RateLimitLayer;
use chopin_core::testing::{TestClient, TestResponse, redis_url_or_skip};
use http::{Request, StatusCode};
use serde_json::{Value, json};

/// Held by every test of this file for its whole run.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SECRET: &[u8] = b"metrics-test-secret-of-at-least-32-bytes";
const MINUTE: Duration = Duration::from_secs(60);

/// One scrape of the process-wide registry.
struct Scrape(String);

impl Scrape {
    fn now() -> Scrape {
        Scrape(chopin_core::metrics::global().encode())
    }

    /// The value of `series` (name and labels exactly as printed); 0 when absent.
    fn get(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|line| {
                let value = line.strip_prefix(series)?.strip_prefix(' ')?;
                Some(value.trim().parse::<f64>().expect("a number"))
            })
            .unwrap_or(0.0)
    }

    /// How much `series` moved since `before`.
    fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.get(series) - before.get(series)
    }
}

/// Assert the deltas of several series since `before`.
fn assert_deltas(before: &Scrape, expected: &[(&str, f64)]) {
    let after = Scrape::now();
    for (series, want) in expected {
        assert_eq!(after.delta(before, series), *want, "{series}");
    }
}

fn hits(tier: &str) -> String {
    format!("chopin_cache_hits_total{{tier=\"{tier}\"}}")
}
fn misses(tier: &str) -> String {
    format!("chopin_cache_misses_total{{tier=\"{tier}\"}}")
}
fn sets(tier: &str) -> String {
    format!("chopin_cache_sets_total{{tier=\"{tier}\"}}")
}
fn evictions(tier: &str) -> String {
    format!("chopin_cache_evictions_total{{tier=\"{tier}\"}}")
}
fn errors(tier: &str) -> String {
    format!("chopin_cache_errors_total{{tier=\"{tier}\"}}")
}
const MEMORY_BYTES: &str = "chopin_cache_memory_bytes";
const COALESCED: &str = "chopin_cache_coalesced_loads_total";
const HTTP_HITS: &str = "chopin_http_cache_hits_total";
const NOT_MODIFIED: &str = "chopin_http_cache_not_modified_total";
const REFRESH_REUSE: &str = "chopin_auth_refresh_reuse_total";

fn login(outcome: &str) -> String {
    format!("chopin_auth_logins_total{{outcome=\"{outcome}\"}}")
}
fn refused(reason: &str) -> String {
    format!("chopin_auth_token_verification_failures_total{{reason=\"{reason}\"}}")
}
fn limited(key: &str) -> String {
    format!("chopin_rate_limit_rejections_total{{key=\"{key}\"}}")
}

fn memory_config(bytes: u64) -> CacheConfig {
    CacheConfig {
        memory_bytes: bytes,
        ..CacheConfig::default()
    }
}

fn auth() -> Auth {
    Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        Environment::Development,
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A request from client address `ip`, as `App::serve` hands it to the router.
fn from_ip(method: &str, uri: &str, ip: &str, body: Option<&Value>) -> Request<Body> {
    let addr = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 40000);
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .extension(ConnectInfo(addr));
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------
// The memory tier.

#[tokio::test]
async fn memory_tier_hits_misses_sets_and_bytes_agree_with_stats() {
    let _serial = LOCK.lock().await;
    let before = Scrape::now();
    let cache = Cache::memory(&memory_config(1024 * 1024));
    cache.set("a", &"x".repeat(10), MINUTE).await; // "a" + `"xxxxxxxxxx"`: 1 + 12 bytes
    cache
        .set_bytes("bb", Bytes::from_static(b"0123456789"), MINUTE)
        .await; // 2 + 10
    assert_eq!(
        cache.get::<String>("a").await.as_deref(),
        Some("xxxxxxxxxx")
    );
    assert_eq!(
        cache.get_bytes("bb").await,
        Some(Bytes::from_static(b"0123456789"))
    );
    assert_eq!(
        cache.get::<String>("a").await.as_deref(),
        Some("xxxxxxxxxx")
    );
    assert_eq!(cache.get::<String>("nope").await, None);
    assert_eq!(cache.get_bytes("nope").await, None);
    // Stored bytes that do not decode as the type asked for: an error, and a miss.
    assert_eq!(cache.get::<u32>("bb").await, None);
    cache.run_pending_tasks().await;

    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.codec_errors), (3, 3, 1));
    assert_eq!(stats.bytes, 25);
    assert_deltas(
        &before,
        &[
            (&hits("memory"), 3.0),
            (&misses("memory"), 3.0),
            (&sets("memory"), 2.0),
            (&errors("memory"), 1.0),
            (&evictions("memory"), 0.0),
            (&hits("redis"), 0.0),
            (&misses("redis"), 0.0),
            (&sets("redis"), 0.0),
            (MEMORY_BYTES, 25.0),
        ],
    );

    // Replacing a value and deleting one move the gauge with them.
    cache
        .set_bytes("bb", Bytes::from_static(b"01234"), MINUTE)
        .await;
    cache.delete("a").await.unwrap();
    cache.run_pending_tasks().await;
    assert_eq!(cache.stats().bytes, 7);
    assert_deltas(&before, &[(&sets("memory"), 3.0), (MEMORY_BYTES, 7.0)]);

    // A dropped cache no longer counts.
    drop(cache);
    assert_deltas(&before, &[(MEMORY_BYTES, 0.0)]);
}

#[tokio::test]
async fn memory_tier_evictions_under_a_tiny_byte_bound_are_counted() {
    let _serial = LOCK.lock().await;
    let before = Scrape::now();
    // Room for one 60-byte entry, not two.
    let cache = Cache::memory(&memory_config(100));
    for key in ["k1", "k2", "k3", "k4"] {
        cache
            .set_bytes(key, Bytes::from(vec![b'x'; 58]), MINUTE)
            .await;
        cache.run_pending_tasks().await;
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    // Four stored, at most one kept: the others evicted (or refused admission).
    assert!(stats.entries <= 1, "{stats:?}");
    assert_eq!(stats.evictions, 4 - stats.entries, "{stats:?}");
    assert_deltas(
        &before,
        &[
            (&sets("memory"), 4.0),
            (&evictions("memory"), stats.evictions as f64),
            (MEMORY_BYTES, stats.bytes as f64),
        ],
    );

    // Expiry is an eviction too.
    let before = Scrape::now();
    let cache = Cache::memory(&memory_config(1024 * 1024));
    cache
        .set_bytes("short", Bytes::from_static(b"v"), Duration::from_millis(20))
        .await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(cache.get_bytes("short").await, None);
    // moka's timer wheel removes expired entries (and so reports them) at a ~1 s
    // granularity.
    let counted = eventually(Duration::from_secs(5), || async {
        cache.run_pending_tasks().await;
        cache.stats().expirations == 1
    })
    .await;
    assert!(counted, "{:?}", cache.stats());
    assert_deltas(
        &before,
        &[(&evictions("memory"), 1.0), (&misses("memory"), 1.0)],
    );
}

#[tokio::test]
async fn concurrent_loads_of_one_key_are_coalesced() {
    let _serial = LOCK.lock().await;
    const N: usize = 8;
    let before = Scrape::now();
    let cache = Cache::memory(&memory_config(1024 * 1024));
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..N {
        let cache = cache.clone();
        let runs = Arc::clone(&runs);
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("slow", MINUTE, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, String>(7u32)
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(7));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().loads, 1);
    assert_deltas(
        &before,
        &[
            (COALESCED, (N - 1) as f64),
            (&misses("memory"), N as f64),
            (&sets("memory"), 1.0),
            (&hits("memory"), 0.0),
        ],
    );
    // Later calls are plain hits, not coalesced.
    let again = cache
        .get_or_load("slow", MINUTE, || async { Ok::<_, String>(0u32) })
        .await;
    assert_eq!(again, Ok(7));
    assert_deltas(
        &before,
        &[(COALESCED, (N - 1) as f64), (&hits("memory"), 1.0)],
    );
}

// ---------------------------------------------------------------------------------------
// Redis and tiered.

#[tokio::test]
async fn redis_tier_counts_hits_misses_and_sets() {
    let _serial = LOCK.lock().await;
    let Some(url) = redis_url_or_skip().await else {
        return;
    };
    let cache = Cache::redis(&config(CacheBackend::Redis, &url, RELAXED))
        .await
        .expect("connect");
    let before = Scrape::now();
    cache.set("k", &1u32, MINUTE).await;
    cache
        .set_bytes_tagged("t", Bytes::from_static(b"2"), MINUTE, &["tag"])
        .await;
    assert_eq!(cache.get::<u32>("k").await, Some(1));
    assert_eq!(cache.get_bytes("t").await, Some(Bytes::from_static(b"2")));
    assert_eq!(cache.get::<u32>("absent").await, None);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.local_hits, stats.misses), (2, 0, 1));
    assert_deltas(
        &before,
        &[
            (&sets("redis"), 2.0),
            (&hits("redis"), 2.0),
            (&misses("redis"), 1.0),
            (&errors("redis"), 0.0),
            (&sets("memory"), 0.0),
            (&hits("memory"), 0.0),
            (&misses("memory"), 0.0),
            (MEMORY_BYTES, 0.0),
        ],
    );
    cache.delete_prefix("").await.unwrap();
}

#[tokio::test]
async fn tiered_lookups_count_each_tier_they_ask() {
    let _serial = LOCK.lock().await;
    let Some(url) = redis_url_or_skip().await else {
        return;
    };
    let a_config = config(CacheBackend::Tiered, &url, RELAXED);
    let b_config = CacheConfig {
        namespace: a_config.namespace.clone(),
        ..a_config.clone()
    };
    let a = Cache::tiered(&a_config).await.expect("connect a");
    let b = Cache::tiered(&b_config).await.expect("connect b");

    // A write goes to Redis, then to the writer's memory tier.
    let before = Scrape::now();
    a.set("k", &5u32, MINUTE).await;
    assert_deltas(&before, &[(&sets("redis"), 1.0), (&sets("memory"), 1.0)]);
    // Wait until b has applied a's invalidation, so that b's fill below is not skipped.
    assert!(
        eventually(RELAXED, || async { b.stats().invalidations_received == 1 }).await,
        "b heard a's write"
    );

    // b: a miss in memory, a hit in Redis (and a fill of its memory tier).
    let before = Scrape::now();
    assert_eq!(b.get::<u32>("k").await, Some(5));
    assert_deltas(
        &before,
        &[
            (&misses("memory"), 1.0),
            (&hits("redis"), 1.0),
            (&sets("memory"), 1.0),
            (&hits("memory"), 0.0),
        ],
    );
    // Then a hit in memory, without asking Redis.
    let before = Scrape::now();
    assert_eq!(b.get::<u32>("k").await, Some(5));
    // Missing everywhere: a miss of both tiers.
    assert_eq!(b.get::<u32>("absent").await, None);
    assert_deltas(
        &before,
        &[
            (&hits("memory"), 1.0),
            (&hits("redis"), 0.0),
            (&misses("memory"), 1.0),
            (&misses("redis"), 1.0),
        ],
    );
    let stats = b.stats();
    assert_eq!((stats.hits, stats.local_hits, stats.misses), (2, 1, 1));
    a.delete_prefix("").await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_is_counted_as_errors() {
    let _serial = LOCK.lock().await;
    // A port with nothing listening: building the cache fails, and is counted.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let before = Scrape::now();
    let built = Cache::redis(&config(
        CacheBackend::Redis,
        &url,
        Duration::from_millis(100),
    ))
    .await;
    assert!(built.is_err());
    assert_deltas(&before, &[(&errors("redis"), 1.0)]);

    // A Redis that goes away under a live cache: each failed call is an error (and a read
    // that failed is a miss).
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let cache = Cache::redis(&config(
        CacheBackend::Redis,
        &server.url(),
        Duration::from_millis(100),
    ))
    .await
    .expect("connect");
    server.kill();
    let before = Scrape::now();
    assert_eq!(cache.get::<u32>("k").await, None);
    cache.set("k", &1u32, MINUTE).await;
    let stats = cache.stats();
    assert_eq!((stats.errors, stats.misses), (2, 1));
    assert_deltas(
        &before,
        &[
            (&errors("redis"), 2.0),
            (&misses("redis"), 1.0),
            (&sets("redis"), 0.0),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// HTTP caching.

#[tokio::test]
async fn response_cache_hits_and_not_modified_answers_are_counted() {
    let _serial = LOCK.lock().await;
    let cache = Cache::memory(&memory_config(1024 * 1024));
    let client = TestClient::new(
        Router::new()
            .route("/cached", get(|| async { "cached body" }))
            .layer(ResponseCacheLayer::new(cache, "metrics"))
            .route("/tagged", get(|| async { "tagged body" }))
            .layer(ETagLayer::new()),
    );
    let before = Scrape::now();
    let first = client.get("/cached").await;
    assert_eq!(first.header("x-cache"), Some("miss"));
    let etag = first.header("etag").expect("an ETag").to_string();
    let second = client.get("/cached").await;
    assert_eq!(second.header("x-cache"), Some("hit"));
    assert_eq!(second.text(), "cached body");
    // A hit answered 304.
    let conditional = client
        .with_header("if-none-match", &etag)
        .get("/cached")
        .await;
    assert_eq!(conditional.status, StatusCode::NOT_MODIFIED);
    assert_eq!(conditional.header("x-cache"), Some("hit"));
    assert_deltas(&before, &[(HTTP_HITS, 2.0), (NOT_MODIFIED, 1.0)]);

    // A 304 of the ETag layer alone, and a conditional request that does not match.
    let tagged = client.get("/tagged").await;
    let etag = tagged.header("etag").expect("an ETag").to_string();
    let r = client
        .with_header("if-none-match", &etag)
        .get("/tagged")
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = client
        .with_header("if-none-match", "\"other\"")
        .get("/tagged")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_deltas(&before, &[(HTTP_HITS, 2.0), (NOT_MODIFIED, 2.0)]);
}

// ---------------------------------------------------------------------------------------
// Auth.

#[tokio::test]
async fn refused_tokens_are_counted_by_reason() {
    let _serial = LOCK.lock().await;
    let auth = auth();
    let before = Scrape::now();

    let good = auth.claims_for("42");
    let token = auth.issue(good.clone()).unwrap();
    assert!(auth.verify::<Claims>(&token).await.is_ok());

    let mut expired = auth.claims_for("42");
    expired.exp = now() - 120; // beyond the 30 s leeway
    let expired = auth.issue(expired).unwrap();
    assert_eq!(
        auth.verify::<Claims>(&expired).await.unwrap_err(),
        chopin_core::auth::AuthError::Expired
    );

    // Not a JWT; signed with another key; an application token presented as an access token.
    let other = Auth::new(
        JwtKeys::hs256("k1", b"another-secret-of-at-least-thirty-two-b").unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    let forged = other.issue(other.claims_for("42")).unwrap();
    let app_token = auth.sign(&json!({"sub": "42", "exp": now() + 60})).unwrap();
    for invalid in ["not-a-token", forged.as_str(), app_token.as_str()] {
        assert!(auth.verify::<Claims>(invalid).await.is_err());
    }

    auth.revoke(&good).await.unwrap();
    assert_eq!(
        auth.verify::<Claims>(&token).await.unwrap_err(),
        chopin_core::auth::AuthError::Revoked
    );

    // Over HTTP, through `AuthUser`, the same counters.
    let client = TestClient::new(
        Router::new()
            .route(
                "/me",
                get(|user: AuthUser| async move { ApiResponse::success(user.sub.clone()) }),
            )
            .layer(auth.extension()),
    );
    let r = client.with_bearer(&expired).get("/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    assert_deltas(
        &before,
        &[
            (&refused("expired"), 2.0),
            (&refused("invalid"), 3.0),
            (&refused("revoked"), 1.0),
            (&refused("unavailable"), 0.0),
        ],
    );
}

#[tokio::test]
async fn revocation_store_down_is_counted_as_unavailable() {
    let _serial = LOCK.lock().await;
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let revocations = chopin_core::auth::Revocations::redis(&config(
        CacheBackend::Redis,
        &server.url(),
        Duration::from_millis(100),
    ))
    .await
    .expect("connect");
    let auth = Auth::with_revocations(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        revocations,
        Environment::Development,
    );
    let token = auth.issue(auth.claims_for("42")).unwrap();
    assert!(auth.verify::<Claims>(&token).await.is_ok());
    server.kill();
    let before = Scrape::now();
    assert_eq!(
        auth.verify::<Claims>(&token).await.unwrap_err(),
        chopin_core::auth::AuthError::Unavailable
    );
    assert_deltas(&before, &[(&refused("unavailable"), 1.0)]);
}

fn rate(burst: u32, secs: u64) -> Option<Rate> {
    Some(Rate {
        burst,
        period: Duration::from_secs(secs),
    })
}

fn creds(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

async fn post(client: &TestClient, ip: &str, path: &str, body: &Value) -> TestResponse {
    client
        .request(from_ip("POST", &format!("/auth{path}"), ip, Some(body)))
        .await
}

#[tokio::test]
async fn logins_refresh_reuse_and_auth_route_limits_are_counted() {
    let _serial = LOCK.lock().await;
    let (_dir, db) = common::sqlite("").await;
    let store = AuthStore::new(&db).await.expect("auth migrations");
    let limits = AuthRateLimits::memory(AuthRateLimitConfig {
        login: rate(4, 60),
        login_failures: rate(2, 900),
        signup: rate(1, 60),
        ..AuthRateLimitConfig::off()
    });
    let module = AuthModule::new(auth(), store)
        .await
        .unwrap()
        .rate_limits(limits);
    let client = TestClient::new(Router::new().nest("/auth", module.router()));
    let before = Scrape::now();

    let r = post(
        &client,
        "10.0.0.9",
        "/signup",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let refresh = r.value()["data"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post(
        &client,
        "10.0.0.9",
        "/signup",
        &creds("bob@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    // From 10.0.0.1: a success, failures (a bad password, an unknown account), then the
    // per-address login budget (4) runs out.
    let ip = "10.0.0.1";
    let ok = post(
        &client,
        ip,
        "/login",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let r = post(&client, ip, "/login", &creds("ada@example.com", "wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(&client, ip, "/login", &creds("nobody@example.com", "wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(&client, ip, "/login", &creds("ada@example.com", "wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(
        &client,
        ip,
        "/login",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.header("ratelimit").map(|v| v.starts_with("login;")),
        Some(true)
    );
    // From 10.0.0.2: Ada's failures (2) run out for that address.
    let ip = "10.0.0.2";
    for _ in 0..2 {
        let r = post(&client, ip, "/login", &creds("ada@example.com", "wrong")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = post(
        &client,
        ip,
        "/login",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.header("ratelimit")
            .map(|v| v.starts_with("login-failures;")),
        Some(true)
    );

    // Refresh: rotate once, then replay the spent token.
    let r = post(
        &client,
        "10.0.0.9",
        "/refresh",
        &json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = post(
        &client,
        "10.0.0.9",
        "/refresh",
        &json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    assert_deltas(
        &before,
        &[
            (&login("success"), 1.0),
            (&login("failure"), 5.0),
            (&login("rate_limited"), 2.0),
            (REFRESH_REUSE, 1.0),
            (&limited("signup"), 1.0),
            (&limited("login"), 1.0),
            (&limited("login_failures"), 1.0),
            (&limited("refresh"), 0.0),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// The rate-limiting layer.

#[tokio::test]
async fn layer_429s_are_counted_by_key() {
    let _serial = LOCK.lock().await;
    let auth = auth();
    let app = |layer: RateLimitLayer| {
        TestClient::new(
            Router::new()
                .route(
                    "/me",
                    get(|user: AuthUser| async move { ApiResponse::success(user.sub.clone()) }),
                )
                .layer(layer)
                .layer(auth.extension()),
        )
    };
    let before = Scrape::now();

    // Per address: the second request from 10.1.0.1 is over the `ip` rate.
    let by_ip = app(RateLimitLayer::memory(rate(100, 60).unwrap()).ip_rate(rate(1, 60).unwrap()));
    let get_me = |client: &TestClient, token: &str, ip: &str| {
        let client = client.with_bearer(token);
        let req = from_ip("GET", "/me", ip, None);
        async move { client.request(req).await }
    };
    let token = auth.issue(auth.claims_for("7")).unwrap();
    assert_eq!(
        get_me(&by_ip, &token, "10.1.0.1").await.status,
        StatusCode::OK
    );
    let r = get_me(&by_ip, &token, "10.1.0.1").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.header("ratelimit").map(|v| v.starts_with("ip;")),
        Some(true)
    );
    assert_deltas(&before, &[(&limited("ip"), 1.0), (&limited("user"), 0.0)]);

    // Per user: the token's first request is charged to its address (and verified by the
    // handler); from then on user 8 has one request a minute, from any address.
    let by_user = app(RateLimitLayer::memory(rate(1, 60).unwrap())
        .ip_rate(rate(100, 60).unwrap())
        .per_user(auth.clone()));
    let token = auth.issue(auth.claims_for("8")).unwrap();
    assert_eq!(
        get_me(&by_user, &token, "10.2.0.1").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_me(&by_user, &token, "10.2.0.2").await.status,
        StatusCode::OK
    );
    let r = get_me(&by_user, &token, "10.2.0.3").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.header("ratelimit").map(|v| v.starts_with("client;")),
        Some(true)
    );
    assert_deltas(&before, &[(&limited("ip"), 1.0), (&limited("user"), 1.0)]);
}
