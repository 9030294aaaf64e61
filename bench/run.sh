#!/usr/bin/env bash
# Reproducible HTTP benchmark: Chopin vs bare axum vs bare actix-web.
#
#   bash bench/run.sh                                  # everything, 5 rounds x 10 s
#   TARGETS="axum actix" ROUNDS=2 DURATION=3 bash bench/run.sh
#   CARGO_EXTRA_ARGS="--config .cargo/x86-64-simd.toml" bash bench/run.sh
#   TARGETS="chopin-full chopin-minimal" ENDPOINTS="json json_auth" bash bench/run.sh
#
# `json_auth` (Chopin targets only; skipped for the baselines) is `/json` behind
# `AuthUser`: wrk sends `Authorization: Bearer <token>`, a token minted once per run by
# `chopin-bench-example token` with the fixed benchmark key BENCH_JWT_SECRET.
#
# Each server is pinned to one CPU (SERVER_CPU, default 0) and wrk to another
# (CLIENT_CPU, default 1). Targets are interleaved inside every round. Raw wrk
# output goes to bench/results/raw/<run-id>/, the report to
# bench/results/latest.md. See bench/README.md for the method.
set -euo pipefail

# Cargo packages this harness knows how to build. If one does not exist (yet),
# drop it from this line; targets that need it then fail with a clear message.
PACKAGES="axum-baseline actix-baseline chopin-bench-example"

ALL_TARGETS="axum actix chopin-full chopin-minimal"
ENDPOINTS="${ENDPOINTS:-json plaintext}"
# Not a secret: the key the benchmark server signs and checks its bench token with.
BENCH_JWT_SECRET="chopin-benchmark-key-not-secret-0123456789"

# Record the knobs the caller set explicitly, to print the exact invocation.
KNOBS=(TARGETS ENDPOINTS ROUNDS DURATION WARMUP CONNECTIONS WRK_THREADS SERVER_CPU CLIENT_CPU
    QUIET_WAIT CARGO_EXTRA_ARGS CARGO_PROFILE CHOPIN_BIN)
invocation=""
for knob in "${KNOBS[@]}"; do
    if [[ -n "${!knob+x}" ]]; then
        value="${!knob}"
        if [[ "$value" =~ ^[A-Za-z0-9._/:=,+-]+$ ]]; then
            invocation+="$knob=$value "
        else
            invocation+="$knob=\"$value\" "
        fi
    fi
done
invocation+="bash bench/run.sh"

TARGETS="${TARGETS:-$ALL_TARGETS}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-1}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
QUIET_WAIT="${QUIET_WAIT:-0}"
CARGO_EXTRA_ARGS="${CARGO_EXTRA_ARGS:-}"
CARGO_PROFILE="${CARGO_PROFILE:-release}"
CHOPIN_BIN="${CHOPIN_BIN:-chopin-bench-example}"

die() {
    echo "bench/run.sh: error: $*" >&2
    exit 1
}
log() { echo "==> $*" >&2; }

# --- per-target definitions --------------------------------------------------

target_package() {
    case "$1" in
        axum) echo axum-baseline ;;
        actix) echo actix-baseline ;;
        chopin-full | chopin-minimal) echo chopin-bench-example ;;
        *) return 1 ;;
    esac
}

target_bin() {
    case "$1" in
        axum) echo axum-baseline ;;
        actix) echo actix-baseline ;;
        chopin-full | chopin-minimal) echo "$CHOPIN_BIN" ;;
    esac
}

target_bind() {
    case "$1" in
        axum) echo 127.0.0.1:3001 ;;
        actix) echo 127.0.0.1:3002 ;;
        chopin-full | chopin-minimal) echo 127.0.0.1:3003 ;;
    esac
}

# Extra environment (space-separated KEY=VALUE) besides BIND.
target_env() {
    case "$1" in
        chopin-full) echo "CHOPIN_BENCH_STACK=full CHOPIN_ENV=production CHOPIN_LOG=warn CHOPIN_JWT_SECRET=$BENCH_JWT_SECRET" ;;
        chopin-minimal) echo "CHOPIN_BENCH_STACK=minimal CHOPIN_ENV=production CHOPIN_LOG=warn CHOPIN_JWT_SECRET=$BENCH_JWT_SECRET" ;;
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

# --- preflight ---------------------------------------------------------------

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

missing=0
if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk not found. Install it with: sudo apt-get install -y wrk" >&2
    missing=1
fi
if ! command -v taskset >/dev/null 2>&1; then
    echo "taskset not found. Install it with: sudo apt-get install -y util-linux" >&2
    missing=1
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found. Install it with: sudo apt-get install -y python3" >&2
    missing=1
fi
command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found (install Rust via https://rustup.rs)" >&2
    missing=1
}
[[ $missing -eq 0 ]] || exit 1

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be whole seconds > 0 (got '$DURATION')"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be whole seconds >= 0 (got '$WARMUP')"
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || die "QUIET_WAIT must be whole seconds >= 0 (got '$QUIET_WAIT')"
for ep in $ENDPOINTS; do
    case "$ep" in
        json | plaintext | json_auth) ;;
        *) die "unknown endpoint '$ep' in ENDPOINTS (known: json plaintext json_auth)" ;;
    esac
done
[[ "$SERVER_CPU" != "$CLIENT_CPU" ]] || die "SERVER_CPU and CLIENT_CPU must differ"
taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to CPU $SERVER_CPU (SERVER_CPU)"
taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to CPU $CLIENT_CPU (CLIENT_CPU)"

read -r -a targets <<<"$TARGETS"
[[ ${#targets[@]} -gt 0 ]] || die "TARGETS is empty"
packages=()
for t in "${targets[@]}"; do
    pkg="$(target_package "$t")" || die "unknown target '$t' (known: $ALL_TARGETS)"
    [[ " $PACKAGES " == *" $pkg "* ]] ||
        die "target '$t' needs package '$pkg', which is not in PACKAGES in bench/run.sh"
    [[ " ${packages[*]-} " == *" $pkg "* ]] || packages+=("$pkg")
done

# --- build -------------------------------------------------------------------

workspace_packages="$(cargo metadata --no-deps --format-version 1 |
    python3 -B -c 'import json, sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"]))')" ||
    die "cargo metadata failed"
for pkg in "${packages[@]}"; do
    [[ " $workspace_packages " == *" $pkg "* ]] ||
        die "package '$pkg' is not a workspace member; drop the targets that need it from TARGETS (targets: $TARGETS)"
done

read -r -a extra_args <<<"$CARGO_EXTRA_ARGS"
if [[ "$CARGO_PROFILE" == release ]]; then
    profile_args=(--release)
else
    profile_args=(--profile "$CARGO_PROFILE")
fi
build_cmd=(cargo build "${profile_args[@]}" ${extra_args[@]+"${extra_args[@]}"})
for pkg in "${packages[@]}"; do build_cmd+=(-p "$pkg"); done

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="bench/results/raw/$RUN_ID"
mkdir -p "$RAW"

log "building: ${build_cmd[*]}"
"${build_cmd[@]}" --message-format=json-render-diagnostics >"$RAW/cargo-build.json" || {
    rm -rf "$RAW"
    die "cargo build failed"
}

declare -A exe_of=()
while IFS=$'\t' read -r name path; do
    exe_of["$name"]="$path"
done < <(python3 -B bench/report.py executables <"$RAW/cargo-build.json")

server_lines=""
for t in "${targets[@]}"; do
    bin="$(target_bin "$t")"
    [[ -n "${exe_of[$bin]-}" && -x "${exe_of[$bin]}" ]] ||
        die "cargo did not produce binary '$bin' for target '$t' (set CHOPIN_BIN if it has another name)"
    rel="${exe_of[$bin]#"$ROOT"/}"
    env_str="$(target_env "$t")"
    server_lines+="BIND=$(target_bind "$t")${env_str:+ $env_str} taskset -c $SERVER_CPU $rel   # $t"$'\n'
done
server_lines="${server_lines%$'\n'}"

BENCH_TOKEN=""
if [[ " $ENDPOINTS " == *" json_auth "* ]]; then
    [[ -n "${exe_of[$CHOPIN_BIN]-}" ]] || die "ENDPOINTS has json_auth but no Chopin target is built"
    BENCH_TOKEN="$(CHOPIN_ENV=production CHOPIN_JWT_SECRET="$BENCH_JWT_SECRET" "${exe_of[$CHOPIN_BIN]}" token)" ||
        die "could not mint the benchmark token"
fi

# --- server lifecycle ----------------------------------------------------------

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

CLK_TCK="$(getconf CLK_TCK)"

# User + system CPU ticks used so far by the running server (all its threads).
server_cpu_ticks() {
    local stat
    stat="$(<"/proc/$SERVER_PID/stat")"
    stat="${stat##*) }" # drop "pid (comm) "; fields then start at field 3 (state)
    local -a f
    read -r -a f <<<"$stat"
    echo $((f[11] + f[12])) # utime (field 14) + stime (field 15)
}

# One GET over bash's /dev/tcp; prints the raw response. $4: extra header line (optional).
http_get() {
    local extra=""
    [[ -z "${4-}" ]] || extra="$4"$'\r\n'
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" &&
        printf "GET /%s HTTP/1.1\r\nHost: %s:%s\r\n%sConnection: close\r\n\r\n" "$2" "$0" "$1" "$3" >&3 &&
        cat <&3' "$1" "$2" "$3" "$extra"
}

start_server() {
    local t="$1" bind host port bin env_str
    bind="$(target_bind "$t")"
    host="${bind%:*}"
    port="${bind##*:}"
    bin="$(target_bin "$t")"
    env_str="$(target_env "$t")"
    local -a env_args=()
    read -r -a env_args <<<"$env_str"

    port_open "$host" "$port" && die "something is already listening on $bind; stop it first"

    env BIND="$bind" ${env_args[@]+"${env_args[@]}"} \
        taskset -c "$SERVER_CPU" "${exe_of[$bin]}" >>"$RAW/server-$t.log" 2>&1 &
    SERVER_PID=$!

    for _ in $(seq 300); do
        port_open "$host" "$port" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null ||
            die "server for '$t' exited during startup; log: $RAW/server-$t.log
$(tail -n 20 "$RAW/server-$t.log")"
        sleep 0.1
    done
    die "server for '$t' did not open $bind within 30 s; log: $RAW/server-$t.log"
}

# --- measure -------------------------------------------------------------------

wrk_cmd=(taskset -c "$CLIENT_CPU" wrk "-t$WRK_THREADS" "-c$CONNECTIONS" "-d${DURATION}s" --latency)
warm_cmd=(taskset -c "$CLIENT_CPU" wrk "-t$WRK_THREADS" "-c$CONNECTIONS" "-d${WARMUP}s")
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
log "run $RUN_ID: targets [${targets[*]}], $ROUNDS round(s) x ${DURATION}s, ~${est}s of load"

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
            if [[ $WARMUP -gt 0 ]]; then
                "${warm_cmd[@]}" ${ep_headers[@]+"${ep_headers[@]}"} "http://$bind/$ep" >/dev/null
            fi
            out="$RAW/r$round-$t-$ep.txt"
            cpu0="$(server_cpu_ticks)"
            t0="$(date +%s%N)"
            "${wrk_cmd[@]}" ${ep_headers[@]+"${ep_headers[@]}"} "http://$bind/$ep" >"$out" 2>&1 ||
                die "wrk failed on '$t' /$ep; output in $out"
            t1="$(date +%s%N)"
            cpu1="$(server_cpu_ticks)"
            # Share of one CPU the server got while wrk ran. A saturated server on a
            # quiet machine sits near 1.0; much less means it was starved (or wrk was).
            awk -v c="$((cpu1 - cpu0))" -v hz="$CLK_TCK" -v ns="$((t1 - t0))" \
                'BEGIN { printf "# harness: server_cpu=%.3f wall=%.2fs\n", (c / hz) / (ns / 1e9), ns / 1e9 }' >>"$out"
            rps="$(sed -n 's/^Requests\/sec:[[:space:]]*//p' "$out")"
            log "  $t /$ep: ${rps:-?} req/s"
        done
        stop_server
    done
done

# --- report --------------------------------------------------------------------

python3 -B bench/report.py render \
    --raw-dir "$RAW" \
    --out bench/results/latest.md \
    --targets "${targets[*]}" \
    --endpoints "$ENDPOINTS" \
    --rounds "$ROUNDS" \
    --duration "$DURATION" \
    --warmup "$WARMUP" \
    --loadavg "$loadavg_start" \
    --busy "$busy_start" \
    --invocation "$invocation" \
    --build-command "${build_cmd[*]}" \
    --server-command "$server_lines" \
    --wrk-command "${wrk_cmd[*]}"
cp bench/results/latest.md "$RAW/report.md"
log "report: bench/results/latest.md (raw output: $RAW)"
cat bench/results/latest.md
