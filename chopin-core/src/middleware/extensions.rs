//! What [`App`](crate::App) hands to extractors (page-size limits, the auth handle), put into
//! each request's extensions.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::extractors::PaginationConfig;

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
    pub(super) fn has_auth(&self) -> bool {
        self.auth.is_some()
    }

    #[cfg(not(feature = "auth"))]
    pub(super) fn has_auth(&self) -> bool {
        false
    }
}

/// Inserts [`RequestExtensions`] into each request.
#[derive(Clone)]
pub(super) struct ExtensionsLayer {
    pub(super) pagination: Option<PaginationConfig>,
    #[cfg(feature = "auth")]
    pub(super) auth: Option<crate::auth::Auth>,
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
pub(super) struct ExtensionsService<S> {
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
