//! The mountable auth module over HTTP, on SQLite and PostgreSQL: sign-up, login, me,
//! refresh rotation and replay detection, logout (also across two instances sharing Redis),
//! e-mail verification, password reset through the mailer, namespaced migrations, and login
//! timing for known vs unknown accounts.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use chopin_core::auth::TokenSettings;
use chopin_core::auth::{Auth, AuthModule, AuthStore, JwtKeys, Mail, MailKind, Mailer};
use chopin_core::db::Db;
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
}

impl Mailer for Outbox {
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
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
    assert_eq!(me.value()["data"]["email_verified"], json!(false));
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
    let (_, refresh) = signup(&i, "frank@example.com", "old password").await;

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
        .last(MailKind::PasswordReset, "frank@example.com")
        .expect("reset mail sent");
    assert!(!r.text().contains(&token));
    assert!(
        i.outbox
            .last(MailKind::PasswordReset, "ghost@example.com")
            .is_none()
    );

    let bad = i
        .client
        .post_json(
            "/auth/password-reset/confirm",
            &json!({"token": "forged", "password": "new password"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
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
    assert_eq!(again.status, StatusCode::BAD_REQUEST);

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
}

#[tokio::test]
async fn email_verification_uses_the_mailed_token() {
    let (_dir, db) = common::sqlite("").await;
    let i = instance(&db).await;
    let (access, _) = signup(&i, "gina@example.com", "a password").await;
    let token = i
        .outbox
        .last(MailKind::VerifyEmail, "gina@example.com")
        .expect("verification mail sent");
    let r = i
        .client
        .post_json("/auth/verify-email", &json!({"token": "wrong"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = i
        .client
        .post_json("/auth/verify-email", &json!({"token": token}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let me = i.client.with_bearer(&access).get("/auth/me").await;
    assert_eq!(me.value()["data"]["email_verified"], json!(true));
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
        let module = AuthModule::new(auth.clone(), AuthStore::new(&db).await.unwrap())
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
    // The shared store is in the readiness check.
    let ready = b.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert!(ready.text().contains("auth"), "{}", ready.text());

    // The revocation expires with the token: its Redis key has a TTL no longer than the
    // token's remaining life plus the leeway.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:auth:revoked:*"))
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
