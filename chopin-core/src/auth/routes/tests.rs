use super::bodies::*;
use super::*;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Schema, SchemaFormat};

/// The property `name` of the component schema `T`.
fn property<T: utoipa::ToSchema>(name: &str) -> utoipa::openapi::schema::Object {
    let RefOr::T(Schema::Object(object)) = T::schema() else {
        panic!("{} is not an object schema", T::name());
    };
    match object.properties.get(name) {
        Some(RefOr::T(Schema::Object(p))) => p.clone(),
        _ => panic!("{}.{name} is not an inline object property", T::name()),
    }
}

fn password_rejected(password: &str) -> bool {
    let mut fields = Vec::new();
    validate_password(password, &mut fields);
    !fields.is_empty()
}

fn email_rejected(email: &str) -> bool {
    let mut fields = Vec::new();
    validate_email(email, &mut fields);
    !fields.is_empty()
}

/// The documented bounds are the enforced ones: each schema's `minLength` / `maxLength`
/// is accepted at the edge and refused one character past it.
#[test]
fn schemas_state_the_rules_the_routes_apply() {
    for password in [
        property::<Credentials>("password"),
        property::<ResetRequest>("password"),
    ] {
        let (min, max) = (password.min_length.unwrap(), password.max_length.unwrap());
        assert_eq!((min, max), (MIN_PASSWORD_LEN, MAX_PASSWORD_LEN));
        // Characters, not bytes, on both sides.
        assert!(!password_rejected(&"é".repeat(min)));
        assert!(!password_rejected(&"é".repeat(max)));
        assert!(password_rejected(&"é".repeat(min - 1)));
        assert!(password_rejected(&"é".repeat(max + 1)));
    }
    for email in [
        property::<Credentials>("email"),
        property::<EmailRequest>("email"),
    ] {
        assert_eq!(email.max_length, Some(MAX_EMAIL_LEN));
        assert!(matches!(
            email.format,
            Some(SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Email
            ))
        ));
        let at_max = format!("{}@example.com", "a".repeat(MAX_EMAIL_LEN - 12));
        assert_eq!(at_max.chars().count(), MAX_EMAIL_LEN);
        assert!(!email_rejected(&at_max));
        assert!(email_rejected(&format!("a{at_max}")));
        // JSON Schema's `email` format needs an `@`: every string without one is refused.
        assert!(email_rejected("ada.example.com"));
        assert!(email_rejected(""));
    }
    // The other bodies carry no bound the routes don't apply.
    assert_eq!(property::<ResetRequest>("token").min_length, None);
    assert_eq!(property::<TokenRequest>("token").min_length, None);
}

#[test]
fn the_spec_needs_no_database_and_mounts_where_the_routes_do() {
    let spec = AuthModule::openapi();
    let mut paths: Vec<&str> = spec.paths.paths.keys().map(String::as_str).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/login",
            "/logout",
            "/me",
            "/password-reset",
            "/password-reset/confirm",
            "/refresh",
            "/signup",
            "/verify-email"
        ]
    );
    let components = spec.components.as_ref().unwrap();
    assert!(components.security_schemes.contains_key("bearer"));
    // The logout body is optional, as the handler treats it.
    let logout = spec.paths.paths["/logout"].post.as_ref().unwrap();
    let Some(RefOr::T(body)) = &logout.request_body else {
        panic!("logout documents its body inline")
    };
    assert!(!matches!(
        body.required,
        Some(utoipa::openapi::Required::True)
    ));
    // The docs router nests like the served one.
    let nested = OpenApiRouter::<()>::new()
        .nest("/api/auth", AuthModule::api_docs())
        .into_openapi();
    assert!(nested.paths.paths.contains_key("/api/auth/signup"));
    assert!(
        nested
            .paths
            .paths
            .contains_key("/api/auth/password-reset/confirm")
    );
}

#[test]
fn debug_output_hides_passwords_and_tokens() {
    let shown = [
        format!(
            "{:?}",
            TokenPair {
                access_token: "SECRET-access".into(),
                token_type: "Bearer".into(),
                expires_in: 900,
                refresh_token: "SECRET-refresh".into(),
            }
        ),
        format!(
            "{:?}",
            Credentials {
                email: "a@example.com".into(),
                password: "SECRET-password".into(),
            }
        ),
        format!(
            "{:?}",
            RefreshRequest {
                refresh_token: "SECRET-refresh".into(),
            }
        ),
        format!(
            "{:?}",
            LogoutRequest {
                refresh_token: Some("SECRET-refresh".into()),
            }
        ),
        format!(
            "{:?}",
            TokenRequest {
                token: "SECRET-token".into(),
            }
        ),
        format!(
            "{:?}",
            ResetRequest {
                token: "SECRET-token".into(),
                password: "SECRET-password".into(),
            }
        ),
    ];
    for text in &shown {
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
    assert!(shown[0].contains("Bearer") && shown[0].contains("900"));
    assert!(shown[1].contains("a@example.com"));
}
