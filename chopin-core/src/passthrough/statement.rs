//! A query's SQL text with its bound parameters, and reading a row's single JSON column as
//! raw bytes, per backend: what both the collecting ([`JsonQuery`](super::JsonQuery)) and the
//! streaming ([`JsonStream`](super::JsonStream)) paths run.

use sea_orm::sqlx::{self, SqlStr};

use super::rows::RawJson;
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
#[cfg(chopin_db)]
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

/// The SQL text and its parameters, bound onto a sqlx query of either backend.
#[derive(Debug, Clone)]
pub(super) struct Statement {
    pub(super) sql: SqlStr,
    pub(super) params: Vec<Param>,
}

impl Statement {
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
