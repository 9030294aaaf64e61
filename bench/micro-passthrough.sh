#!/usr/bin/env bash
# Criterion micro-benchmark of the pass-through body builder, run several times; writes the
# criterion section of bench/results/passthrough.md (medians over runs, same-run ratios).
#
#   bash bench/micro-passthrough.sh             # 3 runs
#   RUNS=5 bash bench/micro-passthrough.sh
#
# Each run is exactly:
#   cargo bench -p chopin-web-core --bench passthrough -- --warm-up-time 1 --measurement-time 3
# (BENCH_SMOKE=1: one run, `--profile dev`, criterion's shortest settings; see bench/lib.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
invocation="$(bench_invocation bench/micro-passthrough.sh RUNS CARGO_PROFILE BENCH_SMOKE)"
bench_init micro-passthrough.sh
RUNS="${RUNS:-3}"
bench_check_int RUNS 1
bench_require cargo python3
OUT="$(bench_out bench/results/passthrough.md sections)"

# `cargo bench` uses the `bench` profile (release settings) unless CARGO_PROFILE names another
# (smoke mode: `dev`, with criterion's shortest settings; the figures then mean nothing).
profile_args=()
[[ "$CARGO_PROFILE" == release ]] || profile_args=(--profile "$CARGO_PROFILE")
timing=(--warm-up-time 1 --measurement-time 3)
# Smoke: the 100-row group only, as briefly as criterion allows.
[[ "$BENCH_SMOKE" != 1 ]] || timing=(--warm-up-time 0.01 --measurement-time 0.01 --sample-size 10 rows_100/)
# Smoke mode selects the bench through the workspace with every feature: the units the test
# command built (see bench_build in bench/lib.sh).
select=(-p chopin-web-core)
[[ "$BENCH_SMOKE" != 1 ]] || select=(--workspace --all-features)
bench_cmd=(cargo bench ${profile_args[@]+"${profile_args[@]}"} "${select[@]}" --bench passthrough -- "${timing[@]}")
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -B -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
bench_raw_dir micro
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
python3 -B bench/report-db.py criterion --raw-dir "$RAW" --out "$OUT" \
    --invocation "$invocation" --command "${bench_cmd[*]}" --row-bytes "${row_bytes:-?}" \
    --loadavg "$loadavg_start"
log "report: $OUT (raw output: $RAW)"
