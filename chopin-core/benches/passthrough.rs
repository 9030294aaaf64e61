//! Cost of building a list response body from database JSON rows, pass-through vs tree paths.
//!
//! Input: N rows of ~400 bytes each, as PostgreSQL prints `jsonb` (`{"id": 1, "x": …}`, a space
//! after `:` and `,`): snake_case keys, a nested object, arrays, strings with a few escapes and
//! some non-ASCII text. Every variant produces the whole body
//! `{"success":true,"data":[row,…]}` in a fresh buffer, as a request handler would:
//!
//! * `serde_json_tree` — each row parsed into a `serde_json::Value`, the envelope built around
//!   them and serialised with `serde_json::to_vec` (the classic serde path);
//! * `sonic_tree` — the same through Chopin's one JSON module:
//!   `chopin_core::json::from_slice::<sonic_rs::Value>` then `chopin_core::json::to_vec`;
//! * `passthrough` — `JsonRows::list_with(RowEncoder::new(), cap)`, `push(RawJson::Trusted(row))`
//!   per row, `into_body()`: rows copied as they are;
//! * `passthrough_camel` — the same with the snake_case → camelCase rewriter (one validating
//!   pass per row, output minified);
//! * `copy_floor` — the rows memcpy'd into one pre-sized `Vec` with commas and the same envelope
//!   bytes: the least any implementation can do.
//!
//! Each size is one criterion group, so the variants are measured side by side in one run.
//! Throughput is input bytes per second. Run with
//!
//! ```text
//! cargo bench -p chopin-web-core --bench passthrough -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::ops::Range;

use chopin_core::json;
use chopin_core::passthrough::{JsonRows, RawJson, Rewriter, RowEncoder};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;

/// Row `i` in `jsonb` output style (keys in `jsonb` order: by length, then bytes).
fn row(i: usize) -> String {
    let id = 500_000 + i;
    format!(
        concat!(
            r#"{{"id": {id}, "sku": "SKU-{id:07}", "tags": ["kitchen", "sale", "tag_{t}"], "#,
            r#""title": "Knife \"Pro\" #{id}", "rating": {rating}, "in_stock": {stock}, "#,
            r#""quantity": {qty}, "created_at": "2025-03-{day:02}T08:{min:02}:17.250Z", "#,
            r#""description": "Forged steel.\nHand wash only \\ no dishwasher. Café-grade — "#,
            r#"½ price.", "price_cents": {price}, "related_ids": [{r1}, {r2}], "#,
            r#""warehouse_info": {{"city": "Lyon", "zone_code": "B-{zone}", "postal_code": "69007"}}}}"#
        ),
        id = id,
        t = i % 17,
        rating = 1.05 + (i % 40) as f64 / 10.0,
        stock = !i.is_multiple_of(5),
        qty = (i * 7) % 250,
        day = 1 + i % 28,
        min = i % 60,
        price = 1_999 + (i * 13) % 50_000,
        zone = i % 9,
        r1 = id + 17,
        r2 = id + 301,
    )
}

/// `count` rows in one buffer, and the byte range of each (as a driver hands them out).
fn rows(count: usize) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut buf = Vec::new();
    let mut ranges = Vec::with_capacity(count);
    for i in 0..count {
        let start = buf.len();
        buf.extend_from_slice(row(i).as_bytes());
        ranges.push(start..buf.len());
    }
    (buf, ranges)
}

/// The success envelope, serialised the same way by both tree paths.
#[derive(Serialize)]
struct Envelope<'a, T> {
    success: bool,
    data: &'a [T],
}

const PREFIX: &[u8] = br#"{"success":true,"data":["#;
const SUFFIX: &[u8] = b"]}";

fn bench_size(c: &mut Criterion, count: usize) {
    let (buf, ranges) = rows(count);
    let rows: Vec<&[u8]> = ranges.iter().map(|r| &buf[r.clone()]).collect();
    // What a handler would pass as the capacity hint: the body's exact size.
    let cap = PREFIX.len() + buf.len() + (count - 1) + SUFFIX.len();
    let camel = RowEncoder::new().with_rewriter(Rewriter::new().camel_case(true));

    // All variants must describe the same document (the camelCase one modulo its keys).
    let reference: serde_json::Value = {
        let data: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::from_slice(r).expect("valid row"))
            .collect();
        serde_json::to_value(Envelope {
            success: true,
            data: &data,
        })
        .expect("serialise")
    };
    let mut passthrough = JsonRows::list_with(RowEncoder::new(), cap);
    for r in &rows {
        passthrough.push(RawJson::Trusted(r)).expect("push");
    }
    let passthrough = passthrough.into_body();
    assert_eq!(
        passthrough.len(),
        cap,
        "capacity hint is the exact body size"
    );
    let parsed: serde_json::Value = serde_json::from_slice(&passthrough).expect("valid body");
    assert_eq!(
        parsed, reference,
        "pass-through body differs from the serde body"
    );
    let sonic: sonic_rs::Value = json::from_slice(rows[0]).expect("valid row");
    let sonic = json::to_vec(&sonic).expect("serialise");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&sonic).expect("valid"),
        reference["data"][0],
        "sonic-rs round trip differs"
    );

    eprintln!(
        "passthrough/rows_{count}: {} input bytes, {} bytes per row on average",
        buf.len(),
        buf.len() / count
    );
    let mut group = c.benchmark_group(format!("passthrough/rows_{count}"));
    group.throughput(Throughput::Bytes(buf.len() as u64));

    group.bench_function("serde_json_tree", |b| {
        b.iter(|| {
            let data: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| serde_json::from_slice(black_box(r)).expect("valid row"))
                .collect();
            let body = serde_json::to_vec(&Envelope {
                success: true,
                data: &data,
            })
            .expect("serialise");
            black_box(body)
        })
    });
    group.bench_function("sonic_tree", |b| {
        b.iter(|| {
            let data: Vec<sonic_rs::Value> = rows
                .iter()
                .map(|r| json::from_slice(black_box(r)).expect("valid row"))
                .collect();
            let body = json::to_vec(&Envelope {
                success: true,
                data: &data,
            })
            .expect("serialise");
            black_box(body)
        })
    });
    group.bench_function("passthrough", |b| {
        b.iter(|| {
            let mut body = JsonRows::list_with(RowEncoder::new(), cap);
            for r in &rows {
                body.push(RawJson::Trusted(black_box(r))).expect("push");
            }
            black_box(body.into_body())
        })
    });
    group.bench_function("passthrough_camel", |b| {
        b.iter(|| {
            let mut body = JsonRows::list_with(camel.clone(), cap);
            for r in &rows {
                body.push(RawJson::Trusted(black_box(r))).expect("push");
            }
            black_box(body.into_body())
        })
    });
    group.bench_function("copy_floor", |b| {
        b.iter(|| {
            let mut body = Vec::with_capacity(cap);
            body.extend_from_slice(PREFIX);
            for (i, r) in rows.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(black_box(r));
            }
            body.extend_from_slice(SUFFIX);
            black_box(body)
        })
    });
    group.finish();
}

fn passthrough(c: &mut Criterion) {
    bench_size(c, 100);
    bench_size(c, 10_000);
}

criterion_group!(benches, passthrough);
criterion_main!(benches);
