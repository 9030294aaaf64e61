//! The one error type of a Chopin application and its JSON rendering.
//!
//! Every failure a client can see is a [`ChopinError`]. It renders as
//!
//! ```json
//! {"success":false,"error":{"code":"NOT_FOUND","message":"post 7 not found","request_id":"…"}}
//! ```
//!
//! with a stable [`ErrorCode`] per kind of failure and the matching HTTP status. Validation
//! failures add `"fields":[{"field":"title","code":"length","message":"…"}]`. Internal details
//! (database error text, panic messages) are logged, and only shown in the response body when
//! the application runs in development (see [`crate::config::Environment`]).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::context;
use crate::json;

mod convert;
#[cfg(chopin_db)]
pub(crate) use convert::is_connection_failure;

/// The stable, documented machine-readable code of an error.
///
/// Clients switch on these strings; they never change meaning once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 400: the request is malformed in a way no more specific code describes.
    BadRequest,
    /// 400: the body is not syntactically valid JSON (the message gives line and column, or the
    /// byte offset for invalid UTF-8).
    MalformedJson,
    /// 400: a query-string parameter is missing, malformed or out of range.
    InvalidQuery,
    /// 400: a pagination cursor was altered, has expired, or was not issued by this
    /// application; start again from the first page.
    InvalidCursor,
    /// 401: no valid credentials were presented.
    Unauthorized,
    /// 403: the credentials are valid but do not allow this action.
    Forbidden,
    /// 404: the resource or route does not exist.
    NotFound,
    /// 405: the route exists but not for this HTTP method.
    MethodNotAllowed,
    /// 409: the request conflicts with the current state (for example a duplicate unique key).
    Conflict,
    /// 413: the request body exceeds the configured limit.
    PayloadTooLarge,
    /// 415: the request body has the wrong `Content-Type`.
    UnsupportedMediaType,
    /// 422: the body is well-formed JSON but its content is invalid; see `fields`.
    ValidationFailed,
    /// 429: too many requests; retry after the `Retry-After` header's delay.
    RateLimited,
    /// 500: an unexpected failure inside the server. No details are exposed outside development.
    InternalError,
    /// 503: a dependency (database pool, cache, …) is unavailable; retry after `Retry-After`.
    ServiceUnavailable,
    /// 504: the request did not complete within the configured request timeout.
    Timeout,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadRequest,
        ErrorCode::MalformedJson,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidCursor,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::ValidationFailed,
        ErrorCode::RateLimited,
        ErrorCode::InternalError,
        ErrorCode::ServiceUnavailable,
        ErrorCode::Timeout,
    ];

    /// The code as it appears on the wire, e.g. `"NOT_FOUND"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::MalformedJson => "MALFORMED_JSON",
            ErrorCode::InvalidQuery => "INVALID_QUERY",
            ErrorCode::InvalidCursor => "INVALID_CURSOR",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::ValidationFailed => "VALIDATION_FAILED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::Timeout => "TIMEOUT",
        }
    }

    /// The HTTP status that always accompanies this code.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::MalformedJson
            | ErrorCode::InvalidQuery
            | ErrorCode::InvalidCursor => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid field of a request, reported in a 422 response's `fields` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field, dotted for nested objects and indexed for arrays (`author.emails[1]`).
    pub field: String,
    /// Short machine-readable reason (`"required"`, `"invalid_type"`, `"length"`, …).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// A field error from its parts.
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A boxed error kept as the hidden cause of a 500 or 503.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every failure a Chopin handler or layer can answer with.
///
/// Handlers return `Result<_, ChopinError>`; `?` converts database errors
/// ([`sea_orm::DbErr`], [`sqlx::Error`](sea_orm::sqlx::Error)) into the right variant.
///
/// ```
/// use chopin_core::prelude::*;
///
/// async fn show(id: u64) -> Result<ApiResponse<String>, ChopinError> {
///     if id == 0 {
///         return Err(ChopinError::NotFound(format!("post {id} not found")));
///     }
///     Ok(ApiResponse::success(format!("post {id}")))
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChopinError {
    /// 400 `BAD_REQUEST`.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 400 `MALFORMED_JSON`: the body is not valid JSON.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    MalformedJson {
        /// What the parser found wrong.
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// 400 `INVALID_QUERY`: a query-string parameter is invalid.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// 400 `INVALID_CURSOR`: a pagination cursor was refused (altered, expired, or not issued
    /// by this application).
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// 401 `UNAUTHORIZED`, with `WWW-Authenticate: Bearer`.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 401 `UNAUTHORIZED` for a token that was presented but refused (malformed, tampered,
    /// expired, revoked, …), with `WWW-Authenticate: Bearer error="invalid_token"`
    /// (RFC 6750 §3.1).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// 403 `FORBIDDEN`.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404 `NOT_FOUND`.
    #[error("not found: {0}")]
    NotFound(String),
    /// 405 `METHOD_NOT_ALLOWED`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `CONFLICT`.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 413 `PAYLOAD_TOO_LARGE`.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// 415 `UNSUPPORTED_MEDIA_TYPE`.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// 422 `VALIDATION_FAILED`, with one entry per invalid field.
    #[error("validation failed ({} field(s))", .0.len())]
    Validation(Vec<FieldError>),
    /// 429 `RATE_LIMITED`, with `Retry-After`.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited {
        /// How long the client should wait.
        retry_after: Duration,
    },
    /// 503 `SERVICE_UNAVAILABLE`, with `Retry-After`.
    #[error("service unavailable: {message}")]
    ServiceUnavailable {
        /// Safe, public explanation (no internal detail).
        message: String,
        /// How long the client should wait before retrying.
        retry_after: Duration,
        /// The hidden cause, logged and shown only in development.
        #[source]
        source: Option<BoxError>,
    },
    /// 504 `TIMEOUT`: the request exceeded the configured request timeout.
    #[error("request timed out")]
    Timeout,
    /// 500 `INTERNAL_ERROR`. The cause is logged; the response says only "internal server
    /// error" outside development.
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

/// Default `Retry-After` for 503 answers caused by an exhausted pool or an unreachable
/// dependency.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ChopinError {
    /// Wrap any error as a 500 whose details stay out of the response.
    pub fn internal(err: impl Into<BoxError>) -> Self {
        ChopinError::Internal(err.into())
    }

    /// A 503 with a public message and a `Retry-After` delay.
    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> Self {
        ChopinError::ServiceUnavailable {
            message: message.into(),
            retry_after,
            source: None,
        }
    }

    /// A 422 for a single field.
    pub fn invalid_field(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ChopinError::Validation(vec![FieldError::new(field, code, message)])
    }

    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ChopinError::BadRequest(_) => ErrorCode::BadRequest,
            ChopinError::MalformedJson { .. } => ErrorCode::MalformedJson,
            ChopinError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            ChopinError::InvalidCursor(_) => ErrorCode::InvalidCursor,
            ChopinError::Unauthorized(_) | ChopinError::InvalidToken(_) => ErrorCode::Unauthorized,
            ChopinError::Forbidden(_) => ErrorCode::Forbidden,
            ChopinError::NotFound(_) => ErrorCode::NotFound,
            ChopinError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ChopinError::Conflict(_) => ErrorCode::Conflict,
            ChopinError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ChopinError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ChopinError::Validation(_) => ErrorCode::ValidationFailed,
            ChopinError::RateLimited { .. } => ErrorCode::RateLimited,
            ChopinError::ServiceUnavailable { .. } => ErrorCode::ServiceUnavailable,
            ChopinError::Timeout => ErrorCode::Timeout,
            ChopinError::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// The message placed in the response body. Never contains internal detail.
    fn public_message(&self) -> Cow<'_, str> {
        match self {
            ChopinError::BadRequest(m)
            | ChopinError::InvalidQuery(m)
            | ChopinError::InvalidCursor(m)
            | ChopinError::Unauthorized(m)
            | ChopinError::InvalidToken(m)
            | ChopinError::Forbidden(m)
            | ChopinError::NotFound(m)
            | ChopinError::Conflict(m)
            | ChopinError::UnsupportedMediaType(m) => Cow::Borrowed(m),
            ChopinError::ServiceUnavailable { message, .. } => Cow::Borrowed(message),
            ChopinError::MalformedJson {
                message,
                line,
                column,
            } => Cow::Owned(format!(
                "malformed JSON at line {line}, column {column}: {message}"
            )),
            ChopinError::MethodNotAllowed => {
                Cow::Borrowed("this route does not accept that HTTP method")
            }
            ChopinError::PayloadTooLarge { limit } => Cow::Owned(format!(
                "request body is larger than the limit of {limit} bytes"
            )),
            ChopinError::Validation(_) => Cow::Borrowed("the request body has invalid fields"),
            ChopinError::RateLimited { .. } => Cow::Borrowed("too many requests"),
            ChopinError::Timeout => Cow::Borrowed("the request did not complete in time"),
            ChopinError::Internal(_) => Cow::Borrowed("internal server error"),
        }
    }

    /// Internal detail that is logged, and shown in development only.
    fn hidden_detail(&self) -> Option<String> {
        match self {
            ChopinError::Internal(source) => Some(error_chain(source.as_ref())),
            ChopinError::ServiceUnavailable {
                source: Some(source),
                ..
            } => Some(error_chain(source.as_ref())),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ChopinError::RateLimited { retry_after }
            | ChopinError::ServiceUnavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A copy keeps everything but the identity of a hidden cause: a `source` is cloned as an
/// error with the same message chain (so it logs the same, but no longer downcasts to its
/// original type). This lets one failure be handed to several waiters, as
/// [`Cache::get_or_load`](crate::cache::Cache::get_or_load) does.
impl Clone for ChopinError {
    fn clone(&self) -> Self {
        match self {
            ChopinError::BadRequest(m) => ChopinError::BadRequest(m.clone()),
            ChopinError::MalformedJson {
                message,
                line,
                column,
            } => ChopinError::MalformedJson {
                message: message.clone(),
                line: *line,
                column: *column,
            },
            ChopinError::InvalidQuery(m) => ChopinError::InvalidQuery(m.clone()),
            ChopinError::InvalidCursor(m) => ChopinError::InvalidCursor(m.clone()),
            ChopinError::Unauthorized(m) => ChopinError::Unauthorized(m.clone()),
            ChopinError::InvalidToken(m) => ChopinError::InvalidToken(m.clone()),
            ChopinError::Forbidden(m) => ChopinError::Forbidden(m.clone()),
            ChopinError::NotFound(m) => ChopinError::NotFound(m.clone()),
            ChopinError::MethodNotAllowed => ChopinError::MethodNotAllowed,
            ChopinError::Conflict(m) => ChopinError::Conflict(m.clone()),
            ChopinError::PayloadTooLarge { limit } => {
                ChopinError::PayloadTooLarge { limit: *limit }
            }
            ChopinError::UnsupportedMediaType(m) => ChopinError::UnsupportedMediaType(m.clone()),
            ChopinError::Validation(fields) => ChopinError::Validation(fields.clone()),
            ChopinError::RateLimited { retry_after } => ChopinError::RateLimited {
                retry_after: *retry_after,
            },
            ChopinError::ServiceUnavailable {
                message,
                retry_after,
                source,
            } => ChopinError::ServiceUnavailable {
                message: message.clone(),
                retry_after: *retry_after,
                source: source.as_deref().map(ClonedCause::boxed),
            },
            ChopinError::Timeout => ChopinError::Timeout,
            ChopinError::Internal(source) => {
                ChopinError::Internal(ClonedCause::boxed(source.as_ref()))
            }
        }
    }
}

/// The message chain of a cloned [`ChopinError`]'s hidden cause.
#[derive(Debug)]
struct ClonedCause(String);

impl ClonedCause {
    fn boxed(source: &(dyn std::error::Error + Send + Sync + 'static)) -> BoxError {
        Box::new(ClonedCause(error_chain(source)))
    }
}

impl fmt::Display for ClonedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClonedCause {}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(next) = cur {
        out.push_str(": ");
        out.push_str(&next.to_string());
        cur = next.source();
    }
    out
}

/// The JSON body of an error, as documented in the wire format.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"success": false, "error": {"code": "NOT_FOUND", "message": "post 7 not found", "request_id": "3f0f0b8e-6a47-4ac4-9d5c-0f3b0c1d2e3f"}}))]
pub struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    /// What went wrong.
    pub error: ErrorBody,
}

/// The `error` object inside an [`ErrorEnvelope`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message, safe to show.
    pub message: String,
    /// Per-field details of a 422 (absent otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// The request's id (also sent as the `x-request-id` header); `null` when the request
    /// did not pass through Chopin's request-id layer.
    pub request_id: Option<String>,
    /// Internal detail, present only when the application runs in development.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ChopinError {
    /// The envelope this error renders as, for the current request context.
    pub fn to_envelope(&self) -> ErrorEnvelope {
        let ctx = context::current();
        let expose = ctx.as_ref().is_some_and(|c| c.expose_internal_errors);
        ErrorEnvelope {
            success: false,
            error: ErrorBody {
                code: self.code(),
                message: self.public_message().into_owned(),
                fields: match self {
                    ChopinError::Validation(f) => f.clone(),
                    _ => Vec::new(),
                },
                request_id: ctx.map(|c| c.id().to_string()),
                detail: if expose { self.hidden_detail() } else { None },
            },
        }
    }
}

/// `Retry-After` seconds for a wait: whole seconds, rounded up, at least 1 (a client told
/// "0" would retry at once). The rate limiter's `RateLimit: …;t=` uses it too, so that both
/// name the same point in time.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The envelope sent (in an HTTP error response or an SSE `error` event) when an error's own
/// envelope cannot be serialised: a bare `INTERNAL_ERROR` without request id.
pub(crate) const FALLBACK_ENVELOPE: &str = r#"{"success":false,"error":{"code":"INTERNAL_ERROR","message":"internal server error","request_id":null}}"#;

impl IntoResponse for ChopinError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The trace id also stands on the event itself (not only on the `request` span),
            // so it is a top-level field of JSON logs, and present when the trace layer is off.
            let trace_id = context::current_trace_id().map(tracing::field::display);
            match self.hidden_detail() {
                Some(d) => {
                    tracing::error!(code = %self.code(), detail = %d, trace_id, "request failed")
                }
                None => tracing::warn!(code = %self.code(), trace_id, "request failed"),
            }
        }
        let body = json::to_bytes(&self.to_envelope())
            .unwrap_or_else(|_| Bytes::from_static(FALLBACK_ENVELOPE.as_bytes()));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, crate::json::APPLICATION_JSON);
        if let Some(after) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(after)),
            );
        }
        match self {
            ChopinError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ChopinError::InvalidToken(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        response
    }
}
