#!/usr/bin/env bash
# API contract check: the OpenAPI specs are valid, and the running servers keep them.
#
#   bash .ci/api-contract.sh
#
# 1. Installs the two Python tools, pinned, into a venv in the user's cache folder
#    (`${XDG_CACHE_HOME:-~/.cache}/chopin-ci/api-contract-<schemathesis>-<validator>`, reused
#    by every checkout and every clean clone on the machine; rebuilt when its versions differ).
# 2. For the blog, then for a generated project: starts it on a free loopback port with a
#    temporary SQLite file, an empty working folder (no `.env`) and an environment of its own
#    (`env -i`: only PATH, HOME and the settings in `contract` below, so none of the caller's
#    CHOPIN_*, DATABASE_URL or REDIS_URL leaks in), and waits for /health/ready; validates the
#    served /openapi.json with openapi-spec-validator (and checks unique operationIds and
#    /api/auth/* in it); signs up and logs in through its /api/auth routes (the account
#    schemathesis uses); runs schemathesis with every check (`--checks all`), a bounded
#    number of cases per operation, bearer tokens fetched from /api/auth/login (and again
#    after a 401, since the fuzzed /api/auth/logout revokes the token in use). Any failure
#    fails the script.
# 3. The generated project is `chopin new --cache redis --auth` plus a generated resource
#    with a multi-word and an integer field; its spec is also exported with `chopin openapi
#    export` (no database) and validated. CHOPIN_CONTRACT_GENERATED=0 skips it. `--cache
#    redis --auth` is the combination chopin-cli/tests/e2e.rs builds in full (build, clippy,
#    test) in the same target directory, so after the workspace tests only the project's own
#    crate is compiled here; the server still runs on the in-process cache (CHOPIN_CACHE is
#    not set, see 2.), so no Redis is needed.
#
# Binaries: `cargo test --workspace --all-features --no-run`, the build `.ci/run`'s test step
# has just made (a no-op then): it builds target/debug/blog and target/debug/chopin, the bin
# targets of packages with integration tests, with the workspace's unified features. (A
# separate `cargo build -p blog` would resolve features differently and recompile
# chopin-web-core and everything above it.)
#
# Knobs: CHOPIN_CONTRACT_MAX_EXAMPLES (cases per operation, 50), CHOPIN_CONTRACT_SEED,
# CHOPIN_CONTRACT_TIMEOUT (seconds one schemathesis run may take, 900: a hang fails the
# script with a message instead of eating the CI budget).
#
# Servers are always stopped, whatever happens. Every check runs. One operation is left out of
# the schemathesis run, the blog's GET /api/posts/stream: it answers an endless
# `text/event-stream` (new posts as they are created), and a request/response fuzzer waits for
# a body that never ends. It is still in the validated spec, and
# examples/blog/tests/stream.rs tests it over a socket.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

SCHEMATHESIS_VERSION=4.32.5
SPEC_VALIDATOR_VERSION=0.9.0
MAX_EXAMPLES=${CHOPIN_CONTRACT_MAX_EXAMPLES:-50}
ST_TIMEOUT=${CHOPIN_CONTRACT_TIMEOUT:-900}
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/chopin-ci
VENV=$CACHE_DIR/api-contract-$SCHEMATHESIS_VERSION-$SPEC_VALIDATOR_VERSION

started=$SECONDS
log() { printf '\n== api contract: %s (%d s) ==\n' "$*" $((SECONDS - started)); }

log "tools (schemathesis $SCHEMATHESIS_VERSION, openapi-spec-validator $SPEC_VALIDATOR_VERSION) in $VENV"
mkdir -p "$CACHE_DIR"
# One installer at a time: two runs on one machine share the venv.
exec 9>"$VENV.lock"
flock 9
if ! { "$VENV/bin/st" --version 2>/dev/null | grep -qx "st, version $SCHEMATHESIS_VERSION" &&
  "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("openapi-spec-validator") != sys.argv[1])' \
    "$SPEC_VALIDATOR_VERSION" 2>/dev/null; }; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$SPEC_VALIDATOR_VERSION"
fi
flock -u 9
exec 9>&-
"$VENV/bin/st" --version
PY=$VENV/bin/python

WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

EMAIL=contract@example.com
PASSWORD=contract-password-1

# contract NAME BINARY [schemathesis options…]: start BINARY (a Chopin app with the auth module
# at /api/auth) on a free port with a fresh SQLite file, validate its served spec, sign up and
# log in, run schemathesis with every check, stop it.
contract() {
  local name=$1 binary=$2 dir=$WORK/$1
  shift 2
  mkdir -p "$dir"
  local port base
  port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base=http://127.0.0.1:$port

  log "$name: start on $base"
  # Development settings (a random per-process JWT key, the log mailer), SQLite in a temp
  # file; nothing else from the caller's environment (every other setting at its default:
  # the in-process cache, the default rate limit, body limit and timeouts), and no `.env`
  # (development reads one from the working folder: here, an empty one). The auth module's
  # own rate limits are off: the fuzzer signs up and logs in (its token source) from one
  # address far more often than they allow; tests/auth_rate_limit.rs covers them. The
  # metrics listener takes any free port (`:0`): the default 127.0.0.1:9464 may be taken by
  # another app or run on the machine (.ci/prometheus.sh tests /metrics).
  mkdir -p "$dir/cwd"
  (cd "$dir/cwd" && exec env -i PATH="$PATH" HOME="$HOME" CHOPIN_ENV=development \
    CHOPIN_HOST=127.0.0.1 CHOPIN_PORT="$port" DATABASE_URL="sqlite://$dir/app.db?mode=rwc" \
    CHOPIN_METRICS_ADDR=127.0.0.1:0 \
    CHOPIN_RATE_LIMIT_LOGIN=off CHOPIN_RATE_LIMIT_LOGIN_FAILURES=off \
    CHOPIN_RATE_LIMIT_SIGNUP=off CHOPIN_RATE_LIMIT_PASSWORD_RESET=off \
    CHOPIN_RATE_LIMIT_VERIFICATION=off CHOPIN_RATE_LIMIT_REFRESH=off \
    CHOPIN_LOG=warn "$binary") >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  local ready=
  for _ in $(seq 1 120); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    if "$PY" - "$base/health/ready" <<'EOF' 2>/dev/null; then
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
      ready=1
      break
    fi
    sleep 0.5
  done
  if [ -z "$ready" ]; then
    echo "$name did not become ready; its log:" >&2
    cat "$dir/server.log" >&2
    exit 1
  fi

  log "$name: openapi-spec-validator $base/openapi.json"
  "$PY" - "$base/openapi.json" "$dir/openapi.json" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    open(sys.argv[2], "wb").write(r.read())
spec = json.load(open(sys.argv[2]))
ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()
       if isinstance(op, dict) and "responses" in op]
assert len(ids) == len(set(ids)), f"duplicate operationIds: {sorted(ids)}"
missing = {"/api/auth/signup", "/api/auth/login", "/api/auth/me"} - set(spec["paths"])
assert not missing, f"the served spec lacks {missing}"
EOF
  "$VENV/bin/openapi-spec-validator" "$dir/openapi.json"

  log "$name: sign up and log in through /api/auth"
  "$PY" - "$base" "$EMAIL" "$PASSWORD" <<'EOF'
import json, sys, urllib.request
base, email, password = sys.argv[1:]
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.load(r)
status, signup = post("/api/auth/signup", {"email": email, "password": password})
assert status == 201 and signup["data"]["token_type"] == "Bearer", signup
status, login = post("/api/auth/login", {"email": email, "password": password})
assert status == 200 and login["data"]["access_token"], login
req = urllib.request.Request(base + "/api/auth/me",
                             headers={"Authorization": "Bearer " + login["data"]["access_token"]})
with urllib.request.urlopen(req, timeout=10) as r:
    me = json.load(r)["data"]
assert me["email"] == email and me["emailVerified"] is False, me
print("signed up and logged in as", me["email"])
EOF

  # Tokens come from the login route itself, and are fetched again on a 401: the fuzzer calls
  # /api/auth/logout with the token it holds, which revokes it.
  cat >"$dir/schemathesis.toml" <<EOF
[auth.dynamic.openapi.bearer]
path = "/api/auth/login"
method = "post"
payload = { email = "$EMAIL", password = "$PASSWORD" }
extract_selector = "/data/access_token"
retry_on = [401]

# A pagination cursor is an opaque token the server signed: a schema-valid string it did not
# sign is refused with 400 INVALID_CURSOR, and a cursor beside offset/page with 400
# INVALID_QUERY, by design (docs/extractors.md). Only for the operations that take a cursor.
[[operations]]
include-operation-id = ["list_posts", "list_comments"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]
EOF

  log "$name: schemathesis --checks all, at most $MAX_EXAMPLES cases per operation, $ST_TIMEOUT s at most"
  local status=0
  # From $dir: schemathesis keeps a cache directory (.schemathesis/) in the current directory.
  (cd "$dir" && timeout -k 30 "$ST_TIMEOUT" \
    "$VENV/bin/st" --config-file "$dir/schemathesis.toml" run "$dir/openapi.json" \
    --url "$base" \
    --checks all \
    --max-examples "$MAX_EXAMPLES" \
    --seed "${CHOPIN_CONTRACT_SEED:-20261207}" \
    --request-timeout 30 \
    --no-color \
    --report junit --report-dir "$dir/report" \
    "$@") || status=$?
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "schemathesis did not finish on $name within $ST_TIMEOUT s (CHOPIN_CONTRACT_TIMEOUT): stopped" >&2
  fi
  if [ "$status" -ne 0 ]; then
    echo "schemathesis failed on $name ($status); the server's log (last 60 lines):" >&2
    tail -n 60 "$dir/server.log" >&2
    exit "$status"
  fi
  stop_server
}

log "binaries: cargo test --workspace --all-features --no-run (target/debug/blog, target/debug/chopin)"
cargo test --workspace --all-features --no-run
for bin in blog chopin; do
  [ -x "$TARGET/debug/$bin" ] || { echo "cargo test --no-run did not build $TARGET/debug/$bin" >&2; exit 1; }
done
# GET /api/posts/stream answers an endless text/event-stream: see the header.
contract blog "$TARGET/debug/blog" --exclude-operation-id stream_posts

if [ "${CHOPIN_CONTRACT_GENERATED:-1}" = 1 ]; then
  log "a generated auth project: chopin new --cache redis --auth, a resource with multi-word and integer fields"
  generated_started=$SECONDS
  PROJECT=$WORK/contract-app
  CHOPIN=$TARGET/debug/chopin
  "$CHOPIN" new contract-app --cache redis --auth --path "$PROJECT" --chopin-path "$ROOT" >/dev/null
  (cd "$PROJECT" && "$CHOPIN" generate resource Event display_name:string! seats:int >/dev/null)
  # The target dir that chopin-cli's e2e tests build generated projects in (same checkout,
  # same lock file, same features as their sqlite+redis+auth project, same settings as
  # their nested cargo): after the workspace tests, the dependencies are compiled already.
  GENERATED_TARGET=${CHOPIN_E2E_TARGET_DIR:-$TARGET/chopin-e2e}
  log "generated project: chopin openapi export (builds it; no database), validated"
  (cd "$PROJECT" && env -u DATABASE_URL -u CHOPIN_ENV -u CHOPIN_CACHE -u CARGO_MAKEFLAGS \
    CARGO_INCREMENTAL=0 CARGO_NET_OFFLINE=true CARGO_TARGET_DIR="$GENERATED_TARGET" \
    "$CHOPIN" openapi export --output "$WORK/generated.json")
  log "generated project built and exported in $((SECONDS - generated_started)) s"
  "$VENV/bin/openapi-spec-validator" "$WORK/generated.json"
  "$PY" - "$WORK/generated.json" <<'EOF'
import json, sys
spec = json.load(open(sys.argv[1]))
missing = {"/api/auth/signup", "/api/auth/login", "/api/auth/me", "/api/notes", "/api/events"} - set(spec["paths"])
assert not missing, f"the exported spec lacks {missing}"
print(f"the exported spec is valid and documents {len(spec['paths'])} paths, /api/auth/* included")
EOF
  # `openapi export` built the project's binary; the served spec must equal the exported one
  # (the project's own tests check that) and keep its promises like the blog's.
  contract generated "$GENERATED_TARGET/debug/contract-app"
  log "generated project: passed in $((SECONDS - generated_started)) s"
fi

log "passed"
