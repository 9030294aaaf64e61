//! JWT access tokens as a client meets them: `AuthUser`, `Option<AuthUser>`, roles and
//! permissions, custom claims, PEM algorithms, key rotation — and every token attack of the
//! issue rejected with 401 and `WWW-Authenticate: Bearer error="invalid_token"`, one test per
//! case — and token types: only `at+jwt` is an access token.

mod cache_support;

use chopin_core::config::Environment;
use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chopin_core::auth::{
    Auth, AuthError, AuthUser, Claims, JwtKeys, Permission, RequirePermission, RequireRole,
    Revocations, Role, TokenSettings,
};
use chopin_core::config::JwtAlgorithm;
use chopin_core::prelude::*;
use chopin_core::testing::{TestClient, TestResponse};
use http::StatusCode;
use ring::hmac;
use serde_json::{Value, json};

const SECRET: &[u8] = b"test-secret-of-at-least-thirty-two-bytes";

struct Admin;
impl Role for Admin {
    const NAME: &'static str = "admin";
}

struct DeletePosts;
impl Permission for DeletePosts {
    const NAME: &'static str = "posts:delete";
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Tenant {
    tenant: String,
}

async fn me(user: AuthUser) -> ApiResponse<String> {
    ApiResponse::success(user.sub.clone())
}
async fn maybe(user: Option<AuthUser>) -> ApiResponse<Option<String>> {
    ApiResponse::success(user.map(|u| u.sub.clone()))
}
async fn admin(user: RequireRole<Admin>) -> ApiResponse<String> {
    ApiResponse::success(user.sub.clone())
}
async fn delete(user: RequirePermission<DeletePosts>) -> ApiResponse<String> {
    ApiResponse::success(user.sub.clone())
}
async fn tenant(user: AuthUser<Claims<Tenant>>) -> ApiResponse<String> {
    ApiResponse::success(user.extra.tenant.clone())
}

fn client(auth: &Auth) -> TestClient {
    TestClient::new(
        Router::new()
            .route("/me", get(me))
            .route("/maybe", get(maybe))
            .route("/admin", get(admin))
            .route("/delete", get(delete))
            .route("/tenant", get(tenant))
            .layer(auth.extension()),
    )
}

fn hs256_auth() -> Auth {
    Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        Environment::Development,
    )
}

fn strict_settings() -> TokenSettings {
    TokenSettings {
        issuer: Some("https://issuer.example".into()),
        audience: Some("chopin-tests".into()),
        ..TokenSettings::default()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64url(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token with any header and payload, HMAC-signed with `secret` (SHA-256 or SHA-512).
fn hmac_token(header: &Value, payload: &Value, secret: &[u8], sha512: bool) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes())
    );
    let alg = if sha512 {
        hmac::HMAC_SHA512
    } else {
        hmac::HMAC_SHA256
    };
    let tag = hmac::sign(&hmac::Key::new(alg, secret), message.as_bytes());
    format!("{message}.{}", b64url(tag.as_ref()))
}

fn valid_payload() -> Value {
    let t = now();
    json!({"sub": "42", "exp": t + 600, "iat": t, "nbf": t, "jti": "jti-1"})
}

fn assert_invalid_token(r: &TestResponse) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("UNAUTHORIZED"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(r.value()["success"], json!(false));
}

async fn get_with(auth: &Auth, token: &str) -> TestResponse {
    client(auth).with_bearer(token).get("/me").await
}

#[tokio::test]
async fn a_valid_token_is_accepted() {
    let auth = hs256_auth();
    let token = auth.issue(auth.claims_for("42")).unwrap();
    let r = get_with(&auth, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.value()["data"], json!("42"));
    // The scheme is case-insensitive (RFC 7235).
    let r = client(&auth)
        .with_header("authorization", &format!("bearer {token}"))
        .get("/me")
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_missing_token_gets_a_plain_bearer_challenge() {
    let auth = hs256_auth();
    let r = client(&auth).get("/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code().as_deref(), Some("UNAUTHORIZED"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    // Another scheme is no bearer token either.
    let r = client(&auth)
        .with_header("authorization", "Basic dXNlcjpwYXNz")
        .get("/me")
        .await;
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn a_malformed_token_is_rejected() {
    let auth = hs256_auth();
    for token in ["not-a-jwt", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9..x"] {
        assert_invalid_token(&get_with(&auth, token).await);
    }
}

#[tokio::test]
async fn an_expired_token_is_rejected() {
    let auth = hs256_auth();
    let mut claims = auth.claims_for("42");
    claims.exp = now() - 120; // beyond the 30 s leeway
    let token = auth.issue(claims).unwrap();
    let r = get_with(&auth, &token).await;
    assert_invalid_token(&r);
    assert!(r.text().contains("expired"));
}

#[tokio::test]
async fn an_expired_token_within_the_leeway_is_accepted() {
    let auth = hs256_auth();
    let mut claims = auth.claims_for("42");
    claims.exp = now() - 5;
    let token = auth.issue(claims).unwrap();
    assert_eq!(get_with(&auth, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_verified_before_is_still_refused_once_it_expires() {
    let settings = TokenSettings {
        leeway: Duration::ZERO,
        ..TokenSettings::default()
    };
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        settings,
        Environment::Development,
    );
    let mut claims = auth.claims_for("42");
    claims.exp = now() + 1;
    let token = auth.issue(claims).unwrap();
    for _ in 0..3 {
        assert_eq!(get_with(&auth, &token).await.status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = get_with(&auth, &token).await;
    assert_invalid_token(&r);
    assert!(r.text().contains("expired"));
}

#[tokio::test]
async fn a_not_yet_valid_token_is_rejected() {
    let auth = hs256_auth();
    let mut claims = auth.claims_for("42");
    claims.nbf = now() + 3600;
    let token = auth.issue(claims).unwrap();
    assert_invalid_token(&get_with(&auth, &token).await);
}

#[tokio::test]
async fn a_tampered_payload_is_rejected() {
    let auth = hs256_auth();
    let token = auth.issue(auth.claims_for("42")).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload = valid_payload();
    payload["sub"] = json!("1");
    payload["roles"] = json!(["admin"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64url(payload.to_string().as_bytes()),
        parts[2]
    );
    assert_invalid_token(&get_with(&auth, &forged).await);
}

#[tokio::test]
async fn a_tampered_signature_is_rejected() {
    let auth = hs256_auth();
    let token = auth.issue(auth.claims_for("42")).unwrap();
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut sig = signature.as_bytes().to_vec();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    let forged = format!("{message}.{}", String::from_utf8(sig).unwrap());
    assert_invalid_token(&get_with(&auth, &forged).await);
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_rejected() {
    let auth = hs256_auth();
    let token = hmac_token(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}),
        &valid_payload(),
        b"another-secret-of-at-least-thirty-two-bytes",
        false,
    );
    assert_invalid_token(&get_with(&auth, &token).await);
    // The same construction with the right secret passes: the test really builds tokens.
    let good = hmac_token(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}),
        &valid_payload(),
        SECRET,
        false,
    );
    assert_eq!(get_with(&auth, &good).await.status, StatusCode::OK);
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let auth = hs256_auth();
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": "k1"});
        let unsigned = format!(
            "{}.{}.",
            b64url(header.to_string().as_bytes()),
            b64url(valid_payload().to_string().as_bytes())
        );
        assert_invalid_token(&get_with(&auth, &unsigned).await);
    }
}

#[tokio::test]
async fn a_wrong_algorithm_is_rejected() {
    // Correct secret, correct kid, but HS512 where the key is HS256.
    let auth = hs256_auth();
    let token = hmac_token(
        &json!({"alg": "HS512", "typ": "at+jwt", "kid": "k1"}),
        &valid_payload(),
        SECRET,
        true,
    );
    assert_invalid_token(&get_with(&auth, &token).await);
}

#[tokio::test]
async fn rsa_public_key_used_as_hmac_secret_is_rejected() {
    // Algorithm confusion: the server verifies RS256; the attacker knows the public key and
    // signs an HS256 token with it as the HMAC secret.
    let public = include_bytes!("fixtures/jwt/rs256.pub");
    let keys = JwtKeys::from_pem(
        JwtAlgorithm::Rs256,
        "rsa",
        include_bytes!("fixtures/jwt/rs256.key"),
        public,
    )
    .unwrap();
    let auth = Auth::new(keys, TokenSettings::default(), Environment::Development);
    let genuine = auth.issue(auth.claims_for("42")).unwrap();
    assert_eq!(get_with(&auth, &genuine).await.status, StatusCode::OK);
    for kid in [Some("rsa"), None] {
        let mut header = json!({"alg": "HS256", "typ": "at+jwt"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let forged = hmac_token(&header, &valid_payload(), public, false);
        assert_invalid_token(&get_with(&auth, &forged).await);
    }
}

#[tokio::test]
async fn a_wrong_issuer_is_rejected() {
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        strict_settings(),
        Environment::Development,
    );
    let good = auth.issue(auth.claims_for("42")).unwrap();
    assert_eq!(get_with(&auth, &good).await.status, StatusCode::OK);
    let mut claims = auth.claims_for("42");
    claims.iss = Some("https://evil.example".into());
    assert_invalid_token(&get_with(&auth, &auth.issue(claims).unwrap()).await);
    let mut claims = auth.claims_for("42");
    claims.iss = None;
    assert_invalid_token(&get_with(&auth, &auth.issue(claims).unwrap()).await);
}

#[tokio::test]
async fn a_wrong_audience_is_rejected() {
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        strict_settings(),
        Environment::Development,
    );
    let mut claims = auth.claims_for("42");
    claims.aud = Some("another-api".into());
    assert_invalid_token(&get_with(&auth, &auth.issue(claims).unwrap()).await);
    let mut claims = auth.claims_for("42");
    claims.aud = None;
    assert_invalid_token(&get_with(&auth, &auth.issue(claims).unwrap()).await);
}

#[tokio::test]
async fn an_unknown_key_id_is_rejected() {
    let auth = hs256_auth();
    let token = hmac_token(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": "k9"}),
        &valid_payload(),
        SECRET,
        false,
    );
    assert_invalid_token(&get_with(&auth, &token).await);
}

#[tokio::test]
async fn a_revoked_token_is_rejected() {
    let auth = hs256_auth();
    let claims = auth.claims_for("42");
    let token = auth.issue(claims.clone()).unwrap();
    assert_eq!(get_with(&auth, &token).await.status, StatusCode::OK);
    auth.revoke(&claims).await.unwrap();
    let r = get_with(&auth, &token).await;
    assert_invalid_token(&r);
    assert!(r.text().contains("revoked"));
    // Other tokens of the same user still work.
    let other = auth.issue(auth.claims_for("42")).unwrap();
    assert_eq!(get_with(&auth, &other).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rotated_keys_accept_old_tokens_and_sign_with_the_new_one() {
    let old = hs256_auth();
    let old_token = old.issue(old.claims_for("7")).unwrap();
    let new_secret = b"the-next-secret-also-thirty-two-bytes-long";
    let rotated = Auth::new(
        JwtKeys::hs256("k2", new_secret)
            .unwrap()
            .verify_hs256("k1", SECRET)
            .unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    assert_eq!(get_with(&rotated, &old_token).await.status, StatusCode::OK);
    let new_token = rotated.issue(rotated.claims_for("7")).unwrap();
    assert_eq!(get_with(&rotated, &new_token).await.status, StatusCode::OK);
    // The old deployment does not know k2.
    assert_invalid_token(&get_with(&old, &new_token).await);
    // Verification-only keys never sign.
    assert_eq!(rotated.keys().signing_kid(), "k2");
}

async fn pem_round_trip(alg: JwtAlgorithm, key: &[u8], public: &[u8]) {
    let auth = Auth::new(
        JwtKeys::from_pem(alg, "pem", key, public).unwrap(),
        TokenSettings::default(),
        Environment::Development,
    );
    let token = auth.issue(auth.claims_for("9")).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("pem"));
    assert_eq!(format!("{:?}", header.alg), alg.as_str());
    let r = get_with(&auth, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{alg:?}: {}", r.text());
    // A token from an HS256 deployment is refused by the PEM one.
    let hs = hs256_auth();
    let foreign = hs.issue(hs.claims_for("9")).unwrap();
    assert_invalid_token(&get_with(&auth, &foreign).await);
}

#[tokio::test]
async fn rs256_tokens_round_trip() {
    pem_round_trip(
        JwtAlgorithm::Rs256,
        include_bytes!("fixtures/jwt/rs256.key"),
        include_bytes!("fixtures/jwt/rs256.pub"),
    )
    .await;
}

#[tokio::test]
async fn es256_tokens_round_trip() {
    pem_round_trip(
        JwtAlgorithm::Es256,
        include_bytes!("fixtures/jwt/es256.key"),
        include_bytes!("fixtures/jwt/es256.pub"),
    )
    .await;
}

#[tokio::test]
async fn eddsa_tokens_round_trip() {
    pem_round_trip(
        JwtAlgorithm::EdDsa,
        include_bytes!("fixtures/jwt/eddsa.key"),
        include_bytes!("fixtures/jwt/eddsa.pub"),
    )
    .await;
}

#[tokio::test]
async fn optional_auth_user_is_none_without_a_token_and_still_rejects_bad_ones() {
    let auth = hs256_auth();
    let c = client(&auth);
    let r = c.get("/maybe").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.value()["data"], Value::Null);
    let token = auth.issue(auth.claims_for("5")).unwrap();
    assert_eq!(
        c.with_bearer(&token).get("/maybe").await.value()["data"],
        json!("5")
    );
    assert_invalid_token(&c.with_bearer("garbage").get("/maybe").await);
}

#[tokio::test]
async fn the_token_may_come_in_the_configured_cookie() {
    let settings = TokenSettings {
        cookie: Some("session".into()),
        ..TokenSettings::default()
    };
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        settings,
        Environment::Development,
    );
    let token = auth.issue(auth.claims_for("3")).unwrap();
    let c = client(&auth).with_header("cookie", &format!("theme=dark; session={token}"));
    let r = c.get("/me").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Without the setting, cookies are ignored.
    let r = client(&hs256_auth())
        .with_header("cookie", &format!("session={token}"))
        .get("/me")
        .await;
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn roles_and_permissions_answer_403_when_missing() {
    let auth = hs256_auth();
    let c = client(&auth);
    let plain = auth.issue(auth.claims_for("1")).unwrap();
    let mut claims = auth.claims_for("2");
    claims.roles = vec!["admin".into()];
    claims.perms = vec!["posts:delete".into()];
    let admin_token = auth.issue(claims).unwrap();

    let r = c.with_bearer(&plain).get("/admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code().as_deref(), Some("FORBIDDEN"));
    let r = c.with_bearer(&plain).get("/delete").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.with_bearer(&admin_token).get("/admin").await.status,
        StatusCode::OK
    );
    assert_eq!(
        c.with_bearer(&admin_token).get("/delete").await.status,
        StatusCode::OK
    );
    // No token at all is still 401, not 403.
    assert_eq!(c.get("/admin").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn typed_custom_claims_round_trip() {
    let auth = hs256_auth();
    let claims = auth.claims_with(
        "8",
        Tenant {
            tenant: "acme".into(),
        },
    );
    let token = auth.issue(claims).unwrap();
    let r = client(&auth).with_bearer(&token).get("/tenant").await;
    assert_eq!(r.value()["data"], json!("acme"), "{}", r.text());
    // A token without the custom claim does not fit the type, even once it has been
    // verified (and remembered) for the default claims.
    let plain = auth.issue(auth.claims_for("8")).unwrap();
    assert_eq!(get_with(&auth, &plain).await.status, StatusCode::OK);
    assert_invalid_token(&client(&auth).with_bearer(&plain).get("/tenant").await);
}

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

#[tokio::test]
async fn production_without_a_secret_refuses_to_start() {
    let err = Auth::from_config(&config(&[("CHOPIN_ENV", "production")]))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Config(_)));
    assert!(err.to_string().contains("CHOPIN_JWT_SECRET"), "{err}");
    // A short secret is refused by the configuration itself.
    let err = Config::from_lookup(|k| match k {
        "CHOPIN_ENV" => Some("production".into()),
        "CHOPIN_JWT_SECRET" => Some("too-short".into()),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(err.problems[0].variable, "CHOPIN_JWT_SECRET");
    assert!(!err.to_string().contains("too-short"));
}

#[tokio::test]
async fn development_without_a_secret_uses_an_ephemeral_key() {
    let a = Auth::from_config(&config(&[("CHOPIN_ENV", "development")]))
        .await
        .unwrap();
    let b = Auth::from_config(&config(&[("CHOPIN_ENV", "development")]))
        .await
        .unwrap();
    let token = a.issue(a.claims_for("1")).unwrap();
    assert_eq!(get_with(&a, &token).await.status, StatusCode::OK);
    // Another process (another ephemeral key) does not accept it.
    assert_invalid_token(&get_with(&b, &token).await);
}

#[tokio::test]
async fn secrets_never_reach_debug_output() {
    let secret = "a-configured-secret-that-must-stay-hidden";
    let config = config(&[("CHOPIN_JWT_SECRET", secret)]);
    let auth = Auth::from_config(&config).await.unwrap();
    assert!(!format!("{config:?}").contains(secret));
    assert!(!format!("{auth:?}").contains(secret));
    let token = auth.issue(auth.claims_for("1")).unwrap();
    assert_eq!(get_with(&auth, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn revocation_checks_fail_closed_while_redis_is_down_and_recover() {
    let Some(mut server) = cache_support::RedisServer::start().await else {
        return;
    };
    let cache = chopin_core::cache::CacheConfig {
        redis_url: server.url(),
        namespace: chopin_core::testing::unique_namespace(),
        timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let auth = Auth::with_revocations(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        Revocations::redis(&cache).await.unwrap(),
        Environment::Development,
    );
    let claims = auth.claims_for("42");
    let token = auth.issue(claims.clone()).unwrap();
    assert_eq!(get_with(&auth, &token).await.status, StatusCode::OK);

    server.kill();
    let r = get_with(&auth, &token).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("SERVICE_UNAVAILABLE"));
    assert!(r.header("retry-after").is_some());
    assert!(
        auth.revoke(&claims).await.is_err(),
        "a lost logout is reported"
    );

    server.restart().await;
    let recovered = cache_support::eventually(Duration::from_secs(10), || async {
        get_with(&auth, &token).await.status == StatusCode::OK
    })
    .await;
    assert!(recovered, "checks resume when Redis is back");
    auth.revoke(&claims).await.unwrap();
    assert_invalid_token(&get_with(&auth, &token).await);
}

/// Unreachable at start-up: `Auth::from_config` refuses to start rather than run without
/// working logout.
#[tokio::test]
async fn an_unreachable_revocation_store_stops_start_up() {
    let err = Auth::from_config(&config(&[
        (
            "CHOPIN_JWT_SECRET",
            "a-secret-of-at-least-thirty-two-bytes!",
        ),
        ("CHOPIN_AUTH_REVOCATION", "redis"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("CHOPIN_CACHE_TIMEOUT", "100ms"),
    ]))
    .await
    .unwrap_err();
    assert!(matches!(err, AuthError::Config(_)), "{err}");
}

/// `decode` names why a token is refused: algorithm pinning per key.
#[test]
fn decode_pins_the_algorithm_of_the_key() {
    let auth = hs256_auth();
    for alg in ["HS512", "HS384", "RS256", "none"] {
        let token = hmac_token(
            &json!({"alg": alg, "typ": "at+jwt", "kid": "k1"}),
            &valid_payload(),
            SECRET,
            alg == "HS512",
        );
        let err = auth.decode::<Claims>(&token).unwrap_err();
        assert!(
            matches!(err, AuthError::WrongAlgorithm | AuthError::Malformed),
            "{alg}: {err:?}"
        );
    }
    let token = hmac_token(
        &json!({"alg": "HS512", "typ": "at+jwt", "kid": "k1"}),
        &valid_payload(),
        SECRET,
        true,
    );
    assert_eq!(
        auth.decode::<Claims>(&token).unwrap_err(),
        AuthError::WrongAlgorithm
    );
}

/// A key set mixing RS256 and HS256: each `kid` only accepts its own algorithm, so swapping
/// the `kid` (an HS256 token presented under the RSA key's id, or the other way round) is
/// refused with `WrongAlgorithm`, and an unknown `kid` with `UnknownKey`.
#[test]
fn decode_refuses_a_kid_swap_in_a_mixed_key_set() {
    let public = include_bytes!("fixtures/jwt/rs256.pub");
    let keys = JwtKeys::from_pem(
        JwtAlgorithm::Rs256,
        "rsa",
        include_bytes!("fixtures/jwt/rs256.key"),
        public,
    )
    .unwrap()
    .verify_hs256("hmac", SECRET)
    .unwrap();
    let auth = Auth::new(keys, TokenSettings::default(), Environment::Development);
    let genuine = auth.issue(auth.claims_for("42")).unwrap();
    assert_eq!(auth.decode::<Claims>(&genuine).unwrap().sub, "42");
    let hs = |kid: &str, secret: &[u8]| {
        hmac_token(
            &json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
            &valid_payload(),
            secret,
            false,
        )
    };
    // Genuine HS256 under its own kid is fine.
    assert_eq!(
        auth.decode::<Claims>(&hs("hmac", SECRET)).unwrap().sub,
        "42"
    );
    // HS256 under the RSA kid: with the real secret, or with the public key as the secret.
    for secret in [SECRET, &public[..]] {
        assert_eq!(
            auth.decode::<Claims>(&hs("rsa", secret)).unwrap_err(),
            AuthError::WrongAlgorithm
        );
    }
    // The RS256 token relabelled with the HMAC kid.
    let mut parts: Vec<String> = genuine.split('.').map(str::to_string).collect();
    parts[0] = b64url(
        json!({"alg": "RS256", "typ": "at+jwt", "kid": "hmac"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        auth.decode::<Claims>(&parts.join(".")).unwrap_err(),
        AuthError::WrongAlgorithm
    );
    assert_eq!(
        auth.decode::<Claims>(&hs("nobody", SECRET)).unwrap_err(),
        AuthError::UnknownKey
    );
    // A wrong secret under the right kid is a bad signature.
    assert_eq!(
        auth.decode::<Claims>(&hs("hmac", b"another-secret-of-at-least-32-bytes!!"))
            .unwrap_err(),
        AuthError::BadSignature
    );
}

/// An empty `jti` and an `iat` in the future (beyond the leeway) are refused.
#[test]
fn decode_requires_a_jti_and_a_past_iat() {
    let auth = hs256_auth();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let mut payload = valid_payload();
    payload["jti"] = json!("");
    assert_eq!(
        auth.decode::<Claims>(&hmac_token(&header, &payload, SECRET, false))
            .unwrap_err(),
        AuthError::MissingClaim
    );
    let mut payload = valid_payload();
    payload.as_object_mut().unwrap().remove("jti");
    assert!(
        auth.decode::<Claims>(&hmac_token(&header, &payload, SECRET, false))
            .is_err()
    );
    let mut payload = valid_payload();
    payload["iat"] = json!(now() + 3600);
    assert_eq!(
        auth.decode::<Claims>(&hmac_token(&header, &payload, SECRET, false))
            .unwrap_err(),
        AuthError::IssuedInFuture
    );
    // Within the leeway (60 s by default) is fine.
    let mut payload = valid_payload();
    payload["iat"] = json!(now() + 30);
    assert!(
        auth.decode::<Claims>(&hmac_token(&header, &payload, SECRET, false))
            .is_ok()
    );
}

/// The in-process revocation store never forgets a live revocation to make room: when full
/// it refuses the new one (503), and expired ids free their place.
#[tokio::test]
async fn a_full_memory_revocation_store_refuses_instead_of_evicting() {
    let revocations = Revocations::memory_with_capacity(2);
    let auth = Auth::with_revocations(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        TokenSettings::default(),
        revocations.clone(),
        Environment::Development,
    );
    let claims: Vec<Claims> = (0..3).map(|n| auth.claims_for(n.to_string())).collect();
    auth.revoke(&claims[0]).await.unwrap();
    auth.revoke(&claims[1]).await.unwrap();
    let err = auth.revoke(&claims[2]).await.unwrap_err();
    assert_eq!(err, AuthError::Unavailable);
    assert_eq!(
        ChopinError::from(err).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    for c in &claims[..2] {
        assert!(revocations.is_revoked(&c.jti).await.unwrap());
    }
    assert!(!revocations.is_revoked(&claims[2].jti).await.unwrap());
    // Revoking an id again does not need room.
    auth.revoke(&claims[0]).await.unwrap();
    // An expired revocation makes room.
    let short = Revocations::memory_with_capacity(1);
    short.revoke("old", now() + 1).await.unwrap();
    assert!(short.is_revoked("old").await.unwrap());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!short.is_revoked("old").await.unwrap());
    short.revoke("new", now() + 60).await.unwrap();
    assert!(short.is_revoked("new").await.unwrap());
}

/// The `typ` header of a compact JWT.
fn typ_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().typ
}

/// Access tokens are typed `at+jwt` (RFC 9068) and accepted; the `application/` form and
/// any case are the same type.
#[tokio::test]
async fn at_jwt_access_tokens_are_accepted() {
    let auth = hs256_auth();
    let token = auth.issue(auth.claims_for("42")).unwrap();
    assert_eq!(typ_of(&token).as_deref(), Some("at+jwt"));
    assert_eq!(get_with(&auth, &token).await.status, StatusCode::OK);
    for typ in ["application/at+jwt", "AT+JWT"] {
        let token = hmac_token(
            &json!({"alg": "HS256", "typ": typ, "kid": "k1"}),
            &valid_payload(),
            SECRET,
            false,
        );
        assert_eq!(
            get_with(&auth, &token).await.status,
            StatusCode::OK,
            "{typ}"
        );
    }
}

/// An application token (`Auth::sign`: invitations, download links) is `app+jwt` and never
/// an access token — even when it carries every claim one has, and even in the transition
/// that accepts untyped tokens; `decode_signed` reads it and refuses access tokens.
#[tokio::test]
async fn an_app_token_from_sign_is_refused_as_an_access_token() {
    for accept_untyped in [false, true] {
        let settings = TokenSettings {
            accept_untyped,
            ..TokenSettings::default()
        };
        let auth = Auth::new(
            JwtKeys::hs256("k1", SECRET).unwrap(),
            settings,
            Environment::Development,
        );
        let app = auth.sign(&auth.claims_for("42")).unwrap();
        assert_eq!(typ_of(&app).as_deref(), Some("app+jwt"));
        let r = get_with(&auth, &app).await;
        assert_invalid_token(&r);
        assert_invalid_token(&client(&auth).with_bearer(&app).get("/maybe").await);
        assert_eq!(
            auth.verify::<Claims>(&app).await.unwrap_err(),
            AuthError::WrongType
        );
        assert_eq!(
            auth.decode::<Claims>(&app).unwrap_err(),
            AuthError::WrongType
        );
        // What it is for: read back with `decode_signed`.
        assert_eq!(auth.decode_signed::<Claims>(&app).unwrap().sub, "42");
        // And the other way round: an access token is no application token.
        let access = auth.issue(auth.claims_for("42")).unwrap();
        assert_eq!(
            auth.decode_signed::<Claims>(&access).unwrap_err(),
            AuthError::WrongType
        );
    }
}

/// `decode_signed` checks what it promises: the signature, `exp` (required), and the
/// configured issuer when the token names one.
#[test]
fn decode_signed_checks_signature_expiry_and_issuer() {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Link {
        file: String,
        exp: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        iss: Option<String>,
    }
    let auth = Auth::new(
        JwtKeys::hs256("k1", SECRET).unwrap(),
        strict_settings(),
        Environment::Development,
    );
    let link = |exp: i64, iss: Option<&str>| {
        auth.sign(&Link {
            file: "report.pdf".into(),
            exp,
            iss: iss.map(str::to_string),
        })
        .unwrap()
    };
    let good = link(now() + 60, None);
    assert_eq!(
        auth.decode_signed::<Link>(&good).unwrap().file,
        "report.pdf"
    );
    assert!(
        auth.decode_signed::<Link>(&link(now() + 60, Some("https://issuer.example")))
            .is_ok()
    );
    assert_eq!(
        auth.decode_signed::<Link>(&link(now() - 120, None))
            .unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(
        auth.decode_signed::<Link>(&link(now() + 60, Some("https://evil.example")))
            .unwrap_err(),
        AuthError::WrongIssuer
    );
    let no_exp = auth.sign(&json!({"file": "x"})).unwrap();
    assert_eq!(
        auth.decode_signed::<Value>(&no_exp).unwrap_err(),
        AuthError::MissingClaim
    );
    let other = Auth::new(
        JwtKeys::hs256("k1", b"another-secret-of-at-least-thirty-two-bytes").unwrap(),
        strict_settings(),
        Environment::Development,
    );
    assert_eq!(
        other.decode_signed::<Link>(&good).unwrap_err(),
        AuthError::BadSignature
    );
}

/// A token issued before access tokens were typed (`typ: "JWT"`, what Chopin wrote then, or
/// no `typ`) is refused by default, and accepted while `CHOPIN_JWT_ACCEPT_UNTYPED` is on —
/// the upgrade window. Other types stay refused in the window.
#[tokio::test]
async fn an_untyped_legacy_token_is_refused_by_default_and_accepted_in_transition() {
    let legacy_headers = [
        json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
        json!({"alg": "HS256", "kid": "k1"}),
    ];
    let strict = Auth::from_config(&config(&[(
        "CHOPIN_JWT_SECRET",
        std::str::from_utf8(SECRET).unwrap(),
    )]))
    .await
    .unwrap();
    let upgrading = Auth::from_config(&config(&[
        ("CHOPIN_JWT_SECRET", std::str::from_utf8(SECRET).unwrap()),
        ("CHOPIN_JWT_ACCEPT_UNTYPED", "true"),
    ]))
    .await
    .unwrap();
    assert!(!strict.settings().accept_untyped && upgrading.settings().accept_untyped);
    for header in &legacy_headers {
        let legacy = hmac_token(header, &valid_payload(), SECRET, false);
        let r = get_with(&strict, &legacy).await;
        assert_invalid_token(&r);
        assert_eq!(
            strict.decode::<Claims>(&legacy).unwrap_err(),
            AuthError::WrongType
        );
        let r = get_with(&upgrading, &legacy).await;
        assert_eq!(r.status, StatusCode::OK, "{header}: {}", r.text());
        assert_eq!(r.value()["data"], json!("42"));
    }
    // New tokens work either way; a foreign type is never an access token.
    let token = upgrading.issue(upgrading.claims_for("7")).unwrap();
    assert_eq!(get_with(&strict, &token).await.status, StatusCode::OK);
    let foreign = hmac_token(
        &json!({"alg": "HS256", "typ": "refresh+jwt", "kid": "k1"}),
        &valid_payload(),
        SECRET,
        false,
    );
    assert_invalid_token(&get_with(&upgrading, &foreign).await);
}
