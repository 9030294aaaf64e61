//! Out-of-band delivery of one-time tokens (password reset, e-mail verification): they go to
//! the user through a [`Mailer`], never into an HTTP response.

use std::future::Future;
use std::pin::Pin;

use crate::error::BoxError;

/// What a [`Mail`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// Confirm the address given at sign-up.
    VerifyEmail,
    /// Reset a forgotten password.
    PasswordReset,
}

/// A message carrying a one-time token to a user.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// What the token is for.
    pub kind: MailKind,
    /// The recipient's address.
    pub to: String,
    /// The one-time token (a secret: `Debug` hides it).
    pub token: String,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("kind", &self.kind)
            .field("to", &self.to)
            .field("token", &"***")
            .finish()
    }
}

/// Sends [`Mail`]s: implement it with your e-mail provider.
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use chopin_core::auth::{Mail, Mailer};
/// use chopin_core::error::BoxError;
///
/// struct Smtp;
/// impl Mailer for Smtp {
///     fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> {
///         Box::pin(async move {
///             // hand `mail.to` and a link containing `mail.token` to the provider
///             let _ = mail;
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait Mailer: Send + Sync + 'static {
    /// Deliver `mail`; an error (the provider's own, boxed) is logged, and the request still
    /// answers as if it was sent (so responses do not reveal which addresses exist).
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>>;

    /// `true` for a mailer that must never run in production because it does not deliver
    /// and may expose the token (like [`LogMailer`]). The auth module refuses to start in
    /// production with such a mailer. Defaults to `false`.
    fn development_only(&self) -> bool {
        false
    }
}

/// A [`Mailer`] for development: logs each mail (token included) at `info` under the target
/// `chopin::mailer`. The token is in the log, so it is development-only: with an [`Auth`]
/// configured for production, [`AuthModule::new`] refuses to start with it, and a module
/// given it later sends nothing (an error is logged, without the token).
///
/// [`Auth`]: super::Auth
/// [`AuthModule::new`]: super::AuthModule::new
#[derive(Debug, Clone, Copy, Default)]
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> {
        Box::pin(async move {
            tracing::info!(
                target: "chopin::mailer",
                kind = ?mail.kind,
                to = %mail.to,
                token = %mail.token,
                "mail (development mailer: not sent)"
            );
            Ok(())
        })
    }

    fn development_only(&self) -> bool {
        true
    }
}
