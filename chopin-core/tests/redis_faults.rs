//! Redis killed and restarted under load, for real: a private `redis-server` (started by the
//! test on a free port; the shared Redis is never touched) behind an `App` served over TCP,
//! with a tiered cache and Redis-backed token revocations. Clients loop on a cached read and
//! an authenticated route while the server is killed (SIGKILL) and started again on the same
//! port. Cached reads keep answering (misses); authenticated requests fail closed with 503,
//! at once once the Redis circuit breaker is open; everything succeeds within 1 s of the
//! restart.
#![cfg(all(feature = "redis", feature = "auth"))]

mod cache_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use cache_support::RedisServer;
use chopin_core::App;
use chopin_core::auth::{Auth, AuthUser, JwtKeys, Revocations, TokenSettings};
use chopin_core::cache::{Cache, CacheBackend};
use chopin_core::config::{Config, Environment, Rate, SharedStateBackend};
use chopin_core::error::ChopinError;
use chopin_core::response::ApiResponse;

/// Each Redis round trip's timeout (`CHOPIN_CACHE_TIMEOUT`): what a request waits for Redis
/// before the breaker opens.
const TIMEOUT: Duration = Duration::from_millis(250);
/// Answers while the breaker is open must be faster than this (without the breaker, each
/// waits out `TIMEOUT`).
const FAST: Duration = Duration::from_millis(100);

#[derive(Clone)]
struct AppState {
    cache: Cache,
    loads: Arc<AtomicU64>,
}

fn routes() -> Router<AppState> {
    async fn cached(State(state): State<AppState>) -> Result<ApiResponse<u64>, ChopinError> {
        let loads = state.loads.clone();
        let value = state
            .cache
            .get_or_load("item", Duration::from_secs(60), || async move {
                loads.fetch_add(1, Ordering::Relaxed);
                Ok::<u64, String>(42)
            })
            .await
            .map_err(|e| ChopinError::internal(format!("loader: {e:?}")))?;
        Ok(ApiResponse::success(value))
    }
    async fn me(user: AuthUser) -> ApiResponse<String> {
        ApiResponse::success(user.sub.clone())
    }
    Router::new()
        .route("/cached", get(cached))
        .route("/me", get(me))
}

/// One answer seen by a client.
#[derive(Debug, Clone)]
struct Sample {
    path: &'static str,
    start: Instant,
    took: Duration,
    /// HTTP status; 0 when the request failed without an answer.
    status: u16,
}

/// `clients` loops, alternating `/cached` and `/me` (with `token`), until `stop`.
fn load(
    base: &str,
    token: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Arc<Mutex<Vec<Sample>>> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    for i in 0..clients {
        let (http, base, token, stop, samples) = (
            http.clone(),
            base.to_string(),
            token.to_string(),
            stop.clone(),
            samples.clone(),
        );
        tokio::spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let path = if n % 2 == 0 { "/cached" } else { "/me" };
                n += 1;
                let start = Instant::now();
                let status = match http
                    .get(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                samples.lock().expect("samples").push(Sample {
                    path,
                    start,
                    took: start.elapsed(),
                    status,
                });
                // Answers during the outage come at once: do not spin the test machine.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    samples
}

/// `chopin_redis_breakers_open` now (this test binary runs one test: the gauge is ours).
fn breakers_open() -> i64 {
    chopin_core::metrics::global()
        .encode()
        .lines()
        .find_map(|line| {
            line.strip_prefix("chopin_redis_breakers_open ")
                .map(|v| v.trim().parse::<i64>().expect("a number"))
        })
        .unwrap_or(0)
}

/// The tests here read the process-wide breaker gauge: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Record `(when, breakers_open())` every 5 ms until `stop`.
fn watch_breakers(stop: &Arc<AtomicBool>) -> Arc<Mutex<Vec<(Instant, i64)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop, record) = (stop.clone(), seen.clone());
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let open = breakers_open();
            record.lock().expect("record").push((Instant::now(), open));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_reads_miss_auth_fails_closed_fast_and_all_recovers_within_a_second()
 {
    let _serial = SERIAL.lock().await;
    let test_start = Instant::now();
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let cache_config = cache_support::config(CacheBackend::Tiered, &redis.url(), TIMEOUT);
    let cache = Cache::tiered(&cache_config).await.expect("tiered cache");
    let revocations = Revocations::redis(&cache_config)
        .await
        .expect("Redis revocations");
    let auth = Auth::with_revocations(
        JwtKeys::hs256("k1", b"a test secret of at least 32 bytes!!").unwrap(),
        TokenSettings::default(),
        revocations,
        Environment::Test,
    );
    let token = auth.issue(auth.claims_for("7")).expect("a token");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let state = AppState {
        cache: cache.clone(),
        loads: Arc::new(AtomicU64::new(0)),
    };
    let app = App::with_state(Config::for_environment(Environment::Test), state.clone())
        .cache(&cache)
        .auth(&auth)
        .router(routes());
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = app.serve_with(listener, shutdown).await {
            eprintln!("test server failed: {e}");
        }
    });

    let http = reqwest::Client::new();
    let me = http
        .get(format!("{base}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("/me");
    assert_eq!(me.status().as_u16(), 200, "healthy: the token is accepted");

    let stop = Arc::new(AtomicBool::new(false));
    let samples = load(&base, &token, 4, &stop);
    let breakers = watch_breakers(&stop);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loads_before = state.loads.load(Ordering::Relaxed);

    let killed = Instant::now();
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarting = Instant::now();
    redis.restart().await;
    // `restart` returns once the new server answers PING: it accepts connections from here.
    let up = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_server.send(());

    let samples = samples.lock().expect("samples").clone();
    let breakers = breakers.lock().expect("breakers").clone();
    let loads_during = state.loads.load(Ordering::Relaxed) - loads_before;

    // Only 200 and 503, ever; cached reads always 200.
    for s in &samples {
        assert!(
            s.status == 200 || (s.status == 503 && s.path == "/me"),
            "{s:?} (at {:?} after the kill)",
            s.start.checked_duration_since(killed)
        );
    }
    let before: Vec<_> = samples
        .iter()
        .filter(|s| s.start + s.took < killed)
        .collect();
    assert!(
        before.iter().all(|s| s.status == 200) && before.len() > 10,
        "healthy before the kill: {before:?}"
    );

    // Both breakers (the cache's and the revocation store's) open while Redis is down.
    assert!(
        breakers
            .iter()
            .filter(|(t, _)| *t < killed)
            .all(|(_, n)| *n == 0),
        "no breaker open while Redis is up"
    );
    let open_at = breakers
        .iter()
        .find(|(t, n)| *t >= killed && *n == 2)
        .map(|(t, _)| t.duration_since(killed))
        .expect("both Redis breakers open during the outage");
    assert!(
        breakers
            .iter()
            .filter(|(t, _)| t.duration_since(killed) > open_at && *t < restarting)
            .all(|(_, n)| *n == 2),
        "the breakers stay open while Redis is down"
    );
    let closed_at = breakers
        .iter()
        .find(|(t, n)| *t >= up && *n == 0)
        .map(|(t, _)| t.duration_since(up))
        .expect("the breakers close after the restart");
    let during: Vec<_> = samples
        .iter()
        .filter(|s| s.start >= killed && s.start + s.took < restarting)
        .collect();
    // From then until the restart, every /me answers 503 fast and every read 200 fast. (A
    // read may wait for a load of the same key that began before the breaker opened — the
    // cache's single flight — which is at most one round trip in: reads are held to FAST
    // from one TIMEOUT after the opening.)
    let open: Vec<_> = during
        .iter()
        .filter(|s| {
            let since = s.start.duration_since(killed);
            since > open_at && (s.path == "/me" || since > open_at + TIMEOUT)
        })
        .collect();
    let slowest_open = open.iter().map(|s| s.took).max().unwrap_or_default();
    for s in &open {
        let want = if s.path == "/me" { 503 } else { 200 };
        assert_eq!(s.status, want, "{s:?} while the breaker is open");
        assert!(
            s.took < FAST,
            "{s:?} took {:?} while the breaker is open",
            s.took
        );
    }
    assert!(open.len() > 50, "{} answers while open", open.len());
    assert!(
        open_at < Duration::from_secs(1),
        "the breaker opened {open_at:?} after the kill"
    );
    assert!(
        loads_during > 0,
        "cached reads missed and loaded while Redis was down"
    );

    // Recovery: the first /me answered 200 after the restart, and everything from 1 s on.
    let recovered = samples
        .iter()
        .filter(|s| s.start >= up && s.path == "/me" && s.status == 200)
        .map(|s| s.start.duration_since(up))
        .min()
        .expect("/me recovers");
    let after: Vec<_> = samples
        .iter()
        .filter(|s| s.start >= up + Duration::from_secs(1))
        .collect();
    assert!(after.len() > 10, "{} answers after recovery", after.len());
    for s in &after {
        assert_eq!(s.status, 200, "{s:?}, from 1 s after the restart");
    }
    let total = test_start.elapsed();
    eprintln!(
        "redis outage: breakers open {open_at:?} after the kill; {} answers while open, slowest \
         {slowest_open:?}; {loads_during} loads while down; breakers closed {closed_at:?} and \
         /me answered 200 again {recovered:?} after the restart; whole test {total:?}",
        open.len()
    );
    assert!(recovered < Duration::from_secs(1));
    assert!(closed_at < Duration::from_secs(1));
    assert!(total < Duration::from_secs(20), "the test took {total:?}");
}

/// `GET {base}/cached` `n` times in a row: each answer's status and duration.
async fn burst(http: &reqwest::Client, base: &str, n: usize) -> Vec<(u16, Duration)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let status = match http.get(format!("{base}/cached")).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        out.push((status, start.elapsed()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_on_a_dead_redis_let_requests_through_at_once_and_apply_again_after_restart() {
    let _serial = SERIAL.lock().await;
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let cache_config = cache_support::config(CacheBackend::Memory, &redis.url(), TIMEOUT);
    let mut config = Config::for_environment(Environment::Test);
    config.cache = cache_config.clone();
    config.rate_limit.rate = Some(Rate {
        burst: 5,
        period: Duration::from_secs(600),
    });
    config.rate_limit.backend = SharedStateBackend::Redis;
    let cache = Cache::memory(&cache_config);
    let state = AppState {
        cache: cache.clone(),
        loads: Arc::new(AtomicU64::new(0)),
    };
    let app = App::with_state(config, state).router(routes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = app.serve_with(listener, shutdown).await {
            eprintln!("test server failed: {e}");
        }
    });
    let http = reqwest::Client::new();

    // Redis up: 5 requests, then 429.
    let statuses: Vec<u16> = burst(&http, &base, 7)
        .await
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 429, 429],
        "limited while Redis is up"
    );

    redis.kill();
    // The first requests find out that Redis is gone (each at most a timeout per limit);
    // from then on the breaker is open and every request goes through at once.
    let opening = burst(&http, &base, 6).await;
    let open = burst(&http, &base, 40).await;
    let slowest = open.iter().map(|(_, took)| *took).max().unwrap_or_default();
    eprintln!(
        "rate limit on a dead Redis: first answers {:?}; then 40 answers, slowest {slowest:?}",
        opening.iter().map(|(s, t)| (*s, *t)).collect::<Vec<_>>()
    );
    for (status, took) in opening.iter().chain(&open) {
        assert_eq!(*status, 200, "fail open: let through while Redis is down");
        assert!(
            *took < TIMEOUT * 2 + Duration::from_millis(500),
            "an answer took {took:?}"
        );
    }
    assert!(
        slowest < FAST,
        "with the breaker open, answers do not wait for Redis: slowest {slowest:?} (timeout {TIMEOUT:?})"
    );

    redis.restart().await;
    // The breaker closes within its probe interval; the restarted Redis holds no counters,
    // so the limit starts again: 5 requests, then 429.
    let limited_again = cache_support::eventually(Duration::from_secs(3), || {
        let (http, base) = (http.clone(), base.clone());
        async move { burst(&http, &base, 6).await.iter().any(|(s, _)| *s == 429) }
    })
    .await;
    assert!(limited_again, "limits apply again once Redis is back");
    let statuses: Vec<u16> = burst(&http, &base, 2)
        .await
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(statuses, [429, 429], "still limited");

    let _ = stop_server.send(());
    let _ = server.await;
}
