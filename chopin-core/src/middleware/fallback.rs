//! The 404 and 405 answers, in the envelope, for unknown paths and wrong methods.

use crate::error::ChopinError;

pub(super) async fn not_found() -> ChopinError {
    ChopinError::NotFound("no route matches this path".into())
}

pub(super) async fn method_not_allowed() -> ChopinError {
    ChopinError::MethodNotAllowed
}
