//! Procedural macros for Chopin.
//!
//! Chopin adds a macro only where it removes real boilerplate. Applications do not depend on
//! this crate directly: `chopin-core` re-exports its macros where they belong, e.g.
//! [`JsonProjection`] as `chopin_core::passthrough::JsonProjection`.

#![forbid(unsafe_code)]

mod projection;
mod sql;

use proc_macro::TokenStream;

/// Derives `chopin_core::passthrough::JsonProjection`: the SQL that makes the database build a
/// struct's JSON, for PostgreSQL (`row_to_json` over an aliased sub-select, and
/// `jsonb_build_object`) and SQLite (`json_object`), with the same camelCase keys serde and
/// utoipa use for the struct.
///
/// Every string is computed at compile time and emitted as a literal.
///
/// ```
/// use chopin_core::passthrough::JsonProjection;
///
/// #[derive(JsonProjection, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
/// #[serde(rename_all = "camelCase")]
/// #[projection(table = "p")]
/// struct Post {
///     id: i64,
///     created_at: String,
///     #[serde(rename = "headline")]
///     title: String,
///     #[projection(sql = "(SELECT count(*) FROM comment c WHERE c.post_id = p.id)")]
///     comment_count: i64,
/// }
///
/// assert_eq!(
///     Post::POSTGRES_JSON,
///     "(SELECT row_to_json(j) FROM (SELECT p.\"id\" AS \"id\", \
///      p.\"created_at\" AS \"createdAt\", p.\"title\" AS \"headline\", \
///      (SELECT count(*) FROM comment c WHERE c.post_id = p.id) AS \"commentCount\") j)"
/// );
/// ```
///
/// # Struct attributes
///
/// * `#[serde(rename_all = "camelCase")]` — **required**. It keeps the keys the SQL produces,
///   the serde view of the struct and its utoipa `ToSchema` (OpenAPI) schema identical; any
///   other rule, or none, is a compile error. Because the `serde` attribute is serde's, the
///   struct also derives `serde::Serialize` and/or `serde::Deserialize`.
/// * `#[projection(table = "p")]` — qualify every column (not `sql` expressions) with a table
///   name or alias: `p."created_at"`. It must be a plain identifier (or `schema.table`).
/// * `#[projection(crate = "path::to::chopin_core")]` — where `chopin_core` is, when it is
///   not a direct dependency under that name.
///
/// # Field attributes
///
/// * The JSON key is the camelCase of the field name (serde's rule: `created_at` →
///   `createdAt`) unless `#[serde(rename = "...")]` gives it.
/// * `#[serde(skip)]` (and `skip_serializing` / `skip_deserializing`, which utoipa also leaves
///   out of the schema) leaves the field out of the projection.
/// * By default the value is the column named like the field, double-quoted: `"created_at"`.
///   `#[projection(column = "name")]` names another column (quoted as given, so case matters).
/// * `#[projection(sql = "expression")]` uses a SQL expression verbatim, for computed values,
///   nested objects or subqueries. It must mean the same on PostgreSQL and SQLite; when it
///   cannot, give one expression per backend instead:
///   `#[projection(postgres = "...", sqlite = "...")]` (both are required).
///
/// # Errors
///
/// Compile errors point at the offending tokens for: enums, unions, tuple and unit structs,
/// type or const parameters, a struct without fields, unknown `projection(...)` keys, `column`
/// combined with `sql` (or with `postgres` / `sqlite`), `sql` combined with `postgres` /
/// `sqlite`, `postgres` without `sqlite` (and the reverse), empty strings, repeated settings,
/// duplicate JSON keys, a missing or non-camelCase `rename_all`, `#[serde(flatten)]`,
/// `#[serde(transparent)]`, the `rename(serialize = ...)` form, utoipa's `#[schema(rename)]` /
/// `#[schema(ignore)]` (which would make the schema disagree with the SQL), field names on
/// which serde and utoipa compute different camelCase, keys longer than 63 bytes (PostgreSQL
/// truncates the column alias that names the key) and more than 50 fields (PostgreSQL
/// functions take at most 100 arguments, which bounds `jsonb_build_object`).
#[proc_macro_derive(JsonProjection, attributes(projection))]
pub fn derive_json_projection(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    projection::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
