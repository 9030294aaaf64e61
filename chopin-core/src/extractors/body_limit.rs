//! The body limit a request was admitted under, as the body extractors read it.

/// Body size marker placed in request extensions by
/// [`BodyLimitLayer`](crate::layers::BodyLimitLayer) when its limit differs from
/// [`DEFAULT_BODY_LIMIT`](crate::config::DEFAULT_BODY_LIMIT), read by Chopin's body extractors
/// to report the limit in 413 errors. A request without it was admitted under the default.
///
/// It lives with the extractors that read it, so the middleware that sets it imports it from
/// below; its public path is `chopin_core::layers::BodyLimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);
