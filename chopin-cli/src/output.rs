//! What the user sees: errors that say how to fix them, and step lines for long work.

use std::fmt;

/// A failure of a `chopin` command: what went wrong and, when there is one, how to fix it.
#[derive(Debug)]
pub struct CliError {
    /// What went wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl CliError {
    /// An error without a hint.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            hint: None,
        }
    }

    /// Add how to fix it.
    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// An I/O failure on `path`.
    pub fn io(action: &str, path: &std::path::Path, err: std::io::Error) -> CliError {
        CliError::new(format!("could not {action} {}: {err}", path.display()))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  fix: {}", hint.replace('\n', "\n       "))?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Prints numbered progress lines (`[2/4] Building …`) to stderr, so stdout stays clean for
/// output that is piped (a spec, a route list).
#[derive(Debug)]
pub struct Steps {
    total: usize,
    done: usize,
}

impl Steps {
    /// A sequence of `total` steps.
    pub fn new(total: usize) -> Steps {
        Steps { total, done: 0 }
    }

    /// Announce the next step.
    pub fn next(&mut self, what: &str) {
        self.done += 1;
        eprintln!("[{}/{}] {what}", self.done, self.total);
    }
}
