//! Keyset (cursor) pagination against offset pagination: the cost of page 1 and page 1,000 of
//! a 100,000-row table, 100 rows a page, each path measured side by side in one run.
//!
//! * `offset` — `Pagination::from_query("limit=100&offset=…")`, then
//!   `SELECT … ORDER BY created_at DESC, id DESC LIMIT 100 OFFSET …`, then
//!   `ApiResponse::paginated(…).into_response()`;
//! * `cursor` — `CursorPagination::from_query("limit=100&cursor=…")` (the signed cursor
//!   verified and decoded), then `… WHERE (created_at, id) < ($1, $2) ORDER BY created_at DESC,
//!   id DESC LIMIT 101`, then `ApiResponse::cursor_paginated(…).into_response()` (the next
//!   cursor signed).
//!
//! The table has an index on `(created_at, id)`; `created_at` repeats (three rows share each
//! value), so the `id` tie-break matters. Both paths go through sea-orm on Chopin's `Db`. The
//! bench first checks that page 1,000 is the same rows by cursor and by offset. It prints the
//! median of each case and the ratios:
//!
//! ```text
//! bash bench/keyset.sh              # PostgreSQL (CHOPIN_TEST_POSTGRES_URL, default 127.0.0.1)
//! bash bench/keyset.sh sqlite       # a SQLite file in a temporary directory
//! ```
//!
//! Not part of CI (it needs minutes and a database), and not a criterion bench: the database
//! dominates, and a median over a few hundred runs is what the comparison needs.

use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use chopin_core::config::DatabaseConfig;
use chopin_core::db::Db;
use chopin_core::extractors::{CursorKey, CursorPagination, PaginationConfig};
use chopin_core::prelude::*;
use chopin_core::signing::Signer;
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

const ROWS: i64 = 100_000;
const PAGE: u64 = 100;
const TARGET_PAGE: u64 = 1_000;
const RUNS: usize = 300;

#[derive(serde::Serialize)]
struct Item {
    id: i64,
    created_at: i64,
    title: String,
}

fn sql(backend: DbBackend, text: &str) -> Statement {
    Statement::from_string(backend, text.to_string())
}

async fn setup(db: &Db) {
    let backend = db.get_database_backend();
    let statements: &[&str] = match backend {
        DbBackend::Postgres => &[
            "DROP TABLE IF EXISTS keyset_items",
            "CREATE TABLE keyset_items (id BIGINT PRIMARY KEY, created_at BIGINT NOT NULL, title TEXT NOT NULL)",
            "INSERT INTO keyset_items SELECT g, 1700000000000 + g / 3, 'item number ' || g FROM generate_series(1, 100000) g",
            "CREATE INDEX keyset_items_created_at_id ON keyset_items (created_at, id)",
            "ANALYZE keyset_items",
        ],
        _ => &[
            "DROP TABLE IF EXISTS keyset_items",
            "CREATE TABLE keyset_items (id INTEGER PRIMARY KEY, created_at INTEGER NOT NULL, title TEXT NOT NULL)",
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 100000) \
             INSERT INTO keyset_items SELECT g, 1700000000000 + g / 3, 'item number ' || g FROM s",
            "CREATE INDEX keyset_items_created_at_id ON keyset_items (created_at, id)",
            "ANALYZE",
        ],
    };
    for text in statements {
        db.execute_raw(sql(backend, text)).await.expect(text);
    }
}

async fn fetch(db: &Db, statement: Statement) -> Vec<Item> {
    db.query_all_raw(statement)
        .await
        .expect("query")
        .into_iter()
        .map(|row| Item {
            id: row.try_get("", "id").unwrap(),
            created_at: row.try_get("", "created_at").unwrap(),
            title: row.try_get("", "title").unwrap(),
        })
        .collect()
}

/// One request's work on the offset path; the ids of the page.
async fn offset_page(db: &Db, query: &str) -> Vec<i64> {
    let page = Pagination::from_query(query, PaginationConfig::default()).unwrap();
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        match backend {
            DbBackend::Postgres => {
                "SELECT id, created_at, title FROM keyset_items ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
            }
            _ => {
                "SELECT id, created_at, title FROM keyset_items ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
            }
        },
        [
            Value::from(page.limit as i64),
            Value::from(page.offset as i64),
        ],
    );
    let rows = fetch(db, statement).await;
    let ids = rows.iter().map(|r| r.id).collect();
    std::hint::black_box(ApiResponse::paginated(rows, &page, None).into_response());
    ids
}

/// One request's work on the cursor path; the ids of the page.
async fn cursor_page(db: &Db, key: &CursorKey, query: &str) -> Vec<i64> {
    let page: CursorPagination<(i64, i64)> =
        CursorPagination::from_query(query, PaginationConfig::default(), key).unwrap();
    let backend = db.get_database_backend();
    let limit = Value::from(page.fetch_limit() as i64);
    let statement = match page.after {
        None => Statement::from_sql_and_values(
            backend,
            match backend {
                DbBackend::Postgres => {
                    "SELECT id, created_at, title FROM keyset_items ORDER BY created_at DESC, id DESC LIMIT $1"
                }
                _ => {
                    "SELECT id, created_at, title FROM keyset_items ORDER BY created_at DESC, id DESC LIMIT ?"
                }
            },
            [limit],
        ),
        Some((created_at, id)) => Statement::from_sql_and_values(
            backend,
            match backend {
                DbBackend::Postgres => {
                    "SELECT id, created_at, title FROM keyset_items WHERE (created_at, id) < ($1, $2) ORDER BY created_at DESC, id DESC LIMIT $3"
                }
                _ => {
                    "SELECT id, created_at, title FROM keyset_items WHERE (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT ?"
                }
            },
            [Value::from(created_at), Value::from(id), limit],
        ),
    };
    let rows = fetch(db, statement).await;
    let ids = rows.iter().take(PAGE as usize).map(|r| r.id).collect();
    let response = ApiResponse::cursor_paginated(rows, &page, |r| (r.created_at, r.id)).unwrap();
    std::hint::black_box(response.into_response());
    ids
}

async fn median<F: AsyncFn() -> Vec<i64>>(f: F) -> Duration {
    for _ in 0..RUNS / 10 {
        f().await;
    }
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        std::hint::black_box(f().await);
        times.push(start.elapsed());
    }
    times.sort();
    times[RUNS / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let backend = std::env::args()
        .skip(1)
        .find(|a| a == "sqlite" || a == "postgres")
        .unwrap_or_else(|| "postgres".into());
    let dir = tempfile::tempdir().unwrap();
    let pg = if backend == "postgres" {
        Some(
            chopin_core::testing::TestPostgres::create()
                .await
                .expect("PostgreSQL is reachable (CHOPIN_TEST_POSTGRES_URL)"),
        )
    } else {
        None
    };
    let url = match &pg {
        Some(pg) => pg.url().to_string(),
        None => format!("sqlite://{}", dir.path().join("keyset.db").display()),
    };
    let db = Db::connect(&DatabaseConfig::new(url)).await.unwrap();
    let started = Instant::now();
    setup(&db).await;
    println!(
        "{backend}: {ROWS} rows, index on (created_at, id), set up in {:.1?}",
        started.elapsed()
    );

    let key = CursorKey::new(Signer::random(), Duration::from_secs(3600));
    let offset = (TARGET_PAGE - 1) * PAGE;
    // The cursor that leads to page 1,000: the key of the last row of page 999.
    let before = offset_page(&db, &format!("limit=1&offset={}", offset - 1)).await;
    let row = fetch(
        &db,
        Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT id, created_at, title FROM keyset_items WHERE id = {}",
                before[0]
            ),
        ),
    )
    .await;
    let cursor = key.encode(&(row[0].created_at, row[0].id)).unwrap();
    let q_offset_1 = format!("limit={PAGE}");
    let q_offset_n = format!("limit={PAGE}&offset={offset}");
    let q_cursor_1 = format!("limit={PAGE}");
    let q_cursor_n = format!("limit={PAGE}&cursor={cursor}");

    let by_offset = offset_page(&db, &q_offset_n).await;
    let by_cursor = cursor_page(&db, &key, &q_cursor_n).await;
    assert_eq!(by_offset.len(), PAGE as usize);
    assert_eq!(
        by_offset, by_cursor,
        "page {TARGET_PAGE} differs between the two paths"
    );

    let offset_1 = median(async || offset_page(&db, &q_offset_1).await).await;
    let offset_n = median(async || offset_page(&db, &q_offset_n).await).await;
    let cursor_1 = median(async || cursor_page(&db, &key, &q_cursor_1).await).await;
    let cursor_n = median(async || cursor_page(&db, &key, &q_cursor_n).await).await;

    println!("median of {RUNS} requests' work (parse, query, response body), {PAGE} rows a page:");
    println!("  offset  page 1: {offset_1:>10.1?}   page {TARGET_PAGE}: {offset_n:>10.1?}");
    println!("  cursor  page 1: {cursor_1:>10.1?}   page {TARGET_PAGE}: {cursor_n:>10.1?}");
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "cursor page {TARGET_PAGE} / cursor page 1 = {:.2}",
        ratio(cursor_n, cursor_1)
    );
    println!(
        "offset page {TARGET_PAGE} / offset page 1 = {:.2}",
        ratio(offset_n, offset_1)
    );
    println!(
        "offset page {TARGET_PAGE} / cursor page {TARGET_PAGE} = {:.2}",
        ratio(offset_n, cursor_n)
    );
    db.close().await;
}
