//! Connecting to Redis: the one place that checks the namespace, opens the client and
//! configures the self-reconnecting `ConnectionManager`, for the cache's Redis tier
//! ([`crate::cache`]) and for the state shared between instances outside the cache — token
//! revocations ([`crate::auth::Revocations`]) and rate-limit counters ([`crate::rate_limit`]),
//! which hold a [`SharedRedis`]. Same URL, namespace and timeout as the cache (`REDIS_URL`,
//! `CHOPIN_CACHE_NAMESPACE`, `CHOPIN_CACHE_TIMEOUT`).

use std::future::Future;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Value, cmd};

use crate::config::{CacheConfig, is_valid_cache_namespace, redact_url};

/// A self-reconnecting Redis connection with the namespace and round-trip timeout to use.
#[derive(Clone)]
pub(crate) struct SharedRedis {
    pub conn: ConnectionManager,
    /// `<namespace>|`: a key space the cache cannot reach. Cache keys are always
    /// `<namespace>:…` and a namespace holds no `|`, so `Cache::delete_prefix` (even with
    /// `""`) and cache keys chosen by the application never touch revocations or counters.
    pub prefix: String,
    pub timeout: Duration,
    /// Fails calls at once while Redis is known to be down ([`RedisBreaker`]).
    pub breaker: RedisBreaker,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The prefix of Chopin's own shared state for `namespace` (see [`SharedRedis::prefix`]).
pub(crate) fn reserved_prefix(namespace: &str) -> String {
    format!("{namespace}|")
}

impl SharedRedis {
    /// A connection made on first use (and re-made when lost): for layers built while the
    /// router is assembled, outside any async context.
    pub fn lazy(config: &CacheConfig) -> Result<SharedRedis, String> {
        check_namespace(&config.namespace)?;
        let (client, url) = open_client(config)?;
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config(config.timeout))
            .map_err(|e| format!("REDIS_URL {url} is not usable: {e}"))?;
        Ok(SharedRedis {
            breaker: RedisBreaker::new("shared state", conn.clone(), config.timeout),
            conn,
            prefix: reserved_prefix(&config.namespace),
            timeout: config.timeout,
        })
    }

    #[cfg(feature = "auth")]
    /// Connect and `PING` within `max(timeout, 1s)`; the error names the (redacted) URL.
    pub async fn connect(config: &CacheConfig) -> Result<SharedRedis, String> {
        check_namespace(&config.namespace)?;
        let (client, url) = open_client(config)?;
        let deadline = background_timeout(config.timeout);
        let mut conn = match tokio::time::timeout(
            deadline,
            ConnectionManager::new_with_config(client, manager_config(config.timeout)),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(format!("cannot connect to Redis at {url}: {e}")),
            Err(_) => return Err(format!("Redis at {url} did not answer within {deadline:?}")),
        };
        match tokio::time::timeout(deadline, cmd("PING").query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("Redis at {url} refused PING: {e}")),
            Err(_) => return Err(format!("Redis at {url} did not answer within {deadline:?}")),
        }
        Ok(SharedRedis {
            breaker: RedisBreaker::new("shared state", conn.clone(), config.timeout),
            conn,
            prefix: reserved_prefix(&config.namespace),
            timeout: config.timeout,
        })
    }

    /// Run one round trip through the breaker, bounded by `deadline`.
    pub async fn call<T>(
        &self,
        deadline: Duration,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, CallError> {
        self.breaker.call(deadline, fut).await
    }
}

/// How long the breaker's probe waits for `PING`: the call timeout, but at least 250 ms
/// (a Redis that cannot answer a `PING` in that long is failing the calls anyway).
pub(crate) fn probe_timeout(timeout: Duration) -> Duration {
    timeout.max(Duration::from_millis(250))
}

/// Consecutive connection failures (errors or timeouts) that open a [`RedisBreaker`]
/// without waiting for its probe.
pub(crate) const BREAKER_THRESHOLD: u32 = 3;

/// How often an open [`RedisBreaker`] pings Redis.
pub(crate) const BREAKER_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Why a call through a [`RedisBreaker`] did not succeed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The breaker is open: Redis was not asked.
    Open,
    /// Redis did not answer within the deadline.
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    Redis(RedisError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Open => f.write_str("Redis is down (circuit breaker open)"),
            CallError::Timeout(d) => write!(f, "no answer within {d:?}"),
            CallError::Redis(e) => e.fmt(f),
        }
    }
}

/// The Redis circuit breaker, one per connection (a cache's Redis tier, the revocation
/// store, a rate limiter), on the state machine shared with the database's
/// ([`crate::breaker`]):
///
/// * **Closed**: calls run, each bounded by its deadline. A connection failure (I/O error,
///   refused, dropped) or a timeout is counted and starts one background probe; a success
///   resets the count. An error Redis answers with (a script error, `WRONGTYPE`…) is not a
///   connection failure and counts for nothing.
/// * **Open**: after [`BREAKER_THRESHOLD`] failures in a row, or when the probe's `PING`
///   fails or gets no answer within [`probe_timeout`] (`max(timeout, 250ms)`). Calls fail at once with
///   [`CallError::Open`], without touching the connection; the probe repeats every
///   [`BREAKER_PROBE_INTERVAL`].
/// * The first `PING` answered closes it.
///
/// The state is atomics read on every call; the probe is one tokio task at most, which
/// holds the breaker weakly.
#[derive(Clone)]
pub(crate) struct RedisBreaker(crate::breaker::Breaker<RedisProbe>);

/// The Redis probe: `PING` on the connection.
pub(crate) struct RedisProbe {
    /// What the connection serves, for the log.
    what: &'static str,
    conn: ConnectionManager,
    probe_timeout: Duration,
}

impl crate::breaker::Probe for RedisProbe {
    async fn probe(&self, _open: bool) -> Result<(), &'static str> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(
            self.probe_timeout,
            cmd("PING").query_async::<Value>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            _ => Err("PING failed"),
        }
    }

    fn opened(&self, why: &'static str) {
        #[cfg(feature = "metrics")]
        {
            let m = &crate::metrics::global().cache;
            m.redis_breaker_opened.inc();
            m.redis_breakers_open.inc();
        }
        tracing::warn!(
            connection = self.what,
            reason = why,
            "Redis unreachable: circuit breaker open, calls fail at once until a PING succeeds"
        );
    }

    fn closed(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::global().cache.redis_breakers_open.dec();
        tracing::info!(
            connection = self.what,
            "Redis reachable again: circuit breaker closed"
        );
    }

    fn dropped_open(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::global().cache.redis_breakers_open.dec();
    }
}

impl std::fmt::Debug for RedisBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBreaker")
            .field("what", &self.0.probe().what)
            .field("open", &self.is_open())
            .finish()
    }
}

/// Whether `err` says the connection (not the command) failed.
pub(crate) fn is_connection_failure(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_timeout()
        || err.is_unrecoverable_error()
}

impl RedisBreaker {
    /// A closed breaker probing through `conn`, whose calls are bounded by `timeout`.
    pub(crate) fn new(what: &'static str, conn: ConnectionManager, timeout: Duration) -> Self {
        let probe = RedisProbe {
            what,
            conn,
            probe_timeout: probe_timeout(timeout),
        };
        RedisBreaker(crate::breaker::Breaker::new(
            probe,
            BREAKER_THRESHOLD,
            BREAKER_PROBE_INTERVAL,
        ))
    }

    /// `true` while Redis is known to be down.
    pub(crate) fn is_open(&self) -> bool {
        self.0.is_open()
    }

    /// Run `fut` (one round trip) within `deadline`, unless the breaker is open; count
    /// connection failures and timeouts.
    pub(crate) async fn call<T>(
        &self,
        deadline: Duration,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, CallError> {
        if self.is_open() {
            return Err(CallError::Open);
        }
        match tokio::time::timeout(deadline, fut).await {
            Ok(Ok(value)) => {
                self.0.success();
                Ok(value)
            }
            Ok(Err(err)) => {
                if is_connection_failure(&err) {
                    self.0.failure();
                } else {
                    self.0.success();
                }
                Err(CallError::Redis(err))
            }
            Err(_) => {
                self.0.failure();
                Err(CallError::Timeout(deadline))
            }
        }
    }
}

/// The namespace must be letters, digits, `_`, `.` or `-`: it never holds `:` (the cache's
/// separator) or `|` (the [`reserved_prefix`] separator), so the key spaces cannot overlap.
pub(crate) fn check_namespace(namespace: &str) -> Result<(), String> {
    if is_valid_cache_namespace(namespace) {
        Ok(())
    } else {
        Err(format!(
            "namespace {namespace:?} must be letters, digits, '_', '.' or '-' only"
        ))
    }
}

/// The client for `config.redis_url` (no connection yet) and the URL with its password
/// redacted, for error messages.
pub(crate) fn open_client(config: &CacheConfig) -> Result<(Client, String), String> {
    let url = redact_url(&config.redis_url);
    let client = Client::open(config.redis_url.as_str())
        .map_err(|e| format!("REDIS_URL {url} is not usable: {e}"))?;
    Ok((client, url))
}

/// The deadline for work off the request path — connecting, subscribing, pinging the
/// subscription — and for start-up: the call timeout, but at least one second so that a
/// slow network does not stop a healthy Redis from being reached at all.
pub(crate) fn background_timeout(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(1))
}

/// Reconnects run in the background with jittered exponential backoff (100 ms doubling up
/// to 250 ms: a refused connection costs Redis nothing, and a Redis that comes back is used
/// within a quarter of a second, which the 1 s recovery promise of the Redis breaker needs);
/// callers never wait on them for longer than their own timeout. Each connection attempt is
/// bounded by [`background_timeout`].
pub(crate) fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(background_timeout(timeout)))
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_millis(250))
        .set_exponent_base(2.0)
        .set_number_of_retries(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A breaker on a port where nothing listens.
    fn refusing() -> RedisBreaker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let timeout = Duration::from_millis(50);
        let conn =
            ConnectionManager::new_lazy_with_config(client, manager_config(timeout)).unwrap();
        RedisBreaker::new("test", conn, timeout)
    }

    async fn ping(b: &RedisBreaker) -> Result<Value, CallError> {
        let mut conn = b.0.probe().conn.clone();
        b.call(
            Duration::from_millis(50),
            cmd("PING").query_async::<Value>(&mut conn),
        )
        .await
    }

    #[tokio::test]
    async fn failures_open_it_and_then_calls_fail_at_once() {
        let b = refusing();
        assert!(!b.is_open());
        for _ in 0..BREAKER_THRESHOLD {
            assert!(!matches!(ping(&b).await, Ok(_) | Err(CallError::Open)));
        }
        assert!(b.is_open(), "{BREAKER_THRESHOLD} failures in a row open it");
        let start = std::time::Instant::now();
        for _ in 0..100 {
            assert!(matches!(ping(&b).await, Err(CallError::Open)));
        }
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "100 calls while open took {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn the_probe_task_does_not_keep_a_dropped_breaker_alive() {
        let b = refusing();
        let _ = ping(&b).await;
        assert!(b.0.is_probing(), "a failure starts a probe");
        let weak = b.0.downgrade();
        drop(b);
        for _ in 0..200 {
            if weak.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the probe task still holds the breaker");
    }
}
