//! JWT and auth settings (`CHOPIN_JWT_*`, `CHOPIN_AUTH_*`).

use std::str::FromStr;
use std::time::Duration;

use super::reader::{Reader, parse_bool, parse_duration, parse_positive};
use super::secret::Secret;

/// Shortest accepted `CHOPIN_JWT_SECRET`, in bytes (256 bits, the size of an HS256 key).
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// Largest accepted `CHOPIN_JWT_LEEWAY`: five minutes. Clocks kept by NTP differ by far less;
/// a larger leeway would keep expired tokens alive and accept tokens from the future.
pub const MAX_JWT_LEEWAY: Duration = Duration::from_secs(300);

/// The auth module's mail queue: jobs waiting for a worker, at most, by default
/// (`CHOPIN_AUTH_MAIL_QUEUE`).
pub const DEFAULT_MAIL_QUEUE_CAPACITY: usize = 1024;

/// The auth module's mail queue: worker tasks running jobs, by default
/// (`CHOPIN_AUTH_MAIL_WORKERS`).
pub const DEFAULT_MAIL_WORKERS: usize = 4;

/// Largest accepted `CHOPIN_AUTH_MAIL_QUEUE`: each waiting job holds a request's worth of
/// memory, and a queue that long is never drained at shutdown anyway.
pub const MAX_MAIL_QUEUE_CAPACITY: usize = 1_000_000;

/// Largest accepted `CHOPIN_AUTH_MAIL_WORKERS`.
pub const MAX_MAIL_WORKERS: usize = 1024;

/// The JWT signing algorithm, from `CHOPIN_JWT_ALGORITHM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `CHOPIN_JWT_SECRET` (the default).
    #[default]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256, from PEM keys.
    Rs256,
    /// ECDSA P-256 with SHA-256, from PEM keys.
    Es256,
    /// Ed25519, from PEM keys.
    EdDsa,
}

impl JwtAlgorithm {
    /// The name used in `CHOPIN_JWT_ALGORITHM` and in a token's `alg` header.
    pub const fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }
}

impl FromStr for JwtAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "HS256" => Ok(JwtAlgorithm::Hs256),
            "RS256" => Ok(JwtAlgorithm::Rs256),
            "ES256" => Ok(JwtAlgorithm::Es256),
            "EDDSA" => Ok(JwtAlgorithm::EdDsa),
            _ => Err("must be one of HS256, RS256, ES256, EdDSA".into()),
        }
    }
}

/// Where revoked access-token ids are kept, from `CHOPIN_AUTH_REVOCATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SharedStateBackend {
    /// In this process only (the default).
    #[default]
    Memory,
    /// In Redis (`REDIS_URL`, keys under `CHOPIN_CACHE_NAMESPACE`), shared by every instance
    /// (feature `redis`).
    Redis,
}

impl FromStr for SharedStateBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "memory" => Ok(SharedStateBackend::Memory),
            "redis" => Ok(SharedStateBackend::Redis),
            _ => Err("must be memory or redis".into()),
        }
    }
}

/// JWT and auth settings, used by [`Auth::from_config`](crate::auth::Auth::from_config); an
/// application without auth ignores them. See `docs/auth.md`.
///
/// `Debug` never shows the secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `CHOPIN_JWT_ALGORITHM` (`HS256`). The others need both PEM files; `Auth::from_config`
    /// reports missing or unreadable ones.
    pub algorithm: JwtAlgorithm,
    /// `CHOPIN_JWT_SECRET`: the HS256 key, at least 32 bytes. Required in production when the
    /// algorithm is HS256; in development and test a random key is generated when it is unset.
    pub secret: Option<Secret>,
    /// `CHOPIN_JWT_PRIVATE_KEY_FILE`: PEM private key for RS256 / ES256 / EdDSA.
    pub private_key_file: Option<String>,
    /// `CHOPIN_JWT_PUBLIC_KEY_FILE`: PEM public key for RS256 / ES256 / EdDSA.
    pub public_key_file: Option<String>,
    /// `CHOPIN_JWT_KID` (`k1`): the `kid` header of issued tokens.
    pub kid: String,
    /// `CHOPIN_JWT_PREVIOUS_SECRET`: an HS256 key still accepted for verification (rotation);
    /// tokens signed with it carry `CHOPIN_JWT_PREVIOUS_KID`.
    pub previous_secret: Option<Secret>,
    /// `CHOPIN_JWT_PREVIOUS_KID` (`k0`).
    pub previous_kid: String,
    /// `CHOPIN_JWT_ISSUER`: the `iss` claim issued and required (unset: neither).
    pub issuer: Option<String>,
    /// `CHOPIN_JWT_AUDIENCE`: the `aud` claim issued and required (unset: neither).
    pub audience: Option<String>,
    /// `CHOPIN_JWT_ACCESS_TTL` (`15m`): lifetime of an access token.
    pub access_ttl: Duration,
    /// `CHOPIN_JWT_REFRESH_TTL` (`30d`): lifetime of a refresh token.
    pub refresh_ttl: Duration,
    /// `CHOPIN_JWT_LEEWAY` (`30s`, at most [`MAX_JWT_LEEWAY`]): clock skew tolerated on `exp`,
    /// `nbf` and `iat`.
    pub leeway: Duration,
    /// `CHOPIN_AUTH_COOKIE`: also read the access token from this cookie (unset: header only).
    pub cookie: Option<String>,
    /// `CHOPIN_AUTH_REVOCATION` (`memory`): where revoked token ids live.
    pub revocation: SharedStateBackend,
    /// `CHOPIN_JWT_ACCEPT_UNTYPED` (`false`): also accept access tokens without the `at+jwt`
    /// type, as issued before access tokens were typed. Turn it on for one access-token
    /// lifetime while upgrading a live deployment, then off. See `docs/auth.md`.
    pub accept_untyped: bool,
    /// `CHOPIN_AUTH_MAIL_QUEUE` (1024, at most [`MAX_MAIL_QUEUE_CAPACITY`]): background jobs of
    /// the auth routes (reset and verification mails) waiting for a worker, at most; beyond
    /// it they are dropped and counted. See `AuthModule::mail_queue`.
    pub mail_queue: usize,
    /// `CHOPIN_AUTH_MAIL_WORKERS` (4, at most [`MAX_MAIL_WORKERS`]): tasks running those jobs.
    pub mail_workers: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            algorithm: JwtAlgorithm::Hs256,
            secret: None,
            private_key_file: None,
            public_key_file: None,
            kid: "k1".into(),
            previous_secret: None,
            previous_kid: "k0".into(),
            issuer: None,
            audience: None,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            leeway: Duration::from_secs(30),
            cookie: None,
            revocation: SharedStateBackend::Memory,
            accept_untyped: false,
            mail_queue: DEFAULT_MAIL_QUEUE_CAPACITY,
            mail_workers: DEFAULT_MAIL_WORKERS,
        }
    }
}

/// A whole number from 1 to `max`.
fn at_most(s: &str, max: usize) -> Result<usize, String> {
    let n = parse_positive::<usize>(s)?;
    if n > max {
        return Err(format!("must be at most {max}"));
    }
    Ok(n)
}

impl AuthConfig {
    /// Read `CHOPIN_JWT_*` and `CHOPIN_AUTH_*`.
    pub(super) fn from_reader(r: &mut Reader<'_>) -> AuthConfig {
        let auth_defaults = AuthConfig::default();
        let secret = |s: &str| {
            if s.len() < MIN_JWT_SECRET_LEN {
                Err(format!(
                    "must be at least {MIN_JWT_SECRET_LEN} bytes (generate one with `openssl rand -base64 48`)"
                ))
            } else {
                Ok(Secret::new(s))
            }
        };
        let kid = |s: &str| {
            if !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                Ok(s.to_string())
            } else {
                Err("must be 1-64 letters, digits, '_', '.' or '-'".to_string())
            }
        };
        let positive_duration = |s: &str| match parse_duration(s) {
            Ok(d) if d.is_zero() => Err("must be longer than 0".to_string()),
            other => other,
        };
        let auth = AuthConfig {
            algorithm: r
                .get("CHOPIN_JWT_ALGORITHM", |s| s.parse::<JwtAlgorithm>())
                .unwrap_or_default(),
            secret: r.get_secret("CHOPIN_JWT_SECRET", secret),
            private_key_file: r.raw("CHOPIN_JWT_PRIVATE_KEY_FILE"),
            public_key_file: r.raw("CHOPIN_JWT_PUBLIC_KEY_FILE"),
            kid: r.get("CHOPIN_JWT_KID", kid).unwrap_or(auth_defaults.kid),
            previous_secret: r.get_secret("CHOPIN_JWT_PREVIOUS_SECRET", secret),
            previous_kid: r
                .get("CHOPIN_JWT_PREVIOUS_KID", kid)
                .unwrap_or(auth_defaults.previous_kid),
            issuer: r.raw("CHOPIN_JWT_ISSUER"),
            audience: r.raw("CHOPIN_JWT_AUDIENCE"),
            access_ttl: r
                .get("CHOPIN_JWT_ACCESS_TTL", positive_duration)
                .unwrap_or(auth_defaults.access_ttl),
            refresh_ttl: r
                .get("CHOPIN_JWT_REFRESH_TTL", positive_duration)
                .unwrap_or(auth_defaults.refresh_ttl),
            leeway: r
                .get("CHOPIN_JWT_LEEWAY", |s| match parse_duration(s) {
                    Ok(d) if d > MAX_JWT_LEEWAY => Err(format!(
                        "must be at most {}s (5m): a clock skew that large keeps expired \
                         tokens alive; fix the clocks (NTP) instead",
                        MAX_JWT_LEEWAY.as_secs()
                    )),
                    other => other,
                })
                .unwrap_or(auth_defaults.leeway),
            cookie: r.get("CHOPIN_AUTH_COOKIE", |s| {
                if s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                {
                    Ok(s.to_string())
                } else {
                    Err("must be a cookie name (letters, digits, '_', '-', '.')".to_string())
                }
            }),
            revocation: r
                .get("CHOPIN_AUTH_REVOCATION", |s| {
                    s.parse::<SharedStateBackend>()
                })
                .unwrap_or_default(),
            accept_untyped: r
                .get("CHOPIN_JWT_ACCEPT_UNTYPED", parse_bool)
                .unwrap_or(auth_defaults.accept_untyped),
            mail_queue: r
                .get("CHOPIN_AUTH_MAIL_QUEUE", |s| {
                    at_most(s, MAX_MAIL_QUEUE_CAPACITY)
                })
                .unwrap_or(auth_defaults.mail_queue),
            mail_workers: r
                .get("CHOPIN_AUTH_MAIL_WORKERS", |s| at_most(s, MAX_MAIL_WORKERS))
                .unwrap_or(auth_defaults.mail_workers),
        };
        if auth.previous_secret.is_some() && auth.previous_kid == auth.kid {
            let value = auth.previous_kid.clone();
            r.problem(
                "CHOPIN_JWT_PREVIOUS_KID",
                &value,
                "must differ from CHOPIN_JWT_KID",
            );
        }
        auth
    }
}
