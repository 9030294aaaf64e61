//! Conditional `GET` in a handler: the [`IfNoneMatch`] extractor, [`not_modified`], and turning
//! a `200`'s head into a `304`'s.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

use super::entity_tag::{EntityTag, ListKind, parse_tag_list};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Condition {
    #[default]
    Absent,
    Any,
    Tags(Vec<EntityTag>),
}

/// The request's `If-None-Match` condition, as an extractor: lets a handler answer
/// `304 Not Modified` before doing the expensive part of its work.
///
/// Never rejects: a missing or malformed header is an absent condition (which matches
/// nothing). Use [`IfNoneMatch::respond`] for the whole dance, or [`IfNoneMatch::matches`] and
/// [`not_modified`] to build it yourself. Compare with [`ETagLayer`], which needs no handler
/// code but renders the body to hash it.
///
/// [`ETagLayer`]: crate::cache::http::ETagLayer
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfNoneMatch(Condition);

impl IfNoneMatch {
    /// The condition carried by `headers` (all `If-None-Match` lines).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut tags = Vec::new();
        let mut any = false;
        let mut present = false;
        for value in headers.get_all(header::IF_NONE_MATCH) {
            present = true;
            let parsed = parse_tag_list(value.as_bytes(), |weak, opaque| {
                // `parse_tag_list` only yields `etagc` bytes; obs-text may not be UTF-8.
                if let Ok(opaque) = std::str::from_utf8(opaque) {
                    tags.push(EntityTag {
                        weak,
                        opaque: opaque.to_string(),
                    });
                }
            });
            match parsed {
                Ok(ListKind::Any) => any = true,
                Ok(ListKind::Tags) => {}
                Err(()) => return Self(Condition::Absent),
            }
        }
        Self(match (present, any) {
            (false, _) => Condition::Absent,
            (true, true) => Condition::Any,
            (true, false) => Condition::Tags(tags),
        })
    }

    /// `true` when the request carried a (well-formed) `If-None-Match`.
    pub fn is_present(&self) -> bool {
        self.0 != Condition::Absent
    }

    /// `true` when the client already holds `etag` (weak comparison, RFC 9110 §13.1.2), or sent
    /// `If-None-Match: *`: answer `304 Not Modified` to a `GET` or `HEAD`.
    pub fn matches(&self, etag: &EntityTag) -> bool {
        match &self.0 {
            Condition::Absent => false,
            Condition::Any => true,
            Condition::Tags(tags) => tags.iter().any(|t| t.weak_eq(etag)),
        }
    }

    /// `304 Not Modified` carrying `etag` when the condition matches it; otherwise the response
    /// `render` builds, with `etag` set as its `ETag`. `render` runs only when needed.
    ///
    /// Add `Cache-Control` (and `Vary`) around the result, e.g.
    /// `([(header::CACHE_CONTROL, "no-cache")], if_none_match.respond(…))`: a tuple's headers go
    /// onto the `304` as well as the `200`.
    pub fn respond<R: IntoResponse>(
        &self,
        etag: EntityTag,
        render: impl FnOnce() -> R,
    ) -> Response {
        if self.matches(&etag) {
            return not_modified(&etag);
        }
        let mut response = render().into_response();
        response
            .headers_mut()
            .insert(header::ETAG, etag.to_header_value());
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

/// A bare `304 Not Modified` carrying `etag` (counted in `chopin_http_cache_not_modified_total`
/// with the `metrics` feature).
pub fn not_modified(etag: &EntityTag) -> Response {
    #[cfg(feature = "metrics")]
    crate::metrics::global().cache.not_modified.inc();
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response
        .headers_mut()
        .insert(header::ETAG, etag.to_header_value());
    response
}

/// Turn a `200`'s head into a `304`'s: same headers minus the ones that describe a body
/// (RFC 9110 §15.4.5 keeps `Cache-Control`, `Content-Location`, `Date`, `ETag`, `Expires` and
/// `Vary`; we also keep anything else that is not representation metadata, such as
/// `x-request-id`).
///
/// The body is empty with an exact size of 0, which keeps compression away from it (a body of
/// unknown size would be gzipped into a 20-byte "empty" stream). axum's router may then add
/// `Content-Length: 0` in process; hyper does not write it for a `304` with an empty body.
pub(crate) fn into_not_modified(mut parts: http::response::Parts) -> Response {
    #[cfg(feature = "metrics")]
    crate::metrics::global().cache.not_modified.inc();
    parts.status = StatusCode::NOT_MODIFIED;
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::CONTENT_LANGUAGE,
        header::CONTENT_RANGE,
        header::TRANSFER_ENCODING,
        header::ACCEPT_RANGES,
    ] {
        parts.headers.remove(name);
    }
    Response::from_parts(parts, Body::empty())
}
