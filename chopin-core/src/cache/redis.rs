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

/// How many members of a tag set one invalidation round trip removes (and `UNLINK`s): each
/// round trip is a short script over at most this many members, so other clients' commands
/// run between batches however large the set.
pub(crate) const TAG_BATCH: usize = 500;

/// How many batches one tagged write spends emptying an old-format tag set before it gives up
/// (the value is then not stored; the next write carries on).
const MIGRATION_BATCHES: usize = 20;

/// `SET` a value with its TTL and record it in each tag set (`KEYS[2..]`), a sorted set of
/// keys scored by their expiry (unix ms, Redis's clock): `ZADD`, then drop the members that
/// have expired (`ZREMRANGEBYSCORE -inf <now>`), then let the set expire with its
/// longest-lived member (`PEXPIREAT <max score>`). A tag set therefore holds only live
/// entries, and stays as small as the entries it names. Optionally `PUBLISH`es an
/// invalidation. Atomic, one round trip; its work is proportional to the tags and the members
/// that expired since the last write, never to the size of a set.
///
/// A tag key holding anything but a sorted set (a plain `SET` written by Chopin before tag
/// sets were sorted) makes the script return `{0, i}` (the 1-based index of that tag) before
/// writing anything: the caller empties it in batches ([`DELETE_TAG_BATCH`]) and retries.
const SET_TAGGED: &str = r"
for i = 2, #KEYS do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'zset' and kind ~= 'none' then
    return {0, i - 1}
  end
end
local ttl = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, KEYS[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', KEYS[i], last[2])
  end
end
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return {1, 0}
";

/// Remove up to `ARGV[1]` members from the tag set `KEYS[1]` and `UNLINK` them, atomically
/// (so a member is never dropped from the set while its key lives on); returns them. A sorted
/// set gives its soonest-expiring members (`ZPOPMIN`); a plain set — the format before tag sets
/// were sorted — any members (`SPOP`); anything else is deleted. Called in a loop until it
/// returns nothing: each call is bounded work, and the progress of a failed loop is kept.
const DELETE_TAG_BATCH: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
local batch = tonumber(ARGV[1])
local members = {}
if kind == 'zset' then
  local popped = redis.call('ZPOPMIN', KEYS[1], batch)
  for i = 1, #popped, 2 do
    members[#members + 1] = popped[i]
  end
elseif kind == 'set' then
  members = redis.call('SPOP', KEYS[1], batch)
elseif kind ~= 'none' then
  redis.call('UNLINK', KEYS[1])
end
if #members > 0 then
  redis.call('UNLINK', unpack(members))
end
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
    delete_tag_batch: Script,
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
            delete_tag_batch: Script::new(DELETE_TAG_BATCH),
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
        let tag_keys: Vec<String> = tags.iter().map(|tag| self.tag_key(tag)).collect();
        let mut migrated = 0;
        loop {
            let mut invocation = self.set_tagged.prepare_invoke();
            invocation.key(&full);
            for tag_key in &tag_keys {
                invocation.key(tag_key);
            }
            invocation.arg(value).arg(ms);
            match message {
                Some(message) => invocation.arg(&self.channel).arg(message),
                None => invocation.arg("").arg(""),
            };
            let (written, old): (u8, usize) = self
                .call("SET (tagged)", invocation.invoke_async(&mut conn))
                .await?;
            if written == 1 {
                record(Tier::Redis, Event::Set);
                return Ok(());
            }
            // A tag set in the old format (a plain set): empty it, then write.
            let Some(tag_key) = old.checked_sub(1).and_then(|i| tag_keys.get(i)) else {
                return Err(Failed);
            };
            if migrated >= tag_keys.len() {
                return Err(Failed);
            }
            migrated += 1;
            let mut left = MIGRATION_BATCHES;
            loop {
                let (batch, done) = self.delete_tag_batch(tag_key).await;
                batch?;
                if done {
                    break;
                }
                left -= 1;
                if left == 0 {
                    // Not stored this time; the next write carries on where this one stopped.
                    tracing::debug!(tag_key, "old-format tag set not emptied yet; write skipped");
                    return Ok(());
                }
            }
        }
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

    /// One batch of [`TAG_BATCH`] on the tag set at `tag_key`: the members removed
    /// (without the namespace prefix) or the failure, and whether the set is now empty.
    async fn delete_tag_batch(&self, tag_key: &str) -> (Result<Vec<String>, Failed>, bool) {
        let mut conn = self.conn.clone();
        let mut invocation = self.delete_tag_batch.prepare_invoke();
        invocation.key(tag_key).arg(TAG_BATCH);
        let members: Vec<Vec<u8>> = match self
            .call("delete tag", invocation.invoke_async(&mut conn))
            .await
        {
            Ok(members) => members,
            Err(failed) => return (Err(failed), false),
        };
        let done = members.len() < TAG_BATCH;
        let keys = members
            .into_iter()
            .filter_map(|m| String::from_utf8(m).ok())
            .filter_map(|m| m.strip_prefix(&self.prefix).map(str::to_string))
            .collect();
        (Ok(keys), done)
    }

    /// Delete the members of tag set `<ns>:tag:<tag>`, [`TAG_BATCH`] at a time, each batch
    /// its own round trip (a short script that pops the members and `UNLINK`s them), until
    /// the set is empty — and so gone. Other clients' commands run between batches. Returns
    /// the keys removed (without the namespace prefix), and whether every batch succeeded: on
    /// a failure, the keys of the batches before it are gone, the rest are still in the set,
    /// and calling again finishes the job.
    pub async fn delete_tag(&self, tag: &str) -> (Vec<String>, Result<(), Failed>) {
        let tag_key = self.tag_key(tag);
        let mut removed = Vec::new();
        loop {
            let (batch, done) = self.delete_tag_batch(&tag_key).await;
            match batch {
                Ok(keys) => removed.extend(keys),
                Err(failed) => return (removed, Err(failed)),
            }
            if done {
                return (removed, Ok(()));
            }
        }
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
