//! Health endpoints: `/health/live` and `/health/ready`.
//!
//! * `GET /health/live` answers 200 as long as the process serves requests.
//! * `GET /health/ready` runs every registered check concurrently (each bounded by a timeout)
//!   and answers 200 with each check's status, or 503 `SERVICE_UNAVAILABLE` naming the checks
//!   that failed, with `Retry-After`. While the server drains after a shutdown signal
//!   (`CHOPIN_SHUTDOWN_DELAY`), it answers 503 `draining` without running the checks, so a
//!   load balancer takes the instance out while it still serves. [`App::database`](crate::App::database) registers a
//!   `database` check (`Db::ping`, which fails at once while the database circuit breaker is
//!   open, so readiness reflects an outage without waiting on a timeout), [`App::cache`](crate::App::cache) a `cache` check;
//!   [`App::health_check`](crate::App::health_check) adds others.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Extension;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{BoxError, ChopinError};
use crate::response::ApiResponse;

/// How long one readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> + Send + Sync;

/// The set of named readiness checks, and whether the server is draining.
#[derive(Clone, Default)]
pub struct HealthChecks {
    checks: Vec<(String, Arc<CheckFn>)>,
    draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|(n, _)| n))
            .finish()
    }
}

impl HealthChecks {
    /// Register a check. The future resolves to `Err(error)` when the dependency is not
    /// usable (any error, or a message: `Err("no route to the index".into())`); the error is
    /// logged, and appears in the error's `detail` only in development.
    pub fn add<F, Fut>(&mut self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.checks
            .push((name.into(), Arc::new(move || Box::pin(check()))));
    }

    /// Mark the server as draining: from now on `/health/ready` answers 503 at once. The
    /// flag is shared by every clone of this set (the router's included).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether [`start_draining`](HealthChecks::start_draining) was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Run every check concurrently; returns each check's name and outcome.
    pub async fn run(&self) -> BTreeMap<String, Result<(), BoxError>> {
        let runs = self.checks.iter().map(|(name, check)| {
            let fut = check();
            async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {CHECK_TIMEOUT:?}").into()),
                };
                (name.clone(), outcome)
            }
        });
        futures_util::future::join_all(runs)
            .await
            .into_iter()
            .collect()
    }
}

/// Body of a successful health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `"live"` or `"ready"`.
    pub status: &'static str,
    /// Each readiness check and `"ok"` (readiness only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, &'static str>,
}

/// Liveness: the process is up and serving.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "The process serves requests", body = ApiResponse<HealthStatus>))
)]
pub async fn live() -> ApiResponse<HealthStatus> {
    ApiResponse::success(HealthStatus {
        status: "live",
        checks: BTreeMap::new(),
    })
}

/// Readiness: every registered dependency answers, and the server is not draining.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "All dependencies are usable", body = ApiResponse<HealthStatus>),
        (status = 503, description = "A dependency is unavailable, or the server is draining", body = crate::error::ErrorEnvelope),
    )
)]
pub async fn ready(
    Extension(checks): Extension<Arc<HealthChecks>>,
) -> Result<ApiResponse<HealthStatus>, ChopinError> {
    if checks.is_draining() {
        return Err(ChopinError::ServiceUnavailable {
            message: "not ready: draining".into(),
            retry_after: Duration::from_secs(5),
            source: None,
        });
    }
    let results = checks.run().await;
    let failed: Vec<(&String, &BoxError)> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| (name, e)))
        .collect();
    if failed.is_empty() {
        return Ok(ApiResponse::success(HealthStatus {
            status: "ready",
            checks: results.keys().map(|k| (k.clone(), "ok")).collect(),
        }));
    }
    let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
    let reasons: Vec<String> = failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    tracing::warn!(failed = ?reasons, "readiness check failed");
    Err(ChopinError::ServiceUnavailable {
        message: format!("not ready: {}", names.join(", ")),
        retry_after: Duration::from_secs(5),
        source: Some(reasons.join("; ").into()),
    })
}
