//! Rate limiting as a client sees it: 429 with `Retry-After` and the `RateLimit-Policy` /
//! `RateLimit` fields past the burst, every request charged to its address (the socket's,
//! `X-Forwarded-For` only from trusted proxies) before its user, users keyed only from
//! tokens `Auth::verify` already verified, the limit installed by `App` from
//! `CHOPIN_RATE_LIMIT` on a real socket, one limit held by two instances sharing Redis, and
//! the settings that are refused.

use chopin_core::config::Environment;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use chopin_core::auth::{Auth, AuthUser, Claims, JwtKeys, TokenSettings};
use chopin_core::cache::CacheConfig;
use chopin_core::config::{IpNet, Rate};
use chopin_core::prelude::*;
use chopin_core::rate_limit::{RateLimitLayer, client_ip};
use chopin_core::testing::{TestClient, TestResponse, redis_url_or_skip, unique_namespace};
use http::{HeaderMap, Request, StatusCode};

fn rate(burst: u32, period: Duration) -> Rate {
    Rate { burst, period }
}

async fn ok() -> ApiResponse<&'static str> {
    ApiResponse::success("ok")
}

fn client(layer: RateLimitLayer) -> TestClient {
    TestClient::new(Router::new().route("/", get(ok)).layer(layer))
}

/// `GET /` from socket peer `peer`, with optional `X-Forwarded-For` and bearer token.
async fn hit(c: &TestClient, peer: &str, xff: Option<&str>, token: Option<&str>) -> TestResponse {
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    let mut req = Request::builder().uri("/").extension(ConnectInfo(addr));
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    c.request(req.body(Body::empty()).unwrap()).await
}

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10): a structured-field List of
/// `<token>;q=<integer>;w=<integer>` items; returns `(name, q, w)` per item.
fn policies(r: &TestResponse) -> Vec<(String, u64, u64)> {
    let value = r.header("ratelimit-policy").expect("RateLimit-Policy");
    value
        .split(", ")
        .map(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap().to_string();
            assert!(
                name.starts_with(|c: char| c.is_ascii_alphabetic())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "policy name {name:?} in {value:?}"
            );
            let q = parts.next().and_then(|p| p.strip_prefix("q=")).unwrap();
            let w = parts.next().and_then(|p| p.strip_prefix("w=")).unwrap();
            assert_eq!(parts.next(), None, "{value:?}");
            (name, q.parse().unwrap(), w.parse().unwrap())
        })
        .collect()
}

/// 429 `RATE_LIMITED` with `Retry-After`, and `RateLimit: <policy>;r=0;t=<Retry-After>`
/// naming one of the listed policies; returns that policy's name.
fn assert_limited(r: &TestResponse) -> String {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("RATE_LIMITED"));
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "Retry-After {after}");
    let state = r.header("ratelimit").expect("RateLimit");
    let (name, rest) = state
        .split_once(';')
        .expect("RateLimit item with parameters");
    assert_eq!(rest, format!("r=0;t={after}"), "RateLimit {state:?}");
    assert!(
        policies(r).iter().any(|(p, _, _)| p == name),
        "{name} not in RateLimit-Policy"
    );
    name.to_string()
}

#[tokio::test]
async fn the_burst_passes_then_429_with_retry_after() {
    let c = client(RateLimitLayer::memory(rate(3, Duration::from_secs(60))));
    for _ in 0..3 {
        assert_eq!(hit(&c, "10.0.0.1", None, None).await.status, StatusCode::OK);
    }
    let r = hit(&c, "10.0.0.1", None, None).await;
    assert_limited(&r);
    // One request per 20 s is the refill rate: the client is told to wait about that long.
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((15..=20).contains(&after), "Retry-After {after}");
    // Another client has its own budget.
    assert_eq!(hit(&c, "10.0.0.2", None, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_budget_refills_over_time() {
    // One request per 3 s after a burst of two: the third quick request is refused unless
    // 3 s passed since the first, and after sleeping 4 s one has certainly been refilled.
    let c = client(RateLimitLayer::memory(rate(2, Duration::from_secs(6))));
    assert_eq!(hit(&c, "10.0.0.1", None, None).await.status, StatusCode::OK);
    assert_eq!(hit(&c, "10.0.0.1", None, None).await.status, StatusCode::OK);
    assert_limited(&hit(&c, "10.0.0.1", None, None).await);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(hit(&c, "10.0.0.1", None, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    // No trusted proxies at all, and a trusted list that does not include the peer.
    for trusted in [vec![], vec!["10.9.0.0/16".parse::<IpNet>().unwrap()]] {
        let c = client(
            RateLimitLayer::memory(rate(2, Duration::from_secs(60))).trusted_proxies(trusted),
        );
        assert_eq!(
            hit(&c, "203.0.113.7", Some("1.1.1.1"), None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            hit(&c, "203.0.113.7", Some("2.2.2.2"), None).await.status,
            StatusCode::OK
        );
        // A fresh forged address each time does not buy a fresh budget.
        assert_limited(&hit(&c, "203.0.113.7", Some("3.3.3.3"), None).await);
        assert_limited(&hit(&c, "203.0.113.7", Some("4.4.4.4, 5.5.5.5"), None).await);
        // Nor does forging the address of a client that still has budget lock it out.
        assert_eq!(
            hit(&c, "198.51.100.1", Some("203.0.113.7"), None)
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let trusted = vec!["10.0.0.0/8".parse::<IpNet>().unwrap()];
    let c =
        client(RateLimitLayer::memory(rate(1, Duration::from_secs(60))).trusted_proxies(trusted));
    // Two clients behind the same proxy get separate budgets.
    assert_eq!(
        hit(&c, "10.0.0.5", Some("198.51.100.1"), None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        hit(&c, "10.0.0.5", Some("198.51.100.2"), None).await.status,
        StatusCode::OK
    );
    assert_limited(&hit(&c, "10.0.0.5", Some("198.51.100.1"), None).await);
    // A client prepending a forged hop does not escape: the right-most untrusted hop counts.
    assert_limited(&hit(&c, "10.0.0.5", Some("9.9.9.9, 198.51.100.2"), None).await);
}

#[test]
fn client_ip_walks_forwarded_for_from_the_right() {
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        "1.2.3.4, 5.6.7.8, 10.1.1.1".parse().unwrap(),
    );
    let ip = |peer: &str, h: &HeaderMap| client_ip(h, Some(peer.parse().unwrap()), &trusted);
    assert_eq!(ip("10.0.0.1", &h), Some("5.6.7.8".parse().unwrap()));
    assert_eq!(ip("8.8.8.8", &h), Some("8.8.8.8".parse().unwrap()));
    // Entries with ports or brackets name the client too.
    for (xff, client) in [
        ("198.51.100.1:4711", "198.51.100.1"),
        ("[2001:db8::5]:443", "2001:db8::5"),
        ("[2001:db8::6]", "2001:db8::6"),
        ("::ffff:198.51.100.2", "198.51.100.2"),
        ("198.51.100.3, 10.2.2.2:80", "198.51.100.3"),
    ] {
        h.insert("x-forwarded-for", xff.parse().unwrap());
        assert_eq!(ip("10.0.0.1", &h), Some(client.parse().unwrap()), "{xff}");
    }
    // An IPv4-mapped peer is matched against the trusted IPv4 list.
    h.insert("x-forwarded-for", "5.6.7.8".parse().unwrap());
    assert_eq!(ip("::ffff:10.0.0.1", &h), Some("5.6.7.8".parse().unwrap()));
    h.insert("x-forwarded-for", "garbage".parse().unwrap());
    assert_eq!(ip("10.0.0.1", &h), Some("10.0.0.1".parse().unwrap()));
    assert_eq!(client_ip(&HeaderMap::new(), None, &trusted), None);
}

#[tokio::test]
async fn authenticated_requests_are_limited_per_user() {
    let auth = Auth::new(
        JwtKeys::hs256("k1", b"rate-limit-secret-of-at-least-32-bytes").unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    let layer = RateLimitLayer::memory(rate(2, Duration::from_secs(60))).per_user(auth.clone());
    let c = TestClient::new(
        Router::new()
            .route("/", get(|u: AuthUser| async move { u.sub.clone() }))
            .layer(auth.extension())
            .layer(layer),
    );
    let alice = auth.issue(auth.claims_for("alice")).unwrap();
    let bob = auth.issue(auth.claims_for("bob")).unwrap();
    // As after an earlier request whose `AuthUser` verified them.
    for token in [&alice, &bob] {
        auth.verify::<Claims>(token).await.unwrap();
    }
    // Alice from two addresses shares one budget.
    assert_eq!(
        hit(&c, "10.0.0.1", None, Some(&alice)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        hit(&c, "10.0.0.2", None, Some(&alice)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        assert_limited(&hit(&c, "10.0.0.3", None, Some(&alice)).await),
        "client"
    );
    // Bob on Alice's address has his own.
    assert_eq!(
        hit(&c, "10.0.0.1", None, Some(&bob)).await.status,
        StatusCode::OK
    );
    // Alice's budget is spent. A token naming her but signed with another key does not
    // pick her bucket: it is keyed by IP, so it passes the limit and is then refused by
    // the handler (401, not 429).
    let other = Auth::new(
        JwtKeys::hs256("k1", b"another-secret-of-at-least-32-bytes!!").unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    let forged = other.issue(other.claims_for("alice")).unwrap();
    let r = hit(&c, "10.0.0.9", None, Some(&forged)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_limited(&hit(&c, "10.0.0.9", None, Some(&alice)).await);
}

#[tokio::test]
async fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
    let c = client(RateLimitLayer::memory(rate(1, Duration::from_secs(60))));
    let hit6 = |ip: &'static str| {
        let c = c.clone();
        async move {
            let addr = SocketAddr::new(ip.parse().unwrap(), 40000);
            let req = Request::builder()
                .uri("/")
                .extension(ConnectInfo(addr))
                .body(Body::empty())
                .unwrap();
            c.request(req).await
        }
    };
    assert_eq!(hit6("2001:db8:0:1::1").await.status, StatusCode::OK);
    // Another address in the same /64: the same budget.
    assert_limited(&hit6("2001:db8:0:1:ffff::2").await);
    // Another /64: its own.
    assert_eq!(hit6("2001:db8:0:2::1").await.status, StatusCode::OK);
    // IPv4-mapped IPv6 is the IPv4 client.
    assert_eq!(hit6("::ffff:192.0.2.1").await.status, StatusCode::OK);
    assert_limited(&hit6("192.0.2.1").await);
}

#[tokio::test]
async fn without_connect_info_requests_are_not_put_in_one_bucket() {
    let c = client(RateLimitLayer::memory(rate(1, Duration::from_secs(60))));
    for _ in 0..3 {
        let req = Request::builder().uri("/").body(Body::empty()).unwrap();
        assert_eq!(c.request(req).await.status, StatusCode::OK);
    }
    // Users are still limited without a peer address.
    let auth = Auth::new(
        JwtKeys::hs256("k1", b"rate-limit-secret-of-at-least-32-bytes").unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    let c = client(RateLimitLayer::memory(rate(1, Duration::from_secs(60))).per_user(auth.clone()));
    let token = auth.issue(auth.claims_for("carol")).unwrap();
    auth.verify::<Claims>(&token).await.unwrap();
    let req = || {
        Request::builder()
            .uri("/")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(c.request(req()).await.status, StatusCode::OK);
    assert_limited(&c.request(req()).await);
}

#[tokio::test]
async fn a_zero_burst_does_not_panic() {
    let c = client(RateLimitLayer::memory(rate(0, Duration::ZERO)));
    assert_eq!(hit(&c, "10.0.0.1", None, None).await.status, StatusCode::OK);
    let c = client(RateLimitLayer::memory(rate(0, Duration::from_secs(60))));
    assert_eq!(hit(&c, "10.0.0.1", None, None).await.status, StatusCode::OK);
    assert_limited(&hit(&c, "10.0.0.1", None, None).await);
}

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

#[tokio::test]
async fn app_installs_the_configured_limit_on_a_real_socket() {
    let config = config(&[
        ("CHOPIN_ENV", "test"),
        ("CHOPIN_PORT", "0"),
        ("CHOPIN_RATE_LIMIT", "2/1m"),
    ]);
    let app = App::new(config).router(Router::new().route("/", get(ok)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_with(listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/");
    let mut statuses = Vec::new();
    for i in 0..3 {
        // Spoofing from a direct (untrusted) connection changes nothing.
        let r = http
            .get(&url)
            .header("x-forwarded-for", format!("192.0.2.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            assert!(
                r.headers().contains_key("x-request-id"),
                "inside the request-id layer"
            );
        }
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Two full `App`s from one configuration (`CHOPIN_RATE_LIMIT_BACKEND=redis`), as two
/// instances behind a load balancer: the burst is shared, not per instance.
#[tokio::test]
async fn the_limit_holds_across_two_instances_sharing_redis() {
    let Some(url) = redis_url_or_skip().await else {
        return;
    };
    let namespace = unique_namespace();
    let config = config(&[
        ("CHOPIN_ENV", "test"),
        ("CHOPIN_RATE_LIMIT", "5/1m"),
        ("CHOPIN_RATE_LIMIT_BACKEND", "redis"),
        ("REDIS_URL", &url),
        ("CHOPIN_CACHE_NAMESPACE", &namespace),
        ("CHOPIN_CACHE_TIMEOUT", "1s"),
    ]);
    let app = || {
        TestClient::new(
            App::new(config.clone())
                .router(Router::new().route("/", get(ok)))
                .into_router(),
        )
    };
    let (a, b) = (app(), app());
    let mut allowed = 0;
    let mut last = None;
    for i in 0..12 {
        let c = if i % 2 == 0 { &a } else { &b };
        let r = hit(c, "203.0.113.50", None, None).await;
        if r.status == StatusCode::OK {
            allowed += 1;
        } else {
            assert_limited(&r);
            last = Some(r);
        }
    }
    assert_eq!(allowed, 5, "the burst is shared, not per instance");
    let after: u64 = last
        .unwrap()
        .header("retry-after")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=12).contains(&after),
        "one request per 12 s: Retry-After {after}"
    );
    // Another client is unaffected, on either instance.
    assert_eq!(
        hit(&b, "203.0.113.51", None, None).await.status,
        StatusCode::OK
    );
    // The layer API gives the same sharing.
    let cache = CacheConfig {
        redis_url: url.clone(),
        namespace: namespace.clone(),
        timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let c = client(RateLimitLayer::redis(rate(5, Duration::from_secs(60)), &cache).unwrap());
    assert_limited(&hit(&c, "203.0.113.50", None, None).await);

    // Keys expire by themselves once the budget would be full again.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}|ratelimit:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    // Per client: its address's bucket of the `ip` policy and its own of the `client` one.
    assert_eq!(keys.len(), 4, "{keys:?}");
    for client in ["203.0.113.50", "203.0.113.51"] {
        for key in [
            format!("{namespace}|ratelimit:ip:{client}"),
            format!("{namespace}|ratelimit:client:ip:{client}"),
        ] {
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
    }
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{key}: {ttl}");
    }
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_lets_requests_through() {
    let cache = CacheConfig {
        redis_url: "redis://127.0.0.1:1".into(),
        namespace: unique_namespace(),
        timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let c = client(RateLimitLayer::redis(rate(1, Duration::from_secs(60)), &cache).unwrap());
    for _ in 0..3 {
        assert_eq!(hit(&c, "10.0.0.1", None, None).await.status, StatusCode::OK);
    }
}

/// 100 accounts do not buy 100 budgets: every request from one address is charged to that
/// address first, whoever's token it carries.
#[tokio::test]
async fn many_users_behind_one_address_share_its_budget() {
    let auth = Auth::new(
        JwtKeys::hs256("k1", b"rate-limit-secret-of-at-least-32-bytes").unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    let layer = RateLimitLayer::memory(rate(5, Duration::from_secs(60)))
        .ip_rate(rate(20, Duration::from_secs(60)))
        .per_user(auth.clone());
    assert_eq!(layer.ip_rate_limit(), rate(20, Duration::from_secs(60)));
    let c = TestClient::new(
        Router::new()
            .route("/", get(|u: AuthUser| async move { u.sub.clone() }))
            .layer(auth.extension())
            .layer(layer),
    );
    let mut allowed = 0;
    for n in 0..100 {
        let token = auth.issue(auth.claims_for(format!("user{n}"))).unwrap();
        auth.verify::<Claims>(&token).await.unwrap();
        let r = hit(&c, "198.51.100.7", None, Some(&token)).await;
        if r.status == StatusCode::OK {
            allowed += 1;
        } else {
            assert_eq!(assert_limited(&r), "ip");
            assert_eq!(
                policies(&r),
                [("ip".into(), 20, 60), ("client".into(), 5, 60)]
            );
        }
    }
    assert_eq!(
        allowed, 20,
        "bounded by the address, not by the number of users"
    );
    // Another address is unaffected.
    let token = auth.issue(auth.claims_for("user0")).unwrap();
    auth.verify::<Claims>(&token).await.unwrap();
    assert_eq!(
        hit(&c, "198.51.100.8", None, Some(&token)).await.status,
        StatusCode::OK
    );
}

/// Junk tokens from one address are refused by the address budget before any handler (or
/// key) looks at them; and the key reads only `Auth::verify`'s cache: a token it has not
/// verified (here: a genuine one, never presented to an `AuthUser`) is not keyed by its
/// user, which it would be if the limiter checked signatures itself.
#[tokio::test]
async fn the_address_is_charged_first_and_users_come_only_from_verified_tokens() {
    let auth = Auth::new(
        JwtKeys::hs256("k1", b"rate-limit-secret-of-at-least-32-bytes").unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    // Junk: the handler (which verifies) answers 401 until the address is spent, then the
    // layer answers 429 without calling it.
    let layer = RateLimitLayer::memory(rate(100, Duration::from_secs(60)))
        .ip_rate(rate(3, Duration::from_secs(60)))
        .per_user(auth.clone());
    let c = TestClient::new(
        Router::new()
            .route("/", get(|u: AuthUser| async move { u.sub.clone() }))
            .layer(auth.extension())
            .layer(layer),
    );
    for n in 0..3 {
        let r = hit(&c, "192.0.2.9", None, Some(&format!("junk.{n}.token"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    }
    for n in 3..10 {
        let r = hit(&c, "192.0.2.9", None, Some(&format!("junk.{n}.token"))).await;
        assert_eq!(assert_limited(&r), "ip");
    }

    // The key and the cache.
    let layer = RateLimitLayer::memory(rate(1, Duration::from_secs(60))).per_user(auth.clone());
    let c = client(layer.clone());
    let dave = auth.issue(auth.claims_for("dave")).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {dave}").parse().unwrap());
    let peer: SocketAddr = "192.0.2.20:4000".parse().unwrap();
    assert_eq!(
        layer.key_for(&headers, Some(peer)).await.as_deref(),
        Some("ip:192.0.2.20"),
        "an unverified token names no user"
    );
    // Dave's token from two addresses: two budgets, since no user was found.
    assert_eq!(
        hit(&c, "192.0.2.20", None, Some(&dave)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        hit(&c, "192.0.2.21", None, Some(&dave)).await.status,
        StatusCode::OK
    );
    // Once `Auth::verify` has seen it (as an `AuthUser` does), it is Dave's.
    auth.verify::<Claims>(&dave).await.unwrap();
    assert_eq!(
        layer.key_for(&headers, Some(peer)).await.as_deref(),
        Some("user:dave")
    );
    assert_eq!(
        hit(&c, "192.0.2.22", None, Some(&dave)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        assert_limited(&hit(&c, "192.0.2.23", None, Some(&dave)).await),
        "client"
    );
}

#[tokio::test]
async fn anonymous_clients_keep_the_per_client_rate_and_429s_carry_the_fields() {
    // The address budget is four times the client's by default; an anonymous client is
    // still held to the client rate.
    let c = client(RateLimitLayer::memory(rate(2, Duration::from_secs(30))));
    assert_eq!(hit(&c, "10.1.0.1", None, None).await.status, StatusCode::OK);
    assert_eq!(hit(&c, "10.1.0.1", None, None).await.status, StatusCode::OK);
    let r = hit(&c, "10.1.0.1", None, None).await;
    assert_eq!(assert_limited(&r), "client");
    assert_eq!(
        policies(&r),
        [("ip".into(), 8, 30), ("client".into(), 2, 30)]
    );
    // One request per 15 s: Retry-After and t say the same.
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((10..=15).contains(&after), "Retry-After {after}");
    // Allowed answers carry no fields (see docs/security.md).
    let ok = hit(&c, "10.1.0.2", None, None).await;
    assert_eq!(ok.header("ratelimit"), None);
}

#[test]
fn the_settings_for_addresses_and_proxies() {
    let c = config(&[
        ("CHOPIN_ENV", "test"),
        ("CHOPIN_RATE_LIMIT", "10/1m"),
        ("CHOPIN_RATE_LIMIT_IP", "100/1m"),
    ]);
    assert_eq!(
        c.rate_limit.ip_rate,
        Some(rate(100, Duration::from_secs(60)))
    );
    let layer = RateLimitLayer::from_config(&c).unwrap().unwrap();
    assert_eq!(layer.ip_rate_limit(), rate(100, Duration::from_secs(60)));
    let c = config(&[("CHOPIN_ENV", "test"), ("CHOPIN_RATE_LIMIT", "10/1m")]);
    assert_eq!(
        c.rate_limit.effective_ip_rate(),
        Some(rate(40, Duration::from_secs(60)))
    );
    let layer = RateLimitLayer::from_config(&c).unwrap().unwrap();
    assert_eq!(layer.ip_rate_limit(), rate(40, Duration::from_secs(60)));

    let refused = |vars: &[(&str, &str)]| {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
            .expect_err("refused")
            .to_string()
    };
    // The address limit cannot stand alone, nor be turned off.
    let e = refused(&[("CHOPIN_ENV", "test"), ("CHOPIN_RATE_LIMIT_IP", "100/1m")]);
    assert!(
        e.contains("CHOPIN_RATE_LIMIT_IP") && e.contains("needs CHOPIN_RATE_LIMIT"),
        "{e}"
    );
    let e = refused(&[
        ("CHOPIN_ENV", "test"),
        ("CHOPIN_RATE_LIMIT", "10/1m"),
        ("CHOPIN_RATE_LIMIT_IP", "off"),
    ]);
    assert!(e.contains("CHOPIN_RATE_LIMIT_IP"), "{e}");

    // A trusted block holding every address lets any client choose its own.
    for any in ["0.0.0.0/0", "::/0", "10.0.0.1, 0.0.0.0/0", "128.0.0.0/0"] {
        let e = refused(&[("CHOPIN_ENV", "test"), ("CHOPIN_TRUSTED_PROXIES", any)]);
        assert!(
            e.contains("CHOPIN_TRUSTED_PROXIES")
                && e.contains("X-Forwarded-For")
                && e.contains("CHOPIN_TRUSTED_PROXIES_ALLOW_ANY=true"),
            "{any}: {e}"
        );
        let c = config(&[
            ("CHOPIN_ENV", "test"),
            ("CHOPIN_TRUSTED_PROXIES", any),
            ("CHOPIN_TRUSTED_PROXIES_ALLOW_ANY", "true"),
        ]);
        assert!(c.security.trusted_proxies.iter().any(|n| n.prefix == 0));
    }
    // Narrower blocks are fine.
    let c = config(&[
        ("CHOPIN_ENV", "test"),
        ("CHOPIN_TRUSTED_PROXIES", "10.0.0.0/8, ::1/128, 0.0.0.0/1"),
    ]);
    assert_eq!(c.security.trusted_proxies.len(), 3);
}
