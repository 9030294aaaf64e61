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
use crate::error::{ChopinError, retry_after_secs};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10).
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// One policy as a structured-field item: `<name>;q=<burst>;w=<period in seconds>`.
fn policy_item(limiter: &Limiter) -> String {
    let rate = limiter.rate();
    format!(
        "{};q={};w={}",
        limiter.policy(),
        rate.burst,
        retry_after_secs(rate.period)
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
///
/// Every 429 of a rate limit is made here, and counted (feature `metrics`) in
/// `chopin_rate_limit_rejections_total` by the refusing policy's [`metric_key`].
pub(crate) fn limited(refused_by: &Limiter, policies: &HeaderValue, wait: Duration) -> Response {
    #[cfg(feature = "metrics")]
    crate::metrics::global()
        .auth
        .rate_limited(metric_key(refused_by.policy()));
    let mut response = ChopinError::RateLimited { retry_after: wait }.into_response();
    let headers = response.headers_mut();
    if !policies.is_empty() {
        headers.insert(RATELIMIT_POLICY.clone(), policies.clone());
    }
    let state = format!("{};r=0;t={}", refused_by.policy(), retry_after_secs(wait));
    if let Ok(value) = HeaderValue::try_from(state) {
        headers.insert(RATELIMIT.clone(), value);
    }
    response
}

/// The `key` label of a policy's 429s: `ip` (the layer's per-address policy), `user` (its
/// per-client policy: a signed-in user, or an anonymous client's address), and the auth
/// routes' `login`, `login_failures`, `signup`, `password_reset` (per address and per
/// account), `verification` and `refresh`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn metric_key(policy: &'static str) -> &'static str {
    match policy {
        "client" => "user",
        "login-failures" => "login_failures",
        "password-reset" | "password-reset-ip" => "password_reset",
        // `ip`, `login`, `signup`, `verification`, `refresh`: the same word.
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;
    use crate::middleware::rate_limit::Backend;

    #[test]
    fn every_policy_has_a_metric_key() {
        for (policy, key) in [
            ("ip", "ip"),
            ("client", "user"),
            ("login", "login"),
            ("login-failures", "login_failures"),
            ("signup", "signup"),
            ("password-reset", "password_reset"),
            ("password-reset-ip", "password_reset"),
            ("verification", "verification"),
            ("refresh", "refresh"),
        ] {
            assert_eq!(metric_key(policy), key);
        }
    }

    #[test]
    fn ratelimit_t_is_retry_after_for_every_wait() {
        let rate = Rate {
            burst: 1,
            period: Duration::from_millis(1500),
        };
        let limiter = Limiter::new("client", rate, &Backend::Memory, false);
        let policies = policy_value([&limiter]);
        // A sub-second period is announced as a whole second, never `w=0`.
        assert_eq!(policies, "client;q=1;w=2");
        let waits = [
            (Duration::ZERO, 1),
            (Duration::from_nanos(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(17), 17),
        ];
        for (wait, secs) in waits {
            let response = limited(&limiter, &policies, wait);
            let headers = response.headers();
            assert_eq!(headers["retry-after"], secs.to_string(), "{wait:?}");
            assert_eq!(
                headers["ratelimit"],
                format!("client;r=0;t={secs}"),
                "{wait:?}"
            );
        }
    }
}
