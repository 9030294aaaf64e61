//! Rate limiting and auth: `Auth` as a [`RateLimitKey`] (a request whose access token
//! `Auth::verify` remembers is charged to `user:<sub>` as well as to its address), and
//! [`AuthRateLimits`], the auth module's own limits on login, sign-up, password reset,
//! one-time-token redemption and refresh.

use std::sync::Arc;

use super::{Auth, AuthError, Claims, bearer_token};
use crate::config::{AuthRateLimitConfig, Config, IpNet, Rate, SharedStateBackend};
use crate::middleware::rate_limit::{Backend, Limiter, policy_value};
use crate::rate_limit::{Buckets, KeyFuture, RateLimitKey, RateLimitLayer, RateLimitRequest};

impl RateLimitKey for Auth {
    /// `user:<sub>` when the request's token was verified by [`Auth::verify`] before and is
    /// still remembered (and inside its time window). The key never verifies a signature:
    /// a junk token costs a cache lookup, not a public-key operation, and a token's first
    /// request (before the handler's [`AuthUser`](super::AuthUser) has verified it) is
    /// charged to its address only.
    fn buckets<'a>(
        &'a self,
        request: RateLimitRequest<'a>,
        buckets: &'a mut Buckets,
    ) -> KeyFuture<'a> {
        Box::pin(async move {
            if let Some(token) = bearer_token(request.headers(), self.settings().cookie.as_deref())
                && let Some(claims) = self.remembered::<Claims>(token).await
            {
                buckets.charge(format!("user:{}", claims.sub));
            }
        })
    }
}

impl RateLimitLayer {
    /// Charge requests whose access token [`Auth::verify`] has verified to `user:<sub>` (the
    /// per-client rate) as well as to their address (the per-address rate, always charged
    /// first): [`key_by(auth)`](RateLimitLayer::key_by). [`App::auth`](crate::App::auth)
    /// installs it on the configured layer.
    pub fn per_user(self, auth: Auth) -> Self {
        self.key_by(auth)
    }
}

/// The auth module's own limits (see `docs/auth.md`): per client address on `/login`
/// attempts, `/signup` and `/password-reset`; per (account, address) on failed logins and on
/// `/password-reset`;
/// per address on failed one-time-token redemptions (`/verify-email`,
/// `/password-reset/confirm`); per user on `/refresh`. Never per account alone, so nobody
/// can lock a victim out. A cheap clone; clones share their counters.
///
/// On by default wherever the auth module is used: [`Auth::from_config`] builds them from
/// `CHOPIN_RATE_LIMIT_LOGIN` and its siblings (in Redis when `CHOPIN_RATE_LIMIT_BACKEND` or
/// `CHOPIN_AUTH_REVOCATION` is `redis`), [`Auth::new`] with the defaults in process; replace
/// them with `AuthModule::rate_limits`.
#[derive(Clone)]
// Read by the routes' layer, which needs a database feature.
#[cfg_attr(not(chopin_db), allow(dead_code))]
pub struct AuthRateLimits {
    pub(crate) login: Option<Limiter>,
    pub(crate) login_failures: Option<Limiter>,
    pub(crate) signup: Option<Limiter>,
    pub(crate) password_reset: Option<Limiter>,
    pub(crate) password_reset_ip: Option<Limiter>,
    pub(crate) verification: Option<Limiter>,
    pub(crate) refresh: Option<Limiter>,
    pub(crate) trusted: Arc<[IpNet]>,
    config: AuthRateLimitConfig,
    shared: bool,
}

impl std::fmt::Debug for AuthRateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRateLimits")
            .field("config", &self.config)
            .field("backend", &if self.shared { "redis" } else { "memory" })
            .field("trusted_proxies", &self.trusted)
            .finish()
    }
}

/// The defaults (`AuthRateLimitConfig::default()`), in process.
impl Default for AuthRateLimits {
    fn default() -> Self {
        AuthRateLimits::memory(AuthRateLimitConfig::default())
    }
}

impl AuthRateLimits {
    fn build(config: AuthRateLimitConfig, backend: &Backend) -> AuthRateLimits {
        // Every policy that may have to *peek* (look without counting) gets a peekable store.
        let limiter = |policy: &'static str, rate: Option<Rate>| {
            rate.map(|rate| Limiter::new(policy, rate, backend, true))
        };
        AuthRateLimits {
            login: limiter("login", config.login),
            login_failures: limiter("login-failures", config.login_failures),
            signup: limiter("signup", config.signup),
            password_reset: limiter("password-reset", config.password_reset),
            password_reset_ip: limiter("password-reset-ip", config.password_reset_ip),
            verification: limiter("verification", config.verification),
            refresh: limiter("refresh", config.refresh),
            trusted: Arc::from(Vec::new()),
            config,
            shared: backend.is_shared(),
        }
    }

    /// These limits, counted in this process.
    pub fn memory(config: AuthRateLimitConfig) -> AuthRateLimits {
        AuthRateLimits::build(config, &Backend::Memory)
    }

    /// These limits, counted in the Redis of `cache` (keys
    /// `<namespace>|ratelimit:<policy>:<key>`), shared by every instance. Connects lazily.
    #[cfg(feature = "redis")]
    pub fn redis(
        config: AuthRateLimitConfig,
        cache: &crate::config::CacheConfig,
    ) -> Result<AuthRateLimits, AuthError> {
        let shared = crate::redis_conn::SharedRedis::lazy(cache)
            .map_err(|e| AuthError::Config(format!("auth rate limits: {e}")))?;
        Ok(AuthRateLimits::build(config, &Backend::Redis(shared)))
    }

    /// Every limit off.
    pub fn off() -> AuthRateLimits {
        AuthRateLimits::memory(AuthRateLimitConfig::off())
    }

    /// The limits `config` asks for (`CHOPIN_RATE_LIMIT_LOGIN` and its siblings), in Redis
    /// when the rate limiter or the revocations are (`CHOPIN_RATE_LIMIT_BACKEND`,
    /// `CHOPIN_AUTH_REVOCATION`), with the trusted proxies of `CHOPIN_TRUSTED_PROXIES`.
    pub fn from_config(config: &Config) -> Result<AuthRateLimits, AuthError> {
        let redis = config.rate_limit.backend == SharedStateBackend::Redis
            || config.auth.revocation == SharedStateBackend::Redis;
        let backend = if redis {
            SharedStateBackend::Redis
        } else {
            SharedStateBackend::Memory
        };
        let backend = Backend::from_config(backend, &config.cache)
            .map_err(|e| AuthError::Config(format!("auth rate limits: {e}")))?;
        Ok(AuthRateLimits::build(config.rate_limit.auth, &backend)
            .trusted_proxies(config.security.trusted_proxies.clone()))
    }

    /// Believe `X-Forwarded-For` from these proxies (and only these) to find the client
    /// address.
    pub fn trusted_proxies(mut self, nets: Vec<IpNet>) -> Self {
        self.trusted = Arc::from(nets);
        self
    }

    /// The rates in effect.
    pub fn config(&self) -> &AuthRateLimitConfig {
        &self.config
    }

    /// `true` when the counters live in Redis.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// `RateLimit-Policy` for a set of these policies.
    #[cfg_attr(not(chopin_db), allow(dead_code))]
    pub(crate) fn policies<'a>(
        limiters: impl IntoIterator<Item = &'a Option<Limiter>>,
    ) -> http::HeaderValue {
        policy_value(limiters.into_iter().flatten())
    }
}

#[cfg(chopin_db)]
pub(crate) use routes::{RouteLimits, limit_routes};

/// The per-route layer of the auth module.
#[cfg(chopin_db)]
mod routes {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::body::Body;
    use axum::extract::{ConnectInfo, Request, State};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use http::{HeaderValue, StatusCode};
    use ring::digest;

    use super::AuthRateLimits;
    use crate::auth::AuthStore;
    use crate::auth::jwt::hex;
    use crate::error::ChopinError;
    use crate::middleware::rate_limit::{Limiter, address_key, limited, warn_no_peer};
    use crate::rate_limit::client_ip;

    /// The largest auth request body the layer reads to find the account (a login body is
    /// an e-mail of at most 254 characters and a password of at most a few hundred).
    const MAX_BODY: usize = 64 * 1024;

    /// The layer's state: the limits, the store (for the refresh token's owner) and each
    /// route's `RateLimit-Policy`.
    #[derive(Clone)]
    pub(crate) struct RouteLimits {
        limits: AuthRateLimits,
        store: AuthStore,
        login: HeaderValue,
        signup: HeaderValue,
        reset: HeaderValue,
        verification: HeaderValue,
        refresh: HeaderValue,
    }

    impl RouteLimits {
        pub(crate) fn new(limits: AuthRateLimits, store: AuthStore) -> RouteLimits {
            let one = |l: &Option<Limiter>| AuthRateLimits::policies([l]);
            RouteLimits {
                login: AuthRateLimits::policies([&limits.login, &limits.login_failures]),
                signup: one(&limits.signup),
                reset: AuthRateLimits::policies([
                    &limits.password_reset_ip,
                    &limits.password_reset,
                ]),
                verification: one(&limits.verification),
                refresh: one(&limits.refresh),
                limits,
                store,
            }
        }
    }

    /// Which limited route a request is for (the module's routes are all `POST`, mounted
    /// anywhere: the path's end names the route).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Route {
        Login,
        Signup,
        PasswordReset,
        Redeem,
        Refresh,
    }

    fn route_of(req: &Request) -> Option<Route> {
        if req.method() != http::Method::POST {
            return None;
        }
        let path = req.uri().path();
        // The confirm route first: it also ends with a segment of the reset route.
        if path.ends_with("/password-reset/confirm") || path.ends_with("/verify-email") {
            Some(Route::Redeem)
        } else if path.ends_with("/password-reset") {
            Some(Route::PasswordReset)
        } else if path.ends_with("/login") {
            Some(Route::Login)
        } else if path.ends_with("/signup") {
            Some(Route::Signup)
        } else if path.ends_with("/refresh") {
            Some(Route::Refresh)
        } else {
            None
        }
    }

    /// The account part of a bucket key: SHA-256 of the normalised e-mail (as the store
    /// compares them), so no address is written to Redis and keys stay short.
    fn account_key(email: &str) -> String {
        let normal = crate::auth::store::normalize_email(email);
        let digest = digest::digest(&digest::SHA256, normal.as_bytes());
        hex(&digest.as_ref()[..16])
    }

    #[derive(serde::Deserialize)]
    struct EmailField {
        email: String,
    }

    #[derive(serde::Deserialize)]
    struct RefreshField {
        refresh_token: String,
    }

    /// Read the body (at most [`MAX_BODY`]), handing back a request with the same body.
    async fn buffer(req: Request) -> Result<(Request, bytes::Bytes), Response> {
        let (parts, body) = req.into_parts();
        match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(bytes) => Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes)),
            Err(_) => Err(ChopinError::PayloadTooLarge { limit: MAX_BODY }.into_response()),
        }
    }

    async fn check(
        limiter: &Option<Limiter>,
        key: &str,
        policies: &HeaderValue,
        peek: bool,
    ) -> Result<(), Response> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        let decision: Result<(), Duration> = if peek {
            limiter.peek(key).await
        } else {
            limiter.check(key).await
        };
        decision.map_err(|wait| limited(limiter, policies, wait))
    }

    /// Count a login the login limits refused (`chopin_auth_logins_total{outcome="rate_limited"}`);
    /// the 429 itself is counted by `limited`.
    fn login_refused() {
        #[cfg(feature = "metrics")]
        crate::metrics::global().auth.login("rate_limited");
    }

    /// The auth routes' limits, before their handlers (see [`AuthRateLimits`]). Each limit
    /// answers 429 `RATE_LIMITED` with `Retry-After`, `RateLimit-Policy` and `RateLimit`.
    pub(crate) async fn limit_routes(
        State(state): State<RouteLimits>,
        req: Request,
        next: Next,
    ) -> Response {
        match limit(&state, req, next).await {
            Ok(response) | Err(response) => response,
        }
    }

    async fn limit(state: &RouteLimits, req: Request, next: Next) -> Result<Response, Response> {
        let Some(route) = route_of(&req) else {
            return Ok(next.run(req).await);
        };
        let limits = &state.limits;
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        // Keyed as the main layer keys addresses: an IPv6 client is its /64, not each address.
        let ip = client_ip(req.headers(), peer, &limits.trusted).map(address_key);
        if ip.is_none() && route != Route::Refresh {
            warn_no_peer();
        }
        match (route, ip) {
            (Route::Login, Some(ip)) => {
                check(&limits.login, &ip, &state.login, false)
                    .await
                    .inspect_err(|_| login_refused())?;
                let Some(failures) = &limits.login_failures else {
                    return Ok(next.run(req).await);
                };
                let (req, body) = buffer(req).await?;
                let Ok(EmailField { email }) = crate::json::from_slice(&body) else {
                    // The handler refuses it before any password is checked.
                    return Ok(next.run(req).await);
                };
                let key = format!("{ip}|{}", account_key(&email));
                check(&limits.login_failures, &key, &state.login, true)
                    .await
                    .inspect_err(|_| login_refused())?;
                let response = next.run(req).await;
                if response.status() == StatusCode::UNAUTHORIZED {
                    // Counted; whether this failure used up the budget shows on the next try.
                    let _ = failures.check(&key).await;
                }
                Ok(response)
            }
            (Route::Signup, Some(ip)) => {
                check(&limits.signup, &ip, &state.signup, false).await?;
                Ok(next.run(req).await)
            }
            (Route::PasswordReset, Some(ip)) => {
                // Per address first, whatever the account: one address cannot ask resets
                // for endless distinct accounts (each costs a lookup and maybe an e-mail).
                check(&limits.password_reset_ip, &ip, &state.reset, false).await?;
                if limits.password_reset.is_none() {
                    return Ok(next.run(req).await);
                }
                let (req, body) = buffer(req).await?;
                if let Ok(EmailField { email }) = crate::json::from_slice(&body) {
                    let key = format!("{ip}|{}", account_key(&email));
                    check(&limits.password_reset, &key, &state.reset, false).await?;
                }
                Ok(next.run(req).await)
            }
            (Route::Redeem, Some(ip)) => {
                check(&limits.verification, &ip, &state.verification, true).await?;
                let response = next.run(req).await;
                if response.status() == StatusCode::NOT_FOUND
                    && let Some(limiter) = &limits.verification
                {
                    let _ = limiter.check(&ip).await;
                }
                Ok(response)
            }
            (Route::Refresh, _) => {
                if limits.refresh.is_none() {
                    return Ok(next.run(req).await);
                }
                let (req, body) = buffer(req).await?;
                if let Ok(RefreshField { refresh_token }) = crate::json::from_slice(&body) {
                    // A database failure here is the handler's to report: it asks the same.
                    if let Ok(Some(user)) = state.store.refresh_owner(&refresh_token).await {
                        let key = format!("user:{user}");
                        check(&limits.refresh, &key, &state.refresh, false).await?;
                    }
                }
                Ok(next.run(req).await)
            }
            // No client address: the per-address limits cannot apply (see `warn_no_peer`).
            (_, None) => Ok(next.run(req).await),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn routes_are_recognised_by_their_path_wherever_mounted() {
            let route = |method: &str, path: &str| {
                let req = Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap();
                route_of(&req)
            };
            assert_eq!(route("POST", "/login"), Some(Route::Login));
            assert_eq!(route("POST", "/api/auth/login"), Some(Route::Login));
            assert_eq!(route("POST", "/signup"), Some(Route::Signup));
            assert_eq!(
                route("POST", "/a/password-reset"),
                Some(Route::PasswordReset)
            );
            assert_eq!(
                route("POST", "/a/password-reset/confirm"),
                Some(Route::Redeem)
            );
            assert_eq!(route("POST", "/a/verify-email"), Some(Route::Redeem));
            assert_eq!(route("POST", "/a/refresh"), Some(Route::Refresh));
            assert_eq!(route("POST", "/a/logout"), None);
            assert_eq!(route("GET", "/a/me"), None);
            assert_eq!(route("GET", "/login"), None);
        }

        #[test]
        fn account_keys_hide_the_address_and_ignore_case_and_spaces() {
            let key = account_key(" Ada@Example.com ");
            assert_eq!(key, account_key("ada@example.com"));
            assert_ne!(key, account_key("bob@example.com"));
            assert_eq!(key.len(), 32);
            assert!(!key.contains("ada"));
        }
    }
}
