//! `#[derive(JsonProjection)]`: the exact SQL it generates, and that SQL executed on a real
//! SQLite file and a real PostgreSQL server, whose JSON must deserialize into the struct and
//! carry exactly the properties of the struct's utoipa `ToSchema` schema.

use std::collections::{BTreeSet, HashMap};

use chopin_core::Config;
use chopin_core::db::Db;
use chopin_core::passthrough::JsonProjection;
use chopin_core::testing::TestPostgres;
use sea_orm::ConnectionTrait;
use sea_orm::sqlx::{self, AssertSqlSafe};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A post with one of each kind of field.
#[derive(Debug, Clone, PartialEq, JsonProjection, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[projection(table = "p")]
struct Post {
    id: i64,
    title: String,
    /// Renamed by serde: the key is `body`, the column stays `body_text`.
    #[serde(rename = "body")]
    body_text: Option<String>,
    created_at: String,
    /// SQLite has no booleans: one expression per backend.
    #[projection(
        postgres = "p.published",
        sqlite = "json(iif(p.published, 'true', 'false'))"
    )]
    published: bool,
    rating: Option<f64>,
    /// A column whose name needs quoting (and contains a double quote).
    #[projection(column = "Odd\"Col")]
    odd: String,
    /// A nested array from a subquery.
    #[projection(
        postgres = "(SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]') FROM tag t \
                    WHERE t.post_id = p.id)",
        sqlite = "json((SELECT json_group_array(name) FROM \
                  (SELECT t.name FROM tag t WHERE t.post_id = p.id ORDER BY t.name)))"
    )]
    tags: Vec<String>,
    /// One backend-neutral expression.
    #[projection(sql = "upper(p.title)")]
    shout: String,
    /// A key with a single quote in it.
    #[serde(rename = "it's")]
    #[projection(sql = "p.id * 2")]
    doubled: i64,
    /// Not in the response, not in the schema.
    #[serde(skip)]
    cache: Option<String>,
}

const POST_KEYS: [&str; 10] = [
    "id",
    "title",
    "body",
    "createdAt",
    "published",
    "rating",
    "odd",
    "tags",
    "shout",
    "it's",
];

/// Plain columns, no table.
#[derive(Debug, PartialEq, JsonProjection, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Author {
    id: i64,
    display_name: String,
    #[projection(column = "email_address")]
    email: String,
    r#type: String,
}

/// Lifetime parameters are allowed.
#[derive(JsonProjection, Serialize)]
#[serde(rename_all = "camelCase")]
struct Borrowed<'a> {
    user_name: &'a str,
}

mod reexported {
    pub use chopin_core as chopin;
}

/// `crate = "..."` finds chopin-core under another path.
#[derive(JsonProjection, Serialize)]
#[serde(rename_all = "camelCase")]
#[projection(crate = "crate::reexported::chopin", table = "blog.post")]
struct Renamed {
    the_id: i64,
}

#[test]
fn lifetimes_and_crate_path() {
    assert_eq!(
        <Borrowed<'static> as JsonProjection>::SQLITE,
        r#"json_object('userName', "user_name")"#
    );
    assert_eq!(
        Renamed::POSTGRES_JSONB,
        r#"jsonb_build_object('theId', blog.post."the_id")"#
    );
}

#[test]
fn plain_columns_are_quoted_and_keys_camel_cased() {
    assert_eq!(
        Author::FIELDS,
        &[
            ("id", r#""id""#),
            ("displayName", r#""display_name""#),
            ("email", r#""email_address""#),
            ("type", r#""type""#),
        ]
    );
    assert_eq!(Author::SQLITE_FIELDS, Author::FIELDS);
    assert_eq!(
        Author::POSTGRES_COLUMNS,
        r#""id" AS "id", "display_name" AS "displayName", "email_address" AS "email", "type" AS "type""#
    );
    assert_eq!(
        Author::POSTGRES_JSON,
        format!(
            "(SELECT row_to_json(j) FROM (SELECT {}) j)",
            Author::POSTGRES_COLUMNS
        )
    );
    assert_eq!(
        Author::POSTGRES_JSONB,
        r#"jsonb_build_object('id', "id", 'displayName', "display_name", 'email', "email_address", 'type', "type")"#
    );
    assert_eq!(
        Author::SQLITE,
        r#"json_object('id', "id", 'displayName', "display_name", 'email', "email_address", 'type', "type")"#
    );
}

const POST_TAGS_PG: &str =
    "(SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]') FROM tag t WHERE t.post_id = p.id)";
const POST_TAGS_SQLITE: &str = "json((SELECT json_group_array(name) FROM (SELECT t.name FROM tag t WHERE t.post_id = p.id ORDER BY t.name)))";

#[test]
fn table_qualification_overrides_rename_and_skip() {
    let common_head = [
        ("id", r#"p."id""#),
        ("title", r#"p."title""#),
        ("body", r#"p."body_text""#),
        ("createdAt", r#"p."created_at""#),
    ];
    let common_tail = [("rating", r#"p."rating""#), ("odd", r#"p."Odd""Col""#)];
    let mut postgres = common_head.to_vec();
    postgres.push(("published", "p.published"));
    postgres.extend(common_tail);
    postgres.extend([
        ("tags", POST_TAGS_PG),
        ("shout", "upper(p.title)"),
        ("it's", "p.id * 2"),
    ]);
    let mut sqlite = common_head.to_vec();
    sqlite.push(("published", "json(iif(p.published, 'true', 'false'))"));
    sqlite.extend(common_tail);
    sqlite.extend([
        ("tags", POST_TAGS_SQLITE),
        ("shout", "upper(p.title)"),
        ("it's", "p.id * 2"),
    ]);
    assert_eq!(Post::FIELDS, postgres.as_slice());
    assert_eq!(Post::SQLITE_FIELDS, sqlite.as_slice());
    let keys: Vec<&str> = Post::FIELDS.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, POST_KEYS, "declaration order, skipped field left out");

    let pg_args = format!(
        r#"'id', p."id", 'title', p."title", 'body', p."body_text", 'createdAt', p."created_at", 'published', p.published, 'rating', p."rating", 'odd', p."Odd""Col", 'tags', {POST_TAGS_PG}, 'shout', upper(p.title), 'it''s', p.id * 2"#
    );
    let pg_columns = format!(
        r#"p."id" AS "id", p."title" AS "title", p."body_text" AS "body", p."created_at" AS "createdAt", p.published AS "published", p."rating" AS "rating", p."Odd""Col" AS "odd", {POST_TAGS_PG} AS "tags", upper(p.title) AS "shout", p.id * 2 AS "it's""#
    );
    assert_eq!(Post::POSTGRES_COLUMNS, pg_columns);
    assert_eq!(
        Post::POSTGRES_JSON,
        format!("(SELECT row_to_json(j) FROM (SELECT {pg_columns}) j)")
    );
    assert_eq!(
        Post::POSTGRES_JSONB,
        format!("jsonb_build_object({pg_args})")
    );
    assert_eq!(
        Post::SQLITE,
        format!(
            r#"json_object('id', p."id", 'title', p."title", 'body', p."body_text", 'createdAt', p."created_at", 'published', json(iif(p.published, 'true', 'false')), 'rating', p."rating", 'odd', p."Odd""Col", 'tags', {POST_TAGS_SQLITE}, 'shout', upper(p.title), 'it''s', p.id * 2)"#
        )
    );
}

#[test]
fn the_constants_are_usable_in_const_context() {
    const SQL: &str = Post::SQLITE;
    const N: usize = Post::FIELDS.len();
    assert!(SQL.starts_with("json_object('id', "));
    assert_eq!(N, POST_KEYS.len());
}

// ---------------------------------------------------------------------------------------------
// Executed on real databases.

/// The property names of `T`'s OpenAPI schema.
fn schema_properties<T: utoipa::PartialSchema>() -> BTreeSet<String> {
    let schema = serde_json::to_value(T::schema()).expect("the schema serializes");
    schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema without properties: {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn expected_posts() -> Vec<Post> {
    vec![
        Post {
            id: 1,
            title: "Hello".into(),
            body_text: Some("it's \"quoted\"".into()),
            created_at: "2024-05-01T10:00:00Z".into(),
            published: true,
            rating: Some(4.5),
            odd: "odd one".into(),
            tags: vec!["rust".into(), "sql".into()],
            shout: "HELLO".into(),
            doubled: 2,
            cache: None,
        },
        Post {
            id: 2,
            title: "Draft".into(),
            body_text: None,
            created_at: "2024-05-02T11:30:00Z".into(),
            published: false,
            rating: None,
            odd: "".into(),
            tags: vec![],
            shout: "DRAFT".into(),
            doubled: 4,
            cache: None,
        },
    ]
}

const SCHEMA_SQL: [&str; 2] = [
    r#"CREATE TABLE post (
        id BIGINT PRIMARY KEY,
        title TEXT NOT NULL,
        body_text TEXT,
        created_at TEXT NOT NULL,
        published BOOLEAN NOT NULL,
        rating DOUBLE PRECISION,
        "Odd""Col" TEXT NOT NULL
    )"#,
    "CREATE TABLE tag (post_id BIGINT NOT NULL REFERENCES post (id), name TEXT NOT NULL)",
];

const DATA_SQL: [&str; 4] = [
    r#"INSERT INTO post (id, title, body_text, created_at, published, rating, "Odd""Col")
       VALUES (1, 'Hello', 'it''s "quoted"', '2024-05-01T10:00:00Z', TRUE, 4.5, 'odd one')"#,
    r#"INSERT INTO post (id, title, body_text, created_at, published, rating, "Odd""Col")
       VALUES (2, 'Draft', NULL, '2024-05-02T11:30:00Z', FALSE, NULL, '')"#,
    "INSERT INTO tag (post_id, name) VALUES (1, 'sql')",
    "INSERT INTO tag (post_id, name) VALUES (1, 'rust')",
];

async fn create_tables(db: &Db) {
    for sql in SCHEMA_SQL.iter().chain(&DATA_SQL) {
        db.execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Each row's JSON text must deserialize into the expected post, carry exactly the schema's
/// properties, and (when `ordered`) list the keys in declaration order.
fn check_rows(backend: &str, rows: &[String], ordered: bool) {
    let expected = expected_posts();
    assert_eq!(rows.len(), expected.len(), "{backend}: {rows:?}");
    let properties = schema_properties::<Post>();
    assert_eq!(
        properties,
        POST_KEYS.iter().map(|k| k.to_string()).collect(),
        "the schema documents the projection's keys"
    );
    for (text, want) in rows.iter().zip(&expected) {
        let post: Post = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{backend}: {text} does not deserialize: {e}"));
        assert_eq!(&post, want, "{backend}: {text}");
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let keys: BTreeSet<String> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, properties, "{backend}: keys of {text}");
        if ordered {
            let positions: Vec<usize> = POST_KEYS
                .iter()
                .map(|k| {
                    let needle = serde_json::to_string(k).unwrap() + ":";
                    let compact = text.replace("\" : ", "\":").replace("\": ", "\":");
                    compact
                        .find(&needle)
                        .unwrap_or_else(|| panic!("{backend}: no key {k} in {text}"))
                })
                .collect();
            assert!(
                positions.is_sorted(),
                "{backend}: keys out of declaration order in {text}"
            );
        }
    }
}

fn config(url: &str) -> Config {
    let vars = HashMap::from([("DATABASE_URL".to_string(), url.to_string())]);
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test config is valid")
}

#[tokio::test]
async fn sqlite_builds_the_struct_json() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("projection.db").display());
    let db = Db::connect(&config(&url).database).await.unwrap();
    create_tables(&db).await;
    let pool = db.sqlite_pool().expect("a SQLite pool");

    let sql = format!("SELECT {} FROM post p ORDER BY p.id", Post::SQLITE);
    let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap();
    check_rows("sqlite", &rows, true);

    let sql = format!("SELECT {} FROM author", Author::SQLITE);
    db.execute_unprepared(
        "CREATE TABLE author (id BIGINT, display_name TEXT, email_address TEXT, type TEXT);
         INSERT INTO author VALUES (7, 'Ada', 'ada@example.com', 'admin');",
    )
    .await
    .unwrap();
    let row: String = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap();
    let author: Author = serde_json::from_str(&row).unwrap();
    assert_eq!(
        author,
        Author {
            id: 7,
            display_name: "Ada".into(),
            email: "ada@example.com".into(),
            r#type: "admin".into(),
        }
    );
}

#[tokio::test]
async fn postgres_builds_the_struct_json() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let db = Db::connect(&config(pg.url()).database).await.unwrap();
    create_tables(&db).await;
    let pool = db.postgres_pool().expect("a PostgreSQL pool");

    let sql = format!(
        "SELECT {}::text FROM post p ORDER BY p.id",
        Post::POSTGRES_JSON
    );
    let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap();
    check_rows("postgres json", &rows, true);

    // The lateral form gives the same bytes.
    let sql = format!(
        "SELECT row_to_json(j)::text FROM post p CROSS JOIN LATERAL (SELECT {}) j ORDER BY p.id",
        Post::POSTGRES_COLUMNS
    );
    let lateral: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(lateral, rows);

    // An outer table aliased like the sub-select (`j`) still feeds the projection's columns.
    db.execute_unprepared(
        "CREATE TABLE author (id BIGINT, display_name TEXT, email_address TEXT, type TEXT);
         INSERT INTO author VALUES (7, 'Ada', 'ada@example.com', 'admin');",
    )
    .await
    .unwrap();
    let sql = format!("SELECT {}::text FROM author j", Author::POSTGRES_JSON);
    let author: String = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        author,
        r#"{"id":7,"displayName":"Ada","email":"ada@example.com","type":"admin"}"#
    );

    // jsonb stores keys sorted, so only the set is checked.
    let sql = format!(
        "SELECT {}::text FROM post p ORDER BY p.id",
        Post::POSTGRES_JSONB
    );
    let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap();
    check_rows("postgres jsonb", &rows, false);

    // The column type is json / jsonb, as the pass-through path expects.
    let sql = format!(
        "SELECT pg_typeof({})::text, pg_typeof({})::text FROM post p LIMIT 1",
        Post::POSTGRES_JSON,
        Post::POSTGRES_JSONB
    );
    let types: (String, String) = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(types, ("json".to_string(), "jsonb".to_string()));
    db.close().await;
}
