//! 413 in the envelope for a request whose `Content-Length` exceeds the body limit.

use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::header;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::DEFAULT_BODY_LIMIT;
use crate::error::ChopinError;

pub use crate::extractors::body_limit::BodyLimit;

/// Rejects requests whose `Content-Length` exceeds the limit with a 413 envelope before the
/// handler runs. Bodies without a length (chunked) are limited while they are read, by
/// axum's `DefaultBodyLimit`, which [`Layers`](crate::layers::Layers) installs with the same value.
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
        if let Some(limit) = self.limit
            && let Some(response) = admit(&mut req, limit)
        {
            return futures_util::future::Either::Left(std::future::ready(Ok(response)));
        }
        futures_util::future::Either::Right(self.inner.call(req))
    }
}

/// Admit `req` under `limit`: the 413 envelope when its `Content-Length` says more; `None`
/// when it is admitted (the limit is then recorded on it for the extractors).
pub(super) fn admit<B>(req: &mut http::Request<B>, limit: usize) -> Option<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Some(ChopinError::PayloadTooLarge { limit }.into_response());
    }
    // Only a limit other than the default is recorded: the extractors read a missing
    // `BodyLimit` as the default, and an extension insert costs an allocation per request.
    if limit != DEFAULT_BODY_LIMIT {
        req.extensions_mut().insert(BodyLimit(limit));
    }
    None
}
