//! `/api/posts/{id}/comments`.
//!
//! A draft's comments are as hidden as the draft: for a reader who may not see the post (see
//! [`super::visibility`]), both routes answer 404.

use axum::extract::State;
use chopin_core::error::ErrorEnvelope;
use chopin_core::extractors::{CursorPagination, CursorParameter};
use chopin_core::prelude::*;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use super::posts::post_not_found;
use super::visibility::Reader;
use crate::AppState;
use crate::entity::{comment, post};
use crate::extract::Id;

/// A comment as clients write it: the body of `POST /api/posts/{id}/comments`.
#[derive(Debug, Clone, Deserialize, Serialize, Validate, ToSchema)]
#[schema(example = json!({"author": "Ada", "body": "Nice post!"}))]
#[serde(rename_all = "camelCase")]
pub struct NewComment {
    /// 1 to 100 characters.
    #[validate(length(min = 1, max = 100))]
    #[schema(min_length = 1, max_length = 100)]
    pub author: String,
    /// 1 to 10 000 characters.
    #[validate(length(min = 1, max = 10_000))]
    #[schema(min_length = 1, max_length = 10_000)]
    pub body: String,
}

/// A comment as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommentView {
    /// The comment's id.
    pub id: i64,
    /// The post it belongs to.
    pub post_id: i64,
    /// Who wrote it.
    pub author: String,
    /// Comment text.
    pub body: String,
    /// Creation time (RFC 3339, UTC).
    #[serde(serialize_with = "super::rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<comment::Model> for CommentView {
    fn from(m: comment::Model) -> Self {
        CommentView {
            id: m.id,
            post_id: m.post_id,
            author: m.author,
            body: m.body,
            created_at: m.created_at,
        }
    }
}

/// List a post's comments, oldest first: by offset (with `meta.total`) or, with `?cursor=`,
/// by keyset over `(created_at, id)`.
#[utoipa::path(
    get,
    path = "/posts/{id}/comments",
    tag = "comments",
    params(Id, Pagination, CursorParameter),
    responses(
        (status = 200, description = "A page of comments: with `meta.offset` and `meta.total` by offset, with `meta.next_cursor` while more comments follow.", body = ApiResponse<Vec<CommentView>>),
        (status = 400, description = "Invalid id or pagination, or a refused cursor (`INVALID_CURSOR`).", body = ErrorEnvelope),
        (status = 404, description = "No such post, or a draft the reader may not see (`NOT_FOUND`).", body = ErrorEnvelope),
    ),
    security((), ("bearer" = []))
)]
pub async fn list_comments(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    Id(id): Id,
    page: Pagination,
    cursor: CursorPagination<(DateTime<Utc>, i64)>,
) -> Result<ApiResponse<Vec<CommentView>>, ChopinError> {
    let db = &state.db;
    check_visible(&state, user.as_ref(), id).await?;
    let key_of = |c: &CommentView| (c.created_at, c.id);
    let query = comment::Entity::find()
        .filter(comment::Column::PostId.eq(id))
        .order_by_asc(comment::Column::CreatedAt)
        .order_by_asc(comment::Column::Id);
    if let Some((created_at, after_id)) = cursor.after {
        let rows = query
            .filter(
                Expr::tuple([
                    Expr::col(comment::Column::CreatedAt),
                    Expr::col(comment::Column::Id),
                ])
                .gt(Expr::tuple([Expr::val(created_at), Expr::val(after_id)])),
            )
            .limit(cursor.fetch_limit())
            .all(db)
            .await?;
        let rows = rows.into_iter().map(CommentView::from).collect();
        return ApiResponse::cursor_paginated(rows, &cursor, key_of);
    }
    let total = query.clone().count(db).await?;
    let comments = query.limit(page.limit).offset(page.offset).all(db).await?;
    let items: Vec<CommentView> = comments.into_iter().map(CommentView::from).collect();
    let mut meta = PageMeta::new(&page, Some(total));
    if page.offset + (items.len() as u64) < total
        && let Some(last) = items.last()
    {
        meta.next_cursor = Some(cursor.cursor_after(&key_of(last))?);
    }
    Ok(ApiResponse::success(items).with_meta(meta))
}

/// Add a comment to a post.
#[utoipa::path(
    post,
    path = "/posts/{id}/comments",
    tag = "comments",
    params(Id),
    request_body = NewComment,
    responses(
        (status = 201, description = "The created comment.", body = ApiResponse<CommentView>),
        (status = 400, description = "Malformed JSON (`MALFORMED_JSON`), or the id is not a positive integer (`BAD_REQUEST`).", body = ErrorEnvelope),
        (status = 404, description = "No such post, or a draft the reader may not see (`NOT_FOUND`).", body = ErrorEnvelope),
    ),
    security((), ("bearer" = []))
)]
pub async fn create_comment(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    Id(id): Id,
    ValidJson(input): ValidJson<NewComment>,
) -> Result<ApiResponse<CommentView>, ChopinError> {
    check_visible(&state, user.as_ref(), id).await?;
    let insert = comment::ActiveModel {
        post_id: Set(id),
        author: Set(input.author),
        body: Set(input.body),
        created_at: Set(super::now()),
        ..Default::default()
    }
    .insert(&state.db)
    .await;
    // The post was visible a moment ago; the foreign key decides whether it still exists, so
    // a delete in between answers 404 too.
    match insert {
        Ok(created) => {
            // The post's cached view holds its comment count.
            super::posts::invalidate_post(&state, id).await;
            Ok(ApiResponse::created(created.into()))
        }
        Err(err) if is_foreign_key_violation(&err) => Err(post_not_found(id)),
        Err(err) => Err(err.into()),
    }
}

/// 404 unless post `id` exists and `user` may see it.
async fn check_visible(
    state: &AppState,
    user: Option<&AuthUser>,
    id: i64,
) -> Result<(), ChopinError> {
    let visible = post::Entity::find_by_id(id)
        .filter(Reader::of(user).condition())
        .count(&state.db)
        .await?;
    if visible == 0 {
        return Err(post_not_found(id));
    }
    Ok(())
}

fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}
