#!/usr/bin/env bash
# Server-side cost of one request, counted in instructions with valgrind's callgrind: a
# deterministic complement to bench/run-db.sh, unaffected by other load on a shared machine.
#
#   bash bench/profile-db.sh
#
# For each case the server (the `profiling` build: the release code, with symbols) runs under
# `valgrind --tool=callgrind` with instrumentation off; five requests warm it up, then
# instrumentation is switched on for REQUESTS_100 (100) requests of 100 rows or REQUESTS_1000
# (20) of 1,000 rows, sent one at a time with curl. Only user-space instructions of the server
# process are counted (not the kernel, not PostgreSQL). Writes the callgrind section of bench/results/passthrough.md.
set -euo pipefail

invocation=""
for knob in REQUESTS_100 REQUESTS_1000 PGHOST PGPORT PGUSER BENCH_DB; do
    [[ -z "${!knob+x}" ]] || invocation+="$knob=\"${!knob}\" "
done
invocation+="bash bench/profile-db.sh"

REQUESTS_100="${REQUESTS_100:-100}"
REQUESTS_1000="${REQUESTS_1000:-20}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
BENCH_DB="${BENCH_DB:-chopin_bench}"
export PGHOST PGPORT PGUSER
DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$BENCH_DB?sslmode=disable"

die() {
    echo "bench/profile-db.sh: error: $*" >&2
    exit 1
}
log() { echo "==> $*" >&2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
for tool in valgrind callgrind_control callgrind_annotate python3 cargo psql curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y valgrind)"
done

if [[ "$(psql -X -At -d "$BENCH_DB" -c "SELECT to_regclass('tv_item') IS NOT NULL AND (SELECT count(*) FROM tv_item) >= 1000" 2>/dev/null)" != t ]]; then
    if [[ -z "$(psql -X -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$BENCH_DB'")" ]]; then
        psql -X -q -d postgres -c "CREATE DATABASE \"$BENCH_DB\"" >/dev/null
    fi
    log "creating bench_item / tv_item"
    psql -X -q -v ON_ERROR_STOP=1 -v rows=10000 -d "$BENCH_DB" -f bench/passthrough-setup.sql >/dev/null
fi

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="bench/results/raw/callgrind-$RUN_ID"
mkdir -p "$RAW"
build_cmd=(cargo build --profile profiling -p chopin-bench-example -p raw-pg-baseline)
log "building: ${build_cmd[*]}"
"${build_cmd[@]}" --message-format=json-render-diagnostics >"$RAW/cargo-build.json" || die "cargo build failed"
declare -A exe_of=()
while IFS=$'\t' read -r name path; do
    exe_of["$name"]="$path"
done < <(python3 -B bench/report.py executables <"$RAW/cargo-build.json")

VG_PID=""
cleanup() {
    [[ -z "$VG_PID" ]] && return 0
    kill -TERM "$VG_PID" 2>/dev/null || true
    wait "$VG_PID" 2>/dev/null || true
    VG_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# profile <case name> <chopin|chopin-minimal|raw> <path> <rows> <requests>
profile() {
    local name="$1" server="$2" path="$3" rows="$4" n="$5" bind exe
    local -a env_args
    if [[ "$server" == raw ]]; then
        bind=127.0.0.1:3014
        exe="${exe_of[raw-pg-baseline]}"
        env_args=("BIND=$bind" "DATABASE_URL=$DB_URL" MAX_CONNECTIONS=2)
    else
        bind=127.0.0.1:3013
        exe="${exe_of[chopin-bench-example]}"
        local stack=full
        [[ "$server" == chopin-minimal ]] && stack=minimal
        # The bench example mounts an authenticated route, so production needs a key; this
        # one is the harness's public benchmark key (bench/run.sh), not a secret.
        env_args=("BIND=$bind" "DATABASE_URL=$DB_URL&max_connections=2&min_connections=2"
            "CHOPIN_BENCH_STACK=$stack" CHOPIN_ENV=production CHOPIN_LOG=warn
            CHOPIN_JWT_SECRET=chopin-benchmark-key-not-secret-0123456789)
    fi
    port_open "${bind%:*}" "${bind##*:}" && die "something is already listening on $bind"
    env "${env_args[@]}" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$RAW/$name.out" "$exe" >"$RAW/$name.log" 2>&1 &
    VG_PID=$!
    for _ in $(seq 600); do
        port_open "${bind%:*}" "${bind##*:}" && break
        kill -0 "$VG_PID" 2>/dev/null || die "server exited; see $RAW/$name.log"
        sleep 0.1
    done
    local url="http://$bind$path?rows=$rows"
    for _ in 1 2 3 4 5; do curl -sS --fail -o /dev/null "$url"; done
    callgrind_control -i on "$VG_PID" >/dev/null
    for _ in $(seq "$n"); do curl -sS --fail -o /dev/null "$url"; done
    callgrind_control -i off "$VG_PID" >/dev/null
    callgrind_control -d "$VG_PID" >/dev/null
    cleanup
    # The dump requested above is "<file>.1"; the file written at exit holds nothing.
    mv "$RAW/$name.out.1" "$RAW/$name.callgrind"
    rm -f "$RAW/$name.out"
    callgrind_annotate --threshold=100 "$RAW/$name.callgrind" >"$RAW/$name.annotate.txt" 2>/dev/null
    printf '%s\t%s\t%s\t%s\n' "$name" "$rows" "$n" "$RAW/$name.annotate.txt" >>"$RAW/cases.tsv"
    log "$name: done"
}

: >"$RAW/cases.tsv"
for rows in 100 1000; do
    if [[ $rows == 100 ]]; then n=$REQUESTS_100; else n=$REQUESTS_1000; fi
    profile "orm-$rows" chopin /db/orm "$rows" "$n"
    profile "passthrough-$rows" chopin /db/passthrough "$rows" "$n"
    profile "passthrough-minimal-$rows" chopin-minimal /db/passthrough "$rows" "$n"
    profile "passthrough-build-$rows" chopin /db/passthrough-build "$rows" "$n"
    profile "raw-$rows" raw /db/passthrough "$rows" "$n"
done

python3 -B bench/report-db.py callgrind --cases "$RAW/cases.tsv" --out bench/results/passthrough.md \
    --invocation "$invocation" --build-command "${build_cmd[*]}"
log "report: bench/results/passthrough.md (raw output: ${RAW#"$ROOT"/})"
