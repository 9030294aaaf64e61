//! The epoll engine published on crates.io as `chopin-core` 0.5 (a different project that
//! shares our crate name; its macros need it under its own name, `chopin_core`, which is
//! why this crate is a workspace of its own), serving the two TechEmpower routes
//! exactly as its own `examples/tfb.rs` does:
//!
//! * `GET /json` — `{"message":"Hello, World!"}`, serialised per request (its `KJson` derive);
//! * `GET /plaintext` — `Hello, World!` as `text/plain`.
//!
//! The listen address comes from `BIND` (default `127.0.0.1:3004`). The engine starts one
//! worker thread per CPU in the process's affinity mask, each with its own `SO_REUSEPORT`
//! listener and epoll loop, so `taskset -c 0` gives it exactly one worker.

use chopin_core::{Chopin, Context, KJson, Response, get};

/// Default listen address when `BIND` is not set.
const DEFAULT_BIND: &str = "127.0.0.1:3004";

/// JSON body returned by `GET /json`.
#[derive(KJson)]
struct Message {
    /// Always `"Hello, World!"`.
    message: &'static str,
}

/// `GET /json`: a freshly serialised [`Message`].
#[get("/json")]
fn json(_ctx: Context) -> Response {
    let msg = Message {
        message: "Hello, World!",
    };
    Response::json(&msg)
}

/// `GET /plaintext`: a static `text/plain` body.
#[get("/plaintext")]
fn plaintext(_ctx: Context) -> Response {
    Response::text_static(b"Hello, World!")
}

fn main() {
    let bind = std::env::var("BIND").unwrap_or_else(|_| DEFAULT_BIND.to_owned());
    eprintln!("epoll-baseline listening on http://{bind}");
    if let Err(error) = Chopin::new().mount_all_routes().serve(&bind) {
        eprintln!("epoll-baseline: {error}");
        std::process::exit(1);
    }
}
