"""A one-shot migration: creates the schema once, then exits 0 (a failure exits 1)."""
import os
import sqlite3
import sys
import time

root = os.environ.get("STACK_DIR", "/tmp/pmi-stack")
os.makedirs(root, exist_ok=True)
db = sqlite3.connect(os.path.join(root, "app.db"))
try:
    time.sleep(1)  # pretend the migration takes a moment: web must wait for it
    db.execute("CREATE TABLE IF NOT EXISTS visits (at REAL)")
    db.commit()
except sqlite3.Error as e:
    print(f"migration failed: {e}", file=sys.stderr)
    sys.exit(1)
print("migration complete")
