//! Where the buckets live: in process (`governor`, keyed) or in Redis (one Lua script that
//! decides atomically, with Redis' clock, so the limit holds across every instance).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::DefaultKeyedRateLimiter;
use governor::clock::{Clock, DefaultClock};

/// How often (in checks) idle keys are dropped from the in-process store.
const RETAIN_EVERY: u64 = 4096;

/// GCRA in one atomic step. `KEYS[1]`: the key; `ARGV[1]`: emission interval T (µs);
/// `ARGV[2]`: burst tolerance τ = T·(burst−1) (µs). Returns `{allowed, retry_after_µs}`.
/// The theoretical arrival time (TAT) is stored with an expiry at the moment the bucket is
/// full again, so idle keys disappear by themselves.
#[cfg(feature = "redis")]
pub(super) const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then
  return {0, wait}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
";

pub(super) enum Store {
    Memory {
        limiter: DefaultKeyedRateLimiter<String>,
        checks: AtomicU64,
    },
    #[cfg(feature = "redis")]
    Redis {
        shared: crate::redis_conn::SharedRedis,
        script: redis::Script,
        interval_us: u64,
        tolerance_us: u64,
    },
}

impl Store {
    /// Count one request for `key`: `Ok` to let it through, `Err(wait)` when over the limit.
    pub(super) async fn check(&self, key: &str) -> Result<(), Duration> {
        match self {
            Store::Memory { limiter, checks } => {
                if checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
                    limiter.retain_recent();
                }
                match limiter.check_key(&key.to_string()) {
                    Ok(()) => Ok(()),
                    Err(not_until) => Err(not_until.wait_time_from(DefaultClock::default().now())),
                }
            }
            #[cfg(feature = "redis")]
            Store::Redis {
                shared,
                script,
                interval_us,
                tolerance_us,
            } => {
                let mut conn = shared.conn.clone();
                let full_key = format!("{}ratelimit:{key}", shared.prefix);
                let mut invocation = script.key(full_key);
                invocation.arg(*interval_us).arg(*tolerance_us);
                let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
                match tokio::time::timeout(shared.timeout, call).await {
                    Ok(Ok((1, _))) => Ok(()),
                    Ok(Ok((_, wait_us))) => Err(Duration::from_micros(wait_us.max(1) as u64)),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "rate limit: Redis failed; request allowed");
                        Ok(())
                    }
                    Err(_) => {
                        tracing::warn!("rate limit: Redis timed out; request allowed");
                        Ok(())
                    }
                }
            }
        }
    }
}
