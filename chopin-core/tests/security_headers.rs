//! Security headers on every response (success, error, fallback), HSTS only in production,
//! the switch to turn them off, and CORS with credentials from configuration.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestResponse};
use http::{Request, StatusCode};

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

async fn ok() -> ApiResponse<&'static str> {
    ApiResponse::success("ok")
}

async fn framed() -> ([(&'static str, &'static str); 1], &'static str) {
    ([("x-frame-options", "SAMEORIGIN")], "<html></html>")
}

fn app(vars: &[(&str, &str)]) -> TestClient {
    TestClient::new(
        App::new(config(vars))
            .router(
                Router::new()
                    .route("/", get(ok))
                    .route("/framed", get(framed)),
            )
            .into_router(),
    )
}

fn assert_base_headers(r: &TestResponse) {
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let c = app(&[("CHOPIN_ENV", "test")]);
    for r in [c.get("/").await, c.get("/missing").await] {
        assert_base_headers(&r);
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'")
        );
        assert_eq!(
            r.header("strict-transport-security"),
            None,
            "no HSTS outside production"
        );
    }
    assert_eq!(c.get("/missing").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn handlers_may_override_and_non_json_gets_no_csp() {
    let c = app(&[("CHOPIN_ENV", "test")]);
    let r = c.get("/framed").await;
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(r.header("content-security-policy"), None);
    assert_base_headers(&r);
}

#[tokio::test]
async fn production_adds_hsts() {
    let c = app(&[
        ("CHOPIN_ENV", "production"),
        (
            "CHOPIN_JWT_SECRET",
            "unused-but-valid-secret-of-32-bytes-or-more",
        ),
    ]);
    let r = c.get("/").await;
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    let c = app(&[("CHOPIN_ENV", "production"), ("CHOPIN_HSTS", "false")]);
    assert_eq!(c.get("/").await.header("strict-transport-security"), None);
}

#[tokio::test]
async fn security_headers_can_be_turned_off() {
    let c = app(&[("CHOPIN_ENV", "test"), ("CHOPIN_SECURITY_HEADERS", "false")]);
    let r = c.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-content-type-options"), None);
    assert_eq!(r.header("x-frame-options"), None);
}

#[tokio::test]
async fn cors_with_credentials_echoes_only_listed_origins() {
    let c = app(&[
        ("CHOPIN_ENV", "test"),
        ("CHOPIN_CORS_ORIGINS", "https://app.example"),
        ("CHOPIN_CORS_CREDENTIALS", "true"),
    ]);
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .body(Body::empty())
            .unwrap()
    };
    let r = c.request(preflight("https://app.example")).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = c.request(preflight("https://evil.example")).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    // `*` with credentials never starts.
    let err = Config::from_lookup(|k| match k {
        "CHOPIN_CORS_ORIGINS" => Some("*".into()),
        "CHOPIN_CORS_CREDENTIALS" => Some("true".into()),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(err.problems[0].variable, "CHOPIN_CORS_CREDENTIALS");
}
