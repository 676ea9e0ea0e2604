#!/usr/bin/env bash
# Scenario 1: Kiln embedded against Pebble, in one run, with the same driver,
# alternating rounds (odd rounds Kiln first, even rounds Pebble first).
#
#   ROUNDS=5 N=500 C=64 POLL_MS=10 WARMUP=20 bench/scenario1.sh
#
# POLL_MS=ra honours Retry-After instead of a fixed poll interval (Kiln
# answers Retry-After: 1 on processing orders, Pebble 2.4 sends none, so
# the fixed interval is the like-for-like comparison).
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-5}; N=${N:-500}; C=${C:-64}; POLL_MS=${POLL_MS:-10}; WARMUP=${WARMUP:-20}
out=$RESULTS/scenario1-$(date -u +%Y%m%dT%H%M%SZ); mkdir -p "$out"
machine_line >"$out/machine.txt"
echo "ROUNDS=$ROUNDS N=$N C=$C POLL_MS=$POLL_MS WARMUP=$WARMUP bench/scenario1.sh" >"$out/command.txt"

start_kiln_embedded
start_pebble
poll=(--poll-interval "$POLL_MS"); [ "$POLL_MS" = ra ] && poll=()

run() { # target round directory root pids
  bench_once "$out" "$1 r$2" "$5" --directory "$3" --root "$4" -n "$N" -c "$C" --warmup "$WARMUP" \
    "${poll[@]}" --http01-listen "127.0.0.1:$HTTP01_PORT" --order-timeout-s 120 --run-timeout-s 900
}
kiln() {
  EXTRA_PIDS="${CT_LOG_PIDS[*]:-}" ADMIN_URL=$KILN_ADMIN_URL \
    run kiln-embedded "$1" "https://127.0.0.1:$KILN_PORT/directory" "$KILN_DIR/root.pem" "$KILN_PID"
}
peb() {
  pebble_round "$out" "pebble r$1" -n "$N" -c "$C" --warmup "$WARMUP" "${poll[@]}" \
    --http01-listen "127.0.0.1:$HTTP01_PORT" --order-timeout-s 30 --run-timeout-s 120
  PEBBLE_PEAK_KB=$(peak_rss_kb "$PEBBLE_PID")
}
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then kiln "$r"; peb "$r"; else peb "$r"; kiln "$r"; fi
done
{
  echo "peak RSS (VmHWM): kiln embedded $(peak_rss_kb "$KILN_PID") kB, pebble ${PEBBLE_PEAK_KB:-?} kB (its last round; restarted each round)"
  python3 "$BENCH_ROOT/bench/summarize.py" "$out" kiln-embedded
} | tee "$out/summary.md"
say "results in $out"
