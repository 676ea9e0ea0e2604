#!/usr/bin/env bash
# Scenario 3: CT log latency 0, 2 and 10 s against embedded Kiln; the
# finalize POST (async) must not feel it. The fake CT logs run as
# processes of their own (bench/lib.sh); their /knobs endpoint sets the
# latency at run time.
#
#   LATENCIES="0 2000 10000" N=256 C=64 bench/scenario3.sh
#
# The driver honours Retry-After here (POLL_MS=ra, the default): polling a
# 10 s pipeline every 10 ms from 64 clients would measure the poll load, not
# the finalize POST.
source "$(dirname "$0")/lib.sh"
LATENCIES=${LATENCIES:-0 2000 10000}; N=${N:-256}; C=${C:-64}; POLL_MS=${POLL_MS:-ra}; WARMUP=${WARMUP:-10}
ORDER_TIMEOUT=${ORDER_TIMEOUT:-120}
out=$RESULTS/scenario3-$(date -u +%Y%m%dT%H%M%SZ); mkdir -p "$out"
machine_line >"$out/machine.txt"
echo "LATENCIES=\"$LATENCIES\" N=$N C=$C POLL_MS=$POLL_MS WARMUP=$WARMUP ORDER_TIMEOUT=$ORDER_TIMEOUT bench/scenario3.sh" >"$out/command.txt"
poll=(--poll-interval "$POLL_MS"); [ "$POLL_MS" = ra ] && poll=()

start_kiln_embedded

for lat in $LATENCIES; do
  for url in "${CT_LOG_URLS[@]}"; do
    curl -fsS -X POST -H 'content-type: application/json' -d "{\"latency_ms\": $lat}" \
      "$url/knobs" >/dev/null
  done
  t="ct-latency-${lat}ms"
  EXTRA_PIDS="${CT_LOG_PIDS[*]}" ADMIN_URL=$KILN_ADMIN_URL bench_once "$out" "$t" "$KILN_PID" --directory "https://127.0.0.1:$KILN_PORT/directory" \
    --root "$KILN_DIR/root.pem" -n "$N" -c "$C" --warmup "$WARMUP" "${poll[@]}" \
    --http01-listen "127.0.0.1:$HTTP01_PORT" --order-timeout-s "$ORDER_TIMEOUT"
done
{
  echo "peak RSS (VmHWM): kiln embedded $(peak_rss_kb "$KILN_PID") kB"
  python3 "$BENCH_ROOT/bench/summarize.py" "$out"
} | tee "$out/summary.md"
say "results in $out"
