//! `GET /api/posts/stream` over a real socket, through the whole layer stack: a client that
//! holds the stream open receives each post created afterwards as an event whose data is the
//! post's JSON, exactly as `POST /api/posts` answered it. Drafts reach their author's
//! streams only.

use std::time::Duration;

use chopin_core::Config;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn config(database_url: &str) -> Config {
    Config::from_lookup(|name| match name {
        "CHOPIN_ENV" => Some("test".into()),
        "DATABASE_URL" => Some(database_url.to_string()),
        // Short, so the test shows that a stream outlives the request timeout.
        "CHOPIN_REQUEST_TIMEOUT" => Some("500ms".into()),
        "CHOPIN_SHUTDOWN_TIMEOUT" => Some("1s".into()),
        _ => None,
    })
    .expect("test configuration is valid")
}

/// An open event stream and what has been read from it so far.
struct Events {
    response: reqwest::Response,
    seen: String,
}

impl Events {
    /// Open the stream, anonymously or with an access token.
    async fn open(base: &str, query: &str, token: Option<&str>) -> Events {
        let mut request = reqwest::Client::new()
            .get(format!("{base}/api/posts/stream{query}"))
            .header("accept", "text/event-stream")
            .header("accept-encoding", "gzip, br");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert!(headers.get("content-encoding").is_none(), "{headers:?}");
        Events {
            response,
            seen: String::new(),
        }
    }

    /// The data of the next event (keep-alive comments skipped); fails after five seconds.
    async fn next_data(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            while let Some(end) = self.seen.find("\n\n") {
                let event: String = self.seen.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).expect("event data is JSON");
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event arrived; buffered {:?}", self.seen))
                .unwrap()
                .expect("the stream stays open");
            self.seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn created_posts_arrive_on_open_streams() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("blog.db").display());
    let app = blog::app(config(&url)).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_with(listener, async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let signup: Value = http
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({"email": "live@example.com", "password": "a good password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signup["data"]["access_token"].as_str().expect("a token");

    let mut authors = Events::open(&base, "", Some(token)).await;
    let mut anonymous = Events::open(&base, "", None).await;
    let mut published = Events::open(&base, "?published=true", None).await;

    // Longer than the request timeout: the streams are still there.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut created = Vec::new();
    for (title, slug, is_published) in [("A draft", "a-draft", false), ("Live", "live", true)] {
        let response = http
            .post(format!("{base}/api/posts"))
            .bearer_auth(token)
            .json(
                &json!({"title": title, "slug": slug, "body": "Hello.", "published": is_published}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        created.push(body["data"].clone());
    }

    // The author's stream: every post, in order, exactly as the API answered it.
    assert_eq!(authors.next_data().await, created[0]);
    assert_eq!(authors.next_data().await, created[1]);
    // An anonymous reader never sees the draft.
    assert_eq!(anonymous.next_data().await, created[1]);
    // `?published=true` skips the draft.
    assert_eq!(published.next_data().await, created[1]);

    // An invalid filter is refused before any stream starts.
    let bad = http
        .get(format!("{base}/api/posts/stream?published=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["code"], "INVALID_QUERY");

    drop((authors, anonymous, published));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
