use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use validator::Validate;

use crate::error::ChopinError;
use crate::json;

use super::json::read_json_body;

/// A JSON body that is decoded like [`Json`](super::Json) and then validated with
/// [`validator`]; failed rules answer 422 `VALIDATION_FAILED` with one entry per field.
///
/// ```
/// use chopin_core::extractors::ValidJson;
/// use serde::Deserialize;
/// use validator::Validate;
///
/// #[derive(Deserialize, Validate)]
/// struct NewPost {
///     #[validate(length(min = 1, max = 200))]
///     title: String,
/// }
///
/// async fn create(ValidJson(input): ValidJson<NewPost>) -> String {
///     input.title
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(create));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidJson<T>(pub T);

impl<T, S> FromRequest<S> for ValidJson<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ChopinError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_json_body(req, state).await?;
        let value: T = json::from_slice(&bytes)?;
        value.validate()?;
        Ok(ValidJson(value))
    }
}
