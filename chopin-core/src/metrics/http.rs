//! HTTP server metrics, named as the OpenTelemetry HTTP semantic conventions render in
//! Prometheus.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::families::latency_histogram;

/// Body sizes: 64 B to 64 MiB, ×4.
const SIZE_BUCKETS: [f64; 11] = [
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    http_request_method: &'static str,
    http_route: Arc<str>,
    http_response_status_code: u16,
}

/// The histograms of one (method, route, status) series, looked up once per request.
#[derive(Debug)]
pub(crate) struct HttpSeries {
    /// `http_server_request_duration_seconds`.
    pub(crate) duration: Histogram,
    /// `http_server_request_body_size_bytes`.
    pub(crate) request_size: Histogram,
    /// `http_server_response_body_size_bytes`.
    pub(crate) response_size: Histogram,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

/// Series per (method, status) of one route.
type RouteSeries = Vec<(&'static str, u16, Arc<HttpSeries>)>;

/// Requests: duration, body sizes, requests in flight.
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    duration: HistogramFamily,
    request_size: HistogramFamily,
    response_size: HistogramFamily,
    /// `http_server_active_requests`.
    pub(crate) active: Gauge,
    /// Route template → its series: one read-locked lookup by `&str` per request, no
    /// allocation once a series exists.
    series: RwLock<HashMap<Box<str>, RouteSeries>>,
}

impl HttpMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let this = Self {
            duration: Family::new_with_constructor(latency_histogram),
            request_size: Family::new_with_constructor(size_histogram),
            response_size: Family::new_with_constructor(size_histogram),
            active: Gauge::default(),
            series: RwLock::default(),
        };
        registry.register_with_unit(
            "http_server_request_duration",
            "Time from receiving a request to its response head, by method, route template and status",
            Unit::Seconds,
            this.duration.clone(),
        );
        registry.register_with_unit(
            "http_server_request_body_size",
            "Request body sizes (from Content-Length; bodies of unknown length are not counted)",
            Unit::Bytes,
            this.request_size.clone(),
        );
        registry.register_with_unit(
            "http_server_response_body_size",
            "Response body sizes (streamed bodies counted when they end)",
            Unit::Bytes,
            this.response_size.clone(),
        );
        registry.register(
            "http_server_active_requests",
            "Requests being handled now",
            this.active.clone(),
        );
        this
    }

    /// The series of `method` on `route` (a route template; `""` for requests that matched
    /// none) answered with `status`.
    pub(crate) fn series(
        &self,
        method: &http::Method,
        route: &str,
        status: u16,
    ) -> Arc<HttpSeries> {
        let method = method_label(method);
        {
            let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = map.get(route).and_then(|series| {
                series
                    .iter()
                    .find(|(m, s, _)| *m == method && *s == status)
                    .map(|(_, _, series)| series.clone())
            }) {
                return found;
            }
        }
        let labels = HttpLabels {
            http_request_method: method,
            http_route: Arc::from(route),
            http_response_status_code: status,
        };
        let series = Arc::new(HttpSeries {
            duration: self.duration.get_or_create_owned(&labels),
            request_size: self.request_size.get_or_create_owned(&labels),
            response_size: self.response_size.get_or_create_owned(&labels),
        });
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(Box::from(route)).or_default();
        if let Some((_, _, existing)) = entry.iter().find(|(m, s, _)| *m == method && *s == status)
        {
            return existing.clone();
        }
        entry.push((method, status, series.clone()));
        series
    }
}

/// `http_request_method` as the semantic conventions give it: the known methods by name,
/// every other as `_OTHER` (a client cannot create series by inventing methods).
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&http::Method::GET), "GET");
        let made_up = http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "_OTHER");
    }

    #[test]
    fn a_series_is_created_once() {
        let mut registry = Registry::default();
        let metrics = HttpMetrics::new(&mut registry);
        let a = metrics.series(&http::Method::GET, "/posts/{id}", 200);
        let b = metrics.series(&http::Method::GET, "/posts/{id}", 200);
        assert!(Arc::ptr_eq(&a, &b));
        let c = metrics.series(&http::Method::GET, "/posts/{id}", 404);
        assert!(!Arc::ptr_eq(&a, &c));
        a.duration.observe(0.001);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains(
                "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/posts/{id}\",http_response_status_code=\"200\"} 1"
            ),
            "{out}"
        );
    }
}
