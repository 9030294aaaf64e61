//! Cache settings (`CHOPIN_CACHE`, `REDIS_URL`, `CHOPIN_CACHE_*`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::Environment;
use super::reader::{Reader, parse_bool, parse_duration, parse_size};
use super::secret::redact_url;

/// Which cache backend [`Cache::from_config`](crate::cache::Cache::from_config) builds, from
/// `CHOPIN_CACHE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CacheBackend {
    /// `memory` (the default): an in-process moka cache bounded by bytes. Nothing is shared
    /// between instances.
    #[default]
    Memory,
    /// `redis`: every entry lives in Redis, shared by every instance (feature `redis`).
    Redis,
    /// `tiered`: an in-process moka tier in front of Redis, kept coherent across instances by
    /// pub/sub invalidation (feature `redis`).
    Tiered,
}

impl CacheBackend {
    /// The name used in `CHOPIN_CACHE`: `memory`, `redis` or `tiered`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheBackend::Memory => "memory",
            CacheBackend::Redis => "redis",
            CacheBackend::Tiered => "tiered",
        }
    }
}

impl fmt::Display for CacheBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CacheBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "memory" => Ok(CacheBackend::Memory),
            "redis" => Ok(CacheBackend::Redis),
            "tiered" => Ok(CacheBackend::Tiered),
            _ => Err("must be one of memory, redis, tiered".into()),
        }
    }
}

/// Default `REDIS_URL`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default `CHOPIN_CACHE_MEMORY`: 64 MiB.
pub const DEFAULT_CACHE_MEMORY: u64 = 64 * 1024 * 1024;
/// Default `CHOPIN_CACHE_NAMESPACE`.
pub const DEFAULT_CACHE_NAMESPACE: &str = "chopin";
/// Default `CHOPIN_CACHE_TIMEOUT`: 50 ms.
pub const DEFAULT_CACHE_TIMEOUT: Duration = Duration::from_millis(50);

/// Cache settings, used by [`Cache::from_config`](crate::cache::Cache::from_config); an
/// application that builds no cache ignores them. See `docs/caching.md`.
///
/// `Debug` shows `redis_url` with its password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `CHOPIN_CACHE`: `memory` (default), `redis` or `tiered`.
    pub backend: CacheBackend,
    /// `REDIS_URL` (`redis://127.0.0.1:6379`): `redis://[user:password@]host[:port][/db]` or
    /// `unix:///path/to/redis.sock`. Used by the `redis` and `tiered` backends.
    pub redis_url: String,
    /// `CHOPIN_CACHE_MEMORY` (64 MiB): the most bytes (keys + values) the in-process tier
    /// holds before it evicts.
    pub memory_bytes: u64,
    /// `CHOPIN_CACHE_NAMESPACE` (`chopin`): prefix of every Redis key (`<namespace>:<key>`)
    /// and of the invalidation channel; letters, digits, `_`, `.` and `-`.
    pub namespace: String,
    /// `CHOPIN_CACHE_TIMEOUT` (50 ms): how long one Redis round trip may take before the call
    /// gives up (a miss for reads, a no-op for writes, an error for deletes).
    pub timeout: Duration,
    /// `CHOPIN_CACHE_HEADER` (`true` in development, `false` otherwise): whether
    /// [`ResponseCacheLayer`](crate::cache::http::ResponseCacheLayer)s built on this cache send
    /// the `x-cache: hit | miss | bypass` response header. Off outside development because it
    /// tells anyone which URLs are cached and how fresh they are (and so which requests reach
    /// the handler); a layer can still opt in with
    /// [`x_cache_header`](crate::cache::http::ResponseCacheLayer::x_cache_header).
    pub x_cache_header: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Memory,
            redis_url: DEFAULT_REDIS_URL.to_string(),
            memory_bytes: DEFAULT_CACHE_MEMORY,
            namespace: DEFAULT_CACHE_NAMESPACE.to_string(),
            timeout: DEFAULT_CACHE_TIMEOUT,
            // `Environment::default()` is development.
            x_cache_header: true,
        }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("backend", &self.backend)
            .field("redis_url", &redact_url(&self.redis_url))
            .field("memory_bytes", &self.memory_bytes)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("x_cache_header", &self.x_cache_header)
            .finish()
    }
}

/// `true` when `namespace` is a valid cache namespace: one or more of `A-Z a-z 0-9 _ . -`.
pub fn is_valid_cache_namespace(namespace: &str) -> bool {
    !namespace.is_empty()
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn parse_redis_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| {
        format!(
            "must be a URL such as redis://127.0.0.1:6379 or redis://:password@host:6379/0 ({e})"
        )
    })?;
    match url.scheme() {
        "redis" if url.host().is_some() => Ok(s.to_string()),
        "redis" => Err("must name a host (redis://host:port)".into()),
        "unix" | "redis+unix" => Ok(s.to_string()),
        "rediss" | "valkeys" => {
            Err("TLS (rediss://) is not supported; use redis:// on a private network".into())
        }
        other => Err(format!(
            "has scheme {other:?}; expected redis://, unix:// or redis+unix://"
        )),
    }
}

impl CacheConfig {
    /// Read `CHOPIN_CACHE`, `REDIS_URL` and `CHOPIN_CACHE_*`.
    pub(super) fn from_reader(r: &mut Reader<'_>, environment: Environment) -> CacheConfig {
        let cache_defaults = CacheConfig::default();
        CacheConfig {
            backend: r
                .get("CHOPIN_CACHE", |s| s.parse::<CacheBackend>())
                .unwrap_or(cache_defaults.backend),
            redis_url: r
                .get("REDIS_URL", parse_redis_url)
                .unwrap_or(cache_defaults.redis_url),
            memory_bytes: r
                .get("CHOPIN_CACHE_MEMORY", |s| match parse_size(s) {
                    Ok(0) => Err("must be larger than 0".to_string()),
                    Ok(n) => Ok(n as u64),
                    Err(e) => Err(e),
                })
                .unwrap_or(cache_defaults.memory_bytes),
            namespace: r
                .get("CHOPIN_CACHE_NAMESPACE", |s| {
                    if is_valid_cache_namespace(s) {
                        Ok(s.to_string())
                    } else {
                        Err("must be letters, digits, '_', '.' or '-' only".to_string())
                    }
                })
                .unwrap_or(cache_defaults.namespace),
            timeout: r
                .get("CHOPIN_CACHE_TIMEOUT", |s| match parse_duration(s) {
                    Ok(d) if d.is_zero() => Err("must be longer than 0".to_string()),
                    other => other,
                })
                .unwrap_or(cache_defaults.timeout),
            x_cache_header: r
                .get("CHOPIN_CACHE_HEADER", parse_bool)
                .unwrap_or(environment.is_development()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::tests::from;

    #[test]
    fn cache_settings() {
        let c = from(&[("CHOPIN_ENV", "development")]).unwrap();
        assert_eq!(c.cache, CacheConfig::default());
        for env in ["test", "production"] {
            let c = from(&[("CHOPIN_ENV", env)]).unwrap();
            assert!(!c.cache.x_cache_header, "x-cache is opt-in in {env}");
            let c = from(&[("CHOPIN_ENV", env), ("CHOPIN_CACHE_HEADER", "true")]).unwrap();
            assert!(c.cache.x_cache_header, "opted in, {env}");
        }
        let c = from(&[
            ("CHOPIN_ENV", "development"),
            ("CHOPIN_CACHE_HEADER", "false"),
        ])
        .unwrap();
        assert!(!c.cache.x_cache_header);
        let err = from(&[("CHOPIN_CACHE_HEADER", "maybe")]).unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_CACHE_HEADER");
        let c = from(&[
            ("CHOPIN_CACHE", "Tiered"),
            ("REDIS_URL", "redis://:hunter2@cache:6380/2"),
            ("CHOPIN_CACHE_MEMORY", "1MiB"),
            ("CHOPIN_CACHE_NAMESPACE", "my-app.v2"),
            ("CHOPIN_CACHE_TIMEOUT", "250ms"),
        ])
        .unwrap();
        assert_eq!(c.cache.backend, CacheBackend::Tiered);
        assert_eq!(c.cache.memory_bytes, 1024 * 1024);
        assert_eq!(c.cache.namespace, "my-app.v2");
        assert_eq!(c.cache.timeout, Duration::from_millis(250));
        assert!(!format!("{c:?}").contains("hunter2"));
        let err =
            from(&[("CHOPIN_CACHE_NAMESPACE", "a:b"), ("REDIS_URL", "http://x")]).unwrap_err();
        let vars: Vec<&str> = err.problems.iter().map(|p| p.variable).collect();
        assert_eq!(vars, vec!["REDIS_URL", "CHOPIN_CACHE_NAMESPACE"]);
    }
}
