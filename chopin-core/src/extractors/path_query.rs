use axum::extract::FromRequestParts;
use axum::extract::rejection::{PathRejection, QueryRejection};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ChopinError;

/// Path parameters, like [`axum::extract::Path`], but a value that does not parse (say `abc`
/// for a `u64`) is answered with 400 `BAD_REQUEST` in the error envelope.
///
/// ```
/// use chopin_core::extractors::Path;
///
/// async fn show(Path(id): Path<u64>) -> String {
///     format!("post {id}")
/// }
/// # let _ = axum::Router::<()>::new().route("/posts/{id}", axum::routing::get(show));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ChopinError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ChopinError::BadRequest(e.body_text()))
            }
            Err(other) => Err(ChopinError::internal(other.body_text())),
        }
    }
}

/// Query-string parameters, like [`axum::extract::Query`], but invalid input is answered with
/// 400 `INVALID_QUERY` in the error envelope.
///
/// ```
/// use chopin_core::extractors::Query;
///
/// #[derive(serde::Deserialize)]
/// struct Filter { published: Option<bool> }
///
/// async fn list(Query(filter): Query<Filter>) -> String {
///     format!("{:?}", filter.published)
/// }
/// # let _ = axum::Router::<()>::new().route("/posts", axum::routing::get(list));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ChopinError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e: QueryRejection| ChopinError::InvalidQuery(e.body_text()))
    }
}
