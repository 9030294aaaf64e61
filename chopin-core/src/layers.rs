//! Chopin's default middleware stack and its configuration.
//!
//! [`Layers`] describes which layers [`App`](crate::App) installs. From the outside in:
//!
//! | layer | effect | configured by |
//! |---|---|---|
//! | request id | propagates a sane `x-request-id` or generates one; puts it in the response, in every error body and in the tracing span | [`Layers::request_id`] |
//! | trace | one `request` span per request, a log line per response | [`Layers::trace`] |
//! | catch panic | a panicking handler becomes a 500 envelope, the process lives on | [`Layers::catch_panic`] |
//! | compression | gzip, br or zstd by `Accept-Encoding` | `CHOPIN_COMPRESSION` |
//! | CORS | closed unless origins are configured | `CHOPIN_CORS_ORIGINS` |
//! | timeout | 504 envelope after the request timeout | `CHOPIN_REQUEST_TIMEOUT` |
//! | body limit | 413 envelope above the body limit | `CHOPIN_BODY_LIMIT` |
//! | security headers | `nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, a locked-down CSP on JSON, HSTS in production | `CHOPIN_SECURITY_HEADERS`, `CHOPIN_HSTS` |
//! | rate limit | 429 envelope with `Retry-After` per client IP / user | `CHOPIN_RATE_LIMIT` ([`crate::rate_limit`]) |
//!
//! Unknown routes (404) and wrong methods (405) are answered in the envelope too. Each layer is
//! also usable on its own in any axum or tower stack.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName};
use http::{HeaderValue, Method};
use pin_project_lite::pin_project;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Level;

use crate::config::{Config, CorsConfig};
use crate::context::{REQUEST_CONTEXT, RequestContext, RequestId};
use crate::error::ChopinError;
use crate::rate_limit::RateLimitLayer;

/// The request-id header, `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id that is propagated as is.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Which default layers [`App`](crate::App) installs, and their settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layers {
    /// Request-id propagation / generation (and the request context errors read).
    pub request_id: bool,
    /// A tracing span per request and a log event per response.
    pub trace: bool,
    /// Turn handler panics into 500 envelopes.
    pub catch_panic: bool,
    /// Response compression.
    pub compression: bool,
    /// CORS policy; closed when it lists no origin.
    pub cors: CorsConfig,
    /// Request timeout (504), or `None` for none.
    pub timeout: Option<Duration>,
    /// Request body limit in bytes (413), or `None` to keep axum's default of 2 MiB for its
    /// extractors.
    pub body_limit: Option<usize>,
    /// Show internal error details (error chains, panic messages) in error bodies.
    pub expose_internal_errors: bool,
    /// Security response headers, or `None` for none.
    pub security_headers: Option<SecurityHeadersLayer>,
    /// Rate limiting (after the request id and trace layers, before everything else).
    pub rate_limit: Option<RateLimitLayer>,
}

impl Layers {
    /// The full default stack, configured from `config`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            request_id: true,
            trace: true,
            catch_panic: true,
            compression: config.http.compression,
            cors: config.http.cors.clone(),
            timeout: config.http.request_timeout,
            body_limit: Some(config.http.body_limit),
            expose_internal_errors: config.environment.is_development(),
            security_headers: config
                .security
                .headers
                .then(|| SecurityHeadersLayer::new(config.security.hsts)),
            rate_limit: match RateLimitLayer::from_config(config) {
                Ok(layer) => layer,
                Err(error) => {
                    // `Config` already refuses the settings that lead here.
                    tracing::error!(%error, "rate limiting disabled");
                    None
                }
            },
        }
    }

    /// No middleware at all: only the envelope fallbacks for 404 and 405. For benchmarks and
    /// for applications that bring their own stack.
    pub fn minimal() -> Self {
        Self {
            request_id: false,
            trace: false,
            catch_panic: false,
            compression: false,
            cors: CorsConfig::default(),
            timeout: None,
            body_limit: None,
            expose_internal_errors: false,
            security_headers: None,
            rate_limit: None,
        }
    }

    /// Wrap `router` in the configured layers (innermost first) and add the 404 / 405
    /// fallbacks.
    pub fn apply(&self, router: Router) -> Router {
        let mut router = router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);
        if let Some(limit) = self.body_limit {
            router = router
                .layer(DefaultBodyLimit::max(limit))
                .layer(BodyLimitLayer::new(limit));
        }
        if let Some(timeout) = self.timeout {
            router = router.layer(TimeoutLayer::new(timeout));
        }
        if let Some(cors) = cors_layer(&self.cors) {
            router = router.layer(cors);
        }
        if self.compression {
            router = router.layer(CompressionLayer::new());
        }
        if self.catch_panic {
            router = router.layer(CatchPanicLayer::custom(panic_response));
        }
        if let Some(limit) = &self.rate_limit {
            router = router.layer(limit.clone());
        }
        if let Some(headers) = self.security_headers {
            router = router.layer(headers);
        }
        if self.trace {
            router = router.layer(
                TraceLayer::new_for_http()
                    .make_span_with(make_request_span)
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            );
        }
        if self.request_id {
            router = router.layer(RequestIdLayer::new(self.expose_internal_errors));
        }
        router
    }
}

async fn not_found() -> ChopinError {
    ChopinError::NotFound("no route matches this path".into())
}

async fn method_not_allowed() -> ChopinError {
    ChopinError::MethodNotAllowed
}

fn make_request_span(req: &Request) -> tracing::Span {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(RequestId::as_str)
        .unwrap_or("");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        route,
        request_id,
    )
}

fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    ChopinError::internal(format!("handler panicked: {message}")).into_response()
}

fn cors_layer(cors: &CorsConfig) -> Option<CorsLayer> {
    if !cors.is_open() {
        return None;
    }
    let origin = if cors.origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cors.origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::HEAD,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT,
                X_REQUEST_ID.clone(),
            ])
            .expose_headers([X_REQUEST_ID.clone(), header::RETRY_AFTER])
            .allow_credentials(cors.allow_credentials)
            .max_age(Duration::from_secs(600)),
    )
}

/// Accept an incoming request id if it is short and made of visible, unambiguous characters.
fn sanitize_request_id(value: &HeaderValue) -> Option<HeaderValue> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| value.clone())
}

fn generate_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Layer that gives every request an id and runs it inside Chopin's request context.
///
/// An incoming `x-request-id` made of at most 128 characters from `[A-Za-z0-9._:-]` is kept;
/// anything else is replaced by a new UUID v4. The id is set on the request (header and
/// [`RequestId`] extension), echoed on the response, and included in every error body.
#[derive(Debug, Clone, Copy)]
pub struct RequestIdLayer {
    expose_internal_errors: bool,
}

impl RequestIdLayer {
    /// A request-id layer; `expose_internal_errors` lets error bodies carry internal details
    /// (use only in development).
    pub fn new(expose_internal_errors: bool) -> Self {
        Self {
            expose_internal_errors,
        }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService {
            inner,
            expose_internal_errors: self.expose_internal_errors,
        }
    }
}

/// Service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
    expose_internal_errors: bool,
}

impl<S, B, ResBody> Service<http::Request<B>> for RequestIdService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(sanitize_request_id)
            .unwrap_or_else(generate_request_id);
        req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
        req.extensions_mut().insert(RequestId(id.clone()));
        let context = RequestContext {
            id: RequestId(id.clone()),
            expose_internal_errors: self.expose_internal_errors,
        };
        let inner = REQUEST_CONTEXT.sync_scope(context.clone(), || self.inner.call(req));
        RequestIdFuture {
            inner: REQUEST_CONTEXT.scope(context, inner),
            id: Some(id),
        }
    }
}

pin_project! {
    /// Future of [`RequestIdService`].
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: tokio::task::futures::TaskLocalFuture<RequestContext, F>,
        id: Option<HeaderValue>,
    }
}

impl<F, ResBody, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(response))
    }
}

/// Body size marker placed in request extensions by [`BodyLimitLayer`], read by Chopin's body
/// extractors to report the limit in 413 errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// Rejects requests whose `Content-Length` exceeds the limit with a 413 envelope before the
/// handler runs. Bodies without a length (chunked) are limited while they are read, by
/// axum's `DefaultBodyLimit`, which [`Layers`] installs with the same value.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    /// A limit of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimitService {
            inner,
            limit: self.limit,
        }
    }
}

/// Service of [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct BodyLimitService<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<http::Request<B>> for BodyLimitService<S>
where
    S: Service<http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.limit as u64) {
            let response = ChopinError::PayloadTooLarge { limit: self.limit }.into_response();
            return futures_util::future::Either::Left(std::future::ready(Ok(response)));
        }
        req.extensions_mut().insert(BodyLimit(self.limit));
        futures_util::future::Either::Right(self.inner.call(req))
    }
}

/// Answers 504 `TIMEOUT` in the envelope when the inner service takes longer than the timeout.
/// The inner future is dropped, which cancels the handler's work.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// A timeout of `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService {
            inner,
            timeout: self.timeout,
        }
    }
}

/// Service of [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<http::Request<B>> for TimeoutService<S>
where
    S: Service<http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        TimeoutFuture {
            inner: self.inner.call(req),
            sleep: tokio::time::sleep(self.timeout),
        }
    }
}

pin_project! {
    /// Future of [`TimeoutService`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl<F, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(ChopinError::Timeout.into_response())),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sanitised() {
        let ok = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(sanitize_request_id(&ok), Some(ok.clone()));
        for bad in ["", "has space", "semi;colon", "quote\"", "<script>"] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert_eq!(sanitize_request_id(&v), None, "{bad:?}");
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_eq!(sanitize_request_id(&long), None);
        let generated = generate_request_id();
        assert_eq!(generated.len(), 36);
        assert!(sanitize_request_id(&generated).is_some());
    }
}

/// Adds security headers to every response that does not set them itself:
///
/// * `X-Content-Type-Options: nosniff` — browsers must not guess a content type;
/// * `X-Frame-Options: DENY` — no framing (clickjacking);
/// * `Referrer-Policy: no-referrer`;
/// * `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` on JSON responses
///   (a JSON API needs no scripts, styles or frames; the HTML docs UI is left alone);
/// * `Strict-Transport-Security: max-age=31536000; includeSubDomains` when `hsts` is on
///   (production by default: only ever send it from an HTTPS origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityHeadersLayer {
    hsts: bool,
}

impl SecurityHeadersLayer {
    /// The layer, with or without HSTS.
    pub fn new(hsts: bool) -> Self {
        Self { hsts }
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders {
            inner,
            hsts: self.hsts,
        }
    }
}

/// Service of [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecurityHeaders<S> {
    inner: S,
    hsts: bool,
}

impl<S, B, ResBody> Service<http::Request<B>> for SecurityHeaders<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = SecurityHeadersFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        SecurityHeadersFuture {
            inner: self.inner.call(req),
            hsts: self.hsts,
        }
    }
}

pin_project! {
    /// Future of [`SecurityHeaders`].
    pub struct SecurityHeadersFuture<F> {
        #[pin]
        inner: F,
        hsts: bool,
    }
}

impl<F, ResBody, E> Future for SecurityHeadersFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        let headers = response.headers_mut();
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let mut set = |name: HeaderName, value: &'static str| {
            if !headers.contains_key(&name) {
                headers.insert(name, HeaderValue::from_static(value));
            }
        };
        set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        set(header::X_FRAME_OPTIONS, "DENY");
        set(header::REFERRER_POLICY, "no-referrer");
        if is_json {
            set(
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            );
        }
        if *this.hsts {
            set(
                header::STRICT_TRANSPORT_SECURITY,
                "max-age=31536000; includeSubDomains",
            );
        }
        Poll::Ready(Ok(response))
    }
}
