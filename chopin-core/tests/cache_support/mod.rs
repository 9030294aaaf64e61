//! Helpers shared by the cache tests (`cache_memory.rs`, `cache_redis.rs`, `cache_tiered.rs`):
//! configurations, single-flight drivers, and a private `redis-server` that a test can kill
//! and restart.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
#[cfg(feature = "redis")]
use std::net::TcpListener;
#[cfg(feature = "redis")]
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chopin_core::cache::{Cache, CacheBackend, CacheConfig};
#[cfg(feature = "redis")]
use chopin_core::testing::in_ci;
use chopin_core::testing::unique_namespace;

/// A generous timeout for tests that check behaviour, not failure: a loaded CI machine must
/// not turn a slow answer into a miss.
pub const RELAXED: Duration = Duration::from_secs(2);

/// A configuration for `backend` on `url` with a fresh namespace.
pub fn config(backend: CacheBackend, url: &str, timeout: Duration) -> CacheConfig {
    CacheConfig {
        backend,
        redis_url: url.to_string(),
        memory_bytes: 16 * 1024 * 1024,
        namespace: unique_namespace(),
        timeout,
        ..CacheConfig::default()
    }
}

/// Poll `check` every 20 ms until it is true or `within` has passed; returns whether it
/// became true.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 1,000 concurrent `get_or_load` calls on one key whose loader takes 100 ms; returns how
/// many times the loader ran. Every caller must get the loaded value.
pub async fn single_flight_1000(cache: &Cache) -> usize {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let cache = cache.clone();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("flight", Duration::from_secs(60), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, String>(vec![1u32, 2, 3])
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("caller task"), Ok(vec![1, 2, 3]));
    }
    calls.load(Ordering::SeqCst)
}

/// 200 concurrent callers whose loader fails: the loader runs once, every caller gets the
/// error, and nothing is cached (the next call loads again and succeeds).
pub async fn loader_error_is_shared_and_not_cached(cache: &Cache) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let cache = cache.clone();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("failing", Duration::from_secs(60), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err::<u32, String>("database down".into())
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.expect("caller task"),
            Err("database down".to_string())
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader run for 200 callers"
    );
    assert_eq!(
        cache.get::<u32>("failing").await,
        None,
        "errors are not cached"
    );

    let value = cache
        .get_or_load("failing", Duration::from_secs(60), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<u32, String>(5)
        })
        .await;
    assert_eq!(value, Ok(5));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the next call loads again");
    assert_eq!(cache.get::<u32>("failing").await, Some(5));
}

/// A leader whose loader panics, then one that is cancelled: neither wedges the key.
pub async fn abandoned_leaders_do_not_wedge(cache: &Cache) {
    let ttl = Duration::from_secs(60);
    // Panic: the follower that was waiting for it loads instead.
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("wedge", ttl, || async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let value: Result<u32, String> = Err("never returned".into());
                    if value.is_err() {
                        panic!("loader panicked");
                    }
                    value
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let follower = cache.get_or_load("wedge", ttl, || async { Ok::<u32, String>(1) });
    let value = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the follower is not stuck behind a panicked leader");
    assert_eq!(value, Ok(1));
    assert!(leader.await.expect_err("leader panicked").is_panic());
    cache.delete("wedge").await.expect("delete");

    // Cancellation: the leader's task is aborted mid-load.
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("wedge", ttl, || async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<u32, String>(0)
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let follower = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("wedge", ttl, || async { Ok::<u32, String>(2) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    let value = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the follower is not stuck behind a cancelled leader")
        .expect("follower task");
    assert_eq!(value, Ok(2));
    let value = cache
        .get_or_load("wedge", ttl, || async { Ok::<u32, String>(3) })
        .await;
    assert_eq!(value, Ok(2), "the follower's value was cached");
}

/// A `redis-server` of the test's own on a free port, killed when dropped.
#[cfg(feature = "redis")]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// The data directory of a persistent server (append-only file, fsync on every write),
    /// removed when dropped.
    dir: Option<std::path::PathBuf>,
}

#[cfg(feature = "redis")]
impl RedisServer {
    /// Start one; `None` (after printing why) when `redis-server` is not installed, outside
    /// CI.
    pub async fn start() -> Option<RedisServer> {
        RedisServer::start_with(false).await
    }

    /// Start one that keeps its data across [`kill`](Self::kill) and
    /// [`restart`](Self::restart): an append-only file, fsynced on every write, in a
    /// directory of its own.
    pub async fn start_persistent() -> Option<RedisServer> {
        RedisServer::start_with(true).await
    }

    async fn start_with(persistent: bool) -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = persistent.then(|| {
            let dir =
                std::env::temp_dir().join(format!("chopin-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a data directory");
            dir
        });
        let mut server = RedisServer {
            port,
            child: None,
            dir,
        };
        match server.spawn() {
            Ok(()) => {}
            Err(e) if !in_ci() => {
                eprintln!("skipping: cannot start redis-server: {e}");
                return None;
            }
            Err(e) => panic!("cannot start redis-server (CI=true): {e}"),
        }
        server.wait_ready().await;
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"]);
        match &self.dir {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&self) {
        let url = self.url();
        let ready = eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url.as_str()) else {
                    return false;
                };
                match client.get_multiplexed_async_connection().await {
                    Ok(mut conn) => redis::cmd("PING")
                        .query_async::<redis::Value>(&mut conn)
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        assert!(ready, "redis-server on port {} did not come up", self.port);
    }

    /// Kill the server (SIGKILL) and wait for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().expect("restart redis-server");
        self.wait_ready().await;
    }
}

#[cfg(feature = "redis")]
impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Assert `fut` finishes within `limit` and return its output.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = fut.await;
    let took = start.elapsed();
    assert!(took < limit, "{what} took {took:?} (limit {limit:?})");
    out
}
