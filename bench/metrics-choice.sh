#!/usr/bin/env bash
# Which Prometheus crate Chopin records with: prometheus-client (chosen) against `metrics` +
# `metrics-exporter-prometheus`, for one request's histogram observation (route template,
# method and status labels) and for a scrape of 400 series. Criterion, release profile.
#
#   bash bench/metrics-choice.sh
#
# The crate under bench/metrics-choice has its own workspace (excluded from ours), so the
# candidate Chopin did not choose is never built by CI. Prints criterion's summary lines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/metrics-choice"
# Built into the workspace's target/ (ignored), as bench/epoll-baseline is.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../../target/metrics-choice}"
MEASURE="${MEASURE:-3}"
if [[ "${BENCH_SMOKE:-0}" == 1 ]]; then
    cargo bench --quiet --profile dev --bench choice -- --warm-up-time 0.2 --measurement-time 0.3 2>&1 |
        grep -E '^(record|render)/|time:'
else
    cargo bench --quiet --bench choice -- --warm-up-time 1 --measurement-time "$MEASURE" 2>&1 |
        grep -E '^(record|render)/|time:'
fi
