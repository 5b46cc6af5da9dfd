#!/bin/sh
# Times `pmi status` (a whole client process: connect, hello, status with /proc sampling, table)
# against a pmi supervising 10 apps. Usage: bench/status.sh [PMI_BINARY]
# Default binary: target/release/pmi (build it with `cargo build --release`).
# Uses hyperfine when installed, else a loop timed with `date +%s%N` (prints the median).
set -eu
PMI=${1:-target/release/pmi}
[ -x "$PMI" ] || { echo "no pmi binary at $PMI (cargo build --release)" >&2; exit 2; }
PMI=$(cd "$(dirname "$PMI")" && pwd)/$(basename "$PMI")
DIR=$(mktemp -d)
SUP=
cleanup() { [ -n "$SUP" ] && kill "$SUP" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM

{
  echo "apps:"
  for i in 0 1 2 3 4 5 6 7 8 9; do
    printf '  - name: app%s\n    script: /bin/sh\n    interpreter: none\n' "$i"
    printf '    args: ["-c", "exec sleep 100000"]\n'
  done
} > "$DIR/apps.yaml"
export PMI_SOCKET="$DIR/pmi.sock"
"$PMI" "$DIR/apps.yaml" >"$DIR/pmi.log" 2>&1 &
SUP=$!
# Wait (bounded) until every app is online.
i=0
until "$PMI" health --ready >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 200 ] || { echo "pmi did not get ready" >&2; cat "$DIR/pmi.log" >&2; exit 1; }
  sleep 0.05
done
"$PMI" status

if command -v hyperfine >/dev/null 2>&1; then
  hyperfine -N --warmup 20 --runs 300 --export-json "$DIR/h.json" "$PMI status" "$PMI status --json" "$PMI health"
else
  for cmd in "status" "status --json" "health"; do
    n=300; : > "$DIR/t"
    while [ $n -gt 0 ]; do
      a=$(date +%s%N); "$PMI" $cmd >/dev/null; b=$(date +%s%N)
      echo $(( (b - a) / 1000 )) >> "$DIR/t"; n=$((n - 1))
    done
    echo "pmi $cmd: median $(sort -n "$DIR/t" | sed -n 150p) µs over 300 runs"
  done
fi
if [ -f "$DIR/h.json" ]; then
  python3 -c 'import json,sys; [print("%-45s median %.2f ms" % (r["command"].split("/")[-1], r["median"]*1000)) for r in json.load(open(sys.argv[1]))["results"]]' "$DIR/h.json" 2>/dev/null || true
fi
