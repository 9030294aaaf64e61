//! Rate-limit settings: the general layer (`CHOPIN_RATE_LIMIT`, `CHOPIN_RATE_LIMIT_IP`,
//! `CHOPIN_RATE_LIMIT_BACKEND`) and the auth module's own limits
//! (`CHOPIN_RATE_LIMIT_LOGIN`, `…_LOGIN_FAILURES`, `…_SIGNUP`, `…_PASSWORD_RESET`,
//! `…_PASSWORD_RESET_IP`, `…_VERIFICATION`, `…_REFRESH`).

use std::str::FromStr;
use std::time::Duration;

use super::auth::SharedStateBackend;
use super::reader::{Reader, parse_duration};

/// A rate: `burst` requests at once, refilled at `burst` per `period`, from
/// `CHOPIN_RATE_LIMIT` (`100/1m`, `10/s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (and at once).
    pub burst: u32,
    /// The period over which `burst` requests are allowed.
    pub period: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || "must be <requests>/<period> such as 100/1m or 10/s".to_string();
        let (n, period) = s.split_once('/').ok_or_else(bad)?;
        let burst = n.trim().parse::<u32>().map_err(|_| bad())?;
        let period = period.trim();
        let period = match period {
            "s" | "sec" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => parse_duration(other).map_err(|_| bad())?,
        };
        if burst == 0 || period.is_zero() {
            return Err("must allow at least one request per non-zero period".into());
        }
        Ok(Rate { burst, period })
    }
}

impl Rate {
    /// `n` times as many requests in the same period (saturating).
    pub fn times(self, n: u32) -> Rate {
        Rate {
            burst: self.burst.saturating_mul(n),
            period: self.period,
        }
    }

    /// The per-address rate that goes with this per-client rate when `CHOPIN_RATE_LIMIT_IP`
    /// is unset: [`IP_RATE_MULTIPLE`] times it.
    pub(crate) fn default_ip_rate(self) -> Rate {
        self.times(IP_RATE_MULTIPLE)
    }
}

/// The per-address rate is this many times the per-client rate unless
/// `CHOPIN_RATE_LIMIT_IP` says otherwise: several users often share one address (NAT, an
/// office, a mobile carrier), so the address gets a larger budget than each of them.
pub const IP_RATE_MULTIPLE: u32 = 4;

/// Rate-limit settings, used by
/// [`RateLimitLayer::from_config`](crate::rate_limit::RateLimitLayer::from_config) and by
/// [`App`](crate::App), which installs the layer when a rate is set. See `docs/security.md`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitConfig {
    /// `CHOPIN_RATE_LIMIT` (unset or `off`: no limit): requests per client — a user with a
    /// valid access token, or an anonymous address.
    pub rate: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_IP` (unset: [`IP_RATE_MULTIPLE`] × `rate`): requests per client
    /// address in all, charged on every request before anything else, authenticated or not.
    /// Needs `CHOPIN_RATE_LIMIT`; it cannot be turned off on its own.
    pub ip_rate: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_BACKEND` (`memory`): `redis` shares the counters between instances.
    pub backend: SharedStateBackend,
    /// The auth module's own limits, on whether or not `CHOPIN_RATE_LIMIT` is set.
    pub auth: AuthRateLimitConfig,
}

/// The auth module's limits (see `docs/auth.md`): on by default, each `off` on its own.
/// They count in Redis when the rate limiter or the revocations are configured for Redis,
/// in process otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRateLimitConfig {
    /// `CHOPIN_RATE_LIMIT_LOGIN` (`10/1m`): `POST /login` attempts per client address.
    pub login: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_LOGIN_FAILURES` (`5/15m`): *failed* logins per (account, client
    /// address). Never per account alone, so nobody can lock a victim out from elsewhere.
    pub login_failures: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_SIGNUP` (`10/1h`): `POST /signup` attempts per client address.
    pub signup: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_PASSWORD_RESET` (`5/1h`): `POST /password-reset` per (account,
    /// client address).
    pub password_reset: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_PASSWORD_RESET_IP` (`20/1h`): `POST /password-reset` per client
    /// address, whatever the account: each request may cost a database lookup and an e-mail,
    /// so one address cannot send them for endless distinct accounts.
    pub password_reset_ip: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_VERIFICATION` (`5/1h`): *failed* redemptions of one-time tokens
    /// (`POST /verify-email`, `POST /password-reset/confirm`) per client address. These
    /// requests name no account, only a token.
    pub verification: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_REFRESH` (`60/1m`): `POST /refresh` per user (the refresh token's
    /// account).
    pub refresh: Option<Rate>,
}

impl Default for AuthRateLimitConfig {
    fn default() -> Self {
        let rate = |burst, secs| {
            Some(Rate {
                burst,
                period: Duration::from_secs(secs),
            })
        };
        AuthRateLimitConfig {
            login: rate(10, 60),
            login_failures: rate(5, 15 * 60),
            signup: rate(10, 3600),
            password_reset: rate(5, 3600),
            password_reset_ip: rate(20, 3600),
            verification: rate(5, 3600),
            refresh: rate(60, 60),
        }
    }
}

impl AuthRateLimitConfig {
    /// Every limit off (for tests and benchmarks that hammer the auth routes).
    pub fn off() -> Self {
        AuthRateLimitConfig {
            login: None,
            login_failures: None,
            signup: None,
            password_reset: None,
            password_reset_ip: None,
            verification: None,
            refresh: None,
        }
    }
}

/// `off` / `none` or a [`Rate`].
fn parse_optional_rate(s: &str) -> Result<Option<Rate>, String> {
    match s.to_ascii_lowercase().as_str() {
        "off" | "none" => Ok(None),
        _ => s.parse::<Rate>().map(Some),
    }
}

impl RateLimitConfig {
    /// Read `CHOPIN_RATE_LIMIT`, `CHOPIN_RATE_LIMIT_IP`, `CHOPIN_RATE_LIMIT_BACKEND` and the
    /// auth module's `CHOPIN_RATE_LIMIT_*`.
    pub(super) fn from_reader(r: &mut Reader<'_>) -> RateLimitConfig {
        let rate = r.get("CHOPIN_RATE_LIMIT", parse_optional_rate).flatten();
        let ip_rate = r.get("CHOPIN_RATE_LIMIT_IP", |s| {
            if rate.is_none() {
                return Err("needs CHOPIN_RATE_LIMIT (the per-client rate) to be set".into());
            }
            s.parse::<Rate>()
                .map_err(|e| format!("{e} (the address limit cannot be turned off on its own)"))
        });
        let defaults = AuthRateLimitConfig::default();
        let mut auth_rate = |name: &'static str, default: Option<Rate>| {
            r.get(name, parse_optional_rate).unwrap_or(default)
        };
        let auth = AuthRateLimitConfig {
            login: auth_rate("CHOPIN_RATE_LIMIT_LOGIN", defaults.login),
            login_failures: auth_rate("CHOPIN_RATE_LIMIT_LOGIN_FAILURES", defaults.login_failures),
            signup: auth_rate("CHOPIN_RATE_LIMIT_SIGNUP", defaults.signup),
            password_reset: auth_rate("CHOPIN_RATE_LIMIT_PASSWORD_RESET", defaults.password_reset),
            password_reset_ip: auth_rate(
                "CHOPIN_RATE_LIMIT_PASSWORD_RESET_IP",
                defaults.password_reset_ip,
            ),
            verification: auth_rate("CHOPIN_RATE_LIMIT_VERIFICATION", defaults.verification),
            refresh: auth_rate("CHOPIN_RATE_LIMIT_REFRESH", defaults.refresh),
        };
        RateLimitConfig {
            rate,
            ip_rate,
            backend: r
                .get("CHOPIN_RATE_LIMIT_BACKEND", |s| {
                    s.parse::<SharedStateBackend>()
                })
                .unwrap_or_default(),
            auth,
        }
    }

    /// The per-address rate in effect: `ip_rate`, or [`IP_RATE_MULTIPLE`] × `rate`.
    pub fn effective_ip_rate(&self) -> Option<Rate> {
        self.ip_rate
            .or_else(|| self.rate.map(Rate::default_ip_rate))
    }
}
