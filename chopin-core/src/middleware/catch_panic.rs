//! A panicking handler becomes a 500 envelope; the connection and the process live on.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ChopinError;

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
        guarded_call(&mut self.inner, req, self.enabled)
    }
}

/// Call `inner` with `req`, catching a panic of the call (and, through the returned future, of
/// its polls) when `catch` is set.
pub(super) fn guarded_call<S, R>(inner: &mut S, req: R, catch: bool) -> CatchPanicFuture<S::Future>
where
    S: Service<R>,
{
    if !catch {
        return CatchPanicFuture {
            inner: Some(inner.call(req)),
            payload: None,
            catch: false,
        };
    }
    match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))) {
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

fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    ChopinError::internal(format!("handler panicked: {message}")).into_response()
}
