//! The 429 answer: the error envelope with `Retry-After`, and the `RateLimit-Policy` /
//! `RateLimit` header fields of draft-ietf-httpapi-ratelimit-headers-10 (structured fields,
//! RFC 8941): `RateLimit-Policy: ip;q=400;w=60, client;q=100;w=60` lists the policies that
//! apply to the request (`q`: quota, the burst; `w`: window in seconds, the period), and
//! `RateLimit: client;r=0;t=17` names the policy that refused it, with nothing remaining and
//! the seconds until a request is let through again (the same point in time as
//! `Retry-After`, as the draft asks).

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue};

use super::store::Limiter;
use crate::error::ChopinError;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10).
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whole seconds, rounded up, at least 1 (as `Retry-After`).
fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// One policy as a structured-field item: `<name>;q=<burst>;w=<period in seconds>`.
fn policy_item(limiter: &Limiter) -> String {
    let rate = limiter.rate();
    format!(
        "{};q={};w={}",
        limiter.policy(),
        rate.burst,
        ceil_secs(rate.period)
    )
}

/// The `RateLimit-Policy` value for these policies (a structured-field List).
pub(crate) fn policy_value<'a>(limiters: impl IntoIterator<Item = &'a Limiter>) -> HeaderValue {
    let items: Vec<String> = limiters.into_iter().map(policy_item).collect();
    // Policy names are fixed tokens and the parameters integers: always a valid value.
    HeaderValue::try_from(items.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// 429 `RATE_LIMITED` with `Retry-After`, `RateLimit-Policy: <policies>` and
/// `RateLimit: <refusing policy>;r=0;t=<seconds>`.
pub(crate) fn limited(refused_by: &Limiter, policies: &HeaderValue, wait: Duration) -> Response {
    let mut response = ChopinError::RateLimited { retry_after: wait }.into_response();
    let headers = response.headers_mut();
    if !policies.is_empty() {
        headers.insert(RATELIMIT_POLICY.clone(), policies.clone());
    }
    let state = format!("{};r=0;t={}", refused_by.policy(), ceil_secs(wait));
    if let Ok(value) = HeaderValue::try_from(state) {
        headers.insert(RATELIMIT.clone(), value);
    }
    response
}
