//! `#[derive(JsonProjection)]` against the model path, byte for byte: one struct with a field of
//! every kind a projection carries (integers, a numeric, floats, booleans, nulls, text with
//! escapes and non-ASCII, timestamps with and without fractional seconds in chrono's two usual
//! formats, a naive timestamp, a date, nested arrays and objects). Rows are written with
//! sea-orm's own value encoding (what the model path stores), then each backend's projection
//! answers through the pass-through responder and the body must equal the body `ApiResponse`
//! sends for the same values — on SQLite and on PostgreSQL, the latter in a session time zone
//! other than UTC.
//!
//! The per-backend expressions are the recipes `docs/passthrough.md` gives.

mod common;

use axum::response::IntoResponse;
use chopin_core::db::Db;
use chopin_core::passthrough::{AssertSqlSafe, JsonProjection, JsonQuery, SqlSafeStr};
use chopin_core::prelude::*;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use http_body_util::BodyExt;
use sea_orm::{ConnectionTrait, Statement, Value};
use serde::{Serialize, Serializer};

/// RFC 3339, UTC, milliseconds (truncated), as `examples/blog` serialises its timestamps.
fn millis<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// A nested object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Author {
    id: i64,
    display_name: String,
}

/// A nested array element.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Tag {
    id: i64,
    name: String,
}

#[derive(Debug, Clone, Serialize, JsonProjection)]
#[serde(rename_all = "camelCase")]
#[projection(table = "s")]
struct Sample {
    id: i64,
    small: i16,
    count: i32,
    /// Text with every escape JSON has, and non-ASCII.
    label: String,
    note: Option<String>,
    /// SQLite stores booleans as 0/1.
    #[projection(postgres = "s.flag", sqlite = "json(iif(s.flag, 'true', 'false'))")]
    flag: bool,
    /// `iif(NULL, …)` would say `false`: a NULL must stay `null`.
    #[projection(
        postgres = "s.maybe_flag",
        sqlite = "json(CASE s.maybe_flag WHEN 1 THEN 'true' WHEN 0 THEN 'false' END)"
    )]
    maybe_flag: Option<bool>,
    /// Non-integral values (see `whole_floats_differ` for the others).
    ratio: f64,
    /// A `numeric(12,2)` as `rust_decimal` serialises it: a string with its scale.
    #[projection(postgres = "s.amount::text", sqlite = "s.amount")]
    amount: String,
    /// RFC 3339 milliseconds, `Z`.
    #[serde(serialize_with = "millis")]
    #[projection(
        postgres = r#"to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#,
        sqlite = "substr(s.created_at, 1, 19) || CASE substr(s.created_at, 20, 1) WHEN '.' \
                  THEN substr(s.created_at, 20, 4) ELSE '.000' END || 'Z'"
    )]
    created_at: DateTime<Utc>,
    /// chrono's default: 0, 3 or 6 fractional digits, `Z`.
    #[projection(
        postgres = "replace(rpad((s.updated_at AT TIME ZONE 'UTC')::text, \
                    CASE WHEN length((s.updated_at AT TIME ZONE 'UTC')::text) > 23 THEN 26 \
                    WHEN length((s.updated_at AT TIME ZONE 'UTC')::text) > 19 THEN 23 ELSE 19 END, \
                    '0'), ' ', 'T') || 'Z'",
        sqlite = "replace(s.updated_at, '+00:00', 'Z')"
    )]
    updated_at: DateTime<Utc>,
    /// chrono's default for a naive timestamp: no zone.
    #[projection(
        postgres = "replace(rpad(s.local_at::text, CASE WHEN length(s.local_at::text) > 23 THEN 26 \
                    WHEN length(s.local_at::text) > 19 THEN 23 ELSE 19 END, '0'), ' ', 'T')",
        sqlite = "replace(s.local_at, ' ', 'T')"
    )]
    local_at: NaiveDateTime,
    /// A date prints the same everywhere.
    day: NaiveDate,
    /// A nested array of strings.
    #[projection(
        postgres = "(SELECT coalesce(array_agg(t.name ORDER BY t.id), '{}') FROM tag t \
                    WHERE t.sample_id = s.id)",
        sqlite = "json((SELECT json_group_array(name) FROM \
                  (SELECT t.name FROM tag t WHERE t.sample_id = s.id ORDER BY t.id)))"
    )]
    tag_names: Vec<String>,
    /// A nested array of objects.
    #[projection(
        postgres = r#"(SELECT coalesce(array_to_json(array_agg(c)), '[]') FROM
                    (SELECT t.id AS "id", t.name AS "name" FROM tag t WHERE t.sample_id = s.id
                     ORDER BY t.id) c)"#,
        sqlite = "json((SELECT json_group_array(json_object('id', id, 'name', name)) FROM \
                  (SELECT t.id, t.name FROM tag t WHERE t.sample_id = s.id ORDER BY t.id)))"
    )]
    tags: Vec<Tag>,
    /// A nested object, or `null`.
    #[projection(
        postgres = r#"(SELECT row_to_json(a) FROM (SELECT u.id AS "id", u.display_name AS "displayName"
                    FROM author u WHERE u.id = s.author_id) a)"#,
        sqlite = "(SELECT json_object('id', u.id, 'displayName', u.display_name) FROM author u \
                  WHERE u.id = s.author_id)"
    )]
    author: Option<Author>,
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn naive(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").unwrap()
}

fn samples() -> Vec<Sample> {
    let ada = Author {
        id: 1,
        display_name: "Ada \"the first\" Lovelace".into(),
    };
    vec![
        Sample {
            id: 1,
            small: i16::MIN,
            count: -7,
            label: "quote \" backslash \\ slash / newline \n return \r tab \t \u{8} \u{c} \
                    \u{1} \u{1f} del \u{7f}"
                .into(),
            note: Some("é 日本語 🎵 </script> \u{2028}".into()),
            flag: true,
            maybe_flag: Some(false),
            ratio: 0.1,
            amount: "12.50".into(),
            // Microseconds: the millisecond form truncates them.
            created_at: utc("2025-03-04T05:06:07.123999Z"),
            // No fractional second.
            updated_at: utc("2025-03-04T05:06:07Z"),
            local_at: naive("2025-03-04T05:06:07.5"),
            day: NaiveDate::from_ymd_opt(2024, 2, 29).unwrap(),
            tag_names: vec!["rust".into(), "say \"hi\"".into()],
            tags: vec![
                Tag {
                    id: 1,
                    name: "rust".into(),
                },
                Tag {
                    id: 2,
                    name: "say \"hi\"".into(),
                },
            ],
            author: Some(ada),
        },
        Sample {
            id: i64::MAX,
            small: 0,
            count: i32::MAX,
            label: String::new(),
            note: None,
            flag: false,
            maybe_flag: None,
            ratio: -2.5,
            amount: "-0.01".into(),
            // Written with a +05:30 offset: the instant is what counts.
            created_at: utc("2000-01-01T05:29:59.999999+05:30"),
            // Six fractional digits.
            updated_at: utc("2025-12-31T23:59:59.000001Z"),
            local_at: naive("1999-12-31T23:59:59"),
            day: NaiveDate::from_ymd_opt(1970, 1, 1).unwrap(),
            tag_names: vec![],
            tags: vec![],
            author: None,
        },
        Sample {
            id: 3,
            small: i16::MAX,
            count: 0,
            label: "plain".into(),
            note: Some(String::new()),
            flag: true,
            maybe_flag: Some(true),
            ratio: 123.456,
            amount: "1000000000.00".into(),
            // Exactly on the millisecond: three digits both ways.
            created_at: utc("2025-06-07T08:09:10.120Z"),
            updated_at: utc("2025-06-07T08:09:10.120Z"),
            local_at: naive("2025-06-07T08:09:10.123456"),
            day: NaiveDate::from_ymd_opt(2025, 6, 7).unwrap(),
            tag_names: vec!["solo".into()],
            tags: vec![Tag {
                id: 3,
                name: "solo".into(),
            }],
            author: Some(Author {
                id: 2,
                display_name: "Grace".into(),
            }),
        },
    ]
}

/// Create the tables (with `ddl`'s types for each backend) and insert [`samples`] through
/// sea-orm's value encoding.
async fn seed(db: &Db, ddl: &[&str]) {
    for sql in ddl {
        db.execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let backend = db.get_database_backend();
    let postgres = matches!(backend, sea_orm::DbBackend::Postgres);
    let run = |sql: String, values: Vec<Value>| {
        let statement = Statement::from_sql_and_values(backend, sql, values);
        async move { db.execute_raw(statement).await.unwrap() }
    };
    let p = |i: usize| {
        if postgres {
            format!("${i}")
        } else {
            "?".into()
        }
    };
    let amount = if postgres {
        format!("{}::numeric", p(9))
    } else {
        p(9)
    };
    for author in [(1, "Ada \"the first\" Lovelace"), (2, "Grace")] {
        run(
            format!(
                "INSERT INTO author (id, display_name) VALUES ({}, {})",
                p(1),
                p(2)
            ),
            vec![author.0.into(), author.1.into()],
        )
        .await;
    }
    for s in samples() {
        let author_id: Option<i64> = s.author.as_ref().map(|a| a.id);
        run(
            format!(
                "INSERT INTO sample (id, small, count, label, note, flag, maybe_flag, ratio, \
                 amount, created_at, updated_at, local_at, day, author_id) VALUES ({}, {}, {}, \
                 {}, {}, {}, {}, {}, {amount}, {}, {}, {}, {}, {})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(8),
                p(10),
                p(11),
                p(12),
                p(13),
                p(14)
            ),
            vec![
                s.id.into(),
                s.small.into(),
                s.count.into(),
                s.label.clone().into(),
                s.note.clone().into(),
                s.flag.into(),
                s.maybe_flag.into(),
                s.ratio.into(),
                s.amount.clone().into(),
                s.created_at.into(),
                s.updated_at.into(),
                s.local_at.into(),
                s.day.into(),
                author_id.into(),
            ],
        )
        .await;
        for tag in &s.tags {
            run(
                format!(
                    "INSERT INTO tag (id, sample_id, name) VALUES ({}, {}, {})",
                    p(1),
                    p(2),
                    p(3)
                ),
                vec![tag.id.into(), s.id.into(), tag.name.clone().into()],
            )
            .await;
        }
    }
}

async fn body(response: impl IntoResponse) -> String {
    let response = response.into_response();
    assert_eq!(response.status(), http::StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The body the model path sends for [`samples`] (in `id` order).
async fn model_body() -> String {
    let mut rows = samples();
    rows.sort_by_key(|s| s.id);
    body(ApiResponse::success(rows)).await
}

/// The pass-through body for `sql` (whose rows are the projection, in `id` order).
async fn passthrough_body(db: &Db, sql: String) -> String {
    let rows = JsonQuery::new(AssertSqlSafe(sql).into_sql_str())
        .trust_text()
        .list(db)
        .await
        .unwrap();
    body(rows).await
}

#[tokio::test]
async fn sqlite_projection_bytes_equal_the_model_path() {
    let (_dir, db) = common::sqlite("").await;
    seed(
        &db,
        &[
            "CREATE TABLE author (id INTEGER PRIMARY KEY, display_name TEXT NOT NULL)",
            "CREATE TABLE sample (id INTEGER PRIMARY KEY, small INTEGER NOT NULL, \
             count INTEGER NOT NULL, label TEXT NOT NULL, note TEXT, flag BOOLEAN NOT NULL, \
             maybe_flag BOOLEAN, ratio REAL NOT NULL, amount TEXT NOT NULL, \
             created_at TEXT NOT NULL, updated_at TEXT NOT NULL, local_at TEXT NOT NULL, \
             day TEXT NOT NULL, author_id INTEGER)",
            "CREATE TABLE tag (id INTEGER PRIMARY KEY, sample_id INTEGER NOT NULL, \
             name TEXT NOT NULL)",
        ],
    )
    .await;
    let sql = format!("SELECT {} FROM sample s ORDER BY s.id", Sample::SQLITE);
    assert_eq!(passthrough_body(&db, sql).await, model_body().await);
}

const POSTGRES_DDL: [&str; 3] = [
    "CREATE TABLE author (id BIGINT PRIMARY KEY, display_name TEXT NOT NULL)",
    "CREATE TABLE sample (id BIGINT PRIMARY KEY, small SMALLINT NOT NULL, count INTEGER NOT NULL, \
     label TEXT NOT NULL, note TEXT, flag BOOLEAN NOT NULL, maybe_flag BOOLEAN, \
     ratio DOUBLE PRECISION NOT NULL, amount NUMERIC(12, 2) NOT NULL, \
     created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, \
     local_at TIMESTAMP NOT NULL, day DATE NOT NULL, author_id BIGINT)",
    "CREATE TABLE tag (id BIGINT PRIMARY KEY, sample_id BIGINT NOT NULL, name TEXT NOT NULL)",
];

/// A fresh PostgreSQL database seeded with [`samples`], served by one pooled connection whose
/// session runs in a time zone other than UTC (with a half-hour offset; sqlx starts sessions
/// in UTC).
async fn postgres_seeded() -> Option<(chopin_core::testing::TestPostgres, Db)> {
    let (pg, db) = common::postgres("max_connections=1").await?;
    db.execute_unprepared("SET timezone = 'Asia/Kolkata'")
        .await
        .unwrap();
    seed(&db, &POSTGRES_DDL).await;
    Some((pg, db))
}

#[tokio::test]
async fn postgres_projection_bytes_equal_the_model_path() {
    let Some((_pg, db)) = postgres_seeded().await else {
        return;
    };
    let pool = db.postgres_pool().expect("a PostgreSQL pool");
    let zone: String = sea_orm::sqlx::query_scalar("SHOW timezone")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(zone, "Asia/Kolkata", "the session is not in UTC");

    let expected = model_body().await;
    // The expression form and the lateral form.
    let sql = format!(
        "SELECT {} FROM sample s ORDER BY s.id",
        Sample::POSTGRES_JSON
    );
    assert_eq!(passthrough_body(&db, sql).await, expected);
    let sql = format!(
        "SELECT row_to_json(j) FROM sample s CROSS JOIN LATERAL (SELECT {}) j ORDER BY s.id",
        Sample::POSTGRES_COLUMNS
    );
    assert_eq!(passthrough_body(&db, sql).await, expected);
    db.close().await;
}

/// What the derive used to generate, `json_build_object`, prints `" : "` and `", "`: the
/// same JSON value, not the same bytes. The same holds for `json_agg`.
#[tokio::test]
async fn postgres_json_build_object_is_not_byte_identical() {
    let Some((_pg, db)) = postgres_seeded().await else {
        return;
    };
    let object = {
        let mut sql = String::from("json_build_object(");
        for (i, (key, expr)) in Sample::FIELDS.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("'{key}', {expr}"));
        }
        sql + ")"
    };
    let sql = format!("SELECT {object} FROM sample s ORDER BY s.id");
    let built = passthrough_body(&db, sql).await;
    let expected = model_body().await;
    assert_ne!(built, expected);
    assert!(built.contains(r#"{"id" : 1, "small" : -32768"#), "{built}");
    let value = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    assert_eq!(value(&built), value(&expected));
    db.close().await;
}

/// Floats with an integral value (and very large or small ones) print differently: PostgreSQL
/// `1` / `1e+20` / `1e-07`, serde `1.0` / `1e20` / `1e-7`. Same numbers, other bytes.
#[tokio::test]
async fn postgres_whole_floats_differ_from_serde() {
    let Some((_pg, db)) = postgres_seeded().await else {
        return;
    };
    let sql = "SELECT row_to_json(j) FROM (SELECT 1.0::float8 AS a, 1e20::float8 AS b, \
               1e-7::float8 AS c) j"
        .to_string();
    let built = passthrough_body(&db, sql).await;
    assert_eq!(
        built,
        r#"{"success":true,"data":[{"a":1,"b":1e+20,"c":1e-07}]}"#
    );
    #[derive(Serialize)]
    struct Floats {
        a: f64,
        b: f64,
        c: f64,
    }
    let model = body(ApiResponse::success(vec![Floats {
        a: 1.0,
        b: 1e20,
        c: 1e-7,
    }]))
    .await;
    assert_ne!(built, model);
    db.close().await;
}
