//! The request id and the W3C trace context: keep a sane incoming `x-request-id` or make one,
//! join the caller's trace from `traceparent` or start one, and run the rest of the request
//! inside Chopin's request context (which error rendering reads).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::Either;
use http::HeaderValue;
use http::header::HeaderName;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::{Ids, REQUEST_CONTEXT, RequestContext, RequestId, TRACEPARENT, TraceContext};

/// The request-id header, `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id that is propagated as is.
const MAX_REQUEST_ID_LEN: usize = 128;

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

/// The header value of a new request id: the UUID, lowercase and hyphenated, in one shared
/// buffer. `Bytes::from_owner` makes the one allocation, and the clones the id needs (the
/// request's header, the `RequestId` extension, the request context, the response's header)
/// share it; `HeaderValue::from_str` would copy the text into a buffer that the first clone
/// then has to promote with a second allocation.
fn request_id_value(id: uuid::Uuid) -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_maybe_shared(Bytes::from_owner(buf))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The request's `traceparent`: its one value, or `None` when there is none or more than one
/// (W3C: treat several as invalid).
fn traceparent<B>(req: &http::Request<B>) -> Option<&[u8]> {
    let mut values = req.headers().get_all(&TRACEPARENT).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value.as_bytes()),
        _ => None,
    }
}

/// What the request-id layer does before the request goes on: keep its sane `x-request-id` or
/// write a new one on it, insert the [`RequestId`] extension, and make the request context
/// with the trace context (joined from `traceparent` or new). The random ids come from one
/// draw. Returns the context; its id is the one to echo on the response.
pub(super) fn begin<B>(req: &mut http::Request<B>, expose_internal_errors: bool) -> RequestContext {
    let ids = Ids::random();
    let incoming = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(sanitize_request_id);
    let id = match incoming {
        // Already the request's header: nothing to write.
        Some(id) => id,
        None => {
            let id = request_id_value(ids.request_id());
            req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    let trace = TraceContext::with_ids(traceparent(req), &ids);
    req.extensions_mut().insert(RequestId(id.clone()));
    RequestContext {
        id: RequestId(id),
        trace,
        expose_internal_errors,
    }
}

/// Layer that gives every request an id and a trace context, and runs it inside Chopin's
/// request context.
///
/// An incoming `x-request-id` made of at most 128 characters from `[A-Za-z0-9._:-]` is kept;
/// anything else is replaced by a new UUID v4. The id is set on the request (header and
/// [`RequestId`] extension), echoed on the response, and included in every error body.
///
/// A valid W3C `traceparent` header joins the caller's trace; without one the request starts a
/// new trace. The [`TraceContext`] is part of the request context (handlers take it as an
/// extractor), the trace layer records its trace id on the `request` span, and 5xx error logs
/// carry it. No header is added to the response.
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
                inner: Either::Right(self.inner.call(req)),
                id: None,
            };
        }
        let context = begin(&mut req, self.expose_internal_errors);
        let id = context.id.header_value().clone();
        // Errors rendered while the inner service is called (a 413 for a declared body size,
        // a 429) and while its future is polled carry the id: the call runs inside the scope,
        // and the future is wrapped in it (tokio swaps the context in and out on each poll,
        // without cloning it).
        let inner = REQUEST_CONTEXT.sync_scope(context.clone(), || self.inner.call(req));
        RequestIdFuture {
            inner: Either::Left(REQUEST_CONTEXT.scope(context, inner)),
            id: Some(id),
        }
    }
}

pin_project! {
    /// Future of [`RequestIdService`].
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: Either<TaskLocalFuture<RequestContext, F>, F>,
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
        let generated = request_id_value(Ids::random().request_id());
        assert_eq!(generated.len(), 36);
        assert!(sanitize_request_id(&generated).is_some());
        let parsed = uuid::Uuid::parse_str(generated.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(
            generated.to_str().unwrap(),
            generated.to_str().unwrap().to_lowercase()
        );
    }
}
