//! How the response cache names and tags what it stores: `http:<route>:…` keys, variant keys
//! for the headers an entry varies on, and one tag per leading path segment.

use http::HeaderMap;
use http::header::HeaderName;

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
