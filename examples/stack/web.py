"""The web app: counts visits in the migrated database; /healthz is 200 once it can query it."""
import http.server
import os
import sqlite3
import time

root = os.environ.get("STACK_DIR", "/tmp/pmi-stack")
port = int(os.environ.get("PORT", "8080"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            db = sqlite3.connect(os.path.join(root, "app.db"))
            if self.path != "/healthz":
                db.execute("INSERT INTO visits VALUES (?)", (time.time(),))
                db.commit()
            (n,) = db.execute("SELECT COUNT(*) FROM visits").fetchone()
            code, body = 200, f"visits: {n}\n"
        except sqlite3.Error as e:
            code, body = 503, f"database not ready: {e}\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, fmt, *args):
        pass  # the health checks would fill the log


time.sleep(0.5)  # a slow start: pmi's ready check waits for it, dependents wait for pmi
print(f"web listening on {port}", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
