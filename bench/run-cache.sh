#!/usr/bin/env bash
# Cache HTTP benchmark: cached vs uncached responses through Chopin's full stack.
#
#   bash bench/run-cache.sh                        # 3 interleaved rounds x 10 s per target
#   ROUNDS=5 DURATION=5 bash bench/run-cache.sh
#
# Pairs (examples/bench, package chopin-bench-example; the bodies of each pair are checked equal
# before measuring):
#   json         GET /json                  {"message":"Hello, World!"} serialised per request
#   cached-json  GET /cached/json           the same bytes from Cache::memory (moka hit)
#   db           GET /db/passthrough?rows=N  PostgreSQL pass-through list (uncached)
#   cached-db    GET /cached/db?rows=N       the same body from Cache::redis (one Redis GET)
# The db pair runs only when PostgreSQL and Redis are reachable (else it is skipped, saying so).
#
# One server (CHOPIN_ENV=production CHOPIN_LOG=warn), pinned to SERVER_CPU (0), fresh each
# round; wrk pinned to CLIENT_CPU (1). PostgreSQL and Redis are not pinned. Within a round the
# two targets of a pair run back to back, order alternating per round. Writes $OUT
# (bench/results/cache.md); raw wrk output in bench/results/raw/cache-<UTC time>/.
#
# Knobs: ROUNDS (3), DURATION (10 s), WARMUP (2 s), CONNECTIONS (64), ROWS (100),
# PGHOST/PGPORT/PGUSER (postgres@127.0.0.1:5432), PGSSLMODE (disable), BENCH_DB (chopin_bench),
# SETUP (1: reload bench/passthrough-setup.sql; otherwise load it only when tv_item is missing),
# REDIS_URL (redis://127.0.0.1:6379), POOL (8), SERVER_CPU, CLIENT_CPU, OUT.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init run-cache.sh

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
ROWS="${ROWS:-100}"
bench_pg_env
BENCH_DB="${BENCH_DB:-chopin_bench}"
SETUP="${SETUP:-auto}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
POOL="${POOL:-8}"
OUT="${OUT:-$(bench_out bench/results/cache.md)}"

BIND=127.0.0.1:3023
DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$BENCH_DB?sslmode=$PGSSLMODE&max_connections=$POOL&min_connections=$POOL"

bench_require wrk taskset python3 cargo curl
bench_check_int ROUNDS 1
bench_check_int DURATION 1
bench_check_int WARMUP 0
bench_cpus

# --- database and Redis (optional: without them only the json pair runs) ---------------

with_db=1
if ! command -v psql >/dev/null 2>&1 || ! psql -X -q -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    log "PostgreSQL unreachable as $PGUSER@$PGHOST:$PGPORT: skipping the db pair"
    with_db=0
elif ! command -v redis-cli >/dev/null 2>&1 || [[ "$(redis-cli -u "$REDIS_URL" PING 2>/dev/null)" != PONG ]]; then
    log "Redis unreachable at $REDIS_URL (or redis-cli missing): skipping the db pair"
    with_db=0
else
    if [[ "$SETUP" == 1 ]]; then bench_pg_setup "$BENCH_DB" 0; else bench_pg_setup "$BENCH_DB" 1; fi
    # Cached lists from an earlier run may describe other data.
    redis-cli -u "$REDIS_URL" --scan --pattern 'chopin-bench-example:*' |
        xargs -r redis-cli -u "$REDIS_URL" UNLINK >/dev/null
fi

pairs=(json)
[[ $with_db == 1 ]] && pairs+=(db)
path_of() {
    case "$1" in
        json) echo /json ;;
        cached-json) echo /cached/json ;;
        db) echo "/db/passthrough?rows=$ROWS" ;;
        cached-db) echo "/cached/db?rows=$ROWS" ;;
    esac
}

# --- build (once) ---------------------------------------------------------------------

bench_raw_dir cache
bench_build -p chopin-bench-example
exe="$(bench_exe chopin-bench-example)"

# --- server ---------------------------------------------------------------------------

server_env=("BIND=$BIND" "${CHOPIN_SERVER_ENV[@]}" CHOPIN_BENCH_STACK=full)
[[ $with_db == 1 ]] && server_env+=("DATABASE_URL=$DB_URL" "REDIS_URL=$REDIS_URL")
server_cmd=(env "${server_env[@]}" taskset -c "$SERVER_CPU" "$exe")
stop_server() { bench_stop server; }
start_server() { bench_start server "$BIND" "$RAW/server.log" "${server_cmd[@]}"; }

# --- same bodies ----------------------------------------------------------------------

log "checking that each cached route returns the same body as its uncached twin"
start_server
for p in "${pairs[@]}"; do
    for t in "$p" "cached-$p"; do
        # Twice for the cached route: the first request fills the cache, the second is a hit.
        curl -sS --fail -o "$RAW/body-$t.json" "http://$BIND$(path_of "$t")" || die "GET $(path_of "$t") failed"
        curl -sS --fail -D "$RAW/headers-$t.txt" -o "$RAW/body-$t.json" "http://$BIND$(path_of "$t")" ||
            die "GET $(path_of "$t") failed"
    done
    cmp -s "$RAW/body-$p.json" "$RAW/body-cached-$p.json" ||
        die "$(path_of "cached-$p") and $(path_of "$p") differ (see $RAW/body-*.json)"
done
stop_server

# --- measure --------------------------------------------------------------------------

wrk_cmd=(taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNECTIONS" "-d${DURATION}s" --latency)
warm_cmd=(taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNECTIONS" "-d${WARMUP}s")
loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"
log "run cache-$RUN_ID: ${#pairs[@]} pairs x 2 targets x $ROUNDS rounds x $((DURATION + WARMUP)) s"
for ((round = 1; round <= ROUNDS; round++)); do
    start_server
    for p in "${pairs[@]}"; do
        if ((round % 2)); then order=("$p" "cached-$p"); else order=("cached-$p" "$p"); fi
        for t in "${order[@]}"; do
            url="http://$BIND$(path_of "$t")"
            [[ $WARMUP -gt 0 ]] && "${warm_cmd[@]}" "$url" >/dev/null
            out="$RAW/r$round-$t.txt"
            "${wrk_cmd[@]}" "$url" >"$out" 2>&1 || die "wrk failed on $url; output in $out"
            echo "# load1=$(cut -d' ' -f1 /proc/loadavg)" >>"$out"
            log "  round $round $t: $(sed -n 's/^Requests\/sec:[[:space:]]*//p' "$out") req/s"
        done
    done
    stop_server
done
loadavg_end="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ---------------------------------------------------------------------------

RAW="$RAW" OUT="$OUT" ROUNDS="$ROUNDS" PAIRS="${pairs[*]}" ROWS="$ROWS" \
    LOAD_START="$loadavg_start" LOAD_END="$loadavg_end" RUN_ID="$RUN_ID" \
    BUILD_CMD="$BUILD_CMD" WRK_CMD="${wrk_cmd[*]}" \
    SERVER_CMD="$(printf '%q ' "${server_cmd[@]}" | sed "s|$ROOT/||g")" \
    python3 -B - <<'PY'
import os, re, statistics, subprocess, platform

env = os.environ
raw, rounds, pairs = env["RAW"], int(env["ROUNDS"]), env["PAIRS"].split()
paths = {"json": "/json", "cached-json": "/cached/json",
         "db": f"/db/passthrough?rows={env['ROWS']}", "cached-db": f"/cached/db?rows={env['ROWS']}"}
what = {"json": "serialised per request", "cached-json": "Cache::memory hit (moka)",
        "db": "PostgreSQL pass-through, uncached", "cached-db": "Cache::redis hit (one GET)"}

def unit_ms(v, u):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[u]

def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        lat[pct] = unit_ms(*m.groups()) if m else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    load = re.search(r"# load1=([\d.]+)", text)
    return rps, lat["50"], lat["99"], int(errors.group(1)) if errors else 0, load.group(1) if load else "?"

def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "?"

targets = [t for p in pairs for t in (p, f"cached-{p}")]
data = {t: [parse(f"{raw}/r{r}-{t}.txt") for r in range(1, rounds + 1)] for t in targets}
med = {t: statistics.median(x[0] for x in data[t]) for t in targets}
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
dirty = " (working tree has uncommitted changes)" if sh("git", "status", "--porcelain") else ""

out = []
w = out.append
w("# Cache HTTP benchmark\n")
w(f"Run `{env['RUN_ID']}` by `bash bench/run-cache.sh` ({rounds} rounds, raw output in `{raw}/`).\n")
w(f"- Machine: {model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
w(f"- Date: {sh('date', '-u', '+%Y-%m-%d %H:%M UTC')}")
w(f"- Commit: `{sh('git', 'rev-parse', '--short', 'HEAD')}`{dirty}")
w(f"- Load average (1/5/15 min): {env['LOAD_START']} at start, {env['LOAD_END']} at end"
  " (other work on this machine shares both CPUs: treat small differences as noise)")
w(f"- Build: `{env['BUILD_CMD']}`")
w(f"- Server: `{env['SERVER_CMD'].strip()}`")
w(f"- Load: `{env['WRK_CMD']} <url>` after a discarded warm-up run\n")
w("## Medians\n")
w("| target | route | what | req/s (median) | p50 ms | p99 ms |")
w("|---|---|---|---:|---:|---:|")
for t in targets:
    p50 = statistics.median(x[1] for x in data[t]); p99 = statistics.median(x[2] for x in data[t])
    w(f"| {t} | `{paths[t]}` | {what[t]} | {med[t]:,.0f} | {p50:.2f} | {p99:.2f} |")
w("\n## Ratios (of medians)\n")
w("| ratio | value | goal |")
w("|---|---:|---|")
r = med["cached-json"] / med["json"]
w(f"| `/cached/json` / `/json` | {r:.3f} | ≥ 0.9: {'met' if r >= 0.9 else 'missed'} |")
if "db" in pairs:
    r = med["cached-db"] / med["db"]
    w(f"| `/cached/db` (Redis) / `/db/passthrough` (PostgreSQL) | {r:.3f} | reported |")
else:
    w("| `/cached/db` / `/db/passthrough` | skipped | PostgreSQL or Redis unreachable |")
w("\n## Per round\n")
w("| round | target | req/s | p50 ms | p99 ms | non-2xx | load1 after |")
w("|---:|---|---:|---:|---:|---:|---:|")
for i in range(rounds):
    for t in targets:
        rps, p50, p99, err, load = data[t][i]
        w(f"| {i + 1} | {t} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {err} | {load} |")
text = "\n".join(out) + "\n"
open(env["OUT"], "w").write(text)
print(text)
PY
log "report: $OUT (raw output: $RAW)"
