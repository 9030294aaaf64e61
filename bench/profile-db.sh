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
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
invocation="$(bench_invocation bench/profile-db.sh REQUESTS_100 REQUESTS_1000 PGHOST PGPORT PGUSER BENCH_DB \
    CARGO_PROFILE BENCH_SMOKE)"
# The release code with symbols (see docs/performance.md); smoke mode keeps its cheap profile.
[[ "${BENCH_SMOKE:-0}" == 1 ]] || : "${CARGO_PROFILE:=profiling}"
bench_init profile-db.sh

[[ "$BENCH_SMOKE" != 1 ]] || : "${REQUESTS_100:=3}" "${REQUESTS_1000:=2}"
REQUESTS_100="${REQUESTS_100:-100}"
REQUESTS_1000="${REQUESTS_1000:-20}"
BENCH_DB="${BENCH_DB:-chopin_bench}"
bench_pg_env
DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$BENCH_DB?sslmode=disable"
OUT="$(bench_out bench/results/passthrough.md sections)"

bench_require valgrind callgrind_control callgrind_annotate python3 cargo psql curl
bench_pg_setup "$BENCH_DB" 1000

bench_raw_dir callgrind
bench_build -p chopin-bench-example -p raw-pg-baseline

VG_PID=""
cleanup() { bench_stop vg; VG_PID=""; }

profile() {
    local name="$1" server="$2" path="$3" rows="$4" n="$5" bind exe
    local -a env_args
    if [[ "$server" == raw ]]; then
        bind=127.0.0.1:3014
        exe="$(bench_exe raw-pg-baseline)"
        env_args=("BIND=$bind" "DATABASE_URL=$DB_URL" MAX_CONNECTIONS=2)
    else
        bind=127.0.0.1:3013
        exe="$(bench_exe chopin-bench-example)"
        local stack=full
        [[ "$server" == chopin-minimal ]] && stack=minimal
        env_args=("BIND=$bind" "DATABASE_URL=$DB_URL&max_connections=2&min_connections=2"
            "CHOPIN_BENCH_STACK=$stack" "${CHOPIN_SERVER_ENV[@]}")
    fi
    bench_start vg "$bind" "$RAW/$name.log" env "${env_args[@]}" valgrind --tool=callgrind \
        --instr-atstart=no --callgrind-out-file="$RAW/$name.out" "$exe"
    VG_PID="${BENCH_PID[vg]}"
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

python3 -B bench/report-db.py callgrind --cases "$RAW/cases.tsv" --out "$OUT" \
    --invocation "$invocation" --build-command "$BUILD_CMD"
log "report: $OUT (raw output: ${RAW#"$ROOT"/})"
