//! Logging set-up from [`LogConfig`].

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::{LogConfig, LogFormat};

/// Install a global `tracing` subscriber for `config` (filter and text / JSON format).
///
/// The filter is [`LogConfig::filter`]: `CHOPIN_LOG`, else `RUST_LOG`, else `info`, as
/// [`Config`](crate::Config) resolved it.
///
/// Returns `false`, changing nothing, when the application already installed a subscriber.
pub fn init(config: &LogConfig) -> bool {
    // The filter was validated when the configuration was loaded.
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match config.format {
        LogFormat::Text => registry.with(fmt::layer()).try_init().is_ok(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init()
            .is_ok(),
    }
}
