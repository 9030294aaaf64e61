//! HMAC-SHA256-signed, expiring, purpose-bound opaque tokens, for values Chopin (or the
//! application) hands to clients and must get back unmodified: pagination cursors,
//! "continue" tokens, state parameters.
//!
//! A token is `base64url(expiry ‖ payload) "." base64url(tag)`, where `expiry` is the
//! 8-byte big-endian Unix time (seconds) after which the token is refused and
//!
//! ```text
//! tag = HMAC-SHA256(key, "chopin.signer.v1" 0x00 ‖ len(purpose) as u32 BE ‖ purpose ‖ expiry ‖ payload)
//! ```
//!
//! * **Domain separation.** The fixed context and the length-prefixed *purpose* are inside the
//!   MAC input but not in the token: a token signed for one purpose (`"chopin.cursor"`) never
//!   verifies for another (`"invite"`), even under the same key. Because the purpose is not
//!   sent, a token of another purpose is indistinguishable from a forgery and is reported as
//!   [`VerifyError::BadSignature`].
//! * **Expiry.** The expiry is signed with the payload, so it cannot be extended; it is checked
//!   only after the signature, so [`VerifyError::Expired`] means "authentic, but too old".
//! * **Strict decoding.** Both parts are decoded with the `base64` crate's `URL_SAFE_NO_PAD`
//!   engine, which refuses padding, any character outside the URL-safe alphabet and
//!   non-canonical trailing bits: each token has exactly one spelling.
//! * **Constant-time verification** of the tag (ring's `hmac::verify`).
//!
//! The payload is readable by the client (base64url), not secret; the signature makes any
//! change detectable.
//!
//! ```
//! use std::time::Duration;
//! use chopin_core::signing::{Signer, VerifyError};
//!
//! let signer = Signer::new(b"a-key-of-at-least-thirty-two-bytes!!")?;
//! let token = signer.sign("cursor", b"id>1234", Duration::from_secs(600));
//! assert_eq!(signer.verify("cursor", &token)?, b"id>1234");
//! // The same token presented for another purpose is refused.
//! assert_eq!(signer.verify("invite", &token), Err(VerifyError::BadSignature));
//! // So is any change to it.
//! let mut forged = token.clone();
//! forged.replace_range(0..1, if token.starts_with('A') { "B" } else { "A" });
//! assert!(signer.verify("cursor", &forged).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{hkdf, hmac};

/// Shortest accepted key, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The fixed context every MAC input starts with (versioned: a new token layout gets a new one).
const CONTEXT: &[u8] = b"chopin.signer.v1\0";

/// Bytes of the expiry at the start of the signed body.
const EXPIRY_LEN: usize = 8;

/// Decode unpadded base64url strictly (no padding, no other alphabet, canonical trailing
/// bits); `None` otherwise.
pub(crate) fn b64_decode(input: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// Signs and verifies opaque tokens with one HMAC-SHA256 key.
#[derive(Clone)]
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

/// The key given to [`Signer::new`] or [`Signer::derive`] is shorter than [`MIN_KEY_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a signing key must be at least {MIN_KEY_LEN} bytes")]
pub struct KeyTooShort;

/// Why [`Signer::verify`] refused a token. The variants say what a caller may act on; none
/// carries the token or the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a token at all: no `.`, not strict base64url, or too short to hold an expiry.
    #[error("the token is malformed")]
    Malformed,
    /// Well-formed, but the signature does not match: altered, signed with another key, or
    /// signed for another purpose (the purpose is not in the token, so these cannot be told
    /// apart).
    #[error("the token's signature does not match")]
    BadSignature,
    /// Authentic, but its expiry has passed.
    #[error("the token has expired")]
    Expired,
}

impl Signer {
    /// A signer with `key` (at least 32 bytes; use a random key, not a password).
    pub fn new(key: &[u8]) -> Result<Signer, KeyTooShort> {
        if key.len() < MIN_KEY_LEN {
            return Err(KeyTooShort);
        }
        Ok(Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    /// A signer whose key is derived from `secret` with HKDF-SHA256 under the label `info`, so
    /// one secret can serve several uses without any of them learning another's key (the
    /// cursor key is derived from the JWT secret this way, with its own label).
    /// `secret` must be at least 32 bytes.
    pub fn derive(secret: &[u8], info: &[u8]) -> Result<Signer, KeyTooShort> {
        if secret.len() < MIN_KEY_LEN {
            return Err(KeyTooShort);
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"chopin.signer.hkdf.v1").extract(secret);
        let info = [info];
        // `expand` fails only for an output longer than 255 hash blocks; 32 bytes never is.
        let key = match prk.expand(&info, hmac::HMAC_SHA256) {
            Ok(okm) => hmac::Key::from(okm),
            Err(_) => unreachable!("a 32-byte HKDF output is always possible"),
        };
        Ok(Signer { key })
    }

    /// A signer with a fresh random 32-byte key, valid for this process only (tokens do not
    /// survive a restart and are not shared between instances).
    pub fn random() -> Signer {
        let rng = ring::rand::SystemRandom::new();
        match hmac::Key::generate(hmac::HMAC_SHA256, &rng) {
            Ok(key) => Signer { key },
            // The OS random source failing is not something to serve requests through.
            Err(_) => panic!("the system random number generator is unavailable"),
        }
    }

    /// A token carrying `payload` for `purpose`, valid for `ttl` from now. A `ttl` too large
    /// for the clock (such as `Duration::MAX`) gives a token that never expires.
    pub fn sign(&self, purpose: &str, payload: &[u8], ttl: Duration) -> String {
        let expiry = unix_secs(SystemTime::now()).saturating_add(ttl.as_secs());
        self.sign_expiry(purpose, payload, expiry)
    }

    /// A token carrying `payload` for `purpose`, refused from `expires_at` on (rounded down to
    /// the second).
    pub fn sign_until(&self, purpose: &str, payload: &[u8], expires_at: SystemTime) -> String {
        self.sign_expiry(purpose, payload, unix_secs(expires_at))
    }

    /// A token refused from the Unix second `expiry` on.
    fn sign_expiry(&self, purpose: &str, payload: &[u8], expiry: u64) -> String {
        let mut body = Vec::with_capacity(EXPIRY_LEN + payload.len());
        body.extend_from_slice(&expiry.to_be_bytes());
        body.extend_from_slice(payload);
        let tag = hmac::sign(&self.key, &mac_input(purpose, &body));
        let mut out = String::with_capacity((body.len() + 32) * 4 / 3 + 4);
        URL_SAFE_NO_PAD.encode_string(&body, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut out);
        out
    }

    /// The payload of a token this signer produced for `purpose`, if it is unaltered and
    /// unexpired.
    pub fn verify(&self, purpose: &str, token: &str) -> Result<Vec<u8>, VerifyError> {
        self.verify_at(purpose, token, SystemTime::now())
    }

    /// [`verify`](Self::verify) as if the time were `now`.
    pub fn verify_at(
        &self,
        purpose: &str,
        token: &str,
        now: SystemTime,
    ) -> Result<Vec<u8>, VerifyError> {
        let (body, tag) = token.split_once('.').ok_or(VerifyError::Malformed)?;
        let body = b64_decode(body).ok_or(VerifyError::Malformed)?;
        let tag = b64_decode(tag).ok_or(VerifyError::Malformed)?;
        if body.len() < EXPIRY_LEN {
            return Err(VerifyError::Malformed);
        }
        // Constant-time comparison: ring recomputes the tag and compares it.
        hmac::verify(&self.key, &mac_input(purpose, &body), &tag)
            .map_err(|_| VerifyError::BadSignature)?;
        let mut expiry = [0u8; EXPIRY_LEN];
        expiry.copy_from_slice(&body[..EXPIRY_LEN]);
        if unix_secs(now) >= u64::from_be_bytes(expiry) {
            return Err(VerifyError::Expired);
        }
        Ok(body[EXPIRY_LEN..].to_vec())
    }
}

/// The MAC input: the fixed context, the length-prefixed purpose (so no (purpose, body) pair
/// spells the same input as another), then the body (expiry and payload).
fn mac_input(purpose: &str, body: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(CONTEXT.len() + 4 + purpose.len() + body.len());
    input.extend_from_slice(CONTEXT);
    input.extend_from_slice(&(purpose.len() as u32).to_be_bytes());
    input.extend_from_slice(purpose.as_bytes());
    input.extend_from_slice(body);
    input
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_huge_ttl_does_not_panic_and_never_expires() {
        let signer = Signer::random();
        let token = signer.sign("p", b"x", Duration::MAX);
        assert_eq!(signer.verify("p", &token).unwrap(), b"x");
    }

    /// The lax decoder `Signer` used before: it ignores the trailing bits of the last
    /// character, so several spellings decode to the same bytes.
    fn lax_decode(input: &str) -> Option<Vec<u8>> {
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = input.as_bytes();
        if bytes.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::new();
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                let v = B64.iter().position(|&b| b == c)? as u32;
                n |= v << (18 - 6 * i);
            }
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        Some(out)
    }

    fn signer(byte: u8) -> Signer {
        Signer::new(&[byte; 32]).unwrap()
    }

    #[test]
    fn round_trips_every_length_and_rejects_changes() {
        let signer = signer(7);
        let other = signer_other();
        for len in 0..20 {
            let payload: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let token = signer.sign("test", &payload, HOUR);
            assert_eq!(signer.verify("test", &token), Ok(payload.clone()));
            assert_eq!(other.verify("test", &token), Err(VerifyError::BadSignature));
            let (p, t) = token.split_once('.').unwrap();
            assert!(signer.verify("test", &format!("{p}x.{t}")).is_err());
            assert_eq!(signer.verify("test", p), Err(VerifyError::Malformed));
        }
        assert!(Signer::new(b"short").is_err());
        assert!(Signer::derive(b"short", b"x").is_err());
    }

    fn signer_other() -> Signer {
        signer(8)
    }

    #[test]
    fn every_single_bit_flip_of_body_or_tag_is_refused() {
        let signer = signer(7);
        let token = signer.sign("test", b"{\"id\":42}", HOUR);
        let (body, tag) = token.split_once('.').unwrap();
        let body = URL_SAFE_NO_PAD.decode(body).unwrap();
        let tag = URL_SAFE_NO_PAD.decode(tag).unwrap();
        for (which, bytes) in [(0, &body), (1, &tag)] {
            for i in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[i / 8] ^= 1 << (i % 8);
                let (b, t) = if which == 0 {
                    (&flipped, &tag)
                } else {
                    (&body, &flipped)
                };
                let forged = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(b),
                    URL_SAFE_NO_PAD.encode(t)
                );
                assert_eq!(
                    signer.verify("test", &forged),
                    Err(VerifyError::BadSignature),
                    "part {which}, bit {i}"
                );
            }
        }
    }

    #[test]
    fn a_token_never_verifies_for_another_purpose() {
        let signer = signer(7);
        let token = signer.sign("chopin.cursor", b"payload", HOUR);
        assert!(signer.verify("chopin.cursor", &token).is_ok());
        for purpose in [
            "invite",
            "",
            "chopin.cursor ",
            "chopin.curso",
            "chopin.cursorx",
        ] {
            assert_eq!(
                signer.verify(purpose, &token),
                Err(VerifyError::BadSignature),
                "{purpose:?}"
            );
        }
        // The length prefix keeps purpose and payload apart: moving a byte from one to the
        // other changes the MAC input.
        let a = signer.sign("ab", b"c", HOUR);
        let (_, tag_a) = a.split_once('.').unwrap();
        let b = signer.sign("a", b"bc", HOUR);
        let (_, tag_b) = b.split_once('.').unwrap();
        assert_ne!(tag_a, tag_b);
    }

    #[test]
    fn expired_tokens_are_refused_after_the_signature_check() {
        let signer = signer(7);
        let now = SystemTime::now();
        let token = signer.sign_until("test", b"x", now + Duration::from_secs(60));
        assert_eq!(signer.verify_at("test", &token, now), Ok(b"x".to_vec()));
        assert_eq!(
            signer.verify_at("test", &token, now + Duration::from_secs(61)),
            Err(VerifyError::Expired)
        );
        let old = signer.sign_until("test", b"x", now - Duration::from_secs(1));
        assert_eq!(signer.verify("test", &old), Err(VerifyError::Expired));
        // An expired token of another key or purpose is a bad signature, not "expired": the
        // expiry of an unauthenticated token is never believed.
        assert_eq!(
            signer_other().verify("test", &old),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(signer.verify("other", &old), Err(VerifyError::BadSignature));
        // Extending the expiry breaks the signature.
        let (body, tag) = old.split_once('.').unwrap();
        let mut body = URL_SAFE_NO_PAD.decode(body).unwrap();
        body[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        let extended = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&body));
        assert_eq!(
            signer.verify("test", &extended),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        let signer = signer(7);
        // Body of 8 + 2 bytes = 10 bytes: 14 characters, the last carrying 2 unused bits.
        let token = signer.sign("test", b"hi", HOUR);
        let (body, tag) = token.split_once('.').unwrap();
        assert_eq!(body.len() % 4, 2);
        let last = body.as_bytes()[body.len() - 1];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.iter().position(|&c| c == last).unwrap();
        let mut found = 0;
        // Every other value of the unused low bits spells the same bytes for a lax decoder.
        for low in 1..16usize {
            let sibling = alphabet[(index & !15) | ((index & 15) ^ low)] as char;
            let altered = format!("{}{sibling}", &body[..body.len() - 1]);
            if lax_decode(&altered) != lax_decode(body) {
                continue;
            }
            found += 1;
            let forged = format!("{altered}.{tag}");
            assert_eq!(signer.verify("test", &forged), Err(VerifyError::Malformed));
        }
        assert_eq!(found, 15, "a 2-character tail has 4 unused bits");
        // Same for the tag (32 bytes: 43 characters, 2 unused bits).
        let last = tag.as_bytes()[tag.len() - 1];
        let index = alphabet.iter().position(|&c| c == last).unwrap();
        for low in 1..4usize {
            let sibling = alphabet[(index & !3) | ((index & 3) ^ low)] as char;
            let altered = format!("{}{sibling}", &tag[..tag.len() - 1]);
            assert_eq!(lax_decode(&altered), lax_decode(tag));
            let forged = format!("{body}.{altered}");
            assert_eq!(signer.verify("test", &forged), Err(VerifyError::Malformed));
        }
        // Padding and the standard alphabet are refused too.
        assert_eq!(
            signer.verify("test", &format!("{body}==.{tag}")),
            Err(VerifyError::Malformed)
        );
        let std_alphabet = token.replace('-', "+").replace('_', "/");
        if std_alphabet != token {
            assert_eq!(
                signer.verify("test", &std_alphabet),
                Err(VerifyError::Malformed)
            );
        }
        assert_eq!(signer.verify("test", &token), Ok(b"hi".to_vec()));
    }

    #[test]
    fn derived_keys_depend_on_secret_and_label() {
        let secret = [9u8; 40];
        let a = Signer::derive(&secret, b"label a").unwrap();
        let a2 = Signer::derive(&secret, b"label a").unwrap();
        let b = Signer::derive(&secret, b"label b").unwrap();
        let raw = Signer::new(&secret).unwrap();
        let token = a.sign("p", b"x", HOUR);
        assert!(a2.verify("p", &token).is_ok());
        assert_eq!(b.verify("p", &token), Err(VerifyError::BadSignature));
        assert_eq!(raw.verify("p", &token), Err(VerifyError::BadSignature));
        let r1 = Signer::random();
        let r2 = Signer::random();
        assert_eq!(
            r2.verify("p", &r1.sign("p", b"x", HOUR)),
            Err(VerifyError::BadSignature)
        );
    }
}
