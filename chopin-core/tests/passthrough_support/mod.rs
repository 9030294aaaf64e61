//! Test bodies shared by `passthrough_sqlite.rs` and `passthrough_postgres.rs`. Each backend
//! file keeps its own test functions (same names), implements [`Backend`] and calls these
//! bodies; what only one backend does (json vs jsonb, cancellation) stays in its file.

use std::any::Any;
use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::get;
use chopin_core::db::Db;
use chopin_core::passthrough::Rewriter;
use chopin_core::passthrough::{JsonQuery, JsonRows, JsonStream, Param};
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestResponse};
use http::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::common::*;

/// What the shared bodies need from a backend's test file.
pub trait Backend: 'static {
    /// What keeps the database alive during the test (a temporary folder, a `TestPostgres`).
    type Guard;

    /// `post` rows as a list (`id`, `title`) in this backend's JSON function.
    const POSTS: &'static str;

    /// The rows `{"n":1}` to `{"n":100000}`, in order.
    const SERIES_100K: &'static str;

    /// The seeded database of the file, with the pool settings in `query`; `None` when the
    /// test is skipped (no server outside CI).
    fn seeded(query: &str) -> impl Future<Output = Option<(Self::Guard, Db)>>;

    /// The row `{"n": n}` as the backend's JSON function writes it.
    fn n_row(n: u64) -> String;

    /// Take a connection from the pool and keep it until the box is dropped.
    fn hold_connection(db: &Db) -> impl Future<Output = Box<dyn Any + Send>>;

    /// The `id` of the posts whose title is the one bound parameter, as JSON objects.
    const BY_TITLE: &'static str;

    /// How many posts the seeded table holds.
    const SEEDED_POSTS: i64;

    /// The row `{"id": id}` as the backend's JSON function writes it.
    fn id_row(id: u64) -> String;

    /// Insert a post: its `id` and `title` are the two bound parameters.
    const INSERT_POST: &'static str;

    /// Insert a row into the table of [`seed_strings`]: its `id` and `s`, bound parameters.
    const INSERT_STRING: &'static str;

    /// Streams of 100,000 rows that fail at row 5000.
    const MID_STREAM_FAILURES: &'static [MidStreamFailure];

    /// The queries of the `one` / `optional` / GraphQL tests and what they answer.
    const SHAPES: Shapes;

    /// A page of posts as JSON objects: `LIMIT` and `OFFSET` are the two bound parameters.
    const PAGE: &'static str;

    /// One JSON object of the 16 bound parameters of [`every_param_variant_binds`] (as
    /// `i32`, `i64`, `u32`, `true`, `false`, `f64`, `str`, `string`, `none`, `bytes` (hex),
    /// `i16`, `u16`, `f32`, `some`, `u64`, `null`), with the backend's type names.
    const PARAMS: &'static str;

    /// What [`Backend::PARAMS`] answers.
    fn params_expected() -> serde_json::Value;

    /// Queries of nested posts 1 and 2 in snake_case for the rewriter.
    const NESTED: &'static [Nested];
}

/// Nested posts 1 and 2 (`__typename` "Old", snake_case keys at every depth, a `secret_field`)
/// and how each looks after [`post_rewriter`].
pub struct Nested {
    /// The route of the list; `{uri}/one` and `{uri}/stream` answer `one` and `stream`.
    pub uri: &'static str,
    /// The query.
    pub sql: &'static str,
    /// A post after the rewriter: `(id, title, author)`.
    pub row: fn(u8, &str, &str) -> String,
}

/// The rewriter on real rows through `list`, `one` and `stream` (in small chunks): camelCase
/// at every depth (values untouched), `__typename` replaced at the top level only (the nested
/// one is data), projection exact (`secretField` dropped).
pub async fn rewriter_camel_case_typename_and_projection<B: Backend>() {
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let mut routes = Routes::new();
    for nested in B::NESTED {
        let sql = nested.sql;
        routes = routes
            .get(nested.uri, move |db| async move {
                JsonQuery::new(sql).rewrite(post_rewriter()).list(&db).await
            })
            .get(&format!("{}/one", nested.uri), move |db| async move {
                JsonQuery::new(sql).rewrite(post_rewriter()).one(&db).await
            })
            .get(&format!("{}/stream", nested.uri), move |db| async move {
                JsonQuery::new(sql)
                    .rewrite(post_rewriter())
                    .chunk_size(1024)
                    .stream(&db)
                    .await
            });
    }
    let c = routes.client(&db);
    for nested in B::NESTED {
        let uri = nested.uri;
        let first = (nested.row)(1, "First", "Ann");
        let both = envelope(&format!("[{first},{}]", (nested.row)(2, "Second", "Bob")));
        assert_eq!(ok_body(&c.get(uri).await), both, "{uri}");
        assert_eq!(
            ok_body(&c.get(&format!("{uri}/one")).await),
            envelope(&first),
            "{uri}/one"
        );
        assert_eq!(
            ok_body(&c.get(&format!("{uri}/stream")).await),
            both,
            "{uri}/stream"
        );
    }
}

/// A page of posts, its `meta` with the total.
pub async fn paged_posts<B: Backend>(
    State(db): State<Db>,
    page: Pagination,
) -> Result<JsonRows, ChopinError> {
    let total = count_posts(&db).await;
    let rows = JsonQuery::new(B::PAGE)
        .bind(page.limit as i64)
        .bind(page.offset as i64)
        .list(&db)
        .await?;
    Ok(rows.paginated(&page, Some(total as u64)))
}

/// Every [`Param`] variant (and the conversions into it) binds as its SQL type.
pub async fn every_param_variant_binds<B: Backend>() {
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let c = Routes::new()
        .get("/params", |db| async move {
            JsonQuery::new(B::PARAMS)
                .bind(-7i32)
                .bind(9_007_199_254_740_993i64)
                .bind(u32::MAX)
                .bind(true)
                .bind(false)
                .bind(1.5f64)
                .bind("a'b")
                .bind(String::from("c\"d"))
                .bind(None::<i64>)
                .bind(vec![0u8, 255, 127])
                .bind(-3i16)
                .bind(65_535u16)
                .bind(0.25f32)
                .bind(Some(5i32))
                .bind(Param::try_from(42u64)?)
                .bind(Param::Null)
                .one(&db)
                .await
        })
        .client(&db);
    let res = c.get("/params").await;
    ok_body(&res);
    assert_eq!(res.value()["data"], B::params_expected());
    // The conversions themselves.
    assert_eq!(Param::from(-7i32), Param::I32(-7));
    assert_eq!(Param::from(7u16), Param::I32(7));
    assert_eq!(Param::from(u32::MAX), Param::I64(4_294_967_295));
    assert_eq!(Param::from(0.5f32), Param::F64(0.5));
    assert_eq!(Param::from("x"), Param::Text("x".into()));
    assert_eq!(Param::from(None::<String>), Param::Null);
    assert_eq!(Param::from(Some(true)), Param::Bool(true));
    assert_eq!(Param::from(vec![1u8]), Param::Bytes(vec![1]));
    assert!(Param::try_from(u64::MAX).is_err());
}

/// The `#[tokio::test]` functions that call the shared bodies, under their names, for the
/// backend `$backend`.
macro_rules! shared_tests {
    ($backend:ty) => {
        #[tokio::test]
        async fn one_optional_null_and_not_found() {
            passthrough_support::one_optional_null_and_not_found::<$backend>().await;
        }

        #[tokio::test]
        async fn graphql_envelope() {
            passthrough_support::graphql_envelope::<$backend>().await;
        }

        #[tokio::test]
        async fn parameters_are_bound_never_interpolated() {
            passthrough_support::parameters_are_bound_never_interpolated::<$backend>().await;
        }

        #[tokio::test]
        async fn rewriter_camel_case_typename_and_projection() {
            passthrough_support::rewriter_camel_case_typename_and_projection::<$backend>().await;
        }

        #[tokio::test]
        async fn every_param_variant_binds() {
            passthrough_support::every_param_variant_binds::<$backend>().await;
        }

        #[tokio::test]
        async fn pool_exhaustion_is_503_with_retry_after() {
            passthrough_support::pool_exhaustion_is_503_with_retry_after::<$backend>().await;
        }

        #[tokio::test]
        async fn stream_100k_rows_in_bounded_chunks_in_process() {
            passthrough_support::stream_100k_rows_in_bounded_chunks_in_process::<$backend>().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn stream_100k_rows_over_tcp() {
            passthrough_support::stream_100k_rows_over_tcp::<$backend>().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn stream_failure_mid_stream_aborts_the_body() {
            passthrough_support::stream_failure_mid_stream_aborts_the_body::<$backend>().await;
        }
    };
}
pub(crate) use shared_tests;

/// The queries of [`one_optional_null_and_not_found`] and [`graphql_envelope`].
pub struct Shapes {
    /// A post (`id`, `title`) by its bound `id`.
    pub show_post: &'static str,
    /// A JSON column of the post with the bound `id` (no `not_found` message).
    pub value: &'static str,
    /// A JSON column of the post with the bound `id`, answered with `optional`.
    pub maybe: &'static str,
    /// The bodies of `GET /posts/{id}`, `/first` (`one` of [`Backend::POSTS`]),
    /// `/value/{id}` and `/maybe/{id}` for ids that have a row, or none for `/maybe`.
    pub one_cases: &'static [(&'static str, &'static [u8])],
    /// Some posts as objects, in order.
    pub graphql: &'static str,
    /// The GraphQL envelope of [`Shapes::graphql`] named `posts`.
    pub graphql_body: &'static [u8],
    /// The object `{"id": 1}` alone.
    pub id_1: &'static str,
    /// No rows at all.
    pub no_ids: &'static str,
}

/// A stream that fails at row 5000, after rows have been sent.
pub struct MidStreamFailure {
    /// The route that answers it.
    pub uri: &'static str,
    /// The query.
    pub sql: &'static str,
    /// How the body starts (the envelope and the first row).
    pub starts: &'static [u8],
    /// What begins every row, to count the rows before the failure.
    pub key: &'static [u8],
}

/// Run `sql` with the bound `values`.
pub async fn execute(db: &Db, sql: &str, values: Vec<sea_orm::Value>) {
    let statement = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    db.execute_raw(statement).await.expect(sql);
}

/// How many posts the table holds now.
pub async fn count_posts(db: &Db) -> i64 {
    let statement =
        Statement::from_string(db.get_database_backend(), "SELECT count(*) AS n FROM post");
    let row = db.query_one_raw(statement).await.unwrap().expect("a count");
    row.try_get("", "n").unwrap()
}

/// Strings that JSON must escape, or must not escape twice.
pub const TRICKY: &[&str] = &[
    "plain",
    "double \" quote",
    "single ' quote",
    "back\\slash",
    "line\nbreak",
    "tab\there",
    "cr\r and ff\u{c} and bs\u{8}",
    "ctrl \u{1} \u{1f} del \u{7f}",
    "unicode é ß 中文",
    "emoji 😀🎉 and 𝄞",
    "looks escaped: \\u00e9 \\n \\\"",
    "</script><!--",
    "separators \u{2028}\u{2029}",
    "",
];

/// A table `s (id, s)` holding [`TRICKY`], the row `id` being the index.
pub async fn seed_strings<B: Backend>(db: &Db) {
    db.execute_unprepared("CREATE TABLE s (id int PRIMARY KEY, s text NOT NULL)")
        .await
        .unwrap();
    for (i, s) in TRICKY.iter().enumerate() {
        execute(db, B::INSERT_STRING, vec![(i as i32).into(), (*s).into()]).await;
    }
}

/// `res` is the list of `{"id": i, "s": TRICKY[i]}`, each string escaped exactly once.
pub fn assert_tricky_rows(res: &TestResponse, uri: &str) {
    let body = ok_body(res).to_vec();
    let value = res.value();
    let rows = value["data"].as_array().unwrap();
    assert_eq!(rows.len(), TRICKY.len(), "{uri}");
    for (i, s) in TRICKY.iter().enumerate() {
        assert_eq!(
            rows[i],
            json!({"id": i, "s": s}),
            "{uri}: string {i}: {s:?}"
        );
    }
    // Escaped once: `\n` in the body, not `\\n` and not a raw newline.
    assert_eq!(
        count(&body, br#""line\nbreak""#),
        1,
        "{uri}: {}",
        res.text()
    );
    assert_eq!(count(&body, br#"line\\nbreak"#), 0, "{uri}");
    assert_eq!(count(&body, br#""tab\there""#), 1, "{uri}");
    assert!(
        !body.contains(&b'\n') && !body.contains(&b'\t') && !body.contains(&1),
        "{uri}"
    );
}

/// camelCase, `__typename` "Post" and the four projected fields.
pub fn post_rewriter() -> Rewriter {
    Rewriter::new().camel_case(true).typename("Post").project([
        "postId",
        "postTitle",
        "authorInfo",
        "tagList",
    ])
}

/// A nested post row of the rewriter tests after [`post_rewriter`], in the SQL's key order.
pub fn rewritten_post(id: u8, title: &str, author: &str) -> String {
    format!(
        r#"{{"__typename":"Post","postId":{id},"postTitle":"{title}","authorInfo":{{"userId":7,"displayName":"{author}","__typename":"Author","homeAddress":{{"zipCode":"75001"}}}},"tagList":[{{"tagId":1,"tagName":"snake_value"}}]}}"#
    )
}

/// `trust_text()` copies text unchecked and unchanged: `GET broken.0` is exactly the broken
/// document `broken.1`, and `GET valid.0` keeps the exact spelling `valid.1`.
pub async fn assert_trusted_text(c: &TestClient, broken: (&str, &[u8]), valid: (&str, &[u8])) {
    let res = c.get(broken.0).await;
    assert_eq!(ok_body(&res), broken.1);
    assert!(serde_json::from_slice::<serde_json::Value>(&res.body).is_err());
    assert_eq!(ok_body(&c.get(valid.0).await), valid.1);
}

/// `res` is the list envelope of `len` objects whose `n` counts from 1; returns them.
pub fn assert_n_rows(res: &TestResponse, len: usize) -> Vec<serde_json::Value> {
    ok_body(res);
    let value = res.value();
    assert_eq!(value["success"], true);
    let rows = value["data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), len);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["n"], i + 1);
    }
    rows
}

/// Routes answered by one pass-through query each.
pub trait QueryRoutes {
    /// `GET uri` answers `sql` with `list`.
    fn get_list(self, uri: &str, sql: &'static str) -> Self;
    /// `GET uri` answers `sql` with `one`.
    fn get_one(self, uri: &str, sql: &'static str) -> Self;
    /// `GET uri` answers `sql` with `stream`.
    fn get_stream(self, uri: &str, sql: &'static str) -> Self;
    /// `GET uri` answers `sql` with `trust_text().one`.
    fn get_trusted_one(self, uri: &str, sql: &'static str) -> Self;
}

impl QueryRoutes for Routes {
    fn get_list(self, uri: &str, sql: &'static str) -> Self {
        self.get(
            uri,
            move |db| async move { JsonQuery::new(sql).list(&db).await },
        )
    }

    fn get_one(self, uri: &str, sql: &'static str) -> Self {
        self.get(
            uri,
            move |db| async move { JsonQuery::new(sql).one(&db).await },
        )
    }

    fn get_trusted_one(self, uri: &str, sql: &'static str) -> Self {
        self.get(uri, move |db| async move {
            JsonQuery::new(sql).trust_text().one(&db).await
        })
    }

    fn get_stream(self, uri: &str, sql: &'static str) -> Self {
        self.get(uri, move |db| async move {
            JsonQuery::new(sql).stream(&db).await
        })
    }
}

/// The streaming and pooled connections all went back to the pool.
pub async fn assert_pool_idle(db: &Db) {
    let back = wait_until(Duration::from_secs(3), || async {
        db.get_pool_status().active == 0
    })
    .await;
    assert!(back.is_some(), "{:?}", db.get_pool_status());
}

/// `GET uri` in development is a 500 whose `detail` contains `needle`.
pub async fn assert_development_detail(routes: Routes, db: &Db, uri: &str, needle: &str) {
    let res = routes
        .client_in(db, Environment::Development)
        .get(uri)
        .await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    let detail = res.value()["error"]["detail"].as_str().unwrap().to_string();
    assert!(detail.contains(needle), "{detail}");
}

/// `GET uri` in process is a complete, empty list.
pub async fn assert_empty_stream(router: axum::Router, uri: &str) {
    let frames = frames_in_process(router, uri).await;
    assert_eq!(frames.status, StatusCode::OK);
    assert!(frames.error.is_none(), "{:?}", frames.error);
    assert_eq!(frames.body(), br#"{"success":true,"data":[]}"#);
}

/// `GET /list` of [`Backend::POSTS`] answers 200: the pool still serves.
pub async fn assert_pool_serves<B: Backend>(db: &Db) {
    let res = Routes::new()
        .get("/list", |db| async move {
            JsonQuery::new(B::POSTS).list(&db).await
        })
        .client(db)
        .get("/list")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

async fn show_post<B: Backend>(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<JsonRows, ChopinError> {
    JsonQuery::new(B::SHAPES.show_post)
        .bind(id)
        .not_found(format!("post {id} not found"))
        .one(&db)
        .await
}

async fn post_value<B: Backend>(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<JsonRows, ChopinError> {
    JsonQuery::new(B::SHAPES.value).bind(id).one(&db).await
}

async fn maybe_post<B: Backend>(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<JsonRows, ChopinError> {
    JsonQuery::new(B::SHAPES.maybe).bind(id).optional(&db).await
}

/// `one` answers the first row or a 404 (with the query's message or the default one), a SQL
/// NULL value is `"data":null`, and `optional` answers null when there is no row.
pub async fn one_optional_null_and_not_found<B: Backend>() {
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let c = Routes::new()
        .route("/posts/{id}", get(show_post::<B>))
        .route("/value/{id}", get(post_value::<B>))
        .route("/maybe/{id}", get(maybe_post::<B>))
        .get("/first", |db| async move {
            // Several rows: `one` answers the first.
            JsonQuery::new(B::POSTS).one(&db).await
        })
        .client(&db);
    for &(uri, body) in B::SHAPES.one_cases {
        let res = c.get(uri).await;
        assert_eq!(ok_body(&res), body, "{uri}: {}", res.text());
    }
    // No row: 404 with the query's message …
    assert_error(
        &c.get("/posts/99").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "post 99 not found",
    );
    // … or the default one.
    assert_error(
        &c.get("/value/99").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "resource not found",
    );
    // `optional`: null when there is no row.
    assert_eq!(
        ok_body(&c.get("/maybe/99").await),
        br#"{"success":true,"data":null}"#
    );
}

/// The GraphQL envelope: the rows under the field name, that name escaped once, and an empty
/// list when there are no rows.
pub async fn graphql_envelope<B: Backend>() {
    const ODD: &str = "we\"ird\\field\nname\t é";
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let c = Routes::new()
        .get("/graphql", |db| async move {
            JsonQuery::new(B::SHAPES.graphql)
                .graphql(&db, "posts")
                .await
        })
        .get("/graphql/odd", |db| async move {
            JsonQuery::new(B::SHAPES.id_1).graphql(&db, ODD).await
        })
        .get("/graphql/none", |db| async move {
            JsonQuery::new(B::SHAPES.no_ids).graphql(&db, "posts").await
        })
        .client(&db);
    assert_eq!(ok_body(&c.get("/graphql").await), B::SHAPES.graphql_body);
    // A field name that needs escaping is escaped (once) and parses back to itself.
    let res = c.get("/graphql/odd").await;
    let body = ok_body(&res);
    assert!(
        !body.contains(&b'\n') && !body.contains(&b'\t'),
        "raw control character in {}",
        res.text()
    );
    assert_eq!(res.value(), json!({"data": {ODD: [{"id": 1}]}}));
    assert_eq!(
        ok_body(&c.get("/graphql/none").await),
        br#"{"data":{"posts":[]}}"#
    );
}

/// A bound text is compared as a value, never spliced into the SQL.
pub async fn parameters_are_bound_never_interpolated<B: Backend>() {
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let attack = "x' OR '1'='1";
    let c = Routes::new()
        .get("/attack", move |db| async move {
            JsonQuery::new(B::BY_TITLE)
                .bind(Param::Text(attack.to_string()))
                .list(&db)
                .await
        })
        .get("/first", |db| async move {
            JsonQuery::new(B::BY_TITLE).bind("First").list(&db).await
        })
        .get("/drop", |db| async move {
            JsonQuery::new(B::BY_TITLE)
                .bind("'; DROP TABLE post; --")
                .list(&db)
                .await
        })
        .client(&db);
    // Interpolated, the condition would be true for every row.
    assert_eq!(
        ok_body(&c.get("/attack").await),
        br#"{"success":true,"data":[]}"#
    );
    assert_eq!(
        ok_body(&c.get("/drop").await),
        br#"{"success":true,"data":[]}"#
    );
    assert_eq!(
        ok_body(&c.get("/first").await),
        envelope(&format!("[{}]", B::id_row(1)))
    );
    // It is compared as a value: a post with exactly that title matches, alone.
    execute(&db, B::INSERT_POST, vec![7i64.into(), attack.into()]).await;
    assert_eq!(
        ok_body(&c.get("/attack").await),
        envelope(&format!("[{}]", B::id_row(7)))
    );
    assert_eq!(
        count_posts(&db).await,
        B::SEEDED_POSTS + 1,
        "nothing else was touched"
    );
}

/// Streams that fail at row 5000 abort the body (over TCP, in process and on the wire) after
/// the rows before; a stream that succeeds ends properly, and the pool serves afterwards.
pub async fn stream_failure_mid_stream_aborts_the_body<B: Backend>() {
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let routes = || {
        let mut routes = Routes::new().get("/complete", stream_100k::<B>);
        for failure in B::MID_STREAM_FAILURES {
            let sql = failure.sql;
            routes = routes.get(failure.uri, move |db| async move {
                JsonQuery::new(sql).chunk_size(4096).stream(&db).await
            });
        }
        routes
    };
    let server = routes().serve(&db).await;
    for &MidStreamFailure {
        uri, starts, key, ..
    } in B::MID_STREAM_FAILURES
    {
        // reqwest over TCP: a read error, a body that is not JSON.
        let frames = frames_over_tcp(&server.url(uri)).await;
        let body = assert_aborted(&frames);
        // The response had started with the rows before the failing one (how many reach the
        // client depends on what the server had flushed when it aborted the connection).
        assert!(body.starts_with(starts), "{uri}: {}", preview(&body));
        let rows = assert_prefix_before(&body, key, 5000);
        eprintln!(
            "{uri}: {rows} rows before the abort, in {} chunks",
            frames.chunks.len()
        );

        // In process nothing is lost in transit: every chunk sent before the failure arrives,
        // so nearly all rows before the failing one are there (only the unfinished last chunk
        // is dropped).
        let frames = frames_in_process(routes().router(&db), uri).await;
        let body = assert_aborted(&frames);
        let rows = assert_prefix_before(&body, key, 5000);
        assert!(rows >= 4000, "{uri}: only {rows} rows before the abort");

        // On the wire: a chunked body without its terminating zero-length chunk.
        let raw = raw_http_get(server.addr, uri, Duration::from_secs(30)).await;
        assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", preview(&raw));
        assert!(!raw.ends_with(b"\r\n0\r\n\r\n"), "{uri}: {}", preview(&raw));
    }
    // The same request to a query that succeeds ends properly (so the check above can fail).
    let raw = raw_http_get(server.addr, "/complete", Duration::from_secs(30)).await;
    assert!(raw.ends_with(b"]}\r\n0\r\n\r\n"), "{}", preview(&raw));

    // The failed streams' connections were closed, not handed back broken: the pool serves
    // the next requests normally.
    assert_pool_serves::<B>(&db).await;
    let frames = frames_in_process(routes().router(&db), "/complete").await;
    assert_series(&frames.body(), 100_000);
    assert_pool_idle(&db).await;
}

/// The 100,000-row stream, in chunks of 4 KiB.
pub async fn stream_100k<B: Backend>(db: Db) -> Result<JsonStream, ChopinError> {
    JsonQuery::new(B::SERIES_100K)
        .chunk_size(4096)
        .stream(&db)
        .await
}

#[derive(serde::Deserialize)]
struct NRows {
    success: bool,
    data: Vec<NRow>,
}

#[derive(serde::Deserialize)]
struct NRow {
    n: u64,
}

/// `body` is the list envelope of the rows `{"n":1}` to `{"n":len}`.
pub fn assert_series(body: &[u8], len: u64) {
    let parsed: NRows = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("streamed body is not the document ({e}): {}", preview(body)));
    assert!(parsed.success);
    assert_eq!(parsed.data.len() as u64, len);
    for (i, row) in parsed.data.iter().enumerate() {
        assert_eq!(row.n, i as u64 + 1);
    }
}

/// With the pool's only connection held, every way of answering (`list`, `one`, `stream`)
/// waits the acquire timeout and answers 503 with `Retry-After`; the pool recovers after.
pub async fn pool_exhaustion_is_503_with_retry_after<B: Backend>() {
    let Some((_guard, db)) = B::seeded("max_connections=1&acquire_timeout=300ms").await else {
        return;
    };
    let c = Routes::new()
        .get("/list", |db| async move {
            JsonQuery::new(B::POSTS).list(&db).await
        })
        .get("/one", |db| async move {
            JsonQuery::new(B::POSTS).one(&db).await
        })
        .get("/stream", |db| async move {
            JsonQuery::new(B::POSTS).stream(&db).await
        })
        .client(&db);
    assert_eq!(c.get("/list").await.status, StatusCode::OK);
    assert_eq!(c.get("/stream").await.status, StatusCode::OK);
    let held = B::hold_connection(&db).await;
    for uri in ["/list", "/one", "/stream"] {
        let started = Instant::now();
        let res = c.get(uri).await;
        assert_error(
            &res,
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the database is busy; retry shortly",
        );
        assert_eq!(res.header("retry-after"), Some("1"), "{uri}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{uri}: {waited:?}");
        assert!(waited < Duration::from_secs(3), "{uri}: {waited:?}");
    }
    drop(held);
    let ok = wait_until(Duration::from_secs(3), || async {
        c.get("/list").await.status == StatusCode::OK
    })
    .await;
    assert!(ok.is_some(), "the pool recovers");
    db.close().await;
}

/// 100,000 rows in process: chunks of about 4 KiB, the first sent with the first row, the
/// whole document intact, and the connection back in the pool afterwards.
pub async fn stream_100k_rows_in_bounded_chunks_in_process<B: Backend>() {
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let router = Routes::new().get("/stream", stream_100k::<B>).router(&db);
    let frames = frames_in_process(router, "/stream").await;
    assert_eq!(frames.status, StatusCode::OK);
    assert_eq!(
        frames.headers.get("content-type").unwrap(),
        "application/json"
    );
    assert!(frames.error.is_none(), "{:?}", frames.error);
    // ~1 MB in chunks of about 4 KiB: the first chunk goes out with the first row.
    let first = format!(r#"{{"success":true,"data":[{}"#, B::n_row(1));
    assert_eq!(&frames.chunks[0][..], first.as_bytes());
    assert!(frames.chunks.len() > 100, "{} chunks", frames.chunks.len());
    assert!(
        frames.largest_chunk() <= 4096 + 32,
        "largest chunk {} bytes",
        frames.largest_chunk()
    );
    let last = format!("{}]}}", B::n_row(100_000));
    assert!(frames.chunks.last().unwrap().ends_with(last.as_bytes()));
    assert_series(&frames.body(), 100_000);
    // The streaming connection went back to the pool.
    assert_pool_idle(&db).await;
}

/// 100,000 rows over real TCP: a chunked transfer of the whole document.
pub async fn stream_100k_rows_over_tcp<B: Backend>() {
    let Some((_guard, db)) = B::seeded("").await else {
        return;
    };
    let server = Routes::new()
        .get("/stream", stream_100k::<B>)
        .serve(&db)
        .await;
    let frames = frames_over_tcp(&server.url("/stream")).await;
    assert_eq!(frames.status, StatusCode::OK);
    assert!(frames.error.is_none(), "{:?}", frames.error);
    assert_eq!(
        frames
            .headers
            .get("transfer-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"chunked"[..])
    );
    assert!(frames.chunks.len() > 1, "{} chunks", frames.chunks.len());
    assert_series(&frames.body(), 100_000);
}
