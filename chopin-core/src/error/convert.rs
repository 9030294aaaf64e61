//! Conversions into [`ChopinError`] from the errors `?` meets in a handler: JSON decoding,
//! sea-orm and sqlx (not found, conflict, unavailable or internal), and validator.

use std::borrow::Cow;
#[cfg(chopin_db)]
use std::fmt;

use super::{ChopinError, DEFAULT_RETRY_AFTER, FieldError};
use crate::json;

impl From<json::DecodeError> for ChopinError {
    fn from(err: json::DecodeError) -> Self {
        match err {
            json::DecodeError::InvalidUtf8 { offset } => ChopinError::MalformedJson {
                message: format!("invalid UTF-8 at byte offset {offset}"),
                line: 1,
                column: 1,
            },
            json::DecodeError::Syntax {
                message,
                line,
                column,
            } => ChopinError::MalformedJson {
                message,
                line,
                column,
            },
            json::DecodeError::Data {
                path,
                code,
                message,
            } => ChopinError::invalid_field(
                if path.is_empty() { "$".into() } else { path },
                code,
                message,
            ),
        }
    }
}

impl From<sea_orm::DbErr> for ChopinError {
    fn from(err: sea_orm::DbErr) -> Self {
        #[cfg(chopin_db)]
        use sea_orm::RuntimeErr;
        use sea_orm::{ConnAcquireErr, DbErr, SqlErr};
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                return ChopinError::Conflict(
                    "a resource with the same unique value already exists".into(),
                );
            }
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                return ChopinError::Conflict(
                    "the change conflicts with a related resource".into(),
                );
            }
            _ => {}
        }
        match err {
            DbErr::RecordNotFound(what) => ChopinError::NotFound(what),
            // An UPDATE by primary key that matched no row.
            DbErr::RecordNotUpdated => ChopinError::NotFound("no such record".into()),
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => ChopinError::ServiceUnavailable {
                message: "the database is busy; retry shortly".into(),
                retry_after: DEFAULT_RETRY_AFTER,
                source: Some(Box::new(ConnAcquireErr::Timeout)),
            },
            DbErr::ConnectionAcquire(e) => ChopinError::ServiceUnavailable {
                message: "the database is unavailable".into(),
                retry_after: DEFAULT_RETRY_AFTER,
                source: Some(Box::new(e)),
            },
            DbErr::Conn(e) => ChopinError::ServiceUnavailable {
                message: "the database is unavailable".into(),
                retry_after: DEFAULT_RETRY_AFTER,
                source: Some(Box::new(e)),
            },
            #[cfg(chopin_db)]
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
                from_sqlx_ref(&e).unwrap_or_else(|| ChopinError::internal(ArcError(e)))
            }
            other => ChopinError::internal(other),
        }
    }
}

#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
impl From<sea_orm::sqlx::Error> for ChopinError {
    fn from(err: sea_orm::sqlx::Error) -> Self {
        from_sqlx_ref(&err).unwrap_or_else(|| ChopinError::internal(err))
    }
}

/// Classify the sqlx errors that have a client-visible meaning.
#[cfg(chopin_db)]
fn from_sqlx_ref(err: &sea_orm::sqlx::Error) -> Option<ChopinError> {
    use sea_orm::sqlx::Error as E;
    use sea_orm::sqlx::error::ErrorKind;
    match err {
        E::RowNotFound => Some(ChopinError::NotFound("no such record".into())),
        E::PoolTimedOut => Some(ChopinError::unavailable(
            "the database is busy; retry shortly",
            DEFAULT_RETRY_AFTER,
        )),
        E::PoolClosed | E::Io(_) | E::Tls(_) => Some(ChopinError::unavailable(
            "the database is unavailable",
            DEFAULT_RETRY_AFTER,
        )),
        E::Database(db) if db.code().is_some_and(|c| is_connection_sqlstate(&c)) => {
            Some(ChopinError::unavailable(
                "the database connection was lost; retry shortly",
                DEFAULT_RETRY_AFTER,
            ))
        }
        // query_canceled: `statement_timeout` (tied to the request timeout) or a cancel.
        // The statement outlived its request: the request timeout's own answer, 504.
        E::Database(db) if db.code().as_deref() == Some("57014") => Some(ChopinError::Timeout),
        E::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => Some(ChopinError::Conflict(
                "a resource with the same unique value already exists".into(),
            )),
            ErrorKind::ForeignKeyViolation => Some(ChopinError::Conflict(
                "the change conflicts with a related resource".into(),
            )),
            _ => None,
        },
        _ => None,
    }
}

/// SQLSTATEs that say the connection (not the statement) failed: class 08 (connection
/// exception) and 57P01–57P03 (admin shutdown, crash shutdown, cannot connect now).
#[cfg(chopin_db)]
fn is_connection_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Whether `err` means the connection to the database failed or was lost — refused, reset,
/// DNS, TLS or I/O while connecting or mid-query, or a server shutting down — as opposed to a
/// statement error or a busy pool (`PoolTimedOut`). The database circuit breaker counts
/// these.
#[cfg(chopin_db)]
pub(crate) fn is_connection_failure(err: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match err {
        E::Io(_) | E::Tls(_) => true,
        E::Database(db) => db.code().is_some_and(|c| is_connection_sqlstate(&c)),
        _ => false,
    }
}

/// Lets an `Arc`-shared sqlx error be kept as a boxed source.
#[cfg(chopin_db)]
#[derive(Debug)]
struct ArcError(std::sync::Arc<sea_orm::sqlx::Error>);

#[cfg(chopin_db)]
impl fmt::Display for ArcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(chopin_db)]
impl std::error::Error for ArcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<validator::ValidationErrors> for ChopinError {
    fn from(errors: validator::ValidationErrors) -> Self {
        let mut fields = Vec::new();
        collect_validation(&errors, String::new(), &mut fields);
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        ChopinError::Validation(fields)
    }
}

fn collect_validation(
    errors: &validator::ValidationErrors,
    prefix: String,
    out: &mut Vec<FieldError>,
) {
    use validator::ValidationErrorsKind as K;
    for (name, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        match kind {
            K::Field(list) => {
                for e in list {
                    let message = e
                        .message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| describe_validation(&e.code, &e.params));
                    out.push(FieldError::new(path.clone(), e.code.to_string(), message));
                }
            }
            K::Struct(inner) => collect_validation(inner, path, out),
            K::List(items) => {
                for (index, inner) in items {
                    collect_validation(inner, format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

fn describe_validation(
    code: &str,
    params: &std::collections::HashMap<Cow<'static, str>, serde_json::Value>,
) -> String {
    let p = |k: &str| params.get(k).map(|v| v.to_string());
    match code {
        "length" => match (p("min"), p("max"), p("equal")) {
            (_, _, Some(eq)) => format!("length must be exactly {eq}"),
            (Some(min), Some(max), _) => format!("length must be between {min} and {max}"),
            (Some(min), None, _) => format!("length must be at least {min}"),
            (None, Some(max), _) => format!("length must be at most {max}"),
            _ => "has an invalid length".into(),
        },
        "range" => match (p("min"), p("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            _ => "is out of range".into(),
        },
        "email" => "must be a valid email address".into(),
        "url" => "must be a valid URL".into(),
        "required" => "is required".into(),
        other => format!("is invalid ({other})"),
    }
}

#[cfg(all(test, chopin_db))]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use http::StatusCode;
    use sea_orm::sqlx;
    use sea_orm::sqlx::error::{DatabaseError, ErrorKind};
    use sea_orm::{DbErr, RuntimeErr};

    use super::*;

    /// A server error with a SQLSTATE, as PostgreSQL sends it.
    #[derive(Debug)]
    struct PgLike(&'static str);

    impl std::fmt::Display for PgLike {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "server error {}", self.0)
        }
    }

    impl std::error::Error for PgLike {}

    impl DatabaseError for PgLike {
        fn message(&self) -> &str {
            "terminating connection due to administrator command"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn db_error(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(PgLike(code)))
    }

    fn status_and_retry(err: ChopinError) -> (StatusCode, Option<std::time::Duration>) {
        (err.status(), err.retry_after())
    }

    #[test]
    fn a_connection_lost_mid_query_is_503_with_retry_after() {
        let lost = [
            db_error("57P01"),
            db_error("57P02"),
            db_error("57P03"),
            db_error("08006"),
            db_error("08003"),
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
        ];
        for err in lost {
            let text = err.to_string();
            assert!(is_connection_failure(&err), "{text}");
            // Through sea-orm, as an entity query reports it.
            let via_sea_orm = DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)));
            let (status, retry) = status_and_retry(ChopinError::from(via_sea_orm));
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
            assert_eq!(retry, Some(DEFAULT_RETRY_AFTER), "{text}");
        }
        // Directly from sqlx, as the pass-through path reports it.
        let (status, retry) = status_and_retry(ChopinError::from(db_error("57P01")));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry, Some(DEFAULT_RETRY_AFTER));
        let exec = DbErr::Exec(RuntimeErr::SqlxError(Arc::new(db_error("08006"))));
        assert_eq!(
            ChopinError::from(exec).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn statement_errors_stay_500_a_canceled_one_is_504_a_busy_pool_is_no_connection_failure() {
        for code in ["42P01", "22P02", "XX000"] {
            let err = db_error(code);
            assert!(!is_connection_failure(&err), "{code}");
            let via_sea_orm = DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)));
            assert_eq!(
                ChopinError::from(via_sea_orm).status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{code}"
            );
        }
        // query_canceled (statement_timeout): no connection failure, the timeout's 504.
        let canceled = db_error("57014");
        assert!(!is_connection_failure(&canceled));
        let via_sea_orm = DbErr::Query(RuntimeErr::SqlxError(Arc::new(canceled)));
        assert_eq!(
            ChopinError::from(via_sea_orm).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            ChopinError::from(db_error("57014")).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert!(!is_connection_failure(&sqlx::Error::PoolTimedOut));
        assert!(!is_connection_failure(&sqlx::Error::RowNotFound));
        assert_eq!(
            ChopinError::from(sqlx::Error::PoolTimedOut).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
