//! Configuration: every documented variable is read and has an effect, invalid values are
//! start-up errors naming the variable, and secrets never reach `Debug` output.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chopin_core::cache::CacheBackend;
use chopin_core::config::{ConfigError, JwtAlgorithm, LogFormat, SharedStateBackend, redact_url};
use chopin_core::extractors::LimitOverflow;
use chopin_core::prelude::*;

/// Every variable documented in `chopin_core::config`.
const DOCUMENTED: [&str; 92] = [
    "CHOPIN_ENV",
    "CHOPIN_HOST",
    "CHOPIN_PORT",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_MIN_CONNECTIONS",
    "DATABASE_ACQUIRE_TIMEOUT",
    "DATABASE_IDLE_TIMEOUT",
    "DATABASE_MAX_LIFETIME",
    "CHOPIN_DB_BREAKER",
    "CHOPIN_DB_BREAKER_THRESHOLD",
    "CHOPIN_DB_PROBE_INTERVAL",
    "CHOPIN_DB_SLOW_QUERY",
    "CHOPIN_DB_STATEMENT_TIMEOUT",
    "CHOPIN_DB_STREAM_SEND_TIMEOUT",
    "CHOPIN_DB_STREAM_DEADLINE",
    "CHOPIN_DB_MAX_STREAMS",
    "CHOPIN_METRICS_ADDR",
    "CHOPIN_METRICS_ON_MAIN",
    "CHOPIN_METRICS_TOKEN",
    "CHOPIN_CORS_ORIGINS",
    "CHOPIN_CORS_CREDENTIALS",
    "CHOPIN_BODY_LIMIT",
    "CHOPIN_REQUEST_TIMEOUT",
    "CHOPIN_SHUTDOWN_DELAY",
    "CHOPIN_SHUTDOWN_TIMEOUT",
    "CHOPIN_COMPRESSION",
    "CHOPIN_LOG",
    "RUST_LOG",
    "CHOPIN_LOG_FORMAT",
    "CHOPIN_OPENAPI",
    "CHOPIN_OPENAPI_PATH",
    "CHOPIN_DOCS_PATH",
    "CHOPIN_PAGINATION_DEFAULT_LIMIT",
    "CHOPIN_PAGINATION_MAX_LIMIT",
    "CHOPIN_PAGINATION_OVERFLOW",
    "CHOPIN_CURSOR_SECRET",
    "CHOPIN_CURSOR_TTL",
    "CHOPIN_CACHE",
    "REDIS_URL",
    "CHOPIN_CACHE_MEMORY",
    "CHOPIN_CACHE_NAMESPACE",
    "CHOPIN_CACHE_TIMEOUT",
    "CHOPIN_CACHE_HEADER",
    "CHOPIN_JWT_ALGORITHM",
    "CHOPIN_JWT_SECRET",
    "CHOPIN_JWT_PRIVATE_KEY_FILE",
    "CHOPIN_JWT_PUBLIC_KEY_FILE",
    "CHOPIN_JWT_KID",
    "CHOPIN_JWT_PREVIOUS_SECRET",
    "CHOPIN_JWT_PREVIOUS_KID",
    "CHOPIN_JWT_ISSUER",
    "CHOPIN_JWT_AUDIENCE",
    "CHOPIN_JWT_ACCESS_TTL",
    "CHOPIN_JWT_REFRESH_TTL",
    "CHOPIN_JWT_LEEWAY",
    "CHOPIN_JWT_ACCEPT_UNTYPED",
    "CHOPIN_AUTH_COOKIE",
    "CHOPIN_AUTH_REVOCATION",
    "CHOPIN_AUTH_MAIL_QUEUE",
    "CHOPIN_AUTH_MAIL_WORKERS",
    "CHOPIN_RATE_LIMIT",
    "CHOPIN_RATE_LIMIT_IP",
    "CHOPIN_RATE_LIMIT_LOGIN",
    "CHOPIN_RATE_LIMIT_LOGIN_FAILURES",
    "CHOPIN_RATE_LIMIT_SIGNUP",
    "CHOPIN_RATE_LIMIT_PASSWORD_RESET",
    "CHOPIN_RATE_LIMIT_PASSWORD_RESET_IP",
    "CHOPIN_RATE_LIMIT_VERIFICATION",
    "CHOPIN_RATE_LIMIT_REFRESH",
    "CHOPIN_RATE_LIMIT_BACKEND",
    "CHOPIN_TRUSTED_PROXIES_ALLOW_ANY",
    "CHOPIN_TRUSTED_PROXIES",
    "CHOPIN_SECURITY_HEADERS",
    "CHOPIN_HSTS",
    "CHOPIN_SMTP_URL",
    "CHOPIN_SMTP_FROM",
    "CHOPIN_PUBLIC_URL",
    "CHOPIN_HEADER_TIMEOUT",
    "CHOPIN_KEEP_ALIVE_TIMEOUT",
    "CHOPIN_MAX_CONNECTION_AGE",
    "CHOPIN_MAX_HEADER_SIZE",
    "CHOPIN_WRITE_TIMEOUT",
    "CHOPIN_MAX_CONNECTIONS",
    "CHOPIN_HTTP2_MAX_STREAMS",
    "CHOPIN_HTTP2_KEEP_ALIVE_INTERVAL",
    "CHOPIN_HTTP2_KEEP_ALIVE_TIMEOUT",
    "CHOPIN_HTTP2_MAX_PENDING_RESETS",
    "CHOPIN_HTTP2_MAX_LOCAL_ERROR_RESETS",
    "CHOPIN_TCP_NODELAY",
    "CHOPIN_LISTEN_BACKLOG",
    "CHOPIN_WORKERS",
];

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

fn ok(vars: &[(&str, &str)]) -> Config {
    load(vars).unwrap_or_else(|e| panic!("{vars:?} should be valid: {e}"))
}

#[test]
fn reads_exactly_the_documented_variables() {
    let asked = RefCell::new(BTreeSet::new());
    Config::from_lookup(|k| {
        asked.borrow_mut().insert(k.to_string());
        None
    })
    .unwrap();
    let asked = asked.into_inner();
    let documented: BTreeSet<String> = DOCUMENTED.iter().map(|s| s.to_string()).collect();
    assert_eq!(asked, documented);
}

#[test]
fn defaults() {
    let c = ok(&[]);
    assert_eq!(c.environment, Environment::Development);
    assert_eq!(c.host, "127.0.0.1");
    assert_eq!(c.port, 3000);
    assert_eq!(c.database.url, "sqlite://chopin.db");
    assert_eq!(c.database.max_connections, None);
    assert_eq!(c.database.min_connections, None);
    assert_eq!(c.database.acquire_timeout, None);
    assert_eq!(c.database.idle_timeout, None);
    assert_eq!(c.database.max_lifetime, None);
    assert!(c.http.cors.origins.is_empty());
    assert!(!c.http.cors.allow_credentials);
    assert!(!c.http.cors.is_open());
    assert_eq!(c.http.body_limit, 2 * 1024 * 1024);
    assert_eq!(c.http.request_timeout, Some(Duration::from_secs(30)));
    assert_eq!(c.http.shutdown_timeout, Duration::from_secs(30));
    assert!(c.http.compression);
    assert_eq!(c.log.filter, "info");
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(c.openapi.enabled);
    assert_eq!(c.openapi.spec_path, "/openapi.json");
    assert_eq!(c.openapi.ui_path, "/docs");
    assert_eq!(c.pagination.default_limit, 20);
    assert_eq!(c.pagination.max_limit, 100);
    assert_eq!(c.cache.backend, CacheBackend::Memory);
    assert_eq!(c.cache.redis_url, "redis://127.0.0.1:6379");
    assert_eq!(c.cache.memory_bytes, 64 * 1024 * 1024);
    assert_eq!(c.cache.namespace, "chopin");
    assert_eq!(c.cache.timeout, Duration::from_millis(50));
    assert_eq!(c, Config::for_environment(Environment::Development));
}

#[test]
fn environment_dependent_defaults() {
    let p = Config::for_environment(Environment::Production);
    assert_eq!(p.environment, Environment::Production);
    assert!(!p.openapi.enabled, "docs off in production");
    assert_eq!(p.log.format, LogFormat::Json);
    let t = Config::for_environment(Environment::Test);
    assert!(t.openapi.enabled);
    assert_eq!(t.log.format, LogFormat::Text);
    for (raw, env) in [
        ("development", Environment::Development),
        ("dev", Environment::Development),
        ("TEST", Environment::Test),
        ("Production", Environment::Production),
        ("prod", Environment::Production),
    ] {
        assert_eq!(ok(&[("CHOPIN_ENV", raw)]).environment, env, "{raw}");
    }
    assert!(
        ok(&[("CHOPIN_ENV", "production"), ("CHOPIN_OPENAPI", "true")])
            .openapi
            .enabled
    );
    assert!(
        !ok(&[("CHOPIN_ENV", "test"), ("CHOPIN_OPENAPI", "false")])
            .openapi
            .enabled
    );
    assert_eq!(
        ok(&[("CHOPIN_ENV", "production"), ("CHOPIN_LOG_FORMAT", "text")])
            .log
            .format,
        LogFormat::Text
    );
}

#[test]
fn every_variable_has_an_effect() {
    type Check = fn(&Config) -> bool;
    let cases: Vec<(&str, &str, Check)> = vec![
        ("CHOPIN_ENV", "test", |c| c.environment == Environment::Test),
        ("CHOPIN_HOST", "0.0.0.0", |c| c.host == "0.0.0.0"),
        ("CHOPIN_PORT", "8080", |c| c.port == 8080),
        ("CHOPIN_PORT", "0", |c| c.port == 0),
        ("DATABASE_URL", "postgres://db/app", |c| {
            c.database.url == "postgres://db/app"
        }),
        ("DATABASE_MAX_CONNECTIONS", "7", |c| {
            c.database.max_connections == Some(7)
        }),
        ("DATABASE_MIN_CONNECTIONS", "0", |c| {
            c.database.min_connections == Some(0)
        }),
        ("DATABASE_ACQUIRE_TIMEOUT", "250ms", |c| {
            c.database.acquire_timeout == Some(Duration::from_millis(250))
        }),
        ("DATABASE_IDLE_TIMEOUT", "2m", |c| {
            c.database.idle_timeout == Some(Duration::from_secs(120))
        }),
        ("DATABASE_MAX_LIFETIME", "3600", |c| {
            c.database.max_lifetime == Some(Duration::from_secs(3600))
        }),
        ("CHOPIN_DB_BREAKER", "false", |c| {
            !c.database.breaker.enabled
        }),
        ("CHOPIN_DB_BREAKER_THRESHOLD", "9", |c| {
            c.database.breaker.threshold == 9
        }),
        ("CHOPIN_DB_PROBE_INTERVAL", "2s", |c| {
            c.database.breaker.probe_interval == Duration::from_secs(2)
        }),
        (
            "CHOPIN_CORS_ORIGINS",
            "https://a.example, http://localhost:5173",
            |c| c.http.cors.origins == ["https://a.example", "http://localhost:5173"],
        ),
        ("CHOPIN_CORS_CREDENTIALS", "yes", |c| {
            c.http.cors.allow_credentials
        }),
        ("CHOPIN_BODY_LIMIT", "512KiB", |c| {
            c.http.body_limit == 512 * 1024
        }),
        ("CHOPIN_BODY_LIMIT", "1000", |c| c.http.body_limit == 1000),
        ("CHOPIN_REQUEST_TIMEOUT", "off", |c| {
            c.http.request_timeout.is_none()
        }),
        ("CHOPIN_REQUEST_TIMEOUT", "1500ms", |c| {
            c.http.request_timeout == Some(Duration::from_millis(1500))
        }),
        ("CHOPIN_SHUTDOWN_DELAY", "2s", |c| {
            c.http.shutdown_delay == Duration::from_secs(2)
        }),
        ("CHOPIN_SHUTDOWN_TIMEOUT", "10s", |c| {
            c.http.shutdown_timeout == Duration::from_secs(10)
        }),
        ("CHOPIN_COMPRESSION", "false", |c| !c.http.compression),
        ("CHOPIN_LOG", "info,my_app=debug", |c| {
            c.log.filter == "info,my_app=debug"
        }),
        ("RUST_LOG", "warn,my_app=trace", |c| {
            c.log.filter == "warn,my_app=trace"
        }),
        ("CHOPIN_LOG_FORMAT", "json", |c| {
            c.log.format == LogFormat::Json
        }),
        ("CHOPIN_OPENAPI", "off", |c| !c.openapi.enabled),
        ("CHOPIN_OPENAPI_PATH", "/api/spec.json", |c| {
            c.openapi.spec_path == "/api/spec.json"
        }),
        ("CHOPIN_DOCS_PATH", "/api/docs", |c| {
            c.openapi.ui_path == "/api/docs"
        }),
        ("CHOPIN_PAGINATION_DEFAULT_LIMIT", "50", |c| {
            c.pagination.default_limit == 50
        }),
        ("CHOPIN_PAGINATION_MAX_LIMIT", "500", |c| {
            c.pagination.max_limit == 500
        }),
        ("CHOPIN_PAGINATION_OVERFLOW", "clamp", |c| {
            c.pagination.overflow == LimitOverflow::Clamp
        }),
        (
            "CHOPIN_CURSOR_SECRET",
            "0123456789abcdef0123456789abcdef-cursors",
            |c| {
                c.cursor.secret.as_ref().map(|s| s.expose())
                    == Some("0123456789abcdef0123456789abcdef-cursors")
            },
        ),
        ("CHOPIN_CURSOR_TTL", "10m", |c| {
            c.cursor.ttl == Duration::from_secs(600)
        }),
        ("CHOPIN_CACHE", "redis", |c| {
            c.cache.backend == CacheBackend::Redis
        }),
        ("CHOPIN_CACHE", "TIERED", |c| {
            c.cache.backend == CacheBackend::Tiered
        }),
        ("REDIS_URL", "redis://cache.internal:6380/2", |c| {
            c.cache.redis_url == "redis://cache.internal:6380/2"
        }),
        ("REDIS_URL", "unix:///run/redis.sock", |c| {
            c.cache.redis_url == "unix:///run/redis.sock"
        }),
        ("CHOPIN_CACHE_MEMORY", "256MiB", |c| {
            c.cache.memory_bytes == 256 * 1024 * 1024
        }),
        ("CHOPIN_CACHE_MEMORY", "1000000", |c| {
            c.cache.memory_bytes == 1_000_000
        }),
        ("CHOPIN_CACHE_NAMESPACE", "shop-v2.eu_1", |c| {
            c.cache.namespace == "shop-v2.eu_1"
        }),
        ("CHOPIN_CACHE_HEADER", "false", |c| !c.cache.x_cache_header),
        ("CHOPIN_CACHE_TIMEOUT", "250ms", |c| {
            c.cache.timeout == Duration::from_millis(250)
        }),
        ("CHOPIN_CACHE_TIMEOUT", "1", |c| {
            c.cache.timeout == Duration::from_secs(1)
        }),
        ("CHOPIN_JWT_ALGORITHM", "es256", |c| {
            c.auth.algorithm == JwtAlgorithm::Es256
        }),
        (
            "CHOPIN_JWT_SECRET",
            "0123456789abcdef0123456789abcdef",
            |c| {
                c.auth.secret.as_ref().map(|s| s.expose())
                    == Some("0123456789abcdef0123456789abcdef")
            },
        ),
        ("CHOPIN_JWT_PRIVATE_KEY_FILE", "/run/keys/jwt.key", |c| {
            c.auth.private_key_file.as_deref() == Some("/run/keys/jwt.key")
        }),
        ("CHOPIN_JWT_PUBLIC_KEY_FILE", "/run/keys/jwt.pub", |c| {
            c.auth.public_key_file.as_deref() == Some("/run/keys/jwt.pub")
        }),
        ("CHOPIN_JWT_KID", "2026-11", |c| c.auth.kid == "2026-11"),
        (
            "CHOPIN_JWT_PREVIOUS_SECRET",
            "fedcba9876543210fedcba9876543210",
            |c| c.auth.previous_secret.is_some(),
        ),
        ("CHOPIN_JWT_PREVIOUS_KID", "2026-10", |c| {
            c.auth.previous_kid == "2026-10"
        }),
        ("CHOPIN_JWT_ISSUER", "https://api.example", |c| {
            c.auth.issuer.as_deref() == Some("https://api.example")
        }),
        ("CHOPIN_JWT_AUDIENCE", "mobile", |c| {
            c.auth.audience.as_deref() == Some("mobile")
        }),
        ("CHOPIN_JWT_ACCESS_TTL", "5m", |c| {
            c.auth.access_ttl == Duration::from_secs(300)
        }),
        ("CHOPIN_JWT_REFRESH_TTL", "7d", |c| {
            c.auth.refresh_ttl == Duration::from_secs(7 * 86400)
        }),
        ("CHOPIN_JWT_LEEWAY", "0", |c| c.auth.leeway.is_zero()),
        ("CHOPIN_SMTP_URL", "smtps://mailer:pw@mail.example", |c| {
            c.mail
                .smtp
                .as_ref()
                .is_some_and(|s| s.host == "mail.example")
        }),
        ("CHOPIN_SMTP_FROM", "noreply@app.example", |c| {
            c.mail.from.as_deref() == Some("noreply@app.example")
        }),
        ("CHOPIN_PUBLIC_URL", "https://app.example", |c| {
            c.mail.public_url.as_ref().map(|u| u.as_str()) == Some("https://app.example/")
        }),
        ("CHOPIN_JWT_LEEWAY", "5m", |c| {
            c.auth.leeway == Duration::from_secs(300)
        }),
        ("CHOPIN_JWT_ACCEPT_UNTYPED", "true", |c| {
            c.auth.accept_untyped
        }),
        ("CHOPIN_AUTH_COOKIE", "access_token", |c| {
            c.auth.cookie.as_deref() == Some("access_token")
        }),
        ("CHOPIN_AUTH_REVOCATION", "redis", |c| {
            c.auth.revocation == SharedStateBackend::Redis
        }),
        ("CHOPIN_AUTH_MAIL_QUEUE", "16", |c| c.auth.mail_queue == 16),
        ("CHOPIN_AUTH_MAIL_WORKERS", "2", |c| {
            c.auth.mail_workers == 2
        }),
        ("CHOPIN_RATE_LIMIT", "100/1m", |c| {
            c.rate_limit
                .rate
                .is_some_and(|r| r.burst == 100 && r.period == Duration::from_secs(60))
        }),
        ("CHOPIN_RATE_LIMIT_BACKEND", "redis", |c| {
            c.rate_limit.backend == SharedStateBackend::Redis
        }),
        ("CHOPIN_RATE_LIMIT_IP", "500/1m", |c| {
            c.rate_limit.ip_rate.is_some_and(|r| r.burst == 500)
        }),
        ("CHOPIN_RATE_LIMIT_LOGIN", "3/1m", |c| {
            c.rate_limit.auth.login.is_some_and(|r| r.burst == 3)
        }),
        ("CHOPIN_RATE_LIMIT_LOGIN_FAILURES", "off", |c| {
            c.rate_limit.auth.login_failures.is_none()
        }),
        ("CHOPIN_RATE_LIMIT_SIGNUP", "off", |c| {
            c.rate_limit.auth.signup.is_none()
        }),
        ("CHOPIN_RATE_LIMIT_PASSWORD_RESET", "1/1h", |c| {
            c.rate_limit
                .auth
                .password_reset
                .is_some_and(|r| r.burst == 1)
        }),
        ("CHOPIN_RATE_LIMIT_PASSWORD_RESET_IP", "7/1h", |c| {
            c.rate_limit
                .auth
                .password_reset_ip
                .is_some_and(|r| r.burst == 7)
        }),
        ("CHOPIN_RATE_LIMIT_VERIFICATION", "off", |c| {
            c.rate_limit.auth.verification.is_none()
        }),
        ("CHOPIN_RATE_LIMIT_REFRESH", "6/1m", |c| {
            c.rate_limit.auth.refresh.is_some_and(|r| r.burst == 6)
        }),
        ("CHOPIN_TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.1", |c| {
            c.security.trusted_proxies.len() == 2
        }),
        ("CHOPIN_TRUSTED_PROXIES_ALLOW_ANY", "true", |c| {
            c.security.trusted_proxies_allow_any
        }),
        ("CHOPIN_SECURITY_HEADERS", "false", |c| !c.security.headers),
        ("CHOPIN_HSTS", "true", |c| c.security.hsts),
        ("CHOPIN_HEADER_TIMEOUT", "2s", |c| {
            c.server.header_timeout == Duration::from_secs(2)
        }),
        ("CHOPIN_KEEP_ALIVE_TIMEOUT", "5s", |c| {
            c.server.keep_alive_timeout == Duration::from_secs(5)
        }),
        ("CHOPIN_MAX_CONNECTION_AGE", "10m", |c| {
            c.server.max_connection_age == Some(Duration::from_secs(600))
        }),
        ("CHOPIN_MAX_HEADER_SIZE", "16KiB", |c| {
            c.server.max_header_size == 16 * 1024
        }),
        ("CHOPIN_WRITE_TIMEOUT", "3s", |c| {
            c.server.write_timeout == Duration::from_secs(3)
        }),
        ("CHOPIN_MAX_CONNECTIONS", "3", |c| {
            c.server.max_connections == 3
        }),
        ("CHOPIN_HTTP2_MAX_STREAMS", "7", |c| {
            c.server.http2_max_concurrent_streams == 7
        }),
        ("CHOPIN_HTTP2_KEEP_ALIVE_INTERVAL", "off", |c| {
            c.server.http2_keep_alive_interval.is_none()
        }),
        ("CHOPIN_HTTP2_KEEP_ALIVE_TIMEOUT", "3s", |c| {
            c.server.http2_keep_alive_timeout == Duration::from_secs(3)
        }),
        ("CHOPIN_HTTP2_MAX_PENDING_RESETS", "5", |c| {
            c.server.http2_max_pending_accept_reset_streams == 5
        }),
        ("CHOPIN_HTTP2_MAX_LOCAL_ERROR_RESETS", "9", |c| {
            c.server.http2_max_local_error_reset_streams == 9
        }),
        ("CHOPIN_TCP_NODELAY", "false", |c| !c.server.tcp_nodelay),
        ("CHOPIN_LISTEN_BACKLOG", "64", |c| {
            c.server.listen_backlog == 64
        }),
        ("CHOPIN_WORKERS", "2", |c| c.server.workers == 2),
        ("CHOPIN_DB_SLOW_QUERY", "250ms", |c| {
            c.database.slow_query == Some(Duration::from_millis(250))
        }),
        ("CHOPIN_DB_STATEMENT_TIMEOUT", "5s", |c| {
            c.database.statement_timeout == Some(Duration::from_secs(5))
        }),
        ("CHOPIN_DB_STREAM_SEND_TIMEOUT", "2s", |c| {
            c.database.streams.send_timeout == Duration::from_secs(2)
        }),
        ("CHOPIN_DB_STREAM_DEADLINE", "1m", |c| {
            c.database.streams.deadline == Some(Duration::from_secs(60))
        }),
        ("CHOPIN_DB_MAX_STREAMS", "3", |c| {
            c.database.streams.max_streams == Some(3)
        }),
        ("CHOPIN_METRICS_ADDR", "off", |c| c.metrics.addr.is_none()),
        ("CHOPIN_METRICS_ON_MAIN", "true", |c| c.metrics.on_main),
        ("CHOPIN_METRICS_TOKEN", "a-long-scrape-token", |c| {
            c.metrics
                .token
                .as_ref()
                .is_some_and(|t| t.expose() == "a-long-scrape-token")
        }),
    ];
    let covered: BTreeSet<&str> = cases.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(covered, DOCUMENTED.into_iter().collect::<BTreeSet<_>>());
    let defaults = ok(&[]);
    for (var, value, check) in cases {
        // An SMTP server needs a sender: the one variable that cannot be set alone; the address
        // limit refines the per-client one and is refused without it.
        let c = match var {
            "CHOPIN_SMTP_URL" => ok(&[(var, value), ("CHOPIN_SMTP_FROM", "a@app.example")]),
            "CHOPIN_RATE_LIMIT_IP" => ok(&[("CHOPIN_RATE_LIMIT", "100/1m"), (var, value)]),
            _ => ok(&[(var, value)]),
        };
        assert!(check(&c), "{var}={value} had no effect: {c:#?}");
        assert!(
            !check(&defaults),
            "{var}: the check must fail on the defaults"
        );
    }
}

#[test]
fn values_are_trimmed_and_blank_means_unset() {
    let c = ok(&[("CHOPIN_PORT", " 8081 "), ("CHOPIN_BODY_LIMIT", "   ")]);
    assert_eq!(c.port, 8081);
    assert_eq!(c.http.body_limit, 2 * 1024 * 1024);
    assert_eq!(
        ok(&[("CHOPIN_ENV", "")]).environment,
        Environment::Development
    );
}

#[test]
fn invalid_values_are_errors_naming_the_variable() {
    let cases: &[(&str, &str)] = &[
        ("CHOPIN_ENV", "staging"),
        ("CHOPIN_PORT", "99999"),
        ("CHOPIN_PORT", "eighty"),
        ("CHOPIN_PORT", "-1"),
        ("DATABASE_MAX_CONNECTIONS", "0"),
        ("DATABASE_MAX_CONNECTIONS", "lots"),
        ("DATABASE_MIN_CONNECTIONS", "-1"),
        ("DATABASE_ACQUIRE_TIMEOUT", "soon"),
        ("DATABASE_IDLE_TIMEOUT", "10 parsecs"),
        ("DATABASE_MAX_LIFETIME", "-5s"),
        ("CHOPIN_CORS_ORIGINS", "not a url"),
        ("CHOPIN_CORS_ORIGINS", "https://a.example/path"),
        ("CHOPIN_CORS_ORIGINS", "https://a.example/"),
        ("CHOPIN_CORS_ORIGINS", "ftp://a.example"),
        (
            "CHOPIN_CORS_ORIGINS",
            "https://ok.example,https://bad.example?x=1",
        ),
        ("CHOPIN_CORS_CREDENTIALS", "maybe"),
        ("CHOPIN_BODY_LIMIT", "lots"),
        ("CHOPIN_BODY_LIMIT", "-1"),
        ("CHOPIN_REQUEST_TIMEOUT", "forever"),
        ("CHOPIN_SHUTDOWN_TIMEOUT", "later"),
        ("CHOPIN_SHUTDOWN_DELAY", "a while"),
        ("CHOPIN_COMPRESSION", "sometimes"),
        ("CHOPIN_LOG", "info,[[["),
        ("RUST_LOG", "info,[[["),
        ("CHOPIN_LOG_FORMAT", "xml"),
        ("CHOPIN_OPENAPI", "perhaps"),
        ("CHOPIN_OPENAPI_PATH", "openapi.json"),
        ("CHOPIN_OPENAPI_PATH", "/spec?x"),
        ("CHOPIN_DOCS_PATH", "docs"),
        ("CHOPIN_DOCS_PATH", "/my docs"),
        ("CHOPIN_PAGINATION_DEFAULT_LIMIT", "0"),
        ("CHOPIN_PAGINATION_DEFAULT_LIMIT", "101"),
        ("CHOPIN_PAGINATION_MAX_LIMIT", "0"),
        ("CHOPIN_PAGINATION_MAX_LIMIT", "ten"),
        ("CHOPIN_PAGINATION_OVERFLOW", "truncate"),
        ("CHOPIN_CACHE", "memcached"),
        ("REDIS_URL", "not a url"),
        ("REDIS_URL", "http://cache:6379"),
        ("REDIS_URL", "rediss://cache:6380"),
        ("REDIS_URL", "redis:///0"),
        ("CHOPIN_CACHE_MEMORY", "lots"),
        ("CHOPIN_CACHE_MEMORY", "0"),
        ("CHOPIN_CACHE_NAMESPACE", "my app"),
        ("CHOPIN_CACHE_NAMESPACE", "a:b"),
        ("CHOPIN_CACHE_NAMESPACE", "caf\u{e9}"),
        ("CHOPIN_CACHE_TIMEOUT", "soon"),
        ("CHOPIN_CACHE_TIMEOUT", "0ms"),
        ("CHOPIN_CACHE_HEADER", "sometimes"),
        ("CHOPIN_JWT_LEEWAY", "301s"),
        ("CHOPIN_JWT_LEEWAY", "1h"),
        ("CHOPIN_JWT_ACCEPT_UNTYPED", "maybe"),
        ("CHOPIN_AUTH_MAIL_QUEUE", "0"),
        ("CHOPIN_AUTH_MAIL_QUEUE", "lots"),
        ("CHOPIN_AUTH_MAIL_QUEUE", "1000001"),
        ("CHOPIN_AUTH_MAIL_WORKERS", "0"),
        ("CHOPIN_AUTH_MAIL_WORKERS", "-1"),
        ("CHOPIN_AUTH_MAIL_WORKERS", "1025"),
        // Durations are capped at 365 days: larger ones would overflow clock arithmetic.
        ("CHOPIN_REQUEST_TIMEOUT", "18446744073709551615"),
        ("CHOPIN_SHUTDOWN_TIMEOUT", "366days"),
        ("CHOPIN_SHUTDOWN_DELAY", "366days"),
        ("CHOPIN_HEADER_TIMEOUT", "18446744073709551615s"),
        ("CHOPIN_KEEP_ALIVE_TIMEOUT", "400d"),
        ("CHOPIN_WRITE_TIMEOUT", "500000000y"),
        ("CHOPIN_MAX_CONNECTION_AGE", "2y"),
        ("CHOPIN_HTTP2_KEEP_ALIVE_TIMEOUT", "366d"),
        ("DATABASE_ACQUIRE_TIMEOUT", "366d"),
        ("DATABASE_MAX_LIFETIME", "18446744073709551615"),
        ("CHOPIN_CURSOR_TTL", "366d"),
        ("CHOPIN_JWT_ACCESS_TTL", "18446744073709551615"),
        ("CHOPIN_JWT_REFRESH_TTL", "2y"),
        ("CHOPIN_CACHE_TIMEOUT", "366d"),
        ("CHOPIN_WORKERS", "1025"),
        ("CHOPIN_WORKERS", "18446744073709551615"),
    ];
    for (var, value) in cases {
        let err = load(&[(var, value)]).expect_err(&format!("{var}={value} must be rejected"));
        assert_eq!(err.problems.len(), 1, "{var}={value}: {err}");
        assert_eq!(err.problems[0].variable, *var, "{err}");
        assert!(!err.problems[0].problem.is_empty());
        let text = err.to_string();
        assert!(text.contains(var), "{text}");
        assert!(text.starts_with("invalid configuration:"), "{text}");
    }
}

#[test]
fn cross_variable_rules() {
    let err = load(&[
        ("DATABASE_MIN_CONNECTIONS", "10"),
        ("DATABASE_MAX_CONNECTIONS", "5"),
    ])
    .unwrap_err();
    assert_eq!(err.problems[0].variable, "DATABASE_MIN_CONNECTIONS");
    assert!(
        err.to_string().contains("DATABASE_MAX_CONNECTIONS"),
        "{err}"
    );

    let err = load(&[
        ("CHOPIN_CORS_ORIGINS", "*"),
        ("CHOPIN_CORS_CREDENTIALS", "true"),
    ])
    .unwrap_err();
    assert_eq!(err.problems[0].variable, "CHOPIN_CORS_CREDENTIALS");

    let err = load(&[
        ("CHOPIN_PAGINATION_DEFAULT_LIMIT", "30"),
        ("CHOPIN_PAGINATION_MAX_LIMIT", "25"),
    ])
    .unwrap_err();
    assert_eq!(err.problems[0].variable, "CHOPIN_PAGINATION_DEFAULT_LIMIT");
}

#[test]
fn all_problems_are_reported_at_once() {
    let err = load(&[
        ("CHOPIN_PORT", "x"),
        ("CHOPIN_LOG_FORMAT", "xml"),
        ("DATABASE_ACQUIRE_TIMEOUT", "soon"),
    ])
    .unwrap_err();
    let vars: BTreeSet<&str> = err.problems.iter().map(|p| p.variable).collect();
    assert_eq!(
        vars,
        BTreeSet::from([
            "CHOPIN_PORT",
            "CHOPIN_LOG_FORMAT",
            "DATABASE_ACQUIRE_TIMEOUT"
        ])
    );
    let text = err.to_string();
    assert_eq!(text.lines().count(), 4, "{text}");
}

const SECRET: &str = "s3cr3tP4ss";

#[test]
fn debug_never_contains_the_database_password() {
    let urls = [
        format!("postgres://app:{SECRET}@db:5432/app"),
        format!("postgresql://app:{SECRET}@db/app?sslmode=require&max_connections=5"),
        format!("postgres://:{SECRET}@db/app"),
        // libpq's Unix-socket form: empty host, socket directory in the query.
        format!("postgres://app:{SECRET}@/app?host=/var/run/postgresql"),
        format!("postgres://db/app?password={SECRET}"),
        format!("postgres://app@db/app?PassWord={SECRET}&sslmode=disable"),
        // libpq key/value form (not a URL).
        format!("host=db user=app password={SECRET}"),
    ];
    for url in &urls {
        let config = ok(&[("DATABASE_URL", url.as_str())]);
        assert_eq!(
            &config.database.url, url,
            "the real URL is kept for connecting"
        );
        for rendered in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{:?}", config.database),
            redact_url(url),
        ] {
            assert!(
                !rendered.contains(SECRET),
                "password leaked for {url}: {rendered}"
            );
        }
    }
    // Percent-encoded passwords leak neither encoded nor decoded.
    let url = "postgres://app:p%40ss%2Fw0rd@db/app";
    let debug = format!("{:?}", ok(&[("DATABASE_URL", url)]));
    assert!(
        !debug.contains("p%40ss") && !debug.contains("p@ss"),
        "{debug}"
    );
}

#[test]
fn debug_never_contains_the_redis_password() {
    for url in [
        format!("redis://:{SECRET}@cache:6379"),
        format!("redis://default:{SECRET}@cache:6379/1"),
        format!("redis://cache:6379/?password={SECRET}"),
    ] {
        let config = ok(&[("CHOPIN_CACHE", "tiered"), ("REDIS_URL", url.as_str())]);
        assert_eq!(
            config.cache.redis_url, url,
            "the real URL is kept for connecting"
        );
        for rendered in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{:?}", config.cache),
        ] {
            assert!(
                !rendered.contains(SECRET),
                "password leaked for {url}: {rendered}"
            );
        }
    }
}

/// `CHOPIN_JWT_LEEWAY` is capped at five minutes, with an error that says so.
#[test]
fn the_jwt_leeway_is_capped() {
    assert_eq!(
        ok(&[("CHOPIN_JWT_LEEWAY", "300")]).auth.leeway,
        chopin_core::config::MAX_JWT_LEEWAY
    );
    let err = load(&[("CHOPIN_JWT_LEEWAY", "6m")]).unwrap_err();
    assert_eq!(err.problems[0].variable, "CHOPIN_JWT_LEEWAY");
    assert!(err.to_string().contains("at most 300s"), "{err}");
}

/// An invalid URL with a password is a configuration error that names the variable and
/// never the password: not in `Display`, not in `Debug`, not in the problem's `value` —
/// for `REDIS_URL`, for any `*_URL` variable, and for a URL-looking value of any variable.
#[test]
fn config_errors_never_contain_a_url_password() {
    let redis = [
        format!("redis://:{SECRET}@"),
        format!("redis://:{SECRET}@/0"),
        format!("rediss://default:{SECRET}@cache:6380"),
        format!("http://user:{SECRET}@cache:6379"),
        format!("redis://user:{SECRET}@cache:port"),
        format!("redis//:{SECRET}@cache"),
        format!(":{SECRET}@cache:6379"),
    ];
    for url in &redis {
        let err =
            load(&[("REDIS_URL", url.as_str())]).expect_err(&format!("{url} must be rejected"));
        assert_eq!(err.problems[0].variable, "REDIS_URL");
        for rendered in [
            err.to_string(),
            format!("{err:?}"),
            format!("{:?}", err.problems),
            err.problems[0].value.clone(),
        ] {
            assert!(!rendered.contains(SECRET), "{url} leaked: {rendered}");
        }
    }
    // The rest of a parseable URL is still shown, to say which value is meant.
    let err = load(&[("REDIS_URL", &format!("http://u:{SECRET}@cache:6379"))]).unwrap_err();
    assert_eq!(err.problems[0].value, "http://u:***@cache:6379/");
    // Another variable holding a URL with credentials (a CORS origin, say) is redacted too.
    for origins in [
        format!("https://u:{SECRET}@a.example/path"),
        format!("https://ok.example, https://u:{SECRET}@bad.example/path"),
    ] {
        let err = load(&[("CHOPIN_CORS_ORIGINS", &origins)]).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(SECRET), "{err}");
    }
}

/// Connecting with a bad or unreachable `DATABASE_URL` fails with an error that does not
/// carry the password, whatever went wrong.
#[tokio::test]
async fn database_errors_never_contain_the_password() {
    use chopin_core::config::DatabaseConfig;
    use chopin_core::db::Db;
    let urls = [
        // Not a URL at all, or no scheme: nothing of it is echoed.
        SECRET.to_string(),
        format!("app:{SECRET}@db/app"),
        format!("{SECRET}@db/app"),
        format!("mysql://app:{SECRET}@db/app"),
        format!("postgres://app:{SECRET}@db:port/app"),
        // Unreachable (nothing listens on port 1): a connect error.
        format!("postgres://app:{SECRET}@127.0.0.1:1/app?acquire_timeout=2s"),
    ];
    for url in &urls {
        let err = Db::connect(&DatabaseConfig::new(url.as_str()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} must fail"));
        for rendered in [err.to_string(), format!("{err:?}")] {
            assert!(!rendered.contains(SECRET), "{url} leaked: {rendered}");
        }
    }
}

/// Redis that cannot be used (a bad database number, nothing listening) fails with an
/// error that does not carry the password: the cache, the revocation store and `Auth`.
#[tokio::test]
async fn redis_errors_never_contain_the_password() {
    use chopin_core::auth::Auth;
    use chopin_core::cache::Cache;
    for url in [
        format!("redis://:{SECRET}@127.0.0.1:6379/not-a-number"),
        format!("redis://default:{SECRET}@127.0.0.1:1"),
    ] {
        let config = ok(&[
            ("CHOPIN_CACHE", "redis"),
            ("CHOPIN_AUTH_REVOCATION", "redis"),
            ("CHOPIN_CACHE_TIMEOUT", "200ms"),
            ("REDIS_URL", url.as_str()),
        ]);
        let cache = Cache::from_config(&config.cache)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url}: the cache must fail"));
        let auth = Auth::from_config(&config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url}: auth must fail"));
        for rendered in [
            cache.to_string(),
            format!("{cache:?}"),
            auth.to_string(),
            format!("{auth:?}"),
        ] {
            assert!(!rendered.contains(SECRET), "{url} leaked: {rendered}");
        }
    }
}

#[test]
fn redaction_keeps_the_rest_of_the_url() {
    assert_eq!(
        redact_url(&format!(
            "postgres://app:{SECRET}@db:5432/app?sslmode=require"
        )),
        "postgres://app:***@db:5432/app?sslmode=require"
    );
    assert_eq!(
        redact_url("sqlite://chopin.db"),
        "sqlite://chopin.db",
        "nothing to hide"
    );
    let redacted = redact_url(&format!(
        "postgres://db/app?password={SECRET}&sslmode=disable"
    ));
    assert!(redacted.contains("sslmode=disable"), "{redacted}");
    assert!(
        redacted.contains("password=***") || redacted.contains("password=%2A%2A%2A"),
        "{redacted}"
    );
}
