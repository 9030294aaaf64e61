//! Test helpers (the `testing` feature): an in-process HTTP client for a [`Router`] and
//! isolated databases.
//!
//! Service-backed helpers read their server's address from the environment
//! (`CHOPIN_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`;
//! `CHOPIN_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). When the server is unreachable
//! they return `None` after printing why — unless `CI` is `true` or `1`, where an unreachable
//! service is a test failure, never a skip. [`SmtpSink`] runs a real SMTP server (Python's
//! `aiosmtpd`) to test mail delivery.

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

/// `true` when running under CI (`CI=true`), where service-backed tests must not skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Sends requests to a [`Router`] in process, through the whole layer stack.
#[derive(Debug, Clone)]
pub struct TestClient {
    router: Router,
    headers: http::HeaderMap,
}

/// A buffered response.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body decoded as JSON; panics with the body text if it is not.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not the expected JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as a `serde_json::Value`.
    pub fn value(&self) -> serde_json::Value {
        self.json()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error.code` of an error envelope.
    pub fn error_code(&self) -> Option<String> {
        self.value()["error"]["code"].as_str().map(str::to_string)
    }
}

impl TestClient {
    /// A client for `router`.
    pub fn new(router: Router) -> Self {
        Self {
            router,
            headers: http::HeaderMap::new(),
        }
    }

    /// A client for the same router that adds `name: value` to every request (unless the
    /// request sets that header itself).
    pub fn with_header(&self, name: &str, value: &str) -> Self {
        let mut client = self.clone();
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("invalid test header name {name:?}: {e}"));
        let value = http::HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("invalid test header value {value:?}: {e}"));
        client.headers.insert(name, value);
        client
    }

    /// A client for the same router that sends `Authorization: Bearer <token>`.
    pub fn with_bearer(&self, token: &str) -> Self {
        self.with_header("authorization", &format!("Bearer {token}"))
    }

    /// Send any request.
    pub async fn request(&self, mut request: Request<Body>) -> TestResponse {
        for (name, value) in &self.headers {
            if !request.headers().contains_key(name) {
                request.headers_mut().insert(name.clone(), value.clone());
            }
        }
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_else(|e| panic!("reading the response body failed: {e}"));
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> TestResponse {
        self.send(Method::GET, uri, None).await
    }

    /// `DELETE uri`.
    pub async fn delete(&self, uri: &str) -> TestResponse {
        self.send(Method::DELETE, uri, None).await
    }

    /// `POST uri` with a JSON body.
    pub async fn post_json(&self, uri: &str, body: &impl Serialize) -> TestResponse {
        self.send(Method::POST, uri, Some(body_of(body))).await
    }

    /// `PUT uri` with a JSON body.
    pub async fn put_json(&self, uri: &str, body: &impl Serialize) -> TestResponse {
        self.send(Method::PUT, uri, Some(body_of(body))).await
    }

    /// `PATCH uri` with a JSON body.
    pub async fn patch_json(&self, uri: &str, body: &impl Serialize) -> TestResponse {
        self.send(Method::PATCH, uri, Some(body_of(body))).await
    }

    async fn send(&self, method: Method, uri: &str, json: Option<Vec<u8>>) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(uri);
        let body = match json {
            Some(bytes) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let request = builder
            .body(body)
            .unwrap_or_else(|e| panic!("invalid test request: {e}"));
        self.request(request).await
    }
}

fn body_of(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| panic!("test body is not serialisable: {e}"))
}

/// Skip (print `reason`, return `None`) outside CI; panic in CI.
fn skip_or_fail<T>(service: &str, reason: String) -> Option<T> {
    if in_ci() {
        panic!("{reason} (CI=true: service-backed tests must run)");
    }
    eprintln!("skipping {service} test: {reason}");
    None
}

/// The URL of the Redis server for cache tests: `CHOPIN_TEST_REDIS_URL`, default
/// `redis://127.0.0.1:6379`, once it has answered `PING` (within 2 s). Returns `None` (after
/// printing why) when it does not, outside CI; panics in CI.
///
/// Give each test its own namespace ([`unique_namespace`]) and empty it at the end with
/// `cache.delete_prefix("")`.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub async fn redis_url_or_skip() -> Option<String> {
    let url = std::env::var("CHOPIN_TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| crate::config::DEFAULT_REDIS_URL.to_string());
    let probe = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<redis::Value>(&mut conn)
            .await
    };
    let shown = crate::config::redact_url(&url);
    match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => skip_or_fail("Redis", format!("Redis at {shown} unreachable: {e}")),
        Err(_) => skip_or_fail(
            "Redis",
            format!("Redis at {shown} did not answer within 2s"),
        ),
    }
}

/// A cache namespace no other test uses: `chopin_test_<32 hex digits>`.
pub fn unique_namespace() -> String {
    format!("chopin_test_{}", uuid::Uuid::new_v4().simple())
}

/// A fresh, uniquely named PostgreSQL database, dropped (with its connections) when this
/// value is dropped.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Debug)]
pub struct TestPostgres {
    admin_url: String,
    name: String,
    url: String,
}

#[cfg(feature = "postgres")]
impl TestPostgres {
    /// Create a database on the server at `CHOPIN_TEST_POSTGRES_URL`. Returns `None` (after
    /// printing why) when the server is unreachable outside CI; panics in CI.
    pub async fn create() -> Option<TestPostgres> {
        use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
        let admin_url = std::env::var("CHOPIN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut conn = match PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => {
                let reason = format!(
                    "PostgreSQL at {} unreachable: {e}",
                    crate::config::redact_url(&admin_url)
                );
                return skip_or_fail("PostgreSQL", reason);
            }
        };
        let name = format!("chopin_test_{}", uuid::Uuid::new_v4().simple());
        // The name is generated here (hex digits only), never user input.
        let create = AssertSqlSafe(format!("CREATE DATABASE {name}"));
        conn.execute(create)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
        let _ = conn.close().await;
        let base = admin_url.split('?').next().unwrap_or(&admin_url);
        let server = base.rsplit_once('/').map(|(s, _)| s).unwrap_or(base);
        let url = format!("{server}/{name}");
        Some(TestPostgres {
            admin_url,
            name,
            url,
        })
    }

    /// The URL of the fresh database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(feature = "postgres")]
impl Drop for TestPostgres {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime: do the async clean-up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return eprintln!("cannot drop test database {name}: {e}"),
            };
            runtime.block_on(async move {
                use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
                match PgConnection::connect(&admin_url).await {
                    Ok(mut conn) => {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let result = conn.execute(AssertSqlSafe(sql)).await;
                        if let Err(e) = result {
                            eprintln!("cannot drop test database {name}: {e}");
                        }
                    }
                    Err(e) => eprintln!("cannot drop test database {name}: {e}"),
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The Python that runs [`SmtpSink`]: `CHOPIN_TEST_AIOSMTPD_PYTHON`, else the venv `.ci/run`
/// installs `aiosmtpd` into (`$XDG_CACHE_HOME` or `~/.cache`, then
/// `chopin-ci/aiosmtpd-1.4.6/bin/python`) when it exists, else `python3`.
pub fn aiosmtpd_python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("CHOPIN_TEST_AIOSMTPD_PYTHON").filter(|v| !v.is_empty())
    {
        return python.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")));
    if let Some(venv) = cache.map(|c| c.join("chopin-ci/aiosmtpd-1.4.6/bin/python"))
        && venv.exists()
    {
        return venv;
    }
    "python3".into()
}

/// The sink: an `aiosmtpd` server on a free loopback port (no TLS, no authentication) that
/// prints each message it accepts as one JSON line.
const SMTP_SINK_PY: &str = r#"
import asyncio, json, sys
from aiosmtpd.smtp import SMTP

class Sink:
    async def handle_DATA(self, server, session, envelope):
        content = envelope.content
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        print(json.dumps({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": content}), flush=True)
        return "250 Message accepted for delivery"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink()), "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

/// One message an [`SmtpSink`] accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SinkMessage {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as received: headers, a blank line, the body (transfer-encoded).
    pub data: String,
}

impl SinkMessage {
    /// The value of header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let head = head.split("\n\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push_str(line.trim_end());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                found = Some(value.trim().to_string());
            }
        }
        found
    }

    /// The body (after the headers), with quoted-printable soft line breaks and `=XX`
    /// escapes decoded, which is how `lettre` encodes text with long lines.
    pub fn body(&self) -> String {
        let body = match self.data.split_once("\r\n\r\n") {
            Some((_, body)) => body.to_string(),
            None => self
                .data
                .split_once("\n\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default(),
        };
        let quoted = self
            .header("content-transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("quoted-printable"));
        if !quoted {
            return body;
        }
        let joined = body.replace("=\r\n", "").replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && let Some(hex) = joined.get(i + 1..i + 3)
                && let Ok(b) = u8::from_str_radix(hex, 16)
            {
                out.push(b);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A real SMTP server for tests: Python's `aiosmtpd` ([`aiosmtpd_python`] runs it) on a free
/// loopback port, plain SMTP, accepting every message. Point a mailer at [`SmtpSink::url`]
/// and read what arrived with [`SmtpSink::next_message`]. The server stops when the sink is
/// dropped.
///
/// [`SmtpSink::start`] returns `None` (after printing why) when that Python has no
/// `aiosmtpd`, outside CI; in CI (`CI=true`) it panics. `pip install aiosmtpd` (or Debian's
/// `python3-aiosmtpd`) provides it; `.ci/run` installs it into a venv.
#[derive(Debug)]
pub struct SmtpSink {
    child: std::process::Child,
    port: u16,
    messages: std::sync::Mutex<std::sync::mpsc::Receiver<SinkMessage>>,
}

impl SmtpSink {
    /// Start the server and wait (up to 10 s) until it listens.
    pub fn start() -> Option<SmtpSink> {
        use std::io::BufRead;
        let python = aiosmtpd_python();
        let spawned = std::process::Command::new(&python)
            .args(["-c", SMTP_SINK_PY])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                return skip_or_fail(
                    "SMTP",
                    format!("cannot run {} for the aiosmtpd sink: {e}", python.display()),
                );
            }
        };
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return skip_or_fail("SMTP", "the aiosmtpd sink has no stdout".into());
        };
        let (port_tx, port_rx) = std::sync::mpsc::channel::<u16>();
        let (tx, rx) = std::sync::mpsc::channel::<SinkMessage>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(message) = serde_json::from_str::<SinkMessage>(&line) {
                    if tx.send(message).is_err() {
                        break;
                    }
                } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(port) = v["port"].as_u64().and_then(|p| u16::try_from(p).ok())
                {
                    let _ = port_tx.send(port);
                }
            }
        });
        match port_rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(port) => Some(SmtpSink {
                child,
                port,
                messages: std::sync::Mutex::new(rx),
            }),
            Err(_) => {
                let _ = child.kill();
                let mut stderr = String::new();
                if let Ok(output) = child.wait_with_output() {
                    stderr = String::from_utf8_lossy(&output.stderr).into_owned();
                }
                skip_or_fail(
                    "SMTP",
                    format!(
                        "the aiosmtpd sink did not start with {} (set CHOPIN_TEST_AIOSMTPD_PYTHON \
                         to a Python with aiosmtpd): {}",
                        python.display(),
                        stderr.trim()
                    ),
                )
            }
        }
    }

    /// The port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>?tls=none`: the `CHOPIN_SMTP_URL` that reaches the sink.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// The next message the server accepted, waiting up to `timeout` for it (without
    /// blocking the runtime: mails sent by spawned tasks arrive meanwhile).
    pub async fn next_message(&self, timeout: std::time::Duration) -> Option<SinkMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = match self.messages.lock() {
                Ok(messages) => messages.try_recv(),
                Err(_) => return None,
            };
            match next {
                Ok(message) => return Some(message),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
