//! Response compression (tower-http's) that answers with axum's `Response` and costs nothing
//! when the client asked for none.

use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::HeaderValue;
use http::header;
use tower_layer::Layer;
use tower_service::Service;

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
