//! The HTTP API under `/api`: handlers, request bodies and response views.
//!
//! Every route is declared with `#[utoipa::path]` and registered with
//! [`routes!`](chopin_core::openapi::routes), so the router and the OpenAPI spec come from the
//! same declarations.
//!
//! Each `responses(…)` lists what its handler decides (201, 403, 404, 409, an invalid id or
//! filter); the errors the framework answers by itself (malformed JSON, a missing token, a
//! wrong content type, invalid fields, rate limits, timeouts, …) are added to every operation
//! they can happen to by [`chopin_core::openapi::add_error_responses`].

use chopin_core::openapi::{OpenApiRouter, routes};
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::Serializer;

use crate::AppState;

pub mod comments;
pub mod passthrough;
pub mod posts;
pub mod stream;
pub mod visibility;

/// All API routes, nested under `/api`.
pub fn router() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(posts::list_posts, posts::create_post))
        .routes(routes!(stream::stream_posts))
        .routes(routes!(
            posts::get_post,
            posts::update_post,
            posts::delete_post
        ))
        .routes(routes!(comments::list_comments, comments::create_comment))
        .routes(routes!(passthrough::list_posts))
        .routes(routes!(passthrough::get_post));
    OpenApiRouter::new().nest("/api", api)
}

/// The current time at the precision timestamps are stored and shown with (milliseconds), so
/// that a value reads back identically from SQLite and PostgreSQL.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Serialise a timestamp as RFC 3339 in UTC with milliseconds: `2025-01-31T09:30:00.000Z`.
pub(crate) fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}
