#!/usr/bin/env bash
# Reproducible HTTP benchmark: Chopin vs bare axum, bare actix-web and the epoll engine.
#
#   bash bench/run.sh                                  # everything, 5 rounds x 10 s, one core
#   MODE=both bash bench/run.sh                        # servers on both CPUs, wrk beside them
#   TARGETS="axum actix" ROUNDS=2 DURATION=3 bash bench/run.sh
#   CARGO_EXTRA_ARGS="--config .cargo/x86-64-simd.toml" bash bench/run.sh
#   TARGETS="chopin-full chopin-minimal" ENDPOINTS="json json_auth" bash bench/run.sh
#   BENCH_SMOKE=1 bash bench/run.sh                    # harness check (see bench/lib.sh)
#
# `json_auth` (Chopin targets only; skipped for the baselines) is `/json` behind
# `AuthUser`: wrk sends `Authorization: Bearer <token>`, a token minted once per run by
# `chopin-bench-example token` with the fixed benchmark key BENCH_JWT_SECRET.
#
# MODE=single (default): each server pinned to one CPU (SERVER_CPU, default 0), wrk to another
# (CLIENT_CPU, default 1); report bench/results/latest.md. MODE=both: each server and wrk on
# every CPU; report bench/results/latest-both.md. Targets are interleaved inside every round.
# Raw wrk output goes to bench/results/raw/<run-id>/. See bench/README.md for the method.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
invocation="$(bench_invocation bench/run.sh TARGETS ENDPOINTS MODE ROUNDS DURATION WARMUP CONNECTIONS \
    WRK_THREADS SERVER_CPU CLIENT_CPU QUIET_WAIT CARGO_EXTRA_ARGS CARGO_PROFILE CHOPIN_BIN BENCH_SMOKE)"
bench_init run.sh

ALL_TARGETS="axum actix epoll chopin-full chopin-nometrics chopin-minimal chopin-full-percore chopin-minimal-percore"
ENDPOINTS="${ENDPOINTS:-json plaintext}"
MODE="${MODE:-single}"
TARGETS="${TARGETS:-$ALL_TARGETS}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
QUIET_WAIT="${QUIET_WAIT:-0}"
CHOPIN_BIN="${CHOPIN_BIN:-chopin-bench-example}"

bench_require wrk taskset python3 cargo curl
bench_check_int ROUNDS 1
bench_check_int DURATION 1
bench_check_int WARMUP 0
bench_check_int QUIET_WAIT 0
for ep in $ENDPOINTS; do
    case "$ep" in
        json | plaintext | json_auth) ;;
        *) die "unknown endpoint '$ep' in ENDPOINTS (known: json plaintext json_auth)" ;;
    esac
done
NCPU="$(nproc)"
case "$MODE" in
    single)
        bench_cpus
        SERVER_CPUS="$SERVER_CPU"
        CLIENT_CPUS="$CLIENT_CPU"
        WORKERS=1
        WRK_THREADS="${WRK_THREADS:-1}"
        OUT="$(bench_out bench/results/latest.md)"
        ;;
    both)
        SERVER_CPUS="0-$((NCPU - 1))"
        CLIENT_CPUS="$SERVER_CPUS"
        WORKERS="$NCPU"
        WRK_THREADS="${WRK_THREADS:-$NCPU}"
        OUT="$(bench_out bench/results/latest-both.md)"
        ;;
    *) die "MODE must be single or both (got '$MODE')" ;;
esac
[[ "$NCPU" -ge 2 ]] || die "the harness needs at least two CPUs"
CLIENT_CPU="$CLIENT_CPUS" # what bench_wrk pins wrk to

# --- per-target definitions --------------------------------------------------

target_bin() {
    case "$1" in
        axum) echo axum-baseline ;;
        actix) echo actix-baseline ;;
        epoll) echo epoll-baseline ;;
        chopin-*) echo "$CHOPIN_BIN" ;;
        *) return 1 ;;
    esac
}

target_bind() {
    case "$1" in
        axum) echo 127.0.0.1:3001 ;;
        actix) echo 127.0.0.1:3002 ;;
        epoll) echo 127.0.0.1:3004 ;;
        chopin-*) echo 127.0.0.1:3003 ;;
    esac
}

# Extra environment (space-separated KEY=VALUE) besides BIND.
target_env() {
    local stack
    case "$1" in
        chopin-*)
            stack="${1#chopin-}"
            stack="${stack%-percore}"
            echo -n "CHOPIN_BENCH_STACK=$stack ${CHOPIN_SERVER_ENV[*]}"
            # Per-core mode: one single-threaded runtime per CPU the server may use.
            [[ "$1" != *-percore ]] || echo -n " CHOPIN_WORKERS=$WORKERS"
            echo
            ;;
        *) echo "" ;;
    esac
}

# Whether target $1 serves endpoint $2 (`json_auth` exists only in Chopin).
target_supports() {
    case "$2" in
        json_auth) [[ "$1" == chopin-* ]] ;;
        *) return 0 ;;
    esac
}

read -r -a targets <<<"$TARGETS"
[[ ${#targets[@]} -gt 0 ]] || die "TARGETS is empty"
packages=()
want_epoll=0
for t in "${targets[@]}"; do
    case "$t" in
        axum) packages+=(-p axum-baseline) ;;
        actix) packages+=(-p actix-baseline) ;;
        epoll) want_epoll=1 ;;
        chopin-full | chopin-nometrics | chopin-minimal | chopin-full-percore | chopin-minimal-percore)
            [[ " ${packages[*]-} " == *" chopin-bench-example "* ]] || packages+=(-p chopin-bench-example) ;;
        *) die "unknown target '$t' (known: $ALL_TARGETS)" ;;
    esac
done

# --- build -------------------------------------------------------------------

bench_raw_dir ""
if [[ ${#packages[@]} -gt 0 ]]; then
    bench_build "${packages[@]}"
else
    BUILD_CMD=""
fi
if [[ $want_epoll == 1 ]]; then
    bench_build_epoll
    BUILD_CMD+="${BUILD_CMD:+$'\n'}$EPOLL_BUILD_CMD"
fi

# Per-core targets need a bench binary that reads CHOPIN_WORKERS; skip them (with a message in
# the log and the report) when it does not, instead of measuring the default mode twice.
skipped=""
kept=()
for t in "${targets[@]}"; do
    exe="$(bench_exe "$(target_bin "$t")")"
    if [[ "$t" == *-percore ]] && ! grep -qa CHOPIN_WORKERS "$exe"; then
        log "skipping $t: $(target_bin "$t") does not read CHOPIN_WORKERS (per-core workers not built yet)"
        skipped+="\`$t\`: the bench binary does not read CHOPIN_WORKERS (per-core workers not built yet)"$'\n'
        continue
    fi
    kept+=("$t")
done
targets=("${kept[@]}")
[[ ${#targets[@]} -gt 0 ]] || die "no target left to measure"

server_lines=""
for t in "${targets[@]}"; do
    rel="${EXE_OF[$(target_bin "$t")]#"$ROOT"/}"
    env_str="$(target_env "$t")"
    server_lines+="BIND=$(target_bind "$t")${env_str:+ $env_str} taskset -c $SERVER_CPUS $rel   # $t"$'\n'
done
server_lines="${server_lines%$'\n'}"

BENCH_TOKEN=""
if [[ " $ENDPOINTS " == *" json_auth "* ]]; then
    [[ -n "${EXE_OF[$CHOPIN_BIN]-}" ]] || die "ENDPOINTS has json_auth but no Chopin target is built"
    BENCH_TOKEN="$(env "${CHOPIN_SERVER_ENV[@]}" "${EXE_OF[$CHOPIN_BIN]}" token)" ||
        die "could not mint the benchmark token"
fi

# --- server lifecycle ----------------------------------------------------------

CLK_TCK="$(getconf CLK_TCK)"

# One GET with curl (a keep-alive request: the epoll engine never answers one that asks for
# `Connection: close`); prints the raw response, headers included. $4: extra header line.
http_get() {
    local -a extra=()
    [[ -z "${4-}" ]] || extra=(-H "$4")
    curl -sS -i --max-time 5 ${extra[@]+"${extra[@]}"} "http://$1:$2/$3"
}

start_server() {
    local t="$1" env_str
    env_str="$(target_env "$t")"
    local -a env_args=()
    read -r -a env_args <<<"$env_str"
    bench_start server "$(target_bind "$t")" "$RAW/server-$t.log" \
        env BIND="$(target_bind "$t")" ${env_args[@]+"${env_args[@]}"} \
        taskset -c "$SERVER_CPUS" "${EXE_OF[$(target_bin "$t")]}"
    bench_wait_http server "http://$(target_bind "$t")/plaintext"
}

# --- measure -------------------------------------------------------------------

loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# Share of all CPUs busy with other work over one second, just before the run.
cpu_busy_pct() {
    local _c u1 n1 s1 i1 w1 q1 sq1 st1 u2 n2 s2 i2 w2 q2 sq2 st2
    read -r _c u1 n1 s1 i1 w1 q1 sq1 st1 _ </proc/stat
    sleep 1
    read -r _c u2 n2 s2 i2 w2 q2 sq2 st2 _ </proc/stat
    local busy=$(((u2 + n2 + s2 + q2 + sq2 + st2) - (u1 + n1 + s1 + q1 + sq1 + st1)))
    local idle=$(((i2 + w2) - (i1 + w1)))
    echo $((100 * busy / (busy + idle > 0 ? busy + idle : 1)))
}
busy_start="$(cpu_busy_pct)"

# With QUIET_WAIT > 0, wait up to that long for other work to drop below 10 %
# CPU before a measurement (useful on a shared box; the server is idle here).
wait_quiet() {
    [[ $QUIET_WAIT -gt 0 ]] || return 0
    local deadline=$((SECONDS + QUIET_WAIT)) busy
    while true; do
        busy="$(cpu_busy_pct)"
        [[ $busy -gt 10 ]] || return 0
        if [[ $SECONDS -ge $deadline ]]; then
            log "  still ${busy}% busy after waiting ${QUIET_WAIT}s; measuring anyway"
            return 0
        fi
    done
}
if [[ $busy_start -gt 10 ]]; then
    log "warning: ${busy_start}% of CPU time is already busy with other work; results will be noisy"
fi

n=${#targets[@]}
n_ep=$(wc -w <<<"$ENDPOINTS")
est=$((ROUNDS * n * n_ep * (DURATION + WARMUP))) # an upper bound: json_auth skips baselines
log "run $RUN_ID ($MODE): targets [${targets[*]}], $ROUNDS round(s) x ${DURATION}s, ~${est}s of load"

for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the starting target each round so no target always goes first.
    order=()
    for ((i = 0; i < n; i++)); do order+=("${targets[$(((i + round - 1) % n))]}"); done
    log "round $round/$ROUNDS: ${order[*]}"
    for t in "${order[@]}"; do
        start_server "$t"
        bind="$(target_bind "$t")"
        for ep in $ENDPOINTS; do
            target_supports "$t" "$ep" || continue
            ep_headers=()
            auth_line=""
            if [[ "$ep" == json_auth ]]; then
                ep_headers=(-H "Authorization: Bearer $BENCH_TOKEN")
                auth_line="Authorization: Bearer $BENCH_TOKEN"
            fi
            if [[ $round -eq 1 ]]; then
                # Keep one sample response per target/endpoint for the report's sanity check.
                resp="$(http_get "${bind%:*}" "${bind##*:}" "$ep" "$auth_line" || true)"
                printf '%s' "$resp" >"$RAW/probe-$t-$ep.txt"
                [[ "$(head -n1 <<<"$resp")" == *" 200 "* ]] ||
                    die "GET http://$bind/$ep on '$t' did not return 200:
$(head -n 5 <<<"$resp")"
            fi
            wait_quiet
            out="$RAW/r$round-$t-$ep.txt"
            pid="${BENCH_PID[server]}"
            cpu0="$(bench_cpu_ticks "$pid")"
            t0="$(date +%s%N)"
            # The CPU share below covers the warm-up too (same load, same share).
            bench_wrk "$out" "http://$bind/$ep" ${ep_headers[@]+"${ep_headers[@]}"}
            t1="$(date +%s%N)"
            cpu1="$(bench_cpu_ticks "$pid")"
            # Share of one CPU the server got while wrk ran. A saturated server pinned to one
            # CPU on a quiet machine sits near 1.0; much less means it was starved (or wrk was).
            awk -v c="$((cpu1 - cpu0))" -v hz="$CLK_TCK" -v ns="$((t1 - t0))" \
                'BEGIN { printf "# harness: server_cpu=%.3f wall=%.2fs\n", (c / hz) / (ns / 1e9), ns / 1e9 }' >>"$out"
            log "  $t /$ep: $(bench_rps "$out") req/s"
        done
        bench_stop server
    done
done

# --- report --------------------------------------------------------------------

python3 -B bench/report.py render \
    --raw-dir "$RAW" \
    --out "$OUT" \
    --targets "${targets[*]}" \
    --endpoints "$ENDPOINTS" \
    --rounds "$ROUNDS" \
    --duration "$DURATION" \
    --warmup "$WARMUP" \
    --loadavg "$loadavg_start" \
    --busy "$busy_start" \
    --invocation "$invocation" \
    --build-command "$BUILD_CMD" \
    --server-command "$server_lines" \
    --wrk-command "$WRK_CMD" \
    --mode "$MODE" \
    --skipped "$skipped"
cp "$OUT" "$RAW/report.md"
log "report: $OUT (raw output: $RAW)"
cat "$OUT"
