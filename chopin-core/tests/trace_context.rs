//! W3C trace context as a client and an operator see it: the `traceparent` a request brings
//! (or a new trace) in the request span's log lines, in the `TraceContext` handlers read, in the
//! 5xx error log; and, with feature `otel`, in the spans an exporter receives.
//!
//! Logs are captured by a subscriber installed for the test's own thread (`set_default`): the
//! tests run on current-thread runtimes and `TestClient` drives the router on that thread, so
//! parallel tests never see each other's lines.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use chopin_core::TraceContext;
use chopin_core::prelude::*;
use chopin_core::testing::TestClient;
use http::StatusCode;
use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn traceparent(flags: &str) -> String {
    format!("00-{TRACE}-{PARENT}-{flags}")
}

/// Log output shared between the subscriber and the test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The captured lines containing every one of `needles`.
    fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A text `fmt` layer writing to `logs`, as `telemetry::init` formats lines.
fn fmt_layer<S>(logs: &Logs) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(logs.clone())
}

/// What the `/trace` handler answers: the request's trace context as it sees it.
async fn trace(trace: TraceContext) -> ApiResponse<Value> {
    ApiResponse::success(json!({
        "trace_id": trace.trace_id().to_string(),
        "span_id": trace.span_id().to_string(),
        "parent_span_id": trace.parent_span_id().map(|p| p.to_string()),
        "sampled": trace.sampled(),
        "traceparent": trace.traceparent().to_str().unwrap(),
    }))
}

async fn fail() -> Result<(), ChopinError> {
    Err(ChopinError::internal("the disk is on fire"))
}

fn client() -> TestClient {
    let vars: HashMap<&str, &str> = HashMap::from([("CHOPIN_ENV", "test")]);
    let config = Config::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
    let routes = Router::new()
        .route("/trace", get(trace))
        .route("/fail", get(fail));
    TestClient::new(App::new(config).router(routes).into_router())
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[tokio::test]
async fn an_incoming_traceparent_is_joined_and_logged() {
    let logs = Logs::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(fmt_layer(&logs)));

    let res = client()
        .with_header("traceparent", &traceparent("01"))
        .get("/trace")
        .await;
    assert_eq!(res.status, StatusCode::OK);
    // No trace header on the response: the trace context only travels inwards.
    assert_eq!(res.header("traceparent"), None);
    assert_eq!(res.header("traceresponse"), None);
    let data = &res.value()["data"];
    assert_eq!(data["trace_id"], TRACE);
    assert_eq!(data["parent_span_id"], PARENT);
    assert_eq!(data["sampled"], true);
    let span_id = data["span_id"].as_str().unwrap();
    assert!(is_hex(span_id, 16) && span_id != PARENT, "{span_id}");
    assert_eq!(data["traceparent"], format!("00-{TRACE}-{span_id}-01"));

    // The response line is written inside the `request` span, whose fields carry the trace id.
    let request_id = res.header("x-request-id").unwrap();
    let lines = logs.lines_with(&["request{", "response", "status=200"]);
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert!(
        lines[0].contains(&format!("trace_id={TRACE}")),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&format!("request_id=\"{request_id}\"")),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn a_request_without_traceparent_starts_a_fresh_trace() {
    let logs = Logs::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(fmt_layer(&logs)));
    let client = client();

    let first = client.get("/trace").await.value()["data"].clone();
    let second = client.get("/trace").await.value()["data"].clone();
    for data in [&first, &second] {
        let trace_id = data["trace_id"].as_str().unwrap();
        assert!(
            is_hex(trace_id, 32) && trace_id != "0".repeat(32),
            "{trace_id}"
        );
        assert!(is_hex(data["span_id"].as_str().unwrap(), 16));
        assert_eq!(data["parent_span_id"], Value::Null);
        assert_eq!(data["sampled"], true);
        let lines = logs.lines_with(&["response", &format!("trace_id={trace_id}")]);
        assert_eq!(lines.len(), 1, "{}", logs.text());
    }
    assert_ne!(first["trace_id"], second["trace_id"]);

    // A malformed header (uppercase hex) is not joined: a new trace instead.
    let malformed = client
        .with_header("traceparent", &traceparent("01").to_uppercase())
        .get("/trace")
        .await
        .value()["data"]
        .clone();
    assert_ne!(malformed["trace_id"], TRACE);
    assert_eq!(malformed["parent_span_id"], Value::Null);
}

#[tokio::test]
async fn the_5xx_error_log_carries_the_trace_id() {
    let logs = Logs::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(fmt_layer(&logs)));

    let res = client()
        .with_header("traceparent", &traceparent("01"))
        .get("/fail")
        .await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.error_code().as_deref(), Some("INTERNAL_ERROR"));
    // The body keeps its documented shape (no detail outside development).
    assert_eq!(
        res.value()["error"]["request_id"],
        res.header("x-request-id").unwrap()
    );

    let lines = logs.lines_with(&["ERROR", "request failed", "the disk is on fire"]);
    assert_eq!(lines.len(), 1, "{}", logs.text());
    let line = &lines[0];
    // Once from the request span, once as the event's own field.
    assert_eq!(
        line.matches(&format!("trace_id={TRACE}")).count(),
        2,
        "{line}"
    );
}

#[tokio::test]
async fn the_error_log_carries_the_trace_id_without_the_trace_layer() {
    let logs = Logs::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(fmt_layer(&logs)));
    let vars: HashMap<&str, &str> = HashMap::from([("CHOPIN_ENV", "test")]);
    let config = Config::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
    let layers = Layers {
        trace: false,
        ..Layers::from_config(&config)
    };
    let router = layers.apply(Router::new().route("/fail", get(fail)));

    let res = TestClient::new(router)
        .with_header("traceparent", &traceparent("00"))
        .get("/fail")
        .await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    let lines = logs.lines_with(&["request failed"]);
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert!(!lines[0].contains("request{"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("trace_id={TRACE}")),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn several_traceparent_headers_start_a_new_trace() {
    let mut request = http::Request::get("/trace")
        .body(axum::body::Body::empty())
        .unwrap();
    for flags in ["01", "00"] {
        request
            .headers_mut()
            .append("traceparent", traceparent(flags).parse().unwrap());
    }
    let data = client().request(request).await.value()["data"].clone();
    assert_ne!(data["trace_id"], TRACE);
    assert_eq!(data["parent_span_id"], Value::Null);
}

/// Whether the handler got a trace context (`Option<TraceContext>` never fails).
async fn maybe_trace(trace: Option<TraceContext>) -> ApiResponse<Value> {
    ApiResponse::success(json!({ "trace_id": trace.map(|t| t.trace_id().to_string()) }))
}

#[tokio::test]
async fn without_the_request_id_layer_there_is_no_trace_context() {
    let routes = || {
        Router::new()
            .route("/trace", get(trace))
            .route("/maybe", get(maybe_trace))
    };
    let bare = TestClient::new(Layers::minimal().apply(routes()));
    let res = bare
        .with_header("traceparent", &traceparent("01"))
        .get("/trace")
        .await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.error_code().as_deref(), Some("INTERNAL_ERROR"));
    let res = bare
        .with_header("traceparent", &traceparent("01"))
        .get("/maybe")
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.value()["data"]["trace_id"], Value::Null);

    // With it, `Option<TraceContext>` has the joined trace; and the layer used on its own (a
    // stack of one's own) gives handlers the same context as the default stack.
    let res = client()
        .with_header("traceparent", &traceparent("01"))
        .get("/trace")
        .await;
    assert_eq!(res.value()["data"]["trace_id"], TRACE);
    let own = TestClient::new(routes().layer(chopin_core::layers::RequestIdLayer::new(false)));
    let res = own
        .with_header("traceparent", &traceparent("01"))
        .get("/maybe")
        .await;
    assert_eq!(res.value()["data"]["trace_id"], TRACE);
    let res = own.get("/trace").await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(is_hex(
        res.value()["data"]["trace_id"].as_str().unwrap(),
        32
    ));
}

#[cfg(feature = "otel")]
mod otel {
    use super::*;
    use chopin_core::telemetry::otel::{layer, tracer_provider};
    use opentelemetry::trace::SpanId;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

    /// A provider exporting to memory and a subscriber (export plus captured logs) for this
    /// thread.
    fn exporting() -> (
        InMemorySpanExporter,
        SdkTracerProvider,
        Logs,
        tracing::subscriber::DefaultGuard,
    ) {
        let exporter = InMemorySpanExporter::default();
        let provider = tracer_provider(exporter.clone());
        let logs = Logs::default();
        let subscriber = tracing_subscriber::registry()
            .with(layer(&provider))
            .with(fmt_layer(&logs));
        let guard = tracing::subscriber::set_default(subscriber);
        (exporter, provider, logs, guard)
    }

    /// The `request` spans exported so far.
    fn request_spans(
        exporter: &InMemorySpanExporter,
        provider: &SdkTracerProvider,
    ) -> Vec<SpanData> {
        provider.force_flush().unwrap();
        exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.name == "request")
            .collect()
    }

    #[tokio::test]
    async fn the_exported_request_span_joins_the_incoming_trace() {
        let (exporter, provider, logs, _guard) = exporting();

        let res = client()
            .with_header("traceparent", &traceparent("01"))
            .get("/trace")
            .await;
        assert_eq!(res.status, StatusCode::OK);
        let data = &res.value()["data"];

        let spans = request_spans(&exporter, &provider);
        assert_eq!(spans.len(), 1, "{spans:?}");
        let span = &spans[0];
        assert_eq!(span.span_context.trace_id().to_string(), TRACE);
        assert_eq!(span.parent_span_id.to_string(), PARENT);
        assert!(span.parent_span_is_remote);
        // The exported span is the one the handler would name as parent downstream.
        assert_eq!(span.span_context.span_id().to_string(), data["span_id"]);
        assert!(span.span_context.is_sampled());
        // Logs and export agree.
        assert_eq!(
            logs.lines_with(&["response", &format!("trace_id={TRACE}")])
                .len(),
            1
        );
        provider.shutdown().unwrap();
    }

    #[tokio::test]
    async fn a_new_trace_is_exported_under_the_logged_ids() {
        let (exporter, provider, logs, _guard) = exporting();

        let data = client().get("/trace").await.value()["data"].clone();
        let trace_id = data["trace_id"].as_str().unwrap();

        let spans = request_spans(&exporter, &provider);
        assert_eq!(spans.len(), 1, "{spans:?}");
        let span = &spans[0];
        assert_eq!(span.span_context.trace_id().to_string(), trace_id);
        assert_eq!(span.span_context.span_id().to_string(), data["span_id"]);
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert_eq!(
            logs.lines_with(&["response", &format!("trace_id={trace_id}")])
                .len(),
            1
        );
        provider.shutdown().unwrap();
    }

    #[tokio::test]
    async fn an_unsampled_caller_is_logged_but_not_exported() {
        let (exporter, provider, logs, _guard) = exporting();

        let res = client()
            .with_header("traceparent", &traceparent("00"))
            .get("/trace")
            .await;
        assert_eq!(res.value()["data"]["sampled"], false);
        assert!(request_spans(&exporter, &provider).is_empty());
        assert_eq!(
            logs.lines_with(&["response", &format!("trace_id={TRACE}")])
                .len(),
            1
        );
        provider.shutdown().unwrap();
    }

    #[tokio::test]
    async fn spans_inside_the_request_are_its_children() {
        let (exporter, provider, _logs, _guard) = exporting();
        async fn nested() -> &'static str {
            tracing::info_span!("inner").in_scope(|| "ok")
        }
        let vars: HashMap<&str, &str> = HashMap::from([("CHOPIN_ENV", "test")]);
        let config = Config::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
        let router = App::new(config)
            .router(Router::new().route("/nested", get(nested)))
            .into_router();
        TestClient::new(router)
            .with_header("traceparent", &traceparent("01"))
            .get("/nested")
            .await;

        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let request = spans
            .iter()
            .find(|s| s.name == "request")
            .expect("request span");
        let inner = spans
            .iter()
            .find(|s| s.name == "inner")
            .expect("inner span");
        assert_eq!(inner.span_context.trace_id().to_string(), TRACE);
        assert_eq!(inner.parent_span_id, request.span_context.span_id());
        assert_ne!(inner.span_context.span_id(), request.span_context.span_id());
        provider.shutdown().unwrap();
    }
}
