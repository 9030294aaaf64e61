//! Authentication and authorisation: JWT access tokens, the [`AuthUser`] extractor, argon2id
//! passwords, refresh tokens with rotation and reuse detection, revocation, roles and
//! permissions, and a mountable set of auth routes (feature `auth`).
//!
//! [`Auth`] is the handle that issues, verifies and revokes tokens. Install it on the router
//! (`App::auth`, or `.layer(auth.extension())` in plain axum) and ask for an [`AuthUser`] in a
//! handler:
//!
//! ```
//! use axum::{Router, routing::get};
//! use chopin_core::auth::{Auth, AuthUser, JwtKeys, TokenSettings};
//! use chopin_core::config::Environment;
//! use chopin_core::prelude::*;
//!
//! async fn me(user: AuthUser) -> ApiResponse<String> {
//!     ApiResponse::success(user.sub.clone())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = Auth::new(
//!     JwtKeys::hs256("k1", b"a-secret-of-at-least-thirty-two-bytes")?,
//!     TokenSettings::default(),
//!     Environment::Development, // usually `config.environment`
//! );
//! let router: Router = Router::new()
//!     .route("/me", get(me))
//!     .layer(auth.extension());
//! let token = auth.issue(auth.claims_for("42"))?;
//! # let _ = (router, token); Ok(()) }
//! ```
//!
//! Every rejection is a 401 `UNAUTHORIZED` envelope with `WWW-Authenticate: Bearer` (no
//! token) or `Bearer error="invalid_token"` (a token that is malformed, tampered, expired,
//! not yet valid, signed with another algorithm or key, for another issuer or audience, of
//! another type than `at+jwt`, or revoked). See `docs/auth.md`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::error::ChopinError;

mod extractor;
mod jwt;
#[cfg(chopin_db)]
mod mail_queue;
mod mailer;
pub mod password;
mod rate_limit;
mod revocation;
mod roles;
#[cfg(feature = "smtp")]
mod smtp;

#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod entity;
#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod migration;
#[cfg(chopin_db)]
mod routes;
#[cfg(chopin_db)]
mod store;

pub use extractor::{AuthUser, bearer_token};
pub use jwt::{
    ACCESS_TOKEN_TYPE, APP_TOKEN_TYPE, AuthClaims, Claims, JwtKeys, NoExtra, TokenSettings,
};
#[cfg(chopin_db)]
pub use mail_queue::{DEFAULT_MAIL_QUEUE_CAPACITY, DEFAULT_MAIL_WORKERS};
pub use mailer::{LogMailer, Mail, MailKind, Mailer, MemoryMailer, mailer_from_config};
pub use rate_limit::AuthRateLimits;
pub use revocation::Revocations;
pub use roles::{Permission, RequirePermission, RequireRole, Role};
#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use routes::{
    AuthModule, MAX_EMAIL_LEN, MAX_EMAIL_LOCAL_LEN, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, TokenPair,
};
#[cfg(feature = "smtp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smtp")))]
pub use smtp::SmtpMailer;
#[cfg(chopin_db)]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use store::{AuthStore, User};

use jwt::{Jwt, TokenKind};

/// Why a token was refused, or auth could not be set up.
///
/// Converts into a [`ChopinError`]: the token cases into 401 (see the module docs), an
/// unreachable revocation store into 503, configuration and internal failures into 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token in the request.
    #[error("no access token")]
    Missing,
    /// Not a JWT, or its header or claims do not parse.
    #[error("malformed token")]
    Malformed,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The header's `alg` is not the algorithm of the key (including `none`).
    #[error("wrong algorithm")]
    WrongAlgorithm,
    /// The signature does not match (tampered, or signed with another key).
    #[error("bad signature")]
    BadSignature,
    /// The `kid` names no known key.
    #[error("unknown key id")]
    UnknownKey,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is missing (or `jti` is empty).
    #[error("missing claim")]
    MissingClaim,
    /// The `typ` header is not the one expected: an application token ([`Auth::sign`])
    /// presented as an access token or the other way round, or an untyped (pre-upgrade)
    /// access token while [`TokenSettings::accept_untyped`] is off.
    #[error("wrong token type")]
    WrongType,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// The token id was revoked (logout).
    #[error("token revoked")]
    Revoked,
    /// The revocation store (Redis) could not be asked.
    #[error("revocation store unavailable")]
    Unavailable,
    /// Invalid auth configuration (start-up error).
    #[error("auth configuration: {0}")]
    Config(String),
    /// An unexpected failure.
    #[error("auth internal error: {0}")]
    Internal(String),
}

impl From<AuthError> for ChopinError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Missing => ChopinError::Unauthorized("authentication required".into()),
            AuthError::Expired => ChopinError::InvalidToken("the access token has expired".into()),
            AuthError::Revoked => {
                ChopinError::InvalidToken("the access token has been revoked".into())
            }
            AuthError::Unavailable => ChopinError::unavailable(
                "authentication is temporarily unavailable",
                crate::error::DEFAULT_RETRY_AFTER,
            ),
            AuthError::Config(m) | AuthError::Internal(m) => ChopinError::internal(m),
            _ => ChopinError::InvalidToken("the access token is invalid".into()),
        }
    }
}

/// The `reason` label of a refused token.
#[cfg(feature = "metrics")]
fn failure_reason(err: &AuthError) -> &'static str {
    match err {
        AuthError::Expired => "expired",
        AuthError::Revoked => "revoked",
        // The check could not be made (the store, or a failure of ours): refused all the same.
        AuthError::Unavailable | AuthError::Internal(_) | AuthError::Config(_) => "unavailable",
        _ => "invalid",
    }
}

impl axum::response::IntoResponse for AuthError {
    fn into_response(self) -> axum::response::Response {
        ChopinError::from(self).into_response()
    }
}

struct AuthInner {
    jwt: Jwt,
    environment: crate::config::Environment,
    revocations: Revocations,
    verified: moka::future::Cache<String, Arc<VerifiedToken>>,
    route_limits: AuthRateLimits,
    /// The auth module's mail queue: capacity and workers.
    mail_queue: (usize, usize),
}

/// Most verified tokens remembered (see [`Auth::verify`]).
const VERIFIED_CAPACITY: u64 = 10_000;

/// A token whose signature, algorithm, key, issuer and audience were checked: its decoded
/// payload, and the time window it is valid in.
struct VerifiedToken {
    payload: Vec<u8>,
    exp: i64,
    nbf: i64,
}

#[derive(serde::Deserialize)]
struct TimeClaims {
    exp: i64,
    nbf: i64,
}

impl VerifiedToken {
    /// The payload of a token that was just verified, or `None` if it cannot be remembered.
    fn of(token: &str) -> Option<VerifiedToken> {
        let payload = token.split('.').nth(1)?;
        let payload = crate::signing::b64_decode(payload)?;
        let times: TimeClaims = serde_json::from_slice(&payload).ok()?;
        Some(VerifiedToken {
            payload,
            exp: times.exp,
            nbf: times.nbf,
        })
    }

    /// The claims, if the token is still inside its time window (same rules as the full
    /// check: `exp` and `nbf` within the leeway).
    fn claims<C: AuthClaims>(&self, leeway: i64) -> Result<C, AuthError> {
        let now = jwt::now_secs();
        if self.exp < now.saturating_sub(leeway) {
            return Err(AuthError::Expired);
        }
        if self.nbf > now.saturating_add(leeway) {
            return Err(AuthError::NotYetValid);
        }
        serde_json::from_slice(&self.payload).map_err(|_| AuthError::Malformed)
    }
}

struct UntilTokenExpiry;

impl moka::Expiry<String, Arc<VerifiedToken>> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        token: &Arc<VerifiedToken>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        let left = token.exp.saturating_sub(jwt::now_secs()).max(0);
        Some(Duration::from_secs(left as u64))
    }
}

/// Issues, verifies and revokes access tokens. A cheap clone (an `Arc`).
///
/// Build it from the configuration with [`Auth::from_config`], or from explicit keys with
/// [`Auth::new`]; then install it with [`App::auth`](crate::App::auth) or
/// [`Auth::extension`].
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("keys", self.inner.jwt.keys())
            .field("settings", &self.inner.jwt.settings)
            .field("revocations", &self.inner.revocations)
            .finish()
    }
}

impl Auth {
    /// An `Auth` with the given keys and settings, keeping revocations in this process, for
    /// `environment` (pass `config.environment`: it decides which mailers the auth module
    /// accepts, see [`Auth::environment`]).
    pub fn new(
        keys: JwtKeys,
        settings: TokenSettings,
        environment: crate::config::Environment,
    ) -> Auth {
        let revocations = Revocations::memory();
        Auth::with_revocations(keys, settings, revocations, environment)
    }

    /// An `Auth` with the given revocation store (for example [`Revocations::redis`]), for
    /// `environment` (pass `config.environment`).
    pub fn with_revocations(
        keys: JwtKeys,
        settings: TokenSettings,
        revocations: Revocations,
        environment: crate::config::Environment,
    ) -> Auth {
        Auth::build(
            keys,
            settings,
            revocations,
            environment,
            AuthRateLimits::default(),
            (
                crate::config::DEFAULT_MAIL_QUEUE_CAPACITY,
                crate::config::DEFAULT_MAIL_WORKERS,
            ),
        )
    }

    fn build(
        keys: JwtKeys,
        settings: TokenSettings,
        revocations: Revocations,
        environment: crate::config::Environment,
        route_limits: AuthRateLimits,
        mail_queue: (usize, usize),
    ) -> Auth {
        Auth {
            inner: Arc::new(AuthInner {
                jwt: Jwt::new(keys, settings),
                environment,
                revocations,
                verified: moka::future::Cache::builder()
                    .max_capacity(VERIFIED_CAPACITY)
                    .expire_after(UntilTokenExpiry)
                    .build(),
                route_limits,
                mail_queue,
            }),
        }
    }

    /// Keys, lifetimes and revocation store from the configuration (`CHOPIN_JWT_*`,
    /// `CHOPIN_AUTH_*`; Redis from `REDIS_URL` and `CHOPIN_CACHE_NAMESPACE`). Fails in
    /// production without a secret, and when Redis is configured but unreachable.
    pub async fn from_config(config: &Config) -> Result<Auth, AuthError> {
        let keys = JwtKeys::from_config(&config.auth, config.environment)?;
        if config.environment.is_production()
            && (config.auth.issuer.is_none() || config.auth.audience.is_none())
        {
            tracing::warn!(
                "CHOPIN_JWT_ISSUER / CHOPIN_JWT_AUDIENCE are not both set: tokens of another \
                 service sharing this signing key would be accepted; set both (docs/auth.md)"
            );
        }
        if config.auth.accept_untyped {
            tracing::warn!(
                "CHOPIN_JWT_ACCEPT_UNTYPED is on: access tokens without the at+jwt type are \
                 accepted; turn it off once one access-token lifetime has passed since the upgrade"
            );
        }
        let revocations = match config.auth.revocation {
            crate::config::SharedStateBackend::Memory => Revocations::memory(),
            crate::config::SharedStateBackend::Redis => {
                Revocations::from_cache_config(&config.cache).await?
            }
        };
        Ok(Auth::build(
            keys,
            TokenSettings::from(&config.auth),
            revocations,
            config.environment,
            AuthRateLimits::from_config(config)?,
            (config.auth.mail_queue, config.auth.mail_workers),
        ))
    }

    /// The environment this `Auth` was configured for: the configuration's with
    /// [`Auth::from_config`], the one given to [`Auth::new`] and [`Auth::with_revocations`].
    /// Outside development the auth module refuses the development [`LogMailer`].
    pub fn environment(&self) -> crate::config::Environment {
        self.inner.environment
    }

    /// The settings (lifetimes, issuer, audience, cookie).
    pub fn settings(&self) -> &TokenSettings {
        &self.inner.jwt.settings
    }

    /// The key set.
    pub fn keys(&self) -> &JwtKeys {
        self.inner.jwt.keys()
    }

    /// The revocation store.
    pub fn revocations(&self) -> &Revocations {
        &self.inner.revocations
    }

    /// An `Extension` layer that makes this `Auth` available to [`AuthUser`] (what
    /// [`App::auth`](crate::App::auth) installs).
    pub fn extension(&self) -> axum::Extension<Auth> {
        axum::Extension(self.clone())
    }

    /// Fresh claims for `subject`: issued now, valid from now, expiring after the access TTL,
    /// a new random `jti`, and the configured issuer and audience.
    pub fn claims_for(&self, subject: impl Into<String>) -> Claims {
        self.claims_with(subject, NoExtra {})
    }

    /// Like [`Auth::claims_for`], with the application's own claims.
    pub fn claims_with<E>(&self, subject: impl Into<String>, extra: E) -> Claims<E> {
        let now = jwt::now_secs();
        let settings = self.settings();
        Claims {
            sub: subject.into(),
            exp: now.saturating_add(settings.access_ttl.as_secs() as i64),
            iat: now,
            nbf: now,
            iss: settings.issuer.clone(),
            aud: settings.audience.clone(),
            // A failing OS random generator leaves an empty id, which `issue` refuses.
            jti: jwt::new_jti().unwrap_or_default(),
            roles: Vec::new(),
            perms: Vec::new(),
            extra,
        }
    }

    /// Sign `claims` into a compact JWT with the signing key: an access token, typed
    /// `at+jwt` ([`ACCESS_TOKEN_TYPE`]).
    pub fn issue<E: Serialize>(&self, claims: Claims<E>) -> Result<String, AuthError> {
        if claims.jti.is_empty() {
            return Err(AuthError::Internal("token id missing".into()));
        }
        self.inner.jwt.encode(&claims, TokenKind::Access)
    }

    /// Sign any serialisable claims (no checks) into an application token (an invitation, a
    /// download link, …), typed `app+jwt` ([`APP_TOKEN_TYPE`]): [`Auth::verify`],
    /// [`Auth::decode`] and [`AuthUser`] refuse it, so it is never a bearer credential. Read it
    /// back with [`Auth::decode_signed`]. Give it an `exp`.
    ///
    /// ```
    /// use chopin_core::auth::{Auth, AuthError, Claims, JwtKeys, TokenSettings};
    /// use chopin_core::config::Environment;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Invite { team: String, exp: i64 }
    ///
    /// let auth = Auth::new(
    ///     JwtKeys::hs256("k1", b"a-secret-of-at-least-thirty-two-bytes").unwrap(),
    ///     TokenSettings::default(),
    ///     Environment::Development,
    /// );
    /// let exp = auth.claims_for("42").exp; // the access-token lifetime from now
    /// let token = auth.sign(&Invite { team: "core".into(), exp }).unwrap();
    /// assert_eq!(auth.decode_signed::<Invite>(&token).unwrap().team, "core");
    /// // Not an access token, even with every claim an access token has:
    /// let token = auth.sign(&auth.claims_for("42")).unwrap();
    /// assert_eq!(auth.decode::<Claims>(&token).unwrap_err(), AuthError::WrongType);
    /// ```
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        self.inner.jwt.encode(claims, TokenKind::App)
    }

    /// Verify an application token made with [`Auth::sign`]: signature, algorithm and key as
    /// for access tokens, the `app+jwt` type, `exp` (required) and `nbf` within the leeway,
    /// and the configured issuer and audience when the token carries `iss` / `aud`. Access
    /// tokens are refused ([`AuthError::WrongType`]). Not cached, not checked for
    /// revocation: the claims are the application's to check.
    pub fn decode_signed<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<T, AuthError> {
        self.inner.jwt.decode(token, TokenKind::App)
    }

    /// Verify `token`'s signature and claims, then check that it is not revoked.
    ///
    /// A token that passed the full check is remembered (up to 10 000, each until its `exp`),
    /// keyed by the whole token: presenting it again skips the base64, header, signature,
    /// issuer and audience work, which cannot change for the same bytes and the same keys;
    /// `exp` and `nbf` are checked again, the claims deserialised again, and revocation is
    /// checked on every call.
    ///
    /// With the `metrics` feature, every refusal is counted in
    /// `chopin_auth_token_verification_failures_total` by `reason`: `expired`, `revoked`,
    /// `unavailable` (the revocation store could not be asked: refused, fail closed) or
    /// `invalid` (anything else: malformed, bad signature, wrong algorithm, type, issuer or
    /// audience, unknown `kid`, missing claims, not yet valid).
    pub async fn verify<C: AuthClaims>(&self, token: &str) -> Result<C, AuthError> {
        let result = self.verify_uncounted(token).await;
        #[cfg(feature = "metrics")]
        if let Err(err) = &result {
            crate::metrics::global()
                .auth
                .verification_failure(failure_reason(err));
        }
        result
    }

    async fn verify_uncounted<C: AuthClaims>(&self, token: &str) -> Result<C, AuthError> {
        let leeway = self.settings().leeway.as_secs() as i64;
        let claims: C = match self.inner.verified.get(token).await {
            Some(known) => known.claims(leeway)?,
            None => {
                let claims: C = self.decode(token)?;
                if let Some(known) = VerifiedToken::of(token) {
                    self.inner
                        .verified
                        .insert(token.to_string(), Arc::new(known))
                        .await;
                }
                claims
            }
        };
        if self.inner.revocations.is_revoked(claims.token_id()).await? {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// Verify signature and claims only (no revocation lookup): cheap, synchronous, for
    /// keying a rate limit and similar uses where a revoked token does no harm.
    ///
    /// Besides what the signature library checks (signature, algorithm, key, `exp`, `nbf`,
    /// issuer, audience), the `typ` header must be `at+jwt` ([`AuthError::WrongType`]; see
    /// [`ACCESS_TOKEN_TYPE`] for tokens issued before types), the token id must be non-empty ([`AuthError::MissingClaim`]) and
    /// `iat`, when the claims type has it, not in the future beyond the leeway
    /// ([`AuthError::IssuedInFuture`]).
    pub fn decode<C: AuthClaims>(&self, token: &str) -> Result<C, AuthError> {
        let claims: C = self.inner.jwt.decode(token, TokenKind::Access)?;
        if claims.token_id().is_empty() {
            return Err(AuthError::MissingClaim);
        }
        let leeway = self.settings().leeway.as_secs() as i64;
        if claims
            .issued_at()
            .is_some_and(|iat| iat > jwt::now_secs().saturating_add(leeway))
        {
            return Err(AuthError::IssuedInFuture);
        }
        Ok(claims)
    }

    /// The claims of `token` if [`Auth::verify`] verified it and still remembers it, and it
    /// is inside its time window; `None` otherwise. Never verifies a signature and never asks
    /// the revocation store: for keying a rate limit ([`RateLimitLayer::per_user`]), where a
    /// junk token must cost nothing.
    ///
    /// [`RateLimitLayer::per_user`]: crate::rate_limit::RateLimitLayer::per_user
    pub(crate) async fn remembered<C: AuthClaims>(&self, token: &str) -> Option<C> {
        let leeway = self.settings().leeway.as_secs() as i64;
        self.inner.verified.get(token).await?.claims(leeway).ok()
    }

    /// The auth module's route limits this `Auth` was configured with
    /// ([`AuthRateLimits::from_config`] with [`Auth::from_config`], the defaults in process
    /// otherwise); the auth module (`AuthModule`) starts from them.
    pub fn route_limits(&self) -> &AuthRateLimits {
        &self.inner.route_limits
    }

    /// The capacity and worker count of the auth module's mail queue this `Auth` was
    /// configured with (`CHOPIN_AUTH_MAIL_QUEUE`, `CHOPIN_AUTH_MAIL_WORKERS` with
    /// [`Auth::from_config`], [`DEFAULT_MAIL_QUEUE_CAPACITY`] and [`DEFAULT_MAIL_WORKERS`]
    /// otherwise); the auth module (`AuthModule`) starts from them.
    pub fn mail_queue_limits(&self) -> (usize, usize) {
        self.inner.mail_queue
    }

    /// Revoke the token with these claims until it expires (plus the leeway).
    pub async fn revoke<C: AuthClaims>(&self, claims: &C) -> Result<(), AuthError> {
        let until = claims
            .expires_at()
            .saturating_add(self.settings().leeway.as_secs() as i64);
        self.inner
            .revocations
            .revoke(claims.token_id(), until)
            .await
    }

    /// Access-token lifetime in whole seconds (for `expires_in`).
    pub fn access_ttl_secs(&self) -> u64 {
        self.settings().access_ttl.as_secs()
    }

    /// Refresh-token lifetime.
    pub fn refresh_ttl(&self) -> Duration {
        self.settings().refresh_ttl
    }
}
