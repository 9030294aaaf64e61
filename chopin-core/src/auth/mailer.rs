//! Out-of-band delivery of one-time tokens (password reset, e-mail verification): they go to
//! the user through a [`Mailer`], never into an HTTP response.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use super::AuthError;
use crate::config::{Config, Environment};
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

    /// `true` for a mailer that must run only in development because it does not deliver
    /// and may expose the token (like [`LogMailer`]). The auth module refuses to start with
    /// such a mailer in any other environment (test, production). Defaults to `false`.
    fn development_only(&self) -> bool {
        false
    }
}

impl Mailer for Arc<dyn Mailer> {
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> {
        (**self).send(mail)
    }

    fn development_only(&self) -> bool {
        (**self).development_only()
    }
}

/// A [`Mailer`] for development: logs each mail (token included) at `info` under the target
/// `chopin::mailer`. The token is in the log, so it is development-only: with an [`Auth`]
/// configured for any other environment (test or production), [`AuthModule::new`] refuses
/// to start with it, and a module given it later sends nothing (an error is logged, without
/// the token).
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

/// A [`Mailer`] that keeps every mail in memory and delivers nothing: the mailer of the test
/// environment (what [`mailer_from_config`] gives with `CHOPIN_ENV=test` and no SMTP server),
/// like Rails' `:test` delivery method. Clones share the same mails; read them with
/// [`MemoryMailer::mails`]. Nothing is logged.
#[derive(Debug, Clone, Default)]
pub struct MemoryMailer {
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl MemoryMailer {
    /// An empty mailer.
    pub fn new() -> MemoryMailer {
        MemoryMailer::default()
    }

    /// The mails sent so far, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails
            .lock()
            .map(|mails| mails.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

impl Mailer for MemoryMailer {
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> {
        match self.mails.lock() {
            Ok(mut mails) => mails.push(mail),
            Err(poisoned) => poisoned.into_inner().push(mail),
        }
        Box::pin(async { Ok(()) })
    }
}

/// The mailer the configuration asks for, for [`AuthModule::with_mailer`]:
///
/// * `CHOPIN_SMTP_URL` set: an [`SmtpMailer`] (feature `smtp`), in any environment;
/// * otherwise, in development: the [`LogMailer`];
/// * in test: a [`MemoryMailer`];
/// * in production: an error naming `CHOPIN_SMTP_URL` — production never runs without a
///   mailer that delivers.
///
/// [`AuthModule::with_mailer`]: super::AuthModule::with_mailer
/// [`SmtpMailer`]: super::SmtpMailer
///
/// ```
/// use chopin_core::auth::mailer_from_config;
/// use chopin_core::config::{Config, Environment};
///
/// assert!(mailer_from_config(&Config::for_environment(Environment::Development))
///     .unwrap()
///     .development_only());
/// let Err(err) = mailer_from_config(&Config::for_environment(Environment::Production)) else {
///     panic!("production without CHOPIN_SMTP_URL has no mailer");
/// };
/// assert!(err.to_string().contains("CHOPIN_SMTP_URL"));
/// ```
pub fn mailer_from_config(config: &Config) -> Result<Arc<dyn Mailer>, AuthError> {
    #[cfg(feature = "smtp")]
    if let Some(smtp) = super::SmtpMailer::from_config(config)? {
        return Ok(Arc::new(smtp));
    }
    // Without the `smtp` feature `Config::from_lookup` refuses `CHOPIN_SMTP_URL`, so reaching
    // here means no SMTP server is configured.
    match config.environment {
        Environment::Development => Ok(Arc::new(LogMailer)),
        Environment::Test => Ok(Arc::new(MemoryMailer::new())),
        Environment::Production => Err(AuthError::Config(
            "production needs a mailer that delivers: set CHOPIN_SMTP_URL (for example \
             smtps://user:password@mail.example:465) and CHOPIN_SMTP_FROM, or build the auth \
             module with AuthModule::with_mailer and your own Mailer"
                .into(),
        )),
    }
}
