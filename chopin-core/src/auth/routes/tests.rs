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
        // 64 + 1 + 63 + 1 + 63 + 1 + 57 + 4 = 254 characters.
        let at_max = format!(
            "{}@{}.{}.{}.com",
            "a".repeat(MAX_EMAIL_LOCAL_LEN),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(57)
        );
        assert_eq!(at_max.chars().count(), MAX_EMAIL_LEN);
        assert!(!email_rejected(&at_max));
        assert!(email_rejected(&at_max.replace("@b", "@bb")));
        // JSON Schema's `email` format needs an `@`: every string without one is refused.
        assert!(email_rejected("ada.example.com"));
        assert!(email_rejected(""));
    }
    // The other bodies carry no bound the routes don't apply.
    assert_eq!(property::<ResetRequest>("token").min_length, None);
    assert_eq!(property::<TokenRequest>("token").min_length, None);
}

/// The strict address rule: what a mailer could read as several recipients, a header or a
/// quoted string is refused, with a reason; ordinary addresses pass.
#[test]
fn e_mail_addresses_are_strict() {
    for ok in [
        "ada@example.com",
        "  Ada.Lovelace+tag@Mail.Example.co.uk ",
        "o'brien@example.ie",
        "x_y-z@sub-domain.example",
        "user@xn--bcher-kva.example",
        "a@b.io",
        "1@2.example",
    ] {
        assert_eq!(email_problem(ok), None, "{ok:?} must be accepted");
    }
    let local_max = format!("{}@example.com", "a".repeat(MAX_EMAIL_LOCAL_LEN));
    assert_eq!(email_problem(&local_max), None);
    for (bad, why) in [
        // Several recipients.
        ("a@evil.com,x@corp.com", "one address"),
        ("a@evil.com;x@corp.com", "one address"),
        ("a@evil.com, x@corp.com", "spaces"),
        // Several `@`, or none.
        ("a@b@example.com", "exactly one '@'"),
        ("@@example.com", "exactly one '@'"),
        ("ada.example.com", "exactly one '@'"),
        // Quotes and backslashes.
        ("\"a,b\"@example.com", "one address"),
        ("\"ada\"@example.com", "quotes"),
        ("a\\b@example.com", "backslashes"),
        // Control characters, anywhere (header injection).
        ("ada@example.com\r\nBcc: x@corp.com", "control"),
        ("ada@example.com\n", "control"),
        ("ada\u{0}@example.com", "control"),
        ("\tada@example.com", "control"),
        ("ada\u{7f}@example.com", "control"),
        // Whitespace inside, and non-ASCII (Unicode domains only as punycode).
        ("ada lovelace@example.com", "spaces"),
        ("ada@b\u{fc}cher.example", "ASCII"),
        ("ad\u{e4}@example.com", "ASCII"),
        ("ada@example.com\u{a0}", "ASCII"),
        // Local part.
        ("", "empty"),
        ("@example.com", "1 to 64"),
        (".ada@example.com", "dots"),
        ("ada.@example.com", "dots"),
        ("a..da@example.com", "dots"),
        ("<ada>@example.com", "dots"),
        ("ada(comment)@example.com", "dots"),
        ("ada:x@example.com", "dots"),
        // Domain.
        ("ada@localhost", "domain"),
        ("ada@", "domain"),
        ("ada@.example.com", "domain"),
        ("ada@example.com.", "domain"),
        ("ada@example..com", "domain"),
        ("ada@-example.com", "domain"),
        ("ada@example-.com", "domain"),
        ("ada@exa_mple.com", "domain"),
        ("ada@[127.0.0.1]", "domain"),
        ("ada@127.0.0.1", "IP address"),
    ] {
        let problem = email_problem(bad).unwrap_or_else(|| panic!("{bad:?} must be refused"));
        assert!(problem.contains(why), "{bad:?}: {problem}");
    }
    let local_long = format!("{}@example.com", "a".repeat(MAX_EMAIL_LOCAL_LEN + 1));
    assert!(email_problem(&local_long).unwrap().contains("1 to 64"));
    let label_long = format!("ada@{}.com", "b".repeat(64));
    assert!(email_problem(&label_long).unwrap().contains("domain"));
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
