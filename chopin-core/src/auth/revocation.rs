//! Revoked access-token ids: in process or in Redis, each kept until its token expires.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::AuthError;
use super::jwt::now_secs;

/// Most revoked ids kept in process ([`Revocations::memory`]): about 100 MB at most.
pub const MEMORY_CAPACITY: usize = 1_000_000;

/// Revoked ids in process: never evicted before their expiry. When full (after dropping the
/// expired ones), a new revocation is refused rather than an old one forgotten.
struct MemoryStore {
    ids: RwLock<HashMap<String, Instant>>,
    capacity: usize,
}

impl MemoryStore {
    fn insert(&self, jti: &str, until: Instant) -> Result<(), AuthError> {
        let mut ids = self
            .ids
            .write()
            .map_err(|_| AuthError::Internal("revocation store poisoned".into()))?;
        if ids.len() >= self.capacity && !ids.contains_key(jti) {
            let now = Instant::now();
            ids.retain(|_, until| *until > now);
            if ids.len() >= self.capacity {
                tracing::error!(
                    capacity = self.capacity,
                    "the in-process revocation store is full; the revocation is refused"
                );
                return Err(AuthError::Unavailable);
            }
        }
        let entry = ids.entry(jti.to_string()).or_insert(until);
        *entry = (*entry).max(until);
        Ok(())
    }

    fn contains(&self, jti: &str) -> Result<bool, AuthError> {
        let ids = self
            .ids
            .read()
            .map_err(|_| AuthError::Internal("revocation store poisoned".into()))?;
        Ok(ids.get(jti).is_some_and(|until| *until > Instant::now()))
    }
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<MemoryStore>),
    #[cfg(feature = "redis")]
    Redis(crate::redis_conn::SharedRedis),
}

/// Where revoked token ids (`jti`) live until their token expires.
///
/// * [`Revocations::memory`]: in this process. A logout is seen only by this instance.
///   Nothing is evicted before it expires: at [`MEMORY_CAPACITY`] live ids a new revocation
///   fails with [`AuthError::Unavailable`] (503) instead of silently forgetting another.
/// * [`Revocations::redis`] (feature `redis`): `SET <namespace>|auth:revoked:<jti> PX <ttl>`
///   (the `|` puts it out of reach of the cache API, whose keys are `<namespace>:…`),
///   seen by every instance sharing the Redis. Each check is one `EXISTS` round trip within
///   the cache timeout; if Redis does not answer, the request is refused with 503 (fail
///   closed) rather than let a revoked token through.
#[derive(Clone)]
pub struct Revocations {
    backend: Backend,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Memory(_) => f.write_str("Revocations::Memory"),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => write!(f, "Revocations::Redis({:?})", r.prefix),
        }
    }
}

impl Revocations {
    /// Revocations kept in this process, at most [`MEMORY_CAPACITY`] live ids.
    pub fn memory() -> Revocations {
        Revocations::memory_with_capacity(MEMORY_CAPACITY)
    }

    /// Revocations kept in this process, at most `capacity` live ids (at least 1); past that,
    /// [`Revocations::revoke`] fails with [`AuthError::Unavailable`].
    pub fn memory_with_capacity(capacity: usize) -> Revocations {
        Revocations {
            backend: Backend::Memory(Arc::new(MemoryStore {
                ids: RwLock::new(HashMap::new()),
                capacity: capacity.max(1),
            })),
        }
    }

    /// Revocations in Redis, from the cache settings (`REDIS_URL`, `CHOPIN_CACHE_NAMESPACE`,
    /// `CHOPIN_CACHE_TIMEOUT`). Fails when Redis does not answer.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn redis(config: &crate::config::CacheConfig) -> Result<Revocations, AuthError> {
        let shared = crate::redis_conn::SharedRedis::connect(config)
            .await
            .map_err(AuthError::Config)?;
        Ok(Revocations {
            backend: Backend::Redis(shared),
        })
    }

    pub(crate) async fn from_cache_config(
        config: &crate::config::CacheConfig,
    ) -> Result<Revocations, AuthError> {
        #[cfg(feature = "redis")]
        {
            Revocations::redis(config).await
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = config;
            Err(AuthError::Config(
                "CHOPIN_AUTH_REVOCATION=redis needs chopin-core's `redis` feature".into(),
            ))
        }
    }

    /// Revoke `jti` until `until` (seconds since the Unix epoch); already-expired ids are not
    /// stored. Fails with [`AuthError::Unavailable`] when the store cannot keep it (Redis
    /// down, or the in-process store full).
    pub async fn revoke(&self, jti: &str, until: i64) -> Result<(), AuthError> {
        let remaining = until.saturating_sub(now_secs());
        if remaining <= 0 || jti.is_empty() {
            return Ok(());
        }
        let ttl = Duration::from_secs(remaining as u64);
        match &self.backend {
            Backend::Memory(store) => store.insert(jti, Instant::now() + ttl),
            #[cfg(feature = "redis")]
            Backend::Redis(shared) => {
                let mut conn = shared.conn.clone();
                let key = format!("{}auth:revoked:{jti}", shared.prefix);
                let cmd = redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .to_owned();
                // A logout waits a little longer than a check: it must not be lost.
                let deadline = shared.timeout.max(Duration::from_secs(1));
                match tokio::time::timeout(deadline, cmd.query_async::<()>(&mut conn)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot store a token revocation in Redis");
                        Err(AuthError::Unavailable)
                    }
                    Err(_) => Err(AuthError::Unavailable),
                }
            }
        }
    }

    /// `true` when revocations are shared through Redis.
    pub fn is_shared(&self) -> bool {
        !matches!(self.backend, Backend::Memory(_))
    }

    /// `Ok` when the store answers: always for memory, a Redis `PING` within the timeout.
    pub async fn ping(&self) -> Result<(), AuthError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            #[cfg(feature = "redis")]
            Backend::Redis(shared) => {
                let mut conn = shared.conn.clone();
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<redis::Value>(&mut conn);
                match tokio::time::timeout(shared.timeout.max(Duration::from_millis(500)), ping)
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    _ => Err(AuthError::Unavailable),
                }
            }
        }
    }

    /// `true` when `jti` is revoked.
    pub async fn is_revoked(&self, jti: &str) -> Result<bool, AuthError> {
        match &self.backend {
            Backend::Memory(store) => store.contains(jti),
            #[cfg(feature = "redis")]
            Backend::Redis(shared) => {
                let mut conn = shared.conn.clone();
                let key = format!("{}auth:revoked:{jti}", shared.prefix);
                let cmd = redis::cmd("EXISTS").arg(&key).to_owned();
                match tokio::time::timeout(shared.timeout, cmd.query_async::<i64>(&mut conn)).await
                {
                    Ok(Ok(n)) => Ok(n > 0),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot check token revocation in Redis");
                        Err(AuthError::Unavailable)
                    }
                    Err(_) => Err(AuthError::Unavailable),
                }
            }
        }
    }
}
