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
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName};
use http::{HeaderValue, Method};
use pin_project_lite::pin_project;
use tower::ServiceBuilder;
use tower::util::option_layer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{Config, CorsConfig};
use crate::context::{REQUEST_CONTEXT, RequestContext, RequestId};
use crate::error::ChopinError;
use crate::extractors::PaginationConfig;
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

    /// Wrap `router` in the configured layers and add the 404 / 405 fallbacks.
    pub fn apply(&self, router: Router) -> Router {
        self.apply_with(router, RequestExtensions::default())
    }

    /// [`Layers::apply`], also inserting what `App` hands to extractors (page-size limits,
    /// the auth handle) inside the same stack.
    pub(crate) fn apply_with(&self, router: Router, extensions: RequestExtensions) -> Router {
        let router = router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);
        // The `Pagination` extractor falls back to the defaults by itself.
        let pagination = extensions
            .pagination
            .filter(|p| *p != PaginationConfig::default());
        let nothing_enabled = !(self.request_id
            || self.trace
            || self.catch_panic
            || self.compression
            || self.cors.is_open()
            || self.timeout.is_some()
            || self.body_limit.is_some()
            || self.security_headers.is_some()
            || self.rate_limit.is_some());
        if nothing_enabled && pagination.is_none() && !extensions.has_auth() {
            // Nothing to wrap: a layer of identities would still cost a box per request.
            return router;
        }
        // One `Router::layer` call with one composed stack: every `Router::layer` call boxes
        // the route again and clones that box per request, so the layers are composed here,
        // statically, and disabled ones become `Identity`. Every layer answers with axum's
        // `Response`, so both sides of each `Either` agree.
        //
        // The rate limit sits inside CORS, so a 429 carries the CORS headers a browser needs
        // to read it, and preflight requests do not spend the budget.
        //
        // Chopin's own layers switch off at run time instead of becoming an `Either` with
        // `Identity`: each `Either` holds the rest of the stack twice in its type, so a dozen
        // of them made type (and symbol) sizes grow as 2^12. Only layers from other crates
        // (compression, CORS, the rate limit, axum's body limit) are `Either`s.
        let stack = ServiceBuilder::new()
            .layer(RequestIdLayer::new(self.expose_internal_errors).enabled(self.request_id))
            .layer(RequestTraceLayer::new().enabled(self.trace))
            .layer(
                self.security_headers
                    .unwrap_or_else(|| SecurityHeadersLayer::new(false).enabled(false)),
            )
            .layer(CatchPanicLayer::new().enabled(self.catch_panic))
            .layer(option_layer(self.compression.then(CompressionLayer::new)))
            .layer(option_layer(cors_layer(&self.cors)))
            .layer(option_layer(self.rate_limit.clone()))
            .layer(TimeoutLayer::optional(self.timeout))
            .layer(BodyLimitLayer::optional(self.body_limit))
            .layer(option_layer(self.body_limit.map(DefaultBodyLimit::max)))
            .layer(ExtensionsLayer {
                pagination,
                #[cfg(feature = "auth")]
                auth: extensions.auth,
            });
        router.layer(stack)
    }
}

/// What [`App`](crate::App) puts into every request for its extractors.
#[derive(Default)]
pub(crate) struct RequestExtensions {
    /// Page-size limits for `Pagination`.
    pub(crate) pagination: Option<PaginationConfig>,
    /// The handle `AuthUser` verifies tokens with.
    #[cfg(feature = "auth")]
    pub(crate) auth: Option<crate::auth::Auth>,
}

impl RequestExtensions {
    #[cfg(feature = "auth")]
    fn has_auth(&self) -> bool {
        self.auth.is_some()
    }

    #[cfg(not(feature = "auth"))]
    fn has_auth(&self) -> bool {
        false
    }
}

/// Inserts [`RequestExtensions`] into each request.
#[derive(Clone)]
struct ExtensionsLayer {
    pagination: Option<PaginationConfig>,
    #[cfg(feature = "auth")]
    auth: Option<crate::auth::Auth>,
}

impl<S> Layer<S> for ExtensionsLayer {
    type Service = ExtensionsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExtensionsService {
            inner,
            extensions: self.clone(),
        }
    }
}

#[derive(Clone)]
struct ExtensionsService<S> {
    inner: S,
    extensions: ExtensionsLayer,
}

impl<S, B> Service<http::Request<B>> for ExtensionsService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(pagination) = self.extensions.pagination {
            req.extensions_mut().insert(pagination);
        }
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.extensions.auth {
            req.extensions_mut().insert(auth.clone());
        }
        self.inner.call(req)
    }
}

/// Response compression (gzip, br or zstd, chosen from `Accept-Encoding`) that answers with
/// axum's [`Response`].
///
/// A thin wrapper over tower-http's compression: a request without `Accept-Encoding` goes
/// straight to the inner service (a compressible response only gains `Vary: accept-encoding`), so
/// clients that cannot decompress pay nothing for it.
#[derive(Clone, Default)]
pub struct CompressionLayer {
    inner: tower_http::compression::CompressionLayer,
}

impl CompressionLayer {
    /// gzip, br and zstd, with tower-http's default rules for what is worth compressing.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = CompressionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CompressionService {
            inner: self.inner.layer(inner),
        }
    }
}

/// Service of [`CompressionLayer`].
#[derive(Clone)]
pub struct CompressionService<S> {
    inner: tower_http::compression::Compression<S>,
}

type CompressedResponse = http::Response<tower_http::compression::CompressionBody<Body>>;

impl<S, ReqBody> Service<http::Request<ReqBody>> for CompressionService<S>
where
    S: Service<http::Request<ReqBody>, Response = Response>,
    tower_http::compression::Compression<S>:
        Service<http::Request<ReqBody>, Response = CompressedResponse, Error = S::Error>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        futures_util::future::MapOk<
            <tower_http::compression::Compression<S> as Service<http::Request<ReqBody>>>::Future,
            fn(CompressedResponse) -> Response,
        >,
        futures_util::future::MapOk<S::Future, fn(Response) -> Response>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.get_mut().poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        use futures_util::TryFutureExt;
        if req.headers().contains_key(header::ACCEPT_ENCODING) {
            let into_response: fn(CompressedResponse) -> Response = |r| r.map(Body::new);
            futures_util::future::Either::Left(self.inner.call(req).map_ok(into_response))
        } else {
            futures_util::future::Either::Right(self.inner.get_mut().call(req).map_ok(add_vary))
        }
    }
}

const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("accept-encoding");

/// The response would have been compressed for a client that asked: say so to caches, exactly
/// when tower-http's compression would have.
fn add_vary(mut response: Response) -> Response {
    use tower_http::compression::predicate::{DefaultPredicate, Predicate};
    let headers = response.headers();
    let compressible = !headers.contains_key(header::CONTENT_ENCODING)
        && !headers.contains_key(header::CONTENT_RANGE)
        && DefaultPredicate::new().should_compress(&response);
    if !compressible {
        return response;
    }
    let listed = response.headers().get_all(header::VARY).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let t = t.trim_ascii();
            t == b"*" || t.eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    if !listed {
        response.headers_mut().append(header::VARY, ACCEPT_ENCODING);
    }
    response
}

/// Opens a `request` span (method, path, matched route, request id) around each request and
/// logs one event per response: status and latency, at `INFO`, or `ERROR` for a 5xx.
#[derive(Debug, Clone, Copy)]
pub struct RequestTraceLayer {
    enabled: bool,
}

impl RequestTraceLayer {
    /// The trace layer.
    pub fn new() -> Self {
        Self { enabled: true }
    }

    /// Switched on or off (off: requests pass straight through).
    pub fn enabled(self, enabled: bool) -> Self {
        Self { enabled }
    }
}

impl Default for RequestTraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RequestTraceLayer {
    type Service = RequestTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTraceService {
            inner,
            enabled: self.enabled,
        }
    }
}

/// Service of [`RequestTraceLayer`].
#[derive(Debug, Clone)]
pub struct RequestTraceService<S> {
    inner: S,
    enabled: bool,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestTraceService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestTraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        if !self.enabled {
            return RequestTraceFuture {
                inner: self.inner.call(req),
                start: None,
                span: tracing::Span::none(),
            };
        }
        let span = make_request_span(&req);
        let inner = span.in_scope(|| self.inner.call(req));
        RequestTraceFuture {
            inner,
            start: Some(Instant::now()),
            span,
        }
    }
}

pin_project! {
    /// Future of [`RequestTraceService`].
    pub struct RequestTraceFuture<F> {
        #[pin]
        inner: F,
        start: Option<Instant>,
        span: tracing::Span,
    }
}

impl<F, ResBody, E> Future for RequestTraceFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(start)) = (&result, this.start) {
            let status = response.status().as_u16();
            let latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            if status >= 500 {
                tracing::error!(status, latency_us, "response");
            } else {
                tracing::info!(status, latency_us, "response");
            }
        }
        Poll::Ready(result)
    }
}

/// Turns a panic in the inner service (while it is called or while its future runs) into a
/// 500 `INTERNAL` envelope, so that the connection and the process live on. The panic message
/// appears in the body's `detail` only in development.
///
/// The response body is not guarded: a body that panics while it streams aborts that response
/// only.
#[derive(Debug, Clone, Copy)]
pub struct CatchPanicLayer {
    enabled: bool,
}

impl CatchPanicLayer {
    /// The catch-panic layer.
    pub fn new() -> Self {
        Self { enabled: true }
    }

    /// Switched on or off (off: a panic unwinds through it).
    pub fn enabled(self, enabled: bool) -> Self {
        Self { enabled }
    }
}

impl Default for CatchPanicLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanicService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanicService {
            inner,
            enabled: self.enabled,
        }
    }
}

/// Service of [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanicService<S> {
    inner: S,
    enabled: bool,
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for CatchPanicService<S>
where
    S: Service<http::Request<ReqBody>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        if !self.enabled {
            return CatchPanicFuture {
                inner: Some(self.inner.call(req)),
                payload: None,
                catch: false,
            };
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(inner) => CatchPanicFuture {
                inner: Some(inner),
                payload: None,
                catch: true,
            },
            Err(payload) => CatchPanicFuture {
                inner: None,
                payload: Some(payload),
                catch: true,
            },
        }
    }
}

pin_project! {
    /// Future of [`CatchPanicService`].
    pub struct CatchPanicFuture<F> {
        #[pin]
        inner: Option<F>,
        payload: Option<Box<dyn Any + Send + 'static>>,
        catch: bool,
    }
}

impl<F, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let payload = match (this.payload.take(), this.inner.as_pin_mut()) {
            (Some(payload), _) => payload,
            (None, Some(inner)) if !*this.catch => return inner.poll(cx),
            (None, Some(inner)) => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                    Ok(poll) => return poll,
                    Err(payload) => payload,
                }
            }
            (None, None) => Box::new("future polled after it panicked"),
        };
        Poll::Ready(Ok(panic_response(payload)))
    }
}

async fn not_found() -> ChopinError {
    ChopinError::NotFound("no route matches this path".into())
}

async fn method_not_allowed() -> ChopinError {
    ChopinError::MethodNotAllowed
}

fn make_request_span<B>(req: &http::Request<B>) -> tracing::Span {
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
    enabled: bool,
}

impl RequestIdLayer {
    /// A request-id layer; `expose_internal_errors` lets error bodies carry internal details
    /// (use only in development).
    pub fn new(expose_internal_errors: bool) -> Self {
        Self {
            expose_internal_errors,
            enabled: true,
        }
    }

    /// Switched on or off (off: no id, no request context; requests pass straight through).
    pub fn enabled(self, enabled: bool) -> Self {
        Self { enabled, ..self }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService {
            inner,
            expose_internal_errors: self.expose_internal_errors,
            enabled: self.enabled,
        }
    }
}

/// Service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
    expose_internal_errors: bool,
    enabled: bool,
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
        if !self.enabled {
            return RequestIdFuture {
                inner: self.inner.call(req),
                context: None,
                id: None,
            };
        }
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
            inner,
            context: Some(context),
            id: Some(id),
        }
    }
}

pin_project! {
    /// Future of [`RequestIdService`].
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        context: Option<RequestContext>,
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
        let inner = this.inner;
        let poll = match this.context {
            Some(context) => REQUEST_CONTEXT.sync_scope(context.clone(), || inner.poll(cx)),
            None => inner.poll(cx),
        };
        let mut response = std::task::ready!(poll)?;
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
    limit: Option<usize>,
}

impl BodyLimitLayer {
    /// A limit of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit: Some(limit) }
    }

    /// A limit of `limit` bytes, or no check at all for `None`.
    pub fn optional(limit: Option<usize>) -> Self {
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
    limit: Option<usize>,
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
        let Some(limit) = self.limit else {
            return futures_util::future::Either::Right(self.inner.call(req));
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            let response = ChopinError::PayloadTooLarge { limit }.into_response();
            return futures_util::future::Either::Left(std::future::ready(Ok(response)));
        }
        req.extensions_mut().insert(BodyLimit(limit));
        futures_util::future::Either::Right(self.inner.call(req))
    }
}

/// Answers 504 `TIMEOUT` in the envelope when the inner service takes longer than the timeout.
/// The inner future is dropped, which cancels the handler's work.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Option<Duration>,
}

impl TimeoutLayer {
    /// A timeout of `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
        }
    }

    /// A timeout of `timeout`, or none at all for `None`.
    pub fn optional(timeout: Option<Duration>) -> Self {
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
    timeout: Option<Duration>,
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
            sleep: self.timeout.map(tokio::time::sleep),
        }
    }
}

pin_project! {
    /// Future of [`TimeoutService`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
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
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Ok(ChopinError::Timeout.into_response())),
            Some(Poll::Pending) | None => Poll::Pending,
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
    enabled: bool,
}

impl SecurityHeadersLayer {
    /// The layer, with or without HSTS.
    pub fn new(hsts: bool) -> Self {
        Self {
            hsts,
            enabled: true,
        }
    }

    /// Switched on or off (off: responses pass unchanged).
    pub fn enabled(self, enabled: bool) -> Self {
        Self { enabled, ..self }
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders {
            inner,
            hsts: self.hsts,
            enabled: self.enabled,
        }
    }
}

/// Service of [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecurityHeaders<S> {
    inner: S,
    hsts: bool,
    enabled: bool,
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
            enabled: self.enabled,
        }
    }
}

pin_project! {
    /// Future of [`SecurityHeaders`].
    pub struct SecurityHeadersFuture<F> {
        #[pin]
        inner: F,
        hsts: bool,
        enabled: bool,
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
        if !*this.enabled {
            return Poll::Ready(Ok(response));
        }
        let headers = response.headers_mut();
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        // Room for all of them at once, and one lookup per header. The values are constants:
        // `HeaderValue::from_static` outside a const context validates every byte per call.
        const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
        const DENY: HeaderValue = HeaderValue::from_static("DENY");
        const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
        const JSON_CSP: HeaderValue =
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'");
        const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");
        headers.reserve(5);
        let mut set = |name: HeaderName, value: HeaderValue| {
            headers.entry(name).or_insert(value);
        };
        set(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        set(header::X_FRAME_OPTIONS, DENY);
        set(header::REFERRER_POLICY, NO_REFERRER);
        if is_json {
            set(header::CONTENT_SECURITY_POLICY, JSON_CSP);
        }
        if *this.hsts {
            set(header::STRICT_TRANSPORT_SECURITY, HSTS);
        }
        Poll::Ready(Ok(response))
    }
}
