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
#
# Time to first byte is Chopin's only if nothing else holds the CPUs it needs. While a large
# stream runs, the PostgreSQL backend producing it is busy for seconds; on a small box where
# the server, the backend and curl share the CPUs, a task woken on the backend's CPU can wait
# for the scheduler's next tick (4 ms at HZ=250) before it runs — at 1,000 rows the backend is
# done within a millisecond and nobody waits. So, by default:
#   PG_CPU      the CPU the PostgreSQL backends serving the server are pinned to (`taskset -p`,
#               local PostgreSQL only; default: the first CPU other than SERVER_CPU; `none`
#               leaves them alone);
#   CLIENT_RT=1 curl runs at real-time priority (`chrt -f 1`), so it runs as soon as its data
#               arrives (0: normal priority).
# Both need the right to change those processes' scheduling (root, or CAP_SYS_NICE); without
# it the script measures as is and the report says so.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
invocation="$(bench_invocation bench/stream-mem.sh RUNS SIZES POOL SERVER_CPU PG_CPU CLIENT_RT PGHOST PGPORT \
    PGUSER PGSSLMODE BENCH_DB CARGO_EXTRA_ARGS CARGO_PROFILE BENCH_SMOKE)"
bench_init stream-mem.sh

RUNS="${RUNS:-5}"
# Smoke mode streams 20,000 rows instead of a million: it checks the harness, not the memory.
[[ "$BENCH_SMOKE" != 1 ]] || : "${SIZES:=1000 20000}"
SIZES="${SIZES:-1000 1000000}"
POOL="${POOL:-8}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_RT="${CLIENT_RT:-1}"
BENCH_DB="${BENCH_DB:-chopin_bench}"
bench_pg_env
OUT="$(bench_out bench/results/passthrough.md sections)"

BIND=127.0.0.1:3013
DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$BENCH_DB?sslmode=$PGSSLMODE"

bench_require taskset python3 cargo psql curl
bench_check_int RUNS 1
read -r -a sizes <<<"$SIZES"

# The measuring client: at real-time priority when asked for and allowed.
client=()
if [[ "$CLIENT_RT" == 1 ]]; then
    if chrt -f 1 true 2>/dev/null; then
        client=(chrt -f 1)
    else
        log "warning: cannot run curl at real-time priority (chrt -f 1); measuring at normal priority"
    fi
fi

# PG_CPU: default to the first CPU this script may use other than SERVER_CPU.
if [[ -z "${PG_CPU:-}" ]]; then
    PG_CPU=none
    for cpu in $(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))'); do
        if [[ "$cpu" != "$SERVER_CPU" ]]; then
            PG_CPU="$cpu"
            break
        fi
    done
fi
if [[ "$PG_CPU" != none ]]; then
    bench_check_int PG_CPU 0
    case "$PGHOST" in
        127.0.0.1 | localhost | ::1 | /*) ;;
        *)
            log "PostgreSQL is not local ($PGHOST): its backends are not pinned"
            PG_CPU=none
            ;;
    esac
fi
if [[ "$PG_CPU" != none ]] && ! command -v ss >/dev/null 2>&1; then
    log "warning: ss (iproute2) is missing: the PostgreSQL backends are not pinned"
    PG_CPU=none
fi

# --- data (created by the same SQL as run-db.sh, if missing) --------------------------

bench_pg_setup "$BENCH_DB" 10000

# --- build ----------------------------------------------------------------------------

bench_raw_dir stream
bench_build -p chopin-bench-example
exe="$(bench_exe chopin-bench-example)"

server_cmd=(env "BIND=$BIND" "DATABASE_URL=$DB_URL&max_connections=$POOL" "${CHOPIN_SERVER_ENV[@]}"
    taskset -c "$SERVER_CPU" "$exe")

# --- server -------------------------------------------------------------------------------

start_server() { bench_start server "$BIND" "$RAW/server.log" "${server_cmd[@]}"; SERVER_PID="${BENCH_PID[server]}"; }
stop_server() { bench_stop server; }

# VmRSS / VmHWM of the server, in KiB.
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"; }

# Pin the PostgreSQL backends at the other end of the server's pooled connections to PG_CPU;
# prints how many were pinned. The server's local ports name them in pg_stat_activity.
pin_backends() {
    local ports pid n=0
    ports="$(ss -tnpH state established "( dport = :$PGPORT )" 2>/dev/null |
        awk -v p="pid=$SERVER_PID," 'index($0, p) { n = split($3, a, ":"); printf "%s%s", sep, a[n]; sep = "," }')"
    if [[ -n "$ports" ]]; then
        for pid in $(psql -X -At -d "$BENCH_DB" -c \
            "SELECT pid FROM pg_stat_activity WHERE client_port IN ($ports) AND client_addr IS NOT NULL"); do
            taskset -p -c "$PG_CPU" "$pid" >/dev/null 2>&1 && n=$((n + 1))
        done
    fi
    echo "$n"
}

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
printf '# run\trows\tidle_rss_kb\thwm_kb\trss_after_kb\tttfb_s\ttotal_s\tbytes\tstatus\tpg_pinned\n' >"$tsv"
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
        pinned=0
        [[ "$PG_CPU" == none ]] || pinned="$(pin_backends)"
        # Reset the peak-RSS counter so VmHWM covers only the measured request.
        echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || reset_ok=no
        res="$(${client[@]+"${client[@]}"} curl -sS -o /dev/null -w '%{http_code}\t%{time_starttransfer}\t%{time_total}\t%{size_download}' \
            "http://$BIND/db/stream?rows=$n")"
        sleep 0.2
        hwm="$(status_kb VmHWM)"
        after="$(status_kb VmRSS)"
        IFS=$'\t' read -r code ttfb total size <<<"$res"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$n" "$idle" "$hwm" "$after" "$ttfb" "$total" "$size" "$code" "$pinned" >>"$tsv"
        log "run $run rows=$n: status $code, idle ${idle} KiB, peak ${hwm} KiB, ttfb ${ttfb}s, total ${total}s, ${size} bytes, $pinned backend(s) pinned"
        stop_server
    done
done
[[ "$reset_ok" == yes ]] || log "warning: could not reset VmHWM; peaks include start-up and warm-up"

python3 -B bench/report-db.py stream --tsv "$tsv" --out "$OUT" \
    --invocation "$invocation" --loadavg "$loadavg_start" --hwm-reset "$reset_ok" \
    --client "${client[*]-}" --pg-cpu "$PG_CPU" \
    --server-command "$(printf '%q ' "${server_cmd[@]}" | sed "s|$ROOT/||g")"
log "report: $OUT (raw output: $RAW)"
