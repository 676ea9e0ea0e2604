#!/usr/bin/env bash
# Scenario 4: scale-out of the slow stage. The signer gets a simulated 20 ms
# signing latency (the benchmark build `signer-simulated-hsm
# --simulated-latency-ms`, the signer with the same config whose every job
# holds the replica's one simulated HSM session for that long), then 1, 2
# and 4 signer replicas; every other worker has 1 replica.
#
#   SIGNERS="1 2 4" LATENCY_MS=20 N=400 C=64 POLL_MS=50 bench/scenario4.sh
source "$(dirname "$0")/lib.sh"
SIGNERS=${SIGNERS:-1 2 4}; LATENCY_MS=${LATENCY_MS:-20}; N=${N:-400}; C=${C:-64}; POLL_MS=${POLL_MS:-50}; WARMUP=${WARMUP:-20}
out=$RESULTS/scenario4-$(date -u +%Y%m%dT%H%M%SZ); mkdir -p "$out"
machine_line >"$out/machine.txt"
echo "SIGNERS=\"$SIGNERS\" LATENCY_MS=$LATENCY_MS N=$N C=$C POLL_MS=$POLL_MS WARMUP=$WARMUP bench/scenario4.sh" >"$out/command.txt"
poll=(--poll-interval "$POLL_MS"); [ "$POLL_MS" = ra ] && poll=()

[ -x "$BIN/signer-simulated-hsm" ] || { say "no $BIN/signer-simulated-hsm: cargo build --release -p signer"; exit 1; }
start_cluster 1
# Replace the cluster's signer by slowed ones (pids kept where `down` finds them).
kill -TERM "$(cat "$CLUSTER_DIR/pids/signer-1.pid")"; rm -f "$CLUSTER_DIR/pids/signer-1.pid"
running=0
add_signer() {
  running=$((running + 1))
  KILN_ADMIN__LISTEN=127.0.0.1:$((24190 + running)) RUST_LOG=${RUST_LOG:-info} \
    setsid "$BIN/signer-simulated-hsm" --config "$CLUSTER_DIR/config/signer.toml" \
      --simulated-latency-ms "$LATENCY_MS" \
    >"$CLUSTER_DIR/logs/slow-signer-$running.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/pids/slow-signer-$running.pid"
}
for n in $SIGNERS; do
  while [ "$running" -lt "$n" ]; do add_signer; done
  sleep 2
  t="signers-$n"
  bench_once "$out" "$t" "$(cat "$CLUSTER_DIR"/pids/*.pid | tr '\n' ' ')" \
    --directory "https://127.0.0.1:$CLUSTER_PORT/directory" --root "$CLUSTER_DIR/root.pem" \
    -n "$N" -c "$C" --warmup "$WARMUP" "${poll[@]}" --http01-listen "127.0.0.1:$HTTP01_PORT"
done
{
  echo "peak RSS (VmHWM, kB):"; cluster_rss | sed 's/^/  /'
  python3 "$BENCH_ROOT/bench/summarize.py" "$out" signers-1
} | tee "$out/summary.md"
say "results in $out"
