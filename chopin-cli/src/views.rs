//! `chopin db rebuild-views`: rebuild the table views listed in the database's
//! `chopin_table_views` registry, in batches, without the application's code (the registry
//! holds each view's statements, written by `TableView::create` in the app's migration).

use std::path::Path;

use chopin_core::Config;
use chopin_core::db::Db;
use chopin_core::passthrough::rebuild_table_views;

use crate::output::{CliError, CliResult};

/// Rebuild every registered table view (or only `only`) of the database the project in
/// `root` is configured for (`DATABASE_URL`, from the environment or `.env` in development),
/// `batch` source rows per transaction; print one line per view.
pub fn run(root: &Path, batch: u64, only: Option<&str>) -> CliResult {
    let (lookup, problem) = crate::doctor::lookup(root);
    if let Some(problem) = problem {
        return Err(CliError::new(problem).hint("fix the line in .env (KEY=value)"));
    }
    let config =
        Config::from_lookup(lookup).map_err(|e| CliError::new(format!("configuration: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("could not start a runtime: {e}")))?;
    // Relative SQLite paths are relative to the project, as for `cargo run`.
    std::env::set_current_dir(root).map_err(|e| CliError::io("enter", root, e))?;
    let done = runtime.block_on(async {
        let db = Db::connect(&config.database)
            .await
            .map_err(|e| CliError::new(format!("database: {e}")))?;
        let done = rebuild_table_views(&db, batch, only).await;
        db.close().await;
        done.map_err(|e| {
            CliError::new(format!("rebuild-views: {e}"))
                .hint("table views are registered by `TableView::create` in a migration")
        })
    })?;
    if done.is_empty() {
        println!("no table views registered");
    }
    for view in done {
        println!(
            "{}: {} documents written in {} batch(es), {} removed",
            view.name, view.documents, view.batches, view.pruned
        );
    }
    Ok(())
}
