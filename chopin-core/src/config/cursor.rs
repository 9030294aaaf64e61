//! The key and lifetime of signed pagination cursors (`CHOPIN_CURSOR_*`).

use std::time::Duration;

use crate::signing::{MIN_KEY_LEN, Signer};

use super::auth::{AuthConfig, JwtAlgorithm};
use super::reader::{ConfigError, ConfigProblem, Reader, parse_duration};
use super::secret::Secret;
use super::{Config, Environment};

/// The HKDF label of the cursor key derived from `CHOPIN_JWT_SECRET`: distinct from every other
/// use of that secret, so the derived key signs nothing but cursors.
pub const CURSOR_KEY_INFO: &[u8] = b"chopin.cursor-key.v1";

/// Settings of the signed cursors that
/// [`CursorPagination`](crate::extractors::CursorPagination) reads and writes. `Debug` never
/// shows the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorConfig {
    /// `CHOPIN_CURSOR_SECRET`: the HMAC key of cursors, at least 32 bytes. When unset, the key
    /// is derived from `CHOPIN_JWT_SECRET` (HS256) with HKDF; without either, a random key per
    /// process outside production, and [`Config::cursor_signer`] refuses production.
    pub secret: Option<Secret>,
    /// `CHOPIN_CURSOR_TTL` (`1h`): how long a cursor stays valid after it was issued.
    pub ttl: Duration,
}

/// Default of `CHOPIN_CURSOR_TTL`.
pub const DEFAULT_CURSOR_TTL: Duration = Duration::from_secs(3600);

impl Default for CursorConfig {
    fn default() -> Self {
        CursorConfig {
            secret: None,
            ttl: DEFAULT_CURSOR_TTL,
        }
    }
}

impl CursorConfig {
    /// Read `CHOPIN_CURSOR_SECRET` and `CHOPIN_CURSOR_TTL`.
    pub(super) fn from_reader(r: &mut Reader<'_>) -> CursorConfig {
        let secret = r.get_secret("CHOPIN_CURSOR_SECRET", |s| {
            if s.len() < MIN_KEY_LEN {
                Err(format!(
                    "must be at least {MIN_KEY_LEN} bytes (generate one with `openssl rand -base64 48`)"
                ))
            } else {
                Ok(Secret::new(s))
            }
        });
        let ttl = r
            .get("CHOPIN_CURSOR_TTL", |s| match parse_duration(s) {
                Ok(d) if d < Duration::from_secs(1) => Err("must be at least 1s".to_string()),
                other => other,
            })
            .unwrap_or(DEFAULT_CURSOR_TTL);
        CursorConfig { secret, ttl }
    }

    /// The cursor key: `CHOPIN_CURSOR_SECRET`, else HKDF-SHA256 of `CHOPIN_JWT_SECRET` (when
    /// the JWT algorithm is HS256) under [`CURSOR_KEY_INFO`], else a random key for this
    /// process outside production. In production without either secret: a [`ConfigError`]
    /// naming `CHOPIN_CURSOR_SECRET`.
    ///
    /// A random key is new on every call: build the signer once (as [`App`](crate::App) does).
    pub fn signer(
        &self,
        environment: Environment,
        auth: &AuthConfig,
    ) -> Result<Signer, ConfigError> {
        let problem = |problem: &str| ConfigError {
            problems: vec![ConfigProblem {
                variable: "CHOPIN_CURSOR_SECRET",
                value: String::new(),
                problem: problem.to_string(),
            }],
        };
        if let Some(secret) = &self.secret {
            return Signer::new(secret.expose().as_bytes())
                .map_err(|_| problem("must be at least 32 bytes"));
        }
        if auth.algorithm == JwtAlgorithm::Hs256
            && let Some(jwt) = &auth.secret
        {
            return Signer::derive(jwt.expose().as_bytes(), CURSOR_KEY_INFO)
                .map_err(|_| problem("CHOPIN_JWT_SECRET is too short to derive a cursor key"));
        }
        if environment.is_production() {
            return Err(problem(
                "is required in production (signs pagination cursors; at least 32 random bytes, \
                 e.g. `openssl rand -base64 48`), unless CHOPIN_JWT_SECRET (HS256) is set to \
                 derive it from",
            ));
        }
        Ok(Signer::random())
    }
}

impl Config {
    /// The key of pagination cursors under this configuration: see [`CursorConfig::signer`].
    ///
    /// [`App`](crate::App) calls it once and hands the key to the
    /// [`CursorPagination`](crate::extractors::CursorPagination) extractor. Call it in `main`
    /// too (`config.cursor_signer()?`) to stop start-up in production when no key is
    /// configured; otherwise cursor requests answer 500 until one is.
    pub fn cursor_signer(&self) -> Result<Signer, ConfigError> {
        self.cursor.signer(self.environment, &self.auth)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::tests::from;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-cursor";
    const JWT: &str = "0123456789abcdef0123456789abcdef-jwt-key";

    fn token_of(config: &Config) -> String {
        config
            .cursor_signer()
            .unwrap()
            .sign("p", b"x", Duration::from_secs(60))
    }

    #[test]
    fn explicit_secret_wins_and_is_stable() {
        let c = from(&[("CHOPIN_CURSOR_SECRET", SECRET), ("CHOPIN_JWT_SECRET", JWT)]).unwrap();
        let token = token_of(&c);
        let again = Signer::new(SECRET.as_bytes()).unwrap();
        assert!(again.verify("p", &token).is_ok());
        assert_eq!(c.cursor.ttl, DEFAULT_CURSOR_TTL);
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn derived_from_the_jwt_secret_with_its_own_label() {
        let env = [("CHOPIN_ENV", "production"), ("CHOPIN_JWT_SECRET", JWT)];
        let c = from(&env).unwrap();
        let token = token_of(&c);
        // Two instances with the same JWT secret share cursors.
        assert!(
            from(&env)
                .unwrap()
                .cursor_signer()
                .unwrap()
                .verify("p", &token)
                .is_ok()
        );
        // The raw JWT secret is not the cursor key.
        let raw = Signer::new(JWT.as_bytes()).unwrap();
        assert!(raw.verify("p", &token).is_err());
        let derived = Signer::derive(JWT.as_bytes(), CURSOR_KEY_INFO).unwrap();
        assert!(derived.verify("p", &token).is_ok());
        // Not from an RS256 configuration's (unused) secret.
        let rs = from(&[
            ("CHOPIN_ENV", "production"),
            ("CHOPIN_JWT_ALGORITHM", "RS256"),
            ("CHOPIN_JWT_SECRET", JWT),
        ])
        .unwrap();
        assert!(rs.cursor_signer().is_err());
    }

    #[test]
    fn random_outside_production_required_in_production() {
        let dev = from(&[]).unwrap();
        let a = token_of(&dev);
        assert!(dev.cursor_signer().unwrap().verify("p", &a).is_err());
        let test = from(&[("CHOPIN_ENV", "test")]).unwrap();
        assert!(test.cursor_signer().is_ok());
        let err = from(&[("CHOPIN_ENV", "production")])
            .unwrap()
            .cursor_signer()
            .unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_CURSOR_SECRET");
        assert!(err.to_string().contains("required in production"));
    }

    #[test]
    fn invalid_values_are_refused_without_echoing_the_secret() {
        let err = from(&[("CHOPIN_CURSOR_SECRET", "too-short-secret")]).unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_CURSOR_SECRET");
        assert!(!err.to_string().contains("too-short-secret"));
        let err = from(&[("CHOPIN_CURSOR_TTL", "0s")]).unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_CURSOR_TTL");
        let c = from(&[("CHOPIN_CURSOR_TTL", "10m")]).unwrap();
        assert_eq!(c.cursor.ttl, Duration::from_secs(600));
    }
}
