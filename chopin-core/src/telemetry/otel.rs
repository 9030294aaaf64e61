//! OpenTelemetry span export (feature `otel`).
//!
//! [`telemetry::init`](super::init) adds an OpenTelemetry layer to Chopin's subscriber when
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and
//! `OTEL_SDK_DISABLED` is not `true`): spans go over OTLP/HTTP (protobuf) to that collector,
//! in batches, from the SDK's own thread. The OpenTelemetry crates read the other standard
//! variables themselves: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (the resource),
//! `OTEL_EXPORTER_OTLP_HEADERS` / `_TIMEOUT` / `_COMPRESSION`, `OTEL_TRACES_SAMPLER` /
//! `_ARG`, `OTEL_BSP_*` (the batch processor).
//!
//! Every `request` span joins the request's [`TraceContext`]: with an incoming `traceparent`
//! its parent is the caller's span (so traces join up across services), and the exported
//! span's trace and span ids are the ones the request's logs and
//! [`TraceContext`] show (through [`IdGenerator`], which [`tracer_provider`] installs).
//!
//! For another exporter (a TLS or gRPC collector, a vendor's, the SDK's in-memory one in
//! tests), build the provider with [`tracer_provider`] and either install Chopin's subscriber
//! with [`init_with_provider`] or add [`layer`] to your own subscriber.

use std::cell::Cell;
use std::sync::OnceLock;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{RandomIdGenerator, SdkTracer, SdkTracerProvider, SpanExporter};
use tracing::Subscriber;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogConfig;
use crate::context::TraceContext;

/// The instrumentation scope name of Chopin's tracer.
const TRACER_NAME: &str = "chopin";

/// The provider [`init`](super::init) or [`init_with_provider`] installed, for [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

thread_local! {
    /// The ids the next span started on this thread takes (set by [`join`] around starting
    /// the `request` span, read once by [`IdGenerator`]).
    static NEXT_TRACE_ID: Cell<Option<u128>> = const { Cell::new(None) };
    static NEXT_SPAN_ID: Cell<Option<u64>> = const { Cell::new(None) };
}

/// An OpenTelemetry id generator that gives each `request` span the ids of the request's
/// [`TraceContext`] (so exported spans, logs and handlers agree), and random ids to every
/// other span. [`tracer_provider`] installs it; install it in a provider you build yourself
/// with `SdkTracerProvider::builder().with_id_generator(IdGenerator::default())`.
#[derive(Debug, Clone, Default)]
pub struct IdGenerator {
    random: RandomIdGenerator,
}

impl opentelemetry_sdk::trace::IdGenerator for IdGenerator {
    fn new_trace_id(&self) -> TraceId {
        match NEXT_TRACE_ID.with(Cell::take) {
            Some(id) => TraceId::from(id),
            None => self.random.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match NEXT_SPAN_ID.with(Cell::take) {
            Some(id) => SpanId::from(id),
            None => self.random.new_span_id(),
        }
    }
}

/// A tracer provider that exports through `exporter` in batches (the SDK's batch processor,
/// on its own thread, configured by `OTEL_BSP_*`), with Chopin's [`IdGenerator`] and the
/// resource the SDK detects (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).
pub fn tracer_provider<E: SpanExporter + 'static>(exporter: E) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(IdGenerator::default())
        .with_resource(Resource::builder().build())
        .build()
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider` (Chopin's
/// `request` span joins the incoming `traceparent` by itself).
pub fn layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, SdkTracer>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(TRACER_NAME))
}

/// Install Chopin's global subscriber for `config` (as [`init`](super::init) does) with an
/// OpenTelemetry layer exporting to `provider` (build one with [`tracer_provider`]), and make
/// `provider` the global OpenTelemetry provider that [`shutdown`](super::shutdown) flushes.
///
/// Returns `false`, changing nothing, when a subscriber is already installed.
pub fn init_with_provider(config: &LogConfig, provider: SdkTracerProvider) -> bool {
    super::install(config, Some(provider))
}

/// The OTLP/HTTP provider the environment asks for, if any: `Ok(None)` when neither
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` nor `OTEL_EXPORTER_OTLP_ENDPOINT` is set, or when
/// `OTEL_SDK_DISABLED=true`.
pub(super) fn provider_from_env()
-> Result<Option<SdkTracerProvider>, opentelemetry_otlp::ExporterBuildError> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if disabled
        || !(set(opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
            || set(opentelemetry_otlp::OTEL_EXPORTER_OTLP_ENDPOINT))
    {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    Ok(Some(tracer_provider(exporter)))
}

/// Keep `provider` for [`shutdown`] and make it the global OpenTelemetry provider (for
/// application code that uses `opentelemetry::global::tracer`).
pub(super) fn register(provider: SdkTracerProvider) {
    opentelemetry::global::set_tracer_provider(provider.clone());
    // `init` installs at most one subscriber per process, so this is set at most once.
    let _ = PROVIDER.set(provider);
}

/// Export what is buffered and stop the installed provider. Blocks up to the exporter's
/// timeout: call it from a blocking context.
pub(super) fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "OpenTelemetry shutdown failed");
    }
}

/// Make `span` (the `request` span, not yet entered) this request's span in `trace`: parent
/// the caller's span from `traceparent`, or none (a new trace), and start it now, on this
/// thread, so that [`IdGenerator`] hands it the trace context's ids. Without an OpenTelemetry
/// layer this costs two dispatcher look-ups.
pub(crate) fn join(span: &tracing::Span, trace: &TraceContext) {
    let parent = match trace.parent_span_id() {
        Some(parent) => opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(trace.trace_id().to_u128()),
            SpanId::from(parent.to_u64()),
            TraceFlags::new(trace.flags()),
            true,
            TraceState::default(),
        )),
        None => opentelemetry::Context::new(),
    };
    if span.set_parent(parent).is_err() {
        // No OpenTelemetry layer, or the span is disabled or already started.
        return;
    }
    NEXT_TRACE_ID.with(|c| c.set(Some(trace.trace_id().to_u128())));
    NEXT_SPAN_ID.with(|c| c.set(Some(trace.span_id().to_u64())));
    let _started = span.context();
    NEXT_TRACE_ID.with(|c| c.set(None));
    NEXT_SPAN_ID.with(|c| c.set(None));
}
