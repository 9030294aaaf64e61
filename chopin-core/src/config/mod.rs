//! Typed configuration from the environment.
//!
//! [`Config::from_env`] reads every setting from environment variables (and, in development
//! only, from a `.env` file in the working directory; real environment variables win). A value
//! that is present but invalid is a start-up error naming the variable and what is wrong with
//! it — never silently replaced by a default. Every variable is listed in
//! `docs/configuration.md`.

// One file per section, each holding its settings type and the reader of its variables
// (`from_reader`): `http.rs` (body limit, timeouts, compression, CORS), `database.rs`, `log.rs`,
// `openapi.rs`, `pagination.rs`, `cursor.rs` (the cursor key), `cache.rs`, `auth.rs`,
// `rate_limit.rs`, `security.rs`, `server.rs`;
// `secret.rs` keeps secrets out of logs; `reader.rs` reads variables and collects every problem
// into one `ConfigError`. This file is the aggregate: `Config`, `Environment`, and the two entry
// points, which call the sections' readers in turn. Config is the ground floor: it imports
// nothing from the crate but `error` and `signing` (both on the ground floor too).

mod auth;
pub(crate) mod cache;
mod cursor;
mod database;
mod http;
mod log;
mod mail;
mod metrics;
mod openapi;
pub(crate) mod pagination;
mod rate_limit;
mod reader;
mod secret;
mod security;
mod server;

use std::collections::HashMap;
use std::str::FromStr;

pub use self::auth::{
    AuthConfig, DEFAULT_MAIL_QUEUE_CAPACITY, DEFAULT_MAIL_WORKERS, JwtAlgorithm, MAX_JWT_LEEWAY,
    MAX_MAIL_QUEUE_CAPACITY, MAX_MAIL_WORKERS, MIN_JWT_SECRET_LEN, SharedStateBackend,
};
// `CacheConfig` and `CacheBackend` are public at `chopin_core::cache`, their one public path.
pub(crate) use self::cache::{CacheBackend, CacheConfig};
pub use self::cache::{
    DEFAULT_CACHE_MEMORY, DEFAULT_CACHE_NAMESPACE, DEFAULT_CACHE_TIMEOUT, DEFAULT_REDIS_URL,
    is_valid_cache_namespace,
};
pub use self::cursor::{CURSOR_KEY_INFO, CursorConfig, DEFAULT_CURSOR_TTL};
pub use self::database::{
    BreakerConfig, DEFAULT_DATABASE_URL, DEFAULT_SLOW_QUERY, DEFAULT_STATEMENT_TIMEOUT,
    DEFAULT_STREAM_SEND_TIMEOUT, DatabaseConfig, StreamConfig,
};
pub use self::http::{CorsConfig, DEFAULT_BODY_LIMIT, HttpConfig};
pub use self::log::{DEFAULT_LOG_FILTER, LogConfig, LogFormat};
pub use self::mail::{MailConfig, SmtpConfig, SmtpTls};
pub use self::metrics::{DEFAULT_METRICS_ADDR, MetricsConfig};
pub use self::openapi::OpenApiConfig;
pub use self::rate_limit::{AuthRateLimitConfig, IP_RATE_MULTIPLE, Rate, RateLimitConfig};
pub use self::reader::{ConfigError, ConfigProblem, MAX_CONFIG_DURATION, parse_duration};
pub use self::secret::{Secret, redact_url};
pub use self::security::{IpNet, SecurityConfig};
pub use self::server::{
    DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT, DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_WRITE_TIMEOUT, FALLBACK_MAX_CONNECTIONS, MAX_WORKERS, MIN_MAX_HEADER_SIZE,
    ServerConfig, default_max_connections,
};
// `PaginationConfig` and `LimitOverflow` are public at `chopin_core::extractors`, next to the
// extractor they configure; `pagination` is crate-visible only so that path can re-export them.
use self::pagination::PaginationConfig;
use self::reader::Reader;

/// The deployment environment, from `CHOPIN_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// Local development (the default of debug builds; release builds require `CHOPIN_ENV`):
    /// `.env` is loaded, error details are shown, the API docs UI is on.
    #[default]
    Development,
    /// Automated tests: like development, without `.env` and without error details.
    Test,
    /// Production: no `.env`, no internal error details, API docs off unless enabled.
    Production,
}

impl Environment {
    /// The environment when `CHOPIN_ENV` is set neither in the process environment nor in
    /// `.env`: [`Environment::Development`] in a debug build (`debug_build` is
    /// `cfg!(debug_assertions)`), and a start-up error saying what to set in a release build,
    /// so that a deployment cannot run with development settings by forgetting the variable.
    ///
    /// ```
    /// use chopin_core::config::Environment;
    /// assert_eq!(Environment::when_unset(true), Ok(Environment::Development));
    /// let problem = Environment::when_unset(false).unwrap_err();
    /// assert_eq!(problem.variable, "CHOPIN_ENV");
    /// assert!(problem.problem.contains("CHOPIN_ENV=production"));
    /// ```
    pub fn when_unset(debug_build: bool) -> Result<Environment, ConfigProblem> {
        if debug_build {
            Ok(Environment::Development)
        } else {
            Err(ConfigProblem {
                variable: "CHOPIN_ENV",
                value: String::new(),
                problem: "must be set for a release build, in the environment or in .env: \
                          CHOPIN_ENV=production for a deployment (or development, test); \
                          only debug builds default to development"
                    .into(),
            })
        }
    }

    /// The canonical name (`development`, `test`, `production`), as `CHOPIN_ENV` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }

    /// `true` for [`Environment::Development`].
    pub fn is_development(self) -> bool {
        self == Environment::Development
    }

    /// `true` for [`Environment::Production`].
    pub fn is_production(self) -> bool {
        self == Environment::Production
    }
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "test" => Ok(Environment::Test),
            "production" | "prod" => Ok(Environment::Production),
            _ => Err("must be one of development, test, production".into()),
        }
    }
}

/// The whole configuration of a Chopin application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `CHOPIN_ENV`.
    pub environment: Environment,
    /// `CHOPIN_HOST` (`127.0.0.1`; use `0.0.0.0` in containers).
    pub host: String,
    /// `CHOPIN_PORT` (`3000`; `0` picks a free port).
    pub port: u16,
    /// Database settings; used only when the application connects a [`Db`](crate::db::Db).
    pub database: DatabaseConfig,
    /// HTTP and default-layer settings.
    pub http: HttpConfig,
    /// Logging settings.
    pub log: LogConfig,
    /// OpenAPI settings.
    pub openapi: OpenApiConfig,
    /// `CHOPIN_PAGINATION_DEFAULT_LIMIT` (20), `CHOPIN_PAGINATION_MAX_LIMIT` (100) and
    /// `CHOPIN_PAGINATION_OVERFLOW` (`reject`).
    pub pagination: PaginationConfig,
    /// `CHOPIN_CURSOR_SECRET` and `CHOPIN_CURSOR_TTL` (`1h`): signed pagination cursors.
    pub cursor: CursorConfig,
    /// Cache settings; used only when the application builds a
    /// [`Cache`](crate::cache::Cache).
    pub cache: CacheConfig,
    /// JWT and auth settings; used only when the application builds an
    /// [`Auth`](crate::auth::Auth).
    pub auth: AuthConfig,
    /// Rate limiting (off unless `CHOPIN_RATE_LIMIT` is set).
    pub rate_limit: RateLimitConfig,
    /// Trusted proxies and security headers.
    pub security: SecurityConfig,
    /// The SMTP server and public URL of the auth module's mails (`CHOPIN_SMTP_URL`,
    /// `CHOPIN_SMTP_FROM`, `CHOPIN_PUBLIC_URL`).
    pub mail: MailConfig,
    /// Chopin's server: connection timeouts and limits, HTTP/2, TCP, per-core workers.
    pub server: ServerConfig,
    /// Where `/metrics` is served (feature `metrics`).
    pub metrics: MetricsConfig,
}

impl Config {
    /// Read the configuration from the process environment, plus `.env` in development.
    ///
    /// `CHOPIN_ENV` comes from the environment, else from `.env`. The rest of `.env` is read
    /// only when that gives `development` (or, in a debug build, nothing); variables already
    /// set in the environment take precedence over it. The file is read, never written into
    /// the process environment.
    ///
    /// A release build (no `debug_assertions`) refuses to start when `CHOPIN_ENV` is set
    /// neither in the environment nor in `.env`: a deployment that forgot it would otherwise
    /// run with development settings (error details in responses, a random token key, the
    /// token-logging mailer). Debug builds default to `development`. See
    /// [`Environment::when_unset`].
    pub fn from_env() -> Result<Config, ConfigError> {
        let from_process = std::env::var("CHOPIN_ENV")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let mut dotenv = HashMap::new();
        let may_read_dotenv = from_process
            .as_deref()
            .is_none_or(|v| v.trim().parse::<Environment>() == Ok(Environment::Development));
        if may_read_dotenv && let Ok(iter) = dotenvy::from_path_iter(".env") {
            for (key, value) in iter.flatten() {
                dotenv.insert(key, value);
            }
        }
        let env_name = from_process.or_else(|| {
            dotenv
                .get("CHOPIN_ENV")
                .filter(|v| !v.trim().is_empty())
                .cloned()
        });
        let env_name = match env_name {
            Some(name) => name,
            None => Environment::when_unset(cfg!(debug_assertions))
                .map(Environment::as_str)
                .map(str::to_string)
                .map_err(|problem| ConfigError {
                    problems: vec![problem],
                })?,
        };
        if env_name.trim().parse::<Environment>() != Ok(Environment::Development) {
            // `.env` is for development only: in test and production it is not read.
            dotenv.clear();
        }
        Config::from_lookup(|name| {
            if name == "CHOPIN_ENV" {
                return Some(env_name.clone());
            }
            std::env::var(name)
                .ok()
                .or_else(|| dotenv.get(name).cloned())
        })
    }

    /// Build a configuration from any variable source (useful in tests: no global state).
    ///
    /// ```
    /// use chopin_core::Config;
    /// let config = Config::from_lookup(|name| match name {
    ///     "CHOPIN_PORT" => Some("8080".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(config.port, 8080);
    ///
    /// let err = Config::from_lookup(|name| (name == "CHOPIN_PORT").then(|| "eighty".into()))
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("CHOPIN_PORT"));
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut r = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };
        let environment = r
            .get("CHOPIN_ENV", |s| s.parse::<Environment>())
            .unwrap_or_default();
        let host = r.raw("CHOPIN_HOST").unwrap_or_else(|| "127.0.0.1".into());
        let port = r
            .get("CHOPIN_PORT", |s| {
                s.parse::<u16>()
                    .map_err(|_| "must be a port number (0-65535)".to_string())
            })
            .unwrap_or(3000);

        // Each section reads its own variables; problems are recorded in reading order.
        let (mut database, statement_timeout) = DatabaseConfig::from_reader(&mut r);
        let http = HttpConfig::from_reader(&mut r);
        // Unset, PostgreSQL stops a statement when the request that started it times out.
        database.statement_timeout = statement_timeout.unwrap_or(http.request_timeout);
        let log = LogConfig::from_reader(&mut r, environment);
        let openapi = OpenApiConfig::from_reader(&mut r, environment);
        let pagination = PaginationConfig::from_reader(&mut r);
        let cursor = CursorConfig::from_reader(&mut r);
        let cache = CacheConfig::from_reader(&mut r, environment);
        let auth = AuthConfig::from_reader(&mut r);
        let rate_limit = RateLimitConfig::from_reader(&mut r);

        // What this build can do: both shared-state backends need the `redis` feature.
        if !cfg!(feature = "redis") {
            if rate_limit.backend == SharedStateBackend::Redis {
                r.problem(
                    "CHOPIN_RATE_LIMIT_BACKEND",
                    "redis",
                    "needs chopin-core's `redis` feature",
                );
            }
            if auth.revocation == SharedStateBackend::Redis {
                r.problem(
                    "CHOPIN_AUTH_REVOCATION",
                    "redis",
                    "needs chopin-core's `redis` feature",
                );
            }
        }

        let security = SecurityConfig::from_reader(&mut r, environment);
        let mail = MailConfig::from_reader(&mut r, environment);
        if !cfg!(feature = "smtp") && mail.smtp.is_some() {
            r.problem(
                "CHOPIN_SMTP_URL",
                &mail
                    .smtp
                    .as_ref()
                    .map(SmtpConfig::redacted)
                    .unwrap_or_default(),
                "needs chopin-core's `smtp` feature",
            );
        }
        let server = ServerConfig::from_reader(&mut r);
        let metrics = MetricsConfig::from_reader(&mut r, environment);

        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Config {
            environment,
            host,
            port,
            database,
            http,
            log,
            openapi,
            pagination,
            cursor,
            cache,
            auth,
            rate_limit,
            security,
            mail,
            server,
            metrics,
        })
    }

    /// The configuration an empty environment gives, for the given environment: handy in tests.
    pub fn for_environment(environment: Environment) -> Config {
        let name = environment.as_str();
        Config::from_lookup(|v| (v == "CHOPIN_ENV").then(|| name.to_string()))
            .unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The configuration `vars` give (shared by the sections' tests).
    pub(super) fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = from(&[]).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert_eq!(c.port, 3000);
        assert_eq!(c.http.body_limit, DEFAULT_BODY_LIMIT);
        assert_eq!(c.http.request_timeout, Some(Duration::from_secs(30)));
        assert!(c.openapi.enabled);
        assert!(!c.http.cors.is_open());
        assert_eq!(c.log.format, LogFormat::Text);
        let p = from(&[("CHOPIN_ENV", "production")]).unwrap();
        assert!(!p.openapi.enabled);
        assert_eq!(p.log.format, LogFormat::Json);
    }

    /// Release builds (no `debug_assertions`) refuse an unset `CHOPIN_ENV`, saying what to
    /// set; debug builds default to development.
    #[test]
    fn unset_environment_depends_on_the_build() {
        assert_eq!(Environment::when_unset(true), Ok(Environment::Development));
        let problem = Environment::when_unset(false).unwrap_err();
        assert_eq!(problem.variable, "CHOPIN_ENV");
        assert!(
            problem.problem.contains("CHOPIN_ENV=production"),
            "{problem:?}"
        );
        let err = ConfigError {
            problems: vec![problem],
        };
        assert!(err.to_string().contains("release build"), "{err}");
        for env in [
            Environment::Development,
            Environment::Test,
            Environment::Production,
        ] {
            assert_eq!(env.as_str().parse::<Environment>(), Ok(env));
        }
    }

    #[test]
    fn parses_values() {
        let c = from(&[
            ("CHOPIN_BODY_LIMIT", "512KiB"),
            ("CHOPIN_REQUEST_TIMEOUT", "off"),
            ("DATABASE_ACQUIRE_TIMEOUT", "250ms"),
            ("DATABASE_MAX_CONNECTIONS", "7"),
            (
                "CHOPIN_CORS_ORIGINS",
                "https://a.example, http://localhost:5173",
            ),
        ])
        .unwrap();
        assert_eq!(c.http.body_limit, 512 * 1024);
        assert_eq!(c.http.request_timeout, None);
        assert_eq!(c.database.acquire_timeout, Some(Duration::from_millis(250)));
        assert_eq!(c.database.max_connections, Some(7));
        assert_eq!(
            c.http.cors.origins,
            vec!["https://a.example", "http://localhost:5173"]
        );
    }

    #[test]
    fn invalid_values_are_reported_all_at_once() {
        let err = from(&[
            ("CHOPIN_PORT", "99999"),
            ("CHOPIN_ENV", "staging"),
            ("CHOPIN_BODY_LIMIT", "lots"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("CHOPIN_CORS_ORIGINS", "https://a.example/path"),
            ("CHOPIN_LOG", "info,[[["),
        ])
        .unwrap_err();
        let vars: Vec<&str> = err.problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            vars,
            vec![
                "CHOPIN_ENV",
                "CHOPIN_PORT",
                "DATABASE_MAX_CONNECTIONS",
                "CHOPIN_CORS_ORIGINS",
                "CHOPIN_BODY_LIMIT",
                "CHOPIN_LOG"
            ]
        );
        assert!(
            err.to_string()
                .contains("CHOPIN_PORT=\"99999\": must be a port number")
        );
    }

    #[test]
    fn auth_settings() {
        let c = from(&[]).unwrap();
        assert_eq!(c.auth, AuthConfig::default());
        assert!(c.rate_limit.rate.is_none());
        assert!(c.security.headers && !c.security.hsts);
        let secret = "0123456789abcdef0123456789abcdef-long";
        let c = from(&[
            ("CHOPIN_JWT_SECRET", secret),
            ("CHOPIN_JWT_ISSUER", "https://api.example"),
            ("CHOPIN_JWT_ACCESS_TTL", "5m"),
            ("CHOPIN_RATE_LIMIT", "10/s"),
            ("CHOPIN_RATE_LIMIT_BACKEND", "redis"),
            ("CHOPIN_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
            ("CHOPIN_ENV", "production"),
        ])
        .unwrap();
        assert_eq!(c.auth.secret.as_ref().map(Secret::expose), Some(secret));
        assert!(!format!("{c:?}").contains(secret));
        assert_eq!(c.auth.access_ttl, Duration::from_secs(300));
        assert_eq!(
            c.rate_limit.rate,
            Some(Rate {
                burst: 10,
                period: Duration::from_secs(1)
            })
        );
        assert_eq!(c.rate_limit.backend, SharedStateBackend::Redis);
        assert!(c.security.hsts);
        let nets = &c.security.trusted_proxies;
        assert!(nets[0].contains("10.1.2.3".parse().unwrap()));
        assert!(!nets[0].contains("11.1.2.3".parse().unwrap()));
        assert!(nets[1].contains("::1".parse().unwrap()));

        let err = from(&[
            ("CHOPIN_JWT_SECRET", "short-secret"),
            ("CHOPIN_JWT_ALGORITHM", "RS512"),
            ("CHOPIN_RATE_LIMIT", "ten"),
            ("CHOPIN_TRUSTED_PROXIES", "10.0.0.0/33"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = err.problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            vars,
            vec![
                "CHOPIN_JWT_ALGORITHM",
                "CHOPIN_JWT_SECRET",
                "CHOPIN_RATE_LIMIT",
                "CHOPIN_TRUSTED_PROXIES"
            ]
        );
        assert!(!err.to_string().contains("short-secret"), "{err}");
    }
}
