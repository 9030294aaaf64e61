//! Compile-fail tests: each file in `tests/ui` misuses `#[derive(JsonProjection)]`, and the
//! committed `.stderr` next to it is the error the user must see (regenerate with
//! `TRYBUILD=overwrite cargo test -p chopin-web-macros --test compile_fail`, then read the diff).

#[test]
fn json_projection_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
