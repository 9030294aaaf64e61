//! The ceiling of the pass-through HTTP benchmark (`bench/run-db.sh`): a hand-written, minimal
//! axum handler with a plain sqlx `PgPool` and no Chopin code at all.
//!
//! `GET /db/passthrough?rows=N` (1 ≤ N ≤ 10 000, default 100) runs
//! `SELECT data FROM tv_item ORDER BY id LIMIT $1`, takes each row's raw `jsonb` bytes from the
//! driver (`try_get_raw(0)`, binary format: a version byte, then the JSON text), and
//! concatenates them into `{"success":true,"data":[…]}` — the same body as Chopin's
//! `/db/passthrough` — with the same initial buffer size (`64 + 480 × N` bytes).
//!
//! `GET /db/blog?rows=N` does the same over the blog's table view (`tv_blog_post`, created by
//! Chopin's `TableView` with `json` storage, whose binary format is the JSON text itself):
//! `SELECT data FROM tv_blog_post WHERE "published" ORDER BY "created_at" DESC, "id" DESC
//! LIMIT $1` — the same statement and body as Chopin's `/db/blog-tv`, buffer `64 + 600 × N`.
//!
//! Environment: `DATABASE_URL` (required), `MAX_CONNECTIONS` (pool size, default 6: Chopin's
//! default on one CPU; the pool is kept full), `BIND` (default `127.0.0.1:3014`).

#![warn(clippy::missing_docs_in_private_items)]

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::TryStreamExt;
use serde::Deserialize;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// Default listen address when `BIND` is not set.
const DEFAULT_BIND: &str = "127.0.0.1:3014";

/// Largest accepted `rows`.
const MAX_ROWS: u64 = 10_000;

/// `?rows=N`.
#[derive(Deserialize)]
struct RowsParam {
    /// Number of rows (default 100).
    rows: Option<u64>,
}

/// A plain-text 500 for driver errors.
fn internal(err: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
}

/// The statement of `/db/blog` (Chopin's `/db/blog-tv` runs the same).
const BLOG_SQL: &str = r#"SELECT data FROM tv_blog_post WHERE "published" ORDER BY "created_at" DESC, "id" DESC LIMIT $1"#;

/// `GET /db/passthrough?rows=N`: the rows' jsonb text concatenated into the envelope.
async fn passthrough(State(pool): State<PgPool>, Query(q): Query<RowsParam>) -> Response {
    list(
        &pool,
        q,
        "SELECT data FROM tv_item ORDER BY id LIMIT $1",
        480,
        true,
    )
    .await
}

/// `GET /db/blog?rows=N`: the rows' json text concatenated into the envelope.
async fn blog(State(pool): State<PgPool>, Query(q): Query<RowsParam>) -> Response {
    list(&pool, q, BLOG_SQL, 600, false).await
}

/// Runs `sql` (one parameter: the row count) and concatenates column 0 of every row into the
/// envelope; `jsonb` strips the binary `jsonb` version byte (a `json` value is the text).
async fn list(
    pool: &PgPool,
    q: RowsParam,
    sql: &'static str,
    per_row: usize,
    jsonb: bool,
) -> Response {
    let rows = match q.rows.unwrap_or(100) {
        n @ 1..=MAX_ROWS => n,
        n => return (StatusCode::BAD_REQUEST, format!("bad rows {n}")).into_response(),
    };
    let mut body = Vec::with_capacity(64 + per_row * rows as usize);
    body.extend_from_slice(br#"{"success":true,"data":["#);
    let mut stream = sqlx::query(sql).bind(rows as i64).fetch(pool);
    let mut first = true;
    loop {
        let row = match stream.try_next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => return internal(e),
        };
        let bytes = match row.try_get_raw(0).map(|v| v.as_bytes()) {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => return internal(e),
            Err(e) => return internal(e),
        };
        // Binary jsonb: version 1, then the JSON text.
        let text = if jsonb {
            let Some((1, text)) = bytes.split_first() else {
                return internal("unexpected jsonb encoding");
            };
            text
        } else {
            bytes
        };
        if !first {
            body.push(b',');
        }
        first = false;
        body.extend_from_slice(text);
    }
    body.extend_from_slice(b"]}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Connects the pool, then serves until killed.
#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is required")?;
    let size: u32 = match std::env::var("MAX_CONNECTIONS") {
        Ok(v) => v.parse()?,
        Err(_) => 6,
    };
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .min_connections(size)
        .connect(&url)
        .await?;
    let app = Router::new()
        .route("/db/passthrough", get(passthrough))
        .route("/db/blog", get(blog))
        .with_state(pool);
    let bind = std::env::var("BIND").unwrap_or_else(|_| DEFAULT_BIND.to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    eprintln!(
        "raw-pg-baseline listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
