//! HTTP caching as a client sees it: `ETagLayer` (strong ETags, `If-None-Match` → `304`,
//! composition with compression), the `IfNoneMatch` handler helper, and `ResponseCacheLayer`
//! (hits and misses, keys, TTL, invalidation, credentials, what is never stored, `HEAD`, a
//! failing cache). Everything runs in process through `App` and `TestClient` on a memory
//! `Cache`, except one test that checks the `304` on the wire through a real socket.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::RawQuery;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use chopin_core::cache::Cache;
use chopin_core::cache::CacheConfig;
use chopin_core::cache::http::{
    ETagLayer, EntityTag, IfNoneMatch, ResponseCache, ResponseCacheLayer,
};
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestResponse};
use http::header::{self, HeaderName};
use http::{HeaderValue, Method, Request, StatusCode};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers.

fn config(vars: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("CHOPIN_ENV".into())
        .or_insert_with(|| "test".into());
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

/// The full default stack (request id, compression, …) around `router`.
fn client(router: Router) -> TestClient {
    TestClient::new(App::new(config(&[])).router(router).into_router())
}

fn memory_cache() -> Cache {
    Cache::memory(&CacheConfig::default())
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

async fn get_with(c: &TestClient, uri: &str, headers: &[(&str, &str)]) -> TestResponse {
    c.request(request(Method::GET, uri, headers)).await
}

fn etag_of(res: &TestResponse) -> String {
    res.header("etag")
        .unwrap_or_else(|| panic!("no ETag on {} {:?}", res.status, res.headers))
        .to_string()
}

fn vary_tokens(res: &TestResponse) -> Vec<String> {
    res.headers
        .get_all(header::VARY)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

fn is_strong_body_tag(tag: &str) -> bool {
    tag.len() == 34
        && tag.starts_with('"')
        && tag.ends_with('"')
        && tag[1..33]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A `304` as the ETag layer must send it: no body, no content headers, validators kept.
fn assert_not_modified(res: &TestResponse, etag: &str, cache_control: &str) {
    assert_eq!(res.status, StatusCode::NOT_MODIFIED, "{}", res.text());
    assert!(res.body.is_empty(), "a 304 has no body: {:?}", res.body);
    assert_eq!(res.header("etag"), Some(etag));
    assert_eq!(res.header("cache-control"), Some(cache_control));
    assert!(
        vary_tokens(res).contains(&"accept-encoding".to_string()),
        "{:?}",
        res.headers
    );
    assert_eq!(res.header("content-type"), None);
    // axum's router adds `Content-Length: 0` to empty bodies in process; hyper leaves it off
    // a 304 on the wire (see `the_304_has_no_content_length_on_the_wire`).
    assert!(
        matches!(res.header("content-length"), None | Some("0")),
        "{:?}",
        res.headers
    );
    assert_eq!(res.header("content-encoding"), None);
    assert!(
        res.header("x-request-id").is_some(),
        "outer layers still run"
    );
}

/// Counts handler calls.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A GET route whose handler counts its calls and answers with `body(query)`.
fn counted<F, R>(calls: &Calls, body: F) -> axum::routing::MethodRouter
where
    F: Fn(Option<String>, http::HeaderMap) -> R + Clone + Send + Sync + 'static,
    R: IntoResponse,
{
    let calls = calls.clone();
    get(move |RawQuery(q): RawQuery, headers: http::HeaderMap| {
        let calls = calls.clone();
        let body = body.clone();
        async move {
            calls.hit();
            body(q, headers).into_response()
        }
    })
}

fn ok_json(q: Option<String>, _: http::HeaderMap) -> ApiResponse<Value> {
    ApiResponse::success(json!({ "query": q }))
}

/// About 60 kB of repetitive JSON (compressible).
fn big_document() -> Value {
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"id": i, "title": format!("post number {i}"), "published": i % 2 == 0}))
        .collect();
    json!({ "items": items })
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

// ---------------------------------------------------------------------------------------------
// ETagLayer.

fn etag_routes() -> Router {
    Router::new()
        .route("/a", get(|| async { ApiResponse::success("a") }))
        .route("/b", get(|| async { ApiResponse::success("b") }))
        .route(
            "/echo",
            get(|RawQuery(q): RawQuery| async move { q.unwrap_or_default() }),
        )
        .route(
            "/big",
            get(|| async { ApiResponse::success(big_document()) }),
        )
        .route(
            "/write",
            post(|| async { ApiResponse::success("written") }).get(|| async { "read" }),
        )
        .route(
            "/stream",
            get(|| async {
                let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                    Ok(Bytes::from_static(b"chunk 1,")),
                    Ok(Bytes::from_static(b"chunk 2")),
                ];
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/own-etag",
            get(|| async { ([(header::ETAG, "\"v1\"")], "mine") }),
        )
        .route(
            "/own-cache-control",
            get(|| async { ([(header::CACHE_CONTROL, "max-age=5")], "mine") }),
        )
        .route(
            "/missing",
            get(|| async { ChopinError::NotFound("nope".into()) }),
        )
}

fn etag_client(layer: ETagLayer) -> TestClient {
    client(etag_routes().layer(layer))
}

#[tokio::test]
async fn etag_is_set_stable_and_follows_the_body() {
    let c = etag_client(ETagLayer::new());
    let first = c.get("/a").await;
    assert_eq!(first.status, StatusCode::OK);
    let tag = etag_of(&first);
    assert!(is_strong_body_tag(&tag), "{tag}");
    assert_eq!(tag, EntityTag::from_body(&first.body).to_string());
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    assert_eq!(vary_tokens(&first), ["accept-encoding"]);
    assert_eq!(first.value()["data"], "a", "the body is intact");

    assert_eq!(etag_of(&c.get("/a").await), tag, "same body, same tag");
    assert_ne!(
        etag_of(&c.get("/b").await),
        tag,
        "different body, different tag"
    );
    let x1 = etag_of(&c.get("/echo?x=1").await);
    assert_eq!(etag_of(&c.get("/echo?x=1").await), x1);
    assert_ne!(etag_of(&c.get("/echo?x=2").await), x1);
}

#[tokio::test]
async fn matching_if_none_match_is_answered_with_304() {
    let c = etag_client(ETagLayer::new());
    let tag = etag_of(&c.get("/a").await);
    let opaque = &tag[1..33];

    let exact = get_with(&c, "/a", &[("if-none-match", &tag)]).await;
    assert_not_modified(&exact, &tag, "no-cache");

    let listed = format!("\"nope\", {tag} , \"other\"");
    let weak = format!("W/\"{opaque}\"");
    let weak_in_list = format!("\"x\",W/\"{opaque}\"");
    for condition in [listed.as_str(), "*", weak.as_str(), weak_in_list.as_str()] {
        let res = get_with(&c, "/a", &[("if-none-match", condition)]).await;
        assert_not_modified(&res, &tag, "no-cache");
    }
    // Two field lines are one list.
    let two_lines = c
        .request(
            Request::builder()
                .uri("/a")
                .header("if-none-match", "\"nope\"")
                .header("if-none-match", tag.as_str())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_not_modified(&two_lines, &tag, "no-cache");
}

#[tokio::test]
async fn mismatching_or_malformed_if_none_match_gets_the_full_response() {
    let c = etag_client(ETagLayer::new());
    let tag = etag_of(&c.get("/a").await);
    let unquoted = tag.trim_matches('"').to_string();
    let lower_w = format!("w/{tag}");
    for condition in [
        "\"0123\"",
        "W/\"0123\"",
        unquoted.as_str(),
        lower_w.as_str(),
        "\"unterminated",
    ] {
        let res = get_with(&c, "/a", &[("if-none-match", condition)]).await;
        assert_eq!(res.status, StatusCode::OK, "{condition}");
        assert_eq!(res.value()["data"], "a", "{condition}");
        assert_eq!(etag_of(&res), tag);
    }
    // The tag of another body does not match.
    let other = etag_of(&c.get("/b").await);
    let res = get_with(&c, "/a", &[("if-none-match", &other)]).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn head_gets_the_get_tag_and_304() {
    let c = etag_client(ETagLayer::new());
    let tag = etag_of(&c.get("/a").await);
    let head = c.request(request(Method::HEAD, "/a", &[])).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(etag_of(&head), tag, "HEAD and GET share the tag");
    let head = c
        .request(request(Method::HEAD, "/a", &[("if-none-match", &tag)]))
        .await;
    assert_not_modified(&head, &tag, "no-cache");
}

#[tokio::test]
async fn other_methods_statuses_streams_and_own_etags_are_untouched() {
    let c = etag_client(ETagLayer::new());
    let post = c
        .request(request(Method::POST, "/write", &[("if-none-match", "*")]))
        .await;
    assert_eq!(post.status, StatusCode::OK);
    assert_eq!(post.value()["data"], "written");
    assert_eq!(post.header("etag"), None, "POST is not tagged");
    assert_eq!(post.header("cache-control"), None);

    let stream = get_with(&c, "/stream", &[("if-none-match", "*")]).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.text(), "chunk 1,chunk 2");
    assert_eq!(
        stream.header("etag"),
        None,
        "streaming bodies are not buffered"
    );
    assert_eq!(stream.header("cache-control"), None);

    let own = get_with(&c, "/own-etag", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.header("etag"), Some("\"v1\""), "the handler's tag wins");
    assert_eq!(own.header("cache-control"), None, "untouched");
    assert_eq!(own.text(), "mine");

    let missing = get_with(&c, "/missing", &[("if-none-match", "*")]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("etag"), None);

    // A handler's own Cache-Control is kept; the tag is still added.
    let cc = c.get("/own-cache-control").await;
    assert_eq!(cc.header("cache-control"), Some("max-age=5"));
    assert!(is_strong_body_tag(&etag_of(&cc)));
}

#[tokio::test]
async fn cache_control_is_configurable_and_private_with_credentials() {
    let c =
        etag_client(ETagLayer::new().cache_control(HeaderValue::from_static("public, max-age=60")));
    let anonymous = c.get("/a").await;
    assert_eq!(
        anonymous.header("cache-control"),
        Some("public, max-age=60")
    );
    let tag = etag_of(&anonymous);
    for credential in [("authorization", "Bearer t"), ("cookie", "session=1")] {
        let res = get_with(&c, "/a", &[credential]).await;
        assert_eq!(
            res.header("cache-control"),
            Some("private, no-cache"),
            "{credential:?}"
        );
        assert_eq!(etag_of(&res), tag);
        let res = get_with(&c, "/a", &[credential, ("if-none-match", &tag)]).await;
        assert_not_modified(&res, &tag, "private, no-cache");
    }

    let c = etag_client(
        ETagLayer::new()
            .private_cache_control(HeaderValue::from_static("private, max-age=10"))
            .vary_accept_encoding(false),
    );
    let res = get_with(&c, "/a", &[("cookie", "a=b")]).await;
    assert_eq!(res.header("cache-control"), Some("private, max-age=10"));
    assert_eq!(res.header("vary"), None);

    let c = etag_client(ETagLayer::new().without_cache_control().max_size(4));
    let res = c.get("/a").await;
    assert_eq!(res.header("cache-control"), None);
    assert_eq!(
        res.header("etag"),
        None,
        "bodies over max_size are not hashed"
    );
}

#[tokio::test]
async fn etags_compose_with_gzip_compression() {
    let c = etag_client(ETagLayer::new());
    let plain = c.get("/big").await;
    let tag = etag_of(&plain);
    assert_eq!(plain.header("content-encoding"), None);

    let gz = get_with(&c, "/big", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.status, StatusCode::OK);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(gz.body.len() < plain.body.len() / 4, "really compressed");
    let unzipped = gunzip(&gz.body);
    assert_eq!(unzipped, plain.body);
    assert_eq!(etag_of(&gz), tag, "the tag names the uncompressed content");
    assert_eq!(tag, EntityTag::from_body(&unzipped).to_string());
    assert_eq!(vary_tokens(&gz), ["accept-encoding"], "listed once");

    let not_modified = get_with(
        &c,
        "/big",
        &[("accept-encoding", "gzip"), ("if-none-match", &tag)],
    )
    .await;
    assert_not_modified(&not_modified, &tag, "no-cache");
}

#[tokio::test]
async fn etag_layer_outside_compression_leaves_compressed_bodies_alone() {
    let router = etag_routes()
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(ETagLayer::new());
    let c = TestClient::new(router);
    let gz = get_with(&c, "/big", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(
        gz.header("etag"),
        None,
        "compressed streams have no exact size"
    );
    let plain = c.get("/big").await;
    assert!(
        plain.header("etag").is_some(),
        "uncompressed responses are still tagged"
    );
}

#[tokio::test]
async fn the_304_has_no_content_length_on_the_wire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = App::new(config(&[])).router(etag_routes().layer(ETagLayer::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_with(listener, async {
        let _ = stopped.await;
    }));
    let tag = EntityTag::from_body(br#"{"success":true,"data":"a"}"#).to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET /a HTTP/1.1\r\nhost: x\r\nif-none-match: {tag}\r\nconnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let _ = stop.send(());
    let _ = server.await;
    let lower = raw.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 304"), "{raw}");
    assert!(lower.contains(&format!("etag: {tag}")), "{raw}");
    // Header lines, not substrings: `x-content-type-options` (security headers) is expected.
    assert!(!lower.contains("\r\ncontent-length:"), "{raw}");
    assert!(!lower.contains("\r\ncontent-type:"), "{raw}");
    assert!(!lower.contains("\r\ntransfer-encoding:"), "{raw}");
    assert!(lower.ends_with("\r\n\r\n"), "no body: {raw}");
}

#[tokio::test]
async fn if_none_match_extractor_answers_before_rendering() {
    let renders = Calls::default();
    let r = renders.clone();
    let router = Router::new().route(
        "/post",
        get(move |inm: IfNoneMatch| {
            let r = r.clone();
            async move {
                let etag = EntityTag::strong("post-7-v3").unwrap();
                inm.respond(etag, || {
                    r.hit();
                    ApiResponse::success("post 7")
                })
            }
        }),
    );
    let c = client(router);
    let res = c.get("/post").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("etag"), Some("\"post-7-v3\""));
    assert_eq!(renders.get(), 1);
    for condition in [
        "\"post-7-v3\"",
        "W/\"post-7-v3\"",
        "\"a\", \"post-7-v3\"",
        "*",
    ] {
        let res = get_with(&c, "/post", &[("if-none-match", condition)]).await;
        assert_eq!(res.status, StatusCode::NOT_MODIFIED, "{condition}");
        assert!(res.body.is_empty());
        assert_eq!(res.header("etag"), Some("\"post-7-v3\""));
    }
    assert_eq!(renders.get(), 1, "no rendering for a 304");
    let res = get_with(&c, "/post", &[("if-none-match", "\"post-7-v2\"")]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(renders.get(), 2);
}

// ---------------------------------------------------------------------------------------------
// ResponseCacheLayer.

/// `/api/posts`, `/api/posts/{id}`, `/api/other` and `/api/postscript` behind one response cache
/// layer built by `layer`, each counting its calls in `calls`.
fn cached_client(calls: &Calls, layer: ResponseCacheLayer) -> TestClient {
    let router = Router::new()
        .route("/api/posts", counted(calls, ok_json))
        .route("/api/posts/{id}", counted(calls, ok_json))
        .route("/api/other", counted(calls, ok_json))
        .route("/api/postscript", counted(calls, ok_json))
        .layer(layer);
    client(router)
}

fn x_cache(res: &TestResponse) -> &str {
    res.header("x-cache").unwrap_or("<none>")
}

#[tokio::test]
async fn second_get_is_a_hit() {
    let calls = Calls::default();
    let c = cached_client(&calls, ResponseCacheLayer::new(memory_cache(), "posts"));
    let miss = c.get("/api/posts").await;
    assert_eq!(miss.status, StatusCode::OK);
    assert_eq!(x_cache(&miss), "miss");
    assert_eq!(calls.get(), 1);
    let hit = c.get("/api/posts").await;
    assert_eq!(hit.status, StatusCode::OK);
    assert_eq!(x_cache(&hit), "hit");
    assert_eq!(calls.get(), 1, "the handler did not run");
    assert_eq!(hit.body, miss.body);
    assert_eq!(hit.header("content-type"), Some("application/json"));
    assert_eq!(
        hit.header("content-length"),
        Some(miss.body.len().to_string().as_str())
    );
    assert_ne!(
        hit.header("x-request-id"),
        miss.header("x-request-id"),
        "per-request headers are not replayed"
    );
}

#[tokio::test]
async fn only_listed_headers_are_replayed() {
    let calls = Calls::default();
    let handler = |_: Option<String>, _: http::HeaderMap| {
        (
            [
                (header::LINK, "</next>; rel=next"),
                (header::LAST_MODIFIED, "Tue, 01 Jul 2025 10:00:00 GMT"),
                (HeaderName::from_static("x-debug"), "handler"),
            ],
            "body",
        )
    };
    let router = Router::new()
        .route("/plain", counted(&calls, handler))
        .layer(ResponseCacheLayer::new(memory_cache(), "h").store_header(header::LINK));
    let c = client(router);
    let _ = c.get("/plain").await;
    let hit = c.get("/plain").await;
    assert_eq!(x_cache(&hit), "hit");
    assert_eq!(
        hit.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        hit.header("last-modified"),
        Some("Tue, 01 Jul 2025 10:00:00 GMT")
    );
    assert_eq!(
        hit.header("link"),
        Some("</next>; rel=next"),
        "added with store_header"
    );
    assert_eq!(hit.header("x-debug"), None, "not a stored header");
    assert_eq!(hit.text(), "body");
}

#[tokio::test]
async fn the_query_is_part_of_the_key_verbatim() {
    let calls = Calls::default();
    let c = cached_client(&calls, ResponseCacheLayer::new(memory_cache(), "posts"));
    assert_eq!(x_cache(&c.get("/api/posts?page=1").await), "miss");
    assert_eq!(x_cache(&c.get("/api/posts?page=2").await), "miss");
    assert_eq!(x_cache(&c.get("/api/posts?a=1&b=2").await), "miss");
    assert_eq!(x_cache(&c.get("/api/posts?b=2&a=1").await), "miss");
    assert_eq!(calls.get(), 4);
    let hit = c.get("/api/posts?page=2").await;
    assert_eq!(x_cache(&hit), "hit");
    assert_eq!(hit.value()["data"]["query"], "page=2");
    assert_eq!(x_cache(&c.get("/api/posts?b=2&a=1").await), "hit");
    assert_eq!(calls.get(), 4);
}

#[tokio::test]
async fn an_allow_list_keeps_listed_parameters_in_canonical_order() {
    let calls = Calls::default();
    let layer = ResponseCacheLayer::new(memory_cache(), "posts").query_params(["page", "q"]);
    let c = cached_client(&calls, layer);
    let miss = c.get("/api/posts?page=2&q=rust").await;
    assert_eq!(x_cache(&miss), "miss");
    for same in [
        "/api/posts?q=rust&page=2",
        "/api/posts?page=2&q=rust&utm_source=mail",
        "/api/posts?_=1733500000&q=rust&page=2",
        "/api/posts?%70age=2&q=rust",
    ] {
        assert_eq!(x_cache(&c.get(same).await), "hit", "{same}");
    }
    assert_eq!(calls.get(), 1, "one entry for every spelling");
    assert_eq!(x_cache(&c.get("/api/posts?page=3&q=rust").await), "miss");
    // No listed parameter left: the bare path's entry.
    assert_eq!(x_cache(&c.get("/api/posts?utm_source=x").await), "miss");
    assert_eq!(x_cache(&c.get("/api/posts").await), "hit");
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn variants_per_path_are_capped_and_counted() {
    let calls = Calls::default();
    let layer = ResponseCacheLayer::new(memory_cache(), "posts");
    let handle = layer.clone();
    let c = cached_client(&calls, layer);
    for i in 0..70 {
        assert_eq!(x_cache(&c.get(&format!("/api/posts?v={i}")).await), "miss");
    }
    assert_eq!(handle.refused_variants(), 6, "64 stored, 6 refused");
    // The first 64 are served from the cache; the others never are.
    assert_eq!(x_cache(&c.get("/api/posts?v=0").await), "hit");
    assert_eq!(x_cache(&c.get("/api/posts?v=63").await), "hit");
    assert_eq!(x_cache(&c.get("/api/posts?v=64").await), "miss");
    assert_eq!(x_cache(&c.get("/api/posts?v=69").await), "miss");
    assert_eq!(handle.refused_variants(), 8);
    // Another path has a budget of its own.
    assert_eq!(x_cache(&c.get("/api/posts/7?v=99").await), "miss");
    assert_eq!(x_cache(&c.get("/api/posts/7?v=99").await), "hit");
    // So has another host: variants sent under one host do not use up another's budget.
    let other = [("host", "tenant-b.example.com")];
    assert_eq!(
        x_cache(&get_with(&c, "/api/posts?v=99", &other).await),
        "miss"
    );
    assert_eq!(
        x_cache(&get_with(&c, "/api/posts?v=99", &other).await),
        "hit"
    );
    // A smaller budget, and a new window once the TTL has passed.
    let calls = Calls::default();
    let layer = ResponseCacheLayer::new(memory_cache(), "posts")
        .max_variants(2)
        .ttl(Duration::from_millis(300));
    let c = cached_client(&calls, layer);
    for q in ["a", "b", "c"] {
        let _ = c.get(&format!("/api/posts?{q}")).await;
    }
    assert_eq!(x_cache(&c.get("/api/posts?c").await), "miss");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(x_cache(&c.get("/api/posts?c").await), "miss");
    assert_eq!(
        x_cache(&c.get("/api/posts?c").await),
        "hit",
        "stored in the new window"
    );
}

#[tokio::test]
async fn hosts_do_not_share_entries() {
    let calls = Calls::default();
    let cache = memory_cache();
    let c = cached_client(&calls, ResponseCacheLayer::new(cache.clone(), "posts"));
    let a = [("host", "tenant-a.example.com")];
    let b = [("host", "tenant-b.example.com")];
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &a).await), "miss");
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &a).await), "hit");
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &b).await), "miss");
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &b).await), "hit");
    // Host names are case-insensitive.
    let upper = [("host", "TENANT-A.example.com")];
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &upper).await), "hit");
    assert_eq!(calls.get(), 2);
    // A host that could make one key read like another bypasses the cache.
    let odd = [("host", "tenant-a.example.com/api")];
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &odd).await), "bypass");
    // Invalidation by path reaches every host.
    ResponseCache::invalidate_path_prefix(&cache, "/api/posts")
        .await
        .unwrap();
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &a).await), "miss");
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &b).await), "miss");
}

#[tokio::test]
async fn x_cache_is_opt_in_outside_development() {
    let calls = Calls::default();
    for (vars, expected) in [
        (vec![("CHOPIN_ENV", "production")], None),
        (vec![("CHOPIN_ENV", "test")], None),
        (vec![("CHOPIN_ENV", "development")], Some("miss")),
        (
            vec![
                ("CHOPIN_ENV", "production"),
                ("CHOPIN_CACHE_HEADER", "true"),
            ],
            Some("miss"),
        ),
    ] {
        let cache = Cache::memory(&config(&vars).cache);
        let c = cached_client(&calls, ResponseCacheLayer::new(cache, "posts"));
        let first = c.get("/api/posts").await;
        assert_eq!(first.header("x-cache"), expected, "{vars:?}");
        let second = c.get("/api/posts").await;
        assert_eq!(
            second.header("x-cache"),
            expected.map(|_| "hit"),
            "{vars:?}"
        );
        let bypass = get_with(&c, "/api/posts", &[("authorization", "Bearer x")]).await;
        assert_eq!(
            bypass.header("x-cache"),
            expected.map(|_| "bypass"),
            "{vars:?}"
        );
    }
    // The layer's own choice wins over the configuration, both ways.
    let production = Cache::memory(&config(&[("CHOPIN_ENV", "production")]).cache);
    let c = cached_client(
        &calls,
        ResponseCacheLayer::new(production, "posts").x_cache_header(true),
    );
    assert_eq!(c.get("/api/posts").await.header("x-cache"), Some("miss"));
    let development = Cache::memory(&config(&[("CHOPIN_ENV", "development")]).cache);
    let c = cached_client(
        &calls,
        ResponseCacheLayer::new(development, "posts").x_cache_header(false),
    );
    let _ = c.get("/api/posts").await;
    let hit = c.get("/api/posts").await;
    assert_eq!(hit.header("x-cache"), None);
}

#[tokio::test]
async fn layer_vary_headers_are_part_of_the_key() {
    let calls = Calls::default();
    let layer = ResponseCacheLayer::new(memory_cache(), "posts")
        .vary(HeaderName::from_static("accept-language"));
    let c = cached_client(&calls, layer);
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &en).await), "miss");
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &en).await), "hit");
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &fr).await), "miss");
    assert_eq!(
        x_cache(&c.get("/api/posts").await),
        "miss",
        "absent is a value too"
    );
    assert_eq!(x_cache(&get_with(&c, "/api/posts", &fr).await), "hit");
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn response_vary_headers_are_part_of_the_key() {
    let calls = Calls::default();
    let router = Router::new()
        .route(
            "/tenant",
            counted(&calls, |_, headers: http::HeaderMap| {
                let tenant = headers
                    .get("x-tenant")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string();
                (
                    [(header::VARY, "X-Tenant, Accept-Encoding")],
                    ApiResponse::success(tenant),
                )
            }),
        )
        .layer(ResponseCacheLayer::new(memory_cache(), "tenants"));
    let c = client(router);
    let a = [("x-tenant", "a")];
    let b = [("x-tenant", "b")];
    let first = get_with(&c, "/tenant", &a).await;
    assert_eq!(
        (x_cache(&first), first.value()["data"].clone()),
        ("miss", json!("a"))
    );
    let again = get_with(&c, "/tenant", &a).await;
    assert_eq!(
        (x_cache(&again), again.value()["data"].clone()),
        ("hit", json!("a"))
    );
    let other = get_with(&c, "/tenant", &b).await;
    assert_eq!(
        (x_cache(&other), other.value()["data"].clone()),
        ("miss", json!("b"))
    );
    let other = get_with(&c, "/tenant", &b).await;
    assert_eq!(
        (x_cache(&other), other.value()["data"].clone()),
        ("hit", json!("b"))
    );
    // Both variants live side by side.
    let again = get_with(&c, "/tenant", &a).await;
    assert_eq!(
        (x_cache(&again), again.value()["data"].clone()),
        ("hit", json!("a"))
    );
    assert!(
        vary_tokens(&again).contains(&"x-tenant".to_string()),
        "Vary is replayed"
    );
    // Accept-Encoding does not split identity bodies: compression encodes each hit.
    let gz = get_with(
        &c,
        "/tenant",
        &[("x-tenant", "a"), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(x_cache(&gz), "hit");
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let calls = Calls::default();
    let layer = ResponseCacheLayer::new(memory_cache(), "posts").ttl(Duration::from_millis(300));
    let c = cached_client(&calls, layer);
    assert_eq!(x_cache(&c.get("/api/posts").await), "miss");
    assert_eq!(x_cache(&c.get("/api/posts").await), "hit");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(x_cache(&c.get("/api/posts").await), "miss", "expired");
    assert_eq!(calls.get(), 2);
    assert_eq!(x_cache(&c.get("/api/posts").await), "hit", "stored again");
}

#[tokio::test]
async fn invalidation_by_path_prefix() {
    let calls = Calls::default();
    let cache = memory_cache();
    let c = cached_client(&calls, ResponseCacheLayer::new(cache.clone(), "posts"));
    let paths = [
        "/api/posts",
        "/api/posts?page=2",
        "/api/posts/7",
        "/api/other",
        "/api/postscript",
    ];
    for path in paths {
        assert_eq!(x_cache(&c.get(path).await), "miss", "{path}");
        assert_eq!(x_cache(&c.get(path).await), "hit", "{path}");
    }
    ResponseCache::invalidate_path_prefix(&cache, "/api/posts/")
        .await
        .unwrap();
    for (path, after) in [
        ("/api/posts", "miss"),
        ("/api/posts?page=2", "miss"),
        ("/api/posts/7", "miss"),
        ("/api/other", "hit"),
        ("/api/postscript", "hit"),
    ] {
        assert_eq!(x_cache(&c.get(path).await), after, "{path}");
    }
    ResponseCache::invalidate_path_prefix(&cache, "/api/posts/7")
        .await
        .unwrap();
    assert_eq!(x_cache(&c.get("/api/posts/7").await), "miss");
    assert_eq!(
        x_cache(&c.get("/api/posts").await),
        "hit",
        "a deeper prefix spares its parent"
    );
    ResponseCache::invalidate_path_prefix(&cache, "/")
        .await
        .unwrap();
    for path in paths {
        assert_eq!(x_cache(&c.get(path).await), "miss", "everything: {path}");
    }
}

#[tokio::test]
async fn invalidation_by_tag_and_route_from_a_write_handler() {
    let calls = Calls::default();
    let cache = memory_cache();
    let writer = cache.clone();
    let router = Router::new()
        .route(
            "/api/posts",
            counted(&calls, ok_json).post(move || {
                let cache = writer.clone();
                async move {
                    ResponseCache::invalidate_tag(&cache, "posts").await?;
                    Ok::<_, ChopinError>(ApiResponse::created("ok"))
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone(), "posts").tag("posts"))
        .merge(
            Router::new()
                .route("/api/users", counted(&calls, ok_json))
                .layer(ResponseCacheLayer::new(cache.clone(), "users")),
        );
    let c = client(router);
    for path in ["/api/posts", "/api/users"] {
        assert_eq!(x_cache(&c.get(path).await), "miss");
        assert_eq!(x_cache(&c.get(path).await), "hit");
    }
    let created = c.post_json("/api/posts", &json!({})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        created.header("x-cache"),
        None,
        "writes pass straight through"
    );
    assert_eq!(
        x_cache(&c.get("/api/posts").await),
        "miss",
        "invalidated by tag"
    );
    assert_eq!(
        x_cache(&c.get("/api/users").await),
        "hit",
        "other tags untouched"
    );

    ResponseCache::invalidate_route(&cache, "users")
        .await
        .unwrap();
    assert_eq!(
        x_cache(&c.get("/api/users").await),
        "miss",
        "invalidated by route"
    );
    assert_eq!(x_cache(&c.get("/api/posts").await), "hit");
}

#[tokio::test]
async fn requests_with_credentials_bypass_the_shared_cache() {
    let calls = Calls::default();
    let c = cached_client(&calls, ResponseCacheLayer::new(memory_cache(), "posts"));
    for credential in [
        ("authorization", "Bearer secret"),
        ("cookie", "session=abc"),
    ] {
        let before = calls.get();
        let res = get_with(&c, "/api/posts", &[credential]).await;
        assert_eq!(x_cache(&res), "bypass", "{credential:?}");
        let res = get_with(&c, "/api/posts", &[credential]).await;
        assert_eq!(x_cache(&res), "bypass");
        assert_eq!(calls.get(), before + 2, "the handler ran every time");
    }
    // Nothing was stored: the first anonymous request is a miss.
    assert_eq!(x_cache(&c.get("/api/posts").await), "miss");
    assert_eq!(x_cache(&c.get("/api/posts").await), "hit");
    // …and an anonymous entry is never served to a credentialed request.
    let res = get_with(&c, "/api/posts", &[("authorization", "Bearer secret")]).await;
    assert_eq!(x_cache(&res), "bypass");
}

fn bearer_user(parts: &http::request::Parts) -> Option<String> {
    // Stand-in for a *verified* token: tests only.
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

#[tokio::test]
async fn per_user_keys_separate_users() {
    let calls = Calls::default();
    let router = Router::new()
        .route(
            "/me",
            counted(&calls, |_, headers: http::HeaderMap| {
                let who = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("anonymous")
                    .to_string();
                ApiResponse::success(who)
            }),
        )
        .layer(ResponseCacheLayer::new(memory_cache(), "me").per_user(bearer_user));
    let c = client(router);
    let alice = [("authorization", "Bearer alice")];
    let bob = [("authorization", "Bearer bob")];
    let check = |res: &TestResponse, cache: &str, who: &str| {
        assert_eq!(x_cache(res), cache);
        assert_eq!(res.value()["data"], who);
    };
    check(&get_with(&c, "/me", &alice).await, "miss", "Bearer alice");
    check(&get_with(&c, "/me", &alice).await, "hit", "Bearer alice");
    check(&get_with(&c, "/me", &bob).await, "miss", "Bearer bob");
    check(&get_with(&c, "/me", &bob).await, "hit", "Bearer bob");
    check(&get_with(&c, "/me", &alice).await, "hit", "Bearer alice");
    check(&c.get("/me").await, "miss", "anonymous");
    check(&c.get("/me").await, "hit", "anonymous");
    // Credentials without a user key: bypass.
    let res = get_with(&c, "/me", &[("authorization", "Basic eDp5")]).await;
    assert_eq!(x_cache(&res), "bypass");
    assert_eq!(calls.get(), 4);
}

#[tokio::test]
async fn share_authenticated_serves_one_entry_to_everyone() {
    let calls = Calls::default();
    let layer = ResponseCacheLayer::new(memory_cache(), "posts").share_authenticated(true);
    let c = cached_client(&calls, layer);
    let res = get_with(&c, "/api/posts", &[("cookie", "analytics=1")]).await;
    assert_eq!(x_cache(&res), "miss");
    assert_eq!(x_cache(&c.get("/api/posts").await), "hit");
    let res = get_with(&c, "/api/posts", &[("authorization", "Bearer x")]).await;
    assert_eq!(x_cache(&res), "hit");
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn uncacheable_responses_are_not_stored() {
    let calls = Calls::default();
    let big = "x".repeat(2000);
    let router = Router::new()
        .route(
            "/cookie",
            counted(&calls, |_, _| {
                ([(header::SET_COOKIE, "s=1")], "with cookie")
            }),
        )
        .route(
            "/no-store",
            counted(&calls, |_, _| {
                ([(header::CACHE_CONTROL, "no-store")], "secret")
            }),
        )
        .route(
            "/private",
            counted(&calls, |_, _| {
                ([(header::CACHE_CONTROL, "private, max-age=60")], "mine")
            }),
        )
        .route(
            "/vary-star",
            counted(&calls, |_, _| ([(header::VARY, "*")], "unique")),
        )
        .route(
            "/missing",
            counted(&calls, |_, _| ChopinError::NotFound("nope".into())),
        )
        .route(
            "/created",
            counted(&calls, |_, _| ApiResponse::created("new")),
        )
        .route("/big", counted(&calls, move |_, _| big.clone()))
        .route(
            "/stream",
            counted(&calls, |_, _| {
                let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from_static(b"s"))];
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .layer(ResponseCacheLayer::new(memory_cache(), "misc").max_body_size(1000));
    let c = client(router);
    for path in [
        "/cookie",
        "/no-store",
        "/private",
        "/vary-star",
        "/missing",
        "/created",
        "/big",
        "/stream",
    ] {
        let before = calls.get();
        let first = c.get(path).await;
        let second = c.get(path).await;
        assert_eq!(x_cache(&first), "miss", "{path}");
        assert_eq!(x_cache(&second), "miss", "{path} must not be stored");
        assert_eq!(calls.get(), before + 2, "{path}");
        assert_eq!(first.status, second.status, "{path}");
        if path != "/missing" {
            // (An error body carries its own request id.)
            assert_eq!(
                first.body, second.body,
                "{path}: the body passes through intact"
            );
        }
    }
    assert_eq!(c.get("/big").await.body.len(), 2000);
    assert_eq!(c.get("/cookie").await.header("set-cookie"), Some("s=1"));
}

#[tokio::test]
async fn other_statuses_are_stored_when_configured() {
    let calls = Calls::default();
    let router = Router::new()
        .route(
            "/missing",
            counted(&calls, |_, _| ChopinError::NotFound("nope".into())),
        )
        .layer(ResponseCacheLayer::new(memory_cache(), "misc").cache_status(StatusCode::NOT_FOUND));
    let c = client(router);
    let miss = c.get("/missing").await;
    let hit = c.get("/missing").await;
    assert_eq!((x_cache(&miss), x_cache(&hit)), ("miss", "hit"));
    assert_eq!(hit.status, StatusCode::NOT_FOUND);
    assert_eq!(hit.error_code().as_deref(), Some("NOT_FOUND"));
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn head_is_served_from_a_cached_get() {
    let calls = Calls::default();
    let c = cached_client(&calls, ResponseCacheLayer::new(memory_cache(), "posts"));
    // A HEAD miss goes to the handler and stores nothing.
    let head = c.request(request(Method::HEAD, "/api/posts", &[])).await;
    assert_eq!((head.status, x_cache(&head)), (StatusCode::OK, "miss"));
    assert!(head.body.is_empty());
    let get = c.get("/api/posts").await;
    assert_eq!(x_cache(&get), "miss", "HEAD stored nothing");
    let head = c.request(request(Method::HEAD, "/api/posts", &[])).await;
    assert_eq!((head.status, x_cache(&head)), (StatusCode::OK, "hit"));
    assert!(head.body.is_empty(), "no body for HEAD");
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn response_cache_and_etags_work_together_in_either_order() {
    for etag_inside in [true, false] {
        let calls = Calls::default();
        let cache_layer = ResponseCacheLayer::new(memory_cache(), "posts");
        let router = Router::new().route("/api/posts", counted(&calls, ok_json));
        let router = if etag_inside {
            router.layer(ETagLayer::new()).layer(cache_layer)
        } else {
            router.layer(cache_layer).layer(ETagLayer::new())
        };
        let c = client(router);
        let miss = c.get("/api/posts").await;
        let tag = etag_of(&miss);
        let hit = c.get("/api/posts").await;
        assert_eq!((x_cache(&hit), etag_of(&hit)), ("hit", tag.clone()));
        let not_modified = get_with(&c, "/api/posts", &[("if-none-match", &tag)]).await;
        assert_not_modified(&not_modified, &tag, "no-cache");
        assert_eq!(x_cache(&not_modified), "hit", "etag inside: {etag_inside}");
        assert_eq!(calls.get(), 1, "etag inside: {etag_inside}");
    }
}

#[tokio::test]
async fn hits_are_compressed_per_request() {
    let calls = Calls::default();
    let router = Router::new()
        .route(
            "/big",
            counted(&calls, |_, _| ApiResponse::success(big_document())),
        )
        .layer(ResponseCacheLayer::new(memory_cache(), "big"));
    let c = client(router);
    let plain = c.get("/big").await;
    let gz = get_with(&c, "/big", &[("accept-encoding", "gzip")]).await;
    assert_eq!(x_cache(&gz), "hit");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gz.body), plain.body);
    let plain_hit = c.get("/big").await;
    assert_eq!(
        (x_cache(&plain_hit), plain_hit.header("content-encoding")),
        ("hit", None)
    );
    assert_eq!(plain_hit.body, plain.body);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn nested_routers_key_and_invalidate_by_the_full_path() {
    let calls = Calls::default();
    let cache = memory_cache();
    let inner = Router::new()
        .route("/posts", counted(&calls, ok_json))
        .layer(ResponseCacheLayer::new(cache.clone(), "posts"));
    let c = client(Router::new().nest("/api", inner));
    assert_eq!(x_cache(&c.get("/api/posts").await), "miss");
    assert_eq!(x_cache(&c.get("/api/posts").await), "hit");
    ResponseCache::invalidate_path_prefix(&cache, "/api/posts")
        .await
        .unwrap();
    assert_eq!(x_cache(&c.get("/api/posts").await), "miss");
}

#[tokio::test]
async fn a_corrupt_entry_is_a_miss_and_is_replaced() {
    let calls = Calls::default();
    let cache = memory_cache();
    let c = cached_client(&calls, ResponseCacheLayer::new(cache.clone(), "posts"));
    // The documented key layout: http:<route>:GET:<path>?<query>.
    cache
        .set_bytes(
            "http:posts:GET:/api/posts?x=1",
            Bytes::from_static(b"garbage"),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(x_cache(&c.get("/api/posts?x=1").await), "miss");
    let hit = c.get("/api/posts?x=1").await;
    assert_eq!(x_cache(&hit), "hit");
    assert_eq!(hit.value()["data"]["query"], "x=1");
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn other_methods_pass_straight_through() {
    let calls = Calls::default();
    let router = Router::new()
        .route(
            "/thing",
            post({
                let calls = calls.clone();
                move || async move {
                    calls.hit();
                    "posted"
                }
            }),
        )
        .layer(ResponseCacheLayer::new(memory_cache(), "things"));
    let c = client(router);
    for _ in 0..2 {
        let res = c.post_json("/thing", &json!({})).await;
        assert_eq!(res.text(), "posted");
        assert_eq!(res.header("x-cache"), None);
    }
    assert_eq!(calls.get(), 2);
}

/// A Redis-backed `Cache` whose Redis is gone: we start a private `redis-server` on a free
/// port, connect (`Cache::redis` refuses to build against a dead address, so
/// `redis://127.0.0.1:1` cannot be used), then kill the server. Every call of the cache then
/// fails within its timeout. `None` (a skip) when `redis-server` is not installed, except in CI.
#[cfg(feature = "redis")]
async fn cache_with_dead_redis() -> Option<Cache> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let spawned = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn();
    let mut server = match spawned {
        Ok(server) => server,
        Err(e) => {
            assert!(
                !chopin_core::testing::in_ci(),
                "redis-server must run in CI: {e}"
            );
            eprintln!("skipping the dead-cache test: cannot start redis-server: {e}");
            return None;
        }
    };
    let config = CacheConfig {
        backend: chopin_core::cache::CacheBackend::Redis,
        redis_url: format!("redis://127.0.0.1:{port}"),
        ..CacheConfig::default()
    };
    let mut cache = None;
    for _ in 0..50 {
        match Cache::redis(&config).await {
            Ok(c) => {
                cache = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    Some(cache.expect("the private redis-server came up"))
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn an_unreachable_cache_falls_through_to_the_handler() {
    let Some(cache) = cache_with_dead_redis().await else {
        return;
    };
    assert!(
        cache.ping().await.is_err(),
        "the cache's Redis is really gone"
    );
    let calls = Calls::default();
    let c = cached_client(
        &calls,
        ResponseCacheLayer::new(cache.clone(), "posts").tag("posts"),
    );
    for round in 1..=3 {
        let res = c.get("/api/posts?x=1").await;
        assert_eq!(res.status, StatusCode::OK, "round {round}: {}", res.text());
        assert_eq!(x_cache(&res), "miss", "round {round}");
        assert_eq!(res.value()["data"]["query"], "x=1");
        let head = c.request(request(Method::HEAD, "/api/posts", &[])).await;
        assert_eq!(head.status, StatusCode::OK);
    }
    assert_eq!(calls.get(), 6, "every request reached the handler");
    // Invalidation reports the failure to the write handler instead of pretending.
    assert!(
        ResponseCache::invalidate_path_prefix(&cache, "/api/posts")
            .await
            .is_err()
    );
    assert!(
        ResponseCache::invalidate_tag(&cache, "posts")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn route_tags_are_checked() {
    for bad in ["", "a:b", "has space"] {
        let result = std::panic::catch_unwind(|| ResponseCacheLayer::new(memory_cache(), bad));
        assert!(result.is_err(), "{bad:?} must be rejected");
    }
}
