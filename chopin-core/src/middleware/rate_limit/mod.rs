//! The rate-limiting layer: GCRA (the generic cell rate algorithm, a token bucket without a
//! refill timer) per bucket, 429 with `Retry-After` over the limit. The public docs are on
//! [`crate::rate_limit`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::HeaderMap;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{Config, IpNet, Rate, SharedStateBackend};
use crate::error::ChopinError;

mod key;
mod store;

pub use key::{Buckets, RateLimitKey, RateLimitRequest, client_ip};
#[cfg(feature = "redis")]
use store::GCRA_SCRIPT;
use store::Store;

/// The rate-limiting layer (see the [module docs](crate::rate_limit)). A cheap clone; clones
/// share their counters.
#[derive(Clone)]
pub struct RateLimitLayer {
    store: Arc<Store>,
    rate: Rate,
    trusted: Arc<[IpNet]>,
    /// Who a request is charged to, besides (or instead of) its client address.
    key: Option<Arc<dyn RateLimitKey>>,
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

/// `rate` made usable: a burst of 0 (which `Config` refuses, but a hand-built [`Rate`] may
/// carry) counts as 1, a zero period as 1 µs, each with a warning, instead of a panic.
fn sane(rate: Rate) -> Rate {
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

impl RateLimitLayer {
    /// Limit each client to `rate`, in this process.
    pub fn memory(rate: Rate) -> RateLimitLayer {
        let rate = sane(rate);
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
    /// (`REDIS_URL`; keys `<namespace>|ratelimit:<key>`, out of reach of the cache API). The connection is made lazily and
    /// re-made when lost.
    #[cfg(feature = "redis")]
    pub fn redis(
        rate: Rate,
        cache: &crate::config::CacheConfig,
    ) -> Result<RateLimitLayer, RateLimitError> {
        let rate = sane(rate);
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
            key: None,
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

    /// Charge requests to the buckets `key` names; a request it charges to none is charged to
    /// its client address. With the `auth` feature, `per_user(auth)` is `key_by(auth)`.
    pub fn key_by(mut self, key: impl RateLimitKey) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// `true` when requests are keyed by a [`RateLimitKey`] ([`key_by`](Self::key_by), or
    /// `per_user` with the `auth` feature).
    pub fn is_per_user(&self) -> bool {
        self.key.is_some()
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Count one request for `key`: `Ok` to let it through, `Err(wait)` when over the limit.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        self.store.check(key).await
    }

    /// The buckets a request is charged to: those the [`key_by`](Self::key_by) key names
    /// (with `per_user`: `user:<sub>` for a valid token), else the client
    /// address ([`RateLimitRequest::ip_key`]). None when the request has neither (no
    /// `ConnectInfo`): it is not limited, rather than put every client in one shared bucket.
    fn buckets_for(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Buckets {
        let request = RateLimitRequest::new(headers, peer, &self.trusted);
        let mut buckets = Buckets::default();
        if let Some(key) = &self.key {
            key.buckets(&request, &mut buckets);
        }
        if buckets.is_empty()
            && let Some(ip) = request.ip_key()
        {
            buckets.charge(ip);
        }
        buckets
    }

    /// The key for a request: `user:<sub>` for a valid token when per-user (in general: the
    /// first bucket the [`key_by`](Self::key_by) key names), else the client address:
    /// `ip:<IPv4>`, or `ip:<first 64 bits>::/64` for IPv6 (one host usually holds a whole
    /// /64, so a per-address key would hand it endless fresh budgets; IPv4-mapped IPv6
    /// addresses count as the IPv4 address). `None` when the request has neither a user nor
    /// a peer address (no `ConnectInfo`): it is not limited, rather than put every client in
    /// one shared bucket.
    pub fn key_for(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<String> {
        self.buckets_for(headers, peer).into_first()
    }
}

/// Logged once per process: a request reached the layer without `ConnectInfo`.
fn warn_no_peer() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "rate limit: requests carry no client address (ConnectInfo<SocketAddr>), so they \
             are not limited per IP; serve with App::serve or \
             into_make_service_with_connect_info::<SocketAddr>()"
        );
    });
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service of [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S> Service<Request> for RateLimitService<S>
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
            let buckets = layer.buckets_for(req.headers(), peer);
            if buckets.is_empty() {
                warn_no_peer();
                return inner.call(req).await;
            }
            // In order; the first bucket over its limit refuses the request, and the buckets
            // after it are not charged.
            for key in buckets.iter() {
                if let Err(retry_after) = layer.check(key).await {
                    return Ok(ChopinError::RateLimited { retry_after }.into_response());
                }
            }
            inner.call(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{HeaderValue, StatusCode};
    use tower::ServiceExt;

    use super::*;

    /// An `x-key` header charges `key:<value>` and the client address; without it, the
    /// address alone (the fallback).
    struct KeyAndIp;

    impl RateLimitKey for KeyAndIp {
        fn buckets(&self, request: &RateLimitRequest<'_>, buckets: &mut Buckets) {
            if let Some(key) = request.headers().get("x-key").and_then(|v| v.to_str().ok()) {
                buckets.charge(format!("key:{key}"));
                if let Some(ip) = request.ip_key() {
                    buckets.charge(ip);
                }
            }
        }
    }

    fn layer() -> RateLimitLayer {
        RateLimitLayer::memory(Rate {
            burst: 1,
            period: Duration::from_secs(60),
        })
        .key_by(KeyAndIp)
    }

    #[test]
    fn a_key_names_several_buckets_in_order_or_leaves_the_address() {
        let layer = layer();
        assert!(layer.is_per_user());
        let peer = Some(SocketAddr::from(([192, 0, 2, 1], 4000)));
        let mut headers = HeaderMap::new();
        headers.insert("x-key", HeaderValue::from_static("a"));
        let buckets = layer.buckets_for(&headers, peer);
        assert_eq!(
            buckets.iter().collect::<Vec<_>>(),
            ["key:a", "ip:192.0.2.1"]
        );
        assert_eq!(layer.key_for(&headers, peer).as_deref(), Some("key:a"));
        assert_eq!(
            layer.key_for(&HeaderMap::new(), peer).as_deref(),
            Some("ip:192.0.2.1")
        );
        assert_eq!(layer.key_for(&HeaderMap::new(), None), None);
    }

    #[tokio::test]
    async fn the_first_bucket_over_its_limit_refuses_the_request() {
        let service = layer().layer(tower::service_fn(|_: Request| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
        let status = |ip: [u8; 4], key: Option<&'static str>| {
            let service = service.clone();
            async move {
                let mut req = Request::new(Body::empty());
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::from((ip, 4000))));
                if let Some(key) = key {
                    req.headers_mut()
                        .insert("x-key", HeaderValue::from_static(key));
                }
                service.oneshot(req).await.unwrap().status()
            }
        };
        // Charges key:a and ip:10.0.0.1.
        assert_eq!(status([10, 0, 0, 1], Some("a")).await, StatusCode::OK);
        // key:a is spent, whatever the address.
        assert_eq!(
            status([10, 0, 0, 2], Some("a")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // So is 10.0.0.1's own bucket, with or without a key.
        assert_eq!(
            status([10, 0, 0, 1], None).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status([10, 0, 0, 1], Some("b")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // key:b was charged before 10.0.0.1 refused: the first bucket is not refunded.
        assert_eq!(
            status([10, 0, 0, 3], Some("b")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // A fresh address without a key is keyed by its address alone.
        assert_eq!(status([10, 0, 0, 2], None).await, StatusCode::OK);
    }
}
