//! Keyset pagination of the blog's lists (`?cursor=`), on SQLite and PostgreSQL: walking every
//! page by cursor yields every row exactly once, in order, even with inserts in between; a
//! refused cursor answers 400 `INVALID_CURSOR`.

use axum::Router;
use axum::http::StatusCode;
use chopin_core::Config;
use chopin_core::testing::{TestClient, TestPostgres};
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
async fn cursor_paging_on_sqlite() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("blog.db").display());
    exercise(blog::build_app(config(&url)).await.unwrap()).await;
}

#[tokio::test]
async fn cursor_paging_on_postgres() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    exercise(blog::build_app(config(pg.url())).await.unwrap()).await;
}

/// A client signed up as a new author.
async fn author(router: Router) -> TestClient {
    let anonymous = TestClient::new(router);
    let r = anonymous
        .post_json(
            "/api/auth/signup",
            &json!({"email": "pager@example.com", "password": "a good password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    anonymous.with_bearer(r.value()["data"]["access_token"].as_str().unwrap())
}

async fn create_post(client: &TestClient, n: usize) -> i64 {
    let r = client
        .post_json(
            "/api/posts",
            &json!({"title": format!("Post {n}"), "slug": format!("post-{n}"), "body": "b", "published": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.value()["data"]["id"].as_i64().unwrap()
}

async fn create_comment(client: &TestClient, post: i64, n: usize) -> i64 {
    let r = client
        .post_json(
            &format!("/api/posts/{post}/comments"),
            &json!({"author": "Ada", "body": format!("Comment {n}")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.value()["data"]["id"].as_i64().unwrap()
}

fn ids(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

/// Walk `base` page by page: the first page by offset, every next one by `meta.next_cursor`.
/// `between` runs after the first page (inserts).
async fn walk(
    client: &TestClient,
    base: &str,
    limit: u64,
    mut between: impl AsyncFnMut(),
) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut uri = format!("{base}?limit={limit}");
    let mut pages = 0;
    loop {
        let r = client.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
        let page = r.value();
        let rows = ids(&page);
        assert!(rows.len() as u64 <= limit, "{page}");
        seen.extend(rows);
        pages += 1;
        if pages == 1 {
            between().await;
        } else {
            // Cursor pages carry neither offset nor total.
            assert!(page["meta"].get("offset").is_none(), "{page}");
            assert!(page["meta"].get("total").is_none(), "{page}");
        }
        match page["meta"].get("next_cursor").and_then(Value::as_str) {
            Some(next) => uri = format!("{base}?limit={limit}&cursor={next}"),
            None => break,
        }
        assert!(pages < 100, "no end");
    }
    seen
}

async fn exercise(router: Router) {
    let client = author(router).await;

    // 23 posts, listed newest first.
    let mut posts = Vec::new();
    for n in 0..23 {
        posts.push(create_post(&client, n).await);
    }
    let newest_first: Vec<i64> = posts.iter().rev().copied().collect();
    // Offset listing agrees, and offset pages carry the cursor of what follows them.
    let all = client.get("/api/posts?limit=100").await.value();
    assert_eq!(ids(&all), newest_first);
    assert!(all["meta"].get("next_cursor").is_none(), "{all}");

    for limit in [1, 5, 7, 23] {
        assert_eq!(
            walk(&client, "/api/posts", limit, async || {}).await,
            newest_first,
            "limit {limit}"
        );
    }

    // Posts written while a reader pages are newer: they never shift later pages, so nothing
    // is repeated or skipped.
    let mut added = 0;
    let seen = walk(&client, "/api/posts", 4, async || {
        for _ in 0..3 {
            create_post(&client, 100 + added).await;
            added += 1;
        }
    })
    .await;
    assert_eq!(seen, newest_first);

    // Comments, oldest first; one written mid-walk is the newest, so it comes last, once.
    let post = posts[0];
    let mut comments = Vec::new();
    for n in 0..11 {
        comments.push(create_comment(&client, post, n).await);
    }
    let base = format!("/api/posts/{post}/comments");
    assert_eq!(walk(&client, &base, 3, async || {}).await, comments);
    let mut late = None;
    let seen = walk(&client, &base, 3, async || {
        late = Some(create_comment(&client, post, 99).await);
    })
    .await;
    comments.push(late.unwrap());
    assert_eq!(seen, comments);

    // Refusals, in the error envelope.
    let first = client.get("/api/posts?limit=2").await.value();
    let next = first["meta"]["next_cursor"].as_str().unwrap().to_string();
    let mut bytes = next.clone().into_bytes();
    bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    for bad in [tampered.as_str(), "not-a-cursor", "e30.e30"] {
        for uri in [
            format!("/api/posts?cursor={bad}"),
            format!("{base}?cursor={bad}"),
        ] {
            let r = client.get(&uri).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text());
            let body = r.value();
            assert_eq!(body["success"], json!(false));
            assert_eq!(body["error"]["code"], json!("INVALID_CURSOR"), "{body}");
        }
    }
    let r = client
        .get(&format!("/api/posts?cursor={next}&offset=2"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.value()["error"]["code"], json!("INVALID_QUERY"));
}
