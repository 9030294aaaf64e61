//! `GET /api/posts/stream`: new posts as server-sent events, as they are created.
//!
//! [`create_post`](super::posts::create_post) publishes each post it creates to a
//! [`tokio::sync::broadcast`] channel kept in [`AppState`]; every open stream holds a
//! receiver and turns what it receives into events whose `data` is the post's JSON (the same
//! [`PostView`] the other routes answer with), written by Chopin's JSON engine.
//!
//! The channel lives in this process only: with several instances, a client sees the posts
//! created through the instance it is connected to. Sharing them would take a pub/sub channel
//! (Redis, PostgreSQL `LISTEN`) feeding each instance's broadcast.

use axum::extract::State;
use chopin_core::auth::AuthUser;
use chopin_core::error::ErrorEnvelope;
use chopin_core::sse::{self, JsonEvents, KeepAlive, KeepAliveStream, Sse};
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;

use super::posts::PostView;
use super::visibility::Reader;
use crate::AppState;
use crate::extract::PostFilter;

/// How many created posts a slow stream may fall behind before it skips some.
pub const FEED_CAPACITY: usize = 256;

/// A stream of post views.
pub type PostStream = BoxStream<'static, PostView>;

/// The posts created from now on, one per event, kept alive with comments.
#[utoipa::path(
    get,
    path = "/posts/stream",
    tag = "posts",
    params(PostFilter),
    responses(
        (
            status = 200,
            description = "An endless `text/event-stream`: one event per post created from now on that the reader may see (drafts only for their author and admins; `data` is the post's JSON), and keep-alive comments. `?published=` filters like the list.",
            content_type = "text/event-stream",
            body = PostView
        ),
        (status = 400, description = "Invalid filter (`INVALID_QUERY`).", body = ErrorEnvelope),
    ),
    security((), ("bearer" = []))
)]
pub async fn stream_posts(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    filter: PostFilter,
) -> Sse<KeepAliveStream<JsonEvents<PostStream>>> {
    let reader = Reader::of(user.as_ref());
    // Subscribed before the response starts: a post created once the client has the headers
    // is never missed.
    let posts = stream::unfold(state.new_posts.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(post) => return Some((post, rx)),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "a post stream fell behind; skipping posts");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |post| {
        std::future::ready(
            reader.may_see(post.published, post.author_id)
                && filter.published.is_none_or(|p| p == post.published),
        )
    })
    .boxed();
    Sse::new(sse::json_events(posts)).keep_alive(KeepAlive::default())
}

/// Tell the open streams about a post that was just created. Nobody listening is fine.
pub(crate) fn publish(state: &AppState, post: &PostView) {
    let _ = state.new_posts.send(post.clone());
}
