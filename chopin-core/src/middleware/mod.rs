//! Chopin's middleware, one file per layer, and the stack that composes them ([`Layers`]).
//!
//! The public paths are `crate::layers` (the default stack's layers), `crate::rate_limit` and
//! `crate::cache::http` (ETags and the response cache); this module is private. From the
//! outside in, the default stack is: metrics (feature `metrics`), request id, trace, security headers, catch panic,
//! compression, CORS, rate limit, timeout, body limit, the extensions `App` hands to
//! extractors, then the router with its fallbacks. Every layer `FooLayer` builds a
//! `FooService<S>`. [`Layers`] runs Chopin's own adjacent layers fused into two services
//! (`fused.rs`: metrics to catch panic; timeout to the extensions), with the same behaviour.

mod body_limit;
mod catch_panic;
mod compression;
mod cors;
mod etag;
mod extensions;
mod fallback;
mod fused;
#[cfg(feature = "metrics")]
mod metrics;
pub(crate) mod rate_limit;
mod request_id;
mod response_cache;
mod security_headers;
mod stack;
mod timeout;
mod trace;

pub use body_limit::{BodyLimit, BodyLimitLayer, BodyLimitService};
pub use catch_panic::{CatchPanicFuture, CatchPanicLayer, CatchPanicService};
pub use compression::{CompressionLayer, CompressionService};
pub use etag::{DEFAULT_ETAG_MAX_SIZE, ETagFuture, ETagLayer, ETagService};
pub(crate) use extensions::RequestExtensions;
#[cfg(feature = "metrics")]
pub use metrics::{HttpMetricsFuture, HttpMetricsLayer, HttpMetricsService};
pub use rate_limit::RateLimitLayer;
pub use request_id::{RequestIdFuture, RequestIdLayer, RequestIdService, X_REQUEST_ID};
pub use response_cache::{
    DEFAULT_CACHE_TIMEOUT, DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_VARIANTS, DEFAULT_RESPONSE_TTL,
    ResponseCacheFuture, ResponseCacheLayer, ResponseCacheService, X_CACHE,
};
pub use security_headers::{SecurityHeadersFuture, SecurityHeadersLayer, SecurityHeadersService};
pub use stack::Layers;
pub use timeout::{TimeoutFuture, TimeoutLayer, TimeoutService};
pub use trace::{RequestTraceFuture, RequestTraceLayer, RequestTraceService};
