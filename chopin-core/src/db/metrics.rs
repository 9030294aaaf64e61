//! What a [`Db`](super::Db) reports to the metrics registry (feature `metrics`).
//!
//! * **Pool gauges** (`chopin_db_pool_connections{pool,state}`,
//!   `chopin_db_pool_max_connections{pool}`, `chopin_db_breaker_open{pool}`): read from the
//!   sqlx pool at each scrape. `Db::connect` watches its pool under the name `main`;
//!   [`Db::metrics_name`](super::Db::metrics_name) renames it. Pools under one name (a pool
//!   per worker) are added up; a dropped `Db` (every clone) disappears from the next scrape.
//! * **Errors** (`chopin_db_errors_total{kind}`): operations through `Db` that failed — sea-orm
//!   calls on `&db` (statements, streams, `begin`, the connection errors of `transaction`),
//!   `Db::ping`, the pass-through responders — by kind:
//!   * `connection`: the connection failed or was lost (refused, reset, DNS, TLS, I/O,
//!     SQLSTATE class 08 or 57P01–57P03), or the pool is closed;
//!   * `timeout`: no pooled connection within the acquire timeout (also counted in
//!     `chopin_db_pool_acquire_timeouts_total`), or a statement cancelled by PostgreSQL's
//!     `statement_timeout` (SQLSTATE 57014);
//!   * `constraint`: a unique, foreign key, not-null, check or exclusion violation;
//!   * `other`: anything else (a syntax error, a type mismatch…).
//!
//!   Answers of the open circuit breaker are not errors here (they never reach the pool;
//!   `chopin_db_breaker_open` says when they happen).
//! * **Slow statements** (`chopin_db_slow_queries_total`): statements through `Db` that ran
//!   at least `CHOPIN_DB_SLOW_QUERY` — timed on their connection, after it was acquired,
//!   as sqlx's own slow-statement log does — for sea-orm's `execute`, `query_one` and
//!   `query_all` (also inside transactions begun on `&db`) and the pass-through queries;
//!   `execute_unprepared` is timed from the call, its wait for a connection included.
//!   Statements run on a sqlx pool or connection taken out of `Db` are logged by sqlx but not
//!   counted.

use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

use super::Pool;
use super::breaker::Breaker;
use crate::error::is_connection_failure;
use crate::metrics::{PoolSnapshot, PoolSource, global};

/// The name `Db::connect` watches its pool under.
pub(super) const DEFAULT_POOL_NAME: &str = "main";

/// The pool of a `Db` as the metrics see it; shared by the `Db`'s clones and held weakly by
/// the registry.
#[derive(Debug)]
pub(super) struct Watched {
    pub(super) pool: Pool,
    pub(super) max: u32,
    pub(super) breaker: Breaker,
}

impl PoolSource for Watched {
    fn snapshot(&self) -> PoolSnapshot {
        let (size, idle) = self.pool.counts();
        PoolSnapshot {
            size,
            idle,
            max: self.max,
            breaker_open: !self.breaker.is_closed(),
        }
    }
}

/// The error kind of a sqlx error.
pub(super) fn sqlx_kind(err: &sqlx::Error) -> &'static str {
    use sqlx::error::ErrorKind;
    match err {
        sqlx::Error::PoolTimedOut => "timeout",
        sqlx::Error::PoolClosed => "connection",
        err if is_connection_failure(err) => "connection",
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation
            | ErrorKind::ExclusionViolation => "constraint",
            _ if db.code().as_deref() == Some("57014") => "timeout",
            _ => "other",
        },
        _ => "other",
    }
}

/// The error kind of a sea-orm error.
pub(super) fn db_kind(err: &DbErr) -> &'static str {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => "timeout",
        DbErr::ConnectionAcquire(_) => "connection",
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => sqlx_kind(e),
        DbErr::Conn(_) => "connection",
        _ => "other",
    }
}

/// Count a failed operation that ended with a sqlx error.
pub(super) fn sqlx_error(err: &sqlx::Error) {
    global().db.error(sqlx_kind(err));
    if matches!(err, sqlx::Error::PoolTimedOut) {
        global().db.acquire_timeouts.inc();
    }
}

/// Count a failed operation that ended with a sea-orm error.
pub(super) fn db_error(err: &DbErr) {
    global().db.error(db_kind(err));
    let acquire_timeout = match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(**e, sqlx::Error::PoolTimedOut),
        _ => false,
    };
    if acquire_timeout {
        global().db.acquire_timeouts.inc();
    }
}

/// Count a statement that ran for `elapsed` if that reaches `threshold`.
pub(super) fn statement(threshold: Option<Duration>, elapsed: Duration) {
    if threshold.is_some_and(|t| elapsed >= t) {
        global().db.slow_queries.inc();
    }
}

/// Record the time an acquisition Chopin made took.
pub(crate) fn acquired(elapsed: Duration) {
    global().db.acquire.observe(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds() {
        assert_eq!(sqlx_kind(&sqlx::Error::PoolTimedOut), "timeout");
        assert_eq!(sqlx_kind(&sqlx::Error::PoolClosed), "connection");
        assert_eq!(
            sqlx_kind(&sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())),
            "connection"
        );
        assert_eq!(sqlx_kind(&sqlx::Error::RowNotFound), "other");
        assert_eq!(
            db_kind(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
            "timeout"
        );
        assert_eq!(
            db_kind(&DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)),
            "connection"
        );
        assert_eq!(db_kind(&DbErr::RecordNotFound("x".into())), "other");
    }
}
