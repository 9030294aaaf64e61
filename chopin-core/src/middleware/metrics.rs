//! Request metrics (feature `metrics`): duration, body sizes and requests in flight, per
//! method, route template and status.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::response::Response;
use bytes::Buf;
use http_body::{Body as _, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::{HttpSeries, global};

/// Records `http_server_request_duration_seconds`, `http_server_request_body_size_bytes`,
/// `http_server_response_body_size_bytes` and `http_server_active_requests` (see
/// [`crate::metrics`]). Routes are labelled by their template (`/posts/{id}`), never the
/// path; requests that match no route share `http_route=""`.
///
/// It must run after routing, as a `Router::layer` (where axum's `MatchedPath` is known):
/// [`Layers`](crate::layers::Layers) installs it outermost.
#[derive(Debug, Clone, Copy)]
pub struct HttpMetricsLayer {
    enabled: bool,
}

impl HttpMetricsLayer {
    /// The metrics layer.
    pub fn new() -> Self {
        Self { enabled: true }
    }

    /// Switched on or off (off: requests pass straight through).
    pub fn enabled(self, enabled: bool) -> Self {
        Self { enabled }
    }
}

impl Default for HttpMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            enabled: self.enabled,
        }
    }
}

/// Service of [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
    enabled: bool,
}

impl<S, B> Service<http::Request<B>> for HttpMetricsService<S>
where
    S: Service<http::Request<B>, Response = Response>,
    B: http_body::Body,
{
    type Response = Response;
    type Error = S::Error;
    type Future = HttpMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if !self.enabled {
            return HttpMetricsFuture {
                inner: self.inner.call(req),
                request: None,
            };
        }
        let request = RequestFacts::new(&req, Instant::now());
        HttpMetricsFuture {
            inner: self.inner.call(req),
            request: Some(request),
        }
    }
}

/// What the response is recorded against.
pub(super) struct RequestFacts {
    start: Instant,
    method: http::Method,
    route: Option<MatchedPath>,
    body_size: Option<u64>,
    _active: Active,
}

impl RequestFacts {
    /// The facts of `req`, which started at `start`; it counts as active until they are
    /// dropped.
    pub(super) fn new<B: http_body::Body>(req: &http::Request<B>, start: Instant) -> Self {
        RequestFacts {
            start,
            method: req.method().clone(),
            route: req.extensions().get::<MatchedPath>().cloned(),
            body_size: req.body().size_hint().exact(),
            _active: Active::enter(),
        }
    }

    /// Record `response` (duration, body sizes; a streamed body when it ends) and hand it back.
    pub(super) fn record(self, response: Response) -> Response {
        let route = self.route.as_ref().map_or("", MatchedPath::as_str);
        let series = global()
            .http
            .series(&self.method, route, response.status().as_u16());
        series.duration.observe(self.start.elapsed().as_secs_f64());
        if let Some(size) = self.body_size {
            series.request_size.observe(size as f64);
        }
        match response.body().size_hint().exact() {
            Some(size) => {
                series.response_size.observe(size as f64);
                response
            }
            // A streamed body: counted as it is sent, recorded when it ends.
            None => response.map(|body| {
                Body::new(CountedBody {
                    inner: body,
                    sent: 0,
                    series: Some(series),
                })
            }),
        }
    }
}

/// One request in `http_server_active_requests`, for as long as it lives (a cancelled request
/// leaves it too).
struct Active;

impl Active {
    fn enter() -> Self {
        global().http.active.inc();
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        global().http.active.dec();
    }
}

pin_project! {
    /// Future of [`HttpMetricsService`].
    pub struct HttpMetricsFuture<F> {
        #[pin]
        inner: F,
        request: Option<RequestFacts>,
    }
}

impl<F, E> Future for HttpMetricsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match (std::task::ready!(this.inner.poll(cx)), this.request.take()) {
            (Ok(response), Some(request)) => Poll::Ready(Ok(request.record(response))),
            (result, _) => Poll::Ready(result),
        }
    }
}

pin_project! {
    /// A response body of unknown length that records its size when it ends or is dropped.
    struct CountedBody {
        #[pin]
        inner: Body,
        sent: u64,
        series: Option<Arc<HttpSeries>>,
    }

    impl PinnedDrop for CountedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(series) = this.series.take() {
                series.response_size.observe(*this.sent as f64);
            }
        }
    }
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.sent += data.remaining() as u64;
                }
            }
            None => {
                if let Some(series) = this.series.take() {
                    series.response_size.observe(*this.sent as f64);
                }
            }
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
