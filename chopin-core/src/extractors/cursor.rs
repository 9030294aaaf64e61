//! Keyset ("cursor") pagination: [`CursorPagination`] reads `?cursor=<opaque>&limit=N`, and
//! the next page's cursor is an HMAC-signed, expiring token over the last item's sort key.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{KnownFormat, Required, SchemaFormat};

use crate::config::pagination::PaginationConfig;
use crate::config::{Config, ConfigError};
use crate::error::ChopinError;
use crate::json;
use crate::signing::{Signer, VerifyError};

use super::pagination::parse_number;

/// The purpose cursors are signed for: a cursor never verifies as any other kind of token
/// signed with the same key, and no other token verifies as a cursor.
pub const CURSOR_PURPOSE: &str = "chopin.cursor";

/// The key cursors are signed with, and how long they stay valid.
///
/// [`App`](crate::App) builds one from its [`Config`] ([`CursorKey::from_config`]) and hands
/// it to [`CursorPagination`]: the first `App` of a process as the process's default key, any
/// other `App` in its requests' extensions (which take precedence). Outside an `App` (a plain
/// axum router), add it yourself: `router.layer(axum::Extension(key))`.
///
/// A clone is cheap (the signer is shared).
#[derive(Clone, Debug)]
pub struct CursorKey {
    signer: Arc<Signer>,
    ttl: Duration,
}

/// The cursor key (or the lack of one) of the first [`App`](crate::App) built in the
/// process, which then need not be put into each of its requests (see
/// [`CursorKey::claim_default`]).
static DEFAULT_KEY: std::sync::OnceLock<Option<CursorKey>> = std::sync::OnceLock::new();

/// Marks a request of an [`App`](crate::App) without a cursor key in a process whose default
/// is a key: its `CursorPagination` answers 500 rather than use that key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NoCursorKey;

impl CursorKey {
    /// Make `key` (an `App`'s key, or its lack of one) the process's default if there is none
    /// yet; whether it is the default now (the same key, not an equal one, or both none).
    /// `App` hands its key to each request only when it is not: the first `App` of a process
    /// (usually the only one) pays nothing per request, and any other keeps its own key, or
    /// its lack of one. A request with neither uses the default.
    ///
    /// The one case this gets wrong: the default `App`'s router nested inside another `App`
    /// takes the outer one's key, since only the outer one puts its key into requests.
    pub(crate) fn claim_default(key: Option<&CursorKey>) -> bool {
        let default = DEFAULT_KEY.get_or_init(|| key.cloned());
        match (default, key) {
            (Some(default), Some(key)) => Arc::ptr_eq(&default.signer, &key.signer),
            (None, None) => true,
            _ => false,
        }
    }

    /// A key signing cursors with `signer`, valid for `ttl` after they are issued.
    pub fn new(signer: Signer, ttl: Duration) -> Self {
        CursorKey {
            signer: Arc::new(signer),
            ttl,
        }
    }

    /// The key `config` describes (`CHOPIN_CURSOR_SECRET`, or derived from the HS256
    /// `CHOPIN_JWT_SECRET`, or random outside production; see
    /// [`CursorConfig::signer`](crate::config::CursorConfig::signer)) and `CHOPIN_CURSOR_TTL`.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(CursorKey::new(config.cursor_signer()?, config.cursor.ttl))
    }

    /// How long a cursor issued now stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The signed cursor of sort key `key` (its JSON, signed for [`CURSOR_PURPOSE`], expiring
    /// after [`ttl`](Self::ttl)).
    pub fn encode<K: Serialize + ?Sized>(&self, key: &K) -> Result<String, ChopinError> {
        let payload = json::to_vec(key).map_err(ChopinError::internal)?;
        Ok(self.signer.sign(CURSOR_PURPOSE, &payload, self.ttl))
    }

    /// The sort key inside `cursor`, or 400 `INVALID_CURSOR` when the cursor is malformed,
    /// altered, expired, signed with another key or for another purpose, or holds a key of
    /// another shape (a cursor of a different list).
    pub fn decode<K: DeserializeOwned>(&self, cursor: &str) -> Result<K, ChopinError> {
        let payload = self.signer.verify(CURSOR_PURPOSE, cursor).map_err(|e| {
            ChopinError::InvalidCursor(
                match e {
                    VerifyError::Malformed => "the cursor is malformed",
                    VerifyError::BadSignature => {
                        "the cursor was altered or was not issued by this service"
                    }
                    VerifyError::Expired => {
                        "the cursor has expired; start again from the first page"
                    }
                }
                .to_string(),
            )
        })?;
        json::from_slice(&payload).map_err(|_| {
            ChopinError::InvalidCursor("the cursor does not belong to this list".to_string())
        })
    }
}

/// Keyset pagination from the query string: `?limit=20` for the first page, then
/// `?cursor=<meta.next_cursor>&limit=20` for each next one.
///
/// `K` is the sort key of the list: the columns of its `ORDER BY`, ending with a unique one
/// (`i64` for `ORDER BY id`, `(DateTime<Utc>, i64)` for `ORDER BY created_at, id`). The cursor
/// is opaque to clients: the key's JSON, signed (HMAC-SHA256, a purpose of its own, an expiry
/// inside the signature) with the [`CursorKey`] that [`App`](crate::App) installs. A page costs
/// the same wherever it is in the list — `WHERE (created_at, id) < ($1, $2) ORDER BY created_at
/// DESC, id DESC LIMIT n + 1` uses the index — where `OFFSET` reads and discards every row
/// before the page.
///
/// Refusals: a cursor that is malformed, altered, expired, from another key or of another
/// shape answers 400 `INVALID_CURSOR`; `limit` follows the [`PaginationConfig`] exactly as
/// [`Pagination`](super::Pagination) does (400 `INVALID_QUERY` out of range, unless clamping);
/// a cursor together with `offset`, `page` or `per_page`, or a repeated `cursor` / `limit`,
/// answers 400 `INVALID_QUERY`. An empty `cursor=` is the first page. Without a `CursorKey`
/// (none in the request, and none as the process's default) every request answers 500.
///
/// ```
/// use chopin_core::prelude::*;
/// use chopin_core::extractors::CursorPagination;
///
/// #[derive(serde::Serialize)]
/// struct Item { id: i64 }
///
/// // `ORDER BY id LIMIT page.fetch_limit()` after `page.after`.
/// async fn list(page: CursorPagination<i64>) -> Result<ApiResponse<Vec<Item>>, ChopinError> {
///     let start = page.after.map_or(1, |id| id + 1);
///     let rows: Vec<Item> = (start..)
///         .take(page.fetch_limit() as usize)
///         .take_while(|id| *id <= 95)
///         .map(|id| Item { id })
///         .collect();
///     ApiResponse::cursor_paginated(rows, &page, |item| item.id)
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(list));
/// ```
#[derive(Debug, Clone)]
pub struct CursorPagination<K> {
    /// Number of items to return.
    pub limit: u64,
    /// The sort key of the last item of the previous page (`None`: the first page). Return the
    /// items strictly after it, in the list's order.
    pub after: Option<K>,
    key: CursorKey,
}

impl<K> CursorPagination<K> {
    /// Parse a raw query string (without the leading `?`) under the given limits, verifying
    /// any cursor with `key`.
    pub fn from_query(
        query: &str,
        config: PaginationConfig,
        key: &CursorKey,
    ) -> Result<Self, ChopinError>
    where
        K: DeserializeOwned,
    {
        let mut cursor: Option<String> = None;
        let mut limit = None;
        let mut offset_style = None;
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "cursor" => {
                    if cursor.is_some() {
                        return Err(invalid("`cursor` is given more than once"));
                    }
                    cursor = Some(value.into_owned());
                }
                "limit" => {
                    if limit.is_some() {
                        return Err(invalid("`limit` is given more than once"));
                    }
                    limit = Some(parse_number("limit", &value)?);
                }
                "offset" | "page" | "per_page" => offset_style = Some(name.into_owned()),
                _ => {}
            }
        }
        let cursor = cursor.filter(|c| !c.is_empty());
        if let (Some(_), Some(name)) = (&cursor, offset_style) {
            return Err(invalid(&format!(
                "use either `cursor` or `{name}`, not both"
            )));
        }
        let limit = config.page_size("limit", limit)?;
        let after = cursor.map(|c| key.decode::<K>(&c)).transpose()?;
        Ok(CursorPagination {
            limit,
            after,
            key: key.clone(),
        })
    }

    /// How many rows to fetch: [`limit`](Self::limit) + 1, the extra row telling whether there
    /// is a next page ([`finish`](Self::finish) drops it).
    pub fn fetch_limit(&self) -> u64 {
        self.limit.saturating_add(1)
    }

    /// The signed cursor that continues after `key`.
    pub fn cursor_after(&self, key: &K) -> Result<String, ChopinError>
    where
        K: Serialize,
    {
        self.key.encode(key)
    }

    /// Cut `rows` (fetched with [`fetch_limit`](Self::fetch_limit)) to the page, and the
    /// cursor of the next page: the last kept row's key, when a row beyond the page was
    /// fetched; `None` on the last page.
    pub fn finish<T>(
        &self,
        mut rows: Vec<T>,
        key_of: impl Fn(&T) -> K,
    ) -> Result<(Vec<T>, Option<String>), ChopinError>
    where
        K: Serialize,
    {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if rows.len() <= limit {
            return Ok((rows, None));
        }
        rows.truncate(limit);
        let next = match rows.last() {
            Some(last) => Some(self.cursor_after(&key_of(last))?),
            None => None,
        };
        Ok((rows, next))
    }
}

fn invalid(message: &str) -> ChopinError {
    ChopinError::InvalidQuery(message.to_string())
}

impl<S, K> FromRequestParts<S> for CursorPagination<K>
where
    S: Send + Sync,
    K: DeserializeOwned + Send,
{
    type Rejection = ChopinError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let config = parts
            .extensions
            .get::<PaginationConfig>()
            .copied()
            .unwrap_or_default();
        let key = match parts.extensions.get::<CursorKey>() {
            Some(key) => Some(key),
            None if parts.extensions.get::<NoCursorKey>().is_some() => None,
            None => DEFAULT_KEY.get().and_then(Option::as_ref),
        };
        let Some(key) = key else {
            return Err(ChopinError::internal(
                "CursorPagination: no CursorKey in the request extensions (App installs one from \
                 CHOPIN_CURSOR_SECRET; outside App add `axum::Extension(CursorKey)`)",
            ));
        };
        CursorPagination::from_query(parts.uri.query().unwrap_or(""), config, key)
    }
}

/// The OpenAPI `cursor` query parameter alone, for a handler that takes both
/// [`Pagination`](super::Pagination) (which documents `limit` and `offset`) and
/// [`CursorPagination`]: `params(Pagination, CursorParameter)`.
#[derive(Debug, Clone, Copy)]
pub struct CursorParameter(PhantomData<()>);

fn cursor_parameter(location: ParameterIn) -> Parameter {
    ParameterBuilder::new()
        .name("cursor")
        .parameter_in(location)
        .required(Required::False)
        .description(Some(
            "Opaque cursor of the next page: `meta.next_cursor` of the previous page. Valid \
             for a limited time; an altered or expired cursor answers 400 `INVALID_CURSOR`. \
             Not with `offset`, `page` or `per_page`.",
        ))
        .schema(Some(
            ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)),
        ))
        .build()
}

impl IntoParams for CursorParameter {
    fn into_params(parameter_in_provider: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![cursor_parameter(
            parameter_in_provider().unwrap_or(ParameterIn::Query),
        )]
    }
}

/// `cursor` and `limit` (with the default limits: 20, at most 100).
impl<K> IntoParams for CursorPagination<K> {
    fn into_params(parameter_in_provider: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let location = parameter_in_provider().unwrap_or(ParameterIn::Query);
        let defaults = PaginationConfig::default();
        vec![
            cursor_parameter(location.clone()),
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(location)
                .required(Required::False)
                .description(Some(format!(
                    "Page size (default {}, at most {}).",
                    defaults.default_limit, defaults.max_limit
                )))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Integer))
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                        .minimum(Some(1u64))
                        .maximum(Some(defaults.max_limit)),
                ))
                .build(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CursorKey {
        CursorKey::new(Signer::new(&[3u8; 32]).unwrap(), Duration::from_secs(60))
    }

    fn parse(q: &str) -> Result<CursorPagination<(String, i64)>, ChopinError> {
        CursorPagination::from_query(q, PaginationConfig::default(), &key())
    }

    #[test]
    fn first_page_then_cursor() {
        let first = parse("limit=2").unwrap();
        assert_eq!((first.limit, first.after.clone()), (2, None));
        let (rows, next) = first
            .finish(vec![("a", 1), ("b", 2), ("c", 3)], |r| {
                (r.0.to_string(), r.1)
            })
            .unwrap();
        assert_eq!(rows, vec![("a", 1), ("b", 2)]);
        let next = next.expect("a next page");
        let q = format!("cursor={next}&limit=2");
        let second = parse(&q).unwrap();
        assert_eq!(second.after, Some(("b".to_string(), 2)));
        // The last page has no cursor.
        let (rows, next) = second
            .finish(vec![("c", 3)], |r| (r.0.to_string(), r.1))
            .unwrap();
        assert_eq!((rows.len(), next), (1, None));
        // An empty cursor is the first page; defaults apply.
        let p = parse("cursor=").unwrap();
        assert_eq!((p.limit, p.after), (20, None));
    }

    #[test]
    fn refusals() {
        let code = |q: &str| parse(q).unwrap_err().code().as_str();
        let good = key().encode(&("b", 2)).unwrap();
        assert_eq!(code("cursor=abc"), "INVALID_CURSOR");
        let mut tampered = good.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(code(&format!("cursor={tampered}")), "INVALID_CURSOR");
        let other = CursorKey::new(Signer::new(&[4u8; 32]).unwrap(), Duration::from_secs(60));
        let foreign = other.encode(&("b", 2)).unwrap();
        assert_eq!(code(&format!("cursor={foreign}")), "INVALID_CURSOR");
        // Same key, another purpose.
        let signer = Signer::new(&[3u8; 32]).unwrap();
        let invite = signer.sign("invite", br#"["b",2]"#, Duration::from_secs(60));
        assert_eq!(code(&format!("cursor={invite}")), "INVALID_CURSOR");
        // Expired.
        let expired = signer.sign_until(
            CURSOR_PURPOSE,
            br#"["b",2]"#,
            std::time::SystemTime::now() - Duration::from_secs(1),
        );
        let err = parse(&format!("cursor={expired}")).unwrap_err();
        assert_eq!(err.code().as_str(), "INVALID_CURSOR");
        assert!(err.to_string().contains("expired"), "{err}");
        // Authentic, but a key of another shape.
        let wrong_shape = key().encode(&42).unwrap();
        assert_eq!(code(&format!("cursor={wrong_shape}")), "INVALID_CURSOR");
        // Query mistakes are INVALID_QUERY.
        assert_eq!(code(&format!("cursor={good}&offset=5")), "INVALID_QUERY");
        assert_eq!(code(&format!("cursor={good}&page=2")), "INVALID_QUERY");
        assert_eq!(
            code(&format!("cursor={good}&cursor={good}")),
            "INVALID_QUERY"
        );
        assert_eq!(code("limit=0"), "INVALID_QUERY");
        assert_eq!(code("limit=101"), "INVALID_QUERY");
        assert_eq!(code("limit=-1"), "INVALID_QUERY");
        assert!(parse(&format!("cursor={good}&limit=100")).is_ok());
    }
}
