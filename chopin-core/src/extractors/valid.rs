use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use validator::Validate;

use crate::error::{ChopinError, FieldError};
use crate::json;

use super::json::read_json_body;

/// A JSON body that is decoded like [`Json`](super::Json) and then validated with
/// [`validator`]; failed rules answer 422 `VALIDATION_FAILED` with one entry per field.
///
/// Each entry's `field` names the top-level field by its JSON key rather than its Rust name
/// when `#[serde(rename_all = ...)]` changed it: with `rename_all = "camelCase"` a rule on
/// `published_at` is reported as `publishedAt`. The key is the one of the field names the
/// type's `Deserialize` impl accepts that equals the Rust name up to ASCII case, `_` and `-`,
/// which covers every `rename_all` style. The Rust name is kept inside nested objects
/// (`author.display_name`), for a field renamed to an unrelated name with
/// `#[serde(rename = ...)]`, for struct-level rules (`__all__`), and for every field of a
/// struct with a `#[serde(flatten)]` field (its `Deserialize` impl lists no field names).
///
/// ```
/// use chopin_core::extractors::ValidJson;
/// use serde::Deserialize;
/// use validator::Validate;
///
/// #[derive(Deserialize, Validate)]
/// struct NewPost {
///     #[validate(length(min = 1, max = 200))]
///     title: String,
/// }
///
/// async fn create(ValidJson(input): ValidJson<NewPost>) -> String {
///     input.title
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(create));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidJson<T>(pub T);

impl<T, S> FromRequest<S> for ValidJson<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ChopinError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_json_body(req, state).await?;
        let value: T = json::from_slice(&bytes)?;
        if let Err(errors) = value.validate() {
            let mut error = ChopinError::from(errors);
            if let ChopinError::Validation(fields) = &mut error {
                rename_to_json_keys(fields, serde_field_names::<T>());
                fields.sort_by(|a, b| a.field.cmp(&b.field));
            }
            return Err(error);
        }
        Ok(ValidJson(value))
    }
}

/// Replace the Rust field name that starts each path (`published_at`, `author.name`,
/// `tags[2]`) with the one key among `keys` (the field names `T`'s `Deserialize` impl
/// accepts) that is the same name up to ASCII case, `_` and `-`. A name that is already a key,
/// that starts with `_` (such as validator's `__all__` for struct-level rules), or that
/// matches no key or several stays as it is.
fn rename_to_json_keys(fields: &mut [FieldError], keys: &[&str]) {
    if keys.is_empty() {
        return;
    }
    for field in fields {
        let end = field.field.find(['.', '[']).unwrap_or(field.field.len());
        let (name, rest) = field.field.split_at(end);
        if name.is_empty() || name.starts_with('_') || keys.contains(&name) {
            continue;
        }
        let wanted = normalised(name);
        let mut matching = keys.iter().filter(|key| normalised(key) == wanted);
        if let (Some(key), None) = (matching.next(), matching.next()) {
            field.field = format!("{key}{rest}");
        }
    }
}

/// `name` in ASCII lowercase without `_` and `-`: what serde's `rename_all` styles leave of a
/// snake_case Rust field name (`publishedAt`, `PUBLISHED-AT` and `published_at` all give
/// `publishedat`).
fn normalised(name: &str) -> String {
    name.bytes()
        .filter(|b| !matches!(b, b'_' | b'-'))
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect()
}

/// The names `T`'s `Deserialize` impl accepts for its fields (after `rename` and
/// `rename_all`), or none when it does not deserialize as a struct.
fn serde_field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

/// A deserializer that only records the field list a struct asks for, then stops.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

/// The error that stops [`FieldNames`].
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Camel {
        published_at: String,
        title: String,
        #[serde(rename = "x-tag")]
        tag: String,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Plain {
        published_at: String,
    }

    fn renamed(keys: &[&str], paths: &[&str]) -> Vec<String> {
        let mut fields: Vec<FieldError> = paths
            .iter()
            .map(|p| FieldError::new(*p, "length", "m"))
            .collect();
        rename_to_json_keys(&mut fields, keys);
        fields.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn field_names_come_from_the_deserialize_impl() {
        assert_eq!(
            serde_field_names::<Camel>(),
            ["publishedAt", "title", "x-tag"]
        );
        assert_eq!(serde_field_names::<Plain>(), ["published_at"]);
        assert!(serde_field_names::<String>().is_empty());
    }

    #[test]
    fn paths_start_with_the_json_key() {
        let camel = serde_field_names::<Camel>();
        assert_eq!(
            renamed(
                camel,
                &[
                    "published_at",
                    "title",
                    "published_at[1]",
                    "published_at.a_b"
                ]
            ),
            ["publishedAt", "title", "publishedAt[1]", "publishedAt.a_b"]
        );
        // Unchanged where serde keeps the Rust name, and where nothing matches.
        assert_eq!(
            renamed(serde_field_names::<Plain>(), &["published_at"]),
            ["published_at"]
        );
        assert_eq!(
            renamed(camel, &["tag", "other_name"]),
            ["tag", "other_name"]
        );
        assert_eq!(
            renamed(&["PublishedAt"], &["published_at"]),
            ["PublishedAt"]
        );
        assert_eq!(
            renamed(&["published-at"], &["published_at"]),
            ["published-at"]
        );
        assert_eq!(
            renamed(&["PUBLISHED_AT"], &["published_at"]),
            ["PUBLISHED_AT"]
        );
        assert_eq!(
            renamed(&["PUBLISHED-AT"], &["published_at"]),
            ["PUBLISHED-AT"]
        );
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Odd {
        all: String,
        ab_c: String,
        a_bc: String,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Flattened {
        #[serde(flatten)]
        inner: Camel,
    }

    #[test]
    fn only_one_unambiguous_key_is_used() {
        let odd = serde_field_names::<Odd>();
        assert_eq!(odd, ["all", "abC", "aBc"]);
        // Struct-level rules (`__all__`) are never mapped to a field.
        assert_eq!(renamed(odd, &["__all__", "_all"]), ["__all__", "_all"]);
        // `ab_c` and `a_bc` are both `abc` without separators: which key is meant is unknown.
        assert_eq!(renamed(odd, &["ab_c", "a_bc"]), ["ab_c", "a_bc"]);
        // A struct with a flattened field lists no names: paths stay Rust names.
        assert!(serde_field_names::<Flattened>().is_empty());
    }
}
