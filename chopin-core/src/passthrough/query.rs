//! Running a query whose single column is JSON and collecting the rows' bytes.

use std::ops::ControlFlow;

use futures_util::TryStreamExt;
use sea_orm::sqlx::{self, SqlSafeStr, SqlStr};

use super::rewrite::Rewriter;
use super::rows::{JsonRows, RawJson, RowEncoder};
use super::stream::{DEFAULT_CHUNK_SIZE, JsonStream};
use crate::db::Db;
use crate::error::ChopinError;

/// A bound query parameter. Parameters are always sent to the database separately from the
/// SQL text, never interpolated into it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Param {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 32-bit integer.
    I32(i32),
    /// A 64-bit integer.
    I64(i64),
    /// A double.
    F64(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

macro_rules! param_from {
    ($($t:ty => $v:ident $(as $cast:ty)?),* $(,)?) => {$(
        impl From<$t> for Param {
            fn from(value: $t) -> Self {
                Param::$v(value $(as $cast)?)
            }
        }
    )*};
}

param_from!(
    bool => Bool,
    i16 => I32 as i32,
    i32 => I32,
    u16 => I32 as i32,
    i64 => I64,
    u32 => I64 as i64,
    f32 => F64 as f64,
    f64 => F64,
    String => Text,
    Vec<u8> => Bytes,
);

impl From<&str> for Param {
    fn from(value: &str) -> Self {
        Param::Text(value.to_string())
    }
}

impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(value: Option<T>) -> Self {
        value.map_or(Param::Null, Into::into)
    }
}

impl TryFrom<u64> for Param {
    type Error = ChopinError;

    fn try_from(value: u64) -> Result<Self, ChopinError> {
        i64::try_from(value)
            .map(Param::I64)
            .map_err(|_| ChopinError::BadRequest(format!("{value} is out of range")))
    }
}

/// Bind every [`Param`] onto a sqlx query, whatever the backend.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut q = $query;
        for p in $params {
            q = match p.clone() {
                Param::Null => q.bind(None::<String>),
                Param::Bool(v) => q.bind(v),
                Param::I32(v) => q.bind(v),
                Param::I64(v) => q.bind(v),
                Param::F64(v) => q.bind(v),
                Param::Text(v) => q.bind(v),
                Param::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

/// A query whose rows are single JSON values, answered without parsing them.
///
/// The query must return exactly one column per row, of type `json`, `jsonb` or `text` in
/// PostgreSQL, or text in SQLite (for example built with `json_build_object` / `json_object`).
/// `json` / `jsonb` values are copied as they are; text values are validated first, unless
/// [`trust_text`](Self::trust_text) says the SQL itself produced them.
///
/// ```no_run
/// use chopin_core::passthrough::{JsonQuery, JsonRows, Rewriter};
/// use chopin_core::prelude::*;
///
/// async fn list(db: &Db, page: Pagination) -> Result<JsonRows, ChopinError> {
///     let rows = JsonQuery::new(
///         "SELECT json_build_object('id', id, 'title', title) FROM post ORDER BY id LIMIT $1 OFFSET $2",
///     )
///     .bind(page.limit as i64)
///     .bind(page.offset as i64)
///     .list(db)
///     .await?;
///     Ok(rows.paginated(&page, None))
/// }
///
/// async fn show(db: &Db, id: i64) -> Result<JsonRows, ChopinError> {
///     JsonQuery::new("SELECT data FROM tv_post WHERE id = $1")
///         .bind(id)
///         .rewrite(Rewriter::new().camel_case(true).typename("Post"))
///         .not_found(format!("post {id} not found"))
///         .one(db)
///         .await
/// }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct JsonQuery {
    sql: SqlStr,
    params: Vec<Param>,
    encoder: RowEncoder,
    not_found: Option<String>,
    chunk_size: usize,
    capacity_hint: usize,
}

impl JsonQuery {
    /// A query from SQL text. Use placeholders (`$1` in PostgreSQL, `?` in SQLite) and
    /// [`bind`](Self::bind) for every value. Dynamic SQL must be wrapped in
    /// [`AssertSqlSafe`](sqlx::AssertSqlSafe), a promise that it holds no untrusted input.
    pub fn new(sql: impl SqlSafeStr) -> Self {
        Self {
            sql: sql.into_sql_str(),
            params: Vec::new(),
            encoder: RowEncoder::new(),
            not_found: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            capacity_hint: 4096,
        }
    }

    /// Bind the next parameter.
    pub fn bind(mut self, value: impl Into<Param>) -> Self {
        self.params.push(value.into());
        self
    }

    /// Rewrite each row (camelCase keys, `__typename`, projection) in one pass over its bytes.
    pub fn rewrite(mut self, rewriter: Rewriter) -> Self {
        self.encoder = self.encoder.with_rewriter(rewriter);
        self
    }

    /// Skip validation of text columns: only for SQL that builds the JSON itself.
    pub fn trust_text(mut self) -> Self {
        self.encoder = self.encoder.trust_text(true);
        self
    }

    /// The message of the 404 that [`one`](Self::one) answers when there is no row.
    pub fn not_found(mut self, message: impl Into<String>) -> Self {
        self.not_found = Some(message.into());
        self
    }

    /// Bytes per chunk for [`stream`](Self::stream) (default 64 KiB, at least 1 KiB).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(1024);
        self
    }

    /// Initial response buffer size for [`list`](Self::list) (default 4 KiB).
    pub fn capacity_hint(mut self, bytes: usize) -> Self {
        self.capacity_hint = bytes;
        self
    }

    /// All rows as a list envelope.
    pub async fn list(self, db: &Db) -> Result<JsonRows, ChopinError> {
        let mut rows = JsonRows::list_with(self.encoder.clone(), self.capacity_hint);
        self.for_each_row(db, |raw| rows.push(raw).map(|()| ControlFlow::Continue(())))
            .await?;
        Ok(rows)
    }

    /// All rows in a GraphQL-style envelope `{"data":{"<field>":[…]}}`.
    pub async fn graphql(self, db: &Db, field: &str) -> Result<JsonRows, ChopinError> {
        let mut rows = JsonRows::graphql(field, self.encoder.clone(), self.capacity_hint);
        self.for_each_row(db, |raw| rows.push(raw).map(|()| ControlFlow::Continue(())))
            .await?;
        Ok(rows)
    }

    /// The first row as a single-object envelope; 404 `NOT_FOUND` when there is none. A SQL
    /// `NULL` value gives `"data":null`.
    pub async fn one(self, db: &Db) -> Result<JsonRows, ChopinError> {
        let message = self
            .not_found
            .clone()
            .unwrap_or_else(|| "resource not found".into());
        self.optional_row(db)
            .await?
            .ok_or(ChopinError::NotFound(message))
    }

    /// The first row as a single-object envelope, or `"data":null` when there is none.
    pub async fn optional(self, db: &Db) -> Result<JsonRows, ChopinError> {
        Ok(self.optional_row(db).await?.unwrap_or_else(JsonRows::null))
    }

    async fn optional_row(self, db: &Db) -> Result<Option<JsonRows>, ChopinError> {
        let encoder = self.encoder.clone();
        let mut found = None;
        self.for_each_row(db, |raw| {
            found = Some(JsonRows::one(raw, encoder.clone())?);
            Ok(ControlFlow::Break(()))
        })
        .await?;
        Ok(found)
    }

    /// Stream the rows as a list envelope, in chunks of [`chunk_size`](Self::chunk_size)
    /// bytes. See [`JsonStream`].
    pub async fn stream(self, db: &Db) -> Result<JsonStream, ChopinError> {
        JsonStream::start(self, db.clone()).await
    }

    pub(super) fn encoder(&self) -> &RowEncoder {
        &self.encoder
    }

    pub(super) fn chunk_len(&self) -> usize {
        self.chunk_size
    }

    /// Run the query and hand each row's raw JSON to `f`, without copying it first.
    pub(super) async fn for_each_row(
        self,
        db: &Db,
        mut f: impl FnMut(RawJson<'_>) -> Result<ControlFlow<()>, ChopinError>,
    ) -> Result<(), ChopinError> {
        #[cfg(feature = "postgres")]
        if let Some(pool) = db.postgres_pool() {
            let mut rows = self.pg_query().fetch(pool);
            while let Some(row) = rows.try_next().await? {
                if f(pg_raw(&row)?)?.is_break() {
                    break;
                }
            }
            return Ok(());
        }
        #[cfg(feature = "sqlite")]
        if let Some(pool) = db.sqlite_pool() {
            let mut rows = self.sqlite_query().fetch(pool);
            while let Some(row) = rows.try_next().await? {
                if f(sqlite_raw(&row)?)?.is_break() {
                    break;
                }
            }
            return Ok(());
        }
        Err(ChopinError::internal("no database backend compiled in"))
    }

    #[cfg(feature = "postgres")]
    pub(super) fn pg_query(
        &self,
    ) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        bind_params!(
            sqlx::query::<sqlx::Postgres>(self.sql.clone()),
            &self.params
        )
    }

    #[cfg(feature = "sqlite")]
    pub(super) fn sqlite_query(
        &self,
    ) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        bind_params!(sqlx::query::<sqlx::Sqlite>(self.sql.clone()), &self.params)
    }
}

/// The raw JSON of a PostgreSQL row's first column.
#[cfg(feature = "postgres")]
pub(super) fn pg_raw(row: &sqlx::postgres::PgRow) -> Result<RawJson<'_>, ChopinError> {
    use sqlx::postgres::PgValueFormat;
    use sqlx::{Row, TypeInfo, ValueRef};
    let value = row.try_get_raw(0)?;
    if value.is_null() {
        return Ok(RawJson::Null);
    }
    let kind = match value.type_info().name() {
        "JSONB" => 'b',
        "JSON" => 'j',
        // sqlx calls `bpchar` (`char(n)`) "CHAR"; the one-byte `"char"` type is `"CHAR"`
        // with the quotes, and is not text.
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" => 't',
        other => {
            return Err(ChopinError::internal(format!(
                "pass-through column has type {other}; expected json, jsonb or text"
            )));
        }
    };
    let format = value.format();
    let bytes = value.as_bytes().map_err(ChopinError::internal)?;
    Ok(match (kind, format) {
        // Binary jsonb: a version byte, then the JSON text. Only version 1 exists.
        ('b', PgValueFormat::Binary) => match bytes.split_first() {
            Some((1, text)) => RawJson::Trusted(text),
            Some((version, _)) => {
                return Err(ChopinError::internal(format!(
                    "unsupported jsonb binary format version {version}"
                )));
            }
            None => return Err(ChopinError::internal("empty jsonb value")),
        },
        ('b' | 'j', _) => RawJson::Trusted(bytes),
        _ => RawJson::Untrusted(bytes),
    })
}

/// The raw JSON of a SQLite row's first column.
#[cfg(feature = "sqlite")]
pub(super) fn sqlite_raw(row: &sqlx::sqlite::SqliteRow) -> Result<RawJson<'_>, ChopinError> {
    use sqlx::Row;
    // Borrowed from the row: no per-row `String`.
    let text: Option<&str> = row.try_get(0)?;
    Ok(text.map_or(RawJson::Null, |t| RawJson::Untrusted(t.as_bytes())))
}
