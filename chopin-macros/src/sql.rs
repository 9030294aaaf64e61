//! The string logic of the `JsonProjection` derive, kept free of `proc_macro` types so that it
//! is unit-testable: key naming, quoting, escaping and building the SQL calls.

/// PostgreSQL functions take at most 100 arguments (`FUNC_MAX_ARGS`), so `json_build_object`
/// takes at most 50 key/value pairs. (SQLite's `json_object` allows at least 63.)
pub(crate) const MAX_FIELDS: usize = 50;

/// The camelCase of a field name, by serde's rule for `#[serde(rename_all = "camelCase")]`:
/// PascalCase first (drop `_`, upper-case the letter after it and the first letter), then
/// lower-case the first character. `created_at` → `createdAt`, `_draft` → `draft`.
pub(crate) fn camel_case(field: &str) -> String {
    let mut pascal = String::with_capacity(field.len());
    let mut capitalize = true;
    for ch in field.chars() {
        if ch == '_' {
            capitalize = true;
        } else if capitalize {
            pascal.push(ch.to_ascii_uppercase());
            capitalize = false;
        } else {
            pascal.push(ch);
        }
    }
    let mut chars = pascal.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => pascal,
    }
}

/// The camelCase of a field name by utoipa's rule (used by `ToSchema` for the property name).
/// It drops `_` and upper-cases the letter after it, but never touches the first letter, so it
/// differs from serde's for names that start with `_` or an upper-case letter.
pub(crate) fn utoipa_camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for ch in field.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.push(ch.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// A SQL string literal: `it's` → `'it''s'`.
pub(crate) fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A quoted SQL identifier: `created_at` → `"created_at"`, `a"b` → `"a""b"`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A column reference, qualified by `table` when there is one: `p."created_at"`.
pub(crate) fn column_ref(table: Option<&str>, column: &str) -> String {
    match table {
        Some(table) => format!("{table}.{}", quote_ident(column)),
        None => quote_ident(column),
    }
}

/// Whether `table` can be written unquoted in front of a column: one or more plain SQL
/// identifiers (`p`, `post`, `blog.post`) separated by dots.
pub(crate) fn is_plain_table_ref(table: &str) -> bool {
    table.split('.').all(|part| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    })
}

/// One projected field: its JSON key and the SQL expression computing it on each backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldSql {
    /// The JSON key (unescaped).
    pub key: String,
    /// The expression on PostgreSQL.
    pub postgres: String,
    /// The expression on SQLite.
    pub sqlite: String,
}

/// `function('key', expr, 'key2', expr2)`.
pub(crate) fn build_object<'a>(
    function: &str,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut sql = String::from(function);
    sql.push('(');
    for (i, (key, expr)) in pairs.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&sql_string(key));
        sql.push_str(", ");
        sql.push_str(expr);
    }
    sql.push(')');
    sql
}

/// PostgreSQL truncates identifiers, and so column aliases, to 63 bytes (`NAMEDATALEN - 1`):
/// a longer key would come out of `row_to_json` shortened.
pub(crate) const MAX_KEY_BYTES: usize = 63;

/// The alias of the derived table whose row [`row_to_json_select`] turns into JSON.
pub(crate) const ROW_ALIAS: &str = "j";

/// `expr AS "key", expr2 AS "key2"`: a select list whose column names are the JSON keys.
pub(crate) fn aliased_columns<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sql = String::new();
    for (i, (key, expr)) in pairs.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(expr);
        sql.push_str(" AS ");
        sql.push_str(&quote_ident(key));
    }
    sql
}

/// `(SELECT row_to_json(j) FROM (SELECT <columns>) j)`: one expression, usable wherever
/// `json_build_object(...)` was, that PostgreSQL evaluates with less CPU per row and that
/// prints compact JSON (`{"a":1}`, where `json_build_object` prints `{"a" : 1}`).
pub(crate) fn row_to_json_select(columns: &str) -> String {
    format!("(SELECT row_to_json({ROW_ALIAS}) FROM (SELECT {columns}) {ROW_ALIAS})")
}

/// The strings the derive emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProjectionSql {
    /// `(SELECT row_to_json(j) FROM (SELECT ... AS "key", ...) j)`.
    pub postgres_json: String,
    /// `... AS "key", ...`: the select list for `row_to_json` over a lateral sub-select.
    pub postgres_columns: String,
    /// `jsonb_build_object(...)`.
    pub postgres_jsonb: String,
    /// `json_object(...)`.
    pub sqlite: String,
}

impl ProjectionSql {
    /// The calls for `fields`, in order.
    pub(crate) fn new(fields: &[FieldSql]) -> Self {
        let postgres = || fields.iter().map(|f| (f.key.as_str(), f.postgres.as_str()));
        let postgres_columns = aliased_columns(postgres());
        ProjectionSql {
            postgres_json: row_to_json_select(&postgres_columns),
            postgres_columns,
            postgres_jsonb: build_object("jsonb_build_object", postgres()),
            sqlite: build_object(
                "json_object",
                fields.iter().map(|f| (f.key.as_str(), f.sqlite.as_str())),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_follows_serde() {
        let cases = [
            ("id", "id"),
            ("created_at", "createdAt"),
            ("author_user_id", "authorUserId"),
            ("field_1", "field1"),
            ("a__b", "aB"),
            ("trailing_", "trailing"),
            ("_draft", "draft"),
            ("__x", "x"),
            ("Upper_case", "upperCase"),
            ("already_camelCase", "alreadyCamelCase"),
            ("type", "type"),
            ("x", "x"),
            ("", ""),
        ];
        for (field, expected) in cases {
            assert_eq!(camel_case(field), expected, "camel_case({field:?})");
        }
    }

    #[test]
    fn utoipa_rule_differs_only_at_the_first_letter() {
        assert_eq!(utoipa_camel_case("created_at"), "createdAt");
        assert_eq!(utoipa_camel_case("a__b"), "aB");
        assert_eq!(utoipa_camel_case("field_1"), "field1");
        assert_eq!(utoipa_camel_case("_draft"), "Draft");
        assert_eq!(utoipa_camel_case("Upper_case"), "UpperCase");
        for field in ["id", "created_at", "a_b_c", "x1_y2", "trailing_"] {
            assert_eq!(camel_case(field), utoipa_camel_case(field), "{field}");
        }
    }

    #[test]
    fn string_literals_double_single_quotes() {
        assert_eq!(sql_string("createdAt"), "'createdAt'");
        assert_eq!(sql_string("it's"), "'it''s'");
        assert_eq!(sql_string("''"), "''''''");
        assert_eq!(sql_string(r#"a"b\c"#), r#"'a"b\c'"#);
        assert_eq!(sql_string(""), "''");
    }

    #[test]
    fn identifiers_double_double_quotes() {
        assert_eq!(quote_ident("created_at"), r#""created_at""#);
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_ident("it's"), r#""it's""#);
        assert_eq!(quote_ident("CamelCol"), r#""CamelCol""#);
    }

    #[test]
    fn column_refs_are_qualified_by_the_table() {
        assert_eq!(column_ref(None, "id"), r#""id""#);
        assert_eq!(column_ref(Some("p"), "created_at"), r#"p."created_at""#);
        assert_eq!(column_ref(Some("blog.post"), "a\"b"), r#"blog.post."a""b""#);
    }

    #[test]
    fn plain_table_refs() {
        for ok in ["p", "post", "_t", "blog.post", "t1", "a$b"] {
            assert!(is_plain_table_ref(ok), "{ok}");
        }
        for bad in [
            "", " ", "1p", "p.", ".p", "p q", "\"p\"", "p;DROP", "p--", "a..b", "é",
        ] {
            assert!(!is_plain_table_ref(bad), "{bad}");
        }
    }

    #[test]
    fn objects_are_built_in_order() {
        assert_eq!(
            build_object(
                "json_build_object",
                [("id", "\"id\""), ("createdAt", "\"created_at\"")]
            ),
            r#"json_build_object('id', "id", 'createdAt', "created_at")"#
        );
        assert_eq!(
            build_object("json_object", [("it's", "1")]),
            "json_object('it''s', 1)"
        );
    }

    #[test]
    fn aliases_are_quoted_identifiers() {
        assert_eq!(
            aliased_columns([("it's", "1"), ("a\"b", "x.\"y\"")]),
            r#"1 AS "it's", x."y" AS "a""b""#
        );
        assert_eq!(
            row_to_json_select(r#"1 AS "id""#),
            r#"(SELECT row_to_json(j) FROM (SELECT 1 AS "id") j)"#
        );
    }

    #[test]
    fn projection_uses_each_backends_expression() {
        let fields = [
            FieldSql {
                key: "id".into(),
                postgres: column_ref(Some("p"), "id"),
                sqlite: column_ref(Some("p"), "id"),
            },
            FieldSql {
                key: "published".into(),
                postgres: "p.published".into(),
                sqlite: "json(iif(p.published, 'true', 'false'))".into(),
            },
        ];
        let sql = ProjectionSql::new(&fields);
        assert_eq!(
            sql.postgres_json,
            r#"(SELECT row_to_json(j) FROM (SELECT p."id" AS "id", p.published AS "published") j)"#
        );
        assert_eq!(
            sql.postgres_columns,
            r#"p."id" AS "id", p.published AS "published""#
        );
        assert_eq!(
            sql.postgres_jsonb,
            r#"jsonb_build_object('id', p."id", 'published', p.published)"#
        );
        assert_eq!(
            sql.sqlite,
            r#"json_object('id', p."id", 'published', json(iif(p.published, 'true', 'false')))"#
        );
    }
}
