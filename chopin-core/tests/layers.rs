//! The default layer stack as a client sees it: request ids, panics, body limit, timeout,
//! compression, CORS, 404 / 405 envelopes, and `Layers::minimal()`.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use chopin_core::RequestId;
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestResponse};
use http::{Request, StatusCode};
use serde_json::{Value, json};

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

async fn ok() -> ApiResponse<&'static str> {
    ApiResponse::success("ok")
}
async fn whoami(axum::Extension(id): axum::Extension<RequestId>) -> String {
    id.to_string()
}
async fn boom() -> &'static str {
    panic!("kaboom")
}
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(1)).await;
    "late"
}
async fn not_found() -> Result<(), ChopinError> {
    Err(ChopinError::NotFound("nothing here".into()))
}
async fn echo(Json(v): Json<Value>) -> Json<Value> {
    Json(v)
}

/// About 60 kB of repetitive JSON.
fn big_document() -> Value {
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"id": i, "title": format!("post number {i}"), "published": i % 2 == 0}))
        .collect();
    json!({ "items": items })
}
async fn big() -> ApiResponse<Value> {
    ApiResponse::success(big_document())
}

fn routes() -> Router {
    Router::new()
        .route("/ok", get(ok))
        .route("/whoami", get(whoami))
        .route("/boom", get(boom))
        .route("/slow", get(slow))
        .route("/missing", get(not_found))
        .route("/echo", post(echo))
        .route("/big", get(big))
        .route("/only-get", get(ok))
}

fn client_with(vars: &[(&str, &str)]) -> TestClient {
    let mut all = vec![("CHOPIN_ENV", "test")];
    all.extend_from_slice(vars);
    TestClient::new(App::new(config(&all)).router(routes()).into_router())
}

fn client() -> TestClient {
    client_with(&[])
}

fn get_with(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

fn assert_uuid_v4(id: &str) {
    let parsed = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id:?} is not a UUID: {e}"));
    assert_eq!(parsed.get_version_num(), 4, "{id}");
    assert_eq!(id.len(), 36, "hyphenated form: {id}");
    assert_eq!(id, id.to_ascii_lowercase(), "lower case: {id}");
}

fn envelope(res: &TestResponse, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status, status, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    let body = res.value();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

// ---------------------------------------------------------------------------------------------
// Request id.

#[tokio::test]
async fn request_id_is_generated_when_absent() {
    let c = client();
    let a = c.get("/ok").await;
    let b = c.get("/ok").await;
    let id_a = a
        .header("x-request-id")
        .expect("x-request-id on every response");
    let id_b = b.header("x-request-id").unwrap();
    assert_uuid_v4(id_a);
    assert_uuid_v4(id_b);
    assert_ne!(id_a, id_b, "a fresh id per request");
}

#[tokio::test]
async fn sane_request_id_is_propagated() {
    let c = client();
    for id in [
        "abc-123_x.y:z",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        &"a".repeat(128),
    ] {
        let res = c
            .request(get_with("/whoami", &[("x-request-id", id)]))
            .await;
        assert_eq!(res.header("x-request-id"), Some(id));
        assert_eq!(res.text(), id, "the handler sees the same id");
    }
}

#[tokio::test]
async fn insane_request_id_is_replaced() {
    let c = client();
    let too_long = "a".repeat(129);
    for id in [
        too_long.as_str(),
        "has space",
        "<script>alert(1)</script>",
        "semi;colon",
        "quote\"d",
        "slash/es",
        "",
    ] {
        let res = c
            .request(get_with("/whoami", &[("x-request-id", id)]))
            .await;
        let echoed = res.header("x-request-id").unwrap();
        assert_ne!(echoed, id);
        assert_uuid_v4(echoed);
        assert_eq!(res.text(), echoed, "the handler sees the replacement");
    }
    // Non-ASCII bytes in the header.
    let mut req = get_with("/whoami", &[]);
    req.headers_mut().insert(
        "x-request-id",
        http::HeaderValue::from_bytes("idé".as_bytes()).unwrap(),
    );
    let res = c.request(req).await;
    assert_uuid_v4(res.header("x-request-id").unwrap());
}

#[tokio::test]
async fn request_id_in_error_bodies_equals_the_header() {
    let c = client();
    for (uri, status) in [
        ("/missing", StatusCode::NOT_FOUND),
        ("/nowhere", StatusCode::NOT_FOUND),
        ("/boom", StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let res = c.get(uri).await;
        assert_eq!(res.status, status);
        let header_id = res.header("x-request-id").unwrap();
        assert_eq!(
            res.value()["error"]["request_id"],
            json!(header_id),
            "{uri}"
        );

        let res = c
            .request(get_with(uri, &[("x-request-id", "trace-77")]))
            .await;
        assert_eq!(res.header("x-request-id"), Some("trace-77"));
        assert_eq!(res.value()["error"]["request_id"], "trace-77", "{uri}");
    }
}

// ---------------------------------------------------------------------------------------------
// Panics, body limit, timeout.

#[tokio::test]
async fn panic_becomes_500_envelope_with_request_id() {
    let c = client();
    let res = c
        .request(get_with("/boom", &[("x-request-id", "p-1")]))
        .await;
    let body = envelope(&res, StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR");
    assert_eq!(
        body,
        json!({"success": false, "error": {"code": "INTERNAL_ERROR", "message": "internal server error", "request_id": "p-1"}})
    );
    // The same router keeps serving.
    let res = c.get("/ok").await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn server_keeps_serving_after_a_panic_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = App::new(config(&[("CHOPIN_ENV", "production")])).router(routes());
    let server = tokio::spawn(app.serve_with(listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let res = http
            .get(format!("http://{addr}/boom"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["request_id"], json!(id));
        assert!(!body.to_string().contains("kaboom"));
    }
    let res = http.get(format!("http://{addr}/ok")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = reqwest::Client::new()
        .get(format!("http://{addr}/ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "new connections are served too");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn body_limit_is_413_envelope() {
    let c = client_with(&[("CHOPIN_BODY_LIMIT", "100")]);
    let big = json!({"text": "x".repeat(200)});
    let res = c
        .request(
            Request::post("/echo")
                .header("content-type", "application/json")
                .header("x-request-id", "big-1")
                .body(Body::from(serde_json::to_vec(&big).unwrap()))
                .unwrap(),
        )
        .await;
    let body = envelope(&res, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert_eq!(
        body,
        json!({"success": false, "error": {"code": "PAYLOAD_TOO_LARGE", "message": "request body is larger than the limit of 100 bytes", "request_id": "big-1"}})
    );
    // Under the limit passes.
    let res = c.post_json("/echo", &json!({"text": "short"})).await;
    assert_eq!(res.status, StatusCode::OK);
    // The limit applies before routing decisions about the body: even a route that never reads
    // it answers 413 when the declared length is too large.
    let res = c
        .request(
            Request::get("/ok")
                .header("content-length", "1000")
                .body(Body::from(vec![b'x'; 1000]))
                .unwrap(),
        )
        .await;
    envelope(&res, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn timeout_is_504_envelope_quickly() {
    let c = client_with(&[("CHOPIN_REQUEST_TIMEOUT", "100ms")]);
    let started = Instant::now();
    let res = c
        .request(get_with("/slow", &[("x-request-id", "slow-1")]))
        .await;
    let elapsed = started.elapsed();
    let body = envelope(&res, StatusCode::GATEWAY_TIMEOUT, "TIMEOUT");
    assert_eq!(
        body,
        json!({"success": false, "error": {"code": "TIMEOUT", "message": "the request did not complete in time", "request_id": "slow-1"}})
    );
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(700),
        "{elapsed:?}"
    );
    // Fast requests are unaffected.
    assert_eq!(c.get("/ok").await.status, StatusCode::OK);
}

#[tokio::test]
async fn timeout_off_lets_slow_handlers_finish() {
    let c = client_with(&[("CHOPIN_REQUEST_TIMEOUT", "off")]);
    let res = c.get("/slow").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.text(), "late");
}

// ---------------------------------------------------------------------------------------------
// Compression.

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(body).unwrap(),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

#[tokio::test]
async fn compression_by_accept_encoding() {
    let c = client();
    let plain = c.get("/big").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(
        plain.header("content-encoding").is_none(),
        "not asked: not compressed"
    );
    assert!(plain.body.len() > 30_000);
    let original: Value = plain.value();
    assert_eq!(original["data"], big_document());

    for encoding in ["gzip", "br", "zstd"] {
        let res = c
            .request(get_with("/big", &[("accept-encoding", encoding)]))
            .await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.header("content-encoding"), Some(encoding));
        assert_eq!(res.header("content-type"), Some("application/json"));
        assert!(
            res.body.len() * 5 < plain.body.len(),
            "{encoding}: {} vs {} bytes",
            res.body.len(),
            plain.body.len()
        );
        let decoded = decode(encoding, &res.body);
        assert_eq!(
            decoded,
            plain.body.as_ref(),
            "{encoding} round-trips byte for byte"
        );
        assert!(res.header("x-request-id").is_some());
    }

    // Preference by quality value.
    let res = c
        .request(get_with(
            "/big",
            &[("accept-encoding", "gzip;q=0.5, zstd;q=1.0")],
        ))
        .await;
    assert_eq!(res.header("content-encoding"), Some("zstd"));
    // Unknown or identity-only: not compressed.
    for ae in ["identity", "compress", "gzip;q=0"] {
        let res = c
            .request(get_with("/big", &[("accept-encoding", ae)]))
            .await;
        assert!(res.header("content-encoding").is_none(), "{ae}");
        assert_eq!(res.body, plain.body, "{ae}");
    }
}

#[tokio::test]
async fn compression_can_be_disabled() {
    let c = client_with(&[("CHOPIN_COMPRESSION", "false")]);
    let res = c
        .request(get_with("/big", &[("accept-encoding", "gzip, br, zstd")]))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.header("content-encoding").is_none());
    assert_eq!(res.value()["data"], big_document());
}

// ---------------------------------------------------------------------------------------------
// CORS.

const ORIGIN: &str = "https://app.example.com";

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri("/ok")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_is_closed_by_default() {
    let c = client();
    let res = c.request(get_with("/ok", &[("origin", ORIGIN)])).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.header("access-control-allow-origin").is_none());
    let res = c.request(preflight(ORIGIN)).await;
    assert!(res.header("access-control-allow-origin").is_none());
    assert!(res.header("access-control-allow-methods").is_none());
    assert!(
        !res.status.is_success(),
        "a closed API does not approve preflights: {}",
        res.status
    );
}

#[tokio::test]
async fn cors_open_for_the_configured_origin_only() {
    let c = client_with(&[(
        "CHOPIN_CORS_ORIGINS",
        "https://app.example.com, http://localhost:5173",
    )]);
    for origin in [ORIGIN, "http://localhost:5173"] {
        let res = c.request(get_with("/ok", &[("origin", origin)])).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.header("access-control-allow-origin"), Some(origin));
        let exposed = res
            .header("access-control-expose-headers")
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(exposed.contains("x-request-id"), "{exposed}");
        assert!(res.header("access-control-allow-credentials").is_none());
    }
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
    ] {
        let res = c.request(get_with("/ok", &[("origin", origin)])).await;
        assert_eq!(res.status, StatusCode::OK, "the request itself is served");
        assert!(
            res.header("access-control-allow-origin").is_none(),
            "{origin} must not be allowed"
        );
    }
    // Error responses carry CORS headers too, so browsers can read the envelope.
    let res = c.request(get_with("/missing", &[("origin", ORIGIN)])).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.header("access-control-allow-origin"), Some(ORIGIN));
}

#[tokio::test]
async fn cors_preflight_is_answered() {
    let c = client_with(&[("CHOPIN_CORS_ORIGINS", ORIGIN)]);
    let res = c.request(preflight(ORIGIN)).await;
    assert!(res.status.is_success(), "{} {}", res.status, res.text());
    assert_eq!(res.header("access-control-allow-origin"), Some(ORIGIN));
    let methods = res
        .header("access-control-allow-methods")
        .unwrap()
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let headers = res
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("content-type") && headers.contains("authorization"),
        "{headers}"
    );
    assert_eq!(res.header("access-control-max-age"), Some("600"));

    let res = c.request(preflight("https://evil.example.com")).await;
    assert!(res.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_credentials_when_configured() {
    let c = client_with(&[
        ("CHOPIN_CORS_ORIGINS", ORIGIN),
        ("CHOPIN_CORS_CREDENTIALS", "true"),
    ]);
    let res = c.request(get_with("/ok", &[("origin", ORIGIN)])).await;
    assert_eq!(res.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
}

#[tokio::test]
async fn cors_wildcard() {
    let c = client_with(&[("CHOPIN_CORS_ORIGINS", "*")]);
    let res = c
        .request(get_with("/ok", &[("origin", "https://anyone.example")]))
        .await;
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
}

// ---------------------------------------------------------------------------------------------
// Fallbacks.

#[tokio::test]
async fn unknown_route_is_404_envelope() {
    let res = client()
        .request(get_with("/nope", &[("x-request-id", "nf-1")]))
        .await;
    let body = envelope(&res, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(
        body,
        json!({"success": false, "error": {"code": "NOT_FOUND", "message": "no route matches this path", "request_id": "nf-1"}})
    );
}

#[tokio::test]
async fn wrong_method_is_405_envelope_with_allow() {
    let res = client()
        .request(
            Request::delete("/only-get")
                .header("x-request-id", "m-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let body = envelope(&res, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    assert_eq!(
        body,
        json!({"success": false, "error": {"code": "METHOD_NOT_ALLOWED", "message": "this route does not accept that HTTP method", "request_id": "m-1"}})
    );
    let allow = res.header("allow").expect("405 carries Allow (RFC 9110)");
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["GET", "HEAD"]);
}

#[tokio::test]
async fn minimal_layers_still_answer_404_and_405_in_the_envelope() {
    let router = App::new(config(&[("CHOPIN_ENV", "test")]))
        .router(routes())
        .layers(Layers::minimal())
        .into_router();
    let c = TestClient::new(router);

    let res = c
        .request(get_with("/nope", &[("x-request-id", "ignored")]))
        .await;
    let body = envelope(&res, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(body["error"]["request_id"], Value::Null);
    assert!(res.header("x-request-id").is_none(), "no request-id layer");

    let res = c.delete("/only-get").await;
    let body = envelope(&res, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    assert_eq!(body["error"]["request_id"], Value::Null);
    assert!(res.header("x-request-id").is_none());

    let res = c.get("/ok").await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.header("x-request-id").is_none());
    let res = c
        .request(get_with("/big", &[("accept-encoding", "gzip")]))
        .await;
    assert!(
        res.header("content-encoding").is_none(),
        "no compression layer"
    );
}

#[tokio::test]
async fn layers_from_config_reflect_the_config() {
    let cfg = config(&[
        ("CHOPIN_ENV", "production"),
        ("CHOPIN_COMPRESSION", "off"),
        ("CHOPIN_REQUEST_TIMEOUT", "5s"),
        ("CHOPIN_BODY_LIMIT", "1MiB"),
        ("CHOPIN_CORS_ORIGINS", ORIGIN),
    ]);
    let layers = Layers::from_config(&cfg);
    assert!(layers.request_id && layers.trace && layers.catch_panic);
    assert!(!layers.compression);
    assert_eq!(layers.timeout, Some(Duration::from_secs(5)));
    assert_eq!(layers.body_limit, Some(1024 * 1024));
    assert_eq!(layers.cors.origins, vec![ORIGIN.to_string()]);
    assert!(!layers.expose_internal_errors, "never in production");
    assert!(
        Layers::from_config(&Config::for_environment(Environment::Development))
            .expose_internal_errors
    );
    assert!(
        !Layers::from_config(&Config::for_environment(Environment::Test)).expose_internal_errors
    );
}

#[tokio::test]
async fn responses_vary_on_accept_encoding_whether_or_not_compressed() {
    let c = client();
    for headers in [&[][..], &[("accept-encoding", "gzip")][..]] {
        let res = c.request(get_with("/big", headers)).await;
        assert_eq!(res.header("vary"), Some("accept-encoding"), "{headers:?}");
    }
    // Disabled compression does not claim to negotiate.
    let c = client_with(&[("CHOPIN_COMPRESSION", "false")]);
    assert_eq!(c.get("/big").await.header("vary"), None);
}

#[tokio::test]
async fn panic_while_the_service_is_called_is_500_too() {
    // A tower service that panics in `call` itself, before any future exists.
    let sync_boom = tower::service_fn(|_req: Request<Body>| -> std::future::Ready<
        Result<axum::response::Response, std::convert::Infallible>,
    > { panic!("sync kaboom") });
    let router = Router::new().route_service("/sync-boom", sync_boom);
    let c = TestClient::new(
        App::new(config(&[("CHOPIN_ENV", "test")]))
            .router(router)
            .into_router(),
    );
    let res = c.get("/sync-boom").await;
    envelope(&res, StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR");
}

// ---------------------------------------------------------------------------------------------
// Trace.

/// Records span fields and event fields as text, to assert what the trace layer emits.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl<S> tracing_subscriber::Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields(format!("span {}", attrs.metadata().name()));
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let parent = ctx.event_span(event).map(|s| s.name()).unwrap_or("none");
        let mut fields = Fields(format!("event {} in {parent}", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn trace_opens_a_request_span_and_logs_each_response() {
    use tracing_subscriber::layer::SubscriberExt;
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let c = client();
    c.request(get_with("/ok", &[("x-request-id", "t-1")])).await;
    c.request(get_with("/boom", &[("x-request-id", "t-2")]))
        .await;
    let lines = capture.0.lock().unwrap().clone();
    let has = |needle: &[&str]| lines.iter().any(|l| needle.iter().all(|n| l.contains(n)));
    assert!(
        has(&[
            "span request",
            "method=GET",
            "path=/ok",
            "route=/ok",
            "request_id=t-1"
        ]),
        "{lines:#?}"
    );
    assert!(
        has(&["event INFO in request", "status=200", "latency_us="]),
        "{lines:#?}"
    );
    assert!(has(&["span request", "request_id=t-2"]), "{lines:#?}");
    assert!(has(&["event ERROR in request", "status=500"]), "{lines:#?}");
}

/// `serve_at` (hence `App::serve`) warns about a missing cursor key, as `serve_with` does.
#[tokio::test(flavor = "current_thread")]
async fn serve_at_warns_when_there_is_no_cursor_key() {
    use tracing_subscriber::layer::SubscriberExt;
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    // Production without CHOPIN_CURSOR_SECRET or CHOPIN_JWT_SECRET: no cursor key.
    let app = App::new(config(&[("CHOPIN_ENV", "production")])).router(routes());
    app.serve_at("127.0.0.1:0".parse().unwrap(), async {})
        .await
        .unwrap();
    let lines = capture.0.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("event WARN") && l.contains("no pagination cursor key")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn tiny_responses_are_not_marked_as_varying() {
    // Under 32 bytes tower-http never compresses, so there is nothing to vary on.
    let c = client();
    for headers in [&[][..], &[("accept-encoding", "gzip")][..]] {
        let res = c.request(get_with("/ok", headers)).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.header("vary"), None, "{headers:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn with_info_off_a_5xx_is_still_logged_with_its_latency_and_no_span_is_made() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(
        capture
            .clone()
            .with_filter(tracing::level_filters::LevelFilter::WARN),
    );
    let _guard = tracing::subscriber::set_default(subscriber);
    let c = client();
    c.request(get_with("/ok", &[])).await;
    c.request(get_with("/boom", &[])).await;
    let lines = capture.0.lock().unwrap().clone();
    assert!(!lines.iter().any(|l| l.starts_with("span")), "{lines:#?}");
    assert!(
        !lines.iter().any(|l| l.contains("status=200")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("event ERROR in none")
            && l.contains("status=500")
            && l.contains("latency_us=")),
        "{lines:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Extensions only when used.

async fn body_limit_seen(req: Request<Body>) -> String {
    match req.extensions().get::<chopin_core::layers::BodyLimit>() {
        Some(limit) => limit.0.to_string(),
        None => "none".into(),
    }
}

#[tokio::test]
async fn the_default_body_limit_costs_no_extension_and_still_holds() {
    let router = || {
        Router::new()
            .route("/limit", get(body_limit_seen))
            .route("/echo", post(echo))
    };
    // The default (2 MiB): no `BodyLimit` in the request; a chunked body over it is still a
    // 413 naming the limit.
    let c = TestClient::new(
        App::new(config(&[("CHOPIN_ENV", "test")]))
            .router(router())
            .into_router(),
    );
    assert_eq!(c.get("/limit").await.text(), "none");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..33).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let res = c
        .request(
            Request::builder()
                .method("POST")
                .uri("/echo")
                .header("content-type", "application/json")
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap(),
        )
        .await;
    let body = envelope(&res, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2097152"),
        "{body}"
    );
    // Another limit is recorded for the extractors.
    let c = TestClient::new(
        App::new(config(&[
            ("CHOPIN_ENV", "test"),
            ("CHOPIN_BODY_LIMIT", "1000"),
        ]))
        .router(router())
        .into_router(),
    );
    assert_eq!(c.get("/limit").await.text(), "1000");
}
