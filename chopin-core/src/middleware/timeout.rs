//! 504 in the envelope when the inner service takes longer than the request timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ChopinError;

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
        let deadline = deadline(self.timeout);
        TimeoutFuture::new(self.inner.call(req), deadline)
    }
}

/// The deadline of a request that starts now under `timeout`. Only the deadline: the timer is
/// made when the inner future first waits, so a handler that answers at once never touches
/// the timer wheel. A timeout too large for the clock means no deadline.
pub(super) fn deadline(timeout: Option<Duration>) -> Option<tokio::time::Instant> {
    timeout.and_then(|timeout| tokio::time::Instant::now().checked_add(timeout))
}

pin_project! {
    /// Future of [`TimeoutService`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        deadline: Option<tokio::time::Instant>,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl<F> TimeoutFuture<F> {
    /// `inner`, answered with a 504 if it has not finished by `deadline` (`None`: never).
    pub(super) fn new(inner: F, deadline: Option<tokio::time::Instant>) -> Self {
        TimeoutFuture {
            inner,
            deadline,
            sleep: None,
        }
    }
}

impl<F, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        if let (None, Some(deadline)) = (this.sleep.as_ref().as_pin_ref(), *this.deadline) {
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Ok(ChopinError::Timeout.into_response())),
            Some(Poll::Pending) | None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_timeout_too_large_for_the_clock_means_no_deadline() {
        let service = TimeoutLayer::new(Duration::MAX).layer(tower::service_fn(
            |_req: http::Request<()>| async {
                tokio::task::yield_now().await;
                Ok::<_, Infallible>(Response::new(axum::body::Body::from("ok")))
            },
        ));
        let response = service.oneshot(http::Request::new(())).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
    }
}
