//! Per-core workers: N threads, each running a single-threaded tokio runtime that accepts on
//! its own listener and serves the router its factory returns. The caller's runtime only
//! coordinates: it waits for the shutdown future, tells the workers to drain, and after the
//! deadline to abort.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use super::{ABORT, DRAIN, RUNNING, ServeError, Server, Shared};
use crate::error::BoxError;

/// Which per-core worker a router factory is called for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    index: usize,
    count: usize,
}

impl Worker {
    pub(super) fn new(index: usize, count: usize) -> Worker {
        Worker { index, count }
    }

    /// This worker's index, `0..count`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many workers serve (1 when the factory runs on the caller's runtime). Size
    /// per-worker resources to a share: e.g. a pool of `max_connections / count`.
    pub fn count(&self) -> usize {
        self.count
    }
}

impl Server {
    /// Start one worker thread per listener and coordinate their shutdown.
    pub(super) async fn run_workers<F, Fut>(
        &self,
        listeners: Vec<std::net::TcpListener>,
        factory: Arc<F>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError>
    where
        F: Fn(Worker) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Router, BoxError>> + 'static,
    {
        let count = listeners.len();
        let (tx, rx) = watch::channel(RUNNING);
        let shared = Shared::new(&self.config);
        if let Some(addr) = listeners.first().and_then(|l| l.local_addr().ok()) {
            tracing::info!(%addr, workers = count, "chopin listening");
        }
        let mut done = FuturesUnordered::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            let (result_tx, result_rx) = oneshot::channel();
            let factory = factory.clone();
            let shared = shared.clone();
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("chopin-worker-{index}"))
                .spawn(move || {
                    let result = run_worker(index, count, listener, &*factory, shared, rx);
                    let _ = result_tx.send(result);
                });
            if let Err(err) = spawned {
                let _ = tx.send(ABORT);
                while done.next().await.is_some() {}
                return Err(ServeError::Io(err));
            }
            done.push(async move {
                result_rx.await.unwrap_or_else(|_| {
                    Err(ServeError::Worker {
                        index,
                        source: "the worker thread panicked".into(),
                    })
                })
            });
        }

        tokio::pin!(shutdown);
        let early = tokio::select! {
            result = done.next() => result,
            () = &mut shutdown => None,
        };
        if let Some(result) = early {
            // A worker stopped before shutdown (its factory failed): stop the others.
            let _ = tx.send(ABORT);
            while done.next().await.is_some() {}
            return Err(result.err().unwrap_or_else(|| ServeError::Worker {
                index: 0,
                source: "a worker stopped before shutdown".into(),
            }));
        }

        tracing::info!("shutdown requested; draining in-flight requests");
        let _ = tx.send(DRAIN);
        let mut first_error = None;
        let deadline = self.shutdown_timeout;
        let drained = tokio::time::timeout(deadline, async {
            while let Some(result) = done.next().await {
                if let Err(err) = result {
                    first_error.get_or_insert(err);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?deadline,
                "shutdown deadline reached; abandoning in-flight requests"
            );
            let _ = tx.send(ABORT);
            while let Some(result) = done.next().await {
                if let Err(err) = result {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The body of one worker thread: its runtime, its router, its accept loop. Returns when the
/// server has drained (or aborted); dropping the runtime then drops its connections.
fn run_worker<F, Fut>(
    index: usize,
    count: usize,
    listener: std::net::TcpListener,
    factory: &F,
    shared: Shared,
    state: watch::Receiver<u8>,
) -> Result<(), ServeError>
where
    F: Fn(Worker) -> Fut,
    Fut: Future<Output = Result<Router, BoxError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let router = factory(Worker::new(index, count))
            .await
            .map_err(|source| ServeError::Worker { index, source })?;
        shared.run(listener, router, state).await;
        Ok(())
    })
}
