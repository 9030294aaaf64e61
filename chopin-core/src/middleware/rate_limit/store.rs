//! Where the buckets live: in process (`governor`, keyed, for the layer's hot path; or a
//! small table that can also be *peeked*, for the auth routes' failure counters) or in Redis
//! (one Lua script that decides atomically, with Redis' clock, so the limit holds across
//! every instance).
//!
//! A [`Limiter`] is one named quota policy (`ip`, `client`, `login`, …): a rate applied per
//! key, in one store. Its name is the policy's name in the `RateLimit-Policy` and `RateLimit`
//! header fields and part of its Redis keys (`<namespace>|ratelimit:<policy>:<key>`), so two
//! policies never share a bucket.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Rate;

/// How often (in checks) idle keys are dropped from the in-process stores.
const RETAIN_EVERY: u64 = 4096;

/// GCRA in one atomic step. `KEYS[1]`: the key; `ARGV[1]`: emission interval T (µs);
/// `ARGV[2]`: burst tolerance τ = T·(burst−1) (µs); `ARGV[3]`: `1` to only look (decide
/// without charging). Returns `{allowed, retry_after_µs}`.
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
if ARGV[3] == '1' then
  return {1, 0}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
";

/// A Redis that cannot be asked is logged at most this often (with the count of requests
/// let through unlimited meanwhile); every other one at `debug`.
#[cfg(feature = "redis")]
const FAIL_OPEN_LOG_EVERY: Duration = Duration::from_secs(10);

/// Requests let through because Redis could not be asked, since the process started.
#[cfg(feature = "redis")]
static FAILED_OPEN: AtomicU64 = AtomicU64::new(0);

/// When a request let through for want of Redis was last logged at `warn`.
#[cfg(feature = "redis")]
static FAIL_OPEN_LOGGED: Mutex<Option<Instant>> = Mutex::new(None);

/// A Redis-backed limit could not ask Redis (down, timed out, or its breaker open): the
/// request goes through (fail open: a rate limit must not take the service down with
/// Redis). Logged at `warn` at most once per [`FAIL_OPEN_LOG_EVERY`], else at `debug`.
#[cfg(feature = "redis")]
fn failed_open(policy: &'static str, err: &crate::redis_conn::CallError) {
    let total = FAILED_OPEN.fetch_add(1, Ordering::Relaxed) + 1;
    let now = Instant::now();
    let due = match FAIL_OPEN_LOGGED.try_lock() {
        Ok(mut last) if last.is_none_or(|at| now.duration_since(at) >= FAIL_OPEN_LOG_EVERY) => {
            *last = Some(now);
            true
        }
        _ => false,
    };
    if due {
        tracing::warn!(
            policy,
            reason = %err,
            allowed_total = total,
            "rate limit: Redis unavailable; requests allowed without a limit until it is back"
        );
    } else {
        tracing::debug!(policy, reason = %err, "rate limit: Redis unavailable; request allowed");
    }
}

/// `rate` made usable: a burst of 0 (which `Config` refuses, but a hand-built [`Rate`] may
/// carry) counts as 1, a zero period as 1 µs, each with a warning, instead of a panic.
pub(super) fn sane(rate: Rate) -> Rate {
    if rate.burst == 0 || rate.period.is_zero() {
        tracing::warn!(
            ?rate,
            "rate limit: a burst of 0 or a zero period is invalid; using at least 1 request per 1 µs"
        );
    }
    Rate {
        burst: rate.burst.max(1),
        period: rate.period.max(Duration::from_micros(1)),
    }
}

fn interval_of(rate: Rate) -> Duration {
    (rate.period / rate.burst.max(1)).max(Duration::from_micros(1))
}

/// Where a [`Limiter`]'s buckets live.
pub(super) enum Store {
    /// `governor`'s keyed GCRA: lock-free, cannot peek.
    Governor {
        limiter: DefaultKeyedRateLimiter<String>,
        checks: AtomicU64,
    },
    /// Theoretical arrival times in a locked map: can peek; for low-volume policies.
    Table {
        tats: Mutex<HashMap<String, Instant>>,
        interval: Duration,
        tolerance: Duration,
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

/// Where to keep a set of limiters: this process, or a Redis shared by every instance.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// In this process.
    Memory,
    /// In Redis (`<namespace>|ratelimit:…`), shared by every instance.
    #[cfg(feature = "redis")]
    Redis(crate::redis_conn::SharedRedis),
}

impl Backend {
    /// The backend `config` asks for (`CHOPIN_RATE_LIMIT_BACKEND`), connected lazily.
    pub(crate) fn from_config(
        backend: crate::config::SharedStateBackend,
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        cache: &crate::config::CacheConfig,
    ) -> Result<Backend, String> {
        match backend {
            crate::config::SharedStateBackend::Memory => Ok(Backend::Memory),
            #[cfg(feature = "redis")]
            crate::config::SharedStateBackend::Redis => {
                crate::redis_conn::SharedRedis::lazy(cache).map(Backend::Redis)
            }
            #[cfg(not(feature = "redis"))]
            crate::config::SharedStateBackend::Redis => {
                Err("a Redis backend needs chopin-core's `redis` feature".into())
            }
        }
    }

    /// `true` for Redis.
    #[cfg_attr(not(feature = "auth"), allow(dead_code))]
    pub(crate) fn is_shared(&self) -> bool {
        !matches!(self, Backend::Memory)
    }
}

/// One quota policy: `rate` per key, in one store. A cheap clone; clones share the buckets.
#[derive(Clone)]
pub(crate) struct Limiter {
    store: Arc<Store>,
    rate: Rate,
    policy: &'static str,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match *self.store {
            Store::Governor { .. } | Store::Table { .. } => "memory",
            #[cfg(feature = "redis")]
            Store::Redis { .. } => "redis",
        };
        f.debug_struct("Limiter")
            .field("policy", &self.policy)
            .field("rate", &self.rate)
            .field("backend", &backend)
            .finish()
    }
}

impl Limiter {
    /// `rate` per key in `backend`; in process with `governor` (fast, cannot peek) unless
    /// `peekable`.
    pub(crate) fn new(policy: &'static str, rate: Rate, backend: &Backend, peekable: bool) -> Self {
        let rate = sane(rate);
        let interval = interval_of(rate);
        let store = match backend {
            Backend::Memory if peekable => Store::Table {
                tats: Mutex::new(HashMap::new()),
                interval,
                tolerance: interval * rate.burst.saturating_sub(1),
                checks: AtomicU64::new(0),
            },
            Backend::Memory => {
                let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(interval)
                    .unwrap_or_else(|| Quota::per_second(burst))
                    .allow_burst(burst);
                Store::Governor {
                    limiter: DefaultKeyedRateLimiter::keyed(quota),
                    checks: AtomicU64::new(0),
                }
            }
            #[cfg(feature = "redis")]
            Backend::Redis(shared) => {
                let interval_us = interval.as_micros() as u64;
                Store::Redis {
                    shared: shared.clone(),
                    script: redis::Script::new(GCRA_SCRIPT),
                    interval_us,
                    tolerance_us: interval_us * u64::from(rate.burst.saturating_sub(1)),
                }
            }
        };
        Limiter {
            store: Arc::new(store),
            rate,
            policy,
        }
    }

    /// The policy's name.
    pub(crate) fn policy(&self) -> &'static str {
        self.policy
    }

    /// The rate.
    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }

    /// `true` when both share their buckets.
    pub(crate) fn same(&self, other: &Limiter) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
    }

    /// `"memory"` or `"redis"`.
    pub(crate) fn backend_name(&self) -> &'static str {
        match *self.store {
            Store::Governor { .. } | Store::Table { .. } => "memory",
            #[cfg(feature = "redis")]
            Store::Redis { .. } => "redis",
        }
    }

    /// Count one request for `key`: `Ok` to let it through, `Err(wait)` when over the limit
    /// (nothing is counted then).
    pub(crate) async fn check(&self, key: &str) -> Result<(), Duration> {
        self.decide(key, false).await
    }

    /// Whether a request for `key` would be let through, without counting it. A `governor`
    /// store cannot tell and answers `Ok` (`Limiter::new` builds a peekable store on request).
    #[cfg_attr(not(all(feature = "auth", chopin_db)), allow(dead_code))]
    pub(crate) async fn peek(&self, key: &str) -> Result<(), Duration> {
        self.decide(key, true).await
    }

    async fn decide(&self, key: &str, peek: bool) -> Result<(), Duration> {
        match &*self.store {
            Store::Governor { limiter, checks } => {
                if peek {
                    return Ok(());
                }
                if checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
                    limiter.retain_recent();
                }
                match limiter.check_key(&key.to_string()) {
                    Ok(()) => Ok(()),
                    Err(not_until) => Err(not_until.wait_time_from(DefaultClock::default().now())),
                }
            }
            Store::Table {
                tats,
                interval,
                tolerance,
                checks,
            } => {
                let now = Instant::now();
                // A panic elsewhere while holding the lock leaves consistent data (one
                // `Instant` per key): keep using it.
                let mut tats = tats.lock().unwrap_or_else(|e| e.into_inner());
                if checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
                    tats.retain(|_, tat| *tat > now);
                }
                let tat = tats.get(key).copied().unwrap_or(now).max(now);
                let ahead = tat - now;
                if ahead > *tolerance {
                    return Err(ahead - *tolerance);
                }
                if !peek {
                    tats.insert(key.to_string(), tat + *interval);
                }
                Ok(())
            }
            #[cfg(feature = "redis")]
            Store::Redis {
                shared,
                script,
                interval_us,
                tolerance_us,
            } => {
                let mut conn = shared.conn.clone();
                let full_key = format!("{}ratelimit:{}:{key}", shared.prefix, self.policy);
                let mut invocation = script.key(full_key);
                invocation
                    .arg(*interval_us)
                    .arg(*tolerance_us)
                    .arg(u8::from(peek));
                let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
                // Through the connection's breaker: while Redis is known to be down the
                // request is let through at once instead of waiting out the timeout.
                match shared.call(shared.timeout, call).await {
                    Ok((1, _)) => Ok(()),
                    Ok((_, wait_us)) => Err(Duration::from_micros(wait_us.max(1) as u64)),
                    Err(err) => {
                        failed_open(self.policy, &err);
                        Ok(())
                    }
                }
            }
        }
    }
}
