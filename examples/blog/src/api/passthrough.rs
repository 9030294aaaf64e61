//! `/api/passthrough/posts` and `/api/passthrough/posts/{id}`: the same JSON as
//! `/api/posts`, read from the `tv_post` table view and copied into the response without
//! being parsed.
//!
//! [`post_table_view`] declares `tv_post`: one pre-built document per post, built by the SQL
//! that `#[derive(JsonProjection)]` derives from [`PostView`], next to the columns the reads
//! filter and sort on; triggers on `posts` and `comments` rebuild a post's document in the
//! transaction of every write that changes it (migration `m20250101_000004_create_tv_post`).
//! So the model path (sea-orm rows → `PostView` → serde) and this path produce identical JSON
//! for the same data; the tests check it after every kind of write on SQLite and PostgreSQL.
//!
//! Drafts are visible to their author and to admins only, as on the model path: every
//! statement carries the parameterised condition `("published" OR <see all> OR "author_id" =
//! <account>)`, bound from the request's [`Reader`].

use std::sync::LazyLock;

use axum::extract::State;
use chopin_core::error::ErrorEnvelope;
use chopin_core::passthrough::{
    AssertSqlSafe, JsonQuery, JsonRows, KeyType, Param, SqlSafeStr, TableView,
};
use chopin_core::prelude::*;
use chopin_core::reexports::sea_orm::sqlx::SqlStr;
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter};

use super::posts::{PostView, post_not_found_message};
use super::visibility::Reader;
use crate::AppState;
use crate::entity::post;
use crate::extract::{Id, PostFilter};

/// The `tv_post` table view: [`PostView`]'s documents, one per post, with the columns the
/// routes filter on (`published`, `author_id`) and sort on (`created_at`, `id`), rebuilt by
/// row-level triggers when `posts` or `comments` change.
pub fn post_table_view() -> TableView {
    TableView::of::<PostView>("tv_post", "posts")
        .key("created_at", KeyType::TimestampTz)
        .key("published", KeyType::Boolean)
        .key("author_id", KeyType::BigInt)
        .index(["created_at", "id"])
        .depends_on("comments", "post_id")
}

/// The statements of this module, built once per backend.
struct Statements {
    list: SqlStr,
    list_filtered: SqlStr,
    one: SqlStr,
}

/// The posts a reader may see, with the reader's parameters ([`Reader::sql_params`]) as
/// placeholders: `see_all`, then `is_account` and `account` (the account id, or 0 when
/// `is_account` is false: the comparison is then never made, so no id stands for "nobody").
fn visible(see_all: &str, is_account: &str, account: &str) -> String {
    format!(r#"("published" OR {see_all} OR ({is_account} AND "author_id" = {account}))"#)
}

/// Parameters, in order: the visibility condition's three (`see_all`, `is_account`,
/// `account`), then `list`: limit, offset; `list_filtered`: published, limit, offset; `one`:
/// id.
fn statements(p: [&str; 6]) -> Statements {
    let sql = |s: String| AssertSqlSafe(s).into_sql_str();
    let order = r#"ORDER BY "created_at" DESC, "id" DESC"#;
    let visible = visible(p[0], p[1], p[2]);
    Statements {
        list: sql(format!(
            "SELECT data FROM tv_post WHERE {visible} {order} LIMIT {} OFFSET {}",
            p[3], p[4]
        )),
        list_filtered: sql(format!(
            r#"SELECT data FROM tv_post WHERE {visible} AND "published" = {} {order} LIMIT {} OFFSET {}"#,
            p[3], p[4], p[5]
        )),
        one: sql(format!(
            r#"SELECT data FROM tv_post WHERE {visible} AND "id" = {}"#,
            p[3]
        )),
    }
}

static POSTGRES: LazyLock<Statements> =
    LazyLock::new(|| statements(["$1", "$2", "$3", "$4", "$5", "$6"]));
static SQLITE: LazyLock<Statements> =
    LazyLock::new(|| statements(["?1", "?2", "?3", "?4", "?5", "?6"]));

/// `query` with the visibility condition's three parameters bound for `reader`. Always the
/// same types (bool, bool, bigint), so one prepared statement serves every reader.
fn bind_reader(query: JsonQuery, reader: Reader) -> JsonQuery {
    let (see_all, account) = reader.sql_params();
    query
        .bind(see_all)
        .bind(account.is_some())
        .bind(account.unwrap_or(0))
}

fn sql_for(db: &Db) -> &'static Statements {
    match db.get_database_backend() {
        DbBackend::Postgres => &POSTGRES,
        _ => &SQLITE,
    }
}

/// List posts, newest first — pass-through variant of `GET /api/posts`.
#[utoipa::path(
    get,
    path = "/passthrough/posts",
    operation_id = "list_posts_passthrough",
    tag = "posts",
    params(Pagination, PostFilter),
    responses(
        (status = 200, description = "A page of the posts the reader may see, with `meta.total`; the same JSON as `GET /api/posts`.", body = ApiResponse<Vec<PostView>>),
        (status = 400, description = "Invalid pagination or filter (`INVALID_QUERY`).", body = ErrorEnvelope),
    ),
    security((), ("bearer" = []))
)]
pub async fn list_posts(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    page: Pagination,
    filter: PostFilter,
) -> Result<JsonRows, ChopinError> {
    let statements = sql_for(&state.db);
    let reader = Reader::of(user.as_ref());
    let mut count = post::Entity::find().filter(reader.condition());
    let query = match filter.published {
        Some(published) => {
            count = count.filter(post::Column::Published.eq(published));
            bind_reader(JsonQuery::new(statements.list_filtered.clone()), reader).bind(published)
        }
        None => bind_reader(JsonQuery::new(statements.list.clone()), reader),
    };
    let total = count.count(&state.db).await?;
    let rows = query
        .bind(Param::try_from(page.limit)?)
        .bind(Param::try_from(page.offset)?)
        .trust_text()
        .list(&state.db)
        .await?;
    Ok(rows.paginated(&page, Some(total)))
}

/// Show one post — pass-through variant of `GET /api/posts/{id}`.
#[utoipa::path(
    get,
    path = "/passthrough/posts/{id}",
    operation_id = "get_post_passthrough",
    tag = "posts",
    params(Id),
    responses(
        (status = 200, description = "The post; the same JSON as `GET /api/posts/{id}`.", body = ApiResponse<PostView>),
        (status = 400, description = "The id is not a positive integer.", body = ErrorEnvelope),
        (status = 404, description = "No such post, or a draft the reader may not see (`NOT_FOUND`).", body = ErrorEnvelope),
    ),
    security((), ("bearer" = []))
)]
pub async fn get_post(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    Id(id): Id,
) -> Result<JsonRows, ChopinError> {
    let reader = Reader::of(user.as_ref());
    bind_reader(JsonQuery::new(sql_for(&state.db).one.clone()), reader)
        .bind(id)
        .trust_text()
        .not_found(post_not_found_message(id))
        .one(&state.db)
        .await
}
