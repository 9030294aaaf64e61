use axum::extract::FromRequestParts;
use http::request::Parts;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Required, schema::SchemaType};

use crate::config::pagination::{LimitOverflow, PaginationConfig};
use crate::error::ChopinError;

/// Largest offset accepted: SQL `OFFSET` is a signed 64-bit integer in PostgreSQL and SQLite.
const MAX_OFFSET: u64 = i64::MAX as u64;

/// Offset pagination from the query string: `?limit=20&offset=40` or `?page=3&per_page=20`.
///
/// Invalid input is rejected with 400 `INVALID_QUERY` and a message naming the parameter —
/// never silently replaced by a default: non-numbers, negative numbers, `limit=0`, a limit above
/// the maximum, `page=0`, both styles in one request, repeated parameters, and offsets beyond
/// what SQL accepts. Other query parameters (filters, sorting) are ignored. With
/// [`LimitOverflow::Clamp`] in the [`PaginationConfig`], a page size out of range is brought
/// into range instead of rejected.
///
/// ```
/// use chopin_core::prelude::*;
///
/// async fn list(page: Pagination) -> ApiResponse<Vec<u64>> {
///     let items: Vec<u64> = (page.offset..page.offset + page.limit).collect();
///     ApiResponse::paginated(items, &page, None)
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(list));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pagination {
    /// Number of items to return (`LIMIT`).
    pub limit: u64,
    /// Number of items to skip (`OFFSET`).
    pub offset: u64,
    max_limit: u64,
}

impl Default for Pagination {
    fn default() -> Self {
        let config = PaginationConfig::default();
        Self {
            limit: config.default_limit,
            offset: 0,
            max_limit: config.max_limit,
        }
    }
}

impl Pagination {
    /// A page built in code, with the default maximum page size (100).
    pub fn new(limit: u64, offset: u64) -> Self {
        Self {
            limit,
            offset,
            ..Self::default()
        }
    }

    /// This page with `limit` clamped to `1..=max` and `offset` to what SQL accepts, for code
    /// that builds a `Pagination` itself and prefers clamping to rejecting.
    pub fn clamped(&self) -> Pagination {
        Pagination {
            limit: self.limit.clamp(1, self.max_limit.max(1)),
            offset: self.offset.min(MAX_OFFSET),
            max_limit: self.max_limit,
        }
    }

    /// The largest page size this pagination allows.
    pub fn max_limit(&self) -> u64 {
        self.max_limit
    }

    /// Parse a raw query string (without the leading `?`) under the given limits.
    pub fn from_query(query: &str, config: PaginationConfig) -> Result<Self, ChopinError> {
        let mut limit = None;
        let mut offset = None;
        let mut page = None;
        let mut per_page = None;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "limit" => &mut limit,
                "offset" => &mut offset,
                "page" => &mut page,
                "per_page" => &mut per_page,
                _ => continue,
            };
            if slot.is_some() {
                return Err(invalid(format!("`{key}` is given more than once")));
            }
            *slot = Some(parse_number(&key, &value)?);
        }
        if (limit.is_some() || offset.is_some()) && (page.is_some() || per_page.is_some()) {
            return Err(invalid(
                "use either `limit`/`offset` or `page`/`per_page`, not both".to_string(),
            ));
        }
        let (limit, offset) = if page.is_some() || per_page.is_some() {
            let size = config.page_size("per_page", per_page)?;
            let page = page.unwrap_or(1);
            if page == 0 {
                return Err(invalid("`page` starts at 1".to_string()));
            }
            let offset = (page - 1)
                .checked_mul(size)
                .filter(|o| *o <= MAX_OFFSET)
                .ok_or_else(|| invalid("`page` is too large".to_string()))?;
            (size, offset)
        } else {
            let size = config.page_size("limit", limit)?;
            let offset = offset.unwrap_or(0);
            if offset > MAX_OFFSET {
                return Err(invalid(format!("`offset` must be at most {MAX_OFFSET}")));
            }
            (size, offset)
        };
        Ok(Pagination {
            limit,
            offset,
            max_limit: config.max_limit,
        })
    }
}

fn invalid(message: String) -> ChopinError {
    ChopinError::InvalidQuery(message)
}

pub(super) fn parse_number(key: &str, value: &str) -> Result<u64, ChopinError> {
    if value.starts_with('-') && value.len() > 1 && value[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("`{key}` must not be negative")));
    }
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "`{key}` must be a whole number, got {value:?}"
        )));
    }
    value
        .parse::<u64>()
        .map_err(|_| invalid(format!("`{key}` is too large")))
}

impl<S: Send + Sync> FromRequestParts<S> for Pagination {
    type Rejection = ChopinError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let config = parts
            .extensions
            .get::<PaginationConfig>()
            .copied()
            .unwrap_or_default();
        Pagination::from_query(parts.uri.query().unwrap_or(""), config)
    }
}

impl Pagination {
    /// The OpenAPI parameters the extractor reads under `config`: `limit` and `offset` only.
    /// OpenAPI can't say that two groups of parameters exclude each other, and a spec listing
    /// all four would promise that combining them works; `page`/`per_page` are accepted all
    /// the same (`limit`'s description says so). The bounds are the ones the extractor
    /// applies (a test checks both at the edges): `limit` 1..=`max_limit` (with
    /// [`LimitOverflow::Clamp`], 0..=`u64::MAX`: it is clamped), `offset` 0..=`i64::MAX`
    /// (written as JSON integers, exactly).
    pub(crate) fn parameters(config: PaginationConfig, location: ParameterIn) -> Vec<Parameter> {
        let param = |name: &str, description: String, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(location.clone())
                .required(Required::False)
                .description(Some(description))
                .schema(Some(
                    schema
                        .schema_type(SchemaType::Type(Type::Integer))
                        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Int64,
                        ))),
                ))
                .build()
        };
        let (size, limit_schema) = match config.overflow {
            LimitOverflow::Reject => (
                format!("at most {}", config.max_limit),
                ObjectBuilder::new()
                    .minimum(Some(1u64))
                    .maximum(Some(config.max_limit)),
            ),
            LimitOverflow::Clamp => (
                format!(
                    "sizes outside 1 to {} are served as the nearest of the two",
                    config.max_limit
                ),
                // Any size the query can spell: larger numbers are malformed (400).
                ObjectBuilder::new()
                    .minimum(Some(0u64))
                    .maximum(Some(u64::MAX)),
            ),
        };
        vec![
            param(
                "limit",
                format!(
                    "Page size (default {}, {size}). Pages can also be asked for as `page` \
                     (1-based) and `per_page` (same bounds as `limit`) instead of \
                     `limit`/`offset`, never mixed with them (400 `INVALID_QUERY`).",
                    config.default_limit
                ),
                limit_schema,
            ),
            param(
                "offset",
                "Number of items to skip (default 0). Not with `page`/`per_page`.".to_string(),
                ObjectBuilder::new()
                    .minimum(Some(0u64))
                    .maximum(Some(MAX_OFFSET)),
            ),
        ]
    }
}

/// [`Pagination::parameters`] with the default limits (20, at most 100): what a spec built
/// without a configuration states. [`App`](crate::App) documents its configured limits
/// instead.
impl IntoParams for Pagination {
    fn into_params(parameter_in_provider: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        Pagination::parameters(
            PaginationConfig::default(),
            parameter_in_provider().unwrap_or(ParameterIn::Query),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Pagination, String> {
        Pagination::from_query(q, PaginationConfig::default()).map_err(|e| match e {
            ChopinError::InvalidQuery(m) => m,
            other => panic!("unexpected error {other:?}"),
        })
    }

    #[test]
    fn defaults_and_styles() {
        let p = parse("").unwrap();
        assert_eq!((p.limit, p.offset), (20, 0));
        let p = parse("limit=5&offset=10&sort=title").unwrap();
        assert_eq!((p.limit, p.offset), (5, 10));
        let p = parse("page=3&per_page=10").unwrap();
        assert_eq!((p.limit, p.offset), (10, 20));
        let p = parse("page=2").unwrap();
        assert_eq!((p.limit, p.offset), (20, 20));
        let p = parse("limit=100").unwrap();
        assert_eq!(p.limit, 100);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("limit=abc").unwrap_err().contains("whole number"));
        assert!(parse("limit=-1").unwrap_err().contains("negative"));
        assert!(parse("offset=-5").unwrap_err().contains("negative"));
        assert!(parse("limit=0").unwrap_err().contains("between 1 and 100"));
        assert!(
            parse("limit=101")
                .unwrap_err()
                .contains("between 1 and 100")
        );
        assert!(parse("page=0").unwrap_err().contains("starts at 1"));
        assert!(parse("limit=5&page=2").unwrap_err().contains("not both"));
        assert!(
            parse("limit=5&limit=6")
                .unwrap_err()
                .contains("more than once")
        );
        assert!(parse("limit=1.5").unwrap_err().contains("whole number"));
        assert!(parse("limit=+5").unwrap_err().contains("whole number"));
        assert!(parse("limit=").unwrap_err().contains("whole number"));
        assert!(
            parse("offset=99999999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse("offset=9223372036854775808")
                .unwrap_err()
                .contains("at most")
        );
        assert!(
            parse("page=9223372036854775807&per_page=100")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn configurable_limits() {
        let config = PaginationConfig {
            default_limit: 50,
            max_limit: 500,
            ..PaginationConfig::default()
        };
        let p = Pagination::from_query("", config).unwrap();
        assert_eq!(p.limit, 50);
        assert!(Pagination::from_query("limit=500", config).is_ok());
        assert!(Pagination::from_query("limit=501", config).is_err());
    }

    #[test]
    fn clamp_mode_clamps_sizes_only() {
        let config = PaginationConfig {
            overflow: LimitOverflow::Clamp,
            ..PaginationConfig::default()
        };
        let page = |q: &str| Pagination::from_query(q, config).map(|p| (p.limit, p.offset));
        assert_eq!(page("limit=500").unwrap(), (100, 0));
        assert_eq!(page("limit=0&offset=3").unwrap(), (1, 3));
        assert_eq!(page("page=2&per_page=1000").unwrap(), (100, 100));
        assert_eq!(page("limit=42").unwrap(), (42, 0));
        for bad in [
            "limit=abc",
            "limit=-1",
            "page=0",
            "limit=1&limit=2",
            "limit=5&page=2",
        ] {
            assert!(page(bad).is_err(), "{bad}");
        }
        assert_eq!("Clamp".parse::<LimitOverflow>(), Ok(LimitOverflow::Clamp));
        assert!("truncate".parse::<LimitOverflow>().is_err());
    }

    #[test]
    fn clamped_clamps() {
        let p = Pagination::new(1000, 5).clamped();
        assert_eq!((p.limit, p.offset), (100, 5));
        let p = Pagination::new(0, u64::MAX).clamped();
        assert_eq!((p.limit, p.offset), (1, MAX_OFFSET));
    }
}
