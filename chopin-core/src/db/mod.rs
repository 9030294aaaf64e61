//! The database pool: [`Db`].
//!
//! A [`Db`] is a sea-orm [`DatabaseConnection`] built on a sqlx pool that Chopin configures
//! itself, so that pool settings, SQLite pragmas and pool statistics are under the
//! application's control:
//!
//! * `DATABASE_URL` chooses the backend: `sqlite://chopin.db` (the default, file created if
//!   missing; needs the `sqlite` feature) or `postgres://…` (needs the `postgres` feature).
//! * Pool settings come from the URL's query string (`max_connections`, `min_connections`,
//!   `acquire_timeout`, `idle_timeout`, `max_lifetime`; removed before the driver sees the
//!   URL), else from `DATABASE_*` variables, else from defaults sized from the CPU count.
//! * SQLite connections use WAL journaling, `synchronous=NORMAL`, a 5 s `busy_timeout` and
//!   enforced foreign keys.
//! * When every connection is busy, a query waits up to `acquire_timeout` and then fails with
//!   a [`ChopinError::ServiceUnavailable`](crate::ChopinError) (503 with `Retry-After`).
//! * A circuit breaker ([`BreakerConfig`]) answers that 503 at once while the database is
//!   down: connection failures (refused, reset, DNS, I/O, a connection lost mid-query) or a
//!   failed background probe open it, and the first successful probe (`SELECT 1`, every
//!   `CHOPIN_DB_PROBE_INTERVAL`) closes it. Every query through `Db` — sea-orm's traits,
//!   [`Db::ping`] and the pass-through responders — checks it; [`Db::is_available`] reads it.
//! * [`Db::migration_lock`] serialises migrations of several instances starting together
//!   (a PostgreSQL advisory lock).
//! * A statement that runs longer than `CHOPIN_DB_SLOW_QUERY` (default 1 s, `off` for none) is
//!   logged by sqlx at `WARN` (target `sqlx::query`, inside the current span, so with the
//!   request id). With the `metrics` feature the pool reports its connections, errors and
//!   slow statements under the name [`Db::metrics_name`] gives (`main` by default).

mod breaker;
#[cfg(feature = "metrics")]
mod metrics;
mod migrate;

pub use self::migrate::MigrationLock;
#[cfg(feature = "auth")]
pub(crate) use self::migrate::lock as migrate_lock;

use std::str::FromStr;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use sea_orm::prelude::async_trait::async_trait;
use sea_orm::sqlx;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseExecutor, DatabaseTransaction,
    DbBackend, DbErr, ExecResult, IntoDatabaseExecutor, IsolationLevel, QueryResult, Statement,
    StreamTrait, TransactionError, TransactionOptions, TransactionTrait,
};

use self::breaker::{Breaker, ProbeTarget};
#[cfg(doc)]
use crate::config::BreakerConfig;
use crate::config::{DatabaseConfig, parse_duration, redact_url};

/// Why the database could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// `DATABASE_URL` or one of its pool parameters is invalid.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// The URL names a backend this build does not include.
    #[error("`{scheme}` databases need chopin-core's `{feature}` cargo feature")]
    BackendDisabled {
        /// URL scheme.
        scheme: String,
        /// Feature to enable.
        feature: &'static str,
    },
    /// Connecting failed.
    #[error("could not connect to {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// Driver error.
        #[source]
        source: sqlx::Error,
    },
}

/// Resolved pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Largest number of open connections.
    pub max_connections: u32,
    /// Connections kept open even when idle.
    pub min_connections: u32,
    /// How long a query waits for a free connection.
    pub acquire_timeout: Duration,
    /// Idle connections above the minimum are closed after this.
    pub idle_timeout: Option<Duration>,
    /// Connections are recycled after this.
    pub max_lifetime: Option<Duration>,
}

impl PoolSettings {
    /// Defaults sized from the CPU count: `max_connections = 2 × CPUs + 4`, one connection
    /// kept warm, 5 s acquire timeout, 10 min idle timeout, 30 min lifetime.
    pub fn defaults() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(2);
        Self {
            max_connections: cpus * 2 + 4,
            min_connections: 1,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
        }
    }
}

/// Pool statistics, as reported by [`Db::get_pool_status`].
///
/// `size == idle + active` and `size <= max` hold for every snapshot; the numbers are read
/// without locking, so a snapshot may be a moment old by the time it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PoolStatus {
    /// Open connections (idle + active).
    pub size: u32,
    /// Open connections waiting for work.
    pub idle: u32,
    /// Connections currently running queries or held by transactions.
    pub active: u32,
    /// The pool's maximum (`max_connections`).
    pub max: u32,
    /// The same number as [`active`](Self::active), under its former name.
    #[deprecated(note = "renamed to `active`")]
    #[serde(skip)]
    #[schema(ignore)]
    pub in_use: u32,
}

#[derive(Debug, Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

impl Pool {
    /// Open and idle connections (idle never above open).
    fn counts(&self) -> (u32, u32) {
        let (size, idle) = match self {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => (p.size(), p.num_idle()),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => (p.size(), p.num_idle()),
        };
        // `size` and `num_idle` are read separately: never report more idle than open.
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        (size, idle)
    }
}

/// The stream limits of a pool ([`StreamConfig`](crate::config::StreamConfig), resolved).
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    /// How long one chunk may wait for the client.
    pub(crate) send_timeout: Duration,
    /// The longest a stream may run.
    pub(crate) deadline: Option<Duration>,
    /// One permit per stream that may be open at once.
    pub(crate) permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// The cap.
    pub(crate) max: u32,
    /// The pool's `statement_timeout` (`CHOPIN_DB_STATEMENT_TIMEOUT`), which a stream
    /// replaces by its own while it runs.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) statement_timeout: Option<Duration>,
}

impl Streams {
    fn new(config: &DatabaseConfig, settings: &PoolSettings) -> Self {
        let max = config.streams.resolve_max(settings.max_connections);
        Streams {
            send_timeout: config.streams.send_timeout,
            deadline: config.streams.deadline,
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(max as usize)),
            max,
            statement_timeout: config.statement_timeout,
        }
    }
}

/// The application's database: a sea-orm connection over a configured sqlx pool. Cheap to
/// clone (the pool is shared).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use chopin_core::{Config, db::Db};
/// use sea_orm::ConnectionTrait;
///
/// let config = Config::from_env()?;
/// let db = Db::connect(&config.database).await?;
/// db.execute_unprepared("SELECT 1").await?;
/// let pool = db.get_pool_status();
/// println!("active: {}, idle: {}, max: {}", pool.active, pool.idle, pool.max);
/// # Ok(()) }
/// ```
///
/// `&Db` goes wherever sea-orm expects a connection: `Db` implements
/// [`ConnectionTrait`], [`TransactionTrait`] and [`StreamTrait`] by handing each call to the
/// inner [`DatabaseConnection`], so entity queries take `&db` directly:
///
/// ```
/// # use sea_orm::entity::prelude::*;
/// # mod item {
/// #     use sea_orm::entity::prelude::*;
/// #     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
/// #     #[sea_orm(table_name = "items")]
/// #     pub struct Model {
/// #         #[sea_orm(primary_key)]
/// #         pub id: i32,
/// #         pub name: String,
/// #     }
/// #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #     pub enum Relation {}
/// #     impl ActiveModelBehavior for ActiveModel {}
/// # }
/// # use item::Entity as Item;
/// use chopin_core::db::Db;
/// use sea_orm::{ConnectionTrait, EntityTrait, TransactionTrait};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let db = Db::connect(&chopin_core::config::DatabaseConfig::new("sqlite::memory:")).await?;
/// db.execute_unprepared("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
///     .await?;
/// let items = Item::find().all(&db).await?;
/// assert!(items.is_empty());
/// assert!(Item::find_by_id(1).one(&db).await?.is_none());
/// Item::delete_many().exec(&db).await?;
/// let txn = db.begin().await?;
/// txn.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Db {
    conn: DatabaseConnection,
    pool: Pool,
    settings: PoolSettings,
    breaker: Breaker,
    /// Limits of streamed responses, and the permits of the stream cap.
    streams: Streams,
    /// What the metrics read at each scrape (held weakly there).
    #[cfg(feature = "metrics")]
    watched: std::sync::Arc<metrics::Watched>,
    /// `CHOPIN_DB_SLOW_QUERY`, for the statements timed here.
    #[cfg(feature = "metrics")]
    slow_query: Option<Duration>,
}

impl std::ops::Deref for Db {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        &self.conn
    }
}

impl AsRef<DatabaseConnection> for Db {
    fn as_ref(&self) -> &DatabaseConnection {
        &self.conn
    }
}

/// Split the pool parameters out of a database URL. Returns the URL the driver should see and
/// the settings, with `config`'s values as fallbacks.
pub fn split_pool_settings(config: &DatabaseConfig) -> Result<(String, PoolSettings), DbError> {
    let defaults = PoolSettings::defaults();
    let mut settings = PoolSettings {
        max_connections: config.max_connections.unwrap_or(defaults.max_connections),
        min_connections: config.min_connections.unwrap_or(defaults.min_connections),
        acquire_timeout: config.acquire_timeout.unwrap_or(defaults.acquire_timeout),
        idle_timeout: config.idle_timeout.or(defaults.idle_timeout),
        max_lifetime: config.max_lifetime.or(defaults.max_lifetime),
    };
    let (base, query) = match config.url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (config.url.as_str(), ""),
    };
    let mut kept = url::form_urlencoded::Serializer::new(String::new());
    let mut kept_any = false;
    let bad = |key: &str, value: &str, what: &str| {
        DbError::Config(format!("DATABASE_URL parameter {key}={value:?} {what}"))
    };
    let mut min_from_url = false;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "max_connections" => {
                settings.max_connections = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(&key, &value, "must be a positive whole number"))?;
                if !min_from_url && config.min_connections.is_none() {
                    settings.min_connections =
                        settings.min_connections.min(settings.max_connections);
                }
            }
            "min_connections" => {
                settings.min_connections = value
                    .parse::<u32>()
                    .map_err(|_| bad(&key, &value, "must be a whole number"))?;
                min_from_url = true;
            }
            "acquire_timeout" => {
                settings.acquire_timeout =
                    parse_duration(&value).map_err(|e| bad(&key, &value, &e))?;
            }
            "idle_timeout" => {
                settings.idle_timeout =
                    Some(parse_duration(&value).map_err(|e| bad(&key, &value, &e))?);
            }
            "max_lifetime" => {
                settings.max_lifetime =
                    Some(parse_duration(&value).map_err(|e| bad(&key, &value, &e))?);
            }
            _ => {
                kept.append_pair(&key, &value);
                kept_any = true;
            }
        }
    }
    if settings.min_connections > settings.max_connections {
        return Err(DbError::Config(format!(
            "min_connections ({}) exceeds max_connections ({})",
            settings.min_connections, settings.max_connections
        )));
    }
    let url = if kept_any {
        format!("{base}?{}", kept.finish())
    } else {
        base.to_string()
    };
    Ok((url, settings))
}

/// `true` for a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn is_scheme(scheme: &str) -> bool {
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

impl Db {
    /// Connect using `config` (normally [`Config::database`](crate::Config)). Fails if the
    /// database cannot be reached, so a misconfigured application stops at start-up.
    pub async fn connect(config: &DatabaseConfig) -> Result<Db, DbError> {
        #[cfg_attr(not(feature = "sqlite"), allow(unused_mut))]
        let (url, mut settings) = split_pool_settings(config)?;
        // Empty when there is no `:` at all: the value is then no URL, and not shown.
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .unwrap_or_default();
        let connect_err = |source| DbError::Connect {
            url: redact_url(&url),
            source,
        };
        match scheme.as_str() {
            "sqlite" => {
                #[cfg(feature = "sqlite")]
                {
                    use sqlx::sqlite::{
                        SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous,
                    };
                    let options = SqliteConnectOptions::from_str(&url)
                        .map_err(|e| DbError::Config(e.to_string()))?
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(5))
                        .foreign_keys(true);
                    let options = log_slow(options, config.slow_query);
                    if url.contains(":memory:") || url.contains("mode=memory") {
                        // Each connection to an in-memory database is a separate database:
                        // keep exactly one, forever.
                        settings.max_connections = 1;
                        settings.min_connections = 1;
                        settings.idle_timeout = None;
                        settings.max_lifetime = None;
                    }
                    let pool = pool_options(&settings)
                        .connect_with(options)
                        .await
                        .map_err(connect_err)?;
                    Ok(Db::assemble(
                        sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone()),
                        Breaker::new(
                            config.breaker,
                            settings.acquire_timeout,
                            ProbeTarget::Sqlite(pool.clone()),
                        ),
                        Pool::Sqlite(pool),
                        settings,
                        config,
                    ))
                }
                #[cfg(not(feature = "sqlite"))]
                Err(DbError::BackendDisabled {
                    scheme,
                    feature: "sqlite",
                })
            }
            "postgres" | "postgresql" => {
                #[cfg(feature = "postgres")]
                {
                    let options = sqlx::postgres::PgConnectOptions::from_str(&url)
                        .map_err(|e| DbError::Config(e.to_string()))?;
                    let options = log_slow(options, config.slow_query);
                    let options = with_statement_timeout(options, config.statement_timeout);
                    let pool = drain_on_release(pool_options(&settings), config.statement_timeout)
                        .connect_with(options)
                        .await
                        .map_err(connect_err)?;
                    Ok(Db::assemble(
                        sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone()),
                        Breaker::new(
                            config.breaker,
                            settings.acquire_timeout,
                            ProbeTarget::Postgres(pool.clone()),
                        ),
                        Pool::Postgres(pool),
                        settings,
                        config,
                    ))
                }
                #[cfg(not(feature = "postgres"))]
                Err(DbError::BackendDisabled {
                    scheme,
                    feature: "postgres",
                })
            }
            // Only a real scheme is named: a value without `scheme:` (say a bare
            // `user:password@host`) would otherwise be echoed up to its first colon.
            other if is_scheme(other) => Err(DbError::Config(format!(
                "unsupported database URL scheme {other:?} (expected sqlite or postgres)"
            ))),
            _ => Err(DbError::Config(
                "DATABASE_URL is not a URL (expected sqlite://… or postgres://…)".into(),
            )),
        }
    }

    /// The `Db` around a connected pool; with the `metrics` feature, its pool is watched
    /// under the name `main` and its statements are timed.
    #[cfg_attr(not(feature = "metrics"), allow(unused_mut))]
    fn assemble(
        mut conn: DatabaseConnection,
        breaker: Breaker,
        pool: Pool,
        settings: PoolSettings,
        config: &DatabaseConfig,
    ) -> Db {
        #[cfg(feature = "metrics")]
        {
            let threshold = config.slow_query;
            conn.set_metric_callback(move |info| metrics::statement(threshold, info.elapsed));
            let watched = std::sync::Arc::new(metrics::Watched {
                pool: pool.clone(),
                max: settings.max_connections,
                breaker: breaker.clone(),
            });
            let weak = std::sync::Arc::downgrade(&watched);
            crate::metrics::global()
                .db
                .watch_pool(metrics::DEFAULT_POOL_NAME, weak);
            Db {
                streams: Streams::new(config, &settings),
                conn,
                pool,
                settings,
                breaker,
                watched,
                slow_query: threshold,
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            Db {
                streams: Streams::new(config, &settings),
                conn,
                pool,
                settings,
                breaker,
            }
        }
    }

    /// Report this pool's metrics (feature `metrics`) under `pool="<name>"` instead of
    /// `main`: for an application with several databases (a primary and a replica, say).
    /// Clones share the name; pools given the same name are reported as one (their
    /// connections added up), which is what a pool per worker wants. Without the `metrics`
    /// feature it changes nothing.
    ///
    /// ```no_run
    /// # async fn run(config: chopin_core::config::DatabaseConfig) -> Result<(), Box<dyn std::error::Error>> {
    /// let replica = chopin_core::db::Db::connect(&config).await?.metrics_name("replica");
    /// # let _ = replica; Ok(()) }
    /// ```
    pub fn metrics_name(self, name: &str) -> Db {
        #[cfg(feature = "metrics")]
        {
            let weak = std::sync::Arc::downgrade(&self.watched);
            crate::metrics::global().db.watch_pool(name, weak);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = name;
        self
    }

    /// The sea-orm connection, for queries.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The resolved pool settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Current pool statistics: open, idle and active connections and the maximum.
    ///
    /// ```no_run
    /// # async fn run(db: chopin_core::db::Db) {
    /// let pool_status = db.get_pool_status();
    /// println!(
    ///     "Active: {}, Idle: {}, Max: {}",
    ///     pool_status.active, pool_status.idle, pool_status.max
    /// );
    /// # }
    /// ```
    pub fn get_pool_status(&self) -> PoolStatus {
        let (size, idle) = self.pool.counts();
        let active = size - idle;
        #[allow(deprecated)]
        PoolStatus {
            size,
            idle,
            active,
            max: self.settings.max_connections,
            in_use: active,
        }
    }

    /// Current pool statistics, under the former name of [`Db::get_pool_status`].
    #[deprecated(note = "renamed to `get_pool_status()`")]
    pub fn status(&self) -> PoolStatus {
        self.get_pool_status()
    }

    /// The database backend (SQLite or PostgreSQL) of this pool.
    ///
    /// An inherent method, so `db.get_database_backend()` is never ambiguous between
    /// [`ConnectionTrait`] and [`StreamTrait`], which both declare it.
    pub fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// The underlying sqlx SQLite pool, if this is a SQLite database.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.pool {
            Pool::Sqlite(p) => Some(p),
            #[cfg(feature = "postgres")]
            _ => None,
        }
    }

    /// The underlying sqlx PostgreSQL pool, if this is a PostgreSQL database.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            #[cfg(feature = "sqlite")]
            _ => None,
        }
    }

    /// Check that a connection can be acquired and answers a trivial query. Fails at once
    /// while the circuit breaker is open (this is what `/health/ready`'s `database` check
    /// runs).
    pub async fn ping(&self) -> Result<(), sea_orm::DbErr> {
        self.guarded(self.conn.ping()).await
    }

    /// `false` while the circuit breaker is open: the database was found unreachable and
    /// queries through this `Db` answer 503 at once until a background probe succeeds.
    /// Always `true` when the breaker is switched off (`CHOPIN_DB_BREAKER=false`).
    pub fn is_available(&self) -> bool {
        self.breaker.is_closed()
    }

    /// For the pass-through path: the stream limits.
    pub(crate) fn streams(&self) -> &Streams {
        &self.streams
    }

    /// The cap on streamed responses open at once on this pool (`CHOPIN_DB_MAX_STREAMS`),
    /// and how many are open now.
    pub fn stream_slots(&self) -> (u32, u32) {
        let free = u32::try_from(self.streams.permits.available_permits()).unwrap_or(u32::MAX);
        (self.streams.max, self.streams.max.saturating_sub(free))
    }

    /// For the pass-through path: a 503 at once while the breaker is open.
    pub(crate) fn breaker_check(&self) -> Result<(), crate::error::ChopinError> {
        self.breaker.check()
    }

    /// For the pass-through path: report a query's sqlx error to the breaker (and count it).
    pub(crate) fn observe_error(&self, err: &sqlx::Error) {
        self.breaker.observe_sqlx(err);
        #[cfg(feature = "metrics")]
        metrics::sqlx_error(err);
    }

    /// For the pass-through path: a connection from `pool` (this `Db`'s), the wait timed
    /// (feature `metrics`) and a failure reported like a query's.
    pub(crate) async fn acquire<DB: sqlx::Database>(
        &self,
        pool: &sqlx::Pool<DB>,
    ) -> Result<sqlx::pool::PoolConnection<DB>, crate::error::ChopinError> {
        #[cfg(feature = "metrics")]
        let start = std::time::Instant::now();
        match pool.acquire().await {
            Ok(conn) => {
                #[cfg(feature = "metrics")]
                metrics::acquired(start.elapsed());
                Ok(conn)
            }
            Err(err) => {
                self.observe_error(&err);
                Err(err.into())
            }
        }
    }

    /// For the pass-through path: a statement that started at `start` has finished; count
    /// it if it was slow (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) fn statement_done(&self, start: std::time::Instant) {
        self.statement_took(start.elapsed());
    }

    /// A statement run by Chopin itself took `elapsed`: counted if slow.
    #[cfg(feature = "metrics")]
    pub(crate) fn statement_took(&self, elapsed: std::time::Duration) {
        metrics::statement(self.slow_query, elapsed);
    }

    /// For the pass-through path: run a query, starting a probe if it is slow, and giving up
    /// with the breaker's 503 if the breaker opens while it waits.
    pub(crate) async fn watch<T>(
        &self,
        fut: impl Future<Output = Result<T, crate::error::ChopinError>>,
    ) -> Result<T, crate::error::ChopinError> {
        self.breaker
            .watch_abandoning(fut, || Err(breaker::open_error()))
            .await
    }

    /// For the pass-through path: a query succeeded.
    pub(crate) fn observe_success(&self) {
        self.breaker.success();
    }

    /// A statement on a [`DatabaseTransaction`] begun on this `Db` failed with `err`: report
    /// it to the breaker (a lost connection counts as a failure) and count it (feature
    /// `metrics`). Queries on a transaction do not go through `Db`, so code that runs them
    /// for Chopin (the auth store's refresh rotation) reports their errors here.
    #[cfg_attr(not(feature = "auth"), allow(dead_code))]
    pub(crate) fn observe_db_error(&self, err: &DbErr) {
        self.breaker.observe_db(err);
        #[cfg(feature = "metrics")]
        metrics::db_error(err);
    }

    /// Run `fut` unless the breaker is open, and report its outcome to the breaker (and its
    /// failure to the metrics: the breaker's own answers are not counted).
    async fn guarded<T>(&self, fut: impl Future<Output = Result<T, DbErr>>) -> Result<T, DbErr> {
        self.breaker.check_db()?;
        #[cfg(feature = "metrics")]
        let fut = async {
            let result = fut.await;
            if let Err(err) = &result {
                metrics::db_error(err);
            }
            result
        };
        let result = self
            .breaker
            .watch_abandoning(fut, || Err(breaker::open_db_error()))
            .await;
        match &result {
            Ok(_) => self.breaker.success(),
            Err(err) => self.breaker.observe_db(err),
        }
        result
    }

    /// Close the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => p.close().await,
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => p.close().await,
        }
    }
}

impl Db {
    fn observe_transaction<T, E>(&self, result: &Result<T, TransactionError<E>>) {
        match result {
            Ok(_) => self.breaker.success(),
            Err(TransactionError::Connection(err)) => {
                self.breaker.observe_db(err);
                #[cfg(feature = "metrics")]
                metrics::db_error(err);
            }
            Err(TransactionError::Transaction(_)) => {}
        }
    }
}

// `Db` is a sea-orm connection: every call goes to the inner `DatabaseConnection` (after the
// circuit breaker's check), so `&db` works wherever sea-orm takes `&impl ConnectionTrait`
// (`.all(&db)`, `.exec(&db)`, …).

#[async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.guarded(self.conn.execute_raw(stmt)).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        // sea-orm times the other statements (the callback `assemble` sets), not this one.
        #[cfg(feature = "metrics")]
        let start = std::time::Instant::now();
        let result = self.guarded(self.conn.execute_unprepared(sql)).await;
        #[cfg(feature = "metrics")]
        if result.is_ok() {
            self.statement_done(start);
        }
        result
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.guarded(self.conn.query_one_raw(stmt)).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.guarded(self.conn.query_all_raw(stmt)).await
    }

    fn support_returning(&self) -> bool {
        self.conn.support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        self.conn.is_mock_connection()
    }
}

#[async_trait]
impl TransactionTrait for Db {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.guarded(self.conn.begin()).await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.guarded(self.conn.begin_with_config(isolation_level, access_mode))
            .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.guarded(self.conn.begin_with_options(options)).await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.breaker
            .check_db()
            .map_err(TransactionError::Connection)?;
        let result = self.breaker.watch(self.conn.transaction(callback)).await;
        self.observe_transaction(&result);
        result
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.breaker
            .check_db()
            .map_err(TransactionError::Connection)?;
        let result = self
            .breaker
            .watch(
                self.conn
                    .transaction_with_config(callback, isolation_level, access_mode),
            )
            .await;
        self.observe_transaction(&result);
        result
    }
}

impl StreamTrait for Db {
    type Stream<'a> = <DatabaseConnection as StreamTrait>::Stream<'a>;

    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> Pin<Box<dyn Future<Output = Result<Self::Stream<'a>, DbErr>> + 'a + Send>> {
        Box::pin(async move {
            self.breaker.check_db()?;
            let start = self.conn.stream_raw(stmt);
            // Counted here, not after: the breaker's own answer is no database error.
            #[cfg(feature = "metrics")]
            let start = async {
                let result = start.await;
                if let Err(err) = &result {
                    metrics::db_error(err);
                }
                result
            };
            let result = self
                .breaker
                .watch_abandoning(start, || Err(breaker::open_db_error()))
                .await;
            if let Err(err) = &result {
                self.breaker.observe_db(err);
            }
            result
        })
    }
}

/// `&db` runs migrations: `Migrator::up(&db, None)` (sea-orm-migration takes any
/// `IntoSchemaManagerConnection`, which is this trait).
impl<'c> IntoDatabaseExecutor<'c> for &'c Db {
    fn into_database_executor(self) -> DatabaseExecutor<'c> {
        DatabaseExecutor::Connection(&self.conn)
    }
}

/// `statement_timeout` for every connection of the pool, sent in the startup packet (no round
/// trip per connection or statement). `RESET statement_timeout` goes back to it, which is
/// what a stream does after setting its own.
#[cfg(feature = "postgres")]
fn with_statement_timeout(
    options: sqlx::postgres::PgConnectOptions,
    timeout: Option<Duration>,
) -> sqlx::postgres::PgConnectOptions {
    match timeout {
        Some(timeout) => options.options([(
            "statement_timeout",
            format!("{}ms", timeout.as_millis().max(1)),
        )]),
        None => options,
    }
}

/// With a `statement_timeout`, a query whose future was dropped (the request timed out) goes
/// back to the pool still running, and ends with SQLSTATE 57014 while sqlx pings it on
/// release. sqlx 0.9 then means to close it, but the connection is neither closed nor
/// returned: the pool loses it for good (`chopin-core/tests/db_faults.rs`,
/// `a_query_past_the_request_timeout_is_504_and_stopped_on_the_server`, fails without this).
/// So the release first reads such a leftover error itself (a ping that fails with a database
/// error is retried: the error was the dropped statement's) and the connection goes back to
/// the pool healthy. The cost is one more `Sync` round trip per release.
#[cfg(feature = "postgres")]
fn drain_on_release(
    options: sqlx::pool::PoolOptions<sqlx::Postgres>,
    statement_timeout: Option<Duration>,
) -> sqlx::pool::PoolOptions<sqlx::Postgres> {
    let Some(statement_timeout) = statement_timeout else {
        return options;
    };
    // A statement still running is stopped by `statement_timeout`; past that (and a margin),
    // give the connection up.
    let limit = statement_timeout.saturating_add(Duration::from_secs(5));
    options.after_release(move |conn, _meta| {
        Box::pin(async move {
            use sqlx::Connection;
            let drain = async {
                for _ in 0..3 {
                    match conn.ping().await {
                        Ok(()) => return true,
                        // The dropped statement's own error (57014): read, go on.
                        Err(sqlx::Error::Database(_)) => continue,
                        Err(_) => return false,
                    }
                }
                false
            };
            Ok(tokio::time::timeout(limit, drain).await.unwrap_or(false))
        })
    })
}

/// sqlx's slow-statement log (`CHOPIN_DB_SLOW_QUERY`): `WARN` past `threshold`, or off.
fn log_slow<O: sqlx::ConnectOptions>(options: O, threshold: Option<Duration>) -> O {
    match threshold {
        Some(threshold) => options.log_slow_statements(log::LevelFilter::Warn, threshold),
        None => options.log_slow_statements(log::LevelFilter::Off, Duration::ZERO),
    }
}

fn pool_options<DB: sqlx::Database>(settings: &PoolSettings) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        .max_lifetime(settings.max_lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn db_config(url: &str) -> DatabaseConfig {
        Config::from_lookup(|k| (k == "DATABASE_URL").then(|| url.to_string()))
            .unwrap()
            .database
    }

    #[test]
    fn pool_params_are_removed_from_the_url() {
        let (url, s) = split_pool_settings(&db_config(
            "postgres://u:p@h/db?max_connections=50&sslmode=disable&min_connections=5&acquire_timeout=250ms&idle_timeout=60&max_lifetime=1h",
        ))
        .unwrap();
        assert_eq!(url, "postgres://u:p@h/db?sslmode=disable");
        assert_eq!(s.max_connections, 50);
        assert_eq!(s.min_connections, 5);
        assert_eq!(s.acquire_timeout, Duration::from_millis(250));
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(s.max_lifetime, Some(Duration::from_secs(3600)));
        let (url, _) =
            split_pool_settings(&db_config("sqlite://app.db?max_connections=2")).unwrap();
        assert_eq!(url, "sqlite://app.db");
    }

    #[test]
    fn bad_pool_params_are_errors() {
        for url in [
            "sqlite://a.db?max_connections=0",
            "sqlite://a.db?max_connections=many",
            "sqlite://a.db?acquire_timeout=soon",
            "sqlite://a.db?max_connections=2&min_connections=3",
        ] {
            assert!(split_pool_settings(&db_config(url)).is_err(), "{url}");
        }
    }

    #[test]
    fn defaults_follow_cpu_count() {
        let d = PoolSettings::defaults();
        assert!(d.max_connections >= 6);
        assert!(d.min_connections <= d.max_connections);
    }
}
