#!/usr/bin/env bash
# Criterion micro-benchmark of the pass-through body builder, run several times; writes the
# criterion section of bench/results/passthrough.md (medians over runs, same-run ratios).
#
#   bash bench/micro-passthrough.sh             # 3 runs
#   RUNS=5 bash bench/micro-passthrough.sh
#
# Each run is exactly:
#   cargo bench -p chopin-web-core --bench passthrough -- --warm-up-time 1 --measurement-time 3
set -euo pipefail

invocation="${RUNS+RUNS=\"$RUNS\" }bash bench/micro-passthrough.sh"
RUNS="${RUNS:-3}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench_cmd=(cargo bench -p chopin-web-core --bench passthrough -- --warm-up-time 1 --measurement-time 3)
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -B -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="bench/results/raw/micro-$RUN_ID"
mkdir -p "$RAW"
loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"

for ((run = 1; run <= RUNS; run++)); do
    echo "==> run $run/$RUNS: ${bench_cmd[*]} (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "${bench_cmd[@]}" >"$RAW/run$run.log" 2>&1 || { tail -n 30 "$RAW/run$run.log" >&2; exit 1; }
    for group in "$target_dir"/criterion/passthrough_rows_*; do
        g="$(basename "$group")"
        mkdir -p "$RAW/run$run/$g"
        for fn in "$group"/*/new/estimates.json; do
            cp "$fn" "$RAW/run$run/$g/$(basename "$(dirname "$(dirname "$fn")")").json"
        done
    done
done

row_bytes="$(sed -n 's/^passthrough\/rows_10000: .* \([0-9]*\) bytes per row on average$/\1/p' "$RAW/run1.log" | head -n1)"
python3 -B bench/report-db.py criterion --raw-dir "$RAW" --out bench/results/passthrough.md \
    --invocation "$invocation" --command "${bench_cmd[*]}" --row-bytes "${row_bytes:-?}" \
    --loadavg "$loadavg_start"
echo "==> report: bench/results/passthrough.md (raw output: $RAW)" >&2
