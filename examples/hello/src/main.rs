//! `hello`: a Chopin application with no database and three routes.
//!
//! ```text
//! cargo run -p hello
//! curl localhost:3000/
//! curl localhost:3000/greet/Ada
//! curl -X POST localhost:3000/echo -H 'content-type: application/json' -d '{"text":"hi"}'
//! ```

use chopin_core::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    hello::app(config).serve().await?;
    Ok(())
}
