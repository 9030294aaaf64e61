//! `cargo run -p blog`: serve the blog API on `CHOPIN_HOST:CHOPIN_PORT` (default
//! `127.0.0.1:3000`) until Ctrl-C or SIGTERM, with the database from `DATABASE_URL`
//! (default `sqlite://chopin.db`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let config = chopin_core::Config::from_env()?;
        blog::app(config).await?.serve().await?;
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
