//! The blog runs in production (`CHOPIN_ENV=production`) with its required settings — a JWT
//! secret and an SMTP server — and completes a password reset through real SMTP (an
//! `aiosmtpd` sink started by the test). Without the SMTP server it refuses to start.

use std::time::Duration;

use axum::http::StatusCode;
use chopin_core::Config;
use chopin_core::testing::{SmtpSink, TestClient};
use serde_json::json;

fn production(database_url: &str, smtp_url: Option<&str>) -> Result<Config, String> {
    Config::from_lookup(|name| match name {
        "CHOPIN_ENV" => Some("production".into()),
        "CHOPIN_JWT_SECRET" => Some("blog-production-test-secret-of-32-bytes+".into()),
        "DATABASE_URL" => Some(database_url.to_string()),
        "CHOPIN_SMTP_URL" => smtp_url.map(str::to_string),
        "CHOPIN_SMTP_FROM" => Some("Chopin blog <noreply@blog.test>".into()),
        "CHOPIN_PUBLIC_URL" => Some("https://blog.test".into()),
        _ => None,
    })
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn production_blog_resets_a_password_by_smtp() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("blog.db").display());

    // No SMTP server: production does not start, and says which variable to set.
    let err = blog::build_app(production(&url, None).unwrap())
        .await
        .expect_err("production without a mailer");
    assert!(err.to_string().contains("CHOPIN_SMTP_URL"), "{err}");

    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let config = production(&url, Some(&sink.url())).unwrap();
    let client = TestClient::new(blog::build_app(config).await.expect("production starts"));
    let account = json!({"email": "ada@example.com", "password": "a first password"});
    let signup = client.post_json("/api/auth/signup", &account).await;
    assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.text());
    let verify = sink
        .next_message(Duration::from_secs(10))
        .await
        .expect("verification mail");
    assert_eq!(verify.to, ["ada@example.com"]);

    let asked = client
        .post_json(
            "/api/auth/password-reset",
            &json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text());
    let mail = sink
        .next_message(Duration::from_secs(10))
        .await
        .expect("reset mail");
    assert_eq!(mail.from, "noreply@blog.test");
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Reset your password")
    );
    let body = mail.body();
    let link = body
        .split_whitespace()
        .find(|w| w.starts_with("https://blog.test/reset-password?token="))
        .unwrap_or_else(|| panic!("no reset link in {body:?}"));
    let token = url::Url::parse(link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let confirmed = client
        .post_json(
            "/api/auth/password-reset/confirm",
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
            "/api/auth/login",
            &json!({"email": "ada@example.com", "password": "a second password"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    assert_eq!(login.header("cache-control"), Some("no-store"));
}
