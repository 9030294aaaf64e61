//! Chopin's adjacent default layers fused into two services, for [`Layers`](super::Layers):
//! the front (request metrics, request id and trace context, the `request` span and its log
//! event, security headers, catch panic) and the back (timeout, body limit, the extensions
//! `App` hands to extractors).
//!
//! Each layer of a tower stack returns its future by value and the next layer out moves it into
//! its own, so a dozen nested layers moved the growing future a dozen times per request, and
//! each added a service to clone and a `call` to go through. A fused service does the same
//! work, in the same order, in one `call` and one future. The layers stay public one by one
//! (`crate::layers`) for stacks of one's own; both forms share the code that does the work.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::response::Response;
use futures_util::future::Either;
use http::HeaderValue;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;

use super::catch_panic::{CatchPanicFuture, guarded_call};
use super::extensions::ExtensionsLayer;
use super::request_id::{X_REQUEST_ID, begin};
use super::security_headers::add_security_headers;
use super::timeout::{TimeoutFuture, deadline};
use super::trace::{log_response, request_span};
use crate::context::{REQUEST_CONTEXT, RequestContext};

/// What the front records for request metrics (nothing without the `metrics` feature).
#[cfg(feature = "metrics")]
type Facts = super::metrics::RequestFacts;
/// What the front records for request metrics (nothing without the `metrics` feature).
#[cfg(not(feature = "metrics"))]
type Facts = std::convert::Infallible;

/// The front of the stack: from the outside in, request metrics (feature `metrics`), request
/// id and trace context, the `request` span, security headers, catch panic — each one on or
/// off as [`Layers`](super::Layers) says.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrontLayer {
    /// Request metrics (only with feature `metrics`).
    pub(super) metrics: bool,
    /// The request-id layer: `Some(expose_internal_errors)`, or `None` for off.
    pub(super) request_id: Option<bool>,
    /// The `request` span and its response event.
    pub(super) trace: bool,
    /// Security headers: `Some(hsts)`, or `None` for off.
    pub(super) security_headers: Option<bool>,
    /// Catch panics of the inner service.
    pub(super) catch_panic: bool,
}

impl<S> Layer<S> for FrontLayer {
    type Service = FrontService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FrontService {
            inner,
            config: *self,
        }
    }
}

/// Service of [`FrontLayer`].
#[derive(Debug, Clone)]
pub(super) struct FrontService<S> {
    inner: S,
    config: FrontLayer,
}

impl<S, B> Service<http::Request<B>> for FrontService<S>
where
    S: Service<http::Request<B>, Response = Response>,
    B: http_body::Body,
{
    type Response = Response;
    type Error = S::Error;
    type Future = FrontFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let config = self.config;
        // One clock read for the metrics' duration and the response event's latency.
        let start = (config.trace || metrics_on(config)).then(Instant::now);
        let facts = request_facts(config, &req, start);
        let context = config
            .request_id
            .map(|expose_internal_errors| begin(&mut req, expose_internal_errors));
        let span = if config.trace {
            request_span(&req, context.as_ref())
        } else {
            tracing::Span::none()
        };
        let inner = &mut self.inner;
        // Inside the span (when it is enabled) and the request context, like the layers.
        let call = || {
            let call = || guarded_call(inner, req, config.catch_panic);
            if span.is_disabled() {
                call()
            } else {
                span.in_scope(call)
            }
        };
        let (inner, id) = match context {
            Some(context) => {
                let id = context.id.header_value().clone();
                // Errors rendered while the inner service is called carry the id, as do those
                // rendered while its future is polled (tokio swaps the context in and out on
                // each poll, without cloning it).
                let inner = REQUEST_CONTEXT.sync_scope(context.clone(), call);
                (
                    Either::Left(REQUEST_CONTEXT.scope(context, inner)),
                    Some(id),
                )
            }
            None => (Either::Right(call()), None),
        };
        FrontFuture {
            inner,
            span,
            trace_start: start.filter(|_| config.trace),
            security_headers: config.security_headers,
            id,
            facts,
        }
    }
}

/// Whether the front records request metrics.
fn metrics_on(config: FrontLayer) -> bool {
    cfg!(feature = "metrics") && config.metrics
}

/// The request's metrics facts, when metrics are on (`start` is then `Some`).
#[cfg(feature = "metrics")]
fn request_facts<B: http_body::Body>(
    config: FrontLayer,
    req: &http::Request<B>,
    start: Option<Instant>,
) -> Option<Facts> {
    match start {
        Some(start) if config.metrics => Some(Facts::new(req, start)),
        _ => None,
    }
}

/// Without the `metrics` feature there is nothing to record.
#[cfg(not(feature = "metrics"))]
fn request_facts<B>(
    _config: FrontLayer,
    _req: &http::Request<B>,
    _start: Option<Instant>,
) -> Option<Facts> {
    None
}

/// The inner future of the front: catch panic, inside the request context when there is one.
type FrontInner<F> =
    Either<TaskLocalFuture<RequestContext, CatchPanicFuture<F>>, CatchPanicFuture<F>>;

pin_project! {
    /// Future of [`FrontService`].
    pub(super) struct FrontFuture<F> {
        #[pin]
        inner: FrontInner<F>,
        span: tracing::Span,
        trace_start: Option<Instant>,
        security_headers: Option<bool>,
        id: Option<HeaderValue>,
        facts: Option<Facts>,
    }
}

impl<F, E> Future for FrontFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entered = (!this.span.is_disabled()).then(|| this.span.enter());
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        // What the layers did on the way out, from the inside out.
        if let Some(hsts) = *this.security_headers {
            add_security_headers(response.headers_mut(), hsts);
        }
        if let Some(start) = *this.trace_start {
            log_response(response.status(), start);
        }
        drop(entered);
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        #[cfg(feature = "metrics")]
        if let Some(facts) = this.facts.take() {
            response = facts.record(response);
        }
        Poll::Ready(Ok(response))
    }
}

/// The back of the stack: from the outside in, the request timeout, the declared body size
/// check, and the extensions `App` hands to extractors.
#[derive(Clone)]
pub(super) struct BackLayer<H> {
    /// Request timeout (504), or `None`.
    pub(super) timeout: Option<Duration>,
    /// Body limit checked against `Content-Length` (413), or `None`.
    pub(super) body_limit: Option<usize>,
    /// What goes into each request's extensions.
    pub(super) extensions: ExtensionsLayer<H>,
}

impl<S, H: Clone> Layer<S> for BackLayer<H> {
    type Service = BackService<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        BackService {
            inner,
            config: self.clone(),
        }
    }
}

/// Service of [`BackLayer`].
#[derive(Clone)]
pub(super) struct BackService<S, H> {
    inner: S,
    config: BackLayer<H>,
}

/// The back's future: the timeout around an early 413 or the inner future.
type BackFuture<F, E> = TimeoutFuture<Either<std::future::Ready<Result<Response, E>>, F>>;

impl<S, H, B> Service<http::Request<B>> for BackService<S, H>
where
    S: Service<http::Request<B>, Response = Response>,
    H: Clone + Send + Sync + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BackFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let deadline = deadline(self.config.timeout);
        if let Some(limit) = self.config.body_limit
            && let Some(response) = super::body_limit::admit(&mut req, limit)
        {
            return TimeoutFuture::new(Either::Left(std::future::ready(Ok(response))), deadline);
        }
        self.config.extensions.insert_into(&mut req);
        TimeoutFuture::new(Either::Right(self.inner.call(req)), deadline)
    }
}
