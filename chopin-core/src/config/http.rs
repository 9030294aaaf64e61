//! HTTP settings: body limit, timeouts, compression and CORS (`CHOPIN_BODY_LIMIT`,
//! `CHOPIN_REQUEST_TIMEOUT`, `CHOPIN_SHUTDOWN_DELAY`, `CHOPIN_SHUTDOWN_TIMEOUT`, `CHOPIN_COMPRESSION`,
//! `CHOPIN_CORS_*`).

use std::time::Duration;

use super::reader::{Reader, parse_bool, parse_duration, parse_optional_duration, parse_size};

/// Default request body limit: 2 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

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
    /// `CHOPIN_SHUTDOWN_DELAY`: after a shutdown signal, how long the server keeps serving as
    /// usual while `/health/ready` answers 503, so a load balancer takes the instance out before
    /// its connections close (`0s`, no delay, by default).
    pub shutdown_delay: Duration,
    /// `CHOPIN_SHUTDOWN_TIMEOUT`: how long in-flight requests may run after a shutdown signal
    /// (and its delay).
    pub shutdown_timeout: Duration,
    /// `CHOPIN_COMPRESSION`: gzip / br / zstd response compression (`true`).
    pub compression: bool,
    /// CORS policy (closed by default).
    pub cors: CorsConfig,
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

impl HttpConfig {
    /// Read `CHOPIN_CORS_*` and the HTTP variables.
    pub(super) fn from_reader(r: &mut Reader<'_>) -> HttpConfig {
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

        HttpConfig {
            body_limit: r
                .get("CHOPIN_BODY_LIMIT", parse_size)
                .unwrap_or(DEFAULT_BODY_LIMIT),
            request_timeout: r
                .get("CHOPIN_REQUEST_TIMEOUT", parse_optional_duration)
                .unwrap_or(Some(Duration::from_secs(30))),
            shutdown_delay: r
                .get("CHOPIN_SHUTDOWN_DELAY", parse_duration)
                .unwrap_or(Duration::ZERO),
            shutdown_timeout: r
                .get("CHOPIN_SHUTDOWN_TIMEOUT", parse_duration)
                .unwrap_or(Duration::from_secs(30)),
            compression: r.get("CHOPIN_COMPRESSION", parse_bool).unwrap_or(true),
            cors: CorsConfig {
                origins,
                allow_credentials,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::from;

    #[test]
    fn cors_wildcard_with_credentials_is_refused() {
        let err = from(&[
            ("CHOPIN_CORS_ORIGINS", "*"),
            ("CHOPIN_CORS_CREDENTIALS", "true"),
        ])
        .unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_CORS_CREDENTIALS");
    }
}
