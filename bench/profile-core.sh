#!/usr/bin/env bash
# Server-side cost of one request on the core path, counted in instructions with valgrind's
# callgrind: the deterministic complement to bench/run.sh, unaffected by other load on a shared
# machine (wrk figures on 2 shared cores swing by tens of percent; instruction counts do not).
#
#   bash bench/profile-core.sh
#
#   SERVERS="axum chopin-full" ENDPOINTS=json bash bench/profile-core.sh   # a subset
#
# For each server in SERVERS (axum, actix, epoll, chopin-minimal, chopin-nometrics — the full stack without the metrics layer —, chopin-full) and endpoint in
# ENDPOINTS (/json, /plaintext)
# the `profiling` build (the release code, with symbols) runs under `valgrind --tool=callgrind`
# with instrumentation off; wrk warms it up for 1 s, then instrumentation is switched on for
# MEASURE seconds (default 4) of wrk with 4 keep-alive connections. Instructions / requests =
# user-space instructions of the server process per request (kernel work is not counted). Note
# that callgrind counts each byte of a `rep movsb` copy as one instruction, so large memcpys
# weigh more here than on the CPU.
# Writes bench/results/core-callgrind.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
invocation="$(bench_invocation bench/profile-core.sh MEASURE SERVERS ENDPOINTS CARGO_PROFILE BENCH_SMOKE)"
# The release code with symbols (see docs/performance.md); smoke mode keeps its cheap profile.
[[ "${BENCH_SMOKE:-0}" == 1 ]] || : "${CARGO_PROFILE:=profiling}"
bench_init profile-core.sh
MEASURE="${MEASURE:-4}"
# Smoke mode: one server of each kind (hyper, epoll, Chopin's stack) on one endpoint.
[[ "$BENCH_SMOKE" != 1 ]] || : "${SERVERS:=axum epoll chopin-full}" "${ENDPOINTS:=json}"
ALL_SERVERS="axum actix epoll chopin-minimal chopin-nometrics chopin-full"
SERVERS="${SERVERS:-$ALL_SERVERS}"
ENDPOINTS="${ENDPOINTS:-json plaintext}"
OUT="$(bench_out bench/results/core-callgrind.md)"

bench_require valgrind callgrind_control wrk python3 cargo
read -r -a servers <<<"$SERVERS"
packages=()
for server in "${servers[@]}"; do
    case "$server" in
        axum) packages+=(-p axum-baseline) ;;
        actix) packages+=(-p actix-baseline) ;;
        epoll) ;;
        chopin-minimal | chopin-nometrics | chopin-full)
            [[ " ${packages[*]-} " == *" chopin-bench-example "* ]] || packages+=(-p chopin-bench-example) ;;
        *) die "unknown server '$server' (known: $ALL_SERVERS)" ;;
    esac
done

bench_raw_dir core-callgrind
BUILD_CMD=""
[[ ${#packages[@]} -eq 0 ]] || bench_build "${packages[@]}"
if [[ " $SERVERS " == *" epoll "* ]]; then
    bench_build_epoll
    BUILD_CMD+="${BUILD_CMD:+; }$EPOLL_BUILD_CMD"
fi

VG_PID=""
cleanup() { bench_stop vg; VG_PID=""; }

# profile <server> <endpoint>
profile() {
    local server="$1" ep="$2" bind=127.0.0.1:3021 exe
    local -a env_args=("BIND=$bind") pin=()
    case "$server" in
        axum) exe="$(bench_exe axum-baseline)" ;;
        actix) exe="$(bench_exe actix-baseline)" ;;
        # One worker (its affinity mask holds one CPU): with a worker per CPU, the engine under
        # valgrind (which runs one thread at a time) sometimes serves nothing at all.
        epoll) exe="$(bench_exe epoll-baseline)" pin=(taskset -c 0) ;;
        chopin-*)
            exe="$(bench_exe chopin-bench-example)"
            env_args+=("CHOPIN_BENCH_STACK=${server#chopin-}" "${CHOPIN_SERVER_ENV[@]}")
            ;;
    esac
    local name="$server-$ep"
    bench_start vg "$bind" "$RAW/$name.log" env "${env_args[@]}" ${pin[@]+"${pin[@]}"} valgrind \
        --tool=callgrind --instr-atstart=no --callgrind-out-file="$RAW/$name.out" "$exe"
    VG_PID="${BENCH_PID[vg]}"
    VALGRIND_SLOW=1 bench_wait_http vg "http://$bind/$ep"
    wrk -t1 -c4 -d1s "http://$bind/$ep" >/dev/null
    callgrind_control -i on "$VG_PID" >/dev/null
    wrk -t1 -c4 -d"${MEASURE}s" "http://$bind/$ep" >"$RAW/$name.wrk"
    callgrind_control -i off "$VG_PID" >/dev/null
    callgrind_control -d "$VG_PID" >/dev/null
    cleanup
    # The dump requested above is "<file>.1"; the file written at exit holds nothing.
    mv "$RAW/$name.out.1" "$RAW/$name.callgrind"
    rm -f "$RAW/$name.out"
    local requests instructions
    requests="$(grep -o '[0-9]* requests in' "$RAW/$name.wrk" | cut -d' ' -f1)"
    instructions="$(awk '/^totals:/ {print $2}' "$RAW/$name.callgrind")"
    [[ "${requests:-0}" -gt 0 ]] || die "$name: wrk completed no request; see $RAW/$name.wrk"
    printf '%s\t%s\t%s\t%s\n' "$server" "$ep" "$requests" "$instructions" >>"$RAW/cases.tsv"
    log "$name: $((instructions / requests)) instructions per request"
}

: >"$RAW/cases.tsv"
for ep in $ENDPOINTS; do
    for server in "${servers[@]}"; do
        profile "$server" "$ep"
    done
done

# Written beside, then moved: a failed report never truncates the committed one.
python3 -B - "$RAW/cases.tsv" "$invocation" "$BUILD_CMD" "$RAW" >"$OUT.tmp" <<'PY'
import platform, subprocess, sys
cases, invocation, build, raw = sys.argv[1:5]
rows = [line.rstrip("\n").split("\t") for line in open(cases)]
per = {(s, e): int(i) / int(r) for s, e, r, i in rows}
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# Core request path: instructions per request (callgrind)\n")
print(f"Command: `{invocation}` (build: `{build}`), commit `{commit}`, {cpu}, {platform.system()} {platform.release()}. Raw output: `{raw}` (not committed).\n")
print("User-space instructions executed by the server per request, keep-alive, 4 connections; lower is better. *vs axum* is axum's count divided by the target's, so it reads like a throughput ratio (above 1.0 = cheaper than axum); *× axum instr* is the target's count divided by axum's (the issue's goal: full stack ≤ 1.4).\n")
print("| Server | `/json` instr/req | vs axum | × axum instr | `/plaintext` instr/req | vs axum | × axum instr |")
print("|---|---:|---:|---:|---:|---:|---:|")
order = ["axum", "actix", "epoll", "chopin-minimal", "chopin-nometrics", "chopin-full"]
for s in [s for s in order if any(k[0] == s for k in per)]:
    cells = []
    for e in ["json", "plaintext"]:
        v = per.get((s, e))
        base = per.get(("axum", e))
        cells += [f"{v:,.0f}" if v else "n/a", f"{base / v:.3f}" if v and base else "n/a",
                  f"{v / base:.2f}" if v and base else "n/a"]
    print(f"| `{s}` | " + " | ".join(cells) + " |")
print()
print("| Server | Endpoint | Requests measured | Instructions |")
print("|---|---|---:|---:|")
for s, e, r, i in rows:
    print(f"| `{s}` | `/{e}` | {int(r):,} | {int(i):,} |")
PY
mv "$OUT.tmp" "$OUT"
log "report: $OUT (raw output: $RAW)"
cat "$OUT"
