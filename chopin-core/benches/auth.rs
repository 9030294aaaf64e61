//! Cost of checking an access token, the work `AuthUser` adds to every authenticated request:
//!
//! * `auth_decode_hs256` — signature (HMAC-SHA256), header and claim checks, claims
//!   deserialised: [`Auth::decode`];
//! * `auth_verify_hs256` — the same plus the in-process revocation lookup: [`Auth::verify`],
//!   what the extractor calls;
//! * `auth_verify_es256` — [`Auth::verify`] with an ES256 key, for comparison;
//! * `auth_issue_hs256` — signing a new token ([`Auth::issue`]), what login and refresh pay.
//!
//! ```text
//! cargo bench -p chopin-core --bench auth -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use chopin_core::auth::{Auth, Claims, JwtKeys, TokenSettings};
use chopin_core::config::JwtAlgorithm;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

fn hs256() -> Auth {
    Auth::new(
        JwtKeys::hs256("k1", b"benchmark-secret-of-at-least-32-bytes!").expect("valid key"),
        TokenSettings::default(),
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
