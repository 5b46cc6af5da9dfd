#!/usr/bin/env python3
"""pmi against its peers: the same workloads on tini, dumb-init, catatonit, supervisord, Horust
and pmi. One command: `bash bench/run` (or `python3 bench/run.py`); see bench/README.md.

Every process the harness starts is its descendant (the harness is a child subreaper, so even
orphans come back to it) and is killed and reaped after each measurement, on error and on ^C.
Stdlib only; the workloads are one small C program (bench/helper.c) built with the system `cc`.
"""

import argparse
import ctypes
import datetime
import errno
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
PR_SET_CHILD_SUBREAPER = 36


class Unsupported(Exception):
    """The peer cannot run this workload; the message says why (it goes in the table)."""


class Failed(Exception):
    """The peer could have run it but did not (time-out, crash); the message says what happened."""


# --------------------------------------------------------------------------------------------
# Processes: start, wait, and clean up everything.

def now_ns():
    return time.monotonic_ns()


def proc_table():
    """pid -> (ppid, state, comm) for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        r = s.rfind(")")
        fields = s[r + 2:].split()
        out[int(d)] = (int(fields[1]), fields[0], s[s.find("(") + 1:r])
    return out


def descendants(root, table=None):
    table = table if table is not None else proc_table()
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, stack = [], [root]
    while stack:
        for c in kids.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:-1]
    except OSError:
        return []


def count_apps(root, marker):
    """How many live descendants of `root` run `helper <marker> ...`."""
    table = proc_table()
    n = 0
    for pid in descendants(root, table):
        if table[pid][1] == "Z":
            continue
        argv = cmdline(pid)
        if len(argv) >= 2 and argv[0].endswith(b"/helper") and argv[1] == marker.encode():
            n += 1
    return n


def wait_for(cond, timeout, step=0.01):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            return v
        time.sleep(step)


def kill_all_descendants():
    """SIGKILL every descendant of the harness, then reap them (the harness is a subreaper)."""
    for _ in range(50):
        pids = descendants(os.getpid())
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        reap_children(0.1)
    reap_children(0)


def reap_children(timeout):
    end = time.monotonic() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= end:
                return
            time.sleep(0.005)


class Run:
    """One init under test: its process, its temp dir and its stderr (kept for error messages)."""

    def __init__(self, argv, env=None, stdout=subprocess.DEVNULL, cwd=None):
        self.tmp_stderr = tempfile.TemporaryFile()
        self.t0 = now_ns()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                  stderr=self.tmp_stderr, env=env, cwd=cwd,
                                  start_new_session=True, close_fds=True)
        self.pid = self.p.pid

    def stderr_tail(self, n=200):
        self.tmp_stderr.seek(0)
        s = self.tmp_stderr.read().decode(errors="replace").strip()
        return " ".join(s[-n:].split())

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=5.0):
        """SIGTERM, wait, then kill everything left."""
        if self.alive():
            try:
                self.p.send_signal(signal.SIGTERM)
            except OSError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self):
        if self.alive():
            for p in [self.pid] + descendants(self.pid):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        kill_all_descendants()
        self.tmp_stderr.close()

    def died(self, what):
        code = self.p.poll()
        return Failed(f"{what} (exit {code}: {self.stderr_tail()})" if code is not None
                      else f"{what} ({self.stderr_tail()})")


# --------------------------------------------------------------------------------------------
# The peers. Each turns a list of apps into a command line (and files in a temp dir).

@dataclass
class App:
    name: str
    argv: list
    instances: int = 1
    autorestart: bool = False


class Peer:
    name = ""
    supervisor = False      # has an apps file, restarts, instances
    binary = None           # path, or None when not available
    why = ""                # why it is not available
    status_argv = None      # client command for the status round trip, or None

    def available(self):
        return self.binary is not None

    def command(self, apps, tmp, log_format=None):
        """(argv, env) that runs `apps` under this init."""
        raise NotImplementedError

    def single(self, apps):
        if len(apps) != 1 or apps[0].instances != 1:
            raise Unsupported("one command only (no apps file)")
        if apps[0].autorestart:
            raise Unsupported("no restarts (exits with its child)")
        return apps[0].argv


class SimpleInit(Peer):
    def __init__(self, name, path, flags=()):
        self.name = name
        self.binary = path
        self.flags = list(flags)
        self.why = f"{name} not found" if not path else ""

    def command(self, apps, tmp, log_format=None):
        if log_format is not None:
            raise Unsupported("no log pipeline: the app writes to the init's stdout itself")
        return [self.binary] + self.flags + ["--"] + self.single(apps), None


class PmiSingle(SimpleInit):
    def __init__(self, path):
        super().__init__("pmi --", path)

    def command(self, apps, tmp, log_format=None):
        argv, _ = super().command(apps, tmp, log_format)
        env = dict(os.environ, PMI_SOCKET=os.path.join(tmp, "pmi.sock"))
        return argv, env


class Pmi(Peer):
    name = "pmi"
    supervisor = True

    def __init__(self, path, why=""):
        self.binary = path
        self.why = why

    def command(self, apps, tmp, log_format=None):
        lines = ["apps:"]
        for a in apps:
            lines += [
                f"  - name: {a.name}",
                f"    script: {a.argv[0]}",
                "    interpreter: none",
                f"    args: {json.dumps(a.argv[1:])}",
                f"    instances: {a.instances}",
                f"    autorestart: {'true' if a.autorestart else 'false'}",
                "    restart_delay: 0",
                "    min_uptime: 100",
                "    max_restarts: 1000000",
            ]
        path = os.path.join(tmp, "apps.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        sock = os.path.join(tmp, "pmi.sock")
        self.status_argv = [self.binary, "status", "--json"]
        argv = [self.binary] + (["--log-format", log_format] if log_format else []) + [path]
        return argv, dict(os.environ, PMI_SOCKET=sock)

    def status_env(self, tmp):
        return dict(os.environ, PMI_SOCKET=os.path.join(tmp, "pmi.sock"))


class Supervisord(Peer):
    name = "supervisord"
    supervisor = True

    def __init__(self):
        self.binary = shutil.which("supervisord")
        self.ctl = shutil.which("supervisorctl")
        self.why = "" if self.binary else "supervisord not found (Debian package `supervisor`)"

    def command(self, apps, tmp, log_format=None):
        conf = [
            "[supervisord]", "nodaemon=true", "user=root", "logfile=/dev/null",
            "logfile_maxbytes=0", f"pidfile={tmp}/supervisord.pid", f"childlogdir={tmp}",
            "[unix_http_server]", f"file={tmp}/supervisor.sock",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]", f"serverurl=unix://{tmp}/supervisor.sock",
        ]
        for a in apps:
            conf += [
                f"[program:{a.name}]",
                "command=" + " ".join(a.argv),
                f"numprocs={a.instances}",
                "process_name=%(program_name)s_%(process_num)d",
                f"autorestart={'true' if a.autorestart else 'false'}",
                "startsecs=0", "startretries=1000000",
                "stopsignal=TERM", "stopwaitsecs=10",
            ]
            if log_format:
                # supervisord copies the app's output to its own stdout only this way.
                conf += ["stdout_logfile=/dev/stdout", "stdout_logfile_maxbytes=0"]
            else:
                conf += ["stdout_logfile=NONE", "stderr_logfile=NONE"]
        path = os.path.join(tmp, "supervisord.conf")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.status_argv = [self.ctl, "-c", path, "status"]
        return [self.binary, "-n", "-c", path], None

    def status_env(self, tmp):
        return None


class Horust(Peer):
    name = "horust"
    supervisor = True

    def __init__(self, path, why):
        self.binary = path
        self.why = why

    def command(self, apps, tmp, log_format=None):
        d = os.path.join(tmp, "services")
        os.makedirs(d, exist_ok=True)
        for a in apps:
            for i in range(a.instances):
                with open(os.path.join(d, f"{a.name}-{i}.toml"), "w") as f:
                    f.write("\n".join([
                        f"command = {json.dumps(' '.join(a.argv))}",
                        'stdout = "STDOUT"', 'stderr = "STDERR"',
                        "[restart]",
                        f"strategy = {json.dumps('always' if a.autorestart else 'never')}",
                        'backoff = "0s"', "attempts = 0",
                        "[termination]", 'signal = "TERM"', 'wait = "10s"',
                    ]) + "\n")
        return [self.binary, "--services-path", d], None


# --------------------------------------------------------------------------------------------
# Setup: peers, helper, pmi.

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), text=True, capture_output=True, **kw)


def apt_install(pkgs, log):
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"installing {' '.join(pkgs)} (apt-get)")
    r = sh(["apt-get", "install", "-y", "-qq"] + pkgs, env=env)
    if r.returncode != 0:
        sh(["apt-get", "update", "-qq"], env=env)
        sh(["apt-get", "install", "-y", "-qq"] + pkgs, env=env)


def find_horust(install, log):
    cands = [shutil.which("horust"), os.path.expanduser("~/.cargo/bin/horust")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c, ""
    if not install:
        return None, "not installed (`cargo install horust`; the harness does it unless --no-install)"
    if not shutil.which("cargo"):
        return None, "cannot install: no cargo"
    log("installing horust with `cargo install horust` (compiles for several minutes)")
    r = sh(["cargo", "install", "--locked", "horust"])
    if r.returncode != 0:
        r = sh(["cargo", "install", "horust"])
    path = os.path.expanduser("~/.cargo/bin/horust")
    if r.returncode == 0 and os.access(path, os.X_OK):
        return path, ""
    last = " ".join(r.stderr.strip().splitlines()[-2:])[-200:]
    return None, f"`cargo install horust` failed: {last}"


def find_pmi(log):
    path = os.environ.get("PMI_BIN") or os.path.join(
        ROOT, "target/x86_64-unknown-linux-musl/release/pmi")
    if not os.access(path, os.X_OK) and not os.environ.get("PMI_BIN"):
        log("building pmi (cargo build --release --target x86_64-unknown-linux-musl)")
        r = sh(["cargo", "build", "--release", "--target", "x86_64-unknown-linux-musl",
                "--bin", "pmi"], cwd=ROOT)
        if r.returncode != 0:
            return None, "build failed: " + " ".join(r.stderr.strip().splitlines()[-2:])[-200:]
    if not os.access(path, os.X_OK):
        return None, f"no binary at {path}"
    return os.path.abspath(path), ""


def build_helper():
    out_dir = os.path.join(ROOT, "target", "bench")
    os.makedirs(out_dir, exist_ok=True)
    src, out = os.path.join(HERE, "helper.c"), os.path.join(out_dir, "helper")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        r = sh(["cc", "-O2", "-o", out, src])
        if r.returncode != 0:
            sys.exit(f"cannot build bench/helper.c: {r.stderr}")
    return out


def setup_peers(args, log):
    want = ["tini", "dumb-init", "catatonit", "supervisord"]
    missing = [p for p, b in [("tini", "tini"), ("dumb-init", "dumb-init"),
                              ("catatonit", "catatonit"), ("supervisor", "supervisord")]
               if not shutil.which(b)]
    if missing and args.install:
        apt_install(missing, log)
    if not shutil.which("unshare"):
        apt_install(["util-linux"], log)
    # tini -s: a subreaper when not PID 1, as pmi and catatonit are by themselves.
    peers = [SimpleInit(n, shutil.which(n), ["-s"] if n == "tini" else []) for n in want[:3]]
    peers.append(Supervisord())
    hp, hwhy = find_horust(args.install, log)
    peers.append(Horust(hp, hwhy))
    pp, pwhy = find_pmi(log)
    peers.append(PmiSingle(pp))
    peers.append(Pmi(pp, pwhy))
    return peers


# --------------------------------------------------------------------------------------------
# Measurements. Each returns a list of samples (floats) or raises Unsupported / Failed.

class Ctx:
    def __init__(self, args, helper, log):
        self.args, self.helper, self.log = args, helper, log


class Session:
    """A temp dir and an init started in it; stops the init and removes the dir on exit."""

    def __init__(self, peer, apps=None, log_format=None, stdout=subprocess.DEVNULL, wrap=None):
        self.peer, self.apps, self.log_format = peer, apps, log_format
        self.stdout, self.wrap = stdout, wrap
        self.tmp = tempfile.mkdtemp(prefix="pmi-bench-")
        self.run = None

    def start(self, apps=None):
        argv, env = self.peer.command(apps or self.apps, self.tmp, self.log_format)
        self.run = Run((self.wrap or []) + argv, env=env, stdout=self.stdout, cwd=self.tmp)
        return self.run

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # No graceful stop here: nothing measures it (workload 2 does its own), and supervisord
        # and Horust take 1–2 s to stop. SIGKILL reaches the whole tree (orphans come back to
        # the harness, a subreaper).
        if self.run:
            self.run.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_running(run, marker, n, timeout):
    wait_for(lambda: not run.alive() or count_apps(run.pid, marker) >= n, timeout, 0.02)
    if not run.alive():
        raise run.died("the init exited before its apps ran")
    c = count_apps(run.pid, marker)
    if c < n:
        raise Failed(f"only {c}/{n} apps running after {timeout:.0f} s")


# Each `*_once` function takes one sample (or raises Unsupported / Failed); the driver calls
# them round-robin over the peers, so that a burst of load on the machine hits every peer alike.

def launch_once(ctx, peer):
    """Launch → app running: the app writes its CLOCK_MONOTONIC start to a FIFO."""
    with Session(peer) as s:
        fifo = os.path.join(s.tmp, "fifo")
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            apps = [App("fifo", [ctx.helper, "fifo", fifo])]
            argv, env = peer.command(apps, s.tmp)
            t0 = now_ns()
            s.run = Run(argv, env=env, cwd=s.tmp)
            r, _, _ = select.select([fd], [], [], 10)
            if not r:
                raise s.run.died("the app did not start within 10 s")
            return (int(os.read(fd, 64).decode().strip()) - t0) / 1e6
        finally:
            os.close(fd)


def sigterm_once(ctx, peer):
    """SIGTERM → the init has exited, with 10 cooperative apps (1 for single-command inits)."""
    n = 10 if peer.supervisor else 1
    with Session(peer, [App("idle", [ctx.helper, "idle"], instances=n)]) as s:
        run = s.start()
        wait_running(run, "idle", n, 30)
        time.sleep(0.05)
        t0 = now_ns()
        run.p.send_signal(signal.SIGTERM)
        try:
            run.p.wait(20)
        except subprocess.TimeoutExpired:
            raise Failed("still running 20 s after SIGTERM")
        dt = (now_ns() - t0) / 1e6
        left = count_apps(os.getpid(), "idle")
        if left:
            raise Failed(f"exited but left {left} app(s) running")
        return dt


def crash_samples(ctx, peer):
    """Crash → restarted: an app lives 150 ms (over pm2's minimum min_uptime, so no restart is
    'unstable') and exits 1; each sample is its exit → the next start, as the app logs them."""
    if not peer.supervisor:
        raise Unsupported("does not restart (exits with its child)")
    want = ctx.args.crashes + 1
    with Session(peer) as s:
        log = os.path.join(s.tmp, "starts")
        run = s.start([App("crash", [ctx.helper, "crash", log, str(want), "150"], autorestart=True)])
        size = lambda: os.path.getsize(log) if os.path.exists(log) else 0
        limit = 10 + want * 2.5
        wait_for(lambda: size() >= (2 * want - 1) * 22 or not run.alive(), limit, 0.05)
        lines = open(log).read().split() if os.path.exists(log) else []
        samples = [(int(b[1:]) - int(a[1:])) / 1e6 for a, b in zip(lines, lines[1:])
                   if a[0] == "E" and b[0] == "S"]
        if not samples:
            raise run.died(f"no restart within {limit:.0f} s")
        starts = sum(1 for x in lines if x[0] == "S")
        return samples, "" if starts >= want else f"only {starts} starts in {limit:.0f} s"


def rss_once(ctx, peer, n):
    """The init's own VmRSS (MiB) with n idle instances running."""
    if n > 1 and not peer.supervisor:
        raise Unsupported("one child only")
    with Session(peer, [App("idle", [ctx.helper, "idle"], instances=n)]) as s:
        run = s.start()
        wait_running(run, "idle", n, 90 if n >= 1000 else 30)
        time.sleep(ctx.args.settle)
        with open(f"/proc/{run.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise Failed("no VmRSS")


def status_samples(ctx, peer):
    """`status` as a whole process (fork, exec, connect, answer, exit), with 10 apps."""
    if isinstance(peer, Horust):
        raise Unsupported("Horust has no status command")
    if not peer.supervisor:
        raise Unsupported("no status command")
    with Session(peer, [App("idle", [ctx.helper, "idle"], instances=10)]) as s:
        run = s.start()
        wait_running(run, "idle", 10, 30)
        argv, env = peer.status_argv, peer.status_env(s.tmp)
        # A first call outside the timing (page cache); it also tells whether the verb works.
        r = subprocess.run(argv, env=env, capture_output=True, timeout=10)
        if r.returncode != 0 or not r.stdout.strip():
            msg = " ".join((r.stderr or r.stdout).decode(errors="replace").split())[:160]
            shown = " ".join([os.path.basename(argv[0])] + argv[1:])
            raise Failed(f"`{shown}` exited {r.returncode}: {msg}")
        samples = []
        for _ in range(ctx.args.runs * 2):
            t0 = now_ns()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=10)
            samples.append((now_ns() - t0) / 1e6)
        return samples, ""


def logs_floor_once(ctx):
    """The floor: the app writes into a pipe read by `cat` > /dev/null (MB/s of the app)."""
    b = ctx.args.log_bytes
    t0 = now_ns()
    r = subprocess.run(["sh", "-c", f'"$0" spam {b} | cat >/dev/null', ctx.helper])
    if r.returncode != 0:
        raise Failed("the floor pipeline failed")
    return b / 1e6 / ((now_ns() - t0) / 1e9)


def logs_once(ctx, peer, fmt):
    """One app writes log_bytes of 100-byte lines through the init; MB/s of the app's bytes."""
    b = ctx.args.log_bytes
    if isinstance(peer, Horust) or not peer.supervisor:
        raise Unsupported("no log pipeline: the app writes to the init's stdout itself")
    apps = [App("spam", [ctx.helper, "spam", str(b)])]
    if isinstance(peer, Supervisord):
        # supervisord never exits by itself: its stdout goes into a pipe read by a sink that
        # ends after the app's byte count.
        rfd, wfd = os.pipe()
        with Session(peer, apps, log_format=fmt, stdout=wfd) as s:
            sink = None
            try:
                t0 = now_ns()
                sink = subprocess.Popen([ctx.helper, "sink", str(b)], stdin=rfd,
                                        start_new_session=True)
                s.start()
                os.close(rfd)
                os.close(wfd)
                rfd = wfd = None
                try:
                    sink.wait(120)
                except subprocess.TimeoutExpired:
                    raise Failed("not done after 120 s")
                return b / 1e6 / ((now_ns() - t0) / 1e9)
            finally:
                for fd in (rfd, wfd):
                    if fd is not None:
                        os.close(fd)
                if sink and sink.poll() is None:
                    sink.kill()
                    sink.wait()
    with Session(peer, apps, log_format=fmt) as s:
        t0 = now_ns()
        run = s.start()
        try:
            run.p.wait(120)
        except subprocess.TimeoutExpired:
            raise Failed("not done after 120 s")
        if run.p.returncode != 0:
            raise run.died("the init failed")
        return b / 1e6 / ((now_ns() - t0) / 1e9)


def zombies_once(ctx, peer, n):
    """Reaping n orphan zombies (ms), the init as PID 1 of a new pid namespace."""
    wrap = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    with Session(peer, wrap=wrap) as s:
        out = os.path.join(s.tmp, "reaped")
        run = s.start([App("zombies", [ctx.helper, "zombies", str(n), out])])
        done = wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > 0,
                        ctx.args.zombie_timeout, 0.005)
        if not done:
            if not run.alive():
                raise run.died("the init exited first")
            raise Failed(f"not all reaped {ctx.args.zombie_timeout:.0f} s after the start (time-out)")
        with open(out) as f:
            return int(f.read()) / 1e6


def cpu_counters(pid):
    """(utime+stime in ms from /proc/pid/stat, voluntary + involuntary switches over threads)."""
    hz = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rfind(")") + 2:].split()
    cpu_ms = (int(fields[11]) + int(fields[12])) * 1000 / hz
    vol = invol = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except OSError:
            pass
    return cpu_ms, vol, invol


def idle_all(ctx, peers):
    """CPU time and wake-ups over `idle_secs` with 10 idle apps; every peer at once (they are
    idle, so they do not disturb each other, and the 30 s are spent once)."""
    res, live = {}, {}
    sessions = []
    try:
        for peer in peers:
            n = 10 if peer.supervisor else 1
            s = Session(peer, [App("idle", [ctx.helper, "idle"], instances=n)])
            sessions.append(s)
            live[peer.name] = (s.start(), n)
        for name, (run, n) in list(live.items()):
            try:
                wait_running(run, "idle", n, 30)
            except Failed as e:
                res[name] = ("failed", str(e))
                del live[name]
        time.sleep(ctx.args.settle)
        before = {name: cpu_counters(run.pid) for name, (run, _) in live.items()}
        time.sleep(ctx.args.idle_secs)
        for name, (run, n) in live.items():
            if not run.alive():
                res[name] = ("failed", "exited while idle")
                continue
            a, b = before[name], cpu_counters(run.pid)
            res[name] = ("ok", {"cpu_ms": b[0] - a[0], "voluntary": b[1] - a[1],
                                "involuntary": b[2] - a[2], "apps": n})
    finally:
        for s in sessions:
            s.__exit__(None, None, None)
    return res


def binary_info(peer):
    path = os.path.realpath(peer.binary)
    desc = sh(["file", "-b", path]).stdout.strip() if shutil.which("file") else "?"
    size = os.stat(path).st_size
    short = []
    for key in ["ELF 64-bit", "statically linked", "static-pie linked", "dynamically linked",
                "Python script", "script", "stripped"]:
        if key in desc and not (key == "script" and "Python script" in short) \
                and not (key == "stripped" and "not stripped" in desc):
            short.append(key)
    if "not stripped" in desc:
        short.append("not stripped")
    if "dynamically linked" in desc:
        libs = sh(["ldd", path]).stdout.split()
        short.append("needs " + ", ".join(sorted({os.path.basename(x).split(".so")[0]
                                                  for x in libs if ".so" in x and "/" in x})))
    if "script" in desc:
        short.append("+ the Python interpreter and its libraries")
    return size, "; ".join(short), desc


# --------------------------------------------------------------------------------------------
# Report.

def fmt_num(x, unit):
    if unit == "MiB":
        return f"{x:.2f}"
    if unit == "MB/s":
        return f"{x:.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


class Report:
    def __init__(self):
        self.sections = []    # (title, unit, higher_better, rows)
        self.raw = {}

    def add(self, key, title, unit, higher_better, rows):
        """rows: list of (peer, samples|None, note)."""
        self.sections.append((title, unit, higher_better, rows))
        self.raw[key] = [{"peer": p, "samples": s, "note": n} for p, s, n in rows]

    def markdown(self):
        out = []
        for title, unit, higher, rows in self.sections:
            meds = [statistics.median(s) for _, s, _ in rows if s]
            best = (max(meds) if higher else min(meds)) if meds else None
            out += [f"### {title}", "",
                    f"| init | min | median | max ({unit}) | vs best | n | note |",
                    "|---|---:|---:|---:|---:|---:|---|"]
            for peer, s, note in rows:
                if s:
                    med = statistics.median(s)
                    ratio = (best / med if higher else med / best) if best else 0
                    rs = "best" if abs(ratio - 1) < 1e-9 else f"×{ratio:.2f}"
                    out.append(f"| {peer} | {fmt_num(min(s), unit)} | **{fmt_num(med, unit)}** | "
                               f"{fmt_num(max(s), unit)} | {rs} | {len(s)} | {note} |")
                else:
                    out.append(f"| {peer} | – | – | – | – | 0 | {note} |")
            out.append("")
        return "\n".join(out)


def median_of(report, key, peer):
    for r in report.raw.get(key, []):
        if r["peer"] == peer and r["samples"]:
            return statistics.median(r["samples"])
    return None


def targets(report, idle, sizes):
    """pmi's targets: (what, value, met)."""
    rows = []

    def row(what, val, ok, fmt):
        rows.append((what, "–" if val is None else fmt(val), "–" if val is None else ("met" if ok(val) else "**missed**")))

    rss1 = median_of(report, "rss_1", "pmi")
    row("idle RSS, 1 app ≤ 2 MiB", rss1, lambda v: v <= 2, lambda v: f"{v:.2f} MiB")
    rss1k = median_of(report, "rss_1000", "pmi")
    row("idle RSS, 1000 instances ≤ 10 MiB", rss1k, lambda v: v <= 10, lambda v: f"{v:.2f} MiB")
    tini = median_of(report, "launch", "tini")
    for p in ["pmi", "pmi --"]:
        v = median_of(report, "launch", p)
        row(f"launch ({p}) ≤ 1.5× tini", None if v is None or not tini else v / tini,
            lambda r: r <= 1.5, lambda r: f"×{r:.2f} ({v:.2f} vs {tini:.2f} ms)")
    v = median_of(report, "crash", "pmi")
    row("crash → restarted ≤ 2 ms", v, lambda x: x <= 2, lambda x: f"{x:.2f} ms")
    v = median_of(report, "status", "pmi")
    row("`pmi status --json` ≤ 5 ms", v, lambda x: x <= 5, lambda x: f"{x:.2f} ms")
    floor = median_of(report, "logs", "cat pipe (floor)")
    v = median_of(report, "logs", "pmi (prefixed)")
    row("log throughput, prefixed ≥ 80 % of cat", None if v is None or not floor else v / floor,
        lambda r: r >= 0.8, lambda r: f"{100 * r:.0f} % ({v:.0f} vs {floor:.0f} MB/s)")
    tz = median_of(report, "zombies_2000", "tini")
    for p in ["pmi", "pmi --"]:
        v = median_of(report, "zombies_2000", p)
        row(f"2000 zombies ({p}) ≤ 1.2× tini", None if v is None or not tz else v / tz,
            lambda r: r <= 1.2, lambda r: f"×{r:.2f} ({v:.2f} vs {tz:.2f} ms)")
    i = idle.get("pmi")
    w = i[1]["voluntary"] if i and i[0] == "ok" else None
    row("0 wake-ups while idle (10 apps)", w, lambda x: x == 0, lambda x: f"{x} switches")
    s = sizes.get("pmi")
    row("static binary ≤ 3 MB", s[0] if s else None,
        lambda x: x <= 3 * 1024 * 1024 and "statically" in s[1], lambda x: f"{x / 1e6:.2f} MB")
    return rows


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    ap.add_argument("--runs", type=int, help="repetitions of each cheap workload (default 10; quick 3)")
    ap.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    ap.add_argument("--peers", help="comma-separated peers (default all)")
    ap.add_argument("--no-install", dest="install", action="store_false",
                    help="do not apt-get / cargo install missing peers")
    ap.add_argument("--out", default=os.path.join(RESULTS, "latest.md"))
    args = ap.parse_args()
    q = args.quick
    args.runs = args.runs or (3 if q else 10)
    args.log_bytes = 20_000_000 if q else 200_000_000
    args.log_runs = 2 if q else 5
    args.zombie_runs = 2 if q else 5
    args.zombie_timeout = 3 if q else 40
    args.crashes = 3 if q else 10
    args.budget = 2 if q else 20
    args.idle_secs = 5 if q else 30
    args.settle = 0.3 if q else 1.0
    args.rss_counts = [1, 100] if q else [1, 100, 1000]
    args.zombie_counts = [2000] if q else [2000, 10000]
    only = set(args.only.split(",")) if args.only else set(WORKLOADS)
    if only - set(WORKLOADS):
        ap.error(f"unknown workloads: {only - set(WORKLOADS)}")

    started = time.monotonic()

    def log(msg):
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # A ^C or a TERM to the harness still runs the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    try:
        helper = build_helper()
        peers = setup_peers(args, log)
        if args.peers:
            keep = set(args.peers.split(","))
            peers = [p for p in peers if p.name in keep]
        ctx = Ctx(args, helper, log)
        report = Report()
        avail = [p for p in peers if p.available()]

        def round_robin(key, title, unit, entries, reps, higher=False, skip=None):
            """entries: (label, peer or None, one-sample function). Repetitions go round the
            peers; a peer that cannot run the workload, or fails, is dropped with the reason."""
            if key.split("_")[0] not in only:
                return
            samples = {label: [] for label, _, _ in entries}
            notes = {}
            spent = {label: 0.0 for label, _, _ in entries}
            for r in range(reps):
                for label, peer, fn in entries:
                    if label in notes:
                        continue
                    if skip and label in skip:
                        notes[label] = skip[label]
                        continue
                    if spent[label] > args.budget:
                        # A slow peer does not get every repetition: the harness stays short.
                        notes[label] = f"{len(samples[label])} run(s) only: slow (time budget)"
                        continue
                    t_start = time.monotonic()
                    if peer is not None and not peer.available():
                        notes[label] = f"not available: {peer.why}"
                        continue
                    log(f"{title} [{r + 1}/{reps}]: {label}")
                    try:
                        samples[label].append(fn())
                    except Unsupported as e:
                        notes[label] = f"n/a: {e}"
                    except Failed as e:
                        notes[label] = f"failed: {e}" + (f" (after {len(samples[label])} good runs)"
                                                          if samples[label] else "")
                    finally:
                        kill_all_descendants()
                        spent[label] += time.monotonic() - t_start
            report.add(key, title, unit, higher,
                       [(label, samples[label], notes.get(label, "")) for label, _, _ in entries])

        def per_peer(key, title, unit, fn):
            """fn(peer) -> (samples, note), one session per peer."""
            if key not in only:
                return
            rows = []
            for p in peers:
                if not p.available():
                    rows.append((p.name, None, f"not available: {p.why}"))
                    continue
                log(f"{title}: {p.name}")
                try:
                    sm, note = fn(p)
                    rows.append((p.name, sm, note))
                except Unsupported as e:
                    rows.append((p.name, None, f"n/a: {e}"))
                except Failed as e:
                    rows.append((p.name, None, f"failed: {e}"))
                finally:
                    kill_all_descendants()
            report.add(key, title, unit, False, rows)

        def each(fn, *a):
            return [(p.name, p, lambda p=p: fn(ctx, p, *a)) for p in peers]

        round_robin("launch", "1. Launch → app running", "ms", each(launch_once), args.runs)
        round_robin("sigterm", "2. SIGTERM → init exited, 10 cooperative apps (single-command "
                    "inits: 1)", "ms", each(sigterm_once), args.runs)
        per_peer("crash", "3. Crash → restarted: app's exit → its next start (restart_delay 0)",
                 "ms", lambda p: crash_samples(ctx, p))
        for n in args.rss_counts:
            reps = args.runs if n == 1 else (1 if n >= 1000 else min(args.runs, 3))
            round_robin(f"rss_{n}", f"4. Init's own RSS, {n} idle instance{'s' if n > 1 else ''}",
                        "MiB", each(rss_once, n), reps)
        per_peer("status", "5. `status` round trip as a whole process (10 apps)", "ms",
                 lambda p: status_samples(ctx, p))
        entries = [("cat pipe (floor)", None, lambda: logs_floor_once(ctx))]
        for p in peers:
            if isinstance(p, Pmi):
                entries += [(f"pmi ({f})", p, lambda p=p, f=f: logs_once(ctx, p, f))
                            for f in ("raw", "prefixed")]
            else:
                entries.append((p.name, p, lambda p=p: logs_once(ctx, p, "raw")))
        round_robin("logs", f"6. Log throughput, {args.log_bytes // 1_000_000} MB of 100-byte "
                    "lines (MB/s of the app's output; higher is better)", "MB/s", entries,
                    args.log_runs, higher=True)
        for n in args.zombie_counts:
            # A peer that could not reap 2000 in time is not tried with more.
            skip = {r["peer"]: "not run: timed out with fewer zombies"
                    for k, rows in report.raw.items() if k.startswith("zombies_")
                    for r in rows if not r["samples"] and "time-out" in r["note"]}
            round_robin(f"zombies_{n}", f"7. Reaping {n} orphan zombies as PID 1", "ms",
                        each(zombies_once, n), args.zombie_runs, skip=skip)

        cluster_md, cluster_targets = [], []
        if only & {"cluster", "reload"}:
            if args.install and not shutil.which("wrk"):
                apt_install(["wrk"], log)
            import cluster as cluster_bench
            pmi_path, why = find_pmi(log)
            if pmi_path:
                cluster_md, cluster_targets = cluster_bench.section(pmi_path, only, args.quick, log)
            else:
                cluster_md = [f"### 10–11. Cluster mode: no pmi ({why})", ""]
            kill_all_descendants()

        idle = {}
        if "idle" in only:
            log(f"idle CPU: all peers at once for {args.idle_secs} s")
            idle = idle_all(ctx, avail)
            kill_all_descendants()
        sizes = {p.name: binary_info(p) for p in avail}
        checks_md, checks_raw = "", {}
        pmi_peer = next((p for p in avail if isinstance(p, Pmi)), None)
        if "checks" in only and pmi_peer:
            import checks as bench_checks  # bench/checks.py: W12–W14
            checks_raw, checks_md = bench_checks.run_all(ctx, sys.modules[__name__],
                                                         pmi_peer.binary, log)
            kill_all_descendants()

        md = render(args, report, idle, sizes, peers, time.monotonic() - started,
                    cluster_md, cluster_targets) + checks_md
        print(md)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(md)
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump({"raw": report.raw, "idle": idle, "checks": checks_raw,
                       "sizes": {k: v[:2] for k, v in sizes.items()}}, f, indent=1)
        log(f"written {args.out}")
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        kill_all_descendants()
    return 0


WORKLOADS = ["launch", "sigterm", "crash", "rss", "status", "logs", "zombies", "idle", "size",
             "checks", "cluster", "reload"]


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores ({model}), kernel {platform.release()}, "
            f"load average at the end {load}")


def render(args, report, idle, sizes, peers, elapsed, cluster_md=(), cluster_targets=()):
    cmd = "bash bench/run " + " ".join(sys.argv[1:])
    lines = [
        "# pmi benchmarks against its peers", "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {machine()}",
        f"- command: `{cmd.strip()}` ({elapsed:.0f} s)",
        f"- runs: {args.runs} per cheap workload; logs {args.log_runs} × "
        f"{args.log_bytes // 1_000_000} MB; zombies {args.zombie_runs}; idle {args.idle_secs} s",
        "- medians are bold; “vs best” is the median's ratio to the best median in its table",
        "",
    ]
    tr = targets(report, idle, sizes) + list(cluster_targets)
    lines += ["## pmi's targets", "", "| target | pmi | |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in tr]
    lines += ["", "## Workloads", "", report.markdown()]
    lines += list(cluster_md)
    if idle:
        lines += [f"### 8. Idle for {args.idle_secs} s with 10 apps (all inits at once)", "",
                  "| init | CPU ms (utime+stime) | voluntary switches (wake-ups) | involuntary | apps |",
                  "|---|---:|---:|---:|---|"]
        for p in peers:
            r = idle.get(p.name)
            if not p.available():
                lines.append(f"| {p.name} | – | – | – | not available: {p.why} |")
            elif r is None or r[0] != "ok":
                lines.append(f"| {p.name} | – | – | – | {r[1] if r else 'not run'} |")
            else:
                d = r[1]
                lines.append(f"| {p.name} | {d['cpu_ms']:.0f} | {d['voluntary']} | "
                             f"{d['involuntary']} | {d['apps']}{'' if d['apps'] == 10 else ' (one child only)'} |")
        lines.append("")
    if sizes:
        lines += ["### 9. Binary", "", "| init | bytes | linkage |", "|---|---:|---|"]
        for p in peers:
            if p.name in sizes:
                s = sizes[p.name]
                lines.append(f"| {p.name} | {s[0]:,} | {s[1]} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
