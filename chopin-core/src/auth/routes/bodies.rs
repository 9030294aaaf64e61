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
    /// E-mail address (case-insensitive; surrounding spaces are ignored): one plain mailbox,
    /// `local@domain.tld` — a local part of at most 64 letters, digits, dots and
    /// ``!#$%&'*+-/=?^_`{|}~`` (no quotes, commas or semicolons), one `@`, a domain name of
    /// letters, digits, hyphens and dots (international domains in punycode); no spaces or
    /// control characters; at most 254 characters.
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

/// Longest accepted local part (before the `@`), in characters (RFC 5321 section 4.5.3.1.1).
pub const MAX_EMAIL_LOCAL_LEN: usize = 64;

/// Why `email` is not accepted as an address, or `None` when it is.
///
/// Deliberately stricter than RFC 5322 (and than the `validator` crate's `email` check, which
/// lets through dotless and IP-literal domains, raw Unicode domains, dots at the edges of the
/// local part, and addresses longer than 254 characters): one mailbox that every mail system
/// delivers the same way, and nothing a mailer could read as a second recipient or a header.
///
/// * No control characters anywhere; surrounding spaces are ignored (the address is stored
///   trimmed); no whitespace inside.
/// * Exactly one `@`; ASCII only (an internationalised domain is accepted in its punycode
///   form, `xn--…`).
/// * Local part: 1 to 64 characters from RFC 5322's `atext` (letters, digits and
///   ``!#$%&'*+-/=?^_`{|}~``) and dots, no dot first, last or twice in a row — so no quotes,
///   commas, semicolons, angle brackets, parentheses or backslashes.
/// * Domain: two or more labels of 1 to 63 letters, digits and hyphens, no hyphen first or
///   last, separated by single dots (no dot first or last); the last label is not all
///   digits (no IP addresses).
/// * At most 254 characters in all.
pub(super) fn email_problem(email: &str) -> Option<&'static str> {
    if email.chars().any(char::is_control) {
        return Some("must not contain control characters");
    }
    let email = email.trim_matches(' ');
    if email.is_empty() {
        return Some("must not be empty");
    }
    if !email.is_ascii() {
        return Some("must be ASCII (write an international domain in punycode, xn--…)");
    }
    if email.len() > MAX_EMAIL_LEN {
        return Some("must be at most 254 characters");
    }
    if email.contains(char::is_whitespace) {
        return Some("must not contain spaces");
    }
    if email.contains([',', ';']) {
        return Some("must be one address (no ',' or ';')");
    }
    if email.contains(['"', '\\']) {
        return Some("must not contain quotes or backslashes");
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Some("must contain exactly one '@'");
    };
    if local.is_empty() || local.len() > MAX_EMAIL_LOCAL_LEN {
        return Some("must have 1 to 64 characters before the '@'");
    }
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    if !local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.bytes().all(atext))
    {
        return Some(
            "must have letters, digits, dots (not first, last or doubled) or !#$%&'*+-/=?^_`{|}~ before the '@'",
        );
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Some(
            "must have a domain such as example.com (labels of letters, digits and inner hyphens)",
        );
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some("must have a domain name, not an IP address");
    }
    None
}

/// Record a field error for `email` unless it is an acceptable address ([`email_problem`]).
pub(super) fn validate_email(email: &str, fields: &mut Vec<FieldError>) {
    if let Some(problem) = email_problem(email) {
        fields.push(FieldError::new(
            "email",
            "email",
            format!("must be an e-mail address: {problem}"),
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
