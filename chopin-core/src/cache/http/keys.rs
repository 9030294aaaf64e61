//! How the response cache names and tags what it stores: `http:<route>:…` keys (with the
//! normalised host, and the query as received or reduced to an allow-list), variant keys for
//! the headers an entry varies on, and one tag per leading path segment.

use http::header::HeaderName;
use http::{HeaderMap, Uri};

/// Path tags are written for at most this many leading segments.
const MAX_PATH_TAG_DEPTH: usize = 8;

/// Every key of the response cache starts with this.
pub(crate) const KEY_PREFIX: &str = "http:";

/// Tags naming path prefixes start with this.
const PATH_TAG_PREFIX: &str = "http:path:";

/// xxh3-128 of the values of `names` in `headers` (absent and empty are different).
pub(crate) fn vary_hash(headers: &HeaderMap, names: &[HeaderName]) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for name in names {
        hasher.update(name.as_str().as_bytes());
        hasher.update(&[0]);
        for value in headers.get_all(name) {
            hasher.update(&[1]);
            hasher.update(&(value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        }
        hasher.update(&[0xff]);
    }
    hasher.digest128()
}

pub(crate) fn variant_key(base: &str, headers: &HeaderMap, names: &[HeaderName]) -> String {
    let mut key = String::with_capacity(base.len() + 35);
    key.push_str(base);
    key.push_str(" r=");
    push_hex(&mut key, vary_hash(headers, names));
    key
}

pub(crate) fn push_hex(out: &mut String, value: u128) {
    use std::fmt::Write;
    let _ = write!(out, "{value:032x}");
}

/// One tag per leading path segment: `/api/posts/7` → `http:path:/api`, `http:path:/api/posts`,
/// `http:path:/api/posts/7` (at most [`MAX_PATH_TAG_DEPTH`]).
pub(crate) fn path_tags(path: &str) -> Vec<String> {
    let mut tags = Vec::new();
    let mut prefix = String::from(PATH_TAG_PREFIX);
    for segment in path
        .split('/')
        .filter(|s| !s.is_empty())
        .take(MAX_PATH_TAG_DEPTH)
    {
        prefix.push('/');
        prefix.push_str(segment);
        tags.push(prefix.clone());
    }
    tags
}

/// The request's host, lower-case: the URI's authority (HTTP/2's `:authority`, or an
/// absolute-form target), else the `Host` header; `Some("")` when there is neither. `None` when
/// it holds anything but letters, digits and `.-_:[]` — such a host could make one key read
/// like another (`a.com/x` + `/y` against `a.com` + `/x/y`), so the request bypasses the cache.
pub(crate) fn normalized_host(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let raw: &[u8] = match uri.authority() {
        Some(authority) => authority.as_str().as_bytes(),
        None => match headers.get(http::header::HOST) {
            Some(value) => value.as_bytes(),
            None => b"",
        },
    };
    let valid = raw
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    if !valid {
        return None;
    }
    // Every byte is ASCII (checked above).
    Some(String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// The query reduced to the parameters named in `allowed`, decoded and re-encoded (so
/// `%61=1` and `a=1` agree), sorted by name (values of one name keep their order, which
/// handlers may rely on): `b=2&x=9&a=1` with `["a", "b"]` → `a=1&b=2`.
pub(crate) fn allowed_query(query: &str, allowed: &[String]) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| allowed.iter().any(|a| a == name))
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_queries_are_filtered_sorted_and_canonical() {
        let allowed = ["page".to_string(), "q".to_string(), "tag".to_string()];
        assert_eq!(allowed_query("q=x&page=2", &allowed), "page=2&q=x");
        assert_eq!(allowed_query("page=2&q=x", &allowed), "page=2&q=x");
        assert_eq!(allowed_query("utm=1&page=2&_=123", &allowed), "page=2");
        assert_eq!(allowed_query("%70age=%32", &allowed), "page=2");
        assert_eq!(
            allowed_query("q=a+b", &allowed),
            allowed_query("q=a%20b", &allowed)
        );
        assert_eq!(
            allowed_query("tag=b&page=1&tag=a", &allowed),
            "page=1&tag=b&tag=a",
            "repeated names keep their order"
        );
        assert_eq!(allowed_query("", &allowed), "");
        assert_eq!(allowed_query("other=1", &allowed), "");
    }

    #[test]
    fn hosts_are_lower_case_and_checked() {
        let with_host = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::HOST, host.parse().unwrap());
            normalized_host(&Uri::from_static("/a"), &headers)
        };
        assert_eq!(with_host("Example.COM").as_deref(), Some("example.com"));
        assert_eq!(with_host("a.com:8080").as_deref(), Some("a.com:8080"));
        assert_eq!(with_host("[::1]:80").as_deref(), Some("[::1]:80"));
        assert_eq!(with_host("a.com/x"), None);
        assert_eq!(with_host("a.com?x"), None);
        assert_eq!(
            normalized_host(&Uri::from_static("/a"), &HeaderMap::new()).as_deref(),
            Some("")
        );
        let absolute = Uri::from_static("http://API.example.com:8080/a");
        assert_eq!(
            normalized_host(&absolute, &HeaderMap::new()).as_deref(),
            Some("api.example.com:8080")
        );
    }
}
