use chopin_core::testing::TestClient;
use chopin_core::{Config, Environment};
use serde_json::json;

fn client() -> TestClient {
    TestClient::new(hello::app(Config::for_environment(Environment::Test)).into_router())
}

#[tokio::test]
async fn three_routes_answer_in_the_envelope() {
    let client = client();
    let res = client.get("/").await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.value(),
        json!({"success": true, "data": {"message": "Hello, World!"}})
    );

    let res = client.get("/greet/Ada").await;
    assert_eq!(res.value()["data"]["message"], "Hello, Ada!");

    let res = client.get(&format!("/greet/{}", "a".repeat(65))).await;
    assert_eq!(res.status, 422);
    assert_eq!(res.value()["error"]["fields"][0]["field"], "name");

    let res = client.post_json("/echo", &json!({"text": "hi"})).await;
    assert_eq!(
        res.value(),
        json!({"success": true, "data": {"text": "hi"}})
    );

    let res = client.post_json("/echo", &json!({"text": 5})).await;
    assert_eq!(res.status, 422);
    assert_eq!(res.error_code().as_deref(), Some("VALIDATION_FAILED"));
}

#[tokio::test]
async fn spec_documents_the_three_routes() {
    let spec = client().get("/openapi.json").await.value();
    for path in [
        "/",
        "/greet/{name}",
        "/echo",
        "/health/live",
        "/health/ready",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the spec"
        );
    }
}
