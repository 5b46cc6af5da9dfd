"""The worker: calls web every second, keeps a heartbeat file, speaks sd_notify.

`touch $STACK_DIR/worker.wedge` wedges it (it keeps running but does no work, as a deadlocked
process would): its health check fails and pmi restarts it. A restart clears the wedge.
"""
import os
import socket
import time
import urllib.request

root = os.environ.get("STACK_DIR", "/tmp/pmi-stack")
web = os.environ.get("WEB_URL", "http://127.0.0.1:8080/")
heartbeat = os.path.join(root, "worker.heartbeat")
wedge = os.path.join(root, "worker.wedge")


def notify(msg):
    """sd_notify with the socket module only: '@' is the abstract namespace."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(msg.encode(), addr)


if os.path.exists(wedge):
    os.remove(wedge)  # a fresh process is not wedged
jobs = 0
notify("READY=1\nSTATUS=started")
while True:
    if not os.path.exists(wedge):
        with urllib.request.urlopen(web, timeout=5) as r:
            r.read()
        jobs += 1
        with open(heartbeat, "w") as f:
            f.write(str(jobs))
        notify(f"WATCHDOG=1\nSTATUS=processed {jobs} jobs")
    time.sleep(1)
