//! Running a query whose single column is JSON and collecting the rows' bytes.

use std::ops::ControlFlow;

use futures_util::TryStreamExt;
use sea_orm::sqlx::SqlSafeStr;

use super::rewrite::Rewriter;
use super::rows::{JsonRows, RawJson, RowEncoder};
#[cfg(feature = "postgres")]
use super::statement::pg_raw;
#[cfg(feature = "sqlite")]
use super::statement::sqlite_raw;
use super::statement::{Param, Statement};
use super::stream::{DEFAULT_CHUNK_SIZE, JsonStream};
use crate::db::Db;
use crate::error::ChopinError;

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
    statement: Statement,
    encoder: RowEncoder,
    not_found: Option<String>,
    chunk_size: usize,
    capacity_hint: usize,
}

impl JsonQuery {
    /// A query from SQL text. Use placeholders (`$1` in PostgreSQL, `?` in SQLite) and
    /// [`bind`](Self::bind) for every value. Dynamic SQL must be wrapped in
    /// [`AssertSqlSafe`](super::AssertSqlSafe), a promise that it holds no untrusted input.
    pub fn new(sql: impl SqlSafeStr) -> Self {
        Self {
            statement: Statement {
                sql: sql.into_sql_str(),
                params: Vec::new(),
            },
            encoder: RowEncoder::new(),
            not_found: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            capacity_hint: 4096,
        }
    }

    /// Bind the next parameter.
    pub fn bind(mut self, value: impl Into<Param>) -> Self {
        self.statement.params.push(value.into());
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
        let rows = JsonRows::list_with(self.encoder.clone(), self.capacity_hint);
        let mut rows = started(rows);
        self.for_each_row(db, |raw| rows.push(raw).map(|()| ControlFlow::Continue(())))
            .await?;
        Ok(rows)
    }

    /// All rows in a GraphQL-style envelope `{"data":{"<field>":[…]}}`.
    pub async fn graphql(self, db: &Db, field: &str) -> Result<JsonRows, ChopinError> {
        let mut rows = started(JsonRows::graphql(
            field,
            self.encoder.clone(),
            self.capacity_hint,
        ));
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
        let null = started(JsonRows::null());
        Ok(self.optional_row(db).await?.unwrap_or(null))
    }

    async fn optional_row(self, db: &Db) -> Result<Option<JsonRows>, ChopinError> {
        #[cfg(feature = "metrics")]
        let start = std::time::Instant::now();
        let encoder = self.encoder.clone();
        let mut found = None;
        self.for_each_row(db, |raw| {
            found = Some(JsonRows::one(raw, encoder.clone())?);
            Ok(ControlFlow::Break(()))
        })
        .await?;
        #[cfg(feature = "metrics")]
        let found = found.map(|rows| rows.query_started(start));
        Ok(found)
    }

    /// Stream the rows as a list envelope, in chunks of [`chunk_size`](Self::chunk_size)
    /// bytes. See [`JsonStream`].
    pub async fn stream(self, db: &Db) -> Result<JsonStream, ChopinError> {
        JsonStream::start(self.statement, self.encoder, self.chunk_size, db.clone()).await
    }

    /// Run the query and hand each row's raw JSON to `f`, without copying it first.
    async fn for_each_row(
        self,
        db: &Db,
        mut f: impl FnMut(RawJson<'_>) -> Result<ControlFlow<()>, ChopinError>,
    ) -> Result<(), ChopinError> {
        // While the database is down, answer 503 at once instead of waiting for the pool.
        db.breaker_check()?;
        // A slow first row may be a pool that cannot connect: the breaker then probes.
        // The connection is taken first, so that the wait for it is timed apart from the
        // statement (feature `metrics`).
        db.watch(async move {
            #[cfg(feature = "postgres")]
            if let Some(pool) = db.postgres_pool() {
                let mut conn = db.acquire(pool).await?;
                #[cfg(feature = "metrics")]
                let start = std::time::Instant::now();
                let mut rows = self
                    .statement
                    .pg_query()
                    .fetch(&mut *conn)
                    .inspect_err(|e| db.observe_error(e));
                while let Some(row) = rows.try_next().await? {
                    if f(pg_raw(&row)?)?.is_break() {
                        break;
                    }
                }
                db.observe_success();
                #[cfg(feature = "metrics")]
                db.statement_done(start);
                return Ok(());
            }
            #[cfg(feature = "sqlite")]
            if let Some(pool) = db.sqlite_pool() {
                let mut conn = db.acquire(pool).await?;
                #[cfg(feature = "metrics")]
                let start = std::time::Instant::now();
                let mut rows = self
                    .statement
                    .sqlite_query()
                    .fetch(&mut *conn)
                    .inspect_err(|e| db.observe_error(e));
                while let Some(row) = rows.try_next().await? {
                    if f(sqlite_raw(&row)?)?.is_break() {
                        break;
                    }
                }
                db.observe_success();
                #[cfg(feature = "metrics")]
                db.statement_done(start);
                return Ok(());
            }
            Err(ChopinError::internal("no database backend compiled in"))
        })
        .await
    }
}

/// `rows`, marked with the start of its query now (for `chopin_passthrough_first_byte_seconds`,
/// feature `metrics`).
fn started(rows: JsonRows) -> JsonRows {
    #[cfg(feature = "metrics")]
    {
        rows.query_started(std::time::Instant::now())
    }
    #[cfg(not(feature = "metrics"))]
    {
        rows
    }
}
