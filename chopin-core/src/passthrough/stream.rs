//! Streaming pass-through: rows go to the client in chunks as the database produces them.

use std::io;

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
    /// A chunk of the body; more follow.
    Chunk(Bytes),
    /// The final chunk: the document is complete.
    Last(Bytes),
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
        // While the database is down, answer 503 at once instead of waiting for the pool.
        db.breaker_check()?;
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(produce(statement, encoder, chunk, db, tx));
        match rx.recv().await {
            Some(Msg::Failed(err)) => Err(err),
            Some(first) => Ok(JsonStream { first, rx }),
            None => Err(ChopinError::internal("the streaming task ended early")),
        }
    }
}

impl IntoResponse for JsonStream {
    fn into_response(self) -> Response {
        let stream = futures_util::stream::unfold(
            (Some(self.first), Some(self.rx)),
            |(first, rx)| async move {
                let mut rx = rx?;
                let msg = match first {
                    Some(msg) => Some(msg),
                    None => rx.recv().await,
                };
                match msg {
                    Some(Msg::Chunk(bytes)) => Some((Ok(bytes), (None, Some(rx)))),
                    Some(Msg::Last(bytes)) => Some((Ok(bytes), (None, None))),
                    Some(Msg::Failed(err)) => {
                        Some((Err(io::Error::other(err.to_string())), (None, None)))
                    }
                    // The producer vanished without finishing the document: abort the body.
                    None => Some((
                        Err(io::Error::other("pass-through stream ended early")),
                        (None, None),
                    )),
                }
            },
        );
        let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, crate::json::APPLICATION_JSON);
        response
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
            let mut conn = pool.acquire().await.map_err(observed)?;
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
        let outcome = {
            let rows = statement
                .pg_query()
                .fetch(&mut *conn)
                .inspect_err(|e| db.observe_error(e));
            pump(rows, super::statement::pg_raw, &encoder, chunk, &tx).await
        };
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
        // Dropping the row stream stops SQLite from stepping the statement.
        let rows = statement
            .sqlite_query()
            .fetch(pool)
            .inspect_err(|e| db.observe_error(e));
        pump(rows, super::statement::sqlite_raw, &encoder, chunk, &tx).await;
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
                return match tx.send(Msg::Last(Bytes::from(buf))).await {
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
        if !started || buf.len() >= chunk {
            let full = std::mem::replace(&mut buf, new_buf());
            if tx.send(Msg::Chunk(Bytes::from(full))).await.is_err() {
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
