//! Chopin's default middleware stack and its configuration.
//!
//! [`Layers`] describes which layers [`App`](crate::App) installs. From the outside in:
//!
//! | layer | effect | configured by |
//! |---|---|---|
//! | metrics | request duration, body sizes, requests in flight by method, route template and status (feature `metrics`) | [`Layers::metrics`] |
//! | request id | propagates a sane `x-request-id` or generates one; puts it in the response, in every error body and in the tracing span; joins the caller's W3C trace (`traceparent`) or starts one ([`TraceContext`](crate::TraceContext)) | [`Layers::request_id`] |
//! | trace | one `request` span per request (with its `trace_id`), a log line per response | [`Layers::trace`] |
//! | catch panic | a panicking handler becomes a 500 envelope, the process lives on | [`Layers::catch_panic`] |
//! | compression | gzip, br or zstd by `Accept-Encoding` | `CHOPIN_COMPRESSION` |
//! | CORS | closed unless origins are configured | `CHOPIN_CORS_ORIGINS` |
//! | timeout | 504 envelope after the request timeout | `CHOPIN_REQUEST_TIMEOUT` |
//! | body limit | 413 envelope above the body limit | `CHOPIN_BODY_LIMIT` |
//! | security headers | `nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, a locked-down CSP on JSON, HSTS in production | `CHOPIN_SECURITY_HEADERS`, `CHOPIN_HSTS` |
//! | rate limit | 429 envelope with `Retry-After` per client IP / user | `CHOPIN_RATE_LIMIT` ([`crate::rate_limit`]) |
//!
//! Unknown routes (404) and wrong methods (405) are answered in the envelope too. Each layer is
//! also usable on its own in any axum or tower stack. Every layer `FooLayer` builds a service
//! `FooService<S>` (and, where it needs one, a future `FooFuture<F>`).

pub use crate::context::TRACEPARENT;
pub use crate::middleware::{
    BodyLimit, BodyLimitLayer, BodyLimitService, CatchPanicFuture, CatchPanicLayer,
    CatchPanicService, CompressionLayer, CompressionService, Layers, RequestIdFuture,
    RequestIdLayer, RequestIdService, RequestTraceFuture, RequestTraceLayer, RequestTraceService,
    SecurityHeadersFuture, SecurityHeadersLayer, SecurityHeadersService, TimeoutFuture,
    TimeoutLayer, TimeoutService, X_REQUEST_ID,
};
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use crate::middleware::{HttpMetricsFuture, HttpMetricsLayer, HttpMetricsService};

/// The former name of [`SecurityHeadersService`] (every Chopin layer `FooLayer` now builds a
/// `FooService<S>`).
#[deprecated(note = "renamed to `SecurityHeadersService`")]
pub type SecurityHeaders<S> = SecurityHeadersService<S>;
