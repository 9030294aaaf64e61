//! The `Json<T>` / `ValidJson<T>` extractors and the `Json` responder through HTTP, and the
//! `chopin_core::json` engine's encode / decode round trips.

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use chopin_core::json::{self, DecodeError};
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestResponse};
use futures_util::stream;
use http::{Request, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use validator::Validate;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Author {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    title: String,
    author: Author,
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Numbers {
    #[allow(dead_code)]
    n: u64,
}

#[derive(Debug, Deserialize)]
struct Float {
    #[allow(dead_code)]
    x: f64,
}

/// A recursive type: `[[[]]]` nests as deep as the input.
#[derive(Debug, Deserialize)]
struct Tree(#[allow(dead_code)] Vec<Tree>);

#[derive(Debug, Deserialize, Validate)]
#[allow(dead_code)]
struct Signup {
    #[validate(length(min = 3, max = 20))]
    name: String,
    #[validate(email)]
    email: String,
    #[validate(range(min = 18))]
    age: u32,
}

async fn echo_post(Json(post): Json<Post>) -> Json<Post> {
    Json(post)
}
async fn echo_value(Json(value): Json<Value>) -> Json<Value> {
    Json(value)
}
async fn count_tree(Json(_tree): Json<Tree>) -> &'static str {
    "tree"
}
async fn numbers(Json(n): Json<Numbers>) -> String {
    n.n.to_string()
}
async fn float(Json(f): Json<Float>) -> String {
    f.x.to_string()
}
async fn signup(ValidJson(s): ValidJson<Signup>) -> ApiResponse<String> {
    ApiResponse::created(s.name)
}

/// A body with multi-word fields, spelled camelCase on the wire.
#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct NewEvent {
    #[validate(length(min = 1))]
    display_name: String,
    #[validate(range(max = 10))]
    max_seats: Option<u32>,
}

async fn event(ValidJson(e): ValidJson<NewEvent>) -> ApiResponse<String> {
    ApiResponse::created(e.display_name)
}
async fn list() -> Json<Vec<u32>> {
    Json(vec![1, 2, 3])
}

const LIMIT: usize = 4096;

fn client() -> TestClient {
    let config = Config::from_lookup(|k| match k {
        "CHOPIN_ENV" => Some("test".into()),
        "CHOPIN_BODY_LIMIT" => Some(LIMIT.to_string()),
        _ => None,
    })
    .unwrap();
    let router = Router::new()
        .route("/posts", post(echo_post))
        .route("/value", post(echo_value))
        .route("/tree", post(count_tree))
        .route("/numbers", post(numbers))
        .route("/float", post(float))
        .route("/signup", post(signup))
        .route("/events", post(event))
        .route("/list", get(list));
    TestClient::new(App::new(config).router(router).into_router())
}

fn req(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method("POST").uri(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

async fn post_raw(uri: &str, body: impl Into<Body>) -> TestResponse {
    client()
        .request(req(uri, Some("application/json"), body))
        .await
}

fn error(res: &TestResponse, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status, status, "body: {}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    let body = res.value();
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    assert_eq!(
        body["error"]["request_id"].as_str(),
        res.header("x-request-id"),
        "{body}"
    );
    body
}

fn valid_post() -> Value {
    json!({"title": "Hello", "author": {"name": "Ada"}, "tags": ["a", "b"]})
}

// ---------------------------------------------------------------------------------------------
// Content type.

#[tokio::test]
async fn missing_content_type_is_415() {
    let body = serde_json::to_vec(&valid_post()).unwrap();
    let res = client().request(req("/posts", None, body)).await;
    let body = error(
        &res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
}

#[tokio::test]
async fn wrong_content_types_are_415() {
    for ct in [
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "application/jsonx",
        "application/+json",
        "multipart/form-data; boundary=x",
    ] {
        let body = serde_json::to_vec(&valid_post()).unwrap();
        let res = client().request(req("/posts", Some(ct), body)).await;
        error(
            &res,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        );
    }
}

#[tokio::test]
async fn json_content_type_variants_are_accepted() {
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.x+json",
        "application/problem+json",
    ] {
        let body = serde_json::to_vec(&valid_post()).unwrap();
        let res = client().request(req("/posts", Some(ct), body)).await;
        assert_eq!(res.status, StatusCode::OK, "{ct}: {}", res.text());
        assert_eq!(res.value(), valid_post(), "{ct}");
    }
}

// ---------------------------------------------------------------------------------------------
// Size limit.

fn oversized() -> Vec<u8> {
    format!("{{\"title\":\"{}\"}}", "x".repeat(LIMIT)).into_bytes()
}

#[tokio::test]
async fn body_over_limit_with_content_length_is_413() {
    let res = post_raw("/posts", oversized()).await;
    let body = error(&res, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert_eq!(
        body["error"]["message"],
        json!(format!(
            "request body is larger than the limit of {LIMIT} bytes"
        ))
    );
}

#[tokio::test]
async fn chunked_body_over_limit_is_413() {
    let chunks: Vec<Result<Bytes, std::io::Error>> = oversized()
        .chunks(512)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let request = req(
        "/posts",
        Some("application/json"),
        Body::from_stream(stream::iter(chunks)),
    );
    assert!(request.headers().get(header::CONTENT_LENGTH).is_none());
    let res = client().request(request).await;
    let body = error(&res, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert_eq!(
        body["error"]["message"],
        json!(format!(
            "request body is larger than the limit of {LIMIT} bytes"
        ))
    );
}

#[tokio::test]
async fn chunked_body_under_limit_is_accepted() {
    let bytes = serde_json::to_vec(&valid_post()).unwrap();
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let res = client()
        .request(req(
            "/posts",
            Some("application/json"),
            Body::from_stream(stream::iter(chunks)),
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.value(), valid_post());
}

// ---------------------------------------------------------------------------------------------
// Syntax errors.

#[tokio::test]
async fn malformed_json_is_400_with_line_and_column() {
    let res = post_raw("/posts", "{\n  \"title\": \"a\",\n  \"author\": {,\n}").await;
    let body = error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("malformed JSON at line 3, column "),
        "{message}"
    );
    assert!(body["error"].get("fields").is_none());
}

#[tokio::test]
async fn empty_and_truncated_bodies_are_400() {
    for input in ["", "{", "{\"title\":", "[1,2"] {
        let res = post_raw("/value", input).await;
        error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
    }
}

#[tokio::test]
async fn trailing_garbage_is_400() {
    for input in [r#"{"a":1} x"#, r#"{"a":1}{"a":2}"#, "[1] ]", "1 2"] {
        let res = post_raw("/value", input).await;
        let body = error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("malformed JSON at line 1, column "),
            "{input}: {body}"
        );
    }
    // Trailing whitespace is fine.
    let res = post_raw("/value", "{\"a\":1}  \n\t ").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[tokio::test]
async fn invalid_utf8_is_400() {
    let mut body = br#"{"title":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#"","author":{"name":"a"},"tags":[]}"#);
    let res = post_raw("/posts", body).await;
    let body = error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("UTF-8"), "{message}");
    assert!(message.contains("offset 10"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Shape errors (422).

#[tokio::test]
async fn wrong_type_is_422_naming_the_field() {
    let res = post_raw(
        "/posts",
        r#"{"title": 5, "author": {"name": "Ada"}, "tags": []}"#,
    )
    .await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    let fields = body["error"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{body}");
    assert_eq!(fields[0]["field"], "title");
    assert_eq!(fields[0]["code"], "invalid_type");
    assert!(
        fields[0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid type"),
        "{body}"
    );
}

#[tokio::test]
async fn nested_wrong_type_names_the_dotted_path() {
    let res = post_raw(
        "/posts",
        r#"{"title": "t", "author": {"name": ["Ada"]}, "tags": []}"#,
    )
    .await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(body["error"]["fields"][0]["field"], "author.name", "{body}");
    assert_eq!(body["error"]["fields"][0]["code"], "invalid_type");
}

#[tokio::test]
async fn array_element_wrong_type_names_the_index() {
    let res = post_raw(
        "/posts",
        r#"{"title": "t", "author": {"name": "Ada"}, "tags": ["ok", 2, "x"]}"#,
    )
    .await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(body["error"]["fields"][0]["field"], "tags[1]", "{body}");
}

#[tokio::test]
async fn missing_field_is_422_required() {
    let res = post_raw("/posts", r#"{"author": {"name": "Ada"}, "tags": []}"#).await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(
        body["error"]["fields"],
        json!([{"field": "title", "code": "required", "message": "is required"}])
    );

    let res = post_raw("/posts", r#"{"title": "t", "author": {}, "tags": []}"#).await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(
        body["error"]["fields"],
        json!([{"field": "author.name", "code": "required", "message": "is required"}])
    );
}

#[tokio::test]
async fn wrong_document_type_is_422_at_the_root() {
    let res = post_raw("/posts", "\"just a string\"").await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(body["error"]["fields"][0]["field"], "$", "{body}");
}

// ---------------------------------------------------------------------------------------------
// Hostile input: depth bombs and huge numbers. None of these may crash the process.

fn nested_arrays(depth: usize) -> String {
    let mut s = "[".repeat(depth);
    s.push_str(&"]".repeat(depth));
    s
}

fn nested_objects(depth: usize) -> String {
    let mut s = "{\"a\":".repeat(depth);
    s.push_str("null");
    s.push_str(&"}".repeat(depth));
    s
}

#[tokio::test]
async fn depth_bomb_100k_is_400() {
    // 200 kB: above the configured limit would be a 413, so send it where the limit is large.
    let config = Config::for_environment(Environment::Test);
    let c = TestClient::new(
        App::new(config)
            .router(
                Router::new()
                    .route("/value", post(echo_value))
                    .route("/tree", post(count_tree))
                    .route("/posts", post(echo_post)),
            )
            .into_router(),
    );
    for uri in ["/value", "/tree"] {
        for bomb in [nested_arrays(100_000), nested_objects(100_000)] {
            let res = c.request(req(uri, Some("application/json"), bomb)).await;
            error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
        }
        // Unterminated, too.
        let res = c
            .request(req(uri, Some("application/json"), "[".repeat(100_000)))
            .await;
        error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
    }
    // Into a struct too, and inside a field that would be ignored: depth is checked first.
    for bomb in [
        format!(
            r#"{{"title":{},"author":{{"name":"a"}},"tags":[]}}"#,
            nested_arrays(100_000)
        ),
        format!(
            r#"{{"title":"t","author":{{"name":"a"}},"tags":[],"extra":{}}}"#,
            nested_arrays(100_000)
        ),
    ] {
        let res = c
            .request(req("/posts", Some("application/json"), bomb))
            .await;
        error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
    }
    // And the server still answers.
    let res = c.post_json("/posts", &valid_post()).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn depth_300_into_recursive_types_is_400() {
    for uri in ["/value", "/tree"] {
        let res = post_raw(uri, nested_arrays(300)).await;
        let body = error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("line 1"),
            "{body}"
        );
    }
    let res = post_raw("/value", nested_objects(300)).await;
    error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_up_to_the_limit_is_accepted_on_a_worker_thread() {
    let max = json::MAX_DEPTH;
    assert_eq!(max, 64);
    let c = client();
    // Spawned, so decoding runs on a tokio worker thread with its default stack, as in a server.
    let (deep_ok, tree_ok, objects_ok, too_deep) = tokio::spawn(async move {
        (
            post_raw("/value", nested_arrays(max)).await,
            post_raw("/tree", nested_arrays(max)).await,
            post_raw("/value", nested_objects(max)).await,
            c.request(req(
                "/value",
                Some("application/json"),
                nested_arrays(max + 1),
            ))
            .await,
        )
    })
    .await
    .unwrap();
    assert_eq!(deep_ok.status, StatusCode::OK, "{}", deep_ok.text());
    assert_eq!(deep_ok.text(), nested_arrays(max));
    assert_eq!(tree_ok.status, StatusCode::OK, "{}", tree_ok.text());
    assert_eq!(objects_ok.status, StatusCode::OK, "{}", objects_ok.text());
    let body = error(&too_deep, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
    assert_eq!(
        body["error"]["message"],
        format!(
            "malformed JSON at line 1, column {}: nesting deeper than {max} levels",
            max + 1
        )
    );
}

#[tokio::test]
async fn brackets_in_strings_and_wide_documents_do_not_count_as_depth() {
    // 1000 brackets inside a string: depth 1.
    let doc = json!({"text": "[{".repeat(500), "escaped": "\\\"[[[[\\"});
    let res = post_raw("/value", serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.value(), doc);
    // 500 sibling arrays: many brackets, depth 2.
    let wide = format!("[{}[]]", "[],".repeat(499));
    let res = post_raw("/value", wide).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.value().as_array().unwrap().len(), 500);
}

/// Asserts a clean client error (400 malformed or 422 invalid) in the envelope.
fn clean_4xx(res: &TestResponse, what: &str) {
    let body = res.value();
    match res.status {
        StatusCode::BAD_REQUEST => assert_eq!(body["error"]["code"], "MALFORMED_JSON", "{what}"),
        StatusCode::UNPROCESSABLE_ENTITY => {
            assert_eq!(body["error"]["code"], "VALIDATION_FAILED", "{what}");
            assert!(
                body["error"]["fields"][0]["field"].as_str().is_some(),
                "{what}"
            );
        }
        other => panic!("{what}: expected 400 or 422, got {other}: {}", res.text()),
    }
    assert_eq!(body["success"], false, "{what}");
}

#[tokio::test]
async fn huge_numbers_are_clean_4xx() {
    let digits400 = "9".repeat(400);
    for (uri, body) in [
        ("/numbers", format!(r#"{{"n":{digits400}}}"#)),
        ("/numbers", r#"{"n":1e999999}"#.to_string()),
        ("/numbers", r#"{"n":18446744073709551616}"#.to_string()),
        ("/numbers", r#"{"n":-1}"#.to_string()),
        ("/numbers", r#"{"n":1.5}"#.to_string()),
        ("/float", format!(r#"{{"x":{digits400}}}"#)),
        ("/float", r#"{"x":1e999999}"#.to_string()),
        ("/float", r#"{"x":-1e999999}"#.to_string()),
        ("/value", r#"{"x":1e999999}"#.to_string()),
        ("/value", format!(r#"[{digits400}.5e999]"#)),
    ] {
        let res = post_raw(uri, body.clone()).await;
        clean_4xx(&res, &format!("{uri} {}", &body[..body.len().min(40)]));
    }
    // In range: accepted exactly.
    let res = post_raw("/numbers", r#"{"n":18446744073709551615}"#).await;
    assert_eq!(res.text(), "18446744073709551615");
    let res = post_raw("/float", r#"{"x":1.7976931348623157e308}"#).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[tokio::test]
async fn number_errors_name_the_field() {
    let res = post_raw("/numbers", r#"{"n":"12"}"#).await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(body["error"]["fields"][0]["field"], "n");
}

// ---------------------------------------------------------------------------------------------
// Responder.

#[tokio::test]
async fn json_responder_sets_content_type_and_body() {
    let res = client().get("/list").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.text(), "[1,2,3]");

    let res = client().post_json("/posts", &valid_post()).await;
    assert_eq!(res.header("content-type"), Some("application/json"));
    let post: Post = res.json();
    assert_eq!(post.author.name, "Ada");
    assert_eq!(post.tags, vec!["a", "b"]);
}

// ---------------------------------------------------------------------------------------------
// ValidJson.

#[tokio::test]
async fn valid_json_reports_one_entry_per_invalid_field() {
    let res = client()
        .post_json(
            "/signup",
            &json!({"name": "al", "email": "not-an-email", "age": 12}),
        )
        .await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(
        body["error"]["fields"],
        json!([
            {"field": "age", "code": "range", "message": "must be at least 18"},
            {"field": "email", "code": "email", "message": "must be a valid email address"},
            {"field": "name", "code": "length", "message": "length must be between 3 and 20"},
        ])
    );
}

#[tokio::test]
async fn valid_json_accepts_valid_input_and_keeps_extractor_rules() {
    let c = client();
    let res = c
        .post_json(
            "/signup",
            &json!({"name": "alice", "email": "alice@example.com", "age": 30}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(res.value(), json!({"success": true, "data": "alice"}));

    // Decoding errors come before validation.
    let res = c
        .request(req("/signup", Some("application/json"), "{\"name\":"))
        .await;
    error(&res, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
    let res = c.request(req("/signup", None, "{}")).await;
    error(
        &res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    let res = c
        .post_json("/signup", &json!({"name": "alice", "age": 30}))
        .await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(body["error"]["fields"][0]["field"], "email");
    assert_eq!(body["error"]["fields"][0]["code"], "required");
}

#[tokio::test]
async fn valid_json_names_fields_by_the_keys_the_client_sent() {
    let res = client()
        .post_json("/events", &json!({"displayName": "", "maxSeats": 11}))
        .await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["displayName", "maxSeats"], "{body}");
}

// ---------------------------------------------------------------------------------------------
// The engine itself.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Everything {
    text: String,
    escapes: String,
    unicode: String,
    small: i64,
    big: u64,
    float: f64,
    flag: bool,
    nothing: Option<String>,
    some: Option<Vec<u8>>,
    map: BTreeMap<String, i32>,
    nested: Vec<Author>,
}

fn everything() -> Everything {
    Everything {
        text: "plain".into(),
        escapes: "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7}".into(),
        unicode: "héllo wörld ✓ 𝄞 日本".into(),
        small: i64::MIN,
        big: u64::MAX,
        float: -1234.5e-7,
        flag: true,
        nothing: None,
        some: Some(vec![0, 255]),
        map: [("a".to_string(), 1), ("b".to_string(), -2)].into(),
        nested: vec![Author { name: "Ada".into() }],
    }
}

#[test]
fn round_trip_through_to_vec_and_from_slice() {
    let value = everything();
    let bytes = json::to_vec(&value).unwrap();
    let back: Everything = json::from_slice(&bytes).unwrap();
    assert_eq!(back, value);
    // What we write is standard JSON that another parser reads the same way.
    let other: Everything = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(other, value);
    // And what another writer produces, we read.
    let theirs = serde_json::to_vec(&value).unwrap();
    assert_eq!(json::from_slice::<Everything>(&theirs).unwrap(), value);
}

#[test]
fn encoders_agree() {
    let value = everything();
    let vec = json::to_vec(&value).unwrap();
    assert_eq!(json::to_bytes(&value).unwrap().as_ref(), vec.as_slice());
    assert_eq!(json::to_string(&value).unwrap().as_bytes(), vec.as_slice());
    let mut buf = b"prefix:".to_vec();
    json::write_to(&mut buf, &value).unwrap();
    assert_eq!(&buf[..7], b"prefix:");
    assert_eq!(&buf[7..], vec.as_slice());
    assert_eq!(
        json::from_str::<Everything>(&json::to_string(&value).unwrap()).unwrap(),
        value
    );
}

#[test]
fn floats_round_trip_exactly() {
    // Not -0.0: sonic-rs 0.5 decodes `-0.0` as +0.0 (serde_json keeps the sign).
    for x in [
        0.1,
        1.0 / 3.0,
        f64::MAX,
        f64::MIN_POSITIVE,
        -2.5e-300,
        5e-324,
        1e21,
    ] {
        let bytes = json::to_vec(&x).unwrap();
        let back: f64 = json::from_slice(&bytes).unwrap();
        assert_eq!(back.to_bits(), x.to_bits(), "{x}");
    }
}

#[test]
fn non_finite_floats_do_not_produce_invalid_json() {
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        match json::to_vec(&x) {
            Ok(bytes) => {
                // If accepted, the output must still be valid JSON (serde_json writes null).
                let parsed: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{x} encoded as invalid JSON {:?}: {e}", bytes));
                assert_eq!(parsed, Value::Null, "{x}");
            }
            Err(err) => assert!(err.to_string().contains("JSON"), "{err}"),
        }
    }
}

#[test]
fn maps_with_non_string_keys() {
    let m: HashMap<u32, &str> = [(1, "one")].into();
    let bytes = json::to_vec(&m).unwrap();
    assert_eq!(bytes, br#"{"1":"one"}"#);
    let back: HashMap<u32, String> = json::from_slice(&bytes).unwrap();
    assert_eq!(back[&1], "one");
}

#[test]
fn decode_errors_are_classified() {
    match json::from_slice::<Post>(b"{\n\n  \"title\" 1}") {
        Err(DecodeError::Syntax { line, column, .. }) => {
            assert_eq!(line, 3);
            assert!(column > 1, "{column}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    match json::from_slice::<Post>(br#"{"title":"t","author":{"name":1},"tags":[]}"#) {
        Err(DecodeError::Data { path, code, .. }) => {
            assert_eq!(path, "author.name");
            assert_eq!(code, "invalid_type");
        }
        other => panic!("expected a data error, got {other:?}"),
    }
    match json::from_slice::<Post>(br#"{"title":"t","tags":[]}"#) {
        Err(DecodeError::Data { path, code, .. }) => {
            assert_eq!(path, "author");
            assert_eq!(code, "required");
        }
        other => panic!("expected a missing-field error, got {other:?}"),
    }
    assert_eq!(
        json::from_slice::<Value>(b"[\"ok\", \"\xc3\x28\"]"),
        Err(DecodeError::InvalidUtf8 { offset: 8 })
    );
    assert!(matches!(
        json::from_slice::<Value>(b"{} {}"),
        Err(DecodeError::Syntax { .. })
    ));
    assert!(matches!(
        json::from_slice::<Value>(nested_arrays(1000).as_bytes()),
        Err(DecodeError::Syntax { .. })
    ));
    let deep_on_line_3 = format!("{{\n\"a\":\n  {}", nested_arrays(80));
    match json::from_slice::<Value>(deep_on_line_3.as_bytes()) {
        Err(DecodeError::Syntax {
            line,
            column,
            message,
        }) => {
            assert_eq!((line, column), (3, 3 + json::MAX_DEPTH - 1), "{message}");
            assert!(message.contains("nesting"), "{message}");
        }
        other => panic!("expected a depth error, got {other:?}"),
    }
}

#[test]
fn decode_error_converts_to_the_right_chopin_error() {
    let err: ChopinError = json::from_slice::<Post>(b"{").unwrap_err().into();
    assert_eq!(err.code(), ErrorCode::MalformedJson);
    let err: ChopinError = json::from_slice::<Post>(b"[1]").unwrap_err().into();
    assert_eq!(err.code(), ErrorCode::ValidationFailed);
    let err: ChopinError = json::from_slice::<Post>(b"\xff").unwrap_err().into();
    assert_eq!(err.code(), ErrorCode::MalformedJson);
}

// ---------------------------------------------------------------------------------------------
// Integral numbers written with a fraction or an exponent (`5.0`, `1e3`) in integer fields.

/// An integer field next to fields whose numbers must arrive exactly as sent.
#[derive(Debug, Deserialize)]
struct Booking {
    before: Value,
    seats: i32,
    after: Value,
    ratio: f64,
}

#[test]
fn an_integral_number_fills_an_integer_field_and_nothing_else_changes() {
    let b: Booking = json::from_slice(
        br#"{"before": 10.0, "seats": 5.0, "after": {"x": 2e1, "z": -0.0}, "ratio": -0.0}"#,
    )
    .unwrap();
    assert_eq!(b.seats, 5);
    // The other fields' numbers are untouched: still floats, not integers.
    assert!(b.before.is_f64(), "{}", b.before);
    assert_eq!(b.before.as_f64(), Some(10.0));
    assert!(b.after["x"].is_f64(), "{}", b.after);
    assert!(b.after["z"].is_f64(), "{}", b.after);
    // `-0.0` reads as it does with no integer field involved (sonic-rs reads its sign as +).
    let alone: f64 = json::from_slice(b"-0.0").unwrap();
    assert_eq!(b.ratio.to_bits(), alone.to_bits());
}

fn data_error<T: std::fmt::Debug>(result: Result<T, DecodeError>) -> (String, String) {
    match result {
        Err(DecodeError::Data { path, message, .. }) => (path, message),
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn a_string_field_sent_an_integral_float_keeps_the_original_error() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Label {
        label: String,
    }
    let (path, message) = data_error(json::from_slice::<Label>(br#"{"label": 5.0}"#));
    assert_eq!(path, "label");
    assert!(
        message.starts_with("invalid type: floating point `5"),
        "{message}"
    );
    assert!(message.ends_with("expected a string"), "{message}");
    // The same for an integer out of the field's range.
    let (path, message) = data_error(json::from_slice::<Booking>(
        br#"{"before": 1, "seats": 3e9, "after": 1, "ratio": 1}"#,
    ));
    assert_eq!(path, "seats");
    assert!(
        message.starts_with("invalid type: floating point"),
        "{message}"
    );
}

#[test]
fn a_later_problem_is_reported_after_an_accepted_integral_number() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Two {
        a: u32,
        b: u32,
        name: String,
    }
    // A real fraction further on.
    let (path, message) = data_error(json::from_slice::<Two>(
        br#"{"a": 5.0, "b": 1.5, "name": "x"}"#,
    ));
    assert_eq!(path, "b", "{message}");
    // Another kind of error further on.
    let (path, message) = data_error(json::from_slice::<Two>(
        br#"{"a": 5.0, "b": 1e1, "name": 7}"#,
    ));
    assert_eq!(path, "name");
    assert!(message.contains("integer `7`"), "{message}");
    // A syntax error further on is placed in the text as sent, not as rewritten.
    let broken = "{\"a\": 1e1,\n \"b\": 2.0, \"name\": x}";
    let as_value = json::from_slice::<Value>(broken.as_bytes());
    let as_two = json::from_slice::<Two>(broken.as_bytes());
    assert!(
        matches!(as_value, Err(DecodeError::Syntax { line: 2, .. })),
        "{as_value:?}"
    );
    assert_eq!(as_two.unwrap_err(), as_value.unwrap_err());
}

#[test]
fn at_most_eight_integral_numbers_are_rewritten() {
    let eight: Vec<u32> = json::from_slice(b"[1.0,2.0,3e0,4.0,5.0,6.0,7.0,8.0]").unwrap();
    assert_eq!(eight, [1, 2, 3, 4, 5, 6, 7, 8]);
    // One more: the first error stands, naming the first of them.
    let (path, message) = data_error(json::from_slice::<Vec<u32>>(
        b"[1.0,2.0,3e0,4.0,5.0,6.0,7.0,8.0,9.0]",
    ));
    assert_eq!(path, "[0]");
    assert!(
        message.starts_with("invalid type: floating point `1"),
        "{message}"
    );
}

#[test]
fn integral_numbers_longer_than_twenty_digits_are_refused() {
    assert_eq!(
        json::from_slice::<Vec<u64>>(b"[1e19, 18446744073709551615.0]").unwrap(),
        [10_000_000_000_000_000_000, u64::MAX]
    );
    for input in ["[1e20]", "[1e300]", "[123456789012345678901.0]"] {
        let (path, message) = data_error(json::from_slice::<Vec<u64>>(input.as_bytes()));
        assert_eq!(path, "[0]", "{input}");
        assert!(
            message.starts_with("invalid type: floating point"),
            "{input}: {message}"
        );
    }
}

#[tokio::test]
async fn integral_numbers_through_http() {
    let res = post_raw("/numbers", r#"{"n": 1.2e3}"#).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.text(), "1200");
    let res = post_raw("/numbers", r#"{"n": 1e25}"#).await;
    let body = error(&res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(body["error"]["fields"][0]["field"], "n", "{body}");
    assert_eq!(body["error"]["fields"][0]["code"], "invalid_type", "{body}");
}
