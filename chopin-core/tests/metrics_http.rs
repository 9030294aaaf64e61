//! Request metrics (`http_server_*`) and the `/metrics` endpoint: exact series after driven
//! requests, route templates instead of paths (no cardinality growth from ids or scanners),
//! `_OTHER` methods, body sizes, requests in flight, the token, and the separate listener of
//! `App::serve`.
//!
//! The registry is process-wide: the tests of this file are serialised and read deltas.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use chopin_core::metrics;
use chopin_core::prelude::*;
use chopin_core::testing::TestClient;
use http::{Method, Request, StatusCode};
use tokio::sync::{Mutex, MutexGuard, Notify};

/// One test at a time: they share the process's registry.
static SERIAL: Mutex<()> = Mutex::const_new(());

async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn config(vars: &[(&str, &str)]) -> Config {
    Config::from_lookup(|key| {
        vars.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .or_else(|| (key == "CHOPIN_ENV").then(|| "test".to_string()))
    })
    .expect("test configuration is valid")
}

/// The value of `series` (the whole `name{labels}` text) in `scrape`; 0 when absent.
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .unwrap_or(0.0)
}

fn now(series: &str) -> f64 {
    sample(&metrics::global().encode(), series)
}

/// `name{http_request_method=…,http_route=…,http_response_status_code=…}`.
fn http_series(name: &str, method: &str, route: &str, status: u16) -> String {
    format!(
        "{name}{{http_request_method=\"{method}\",http_route=\"{route}\",http_response_status_code=\"{status}\"}}"
    )
}

/// How many series of `name` the registry holds.
fn series_count(name: &str) -> usize {
    let prefix = format!("{name}{{");
    metrics::global()
        .encode()
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .count()
}

fn app(router: Router) -> TestClient {
    TestClient::new(App::new(config(&[])).router(router).into_router())
}

#[tokio::test]
async fn requests_are_counted_by_route_template_method_and_status() {
    let _serial = serial().await;
    let client = app(Router::new().route(
        "/mh1/items/{id}",
        get(
            |axum::extract::Path(id): axum::extract::Path<u32>| async move {
                if id == 0 {
                    Err(ChopinError::NotFound("no item 0".into()))
                } else {
                    Ok(ApiResponse::success(id))
                }
            },
        ),
    ));
    let ok = http_series(
        "http_server_request_duration_seconds_count",
        "GET",
        "/mh1/items/{id}",
        200,
    );
    let missing = http_series(
        "http_server_request_duration_seconds_count",
        "GET",
        "/mh1/items/{id}",
        404,
    );
    let (ok_before, missing_before) = (now(&ok), now(&missing));
    for id in 1..=3 {
        assert_eq!(
            client.get(&format!("/mh1/items/{id}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        client.get("/mh1/items/0").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(now(&ok) - ok_before, 3.0);
    assert_eq!(now(&missing) - missing_before, 1.0);
    let scrape = metrics::global().encode();
    assert!(
        !scrape.contains("/mh1/items/1\""),
        "paths never become labels"
    );
    // The duration is in seconds and lands in a bucket no wider than needed.
    let sum = sample(
        &scrape,
        &http_series(
            "http_server_request_duration_seconds_sum",
            "GET",
            "/mh1/items/{id}",
            200,
        ),
    );
    assert!(sum > 0.0 && sum < 3.0, "{sum}");
}

#[tokio::test]
async fn unknown_paths_ids_and_methods_add_no_series() {
    let _serial = serial().await;
    let client = app(Router::new().route(
        "/mh2/users/{id}",
        get(|| async { "user" }).post(|| async { "created" }),
    ));
    // Warm up: every series these requests can touch exists afterwards.
    client.get("/mh2/users/1").await;
    client.get("/mh2/nothing-here").await;
    let brew = Method::from_bytes(b"BREW").unwrap();
    let brew_request = || {
        Request::builder()
            .method(brew.clone())
            .uri("/mh2/users/1")
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        client.request(brew_request()).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let families = [
        "http_server_request_duration_seconds_count",
        "http_server_response_body_size_bytes_count",
    ];
    let before: Vec<usize> = families.iter().map(|f| series_count(f)).collect();
    let unmatched = http_series("http_server_request_duration_seconds_count", "GET", "", 404);
    let other = http_series(
        "http_server_request_duration_seconds_count",
        "_OTHER",
        "/mh2/users/{id}",
        405,
    );
    let (unmatched_before, other_before) = (now(&unmatched), now(&other));
    for i in 0..5_000 {
        let scanner = client.get(&format!("/mh2/wp-admin/{i}/setup.php")).await;
        assert_eq!(scanner.status, StatusCode::NOT_FOUND);
        assert_eq!(
            client.get(&format!("/mh2/users/{i}")).await.status,
            StatusCode::OK
        );
    }
    for _ in 0..10 {
        client.request(brew_request()).await;
    }
    let after: Vec<usize> = families.iter().map(|f| series_count(f)).collect();
    assert_eq!(before, after, "10,000 distinct paths added series");
    assert_eq!(now(&unmatched) - unmatched_before, 5_000.0);
    assert_eq!(now(&other) - other_before, 10.0);
}

#[tokio::test]
async fn body_sizes_are_recorded_for_known_and_streamed_bodies() {
    let _serial = serial().await;
    let client = app(Router::new()
        .route("/mh3/echo", post(|body: String| async move { body }))
        .route(
            "/mh3/stream",
            get(|| async {
                let chunks = futures_util::stream::iter(
                    ["abc", "defg", "hijkl"]
                        .map(|s| Ok::<_, std::io::Error>(bytes::Bytes::from_static(s.as_bytes()))),
                );
                Body::from_stream(chunks)
            }),
        ));
    let request_sum = http_series(
        "http_server_request_body_size_bytes_sum",
        "POST",
        "/mh3/echo",
        200,
    );
    let response_sum = http_series(
        "http_server_response_body_size_bytes_sum",
        "POST",
        "/mh3/echo",
        200,
    );
    let streamed_sum = http_series(
        "http_server_response_body_size_bytes_sum",
        "GET",
        "/mh3/stream",
        200,
    );
    let streamed_count = streamed_sum.replace("_sum{", "_count{");
    let before = (now(&request_sum), now(&response_sum), now(&streamed_sum));
    let streamed_count_before = now(&streamed_count);
    let body = "x".repeat(1_000);
    let response = client
        .request(
            Request::post("/mh3/echo")
                .header("content-type", "text/plain")
                .header("content-length", "1000")
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(response.text(), body);
    assert_eq!(now(&request_sum) - before.0, 1_000.0);
    assert_eq!(now(&response_sum) - before.1, 1_000.0);
    // A streamed body is counted when it has been sent to its end.
    assert_eq!(client.get("/mh3/stream").await.text(), "abcdefghijkl");
    assert_eq!(now(&streamed_sum) - before.2, 12.0);
    assert_eq!(now(&streamed_count) - streamed_count_before, 1.0);
}

#[tokio::test]
async fn requests_in_flight_are_a_gauge() {
    let _serial = serial().await;
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (e, r) = (entered.clone(), release.clone());
    let client = app(Router::new().route(
        "/mh4/slow",
        get(move || {
            let (e, r) = (e.clone(), r.clone());
            async move {
                e.notify_one();
                r.notified().await;
                "done"
            }
        }),
    ));
    let before = now("http_server_active_requests");
    let request = tokio::spawn({
        let client = client.clone();
        async move { client.get("/mh4/slow").await }
    });
    entered.notified().await;
    assert_eq!(now("http_server_active_requests") - before, 1.0);
    release.notify_one();
    assert_eq!(request.await.unwrap().text(), "done");
    assert_eq!(now("http_server_active_requests"), before);
}

#[tokio::test]
async fn metrics_on_the_main_router_need_the_token_and_skip_every_layer() {
    let _serial = serial().await;
    let token = "scrape-token-0123456789";
    let config = config(&[
        ("CHOPIN_METRICS_ON_MAIN", "true"),
        ("CHOPIN_METRICS_TOKEN", token),
        ("CHOPIN_RATE_LIMIT", "2/1m"),
    ]);
    let app = App::new(config).router(Router::new().route("/mh5", get(|| async { "hi" })));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_with(listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let wrong = http
        .get(&url)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // Ten scrapes through a limit of two per minute: never limited, never given a request id.
    for _ in 0..10 {
        let scrape = http.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(scrape.status(), StatusCode::OK);
        assert_eq!(scrape.headers()["content-type"], metrics::CONTENT_TYPE);
        assert_eq!(scrape.headers()["cache-control"], "no-store");
        assert!(scrape.headers().get("x-request-id").is_none());
        let text = scrape.text().await.unwrap();
        // A family with no series yet prints nothing: look for what every scrape holds.
        assert!(text.contains("chopin_build_info{version="), "{text}");
        assert!(
            !text.contains("http_route=\"/metrics\""),
            "scrapes are not counted"
        );
    }
    // The application's own routes are still limited.
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..3).map(|_| http.get(format!("http://{addr}/mh5")).send()),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap().status().as_u16())
    .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// `App::serve` opens the separate listener of `CHOPIN_METRICS_ADDR` beside the app's own.
#[tokio::test]
async fn serve_opens_the_metrics_listener() {
    let _serial = serial().await;
    let free = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (app_addr, metrics_addr): (SocketAddr, SocketAddr) = (free(0), free(1));
    let config = config(&[
        // `serve` installs the global subscriber: keep the other tests' request logs quiet.
        ("CHOPIN_LOG", "error"),
        ("CHOPIN_PORT", &app_addr.port().to_string()),
        ("CHOPIN_METRICS_ADDR", &metrics_addr.to_string()),
    ]);
    let app = App::new(config).router(Router::new().route("/mh6", get(|| async { "hi" })));
    let server = tokio::spawn(app.serve());
    let http = reqwest::Client::new();
    let mut scrape = None;
    for _ in 0..100 {
        if let Ok(response) = http
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
        {
            scrape = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scrape = scrape.expect("the metrics listener answers");
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.unwrap();
    assert!(text.contains("chopin_build_info{version=\""), "{text}");
    assert!(text.contains("process_start_time_seconds"), "{text}");
    // The app itself answers on its own port, and only there.
    let hi = http
        .get(format!("http://{app_addr}/mh6"))
        .send()
        .await
        .unwrap();
    assert_eq!(hi.text().await.unwrap(), "hi");
    let not_there = http
        .get(format!("http://{metrics_addr}/mh6"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_there.status(), StatusCode::NOT_FOUND);
    server.abort();
}

#[tokio::test]
async fn process_metrics_are_read_at_each_scrape() {
    let _serial = serial().await;
    let scrape = metrics::global().encode();
    let start = sample(&scrape, "process_start_time_seconds");
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start > unix_now - 3_600.0 && start <= unix_now + 1.0,
        "{start}"
    );
    if cfg!(target_os = "linux") {
        let fds = sample(&scrape, "process_open_fds");
        let extra: Vec<std::fs::File> = (0..20)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let more = now("process_open_fds");
        assert!(more >= fds + 20.0 - 5.0, "{fds} -> {more}");
        drop(extra);
        assert!(sample(&scrape, "process_resident_memory_bytes") > 1_000_000.0);
        assert!(sample(&scrape, "process_cpu_seconds_total") > 0.0);
        assert!(sample(&scrape, "process_max_fds") > 0.0);
    }
}
