//! Snapshot tests (insta) of everything `chopin new` and the generators write. A change to a
//! template shows up here as a reviewable diff (`cargo insta review`, or
//! `INSTA_UPDATE=always cargo test -p chopin-web-cli` to accept).

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use crate::generate;
use crate::model::parse_fields;
use crate::new::{self, NewOptions};
use crate::project::{CacheKind, DbKind, Project};
use crate::source::{ChopinSource, GitPin};
use crate::templates;

/// The checkout the snapshots depend on: a fixed path, so that no snapshot holds the path of
/// the machine's checkout (nor its commit).
fn snapshot_source() -> ChopinSource {
    ChopinSource::Checkout {
        root: PathBuf::from("/path/to/chopin"),
        commit: None,
    }
}

fn time(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

/// Every file under `root`, sorted, as (relative path, contents).
fn files(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn snapshot_name(prefix: &str, path: &str) -> String {
    format!("{prefix}__{}", path.replace(['/', '.'], "_"))
}

fn create(dir: &Path, db: DbKind, cache: CacheKind) {
    create_with(dir, db, cache, false);
}

fn create_with(dir: &Path, db: DbKind, cache: CacheKind, auth: bool) {
    let options = NewOptions {
        name: "demo-api".into(),
        db,
        cache,
        auth,
        path: Some(dir.to_path_buf()),
        source: snapshot_source(),
    };
    new::run(&options, time("2025-01-01 12:00:00")).unwrap();
}

#[test]
fn new_project_sqlite_memory() {
    let dir = tempfile::TempDir::new().unwrap();
    create(dir.path(), DbKind::Sqlite, CacheKind::Memory);
    let files = files(dir.path());
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    insta::assert_debug_snapshot!("new_sqlite_memory__file_list", names);
    for (path, text) in &files {
        insta::assert_snapshot!(snapshot_name("new_sqlite_memory", path), text);
    }
}

#[test]
fn new_project_postgres_tiered() {
    let dir = tempfile::TempDir::new().unwrap();
    create(dir.path(), DbKind::Postgres, CacheKind::Tiered);
    // Only the files whose contents depend on --db / --cache.
    for (path, text) in files(dir.path()) {
        if [
            "Cargo.toml",
            ".env.example",
            "README.md",
            "src/lib.rs",
            "tests/notes.rs",
        ]
        .contains(&path.as_str())
        {
            insta::assert_snapshot!(snapshot_name("new_postgres_tiered", &path), text);
        }
    }
}

#[test]
fn new_project_sqlite_memory_auth() {
    let dir = tempfile::TempDir::new().unwrap();
    create_with(dir.path(), DbKind::Sqlite, CacheKind::Memory, true);
    // Only the files whose contents depend on --auth.
    for (path, text) in files(dir.path()) {
        if [
            "Cargo.toml",
            ".env.example",
            "README.md",
            "src/lib.rs",
            "src/api/notes.rs",
            "tests/notes.rs",
            "tests/auth.rs",
        ]
        .contains(&path.as_str())
        {
            insta::assert_snapshot!(snapshot_name("new_sqlite_memory_auth", &path), text);
        }
    }
    assert!(dir.path().join("tests/auth.rs").exists());
}

#[test]
fn generators_write_files_and_edit_idempotently() {
    let dir = tempfile::TempDir::new().unwrap();
    create(dir.path(), DbKind::Sqlite, CacheKind::Redis);
    let project = Project::find(dir.path()).unwrap();
    let before = files(dir.path());

    let tag = parse_fields(&[
        "name:string!^".into(),
        "weight:f64".into(),
        "seen_on:date".into(),
    ])
    .unwrap();
    let report = generate::model(&project, "Tag", &tag, time("2025-01-02 08:00:00")).unwrap();
    assert_eq!(
        report.created,
        [
            "src/entity/tag.rs",
            "src/migration/m20250102_080000_create_tags.rs"
        ]
    );
    assert_eq!(report.edited, ["src/entity/mod.rs", "src/migration/mod.rs"]);

    let comment = parse_fields(&[
        "body:text!".into(),
        "note:references".into(),
        "rating:i32".into(),
        "posted_at:datetime".into(),
    ])
    .unwrap();
    // Same second as the model: the migration is dated one second later so it sorts last.
    let report =
        generate::resource(&project, "Comment", &comment, time("2025-01-02 08:00:00")).unwrap();
    assert_eq!(
        report.created,
        [
            "src/entity/comment.rs",
            "src/migration/m20250102_080001_create_comments.rs",
            "src/api/comments.rs",
            "tests/comments.rs"
        ]
    );
    let report =
        generate::migration(&project, "add_tag_index", time("2025-01-03 09:30:00")).unwrap();
    assert_eq!(
        report.created,
        ["src/migration/m20250103_093000_add_tag_index.rs"]
    );

    for (path, text) in files(dir.path()) {
        if !before.iter().any(|(p, t)| *p == path && *t == text) {
            insta::assert_snapshot!(snapshot_name("generate", &path), text);
        }
    }

    // Never overwrite: a second run fails, names the file, and changes nothing.
    let snapshot = files(dir.path());
    let err = generate::model(&project, "Tag", &tag, time("2025-01-04 00:00:00")).unwrap_err();
    assert!(
        err.message.contains("src/entity/tag.rs already exists"),
        "{err}"
    );
    let err =
        generate::resource(&project, "Comment", &comment, time("2025-01-04 00:00:00")).unwrap_err();
    assert!(err.message.contains("already exists"), "{err}");
    assert_eq!(files(dir.path()), snapshot);

    // A reference to a model that does not exist is refused with the fix.
    let bad = parse_fields(&["ghost:references".into()]).unwrap();
    let err = generate::model(&project, "Haunt", &bad, time("2025-01-04 00:00:00")).unwrap_err();
    assert!(err.hint.unwrap().contains("chopin generate model Ghost"));
    assert_eq!(files(dir.path()), snapshot);

    // A removed marker: the generator refuses before writing anything.
    let mods = dir.path().join("src/entity/mod.rs");
    let text = std::fs::read_to_string(&mods).unwrap();
    std::fs::write(&mods, text.replace(generate::ENTITIES, "// gone")).unwrap();
    let err = generate::model(&project, "Label", &tag, time("2025-01-04 00:00:00")).unwrap_err();
    assert!(err.message.contains("marker"), "{err}");
    assert!(!dir.path().join("src/entity/label.rs").exists());
}

#[test]
fn two_references_to_one_model_and_chains() {
    let dir = tempfile::TempDir::new().unwrap();
    create(dir.path(), DbKind::Sqlite, CacheKind::Memory);
    let project = Project::find(dir.path()).unwrap();
    let user = parse_fields(&["email:string!^".into()]).unwrap();
    generate::model(&project, "Member", &user, time("2025-01-02 08:00:00")).unwrap();
    let before = files(dir.path());

    // Two references to `member`: relations and test helpers are named after the columns.
    let review = parse_fields(&[
        "author:references:member".into(),
        "reviewer:references:member".into(),
        "score:i32!".into(),
    ])
    .unwrap();
    generate::resource(&project, "Review", &review, time("2025-01-02 08:00:01")).unwrap();
    for (path, text) in files(dir.path()) {
        if path == "src/entity/review.rs" || path == "tests/reviews.rs" {
            insta::assert_snapshot!(snapshot_name("two_refs", &path), text);
        }
    }
    assert_ne!(files(dir.path()), before);

    // A resource referencing `review` (which references `member`): its tests could not
    // insert the chain, so it is refused and nothing is written.
    let snapshot = files(dir.path());
    let reply = parse_fields(&["review:references".into(), "body:text!".into()]).unwrap();
    let err =
        generate::resource(&project, "Reply", &reply, time("2025-01-02 08:00:02")).unwrap_err();
    assert!(err.message.contains("references another model"), "{err}");
    assert!(err.hint.unwrap().contains("chopin generate model"));
    assert_eq!(files(dir.path()), snapshot);
    // A model (no tests) may still form the chain.
    generate::model(&project, "Reply", &reply, time("2025-01-02 08:00:02")).unwrap();
}

/// In an auth project, resources record their owner: the column, its foreign key to the auth
/// users (the project migrates the auth tables first), the owner-or-admin check, and tests that
/// insert a referenced owned row as the signed-up account. A field named `owner_id` is
/// refused; a project from before `migrate()` gets the column without the foreign key.
#[test]
fn resources_of_an_auth_project_record_their_owner() {
    let dir = tempfile::TempDir::new().unwrap();
    create_with(dir.path(), DbKind::Sqlite, CacheKind::Memory, true);
    let project = Project::find(dir.path()).unwrap();
    let lib = std::fs::read_to_string(dir.path().join("src/lib.rs")).unwrap();
    let (auth_first, app_first) = (
        lib.find("AuthStore::new(db)").unwrap(),
        lib.find("migration::Migrator::up(db.conn(), None)")
            .unwrap(),
    );
    assert!(auth_first < app_first, "the auth tables are migrated first");
    let before = files(dir.path());

    let comment = parse_fields(&["body:text!".into(), "note:references".into()]).unwrap();
    generate::resource(&project, "Comment", &comment, time("2025-01-02 08:00:00")).unwrap();
    for (path, text) in files(dir.path()) {
        if !before.iter().any(|(p, t)| *p == path && *t == text) && !path.ends_with("mod.rs") {
            insta::assert_snapshot!(snapshot_name("owned", &path), text);
        }
    }

    let snapshot = files(dir.path());
    let owner = parse_fields(&["owner_id:i64!".into(), "body:text!".into()]).unwrap();
    let err =
        generate::resource(&project, "Memo", &owner, time("2025-01-02 08:00:01")).unwrap_err();
    assert!(err.message.contains("owner_id"), "{err}");
    assert!(err.hint.is_some());
    assert_eq!(files(dir.path()), snapshot);
    // A model has no owner: the name is free there.
    generate::model(&project, "Memo", &owner, time("2025-01-02 08:00:01")).unwrap();

    // A project whose lib.rs predates `migrate()` creates its tables before the auth tables:
    // the owner column comes without a foreign key, and the migration says why.
    std::fs::write(
        dir.path().join("src/lib.rs"),
        lib.replace("pub async fn migrate(", "pub async fn old_migrate("),
    )
    .unwrap();
    let task = parse_fields(&["title:string!".into()]).unwrap();
    let report = generate::resource(&project, "Task", &task, time("2025-01-02 08:00:02")).unwrap();
    let migration = std::fs::read_to_string(dir.path().join(&report.created[1])).unwrap();
    assert!(migration.contains("OwnerId"), "{migration}");
    assert!(migration.contains("It has no foreign key"), "{migration}");
    assert!(!migration.contains("chopin_auth_users\")"), "{migration}");
}

/// Every kind of source and every project option: each `Cargo.toml` is valid TOML whose only
/// Chopin dependency is `chopin-core` renamed from `chopin-web-core` (never a registry version,
/// which would be the other project's crate of that name), from the chosen path or git source.
#[test]
fn every_generated_manifest_depends_on_chopin_web_core_only() {
    let sources = [
        snapshot_source(),
        ChopinSource::Git {
            url: "https://example.com/chopin.git".into(),
            pin: None,
        },
        ChopinSource::Git {
            url: "https://example.com/chopin.git".into(),
            pin: Some(GitPin::Rev("0123abc".into())),
        },
        ChopinSource::Git {
            url: "https://example.com/chopin.git".into(),
            pin: Some(GitPin::Tag("v0.1.0".into())),
        },
    ];
    let mut checked = 0;
    for source in &sources {
        for db in [DbKind::Sqlite, DbKind::Postgres] {
            for cache in [CacheKind::Memory, CacheKind::Redis, CacheKind::Tiered] {
                for auth in [false, true] {
                    let options = NewOptions {
                        name: "demo-api".into(),
                        db,
                        cache,
                        auth,
                        path: None,
                        source: source.clone(),
                    };
                    let context = new::ProjectContext::new(&options).unwrap();
                    let files = templates::render_project(&context).unwrap();
                    let (_, manifest) = files.iter().find(|(p, _)| p == "Cargo.toml").unwrap();
                    check_manifest(manifest, source);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 48);
}

fn check_manifest(manifest: &str, source: &ChopinSource) {
    let value: toml::Table = toml::from_str(manifest).unwrap_or_else(|e| panic!("{e}\n{manifest}"));
    let mut chopin_deps = 0;
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(deps) = value.get(section).and_then(|d| d.as_table()) else {
            continue;
        };
        for (name, spec) in deps {
            let package = spec.get("package").and_then(|p| p.as_str()).unwrap_or(name);
            if !name.starts_with("chopin") && !package.starts_with("chopin") {
                continue;
            }
            assert_eq!(name, "chopin-core", "[{section}] {name}\n{manifest}");
            assert_eq!(package, "chopin-web-core", "[{section}] {name}\n{manifest}");
            assert!(spec.get("version").is_none(), "no registry version: {spec}");
            match source {
                ChopinSource::Checkout { .. } => {
                    assert_eq!(
                        spec["path"].as_str(),
                        Some("/path/to/chopin/chopin-core"),
                        "{spec}"
                    );
                }
                ChopinSource::Git { url, pin } => {
                    assert_eq!(spec["git"].as_str(), Some(url.as_str()), "{spec}");
                    let (rev, tag) = match pin {
                        Some(GitPin::Rev(r)) => (Some(r.as_str()), None),
                        Some(GitPin::Tag(t)) => (None, Some(t.as_str())),
                        None => (None, None),
                    };
                    assert_eq!(spec.get("rev").and_then(|v| v.as_str()), rev);
                    assert_eq!(spec.get("tag").and_then(|v| v.as_str()), tag);
                }
            }
            chopin_deps += 1;
        }
    }
    assert_eq!(
        chopin_deps, 2,
        "chopin-core in [dependencies] and [dev-dependencies]"
    );
    assert!(
        value.get("target").is_none(),
        "no target-specific dependencies to check"
    );
}
