//! Bare axum 0.8 baseline server for the Chopin benchmark harness.
//!
//! Serves exactly two routes with no middleware layers:
//!
//! * `GET /json` — `{"message":"Hello, World!"}`, serialised per request with
//!   `serde_json` through [`axum::Json`].
//! * `GET /plaintext` — `Hello, World!` as `text/plain; charset=utf-8`.
//!
//! The listen address comes from the `BIND` environment variable
//! (default `127.0.0.1:3001`). The server runs on tokio's multi-thread
//! runtime; the harness pins the whole process to one CPU with `taskset`.

#![warn(clippy::missing_docs_in_private_items)]

use axum::{Json, Router, routing::get};
use serde::Serialize;

/// Default listen address when `BIND` is not set.
const DEFAULT_BIND: &str = "127.0.0.1:3001";

/// JSON body returned by `GET /json`.
#[derive(Serialize)]
struct Message {
    /// Always `"Hello, World!"`.
    message: &'static str,
}

/// `GET /json`: a freshly serialised [`Message`].
async fn json() -> Json<Message> {
    Json(Message {
        message: "Hello, World!",
    })
}

/// `GET /plaintext`: a static `text/plain` body.
async fn plaintext() -> &'static str {
    "Hello, World!"
}

/// Builds the two-route router with no extra layers.
fn app() -> Router {
    Router::new()
        .route("/json", get(json))
        .route("/plaintext", get(plaintext))
}

/// Binds to `BIND` (or [`DEFAULT_BIND`]) and serves until killed.
#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("BIND").unwrap_or_else(|_| DEFAULT_BIND.to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    eprintln!(
        "axum-baseline listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app()).await
}
