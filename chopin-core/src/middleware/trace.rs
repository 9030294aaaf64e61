//! The `request` span around each request and one log event per response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RequestContext;

/// Opens a `request` span (method, path, matched route, request id, trace id) around each
/// request and logs one event per response: status and latency, at `INFO`, or `ERROR` for a
/// 5xx. With feature `otel`, the span joins the request's [`TraceContext`](crate::TraceContext) (see
/// [`telemetry`](crate::telemetry)), so an OpenTelemetry layer exports it in the caller's trace.
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
        // The request context (id, trace context) is the request-id layer's, outside this one.
        let span = crate::context::REQUEST_CONTEXT
            .try_with(|context| request_span(&req, Some(context)))
            .unwrap_or_else(|_| request_span(&req, None));
        let inner = if span.is_disabled() {
            self.inner.call(req)
        } else {
            span.in_scope(|| self.inner.call(req))
        };
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
        let _entered = (!this.span.is_disabled()).then(|| this.span.enter());
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(start)) = (&result, this.start) {
            log_response(response.status(), *start);
        }
        Poll::Ready(result)
    }
}

/// The one log event per response: status and latency, at `INFO`, or `ERROR` for a 5xx. The
/// latency (a clock read) is computed only when the event is enabled: the macros evaluate
/// their fields after the level check.
pub(super) fn log_response(status: http::StatusCode, start: Instant) {
    let status = status.as_u16();
    if status >= 500 {
        tracing::error!(status, latency_us = micros_since(start), "response");
    } else {
        tracing::info!(status, latency_us = micros_since(start), "response");
    }
}

/// Microseconds since `start`.
fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The `request` span of a request whose request context is `context` (`None` without the
/// request-id layer). With `INFO` off the macro hands back a disabled span without evaluating
/// its fields (no extension lookup, no formatting). With feature `otel`, an enabled span joins
/// the request's [`TraceContext`](crate::TraceContext).
pub(super) fn request_span<B>(
    req: &http::Request<B>,
    context: Option<&RequestContext>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        route = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or(""),
        request_id = context.map_or("", |c| c.id()),
        trace_id = context.map(|c| tracing::field::display(c.trace.trace_id())),
    );
    #[cfg(feature = "otel")]
    if !span.is_disabled()
        && let Some(context) = context
    {
        crate::telemetry::otel::join(&span, &context.trace);
    }
    span
}
