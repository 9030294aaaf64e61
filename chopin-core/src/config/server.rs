//! Server settings: connection timeouts and limits, HTTP/2 limits, TCP options and per-core
//! workers (`CHOPIN_HEADER_TIMEOUT`, `CHOPIN_KEEP_ALIVE_TIMEOUT`, `CHOPIN_MAX_CONNECTION_AGE`,
//! `CHOPIN_MAX_HEADER_SIZE`, `CHOPIN_WRITE_TIMEOUT`, `CHOPIN_MAX_CONNECTIONS`,
//! `CHOPIN_HTTP2_*`, `CHOPIN_TCP_NODELAY`, `CHOPIN_LISTEN_BACKLOG`, `CHOPIN_WORKERS`).

use std::time::Duration;

use super::reader::{
    Reader, parse_bool, parse_duration, parse_optional_duration, parse_positive, parse_size,
};

/// Default time a client has to send a complete request head: 15 s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Default time a connection may sit without a request in flight: 60 s.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default largest request head (request line and headers): 64 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;
/// Smallest accepted `CHOPIN_MAX_HEADER_SIZE`: 8 KiB (hyper's smallest read buffer).
pub const MIN_MAX_HEADER_SIZE: usize = 8 * 1024;
/// Default time a write may make no progress before the connection is closed: 30 s.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest accepted `CHOPIN_WORKERS`: 1024 (each worker is an OS thread with its own runtime
/// and listener).
pub const MAX_WORKERS: usize = 1024;
/// Connection cap used when the open-file limit cannot be read (or is unlimited).
pub const FALLBACK_MAX_CONNECTIONS: usize = 10_000;

/// How Chopin's server treats connections, from environment variables. Read by
/// [`Server::from_config`](crate::server::Server::from_config), hence by `App::serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `CHOPIN_HEADER_TIMEOUT`: a request head (request line + headers) not complete this long
    /// after the connection opened, or after the previous HTTP/1 response, closes the
    /// connection (`15s`). The same clock bounds how long an idle HTTP/1 keep-alive
    /// connection waits for its next request.
    pub header_timeout: Duration,
    /// `CHOPIN_KEEP_ALIVE_TIMEOUT`: a connection with no request in flight for this long is
    /// closed gracefully (`60s`; HTTP/2 gets a GOAWAY).
    pub keep_alive_timeout: Duration,
    /// `CHOPIN_MAX_CONNECTION_AGE`: after this long a connection is closed gracefully
    /// (in-flight requests finish; `off` by default).
    pub max_connection_age: Option<Duration>,
    /// `CHOPIN_MAX_HEADER_SIZE`: largest request head; larger gets `431` on HTTP/1 and a
    /// stream reset on HTTP/2 (`64KiB`, at least `8KiB`).
    pub max_header_size: usize,
    /// `CHOPIN_WRITE_TIMEOUT`: a write to the client that makes no progress for this long
    /// (the client stopped reading) closes the connection (`30s`).
    pub write_timeout: Duration,
    /// `CHOPIN_MAX_CONNECTIONS`: open connections at most; over it the server stops accepting
    /// until one closes (default: 80 % of the process's open-file soft limit).
    pub max_connections: usize,
    /// `CHOPIN_HTTP2_MAX_STREAMS`: concurrent streams per HTTP/2 connection (`100`).
    pub http2_max_concurrent_streams: u32,
    /// `CHOPIN_HTTP2_KEEP_ALIVE_INTERVAL`: ping an HTTP/2 peer this often (`20s`; `off`).
    pub http2_keep_alive_interval: Option<Duration>,
    /// `CHOPIN_HTTP2_KEEP_ALIVE_TIMEOUT`: close an HTTP/2 connection whose ping is not
    /// answered within this (`20s`).
    pub http2_keep_alive_timeout: Duration,
    /// `CHOPIN_HTTP2_MAX_PENDING_RESETS`: streams a client may open and reset before the
    /// server accepts them, at once (`20`; the rapid-reset flood cap).
    pub http2_max_pending_accept_reset_streams: usize,
    /// `CHOPIN_HTTP2_MAX_LOCAL_ERROR_RESETS`: streams the server may reset because of client
    /// protocol errors before it closes the connection (`1024`).
    pub http2_max_local_error_reset_streams: usize,
    /// `CHOPIN_TCP_NODELAY`: disable Nagle's algorithm on accepted connections (`true`).
    pub tcp_nodelay: bool,
    /// `CHOPIN_LISTEN_BACKLOG`: the listen queue length passed to `listen(2)` (`1024`).
    pub listen_backlog: u32,
    /// `CHOPIN_WORKERS`: `0` (default) serves on the application's multi-threaded tokio
    /// runtime; `N` runs N single-threaded runtimes, each on its own thread with its own
    /// `SO_REUSEPORT` listener (see `docs/performance.md`).
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            max_connection_age: None,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: default_max_connections(),
            http2_max_concurrent_streams: 100,
            http2_keep_alive_interval: Some(Duration::from_secs(20)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_max_pending_accept_reset_streams: 20,
            http2_max_local_error_reset_streams: 1024,
            tcp_nodelay: true,
            listen_backlog: 1024,
            workers: 0,
        }
    }
}

/// 80 % of the open-file soft limit (the rest is left for database connections, files and
/// the listener), or [`FALLBACK_MAX_CONNECTIONS`] when the limit is unknown or unlimited.
pub fn default_max_connections() -> usize {
    #[cfg(unix)]
    if let Ok((soft, _hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        && soft != rlimit::INFINITY
        && let Ok(soft) = usize::try_from(soft)
    {
        return (soft / 5 * 4).max(1);
    }
    FALLBACK_MAX_CONNECTIONS
}

/// A timeout that must be a positive duration (`off` is not accepted).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be a positive duration such as 500ms or 30s".into()),
        d => Ok(d),
    }
}

impl ServerConfig {
    /// Read the server variables.
    pub(super) fn from_reader(r: &mut Reader<'_>) -> ServerConfig {
        let d = ServerConfig::default();
        let max_header_size = r
            .get("CHOPIN_MAX_HEADER_SIZE", |s| match parse_size(s)? {
                n if n < MIN_MAX_HEADER_SIZE => Err("must be at least 8KiB".to_string()),
                n if n > u32::MAX as usize => Err("is too large".to_string()),
                n => Ok(n),
            })
            .unwrap_or(d.max_header_size);
        ServerConfig {
            header_timeout: r
                .get("CHOPIN_HEADER_TIMEOUT", parse_timeout)
                .unwrap_or(d.header_timeout),
            keep_alive_timeout: r
                .get("CHOPIN_KEEP_ALIVE_TIMEOUT", parse_timeout)
                .unwrap_or(d.keep_alive_timeout),
            max_connection_age: r
                .get("CHOPIN_MAX_CONNECTION_AGE", parse_optional_duration)
                .unwrap_or(d.max_connection_age),
            max_header_size,
            write_timeout: r
                .get("CHOPIN_WRITE_TIMEOUT", parse_timeout)
                .unwrap_or(d.write_timeout),
            max_connections: r
                .get("CHOPIN_MAX_CONNECTIONS", parse_positive::<usize>)
                .unwrap_or(d.max_connections),
            http2_max_concurrent_streams: r
                .get("CHOPIN_HTTP2_MAX_STREAMS", parse_positive::<u32>)
                .unwrap_or(d.http2_max_concurrent_streams),
            http2_keep_alive_interval: r
                .get("CHOPIN_HTTP2_KEEP_ALIVE_INTERVAL", parse_optional_duration)
                .unwrap_or(d.http2_keep_alive_interval),
            http2_keep_alive_timeout: r
                .get("CHOPIN_HTTP2_KEEP_ALIVE_TIMEOUT", parse_timeout)
                .unwrap_or(d.http2_keep_alive_timeout),
            http2_max_pending_accept_reset_streams: r
                .get("CHOPIN_HTTP2_MAX_PENDING_RESETS", parse_positive::<usize>)
                .unwrap_or(d.http2_max_pending_accept_reset_streams),
            http2_max_local_error_reset_streams: r
                .get(
                    "CHOPIN_HTTP2_MAX_LOCAL_ERROR_RESETS",
                    parse_positive::<usize>,
                )
                .unwrap_or(d.http2_max_local_error_reset_streams),
            tcp_nodelay: r
                .get("CHOPIN_TCP_NODELAY", parse_bool)
                .unwrap_or(d.tcp_nodelay),
            listen_backlog: r
                .get("CHOPIN_LISTEN_BACKLOG", |s| {
                    parse_positive::<u32>(s).and_then(|n| {
                        if n <= i32::MAX as u32 {
                            Ok(n)
                        } else {
                            Err("is too large".into())
                        }
                    })
                })
                .unwrap_or(d.listen_backlog),
            workers: r
                .get("CHOPIN_WORKERS", |s| match s.parse::<usize>() {
                    Ok(n) if n > MAX_WORKERS => Err(format!("must be at most {MAX_WORKERS}")),
                    Ok(n) => Ok(n),
                    Err(_) => Err("must be a whole number (0 = off)".to_string()),
                })
                .unwrap_or(d.workers),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::from;

    #[test]
    fn defaults_are_safe() {
        let c = from(&[]).unwrap().server;
        assert!(c.header_timeout <= Duration::from_secs(30));
        assert!(c.keep_alive_timeout <= Duration::from_secs(60));
        assert!(c.max_header_size <= 64 * 1024);
        assert!(c.max_connections >= 1);
        assert_eq!(c.workers, 0);
        assert!(c.tcp_nodelay);
    }

    #[test]
    fn parses_and_rejects() {
        let c = from(&[
            ("CHOPIN_HEADER_TIMEOUT", "2s"),
            ("CHOPIN_KEEP_ALIVE_TIMEOUT", "500ms"),
            ("CHOPIN_MAX_CONNECTION_AGE", "10m"),
            ("CHOPIN_MAX_HEADER_SIZE", "16KiB"),
            ("CHOPIN_MAX_CONNECTIONS", "7"),
            ("CHOPIN_HTTP2_KEEP_ALIVE_INTERVAL", "off"),
            ("CHOPIN_WORKERS", "2"),
        ])
        .unwrap()
        .server;
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        assert_eq!(c.keep_alive_timeout, Duration::from_millis(500));
        assert_eq!(c.max_connection_age, Some(Duration::from_secs(600)));
        assert_eq!(c.max_header_size, 16 * 1024);
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.http2_keep_alive_interval, None);
        assert_eq!(c.workers, 2);

        let err = from(&[
            ("CHOPIN_HEADER_TIMEOUT", "0s"),
            ("CHOPIN_MAX_HEADER_SIZE", "1KiB"),
            ("CHOPIN_MAX_CONNECTIONS", "0"),
            ("CHOPIN_WORKERS", "-1"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = err.problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            vars,
            vec![
                "CHOPIN_MAX_HEADER_SIZE",
                "CHOPIN_HEADER_TIMEOUT",
                "CHOPIN_MAX_CONNECTIONS",
                "CHOPIN_WORKERS"
            ]
        );
    }
}
