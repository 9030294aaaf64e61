//! Metrics settings (`CHOPIN_METRICS_ADDR`, `CHOPIN_METRICS_ON_MAIN`, `CHOPIN_METRICS_TOKEN`).

use std::net::SocketAddr;

use super::Environment;
use super::reader::{Reader, parse_bool};
use super::secret::Secret;

/// Where `/metrics` is served when chopin-core's `metrics` feature is on: the OpenTelemetry
/// Prometheus exporter's customary port, on loopback.
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// Where and how `/metrics` is served (feature `metrics`; without it these settings are read
/// and ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `CHOPIN_METRICS_ADDR` (`127.0.0.1:9464`; `off` for none): the separate listener
    /// [`App::serve`](crate::App::serve) opens for `/metrics`.
    pub addr: Option<SocketAddr>,
    /// `CHOPIN_METRICS_ON_MAIN` (`false`): also answer `/metrics` on the application's own
    /// listener. In production this needs [`token`](Self::token).
    pub on_main: bool,
    /// `CHOPIN_METRICS_TOKEN`: when set, every `/metrics` Chopin serves asks for
    /// `Authorization: Bearer <token>` and answers 401 without it.
    pub token: Option<Secret>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            addr: Some(DEFAULT_METRICS_ADDR),
            on_main: false,
            token: None,
        }
    }
}

impl MetricsConfig {
    pub(super) fn from_reader(r: &mut Reader<'_>, environment: Environment) -> MetricsConfig {
        let defaults = MetricsConfig::default();
        let addr = r
            .get("CHOPIN_METRICS_ADDR", |s| {
                match s.to_ascii_lowercase().as_str() {
                    "off" | "none" => Ok(None),
                    _ => s.parse::<SocketAddr>().map(Some).map_err(|_| {
                        "must be an address such as 127.0.0.1:9464, or off".to_string()
                    }),
                }
            })
            .unwrap_or(defaults.addr);
        let on_main = r.get("CHOPIN_METRICS_ON_MAIN", parse_bool).unwrap_or(false);
        let token = r.get_secret("CHOPIN_METRICS_TOKEN", |s| {
            if s.len() < 16 {
                Err("must be at least 16 characters".to_string())
            } else {
                Ok(Secret::new(s))
            }
        });
        if on_main && token.is_none() && environment.is_production() {
            // The application's own listener faces the internet: fail closed.
            r.problem(
                "CHOPIN_METRICS_ON_MAIN",
                "true",
                "needs CHOPIN_METRICS_TOKEN in production",
            );
        }
        MetricsConfig {
            addr,
            on_main,
            token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DEFAULT_METRICS_ADDR;
    use crate::config::tests::from;

    #[test]
    fn metrics_settings() {
        let c = from(&[]).unwrap().metrics;
        assert_eq!(c.addr, Some(DEFAULT_METRICS_ADDR));
        assert!(!c.on_main);
        assert!(c.token.is_none());
        let c = from(&[("CHOPIN_METRICS_ADDR", "off")]).unwrap().metrics;
        assert_eq!(c.addr, None);
        let c = from(&[("CHOPIN_METRICS_ADDR", "0.0.0.0:9100")])
            .unwrap()
            .metrics;
        assert_eq!(c.addr, Some("0.0.0.0:9100".parse().unwrap()));
        let err = from(&[("CHOPIN_METRICS_ADDR", "9464")]).unwrap_err();
        assert!(err.to_string().contains("CHOPIN_METRICS_ADDR"));
        let err = from(&[("CHOPIN_METRICS_TOKEN", "short")]).unwrap_err();
        assert!(err.to_string().contains("CHOPIN_METRICS_TOKEN"));
        assert!(
            !err.to_string().contains("short"),
            "secrets stay out: {err}"
        );
    }

    #[test]
    fn metrics_on_the_main_listener_needs_a_token_in_production() {
        let err = from(&[
            ("CHOPIN_ENV", "production"),
            ("CHOPIN_METRICS_ON_MAIN", "true"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("CHOPIN_METRICS_TOKEN"), "{err}");
        let c = from(&[
            ("CHOPIN_ENV", "production"),
            ("CHOPIN_METRICS_ON_MAIN", "true"),
            ("CHOPIN_METRICS_TOKEN", "0123456789abcdef"),
        ])
        .unwrap()
        .metrics;
        assert!(c.on_main);
        assert_eq!(c.token.unwrap().expose(), "0123456789abcdef");
        assert!(
            from(&[("CHOPIN_METRICS_ON_MAIN", "true")])
                .unwrap()
                .metrics
                .on_main
        );
    }
}
