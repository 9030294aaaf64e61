//! The database circuit breaker: while the database is down, queries through [`Db`](super::Db)
//! fail at once with a 503 instead of each waiting the pool's acquire timeout.
//!
//! * **Closed** (normal): queries run. A connection failure seen by a query (refused, reset,
//!   DNS, TLS, I/O, SQLSTATE class 08 or 57P01–57P03) is counted, and the first one starts a
//!   background probe. A pool acquire timeout is not counted (a busy pool gives it too) but
//!   also starts a probe. Any successful query resets the count.
//!   A query still unfinished after one probe interval starts a probe too (sqlx retries a
//!   refused connection until the acquire timeout, so a refusal is never reported sooner);
//!   that probe only tries an idle pooled connection: with none idle the pool is busy, and a
//!   slow database is not handed one more connection.
//! * **Open**: reached when a probe cannot connect or gets no answer within the acquire
//!   timeout, or when `threshold` failures in a row were seen. A probe that reaches the
//!   server but gets an error (say, too many connections) counts as a success.
//!   Queries fail at once with `SERVICE_UNAVAILABLE` without touching the pool; the probe
//!   (`SELECT 1` on an idle pooled connection, else — once a connection failure or an
//!   acquire timeout was seen, or while open — on a fresh one, bounded by the acquire
//!   timeout) repeats every `probe_interval`.
//!   A query (not a transaction callback) already waiting when it opens gives up with the
//!   same 503 instead of waiting out the acquire timeout.
//! * The first successful probe closes the breaker.
//!
//! The state machine (the atomics read on every query, the one probe task, which holds the
//! breaker weakly so that a dropped `Db` ends it and its pool closes) is the shared
//! [`crate::breaker`]; this module supplies the probe and the decision of what counts as a
//! failure.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// The database's probe for the shared state machine ([`crate::breaker`]).
#[derive(Debug)]
struct DbProbe {
    probe_interval: Duration,
    probe_timeout: Duration,
    target: ProbeTarget,
    /// A connection failure or acquire timeout was seen since the last probe began: the
    /// next probe may open a fresh connection when no pooled one is idle.
    suspect: AtomicBool,
}

impl crate::breaker::Probe for DbProbe {
    async fn probe(&self, open: bool) -> Result<(), &'static str> {
        match self.probe_once(open).await {
            Ok(()) => Ok(()),
            Err(ProbeError::Reachable(err)) => {
                // The server answered (too many connections, a permission error…): it is
                // up, and the pool's own connections may well work.
                tracing::debug!(%err, "database probe answered with an error");
                Ok(())
            }
            Err(ProbeError::Down(err)) => {
                tracing::debug!(%err, "database probe failed");
                Err("probe failed")
            }
        }
    }

    fn opened(&self, why: &'static str) {
        #[cfg(feature = "metrics")]
        crate::metrics::global().db.breaker_opened.inc();
        tracing::warn!(
            reason = why,
            probe_interval = ?self.probe_interval,
            "database unreachable: circuit breaker open, answering 503 until a probe succeeds"
        );
    }

    fn closed(&self) {
        tracing::info!("database reachable again: circuit breaker closed");
    }

    fn gone(&self) -> bool {
        match &self.target {
            #[cfg(feature = "sqlite")]
            ProbeTarget::Sqlite(p) => p.is_closed(),
            #[cfg(feature = "postgres")]
            ProbeTarget::Postgres(p) => p.is_closed(),
        }
    }

    fn pending(&self) -> bool {
        self.suspect.load(Ordering::Acquire)
    }
}

/// Shared breaker state of one pool (cheap to clone).
#[derive(Debug, Clone)]
pub(super) struct Breaker {
    config: BreakerConfig,
    state: crate::breaker::Breaker<DbProbe>,
}

impl Breaker {
    pub(super) fn new(config: BreakerConfig, probe_timeout: Duration, target: ProbeTarget) -> Self {
        let probe = DbProbe {
            probe_interval: config.probe_interval,
            probe_timeout,
            target,
            suspect: AtomicBool::new(false),
        };
        Breaker {
            state: crate::breaker::Breaker::new(probe, config.threshold, config.probe_interval),
            config,
        }
    }

    /// Whether queries may run (the breaker is off or closed).
    pub(super) fn is_closed(&self) -> bool {
        !(self.config.enabled && self.state.is_open())
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
        if !self.config.enabled {
            return fut.await;
        }
        let mut fut = std::pin::pin!(fut);
        tokio::select! {
            biased;
            out = &mut fut => return out,
            () = tokio::time::sleep(self.config.probe_interval) => self.start_probe(false),
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
        if !self.config.enabled {
            return fut.await;
        }
        let mut fut = std::pin::pin!(fut);
        tokio::select! {
            biased;
            out = &mut fut => return out,
            () = tokio::time::sleep(self.config.probe_interval) => self.start_probe(false),
        }
        let opened = self.state.opened();
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
        self.state.success();
    }

    /// A query failed with a sqlx error.
    pub(super) fn observe_sqlx(&self, err: &sqlx::Error) {
        if !self.config.enabled {
            return;
        }
        if is_connection_failure(err) {
            self.state.probe().suspect.store(true, Ordering::Release);
            self.state.failure();
        } else if matches!(err, sqlx::Error::PoolTimedOut) {
            self.start_probe(true);
        }
    }

    /// A query failed with a sea-orm error.
    pub(super) fn observe_db(&self, err: &DbErr) {
        if !self.config.enabled {
            return;
        }
        match err {
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => self.start_probe(true),
            DbErr::Conn(RuntimeErr::SqlxError(e))
            | DbErr::Exec(RuntimeErr::SqlxError(e))
            | DbErr::Query(RuntimeErr::SqlxError(e)) => self.observe_sqlx(e),
            _ => {}
        }
    }

    /// Start the probe task unless one runs (or there is no runtime to run it on).
    /// `suspect`: a connection failure or an acquire timeout was seen, so the probe may open
    /// a fresh connection when no pooled one is idle.
    fn start_probe(&self, suspect: bool) {
        if suspect {
            self.state.probe().suspect.store(true, Ordering::Release);
        }
        self.state.start_probe();
    }
}

impl DbProbe {
    /// `SELECT 1` on an idle pooled connection if there is one that answers, else on a fresh
    /// connection (which is what proves the server accepts connections again), bounded by the
    /// probe timeout. With no idle connection, and neither a connection failure nor an
    /// acquire timeout seen (only a slow query) while the breaker is closed, the pool is busy:
    /// no fresh connection is opened beside it.
    async fn probe_once(&self, open: bool) -> Result<(), ProbeError> {
        let timeout = self.probe_timeout;
        // (SQLite never opens a fresh connection; the swap still clears the mark.)
        #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
        let may_connect = self.suspect.swap(false, Ordering::AcqRel) || open;
        let run = async {
            match &self.target {
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
                        // A dead connection: do not hand it back to a request; it is a
                        // connection failure, so a fresh connection decides.
                        pooled.close_on_drop();
                    } else if !may_connect {
                        // Every connection busy or being opened, and no failure seen: busy,
                        // unless the server refuses even a TCP connection. Requests waiting
                        // for the pool while it reconnects to a stopped server report nothing
                        // (sqlx retries a refused connection until the acquire timeout), so
                        // only this check lets the breaker open before that timeout. It opens
                        // no session: nothing is sent, and the server's backend ends at once.
                        return server_accepts(&pool.connect_options()).await;
                    }
                    #[cfg(feature = "metrics")]
                    let start = std::time::Instant::now();
                    let mut conn =
                        sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
                    #[cfg(feature = "metrics")]
                    super::metrics::acquired(start.elapsed());
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

/// Whether the PostgreSQL server accepts a connection at all (TCP or Unix socket), without
/// starting a session: the connection is closed before a byte is sent.
#[cfg(feature = "postgres")]
async fn server_accepts(options: &sqlx::postgres::PgConnectOptions) -> Result<(), sqlx::Error> {
    let host = options.get_host();
    let port = options.get_port();
    let socket = match options.get_socket() {
        Some(dir) => Some(format!("{}/.s.PGSQL.{port}", dir.display())),
        None if host.starts_with('/') => Some(format!("{host}/.s.PGSQL.{port}")),
        None => None,
    };
    match socket {
        #[cfg(unix)]
        Some(path) => drop(tokio::net::UnixStream::connect(path).await?),
        #[cfg(not(unix))]
        Some(_) => {}
        None => drop(tokio::net::TcpStream::connect((host, port)).await?),
    }
    Ok(())
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

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    /// A pool with no connection, whose server refuses every connection.
    async fn refusing_pool() -> sqlx::PgPool {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("nobody");
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options)
    }

    fn breaker(pool: sqlx::PgPool) -> Breaker {
        let config = BreakerConfig {
            probe_interval: Duration::from_millis(10),
            ..BreakerConfig::default()
        };
        Breaker::new(config, Duration::from_secs(1), ProbeTarget::Postgres(pool))
    }

    async fn probe_finished(b: &Breaker) {
        for _ in 0..500 {
            if !b.state.is_probing() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the probe did not finish");
    }

    async fn wait_open(b: &Breaker) -> bool {
        for _ in 0..500 {
            if !b.is_closed() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_slow_query_with_no_idle_connection_opens_no_session_beside_the_pool() {
        // A server that accepts connections (a bare listener standing in for PostgreSQL):
        // nothing idle, no failure seen. The probe may check that the server accepts a
        // connection, but sends nothing on it (no session), and takes the pool as busy.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("nobody");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        let b = breaker(pool);
        b.start_probe(false);
        probe_finished(&b).await;
        assert!(b.is_closed(), "a busy pool is not a down database");
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(1), listener.accept())
            .await
            .expect("the probe checked that the server accepts connections")
            .unwrap();
        let mut buf = [0u8; 8];
        let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
            .await
            .unwrap();
        assert_eq!(read, 0, "the probe sent nothing: no session was started");
    }

    #[tokio::test]
    async fn a_slow_query_opens_the_breaker_when_the_server_refuses_connections() {
        // Requests waiting while the pool reconnects to a stopped server see no error until
        // the acquire timeout; the probe's connection check opens the breaker before it.
        let b = breaker(refusing_pool().await);
        b.start_probe(false);
        assert!(
            wait_open(&b).await,
            "a refused connection opens the breaker"
        );
    }

    #[tokio::test]
    async fn a_probe_after_an_acquire_timeout_connects_and_a_refusal_opens_the_breaker() {
        let b = breaker(refusing_pool().await);
        b.observe_sqlx(&sqlx::Error::PoolTimedOut);
        assert!(
            wait_open(&b).await,
            "a probe after an acquire timeout connects and fails"
        );
    }

    #[test]
    fn a_probe_dropped_with_its_runtime_clears_the_probing_mark() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let b = runtime.block_on(async {
            let b = breaker(refusing_pool().await);
            b.observe_sqlx(&sqlx::Error::PoolTimedOut);
            assert!(b.state.is_probing());
            b
        });
        drop(runtime);
        assert!(
            !b.state.is_probing(),
            "the probe task is gone: a new failure must be able to start one"
        );
    }

    #[tokio::test]
    async fn the_probe_task_does_not_keep_a_dropped_breaker_alive() {
        let b = breaker(refusing_pool().await);
        b.observe_sqlx(&sqlx::Error::PoolTimedOut);
        // Probing every 10 ms while the server refuses: the loop would run forever.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!b.is_closed());
        let weak = b.state.downgrade();
        drop(b);
        for _ in 0..500 {
            if weak.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the probe task still holds the breaker (and its pool)");
    }
}
