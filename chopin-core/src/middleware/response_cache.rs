//! [`ResponseCacheLayer`]: whole `GET` responses served from a [`Cache`] (docs on
//! `crate::cache::http`).

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::cache::Cache;
use crate::cache::http::headers::{has_credentials, has_directive, vary_names};
use crate::cache::http::keys::{
    KEY_PREFIX, allowed_query, normalized_host, path_tags, push_hex, variant_key, vary_hash,
};
use crate::cache::http::stored::{
    Entry, STORED_HEADERS, Stored, decode, encode_response, encode_vary,
};
use crate::cache::http::{EntityTag, if_none_match_matches, into_not_modified};
use crate::error::ChopinError;

/// The response header telling whether a response came from the [`ResponseCacheLayer`]:
/// `hit`, `miss` (the handler ran; the response may have been stored), or `bypass` (the
/// request carries credentials and the layer does not cache those). Sent only when the layer's
/// [`x_cache_header`](ResponseCacheLayer::x_cache_header) is on (by default in development:
/// `CHOPIN_CACHE_HEADER`).
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Default time to live of cached responses: 60 s.
pub const DEFAULT_RESPONSE_TTL: Duration = Duration::from_secs(60);

/// Default largest body stored: 1 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1024 * 1024;

/// Default bound on each cache read or write: 500 ms. A slower cache counts as a miss.
pub const DEFAULT_CACHE_TIMEOUT: Duration = Duration::from_millis(500);

/// Default most variants stored per path (see [`ResponseCacheLayer::max_variants`]): 64.
pub const DEFAULT_MAX_VARIANTS: usize = 64;

/// Longest path-and-query that is cached; longer URLs bypass the cache.
const MAX_TARGET_LEN: usize = 2048;

/// Most paths whose variants one layer tracks at a time (the least recently used go first).
const MAX_TRACKED_PATHS: u64 = 10_000;

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
/// `http:<route>:GET[@<user>]:<host><path>[?<query>][ v=<hash>][ r=<hash>]`: the route tag
/// given to [`new`](Self::new); the xxh3-128 of the user key when [`per_user`](Self::per_user)
/// returned one; the request's host, lower-case (the `Host` header or HTTP/2 `:authority`,
/// empty when absent; a host with characters other than letters, digits and `.-_:[]`
/// bypasses the cache), so that applications choosing the tenant by host never share
/// entries between hosts; the full path (even inside a nested router); the query — exactly as
/// received, or, with [`query_params`](Self::query_params), only the listed parameters,
/// decoded, re-encoded and sorted by name; then hashes of the values of the request headers
/// the entry varies on — first those named with [`vary`](Self::vary), then those the
/// response's own `Vary` lists (stored as a small "vary manifest" entry at the shorter key, so
/// a lookup costs one cache read, or two for responses that carry a `Vary` of their own).
/// `Accept-Encoding` in a response's `Vary` is ignored when the stored body is not encoded:
/// compression, outside this layer, encodes each hit for its own client. `Vary: *` is never
/// stored.
///
/// # Variants
///
/// Every distinct query, host or varied header value is a new entry, and clients choose them:
/// at most [`max_variants`](Self::max_variants) (default [`DEFAULT_MAX_VARIANTS`]) distinct
/// entries are stored per path (and user) within one TTL window, per process. Responses for
/// further variants are sent but not stored (`x-cache: miss`), and counted
/// ([`refused_variants`](Self::refused_variants), and the metric
/// `chopin_http_cache_variants_refused_total`). Listing the query parameters that matter with
/// [`query_params`](Self::query_params) stops `?utm_source=…` or `?_=<timestamp>` from using up
/// the budget.
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
///
/// [`ResponseCache`]: crate::cache::http::ResponseCache
/// [`ResponseCache::invalidate_path_prefix`]: crate::cache::http::ResponseCache::invalidate_path_prefix
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
    query_params: Option<Vec<String>>,
    max_variants: usize,
    x_cache_header: bool,
    /// Shared by every clone of the layer: which variants of each path were stored lately.
    variants: Arc<Variants>,
}

/// The variants stored per path (and user) in the current TTL window of each.
struct Variants {
    paths: moka::future::Cache<String, Arc<Window>>,
    refused: AtomicU64,
}

/// One path's variants: the hashes of the keys stored since `window` began.
struct Window {
    ttl: Duration,
    keys: Mutex<HashSet<u128>>,
}

/// A path's window lasts one TTL of the layer from its first stored variant.
struct WindowExpiry;

impl moka::Expiry<String, Arc<Window>> for WindowExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        window: &Arc<Window>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(window.ttl)
    }
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
            .field("query_params", &self.query_params)
            .field("max_variants", &self.max_variants)
            .field("x_cache_header", &self.x_cache_header)
            .finish_non_exhaustive()
    }
}

impl ResponseCacheLayer {
    /// Cache responses in `cache` under the key prefix `http:<route>:`, for
    /// [`DEFAULT_RESPONSE_TTL`], with `x-cache` sent when the cache's configuration says so
    /// ([`Cache::x_cache_header`]).
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
            query_params: None,
            max_variants: DEFAULT_MAX_VARIANTS,
            x_cache_header: cache.x_cache_header(),
            variants: Arc::new(Variants {
                paths: moka::future::Cache::builder()
                    .max_capacity(MAX_TRACKED_PATHS)
                    .expire_after(WindowExpiry)
                    .build(),
                refused: AtomicU64::new(0),
            }),
            cache,
        }
    }

    /// Key entries on these query parameters only: the others are dropped from the key (the
    /// handler still sees them), and the listed ones are decoded, re-encoded and sorted by
    /// name, so `?page=2&q=x`, `?q=x&page=2` and `?q=x&page=2&utm_source=mail` share one
    /// entry. Values of a repeated name keep their order. Without this, the query is part of
    /// the key exactly as received. Calling it again adds to the list.
    ///
    /// **Every parameter the handler reads must be listed**, or responses for different values
    /// share one entry.
    pub fn query_params<I, P>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        let list = self.query_params.get_or_insert_with(Vec::new);
        for name in names {
            let name = name.into();
            if !list.contains(&name) {
                list.push(name);
            }
        }
        self
    }

    /// Most distinct entries stored per path (and user) per TTL window, in this process
    /// (default [`DEFAULT_MAX_VARIANTS`]). Responses for further variants are not stored.
    pub fn max_variants(mut self, max: usize) -> Self {
        self.max_variants = max;
        self
    }

    /// Send the `x-cache: hit | miss | bypass` header (or not), whatever
    /// `CHOPIN_CACHE_HEADER` says.
    pub fn x_cache_header(mut self, send: bool) -> Self {
        self.x_cache_header = send;
        self
    }

    /// How many responses this layer (and its clones) did not store because their path had
    /// [`max_variants`](Self::max_variants) variants stored already.
    pub fn refused_variants(&self) -> u64 {
        self.variants.refused.load(Ordering::Relaxed)
    }

    /// How long a stored response is served (default 60 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Tag every stored response with `tag`, so that [`ResponseCache::invalidate_tag`] (or
    /// [`Cache::delete_tag`]) drops them all. Tags are shared with the rest of the `Cache`: a
    /// tag used for data entries too invalidates both at once.
    ///
    /// [`ResponseCache::invalidate_tag`]: crate::cache::http::ResponseCache::invalidate_tag
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
    /// Look up `base` (the key before the response's own `Vary`); store on a miss. `group`
    /// names the path (and user) whose variants are counted.
    Cache {
        base: String,
        path: String,
        group: String,
    },
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
        let Some(host) = normalized_host(uri, &parts.headers) else {
            return Plan::Bypass;
        };
        let user = self.per_user.as_ref().and_then(|f| f(parts));
        if user.is_none() && has_credentials(&parts.headers) && !self.share_authenticated {
            return Plan::Bypass;
        }
        let path = uri.path();
        let query = match (&self.query_params, uri.query()) {
            (Some(allowed), Some(query)) => Some(allowed_query(query, allowed)),
            (Some(_), None) => None,
            (None, query) => query.map(str::to_string),
        }
        .filter(|q| !(q.is_empty() && self.query_params.is_some()));
        let mut base = String::with_capacity(
            KEY_PREFIX.len() + self.route.len() + host.len() + target.len() + 80,
        );
        base.push_str(KEY_PREFIX);
        base.push_str(&self.route);
        base.push_str(":GET");
        if let Some(user) = user {
            base.push('@');
            push_hex(&mut base, xxhash_rust::xxh3::xxh3_128(user.as_bytes()));
        }
        base.push(':');
        base.push_str(&host);
        base.push_str(path);
        // A host's variants count against that host's budget only: one host (the client
        // chooses it) cannot use up another tenant's.
        let group = base.clone();
        if let Some(query) = query {
            base.push('?');
            base.push_str(&query);
        }
        if !self.vary.is_empty() {
            base.push_str(" v=");
            push_hex(&mut base, vary_hash(&parts.headers, &self.vary));
        }
        Plan::Cache {
            base,
            path: path.to_string(),
            group,
        }
    }

    /// May one more entry, at `key`, be stored for `group` (a host, path and user)? Yes when it is
    /// one of the group's variants stored in this window, or the group has room for another.
    async fn admit(&self, group: &str, key: &str) -> bool {
        let hash = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
        let window = self
            .variants
            .paths
            .get_with_by_ref(group, async {
                Arc::new(Window {
                    ttl: self.ttl.max(Duration::from_millis(1)),
                    keys: Mutex::new(HashSet::new()),
                })
            })
            .await;
        let mut keys = window
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if keys.contains(&hash) {
            return true;
        }
        if keys.len() < self.max_variants {
            keys.insert(hash);
            return true;
        }
        drop(keys);
        self.variants.refused.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::metrics::global().cache.http_variants_refused.inc();
        tracing::debug!(group, "response not cached: its path has too many variants");
        false
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
        group: &str,
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
            if self.admit(group, base).await {
                self.write(base, record, &tags).await;
            }
            return;
        }
        let Some(manifest) = encode_vary(&extra) else {
            return;
        };
        let names: Vec<HeaderName> = extra
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        let key = variant_key(base, request_headers, &names);
        if !self.admit(group, &key).await {
            return;
        }
        self.write(base, manifest, &tags).await;
        self.write(&key, record, &tags).await;
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
    let x_cache = layer.x_cache_header;
    let (base, path, group) = match plan {
        Plan::Bypass => {
            let response = inner.call(req).await?;
            return Ok(with_x_cache(response, x_cache, "bypass"));
        }
        Plan::Cache { base, path, group } => (base, path, group),
    };
    let head = req.method() == Method::HEAD;
    if let Some(stored) = layer.lookup(&base, req.headers()).await {
        #[cfg(feature = "metrics")]
        crate::metrics::global().cache.http_hits.inc();
        return Ok(hit(stored, req.headers(), head, x_cache));
    }
    let request_headers = (!head).then(|| req.headers().clone());
    let response = inner.call(req).await?;
    let Some(request_headers) = request_headers.filter(|_| layer.storable(&response)) else {
        return Ok(with_x_cache(response, x_cache, "miss"));
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
            x_cache,
            "miss",
        ));
    }
    let body = collected.to_bytes();
    if body.len() as u64 <= layer.max_body_size {
        layer
            .store(&base, &path, &group, &request_headers, &parts, &body)
            .await;
    }
    Ok(with_x_cache(
        Response::from_parts(parts, Body::from(body)),
        x_cache,
        "miss",
    ))
}

/// `response` with `x-cache: <value>` when the layer sends the header.
fn with_x_cache(mut response: Response, send: bool, value: &'static str) -> Response {
    if send {
        response
            .headers_mut()
            .insert(X_CACHE.clone(), HeaderValue::from_static(value));
    }
    response
}

/// The response for a request served from `stored` (a hit): a `304` when the request's
/// `If-None-Match` matches the stored `ETag`, no body for a `HEAD`.
fn hit(stored: Stored, request_headers: &HeaderMap, head: bool, x_cache: bool) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = stored.status;
    *response.headers_mut() = stored.headers;
    let response = with_x_cache(response, x_cache, "hit");
    let (mut parts, _) = response.into_parts();
    if stored.status == StatusCode::OK
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
            .insert(header::CONTENT_LENGTH, HeaderValue::from(stored.body.len()));
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(stored.body))
}
