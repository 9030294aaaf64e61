//! HMAC-SHA256-signed opaque tokens, for values Chopin (or the application) hands to clients
//! and must get back unmodified: pagination cursors, "continue" tokens, state parameters.
//!
//! The payload is readable by the client (base64url), not secret; the signature makes any
//! change detectable. Verification is constant-time (ring's `hmac::verify`).
//!
//! ```
//! use chopin_core::signing::Signer;
//!
//! let signer = Signer::new(b"a-key-of-at-least-thirty-two-bytes!!").unwrap();
//! let cursor = signer.sign(b"id>1234");
//! assert_eq!(signer.verify(&cursor).as_deref(), Some(&b"id>1234"[..]));
//! let mut forged = cursor.clone();
//! forged.replace_range(0..1, if cursor.starts_with('a') { "b" } else { "a" });
//! assert_eq!(signer.verify(&forged), None);
//! ```

use ring::hmac;

/// Shortest accepted key, in bytes.
pub const MIN_KEY_LEN: usize = 32;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_encode(input: &[u8], out: &mut String) {
    for chunk in input.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
}

/// Decode unpadded base64url; `None` on any other character or an impossible length.
pub(crate) fn b64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let bytes = input.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = B64.iter().position(|&b| b == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        let bytes_out = chunk.len() - 1;
        for i in 0..bytes_out {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
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

/// The key given to [`Signer::new`] is shorter than [`MIN_KEY_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a signing key must be at least {MIN_KEY_LEN} bytes")]
pub struct KeyTooShort;

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

    /// `base64url(payload) "." base64url(HMAC(payload))`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let tag = hmac::sign(&self.key, payload);
        let mut out = String::with_capacity(payload.len() * 4 / 3 + 48);
        b64_encode(payload, &mut out);
        out.push('.');
        b64_encode(tag.as_ref(), &mut out);
        out
    }

    /// The payload of a token this signer produced, or `None` when it was altered or is
    /// not a token at all.
    pub fn verify(&self, token: &str) -> Option<Vec<u8>> {
        let (payload, tag) = token.split_once('.')?;
        let payload = b64_decode(payload)?;
        let tag = b64_decode(tag)?;
        hmac::verify(&self.key, &payload, &tag).ok()?;
        Some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length_and_rejects_changes() {
        let signer = Signer::new(&[7u8; 32]).unwrap();
        let other = Signer::new(&[8u8; 32]).unwrap();
        for len in 0..20 {
            let payload: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let token = signer.sign(&payload);
            assert_eq!(signer.verify(&token), Some(payload.clone()));
            assert_eq!(other.verify(&token), None);
            let (p, t) = token.split_once('.').unwrap();
            assert_eq!(signer.verify(&format!("{p}x.{t}")), None);
            assert_eq!(signer.verify(p), None);
        }
        assert!(Signer::new(b"short").is_err());
    }
}
