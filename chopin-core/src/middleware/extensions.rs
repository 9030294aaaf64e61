//! What [`App`](crate::App) hands to extractors (page-size limits, the cursor key, the auth
//! handle), put into
//! each request's extensions.
//!
//! The handle's type is a parameter (`App` passes `Auth`), so the middleware floor never names
//! the auth module above it; each stack is monomorphised, so inserting it costs the same.

use crate::extractors::{CursorKey, PaginationConfig};

/// What [`App`](crate::App) puts into every request for its extractors. `H` is the handle
/// `AuthUser` verifies tokens with (`()` when there is none).
pub(crate) struct RequestExtensions<H = ()> {
    /// Page-size limits for `Pagination`.
    pub(crate) pagination: Option<PaginationConfig>,
    /// The key `CursorPagination` verifies and signs cursors with.
    pub(crate) cursor: Option<CursorKey>,
    /// The handle `AuthUser` verifies tokens with.
    pub(crate) handle: Option<H>,
}

impl Default for RequestExtensions<()> {
    fn default() -> Self {
        Self {
            pagination: None,
            cursor: None,
            handle: None,
        }
    }
}

/// Inserts [`RequestExtensions`] into each request (the back of the fused stack does it).
#[derive(Clone)]
pub(super) struct ExtensionsLayer<H> {
    pub(super) pagination: Option<PaginationConfig>,
    pub(super) cursor: Option<CursorKey>,
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
        if let Some(handle) = &self.handle {
            req.extensions_mut().insert(handle.clone());
        }
    }
}
