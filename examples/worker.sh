#!/bin/sh
# Example worker for examples/apps.yaml: says hello, then does "work" every WORK_INTERVAL s.
# pmi sets NODE_APP_INSTANCE (0, 1, ...) for each instance, as pm2 does.
i="${NODE_APP_INSTANCE:-0}"
echo "worker $i: ${GREETING:-hello} (pid $$)"
trap 'echo "worker $i: stopping"; exit 0' INT TERM
n=0
while true; do
    n=$((n + 1))
    echo "worker $i: job $n done"
    sleep "${WORK_INTERVAL:-3}" &
    wait $!
done
