//! The success envelope: [`ApiResponse`].
//!
//! ```json
//! {"success":true,"data":{"id":1,"title":"Hello"}}
//! {"success":true,"data":[…],"meta":{"limit":20,"offset":0,"total":123}}
//! {"success":true,"data":[…],"meta":{"limit":20,"next_cursor":"…"}}
//! ```

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ChopinError;
use crate::extractors::{CursorPagination, Pagination};
use crate::json;

/// Pagination metadata of a list response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PageMeta {
    /// Page size used for this response.
    pub limit: u64,
    /// Number of items skipped before this page (offset pages; absent on cursor pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Total number of items, present only when the handler counted them (a `COUNT` costs a
    /// query, so it is opt-in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Opaque cursor of the next page (pass it back as `?cursor=`), absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl PageMeta {
    /// Metadata for an offset page, with an optional total count.
    pub fn new(pagination: &Pagination, total: Option<u64>) -> Self {
        Self {
            limit: pagination.limit,
            offset: Some(pagination.offset),
            total,
            next_cursor: None,
        }
    }

    /// Metadata for a cursor page: its size and the next page's cursor (`None` on the last).
    pub fn cursor(limit: u64, next_cursor: Option<String>) -> Self {
        Self {
            limit,
            offset: None,
            total: None,
            next_cursor,
        }
    }
}

/// A successful JSON response in Chopin's envelope, serialised with sonic-rs straight into the
/// response buffer.
///
/// ```
/// use chopin_core::prelude::*;
///
/// #[derive(serde::Serialize)]
/// struct Post { id: u64, title: String }
///
/// async fn show() -> ApiResponse<Post> {
///     ApiResponse::success(Post { id: 1, title: "Hello".into() })
/// }
///
/// async fn create() -> ApiResponse<Post> {
///     ApiResponse::created(Post { id: 2, title: "New".into() })
/// }
///
/// async fn list(page: Pagination) -> ApiResponse<Vec<Post>> {
///     let posts = vec![Post { id: 1, title: "Hello".into() }];
///     ApiResponse::paginated(posts, &page, Some(1))
/// }
/// ```
///
/// In `#[utoipa::path]` responses, write `body = ApiResponse<Post>`: the schema is the
/// envelope around `Post`.
#[derive(Debug, Clone, ToSchema)]
#[schema(
    description = "Success envelope: `success` is always true; `meta` is present on paginated lists only."
)]
#[must_use]
pub struct ApiResponse<T> {
    /// Always `true`.
    #[allow(dead_code)]
    // Documents the wire field in the derived schema; written as a constant.
    success: bool,
    /// The payload.
    data: T,
    /// Pagination metadata; present on paginated lists only.
    #[schema(nullable = false)]
    meta: Option<PageMeta>,
    #[schema(ignore)]
    status: StatusCode,
}

impl<T> ApiResponse<T> {
    /// `200 OK` with `data`.
    pub fn success(data: T) -> Self {
        Self {
            success: true,
            status: StatusCode::OK,
            data,
            meta: None,
        }
    }

    /// `201 Created` with `data`.
    pub fn created(data: T) -> Self {
        Self {
            success: true,
            status: StatusCode::CREATED,
            data,
            meta: None,
        }
    }

    /// Replace the status (it must be a success status; anything else is sent as 500).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Attach pagination metadata.
    pub fn with_meta(mut self, meta: PageMeta) -> Self {
        self.meta = Some(meta);
        self
    }

    /// The wrapped data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The HTTP status this response will be sent with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl<T> ApiResponse<Vec<T>> {
    /// `200 OK` with a page of items and `meta` (`limit`, `offset` and, when given, `total`).
    pub fn paginated(items: Vec<T>, pagination: &Pagination, total: Option<u64>) -> Self {
        Self::success(items).with_meta(PageMeta::new(pagination, total))
    }

    /// `200 OK` with a keyset page: `rows` fetched with
    /// [`page.fetch_limit()`](CursorPagination::fetch_limit) rows (one more than the page), cut
    /// to the page, and `meta` with `limit` and, unless this is the last page, `next_cursor` —
    /// the signed cursor of the last item's sort key, `key_of(item)`.
    pub fn cursor_paginated<K: Serialize>(
        rows: Vec<T>,
        page: &CursorPagination<K>,
        key_of: impl Fn(&T) -> K,
    ) -> Result<Self, ChopinError> {
        let (items, next) = page.finish(rows, key_of)?;
        Ok(Self::success(items).with_meta(PageMeta::cursor(page.limit, next)))
    }
}

impl ApiResponse<()> {
    /// `204 No Content`, with an empty body.
    pub fn no_content() -> Self {
        Self {
            success: true,
            status: StatusCode::NO_CONTENT,
            data: (),
            meta: None,
        }
    }
}

/// The text `{"success":true,"data":`, written here once; the constants below are built from it.
macro_rules! success_prefix {
    () => {
        r#"{"success":true,"data":"#
    };
}

/// The start of every success envelope, `{"success":true,"data":`. The responders that write
/// the envelope straight into their buffer begin with it: [`ApiResponse`] here, and the
/// pass-through [`JsonRows`](crate::passthrough::JsonRows) and `JsonStream`.
pub(crate) const SUCCESS_PREFIX: &[u8] = success_prefix!().as_bytes();

/// [`SUCCESS_PREFIX`] and the `[` that opens a list: `{"success":true,"data":[`.
pub(crate) const SUCCESS_LIST_PREFIX: &[u8] = concat!(success_prefix!(), "[").as_bytes();

impl<T: Serialize> IntoResponse for ApiResponse<T> {
    fn into_response(self) -> Response {
        if !self.status.is_success() {
            return ChopinError::internal(format!(
                "ApiResponse built with non-success status {}",
                self.status
            ))
            .into_response();
        }
        if self.status == StatusCode::NO_CONTENT {
            return self.status.into_response();
        }
        let mut buf = Vec::with_capacity(json::DEFAULT_BUFFER_CAPACITY);
        buf.extend_from_slice(SUCCESS_PREFIX);
        if let Err(err) = json::write_to(&mut buf, &self.data) {
            return ChopinError::internal(err).into_response();
        }
        if let Some(meta) = &self.meta {
            buf.extend_from_slice(br#","meta":"#);
            if let Err(err) = json::write_to(&mut buf, meta) {
                return ChopinError::internal(err).into_response();
            }
        }
        buf.push(b'}');
        json::response(self.status, buf)
    }
}
