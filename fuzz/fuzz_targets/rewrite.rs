//! Arbitrary bytes through several rewriter configurations. Checks that the rewriter never
//! panics, leaves the buffer untouched on error, produces valid JSON when it succeeds, is a
//! fixed point on its own output, and accepts and rejects the same inputs as serde_json (apart
//! from the two limits serde_json has and JSON does not: numbers beyond `f64` and its
//! recursion limit of 128).
#![no_main]

use std::sync::LazyLock;

use chopin_core::passthrough::{RewriteError, Rewriter};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Deeper than serde_json allows is tested separately by the unit tests; here the limit stays
/// below serde_json's so that the two parsers can be compared.
const DEPTH: usize = 100;

static CONFIGS: LazyLock<Vec<Rewriter>> = LazyLock::new(|| {
    vec![
        Rewriter::new().max_depth(DEPTH),
        Rewriter::new().camel_case(true).max_depth(DEPTH),
        Rewriter::new()
            .typename("T\"\\\n")
            .project(["a", "aB", "a_b", "id", "__typename", "é", ""])
            .max_depth(DEPTH),
        Rewriter::new()
            .camel_case(true)
            .typename("Row")
            .project(["aB", "a", "x1", "\""])
            .max_depth(DEPTH),
        Rewriter::new()
            .camel_case(true)
            .project(Vec::<&str>::new())
            .max_depth(DEPTH),
    ]
});

/// serde_json limits that JSON itself does not have.
fn serde_limit(e: &serde_json::Error) -> bool {
    let msg = e.to_string();
    msg.contains("number out of range") || msg.contains("recursion limit")
}

fuzz_target!(|data: &[u8]| {
    let serde = serde_json::from_slice::<Value>(data);
    for rewriter in CONFIGS.iter() {
        let mut out = b"prefix".to_vec();
        let result = rewriter.rewrite_into(data, &mut out);
        match (&result, &serde) {
            (Ok(()), Err(e)) if !serde_limit(e) => {
                panic!("{rewriter:?} accepted what serde_json rejects: {e}")
            }
            (Err(RewriteError::TooDeep { .. }), _) => {}
            (Err(e), Ok(_)) => panic!("{rewriter:?} rejected what serde_json accepts: {e}"),
            _ => {}
        }
        match result {
            Err(_) => assert_eq!(out, b"prefix", "output changed on error"),
            Ok(()) => {
                assert!(out.starts_with(b"prefix"));
                let body = &out[6..];
                match serde_json::from_slice::<Value>(body) {
                    Ok(value) => {
                        if let (true, Ok(input)) = (rewriter.is_identity(), &serde) {
                            assert_eq!(&value, input, "identity changed the value");
                        }
                    }
                    Err(e) => assert!(serde_limit(&e), "invalid output ({e}): {body:?}"),
                }
                let mut again = Vec::new();
                rewriter
                    .rewrite_into(body, &mut again)
                    .expect("output is accepted again");
                assert_eq!(again, body, "not a fixed point");
            }
        }
    }
});
