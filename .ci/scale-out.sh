#!/usr/bin/env bash
# Scale-out, for real: HAProxy (Debian's package) in front of three blog instances configured
# as production would be (docs/deployment.md), sharing one PostgreSQL database and one Redis
# namespace, and checks that the three behave like one:
#
#   a) a logout through instance A revokes the token on B and C (CHOPIN_AUTH_REVOCATION=redis);
#   b) the general per-client rate limit and the auth module's login limit, spent through
#      mixed instances, answer 429 on every instance (CHOPIN_RATE_LIMIT_BACKEND=redis);
#   c) a post read (and cached) on all three, then updated through one, is served new by all
#      three (CHOPIN_CACHE=tiered: the Redis invalidation reaches every in-process tier);
#   d) instance B killed with SIGKILL under write load through HAProxy (comments, whose table
#      has no unique key a duplicate would trip on): every write answered 2xx is in the
#      database exactly once, HAProxy's health check (/health/ready) marks B down, and from
#      one second after the kill no request fails;
#   e) instance C sent SIGTERM (a drain) under write load from clients that keep their
#      connections to HAProxy open, so HAProxy reuses its kept-alive connections to C: no
#      write fails, every write answered 2xx is stored exactly once, C exits within its
#      shutdown timeout and HAProxy marks it down.
#
#   bash .ci/scale-out.sh
#
# The blog binary is the one `cargo test --workspace --all-features --no-run` builds (a no-op
# after .ci/run's test step); CHOPIN_SCALE_BLOG=<path> uses another. HAProxy runs with
# docs/deploy/haproxy.cfg itself (the addresses come from environment variables), so the
# documented configuration is the tested one. Everything runs on loopback ports picked free;
# the database (created fresh, dropped at the end) and the Redis keys (a namespace of this
# run, deleted at the end) are this run's own. Every process started is stopped on exit,
# whatever happens. Needs: haproxy, psql, redis-cli, curl, python3, and aiosmtpd (the venv
# .ci/run makes; CHOPIN_TEST_AIOSMTPD_PYTHON) as the production mailer's SMTP server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

started=$SECONDS
log() { printf '\n== scale-out: %s (%d s) ==\n' "$*" $((SECONDS - started)); }
fail() {
  echo "scale-out.sh: $*" >&2
  exit 1
}

# ---- tools ----
for tool in haproxy psql redis-cli curl python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found (.ci/run installs it: apt-get install -y haproxy postgresql-client redis-tools curl python3)"
done
PY_SMTP=${CHOPIN_TEST_AIOSMTPD_PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/chopin-ci/aiosmtpd-1.4.6/bin/python}
"$PY_SMTP" -c 'import aiosmtpd' 2>/dev/null ||
  fail "no aiosmtpd in $PY_SMTP (set CHOPIN_TEST_AIOSMTPD_PYTHON; .ci/run makes the venv)"
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres} PGSSLMODE=${PGSSLMODE:-disable}
REDIS_URL=${CHOPIN_TEST_REDIS_URL:-redis://127.0.0.1:6379}
psql -X -q -d postgres -c 'SELECT 1' >/dev/null || fail "cannot connect to PostgreSQL as $PGUSER@$PGHOST:$PGPORT"
[ "$(redis-cli -u "$REDIS_URL" PING 2>/dev/null)" = PONG ] || fail "Redis does not answer at $REDIS_URL"

# ---- the blog binary ----
if [ -n "${CHOPIN_SCALE_BLOG:-}" ]; then
  BLOG=$CHOPIN_SCALE_BLOG
else
  log "build (cargo test --workspace --all-features --no-run: a no-op after .ci/run's tests)"
  cargo test --workspace --all-features --no-run --quiet
  BLOG=$TARGET/debug/blog
fi
[ -x "$BLOG" ] || fail "no blog binary at $BLOG"

# ---- this run's own database, Redis namespace, temporary directory ----
RUN=$(python3 -c 'import secrets; print(secrets.token_hex(4))')
DB=chopin_scale_$RUN
NAMESPACE=chopin-scale-$RUN
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local status=$?
  local pid
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for f in "$WORK"/*.log; do
      [ -f "$f" ] && { echo "---- $(basename "$f") (last 30 lines)"; tail -n 30 "$f"; } >&2
    done
  fi
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "$NAMESPACE[:|]*" 2>/dev/null |
    xargs -r -n 100 redis-cli -u "$REDIS_URL" DEL >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=.ci/lib.sh
source .ci/lib.sh  # (the script has cd-ed to the repository root)

psql -X -q -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null
log "database $DB, Redis namespace $NAMESPACE"

# ---- the mailer's SMTP server (production refuses to start without one) ----
SMTP_PORT=$(free_port)
"$PY_SMTP" -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Sink >"$WORK/smtp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && break; sleep 0.1; done

# ---- three instances, started together (the migrations take turns under the lock) ----
# docs/deployment.md names these settings; the rate limits are the test's own (the
# per-address limit high enough never to bind: check b spends the per-client one).
JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
shared_env=(
  CHOPIN_ENV=production
  CHOPIN_HOST=127.0.0.1
  "DATABASE_URL=postgres://$PGUSER@$PGHOST:$PGPORT/$DB?max_connections=8"
  "CHOPIN_JWT_SECRET=$JWT_SECRET"
  CHOPIN_JWT_ISSUER=chopin-blog
  CHOPIN_JWT_AUDIENCE=chopin-blog
  CHOPIN_AUTH_REVOCATION=redis
  CHOPIN_CACHE=tiered
  "REDIS_URL=$REDIS_URL"
  "CHOPIN_CACHE_NAMESPACE=$NAMESPACE"
  CHOPIN_CACHE_TIMEOUT=250ms
  CHOPIN_RATE_LIMIT_BACKEND=redis
  CHOPIN_RATE_LIMIT=300/1h
  CHOPIN_RATE_LIMIT_IP=100000/1m
  CHOPIN_RATE_LIMIT_LOGIN=10/1m
  CHOPIN_TRUSTED_PROXIES=127.0.0.1
  "CHOPIN_SMTP_URL=smtp://127.0.0.1:$SMTP_PORT?tls=none"
  "CHOPIN_SMTP_FROM=Chopin blog <noreply@blog.test>"
  CHOPIN_PUBLIC_URL=https://blog.test
  CHOPIN_SHUTDOWN_DELAY=1s
  CHOPIN_SHUTDOWN_TIMEOUT=5s
  CHOPIN_LOG=warn
)
declare -A PORT PID
for name in a b c; do
  PORT[$name]=$(free_port)
  metrics=$(free_port)
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec env -i PATH="$PATH" HOME="$HOME" "${shared_env[@]}" \
    CHOPIN_PORT="${PORT[$name]}" CHOPIN_METRICS_ADDR="127.0.0.1:$metrics" "$BLOG") >"$WORK/blog-$name.log" 2>&1 &
  PID[$name]=$!
  PIDS+=("${PID[$name]}")
done
log "blogs on ports a=${PORT[a]} b=${PORT[b]} c=${PORT[c]}"
for name in a b c; do
  wait_http "http://127.0.0.1:${PORT[$name]}/health/ready" 60 "${PID[$name]}" ||
    fail "instance $name did not become ready"
done

# ---- HAProxy, with the documented configuration ----
LB_PORT=$(free_port)
export CHOPIN_LB_BIND=127.0.0.1:$LB_PORT CHOPIN_LB_STATS_SOCKET=$WORK/haproxy.sock
export CHOPIN_BLOG_A=127.0.0.1:${PORT[a]} CHOPIN_BLOG_B=127.0.0.1:${PORT[b]} CHOPIN_BLOG_C=127.0.0.1:${PORT[c]}
haproxy -c -q -f docs/deploy/haproxy.cfg || fail "docs/deploy/haproxy.cfg does not pass haproxy -c"
haproxy -db -f docs/deploy/haproxy.cfg >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
wait_http "http://127.0.0.1:$LB_PORT/health/ready" 20 "$HAPROXY_PID" || fail "HAProxy did not answer"
log "HAProxy on $LB_PORT"

# ---- the checks ----
python3 -B .ci/scale-out.py \
  --lb "http://127.0.0.1:$LB_PORT" \
  --instance "a=http://127.0.0.1:${PORT[a]}" \
  --instance "b=http://127.0.0.1:${PORT[b]}" \
  --instance "c=http://127.0.0.1:${PORT[c]}" \
  --kill "b=${PID[b]}" \
  --drain "c=${PID[c]}" \
  --stats-socket "$CHOPIN_LB_STATS_SOCKET" \
  --database "$DB" \
  --run "$RUN"
echo "(a \"Killed\" notice of bash above is instance b, killed by check d)"

kill -0 "${PID[a]}" 2>/dev/null || fail "instance a died"
log "passed"
