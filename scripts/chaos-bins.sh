#!/usr/bin/env bash
# Watch the engine survive faults, through the bins only: a coordinator with a data dir
# is SIGKILLed and restarted 3 times while 3 workers run with --chaos-crash-rate 0.2 and
# are killed at random; 5 jobs go in with `dce submit --no-wait` and come back with
# `dce result`. Every C must be byte-identical to a clean 1-worker run. Secure as in
# production: each worker has its own certificate, the client a token.
# Loopback only (ports 7272/7273), bounded in time. Usage: scripts/chaos-bins.sh [WORKDIR]
set -u
P="$(cd "$(dirname "$0")/.." && pwd)/node_modules/.bin"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK" && cd "$WORK" && echo "working in $WORK"
$P/coordinator init-certs --out certs --workers 4 >/dev/null   # worker-1..3 for the chaos workers, worker-4 for the clean run
CHAOS_TOKEN=$($P/coordinator tokens add chaos --data-dir data)
CLEAN_TOKEN=$($P/coordinator tokens add clean --data-dir clean)
python3 -c "
import numpy as np
r=np.random.default_rng(4)
for i,(m,k,n) in enumerate([(300,200,250),(97,131,89),(1,500,1),(400,64,333),(128,1000,128)]):
    np.save(f'A{i}.npy', r.standard_normal((m,k))); np.save(f'B{i}.npy', r.standard_normal((k,n)))
"
start_coord() { $P/coordinator --tls-dir certs --port 7272 --data-dir data --lease-ttl-ms 1500 --log-level warn >>coord.log 2>&1 & echo $! > coord.pid; sleep 0.8; }
start_coord
export DCE_COORDINATOR=https://127.0.0.1:7272 DCE_CA=certs/ca.pem DCE_TOKEN=$CHAOS_TOKEN
# 3 chaotic workers, respawned when they die (bounded loop); each one's pid is in w$w.pid
for w in 1 2 3; do
  ( end=$((SECONDS+90)); while [ $SECONDS -lt $end ] && [ ! -f stop ]; do
      $P/worker --threads 1 --name chaos$w --cert certs/worker-$w.pem --key certs/worker-$w-key.pem \
        --chaos-crash-rate 0.2 --chaos-delay-ms 30 --log-level warn >>w$w.log 2>&1 & echo $! > w$w.pid; wait $!
      echo "worker $w exited $?" >> respawn.log; sleep 0.2; done ) 2>>respawn.log &
done
for i in 0 1 2 3 4; do $P/dce submit A$i.npy B$i.npy --no-wait --tile 48 --idempotency-key job$i > id$i.txt; done
for k in 1 2 3; do sleep 1.5; kill -9 $(cat coord.pid); echo "coordinator SIGKILL $k"; start_coord; kill -9 $(cat w$k.pid) && echo "worker chaos$k SIGKILLed"; done
for i in 0 1 2 3 4; do timeout 120 $P/dce result $(head -1 id$i.txt) -o C$i.npy || { echo "result $i failed"; $P/dce status $(head -1 id$i.txt) --json; }; done
touch stop; sleep 0.5; for w in 1 2 3; do kill $(cat w$w.pid) 2>/dev/null; done; kill $(cat coord.pid)
# clean 1-worker run
$P/coordinator --tls-dir certs --port 7273 --data-dir clean --log-level warn >clean.log 2>&1 & CP=$!; sleep 0.8
$P/worker --coordinator https://127.0.0.1:7273 --threads 1 --cert certs/worker-4.pem --key certs/worker-4-key.pem --log-level warn >cw.log 2>&1 & WP=$!
for i in 0 1 2 3 4; do DCE_TOKEN=$CLEAN_TOKEN $P/dce submit A$i.npy B$i.npy -o K$i.npy --tile 48 --coordinator https://127.0.0.1:7273 >/dev/null; done
kill $WP $CP
for i in 0 1 2 3 4; do a=$(sha256sum < C$i.npy); b=$(sha256sum < K$i.npy); [ "$a" = "$b" ] && echo "job $i identical" || echo "job $i DIFFERS"; done
echo "worker chaos exits: $(grep -c exited respawn.log)"; grep -c "chaos: crashing" w*.log
