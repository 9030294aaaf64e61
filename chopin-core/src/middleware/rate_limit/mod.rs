//! The rate-limiting layer: GCRA (the generic cell rate algorithm, a token bucket without a
//! refill timer) per bucket, 429 with `Retry-After` and the `RateLimit-Policy` / `RateLimit`
//! header fields over the limit. Every request is charged to its address (policy `ip`) first,
//! then to its client buckets (policy `client`). The public docs are on
//! [`crate::rate_limit`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use http::{HeaderMap, HeaderValue};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{Config, IpNet, Rate};

mod headers;
mod key;
mod store;

pub(crate) use headers::{limited, policy_value};
pub use key::{Buckets, KeyFuture, RateLimitKey, RateLimitRequest, client_ip};
// Used by the auth routes' limits, which need `auth` and a database feature.
#[cfg_attr(not(all(feature = "auth", chopin_db)), allow(unused_imports))]
pub(crate) use key::address_key;
pub(crate) use store::{Backend, Limiter};

/// The rate-limiting layer (see the [module docs](crate::rate_limit)). A cheap clone; clones
/// share their counters.
#[derive(Clone)]
pub struct RateLimitLayer {
    backend: Backend,
    /// Every request, per client address: `CHOPIN_RATE_LIMIT_IP`.
    ip: Limiter,
    /// Per client (a user, or an anonymous address): `CHOPIN_RATE_LIMIT`.
    client: Limiter,
    /// `RateLimit-Policy` of both.
    policies: HeaderValue,
    trusted: Arc<[IpNet]>,
    /// Who a request is charged to, besides its client address.
    key: Option<Arc<dyn RateLimitKey>>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("rate", &self.client.rate())
            .field("ip_rate", &self.ip.rate())
            .field("backend", &self.client.backend_name())
            .field("trusted_proxies", &self.trusted)
            .field("per_user", &self.is_per_user())
            .finish()
    }
}

/// Two layers are equal when they share their counters and settings.
impl PartialEq for RateLimitLayer {
    fn eq(&self, other: &Self) -> bool {
        self.ip.same(&other.ip)
            && self.client.same(&other.client)
            && self.trusted == other.trusted
            && self.is_per_user() == other.is_per_user()
    }
}

impl Eq for RateLimitLayer {}

/// Why a rate limiter could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit: {0}")]
pub struct RateLimitError(String);

impl RateLimitLayer {
    /// Limit each client to `rate`, and each address to
    /// [`Rate::times`]`(`[`IP_RATE_MULTIPLE`](crate::config::IP_RATE_MULTIPLE)`)` of it
    /// (change it with [`ip_rate`](Self::ip_rate)), in this process.
    pub fn memory(rate: Rate) -> RateLimitLayer {
        RateLimitLayer::with_backend(rate, None, Backend::Memory)
    }

    /// Limit each client to `rate` (and each address to four times that, see
    /// [`ip_rate`](Self::ip_rate)) across every instance sharing the Redis of `cache`
    /// (`REDIS_URL`; keys `<namespace>|ratelimit:<policy>:<key>`, out of reach of the cache
    /// API). The connection is made lazily and re-made when lost.
    #[cfg(feature = "redis")]
    pub fn redis(
        rate: Rate,
        cache: &crate::config::CacheConfig,
    ) -> Result<RateLimitLayer, RateLimitError> {
        let shared = crate::redis_conn::SharedRedis::lazy(cache).map_err(RateLimitError)?;
        Ok(RateLimitLayer::with_backend(
            rate,
            None,
            Backend::Redis(shared),
        ))
    }

    /// Each client limited to `rate`, each address to `ip_rate` (`None`:
    /// [`IP_RATE_MULTIPLE`](crate::config::IP_RATE_MULTIPLE) times the client rate).
    fn with_backend(rate: Rate, ip_rate: Option<Rate>, backend: Backend) -> RateLimitLayer {
        let client = Limiter::new("client", rate, &backend, false);
        let ip_rate = ip_rate.unwrap_or_else(|| client.rate().default_ip_rate());
        let ip = Limiter::new("ip", ip_rate, &backend, false);
        RateLimitLayer {
            policies: policy_value([&ip, &client]),
            backend,
            ip,
            client,
            trusted: Arc::from(Vec::new()),
            key: None,
        }
    }

    /// The layer `config` asks for (`CHOPIN_RATE_LIMIT`, `CHOPIN_RATE_LIMIT_IP`,
    /// `CHOPIN_RATE_LIMIT_BACKEND`, `CHOPIN_TRUSTED_PROXIES`), or `None` when rate limiting is
    /// off.
    pub fn from_config(config: &Config) -> Result<Option<RateLimitLayer>, RateLimitError> {
        let Some(rate) = config.rate_limit.rate else {
            return Ok(None);
        };
        let backend = Backend::from_config(config.rate_limit.backend, &config.cache)
            .map_err(|e| RateLimitError(format!("CHOPIN_RATE_LIMIT_BACKEND: {e}")))?;
        let layer =
            RateLimitLayer::with_backend(rate, config.rate_limit.effective_ip_rate(), backend);
        Ok(Some(
            layer.trusted_proxies(config.security.trusted_proxies.clone()),
        ))
    }

    /// Limit each client address to `rate` in all (every user behind it, and anonymous
    /// requests): the `ip` policy, charged first on every request. Make it more generous than
    /// the per-client rate, since many users can share one address (NAT).
    pub fn ip_rate(mut self, rate: Rate) -> Self {
        self.ip = Limiter::new("ip", rate, &self.backend, false);
        self.policies = policy_value([&self.ip, &self.client]);
        self
    }

    /// Believe `X-Forwarded-For` from these proxies (and only these).
    pub fn trusted_proxies(mut self, nets: Vec<IpNet>) -> Self {
        self.trusted = Arc::from(nets);
        self
    }

    /// Charge requests to the client buckets `key` names (after their address); a request it
    /// charges to none is charged to its client address. With the `auth` feature,
    /// `per_user(auth)` is `key_by(auth)`.
    pub fn key_by(mut self, key: impl RateLimitKey) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// `true` when requests are keyed by a [`RateLimitKey`] ([`key_by`](Self::key_by), or
    /// `per_user` with the `auth` feature).
    pub fn is_per_user(&self) -> bool {
        self.key.is_some()
    }

    /// The per-client rate (`CHOPIN_RATE_LIMIT`).
    pub fn rate(&self) -> Rate {
        self.client.rate()
    }

    /// The per-address rate (`CHOPIN_RATE_LIMIT_IP`).
    pub fn ip_rate_limit(&self) -> Rate {
        self.ip.rate()
    }

    /// Count one request for the client bucket `key`: `Ok` to let it through, `Err(wait)`
    /// when over the limit.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        self.client.check(key).await
    }

    /// The client buckets of a request: those the [`key_by`](Self::key_by) key names (with
    /// `per_user`: `user:<sub>` for a token `Auth::verify` remembers), else the client
    /// address ([`RateLimitRequest::ip_key`]). None when the request has neither (no
    /// `ConnectInfo`).
    async fn buckets_for(&self, request: RateLimitRequest<'_>) -> Buckets {
        let mut buckets = Buckets::default();
        if let Some(key) = &self.key {
            key.buckets(request, &mut buckets).await;
        }
        if buckets.is_empty()
            && let Some(ip) = request.ip_key()
        {
            buckets.charge(ip);
        }
        buckets
    }

    /// The first client bucket of a request: `user:<sub>` for a remembered token when per-user
    /// (in general: the first bucket the [`key_by`](Self::key_by) key names), else the
    /// client address: `ip:<IPv4>`, or `ip:<first 64 bits>::/64` for IPv6 (one host usually
    /// holds a whole /64, so a per-address key would hand it endless fresh budgets;
    /// IPv4-mapped IPv6 addresses count as the IPv4 address). `None` when the request has
    /// neither a user nor a peer address (no `ConnectInfo`). Every request with an address is
    /// also charged to that address under the `ip` policy.
    pub async fn key_for(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<String> {
        let request = RateLimitRequest::new(headers, peer, &self.trusted);
        self.buckets_for(request).await.into_first()
    }
}

/// The `ip` policy's bucket for the address key `ip:<addr>`: `<addr>` (its Redis key is then
/// `ratelimit:ip:<addr>`).
fn address_bucket(ip_key: &str) -> &str {
    ip_key.strip_prefix("ip:").unwrap_or(ip_key)
}

/// Logged once per process: a request reached a per-address limit (this layer's, or the
/// auth routes') without `ConnectInfo`.
pub(crate) fn warn_no_peer() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "rate limit: requests carry no client address (ConnectInfo<SocketAddr>), so the \
             per-address limits (CHOPIN_RATE_LIMIT_IP, the auth routes') do not apply; serve \
             with App::serve or into_make_service_with_connect_info::<SocketAddr>()"
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
            let request = RateLimitRequest::new(req.headers(), peer, &layer.trusted);
            let ip = request.ip_key();
            // The address first, before the key looks at any credential: a flood of junk
            // tokens from one address is refused here without costing any verification.
            match &ip {
                Some(ip) => {
                    if let Err(wait) = layer.ip.check(address_bucket(ip)).await {
                        return Ok(limited(&layer.ip, &layer.policies, wait));
                    }
                }
                None => warn_no_peer(),
            }
            let buckets = layer.buckets_for(request).await;
            // In order; the first bucket over its limit refuses the request, and the buckets
            // after it are not charged.
            for key in buckets.iter() {
                if let Err(wait) = layer.client.check(key).await {
                    return Ok(limited(&layer.client, &layer.policies, wait));
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
        fn buckets<'a>(
            &'a self,
            request: RateLimitRequest<'a>,
            buckets: &'a mut Buckets,
        ) -> KeyFuture<'a> {
            if let Some(key) = request.headers().get("x-key").and_then(|v| v.to_str().ok()) {
                buckets.charge(format!("key:{key}"));
                if let Some(ip) = request.ip_key() {
                    buckets.charge(ip);
                }
            }
            Box::pin(async {})
        }
    }

    fn layer() -> RateLimitLayer {
        RateLimitLayer::memory(Rate {
            burst: 1,
            period: Duration::from_secs(60),
        })
        .key_by(KeyAndIp)
    }

    #[tokio::test]
    async fn a_key_names_several_buckets_in_order_or_leaves_the_address() {
        let layer = layer();
        assert!(layer.is_per_user());
        let peer = Some(SocketAddr::from(([192, 0, 2, 1], 4000)));
        let mut headers = HeaderMap::new();
        headers.insert("x-key", HeaderValue::from_static("a"));
        let buckets = layer
            .buckets_for(RateLimitRequest::new(&headers, peer, &[]))
            .await;
        assert_eq!(
            buckets.iter().collect::<Vec<_>>(),
            ["key:a", "ip:192.0.2.1"]
        );
        assert_eq!(
            layer.key_for(&headers, peer).await.as_deref(),
            Some("key:a")
        );
        assert_eq!(
            layer.key_for(&HeaderMap::new(), peer).await.as_deref(),
            Some("ip:192.0.2.1")
        );
        assert_eq!(layer.key_for(&HeaderMap::new(), None).await, None);
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
