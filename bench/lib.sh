# shellcheck shell=bash
# Shared setup of the bench/*.sh scripts. Source it first thing:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_init run.sh
#
# It gives every script the same: `die`/`log`, tool checks with an install hint, the cargo
# build (profile, `--message-format=json`, binaries looked up by name in `EXE_OF`), servers
# started pinned with `taskset`, waited for and stopped on exit (`bench_start`/`bench_stop`),
# the environment a Chopin server needs (`CHOPIN_SERVER_ENV`), PostgreSQL/Redis checks,
# interleaved wrk runs, and the smoke mode.
#
# Smoke mode (`BENCH_SMOKE=1`, what `bench/smoke.sh` and `.ci/run` use) checks the harness,
# not the speed: one round of 1-second runs without warm-up, the `dev` profile (whose
# artifacts the test build already made) instead of fat LTO, and every report and raw file
# written under `BENCH_RESULTS` (a temporary directory) instead of `bench/results/`, so nothing
# committed changes. Its figures mean nothing.

# Not a secret: the key the benchmark server signs and checks its bench token with.
BENCH_JWT_SECRET="chopin-benchmark-key-not-secret-0123456789"

# `bench_init <script name>`: strict mode, the repository root as working directory, the
# smoke-mode defaults, the results directory, and the exit trap that stops servers.
bench_init() {
    set -euo pipefail
    BENCH_SCRIPT="bench/$1"
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    ROOT="$PWD"
    BENCH_SMOKE="${BENCH_SMOKE:-0}"
    if [[ "$BENCH_SMOKE" == 1 ]]; then
        # Only set what the caller did not set explicitly.
        : "${ROUNDS:=1}" "${RUNS:=1}" "${DURATION:=1}" "${WARMUP:=0}" "${MEASURE:=3}"
        : "${CARGO_PROFILE:=dev}"
        if [[ -z "${BENCH_RESULTS:-}" ]]; then
            BENCH_RESULTS="$(mktemp -d "${TMPDIR:-/tmp}/chopin-bench-smoke.XXXXXX")"
        fi
    fi
    CARGO_PROFILE="${CARGO_PROFILE:-release}"
    # Where reports and raw output go: the committed bench/results by default.
    BENCH_RESULTS="${BENCH_RESULTS:-bench/results}"
    mkdir -p "$BENCH_RESULTS/raw"
    RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
    declare -gA EXE_OF=()
    declare -gA BENCH_PID=()
    trap bench_stop_all EXIT
    trap 'exit 130' INT TERM
}

die() {
    echo "$BENCH_SCRIPT: error: $*" >&2
    exit 1
}
log() { echo "==> $*" >&2; }

# `bench_out <default report path> [sections]`: where a report goes (under BENCH_RESULTS when
# that is not bench/results). With `sections` (a report whose scripts each rewrite their own
# section of one file), it starts from a copy of the committed file.
bench_out() {
    if [[ "$BENCH_RESULTS" == bench/results ]]; then
        echo "$1"
        return
    fi
    local out
    out="$BENCH_RESULTS/$(basename "$1")"
    [[ "${2-}" != sections || -e "$out" || ! -e "$1" ]] || cp "$1" "$out"
    echo "$out"
}

# `bench_raw_dir <prefix>`: a fresh directory for this run's raw output; sets RAW.
bench_raw_dir() {
    RAW="$BENCH_RESULTS/raw/${1:+$1-}$RUN_ID"
    mkdir -p "$RAW"
}

# `bench_invocation <script> KNOB…`: the command line as the caller typed it (knobs they set).
bench_invocation() {
    local script="$1" knob value out=""
    shift
    for knob in "$@"; do
        if [[ -n "${!knob+x}" ]]; then
            value="${!knob}"
            if [[ "$value" =~ ^[A-Za-z0-9._/:=,+-]+$ ]]; then
                out+="$knob=$value "
            else
                out+="$knob=\"$value\" "
            fi
        fi
    done
    echo "${out}bash $script"
}

# `bench_require tool…`: stop with an install hint if one is missing.
bench_require() {
    local tool missing=0 hint
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 && continue
        case "$tool" in
            taskset) hint="apt-get install -y util-linux" ;;
            valgrind | callgrind_control | callgrind_annotate) hint="apt-get install -y valgrind" ;;
            psql) hint="apt-get install -y postgresql-client" ;;
            redis-cli) hint="apt-get install -y redis-tools" ;;
            cargo) hint="install Rust via https://rustup.rs" ;;
            *) hint="apt-get install -y $tool" ;;
        esac
        echo "$BENCH_SCRIPT: $tool not found ($hint)" >&2
        missing=1
    done
    [[ $missing -eq 0 ]] || exit 1
}

# `bench_check_int NAME min`: NAME holds a whole number >= min (0 or 1).
bench_check_int() {
    local value="${!1}"
    if [[ "$2" == 0 ]]; then
        [[ "$value" =~ ^[0-9]+$ ]] || die "$1 must be a whole number >= 0 (got '$value')"
    else
        [[ "$value" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive whole number (got '$value')"
    fi
}

# `bench_cpus`: check SERVER_CPU / CLIENT_CPU (defaults 0 and 1) differ and can be pinned to.
bench_cpus() {
    SERVER_CPU="${SERVER_CPU:-0}"
    CLIENT_CPU="${CLIENT_CPU:-1}"
    [[ "$SERVER_CPU" != "$CLIENT_CPU" ]] || die "SERVER_CPU and CLIENT_CPU must differ"
    taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to CPU $SERVER_CPU (SERVER_CPU)"
    taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to CPU $CLIENT_CPU (CLIENT_CPU)"
}

# The cargo arguments that select CARGO_PROFILE.
bench_profile_args() {
    case "$CARGO_PROFILE" in
        release) echo --release ;;
        *) echo --profile "$CARGO_PROFILE" ;;
    esac
}

# `bench_build -p pkg…`: build with CARGO_PROFILE (plus CARGO_EXTRA_ARGS) and record each binary's
# path in EXE_OF[name]. Sets BUILD_CMD (for reports). Needs RAW. Smoke mode builds the whole
# workspace with every feature instead: the same units as the test command
# (`cargo test --workspace --all-features`), so after the tests nothing but the binaries'
# final link is left to do.
bench_build() {
    local -a extra=() profile=()
    read -r -a extra <<<"${CARGO_EXTRA_ARGS:-}"
    read -r -a profile <<<"$(bench_profile_args)"
    [[ "$BENCH_SMOKE" != 1 ]] || set -- --workspace --all-features
    BUILD_CMD="cargo build ${profile[*]}${extra[*]:+ ${extra[*]}} $*"
    log "building: $BUILD_CMD"
    cargo build "${profile[@]}" ${extra[@]+"${extra[@]}"} "$@" \
        --message-format=json-render-diagnostics >"$RAW/cargo-build.json" || die "cargo build failed"
    bench_record_executables <"$RAW/cargo-build.json"
}

# `bench_build_epoll`: build bench/epoll-baseline (a workspace of its own, with its own
# Cargo.lock, kept out of ours: see its Cargo.toml) into target/epoll-baseline. Sets
# EXE_OF[epoll-baseline] and EPOLL_BUILD_CMD.
bench_build_epoll() {
    local -a profile=()
    read -r -a profile <<<"$(bench_profile_args)"
    EPOLL_BUILD_CMD="CARGO_TARGET_DIR=target/epoll-baseline cargo build ${profile[*]} --locked --manifest-path bench/epoll-baseline/Cargo.toml"
    log "building: $EPOLL_BUILD_CMD"
    CARGO_TARGET_DIR="$ROOT/target/epoll-baseline" cargo build "${profile[@]}" --locked \
        --manifest-path bench/epoll-baseline/Cargo.toml \
        --message-format=json-render-diagnostics >"$RAW/cargo-build-epoll.json" ||
        die "cargo build of bench/epoll-baseline failed"
    bench_record_executables <"$RAW/cargo-build-epoll.json"
}

bench_record_executables() {
    local name path
    while IFS=$'\t' read -r name path; do
        EXE_OF["$name"]="$path"
    done < <(python3 -B bench/report.py executables)
}

# `bench_exe name`: the path of a built binary, or die.
bench_exe() {
    [[ -n "${EXE_OF[$1]-}" && -x "${EXE_OF[$1]}" ]] || die "cargo did not produce binary '$1'"
    echo "${EXE_OF[$1]}"
}

# What a Chopin server needs to start from a clean checkout, as `env` arguments: the
# environment named explicitly (release builds refuse to start without CHOPIN_ENV), quiet logs,
# and the bench example's token key (production refuses to start without one once a route
# needs `AuthUser`). The key is the harness's public benchmark key, not a secret.
CHOPIN_SERVER_ENV=(CHOPIN_ENV=production CHOPIN_LOG=warn "CHOPIN_JWT_SECRET=$BENCH_JWT_SECRET")

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# `bench_start <name> <bind> <log file> <command…>`: start a server (the command should
# include its `taskset`), wait up to 30 s (60 s under valgrind) for <bind> to accept
# connections. BENCH_PID[name] holds its pid.
bench_start() {
    local name="$1" bind="$2" logf="$3" tries=300
    shift 3
    port_open "${bind%:*}" "${bind##*:}" && die "something is already listening on $bind; stop it first"
    "$@" >>"$logf" 2>&1 &
    BENCH_PID[$name]=$!
    [[ " $* " != *" valgrind "* ]] || tries=600
    for _ in $(seq "$tries"); do
        port_open "${bind%:*}" "${bind##*:}" && return 0
        kill -0 "${BENCH_PID[$name]}" 2>/dev/null || {
            unset "BENCH_PID[$name]"
            die "server '$name' exited during startup; log: $logf
$(tail -n 20 "$logf")"
        }
        sleep 0.1
    done
    die "server '$name' did not open $bind in time; log: $logf"
}

# `bench_wait_http <name> <url>`: wait (up to 30 s, 120 s under valgrind) until <url> answers
# 200. An open port is not enough: the epoll engine binds one listener per worker thread, and
# a worker that is still starting (slowly, under valgrind or a loaded machine) holds the
# connections it was handed until it runs.
bench_wait_http() {
    local name="$1" url="$2" tries=30
    [[ -z "${VALGRIND_SLOW-}" ]] || tries=120
    for _ in $(seq "$tries"); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url")" == 200 ]] && return 0
        kill -0 "${BENCH_PID[$name]}" 2>/dev/null || die "server '$name' exited; see its log"
    done
    die "server '$name' did not answer 200 on $url in time"
}

# `bench_stop <name>`: SIGTERM, then SIGKILL after 5 s.
bench_stop() {
    local pid="${BENCH_PID[$1]-}"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "BENCH_PID[$1]"
}

bench_stop_all() {
    local name
    for name in "${!BENCH_PID[@]}"; do bench_stop "$name"; done
}

# User + system CPU ticks used so far by process $1 (all its threads).
bench_cpu_ticks() {
    local stat
    stat="$(<"/proc/$1/stat")"
    stat="${stat##*) }" # drop "pid (comm) "; fields then start at field 3 (state)
    local -a f
    read -r -a f <<<"$stat"
    echo $((f[11] + f[12])) # utime (field 14) + stime (field 15)
}

# --- services ----------------------------------------------------------------------------

# PostgreSQL connection defaults (trust auth), exported for psql.
bench_pg_env() {
    PGHOST="${PGHOST:-127.0.0.1}"
    PGPORT="${PGPORT:-5432}"
    PGUSER="${PGUSER:-postgres}"
    # TLS to a database on the same host only burns CPU on both sides.
    PGSSLMODE="${PGSSLMODE:-disable}"
    export PGHOST PGPORT PGUSER PGSSLMODE
}

bench_pg_ready() { psql -X -q -d postgres -c 'SELECT 1' >/dev/null 2>&1; }

# `bench_pg_setup <db> <min rows> [psql -v args…]`: create database <db> if needed and load
# bench/passthrough-setup.sql (10,000 rows) unless tv_item already has <min rows> rows and the
# blog tables exist.
# A <min rows> of 0 always reloads.
bench_pg_setup() {
    local db="$1" min="$2"
    shift 2
    bench_pg_ready || die "cannot connect to PostgreSQL as $PGUSER@$PGHOST:$PGPORT"
    if [[ -z "$(psql -X -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
        psql -X -q -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
    fi
    if [[ "$min" -gt 0 && "$(psql -X -At -d "$db" -c "SELECT to_regclass('tv_item') IS NOT NULL AND to_regclass('blog_post') IS NOT NULL AND (SELECT count(*) FROM tv_item) >= $min" 2>/dev/null)" == t ]]; then
        return 0
    fi
    log "loading bench/passthrough-setup.sql into $db"
    psql -X -q -v ON_ERROR_STOP=1 -v rows="${DATA_ROWS:-10000}" "$@" -d "$db" \
        -f bench/passthrough-setup.sql >/dev/null || die "loading bench/passthrough-setup.sql failed"
}

bench_redis_ready() {
    command -v redis-cli >/dev/null 2>&1 && [[ "$(redis-cli -u "$1" PING 2>/dev/null)" == PONG ]]
}

# --- load ----------------------------------------------------------------------------------

# `bench_wrk <out file> <url> [wrk args…]`: a discarded warm-up of WARMUP seconds, then
# `taskset -c CLIENT_CPU wrk -t1 -cCONNECTIONS -dDURATION --latency`. Sets WRK_CMD.
bench_wrk() {
    local out="$1" url="$2"
    shift 2
    local -a base=(taskset -c "$CLIENT_CPU" wrk "-t${WRK_THREADS:-1}" "-c$CONNECTIONS")
    WRK_CMD="${base[*]} -d${DURATION}s --latency"
    if [[ "$WARMUP" -gt 0 ]]; then
        "${base[@]}" "-d${WARMUP}s" "$@" "$url" >/dev/null || die "wrk warm-up failed on $url"
    fi
    "${base[@]}" "-d${DURATION}s" --latency "$@" "$url" >"$out" 2>&1 ||
        die "wrk failed on $url; output in $out"
}

# Requests/sec of a wrk output file.
bench_rps() { sed -n 's/^Requests\/sec:[[:space:]]*//p' "$1"; }
