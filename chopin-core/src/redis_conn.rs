//! One Redis connection for state shared between instances outside the cache: token
//! revocations ([`crate::auth::Revocations`]) and rate-limit counters
//! ([`crate::rate_limit`]). Same URL, namespace and timeout as the cache (`REDIS_URL`,
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
    /// `<namespace>:`.
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

impl SharedRedis {
    /// A connection made on first use (and re-made when lost): for layers built while the
    /// router is assembled, outside any async context.
    pub fn lazy(config: &CacheConfig) -> Result<SharedRedis, String> {
        if !is_valid_cache_namespace(&config.namespace) {
            return Err(format!(
                "namespace {:?} must be letters, digits, '_', '.' or '-' only",
                config.namespace
            ));
        }
        let url = redact_url(&config.redis_url);
        let client = Client::open(config.redis_url.as_str())
            .map_err(|e| format!("REDIS_URL {url} is not usable: {e}"))?;
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config(config.timeout))
            .map_err(|e| format!("REDIS_URL {url} is not usable: {e}"))?;
        Ok(SharedRedis {
            conn,
            prefix: format!("{}:", config.namespace),
            timeout: config.timeout,
        })
    }

    #[cfg(feature = "auth")]
    /// Connect and `PING` within `max(timeout, 1s)`; the error names the (redacted) URL.
    pub async fn connect(config: &CacheConfig) -> Result<SharedRedis, String> {
        if !is_valid_cache_namespace(&config.namespace) {
            return Err(format!(
                "namespace {:?} must be letters, digits, '_', '.' or '-' only",
                config.namespace
            ));
        }
        let url = redact_url(&config.redis_url);
        let client = Client::open(config.redis_url.as_str())
            .map_err(|e| format!("REDIS_URL {url} is not usable: {e}"))?;
        let deadline = config.timeout.max(Duration::from_secs(1));
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
            prefix: format!("{}:", config.namespace),
            timeout: config.timeout,
        })
    }
}

/// Reconnects with jittered exponential backoff (100 ms doubling up to 1 s).
fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1))
        .set_exponent_base(2.0)
        .set_number_of_retries(6)
}
