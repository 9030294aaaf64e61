//! The mountable auth module over HTTP, on SQLite and PostgreSQL: sign-up, login, me,
//! refresh rotation and replay detection, logout (also across two instances sharing Redis),
//! e-mail verification, password reset through the mailer, namespaced migrations, and login
//! timing for known vs unknown accounts.

mod common;

use chopin_core::config::Environment;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use chopin_core::auth::TokenSettings;
use chopin_core::auth::{
    Auth, AuthModule, AuthRateLimits, AuthStore, JwtKeys, Mail, MailKind, Mailer,
};
use chopin_core::db::Db;
use chopin_core::error::BoxError;
use chopin_core::testing::{TestClient, TestResponse, redis_url_or_skip, unique_namespace};
use http::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const SECRET: &[u8] = b"auth-routes-secret-of-at-least-32-bytes";

/// A mailer that keeps what it was asked to send.
#[derive(Clone, Default)]
struct Outbox(Arc<Mutex<Vec<Mail>>>);

impl Outbox {
    fn last(&self, kind: MailKind, to: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m.kind == kind && m.to == to)
            .map(|m| m.token.clone())
    }

    /// The last mail of `kind` to `to`, waiting up to 5 s for it (mails are sent after the
    /// answer, by the mail queue).
    async fn wait_for(&self, kind: MailKind, to: &str) -> Option<String> {
        for _ in 0..100 {
            if let Some(token) = self.last(kind, to) {
                return Some(token);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Mailer for Outbox {
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> {
        self.0.lock().unwrap().push(mail);
        Box::pin(async { Ok(()) })
    }
}

struct Instance {
    client: TestClient,
    outbox: Outbox,
    store: AuthStore,
}

async fn instance_with(db: &Db, auth: Auth) -> Instance {
    let outbox = Outbox::default();
    let store = AuthStore::new(db).await.expect("auth migrations");
    let module = AuthModule::new(auth, store.clone())
        .await
        .unwrap()
        .mailer(outbox.clone());
    let router: Router = Router::new().nest("/auth", module.router());
    Instance {
        client: TestClient::new(router),
        outbox,
        store,
    }
}

async fn instance(db: &Db) -> Instance {
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    instance_with(db, auth).await
}

fn creds(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

fn tokens(r: &TestResponse) -> (String, String) {
    let v = r.value();
    let access = v["data"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token in {v}"))
        .to_string();
    let refresh = v["data"]["refresh_token"].as_str().unwrap().to_string();
    (access, refresh)
}

async fn signup(i: &Instance, email: &str, password: &str) -> (String, String) {
    let r = i
        .client
        .post_json("/auth/signup", &creds(email, password))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    tokens(&r)
}

/// Sign-up, login, me, refresh rotation, replay, logout: the whole life of a session.
async fn session_lifecycle(db: &Db) {
    let i = instance(db).await;
    let (access, refresh) = signup(&i, "Ada@Example.com", "correct horse").await;

    let me = i.client.with_bearer(&access).get("/auth/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert_eq!(me.value()["data"]["email"], json!("ada@example.com"));
    assert_eq!(me.value()["data"]["emailVerified"], json!(false));
    assert!(!me.text().contains("argon2"), "no hash in responses");

    let login = i
        .client
        .post_json("/auth/login", &creds("ada@example.com", "correct horse"))
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    assert_eq!(login.value()["data"]["token_type"], json!("Bearer"));
    assert_eq!(login.value()["data"]["expires_in"], json!(900));

    // Refresh rotates: a new refresh token each time.
    let r1 = i
        .client
        .post_json("/auth/refresh", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(r1.status, StatusCode::OK, "{}", r1.text());
    let (access2, refresh2) = tokens(&r1);
    assert_ne!(refresh2, refresh);
    assert_eq!(
        i.client.with_bearer(&access2).get("/auth/me").await.status,
        StatusCode::OK
    );

    // Replaying the spent token is refused and revokes the whole family: the token that
    // replaced it stops working too.
    let replay = i
        .client
        .post_json("/auth/refresh", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        replay.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let after = i
        .client
        .post_json("/auth/refresh", &json!({"refresh_token": refresh2}))
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.text());
    // And the family's access tokens are revoked with it: the thief's as well as the user's.
    for token in [&access, &access2] {
        let r = i.client.with_bearer(token).get("/auth/me").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        assert!(r.text().contains("revoked"));
    }

    // The other login's family is untouched.
    let (access3, refresh3) = tokens(&login);
    let r3 = i
        .client
        .post_json("/auth/refresh", &json!({"refresh_token": refresh3}))
        .await;
    assert_eq!(r3.status, StatusCode::OK, "{}", r3.text());
    let (access4, refresh4) = tokens(&r3);

    // Logout revokes the access token and the refresh family.
    let out = i
        .client
        .with_bearer(&access3)
        .post_json("/auth/logout", &json!({"refresh_token": refresh4}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text());
    let me = i.client.with_bearer(&access3).get("/auth/me").await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert!(me.text().contains("revoked"));
    let r = i
        .client
        .post_json("/auth/refresh", &json!({"refresh_token": refresh4}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The access token issued with that refresh token went too.
    let r = i.client.with_bearer(&access4).get("/auth/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Unknown refresh tokens are plain 401s.
    let r = i
        .client
        .post_json("/auth/refresh", &json!({"refresh_token": "nope"}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn session_lifecycle_on_sqlite() {
    let (_dir, db) = common::sqlite("").await;
    session_lifecycle(&db).await;
}

#[tokio::test]
async fn session_lifecycle_on_postgres() {
    let Some((_pg, db)) = common::postgres("").await else {
        return;
    };
    session_lifecycle(&db).await;
}

#[tokio::test]
async fn replaying_a_rotated_refresh_token_revokes_the_family() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    let (_, first) = signup(&i, "jo@example.com", "a password").await;
    let refresh = |token: &str| {
        let body = json!({ "refresh_token": token });
        let client = i.client.clone();
        async move { client.post_json("/auth/refresh", &body).await }
    };
    // Two legitimate rotations.
    let (_, second) = tokens(&refresh(&first).await);
    let r = refresh(&second).await;
    assert_eq!(r.status, StatusCode::OK);
    let (latest_access, latest) = tokens(&r);
    // A thief replays the first (rotated) token: refused, and the family is gone.
    let replay = refresh(&first).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert!(replay.text().contains("already used"), "{}", replay.text());
    assert_eq!(refresh(&latest).await.status, StatusCode::UNAUTHORIZED);
    let me = i.client.with_bearer(&latest_access).get("/auth/me").await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    // Signing in again starts a new, working family.
    let login = i
        .client
        .post_json("/auth/login", &creds("jo@example.com", "a password"))
        .await;
    let (_, fresh) = tokens(&login);
    assert_eq!(refresh(&fresh).await.status, StatusCode::OK);
}

/// Two uses of the same refresh token at the same time: exactly one wins, and the loser's
/// reuse detection also kills what the winner obtained (its refresh and access tokens).
async fn concurrent_refreshes_with_one_token(db: &Db) {
    let i = instance(db).await;
    for round in 0..4 {
        let email = format!("race{round}@example.com");
        let (_, token) = signup(&i, &email, "a password").await;
        let body = json!({ "refresh_token": token });
        let (a, b) = tokio::join!(
            i.client.post_json("/auth/refresh", &body),
            i.client.post_json("/auth/refresh", &body)
        );
        let (winner, loser) = match (a.status, b.status) {
            (StatusCode::OK, StatusCode::UNAUTHORIZED) => (a, b),
            (StatusCode::UNAUTHORIZED, StatusCode::OK) => (b, a),
            other => panic!("round {round}: expected one 200 and one 401, got {other:?}"),
        };
        assert!(loser.text().contains("already used"), "{}", loser.text());
        let (access, refresh) = tokens(&winner);
        let again = i
            .client
            .post_json("/auth/refresh", &json!({ "refresh_token": refresh }))
            .await;
        assert_eq!(
            again.status,
            StatusCode::UNAUTHORIZED,
            "round {round}: the winner's refresh token must die with its family"
        );
        let me = i.client.with_bearer(&access).get("/auth/me").await;
        assert_eq!(
            me.status,
            StatusCode::UNAUTHORIZED,
            "round {round}: the winner's access token must be revoked"
        );
    }
}

/// A thief replays a spent refresh token while the user rotates the current one: whatever
/// the order, the family ends dead, including anything the user's rotation produced.
async fn replay_racing_a_rotation(db: &Db) {
    let i = instance(db).await;
    for round in 0..4 {
        let email = format!("replay{round}@example.com");
        let (_, first) = signup(&i, &email, "a password").await;
        let r = i
            .client
            .post_json("/auth/refresh", &json!({ "refresh_token": first }))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let (_, current) = tokens(&r);
        let (current, spent) = (
            json!({ "refresh_token": current }),
            json!({ "refresh_token": first }),
        );
        let (user, thief) = tokio::join!(
            i.client.post_json("/auth/refresh", &current),
            i.client.post_json("/auth/refresh", &spent)
        );
        assert_eq!(thief.status, StatusCode::UNAUTHORIZED, "round {round}");
        if user.status == StatusCode::OK {
            let (access, refresh) = tokens(&user);
            let again = i
                .client
                .post_json("/auth/refresh", &json!({ "refresh_token": refresh }))
                .await;
            assert_eq!(again.status, StatusCode::UNAUTHORIZED, "round {round}");
            let me = i.client.with_bearer(&access).get("/auth/me").await;
            assert_eq!(me.status, StatusCode::UNAUTHORIZED, "round {round}");
        } else {
            assert_eq!(user.status, StatusCode::UNAUTHORIZED, "round {round}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_racing_a_rotation_on_sqlite() {
    let (_dir, db) = common::sqlite("").await;
    replay_racing_a_rotation(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_racing_a_rotation_on_postgres() {
    let Some((_pg, db)) = common::postgres("").await else {
        return;
    };
    replay_racing_a_rotation(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_with_one_token_on_sqlite() {
    let (_dir, db) = common::sqlite("").await;
    concurrent_refreshes_with_one_token(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_with_one_token_on_postgres() {
    let Some((_pg, db)) = common::postgres("").await else {
        return;
    };
    concurrent_refreshes_with_one_token(&db).await;
}

#[tokio::test]
async fn signup_validates_and_refuses_duplicates() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    let r = i
        .client
        .post_json("/auth/signup", &creds("not-an-email", "short"))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<String> = r.value()["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, vec!["email", "password"]);
    signup(&i, "bob@example.com", "long enough").await;
    let r = i
        .client
        .post_json("/auth/signup", &creds("BOB@example.com", "another one"))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = i
        .client
        .post_json("/auth/signup", &json!({"email": 3}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
}

#[tokio::test]
async fn every_login_failure_says_the_same_thing() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    signup(&i, "carol@example.com", "the password").await;
    let wrong_password = i
        .client
        .post_json(
            "/auth/login",
            &creds("carol@example.com", "not the password"),
        )
        .await;
    let unknown = i
        .client
        .post_json("/auth/login", &creds("nobody@example.com", "the password"))
        .await;
    for r in [&wrong_password, &unknown] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.value()["error"]["message"],
            json!("invalid email or password")
        );
    }
    assert_eq!(
        wrong_password.value()["error"]["code"],
        unknown.value()["error"]["code"]
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn login_takes_as_long_for_an_unknown_account_as_for_a_known_one() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    signup(&i, "dave@example.com", "the password").await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    // Interleaved, so machine noise hits both series alike; medians ignore outliers.
    for round in 0..15 {
        for known_first in [round % 2 == 0, round % 2 != 0] {
            let (email, series) = if known_first {
                ("dave@example.com", &mut known)
            } else {
                ("eve-unknown@example.com", &mut unknown)
            };
            let start = Instant::now();
            let r = i
                .client
                .post_json("/auth/login", &creds(email, "a wrong password"))
                .await;
            series.push(start.elapsed());
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
    }
    let (k, u) = (median(known), median(unknown));
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    eprintln!("login median: known {k:?}, unknown {u:?}, ratio {ratio:.2}");
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown/known login time ratio {ratio:.2} (known {k:?}, unknown {u:?})"
    );
    // And the work is real argon2, not a shortcut: well above a plain query.
    assert!(
        u > Duration::from_millis(2),
        "unknown-account login took {u:?}"
    );
}

#[tokio::test]
async fn password_reset_goes_through_the_mailer_and_signs_out_everywhere() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    let (access, refresh) = signup(&i, "frank@example.com", "old password").await;

    // Same answer whether or not the account exists; the token is never in a response.
    let r = i
        .client
        .post_json(
            "/auth/password-reset",
            &json!({"email": "frank@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let unknown = i
        .client
        .post_json(
            "/auth/password-reset",
            &json!({"email": "ghost@example.com"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::ACCEPTED);
    assert_eq!(r.text(), unknown.text());
    let token = i
        .outbox
        .wait_for(MailKind::PasswordReset, "frank@example.com")
        .await
        .expect("reset mail sent");
    assert!(!r.text().contains(&token));
    // A second reset request: its token dies when the first one is used.
    let r = i
        .client
        .post_json(
            "/auth/password-reset",
            &json!({"email": "frank@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let mut other = None;
    for _ in 0..100 {
        other = i
            .outbox
            .last(MailKind::PasswordReset, "frank@example.com")
            .filter(|t| *t != token);
        if other.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let other = other.expect("second reset mail sent");
    assert!(
        i.outbox
            .last(MailKind::PasswordReset, "ghost@example.com")
            .is_none()
    );
    assert_eq!(
        i.client.with_bearer(&access).get("/auth/me").await.status,
        StatusCode::OK
    );

    let bad = i
        .client
        .post_json(
            "/auth/password-reset/confirm",
            &json!({"token": "forged", "password": "new password"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
    assert_eq!(bad.value()["error"]["code"], "NOT_FOUND");
    let ok = i
        .client
        .post_json(
            "/auth/password-reset/confirm",
            &json!({"token": token, "password": "new password"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.text());
    // Single use.
    let again = i
        .client
        .post_json(
            "/auth/password-reset/confirm",
            &json!({"token": token, "password": "newer password"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    let old = i
        .client
        .post_json("/auth/login", &creds("frank@example.com", "old password"))
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = i
        .client
        .post_json("/auth/login", &creds("frank@example.com", "new password"))
        .await;
    assert_eq!(new.status, StatusCode::OK);
    let r = i
        .client
        .post_json("/auth/refresh", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "old sessions end");
    let me = i.client.with_bearer(&access).get("/auth/me").await;
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "old access tokens are revoked"
    );
    let stale = i
        .client
        .post_json(
            "/auth/password-reset/confirm",
            &json!({"token": other, "password": "third password"}),
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::NOT_FOUND,
        "other reset tokens are spent"
    );
}

/// The logout body is optional, as its spec says: none, an empty one or `null` revoke the
/// access token alone; a body that is present must be JSON.
#[tokio::test]
async fn logout_takes_an_optional_json_body() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    let logout = |access: &str, content_type: Option<&str>, body: &'static str| {
        let mut request = http::Request::post("/auth/logout");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(axum::body::Body::from(body)).unwrap();
        let client = i.client.with_bearer(access);
        async move { client.request(request).await }
    };
    for (n, (content_type, body)) in [
        (None, ""),
        (Some("application/json"), ""),
        (Some("application/json"), "null"),
        (Some("application/json"), "{}"),
    ]
    .into_iter()
    .enumerate()
    {
        let (access, _) = signup(&i, &format!("hal{n}@example.com"), "a password").await;
        let out = logout(&access, content_type, body).await;
        assert_eq!(
            out.status,
            StatusCode::NO_CONTENT,
            "{body:?}: {}",
            out.text()
        );
        let me = i.client.with_bearer(&access).get("/auth/me").await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{body:?}");
    }
    let (access, _) = signup(&i, "hal@example.com", "a password").await;
    let wrong = logout(&access, Some("text/plain"), "refresh_token=x").await;
    assert_eq!(
        wrong.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        wrong.text()
    );
    let broken = logout(&access, Some("application/json"), "{").await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST, "{}", broken.text());
    // Refused bodies revoke nothing.
    let me = i.client.with_bearer(&access).get("/auth/me").await;
    assert_eq!(me.status, StatusCode::OK);
}

/// Resources use camelCase keys; the token pair keeps OAuth's names (RFC 6749).
#[tokio::test]
async fn account_keys_are_camel_case_and_tokens_keep_oauth_names() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    let (access, _) = signup(&i, "ivy@example.com", "a password").await;
    let me = i.client.with_bearer(&access).get("/auth/me").await.value();
    let mut keys: Vec<&str> = me["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["createdAt", "email", "emailVerified", "id", "roles"]);
    let login = i
        .client
        .post_json("/auth/login", &creds("ivy@example.com", "a password"))
        .await
        .value();
    let mut keys: Vec<&str> = login["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );
    // A password reset for something that is not an address is refused like sign-up's.
    let r = i
        .client
        .post_json("/auth/password-reset", &json!({"email": "not an address"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.value()["error"]["fields"][0]["field"], "email");
}

/// A mailer that takes its time.
#[derive(Clone, Default)]
struct SlowOutbox(Outbox);

impl Mailer for SlowOutbox {
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.0.send(mail).await
        })
    }
}

/// `/password-reset` answers before any lookup, insert or mail: a known account answers as
/// fast as an unknown one, even with a mailer that takes 2 s.
#[tokio::test]
async fn password_reset_answers_before_doing_the_work() {
    let (_dir, db) = common::sqlite("").await;
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    let slow = SlowOutbox::default();
    let module = AuthModule::with_mailer(auth, AuthStore::new(&db).await.unwrap(), slow.clone())
        .await
        .unwrap();
    let client = TestClient::new(Router::new().nest("/auth", module.router()));
    let r = client
        .post_json("/auth/signup", &creds("slow@example.com", "a password"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    for email in ["slow@example.com", "nobody@example.com"] {
        let started = Instant::now();
        let r = client
            .post_json("/auth/password-reset", &json!({ "email": email }))
            .await;
        let took = started.elapsed();
        assert_eq!(r.status, StatusCode::ACCEPTED);
        assert!(
            took < Duration::from_secs(1),
            "{email}: answered after {took:?}"
        );
    }
    assert!(
        slow.0
            .wait_for(MailKind::PasswordReset, "slow@example.com")
            .await
            .is_some()
    );
}

/// A mailer that sends nothing until the test lets it (one mail per permit).
#[derive(Clone)]
struct GatedOutbox {
    outbox: Outbox,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Mailer for GatedOutbox {
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> {
        Box::pin(async move {
            self.gate.acquire().await.expect("gate").forget();
            self.outbox.send(mail).await
        })
    }
}

fn mail_queue_overflow_metric() -> f64 {
    chopin_core::metrics::global()
        .encode()
        .lines()
        .find_map(|line| {
            line.strip_prefix("chopin_auth_mail_queue_overflow_total ")
                .map(|v| v.trim().parse::<f64>().expect("a number"))
        })
        .unwrap_or(0.0)
}

/// The mail queue is bounded: with the one worker stuck on a mailer that does not answer and
/// the queue full, `/password-reset` still answers 202 with the same body, for a known and an
/// unknown address alike, and the dropped work is counted; the queued work runs once the
/// mailer answers again.
#[tokio::test]
async fn a_full_mail_queue_answers_the_same_and_counts_the_overflow() {
    let (_dir, db) = common::sqlite("").await;
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    let gated = GatedOutbox {
        outbox: Outbox::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let module = AuthModule::with_mailer(auth, AuthStore::new(&db).await.unwrap(), gated.clone())
        .await
        .unwrap()
        .rate_limits(AuthRateLimits::off())
        .mail_queue(2, 1);
    assert_eq!(module.mail_queue_limits(), (2, 1));
    let client = TestClient::new(Router::new().nest("/auth", module.router()));
    // The verification mail takes the only worker, which waits on the gate.
    let r = client
        .post_json("/auth/signup", &creds("queue@example.com", "a password"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metric_before = mail_queue_overflow_metric();
    let mut answers = Vec::new();
    for round in 0..6 {
        let email = if round % 2 == 0 {
            "queue@example.com"
        } else {
            "nobody@example.com"
        };
        let r = client
            .post_json("/auth/password-reset", &json!({ "email": email }))
            .await;
        answers.push((r.status, r.body.clone()));
    }
    let (status, body) = &answers[0];
    assert_eq!(*status, StatusCode::ACCEPTED);
    for answer in &answers {
        assert_eq!(
            (&answer.0, &answer.1),
            (status, body),
            "a full queue answers the same"
        );
    }
    // Two resets queued behind the stuck mail; the other four dropped.
    assert_eq!(module.mail_queue_overflow(), 4);
    assert!(
        mail_queue_overflow_metric() - metric_before >= 4.0,
        "chopin_auth_mail_queue_overflow_total rose"
    );
    // Let the mailer answer: the verification mail and the one queued reset of the known
    // address go out (the other queued reset is for an unknown address: no mail).
    gated.gate.add_permits(10);
    assert!(
        gated
            .outbox
            .wait_for(MailKind::PasswordReset, "queue@example.com")
            .await
            .is_some()
    );
    assert!(
        gated
            .outbox
            .last(MailKind::VerifyEmail, "queue@example.com")
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resets = gated
        .outbox
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.kind == MailKind::PasswordReset)
        .count();
    assert_eq!(resets, 1, "the dropped resets did nothing");
}

#[tokio::test]
async fn email_verification_uses_the_mailed_token() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    let (access, _) = signup(&i, "gina@example.com", "a password").await;
    let token = i
        .outbox
        .wait_for(MailKind::VerifyEmail, "gina@example.com")
        .await
        .expect("verification mail sent");
    let r = i
        .client
        .post_json("/auth/verify-email", &json!({"token": "wrong"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = i
        .client
        .post_json("/auth/verify-email", &json!({"token": token}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let me = i.client.with_bearer(&access).get("/auth/me").await;
    assert_eq!(me.value()["data"]["emailVerified"], json!(true));
}

#[tokio::test]
async fn roles_set_in_the_store_reach_the_next_token() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    let (access, _) = signup(&i, "hal@example.com", "a password").await;
    let me = i.client.with_bearer(&access).get("/auth/me").await;
    let id = me.value()["data"]["id"].as_i64().unwrap();
    i.store.set_roles(id, &["admin", "editor"]).await.unwrap();
    let login = i
        .client
        .post_json("/auth/login", &creds("hal@example.com", "a password"))
        .await;
    let (access, _) = tokens(&login);
    let part = access.split('.').nth(1).unwrap();
    let payload: Value = serde_json::from_slice(&decode_b64url(part)).unwrap();
    assert_eq!(payload["roles"], json!(["admin", "editor"]));
    assert_eq!(payload["sub"], json!(id.to_string()));
    assert!(i.store.set_roles(id, &["two words"]).await.is_err());
}

fn decode_b64url(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= (T.iter().position(|t| t == c).unwrap() as u32) << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[tokio::test]
async fn auth_migrations_live_in_their_own_table() {
    let (_dir, db) = common::sqlite("").await;
    AuthStore::new(&db).await.unwrap();
    // Applying twice is a no-op.
    AuthStore::new(&db).await.unwrap();
    let rows = db
        .conn()
        .query_all_raw(Statement::from_string(
            db.conn().get_database_backend(),
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        ))
        .await
        .unwrap();
    let names: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect();
    assert!(
        names.contains(&"chopin_auth_migrations".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"chopin_auth_users".to_string()));
    assert!(names.contains(&"chopin_auth_refresh_tokens".to_string()));
    assert!(
        !names.contains(&"seaql_migrations".to_string()),
        "the application's migration table is left alone: {names:?}"
    );
}

/// Two full `App`s built from the same configuration (`CHOPIN_AUTH_REVOCATION=redis`), sharing
/// one database and one Redis, as two instances behind a load balancer.
#[tokio::test]
async fn logout_on_one_instance_is_seen_by_another_sharing_redis() {
    let Some(url) = redis_url_or_skip().await else {
        return;
    };
    let Some((_pg, db)) = common::postgres("").await else {
        return;
    };
    let namespace = unique_namespace();
    let secret = std::str::from_utf8(SECRET).unwrap();
    let config = common::config(&[
        ("CHOPIN_ENV", "production"),
        ("CHOPIN_JWT_SECRET", secret),
        ("CHOPIN_AUTH_REVOCATION", "redis"),
        ("REDIS_URL", &url),
        ("CHOPIN_CACHE_NAMESPACE", &namespace),
        ("CHOPIN_CACHE_TIMEOUT", "1s"),
    ]);
    let app = || async {
        let auth = Auth::from_config(&config).await.unwrap();
        let store = AuthStore::new(&db).await.unwrap();
        let module = AuthModule::with_mailer(auth.clone(), store, Outbox::default())
            .await
            .unwrap();
        TestClient::new(
            chopin_core::App::new(config.clone())
                .auth(&auth)
                .router(Router::new().nest("/auth", module.router()))
                .into_router(),
        )
    };
    let a = app().await;
    let b = app().await;
    let r = a
        .post_json("/auth/signup", &creds("ivy@example.com", "a password"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let (access, _) = tokens(&r);
    assert_eq!(
        b.with_bearer(&access).get("/auth/me").await.status,
        StatusCode::OK
    );
    let out = a
        .with_bearer(&access)
        .post_json("/auth/logout", &json!({}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let r = b.with_bearer(&access).get("/auth/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert!(r.text().contains("revoked"));
    // The cache API cannot reach the revocation: even deleting every cache key of the
    // namespace leaves it in force.
    let cache = chopin_core::cache::Cache::redis(&config.cache)
        .await
        .unwrap();
    cache.delete_prefix("").await.unwrap();
    let r = b.with_bearer(&access).get("/auth/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    // The shared store is in the readiness check.
    let ready = b.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert!(ready.text().contains("auth"), "{}", ready.text());

    // The revocation expires with the token: its Redis key has a TTL no longer than the
    // token's remaining life plus the leeway.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}|auth:revoked:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= (900 + 30) * 1000, "ttl {ttl}");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// In production the development mailer (which logs tokens) is refused at start-up; a real
/// mailer is accepted, and a development mailer swapped in later sends nothing.
#[tokio::test]
async fn production_refuses_the_logging_mailer() {
    let (_dir, db) = common::sqlite("").await;
    let secret = std::str::from_utf8(SECRET).unwrap();
    let config = chopin_core::config::Config::from_lookup(|k| match k {
        "CHOPIN_ENV" => Some("production".into()),
        "CHOPIN_JWT_SECRET" => Some(secret.into()),
        _ => None,
    })
    .unwrap();
    let auth = Auth::from_config(&config).await.unwrap();
    let store = AuthStore::new(&db).await.unwrap();
    let err = AuthModule::new(auth.clone(), store.clone())
        .await
        .expect_err("LogMailer in production");
    assert!(err.to_string().contains("real Mailer"), "{err}");
    let err = AuthModule::with_mailer(auth.clone(), store.clone(), chopin_core::auth::LogMailer)
        .await
        .expect_err("LogMailer in production");
    assert!(err.to_string().contains("with_mailer"), "{err}");

    let outbox = Outbox::default();
    let module = AuthModule::with_mailer(auth.clone(), store, outbox.clone())
        .await
        .expect("a real mailer is fine in production");
    let client = TestClient::new(Router::new().nest("/auth", module.router()));
    let r = client
        .post_json("/auth/signup", &creds("prod@example.com", "a password"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert!(
        outbox
            .wait_for(MailKind::VerifyEmail, "prod@example.com")
            .await
            .is_some()
    );
    // Development stays as it was.
    let dev = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    assert!(
        AuthModule::new(dev, AuthStore::new(&db).await.unwrap())
            .await
            .is_ok()
    );
}

/// Argon2 work is bounded: many concurrent hashes never run more than `max_concurrent` at
/// once (the rest queue), and all of them complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_work_is_bounded_by_a_semaphore() {
    use chopin_core::auth::password;
    let limit = password::max_concurrent();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(password::running());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            peak
        })
    };
    let jobs: Vec<_> = (0..limit * 3)
        .map(|n| tokio::spawn(async move { password::hash(&format!("password {n}")).await }))
        .collect();
    for job in jobs {
        assert!(job.await.unwrap().unwrap().starts_with("$argon2id$"));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = watcher.await.unwrap();
    assert!(peak >= 1, "the watcher saw work running");
    assert!(peak <= limit, "peak {peak} > limit {limit}");
}

/// Sign-up and the password-reset request refuse an address a mailer could read as several
/// recipients, a header or a quoted string — 422 with the `email` field, before anything is
/// stored or mailed.
#[tokio::test]
async fn addresses_that_are_not_one_plain_mailbox_are_refused_before_anything_happens() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    for email in [
        "a@evil.com,x@corp.com",
        "a@evil.com;x@corp.com",
        "a@b@corp.com",
        "\"a@evil.com\"@corp.com",
        "\"ada\"@corp.com",
        "ada@corp.com\r\nBcc: x@evil.com",
        "ada\u{0}@corp.com",
        "ada@corp.com\t",
    ] {
        let r = i
            .client
            .post_json("/auth/signup", &creds(email, "a good password"))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{email:?}: {}",
            r.text()
        );
        assert_eq!(r.error_code().as_deref(), Some("VALIDATION_FAILED"));
        let fields = &r.value()["error"]["fields"];
        assert_eq!(
            fields.as_array().map(Vec::len),
            Some(1),
            "{email:?}: {fields}"
        );
        assert_eq!(fields[0]["field"], "email");
        assert_eq!(fields[0]["code"], "email");
        let r = i
            .client
            .post_json("/auth/password-reset", &json!({ "email": email }))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{email:?}");
        assert_eq!(r.value()["error"]["fields"][0]["field"], "email");
    }
    // Nothing was stored, nothing was mailed.
    let rows = db
        .conn()
        .query_all_raw(Statement::from_string(
            db.conn().get_database_backend(),
            "SELECT id FROM chopin_auth_users",
        ))
        .await
        .unwrap();
    assert!(rows.is_empty(), "{} accounts were created", rows.len());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(i.outbox.0.lock().unwrap().is_empty());
    // An ordinary address still signs up.
    signup(&i, "ada@corp.com", "a good password").await;
}

/// Serve `module` in an `App` (shutdown timeout `grace`) that drains its mail queue at
/// shutdown; sign up `accounts` (each queues a verification mail behind `gated`), then
/// shut down. Returns how long the server took to return after the signal.
async fn signups_then_shutdown(
    db: &Db,
    gated: &GatedOutbox,
    grace: Duration,
    accounts: usize,
    release_after: Option<Duration>,
) -> Duration {
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    let module = AuthModule::with_mailer(auth, AuthStore::new(db).await.unwrap(), gated.clone())
        .await
        .unwrap()
        .rate_limits(AuthRateLimits::off())
        .mail_queue(16, 1);
    let mut config = chopin_core::config::Config::for_environment(Environment::Development);
    config.http.shutdown_timeout = grace;
    let app = chopin_core::App::new(config)
        .auth_module(&module)
        .router(Router::new().nest("/auth", module.router()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_with(listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    for i in 0..accounts {
        let r = http
            .post(format!("{base}/auth/signup"))
            .json(&creds(
                &format!("drain{i}-{}@example.com", grace.as_millis()),
                "a password",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let signalled = Instant::now();
    stop.send(()).unwrap();
    if let Some(after) = release_after {
        let gate = gated.gate.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            gate.add_permits(1000);
        });
    }
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the server returns")
        .unwrap()
        .expect("served");
    signalled.elapsed()
}

fn verification_mails(outbox: &Outbox) -> usize {
    outbox
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.kind == MailKind::VerifyEmail)
        .count()
}

/// Graceful shutdown drains the mail queue of an `App::auth_module`: queued mails go out
/// before `serve_with` returns, within the shutdown timeout; a mailer that does not answer
/// holds the shutdown no longer than that timeout, and what was left is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_the_mail_queue_within_the_shutdown_timeout() {
    let (_dir, db) = common::sqlite("").await;
    // The mailer answers 300 ms after the signal: the three queued mails go out first.
    let gated = GatedOutbox {
        outbox: Outbox::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let took = signups_then_shutdown(
        &db,
        &gated,
        Duration::from_secs(5),
        3,
        Some(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(
        verification_mails(&gated.outbox),
        3,
        "every queued mail was sent before serve_with returned"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // A mailer that never answers: the shutdown waits the timeout (500 ms), not longer.
    let hung = GatedOutbox {
        outbox: Outbox::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let took = signups_then_shutdown(&db, &hung, Duration::from_millis(500), 3, None).await;
    eprintln!("shutdown with a hung mailer took {took:?} (timeout 500 ms)");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert_eq!(verification_mails(&hung.outbox), 0);
}

/// `CHOPIN_AUTH_MAIL_QUEUE` and `CHOPIN_AUTH_MAIL_WORKERS` size the module's queue.
#[tokio::test]
async fn the_mail_queue_size_comes_from_the_configuration() {
    let (_dir, db) = common::sqlite("").await;
    let vars = [
        ("CHOPIN_AUTH_MAIL_QUEUE", "16"),
        ("CHOPIN_AUTH_MAIL_WORKERS", "2"),
    ];
    let config = chopin_core::config::Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let auth = Auth::from_config(&config).await.unwrap();
    assert_eq!(auth.mail_queue_limits(), (16, 2));
    let module = AuthModule::new(auth, AuthStore::new(&db).await.unwrap())
        .await
        .unwrap();
    assert_eq!(module.mail_queue_limits(), (16, 2));
    // Without them, the defaults.
    let config = chopin_core::config::Config::from_lookup(|_| None).unwrap();
    let auth = Auth::from_config(&config).await.unwrap();
    let module = AuthModule::new(auth, AuthStore::new(&db).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        module.mail_queue_limits(),
        (
            chopin_core::auth::DEFAULT_MAIL_QUEUE_CAPACITY,
            chopin_core::auth::DEFAULT_MAIL_WORKERS
        )
    );
}
