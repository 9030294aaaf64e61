//! Reading variables: the `Reader` that records every problem, the `ConfigError` it ends in,
//! and the value parsers the sections share.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::secret::redact_url;

/// One invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The environment variable.
    pub variable: &'static str,
    /// The offending value, as given — except credentials: the value of a `*_URL` variable
    /// (`DATABASE_URL`, `REDIS_URL`, `CHOPIN_SMTP_URL`, …) and any value that looks like a
    /// URL with a user part pass through [`redact_url`], and secrets read as such
    /// (`CHOPIN_JWT_SECRET`) are `***`. `Display` and `Debug` of [`ConfigError`] show this
    /// field, so neither ever prints a password.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Start-up error listing every invalid configuration value.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// All problems found, in variable order.
    pub problems: Vec<ConfigProblem>,
}

/// `Debug` prints the readable list too, so `main` returning `Result<_, Box<dyn Error>>` shows
/// a useful message when configuration fails.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.problems {
            write!(f, "\n  {}={:?}: {}", p.variable, p.value, p.problem)?;
        }
        Ok(())
    }
}

/// Reads variables and records problems.
pub(super) struct Reader<'a> {
    pub(super) lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(super) problems: Vec<ConfigProblem>,
}

impl Reader<'_> {
    pub(super) fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    pub(super) fn problem(
        &mut self,
        variable: &'static str,
        value: &str,
        problem: impl Into<String>,
    ) {
        self.problems.push(ConfigProblem {
            variable,
            value: shown_value(variable, value),
            problem: scrub_urls(&problem.into()),
        });
    }

    /// Parse with `parse`; a missing variable gives `None`, an invalid one a problem.
    pub(super) fn get<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.raw(name)?;
        match parse(raw.trim()) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.problem(name, &raw, problem);
                None
            }
        }
    }

    /// Like [`Reader::get`], but an invalid value is reported as `***`: secrets never reach
    /// an error message.
    pub(super) fn get_secret<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.raw(name)?;
        match parse(raw.trim()) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.problem(name, "***", problem);
                None
            }
        }
    }
}

/// What a problem shows of `value`: `*_URL` variables through [`redact_url`] (an unparseable
/// one entirely redacted), and any other value that looks like a URL with credentials
/// (`scheme://…@…`) too, so that no password reaches an error message or a log.
fn shown_value(variable: &str, value: &str) -> String {
    if variable.ends_with("_URL") || (value.contains("://") && value.contains('@')) {
        redact_url(value)
    } else {
        value.to_string()
    }
}

/// `text` with every URL carrying credentials (a word with `://` and `@`) passed through
/// [`redact_url`]: a parser's message may quote the value it refuses.
fn scrub_urls(text: &str) -> String {
    let separator = |c: char| c.is_whitespace() || matches!(c, ',' | '"' | '\'' | '(' | ')');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(separator).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        if word.contains("://") && word.contains('@') {
            out.push_str(&redact_url(word));
        } else {
            out.push_str(word);
        }
        let sep_len = tail.chars().next().map_or(0, char::len_utf8);
        out.push_str(&tail[..sep_len]);
        rest = &tail[sep_len..];
    }
    out
}

/// Longest duration any setting accepts: 365 days. Timeouts, lifetimes and token lifetimes
/// are added to clocks; a bound keeps every such sum far from overflowing, and no sensible
/// setting is longer.
pub const MAX_CONFIG_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Parse a duration such as `500ms`, `30s`, `2m` or a plain number of seconds, at most
/// [`MAX_CONFIG_DURATION`] (365 days).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("must be a duration such as 500ms, 30s or 2m ({e})"))?,
    };
    if d > MAX_CONFIG_DURATION {
        return Err("must be at most 365 days".to_string());
    }
    Ok(d)
}

pub(super) fn parse_optional_duration(s: &str) -> Result<Option<Duration>, String> {
    match s.to_ascii_lowercase().as_str() {
        "off" | "none" => Ok(None),
        // A zero timeout would fail every request: zero means off, however it is written.
        _ => parse_duration(s).map(|d| (!d.is_zero()).then_some(d)),
    }
}

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

pub(super) fn parse_size(s: &str) -> Result<usize, String> {
    let bytes = match s.parse::<u64>() {
        Ok(n) => n,
        Err(_) => s
            .parse::<bytesize::ByteSize>()
            .map_err(|_| "must be a size such as 1048576, 512KiB or 2MiB".to_string())?
            .as_u64(),
    };
    usize::try_from(bytes).map_err(|_| "is too large".to_string())
}

pub(super) fn parse_positive<T: FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err("must be a positive whole number".into()),
    }
}
