//! Extractors of this application whose rejections use Chopin's error envelope.
//!
//! axum's own `Path` and `Query` reject with plain-text bodies; these small extractors parse
//! what the blog needs and answer bad input with a 400 envelope instead.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use chopin_core::ChopinError;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{KnownFormat, Required, SchemaFormat};

/// The `{id}` segment of a route's path, a positive 64-bit integer.
///
/// Anything else (`abc`, `0`, `-1`, `1.5`, a number above `i64::MAX`) is rejected with
/// 400 `BAD_REQUEST` in the error envelope. Document it in `#[utoipa::path]` with
/// `params(Id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub i64);

impl Id {
    /// Parse a raw path segment.
    pub fn parse(raw: &str) -> Result<Id, ChopinError> {
        let invalid = || {
            ChopinError::BadRequest(format!(
                "path parameter `id` must be a positive whole number, got {raw:?}"
            ))
        };
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Id(id)),
            _ => Err(invalid()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ChopinError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ChopinError::BadRequest("the request path is not valid UTF-8".into()))?;
        let raw = params
            .iter()
            .find_map(|(name, value)| (name == "id").then_some(value))
            .ok_or_else(|| ChopinError::internal("the route has no `{id}` path segment"))?;
        Id::parse(raw)
    }
}

impl utoipa::IntoParams for Id {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The post's id."))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Integer))
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                        .minimum(Some(1.0)),
                ))
                .build(),
        ]
    }
}

/// The `?published=true|false` filter of the post list; absent means every post.
///
/// A value other than `true` or `false`, or a repeated parameter, is rejected with
/// 400 `INVALID_QUERY`. Other parameters (pagination) are left to their own extractors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PostFilter {
    /// `Some(true)`: published posts only; `Some(false)`: drafts only.
    pub published: Option<bool>,
}

impl PostFilter {
    /// Parse a raw query string (without the leading `?`).
    pub fn from_query(query: &str) -> Result<PostFilter, ChopinError> {
        let mut filter = PostFilter::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if key != "published" {
                continue;
            }
            if filter.published.is_some() {
                return Err(ChopinError::InvalidQuery(
                    "`published` is given more than once".into(),
                ));
            }
            filter.published = Some(match value.as_ref() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(ChopinError::InvalidQuery(format!(
                        "`published` must be `true` or `false`, got {other:?}"
                    )));
                }
            });
        }
        Ok(filter)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PostFilter {
    type Rejection = ChopinError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        PostFilter::from_query(parts.uri.query().unwrap_or(""))
    }
}

impl utoipa::IntoParams for PostFilter {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("published")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "`true`: published posts only; `false`: drafts only; absent: all posts.",
                ))
                .schema(Some(
                    ObjectBuilder::new().schema_type(SchemaType::Type(Type::Boolean)),
                ))
                .build(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(Id::parse("7").unwrap(), Id(7));
        assert_eq!(Id::parse("9223372036854775807").unwrap(), Id(i64::MAX));
        for bad in [
            "",
            "abc",
            "0",
            "-1",
            "+1",
            "1.5",
            " 1",
            "9223372036854775808",
        ] {
            assert!(
                matches!(Id::parse(bad), Err(ChopinError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn filters() {
        assert_eq!(PostFilter::from_query("").unwrap().published, None);
        let f = PostFilter::from_query("limit=5&published=true").unwrap();
        assert_eq!(f.published, Some(true));
        assert_eq!(
            PostFilter::from_query("published=false").unwrap().published,
            Some(false)
        );
        for bad in [
            "published=yes",
            "published=",
            "published=true&published=false",
        ] {
            assert!(
                matches!(
                    PostFilter::from_query(bad),
                    Err(ChopinError::InvalidQuery(_))
                ),
                "{bad:?}"
            );
        }
    }
}
