//! `cargo run -p blog`: serve the blog API on `CHOPIN_HOST:CHOPIN_PORT` (default
//! `127.0.0.1:3000`) until Ctrl-C or SIGTERM, with the database from `DATABASE_URL`
//! (default `sqlite://chopin.db`). `CHOPIN_WORKERS=N` serves on N per-core workers that share
//! the one database pool and auth state built here (`docs/layers.md`, "Per-core workers").
//!
//! `cargo run -p blog -- grant-admin <email>`: give an existing account the `admin` role.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = async {
        let config = chopin_core::Config::from_env()?;
        match args.as_slice() {
            [] => blog::app(config).await?.serve().await?,
            [cmd, email] if cmd == "grant-admin" => {
                blog::grant_role(&config, email, blog::ADMIN).await?;
                println!("{email} is now an admin (from their next login)");
            }
            _ => return Err("usage: blog [grant-admin <email>]".into()),
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
