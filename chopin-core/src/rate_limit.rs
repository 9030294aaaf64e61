//! Per-client rate limiting: a tower layer applying GCRA (the generic cell rate algorithm,
//! a token bucket without a refill timer) per key.
//!
//! * Every request is charged first to its client address (the `ip` policy,
//!   [`RateLimitLayer::ip_rate`], `CHOPIN_RATE_LIMIT_IP`, by default
//!   [`IP_RATE_MULTIPLE`](crate::config::IP_RATE_MULTIPLE) times the per-client rate): `ip:<addr>`,
//!   IPv6 by its /64, IPv4-mapped IPv6 as IPv4. Then to its client (the `client` policy,
//!   `CHOPIN_RATE_LIMIT`): when the layer knows the [`Auth`] (`RateLimitLayer::per_user`) and
//!   the request's access token is one `Auth::verify` has verified and remembers, the user
//!   (`user:<sub>`); otherwise the address again. Any [`RateLimitKey`] can name the client
//!   buckets instead ([`RateLimitLayer::key_by`]), several per request if need be, charged in
//!   order: the first one over its limit refuses the request. A token never replaces the
//!   address: many accounts behind one address share its budget, and junk tokens are refused
//!   by the address budget before anything looks at them.
//! * A request without a peer address (`ConnectInfo<SocketAddr>` missing: the router was
//!   served with plain `axum::serve(listener, router)`) is limited only by its user, if any,
//!   and a warning is logged once: one bucket shared by every client would let one client
//!   lock all the others out. Serve with `App::serve`, or
//!   `router.into_make_service_with_connect_info::<SocketAddr>()`.
//! * The client IP is the socket's peer address (`ConnectInfo<SocketAddr>`, which
//!   [`App::serve`](crate::App::serve) provides). `X-Forwarded-For` is read only when that
//!   peer is a configured trusted proxy (`CHOPIN_TRUSTED_PROXIES`): then the client is the
//!   right-most address that is not itself a trusted proxy. A client talking directly cannot
//!   choose its key by sending the header.
//! * In process by default (the `governor` crate, keyed); with `CHOPIN_RATE_LIMIT_BACKEND=redis`
//!   the state lives in Redis and one Lua script decides atomically, with Redis' clock, so the
//!   limit holds across every instance.
//! * Over the limit: 429 `RATE_LIMITED` in the envelope with `Retry-After`, and the
//!   `RateLimit-Policy` / `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-10
//!   (`RateLimit-Policy: ip;q=40;w=1, client;q=10;w=1`, `RateLimit: client;r=0;t=1`).
//!
//! The auth module has its own limits on its routes (`AuthRateLimits`, on by default; see
//! `docs/auth.md`).
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

pub use crate::middleware::rate_limit::{
    Buckets, KeyFuture, RateLimitError, RateLimitKey, RateLimitLayer, RateLimitRequest,
    RateLimitService, client_ip,
};

/// The former name of [`RateLimitService`] (every Chopin layer `FooLayer` now builds a
/// `FooService<S>`).
#[deprecated(note = "renamed to `RateLimitService`")]
pub type RateLimit<S> = RateLimitService<S>;
