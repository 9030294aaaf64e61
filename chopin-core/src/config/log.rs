//! Logging settings (`CHOPIN_LOG`, `RUST_LOG`, `CHOPIN_LOG_FORMAT`).

use super::Environment;
use super::reader::Reader;

/// Log output format, from `CHOPIN_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default in development and test).
    Text,
    /// One JSON object per line (the default in production).
    Json,
}

/// The log filter when neither `CHOPIN_LOG` nor `RUST_LOG` is set.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `CHOPIN_LOG`, else `RUST_LOG`, else `info`: a `tracing` filter such as `info` or
    /// `info,my_app=debug`.
    pub filter: String,
    /// `CHOPIN_LOG_FORMAT`: `text` or `json` (`json` in production, `text` elsewhere).
    pub format: LogFormat,
}

impl LogConfig {
    /// Read `CHOPIN_LOG` (or `RUST_LOG`) and `CHOPIN_LOG_FORMAT`; the format's default depends
    /// on `environment`.
    pub(super) fn from_reader(r: &mut Reader<'_>, environment: Environment) -> LogConfig {
        // `CHOPIN_LOG` wins; `RUST_LOG`, the variable every Rust tool reads, is honoured when
        // it is unset. The filter is checked under the name of the variable it came from.
        let (filter_variable, filter) = match r.raw("CHOPIN_LOG") {
            Some(filter) => ("CHOPIN_LOG", filter),
            None => match r.raw("RUST_LOG") {
                Some(filter) => ("RUST_LOG", filter),
                None => ("CHOPIN_LOG", DEFAULT_LOG_FILTER.to_string()),
            },
        };
        let log = LogConfig {
            filter: filter.trim().to_string(),
            format: r
                .get("CHOPIN_LOG_FORMAT", |s| {
                    match s.to_ascii_lowercase().as_str() {
                        "text" => Ok(LogFormat::Text),
                        "json" => Ok(LogFormat::Json),
                        _ => Err("must be text or json".to_string()),
                    }
                })
                .unwrap_or(if environment.is_production() {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                }),
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.filter) {
            let filter = log.filter.clone();
            r.problem(
                filter_variable,
                &filter,
                format!("is not a valid filter ({e})"),
            );
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::from;

    #[test]
    fn log_filter_falls_back_to_rust_log() {
        assert_eq!(from(&[]).unwrap().log.filter, "info");
        let c = from(&[("RUST_LOG", "warn,my_app=debug")]).unwrap();
        assert_eq!(c.log.filter, "warn,my_app=debug");
        let c = from(&[("RUST_LOG", "warn"), ("CHOPIN_LOG", "debug")]).unwrap();
        assert_eq!(c.log.filter, "debug", "CHOPIN_LOG wins over RUST_LOG");
        let c = from(&[("RUST_LOG", "  ")]).unwrap();
        assert_eq!(c.log.filter, "info", "a blank RUST_LOG is unset");
        let err = from(&[("RUST_LOG", "info,[[[")]).unwrap_err();
        assert_eq!(err.problems[0].variable, "RUST_LOG");
    }
}
