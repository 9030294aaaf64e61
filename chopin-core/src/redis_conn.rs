//! Connecting to Redis: the one place that checks the namespace, opens the client and
//! configures the self-reconnecting `ConnectionManager`, for the cache's Redis tier
//! ([`crate::cache`]) and for the state shared between instances outside the cache — token
//! revocations ([`crate::auth::Revocations`]) and rate-limit counters ([`crate::rate_limit`]),
//! which hold a [`SharedRedis`]. Same URL, namespace and timeout as the cache (`REDIS_URL`,
//! `CHOPIN_CACHE_NAMESPACE`, `CHOPIN_CACHE_TIMEOUT`).

use std::time::Duration;

use ::redis::Client;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
#[cfg(feature = "auth")]
use ::redis::{Value, cmd};

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
            conn,
            prefix: reserved_prefix(&config.namespace),
            timeout: config.timeout,
        })
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
/// to 1 s); callers never wait on them for longer than their own timeout. Each connection
/// attempt is bounded by [`background_timeout`].
pub(crate) fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(background_timeout(timeout)))
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1))
        .set_exponent_base(2.0)
        .set_number_of_retries(6)
}
