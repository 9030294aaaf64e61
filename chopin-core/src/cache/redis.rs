//! The Redis tier: a multiplexed, self-reconnecting connection (`ConnectionManager`), every
//! key namespaced `<namespace>:<key>`, every round trip bounded by the configured timeout.
//!
//! Failures never reach the caller as panics or hangs: a round trip that errors or exceeds the
//! timeout is counted in [`CacheStats::errors`](super::CacheStats::errors) (and, with the
//! `metrics` feature, `chopin_cache_errors_total{tier="redis"}`), logged (a warning
//! when Redis starts failing, one when it is back, details at `debug`), and reported as
//! [`Failed`]; the `Cache` turns that into a miss, a no-op or
//! [`CacheError::Unavailable`](super::CacheError::Unavailable). Every round trip goes through
//! a [`RedisBreaker`]: once Redis is known to be down they fail at once (reads miss, deletes
//! answer `Unavailable`) without waiting for the timeout, until a background `PING` succeeds.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{AsyncConnectionConfig, Client, RedisError, Script, Value, cmd, pipe};
use bytes::Bytes;

use super::stats::{Counters, Event, Tier, record, redis_error};
use super::{CacheError, ttl_millis};
use crate::config::CacheConfig;
use crate::redis_conn::{self, RedisBreaker, background_timeout};

/// SCAN page size for [`RedisTier::delete_prefix`].
const SCAN_COUNT: usize = 500;

/// How many keys one `UNLINK` inside the tag script removes at a time (Lua's `unpack` has a
/// stack limit of a few thousand values).
const UNLINK_BATCH: usize = 500;

/// `SET` a value with its TTL, add it to each tag set (`KEYS[2..]`), extend each tag set's TTL
/// to at least the value's (never shorten it: the set must outlive its longest-lived member),
/// and optionally `PUBLISH` an invalidation — atomically, in one round trip. A script rather
/// than `PEXPIRE … GT` keeps Redis 6 supported (`GT` needs 7.0, and does not apply to a new,
/// persistent set).
const SET_TAGGED: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 1
";

/// Delete every member of a tag set and the set itself, atomically; returns the members.
const DELETE_TAG: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
local batch = tonumber(ARGV[1])
for i = 1, #members, batch do
  redis.call('UNLINK', unpack(members, i, math.min(i + batch - 1, #members)))
end
redis.call('UNLINK', KEYS[1])
return members
";

/// A Redis round trip failed or timed out (already counted and logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed;

impl From<Failed> for CacheError {
    fn from(_: Failed) -> Self {
        CacheError::Unavailable
    }
}

/// `\`-escape the glob characters of a `SCAN MATCH` pattern.
pub(crate) fn escape_glob(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 2);
    for c in raw.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The shared Redis connection and key scheme of one `Cache`.
pub(crate) struct RedisTier {
    client: Client,
    conn: ConnectionManager,
    /// `<namespace>:`.
    prefix: String,
    /// `<namespace>:tag:`.
    tag_prefix: String,
    /// `<namespace>:invalidate`.
    channel: String,
    timeout: Duration,
    counters: Arc<Counters>,
    /// Whether the last round trip failed (to log transitions, not every failure).
    failing: AtomicBool,
    /// Fails round trips at once while Redis is known to be down.
    breaker: RedisBreaker,
    set_tagged: Script,
    delete_tag: Script,
}

impl RedisTier {
    /// Connect to `config.redis_url`, failing within [`background_timeout`] when Redis is
    /// unreachable or refuses the credentials.
    pub async fn connect(
        config: &CacheConfig,
        counters: Arc<Counters>,
    ) -> Result<RedisTier, CacheError> {
        redis_conn::check_namespace(&config.namespace).map_err(CacheError::InvalidConfig)?;
        if config.timeout.is_zero() {
            return Err(CacheError::InvalidConfig(
                "timeout must be longer than 0".into(),
            ));
        }
        let (client, url) = redis_conn::open_client(config).map_err(CacheError::InvalidConfig)?;
        let deadline = background_timeout(config.timeout);
        let connect_error =
            |source: Box<dyn std::error::Error + Send + Sync>| CacheError::Connect {
                url: url.clone(),
                source,
            };

        // A one-off probe gives a precise start-up error (refused, bad password, …) at once,
        // where the manager would keep retrying in the background.
        let probe = async {
            let probe_config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(deadline))
                .set_response_timeout(Some(deadline));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&probe_config)
                .await?;
            cmd("PING").query_async::<Value>(&mut conn).await
        };
        match tokio::time::timeout(deadline, probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(connect_error(Box::new(e))),
            Err(_) => {
                return Err(connect_error(
                    format!("no answer within {deadline:?}").into(),
                ));
            }
        }

        // Reconnects run in the background (see `redis_conn::manager_config`).
        let conn = ConnectionManager::new_lazy_with_config(
            client.clone(),
            redis_conn::manager_config(config.timeout),
        )
        .map_err(|e| connect_error(Box::new(e)))?;
        let mut ping_conn = conn.clone();
        match tokio::time::timeout(deadline, cmd("PING").query_async::<Value>(&mut ping_conn)).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(connect_error(Box::new(e))),
            Err(_) => {
                return Err(connect_error(
                    format!("no answer within {deadline:?}").into(),
                ));
            }
        }

        let ns = &config.namespace;
        let breaker = RedisBreaker::new("cache", conn.clone(), config.timeout);
        Ok(RedisTier {
            breaker,
            client,
            conn,
            prefix: format!("{ns}:"),
            tag_prefix: format!("{ns}:tag:"),
            channel: format!("{ns}:invalidate"),
            timeout: config.timeout,
            counters,
            failing: AtomicBool::new(false),
            set_tagged: Script::new(SET_TAGGED),
            delete_tag: Script::new(DELETE_TAG),
        })
    }

    /// The client, for opening the pub/sub connection of the tiered backend.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The invalidation channel, `<namespace>:invalidate`.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// `<namespace>:`, the prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The configured per-round-trip timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A clone of the connection (cheap: it is shared and multiplexed).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `<namespace>:<key>`.
    pub fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    fn tag_key(&self, tag: &str) -> String {
        let mut full = String::with_capacity(self.tag_prefix.len() + tag.len());
        full.push_str(&self.tag_prefix);
        full.push_str(tag);
        full
    }

    /// Run one round trip under the timeout, through the breaker (at once `Failed` while it
    /// is open); count and log failures.
    async fn call<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Failed> {
        match self.breaker.call(self.timeout, fut).await {
            Ok(value) => {
                if self.failing.load(Ordering::Relaxed)
                    && self.failing.swap(false, Ordering::Relaxed)
                {
                    tracing::info!(namespace = %self.prefix, "Redis cache reachable again");
                }
                Ok(value)
            }
            Err(err) => {
                self.failed(what, &err.to_string());
                Err(Failed)
            }
        }
    }

    fn failed(&self, what: &'static str, reason: &str) {
        redis_error(&self.counters);
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                namespace = %self.prefix,
                operation = what,
                reason,
                "Redis cache unavailable: reads miss, writes are skipped, deletes fail until it returns"
            );
        } else {
            tracing::debug!(operation = what, reason, "Redis cache call failed");
        }
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), Failed> {
        let mut conn = self.conn.clone();
        self.call("PING", cmd("PING").query_async::<Value>(&mut conn))
            .await
            .map(|_| ())
    }

    /// `GET`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, Failed> {
        let mut conn = self.conn.clone();
        let value: Option<Vec<u8>> = self
            .call("GET", cmd("GET").arg(self.key(key)).query_async(&mut conn))
            .await?;
        Ok(value.map(Bytes::from))
    }

    /// `GET` and `PTTL` in one round trip: the value and how long it has left. A value
    /// without a usable TTL (persistent, or expiring as we speak) comes with `None`.
    pub async fn get_with_ttl(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Option<Duration>)>, Failed> {
        let full = self.key(key);
        let mut conn = self.conn.clone();
        let mut p = pipe();
        p.cmd("GET").arg(&full).cmd("PTTL").arg(&full);
        let (value, pttl): (Option<Vec<u8>>, i64) =
            self.call("GET", p.query_async(&mut conn)).await?;
        let ttl = u64::try_from(pttl)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        Ok(value.map(|v| (Bytes::from(v), ttl)))
    }

    /// `SET key value PX ttl` (with the tag sets, through [`SET_TAGGED`]), then `PUBLISH`
    /// `message` on the invalidation channel when given — one round trip.
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tags: &[&str],
        message: Option<&[u8]>,
    ) -> Result<(), Failed> {
        let full = self.key(key);
        let ms = ttl_millis(ttl);
        let mut conn = self.conn.clone();
        if tags.is_empty() {
            let mut p = pipe();
            p.cmd("SET")
                .arg(&full)
                .arg(value)
                .arg("PX")
                .arg(ms)
                .ignore();
            if let Some(message) = message {
                p.cmd("PUBLISH").arg(&self.channel).arg(message).ignore();
            }
            self.call("SET", p.query_async::<()>(&mut conn)).await?;
            record(Tier::Redis, Event::Set);
            return Ok(());
        }
        let mut invocation = self.set_tagged.prepare_invoke();
        invocation.key(&full);
        for tag in tags {
            invocation.key(self.tag_key(tag));
        }
        invocation.arg(value).arg(ms);
        match message {
            Some(message) => invocation.arg(&self.channel).arg(message),
            None => invocation.arg("").arg(""),
        };
        self.call("SET (tagged)", invocation.invoke_async::<Value>(&mut conn))
            .await?;
        record(Tier::Redis, Event::Set);
        Ok(())
    }

    /// `UNLINK` the key, then `PUBLISH` `message` when given — one round trip. Returns how
    /// many subscribers received the message (0 without one).
    pub async fn delete(&self, key: &str, message: Option<&[u8]>) -> Result<u64, Failed> {
        let mut conn = self.conn.clone();
        let mut p = pipe();
        p.cmd("UNLINK").arg(self.key(key)).ignore();
        match message {
            Some(message) => {
                p.cmd("PUBLISH").arg(&self.channel).arg(message);
                let (receivers,): (u64,) = self.call("UNLINK", p.query_async(&mut conn)).await?;
                Ok(receivers)
            }
            None => self
                .call("UNLINK", p.query_async::<()>(&mut conn))
                .await
                .map(|_| 0),
        }
    }

    /// `SCAN MATCH <ns>:<prefix>* COUNT 500` page by page, `UNLINK`ing each page (never
    /// `KEYS`). Each round trip has the timeout; a failure stops the walk (keys already
    /// unlinked stay unlinked). Returns how many keys were removed.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, Failed> {
        let pattern = format!("{}*", escape_glob(&self.key(prefix)));
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .call(
                    "SCAN",
                    cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut conn),
                )
                .await?;
            if !keys.is_empty() {
                let n: u64 = self
                    .call("UNLINK", cmd("UNLINK").arg(&keys).query_async(&mut conn))
                    .await?;
                removed += n;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(removed);
            }
        }
    }

    /// Delete the members of tag set `<ns>:tag:<tag>` and the set, atomically (a Lua script).
    /// Returns the members' keys without the namespace prefix.
    pub async fn delete_tag(&self, tag: &str) -> Result<Vec<String>, Failed> {
        let mut conn = self.conn.clone();
        let mut invocation = self.delete_tag.prepare_invoke();
        invocation.key(self.tag_key(tag)).arg(UNLINK_BATCH);
        let members: Vec<Vec<u8>> = self
            .call("delete tag", invocation.invoke_async(&mut conn))
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|m| String::from_utf8(m).ok())
            .filter_map(|m| m.strip_prefix(&self.prefix).map(str::to_string))
            .collect())
    }

    /// `PUBLISH` on the invalidation channel; returns how many subscribers received it.
    pub async fn publish(&self, message: &[u8]) -> Result<u64, Failed> {
        let mut conn = self.conn.clone();
        self.call(
            "PUBLISH",
            cmd("PUBLISH")
                .arg(&self.channel)
                .arg(message)
                .query_async(&mut conn),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("ns:user:"), "ns:user:");
        assert_eq!(escape_glob(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
    }

    #[test]
    fn background_work_gets_at_least_a_second() {
        assert_eq!(
            background_timeout(Duration::from_millis(50)),
            Duration::from_secs(1)
        );
        assert_eq!(
            background_timeout(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }
}
