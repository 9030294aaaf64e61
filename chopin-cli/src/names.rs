//! Names: project names, Rust identifiers, table names.

use heck::{ToLowerCamelCase, ToSnakeCase, ToTitleCase, ToUpperCamelCase};

use crate::output::{CliError, CliResult};

/// Rust keywords (strict and reserved, 2024 edition): not usable as crate, module or field
/// names.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Crate names that would clash with the standard library, Chopin's own crates, or the
/// generated project's dependencies (a package named like a dependency cannot depend on it).
const RESERVED_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "chopin",
    "chopin_core",
    "chopin_macros",
    "chopin_cli",
    "chopin_web_core",
    "chopin_web_macros",
    "chopin_web_cli",
    "axum",
    "chrono",
    "sea_orm",
    "sea_orm_migration",
    "serde",
    "serde_json",
    "thiserror",
    "tokio",
    "tracing",
    "utoipa",
    "validator",
    "tempfile",
];

/// Names Cargo refuses for a binary target (they are directories of the target folder).
const RESERVED_BINARIES: &[&str] = &["deps", "build", "examples", "incremental"];

/// The names derived from a project name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectNames {
    /// The package name, as given (`my-api`).
    pub package: String,
    /// The crate name used in Rust paths (`my_api`).
    pub crate_name: String,
    /// A human title (`My Api`).
    pub title: String,
}

/// Check a project name: lowercase ASCII letters, digits, `-` and `_`, starting with a
/// letter (the crate name must be snake_case, or the project's own lints fail); not a Rust
/// keyword, a name Cargo refuses for a binary, or the name of a crate the project uses.
pub fn project_names(name: &str) -> CliResult<ProjectNames> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        let suggestion = name.to_snake_case().replace('_', "-");
        return Err(
            CliError::new(format!("`{name}` is not a valid project name")).hint(format!(
                "use lowercase ASCII letters, digits, `-` and `_`, starting with a letter (for example `{}`)",
                if suggestion.is_empty() { "my-api" } else { &suggestion }
            )),
        );
    }
    let crate_name = name.replace('-', "_");
    if KEYWORDS.contains(&crate_name.as_str())
        || RESERVED_CRATES.contains(&crate_name.as_str())
        || RESERVED_BINARIES.contains(&name)
    {
        return Err(
            CliError::new(format!(
                "`{name}` is reserved: a Rust keyword, a directory Cargo uses, or a crate the project depends on"
            ))
                .hint("pick another name, for example `{name}-api`".replace("{name}", name)),
        );
    }
    Ok(ProjectNames {
        package: name.to_string(),
        crate_name,
        title: name.to_title_case(),
    })
}

/// The names derived from a model name such as `BlogPost`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelNames {
    /// `BlogPost`: the struct prefix.
    pub pascal: String,
    /// `blog_post`: the entity module.
    pub module: String,
    /// `blog_posts`: the table, the API path segment and the resource module.
    pub table: String,
    /// `BlogPosts`: the migration's identifier enum.
    pub iden: String,
    /// `blog post`: in sentences.
    pub snake_spaced: String,
    /// `blog posts`: in sentences.
    pub plural_spaced: String,
    /// `a` or `an`, for `snake_spaced`.
    pub article: String,
}

/// Check and expand a model name (`Post`, `BlogPost`, `blog_post`).
pub fn model_names(name: &str) -> CliResult<ModelNames> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(CliError::new(format!("`{name}` is not a valid model name"))
            .hint("use a singular name in CamelCase, for example `Post` or `BlogPost`"));
    }
    let module = name.to_snake_case();
    if KEYWORDS.contains(&module.as_str()) || module == "mod" {
        return Err(CliError::new(format!("`{name}` is a Rust keyword"))
            .hint("pick another name for the model"));
    }
    let table = pluralize(&module);
    if KEYWORDS.contains(&table.as_str()) {
        return Err(CliError::new(format!(
            "`{name}` would get the table and module name `{table}`, a Rust keyword"
        ))
        .hint("pick a longer, more descriptive model name"));
    }
    if table == module {
        return Err(CliError::new(format!(
            "`{name}` looks plural: its table name would be `{table}` too"
        ))
        .hint("give the singular name, for example `Post` (table `posts`)"));
    }
    let snake_spaced = module.replace('_', " ");
    let article = if snake_spaced.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    Ok(ModelNames {
        pascal: module.to_upper_camel_case(),
        iden: table.to_upper_camel_case(),
        plural_spaced: table.replace('_', " "),
        snake_spaced,
        article: article.to_string(),
        module,
        table,
    })
}

/// English plural of the last word of a snake_case name (`category` → `categories`,
/// `box` → `boxes`, `post` → `posts`). Names that already end in `s` are returned unchanged,
/// which [`model_names`] reports as a plural.
pub fn pluralize(snake: &str) -> String {
    let ends_vowel_y = |s: &str| {
        s.len() >= 2 && s.ends_with('y') && "aeiou".contains(&s[s.len() - 2..s.len() - 1])
    };
    if snake.ends_with('s') && !snake.ends_with("ss") && !snake.ends_with("us") {
        snake.to_string()
    } else if snake.ends_with('y') && !ends_vowel_y(snake) {
        format!("{}ies", &snake[..snake.len() - 1])
    } else if snake.ends_with("ss")
        || snake.ends_with("us")
        || snake.ends_with('x')
        || snake.ends_with('z')
        || snake.ends_with("ch")
        || snake.ends_with("sh")
    {
        format!("{snake}es")
    } else {
        format!("{snake}s")
    }
}

/// Check a field or migration name: snake_case ASCII, starting with a letter, not a keyword.
pub fn snake_ident(name: &str, what: &str) -> CliResult<String> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(
            CliError::new(format!("`{name}` is not a valid {what} name")).hint(format!(
                "use snake_case: lowercase letters, digits and `_`, starting with a letter (`{}`)",
                name.to_snake_case()
            )),
        );
    }
    if KEYWORDS.contains(&name) {
        return Err(
            CliError::new(format!("`{name}` is a Rust keyword")).hint(format!(
                "pick another {what} name, for example `{name}_value`"
            )),
        );
    }
    Ok(name.to_string())
}

/// Check a column name beyond [`snake_ident`]: the migration names each column by an
/// UpperCamelCase identifier that sea-query turns back into snake_case, so the name must
/// survive that round trip (`line_2` becomes `Line2`, read back as `line2`), and `table` is
/// the identifier of the table itself.
pub fn column_ident(name: &str) -> CliResult<String> {
    let name = snake_ident(name, "field")?;
    if name == "table" {
        return Err(CliError::new("a field cannot be named `table`: the migration uses that identifier for the table itself")
            .hint("pick a more specific name, for example `table_name` or `table_number`"));
    }
    let round_trip = pascal(&name).to_snake_case();
    if round_trip != name {
        return Err(CliError::new(format!(
            "field `{name}` would be created as column `{round_trip}`: the migration's identifier `{}` reads back that way",
            pascal(&name)
        ))
        .hint(format!(
            "name it `{round_trip}` instead (no `_` before a digit, no doubled or trailing `_`)"
        )));
    }
    Ok(name)
}

/// `lowerCamelCase` of a snake_case name: the JSON key of a field.
pub fn json_name(snake: &str) -> String {
    snake.to_lower_camel_case()
}

/// `UpperCamelCase` of a snake_case name.
pub fn pascal(snake: &str) -> String {
    snake.to_upper_camel_case()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_checked_and_expanded() {
        let n = project_names("my-api").unwrap();
        assert_eq!(n.crate_name, "my_api");
        assert_eq!(n.title, "My Api");
        assert_eq!(project_names("api2-v3_x").unwrap().crate_name, "api2_v3_x");
        for bad in [
            "",
            "1api",
            "my api",
            "my/api",
            "ü",
            "test",
            "std",
            "type",
            "chopin-core",
            "chopin-web-core",
            "chopin_web_macros",
            "chopin-web-cli",
            "MyApi",
            "my-Api",
            "deps",
            "build",
            "examples",
            "incremental",
            "axum",
            "tokio",
            "serde",
            "sea-orm",
            "sea_orm_migration",
        ] {
            let err = project_names(bad).unwrap_err();
            assert!(err.hint.is_some(), "{bad}: {err}");
        }
        let hint = project_names("MyApi").unwrap_err().hint.unwrap();
        assert!(hint.contains("`my-api`"), "{hint}");
    }

    #[test]
    fn model_names_expand() {
        let n = model_names("BlogPost").unwrap();
        assert_eq!(
            (
                n.pascal.as_str(),
                n.module.as_str(),
                n.table.as_str(),
                n.iden.as_str()
            ),
            ("BlogPost", "blog_post", "blog_posts", "BlogPosts")
        );
        assert_eq!(n.snake_spaced, "blog post");
        assert_eq!(n.article, "a");
        assert_eq!(model_names("item").unwrap().pascal, "Item");
        assert_eq!(model_names("Order").unwrap().article, "an");
        assert!(model_names("Posts").is_err());
        assert!(model_names("Blog-Post").is_err());
        assert!(model_names("Type").is_err());
        // The table (and resource module) would be a keyword.
        let err = model_names("A").unwrap_err();
        assert!(err.message.contains("`as`"), "{err}");
    }

    #[test]
    fn plurals() {
        for (one, many) in [
            ("post", "posts"),
            ("category", "categories"),
            ("day", "days"),
            ("box", "boxes"),
            ("address", "addresses"),
            ("status", "statuses"),
            ("match", "matches"),
            ("blog_entry", "blog_entries"),
        ] {
            assert_eq!(pluralize(one), many);
        }
    }

    #[test]
    fn snake_identifiers() {
        assert_eq!(
            snake_ident("add_index_2", "migration").unwrap(),
            "add_index_2"
        );
        assert!(snake_ident("AddIndex", "migration").is_err());
        assert!(snake_ident("type", "field").is_err());
        assert!(snake_ident("", "field").is_err());
        assert_eq!(json_name("created_at"), "createdAt");
    }

    #[test]
    fn column_names_survive_the_migration_identifier() {
        assert_eq!(column_ident("line2").unwrap(), "line2");
        assert_eq!(column_ident("address_line").unwrap(), "address_line");
        for (bad, fix) in [("line_2", "line2"), ("a__b", "ab"), ("note_", "note")] {
            let err = column_ident(bad).unwrap_err();
            assert!(err.hint.unwrap().contains(&format!("`{fix}`")), "{bad}");
        }
        assert!(column_ident("table").unwrap_err().hint.is_some());
        assert!(column_ident("type").is_err());
    }
}
