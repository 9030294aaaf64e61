//! The pass-through responder against real SQLite files: envelope shapes, validation of text
//! rows, string escaping, the rewriter, bound parameters, pool exhaustion and streaming
//! (chunking, empty results, errors before and after the first row), through `App` in process
//! and over real TCP.

mod common;
mod passthrough_support;

use axum::routing::get;
use chopin_core::db::Db;
use chopin_core::passthrough::JsonQuery;
use common::*;
use passthrough_support::*;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

/// A SQLite database with a small `post` table:
///
/// | id | title  | author_name | data                |
/// |----|--------|-------------|---------------------|
/// | 1  | First  | Ann         | `{"views": 10}`     |
/// | 2  | Second | Bob         | NULL                |
/// | 3  | Third  | Cy          | `{ "a" : [1, 2] }`  |
/// | 4  | Fourth | Di          | `[]`                |
/// | 5  | Fifth  | Ed          | `"str"`             |
async fn seeded(query: &str) -> (tempfile::TempDir, Db) {
    let (dir, db) = sqlite(query).await;
    db.execute_unprepared(
        r#"CREATE TABLE post (
               id INTEGER PRIMARY KEY,
               title TEXT NOT NULL,
               author_name TEXT NOT NULL,
               data TEXT
           );
           INSERT INTO post VALUES
               (1, 'First', 'Ann', '{"views": 10}'),
               (2, 'Second', 'Bob', NULL),
               (3, 'Third', 'Cy', '{ "a" : [1, 2] }'),
               (4, 'Fourth', 'Di', '[]'),
               (5, 'Fifth', 'Ed', '"str"');"#,
    )
    .await
    .expect("seed");
    (dir, db)
}

const POSTS: &str = "SELECT json_object('id', id, 'title', title) FROM post ORDER BY id";

/// `WITH RECURSIVE` producing `n` = 1..=100000.
macro_rules! series_100k {
    ($select:literal) => {
        concat!(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000) ",
            $select
        )
    };
}

/// The shared bodies of `passthrough_support` run against [`seeded`].
struct Sqlite;

impl Backend for Sqlite {
    type Guard = tempfile::TempDir;
    const POSTS: &'static str = POSTS;
    const SERIES_100K: &'static str = series_100k!("SELECT json_object('n', n) FROM s");

    async fn seeded(query: &str) -> Option<(tempfile::TempDir, Db)> {
        Some(seeded(query).await)
    }

    fn n_row(n: u64) -> String {
        format!(r#"{{"n":{n}}}"#)
    }

    async fn hold_connection(db: &Db) -> Box<dyn std::any::Any + Send> {
        Box::new(db.sqlite_pool().unwrap().acquire().await.unwrap())
    }

    const BY_TITLE: &'static str =
        "SELECT json_object('id', id) FROM post WHERE title = ? ORDER BY id";
    const SEEDED_POSTS: i64 = 5;

    fn id_row(id: u64) -> String {
        format!(r#"{{"id":{id}}}"#)
    }

    const INSERT_POST: &'static str =
        "INSERT INTO post (id, title, author_name) VALUES (?, ?, 'Eve')";
    const INSERT_STRING: &'static str = "INSERT INTO s (id, s) VALUES (?, ?)";

    const SHAPES: Shapes = Shapes {
        show_post: "SELECT json_object('id', id, 'title', title) FROM post WHERE id = ?",
        value: "SELECT data FROM post WHERE id = ?",
        maybe: "SELECT json_object('id', id, 'title', title) FROM post WHERE id = ?",
        one_cases: &[
            (
                "/posts/2",
                br#"{"success":true,"data":{"id":2,"title":"Second"}}"#,
            ),
            (
                "/first",
                br#"{"success":true,"data":{"id":1,"title":"First"}}"#,
            ),
            // A row whose value is SQL NULL: `"data":null`, not a 404.
            ("/value/2", br#"{"success":true,"data":null}"#),
            // A non-object row (validated and minified).
            ("/value/3", br#"{"success":true,"data":{"a":[1,2]}}"#),
            ("/value/5", br#"{"success":true,"data":"str"}"#),
            (
                "/maybe/1",
                br#"{"success":true,"data":{"id":1,"title":"First"}}"#,
            ),
        ],
        graphql: "SELECT json_object('id', id, 'title', title) FROM post WHERE id <= 2 ORDER BY id",
        graphql_body: br#"{"data":{"posts":[{"id":1,"title":"First"},{"id":2,"title":"Second"}]}}"#,
        id_1: "SELECT json_object('id', id) FROM post WHERE id = 1",
        no_ids: "SELECT json_object('id', id) FROM post WHERE id < 0",
    };

    const MID_STREAM_FAILURES: &'static [MidStreamFailure] = &[
        // SQLite's json() raises "malformed JSON" on row 5000.
        MidStreamFailure {
            uri: "/sqlite-error",
            sql: series_100k!(
                "SELECT json(CASE WHEN n = 5000 THEN 'not json' ELSE json_object('n', n) END) FROM s"
            ),
            starts: br#"{"success":true,"data":[{"n":1}"#,
            key: br#"{"n":"#,
        },
        // Row 5000 is text that is not JSON: Chopin's validation fails.
        MidStreamFailure {
            uri: "/invalid-row",
            sql: series_100k!(
                "SELECT CASE WHEN n = 5000 THEN '{\"n\": 5000' ELSE json_object('n', n) END FROM s"
            ),
            starts: br#"{"success":true,"data":[{"n":1}"#,
            key: br#"{"n":"#,
        },
    ];

    const PAGE: &'static str =
        "SELECT json_object('id', id, 'title', title) FROM post ORDER BY id LIMIT ? OFFSET ?";
    const PARAMS: &'static str = "SELECT json_object(
        'i32', ?1, 'i32_t', typeof(?1),
        'i64', ?2, 'i64_t', typeof(?2),
        'u32', ?3, 'u32_t', typeof(?3),
        'true', ?4, 'true_t', typeof(?4),
        'false', ?5, 'false_t', typeof(?5),
        'f64', ?6, 'f64_t', typeof(?6),
        'str', ?7, 'str_t', typeof(?7),
        'string', ?8, 'string_t', typeof(?8),
        'none', ?9, 'none_t', typeof(?9),
        'bytes', hex(?10), 'bytes_t', typeof(?10),
        'i16', ?11, 'u16', ?12, 'f32', ?13, 'some', ?14, 'u64', ?15,
        'null', ?16, 'null_t', typeof(?16))";

    fn params_expected() -> Value {
        json!({
            "i32": -7, "i32_t": "integer",
            "i64": 9_007_199_254_740_993i64, "i64_t": "integer",
            "u32": 4_294_967_295u32, "u32_t": "integer",
            // SQLite has no boolean type.
            "true": 1, "true_t": "integer",
            "false": 0, "false_t": "integer",
            "f64": 1.5, "f64_t": "real",
            "str": "a'b", "str_t": "text",
            "string": "c\"d", "string_t": "text",
            "none": null, "none_t": "null",
            "bytes": "00FF7F", "bytes_t": "blob",
            "i16": -3, "u16": 65_535, "f32": 0.25, "some": 5, "u64": 42,
            "null": null, "null_t": "null",
        })
    }

    const NESTED: &'static [Nested] = &[Nested {
        uri: "/posts",
        sql: NESTED,
        row: rewritten_post,
    }];
}

passthrough_support::shared_tests!(Sqlite);

// ---------------------------------------------------------------------------------------------
// Shapes.

#[tokio::test]
async fn list_is_the_success_envelope() {
    let (_dir, db) = seeded("").await;
    let c = Routes::new().get_list("/posts", POSTS).client(&db);
    let res = c.get("/posts").await;
    assert_eq!(
        ok_body(&res),
        br#"{"success":true,"data":[{"id":1,"title":"First"},{"id":2,"title":"Second"},{"id":3,"title":"Third"},{"id":4,"title":"Fourth"},{"id":5,"title":"Fifth"}]}"#
    );
}

#[tokio::test]
async fn paginated_list_has_meta_with_total() {
    let (_dir, db) = seeded("").await;
    let c = Routes::new()
        .route("/posts", get(paged_posts::<Sqlite>))
        .client(&db);
    let res = c.get("/posts?limit=2&offset=1").await;
    assert_eq!(
        ok_body(&res),
        br#"{"success":true,"data":[{"id":2,"title":"Second"},{"id":3,"title":"Third"}],"meta":{"limit":2,"offset":1,"total":5}}"#
    );
    // Past the end: an empty page that still reports the total.
    let res = c.get("/posts?page=4&per_page=2").await;
    assert_eq!(
        ok_body(&res),
        br#"{"success":true,"data":[],"meta":{"limit":2,"offset":6,"total":5}}"#
    );
    // The defaults of the Pagination extractor.
    let res = c.get("/posts").await;
    assert_eq!(
        res.value()["meta"],
        json!({"limit": 20, "offset": 0, "total": 5})
    );
    assert_eq!(res.value()["data"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn empty_list() {
    let (_dir, db) = seeded("").await;
    let c = Routes::new()
        .get_list(
            "/none",
            "SELECT json_object('id', id) FROM post WHERE id < 0",
        )
        .get("/none/graphql", |db| async move {
            JsonQuery::new("SELECT json_object('id', id) FROM post WHERE id < 0")
                .graphql(&db, "posts")
                .await
        })
        .client(&db);
    assert_eq!(
        ok_body(&c.get("/none").await),
        br#"{"success":true,"data":[]}"#
    );
    assert_eq!(
        ok_body(&c.get("/none/graphql").await),
        br#"{"data":{"posts":[]}}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Text rows: validation, trust_text, row counts.

#[tokio::test]
async fn text_rows_are_validated_and_minified() {
    let (_dir, db) = seeded("").await;
    let c = Routes::new()
        .get_list("/data", "SELECT data FROM post ORDER BY id")
        .client(&db);
    // Whitespace removed, NULL rows written as null, non-object rows kept.
    assert_eq!(
        ok_body(&c.get("/data").await),
        br#"{"success":true,"data":[{"views":10},null,{"a":[1,2]},[],"str"]}"#
    );
}

#[tokio::test]
async fn invalid_json_text_is_a_500_never_a_broken_body() {
    let (_dir, db) = seeded("").await;
    db.execute_unprepared(r#"INSERT INTO post VALUES (6, 'Broken', 'Fay', '{"broken": ')"#)
        .await
        .unwrap();
    let routes = || {
        Routes::new()
            .get_list("/data", "SELECT data FROM post ORDER BY id")
            .get_one("/data/6", "SELECT data FROM post WHERE id = 6")
            .get("/data/graphql", |db| async move {
                JsonQuery::new("SELECT data FROM post ORDER BY id")
                    .graphql(&db, "data")
                    .await
            })
            .get("/trusted/6", |db| async move {
                JsonQuery::new("SELECT data FROM post WHERE id = 6")
                    .trust_text()
                    .list(&db)
                    .await
            })
            .get_trusted_one("/trusted/3", "SELECT data FROM post WHERE id = 3")
    };
    let c = routes().client(&db);
    // The invalid row is the last one: five valid rows were already written, and still the
    // whole response is a clean 500 envelope.
    for uri in ["/data", "/data/6", "/data/graphql"] {
        let res = c.get(uri).await;
        assert_internal(&res);
        assert!(!res.text().contains("broken"), "{uri}: {}", res.text());
    }
    // In development the cause is in `detail`.
    assert_development_detail(routes(), &db, "/data", "not valid JSON").await;

    // `trust_text()` is the handler's promise that the SQL itself builds valid JSON (for
    // example with `json_object`): the text is copied unchecked and unchanged. Break the
    // promise and the body is broken — which is why it must never be used on stored text.
    // Valid text keeps its exact spelling (no minification either).
    assert_trusted_text(
        &c,
        ("/trusted/6", br#"{"success":true,"data":[{"broken": ]}"#),
        ("/trusted/3", br#"{"success":true,"data":{ "a" : [1, 2] }}"#),
    )
    .await;
}

#[tokio::test]
async fn non_text_column_is_a_500() {
    // SQLite rows must be text (what `json_object` returns); an integer is refused rather than
    // guessed at.
    let (_dir, db) = seeded("").await;
    let c = Routes::new().get_list("/int", "SELECT 1").client(&db);
    assert_internal(&c.get("/int").await);
}

#[tokio::test]
async fn empty_null_one_and_many_rows() {
    let (_dir, db) = seeded("").await;
    let c = Routes::new()
        .get("/nulls", |db| async move {
            JsonQuery::new(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 4) \
                 SELECT CASE WHEN n % 2 = 0 THEN NULL ELSE json_object('n', n) END FROM s",
            )
            .list(&db)
            .await
        })
        .get_list("/one", "SELECT json_object('n', 1)")
        .get("/many", |db| async move {
            JsonQuery::new(series_100k!(
                "SELECT json_object('n', n, 'half', n / 2.0, 'name', 'row ' || n) FROM s"
            ))
            .list(&db)
            .await
        })
        .client(&db);
    assert_eq!(
        ok_body(&c.get("/nulls").await),
        br#"{"success":true,"data":[{"n":1},null,{"n":3},null]}"#
    );
    assert_eq!(
        ok_body(&c.get("/one").await),
        br#"{"success":true,"data":[{"n":1}]}"#
    );
    let rows = assert_n_rows(&c.get("/many").await, 100_000);
    assert_eq!(rows[0], json!({"n": 1, "half": 0.5, "name": "row 1"}));
    assert_eq!(
        rows[49_999],
        json!({"n": 50_000, "half": 25_000.0, "name": "row 50000"})
    );
    assert_eq!(
        rows[99_999],
        json!({"n": 100_000, "half": 50_000.0, "name": "row 100000"})
    );
}

// ---------------------------------------------------------------------------------------------
// Strings.

#[tokio::test]
async fn strings_round_trip_without_double_escaping() {
    let (_dir, db) = seeded("").await;
    seed_strings::<Sqlite>(&db).await;
    let c = Routes::new()
        .get_list(
            "/s",
            "SELECT json_object('id', id, 's', s) FROM s ORDER BY id",
        )
        .get("/bound", |db| async move {
            // Straight from a parameter into json_object, no table.
            JsonQuery::new("SELECT json_object('s', ?)")
                .bind("line\nbreak \"q\" \\ \u{1} 😀")
                .one(&db)
                .await
        })
        .client(&db);
    assert_tricky_rows(&c.get("/s").await, "/s");

    let res = c.get("/bound").await;
    assert_eq!(
        res.value(),
        json!({"success": true, "data": {"s": "line\nbreak \"q\" \\ \u{1} 😀"}})
    );
    assert!(res.text().contains(r#"line\nbreak"#), "{}", res.text());
}

#[tokio::test]
async fn stored_json_text_keeps_its_escapes() {
    let (_dir, db) = seeded("").await;
    db.execute_unprepared(
        r#"INSERT INTO post VALUES (6, 'Esc', 'Gus', '{"s": "\u00e9\ud83d\ude00 \n \"q\" \\"}')"#,
    )
    .await
    .unwrap();
    let c = Routes::new()
        .get_one("/esc", "SELECT data FROM post WHERE id = 6")
        .client(&db);
    let res = c.get("/esc").await;
    // Validated and minified, but strings are copied byte for byte: nothing decoded, nothing
    // re-escaped.
    assert_eq!(
        ok_body(&res),
        br#"{"success":true,"data":{"s":"\u00e9\ud83d\ude00 \n \"q\" \\"}}"#
    );
    assert_eq!(res.value()["data"]["s"], "é😀 \n \"q\" \\");
}

// ---------------------------------------------------------------------------------------------
// The rewriter on real rows.

const NESTED: &str = "SELECT json_object(
        '__typename', 'Old',
        'post_id', id,
        'post_title', title,
        'secret_field', 'hidden',
        'author_info', json_object(
            'user_id', 7,
            'display_name', author_name,
            '__typename', 'Author',
            'home_address', json_object('zip_code', '75001')),
        'tag_list', json_array(json_object('tag_id', 1, 'tag_name', 'snake_value')))
    FROM post WHERE id <= 2 ORDER BY id";

// ---------------------------------------------------------------------------------------------
// Streaming.

#[tokio::test]
async fn stream_empty_result() {
    let (_dir, db) = seeded("").await;
    let router = Routes::new()
        .get_stream(
            "/stream",
            "SELECT json_object('id', id) FROM post WHERE id < 0",
        )
        .router(&db);
    assert_empty_stream(router, "/stream").await;
}

#[tokio::test]
async fn stream_error_before_the_first_row_is_an_error_envelope() {
    let (_dir, db) = seeded("").await;
    db.execute_unprepared(r#"INSERT INTO post VALUES (0, 'Broken', 'Fay', '{"broken": ')"#)
        .await
        .unwrap();
    let c = Routes::new()
        .get_stream(
            "/bad-sql",
            "SELECT json_object('id', id) FROM no_such_table",
        )
        .get("/bad-first-row", |db| async move {
            // The invalid row (id 0) comes first.
            JsonQuery::new("SELECT data FROM post ORDER BY id")
                .stream(&db)
                .await
        })
        .client(&db);
    for uri in ["/bad-sql", "/bad-first-row"] {
        let res = c.get(uri).await;
        assert_internal(&res);
        assert!(!res.text().contains("no_such_table"), "{}", res.text());
    }
}
