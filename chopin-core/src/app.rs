//! The [`App`] builder: configuration, routes, default layers, and serving with graceful
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::cache::Cache;
use crate::config::Config;
#[cfg(chopin_db)]
use crate::db::Db;
use crate::error::BoxError;
use crate::health::{self, HealthChecks};
use crate::layers::Layers;
use crate::openapi;

pub use crate::server::ServeError;

/// Builds a Chopin application from a [`Config`], optional user state and axum routers.
///
/// `App` is a library piece: your `main` owns the runtime, creates the `App`, and either calls
/// [`serve`](App::serve) or takes the finished router with [`into_router`](App::into_router)
/// to embed it, test it, or serve it yourself. No database, cache or auth is needed to serve.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use chopin_core::prelude::*;
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let config = Config::from_env()?;
///     App::new(config)
///         .router(Router::new().route("/", get(|| async { ApiResponse::success("hello") })))
///         .serve()
///         .await?;
///     Ok(())
/// }
/// ```
#[must_use]
pub struct App<S = ()> {
    config: Config,
    state: S,
    router: Router<S>,
    spec: OpenApi,
    layers: Layers,
    health: HealthChecks,
    cursor: Option<crate::extractors::CursorKey>,
    #[cfg(feature = "auth")]
    auth: Option<crate::auth::Auth>,
    /// Auth modules whose mail queues are drained at graceful shutdown.
    #[cfg(all(feature = "auth", chopin_db))]
    auth_modules: Vec<crate::auth::AuthModule>,
}

impl App<()> {
    /// An application without shared state.
    pub fn new(config: Config) -> Self {
        App::with_state(config, ())
    }
}

impl<S> App<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// An application whose handlers share `state` (any `Clone + Send + Sync` type, usually a
    /// struct of `Arc`s and pools) through axum's `State` extractor.
    pub fn with_state(config: Config, state: S) -> Self {
        let layers = Layers::from_config(&config);
        let mut spec = openapi::base_spec("Chopin API", env!("CARGO_PKG_VERSION"));
        spec.merge(openapi::health_spec());
        // No key in production without a secret: cursor requests answer 500 (and `serve`
        // warns) rather than every app without cursors failing to start.
        let cursor = crate::extractors::CursorKey::from_config(&config).ok();
        App {
            config,
            state,
            router: Router::new(),
            spec,
            layers,
            health: HealthChecks::default(),
            cursor,
            #[cfg(feature = "auth")]
            auth: None,
            #[cfg(all(feature = "auth", chopin_db))]
            auth_modules: Vec::new(),
        }
    }

    /// Add plain axum routes (not documented in the OpenAPI spec).
    pub fn router(mut self, router: Router<S>) -> Self {
        self.router = self.router.merge(router);
        self
    }

    /// Add routes declared with utoipa; their operations and schemas join the OpenAPI spec.
    pub fn api(mut self, router: OpenApiRouter<S>) -> Self {
        let (router, spec) = router.split_for_parts();
        self.router = self.router.merge(router);
        self.spec.merge(spec);
        openapi::add_error_responses(&mut self.spec);
        openapi::document_pagination(&mut self.spec, self.config.pagination);
        self
    }

    /// Set the title and version shown in the OpenAPI spec.
    pub fn openapi_info(mut self, title: &str, version: &str) -> Self {
        self.spec.info.title = title.to_string();
        self.spec.info.version = version.to_string();
        self
    }

    /// Edit the OpenAPI spec directly (servers, security schemes, tags, …).
    pub fn openapi_mut(&mut self) -> &mut OpenApi {
        &mut self.spec
    }

    /// The OpenAPI spec as it will be served.
    pub fn openapi(&self) -> &OpenApi {
        &self.spec
    }

    /// Replace the default layer stack (see [`Layers::from_config`] and [`Layers::minimal`]).
    pub fn layers(mut self, layers: Layers) -> Self {
        self.layers = layers;
        self
    }

    /// Adjust the default layer stack in place.
    pub fn layers_mut(&mut self) -> &mut Layers {
        &mut self.layers
    }

    /// Register the database in `/health/ready` (check name `database`).
    #[cfg(chopin_db)]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    pub fn database(mut self, db: &Db) -> Self {
        let db = db.clone();
        self.health.add("database", move || {
            let db = db.clone();
            async move { db.ping().await.map_err(BoxError::from) }
        });
        self
    }

    /// Register the cache in `/health/ready` (check name `cache`): a Redis `PING` within the
    /// cache's timeout for the `redis` and `tiered` backends, always ready for `memory`. The
    /// app keeps no cache for handlers: put the [`Cache`] (a cheap clone) in your state.
    pub fn cache(mut self, cache: &Cache) -> Self {
        let cache = cache.clone();
        self.health.add("cache", move || {
            let cache = cache.clone();
            async move { cache.ping().await.map_err(BoxError::from) }
        });
        self
    }

    /// Make `auth` available to the [`AuthUser`](crate::auth::AuthUser) extractor on every
    /// route, and charge authenticated requests (whose token `Auth::verify` has verified) to
    /// their user as well as to their address when the rate limit is on.
    ///
    /// Also declares the `bearer` security scheme (HTTP bearer, JWT) in the OpenAPI spec, so
    /// operations can say `security(("bearer" = []))`, and, when revocations live in Redis,
    /// registers them in `/health/ready` (check name `auth`).
    #[cfg(feature = "auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
    pub fn auth(mut self, auth: &crate::auth::Auth) -> Self {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        self.auth = Some(auth.clone());
        if auth.revocations().is_shared() {
            let revocations = auth.revocations().clone();
            self.health.add("auth", move || {
                let revocations = revocations.clone();
                async move { revocations.ping().await.map_err(BoxError::from) }
            });
        }
        self.spec
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        self
    }

    /// Let the app finish `module`'s background work at graceful shutdown: once the server
    /// has stopped accepting and its in-flight requests are done, the module's mail queue
    /// (reset and verification mails) takes no more jobs and gets what is left of
    /// `CHOPIN_SHUTDOWN_TIMEOUT` to finish the ones it holds; the jobs still unfinished then
    /// are logged as a warning and dropped ([`AuthModule::drain_mail_queue`]). Mount the
    /// module's routes as usual ([`AuthModule::api_router`]).
    ///
    /// [`AuthModule::drain_mail_queue`]: crate::auth::AuthModule::drain_mail_queue
    /// [`AuthModule::api_router`]: crate::auth::AuthModule::api_router
    #[cfg(all(feature = "auth", chopin_db))]
    pub fn auth_module(mut self, module: &crate::auth::AuthModule) -> Self {
        self.auth_modules.push(module.clone());
        self
    }

    /// Sign and verify [`CursorPagination`](crate::extractors::CursorPagination) cursors with
    /// `key` instead of the one built from the configuration (`CHOPIN_CURSOR_SECRET`, derived
    /// from the HS256 `CHOPIN_JWT_SECRET`, or random outside production).
    pub fn cursor_key(mut self, key: crate::extractors::CursorKey) -> Self {
        self.cursor = Some(key);
        self
    }

    /// Set (or, with `None`, remove) the rate-limit layer; by default it comes from
    /// `CHOPIN_RATE_LIMIT` (see [`crate::rate_limit`]).
    pub fn rate_limit(mut self, layer: Option<crate::rate_limit::RateLimitLayer>) -> Self {
        self.layers.rate_limit = layer;
        self
    }

    /// Register a readiness check under `name`; `/health/ready` answers 503 naming it while
    /// it fails. The check returns any error (`Err(e.into())`, or `?` inside it) or a
    /// message (`Err("index unreachable".into())`).
    pub fn health_check<F, Fut>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.health.add(name, check);
        self
    }

    /// The configuration this application was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The finished router: user routes, health and OpenAPI routes, fallbacks and default
    /// layers, with the state applied. Use it to embed Chopin in a larger axum app, to drive
    /// it in tests with `tower::ServiceExt::oneshot`, or to serve it yourself.
    pub fn into_router(self) -> Router {
        let health = Router::new()
            .route("/health/live", axum::routing::get(health::live))
            .route("/health/ready", axum::routing::get(health::ready))
            .layer(axum::Extension(Arc::new(self.health)));
        let mut router = self.router.with_state(self.state).merge(health);
        if self.config.openapi.enabled {
            router = router.merge(openapi::spec_routes(&self.spec, &self.config.openapi));
        }
        #[cfg_attr(not(feature = "auth"), allow(unused_mut))]
        let mut layers = self.layers;
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.auth {
            layers.rate_limit = layers.rate_limit.map(|limit| {
                if limit.is_per_user() {
                    limit
                } else {
                    limit.per_user(auth.clone())
                }
            });
        }
        let cursor_is_default = crate::extractors::CursorKey::claim_default(self.cursor.as_ref());
        let extensions = crate::middleware::RequestExtensions {
            pagination: Some(self.config.pagination),
            // The first `App` of the process makes its cursor key (or the lack of one) the
            // process's default, so its requests carry no extension for it.
            no_cursor: self.cursor.is_none() && !cursor_is_default,
            cursor: self.cursor.filter(|_| !cursor_is_default),
            #[cfg(feature = "auth")]
            handle: self.auth,
            #[cfg(not(feature = "auth"))]
            handle: None::<()>,
        };
        let router = layers.apply_with(router, extensions);
        // Outside every layer: a scrape is never cached, rate limited or traced.
        #[cfg(feature = "metrics")]
        let router = if self.config.metrics.on_main {
            router.merge(crate::metrics::router(self.config.metrics.token.clone()))
        } else {
            router
        };
        router
    }

    /// Serve on per-core workers: `workers` single-threaded tokio runtimes, each with its own
    /// `SO_REUSEPORT` listener, all serving this application's router and state (see
    /// [`server`](crate::server)); `0` serves on the caller's runtime. Overrides
    /// `CHOPIN_WORKERS`.
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.server.workers = workers;
        self
    }

    /// Bind `CHOPIN_HOST:CHOPIN_PORT`, initialise logging (unless the application already
    /// installed a subscriber; with feature `otel`, span export too, see
    /// [`telemetry::init`](crate::telemetry::init)), and serve with Chopin's [`Server`](crate::server::Server)
    /// until SIGINT or SIGTERM; then serve on for `CHOPIN_SHUTDOWN_DELAY` with `/health/ready`
    /// answering 503 (a second signal cuts it short), stop accepting connections and let
    /// in-flight requests finish for up to `CHOPIN_SHUTDOWN_TIMEOUT`. With `CHOPIN_WORKERS` (or
    /// [`workers`](App::workers)) set, serves on per-core workers.
    ///
    /// With chopin-core's `metrics` feature it also serves `/metrics` on
    /// `CHOPIN_METRICS_ADDR` (default `127.0.0.1:9464`; `off` for none), failing to start when
    /// that address cannot be bound. [`serve_at`](App::serve_at) and
    /// [`serve_with`](App::serve_with) serve only the address or listener they are given:
    /// there, set `CHOPIN_METRICS_ON_MAIN` or run [`metrics::serve`](crate::metrics::serve).
    pub async fn serve(self) -> Result<(), ServeError> {
        crate::telemetry::init(&self.config.log);
        let host = self.config.host.clone();
        let port = self.config.port;
        let addr = crate::server::resolve(&host, port)
            .await
            .map_err(|source| ServeError::Bind {
                addr: format!("{host}:{port}"),
                source,
            })?;
        #[cfg(feature = "metrics")]
        let metrics = match self.config.metrics.addr {
            Some(metrics_addr) => Some(self.serve_metrics(metrics_addr).await?),
            None => None,
        };
        // A second signal during the shutdown delay ends the delay.
        let shutdown = self.drain_after(shutdown_signal(), shutdown_signal());
        let served = self.serve_at_drained(addr, shutdown).await;
        #[cfg(feature = "metrics")]
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        crate::telemetry::shutdown().await;
        served
    }

    /// Bind `addr` and serve `/metrics` there until the returned task is aborted.
    #[cfg(feature = "metrics")]
    async fn serve_metrics(
        &self,
        addr: SocketAddr,
    ) -> Result<tokio::task::JoinHandle<()>, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %bound, "metrics at http://{bound}/metrics");
        // Chopin's own server, with the application's timeouts and connection cap (a scrape
        // port is no place for a slowloris either), on the caller's runtime.
        let server = crate::server::Server::from_config(&self.config).workers(0);
        let router = crate::metrics::router(self.config.metrics.token.clone());
        Ok(tokio::spawn(async move {
            if let Err(error) = server.serve(listener, router, std::future::pending()).await {
                tracing::error!(%error, "metrics listener stopped");
            }
        }))
    }

    /// Bind `addr` (one `SO_REUSEPORT` socket per worker in per-core mode) and serve until
    /// `shutdown` completes, then shut down gracefully.
    pub async fn serve_at(
        self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let shutdown = self.drain_after(shutdown, std::future::pending());
        self.serve_at_drained(addr, shutdown).await
    }

    /// [`serve_at`](App::serve_at) once `shutdown` includes the shutdown delay.
    async fn serve_at_drained(
        self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let server = self.server();
        let (after, shutdown) = self.after_shutdown(shutdown);
        let served = server.serve_at(addr, self.into_router(), shutdown).await;
        after.run().await;
        served
    }

    /// Serve on an existing listener until `shutdown` completes, then shut down gracefully
    /// (stop accepting; in-flight requests get up to the configured shutdown timeout). In
    /// per-core mode every worker accepts on a duplicate of this listener.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let shutdown = self.drain_after(shutdown, std::future::pending());
        let server = self.server();
        let (after, shutdown) = self.after_shutdown(shutdown);
        let served = server.serve(listener, self.into_router(), shutdown).await;
        after.run().await;
        served
    }

    /// What runs once the server has shut down (the auth modules' mail queues drained within
    /// what is left of the shutdown timeout, counted from the end of the shutdown delay), and
    /// `shutdown` noting when it fired.
    fn after_shutdown(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (AfterShutdown, impl Future<Output = ()> + Send + 'static) {
        let signalled = Arc::new(std::sync::OnceLock::new());
        let after = AfterShutdown {
            signalled: Arc::clone(&signalled),
            grace: self.config.http.shutdown_timeout,
            #[cfg(all(feature = "auth", chopin_db))]
            auth_modules: self.auth_modules.clone(),
        };
        let shutdown = async move {
            shutdown.await;
            let _ = signalled.set(std::time::Instant::now());
        };
        (after, shutdown)
    }

    /// `shutdown`, then the shutdown delay (`CHOPIN_SHUTDOWN_DELAY`), cut short by `hurry`:
    /// the server keeps serving as usual while `/health/ready` answers 503, so a load
    /// balancer stops sending requests before connections close (closing an idle keep-alive
    /// connection races with a request the balancer is sending on it).
    fn drain_after(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        hurry: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let delay = self.config.http.shutdown_delay;
        let health = self.health.clone();
        async move {
            shutdown.await;
            if delay.is_zero() {
                return;
            }
            health.start_draining();
            tracing::info!(
                ?delay,
                "shutting down: /health/ready answers 503 during the shutdown delay"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = hurry => tracing::info!("second signal: the shutdown delay is cut short"),
            }
        }
    }

    /// The server every serve path ([`serve`](App::serve), [`serve_at`](App::serve_at),
    /// [`serve_with`](App::serve_with)) runs, after the start-up log lines they all share.
    fn server(&self) -> crate::server::Server {
        tracing::debug!(environment = ?self.config.environment, "starting");
        if self.cursor.is_none() {
            tracing::warn!(
                "no pagination cursor key: set CHOPIN_CURSOR_SECRET (or CHOPIN_JWT_SECRET with \
                 HS256); requests with CursorPagination answer 500 until then"
            );
        }
        crate::server::Server::from_config(&self.config)
    }
}

/// The work of a graceful shutdown after the server has stopped.
struct AfterShutdown {
    /// When the shutdown signal fired (unset when the server stopped for another reason).
    signalled: Arc<std::sync::OnceLock<std::time::Instant>>,
    /// `CHOPIN_SHUTDOWN_TIMEOUT`.
    #[cfg_attr(not(all(feature = "auth", chopin_db)), allow(dead_code))]
    grace: std::time::Duration,
    #[cfg(all(feature = "auth", chopin_db))]
    auth_modules: Vec<crate::auth::AuthModule>,
}

impl AfterShutdown {
    /// Drain the auth modules' mail queues within what is left of the shutdown timeout
    /// (counted from the end of the shutdown delay).
    async fn run(self) {
        #[cfg(all(feature = "auth", chopin_db))]
        if !self.auth_modules.is_empty() {
            let spent = self
                .signalled
                .get()
                .map(std::time::Instant::elapsed)
                .unwrap_or_default();
            let deadline = std::time::Instant::now() + self.grace.saturating_sub(spent);
            for module in &self.auth_modules {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                module.drain_mail_queue(left).await;
            }
        }
        #[cfg(not(all(feature = "auth", chopin_db)))]
        let _ = self.signalled;
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
