//! `cargo run -p blog`: serve the blog API on `CHOPIN_HOST:CHOPIN_PORT` (default
//! `127.0.0.1:3000`) until Ctrl-C or SIGTERM, with the database from `DATABASE_URL`
//! (default `sqlite://chopin.db`). `CHOPIN_WORKERS=N` serves on N per-core workers that share
//! the one database pool and auth state built here (`docs/layers.md`, "Per-core workers").
//!
//! `cargo run -p blog -- grant-admin <email>`: give an existing account the `admin` role.
//!
//! `cargo run -p blog -- table-view-sql <postgres|sqlite> [row|statement|write-path]`: print
//! the SQL that creates the `tv_post` table view with that freshness (what the migration runs;
//! `bench/tv-writes.sh` measures the variants).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = async {
        match args.as_slice() {
            [] => {
                let config = chopin_core::Config::from_env()?;
                blog::app(config).await?.serve().await?
            }
            [cmd, email] if cmd == "grant-admin" => {
                let config = chopin_core::Config::from_env()?;
                blog::grant_role(&config, email, blog::ADMIN).await?;
                println!("{email} is now an admin (from their next login)");
            }
            [cmd, backend, rest @ ..] if cmd == "table-view-sql" && rest.len() <= 1 => {
                print!(
                    "{}",
                    blog::table_view_sql(backend, rest.first().map(String::as_str))?
                );
            }
            _ => {
                return Err("usage: blog [grant-admin <email> | table-view-sql \
                            <postgres|sqlite> [row|statement|write-path]]"
                    .into());
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("blog: {err}");
            ExitCode::FAILURE
        }
    }
}
