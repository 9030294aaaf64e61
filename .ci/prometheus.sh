#!/usr/bin/env bash
# A real Prometheus against the blog: the alert rules load and pass their unit tests, the
# blog's /metrics passes `promtool check metrics`, Prometheus scrapes it (up == 1) and sees
# the requests driven at it (a positive request rate), every rule evaluates without error,
# and every query of the Grafana dashboard runs.
#
#   bash .ci/prometheus.sh
#
# 1. Installs Debian's `prometheus` package when `prometheus` or `promtool` is missing (with a
#    policy-rc.d that keeps the package's own service from starting, and stops it if it runs
#    anyway): our Prometheus runs on a free loopback port with a temporary data folder.
# 2. `promtool check rules` and `promtool test rules` on docs/prometheus/.
# 3. The blog binary from `cargo test --workspace --all-features --no-run`, the build
#    `.ci/run`'s test step has just made (a no-op then; see .ci/api-contract.sh for why not a
#    separate `cargo build`). CHOPIN_PROM_BLOG=<path> uses that binary instead.
# 4. Starts the blog (development, SQLite in a temp file, `env -i`: nothing of the caller's
#    environment) on a free port with its metrics listener on another, drives requests,
#    lints a scrape with `promtool check metrics`.
# 5. Starts Prometheus (scrape_interval 1s, evaluation_interval 1s, alerts.yml loaded) on a
#    free port, keeps driving requests, waits for at least two scrapes, then checks through
#    the HTTP API: `up == 1`, `sum(rate(http_server_request_duration_seconds_count[10s])) > 0`,
#    every rule's health is ok, and every dashboard query (docs/grafana/chopin.json) answers
#    `success`.
# Everything started is stopped on exit, whatever happens. Budget: well under 2 minutes once
# the build exists.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

started=$SECONDS
log() { printf '\n== prometheus: %s (%d s) ==\n' "$*" $((SECONDS - started)); }
fail() {
  echo "prometheus.sh: $*" >&2
  exit 1
}

# ---- 1. tools ----
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  log "installing ${need[*]}"
  # Keep the package's own prometheus.service (0.0.0.0:9090) from starting.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
    # Never leave it behind: it would stop every later service start on the machine.
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT INT TERM
  fi
  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"; }
  install_ok=1
  if ! apt_install; then
    apt-get update && apt_install || install_ok=
  fi
  [ -z "$made_policy" ] || { rm -f /usr/sbin/policy-rc.d; trap - EXIT INT TERM; }
  [ -n "$install_ok" ] || fail "could not install ${need[*]}"
  # Not started now, and not at the next boot either.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  if command -v service >/dev/null 2>&1 && service prometheus status >/dev/null 2>&1; then
    service prometheus stop || true
  fi
fi
prometheus --version 2>&1 | head -n1
promtool --version 2>&1 | head -n1

# ---- 2. rules ----
log "promtool check rules / test rules (docs/prometheus)"
promtool check rules docs/prometheus/alerts.yml
(cd docs/prometheus && promtool test rules alerts_test.yml)

# ---- 3. the blog binary ----
if [ -n "${CHOPIN_PROM_BLOG:-}" ]; then
  BLOG=$CHOPIN_PROM_BLOG
else
  log "build (cargo test --workspace --all-features --no-run: a no-op after .ci/run's tests)"
  cargo test --workspace --all-features --no-run --quiet
  BLOG=$TARGET/debug/blog
fi
[ -x "$BLOG" ] || fail "no blog binary at $BLOG"

WORK=$(mktemp -d)
BLOG_PID=
PROM_PID=
DRIVER_PID=
cleanup() {
  local status=$?
  for pid in $DRIVER_PID $PROM_PID $BLOG_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "$status" -ne 0 ]; then
    for f in blog.log prometheus.log; do
      [ -f "$WORK/$f" ] && { echo "---- $f (last 40 lines)"; tail -n 40 "$WORK/$f"; } >&2
    done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=.ci/lib.sh
source .ci/lib.sh  # (the script has cd-ed to the repository root)

# ---- 4. the blog, and a lint of its scrape ----
APP_PORT=$(free_port)
METRICS_PORT=$(free_port)
[ "$APP_PORT" != "$METRICS_PORT" ] || METRICS_PORT=$(free_port)
APP=http://127.0.0.1:$APP_PORT
METRICS=http://127.0.0.1:$METRICS_PORT/metrics
log "blog on $APP, metrics on $METRICS"
mkdir -p "$WORK/cwd"
(cd "$WORK/cwd" && exec env -i PATH="$PATH" HOME="$HOME" CHOPIN_ENV=development \
  CHOPIN_HOST=127.0.0.1 CHOPIN_PORT="$APP_PORT" DATABASE_URL="sqlite://$WORK/blog.db?mode=rwc" \
  CHOPIN_METRICS_ADDR="127.0.0.1:$METRICS_PORT" CHOPIN_LOG=warn "$BLOG") >"$WORK/blog.log" 2>&1 &
BLOG_PID=$!
wait_http "$APP/health/ready" 60 "$BLOG_PID" || fail "the blog did not become ready"
wait_http "$METRICS" 10 "$BLOG_PID" || fail "no /metrics at $METRICS"

drive() { # a few requests of each kind: 200s, 404s (no route), 401s (a failed login)
  for _ in 1 2 3 4 5; do
    curl -fsS -o /dev/null "$APP/api/posts"
    curl -fsS -o /dev/null "$APP/health/live" || true
  done
  curl -sS -o /dev/null "$APP/no/such/route"
  curl -sS -o /dev/null -X POST "$APP/api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"nobody@example.com","password":"wrong password"}'
}
drive
curl -fsS "$METRICS" >"$WORK/scrape.txt"
grep -q '^http_server_request_duration_seconds_count{.*http_route="/api/posts".*} ' "$WORK/scrape.txt" ||
  fail "the scrape has no request count for /api/posts"
log "promtool check metrics ($(grep -vc '^#' "$WORK/scrape.txt") samples)"
promtool check metrics <"$WORK/scrape.txt"

# ---- 5. Prometheus ----
PROM_PORT=$(free_port)
PROM=http://127.0.0.1:$PROM_PORT
cp docs/prometheus/alerts.yml "$WORK/alerts.yml"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $WORK/alerts.yml
scrape_configs:
  - job_name: blog
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
EOF
promtool check config "$WORK/prometheus.yml"
log "prometheus on $PROM"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
wait_http "$PROM/-/ready" 30 "$PROM_PID" || fail "Prometheus did not become ready"

# Traffic for as long as the checks run.
(while true; do drive >/dev/null 2>&1 || true; sleep 0.2; done) &
DRIVER_PID=$!

# `query EXPR` prints the API's JSON answer.
query() { curl -fsS --max-time 5 -G "$PROM/api/v1/query" --data-urlencode "query=$1"; }
# `scalar EXPR` prints the first result's value, or nothing.
scalar() {
  query "$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["status"] == "success", r
res = r["data"]["result"]
print(res[0]["value"][1] if res else "")'
}
positive() { python3 -c 'import sys; sys.exit(0 if sys.argv[1] and float(sys.argv[1]) > 0 else 1)' "$1"; }

log "waiting for two scrapes and a request rate"
rate=
scrapes=
for _ in $(seq 1 300); do
  kill -0 "$PROM_PID" 2>/dev/null || fail "Prometheus exited"
  scrapes=$(scalar 'count_over_time(up{job="blog"}[1m])' || true)
  if [ -n "$scrapes" ] && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 2 else 1)' "$scrapes"; then
    rate=$(scalar 'sum(rate(http_server_request_duration_seconds_count{job="blog"}[10s]))' || true)
    if positive "$rate"; then break; fi
  fi
  sleep 0.1
done
echo "scrapes: ${scrapes:-none}; requests/s: ${rate:-none}"
positive "$rate" || fail "no positive request rate after $((SECONDS - started)) s"
up=$(scalar 'up{job="blog"}')
[ "$up" = 1 ] || fail "up{job=\"blog\"} is '$up', not 1"
echo "up: $up"

log "rules: every rule of alerts.yml loaded and evaluated without error"
for _ in $(seq 1 50); do
  curl -fsS "$PROM/api/v1/rules" >"$WORK/rules.json"
  if python3 - "$WORK/rules.json" <<'EOF'; then break; fi
import json, sys
rules = [r for g in json.load(open(sys.argv[1]))["data"]["groups"] for r in g["rules"]]
sys.exit(0 if rules and not any(r.get("lastEvaluation", "0001").startswith("0001") for r in rules) else 1)
EOF
  sleep 0.2
done
python3 - "$WORK/rules.json" <<'EOF'
import json, sys
groups = json.load(open(sys.argv[1]))["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [(r["name"], r.get("health"), r.get("lastError")) for r in rules if r.get("health") != "ok"]
print(f"{len(rules)} rules in {[g['name'] for g in groups]}; firing: "
      f"{[r['name'] for r in rules if r.get('state') == 'firing'] or 'none'}")
if len(rules) < 10 or bad:
    sys.exit(f"rules not healthy: {bad or 'too few rules'}")
EOF

log "dashboard: every query of docs/grafana/chopin.json runs"
python3 - docs/grafana/chopin.json "$PROM" <<'EOF'
import json, sys, urllib.parse, urllib.request
dash, prom = json.load(open(sys.argv[1])), sys.argv[2]
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
exprs += [v["query"]["query"].replace("label_values(", "group by (instance) (").replace(", instance)", ")")
          for v in dash["templating"]["list"] if v["type"] == "query"]
failed, with_data = [], 0
for e in exprs:
    q = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        if body["status"] != "success":
            failed.append((e, body))
        elif body["data"]["result"]:
            with_data += 1
    except Exception as err:  # a 400 is a query Prometheus cannot parse
        failed.append((e, getattr(err, "read", lambda: str(err))()))
print(f"{len(exprs)} queries ran, {with_data} with data")
if failed:
    sys.exit("dashboard queries failed:\n" + "\n".join(f"  {e}: {b}" for e, b in failed))
EOF

log "passed"
