//! Endpoints of the cache benchmark (`bench/run-cache.sh`): the same responses as `/json` and
//! `/db/passthrough`, served from a [`Cache`] through the same layer stack.
//!
//! * `GET /cached/json` — the `/json` document, `{"message":"Hello, World!"}`, from
//!   [`Cache::memory`] (moka): `get_bytes`, and on a miss the document is serialised and stored,
//!   so every request after the first is a moka hit answered with the stored bytes;
//! * `GET /cached/db?rows=N` — the `/db/passthrough?rows=N` list (default 100), from
//!   [`Cache::redis`]: one Redis `GET` per request; on a miss the pass-through query of
//!   [`crate::db::passthrough`] runs and its body is stored for [`DB_TTL`]. Only when both
//!   `REDIS_URL` and `DATABASE_URL` are set. Its uncached twin is `/db/passthrough`.
//!
//! Cached bytes are sent as they are with `Content-Type: application/json`. The typed
//! `get_or_load` is not used: it would decode the stored JSON on every hit, which is the cost a
//! byte cache of finished responses avoids.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chopin_core::cache::{CacheConfig, CacheError};
use chopin_core::extractors::Query;
use chopin_core::prelude::*;
use serde::Serialize;
use std::time::Duration;

use crate::db::{self, RowsParam};

/// How long `/cached/json` keeps its document (the first request after expiry rebuilds it).
pub const JSON_TTL: Duration = Duration::from_secs(3600);

/// How long `/cached/db` keeps a list in Redis.
pub const DB_TTL: Duration = Duration::from_secs(300);

/// Redis key namespace of the cached lists.
pub const REDIS_NAMESPACE: &str = "chopin-bench-example";

/// Cache key of the `/cached/json` document.
const JSON_KEY: &str = "json";

/// The `/json` document (same shape and text as `main.rs`'s `Message`).
#[derive(Serialize)]
struct Message {
    /// Always `Hello, World!`.
    message: &'static str,
}

/// The caches and the database behind the cached routes.
#[derive(Clone)]
pub struct CachedState {
    /// In-process moka cache (always built).
    memory: Cache,
    /// Redis cache (`REDIS_URL` set) and the database loading its misses (`DATABASE_URL` set).
    redis_db: Option<(Cache, Db)>,
}

/// `body` as an `application/json` response.
fn json_bytes(body: Bytes) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// `GET /cached/json`: the `/json` document from moka.
pub async fn cached_json(State(state): State<CachedState>) -> Result<Response, ChopinError> {
    if let Some(body) = state.memory.get_bytes(JSON_KEY).await {
        return Ok(json_bytes(body));
    }
    let body = chopin_core::json::to_bytes(&Message {
        message: "Hello, World!",
    })
    .map_err(ChopinError::internal)?;
    state
        .memory
        .set_bytes(JSON_KEY, body.clone(), JSON_TTL)
        .await;
    Ok(json_bytes(body))
}

/// `GET /cached/db?rows=N`: the `/db/passthrough?rows=N` body from Redis, loaded on a miss.
pub async fn cached_db(
    State(state): State<CachedState>,
    Query(q): Query<RowsParam>,
) -> Result<Response, ChopinError> {
    let Some((redis, database)) = state.redis_db else {
        return Err(ChopinError::NotFound(
            "set REDIS_URL and DATABASE_URL".into(),
        ));
    };
    let key = format!("db:passthrough:{}", q.rows.unwrap_or(100));
    if let Some(body) = redis.get_bytes(&key).await {
        return Ok(json_bytes(body));
    }
    // `passthrough` checks `rows`, so only valid lists are ever stored.
    let body = Bytes::from(
        db::passthrough(State(database), Query(q))
            .await?
            .into_body(),
    );
    redis.set_bytes(&key, body.clone(), DB_TTL).await;
    Ok(json_bytes(body))
}

/// The cached routes with their state: `/cached/json` always; `/cached/db` when `REDIS_URL` is
/// set and `database` is given. Fails when `REDIS_URL` is set but Redis cannot be reached.
pub async fn router(database: Option<&Db>) -> Result<Router, CacheError> {
    let memory = Cache::memory(&CacheConfig::default());
    let redis = match std::env::var("REDIS_URL") {
        Ok(redis_url) => {
            let config = CacheConfig {
                redis_url,
                namespace: REDIS_NAMESPACE.into(),
                ..CacheConfig::default()
            };
            Some(Cache::redis(&config).await?)
        }
        Err(_) => None,
    };
    let redis_db = redis.zip(database.cloned());
    let mut router = Router::new().route("/cached/json", get(cached_json));
    if redis_db.is_some() {
        router = router.route("/cached/db", get(cached_db));
    }
    Ok(router.with_state(CachedState { memory, redis_db }))
}
