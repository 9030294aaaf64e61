//! The request schemas in the OpenAPI spec state exactly the rules `ValidJson` applies: every
//! `minLength` / `maxLength` is accepted at the edge and refused one character past it, a
//! string without a documented bound takes any length, and the slug's `pattern` agrees with
//! the custom check.

use blog::api::comments::NewComment;
use blog::api::posts::NewPost;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa::{PartialSchema, ToSchema};
use validator::Validate;

/// Whether `body` decodes as `T` and passes its validation; `Err` names the invalid fields.
fn validate<T: DeserializeOwned + Validate>(body: &Value) -> Result<(), Vec<String>> {
    let value: T = serde_json::from_value(body.clone()).expect("the body decodes");
    value
        .validate()
        .map_err(|e| e.field_errors().keys().map(|k| k.to_string()).collect())
}

/// Check every string property of `T`'s schema against its validation, starting from a
/// valid `example`.
fn schema_matches_validation<T: DeserializeOwned + Validate + ToSchema>(example: Value) {
    assert_eq!(validate::<T>(&example), Ok(()), "the example is valid");
    let schema = serde_json::to_value(T::schema()).unwrap();
    let properties = schema["properties"].as_object().expect("properties");
    let mut checked = 0;
    for (name, property) in properties {
        if property["type"] != "string" {
            continue;
        }
        // A character the property's pattern allows; otherwise a two-byte one, so that a
        // byte-counting rule would show.
        let unit = if property.get("pattern").is_some() {
            "a"
        } else {
            "é"
        };
        let with = |len: usize| {
            let mut body = example.clone();
            body[name] = json!(unit.repeat(len));
            body
        };
        let refused = |len: usize| match validate::<T>(&with(len)) {
            Ok(()) => false,
            Err(fields) => fields.contains(name),
        };
        let min = property["minLength"].as_u64().map(|n| n as usize);
        let max = property["maxLength"].as_u64().map(|n| n as usize);
        match min {
            Some(min) => {
                assert!(
                    !refused(min),
                    "{}.{name}: {min} characters refused",
                    T::name()
                );
                if min > 0 {
                    assert!(
                        refused(min - 1),
                        "{}.{name}: below minLength accepted",
                        T::name()
                    );
                }
            }
            None => assert!(
                !refused(0),
                "{}.{name}: \"\" refused, no minLength",
                T::name()
            ),
        }
        match max {
            Some(max) => {
                assert!(
                    !refused(max),
                    "{}.{name}: {max} characters refused",
                    T::name()
                );
                assert!(
                    refused(max + 1),
                    "{}.{name}: above maxLength accepted",
                    T::name()
                );
            }
            None => assert!(
                !refused(1_000_000),
                "{}.{name}: a long value refused, no maxLength",
                T::name()
            ),
        }
        checked += 1;
    }
    assert!(checked > 0, "{} has no string property", T::name());
}

#[test]
fn new_post_schema_matches_its_validation() {
    schema_matches_validation::<NewPost>(
        json!({"title": "Hello", "slug": "hello", "body": "", "published": false}),
    );
    // The slug's pattern `^[a-z0-9-]+$` and `validate_slug` agree.
    let schema = serde_json::to_value(NewPost::schema()).unwrap();
    assert_eq!(schema["properties"]["slug"]["pattern"], "^[a-z0-9-]+$");
    for (slug, valid) in [
        ("a-1", true),
        ("0", true),
        ("-", true),
        ("A", false),
        ("a_b", false),
        ("a b", false),
        ("é", false),
    ] {
        let body = json!({"title": "t", "slug": slug, "body": ""});
        assert_eq!(validate::<NewPost>(&body).is_ok(), valid, "{slug:?}");
    }
}

#[test]
fn new_comment_schema_matches_its_validation() {
    schema_matches_validation::<NewComment>(json!({"author": "Ada", "body": "Nice."}));
}
