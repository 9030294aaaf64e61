//! Cost of checking an access token, the work `AuthUser` adds to every authenticated request:
//!
//! * `auth_decode_hs256` — signature (HMAC-SHA256), header and claim checks, claims
//!   deserialised: [`Auth::decode`];
//! * `auth_verify_hs256` — [`Auth::verify`], what the extractor calls, for a token seen
//!   before (the usual case: a client sends the same token for its whole lifetime): the
//!   remembered payload's time window is checked and its claims deserialised, plus the
//!   in-process revocation lookup; the first sight of a token costs `auth_decode_hs256`;
//! * `auth_verify_es256` — [`Auth::verify`] with an ES256 key, for comparison;
//! * `auth_issue_hs256` — signing a new token ([`Auth::issue`]), what login and refresh pay;
//! * `auth_decode_hs256_flat_claims` — [`Auth::decode`] into a claims type without
//!   `#[serde(flatten)]` (same fields), to show what the flattened custom claims of
//!   [`Claims`] cost;
//! * `ring_hmac_sha256_of_token` — only the HMAC of the token's signed part with a prebuilt
//!   ring key: the floor of any HS256 check.
//!
//! ```text
//! cargo bench -p chopin-web-core --bench auth -- --warm-up-time 1 --measurement-time 3
//! ```

use chopin_core::config::Environment;
use std::hint::black_box;

use chopin_core::auth::AuthClaims;
use chopin_core::auth::{Auth, Claims, JwtKeys, TokenSettings};
use chopin_core::config::JwtAlgorithm;
use criterion::{Criterion, criterion_group, criterion_main};
use serde::Deserialize;

/// The fields of [`Claims`], without the flattened extra claims.
#[derive(Deserialize)]
#[allow(dead_code)]
struct FlatClaims {
    sub: String,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    perms: Vec<String>,
}

impl AuthClaims for FlatClaims {
    fn subject(&self) -> &str {
        &self.sub
    }
    fn token_id(&self) -> &str {
        &self.jti
    }
    fn expires_at(&self) -> i64 {
        self.exp
    }
    fn roles(&self) -> &[String] {
        &self.roles
    }
    fn permissions(&self) -> &[String] {
        &self.perms
    }
}
use tokio::runtime::Runtime;

fn hs256() -> Auth {
    Auth::new(
        JwtKeys::hs256("k1", b"benchmark-secret-of-at-least-32-bytes!").expect("valid key"),
        TokenSettings::default(),
        Environment::Development,
    )
}

fn es256() -> Auth {
    Auth::new(
        JwtKeys::from_pem(
            JwtAlgorithm::Es256,
            "k1",
            include_bytes!("../tests/fixtures/jwt/es256.key"),
            include_bytes!("../tests/fixtures/jwt/es256.pub"),
        )
        .expect("valid key"),
        TokenSettings::default(),
        Environment::Development,
    )
}

fn token_for(auth: &Auth) -> String {
    let mut claims = auth.claims_for("12345");
    claims.roles = vec!["editor".into()];
    auth.issue(claims).expect("signs")
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let auth = hs256();
    let token = token_for(&auth);
    c.bench_function("auth_decode_hs256", |b| {
        b.iter(|| black_box(auth.decode::<Claims>(black_box(&token)).expect("valid")))
    });
    c.bench_function("auth_decode_hs256_flat_claims", |b| {
        b.iter(|| black_box(auth.decode::<FlatClaims>(black_box(&token)).expect("valid")))
    });
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        b"benchmark-secret-of-at-least-32-bytes!",
    );
    let signed_part = token
        .rsplit_once('.')
        .map(|(m, _)| m.to_string())
        .expect("a JWT");
    c.bench_function("ring_hmac_sha256_of_token", |b| {
        b.iter(|| black_box(ring::hmac::sign(&key, black_box(signed_part.as_bytes()))))
    });
    c.bench_function("auth_verify_hs256", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                auth.verify::<Claims>(black_box(&token))
                    .await
                    .expect("valid"),
            )
        })
    });
    let es = es256();
    let es_token = token_for(&es);
    c.bench_function("auth_verify_es256", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                es.verify::<Claims>(black_box(&es_token))
                    .await
                    .expect("valid"),
            )
        })
    });
    c.bench_function("auth_issue_hs256", |b| {
        b.iter(|| black_box(auth.issue(auth.claims_for("12345")).expect("signs")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
