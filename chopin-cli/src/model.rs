//! Field specifications (`title:string!`) and the model description the generator templates
//! render.

use serde::Serialize;

use crate::names::{self, ModelNames};
use crate::output::{CliError, CliResult};

/// The column types a field can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `string`: up to 255 characters.
    String,
    /// `text`: long text.
    Text,
    /// `i32` / `int` / `integer`.
    I32,
    /// `i64` / `bigint`.
    I64,
    /// `f64` / `float` / `double`.
    F64,
    /// `bool` / `boolean`.
    Bool,
    /// `datetime` / `timestamp`: a point in time, UTC.
    DateTime,
    /// `date`: a calendar date.
    Date,
    /// `references` (optionally `references:<model>`): a foreign key to another model's `id`.
    References,
}

/// The type names `field:type` accepts, for help texts.
pub const TYPE_NAMES: &str = "string, text, i32 (int, integer), i64 (bigint), f64 (float, double), bool (boolean), datetime (timestamp), date, references";

impl FieldType {
    fn parse(s: &str) -> Option<FieldType> {
        Some(match s {
            "string" | "str" => FieldType::String,
            "text" => FieldType::Text,
            "i32" | "int" | "integer" => FieldType::I32,
            "i64" | "bigint" | "big_integer" => FieldType::I64,
            "f64" | "float" | "double" => FieldType::F64,
            "bool" | "boolean" => FieldType::Bool,
            "datetime" | "timestamp" => FieldType::DateTime,
            "date" => FieldType::Date,
            "references" | "ref" => FieldType::References,
            _ => return None,
        })
    }
}

/// One parsed `name:type[!][^][:modifier…]` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Column and Rust field name (snake_case). For references, `<model>_id`.
    pub name: String,
    /// Column type.
    pub ty: FieldType,
    /// NOT NULL (`!` or `:required`); references are always required.
    pub required: bool,
    /// UNIQUE (`^` or `:unique`).
    pub unique: bool,
    /// For references: the referenced model's module (`post`).
    pub target: Option<String>,
}

/// Names a field may not take: the generator adds these columns itself.
const RESERVED_FIELDS: &[&str] = &["id", "created_at", "updated_at"];

/// Parse one field argument.
///
/// * `title:string` nullable string, `title:string!` NOT NULL, `slug:string^!` NOT NULL and
///   UNIQUE; the words `:required` (or `:not_null`) and `:unique` mean the same.
/// * `post:references` a NOT NULL `post_id` column referencing `posts.id` (the `post` model);
///   `author:references:user` names the model (`author_id` → `users.id`).
pub fn parse_field(arg: &str) -> CliResult<FieldSpec> {
    let usage = || {
        format!(
            "write fields as name:type, for example `title:string!` or `post:references`; types: {TYPE_NAMES}; `!` = NOT NULL, `^` = UNIQUE"
        )
    };
    let mut parts = arg.split(':');
    let name = parts.next().unwrap_or_default();
    let Some(raw_type) = parts.next() else {
        return Err(CliError::new(format!("field `{arg}` has no type")).hint(usage()));
    };
    let mut required = false;
    let mut unique = false;
    let mut base = raw_type;
    loop {
        if let Some(rest) = base.strip_suffix('!') {
            required = true;
            base = rest;
        } else if let Some(rest) = base.strip_suffix('^') {
            unique = true;
            base = rest;
        } else {
            break;
        }
    }
    let Some(ty) = FieldType::parse(base) else {
        return Err(CliError::new(format!("field `{arg}`: unknown type `{base}`")).hint(usage()));
    };
    let mut target = None;
    for modifier in parts {
        match modifier {
            "required" | "not_null" | "notnull" => required = true,
            "unique" => unique = true,
            other if ty == FieldType::References && target.is_none() => {
                target = Some(names::model_names(other)?.module);
            }
            other => {
                return Err(
                    CliError::new(format!("field `{arg}`: unknown modifier `{other}`"))
                        .hint(usage()),
                );
            }
        }
    }
    let name = names::snake_ident(name, "field")?;
    let (name, target) = if ty == FieldType::References {
        let target = match target {
            Some(t) => t,
            None => names::model_names(&name)?.module,
        };
        required = true;
        (format!("{name}_id"), Some(target))
    } else {
        (name, None)
    };
    let name = names::column_ident(&name)?;
    if RESERVED_FIELDS.contains(&name.as_str()) {
        return Err(
            CliError::new(format!("field `{name}` is added by the generator itself"))
                .hint("every model gets `id`, `created_at` and `updated_at`: leave them out"),
        );
    }
    Ok(FieldSpec {
        name,
        ty,
        required,
        unique,
        target,
    })
}

/// Parse every field argument; refuses duplicates.
pub fn parse_fields(args: &[String]) -> CliResult<Vec<FieldSpec>> {
    let mut fields: Vec<FieldSpec> = Vec::new();
    for arg in args {
        let field = parse_field(arg)?;
        if fields.iter().any(|f| f.name == field.name) {
            return Err(
                CliError::new(format!("field `{}` is given twice", field.name))
                    .hint("list each field once"),
            );
        }
        fields.push(field);
    }
    Ok(fields)
}

/// A field as the templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct FieldView {
    /// snake_case name.
    pub name: String,
    /// UpperCamelCase name (migration identifier).
    pub pascal: String,
    /// lowerCamelCase JSON key.
    pub json_name: String,
    /// Doc comment text.
    pub doc: String,
    /// The Rust type in the API types.
    pub model_type: String,
    /// The Rust type in the entity.
    pub entity_type: String,
    /// Whether the column is nullable.
    pub nullable: bool,
    /// The contents of `#[sea_orm(…)]`, if any.
    pub entity_attr: String,
    /// The migration's column definition.
    pub column_def: String,
    /// The contents of `#[validate(…)]`, if any.
    pub validate: String,
    /// The contents of `#[schema(…)]`, if any.
    pub schema_attr: String,
    /// A JSON value for tests.
    pub sample: String,
    /// Another JSON value for tests.
    pub sample_changed: String,
    /// Whether tests compare the value read back with the value written.
    pub compare: bool,
}

/// A referenced model as the templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceView {
    /// The reference's own name, the column without `_id` (`post`, `author`): names the
    /// relation and the test helpers, so that two references to one model stay apart.
    pub field: String,
    /// The relation variant (`Post`, `Author`).
    pub relation: String,
    /// Whether this is the only reference to its model: only then does the entity implement
    /// `Related` for it (a second implementation for the same model would conflict).
    pub related: bool,
    /// The referenced entity module (`post`).
    pub module: String,
    /// Its table (`posts`).
    pub table: String,
    /// The referenced model's struct prefix (`Post`).
    pub pascal: String,
    /// `post` in sentences.
    pub snake_spaced: String,
    /// The referencing column (`post_id`).
    pub column: String,
    /// `PostId`.
    pub column_pascal: String,
    /// Fields to set when a test inserts a referenced row: `name` and a Rust expression.
    pub sample_fields: Vec<SampleField>,
    /// Whether the referenced model records an owner (a resource of an auth project): the
    /// tests' insert helper then takes the owner's account id.
    pub owned: bool,
}

/// A field of a referenced model and a value for it, for tests.
#[derive(Debug, Clone, Serialize)]
pub struct SampleField {
    /// Field name.
    pub name: String,
    /// Rust expression of its value.
    pub expr: String,
}

/// Everything the model, migration and resource templates need.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    /// Names.
    #[serde(flatten)]
    pub names: ModelNames,
    /// Doc name (`BlogPost`).
    pub doc_name: String,
    /// Fields, in order.
    pub fields: Vec<FieldView>,
    /// References, in order.
    pub references: Vec<ReferenceView>,
    /// Whether the entity can derive `Eq` (no floating-point field).
    pub derive_eq: bool,
    /// A required text field whose empty value fails validation (for tests), if any.
    pub invalid_field: Option<String>,
}

impl ModelView {
    /// Describe model `names` with `fields`. `referenced` returns the fields (name and Rust
    /// type) of a referenced model's entity, read from its source file.
    pub fn new(
        names: ModelNames,
        fields: &[FieldSpec],
        referenced: impl Fn(&str) -> CliResult<Vec<(String, String)>>,
    ) -> CliResult<ModelView> {
        let mut views = Vec::new();
        let mut references = Vec::new();
        for f in fields {
            views.push(field_view(&names, f));
            if let Some(target) = &f.target {
                let target_names = names::model_names(target)?;
                let field = f.name.trim_end_matches("_id").to_string();
                // Distinct values per reference, so that two rows of one model can coexist
                // under its unique constraints.
                let n = references.len() + 1;
                let sample_fields = referenced(target)?
                    .into_iter()
                    .filter_map(|(name, ty)| {
                        sample_expr(&ty, &field, n).map(|expr| SampleField { name, expr })
                    })
                    .collect();
                let related = fields
                    .iter()
                    .filter(|other| other.target.as_deref() == Some(target.as_str()))
                    .count()
                    == 1;
                references.push(ReferenceView {
                    relation: names::pascal(&field),
                    field,
                    related,
                    module: target_names.module.clone(),
                    table: target_names.table.clone(),
                    pascal: target_names.pascal.clone(),
                    snake_spaced: target_names.snake_spaced.clone(),
                    column: f.name.clone(),
                    column_pascal: names::pascal(&f.name),
                    sample_fields,
                    owned: false,
                });
            }
        }
        let invalid_field = fields
            .iter()
            .find(|f| f.required && matches!(f.ty, FieldType::String | FieldType::Text))
            .map(|f| names::json_name(&f.name));
        Ok(ModelView {
            doc_name: names.pascal.clone(),
            derive_eq: !fields.iter().any(|f| f.ty == FieldType::F64),
            names,
            fields: views,
            references,
            invalid_field,
        })
    }
}

fn field_view(model: &ModelNames, f: &FieldSpec) -> FieldView {
    let nullable = !f.required;
    let pascal = names::pascal(&f.name);
    let (rust, schema_fn, text_column) = match f.ty {
        FieldType::String => ("String", "string", false),
        FieldType::Text => ("String", "text", true),
        FieldType::I32 => ("i32", "integer", false),
        FieldType::I64 | FieldType::References => ("i64", "big_integer", false),
        FieldType::F64 => ("f64", "double", false),
        FieldType::Bool => ("bool", "boolean", false),
        FieldType::DateTime => ("DateTimeUtc", "timestamp_with_time_zone", false),
        FieldType::Date => ("Date", "date", false),
    };
    // The entity uses sea-orm's prelude aliases (`DateTimeUtc`, `Date`); the API module
    // imports chrono's `DateTime` and `Utc`. Both name the same types.
    let entity_type = if nullable {
        format!("Option<{rust}>")
    } else {
        rust.to_string()
    };
    let rust = match rust {
        "DateTimeUtc" => "DateTime<Utc>",
        "Date" => "chrono::NaiveDate",
        other => other,
    };
    let model_type = if nullable {
        format!("Option<{rust}>")
    } else {
        rust.to_string()
    };
    let mut entity_attr = Vec::new();
    if text_column {
        entity_attr.push("column_type = \"Text\"".to_string());
    }
    if f.unique {
        entity_attr.push("unique".to_string());
    }
    let mut column_def = format!(
        "{schema_fn}{}({}::{pascal})",
        if nullable { "_null" } else { "" },
        model.iden
    );
    if f.unique {
        column_def.push_str(".unique_key()");
    }
    let (validate, schema_attr) = match (f.ty, f.required) {
        (FieldType::String, true) => (
            "length(min = 1, max = 255)",
            "min_length = 1, max_length = 255",
        ),
        (FieldType::String, false) => ("length(max = 255)", "max_length = 255"),
        (FieldType::Text, true) => (
            "length(min = 1, max = 100_000)",
            "min_length = 1, max_length = 100_000",
        ),
        (FieldType::Text, false) => ("length(max = 100_000)", "max_length = 100_000"),
        _ => ("", ""),
    };
    let words = f.name.replace('_', " ");
    let (sample, sample_changed) = match f.ty {
        FieldType::String | FieldType::Text => (
            format!("\"sample {words}\""),
            format!("\"changed {words}\""),
        ),
        FieldType::I32 | FieldType::I64 => ("7".into(), "8".into()),
        FieldType::F64 => ("1.5".into(), "2.5".into()),
        FieldType::Bool => ("true".into(), "false".into()),
        FieldType::DateTime => (
            "\"2025-01-31T09:30:00Z\"".into(),
            "\"2025-02-01T10:00:00Z\"".into(),
        ),
        FieldType::Date => ("\"2025-01-31\"".into(), "\"2025-02-01\"".into()),
        FieldType::References => {
            let field = f.name.trim_end_matches("_id");
            (format!("_parents.{field}"), format!("_parents.{field}"))
        }
    };
    let mut doc = match f.ty {
        FieldType::References => format!(
            "The referenced {}'s id.",
            f.target.clone().unwrap_or_default().replace('_', " ")
        ),
        _ => {
            let mut d = words.clone();
            if let Some(first) = d.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            format!("{d}.")
        }
    };
    if f.unique {
        doc.push_str(" Unique.");
    }
    if nullable {
        doc.push_str(" Optional.");
    }
    FieldView {
        json_name: names::json_name(&f.name),
        name: f.name.clone(),
        pascal,
        doc,
        model_type,
        entity_type,
        nullable,
        entity_attr: entity_attr.join(", "),
        column_def,
        validate: validate.to_string(),
        schema_attr: schema_attr.to_string(),
        sample,
        sample_changed,
        compare: f.ty != FieldType::DateTime,
    }
}

/// A Rust expression for a value of an entity field of type `ty`, for a test that inserts the
/// row referenced by `reference`, the `n`th reference of the model; `None` for types left to
/// their default (optional fields, timestamps set by the entity, the primary key).
fn sample_expr(ty: &str, reference: &str, n: usize) -> Option<String> {
    Some(
        match ty {
            "String" => return Some(format!("\"referenced {reference}\".to_string()")),
            "i32" | "i64" => return Some(n.to_string()),
            "f64" => return Some(format!("{n}.5")),
            "bool" => "true",
            "DateTimeUtc" | "DateTime<Utc>" | "chrono::DateTime<chrono::Utc>" => {
                "chrono::Utc::now()"
            }
            "Date" | "chrono::NaiveDate" => "chrono::NaiveDate::default()",
            _ => return None,
        }
        .to_string(),
    )
}

/// The fields (name, Rust type) of the `Model` struct in an entity source file, leaving out
/// `id`, `created_at` and `updated_at`.
pub fn entity_fields(source: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut inside = false;
    for line in source.lines() {
        let line = line.trim();
        if line.starts_with("pub struct Model") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if line.starts_with('}') {
            break;
        }
        if let Some(rest) = line.strip_prefix("pub ")
            && let Some((name, ty)) = rest.split_once(':')
        {
            let name = name.trim();
            if !RESERVED_FIELDS.contains(&name) {
                fields.push((
                    name.to_string(),
                    ty.trim().trim_end_matches(',').to_string(),
                ));
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_with_modifiers() {
        let f = parse_field("title:string").unwrap();
        assert_eq!(
            (f.name.as_str(), f.ty, f.required, f.unique),
            ("title", FieldType::String, false, false)
        );
        let f = parse_field("slug:string!^").unwrap();
        assert!(f.required && f.unique);
        let f = parse_field("slug:string:unique:required").unwrap();
        assert!(f.required && f.unique);
        let f = parse_field("views:int!").unwrap();
        assert_eq!(f.ty, FieldType::I32);
        let f = parse_field("post:references").unwrap();
        assert_eq!(f.name, "post_id");
        assert_eq!(f.target.as_deref(), Some("post"));
        assert!(f.required);
        assert_eq!(
            parse_field("table:references:post").unwrap().name,
            "table_id"
        );
        let f = parse_field("author:references:User").unwrap();
        assert_eq!(f.name, "author_id");
        assert_eq!(f.target.as_deref(), Some("user"));
    }

    #[test]
    fn bad_fields_are_refused_with_a_hint() {
        for bad in [
            "title",
            "title:strin",
            "Title:string",
            "title:string:often",
            "id:i64",
            "created_at:datetime",
            "type:string",
            "line_2:string",
            "table:string",
            "line_2:references:post",
        ] {
            let err = parse_field(bad).unwrap_err();
            assert!(err.hint.is_some(), "{bad}: {err}");
        }
        let dup = parse_fields(&["a:int".into(), "a:string".into()]).unwrap_err();
        assert!(dup.message.contains("twice"));
    }

    #[test]
    fn views_map_types_nullability_and_uniqueness() {
        let names = names::model_names("Post").unwrap();
        let fields = parse_fields(&[
            "title:string!".into(),
            "summary:text".into(),
            "slug:string!^".into(),
            "score:f64".into(),
        ])
        .unwrap();
        let view = ModelView::new(names, &fields, |_| Ok(vec![])).unwrap();
        assert!(!view.derive_eq);
        assert_eq!(view.invalid_field.as_deref(), Some("title"));
        let title = &view.fields[0];
        assert_eq!(title.model_type, "String");
        assert_eq!(title.column_def, "string(Posts::Title)");
        let summary = &view.fields[1];
        assert_eq!(summary.model_type, "Option<String>");
        assert_eq!(summary.column_def, "text_null(Posts::Summary)");
        assert_eq!(summary.entity_attr, "column_type = \"Text\"");
        let slug = &view.fields[2];
        assert_eq!(slug.column_def, "string(Posts::Slug).unique_key()");
        assert_eq!(slug.entity_attr, "unique");
    }

    #[test]
    fn two_references_to_one_model_are_named_after_their_columns() {
        let names = names::model_names("Review").unwrap();
        let fields = parse_fields(&[
            "author:references:user".into(),
            "reviewer:references:user".into(),
            "post:references".into(),
        ])
        .unwrap();
        let view = ModelView::new(names, &fields, |_| {
            Ok(vec![("email".to_string(), "String".to_string())])
        })
        .unwrap();
        let refs: Vec<_> = view
            .references
            .iter()
            .map(|r| {
                (
                    r.field.as_str(),
                    r.relation.as_str(),
                    r.module.as_str(),
                    r.related,
                )
            })
            .collect();
        assert_eq!(
            refs,
            [
                ("author", "Author", "user", false),
                ("reviewer", "Reviewer", "user", false),
                ("post", "Post", "post", true)
            ]
        );
        assert_eq!(view.fields[0].sample, "_parents.author");
        // The two users get different values, in case the column is unique.
        assert_ne!(
            view.references[0].sample_fields[0].expr,
            view.references[1].sample_fields[0].expr
        );
    }

    #[test]
    fn entity_fields_are_read_from_source() {
        let src = "pub struct Model {\n    #[sea_orm(primary_key)]\n    pub id: i64,\n    pub title: String,\n    pub note: Option<String>,\n    pub created_at: DateTimeUtc,\n}\n";
        assert_eq!(
            entity_fields(src),
            vec![
                ("title".to_string(), "String".to_string()),
                ("note".to_string(), "Option<String>".to_string())
            ]
        );
        assert_eq!(sample_expr("Option<String>", "post", 1), None);
        assert_eq!(sample_expr("bool", "post", 1).as_deref(), Some("true"));
        assert_eq!(sample_expr("i64", "post", 2).as_deref(), Some("2"));
    }
}
