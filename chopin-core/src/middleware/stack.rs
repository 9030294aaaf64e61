//! [`Layers`]: which middleware [`App`](crate::App) installs, with what settings, composed
//! statically into one tower stack.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower::ServiceBuilder;
use tower::util::option_layer;

use super::cors::cors_layer;
use super::extensions::{ExtensionsLayer, RequestExtensions};
use super::fallback::{method_not_allowed, not_found};
use super::fused::{BackLayer, FrontLayer};
use super::{CompressionLayer, RateLimitLayer, SecurityHeadersLayer};
use crate::config::{Config, CorsConfig};
use crate::extractors::PaginationConfig;

/// The body limit axum's extractors apply when no `DefaultBodyLimit` layer says otherwise
/// (`axum::extract::DefaultBodyLimit`'s documented default, 2 MiB).
const AXUM_DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Which default layers [`App`](crate::App) installs, and their settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layers {
    /// Request metrics (`http_server_*`), outermost; needs chopin-core's `metrics` feature
    /// (without it this switch does nothing).
    pub metrics: bool,
    /// Request-id propagation / generation (and the request context errors read).
    pub request_id: bool,
    /// A tracing span per request and a log event per response.
    pub trace: bool,
    /// Turn handler panics into 500 envelopes.
    pub catch_panic: bool,
    /// Response compression.
    pub compression: bool,
    /// CORS policy; closed when it lists no origin.
    pub cors: CorsConfig,
    /// Request timeout (504), or `None` for none.
    pub timeout: Option<Duration>,
    /// Request body limit in bytes (413), or `None` to keep axum's default of 2 MiB for its
    /// extractors.
    pub body_limit: Option<usize>,
    /// Show internal error details (error chains, panic messages) in error bodies.
    pub expose_internal_errors: bool,
    /// Security response headers, or `None` for none.
    pub security_headers: Option<SecurityHeadersLayer>,
    /// Rate limiting (after the request id and trace layers, before everything else).
    pub rate_limit: Option<RateLimitLayer>,
}

impl Layers {
    /// The full default stack, configured from `config`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            metrics: cfg!(feature = "metrics"),
            request_id: true,
            trace: true,
            catch_panic: true,
            compression: config.http.compression,
            cors: config.http.cors.clone(),
            timeout: config.http.request_timeout,
            body_limit: Some(config.http.body_limit),
            expose_internal_errors: config.environment.is_development(),
            security_headers: config
                .security
                .headers
                .then(|| SecurityHeadersLayer::new(config.security.hsts)),
            rate_limit: match RateLimitLayer::from_config(config) {
                Ok(layer) => layer,
                Err(error) => {
                    // `Config` already refuses the settings that lead here.
                    tracing::error!(%error, "rate limiting disabled");
                    None
                }
            },
        }
    }

    /// No middleware at all: only the envelope fallbacks for 404 and 405. For benchmarks and
    /// for applications that bring their own stack.
    pub fn minimal() -> Self {
        Self {
            metrics: false,
            request_id: false,
            trace: false,
            catch_panic: false,
            compression: false,
            cors: CorsConfig::default(),
            timeout: None,
            body_limit: None,
            expose_internal_errors: false,
            security_headers: None,
            rate_limit: None,
        }
    }

    /// Wrap `router` in the configured layers and add the 404 / 405 fallbacks.
    pub fn apply(&self, router: Router) -> Router {
        self.apply_with(router, RequestExtensions::default())
    }

    /// [`Layers::apply`], also inserting what `App` hands to extractors (page-size limits,
    /// the auth handle) inside the same stack.
    pub(crate) fn apply_with<H>(&self, router: Router, extensions: RequestExtensions<H>) -> Router
    where
        H: Clone + Send + Sync + 'static,
    {
        let router = router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);
        // The `Pagination` extractor falls back to the defaults by itself.
        let pagination = extensions
            .pagination
            .filter(|p| *p != PaginationConfig::default());
        let nothing_enabled = !(self.metrics_on()
            || self.request_id
            || self.trace
            || self.catch_panic
            || self.compression
            || self.cors.is_open()
            || self.timeout.is_some()
            || self.body_limit.is_some()
            || self.security_headers.is_some()
            || self.rate_limit.is_some());
        let extensions = ExtensionsLayer {
            pagination,
            cursor: extensions.cursor,
            no_cursor: extensions.no_cursor,
            handle: extensions.handle,
        };
        if nothing_enabled {
            if extensions.pagination.is_none()
                && extensions.cursor.is_none()
                && !extensions.no_cursor
                && extensions.handle.is_none()
            {
                // Nothing to wrap: a layer of identities would still cost a box per request.
                return router;
            }
            // Only the extensions: their own service, whose future is the route's.
            return router.layer(extensions);
        }
        // One `Router::layer` call with one composed stack: every `Router::layer` call boxes
        // the route again and clones that box per request, so the layers are composed here,
        // statically. Every layer answers with axum's `Response`, so both sides of each
        // `Either` agree.
        //
        // Chopin's own layers are fused into two services (`fused.rs`): the front (metrics,
        // request id and trace context, the `request` span, security headers, catch panic)
        // and the back (timeout, body limit, extensions). Each does in one `call` and one
        // future what a chain of layers did with a future moved into the next at every level;
        // each part switches off at run time. Only the layers from other crates (compression,
        // CORS, axum's body limit) and the rate limit (whose future is boxed anyway) are
        // `Either`s with `Identity` (`option_layer`): each `Either` holds the rest of the stack
        // twice in its type, so type sizes grow as 2^n with them.
        //
        // The rate limit sits inside CORS, so a 429 carries the CORS headers a browser needs
        // to read it, and preflight requests do not spend the budget. axum's `DefaultBodyLimit`
        // (only an extension its extractors read) goes just outside the back.
        let stack = ServiceBuilder::new()
            .layer(FrontLayer {
                metrics: self.metrics_on(),
                request_id: self.request_id.then_some(self.expose_internal_errors),
                trace: self.trace,
                security_headers: self
                    .security_headers
                    .and_then(|layer| layer.hsts_if_enabled()),
                catch_panic: self.catch_panic,
            })
            .layer(option_layer(self.compression.then(CompressionLayer::new)))
            .layer(option_layer(cors_layer(&self.cors)))
            .layer(option_layer(self.rate_limit.clone()))
            // axum's extractors already default to 2 MiB: its layer (an extension insert per
            // request) only for another limit.
            .layer(option_layer(
                self.body_limit
                    .filter(|&limit| limit != AXUM_DEFAULT_BODY_LIMIT)
                    .map(DefaultBodyLimit::max),
            ))
            .layer(BackLayer {
                timeout: self.timeout,
                body_limit: self.body_limit,
                extensions,
            });
        router.layer(stack)
    }
}

impl Layers {
    /// Whether the metrics layer is installed (on, and the feature compiled in).
    fn metrics_on(&self) -> bool {
        cfg!(feature = "metrics") && self.metrics
    }
}
