//! Rate-limit settings (`CHOPIN_RATE_LIMIT`, `CHOPIN_RATE_LIMIT_BACKEND`).

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

/// Rate-limit settings, used by
/// [`RateLimitLayer::from_config`](crate::rate_limit::RateLimitLayer::from_config) and by
/// [`App`](crate::App), which installs the layer when a rate is set. See `docs/security.md`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitConfig {
    /// `CHOPIN_RATE_LIMIT` (unset or `off`: no limit): requests per client.
    pub rate: Option<Rate>,
    /// `CHOPIN_RATE_LIMIT_BACKEND` (`memory`): `redis` shares the counters between instances.
    pub backend: SharedStateBackend,
}

impl RateLimitConfig {
    /// Read `CHOPIN_RATE_LIMIT` and `CHOPIN_RATE_LIMIT_BACKEND`.
    pub(super) fn from_reader(r: &mut Reader<'_>) -> RateLimitConfig {
        RateLimitConfig {
            rate: r
                .get("CHOPIN_RATE_LIMIT", |s| {
                    match s.to_ascii_lowercase().as_str() {
                        "off" | "none" => Ok(None),
                        _ => s.parse::<Rate>().map(Some),
                    }
                })
                .flatten(),
            backend: r
                .get("CHOPIN_RATE_LIMIT_BACKEND", |s| {
                    s.parse::<SharedStateBackend>()
                })
                .unwrap_or_default(),
        }
    }
}
