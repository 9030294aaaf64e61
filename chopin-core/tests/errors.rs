//! The error model as a client sees it: every `ErrorCode` produced through a real route, with
//! its full JSON envelope, status, and headers; internal detail hidden outside development;
//! database errors (including real SQLite constraint violations) mapped to the right code.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use chopin_core::db::Db;
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestResponse};
use http::{Request, StatusCode, header};
use sea_orm::{ConnAcquireErr, ConnectionTrait, DbErr};
use serde::Deserialize;
use serde_json::{Value, json};
use validator::Validate;

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct NewPost {
    title: String,
}

#[derive(Debug, Deserialize, Validate)]
#[allow(dead_code)]
struct NewUser {
    #[validate(length(min = 3))]
    name: String,
}

async fn bad_request() -> Result<(), ChopinError> {
    Err(ChopinError::BadRequest(
        "the `sort` value is not supported".into(),
    ))
}
async fn create_post(Json(_post): Json<NewPost>) -> ApiResponse<&'static str> {
    ApiResponse::created("ok")
}
async fn create_user(ValidJson(_user): ValidJson<NewUser>) -> ApiResponse<&'static str> {
    ApiResponse::created("ok")
}
async fn list(page: Pagination) -> ApiResponse<Vec<u64>> {
    ApiResponse::paginated(vec![], &page, None)
}
async fn cursor_list(
    page: chopin_core::extractors::CursorPagination<i64>,
) -> Result<ApiResponse<Vec<i64>>, ChopinError> {
    ApiResponse::cursor_paginated(vec![], &page, |id| *id)
}
async fn unauthorized() -> Result<(), ChopinError> {
    Err(ChopinError::Unauthorized("missing bearer token".into()))
}
async fn forbidden() -> Result<(), ChopinError> {
    Err(ChopinError::Forbidden("admins only".into()))
}
async fn not_found() -> Result<(), ChopinError> {
    Err(ChopinError::NotFound("post 7 not found".into()))
}
async fn rate_limited() -> Result<(), ChopinError> {
    Err(ChopinError::RateLimited {
        retry_after: Duration::from_millis(1500),
    })
}
async fn rate_limited_zero() -> Result<(), ChopinError> {
    Err(ChopinError::RateLimited {
        retry_after: Duration::ZERO,
    })
}
async fn internal() -> Result<(), ChopinError> {
    Err(ChopinError::internal(
        "connect to postgres://admin:hunter2@db.internal failed",
    ))
}
async fn unavailable() -> Result<(), ChopinError> {
    Err(ChopinError::unavailable(
        "the search index is rebuilding",
        Duration::from_millis(250),
    ))
}
async fn unavailable_long() -> Result<(), ChopinError> {
    Err(ChopinError::unavailable(
        "maintenance",
        Duration::from_secs(120),
    ))
}
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(1)).await;
    "finally"
}
async fn panics() -> &'static str {
    panic!("secret panic text 42")
}
async fn record_not_found() -> Result<(), ChopinError> {
    Err(DbErr::RecordNotFound("post 9 not found".into()).into())
}
async fn pool_timeout() -> Result<(), ChopinError> {
    Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout).into())
}
async fn non_success_api_response() -> ApiResponse<&'static str> {
    ApiResponse::success("nope").with_status(StatusCode::BAD_REQUEST)
}

fn routes() -> Router {
    Router::new()
        .route("/bad", get(bad_request))
        .route("/posts", post(create_post))
        .route("/users", post(create_user))
        .route("/list", get(list))
        .route("/cursor-list", get(cursor_list))
        .route("/unauthorized", get(unauthorized))
        .route("/forbidden", get(forbidden))
        .route("/missing", get(not_found))
        .route("/rate", get(rate_limited))
        .route("/rate-zero", get(rate_limited_zero))
        .route("/internal", get(internal))
        .route("/unavailable", get(unavailable))
        .route("/unavailable-long", get(unavailable_long))
        .route("/slow", get(slow))
        .route("/panic", get(panics))
        .route("/db/not-found", get(record_not_found))
        .route("/db/pool-timeout", get(pool_timeout))
        .route("/bad-status", get(non_success_api_response))
}

fn client_for(environment: &str) -> TestClient {
    let config = config(&[
        ("CHOPIN_ENV", environment),
        ("CHOPIN_BODY_LIMIT", "1KiB"),
        ("CHOPIN_REQUEST_TIMEOUT", "100ms"),
    ]);
    TestClient::new(App::new(config).router(routes()).into_router())
}

fn client() -> TestClient {
    client_for("test")
}

fn raw_post(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method("POST").uri(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

/// Asserts the invariants of every error response and returns the body.
fn envelope(res: &TestResponse, status: StatusCode) -> Value {
    assert_eq!(res.status, status, "body: {}", res.text());
    assert_eq!(
        res.header("content-type"),
        Some("application/json"),
        "every error is JSON"
    );
    let body = res.value();
    let id = res
        .header("x-request-id")
        .expect("the response carries the request id");
    assert_eq!(body["error"]["request_id"], json!(id), "{body}");
    let code = body["error"]["code"].as_str().unwrap().to_string();
    assert_eq!(
        body["error"].get("fields").is_some(),
        code == "VALIDATION_FAILED",
        "`fields` appears on 422 only: {body}"
    );
    body
}

/// The full expected envelope for `code` / `message`, using the response's request id.
fn expected(res: &TestResponse, code: &str, message: &str) -> Value {
    json!({
        "success": false,
        "error": {
            "code": code,
            "message": message,
            "request_id": res.header("x-request-id").unwrap(),
        }
    })
}

#[tokio::test]
async fn bad_request_400() {
    let res = client().get("/bad").await;
    let body = envelope(&res, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        expected(&res, "BAD_REQUEST", "the `sort` value is not supported")
    );
    assert!(res.header("retry-after").is_none());
    assert!(res.header("www-authenticate").is_none());
}

#[tokio::test]
async fn malformed_json_400() {
    let res = client()
        .request(raw_post(
            "/posts",
            Some("application/json"),
            "{\n  \"title\": tru\n}",
        ))
        .await;
    let body = envelope(&res, StatusCode::BAD_REQUEST);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("malformed JSON at line 2, column "),
        "{message}"
    );
    assert_eq!(body, expected(&res, "MALFORMED_JSON", message));
}

#[tokio::test]
async fn invalid_query_400() {
    let res = client().get("/list?limit=ten").await;
    let body = envelope(&res, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        expected(
            &res,
            "INVALID_QUERY",
            "`limit` must be a whole number, got \"ten\""
        )
    );
}

#[tokio::test]
async fn unauthorized_401_with_www_authenticate() {
    let res = client().get("/unauthorized").await;
    let body = envelope(&res, StatusCode::UNAUTHORIZED);
    assert_eq!(body, expected(&res, "UNAUTHORIZED", "missing bearer token"));
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn forbidden_403() {
    let res = client().get("/forbidden").await;
    let body = envelope(&res, StatusCode::FORBIDDEN);
    assert_eq!(body, expected(&res, "FORBIDDEN", "admins only"));
    assert!(
        res.header("www-authenticate").is_none(),
        "403 is not a challenge"
    );
}

#[tokio::test]
async fn not_found_404_from_handler_and_unknown_route() {
    let c = client();
    let res = c.get("/missing").await;
    let body = envelope(&res, StatusCode::NOT_FOUND);
    assert_eq!(body, expected(&res, "NOT_FOUND", "post 7 not found"));

    let res = c.get("/no/such/route").await;
    let body = envelope(&res, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        expected(&res, "NOT_FOUND", "no route matches this path")
    );
}

#[tokio::test]
async fn method_not_allowed_405() {
    let res = client().delete("/posts").await;
    let body = envelope(&res, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body,
        expected(
            &res,
            "METHOD_NOT_ALLOWED",
            "this route does not accept that HTTP method"
        )
    );
}

#[tokio::test]
async fn payload_too_large_413() {
    let big = format!("{{\"title\":\"{}\"}}", "x".repeat(2000));
    let res = client()
        .request(raw_post("/posts", Some("application/json"), big))
        .await;
    let body = envelope(&res, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        expected(
            &res,
            "PAYLOAD_TOO_LARGE",
            "request body is larger than the limit of 1024 bytes"
        )
    );
}

#[tokio::test]
async fn unsupported_media_type_415() {
    let res = client()
        .request(raw_post("/posts", Some("text/plain"), r#"{"title":"x"}"#))
        .await;
    let body = envelope(&res, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        body,
        expected(
            &res,
            "UNSUPPORTED_MEDIA_TYPE",
            "expected a request body with `Content-Type: application/json`"
        )
    );
}

#[tokio::test]
async fn validation_failed_422_with_fields() {
    let res = client().post_json("/users", &json!({"name": "al"})).await;
    let body = envelope(&res, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({
            "success": false,
            "error": {
                "code": "VALIDATION_FAILED",
                "message": "the request body has invalid fields",
                "fields": [
                    {"field": "name", "code": "length", "message": "length must be at least 3"}
                ],
                "request_id": res.header("x-request-id").unwrap(),
            }
        })
    );
}

#[tokio::test]
async fn rate_limited_429_with_retry_after_rounded_up() {
    let c = client();
    let res = c.get("/rate").await;
    let body = envelope(&res, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, expected(&res, "RATE_LIMITED", "too many requests"));
    assert_eq!(res.header("retry-after"), Some("2"), "1.5 s rounds up to 2");

    let res = c.get("/rate-zero").await;
    envelope(&res, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.header("retry-after"),
        Some("1"),
        "never tell a client to retry after 0 s"
    );
}

#[tokio::test]
async fn internal_error_500_hides_detail_outside_development() {
    for env in ["test", "production"] {
        let res = client_for(env).get("/internal").await;
        let body = envelope(&res, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            expected(&res, "INTERNAL_ERROR", "internal server error"),
            "{env}"
        );
        assert!(!res.text().contains("hunter2"), "{env}: {}", res.text());
        assert!(!res.text().contains("postgres"), "{env}: {}", res.text());
    }
}

#[tokio::test]
async fn internal_error_500_shows_detail_in_development() {
    let res = client_for("development").get("/internal").await;
    let body = envelope(&res, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({
            "success": false,
            "error": {
                "code": "INTERNAL_ERROR",
                "message": "internal server error",
                "request_id": res.header("x-request-id").unwrap(),
                "detail": "connect to postgres://admin:hunter2@db.internal failed",
            }
        })
    );
}

#[tokio::test]
async fn panic_500_detail_only_in_development() {
    let res = client_for("production").get("/panic").await;
    let body = envelope(&res, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        expected(&res, "INTERNAL_ERROR", "internal server error")
    );
    assert!(!res.text().contains("secret panic text"));

    let res = client_for("development").get("/panic").await;
    let body = envelope(&res, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body["error"]["detail"],
        json!("handler panicked: secret panic text 42")
    );
}

#[tokio::test]
async fn service_unavailable_503_with_retry_after() {
    let c = client();
    let res = c.get("/unavailable").await;
    let body = envelope(&res, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        expected(
            &res,
            "SERVICE_UNAVAILABLE",
            "the search index is rebuilding"
        )
    );
    assert_eq!(
        res.header("retry-after"),
        Some("1"),
        "250 ms rounds up to 1"
    );

    let res = c.get("/unavailable-long").await;
    envelope(&res, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.header("retry-after"), Some("120"));
}

#[tokio::test]
async fn timeout_504() {
    let started = std::time::Instant::now();
    let res = client().get("/slow").await;
    let body = envelope(&res, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        body,
        expected(&res, "TIMEOUT", "the request did not complete in time")
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "answered at the timeout, not when the handler finished: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn api_response_with_error_status_becomes_500() {
    let res = client_for("production").get("/bad-status").await;
    let body = envelope(&res, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        expected(&res, "INTERNAL_ERROR", "internal server error")
    );
}

#[test]
fn every_code_has_its_status_and_wire_name() {
    let table = [
        (ErrorCode::BadRequest, 400, "BAD_REQUEST"),
        (ErrorCode::MalformedJson, 400, "MALFORMED_JSON"),
        (ErrorCode::InvalidQuery, 400, "INVALID_QUERY"),
        (ErrorCode::InvalidCursor, 400, "INVALID_CURSOR"),
        (ErrorCode::Unauthorized, 401, "UNAUTHORIZED"),
        (ErrorCode::Forbidden, 403, "FORBIDDEN"),
        (ErrorCode::NotFound, 404, "NOT_FOUND"),
        (ErrorCode::MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
        (ErrorCode::Conflict, 409, "CONFLICT"),
        (ErrorCode::PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
        (
            ErrorCode::UnsupportedMediaType,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (ErrorCode::ValidationFailed, 422, "VALIDATION_FAILED"),
        (ErrorCode::RateLimited, 429, "RATE_LIMITED"),
        (ErrorCode::InternalError, 500, "INTERNAL_ERROR"),
        (ErrorCode::ServiceUnavailable, 503, "SERVICE_UNAVAILABLE"),
        (ErrorCode::Timeout, 504, "TIMEOUT"),
    ];
    assert_eq!(ErrorCode::ALL.len(), table.len());
    for (i, (code, status, name)) in table.into_iter().enumerate() {
        assert_eq!(ErrorCode::ALL[i], code);
        assert_eq!(code.status().as_u16(), status, "{name}");
        assert_eq!(code.as_str(), name);
        assert_eq!(code.to_string(), name);
        assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
    }
}

#[tokio::test]
async fn error_outside_a_request_context_has_null_request_id() {
    use axum::response::IntoResponse;
    let res = ChopinError::NotFound("gone".into()).into_response();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        body,
        json!({"success": false, "error": {"code": "NOT_FOUND", "message": "gone", "request_id": null}})
    );
}

// ---------------------------------------------------------------------------------------------
// Database errors.

#[tokio::test]
async fn db_record_not_found_is_404() {
    let res = client().get("/db/not-found").await;
    let body = envelope(&res, StatusCode::NOT_FOUND);
    assert_eq!(body, expected(&res, "NOT_FOUND", "post 9 not found"));
}

#[tokio::test]
async fn db_pool_timeout_is_503_with_retry_after() {
    let res = client().get("/db/pool-timeout").await;
    let body = envelope(&res, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        expected(
            &res,
            "SERVICE_UNAVAILABLE",
            "the database is busy; retry shortly"
        )
    );
    assert_eq!(res.header("retry-after"), Some("1"));

    // In development the cause is shown as `detail`.
    let res = client_for("development").get("/db/pool-timeout").await;
    let body = envelope(&res, StatusCode::SERVICE_UNAVAILABLE);
    let detail = body["error"]["detail"]
        .as_str()
        .expect("detail in development");
    assert!(detail.contains("Connection pool timed out"), "{detail}");
}

#[test]
fn db_error_mapping() {
    let cases = [
        (DbErr::RecordNotFound("x".into()), ErrorCode::NotFound),
        (
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            ErrorCode::ServiceUnavailable,
        ),
        (
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            ErrorCode::ServiceUnavailable,
        ),
        (DbErr::Custom("boom".into()), ErrorCode::InternalError),
    ];
    for (err, code) in cases {
        let text = err.to_string();
        assert_eq!(ChopinError::from(err).code(), code, "{text}");
    }
    let sqlx_cases = [
        (sea_orm::sqlx::Error::RowNotFound, ErrorCode::NotFound),
        (
            sea_orm::sqlx::Error::PoolTimedOut,
            ErrorCode::ServiceUnavailable,
        ),
        (
            sea_orm::sqlx::Error::PoolClosed,
            ErrorCode::ServiceUnavailable,
        ),
    ];
    for (err, code) in sqlx_cases {
        let text = err.to_string();
        assert_eq!(ChopinError::from(err).code(), code, "{text}");
    }
}

async fn sqlite_db(dir: &tempfile::TempDir) -> Db {
    let url = format!("sqlite://{}", dir.path().join("errors.db").display());
    let db = Db::connect(&config(&[("DATABASE_URL", &url)]).database)
        .await
        .expect("sqlite connects");
    db.execute_unprepared(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);
         CREATE TABLE posts (id INTEGER PRIMARY KEY,
                             user_id INTEGER NOT NULL REFERENCES users(id));",
    )
    .await
    .unwrap();
    db
}

async fn insert_user(State(db): State<Db>) -> Result<ApiResponse<&'static str>, ChopinError> {
    db.execute_unprepared("INSERT INTO users (email) VALUES ('ada@example.com')")
        .await?;
    Ok(ApiResponse::created("created"))
}

async fn insert_orphan_post(
    State(db): State<Db>,
) -> Result<ApiResponse<&'static str>, ChopinError> {
    db.execute_unprepared("INSERT INTO posts (user_id) VALUES (999)")
        .await?;
    Ok(ApiResponse::created("created"))
}

async fn delete_users(State(db): State<Db>) -> Result<ApiResponse<&'static str>, ChopinError> {
    db.execute_unprepared("DELETE FROM users").await?;
    Ok(ApiResponse::success("deleted"))
}

async fn bad_sql(State(db): State<Db>) -> Result<ApiResponse<&'static str>, ChopinError> {
    db.execute_unprepared("SELEKT secret_column FROM users")
        .await?;
    Ok(ApiResponse::success("unreachable"))
}

fn db_client(db: &Db, environment: &str) -> TestClient {
    let router = Router::new()
        .route("/users", post(insert_user).delete(delete_users))
        .route("/posts", post(insert_orphan_post))
        .route("/bad-sql", get(bad_sql));
    TestClient::new(
        App::with_state(config(&[("CHOPIN_ENV", environment)]), db.clone())
            .router(router)
            .into_router(),
    )
}

#[tokio::test]
async fn sqlite_unique_violation_is_409_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir).await;
    let c = db_client(&db, "test");
    let res = c.post_json("/users", &json!({})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let res = c.post_json("/users", &json!({})).await;
    let body = envelope(&res, StatusCode::CONFLICT);
    assert_eq!(
        body,
        expected(
            &res,
            "CONFLICT",
            "a resource with the same unique value already exists"
        )
    );
    assert!(
        !res.text().contains("UNIQUE constraint"),
        "the driver's text is not leaked: {}",
        res.text()
    );
}

#[tokio::test]
async fn sqlite_foreign_key_violation_is_409_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir).await;
    let c = db_client(&db, "test");

    // Inserting a child whose parent does not exist.
    let res = c.post_json("/posts", &json!({})).await;
    let body = envelope(&res, StatusCode::CONFLICT);
    assert_eq!(
        body,
        expected(
            &res,
            "CONFLICT",
            "the change conflicts with a related resource"
        )
    );
    assert!(!res.text().contains("FOREIGN KEY"), "{}", res.text());

    // Deleting a parent that still has children.
    db.execute_unprepared(
        "INSERT INTO users (id, email) VALUES (1, 'a@example.com');
         INSERT INTO posts (user_id) VALUES (1);",
    )
    .await
    .unwrap();
    let res = c.delete("/users").await;
    let body = envelope(&res, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "CONFLICT");
}

#[tokio::test]
async fn other_database_errors_are_500_without_sql_outside_development() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir).await;
    let res = db_client(&db, "production").get("/bad-sql").await;
    let body = envelope(&res, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        expected(&res, "INTERNAL_ERROR", "internal server error")
    );
    assert!(!res.text().contains("SELEKT"));

    let res = db_client(&db, "development").get("/bad-sql").await;
    let body = envelope(&res, StatusCode::INTERNAL_SERVER_ERROR);
    let detail = body["error"]["detail"]
        .as_str()
        .expect("detail in development");
    assert!(detail.contains("syntax error"), "{detail}");
}

#[tokio::test]
async fn every_error_code_is_produced_by_a_route() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir).await;
    let db_routes = Router::new()
        .route("/db/users", post(insert_user))
        .with_state(db);
    let config = config(&[
        ("CHOPIN_ENV", "test"),
        ("CHOPIN_BODY_LIMIT", "1KiB"),
        ("CHOPIN_REQUEST_TIMEOUT", "100ms"),
    ]);
    let c = TestClient::new(
        App::new(config)
            .router(routes().merge(db_routes))
            .into_router(),
    );
    assert_eq!(
        c.post_json("/db/users", &json!({})).await.status,
        StatusCode::CREATED
    );
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let requests = vec![
        get("/bad"),
        raw_post("/posts", Some("application/json"), "{"),
        get("/list?limit=x"),
        get("/cursor-list?cursor=not-a-cursor"),
        get("/unauthorized"),
        get("/forbidden"),
        get("/missing"),
        Request::delete("/posts").body(Body::empty()).unwrap(),
        raw_post("/db/users", Some("application/json"), "{}"),
        raw_post("/posts", Some("application/json"), "x".repeat(2000)),
        raw_post("/posts", Some("text/plain"), "{}"),
        raw_post("/users", Some("application/json"), r#"{"name":"al"}"#),
        get("/rate"),
        get("/internal"),
        get("/unavailable"),
        get("/slow"),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for request in requests {
        let uri = request.uri().to_string();
        let res = c.request(request).await;
        let wire = res
            .error_code()
            .unwrap_or_else(|| panic!("{uri}: not an error: {}", res.text()));
        let code = ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == wire)
            .unwrap_or_else(|| panic!("{uri}: undocumented code {wire}"));
        envelope(&res, code.status());
        seen.insert(code.as_str());
    }
    let all: std::collections::BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(seen, all);
}
