#!/usr/bin/env bash
# Scenario 2 (and 5): Kiln distributed (every stage its own process, RabbitMQ
# quorum queues + PostgreSQL, durable) against Pebble, one run, the same
# driver, alternating rounds; then every process's peak RSS (VmHWM).
#
#   REPLICAS=1 ROUNDS=5 N=500 C=64 POLL_MS=10 WARMUP=20 bench/scenario2.sh
#
# API_SOLE=1 runs the one api as [api] sole_replica (nonces and accounts in
# memory, other api replicas locked out); the default is a shared api.
#
# The cluster gets its own database (kiln_bench, dropped and recreated) and
# queue prefix (kbench.), on 127.0.0.1:24444; release binaries must be built.
source "$(dirname "$0")/lib.sh"
REPLICAS=${REPLICAS:-1}; ROUNDS=${ROUNDS:-5}; N=${N:-500}; C=${C:-64}; POLL_MS=${POLL_MS:-10}; WARMUP=${WARMUP:-20}
out=$RESULTS/scenario2-$(date -u +%Y%m%dT%H%M%SZ); mkdir -p "$out"
machine_line >"$out/machine.txt"
echo "API_SOLE=${API_SOLE:-0} REPLICAS=$REPLICAS ROUNDS=$ROUNDS N=$N C=$C POLL_MS=$POLL_MS WARMUP=$WARMUP bench/scenario2.sh" >"$out/command.txt"

start_cluster "$REPLICAS"
start_pebble
poll=(--poll-interval "$POLL_MS"); [ "$POLL_MS" = ra ] && poll=()

run() { # target round directory root pids
  bench_once "$out" "$1 r$2" "$5" --directory "$3" --root "$4" -n "$N" -c "$C" --warmup "$WARMUP" \
    "${poll[@]}" --http01-listen "127.0.0.1:$HTTP01_PORT" --order-timeout-s 120 --run-timeout-s 900
}
kiln() { run kiln-distributed "$1" "https://127.0.0.1:$CLUSTER_PORT/directory" "$CLUSTER_DIR/root.pem" "$(cat "$CLUSTER_DIR"/pids/*.pid | tr "\n" " ")"; }
peb() {
  pebble_round "$out" "pebble r$1" -n "$N" -c "$C" --warmup "$WARMUP" "${poll[@]}" \
    --http01-listen "127.0.0.1:$HTTP01_PORT" --order-timeout-s 30 --run-timeout-s 120
  PEBBLE_PEAK_KB=$(peak_rss_kb "$PEBBLE_PID")
}
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then kiln "$r"; peb "$r"; else peb "$r"; kiln "$r"; fi
done
{
  echo "peak RSS (VmHWM, kB) after the load:"
  cluster_rss | sed 's/^/  /'
  echo "  pebble (last round; restarted each round) ${PEBBLE_PEAK_KB:-?}"
  python3 "$BENCH_ROOT/bench/summarize.py" "$out" kiln-distributed
} | tee "$out/summary.md"
say "results in $out"
