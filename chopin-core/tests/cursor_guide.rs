//! The keyset-pagination code of docs/extractors.md ("`CursorPagination`"), compiled and run
//! on SQLite through `App`: the handler below is the guide's, word for word; the entity, the
//! table and the test around it are filled in here.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chopin_core::db::Db;
use chopin_core::prelude::*;
use chopin_core::testing::TestClient;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::Value;

mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "posts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub title: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

// ---- the guide's code ----------------------------------------------------------------------

use chopin_core::extractors::CursorPagination;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// Newest first; the sort key is `(created_at, id)`, `id` breaking ties.
async fn list_posts(
    State(db): State<Db>,
    page: CursorPagination<(DateTime<Utc>, i64)>,
) -> Result<ApiResponse<Vec<post::Model>>, ChopinError> {
    let mut query = post::Entity::find()
        .order_by_desc(post::Column::CreatedAt)
        .order_by_desc(post::Column::Id);
    if let Some((created_at, id)) = page.after {
        // WHERE (created_at, id) < ($1, $2): the rows after the previous page's last one.
        query = query.filter(
            Expr::tuple([
                Expr::col(post::Column::CreatedAt),
                Expr::col(post::Column::Id),
            ])
            .lt(Expr::tuple([Expr::val(created_at), Expr::val(id)])),
        );
    }
    // LIMIT n + 1: the extra row says whether there is a next page.
    let rows = query.limit(page.fetch_limit()).all(&db).await?;
    ApiResponse::cursor_paginated(rows, &page, |p| (p.created_at, p.id))
}

// ---- end of the guide's code -----------------------------------------------------------------

#[tokio::test]
async fn the_guide_handler_walks_every_post_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("guide.db").display());
    let db = Db::connect(&chopin_core::config::DatabaseConfig::new(url))
        .await
        .unwrap();
    db.execute_raw(Statement::from_string(
        DbBackend::Sqlite,
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL, created_at TEXT NOT NULL)",
    ))
    .await
    .unwrap();
    // 30 posts, three per timestamp: ties are broken by id.
    let base = Utc::now();
    for i in 0..30i64 {
        let model = post::ActiveModel {
            id: sea_orm::ActiveValue::Set(i + 1),
            title: sea_orm::ActiveValue::Set(format!("post {i}")),
            created_at: sea_orm::ActiveValue::Set(base + chrono::Duration::seconds(i / 3)),
        };
        post::Entity::insert(model).exec(&db).await.unwrap();
    }
    let config = Config::for_environment(Environment::Test);
    let client = TestClient::new(
        App::new(config)
            .router(
                Router::new()
                    .route("/posts", get(list_posts))
                    .with_state(db),
            )
            .into_router(),
    );
    let mut seen = Vec::new();
    let mut uri = "/posts?limit=4".to_string();
    loop {
        let page: Value = client.get(&uri).await.json();
        assert_eq!(page["success"], Value::Bool(true), "{page}");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        match page["meta"]["next_cursor"].as_str() {
            Some(next) => uri = format!("/posts?limit=4&cursor={next}"),
            None => break,
        }
    }
    // Newest first: the highest timestamp group first, the highest id first within it.
    let expected: Vec<i64> = (1..=30).rev().collect();
    assert_eq!(seen, expected);
}

/// The guide shows exactly the code above.
#[test]
fn the_guide_shows_this_code() {
    let this = include_str!("cursor_guide.rs");
    let start = this
        .find("use chopin_core::extractors::CursorPagination;")
        .unwrap();
    let end = this.find("// ---- end of the guide").unwrap();
    let code = this[start..end].trim_end();
    let guide = include_str!("../../docs/extractors.md");
    assert!(
        guide.contains(code),
        "docs/extractors.md no longer shows the code of tests/cursor_guide.rs"
    );
}
