#!/usr/bin/env bash
# API contract check: the blog's OpenAPI spec is valid, and the running server keeps it.
#
#   bash .ci/api-contract.sh
#
# 1. Installs the two Python tools, pinned, into a venv under the cargo target dir (once).
# 2. Builds and starts the blog on a free loopback port with a temporary SQLite file, and waits
#    for /health/ready.
# 3. Validates the served /openapi.json with openapi-spec-validator.
# 4. Signs up and logs in through the blog's own auth routes (the account schemathesis uses).
# 5. Runs schemathesis with every check (`--checks all`), a bounded number of cases per
#    operation, bearer tokens fetched from /api/auth/login (and fetched again after a 401, since
#    the fuzzed /api/auth/logout revokes the token in use). Any failure fails the script.
# 6. Creates an auth project with `chopin new --auth`, exports its spec with
#    `chopin openapi export` (no database) and validates it too (CHOPIN_CONTRACT_GENERATED=0
#    skips this step).
#
# The server is always stopped, whatever happens. Every check runs. One operation is left out of
# the schemathesis run, GET /api/posts/stream: it answers an endless `text/event-stream` (new
# posts as they are created), and a request/response fuzzer waits for a body that never ends.
# It is still in the validated spec, and examples/blog/tests/stream.rs tests it over a socket.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

SCHEMATHESIS_VERSION=4.32.5
SPEC_VALIDATOR_VERSION=0.9.0
MAX_EXAMPLES=${CHOPIN_CONTRACT_MAX_EXAMPLES:-50}
VENV=$TARGET/api-contract-venv

log() { printf '\n== api contract: %s ==\n' "$*"; }

log "tools (schemathesis $SCHEMATHESIS_VERSION, openapi-spec-validator $SPEC_VALIDATOR_VERSION)"
if ! { "$VENV/bin/st" --version 2>/dev/null | grep -qx "st, version $SCHEMATHESIS_VERSION" &&
  "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("openapi-spec-validator") != sys.argv[1])' \
    "$SPEC_VALIDATOR_VERSION" 2>/dev/null; }; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$SPEC_VALIDATOR_VERSION"
fi
"$VENV/bin/st" --version
PY=$VENV/bin/python

log "build the blog"
cargo build -p blog
BLOG=$TARGET/debug/blog

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

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT

log "start the blog on $BASE"
# Development settings (a random per-process JWT key, the log mailer), SQLite in a temp file.
env CHOPIN_ENV=development CHOPIN_HOST=127.0.0.1 CHOPIN_PORT="$PORT" \
  DATABASE_URL="sqlite://$WORK/blog.db?mode=rwc" CHOPIN_LOG=warn \
  "$BLOG" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
ready=
for _ in $(seq 1 120); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  if "$PY" - "$BASE/health/ready" <<'EOF' 2>/dev/null; then
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
  echo "the blog did not become ready; its log:" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi

log "openapi-spec-validator $BASE/openapi.json"
"$PY" - "$BASE/openapi.json" "$WORK/openapi.json" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    open(sys.argv[2], "wb").write(r.read())
EOF
"$VENV/bin/openapi-spec-validator" "$WORK/openapi.json"

log "sign up and log in through /api/auth"
EMAIL=contract@example.com
PASSWORD=contract-password-1
"$PY" - "$BASE" "$EMAIL" "$PASSWORD" <<'EOF'
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
cat >"$WORK/schemathesis.toml" <<EOF
[auth.dynamic.openapi.bearer]
path = "/api/auth/login"
method = "post"
payload = { email = "$EMAIL", password = "$PASSWORD" }
extract_selector = "/data/access_token"
retry_on = [401]
EOF

log "schemathesis: --checks all, at most $MAX_EXAMPLES cases per operation"
status=0
# From $WORK: schemathesis keeps a cache directory (.schemathesis/) in the current directory.
(cd "$WORK" && "$VENV/bin/st" --config-file "$WORK/schemathesis.toml" run "$WORK/openapi.json" \
  --url "$BASE" \
  --checks all \
  --exclude-operation-id stream_posts \
  --max-examples "$MAX_EXAMPLES" \
  --seed "${CHOPIN_CONTRACT_SEED:-20261207}" \
  --request-timeout 30 \
  --no-color \
  --report junit --report-dir "$WORK/report") || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed ($status); the server's log (last 60 lines):" >&2
  tail -n 60 "$WORK/server.log" >&2
  exit "$status"
fi
stop_server

if [ "${CHOPIN_CONTRACT_GENERATED:-1}" = 1 ]; then
  log "a generated auth project's spec, exported with chopin openapi export"
  cargo build -p chopin-web-cli
  PROJECT=$WORK/contract-app
  "$TARGET/debug/chopin" new contract-app --auth --path "$PROJECT" --chopin-path "$ROOT" >/dev/null
  # The target dir that chopin-cli's e2e tests build generated projects in (same checkout,
  # same features): after the workspace tests, their dependencies are compiled already.
  (cd "$PROJECT" && env -u DATABASE_URL -u CHOPIN_ENV CARGO_INCREMENTAL=0 \
    CARGO_TARGET_DIR="${CHOPIN_E2E_TARGET_DIR:-$TARGET/chopin-e2e}" \
    "$TARGET/debug/chopin" openapi export --output "$WORK/generated.json")
  "$VENV/bin/openapi-spec-validator" "$WORK/generated.json"
  "$PY" - "$WORK/generated.json" <<'EOF'
import json, sys
spec = json.load(open(sys.argv[1]))
missing = {"/api/auth/signup", "/api/auth/login", "/api/auth/me", "/api/notes"} - set(spec["paths"])
assert not missing, f"the exported spec lacks {missing}"
ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()
       if isinstance(op, dict) and "responses" in op]
assert len(ids) == len(set(ids)), f"duplicate operationIds: {sorted(ids)}"
print(f"the generated project's spec is valid: {len(ids)} operations, /api/auth/* included")
EOF
fi

log "passed"
