//! Benchmark endpoints, identical in behaviour to the baselines in `bench/`:
//!
//! * `GET /json` — `{"message":"Hello, World!"}` serialised per request (Chopin's `Json`,
//!   sonic-rs);
//! * `GET /plaintext` — `Hello, World!` as `text/plain`;
//! * `GET /json_auth` — the body of `/json`, behind [`AuthUser`]: every request carries
//!   `Authorization: Bearer <token>` and pays for HS256 verification, claim checks and the
//!   revocation lookup. The key is `CHOPIN_JWT_SECRET`; `chopin-bench-example token` prints a
//!   token for it (valid for a week), which `bench/run.sh` passes to wrk.
//!
//! When `DATABASE_URL` is set (PostgreSQL), the pass-through benchmark endpoints of [`db`] are
//! added: `/db/orm`, `/db/passthrough`, `/db/passthrough-build` and `/db/stream`, each taking
//! `?rows=N`, and the blog-shaped endpoints of [`blog`]: `/db/blog-orm` and `/db/blog-tv`.
//! Without it no database is opened and only the endpoints above exist.
//!
//! `chopin-bench-example create-views` (with `DATABASE_URL`) creates the blog's table view
//! `tv_blog_post` with Chopin's `TableView` and exits; `bench/run-db.sh` runs it after loading
//! the tables.
//!
//! `CHOPIN_BENCH_STACK=full` (default) serves with Chopin's full default layer stack as
//! configured by the environment, request metrics included; `nometrics` with the same stack
//! but the metrics layer off (what metrics cost per request); `minimal` with
//! [`Layers::minimal`]. Listens on `BIND`
//! (default `127.0.0.1:3003`).
//!
//! `CHOPIN_WORKERS=N` serves on N per-core workers (single-threaded runtimes, one
//! `SO_REUSEPORT` socket each) instead of the multi-threaded runtime. The state — the auth
//! handle, the database pool, the caches — is built once here, on `main`'s runtime, and every
//! worker serves the same router: Chopin's shared-state mode (`docs/layers.md`, "Per-core
//! workers").

use axum::Router;
use axum::routing::get;
use chopin_core::app::shutdown_signal;
use chopin_core::extractors::Json;
use chopin_core::prelude::*;
use serde::Serialize;

pub mod blog;
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

async fn json_auth(_user: AuthUser) -> Json<Message> {
    Json(Message {
        message: "Hello, World!",
    })
}

/// Print an access token for the configured key, valid for a week.
fn print_token(auth: &Auth) -> Result<(), Box<dyn std::error::Error>> {
    let mut claims = auth.claims_for("bench");
    claims.exp = claims.iat + 7 * 24 * 3600;
    println!("{}", auth.issue(claims)?);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let auth = Auth::from_config(&config).await?;
    if std::env::args().nth(1).as_deref() == Some("token") {
        return print_token(&auth);
    }
    if std::env::args().nth(1).as_deref() == Some("create-views") {
        let database = Db::connect(&config.database).await?;
        blog::create_views(&database).await?;
        println!("created {}", blog::table_view().name());
        return Ok(());
    }
    chopin_core::telemetry::init(&config.log);
    let stack = std::env::var("CHOPIN_BENCH_STACK").unwrap_or_else(|_| "full".into());
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3003".into());
    let mut router = Router::new()
        .route("/json", get(json))
        .route("/plaintext", get(plaintext))
        // The auth handle only where it is used: `/json` and `/plaintext` measure the default
        // layer stack alone, and `/json_auth` what requiring `AuthUser` adds on top.
        .route("/json_auth", get(json_auth).layer(auth.extension()));
    let database = match std::env::var_os("DATABASE_URL") {
        Some(_) => Some(Db::connect(&config.database).await?),
        None => None,
    };
    if let Some(database) = &database {
        router = router
            .merge(db::router(database.clone()))
            .merge(blog::router(database.clone()));
    }
    router = router.merge(cached::router(database.as_ref()).await?);
    let mut app = App::new(config).router(router);
    if let Some(database) = &database {
        app = app.database(database);
    }
    match stack.as_str() {
        "full" => {}
        "nometrics" => app.layers_mut().metrics = false,
        "minimal" => app = app.layers(Layers::minimal()),
        other => {
            return Err(format!(
                "CHOPIN_BENCH_STACK must be full, nometrics or minimal, got {other:?}"
            )
            .into());
        }
    }
    let addr: std::net::SocketAddr = bind
        .parse()
        .map_err(|_| format!("BIND must be an address such as 127.0.0.1:3003, got {bind:?}"))?;
    // Binds `addr` itself: one SO_REUSEPORT socket per worker when CHOPIN_WORKERS is set.
    app.serve_at(addr, shutdown_signal()).await?;
    Ok(())
}
