//! Imports point down: every module of `chopin-core/src` may use modules on its own floor or
//! below, never above. The floors are the table in the "Floors" section of
//! `docs/architecture.md`, parsed here, so the doc and this check cannot disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Upward arrows that remain, each with its reason: `(file under src/, module it names, why)`.
/// Each entry must still happen — a fixed arrow fails the test until its entry is removed — so
/// this list only shrinks.
const ALLOWED_UPWARD: &[(&str, &str, &str)] = &[
    // The public path `chopin_core::cache::http::{ETagLayer, ResponseCacheLayer}` predates the
    // middleware folder: a `pub use` facade, no code of the store depends on the layers.
    (
        "cache/http/mod.rs",
        "middleware",
        "public re-export of the two HTTP-cache layers at their documented path",
    ),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `module → floor`, from the "Floors" table of docs/architecture.md.
fn floors() -> BTreeMap<String, u32> {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md");
    let doc = fs::read_to_string(&doc_path).expect("docs/architecture.md is readable");
    let section = doc
        .split("\n## Floors")
        .nth(1)
        .expect("docs/architecture.md has a `## Floors` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut floors = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| 0 ground | `config`, `json` |` → ["", "0 ground", "`config`, `json`", ""]
        if cells.len() < 4 {
            continue;
        }
        let Some(floor) = cells[1]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        for module in cells[2].split('`').skip(1).step_by(2) {
            let previous = floors.insert(module.to_string(), floor);
            assert!(
                previous.is_none(),
                "`{module}` is listed twice in the Floors table"
            );
        }
    }
    assert!(
        floors.len() > 10,
        "the Floors table of docs/architecture.md was not found or is nearly empty: {floors:?}"
    );
    floors
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file belongs to: its first path segment under src/ (`cache/http.rs` →
/// `cache`, `json.rs` → `json`, `lib.rs` → `lib`).
fn module_of(relative: &str) -> String {
    let first = relative.split('/').next().unwrap_or(relative);
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// Every top-level module a line of code names through `crate::` (`use crate::a::B`,
/// `crate::b::f()`, `use crate::{c, d::E}`). Comment lines, doc comments included, are skipped:
/// doc links may point anywhere.
fn crate_modules(line: &str) -> Vec<String> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    // A trailing comment is not code either.
    let code = code.split(" //").next().unwrap_or(code);
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        // `chopin_core::` or `$crate::` are not this crate's internal paths.
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or(group);
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    // Items of the crate root (`crate::ChopinError`, `crate::Config`) are re-exports: only
    // lowercase names are modules.
    found.retain(|name| name.starts_with(|c: char| c.is_ascii_lowercase()));
    found
}

#[test]
fn imports_point_down() {
    let floors = floors();
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();

    let allowed: BTreeSet<(&str, &str)> = ALLOWED_UPWARD.iter().map(|(f, m, _)| (*f, *m)).collect();
    let mut used_allowances = BTreeSet::new();
    let mut problems = Vec::new();

    for file in &files {
        let relative = file
            .strip_prefix(&src)
            .expect("under src/")
            .to_string_lossy()
            .replace('\\', "/");
        let module = module_of(&relative);
        let Some(&floor) = floors.get(&module) else {
            problems.push(format!(
                "{relative}: module `{module}` has no row in the Floors table of docs/architecture.md"
            ));
            continue;
        };
        let text = fs::read_to_string(file).expect("source file is readable");
        for (number, line) in text.lines().enumerate() {
            for target in crate_modules(line) {
                if target == module {
                    continue;
                }
                let Some(&target_floor) = floors.get(&target) else {
                    problems.push(format!(
                        "{relative}:{}: `crate::{target}` has no row in the Floors table",
                        number + 1
                    ));
                    continue;
                };
                if target_floor <= floor {
                    continue;
                }
                if allowed.contains(&(relative.as_str(), target.as_str())) {
                    used_allowances.insert((relative.clone(), target));
                    continue;
                }
                problems.push(format!(
                    "{relative}:{}: `{module}` (floor {floor}) uses `{target}` (floor {target_floor}), \
                     a module above it: {}",
                    number + 1,
                    line.trim()
                ));
            }
        }
    }

    for (file, target, why) in ALLOWED_UPWARD {
        if !used_allowances.contains(&(file.to_string(), target.to_string())) {
            problems.push(format!(
                "allow-list entry ({file} → {target}, {why}) no longer happens: remove it"
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "imports must point down (see the Floors section of docs/architecture.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_line_parser_finds_modules() {
    assert_eq!(crate_modules("use crate::error::ChopinError;"), ["error"]);
    assert_eq!(
        crate_modules("    use crate::{json, config::Config};"),
        ["json", "config"]
    );
    assert_eq!(crate_modules("let a = crate::auth::bearer(h);"), ["auth"]);
    assert_eq!(
        crate_modules("impl From<E> for crate::ChopinError {"),
        Vec::<String>::new()
    );
    assert_eq!(
        crate_modules("/// see [`x`](crate::cache::Cache)"),
        Vec::<String>::new()
    );
    assert_eq!(
        crate_modules("use chopin_core::cache::Cache;"),
        Vec::<String>::new()
    );
    assert_eq!(
        crate_modules("$crate::json::to_vec(x)"),
        Vec::<String>::new()
    );
}
