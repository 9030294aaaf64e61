//! Health endpoints and the OpenAPI spec / docs UI as served over HTTP.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chopin_core::error::ErrorEnvelope;
use chopin_core::openapi::{OpenApiRouter, routes};
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestResponse};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

const PRIVATE: &str = "dial tcp 10.0.0.5:9200: password=hunter2 rejected";

fn app_with_checks(environment: &str) -> App {
    App::new(config(&[("CHOPIN_ENV", environment)]))
        .health_check("cache", || async { Ok(()) })
        .health_check("search", || async { Err(PRIVATE.into()) })
}

// ---------------------------------------------------------------------------------------------
// Health.

#[tokio::test]
async fn live_is_200() {
    let c = TestClient::new(app_with_checks("production").into_router());
    let res = c.get("/health/live").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(
        res.value(),
        json!({"success": true, "data": {"status": "live"}})
    );
    assert!(res.header("x-request-id").is_some());
}

#[tokio::test]
async fn ready_without_checks_is_200() {
    let c = TestClient::new(App::new(Config::for_environment(Environment::Test)).into_router());
    let res = c.get("/health/ready").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.value(),
        json!({"success": true, "data": {"status": "ready"}})
    );
}

#[tokio::test]
async fn ready_with_passing_checks_lists_them() {
    let c = TestClient::new(
        App::new(Config::for_environment(Environment::Test))
            .health_check("cache", || async { Ok(()) })
            .health_check("queue", || async { Ok(()) })
            .into_router(),
    );
    let res = c.get("/health/ready").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.value(),
        json!({"success": true, "data": {"status": "ready", "checks": {"cache": "ok", "queue": "ok"}}})
    );
}

fn assert_not_ready(res: &TestResponse, failing: &str) -> Value {
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    assert_eq!(res.header("content-type"), Some("application/json"));
    let retry: u64 = res
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body = res.value();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(
        body["error"]["request_id"].as_str(),
        res.header("x-request-id")
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(failing), "{message}");
    body
}

#[tokio::test]
async fn ready_with_a_failing_check_is_503_without_private_text() {
    for env in ["production", "test"] {
        let c = TestClient::new(app_with_checks(env).into_router());
        let res = c.get("/health/ready").await;
        let body = assert_not_ready(&res, "search");
        assert_eq!(body["error"]["message"], "not ready: search", "{env}");
        assert!(
            !body["error"]["message"].as_str().unwrap().contains("cache"),
            "only failing checks are named"
        );
        for secret in ["hunter2", "10.0.0.5", "dial tcp"] {
            assert!(
                !res.text().contains(secret),
                "{env} leaked {secret}: {}",
                res.text()
            );
        }
        assert!(body["error"].get("detail").is_none());
    }
}

#[tokio::test]
async fn ready_shows_check_errors_as_detail_in_development() {
    let c = TestClient::new(app_with_checks("development").into_router());
    let res = c.get("/health/ready").await;
    let body = assert_not_ready(&res, "search");
    let detail = body["error"]["detail"]
        .as_str()
        .expect("detail in development");
    assert!(detail.contains(PRIVATE), "{detail}");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_fails_after_the_check_timeout() {
    let c = TestClient::new(
        App::new(config(&[
            ("CHOPIN_ENV", "test"),
            ("CHOPIN_REQUEST_TIMEOUT", "off"),
        ]))
        .health_check("slow", || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .into_router(),
    );
    let started = tokio::time::Instant::now();
    let res = c.get("/health/ready").await;
    assert_not_ready(&res, "slow");
    let waited = started.elapsed();
    assert!(
        waited >= chopin_core::health::CHECK_TIMEOUT && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAPI.

/// A thing.
#[derive(Serialize, ToSchema)]
struct Widget {
    id: u64,
    name: String,
}

/// Fetch one widget.
#[utoipa::path(
    get,
    path = "/widgets/{id}",
    params(("id" = u64, Path, description = "Widget id")),
    responses(
        (status = 200, description = "The widget", body = ApiResponse<Widget>),
        (status = 404, description = "No such widget", body = ErrorEnvelope),
    )
)]
async fn get_widget(
    axum::extract::Path(id): axum::extract::Path<u64>,
) -> Result<ApiResponse<Widget>, ChopinError> {
    if id == 0 {
        return Err(ChopinError::NotFound("no widget 0".into()));
    }
    Ok(ApiResponse::success(Widget {
        id,
        name: "gear".into(),
    }))
}

/// List widgets.
#[utoipa::path(
    get,
    path = "/widgets",
    params(Pagination),
    responses((status = 200, description = "A page", body = ApiResponse<Vec<Widget>>))
)]
async fn list_widgets(page: Pagination) -> ApiResponse<Vec<Widget>> {
    ApiResponse::paginated(vec![], &page, Some(0))
}

fn api_app(vars: &[(&str, &str)]) -> App {
    App::new(config(vars))
        .openapi_info("Widget API", "1.2.3")
        .api(
            OpenApiRouter::new()
                .routes(routes!(get_widget))
                .routes(routes!(list_widgets)),
        )
}

async fn spec_of(vars: &[(&str, &str)]) -> Value {
    let res = TestClient::new(api_app(vars).into_router())
        .get("/openapi.json")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    res.value()
}

#[tokio::test]
async fn spec_is_served_in_development_and_test() {
    for env in ["development", "test"] {
        let spec = spec_of(&[("CHOPIN_ENV", env)]).await;
        assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "{env}");
        assert_eq!(spec["info"]["title"], "Widget API");
        assert_eq!(spec["info"]["version"], "1.2.3");
        for path in ["/widgets/{id}", "/widgets", "/health/live", "/health/ready"] {
            assert!(spec["paths"].get(path).is_some(), "{env}: {path} missing");
        }
    }
    // The routes declared for the spec really serve.
    let c = TestClient::new(api_app(&[("CHOPIN_ENV", "test")]).into_router());
    assert_eq!(
        c.get("/widgets/3").await.value(),
        json!({"success": true, "data": {"id": 3, "name": "gear"}})
    );
}

/// `openapi::spec_for` (what apps export without a server) equals the spec the App serves.
#[tokio::test]
async fn spec_for_equals_the_served_spec() {
    let served = spec_of(&[("CHOPIN_ENV", "test")]).await;
    let exported = chopin_core::openapi::spec_for(
        "Widget API",
        "1.2.3",
        OpenApiRouter::<()>::new()
            .routes(routes!(get_widget))
            .routes(routes!(list_widgets)),
    );
    assert_eq!(served, serde_json::to_value(&exported).unwrap());
    assert!(served["paths"]["/health/ready"].is_object());
}

#[tokio::test]
async fn spec_and_docs_are_absent_in_production_unless_enabled() {
    let c = TestClient::new(api_app(&[("CHOPIN_ENV", "production")]).into_router());
    for path in ["/openapi.json", "/docs", "/docs/"] {
        let res = c.get(path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(res.error_code().as_deref(), Some("NOT_FOUND"));
    }
    // The API itself still serves.
    assert_eq!(c.get("/widgets/1").await.status, StatusCode::OK);

    let spec = spec_of(&[("CHOPIN_ENV", "production"), ("CHOPIN_OPENAPI", "true")]).await;
    assert!(spec["paths"].get("/widgets").is_some());

    let c = TestClient::new(
        api_app(&[("CHOPIN_ENV", "test"), ("CHOPIN_OPENAPI", "false")]).into_router(),
    );
    assert_eq!(c.get("/openapi.json").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn spec_and_docs_paths_are_configurable() {
    let c = TestClient::new(
        api_app(&[
            ("CHOPIN_ENV", "test"),
            ("CHOPIN_OPENAPI_PATH", "/api/spec.json"),
            ("CHOPIN_DOCS_PATH", "/api/docs"),
        ])
        .into_router(),
    );
    assert_eq!(c.get("/openapi.json").await.status, StatusCode::NOT_FOUND);
    let res = c.get("/api/spec.json").await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.value()["paths"].get("/widgets").is_some());
    let res = c.get("/api/docs/").await;
    assert_eq!(res.status, StatusCode::OK);
    let init = c.get("/api/docs/swagger-initializer.js").await;
    assert_eq!(init.status, StatusCode::OK);
    assert!(init.text().contains("/api/spec.json"), "{}", init.text());
}

/// `src="…"` and `href="…"` attribute values in an HTML page.
fn referenced_urls(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for attr in ["src=", "href="] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let value = &rest[1..];
            if let Some(end) = value.find(quote) {
                urls.push(value[..end].to_string());
            }
        }
    }
    urls
}

#[tokio::test]
async fn docs_ui_is_vendored_html() {
    let c = TestClient::new(api_app(&[("CHOPIN_ENV", "development")]).into_router());
    let res = c.get("/docs").await;
    let page = if res.status.is_redirection() {
        let location = res.header("location").expect("redirect target").to_string();
        assert!(location.starts_with("/docs"), "{location}");
        c.get(&location).await
    } else {
        res
    };
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(
        page.header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{:?}",
        page.header("content-type")
    );
    let html = page.text();
    assert!(html.to_ascii_lowercase().contains("<html"), "{html}");
    assert!(html.contains("swagger"), "the Swagger UI page: {html}");

    let urls = referenced_urls(&html);
    assert!(
        urls.iter().any(|u| u.ends_with(".js")),
        "the page loads scripts: {urls:?}"
    );
    for url in &urls {
        let lower = url.to_ascii_lowercase();
        assert!(
            !lower.starts_with("http://")
                && !lower.starts_with("https://")
                && !lower.starts_with("//"),
            "external asset {url} (no CDN allowed)"
        );
        // Every referenced asset is served from the binary.
        let path = match url.strip_prefix("./") {
            Some(rel) => format!("/docs/{rel}"),
            None if url.starts_with('/') => url.clone(),
            None => format!("/docs/{url}"),
        };
        let asset = c.get(&path).await;
        assert_eq!(asset.status, StatusCode::OK, "{path}");
        assert!(!asset.body.is_empty(), "{path}");
    }
    let init = c.get("/docs/swagger-initializer.js").await;
    assert_eq!(init.status, StatusCode::OK);
    assert!(init.text().contains("/openapi.json"), "{}", init.text());
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().expect("$ref is a string").to_string());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            &spec["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[tokio::test]
async fn every_ref_resolves_into_components() {
    let spec = spec_of(&[("CHOPIN_ENV", "test")]).await;
    let schemas = spec["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    let mut refs = Vec::new();
    collect_refs(&spec, &mut refs);
    assert!(!refs.is_empty(), "the spec uses references");
    let responses = spec["components"]["responses"]
        .as_object()
        .expect("components.responses");
    for r in refs {
        let resolves = if let Some(name) = r.strip_prefix("#/components/schemas/") {
            schemas.contains_key(name)
        } else if let Some(name) = r.strip_prefix("#/components/responses/") {
            responses.contains_key(name)
        } else {
            panic!("unexpected $ref {r}")
        };
        assert!(resolves, "$ref {r} does not resolve");
    }
}

/// The body of `POST /widgets`.
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
struct NewWidget {
    name: String,
}

/// Create a widget (needs a token).
#[utoipa::path(
    post,
    path = "/widgets",
    request_body = NewWidget,
    responses(
        (status = 201, description = "Created", body = ApiResponse<Widget>),
        (status = 400, description = "The handler's own words.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
async fn create_widget() -> ApiResponse<()> {
    ApiResponse::no_content()
}

/// Say hello: no input at all.
#[utoipa::path(get, path = "/hello", responses((status = 200, description = "Hi")))]
async fn hello() -> &'static str {
    "hi"
}

fn statuses(spec: &Value, path: &str, method: &str) -> Vec<String> {
    spec["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} has no responses"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_operation_lists_the_framework_errors_it_can_get() {
    let app = App::new(config(&[("CHOPIN_ENV", "test")])).api(
        OpenApiRouter::new()
            .routes(routes!(get_widget))
            .routes(routes!(list_widgets, create_widget))
            .routes(routes!(hello)),
    );
    let spec = serde_json::to_value(app.openapi()).unwrap();

    // Only what can happen: 400 needs input, 401 a security requirement, 413/415/422 a body.
    assert_eq!(
        statuses(&spec, "/hello", "get"),
        ["200", "429", "500", "503", "504"]
    );
    assert_eq!(
        statuses(&spec, "/widgets/{id}", "get"),
        ["200", "400", "404", "429", "500", "503", "504"]
    );
    assert_eq!(
        statuses(&spec, "/widgets", "get"),
        ["200", "400", "429", "500", "503", "504"]
    );
    assert_eq!(
        statuses(&spec, "/widgets", "post"),
        [
            "201", "400", "401", "413", "415", "422", "429", "500", "503", "504"
        ]
    );
    assert_eq!(
        statuses(&spec, "/health/live", "get"),
        ["200", "429", "500", "503", "504"]
    );

    // Added ones are references to shared responses; a handler's own entry is kept.
    let post = &spec["paths"]["/widgets"]["post"]["responses"];
    assert_eq!(post["400"]["description"], "The handler's own words.");
    assert_eq!(post["401"]["$ref"], "#/components/responses/Unauthorized");
    assert_eq!(
        post["422"]["$ref"],
        "#/components/responses/ValidationFailed"
    );
    let shared = &spec["components"]["responses"];
    for (name, header) in [
        ("BadRequest", None),
        ("Unauthorized", Some("WWW-Authenticate")),
        ("PayloadTooLarge", None),
        ("UnsupportedMediaType", None),
        ("ValidationFailed", None),
        ("RateLimited", Some("Retry-After")),
        ("InternalError", None),
        ("ServiceUnavailable", Some("Retry-After")),
        ("Timeout", None),
    ] {
        let response = &shared[name];
        assert_eq!(
            response["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorEnvelope",
            "{name}"
        );
        if let Some(header) = header {
            assert!(response["headers"][header].is_object(), "{name}: {header}");
        }
    }

    // Running it again changes nothing; the served spec is the same.
    let mut again = app.openapi().clone();
    chopin_core::openapi::add_error_responses(&mut again);
    assert_eq!(serde_json::to_value(&again).unwrap(), spec);
    let served = TestClient::new(app.into_router())
        .get("/openapi.json")
        .await;
    assert_eq!(served.value(), spec);
}

/// The 401 the shared response promises comes with `WWW-Authenticate`, and the 415 / 422 /
/// 413 with the envelope, as documented.
#[tokio::test]
async fn the_shared_responses_describe_what_the_server_sends() {
    async fn echo(ValidJson(w): ValidJson<Checked>) -> ApiResponse<String> {
        ApiResponse::success(w.name)
    }
    #[derive(serde::Deserialize, validator::Validate)]
    struct Checked {
        #[validate(length(min = 1))]
        name: String,
    }
    let router = axum::Router::new().route("/echo", axum::routing::post(echo));
    let c = TestClient::new(
        App::new(config(&[
            ("CHOPIN_ENV", "test"),
            ("CHOPIN_BODY_LIMIT", "64"),
        ]))
        .router(router)
        .into_router(),
    );
    let wrong_type = c
        .request(
            http::Request::post("/echo")
                .header("content-type", "text/plain")
                .body(axum::body::Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        wrong_type.error_code().as_deref(),
        Some("UNSUPPORTED_MEDIA_TYPE")
    );
    let invalid = c.post_json("/echo", &json!({"name": ""})).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    let large = c
        .post_json("/echo", &json!({"name": "x".repeat(100)}))
        .await;
    assert_eq!(large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(large.error_code().as_deref(), Some("PAYLOAD_TOO_LARGE"));
}

#[tokio::test]
async fn shared_schemas_are_present() {
    let spec = spec_of(&[("CHOPIN_ENV", "test")]).await;
    let schemas = &spec["components"]["schemas"];
    for name in ["ErrorEnvelope", "ErrorCode", "PageMeta", "FieldError"] {
        assert!(schemas.get(name).is_some(), "{name} missing");
    }

    let codes: BTreeSet<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("ErrorCode is an enum: {}", schemas["ErrorCode"]))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes.len(), 16);
    assert_eq!(codes, expected);

    let envelope = &schemas["ErrorEnvelope"]["properties"];
    assert!(
        envelope.get("success").is_some() && envelope.get("error").is_some(),
        "{envelope}"
    );
    let error = resolve(&spec, &envelope["error"]);
    for field in ["code", "message", "fields", "request_id", "detail"] {
        assert!(
            error["properties"].get(field).is_some(),
            "error.{field}: {error}"
        );
    }

    let meta = &schemas["PageMeta"]["properties"];
    for field in ["limit", "offset", "total", "next_cursor"] {
        assert!(meta.get(field).is_some(), "PageMeta.{field}");
    }
}

#[tokio::test]
async fn api_response_schema_has_the_envelope_fields() {
    let spec = spec_of(&[("CHOPIN_ENV", "test")]).await;
    for (path, status) in [
        ("/widgets/{id}", "200"),
        ("/widgets", "200"),
        ("/health/live", "200"),
    ] {
        let schema = &spec["paths"][path]["get"]["responses"][status]["content"]["application/json"]
            ["schema"];
        assert!(!schema.is_null(), "{path} {status} has a JSON schema");
        let schema = resolve(&spec, schema);
        let props = &schema["properties"];
        for field in ["success", "data", "meta"] {
            assert!(
                props.get(field).is_some(),
                "{path}: ApiResponse.{field} in {schema}"
            );
        }
        assert!(
            props.get("status").is_none(),
            "the HTTP status is not a body field: {schema}"
        );
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            required.contains(&"success") && required.contains(&"data"),
            "{path}: {schema}"
        );
        assert!(!required.contains(&"meta"), "meta is optional: {schema}");
    }
    // The error response of a route points at the envelope.
    let not_found = &spec["paths"]["/widgets/{id}"]["get"]["responses"]["404"]["content"]["application/json"]
        ["schema"];
    assert_eq!(not_found["$ref"], "#/components/schemas/ErrorEnvelope");
}
