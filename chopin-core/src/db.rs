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

use std::str::FromStr;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm::sqlx;

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

/// Pool statistics, as reported by [`Db::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PoolStatus {
    /// Open connections (idle + in use).
    pub size: u32,
    /// Open connections waiting for work.
    pub idle: u32,
    /// Connections currently running queries or held by transactions.
    pub in_use: u32,
    /// The pool's maximum.
    pub max: u32,
}

#[derive(Debug, Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
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
/// println!("{:?}", db.status());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Db {
    conn: DatabaseConnection,
    pool: Pool,
    settings: PoolSettings,
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

impl Db {
    /// Connect using `config` (normally [`Config::database`](crate::Config)). Fails if the
    /// database cannot be reached, so a misconfigured application stops at start-up.
    pub async fn connect(config: &DatabaseConfig) -> Result<Db, DbError> {
        #[cfg_attr(not(feature = "sqlite"), allow(unused_mut))]
        let (url, mut settings) = split_pool_settings(config)?;
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
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
                    Ok(Db {
                        conn: sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone()),
                        pool: Pool::Sqlite(pool),
                        settings,
                    })
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
                    let pool = pool_options(&settings)
                        .connect_with(options)
                        .await
                        .map_err(connect_err)?;
                    Ok(Db {
                        conn: sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone()),
                        pool: Pool::Postgres(pool),
                        settings,
                    })
                }
                #[cfg(not(feature = "postgres"))]
                Err(DbError::BackendDisabled {
                    scheme,
                    feature: "postgres",
                })
            }
            other => Err(DbError::Config(format!(
                "unsupported database URL scheme {other:?} (expected sqlite or postgres)"
            ))),
        }
    }

    /// The sea-orm connection, for queries.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The resolved pool settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Current pool statistics.
    pub fn status(&self) -> PoolStatus {
        let (size, idle) = match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => (p.size(), p.num_idle() as u32),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => (p.size(), p.num_idle() as u32),
        };
        PoolStatus {
            size,
            idle,
            in_use: size.saturating_sub(idle),
            max: self.settings.max_connections,
        }
    }

    /// The underlying sqlx SQLite pool, if this is a SQLite database.
    #[cfg(feature = "sqlite")]
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.pool {
            Pool::Sqlite(p) => Some(p),
            #[cfg(feature = "postgres")]
            _ => None,
        }
    }

    /// The underlying sqlx PostgreSQL pool, if this is a PostgreSQL database.
    #[cfg(feature = "postgres")]
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            #[cfg(feature = "sqlite")]
            _ => None,
        }
    }

    /// Check that a connection can be acquired and answers a trivial query.
    pub async fn ping(&self) -> Result<(), sea_orm::DbErr> {
        self.conn.ping().await
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
