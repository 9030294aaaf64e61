#!/usr/bin/env bash
# Smoke test of the benchmark harness: runs every bench script end to end in smoke mode
# (BENCH_SMOKE=1: one round of 1-second runs, the `dev` profile the test build already compiled,
# reports in a temporary directory; see bench/lib.sh) and fails if any of them fails, if a
# target answers differently from the baselines, if a report is missing, or if a committed
# file under bench/results changed. `.ci/run` runs it after the tests. The figures mean nothing.
#
#   bash bench/smoke.sh
#   SMOKE_SCRIPTS="run.sh profile-core.sh" bash bench/smoke.sh     # a subset
#
# Needs what the scripts need: wrk, valgrind, taskset, curl, psql, pgbench, redis-cli, PostgreSQL and
# Redis on their default addresses, and aiosmtpd (soak.sh's mailer sink; the venv .ci/run makes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL="run.sh run-both profile-core.sh micro-passthrough.sh run-db.sh run-cache.sh stream-mem.sh profile-db.sh soak.sh tv-writes.sh"
SMOKE_SCRIPTS="${SMOKE_SCRIPTS:-$ALL}"
BENCH_RESULTS="$(mktemp -d "${TMPDIR:-/tmp}/chopin-bench-smoke.XXXXXX")"
export BENCH_SMOKE=1 BENCH_RESULTS

fail() {
    echo "bench/smoke.sh: FAILED: $*" >&2
    echo "bench/smoke.sh: output kept in $BENCH_RESULTS" >&2
    exit 1
}

# The crates.io `chopin-core` (another project, used by bench/epoll-baseline only) must never
# be resolved by our workspace.
if grep -A2 '^name = "chopin-core"$' Cargo.lock | grep -q '^source = "registry'; then
    fail "the workspace Cargo.lock resolves the crates.io chopin-core; only bench/epoll-baseline may use it"
fi

before="$(git status --porcelain -- bench/results 2>/dev/null || true)"
summary=""
start_all=$SECONDS
for s in $SMOKE_SCRIPTS; do
    t0=$SECONDS
    case "$s" in
        # Both CPUs for the server and wrk, on the cheapest targets of each kind.
        run-both)
            echo "==> smoke: MODE=both bash bench/run.sh" >&2
            MODE=both TARGETS="axum epoll chopin-full chopin-full-percore" bash bench/run.sh \
                >"$BENCH_RESULTS/run-both.log" 2>&1 || { tail -n 40 "$BENCH_RESULTS/run-both.log" >&2; fail "MODE=both bench/run.sh"; }
            ;;
        *)
            echo "==> smoke: bash bench/$s" >&2
            bash "bench/$s" >"$BENCH_RESULTS/$s.log" 2>&1 || { tail -n 40 "$BENCH_RESULTS/$s.log" >&2; fail "bench/$s"; }
            ;;
    esac
    summary+="$(printf '%-22s %4ds' "$s" $((SECONDS - t0)))"$'\n'
done

# Reports written where they belong (the temporary directory), with the same bodies everywhere.
expect=()
for s in $SMOKE_SCRIPTS; do
    case "$s" in
        run.sh) expect+=(latest.md) ;;
        run-both) expect+=(latest-both.md) ;;
        profile-core.sh) expect+=(core-callgrind.md) ;;
        run-cache.sh) expect+=(cache.md) ;;
        soak.sh) expect+=(soak.md) ;;
        tv-writes.sh) expect+=(tv-writes.md) ;;
        micro-passthrough.sh | run-db.sh | stream-mem.sh | profile-db.sh) expect+=(passthrough.md) ;;
    esac
done
for f in ${expect[@]+"${expect[@]}"}; do
    [[ -s "$BENCH_RESULTS/$f" ]] || fail "no report $BENCH_RESULTS/$f"
done
for f in latest.md latest-both.md; do
    [[ -f "$BENCH_RESULTS/$f" ]] || continue
    if grep -q "differs from the baselines" "$BENCH_RESULTS/$f"; then
        grep "differs from the baselines" "$BENCH_RESULTS/$f" >&2
        fail "a target answered differently from the baselines ($f)"
    fi
    if grep -q "non-2xx/3xx responses" "$BENCH_RESULTS/$f"; then
        grep "non-2xx/3xx responses" "$BENCH_RESULTS/$f" >&2
        fail "errors under load ($f)"
    fi
done
[[ "$(git status --porcelain -- bench/results 2>/dev/null || true)" == "$before" ]] ||
    fail "smoke mode changed committed files under bench/results"

printf '%s' "$summary"
echo "bench/smoke.sh: OK in $((SECONDS - start_all))s; reports in $BENCH_RESULTS"
