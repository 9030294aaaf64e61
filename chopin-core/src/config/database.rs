//! Database connection and pool settings (`DATABASE_*`) and the database circuit breaker
//! (`CHOPIN_DB_BREAKER*`, `CHOPIN_DB_PROBE_INTERVAL`), the statement timeout
//! (`CHOPIN_DB_STATEMENT_TIMEOUT`) and the limits of streamed responses (`CHOPIN_DB_STREAM_*`,
//! `CHOPIN_DB_MAX_STREAMS`).

use std::fmt;
use std::time::Duration;

use super::reader::{Reader, parse_bool, parse_duration, parse_optional_duration, parse_positive};
use super::secret::redact_url;

/// Database connection and pool settings.
///
/// Pool settings may also be given in `DATABASE_URL`'s query string
/// (`?max_connections=20&acquire_timeout=3s`); the URL's values take precedence and are
/// removed before the driver sees the URL. Unset values are sized from the CPU count
/// (see [`crate::db`]).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`: `sqlite://file.db` (created if missing) or `postgres://…`.
    pub url: String,
    /// `DATABASE_MAX_CONNECTIONS`.
    pub max_connections: Option<u32>,
    /// `DATABASE_MIN_CONNECTIONS`.
    pub min_connections: Option<u32>,
    /// `DATABASE_ACQUIRE_TIMEOUT`: how long a request waits for a free connection before it
    /// is answered with 503.
    pub acquire_timeout: Option<Duration>,
    /// `DATABASE_IDLE_TIMEOUT`: idle connections above `min_connections` are closed after this.
    pub idle_timeout: Option<Duration>,
    /// `DATABASE_MAX_LIFETIME`: connections are recycled after this.
    pub max_lifetime: Option<Duration>,
    /// The circuit breaker that answers 503 at once while the database is down
    /// (`CHOPIN_DB_BREAKER`, `CHOPIN_DB_BREAKER_THRESHOLD`, `CHOPIN_DB_PROBE_INTERVAL`).
    pub breaker: BreakerConfig,
    /// `CHOPIN_DB_SLOW_QUERY` (default `1s`; `off` for none): a statement that runs longer is
    /// logged at `WARN` (target `sqlx::query`, inside the request's span, so with its request
    /// id) and counted in `chopin_db_slow_queries_total` (feature `metrics`).
    pub slow_query: Option<Duration>,
    /// `CHOPIN_DB_STATEMENT_TIMEOUT` (duration or `off`): PostgreSQL's `statement_timeout` on
    /// every pooled connection, so that the server itself stops a statement that outlives the
    /// request that started it. When the variable is unset, [`Config::from_env`] sets it to
    /// the request timeout (`CHOPIN_REQUEST_TIMEOUT`); [`DatabaseConfig::new`] sets the default
    /// request timeout, 30 s ([`DEFAULT_STATEMENT_TIMEOUT`]). Streamed responses
    /// ([`StreamConfig`]) set their own. SQLite ignores it.
    ///
    /// [`Config::from_env`]: crate::Config::from_env
    pub statement_timeout: Option<Duration>,
    /// Limits of streamed responses (`JsonQuery::stream`).
    pub streams: StreamConfig,
}

/// Limits of streamed pass-through responses (`JsonQuery::stream`), which hold a pooled
/// connection for as long as the client takes to read the body.
///
/// ```
/// use std::time::Duration;
/// use chopin_core::config::{DatabaseConfig, StreamConfig};
///
/// let config = DatabaseConfig {
///     max_connections: Some(10),
///     streams: StreamConfig {
///         send_timeout: Duration::from_secs(2),
///         max_streams: Some(3),
///         ..StreamConfig::default()
///     },
///     ..DatabaseConfig::new("postgres://app@db.internal/app")
/// };
/// assert_eq!(config.streams.deadline, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// `CHOPIN_DB_STREAM_SEND_TIMEOUT` (default `10s`, more than zero): how long one chunk may
    /// wait for the client to take it (the socket's buffers are full: the client reads
    /// nothing). Past it the query is cancelled, its connection closed, and the body aborted.
    pub send_timeout: Duration,
    /// `CHOPIN_DB_STREAM_DEADLINE` (duration, or `off`/`0`, the default): the longest a stream may
    /// run from its start to its last byte; past it the stream is cut off like a stalled one.
    /// It is also the stream's `statement_timeout` (none when `off`).
    pub deadline: Option<Duration>,
    /// `CHOPIN_DB_MAX_STREAMS` (positive integer): streams open at once per pool; one more
    /// is answered 503 `SERVICE_UNAVAILABLE` with `Retry-After` before it takes a connection.
    /// `None` (unset): half the pool, at least one (see [`StreamConfig::resolve_max`]).
    pub max_streams: Option<u32>,
}

/// `CHOPIN_DB_STREAM_SEND_TIMEOUT`'s default.
pub const DEFAULT_STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            send_timeout: DEFAULT_STREAM_SEND_TIMEOUT,
            deadline: None,
            max_streams: None,
        }
    }
}

impl StreamConfig {
    /// The stream cap for a pool of `pool_size` connections: `max_streams` if set, else
    /// `max(1, pool_size / 2)`, so that streams leave half the pool to other routes.
    ///
    /// ```
    /// use chopin_core::config::StreamConfig;
    ///
    /// let auto = StreamConfig::default();
    /// assert_eq!(auto.resolve_max(10), 5);
    /// assert_eq!(auto.resolve_max(1), 1);
    /// let set = StreamConfig { max_streams: Some(7), ..auto };
    /// assert_eq!(set.resolve_max(10), 7);
    /// ```
    pub fn resolve_max(&self, pool_size: u32) -> u32 {
        self.max_streams.unwrap_or((pool_size / 2).max(1))
    }
}

/// The statement timeout of [`DatabaseConfig::new`]: the default request timeout
/// (`CHOPIN_REQUEST_TIMEOUT`).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `CHOPIN_DB_SLOW_QUERY`'s default (sqlx's own threshold).
pub const DEFAULT_SLOW_QUERY: Duration = Duration::from_secs(1);

/// Settings of the database circuit breaker (see [`crate::db`] and docs/database.md).
///
/// When the breaker is open, every query through [`Db`](crate::db::Db) fails at once with a
/// 503 `SERVICE_UNAVAILABLE` (with `Retry-After`) without touching the pool, and a background
/// probe (`SELECT 1`) runs every [`probe_interval`](Self::probe_interval) until the database
/// answers, which closes the breaker.
///
/// ```
/// use std::time::Duration;
/// use chopin_core::config::{BreakerConfig, DatabaseConfig};
///
/// let config = DatabaseConfig {
///     breaker: BreakerConfig {
///         probe_interval: Duration::from_millis(100),
///         ..BreakerConfig::default()
///     },
///     ..DatabaseConfig::new("postgres://app@db.internal/app")
/// };
/// assert!(config.breaker.enabled);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// `CHOPIN_DB_BREAKER` (default `true`): `false` turns the breaker off; every query then
    /// waits for the pool as before.
    pub enabled: bool,
    /// `CHOPIN_DB_BREAKER_THRESHOLD` (default 3): connection failures seen by requests in a
    /// row (refused, reset, DNS, I/O or a connection lost mid-query) that open the breaker
    /// without waiting for the probe. The first such failure (or a pool acquire timeout)
    /// starts a probe at once, and a failed probe opens the breaker by itself.
    pub threshold: u32,
    /// `CHOPIN_DB_PROBE_INTERVAL` (default `500ms`): time between probes while the database
    /// is down; the probe's own timeout is the pool's acquire timeout.
    pub probe_interval: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            threshold: 3,
            probe_interval: Duration::from_millis(500),
        }
    }
}

/// `DATABASE_URL`'s default: a SQLite file in the working directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://chopin.db";

impl DatabaseConfig {
    /// Settings for `url` with every pool setting unset (sized from the CPU count, or taken
    /// from the URL's query string): for building a [`Db`](crate::db::Db) in code.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chopin_core::config::DatabaseConfig;
    ///
    /// let config = DatabaseConfig {
    ///     max_connections: Some(20),
    ///     acquire_timeout: Some(Duration::from_secs(2)),
    ///     ..DatabaseConfig::new("postgres://app@db.internal/app")
    /// };
    /// assert_eq!(config.min_connections, None);
    ///
    /// // The same settings in the URL, as `DATABASE_URL` may carry them:
    /// let config = DatabaseConfig::new(
    ///     "postgres://app@db.internal/app?max_connections=20&min_connections=5",
    /// );
    /// # let _ = config;
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseConfig {
            url: url.into(),
            max_connections: None,
            min_connections: None,
            acquire_timeout: None,
            idle_timeout: None,
            max_lifetime: None,
            breaker: BreakerConfig::default(),
            slow_query: Some(DEFAULT_SLOW_QUERY),
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
            streams: StreamConfig::default(),
        }
    }
}

/// What an empty environment gives: `sqlite://chopin.db`, pool settings unset.
impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig::new(DEFAULT_DATABASE_URL)
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("breaker", &self.breaker)
            .field("slow_query", &self.slow_query)
            .field("statement_timeout", &self.statement_timeout)
            .field("streams", &self.streams)
            .finish()
    }
}

impl DatabaseConfig {
    /// Read `DATABASE_*` and `CHOPIN_DB_*`. The second value is `CHOPIN_DB_STATEMENT_TIMEOUT`
    /// when it is set (`Some(None)` for `off`): unset, the caller ties it to the request timeout.
    pub(super) fn from_reader(r: &mut Reader<'_>) -> (DatabaseConfig, Option<Option<Duration>>) {
        let database = DatabaseConfig {
            url: r
                .raw("DATABASE_URL")
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            max_connections: r.get("DATABASE_MAX_CONNECTIONS", parse_positive::<u32>),
            min_connections: r.get("DATABASE_MIN_CONNECTIONS", |s| {
                s.parse::<u32>()
                    .map_err(|_| "must be a whole number".to_string())
            }),
            acquire_timeout: r.get("DATABASE_ACQUIRE_TIMEOUT", parse_duration),
            idle_timeout: r.get("DATABASE_IDLE_TIMEOUT", parse_duration),
            max_lifetime: r.get("DATABASE_MAX_LIFETIME", parse_duration),
            breaker: BreakerConfig::from_reader(r),
            slow_query: r
                .get("CHOPIN_DB_SLOW_QUERY", parse_optional_duration)
                .unwrap_or(Some(DEFAULT_SLOW_QUERY)),
            statement_timeout: None,
            streams: StreamConfig::from_reader(r),
        };
        let statement_timeout = r.get("CHOPIN_DB_STATEMENT_TIMEOUT", parse_optional_duration);
        if let (Some(min), Some(max)) = (database.min_connections, database.max_connections)
            && min > max
        {
            r.problem(
                "DATABASE_MIN_CONNECTIONS",
                &min.to_string(),
                format!("must not exceed DATABASE_MAX_CONNECTIONS ({max})"),
            );
        }
        (database, statement_timeout)
    }
}

impl StreamConfig {
    /// Read `CHOPIN_DB_STREAM_SEND_TIMEOUT`, `CHOPIN_DB_STREAM_DEADLINE` and
    /// `CHOPIN_DB_MAX_STREAMS`.
    fn from_reader(r: &mut Reader<'_>) -> StreamConfig {
        let defaults = StreamConfig::default();
        let positive = |s: &str| {
            parse_duration(s).and_then(|d| {
                if d.is_zero() {
                    Err("must be longer than zero".to_string())
                } else {
                    Ok(d)
                }
            })
        };
        StreamConfig {
            send_timeout: r
                .get("CHOPIN_DB_STREAM_SEND_TIMEOUT", positive)
                .unwrap_or(defaults.send_timeout),
            deadline: r
                .get("CHOPIN_DB_STREAM_DEADLINE", parse_optional_duration)
                .unwrap_or(defaults.deadline),
            max_streams: r.get("CHOPIN_DB_MAX_STREAMS", parse_positive::<u32>),
        }
    }
}

impl BreakerConfig {
    /// Read `CHOPIN_DB_BREAKER`, `CHOPIN_DB_BREAKER_THRESHOLD` and `CHOPIN_DB_PROBE_INTERVAL`.
    fn from_reader(r: &mut Reader<'_>) -> BreakerConfig {
        let defaults = BreakerConfig::default();
        let probe_interval = r
            .get("CHOPIN_DB_PROBE_INTERVAL", |s| {
                parse_duration(s).and_then(|d| {
                    if d.is_zero() {
                        Err("must be longer than zero".to_string())
                    } else {
                        Ok(d)
                    }
                })
            })
            .unwrap_or(defaults.probe_interval);
        BreakerConfig {
            enabled: r
                .get("CHOPIN_DB_BREAKER", parse_bool)
                .unwrap_or(defaults.enabled),
            threshold: r
                .get("CHOPIN_DB_BREAKER_THRESHOLD", parse_positive::<u32>)
                .unwrap_or(defaults.threshold),
            probe_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::from;

    #[test]
    fn debug_redacts_database_password() {
        let c = from(&[(
            "DATABASE_URL",
            "postgres://app:s3cret@db:5432/app?sslmode=require",
        )])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("postgres://app:***@db:5432/app"));
        assert!(!redact_url("postgres://db/app?password=hunter2").contains("hunter2"));
    }

    #[test]
    fn database_config_in_code() {
        assert_eq!(DatabaseConfig::default(), from(&[]).unwrap().database);
        let c = DatabaseConfig {
            max_connections: Some(20),
            ..DatabaseConfig::new("postgres://u@h/db")
        };
        assert_eq!(c.url, "postgres://u@h/db");
        assert_eq!((c.max_connections, c.min_connections), (Some(20), None));
    }

    #[test]
    fn stream_and_statement_settings_from_env() {
        let c = from(&[]).unwrap();
        assert_eq!(c.database.streams, StreamConfig::default());
        // Unset: tied to the request timeout, whatever it is.
        assert_eq!(c.database.statement_timeout, c.http.request_timeout);
        let c = from(&[("CHOPIN_REQUEST_TIMEOUT", "3s")]).unwrap();
        assert_eq!(c.database.statement_timeout, Some(Duration::from_secs(3)));
        let c = from(&[("CHOPIN_REQUEST_TIMEOUT", "off")]).unwrap();
        assert_eq!(c.database.statement_timeout, None);
        let c = from(&[
            ("CHOPIN_REQUEST_TIMEOUT", "3s"),
            ("CHOPIN_DB_STATEMENT_TIMEOUT", "off"),
            ("CHOPIN_DB_STREAM_SEND_TIMEOUT", "250ms"),
            ("CHOPIN_DB_STREAM_DEADLINE", "1m"),
            ("CHOPIN_DB_MAX_STREAMS", "4"),
        ])
        .unwrap()
        .database;
        assert_eq!(c.statement_timeout, None);
        assert_eq!(
            c.streams,
            StreamConfig {
                send_timeout: Duration::from_millis(250),
                deadline: Some(Duration::from_secs(60)),
                max_streams: Some(4),
            }
        );
        let c = from(&[("CHOPIN_DB_STATEMENT_TIMEOUT", "5s")]).unwrap();
        assert_eq!(c.database.statement_timeout, Some(Duration::from_secs(5)));
        let err = from(&[
            ("CHOPIN_DB_STATEMENT_TIMEOUT", "soon"),
            ("CHOPIN_DB_STREAM_SEND_TIMEOUT", "0s"),
            ("CHOPIN_DB_STREAM_DEADLINE", "later"),
            ("CHOPIN_DB_MAX_STREAMS", "0"),
        ])
        .unwrap_err()
        .to_string();
        for name in [
            "CHOPIN_DB_STATEMENT_TIMEOUT",
            "CHOPIN_DB_STREAM_SEND_TIMEOUT",
            "CHOPIN_DB_STREAM_DEADLINE",
            "CHOPIN_DB_MAX_STREAMS",
        ] {
            assert!(err.contains(name), "{name} missing from {err}");
        }
    }

    #[test]
    fn breaker_settings_from_env() {
        let c = from(&[]).unwrap().database.breaker;
        assert_eq!(c, BreakerConfig::default());
        assert!(c.enabled);
        let c = from(&[
            ("CHOPIN_DB_BREAKER", "off"),
            ("CHOPIN_DB_BREAKER_THRESHOLD", "7"),
            ("CHOPIN_DB_PROBE_INTERVAL", "250ms"),
        ])
        .unwrap()
        .database
        .breaker;
        assert_eq!(
            c,
            BreakerConfig {
                enabled: false,
                threshold: 7,
                probe_interval: Duration::from_millis(250),
            }
        );
        let err = from(&[
            ("CHOPIN_DB_BREAKER", "maybe"),
            ("CHOPIN_DB_BREAKER_THRESHOLD", "0"),
            ("CHOPIN_DB_PROBE_INTERVAL", "0s"),
        ])
        .unwrap_err()
        .to_string();
        for name in [
            "CHOPIN_DB_BREAKER",
            "CHOPIN_DB_BREAKER_THRESHOLD",
            "CHOPIN_DB_PROBE_INTERVAL",
        ] {
            assert!(err.contains(name), "{name} missing from {err}");
        }
    }
}
