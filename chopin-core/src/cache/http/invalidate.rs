//! [`ResponseCache`]: dropping stored responses from write handlers, by path prefix, tag or
//! route.

use super::keys::{KEY_PREFIX, path_tags};
use crate::cache::{Cache, CacheError};

/// Explicit invalidation of the responses stored by
/// [`ResponseCacheLayer`](crate::cache::http::ResponseCacheLayer), for write handlers.
///
/// ```
/// use chopin_core::cache::Cache;
/// use chopin_core::cache::http::ResponseCache;
/// use chopin_core::prelude::*;
///
/// async fn create_post(cache: Cache) -> Result<ApiResponse<&'static str>, ChopinError> {
///     // … insert the post …
///     // A failed invalidation is worth knowing about: stale lists would be served until the
///     // TTL runs out.
///     if let Err(e) = ResponseCache::invalidate_path_prefix(&cache, "/api/posts").await {
///         tracing::warn!(error = %e, "could not invalidate cached post lists");
///     }
///     Ok(ApiResponse::created("ok"))
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ResponseCache;

impl ResponseCache {
    /// Drop every stored response whose path is `prefix` or lies below it, whatever its query,
    /// user or route tag: `"/api/posts"` drops `/api/posts`, `/api/posts?page=2` and
    /// `/api/posts/7`, not `/api/postscript`. Matching is by whole path segments (trailing
    /// `/` ignored); below 8 segments deep, the first 8 decide. `"/"` (or `""`) drops every
    /// stored response.
    pub async fn invalidate_path_prefix(cache: &Cache, prefix: &str) -> Result<(), CacheError> {
        match path_tags(prefix).pop() {
            Some(tag) => cache.delete_tag(&tag).await,
            None => cache.delete_prefix(KEY_PREFIX).await,
        }
    }

    /// Drop every stored response tagged `tag` with
    /// [`ResponseCacheLayer::tag`](crate::cache::http::ResponseCacheLayer::tag) (the same as
    /// [`Cache::delete_tag`]).
    pub async fn invalidate_tag(cache: &Cache, tag: &str) -> Result<(), CacheError> {
        cache.delete_tag(tag).await
    }

    /// Drop every response stored by layers created with this `route` tag.
    pub async fn invalidate_route(cache: &Cache, route: &str) -> Result<(), CacheError> {
        cache.delete_prefix(&format!("{KEY_PREFIX}{route}:")).await
    }
}
