"""The checks of .ci/scale-out.sh, against HAProxy and three blog instances it has started.

Run by .ci/scale-out.sh (which documents what each check proves); standard library only.
Exits non-zero, saying what failed, when a check fails.
"""

import argparse
import csv
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def request(base, method, path, body=None, token=None, headers=None, timeout=10):
    """(status, parsed JSON body or None, headers); status 0 when there was no answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if body is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status, hdrs = r.read(), r.status, r.headers
    except urllib.error.HTTPError as e:
        raw, status, hdrs = e.read(), e.code, e.headers
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, OSError):
        return 0, None, {}
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, hdrs


def data(body):
    return body.get("data", body) if isinstance(body, dict) else body


def check(cond, message):
    if not cond:
        # Tokens in a failing answer are the run's own, but kept out of the CI log anyway.
        message = re.sub(r"'(access_token|refresh_token)': '[^']*'", r"'\1': '***'", message)
        sys.exit(f"scale-out: FAILED: {message}")


def tokens_of(status, body, what):
    check(status in (200, 201), f"{what} answered {status}: {body}")
    d = data(body)
    return d["access_token"], d["refresh_token"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lb", required=True)
    p.add_argument("--instance", action="append", required=True)
    p.add_argument("--kill", required=True, help="NAME=PID: killed with SIGKILL by check d")
    p.add_argument("--drain", required=True, help="NAME=PID: sent SIGTERM by check e")
    p.add_argument("--stats-socket", required=True)
    p.add_argument("--database", required=True)
    p.add_argument("--run", required=True)
    args = p.parse_args()
    lb = args.lb
    inst = dict(i.split("=", 1) for i in args.instance)
    victim, victim_pid = args.kill.split("=", 1)
    drained, drained_pid = args.drain.split("=", 1)
    run = args.run
    email = f"ada-{run}@example.com"
    password = "a scale-out password"

    # ---- a) a logout through A revokes the token on B and C ----
    print("a) logout through A is seen by B and C")
    access, refresh = tokens_of(
        *request(lb, "POST", "/api/auth/signup", {"email": email, "password": password})[:2],
        "signup through HAProxy",
    )
    for name, base in inst.items():
        status, body, _ = request(base, "GET", "/api/auth/me", token=access)
        check(status == 200, f"/me on {name} before the logout: {status} {body}")
    status, body, _ = request(inst["a"], "POST", "/api/auth/logout", {"refresh_token": refresh}, token=access)
    check(status == 204, f"logout on a: {status} {body}")
    for name in ("b", "c", "a"):
        status, body, _ = request(inst[name], "GET", "/api/auth/me", token=access)
        check(status == 401, f"the logged-out token on {name}: {status} {body} (revocation not shared?)")
    status, body, _ = request(inst["c"], "POST", "/api/auth/refresh", {"refresh_token": refresh})
    check(status == 401, f"the logged-out refresh token on c: {status} {body}")
    print("   the token and its refresh token are refused on a, b and c after the logout on a")

    # ---- b) rate limits are shared ----
    # A client address of its own (TEST-NET-3), believed because 127.0.0.1 (HAProxy, and this
    # script) is a trusted proxy: through HAProxy it is the entry before HAProxy's own.
    print("b) a login limit spent through mixed instances holds on every instance")
    limited = {"x-forwarded-for": "203.0.113.7"}
    order = [lb, inst["a"], inst["b"], inst["c"]]
    spent = 0
    for i in range(10):  # CHOPIN_RATE_LIMIT_LOGIN=10/1m
        status, body, _ = request(
            order[i % 4], "POST", "/api/auth/login", {"email": email, "password": password}, headers=limited
        )
        check(status == 200, f"login {i + 1} of 10 ({order[i % 4]}): {status} {body}")
        spent += 1
    for name, base in [("haproxy", lb)] + list(inst.items()):
        status, body, hdrs = request(
            base, "POST", "/api/auth/login", {"email": email, "password": password}, headers=limited
        )
        check(status == 429, f"login 11 on {name}: {status} {body} (rate limit not shared?)")
        check(hdrs.get("retry-after"), f"429 without Retry-After on {name}")
    status, body, _ = request(
        inst["b"], "POST", "/api/auth/login", {"email": email, "password": password},
        headers={"x-forwarded-for": "203.0.113.8"},
    )
    check(status == 200, f"another address is not limited: {status} {body}")
    print(f"   {spent} logins spread over haproxy, a, b, c; the 11th is 429 on each; another address logs in")

    # The general limiter (CHOPIN_RATE_LIMIT=300/1h: a burst of 300, then one per 12 s), for an
    # anonymous client of its own address: 300 reads spread over haproxy, a, b and c pass,
    # then each of them answers 429. Per instance (memory), each would have seen ~75.
    print("b) the general per-client limit spent through mixed instances holds on every instance")
    client = {"x-forwarded-for": "203.0.113.9"}
    statuses = []

    def spend(k):
        for i in range(k, 300, 6):
            statuses.append(request(order[i % 4], "GET", "/api/posts?limit=1", headers=client)[0])

    spenders = [threading.Thread(target=spend, args=(k,)) for k in range(6)]
    for t in spenders:
        t.start()
    for t in spenders:
        t.join()
    check(statuses.count(200) == 300, f"the 300 reads of the burst: {sorted(set(statuses))}")
    for name, base in [("haproxy", lb)] + list(inst.items()):
        status, body, _ = request(base, "GET", "/api/posts?limit=1", headers=client)
        check(status == 429, f"read 301 on {name}: {status} (rate limit not shared?)")
    print("   300 reads spread over haproxy, a, b, c; the next is 429 on each")

    # ---- c) a cache invalidation is seen by all ----
    print("c) an update through one instance is served by all three")
    access, _ = tokens_of(
        *request(lb, "POST", "/api/auth/login", {"email": email, "password": password})[:2], "login"
    )
    post = {"title": "version 1", "slug": f"cached-{run}", "body": "first", "published": True}
    status, body, _ = request(lb, "POST", "/api/posts", post, token=access)
    check(status == 201, f"create post: {status} {body}")
    pid_ = data(body)["id"]
    for _ in range(2):  # the second read is served from each instance's in-process tier
        for name, base in inst.items():
            status, body, _ = request(base, "GET", f"/api/posts/{pid_}")
            check(status == 200 and data(body)["title"] == "version 1", f"read on {name}: {status} {body}")
    updated = dict(post, title="version 2", body="second")
    status, body, _ = request(inst["b"], "PUT", f"/api/posts/{pid_}", updated, token=access)
    check(status == 200, f"update on b: {status} {body}")
    updated_at = time.monotonic()
    lag = {}
    while len(lag) < len(inst) and time.monotonic() - updated_at < 2.0:
        for name, base in inst.items():
            if name in lag:
                continue
            status, body, _ = request(base, "GET", f"/api/posts/{pid_}")
            if status == 200 and data(body)["title"] == "version 2":
                lag[name] = time.monotonic() - updated_at
        time.sleep(0.01)
    stale = sorted(set(inst) - set(lag))
    check(not stale, f"still serving version 1 two seconds after the update: {stale} (invalidation not shared?)")
    print("   version 2 served by " + ", ".join(f"{n} after {lag[n] * 1000:.0f} ms" for n in sorted(lag)))

    # ---- d) SIGKILL of one instance under write load ----
    print(f"d) SIGKILL of {victim} under write load through HAProxy")
    results, killed_at = write_load(
        lb, pid_, f"{run}-kill", lambda: os.kill(int(victim_pid), signal.SIGKILL), keep_alive=False
    )
    state = haproxy_states(args.stats_socket, inst)
    check(state.get(victim, "").startswith("DOWN"), f"HAProxy still has {victim} {state.get(victim)}: {state}")
    check(all(state[n].startswith("UP") for n in inst if n != victim), f"HAProxy states: {state}")
    summary = verify_writes(results, killed_at, args.database, f"{run}-kill")
    late = [r for r in results if not 200 <= r[1] < 300 and r[3] >= killed_at + 1.0]
    check(not late, f"{len(late)} writes failed more than 1 s after the kill: {late[:5]}")
    print(f"   {summary} (failures stored: committed by {victim}, which died before answering); HAProxy: {state}")

    # ---- e) SIGTERM (a drain) of another instance under write load ----
    # The writers keep their connections to HAProxy open, so HAProxy reuses its kept-alive
    # connections to the instances, the draining one's included: the race a drain must win.
    print(f"e) SIGTERM of {drained} under keep-alive write load through HAProxy")
    exited = {}
    watcher = threading.Thread(target=lambda: exited.update(after=wait_exit(int(drained_pid), 10.0)))

    def terminate():
        os.kill(int(drained_pid), signal.SIGTERM)
        watcher.start()

    results, termed_at = write_load(lb, pid_, f"{run}-drain", terminate, keep_alive=True)
    watcher.join()
    exited = exited.get("after")
    check(exited is not None, f"{drained} still running 10 s after SIGTERM")
    # CHOPIN_SHUTDOWN_DELAY=1s: it served on (readiness failing) for a second first.
    check(exited >= 0.9, f"{drained} exited {exited * 1000:.0f} ms after SIGTERM, before its shutdown delay")
    summary = verify_writes(results, termed_at, args.database, f"{run}-drain")
    failed = [r for r in results if not 200 <= r[1] < 300]
    check(not failed, f"{len(failed)} writes failed during the drain of {drained}: {failed[:5]}")
    state = haproxy_states(args.stats_socket, inst)
    check(state.get(drained, "").startswith("DOWN"), f"HAProxy still has {drained} {state.get(drained)}: {state}")
    print(f"   {summary}; {drained} exited {exited * 1000:.0f} ms after SIGTERM; HAProxy: {state}")

    # Through the API too (a surviving instance): the post's comment count, both checks' writes.
    status, body, _ = request(lb, "GET", f"/api/posts/{pid_}/comments?limit=1")
    total = body.get("meta", {}).get("total") if isinstance(body, dict) else None
    stored = count_comments(args.database, f"w-{run}-%")
    check(status == 200 and total == stored, f"the API counts {total} comments, the database {stored}")


def write_load(lb, post_id, tag, act, keep_alive, clients=8, before=1.5, after=3.0):
    """Anonymous comment writes by `clients` writers through HAProxy; `act()` after `before`
    seconds, stop `after` seconds later. Returns ([(slug, status, id, start, end)], acted at).

    Comments: no unique key in their table, so a write applied twice would show as two rows.
    Each writer is a client of its own address (the per-client limit is per address for
    anonymous requests), a fresh one every 100 writes: the general limit (a burst of 300 per
    address) must not turn a fast run's late writes into 429s. With `keep_alive` a writer
    keeps one connection to HAProxy (reopened only when it fails)."""
    host, port = lb.removeprefix("http://").split(":")
    results = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(k):
        conn = None
        n = 0
        while not stop.is_set():
            slug = f"w-{tag}-{k}-{n}"
            n += 1
            start = time.monotonic()
            headers = {"x-forwarded-for": f"10.{k + 1}.{n // 25000}.{(n // 100) % 250 + 1}"}
            body = {"author": f"writer {k}", "body": slug}
            if keep_alive:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                status, parsed = keep_alive_request(conn, f"/api/posts/{post_id}/comments", body, headers)
                if status == 0:
                    conn.close()
                    conn = None
            else:
                status, parsed, _ = request(lb, "POST", f"/api/posts/{post_id}/comments", body, headers=headers)
            got = data(parsed).get("id") if status == 201 and isinstance(parsed, dict) else None
            with lock:
                results.append((slug, status, got, start, time.monotonic()))
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(before)
    with lock:
        in_flight_before = len(results)
    acted_at = time.monotonic()
    act()
    time.sleep(after)
    stop.set()
    for t in threads:
        t.join(timeout=15)
    check(not any(t.is_alive() for t in threads), "a writer did not finish within 15 s")
    check(in_flight_before >= 10, f"only {in_flight_before} writes before the fault")
    return results, acted_at


def keep_alive_request(conn, path, body, headers):
    """POST on a kept-alive connection: (status, parsed JSON or None); 0 when there was no answer."""
    try:
        conn.request("POST", path, json.dumps(body).encode(), {"content-type": "application/json", **headers})
        r = conn.getresponse()
        raw = r.read()
    except (http.client.HTTPException, OSError):
        return 0, None
    try:
        return r.status, json.loads(raw) if raw else None
    except ValueError:
        return r.status, None


def verify_writes(results, acted_at, database, tag):
    """Every write answered 2xx is in the database exactly once, with the id it was answered
    with, and nothing else was written. Returns a one-line summary."""
    by_status = {}
    for r in results:
        by_status[r[1]] = by_status.get(r[1], 0) + 1
    ok = [r for r in results if 200 <= r[1] < 300]
    failed = [r for r in results if not 200 <= r[1] < 300]
    check(len(ok) >= 50, f"only {len(ok)} writes answered 2xx: {by_status}")
    out = psql(database, f"SELECT body, count(*), min(id) FROM comments WHERE body LIKE 'w-{tag}-%' GROUP BY body")
    stored = {}
    for line in out.splitlines():
        slug, count, min_id = line.split("\t")
        stored[slug] = (int(count), int(min_id))
    missing = [r for r in ok if r[0] not in stored]
    check(not missing, f"{len(missing)} writes answered 2xx are not in the database: {missing[:5]}")
    twice = [s for s, (c, _) in stored.items() if c != 1]
    check(not twice, f"comments stored more than once: {twice[:5]}")
    wrong = [r for r in ok if stored[r[0]][1] != r[2]]
    check(not wrong, f"writes answered with another id than the stored one: {wrong[:5]}")
    unknown = sorted(set(stored) - {r[0] for r in results})
    check(not unknown, f"comments nobody asked for: {unknown[:5]}")
    last_failure = max((r[4] - acted_at for r in failed), default=None)
    failed_stored = sum(1 for r in failed if r[0] in stored)
    return (
        f"{len(results)} writes: {dict(sorted(by_status.items()))}; {len(ok)} answered 2xx, all stored "
        f"exactly once; {len(failed)} failed ({failed_stored} of them stored); last failure "
        f"{'none' if last_failure is None else f'{last_failure * 1000:.0f} ms'} after the fault"
    )


def count_comments(database, pattern):
    return int(psql(database, f"SELECT count(*) FROM comments WHERE body LIKE '{pattern}'").strip())


def psql(database, query):
    return subprocess.run(
        ["psql", "-X", "-At", "-F", "\t", "-d", database, "-c", query],
        check=True, capture_output=True, text=True,
    ).stdout


def haproxy_states(stats_socket, inst):
    """HAProxy's view of each instance: UP, DOWN, ... (its stats socket's `show stat`)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(stats_socket)
    sock.sendall(b"show stat\n")
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    sock.close()
    rows = list(csv.DictReader(io.StringIO(raw.decode().lstrip("# "))))
    return {r["svname"]: r["status"] for r in rows if r["pxname"] == "chopin" and r["svname"] in inst}


def wait_exit(pid, limit):
    """Seconds until process `pid` is gone (a zombie counts as gone), or None after `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return time.monotonic() - start
        except FileNotFoundError:
            return time.monotonic() - start
        time.sleep(0.01)
    return None

if __name__ == "__main__":
    main()
