use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::body_limit::BodyLimit;
use crate::error::ChopinError;
use crate::json;

/// JSON request body extractor and JSON responder, backed by sonic-rs.
///
/// As an extractor it
/// * requires `Content-Type: application/json` (or `application/<something>+json`), else 415;
/// * enforces the body limit, else 413;
/// * answers malformed JSON (including invalid UTF-8 and nesting deeper than
///   [`MAX_DEPTH`](crate::json::MAX_DEPTH)) with 400 and
///   the line and column of the problem;
/// * answers well-formed JSON of the wrong shape with 422 naming the field path
///   (`author.emails[1]`).
///
/// As a responder it serialises `T` (without the envelope; use
/// [`ApiResponse`](crate::ApiResponse) for that) into a pre-sized buffer.
///
/// ```
/// use chopin_core::extractors::Json;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct NewPost { title: String }
///
/// #[derive(Serialize)]
/// struct Created { title: String }
///
/// async fn create(Json(input): Json<NewPost>) -> Json<Created> {
///     Json(Created { title: input.title })
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(create));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// Unwrap the inner value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Whether the request declares a JSON body.
pub(crate) fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Read the whole body of a JSON request, with Chopin's rejections.
pub(crate) async fn read_json_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<Bytes, ChopinError> {
    if !has_json_content_type(req.headers()) {
        return Err(ChopinError::UnsupportedMediaType(
            "expected a request body with `Content-Type: application/json`".into(),
        ));
    }
    let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ChopinError::PayloadTooLarge {
                limit: limit.unwrap_or(crate::config::DEFAULT_BODY_LIMIT),
            }
        } else {
            ChopinError::BadRequest("the request body could not be read".into())
        }
    })
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ChopinError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_json_body(req, state).await?;
        Ok(Json(json::from_slice(&bytes)?))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match json::to_vec(&self.0) {
            Ok(buf) => json::response(StatusCode::OK, buf),
            Err(err) => ChopinError::internal(err).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn content_types() {
        assert!(has_json_content_type(&headers("application/json")));
        assert!(has_json_content_type(&headers(
            "application/json; charset=utf-8"
        )));
        assert!(has_json_content_type(&headers("Application/JSON")));
        assert!(has_json_content_type(&headers("application/problem+json")));
        assert!(!has_json_content_type(&headers("text/json")));
        assert!(!has_json_content_type(&headers("application/jsonx")));
        assert!(!has_json_content_type(&headers("application/+json")));
        assert!(!has_json_content_type(&headers("text/plain")));
        assert!(!has_json_content_type(&HeaderMap::new()));
    }
}
