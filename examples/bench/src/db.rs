//! Database endpoints of the pass-through benchmark (`bench/run-db.sh`, `bench/stream-mem.sh`).
//!
//! All list endpoints answer `GET …?rows=N` (default 100, at most [`MAX_LIST_ROWS`]) with the
//! first `N` items by id in the standard envelope `{"success":true,"data":[…]}`, and return the
//! same JSON document for the same rows (the harness checks it before measuring):
//!
//! * `/db/orm` — the model path: sea-orm `Entity::find().order_by_asc(id).limit(N).all()`, each
//!   model mapped to the [`ItemView`] DTO, serialised by [`ApiResponse`];
//! * `/db/passthrough` — Chopin's pass-through over the `tv_item` table view of pre-built
//!   `jsonb` documents: the rows' bytes are copied into the body without being parsed;
//! * `/db/passthrough-build` — pass-through with the JSON built at query time from the
//!   relational `bench_item` table by [`ItemView`]'s derived projection (`row_to_json` over
//!   its `POSTGRES_COLUMNS` in a lateral sub-select);
//! * `/db/stream` — [`JsonStream`]: `N` rows (up to [`MAX_STREAM_ROWS`], cycling through
//!   `tv_item`) sent in chunks while the query runs, so memory does not grow with `N`.
//!
//! The schema and data come from `bench/passthrough-setup.sql`.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chopin_core::extractors::Query;
use chopin_core::passthrough::{
    AssertSqlSafe, JsonProjection, JsonQuery, JsonRows, JsonStream, Param, SqlSafeStr,
};
use chopin_core::prelude::*;
use chopin_core::reexports::sea_orm::sqlx::SqlStr;
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{EntityTrait, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize, Serializer};

/// Largest `rows` accepted by the list endpoints (`bench_item` holds 10 000 rows).
pub const MAX_LIST_ROWS: u64 = 10_000;

/// Largest `rows` accepted by `/db/stream`.
pub const MAX_STREAM_ROWS: u64 = 100_000_000;

/// Initial body buffer for a list of `rows` items: ~460 bytes of `jsonb` text per row plus a
/// comma, so a 1 000-row body is built without reallocating. `bench/raw-pg-baseline` uses the
/// same formula.
pub fn body_capacity(rows: u64) -> usize {
    64 + 480 * rows as usize
}

/// The sea-orm entity of the relational table `bench_item`.
pub mod item {
    use sea_orm::entity::prelude::*;

    /// One row of `bench_item`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "bench_item")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        /// Stock-keeping unit.
        pub sku: String,
        /// Display title.
        pub title: String,
        /// Long text with characters JSON must escape.
        #[sea_orm(column_type = "Text")]
        pub description: String,
        /// Price in cents.
        pub price_cents: i64,
        /// ISO 4217 currency code.
        pub currency: String,
        /// Average rating.
        #[sea_orm(column_type = "Double")]
        pub rating: f64,
        /// Whether the item can be ordered.
        pub in_stock: bool,
        /// Units in stock.
        pub quantity: i32,
        /// Tags: a `jsonb` array of strings.
        #[sea_orm(column_type = "JsonBinary")]
        pub tags: Json,
        /// Warehouse city (nested as `warehouse.city` in the API).
        pub warehouse_city: String,
        /// Warehouse zone (`warehouse.zone`).
        pub warehouse_zone: String,
        /// Warehouse postal code (`warehouse.postalCode`).
        pub warehouse_postal_code: String,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last update time.
        pub updated_at: DateTimeUtc,
    }

    /// `bench_item` has no relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Where an item is stored (nested object of [`ItemView`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WarehouseView {
    /// City.
    pub city: String,
    /// Zone inside the warehouse.
    pub zone: String,
    /// Postal code.
    pub postal_code: String,
}

/// The API representation of an item: serialised by serde on the model path, built by the
/// database (through the derived projection, or stored in `tv_item`) on the pass-through paths.
#[derive(Debug, Clone, PartialEq, Serialize, JsonProjection)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    /// Primary key.
    pub id: i64,
    /// Stock-keeping unit.
    pub sku: String,
    /// Display title.
    pub title: String,
    /// Long text.
    pub description: String,
    /// Price in cents.
    pub price_cents: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Average rating.
    pub rating: f64,
    /// Whether the item can be ordered.
    pub in_stock: bool,
    /// Units in stock.
    pub quantity: i32,
    /// Tags.
    #[projection(postgres = r#""tags""#, sqlite = r#"json("tags")"#)]
    pub tags: Vec<String>,
    /// Where the item is stored.
    #[projection(
        postgres = r#"(SELECT row_to_json(w) FROM (SELECT "warehouse_city" AS "city", "warehouse_zone" AS "zone", "warehouse_postal_code" AS "postalCode") w)"#,
        sqlite = r#"json_object('city', "warehouse_city", 'zone', "warehouse_zone", 'postalCode', "warehouse_postal_code")"#
    )]
    pub warehouse: WarehouseView,
    /// Creation time (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "millis")]
    #[projection(
        postgres = r#"to_char("created_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#,
        sqlite = r#"strftime('%Y-%m-%dT%H:%M:%fZ', "created_at")"#
    )]
    pub created_at: DateTime<Utc>,
    /// Last update time (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "millis")]
    #[projection(
        postgres = r#"to_char("updated_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#,
        sqlite = r#"strftime('%Y-%m-%dT%H:%M:%fZ', "updated_at")"#
    )]
    pub updated_at: DateTime<Utc>,
}

/// RFC 3339 in UTC with exactly three fractional digits, as the SQL projection writes it.
pub(crate) fn millis<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl TryFrom<item::Model> for ItemView {
    type Error = ChopinError;

    fn try_from(m: item::Model) -> Result<Self, ChopinError> {
        let tags = serde_json::from_value(m.tags)
            .map_err(|e| ChopinError::internal(format!("bench_item {}: bad tags: {e}", m.id)))?;
        Ok(ItemView {
            id: m.id,
            sku: m.sku,
            title: m.title,
            description: m.description,
            price_cents: m.price_cents,
            currency: m.currency,
            rating: m.rating,
            in_stock: m.in_stock,
            quantity: m.quantity,
            tags,
            warehouse: WarehouseView {
                city: m.warehouse_city,
                zone: m.warehouse_zone,
                postal_code: m.warehouse_postal_code,
            },
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// `?rows=N`.
#[derive(Debug, Deserialize)]
pub struct RowsParam {
    /// Number of rows (default 100).
    pub rows: Option<u64>,
}

impl RowsParam {
    /// The requested row count, checked against `max`.
    pub(crate) fn get(&self, max: u64) -> Result<u64, ChopinError> {
        match self.rows.unwrap_or(100) {
            n @ 1.. if n <= max => Ok(n),
            n => Err(ChopinError::BadRequest(format!(
                "rows must be between 1 and {max}, got {n}"
            ))),
        }
    }
}

/// `GET /db/orm?rows=N`: sea-orm models → [`ItemView`] → [`ApiResponse`].
pub async fn orm(
    State(db): State<Db>,
    Query(q): Query<RowsParam>,
) -> Result<ApiResponse<Vec<ItemView>>, ChopinError> {
    let rows = q.get(MAX_LIST_ROWS)?;
    let models = item::Entity::find()
        .order_by_asc(item::Column::Id)
        .limit(rows)
        .all(db.conn())
        .await?;
    let items = models
        .into_iter()
        .map(ItemView::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiResponse::success(items))
}

/// `GET /db/passthrough?rows=N`: the pre-built `jsonb` documents of `tv_item`, copied as they are.
pub async fn passthrough(
    State(db): State<Db>,
    Query(q): Query<RowsParam>,
) -> Result<JsonRows, ChopinError> {
    let rows = q.get(MAX_LIST_ROWS)?;
    JsonQuery::new("SELECT data FROM tv_item ORDER BY id LIMIT $1")
        .bind(Param::try_from(rows)?)
        .capacity_hint(body_capacity(rows))
        .list(&db)
        .await
}

/// The query of `/db/passthrough-build`, built once from the derived projection: its columns
/// in a lateral sub-select, the cheapest form on PostgreSQL (`bench/projection-sql.sh`).
static BUILD_SQL: LazyLock<SqlStr> = LazyLock::new(|| {
    AssertSqlSafe(format!(
        "SELECT row_to_json(j) FROM bench_item b CROSS JOIN LATERAL (SELECT {}) j \
         ORDER BY b.id LIMIT $1",
        ItemView::POSTGRES_COLUMNS
    ))
    .into_sql_str()
});

/// `GET /db/passthrough-build?rows=N`: the JSON built by PostgreSQL at query time from the
/// relational table ([`ItemView::POSTGRES_COLUMNS`] under `row_to_json`), copied as it is.
pub async fn passthrough_build(
    State(db): State<Db>,
    Query(q): Query<RowsParam>,
) -> Result<JsonRows, ChopinError> {
    let rows = q.get(MAX_LIST_ROWS)?;
    JsonQuery::new(BUILD_SQL.clone())
        .bind(Param::try_from(rows)?)
        .capacity_hint(body_capacity(rows))
        .list(&db)
        .await
}

/// `GET /db/stream?rows=N`: `N` documents (cycling through `tv_item`), streamed in chunks.
///
/// `generate_series` supplies the repetitions; PostgreSQL produces rows as the client reads
/// them, so neither side holds the result.
pub async fn stream(
    State(db): State<Db>,
    Query(q): Query<RowsParam>,
) -> Result<JsonStream, ChopinError> {
    let rows = q.get(MAX_STREAM_ROWS)?;
    JsonQuery::new(
        "SELECT t.data FROM generate_series(1, ($1::bigint + 9999) / 10000) AS r(n) \
         CROSS JOIN tv_item AS t LIMIT $1::bigint",
    )
    .bind(Param::try_from(rows)?)
    .stream(&db)
    .await
}

/// The database routes, with their state applied.
pub fn router(db: Db) -> Router {
    Router::new()
        .route("/db/orm", get(orm))
        .route("/db/passthrough", get(passthrough))
        .route("/db/passthrough-build", get(passthrough_build))
        .route("/db/stream", get(stream))
        .with_state(db)
}
