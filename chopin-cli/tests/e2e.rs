//! End to end: `chopin new` with `--chopin-path` pointing at this checkout, then `cargo
//! build`, `cargo clippy -- -D warnings` and `cargo test` inside the generated project; then
//! every generator, and build, lint and test again; then `chopin db migrate / rollback /
//! status / reset`, `chopin routes`, `chopin openapi export` and `chopin doctor` against
//! SQLite and a fresh PostgreSQL database.
//!
//! Runs when `CI=true` or `CHOPIN_E2E=1`; otherwise it prints why it skips (a cold run builds
//! the generated projects' dependencies, several minutes).
//!
//! Nested cargo is kept fast and safe: `chopin new` seeds each project's `Cargo.lock` from the
//! workspace's (same crate versions, resolved `--offline`), and every generated project builds
//! into ONE shared target directory, `<this target dir>/chopin-e2e` (or
//! `CHOPIN_E2E_TARGET_DIR`): never the outer cargo's own target directory, whose lock the
//! running `cargo test` holds. `.ci/readme-flow.sh`, which CI runs next, builds the README's
//! project in the same directory, so the default project's dependencies are compiled once.
//!
//! The matrix: see `docs/cli.md#what-ci-runs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use chopin_core::Config;
use chopin_core::db::Db;
use chopin_core::testing::{TestPostgres, in_ci};
use sea_orm::{ConnectionTrait, Statement};

/// The e2e tests run one at a time: they share one target directory, and builds in parallel
/// would only queue on its lock.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn enabled() -> bool {
    in_ci() || std::env::var("CHOPIN_E2E").is_ok_and(|v| v == "1")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("chopin-cli sits in the workspace")
        .to_path_buf()
}

/// The shared target directory of every generated project.
fn shared_target() -> PathBuf {
    if let Ok(dir) = std::env::var("CHOPIN_E2E_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // .../<target>/<profile>/chopin
    let exe = Path::new(env!("CARGO_BIN_EXE_chopin"));
    exe.parent()
        .and_then(Path::parent)
        .expect("the chopin binary lives in <target>/<profile>/")
        .join("chopin-e2e")
}

fn show(cmd: &Command, out: &Output) -> String {
    format!(
        "{cmd:?} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `cmd`; panic with its output unless it succeeds; return its stdout.
fn ok(mut cmd: Command) -> String {
    let started = Instant::now();
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{}", show(&cmd, &out));
    eprintln!("  {:>6.1}s  {:?}", started.elapsed().as_secs_f64(), cmd);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `cmd`; panic unless it fails; return its stderr.
fn fails(mut cmd: Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        show(&cmd, &out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Environment for anything that runs cargo on a generated project.
fn nested(cmd: &mut Command, target: &Path) {
    cmd.env("CARGO_TARGET_DIR", target)
        .env("CARGO_NET_OFFLINE", "true")
        // Throw-away builds: no incremental state to write.
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("DATABASE_URL")
        .env_remove("CHOPIN_CACHE");
}

fn chopin(dir: &Path, target: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chopin"));
    cmd.args(args).current_dir(dir);
    nested(&mut cmd, target);
    cmd
}

fn cargo(dir: &Path, target: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(dir);
    nested(&mut cmd, target);
    cmd
}

/// The three cargo steps the issue asks for, inside the project.
fn build_lint_test(dir: &Path, target: &Path) {
    ok(cargo(dir, target, &["build", "--offline"]));
    ok(cargo(
        dir,
        target,
        &[
            "clippy",
            "--offline",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ));
    ok(cargo(dir, target, &["test", "--offline"]));
}

/// A project made by `chopin new`, with the workspace's lock file.
fn new_project(root: &Path, target: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let dir = root.join(name);
    let checkout = workspace();
    let mut args = vec![
        "new",
        name,
        "--path",
        dir.to_str().unwrap(),
        "--chopin-path",
        checkout.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = chopin(root, target, &args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let root_path = checkout.canonicalize().unwrap();
    assert!(
        stderr.contains(&format!("using Chopin from {} (", root_path.display())),
        "{stderr}"
    );
    // `chopin new` seeds the project's lock from the checkout's.
    assert_eq!(
        std::fs::read(dir.join("Cargo.lock")).unwrap(),
        std::fs::read(checkout.join("Cargo.lock")).unwrap()
    );
    // A second `chopin new` into the now non-empty folder is refused.
    let err = fails(chopin(root, target, &args));
    assert!(err.contains("not empty"), "{err}");
    dir
}

/// Every generator, then build, lint and test again.
fn run_generators(dir: &Path, target: &Path) {
    ok(chopin(
        dir,
        target,
        &[
            "generate",
            "model",
            "Tag",
            "name:string^!",
            "weight:f64",
            "seen_on:date",
        ],
    ));
    ok(chopin(
        dir,
        target,
        &[
            "generate",
            "resource",
            "Comment",
            "body:text!",
            "note:references",
            // Two references to one model (with a unique column): relations and test
            // helpers are named after the columns, and the two rows get distinct values.
            "author:references:tag",
            "editor:references:tag",
            "rating:i32",
            "posted_at:datetime",
        ],
    ));
    ok(chopin(
        dir,
        target,
        &["generate", "migration", "add_tag_index"],
    ));
    let err = fails(chopin(
        dir,
        target,
        &["generate", "model", "Tag", "name:string"],
    ));
    assert!(err.contains("already exists"), "{err}");
    build_lint_test(dir, target);
}

/// The rows of the migration table, read straight from the database.
async fn recorded_migrations(url: &str) -> Vec<String> {
    let config =
        Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.to_string())).unwrap();
    let db = Db::connect(&config.database).await.unwrap();
    let rows = db
        .conn()
        .query_all_raw(Statement::from_string(
            db.conn().get_database_backend(),
            "SELECT version FROM seaql_migrations ORDER BY version",
        ))
        .await
        .unwrap();
    let names = rows
        .iter()
        .map(|r| r.try_get::<String>("", "version").unwrap())
        .collect();
    db.close().await;
    names
}

fn status_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(s, n)| (s.to_string(), n.trim().to_string()))
        })
        .filter(|(s, _)| s == "applied" || s == "pending")
        .collect()
}

/// `chopin db …` against `url`: status reads the migration table, rollback undoes only the
/// latest of the app's migrations, reset re-applies everything.
async fn exercise_db(dir: &Path, target: &Path, url: &str) {
    let db = |args: &[&str]| {
        let mut cmd = chopin(dir, target, args);
        cmd.env("DATABASE_URL", url);
        cmd
    };
    let status = status_lines(&ok(db(&["db", "status"])));
    assert_eq!(status.len(), 4, "{status:?}");
    assert!(status.iter().all(|(s, _)| s == "pending"), "{status:?}");
    assert!(status[0].1.ends_with("_create_notes"), "{status:?}");
    assert!(status[3].1.ends_with("_add_tag_index"), "{status:?}");
    let all: Vec<String> = status.iter().map(|(_, n)| n.clone()).collect();
    // `status` writes nothing: a SQLite file that did not exist still does not.
    if let Some(file) = url.strip_prefix("sqlite://") {
        assert!(!Path::new(file).exists(), "db status created {file}");
    }

    let migrated = status_lines(&ok(db(&["db", "migrate"])));
    assert!(migrated.iter().all(|(s, _)| s == "applied"), "{migrated:?}");
    assert_eq!(recorded_migrations(url).await, all);

    let rolled = status_lines(&ok(db(&["db", "rollback"])));
    assert_eq!(rolled[3].0, "pending", "{rolled:?}");
    assert_eq!(rolled[2].0, "applied", "{rolled:?}");
    assert_eq!(recorded_migrations(url).await, all[..3]);

    let rolled = status_lines(&ok(db(&["db", "rollback", "--steps", "2"])));
    assert_eq!(
        rolled.iter().filter(|(s, _)| s == "applied").count(),
        1,
        "{rolled:?}"
    );
    assert_eq!(recorded_migrations(url).await, all[..1]);
    let status = status_lines(&ok(db(&["db", "status"])));
    assert_eq!(status, rolled);

    let err = fails(db(&["db", "reset"]));
    assert!(err.contains("--yes"), "{err}");
    let reset = status_lines(&ok(db(&["db", "reset", "--yes"])));
    assert!(reset.iter().all(|(s, _)| s == "applied"), "{reset:?}");
    assert_eq!(recorded_migrations(url).await, all);

    let doctor = ok(db(&["doctor"]));
    assert!(doctor.contains("reachable"), "{doctor}");
}

/// `chopin doctor` checks Redis for the `tiered` cache: reachable, then a port where nothing
/// listens (a failure with the fix, exit status 1).
fn exercise_doctor_redis(dir: &Path, target: &Path, database_url: &str) {
    let redis_url = std::env::var("CHOPIN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let mut cmd = chopin(dir, target, &["doctor"]);
    cmd.env("DATABASE_URL", database_url)
        .env("CHOPIN_CACHE", "tiered")
        .env("REDIS_URL", &redis_url);
    let out = ok(cmd);
    assert!(out.contains("cache tiered at"), "{out}");
    assert!(out.contains("all checks passed"), "{out}");

    let mut cmd = chopin(dir, target, &["doctor"]);
    cmd.env("DATABASE_URL", database_url)
        .env("CHOPIN_CACHE", "tiered")
        .env("REDIS_URL", "redis://127.0.0.1:1");
    let output = cmd.output().unwrap();
    assert!(!output.status.success(), "{}", show(&cmd, &output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL  cache tiered"), "{stdout}");
    assert!(stdout.contains("fix: start Redis"), "{stdout}");
    assert!(stdout.contains("database postgres://"), "{stdout}");
}

fn exercise_spec(dir: &Path, target: &Path) {
    let routes = ok(chopin(dir, target, &["routes"]));
    for line in [
        "GET     /api/comments",
        "POST    /api/notes",
        "DELETE  /api/comments/{id}",
        "GET     /health/ready",
    ] {
        assert!(routes.contains(line), "{line} missing from\n{routes}");
    }
    let json = ok(chopin(dir, target, &["openapi", "export"]));
    let spec: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        spec["paths"]["/api/comments/{id}"]["put"].is_object(),
        "{json}"
    );
    assert!(
        spec["components"]["schemas"]["NewComment"].is_object(),
        "{json}"
    );
    let yaml = ok(chopin(
        dir,
        target,
        &["openapi", "export", "--format", "yaml"],
    ));
    // Both resources are there; `Tag` is a model only, so it has no routes.
    assert!(yaml.contains("  /api/notes:"), "{yaml}");
    assert!(yaml.contains("  /api/comments/{id}:"), "{yaml}");
    assert!(!yaml.contains("/api/tags"), "{yaml}");
    assert!(yaml.contains("operationId: list_comments"), "{yaml}");
}

fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

/// sqlite + memory: the default project, full pipeline.
#[tokio::test(flavor = "multi_thread")]
async fn e2e_sqlite_memory() {
    if !enabled() {
        eprintln!(
            "skipping the chopin-cli end-to-end test: set CHOPIN_E2E=1 (it runs when CI=true)"
        );
        return;
    }
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let target = shared_target();
    let root = tempfile::TempDir::new().unwrap();
    let dir = new_project(root.path(), &target, "e2e-sqlite-memory", &[]);
    build_lint_test(&dir, &target);
    run_generators(&dir, &target);
    exercise_spec(&dir, &target);
    exercise_db(&dir, &target, &sqlite_url(root.path(), "db.sqlite")).await;
    eprintln!("e2e sqlite+memory: {:.0}s", started.elapsed().as_secs_f64());
}

/// postgres + tiered + auth: full pipeline, database commands on SQLite and on PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn e2e_postgres_tiered_auth() {
    if !enabled() {
        eprintln!(
            "skipping the chopin-cli end-to-end test: set CHOPIN_E2E=1 (it runs when CI=true)"
        );
        return;
    }
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let target = shared_target();
    let root = tempfile::TempDir::new().unwrap();
    let dir = new_project(
        root.path(),
        &target,
        "e2e-postgres-tiered-auth",
        &["--db", "postgres", "--cache", "tiered", "--auth"],
    );
    build_lint_test(&dir, &target);
    run_generators(&dir, &target);
    exercise_spec(&dir, &target);
    exercise_db(&dir, &target, &sqlite_url(root.path(), "db.sqlite")).await;
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    exercise_db(&dir, &target, pg.url()).await;
    exercise_doctor_redis(&dir, &target, pg.url());
    drop(pg);
    eprintln!(
        "e2e postgres+tiered+auth: {:.0}s",
        started.elapsed().as_secs_f64()
    );
}

/// sqlite + redis + auth: full pipeline. Four more combinations: `cargo check --all-targets`.
#[tokio::test(flavor = "multi_thread")]
async fn e2e_sqlite_redis_auth_and_checks() {
    if !enabled() {
        eprintln!(
            "skipping the chopin-cli end-to-end test: set CHOPIN_E2E=1 (it runs when CI=true)"
        );
        return;
    }
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let target = shared_target();
    let root = tempfile::TempDir::new().unwrap();
    let dir = new_project(
        root.path(),
        &target,
        "e2e-sqlite-redis-auth",
        &["--cache", "redis", "--auth"],
    );
    build_lint_test(&dir, &target);
    run_generators(&dir, &target);
    exercise_db(&dir, &target, &sqlite_url(root.path(), "db.sqlite")).await;
    for (name, args) in [
        ("e2e-sqlite-memory-auth", &["--auth"][..]),
        ("e2e-sqlite-tiered", &["--cache", "tiered"][..]),
        ("e2e-postgres-memory", &["--db", "postgres"][..]),
        (
            "e2e-postgres-redis-auth",
            &["--db", "postgres", "--cache", "redis", "--auth"][..],
        ),
    ] {
        let dir = new_project(root.path(), &target, name, args);
        ok(cargo(
            &dir,
            &target,
            &["check", "--offline", "--all-targets"],
        ));
    }
    eprintln!(
        "e2e sqlite+redis+auth and checks: {:.0}s",
        started.elapsed().as_secs_f64()
    );
}
