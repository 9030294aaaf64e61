//! # Chopin blog
//!
//! Chopin's main example: a small JSON API of posts and comments, on SQLite by default
//! (`DATABASE_URL` unset → `sqlite://chopin.db`, created on first run) or PostgreSQL
//! (`DATABASE_URL=postgres://…`).
//!
//! | method | path | |
//! |---|---|---|
//! | `GET` | `/api/posts` | newest first; `?limit&offset` or `?page&per_page`, or keyset `?cursor=` (`meta.next_cursor`); `?published=true\|false` |
//! | `POST` | `/api/posts` | signed in; 201; 409 on a duplicate slug; 422 on invalid fields |
//! | `GET` | `/api/posts/stream` | server-sent events: each post created from now on; `?published=` |
//! | `GET` | `/api/posts/{id}` | 404 when missing |
//! | `PUT` | `/api/posts/{id}` | full replacement; the post's author only (403 otherwise) |
//! | `DELETE` | `/api/posts/{id}` | 204; deletes the post's comments too; the author or an admin |
//! | `POST` | `/api/auth/signup`, `/login`, `/refresh`, `/logout`, … | Chopin's auth module ([`AuthModule`]) |
//! | `GET` | `/api/posts/{id}/comments` | oldest first, paginated (offset or `?cursor=`) |
//! | `POST` | `/api/posts/{id}/comments` | 201 |
//!
//! Drafts (`published: false`) are visible to their author and to admins only: every read
//! route takes an optional access token and hides other readers' drafts (404 by id; see
//! [`api::visibility`]).
//!
//! The OpenAPI spec is served at `/openapi.json` and the docs UI at `/docs` (outside
//! production); `/health/live` and `/health/ready` (which pings the database and the cache)
//! are built in.
//!
//! The hottest read, `GET /api/posts/{id}`, goes through Chopin's [`Cache`] (in process by
//! default; `CHOPIN_CACHE=redis|tiered` shares it between instances) with single-flight
//! loading; updates and deletes invalidate the entry before they answer.
//!
//! Accounts, tokens and roles come from Chopin's auth module, mounted at `/api/auth`. An admin
//! is an account with the `admin` role: grant it with `cargo run -p blog -- grant-admin
//! <email>` (see [`grant_role`]). Verification and password-reset mails go through the SMTP
//! server of `CHOPIN_SMTP_URL` (with `CHOPIN_SMTP_FROM`, and links to `CHOPIN_PUBLIC_URL`);
//! without it they are logged in development, and production refuses to start.
//!
//! The library builds the application, so that `main` and the tests run the same code:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = chopin_core::Config::from_env()?;
//! blog::app(config).await?.serve().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use chopin_core::auth::{Auth, AuthError, AuthModule, AuthStore, mailer_from_config};
use chopin_core::cache::{Cache, CacheError};
use chopin_core::db::{Db, DbError};
use chopin_core::openapi::OpenApiRouter;
use chopin_core::{App, Config};
use sea_orm_migration::MigratorTrait;

pub mod api;
pub mod entity;
pub mod extract;
pub mod migration;

/// The role that may delete any post and read every draft.
pub const ADMIN: &str = "admin";

/// State shared by every handler (through axum's `State` extractor).
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database pool.
    pub db: Db,
    /// The cache of post views (see [`api::posts`]).
    pub cache: Cache,
    /// Access tokens: issued by the auth module, checked by `AuthUser`.
    pub auth: Auth,
    /// Posts just created, for the open `GET /api/posts/stream` responses (see
    /// [`api::stream`]).
    pub new_posts: tokio::sync::broadcast::Sender<api::posts::PostView>,
}

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be reached or is misconfigured.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sea_orm::DbErr),
    /// The cache backend could not be set up.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Auth is misconfigured (for example no `CHOPIN_JWT_SECRET` in production).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The auth module could not start.
    #[error("auth module: {0}")]
    AuthModule(#[from] chopin_core::ChopinError),
}

/// Connect the database named by `config.database`, apply pending migrations, and assemble the
/// application: the `/api` routes and their OpenAPI spec, database readiness check, and
/// Chopin's default layers.
pub async fn app(config: Config) -> Result<App<AppState>, StartError> {
    let db = Db::connect(&config.database).await?;
    // Instances starting together take turns (a PostgreSQL advisory lock; no-op on SQLite).
    let lock = db.migration_lock("blog").await?;
    migration::Migrator::up(db.conn(), None).await?;
    lock.release().await?;
    let cache = Cache::from_config(&config.cache).await?;
    let auth = Auth::from_config(&config).await?;
    // Mails through CHOPIN_SMTP_URL when it is set; otherwise the log in development, memory
    // in tests, and a start-up error in production.
    let mailer = mailer_from_config(&config)?;
    let accounts =
        AuthModule::with_mailer(auth.clone(), AuthStore::new(&db).await?, mailer).await?;
    let state = AppState {
        db: db.clone(),
        cache: cache.clone(),
        auth: auth.clone(),
        new_posts: tokio::sync::broadcast::channel(api::stream::FEED_CAPACITY).0,
    };
    Ok(App::with_state(config, state)
        .database(&db)
        .cache(&cache)
        .auth(&auth)
        // Queued reset and verification mails go out at graceful shutdown.
        .auth_module(&accounts)
        .api(OpenApiRouter::new().nest("/api/auth", accounts.api_router()))
        .api(api::router())
        .openapi_info("Chopin blog", env!("CARGO_PKG_VERSION")))
}

/// [`app`], finished into a router: for tests and for embedding in a larger axum service.
pub async fn build_app(config: Config) -> Result<axum::Router, StartError> {
    Ok(app(config).await?.into_router())
}

/// Give the account with `email` the role `role` (it reaches the account's tokens at its next
/// login or refresh). 404 when there is no such account.
pub async fn grant_role(config: &Config, email: &str, role: &str) -> Result<(), StartError> {
    let db = Db::connect(&config.database).await?;
    migration::Migrator::up(db.conn(), None).await?;
    let store = AuthStore::new(&db).await?;
    let Some(id) = store.user_id_by_email(email).await? else {
        return Err(chopin_core::ChopinError::NotFound(format!("no account {email}")).into());
    };
    let mut roles = store.user(id).await?.map(|u| u.roles).unwrap_or_default();
    if !roles.iter().any(|r| r == role) {
        roles.push(role.to_string());
    }
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    store.set_roles(id, &roles).await?;
    Ok(())
}

/// The SQL that creates the `tv_post` table view on `backend` (`postgres` or `sqlite`) with
/// `freshness` (`row`, the default; `statement`; `write-path`), one statement per line group,
/// each ending with `;`: what migration `m20250101_000004_create_tv_post` runs, for reading
/// and for `bench/tv-writes.sh`.
pub fn table_view_sql(backend: &str, freshness: Option<&str>) -> Result<String, String> {
    use chopin_core::passthrough::Freshness;
    let backend = match backend {
        "postgres" => sea_orm::DbBackend::Postgres,
        "sqlite" => sea_orm::DbBackend::Sqlite,
        other => return Err(format!("unknown backend {other:?} (postgres, sqlite)")),
    };
    let freshness = match freshness.unwrap_or("row") {
        "statement" => Freshness::StatementTriggers,
        "row" => Freshness::RowTriggers,
        "write-path" => Freshness::WritePath,
        other => {
            return Err(format!(
                "unknown freshness {other:?} (statement, row, write-path)"
            ));
        }
    };
    let statements = api::passthrough::post_table_view()
        .freshness(freshness)
        .create_sql(backend)
        .map_err(|e| e.to_string())?;
    Ok(statements.iter().map(|s| format!("{s};\n")).collect())
}
