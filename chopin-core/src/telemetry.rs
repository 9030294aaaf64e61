//! Logging set-up from [`LogConfig`], and (feature `otel`) OpenTelemetry span export.
//!
//! Every request carries a W3C trace context ([`TraceContext`](crate::TraceContext)): its trace
//! id is a field of the `request` span, so every log line written while handling the request
//! carries it, whether or not spans are exported.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::{LogConfig, LogFormat};

#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;

/// The provider of an OpenTelemetry layer to install, when the feature is on.
#[cfg(feature = "otel")]
type Provider = Option<opentelemetry_sdk::trace::SdkTracerProvider>;
/// The provider of an OpenTelemetry layer to install, when the feature is on.
#[cfg(not(feature = "otel"))]
type Provider = Option<std::convert::Infallible>;

/// Install a global `tracing` subscriber for `config` (filter and text / JSON format).
///
/// The filter is [`LogConfig::filter`]: `CHOPIN_LOG`, else `RUST_LOG`, else `info`, as
/// [`Config`](crate::Config) resolved it.
///
/// With feature `otel`, when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not `true`), the
/// subscriber also exports spans over OTLP/HTTP: see [`otel`](crate::telemetry::otel).
///
/// Returns `false`, changing nothing, when the application already installed a subscriber.
pub fn init(config: &LogConfig) -> bool {
    #[cfg(feature = "otel")]
    {
        match otel::provider_from_env() {
            Ok(provider) => install(config, provider),
            Err(error) => {
                let installed = install(config, None);
                tracing::error!(%error, "OpenTelemetry export disabled: the OTLP exporter failed to build");
                installed
            }
        }
    }
    #[cfg(not(feature = "otel"))]
    install(config, None)
}

/// Install the global subscriber, with an OpenTelemetry layer for `provider` if there is one.
///
/// The log filter applies to the log output only: exported spans have their own filter (`INFO`
/// and above), so `CHOPIN_LOG=warn` quiets the logs without silently ending span export.
fn install(config: &LogConfig, provider: Provider) -> bool {
    // The filter was validated when the configuration was loaded.
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    #[cfg(feature = "otel")]
    let registry = tracing_subscriber::registry().with(provider.as_ref().map(|provider| {
        otel::layer(provider).with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    }));
    #[cfg(not(feature = "otel"))]
    let registry = tracing_subscriber::registry();
    let installed = match config.format {
        LogFormat::Text => registry
            .with(fmt::layer().with_filter(filter))
            .try_init()
            .is_ok(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_filter(filter),
            )
            .try_init()
            .is_ok(),
    };
    #[cfg(feature = "otel")]
    if let Some(provider) = provider {
        if installed {
            otel::register(provider);
        } else {
            // Not used: stop its batch thread, which may block, away from the caller's runtime.
            std::thread::spawn(move || {
                let _ = provider.shutdown();
            });
        }
    }
    #[cfg(not(feature = "otel"))]
    let _ = provider;
    installed
}

/// Flush and stop span export (feature `otel`; without it, or when nothing is exported, this
/// does nothing). [`App::serve`](crate::App::serve) calls it after the server has stopped;
/// call it yourself before exiting when you serve otherwise. It may block for up to the
/// exporter's timeout, so it runs on tokio's blocking pool.
pub async fn shutdown() {
    #[cfg(feature = "otel")]
    {
        let _ = tokio::task::spawn_blocking(otel::shutdown).await;
    }
}
