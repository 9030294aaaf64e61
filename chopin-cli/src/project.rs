//! A Chopin project on disk: where it is, what it was generated with, and running its
//! binary's tasks through cargo.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::output::{CliError, CliResult};

/// The `--db` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// A SQLite file: zero setup.
    Sqlite,
    /// PostgreSQL (SQLite stays available for tests and local runs).
    Postgres,
}

/// The `--cache` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// In-process (moka); nothing shared between instances.
    Memory,
    /// Every entry in Redis, shared by every instance.
    Redis,
    /// In-process tier in front of Redis, coherent through pub/sub invalidation.
    Tiered,
}

impl DbKind {
    /// The name used in flags and metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            DbKind::Sqlite => "sqlite",
            DbKind::Postgres => "postgres",
        }
    }
}

impl CacheKind {
    /// The name used in flags, metadata and `CHOPIN_CACHE`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheKind::Memory => "memory",
            CacheKind::Redis => "redis",
            CacheKind::Tiered => "tiered",
        }
    }
}

/// A project found on disk.
#[derive(Debug, Clone)]
pub struct Project {
    /// The folder holding its `Cargo.toml`.
    pub root: PathBuf,
    /// Its crate name (`my_api`).
    pub crate_name: String,
    /// The database it was generated for.
    pub db: DbKind,
    /// The cache it was generated for.
    pub cache: CacheKind,
    /// Whether it was generated with auth.
    pub auth: bool,
}

impl Project {
    /// The project whose `Cargo.toml` is in `start` or the nearest folder above it that
    /// depends on `chopin-core`.
    pub fn find(start: &Path) -> CliResult<Project> {
        let mut dir = Some(start);
        while let Some(d) = dir {
            let manifest = d.join("Cargo.toml");
            if let Ok(text) = std::fs::read_to_string(&manifest)
                && text.contains("chopin-core")
                && text.contains("[package]")
            {
                return Project::from_manifest(d, &text);
            }
            dir = d.parent();
        }
        Err(CliError::new(format!(
            "no Chopin project in {} or above it",
            start.display()
        ))
        .hint("run this inside a project made by `chopin new` (or pass `--project <dir>`)"))
    }

    fn from_manifest(root: &Path, manifest: &str) -> CliResult<Project> {
        let package = toml_value(manifest, "package", "name").ok_or_else(|| {
            CliError::new(format!("{}/Cargo.toml has no package name", root.display()))
        })?;
        let db = match toml_value(manifest, "package.metadata.chopin", "db").as_deref() {
            Some("postgres") => DbKind::Postgres,
            _ => DbKind::Sqlite,
        };
        let cache = match toml_value(manifest, "package.metadata.chopin", "cache").as_deref() {
            Some("redis") => CacheKind::Redis,
            Some("tiered") => CacheKind::Tiered,
            _ => CacheKind::Memory,
        };
        let auth =
            toml_value(manifest, "package.metadata.chopin", "auth").as_deref() == Some("true");
        Ok(Project {
            root: root.to_path_buf(),
            crate_name: package.replace('-', "_"),
            db,
            cache,
            auth,
        })
    }

    /// `cargo <args>` in the project, inheriting stdout/stderr; fails when cargo does.
    pub fn cargo(&self, args: &[&str]) -> CliResult {
        let cargo = cargo_program();
        let status = Command::new(&cargo)
            .args(args)
            .current_dir(&self.root)
            .status()
            .map_err(|e| {
                CliError::new(format!("could not run `{cargo}`: {e}")).hint(
                    "install Rust with rustup (https://rustup.rs) and make sure `cargo` is on PATH",
                )
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(CliError::new(format!(
                "`cargo {}` failed ({status})",
                args.join(" ")
            )))
        }
    }

    /// Run one of the project binary's tasks (`cargo run -- <task…>`), passing its output
    /// through. Cargo's progress (the first build takes minutes) goes to standard error.
    pub fn task(&self, task: &[&str]) -> CliResult {
        eprintln!(
            "running `cargo run -- {}` in {} (the first build can take a few minutes)",
            task.join(" "),
            self.root.display()
        );
        let mut args = vec!["run", "--"];
        args.extend_from_slice(task);
        self.cargo(&args)
    }

    /// Run a task and capture its standard output (its standard error, with Cargo's build
    /// progress, passes through).
    pub fn task_output(&self, task: &[&str]) -> CliResult<String> {
        eprintln!(
            "running `cargo run -- {}` in {} (the first build can take a few minutes)",
            task.join(" "),
            self.root.display()
        );
        let cargo = cargo_program();
        let output = Command::new(&cargo)
            .args(["run", "--"])
            .args(task)
            .current_dir(&self.root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| CliError::new(format!("could not run `{cargo}`: {e}")))?;
        if !output.status.success() {
            return Err(CliError::new(format!(
                "`cargo run -- {}` failed ({})",
                task.join(" "),
                output.status
            )));
        }
        String::from_utf8(output.stdout)
            .map_err(|_| CliError::new("the task printed output that is not UTF-8"))
    }
}

/// The cargo to run: `$CARGO` when set (inside cargo), else `cargo` from PATH.
pub fn cargo_program() -> String {
    std::env::var("CARGO")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cargo".to_string())
}

/// The string value of `key` in the `[table]` section of a TOML document, read line by line
/// (enough for the `Cargo.toml` files `chopin new` writes: `key = "value"` or `key = true`).
pub fn toml_value(document: &str, table: &str, key: &str) -> Option<String> {
    let header = format!("[{table}]");
    let mut inside = false;
    for line in document.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            let v = v.split('#').next().unwrap_or_default().trim();
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"[package]
name = "my-api"
version = "0.1.0"

[package.metadata.chopin]
db = "postgres"
cache = "tiered" # comment
auth = true

[dependencies]
chopin-core = { package = "chopin-web-core", path = "/src/chopin/chopin-core", default-features = false, features = ["postgres", "openapi-ui", "redis", "auth"] }
"#;

    #[test]
    fn reads_the_manifest() {
        assert_eq!(
            toml_value(MANIFEST, "package", "name").as_deref(),
            Some("my-api")
        );
        assert_eq!(toml_value(MANIFEST, "package", "db"), None);
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), MANIFEST).unwrap();
        std::fs::create_dir_all(dir.path().join("src/api")).unwrap();
        let p = Project::find(&dir.path().join("src/api")).unwrap();
        assert_eq!(p.root, dir.path());
        assert_eq!(p.crate_name, "my_api");
        assert_eq!(
            (p.db, p.cache, p.auth),
            (DbKind::Postgres, CacheKind::Tiered, true)
        );
    }

    #[test]
    fn outside_a_project_says_how_to_fix_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let err = Project::find(dir.path()).unwrap_err();
        assert!(err.hint.unwrap().contains("chopin new"));
    }
}
