//! Throughput of the pass-through rewriter (`chopin_core::passthrough::Rewriter`).
//!
//! Rows are realistic ~430-byte objects as PostgreSQL prints `jsonb` (a space after `:` and
//! `,`) — snake_case keys, a nested object, arrays, strings with escapes and non-ASCII text —
//! rewritten one by one into one output buffer, as the pass-through responder does. Each group
//! runs, side by side on the same input:
//!
//! * `copy` — appending the rows unchanged (the floor: what pass-through without a rewriter costs);
//! * `identity`, `camel`, `camel_typename_project` — the rewriter;
//! * `serde_json_value`, `sonic_rs_value` — the tree path the rewriter replaces: parse each row
//!   into a document tree and serialise it again (sonic-rs is Chopin's JSON engine).
//!
//! Throughput is input bytes per second. Run with
//!
//! ```text
//! cargo bench -p chopin-web-core --bench rewrite -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::ops::Range;

use chopin_core::passthrough::Rewriter;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// One row (~430 bytes) in PostgreSQL `jsonb` output style.
fn row(i: usize) -> String {
    format!(
        concat!(
            r#"{{"id": {id}, "user_id": {uid}, "display_name": "Ann Example {id}", "#,
            r#""email_address": "ann.{id}@example.com", "is_active": {active}, "#,
            r#""score_ratio": {score}, "#,
            r#""bio_text": "Line one\nLine \"two\" \\ caf\u00e9 — brûlée", "#,
            r#""home_address": {{"street_line_1": "12 Rue de Rivoli", "postal_code": "75001", "#,
            r#""geo_point": {{"lat_deg": 48.8566, "lon_deg": 2.3522}}}}, "#,
            r#""role_names": ["admin", "editor"], "last_order_ids": [{a}, {b}, {c}], "deleted_at": null}}"#
        ),
        id = 100_000 + i,
        uid = 7 * i + 3,
        active = !i.is_multiple_of(3),
        score = (i % 1000) as f64 / 1000.0 + 0.5,
        a = 31 * i,
        b = 31 * i + 7,
        c = 31 * i + 19,
    )
}

/// The same row as SQLite's `json_object` prints it: no whitespace between tokens.
fn strip_whitespace(text: &[u8]) -> Vec<u8> {
    let (mut in_string, mut escaped) = (false, false);
    let mut out = Vec::with_capacity(text.len());
    for &c in text {
        if in_string {
            (in_string, escaped) = (escaped || c != b'"', !escaped && c == b'\\');
        } else if c == b'"' {
            in_string = true;
        } else if c == b' ' {
            continue;
        }
        out.push(c);
    }
    out
}

/// `rows` rows concatenated into one buffer, with the range of each.
fn rows(count: usize, compact: bool) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut buf = Vec::new();
    let mut ranges = Vec::with_capacity(count);
    for i in 0..count {
        let start = buf.len();
        let text = row(i);
        if compact {
            buf.extend(strip_whitespace(text.as_bytes()));
        } else {
            buf.extend_from_slice(text.as_bytes());
        }
        ranges.push(start..buf.len());
    }
    (buf, ranges)
}

fn configs() -> Vec<(&'static str, Rewriter)> {
    vec![
        ("identity", Rewriter::new()),
        ("camel", Rewriter::new().camel_case(true)),
        (
            "camel_typename_project",
            Rewriter::new().camel_case(true).typename("User").project([
                "id",
                "displayName",
                "emailAddress",
                "bioText",
                "homeAddress",
                "roleNames",
                "lastOrderIds",
            ]),
        ),
    ]
}

fn bench_group(c: &mut Criterion, name: &str, count: usize, compact: bool, baselines: bool) {
    let (buf, ranges) = rows(count, compact);
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(buf.len() as u64));
    let mut out = Vec::with_capacity(buf.len() + 32 * count);

    group.bench_function("copy", |b| {
        b.iter(|| {
            out.clear();
            for r in &ranges {
                out.extend_from_slice(black_box(&buf[r.clone()]));
            }
            black_box(out.len())
        })
    });
    for (label, rewriter) in configs() {
        group.bench_with_input(
            BenchmarkId::from_parameter(label),
            &rewriter,
            |b, rewriter| {
                b.iter(|| {
                    out.clear();
                    for r in &ranges {
                        rewriter
                            .rewrite_into(black_box(&buf[r.clone()]), &mut out)
                            .expect("valid row");
                    }
                    black_box(out.len())
                })
            },
        );
    }
    if baselines {
        group.bench_function("serde_json_value", |b| {
            b.iter(|| {
                out.clear();
                for r in &ranges {
                    let v: serde_json::Value =
                        serde_json::from_slice(black_box(&buf[r.clone()])).expect("valid row");
                    serde_json::to_writer(&mut out, &v).expect("serialise");
                }
                black_box(out.len())
            })
        });
        group.bench_function("sonic_rs_value", |b| {
            b.iter(|| {
                out.clear();
                for r in &ranges {
                    let v: sonic_rs::Value =
                        sonic_rs::from_slice(black_box(&buf[r.clone()])).expect("valid row");
                    sonic_rs::to_writer(&mut out, &v).expect("serialise");
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn rewrite(c: &mut Criterion) {
    bench_group(c, "rewrite/jsonb_rows_x100", 100, false, true);
    bench_group(c, "rewrite/jsonb_rows_x10000", 10_000, false, true);
    bench_group(c, "rewrite/compact_rows_x10000", 10_000, true, false);
}

criterion_group!(benches, rewrite);
criterion_main!(benches);
