//! Streaming pass-through: rows go to the client in chunks as the database produces them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http::{StatusCode, header};
use sea_orm::sqlx;
use tokio::sync::mpsc;

use super::rows::{RawJson, RowEncoder};
use super::statement::Statement;
use crate::db::Db;
use crate::error::ChopinError;
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
///
/// Create it with [`JsonQuery::stream`](super::JsonQuery::stream).
#[must_use]
pub struct JsonStream {
    first: Msg,
    rx: mpsc::Receiver<Msg>,
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
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(produce(statement, encoder, chunk, db, tx));
        match rx.recv().await {
            Some(Msg::Failed(err)) => Err(err),
            Some(first) => Ok(JsonStream {
                first,
                rx,
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
        if self.sent && !self.done {
            crate::metrics::global().passthrough.aborted("disconnect");
        }
    }
}

impl IntoResponse for JsonStream {
    fn into_response(self) -> Response {
        let stream = Chunks {
            first: Some(self.first),
            rx: self.rx,
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
}

async fn produce(
    statement: Statement,
    encoder: RowEncoder,
    chunk: usize,
    db: Db,
    tx: mpsc::Sender<Msg>,
) {
    #[cfg(feature = "postgres")]
    if let Some(pool) = db.postgres_pool() {
        let setup = async {
            let observed = |err: sqlx::Error| {
                db.observe_error(&err);
                ChopinError::from(err)
            };
            let mut conn = db.acquire(pool).await?;
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await
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
            pump(rows, super::statement::pg_raw, &encoder, chunk, &tx).await
        };
        #[cfg(feature = "metrics")]
        timer.finish(&db, &outcome);
        if outcome != Outcome::Done {
            // Stop the query on the server, then close the connection instead of returning a
            // connection in an unknown state to the pool.
            if let Err(err) = cancel_backend(pool, pid).await {
                tracing::warn!(%err, pid, "could not cancel the streaming query");
            }
            conn.close_on_drop();
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
        let _outcome = pump(rows, super::statement::sqlite_raw, &encoder, chunk, &tx).await;
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
                return match tx.send(Msg::Last(Bytes::from(buf), pending)).await {
                    Ok(()) => Outcome::Done,
                    Err(_) => Outcome::ClientGone,
                };
            }
            Err(err) => return fail(tx, started, count, err.into()).await,
        };
        if count > 0 {
            buf.push(b',');
        }
        if let Err(err) = raw(&row).and_then(|r| encoder.write(&mut buf, r)) {
            return fail(tx, started, count, err).await;
        }
        count += 1;
        pending += 1;
        if !started || buf.len() >= chunk {
            let full = std::mem::replace(&mut buf, new_buf());
            if tx
                .send(Msg::Chunk(Bytes::from(full), std::mem::take(&mut pending)))
                .await
                .is_err()
            {
                return Outcome::ClientGone;
            }
            started = true;
        }
    }
}

async fn fail(tx: &mpsc::Sender<Msg>, started: bool, rows: u64, err: ChopinError) -> Outcome {
    if started {
        tracing::error!(error = %err, rows, "pass-through stream failed after the response started; aborting the body");
    }
    let _ = tx.send(Msg::Failed(err)).await;
    Outcome::Failed
}
