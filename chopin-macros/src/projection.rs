//! `#[derive(JsonProjection)]`: reading the struct and its attributes, then emitting the impl.

use std::collections::HashMap;

use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Data, DeriveInput, Expr, ExprLit, Field, Fields, GenericParam, Ident, Lit, LitStr,
    Meta, Token,
};

use crate::sql::{self, FieldSql, ProjectionSql};

/// The rename rule the derive requires, and why.
const RENAME_ALL_WHY: &str = "it keeps the JSON keys produced by the SQL, the serde view of the \
     struct and its utoipa `ToSchema` (OpenAPI) schema identical";

/// Collects errors so that one compilation reports all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Entry point: the impl, or every error found.
pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let ident = &input.ident;
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => fields,
            Fields::Unnamed(fields) => {
                return Err(syn::Error::new_spanned(
                    fields,
                    "JsonProjection needs a struct with named fields: the field names give the \
                     JSON keys and columns; a tuple struct has none",
                ));
            }
            Fields::Unit => {
                let semi = data.semi_token;
                return Err(syn::Error::new_spanned(
                    quote!(#ident #semi),
                    "JsonProjection needs a struct with named fields: a unit struct has nothing \
                     to project",
                ));
            }
        },
        Data::Enum(data) => {
            let enum_token = data.enum_token;
            return Err(syn::Error::new_spanned(
                quote!(#enum_token #ident),
                "JsonProjection can only be derived for structs with named fields, not enums: \
                 a SQL JSON projection builds one object with a fixed set of keys",
            ));
        }
        Data::Union(data) => {
            let union_token = data.union_token;
            return Err(syn::Error::new_spanned(
                quote!(#union_token #ident),
                "JsonProjection can only be derived for structs with named fields, not unions",
            ));
        }
    };

    let mut errors = Errors::default();

    let generic = input
        .generics
        .params
        .iter()
        .filter(|p| !matches!(p, GenericParam::Lifetime(_)))
        .collect::<Vec<_>>();
    if !generic.is_empty() {
        errors.spanned(
            &input.generics,
            "JsonProjection cannot be derived for a struct with type or const parameters: the \
             SQL projection is a constant and cannot depend on them; derive it on a concrete \
             struct (lifetime parameters are fine)",
        );
    }

    let container = Container::parse(input, &mut errors);

    if fields.named.is_empty() {
        errors.spanned(
            fields,
            "JsonProjection needs at least one field: a projection with no fields would be an \
             empty JSON object",
        );
    }

    let table = container.table.as_ref().map(LitStr::value);
    let mut projected: Vec<FieldSql> = Vec::new();
    let mut seen: HashMap<String, &Ident> = HashMap::new();
    for field in &fields.named {
        let Some(parsed) = FieldAttrs::parse(field, &mut errors) else {
            continue;
        };
        let Some(field_ident) = field.ident.as_ref() else {
            continue;
        };
        let name = field_ident.unraw().to_string();
        let key = match &parsed.rename {
            Some(rename) => {
                let key = rename.value();
                if key.is_empty() {
                    errors.spanned(rename, "the JSON key must not be empty");
                }
                key
            }
            None => {
                let serde_key = sql::camel_case(&name);
                let utoipa_key = sql::utoipa_camel_case(&name);
                if serde_key != utoipa_key {
                    errors.spanned(
                        field_ident,
                        format!(
                            "serde and utoipa disagree on the camelCase name of `{name}` (serde: \
                             `{serde_key}`, utoipa `ToSchema`: `{utoipa_key}`): add \
                             `#[serde(rename = \"...\")]` so that the SQL key, serde and the \
                             OpenAPI schema agree"
                        ),
                    );
                }
                serde_key
            }
        };
        if key.len() > sql::MAX_KEY_BYTES {
            let at = parsed
                .rename
                .as_ref()
                .map_or_else(|| field_ident.to_token_stream(), ToTokens::to_token_stream);
            errors.spanned(
                at,
                format!(
                    "the JSON key `{key}` is {} bytes long: PostgreSQL truncates identifiers, \
                     and so the column alias that names the key, to {} bytes; use a shorter \
                     `#[serde(rename = \"...\")]`",
                    key.len(),
                    sql::MAX_KEY_BYTES
                ),
            );
        }
        if let Some(previous) = seen.get(&key) {
            let at = parsed
                .rename
                .as_ref()
                .map_or_else(|| field_ident.to_token_stream(), ToTokens::to_token_stream);
            errors.spanned(
                at,
                format!(
                    "duplicate JSON key `{key}`: field `{previous}` already produces it; a JSON \
                     object must not repeat a key"
                ),
            );
        } else {
            seen.insert(key.clone(), field_ident);
        }
        let (postgres, sqlite) = match parsed.source {
            Source::Column(column) => {
                let column = column.map_or(name, |c| c.value());
                let expr = sql::column_ref(table.as_deref(), &column);
                (expr.clone(), expr)
            }
            Source::Sql(sql) => (sql.value(), sql.value()),
            Source::PerBackend { postgres, sqlite } => (postgres.value(), sqlite.value()),
        };
        projected.push(FieldSql {
            key,
            postgres,
            sqlite,
        });
    }

    if projected.len() > sql::MAX_FIELDS {
        errors.spanned(
            ident,
            format!(
                "JsonProjection supports at most {} projected fields, and `{ident}` has {}: \
                 PostgreSQL functions take at most 100 arguments, so `json_build_object` takes \
                 at most 50 key/value pairs; group some fields into a nested object with \
                 `#[projection(sql = \"...\")]`",
                sql::MAX_FIELDS,
                projected.len()
            ),
        );
    }

    errors.finish()?;

    let krate = container
        .krate
        .unwrap_or_else(|| syn::parse_quote!(::chopin_core));
    let calls = ProjectionSql::new(&projected);
    let postgres_fields = projected.iter().map(|f| {
        let (key, expr) = (&f.key, &f.postgres);
        quote!((#key, #expr))
    });
    let sqlite_fields = projected.iter().map(|f| {
        let (key, expr) = (&f.key, &f.sqlite);
        quote!((#key, #expr))
    });
    let ProjectionSql {
        postgres_json,
        postgres_columns,
        postgres_jsonb,
        sqlite,
    } = calls;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::passthrough::JsonProjection for #ident #ty_generics
        #where_clause
        {
            const FIELDS: &'static [(&'static str, &'static str)] = &[#(#postgres_fields),*];
            const SQLITE_FIELDS: &'static [(&'static str, &'static str)] =
                &[#(#sqlite_fields),*];
            const POSTGRES_JSON: &'static str = #postgres_json;
            const POSTGRES_COLUMNS: &'static str = #postgres_columns;
            const POSTGRES_JSONB: &'static str = #postgres_jsonb;
            const SQLITE: &'static str = #sqlite;
        }
    })
}

/// Struct-level settings.
struct Container {
    /// `#[projection(table = "p")]`.
    table: Option<LitStr>,
    /// `#[projection(crate = "path")]`.
    krate: Option<syn::Path>,
}

impl Container {
    fn parse(input: &DeriveInput, errors: &mut Errors) -> Container {
        let mut has_rename_all = false;
        let mut table: Option<LitStr> = None;
        let mut krate: Option<(LitStr, syn::Path)> = None;
        for attr in &input.attrs {
            if attr.path().is_ident("serde") {
                for meta in serde_metas(attr) {
                    match &meta {
                        Meta::NameValue(nv) if nv.path.is_ident("rename_all") => {
                            match string_lit(&nv.value) {
                                Some(lit) if lit.value() == "camelCase" => has_rename_all = true,
                                Some(lit) => {
                                    has_rename_all = true;
                                    errors.spanned(
                                        &lit,
                                        format!(
                                            "JsonProjection requires `rename_all = \
                                             \"camelCase\"`, not `{:?}`: {RENAME_ALL_WHY}",
                                            lit.value()
                                        ),
                                    );
                                }
                                None => {}
                            }
                        }
                        Meta::List(list) if list.path.is_ident("rename_all") => {
                            has_rename_all = true;
                            errors.spanned(
                                &meta,
                                format!(
                                    "write `#[serde(rename_all = \"camelCase\")]`: utoipa's \
                                     `ToSchema` does not read the `rename_all(serialize = ..., \
                                     deserialize = ...)` form, and JsonProjection requires \
                                     camelCase because {RENAME_ALL_WHY}"
                                ),
                            );
                        }
                        Meta::Path(path) if path.is_ident("transparent") => errors.spanned(
                            path,
                            "JsonProjection cannot project a `#[serde(transparent)]` struct: it \
                             serializes as its single field, not as a JSON object",
                        ),
                        _ => {}
                    }
                }
            } else if attr.path().is_ident("projection") {
                let result = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("table") {
                        let lit = unique_string(&meta, table.is_some(), "table", errors)?;
                        if let Some(lit) = lit {
                            if !lit.value().trim().is_empty()
                                && !sql::is_plain_table_ref(&lit.value())
                            {
                                errors.spanned(
                                    &lit,
                                    "`table` must be a plain SQL identifier such as `p` or \
                                     `blog.post`: it is written unquoted in front of every \
                                     column; give a table whose name needs quoting an alias in \
                                     the FROM clause",
                                );
                            }
                            table = Some(lit);
                        }
                    } else if meta.path.is_ident("crate") {
                        if let Some(lit) = unique_string(&meta, krate.is_some(), "crate", errors)? {
                            match lit.parse::<syn::Path>() {
                                Ok(path) => krate = Some((lit, path)),
                                Err(_) => errors.spanned(
                                    &lit,
                                    "`crate` must be the path of the chopin_core crate, e.g. \
                                     `crate = \"::my_app::chopin_core\"`",
                                ),
                            }
                        }
                    } else {
                        let key = meta.path.to_token_stream().to_string();
                        let hint =
                            if ["column", "sql", "postgres", "sqlite"].contains(&key.as_str()) {
                                format!("`{key}` is a field attribute: put it on a field")
                            } else {
                                "expected `table = \"...\"` or `crate = \"...\"`".to_string()
                            };
                        errors.spanned(
                            &meta.path,
                            format!("unknown struct attribute `projection({key})`: {hint}"),
                        );
                        skip_value(&meta)?;
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    errors.push(e);
                }
            }
        }
        if !has_rename_all {
            errors.spanned(
                &input.ident,
                format!(
                    "JsonProjection requires `#[serde(rename_all = \"camelCase\")]` on `{}`: \
                     {RENAME_ALL_WHY}",
                    input.ident
                ),
            );
        }
        Container {
            table: table.filter(|t| !t.value().trim().is_empty()),
            krate: krate.map(|(_, path)| path),
        }
    }
}

/// Where a field's value comes from.
enum Source {
    /// A column (the field name unless `column = "..."`), quoted and table-qualified.
    Column(Option<LitStr>),
    /// `sql = "..."`: one expression, verbatim, on both backends.
    Sql(LitStr),
    /// `postgres = "...", sqlite = "..."`.
    PerBackend { postgres: LitStr, sqlite: LitStr },
}

/// What the derive reads from one field's attributes.
struct FieldAttrs {
    rename: Option<LitStr>,
    source: Source,
}

impl FieldAttrs {
    /// `None` when the field is skipped.
    fn parse(field: &Field, errors: &mut Errors) -> Option<FieldAttrs> {
        let mut skip = false;
        let mut rename: Option<LitStr> = None;
        for attr in &field.attrs {
            if attr.path().is_ident("serde") {
                for meta in serde_metas(attr) {
                    match &meta {
                        Meta::Path(path)
                            if path.is_ident("skip")
                                || path.is_ident("skip_serializing")
                                || path.is_ident("skip_deserializing") =>
                        {
                            skip = true;
                        }
                        Meta::Path(path) if path.is_ident("flatten") => errors.spanned(
                            path,
                            "JsonProjection does not support `#[serde(flatten)]`: list the \
                             flattened fields in this struct, or project a nested object with \
                             `#[projection(sql = \"...\")]` on a field that is not flattened",
                        ),
                        Meta::NameValue(nv) if nv.path.is_ident("rename") => {
                            rename = string_lit(&nv.value);
                        }
                        Meta::List(list) if list.path.is_ident("rename") => errors.spanned(
                            &meta,
                            "write `#[serde(rename = \"...\")]`: utoipa's `ToSchema` does not \
                             read the `rename(serialize = ..., deserialize = ...)` form, so the \
                             OpenAPI schema would not match the SQL keys",
                        ),
                        _ => {}
                    }
                }
            } else if attr.path().is_ident("schema") {
                check_schema_attr(attr, errors);
            }
        }

        let mut column: Option<LitStr> = None;
        let mut sql: Option<LitStr> = None;
        let mut postgres: Option<LitStr> = None;
        let mut sqlite: Option<LitStr> = None;
        // `key = value` tokens of each setting, for spans.
        let mut spans: HashMap<&'static str, TokenStream> = HashMap::new();
        let mut projection_attr: Option<&Attribute> = None;
        for attr in &field.attrs {
            if !attr.path().is_ident("projection") {
                continue;
            }
            projection_attr.get_or_insert(attr);
            let result = attr.parse_nested_meta(|meta| {
                let (name, slot) = if meta.path.is_ident("column") {
                    ("column", &mut column)
                } else if meta.path.is_ident("sql") {
                    ("sql", &mut sql)
                } else if meta.path.is_ident("postgres") {
                    ("postgres", &mut postgres)
                } else if meta.path.is_ident("sqlite") {
                    ("sqlite", &mut sqlite)
                } else {
                    let key = meta.path.to_token_stream().to_string();
                    let hint = if key == "table" || key == "crate" {
                        format!("`{key}` is a struct attribute: put it on the struct")
                    } else {
                        "expected one of `column`, `sql`, `postgres`, `sqlite`".to_string()
                    };
                    errors.spanned(
                        &meta.path,
                        format!("unknown field attribute `projection({key})`: {hint}"),
                    );
                    return skip_value(&meta);
                };
                if let Some(lit) = unique_string(&meta, slot.is_some(), name, errors)? {
                    let path = &meta.path;
                    spans.insert(name, quote!(#path = #lit));
                    *slot = Some(lit);
                }
                Ok(())
            });
            if let Err(e) = result {
                errors.push(e);
            }
        }

        if skip {
            if let Some(attr) = projection_attr {
                errors.spanned(
                    attr,
                    "this field is skipped by `#[serde(skip...)]`, so it is not projected: \
                     remove `#[projection(...)]` or the skip",
                );
            }
            return None;
        }

        let at = |name: &str| spans.get(name).cloned().unwrap_or_default();
        if column.is_some() {
            for other in ["sql", "postgres", "sqlite"] {
                if spans.contains_key(other) {
                    errors.spanned(
                        at(other),
                        format!(
                            "`column` and `{other}` cannot be combined: `column` names a column \
                             (quoted, and qualified by the struct's `table`), `{other}` gives a \
                             SQL expression used verbatim; keep one of them"
                        ),
                    );
                }
            }
        } else if sql.is_some() {
            for other in ["postgres", "sqlite"] {
                if spans.contains_key(other) {
                    errors.spanned(
                        at(other),
                        format!(
                            "`sql` and `{other}` cannot be combined: `sql` is the expression for \
                             every backend; use either `sql = \"...\"` or the pair \
                             `postgres = \"...\", sqlite = \"...\"`"
                        ),
                    );
                }
            }
        } else {
            match (&postgres, &sqlite) {
                (Some(_), None) => errors.spanned(
                    at("postgres"),
                    "`postgres` needs a matching `sqlite = \"...\"`: say what SQLite computes for \
                     this field too (or use `sql = \"...\"` if one expression works on both)",
                ),
                (None, Some(_)) => errors.spanned(
                    at("sqlite"),
                    "`sqlite` needs a matching `postgres = \"...\"`: say what PostgreSQL \
                     computes for this field too (or use `sql = \"...\"` if one expression works \
                     on both)",
                ),
                _ => {}
            }
        }

        let source = match (column, sql, postgres, sqlite) {
            (Some(column), ..) => Source::Column(Some(column)),
            (None, Some(sql), ..) => Source::Sql(sql),
            (None, None, Some(postgres), Some(sqlite)) => Source::PerBackend { postgres, sqlite },
            _ => Source::Column(None),
        };
        Some(FieldAttrs { rename, source })
    }
}

/// The items of a `#[serde(...)]` attribute. A malformed one yields nothing: serde's own
/// derive reports it.
fn serde_metas(attr: &Attribute) -> Vec<Meta> {
    attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        .map(|items| items.into_iter().collect())
        .unwrap_or_default()
}

/// The string literal of `expr`, if it is one.
fn string_lit(expr: &Expr) -> Option<LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit.clone()),
        _ => None,
    }
}

/// Parse `name = "value"`: reports a repeated or empty setting. `None` when it is not to be
/// used.
fn unique_string(
    meta: &ParseNestedMeta<'_>,
    repeated: bool,
    name: &str,
    errors: &mut Errors,
) -> syn::Result<Option<LitStr>> {
    let lit: LitStr = meta.value()?.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{name}` takes a string literal: `{name} = \"...\"`"),
        )
    })?;
    let path = &meta.path;
    if repeated {
        errors.spanned(
            quote!(#path = #lit),
            format!("duplicate `{name}`: set it once"),
        );
        return Ok(None);
    }
    if lit.value().trim().is_empty() {
        errors.spanned(&lit, format!("`{name}` must not be empty"));
    }
    Ok(Some(lit))
}

/// Consume the value of an unknown setting so that parsing continues after it.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}

/// utoipa's `#[schema(rename = ...)]` and `#[schema(ignore)]` change only the OpenAPI view of a
/// field, so the schema would no longer describe what the SQL produces.
fn check_schema_attr(attr: &Attribute, errors: &mut Errors) {
    let Meta::List(list) = &attr.meta else {
        return;
    };
    let mut at_item_start = true;
    for tree in list.tokens.clone() {
        match &tree {
            TokenTree::Ident(ident) if at_item_start && ident == "rename" => errors.spanned(
                ident,
                "`#[schema(rename = ...)]` renames the property only in the OpenAPI schema, not \
                 in the SQL projection: use `#[serde(rename = \"...\")]` so all three agree",
            ),
            TokenTree::Ident(ident) if at_item_start && ident == "ignore" => errors.spanned(
                ident,
                "`#[schema(ignore)]` hides the property only from the OpenAPI schema while the \
                 SQL projection still produces it: use `#[serde(skip)]` to leave the field out \
                 of both",
            ),
            _ => {}
        }
        at_item_start = matches!(&tree, TokenTree::Punct(p) if p.as_char() == ',');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(input: DeriveInput) -> String {
        derive(&input)
            .unwrap_or_else(|e| panic!("unexpected error: {e}"))
            .to_string()
    }

    fn messages(input: DeriveInput) -> Vec<String> {
        match derive(&input) {
            Ok(tokens) => panic!("expected errors, got {tokens}"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn foreign_attributes_with_arbitrary_content_are_ignored() {
        let out = expand(syn::parse_quote! {
            #[derive(Serialize, ToSchema)]
            #[serde(rename_all = "camelCase", deny_unknown_fields, bound(serialize = "T: X"))]
            #[schema(example = json!({"rename": 1, "ignore": true}))]
            struct Post {
                #[serde(default, skip_serializing_if = "Option::is_none", with = "m")]
                #[schema(value_type = Vec<String>, example = rename)]
                body_text: Option<String>,
                #[serde(skip_deserializing)]
                cached: u8,
                #[serde(alias = "ts", rename = "when")]
                created_at: String,
            }
        });
        assert!(out.contains("impl :: chopin_core :: passthrough :: JsonProjection for Post"));
        let sqlite = "\"json_object('bodyText', \\\"body_text\\\", 'when', \\\"created_at\\\")\"";
        assert!(out.contains(sqlite), "{out}");
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errors = messages(syn::parse_quote! {
            #[projection(table = "a b")]
            struct Post {
                #[projection(column = "x", sql = "y")]
                a: i64,
                #[projection(postgres = "z")]
                b: i64,
                #[projection(nope)]
                c: i64,
            }
        });
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].contains("`table` must be a plain SQL identifier"));
        assert!(errors[1].contains("requires `#[serde(rename_all = \"camelCase\")]` on `Post`"));
        assert!(errors[2].contains("`column` and `sql` cannot be combined"));
        assert!(errors[3].contains("`postgres` needs a matching `sqlite"));
        assert!(errors[4].contains("unknown field attribute `projection(nope)`"));
    }

    #[test]
    fn raw_identifiers_are_unrawed() {
        let out = expand(syn::parse_quote! {
            #[serde(rename_all = "camelCase")]
            struct Item { r#type: String, r#ref_id: i64 }
        });
        assert!(
            out.contains(r#""json_object('type', \"type\", 'refId', \"ref_id\")""#),
            "{out}"
        );
    }
}
