//! Per-client rate limiting: a tower layer applying GCRA (the generic cell rate algorithm,
//! a token bucket without a refill timer) per key.
//!
//! * The key is the client IP (`ip:<addr>`) or, when the layer knows the [`Auth`] and the
//!   request carries a valid access token, the user (`user:<sub>`).
//! * The client IP is the socket's peer address (`ConnectInfo<SocketAddr>`, which
//!   [`App::serve`](crate::App::serve) provides). `X-Forwarded-For` is read only when that
//!   peer is a configured trusted proxy (`CHOPIN_TRUSTED_PROXIES`): then the client is the
//!   right-most address that is not itself a trusted proxy. A client talking directly cannot
//!   choose its key by sending the header.
//! * In process by default (the `governor` crate, keyed); with `CHOPIN_RATE_LIMIT_BACKEND=redis`
//!   the state lives in Redis and one Lua script decides atomically, with Redis' clock, so the
//!   limit holds across every instance.
//! * Over the limit: 429 `RATE_LIMITED` in the envelope with `Retry-After`.
//!
//! If Redis cannot be reached within the cache timeout, the request is let through (fail
//! open, logged): a rate limiter that takes the API down with it is worse than a brief
//! window without limits.
//!
//! ```
//! use axum::{Router, routing::get};
//! use chopin_core::config::Rate;
//! use chopin_core::rate_limit::RateLimitLayer;
//! use std::time::Duration;
//!
//! let limit = RateLimitLayer::memory(Rate { burst: 10, period: Duration::from_secs(1) });
//! let router: Router = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(limit);
//! ```
//!
//! [`Auth`]: crate::auth::Auth

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::HeaderMap;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{Config, IpNet, Rate, SharedStateBackend};
use crate::error::ChopinError;

/// How often (in checks) idle keys are dropped from the in-process store.
const RETAIN_EVERY: u64 = 4096;

/// GCRA in one atomic step. `KEYS[1]`: the key; `ARGV[1]`: emission interval T (µs);
/// `ARGV[2]`: burst tolerance τ = T·(burst−1) (µs). Returns `{allowed, retry_after_µs}`.
/// The theoretical arrival time (TAT) is stored with an expiry at the moment the bucket is
/// full again, so idle keys disappear by themselves.
#[cfg(feature = "redis")]
const GCRA_SCRIPT: &str = r"
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

enum Store {
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

/// The rate-limiting layer (see the [module docs](self)). A cheap clone; clones share their
/// counters.
#[derive(Clone)]
pub struct RateLimitLayer {
    store: Arc<Store>,
    rate: Rate,
    trusted: Arc<[IpNet]>,
    #[cfg(feature = "auth")]
    auth: Option<crate::auth::Auth>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match *self.store {
            Store::Memory { .. } => "memory",
            #[cfg(feature = "redis")]
            Store::Redis { .. } => "redis",
        };
        f.debug_struct("RateLimitLayer")
            .field("rate", &self.rate)
            .field("backend", &backend)
            .field("trusted_proxies", &self.trusted)
            .field("per_user", &self.is_per_user())
            .finish()
    }
}

/// Two layers are equal when they share their counters and settings.
impl PartialEq for RateLimitLayer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
            && self.trusted == other.trusted
            && self.is_per_user() == other.is_per_user()
    }
}

impl Eq for RateLimitLayer {}

/// Why a rate limiter could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit: {0}")]
pub struct RateLimitError(String);

fn interval_of(rate: Rate) -> Duration {
    (rate.period / rate.burst).max(Duration::from_micros(1))
}

impl RateLimitLayer {
    /// Limit each client to `rate`, in this process.
    pub fn memory(rate: Rate) -> RateLimitLayer {
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval_of(rate))
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        RateLimitLayer::with_store(
            rate,
            Store::Memory {
                limiter: DefaultKeyedRateLimiter::keyed(quota),
                checks: AtomicU64::new(0),
            },
        )
    }

    /// Limit each client to `rate` across every instance sharing the Redis of `cache`
    /// (`REDIS_URL`; keys `<namespace>:ratelimit:<key>`). The connection is made lazily and
    /// re-made when lost.
    #[cfg(feature = "redis")]
    pub fn redis(
        rate: Rate,
        cache: &crate::config::CacheConfig,
    ) -> Result<RateLimitLayer, RateLimitError> {
        let shared = crate::redis_conn::SharedRedis::lazy(cache).map_err(RateLimitError)?;
        let interval = interval_of(rate);
        let interval_us = interval.as_micros() as u64;
        Ok(RateLimitLayer::with_store(
            rate,
            Store::Redis {
                shared,
                script: redis::Script::new(GCRA_SCRIPT),
                interval_us,
                tolerance_us: interval_us * u64::from(rate.burst.saturating_sub(1)),
            },
        ))
    }

    fn with_store(rate: Rate, store: Store) -> RateLimitLayer {
        RateLimitLayer {
            store: Arc::new(store),
            rate,
            trusted: Arc::from(Vec::new()),
            #[cfg(feature = "auth")]
            auth: None,
        }
    }

    /// The layer `config` asks for (`CHOPIN_RATE_LIMIT`, `CHOPIN_RATE_LIMIT_BACKEND`,
    /// `CHOPIN_TRUSTED_PROXIES`), or `None` when rate limiting is off.
    pub fn from_config(config: &Config) -> Result<Option<RateLimitLayer>, RateLimitError> {
        let Some(rate) = config.rate_limit.rate else {
            return Ok(None);
        };
        let layer = match config.rate_limit.backend {
            SharedStateBackend::Memory => RateLimitLayer::memory(rate),
            #[cfg(feature = "redis")]
            SharedStateBackend::Redis => RateLimitLayer::redis(rate, &config.cache)?,
            #[cfg(not(feature = "redis"))]
            SharedStateBackend::Redis => {
                return Err(RateLimitError(
                    "CHOPIN_RATE_LIMIT_BACKEND=redis needs chopin-core's `redis` feature".into(),
                ));
            }
        };
        Ok(Some(
            layer.trusted_proxies(config.security.trusted_proxies.clone()),
        ))
    }

    /// Believe `X-Forwarded-For` from these proxies (and only these).
    pub fn trusted_proxies(mut self, nets: Vec<IpNet>) -> Self {
        self.trusted = Arc::from(nets);
        self
    }

    /// Key authenticated requests by user (`sub` of a valid access token) instead of IP.
    #[cfg(feature = "auth")]
    pub fn per_user(mut self, auth: crate::auth::Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// `true` when [`per_user`](Self::per_user) was set.
    pub fn is_per_user(&self) -> bool {
        #[cfg(feature = "auth")]
        {
            self.auth.is_some()
        }
        #[cfg(not(feature = "auth"))]
        {
            false
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Count one request for `key`: `Ok` to let it through, `Err(wait)` when over the limit.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        match &*self.store {
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

    /// The key for a request: `user:<sub>` for a valid token when per-user, else
    /// `ip:<client ip>`.
    pub fn key_for(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.auth
            && let Some(token) =
                crate::auth::bearer_token(headers, auth.settings().cookie.as_deref())
            && let Ok(claims) = auth.decode::<crate::auth::Claims>(token)
        {
            return format!("user:{}", claims.sub);
        }
        match client_ip(headers, peer.map(|p| p.ip()), &self.trusted) {
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".to_string(),
        }
    }
}

/// The client's IP: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not a trusted proxy.
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // Garbage in the chain: stop at the last address we could trust.
            Err(_) => break,
        }
    }
    Some(client)
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service of [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S> Service<Request> for RateLimit<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            let key = layer.key_for(req.headers(), peer);
            match layer.check(&key).await {
                Ok(()) => inner.call(req).await,
                Err(retry_after) => Ok(ChopinError::RateLimited { retry_after }.into_response()),
            }
        })
    }
}
