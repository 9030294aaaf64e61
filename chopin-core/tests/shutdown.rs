//! Graceful shutdown over real TCP: in-flight requests finish, new connections are refused,
//! `serve_with` returns, and the shutdown timeout bounds how long it waits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chopin_core::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

#[derive(Clone)]
struct Probe {
    /// Notified when a slow handler has started.
    entered: Arc<Notify>,
    /// How long the slow handler sleeps.
    sleep: Duration,
}

async fn slow(State(probe): State<Probe>) -> ApiResponse<&'static str> {
    probe.entered.notify_one();
    tokio::time::sleep(probe.sleep).await;
    ApiResponse::success("done")
}

async fn ok() -> &'static str {
    "ok"
}

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), chopin_core::ServeError>>,
    entered: Arc<Notify>,
}

async fn start(vars: &[(&str, &str)], sleep: Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let entered = Arc::new(Notify::new());
    let probe = Probe {
        entered: entered.clone(),
        sleep,
    };
    let mut all = vec![("CHOPIN_ENV", "test"), ("CHOPIN_REQUEST_TIMEOUT", "off")];
    all.extend_from_slice(vars);
    let app = App::with_state(config(&all), probe).router(
        Router::new()
            .route("/slow", get(slow))
            .route("/ok", get(ok)),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.serve_with(listener, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop,
        handle,
        entered,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_and_new_connections_are_refused() {
    let server = start(
        &[("CHOPIN_SHUTDOWN_TIMEOUT", "10s")],
        Duration::from_secs(1),
    )
    .await;
    let addr = server.addr;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("http://{addr}/ok"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the server is up"
    );

    let started = Instant::now();
    let in_flight = tokio::spawn({
        let http = http.clone();
        async move {
            let res = http.get(format!("http://{addr}/slow")).send().await?;
            let status = res.status();
            let body = res.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
    });
    tokio::time::timeout(Duration::from_secs(5), server.entered.notified())
        .await
        .expect("the slow handler started");

    server.stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !in_flight.is_finished(),
        "the slow request is still running"
    );

    // The listener is closed: new connections are refused.
    let refused = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .expect("connect does not hang");
    assert!(
        refused.is_err(),
        "a new connection after shutdown must fail"
    );
    let fresh = reqwest::Client::new()
        .get(format!("http://{addr}/ok"))
        .send()
        .await;
    assert!(
        fresh.is_err(),
        "a new request after shutdown must fail: {fresh:?}"
    );

    // The in-flight request completes normally.
    let (status, body) = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"success":true,"data":"done"}"#);
    assert!(started.elapsed() >= Duration::from_millis(900));

    // And the server returns Ok once it has drained.
    let result = tokio::time::timeout(Duration::from_secs(5), server.handle)
        .await
        .expect("serve_with returns after draining")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_server_shuts_down_promptly() {
    let server = start(
        &[("CHOPIN_SHUTDOWN_TIMEOUT", "10s")],
        Duration::from_secs(1),
    )
    .await;
    // A keep-alive connection left idle in the client's pool must not hold the server up.
    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://{}/ok", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "ok");

    let stopping = Instant::now();
    server.stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(3), server.handle)
        .await
        .expect("serve_with returns")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "{:?}",
        stopping.elapsed()
    );
    drop(http);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_the_wait() {
    let server = start(
        &[("CHOPIN_SHUTDOWN_TIMEOUT", "200ms")],
        Duration::from_secs(5),
    )
    .await;
    let addr = server.addr;
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .get(format!("http://{addr}/slow"))
            .send()
            .await
    });
    tokio::time::timeout(Duration::from_secs(5), server.entered.notified())
        .await
        .expect("the slow handler started");

    let stopping = Instant::now();
    server.stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(3), server.handle)
        .await
        .expect("serve_with returns despite the 5 s handler")
        .unwrap();
    let waited = stopping.elapsed();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        waited >= Duration::from_millis(200),
        "waited for the shutdown timeout first: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(1),
        "returned promptly: {waited:?}"
    );
    assert!(TcpStream::connect(addr).await.is_err());
    in_flight.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_fails_readiness_while_serving_on() {
    let server = start(
        &[
            // Long enough for the checks below on a loaded machine.
            ("CHOPIN_SHUTDOWN_DELAY", "3s"),
            ("CHOPIN_SHUTDOWN_TIMEOUT", "10s"),
        ],
        Duration::from_secs(1),
    )
    .await;
    let addr = server.addr;
    // A kept-alive connection opened before the signal: the balancer's view of an instance.
    let kept = reqwest::Client::new();
    let ready = kept
        .get(format!("http://{addr}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "ready before the signal");
    drop(ready.bytes().await);

    let stopping = Instant::now();
    server.stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // During the delay: readiness fails at once, other routes serve as usual, on the kept
    // connection and on a new one (the listener is still open).
    let ready = kept
        .get(format!("http://{addr}/health/ready"))
        .send()
        .await
        .expect("the kept connection still serves");
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key("retry-after"));
    let body = ready.text().await.unwrap();
    assert!(
        body.contains(r#""code":"SERVICE_UNAVAILABLE""#) && body.contains("draining"),
        "{body}"
    );
    let ok = kept.get(format!("http://{addr}/ok")).send().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "ok");
    let fresh = reqwest::Client::new()
        .get(format!("http://{addr}/ok"))
        .send()
        .await
        .expect("a new connection during the delay is served");
    assert_eq!(fresh.status(), 200);
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "the checks ran within the delay: {:?}",
        stopping.elapsed()
    );

    // After the delay the usual graceful shutdown: the listener closes and serve returns.
    let result = tokio::time::timeout(Duration::from_secs(5), server.handle)
        .await
        .expect("serve_with returns after the delay")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        stopping.elapsed() >= Duration::from_secs(3),
        "served for the whole delay: {:?}",
        stopping.elapsed()
    );
    assert!(TcpStream::connect(addr).await.is_err());
}
