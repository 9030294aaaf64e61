//! Database faults for real: a private PostgreSQL server (started by the test with
//! `initdb` / `pg_ctl` on a free port in a temporary directory, as the `postgres` user when
//! the test runs as root) is stopped under load (reads and writes) and started again, the
//! circuit breaker's promises are checked on the answers of a real HTTP server built on `App`,
//! and every write answered 201 is stored exactly once (and none answered 503); and concurrent
//! migrations of a fresh database on the shared server all succeed under the migration lock.
//!
//! The private server never touches the shared one. Without PostgreSQL's server binaries
//! (`/usr/lib/postgresql/*/bin`) the outage test prints why and passes, except under
//! `CI=true`, where it fails; the migration test needs the shared server
//! (`CHOPIN_TEST_POSTGRES_URL`) on the same terms.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chopin_core::config::{BreakerConfig, DatabaseConfig};
use chopin_core::passthrough::JsonQuery;
use chopin_core::prelude::*;
use chopin_core::testing::{TestPostgres, in_ci};
use sea_orm::{ConnectionTrait, Statement};

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL server
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL server of the test's own, in a temporary directory, on a free port; stopped
/// (immediately) when dropped.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `pg_ctl`.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl PrivatePostgres {
    /// `initdb` and start a server; `None` (after printing why) when the server binaries are
    /// missing, outside CI.
    fn start() -> Option<PrivatePostgres> {
        let missing = |why: String| {
            assert!(
                !in_ci(),
                "{why} (CI=true: the database fault tests must run)"
            );
            eprintln!("skipping the database outage test: {why}");
            None
        };
        let Some(bin) = postgres_bin() else {
            return missing("no initdb / pg_ctl under /usr/lib/postgresql/*/bin".into());
        };
        let as_postgres_user = running_as_root();
        if as_postgres_user
            && !Command::new("id")
                .arg("postgres")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        {
            return missing("running as root and there is no `postgres` user for initdb".into());
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        if as_postgres_user {
            let chown = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(chown.success(), "chown postgres: {}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = PrivatePostgres {
            dir,
            bin,
            port,
            as_postgres_user,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        server.pg_ctl_start();
        Some(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{query}",
            self.port
        )
    }

    /// Run one of the server binaries (as `postgres` under root), bounded by `pg_ctl -t`.
    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start and wait (at most 20 s) until the server accepts connections.
    fn pg_ctl_start(&self) {
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "-t",
                "20",
                "start",
            ],
        );
    }

    /// Stop (`-m fast`: sessions are terminated with SQLSTATE 57P01, as in a real shutdown)
    /// and wait at most 20 s.
    fn pg_ctl_stop(&self, mode: &str) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data), "-m", mode, "-w", "-t", "20", "stop"],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let program = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let _ = command
            .args([
                "-D",
                path_str(&data),
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

// ---------------------------------------------------------------------------------------------
// The application under test
// ---------------------------------------------------------------------------------------------

/// `/orm`: a sea-orm query through `Db`'s `ConnectionTrait`; `/pass`: a pass-through list;
/// `POST /write/{key}`: one `INSERT` of the client's key (201), the write of the outage test.
fn routes() -> Router<Db> {
    async fn orm(State(db): State<Db>) -> Result<ApiResponse<i64>, ChopinError> {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) AS n FROM item",
            ))
            .await?;
        let n = row
            .and_then(|r| r.try_get::<i64>("", "n").ok())
            .unwrap_or_default();
        Ok(ApiResponse::success(n))
    }
    async fn pass(State(db): State<Db>) -> Result<impl axum::response::IntoResponse, ChopinError> {
        JsonQuery::new("SELECT json_build_object('id', id, 'name', name) FROM item ORDER BY id")
            .list(&db)
            .await
    }
    async fn write(
        State(db): State<Db>,
        axum::extract::Path(key): axum::extract::Path<String>,
    ) -> Result<(http::StatusCode, ApiResponse<String>), ChopinError> {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO written (key) VALUES ($1)",
            [key.clone().into()],
        ))
        .await?;
        Ok((http::StatusCode::CREATED, ApiResponse::success(key)))
    }
    Router::new()
        .route("/orm", get(orm))
        .route("/pass", get(pass))
        .route("/write/{key}", axum::routing::post(write))
}

/// Serve the app (with its `/health/ready` database check) over real TCP.
async fn serve(db: &Db) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let app = App::with_state(Config::for_environment(Environment::Test), db.clone())
        .database(db)
        .router(routes());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = app.serve_with(listener, shutdown).await {
            eprintln!("test server failed: {e}");
        }
    });
    (base, stop)
}

/// One answer seen by a load worker.
#[derive(Debug, Clone)]
struct Sample {
    path: &'static str,
    start: Instant,
    took: Duration,
    /// HTTP status; 0 when the request failed without an answer.
    status: u16,
    retry_after: bool,
    /// The key a `/write` sent.
    key: Option<String>,
}

impl Sample {
    /// The answer the route gives when all is well: 201 for a write or a sign-up, 200 for
    /// the rest.
    fn succeeded(&self) -> bool {
        self.status
            == if self.key.is_some() || self.path == "/auth/signup" {
                201
            } else {
                200
            }
    }
}

/// When each phase of an outage began.
struct Outage {
    stopped_at: Instant,
    opened_at: Instant,
    restart_began: Instant,
    up_at: Instant,
    /// From the server accepting connections again to the breaker closing.
    closed_after: Duration,
}

/// Stop `pg` (`pg_ctl stop -m fast`) and wait for `db`'s breaker to open: (stopped, opened).
async fn stop_until_open(pg: &Arc<PrivatePostgres>, db: &Db) -> (Instant, Instant) {
    let stopped_at = Instant::now();
    let server = pg.clone();
    blocking(move || server.pg_ctl_stop("fast")).await;
    wait_for(Duration::from_secs(5), || !db.is_available())
        .await
        .expect("the breaker opens within 5 s of the stop");
    (stopped_at, Instant::now())
}

/// 1.5 s after the breaker opened, start `pg` again; the breaker must close within 1 s. Two
/// more seconds of load, then the load and the test server stop. Returns the phases and
/// every sample taken.
async fn restart_and_finish(
    pg: &Arc<PrivatePostgres>,
    db: &Db,
    (stopped_at, opened_at): (Instant, Instant),
    stop_load: &AtomicBool,
    stop_server: tokio::sync::oneshot::Sender<()>,
    samples: &Mutex<Vec<Sample>>,
) -> (Outage, Vec<Sample>) {
    tokio::time::sleep(
        (opened_at + Duration::from_millis(1500)).saturating_duration_since(Instant::now()),
    )
    .await;
    let restart_began = Instant::now();
    let server = pg.clone();
    blocking(move || server.pg_ctl_start()).await;
    let up_at = Instant::now();
    let closed_after = wait_for(Duration::from_secs(1), || db.is_available())
        .await
        .expect("the breaker closes within 1 s of the restart");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop_load.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_server.send(());
    let outage = Outage {
        stopped_at,
        opened_at,
        restart_began,
        up_at,
        closed_after,
    };
    (outage, samples.lock().expect("samples").clone())
}

/// What the outage tests hold every answer to: no answer other than success or 503, ever;
/// at least `min_before` successes before the stop; nothing in flight at the stop waits a
/// second; once the breaker is open and until the restart, at least `min_open` answers, each
/// a 503 with `Retry-After` within 100 ms, on every one of `paths`; from one second after the
/// restart every answer succeeds, on every one of `paths`. Returns (answers while open,
/// slowest of them, slowest answer during the outage, answers after the restart's first
/// second).
fn check_outage_answers(
    samples: &[Sample],
    outage: &Outage,
    min_before: usize,
    min_open: usize,
    paths: &[&str],
) -> (usize, Duration, Duration, usize) {
    let bad: Vec<&Sample> = samples
        .iter()
        .filter(|s| !s.succeeded() && s.status != 503)
        .collect();
    assert!(bad.is_empty(), "answers other than success or 503: {bad:?}");
    let before: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start + s.took < outage.stopped_at)
        .collect();
    assert!(
        before.len() >= min_before,
        "only {} answers before the stop",
        before.len()
    );
    assert!(before.iter().all(|s| s.succeeded()), "{before:?}");
    // Requests in flight when the server stopped do not wait out the 2 s acquire timeout:
    // they get their 503 when the breaker opens.
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start + s.took >= outage.stopped_at && s.start < outage.restart_began)
        .collect();
    let slowest_during = during.iter().map(|s| s.took).max().unwrap_or_default();
    assert!(
        slowest_during < Duration::from_secs(1),
        "an answer during the outage took {slowest_during:?}: {:?}",
        during
            .iter()
            .filter(|s| s.took >= Duration::from_secs(1))
            .collect::<Vec<_>>()
    );
    let open: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= outage.opened_at && s.start + s.took <= outage.restart_began)
        .collect();
    assert!(
        open.len() >= min_open,
        "only {} answers during the outage",
        open.len()
    );
    for s in &open {
        assert_eq!(s.status, 503, "{s:?}");
        assert!(s.retry_after, "503 without Retry-After: {s:?}");
        assert!(s.took < Duration::from_millis(100), "{s:?}");
    }
    let after: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= outage.up_at + Duration::from_secs(1))
        .collect();
    for path in paths {
        assert!(
            open.iter().any(|s| s.path == *path),
            "no {path} answer during the outage"
        );
        assert!(
            after.iter().any(|s| s.path == *path),
            "no {path} answer after the restart"
        );
    }
    assert!(
        after.iter().all(|s| s.succeeded()),
        "{:?}",
        after.iter().filter(|s| !s.succeeded()).collect::<Vec<_>>()
    );
    let slowest_open = open.iter().map(|s| s.took).max().unwrap_or_default();
    (open.len(), slowest_open, slowest_during, after.len())
}

/// Clients requesting `/orm`, `/pass` and `POST /write/<a key of their own>` in turn until
/// `stop` is set.
fn load(base: &str, clients: usize, stop: &Arc<AtomicBool>) -> Arc<Mutex<Vec<Sample>>> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    for i in 0..clients {
        let (http, base, stop, samples) = (
            http.clone(),
            base.to_string(),
            stop.clone(),
            samples.clone(),
        );
        tokio::spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let (path, key) = match n % 3 {
                    0 => ("/orm", None),
                    1 => ("/pass", None),
                    _ => ("/write", Some(format!("c{i}-{n}"))),
                };
                n += 1;
                let start = Instant::now();
                let sent = match &key {
                    Some(key) => http.post(format!("{base}/write/{key}")).send().await,
                    None => http.get(format!("{base}{path}")).send().await,
                };
                let (status, retry_after) = match sent {
                    Ok(r) => (
                        r.status().as_u16(),
                        r.headers().contains_key(http::header::RETRY_AFTER),
                    ),
                    Err(_) => (0, false),
                };
                let sample = Sample {
                    path,
                    start,
                    took: start.elapsed(),
                    status,
                    retry_after,
                    key,
                };
                samples.lock().expect("samples").push(sample);
                // Answers during the outage come at once: do not spin the test machine.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    samples
}

/// Poll `cond` every 5 ms for at most `limit`; the time it took, or `None`.
async fn wait_for(limit: Duration, cond: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond().then(|| start.elapsed())
}

async fn blocking(f: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking task");
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_outage_answers_503_at_once_and_recovers_within_a_second() {
    let _turn = OUTAGE.lock().await;
    let test_start = Instant::now();
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let pg = Arc::new(pg);
    let breaker = BreakerConfig {
        probe_interval: Duration::from_millis(100),
        ..BreakerConfig::default()
    };
    let db = Db::connect(&DatabaseConfig {
        breaker,
        ..DatabaseConfig::new(pg.url("max_connections=4&acquire_timeout=2s"))
    })
    .await
    .expect("connect to the private server");
    // The same server without the breaker: queries wait for the pool as they always did.
    let unguarded = Db::connect(&DatabaseConfig {
        breaker: BreakerConfig {
            enabled: false,
            ..breaker
        },
        ..DatabaseConfig::new(pg.url("max_connections=2&acquire_timeout=500ms"))
    })
    .await
    .expect("connect to the private server");
    db.execute_unprepared(
        "CREATE TABLE item (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO item VALUES (1, 'one'), (2, 'two');
         -- No unique key on `key`: a write applied twice would show as two rows.
         CREATE TABLE written (seq bigserial PRIMARY KEY, key text NOT NULL)",
    )
    .await
    .expect("seed");
    let (base, stop_server) = serve(&db).await;
    let http = reqwest::Client::new();

    let stop_load = Arc::new(AtomicBool::new(false));
    let samples = load(&base, 6, &stop_load);
    tokio::time::sleep(Duration::from_millis(400)).await;

    // The outage.
    let phases = stop_until_open(&pg, &db).await;
    let opened_after = phases.1 - phases.0;

    // Readiness says so at once, with Retry-After.
    let asked = Instant::now();
    let ready = http
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .expect("/health/ready answers");
    let ready_took = asked.elapsed();
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key(http::header::RETRY_AFTER));
    assert!(
        ready_took < Duration::from_millis(100),
        "/health/ready took {ready_took:?} with the breaker open"
    );
    // With the breaker off, a query waits for the pool's acquire timeout instead.
    let asked = Instant::now();
    let err = unguarded
        .execute_unprepared("SELECT 1")
        .await
        .expect_err("the server is down");
    let unguarded_took = asked.elapsed();
    assert!(
        unguarded.is_available(),
        "a switched-off breaker never opens"
    );
    assert!(
        unguarded_took >= Duration::from_millis(400),
        "without the breaker the query waited only {unguarded_took:?}: {err}"
    );
    assert_eq!(
        ChopinError::from(err).status(),
        http::StatusCode::SERVICE_UNAVAILABLE
    );

    let (outage, samples) =
        restart_and_finish(&pg, &db, phases, &stop_load, stop_server, &samples).await;
    let (open, slowest_open, slowest_during, _) =
        check_outage_answers(&samples, &outage, 10, 50, &["/orm", "/pass", "/write"]);

    // The writes. Each is one autocommit INSERT: a 201 is sent only after PostgreSQL
    // confirmed the commit, so every key answered 201 is stored, and exactly once (nothing
    // retries a statement). A 503 means the INSERT failed (the breaker refused it before it
    // reached the server, or the server ended the session before the commit): with a fast
    // shutdown, PostgreSQL ends sessions only between statements or by aborting the running
    // one, so a 503 after a commit would be a bug in Chopin (an error made up after success),
    // and no key answered 503 may be stored.
    let stored: Vec<(String, i64)> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT key, count(*) AS n FROM written GROUP BY key",
        ))
        .await
        .expect("read the written keys")
        .into_iter()
        .map(|r| {
            (
                r.try_get::<String>("", "key").expect("key"),
                r.try_get::<i64>("", "n").expect("n"),
            )
        })
        .collect();
    let stored: std::collections::HashMap<String, i64> = stored.into_iter().collect();
    let writes: Vec<&Sample> = samples.iter().filter(|s| s.key.is_some()).collect();
    let key = |s: &Sample| s.key.clone().expect("a write");
    let answered_201: Vec<String> = writes
        .iter()
        .filter(|s| s.status == 201)
        .map(|s| key(s))
        .collect();
    let answered_503: Vec<String> = writes
        .iter()
        .filter(|s| s.status == 503)
        .map(|s| key(s))
        .collect();
    assert!(
        answered_201.len() >= 10 && answered_503.len() >= 10,
        "too few writes: {} answered 201, {} answered 503",
        answered_201.len(),
        answered_503.len()
    );
    for k in &answered_201 {
        assert_eq!(
            stored.get(k),
            Some(&1),
            "write {k} was answered 201: it must be stored exactly once"
        );
    }
    for k in &answered_503 {
        assert_eq!(
            stored.get(k),
            None,
            "write {k} was answered 503 but is stored (an error after the commit)"
        );
    }
    let asked: std::collections::HashSet<String> = writes.iter().map(|s| key(s)).collect();
    assert!(
        stored.keys().all(|k| asked.contains(k)),
        "rows nobody wrote"
    );
    assert_eq!(
        stored.values().sum::<i64>(),
        answered_201.len() as i64,
        "stored rows beyond the writes answered 201"
    );
    let closed_after = outage.closed_after;
    eprintln!(
        "outage: breaker open {opened_after:?} after `pg_ctl stop` began; slowest answer in \
         the outage {slowest_during:?}; {} answers while open, slowest {slowest_open:?}; breaker closed {closed_after:?} after the server accepted \
         connections again; writes: {} answered 201 (each stored once), {} answered 503 (none \
         stored); test took {:?}",
        open,
        answered_201.len(),
        answered_503.len(),
        test_start.elapsed()
    );
    assert!(
        test_start.elapsed() < Duration::from_secs(30),
        "the outage test took {:?}",
        test_start.elapsed()
    );
}

/// The two outage tests stop a server of their own under load and hold answers to 100 ms:
/// they take turns, so that neither runs while the other's load shares the machine.
static OUTAGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The auth module's routes (`AuthStore::new(&db)`, as the blog and `chopin new` projects
/// build it) under the same outage: the store's queries and its refresh transaction go
/// through `Db`, so once the breaker is open every auth answer is a 503 with `Retry-After`
/// within 100 ms, and after the restart they succeed again within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_routes_answer_503_at_once_in_an_outage_and_recover_within_a_second() {
    use chopin_core::auth::{
        Auth, AuthModule, AuthRateLimits, AuthStore, JwtKeys, MemoryMailer, TokenSettings,
    };
    use serde_json::{Value, json};

    let _turn = OUTAGE.lock().await;
    let test_start = Instant::now();
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let pg = Arc::new(pg);
    let db = Db::connect(&DatabaseConfig {
        breaker: BreakerConfig {
            probe_interval: Duration::from_millis(100),
            ..BreakerConfig::default()
        },
        ..DatabaseConfig::new(pg.url("max_connections=4&acquire_timeout=2s"))
    })
    .await
    .expect("connect to the private server");
    let auth = Auth::new(
        JwtKeys::hs256("k1", b"an outage test secret of at least 32 bytes").expect("a key"),
        TokenSettings::default(),
        Environment::Test,
    );
    let store = AuthStore::new(&db).await.expect("auth migrations");
    assert!(store.db().is_some(), "a store built from a Db keeps it");
    // A store on a plain sea-orm connection (documented: no breaker), for comparison.
    let plain_pool = Db::connect(&DatabaseConfig::new(
        pg.url("max_connections=2&acquire_timeout=500ms"),
    ))
    .await
    .expect("connect to the private server");
    let plain = AuthStore::from_connection(plain_pool.conn().clone())
        .await
        .expect("auth migrations, already applied");
    assert!(plain.db().is_none());
    let module = AuthModule::with_mailer(auth.clone(), store.clone(), MemoryMailer::new())
        .await
        .expect("the auth module")
        // Every request comes from 127.0.0.1: the routes' own limits would answer 429.
        .rate_limits(AuthRateLimits::off());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let app = App::with_state(Config::for_environment(Environment::Test), db.clone())
        .database(&db)
        .auth(&auth)
        .router(Router::<Db>::new().nest("/auth", module.router()));
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = app.serve_with(listener, shutdown).await {
            eprintln!("test server failed: {e}");
        }
    });

    const PASSWORD: &str = "correct horse battery staple";
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let tokens = |v: &Value| -> (String, String) {
        let data = &v["data"];
        (
            data["access_token"]
                .as_str()
                .expect("an access token")
                .into(),
            data["refresh_token"]
                .as_str()
                .expect("a refresh token")
                .into(),
        )
    };
    let signup = http
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": "outage@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("signup answers");
    assert_eq!(signup.status(), 201);

    // Clients signing up, logging in, reading /me and refreshing (each its own token chain)
    // in turn until `stop` is set.
    let stop_load = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    const CLIENTS: usize = 4;
    for i in 0..CLIENTS {
        let login = http
            .post(format!("{base}/auth/login"))
            .json(&json!({"email": "outage@example.com", "password": PASSWORD}))
            .send()
            .await
            .expect("login answers");
        assert_eq!(login.status(), 200);
        let (mut access, mut refresh) = tokens(&login.json::<Value>().await.expect("JSON"));
        let (http, base, stop, samples) = (
            http.clone(),
            base.clone(),
            stop_load.clone(),
            samples.clone(),
        );
        tokio::spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let path = ["/auth/login", "/auth/me", "/auth/refresh", "/auth/signup"][n % 4];
                let request = match path {
                    "/auth/login" => http
                        .post(format!("{base}{path}"))
                        .json(&json!({"email": "outage@example.com", "password": PASSWORD})),
                    "/auth/me" => http.get(format!("{base}{path}")).bearer_auth(&access),
                    "/auth/refresh" => http
                        .post(format!("{base}{path}"))
                        .json(&json!({"refresh_token": refresh})),
                    _ => http.post(format!("{base}{path}")).json(
                        &json!({"email": format!("c{i}-{n}@example.com"), "password": PASSWORD}),
                    ),
                };
                n += 1;
                let start = Instant::now();
                let (status, retry_after) = match request.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let retry_after = r.headers().contains_key(http::header::RETRY_AFTER);
                        if path == "/auth/refresh" && status == 200 {
                            let body = r.json::<Value>().await.expect("JSON");
                            (access, refresh) = tokens(&body);
                        }
                        (status, retry_after)
                    }
                    Err(_) => (0, false),
                };
                let sample = Sample {
                    path,
                    start,
                    took: start.elapsed(),
                    status,
                    retry_after,
                    key: None,
                };
                samples.lock().expect("samples").push(sample);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(600)).await;

    // The outage (only auth queries can open the breaker).
    let phases = stop_until_open(&pg, &db).await;
    let opened_after = phases.1 - phases.0;
    // The store itself: its `Db`'s 503 at once; the plain connection's store waits for its
    // pool's acquire timeout.
    let asked = Instant::now();
    let err = store
        .user_id_by_email("outage@example.com")
        .await
        .expect_err("the server is down");
    let store_took = asked.elapsed();
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert!(store_took < Duration::from_millis(100), "{store_took:?}");
    let asked = Instant::now();
    let err = plain
        .user_id_by_email("outage@example.com")
        .await
        .expect_err("the server is down");
    let plain_took = asked.elapsed();
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert!(
        plain_took >= Duration::from_millis(400),
        "a store without the breaker answered in {plain_took:?}"
    );
    let (outage, samples) =
        restart_and_finish(&pg, &db, phases, &stop_load, stop_server, &samples).await;
    let (open, slowest_open, slowest_during, after) = check_outage_answers(
        &samples,
        &outage,
        8,
        40,
        &["/auth/login", "/auth/me", "/auth/refresh", "/auth/signup"],
    );
    let closed_after = outage.closed_after;
    eprintln!(
        "auth outage: breaker open {opened_after:?} after `pg_ctl stop` began; slowest auth \
         answer in the outage {slowest_during:?}; {} auth answers while open (all 503), \
         slowest {slowest_open:?}; the store's own query {store_took:?} (a plain-connection \
         store: {plain_took:?}); breaker closed {closed_after:?} after the server accepted \
         connections again; {} answers after the restart's first second, all successful; \
         test took {:?}",
        open,
        after,
        test_start.elapsed()
    );
}

/// A user's own migrator, run through `Db::migration_lock`.
mod app_migrations {
    use sea_orm_migration::prelude::*;

    pub struct Migrator;

    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(CreateWidget)]
        }
    }

    struct CreateWidget;

    impl MigrationName for CreateWidget {
        fn name(&self) -> &str {
            "m20260101_000001_create_widget"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateWidget {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            // No IF NOT EXISTS: two instances creating it at once fail without the lock.
            manager
                .create_table(
                    Table::create()
                        .table(Alias::new("widget"))
                        .col(
                            ColumnDef::new(Alias::new("id"))
                                .big_integer()
                                .not_null()
                                .primary_key(),
                        )
                        .to_owned(),
                )
                .await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_migrate_once_under_the_lock() {
    use sea_orm_migration::MigratorTrait;

    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    const INSTANCES: usize = 6;
    let mut dbs = Vec::new();
    for _ in 0..INSTANCES {
        let db = Db::connect(&DatabaseConfig::new(format!(
            "{}?max_connections=2",
            pg.url()
        )))
        .await
        .expect("connect");
        dbs.push(db);
    }
    // Every "instance" (its own pool) starts at once: the auth store's migrations, then the
    // application's own migrator under `Db::migration_lock`.
    let runs = dbs.iter().cloned().map(|db| {
        tokio::spawn(async move {
            chopin_core::auth::AuthStore::new(&db).await?;
            let lock = db.migration_lock("app").await?;
            app_migrations::Migrator::up(&db, None).await?;
            lock.release().await
        })
    });
    let outcomes = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join_all(runs),
    )
    .await
    .expect("the migrations finish within 20 s");
    for outcome in outcomes {
        outcome
            .expect("the migration task")
            .expect("every instance's migrations succeed");
    }
    let db = &dbs[0];
    let count = |sql: &'static str| async move {
        db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect(sql)
            .and_then(|r| r.try_get_by_index::<i64>(0).ok())
            .expect(sql)
    };
    // Each migration is recorded once, and each table exists once in the database.
    let auth_migrations = chopin_core::auth::migration::AuthMigrator::migrations().len();
    assert_eq!(
        count("SELECT count(*) FROM chopin_auth_migrations").await,
        auth_migrations as i64
    );
    assert_eq!(
        count("SELECT count(DISTINCT version) FROM chopin_auth_migrations").await,
        auth_migrations as i64
    );
    assert_eq!(count("SELECT count(*) FROM seaql_migrations").await, 1);
    assert_eq!(
        count(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_name = 'widget'"
        )
        .await,
        1
    );
    // The locks are free again: a later instance takes them at once.
    let lock = tokio::time::timeout(Duration::from_secs(2), db.migration_lock("app"))
        .await
        .expect("the lock is free")
        .expect("lock");
    lock.release().await.expect("release");
}

/// The pool's `statement_timeout` (tied to the request timeout) does not cut short the wait
/// for the migration lock: an instance that waits longer than it for another one's migrations
/// still gets the lock.
#[tokio::test]
async fn waiting_for_the_migration_lock_outlasts_the_statement_timeout() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let config = DatabaseConfig {
        statement_timeout: Some(Duration::from_millis(200)),
        ..DatabaseConfig::new(format!("{}?max_connections=2", pg.url()))
    };
    let first = Db::connect(&config).await.expect("connect");
    let second = Db::connect(&config).await.expect("connect");
    let held = first.migration_lock("app").await.expect("lock");
    let waiting = tokio::spawn(async move {
        let lock = second.migration_lock("app").await;
        (lock, second)
    });
    // Longer than the statement timeout: the waiter must still be waiting, not cancelled.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiting.is_finished(), "the wait for the lock ended early");
    held.release().await.expect("release");
    let (lock, _second) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiter gets the lock once it is released")
        .expect("task");
    lock.expect("the lock, not a statement timeout")
        .release()
        .await
        .expect("release");
}

/// A healthy database that is merely busy never opens the breaker: a slow query on an
/// in-memory SQLite database (one connection, so the probe finds none idle) starts a probe,
/// which must not count the busy pool as down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_on_a_busy_healthy_database_keeps_the_breaker_closed() {
    let db = Db::connect(&DatabaseConfig {
        breaker: BreakerConfig {
            probe_interval: Duration::from_millis(20),
            ..BreakerConfig::default()
        },
        acquire_timeout: Some(Duration::from_millis(100)),
        ..DatabaseConfig::new("sqlite::memory:")
    })
    .await
    .expect("in-memory SQLite");
    let slow = {
        let db = db.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let result = db
                .execute_unprepared(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                     WHERE x < 4000000) SELECT count(*) FROM c",
                )
                .await;
            (result, start.elapsed())
        })
    };
    let mut stayed_closed = true;
    while !slow.is_finished() {
        stayed_closed &= db.is_available();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (result, took) = slow.await.expect("the slow query's task");
    result.expect("the slow query succeeds");
    assert!(
        took >= Duration::from_millis(250),
        "the query took only {took:?}: too fast to outlast the probe's timeout"
    );
    assert!(
        stayed_closed && db.is_available(),
        "a busy pool opened the breaker"
    );
    db.execute_unprepared("SELECT 1")
        .await
        .expect("still usable");
}

// ---------------------------------------------------------------------------------------------
// Stalled stream readers and statements that outlive their request (shared server, a fresh
// database per test: nothing here is destructive)
// ---------------------------------------------------------------------------------------------

/// Serve `router` with `config` (its request timeout included) over real TCP.
async fn serve_with_config(
    config: Config,
    db: &Db,
    router: Router<Db>,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("address");
    let app = App::with_state(config, db.clone()).router(router);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = app.serve_with(listener, shutdown).await {
            eprintln!("test server failed: {e}");
        }
    });
    (addr, stop)
}

/// Backends of database `$1` running (`state = 'active'`) a query that contains `$2`.
const ACTIVE_WITH: &str = "SELECT count(*) FROM pg_stat_activity \
                           WHERE datname = $1 AND pid <> pg_backend_pid() AND state = 'active' \
                           AND strpos(query, $2) > 0";
/// Backends of database `$1`, idle or not, whose last query contains `$2`.
const BACKENDS_WITH: &str = "SELECT count(*) FROM pg_stat_activity \
                             WHERE datname = $1 AND pid <> pg_backend_pid() \
                             AND strpos(query, $2) > 0";

async fn backends(monitor: &Db, sql: &str, pg: &TestPostgres, marker: &str) -> i64 {
    let row = monitor
        .query_one_raw(Statement::from_sql_and_values(
            monitor.get_database_backend(),
            sql,
            [pg.name().into(), marker.into()],
        ))
        .await
        .expect("query pg_stat_activity")
        .expect("a count");
    row.try_get_by_index::<i64>(0).expect("count")
}

/// Poll `sql` until it counts zero, for up to `limit`; how long that took.
async fn until_zero(
    monitor: &Db,
    sql: &str,
    pg: &TestPostgres,
    marker: &str,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if backends(monitor, sql, pg, marker).await == 0 {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A raw HTTP/1.1 client that sends `GET path` from a socket with a 4 KiB receive buffer and
/// then reads only the status line: a stalled reader.
async fn stalled_reader(addr: std::net::SocketAddr, path: &str) -> (tokio::net::TcpStream, u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
        .await
        .expect("a status line within 10 s")
        .expect("read the status line");
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {:?}", String::from_utf8_lossy(&head)));
    (stream, status)
}

/// Pool of N = 4, stream cap 2 (the default: half the pool), send timeout 1 s. N + 2 = 6
/// clients open a stream of a large result and read nothing: two streams start (and stall),
/// four are refused with 503 before they take a connection; other database routes keep
/// answering 200 throughout; the stalled streams' connections are closed (and their queries
/// gone from `pg_stat_activity`) soon after the send timeout; then a new stream runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_readers_are_capped_and_cut_off_after_the_send_timeout() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let test_start = Instant::now();
    let url = format!("{}?max_connections=4&acquire_timeout=2s", pg.url());
    let config = common::config(&[
        ("CHOPIN_ENV", "test"),
        ("DATABASE_URL", &url),
        ("CHOPIN_DB_STREAM_SEND_TIMEOUT", "1s"),
    ]);
    let db = Db::connect(&config.database).await.expect("connect");
    assert_eq!(db.stream_slots(), (2, 0));
    let monitor = Db::connect(&DatabaseConfig::new(pg.url().to_string()))
        .await
        .expect("monitor");
    let marker = "chopin-stalled-marker";

    async fn one(State(db): State<Db>) -> Result<impl axum::response::IntoResponse, ChopinError> {
        JsonQuery::new("SELECT json_build_object('ok', true)")
            .one(&db)
            .await
    }
    let router = Router::new()
        .route(
            "/big",
            get(move |State(db): State<Db>| async move {
                // The set-returning function in the select list streams (in FROM it would be
                // materialised first): rows flow at once, and PostgreSQL blocks writing them.
                JsonQuery::new(chopin_core::passthrough::AssertSqlSafe(format!(
                    "/* {marker} */ SELECT json_build_object('n', g, 'pad', repeat('x', 500)) \
                     FROM (SELECT generate_series(1, 5000000) AS g) AS s"
                )))
                .stream(&db)
                .await
            }),
        )
        .route("/one", get(one));
    let (addr, stop) = serve_with_config(config, &db, router).await;

    // N + 2 stalled readers, all at once.
    let readers: Vec<_> = (0..6)
        .map(|_| tokio::spawn(stalled_reader(addr, "/big")))
        .collect();
    let mut streams = Vec::new();
    let mut statuses = Vec::new();
    for reader in readers {
        let (stream, status) = reader.await.expect("reader task");
        statuses.push(status);
        streams.push(stream);
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 503, 503, 503, 503],
        "the cap of 2 streams"
    );
    assert_eq!(db.stream_slots(), (2, 2));
    // The refusal is the error envelope with Retry-After.
    let http = reqwest::Client::new();
    let refused = http
        .get(format!("http://{addr}/big"))
        .send()
        .await
        .expect("GET /big");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{body}");
    // The two stalled queries are running.
    assert_eq!(backends(&monitor, ACTIVE_WITH, &pg, marker).await, 2);

    // Other database routes still answer while the readers stall.
    for _ in 0..8 {
        let res = http
            .get(format!("http://{addr}/one"))
            .send()
            .await
            .expect("GET /one");
        assert_eq!(res.status(), 200, "another route during the stall");
    }

    // The stalled streams' connections are closed after the send timeout (1 s), not held
    // while the readers stay connected.
    let stalled_since = Instant::now();
    let gone = until_zero(&monitor, BACKENDS_WITH, &pg, marker, Duration::from_secs(6)).await;
    assert!(
        gone.is_some(),
        "the stalled streams' backends are still there 6 s later ({:?} of the pool active)",
        db.get_pool_status()
    );
    let freed = wait_for(Duration::from_secs(3), || {
        db.get_pool_status().active == 0 && db.stream_slots().1 == 0
    })
    .await;
    assert!(
        freed.is_some(),
        "pool {:?}, streams {:?}",
        db.get_pool_status(),
        db.stream_slots()
    );
    eprintln!(
        "stalled readers: backends gone {:?} after the checks began",
        stalled_since.elapsed()
    );
    // The readers are still connected: only the deadline freed the connections. A new
    // stream runs to its end.
    drop(streams);
    let res = http
        .get(format!("http://{addr}/one"))
        .send()
        .await
        .expect("GET /one");
    assert_eq!(res.status(), 200);
    let _ = stop.send(());
    db.close().await;
    monitor.close().await;
    assert!(
        test_start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        test_start.elapsed()
    );
}

/// A query that outlives the request timeout (1 s here): the client gets the 504 `TIMEOUT`
/// envelope, PostgreSQL stops the query (`statement_timeout`, tied to the request timeout)
/// so it leaves `pg_stat_activity` within about a second, and the pool's only connection
/// serves the next request at once — for a sea-orm query and a pass-through one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_request_timeout_is_504_and_stopped_on_the_server() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let test_start = Instant::now();
    let url = format!("{}?max_connections=1&acquire_timeout=5s", pg.url());
    let config = common::config(&[
        ("CHOPIN_ENV", "test"),
        ("DATABASE_URL", &url),
        ("CHOPIN_REQUEST_TIMEOUT", "1s"),
    ]);
    assert_eq!(
        config.database.statement_timeout,
        Some(Duration::from_secs(1))
    );
    let db = Db::connect(&config.database).await.expect("connect");
    let monitor = Db::connect(&DatabaseConfig::new(pg.url().to_string()))
        .await
        .expect("monitor");

    let router = Router::new()
        .route(
            "/orm-sleep",
            get(|State(db): State<Db>| async move {
                db.execute_unprepared("/* chopin-orm-sleep */ SELECT pg_sleep(30)")
                    .await?;
                Ok::<_, ChopinError>(ApiResponse::success(true))
            }),
        )
        .route(
            "/pass-sleep",
            get(|State(db): State<Db>| async move {
                JsonQuery::new(
                    "/* chopin-pass-sleep */ SELECT json_build_object('s', pg_sleep(30)::text)",
                )
                .one(&db)
                .await
            }),
        )
        .route(
            "/one",
            get(|State(db): State<Db>| async move {
                JsonQuery::new("SELECT json_build_object('ok', true)")
                    .one(&db)
                    .await
            }),
        );
    let (addr, stop) = serve_with_config(config, &db, router).await;
    let http = reqwest::Client::new();

    for (path, marker) in [
        ("/orm-sleep", "chopin-orm-sleep"),
        ("/pass-sleep", "chopin-pass-sleep"),
    ] {
        let sent = Instant::now();
        let res = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("GET");
        let answered = sent.elapsed();
        assert_eq!(res.status(), 504, "{path}");
        let body: serde_json::Value = res.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "TIMEOUT", "{path}: {body}");
        assert!(
            answered < Duration::from_secs(3),
            "{path}: answered after {answered:?}"
        );
        // Stopped on the server within about a second of the 504.
        let gone = until_zero(
            &monitor,
            ACTIVE_WITH,
            &pg,
            marker,
            Duration::from_millis(1500),
        )
        .await;
        assert!(
            gone.is_some(),
            "{path}: the query still runs 1.5 s after the 504"
        );
        // The pool's only connection serves the next request at once.
        let next = Instant::now();
        let res = http
            .get(format!("http://{addr}/one"))
            .send()
            .await
            .expect("GET /one");
        assert_eq!(res.status(), 200, "{path}: the next request");
        assert!(
            next.elapsed() < Duration::from_secs(1),
            "{path}: the next request took {:?}",
            next.elapsed()
        );
        eprintln!(
            "{path}: 504 after {answered:?}, query gone {gone:?} later, next request in {:?}",
            next.elapsed()
        );
    }
    assert_eq!(db.get_pool_status().size, 1);
    let _ = stop.send(());
    db.close().await;
    monitor.close().await;
    assert!(test_start.elapsed() < Duration::from_secs(20));
}
