//! `chopin db rebuild-views` as a user runs it: the real binary, in a folder whose `.env`
//! names the database (SQLite, a relative path) or with `DATABASE_URL` set (a fresh
//! PostgreSQL database), rebuilding the views that `TableView::create` registered — with no
//! application code.

use std::path::Path;
use std::process::Command;

use chopin_core::Config;
use chopin_core::db::Db;
use chopin_core::passthrough::{Freshness, KeyType, TableView};
use sea_orm::{ConnectionTrait, Statement};

fn view() -> TableView {
    TableView::with_documents(
        "tv_item",
        "items",
        "(SELECT row_to_json(j) FROM (SELECT items.id AS \"id\", items.name AS \"name\") j)",
        "json_object('id', items.id, 'name', items.name)",
    )
    .key("name", KeyType::Text)
    // No triggers: the documents go stale until the rebuild.
    .freshness(Freshness::WritePath)
}

async fn connect(url: &str) -> Db {
    let config = Config::from_lookup(|name| match name {
        "CHOPIN_ENV" => Some("test".into()),
        "DATABASE_URL" => Some(url.to_string()),
        _ => None,
    })
    .unwrap();
    Db::connect(&config.database).await.unwrap()
}

async fn seed(db: &Db) {
    db.execute_unprepared("CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL)")
        .await
        .unwrap();
    view().create(db).await.unwrap();
    for id in 1..=5 {
        db.execute_unprepared(&format!("INSERT INTO items VALUES ({id}, 'item {id}')"))
            .await
            .unwrap();
    }
}

async fn documents(db: &Db) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT CAST(data AS TEXT) FROM tv_item ORDER BY id",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.try_get_by_index(0).unwrap())
    .collect()
}

fn chopin(dir: &Path, args: &[&str], database_url: Option<&str>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chopin"));
    command
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("CHOPIN_ENV")
        .env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn rebuilds_sqlite_views_named_by_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "DATABASE_URL=sqlite://app.db\n").unwrap();
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let db = connect(&url).await;

    // Before any view exists: a clear error.
    let (ok, out) = chopin(dir.path(), &["db", "rebuild-views"], None);
    assert!(!ok, "{out}");
    assert!(out.contains("chopin_table_views"), "{out}");

    seed(&db).await;
    assert!(documents(&db).await.is_empty());
    let (ok, out) = chopin(dir.path(), &["db", "rebuild-views", "--batch", "2"], None);
    assert!(ok, "{out}");
    assert!(
        out.contains("tv_item: 5 documents written in 3 batch(es), 0 removed"),
        "{out}"
    );
    assert_eq!(documents(&db).await[4], r#"{"id":5,"name":"item 5"}"#);

    let (ok, out) = chopin(
        dir.path(),
        &["db", "rebuild-views", "--view", "tv_nope"],
        None,
    );
    assert!(!ok, "{out}");
    assert!(out.contains("tv_nope"), "{out}");
    db.close().await;
}

#[tokio::test]
async fn rebuilds_postgres_views() {
    let Some(pg) = chopin_core::testing::TestPostgres::create().await else {
        return;
    };
    let db = connect(pg.url()).await;
    seed(&db).await;
    db.execute_unprepared(
        "DELETE FROM items WHERE id = 5; UPDATE items SET name = 'x' WHERE id = 1",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = chopin(dir.path(), &["db", "rebuild-views"], Some(pg.url()));
    assert!(ok, "{out}");
    assert!(
        out.contains("tv_item: 4 documents written in 1 batch(es), 0 removed"),
        "{out}"
    );
    let docs = documents(&db).await;
    assert_eq!(docs.len(), 4);
    assert_eq!(docs[0], r#"{"id":1,"name":"x"}"#);
    db.close().await;
}
