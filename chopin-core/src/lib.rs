//! # Chopin
//!
//! An embeddable, batteries-included framework for JSON REST APIs on
//! [axum](https://docs.rs/axum) and tokio.
//!
//! Every piece is an ordinary axum / tower component — extractors implement
//! `FromRequest(Parts)`, responders implement `IntoResponse`, middleware are `tower::Layer`s —
//! so an existing axum service can adopt one piece at a time, or start from [`App`], which
//! wires them together:
//!
//! ```
//! use axum::{Router, routing::get};
//! use chopin_core::prelude::*;
//!
//! #[derive(serde::Serialize)]
//! struct Greeting { message: String }
//!
//! async fn hello(page: Pagination) -> ApiResponse<Vec<Greeting>> {
//!     let items = vec![Greeting { message: "Hello, World!".into() }];
//!     ApiResponse::paginated(items, &page, Some(1))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_env()?;
//! let router = App::new(config)
//!     .router(Router::new().route("/hello", get(hello)))
//!     .into_router();
//! # let _ = router; Ok(()) }
//! ```
//!
//! * [`error`]: the one error type [`ChopinError`] and its JSON envelope;
//! * [`response`]: the success envelope [`ApiResponse`];
//! * [`extractors`]: [`Json`](extractors::Json), [`ValidJson`](extractors::ValidJson),
//!   [`Pagination`](extractors::Pagination);
//! * [`json`]: the one JSON engine (sonic-rs);
//! * [`config`]: typed configuration from the environment;
//! * [`layers`]: request id, tracing, panics, compression, CORS, timeout, body limit;
//! * [`db`]: the database pool (sea-orm over sqlx; SQLite by default, PostgreSQL);
//! * [`cache`]: [`Cache`](cache::Cache) — in process (moka), in Redis, or both with
//!   cross-instance invalidation — and HTTP caching;
//! * [`auth`] (feature `auth`): JWT access tokens and the `AuthUser` extractor, argon2id
//!   passwords, refresh tokens with rotation, revocation, roles, mountable auth routes;
//! * [`rate_limit`]: per-client GCRA rate limiting, in process or shared through Redis;
//! * [`signing`]: HMAC-signed opaque tokens (cursors and the like);
//! * [`sse`]: server-sent events with JSON data from the same engine;
//! * [`health`], [`openapi`]: health endpoints and the OpenAPI spec / docs UI;
//! * `metrics` (feature `metrics`): Prometheus metrics and the `/metrics` endpoint.
//!
//! Chopin sets no global allocator: that choice belongs to the application.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, see Cargo.toml) labels every feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

// Compile the README's examples as doc tests so they never drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

// The auth guide's examples are compiled too.
#[cfg(all(doctest, feature = "auth", feature = "sqlite"))]
#[doc = include_str!("../../docs/auth.md")]
struct AuthDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/security.md")]
struct SecurityDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/conventions.md")]
struct ConventionsDocDoctests;

#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../../docs/streaming.md")]
struct StreamingDocDoctests;

#[cfg(all(doctest, feature = "metrics"))]
#[doc = include_str!("../../docs/observability.md")]
struct ObservabilityDocDoctests;

pub mod app;
#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
pub mod auth;
#[cfg(any(chopin_db, feature = "redis"))]
mod breaker;
pub mod cache;
pub mod config;
pub mod context;
#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod db;
pub mod error;
pub mod extractors;
pub mod health;
pub mod json;
pub mod layers;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod middleware;
pub mod openapi;
pub mod passthrough;
pub mod rate_limit;
#[cfg(feature = "redis")]
mod redis_conn;
pub mod response;
pub mod server;
pub mod signing;
pub mod sse;
pub mod telemetry;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use app::{App, ServeError};
pub use config::{Config, Environment};
pub use context::{RequestId, TraceContext};
pub use error::{ChopinError, ErrorCode, FieldError};
pub use response::{ApiResponse, PageMeta};

/// Re-exports of the crates Chopin's public API is built on, so applications use the same
/// versions.
pub mod reexports {
    pub use axum;
    pub use sea_orm;
    pub use utoipa;
    pub use validator;
}

/// The names most handlers need: `use chopin_core::prelude::*;`.
pub mod prelude {
    pub use crate::app::App;
    #[cfg(feature = "auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
    pub use crate::auth::{Auth, AuthUser, Claims, RequirePermission, RequireRole};
    pub use crate::cache::Cache;
    pub use crate::config::{Config, Environment};
    #[cfg(chopin_db)]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    pub use crate::db::Db;
    pub use crate::error::{ChopinError, ErrorCode, FieldError};
    pub use crate::extractors::{Json, Pagination, ValidJson};
    pub use crate::layers::Layers;
    pub use crate::response::{ApiResponse, PageMeta};
}
