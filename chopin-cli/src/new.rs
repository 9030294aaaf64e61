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
    /// A Chopin checkout to depend on instead of the published crate.
    pub chopin_path: Option<PathBuf>,
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

/// Escape a string for a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl ProjectContext {
    /// The template context for `options`.
    pub fn new(options: &NewOptions) -> CliResult<ProjectContext> {
        let names = names::project_names(&options.name)?;
        let chopin_source = match &options.chopin_path {
            None => format!("version = {}", toml_string("0.1")),
            Some(path) => {
                let core = path.join("chopin-core");
                if !core.join("Cargo.toml").is_file() {
                    return Err(CliError::new(format!(
                        "{} is not a Chopin checkout (no chopin-core/Cargo.toml)",
                        path.display()
                    ))
                    .hint("pass the folder that holds chopin-core/ and chopin-cli/"));
                }
                let core = core
                    .canonicalize()
                    .map_err(|e| CliError::io("resolve", &core, e))?;
                format!(
                    "path = {}",
                    toml_string(&core.to_string_lossy().replace('\\', "/"))
                )
            }
        };
        let mut core_features = vec!["sqlite"];
        let mut sqlx_features = vec!["sqlx-sqlite"];
        if options.db == DbKind::Postgres {
            core_features.push("postgres");
            sqlx_features.push("sqlx-postgres");
        }
        core_features.push("openapi-ui");
        if options.cache != CacheKind::Memory {
            core_features.push("redis");
        }
        if options.auth {
            core_features.push("auth");
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

/// Create the project; returns its folder.
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
    let mut steps = Steps::new(3);
    steps.next(&format!(
        "Rendering the project template into {}",
        dir.display()
    ));
    let files = templates::render_project(&context)?;
    for (path, text) in &files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CliError::io("create", parent, e))?;
        }
        std::fs::write(&full, text).map_err(|e| CliError::io("write", &full, e))?;
        println!("  create  {path}");
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
            chopin_path: None,
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
    fn refuses_a_path_that_is_not_a_checkout() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut o = options(&dir.path().join("p"));
        o.chopin_path = Some(dir.path().to_path_buf());
        let err = ProjectContext::new(&o).unwrap_err();
        assert!(err.message.contains("not a Chopin checkout"), "{err}");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }
}
