//! Mail settings: the SMTP server the auth module's mails go through (`CHOPIN_SMTP_URL`,
//! `CHOPIN_SMTP_FROM`) and the public address their links point to (`CHOPIN_PUBLIC_URL`).

use std::fmt;

use super::Environment;
use super::reader::Reader;
use super::secret::{Secret, redact_url};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte (port 465 by default).
    Implicit,
    /// `smtp://`: plain connection upgraded with `STARTTLS`, which the server must offer —
    /// without it nothing is sent (port 587 by default).
    StartTls,
    /// `smtp://…?tls=none`: no encryption at all. Only by explicit opt-in, and in production
    /// only to a server on this machine (`localhost`, `127.0.0.0/8`, `::1`).
    None,
}

/// The SMTP server, from `CHOPIN_SMTP_URL`. `Debug` and [`SmtpConfig::redacted`] never show
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// The server's host name or IP address.
    pub host: String,
    /// The server's port (465 for `smtps://`, 587 for `smtp://` unless the URL names one).
    pub port: u16,
    /// The protection of the connection.
    pub tls: SmtpTls,
    /// The user name to authenticate with (percent-decoded), if the URL has one.
    pub username: Option<String>,
    /// The password (percent-decoded), if the URL has one.
    pub password: Option<Secret>,
    /// The URL as given, for diagnostics only through [`SmtpConfig::redacted`].
    url: Secret,
}

impl SmtpConfig {
    /// Parse an SMTP URL: `smtps://user:pass@host[:465]`, `smtp://user:pass@host[:587]`
    /// (STARTTLS required), `smtp://host:25?tls=none` (no TLS). `environment` decides whether
    /// `tls=none` may go beyond this machine (never in production). Problems never contain the
    /// password.
    pub fn parse(raw: &str, environment: Environment) -> Result<SmtpConfig, String> {
        let url = url::Url::parse(raw).map_err(|e| {
            format!("must be a URL such as smtps://user:password@mail.example:465 ({e})")
        })?;
        let implicit = match url.scheme() {
            "smtps" => true,
            "smtp" => false,
            other => {
                return Err(format!(
                    "the scheme must be smtps:// (TLS) or smtp:// (STARTTLS), not {other}://"
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err("must name the SMTP server's host".into()),
        };
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err("must not have a path or fragment".into());
        }
        let mut tls = if implicit {
            SmtpTls::Implicit
        } else {
            SmtpTls::StartTls
        };
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref()) {
                ("tls", "none") if !implicit => tls = SmtpTls::None,
                ("tls", "required") if !implicit => tls = SmtpTls::StartTls,
                ("tls", _) => {
                    return Err(
                        "tls= takes `required` (the default) or `none`, and only with smtp://"
                            .into(),
                    );
                }
                (other, _) => return Err(format!("unknown parameter `{other}` (only tls=)")),
            }
        }
        if tls == SmtpTls::None && environment.is_production() && !is_loopback(&host) {
            return Err(
                "tls=none sends credentials and tokens in clear text: in production it is \
                 allowed only to a server on this machine (localhost, 127.0.0.1, ::1)"
                    .into(),
            );
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
                .map_err(|_| "the user name or password is not valid UTF-8".to_string())
        };
        let username = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = match url.password() {
            None => None,
            Some(p) => Some(Secret::new(decode(p)?)),
        };
        if password.is_some() && username.is_none() {
            return Err("has a password but no user name".into());
        }
        let port = url.port().unwrap_or(if implicit { 465 } else { 587 });
        Ok(SmtpConfig {
            host,
            port,
            tls,
            username,
            password,
            url: Secret::new(raw),
        })
    }

    /// The URL with its password replaced by `***`: safe to log.
    pub fn redacted(&self) -> String {
        redact_url(self.url.expose())
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("url", &self.redacted())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// `true` for `localhost` and loopback addresses.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Mail settings: where the auth module's mails go and what their links point to. See
/// `docs/auth.md#mail`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailConfig {
    /// `CHOPIN_SMTP_URL`: the SMTP server (unset: no SMTP; development logs mails instead, and
    /// production refuses to start the auth module).
    pub smtp: Option<SmtpConfig>,
    /// `CHOPIN_SMTP_FROM`: the sender, `noreply@example.com` or `Example <noreply@example.com>`
    /// (required with `CHOPIN_SMTP_URL`).
    pub from: Option<String>,
    /// `CHOPIN_PUBLIC_URL`: the address users open the application at (`https://app.example`);
    /// mails link to `<public url>/verify-email?token=…` and `<public url>/reset-password?token=…`.
    /// Unset: mails carry the bare token. Must be `https://` in production.
    pub public_url: Option<url::Url>,
}

impl MailConfig {
    pub(super) fn from_reader(r: &mut Reader<'_>, environment: Environment) -> MailConfig {
        let smtp = match r.raw("CHOPIN_SMTP_URL") {
            None => None,
            Some(raw) => match SmtpConfig::parse(raw.trim(), environment) {
                Ok(smtp) => Some(smtp),
                Err(problem) => {
                    r.problem("CHOPIN_SMTP_URL", &redact_url(raw.trim()), problem);
                    None
                }
            },
        };
        let from = r.get("CHOPIN_SMTP_FROM", |s| {
            let address = match (s.rfind('<'), s.ends_with('>')) {
                (Some(start), true) => &s[start + 1..s.len() - 1],
                _ => s,
            };
            let plausible = address.split('@').count() == 2
                && address
                    .split('@')
                    .all(|part| !part.is_empty() && !part.contains(char::is_whitespace))
                && !s.contains(|c: char| c.is_control());
            if plausible {
                Ok(s.to_string())
            } else {
                Err("must be an address such as noreply@example.com or \
                     `Example <noreply@example.com>`"
                    .to_string())
            }
        });
        if r.raw("CHOPIN_SMTP_URL").is_some() && r.raw("CHOPIN_SMTP_FROM").is_none() {
            r.problem(
                "CHOPIN_SMTP_FROM",
                "",
                "is required with CHOPIN_SMTP_URL: the sender of the mails",
            );
        }
        let public_url = r.get("CHOPIN_PUBLIC_URL", |s| {
            let url = url::Url::parse(s)
                .map_err(|e| format!("must be a URL such as https://app.example ({e})"))?;
            match url.scheme() {
                "https" => {}
                "http" if !environment.is_production() => {}
                "http" => return Err("must be https:// in production".into()),
                _ => return Err("must be an http(s):// URL".into()),
            }
            if url.query().is_some() || url.fragment().is_some() || url.host().is_none() {
                return Err("must be a base URL: a host and optional path, no query".into());
            }
            Ok(url)
        });
        MailConfig {
            smtp,
            from,
            public_url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::from;
    use super::*;

    #[test]
    fn smtp_urls() {
        let dev = Environment::Development;
        let s = SmtpConfig::parse("smtps://u%40x:p%3Ass@mail.example", dev).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("mail.example", 465, SmtpTls::Implicit)
        );
        assert_eq!(s.username.as_deref(), Some("u@x"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p:ss"));
        assert!(!format!("{s:?}").contains("p%3Ass"), "{s:?}");
        assert!(s.redacted().contains("***"));
        // Only `%` and two hex digits is an escape: `%+1` is three characters, not byte 1.
        let s = SmtpConfig::parse("smtps://u:p%+1ss@mail.example", dev).unwrap();
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p%+1ss"));
        assert!(SmtpConfig::parse("smtps://u:p%FFss@mail.example", dev).is_err());
        let s = SmtpConfig::parse("smtp://mail.example", dev).unwrap();
        assert_eq!((s.port, s.tls), (587, SmtpTls::StartTls));
        let s = SmtpConfig::parse("smtp://127.0.0.1:2525?tls=none", dev).unwrap();
        assert_eq!((s.port, s.tls), (2525, SmtpTls::None));
        for bad in [
            "http://mail.example",
            "smtps://mail.example?tls=none",
            "smtp://mail.example?tls=maybe",
            "smtp://mail.example?auth=plain",
            "smtp://mail.example/path",
            "smtp://:secret@mail.example",
            "mail.example:25",
        ] {
            assert!(SmtpConfig::parse(bad, dev).is_err(), "{bad}");
        }
        // Clear text in production: only to this machine.
        let prod = Environment::Production;
        assert!(SmtpConfig::parse("smtp://mail.example?tls=none", prod).is_err());
        for local in ["localhost", "127.0.0.1", "[::1]"] {
            let url = format!("smtp://{local}:25?tls=none");
            assert!(SmtpConfig::parse(&url, prod).is_ok(), "{url}");
        }
    }

    #[test]
    fn mail_settings() {
        let c = from(&[]).unwrap();
        assert_eq!(c.mail, MailConfig::default());
        let c = from(&[
            ("CHOPIN_SMTP_URL", "smtps://me:hunter2@mail.example"),
            ("CHOPIN_SMTP_FROM", "Blog <noreply@blog.example>"),
            ("CHOPIN_PUBLIC_URL", "https://blog.example/app/"),
        ])
        .unwrap();
        assert_eq!(c.mail.smtp.as_ref().unwrap().host, "mail.example");
        assert_eq!(c.mail.from.as_deref(), Some("Blog <noreply@blog.example>"));
        assert!(!format!("{c:?}").contains("hunter2"));

        let err = from(&[
            ("CHOPIN_ENV", "production"),
            ("CHOPIN_SMTP_URL", "smtp://me:hunter2@mail.example?tls=none"),
            ("CHOPIN_PUBLIC_URL", "http://blog.example"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = err.problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            vars,
            ["CHOPIN_SMTP_URL", "CHOPIN_SMTP_FROM", "CHOPIN_PUBLIC_URL"]
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = from(&[
            ("CHOPIN_SMTP_URL", "smtps://me:hunter2@mail.example"),
            ("CHOPIN_SMTP_FROM", "a@b@c, d@e"),
        ])
        .unwrap_err();
        assert_eq!(err.problems[0].variable, "CHOPIN_SMTP_FROM");
        assert!(
            from(&[("CHOPIN_SMTP_URL", "smtp://u:hunter2@[bad")])
                .unwrap_err()
                .to_string()
                .contains("<unparseable URL redacted>")
        );
    }
}
