//! JSON Web Tokens: keys (with `kid` rotation), claims, issuing and verifying.
//!
//! Verification never trusts the token to choose how it is checked: the key is found by the
//! token's `kid` (or is the only / current key), and the accepted algorithm is the one that
//! key was configured with. A token whose header says `none`, or names another algorithm
//! (the classic "HS256 signed with the RSA public key" confusion), is rejected before any
//! signature check.
//!
//! Every token says what it is in its `typ` header: access tokens are `at+jwt` (RFC 9068),
//! application tokens made with [`Auth::sign`](super::Auth::sign) are `app+jwt`, and each is
//! only ever accepted as what it is (see [`ACCESS_TOKEN_TYPE`]).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::AuthError;
use crate::config::{AuthConfig, JwtAlgorithm, MIN_JWT_SECRET_LEN};

/// The `typ` header of every access token Chopin issues, and the only type
/// [`Auth::verify`](super::Auth::verify), [`Auth::decode`](super::Auth::decode) and the
/// [`AuthUser`](super::AuthUser) extractor accept (RFC 9068, section 2.1; `application/at+jwt`
/// is accepted too, and the comparison ignores case, as RFC 7515 section 4.1.9 asks).
///
/// Access tokens issued by earlier Chopin versions carry `typ: "JWT"` (or, from other
/// signers, no `typ`): they are refused unless
/// [`TokenSettings::accept_untyped`] (`CHOPIN_JWT_ACCEPT_UNTYPED`) is on, a setting for the
/// one access-token lifetime of an upgrade.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The `typ` header of application tokens signed with [`Auth::sign`](super::Auth::sign)
/// (invitations, download links, …) and the only type
/// [`Auth::decode_signed`](super::Auth::decode_signed) accepts. Never accepted as an access
/// token, so such a token cannot be used as a bearer credential.
pub const APP_TOKEN_TYPE: &str = "app+jwt";

/// What a token is for, by its `typ` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// An access token ([`ACCESS_TOKEN_TYPE`]).
    Access,
    /// An application token ([`APP_TOKEN_TYPE`]).
    App,
}

impl TokenKind {
    fn typ(self) -> &'static str {
        match self {
            TokenKind::Access => ACCESS_TOKEN_TYPE,
            TokenKind::App => APP_TOKEN_TYPE,
        }
    }
}

/// `true` when the header type `typ` names `expected`: equal ignoring ASCII case, with or
/// without the `application/` prefix (RFC 7515 section 4.1.9).
fn is_type(typ: &str, expected: &str) -> bool {
    let bare = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    bare.eq_ignore_ascii_case(expected)
}

/// Whether a token whose header says `typ` may be used as `kind`: its own type always; for an
/// access token, the legacy untyped forms (no `typ`, or `JWT`, what Chopin wrote before the
/// types) only while `accept_untyped` is on.
fn check_type(typ: Option<&str>, kind: TokenKind, accept_untyped: bool) -> Result<(), AuthError> {
    match typ {
        Some(t) if is_type(t, kind.typ()) => Ok(()),
        None => legacy(kind, accept_untyped),
        Some(t) if is_type(t, "JWT") => legacy(kind, accept_untyped),
        Some(_) => Err(AuthError::WrongType),
    }
}

fn legacy(kind: TokenKind, accept_untyped: bool) -> Result<(), AuthError> {
    if kind == TokenKind::Access && accept_untyped {
        Ok(())
    } else {
        Err(AuthError::WrongType)
    }
}

/// No custom claims: the default type parameter of [`Claims`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoExtra {}

/// The claims of an access token issued by Chopin: the registered claims, roles and
/// permissions, and the application's own typed claims `E` (flattened into the same JSON
/// object).
///
/// ```
/// use chopin_core::auth::Claims;
///
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// struct Tenant { tenant: String }
///
/// let claims: Claims<Tenant> = serde_json::from_str(
///     r#"{"sub":"42","exp":2000000000,"iat":1,"nbf":1,"jti":"a","roles":["admin"],"tenant":"acme"}"#,
/// ).unwrap();
/// assert_eq!(claims.extra.tenant, "acme");
/// assert!(claims.has_role("admin"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims<E = NoExtra> {
    /// Subject: the user's id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Not valid before, seconds since the Unix epoch.
    pub nbf: i64,
    /// Issuer (`CHOPIN_JWT_ISSUER`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience (`CHOPIN_JWT_AUDIENCE`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Unique token id, used to revoke this token.
    pub jti: String,
    /// Role names (`admin`, `editor`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Permission names (`posts:delete`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub perms: Vec<String>,
    /// The application's own claims.
    #[serde(flatten)]
    pub extra: E,
}

impl<E> Claims<E> {
    /// `true` when the token carries role `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// `true` when the token carries permission `permission`.
    pub fn has_permission(&self, permission: &str) -> bool {
        self.perms.iter().any(|p| p == permission)
    }
}

/// What Chopin needs to read from a claims type: implemented by [`Claims<E>`]; implement it
/// for your own type to use it with [`AuthUser<C>`](super::AuthUser).
pub trait AuthClaims: DeserializeOwned + Send + Sync + 'static {
    /// The subject (user id).
    fn subject(&self) -> &str;
    /// The token id (`jti`).
    fn token_id(&self) -> &str;
    /// Expiry, seconds since the Unix epoch.
    fn expires_at(&self) -> i64;
    /// Role names.
    fn roles(&self) -> &[String];
    /// Permission names.
    fn permissions(&self) -> &[String];
    /// Issue time (`iat`), seconds since the Unix epoch, when the type carries it: a token
    /// issued in the future (beyond the leeway) is refused. `None` by default.
    fn issued_at(&self) -> Option<i64> {
        None
    }
}

impl<E: DeserializeOwned + Send + Sync + 'static> AuthClaims for Claims<E> {
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
    fn issued_at(&self) -> Option<i64> {
        Some(self.iat)
    }
}

struct KeyEntry {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
}

/// The signing key and every key accepted for verification, by `kid`.
///
/// Rotation: start signing with a new key (`kid` `k2`) while the old one (`k1`) stays in the
/// set for verification until its last token has expired, then drop it.
///
/// ```
/// use chopin_core::auth::JwtKeys;
///
/// let keys = JwtKeys::hs256("k2", b"a-new-secret-of-at-least-32-bytes!!")
///     .unwrap()
///     .verify_hs256("k1", b"the-old-secret-still-accepted-for-a-while")
///     .unwrap();
/// assert_eq!(keys.signing_kid(), "k2");
/// assert_eq!(keys.kids().len(), 2);
/// ```
pub struct JwtKeys {
    signing: String,
    keys: HashMap<String, KeyEntry>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<(&String, Algorithm)> =
            self.keys.iter().map(|(k, e)| (k, e.algorithm)).collect();
        kids.sort_by(|a, b| a.0.cmp(b.0));
        f.debug_struct("JwtKeys")
            .field("signing", &self.signing)
            .field("keys", &kids)
            .finish()
    }
}

fn to_algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
        JwtAlgorithm::EdDsa => Algorithm::EdDSA,
    }
}

fn check_secret(secret: &[u8]) -> Result<(), AuthError> {
    if secret.len() < MIN_JWT_SECRET_LEN {
        return Err(AuthError::Config(format!(
            "an HS256 secret must be at least {MIN_JWT_SECRET_LEN} bytes"
        )));
    }
    Ok(())
}

fn decoding_from_pem(alg: JwtAlgorithm, pem: &[u8]) -> Result<DecodingKey, AuthError> {
    let key = match alg {
        JwtAlgorithm::Hs256 => {
            return Err(AuthError::Config(
                "HS256 uses a secret, not a PEM key".into(),
            ));
        }
        JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem),
        JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(pem),
        JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem),
    };
    key.map_err(|e| AuthError::Config(format!("invalid {} public key: {e}", alg.as_str())))
}

impl JwtKeys {
    /// Sign (and verify) with an HS256 `secret` of at least 32 bytes under `kid`.
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Result<Self, AuthError> {
        check_secret(secret)?;
        let kid = kid.into();
        let mut keys = HashMap::new();
        keys.insert(
            kid.clone(),
            KeyEntry {
                algorithm: Algorithm::HS256,
                encoding: Some(EncodingKey::from_secret(secret)),
                decoding: DecodingKey::from_secret(secret),
            },
        );
        Ok(JwtKeys { signing: kid, keys })
    }

    /// A random 256-bit HS256 key (from ring's `SystemRandom`): tokens do not survive a restart
    /// and are not accepted by other instances. For development and tests.
    pub fn ephemeral() -> Result<Self, AuthError> {
        let secret = random_bytes::<32>()?;
        Self::hs256("ephemeral", &secret)
    }

    /// Sign with a PEM private key and verify with its PEM public key (RS256, ES256 or
    /// EdDSA).
    pub fn from_pem(
        alg: JwtAlgorithm,
        kid: impl Into<String>,
        private_pem: &[u8],
        public_pem: &[u8],
    ) -> Result<Self, AuthError> {
        let encoding = match alg {
            JwtAlgorithm::Hs256 => {
                return Err(AuthError::Config(
                    "HS256 uses a secret, not a PEM key".into(),
                ));
            }
            JwtAlgorithm::Rs256 => EncodingKey::from_rsa_pem(private_pem),
            JwtAlgorithm::Es256 => EncodingKey::from_ec_pem(private_pem),
            JwtAlgorithm::EdDsa => EncodingKey::from_ed_pem(private_pem),
        }
        .map_err(|e| AuthError::Config(format!("invalid {} private key: {e}", alg.as_str())))?;
        let decoding = decoding_from_pem(alg, public_pem)?;
        let kid = kid.into();
        let mut keys = HashMap::new();
        keys.insert(
            kid.clone(),
            KeyEntry {
                algorithm: to_algorithm(alg),
                encoding: Some(encoding),
                decoding,
            },
        );
        Ok(JwtKeys { signing: kid, keys })
    }

    /// Also accept tokens signed with HS256 `secret` under `kid` (verification only).
    pub fn verify_hs256(
        mut self,
        kid: impl Into<String>,
        secret: &[u8],
    ) -> Result<Self, AuthError> {
        check_secret(secret)?;
        self.insert_verifier(
            kid.into(),
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
        )?;
        Ok(self)
    }

    /// Also accept tokens signed with the private half of `public_pem` under `kid`
    /// (verification only).
    pub fn verify_pem(
        mut self,
        alg: JwtAlgorithm,
        kid: impl Into<String>,
        public_pem: &[u8],
    ) -> Result<Self, AuthError> {
        let decoding = decoding_from_pem(alg, public_pem)?;
        self.insert_verifier(kid.into(), to_algorithm(alg), decoding)?;
        Ok(self)
    }

    fn insert_verifier(
        &mut self,
        kid: String,
        algorithm: Algorithm,
        decoding: DecodingKey,
    ) -> Result<(), AuthError> {
        if self.keys.contains_key(&kid) {
            return Err(AuthError::Config(format!("duplicate key id {kid:?}")));
        }
        self.keys.insert(
            kid,
            KeyEntry {
                algorithm,
                encoding: None,
                decoding,
            },
        );
        Ok(())
    }

    /// The keys described by `config`: HS256 from `CHOPIN_JWT_SECRET` (plus
    /// `CHOPIN_JWT_PREVIOUS_SECRET`), or PEM files for the other algorithms.
    ///
    /// Without a secret, production is refused and other environments get an
    /// [ephemeral](JwtKeys::ephemeral) key and a warning.
    pub fn from_config(
        config: &AuthConfig,
        environment: crate::config::Environment,
    ) -> Result<Self, AuthError> {
        let mut keys = match config.algorithm {
            JwtAlgorithm::Hs256 => match &config.secret {
                Some(secret) => JwtKeys::hs256(&config.kid, secret.expose().as_bytes())?,
                None if environment.is_production() => {
                    return Err(AuthError::Config(format!(
                        "CHOPIN_JWT_SECRET is required in production (at least \
                         {MIN_JWT_SECRET_LEN} random bytes, e.g. `openssl rand -base64 48`)"
                    )));
                }
                None => {
                    tracing::warn!(
                        "CHOPIN_JWT_SECRET is not set: using a random signing key for this \
                         process; tokens will not survive a restart or work on other instances"
                    );
                    JwtKeys::ephemeral()?
                }
            },
            alg => {
                let read = |var: &str, path: &Option<String>| {
                    let path = path.as_deref().ok_or_else(|| {
                        AuthError::Config(format!("{var} is required for {}", alg.as_str()))
                    })?;
                    std::fs::read(path)
                        .map_err(|e| AuthError::Config(format!("{var}={path:?}: {e}")))
                };
                let private = read("CHOPIN_JWT_PRIVATE_KEY_FILE", &config.private_key_file)?;
                let public = read("CHOPIN_JWT_PUBLIC_KEY_FILE", &config.public_key_file)?;
                JwtKeys::from_pem(alg, &config.kid, &private, &public)?
            }
        };
        if let Some(previous) = &config.previous_secret {
            keys = keys.verify_hs256(&config.previous_kid, previous.expose().as_bytes())?;
        }
        Ok(keys)
    }

    /// The `kid` of the signing key.
    pub fn signing_kid(&self) -> &str {
        &self.signing
    }

    /// Every accepted `kid`, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// Token lifetimes and the claims every token must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `iss` issued and required, when set.
    pub issuer: Option<String>,
    /// `aud` issued and required, when set.
    pub audience: Option<String>,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Cookie the access token may also come in (besides `Authorization: Bearer`).
    pub cookie: Option<String>,
    /// Also accept access tokens without the `at+jwt` type (no `typ`, or `typ: "JWT"`): the
    /// tokens Chopin issued before access tokens were typed. Off by default; turn it on
    /// (`CHOPIN_JWT_ACCEPT_UNTYPED=true`) for one access-token lifetime while upgrading a
    /// live deployment, so that nobody is signed out, then off again. See
    /// [`ACCESS_TOKEN_TYPE`].
    pub accept_untyped: bool,
}

impl From<&AuthConfig> for TokenSettings {
    fn from(c: &AuthConfig) -> Self {
        TokenSettings {
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            access_ttl: c.access_ttl,
            refresh_ttl: c.refresh_ttl,
            leeway: c.leeway,
            cookie: c.cookie.clone(),
            accept_untyped: c.accept_untyped,
        }
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings::from(&AuthConfig::default())
    }
}

/// Keys plus prepared `Validation`s per key (one for access tokens, one for application
/// tokens): the verifying half of [`Auth`](super::Auth).
pub(crate) struct Jwt {
    keys: JwtKeys,
    validations: HashMap<String, Validation>,
    app_validations: HashMap<String, Validation>,
    pub settings: TokenSettings,
}

/// The checks of an application token ([`APP_TOKEN_TYPE`]): the key's algorithm, `exp`
/// required, `nbf` when present, and the configured issuer and audience when the token names
/// one (the application chose its claims; `Auth::sign` adds none).
fn app_validation(algorithm: Algorithm, settings: &TokenSettings) -> Validation {
    let mut v = Validation::new(algorithm);
    v.algorithms = vec![algorithm];
    v.leeway = settings.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    match &settings.issuer {
        Some(iss) => v.set_issuer(&[iss]),
        None => v.iss = None,
    }
    match &settings.audience {
        Some(aud) => v.set_audience(&[aud]),
        None => {
            v.aud = None;
            v.validate_aud = false;
        }
    }
    v.set_required_spec_claims(&["exp"]);
    v
}

impl Jwt {
    pub fn new(keys: JwtKeys, settings: TokenSettings) -> Jwt {
        let validations = keys
            .keys
            .iter()
            .map(|(kid, entry)| {
                // The accepted algorithm comes from the key, never from the token.
                let mut v = Validation::new(entry.algorithm);
                v.algorithms = vec![entry.algorithm];
                v.leeway = settings.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                let mut required = vec!["exp", "nbf", "sub"];
                match &settings.issuer {
                    Some(iss) => {
                        v.set_issuer(&[iss]);
                        required.push("iss");
                    }
                    None => v.iss = None,
                }
                match &settings.audience {
                    Some(aud) => {
                        v.set_audience(&[aud]);
                        required.push("aud");
                    }
                    None => {
                        v.aud = None;
                        v.validate_aud = false;
                    }
                }
                v.set_required_spec_claims(&required);
                (kid.clone(), v)
            })
            .collect();
        let app_validations = keys
            .keys
            .iter()
            .map(|(kid, entry)| (kid.clone(), app_validation(entry.algorithm, &settings)))
            .collect();
        Jwt {
            keys,
            validations,
            app_validations,
            settings,
        }
    }

    pub fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    /// Sign `claims` with the signing key (its `kid` in the header) as a token of `kind`
    /// (its `typ` in the header).
    pub fn encode<T: Serialize>(&self, claims: &T, kind: TokenKind) -> Result<String, AuthError> {
        let entry = self
            .keys
            .keys
            .get(&self.keys.signing)
            .and_then(|e| e.encoding.as_ref().map(|k| (e.algorithm, k)));
        let Some((alg, key)) = entry else {
            return Err(AuthError::Config("no signing key".into()));
        };
        let mut header = Header::new(alg);
        header.typ = Some(kind.typ().to_string());
        header.kid = Some(self.keys.signing.clone());
        jsonwebtoken::encode(&header, claims, key)
            .map_err(|e| AuthError::Internal(format!("cannot sign a token: {e}")))
    }

    /// Check the signature, the registered claims and the type (`kind`); the key is chosen
    /// by `kid`.
    pub fn decode<C: DeserializeOwned>(
        &self,
        token: &str,
        kind: TokenKind,
    ) -> Result<C, AuthError> {
        let validations = match kind {
            TokenKind::Access => &self.validations,
            TokenKind::App => &self.app_validations,
        };
        let accept_untyped = self.settings.accept_untyped;
        if self.keys.keys.len() == 1 {
            // One key: no need to parse the header twice. The `kid`, if any, is checked
            // against the key's after verification (the header comes back with the claims).
            let kid = &self.keys.signing;
            let (Some(entry), Some(validation)) = (self.keys.keys.get(kid), validations.get(kid))
            else {
                return Err(AuthError::UnknownKey);
            };
            let data =
                jsonwebtoken::decode::<C>(token, &entry.decoding, validation).map_err(map_error)?;
            if data.header.kid.as_ref().is_some_and(|k| k != kid) {
                return Err(AuthError::UnknownKey);
            }
            check_type(data.header.typ.as_deref(), kind, accept_untyped)?;
            return Ok(data.claims);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let Some(kid) = header.kid else {
            return Err(AuthError::UnknownKey);
        };
        let (Some(entry), Some(validation)) = (self.keys.keys.get(&kid), validations.get(&kid))
        else {
            return Err(AuthError::UnknownKey);
        };
        let data =
            jsonwebtoken::decode::<C>(token, &entry.decoding, validation).map_err(map_error)?;
        check_type(data.header.typ.as_deref(), kind, accept_untyped)?;
        Ok(data.claims)
    }
}

fn map_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
        _ => AuthError::Malformed,
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `N` random bytes from ring's `SystemRandom` (the OS generator).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut buf = [0u8; N];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| AuthError::Internal("the system random generator failed".into()))?;
    Ok(buf)
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// A new random token id (128 bits, hex).
pub(crate) fn new_jti() -> Result<String, AuthError> {
    Ok(hex(&random_bytes::<16>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_compare_like_media_types() {
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+JWT",
        ] {
            assert!(is_type(typ, ACCESS_TOKEN_TYPE), "{typ}");
        }
        for typ in [
            "JWT",
            "at+jwt ",
            "app+jwt",
            "application/",
            "applicationat+jwt",
            "",
        ] {
            assert!(!is_type(typ, ACCESS_TOKEN_TYPE), "{typ}");
        }
    }

    #[test]
    fn each_kind_accepts_its_own_type_and_legacy_only_for_access_in_transition() {
        use TokenKind::{Access, App};
        assert_eq!(check_type(Some("at+jwt"), Access, false), Ok(()));
        assert_eq!(check_type(Some("app+jwt"), App, false), Ok(()));
        for (typ, kind) in [(Some("app+jwt"), Access), (Some("at+jwt"), App)] {
            for accept_untyped in [false, true] {
                assert_eq!(
                    check_type(typ, kind, accept_untyped),
                    Err(AuthError::WrongType)
                );
            }
        }
        for typ in [None, Some("JWT"), Some("jwt")] {
            assert_eq!(check_type(typ, Access, false), Err(AuthError::WrongType));
            assert_eq!(check_type(typ, Access, true), Ok(()));
            assert_eq!(check_type(typ, App, true), Err(AuthError::WrongType));
        }
        assert_eq!(
            check_type(Some("refresh+jwt"), Access, true),
            Err(AuthError::WrongType)
        );
    }
}
