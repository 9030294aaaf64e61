//! One request's recording and one scrape, done with each candidate crate the way Chopin would
//! use it: a latency histogram labelled by method, route template and status.
//!
//! * `record/prometheus_client_family`: `Family::get_or_create(&labels).observe(v)`;
//! * `record/metrics_macro`: `metrics::histogram!(name, labels…).record(v)` against an
//!   installed `PrometheusRecorder` (the recorder resolves the key on every call);
//! * `render/*`: encoding 400 series in the Prometheus text format.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    http_request_method: &'static str,
    http_route: Arc<str>,
    http_response_status_code: u16,
}

fn routes() -> Vec<Arc<str>> {
    (0..100).map(|i| Arc::from(format!("/r{i}/items/{{id}}"))).collect()
}

fn bench(c: &mut Criterion) {
    let routes = routes();
    // prometheus-client
    let family: Family<Labels, Histogram, fn() -> Histogram> =
        Family::new_with_constructor(|| Histogram::new(BUCKETS));
    let mut registry = Registry::default();
    registry.register("http_server_request_duration_seconds", "latency", family.clone());
    // metrics + metrics-exporter-prometheus
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .expect("buckets")
        .install_recorder()
        .expect("recorder");
    for route in &routes {
        for status in [200u16, 404, 500] {
            family
                .get_or_create(&Labels {
                    http_request_method: "GET",
                    http_route: route.clone(),
                    http_response_status_code: status,
                })
                .observe(0.001);
            metrics::histogram!("http_server_request_duration_seconds",
                "http_request_method" => "GET",
                "http_route" => route.to_string(),
                "http_response_status_code" => status.to_string())
            .record(0.001);
        }
        family
            .get_or_create(&Labels {
                http_request_method: "POST",
                http_route: route.clone(),
                http_response_status_code: 201,
            })
            .observe(0.001);
        metrics::histogram!("http_server_request_duration_seconds",
            "http_request_method" => "POST",
            "http_route" => route.to_string(),
            "http_response_status_code" => "201")
        .record(0.001);
    }
    let route = routes[42].clone();
    let mut group = c.benchmark_group("record");
    group.bench_function("prometheus_client_family", |b| {
        b.iter(|| {
            family
                .get_or_create(&Labels {
                    http_request_method: "GET",
                    http_route: route.clone(),
                    http_response_status_code: black_box(200),
                })
                .observe(black_box(0.0007));
        })
    });
    group.bench_function("metrics_macro", |b| {
        b.iter(|| {
            let status: u16 = black_box(200);
            metrics::histogram!("http_server_request_duration_seconds",
                "http_request_method" => "GET",
                "http_route" => route.to_string(),
                "http_response_status_code" => status.to_string())
            .record(black_box(0.0007));
        })
    });
    group.finish();
    let mut group = c.benchmark_group("render");
    group.bench_function("prometheus_client", |b| {
        b.iter(|| {
            let mut out = String::new();
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
            black_box(out)
        })
    });
    group.bench_function("metrics_exporter_prometheus", |b| b.iter(|| black_box(handle.render())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
