#!/usr/bin/env bash
# Soak: the blog (examples/blog) in production mode on PostgreSQL and Redis, under mixed load
# (bench/soak.lua: reads, writes, cache invalidations, token checks, logins) for
# CHOPIN_SOAK_SECONDS (default 600), and its resident memory sampled all along. Flat memory is
# the goal: the report gives the requests, the answers by status, the socket errors, and the
# server's VmRSS at start (ready, before any load), after the warm-up (the first tenth of the
# run), at the end, and the growth from the warm-up to the end.
#
#   bash bench/soak.sh                                  # 10 minutes, release build
#   CHOPIN_SOAK_SECONDS=3600 CONNECTIONS=32 bash bench/soak.sh
#
# Not run by CI except in smoke mode (BENCH_SMOKE=1, bench/smoke.sh: a few seconds, the dev
# build). Writes bench/results/soak.md (smoke mode: the temporary BENCH_RESULTS) and the raw
# samples under bench/results/raw/soak-<run>/. Fails when an answer is a 5xx or a connection
# failed (smoke mode: only when nothing succeeded). The blog's production mailer sends to an aiosmtpd sink (CHOPIN_TEST_AIOSMTPD_PYTHON,
# or the venv .ci/run makes); the database (chopin_soak, created afresh) and the Redis
# namespace are the run's own. The rate limits are off: the soak measures the server, not the
# limiter's refusals.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
invocation="$(bench_invocation bench/soak.sh CHOPIN_SOAK_SECONDS CONNECTIONS WRK_THREADS SAMPLE_EVERY \
    SERVER_CPU CLIENT_CPU PGHOST PGPORT PGUSER PGSSLMODE CARGO_EXTRA_ARGS CARGO_PROFILE BENCH_SMOKE)"
bench_init soak.sh

[[ "$BENCH_SMOKE" != 1 ]] || : "${CHOPIN_SOAK_SECONDS:=3}" "${SAMPLE_EVERY:=1}"
CHOPIN_SOAK_SECONDS="${CHOPIN_SOAK_SECONDS:-600}"
CONNECTIONS="${CONNECTIONS:-16}"
SAMPLE_EVERY="${SAMPLE_EVERY:-5}"
bench_check_int CHOPIN_SOAK_SECONDS 1
bench_check_int CONNECTIONS 1
bench_check_int SAMPLE_EVERY 1
bench_cpus
bench_pg_env
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
OUT="$(bench_out bench/results/soak.md)"
BIND=127.0.0.1:3017
METRICS_BIND=127.0.0.1:3018
SOAK_DB=chopin_soak
# Slugs take [a-z0-9-] only.
RUN_SLUG="$(tr 'A-Z' 'a-z' <<<"$RUN_ID")"
NAMESPACE="chopin-soak-$RUN_SLUG"

bench_require taskset wrk curl psql redis-cli python3 cargo
bench_pg_ready || die "cannot connect to PostgreSQL as $PGUSER@$PGHOST:$PGPORT"
bench_redis_ready "$REDIS_URL" || die "Redis does not answer at $REDIS_URL"
PY_SMTP="${CHOPIN_TEST_AIOSMTPD_PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/chopin-ci/aiosmtpd-1.4.6/bin/python}"
[[ -x "$PY_SMTP" ]] || PY_SMTP=python3
"$PY_SMTP" -c 'import aiosmtpd' 2>/dev/null ||
    die "no aiosmtpd for the blog's mailer (pip install aiosmtpd, or set CHOPIN_TEST_AIOSMTPD_PYTHON)"

bench_raw_dir soak
bench_build -p blog
exe="$(bench_exe blog)"

# --- the run's database and Redis namespace, removed on exit -----------------------------
PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $SOAK_DB WITH (FORCE)" \
    -c "CREATE DATABASE $SOAK_DB" >/dev/null
soak_cleanup() {
    bench_stop_all
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $SOAK_DB WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" --scan --pattern "$NAMESPACE[:|]*" 2>/dev/null |
        xargs -r -n 100 redis-cli -u "$REDIS_URL" DEL >/dev/null 2>&1 || true
}
trap soak_cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SMTP_PORT="$(free_port)"
bench_start smtp "127.0.0.1:$SMTP_PORT" "$RAW/smtp.log" \
    "$PY_SMTP" -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Sink

server_env=(
    CHOPIN_ENV=production CHOPIN_LOG=warn "CHOPIN_JWT_SECRET=$BENCH_JWT_SECRET"
    # One token for the whole run, however long.
    "CHOPIN_JWT_ACCESS_TTL=$((CHOPIN_SOAK_SECONDS + 600))"
    CHOPIN_HOST="${BIND%:*}" CHOPIN_PORT="${BIND##*:}" "CHOPIN_METRICS_ADDR=$METRICS_BIND"
    "DATABASE_URL=postgres://$PGUSER@$PGHOST:$PGPORT/$SOAK_DB?sslmode=$PGSSLMODE"
    CHOPIN_CACHE=tiered CHOPIN_AUTH_REVOCATION=redis "REDIS_URL=$REDIS_URL"
    # Redis round trips of a server pinned to one CPU under full load take longer than the
    # default 50ms at times; a revocation check that times out answers 503 (fail closed).
    CHOPIN_CACHE_TIMEOUT=250ms
    "CHOPIN_CACHE_NAMESPACE=$NAMESPACE" CHOPIN_RATE_LIMIT_LOGIN=off CHOPIN_RATE_LIMIT_SIGNUP=off
    "CHOPIN_SMTP_URL=smtp://127.0.0.1:$SMTP_PORT?tls=none" "CHOPIN_SMTP_FROM=noreply@blog.test"
)
bench_start blog "$BIND" "$RAW/blog.log" env -i PATH="$PATH" HOME="$HOME" "${server_env[@]}" \
    taskset -c "$SERVER_CPU" "$exe"
bench_wait_http blog "http://$BIND/health/ready"
PID="${BENCH_PID[blog]}"
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$PID/status"; }

# --- an account, and 50 posts to read and edit ----------------------------------------------
base="http://$BIND"
SOAK_EMAIL="soak-$RUN_ID@example.com"
SOAK_PASSWORD="a soak password"
token="$(curl -fsS "$base/api/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$SOAK_EMAIL\",\"password\":\"$SOAK_PASSWORD\"}" |
    python3 -c 'import json, sys; b = json.load(sys.stdin); print(b.get("data", b)["access_token"])')" ||
    die "sign-up failed"
ids=()
for i in $(seq 1 50); do
    ids+=("$(curl -fsS "$base/api/posts" -H 'content-type: application/json' -H "authorization: Bearer $token" \
        -d "{\"title\":\"seeded $i\",\"slug\":\"seed-$RUN_SLUG-$i\",\"body\":\"seeded\",\"published\":true}" |
        python3 -c 'import json, sys; b = json.load(sys.stdin); print(b.get("data", b)["id"])')") ||
        die "seeding posts failed"
    [[ -n "${ids[-1]}" ]] || die "seeding posts failed"
done
# soak.lua's PUTs keep each seeded post's slug, seed-<run>-<position>: ids must be consecutive.
[[ "${ids[-1]}" -eq $((ids[0] + 49)) ]] || die "the seeded ids are not consecutive: ${ids[*]}"

# --- the run ----------------------------------------------------------------------------------
rss_start="$(rss_kb)"
samples="$RAW/rss.tsv"
printf '# seconds\tvmrss_kb\n0\t%s\n' "$rss_start" >"$samples"
log "soak: ${CHOPIN_SOAK_SECONDS}s, $CONNECTIONS connections, VmRSS at start ${rss_start} KiB"
(
    t=0
    while sleep "$SAMPLE_EVERY"; do
        t=$((t + SAMPLE_EVERY))
        kb="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$PID/status" 2>/dev/null)" || exit 0
        [[ -n "$kb" ]] || exit 0
        printf '%s\t%s\n' "$t" "$kb" >>"$samples"
    done
) &
sampler=$!
WRK_CMD="taskset -c $CLIENT_CPU wrk -t${WRK_THREADS:-1} -c$CONNECTIONS -d${CHOPIN_SOAK_SECONDS}s --timeout 10s -s bench/soak.lua"
SOAK_TOKEN="$token" SOAK_EMAIL="$SOAK_EMAIL" SOAK_PASSWORD="$SOAK_PASSWORD" SOAK_RUN="$RUN_SLUG" \
    SOAK_POSTS="${ids[0]}-${ids[-1]}" \
    $WRK_CMD "$base" >"$RAW/wrk.txt" 2>&1 || { kill "$sampler" 2>/dev/null; die "wrk failed: $(tail -n 5 "$RAW/wrk.txt")"; }
rss_end="$(rss_kb)"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
printf '%s\t%s\n' "$CHOPIN_SOAK_SECONDS" "$rss_end" >>"$samples"
kill -0 "$PID" 2>/dev/null || die "the blog died during the soak"

# --- the report ---------------------------------------------------------------------------------
python3 -B - "$RAW/wrk.txt" "$samples" "$OUT" "$CHOPIN_SOAK_SECONDS" "$invocation" "$WRK_CMD" "$BUILD_CMD" \
    "$RAW" "$BENCH_SMOKE" <<'EOF'
import re, sys
wrk, samples, out, seconds, invocation, wrk_cmd, build_cmd, raw, smoke = sys.argv[1:]
text = open(wrk).read()
statuses = {int(c): int(n) for c, n in re.findall(r"^SOAK_STATUS (\d+) (\d+)$", text, re.M)}
requests = int(re.search(r"^SOAK_REQUESTS (\d+)$", text, re.M).group(1))
errors = dict(re.findall(r"(\w+)=(\d+)", re.search(r"^SOAK_SOCKET_ERRORS (.*)$", text, re.M).group(1)))
errors = {k: int(v) for k, v in errors.items()}
rss = [tuple(map(int, line.split("\t"))) for line in open(samples) if not line.startswith("#")]
start, end = rss[0][1], rss[-1][1]
warm_at = int(seconds) / 10
warm = next((kb for t, kb in rss if t >= warm_at and t > 0), end)
peak = max(kb for _, kb in rss)
rps = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
lines = [
    "# Soak",
    "",
    "The blog in production mode (PostgreSQL, `CHOPIN_CACHE=tiered`, `CHOPIN_AUTH_REVOCATION=redis`)",
    "under bench/soak.lua's mix: 60 % reads (by id through the cache, lists, comments), 10 %",
    "`GET /api/auth/me`, 15 % writes (posts, comments), 10 % updates (cache invalidations),",
    "5 % logins. Flat memory after the warm-up is the goal.",
    "",
    f"Command: `{invocation}`  ",
    f"Build: `{build_cmd}`  ",
    f"Load: `{wrk_cmd}`  ",
    f"Raw output: `{raw}`",
    "",
]
if smoke == "1":
    lines += ["**Smoke mode: a check of the script; the figures mean nothing.**", ""]
lines += [
    "| figure | value |",
    "|---|---|",
    f"| duration | {seconds} s |",
    f"| requests | {requests} ({rps.group(1) if rps else '?'}/s) |",
    "| answers by status | " + ", ".join(f"{c}: {n}" for c, n in sorted(statuses.items())) + " |",
    "| socket errors | " + ", ".join(f"{k} {v}" for k, v in errors.items()) + " |",
    f"| VmRSS at start (ready, before load) | {start / 1024:.1f} MiB |",
    f"| VmRSS after the warm-up ({warm_at:g} s) | {warm / 1024:.1f} MiB |",
    f"| VmRSS at the end | {end / 1024:.1f} MiB |",
    f"| VmRSS peak of the samples | {peak / 1024:.1f} MiB |",
    f"| growth from the warm-up to the end | {(end - warm) / 1024:+.1f} MiB ({(end - warm) / warm * 100:+.1f} %) |",
    "",
]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
bad = {c: n for c, n in statuses.items() if c >= 500}
if not statuses or not any(200 <= c < 300 for c in statuses):
    sys.exit(f"soak: no successful answer: {statuses}, socket errors {errors}")
# Smoke mode checks the script: on a loaded CI machine a 503 (a Redis round trip past
# CHOPIN_CACHE_TIMEOUT) is no reason to fail it.
if smoke != "1" and (bad or any(errors.values())):
    sys.exit(f"soak: server errors {bad}, socket errors {errors}")
EOF
log "report: $OUT"
