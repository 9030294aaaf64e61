//! [`SmtpMailer`]: the auth module's mails over SMTP (feature `smtp`, `lettre` with rustls).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{AuthError, Mail, MailKind, Mailer};
use crate::config::{Config, SmtpConfig, SmtpTls};
use crate::error::BoxError;

/// How long one delivery may take (connect, TLS, authentication, the message).
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// A [`Mailer`] that delivers through an SMTP server: `CHOPIN_SMTP_URL` (TLS by default),
/// from `CHOPIN_SMTP_FROM`, with links to `CHOPIN_PUBLIC_URL` (feature `smtp`).
///
/// Each mail is plain text: a subject saying what it is for, and a link
/// (`<public url>/verify-email?token=…`, `<public url>/reset-password?token=…`) or, without
/// `CHOPIN_PUBLIC_URL`, the token itself. Each delivery opens a connection (15 s timeout).
/// Errors name the server without its password and never contain the token.
///
/// Usually built by [`mailer_from_config`](super::mailer_from_config).
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    public_url: Option<url::Url>,
    server: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .field(
                "public_url",
                &self.public_url.as_ref().map(url::Url::as_str),
            )
            .finish()
    }
}

impl SmtpMailer {
    /// A mailer for `smtp` sending as `from` (`noreply@example.com` or
    /// `Example <noreply@example.com>`), linking to `public_url` when given.
    pub fn new(
        smtp: &SmtpConfig,
        from: &str,
        public_url: Option<url::Url>,
    ) -> Result<SmtpMailer, AuthError> {
        let server = smtp.redacted();
        let from: Mailbox = from.parse().map_err(|e| {
            AuthError::Config(format!("CHOPIN_SMTP_FROM is not a mail address: {e}"))
        })?;
        let tls = match smtp.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Implicit | SmtpTls::StartTls => {
                let parameters = TlsParameters::new(smtp.host.clone())
                    .map_err(|e| AuthError::Config(format!("SMTP TLS setup for {server}: {e}")))?;
                if smtp.tls == SmtpTls::Implicit {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(SEND_TIMEOUT));
        if let Some(user) = &smtp.username {
            let password = smtp
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(SmtpMailer {
            transport: builder.build(),
            from,
            public_url,
            server,
        })
    }

    /// The mailer `config.mail` describes, or `None` without `CHOPIN_SMTP_URL`.
    pub fn from_config(config: &Config) -> Result<Option<SmtpMailer>, AuthError> {
        let Some(smtp) = &config.mail.smtp else {
            return Ok(None);
        };
        let from = config.mail.from.as_deref().ok_or_else(|| {
            AuthError::Config("CHOPIN_SMTP_FROM is required with CHOPIN_SMTP_URL".into())
        })?;
        SmtpMailer::new(smtp, from, config.mail.public_url.clone()).map(Some)
    }

    /// The message for `mail`.
    fn message(&self, mail: &Mail) -> Result<Message, BoxError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| format!("recipient is not a mail address: {e}"))?;
        let (subject, path, what) = match mail.kind {
            MailKind::VerifyEmail => (
                "Confirm your e-mail address",
                "verify-email",
                "confirm this e-mail address",
            ),
            MailKind::PasswordReset => (
                "Reset your password",
                "reset-password",
                "choose a new password (if you did not ask for this, ignore this mail)",
            ),
        };
        let body = match &self.public_url {
            Some(base) => format!(
                "To {what}, open this link:\n\n{}\n",
                link(base, path, &mail.token)
            ),
            None => format!("To {what}, use this code:\n\n{}\n", mail.token),
        };
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .body(body)?)
    }
}

/// `<base>/<path>?token=<token>`, keeping any path of `base`.
pub(crate) fn link(base: &url::Url, path: &str, token: &str) -> url::Url {
    let mut url = base.clone();
    if !url.path().ends_with('/') {
        let with_slash = format!("{}/", url.path());
        url.set_path(&with_slash);
    }
    let mut url = url.join(path).unwrap_or(url);
    url.query_pairs_mut().clear().append_pair("token", token);
    url
}

impl Mailer for SmtpMailer {
    fn send(&self, mail: Mail) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> {
        Box::pin(async move {
            let message = self.message(&mail)?;
            self.transport.send(message).await.map_err(|e| {
                // lettre's errors carry the server's reply, never the credentials; the
                // server is named without its password.
                format!("SMTP delivery through {} failed: {e}", self.server)
            })?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_base_path() {
        let base = url::Url::parse("https://app.example/blog").unwrap();
        assert_eq!(
            link(&base, "reset-password", "a+b/c").as_str(),
            "https://app.example/blog/reset-password?token=a%2Bb%2Fc"
        );
        let base = url::Url::parse("https://app.example").unwrap();
        assert_eq!(
            link(&base, "verify-email", "t").as_str(),
            "https://app.example/verify-email?token=t"
        );
    }
}
