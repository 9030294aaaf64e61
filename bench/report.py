#!/usr/bin/env python3
"""Helpers for bench/run.sh (Python 3 standard library only).

Subcommands:

  executables   read `cargo build --message-format=json` on stdin and print
                "<binary name>\t<absolute path>" for every executable built.
  render        parse the raw wrk outputs of one run and write the Markdown
                report (medians, per-round figures, ratios, machine info).

Raw files are named `r<round>-<target>-<endpoint>.txt` inside the run's raw
directory (see run.sh); `<endpoint>` is the URL path without its leading `/`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

# Ratios of medians shown in the report: (numerator, denominator).
RATIOS = [
    ("chopin-full", "axum"),
    ("chopin-minimal", "axum"),
    ("chopin-minimal", "actix"),
    ("chopin-full", "actix"),
    ("chopin-full-percore", "axum"),
    ("chopin-minimal-percore", "axum"),
    ("chopin-minimal-percore", "actix"),
    ("chopin-full-percore", "chopin-full"),
    ("actix", "axum"),
    ("chopin-full", "epoll"),
    ("chopin-minimal", "epoll"),
    ("chopin-full-percore", "epoll"),
    ("chopin-minimal-percore", "epoll"),
    ("axum", "epoll"),
    ("actix", "epoll"),
]

# What every target must answer, per endpoint: (content-type prefix, exact body).
EXPECTED = {
    "json": ("application/json", '{"message":"Hello, World!"}'),
    "plaintext": ("text/plain", "Hello, World!"),
    # `/json` behind AuthUser (HS256 verification on every request); Chopin targets only.
    "json_auth": ("application/json", '{"message":"Hello, World!"}'),
}

# Endpoints only Chopin serves: the baselines are not measured on them.
CHOPIN_ONLY = {"json_auth"}

# CPU busy share (%, all CPUs, sampled for 1 s before the run) above which the
# report warns that something else was running.
BUSY_PERCENT = 10

# Server CPU share during a measurement below which the figure is flagged: the
# server (or wrk) did not get its whole core, usually because of other load.
STARVED_CPU = 0.90

# Spread (max - min) / median above which a row is flagged as noisy.
NOISY_SPREAD = 0.05

RAW_NAME = re.compile(r"^r(?P<round>\d+)-(?P<target>.+)-(?P<endpoint>[^-]+)\.txt$")
RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)\s*$", re.M)
TOTAL = re.compile(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", re.M)
PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$", re.M)
SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
SERVER_CPU = re.compile(r"^# harness: server_cpu=([0-9.]+)", re.M)

TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


class ParseError(Exception):
    """A wrk output file did not contain what we need."""


def parse_wrk(text: str, source: str) -> dict:
    """Extract req/s, latency percentiles (µs) and error counts from wrk output."""
    m = RPS.search(text)
    if not m:
        raise ParseError(f"{source}: no 'Requests/sec:' line (did wrk fail?)")
    result = {
        "rps": float(m.group(1)),
        "latency_us": {
            int(p): float(v) * TIME_UNITS_US[u] for p, v, u in PERCENTILE.findall(text)
        },
        "requests": None,
        "socket_errors": 0,
        "non_2xx": 0,
        "server_cpu": None,
    }
    if t := TOTAL.search(text):
        result["requests"] = int(t.group(1))
    if s := SOCKET_ERRORS.search(text):
        result["socket_errors"] = sum(int(x) for x in s.groups())
    if n := NON_2XX.search(text):
        result["non_2xx"] = int(n.group(1))
    if c := SERVER_CPU.search(text):
        result["server_cpu"] = float(c.group(1))
    return result


def load_runs(raw_dir: Path) -> dict:
    """Return {(target, endpoint): {round: parsed}} for every raw file."""
    runs: dict = {}
    for path in sorted(raw_dir.glob("r*-*.txt")):
        m = RAW_NAME.match(path.name)
        if not m:
            continue
        key = (m.group("target"), m.group("endpoint"))
        parsed = parse_wrk(path.read_text(errors="replace"), str(path))
        runs.setdefault(key, {})[int(m.group("round"))] = parsed
    return runs


def check_probe(raw_dir: Path, target: str, endpoint: str) -> str | None:
    """Compare the sample response saved by run.sh with EXPECTED; return a warning."""
    path = raw_dir / f"probe-{target}-{endpoint}.txt"
    if endpoint not in EXPECTED or not path.exists():
        return None
    raw = path.read_bytes().decode("utf-8", errors="replace")
    head, _, body = raw.partition("\r\n\r\n")
    headers = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks, rest = [], body
        while rest:
            size_line, _, rest = rest.partition("\r\n")
            size = int(size_line.split(";")[0] or "0", 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            rest = rest[size + 2 :]
        body = "".join(chunks)
    want_type, want_body = EXPECTED[endpoint]
    problems = []
    if not headers.get("content-type", "").startswith(want_type):
        problems.append(f"content-type `{headers.get('content-type', '(none)')}`")
    if body.strip() != want_body:
        problems.append(f"body `{body.strip()[:80]}`")
    if problems:
        return (
            f"`{target}` /{endpoint}: response differs from the baselines' "
            f"({', '.join(problems)}; expected `{want_type}` / `{want_body}`)."
        )
    return None


# --------------------------------------------------------------------------
# machine description


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cmd(*argv: str) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _first_line(*argv: str) -> str | None:
    """First output line of a command, whatever its exit status (wrk exits 1 on --version)."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (p.stdout or p.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def machine_info() -> list[tuple[str, str]]:
    """Key facts about the box the numbers came from."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    logical = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    governors = sorted(
        {
            g
            for g in (
                _read(f"/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_governor")
                for i in range(logical or 0)
            )
            if g
        }
    )
    wrk = _first_line("wrk", "--version")
    wrk = re.sub(r"\s+Copyright.*$", "", wrk) if wrk else "unknown"
    cores = f"{logical} logical CPU(s)"
    if usable is not None and usable != logical:
        cores += f", {usable} usable by this process"
    return [
        ("CPU", models[0] if models else platform.processor() or "unknown"),
        ("Cores", cores),
        ("Kernel", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("rustc", _cmd("rustc", "--version") or "unknown"),
        ("wrk", wrk),
        ("CPU frequency governor", ", ".join(governors) or "not exposed"),
        ("Git commit", _cmd("git", "rev-parse", "--short", "HEAD") or "none"),
        (
            "Date",
            dt.datetime.now(dt.timezone.utc)
            .replace(microsecond=0)
            .isoformat()
            .replace("+00:00", "Z"),
        ),
    ]


# --------------------------------------------------------------------------
# formatting


def fmt_rps(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def fmt_us(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    return f"{v:.0f} µs"


def fmt_ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den == 0:
        return "n/a"
    return f"{num / den:.3f}"


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def render(args: argparse.Namespace) -> str:
    raw_dir = Path(args.raw_dir)
    targets = args.targets.split()
    endpoints = [e.lstrip("/") for e in args.endpoints.split()]
    runs = load_runs(raw_dir)
    rounds = sorted({r for per in runs.values() for r in per}) or list(
        range(1, args.rounds + 1)
    )

    medians: dict = {}
    per_cpu: dict = {}
    warnings: list[str] = []
    def measured(t: str, ep: str) -> bool:
        return ep not in CHOPIN_ONLY or t.startswith("chopin")

    for t in targets:
        for ep in endpoints:
            if not measured(t, ep):
                continue
            if msg := check_probe(raw_dir, t, ep):
                warnings.append(msg)
    if args.busy is not None and args.busy > BUSY_PERCENT:
        warnings.append(
            f"{args.busy}% of CPU time was busy with other work just before the run: "
            "absolute figures are likely depressed and noisy."
        )
    out: list[str] = []
    w = out.append

    w("# Chopin HTTP benchmark — latest run" + ("" if args.mode == "single" else ", both CPUs"))
    w("")
    if args.mode == "single":
        w(
            "Mode `single`: each server pinned to one CPU, wrk on the other: "
            "requests per second **per core**."
        )
    else:
        w(
            "Mode `both`: each server on every CPU, wrk on the same CPUs beside it "
            "(Server CPU is then a share of one CPU and can exceed 100%)."
        )
    w("")
    w(
        "Generated by `bench/run.sh` (see `bench/README.md` for method and caveats). "
        "Higher req/s is better; compare **ratios**, not absolute numbers, across machines."
    )
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    busy = "unknown" if args.busy is None else f"{args.busy}%"
    extra = [
        ("Load average at start (1/5/15 min)", args.loadavg or "unknown"),
        ("CPU busy with other work just before the run (1 s sample)", busy),
    ]
    for k, v in machine_info() + extra:
        w("| {} | {} |".format(k, v.replace("|", "\\|")))
    w("")
    w("## Command")
    w("")
    w("```sh")
    w(args.invocation)
    w("```")
    w("")
    w("Which expands to:")
    w("")
    w("```sh")
    w(f"# build\n{args.build_command}")
    w("# per target, per round (targets rotated each round; server killed after each target)")
    w(f"{args.server_command}")
    for ep in endpoints:
        w(f"{args.wrk_command} http://$BIND/{ep}")
    w("```")
    w("")
    w(
        f"Rounds: {args.rounds}; duration per measurement: {args.duration}s; "
        f"warm-up per endpoint: {args.warmup}s (discarded). Raw wrk output: `{raw_dir}` "
        "(git-ignored, local only)."
    )
    w("")

    for ep in endpoints:
        axum_med = None
        rows = []
        for t in targets:
            if not measured(t, ep):
                continue
            per = runs.get((t, ep), {})
            rps = [per[r]["rps"] for r in rounds if r in per]
            med = median_or_none(rps)
            medians[(t, ep)] = med
            if t == "axum":
                axum_med = med
            p50 = median_or_none(
                [per[r]["latency_us"][50] for r in per if 50 in per[r]["latency_us"]]
            )
            p99 = median_or_none(
                [per[r]["latency_us"][99] for r in per if 99 in per[r]["latency_us"]]
            )
            cpu = median_or_none(
                [per[r]["server_cpu"] for r in per if per[r]["server_cpu"] is not None]
            )
            # Requests per second of server CPU: robust to CPU stolen by other work, since the
            # server is pinned to one CPU and is the bottleneck.
            eff = median_or_none(
                [
                    per[r]["rps"] / per[r]["server_cpu"]
                    for r in rounds
                    if r in per and per[r]["server_cpu"]
                ]
            )
            per_cpu[(t, ep)] = eff
            spread = (max(rps) - min(rps)) / med if len(rps) > 1 and med else None
            if not per:
                warnings.append(f"`{t}` /{ep}: no results found.")
            elif len(per) != len(rounds):
                warnings.append(
                    f"`{t}` /{ep}: {len(per)} of {len(rounds)} rounds present."
                )
            if spread is not None and spread > NOISY_SPREAD:
                warnings.append(
                    f"`{t}` /{ep}: round-to-round spread {spread:.1%} "
                    f"(> {NOISY_SPREAD:.0%}); the machine was noisy, consider more rounds."
                )
            # With the server on every CPU and wrk beside it, nobody gets a whole CPU.
            starved = [
                f"R{r} {res['server_cpu']:.0%}"
                for r, res in sorted(per.items())
                if args.mode == "single"
                and res["server_cpu"] is not None
                and res["server_cpu"] < STARVED_CPU
            ]
            if starved:
                warnings.append(
                    f"`{t}` /{ep}: the server got less than {STARVED_CPU:.0%} of its CPU "
                    f"({', '.join(starved)}); something else competed for the CPUs, so "
                    "those rounds are depressed."
                )
            for r, res in sorted(per.items()):
                if res["socket_errors"] or res["non_2xx"]:
                    warnings.append(
                        f"`{t}` /{ep} round {r}: {res['non_2xx']} non-2xx/3xx responses, "
                        f"{res['socket_errors']} socket errors — figure is suspect."
                    )
            rows.append((t, med, spread, cpu, eff, p50, p99, per))

        w(f"## `GET /{ep}`")
        w("")
        header = ["Target", "Median req/s", "vs axum", "Spread", "Server CPU", "Req/CPU-s"]
        header += ["p50 lat.", "p99 lat."]
        header += [f"R{r}" for r in rounds]
        w("| " + " | ".join(header) + " |")
        w("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for t, med, spread, cpu, eff, p50, p99, per in rows:
            cells = [
                f"`{t}`",
                f"**{fmt_rps(med)}**",
                fmt_ratio(med, axum_med) if "axum" in targets else "n/a",
                "—" if spread is None else f"{spread:.1%}",
                "—" if cpu is None else f"{cpu:.0%}",
                fmt_rps(eff),
                fmt_us(p50),
                fmt_us(p99),
            ]
            cells += [fmt_rps(per[r]["rps"]) if r in per else "—" for r in rounds]
            w("| " + " | ".join(cells) + " |")
        w("")

    w("## Ratios of medians")
    w("")
    w("| Ratio | " + " | ".join(f"`/{ep}`" for ep in endpoints) + " |")
    w("|---|" + "|".join(["---:"] * len(endpoints)) + "|")
    ratios = [(n, d) for n, d in RATIOS if n in targets and d in targets]
    for num, den in ratios:
        cells = [fmt_ratio(medians.get((num, ep)), medians.get((den, ep))) for ep in endpoints]
        w(f"| {num} / {den} | " + " | ".join(cells) + " |")
    w("")
    w(
        "1.000 means parity; 0.950 means 5% fewer requests per second than the "
        "baseline. Only pairs whose both sides were in `TARGETS` are listed."
    )
    w("")
    w("## Ratios of requests per server CPU-second")
    w("")
    w(
        "Each round's req/s divided by the share of its CPU the (pinned) server actually got, "
        "then the median: the same ratios with CPU stolen by other work on a shared machine "
        "factored out. Prefer these when the warnings below report starved rounds "
        "(in mode `both`, where wrk shares the server's CPUs, they measure CPU cost per request)."
    )
    w("")
    w("| Ratio | " + " | ".join(f"`/{ep}`" for ep in endpoints) + " |")
    w("|---|" + "|".join(["---:"] * len(endpoints)) + "|")
    for num, den in ratios:
        cells = [fmt_ratio(per_cpu.get((num, ep)), per_cpu.get((den, ep))) for ep in endpoints]
        w(f"| {num} / {den} | " + " | ".join(cells) + " |")
    w("")
    if "json_auth" in endpoints and "json" in endpoints:
        w("## Authenticated vs plain, same target, same run")
        w("")
        w("| Target | `/json_auth` / `/json`, req/s | per server CPU-second |")
        w("|---|---:|---:|")
        for t in targets:
            if t.startswith("chopin"):
                by_rps = fmt_ratio(medians.get((t, "json_auth")), medians.get((t, "json")))
                by_cpu = fmt_ratio(per_cpu.get((t, "json_auth")), per_cpu.get((t, "json")))
                w(f"| `{t}` | {by_rps} | {by_cpu} |")
        w("")
        w("Goal: ≥ 0.85 (HS256 verification, claim checks and the revocation lookup per request).")
        w("")

    for line in filter(None, args.skipped.split("\n")):
        warnings.append(f"skipped: {line}")
    w("## Warnings")
    w("")
    if warnings:
        for msg in warnings:
            w(f"- {msg}")
    else:
        w("None: every measurement completed without socket errors or non-2xx responses.")
    w("")
    return "\n".join(out)


def cmd_render(args: argparse.Namespace) -> int:
    try:
        text = render(args)
    except ParseError as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 1
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


def cmd_executables(_args: argparse.Namespace) -> int:
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            print(f"{msg['target']['name']}\t{msg['executable']}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    ex = sub.add_parser("executables", help="list executables from cargo JSON on stdin")
    ex.set_defaults(func=cmd_executables)

    r = sub.add_parser("render", help="write the Markdown report for one run")
    r.add_argument("--raw-dir", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--targets", required=True, help="space-separated, in display order")
    r.add_argument("--endpoints", default="json plaintext")
    r.add_argument("--rounds", type=int, required=True)
    r.add_argument("--duration", required=True)
    r.add_argument("--warmup", default="0")
    r.add_argument("--loadavg", default="", help="contents of /proc/loadavg at start")
    r.add_argument("--busy", type=int, default=None, help="CPU busy %% before the run")
    r.add_argument("--invocation", required=True, help="how run.sh was invoked")
    r.add_argument("--build-command", required=True)
    r.add_argument("--server-command", required=True)
    r.add_argument("--wrk-command", required=True, help="wrk command without the URL")
    r.add_argument("--mode", choices=["single", "both"], default="single")
    r.add_argument("--skipped", default="", help="targets skipped, one per line, with why")
    r.set_defaults(func=cmd_render)

    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
