//! Cost of metrics, one criterion group each:
//!
//! * `metrics_request` — one request through a router of 100 routes with the default
//!   `Layers::minimal()` stack, with and without the request-metrics layer
//!   ([`Layers::metrics`]): the difference is what recording a request costs (a series
//!   lookup by route template, a histogram observation per family, the in-flight gauge);
//! * `metrics_scrape` — [`metrics::Metrics::encode`] of a busy application's registry: 100
//!   routes × (GET with 3 statuses, POST) (400 series in each of the three HTTP histogram families)
//!   plus every Chopin and process family. The issue's goal is under 1 ms per scrape.
//!
//! ```text
//! cargo bench -p chopin-web-core --features metrics --bench metrics -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use chopin_core::layers::Layers;
use chopin_core::metrics;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, StatusCode};
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// 100 routes `/r{i}/items/{id}` answering 200, or the status in the query (`?s=404`).
fn router(metrics: bool) -> Router {
    let mut router = Router::new();
    for i in 0..100 {
        router = router.route(
            &format!("/r{i}/items/{{id}}"),
            get(
                |axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                    match q.as_deref() {
                        Some("s=404") => StatusCode::NOT_FOUND,
                        Some("s=500") => StatusCode::INTERNAL_SERVER_ERROR,
                        _ => StatusCode::OK,
                    }
                },
            )
            .post(|| async { StatusCode::CREATED }),
        );
    }
    let layers = Layers {
        metrics,
        ..Layers::minimal()
    };
    layers.apply(router)
}

async fn call(router: &Router, method: Method, uri: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

fn request(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("metrics_request");
    for (name, metrics) in [("without", false), ("with", true)] {
        let router = router(metrics);
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(call(&router, Method::GET, "/r42/items/7").await) });
        });
    }
    group.finish();
}

fn scrape(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let router = router(true);
    rt.block_on(async {
        for i in 0..100 {
            for query in ["", "?s=404", "?s=500"] {
                call(&router, Method::GET, &format!("/r{i}/items/1{query}")).await;
                call(&router, Method::POST, &format!("/r{i}/items/1{query}")).await;
            }
        }
    });
    let registry = metrics::global();
    let size = registry.encode().len();
    let mut group = c.benchmark_group("metrics_scrape");
    group.bench_function(format!("encode_{}KiB", size / 1024), |b| {
        b.iter(|| black_box(registry.encode()))
    });
    group.finish();
}

criterion_group!(benches, request, scrape);
criterion_main!(benches);
