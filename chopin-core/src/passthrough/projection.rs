//! SQL JSON projections derived from Rust structs.
//!
//! The pass-through responder writes the JSON the database builds straight into the response.
//! [`JsonProjection`] (trait and derive) writes that SQL for you: from a struct it produces
//! a `row_to_json` expression (and `jsonb_build_object(...)`) for PostgreSQL and the
//! `json_object(...)` call for SQLite, with camelCase keys, so the database already emits the
//! keys the API documents and the runtime key rewriter is not needed.
//!
//! On PostgreSQL, `row_to_json` over a sub-select whose columns are aliased to the JSON keys
//! costs less CPU per row than `json_build_object` and prints compact JSON (`{"id":1}`, as
//! serde does; `json_build_object` prints `{"id" : 1}`). [`POSTGRES_JSON`] is that expression;
//! [`POSTGRES_COLUMNS`] is its select list, for the cheaper still lateral form
//! `SELECT row_to_json(j) FROM post p CROSS JOIN LATERAL (SELECT <columns>) j WHERE …`.
//! `docs/passthrough.md` has the measurements (`bench/projection-sql.sh`).
//!
//! [`POSTGRES_JSON`]: JsonProjection::POSTGRES_JSON
//! [`POSTGRES_COLUMNS`]: JsonProjection::POSTGRES_COLUMNS
//!
//! The derive requires `#[serde(rename_all = "camelCase")]`, so one struct carrying
//! `#[derive(JsonProjection, serde::Serialize, utoipa::ToSchema)]` describes one shape three
//! ways that cannot drift apart: the SQL's JSON keys, serde's (for tests and for the non
//! pass-through path) and the OpenAPI schema of the pass-through response.
//!
//! ```
//! use chopin_core::passthrough::JsonProjection;
//!
//! #[derive(JsonProjection, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
//! #[serde(rename_all = "camelCase")]
//! #[projection(table = "p")]
//! struct PostSummary {
//!     id: i64,
//!     title: String,
//!     created_at: String,
//!     // A subquery: the same SQL on both backends.
//!     #[projection(sql = "(SELECT count(*) FROM comment c WHERE c.post_id = p.id)")]
//!     comment_count: i64,
//!     // SQLite has no boolean type (it would emit 0/1): one expression per backend.
//!     #[projection(
//!         postgres = "p.published",
//!         sqlite = "json(iif(p.published, 'true', 'false'))"
//!     )]
//!     published: bool,
//!     // Not part of the response, nor of its schema.
//!     #[serde(skip)]
//!     #[allow(dead_code)]
//!     internal_score: f64,
//! }
//!
//! // The constants are string literals: build the query text once.
//! let sql = format!(
//!     "SELECT {} FROM post p WHERE p.published ORDER BY p.id",
//!     PostSummary::POSTGRES_JSON,
//! );
//! assert_eq!(
//!     sql,
//!     "SELECT (SELECT row_to_json(j) FROM (SELECT p.\"id\" AS \"id\", \
//!      p.\"title\" AS \"title\", p.\"created_at\" AS \"createdAt\", \
//!      (SELECT count(*) FROM comment c WHERE c.post_id = p.id) AS \"commentCount\", \
//!      p.published AS \"published\") j) \
//!      FROM post p WHERE p.published ORDER BY p.id"
//! );
//! // The cheapest form on PostgreSQL: the same columns in a lateral sub-select.
//! let lateral = format!(
//!     "SELECT row_to_json(j) FROM post p CROSS JOIN LATERAL (SELECT {}) j \
//!      WHERE p.published ORDER BY p.id",
//!     PostSummary::POSTGRES_COLUMNS,
//! );
//! assert!(lateral.contains("p.published AS \"published\") j WHERE"));
//! assert_eq!(
//!     PostSummary::SQLITE,
//!     "json_object('id', p.\"id\", 'title', p.\"title\", 'createdAt', p.\"created_at\", \
//!      'commentCount', (SELECT count(*) FROM comment c WHERE c.post_id = p.id), \
//!      'published', json(iif(p.published, 'true', 'false')))"
//! );
//! assert_eq!(PostSummary::FIELDS[2], ("createdAt", "p.\"created_at\""));
//! ```
//!
//! The projection's text is fixed at compile time and never contains request data; filters and
//! limits go in the rest of the query as bound parameters, as usual.
//!
//! # Writing `sql`, `postgres` and `sqlite` expressions
//!
//! * An expression is pasted verbatim as one argument of the JSON function: it must be a
//!   single complete expression (wrap anything with a top-level comma in parentheses).
//! * `table = "..."` qualifies only plain columns; write the alias yourself inside `sql`.
//! * Nested JSON: PostgreSQL nests `json`/`jsonb` values as JSON. SQLite nests the result of
//!   a JSON function (`json_object`, `json_group_array`, `json(...)`, also through a scalar
//!   subquery), but a value read from a table column, a view, a CTE or a `FROM` subquery is
//!   plain text to it and would be embedded as a JSON *string*: wrap such values in
//!   `json(...)`, e.g. `sqlite = "json(p.metadata)"` (wrapping valid JSON is always safe).
//! * Booleans: SQLite stores them as integers, so `json_object` emits `0`/`1`; turn them into
//!   JSON booleans with `json(iif(col, 'true', 'false'))` as in the example above.
//! * On PostgreSQL every expression is evaluated inside a sub-select (see
//!   [`POSTGRES_JSON`]): an aggregate whose arguments do not reference the outer query, such
//!   as `count(*)`, is computed by that sub-select (one row) rather than by a `GROUP BY` of
//!   the outer query. Compute such aggregates in the outer query's `FROM` (a derived table)
//!   or in a correlated subquery, as `commentCount` above does.
//! * Compact nesting on PostgreSQL: `json_agg` and `json_build_object` print `", "` and
//!   `" : "`; `row_to_json` and `array_to_json` print no spaces. For byte-identical output
//!   nest `(SELECT row_to_json(a) FROM (SELECT … AS "key") a)` objects and
//!   `coalesce(array_to_json(array_agg(…)), '[]')` arrays (`array_agg` of a text or number
//!   column is already a compact JSON array inside `row_to_json`). `json_agg` and
//!   `array_agg` return `NULL` (not `[]`) over no rows: wrap them in `coalesce(…, '[]')`.

pub use chopin_macros::JsonProjection;

/// The SQL that makes the database build a type's JSON representation.
///
/// Implement it with `#[derive(JsonProjection)]` (see the [module documentation](self)): all
/// the constants are string literals computed at compile time. Keys are SQL string literals
/// (single quotes doubled) and plain columns are quoted identifiers (double quotes doubled),
/// so any key and column name is written safely.
///
/// ```
/// use chopin_core::passthrough::JsonProjection;
///
/// #[derive(JsonProjection, serde::Serialize)]
/// #[serde(rename_all = "camelCase")]
/// struct User {
///     id: i64,
///     display_name: String,
///     #[projection(column = "email_address")]
///     email: String,
/// }
///
/// assert_eq!(
///     User::FIELDS,
///     &[("id", "\"id\""), ("displayName", "\"display_name\""), ("email", "\"email_address\"")]
/// );
/// assert_eq!(
///     User::POSTGRES_JSON,
///     "(SELECT row_to_json(j) FROM (SELECT \"id\" AS \"id\", \
///      \"display_name\" AS \"displayName\", \"email_address\" AS \"email\") j)"
/// );
/// assert_eq!(
///     User::POSTGRES_COLUMNS,
///     "\"id\" AS \"id\", \"display_name\" AS \"displayName\", \"email_address\" AS \"email\""
/// );
/// assert_eq!(
///     User::POSTGRES_JSONB,
///     "jsonb_build_object('id', \"id\", 'displayName', \"display_name\", \
///      'email', \"email_address\")"
/// );
/// assert_eq!(
///     User::SQLITE,
///     "json_object('id', \"id\", 'displayName', \"display_name\", 'email', \"email_address\")"
/// );
/// ```
pub trait JsonProjection {
    /// (json key, SQL expression) pairs in declaration order, with the PostgreSQL expression
    /// for a field that has one per backend (see [`SQLITE_FIELDS`](Self::SQLITE_FIELDS)).
    /// Keys are unescaped; expressions are ready to paste into SQL.
    const FIELDS: &'static [(&'static str, &'static str)];
    /// The same pairs with the SQLite expression for a field that has one per backend;
    /// identical to [`FIELDS`](Self::FIELDS) otherwise.
    const SQLITE_FIELDS: &'static [(&'static str, &'static str)];
    /// `(SELECT row_to_json(j) FROM (SELECT "id" AS "id", "created_at" AS "createdAt") j)`:
    /// one expression of PostgreSQL type `json`, keys in declaration order, printed compact
    /// (`{"id":1,"createdAt":…}`, the bytes serde writes for the same values). Paste it into
    /// any select list; the sub-select sees the outer query's tables.
    ///
    /// It used to be `json_build_object(…)`, which costs more CPU per row and prints
    /// `{"id" : 1, …}`.
    const POSTGRES_JSON: &'static str;
    /// `"id" AS "id", "created_at" AS "createdAt"`: the select list of
    /// [`POSTGRES_JSON`](Self::POSTGRES_JSON), for the cheapest PostgreSQL form, a lateral
    /// sub-select the planner flattens into the scan:
    /// `SELECT row_to_json(j) FROM post p CROSS JOIN LATERAL (SELECT <columns>) j WHERE … ORDER BY …`.
    /// Same bytes as `POSTGRES_JSON`.
    const POSTGRES_COLUMNS: &'static str;
    /// `jsonb_build_object('id', "id", 'createdAt', "created_at")`: PostgreSQL `jsonb` (keys
    /// come out sorted by length, then bytes, as `jsonb` stores them).
    const POSTGRES_JSONB: &'static str;
    /// `json_object('id', "id", 'createdAt', "created_at")`: SQLite.
    const SQLITE: &'static str;
}
