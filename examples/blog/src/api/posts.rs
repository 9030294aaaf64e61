//! `/api/posts` and `/api/posts/{id}`.
//!
//! Reads take an optional access token: drafts are visible only to their author and to
//! admins (see [`super::visibility`]).

use std::collections::HashMap;

use axum::extract::State;
use chopin_core::error::ErrorEnvelope;
use chopin_core::extractors::{CursorPagination, CursorParameter};
use chopin_core::passthrough::JsonProjection;
use chopin_core::prelude::*;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ActiveValue::Unchanged, ColumnTrait, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::{Validate, ValidationError};

use super::visibility::Reader;
use crate::entity::{comment, post};
use crate::extract::{Id, PostFilter};
use crate::{ADMIN, AppState};

/// A post as clients write it: the body of `POST /api/posts` and of `PUT /api/posts/{id}`
/// (a full replacement: omitted optional fields take their defaults).
#[derive(Debug, Clone, Deserialize, Serialize, Validate, ToSchema)]
#[schema(example = json!({"title": "Hello, Chopin", "slug": "hello-chopin", "body": "First post.", "published": true}))]
#[serde(rename_all = "camelCase")]
pub struct NewPost {
    /// 1 to 200 characters.
    #[validate(length(min = 1, max = 200))]
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// 1 to 100 characters among lowercase ASCII letters, digits and `-`; unique across posts.
    #[validate(length(min = 1, max = 100), custom(function = "validate_slug"))]
    #[schema(min_length = 1, max_length = 100, pattern = "^[a-z0-9-]+$")]
    pub slug: String,
    /// Up to 100 000 characters.
    #[validate(length(max = 100_000))]
    #[schema(max_length = 100_000)]
    pub body: String,
    /// Whether readers can see the post (default `false`: a draft).
    #[serde(default)]
    pub published: bool,
}

/// Checks that a slug uses only `[a-z0-9-]`.
fn validate_slug(slug: &str) -> Result<(), ValidationError> {
    if slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err(ValidationError::new("slug")
            .with_message("may contain only lowercase letters, digits and hyphens".into()))
    }
}

/// A post as the API shows it.
///
/// The same struct serves both read paths: the model path serialises it with serde, and the
/// pass-through path serves the documents of the `tv_post` table view, which the database
/// builds (and rebuilds on every write, by trigger) from the SQL that [`JsonProjection`]
/// derives: exactly this JSON (see [`super::passthrough`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, JsonProjection)]
#[serde(rename_all = "camelCase")]
pub struct PostView {
    /// The post's id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Unique URL-friendly name.
    pub slug: String,
    /// Body text.
    pub body: String,
    /// Whether readers can see the post.
    #[projection(
        postgres = r#""published""#,
        sqlite = r#"json(iif("published", 'true', 'false'))"#
    )]
    pub published: bool,
    /// Creation time (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "super::rfc3339")]
    #[projection(
        postgres = r#"to_char("created_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#,
        sqlite = r#"strftime('%Y-%m-%dT%H:%M:%fZ', "created_at")"#
    )]
    pub created_at: DateTime<Utc>,
    /// Time of the last update (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "super::rfc3339")]
    #[projection(
        postgres = r#"to_char("updated_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#,
        sqlite = r#"strftime('%Y-%m-%dT%H:%M:%fZ', "updated_at")"#
    )]
    pub updated_at: DateTime<Utc>,
    /// The author's account id (`null` for posts older than authentication).
    pub author_id: Option<i64>,
    /// How many comments the post has.
    #[projection(sql = "(SELECT count(*) FROM comments c WHERE c.post_id = posts.id)")]
    pub comment_count: i64,
}

impl PostView {
    /// The view of post `m`, which has `comment_count` comments.
    pub fn new(m: post::Model, comment_count: i64) -> Self {
        PostView {
            id: m.id,
            title: m.title,
            slug: m.slug,
            body: m.body,
            published: m.published,
            created_at: m.created_at,
            updated_at: m.updated_at,
            author_id: m.author_id,
            comment_count,
        }
    }
}

/// The views of `posts`, with their comment counts (one grouped query for the page).
async fn views(state: &AppState, posts: Vec<post::Model>) -> Result<Vec<PostView>, ChopinError> {
    let ids: Vec<i64> = posts.iter().map(|p| p.id).collect();
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
            .all(&state.db)
            .await?
            .into_iter()
            .collect()
    };
    Ok(posts
        .into_iter()
        .map(|p| {
            let count = counts.get(&p.id).copied().unwrap_or(0);
            PostView::new(p, count)
        })
        .collect())
}

/// The view of one post, with its comment count.
async fn view(state: &AppState, post: post::Model) -> Result<PostView, ChopinError> {
    let mut views = views(state, vec![post]).await?;
    views
        .pop()
        .ok_or_else(|| ChopinError::Internal("a post without its view".into()))
}

/// The account id of an authenticated user (the `sub` of the token the auth module issued).
fn account_id(user: &AuthUser) -> Result<i64, ChopinError> {
    user.sub
        .parse()
        .map_err(|_| ChopinError::Forbidden("this token does not name a blog account".into()))
}

/// The post, or 404 when there is none or it is a draft `user` may not see (so that a write
/// does not disclose a draft's existence either).
async fn find_visible_post(
    state: &AppState,
    user: &AuthUser,
    id: i64,
) -> Result<post::Model, ChopinError> {
    post::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .filter(|p| Reader::of(Some(user)).may_see(p.published, p.author_id))
        .ok_or_else(|| post_not_found(id))
}

/// How long a post view stays cached. Writes through this API invalidate it at once; the TTL
/// only bounds staleness after changes made behind the API's back.
const POST_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The cache key of a post's view.
fn post_key(id: i64) -> String {
    format!("post:{id}")
}

/// Drop a post's cached view after a write. When the cache cannot confirm the invalidation
/// (Redis unreachable), the write has happened anyway: log it; readers may see the old view
/// for at most [`POST_CACHE_TTL`].
pub(crate) async fn invalidate_post(state: &AppState, id: i64) {
    if let Err(err) = state.cache.delete(&post_key(id)).await {
        tracing::warn!(%err, id, "could not invalidate the cached post");
    }
}

/// The message of the 404 of a post that does not exist.
pub(crate) fn post_not_found_message(id: i64) -> String {
    format!("post {id} not found")
}

/// The 404 of a post that does not exist.
pub(crate) fn post_not_found(id: i64) -> ChopinError {
    ChopinError::NotFound(post_not_found_message(id))
}

/// The sort key of the post list (newest first): `(created_at, id)`, what a cursor carries.
pub type PostKey = (DateTime<Utc>, i64);

/// List posts, newest first: the published ones, plus the reader's own drafts (every draft
/// for an admin); by offset (`limit`/`offset` or `page`/`per_page`, with `meta.total`), or by
/// keyset with `?cursor=` (`meta.next_cursor`, which offset pages also carry when more posts
/// follow).
#[utoipa::path(
    get,
    path = "/posts",
    tag = "posts",
    params(Pagination, CursorParameter, PostFilter),
    responses(
        (status = 200, description = "A page of the posts the reader may see: with `meta.offset` and `meta.total` by offset, with `meta.next_cursor` while more posts follow.", body = ApiResponse<Vec<PostView>>),
        (status = 400, description = "Invalid pagination or filter (`INVALID_QUERY`), or a refused cursor (`INVALID_CURSOR`).", body = ErrorEnvelope),
    ),
    security((), ("bearer" = []))
)]
pub async fn list_posts(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    page: Pagination,
    cursor: CursorPagination<PostKey>,
    filter: PostFilter,
) -> Result<ApiResponse<Vec<PostView>>, ChopinError> {
    let reader = Reader::of(user.as_ref());
    let mut query = post::Entity::find().filter(reader.condition());
    if let Some(published) = filter.published {
        query = query.filter(post::Column::Published.eq(published));
    }
    let key_of = |p: &PostView| (p.created_at, p.id);
    let query = query
        .order_by_desc(post::Column::CreatedAt)
        .order_by_desc(post::Column::Id);
    if let Some((created_at, id)) = cursor.after {
        // Keyset: `WHERE (created_at, id) < ($1, $2) ... LIMIT n + 1`, as cheap on page 1000
        // as on page 1 (index `idx_posts_created_at`).
        let rows = query
            .filter(
                Expr::tuple([
                    Expr::col(post::Column::CreatedAt),
                    Expr::col(post::Column::Id),
                ])
                .lt(Expr::tuple([Expr::val(created_at), Expr::val(id)])),
            )
            .limit(cursor.fetch_limit())
            .all(&state.db)
            .await?;
        let rows = views(&state, rows).await?;
        return ApiResponse::cursor_paginated(rows, &cursor, key_of);
    }
    let total = query.clone().count(&state.db).await?;
    let posts = query
        .limit(page.limit)
        .offset(page.offset)
        .all(&state.db)
        .await?;
    let items = views(&state, posts).await?;
    let mut meta = PageMeta::new(&page, Some(total));
    if page.offset + (items.len() as u64) < total
        && let Some(last) = items.last()
    {
        meta.next_cursor = Some(cursor.cursor_after(&key_of(last))?);
    }
    Ok(ApiResponse::success(items).with_meta(meta))
}

/// Create a post.
#[utoipa::path(
    post,
    path = "/posts",
    tag = "posts",
    request_body = NewPost,
    responses(
        (status = 201, description = "The created post.", body = ApiResponse<PostView>),
        (status = 409, description = "Another post has this slug (`CONFLICT`).", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn create_post(
    State(state): State<AppState>,
    user: AuthUser,
    ValidJson(input): ValidJson<NewPost>,
) -> Result<ApiResponse<PostView>, ChopinError> {
    let author = account_id(&user)?;
    let now = super::now();
    let created = post::ActiveModel {
        title: Set(input.title),
        slug: Set(input.slug),
        body: Set(input.body),
        published: Set(input.published),
        created_at: Set(now),
        updated_at: Set(now),
        author_id: Set(Some(author)),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;
    let view = PostView::new(created, 0);
    super::stream::publish(&state, &view);
    Ok(ApiResponse::created(view))
}

/// Show one post. A draft is shown to its author and to admins only.
#[utoipa::path(
    get,
    path = "/posts/{id}",
    tag = "posts",
    params(Id),
    responses(
        (status = 200, description = "The post.", body = ApiResponse<PostView>),
        (status = 400, description = "The id is not a positive integer.", body = ErrorEnvelope),
        (status = 404, description = "No such post, or a draft the reader may not see (`NOT_FOUND`).", body = ErrorEnvelope),
    ),
    security((), ("bearer" = []))
)]
pub async fn get_post(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    Id(id): Id,
) -> Result<ApiResponse<PostView>, ChopinError> {
    // Concurrent misses on one post run a single query; a 404 is not cached.
    let view = state
        .cache
        .get_or_load(&post_key(id), POST_CACHE_TTL, || async {
            match post::Entity::find_by_id(id).one(&state.db).await? {
                Some(post) => view(&state, post).await,
                None => Err(post_not_found(id)),
            }
        })
        .await?;
    // The cached view is the same for every reader; who may see it is decided per request.
    if !Reader::of(user.as_ref()).may_see(view.published, view.author_id) {
        return Err(post_not_found(id));
    }
    Ok(ApiResponse::success(view))
}

/// Replace a post (every field; `created_at` is kept, `updated_at` is set to now). Only its
/// author may.
#[utoipa::path(
    put,
    path = "/posts/{id}",
    tag = "posts",
    params(Id),
    request_body = NewPost,
    responses(
        (status = 200, description = "The updated post.", body = ApiResponse<PostView>),
        (status = 400, description = "Malformed JSON (`MALFORMED_JSON`), or the id is not a positive integer (`BAD_REQUEST`).", body = ErrorEnvelope),
        (status = 403, description = "Not the post's author (`FORBIDDEN`).", body = ErrorEnvelope),
        (status = 404, description = "No such post (`NOT_FOUND`).", body = ErrorEnvelope),
        (status = 409, description = "Another post has this slug (`CONFLICT`).", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn update_post(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
    ValidJson(input): ValidJson<NewPost>,
) -> Result<ApiResponse<PostView>, ChopinError> {
    let me = account_id(&user)?;
    let existing = find_visible_post(&state, &user, id).await?;
    if existing.author_id != Some(me) {
        return Err(ChopinError::Forbidden(
            "only the post's author may edit it".into(),
        ));
    }
    let update = post::ActiveModel {
        id: Unchanged(id),
        title: Set(input.title),
        slug: Set(input.slug),
        body: Set(input.body),
        published: Set(input.published),
        updated_at: Set(super::now()),
        ..Default::default()
    };
    // One UPDATE; no row matched means the post does not exist.
    match update.update(&state.db).await {
        Ok(post) => {
            invalidate_post(&state, id).await;
            Ok(ApiResponse::success(view(&state, post).await?))
        }
        Err(DbErr::RecordNotUpdated) => Err(post_not_found(id)),
        Err(err) => Err(err.into()),
    }
}

/// Delete a post and its comments. Its author may, and so may any admin.
#[utoipa::path(
    delete,
    path = "/posts/{id}",
    tag = "posts",
    params(Id),
    responses(
        (status = 204, description = "Deleted, with its comments."),
        (status = 400, description = "The id is not a positive integer.", body = ErrorEnvelope),
        (status = 403, description = "Neither the author nor an admin (`FORBIDDEN`).", body = ErrorEnvelope),
        (status = 404, description = "No such post (`NOT_FOUND`).", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn delete_post(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<ApiResponse<()>, ChopinError> {
    let me = account_id(&user)?;
    let existing = find_visible_post(&state, &user, id).await?;
    if existing.author_id != Some(me) && !user.has_role(ADMIN) {
        return Err(ChopinError::Forbidden(
            "only the post's author or an admin may delete it".into(),
        ));
    }
    let result = post::Entity::delete_by_id(id).exec(&state.db).await?;
    if result.rows_affected == 0 {
        return Err(post_not_found(id));
    }
    invalidate_post(&state, id).await;
    Ok(ApiResponse::no_content())
}
