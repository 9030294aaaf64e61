//! Typed configuration from the environment.
//!
//! [`Config::from_env`] reads every setting from environment variables (and, in development
//! only, from a `.env` file in the working directory; real environment variables win). A value
//! that is present but invalid is a start-up error naming the variable and what is wrong with
//! it — never silently replaced by a default. Every variable is listed in
//! `docs/configuration.md`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::extractors::{LimitOverflow, PaginationConfig};

/// Default request body limit: 2 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The deployment environment, from `CHOPIN_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// Local development (the default): `.env` is loaded, error details are shown, the API
    /// docs UI is on.
    #[default]
    Development,
    /// Automated tests: like development, without `.env` and without error details.
    Test,
    /// Production: no `.env`, no internal error details, API docs off unless enabled.
    Production,
}

impl Environment {
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

/// Log output format, from `CHOPIN_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default in development and test).
    Text,
    /// One JSON object per line (the default in production).
    Json,
}

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
            .finish()
    }
}

/// A URL with its password (and any `password=` query parameter) replaced by `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            let has_secret_param = url
                .query_pairs()
                .any(|(k, _)| k.eq_ignore_ascii_case("password"));
            if has_secret_param {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => "<unparseable URL redacted>".to_string(),
    }
}

/// CORS policy, from `CHOPIN_CORS_ORIGINS` and `CHOPIN_CORS_CREDENTIALS`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorsConfig {
    /// Allowed origins (`https://app.example.com`); empty means CORS is closed (no
    /// cross-origin browser access). `*` allows any origin, but never with credentials.
    pub origins: Vec<String>,
    /// Whether browsers may send cookies / authorization with cross-origin requests.
    pub allow_credentials: bool,
}

impl CorsConfig {
    /// `true` when at least one origin is configured (CORS is then enabled).
    pub fn is_open(&self) -> bool {
        !self.origins.is_empty()
    }
}

/// HTTP server and default-layer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `CHOPIN_BODY_LIMIT`: largest accepted request body in bytes (`2MiB` by default).
    pub body_limit: usize,
    /// `CHOPIN_REQUEST_TIMEOUT`: a handler that has not answered by then gets 504 (`30s`;
    /// `off` disables). It bounds the time until the response starts; a streamed body (server-
    /// sent events, pass-through streams) may run longer.
    pub request_timeout: Option<Duration>,
    /// `CHOPIN_SHUTDOWN_TIMEOUT`: how long in-flight requests may run after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// `CHOPIN_COMPRESSION`: gzip / br / zstd response compression (`true`).
    pub compression: bool,
    /// CORS policy (closed by default).
    pub cors: CorsConfig,
}

/// The log filter when neither `CHOPIN_LOG` nor `RUST_LOG` is set.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `CHOPIN_LOG`, else `RUST_LOG`, else `info`: a `tracing` filter such as `info` or
    /// `info,my_app=debug`.
    pub filter: String,
    /// `CHOPIN_LOG_FORMAT`: `text` or `json` (`json` in production, `text` elsewhere).
    pub format: LogFormat,
}

/// OpenAPI settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenApiConfig {
    /// `CHOPIN_OPENAPI`: serve the spec and the docs UI (on in development and test, off in
    /// production unless set to `true`).
    pub enabled: bool,
    /// `CHOPIN_OPENAPI_PATH`: where the spec is served (`/openapi.json`).
    pub spec_path: String,
    /// `CHOPIN_DOCS_PATH`: where the interactive UI is served (`/docs`).
    pub ui_path: String,
}

/// Which cache backend [`Cache::from_config`](crate::cache::Cache::from_config) builds, from
/// `CHOPIN_CACHE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CacheBackend {
    /// `memory` (the default): an in-process moka cache bounded by bytes. Nothing is shared
    /// between instances.
    #[default]
    Memory,
    /// `redis`: every entry lives in Redis, shared by every instance (feature `redis`).
    Redis,
    /// `tiered`: an in-process moka tier in front of Redis, kept coherent across instances by
    /// pub/sub invalidation (feature `redis`).
    Tiered,
}

impl CacheBackend {
    /// The name used in `CHOPIN_CACHE`: `memory`, `redis` or `tiered`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheBackend::Memory => "memory",
            CacheBackend::Redis => "redis",
            CacheBackend::Tiered => "tiered",
        }
    }
}

impl fmt::Display for CacheBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CacheBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "memory" => Ok(CacheBackend::Memory),
            "redis" => Ok(CacheBackend::Redis),
            "tiered" => Ok(CacheBackend::Tiered),
            _ => Err("must be one of memory, redis, tiered".into()),
        }
    }
}

/// Default `REDIS_URL`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default `CHOPIN_CACHE_MEMORY`: 64 MiB.
pub const DEFAULT_CACHE_MEMORY: u64 = 64 * 1024 * 1024;
/// Default `CHOPIN_CACHE_NAMESPACE`.
pub const DEFAULT_CACHE_NAMESPACE: &str = "chopin";
/// Default `CHOPIN_CACHE_TIMEOUT`: 50 ms.
pub const DEFAULT_CACHE_TIMEOUT: Duration = Duration::from_millis(50);

/// Cache settings, used by [`Cache::from_config`](crate::cache::Cache::from_config); an
/// application that builds no cache ignores them. See `docs/caching.md`.
///
/// `Debug` shows `redis_url` with its password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `CHOPIN_CACHE`: `memory` (default), `redis` or `tiered`.
    pub backend: CacheBackend,
    /// `REDIS_URL` (`redis://127.0.0.1:6379`): `redis://[user:password@]host[:port][/db]` or
    /// `unix:///path/to/redis.sock`. Used by the `redis` and `tiered` backends.
    pub redis_url: String,
    /// `CHOPIN_CACHE_MEMORY` (64 MiB): the most bytes (keys + values) the in-process tier
    /// holds before it evicts.
    pub memory_bytes: u64,
    /// `CHOPIN_CACHE_NAMESPACE` (`chopin`): prefix of every Redis key (`<namespace>:<key>`)
    /// and of the invalidation channel; letters, digits, `_`, `.` and `-`.
    pub namespace: String,
    /// `CHOPIN_CACHE_TIMEOUT` (50 ms): how long one Redis round trip may take before the call
    /// gives up (a miss for reads, a no-op for writes, an error for deletes).
    pub timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Memory,
            redis_url: DEFAULT_REDIS_URL.to_string(),
            memory_bytes: DEFAULT_CACHE_MEMORY,
            namespace: DEFAULT_CACHE_NAMESPACE.to_string(),
            timeout: DEFAULT_CACHE_TIMEOUT,
        }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("backend", &self.backend)
            .field("redis_url", &redact_url(&self.redis_url))
            .field("memory_bytes", &self.memory_bytes)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `true` when `namespace` is a valid cache namespace: one or more of `A-Z a-z 0-9 _ . -`.
pub fn is_valid_cache_namespace(namespace: &str) -> bool {
    !namespace.is_empty()
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn parse_redis_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| {
        format!(
            "must be a URL such as redis://127.0.0.1:6379 or redis://:password@host:6379/0 ({e})"
        )
    })?;
    match url.scheme() {
        "redis" if url.host().is_some() => Ok(s.to_string()),
        "redis" => Err("must name a host (redis://host:port)".into()),
        "unix" | "redis+unix" => Ok(s.to_string()),
        "rediss" | "valkeys" => {
            Err("TLS (rediss://) is not supported; use redis:// on a private network".into())
        }
        other => Err(format!(
            "has scheme {other:?}; expected redis://, unix:// or redis+unix://"
        )),
    }
}

/// A secret value from the environment (a signing key). `Debug` prints `***`, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: pass it to the code that needs it, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Shortest accepted `CHOPIN_JWT_SECRET`, in bytes (256 bits, the size of an HS256 key).
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// The JWT signing algorithm, from `CHOPIN_JWT_ALGORITHM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `CHOPIN_JWT_SECRET` (the default).
    #[default]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256, from PEM keys.
    Rs256,
    /// ECDSA P-256 with SHA-256, from PEM keys.
    Es256,
    /// Ed25519, from PEM keys.
    EdDsa,
}

impl JwtAlgorithm {
    /// The name used in `CHOPIN_JWT_ALGORITHM` and in a token's `alg` header.
    pub const fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }
}

impl FromStr for JwtAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "HS256" => Ok(JwtAlgorithm::Hs256),
            "RS256" => Ok(JwtAlgorithm::Rs256),
            "ES256" => Ok(JwtAlgorithm::Es256),
            "EDDSA" => Ok(JwtAlgorithm::EdDsa),
            _ => Err("must be one of HS256, RS256, ES256, EdDSA".into()),
        }
    }
}

/// Where revoked access-token ids are kept, from `CHOPIN_AUTH_REVOCATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SharedStateBackend {
    /// In this process only (the default).
    #[default]
    Memory,
    /// In Redis (`REDIS_URL`, keys under `CHOPIN_CACHE_NAMESPACE`), shared by every instance
    /// (feature `redis`).
    Redis,
}

impl FromStr for SharedStateBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "memory" => Ok(SharedStateBackend::Memory),
            "redis" => Ok(SharedStateBackend::Redis),
            _ => Err("must be memory or redis".into()),
        }
    }
}

/// JWT and auth settings, used by [`Auth::from_config`](crate::auth::Auth::from_config); an
/// application without auth ignores them. See `docs/auth.md`.
///
/// `Debug` never shows the secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `CHOPIN_JWT_ALGORITHM` (`HS256`). The others need both PEM files; `Auth::from_config`
    /// reports missing or unreadable ones.
    pub algorithm: JwtAlgorithm,
    /// `CHOPIN_JWT_SECRET`: the HS256 key, at least 32 bytes. Required in production when the
    /// algorithm is HS256; in development and test a random key is generated when it is unset.
    pub secret: Option<Secret>,
    /// `CHOPIN_JWT_PRIVATE_KEY_FILE`: PEM private key for RS256 / ES256 / EdDSA.
    pub private_key_file: Option<String>,
    /// `CHOPIN_JWT_PUBLIC_KEY_FILE`: PEM public key for RS256 / ES256 / EdDSA.
    pub public_key_file: Option<String>,
    /// `CHOPIN_JWT_KID` (`k1`): the `kid` header of issued tokens.
    pub kid: String,
    /// `CHOPIN_JWT_PREVIOUS_SECRET`: an HS256 key still accepted for verification (rotation);
    /// tokens signed with it carry `CHOPIN_JWT_PREVIOUS_KID`.
    pub previous_secret: Option<Secret>,
    /// `CHOPIN_JWT_PREVIOUS_KID` (`k0`).
    pub previous_kid: String,
    /// `CHOPIN_JWT_ISSUER`: the `iss` claim issued and required (unset: neither).
    pub issuer: Option<String>,
    /// `CHOPIN_JWT_AUDIENCE`: the `aud` claim issued and required (unset: neither).
    pub audience: Option<String>,
    /// `CHOPIN_JWT_ACCESS_TTL` (`15m`): lifetime of an access token.
    pub access_ttl: Duration,
    /// `CHOPIN_JWT_REFRESH_TTL` (`30d`): lifetime of a refresh token.
    pub refresh_ttl: Duration,
    /// `CHOPIN_JWT_LEEWAY` (`30s`): clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// `CHOPIN_AUTH_COOKIE`: also read the access token from this cookie (unset: header only).
    pub cookie: Option<String>,
    /// `CHOPIN_AUTH_REVOCATION` (`memory`): where revoked token ids live.
    pub revocation: SharedStateBackend,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            algorithm: JwtAlgorithm::Hs256,
            secret: None,
            private_key_file: None,
            public_key_file: None,
            kid: "k1".into(),
            previous_secret: None,
            previous_kid: "k0".into(),
            issuer: None,
            audience: None,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            leeway: Duration::from_secs(30),
            cookie: None,
            revocation: SharedStateBackend::Memory,
        }
    }
}

/// A rate: `burst` requests at once, refilled at `burst` per `period`, from
/// `CHOPIN_RATE_LIMIT` (`100/1m`, `10/s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (and at once).
    pub burst: u32,
    /// The period over which `burst` requests are allowed.
    pub period: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || "must be <requests>/<period> such as 100/1m or 10/s".to_string();
        let (n, period) = s.split_once('/').ok_or_else(bad)?;
        let burst = n.trim().parse::<u32>().map_err(|_| bad())?;
        let period = period.trim();
        let period = match period {
            "s" | "sec" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => parse_duration(other).map_err(|_| bad())?,
        };
        if burst == 0 || period.is_zero() {
            return Err("must allow at least one request per non-zero period".into());
        }
        Ok(Rate { burst, period })
    }
}

/// Rate-limit settings, used by
/// [`RateLimitLayer::from_config`](crate::rate_limit::RateLimitLayer::from_config) and by
/// [`App`](crate::App), which installs the layer when a rate is set. See `docs/security.md`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitConfig {
    /// `CHOPIN_RATE_LIMIT` (unset or `off`: no limit): requests per client.
    pub rate: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_BACKEND` (`memory`): `redis` shares the counters between instances.
    pub backend: SharedStateBackend,
}

/// Security settings: trusted proxies and response headers. See `docs/security.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `CHOPIN_TRUSTED_PROXIES`: comma-separated IPs or CIDR blocks of reverse proxies whose
    /// `X-Forwarded-For` is believed (unset: none; the socket address is the client).
    pub trusted_proxies: Vec<IpNet>,
    /// `CHOPIN_SECURITY_HEADERS` (`true`): `X-Content-Type-Options`, `X-Frame-Options`,
    /// `Referrer-Policy` and (in production) HSTS on every response.
    pub headers: bool,
    /// `CHOPIN_HSTS` (on in production): send `Strict-Transport-Security`.
    pub hsts: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            trusted_proxies: Vec::new(),
            headers: true,
            hsts: false,
        }
    }
}

/// An IP network (`10.0.0.0/8`, `::1/128`); a bare address is a one-address network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The network address.
    pub addr: std::net::IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl IpNet {
    /// `true` when `ip` lies in this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{s:?} has an invalid prefix length")),
            },
        };
        Ok(IpNet { addr, prefix })
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
}

/// One invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The environment variable.
    pub variable: &'static str,
    /// The offending value, as given.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Start-up error listing every invalid configuration value.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// All problems found, in variable order.
    pub problems: Vec<ConfigProblem>,
}

/// `Debug` prints the readable list too, so `main` returning `Result<_, Box<dyn Error>>` shows
/// a useful message when configuration fails.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.problems {
            write!(f, "\n  {}={:?}: {}", p.variable, p.value, p.problem)?;
        }
        Ok(())
    }
}

/// Reads variables and records problems.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<ConfigProblem>,
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    fn problem(&mut self, variable: &'static str, value: &str, problem: impl Into<String>) {
        self.problems.push(ConfigProblem {
            variable,
            value: value.to_string(),
            problem: problem.into(),
        });
    }

    /// Parse with `parse`; a missing variable gives `None`, an invalid one a problem.
    fn get<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.raw(name)?;
        match parse(raw.trim()) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.problem(name, &raw, problem);
                None
            }
        }
    }

    /// Like [`Reader::get`], but an invalid value is reported as `***`: secrets never reach
    /// an error message.
    fn get_secret<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.raw(name)?;
        match parse(raw.trim()) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.problem(name, "***", problem);
                None
            }
        }
    }
}

/// Parse a duration such as `500ms`, `30s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("must be a duration such as 500ms, 30s or 2m ({e})"))
}

fn parse_optional_duration(s: &str) -> Result<Option<Duration>, String> {
    match s.to_ascii_lowercase().as_str() {
        "off" | "none" => Ok(None),
        // A zero timeout would fail every request: zero means off, however it is written.
        _ => parse_duration(s).map(|d| (!d.is_zero()).then_some(d)),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let bytes = match s.parse::<u64>() {
        Ok(n) => n,
        Err(_) => s
            .parse::<bytesize::ByteSize>()
            .map_err(|_| "must be a size such as 1048576, 512KiB or 2MiB".to_string())?
            .as_u64(),
    };
    usize::try_from(bytes).map_err(|_| "is too large".to_string())
}

fn parse_positive<T: FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err("must be a positive whole number".into()),
    }
}

fn parse_origin(origin: &str) -> Result<String, String> {
    if origin == "*" {
        return Ok(origin.to_string());
    }
    let url = url::Url::parse(origin).map_err(|_| format!("{origin:?} is not a URL"))?;
    let valid = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && !origin.ends_with('/');
    if !valid {
        return Err(format!(
            "{origin:?} is not an origin (expected scheme://host[:port], no path)"
        ));
    }
    Ok(origin.to_string())
}

impl Config {
    /// Read the configuration from the process environment, plus `.env` in development.
    ///
    /// `.env` is read only when `CHOPIN_ENV` is unset or `development`; variables already set
    /// in the environment take precedence over it. The file is read, never written into the
    /// process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let env_name = std::env::var("CHOPIN_ENV")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let development = env_name
            .as_deref()
            .map(|v| v.trim().parse::<Environment>() == Ok(Environment::Development))
            .unwrap_or(true);
        let mut dotenv = HashMap::new();
        if development && let Ok(iter) = dotenvy::from_path_iter(".env") {
            for (key, value) in iter.flatten() {
                dotenv.insert(key, value);
            }
        }
        Config::from_lookup(|name| {
            let from_process = std::env::var(name).ok();
            if name == "CHOPIN_ENV" {
                // The environment decides whether `.env` is read, so `.env` cannot change it.
                return from_process;
            }
            from_process.or_else(|| dotenv.get(name).cloned())
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
        };
        if let (Some(min), Some(max)) = (database.min_connections, database.max_connections)
            && min > max
        {
            r.problem(
                "DATABASE_MIN_CONNECTIONS",
                &min.to_string(),
                format!("must not exceed DATABASE_MAX_CONNECTIONS ({max})"),
            );
        }

        let mut origins = Vec::new();
        if let Some(raw) = r.raw("CHOPIN_CORS_ORIGINS") {
            for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                match parse_origin(origin) {
                    Ok(o) => origins.push(o),
                    Err(problem) => r.problem("CHOPIN_CORS_ORIGINS", &raw, problem),
                }
            }
        }
        let allow_credentials = r
            .get("CHOPIN_CORS_CREDENTIALS", parse_bool)
            .unwrap_or(false);
        if allow_credentials && origins.iter().any(|o| o == "*") {
            r.problem(
                "CHOPIN_CORS_CREDENTIALS",
                "true",
                "cannot be combined with CHOPIN_CORS_ORIGINS=* (list the allowed origins)",
            );
        }

        let http = HttpConfig {
            body_limit: r
                .get("CHOPIN_BODY_LIMIT", parse_size)
                .unwrap_or(DEFAULT_BODY_LIMIT),
            request_timeout: r
                .get("CHOPIN_REQUEST_TIMEOUT", parse_optional_duration)
                .unwrap_or(Some(Duration::from_secs(30))),
            shutdown_timeout: r
                .get("CHOPIN_SHUTDOWN_TIMEOUT", parse_duration)
                .unwrap_or(Duration::from_secs(30)),
            compression: r.get("CHOPIN_COMPRESSION", parse_bool).unwrap_or(true),
            cors: CorsConfig {
                origins,
                allow_credentials,
            },
        };

        // `CHOPIN_LOG` wins; `RUST_LOG`, the variable every Rust tool reads, is honoured when
        // it is unset. The filter is checked under the name of the variable it came from.
        let (filter_variable, filter) = match r.raw("CHOPIN_LOG") {
            Some(filter) => ("CHOPIN_LOG", filter),
            None => match r.raw("RUST_LOG") {
                Some(filter) => ("RUST_LOG", filter),
                None => ("CHOPIN_LOG", DEFAULT_LOG_FILTER.to_string()),
            },
        };
        let log = LogConfig {
            filter: filter.trim().to_string(),
            format: r
                .get("CHOPIN_LOG_FORMAT", |s| {
                    match s.to_ascii_lowercase().as_str() {
                        "text" => Ok(LogFormat::Text),
                        "json" => Ok(LogFormat::Json),
                        _ => Err("must be text or json".to_string()),
                    }
                })
                .unwrap_or(if environment.is_production() {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                }),
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.filter) {
            let filter = log.filter.clone();
            r.problem(
                filter_variable,
                &filter,
                format!("is not a valid filter ({e})"),
            );
        }

        let path = |s: &str| {
            if s.starts_with('/') && !s.contains(['?', '#', ' ']) {
                Ok(s.to_string())
            } else {
                Err("must be a path starting with /".to_string())
            }
        };
        let openapi = OpenApiConfig {
            enabled: r
                .get("CHOPIN_OPENAPI", parse_bool)
                .unwrap_or(!environment.is_production()),
            spec_path: r
                .get("CHOPIN_OPENAPI_PATH", path)
                .unwrap_or_else(|| "/openapi.json".into()),
            ui_path: r
                .get("CHOPIN_DOCS_PATH", path)
                .unwrap_or_else(|| "/docs".into()),
        };

        let defaults = PaginationConfig::default();
        let max_limit = r
            .get("CHOPIN_PAGINATION_MAX_LIMIT", parse_positive::<u64>)
            .unwrap_or(defaults.max_limit);
        let default_limit = r
            .get("CHOPIN_PAGINATION_DEFAULT_LIMIT", parse_positive::<u64>)
            .unwrap_or(defaults.default_limit.min(max_limit));
        let overflow = r
            .get("CHOPIN_PAGINATION_OVERFLOW", |s| s.parse::<LimitOverflow>())
            .unwrap_or(defaults.overflow);
        if default_limit > max_limit {
            r.problem(
                "CHOPIN_PAGINATION_DEFAULT_LIMIT",
                &default_limit.to_string(),
                format!("must not exceed CHOPIN_PAGINATION_MAX_LIMIT ({max_limit})"),
            );
        }

        let cache_defaults = CacheConfig::default();
        let cache = CacheConfig {
            backend: r
                .get("CHOPIN_CACHE", |s| s.parse::<CacheBackend>())
                .unwrap_or(cache_defaults.backend),
            redis_url: r
                .get("REDIS_URL", parse_redis_url)
                .unwrap_or(cache_defaults.redis_url),
            memory_bytes: r
                .get("CHOPIN_CACHE_MEMORY", |s| match parse_size(s) {
                    Ok(0) => Err("must be larger than 0".to_string()),
                    Ok(n) => Ok(n as u64),
                    Err(e) => Err(e),
                })
                .unwrap_or(cache_defaults.memory_bytes),
            namespace: r
                .get("CHOPIN_CACHE_NAMESPACE", |s| {
                    if is_valid_cache_namespace(s) {
                        Ok(s.to_string())
                    } else {
                        Err("must be letters, digits, '_', '.' or '-' only".to_string())
                    }
                })
                .unwrap_or(cache_defaults.namespace),
            timeout: r
                .get("CHOPIN_CACHE_TIMEOUT", |s| match parse_duration(s) {
                    Ok(d) if d.is_zero() => Err("must be longer than 0".to_string()),
                    other => other,
                })
                .unwrap_or(cache_defaults.timeout),
        };

        let auth_defaults = AuthConfig::default();
        let secret = |s: &str| {
            if s.len() < MIN_JWT_SECRET_LEN {
                Err(format!(
                    "must be at least {MIN_JWT_SECRET_LEN} bytes (generate one with `openssl rand -base64 48`)"
                ))
            } else {
                Ok(Secret::new(s))
            }
        };
        let kid = |s: &str| {
            if !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                Ok(s.to_string())
            } else {
                Err("must be 1-64 letters, digits, '_', '.' or '-'".to_string())
            }
        };
        let positive_duration = |s: &str| match parse_duration(s) {
            Ok(d) if d.is_zero() => Err("must be longer than 0".to_string()),
            other => other,
        };
        let auth = AuthConfig {
            algorithm: r
                .get("CHOPIN_JWT_ALGORITHM", |s| s.parse::<JwtAlgorithm>())
                .unwrap_or_default(),
            secret: r.get_secret("CHOPIN_JWT_SECRET", secret),
            private_key_file: r.raw("CHOPIN_JWT_PRIVATE_KEY_FILE"),
            public_key_file: r.raw("CHOPIN_JWT_PUBLIC_KEY_FILE"),
            kid: r.get("CHOPIN_JWT_KID", kid).unwrap_or(auth_defaults.kid),
            previous_secret: r.get_secret("CHOPIN_JWT_PREVIOUS_SECRET", secret),
            previous_kid: r
                .get("CHOPIN_JWT_PREVIOUS_KID", kid)
                .unwrap_or(auth_defaults.previous_kid),
            issuer: r.raw("CHOPIN_JWT_ISSUER"),
            audience: r.raw("CHOPIN_JWT_AUDIENCE"),
            access_ttl: r
                .get("CHOPIN_JWT_ACCESS_TTL", positive_duration)
                .unwrap_or(auth_defaults.access_ttl),
            refresh_ttl: r
                .get("CHOPIN_JWT_REFRESH_TTL", positive_duration)
                .unwrap_or(auth_defaults.refresh_ttl),
            leeway: r
                .get("CHOPIN_JWT_LEEWAY", parse_duration)
                .unwrap_or(auth_defaults.leeway),
            cookie: r.get("CHOPIN_AUTH_COOKIE", |s| {
                if s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                {
                    Ok(s.to_string())
                } else {
                    Err("must be a cookie name (letters, digits, '_', '-', '.')".to_string())
                }
            }),
            revocation: r
                .get("CHOPIN_AUTH_REVOCATION", |s| {
                    s.parse::<SharedStateBackend>()
                })
                .unwrap_or_default(),
        };
        if auth.previous_secret.is_some() && auth.previous_kid == auth.kid {
            let value = auth.previous_kid.clone();
            r.problem(
                "CHOPIN_JWT_PREVIOUS_KID",
                &value,
                "must differ from CHOPIN_JWT_KID",
            );
        }

        let rate_limit = RateLimitConfig {
            rate: r
                .get("CHOPIN_RATE_LIMIT", |s| {
                    match s.to_ascii_lowercase().as_str() {
                        "off" | "none" => Ok(None),
                        _ => s.parse::<Rate>().map(Some),
                    }
                })
                .flatten(),
            backend: r
                .get("CHOPIN_RATE_LIMIT_BACKEND", |s| {
                    s.parse::<SharedStateBackend>()
                })
                .unwrap_or_default(),
        };

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

        let mut trusted_proxies = Vec::new();
        if let Some(raw) = r.raw("CHOPIN_TRUSTED_PROXIES") {
            for net in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match net.parse::<IpNet>() {
                    Ok(n) => trusted_proxies.push(n),
                    Err(problem) => r.problem("CHOPIN_TRUSTED_PROXIES", &raw, problem),
                }
            }
        }
        let security = SecurityConfig {
            trusted_proxies,
            headers: r.get("CHOPIN_SECURITY_HEADERS", parse_bool).unwrap_or(true),
            hsts: r
                .get("CHOPIN_HSTS", parse_bool)
                .unwrap_or(environment.is_production()),
        };

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
            pagination: PaginationConfig {
                default_limit,
                max_limit,
                overflow,
            },
            cache,
            auth,
            rate_limit,
            security,
        })
    }

    /// The configuration an empty environment gives, for the given environment: handy in tests.
    pub fn for_environment(environment: Environment) -> Config {
        let name = match environment {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Production => "production",
        };
        Config::from_lookup(|v| (v == "CHOPIN_ENV").then(|| name.to_string()))
            .unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
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
    fn cors_wildcard_with_credentials_is_refused() {
        let err = from(&[
            ("CHOPIN_CORS_ORIGINS", "*"),
            ("CHOPIN_CORS_CREDENTIALS", "true"),
        ])
        .unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_CORS_CREDENTIALS");
    }

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

    #[test]
    fn log_filter_falls_back_to_rust_log() {
        assert_eq!(from(&[]).unwrap().log.filter, "info");
        let c = from(&[("RUST_LOG", "warn,my_app=debug")]).unwrap();
        assert_eq!(c.log.filter, "warn,my_app=debug");
        let c = from(&[("RUST_LOG", "warn"), ("CHOPIN_LOG", "debug")]).unwrap();
        assert_eq!(c.log.filter, "debug", "CHOPIN_LOG wins over RUST_LOG");
        let c = from(&[("RUST_LOG", "  ")]).unwrap();
        assert_eq!(c.log.filter, "info", "a blank RUST_LOG is unset");
        let err = from(&[("RUST_LOG", "info,[[[")]).unwrap_err();
        assert_eq!(err.problems[0].variable, "RUST_LOG");
    }

    #[test]
    fn pagination_overflow() {
        assert_eq!(
            from(&[]).unwrap().pagination.overflow,
            LimitOverflow::Reject
        );
        let c = from(&[("CHOPIN_PAGINATION_OVERFLOW", "clamp")]).unwrap();
        assert_eq!(c.pagination.overflow, LimitOverflow::Clamp);
        let err = from(&[("CHOPIN_PAGINATION_OVERFLOW", "truncate")]).unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_PAGINATION_OVERFLOW");
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
    fn cache_settings() {
        let c = from(&[]).unwrap();
        assert_eq!(c.cache, CacheConfig::default());
        let c = from(&[
            ("CHOPIN_CACHE", "Tiered"),
            ("REDIS_URL", "redis://:hunter2@cache:6380/2"),
            ("CHOPIN_CACHE_MEMORY", "1MiB"),
            ("CHOPIN_CACHE_NAMESPACE", "my-app.v2"),
            ("CHOPIN_CACHE_TIMEOUT", "250ms"),
        ])
        .unwrap();
        assert_eq!(c.cache.backend, CacheBackend::Tiered);
        assert_eq!(c.cache.memory_bytes, 1024 * 1024);
        assert_eq!(c.cache.namespace, "my-app.v2");
        assert_eq!(c.cache.timeout, Duration::from_millis(250));
        assert!(!format!("{c:?}").contains("hunter2"));
        let err =
            from(&[("CHOPIN_CACHE_NAMESPACE", "a:b"), ("REDIS_URL", "http://x")]).unwrap_err();
        let vars: Vec<&str> = err.problems.iter().map(|p| p.variable).collect();
        assert_eq!(vars, vec!["REDIS_URL", "CHOPIN_CACHE_NAMESPACE"]);
    }
}
