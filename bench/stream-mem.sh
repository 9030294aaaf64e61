#!/usr/bin/env bash
# Streaming pass-through: server memory and time to first byte, 1,000 vs 1,000,000 rows.
#
#   bash bench/stream-mem.sh                    # 5 runs per size
#   RUNS=3 SIZES="1000 100000 1000000" bash bench/stream-mem.sh
#
# For every measurement the Chopin bench server (examples/bench, GET /db/stream?rows=N) is
# started fresh, pinned to SERVER_CPU, and warmed up with three 100-row requests. Then its idle
# VmRSS is read from /proc/<pid>/status, its peak-RSS counter is reset (clear_refs 5, when the
# kernel allows it), curl downloads the whole response to /dev/null, and VmHWM / VmRSS are read
# again. Writes the streaming section of bench/results/passthrough.md (other sections are kept).
set -euo pipefail

KNOBS=(RUNS SIZES POOL SERVER_CPU PGHOST PGPORT PGUSER PGSSLMODE BENCH_DB CARGO_EXTRA_ARGS)
invocation=""
for knob in "${KNOBS[@]}"; do
    if [[ -n "${!knob+x}" ]]; then
        invocation+="$knob=\"${!knob}\" "
    fi
done
invocation+="bash bench/stream-mem.sh"

RUNS="${RUNS:-5}"
SIZES="${SIZES:-1000 1000000}"
POOL="${POOL:-8}"
SERVER_CPU="${SERVER_CPU:-0}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
# TLS to a database on the same host only burns CPU on both sides (AES-GCM over every row).
PGSSLMODE="${PGSSLMODE:-disable}"
BENCH_DB="${BENCH_DB:-chopin_bench}"
CARGO_EXTRA_ARGS="${CARGO_EXTRA_ARGS:-}"
export PGHOST PGPORT PGUSER PGSSLMODE

BIND=127.0.0.1:3013
DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$BENCH_DB?sslmode=$PGSSLMODE"

die() {
    echo "bench/stream-mem.sh: error: $*" >&2
    exit 1
}
log() { echo "==> $*" >&2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
for tool in taskset python3 cargo psql curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
read -r -a sizes <<<"$SIZES"

# --- data (created by the same SQL as run-db.sh, if missing) --------------------------

psql -X -q -d postgres -c 'SELECT 1' >/dev/null || die "cannot connect to PostgreSQL"
if [[ -z "$(psql -X -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$BENCH_DB'")" ]]; then
    psql -X -q -d postgres -c "CREATE DATABASE \"$BENCH_DB\"" >/dev/null
fi
if [[ "$(psql -X -At -d "$BENCH_DB" -c "SELECT to_regclass('tv_item') IS NOT NULL AND (SELECT count(*) FROM tv_item) >= 10000" 2>/dev/null)" != t ]]; then
    log "creating bench_item / tv_item"
    psql -X -q -v ON_ERROR_STOP=1 -v rows=10000 -d "$BENCH_DB" -f bench/passthrough-setup.sql >/dev/null
fi

# --- build ----------------------------------------------------------------------------

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="bench/results/raw/stream-$RUN_ID"
mkdir -p "$RAW"
read -r -a extra_args <<<"$CARGO_EXTRA_ARGS"
build_cmd=(cargo build --release ${extra_args[@]+"${extra_args[@]}"} -p chopin-bench-example)
log "building: ${build_cmd[*]}"
"${build_cmd[@]}" --message-format=json-render-diagnostics >"$RAW/cargo-build.json" || die "cargo build failed"
exe="$(python3 -B bench/report.py executables <"$RAW/cargo-build.json" | awk -F'\t' '$1 == "chopin-bench-example" { print $2 }')"
[[ -x "$exe" ]] || die "cargo did not produce chopin-bench-example"

server_cmd=(env "BIND=$BIND" "DATABASE_URL=$DB_URL&max_connections=$POOL" CHOPIN_ENV=production
    CHOPIN_LOG=warn taskset -c "$SERVER_CPU" "$exe")

# --- server -------------------------------------------------------------------------------

SERVER_PID=""
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

start_server() {
    port_open "${BIND%:*}" "${BIND##*:}" && die "something is already listening on $BIND; stop it first"
    "${server_cmd[@]}" >>"$RAW/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        port_open "${BIND%:*}" "${BIND##*:}" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited during startup; see $RAW/server.log"
        sleep 0.1
    done
    die "server did not open $BIND within 30 s"
}

# VmRSS / VmHWM of the server, in KiB.
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"; }

# --- sanity: the largest response is one complete document -------------------------------------

big="${sizes[0]}"
for n in "${sizes[@]}"; do ((n > big)) && big=$n; done
log "checking GET /db/stream?rows=$big"
start_server
count="$(curl -sS --fail "http://$BIND/db/stream?rows=$big" | tee >(tail -c 2 >"$RAW/tail.txt") | grep -o '{"id": ' | wc -l)"
sleep 0.5
stop_server
[[ "$count" == "$big" && "$(cat "$RAW/tail.txt")" == "]}" ]] ||
    die "stream of $big rows returned $count objects ending with '$(cat "$RAW/tail.txt")'"

# --- measure ------------------------------------------------------------------------------

loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"
tsv="$RAW/stream.tsv"
printf '# run\trows\tidle_rss_kb\thwm_kb\trss_after_kb\tttfb_s\ttotal_s\tbytes\tstatus\n' >"$tsv"
reset_ok=yes
for ((run = 1; run <= RUNS; run++)); do
    order=("${sizes[@]}")
    if ((run % 2 == 0)); then
        order=()
        for ((i = ${#sizes[@]} - 1; i >= 0; i--)); do order+=("${sizes[$i]}"); done
    fi
    for n in "${order[@]}"; do
        start_server
        for _ in 1 2 3; do curl -sS --fail -o /dev/null "http://$BIND/db/stream?rows=100"; done
        sleep 0.5
        idle="$(status_kb VmRSS)"
        # Reset the peak-RSS counter so VmHWM covers only the measured request.
        echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || reset_ok=no
        res="$(curl -sS -o /dev/null -w '%{http_code}\t%{time_starttransfer}\t%{time_total}\t%{size_download}' \
            "http://$BIND/db/stream?rows=$n")"
        sleep 0.2
        hwm="$(status_kb VmHWM)"
        after="$(status_kb VmRSS)"
        IFS=$'\t' read -r code ttfb total size <<<"$res"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$n" "$idle" "$hwm" "$after" "$ttfb" "$total" "$size" "$code" >>"$tsv"
        log "run $run rows=$n: status $code, idle ${idle} KiB, peak ${hwm} KiB, ttfb ${ttfb}s, total ${total}s, ${size} bytes"
        stop_server
    done
done
[[ "$reset_ok" == yes ]] || log "warning: could not reset VmHWM; peaks include start-up and warm-up"

python3 -B bench/report-db.py stream --tsv "$tsv" --out bench/results/passthrough.md \
    --invocation "$invocation" --loadavg "$loadavg_start" --hwm-reset "$reset_ok" \
    --server-command "$(printf '%q ' "${server_cmd[@]}" | sed "s|$ROOT/||g")"
log "report: bench/results/passthrough.md (raw output: $RAW)"
