//! Defaults that fail closed (issue 13): mail goes through a real SMTP server (an `aiosmtpd`
//! sink started by the test) in production, production never runs with the token-logging or
//! no mailer, token answers are `no-store`, and logout needs JSON so a cross-site form cannot
//! sign a cookie-session user out.

mod common;

use std::time::Duration;

use axum::Router;
use chopin_core::auth::{
    Auth, AuthModule, AuthStore, JwtKeys, LogMailer, Mail, MailKind, Mailer, SmtpMailer,
    TokenSettings, mailer_from_config,
};
use chopin_core::config::{Config, Environment, SmtpConfig};
use chopin_core::testing::{SinkMessage, SmtpSink, TestClient};
use http::StatusCode;
use serde_json::json;

const SECRET: &str = "auth-defaults-secret-of-at-least-32-bytes";

fn production_config(smtp_url: &str) -> Config {
    Config::from_lookup(|name| match name {
        "CHOPIN_ENV" => Some("production".into()),
        "CHOPIN_JWT_SECRET" => Some(SECRET.into()),
        "CHOPIN_SMTP_URL" => Some(smtp_url.into()),
        "CHOPIN_SMTP_FROM" => Some("Chopin Test <noreply@chopin.test>".into()),
        "CHOPIN_PUBLIC_URL" => Some("https://app.chopin.test/account".into()),
        _ => None,
    })
    .expect("valid production configuration")
}

/// The `token` query parameter of the first link in `message` under `prefix`.
fn token_in(message: &SinkMessage, prefix: &str) -> String {
    let body = message.body();
    let start = body
        .find(prefix)
        .unwrap_or_else(|| panic!("no link {prefix} in {body:?}"));
    let link = body[start..].split_whitespace().next().unwrap();
    let url = url::Url::parse(link).unwrap();
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    token.unwrap_or_else(|| panic!("no token in {link}"))
}

/// In production, with `CHOPIN_SMTP_URL` pointing at a real SMTP server, the auth module's
/// mails arrive there: sender, recipient, subject and a working link, for e-mail verification
/// and for a whole password reset.
#[tokio::test]
async fn production_mails_go_through_smtp() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let (_dir, db) = common::sqlite("").await;
    let config = production_config(&sink.url());
    let auth = Auth::from_config(&config).await.unwrap();
    let mailer = mailer_from_config(&config).expect("SMTP is configured");
    assert!(!mailer.development_only());
    let module = AuthModule::with_mailer(auth, AuthStore::new(&db).await.unwrap(), mailer)
        .await
        .expect("an SMTP mailer is fine in production");
    let client = TestClient::new(Router::new().nest("/auth", module.router()));

    let account = json!({"email": "ada@example.com", "password": "a first password"});
    let signup = client.post_json("/auth/signup", &account).await;
    assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.text());
    let verify = sink
        .next_message(Duration::from_secs(10))
        .await
        .expect("the verification mail reaches the SMTP server");
    assert_eq!(verify.from, "noreply@chopin.test");
    assert_eq!(verify.to, ["ada@example.com"]);
    assert_eq!(
        verify.header("subject").as_deref(),
        Some("Confirm your e-mail address")
    );
    assert!(
        verify
            .header("from")
            .is_some_and(|f| f.contains("noreply@chopin.test")),
        "{verify:?}"
    );
    let token = token_in(
        &verify,
        "https://app.chopin.test/account/verify-email?token=",
    );
    let verified = client
        .post_json("/auth/verify-email", &json!({"token": token}))
        .await;
    assert_eq!(
        verified.status,
        StatusCode::NO_CONTENT,
        "{}",
        verified.text()
    );

    let asked = client
        .post_json("/auth/password-reset", &json!({"email": "ada@example.com"}))
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text());
    let reset = sink
        .next_message(Duration::from_secs(10))
        .await
        .expect("the reset mail reaches the SMTP server");
    assert_eq!(reset.to, ["ada@example.com"]);
    assert_eq!(
        reset.header("subject").as_deref(),
        Some("Reset your password")
    );
    let token = token_in(
        &reset,
        "https://app.chopin.test/account/reset-password?token=",
    );
    let confirmed = client
        .post_json(
            "/auth/password-reset/confirm",
            &json!({"token": token, "password": "a second password"}),
        )
        .await;
    assert_eq!(
        confirmed.status,
        StatusCode::NO_CONTENT,
        "{}",
        confirmed.text()
    );
    let login = client
        .post_json(
            "/auth/login",
            &json!({"email": "ada@example.com", "password": "a second password"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
}

/// `smtp://` without `tls=none` requires STARTTLS: a server that does not offer it gets no
/// mail, and the error names the server without its password.
#[tokio::test]
async fn smtp_requires_starttls_by_default() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let url = format!("smtp://mailer:hunter2@127.0.0.1:{}", sink.port());
    let smtp = SmtpConfig::parse(&url, Environment::Production).unwrap();
    let mailer = SmtpMailer::new(&smtp, "noreply@chopin.test", None).unwrap();
    let mail = Mail {
        kind: MailKind::PasswordReset,
        to: "ada@example.com".into(),
        token: "the-secret-token".into(),
    };
    let err = mailer.send(mail).await.expect_err("no STARTTLS, no mail");
    let err = err.to_string();
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(
        !err.contains("hunter2") && !err.contains("the-secret-token"),
        "{err}"
    );
    assert!(!format!("{mailer:?}").contains("hunter2"));
    assert!(
        sink.next_message(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing was delivered in clear text"
    );
}

/// Production never runs with a mailer that does not deliver: no SMTP configured is a
/// start-up error naming the variable, and the development `LogMailer` is refused outside
/// development — also with an `Auth` built from explicit keys (`Auth::new`), which used to
/// count as development whatever the configuration said.
#[tokio::test]
async fn outside_development_the_logging_mailer_is_refused() {
    let err = mailer_from_config(&Config::for_environment(Environment::Production))
        .err()
        .expect("production without SMTP");
    assert!(err.to_string().contains("CHOPIN_SMTP_URL"), "{err}");
    assert!(
        mailer_from_config(&Config::for_environment(Environment::Development))
            .unwrap()
            .development_only()
    );
    // Tests keep their mails in memory, and that mailer is allowed there.
    let test_mailer = mailer_from_config(&Config::for_environment(Environment::Test)).unwrap();
    assert!(!test_mailer.development_only());

    let (_dir, db) = common::sqlite("").await;
    let store = AuthStore::new(&db).await.unwrap();
    let auth_in = |environment| {
        Auth::new(
            JwtKeys::hs256("k1", SECRET.as_bytes()).unwrap(),
            TokenSettings::default(),
            environment,
        )
    };
    for environment in [Environment::Production, Environment::Test] {
        let err = AuthModule::new(auth_in(environment), store.clone())
            .await
            .expect_err("LogMailer outside development");
        assert!(err.to_string().contains("real Mailer"), "{err}");
        let err = AuthModule::with_mailer(auth_in(environment), store.clone(), LogMailer)
            .await
            .expect_err("LogMailer outside development");
        assert!(err.to_string().contains("CHOPIN_SMTP_URL"), "{err}");
        assert!(
            AuthModule::with_mailer(auth_in(environment), store.clone(), test_mailer.clone())
                .await
                .is_ok()
        );
    }
    assert!(
        AuthModule::new(auth_in(Environment::Development), store)
            .await
            .is_ok()
    );
}

fn cookie_instance(db: &chopin_core::db::Db) -> impl Future<Output = TestClient> {
    let settings = TokenSettings {
        cookie: Some("session".into()),
        ..TokenSettings::default()
    };
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET.as_bytes()).unwrap(),
        settings,
        Environment::Development,
    );
    let db = db.clone();
    async move {
        let module = AuthModule::new(auth, AuthStore::new(&db).await.unwrap())
            .await
            .unwrap();
        TestClient::new(Router::new().nest("/auth", module.router()))
    }
}

/// Token answers (sign-up, login, refresh) are `Cache-Control: no-store` (RFC 6749 §5.1),
/// with `Pragma: no-cache` for HTTP/1.0 caches.
#[tokio::test]
async fn token_answers_are_not_stored() {
    let (_dir, db) = common::sqlite("").await;
    let client = cookie_instance(&db).await;
    let account = json!({"email": "bo@example.com", "password": "a password"});
    let signup = client.post_json("/auth/signup", &account).await;
    let login = client.post_json("/auth/login", &account).await;
    let refresh_token = login.value()["data"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let refresh = client
        .post_json("/auth/refresh", &json!({"refresh_token": refresh_token}))
        .await;
    for (name, r) in [("signup", signup), ("login", login), ("refresh", refresh)] {
        assert!(r.status.is_success(), "{name}: {}", r.text());
        assert_eq!(r.header("cache-control"), Some("no-store"), "{name}");
        assert_eq!(r.header("pragma"), Some("no-cache"), "{name}");
    }
}

/// With cookie sessions, what a cross-site page can send — a form (any of its encodings,
/// even empty) or a `fetch` without a `Content-Type` — does not sign the user out: 415 with
/// the error envelope. JSON does, and so does a body-less request with the token in the
/// `Authorization` header.
#[tokio::test]
async fn logout_needs_json_so_cross_site_forms_cannot_sign_out() {
    let (_dir, db) = common::sqlite("").await;
    let client = cookie_instance(&db).await;
    let signup = client
        .post_json(
            "/auth/signup",
            &json!({"email": "cy@example.com", "password": "a password"}),
        )
        .await;
    let access = signup.value()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let cookie = format!("session={access}");
    let logout = |content_type: Option<&str>, body: &'static str| {
        let mut request = http::Request::post("/auth/logout").header("cookie", cookie.as_str());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        client.request(request.body(axum::body::Body::from(body)).unwrap())
    };
    for (content_type, body) in [
        (Some("application/x-www-form-urlencoded"), ""),
        (Some("application/x-www-form-urlencoded"), "refresh_token=x"),
        (Some("multipart/form-data; boundary=x"), ""),
        (Some("text/plain"), ""),
        (None, ""),
    ] {
        let r = logout(content_type, body).await;
        assert_eq!(
            r.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?} {body:?}: {}",
            r.text()
        );
        assert_eq!(r.error_code().as_deref(), Some("UNSUPPORTED_MEDIA_TYPE"));
        let me = client.with_header("cookie", &cookie).get("/auth/me").await;
        assert_eq!(me.status, StatusCode::OK, "still signed in");
    }
    let r = logout(Some("application/json"), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let me = client.with_header("cookie", &cookie).get("/auth/me").await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);

    // A bearer client may still post no body and no Content-Type.
    let login = client
        .post_json(
            "/auth/login",
            &json!({"email": "cy@example.com", "password": "a password"}),
        )
        .await;
    let access = login.value()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client
        .with_bearer(&access)
        .request(
            http::Request::post("/auth/logout")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
}
