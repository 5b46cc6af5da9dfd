"""Workload `checks` (W12–W14) for bench/run.py: what health checks cost pmi.

- W12 idle: 10 idle apps, each with a health check that is not due (interval 24 h): pmi's
  wake-ups over the idle window (voluntary context switches of pmi's one thread); target 0.
- W13 wake-ups per check: the same 10 apps plus one with a check every 1 s (tcp, http, exec):
  pmi's voluntary switches divided by the checks it ran in the window.
- W14 CPU per 1000 checks: 10 apps, each checked every 100 ms (exec `sh -c 'echo x >> F'`, and
  http GET to a local server), pmi's own CPU (utime+stime) and its children's (the exec checks'
  processes), per 1000 checks; beside Docker's HEALTHCHECK running the same command in a
  `FROM scratch` busybox container (dockerd + containerd + the shim, and their children).

Called from run.py's main with run.py's module (`R`) for its process helpers.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

IDLE_APPS = 10


def proc_cpu_ms(pid):
    """(self utime+stime, children cutime+cstime) in ms."""
    hz = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    x = s[s.rfind(")") + 2:].split()
    return ((int(x[11]) + int(x[12])) * 1000 / hz, (int(x[13]) + int(x[14])) * 1000 / hz)


def apps_yaml(helper, checked, check, interval):
    """IDLE_APPS idle apps; the first `checked` of them carry `check` every `interval`."""
    lines = ["apps:"]
    for i in range(IDLE_APPS):
        lines += [f"  - name: idle{i}", f"    script: {helper}", "    interpreter: none",
                  "    args: [idle]"]
        if i < checked:
            lines.append(f"    health: {{{check}, interval: {interval}, timeout: 2s, retries: 1000}}")
    return "\n".join(lines) + "\n"


class PmiRun:
    """pmi with an apps file in a temp dir; `checks()` sums check_runs from status --json."""

    def __init__(self, R, pmi, yaml):
        self.R, self.pmi = R, pmi
        self.tmp = tempfile.mkdtemp(prefix="pmi-bench-checks-")
        path = os.path.join(self.tmp, "apps.yaml")
        with open(path, "w") as f:
            f.write(yaml)
        self.env = dict(os.environ, PMI_SOCKET=os.path.join(self.tmp, "pmi.sock"))
        self.run = R.Run([pmi, path], env=self.env, cwd=self.tmp)
        R.wait_running(self.run, "idle", IDLE_APPS, 30)

    def checks(self):
        r = subprocess.run([self.pmi, "status", "--json"], env=self.env, capture_output=True,
                           timeout=10)
        return sum(i.get("check_runs", 0) for i in json.loads(r.stdout)["instances"])

    def close(self):
        self.run.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def http_server(R, tmp):
    """A python HTTP server on a free loopback port (answers 200)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    code = ("import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n"
            " def do_GET(self):\n  self.send_response(200); self.send_header('Content-Length','0');"
            " self.end_headers()\n def log_message(self,*a): pass\n"
            f"h.ThreadingHTTPServer(('127.0.0.1',{port}),H).serve_forever()\n")
    srv = R.Run(["python3", "-c", code], cwd=tmp)
    R.wait_for(lambda: _connects(port), 10)
    return srv, port


def _connects(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def probe(kind, port, tmp):
    return {
        "tcp": f"tcp: {port}",
        "http": f"http: 'http://127.0.0.1:{port}/'",
        "exec": f"exec: \"echo x >> {tmp}/hc\"",
    }[kind]


def idle(ctx, R, pmi):
    """W12: wake-ups with 10 apps whose checks are not due."""
    p = PmiRun(R, pmi, apps_yaml(ctx.helper, IDLE_APPS, "exec: 'true'", "24h"))
    try:
        time.sleep(ctx.args.settle)
        a = R.cpu_counters(p.run.pid)
        time.sleep(ctx.args.idle_secs)
        b = R.cpu_counters(p.run.pid)
        return {"cpu_ms": b[0] - a[0], "wakeups": b[1] - a[1], "secs": ctx.args.idle_secs}
    finally:
        p.close()


def wakeups(ctx, R, pmi, kind, port, tmp):
    """W13: voluntary switches per check, one check every 1 s beside 10 idle apps."""
    p = PmiRun(R, pmi, apps_yaml(ctx.helper, 1, probe(kind, port, tmp), "1s"))
    try:
        R.wait_for(lambda: p.checks() >= 1, 10, 0.2)
        time.sleep(0.3)  # between two checks: the window holds whole checks
        n0, a = p.checks(), R.cpu_counters(p.run.pid)
        secs = max(ctx.args.idle_secs, 5)
        time.sleep(secs)
        b, n1 = R.cpu_counters(p.run.pid), p.checks()
        # The two status round trips add their own wake-ups: measured apart and subtracted.
        c0 = R.cpu_counters(p.run.pid)
        p.checks()
        c1 = R.cpu_counters(p.run.pid)
        per_status = c1[1] - c0[1]
        checks = n1 - n0
        woke = (b[1] - a[1]) - per_status
        return {"checks": checks, "wakeups": woke, "per_check": woke / max(checks, 1),
                "status_wakeups": per_status}
    finally:
        p.close()


def cpu_pmi(ctx, R, pmi, kind, port, tmp):
    """W14 for pmi: 10 apps checked every 100 ms."""
    p = PmiRun(R, pmi, apps_yaml(ctx.helper, IDLE_APPS, probe(kind, port, tmp), "100ms"))
    try:
        R.wait_for(lambda: p.checks() >= IDLE_APPS, 10, 0.2)
        n0, a = p.checks(), proc_cpu_ms(p.run.pid)
        time.sleep(max(ctx.args.idle_secs, 5))
        b, n1 = proc_cpu_ms(p.run.pid), p.checks()
        n = max(n1 - n0, 1)
        return {"checks": n, "self_ms_per_1000": (b[0] - a[0]) * 1000 / n,
                "children_ms_per_1000": (b[1] - a[1]) * 1000 / n}
    finally:
        p.close()


def docker_usable():
    d = shutil.which("docker")
    bb = shutil.which("busybox")
    if not d:
        return None, "docker not found"
    if not bb:
        return None, "busybox (Debian busybox-static) not found for the scratch image"
    r = subprocess.run([d, "info"], capture_output=True, timeout=30)
    if r.returncode != 0:
        return None, "docker daemon not reachable"
    return (d, bb), ""


def docker_image(d, bb, log):
    """A `FROM scratch` image with static busybox as /bin/sh (no registry needed)."""
    tag = "pmi-bench-healthcheck:latest"
    if subprocess.run([d, "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    root = tempfile.mkdtemp(prefix="pmi-bench-img-")
    try:
        os.makedirs(f"{root}/bin")
        os.makedirs(f"{root}/tmp")
        shutil.copy(bb, f"{root}/bin/busybox")
        for n in ("sh", "sleep", "echo", "true"):
            os.symlink("busybox", f"{root}/bin/{n}")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([d, "import", "-", tag], stdin=tar.stdout, check=True,
                       capture_output=True, timeout=120)
        tar.wait()
        log(f"built {tag} (scratch + busybox)")
        return tag
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pids_of(names):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().strip() in names:
                        out.append(int(p))
            except OSError:
                pass
    return out


def cpu_docker(ctx, log):
    """W14 for Docker: 10 containers with HEALTHCHECK `echo x >> /tmp/hc` every 100 ms."""
    (d, bb), why = docker_usable()
    if not d:
        raise RuntimeError(why)
    tag = docker_image(d, bb, log)
    names = [f"pmi-bench-hc-{os.getpid()}-{i}" for i in range(IDLE_APPS)]
    try:
        for n in names:
            subprocess.run([d, "run", "-d", "--name", n, "--health-cmd", "echo x >> /tmp/hc",
                            "--health-interval", "100ms", "--health-timeout", "2s",
                            "--health-retries", "1000", tag, "/bin/sleep", "3600"],
                           check=True, capture_output=True, timeout=60)

        def count():
            total = 0
            for n in names:
                r = subprocess.run([d, "exec", n, "sh", "-c", "wc -l < /tmp/hc 2>/dev/null || echo 0"],
                                   capture_output=True, timeout=30)
                total += int((r.stdout.decode().strip() or "0"))
            return total

        time.sleep(2)
        daemons = pids_of({"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2"})
        n0 = count()
        a = [proc_cpu_ms(p) for p in daemons]
        time.sleep(max(ctx.args.idle_secs, 5))
        b = [proc_cpu_ms(p) for p in daemons]
        n1 = count()
        # The counting `docker exec`s (2 × 10) cost the daemons what a check costs (a check is
        # an exec too): they are counted as checks, so the figure is not inflated by them.
        n = max(n1 - n0 + 2 * IDLE_APPS, 1)
        self_ms = sum(y[0] - x[0] for x, y in zip(a, b))
        child_ms = sum(y[1] - x[1] for x, y in zip(a, b))
        return {"checks": n, "self_ms_per_1000": self_ms * 1000 / n,
                "children_ms_per_1000": child_ms * 1000 / n}
    finally:
        subprocess.run([d, "rm", "-f"] + names, capture_output=True, timeout=120)


def run_all(ctx, R, pmi, log):
    """Every measurement; returns the markdown section."""
    res = {}
    tmp = tempfile.mkdtemp(prefix="pmi-bench-srv-")
    srv = None
    try:
        log("checks: W12 idle with checks not due")
        res["idle"] = idle(ctx, R, pmi)
        srv, port = http_server(R, tmp)
        for kind in ("tcp", "http", "exec"):
            log(f"checks: W13 wake-ups per {kind} check")
            res[f"wake_{kind}"] = wakeups(ctx, R, pmi, kind, port, tmp)
        for kind in ("exec", "http"):
            log(f"checks: W14 CPU per 1000 {kind} checks")
            res[f"cpu_{kind}"] = cpu_pmi(ctx, R, pmi, kind, port, tmp)
        log("checks: W14 docker HEALTHCHECK")
        try:
            res["cpu_docker"] = cpu_docker(ctx, log)
        except (RuntimeError, subprocess.SubprocessError, OSError) as e:
            res["cpu_docker"] = {"error": str(e)[:200]}
    finally:
        if srv:
            srv.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return res, render(res, ctx)


def render(res, ctx):
    i = res["idle"]
    lines = [f"### 12. Idle with checks not due: 10 apps, health interval 24 h, {i['secs']} s", "",
             "| | CPU ms | wake-ups (voluntary switches) |", "|---|---:|---:|",
             f"| pmi | {i['cpu_ms']:.0f} | {i['wakeups']} |", "",
             "### 13. Wake-ups per check: 10 idle apps + one checked every 1 s", "",
             "| check | checks in window | wake-ups | wake-ups per check |", "|---|---:|---:|---:|"]
    for k in ("tcp", "http", "exec"):
        w = res[f"wake_{k}"]
        lines.append(f"| {k} | {w['checks']} | {w['wakeups']} | {w['per_check']:.1f} |")
    lines += ["", "(the `pmi status` round trips that count the checks are measured apart and "
              "subtracted)", "",
              "### 14. CPU per 1000 checks (10 apps, every 100 ms)", "",
              "| checker | checks | own CPU ms / 1000 | children's CPU ms / 1000 |",
              "|---|---:|---:|---:|"]
    for k, label in (("cpu_exec", "pmi exec `sh -c 'echo x >> F'`"),
                     ("cpu_http", "pmi http GET (built in, no process)"),
                     ("cpu_docker", "docker HEALTHCHECK, same command (dockerd+containerd+shim)")):
        c = res.get(k, {})
        if "error" in c:
            lines.append(f"| {label} | – | – | – ({c['error']}) |")
        else:
            lines.append(f"| {label} | {c['checks']} | {c['self_ms_per_1000']:.0f} | "
                         f"{c['children_ms_per_1000']:.0f} |")
    lines.append("")
    return "\n".join(lines)
