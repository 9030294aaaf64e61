//! What [`App`](crate::App) hands to extractors (page-size limits, the cursor key, the auth
//! handle), put into
//! each request's extensions.
//!
//! The handle's type is a parameter (`App` passes `Auth`), so the middleware floor never names
//! the auth module above it; each stack is monomorphised, so inserting it costs the same.

use crate::extractors::{CursorKey, NoCursorKey, PaginationConfig};

/// What [`App`](crate::App) puts into every request for its extractors. `H` is the handle
/// `AuthUser` verifies tokens with (`()` when there is none).
pub(crate) struct RequestExtensions<H = ()> {
    /// Page-size limits for `Pagination`.
    pub(crate) pagination: Option<PaginationConfig>,
    /// The key `CursorPagination` verifies and signs cursors with.
    pub(crate) cursor: Option<CursorKey>,
    /// The app has no cursor key: `CursorPagination` must not fall back to the process's
    /// default key.
    pub(crate) no_cursor: bool,
    /// The handle `AuthUser` verifies tokens with.
    pub(crate) handle: Option<H>,
}

impl Default for RequestExtensions<()> {
    fn default() -> Self {
        Self {
            pagination: None,
            cursor: None,
            no_cursor: false,
            handle: None,
        }
    }
}

/// Inserts [`RequestExtensions`] into each request (the back of the fused stack does it).
#[derive(Clone)]
pub(super) struct ExtensionsLayer<H> {
    pub(super) pagination: Option<PaginationConfig>,
    pub(super) cursor: Option<CursorKey>,
    pub(super) no_cursor: bool,
    pub(super) handle: Option<H>,
}

impl<H: Clone + Send + Sync + 'static> ExtensionsLayer<H> {
    /// Put what is set into `req`'s extensions.
    pub(super) fn insert_into<B>(&self, req: &mut http::Request<B>) {
        if let Some(pagination) = self.pagination {
            req.extensions_mut().insert(pagination);
        }
        if let Some(cursor) = &self.cursor {
            req.extensions_mut().insert(cursor.clone());
        }
        if self.no_cursor {
            req.extensions_mut().insert(NoCursorKey);
        }
        if let Some(handle) = &self.handle {
            req.extensions_mut().insert(handle.clone());
        }
    }
}

impl<S, H: Clone> tower_layer::Layer<S> for ExtensionsLayer<H> {
    type Service = ExtensionsService<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        ExtensionsService {
            inner,
            extensions: self.clone(),
        }
    }
}

/// Service of [`ExtensionsLayer`] on its own, for a stack with no other layer: it inserts
/// the extensions and hands back the inner service's future unchanged.
#[derive(Clone)]
pub(super) struct ExtensionsService<S, H> {
    inner: S,
    extensions: ExtensionsLayer<H>,
}

impl<S, H, B> tower_service::Service<http::Request<B>> for ExtensionsService<S, H>
where
    S: tower_service::Service<http::Request<B>>,
    H: Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        self.extensions.insert_into(&mut req);
        self.inner.call(req)
    }
}
