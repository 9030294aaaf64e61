//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 iterations, 1 lane), always
//! off the async runtime (`spawn_blocking`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), chopin_core::ChopinError> {
//! use chopin_core::auth::password;
//! let hash = password::hash("correct horse battery staple").await?;
//! assert!(hash.starts_with("$argon2id$"));
//! assert!(password::verify("correct horse battery staple", &hash).await?);
//! assert!(!password::verify("wrong", &hash).await?);
//! # Ok(()) }
//! ```

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::ChopinError;

/// Memory cost in KiB (OWASP: 19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Iterations (OWASP: 2 with 19 MiB).
pub const ITERATIONS: u32 = 2;
/// Lanes (OWASP: 1).
pub const PARALLELISM: u32 = 1;

fn argon2() -> Result<Argon2<'static>, ChopinError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| ChopinError::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &str) -> Result<String, ChopinError> {
    let salt_bytes = super::jwt::random_bytes::<16>().map_err(ChopinError::from)?;
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| ChopinError::internal(format!("salt: {e}")))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ChopinError::internal(format!("password hashing failed: {e}")))
}

fn verify_blocking(password: &str, hash: &str) -> Result<bool, ChopinError> {
    let parsed = PasswordHash::new(hash)
        .map_err(|e| ChopinError::internal(format!("stored password hash is invalid: {e}")))?;
    // The parameters stored in the hash are used, so older hashes still verify.
    match argon2()?.verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(ChopinError::internal(format!(
            "password verification failed: {e}"
        ))),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ChopinError> + Send + 'static,
) -> Result<T, ChopinError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ChopinError::internal(format!("password task failed: {e}")))?
}

/// Hash `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a random
/// salt, on the blocking thread pool.
pub async fn hash(password: &str) -> Result<String, ChopinError> {
    let password = password.to_string();
    blocking(move || hash_blocking(&password)).await
}

/// `true` when `password` matches the PHC string `hash` (in constant time), on the blocking
/// thread pool.
pub async fn verify(password: &str, hash: &str) -> Result<bool, ChopinError> {
    let (password, hash) = (password.to_string(), hash.to_string());
    blocking(move || verify_blocking(&password, &hash)).await
}

/// A hash of a random password, computed once: verifying against it costs what verifying a
/// real password costs, so a login for an unknown account takes as long as one for a known
/// account.
pub async fn dummy_hash() -> Result<&'static str, ChopinError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let random = super::jwt::hex(&super::jwt::random_bytes::<16>().map_err(ChopinError::from)?);
    let h = hash(&random).await?;
    Ok(DUMMY.get_or_init(|| h))
}

/// Verify `password` against `hash`, or against the [dummy hash](dummy_hash) when there is no
/// account, and return `false` in that case: the same work either way.
pub async fn verify_or_dummy(password: &str, hash: Option<&str>) -> Result<bool, ChopinError> {
    match hash {
        Some(h) => verify(password, h).await,
        None => {
            let dummy = dummy_hash().await?;
            verify(password, dummy).await?;
            Ok(false)
        }
    }
}
