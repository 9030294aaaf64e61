//! The auth module's own rate limits over HTTP (requests carry their client address as
//! `ConnectInfo`, as `App::serve` gives them): login attempts per address, failed logins per
//! (account, address) — never per account alone, and successes never counted —, sign-up per
//! address, password reset per (account, address), failed token redemptions per address,
//! refresh per user; the defaults on wherever the module is used, the settings, the 429
//! answer's fields, and the counters shared by two instances through Redis.

mod common;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use chopin_core::auth::{
    Auth, AuthModule, AuthRateLimits, AuthStore, JwtKeys, Mail, MailKind, Mailer, TokenSettings,
};
use chopin_core::config::{AuthRateLimitConfig, Environment, Rate};
use chopin_core::db::Db;
use chopin_core::error::BoxError;
use chopin_core::testing::{TestClient, TestResponse, redis_url_or_skip, unique_namespace};
use http::{Request, StatusCode};
use serde_json::{Value, json};

const SECRET: &[u8] = b"auth-rate-limit-secret-of-at-least-32-bytes";

/// A mailer that keeps what it was asked to send.
#[derive(Clone, Default)]
struct Outbox(Arc<Mutex<Vec<Mail>>>);

impl Mailer for Outbox {
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> {
        self.0.lock().unwrap().push(mail);
        Box::pin(async { Ok(()) })
    }
}

impl Outbox {
    /// The last mail of `kind`, waiting up to 5 s for it (mails are sent after the answer,
    /// by the mail queue).
    async fn last(&self, kind: MailKind) -> Option<String> {
        for _ in 0..100 {
            let found = {
                let mails = self.0.lock().unwrap();
                mails
                    .iter()
                    .rev()
                    .find(|m| m.kind == kind)
                    .map(|m| m.token.clone())
            };
            if found.is_some() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

fn rate(burst: u32, secs: u64) -> Option<Rate> {
    Some(Rate {
        burst,
        period: Duration::from_secs(secs),
    })
}

fn auth() -> Auth {
    Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        Environment::Development,
    )
}

/// The module at `/auth` with `limits` (`None`: whatever the `Auth` carries).
async fn module(db: &Db, auth: Auth, limits: Option<AuthRateLimits>) -> (TestClient, Outbox) {
    let outbox = Outbox::default();
    let store = AuthStore::new(db).await.expect("auth migrations");
    let mut module = AuthModule::with_mailer(auth, store, outbox.clone())
        .await
        .unwrap();
    if let Some(limits) = limits {
        module = module.rate_limits(limits);
    }
    let router: Router = Router::new().nest("/auth", module.router());
    (TestClient::new(router), outbox)
}

/// Only the limits given; the others off.
fn only(config: AuthRateLimitConfig) -> Option<AuthRateLimits> {
    Some(AuthRateLimits::memory(config))
}

/// `POST /auth<path>` with a JSON body from client address `ip` (IPv4 or IPv6).
async fn post(c: &TestClient, ip: &str, path: &str, body: &Value) -> TestResponse {
    let addr = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 40000);
    let req = Request::builder()
        .method("POST")
        .uri(format!("/auth{path}"))
        .header("content-type", "application/json")
        .extension(ConnectInfo(addr))
        .body(Body::from(body.to_string()))
        .unwrap();
    c.request(req).await
}

fn creds(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

/// 429 `RATE_LIMITED` with `Retry-After`, `RateLimit-Policy` listing `policy` with quota `q`
/// and window `w`, and `RateLimit: <policy>;r=0;t=<Retry-After>`; returns Retry-After.
fn assert_limited(r: &TestResponse, policy: &str, q: u32, w: u64) -> u64 {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("RATE_LIMITED"));
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(after >= 1);
    assert_eq!(
        r.header("ratelimit"),
        Some(format!("{policy};r=0;t={after}").as_str())
    );
    let policies = r.header("ratelimit-policy").unwrap();
    assert!(
        policies
            .split(", ")
            .any(|item| item == format!("{policy};q={q};w={w}")),
        "{policy} not in {policies:?}"
    );
    after
}

#[tokio::test]
async fn failed_logins_lock_an_account_from_that_address_only() {
    let (_dir, db) = common::sqlite("").await;
    let config = AuthRateLimitConfig {
        login_failures: rate(3, 15 * 60),
        ..AuthRateLimitConfig::off()
    };
    let (c, _) = module(&db, auth(), only(config)).await;
    for who in ["ada@example.com", "bob@example.com"] {
        let r = post(&c, "10.9.9.9", "/signup", &creds(who, "correct horse")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    for _ in 0..3 {
        let r = post(&c, "10.0.0.1", "/login", &creds("ada@example.com", "wrong")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    }
    // Ada from 10.0.0.1 is locked, even with the right password (and the same spelling
    // in other case is the same account).
    let r = post(
        &c,
        "10.0.0.1",
        "/login",
        &creds(" ADA@example.com", "correct horse"),
    )
    .await;
    // 15 min / 3: one more failure is allowed 5 min after the first.
    let after = assert_limited(&r, "login-failures", 3, 900);
    assert!((240..=300).contains(&after), "Retry-After {after}");
    // Not from elsewhere: nobody can lock Ada out of her account.
    let r = post(
        &c,
        "10.0.0.2",
        "/login",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Nor another account from the same address.
    let r = post(
        &c,
        "10.0.0.1",
        "/login",
        &creds("bob@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Unknown accounts are counted the same way: a lock says nothing about existence.
    for _ in 0..3 {
        let r = post(&c, "10.0.0.1", "/login", &creds("nobody@example.com", "x")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    }
    let r = post(&c, "10.0.0.1", "/login", &creds("nobody@example.com", "x")).await;
    assert_limited(&r, "login-failures", 3, 900);
}

#[tokio::test]
async fn successful_logins_are_not_counted_as_failures() {
    let (_dir, db) = common::sqlite("").await;
    let config = AuthRateLimitConfig {
        login_failures: rate(2, 15 * 60),
        ..AuthRateLimitConfig::off()
    };
    let (c, _) = module(&db, auth(), only(config)).await;
    let r = post(
        &c,
        "10.0.0.1",
        "/signup",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    for _ in 0..5 {
        let r = post(
            &c,
            "10.0.0.1",
            "/login",
            &creds("ada@example.com", "correct horse"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = post(&c, "10.0.0.1", "/login", &creds("ada@example.com", "wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(
        &c,
        "10.0.0.1",
        "/login",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "one failure of two: {}", r.text());
    let r = post(&c, "10.0.0.1", "/login", &creds("ada@example.com", "wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(
        &c,
        "10.0.0.1",
        "/login",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    assert_limited(&r, "login-failures", 2, 900);
}

#[tokio::test]
async fn login_attempts_and_signups_are_limited_per_address() {
    let (_dir, db) = common::sqlite("").await;
    let config = AuthRateLimitConfig {
        login: rate(3, 60),
        signup: rate(2, 3600),
        ..AuthRateLimitConfig::off()
    };
    let (c, _) = module(&db, auth(), only(config)).await;
    for n in 0..2 {
        let r = post(
            &c,
            "10.0.0.1",
            "/signup",
            &creds(&format!("u{n}@example.com"), "correct horse"),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    // Failed sign-ups count too (a 409 tells whether an address is taken).
    let r = post(
        &c,
        "10.0.0.1",
        "/signup",
        &creds("u0@example.com", "correct horse"),
    )
    .await;
    let after = assert_limited(&r, "signup", 2, 3600);
    assert!((1700..=1800).contains(&after), "Retry-After {after}");
    let r = post(
        &c,
        "10.0.0.2",
        "/signup",
        &creds("u2@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    // Every login attempt counts, good or bad, whatever the account.
    let attempts = [
        ("u0@example.com", "correct horse"),
        ("u1@example.com", "no"),
        ("x@example.com", "no"),
    ];
    for (email, password) in attempts {
        let r = post(&c, "10.0.0.3", "/login", &creds(email, password)).await;
        assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS);
    }
    let r = post(
        &c,
        "10.0.0.3",
        "/login",
        &creds("u0@example.com", "correct horse"),
    )
    .await;
    assert_limited(&r, "login", 3, 60);
    // Even a body the handler would refuse is charged first.
    let r = post(&c, "10.0.0.3", "/login", &json!({"nonsense": true})).await;
    assert_limited(&r, "login", 3, 60);
    let r = post(
        &c,
        "10.0.0.4",
        "/login",
        &creds("u0@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn ipv6_addresses_of_one_64_share_the_per_address_budgets() {
    let (_dir, db) = common::sqlite("").await;
    let config = AuthRateLimitConfig {
        login: rate(2, 60),
        ..AuthRateLimitConfig::off()
    };
    let (c, _) = module(&db, auth(), only(config)).await;
    let wrong = creds("ada@example.com", "wrong");
    // Two addresses of 2001:db8:1:2::/64: one client, one budget.
    let r = post(&c, "2001:db8:1:2::1", "/login", &wrong).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = post(&c, "2001:db8:1:2:ffff::9", "/login", &wrong).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = post(&c, "2001:db8:1:2:abcd::42", "/login", &wrong).await;
    assert_limited(&r, "login", 2, 60);
    // The next /64 is another client.
    let r = post(&c, "2001:db8:1:3::1", "/login", &wrong).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    // An IPv4-mapped address is its IPv4 address.
    let r = post(&c, "10.0.0.7", "/login", &wrong).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = post(&c, "::ffff:10.0.0.7", "/login", &wrong).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = post(&c, "10.0.0.7", "/login", &wrong).await;
    assert_limited(&r, "login", 2, 60);
}

#[tokio::test]
async fn password_resets_are_limited_per_account_and_address() {
    let (_dir, db) = common::sqlite("").await;
    let config = AuthRateLimitConfig {
        password_reset: rate(2, 3600),
        ..AuthRateLimitConfig::off()
    };
    let (c, _) = module(&db, auth(), only(config)).await;
    let reset = |ip: &'static str, email: &'static str| {
        let c = c.clone();
        async move { post(&c, ip, "/password-reset", &json!({"email": email})).await }
    };
    for _ in 0..2 {
        assert_eq!(
            reset("10.0.0.1", "ada@example.com").await.status,
            StatusCode::ACCEPTED
        );
    }
    assert_limited(
        &reset("10.0.0.1", "Ada@Example.com").await,
        "password-reset",
        2,
        3600,
    );
    // Another account from that address, the account from another address: their own.
    assert_eq!(
        reset("10.0.0.1", "bob@example.com").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        reset("10.0.0.2", "ada@example.com").await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn password_resets_are_limited_per_address_whatever_the_account() {
    let (_dir, db) = common::sqlite("").await;
    let config = AuthRateLimitConfig {
        password_reset: rate(2, 3600),
        password_reset_ip: rate(3, 3600),
        ..AuthRateLimitConfig::off()
    };
    let (c, _) = module(&db, auth(), only(config)).await;
    let reset = |ip: &'static str, email: String| {
        let c = c.clone();
        async move { post(&c, ip, "/password-reset", &json!({"email": email})).await }
    };
    // A distinct account each time: the per-(account, address) limit never trips.
    for n in 0..3 {
        let r = reset("10.0.0.1", format!("u{n}@example.com")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    }
    let r = reset("10.0.0.1", "u9@example.com".into()).await;
    assert_limited(&r, "password-reset-ip", 3, 3600);
    // Both policies are announced.
    assert!(
        r.header("ratelimit-policy")
            .unwrap()
            .contains("password-reset;q=2;w=3600")
    );
    // Whatever the body: it is charged before the body is read.
    let r = post(&c, "10.0.0.1", "/password-reset", &json!({"nonsense": 1})).await;
    assert_limited(&r, "password-reset-ip", 3, 3600);
    // Another address has its own budget.
    let r = reset("10.0.0.2", "u9@example.com".into()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

#[tokio::test]
async fn failed_token_redemptions_are_limited_per_address() {
    let (_dir, db) = common::sqlite("").await;
    let config = AuthRateLimitConfig {
        verification: rate(2, 3600),
        ..AuthRateLimitConfig::off()
    };
    let (c, outbox) = module(&db, auth(), only(config)).await;
    let r = post(
        &c,
        "10.0.0.9",
        "/signup",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let token = outbox
        .last(MailKind::VerifyEmail)
        .await
        .expect("verification mail");
    let junk = json!({"token": "0".repeat(64)});
    assert_eq!(
        post(&c, "10.0.0.1", "/verify-email", &junk).await.status,
        StatusCode::NOT_FOUND
    );
    let confirm = json!({"token": "1".repeat(64), "password": "a new password"});
    assert_eq!(
        post(&c, "10.0.0.1", "/password-reset/confirm", &confirm)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Two failures: the address is refused on both routes, even with a good token.
    let good = json!({"token": token});
    assert_limited(
        &post(&c, "10.0.0.1", "/verify-email", &good).await,
        "verification",
        2,
        3600,
    );
    assert_limited(
        &post(&c, "10.0.0.1", "/password-reset/confirm", &confirm).await,
        "verification",
        2,
        3600,
    );
    // Another address redeems it; successes are not counted.
    assert_eq!(
        post(&c, "10.0.0.2", "/verify-email", &good).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        post(&c, "10.0.0.2", "/verify-email", &junk).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&c, "10.0.0.2", "/verify-email", &junk).await.status,
        StatusCode::NOT_FOUND
    );
    assert_limited(
        &post(&c, "10.0.0.2", "/verify-email", &junk).await,
        "verification",
        2,
        3600,
    );
}

#[tokio::test]
async fn refreshes_are_limited_per_user_before_the_token_is_spent() {
    let (_dir, db) = common::sqlite("").await;
    let config = AuthRateLimitConfig {
        refresh: rate(2, 60),
        ..AuthRateLimitConfig::off()
    };
    let (c, _) = module(&db, auth(), only(config)).await;
    let refresh_of = |r: &TestResponse| {
        r.value()["data"]["refresh_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = post(
        &c,
        "10.0.0.9",
        "/signup",
        &creds("ada@example.com", "correct horse"),
    )
    .await;
    let mut token = refresh_of(&r);
    let r = post(
        &c,
        "10.0.0.9",
        "/signup",
        &creds("bob@example.com", "correct horse"),
    )
    .await;
    let bob = refresh_of(&r);
    // From any address: the budget is Ada's.
    for ip in ["10.0.0.1", "10.0.0.2"] {
        let r = post(&c, ip, "/refresh", &json!({"refresh_token": token})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        token = refresh_of(&r);
    }
    let r = post(&c, "10.0.0.3", "/refresh", &json!({"refresh_token": token})).await;
    assert_limited(&r, "refresh", 2, 60);
    // Refused before it was spent: a limited client is not signed out (the same token
    // would be a replay, revoking the family, had it been spent).
    let limits = AuthRateLimits::off();
    let store = AuthStore::new(&db).await.unwrap();
    let plain = AuthModule::new(auth(), store)
        .await
        .unwrap()
        .rate_limits(limits);
    let unlimited = TestClient::new(Router::new().nest("/auth", plain.router()));
    let r = post(
        &unlimited,
        "10.0.0.3",
        "/refresh",
        &json!({"refresh_token": token}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Bob has his own budget; unknown tokens are the handler's 401.
    let r = post(&c, "10.0.0.3", "/refresh", &json!({"refresh_token": bob})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = post(
        &c,
        "10.0.0.3",
        "/refresh",
        &json!({"refresh_token": "f".repeat(64)}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
}

/// `AuthModule::new` with `Auth::new` (no configuration) limits the routes with the
/// documented defaults; `Auth::from_config` with the `CHOPIN_RATE_LIMIT_*` settings.
#[tokio::test]
async fn the_limits_are_on_by_default_and_follow_the_configuration() {
    let (_dir, db) = common::sqlite("").await;
    let defaults = AuthRateLimitConfig::default();
    assert_eq!(defaults.login, rate(10, 60));
    assert_eq!(defaults.login_failures, rate(5, 900));
    assert_eq!(defaults.signup, rate(10, 3600));
    assert_eq!(defaults.password_reset, rate(5, 3600));
    assert_eq!(defaults.password_reset_ip, rate(20, 3600));
    assert_eq!(defaults.verification, rate(5, 3600));
    assert_eq!(defaults.refresh, rate(60, 60));
    let store = AuthStore::new(&db).await.unwrap();
    let plain = AuthModule::new(auth(), store).await.unwrap();
    assert_eq!(plain.limits().config(), &defaults);
    let c = TestClient::new(Router::new().nest("/auth", plain.router()));
    for n in 0..10 {
        let r = post(
            &c,
            "10.0.0.1",
            "/signup",
            &creds(&format!("d{n}@example.com"), "x"),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    }
    let r = post(&c, "10.0.0.1", "/signup", &creds("d@example.com", "x")).await;
    assert_limited(&r, "signup", 10, 3600);

    let config = common::config(&[
        ("CHOPIN_ENV", "test"),
        (
            "CHOPIN_JWT_SECRET",
            "auth-rate-limit-secret-of-at-least-32-bytes",
        ),
        ("CHOPIN_RATE_LIMIT_LOGIN", "2/1m"),
        ("CHOPIN_RATE_LIMIT_SIGNUP", "off"),
        ("CHOPIN_RATE_LIMIT_LOGIN_FAILURES", "off"),
        ("CHOPIN_TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    assert_eq!(config.rate_limit.auth.login, rate(2, 60));
    assert_eq!(config.rate_limit.auth.signup, None);
    assert_eq!(config.rate_limit.auth.refresh, rate(60, 60));
    let auth = Auth::from_config(&config).await.unwrap();
    assert!(!auth.route_limits().is_shared());
    let (c, _) = module(&db, auth, None).await;
    for n in 0..12 {
        let r = post(
            &c,
            "10.0.0.1",
            "/signup",
            &creds(&format!("e{n}@example.com"), "x"),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "signup is off: {}",
            r.text()
        );
    }
    // Behind a trusted proxy, the forwarded address is the client.
    let login = |forwarded: &'static str| {
        let c = c.clone();
        async move {
            let req = Request::builder()
                .method("POST")
                .uri("/auth/login")
                .header("content-type", "application/json")
                .header("x-forwarded-for", forwarded)
                .extension(ConnectInfo("10.0.0.1:40000".parse::<SocketAddr>().unwrap()))
                .body(Body::from(creds("a@example.com", "wrong").to_string()))
                .unwrap();
            c.request(req).await
        }
    };
    assert_eq!(login("198.51.100.1").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(login("198.51.100.1").await.status, StatusCode::UNAUTHORIZED);
    assert_limited(&login("198.51.100.1").await, "login", 2, 60);
    assert_eq!(login("198.51.100.2").await.status, StatusCode::UNAUTHORIZED);

    let e = {
        let vars = [
            ("CHOPIN_ENV", "test"),
            ("CHOPIN_RATE_LIMIT_REFRESH", "lots"),
        ];
        chopin_core::config::Config::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .expect_err("refused")
        .to_string()
    };
    assert!(e.contains("CHOPIN_RATE_LIMIT_REFRESH"), "{e}");
}

/// Two instances (two `Auth::from_config`, as two processes) sharing Redis share the
/// counters, because the revocations are in Redis.
#[tokio::test]
async fn the_limits_hold_across_instances_sharing_redis() {
    let Some(url) = redis_url_or_skip().await else {
        return;
    };
    let (_dir, db) = common::sqlite("").await;
    let namespace = unique_namespace();
    let config = common::config(&[
        ("CHOPIN_ENV", "test"),
        (
            "CHOPIN_JWT_SECRET",
            "auth-rate-limit-secret-of-at-least-32-bytes",
        ),
        ("CHOPIN_AUTH_REVOCATION", "redis"),
        ("REDIS_URL", &url),
        ("CHOPIN_CACHE_NAMESPACE", &namespace),
        ("CHOPIN_CACHE_TIMEOUT", "1s"),
        ("CHOPIN_RATE_LIMIT_SIGNUP", "3/1h"),
    ]);
    let a = Auth::from_config(&config).await.unwrap();
    let b = Auth::from_config(&config).await.unwrap();
    assert!(a.route_limits().is_shared());
    let (a, _) = module(&db, a, None).await;
    let (b, _) = module(&db, b, None).await;
    let mut statuses = Vec::new();
    for n in 0..5 {
        let c = if n % 2 == 0 { &a } else { &b };
        let r = post(
            c,
            "203.0.113.60",
            "/signup",
            &creds(&format!("r{n}@example.com"), "correct horse"),
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_limited(&r, "signup", 3, 3600);
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}|ratelimit:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, [format!("{namespace}|ratelimit:signup:203.0.113.60")]);
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}
