#!/usr/bin/env bash
# Server-side cost of one request on the core path, counted in instructions with valgrind's
# callgrind: the deterministic complement to bench/run.sh, unaffected by other load on a shared
# machine (wrk figures on 2 shared cores swing by tens of percent; instruction counts do not).
#
#   bash bench/profile-core.sh
#
# For each server (axum, actix, chopin-minimal, chopin-full) and endpoint (/json, /plaintext)
# the `profiling` build (the release code, with symbols) runs under `valgrind --tool=callgrind`
# with instrumentation off; wrk warms it up for 1 s, then instrumentation is switched on for
# MEASURE seconds (default 4) of wrk with 4 keep-alive connections. Instructions / requests =
# user-space instructions of the server process per request (kernel work is not counted). Note
# that callgrind counts each byte of a `rep movsb` copy as one instruction, so large memcpys
# weigh more here than on the CPU.
# Writes bench/results/core-callgrind.md.
set -euo pipefail

invocation=""
[[ -z "${MEASURE+x}" ]] || invocation+="MEASURE=$MEASURE "
invocation+="bash bench/profile-core.sh"
MEASURE="${MEASURE:-4}"

die() {
    echo "bench/profile-core.sh: error: $*" >&2
    exit 1
}
log() { echo "==> $*" >&2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
for tool in valgrind callgrind_control wrk python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y valgrind wrk)"
done

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="bench/results/raw/core-callgrind-$RUN_ID"
mkdir -p "$RAW"
build_cmd=(cargo build --profile profiling -p chopin-bench-example -p axum-baseline -p actix-baseline)
log "building: ${build_cmd[*]}"
"${build_cmd[@]}" --message-format=json-render-diagnostics >"$RAW/cargo-build.json" || die "cargo build failed"
declare -A exe_of=()
while IFS=$'\t' read -r name path; do
    exe_of["$name"]="$path"
done < <(python3 -B bench/report.py executables <"$RAW/cargo-build.json")

VG_PID=""
cleanup() {
    [[ -z "$VG_PID" ]] && return 0
    kill -TERM "$VG_PID" 2>/dev/null || true
    wait "$VG_PID" 2>/dev/null || true
    VG_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# profile <server> <endpoint>
profile() {
    local server="$1" ep="$2" bind=127.0.0.1:3021 exe
    local -a env_args=("BIND=$bind")
    case "$server" in
        axum) exe="${exe_of[axum-baseline]}" ;;
        actix) exe="${exe_of[actix-baseline]}" ;;
        chopin-*)
            exe="${exe_of[chopin-bench-example]}"
            # The bench example mounts an authenticated route, so production needs a key; this
            # one is the harness's public benchmark key (bench/run.sh), not a secret.
            env_args+=("CHOPIN_BENCH_STACK=${server#chopin-}" CHOPIN_ENV=production CHOPIN_LOG=warn
                CHOPIN_JWT_SECRET=chopin-benchmark-key-not-secret-0123456789)
            ;;
    esac
    local name="$server-$ep"
    port_open "${bind%:*}" "${bind##*:}" && die "something is already listening on $bind"
    env "${env_args[@]}" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$RAW/$name.out" "$exe" >"$RAW/$name.log" 2>&1 &
    VG_PID=$!
    for _ in $(seq 600); do
        port_open "${bind%:*}" "${bind##*:}" && break
        kill -0 "$VG_PID" 2>/dev/null || die "server exited; see $RAW/$name.log"
        sleep 0.1
    done
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
    printf '%s\t%s\t%s\t%s\n' "$server" "$ep" "$requests" "$instructions" >>"$RAW/cases.tsv"
    log "$name: $((instructions / requests)) instructions per request"
}

: >"$RAW/cases.tsv"
for ep in json plaintext; do
    for server in axum actix chopin-minimal chopin-full; do
        profile "$server" "$ep"
    done
done

python3 -B - "$RAW/cases.tsv" "$invocation" "${build_cmd[*]}" "$RAW" >bench/results/core-callgrind.md <<'PY'
import platform, subprocess, sys
cases, invocation, build, raw = sys.argv[1:5]
rows = [line.rstrip("\n").split("\t") for line in open(cases)]
per = {(s, e): int(i) / int(r) for s, e, r, i in rows}
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# Core request path: instructions per request (callgrind)\n")
print(f"Command: `{invocation}` (build: `{build}`), commit `{commit}`, {cpu}, {platform.system()} {platform.release()}. Raw output: `{raw}` (not committed).\n")
print("User-space instructions executed by the server per request, keep-alive, 4 connections; lower is better. Ratios are axum's count divided by the target's, so they read like throughput ratios (above 1.0 = cheaper than axum).\n")
print("| Server | `/json` instr/req | vs axum | `/plaintext` instr/req | vs axum |")
print("|---|---:|---:|---:|---:|")
for s in ["axum", "actix", "chopin-minimal", "chopin-full"]:
    cells = []
    for e in ["json", "plaintext"]:
        v = per.get((s, e))
        base = per.get(("axum", e))
        cells += [f"{v:,.0f}" if v else "n/a", f"{base / v:.3f}" if v and base else "n/a"]
    print(f"| `{s}` | " + " | ".join(cells) + " |")
print()
print("| Server | Endpoint | Requests measured | Instructions |")
print("|---|---|---:|---:|")
for s, e, r, i in rows:
    print(f"| `{s}` | `/{e}` | {int(r):,} | {int(i):,} |")
PY
log "report: bench/results/core-callgrind.md (raw output: $RAW)"
