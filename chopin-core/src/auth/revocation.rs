//! Revoked access-token ids: in process or in Redis, each kept until its token expires.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::AuthError;
use super::jwt::now_secs;

/// Most revoked ids kept in process ([`Revocations::memory`]): about 100 MB at most.
pub const MEMORY_CAPACITY: usize = 1_000_000;

/// Revoked ids in process: never evicted before their expiry. When full (after dropping the
/// expired ones), a new revocation is refused rather than an old one forgotten.
///
/// Ids are filed in time buckets: bucket `k` holds the ids whose revocation ends within
/// the `k`-th second after the store was made. Expiry pops whole buckets off the front of
/// an ordered map, so it only ever touches ids that have expired (each once), never the
/// live ones: an insert at capacity costs the same as any other.
struct MemoryStore {
    ids: RwLock<Buckets>,
    capacity: usize,
    /// The origin of bucket numbers.
    base: Instant,
}

#[derive(Default)]
struct Buckets {
    /// Each revoked id and the instant its revocation ends.
    until: HashMap<Arc<str>, Instant>,
    /// Bucket number -> the ids whose revocation ends in that second.
    buckets: BTreeMap<u64, HashSet<Arc<str>>>,
    /// Ids looked at by expiry so far (for the tests: live ids are never looked at).
    #[cfg(test)]
    examined: usize,
}

impl MemoryStore {
    fn new(capacity: usize) -> MemoryStore {
        MemoryStore {
            ids: RwLock::new(Buckets::default()),
            capacity: capacity.max(1),
            base: Instant::now(),
        }
    }

    /// The bucket of a revocation ending at `until`: the end of the second it falls in, so a
    /// bucket is dropped only once every id in it has expired.
    fn bucket_of(&self, until: Instant) -> u64 {
        until.saturating_duration_since(self.base).as_secs() + 1
    }

    /// The instant every id of bucket `k` has expired by.
    fn bucket_end(&self, k: u64) -> Instant {
        self.base + Duration::from_secs(k)
    }

    /// Drop the buckets that have wholly expired: the work is the expired ids, nothing else.
    fn expire(&self, ids: &mut Buckets, now: Instant) {
        while let Some(entry) = ids.buckets.first_entry() {
            if self.bucket_end(*entry.key()) > now {
                break;
            }
            for jti in entry.remove() {
                #[cfg(test)]
                {
                    ids.examined += 1;
                }
                ids.until.remove(&jti);
            }
        }
    }

    fn insert(&self, jti: &str, until: Instant) -> Result<(), AuthError> {
        let mut guard = self
            .ids
            .write()
            .map_err(|_| AuthError::Internal("revocation store poisoned".into()))?;
        let ids = &mut *guard;
        self.expire(ids, Instant::now());
        if let Some((key, previous)) = ids.until.get_key_value(jti) {
            // Already revoked: keep the later end, moving the id to its bucket.
            if until > *previous {
                let key = Arc::clone(key);
                let (old, new) = (self.bucket_of(*previous), self.bucket_of(until));
                if old != new {
                    if let Some(bucket) = ids.buckets.get_mut(&old) {
                        bucket.remove(&key);
                        if bucket.is_empty() {
                            ids.buckets.remove(&old);
                        }
                    }
                    ids.buckets.entry(new).or_default().insert(Arc::clone(&key));
                }
                ids.until.insert(key, until);
            }
            return Ok(());
        }
        if ids.until.len() >= self.capacity {
            tracing::error!(
                capacity = self.capacity,
                "the in-process revocation store is full; the revocation is refused"
            );
            return Err(AuthError::Unavailable);
        }
        let key: Arc<str> = Arc::from(jti);
        ids.buckets
            .entry(self.bucket_of(until))
            .or_default()
            .insert(Arc::clone(&key));
        ids.until.insert(key, until);
        Ok(())
    }

    fn contains(&self, jti: &str) -> Result<bool, AuthError> {
        let ids = self
            .ids
            .read()
            .map_err(|_| AuthError::Internal("revocation store poisoned".into()))?;
        Ok(ids
            .until
            .get(jti)
            .is_some_and(|until| *until > Instant::now()))
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
///   closed) rather than let a revoked token through. After repeated connection failures a
///   circuit breaker opens and checks and revocations fail with 503 at once, without
///   waiting for Redis, until a background `PING` (every 100 ms) succeeds.
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
            backend: Backend::Memory(Arc::new(MemoryStore::new(capacity))),
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
                // A logout waits a little longer than a check: it must not be lost. While
                // the breaker is open it fails at once.
                let deadline = shared.timeout.max(Duration::from_secs(1));
                match shared
                    .call(deadline, cmd.query_async::<()>(&mut conn))
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot store a token revocation in Redis");
                        Err(AuthError::Unavailable)
                    }
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
                let deadline = shared.timeout.max(Duration::from_millis(500));
                match shared.call(deadline, ping).await {
                    Ok(_) => Ok(()),
                    Err(_) => Err(AuthError::Unavailable),
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
                // Fail closed, and at once while the breaker is open.
                match shared
                    .call(shared.timeout, cmd.query_async::<i64>(&mut conn))
                    .await
                {
                    Ok(n) => Ok(n > 0),
                    Err(crate::redis_conn::CallError::Open) => Err(AuthError::Unavailable),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot check token revocation in Redis");
                        Err(AuthError::Unavailable)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose bucket origin is `ago` in the past, so that ids can be filed with ends
    /// already behind us.
    fn store(capacity: usize, ago: Duration) -> MemoryStore {
        MemoryStore {
            base: Instant::now() - ago,
            ..MemoryStore::new(capacity)
        }
    }

    fn examined(store: &MemoryStore) -> usize {
        store.ids.read().unwrap().examined
    }

    fn buckets(store: &MemoryStore) -> usize {
        store.ids.read().unwrap().buckets.len()
    }

    #[test]
    fn a_full_store_refuses_without_looking_at_live_ids() {
        let capacity = 10_000;
        let s = store(capacity, Duration::ZERO);
        let until = Instant::now() + Duration::from_secs(600);
        for i in 0..capacity {
            s.insert(&format!("jti-{i}"), until + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert!(matches!(
            s.insert("one-more", until),
            Err(AuthError::Unavailable)
        ));
        // Re-revoking a stored id is not a new entry: accepted even when full.
        s.insert("jti-7", until + Duration::from_secs(5)).unwrap();
        assert!(s.contains("jti-7").unwrap());
        assert!(!s.contains("one-more").unwrap());
        assert_eq!(
            examined(&s),
            0,
            "expiry looked at live ids: inserting at capacity must not scan the store"
        );
        // 10 000 ends spread over 10 s: about 11 buckets, not one per id.
        assert!(buckets(&s) <= 12, "{} buckets", buckets(&s));
    }

    #[test]
    fn expired_buckets_are_dropped_whole_and_make_room() {
        let s = store(2, Duration::from_secs(100));
        let now = Instant::now();
        s.insert("old-1", now - Duration::from_secs(50)).unwrap();
        s.insert("old-2", now - Duration::from_secs(50)).unwrap();
        assert!(
            !s.contains("old-1").unwrap(),
            "an expired id is not revoked"
        );
        // Full of expired ids: the next insert drops their bucket and fits.
        s.insert("live-1", now + Duration::from_secs(60)).unwrap();
        assert_eq!(
            examined(&s),
            2,
            "exactly the two expired ids were looked at"
        );
        s.insert("live-2", now + Duration::from_secs(60)).unwrap();
        assert!(matches!(
            s.insert("live-3", now + Duration::from_secs(60)),
            Err(AuthError::Unavailable)
        ));
        assert_eq!(examined(&s), 2, "live ids are never looked at");
        assert!(s.contains("live-1").unwrap() && s.contains("live-2").unwrap());
        assert_eq!(buckets(&s), 1);
    }

    #[test]
    fn a_later_revocation_of_the_same_id_moves_it_to_the_later_bucket() {
        let s = store(10, Duration::ZERO);
        let now = Instant::now();
        s.insert("a", now + Duration::from_secs(10)).unwrap();
        s.insert("a", now + Duration::from_secs(100)).unwrap();
        // An earlier end does not shorten it.
        s.insert("a", now + Duration::from_secs(20)).unwrap();
        let ids = s.ids.read().unwrap();
        assert_eq!(ids.buckets.len(), 1, "the old bucket is gone");
        let (&k, members) = ids.buckets.iter().next().unwrap();
        assert_eq!(k, s.bucket_of(now + Duration::from_secs(100)));
        assert!(members.contains("a"));
        assert_eq!(ids.until["a"], now + Duration::from_secs(100));
    }

    #[test]
    fn a_bucket_is_dropped_only_after_its_last_id_expired() {
        let s = store(10, Duration::ZERO);
        let until = Instant::now() + Duration::from_millis(1500);
        let k = s.bucket_of(until);
        assert!(s.bucket_end(k) >= until);
        assert!(s.bucket_end(k - 1) < until);
    }

    #[tokio::test]
    async fn revoke_and_check_through_the_public_api() {
        let r = Revocations::memory_with_capacity(1);
        let exp = now_secs() + 60;
        r.revoke("x", exp).await.unwrap();
        assert!(r.is_revoked("x").await.unwrap());
        assert!(!r.is_revoked("y").await.unwrap());
        assert!(matches!(
            r.revoke("y", exp).await,
            Err(AuthError::Unavailable)
        ));
        // Already expired: not stored, not an error.
        r.revoke("z", now_secs() - 1).await.unwrap();
    }
}
