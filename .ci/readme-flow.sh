#!/usr/bin/env bash
# The README's "A new project" flow, run with the README's own commands: install `chopin` from
# this checkout, create a project WITHOUT --chopin-path (so it depends on this checkout, as a
# new user's would), test it, generate a resource, test it again. Fails if any step fails or
# if the project does not depend on this checkout's `chopin-web-core`.
#
#   bash .ci/readme-flow.sh
#
# Every build goes to one target directory shared with chopin-cli/tests/e2e.rs
# (`target/chopin-e2e`, or CHOPIN_E2E_TARGET_DIR). `.ci/run` runs this after the workspace
# tests, whose e2e test has built the same default project's dependencies there (same checkout,
# same Cargo.lock, same features), so they are compiled once. `cargo install --debug` keeps the
# tool's build short; the tool's behaviour does not depend on the profile.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$(pwd -P)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="${CHOPIN_E2E_TARGET_DIR:-$checkout/target/chopin-e2e}"
# Throw-away builds: no incremental state to write (as in e2e.rs, so artifacts are shared).
export CARGO_INCREMENTAL=0
# The project must run on its defaults, not on the caller's settings.
unset DATABASE_URL CHOPIN_CACHE REDIS_URL CHOPIN_ENV

started=$SECONDS
run() {
    local t=$SECONDS
    printf '+ %s\n' "$*"
    "$@"
    printf '  (%d s)\n' $((SECONDS - t))
}

run cargo install --locked --debug --path chopin-cli --root "$work/tool"
export PATH="$work/tool/bin:$PATH"
cd "$work"

# The README's commands, from here on.
run chopin new my-api 2>&1 | tee new.log
grep -qF "using Chopin from $checkout (" new.log ||
    { echo "chopin new did not report this checkout as its source" >&2; exit 1; }
grep -qF "chopin-core = { package = \"chopin-web-core\", path = \"$checkout/chopin-core\"," my-api/Cargo.toml ||
    { echo "my-api/Cargo.toml does not depend on this checkout's chopin-web-core" >&2; exit 1; }
cd my-api
run cargo test
run chopin generate resource Article title:string! body:text published:bool!
run cargo test

echo "README flow passed in $((SECONDS - started)) s"
