//! The blog-shaped endpoints of the pass-through benchmark (`bench/run-db.sh`, targets `blog-*`):
//! a page of published posts, newest first, each with its author's name and its comment count.
//!
//! Both answer `GET …?rows=N` (default 100, at most [`MAX_LIST_ROWS`]) with the same JSON
//! document for the same rows (the harness checks it before measuring):
//!
//! * `/db/blog-orm` — the model path as an application writes it: sea-orm loads the page of
//!   posts with their authors (`find_also_related`, one `LEFT JOIN`), then the page's comment
//!   counts (one grouped query), maps each post to [`BlogPostView`] and serialises it with
//!   [`ApiResponse`];
//! * `/db/blog-tv` — Chopin's pass-through over the `tv_blog_post` table view that
//!   [`table_view`] declares: one pre-built document per post, kept fresh by the triggers
//!   [`TableView::create`] installs, copied into the body without being parsed.
//!
//! The tables come from `bench/passthrough-setup.sql`; the table view is created by
//! `chopin-bench-example create-views` (run by `bench/run-db.sh`), through the library.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chopin_core::extractors::Query;
use chopin_core::passthrough::{JsonProjection, JsonQuery, JsonRows, KeyType, Param, TableView};
use chopin_core::prelude::*;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;

use crate::db::{MAX_LIST_ROWS, RowsParam, millis};

/// Initial body buffer for a page of `rows` posts: ~560 bytes per document plus a comma.
/// `bench/raw-pg-baseline` uses the same formula.
pub fn body_capacity(rows: u64) -> usize {
    64 + 600 * rows as usize
}

/// The sea-orm entity of `blog_author`.
pub mod author {
    use sea_orm::entity::prelude::*;

    /// One author.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "blog_author")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        /// Display name.
        pub name: String,
        /// E-mail address (not in the API).
        pub email: String,
    }

    /// An author has many posts.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The author's posts.
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

/// The sea-orm entity of `blog_post`.
pub mod post {
    use sea_orm::entity::prelude::*;

    /// One post.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "blog_post")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        /// The author.
        pub author_id: i64,
        /// Title.
        pub title: String,
        /// URL-friendly name.
        pub slug: String,
        /// Body text.
        #[sea_orm(column_type = "Text")]
        pub body: String,
        /// Whether readers can see it.
        pub published: bool,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last update time.
        pub updated_at: DateTimeUtc,
    }

    /// A post belongs to an author and has many comments.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The author.
        #[sea_orm(
            belongs_to = "super::author::Entity",
            from = "Column::AuthorId",
            to = "super::author::Column::Id"
        )]
        Author,
        /// The comments.
        #[sea_orm(has_many = "super::comment::Entity")]
        Comment,
    }

    impl Related<super::author::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Author.def()
        }
    }

    impl Related<super::comment::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Comment.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The sea-orm entity of `blog_comment`.
pub mod comment {
    use sea_orm::entity::prelude::*;

    /// One comment.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "blog_comment")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        /// The post commented on.
        pub post_id: i64,
        /// Who wrote it.
        pub author_id: i64,
        /// Text.
        #[sea_orm(column_type = "Text")]
        pub body: String,
        /// Creation time.
        pub created_at: DateTimeUtc,
    }

    /// A comment belongs to a post.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The post.
        #[sea_orm(
            belongs_to = "super::post::Entity",
            from = "Column::PostId",
            to = "super::post::Column::Id"
        )]
        Post,
    }

    impl Related<super::post::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Post.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// A post as the API shows it: serialised by serde on the model path, built by the table
/// view's refresh (its derived projection, evaluated over `blog_post`) on the pass-through path.
#[derive(Debug, Clone, PartialEq, Serialize, JsonProjection)]
#[serde(rename_all = "camelCase")]
pub struct BlogPostView {
    /// Primary key.
    pub id: i64,
    /// Title.
    pub title: String,
    /// URL-friendly name.
    pub slug: String,
    /// Body text.
    pub body: String,
    /// Whether readers can see it.
    #[projection(
        postgres = r#""published""#,
        sqlite = r#"json(iif("published", 'true', 'false'))"#
    )]
    pub published: bool,
    /// The author's id.
    pub author_id: i64,
    /// The author's display name (from `blog_author`).
    #[projection(sql = "(SELECT a.name FROM blog_author a WHERE a.id = blog_post.author_id)")]
    pub author_name: String,
    /// How many comments the post has (from `blog_comment`).
    #[projection(sql = "(SELECT count(*) FROM blog_comment c WHERE c.post_id = blog_post.id)")]
    pub comment_count: i64,
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

/// `tv_blog_post`: [`BlogPostView`]'s documents, one per post, with the columns the page
/// query filters (`published`) and sorts on (`created_at`, `id`), refreshed by row-level
/// triggers when `blog_post` or `blog_comment` change.
///
/// An author's rename is not followed: `depends_on` names tables whose rows point at a post,
/// and `blog_author` is pointed at by posts (the benchmark never writes authors).
pub fn table_view() -> TableView {
    TableView::of::<BlogPostView>("tv_blog_post", "blog_post")
        .key("created_at", KeyType::TimestampTz)
        .key("published", KeyType::Boolean)
        .index(["created_at", "id"])
        .depends_on("blog_comment", "post_id")
}

/// `GET /db/blog-orm?rows=N`: posts with their authors, then the page's comment counts, →
/// [`BlogPostView`] → [`ApiResponse`].
pub async fn orm(
    State(db): State<Db>,
    Query(q): Query<RowsParam>,
) -> Result<ApiResponse<Vec<BlogPostView>>, ChopinError> {
    let rows = q.get(MAX_LIST_ROWS)?;
    let posts = post::Entity::find()
        .find_also_related(author::Entity)
        .filter(post::Column::Published.eq(true))
        .order_by_desc(post::Column::CreatedAt)
        .order_by_desc(post::Column::Id)
        .limit(rows)
        .all(db.conn())
        .await?;
    let ids: Vec<i64> = posts.iter().map(|(p, _)| p.id).collect();
    let counts: HashMap<i64, i64> = if ids.is_empty() {
        HashMap::new()
    } else {
        comment::Entity::find()
            .select_only()
            .column(comment::Column::PostId)
            .column_as(Expr::col(comment::Column::Id).count(), "n")
            .filter(comment::Column::PostId.is_in(ids))
            .group_by(comment::Column::PostId)
            .into_tuple::<(i64, i64)>()
            .all(db.conn())
            .await?
            .into_iter()
            .collect()
    };
    let views = posts
        .into_iter()
        .map(|(p, author)| {
            let author = author.ok_or_else(|| {
                ChopinError::internal(format!("blog_post {}: no author {}", p.id, p.author_id))
            })?;
            Ok(BlogPostView {
                comment_count: counts.get(&p.id).copied().unwrap_or(0),
                id: p.id,
                title: p.title,
                slug: p.slug,
                body: p.body,
                published: p.published,
                author_id: p.author_id,
                author_name: author.name,
                created_at: p.created_at,
                updated_at: p.updated_at,
            })
        })
        .collect::<Result<Vec<_>, ChopinError>>()?;
    Ok(ApiResponse::success(views))
}

/// The query of `/db/blog-tv` (and of `bench/raw-pg-baseline`'s `/db/blog`).
pub const PAGE_SQL: &str = r#"SELECT data FROM tv_blog_post WHERE "published" ORDER BY "created_at" DESC, "id" DESC LIMIT $1"#;

/// `GET /db/blog-tv?rows=N`: the page's documents from `tv_blog_post`, copied as they are.
pub async fn table_view_page(
    State(db): State<Db>,
    Query(q): Query<RowsParam>,
) -> Result<JsonRows, ChopinError> {
    let rows = q.get(MAX_LIST_ROWS)?;
    JsonQuery::new(PAGE_SQL)
        .bind(Param::try_from(rows)?)
        .capacity_hint(body_capacity(rows))
        .list(&db)
        .await
}

/// Create (or re-create, idempotently) `tv_blog_post` with [`TableView::create`]: table, index,
/// refresh function, triggers, registry row, and the documents of the existing posts.
pub async fn create_views(db: &Db) -> Result<(), sea_orm::DbErr> {
    table_view().create(db).await
}

/// The blog routes, with their state applied.
pub fn router(db: Db) -> Router {
    Router::new()
        .route("/db/blog-orm", get(orm))
        .route("/db/blog-tv", get(table_view_page))
        .with_state(db)
}
