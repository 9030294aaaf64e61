//! The `Pagination` extractor through HTTP: defaults, both styles, every rejection rule,
//! configured limits, the paginated envelope, `clamped()`, and its OpenAPI parameters.

use std::collections::HashMap;

use axum::Router;
use axum::routing::get;
use chopin_core::extractors::{LimitOverflow, PaginationConfig};
use chopin_core::openapi::{OpenApiRouter, routes};
use chopin_core::prelude::*;
use chopin_core::testing::TestClient;
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

const TOTAL: u64 = 45;

/// An item of the test list.
#[derive(Serialize, ToSchema)]
struct Item {
    id: u64,
}

/// List items.
#[utoipa::path(
    get,
    path = "/items",
    params(Pagination),
    responses((status = 200, description = "A page of items", body = ApiResponse<Vec<Item>>))
)]
async fn list_items(page: Pagination) -> ApiResponse<Vec<Item>> {
    let end = (page.offset.saturating_add(page.limit)).min(TOTAL);
    let items = (page.offset.min(TOTAL)..end)
        .map(|id| Item { id })
        .collect();
    ApiResponse::paginated(items, &page, Some(TOTAL))
}

async fn list_without_total(page: Pagination) -> ApiResponse<Vec<u64>> {
    ApiResponse::paginated(vec![page.offset], &page, None)
}

async fn echo(page: Pagination) -> ApiResponse<Value> {
    ApiResponse::success(json!({"limit": page.limit, "offset": page.offset}))
}

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

fn client_with(vars: &[(&str, &str)]) -> TestClient {
    let app = App::new(config(vars))
        .api(OpenApiRouter::new().routes(routes!(list_items)))
        .router(
            Router::new()
                .route("/echo", get(echo))
                .route("/no-total", get(list_without_total)),
        );
    TestClient::new(app.into_router())
}

fn client() -> TestClient {
    client_with(&[("CHOPIN_ENV", "test")])
}

async fn page_of(c: &TestClient, query: &str) -> (u64, u64) {
    let res = c.get(&format!("/echo?{query}")).await;
    assert_eq!(res.status, StatusCode::OK, "?{query}: {}", res.text());
    let v = res.value();
    (
        v["data"]["limit"].as_u64().unwrap(),
        v["data"]["offset"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn defaults() {
    let c = client();
    assert_eq!(page_of(&c, "").await, (20, 0));
    let res = c.get("/echo").await;
    assert_eq!(res.value()["data"], json!({"limit": 20, "offset": 0}));
}

#[tokio::test]
async fn limit_offset_style() {
    let c = client();
    assert_eq!(page_of(&c, "limit=5&offset=10").await, (5, 10));
    assert_eq!(page_of(&c, "offset=7").await, (20, 7));
    assert_eq!(page_of(&c, "limit=100").await, (100, 0));
    assert_eq!(page_of(&c, "limit=1").await, (1, 0));
    assert_eq!(page_of(&c, "limit=%35").await, (5, 0), "percent-decoded");
    assert_eq!(page_of(&c, "limit=007").await, (7, 0));
    assert_eq!(
        page_of(&c, "sort=-title&limit=3&filter[x]=1").await,
        (3, 0),
        "other parameters are ignored"
    );
    assert_eq!(
        page_of(&c, "offset=9223372036854775807").await,
        (20, i64::MAX as u64),
        "the largest SQL offset"
    );
}

#[tokio::test]
async fn page_per_page_style() {
    let c = client();
    assert_eq!(page_of(&c, "page=3&per_page=10").await, (10, 20));
    assert_eq!(page_of(&c, "page=1").await, (20, 0));
    assert_eq!(page_of(&c, "page=2").await, (20, 20));
    assert_eq!(page_of(&c, "per_page=7").await, (7, 0));
}

#[tokio::test]
async fn every_bad_input_is_400_naming_the_parameter() {
    let c = client();
    let cases: &[(&str, &[&str])] = &[
        ("limit=abc", &["limit", "whole number"]),
        ("limit=1.5", &["limit", "whole number"]),
        ("limit=+5", &["limit", "whole number"]),
        ("limit=", &["limit", "whole number"]),
        ("limit", &["limit", "whole number"]),
        ("limit=%20", &["limit", "whole number"]),
        ("limit=%FF", &["limit", "whole number"]),
        ("limit=-1", &["limit", "negative"]),
        ("offset=-5", &["offset", "negative"]),
        ("limit=0", &["limit", "between 1 and 100"]),
        ("limit=101", &["limit", "between 1 and 100"]),
        ("per_page=0", &["per_page", "between 1 and 100"]),
        ("per_page=101", &["per_page", "between 1 and 100"]),
        ("page=0", &["page", "starts at 1"]),
        ("page=-2", &["page", "negative"]),
        ("page=two", &["page", "whole number"]),
        ("limit=5&page=2", &["limit", "page", "not both"]),
        ("offset=5&per_page=2", &["offset", "per_page", "not both"]),
        ("limit=5&limit=6", &["limit", "more than once"]),
        ("page=1&page=1", &["page", "more than once"]),
        ("offset=99999999999999999999999", &["offset", "too large"]),
        ("offset=9223372036854775808", &["offset", "at most"]),
        ("limit=99999999999999999999999", &["limit", "too large"]),
        (
            "page=9223372036854775807&per_page=100",
            &["page", "too large"],
        ),
    ];
    for (query, needles) in cases {
        let res = c.get(&format!("/items?{query}")).await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "?{query}: {}",
            res.text()
        );
        let body = res.value();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "INVALID_QUERY", "?{query}");
        assert_eq!(
            body["error"]["request_id"].as_str(),
            res.header("x-request-id")
        );
        assert!(body["error"].get("fields").is_none());
        let message = body["error"]["message"].as_str().unwrap();
        for needle in *needles {
            assert!(
                message.contains(needle),
                "?{query}: message {message:?} should mention {needle:?}"
            );
        }
    }
}

#[tokio::test]
async fn configured_limits() {
    let c = client_with(&[
        ("CHOPIN_PAGINATION_DEFAULT_LIMIT", "5"),
        ("CHOPIN_PAGINATION_MAX_LIMIT", "50"),
    ]);
    assert_eq!(page_of(&c, "").await, (5, 0));
    assert_eq!(page_of(&c, "limit=50").await, (50, 0));
    assert_eq!(page_of(&c, "page=2").await, (5, 5));
    for query in ["limit=51", "per_page=51"] {
        let res = c.get(&format!("/echo?{query}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}");
        let message = res.value()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("between 1 and 50"), "{message}");
    }

    // Raising only the maximum keeps the default; lowering it below 20 lowers the default.
    let c = client_with(&[("CHOPIN_PAGINATION_MAX_LIMIT", "500")]);
    assert_eq!(page_of(&c, "").await, (20, 0));
    assert_eq!(page_of(&c, "limit=500").await, (500, 0));
    let c = client_with(&[("CHOPIN_PAGINATION_MAX_LIMIT", "10")]);
    assert_eq!(page_of(&c, "").await, (10, 0));
    let res = c.get("/echo?limit=11").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn configured_limits_hold_without_any_default_layer() {
    let app = App::new(config(&[("CHOPIN_PAGINATION_MAX_LIMIT", "10")]))
        .router(Router::new().route("/echo", get(echo)))
        .layers(Layers::minimal());
    let c = TestClient::new(app.into_router());
    assert_eq!(page_of(&c, "").await, (10, 0));
    assert_eq!(
        c.get("/echo?limit=11").await.status,
        StatusCode::BAD_REQUEST
    );
    // And with the defaults, nothing is wrapped but the defaults still apply.
    let app = App::new(config(&[]))
        .router(Router::new().route("/echo", get(echo)))
        .layers(Layers::minimal());
    let c = TestClient::new(app.into_router());
    assert_eq!(page_of(&c, "").await, (20, 0));
    assert_eq!(
        c.get("/echo?limit=101").await.status,
        StatusCode::BAD_REQUEST
    );
}

/// The default overflow mode rejects a page size above the maximum; `clamp` serves the
/// maximum instead, and says so in `meta.limit`.
#[tokio::test]
async fn overflow_reject_is_the_default_and_clamp_serves_the_maximum() {
    let strict = client();
    let res = strict.get("/items?limit=500").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text());
    assert_eq!(res.error_code().as_deref(), Some("INVALID_QUERY"));

    let c = client_with(&[
        ("CHOPIN_ENV", "test"),
        ("CHOPIN_PAGINATION_OVERFLOW", "clamp"),
    ]);
    let res = c.get("/no-total?limit=500&offset=3").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.value()["meta"], json!({"limit": 100, "offset": 3}));
    let res = c.get("/items?page=1&per_page=500").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.value()["data"].as_array().map(Vec::len), Some(45));
    assert_eq!(res.value()["meta"]["limit"], 100);
    assert_eq!(page_of(&c, "limit=0").await, (1, 0), "0 clamps up to 1");
    assert_eq!(page_of(&c, "limit=37").await, (37, 0), "in range is kept");
    // Clamping is about sizes: malformed input is still a 400.
    for query in [
        "limit=abc",
        "limit=-1",
        "page=0",
        "limit=5&page=2",
        "limit=1&limit=2",
    ] {
        let res = c.get(&format!("/echo?{query}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "?{query}");
        assert_eq!(
            res.error_code().as_deref(),
            Some("INVALID_QUERY"),
            "?{query}"
        );
    }

    // A configured maximum is what clamping clamps to, also in a plain axum router with the
    // config as an extension.
    let config = PaginationConfig {
        max_limit: 30,
        overflow: LimitOverflow::Clamp,
        ..PaginationConfig::default()
    };
    let c = TestClient::new(
        Router::new()
            .route("/echo", get(echo))
            .layer(axum::Extension(config)),
    );
    assert_eq!(page_of(&c, "limit=500").await, (30, 0));
}

#[test]
fn a_zero_maximum_allows_one_and_says_so() {
    // Built directly (the environment refuses 0): the range checked and the range named agree.
    let config = PaginationConfig {
        default_limit: 1,
        max_limit: 0,
        overflow: LimitOverflow::Reject,
    };
    assert_eq!(config.page_size("limit", Some(1)).unwrap(), 1);
    let err = config.page_size("limit", Some(2)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidQuery);
    assert_eq!(
        err.to_string(),
        "invalid query: `limit` must be between 1 and 1"
    );
}

#[test]
fn inconsistent_configured_limits_are_rejected() {
    let err = Config::from_lookup(|k| match k {
        "CHOPIN_PAGINATION_DEFAULT_LIMIT" => Some("60".into()),
        "CHOPIN_PAGINATION_MAX_LIMIT" => Some("50".into()),
        _ => None,
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("CHOPIN_PAGINATION_DEFAULT_LIMIT"),
        "{err}"
    );
    for bad in ["0", "-1", "many"] {
        let err = Config::from_lookup(|k| (k == "CHOPIN_PAGINATION_MAX_LIMIT").then(|| bad.into()))
            .unwrap_err();
        assert!(
            err.to_string().contains("CHOPIN_PAGINATION_MAX_LIMIT"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn paginated_envelope_with_total() {
    let res = client().get("/items?limit=3&offset=42").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(
        res.value(),
        json!({
            "success": true,
            "data": [{"id": 42}, {"id": 43}, {"id": 44}],
            "meta": {"limit": 3, "offset": 42, "total": 45}
        })
    );
    let res = client().get("/items?page=2&per_page=2").await;
    assert_eq!(
        res.value(),
        json!({
            "success": true,
            "data": [{"id": 2}, {"id": 3}],
            "meta": {"limit": 2, "offset": 2, "total": 45}
        })
    );
}

#[tokio::test]
async fn paginated_envelope_without_total_omits_it() {
    let res = client().get("/no-total?offset=4").await;
    assert_eq!(res.status, StatusCode::OK);
    let body = res.value();
    assert_eq!(
        body,
        json!({"success": true, "data": [4], "meta": {"limit": 20, "offset": 4}})
    );
    assert!(
        !res.text().contains("total"),
        "`total` is omitted, not null: {}",
        res.text()
    );
    assert!(!res.text().contains("next_cursor"), "{}", res.text());
}

#[tokio::test]
async fn works_in_a_plain_axum_router_with_default_limits() {
    // Embedded without App: no PaginationConfig extension, so the defaults (20 / 100) apply.
    let c = TestClient::new(Router::new().route("/echo", get(echo)));
    assert_eq!(page_of(&c, "").await, (20, 0));
    assert_eq!(page_of(&c, "limit=100").await, (100, 0));
    let res = c.get("/echo?limit=101").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error_code().as_deref(), Some("INVALID_QUERY"));
}

#[test]
fn clamped() {
    let p = Pagination::new(1000, 5).clamped();
    assert_eq!((p.limit, p.offset), (100, 5));
    let p = Pagination::new(0, u64::MAX).clamped();
    assert_eq!((p.limit, p.offset), (1, i64::MAX as u64));
    let p = Pagination::new(37, 12).clamped();
    assert_eq!((p.limit, p.offset), (37, 12), "in-range values are kept");
    assert_eq!(p.max_limit(), 100);

    // A pagination parsed under a configured maximum clamps to that maximum.
    let config = PaginationConfig {
        default_limit: 10,
        max_limit: 30,
        ..PaginationConfig::default()
    };
    let mut p = Pagination::from_query("limit=30", config).unwrap();
    assert_eq!(p.max_limit(), 30);
    p.limit = 1_000;
    assert_eq!(p.clamped().limit, 30);
    assert_eq!(Pagination::default(), Pagination::new(20, 0));
}

#[tokio::test]
async fn openapi_lists_one_style_with_the_enforced_bounds() {
    let app = App::new(Config::for_environment(Environment::Test))
        .api(OpenApiRouter::new().routes(routes!(list_items)));
    let spec = serde_json::to_value(app.openapi()).unwrap();
    let params = spec["paths"]["/items"]["get"]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("no parameters: {spec:#}"));
    // Only `limit`/`offset`: listing `page`/`per_page` too would promise that mixing works.
    let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["limit", "offset"], "{params:#?}");
    for p in params {
        assert_eq!(p["in"], "query", "{p}");
        assert_eq!(p["required"], false, "{p}");
        assert_eq!(p["schema"]["type"], "integer", "{p}");
        assert!(p["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert!(
        params[0]["description"]
            .as_str()
            .unwrap()
            .contains("per_page")
    );
    // The documented bounds are the enforced ones, at both edges.
    let limit = &params[0]["schema"];
    let (min, max) = (
        limit["minimum"].as_u64().unwrap(),
        limit["maximum"].as_u64().unwrap(),
    );
    let parse = |q: String| Pagination::from_query(&q, PaginationConfig::default());
    assert!(parse(format!("limit={min}")).is_ok() && parse(format!("limit={max}")).is_ok());
    assert!(parse(format!("limit={}", min - 1)).is_err());
    assert!(parse(format!("limit={}", max + 1)).is_err());
    let offset = &params[1]["schema"];
    assert_eq!(offset["minimum"], json!(0));
    // An integer, written exactly (a float would round to 2^63).
    let max = offset["maximum"].as_u64().unwrap();
    assert_eq!(max, i64::MAX as u64);
    assert!(parse(format!("offset={max}")).is_ok());
    assert!(parse(format!("offset={}", max + 1)).is_err());

    // An App documents the limits it is configured with: a smaller maximum, or clamping.
    for (vars, min, max) in [
        (&[("CHOPIN_PAGINATION_MAX_LIMIT", "30")][..], 1, 30),
        (
            &[
                ("CHOPIN_PAGINATION_MAX_LIMIT", "30"),
                ("CHOPIN_PAGINATION_OVERFLOW", "clamp"),
            ][..],
            0,
            u64::MAX,
        ),
    ] {
        let config = Config::from_lookup(|k| match k {
            "CHOPIN_ENV" => Some("test".into()),
            _ => vars
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string()),
        })
        .unwrap();
        let pagination = config.pagination;
        let app = App::new(config).api(OpenApiRouter::new().routes(routes!(list_items)));
        let spec = serde_json::to_value(app.openapi()).unwrap();
        let limit = &spec["paths"]["/items"]["get"]["parameters"][0];
        assert_eq!(limit["name"], "limit");
        assert_eq!(limit["schema"]["minimum"], json!(min), "{vars:?}");
        assert_eq!(limit["schema"]["maximum"], json!(max), "{vars:?}");
        let parse = |q: String| Pagination::from_query(&q, pagination);
        assert!(parse(format!("limit={min}")).is_ok(), "{vars:?}");
        assert!(parse(format!("limit={max}")).is_ok(), "{vars:?}");
        if max < u64::MAX {
            assert!(parse(format!("limit={}", max + 1)).is_err(), "{vars:?}");
        } else {
            assert!(parse(format!("limit={max}0")).is_err(), "{vars:?}");
        }
        // The served spec says the same.
        let served = TestClient::new(app.into_router())
            .get("/openapi.json")
            .await;
        assert_eq!(
            served.value()["paths"]["/items"]["get"]["parameters"][0],
            *limit
        );
        // `spec_for` reads no configuration: an exported spec states the defaults (the one
        // documented difference from the served spec).
        let exported = chopin_core::openapi::spec_for(
            "t",
            "1",
            OpenApiRouter::<()>::new().routes(routes!(list_items)),
        );
        let exported = serde_json::to_value(exported).unwrap();
        let limit = &exported["paths"]["/items"]["get"]["parameters"][0];
        assert_eq!(limit["schema"]["minimum"], json!(1));
        assert_eq!(limit["schema"]["maximum"], json!(100));
    }

    // The same spec is what `/openapi.json` serves.
    let c = TestClient::new(app.into_router());
    let served = c.get("/openapi.json").await.value();
    assert_eq!(
        served["paths"]["/items"]["get"]["parameters"],
        json!(params)
    );
}

// ---- Cursor (keyset) pagination through `App` -------------------------------------------------

mod cursor {
    use super::*;
    use chopin_core::extractors::{CursorKey, CursorPagination};
    use chopin_core::signing::Signer;

    const ROWS: i64 = 45;
    const SECRET: &str = "a-cursor-secret-of-at-least-32-bytes!!";

    /// Ids 1..=45, newest (highest) first: `WHERE id < after ORDER BY id DESC LIMIT n + 1`.
    async fn newest_first(
        page: CursorPagination<i64>,
    ) -> Result<ApiResponse<Vec<i64>>, ChopinError> {
        let start = page.after.map_or(ROWS, |after| after - 1);
        let rows: Vec<i64> = (1..=start)
            .rev()
            .take(page.fetch_limit() as usize)
            .collect();
        ApiResponse::cursor_paginated(rows, &page, |id| *id)
    }

    fn client(vars: &[(&str, &str)]) -> TestClient {
        TestClient::new(
            App::new(super::config(vars))
                .router(Router::new().route("/ids", get(newest_first)))
                .into_router(),
        )
    }

    async fn walk(c: &TestClient, limit: u64) -> Vec<i64> {
        let mut seen = Vec::new();
        let mut uri = format!("/ids?limit={limit}");
        loop {
            let res = c.get(&uri).await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.text());
            let body: Value = res.json();
            let meta = &body["meta"];
            assert_eq!(meta["limit"], json!(limit));
            assert!(
                meta.get("offset").is_none() && meta.get("total").is_none(),
                "{meta}"
            );
            seen.extend(
                body["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap()),
            );
            match meta.get("next_cursor") {
                Some(next) => uri = format!("/ids?limit={limit}&cursor={}", next.as_str().unwrap()),
                None => break,
            }
        }
        seen
    }

    #[tokio::test]
    async fn walking_by_cursor_yields_every_row_once_in_order() {
        let c = client(&[("CHOPIN_ENV", "test")]);
        let expected: Vec<i64> = (1..=ROWS).rev().collect();
        for limit in [1, 7, 20, 45, 100] {
            assert_eq!(walk(&c, limit).await, expected, "limit {limit}");
        }
    }

    #[tokio::test]
    async fn refused_cursors_answer_400_in_the_envelope() {
        let c = client(&[("CHOPIN_ENV", "test")]);
        let first: Value = c.get("/ids?limit=5").await.json();
        let next = first["meta"]["next_cursor"].as_str().unwrap().to_string();
        let mut tampered = next.clone().into_bytes();
        tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let other = CursorKey::new(Signer::new(&[1u8; 32]).unwrap(), Duration::from_secs(60));
        let foreign = other.encode(&10i64).unwrap();
        for cursor in [tampered.as_str(), foreign.as_str(), "garbage", "a.b"] {
            let res = c.get(&format!("/ids?cursor={cursor}")).await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{cursor}");
            let body: Value = res.json();
            assert_eq!(body["success"], json!(false));
            assert_eq!(body["error"]["code"], json!("INVALID_CURSOR"));
            assert!(body["error"]["request_id"].is_string(), "{body}");
        }
        let res = c.get(&format!("/ids?cursor={next}&offset=5")).await;
        assert_eq!(res.error_code().as_deref(), Some("INVALID_QUERY"));
        assert_eq!(
            c.get(&format!("/ids?cursor={next}")).await.status,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn apps_with_different_keys_in_one_process_keep_their_own() {
        // The first App of the process with a key makes it the extractor's default; every
        // other App hands its own key to its requests. Either way each accepts only its own
        // cursors, whichever was built first.
        let other_secret = "another-cursor-secret-of-32-bytes-or-more";
        let a = client(&[
            ("CHOPIN_ENV", "production"),
            ("CHOPIN_CURSOR_SECRET", SECRET),
        ]);
        let b = client(&[
            ("CHOPIN_ENV", "production"),
            ("CHOPIN_CURSOR_SECRET", other_secret),
        ]);
        let none = client(&[("CHOPIN_ENV", "production")]);
        for (own, foreign) in [(&a, &b), (&b, &a)] {
            let first: Value = own.get("/ids?limit=5").await.json();
            let next = first["meta"]["next_cursor"].as_str().unwrap();
            let res = own.get(&format!("/ids?limit=5&cursor={next}")).await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.text());
            let res = foreign.get(&format!("/ids?limit=5&cursor={next}")).await;
            assert_eq!(res.error_code().as_deref(), Some("INVALID_CURSOR"));
            // An App without a key never borrows another's.
            let res = none.get(&format!("/ids?limit=5&cursor={next}")).await;
            assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
        }
    }

    use std::time::Duration;

    #[tokio::test]
    async fn the_key_comes_from_the_configuration() {
        // Two instances with the same secret accept each other's cursors.
        let vars = [
            ("CHOPIN_ENV", "production"),
            ("CHOPIN_CURSOR_SECRET", SECRET),
        ];
        let (a, b) = (client(&vars), client(&vars));
        let first: Value = a.get("/ids?limit=5").await.json();
        let next = first["meta"]["next_cursor"].as_str().unwrap();
        let res = b.get(&format!("/ids?limit=5&cursor={next}")).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert_eq!(res.json::<Value>()["data"], json!([40, 39, 38, 37, 36]));
        // A development instance (random key) refuses them.
        let dev = client(&[("CHOPIN_ENV", "development")]);
        let res = dev.get(&format!("/ids?limit=5&cursor={next}")).await;
        assert_eq!(res.error_code().as_deref(), Some("INVALID_CURSOR"));
        // Production without any key: no cursors (500, nothing leaked), and
        // `Config::cursor_signer` names the variable for a start-up check.
        let vars = [("CHOPIN_ENV", "production")];
        let res = client(&vars).get("/ids").await;
        assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!res.text().contains("CursorKey"), "{}", res.text());
        let err = super::config(&vars).cursor_signer().unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_CURSOR_SECRET");
        // `CHOPIN_CURSOR_TTL` reaches the signature: an expired cursor is refused.
        let c = client(&[("CHOPIN_ENV", "test"), ("CHOPIN_CURSOR_SECRET", SECRET)]);
        let key = CursorKey::new(Signer::new(SECRET.as_bytes()).unwrap(), Duration::ZERO);
        let stale = key.encode(&10i64).unwrap();
        let res = c.get(&format!("/ids?cursor={stale}")).await;
        assert_eq!(res.error_code().as_deref(), Some("INVALID_CURSOR"));
        assert!(res.text().contains("expired"), "{}", res.text());
    }
}
