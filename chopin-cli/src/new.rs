//! `chopin new`: a project from `templates/project/`, plus one example resource made by the
//! resource generator.

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::generate;
use crate::model;
use crate::names;
use crate::output::{CliError, CliResult, Steps};
use crate::project::{CacheKind, DbKind, Project};
use crate::source::{self, ChopinSource};
use crate::templates;

/// The fields of the example resource every new project starts with.
pub const EXAMPLE_RESOURCE: (&str, &[&str]) =
    ("Note", &["title:string!", "body:text", "done:bool!"]);

/// The options of `chopin new`.
#[derive(Debug, Clone)]
pub struct NewOptions {
    /// Project (package) name.
    pub name: String,
    /// Database.
    pub db: DbKind,
    /// Cache backend.
    pub cache: CacheKind,
    /// Whether to include authentication.
    pub auth: bool,
    /// Where to create it (default `./<name>`).
    pub path: Option<PathBuf>,
    /// Where the project's `chopin-core` comes from (already checked by
    /// [`source::resolve`](crate::source::resolve)).
    pub source: ChopinSource,
}

/// What the project templates see.
#[derive(Debug, Serialize)]
pub struct ProjectContext {
    name: String,
    crate_name: String,
    title: String,
    db: DbKind,
    cache: CacheKind,
    auth: bool,
    chopin_source: String,
    core_features: Vec<&'static str>,
    sqlx_features: Vec<&'static str>,
    db_label: &'static str,
    cache_label: &'static str,
}

impl ProjectContext {
    /// The template context for `options`.
    pub fn new(options: &NewOptions) -> CliResult<ProjectContext> {
        let names = names::project_names(&options.name)?;
        let chopin_source = options.source.dependency_keys();
        let mut core_features = vec!["sqlite"];
        let mut sqlx_features = vec!["sqlx-sqlite"];
        if options.db == DbKind::Postgres {
            core_features.push("postgres");
            sqlx_features.push("sqlx-postgres");
        }
        core_features.push("openapi-ui");
        // Prometheus metrics: `/metrics` on CHOPIN_METRICS_ADDR (127.0.0.1:9464).
        core_features.push("metrics");
        if options.cache != CacheKind::Memory {
            core_features.push("redis");
        }
        if options.auth {
            // `smtp`: the auth module's mails through `CHOPIN_SMTP_URL` (production needs it).
            core_features.push("auth");
            core_features.push("smtp");
        }
        Ok(ProjectContext {
            name: names.package,
            crate_name: names.crate_name,
            title: names.title,
            db: options.db,
            cache: options.cache,
            auth: options.auth,
            chopin_source,
            core_features,
            sqlx_features,
            db_label: match options.db {
                DbKind::Sqlite => "SQLite",
                DbKind::Postgres => "PostgreSQL",
            },
            cache_label: match options.cache {
                CacheKind::Memory => "in-process",
                CacheKind::Redis => "Redis",
                CacheKind::Tiered => "two-tier (in-process + Redis)",
            },
        })
    }
}

/// Whether `dir` is missing or an empty folder.
fn is_empty_dir(dir: &Path) -> CliResult<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(CliError::io("read", dir, e)),
    }
}

/// Write `contents` to `dir/path`, creating folders, and say so.
fn write_file(dir: &Path, path: &str, contents: &[u8]) -> CliResult {
    let full = dir.join(path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent).map_err(|e| CliError::io("create", parent, e))?;
    }
    std::fs::write(&full, contents).map_err(|e| CliError::io("write", &full, e))?;
    println!("  create  {path}");
    Ok(())
}

/// Create the project; returns its folder. Everything that can fail before writing (the name,
/// the folder, the templates, the source's lock file) is checked before the first file is
/// written.
pub fn run(options: &NewOptions, now: NaiveDateTime) -> CliResult<PathBuf> {
    let context = ProjectContext::new(options)?;
    let dir = options
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&options.name));
    if !is_empty_dir(&dir)? {
        return Err(CliError::new(format!(
            "{} already exists and is not empty; nothing was written",
            dir.display()
        ))
        .hint("pick another name, pass `--path <empty dir>`, or remove the folder first"));
    }
    let files = templates::render_project(&context)?;
    let lock = match options.source.lock_file() {
        Some(lock) => Some(std::fs::read(&lock).map_err(|e| CliError::io("read", &lock, e))?),
        None => None,
    };
    eprintln!("{}", options.source.describe());
    if let Some(note) = options.source.mismatch(source::built_at()) {
        eprintln!("{note}");
    }
    let mut steps = Steps::new(3);
    steps.next(&format!(
        "Rendering the project template into {}",
        dir.display()
    ));
    for (path, text) in &files {
        write_file(&dir, path, text.as_bytes())?;
    }
    if let Some(lock) = lock {
        // The checkout's lock: the project builds with the versions Chopin is tested with
        // (cargo drops the entries the project does not use on its first build).
        write_file(&dir, "Cargo.lock", &lock)?;
    }
    steps.next("Generating the example resource (Note)");
    let project = Project::find(&dir)?;
    let (name, fields) = EXAMPLE_RESOURCE;
    let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    let fields = model::parse_fields(&fields)?;
    generate::resource(&project, name, &fields, now)?.print();
    steps.next("Done");
    Ok(dir)
}

/// The "what next" lines printed after `chopin new`.
pub fn next_steps(dir: &Path, options: &NewOptions) -> String {
    let mut out = format!(
        "\nCreated {}. Next:\n\n  cd {}\n  cp .env.example .env\n",
        options.name,
        dir.display()
    );
    if options.db == DbKind::Postgres {
        out.push_str("  createdb <database named in .env>\n");
    }
    if options.cache != CacheKind::Memory {
        out.push_str("  # start Redis (redis://127.0.0.1:6379 by default)\n");
    }
    out.push_str(
        "  cargo run                # http://127.0.0.1:3000/docs\n  cargo test\n  chopin generate resource Article title:string! body:text\n",
    );
    if options.auth {
        out.push_str(
            "  # accounts: POST /api/auth/signup and /api/auth/login; set CHOPIN_JWT_SECRET in production\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> NewOptions {
        NewOptions {
            name: "demo".into(),
            db: DbKind::Sqlite,
            cache: CacheKind::Memory,
            auth: false,
            path: Some(dir.to_path_buf()),
            source: ChopinSource::Git {
                url: "https://example.com/chopin.git".into(),
                pin: None,
            },
        }
    }

    #[test]
    fn refuses_a_non_empty_directory_and_writes_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = run(&options(dir.path()), NaiveDateTime::default()).unwrap_err();
        assert!(err.message.contains("not empty"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_checkout_source_seeds_the_lock_file_and_a_git_source_does_not() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir = tempfile::TempDir::new().unwrap();
        let mut o = options(&dir.path().join("from-checkout"));
        o.source = ChopinSource::Checkout {
            root: root.to_path_buf(),
            commit: None,
        };
        let created = run(&o, NaiveDateTime::default()).unwrap();
        assert_eq!(
            std::fs::read(created.join("Cargo.lock")).unwrap(),
            std::fs::read(root.join("Cargo.lock")).unwrap()
        );
        let created = run(
            &options(&dir.path().join("from-git")),
            NaiveDateTime::default(),
        )
        .unwrap();
        assert!(created.join("Cargo.toml").is_file());
        assert!(!created.join("Cargo.lock").exists());
    }
}
