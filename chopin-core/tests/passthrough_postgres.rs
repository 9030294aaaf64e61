//! The pass-through responder against a real PostgreSQL server (a fresh database per test):
//! envelope shapes, `json` / `jsonb` / `text` columns, string escaping, the rewriter, bound
//! parameters, pool exhaustion and streaming — chunking, errors before and after the first
//! row, cancellation when the client goes away, and time to first byte — in process and over
//! real TCP.
//!
//! Without a server at `CHOPIN_TEST_POSTGRES_URL` (default `127.0.0.1:5432`) the tests print
//! why and pass, except under `CI=true`, where they fail.

mod common;
mod passthrough_support;

use std::time::{Duration, Instant};

use axum::routing::get;
use chopin_core::db::Db;
use chopin_core::passthrough::{AssertSqlSafe, JsonQuery};
use chopin_core::prelude::*;
use chopin_core::testing::TestPostgres;
use common::*;
use http::StatusCode;
use passthrough_support::*;
use sea_orm::ConnectionTrait;
use sea_orm::sqlx::{self, Connection};
use serde_json::{Value, json};

/// A fresh database with a small `post` table:
///
/// | id | title  | author_name | doc (json) / docb (jsonb) | raw (text)     |
/// |----|--------|-------------|---------------------------|----------------|
/// | 1  | First  | Ann         | `{"b": 1,  "a": [1, 2]}`  | `{ "a" : 1 }`  |
/// | 2  | Second | Bob         | NULL                      | NULL           |
/// | 3  | Third  | Cy          | `[]`                      | `"str"`        |
async fn seeded(query: &str) -> Option<(TestPostgres, Db)> {
    let (pg, db) = postgres(query).await?;
    db.execute_unprepared(
        r#"CREATE TABLE post (
               id bigint PRIMARY KEY,
               title text NOT NULL,
               author_name text NOT NULL,
               doc json,
               docb jsonb,
               raw text
           );
           INSERT INTO post VALUES
               (1, 'First', 'Ann', '{"b": 1,  "a": [1, 2]}', '{"b": 1,  "a": [1, 2]}', '{ "a" : 1 }'),
               (2, 'Second', 'Bob', NULL, NULL, NULL),
               (3, 'Third', 'Cy', '[]', '[]', '"str"');"#,
    )
    .await
    .expect("seed");
    Some((pg, db))
}

const POSTS: &str = "SELECT json_build_object('id', id, 'title', title) FROM post ORDER BY id";

/// The shared bodies of `passthrough_support` run against [`seeded`].
struct Postgres;

impl Backend for Postgres {
    type Guard = TestPostgres;
    const POSTS: &'static str = POSTS;
    const SERIES_100K: &'static str =
        "SELECT json_build_object('n', g) FROM generate_series(1, 100000) g";

    async fn seeded(query: &str) -> Option<(TestPostgres, Db)> {
        seeded(query).await
    }

    fn n_row(n: u64) -> String {
        format!(r#"{{"n" : {n}}}"#)
    }

    async fn hold_connection(db: &Db) -> Box<dyn std::any::Any + Send> {
        Box::new(db.postgres_pool().unwrap().acquire().await.unwrap())
    }

    const BY_TITLE: &'static str =
        "SELECT jsonb_build_object('id', id) FROM post WHERE title = $1 ORDER BY id";
    const SEEDED_POSTS: i64 = 3;

    fn id_row(id: u64) -> String {
        format!(r#"{{"id": {id}}}"#)
    }

    const INSERT_POST: &'static str =
        "INSERT INTO post (id, title, author_name) VALUES ($1, $2, 'Eve')";
    const INSERT_STRING: &'static str = "INSERT INTO s (id, s) VALUES ($1, $2)";

    const SHAPES: Shapes = Shapes {
        show_post: "SELECT jsonb_build_object('id', id, 'title', title) FROM post WHERE id = $1",
        value: "SELECT doc FROM post WHERE id = $1",
        maybe: "SELECT docb FROM post WHERE id = $1",
        one_cases: &[
            (
                "/posts/3",
                br#"{"success":true,"data":{"id": 3, "title": "Third"}}"#,
            ),
            (
                "/first",
                br#"{"success":true,"data":{"id" : 1, "title" : "First"}}"#,
            ),
            // The row exists, its value is NULL.
            ("/value/2", br#"{"success":true,"data":null}"#),
            ("/value/3", br#"{"success":true,"data":[]}"#),
            ("/maybe/2", br#"{"success":true,"data":null}"#),
            (
                "/maybe/1",
                br#"{"success":true,"data":{"a": [1, 2], "b": 1}}"#,
            ),
        ],
        graphql: "SELECT jsonb_build_object('id', id) FROM post ORDER BY id",
        graphql_body: br#"{"data":{"posts":[{"id": 1},{"id": 2},{"id": 3}]}}"#,
        id_1: "SELECT jsonb_build_object('id', id) FROM post WHERE id = 1",
        no_ids: "SELECT jsonb_build_object('id', id) FROM post WHERE false",
    };

    const MID_STREAM_FAILURES: &'static [MidStreamFailure] = &[
        // No ORDER BY: rows 1..4999 are produced (and sent) before row 5000 fails.
        MidStreamFailure {
            uri: "/division",
            sql: "SELECT json_build_object('g', g, 'n', 1 / (g - 5000)) \
                  FROM generate_series(1, 100000) g",
            starts: br#"{"success":true,"data":[{"g" : 1, "n" : "#,
            key: br#"{"g" : "#,
        },
        // Row 5000 is text that is not JSON: Chopin's validation fails.
        MidStreamFailure {
            uri: "/invalid-text",
            sql: "SELECT CASE WHEN g = 5000 THEN '{\"g\": 5000' \
                  ELSE json_build_object('g', g, 'n', 0)::text END \
                  FROM generate_series(1, 100000) g",
            starts: br#"{"success":true,"data":[{"g":1,"n":0}"#,
            key: br#"{"g":"#,
        },
    ];

    const PAGE: &'static str =
        "SELECT jsonb_build_object('id', id) FROM post ORDER BY id LIMIT $1 OFFSET $2";
    const PARAMS: &'static str = "SELECT json_build_object(
        'i32', $1, 'i32_t', pg_typeof($1)::text,
        'i64', $2, 'i64_t', pg_typeof($2)::text,
        'u32', $3, 'u32_t', pg_typeof($3)::text,
        'true', $4, 'true_t', pg_typeof($4)::text,
        'false', $5,
        'f64', $6, 'f64_t', pg_typeof($6)::text,
        'str', $7, 'str_t', pg_typeof($7)::text,
        'string', $8,
        'none', $9, 'none_t', pg_typeof($9)::text,
        'bytes', encode($10, 'hex'), 'bytes_t', pg_typeof($10)::text,
        'i16', $11, 'u16', $12, 'f32', $13, 'some', $14, 'u64', $15, 'null', $16)";

    fn params_expected() -> Value {
        json!({
            "i32": -7, "i32_t": "integer",
            "i64": 9_007_199_254_740_993i64, "i64_t": "bigint",
            "u32": 4_294_967_295u32, "u32_t": "bigint",
            "true": true, "true_t": "boolean",
            "false": false,
            "f64": 1.5, "f64_t": "double precision",
            "str": "a'b", "str_t": "text",
            "string": "c\"d",
            // A NULL parameter is sent as text.
            "none": null, "none_t": "text",
            "bytes": "00ff7f", "bytes_t": "bytea",
            "i16": -3, "u16": 65_535, "f32": 0.25, "some": 5, "u64": 42, "null": null,
        })
    }

    const NESTED: &'static [Nested] = &[
        // json keeps the SQL's key order.
        Nested {
            uri: "/json",
            sql: NESTED_JSON,
            row: rewritten_post,
        },
        // jsonb stores keys sorted by length, then bytes; the rewriter keeps that order and
        // puts `__typename` first.
        Nested {
            uri: "/jsonb",
            sql: NESTED_JSONB,
            row: |id, title, author| {
                format!(
                    r#"{{"__typename":"Post","postId":{id},"tagList":[{{"tagId":1,"tagName":"snake_value"}}],"postTitle":"{title}","authorInfo":{{"userId":7,"__typename":"Author","displayName":"{author}","homeAddress":{{"zipCode":"75001"}}}}}}"#
                )
            },
        },
    ];
}

passthrough_support::shared_tests!(Postgres);

// ---------------------------------------------------------------------------------------------
// Shapes.

#[tokio::test]
async fn list_is_the_success_envelope() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    let c = Routes::new()
        .get_list("/json", POSTS)
        .get("/jsonb", |db| async move {
            JsonQuery::new(
                "SELECT jsonb_build_object('id', id, 'title', title) FROM post ORDER BY id",
            )
            .list(&db)
            .await
        })
        .client(&db);
    // `json` rows are copied as PostgreSQL wrote them (json_build_object's " : ").
    assert_eq!(
        ok_body(&c.get("/json").await),
        br#"{"success":true,"data":[{"id" : 1, "title" : "First"},{"id" : 2, "title" : "Second"},{"id" : 3, "title" : "Third"}]}"#
    );
    assert_eq!(
        ok_body(&c.get("/jsonb").await),
        br#"{"success":true,"data":[{"id": 1, "title": "First"},{"id": 2, "title": "Second"},{"id": 3, "title": "Third"}]}"#
    );
}

#[tokio::test]
async fn paginated_list_and_empty_list() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    let c = Routes::new()
        .route("/posts", get(paged_posts::<Postgres>))
        .get_list(
            "/none",
            "SELECT json_build_object('id', id) FROM post WHERE id < 0",
        )
        .client(&db);
    assert_eq!(
        ok_body(&c.get("/posts?limit=2&offset=1").await),
        br#"{"success":true,"data":[{"id": 2},{"id": 3}],"meta":{"limit":2,"offset":1,"total":3}}"#
    );
    assert_eq!(
        ok_body(&c.get("/posts?limit=5&offset=3").await),
        br#"{"success":true,"data":[],"meta":{"limit":5,"offset":3,"total":3}}"#
    );
    assert_eq!(
        ok_body(&c.get("/none").await),
        br#"{"success":true,"data":[]}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Column types.

#[tokio::test]
async fn json_is_copied_exactly_and_jsonb_is_normalised() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    let c = Routes::new()
        .get_one("/json", r#"SELECT '{"b": 1,  "a": [1, 2]}'::json"#)
        .get_one("/jsonb", r#"SELECT '{"b": 1,  "a": [1, 2]}'::jsonb"#)
        .get_list(
            "/columns",
            "SELECT doc FROM post UNION ALL SELECT docb::json FROM post",
        )
        .get_list("/docb", "SELECT docb FROM post ORDER BY id")
        .get_stream("/docb/stream", "SELECT docb FROM post ORDER BY id")
        .client(&db);
    // json: the text exactly as written — spaces and key order.
    assert_eq!(
        ok_body(&c.get("/json").await),
        br#"{"success":true,"data":{"b": 1,  "a": [1, 2]}}"#
    );
    // jsonb: PostgreSQL's normal form (keys sorted, one space after ':' and ','); the binary
    // format's version byte (0x01) is not in the body.
    let res = c.get("/jsonb").await;
    assert_eq!(
        ok_body(&res),
        br#"{"success":true,"data":{"a": [1, 2], "b": 1}}"#
    );
    assert!(!res.body.contains(&1u8));
    assert_eq!(
        ok_body(&c.get("/docb").await),
        br#"{"success":true,"data":[{"a": [1, 2], "b": 1},null,[]]}"#
    );
    assert_eq!(
        ok_body(&c.get("/docb/stream").await),
        br#"{"success":true,"data":[{"a": [1, 2], "b": 1},null,[]]}"#
    );
    assert_eq!(
        c.get("/columns").await.value()["data"],
        json!([{"b": 1, "a": [1, 2]}, null, [], {"a": [1, 2], "b": 1}, null, []])
    );
}

#[tokio::test]
async fn text_columns_are_validated_unless_trusted() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    db.execute_unprepared(r#"INSERT INTO post VALUES (4, 'Broken', 'Dan', NULL, NULL, '{"a": ')"#)
        .await
        .unwrap();
    let routes = || {
        Routes::new()
            .get_list("/raw", "SELECT raw FROM post WHERE id < 4 ORDER BY id")
            .get_list("/raw/all", "SELECT raw FROM post ORDER BY id")
            .get_one("/raw/4", "SELECT raw FROM post WHERE id = 4")
            .get_trusted_one("/raw/4/trusted", "SELECT raw FROM post WHERE id = 4")
            .get_trusted_one("/raw/1/trusted", "SELECT raw FROM post WHERE id = 1")
            .get("/other-text-types", |db| async move {
                JsonQuery::new(
                    r#"SELECT v FROM (VALUES
                        ('{ "varchar" : 1 }'::varchar),
                        ('{ "bpchar" : 2 }'::char(20)::varchar),
                        ('{ "text" : 3 }'::text)) t(v)"#,
                )
                .list(&db)
                .await
            })
            .get_one("/literal", r#"SELECT '{ "literal" : true }'"#)
            .get_one("/bpchar", r#"SELECT '{ "bpchar" : 2 }'::char(20)"#)
            .get_one("/name", r#"SELECT '{ "name" : 3 }'::name"#)
    };
    let c = routes().client(&db);
    // Valid text is validated and minified.
    assert_eq!(
        ok_body(&c.get("/raw").await),
        br#"{"success":true,"data":[{"a":1},null,"str"]}"#
    );
    assert_eq!(
        ok_body(&c.get("/other-text-types").await),
        br#"{"success":true,"data":[{"varchar":1},{"bpchar":2},{"text":3}]}"#
    );
    assert_eq!(
        ok_body(&c.get("/literal").await),
        br#"{"success":true,"data":{"literal":true}}"#
    );
    // char(n) pads with spaces: insignificant whitespace.
    assert_eq!(
        ok_body(&c.get("/bpchar").await),
        br#"{"success":true,"data":{"bpchar":2}}"#
    );
    assert_eq!(
        ok_body(&c.get("/name").await),
        br#"{"success":true,"data":{"name":3}}"#
    );
    // An invalid value is a 500 envelope, never a broken body — even after valid rows.
    for uri in ["/raw/all", "/raw/4"] {
        let res = c.get(uri).await;
        assert_internal(&res);
    }
    assert_development_detail(routes(), &db, "/raw/4", "not valid JSON").await;

    // `trust_text()` is the handler's promise that its SQL builds valid JSON: the text is
    // copied unchecked and unchanged, so breaking the promise breaks the body. It exists for
    // SQL-built JSON cast to text, never for stored text like this column.
    assert_trusted_text(
        &c,
        ("/raw/4/trusted", br#"{"success":true,"data":{"a": }"#),
        ("/raw/1/trusted", br#"{"success":true,"data":{ "a" : 1 }}"#),
    )
    .await;
}

#[tokio::test]
async fn non_json_column_types_are_a_500() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    let routes = || {
        Routes::new()
            .get_list("/int", "SELECT 1::int")
            .get_one("/int/one", "SELECT 1::int")
            .get("/bool", |db| async move {
                JsonQuery::new("SELECT true").optional(&db).await
            })
            .get_list("/bytea", r#"SELECT convert_to('{"a":1}', 'UTF8')"#)
            .get_stream("/int/stream", "SELECT 1::int")
    };
    let c = routes().client(&db);
    for uri in ["/int", "/int/one", "/bool", "/bytea", "/int/stream"] {
        let res = c.get(uri).await;
        assert_internal(&res);
        assert!(!res.text().contains("INT4"), "{uri}: {}", res.text());
    }
    // The reason is logged, and shown in development only.
    let res = routes()
        .client_in(&db, Environment::Development)
        .get("/int")
        .await;
    let detail = res.value()["error"]["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("INT4") && detail.contains("expected json, jsonb or text"),
        "{detail}"
    );
}

// ---------------------------------------------------------------------------------------------
// Row counts.

#[tokio::test]
async fn empty_null_one_many_and_100k_rows() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    let c = Routes::new()
        .get("/nulls", |db| async move {
            JsonQuery::new(
                "SELECT CASE WHEN g % 2 = 0 THEN NULL ELSE jsonb_build_object('n', g) END \
                 FROM generate_series(1, 4) g",
            )
            .list(&db)
            .await
        })
        .get_list("/one", "SELECT jsonb_build_object('n', 1)")
        .get("/many", |db| async move {
            JsonQuery::new(
                "SELECT json_build_object('n', g, 'sq', g::bigint * g, 'name', 'row ' || g) \
                 FROM generate_series(1, 100000) g",
            )
            .list(&db)
            .await
        })
        .get("/many/text", |db| async move {
            JsonQuery::new(
                "SELECT json_build_object('n', g)::text FROM generate_series(1, 100000) g",
            )
            .list(&db)
            .await
        })
        .client(&db);
    assert_eq!(
        ok_body(&c.get("/nulls").await),
        br#"{"success":true,"data":[{"n": 1},null,{"n": 3},null]}"#
    );
    assert_eq!(
        ok_body(&c.get("/one").await),
        br#"{"success":true,"data":[{"n": 1}]}"#
    );
    let rows = assert_n_rows(&c.get("/many").await, 100_000);
    assert_eq!(rows[0], json!({"n": 1, "sq": 1, "name": "row 1"}));
    assert_eq!(
        rows[99_999],
        json!({"n": 100_000, "sq": 10_000_000_000u64, "name": "row 100000"})
    );
    // The same through text (validated row by row).
    let res = c.get("/many/text").await;
    assert!(
        res.body
            .starts_with(br#"{"success":true,"data":[{"n":1},{"n":2},"#)
    );
    let value = res.value();
    assert_eq!(value["data"].as_array().unwrap().len(), 100_000);
    assert_eq!(value["data"][99_999], json!({"n": 100_000}));
}

// ---------------------------------------------------------------------------------------------
// Strings.

#[tokio::test]
async fn strings_round_trip_without_double_escaping() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    seed_strings::<Postgres>(&db).await;
    let c = Routes::new()
        .get_list(
            "/json",
            "SELECT json_build_object('id', id, 's', s) FROM s ORDER BY id",
        )
        .get_list(
            "/jsonb",
            "SELECT jsonb_build_object('id', id, 's', s) FROM s ORDER BY id",
        )
        .get_list(
            "/text",
            "SELECT json_build_object('id', id, 's', s)::text FROM s ORDER BY id",
        )
        .get_stream("/stream", "SELECT to_jsonb(s) FROM s ORDER BY id")
        .client(&db);
    for uri in ["/json", "/jsonb", "/text"] {
        assert_tricky_rows(&c.get(uri).await, uri);
    }
    let res = c.get("/stream").await;
    assert_eq!(res.value()["data"], json!(TRICKY));

    // Bound straight into json_build_object.
    let c = Routes::new()
        .get("/bound", |db| async move {
            JsonQuery::new("SELECT json_build_object('s', $1::text)")
                .bind("line\nbreak \"q\" \\ \u{1} 😀")
                .one(&db)
                .await
        })
        .client(&db);
    let res = c.get("/bound").await;
    assert_eq!(
        ok_body(&res),
        r#"{"success":true,"data":{"s" : "line\nbreak \"q\" \\ \u0001 😀"}}"#.as_bytes()
    );
    assert_eq!(res.value()["data"]["s"], "line\nbreak \"q\" \\ \u{1} 😀");
}

#[tokio::test]
async fn unicode_escapes_in_json_are_kept_and_jsonb_decodes_them() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    let c = Routes::new()
        .get_one(
            "/json",
            r#"SELECT '{"s": "\u00e9\ud83d\ude00 \n \"q\""}'::json"#,
        )
        .get_one(
            "/jsonb",
            r#"SELECT '{"s": "\u00e9\ud83d\ude00 \n \"q\""}'::jsonb"#,
        )
        .client(&db);
    let res = c.get("/json").await;
    assert_eq!(
        ok_body(&res),
        br#"{"success":true,"data":{"s": "\u00e9\ud83d\ude00 \n \"q\""}}"#
    );
    assert_eq!(res.value()["data"]["s"], "é😀 \n \"q\"");
    let res = c.get("/jsonb").await;
    assert_eq!(
        ok_body(&res),
        "{\"success\":true,\"data\":{\"s\": \"é😀 \\n \\\"q\\\"\"}}".as_bytes()
    );
    assert_eq!(res.value()["data"]["s"], "é😀 \n \"q\"");
}

// ---------------------------------------------------------------------------------------------
// The rewriter on real rows.

const NESTED_JSON: &str = "SELECT json_build_object(
        '__typename', 'Old',
        'post_id', id,
        'post_title', title,
        'secret_field', 'hidden',
        'author_info', json_build_object(
            'user_id', 7,
            'display_name', author_name,
            '__typename', 'Author',
            'home_address', json_build_object('zip_code', '75001')),
        'tag_list', json_build_array(json_build_object('tag_id', 1, 'tag_name', 'snake_value')))
    FROM post WHERE id <= 2 ORDER BY id";

const NESTED_JSONB: &str = "SELECT jsonb_build_object(
        '__typename', 'Old',
        'post_id', id,
        'post_title', title,
        'secret_field', 'hidden',
        'author_info', jsonb_build_object(
            'user_id', 7,
            'display_name', author_name,
            '__typename', 'Author',
            'home_address', jsonb_build_object('zip_code', '75001')),
        'tag_list', jsonb_build_array(jsonb_build_object('tag_id', 1, 'tag_name', 'snake_value')))
    FROM post WHERE id <= 2 ORDER BY id";

// ---------------------------------------------------------------------------------------------
// Parameters.

#[tokio::test]
async fn optional_filter_parameters() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    // A NULL parameter is typed text, so an optional filter casts it.
    const FILTER: &str = "SELECT jsonb_build_object('id', id) FROM post \
                          WHERE ($1::bigint IS NULL OR id = $1::bigint) ORDER BY id";
    let c = Routes::new()
        .get("/all", |db| async move {
            JsonQuery::new(FILTER).bind(None::<i64>).list(&db).await
        })
        .get("/two", |db| async move {
            JsonQuery::new(FILTER).bind(Some(2i64)).list(&db).await
        })
        .client(&db);
    assert_eq!(
        ok_body(&c.get("/all").await),
        br#"{"success":true,"data":[{"id": 1},{"id": 2},{"id": 3}]}"#
    );
    assert_eq!(
        ok_body(&c.get("/two").await),
        br#"{"success":true,"data":[{"id": 2}]}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Streaming.

#[tokio::test]
async fn stream_empty_result_and_errors_before_the_first_row() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    let routes = || {
        Routes::new()
            .get_stream(
                "/empty",
                "SELECT jsonb_build_object('id', id) FROM post WHERE false",
            )
            .get_stream(
                "/bad-sql",
                "SELECT json_build_object('id', id) FROM no_such_table",
            )
            .get_stream(
                "/error-at-first-row",
                "SELECT json_build_object('n', 1 / 0)",
            )
            .get_stream(
                "/invalid-first-row",
                "SELECT raw FROM (VALUES ('{'::text), ('{}')) t(raw)",
            )
    };
    assert_empty_stream(routes().router(&db), "/empty").await;

    let c = routes().client(&db);
    for uri in ["/bad-sql", "/error-at-first-row", "/invalid-first-row"] {
        let res = c.get(uri).await;
        assert_internal(&res);
        assert!(!res.text().contains("no_such_table"), "{}", res.text());
    }
    // In development the database's message is in `detail`.
    let res = routes()
        .client_in(&db, Environment::Development)
        .get("/bad-sql")
        .await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(res.text().contains("no_such_table"), "{}", res.text());
    // None of these left a connection checked out.
    assert_pool_idle(&db).await;
}

/// Active queries of the test database whose text contains the marker `$2` (other than the
/// monitoring query itself).
const ACTIVE: &str = "SELECT count(*) FROM pg_stat_activity \
                      WHERE datname = $1 AND pid <> pg_backend_pid() AND state = 'active' \
                      AND strpos(query, $2) > 0";

/// Backends of the test database, idle or not, whose last query contains the marker `$2`.
const BACKENDS: &str = "SELECT count(*) FROM pg_stat_activity \
                        WHERE datname = $1 AND pid <> pg_backend_pid() \
                        AND strpos(query, $2) > 0";

async fn pg_count(
    monitor: &mut sqlx::PgConnection,
    sql: &'static str,
    pg: &TestPostgres,
    marker: &str,
) -> i64 {
    sqlx::query_scalar(sql)
        .bind(pg.name())
        .bind(marker)
        .fetch_one(monitor)
        .await
        .expect("query pg_stat_activity")
}

/// Poll `sql` until it counts zero, for up to `limit`; returns how long that took.
async fn wait_for_zero(
    monitor: &mut sqlx::PgConnection,
    sql: &'static str,
    pg: &TestPostgres,
    marker: &str,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if pg_count(monitor, sql, pg, marker).await == 0 {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One row every 10 ms (the whole query would take about 1000 s); rows are padded so that
/// PostgreSQL's 8 KiB output buffer fills, and rows reach the client, quickly.
const SLOW_ROWS: &str = "SELECT json_build_object('n', g, 'pad', repeat('x', 200), \
                         's', pg_sleep(0.01)::text) FROM generate_series(1, 100000) g";

/// Stream [`SLOW_ROWS`] to a raw HTTP/1.1 client that reads the first rows and hangs up;
/// assert that the query stops and its connection is closed. Returns how long the query
/// outlived the client.
async fn hang_up_mid_stream(pool_query: &str, marker: &'static str) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (pg, db) = seeded(pool_query).await?;
    let server = Routes::new()
        .get("/slow", move |db| async move {
            JsonQuery::new(AssertSqlSafe(format!("/* {marker} */ {SLOW_ROWS}")))
                .chunk_size(1024)
                .stream(&db)
                .await
        })
        .serve(&db)
        .await;
    let mut monitor = sqlx::PgConnection::connect(pg.url()).await.unwrap();

    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let first_rows = tokio::time::timeout(Duration::from_secs(20), async {
        while count(&received, br#"{"n" : 2,"#) == 0 {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed early: {}", preview(&received));
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        first_rows.is_ok(),
        "no rows within 20 s: {}",
        preview(&received)
    );
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(count(&received, br#"{"success":true,"data":[{"n" : 1,"#), 1);

    // The query is running (which also proves the filter below can see it) …
    assert_eq!(pg_count(&mut monitor, ACTIVE, &pg, marker).await, 1);
    drop(stream);
    let hung_up = Instant::now();

    // … and stops within seconds of the client leaving, not after ~1000 s.
    let gone = wait_for_zero(&mut monitor, ACTIVE, &pg, marker, Duration::from_secs(10)).await;
    assert!(
        gone.is_some(),
        "the query still runs 10 s after the client left"
    );
    let elapsed = hung_up.elapsed();
    eprintln!("{pool_query:?}: the query stopped {elapsed:?} after the client hung up");
    // Its connection is closed rather than returned to the pool.
    let closed = wait_for_zero(&mut monitor, BACKENDS, &pg, marker, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the streaming connection was not closed");
    assert_pool_idle(&db).await;
    monitor.close().await.unwrap();
    drop(server);
    db.close().await;
    Some(elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_query() {
    let Some(elapsed) = hang_up_mid_stream("", "chopin-disconnect-marker").await else {
        return;
    };
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_stops_the_query_with_a_saturated_pool() {
    // The stream holds the pool's only connection, so the cancel cannot come from the pool:
    // waiting for one would take the 30 s acquire timeout.
    let pool = "max_connections=1&acquire_timeout=30s";
    let Some(elapsed) = hang_up_mid_stream(pool, "chopin-saturated-marker").await else {
        return;
    };
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped after {elapsed:?}"
    );
}

/// A client that sends the request and hangs up while the query is still computing its first
/// row (a 60 s sleep that writes nothing, so only a cancel can stop it). Returns how long the
/// query outlived the client.
async fn hang_up_before_the_first_row(pool_query: &str, marker: &'static str) -> Option<Duration> {
    use tokio::io::AsyncWriteExt;
    let (pg, db) = seeded(pool_query).await?;
    let server = Routes::new()
        .get("/sleepy", move |db| async move {
            JsonQuery::new(AssertSqlSafe(format!(
                "/* {marker} */ SELECT json_build_object('slept', pg_sleep(60)::text)"
            )))
            .stream(&db)
            .await
        })
        .serve(&db)
        .await;
    let mut monitor = sqlx::PgConnection::connect(pg.url()).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /sleepy HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    while pg_count(&mut monitor, ACTIVE, &pg, marker).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the query never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);
    let hung_up = Instant::now();
    let gone = wait_for_zero(&mut monitor, ACTIVE, &pg, marker, Duration::from_secs(10)).await;
    assert!(
        gone.is_some(),
        "the query still runs 10 s after the client left"
    );
    let elapsed = hung_up.elapsed();
    eprintln!("{pool_query:?}: the query stopped {elapsed:?} after the client hung up");
    assert_pool_idle(&db).await;
    monitor.close().await.unwrap();
    drop(server);
    db.close().await;
    Some(elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_before_the_first_row_cancels_the_query() {
    let Some(elapsed) = hang_up_before_the_first_row("", "chopin-early-marker").await else {
        return;
    };
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_before_the_first_row_cancels_with_a_saturated_pool() {
    // As above, and the query writes nothing, so closing its connection would not stop it
    // either: only the cancel does.
    let pool = "max_connections=1&acquire_timeout=30s";
    let Some(elapsed) = hang_up_before_the_first_row(pool, "chopin-early-saturated-marker").await
    else {
        return;
    };
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_mid_stream_stops_a_slow_query() {
    let Some((pg, db)) = seeded("").await else {
        return;
    };
    // Row 30 is invalid text: Chopin's validation fails mid-stream while the query would go
    // on for another ~1000 s.
    let marker = "chopin-midstream-marker";
    let server = Routes::new()
        .get("/slow", move |db| async move {
            JsonQuery::new(AssertSqlSafe(format!(
                "/* {marker} */ SELECT CASE WHEN g = 30 THEN 'oops' \
                 ELSE json_build_object('n', g, 'pad', repeat('x', 200), \
                 's', pg_sleep(0.01)::text)::text END FROM generate_series(1, 100000) g"
            )))
            .chunk_size(1024)
            .stream(&db)
            .await
        })
        .serve(&db)
        .await;
    let mut monitor = sqlx::PgConnection::connect(pg.url()).await.unwrap();
    let frames = frames_over_tcp(&server.url("/slow")).await;
    let body = assert_aborted(&frames);
    assert_prefix_before(&body, br#"{"n":"#, 30);
    let aborted = Instant::now();
    let gone = wait_for_zero(&mut monitor, ACTIVE, &pg, marker, Duration::from_secs(10)).await;
    assert!(
        gone.is_some(),
        "the query still runs 10 s after the body was aborted"
    );
    assert!(
        aborted.elapsed() < Duration::from_secs(5),
        "{:?}",
        aborted.elapsed()
    );
    monitor.close().await.unwrap();
    drop(server);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_chunk_arrives_long_before_a_million_rows_finish() {
    let Some((_pg, db)) = seeded("").await else {
        return;
    };
    let server = Routes::new()
        .get_stream(
            "/million",
            "SELECT json_build_object('n', g) FROM generate_series(1, 1000000) g",
        )
        .serve(&db)
        .await;
    let frames = frames_over_tcp(&server.url("/million")).await;
    assert!(frames.error.is_none(), "{:?}", frames.error);
    let first = frames.first_chunk.expect("a first chunk");
    let total = frames.finished;
    eprintln!(
        "1,000,000 rows: first chunk after {first:?}, whole body after {total:?}, {} chunks",
        frames.chunks.len()
    );
    assert!(
        first < Duration::from_secs(2),
        "first chunk after {first:?} (whole body {total:?})"
    );
    // The first chunk does not wait for the result: it comes in a small fraction of the time
    // the whole body takes.
    assert!(
        first * 4 < total,
        "first chunk after {first:?}, whole body after {total:?}"
    );
    assert!(frames.chunks.len() > 10, "{} chunks", frames.chunks.len());
    assert_series(&frames.body(), 1_000_000);
}
