//! Drafts (`published = false`) are visible to their author and to admins only, on every read
//! route, model and pass-through alike: anonymous readers and other accounts never see one —
//! not in the list, not with `?published=false`, not by id (404, as for a missing post), not
//! through its comments, and not by way of a view the author's read put in the cache. On a
//! SQLite file and on a real PostgreSQL database.

use axum::Router;
use axum::http::StatusCode;
use chopin_core::Config;
use chopin_core::auth::AuthStore;
use chopin_core::db::Db;
use chopin_core::testing::{TestClient, TestPostgres, TestResponse};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

fn config(database_url: &str) -> Config {
    Config::from_lookup(|name| match name {
        "CHOPIN_ENV" => Some("test".into()),
        "DATABASE_URL" => Some(database_url.to_string()),
        _ => None,
    })
    .expect("test configuration is valid")
}

#[tokio::test]
async fn drafts_on_sqlite() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("blog.db").display());
    let config = config(&url);
    let router = blog::build_app(config.clone()).await.unwrap();
    let db = Db::connect(&config.database).await.unwrap();
    exercise(router, &db).await;
    db.close().await;
}

#[tokio::test]
async fn drafts_on_postgres() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let config = config(pg.url());
    let router = blog::build_app(config.clone()).await.unwrap();
    let db = Db::connect(&config.database).await.unwrap();
    exercise(router, &db).await;
    db.close().await;
}

const PASSWORD: &str = "a good password";

/// Sign up `email`; a client sending its token, and the account id.
async fn sign_up(client: &TestClient, email: &str) -> (TestClient, i64) {
    let r = client
        .post_json(
            "/api/auth/signup",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let authed = client.with_bearer(r.value()["data"]["access_token"].as_str().unwrap());
    let me = authed.get("/api/auth/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    (authed, me.value()["data"]["id"].as_i64().unwrap())
}

/// Sign up `email`, grant it the admin role, and log in again for a token carrying it.
async fn sign_up_admin(client: &TestClient, db: &Db, email: &str) -> TestClient {
    let (_, id) = sign_up(client, email).await;
    AuthStore::new(db)
        .await
        .unwrap()
        .set_roles(id, &[blog::ADMIN])
        .await
        .unwrap();
    let r = client
        .post_json(
            "/api/auth/login",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    client.with_bearer(r.value()["data"]["access_token"].as_str().unwrap())
}

/// Create a post as `client`; its id.
async fn create(client: &TestClient, title: &str, slug: &str, published: bool) -> i64 {
    let body = json!({"title": title, "slug": slug, "body": "Text.", "published": published});
    let r = client.post_json("/api/posts", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.value()["data"]["id"].as_i64().unwrap()
}

/// The titles of a list response and its `meta.total`.
#[track_caller]
fn listed(response: &TestResponse) -> (Vec<String>, u64) {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.value();
    let titles = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_string())
        .collect();
    (titles, body["meta"]["total"].as_u64().unwrap())
}

#[track_caller]
fn assert_not_found(response: &TestResponse, id: i64) {
    assert_eq!(
        response.status,
        StatusCode::NOT_FOUND,
        "{}",
        response.text()
    );
    let body = response.value();
    assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    // The same message as for a post that does not exist: nothing tells a draft apart.
    assert_eq!(body["error"]["message"], format!("post {id} not found"));
}

/// What `reader` sees on the list routes, model and pass-through (which must agree): the
/// titles of the plain list, of `?published=false` and of `?published=true`, with totals.
async fn lists(reader: &TestClient) -> [(Vec<String>, u64); 3] {
    let mut out: Vec<(Vec<String>, u64)> = Vec::new();
    for query in ["", "?published=false", "?published=true"] {
        let model = reader.get(&format!("/api/posts{query}")).await;
        let passthrough = reader.get(&format!("/api/passthrough/posts{query}")).await;
        assert_eq!(passthrough.status, StatusCode::OK, "{}", passthrough.text());
        assert_eq!(passthrough.value(), model.value(), "query {query:?}");
        out.push(listed(&model));
    }
    [out[0].clone(), out[1].clone(), out[2].clone()]
}

/// `GET` post `id` on both read paths: the status, and the data when 200 (identical on both).
async fn show(reader: &TestClient, id: i64) -> (StatusCode, Value) {
    let model = reader.get(&format!("/api/posts/{id}")).await;
    let passthrough = reader.get(&format!("/api/passthrough/posts/{id}")).await;
    assert_eq!(model.status, passthrough.status, "{}", passthrough.text());
    if model.status == StatusCode::NOT_FOUND {
        assert_not_found(&model, id);
        assert_not_found(&passthrough, id);
    } else {
        assert_eq!(model.value(), passthrough.value());
    }
    (model.status, model.value()["data"].clone())
}

fn titles(names: &[&str], total: u64) -> (Vec<String>, u64) {
    (names.iter().map(|n| n.to_string()).collect(), total)
}

async fn exercise(router: Router, db: &Db) {
    let anonymous = TestClient::new(router);
    let (author, _) = sign_up(&anonymous, "author@example.com").await;
    let (other, _) = sign_up(&anonymous, "other@example.com").await;
    let admin = sign_up_admin(&anonymous, db, "admin@example.com").await;

    let public = create(&author, "Public", "public", true).await;
    let draft = create(&author, "Draft", "draft", false).await;
    let others_draft = create(&other, "Other's draft", "others-draft", false).await;

    // The author reads the draft first: its view is now cached, and must not leak from there.
    assert_eq!(show(&author, draft).await.0, StatusCode::OK);

    // Anonymous readers: published posts only, everywhere.
    assert_eq!(
        lists(&anonymous).await,
        [
            titles(&["Public"], 1),
            titles(&[], 0),
            titles(&["Public"], 1)
        ]
    );
    assert_eq!(show(&anonymous, public).await.0, StatusCode::OK);
    assert_eq!(show(&anonymous, draft).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        show(&anonymous, others_draft).await.0,
        StatusCode::NOT_FOUND
    );

    // Another account: published posts and its own draft, never the author's.
    assert_eq!(
        lists(&other).await,
        [
            titles(&["Other's draft", "Public"], 2),
            titles(&["Other's draft"], 1),
            titles(&["Public"], 1)
        ]
    );
    assert_eq!(show(&other, draft).await.0, StatusCode::NOT_FOUND);
    assert_eq!(show(&other, others_draft).await.0, StatusCode::OK);

    // The author: published posts and their own draft.
    assert_eq!(
        lists(&author).await,
        [
            titles(&["Draft", "Public"], 2),
            titles(&["Draft"], 1),
            titles(&["Public"], 1)
        ]
    );
    let (status, data) = show(&author, draft).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(data["published"], false);
    assert_eq!(show(&author, others_draft).await.0, StatusCode::NOT_FOUND);

    // An admin: every post.
    assert_eq!(
        lists(&admin).await,
        [
            titles(&["Other's draft", "Draft", "Public"], 3),
            titles(&["Other's draft", "Draft"], 2),
            titles(&["Public"], 1)
        ]
    );
    assert_eq!(show(&admin, draft).await.0, StatusCode::OK);
    assert_eq!(show(&admin, others_draft).await.0, StatusCode::OK);

    // A draft's comments are hidden with it; writing one is refused the same way.
    let comments = format!("/api/posts/{draft}/comments");
    let comment = json!({"author": "Eve", "body": "Found it."});
    for reader in [&anonymous, &other] {
        assert_not_found(&reader.get(&comments).await, draft);
        assert_not_found(&reader.post_json(&comments, &comment).await, draft);
    }
    let written = author.post_json(&comments, &comment).await;
    assert_eq!(written.status, StatusCode::CREATED, "{}", written.text());
    let shown = admin.get(&comments).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
    assert_eq!(shown.value()["meta"]["total"], 1);

    // Writes do not disclose a draft either: 404 for another account (403 is for posts it
    // can see but may not change).
    let edit = json!({"title": "Hijacked", "slug": "draft", "body": "", "published": true});
    assert_not_found(
        &other.put_json(&format!("/api/posts/{draft}"), &edit).await,
        draft,
    );
    assert_not_found(&other.delete(&format!("/api/posts/{draft}")).await, draft);
    let refused = other.delete(&format!("/api/posts/{public}")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert_eq!(show(&author, draft).await.1["title"], "Draft");

    // An invalid token on a read is refused, not treated as anonymous.
    let forged = anonymous.with_bearer("forged.token.here");
    let refused = forged.get("/api/posts").await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
    let refused = forged
        .get(&format!("/api/passthrough/posts/{public}"))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );

    // Once published, the post is everyone's.
    let publish = json!({"title": "Draft", "slug": "draft", "body": "Text.", "published": true});
    let published = author
        .put_json(&format!("/api/posts/{draft}"), &publish)
        .await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.text());
    assert_eq!(show(&anonymous, draft).await.0, StatusCode::OK);
    assert_eq!(lists(&anonymous).await[0], titles(&["Draft", "Public"], 2));

    // An anonymous reader is no account, not even 0: a draft whose author id is 0 (nothing in
    // the schema forbids one) stays hidden from it on both paths.
    let orphan = create(&other, "Orphan draft", "orphan-draft", false).await;
    db.execute_unprepared(&format!(
        "UPDATE posts SET author_id = 0 WHERE id = {orphan}"
    ))
    .await
    .unwrap();
    assert_eq!(show(&anonymous, orphan).await.0, StatusCode::NOT_FOUND);
    assert_eq!(lists(&anonymous).await[1], titles(&[], 0));
}
