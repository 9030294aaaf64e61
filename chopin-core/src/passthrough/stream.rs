//! Streaming pass-through: rows go to the client in chunks as the database produces them.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http::{StatusCode, header};
use sea_orm::sqlx;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::rows::{RawJson, RowEncoder};
use super::statement::Statement;
use crate::db::Db;
use crate::error::{ChopinError, DEFAULT_RETRY_AFTER};
use crate::response::SUCCESS_LIST_PREFIX;

/// Default chunk size of [`JsonStream`]: 64 KiB.
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;

enum Msg {
    /// A chunk of the body holding this many rows; more follow.
    Chunk(Bytes, u64),
    /// The final chunk, holding this many rows: the document is complete.
    Last(Bytes, u64),
    /// The query failed. Before the first chunk this becomes an error response; after it,
    /// the body is aborted.
    Failed(ChopinError),
}

/// A list envelope streamed from the database: `{"success":true,"data":[row,…]}` sent in
/// chunks while the query runs.
///
/// * The server holds at most about two chunks (plus the row being encoded) in memory,
///   whatever the number of rows: a bounded channel makes a slow client slow the query down.
/// * The first chunk is sent as soon as the first row arrives, so time to first byte does not
///   depend on the size of the result.
/// * An error before the first row is an ordinary error response (for example 503 when the
///   pool is exhausted). An error after it is logged and **aborts** the body: the client sees
///   a truncated transfer, never a syntactically complete but short document.
/// * When the client goes away, the query is cancelled (PostgreSQL: `pg_cancel_backend` on
///   the query's backend, and the connection is closed rather than reused).
/// * When the client stops reading (its socket buffers full) and one chunk waits longer than
///   `CHOPIN_DB_STREAM_SEND_TIMEOUT` (default 10 s), or the whole stream runs past
///   `CHOPIN_DB_STREAM_DEADLINE` (default none), the query is cancelled the same way and the
///   body aborted: a stalled reader cannot keep a connection.
/// * At most `CHOPIN_DB_MAX_STREAMS` streams (default half the pool) run at once per pool;
///   one more is answered 503 `SERVICE_UNAVAILABLE` with `Retry-After` before it takes a
///   connection, so streams never take the whole pool.
///
/// Create it with [`JsonQuery::stream`](super::JsonQuery::stream).
#[must_use]
pub struct JsonStream {
    first: Msg,
    rx: mpsc::Receiver<Msg>,
    /// Why the producer cut the stream off, when it did (it counted it already).
    cut: Arc<OnceLock<&'static str>>,
    /// When the query started (for the first-byte metric).
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl std::fmt::Debug for JsonStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonStream").finish_non_exhaustive()
    }
}

impl JsonStream {
    pub(super) async fn start(
        statement: Statement,
        encoder: RowEncoder,
        chunk: usize,
        db: Db,
    ) -> Result<JsonStream, ChopinError> {
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        // While the database is down, answer 503 at once instead of waiting for the pool.
        db.breaker_check()?;
        // The stream cap: refused before a connection is taken, so that streams never hold
        // the whole pool.
        let permit = db
            .streams()
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                ChopinError::unavailable(
                    "too many streamed responses are open; retry shortly",
                    DEFAULT_RETRY_AFTER,
                )
            })?;
        let (tx, mut rx) = mpsc::channel(1);
        let cut = Arc::new(OnceLock::new());
        let limits = Limits {
            send_timeout: db.streams().send_timeout,
            deadline: db
                .streams()
                .deadline
                .and_then(|d| tokio::time::Instant::now().checked_add(d)),
            cut: cut.clone(),
        };
        tokio::spawn(produce(statement, encoder, chunk, db, tx, limits, permit));
        match rx.recv().await {
            Some(Msg::Failed(err)) => Err(err),
            Some(first) => Ok(JsonStream {
                first,
                rx,
                cut,
                #[cfg(feature = "metrics")]
                started,
            }),
            None => Err(ChopinError::internal("the streaming task ended early")),
        }
    }
}

/// The response body: the chunks as the producer sends them, counted as they are handed to
/// the server (feature `metrics`).
struct Chunks {
    first: Option<Msg>,
    rx: mpsc::Receiver<Msg>,
    /// Why the producer cut the stream off, when it did (it counted it already).
    cut: Arc<OnceLock<&'static str>>,
    /// The document is complete, or its body was aborted.
    done: bool,
    /// A chunk was handed over.
    #[cfg(feature = "metrics")]
    sent: bool,
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl Chunks {
    fn handing(&mut self, bytes: &Bytes, rows: u64) {
        #[cfg(feature = "metrics")]
        {
            let metrics = &crate::metrics::global().passthrough;
            if !self.sent {
                self.sent = true;
                metrics
                    .first_byte
                    .observe(self.started.elapsed().as_secs_f64());
            }
            metrics.rows.inc_by(rows);
            metrics.bytes.inc_by(bytes.len() as u64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (bytes, rows);
    }
}

impl Stream for Chunks {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let msg = match this.first.take() {
            Some(msg) => Some(msg),
            None => std::task::ready!(this.rx.poll_recv(cx)),
        };
        Poll::Ready(Some(match msg {
            Some(Msg::Chunk(bytes, rows)) => {
                this.handing(&bytes, rows);
                Ok(bytes)
            }
            Some(Msg::Last(bytes, rows)) => {
                this.done = true;
                this.handing(&bytes, rows);
                Ok(bytes)
            }
            Some(Msg::Failed(err)) => {
                this.done = true;
                #[cfg(feature = "metrics")]
                crate::metrics::global().passthrough.aborted("database");
                Err(io::Error::other(err.to_string()))
            }
            // The producer vanished without finishing the document: abort the body.
            None => {
                this.done = true;
                if let Some(reason) = this.cut.get() {
                    return Poll::Ready(Some(Err(io::Error::other(format!(
                        "pass-through stream cut off ({reason})"
                    )))));
                }
                #[cfg(feature = "metrics")]
                crate::metrics::global().passthrough.aborted("database");
                Err(io::Error::other("pass-through stream ended early"))
            }
        }))
    }
}

/// A body dropped after its first chunk and before its end: the client went away.
#[cfg(feature = "metrics")]
impl Drop for Chunks {
    fn drop(&mut self) {
        if self.sent && !self.done && self.cut.get().is_none() {
            crate::metrics::global().passthrough.aborted("disconnect");
        }
    }
}

impl IntoResponse for JsonStream {
    fn into_response(self) -> Response {
        let stream = Chunks {
            first: Some(self.first),
            rx: self.rx,
            cut: self.cut,
            done: false,
            #[cfg(feature = "metrics")]
            sent: false,
            #[cfg(feature = "metrics")]
            started: self.started,
        };
        let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, crate::json::APPLICATION_JSON);
        response
    }
}

/// A streamed statement's own latency for the slow-query count: from its start to its first
/// row (or its end, when it has none). A slow reader stretches the stream, not the statement.
#[cfg(feature = "metrics")]
struct StatementTimer {
    start: std::time::Instant,
    first_row: std::sync::OnceLock<std::time::Instant>,
}

#[cfg(feature = "metrics")]
impl StatementTimer {
    fn start() -> Self {
        Self {
            start: std::time::Instant::now(),
            first_row: std::sync::OnceLock::new(),
        }
    }

    /// A row arrived.
    fn row(&self) {
        self.first_row.get_or_init(std::time::Instant::now);
    }

    /// Count the statement, unless it failed (failures are counted as errors).
    fn finish(&self, db: &Db, outcome: &Outcome) {
        if *outcome != Outcome::Failed {
            let end = self
                .first_row
                .get()
                .copied()
                .unwrap_or_else(std::time::Instant::now);
            db.statement_took(end.saturating_duration_since(self.start));
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Failed,
    ClientGone,
    /// One chunk waited longer than the send timeout for the client to take it.
    Stalled,
    /// The stream ran past its deadline.
    Deadline,
}

impl Outcome {
    /// The `reason` label of a stream the producer cuts off itself.
    fn cut_reason(&self) -> Option<&'static str> {
        match self {
            Outcome::Stalled => Some("stalled"),
            Outcome::Deadline => Some("deadline"),
            _ => None,
        }
    }
}

/// The limits a producer enforces.
struct Limits {
    /// `CHOPIN_DB_STREAM_SEND_TIMEOUT`.
    send_timeout: Duration,
    /// The end of `CHOPIN_DB_STREAM_DEADLINE`, when there is one.
    deadline: Option<tokio::time::Instant>,
    /// Set (and counted) when the producer cuts the stream off.
    cut: Arc<OnceLock<&'static str>>,
}

impl Limits {
    /// Run the pump, cut off at the deadline; record why the stream was cut off.
    async fn run(&self, pump: impl std::future::Future<Output = Outcome>) -> Outcome {
        let outcome = match self.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, pump)
                .await
                .unwrap_or(Outcome::Deadline),
            None => pump.await,
        };
        if let Some(reason) = outcome.cut_reason()
            && self.cut.set(reason).is_ok()
        {
            tracing::warn!(
                reason,
                send_timeout = ?self.send_timeout,
                "pass-through stream cut off: the client took no data in time or the stream \
                 ran past its deadline; the query is cancelled and its connection closed"
            );
            #[cfg(feature = "metrics")]
            crate::metrics::global().passthrough.aborted(reason);
        }
        outcome
    }
}

/// The stream's own `statement_timeout` (`0`: none): its deadline and a second, so that the
/// deadline cuts it off first and the server's timeout is the backstop.
#[cfg(feature = "postgres")]
fn stream_statement_timeout(deadline: Option<Duration>) -> String {
    match deadline {
        Some(d) => format!("{}ms", (d + Duration::from_secs(1)).as_millis()),
        None => "0".into(),
    }
}

async fn produce(
    statement: Statement,
    encoder: RowEncoder,
    chunk: usize,
    db: Db,
    tx: mpsc::Sender<Msg>,
    limits: Limits,
    // Held until the connection is back in the pool (or closed).
    _permit: OwnedSemaphorePermit,
) {
    let send_timeout = limits.send_timeout;
    #[cfg(feature = "postgres")]
    if let Some(pool) = db.postgres_pool() {
        // A stream outlives its request: it runs under its own `statement_timeout` (its
        // deadline, or none), set in the same round trip as the backend pid is read, and the
        // pool's is restored when the stream ends well.
        let own_timeout = db.streams().deadline.map(|d| d + Duration::from_secs(1));
        let retime = own_timeout != db.streams().statement_timeout;
        let setup = async {
            let observed = |err: sqlx::Error| {
                db.observe_error(&err);
                ChopinError::from(err)
            };
            let mut conn = db.acquire(pool).await?;
            let pid: i32 = if retime {
                sqlx::query_scalar(
                    "SELECT pg_backend_pid() FROM set_config('statement_timeout', $1, false)",
                )
                .bind(stream_statement_timeout(db.streams().deadline))
                .fetch_one(&mut *conn)
                .await
            } else {
                sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut *conn)
                    .await
            }
            .map_err(observed)?;
            Ok::<_, ChopinError>((conn, pid))
        };
        let (mut conn, pid) = match db.watch(setup).await {
            Ok(v) => v,
            Err(err) => {
                let _ = tx.send(Msg::Failed(err)).await;
                return;
            }
        };
        #[cfg(feature = "metrics")]
        let timer = StatementTimer::start();
        let outcome = {
            let rows = statement
                .pg_query()
                .fetch(&mut *conn)
                .inspect_err(|e| db.observe_error(e));
            #[cfg(feature = "metrics")]
            let rows = rows.inspect_ok(|_| timer.row());
            let pump = pump(
                rows,
                super::statement::pg_raw,
                &encoder,
                chunk,
                &tx,
                send_timeout,
            );
            limits.run(pump).await
        };
        #[cfg(feature = "metrics")]
        timer.finish(&db, &outcome);
        if outcome == Outcome::Done {
            if retime
                && let Err(err) = sqlx::query("RESET statement_timeout")
                    .execute(&mut *conn)
                    .await
            {
                tracing::warn!(%err, "could not restore the pool's statement_timeout; closing the connection");
                let _ = conn.close().await;
            }
        } else {
            // Stop the query on the server, then close the connection instead of returning a
            // connection in an unknown state to the pool. Closing also frees a backend
            // blocked writing to a stalled stream (a cancel waits until its write is done).
            if let Err(err) = cancel_backend(pool, pid).await {
                tracing::warn!(%err, pid, "could not cancel the streaming query");
            }
            let _ = conn.close().await;
        }
        return;
    }
    #[cfg(feature = "sqlite")]
    if let Some(pool) = db.sqlite_pool() {
        let setup = async { db.acquire(pool).await };
        let mut conn = match db.watch(setup).await {
            Ok(conn) => conn,
            Err(err) => {
                let _ = tx.send(Msg::Failed(err)).await;
                return;
            }
        };
        #[cfg(feature = "metrics")]
        let timer = StatementTimer::start();
        // Dropping the row stream stops SQLite from stepping the statement.
        let rows = statement
            .sqlite_query()
            .fetch(&mut *conn)
            .inspect_err(|e| db.observe_error(e));
        #[cfg(feature = "metrics")]
        let rows = rows.inspect_ok(|_| timer.row());
        let pump = pump(
            rows,
            super::statement::sqlite_raw,
            &encoder,
            chunk,
            &tx,
            send_timeout,
        );
        let _outcome = limits.run(pump).await;
        #[cfg(feature = "metrics")]
        timer.finish(&db, &_outcome);
        return;
    }
    let _ = tx
        .send(Msg::Failed(ChopinError::internal(
            "no database backend compiled in",
        )))
        .await;
}

/// `pg_cancel_backend(pid)` without waiting for the pool: when every connection is busy (the
/// streaming one included), waiting would delay the cancel by the acquire timeout and then
/// fail, leaving a query that writes nothing running to the end. So it uses an idle pooled
/// connection if there is one, else a connection of its own.
#[cfg(feature = "postgres")]
async fn cancel_backend(pool: &sqlx::PgPool, pid: i32) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let cancel = sqlx::query("SELECT pg_cancel_backend($1)").bind(pid);
    match pool.try_acquire() {
        Some(mut pooled) => cancel.execute(&mut *pooled).await.map(drop),
        None => {
            let mut own = sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
            let result = cancel.execute(&mut own).await.map(drop);
            let _ = own.close().await;
            result
        }
    }
}

/// Move rows from the database stream into chunks on the channel.
async fn pump<R, S>(
    mut rows: S,
    raw: for<'r> fn(&'r R) -> Result<RawJson<'r>, ChopinError>,
    encoder: &RowEncoder,
    chunk: usize,
    tx: &mpsc::Sender<Msg>,
    send_timeout: Duration,
) -> Outcome
where
    S: Stream<Item = Result<R, sqlx::Error>> + Unpin,
{
    let new_buf = || Vec::with_capacity(chunk + chunk / 4);
    let mut buf = new_buf();
    buf.extend_from_slice(SUCCESS_LIST_PREFIX);
    let mut count: u64 = 0;
    // Rows in `buf`.
    let mut pending: u64 = 0;
    let mut started = false;
    loop {
        let next = tokio::select! {
            biased;
            () = tx.closed() => return Outcome::ClientGone,
            next = rows.try_next() => next,
        };
        let row = match next {
            Ok(Some(row)) => row,
            Ok(None) => {
                buf.extend_from_slice(b"]}");
                return match send(tx, Msg::Last(Bytes::from(buf), pending), send_timeout).await {
                    Ok(()) => Outcome::Done,
                    Err(outcome) => outcome,
                };
            }
            Err(err) => return fail(tx, started, count, err.into(), send_timeout).await,
        };
        if count > 0 {
            buf.push(b',');
        }
        if let Err(err) = raw(&row).and_then(|r| encoder.write(&mut buf, r)) {
            return fail(tx, started, count, err, send_timeout).await;
        }
        count += 1;
        pending += 1;
        if !started || buf.len() >= chunk {
            let full = std::mem::replace(&mut buf, new_buf());
            let msg = Msg::Chunk(Bytes::from(full), std::mem::take(&mut pending));
            if let Err(outcome) = send(tx, msg, send_timeout).await {
                return outcome;
            }
            started = true;
        }
    }
}

/// Hand a chunk to the body. The channel holds one chunk and the body takes the next only
/// when the server can write it, so a wait here is the time the client takes no data (once
/// the socket's buffers are full): past `send_timeout` the stream is stalled.
async fn send(tx: &mpsc::Sender<Msg>, msg: Msg, send_timeout: Duration) -> Result<(), Outcome> {
    match tokio::time::timeout(send_timeout, tx.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Outcome::ClientGone),
        Err(_) => Err(Outcome::Stalled),
    }
}

async fn fail(
    tx: &mpsc::Sender<Msg>,
    started: bool,
    rows: u64,
    err: ChopinError,
    send_timeout: Duration,
) -> Outcome {
    if started {
        tracing::error!(error = %err, rows, "pass-through stream failed after the response started; aborting the body");
    }
    // A stalled client would keep this waiting: the failure ends the stream either way.
    let _ = send(tx, Msg::Failed(err), send_timeout).await;
    Outcome::Failed
}
