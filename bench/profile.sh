#!/usr/bin/env bash
# Profile of the embedded Kiln under load: perf samples (cpu-clock: this VM
# has no hardware counters) of the kiln process while kiln-bench drives it,
# then a breakdown by thread, by library, by bucket (SQLite, crypto, TLS,
# kernel I/O, …) and inclusive time of Kiln's own stages.
#
#   N=3000 C=64 POLL_MS=10 SECONDS_TO_RECORD=8 bench/profile.sh
source "$(dirname "$0")/lib.sh"
N=${N:-3000}; C=${C:-64}; POLL_MS=${POLL_MS:-10}; REC=${SECONDS_TO_RECORD:-8}
out=$RESULTS/profile-$(date -u +%Y%m%dT%H%M%SZ); mkdir -p "$out"
machine_line >"$out/machine.txt"
echo "N=$N C=$C POLL_MS=$POLL_MS SECONDS_TO_RECORD=$REC bench/profile.sh" >"$out/command.txt"
command -v perf >/dev/null || { say "perf missing: apt-get install linux-perf"; exit 1; }

start_kiln_embedded
cpu_start=$(cpu_ms "$KILN_PID")
"$BIN/kiln-bench" --directory "https://127.0.0.1:$KILN_PORT/directory" --root "$KILN_DIR/root.pem" \
  -n "$N" -c "$C" --warmup 50 --poll-interval "$POLL_MS" --http01-listen "127.0.0.1:$HTTP01_PORT" \
  --json --label profiled >"$out/load.json" 2>"$out/load.txt" &
load=$!; STARTED_PIDS+=("$load")
sleep 3
cpu0=$(cpu_ms "$KILN_PID")
perf record -e cpu-clock -F 199 --call-graph dwarf,16384 -p "$KILN_PID" -o "$WORK/perf.data" -- sleep "$REC" 2>"$out/perf-record.log"
cpu1=$(cpu_ms "$KILN_PID")
wait "$load" || true
cpu_end=$(cpu_ms "$KILN_PID")
cat "$out/load.txt" >&2
per_order=$(python3 -c "print(round(($cpu_end - $cpu_start) / ($N + 50), 2))")
echo "kiln CPU while recording: $((cpu1 - cpu0)) ms over ${REC} s; over the whole load: $per_order ms per order (incl. 64 account creations and 50 warm-up orders)" >"$out/cpu.txt"
perf report -i "$WORK/perf.data" --no-children --stdio --sort comm,dso,sym -g none --percent-limit 0.2 \
  >"$out/flat.txt" 2>/dev/null
perf report -i "$WORK/perf.data" --children --stdio --sort sym -g none --percent-limit 0.5 \
  >"$out/children.txt" 2>/dev/null
perf script -i "$WORK/perf.data" -F comm,ip,sym >"$out/script.txt" 2>/dev/null
{
  echo "**where kiln's CPU goes, per order** (each sample charged to the first matching frame)"; echo
  python3 "$BENCH_ROOT/bench/perf_per_order.py" "$out/script.txt" "$per_order"
  python3 "$BENCH_ROOT/bench/perf_buckets.py" "$out"
} | tee "$out/summary.md"
rm -f "$out/script.txt"
say "profile in $out"
