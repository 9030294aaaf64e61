#!/usr/bin/env bash
# Pass-through HTTP benchmark against a real PostgreSQL: list endpoints of 100 and 1,000 rows.
#
#   bash bench/run-db.sh                               # 5 interleaved rounds x 10 s
#   ROUNDS=3 DURATION=5 bash bench/run-db.sh           # quicker
#
# Targets (same JSON for the same rows; checked before measuring):
#   orm                 examples/bench  GET /db/orm                sea-orm models -> DTO -> ApiResponse
#   passthrough         examples/bench  GET /db/passthrough        JsonQuery over tv_item (pre-built jsonb)
#   passthrough-build   examples/bench  GET /db/passthrough-build  JsonQuery, JSON built by JsonProjection
#   raw                 bench/raw-pg-baseline GET /db/passthrough  hand-written axum + sqlx (the ceiling)
# and, compared among themselves (a blog page: published posts newest first, with the author's
# name and comment count):
#   blog-orm            examples/bench  GET /db/blog-orm           sea-orm: posts + authors (join), counts (grouped)
#   blog-tv             examples/bench  GET /db/blog-tv            JsonQuery over tv_blog_post (a Chopin TableView)
#   blog-raw            bench/raw-pg-baseline GET /db/blog         hand-written axum + sqlx over tv_blog_post
#
# tv_blog_post is created with Chopin's TableView (`chopin-bench-example create-views`) after
# the tables are loaded.
#
# The servers are pinned to SERVER_CPU (0), wrk to CLIENT_CPU (1); PostgreSQL is not pinned and
# shares both CPUs. Writes the HTTP section of $OUT (bench/results/passthrough.md; the other
# sections are kept). See bench/README.md.
#
# Knobs: ROUNDS (5), DURATION (10 s), WARMUP (2 s), CONNECTIONS (32), POOL (8 connections per
# server, kept open), SIZES ("100 1000"), TARGETS (all seven), PGHOST/PGPORT/PGUSER
# (postgres@127.0.0.1:5432), PGSSLMODE (disable), BENCH_DB (chopin_bench), DATA_ROWS (10000),
# SETUP (1: rebuild the tables; 0: use them as they are), TV_TYPE (jsonb; `json` stores the
# table view as json text, in database chopin_bench_json and its own report section — an
# experiment: run it with TARGETS="orm passthrough"), CHOPIN_BENCH_STACK (full|minimal),
# CARGO_EXTRA_ARGS, OUT.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
invocation="$(bench_invocation bench/run-db.sh ROUNDS DURATION WARMUP CONNECTIONS POOL SIZES TARGETS PGHOST PGPORT \
    PGUSER PGSSLMODE BENCH_DB DATA_ROWS SETUP TV_TYPE SERVER_CPU CLIENT_CPU CHOPIN_BENCH_STACK \
    CARGO_EXTRA_ARGS CARGO_PROFILE OUT BENCH_SMOKE)"
bench_init run-db.sh

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
POOL="${POOL:-8}"
SIZES="${SIZES:-100 1000}"
TARGETS="${TARGETS:-orm passthrough passthrough-build raw blog-orm blog-tv blog-raw}"
bench_pg_env
TV_TYPE="${TV_TYPE:-jsonb}"
# The json variant lives in its own database, so it never replaces the jsonb table view that
# bench/stream-mem.sh and the default run use.
if [[ "$TV_TYPE" == jsonb ]]; then
    BENCH_DB="${BENCH_DB:-chopin_bench}"
    SECTION=run-db
else
    BENCH_DB="${BENCH_DB:-chopin_bench_$TV_TYPE}"
    SECTION="run-db-$TV_TYPE"
fi
DATA_ROWS="${DATA_ROWS:-10000}"
# Smoke mode reuses the tables when they are there.
[[ "$BENCH_SMOKE" != 1 ]] || : "${SETUP:=0}"
SETUP="${SETUP:-1}"
OUT="${OUT:-$(bench_out bench/results/passthrough.md sections)}"
CHOPIN_BENCH_STACK="${CHOPIN_BENCH_STACK:-full}"

CHOPIN_BIND=127.0.0.1:3013
RAW_BIND=127.0.0.1:3014
DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$BENCH_DB?sslmode=$PGSSLMODE"

bench_require wrk taskset python3 cargo psql curl
bench_check_int ROUNDS 1
bench_check_int DURATION 1
bench_check_int WARMUP 0
bench_cpus
read -r -a targets <<<"$TARGETS"
read -r -a sizes <<<"$SIZES"
for t in "${targets[@]}"; do
    case "$t" in orm | passthrough | passthrough-build | raw | blog-orm | blog-tv | blog-raw) ;; *) die "unknown target '$t'" ;; esac
done
item_targets=() blog_targets=()
for t in "${targets[@]}"; do
    if [[ "$t" == blog-* ]]; then blog_targets+=("$t"); else item_targets+=("$t"); fi
done
case "$TV_TYPE" in
    jsonb) ;;
    json) [[ " $TARGETS " != *" raw "* && ${#blog_targets[@]} -eq 0 ]] ||
        die "TV_TYPE=json is an experiment on tv_item: use TARGETS=\"orm passthrough\" (no raw, no blog-*)" ;;
    *) die "TV_TYPE must be jsonb or json" ;;
esac

# --- database -------------------------------------------------------------------

log "database $BENCH_DB on $PGHOST:$PGPORT"
if [[ "$SETUP" == 1 ]]; then
    bench_pg_setup "$BENCH_DB" 0 -v tv_type="$TV_TYPE"
else
    bench_pg_setup "$BENCH_DB" 1000 -v tv_type="$TV_TYPE"
fi

# --- build ----------------------------------------------------------------------

bench_raw_dir db
bench_build -p chopin-bench-example -p raw-pg-baseline
chopin_exe="$(bench_exe chopin-bench-example)"
raw_exe="$(bench_exe raw-pg-baseline)"

# The blog's table view, made by the library (not by SQL written here): after a fresh load, or
# when it is missing.
if [[ ${#blog_targets[@]} -gt 0 ]] &&
    [[ "$SETUP" == 1 || "$(psql -X -At -d "$BENCH_DB" -c "SELECT to_regclass('tv_blog_post') IS NOT NULL")" != t ]]; then
    log "creating tv_blog_post with TableView (chopin-bench-example create-views)"
    env "DATABASE_URL=$DB_URL" "${CHOPIN_SERVER_ENV[@]}" "$chopin_exe" create-views >"$RAW/create-views.log" 2>&1 ||
        { cat "$RAW/create-views.log" >&2; die "chopin-bench-example create-views failed"; }
    psql -X -q -d "$BENCH_DB" -c "VACUUM (ANALYZE) tv_blog_post" >/dev/null
fi

# --- servers --------------------------------------------------------------------

server_of() { [[ "$1" == raw || "$1" == blog-raw ]] && echo raw || echo chopin; }
bind_of() { [[ "$(server_of "$1")" == raw ]] && echo "$RAW_BIND" || echo "$CHOPIN_BIND"; }
path_of() {
    case "$1" in
        raw) echo /db/passthrough ;;
        blog-raw) echo /db/blog ;;
        *) echo "/db/$1" ;;
    esac
}

chopin_cmd=(env "BIND=$CHOPIN_BIND" "DATABASE_URL=$DB_URL&max_connections=$POOL&min_connections=$POOL"
    "CHOPIN_BENCH_STACK=$CHOPIN_BENCH_STACK" "${CHOPIN_SERVER_ENV[@]}"
    taskset -c "$SERVER_CPU" "$chopin_exe")
raw_cmd=(env "BIND=$RAW_BIND" "DATABASE_URL=$DB_URL" "MAX_CONNECTIONS=$POOL"
    taskset -c "$SERVER_CPU" "$raw_exe")

servers=()
for t in "${targets[@]}"; do
    s="$(server_of "$t")"
    [[ " ${servers[*]-} " == *" $s "* ]] || servers+=("$s")
done

# Start every server the targets need (an idle server costs nothing), fresh.
start_servers() {
    local server
    for server in "${servers[@]}"; do
        if [[ "$server" == raw ]]; then
            bench_start raw "$RAW_BIND" "$RAW/server-raw.log" "${raw_cmd[@]}"
        else
            bench_start chopin "$CHOPIN_BIND" "$RAW/server-chopin.log" "${chopin_cmd[@]}"
        fi
    done
}
stop_servers() { bench_stop_all; }

# --- same JSON everywhere ---------------------------------------------------------

log "checking that every target returns the same JSON"
start_servers
for t in "${targets[@]}"; do
    for n in "${sizes[@]}"; do
        curl -sS --fail -o "$RAW/body-$t-$n.json" "http://$(bind_of "$t")$(path_of "$t")?rows=$n" ||
            die "GET $(path_of "$t")?rows=$n on '$t' failed"
    done
done
if [[ -n "${BENCH_PID[chopin]-}" && ${#item_targets[@]} -gt 0 ]]; then
    for n in "${sizes[@]}"; do
        curl -sS --fail -o "$RAW/body-stream-$n.json" "http://$CHOPIN_BIND/db/stream?rows=$n" ||
            die "GET /db/stream?rows=$n failed"
    done
fi
stop_servers
python3 -B bench/report-db.py check --raw-dir "$RAW" --sizes "${sizes[*]}" \
    --targets "${targets[*]} stream" || die "the targets disagree; not measuring"

# --- measure --------------------------------------------------------------------

CLK_TCK="$(getconf CLK_TCK)"
NCPU="$(nproc --all)"
wrk_cmd=(taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNECTIONS" "-d${DURATION}s" --latency)
warm_cmd=(taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNECTIONS" "-d${WARMUP}s")
loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"
TIMEFORMAT='%3U %3S'

est=$((ROUNDS * ${#targets[@]} * ${#sizes[@]} * (DURATION + WARMUP)))
log "run db-$RUN_ID: ${#targets[@]} targets x ${#sizes[@]} sizes x $ROUNDS rounds, ~${est}s of load"

# Each round: fresh servers; for each size, every target back to back (order rotated per round),
# so the cases compared by the ratios are measured within seconds of each other.
for ((round = 1; round <= ROUNDS; round++)); do
    start_servers
    nt=${#targets[@]}
    for n in "${sizes[@]}"; do
        for ((ti = 0; ti < nt; ti++)); do
            t="${targets[$(((ti + round - 1) % nt))]}"
            pid="${BENCH_PID[$(server_of "$t")]}"
            url="http://$(bind_of "$t")$(path_of "$t")?rows=$n"
            if [[ $WARMUP -gt 0 ]]; then
                "${warm_cmd[@]}" "$url" >/dev/null
            fi
            out="$RAW/r$round-$t-$n.txt"
            read -r s0 p0 b0 a0 < <(python3 -B bench/report-db.py ticks --pid "$pid" --db "$BENCH_DB")
            t0="$(date +%s%N)"
            { time "${wrk_cmd[@]}" "$url" >"$out" 2>&1; } 2>"$RAW/wrk-time.txt" ||
                die "wrk failed on $url; output in $out"
            t1="$(date +%s%N)"
            read -r s1 p1 b1 a1 < <(python3 -B bench/report-db.py ticks --pid "$pid" --db "$BENCH_DB")
            read -r wu ws <"$RAW/wrk-time.txt"
            awk -v s="$((s1 - s0))" -v p="$((p1 - p0))" -v b="$((b1 - b0))" -v a="$((a1 - a0))" \
                -v wu="$wu" -v ws="$ws" -v ncpu="$NCPU" -v hz="$CLK_TCK" -v ns="$((t1 - t0))" \
                -v l1="$(cut -d' ' -f1 /proc/loadavg)" \
                'BEGIN { w = ns / 1e9; printf "# harness: server_cpu=%.3f pg_cpu=%.3f wrk_cpu=%.3f machine_cpu=%.3f wall=%.2fs load1=%s\n", (s / hz) / w, (p / hz) / w, (wu + ws) / w, (a > 0 ? ncpu * b / a : 0), w, l1 }' >>"$out"
            log "  round $round rows=$n $t: $(sed -n 's/^Requests\/sec:[[:space:]]*//p' "$out") req/s"
        done
    done
    stop_servers
done
rm -f "$RAW/wrk-time.txt"

# One report section per group of targets (each compared within itself).
render() {
    local group="$1" section="$2"
    shift 2
    python3 -B bench/report-db.py render --raw-dir "$RAW" --out "$OUT" --group "$group" \
        --targets "$*" --sizes "${sizes[*]}" --rounds "$ROUNDS" --duration "$DURATION" \
        --warmup "$WARMUP" --loadavg "$loadavg_start" --invocation "$invocation" \
        --build-command "$BUILD_CMD" \
        --server-command "$(printf '%q ' "${chopin_cmd[@]}" | sed "s|$ROOT/||g")  # chopin (orm, passthrough, passthrough-build, blog-orm, blog-tv)
$(printf '%q ' "${raw_cmd[@]}" | sed "s|$ROOT/||g")  # raw, blog-raw" \
        --wrk-command "${wrk_cmd[*]}" --pool "$POOL" --stack "$CHOPIN_BENCH_STACK" \
        --section "$section" --tv-type "$TV_TYPE"
}
[[ ${#item_targets[@]} -eq 0 ]] || render item "$SECTION" "${item_targets[@]}"
[[ ${#blog_targets[@]} -eq 0 ]] || render blog run-db-blog "${blog_targets[@]}"
log "report: $OUT (raw output: $RAW)"
