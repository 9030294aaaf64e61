//! Pass-through: database JSON → HTTP body.
//!
//! When the database produces the JSON itself (PostgreSQL `json` / `jsonb`, SQLite
//! `json_object`), Chopin writes those bytes into the response without parsing them into a
//! tree — as they are, or through the single-pass [`Rewriter`] (validation, minification,
//! snake_case → camelCase keys, `__typename`, top-level projection).
//!
//! [`JsonProjection`] derives, from a Rust struct, the SQL that makes the database build that
//! struct's JSON (with the keys serde and the OpenAPI schema use), so most queries need no
//! rewriting at all. [`TableView`] stores those documents in a `tv_*` table kept fresh by
//! triggers, for the cheapest reads.

mod projection;
#[cfg(chopin_db)]
mod query;
mod rewrite;
mod rows;
#[cfg(chopin_db)]
mod statement;
#[cfg(chopin_db)]
mod stream;
#[cfg(chopin_db)]
mod table_view;

pub use projection::JsonProjection;
#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use query::JsonQuery;
pub use rewrite::{RewriteError, Rewriter, snake_to_camel};
pub use rows::{JsonRows, RawJson, RowEncoder};
/// Re-exported from sqlx: wrap dynamic SQL in `AssertSqlSafe` to promise it holds no
/// untrusted input (values always go through [`JsonQuery::bind`]).
#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sea_orm::sqlx::{AssertSqlSafe, SqlSafeStr};
#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use statement::Param;
#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use stream::{DEFAULT_CHUNK_SIZE, JsonStream};
#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use table_view::{
    Freshness, KeyType, LOCK_ESCALATION, REGISTRY_TABLE, Rebuilt, Storage, TableView,
    rebuild_table_views,
};
