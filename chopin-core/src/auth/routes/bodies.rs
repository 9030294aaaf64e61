//! The auth routes' request and response bodies, with the rules their fields must meet:
//! the length bounds, the e-mail check, and the one-time token purposes.

use serde::{Deserialize, Serialize};

use crate::error::{ChopinError, FieldError};

/// Shortest accepted password, in characters (the `minLength` of the documented schemas).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest accepted password, in characters (argon2 would take anything; a bound keeps
/// requests cheap; the `maxLength` of the documented schemas).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Longest accepted e-mail address, in characters (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Lifetime of verification and password-reset tokens.
pub(super) const ONE_TIME_TTL_MINUTES: i64 = 60;

pub(super) const PURPOSE_VERIFY: &str = "verify_email";
pub(super) const PURPOSE_RESET: &str = "password_reset";

/// `"***"` for a secret that is set, in `Debug` output.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `Debug` for request and response bodies carrying secrets: the listed fields are shown,
/// the secret ones as `***`.
macro_rules! redacted_debug {
    ($ty:ident { $($shown:ident),* ; $($secret:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($shown), &self.$shown))*
                    $(.field(stringify!($secret), &Redacted))*
                    .finish()
            }
        }
    };
}

redacted_debug!(TokenPair { token_type, expires_in; access_token, refresh_token });
redacted_debug!(Credentials { email; password });
redacted_debug!(RefreshRequest { ; refresh_token });
redacted_debug!(LogoutRequest { ; refresh_token });
redacted_debug!(TokenRequest { ; token });
redacted_debug!(ResetRequest { ; token, password });

/// The one message of every failed login (unknown e-mail, wrong password).
pub const LOGIN_FAILED: &str = "invalid email or password";

/// Tokens returned by sign-up, login and refresh.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// The JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single-use token for `POST /refresh`; rotated on every use.
    pub refresh_token: String,
}

/// Body of sign-up and login.
///
/// The schema's bounds are the ones [`validate_credentials`] applies (a unit test compares
/// them): sign-up answers 422 outside them, login 401.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct Credentials {
    /// E-mail address (case-insensitive; surrounding spaces are ignored): a non-empty local
    /// part, `@`, and a domain containing a dot; no spaces; at most 254 characters.
    #[schema(format = Email, max_length = 254)]
    pub(super) email: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub(super) password: String,
}

/// Body of `/refresh`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct RefreshRequest {
    /// The latest refresh token of the session.
    pub(super) refresh_token: String,
}

/// Body of `/logout`; the whole body is optional (an empty body revokes only the access
/// token).
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub(super) struct LogoutRequest {
    /// Also revoke this refresh token's family.
    #[serde(default)]
    pub(super) refresh_token: Option<String>,
}

/// Body of `/password-reset`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct EmailRequest {
    /// The account's e-mail address (the same rule as sign-up's).
    #[schema(format = Email, max_length = 254)]
    pub(super) email: String,
}

/// Body of `/verify-email`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct TokenRequest {
    /// The token from the mail.
    pub(super) token: String,
}

/// Body of `/password-reset/confirm`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct ResetRequest {
    /// The token from the mail.
    pub(super) token: String,
    /// The new password, 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub(super) password: String,
}

/// Answer of `/password-reset`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Accepted {
    /// Always the same text, whether or not the account exists.
    pub(super) message: &'static str,
}

/// Whether `email` (already trimmed) is accepted as an e-mail address.
fn valid_email(email: &str) -> bool {
    email.chars().count() <= MAX_EMAIL_LEN
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.contains(char::is_whitespace)
}

pub(super) fn validate_email(email: &str, fields: &mut Vec<FieldError>) {
    if !valid_email(email.trim()) {
        fields.push(FieldError::new(
            "email",
            "email",
            "must be an e-mail address",
        ));
    }
}

pub(super) fn validate_credentials(email: &str, password: &str) -> Result<(), ChopinError> {
    let mut fields = Vec::new();
    validate_email(email, &mut fields);
    validate_password(password, &mut fields);
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ChopinError::Validation(fields))
    }
}

pub(super) fn validate_password(password: &str, fields: &mut Vec<FieldError>) {
    let len = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        fields.push(FieldError::new(
            "password",
            "length",
            format!("must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"),
        ));
    }
}
