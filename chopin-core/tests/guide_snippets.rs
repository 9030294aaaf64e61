//! The code of the performance guide users follow, compiled and run against Chopin.
//!
//! Each test mirrors one section of that guide: the guide's own code, with the helpers it
//! leaves undefined (`db`, `fetch_batch`, the entities) filled in here. Where the guide's code
//! had to change to compile at all, the test says what changed and why.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chopin_core::db::Db;
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestPostgres};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::Value;

/// The guide's `users` table.
mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub email: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::post::Entity")]
        Post,
    }

    impl Related<super::post::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Post.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The guide's `posts` table.
mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "posts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub author_id: i32,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::AuthorId",
            to = "super::user::Column::Id"
        )]
        User,
    }

    impl Related<super::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

use post::Entity as Post;
use user::Entity as User;

/// A SQLite database with `users` (3) and `posts` (`posts` of them, authors in turn).
async fn seeded(dir: &tempfile::TempDir, posts: usize) -> Db {
    let url = format!("sqlite://{}", dir.path().join("guide.db").display());
    let db = Db::connect(&chopin_core::config::DatabaseConfig::new(url))
        .await
        .unwrap();
    db.execute_unprepared(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
         CREATE TABLE posts (id INTEGER PRIMARY KEY,
                             author_id INTEGER NOT NULL REFERENCES users (id),
                             title TEXT NOT NULL);
         INSERT INTO users (id, email) VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x');",
    )
    .await
    .unwrap();
    let txn = db.begin().await.unwrap();
    for i in 1..=posts {
        txn.execute_unprepared(&format!(
            "INSERT INTO posts (id, author_id, title) VALUES ({i}, {}, 'post {i}')",
            i % 3 + 1
        ))
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    db
}

// ---------------------------------------------------------------------------------------------
// Quick Wins, "5. Pagination". The guide's handler, with `db` (which it leaves undefined)
// taken from the state. `clamped()` is a no-op after the extractor; what makes `?limit=500`
// serve 100 items is `CHOPIN_PAGINATION_OVERFLOW=clamp` — without it the extractor answers 400.
// ---------------------------------------------------------------------------------------------

mod quick_wins_pagination {
    use super::*;
    use chopin_core::extractors::Pagination;
    use post::{Entity, Model as Item};
    use sea_orm::{EntityTrait, QuerySelect};

    async fn list(
        State(db): State<Db>,
        pagination: Pagination,
    ) -> Result<ApiResponse<Vec<Item>>, ChopinError> {
        let p = pagination.clamped(); // Max 100

        let items = Entity::find()
            .limit(p.limit)
            .offset(p.offset)
            .all(&db)
            .await?;

        Ok(ApiResponse::success(items))
    }

    fn client(db: &Db, overflow: &str) -> TestClient {
        let config = Config::from_lookup(|name| match name {
            "CHOPIN_ENV" => Some("test".into()),
            "CHOPIN_PAGINATION_OVERFLOW" => Some(overflow.into()),
            _ => None,
        })
        .unwrap();
        let app =
            App::with_state(config, db.clone()).router(Router::new().route("/items", get(list)));
        TestClient::new(app.into_router())
    }

    #[tokio::test]
    async fn limit_500_serves_100_items_when_clamping() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = seeded(&dir, 150).await;

        let clamping = client(&db, "clamp");
        let res = clamping.get("/items?limit=500").await;
        assert_eq!(res.status, 200, "{}", res.text());
        let items = res.value()["data"].as_array().cloned().unwrap();
        assert_eq!(items.len(), 100);
        assert_eq!(items[0]["title"], "post 1");
        let res = clamping.get("/items?limit=500&offset=120").await;
        assert_eq!(res.value()["data"].as_array().map(Vec::len), Some(30));

        // The default is strict: the client learns that 500 is too many.
        let strict = client(&db, "reject");
        let res = strict.get("/items?limit=500").await;
        assert_eq!(res.status, 400);
        assert_eq!(res.error_code().as_deref(), Some("INVALID_QUERY"));
    }
}

// ---------------------------------------------------------------------------------------------
// Query Optimization: "Avoid N+1 Queries", "Select Only Needed Columns", "Use Exists Over
// Count", "Batch Operations" — every query on `&db` where `db` is Chopin's `Db`.
// Changed from the guide: its lookup map is typed `HashMap<i32, User>`, but `User` is the
// entity; the rows are `user::Model`.
// ---------------------------------------------------------------------------------------------

mod query_optimization {
    use super::*;
    use sea_orm::{ColumnTrait, EntityTrait, ModelTrait, PaginatorTrait, QueryFilter, QuerySelect};

    #[tokio::test]
    async fn avoid_n_plus_one() -> Result<(), ChopinError> {
        let dir = tempfile::TempDir::new().unwrap();
        let db = seeded(&dir, 6).await;

        // **Bad** (N+1 problem)
        // Fetches posts
        let posts = Post::find().all(&db).await?;

        // N queries for authors (one per post)
        for post in posts {
            let author = User::find_by_id(post.author_id).one(&db).await?;
            // Use author...
            assert_eq!(author.map(|a| a.id), Some(post.author_id));
        }

        // **Good** (single additional query)
        let posts = Post::find().all(&db).await?;

        // Single query for all authors
        let author_ids: Vec<i32> = posts.iter().map(|p| p.author_id).collect();
        let authors = User::find()
            .filter(user::Column::Id.is_in(author_ids))
            .all(&db)
            .await?;

        // Build lookup map
        let author_map: HashMap<i32, user::Model> =
            authors.into_iter().map(|a| (a.id, a)).collect();
        assert_eq!(author_map.len(), 3);
        assert!(posts.iter().all(|p| author_map.contains_key(&p.author_id)));

        // **Best** (eager loading with join)
        let posts = Post::find().find_also_related(User).all(&db).await?;

        for (post, author) in &posts {
            // Use post and author...
            assert_eq!(author.as_ref().map(|a| a.id), Some(post.author_id));
        }
        assert_eq!(posts.len(), 6);
        Ok(())
    }

    #[tokio::test]
    async fn select_only_needed_columns() -> Result<(), ChopinError> {
        let dir = tempfile::TempDir::new().unwrap();
        let db = seeded(&dir, 1).await;

        // ❌ Don't - fetches all columns
        let users = User::find().all(&db).await?;
        assert_eq!(users.len(), 3);

        // ✅ Do - select specific columns
        let emails = User::find()
            .select_only()
            .column(user::Column::Email)
            .into_tuple::<String>()
            .all(&db)
            .await?;
        assert_eq!(emails, ["a@x", "b@x", "c@x"]);
        Ok(())
    }

    #[tokio::test]
    async fn exists_over_count() -> Result<(), ChopinError> {
        let dir = tempfile::TempDir::new().unwrap();
        let db = seeded(&dir, 4).await;
        let user_id = 2;

        // **Slow**
        let count = Post::find()
            .filter(post::Column::AuthorId.eq(user_id))
            .count(&db)
            .await?;

        if count > 0 {
            // Has posts
        }

        // **Fast**
        let has_posts = Post::find()
            .filter(post::Column::AuthorId.eq(user_id))
            .limit(1)
            .one(&db)
            .await?
            .is_some();

        assert!(has_posts && count == 2, "{count}");
        Ok(())
    }

    #[tokio::test]
    async fn batch_operations() -> Result<(), ChopinError> {
        let dir = tempfile::TempDir::new().unwrap();
        let db = seeded(&dir, 10).await;

        // **Slow** (N queries)
        let items = Post::find()
            .filter(post::Column::Id.lte(3))
            .all(&db)
            .await?;
        for item in items {
            item.delete(&db).await?;
        }
        assert_eq!(Post::find().count(&db).await?, 7);

        // **Fast** (single query)
        let item_ids = vec![4, 5, 6];
        Post::delete_many()
            .filter(post::Column::Id.is_in(item_ids))
            .exec(&db)
            .await?;
        assert_eq!(Post::find().count(&db).await?, 4);

        // And the guide's other spelling, on an entity of its own.
        let removed = post::Entity::delete_many().exec(&db).await?;
        assert_eq!(removed.rows_affected, 4);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Database Optimization → "Connection Pool Sizing" and Connection Pooling → "Tune Pool Size"
// and "Monitor Pool Usage": pool settings in `DATABASE_URL`, read back with the guide's code.
// ---------------------------------------------------------------------------------------------

mod connection_pooling {
    use super::*;

    async fn check_pool(database_url: &str) {
        let config = Config::from_lookup(|name| {
            (name == "DATABASE_URL")
                .then(|| format!("{database_url}?max_connections=20&min_connections=5"))
        })
        .unwrap();
        let db = Db::connect(&config.database).await.unwrap();
        assert_eq!(db.settings().max_connections, 20);
        assert_eq!(db.settings().min_connections, 5);

        // Hold one connection, so that one is active.
        let txn = db.begin().await.unwrap();
        txn.execute_unprepared("SELECT 1").await.unwrap();

        let pool_status = db.get_pool_status();
        println!(
            "Active: {}, Idle: {}, Max: {}",
            pool_status.active, pool_status.idle, pool_status.max
        );
        assert_eq!(pool_status.max, 20);
        assert!(pool_status.active >= 1, "{pool_status:?}");
        assert_eq!(pool_status.size, pool_status.active + pool_status.idle);
        let json = serde_json::to_value(pool_status).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["active", "idle", "max", "size"], "{json}");

        // The former name still answers, with a deprecation warning.
        #[allow(deprecated)]
        let old = db.status();
        assert_eq!(old.max, 20);
        #[allow(deprecated)]
        let old_active = old.in_use;
        assert_eq!(old_active, old.active);
        txn.rollback().await.unwrap();
        db.close().await;
    }

    #[tokio::test]
    async fn pool_settings_in_the_url_on_sqlite() {
        let dir = tempfile::TempDir::new().unwrap();
        check_pool(&format!(
            "sqlite://{}",
            dir.path().join("pool.db").display()
        ))
        .await;
    }

    #[tokio::test]
    async fn pool_settings_in_the_url_on_postgres() {
        let Some(pg) = TestPostgres::create().await else {
            return;
        };
        check_pool(pg.url()).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Profiling → "Tracing": the guide's instrumented function takes `&DatabaseConnection`;
// `&db` (a `Db`) coerces to it.
// ---------------------------------------------------------------------------------------------

mod tracing_instrumentation {
    use super::*;
    use post::Entity as Query;
    use sea_orm::{DatabaseConnection, EntityTrait};
    use tracing::{info, instrument};

    type Data = post::Model;
    type Result<T> = std::result::Result<T, ChopinError>;

    #[instrument(skip(db))]
    async fn fetch_data(db: &DatabaseConnection) -> Result<Vec<Data>> {
        let start = std::time::Instant::now();

        let data = Query::find().all(db).await?;

        info!(duration_ms = start.elapsed().as_millis(), "Query completed");

        Ok(data)
    }

    #[tokio::test]
    async fn instrumented_query() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = seeded(&dir, 3).await;
        assert_eq!(fetch_data(&db).await.unwrap().len(), 3);
    }
}

// ---------------------------------------------------------------------------------------------
// JSON Performance → "Streaming Responses". Changed from the guide, besides the imports:
// the guide uses `async_stream::stream!`, in which `?` does not compile (its body returns
// `()`); `try_stream!` is the macro that allows `?`, and it yields the `Ok` value, so
// `yield Ok(event)` becomes `yield event`. `Result<Event>` is the application's own alias.
// `fetch_batch` reads the next batch of posts.
// ---------------------------------------------------------------------------------------------

mod streaming_responses {
    use super::*;
    use chopin_core::sse::{Event, KeepAlive, Sse, Stream};
    use post::Entity;
    use sea_orm::{EntityTrait, QueryOrder, QuerySelect};
    use std::sync::OnceLock;
    use tokio::net::TcpListener;

    type Result<T, E = axum::BoxError> = std::result::Result<T, E>;

    static DB: OnceLock<Db> = OnceLock::new();

    async fn fetch_batch(offset: u64, limit: u64) -> Result<Vec<post::Model>> {
        let db = DB.get().ok_or("no database")?;
        Ok(Entity::find()
            .order_by_asc(post::Column::Id)
            .limit(limit)
            .offset(offset)
            .all(db)
            .await?)
    }

    async fn stream() -> Sse<impl Stream<Item = Result<Event>>> {
        let stream = async_stream::try_stream! {
            let mut offset = 0;
            loop {
                let items = fetch_batch(offset, 100).await?;
                if items.is_empty() {
                    break;
                }

                for item in items {
                    yield Event::default().data(serde_json::to_string(&item)?);
                }

                offset += 100;
            }
        };

        Sse::new(stream).keep_alive(KeepAlive::default())
    }

    #[tokio::test]
    async fn streams_every_row_through_the_default_layers() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = seeded(&dir, 250).await;
        assert!(DB.set(db).is_ok(), "one streaming test per binary");

        let config =
            Config::from_lookup(|name| (name == "CHOPIN_ENV").then(|| "test".into())).unwrap();
        let app = App::new(config).router(Router::new().route("/stream", get(stream)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.serve_with(listener, async {
            let _ = stopped.await;
        }));

        let response = reqwest::Client::new()
            .get(format!("http://{addr}/stream"))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert!(response.headers().get("content-encoding").is_none());
        let body = tokio::time::timeout(Duration::from_secs(10), response.text())
            .await
            .expect("the stream ends after the last batch")
            .unwrap();
        let rows: Vec<Value> = body
            .split_terminator("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        assert_eq!(rows.len(), 250, "three batches, every row once");
        assert_eq!(rows[0]["title"], "post 1");
        assert_eq!(rows[249]["id"], 250);
        let _ = stop.send(());
    }
}
