//! Request extractors (and the `Json` responder).
//!
//! Each extractor is an ordinary axum extractor: it can be used in any axum application, with
//! or without the rest of Chopin. Every rejection is a [`ChopinError`](crate::ChopinError) and
//! renders in the standard error envelope.

pub(crate) mod body_limit;
mod cursor;
pub(crate) mod json;
mod pagination;
mod path_query;
mod valid;

pub use crate::config::pagination::{LimitOverflow, PaginationConfig};
pub(crate) use cursor::NoCursorKey;
pub use cursor::{CURSOR_PURPOSE, CursorKey, CursorPagination, CursorParameter};
pub use json::Json;
pub use pagination::Pagination;
pub use path_query::{Path, Query};
pub use valid::ValidJson;
