//! `/api/passthrough/posts` and `/api/passthrough/posts/{id}`: the same JSON as
//! `/api/posts`, built by the database and copied into the response without being parsed.
//!
//! The SQL projection comes from `#[derive(JsonProjection)]` on [`PostView`], so the model path
//! (sea-orm rows → `PostView` → serde) and this path produce identical JSON for the same data;
//! the tests check it on SQLite and PostgreSQL.

use std::sync::LazyLock;

use axum::extract::State;
use chopin_core::error::ErrorEnvelope;
use chopin_core::passthrough::{
    AssertSqlSafe, JsonProjection, JsonQuery, JsonRows, Param, SqlSafeStr,
};
use chopin_core::prelude::*;
use chopin_core::reexports::sea_orm::sqlx::SqlStr;
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter};

use super::posts::{PostView, post_not_found_message};
use crate::AppState;
use crate::entity::post;
use crate::extract::{Id, PostFilter};

/// The statements of this module, built once per backend from the derived projection.
struct Statements {
    list: SqlStr,
    list_filtered: SqlStr,
    one: SqlStr,
}

fn statements(projection: &str, p: [&str; 3]) -> Statements {
    let sql = |s: String| AssertSqlSafe(s).into_sql_str();
    let order = r#"ORDER BY "created_at" DESC, "id" DESC"#;
    Statements {
        list: sql(format!(
            "SELECT {projection} FROM posts {order} LIMIT {} OFFSET {}",
            p[0], p[1]
        )),
        list_filtered: sql(format!(
            r#"SELECT {projection} FROM posts WHERE "published" = {} {order} LIMIT {} OFFSET {}"#,
            p[0], p[1], p[2]
        )),
        one: sql(format!(
            r#"SELECT {projection} FROM posts WHERE "id" = {}"#,
            p[0]
        )),
    }
}

static POSTGRES: LazyLock<Statements> =
    LazyLock::new(|| statements(PostView::POSTGRES_JSON, ["$1", "$2", "$3"]));
static SQLITE: LazyLock<Statements> =
    LazyLock::new(|| statements(PostView::SQLITE, ["?1", "?2", "?3"]));

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
        (status = 200, description = "A page of posts, with `meta.total`; the same JSON as `GET /api/posts`.", body = ApiResponse<Vec<PostView>>),
        (status = 400, description = "Invalid pagination or filter (`INVALID_QUERY`).", body = ErrorEnvelope),
    )
)]
pub async fn list_posts(
    State(state): State<AppState>,
    page: Pagination,
    filter: PostFilter,
) -> Result<JsonRows, ChopinError> {
    let statements = sql_for(&state.db);
    let mut count = post::Entity::find();
    let query = match filter.published {
        Some(published) => {
            count = count.filter(post::Column::Published.eq(published));
            JsonQuery::new(statements.list_filtered.clone()).bind(published)
        }
        None => JsonQuery::new(statements.list.clone()),
    };
    let total = count.count(&*state.db).await?;
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
        (status = 404, description = "No such post (`NOT_FOUND`).", body = ErrorEnvelope),
    )
)]
pub async fn get_post(State(state): State<AppState>, Id(id): Id) -> Result<JsonRows, ChopinError> {
    JsonQuery::new(sql_for(&state.db).one.clone())
        .bind(id)
        .trust_text()
        .not_found(post_not_found_message(id))
        .one(&state.db)
        .await
}
