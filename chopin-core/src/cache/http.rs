//! HTTP caching: entity tags and conditional `GET` ([`ETagLayer`], [`IfNoneMatch`],
//! [`EntityTag`]), and a shared server-side response cache ([`ResponseCacheLayer`]) stored in a
//! [`Cache`].
//!
//! # ETags and `304 Not Modified`
//!
//! [`ETagLayer`] hashes the body of every successful (`200`) `GET` / `HEAD` response whose
//! body is already in memory (its size is known exactly), sets a strong
//! `ETag: "<32 hex digits>"` (xxh3-128 of the body) and a `Cache-Control` header, and answers
//! a matching `If-None-Match` with `304 Not Modified` and no body. Streaming bodies, other
//! statuses and methods, and responses that already carry an `ETag` pass through untouched.
//!
//! ```
//! use axum::{Router, routing::get};
//! use chopin_core::cache::http::ETagLayer;
//! use http::HeaderValue;
//!
//! let router: Router = Router::new()
//!     .route("/posts", get(|| async { "[]" }))
//!     .layer(ETagLayer::new().cache_control(HeaderValue::from_static("public, max-age=60")));
//! ```
//!
//! A handler that can name its version without rendering the body (an `updated_at`, a row
//! version) can answer the condition itself with the [`IfNoneMatch`] extractor:
//!
//! ```
//! use axum::response::Response;
//! use chopin_core::cache::http::{EntityTag, IfNoneMatch};
//! use chopin_core::prelude::*;
//!
//! async fn show(if_none_match: IfNoneMatch) -> Result<Response, ChopinError> {
//!     let version = 42; // e.g. the row's version column: cheap to read
//!     let etag = EntityTag::strong(format!("post-7-v{version}")).map_err(ChopinError::internal)?;
//!     // The closure (the expensive part) only runs when the client's copy is stale.
//!     Ok(if_none_match.respond(etag, || ApiResponse::success("post 7")))
//! }
//! ```
//!
//! **Ordering with compression.** Install the `ETagLayer` *inside* the compression layer (on
//! your router, before [`App`](crate::App) or [`Layers`](crate::layers::Layers) adds
//! compression outside it): the tag is then computed on the uncompressed body, so every
//! content coding of one body shares one tag and a `304` is cheap. The layer adds
//! `Vary: Accept-Encoding` to the `200` and to the `304` (compression only adds it to
//! responses it compresses, never to a bodiless `304`). Installed *outside* compression the
//! layer sees a compressed stream of unknown length and leaves the response alone — no tag,
//! but nothing wrong either.
//!
//! # The shared response cache
//!
//! [`ResponseCacheLayer`] stores whole `GET` responses (status, the headers that describe the
//! body, and the body) in a [`Cache`] — in process (moka) or shared across instances (Redis)
//! — and serves later requests for the same URL from it, marked `x-cache: hit`. See
//! [`ResponseCacheLayer`] for keys, what is stored and what never is, and [`ResponseCache`] for
//! invalidation from write handlers.
//!
//! ## Stored format
//!
//! Entries are raw bytes in a small binary format (no JSON, no base64), all integers
//! big-endian:
//!
//! * response: `b"CHR1"`, `0x00`, status (`u16`), header count (`u16`), then per header its
//!   name length (`u8`), name, value length (`u16`), value; then the body to the end;
//! * vary manifest: `b"CHR1"`, `0x01`, name count (`u8`), then per name its length (`u8`)
//!   and the lower-case name.
//!
//! An entry that does not decode is treated as a miss (and overwritten on the next store).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use http_body_util::combinators::Collect;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Cache, CacheError};
use crate::error::{BoxError, ChopinError};

// ---------------------------------------------------------------------------------------------
// Entity tags
// ---------------------------------------------------------------------------------------------

/// An HTTP entity tag (RFC 9110 §8.8.3): an opaque validator, strong (`"abc"`) or weak
/// (`W/"abc"`).
///
/// ```
/// use chopin_core::cache::http::EntityTag;
///
/// let tag = EntityTag::from_body(b"hello");
/// assert!(!tag.is_weak());
/// assert_eq!(tag.to_string().len(), 34); // "<32 hex digits>"
///
/// let weak: EntityTag = r#"W/"v1""#.parse().unwrap();
/// assert!(weak.weak_eq(&EntityTag::strong("v1").unwrap()));
/// assert!(!weak.strong_eq(&EntityTag::strong("v1").unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityTag {
    weak: bool,
    opaque: String,
}

/// A string that is not a valid entity tag (or opaque tag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid entity tag: {0:?}")]
pub struct InvalidEntityTag(String);

/// `etagc = %x21 / %x23-7E / obs-text` (RFC 9110 §8.8.3).
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

impl EntityTag {
    /// A strong tag with the opaque value `opaque` (written without the quotes). Fails when
    /// `opaque` contains a `"`, a space or a control character.
    pub fn strong(opaque: impl Into<String>) -> Result<Self, InvalidEntityTag> {
        Self::new(false, opaque.into())
    }

    /// A weak tag (`W/"…"`) with the opaque value `opaque`.
    pub fn weak(opaque: impl Into<String>) -> Result<Self, InvalidEntityTag> {
        Self::new(true, opaque.into())
    }

    fn new(weak: bool, opaque: String) -> Result<Self, InvalidEntityTag> {
        if opaque.bytes().all(is_etagc) {
            Ok(Self { weak, opaque })
        } else {
            Err(InvalidEntityTag(opaque))
        }
    }

    /// The strong tag [`ETagLayer`] gives a body: the xxh3-128 hash of its bytes as 32
    /// lower-case hex digits. Equal bodies always get equal tags, across processes and
    /// versions of Chopin built on the same hash.
    pub fn from_body(body: &[u8]) -> Self {
        let quoted = body_etag(body);
        // 32 hex digits between the quotes: always ASCII.
        let opaque = String::from_utf8_lossy(&quoted[1..quoted.len() - 1]).into_owned();
        Self {
            weak: false,
            opaque,
        }
    }

    /// `true` for a weak tag (`W/"…"`).
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// The opaque value, without quotes or `W/`.
    pub fn opaque(&self) -> &str {
        &self.opaque
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): both strong and the same opaque value.
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): the same opaque value, whatever the weakness. This
    /// is the comparison `If-None-Match` uses.
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }

    /// The tag as an `ETag` header value.
    pub fn to_header_value(&self) -> HeaderValue {
        // Every byte was checked to be `etagc`, which are all valid header-value bytes.
        HeaderValue::from_str(&self.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }
}

impl fmt::Display for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", self.opaque)
    }
}

impl FromStr for EntityTag {
    type Err = InvalidEntityTag;

    /// Parse `"abc"` or `W/"abc"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut tags = Vec::with_capacity(1);
        match parse_tag_list(s.trim().as_bytes(), |weak, opaque| {
            tags.push((weak, opaque.to_vec()))
        }) {
            Ok(ListKind::Tags) if tags.len() == 1 => {
                let (weak, opaque) = tags.remove(0);
                let opaque = String::from_utf8(opaque).map_err(|_| InvalidEntityTag(s.into()))?;
                Ok(Self { weak, opaque })
            }
            _ => Err(InvalidEntityTag(s.into())),
        }
    }
}

impl IntoResponseParts for EntityTag {
    type Error = Infallible;

    /// Sets the `ETag` header.
    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.headers_mut()
            .insert(header::ETAG, self.to_header_value());
        Ok(res)
    }
}

/// The quoted strong tag of `body`: `"` + 32 hex digits + `"`.
fn body_etag(body: &[u8]) -> [u8; 34] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = xxhash_rust::xxh3::xxh3_128(body).to_be_bytes();
    let mut out = [b'"'; 34];
    for (i, byte) in hash.iter().enumerate() {
        out[1 + 2 * i] = HEX[usize::from(byte >> 4)];
        out[2 + 2 * i] = HEX[usize::from(byte & 0x0f)];
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    /// `*`
    Any,
    /// A list of entity tags (possibly empty).
    Tags,
}

/// Parse an `If-None-Match` / `If-Match` field value: `*` or `#entity-tag` (RFC 9110 §13.1.2),
/// calling `each(weak, opaque)` for every tag. Empty list elements are allowed (RFC 9110
/// §5.6.1). `Err` on anything malformed.
fn parse_tag_list(value: &[u8], mut each: impl FnMut(bool, &[u8])) -> Result<ListKind, ()> {
    let trimmed = value.trim_ascii();
    if trimmed == b"*" {
        return Ok(ListKind::Any);
    }
    let mut rest = trimmed;
    loop {
        // Skip separators and optional whitespace between elements.
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return Ok(ListKind::Tags);
        }
        let weak = match rest {
            [b'W', b'/', tail @ ..] => {
                rest = tail;
                true
            }
            _ => false,
        };
        let [b'"', tail @ ..] = rest else {
            return Err(());
        };
        let end = tail.iter().position(|&b| b == b'"').ok_or(())?;
        let opaque = &tail[..end];
        if !opaque.iter().all(|&b| is_etagc(b)) {
            return Err(());
        }
        each(weak, opaque);
        rest = &tail[end + 1..];
        // After a tag: whitespace, then a comma or the end.
        let after = rest.trim_ascii_start();
        if !(after.is_empty() || after[0] == b',') {
            return Err(());
        }
        rest = after;
    }
}

/// Does an `If-None-Match` condition (all its field lines) match the current representation
/// whose tag's opaque value is `opaque`? Weak comparison; `*` matches any current
/// representation. `None` when the header is absent or malformed (a malformed condition is
/// ignored, as if absent).
fn if_none_match_matches<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    opaque: &[u8],
) -> Option<bool> {
    let mut present = false;
    let mut matched = false;
    for value in values {
        present = true;
        let kind = parse_tag_list(value.as_bytes(), |_weak, tag| matched |= tag == opaque).ok()?;
        if kind == ListKind::Any {
            matched = true;
        }
    }
    present.then_some(matched)
}

// ---------------------------------------------------------------------------------------------
// The handler-level helper
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Condition {
    #[default]
    Absent,
    Any,
    Tags(Vec<EntityTag>),
}

/// The request's `If-None-Match` condition, as an extractor: lets a handler answer
/// `304 Not Modified` before doing the expensive part of its work.
///
/// Never rejects: a missing or malformed header is an absent condition (which matches
/// nothing). Use [`IfNoneMatch::respond`] for the whole dance, or [`IfNoneMatch::matches`] and
/// [`not_modified`] to build it yourself. Compare with [`ETagLayer`], which needs no handler
/// code but renders the body to hash it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfNoneMatch(Condition);

impl IfNoneMatch {
    /// The condition carried by `headers` (all `If-None-Match` lines).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut tags = Vec::new();
        let mut any = false;
        let mut present = false;
        for value in headers.get_all(header::IF_NONE_MATCH) {
            present = true;
            let parsed = parse_tag_list(value.as_bytes(), |weak, opaque| {
                // `parse_tag_list` only yields `etagc` bytes; obs-text may not be UTF-8.
                if let Ok(opaque) = std::str::from_utf8(opaque) {
                    tags.push(EntityTag {
                        weak,
                        opaque: opaque.to_string(),
                    });
                }
            });
            match parsed {
                Ok(ListKind::Any) => any = true,
                Ok(ListKind::Tags) => {}
                Err(()) => return Self(Condition::Absent),
            }
        }
        Self(match (present, any) {
            (false, _) => Condition::Absent,
            (true, true) => Condition::Any,
            (true, false) => Condition::Tags(tags),
        })
    }

    /// `true` when the request carried a (well-formed) `If-None-Match`.
    pub fn is_present(&self) -> bool {
        self.0 != Condition::Absent
    }

    /// `true` when the client already holds `etag` (weak comparison, RFC 9110 §13.1.2), or sent
    /// `If-None-Match: *`: answer `304 Not Modified` to a `GET` or `HEAD`.
    pub fn matches(&self, etag: &EntityTag) -> bool {
        match &self.0 {
            Condition::Absent => false,
            Condition::Any => true,
            Condition::Tags(tags) => tags.iter().any(|t| t.weak_eq(etag)),
        }
    }

    /// `304 Not Modified` carrying `etag` when the condition matches it; otherwise the response
    /// `render` builds, with `etag` set as its `ETag`. `render` runs only when needed.
    ///
    /// Add `Cache-Control` (and `Vary`) around the result, e.g.
    /// `([(header::CACHE_CONTROL, "no-cache")], if_none_match.respond(…))`: a tuple's headers go
    /// onto the `304` as well as the `200`.
    pub fn respond<R: IntoResponse>(
        &self,
        etag: EntityTag,
        render: impl FnOnce() -> R,
    ) -> Response {
        if self.matches(&etag) {
            return not_modified(&etag);
        }
        let mut response = render().into_response();
        response
            .headers_mut()
            .insert(header::ETAG, etag.to_header_value());
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

/// A bare `304 Not Modified` carrying `etag`.
pub fn not_modified(etag: &EntityTag) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response
        .headers_mut()
        .insert(header::ETAG, etag.to_header_value());
    response
}

/// Turn a `200`'s head into a `304`'s: same headers minus the ones that describe a body
/// (RFC 9110 §15.4.5 keeps `Cache-Control`, `Content-Location`, `Date`, `ETag`, `Expires` and
/// `Vary`; we also keep anything else that is not representation metadata, such as
/// `x-request-id`).
///
/// The body is empty with an exact size of 0, which keeps compression away from it (a body of
/// unknown size would be gzipped into a 20-byte "empty" stream). axum's router may then add
/// `Content-Length: 0` in process; hyper does not write it for a `304` with an empty body.
fn into_not_modified(mut parts: http::response::Parts) -> Response {
    parts.status = StatusCode::NOT_MODIFIED;
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::CONTENT_LANGUAGE,
        header::CONTENT_RANGE,
        header::TRANSFER_ENCODING,
        header::ACCEPT_RANGES,
    ] {
        parts.headers.remove(name);
    }
    Response::from_parts(parts, Body::empty())
}

/// Append `token` to the response's `Vary` unless it is already listed (or `Vary: *`).
fn add_vary(headers: &mut HeaderMap, token: &HeaderName) {
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
fn has_directive(headers: &HeaderMap, names: &[&str]) -> bool {
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
fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE)
}

// ---------------------------------------------------------------------------------------------
// ETagLayer
// ---------------------------------------------------------------------------------------------

/// Default largest body [`ETagLayer`] hashes: 8 MiB.
pub const DEFAULT_ETAG_MAX_SIZE: u64 = 8 * 1024 * 1024;

/// Layer that tags successful `GET` / `HEAD` responses with a strong `ETag` computed from
/// their body, sets `Cache-Control`, and answers `If-None-Match` with `304 Not Modified`.
///
/// A response is tagged when all of these hold:
///
/// * the request is `GET` or `HEAD` and the status is `200`;
/// * the response has no `ETag` yet (a handler's own validator always wins);
/// * its body size is known exactly (a buffered body — every Chopin responder, `String`,
///   `Vec<u8>`, `Bytes`), at most [`max_size`](Self::max_size) bytes, and agrees with any
///   `Content-Length`. Streaming bodies pass through untouched.
///
/// Then the layer
///
/// * sets `ETag: "<xxh3-128 of the body as 32 hex digits>"`;
/// * sets `Cache-Control`, unless the response already has one: [`cache_control`](Self::cache_control)
///   (default `no-cache`: caches may store the response but must revalidate, which the `ETag`
///   makes a cheap `304`) — or, when the request carries `Authorization` or `Cookie`,
///   [`private_cache_control`](Self::private_cache_control) (default `private, no-cache`), so a
///   shared cache never keeps a response computed for one user;
/// * adds `Vary: Accept-Encoding` (see [`vary_accept_encoding`](Self::vary_accept_encoding));
/// * when `If-None-Match` lists the tag (weak comparison, so `W/"…"` matches too) or is `*`,
///   answers `304 Not Modified` with no body, keeping `ETag`, `Cache-Control`, `Vary` and the
///   other non-body headers and dropping `Content-Length`, `Content-Type` and
///   `Content-Encoding`.
///
/// Install it inside compression (see the [module docs](self)). For `HEAD` it works when
/// installed with `Router::layer` / `MethodRouter::layer`, where axum strips the body only
/// after the layer ran; outside the router a `HEAD` response has no body to hash and is left
/// alone.
#[derive(Debug, Clone)]
pub struct ETagLayer {
    cache_control: Option<HeaderValue>,
    private_cache_control: Option<HeaderValue>,
    vary_accept_encoding: bool,
    max_size: u64,
}

impl Default for ETagLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ETagLayer {
    /// The defaults: `Cache-Control: no-cache` (`private, no-cache` for requests with
    /// credentials), `Vary: Accept-Encoding`, bodies up to 8 MiB.
    pub fn new() -> Self {
        Self {
            cache_control: Some(HeaderValue::from_static("no-cache")),
            private_cache_control: Some(HeaderValue::from_static("private, no-cache")),
            vary_accept_encoding: true,
            max_size: DEFAULT_ETAG_MAX_SIZE,
        }
    }

    /// `Cache-Control` for responses to requests without credentials, e.g.
    /// `public, max-age=60`. Responses that set their own `Cache-Control` keep it.
    pub fn cache_control(mut self, value: HeaderValue) -> Self {
        self.cache_control = Some(value);
        self
    }

    /// `Cache-Control` for responses to requests that carry `Authorization` or `Cookie`
    /// (default `private, no-cache`). Keep it `private` unless every user gets the same bytes.
    pub fn private_cache_control(mut self, value: HeaderValue) -> Self {
        self.private_cache_control = Some(value);
        self
    }

    /// Do not set `Cache-Control` at all (for either kind of request).
    pub fn without_cache_control(mut self) -> Self {
        self.cache_control = None;
        self.private_cache_control = None;
        self
    }

    /// Add `Vary: Accept-Encoding` to tagged responses and their `304`s (default `true`). Keep
    /// it on whenever a compression layer sits outside: a `304` must carry the `Vary` its `200`
    /// would have, and compression does not add it to bodiless responses.
    pub fn vary_accept_encoding(mut self, on: bool) -> Self {
        self.vary_accept_encoding = on;
        self
    }

    /// Largest body, in bytes, that is hashed (default 8 MiB); larger ones pass untagged.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }
}

impl<S> Layer<S> for ETagLayer {
    type Service = ETagService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ETagService {
            inner,
            config: self.clone(),
        }
    }
}

/// Service of [`ETagLayer`].
#[derive(Debug, Clone)]
pub struct ETagService<S> {
    inner: S,
    config: ETagLayer,
}

/// What [`ETagFuture`] needs to know about the request.
#[derive(Debug)]
struct ConditionalRequest {
    if_none_match: Vec<HeaderValue>,
    credentials: bool,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ETagService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ETagFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let request = (req.method() == Method::GET || req.method() == Method::HEAD).then(|| {
            ConditionalRequest {
                if_none_match: req
                    .headers()
                    .get_all(header::IF_NONE_MATCH)
                    .iter()
                    .cloned()
                    .collect(),
                credentials: has_credentials(req.headers()),
            }
        });
        ETagFuture {
            state: ETagState::Inner {
                future: self.inner.call(req),
            },
            request,
            config: self.config.clone(),
        }
    }
}

pin_project! {
    /// Future of [`ETagService`].
    pub struct ETagFuture<F, B>
    where
        B: HttpBody,
    {
        #[pin]
        state: ETagState<F, B>,
        request: Option<ConditionalRequest>,
        config: ETagLayer,
    }
}

pin_project! {
    #[project = ETagStateProj]
    enum ETagState<F, B>
    where
        B: HttpBody,
    {
        Inner { #[pin] future: F },
        Buffering { #[pin] collect: Collect<B>, parts: Option<http::response::Parts> },
    }
}

impl ETagLayer {
    /// Should this response be tagged?
    fn wants<B: HttpBody>(&self, response: &http::Response<B>) -> bool {
        if response.status() != StatusCode::OK || response.headers().contains_key(header::ETAG) {
            return false;
        }
        let Some(size) = response.body().size_hint().exact() else {
            return false;
        };
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
        size <= self.max_size && declared.is_none_or(|d| d == Some(size))
    }

    /// Tag a buffered body; a `304` when the condition matches.
    fn finish(
        &self,
        request: &ConditionalRequest,
        mut parts: http::response::Parts,
        collected: http_body_util::Collected<Bytes>,
    ) -> Response {
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes();
        let tag = body_etag(&body);
        // `"` and hex digits: always a valid header value.
        if let Ok(value) = HeaderValue::from_bytes(&tag) {
            parts.headers.insert(header::ETAG, value);
        }
        if !parts.headers.contains_key(header::CACHE_CONTROL) {
            let value = if request.credentials {
                &self.private_cache_control
            } else {
                &self.cache_control
            };
            if let Some(value) = value {
                parts.headers.insert(header::CACHE_CONTROL, value.clone());
            }
        }
        if self.vary_accept_encoding {
            add_vary(&mut parts.headers, &header::ACCEPT_ENCODING);
        }
        if if_none_match_matches(&request.if_none_match, &tag[1..33]) == Some(true) {
            return into_not_modified(parts);
        }
        let body = match trailers {
            None => Body::from(body),
            Some(trailers) => {
                let trailers = std::future::ready(Some(Ok::<_, Infallible>(trailers)));
                Body::new(http_body_util::Full::new(body).with_trailers(trailers))
            }
        };
        Response::from_parts(parts, body)
    }
}

impl<F, B, E> Future for ETagFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ETagStateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    if this.request.is_none() || !this.config.wants(&response) {
                        return Poll::Ready(Ok(response.map(Body::new)));
                    }
                    let (parts, body) = response.into_parts();
                    this.state.set(ETagState::Buffering {
                        collect: body.collect(),
                        parts: Some(parts),
                    });
                }
                ETagStateProj::Buffering { collect, parts } => {
                    let collected = ready!(collect.poll(cx));
                    let (Some(parts), Some(request)) = (parts.take(), this.request.as_ref()) else {
                        return Poll::Ready(Ok(ChopinError::internal(
                            "ETagFuture polled after completion",
                        )
                        .into_response()));
                    };
                    let response = match collected {
                        Ok(collected) => this.config.finish(request, parts, collected),
                        Err(e) => ChopinError::internal(format!(
                            "reading the response body failed: {}",
                            e.into()
                        ))
                        .into_response(),
                    };
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shared response cache
// ---------------------------------------------------------------------------------------------

/// The response header telling whether a response came from the [`ResponseCacheLayer`]:
/// `hit`, `miss` (the handler ran; the response may have been stored), or `bypass` (the
/// request carries credentials and the layer does not cache those).
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Default time to live of cached responses: 60 s.
pub const DEFAULT_RESPONSE_TTL: Duration = Duration::from_secs(60);

/// Default largest body stored: 1 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1024 * 1024;

/// Default bound on each cache read or write: 500 ms. A slower cache counts as a miss.
pub const DEFAULT_CACHE_TIMEOUT: Duration = Duration::from_millis(500);

/// Longest path-and-query that is cached; longer URLs bypass the cache.
const MAX_TARGET_LEN: usize = 2048;

/// Path tags are written for at most this many leading segments.
const MAX_PATH_TAG_DEPTH: usize = 8;

/// Every key of the response cache starts with this.
const KEY_PREFIX: &str = "http:";

/// Tags naming path prefixes start with this.
const PATH_TAG_PREFIX: &str = "http:path:";

const MAGIC: &[u8; 4] = b"CHR1";
const KIND_RESPONSE: u8 = 0;
const KIND_VARY: u8 = 1;

/// Headers of the inner response that are stored (besides those added with
/// [`ResponseCacheLayer::store_header`]).
const STORED_HEADERS: [HeaderName; 9] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LOCATION,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::VARY,
];

type UserKeyFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// Layer that serves `GET` (and `HEAD`) requests from responses stored in a [`Cache`].
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use chopin_core::cache::{Cache, CacheConfig};
/// use chopin_core::cache::http::{ETagLayer, ResponseCacheLayer};
///
/// # fn build(config: &CacheConfig) -> Router {
/// let cache = Cache::memory(config);
/// Router::new()
///     .route("/api/posts", get(|| async { "[]" }))
///     // inner: the response cache; outer: ETags (compression, from `App`, is outside both)
///     .layer(ResponseCacheLayer::new(cache, "posts").ttl(Duration::from_secs(30)).tag("posts"))
///     .layer(ETagLayer::new())
/// # }
/// ```
///
/// # Keys
///
/// `http:<route>:GET[@<user>]:<path>?<query>[ v=<hash>][ r=<hash>]`: the route tag given to
/// [`new`](Self::new), the request target exactly as received (no reordering of query
/// parameters; the full path even inside a nested router), the xxh3-128 of the user key when
/// [`per_user`](Self::per_user) returned one, and hashes of the values of the request headers
/// the entry varies on — first those named with [`vary`](Self::vary), then those the
/// response's own `Vary` lists (stored as a small "vary manifest" entry at the shorter key, so
/// a lookup costs one cache read, or two for responses that carry a `Vary` of their own).
/// `Accept-Encoding` in a response's `Vary` is ignored when the stored body is not encoded:
/// compression, outside this layer, encodes each hit for its own client. `Vary: *` is never
/// stored.
///
/// # What is stored
///
/// Status, body, and the headers `Content-Type`, `Content-Encoding`, `Content-Language`,
/// `Content-Location`, `ETag`, `Last-Modified`, `Cache-Control`, `Expires`, `Vary` (plus any
/// named with [`store_header`](Self::store_header)), with the TTL set by
/// [`ttl`](Self::ttl), the layer's [`tag`](Self::tag)s and one tag per leading path segment
/// (for [`ResponseCache::invalidate_path_prefix`]). A response is stored only when
///
/// * the request is a `GET` (a `HEAD` is served from a stored `GET`, but never stored);
/// * its status is `200` (or one added with [`cache_status`](Self::cache_status));
/// * it has no `Set-Cookie`, no `Cache-Control: no-store` or `private` and no `Vary: *`
///   (`no-cache` is addressed to clients and does not stop this server-side cache);
/// * its body's size hint proves it at most [`max_body_size`](Self::max_body_size) bytes
///   (default 1 MiB). Only such bodies are buffered; others stream through untouched.
///
/// # Credentials
///
/// Requests that carry `Authorization` or `Cookie` are never served from, nor stored into,
/// the shared cache (`x-cache: bypass`) unless the layer opts in with
/// [`per_user`](Self::per_user) (entries keyed by a user key) or
/// [`share_authenticated`](Self::share_authenticated) (one entry for everyone).
///
/// # Failures
///
/// The cache is an optimisation: a read that fails or takes longer than
/// [`timeout`](Self::timeout) is a miss, a write that fails is skipped, and the handler's
/// response is sent either way — never a 5xx because of the cache. Writes happen before the
/// miss's response is returned (bounded by the timeout), so the next request can hit.
///
/// The `If-None-Match` of a request served from the cache is answered with a `304` when the
/// stored response has a matching `ETag`.
#[derive(Clone)]
pub struct ResponseCacheLayer {
    cache: Cache,
    route: String,
    ttl: Duration,
    tags: Vec<String>,
    vary: Vec<HeaderName>,
    max_body_size: u64,
    per_user: Option<UserKeyFn>,
    share_authenticated: bool,
    statuses: Vec<StatusCode>,
    timeout: Duration,
    store_headers: Vec<HeaderName>,
}

impl fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("route", &self.route)
            .field("ttl", &self.ttl)
            .field("tags", &self.tags)
            .field("vary", &self.vary)
            .field("max_body_size", &self.max_body_size)
            .field("per_user", &self.per_user.is_some())
            .field("share_authenticated", &self.share_authenticated)
            .field("statuses", &self.statuses)
            .field("timeout", &self.timeout)
            .field("store_headers", &self.store_headers)
            .finish_non_exhaustive()
    }
}

impl ResponseCacheLayer {
    /// Cache responses in `cache` under the key prefix `http:<route>:`, for
    /// [`DEFAULT_RESPONSE_TTL`].
    ///
    /// # Panics
    ///
    /// When `route` is empty or contains `:`, whitespace or control characters (it is part of
    /// every key, and `:` would make one route's prefix match another's). Routes are fixed
    /// strings chosen at start-up, like axum's paths.
    pub fn new(cache: Cache, route: impl Into<String>) -> Self {
        let route = route.into();
        assert!(
            !route.is_empty()
                && route
                    .chars()
                    .all(|c| c != ':' && !c.is_whitespace() && !c.is_control()),
            "ResponseCacheLayer route tag {route:?} must be non-empty, without ':' or whitespace"
        );
        Self {
            cache,
            route,
            ttl: DEFAULT_RESPONSE_TTL,
            tags: Vec::new(),
            vary: Vec::new(),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            per_user: None,
            share_authenticated: false,
            statuses: vec![StatusCode::OK],
            timeout: DEFAULT_CACHE_TIMEOUT,
            store_headers: Vec::new(),
        }
    }

    /// How long a stored response is served (default 60 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Tag every stored response with `tag`, so that [`ResponseCache::invalidate_tag`] (or
    /// [`Cache::delete_tag`]) drops them all. Tags are shared with the rest of the `Cache`: a
    /// tag used for data entries too invalidates both at once.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Key entries on the value of this request header as well (in addition to what the
    /// responses' own `Vary` lists), e.g. `Accept-Language`.
    pub fn vary(mut self, name: HeaderName) -> Self {
        if !self.vary.contains(&name) {
            self.vary.push(name);
        }
        self
    }

    /// Largest body stored, in bytes (default 1 MiB).
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Also store responses with this status (e.g. `404`, `301`). Error envelopes carry the
    /// `request_id` of the request that produced them, which a hit then repeats.
    pub fn cache_status(mut self, status: StatusCode) -> Self {
        if !self.statuses.contains(&status) {
            self.statuses.push(status);
        }
        self
    }

    /// Bound on each cache read and write (default 500 ms); a slower cache is a miss.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Store this response header as well (the defaults are listed on the type).
    pub fn store_header(mut self, name: HeaderName) -> Self {
        if !self.store_headers.contains(&name) && !STORED_HEADERS.contains(&name) {
            self.store_headers.push(name);
        }
        self
    }

    /// Cache responses per user: `user_key` maps the request (headers, extensions) to a key
    /// that identifies whose response it is, or `None` to not use a user key. Requests with a
    /// user key are served from and stored into entries of that user only; requests with
    /// credentials but no user key bypass the cache; requests without credentials and without a
    /// user key share the anonymous entries.
    ///
    /// **The key must come from a verified credential.** The cached response is served
    /// *before* the handler (and its auth extractors) run, so a `user_key` that trusts an
    /// unverified token — say, the `sub` of a JWT whose signature it did not check — lets
    /// anyone read another user's cached responses. Verify the token (signature, expiry) here
    /// or in a middleware outside this layer that puts the verified identity in the request
    /// extensions, and read it from there. A revoked credential keeps hitting until the entry
    /// expires.
    pub fn per_user<F>(mut self, user_key: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.per_user = Some(Arc::new(user_key));
        self
    }

    /// Serve and store requests that carry `Authorization` or `Cookie` like anonymous ones:
    /// one shared entry for everybody.
    ///
    /// **Dangerous.** Only for routes whose response is, by construction, the same for every
    /// caller — public data behind an optional login, a site where every browser sends an
    /// analytics cookie. If the handler ever tailors the response to the caller, the first
    /// caller's response is served to everyone, and the credential check in the handler is
    /// skipped on hits: an unauthenticated request gets what an authenticated one stored.
    pub fn share_authenticated(mut self, share: bool) -> Self {
        self.share_authenticated = share;
        self
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCacheService {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// Service of [`ResponseCacheLayer`].
#[derive(Clone)]
pub struct ResponseCacheService<S> {
    inner: S,
    layer: Arc<ResponseCacheLayer>,
}

impl<S: fmt::Debug> fmt::Debug for ResponseCacheService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCacheService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// Future of [`ResponseCacheService`]: the inner future for methods other than `GET` and
/// `HEAD`, a boxed future (it awaits the cache) for those.
pub type ResponseCacheFuture<F, E> =
    futures_util::future::Either<F, Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>>;

impl<S, B> Service<http::Request<B>> for ResponseCacheService<S>
where
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseCacheFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return futures_util::future::Either::Left(self.inner.call(req));
        }
        let (parts, body) = req.into_parts();
        let plan = self.layer.plan(&parts);
        let req = http::Request::from_parts(parts, body);
        // Call the instance that was driven to readiness; keep a fresh clone for next time.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = Arc::clone(&self.layer);
        futures_util::future::Either::Right(Box::pin(serve(layer, inner, req, plan)))
    }
}

/// What to do with one `GET` / `HEAD`.
enum Plan {
    /// Go to the handler, neither reading nor writing the cache.
    Bypass,
    /// Look up `base` (the key before the response's own `Vary`); store on a miss.
    Cache { base: String, path: String },
}

impl ResponseCacheLayer {
    fn plan(&self, parts: &http::request::Parts) -> Plan {
        let uri = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(&parts.uri, |original| &original.0);
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        if target.len() > MAX_TARGET_LEN {
            return Plan::Bypass;
        }
        let user = self.per_user.as_ref().and_then(|f| f(parts));
        if user.is_none() && has_credentials(&parts.headers) && !self.share_authenticated {
            return Plan::Bypass;
        }
        let mut base =
            String::with_capacity(KEY_PREFIX.len() + self.route.len() + target.len() + 80);
        base.push_str(KEY_PREFIX);
        base.push_str(&self.route);
        base.push_str(":GET");
        if let Some(user) = user {
            base.push('@');
            push_hex(&mut base, xxhash_rust::xxh3::xxh3_128(user.as_bytes()));
        }
        base.push(':');
        base.push_str(target);
        if !self.vary.is_empty() {
            base.push_str(" v=");
            push_hex(&mut base, vary_hash(&parts.headers, &self.vary));
        }
        Plan::Cache {
            base,
            path: uri.path().to_string(),
        }
    }

    async fn read(&self, key: &str) -> Option<Bytes> {
        tokio::time::timeout(self.timeout, self.cache.get_bytes(key))
            .await
            .ok()
            .flatten()
    }

    async fn write(&self, key: &str, value: Bytes, tags: &[&str]) {
        let write = async {
            if tags.is_empty() {
                self.cache.set_bytes(key, value, self.ttl).await;
            } else {
                self.cache
                    .set_bytes_tagged(key, value, self.ttl, tags)
                    .await;
            }
        };
        if tokio::time::timeout(self.timeout, write).await.is_err() {
            tracing::debug!(key, "response cache write timed out");
        }
    }

    /// The stored response for this request, if any.
    async fn lookup(&self, base: &str, headers: &HeaderMap) -> Option<Stored> {
        let raw = self.read(base).await?;
        match decode(raw)? {
            Entry::Response(stored) => Some(stored),
            Entry::Vary(names) => {
                let raw = self.read(&variant_key(base, headers, &names)).await?;
                match decode(raw)? {
                    Entry::Response(stored) => Some(stored),
                    Entry::Vary(_) => None,
                }
            }
        }
    }

    /// May this response be stored (before looking at its body)?
    fn storable(&self, response: &Response) -> bool {
        let headers = response.headers();
        self.statuses.contains(&response.status())
            && !headers.contains_key(header::SET_COOKIE)
            && !has_directive(headers, &["no-store", "private"])
            && !vary_names(headers).any(|name| name == "*")
            && response
                .body()
                .size_hint()
                .upper()
                .is_some_and(|upper| upper <= self.max_body_size)
    }

    /// Store a response that [`storable`](Self::storable) accepted and whose body was read.
    async fn store(
        &self,
        base: &str,
        path: &str,
        request_headers: &HeaderMap,
        parts: &http::response::Parts,
        body: &Bytes,
    ) {
        let encoded = parts.headers.contains_key(header::CONTENT_ENCODING);
        let mut extra: Vec<String> = Vec::new();
        for name in vary_names(&parts.headers) {
            let name = name.to_ascii_lowercase();
            let skip = (name == header::ACCEPT_ENCODING.as_str() && !encoded)
                || self.vary.iter().any(|v| v.as_str() == name)
                || extra.contains(&name);
            if !skip {
                extra.push(name);
            }
        }
        let Some(record) = encode_response(parts, body, &self.store_headers) else {
            return;
        };
        let path_tags = path_tags(path);
        let tags: Vec<&str> = self
            .tags
            .iter()
            .chain(path_tags.iter())
            .map(String::as_str)
            .collect();
        if extra.is_empty() {
            self.write(base, record, &tags).await;
            return;
        }
        let Some(manifest) = encode_vary(&extra) else {
            return;
        };
        let names: Vec<HeaderName> = extra
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        self.write(base, manifest, &tags).await;
        self.write(&variant_key(base, request_headers, &names), record, &tags)
            .await;
    }
}

async fn serve<S, B>(
    layer: Arc<ResponseCacheLayer>,
    mut inner: S,
    req: http::Request<B>,
    plan: Plan,
) -> Result<Response, S::Error>
where
    S: Service<http::Request<B>, Response = Response>,
{
    let (base, path) = match plan {
        Plan::Bypass => {
            let mut response = inner.call(req).await?;
            response
                .headers_mut()
                .insert(X_CACHE.clone(), HeaderValue::from_static("bypass"));
            return Ok(response);
        }
        Plan::Cache { base, path } => (base, path),
    };
    let head = req.method() == Method::HEAD;
    if let Some(stored) = layer.lookup(&base, req.headers()).await {
        return Ok(stored.into_response(req.headers(), head));
    }
    let request_headers = (!head).then(|| req.headers().clone());
    let response = inner.call(req).await?;
    let Some(request_headers) = request_headers.filter(|_| layer.storable(&response)) else {
        return Ok(with_x_cache(response, "miss"));
    };
    let (parts, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(e) => {
            return Ok(
                ChopinError::internal(format!("reading the response body failed: {e}"))
                    .into_response(),
            );
        }
    };
    if collected.trailers().is_some() {
        return Ok(with_x_cache(
            Response::from_parts(parts, Body::new(collected)),
            "miss",
        ));
    }
    let body = collected.to_bytes();
    if body.len() as u64 <= layer.max_body_size {
        layer
            .store(&base, &path, &request_headers, &parts, &body)
            .await;
    }
    Ok(with_x_cache(
        Response::from_parts(parts, Body::from(body)),
        "miss",
    ))
}

fn with_x_cache(mut response: Response, value: &'static str) -> Response {
    response
        .headers_mut()
        .insert(X_CACHE.clone(), HeaderValue::from_static(value));
    response
}

/// The tokens of all `Vary` lines.
fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// xxh3-128 of the values of `names` in `headers` (absent and empty are different).
fn vary_hash(headers: &HeaderMap, names: &[HeaderName]) -> u128 {
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

fn variant_key(base: &str, headers: &HeaderMap, names: &[HeaderName]) -> String {
    let mut key = String::with_capacity(base.len() + 35);
    key.push_str(base);
    key.push_str(" r=");
    push_hex(&mut key, vary_hash(headers, names));
    key
}

fn push_hex(out: &mut String, value: u128) {
    use std::fmt::Write;
    let _ = write!(out, "{value:032x}");
}

/// One tag per leading path segment: `/api/posts/7` → `http:path:/api`, `http:path:/api/posts`,
/// `http:path:/api/posts/7` (at most [`MAX_PATH_TAG_DEPTH`]).
fn path_tags(path: &str) -> Vec<String> {
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

/// A response read back from the cache.
#[derive(Debug)]
struct Stored {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

enum Entry {
    Response(Stored),
    Vary(Vec<HeaderName>),
}

impl Stored {
    fn into_response(self, request_headers: &HeaderMap, head: bool) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
            .headers_mut()
            .insert(X_CACHE.clone(), HeaderValue::from_static("hit"));
        let (mut parts, _) = response.into_parts();
        if self.status == StatusCode::OK
            && let Some(opaque) = parts
                .headers
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<EntityTag>().ok())
            && if_none_match_matches(
                request_headers.get_all(header::IF_NONE_MATCH),
                opaque.opaque().as_bytes(),
            ) == Some(true)
        {
            return into_not_modified(parts);
        }
        if head {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
            return Response::from_parts(parts, Body::empty());
        }
        Response::from_parts(parts, Body::from(self.body))
    }
}

fn encode_response(
    parts: &http::response::Parts,
    body: &Bytes,
    extra_headers: &[HeaderName],
) -> Option<Bytes> {
    let kept: Vec<(&HeaderName, &HeaderValue)> = parts
        .headers
        .iter()
        .filter(|(name, _)| STORED_HEADERS.contains(name) || extra_headers.contains(name))
        .collect();
    let mut out = Vec::with_capacity(
        body.len()
            + 9
            + kept
                .iter()
                .map(|(n, v)| 3 + n.as_str().len() + v.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.push(KIND_RESPONSE);
    out.extend_from_slice(&parts.status.as_u16().to_be_bytes());
    out.extend_from_slice(&u16::try_from(kept.len()).ok()?.to_be_bytes());
    for (name, value) in kept {
        out.push(u8::try_from(name.as_str().len()).ok()?);
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(&u16::try_from(value.len()).ok()?.to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(body);
    Some(Bytes::from(out))
}

fn encode_vary(names: &[String]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(6 + names.iter().map(|n| n.len() + 1).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.push(KIND_VARY);
    out.push(u8::try_from(names.len()).ok()?);
    for name in names {
        out.push(u8::try_from(name.len()).ok()?);
        out.extend_from_slice(name.as_bytes());
    }
    Some(Bytes::from(out))
}

/// Decode an entry; `None` for anything malformed.
fn decode(raw: Bytes) -> Option<Entry> {
    struct Reader {
        raw: Bytes,
        pos: usize,
    }
    impl Reader {
        fn take(&mut self, n: usize) -> Option<Bytes> {
            let end = self.pos.checked_add(n).filter(|&e| e <= self.raw.len())?;
            let out = self.raw.slice(self.pos..end);
            self.pos = end;
            Some(out)
        }
        fn u8(&mut self) -> Option<u8> {
            self.take(1).map(|b| b[0])
        }
        fn u16(&mut self) -> Option<u16> {
            self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
        }
    }
    let mut r = Reader { raw, pos: 0 };
    if r.take(4)?.as_ref() != MAGIC {
        return None;
    }
    match r.u8()? {
        KIND_RESPONSE => {
            let status = StatusCode::from_u16(r.u16()?).ok()?;
            let count = r.u16()?;
            let mut headers = HeaderMap::with_capacity(usize::from(count) + 2);
            for _ in 0..count {
                let len = usize::from(r.u8()?);
                let name = HeaderName::from_bytes(&r.take(len)?).ok()?;
                let len = usize::from(r.u16()?);
                let value = HeaderValue::from_maybe_shared(r.take(len)?).ok()?;
                headers.append(name, value);
            }
            let body = r.raw.slice(r.pos..);
            Some(Entry::Response(Stored {
                status,
                headers,
                body,
            }))
        }
        KIND_VARY => {
            let count = r.u8()?;
            let mut names = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let len = usize::from(r.u8()?);
                names.push(HeaderName::from_bytes(&r.take(len)?).ok()?);
            }
            (r.pos == r.raw.len()).then_some(Entry::Vary(names))
        }
        _ => None,
    }
}

/// Explicit invalidation of the responses stored by [`ResponseCacheLayer`], for write
/// handlers.
///
/// ```
/// use chopin_core::cache::Cache;
/// use chopin_core::cache::http::ResponseCache;
/// use chopin_core::prelude::*;
///
/// async fn create_post(cache: Cache) -> Result<ApiResponse<&'static str>, ChopinError> {
///     // … insert the post …
///     // A failed invalidation is worth knowing about: stale lists would be served until the
///     // TTL runs out.
///     if let Err(e) = ResponseCache::invalidate_path_prefix(&cache, "/api/posts").await {
///         tracing::warn!(error = %e, "could not invalidate cached post lists");
///     }
///     Ok(ApiResponse::created("ok"))
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ResponseCache;

impl ResponseCache {
    /// Drop every stored response whose path is `prefix` or lies below it, whatever its query,
    /// user or route tag: `"/api/posts"` drops `/api/posts`, `/api/posts?page=2` and
    /// `/api/posts/7`, not `/api/postscript`. Matching is by whole path segments (trailing
    /// `/` ignored); below 8 segments deep, the first 8 decide. `"/"` (or `""`) drops every
    /// stored response.
    pub async fn invalidate_path_prefix(cache: &Cache, prefix: &str) -> Result<(), CacheError> {
        match path_tags(prefix).pop() {
            Some(tag) => cache.delete_tag(&tag).await,
            None => cache.delete_prefix(KEY_PREFIX).await,
        }
    }

    /// Drop every stored response tagged `tag` with [`ResponseCacheLayer::tag`] (the same as
    /// [`Cache::delete_tag`]).
    pub async fn invalidate_tag(cache: &Cache, tag: &str) -> Result<(), CacheError> {
        cache.delete_tag(tag).await
    }

    /// Drop every response stored by layers created with this `route` tag.
    pub async fn invalidate_route(cache: &Cache, route: &str) -> Result<(), CacheError> {
        cache.delete_prefix(&format!("{KEY_PREFIX}{route}:")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn matches(values: &[&str], opaque: &str) -> Option<bool> {
        let values: Vec<HeaderValue> = values.iter().map(|v| hv(v)).collect();
        if_none_match_matches(&values, opaque.as_bytes())
    }

    #[test]
    fn if_none_match_lists_star_and_weak() {
        assert_eq!(matches(&[], "a"), None);
        assert_eq!(matches(&[r#""a""#], "a"), Some(true));
        assert_eq!(matches(&[r#""b""#], "a"), Some(false));
        assert_eq!(matches(&[r#""b", "a""#], "a"), Some(true));
        assert_eq!(matches(&[r#""b" ,W/"a""#], "a"), Some(true));
        assert_eq!(matches(&[r#"W/"a""#], "a"), Some(true));
        assert_eq!(matches(&["*"], "a"), Some(true));
        assert_eq!(matches(&[r#""b""#, r#""a""#], "a"), Some(true));
        assert_eq!(matches(&[r#", "a",,"#], "a"), Some(true));
        // Commas are legal inside an opaque tag.
        assert_eq!(matches(&[r#""x,a""#], "a"), Some(false));
        assert_eq!(matches(&[r#""x,a""#], "x,a"), Some(true));
        // Malformed: ignored as a whole.
        for bad in [
            r#"a"#,
            r#""a"#,
            r#""a" "b""#,
            r#"w/"a""#,
            r#""a"x"#,
            "* , \"a\"",
        ] {
            assert_eq!(matches(&[bad], "a"), None, "{bad}");
        }
    }

    #[test]
    fn entity_tags_parse_and_print() {
        let strong: EntityTag = "\"abc\"".parse().unwrap();
        assert_eq!(strong, EntityTag::strong("abc").unwrap());
        assert_eq!(strong.to_string(), "\"abc\"");
        let weak: EntityTag = " W/\"abc\" ".parse().unwrap();
        assert!(weak.is_weak());
        assert_eq!(weak.to_string(), "W/\"abc\"");
        assert!(weak.weak_eq(&strong) && !weak.strong_eq(&strong));
        assert!("abc".parse::<EntityTag>().is_err());
        assert!("\"a\", \"b\"".parse::<EntityTag>().is_err());
        assert!("*".parse::<EntityTag>().is_err());
        assert!(EntityTag::strong("has\"quote").is_err());
        assert!(EntityTag::strong("has space").is_err());
        let body = EntityTag::from_body(b"hello");
        assert_eq!(body.opaque().len(), 32);
        assert_eq!(body, EntityTag::from_body(b"hello"));
        assert_ne!(body, EntityTag::from_body(b"hello!"));
        assert_eq!(
            body.to_header_value().as_bytes(),
            body_etag(b"hello").as_slice()
        );
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
