//! Test bodies shared by `passthrough_sqlite.rs` and `passthrough_postgres.rs`. Each backend
//! file keeps its own test functions (same names), implements [`Backend`] and calls these
//! bodies; what only one backend does (json vs jsonb, cancellation) stays in its file.

use std::any::Any;
use std::future::Future;
use std::time::{Duration, Instant};

use chopin_core::db::Db;
use chopin_core::passthrough::{JsonQuery, JsonStream};
use chopin_core::prelude::*;
use http::StatusCode;

use crate::common::*;

/// What the shared bodies need from a backend's test file.
pub trait Backend: 'static {
    /// What keeps the database alive during the test (a temporary folder, a `TestPostgres`).
    type Guard;

    /// `post` rows as a list (`id`, `title`) in this backend's JSON function.
    const POSTS: &'static str;

    /// The rows `{"n":1}` to `{"n":100000}`, in order.
    const SERIES_100K: &'static str;

    /// The seeded database of the file, with the pool settings in `query`; `None` when the
    /// test is skipped (no server outside CI).
    fn seeded(query: &str) -> impl Future<Output = Option<(Self::Guard, Db)>>;

    /// The row `{"n": n}` as the backend's JSON function writes it.
    fn n_row(n: u64) -> String;

    /// Take a connection from the pool and keep it until the box is dropped.
    fn hold_connection(db: &Db) -> impl Future<Output = Box<dyn Any + Send>>;
}

/// The 100,000-row stream, in chunks of 4 KiB.
pub async fn stream_100k<B: Backend>(db: Db) -> Result<JsonStream, ChopinError> {
    JsonQuery::new(B::SERIES_100K)
        .chunk_size(4096)
        .stream(&db)
        .await
}

#[derive(serde::Deserialize)]
struct NRows {
    success: bool,
    data: Vec<NRow>,
}

#[derive(serde::Deserialize)]
struct NRow {
    n: u64,
}

/// `body` is the list envelope of the rows `{"n":1}` to `{"n":len}`.
pub fn assert_series(body: &[u8], len: u64) {
    let parsed: NRows = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("streamed body is not the document ({e}): {}", preview(body)));
    assert!(parsed.success);
    assert_eq!(parsed.data.len() as u64, len);
    for (i, row) in parsed.data.iter().enumerate() {
        assert_eq!(row.n, i as u64 + 1);
    }
}

/// With the pool's only connection held, every way of answering (`list`, `one`, `stream`)
/// waits the acquire timeout and answers 503 with `Retry-After`; the pool recovers after.
pub async fn pool_exhaustion_is_503_with_retry_after<B: Backend>() {
    let Some((_guard, db)) = B::seeded("max_connections=1&acquire_timeout=300ms").await else {
        return;
    };
    let c = Routes::new()
        .get("/list", |db| async move {
            JsonQuery::new(B::POSTS).list(&db).await
        })
        .get("/one", |db| async move {
            JsonQuery::new(B::POSTS).one(&db).await
        })
        .get("/stream", |db| async move {
            JsonQuery::new(B::POSTS).stream(&db).await
        })
        .client(&db);
    assert_eq!(c.get("/list").await.status, StatusCode::OK);
    assert_eq!(c.get("/stream").await.status, StatusCode::OK);
    let held = B::hold_connection(&db).await;
    for uri in ["/list", "/one", "/stream"] {
        let started = Instant::now();
        let res = c.get(uri).await;
        assert_error(
            &res,
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the database is busy; retry shortly",
        );
        assert_eq!(res.header("retry-after"), Some("1"), "{uri}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{uri}: {waited:?}");
        assert!(waited < Duration::from_secs(3), "{uri}: {waited:?}");
    }
    drop(held);
    let ok = wait_until(Duration::from_secs(3), || async {
        c.get("/list").await.status == StatusCode::OK
    })
    .await;
    assert!(ok.is_some(), "the pool recovers");
    db.close().await;
}

/// 100,000 rows in process: chunks of about 4 KiB, the first sent with the first row, the
/// whole document intact, and the connection back in the pool afterwards.
pub async fn stream_100k_rows_in_bounded_chunks_in_process<B: Backend>() {
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let router = Routes::new().get("/stream", stream_100k::<B>).router(&db);
    let frames = frames_in_process(router, "/stream").await;
    assert_eq!(frames.status, StatusCode::OK);
    assert_eq!(
        frames.headers.get("content-type").unwrap(),
        "application/json"
    );
    assert!(frames.error.is_none(), "{:?}", frames.error);
    // ~1 MB in chunks of about 4 KiB: the first chunk goes out with the first row.
    let first = format!(r#"{{"success":true,"data":[{}"#, B::n_row(1));
    assert_eq!(&frames.chunks[0][..], first.as_bytes());
    assert!(frames.chunks.len() > 100, "{} chunks", frames.chunks.len());
    assert!(
        frames.largest_chunk() <= 4096 + 32,
        "largest chunk {} bytes",
        frames.largest_chunk()
    );
    let last = format!("{}]}}", B::n_row(100_000));
    assert!(frames.chunks.last().unwrap().ends_with(last.as_bytes()));
    assert_series(&frames.body(), 100_000);
    // The streaming connection went back to the pool.
    let back = wait_until(Duration::from_secs(3), || async {
        db.get_pool_status().active == 0
    })
    .await;
    assert!(back.is_some(), "{:?}", db.get_pool_status());
}

/// 100,000 rows over real TCP: a chunked transfer of the whole document.
pub async fn stream_100k_rows_over_tcp<B: Backend>() {
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let server = Routes::new()
        .get("/stream", stream_100k::<B>)
        .serve(&db)
        .await;
    let frames = frames_over_tcp(&server.url("/stream")).await;
    assert_eq!(frames.status, StatusCode::OK);
    assert!(frames.error.is_none(), "{:?}", frames.error);
    assert_eq!(
        frames
            .headers
            .get("transfer-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"chunked"[..])
    );
    assert!(frames.chunks.len() > 1, "{} chunks", frames.chunks.len());
    assert_series(&frames.body(), 100_000);
}
