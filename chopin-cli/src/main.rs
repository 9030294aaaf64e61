//! The `chopin` command-line tool: scaffold Chopin applications (`chopin new`), generate
//! models, resources and migrations, and run a project's database, OpenAPI and diagnostic
//! tasks. See `docs/cli.md`.

#![forbid(unsafe_code)]

mod checkout;
mod doctor;
mod edit;
mod generate;
mod git;
mod metrics;
mod model;
mod names;
mod new;
mod output;
mod project;
mod source;
mod templates;
mod views;

#[cfg(test)]
mod snapshot_tests;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use crate::output::{CliError, CliResult};
use crate::project::{CacheKind, DbKind, Project};

/// Chopin: scaffold and manage Chopin applications.
#[derive(Debug, Parser)]
#[command(
    name = "chopin",
    version,
    about,
    long_about = None,
    after_help = "Examples:\n  chopin new my-api\n  chopin new shop --db postgres --cache tiered\n  cd my-api && chopin generate resource Article title:string! body:text\n  chopin db status\n  chopin openapi export --format yaml --output openapi.yaml\n\nEvery command has its own --help with examples."
)]
struct Cli {
    /// Run as if started in this folder (the project's, or one inside it).
    #[arg(short = 'C', long = "project", global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new Chopin project.
    #[command(
        after_help = "Examples:\n  chopin new my-api                                  SQLite, in-process cache\n  chopin new shop --db postgres --cache tiered       PostgreSQL, moka in front of Redis\n  chopin new demo --path /tmp/demo --chopin-path ~/src/chopin   another Chopin checkout\n  chopin new demo --chopin-git https://github.com/<owner>/chopin --tag <tag>\n\nBy default the project depends on the Chopin checkout this chopin was built from (see\n`chopin version`), by path, and starts from its Cargo.lock. The folder must not exist or be\nempty. The project builds, tests and runs at once:\n  cd my-api && cargo test && cargo run"
    )]
    New(NewArgs),
    /// Generate a model, a resource or a migration in the current project.
    #[command(
        alias = "g",
        subcommand,
        after_help = "Examples:\n  chopin generate resource Article title:string! slug:string^! body:text\n  chopin g model Tag name:string:unique:required\n  chopin generate migration add_index_to_articles\n\nWrite `^!` (or `:unique:required`), not `!^`: bash and zsh expand an unquoted `!^`."
    )]
    Generate(GenerateCommand),
    /// Apply, roll back or inspect the project's migrations (on its DATABASE_URL).
    #[command(
        subcommand,
        after_help = "Examples:\n  chopin db status\n  chopin db migrate\n  chopin db rollback --steps 2\n  chopin db reset --yes"
    )]
    Db(DbCommand),
    /// List the project's API routes (from its OpenAPI spec).
    #[command(
        after_help = "Example:\n  chopin routes\n\nBuilds and runs `cargo run -- openapi` in the project; the spec and docs routes\n(/openapi.json, /docs) are served too but are not part of the spec."
    )]
    Routes,
    /// Export the project's OpenAPI spec.
    #[command(
        subcommand,
        after_help = "Examples:\n  chopin openapi export > openapi.json\n  chopin openapi export --format yaml --output openapi.yaml"
    )]
    Openapi(OpenapiCommand),
    /// Run the project (`cargo run`), passing any arguments after `--` to it.
    #[command(
        after_help = "Examples:\n  chopin run\n  chopin run --release\n  chopin run -- db status"
    )]
    Run {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
        /// Arguments for the project's binary.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Check the toolchain, the project's configuration, and database and Redis reachability.
    #[command(
        after_help = "Example:\n  chopin doctor\n\nReads the process environment, plus the project's .env unless CHOPIN_ENV says otherwise\n(like the app: .env is read in development only).\nExits with status 1 when a check fails."
    )]
    Doctor,
    /// Print the key figures of a running app, from two scrapes of its /metrics.
    #[command(
        after_help = "Examples:\n  chopin metrics\n  chopin metrics http://10.0.0.5:9464/metrics --interval 5s\n  CHOPIN_METRICS_TOKEN=… chopin metrics\n\nScrapes twice, --interval apart, and shows what happened in between: requests/s,\nthe 5xx ratio, p50/p99 latency (estimated from the histogram buckets), requests in\nflight, database pools and breakers, cache hit ratio, 429s, process memory and file\ndescriptors. The app needs chopin-core's `metrics` feature (docs/observability.md)."
    )]
    Metrics {
        /// The app's metrics endpoint.
        #[arg(default_value = metrics::DEFAULT_URL)]
        url: String,
        /// Bearer token for the endpoint (default: the CHOPIN_METRICS_TOKEN variable).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// Time between the two scrapes (`1s`, `500ms`, `1m`).
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  chopin completions bash > ~/.local/share/bash-completion/completions/chopin\n  chopin completions zsh > ~/.zfunc/_chopin\n  chopin completions fish > ~/.config/fish/completions/chopin.fish"
    )]
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Print this tool's version, and the Chopin checkout and commit it was built from.
    Version,
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// Project name: letters, digits, `-` and `_`, starting with a letter.
    name: String,
    /// Database.
    #[arg(long, value_enum, default_value = "sqlite")]
    db: DbKind,
    /// Cache backend (`redis` and `tiered` need a Redis server).
    #[arg(long, value_enum, default_value = "memory")]
    cache: CacheKind,
    /// Include JWT authentication (registration, login, a protected route).
    #[arg(long, overrides_with = "no_auth")]
    auth: bool,
    /// Leave authentication out (the default).
    #[arg(long = "no-auth", overrides_with = "auth")]
    no_auth: bool,
    /// Folder to create (default: ./<name>).
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// Depend on the Chopin checkout in DIR (by path). Default: the checkout this chopin was
    /// built from.
    #[arg(long, value_name = "DIR", conflicts_with = "chopin_git")]
    chopin_path: Option<PathBuf>,
    /// Depend on Chopin from this git repository instead of a local checkout.
    #[arg(long, value_name = "URL")]
    chopin_git: Option<String>,
    /// With --chopin-git: the commit to use.
    #[arg(
        long,
        value_name = "SHA",
        requires = "chopin_git",
        conflicts_with_all = ["tag", "chopin_path"]
    )]
    rev: Option<String>,
    /// With --chopin-git: the tag to use.
    #[arg(
        long,
        value_name = "TAG",
        requires = "chopin_git",
        conflicts_with = "chopin_path"
    )]
    tag: Option<String>,
}

const FIELD_HELP: &str = "Fields as name:type; types: string, text, i32, i64, f64, bool, datetime, date, references. Append ! for NOT NULL and ^ for UNIQUE (title:string!, slug:string^!; write `^!`, as bash and zsh expand `!^`); `post:references` adds a required post_id referencing posts.id (`author:references:user` names the model).";

#[derive(Debug, Subcommand)]
enum GenerateCommand {
    /// A sea-orm entity and the migration that creates its table.
    #[command(
        after_help = "Examples:\n  chopin generate model Tag name:string^!\n  chopin generate model Comment body:text! post:references\n\nCreates src/entity/<model>.rs and src/migration/m<time>_create_<table>.rs and lists them in\nsrc/entity/mod.rs and src/migration/mod.rs. Never overwrites a file."
    )]
    Model {
        /// Model name, singular (`Post`, `BlogPost`).
        name: String,
        #[arg(help = FIELD_HELP)]
        fields: Vec<String>,
    },
    /// A model plus CRUD routes (`/api/<table>`) with validation, pagination, OpenAPI and tests.
    #[command(
        after_help = "Examples:\n  chopin generate resource Article title:string! body:text published:bool!\n  chopin generate resource Comment body:text! article:references\n\nAlso creates src/api/<table>.rs and tests/<table>.rs and registers the routes in\nsrc/api/mod.rs. Never overwrites a file."
    )]
    Resource {
        /// Model name, singular (`Article`).
        name: String,
        #[arg(help = FIELD_HELP)]
        fields: Vec<String>,
    },
    /// An empty migration, listed after every existing one.
    #[command(after_help = "Example:\n  chopin generate migration add_index_to_articles")]
    Migration {
        /// snake_case name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Apply every pending migration.
    #[command(
        after_help = "Example:\n  chopin db migrate\n  DATABASE_URL=postgres://postgres@127.0.0.1/app chopin db migrate"
    )]
    Migrate,
    /// Undo the last applied migrations of this application.
    #[command(after_help = "Examples:\n  chopin db rollback\n  chopin db rollback --steps 2")]
    Rollback {
        /// How many migrations to undo.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        steps: u32,
    },
    /// List every migration as applied or pending, read from the database's migration table.
    #[command(after_help = "Example:\n  chopin db status")]
    Status,
    /// Rebuild the table views (`tv_*`) registered in the database, in batches: for data
    /// written while a view's triggers were off, or restored from elsewhere. Runs no app code.
    #[command(
        after_help = "Examples:\n  chopin db rebuild-views\n  chopin db rebuild-views --view tv_post --batch 5000\n\nReads DATABASE_URL like the app (environment, .env in development) and the views'\nstatements from the chopin_table_views table that `TableView::create` fills."
    )]
    RebuildViews {
        /// Source rows per batch (one transaction each).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Only this table view (default: every registered one).
        #[arg(long, value_name = "NAME")]
        view: Option<String>,
    },
    /// Undo every migration, then apply them all again. Deletes all data.
    #[command(after_help = "Example:\n  chopin db reset --yes")]
    Reset {
        /// Confirm that every table of the application may be dropped.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SpecFormat {
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
enum OpenapiCommand {
    /// Print (or write) the project's OpenAPI spec, exactly as the server serves it.
    #[command(
        after_help = "Examples:\n  chopin openapi export > openapi.json\n  chopin openapi export --format yaml --output openapi.yaml"
    )]
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: SpecFormat,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// `--interval`: a humantime duration, at least 10 ms and at most 10 minutes.
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write 1s, 500ms, 1m)"))?;
    if d < std::time::Duration::from_millis(10) || d > std::time::Duration::from_secs(600) {
        return Err("must be between 10ms and 10m".into());
    }
    Ok(d)
}

fn start_dir(cli_project: &Option<PathBuf>) -> CliResult<PathBuf> {
    match cli_project {
        Some(dir) => Ok(dir.clone()),
        None => std::env::current_dir()
            .map_err(|e| CliError::new(format!("cannot read the current folder: {e}"))),
    }
}

fn project(cli_project: &Option<PathBuf>) -> CliResult<Project> {
    Project::find(&start_dir(cli_project)?)
}

fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn run(cli: Cli) -> CliResult {
    match cli.command {
        None | Some(Command::Version) => println!("{}", version_line()),
        Some(Command::New(args)) => new_project(args, &cli.project, source::built_from())?,
        Some(Command::Generate(command)) => {
            let project = project(&cli.project)?;
            let report = match command {
                GenerateCommand::Model { name, fields } => {
                    generate::model(&project, &name, &model::parse_fields(&fields)?, now())?
                }
                GenerateCommand::Resource { name, fields } => {
                    generate::resource(&project, &name, &model::parse_fields(&fields)?, now())?
                }
                GenerateCommand::Migration { name } => generate::migration(&project, &name, now())?,
            };
            report.print();
            println!(
                "\nNext: cargo test (migrations are applied at start-up, or with `chopin db migrate`)"
            );
        }
        Some(Command::Db(DbCommand::RebuildViews { batch, view })) => {
            // No project code is needed: any folder with the app's configuration will do.
            let start = start_dir(&cli.project)?;
            let root = Project::find(&start).map(|p| p.root).unwrap_or(start);
            views::run(&root, batch, view.as_deref())?;
        }
        Some(Command::Db(command)) => {
            let project = project(&cli.project)?;
            let steps;
            let task: Vec<&str> = match &command {
                DbCommand::Migrate => vec!["db", "migrate"],
                DbCommand::Rollback { steps: n } => {
                    steps = n.to_string();
                    vec!["db", "rollback", &steps]
                }
                DbCommand::Status => vec!["db", "status"],
                // Matched by the arm above.
                DbCommand::RebuildViews { .. } => return Ok(()),
                DbCommand::Reset { yes } => {
                    if !yes {
                        return Err(CliError::new(
                            "`chopin db reset` drops every table of the application and its data",
                        )
                        .hint("run `chopin db reset --yes` if that is what you want"));
                    }
                    vec!["db", "reset"]
                }
            };
            project.task(&task)?;
        }
        Some(Command::Routes) => {
            let project = project(&cli.project)?;
            let spec = project.task_output(&["openapi"])?;
            print!("{}", routes_table(&spec)?);
        }
        Some(Command::Openapi(OpenapiCommand::Export { format, output })) => {
            let project = project(&cli.project)?;
            let spec = project.task_output(&["openapi"])?;
            let text = convert_spec(&spec, format)?;
            match output {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| CliError::io("write", &path, e))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
        }
        Some(Command::Run { release, args }) => {
            let project = project(&cli.project)?;
            let mut cargo = vec!["run"];
            if release {
                cargo.push("--release");
            }
            cargo.push("--");
            cargo.extend(args.iter().map(String::as_str));
            project.cargo(&cargo)?;
        }
        Some(Command::Doctor) => doctor::run(&start_dir(&cli.project)?)?,
        Some(Command::Metrics {
            url,
            token,
            interval,
        }) => {
            let token = token.or_else(|| {
                std::env::var("CHOPIN_METRICS_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty())
            });
            metrics::run(&url, token.as_deref(), interval)?;
        }
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "chopin", &mut std::io::stdout());
        }
    }
    Ok(())
}

/// `chopin new`: pick the Chopin source (`remembered` is the checkout this binary was built
/// from), then create the project. A missing source fails before anything is written.
fn new_project(
    args: NewArgs,
    cli_project: &Option<PathBuf>,
    remembered: Option<&std::path::Path>,
) -> CliResult {
    // Relative folders are taken from `-C <dir>` when it is given, as every other path is.
    let in_project_dir = |p: PathBuf| match cli_project {
        Some(base) if p.is_relative() => base.join(p),
        _ => p,
    };
    let source = source::resolve(
        &source::SourceArgs {
            chopin_path: args.chopin_path.map(in_project_dir),
            chopin_git: args.chopin_git,
            rev: args.rev,
            tag: args.tag,
        },
        remembered,
    )?;
    let path = match (args.path, cli_project) {
        (Some(p), _) => Some(in_project_dir(p)),
        (None, Some(base)) => Some(base.join(&args.name)),
        (None, None) => None,
    };
    let options = new::NewOptions {
        name: args.name,
        db: args.db,
        cache: args.cache,
        auth: args.auth && !args.no_auth,
        path,
        source,
    };
    let dir = new::run(&options, now())?;
    println!("{}", new::next_steps(&dir, &options));
    Ok(())
}

fn parse_spec(spec: &str) -> CliResult<serde_json::Value> {
    serde_json::from_str(spec).map_err(|e| {
        CliError::new(format!("the project printed an invalid OpenAPI spec: {e}"))
            .hint("check that `cargo run -- openapi` in the project prints only the spec")
    })
}

/// The spec in the requested format, ending with a newline. JSON is the project's output
/// unchanged (checked to parse), so its key order is kept; YAML is converted from the parsed
/// value, whose object keys are sorted.
fn convert_spec(spec: &str, format: SpecFormat) -> CliResult<String> {
    let value = parse_spec(spec)?;
    let mut text = match format {
        SpecFormat::Json => spec.trim_end().to_string(),
        SpecFormat::Yaml => serde_norway::to_string(&value)
            .map_err(|e| CliError::new(format!("could not write YAML: {e}")))?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// `METHOD  PATH  OPERATION` for every operation of the spec, sorted by path then method.
fn routes_table(spec: &str) -> CliResult<String> {
    let value = parse_spec(spec)?;
    let mut rows = Vec::new();
    if let Some(paths) = value["paths"].as_object() {
        for (path, item) in paths {
            for method in [
                "get", "post", "put", "patch", "delete", "head", "options", "trace",
            ] {
                if let Some(op) = item.get(method) {
                    let name = op["operationId"].as_str().unwrap_or("").to_string();
                    rows.push((path.clone(), method.to_ascii_uppercase(), name));
                }
            }
        }
    }
    let order = |m: &str| {
        ["GET", "POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .position(|x| *x == m)
            .unwrap_or(9)
    };
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(order(&a.1).cmp(&order(&b.1))));
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<7} {:<width$}  HANDLER\n", "METHOD", "PATH");
    for (path, method, name) in rows {
        out.push_str(&format!("{method:<7} {path:<width$}  {name}\n"));
    }
    Ok(out)
}

/// `chopin <version>`, plus the checkout and commit it was built from, when known.
fn version_line() -> String {
    let mut line = format!("chopin {}", env!("CARGO_PKG_VERSION"));
    match (source::built_from(), source::built_at()) {
        (Some(root), Some(commit)) => {
            line.push_str(&format!(" (commit {commit}, checkout {})", root.display()))
        }
        (Some(root), None) => line.push_str(&format!(" (checkout {})", root.display())),
        (None, _) => line.push_str(" (not built from a checkout)"),
    }
    line
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_subcommand_parses() {
        let cli = Cli::try_parse_from(["chopin", "version"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Version)));
        assert!(Cli::try_parse_from(["chopin", "frobnicate"]).is_err());
        // Built in this workspace: the version names the checkout.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(
            source::built_from(),
            Some(root.canonicalize().unwrap().as_path())
        );
        let line = version_line();
        assert!(
            line.starts_with(&format!("chopin {} (", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        assert!(
            line.ends_with(&format!(
                "checkout {})",
                root.canonicalize().unwrap().display()
            )),
            "{line}"
        );
    }

    #[test]
    fn new_parses_its_options() {
        let cli = Cli::try_parse_from(["chopin", "new", "shop"]).unwrap();
        let Some(Command::New(a)) = cli.command else {
            panic!()
        };
        assert_eq!(
            (a.db, a.cache, a.auth),
            (DbKind::Sqlite, CacheKind::Memory, false)
        );
        let cli = Cli::try_parse_from([
            "chopin",
            "new",
            "shop",
            "--db",
            "postgres",
            "--cache",
            "tiered",
            "--auth",
            "--no-auth",
            "--path",
            "/tmp/x",
            "--chopin-path",
            "/src/chopin",
        ])
        .unwrap();
        let Some(Command::New(a)) = cli.command else {
            panic!()
        };
        assert_eq!((a.db, a.cache), (DbKind::Postgres, CacheKind::Tiered));
        assert!(!a.auth && a.no_auth, "the last of --auth / --no-auth wins");
        assert_eq!(a.path, Some(PathBuf::from("/tmp/x")));
        let cli = Cli::try_parse_from(["chopin", "new", "shop", "--no-auth", "--auth"]).unwrap();
        let Some(Command::New(a)) = cli.command else {
            panic!()
        };
        assert!(a.auth && !a.no_auth);
        assert!(Cli::try_parse_from(["chopin", "new", "shop", "--db", "mysql"]).is_err());
        assert!(Cli::try_parse_from(["chopin", "new", "shop", "--cache", "memcached"]).is_err());
        assert!(Cli::try_parse_from(["chopin", "new"]).is_err());
    }

    fn new_args(argv: &[&str]) -> (NewArgs, Option<PathBuf>) {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Some(Command::New(args)) = cli.command else {
            panic!()
        };
        (args, cli.project)
    }

    #[test]
    fn a_gone_checkout_fails_before_anything_is_written() {
        let dir = tempfile::TempDir::new().unwrap();
        let target = dir.path().join("my-api");
        let gone = dir.path().join("chopin-was-here");
        let (args, project) = new_args(&[
            "chopin",
            "new",
            "my-api",
            "--path",
            target.to_str().unwrap(),
        ]);
        let err = new_project(args, &project, Some(&gone)).unwrap_err();
        assert!(err.message.contains("is gone"), "{err}");
        assert!(err.message.contains("nothing was written"), "{err}");
        assert!(!target.exists());

        // The same with `-C`: the folder it would have used stays absent too.
        let (args, project) =
            new_args(&["chopin", "-C", dir.path().to_str().unwrap(), "new", "other"]);
        assert!(new_project(args, &project, None).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // An explicit checkout still works without a remembered one, and `-C` places the
        // project.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let (args, project) = new_args(&[
            "chopin",
            "-C",
            dir.path().to_str().unwrap(),
            "new",
            "made",
            "--chopin-path",
            root.to_str().unwrap(),
        ]);
        new_project(args, &project, None).unwrap();
        let manifest = std::fs::read_to_string(dir.path().join("made/Cargo.toml")).unwrap();
        let expected = format!(
            "chopin-core = {{ package = \"chopin-web-core\", path = \"{}\",",
            root.canonicalize().unwrap().join("chopin-core").display()
        );
        assert!(manifest.contains(&expected), "{manifest}");
    }

    /// `-C <dir>` applies to `--chopin-path` as it does to `--path`: a relative checkout is
    /// looked for under `<dir>`, not under the process's current folder.
    #[test]
    fn a_relative_chopin_path_is_taken_from_the_project_dir() {
        let dir = tempfile::TempDir::new().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .canonicalize()
            .unwrap();
        // `<dir>/vendor/chopin` is a symbolic link to this checkout: found only through `-C`.
        std::fs::create_dir(dir.path().join("vendor")).unwrap();
        std::os::unix::fs::symlink(&root, dir.path().join("vendor/chopin")).unwrap();
        assert!(
            !Path::new("vendor/chopin").exists(),
            "run from the crate folder"
        );
        let (args, project) = new_args(&[
            "chopin",
            "-C",
            dir.path().to_str().unwrap(),
            "new",
            "made",
            "--path",
            "apps/made",
            "--chopin-path",
            "vendor/chopin",
        ]);
        new_project(args, &project, None).unwrap();
        let manifest = std::fs::read_to_string(dir.path().join("apps/made/Cargo.toml")).unwrap();
        let expected = format!(
            "chopin-core = {{ package = \"chopin-web-core\", path = \"{}\",",
            root.join("chopin-core").display()
        );
        assert!(manifest.contains(&expected), "{manifest}");
        // Without `-C`, the same relative checkout is looked for in the current folder, where
        // there is none: refused before anything is written.
        let target = dir.path().join("other");
        let (args, project) = new_args(&[
            "chopin",
            "new",
            "other",
            "--path",
            target.to_str().unwrap(),
            "--chopin-path",
            "vendor/chopin",
        ]);
        assert!(new_project(args, &project, None).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn source_options_parse_and_conflict() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["chopin", "new", "shop"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let Some(Command::New(a)) = parse(&["--chopin-git", "https://x/c.git", "--tag", "v1"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(a.chopin_git.as_deref(), Some("https://x/c.git"));
        assert_eq!((a.rev, a.tag.as_deref()), (None, Some("v1")));
        let Some(Command::New(a)) = parse(&["--chopin-git", "u", "--rev", "abc"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(a.rev.as_deref(), Some("abc"));
        for refused in [
            &["--chopin-git", "u", "--rev", "a", "--tag", "b"][..],
            &["--chopin-git", "u", "--chopin-path", "/c"][..],
            &["--rev", "abc"][..],
            &["--tag", "v1"][..],
            &["--chopin-path", "/c", "--tag", "v1"][..],
            &["--chopin-path", "/c", "--rev", "abc"][..],
        ] {
            let err = parse(refused).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    clap::error::ErrorKind::ArgumentConflict
                        | clap::error::ErrorKind::MissingRequiredArgument
                ),
                "{refused:?}: {err}"
            );
        }
    }

    #[test]
    fn generate_db_and_openapi_parse() {
        let cli = Cli::try_parse_from([
            "chopin",
            "g",
            "resource",
            "Post",
            "title:string!",
            "body:text",
        ])
        .unwrap();
        let Some(Command::Generate(GenerateCommand::Resource { name, fields })) = cli.command
        else {
            panic!()
        };
        assert_eq!(name, "Post");
        assert_eq!(fields, ["title:string!", "body:text"]);
        let cli =
            Cli::try_parse_from(["chopin", "-C", "/p", "db", "rollback", "--steps", "3"]).unwrap();
        assert_eq!(cli.project, Some(PathBuf::from("/p")));
        assert!(matches!(
            cli.command,
            Some(Command::Db(DbCommand::Rollback { steps: 3 }))
        ));
        assert!(Cli::try_parse_from(["chopin", "db", "rollback", "--steps", "0"]).is_err());
        let cli = Cli::try_parse_from(["chopin", "db", "rebuild-views"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Db(DbCommand::RebuildViews {
                batch: 1000,
                view: None
            }))
        ));
        let cli = Cli::try_parse_from([
            "chopin",
            "db",
            "rebuild-views",
            "--view",
            "tv_post",
            "--batch",
            "5",
        ])
        .unwrap();
        let Some(Command::Db(DbCommand::RebuildViews { batch: 5, view })) = cli.command else {
            panic!()
        };
        assert_eq!(view.as_deref(), Some("tv_post"));
        assert!(Cli::try_parse_from(["chopin", "db", "rebuild-views", "--batch", "0"]).is_err());
        let cli = Cli::try_parse_from(["chopin", "db", "reset"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Db(DbCommand::Reset { yes: false }))
        ));
        let cli = Cli::try_parse_from([
            "chopin", "openapi", "export", "--format", "yaml", "-o", "x.yaml",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Openapi(OpenapiCommand::Export {
                format: SpecFormat::Yaml,
                output: Some(_)
            }))
        ));
        let cli = Cli::try_parse_from(["chopin", "run", "--", "db", "status"]).unwrap();
        let Some(Command::Run { release, args }) = cli.command else {
            panic!()
        };
        assert!(!release);
        assert_eq!(args, ["db", "status"]);
        assert!(Cli::try_parse_from(["chopin", "completions", "zsh"]).is_ok());
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            let path = format!("{path} {}", cmd.get_name());
            // Every command, parents included (`chopin generate --help`), except the ones
            // clap adds itself.
            if cmd.get_name() != "version" && cmd.get_name() != "help" {
                let after = cmd
                    .get_after_help()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                assert!(
                    after.contains("Example"),
                    "`{path}` has no examples in --help"
                );
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path);
            }
        }
        walk(&Cli::command(), "");
    }

    #[test]
    fn completions_cover_every_command() {
        let mut out = Vec::new();
        clap_complete::generate(Shell::Bash, &mut Cli::command(), "chopin", &mut out);
        let script = String::from_utf8(out).unwrap();
        for word in [
            "new",
            "generate",
            "migration",
            "rollback",
            "openapi",
            "doctor",
            "--chopin-path",
        ] {
            assert!(
                script.contains(word),
                "{word} missing from the bash completions"
            );
        }
    }

    const SPEC: &str = r#"{"openapi":"3.1.0","info":{"title":"T","version":"1"},"paths":{
        "/api/notes/{id}":{"delete":{"operationId":"delete_note"},"get":{"operationId":"get_note"}},
        "/api/notes":{"post":{"operationId":"create_note"},"get":{"operationId":"list_notes"}}}}"#;

    #[test]
    fn routes_are_listed_from_the_spec() {
        let table = routes_table(SPEC).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(
            lines[1].starts_with("GET     /api/notes") && lines[1].ends_with("list_notes"),
            "{table}"
        );
        assert!(lines[2].starts_with("POST    /api/notes"), "{table}");
        assert!(lines[4].starts_with("DELETE  /api/notes/{id}"), "{table}");
        assert!(routes_table("not json").unwrap_err().hint.is_some());
    }

    #[test]
    fn specs_convert_to_yaml() {
        let yaml = convert_spec(SPEC, SpecFormat::Yaml).unwrap();
        assert!(yaml.contains("openapi: 3.1.0"), "{yaml}");
        assert!(yaml.contains("operationId: list_notes"), "{yaml}");
        let back: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(SPEC).unwrap()
        );
        // JSON is passed through as printed: key order (`paths` after `info`, `post` before
        // `get`) is kept, and a newline ends it.
        let json = convert_spec(SPEC, SpecFormat::Json).unwrap();
        assert_eq!(json, format!("{SPEC}\n"));
        assert_eq!(
            convert_spec(&format!("{SPEC}\n"), SpecFormat::Json).unwrap(),
            json
        );
        assert!(convert_spec("{", SpecFormat::Json).is_err());
    }
}
