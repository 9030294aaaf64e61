//! Prometheus metrics (feature `metrics`): the process-wide registry, Chopin's own metric
//! families, and the `/metrics` endpoint.
//!
//! Every part of Chopin records into one process-wide [`Metrics`] ([`global`]), the way
//! Prometheus client libraries keep a default registry: a database pool, a cache or the auth
//! module counts what it does without being handed a handle, and one scrape shows the whole
//! process. Series use the OpenTelemetry HTTP semantic conventions as Prometheus renders them
//! (`http_server_request_duration_seconds` with `http_request_method`, `http_route`,
//! `http_response_status_code`); Chopin's own families are named `chopin_*`; the standard
//! `process_*` families and `chopin_build_info` complete the set. docs/observability.md lists
//! every family with its labels.
//!
//! [`App::serve`](crate::App::serve) serves `/metrics` on a listener of its own
//! (`CHOPIN_METRICS_ADDR`, default `127.0.0.1:9464`), and also on the application's listener
//! when `CHOPIN_METRICS_ON_MAIN` is set, optionally behind a bearer token
//! (`CHOPIN_METRICS_TOKEN`). Neither is cached, rate limited or traced. Applications that
//! serve [`App::into_router`](crate::App::into_router) themselves mount [`router`] or call
//! [`serve`].
//!
//! Register your own metrics in the same registry with [`Metrics::register`]:
//!
//! ```
//! use chopin_core::metrics::{self, prometheus_client::metrics::counter::Counter};
//!
//! let orders: Counter = Counter::default();
//! metrics::global().register("shop_orders", "Orders placed", orders.clone());
//! orders.inc();
//! assert!(metrics::global().encode().contains("shop_orders_total 1"));
//! ```

mod families;
mod http;
mod process;

use std::future::Future;
use std::sync::{LazyLock, RwLock};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

pub use prometheus_client;

#[allow(unused_imports)] // Each is used by the part of Chopin it counts, some behind features.
pub(crate) use self::families::{
    AuthMetrics, CacheEvent, CacheMetrics, CacheTier, DbMetrics, MemorySource, PassthroughMetrics,
    PoolSnapshot, PoolSource, ServerMetrics,
};
pub(crate) use self::http::{HttpMetrics, HttpSeries};
use crate::config::Secret;

/// The `Content-Type` of a scrape: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The process-wide registry: Chopin's metric families and any the application registers.
pub struct Metrics {
    registry: RwLock<Registry>,
    pub(crate) http: HttpMetrics,
    pub(crate) server: ServerMetrics,
    #[cfg_attr(not(chopin_db), allow(dead_code))] // Only a database records here.
    pub(crate) db: DbMetrics,
    pub(crate) cache: CacheMetrics,
    pub(crate) passthrough: PassthroughMetrics,
    pub(crate) auth: AuthMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide [`Metrics`], created with Chopin's families on first use.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let http = HttpMetrics::new(&mut registry);
        let server = ServerMetrics::new(&mut registry);
        let db = DbMetrics::new(&mut registry);
        let cache = CacheMetrics::new(&mut registry);
        let passthrough = PassthroughMetrics::new(&mut registry);
        let auth = AuthMetrics::new(&mut registry);
        process::register(&mut registry);
        registry.register(
            "chopin_build",
            "Chopin's version (the value is always 1)",
            prometheus_client::metrics::info::Info::new(vec![(
                "version",
                env!("CARGO_PKG_VERSION"),
            )]),
        );
        Metrics {
            registry: RwLock::new(registry),
            http,
            server,
            db,
            cache,
            passthrough,
            auth,
        }
    }

    /// Register an application metric (a `Counter`, `Gauge`, `Histogram`, `Family`, …) under
    /// `name` (counters gain `_total` when scraped).
    pub fn register(
        &self,
        name: impl Into<String>,
        help: impl Into<String>,
        metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static,
    ) {
        self.write().register(name, help, metric);
    }

    /// [`register`](Self::register) with a unit (`Unit::Seconds`, `Unit::Bytes`, …), which
    /// becomes the name's suffix.
    pub fn register_with_unit(
        &self,
        name: impl Into<String>,
        help: impl Into<String>,
        unit: Unit,
        metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static,
    ) {
        self.write().register_with_unit(name, help, unit, metric);
    }

    /// Register a [`Collector`]: metrics computed at each scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.write().register_collector(collector);
    }

    /// Every metric in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let registry = self
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A router answering `GET /metrics` with [`global`]'s metrics; with `token`, only to
/// `Authorization: Bearer <token>` (401 otherwise). Mount it outside any cache, rate limit or
/// trace layer.
pub fn router(token: Option<Secret>) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let token = token.clone();
            async move { scrape(&headers, token.as_ref()) }
        }),
    )
}

/// Serve [`router`] on `listener` with `axum::serve` until `shutdown` completes, for
/// applications that serve their router themselves. It has no connection timeouts: on a port
/// others can reach, prefer [`Server::serve`](crate::server::Server::serve) with
/// [`router`], as [`App::serve`](crate::App::serve) does for its metrics listener.
pub async fn serve(
    listener: TcpListener,
    token: Option<Secret>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(token))
        .with_graceful_shutdown(shutdown)
        .await
}

fn scrape(headers: &HeaderMap, token: Option<&Secret>) -> Response {
    if let Some(token) = token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Digests compared, not the strings: how long the comparison takes tells nothing
        // about the token.
        let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
        let expected = digest(token.expose());
        let ok = presented.is_some_and(|p| digest(p).as_ref() == expected.as_ref());
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            )
                .into_response();
        }
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        global().encode(),
    )
        .into_response()
}
