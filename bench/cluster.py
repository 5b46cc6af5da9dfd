"""Cluster-mode workloads for bench/run.py (issue 9): W10 and W11. Stdlib only; the load client
is wrk (Debian's `wrk`), the same for every side.

- W10 (`--only cluster`): requests/s and p50/p99 of 4 instances of one unchanged Node HTTP app
  behind pmi's shared socket, against Node's own `cluster` module with 4 workers (the master
  pm2 uses), wrk with keep-alive connections. Also pmi's own RSS with the 4 instances.
- W11 (`--only reload`): failed requests and p99 while `pmi reload` replaces 4 instances (one
  after the other, back to back), and while a one-instance app is cron-restarted every 3 s
  (the seed's `cron_restart`, sped up), against the quiet p99 of the same app. wrk sends
  `Connection: close` here, so that every request is a new connection: a refused or reset
  connection is a failed request, as for a client that does not retry.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

APP = """const http = require('http');
http.createServer((req, res) => res.end('ok ' + process.pid + '\\n')).listen(Number(process.env.BENCH_PORT));
"""

MASTER = """const cluster = require('cluster');
if (cluster.isPrimary) {
  for (let i = 0; i < 4; i++) cluster.fork();
} else {
  require('./app.js');
}
"""


def wrk_argv(port, secs, conns, close):
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    return argv + [f"http://127.0.0.1:{port}/"]


def wrk(port, secs, conns, close=False):
    """One wrk run; returns dict(rps, p50, p99 in ms, requests, failed)."""
    argv = wrk_argv(port, secs, conns, close)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 30).stdout
    r = parse_wrk(out)
    if not r["rps"]:
        raise RuntimeError("wrk said: " + out.strip()[-300:])
    return r


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def wait_port(port, timeout=20):
    import socket
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class PmiRun:
    """pmi (a subreaper, not PID 1) on an apps file in its own temp dir."""

    def __init__(self, pmi, yaml):
        self.dir = tempfile.mkdtemp(prefix="pmi-bench-cluster-")
        with open(os.path.join(self.dir, "app.js"), "w") as f:
            f.write(APP)
        with open(os.path.join(self.dir, "apps.yaml"), "w") as f:
            f.write(yaml)
        self.env = dict(os.environ, PMI_SOCKET=os.path.join(self.dir, "pmi.sock"))
        self.pmi = pmi
        self.proc = subprocess.Popen([pmi, "apps.yaml"], cwd=self.dir, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def up(self, n, port):
        """Waits until the app's `n` instances are online and the port answers."""
        if not (self.online(n) and wait_port(port)):
            raise RuntimeError(f"pmi's {n} instance(s) did not come up")

    def ctl(self, *args):
        return subprocess.run([self.pmi, *args], env=self.env, capture_output=True, text=True,
                              timeout=120)

    def online(self, n, timeout=20):
        import json
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.ctl("status", "--json")
            try:
                inst = json.loads(r.stdout)["instances"]
                if len(inst) == n and all(i["status"] == "online" for i in inst):
                    return True
            except (ValueError, KeyError):
                pass
            time.sleep(0.1)
        return False

    def stop(self):
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def cluster_yaml(port, instances, extra=""):
    node = shutil.which("node")
    return (f"apps:\n  - name: web\n    script: app.js\n    interpreter: {node}\n"
            f"    exec_mode: cluster_mode\n    instances: {instances}\n"
            f"    env: {{BENCH_PORT: '{port}'}}\n{extra}")


def w10(pmi, secs, log):
    """[(label, result)] for pmi and Node's cluster, plus pmi's RSS."""
    port = 18710
    out = {}
    with PmiRun(pmi, cluster_yaml(port, 4)) as run:
        run.up(4, port)
        wrk(port, 2, 32)  # warm-up
        log("W10: pmi, 4 instances on the shared socket")
        out["pmi"] = wrk(port, secs, 32)
        out["rss"] = rss_mib(run.proc.pid)
    d = tempfile.mkdtemp(prefix="node-cluster-bench-")
    for name, text in (("app.js", APP), ("master.js", MASTER)):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    p = subprocess.Popen([shutil.which("node"), "master.js"], cwd=d,
                         env=dict(os.environ, BENCH_PORT=str(port)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        if not wait_port(port):
            raise RuntimeError("node's cluster did not come up")
        time.sleep(0.5)  # all four workers listening
        wrk(port, 2, 32)
        log("W10: node cluster module, 4 workers")
        out["node"] = wrk(port, secs, 32)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait()
        shutil.rmtree(d, ignore_errors=True)
    return out


def w11(pmi, secs, log):
    port = 18711
    res = {}
    with PmiRun(pmi, cluster_yaml(port, 4)) as run:
        run.up(4, port)
        log("W11: quiet p99, 4 instances")
        res["quiet4"] = wrk(port, secs, 16, close=True)
        log("W11: pmi reload of 4 instances, back to back, under load")
        proc = subprocess.Popen(wrk_argv(port, secs, 16, True), stdout=subprocess.PIPE, text=True)
        reloads, failed_reloads = 0, 0
        end = time.monotonic() + secs - 1
        time.sleep(0.5)
        while time.monotonic() < end:
            r = run.ctl("reload", "web")
            reloads += 1
            failed_reloads += r.returncode != 0
        text = proc.communicate(timeout=secs + 30)[0]
        res["reload"] = parse_wrk(text)
        res["reload"]["reloads"] = reloads
        res["reload"]["failed_reloads"] = failed_reloads
    with PmiRun(pmi, cluster_yaml(port, 1, "    cron_restart: '*/3 * * * * *'\n")) as run:
        run.up(1, port)
        log("W11: one instance, cron restart every 3 s, under load")
        res["cron"] = wrk(port, secs, 16, close=True)
        res["cron"]["restarts"] = restarts(run)
    return res


def parse_wrk(out):
    """wrk's text output → dict(rps, p50, p99 in ms, requests, failed)."""
    def ms(label):
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return None
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    reqs = re.search(r"(\d+) requests in", out)
    failed = 0
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errs:
        failed += sum(int(x) for x in errs.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        failed += int(non2xx.group(1))
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": ms("50%"), "p99": ms("99%"),
            "requests": int(reqs.group(1)) if reqs else 0, "failed": failed}


def restarts(run):
    import json
    r = run.ctl("status", "--json")
    try:
        return sum(i.get("restarts", 0) for i in json.loads(r.stdout)["instances"])
    except (ValueError, KeyError):
        return None


def f(x, unit=""):
    return "–" if x is None else f"{x:,.2f}{unit}" if isinstance(x, float) else f"{x:,}{unit}"


def section(pmi, only, quick, log):
    """Markdown lines and target rows for the cluster workloads that `only` selects."""
    lines, targets = [], []
    if not shutil.which("wrk") or not shutil.which("node"):
        return [f"### 10–11. Cluster mode: not run (needs wrk and node on PATH)", ""], targets
    secs = 8 if quick else 30
    if "cluster" in only:
        try:
            r = w10(pmi, secs, log)
            ratio = r["pmi"]["rps"] / r["node"]["rps"] if r["node"]["rps"] else None
            lines += [f"### 10. Cluster: 4 instances of one Node HTTP app, wrk -t2 -c32 "
                      f"-d{secs}s, keep-alive (higher requests/s is better)", "",
                      "| setup | requests/s | p50 ms | p99 ms | failed | vs node cluster |",
                      "|---|---:|---:|---:|---:|---:|"]
            for label, key in (("pmi shared socket (preload)", "pmi"),
                               ("node `cluster` module (pm2's master)", "node")):
                x = r[key]
                lines.append(f"| {label} | **{x['rps']:,.0f}** | {f(x['p50'])} | {f(x['p99'])} "
                             f"| {x['failed']} | {x['rps'] / r['node']['rps']:.2f}× |")
            lines += ["", f"pmi's own RSS with the 4 cluster instances: **{f(r['rss'], ' MiB')}**", ""]
            targets.append(("W10 requests/s vs Node's cluster, 4 instances (≥ 1.0×)",
                            f"{ratio:.2f}×" if ratio else "–",
                            "ok" if ratio and ratio >= 1.0 else "MISSED"))
            targets.append(("pmi's RSS with 4 cluster instances (≤ 3 MiB)", f(r["rss"], " MiB"),
                            "ok" if r["rss"] and r["rss"] <= 3 else "MISSED"))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            lines += [f"### 10. Cluster: failed: {e}", ""]
    if "reload" in only:
        try:
            r = w11(pmi, secs, log)
            q = r["quiet4"]
            lines += [f"### 11. Reload and restart under load, wrk -t2 -c16 -d{secs}s, "
                      "`Connection: close` (every request a new connection)", "",
                      "| while | requests | failed | p50 ms | p99 ms | p99 vs quiet | |",
                      "|---|---:|---:|---:|---:|---:|---|"]
            rows = [("quiet, 4 instances", q, ""),
                    ("`pmi reload` of 4 instances, back to back", r["reload"],
                     f"{r['reload']['reloads']} reloads, {r['reload']['failed_reloads']} failed"),
                    ("1 instance, cron restart every 3 s", r["cron"],
                     f"{r['cron']['restarts']} restarts")]
            for label, x, note in rows:
                rel = x["p99"] / q["p99"] if x["p99"] and q["p99"] else None
                lines.append(f"| {label} | {x['requests']:,} | **{x['failed']}** | {f(x['p50'])} "
                             f"| {f(x['p99'])} | {f(rel)}× | {note} |")
            lines.append("")
            worst = max(r["reload"]["failed"], r["cron"]["failed"])
            targets.append(("W11 failed requests during reloads and cron restarts (0)", str(worst),
                            "ok" if worst == 0 else "MISSED"))
            p99 = max(r["reload"]["p99"] or 0, r["cron"]["p99"] or 0)
            rel = p99 / q["p99"] if q["p99"] else None
            targets.append(("W11 p99 during reloads within 2× of quiet", f(rel, "×"),
                            "ok" if rel and rel <= 2 else "MISSED"))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            lines += [f"### 11. Reload under load: failed: {e}", ""]
    return lines, targets
