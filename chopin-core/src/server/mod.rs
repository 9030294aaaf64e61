//! Chopin's HTTP server: serve any axum [`Router`] with Chopin's connection timeouts and
//! limits, on hyper and hyper-util parts, on the application's tokio runtime or on per-core
//! workers.
//!
//! [`App::serve`](crate::App::serve) uses it; this module is for applications that build
//! their own `Router` (or take one from [`App::into_router`](crate::App::into_router)) and still
//! want the same server. Settings come from [`ServerConfig`] (`Config::server`, one
//! environment variable each — see `docs/configuration.md`):
//!
//! * **header timeout** — a request head not complete in time closes the connection (hyper's
//!   HTTP/1 header timer; before the first request, Chopin's own timer also covers the bytes
//!   that tell HTTP/1 from HTTP/2);
//! * **keep-alive idle timeout** and optional **maximum connection age** — closed gracefully
//!   (hyper has no HTTP/1 idle timeout: Chopin counts the requests in flight per connection);
//! * **maximum head size** — `431 Request Header Fields Too Large` on HTTP/1, the header list
//!   cap on HTTP/2;
//! * **write timeout** — a write that makes no progress (the client stopped reading) closes
//!   the connection;
//! * **connection cap** — at `max_connections` the server stops accepting until one closes;
//!   accept errors (`EMFILE`, …) back off and never end the loop;
//! * **HTTP/2** (prior-knowledge h2c, chosen by the client's first bytes) — concurrent
//!   streams, keep-alive pings, header list size, the rapid-reset caps;
//! * **TCP** — `TCP_NODELAY`, listen backlog, `SO_REUSEPORT` for workers;
//! * **graceful shutdown** — on the shutdown future: stop accepting, let open connections
//!   finish their requests for up to the shutdown timeout, then drop them.
//!
//! Every request carries `ConnectInfo<SocketAddr>` (the rate limiter's client address).
//!
//! # Per-core workers
//!
//! With [`Server::workers`] (or `CHOPIN_WORKERS`) set to N ≥ 1 the server runs N
//! single-threaded tokio runtimes, each on its own thread with its own `SO_REUSEPORT`
//! listener. The application still owns `main` and its runtime: the call returns when the
//! workers have shut down. The router a worker serves comes from one of two places:
//!
//! * [`Server::serve`] / [`Server::serve_at`]: the **same** router (and so the same state —
//!   database pool, Redis connection, caches, rate-limit buckets, revocations) on every
//!   worker. This is what `App::serve` does and the recommended way: state that must be
//!   shared stays shared. Connections created on the application's runtime (the pool, Redis)
//!   keep being driven by that runtime, so its I/O costs a cross-thread wake-up.
//! * [`Server::serve_workers`]: a factory called once **on each worker**, which builds that
//!   worker's router; its I/O state (a pool per worker, sized to its share) then lives on the
//!   worker's runtime. Share what must stay coherent (auth revocations, in-process rate
//!   limits, in-process caches) by building it once outside the factory and cloning it in.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use chopin_core::{Config, server::Server};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_env()?;
//! let router = Router::new().route("/", get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! Server::from_config(&config)
//!     .serve(listener, router, chopin_core::app::shutdown_signal())
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod accept;
mod connection;
mod listener;
mod workers;
mod write_timeout;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

pub use self::listener::bind;
pub(crate) use self::listener::resolve;
pub use self::workers::Worker;
use crate::config::{Config, ServerConfig};
use crate::error::BoxError;

/// Serving.
const RUNNING: u8 = 0;
/// Shutdown requested: stop accepting, close connections gracefully.
const DRAIN: u8 = 1;
/// Shutdown deadline reached: drop every connection.
const ABORT: u8 = 2;

/// Default time in-flight requests get after a shutdown signal (`CHOPIN_SHUTDOWN_TIMEOUT`).
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listening socket could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// `host:port` from the configuration.
        addr: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running (a listener or a worker thread could not be set up).
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// A per-core worker could not build its router, or stopped (panicked) before shutdown.
    #[error("worker {index}: {source}")]
    Worker {
        /// The worker's index (0-based).
        index: usize,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
}

/// Chopin's HTTP server: [`ServerConfig`] plus the shutdown deadline.
#[derive(Debug, Clone)]
pub struct Server {
    config: ServerConfig,
    shutdown_timeout: Duration,
}

impl Server {
    /// A server with these settings and a 30 s shutdown deadline.
    pub fn new(config: ServerConfig) -> Server {
        Server {
            config,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// The server a [`Config`] describes: `config.server` and `CHOPIN_SHUTDOWN_TIMEOUT`.
    pub fn from_config(config: &Config) -> Server {
        Server {
            config: config.server.clone(),
            shutdown_timeout: config.http.shutdown_timeout,
        }
    }

    /// How long open connections may finish their requests after the shutdown future
    /// completes, before they are dropped.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Server {
        self.shutdown_timeout = timeout;
        self
    }

    /// Serve on `workers` single-threaded runtimes (per-core mode); `0` serves on the
    /// caller's runtime. Overrides `CHOPIN_WORKERS`.
    pub fn workers(mut self, workers: usize) -> Server {
        self.config.workers = workers;
        self
    }

    /// The settings in use.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Serve `router` on `listener` until `shutdown` completes, then shut down gracefully.
    ///
    /// In per-core mode every worker accepts on (a duplicate of) this listener and serves the
    /// same router; [`serve_at`](Server::serve_at) gives each worker its own `SO_REUSEPORT`
    /// socket instead, which spreads connections more evenly.
    pub async fn serve(
        &self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        if self.config.workers == 0 {
            return self.serve_here(listener, router, shutdown).await;
        }
        let std = listener.into_std()?;
        let mut listeners = Vec::with_capacity(self.config.workers);
        for _ in 1..self.config.workers {
            listeners.push(std.try_clone()?);
        }
        listeners.push(std);
        self.run_workers(listeners, shared_router(router), shutdown)
            .await
    }

    /// Bind `addr` (with the configured backlog; one `SO_REUSEPORT` socket per worker in
    /// per-core mode) and serve `router` until `shutdown` completes.
    pub async fn serve_at(
        &self,
        addr: SocketAddr,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        if self.config.workers == 0 {
            let listener = self.bind_here(addr)?;
            return self.serve_here(listener, router, shutdown).await;
        }
        let listeners = self.bind_workers(addr)?;
        self.run_workers(listeners, shared_router(router), shutdown)
            .await
    }

    /// Per-core mode with state built on each worker: bind `addr` (one `SO_REUSEPORT` socket
    /// per worker), call `factory` once on each worker's runtime for the router it serves,
    /// and serve until `shutdown` completes.
    ///
    /// With `workers == 0` the factory is called once, on the caller's runtime, and the
    /// router served there, so one code path serves both modes.
    ///
    /// ```no_run
    /// use axum::{Router, routing::get};
    /// use chopin_core::server::{Server, Worker};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Server::new(Default::default()).workers(2);
    /// server
    ///     .serve_workers(
    ///         "127.0.0.1:3000".parse()?,
    ///         |worker: Worker| async move {
    ///             // Runs on the worker's own runtime: connect per-worker pools here.
    ///             let n = worker.index();
    ///             Ok(Router::new().route("/", get(move || async move { format!("worker {n}") })))
    ///         },
    ///         chopin_core::app::shutdown_signal(),
    ///     )
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve_workers<F, Fut>(
        &self,
        addr: SocketAddr,
        factory: F,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError>
    where
        F: Fn(Worker) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Router, BoxError>> + 'static,
    {
        if self.config.workers == 0 {
            let listener = self.bind_here(addr)?;
            let router = factory(Worker::new(0, 1))
                .await
                .map_err(|source| ServeError::Worker { index: 0, source })?;
            return self.serve_here(listener, router, shutdown).await;
        }
        let listeners = self.bind_workers(addr)?;
        self.run_workers(listeners, Arc::new(factory), shutdown)
            .await
    }

    fn bind_here(&self, addr: SocketAddr) -> Result<TcpListener, ServeError> {
        let std =
            bind(addr, self.config.listen_backlog, false).map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        Ok(TcpListener::from_std(std)?)
    }

    /// One `SO_REUSEPORT` socket per worker, all on the address the first one got (so port
    /// 0 picks one free port for all of them).
    fn bind_workers(&self, addr: SocketAddr) -> Result<Vec<std::net::TcpListener>, ServeError> {
        let bind_err = |source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        };
        let first = bind(addr, self.config.listen_backlog, true).map_err(bind_err)?;
        let actual = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..self.config.workers {
            listeners.push(bind(actual, self.config.listen_backlog, true).map_err(bind_err)?);
        }
        Ok(listeners)
    }

    /// Serve on the caller's runtime.
    async fn serve_here(
        &self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, workers = 0, "chopin listening");
        }
        let (tx, rx) = watch::channel(RUNNING);
        let shared = Shared::new(&self.config);
        let deadline = self.shutdown_timeout;
        let coordinator = async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining in-flight requests");
            let _ = tx.send(DRAIN);
            tokio::time::sleep(deadline).await;
            tracing::warn!(
                ?deadline,
                "shutdown deadline reached; abandoning in-flight requests"
            );
            let _ = tx.send(ABORT);
            // Keep the sender alive: connections treat a dropped sender as an abort.
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = shared.run(listener, router, rx) => Ok(()),
            () = coordinator => Ok(()),
        }
    }
}

/// The factory of the shared-state mode: every worker serves a clone of one router.
fn shared_router(
    router: Router,
) -> Arc<impl Fn(Worker) -> std::future::Ready<Result<Router, BoxError>> + Send + Sync + 'static> {
    Arc::new(move |_: Worker| std::future::ready(Ok(router.clone())))
}

/// What every listener of one server shares: the connection settings and the connection cap
/// (one cap for all workers).
#[derive(Clone)]
struct Shared {
    settings: Arc<connection::ConnSettings>,
    cap: Arc<Semaphore>,
    max_connections: usize,
    tcp_nodelay: bool,
}

impl Shared {
    fn new(config: &ServerConfig) -> Shared {
        let max_connections = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Shared {
            settings: Arc::new(connection::ConnSettings::new(config)),
            cap: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            tcp_nodelay: config.tcp_nodelay,
        }
    }

    /// Accept on `listener` until the server drains, then wait for its connections to close
    /// (or for the abort).
    async fn run(&self, listener: TcpListener, router: Router, mut state: watch::Receiver<u8>) {
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        accept::Acceptor {
            listener,
            router,
            settings: self.settings.clone(),
            cap: self.cap.clone(),
            max_connections: self.max_connections,
            tcp_nodelay: self.tcp_nodelay,
            state: state.clone(),
            open: open_tx,
        }
        .run()
        .await;
        // Every connection holds a sender: `recv` returns `None` once the last has closed.
        tokio::select! {
            _ = open_rx.recv() => {}
            _ = state.wait_for(|s| *s >= ABORT) => {}
        }
    }
}
