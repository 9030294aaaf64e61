//! [`ETagLayer`]: a strong `ETag` from the body of every successful `GET` / `HEAD`, and
//! `304 Not Modified` for a matching `If-None-Match` (docs on `crate::cache::http`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header;
use http::{HeaderValue, Method, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use http_body_util::combinators::Collect;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::cache::http::headers::{add_vary, has_credentials};
use crate::cache::http::{body_etag, if_none_match_matches, into_not_modified};
use crate::error::{BoxError, ChopinError};

/// Default largest body [`ETagLayer`] hashes: 8 MiB.
pub const DEFAULT_ETAG_MAX_SIZE: u64 = 8 * 1024 * 1024;

/// Layer that tags successful `GET` / `HEAD` responses with a strong `ETag` computed from
/// their body, sets `Cache-Control`, and answers `If-None-Match` with `304 Not Modified`.
///
/// A response is tagged when all of these hold:
///
/// * the request is `GET` or `HEAD` and the status is `200`;
/// * the response has no `ETag` yet (a handler's own validator always wins);
/// * its body size is known exactly (a buffered body — every Chopin responder, `String`,
///   `Vec<u8>`, `Bytes`), at most [`max_size`](Self::max_size) bytes, and agrees with any
///   `Content-Length`. Streaming bodies pass through untouched.
///
/// Then the layer
///
/// * sets `ETag: "<xxh3-128 of the body as 32 hex digits>"`;
/// * sets `Cache-Control`, unless the response already has one: [`cache_control`](Self::cache_control)
///   (default `no-cache`: caches may store the response but must revalidate, which the `ETag`
///   makes a cheap `304`) — or, when the request carries `Authorization` or `Cookie`,
///   [`private_cache_control`](Self::private_cache_control) (default `private, no-cache`), so a
///   shared cache never keeps a response computed for one user;
/// * adds `Vary: Accept-Encoding` (see [`vary_accept_encoding`](Self::vary_accept_encoding));
/// * when `If-None-Match` lists the tag (weak comparison, so `W/"…"` matches too) or is `*`,
///   answers `304 Not Modified` with no body, keeping `ETag`, `Cache-Control`, `Vary` and the
///   other non-body headers and dropping `Content-Length`, `Content-Type` and
///   `Content-Encoding`.
///
/// Install it inside compression (see the [module docs]). For `HEAD` it works when
/// installed with `Router::layer` / `MethodRouter::layer`, where axum strips the body only
/// after the layer ran; outside the router a `HEAD` response has no body to hash and is left
/// alone.
///
/// [module docs]: crate::cache::http
#[derive(Debug, Clone)]
pub struct ETagLayer {
    cache_control: Option<HeaderValue>,
    private_cache_control: Option<HeaderValue>,
    vary_accept_encoding: bool,
    max_size: u64,
}

impl Default for ETagLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ETagLayer {
    /// The defaults: `Cache-Control: no-cache` (`private, no-cache` for requests with
    /// credentials), `Vary: Accept-Encoding`, bodies up to 8 MiB.
    pub fn new() -> Self {
        Self {
            cache_control: Some(HeaderValue::from_static("no-cache")),
            private_cache_control: Some(HeaderValue::from_static("private, no-cache")),
            vary_accept_encoding: true,
            max_size: DEFAULT_ETAG_MAX_SIZE,
        }
    }

    /// `Cache-Control` for responses to requests without credentials, e.g.
    /// `public, max-age=60`. Responses that set their own `Cache-Control` keep it.
    pub fn cache_control(mut self, value: HeaderValue) -> Self {
        self.cache_control = Some(value);
        self
    }

    /// `Cache-Control` for responses to requests that carry `Authorization` or `Cookie`
    /// (default `private, no-cache`). Keep it `private` unless every user gets the same bytes.
    pub fn private_cache_control(mut self, value: HeaderValue) -> Self {
        self.private_cache_control = Some(value);
        self
    }

    /// Do not set `Cache-Control` at all (for either kind of request).
    pub fn without_cache_control(mut self) -> Self {
        self.cache_control = None;
        self.private_cache_control = None;
        self
    }

    /// Add `Vary: Accept-Encoding` to tagged responses and their `304`s (default `true`). Keep
    /// it on whenever a compression layer sits outside: a `304` must carry the `Vary` its `200`
    /// would have, and compression does not add it to bodiless responses.
    pub fn vary_accept_encoding(mut self, on: bool) -> Self {
        self.vary_accept_encoding = on;
        self
    }

    /// Largest body, in bytes, that is hashed (default 8 MiB); larger ones pass untagged.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }
}

impl<S> Layer<S> for ETagLayer {
    type Service = ETagService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ETagService {
            inner,
            config: self.clone(),
        }
    }
}

/// Service of [`ETagLayer`].
#[derive(Debug, Clone)]
pub struct ETagService<S> {
    inner: S,
    config: ETagLayer,
}

/// What [`ETagFuture`] needs to know about the request.
#[derive(Debug)]
struct ConditionalRequest {
    if_none_match: Vec<HeaderValue>,
    credentials: bool,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ETagService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ETagFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let request = (req.method() == Method::GET || req.method() == Method::HEAD).then(|| {
            ConditionalRequest {
                if_none_match: req
                    .headers()
                    .get_all(header::IF_NONE_MATCH)
                    .iter()
                    .cloned()
                    .collect(),
                credentials: has_credentials(req.headers()),
            }
        });
        ETagFuture {
            state: ETagState::Inner {
                future: self.inner.call(req),
            },
            request,
            config: self.config.clone(),
        }
    }
}

pin_project! {
    /// Future of [`ETagService`].
    pub struct ETagFuture<F, B>
    where
        B: HttpBody,
    {
        #[pin]
        state: ETagState<F, B>,
        request: Option<ConditionalRequest>,
        config: ETagLayer,
    }
}

pin_project! {
    #[project = ETagStateProj]
    enum ETagState<F, B>
    where
        B: HttpBody,
    {
        Inner { #[pin] future: F },
        Buffering { #[pin] collect: Collect<B>, parts: Option<http::response::Parts> },
    }
}

impl ETagLayer {
    /// Should this response be tagged?
    fn wants<B: HttpBody>(&self, response: &http::Response<B>) -> bool {
        if response.status() != StatusCode::OK || response.headers().contains_key(header::ETAG) {
            return false;
        }
        let Some(size) = response.body().size_hint().exact() else {
            return false;
        };
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
        size <= self.max_size && declared.is_none_or(|d| d == Some(size))
    }

    /// Tag a buffered body; a `304` when the condition matches.
    fn finish(
        &self,
        request: &ConditionalRequest,
        mut parts: http::response::Parts,
        collected: http_body_util::Collected<Bytes>,
    ) -> Response {
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes();
        let tag = body_etag(&body);
        // `"` and hex digits: always a valid header value.
        if let Ok(value) = HeaderValue::from_bytes(&tag) {
            parts.headers.insert(header::ETAG, value);
        }
        if !parts.headers.contains_key(header::CACHE_CONTROL) {
            let value = if request.credentials {
                &self.private_cache_control
            } else {
                &self.cache_control
            };
            if let Some(value) = value {
                parts.headers.insert(header::CACHE_CONTROL, value.clone());
            }
        }
        if self.vary_accept_encoding {
            add_vary(&mut parts.headers, &header::ACCEPT_ENCODING);
        }
        if if_none_match_matches(&request.if_none_match, &tag[1..33]) == Some(true) {
            return into_not_modified(parts);
        }
        let body = match trailers {
            None => Body::from(body),
            Some(trailers) => {
                let trailers = std::future::ready(Some(Ok::<_, Infallible>(trailers)));
                Body::new(http_body_util::Full::new(body).with_trailers(trailers))
            }
        };
        Response::from_parts(parts, body)
    }
}

impl<F, B, E> Future for ETagFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ETagStateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    if this.request.is_none() || !this.config.wants(&response) {
                        return Poll::Ready(Ok(response.map(Body::new)));
                    }
                    let (parts, body) = response.into_parts();
                    this.state.set(ETagState::Buffering {
                        collect: body.collect(),
                        parts: Some(parts),
                    });
                }
                ETagStateProj::Buffering { collect, parts } => {
                    let collected = ready!(collect.poll(cx));
                    let (Some(parts), Some(request)) = (parts.take(), this.request.as_ref()) else {
                        return Poll::Ready(Ok(ChopinError::internal(
                            "ETagFuture polled after completion",
                        )
                        .into_response()));
                    };
                    let response = match collected {
                        Ok(collected) => this.config.finish(request, parts, collected),
                        Err(e) => ChopinError::internal(format!(
                            "reading the response body failed: {}",
                            e.into()
                        ))
                        .into_response(),
                    };
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}
