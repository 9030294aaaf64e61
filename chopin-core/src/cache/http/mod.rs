//! HTTP caching: entity tags and conditional `GET` ([`ETagLayer`], [`IfNoneMatch`],
//! [`EntityTag`]), and a shared server-side response cache ([`ResponseCacheLayer`]) stored in a
//! [`Cache`].
//!
//! # ETags and `304 Not Modified`
//!
//! [`ETagLayer`] hashes the body of every successful (`200`) `GET` / `HEAD` response whose
//! body is already in memory (its size is known exactly), sets a strong
//! `ETag: "<32 hex digits>"` (xxh3-128 of the body) and a `Cache-Control` header, and answers
//! a matching `If-None-Match` with `304 Not Modified` and no body. Streaming bodies, other
//! statuses and methods, and responses that already carry an `ETag` pass through untouched.
//!
//! ```
//! use axum::{Router, routing::get};
//! use chopin_core::cache::http::ETagLayer;
//! use http::HeaderValue;
//!
//! let router: Router = Router::new()
//!     .route("/posts", get(|| async { "[]" }))
//!     .layer(ETagLayer::new().cache_control(HeaderValue::from_static("public, max-age=60")));
//! ```
//!
//! A handler that can name its version without rendering the body (an `updated_at`, a row
//! version) can answer the condition itself with the [`IfNoneMatch`] extractor:
//!
//! ```
//! use axum::response::Response;
//! use chopin_core::cache::http::{EntityTag, IfNoneMatch};
//! use chopin_core::prelude::*;
//!
//! async fn show(if_none_match: IfNoneMatch) -> Result<Response, ChopinError> {
//!     let version = 42; // e.g. the row's version column: cheap to read
//!     let etag = EntityTag::strong(format!("post-7-v{version}")).map_err(ChopinError::internal)?;
//!     // The closure (the expensive part) only runs when the client's copy is stale.
//!     Ok(if_none_match.respond(etag, || ApiResponse::success("post 7")))
//! }
//! ```
//!
//! **Ordering with compression.** Install the `ETagLayer` *inside* the compression layer (on
//! your router, before [`App`](crate::App) or [`Layers`](crate::layers::Layers) adds
//! compression outside it): the tag is then computed on the uncompressed body, so every
//! content coding of one body shares one tag and a `304` is cheap. The layer adds
//! `Vary: Accept-Encoding` to the `200` and to the `304` (compression only adds it to
//! responses it compresses, never to a bodiless `304`). Installed *outside* compression the
//! layer sees a compressed stream of unknown length and leaves the response alone — no tag,
//! but nothing wrong either.
//!
//! # The shared response cache
//!
//! [`ResponseCacheLayer`] stores whole `GET` responses (status, the headers that describe the
//! body, and the body) in a [`Cache`] — in process (moka) or shared across instances (Redis)
//! — and serves later requests for the same URL from it, marked `x-cache: hit`. See
//! [`ResponseCacheLayer`] for keys, what is stored and what never is, and [`ResponseCache`] for
//! invalidation from write handlers.
//!
//! ## Stored format
//!
//! Entries are raw bytes in a small binary format (no JSON, no base64), all integers
//! big-endian:
//!
//! * response: `b"CHR1"`, `0x00`, status (`u16`), header count (`u16`), then per header its
//!   name length (`u8`), name, value length (`u16`), value; then the body to the end;
//! * vary manifest: `b"CHR1"`, `0x01`, name count (`u8`), then per name its length (`u8`)
//!   and the lower-case name.
//!
//! An entry that does not decode is treated as a miss (and overwritten on the next store).
//!
//! [`Cache`]: crate::cache::Cache

// Where the code lives: the two layers are middleware (`src/middleware/etag.rs`,
// `src/middleware/response_cache.rs`); what they share with handlers and with invalidation lives
// here: entity tags (`entity_tag.rs`), the `If-None-Match` extractor (`conditional.rs`), the
// caching headers (`headers.rs`), the keys and tags (`keys.rs`), the stored format (`stored.rs`)
// and `ResponseCache` (`invalidate.rs`).

mod conditional;
mod entity_tag;
pub(crate) mod headers;
mod invalidate;
pub(crate) mod keys;
pub(crate) mod stored;

pub use crate::middleware::{
    DEFAULT_CACHE_TIMEOUT, DEFAULT_ETAG_MAX_SIZE, DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_VARIANTS,
    DEFAULT_RESPONSE_TTL, ETagFuture, ETagLayer, ETagService, ResponseCacheFuture,
    ResponseCacheLayer, ResponseCacheService, X_CACHE,
};
pub(crate) use conditional::into_not_modified;
pub use conditional::{IfNoneMatch, not_modified};
pub use entity_tag::{EntityTag, InvalidEntityTag};
pub(crate) use entity_tag::{body_etag, if_none_match_matches};
pub use invalidate::ResponseCache;
