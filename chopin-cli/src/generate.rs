//! `chopin generate model | resource | migration`: new files from `templates/generate/`, and
//! idempotent edits of the module lists and route registration between marker comments.
//! A generator never overwrites a file: it checks every file it would create before it
//! writes anything.

use std::io::Write;
use std::path::Path;

use chrono::{NaiveDateTime, TimeDelta, Timelike};
use serde_json::json;

use crate::edit::{self, Insertion};
use crate::model::{self, FieldSpec, ModelView};
use crate::names;
use crate::output::{CliError, CliResult};
use crate::project::Project;
use crate::templates;

/// Marker above which entity modules are declared (`src/entity/mod.rs`).
pub const ENTITIES: &str = "// chopin:entities";
/// Marker above which migration modules are declared (`src/migration/mod.rs`).
pub const MIGRATION_MODULES: &str = "// chopin:migration-modules";
/// Marker above which migrations are listed in `Migrator::migrations` (`src/migration/mod.rs`).
pub const MIGRATIONS: &str = "// chopin:migrations";
/// Marker above which resource modules are declared (`src/api/mod.rs`).
pub const API_MODULES: &str = "// chopin:api-modules";
/// Marker above which resource routers are registered (`src/api/mod.rs`).
pub const API_ROUTES: &str = "// chopin:api-routes";

/// What a generator did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Files created, relative to the project root.
    pub created: Vec<String>,
    /// Existing files edited.
    pub edited: Vec<String>,
}

impl Report {
    /// Print the report as `create`/`edit` lines.
    pub fn print(&self) {
        for f in &self.created {
            println!("  create  {f}");
        }
        for f in &self.edited {
            println!("  edit    {f}");
        }
    }
}

/// The files and edits a generator plans.
#[derive(Debug, Default)]
struct Plan {
    files: Vec<(String, String)>,
    insertions: Vec<Insertion>,
}

impl Plan {
    /// Write the plan: refuse if any new file exists, then create files, then edit.
    fn apply(self, root: &Path) -> CliResult<Report> {
        for (path, _) in &self.files {
            if root.join(path).exists() {
                return Err(CliError::new(format!("{path} already exists; nothing was written"))
                    .hint("generators never overwrite files: pick another name, or delete the file first"));
            }
        }
        // Check the markers before creating anything.
        for ins in &self.insertions {
            let path = root.join(&ins.file);
            let text =
                std::fs::read_to_string(&path).map_err(|e| CliError::io("read", &path, e))?;
            if let Err(err) = edit::insert_before_marker(&text, ins.marker, &ins.line) {
                return Err(CliError::new(format!(
                    "cannot edit {}: {err}; nothing was written",
                    ins.file
                ))
                .hint(format!(
                    "restore the line `{}` where generated code belongs in {}",
                    ins.marker, ins.file
                )));
            }
        }
        let mut report = Report::default();
        for (path, text) in self.files {
            let full = root.join(&path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).map_err(|e| CliError::io("create", parent, e))?;
            }
            // `create_new`: a file that appeared since the check above is not overwritten.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&full)
                .map_err(|e| CliError::io("create", &full, e))?;
            file.write_all(text.as_bytes())
                .map_err(|e| CliError::io("write", &full, e))?;
            report.created.push(path);
        }
        report.edited = edit::apply(root, &self.insertions)?;
        Ok(report)
    }
}

/// The moment a migration's name is taken from: now, or later than every existing migration
/// so that the new one sorts last.
fn migration_time(root: &Path, now: NaiveDateTime) -> NaiveDateTime {
    // Names have whole seconds: compare at that precision.
    let now = now.with_nanosecond(0).unwrap_or(now);
    let latest = std::fs::read_dir(root.join("src/migration"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let stamp = name.strip_prefix('m')?.get(..15)?.to_string();
            NaiveDateTime::parse_from_str(&stamp, "%Y%m%d_%H%M%S").ok()
        })
        .max();
    match latest {
        Some(latest) if latest >= now => latest + TimeDelta::seconds(1),
        _ => now,
    }
}

fn migration_module(time: NaiveDateTime, name: &str) -> String {
    format!("m{}_{name}", time.format("%Y%m%d_%H%M%S"))
}

fn migration_insertions(plan: &mut Plan, module: &str) {
    plan.insertions.push(Insertion {
        file: "src/migration/mod.rs".into(),
        marker: MIGRATION_MODULES,
        line: format!("mod {module};"),
    });
    plan.insertions.push(Insertion {
        file: "src/migration/mod.rs".into(),
        marker: MIGRATIONS,
        line: format!("Box::new({module}::Migration),"),
    });
}

fn model_view(project: &Project, name: &str, fields: &[FieldSpec]) -> CliResult<ModelView> {
    let names = names::model_names(name)?;
    ModelView::new(names, fields, |target| {
        let path = project.root.join(format!("src/entity/{target}.rs"));
        let source = std::fs::read_to_string(&path).map_err(|_| {
            CliError::new(format!(
                "the referenced model `{target}` does not exist (no src/entity/{target}.rs)"
            ))
            .hint(format!(
                "generate it first: chopin generate model {} <fields…>",
                names::pascal(target)
            ))
        })?;
        Ok(model::entity_fields(&source))
    })
}

/// How a generated resource records who created each row: in auth projects, an `owner_id`
/// column holding the account id (`chopin_auth_users.id`) of the creator, who alone (or an
/// account with the admin role) may replace or delete the row.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Owner {
    /// Whether the column gets a foreign key to `chopin_auth_users(id)`: only when the
    /// project applies the auth tables' migrations before its own (its `src/lib.rs` has the
    /// `migrate` function of current templates); otherwise, on a fresh PostgreSQL database,
    /// the referenced table would not exist yet when the resource's table is created.
    foreign_key: bool,
}

/// The column generated resources of auth projects record their owner in.
pub const OWNER_COLUMN: &str = "owner_id";

/// The marker of a project whose `src/lib.rs` migrates the auth tables before its own.
const AUTH_FIRST: &str = "pub async fn migrate(";

impl Owner {
    /// The owner of `project`'s generated resources: `None` without auth.
    fn of(project: &Project) -> Option<Owner> {
        if !project.auth {
            return None;
        }
        let lib = std::fs::read_to_string(project.root.join("src/lib.rs")).unwrap_or_default();
        Some(Owner {
            foreign_key: lib.contains(AUTH_FIRST),
        })
    }
}

fn plan_model(
    project: &Project,
    view: &ModelView,
    owner: Option<Owner>,
    now: NaiveDateTime,
) -> CliResult<Plan> {
    let context = json!({ "m": view, "owner": owner });
    let mut plan = Plan::default();
    let module = &view.names.module;
    plan.files.push((
        format!("src/entity/{module}.rs"),
        templates::render("generate/entity.rs.jinja", &context)?,
    ));
    let migration = migration_module(
        migration_time(&project.root, now),
        &format!("create_{}", view.names.table),
    );
    plan.files.push((
        format!("src/migration/{migration}.rs"),
        templates::render("generate/create_table.rs.jinja", &context)?,
    ));
    plan.insertions.push(Insertion {
        file: "src/entity/mod.rs".into(),
        marker: ENTITIES,
        line: format!("pub mod {module};"),
    });
    migration_insertions(&mut plan, &migration);
    Ok(plan)
}

/// `chopin generate model <Name> <field:type…>`: a sea-orm entity and the migration that
/// creates its table.
pub fn model(
    project: &Project,
    name: &str,
    fields: &[FieldSpec],
    now: NaiveDateTime,
) -> CliResult<Report> {
    let view = model_view(project, name, fields)?;
    plan_model(project, &view, None, now)?.apply(&project.root)
}

/// `chopin generate resource <Name> <field:type…>`: the model, CRUD routes with OpenAPI
/// annotations under `/api/<table>`, and their tests.
pub fn resource(
    project: &Project,
    name: &str,
    fields: &[FieldSpec],
    now: NaiveDateTime,
) -> CliResult<Report> {
    let owner = Owner::of(project);
    if owner.is_some() {
        refuse_owner_field(fields)?;
    }
    let mut view = model_view(project, name, fields)?;
    refuse_chained_references(project, &view)?;
    if project.auth {
        // A referenced resource of this project has an owner too: the tests insert its row
        // owned by the account they sign up.
        for r in &mut view.references {
            for f in &mut r.sample_fields {
                if f.name == OWNER_COLUMN {
                    f.expr = "owner".into();
                    r.owned = true;
                }
            }
        }
    }
    let mut plan = plan_model(project, &view, owner, now)?;
    let context = json!({
        "m": view,
        "owner": owner,
        "crate_name": project.crate_name,
        "db": project.db.as_str(),
        "cache": project.cache.as_str(),
        "auth": project.auth,
    });
    let table = &view.names.table;
    plan.files.push((
        format!("src/api/{table}.rs"),
        templates::render("generate/resource.rs.jinja", &context)?,
    ));
    plan.files.push((
        format!("tests/{table}.rs"),
        templates::render("generate/resource_test.rs.jinja", &context)?,
    ));
    plan.insertions.push(Insertion {
        file: "src/api/mod.rs".into(),
        marker: API_MODULES,
        line: format!("pub mod {table};"),
    });
    plan.insertions.push(Insertion {
        file: "src/api/mod.rs".into(),
        marker: API_ROUTES,
        line: format!("{table}::router(),"),
    });
    plan.apply(&project.root)
}

/// In an auth project the generator adds `owner_id` itself: refuse a field of that name.
fn refuse_owner_field(fields: &[FieldSpec]) -> CliResult<()> {
    match fields.iter().find(|f| f.name == OWNER_COLUMN) {
        Some(_) => Err(CliError::new(format!(
            "field `{OWNER_COLUMN}` is added by the generator itself in projects with auth; nothing was written"
        ))
        .hint("every resource of an auth project records its creator's account id in `owner_id`: leave the field out (or name yours differently)")),
        None => Ok(()),
    }
}

/// The generated tests insert the rows a resource refers to, but not the rows those refer to
/// in turn: refuse a reference to a model that has references itself (the foreign key would
/// fail the tests on PostgreSQL and on SQLite).
fn refuse_chained_references(project: &Project, view: &ModelView) -> CliResult<()> {
    for r in &view.references {
        let path = project.root.join(format!("src/entity/{}.rs", r.module));
        let source = std::fs::read_to_string(&path).map_err(|e| CliError::io("read", &path, e))?;
        if source.contains("belongs_to = ") {
            return Err(CliError::new(format!(
                "`{}` references `{}`, which references another model itself; the generated tests cannot insert such chains yet; nothing was written",
                r.column, r.module
            ))
            .hint(format!(
                "generate it with `chopin generate model` (no tests) and write the resource by hand, or reference a model without references of its own; see docs/cli.md for `{}`",
                r.module
            )));
        }
    }
    Ok(())
}

/// `chopin generate migration <name>`: an empty migration, listed last.
pub fn migration(project: &Project, name: &str, now: NaiveDateTime) -> CliResult<Report> {
    let name = names::snake_ident(name, "migration")?;
    let module = migration_module(migration_time(&project.root, now), &name);
    let description = {
        let mut d = name.replace('_', " ");
        if let Some(first) = d.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        format!("{d}.")
    };
    let mut plan = Plan::default();
    plan.files.push((
        format!("src/migration/{module}.rs"),
        templates::render(
            "generate/migration.rs.jinja",
            &json!({ "description": description }),
        )?,
    ));
    migration_insertions(&mut plan, &module);
    plan.apply(&project.root)
}
