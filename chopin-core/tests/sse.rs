//! Server-sent events over a real socket, through Chopin's default layer stack: each event
//! reaches the client as soon as it is produced (a client that asks for gzip gets an
//! uncompressed stream, not a compressor's buffer), a stream outlives the request timeout, and
//! the HTTP cache layers pass it through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chopin_core::cache::http::{ETagLayer, ResponseCacheLayer};
use chopin_core::cache::{Cache, CacheConfig};
use chopin_core::prelude::*;
use chopin_core::sse::{self, JsonEvents, KeepAlive, KeepAliveStream, Sse};
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

#[derive(serde::Serialize)]
struct Tick {
    n: u32,
}

/// The receiving end of the events a test produces, taken by the first request.
#[derive(Clone, Default)]
struct Feed(Arc<Mutex<Option<mpsc::UnboundedReceiver<u32>>>>);

type Ticks = BoxStream<'static, Tick>;

async fn events(State(feed): State<Feed>) -> Sse<KeepAliveStream<JsonEvents<Ticks>>> {
    let rx = feed.0.lock().unwrap().take();
    let ticks: Ticks = match rx {
        Some(rx) => stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|n| (Tick { n }, rx))
        })
        .boxed(),
        None => stream::empty().boxed(),
    };
    Sse::new(sse::json_events(ticks))
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(100)))
}

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Serve `router` (wrapped in the default layers, with a 300 ms request timeout) on a real
/// socket, producing the events sent into the returned sender.
async fn start(router: Router<Feed>) -> (Server, mpsc::UnboundedSender<u32>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let feed = Feed(Arc::new(Mutex::new(Some(rx))));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::with_state(
        config(&[
            ("CHOPIN_ENV", "test"),
            ("CHOPIN_REQUEST_TIMEOUT", "300ms"),
            ("CHOPIN_SHUTDOWN_TIMEOUT", "1s"),
        ]),
        feed,
    )
    .router(router);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.serve_with(listener, async {
        let _ = stopped.await;
    }));
    (Server { addr, _stop: stop }, tx)
}

/// Read the body until `needle` has arrived (or fail after two seconds).
async fn read_until(response: &mut reqwest::Response, seen: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{needle:?} did not arrive; got {seen:?}"))
            .expect("body read");
        match chunk {
            Some(bytes) => seen.push_str(std::str::from_utf8(&bytes).expect("utf-8 events")),
            None => panic!("stream ended before {needle:?}; got {seen:?}"),
        }
    }
}

async fn open(server: &Server, path: &str) -> reqwest::Response {
    let response = reqwest::Client::new()
        .get(format!("http://{}{path}", server.addr))
        .header("accept", "text/event-stream")
        .header("accept-encoding", "gzip, br, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(
        headers.get("content-encoding").is_none(),
        "an event stream is never compressed: {headers:?}"
    );
    assert!(headers.get("x-request-id").is_some(), "{headers:?}");
    response
}

#[tokio::test]
async fn events_arrive_one_by_one_and_outlive_the_request_timeout() {
    let (server, tx) = start(Router::new().route("/events", get(events))).await;
    let mut response = open(&server, "/events").await;
    let mut seen = String::new();

    // Each event is on the wire before the next one exists.
    tx.send(1).unwrap();
    read_until(&mut response, &mut seen, "data: {\"n\":1}\n\n").await;
    tx.send(2).unwrap();
    read_until(&mut response, &mut seen, "data: {\"n\":2}\n\n").await;

    // Three request timeouts later the stream is still open, kept alive by comments.
    tokio::time::sleep(Duration::from_millis(900)).await;
    tx.send(3).unwrap();
    read_until(&mut response, &mut seen, "data: {\"n\":3}\n\n").await;
    assert!(seen.contains(":\n\n"), "keep-alive comments: {seen:?}");
    assert!(!seen.contains("TIMEOUT"), "{seen:?}");

    // The stream ends when its source does, and the response with it.
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(2), response.text())
        .await
        .expect("the response ends with the stream")
        .unwrap();
    assert!(!rest.contains("data:"), "{rest:?}");
}

#[tokio::test]
async fn http_cache_layers_pass_a_stream_through() {
    let cache = Cache::memory(&CacheConfig::default());
    let router = Router::new()
        .route("/events", get(events))
        .layer(ResponseCacheLayer::new(cache, "events").ttl(Duration::from_secs(30)))
        .layer(ETagLayer::new());
    let (server, tx) = start(router).await;
    let mut response = open(&server, "/events").await;
    assert!(response.headers().get("etag").is_none());
    let mut seen = String::new();
    tx.send(7).unwrap();
    // Neither layer waits for the end of the body: the event arrives while it is open.
    read_until(&mut response, &mut seen, "data: {\"n\":7}\n\n").await;
    tx.send(8).unwrap();
    read_until(&mut response, &mut seen, "data: {\"n\":8}\n\n").await;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), response.text()).await;

    // Nothing was stored: a second request is a fresh (here, empty) stream, not a replay.
    let second = open(&server, "/events").await;
    assert_ne!(
        second.headers().get("x-cache").map(|v| v.as_bytes()),
        Some(&b"hit"[..])
    );
    let body = tokio::time::timeout(Duration::from_secs(2), second.text())
        .await
        .expect("an empty stream ends")
        .unwrap();
    assert!(!body.contains("data:"), "{body:?}");
}
