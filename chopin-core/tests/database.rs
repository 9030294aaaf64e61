//! The database pool against real SQLite files and a real PostgreSQL server: pragmas, pool
//! settings, pool statistics, pool exhaustion answered with 503, constraint violations with
//! 409, and the `database` readiness check.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chopin_core::db::{Db, PoolSettings, PoolStatus, split_pool_settings};
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestPostgres};
use http::StatusCode;
use sea_orm::ConnectionTrait;
use sea_orm::sqlx;
use serde_json::json;

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

fn sqlite_url(dir: &tempfile::TempDir, query: &str) -> String {
    let path = dir.path().join("app.db");
    if query.is_empty() {
        format!("sqlite://{}", path.display())
    } else {
        format!("sqlite://{}?{query}", path.display())
    }
}

async fn connect(vars: &[(&str, &str)]) -> Db {
    Db::connect(&config(vars).database)
        .await
        .unwrap_or_else(|e| panic!("connect {vars:?}: {e}"))
}

/// Poll `db.get_pool_status()` until `pred` holds (connections return to the pool
/// asynchronously).
async fn wait_for_status(db: &Db, pred: impl Fn(&PoolStatus) -> bool) -> PoolStatus {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let status = db.get_pool_status();
        if pred(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "pool status never matched: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn check_status_invariants(s: &PoolStatus) {
    assert_eq!(s.size, s.idle + s.active, "{s:?}");
    assert!(s.size <= s.max, "{s:?}");
}

// ---------------------------------------------------------------------------------------------
// SQLite.

#[tokio::test]
async fn sqlite_file_is_created_if_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    assert!(!path.exists());
    let db = connect(&[("DATABASE_URL", &sqlite_url(&dir, ""))]).await;
    db.execute_unprepared("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
        .await
        .unwrap();
    assert!(path.exists(), "the database file is created");
    db.close().await;

    // Data persists in the file across pools.
    let db = connect(&[("DATABASE_URL", &sqlite_url(&dir, ""))]).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(db.sqlite_pool().unwrap())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn sqlite_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&[("DATABASE_URL", &sqlite_url(&dir, "max_connections=2"))]).await;
    let pool = db.sqlite_pool().expect("a SQLite pool");
    // Check every connection of the pool, not just the first.
    let mut a = pool.acquire().await.unwrap();
    let mut b = pool.acquire().await.unwrap();
    for conn in [&mut *a, &mut *b] {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(busy, 5000);
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
    }
    assert!(db.postgres_pool().is_none());
}

#[tokio::test]
async fn pool_settings_from_the_url_are_applied_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(
        &dir,
        "max_connections=3&min_connections=0&acquire_timeout=750ms&idle_timeout=30s&max_lifetime=10m",
    );
    let db = connect(&[("DATABASE_URL", &url)]).await;
    assert_eq!(
        *db.settings(),
        PoolSettings {
            max_connections: 3,
            min_connections: 0,
            acquire_timeout: Duration::from_millis(750),
            idle_timeout: Some(Duration::from_secs(30)),
            max_lifetime: Some(Duration::from_secs(600)),
        }
    );
    assert_eq!(db.get_pool_status().max, 3);

    let (driver_url, _) = split_pool_settings(&config(&[("DATABASE_URL", &url)]).database).unwrap();
    assert_eq!(driver_url, sqlite_url(&dir, ""));

    // Parameters that are not pool settings still reach the driver (which rejects unknown
    // ones), so a successful connect above proves the pool settings were taken out.
    let (driver_url, _) = split_pool_settings(
        &config(&[(
            "DATABASE_URL",
            &sqlite_url(&dir, "max_connections=2&mode=rwc"),
        )])
        .database,
    )
    .unwrap();
    assert_eq!(driver_url, sqlite_url(&dir, "mode=rwc"));
    let err = Db::connect(&config(&[("DATABASE_URL", &sqlite_url(&dir, "bogus=1"))]).database)
        .await
        .expect_err("an unknown parameter reaches the driver");
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[tokio::test]
async fn pool_settings_from_variables_and_url_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir, "");
    let db = connect(&[
        ("DATABASE_URL", &url),
        ("DATABASE_MAX_CONNECTIONS", "4"),
        ("DATABASE_MIN_CONNECTIONS", "0"),
        ("DATABASE_ACQUIRE_TIMEOUT", "2s"),
        ("DATABASE_IDLE_TIMEOUT", "1m"),
        ("DATABASE_MAX_LIFETIME", "5m"),
    ])
    .await;
    assert_eq!(
        *db.settings(),
        PoolSettings {
            max_connections: 4,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(2),
            idle_timeout: Some(Duration::from_secs(60)),
            max_lifetime: Some(Duration::from_secs(300)),
        }
    );

    // The URL wins over the variables.
    let db = connect(&[
        (
            "DATABASE_URL",
            &sqlite_url(&dir, "max_connections=2&acquire_timeout=100ms"),
        ),
        ("DATABASE_MAX_CONNECTIONS", "9"),
        ("DATABASE_ACQUIRE_TIMEOUT", "9s"),
    ])
    .await;
    assert_eq!(db.settings().max_connections, 2);
    assert_eq!(db.settings().acquire_timeout, Duration::from_millis(100));

    // Nothing set: defaults sized from the CPU count.
    let db = connect(&[("DATABASE_URL", &url)]).await;
    assert_eq!(*db.settings(), PoolSettings::defaults());
}

#[tokio::test]
async fn bad_pool_settings_are_errors_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    for (query, needle) in [
        ("max_connections=0", "max_connections"),
        ("max_connections=lots", "max_connections"),
        ("acquire_timeout=soon", "acquire_timeout"),
        ("idle_timeout=x", "idle_timeout"),
        ("max_lifetime=-1", "max_lifetime"),
        ("min_connections=5&max_connections=2", "min_connections"),
    ] {
        let err = Db::connect(&config(&[("DATABASE_URL", &sqlite_url(&dir, query))]).database)
            .await
            .expect_err(query);
        assert!(err.to_string().contains(needle), "{query}: {err}");
    }
    let err = Db::connect(&config(&[("DATABASE_URL", "mysql://db/app")]).database)
        .await
        .expect_err("unsupported scheme");
    assert!(err.to_string().contains("mysql"), "{err}");
}

#[tokio::test]
async fn pool_status_tracks_held_connections() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&[(
        "DATABASE_URL",
        &sqlite_url(&dir, "max_connections=3&min_connections=0"),
    )])
    .await;
    let pool = db.sqlite_pool().unwrap();
    let idle = wait_for_status(&db, |s| s.active == 0).await;
    check_status_invariants(&idle);
    assert_eq!(idle.max, 3);

    let a = pool.acquire().await.unwrap();
    let one = db.get_pool_status();
    check_status_invariants(&one);
    assert_eq!(one.active, 1, "{one:?}");
    assert!(one.size >= 1);

    let b = pool.acquire().await.unwrap();
    let two = db.get_pool_status();
    check_status_invariants(&two);
    assert_eq!(two.active, 2, "{two:?}");
    assert!(two.size >= 2);

    // A sea-orm transaction holds a connection too.
    let txn = sea_orm::TransactionTrait::begin(db.conn()).await.unwrap();
    let three = db.get_pool_status();
    assert_eq!(
        (three.active, three.size, three.idle),
        (3, 3, 0),
        "{three:?}"
    );
    txn.rollback().await.unwrap();

    drop(a);
    drop(b);
    let back = wait_for_status(&db, |s| s.active == 0).await;
    check_status_invariants(&back);
    assert!(back.idle >= 2, "returned connections are idle: {back:?}");
}

async fn query(State(db): State<Db>) -> Result<ApiResponse<&'static str>, ChopinError> {
    db.execute_unprepared("SELECT 1").await?;
    Ok(ApiResponse::success("ok"))
}

fn query_client(db: &Db) -> TestClient {
    TestClient::new(
        App::with_state(Config::for_environment(Environment::Test), db.clone())
            .router(Router::new().route("/query", get(query)))
            .into_router(),
    )
}

/// Holds the only connection and checks that a request needing one gets a prompt 503.
async fn assert_exhaustion_is_503(db: &Db, hold: impl std::future::Future<Output = Box<dyn Send>>) {
    let c = query_client(db);
    assert_eq!(c.get("/query").await.status, StatusCode::OK);

    let held = hold.await;
    let started = Instant::now();
    let res = c.get("/query").await;
    let elapsed = started.elapsed();
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    assert_eq!(
        res.value(),
        json!({
            "success": false,
            "error": {
                "code": "SERVICE_UNAVAILABLE",
                "message": "the database is busy; retry shortly",
                "request_id": res.header("x-request-id").unwrap(),
            }
        })
    );
    assert_eq!(res.header("retry-after"), Some("1"));
    assert!(
        elapsed >= Duration::from_millis(300),
        "waited for the acquire timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "answered promptly: {elapsed:?}"
    );

    drop(held);
    // Once the connection is back, requests succeed again.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let res = c.get("/query").await;
        if res.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pool never recovered: {}",
            res.text()
        );
    }
}

#[tokio::test]
async fn sqlite_pool_exhaustion_is_503() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&[(
        "DATABASE_URL",
        &sqlite_url(&dir, "max_connections=1&acquire_timeout=300ms"),
    )])
    .await;
    let pool = db.sqlite_pool().unwrap().clone();
    assert_exhaustion_is_503(&db, async move {
        Box::new(pool.acquire().await.unwrap()) as Box<dyn Send>
    })
    .await;

    // Holding it through a sea-orm transaction has the same effect.
    let conn = db.conn().clone();
    assert_exhaustion_is_503(&db, async move {
        let txn = sea_orm::TransactionTrait::begin(&conn).await.unwrap();
        Box::new(txn) as Box<dyn Send>
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Readiness.

#[tokio::test]
async fn ready_reports_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&[("DATABASE_URL", &sqlite_url(&dir, ""))]).await;
    let c = TestClient::new(
        App::new(Config::for_environment(Environment::Production))
            .database(&db)
            .into_router(),
    );
    let res = c.get("/health/ready").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        res.value(),
        json!({"success": true, "data": {"status": "ready", "checks": {"database": "ok"}}})
    );

    db.close().await;
    let res = c.get("/health/ready").await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    let body = res.value();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("database"), "{message}");
    assert!(res.header("retry-after").is_some());
    assert!(
        body["error"].get("detail").is_none(),
        "no internals in production"
    );
    // Liveness is unaffected.
    assert_eq!(c.get("/health/live").await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL.

async fn postgres(query: &str) -> Option<(TestPostgres, Db)> {
    let pg = TestPostgres::create().await?;
    let url = if query.is_empty() {
        pg.url().to_string()
    } else {
        format!("{}?{query}", pg.url())
    };
    let db = connect(&[("DATABASE_URL", &url)]).await;
    Some((pg, db))
}

#[tokio::test]
async fn postgres_pool_status_tracks_held_connections() {
    let Some((_pg, db)) = postgres("max_connections=3&min_connections=0").await else {
        return;
    };
    assert!(db.sqlite_pool().is_none());
    let pool = db.postgres_pool().expect("a PostgreSQL pool").clone();
    let idle = wait_for_status(&db, |s| s.active == 0).await;
    check_status_invariants(&idle);
    assert_eq!(idle.max, 3);
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let held = db.get_pool_status();
    check_status_invariants(&held);
    assert_eq!(held.active, 2, "{held:?}");
    drop((a, b));
    let back = wait_for_status(&db, |s| s.active == 0).await;
    assert!(back.idle >= 2, "{back:?}");
    db.close().await;
}

#[tokio::test]
async fn postgres_pool_exhaustion_is_503() {
    let Some((_pg, db)) = postgres("max_connections=1&acquire_timeout=300ms").await else {
        return;
    };
    let pool = db.postgres_pool().unwrap().clone();
    assert_exhaustion_is_503(&db, async move {
        Box::new(pool.acquire().await.unwrap()) as Box<dyn Send>
    })
    .await;
    db.close().await;
}

async fn insert_user(State(db): State<Db>) -> Result<ApiResponse<&'static str>, ChopinError> {
    db.execute_unprepared("INSERT INTO users (email) VALUES ('ada@example.com')")
        .await?;
    Ok(ApiResponse::created("created"))
}

async fn insert_orphan(State(db): State<Db>) -> Result<ApiResponse<&'static str>, ChopinError> {
    db.execute_unprepared("INSERT INTO posts (user_id) VALUES (424242)")
        .await?;
    Ok(ApiResponse::created("created"))
}

#[tokio::test]
async fn postgres_constraint_violations_are_409() {
    let Some((_pg, db)) = postgres("").await else {
        return;
    };
    db.execute_unprepared(
        "CREATE TABLE users (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE);
         CREATE TABLE posts (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id));",
    )
    .await
    .unwrap();
    let c = TestClient::new(
        App::with_state(Config::for_environment(Environment::Production), db.clone())
            .router(
                Router::new()
                    .route("/users", post(insert_user))
                    .route("/posts", post(insert_orphan)),
            )
            .into_router(),
    );
    let res = c.post_json("/users", &json!({})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let res = c.post_json("/users", &json!({})).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.text());
    assert_eq!(
        res.value(),
        json!({
            "success": false,
            "error": {
                "code": "CONFLICT",
                "message": "a resource with the same unique value already exists",
                "request_id": res.header("x-request-id").unwrap(),
            }
        })
    );
    assert!(!res.text().contains("duplicate key"), "{}", res.text());

    let res = c.post_json("/posts", &json!({})).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.text());
    assert_eq!(
        res.value()["error"]["message"],
        "the change conflicts with a related resource"
    );
    db.close().await;
}

#[tokio::test]
async fn postgres_ready_check() {
    let Some((_pg, db)) = postgres("").await else {
        return;
    };
    let c = TestClient::new(
        App::new(Config::for_environment(Environment::Test))
            .database(&db)
            .into_router(),
    );
    let res = c.get("/health/ready").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.value()["data"]["checks"]["database"], "ok");
    db.close().await;
    let res = c.get("/health/ready").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        res.value()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database")
    );
}

/// `Db` is a sea-orm connection in every respect: transactions (explicit and with a closure,
/// committed and rolled back), row streams, and schema management all take `&db`.
#[tokio::test]
async fn db_is_a_sea_orm_connection() {
    use futures_util::StreamExt;
    use sea_orm::{DbBackend, Statement, StreamTrait, TransactionError, TransactionTrait};

    let dir = tempfile::TempDir::new().unwrap();
    let db = connect(&[("DATABASE_URL", &sqlite_url(&dir, ""))]).await;
    assert_eq!(db.get_database_backend(), DbBackend::Sqlite);
    db.execute_unprepared("CREATE TABLE t (n INTEGER NOT NULL)")
        .await
        .unwrap();
    let count = |db: Db| async move {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT COUNT(*) AS c FROM t",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "c").unwrap()
    };

    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(count(db.clone()).await, 0, "rolled back");

    db.transaction::<_, (), sea_orm::DbErr>(|txn| {
        Box::pin(async move {
            txn.execute_unprepared("INSERT INTO t VALUES (1), (2)")
                .await?;
            Ok(())
        })
    })
    .await
    .unwrap();
    assert_eq!(count(db.clone()).await, 2, "committed");

    let failed = db
        .transaction::<_, (), String>(|txn| {
            Box::pin(async move {
                txn.execute_unprepared("INSERT INTO t VALUES (3)")
                    .await
                    .map_err(|e| e.to_string())?;
                Err("changed my mind".to_string())
            })
        })
        .await;
    assert!(matches!(failed, Err(TransactionError::Transaction(_))));
    assert_eq!(count(db.clone()).await, 2, "a failing closure rolls back");

    let rows: Vec<i64> = db
        .stream_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT n FROM t ORDER BY n",
        ))
        .await
        .unwrap()
        .map(|row| row.unwrap().try_get::<i64>("", "n").unwrap())
        .collect()
        .await;
    assert_eq!(rows, [1, 2]);

    let schema = sea_orm_migration::SchemaManager::new(&db);
    assert!(schema.has_table("t").await.unwrap());
    assert!(!schema.has_table("missing").await.unwrap());
}
