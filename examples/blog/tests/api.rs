//! The blog API over real HTTP semantics (the whole layer stack, in process), on a SQLite
//! file and on a real PostgreSQL database. Both backends run the same assertions
//! ([`exercise_api`]).

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use blog::entity::comment;
use chopin_core::Config;
use chopin_core::auth::AuthStore;
use chopin_core::db::Db;
use chopin_core::testing::{TestClient, TestPostgres, TestResponse};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

fn config(database_url: &str) -> Config {
    Config::from_lookup(|name| match name {
        "CHOPIN_ENV" => Some("test".into()),
        "DATABASE_URL" => Some(database_url.to_string()),
        _ => None,
    })
    .expect("test configuration is valid")
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("blog.db").display())
}

#[tokio::test]
async fn api_on_sqlite() {
    let dir = tempfile::TempDir::new().unwrap();
    let config = config(&sqlite_url(&dir));
    let router = blog::build_app(config.clone()).await.unwrap();
    let db = Db::connect(&config.database).await.unwrap();
    exercise_api(router, &db).await;
}

#[tokio::test]
async fn api_on_postgres() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let config = config(pg.url());
    let router = blog::build_app(config.clone()).await.unwrap();
    let db = Db::connect(&config.database).await.unwrap();
    exercise_api(router, &db).await;
    db.close().await;
}

/// Starting again on an existing database skips applied migrations and keeps the data.
#[tokio::test]
async fn restart_keeps_data_and_migrations_are_idempotent() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = sqlite_url(&dir);
    let first = TestClient::new(blog::build_app(config(&url)).await.unwrap());
    let (first, _) = sign_up(&first, "kept@example.com").await;
    let created = first
        .post_json("/api/posts", &post("Kept", "kept", true))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let id = created.value()["data"]["id"].as_i64().unwrap();
    drop(first);

    let second = TestClient::new(blog::build_app(config(&url)).await.unwrap());
    let shown = second.get(&format!("/api/posts/{id}")).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
    assert_eq!(shown.value()["data"], created.value()["data"]);
}

/// Two instances of the blog sharing one database and one Redis (`CHOPIN_CACHE=tiered`): once
/// a write returns on instance A, instance B never serves the post it had cached before.
#[tokio::test]
async fn two_instances_share_cache_invalidation() {
    let Some(redis_url) = chopin_core::testing::redis_url_or_skip().await else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let database_url = sqlite_url(&dir);
    let namespace = chopin_core::testing::unique_namespace();
    let instance = || {
        Config::from_lookup(|name| match name {
            "CHOPIN_ENV" => Some("test".into()),
            "DATABASE_URL" => Some(database_url.clone()),
            "CHOPIN_CACHE" => Some("tiered".into()),
            "REDIS_URL" => Some(redis_url.clone()),
            "CHOPIN_CACHE_NAMESPACE" => Some(namespace.clone()),
            _ => None,
        })
        .expect("test configuration is valid")
    };
    let a = TestClient::new(blog::build_app(instance()).await.unwrap());
    let b = TestClient::new(blog::build_app(instance()).await.unwrap());
    let (a, _) = sign_up(&a, "shared@example.com").await;

    let created = a
        .post_json("/api/posts", &post("Shared", "shared", true))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let id = created.value()["data"]["id"].as_i64().unwrap();
    let path = format!("/api/posts/{id}");
    for round in 0..20 {
        // B reads (and caches) the current version.
        let before = b.get(&path).await;
        assert_eq!(before.status, StatusCode::OK, "{}", before.text());
        // A writes; once it has answered, B must see the new title.
        let title = format!("Shared, edit {round}");
        let mut edit = post(&title, "shared", true);
        edit["body"] = json!("edited");
        let updated = a.put_json(&path, &edit).await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
        let after = b.get(&path).await;
        assert_eq!(
            after.value()["data"]["title"],
            title,
            "stale read in round {round}"
        );
    }
    let deleted = a.delete(&path).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(b.get(&path).await.status, StatusCode::NOT_FOUND);

    // Clean up the test's keys in the shared Redis.
    let cache = chopin_core::cache::Cache::from_config(&instance().cache)
        .await
        .unwrap();
    cache.delete_prefix("").await.unwrap();
}

/// Sign up through the auth module; a client sending the new account's token, and its id.
async fn sign_up(client: &TestClient, email: &str) -> (TestClient, i64) {
    let r = client
        .post_json(
            "/api/auth/signup",
            &json!({"email": email, "password": "a good password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let token = r.value()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let authed = client.with_bearer(&token);
    let me = authed.get("/api/auth/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    (authed, me.value()["data"]["id"].as_i64().unwrap())
}

/// Log in again (to get a token carrying roles granted since sign-up).
async fn log_in(client: &TestClient, email: &str) -> TestClient {
    let r = client
        .post_json(
            "/api/auth/login",
            &json!({"email": email, "password": "a good password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    client.with_bearer(r.value()["data"]["access_token"].as_str().unwrap())
}

fn post(title: &str, slug: &str, published: bool) -> Value {
    json!({"title": title, "slug": slug, "body": format!("Body of {title}."), "published": published})
}

/// Assert the response is an error envelope with this status and code; return its body.
#[track_caller]
fn assert_error(response: &TestResponse, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.value();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body
}

/// The names in `error.fields[*].field` of a 422.
#[track_caller]
fn invalid_fields(response: &TestResponse) -> BTreeSet<String> {
    let body = assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    );
    body["error"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields in {body}"))
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[track_caller]
fn titles(response: &TestResponse) -> Vec<String> {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response.value()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_string())
        .collect()
}

#[track_caller]
fn meta(response: &TestResponse) -> Value {
    response.value()["meta"].clone()
}

#[track_caller]
fn timestamp(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
}

async fn total_posts(client: &TestClient) -> u64 {
    let list = client.get("/api/posts").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    list.value()["meta"]["total"].as_u64().unwrap()
}

/// Everything a client can observe, against whichever database `router` was built on; `db` is
/// a separate connection to the same database, to check what the API cannot show (cascade).
async fn exercise_api(router: Router, db: &Db) {
    let anonymous = TestClient::new(router);
    let (client, author_id) = sign_up(&anonymous, "author@example.com").await;

    // An empty blog.
    let empty = client.get("/api/posts").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text());
    assert_eq!(
        empty.value(),
        json!({"success": true, "data": [], "meta": {"limit": 20, "offset": 0, "total": 0}})
    );

    // Create.
    let created = client
        .post_json("/api/posts", &post("First", "first", true))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let body = created.value();
    assert_eq!(body["success"], true);
    let first = body["data"].clone();
    let first_id = first["id"].as_i64().expect("numeric id");
    assert!(first_id > 0);
    assert_eq!(first["title"], "First");
    assert_eq!(first["slug"], "first");
    assert_eq!(first["body"], "Body of First.");
    assert_eq!(first["published"], true);
    assert_eq!(first["commentCount"], 0);
    assert_eq!(
        timestamp(&first["createdAt"]),
        timestamp(&first["updatedAt"])
    );
    let keys: BTreeSet<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "title",
            "slug",
            "body",
            "published",
            "createdAt",
            "authorId",
            "updatedAt",
            "commentCount"
        ])
    );

    // `published` defaults to false.
    let draft = client
        .post_json(
            "/api/posts",
            &json!({"title": "Second", "slug": "second", "body": ""}),
        )
        .await;
    assert_eq!(draft.status, StatusCode::CREATED, "{}", draft.text());
    assert_eq!(draft.value()["data"]["published"], false);
    let second_id = draft.value()["data"]["id"].as_i64().unwrap();
    let third = client
        .post_json("/api/posts", &post("Third", "third-3", true))
        .await;
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.text());
    let third_id = third.value()["data"]["id"].as_i64().unwrap();

    // Read back.
    let shown = client.get(&format!("/api/posts/{first_id}")).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
    assert_eq!(shown.value(), json!({"success": true, "data": first}));

    // Validation: 422 naming every bad field, nothing written.
    let bad = client
        .post_json(
            "/api/posts",
            &json!({"title": "", "slug": "Not A Slug!", "body": "x"}),
        )
        .await;
    assert_eq!(invalid_fields(&bad), set(&["slug", "title"]));
    let too_long = client
        .post_json(
            "/api/posts",
            &json!({"title": "t".repeat(201), "slug": "s".repeat(101), "body": "b".repeat(100_001)}),
        )
        .await;
    assert_eq!(invalid_fields(&too_long), set(&["body", "slug", "title"]));
    let at_limits = client
        .post_json(
            "/api/posts",
            &json!({"title": "é".repeat(200), "slug": "a".repeat(100), "body": "b".repeat(100_000)}),
        )
        .await;
    assert_eq!(
        at_limits.status,
        StatusCode::CREATED,
        "{}",
        at_limits.text()
    );
    let at_limits_id = at_limits.value()["data"]["id"].as_i64().unwrap();
    assert_eq!(
        client
            .delete(&format!("/api/posts/{at_limits_id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let missing_field = client
        .post_json("/api/posts", &json!({"title": "No slug", "body": "x"}))
        .await;
    assert!(invalid_fields(&missing_field).contains("slug"));
    let slug_error = &bad.value()["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "slug")
        .cloned()
        .unwrap();
    assert_eq!(slug_error["code"], "slug");
    let malformed = client
        .request(
            Request::post("/api/posts")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"title\": "))
                .unwrap(),
        )
        .await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "MALFORMED_JSON");
    let not_json = client
        .request(
            Request::post("/api/posts")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("hello"))
                .unwrap(),
        )
        .await;
    assert_error(
        &not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    assert_eq!(total_posts(&client).await, 3);

    // Duplicate slug: 409, nothing written.
    let duplicate = client
        .post_json("/api/posts", &post("Another first", "first", false))
        .await;
    assert_error(&duplicate, StatusCode::CONFLICT, "CONFLICT");
    assert_eq!(total_posts(&client).await, 3);

    // Listing: newest first, with limit/offset and page/per_page.
    let all = client.get("/api/posts").await;
    assert_eq!(titles(&all), ["Third", "Second", "First"]);
    assert_eq!(meta(&all), json!({"limit": 20, "offset": 0, "total": 3}));
    assert_eq!(all.value()["data"][2], first);
    let window = client.get("/api/posts?limit=2&offset=1").await;
    assert_eq!(titles(&window), ["Second", "First"]);
    assert_eq!(meta(&window), json!({"limit": 2, "offset": 1, "total": 3}));
    let page2 = client.get("/api/posts?page=2&per_page=2").await;
    assert_eq!(titles(&page2), ["First"]);
    assert_eq!(meta(&page2), json!({"limit": 2, "offset": 2, "total": 3}));
    let beyond = client.get("/api/posts?offset=10").await;
    assert_eq!(titles(&beyond), Vec::<String>::new());
    assert_eq!(
        meta(&beyond),
        json!({"limit": 20, "offset": 10, "total": 3})
    );
    let published = client.get("/api/posts?published=true").await;
    assert_eq!(titles(&published), ["Third", "First"]);
    assert_eq!(meta(&published)["total"], 2);
    let drafts = client.get("/api/posts?published=false&limit=5").await;
    assert_eq!(titles(&drafts), ["Second"]);
    assert_eq!(meta(&drafts), json!({"limit": 5, "offset": 0, "total": 1}));
    for query in [
        "published=maybe",
        "published=true&published=false",
        "limit=0",
        "limit=101",
        "offset=-1",
        "limit=2&page=1",
    ] {
        let response = client.get(&format!("/api/posts?{query}")).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "INVALID_QUERY");
    }

    // The pass-through routes answer with the same JSON as the model routes, byte for byte
    // once parsed: same keys, same values, same timestamps, same meta.
    for query in [
        "",
        "?limit=2&offset=1",
        "?page=2&per_page=2",
        "?published=true",
        "?published=false&limit=5",
        "?offset=10",
    ] {
        let model = client.get(&format!("/api/posts{query}")).await;
        let passthrough = client.get(&format!("/api/passthrough/posts{query}")).await;
        assert_eq!(passthrough.status, StatusCode::OK, "{}", passthrough.text());
        assert_eq!(passthrough.value(), model.value(), "query {query:?}");
    }
    for item in all.value()["data"].as_array().unwrap() {
        let id = item["id"].as_i64().unwrap();
        let model = client.get(&format!("/api/posts/{id}")).await;
        let passthrough = client.get(&format!("/api/passthrough/posts/{id}")).await;
        assert_eq!(passthrough.status, StatusCode::OK, "{}", passthrough.text());
        assert_eq!(passthrough.value(), model.value());
    }
    let response = client.get("/api/passthrough/posts?limit=0").await;
    assert_error(&response, StatusCode::BAD_REQUEST, "INVALID_QUERY");

    // Missing posts: 404 in the envelope, for every route with an id.
    let missing = 987_654_321_i64;
    let not_found = client.get(&format!("/api/posts/{missing}")).await;
    let body = assert_error(&not_found, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(
        body["error"]["message"],
        format!("post {missing} not found")
    );
    let not_found = client
        .get(&format!("/api/passthrough/posts/{missing}"))
        .await;
    let pt_body = assert_error(&not_found, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(pt_body["error"]["message"], body["error"]["message"]);
    for response in [
        client
            .put_json(
                &format!("/api/posts/{missing}"),
                &post("Ghost", "ghost", true),
            )
            .await,
        client.delete(&format!("/api/posts/{missing}")).await,
        client.get(&format!("/api/posts/{missing}/comments")).await,
        client
            .post_json(
                &format!("/api/posts/{missing}/comments"),
                &json!({"author": "Ada", "body": "Hello?"}),
            )
            .await,
    ] {
        assert_error(&response, StatusCode::NOT_FOUND, "NOT_FOUND");
    }

    // Ids that are not positive integers: 400 in the envelope, not axum's plain text.
    for id in ["abc", "0", "-1", "1.5", "99999999999999999999"] {
        let response = client.get(&format!("/api/posts/{id}")).await;
        let body = assert_error(&response, StatusCode::BAD_REQUEST, "BAD_REQUEST");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("id"),
            "{body}"
        );
    }
    assert_error(
        &client.delete("/api/posts/abc").await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    );
    assert_error(
        &client
            .put_json("/api/posts/abc", &post("X", "x", true))
            .await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    );
    assert_error(
        &client.get("/api/posts/abc/comments").await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    );

    // Full update.
    let updated = client
        .put_json(
            &format!("/api/posts/{second_id}"),
            &json!({"title": "Second, edited", "slug": "second-edited", "body": "New body", "published": true}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    let edited = updated.value()["data"].clone();
    let before = draft.value()["data"].clone();
    assert_eq!(edited["id"], second_id);
    assert_eq!(edited["title"], "Second, edited");
    assert_eq!(edited["slug"], "second-edited");
    assert_eq!(edited["body"], "New body");
    assert_eq!(edited["published"], true);
    assert_eq!(edited["createdAt"], before["createdAt"]);
    assert!(timestamp(&edited["updatedAt"]) >= timestamp(&before["updatedAt"]));
    assert_eq!(
        client.get(&format!("/api/posts/{second_id}")).await.value()["data"],
        edited
    );
    // The old slug is free again; the new one clashes.
    let clash = client
        .put_json(
            &format!("/api/posts/{third_id}"),
            &post("Third", "second-edited", true),
        )
        .await;
    assert_error(&clash, StatusCode::CONFLICT, "CONFLICT");
    let unchanged = client.get(&format!("/api/posts/{third_id}")).await;
    assert_eq!(unchanged.value()["data"], third.value()["data"]);
    let invalid_update = client
        .put_json(
            &format!("/api/posts/{third_id}"),
            &json!({"title": "", "slug": "third-3", "body": "x"}),
        )
        .await;
    assert_eq!(invalid_fields(&invalid_update), set(&["title"]));
    // Keeping its own slug is not a clash.
    let same_slug = client
        .put_json(
            &format!("/api/posts/{third_id}"),
            &post("Third, again", "third-3", false),
        )
        .await;
    assert_eq!(same_slug.status, StatusCode::OK, "{}", same_slug.text());
    assert_eq!(same_slug.value()["data"]["published"], false);

    // Comments.
    let comments_uri = format!("/api/posts/{first_id}/comments");
    let no_comments = client.get(&comments_uri).await;
    assert_eq!(no_comments.status, StatusCode::OK, "{}", no_comments.text());
    assert_eq!(
        no_comments.value(),
        json!({"success": true, "data": [], "meta": {"limit": 20, "offset": 0, "total": 0}})
    );
    let mut comment_ids = Vec::new();
    for (author, text) in [("Ada", "Nice post!"), ("Grace", "Agreed."), ("Linus", "+1")] {
        let created = client
            .post_json(&comments_uri, &json!({"author": author, "body": text}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let comment = created.value()["data"].clone();
        assert_eq!(comment["postId"], first_id);
        assert_eq!(comment["author"], author);
        assert_eq!(comment["body"], text);
        timestamp(&comment["createdAt"]);
        comment_ids.push(comment["id"].as_i64().unwrap());
    }
    let bad_comment = client
        .post_json(&comments_uri, &json!({"author": "", "body": ""}))
        .await;
    assert_eq!(invalid_fields(&bad_comment), set(&["author", "body"]));
    let long_comment = client
        .post_json(
            &comments_uri,
            &json!({"author": "a".repeat(101), "body": "b".repeat(10_001)}),
        )
        .await;
    assert_eq!(invalid_fields(&long_comment), set(&["author", "body"]));
    let listed = client.get(&comments_uri).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let ids: Vec<i64> = listed.value()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, comment_ids, "oldest first");
    assert_eq!(meta(&listed), json!({"limit": 20, "offset": 0, "total": 3}));
    let second_page = client
        .get(&format!("{comments_uri}?page=2&per_page=2"))
        .await;
    assert_eq!(second_page.status, StatusCode::OK, "{}", second_page.text());
    assert_eq!(second_page.value()["data"][0]["author"], "Linus");
    assert_eq!(second_page.value()["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        meta(&second_page),
        json!({"limit": 2, "offset": 2, "total": 3})
    );
    let other_post = client.get(&format!("/api/posts/{third_id}/comments")).await;
    assert_eq!(meta(&other_post)["total"], 0);

    // Delete: 204 with no body, then 404; the comments go with the post.
    let stored = comment::Entity::find()
        .filter(comment::Column::PostId.eq(first_id))
        .count(db.conn())
        .await
        .unwrap();
    assert_eq!(stored, 3);
    let deleted = client.delete(&format!("/api/posts/{first_id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    assert!(deleted.body.is_empty());
    assert_error(
        &client.get(&format!("/api/posts/{first_id}")).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_error(
        &client.get(&comments_uri).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_error(
        &client.delete(&format!("/api/posts/{first_id}")).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let orphans = comment::Entity::find()
        .filter(comment::Column::PostId.eq(first_id))
        .count(db.conn())
        .await
        .unwrap();
    assert_eq!(orphans, 0, "comments are deleted with their post");
    assert_eq!(total_posts(&client).await, 2);

    // Unknown routes and wrong methods under `/api` answer in the envelope too.
    assert_error(
        &client.get("/api/nope").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_error(
        &client
            .patch_json(&format!("/api/posts/{third_id}"), &json!({}))
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );

    check_ownership(&anonymous, &client, author_id, db).await;

    // Health: the database is registered in the readiness check.
    let ready = client.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert!(ready.text().contains("database"), "{}", ready.text());

    check_openapi(&client).await;
}

/// Writes need a token; only the author edits a post; the author or an admin deletes it.
async fn check_ownership(anonymous: &TestClient, author: &TestClient, author_id: i64, db: &Db) {
    let created = author
        .post_json("/api/posts", &post("Owned", "owned", true))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(created.value()["data"]["authorId"], json!(author_id));
    let path = format!("/api/posts/{}", created.value()["data"]["id"]);

    let unauthenticated = anonymous
        .post_json("/api/posts", &post("Nope", "nope", true))
        .await;
    assert_error(&unauthenticated, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(unauthenticated.header("www-authenticate"), Some("Bearer"));
    assert_error(
        &anonymous
            .put_json(&path, &post("Nope", "owned", true))
            .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    assert_error(
        &anonymous.delete(&path).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    assert_error(
        &anonymous
            .with_bearer("forged.token.here")
            .delete(&path)
            .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );

    let (stranger, _) = sign_up(anonymous, "stranger@example.com").await;
    assert_error(
        &stranger
            .put_json(&path, &post("Hijacked", "owned", true))
            .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    assert_error(
        &stranger.delete(&path).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    assert_eq!(anonymous.get(&path).await.value()["data"]["title"], "Owned");

    // An admin may delete any post, but not edit someone else's.
    let (_, admin_id) = sign_up(anonymous, "admin@example.com").await;
    AuthStore::new(db)
        .await
        .unwrap()
        .set_roles(admin_id, &[blog::ADMIN])
        .await
        .unwrap();
    let admin = log_in(anonymous, "admin@example.com").await;
    assert_error(
        &admin
            .put_json(&path, &post("Edited by admin", "owned", true))
            .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    let edited = author.put_json(&path, &post("Edited", "owned", true)).await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text());
    assert_eq!(admin.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert_error(
        &anonymous.get(&path).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    // The author may delete their own post.
    let created = author
        .post_json("/api/posts", &post("Mine", "mine", true))
        .await;
    let path = format!("/api/posts/{}", created.value()["data"]["id"]);
    assert_eq!(author.delete(&path).await.status, StatusCode::NO_CONTENT);
}

/// The spec lists every API route and every `$ref` in it resolves.
async fn check_openapi(client: &TestClient) {
    let response = client.get("/openapi.json").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let spec = response.value();
    assert_eq!(spec["info"]["title"], "Chopin blog");
    let paths = spec["paths"].as_object().expect("paths");
    let expected = [
        ("/api/posts", &["get", "post"][..]),
        ("/api/posts/stream", &["get"][..]),
        ("/api/posts/{id}", &["get", "put", "delete"][..]),
        ("/api/posts/{id}/comments", &["get", "post"][..]),
        ("/api/passthrough/posts", &["get"][..]),
        ("/api/passthrough/posts/{id}", &["get"][..]),
        ("/api/auth/signup", &["post"][..]),
        ("/api/auth/login", &["post"][..]),
        ("/api/auth/refresh", &["post"][..]),
        ("/api/auth/logout", &["post"][..]),
        ("/api/auth/me", &["get"][..]),
        ("/api/auth/verify-email", &["post"][..]),
        ("/api/auth/password-reset", &["post"][..]),
        ("/api/auth/password-reset/confirm", &["post"][..]),
    ];
    let api_paths: BTreeSet<&str> = paths
        .keys()
        .map(String::as_str)
        .filter(|p| p.starts_with("/api"))
        .collect();
    assert_eq!(
        api_paths,
        expected.iter().map(|(p, _)| *p).collect::<BTreeSet<_>>()
    );
    for (path, methods) in expected {
        for method in methods {
            let operation = &paths[path][*method];
            assert!(
                operation.is_object(),
                "{method} {path} missing from the spec"
            );
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
        }
    }
    // Operations that need a token say so, with the scheme `App::auth` declared.
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        json!("bearer")
    );
    assert_eq!(
        paths["/api/posts"]["post"]["security"],
        json!([{"bearer": []}])
    );
    assert_eq!(
        paths["/api/auth/me"]["get"]["security"],
        json!([{"bearer": []}])
    );
    let schemas = spec["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    for name in [
        "PostView",
        "CommentView",
        "NewPost",
        "NewComment",
        "ErrorEnvelope",
        "PageMeta",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    let responses = spec["components"]["responses"]
        .as_object()
        .expect("components.responses");
    let mut refs = Vec::new();
    collect_refs(&spec, &mut refs);
    assert!(refs.len() > 10, "suspiciously few $refs: {refs:?}");
    for reference in refs {
        let found = if let Some(name) = reference.strip_prefix("#/components/schemas/") {
            schemas.contains_key(name)
        } else if let Some(name) = reference.strip_prefix("#/components/responses/") {
            responses.contains_key(name)
        } else {
            panic!("unexpected $ref {reference}")
        };
        assert!(found, "dangling $ref {reference}");
    }

    // Operation ids are unique (clients name their methods after them).
    let mut ids = BTreeSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id),
                "operationId {id:?} of {method} {path} is used twice"
            );
        }
    }
    // Every operation lists the errors the framework can answer it with, from the shared
    // responses: 401 where a token is required, 413/415/422 where there is a body.
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let listed = operation["responses"].as_object().unwrap();
            let mut expected = vec!["429", "500", "503", "504"];
            if operation.get("security").is_some() {
                expected.push("401");
            }
            if operation.get("requestBody").is_some() {
                expected.extend(["400", "413", "415", "422"]);
            }
            if operation.get("parameters").is_some() {
                expected.push("400");
            }
            for status in expected {
                assert!(
                    listed.contains_key(status),
                    "{method} {path} does not list {status}"
                );
            }
        }
    }
    let unauthorized = &responses["Unauthorized"];
    assert!(unauthorized["headers"]["WWW-Authenticate"].is_object());
    // A handler's own 401 (the auth module's, with its own words) documents the header too.
    let own = &paths["/api/auth/me"]["get"]["responses"]["401"];
    assert_eq!(own["description"], "No valid access token.");
    assert!(own["headers"]["WWW-Authenticate"].is_object(), "{own}");
    assert_eq!(
        unauthorized["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorEnvelope"
    );
    // The optional logout body is optional in the spec too.
    assert_ne!(
        paths["/api/auth/logout"]["post"]["requestBody"]["required"],
        json!(true)
    );
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => collect_refs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}
