//! The server, database and pass-through metric families, read from the process-wide
//! registry's scrape (`chopin_core::metrics::global().encode()`) before and after driving a
//! real server over real sockets, a real SQLite file and (under CI) a real PostgreSQL server.
//!
//! The registry is shared by every test of this binary: the tests run one at a time (`SERIAL`)
//! and assert exact deltas; pool gauges are read under a pool name no other test uses.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chopin_core::Config;
use chopin_core::db::Db;
use chopin_core::passthrough::JsonQuery;
use chopin_core::server::Server;
use chopin_core::testing::TestPostgres;
use sea_orm::{ConnectionTrait, Statement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One test at a time: the counters are process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Upper bound of every test.
const LIMIT: Duration = Duration::from_secs(15);

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test finished in time")
}

// ---------------------------------------------------------------------------------------------
// Reading the scrape
// ---------------------------------------------------------------------------------------------

/// Every sample of the scrape: `name{labels}` → value.
fn scrape() -> HashMap<String, f64> {
    chopin_core::metrics::global()
        .encode()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of `series` (exactly as printed, labels included); 0 when absent.
fn value(series: &str) -> f64 {
    scrape().get(series).copied().unwrap_or(0.0)
}

/// Whether `series` is in the scrape at all.
fn present(series: &str) -> bool {
    scrape().contains_key(series)
}

/// What `series` gained since `before`.
fn delta(before: &HashMap<String, f64>, series: &str) -> f64 {
    value(series) - before.get(series).copied().unwrap_or(0.0)
}

/// Wait (up to 5 s) until `series` has `expected`; its last value otherwise.
async fn eventually(series: &str, expected: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = value(series);
        if got == expected || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait (up to 5 s) until `series` has gained `expected` since `before`; the last delta.
async fn eventually_delta(before: &HashMap<String, f64>, series: &str, expected: f64) -> f64 {
    let base = before.get(series).copied().unwrap_or(0.0);
    eventually(series, base + expected).await - base
}

fn pool_series(pool: &str) -> (String, String, String, String) {
    (
        format!("chopin_db_pool_connections{{pool=\"{pool}\",state=\"idle\"}}"),
        format!("chopin_db_pool_connections{{pool=\"{pool}\",state=\"in_use\"}}"),
        format!("chopin_db_pool_max_connections{{pool=\"{pool}\"}}"),
        format!("chopin_db_breaker_open{{pool=\"{pool}\"}}"),
    )
}

fn unique_pool(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------------------------------------
// A real server, databases
// ---------------------------------------------------------------------------------------------

fn config(vars: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("CHOPIN_ENV".into()).or_insert("test".into());
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), chopin_core::ServeError>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(LIMIT, self.handle).await;
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn start(vars: &[(&str, &str)], router: Router) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_config(&config(vars));
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server
            .serve(listener, router, async {
                let _ = stopped.await;
            })
            .await
    });
    Running { addr, stop, handle }
}

fn ok_routes() -> Router {
    Router::new().route("/ok", get(|| async { "ok" }))
}

/// Read until the peer closes (EOF or reset).
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Send `GET /ok` and read its (2-byte) answer.
async fn get_ok(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
}

/// A SQLite database in a temporary directory, with `vars` for its configuration.
async fn sqlite(query: &str, vars: &[(&str, &str)]) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?{query}", dir.path().join("m.db").display());
    let mut vars = vars.to_vec();
    vars.push(("DATABASE_URL", &url));
    let db = Db::connect(&config(&vars).database).await.unwrap();
    (dir, db)
}

/// A fresh PostgreSQL database (`None` outside CI when the server is unreachable).
async fn postgres(query: &str, vars: &[(&str, &str)]) -> Option<(TestPostgres, Db)> {
    let pg = TestPostgres::create().await?;
    let url = format!("{}?{query}", pg.url());
    let mut vars = vars.to_vec();
    vars.push(("DATABASE_URL", &url));
    let db = Db::connect(&config(&vars).database).await.unwrap();
    Some((pg, db))
}

/// `n` rows of `{"id":…}` from SQLite.
fn sqlite_rows(n: u32) -> JsonQuery {
    JsonQuery::new(chopin_core::passthrough::AssertSqlSafe(format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
         SELECT json_object('id', x) FROM c"
    )))
    .trust_text()
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

const ACCEPTED: &str = "chopin_server_connections_accepted_total";
const OPEN: &str = "chopin_server_connections_open";
const HEADER: &str = "chopin_server_timeouts_total{kind=\"header\"}";
const IDLE: &str = "chopin_server_timeouts_total{kind=\"idle\"}";
const SHUTDOWN: &str = "chopin_server_timeouts_total{kind=\"shutdown\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_counted_while_open_and_when_accepted() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let server = start(&[], ok_routes()).await;
        let before = scrape();
        let open = value(OPEN);
        let mut a = TcpStream::connect(server.addr).await.unwrap();
        let mut b = TcpStream::connect(server.addr).await.unwrap();
        get_ok(&mut a).await;
        get_ok(&mut b).await;
        assert_eq!(delta(&before, ACCEPTED), 2.0);
        assert_eq!(value(OPEN), open + 2.0);
        drop(a);
        assert_eq!(eventually(OPEN, open + 1.0).await, open + 1.0);
        drop(b);
        assert_eq!(eventually(OPEN, open).await, open);
        assert_eq!(delta(&before, HEADER), 0.0);
        assert_eq!(delta(&before, IDLE), 0.0);
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_not_sent_in_time_is_a_header_timeout() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let server = start(
            &[
                ("CHOPIN_HEADER_TIMEOUT", "300ms"),
                ("CHOPIN_KEEP_ALIVE_TIMEOUT", "10s"),
            ],
            ok_routes(),
        )
        .await;
        let before = scrape();
        // A head started and never finished, and a connection that sends nothing.
        let mut partial = TcpStream::connect(server.addr).await.unwrap();
        partial
            .write_all(b"GET /ok HTTP/1.1\r\nHost: te")
            .await
            .unwrap();
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let started = Instant::now();
        read_to_close(&mut partial).await;
        read_to_close(&mut silent).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(eventually_delta(&before, HEADER, 2.0).await, 2.0);
        assert_eq!(delta(&before, IDLE), 0.0);
        assert_eq!(delta(&before, ACCEPTED), 2.0);
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_keep_alive_connection_is_an_idle_timeout() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let server = start(
            &[
                ("CHOPIN_HEADER_TIMEOUT", "10s"),
                ("CHOPIN_KEEP_ALIVE_TIMEOUT", "300ms"),
            ],
            ok_routes(),
        )
        .await;
        let before = scrape();
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        get_ok(&mut stream).await;
        assert_eq!(delta(&before, IDLE), 0.0, "not idle yet");
        read_to_close(&mut stream).await;
        assert_eq!(eventually_delta(&before, IDLE, 1.0).await, 1.0);
        assert_eq!(delta(&before, HEADER), 0.0);
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_busy_at_the_shutdown_deadline_is_a_shutdown_timeout() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let router = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
        let server = start(&[("CHOPIN_SHUTDOWN_TIMEOUT", "200ms")], router).await;
        let before = scrape();
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        // The request is in flight before the shutdown starts.
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.stop().await;
        assert_eq!(eventually_delta(&before, SHUTDOWN, 1.0).await, 1.0);
        assert_eq!(delta(&before, IDLE), 0.0);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Database
// ---------------------------------------------------------------------------------------------

/// The pool gauges of `db` under a name of its own: max, in use and idle, and gone with it.
async fn pool_gauges_follow_the_pool(db: Db, max: u32) {
    let name = unique_pool("gauges");
    let db = db.metrics_name(&name);
    let (idle, in_use, max_series, breaker) = pool_series(&name);
    assert_eq!(value(&max_series), f64::from(max));
    assert_eq!(value(&breaker), 0.0);
    db.execute_unprepared("SELECT 1").await.unwrap();
    // (sqlx hands a connection back to its pool on a task of its own.)
    assert_eq!(eventually(&in_use, 0.0).await, 0.0);
    assert_eq!(value(&idle), f64::from(db.get_pool_status().idle));
    // Two connections held: two in use, whatever was idle.
    let held = match (db.sqlite_pool(), db.postgres_pool()) {
        (Some(pool), _) => {
            let a = pool.acquire().await.unwrap();
            let b = pool.acquire().await.unwrap();
            assert_eq!(value(&in_use), 2.0);
            drop((a, b));
            true
        }
        (_, Some(pool)) => {
            let a = pool.acquire().await.unwrap();
            let b = pool.acquire().await.unwrap();
            assert_eq!(value(&in_use), 2.0);
            drop((a, b));
            true
        }
        _ => false,
    };
    assert!(held);
    assert_eq!(eventually(&in_use, 0.0).await, 0.0);
    assert!(value(&idle) >= 2.0, "the returned connections are idle");
    // A clone keeps the pool reported; the last one dropped takes it out of the scrape.
    let clone = db.clone();
    drop(db);
    assert!(present(&max_series));
    drop(clone);
    assert!(
        !present(&max_series),
        "a dropped pool is no longer reported"
    );
}

#[tokio::test]
async fn sqlite_pool_gauges() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (_dir, db) = sqlite("max_connections=3&min_connections=0", &[]).await;
        pool_gauges_follow_the_pool(db, 3).await;
    })
    .await;
}

#[tokio::test]
async fn postgres_pool_gauges() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let Some((_pg, db)) = postgres("max_connections=4&min_connections=0", &[]).await else {
            return;
        };
        pool_gauges_follow_the_pool(db, 4).await;
    })
    .await;
}

#[tokio::test]
async fn a_new_pool_is_reported_as_main_by_default() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let main = "chopin_db_pool_max_connections{pool=\"main\"}";
        let (_dir, db) = sqlite("max_connections=7", &[]).await;
        // Every other test names its pools; this one keeps the default name.
        assert_eq!(value(main), 7.0);
        let (_dir2, second) = sqlite("max_connections=2", &[]).await;
        assert_eq!(value(main), 9.0, "pools under one name are added up");
        drop(db);
        assert_eq!(value(main), 2.0);
        let second = second.metrics_name(&unique_pool("renamed"));
        assert!(!present(main), "a renamed pool leaves its old name");
        drop(second);
    })
    .await;
}

const ACQUIRE_TIMEOUTS: &str = "chopin_db_pool_acquire_timeouts_total";
const TIMEOUT_ERRORS: &str = "chopin_db_errors_total{kind=\"timeout\"}";
const OTHER_ERRORS: &str = "chopin_db_errors_total{kind=\"other\"}";
const CONSTRAINT_ERRORS: &str = "chopin_db_errors_total{kind=\"constraint\"}";
const ACQUIRES: &str = "chopin_db_pool_acquire_duration_seconds_count";

#[tokio::test]
async fn an_exhausted_pool_counts_acquire_timeouts() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (_dir, db) = sqlite(
            "max_connections=1&min_connections=1&acquire_timeout=150ms",
            &[],
        )
        .await;
        let db = db.metrics_name(&unique_pool("exhausted"));
        let before = scrape();
        let held = db.sqlite_pool().unwrap().acquire().await.unwrap();
        // Through sea-orm, and through the pass-through path.
        assert!(db.execute_unprepared("SELECT 1").await.is_err());
        assert!(sqlite_rows(3).list(&db).await.is_err());
        assert_eq!(delta(&before, ACQUIRE_TIMEOUTS), 2.0);
        assert_eq!(delta(&before, TIMEOUT_ERRORS), 2.0);
        assert_eq!(
            delta(&before, ACQUIRES),
            0.0,
            "failed acquisitions are not timed"
        );
        drop(held);
        // Once free, the pass-through acquisition is timed; nothing more is counted.
        let rows = sqlite_rows(3).list(&db).await.unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(delta(&before, ACQUIRES), 1.0);
        assert_eq!(delta(&before, ACQUIRE_TIMEOUTS), 2.0);
    })
    .await;
}

#[tokio::test]
async fn failed_statements_are_counted_by_kind() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (_dir, db) = sqlite("", &[]).await;
        let db = db.metrics_name(&unique_pool("errors"));
        db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
            .await
            .unwrap();
        let before = scrape();
        let insert = |name: &str| {
            Statement::from_sql_and_values(
                sea_orm::DbBackend::Sqlite,
                "INSERT INTO t (name) VALUES (?)",
                [name.into()],
            )
        };
        db.execute_raw(insert("a")).await.unwrap();
        assert!(db.execute_raw(insert("a")).await.is_err());
        assert!(db.execute_unprepared("SELEKT nonsense").await.is_err());
        assert!(
            JsonQuery::new("SELECT no_such_column FROM t")
                .list(&db)
                .await
                .is_err()
        );
        assert_eq!(delta(&before, CONSTRAINT_ERRORS), 1.0);
        assert_eq!(delta(&before, OTHER_ERRORS), 2.0);
        assert_eq!(delta(&before, TIMEOUT_ERRORS), 0.0);
    })
    .await;
}

const SLOW: &str = "chopin_db_slow_queries_total";

/// A SQLite statement that runs for a while (counting through a recursive CTE).
const HEAVY_SQLITE: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                            WHERE x < 3000000) SELECT count(*) FROM c";

#[tokio::test]
async fn slow_sqlite_statements_are_counted_unless_off() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (_dir, db) = sqlite("", &[("CHOPIN_DB_SLOW_QUERY", "100ms")]).await;
        let db = db.metrics_name(&unique_pool("slow"));
        let heavy = Statement::from_string(sea_orm::DbBackend::Sqlite, HEAVY_SQLITE);
        let before = scrape();
        db.query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT 1",
        ))
        .await
        .unwrap();
        assert_eq!(delta(&before, SLOW), 0.0, "a fast statement is not slow");
        let started = Instant::now();
        db.query_one_raw(heavy.clone()).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(150),
            "the heavy statement must be slow for this test ({took:?})"
        );
        assert_eq!(delta(&before, SLOW), 1.0);
        drop(db);

        let (_dir, off) = sqlite("", &[("CHOPIN_DB_SLOW_QUERY", "off")]).await;
        let off = off.metrics_name(&unique_pool("slow_off"));
        let before = scrape();
        off.query_one_raw(heavy).await.unwrap();
        assert_eq!(
            delta(&before, SLOW),
            0.0,
            "CHOPIN_DB_SLOW_QUERY=off counts nothing"
        );
    })
    .await;
}

#[tokio::test]
async fn slow_postgres_statements_are_counted_unless_off() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let Some((_pg, db)) = postgres("", &[("CHOPIN_DB_SLOW_QUERY", "100ms")]).await else {
            return;
        };
        let db = db.metrics_name(&unique_pool("pg_slow"));
        let sleep = || Statement::from_string(sea_orm::DbBackend::Postgres, "SELECT pg_sleep(0.3)");
        let before = scrape();
        db.execute_unprepared("SELECT 1").await.unwrap();
        assert_eq!(delta(&before, SLOW), 0.0);
        db.query_one_raw(sleep()).await.unwrap();
        assert_eq!(delta(&before, SLOW), 1.0);
        // Inside a transaction begun on the `Db`, and on the pass-through path.
        let txn = sea_orm::TransactionTrait::begin(&db).await.unwrap();
        txn.query_one_raw(sleep()).await.unwrap();
        txn.commit().await.unwrap();
        let rows = JsonQuery::new("SELECT json_build_object('slept', true) FROM pg_sleep(0.3)")
            .list(&db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(delta(&before, SLOW), 3.0);
        drop(db);

        let Some((_pg, off)) = postgres("", &[("CHOPIN_DB_SLOW_QUERY", "off")]).await else {
            return;
        };
        let off = off.metrics_name(&unique_pool("pg_slow_off"));
        let before = scrape();
        off.query_one_raw(sleep()).await.unwrap();
        assert_eq!(delta(&before, SLOW), 0.0);
    })
    .await;
}

/// A TCP proxy in front of PostgreSQL that can be cut: its listener and every connection
/// through it closed at once.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let registry = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                registry.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Proxy { port, tasks }
    }

    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opening_is_counted() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let Some(pg) = TestPostgres::create().await else {
            return;
        };
        let url = url::Url::parse(pg.url()).unwrap();
        let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let proxy = Proxy::start(target).await;
        let mut through = url.clone();
        through.set_host(Some("127.0.0.1")).unwrap();
        through.set_port(Some(proxy.port)).unwrap();
        through.set_query(Some(
            "max_connections=1&min_connections=1&acquire_timeout=300ms",
        ));
        let cfg = config(&[
            ("DATABASE_URL", through.as_str()),
            ("CHOPIN_DB_BREAKER_THRESHOLD", "1"),
            ("CHOPIN_DB_PROBE_INTERVAL", "100ms"),
        ]);
        let name = unique_pool("breaker");
        let db = Db::connect(&cfg.database)
            .await
            .unwrap()
            .metrics_name(&name);
        let (_, _, _, breaker_open) = pool_series(&name);
        db.execute_unprepared("SELECT 1").await.unwrap();
        let before = scrape();
        assert_eq!(value(&breaker_open), 0.0);
        proxy.cut();
        // The pooled connection is gone and no new one can be made: the query fails, a probe
        // fails, the breaker opens — once.
        assert!(db.execute_unprepared("SELECT 1").await.is_err());
        assert_eq!(eventually(&breaker_open, 1.0).await, 1.0);
        assert_eq!(
            eventually_delta(&before, "chopin_db_breaker_opened_total", 1.0).await,
            1.0
        );
        // While open, queries answer 503 at once: no more errors, no more openings.
        let errors_before = scrape();
        for _ in 0..3 {
            assert!(db.execute_unprepared("SELECT 1").await.is_err());
        }
        for kind in ["connection", "timeout", "other"] {
            let series = format!("chopin_db_errors_total{{kind=\"{kind}\"}}");
            assert_eq!(delta(&errors_before, &series), 0.0, "{kind}");
        }
        assert_eq!(delta(&before, "chopin_db_breaker_opened_total"), 1.0);
        drop(db);
        drop(pg);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Pass-through
// ---------------------------------------------------------------------------------------------

const ROWS: &str = "chopin_passthrough_rows_total";
const BYTES: &str = "chopin_passthrough_bytes_total";
const FIRST_BYTE: &str = "chopin_passthrough_first_byte_seconds_count";
const ABORTED_DB: &str = "chopin_passthrough_streams_aborted_total{reason=\"database\"}";
const ABORTED_GONE: &str = "chopin_passthrough_streams_aborted_total{reason=\"disconnect\"}";

fn passthrough_routes(db: Db) -> Router {
    Router::new()
        .route(
            "/list",
            get(|State(db): State<Db>| async move { sqlite_rows(25).list(&db).await }),
        )
        .route(
            "/one",
            get(|State(db): State<Db>| async move { sqlite_rows(25).one(&db).await }),
        )
        .route(
            "/stream",
            get(|State(db): State<Db>| async move {
                sqlite_rows(2000).chunk_size(1024).stream(&db).await
            }),
        )
        .route(
            "/huge",
            get(|State(db): State<Db>| async move {
                sqlite_rows(5_000_000).chunk_size(1024).stream(&db).await
            }),
        )
        .route(
            "/broken",
            get(|State(db): State<Db>| async move {
                JsonQuery::new(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) \
                     SELECT CASE WHEN x < 3000 THEN json_object('id', x) ELSE json('not json') END FROM c",
                )
                .trust_text()
                .chunk_size(1024)
                .stream(&db)
                .await
            }),
        )
        .with_state(db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_rows_and_bytes_are_what_the_client_received() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (_dir, db) = sqlite("", &[]).await;
        let db = db.metrics_name(&unique_pool("passthrough"));
        let server = start(&[], passthrough_routes(db)).await;
        let client = reqwest::Client::new();
        for (path, rows) in [("/list", 25.0), ("/one", 1.0), ("/stream", 2000.0)] {
            let before = scrape();
            let response = client.get(server.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let body = response.bytes().await.unwrap();
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed["success"], true, "{path}");
            assert_eq!(delta(&before, ROWS), rows, "{path}");
            assert_eq!(delta(&before, BYTES), body.len() as f64, "{path}");
            assert_eq!(delta(&before, FIRST_BYTE), 1.0, "{path}");
            assert_eq!(delta(&before, ABORTED_DB), 0.0, "{path}");
            assert_eq!(delta(&before, ABORTED_GONE), 0.0, "{path}");
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_a_database_error_or_a_client_leaving_is_counted() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (_dir, db) = sqlite("", &[]).await;
        let db = db.metrics_name(&unique_pool("passthrough"));
        let server = start(&[], passthrough_routes(db)).await;
        let client = reqwest::Client::new();

        let before = scrape();
        let response = client.get(server.url("/broken")).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "the error comes after the first row"
        );
        assert!(response.bytes().await.is_err(), "the body is aborted");
        assert_eq!(eventually_delta(&before, ABORTED_DB, 1.0).await, 1.0);
        assert_eq!(delta(&before, ABORTED_GONE), 0.0);
        assert_eq!(
            delta(&before, "chopin_db_errors_total{kind=\"other\"}"),
            1.0
        );

        let before = scrape();
        let mut response = client.get(server.url("/huge")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.chunk().await.unwrap().is_some());
        drop(response);
        drop(client);
        assert_eq!(eventually_delta(&before, ABORTED_GONE, 1.0).await, 1.0);
        assert_eq!(delta(&before, ABORTED_DB), 0.0);
        assert!(delta(&before, ROWS) < 5_000_000.0);
        server.stop().await;
    })
    .await;
}
