#!/usr/bin/env python3
"""Soak: hold one pmi under mixed load for N minutes and fail if it grows.

    python3 bench/soak.py [--minutes 3] [--pmi PATH] [--testkit PATH]

Load, all at once, on loopback and in a temp dir only:
  - crash-restarting apps (exit 1 after 300 ms, restarted after 100 ms, forever);
  - orphan storms (an app that leaves 50 orphans to pmi, then exits and is restarted);
  - log floods (2 MB of lines per run, to pmi's stdout and to a rotating out_file);
  - steady apps (4 instances that sleep);
  - control clients (`pmi status`, `status --json`, `health`, `logs --lines 50`);
  - HTTP clients (/livez, /readyz, /metrics, /status) while 40 idle connections are re-opened.

Every few seconds it samples pmi's fd count and RSS (from /proc), the restarts so far, the
orphans reaped, and the longest restart gap seen (a crashed instance's exit → its next start,
from `status --json`: `started_at - last_exit.at`). It prints a table and exits 1 when
  - the fd count rises more than --fd-slack above its highest value during warm-up (the first
    fifth of the run, at least 2 samples),
  - RSS rises more than --rss-growth percent (median of the last third of the samples against
    the median of the warm-up),
  - any probe or control request failed, or pmi died.
Stdlib only. Everything it starts is killed at the end (and on ^C).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def find_bin(name, given):
    if given:
        return os.path.abspath(given)
    for d in ("target/x86_64-unknown-linux-musl/release", "target/release", "target/debug"):
        p = os.path.join(ROOT, d, name)
        if os.access(p, os.X_OK):
            return p
    sys.exit(f"no {name} binary under target/ (cargo build --release --bins), or pass --{name}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apps_yaml(tk, logdir):
    def app(name, args, **extra):
        lines = [f"  - name: {name}", f"    script: {tk}", f"    args: {json.dumps(args)}"]
        lines += [f"    {k}: {json.dumps(v)}" for k, v in extra.items()]
        return "\n".join(lines)

    forever = {"autorestart": True, "max_restarts": 100000000, "min_uptime": 100}
    return "apps:\n" + "\n".join([
        app("crasher", ["exit-after", "300", "1"], restart_delay=100, **forever),
        app("orphaner", ["orphans", "50"], restart_delay=300, **forever),
        app("flood", ["write", "2000000", "200"], restart_delay=200,
            out_file=os.path.join(logdir, "flood.log"), **forever),
        app("steady", ["sleep"], instances=4),
    ]) + "\n"


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {}
        self.fail = {}
        self.errors = []
        self.gap_ms = 0
        self.restarts = 0
        self.orphans = 0

    def count(self, what, good, why=""):
        with self.lock:
            d = self.ok if good else self.fail
            d[what] = d.get(what, 0) + 1
            if not good and len(self.errors) < 20:
                self.errors.append(f"{what}: {why}")

    def take_gap(self):
        with self.lock:
            g, self.gap_ms = self.gap_ms, 0
            return g


def control_loop(pmi, env, c, stop):
    cmds = [["status"], ["status", "--json"], ["health"], ["logs", "--lines", "50"]]
    i = 0
    while not stop.is_set():
        cmd = cmds[i % len(cmds)]
        i += 1
        try:
            r = subprocess.run([pmi] + cmd, env=env, capture_output=True, timeout=10)
            good = r.returncode == 0
            c.count("ctl " + cmd[0], good, r.stderr.decode(errors="replace").strip()[:200])
            if good and cmd == ["status", "--json"]:
                doc = json.loads(r.stdout)
                with c.lock:
                    c.restarts = sum(x["restarts"] for x in doc["instances"])
                    c.orphans = doc["pmi"]["reaped_orphans"]
                    for x in doc["instances"]:
                        le = x.get("last_exit")
                        if x["name"] == "crasher" and le and x.get("started_at"):
                            gap = x["started_at"] - le["at"]
                            if gap > 0:
                                c.gap_ms = max(c.gap_ms, gap)
        except Exception as e:  # a timeout or a broken answer is a failure, counted
            c.count("ctl " + cmd[0], False, repr(e))
        stop.wait(0.15)


def http_loop(port, c, stop):
    want = {"/livez": {200, 503}, "/readyz": {200, 503}, "/metrics": {200}, "/status": {200}}
    paths = list(want)
    i = 0
    while not stop.is_set():
        p = paths[i % len(paths)]
        i += 1
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=2) as r:
                r.read()
                c.count("http " + p, r.status in want[p], str(r.status))
        except urllib.error.HTTPError as e:
            # /livez is 503 only if an app is errored: none may be here.
            c.count("http " + p, p == "/readyz" and e.code == 503, f"HTTP {e.code}")
        except Exception as e:
            c.count("http " + p, False, repr(e))
        stop.wait(0.1)


def idle_loop(port, stop):
    held = []
    while not stop.is_set():
        alive = []
        for s in held:
            try:
                if s.recv(64, socket.MSG_DONTWAIT) == b"":
                    s.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            alive.append(s)
        held = alive
        while len(held) < 40:
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        stop.wait(0.05)
    for s in held:
        s.close()


def sample(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return fds, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--pmi")
    ap.add_argument("--testkit")
    ap.add_argument("--fd-slack", type=int, default=8)
    ap.add_argument("--rss-growth", type=float, default=25.0, help="percent")
    a = ap.parse_args()
    pmi = find_bin("pmi", a.pmi)
    tk = find_bin("pmi-testkit", a.testkit)
    d = tempfile.mkdtemp(prefix="pmi-soak-")
    port = free_port()
    env = dict(os.environ, PMI_SOCKET=os.path.join(d, "pmi.sock"))
    with open(os.path.join(d, "apps.yaml"), "w") as f:
        f.write(apps_yaml(tk, d))
    err = open(os.path.join(d, "pmi.stderr"), "wb")
    proc = subprocess.Popen([pmi, "--http", f"127.0.0.1:{port}", os.path.join(d, "apps.yaml")],
                            env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=d,
                            start_new_session=True)
    stop = threading.Event()
    c = Counters()
    threads = []
    rows = []
    died = None
    try:
        deadline = time.time() + 20
        while subprocess.run([pmi, "health"], env=env, capture_output=True).returncode != 0:
            if time.time() > deadline or proc.poll() is not None:
                sys.exit("pmi did not come up; see " + err.name)
            time.sleep(0.1)
        for fn, args in [(control_loop, (pmi, env, c, stop)), (http_loop, (port, c, stop)),
                         (idle_loop, (port, stop))]:
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            threads.append(t)
        start = time.time()
        end = start + a.minutes * 60
        print(f"{'t(s)':>6} {'fds':>5} {'rss(KiB)':>9} {'restarts':>9} {'orphans':>8} "
              f"{'gap(ms)':>8} {'ok':>6} {'failed':>6}", flush=True)
        while time.time() < end:
            stop.wait(a.interval)
            if proc.poll() is not None:
                died = f"pmi exited with {proc.returncode}"
                break
            fds, rss = sample(proc.pid)
            with c.lock:
                ok, bad = sum(c.ok.values()), sum(c.fail.values())
                restarts, orphans = c.restarts, c.orphans
            gap = c.take_gap()
            rows.append((time.time() - start, fds, rss))
            print(f"{time.time() - start:6.0f} {fds:5} {rss:9} {restarts:9} {orphans:8} "
                  f"{gap:8} {ok:6} {bad:6}", flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err.close()

    problems = []
    if died:
        problems.append(died)
    warm = max(2, len(rows) // 5)
    if len(rows) > warm + 2:
        # The fd count swings with the 32 HTTP slots the idle clients hold: compare with the
        # highest count of the warm-up; RSS with the warm-up's median.
        base_fd = max(r[1] for r in rows[: warm + 1])
        base_rss = statistics.median(r[2] for r in rows[1 : warm + 1])
        top_fd = max(r[1] for r in rows[warm:])
        if top_fd > base_fd + a.fd_slack:
            problems.append(f"fd count grew from {base_fd} to {top_fd} (slack {a.fd_slack})")
        late = statistics.median(r[2] for r in rows[-max(1, len(rows) // 3):])
        growth = (late - base_rss) * 100.0 / max(base_rss, 1)
        print(f"after warm-up: fds {base_fd} → max {top_fd}; RSS {base_rss:.0f} KiB → {late:.0f} KiB "
              f"({growth:+.1f}%)")
        if growth > a.rss_growth:
            problems.append(f"RSS grew {growth:.1f}% (limit {a.rss_growth}%)")
    else:
        problems.append("too few samples to judge growth (use a longer --minutes)")
    with c.lock:
        print("requests ok:", dict(sorted(c.ok.items())))
        print("requests failed:", dict(sorted(c.fail.items())) or "none")
        if c.fail:
            problems.append(f"{sum(c.fail.values())} requests failed, e.g. " + "; ".join(c.errors[:5]))
    if problems:
        print("SOAK FAILED:\n  " + "\n  ".join(problems) + f"\n  (kept {d})")
        return 1
    shutil.rmtree(d, ignore_errors=True)
    print("soak passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
