//! Helpers shared by the pass-through integration tests (`passthrough_sqlite.rs`,
//! `passthrough_postgres.rs`): databases, routers built from closures, an in-process frame
//! reader, a real TCP server and envelope assertions.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use bytes::Bytes;
use chopin_core::db::Db;
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestResponse};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A configuration from explicit variables (never the process environment).
pub fn config(vars: &[(&str, &str)]) -> Config {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
        .expect("test config is valid")
}

/// Connect to `url` with a test configuration.
pub async fn connect(url: &str) -> Db {
    let config = config(&[("CHOPIN_ENV", "test"), ("DATABASE_URL", url)]);
    Db::connect(&config.database)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// A SQLite database in a fresh temporary directory; `query` holds pool parameters.
pub async fn sqlite(query: &str) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("passthrough.db");
    let url = if query.is_empty() {
        format!("sqlite://{}", path.display())
    } else {
        format!("sqlite://{}?{query}", path.display())
    };
    let db = connect(&url).await;
    (dir, db)
}

/// A fresh PostgreSQL database (`None` when the server is unreachable outside CI).
pub async fn postgres(query: &str) -> Option<(chopin_core::testing::TestPostgres, Db)> {
    let pg = chopin_core::testing::TestPostgres::create().await?;
    let url = if query.is_empty() {
        pg.url().to_string()
    } else {
        format!("{}?{query}", pg.url())
    };
    let db = connect(&url).await;
    Some((pg, db))
}

/// Routes whose handlers are closures over the [`Db`].
pub struct Routes(Router<Db>);

impl Routes {
    pub fn new() -> Self {
        Routes(Router::new())
    }

    /// `GET path` answered by `handler(db)`.
    pub fn get<F, Fut, R>(self, path: &str, handler: F) -> Self
    where
        F: Fn(Db) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse + 'static,
    {
        self.route(path, get(move |State(db): State<Db>| handler(db)))
    }

    /// Any axum method router.
    pub fn route(self, path: &str, method_router: MethodRouter<Db>) -> Self {
        Routes(self.0.route(path, method_router))
    }

    /// The whole application router (Chopin's default layers) in `environment`.
    pub fn router_in(self, db: &Db, environment: Environment) -> Router {
        self.app_in(db, environment).into_router()
    }

    fn app_in(self, db: &Db, environment: Environment) -> App<Db> {
        App::with_state(Config::for_environment(environment), db.clone()).router(self.0)
    }

    /// The application router in the `test` environment.
    pub fn router(self, db: &Db) -> Router {
        self.router_in(db, Environment::Test)
    }

    /// An in-process client in the `test` environment.
    pub fn client(self, db: &Db) -> TestClient {
        TestClient::new(self.router(db))
    }

    /// An in-process client in `environment`.
    pub fn client_in(self, db: &Db, environment: Environment) -> TestClient {
        TestClient::new(self.router_in(db, environment))
    }

    /// Serve over real TCP on 127.0.0.1 (an ephemeral port) with `App::serve_with`.
    pub async fn serve(self, db: &Db) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.app_in(db, Environment::Test);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = app.serve_with(listener, shutdown).await {
                eprintln!("test server failed: {e}");
            }
        });
        Server {
            addr,
            stop: Some(stop),
        }
    }
}

/// A server started by [`Routes::serve`]; asks it to shut down when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response body read frame by frame.
#[derive(Debug)]
pub struct Frames {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Data frames (in process) or chunks (over TCP), in order.
    pub chunks: Vec<Bytes>,
    /// The error that ended the body early, if any.
    pub error: Option<String>,
    /// When the request was sent.
    pub started: Instant,
    /// When the first chunk arrived, relative to `started`.
    pub first_chunk: Option<Duration>,
    /// When the body ended (completely or not), relative to `started`.
    pub finished: Duration,
}

impl Frames {
    /// All chunks concatenated.
    pub fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body()).into_owned()
    }

    /// The body as JSON; panics (showing the start and end of the body) if it is not.
    pub fn value(&self) -> Value {
        let body = self.body();
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", preview(&body)))
    }

    /// Largest chunk in bytes.
    pub fn largest_chunk(&self) -> usize {
        self.chunks.iter().map(Bytes::len).max().unwrap_or(0)
    }
}

/// The first and last 200 bytes of a body, for failure messages.
pub fn preview(body: &[u8]) -> String {
    if body.len() <= 400 {
        return String::from_utf8_lossy(body).into_owned();
    }
    format!(
        "{} … ({} bytes) … {}",
        String::from_utf8_lossy(&body[..200]),
        body.len(),
        String::from_utf8_lossy(&body[body.len() - 200..])
    )
}

/// `GET uri` through `router` in process, reading the body frame by frame.
pub async fn frames_in_process(router: Router, uri: &str) -> Frames {
    let started = Instant::now();
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
    let (parts, mut body) = response.into_parts();
    let mut frames = Frames {
        status: parts.status,
        headers: parts.headers,
        chunks: Vec::new(),
        error: None,
        started,
        first_chunk: None,
        finished: Duration::ZERO,
    };
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    frames.first_chunk.get_or_insert_with(|| started.elapsed());
                    frames.chunks.push(data);
                }
            }
            Some(Err(e)) => {
                frames.error = Some(e.to_string());
                break;
            }
        }
    }
    frames.finished = started.elapsed();
    frames
}

/// `GET url` over real TCP with reqwest, reading the body chunk by chunk.
pub async fn frames_over_tcp(url: &str) -> Frames {
    let started = Instant::now();
    let mut response = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let mut frames = Frames {
        status: response.status(),
        headers: response.headers().clone(),
        chunks: Vec::new(),
        error: None,
        started,
        first_chunk: None,
        finished: Duration::ZERO,
    };
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                frames.first_chunk.get_or_insert_with(|| started.elapsed());
                frames.chunks.push(chunk);
            }
            Ok(None) => break,
            Err(e) => {
                frames.error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    frames.finished = started.elapsed();
    frames
}

/// Send a raw HTTP/1.1 `GET path` and read the raw bytes until the server closes the
/// connection (or `limit` passes).
pub async fn raw_http_get(addr: SocketAddr, path: &str, limit: Duration) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the test server");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server did not close the connection within {limit:?}"
    );
    out
}

/// The body of a successful envelope response; checks status and content type.
pub fn ok_body(res: &TestResponse) -> &[u8] {
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    &res.body
}

/// Assert that `res` is exactly Chopin's error envelope for `status` / `code` / `message`
/// (with the request id and without internal detail).
pub fn assert_error(res: &TestResponse, status: StatusCode, code: &str, message: &str) {
    assert_eq!(res.status, status, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    let request_id = res
        .header("x-request-id")
        .expect("an x-request-id header")
        .to_string();
    assert_eq!(
        res.value(),
        json!({
            "success": false,
            "error": {"code": code, "message": message, "request_id": request_id},
        }),
        "{}",
        res.text()
    );
}

/// A 500 envelope that says nothing but "internal server error".
pub fn assert_internal(res: &TestResponse) {
    assert_error(
        res,
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "internal server error",
    );
}

/// Assert that a streamed body was aborted: an error ended it, it is not JSON and it does not
/// end the document. Returns the bytes received.
pub fn assert_aborted(frames: &Frames) -> Vec<u8> {
    assert_eq!(frames.status, StatusCode::OK, "the response had started");
    let body = frames.body();
    assert!(
        frames.error.is_some(),
        "the body must end with an error, not cleanly: {}",
        preview(&body)
    );
    assert!(
        serde_json::from_slice::<Value>(&body).is_err(),
        "an aborted body must never be a complete JSON document: {}",
        preview(&body)
    );
    assert!(!body.ends_with(b"]}"), "{}", preview(&body));
    body
}

/// Wait until `check` returns `true`, polling every 50 ms for up to `limit`; returns how long
/// it took, or `None` on timeout.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Number of occurrences of `needle` in `haystack`.
pub fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// `{"success":true,"data":<data>}` as bytes.
pub fn envelope(data: &str) -> Vec<u8> {
    format!(r#"{{"success":true,"data":{data}}}"#).into_bytes()
}

/// The numbers that follow each occurrence of `key` (for example `{"n":`) in a possibly
/// truncated body; a number cut off by the end of the body is left out.
pub fn numbers_after(body: &[u8], key: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.windows(key.len()).position(|w| w == key) {
        rest = &rest[at + key.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits == rest.len() {
            continue;
        }
        let n = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("digits");
        out.push(n);
    }
    out
}

/// Assert that an aborted body holds rows 1, 2, … k in order, all before `failing`; returns k.
pub fn assert_prefix_before(body: &[u8], key: &[u8], failing: u64) -> u64 {
    let numbers = numbers_after(body, key);
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "rows out of order: {}", preview(body));
    let k = numbers.len() as u64;
    assert!(k >= 1, "not even the first row: {}", preview(body));
    assert!(k < failing, "row {failing} failed, yet {k} rows arrived");
    k
}
