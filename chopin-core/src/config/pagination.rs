//! Page-size limits for the `Pagination` extractor (`CHOPIN_PAGINATION_*`).
//!
//! The settings live here, on the ground floor, and are re-exported at their documented path,
//! `chopin_core::extractors::{PaginationConfig, LimitOverflow}`, next to the extractor.

use crate::error::ChopinError;

use super::reader::{Reader, parse_positive};

/// Page-size limits applied by the [`Pagination`](crate::extractors::Pagination) extractor.
///
/// [`App`](crate::App) installs the values from [`Config`](crate::Config)
/// (`CHOPIN_PAGINATION_DEFAULT_LIMIT`, `CHOPIN_PAGINATION_MAX_LIMIT`,
/// `CHOPIN_PAGINATION_OVERFLOW`) as a request extension; outside an `App` the defaults (20,
/// 100, reject) apply.
///
/// The limits are about the page *size*, whatever the paging style: they make no assumption
/// that pages are found by offset.
///
/// ```
/// use chopin_core::extractors::{LimitOverflow, Pagination, PaginationConfig};
///
/// let config = PaginationConfig {
///     overflow: LimitOverflow::Clamp,
///     ..PaginationConfig::default()
/// };
/// let page = Pagination::from_query("limit=500", config)?;
/// assert_eq!(page.limit, 100);
/// # Ok::<(), chopin_core::ChopinError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaginationConfig {
    /// Page size when the request names none.
    pub default_limit: u64,
    /// Largest page size a client may ask for.
    pub max_limit: u64,
    /// What a page size outside `1..=max_limit` gets: a 400 (the default) or the nearest
    /// allowed size.
    pub overflow: LimitOverflow,
}

impl Default for PaginationConfig {
    fn default() -> Self {
        Self {
            default_limit: 20,
            max_limit: 100,
            overflow: LimitOverflow::Reject,
        }
    }
}

/// What the [`Pagination`](crate::extractors::Pagination) extractor does with a requested
/// page size outside
/// `1..=max_limit` (`CHOPIN_PAGINATION_OVERFLOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LimitOverflow {
    /// `reject` (the default): answer 400 `INVALID_QUERY` naming the allowed range, so a
    /// client never gets fewer items than it asked for without knowing.
    #[default]
    Reject,
    /// `clamp`: serve the nearest allowed size (`limit=500` → the maximum, `limit=0` → 1);
    /// the effective size is what `meta.limit` reports. Malformed values (`abc`, `-1`, a
    /// repeated parameter, both styles at once) are still rejected.
    Clamp,
}

impl LimitOverflow {
    /// The name used in `CHOPIN_PAGINATION_OVERFLOW`: `reject` or `clamp`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitOverflow::Reject => "reject",
            LimitOverflow::Clamp => "clamp",
        }
    }
}

impl std::fmt::Display for LimitOverflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LimitOverflow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "reject" => Ok(LimitOverflow::Reject),
            "clamp" => Ok(LimitOverflow::Clamp),
            _ => Err("must be reject or clamp".into()),
        }
    }
}

impl PaginationConfig {
    /// The page size for a request that asked for `requested` (`None`: it named none) under
    /// these limits: the default, the request's size when in range, and otherwise the
    /// nearest allowed size or a 400 naming `parameter`, as [`overflow`](Self::overflow)
    /// says. Shared by every paging style.
    pub fn page_size(&self, parameter: &str, requested: Option<u64>) -> Result<u64, ChopinError> {
        let size = requested.unwrap_or(self.default_limit);
        let max = self.max_limit.max(1);
        if (1..=max).contains(&size) {
            return Ok(size);
        }
        match self.overflow {
            LimitOverflow::Clamp => Ok(size.clamp(1, max)),
            LimitOverflow::Reject => Err(ChopinError::InvalidQuery(format!(
                "`{parameter}` must be between 1 and {max}"
            ))),
        }
    }
}

impl PaginationConfig {
    /// Read `CHOPIN_PAGINATION_*`.
    pub(super) fn from_reader(r: &mut Reader<'_>) -> PaginationConfig {
        let defaults = PaginationConfig::default();
        let max_limit = r
            .get("CHOPIN_PAGINATION_MAX_LIMIT", parse_positive::<u64>)
            .unwrap_or(defaults.max_limit);
        let default_limit = r
            .get("CHOPIN_PAGINATION_DEFAULT_LIMIT", parse_positive::<u64>)
            .unwrap_or(defaults.default_limit.min(max_limit));
        let overflow = r
            .get("CHOPIN_PAGINATION_OVERFLOW", |s| s.parse::<LimitOverflow>())
            .unwrap_or(defaults.overflow);
        if default_limit > max_limit {
            r.problem(
                "CHOPIN_PAGINATION_DEFAULT_LIMIT",
                &default_limit.to_string(),
                format!("must not exceed CHOPIN_PAGINATION_MAX_LIMIT ({max_limit})"),
            );
        }
        PaginationConfig {
            default_limit,
            max_limit,
            overflow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::from;

    #[test]
    fn pagination_overflow() {
        assert_eq!(
            from(&[]).unwrap().pagination.overflow,
            LimitOverflow::Reject
        );
        let c = from(&[("CHOPIN_PAGINATION_OVERFLOW", "clamp")]).unwrap();
        assert_eq!(c.pagination.overflow, LimitOverflow::Clamp);
        let err = from(&[("CHOPIN_PAGINATION_OVERFLOW", "truncate")]).unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_PAGINATION_OVERFLOW");
    }
}
