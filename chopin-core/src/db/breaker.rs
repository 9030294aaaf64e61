//! The database circuit breaker: while the database is down, queries through [`Db`](super::Db)
//! fail at once with a 503 instead of each waiting the pool's acquire timeout.
//!
//! * **Closed** (normal): queries run. A connection failure seen by a query (refused, reset,
//!   DNS, TLS, I/O, SQLSTATE class 08 or 57P01–57P03) is counted, and the first one starts a
//!   background probe. A pool acquire timeout is not counted (a busy pool gives it too) but
//!   also starts a probe. Any successful query resets the count.
//!   A query still unfinished after one probe interval starts a probe too (sqlx retries a
//!   refused connection until the acquire timeout, so a refusal is never reported sooner).
//! * **Open**: reached when a probe cannot connect or gets no answer within the acquire
//!   timeout, or when `threshold` failures in a row were seen. A probe that reaches the
//!   server but gets an error (say, too many connections) counts as a success.
//!   Queries fail at once with `SERVICE_UNAVAILABLE` without touching the pool; the probe
//!   (`SELECT 1` on an idle pooled connection, else on a fresh one, bounded by the acquire
//!   timeout) repeats every `probe_interval`.
//!   A query (not a transaction callback) already waiting when it opens gives up with the
//!   same 503 instead of waiting out the acquire timeout.
//! * The first successful probe closes the breaker.
//!
//! The state is two atomics read on every query; the probe is one tokio task at most.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

use crate::config::BreakerConfig;
use crate::error::{ChopinError, DEFAULT_RETRY_AFTER, is_connection_failure};

/// The public message of a 503 answered while the breaker is open.
pub(super) const OPEN_MESSAGE: &str = "the database is unavailable; retry shortly";

/// How a probe reaches the database.
#[derive(Debug, Clone)]
pub(super) enum ProbeTarget {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

#[derive(Debug)]
struct Inner {
    config: BreakerConfig,
    probe_timeout: Duration,
    target: ProbeTarget,
    open: AtomicBool,
    /// Woken when the breaker opens (queries waiting in `watch_abandoning`).
    opened: tokio::sync::Notify,
    failures: AtomicU32,
    probing: AtomicBool,
}

/// Shared breaker state of one pool (cheap to clone).
#[derive(Debug, Clone)]
pub(super) struct Breaker(Arc<Inner>);

impl Breaker {
    pub(super) fn new(config: BreakerConfig, probe_timeout: Duration, target: ProbeTarget) -> Self {
        Breaker(Arc::new(Inner {
            config,
            probe_timeout,
            target,
            open: AtomicBool::new(false),
            opened: tokio::sync::Notify::new(),
            failures: AtomicU32::new(0),
            probing: AtomicBool::new(false),
        }))
    }

    /// Whether queries may run (the breaker is off or closed).
    pub(super) fn is_closed(&self) -> bool {
        !(self.0.config.enabled && self.0.open.load(Ordering::Acquire))
    }

    /// `Err` (a 503) while the breaker is open.
    pub(super) fn check(&self) -> Result<(), ChopinError> {
        if self.is_closed() {
            Ok(())
        } else {
            Err(open_error())
        }
    }

    /// [`Breaker::check`] as a sea-orm error (it converts to the same 503).
    pub(super) fn check_db(&self) -> Result<(), DbErr> {
        if self.is_closed() {
            Ok(())
        } else {
            Err(open_db_error())
        }
    }

    /// Run `fut` (a query); if it has not finished after one probe interval, start a probe
    /// as well: a query that slow may be waiting for a pool that cannot connect (sqlx retries
    /// a refused connection until the acquire timeout, so the refusal itself is never seen).
    /// A busy but healthy database answers the probe and nothing changes.
    pub(super) async fn watch<F: Future>(&self, fut: F) -> F::Output {
        if !self.0.config.enabled {
            return fut.await;
        }
        let mut fut = std::pin::pin!(fut);
        tokio::select! {
            biased;
            out = &mut fut => return out,
            () = tokio::time::sleep(self.0.config.probe_interval) => self.start_probe(),
        }
        fut.await
    }

    /// Like [`Breaker::watch`], and once the query is slow, also stop waiting for it as soon
    /// as the breaker opens, answering `on_open()` instead: a request that was waiting for a
    /// connection when the database went away gets its 503 when the probe fails, not after
    /// the pool's whole acquire timeout. (Not for transactions: see `Db::transaction`.)
    pub(super) async fn watch_abandoning<F: Future>(
        &self,
        fut: F,
        on_open: impl FnOnce() -> F::Output,
    ) -> F::Output {
        if !self.0.config.enabled {
            return fut.await;
        }
        let mut fut = std::pin::pin!(fut);
        tokio::select! {
            biased;
            out = &mut fut => return out,
            () = tokio::time::sleep(self.0.config.probe_interval) => self.start_probe(),
        }
        let opened = self.0.opened.notified();
        let mut opened = std::pin::pin!(opened);
        opened.as_mut().enable();
        if !self.is_closed() {
            return on_open();
        }
        tokio::select! {
            biased;
            out = &mut fut => out,
            () = opened => on_open(),
        }
    }

    /// A query succeeded.
    pub(super) fn success(&self) {
        if self.0.failures.load(Ordering::Relaxed) != 0 {
            self.0.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A query failed with a sqlx error.
    pub(super) fn observe_sqlx(&self, err: &sqlx::Error) {
        if !self.0.config.enabled {
            return;
        }
        if is_connection_failure(err) {
            self.failure();
        } else if matches!(err, sqlx::Error::PoolTimedOut) {
            self.start_probe();
        }
    }

    /// A query failed with a sea-orm error.
    pub(super) fn observe_db(&self, err: &DbErr) {
        if !self.0.config.enabled {
            return;
        }
        match err {
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => self.start_probe(),
            DbErr::Conn(RuntimeErr::SqlxError(e))
            | DbErr::Exec(RuntimeErr::SqlxError(e))
            | DbErr::Query(RuntimeErr::SqlxError(e)) => self.observe_sqlx(e),
            _ => {}
        }
    }

    fn failure(&self) {
        let failures = self
            .0
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures >= self.0.config.threshold {
            self.open("connection failures");
        }
        self.start_probe();
    }

    fn open(&self, why: &'static str) {
        if !self.0.open.swap(true, Ordering::AcqRel) {
            self.0.opened.notify_waiters();
            tracing::warn!(
                reason = why,
                probe_interval = ?self.0.config.probe_interval,
                "database unreachable: circuit breaker open, answering 503 until a probe succeeds"
            );
        }
    }

    fn close(&self) {
        self.0.failures.store(0, Ordering::Release);
        if self.0.open.swap(false, Ordering::AcqRel) {
            tracing::info!("database reachable again: circuit breaker closed");
        }
    }

    /// Start the probe task unless one runs (or there is no runtime to run it on).
    fn start_probe(&self) {
        if self
            .0
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(self.clone().probe_loop());
            }
            Err(_) => self.0.probing.store(false, Ordering::Release),
        }
    }

    async fn probe_loop(self) {
        loop {
            loop {
                if self.target_closed() {
                    self.0.probing.store(false, Ordering::Release);
                    return;
                }
                match self.probe_once().await {
                    Ok(()) => {
                        self.close();
                        break;
                    }
                    Err(ProbeError::Reachable(err)) => {
                        // The server answered (too many connections, a permission error…):
                        // it is up, and the pool's own connections may well work.
                        tracing::debug!(%err, "database probe answered with an error");
                        self.close();
                        break;
                    }
                    Err(ProbeError::Down(err)) => {
                        tracing::debug!(%err, "database probe failed");
                        self.open("probe failed");
                    }
                }
                tokio::time::sleep(self.0.config.probe_interval).await;
            }
            self.0.probing.store(false, Ordering::Release);
            // A failure reported while this task was finishing found `probing` set and
            // started no task: take the probe over again rather than leave it unattended.
            let pending =
                self.0.open.load(Ordering::Acquire) || self.0.failures.load(Ordering::Acquire) > 0;
            if !pending
                || self
                    .0
                    .probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return;
            }
        }
    }

    fn target_closed(&self) -> bool {
        match &self.0.target {
            #[cfg(feature = "sqlite")]
            ProbeTarget::Sqlite(p) => p.is_closed(),
            #[cfg(feature = "postgres")]
            ProbeTarget::Postgres(p) => p.is_closed(),
        }
    }

    /// `SELECT 1` on an idle pooled connection if there is one that answers, else on a fresh
    /// connection (which is what proves the server accepts connections again), bounded by the
    /// probe timeout.
    async fn probe_once(&self) -> Result<(), ProbeError> {
        let timeout = self.0.probe_timeout;
        let run = async {
            match &self.0.target {
                #[cfg(feature = "sqlite")]
                // A SQLite file does not go away like a server: a pool with every connection
                // busy (an in-memory database has one) is busy, not down.
                ProbeTarget::Sqlite(pool) => match pool.try_acquire() {
                    Some(mut conn) => sqlx::query("SELECT 1").execute(&mut *conn).await.map(drop),
                    None => Ok(()),
                },
                #[cfg(feature = "postgres")]
                ProbeTarget::Postgres(pool) => {
                    use sqlx::Connection;
                    if let Some(mut pooled) = pool.try_acquire() {
                        let ok = sqlx::query("SELECT 1").execute(&mut *pooled).await.is_ok();
                        if ok {
                            return Ok(());
                        }
                        // A dead connection: do not hand it back to a request.
                        pooled.close_on_drop();
                    }
                    let mut conn =
                        sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
                    let result = sqlx::query("SELECT 1").execute(&mut conn).await.map(drop);
                    let _ = conn.close().await;
                    result
                }
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) if is_connection_failure(&err) => Err(ProbeError::Down(err.to_string())),
            Ok(Err(err @ sqlx::Error::Database(_))) => Err(ProbeError::Reachable(err.to_string())),
            Ok(Err(err)) => Err(ProbeError::Down(err.to_string())),
            Err(_) => Err(ProbeError::Down(format!("no answer within {timeout:?}"))),
        }
    }
}

/// Why a probe did not succeed.
enum ProbeError {
    /// No connection, or no answer in time: the database is down.
    Down(String),
    /// The server answered with an error: it is up.
    Reachable(String),
}

/// The breaker's 503 as a sea-orm error.
pub(super) fn open_db_error() -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(OPEN_MESSAGE.into()))
}

/// The breaker's 503.
pub(super) fn open_error() -> ChopinError {
    ChopinError::unavailable(OPEN_MESSAGE, DEFAULT_RETRY_AFTER)
}
