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
