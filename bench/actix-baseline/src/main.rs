//! Bare actix-web 4 baseline server for the Chopin benchmark harness.
//!
//! Serves exactly two routes with no middleware:
//!
//! * `GET /json` — `{"message":"Hello, World!"}`, serialised per request with
//!   `serde_json` through [`web::Json`].
//! * `GET /plaintext` — `Hello, World!` as `text/plain; charset=utf-8`.
//!
//! The listen address comes from the `BIND` environment variable
//! (default `127.0.0.1:3002`). actix-web starts one worker per available
//! CPU; under the harness's `taskset -c 0` that is a single worker.

#![warn(clippy::missing_docs_in_private_items)]

use actix_web::{App, HttpResponse, HttpServer, Responder, get, web};
use serde::Serialize;

/// Default listen address when `BIND` is not set.
const DEFAULT_BIND: &str = "127.0.0.1:3002";

/// JSON body returned by `GET /json`.
#[derive(Serialize)]
struct Message {
    /// Always `"Hello, World!"`.
    message: &'static str,
}

/// `GET /json`: a freshly serialised [`Message`].
#[get("/json")]
async fn json() -> web::Json<Message> {
    web::Json(Message {
        message: "Hello, World!",
    })
}

/// `GET /plaintext`: a static `text/plain` body.
#[get("/plaintext")]
async fn plaintext() -> impl Responder {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Hello, World!")
}

/// Binds to `BIND` (or [`DEFAULT_BIND`]) and serves until killed.
#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("BIND").unwrap_or_else(|_| DEFAULT_BIND.to_owned());
    let server = HttpServer::new(|| App::new().service(json).service(plaintext)).bind(&bind)?;
    for addr in server.addrs() {
        eprintln!("actix-baseline listening on http://{addr}");
    }
    server.run().await
}
