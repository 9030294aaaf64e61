//! `chopin doctor`: is the toolchain usable, is the configuration valid, are the database and
//! Redis reachable?

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chopin_core::cache::Cache;
use chopin_core::cache::CacheBackend;
use chopin_core::config::redact_url;
use chopin_core::db::Db;
use chopin_core::{Config, Environment};

use crate::output::{CliError, CliResult};
use crate::project::{Project, cargo_program};

/// The oldest Rust that Chopin builds with (the workspace's `rust-version`).
const MIN_RUST: (u32, u32) = (1, 94);

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Fine.
    Ok(String),
    /// Works, but worth a look.
    Warn(String),
    /// Broken: with how to fix it.
    Fail(String, String),
}

impl Check {
    fn print(&self) {
        match self {
            Check::Ok(m) => println!("  ok    {m}"),
            Check::Warn(m) => println!("  warn  {m}"),
            Check::Fail(m, fix) => println!("  FAIL  {m}\n        fix: {fix}"),
        }
    }
}

/// `rustc 1.91.0 (…)` → (1, 91).
pub fn parse_rustc_version(line: &str) -> Option<(u32, u32)> {
    let version = line.split_whitespace().nth(1)?;
    let mut parts = version.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn toolchain() -> Vec<Check> {
    let mut checks = Vec::new();
    let cargo = cargo_program();
    match Command::new(&cargo).arg("--version").output() {
        Ok(out) if out.status.success() => checks.push(Check::Ok(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )),
        _ => checks.push(Check::Fail(
            format!("`{cargo}` not found"),
            "install Rust with rustup (https://rustup.rs)".into(),
        )),
    }
    match Command::new("rustc").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match parse_rustc_version(&line) {
                Some(v) if v >= MIN_RUST => checks.push(Check::Ok(line)),
                Some(_) => checks.push(Check::Fail(
                    format!("{line} is older than {}.{}", MIN_RUST.0, MIN_RUST.1),
                    "rustup update stable".into(),
                )),
                None => checks.push(Check::Warn(format!(
                    "unrecognised `rustc --version`: {line}"
                ))),
            }
        }
        _ => checks.push(Check::Fail(
            "`rustc` not found".into(),
            "install Rust with rustup (https://rustup.rs)".into(),
        )),
    }
    checks
}

/// Whether the application reads `.env`: only when `CHOPIN_ENV` is unset or `development`
/// (as `Config::from_env` decides).
fn reads_dotenv(process: &impl Fn(&str) -> Option<String>) -> bool {
    process("CHOPIN_ENV")
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().parse::<Environment>() == Ok(Environment::Development))
        .unwrap_or(true)
}

/// The variables the application would see: the process environment, plus `.env` in the
/// project in development only (whose values do not override the environment, and which
/// cannot set `CHOPIN_ENV`, as in Chopin's loader).
pub(crate) fn lookup(root: &Path) -> (impl Fn(&str) -> Option<String>, Option<String>) {
    lookup_with(root, |name| std::env::var(name).ok())
}

/// [`lookup`] over the process variables `process`.
fn lookup_with(
    root: &Path,
    process: impl Fn(&str) -> Option<String>,
) -> (impl Fn(&str) -> Option<String>, Option<String>) {
    let mut from_file = Vec::new();
    let mut problem = None;
    let path = root.join(".env");
    if reads_dotenv(&process) && path.is_file() {
        match dotenvy::from_path_iter(&path) {
            Ok(iter) => {
                for item in iter {
                    match item {
                        Ok(pair) => from_file.push(pair),
                        Err(e) => problem = Some(format!(".env: {e}")),
                    }
                }
            }
            Err(e) => problem = Some(format!(".env: {e}")),
        }
    }
    let lookup = move |name: &str| {
        let from_process = process(name);
        if name == "CHOPIN_ENV" {
            return from_process;
        }
        from_process.or_else(|| {
            from_file
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };
    (lookup, problem)
}

async fn services(root: &Path, config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let url = &config.database.url;
    let shown = redact_url(url);
    let sqlite_missing = url
        .strip_prefix("sqlite://")
        .map(|p| p.split('?').next().unwrap_or(p))
        .filter(|p| !p.starts_with(':') && !p.is_empty())
        .map(|p| !root.join(p).exists())
        .unwrap_or(false);
    if sqlite_missing {
        checks.push(Check::Ok(format!(
            "database {shown}: the file does not exist yet (created on the first run)"
        )));
    } else {
        let probe = async {
            let db = Db::connect(&config.database)
                .await
                .map_err(|e| e.to_string())?;
            let ping = db.ping().await.map_err(|e| e.to_string());
            db.close().await;
            ping
        };
        match tokio::time::timeout(Duration::from_secs(10), probe).await {
            Ok(Ok(())) => checks.push(Check::Ok(format!("database {shown} reachable"))),
            Ok(Err(e)) => checks.push(Check::Fail(
                format!("database {shown}: {e}"),
                "start the database, or fix DATABASE_URL in .env (for PostgreSQL, create it with `createdb`)".into(),
            )),
            Err(_) => checks.push(Check::Fail(
                format!("database {shown}: no answer within 10s"),
                "check that the server is up and DATABASE_URL's host and port".into(),
            )),
        }
    }
    if config.cache.backend == CacheBackend::Memory {
        checks.push(Check::Ok(
            "cache: in-process (memory), nothing to reach".into(),
        ));
    } else {
        let shown = redact_url(&config.cache.redis_url);
        let probe = async {
            let cache = Cache::from_config(&config.cache)
                .await
                .map_err(|e| e.to_string())?;
            cache.ping().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok(())) => checks.push(Check::Ok(format!(
                "cache {} at {shown} reachable",
                config.cache.backend
            ))),
            Ok(Err(e)) => checks.push(Check::Fail(
                format!("cache {} at {shown}: {e}", config.cache.backend),
                "start Redis (`redis-server`), fix REDIS_URL, or set CHOPIN_CACHE=memory".into(),
            )),
            Err(_) => checks.push(Check::Fail(
                format!("cache at {shown}: no answer within 5s"),
                "check that Redis is up and REDIS_URL's host and port".into(),
            )),
        }
    }
    checks
}

/// Run every check, print the report, and fail when a check failed.
pub fn run(start: &Path) -> CliResult {
    println!("toolchain");
    let mut checks = toolchain();
    checks.iter().for_each(Check::print);
    match Project::find(start) {
        Err(err) => {
            let c = Check::Warn(format!("{} (project checks skipped)", err.message));
            c.print();
            checks.push(c);
        }
        Ok(project) => {
            println!("project {}", project.root.display());
            let mut local = Vec::new();
            let process = |name: &str| std::env::var(name).ok();
            if !reads_dotenv(&process) {
                local.push(Check::Ok(
                    "CHOPIN_ENV is not development: .env is not read, as in the app".into(),
                ));
            } else if !project.root.join(".env").exists()
                && project.root.join(".env.example").exists()
            {
                local.push(Check::Warn(
                    "no .env: defaults and the process environment apply (cp .env.example .env)"
                        .into(),
                ));
            }
            let (lookup, problem) = lookup(&project.root);
            if let Some(p) = problem {
                local.push(Check::Fail(p, "fix the line in .env (KEY=value)".into()));
            }
            match Config::from_lookup(lookup) {
                Err(err) => {
                    local.push(Check::Fail(
                        format!("configuration: {err}"),
                        "fix the variables listed above (see Chopin's docs/configuration.md)"
                            .into(),
                    ));
                }
                Ok(config) => {
                    local.push(Check::Ok(format!(
                        "configuration valid ({} environment)",
                        format!("{:?}", config.environment).to_lowercase()
                    )));
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| CliError::new(format!("could not start a runtime: {e}")))?;
                    // Relative SQLite paths are relative to the project, as for `cargo run`.
                    std::env::set_current_dir(&project.root)
                        .map_err(|e| CliError::io("enter", &project.root, e))?;
                    local.extend(runtime.block_on(services(&project.root, &config)));
                }
            }
            local.iter().for_each(Check::print);
            checks.extend(local);
        }
    }
    let failed = checks
        .iter()
        .filter(|c| matches!(c, Check::Fail(..)))
        .count();
    if failed == 0 {
        println!("all checks passed");
        Ok(())
    } else {
        Err(CliError::new(format!("{failed} check(s) failed")).hint("see the `fix:` lines above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustc_versions_parse() {
        assert_eq!(
            parse_rustc_version("rustc 1.91.0 (f8297e351 2025-10-28)"),
            Some((1, 91))
        );
        assert_eq!(
            parse_rustc_version("rustc 1.92.0-nightly (abc 2025-10-01)"),
            Some((1, 92))
        );
        assert_eq!(parse_rustc_version("nonsense"), None);
    }

    #[test]
    fn dotenv_values_do_not_override_the_environment() {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "CHOPIN_DOCTOR_TEST_ONLY=file\nPATH=nope\n",
        )
        .unwrap();
        let (lookup, problem) = lookup(dir.path());
        assert_eq!(problem, None);
        assert_eq!(lookup("CHOPIN_DOCTOR_TEST_ONLY").as_deref(), Some("file"));
        assert_ne!(lookup("PATH").as_deref(), Some("nope"));
    }

    #[test]
    fn dotenv_is_ignored_outside_development() {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "DATABASE_URL=sqlite://dev.db\nCHOPIN_ENV=development\n",
        )
        .unwrap();
        let env = |value: &'static str| {
            move |name: &str| (name == "CHOPIN_ENV").then(|| value.to_string())
        };
        let (lookup, _) = lookup_with(dir.path(), env("production"));
        assert_eq!(lookup("DATABASE_URL"), None);
        assert_eq!(lookup("CHOPIN_ENV").as_deref(), Some("production"));
        let (lookup, _) = lookup_with(dir.path(), env("development"));
        assert_eq!(lookup("DATABASE_URL").as_deref(), Some("sqlite://dev.db"));
        // `.env` cannot choose the environment.
        let (lookup, _) = lookup_with(dir.path(), |_: &str| None);
        assert_eq!(lookup("DATABASE_URL").as_deref(), Some("sqlite://dev.db"));
        assert_eq!(lookup("CHOPIN_ENV"), None);
    }
}
