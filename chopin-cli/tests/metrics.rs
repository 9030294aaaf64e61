//! `chopin metrics` against a tiny HTTP server serving canned scrapes: the figures it prints
//! are computed from the difference between the two scrapes, the bearer token is sent, and
//! failures say how to fix them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server saw: the time and `Authorization` header of each request.
type Seen = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// Serve `bodies` in turn (the last one again when they run out) on a free loopback port;
/// with `token`, answer 401 to requests without `Authorization: Bearer <token>`.
fn serve(bodies: Vec<&'static str>, token: Option<&'static str>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut auth = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    auth = Some(value.trim().to_string());
                }
            }
            log.lock().unwrap().push((Instant::now(), auth.clone()));
            let authorized = token.is_none_or(|t| auth.as_deref() == Some(&format!("Bearer {t}")));
            let response = if !request_line.starts_with("GET /metrics ") {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_string()
            } else if authorized {
                let body = bodies[served.min(bodies.len() - 1)];
                served += 1;
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (url, seen)
}

fn chopin(args: &[&str], token_env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chopin"));
    cmd.args(args).env_remove("CHOPIN_METRICS_TOKEN");
    if let Some(token) = token_env {
        cmd.env("CHOPIN_METRICS_TOKEN", token);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "chopin failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

const BEFORE: &str = r#"# HELP http_server_request_duration_seconds Time to the response head.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_sum{http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 0.5
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 100
http_server_request_duration_seconds_bucket{le="0.001",http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 60
http_server_request_duration_seconds_bucket{le="0.01",http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 90
http_server_request_duration_seconds_bucket{le="0.1",http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 100
http_server_request_duration_seconds_bucket{le="+Inf",http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 100
# HELP http_server_active_requests Requests being handled now.
# TYPE http_server_active_requests gauge
http_server_active_requests 1
# TYPE chopin_db_pool_connections gauge
chopin_db_pool_connections{pool="primary",state="idle"} 5
chopin_db_pool_connections{pool="primary",state="in_use"} 0
# TYPE chopin_db_pool_max_connections gauge
chopin_db_pool_max_connections{pool="primary"} 10
# TYPE chopin_db_breaker_open gauge
chopin_db_breaker_open{pool="primary"} 0
# TYPE chopin_cache_hits_total counter
chopin_cache_hits_total{tier="memory"} 10
chopin_cache_hits_total{tier="redis"} 4
# TYPE chopin_cache_misses_total counter
chopin_cache_misses_total{tier="memory"} 5
chopin_cache_misses_total{tier="redis"} 4
# TYPE chopin_rate_limit_rejections_total counter
chopin_rate_limit_rejections_total{key="ip"} 1
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 2
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 41943040
# TYPE process_open_fds gauge
process_open_fds 30
# TYPE process_max_fds gauge
process_max_fds 1024
# EOF
"#;

/// 20 more requests: 18 × 200 (10 ≤ 1 ms, 8 ≤ 10 ms), 2 × 500 (≤ 100 ms, a new series).
const AFTER: &str = r#"# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_sum{http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 0.6
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 118
http_server_request_duration_seconds_bucket{le="0.001",http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 70
http_server_request_duration_seconds_bucket{le="0.01",http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 108
http_server_request_duration_seconds_bucket{le="0.1",http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 118
http_server_request_duration_seconds_bucket{le="+Inf",http_request_method="GET",http_route="/api/posts",http_response_status_code="200"} 118
http_server_request_duration_seconds_sum{http_request_method="POST",http_route="/api/posts",http_response_status_code="500"} 0.1
http_server_request_duration_seconds_count{http_request_method="POST",http_route="/api/posts",http_response_status_code="500"} 2
http_server_request_duration_seconds_bucket{le="0.001",http_request_method="POST",http_route="/api/posts",http_response_status_code="500"} 0
http_server_request_duration_seconds_bucket{le="0.01",http_request_method="POST",http_route="/api/posts",http_response_status_code="500"} 0
http_server_request_duration_seconds_bucket{le="0.1",http_request_method="POST",http_route="/api/posts",http_response_status_code="500"} 2
http_server_request_duration_seconds_bucket{le="+Inf",http_request_method="POST",http_route="/api/posts",http_response_status_code="500"} 2
http_server_active_requests 3
chopin_db_pool_connections{pool="primary",state="idle"} 1
chopin_db_pool_connections{pool="primary",state="in_use"} 4
chopin_db_pool_connections{pool="replica",state="idle"} 0
chopin_db_pool_connections{pool="replica",state="in_use"} 0
chopin_db_pool_max_connections{pool="primary"} 10
chopin_db_pool_max_connections{pool="replica"} 5
chopin_db_breaker_open{pool="primary"} 0
chopin_db_breaker_open{pool="replica"} 1
chopin_cache_hits_total{tier="memory"} 19
chopin_cache_hits_total{tier="redis"} 4
chopin_cache_misses_total{tier="memory"} 6
chopin_cache_misses_total{tier="redis"} 4
chopin_rate_limit_rejections_total{key="ip"} 4
chopin_rate_limit_rejections_total{key="login"} 1
process_cpu_seconds_total 2.1
process_resident_memory_bytes 52428800
process_open_fds 37
process_max_fds 1024
"#;

/// The number before `unit` in `line` (`"… 12.5/s …"`, `"/s"` → 12.5).
fn number_before(line: &str, unit: &str) -> f64 {
    let head = &line[..line.find(unit).unwrap()];
    head.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn figures_come_from_the_difference_between_two_scrapes() {
    let (url, seen) = serve(vec![BEFORE, AFTER], Some("a-long-scrape-token"));
    let out = stdout(&chopin(
        &[
            "metrics",
            &url,
            "--interval",
            "300ms",
            "--token",
            "a-long-scrape-token",
        ],
        None,
    ));
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in\n{out}"))
            .to_string()
    };

    // Two scrapes, at least the interval apart, both with the token.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1].0 - seen[0].0 >= Duration::from_millis(300));
    assert!(
        seen.iter()
            .all(|(_, a)| a.as_deref() == Some("Bearer a-long-scrape-token"))
    );

    let requests = line("requests");
    assert!(requests.contains("(20 in the interval)"), "{requests}");
    assert!(requests.contains("5xx 10.0%"), "{requests}");
    assert!(requests.contains("in flight 3"), "{requests}");
    // 20 requests over the measured gap (≥ 0.3 s, and not absurdly long).
    let rate = number_before(&requests, "/s");
    assert!(rate > 20.0 / 5.0 && rate <= 20.0 / 0.3, "{requests}");

    // Buckets summed over both series: 10 ≤ 1 ms, 18 ≤ 10 ms, 20 ≤ 100 ms. p50 = the 10th
    // observation = 1 ms; p99 = rank 19.8: 10 ms + 90 ms × 1.8 / 2 = 91 ms.
    assert_eq!(line("latency"), "latency       p50 1.0 ms   p99 91.0 ms");

    assert_eq!(
        line("db pool       primary"),
        "db pool       primary: 4 in use, 1 idle, max 10 (40.0% used)   breaker closed"
    );
    assert_eq!(
        line("db pool       replica"),
        "db pool       replica: 0 in use, 0 idle, max 5 (0.0% used)   breaker OPEN"
    );
    // memory: 9 hits, 1 miss in the interval; redis: nothing happened.
    assert_eq!(
        line("cache"),
        "cache         memory hit 90.0% of 10   redis no lookups"
    );
    let limited = line("429s");
    assert!(
        limited.contains("(4): ip 3, login 1; 5 since start"),
        "{limited}"
    );
    let process = line("process");
    assert!(
        process.starts_with("process       RSS 50.0 MiB   fds 37 / 1024   CPU "),
        "{process}"
    );
}

#[test]
fn the_token_comes_from_the_environment_and_a_401_says_how_to_fix_it() {
    let (url, _) = serve(vec![BEFORE, AFTER], Some("a-long-scrape-token"));
    let out = chopin(&["metrics", &url, "--interval", "10ms"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    assert!(
        err.contains("--token") && err.contains("CHOPIN_METRICS_TOKEN"),
        "{err}"
    );

    let out = stdout(&chopin(
        &["metrics", &url, "--interval", "10ms"],
        Some("a-long-scrape-token"),
    ));
    assert!(out.contains("(20 in the interval)"), "{out}");
}

#[test]
fn an_app_without_pools_or_traffic_says_so() {
    let idle = "# TYPE http_server_active_requests gauge\nhttp_server_active_requests 0\n";
    let (url, _) = serve(vec![idle], None);
    let out = stdout(&chopin(&["metrics", &url, "--interval", "10ms"], None));
    assert!(
        out.contains("requests      0.0/s (0 in the interval)   5xx -   in flight 0"),
        "{out}"
    );
    assert!(
        out.contains("latency       - (no requests in the interval)"),
        "{out}"
    );
    assert!(out.contains("db pool       - (no pool reported)"), "{out}");
    assert!(out.contains("cache         - (no cache metrics)"), "{out}");
}

#[test]
fn failures_say_what_to_check() {
    // Nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = chopin(
        &["metrics", &format!("http://127.0.0.1:{port}/metrics")],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot fetch"), "{err}");
    assert!(err.contains("CHOPIN_METRICS_ADDR"), "{err}");

    // Not the Prometheus format.
    let (url, _) = serve(vec!["<html>hello</html>\n"], None);
    let out = chopin(&["metrics", &url, "--interval", "10ms"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not in the Prometheus text format"), "{err}");

    // A bad interval.
    let out = chopin(&["metrics", "--interval", "soon"], None);
    assert!(!out.status.success());
}
