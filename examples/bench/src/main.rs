//! Benchmark endpoints, identical in behaviour to the baselines in `bench/`:
//!
//! * `GET /json` — `{"message":"Hello, World!"}` serialised per request (Chopin's `Json`,
//!   sonic-rs);
//! * `GET /plaintext` — `Hello, World!` as `text/plain`.
//!
//! When `DATABASE_URL` is set (PostgreSQL), the pass-through benchmark endpoints of [`db`] are
//! added: `/db/orm`, `/db/passthrough`, `/db/passthrough-build` and `/db/stream`, each taking
//! `?rows=N`. Without it no database is opened and only the two endpoints above exist.
//!
//! `CHOPIN_BENCH_STACK=full` (default) serves with Chopin's full default layer stack as
//! configured by the environment; `minimal` with [`Layers::minimal`]. Listens on `BIND`
//! (default `127.0.0.1:3003`).

use axum::Router;
use axum::routing::get;
use chopin_core::app::shutdown_signal;
use chopin_core::extractors::Json;
use chopin_core::prelude::*;
use serde::Serialize;

pub mod cached;
pub mod db;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

async fn json() -> Json<Message> {
    Json(Message {
        message: "Hello, World!",
    })
}

async fn plaintext() -> &'static str {
    "Hello, World!"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    chopin_core::telemetry::init(&config.log);
    let stack = std::env::var("CHOPIN_BENCH_STACK").unwrap_or_else(|_| "full".into());
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3003".into());
    let mut router = Router::new()
        .route("/json", get(json))
        .route("/plaintext", get(plaintext));
    let database = match std::env::var_os("DATABASE_URL") {
        Some(_) => Some(Db::connect(&config.database).await?),
        None => None,
    };
    if let Some(database) = &database {
        router = router.merge(db::router(database.clone()));
    }
    router = router.merge(cached::router(database.as_ref()).await?);
    let mut app = App::new(config).router(router);
    if let Some(database) = &database {
        app = app.database(database);
    }
    match stack.as_str() {
        "full" => {}
        "minimal" => app = app.layers(Layers::minimal()),
        other => {
            return Err(
                format!("CHOPIN_BENCH_STACK must be full or minimal, got {other:?}").into(),
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    app.serve_with(listener, shutdown_signal()).await?;
    Ok(())
}
