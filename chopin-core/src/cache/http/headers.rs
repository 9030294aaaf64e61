//! The caching headers read and written on both sides: `Vary`, `Cache-Control` directives,
//! whether a request carries credentials.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

/// Append `token` to the response's `Vary` unless it is already listed (or `Vary: *`).
pub(crate) fn add_vary(headers: &mut HeaderMap, token: &HeaderName) {
    let listed = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case(token.as_str()))
        })
    });
    if !listed {
        headers.append(header::VARY, HeaderValue::from_name(token.clone()));
    }
}

/// `true` when any of the comma-separated directives of `Cache-Control` is one of `names`
/// (case-insensitive; arguments such as `private="x"` count as the directive).
pub(crate) fn has_directive(headers: &HeaderMap, names: &[&str]) -> bool {
    headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|d| {
                let name = d.split('=').next().unwrap_or("").trim();
                names.iter().any(|n| name.eq_ignore_ascii_case(n))
            })
        })
    })
}

/// Does the request carry credentials (`Authorization` or `Cookie`)?
pub(crate) fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE)
}

/// The tokens of all `Vary` lines.
pub(crate) fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn vary_and_directives() {
        let mut h = HeaderMap::new();
        add_vary(&mut h, &header::ACCEPT_ENCODING);
        add_vary(&mut h, &header::ACCEPT_ENCODING);
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(header::VARY, hv("Origin, Accept-Encoding"));
        add_vary(&mut h, &header::ACCEPT_ENCODING);
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        h.insert(header::CACHE_CONTROL, hv("public, private=\"x\""));
        assert!(has_directive(&h, &["private"]));
        assert!(!has_directive(&h, &["no-store"]));
    }
}
