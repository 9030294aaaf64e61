//! Per-request context: the request id and whether internal error details may be shown.
//!
//! The request-id layer ([`crate::layers::RequestIdLayer`]) runs the rest of the request inside
//! a task-local scope, so that any [`ChopinError`](crate::ChopinError) rendered while the request
//! is being handled — by a handler, an extractor or a layer such as catch-panic — carries the
//! request's id without threading it through every function.

use http::HeaderValue;

/// The id of the current request, also available to handlers as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub(crate) HeaderValue);

impl RequestId {
    /// The id as text (always visible ASCII: Chopin sanitises incoming ids).
    pub fn as_str(&self) -> &str {
        // Ids are generated or sanitised to visible ASCII, so this never fails.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an error rendered during a request needs to know about that request.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    pub(crate) id: RequestId,
    pub(crate) expose_internal_errors: bool,
}

impl RequestContext {
    pub(crate) fn id(&self) -> &str {
        self.id.as_str()
    }
}

tokio::task_local! {
    pub(crate) static REQUEST_CONTEXT: RequestContext;
}

/// The context of the request being handled on this task, if any.
pub(crate) fn current() -> Option<RequestContext> {
    REQUEST_CONTEXT.try_with(Clone::clone).ok()
}
